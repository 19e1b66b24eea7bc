// The department tree: every department with its online and total counts;
// the selected one can be renamed, moved under another, moved up or down
// among its siblings, given a sub-department or deleted.

import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";
import { type AdminApi, type DepartmentNode, flatten, subtree } from "./api.js";
import { ConfirmDelete, Said } from "./parts.js";

export function DepartmentsTab({ api }: { api: AdminApi }) {
  const t = useT();
  const [tree, setTree] = useState<DepartmentNode[] | null>(null);
  const [selected, setSelected] = useState<number | null>(null);
  const [said, setSaid] = useState<{ ok: boolean; text: string } | null>(null);
  const [name, setName] = useState("");
  const [rename, setRename] = useState("");
  const [moveTo, setMoveTo] = useState("0");

  const load = () =>
    api.departments().then(setTree, (err: Error) => setSaid({ ok: false, text: t("admin.failed", { message: err.message }) }));
  useEffect(() => void load(), [api]);

  const rows = tree ? flatten(tree) : [];
  const current = rows.find((r) => r.node.department_id === selected)?.node ?? null;
  useEffect(() => {
    setRename(current?.name ?? "");
    setMoveTo(String(current?.parent_id ?? 0));
  }, [selected, current?.name, current?.parent_id]);

  const run = async (work: () => Promise<unknown>) => {
    setSaid(null);
    try {
      await work();
      setSaid({ ok: true, text: t("admin.done") });
    } catch (err) {
      setSaid({ ok: false, text: t("admin.failed", { message: (err as Error).message }) });
    }
    await load();
  };

  const siblings = (node: DepartmentNode): DepartmentNode[] =>
    node.parent_id === 0 ? (tree ?? []) : (rows.find((r) => r.node.department_id === node.parent_id)?.node.children ?? []);

  // Reorders by giving each sibling its index as order, with `node` moved by `by`.
  const shift = (node: DepartmentNode, by: -1 | 1) =>
    run(async () => {
      const list = [...siblings(node)];
      const at = list.findIndex((d) => d.department_id === node.department_id);
      const to = at + by;
      if (to < 0 || to >= list.length) return;
      [list[at], list[to]] = [list[to], list[at]];
      for (const [order, d] of list.entries()) {
        if (d.order !== order) await api.changeDepartment(d.department_id, { order });
      }
    });

  const create = (ev: Event) => {
    ev.preventDefault();
    const trimmed = name.trim();
    if (!trimmed) return;
    void run(async () => {
      const made = await api.createDepartment(trimmed, selected ?? 0, current ? current.children.length : (tree ?? []).length);
      setName("");
      setSelected(made.department_id);
    });
  };

  // A department cannot move under itself or one of its own.
  const below = current ? subtree(current) : new Set<number>();

  return (
    <div class="admin-split">
      <div class="admin-list">
        {tree && tree.length === 0 ? <p class="quiet">{t("dept.empty")}</p> : null}
        <ul class="dept-tree" data-test="dept-tree">
          {rows.map(({ node, depth }) => (
            <li style={{ paddingLeft: `${depth * 1.2}rem` }}>
              <button
                class={node.department_id === selected ? "row current" : "row"}
                aria-pressed={node.department_id === selected}
                onClick={() => setSelected(node.department_id === selected ? null : node.department_id)}
                data-test="dept"
                data-id={node.department_id}
                data-name={node.name}
              >
                <span>{node.name}</span>
                <span class="quiet" data-test="dept-counts">
                  {t("dept.counts", { online: node.online_total, total: node.total_count })}
                </span>
              </button>
            </li>
          ))}
        </ul>
      </div>
      <div class="admin-form">
        <Said said={said} />
        <form onSubmit={create} class="inline">
          <label>
            {current ? t("dept.new.under", { name: current.name }) : t("dept.new")}
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder={t("dept.name")} data-test="dept-new-name" />
          </label>
          <button type="submit" data-test="dept-create">
            {t("dept.create")}
          </button>
        </form>
        {current ? (
          <div data-test="dept-selected">
            <h3>{t("dept.selected", { name: current.name })}</h3>
            <form
              class="inline"
              onSubmit={(ev) => {
                ev.preventDefault();
                if (rename.trim()) void run(() => api.changeDepartment(current.department_id, { name: rename.trim() }));
              }}
            >
              <input value={rename} onInput={(e) => setRename(e.currentTarget.value)} aria-label={t("dept.name")} data-test="dept-rename" />
              <button type="submit" data-test="dept-rename-go">
                {t("dept.rename")}
              </button>
            </form>
            <form
              class="inline"
              onSubmit={(ev) => {
                ev.preventDefault();
                void run(() => api.moveDepartment(current.department_id, Number(moveTo)));
              }}
            >
              <label>
                {t("dept.move")}
                <select value={moveTo} onChange={(e) => setMoveTo(e.currentTarget.value)} data-test="dept-move-to">
                  <option value="0">{t("dept.top")}</option>
                  {rows
                    .filter((r) => !below.has(r.node.department_id))
                    .map((r) => (
                      <option value={String(r.node.department_id)}>{`${"  ".repeat(r.depth)}${r.node.name}`}</option>
                    ))}
                </select>
              </label>
              <button type="submit" data-test="dept-move-go">
                {t("dept.move.go")}
              </button>
            </form>
            <div class="inline">
              <button type="button" onClick={() => void shift(current, -1)} data-test="dept-up">
                {t("dept.up")}
              </button>
              <button type="button" onClick={() => void shift(current, 1)} data-test="dept-down">
                {t("dept.down")}
              </button>
              <ConfirmDelete
                name={current.name}
                test="dept-delete"
                onDelete={() =>
                  void run(async () => {
                    await api.deleteDepartment(current.department_id);
                    setSelected(null);
                  })
                }
              />
            </div>
          </div>
        ) : null}
      </div>
    </div>
  );
}
