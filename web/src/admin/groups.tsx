// Groups: every group by name, in pages; the selected one's members with
// its owner, adding a member by account, removing one, making one owner.

import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";
import type { AdminApi, Group, GroupSummary, User } from "./api.js";
import { Said } from "./parts.js";

export function GroupsTab({ api }: { api: AdminApi }) {
  const t = useT();
  const [q, setQ] = useState("");
  const [groups, setGroups] = useState<GroupSummary[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [users, setUsers] = useState<User[]>([]);
  const [selected, setSelected] = useState<Group | null>(null);
  const [adding, setAdding] = useState("");
  const [said, setSaid] = useState<{ ok: boolean; text: string } | null>(null);

  const fail = (err: unknown) => setSaid({ ok: false, text: t("admin.failed", { message: (err as Error).message }) });
  const search = (after = 0) =>
    api.groups(q, after).then((page) => {
      setGroups(after ? [...groups, ...page.items] : page.items);
      setNext(page.next);
    }, fail);
  useEffect(() => {
    void search();
    api.users().then(setUsers, fail);
  }, [api]);

  const account = (id: number) => users.find((u) => u.user_id === id)?.account ?? `#${id}`;
  const open = (id: number) => api.group(id).then(setSelected, fail);

  const change = async (work: () => Promise<unknown>) => {
    if (!selected) return;
    setSaid(null);
    try {
      await work();
      setSaid({ ok: true, text: t("admin.done") });
    } catch (err) {
      fail(err);
    }
    await open(selected.group_id);
    await search();
  };

  const add = (ev: Event) => {
    ev.preventDefault();
    const name = adding.trim();
    const user = users.find((u) => u.account === name);
    if (!user) return setSaid({ ok: false, text: t("groups.unknown", { account: name }) });
    setAdding("");
    void change(() => api.changeMembers(selected!.group_id, [user.user_id], []));
  };

  return (
    <div class="admin-split">
      <div class="admin-list">
        <form
          class="inline"
          onSubmit={(ev) => {
            ev.preventDefault();
            void search();
          }}
        >
          <input value={q} onInput={(e) => setQ(e.currentTarget.value)} placeholder={t("groups.search")} aria-label={t("groups.search")} data-test="groups-q" />
          <button type="submit">{t("admin.refresh")}</button>
        </form>
        {groups.length === 0 ? <p class="quiet">{t("groups.empty")}</p> : null}
        <table class="admin-table" data-test="groups">
          <thead>
            <tr>
              <th>{t("groups.name")}</th>
              <th>{t("groups.owner")}</th>
              <th>{t("groups.members")}</th>
            </tr>
          </thead>
          <tbody>
            {groups.map((g) => (
              <tr class={g.group_id === selected?.group_id ? "current" : ""} data-test="group" data-name={g.name}>
                <td>
                  <button class="link" onClick={() => void open(g.group_id)} data-test="group-open">
                    {g.name}
                  </button>
                  {g.temporary ? <em class="quiet"> {t("groups.temporary")}</em> : null}
                  {g.dissolved_at_ms ? <em class="quiet"> {t("groups.dissolved")}</em> : null}
                </td>
                <td data-test="group-owner">{account(g.owner)}</td>
                <td data-test="group-count">{g.member_count}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {next !== null ? (
          <button class="link" onClick={() => void search(next)}>
            {t("admin.more")}
          </button>
        ) : null}
      </div>
      <div class="admin-form">
        <Said said={said} />
        {selected ? (
          <div data-test="group-detail">
            <h3>{t("groups.detail", { name: selected.name })}</h3>
            <ul class="members" data-test="group-members">
              {selected.members.map((id) => (
                <li data-account={account(id)}>
                  <span>{account(id)}</span>
                  {id === selected.owner ? (
                    <em class="quiet"> {t("groups.owner")}</em>
                  ) : (
                    <>
                      <button class="link" onClick={() => void change(() => api.transferOwner(selected.group_id, id))} data-test="group-transfer">
                        {t("groups.transfer")}
                      </button>
                      <button class="link" onClick={() => void change(() => api.changeMembers(selected.group_id, [], [id]))} data-test="group-remove">
                        {t("groups.remove")}
                      </button>
                    </>
                  )}
                </li>
              ))}
            </ul>
            <form class="inline" onSubmit={add}>
              <input value={adding} onInput={(e) => setAdding(e.currentTarget.value)} placeholder={t("groups.add")} aria-label={t("groups.add")} data-test="group-add" />
              <button type="submit" data-test="group-add-go">
                {t("groups.add.go")}
              </button>
            </form>
          </div>
        ) : null}
      </div>
    </div>
  );
}
