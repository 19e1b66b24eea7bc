// 通讯录: contact search (name, account, pinyin initials), the organisation
// tree with online/total counts per department, a department's members,
// and a contact card with "Send a message".

import type { ChorusClient } from "@chorus/client";
import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";
import {
  type Contact,
  type ContactCard,
  type DepartmentMember,
  type DepartmentNode,
  contactCard,
  departmentMembers,
  departmentTree,
  searchContacts,
} from "../directory.js";

interface Props {
  client: ChorusClient;
  onOpen: (conversation: string) => void;
}

export function Directory({ client, onOpen }: Props) {
  const t = useT();
  const token = client.session?.token ?? "";
  const [q, setQ] = useState("");
  const [found, setFound] = useState<Contact[] | null>(null);
  const [tree, setTree] = useState<DepartmentNode[]>([]);
  const [card, setCard] = useState<ContactCard | null>(null);
  const [failed, setFailed] = useState("");
  const fail = (err: unknown) => setFailed((err as Error).message);

  useEffect(() => {
    departmentTree(token).then(setTree, fail);
  }, [token]);

  const search = (ev: Event) => {
    ev.preventDefault();
    setFailed("");
    if (!q.trim()) return setFound(null);
    searchContacts(token, q).then(setFound, fail);
  };
  const show = (userId: number) => contactCard(token, userId).then(setCard, fail);

  if (card) {
    return (
      <div class="contact-card" data-test="contact-card">
        <button class="link" onClick={() => setCard(null)} data-test="card-back">
          {t("dir.back")}
        </button>
        <h3 data-test="card-name">{card.display_name}</h3>
        <dl>
          <dt>{t("dir.account")}</dt>
          <dd>{card.account}</dd>
          {card.departments.map((d) => (
            <>
              <dt>{d.name}</dt>
              <dd>{d.title || "—"}</dd>
            </>
          ))}
          {card.title ? (
            <>
              <dt>{t("dir.title")}</dt>
              <dd>{card.title}</dd>
            </>
          ) : null}
          {card.phone ? (
            <>
              <dt>{t("dir.phone")}</dt>
              <dd data-test="card-phone">{card.phone}</dd>
            </>
          ) : null}
          {card.mobile ? (
            <>
              <dt>{t("dir.mobile")}</dt>
              <dd>{card.mobile}</dd>
            </>
          ) : null}
          {card.email ? (
            <>
              <dt>{t("dir.email")}</dt>
              <dd>
                <a href={`mailto:${card.email}`}>{card.email}</a>
              </dd>
            </>
          ) : null}
        </dl>
        {card.disabled ? <p class="quiet">{t("dir.disabled")}</p> : null}
        {card.direct_conversation && !card.disabled ? (
          <button
            onClick={() => {
              client.openDirect(card.direct_conversation, card.display_name || card.account);
              onOpen(card.direct_conversation);
            }}
            data-test="card-chat"
          >
            {t("dir.chat")}
          </button>
        ) : null}
      </div>
    );
  }

  return (
    <div class="directory" data-test="directory">
      <form class="new-chat" onSubmit={search}>
        <input value={q} onInput={(e) => setQ(e.currentTarget.value)} placeholder={t("dir.search")} aria-label={t("dir.search")} data-test="dir-q" />
        <button type="submit" data-test="dir-q-go">
          {t("dir.search.go")}
        </button>
      </form>
      {failed ? (
        <p class="error" role="alert">
          {failed}
        </p>
      ) : null}
      {found ? (
        found.length === 0 ? (
          <p class="quiet">{t("dir.none")}</p>
        ) : (
          <ul class="people" data-test="dir-found">
            {found.map((c) => (
              <li>
                <button class="person" onClick={() => void show(c.user_id)} data-test="person" data-account={c.account}>
                  <span>{c.display_name}</span>
                  <span class="quiet">{c.departments.map((d) => d.name).join(", ") || c.account}</span>
                </button>
              </li>
            ))}
          </ul>
        )
      ) : (
        <ul class="org" data-test="org">
          {tree.map((node) => (
            <Department key={node.department_id} token={token} node={node} onShow={show} />
          ))}
        </ul>
      )}
    </div>
  );
}

function Department({ token, node, onShow }: { token: string; node: DepartmentNode; onShow: (userId: number) => void }) {
  const t = useT();
  const [open, setOpen] = useState(false);
  const [members, setMembers] = useState<DepartmentMember[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const load = (after = 0) =>
    departmentMembers(token, node.department_id, after).then(({ members: page, next: more }) => {
      setMembers(after ? [...members, ...page] : page);
      setNext(more);
    });
  const toggle = () => {
    if (!open) void load();
    setOpen(!open);
  };
  return (
    <li>
      <button class="dept" aria-expanded={open} onClick={toggle} data-test="org-dept" data-name={node.name}>
        <span>
          {open ? "▾" : "▸"} {node.name}
        </span>
        <span class="quiet" data-test="org-counts">
          {t("dept.counts", { online: node.online_total, total: node.total_count })}
        </span>
      </button>
      {open ? (
        <ul>
          {node.children.map((child) => (
            <Department key={child.department_id} token={token} node={child} onShow={onShow} />
          ))}
          {members.map((m) => (
            <li>
              <button class="person" onClick={() => onShow(m.user_id)} data-test="person" data-account={m.account}>
                <span>{m.display_name}</span>
                <span class="quiet">{m.title}</span>
              </button>
            </li>
          ))}
          {next !== null ? (
            <li>
              <button class="link" onClick={() => void load(next)}>
                {t("admin.more")}
              </button>
            </li>
          ) : null}
        </ul>
      ) : null}
    </li>
  );
}
