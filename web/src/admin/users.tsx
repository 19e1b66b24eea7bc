// Users: the list with a filter; creating one (account, initial password,
// name, departments, administrator); editing the selected one's profile
// and posts; disabling it (which ends its sessions), enabling, deleting.

import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";
import { type AdminApi, type DepartmentNode, type Post, type User, flatten } from "./api.js";
import { ConfirmDelete, Said } from "./parts.js";

type Said = { ok: boolean; text: string } | null;

export function UsersTab({ api, self }: { api: AdminApi; self: number }) {
  const t = useT();
  const [users, setUsers] = useState<User[] | null>(null);
  const [tree, setTree] = useState<DepartmentNode[]>([]);
  const [filter, setFilter] = useState("");
  const [selected, setSelected] = useState<number | null>(null);
  const [said, setSaid] = useState<Said>(null);

  const fail = (err: unknown) => setSaid({ ok: false, text: t("admin.failed", { message: (err as Error).message }) });
  const load = () => Promise.all([api.users().then(setUsers), api.departments().then(setTree)]).catch(fail);
  useEffect(() => void load(), [api]);

  const departments = flatten(tree);
  const nameOf = (id: number) => departments.find((d) => d.node.department_id === id)?.node.name ?? `#${id}`;
  const needle = filter.trim().toLowerCase();
  const shown = (users ?? []).filter(
    (u) => !needle || u.account.toLowerCase().includes(needle) || u.display_name.toLowerCase().includes(needle),
  );
  const current = users?.find((u) => u.user_id === selected) ?? null;

  return (
    <div class="admin-split">
      <div class="admin-list">
        <input value={filter} onInput={(e) => setFilter(e.currentTarget.value)} placeholder={t("users.filter")} aria-label={t("users.filter")} data-test="users-filter" />
        <p class="quiet">{t("users.count", { count: shown.length })}</p>
        <table class="admin-table" data-test="users">
          <thead>
            <tr>
              <th>{t("users.account")}</th>
              <th>{t("users.name")}</th>
              <th>{t("users.departments")}</th>
              <th>{t("users.state")}</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((u) => (
              <tr class={u.user_id === selected ? "current" : ""} data-test="user" data-account={u.account}>
                <td>
                  <button class="link" onClick={() => setSelected(u.user_id === selected ? null : u.user_id)} data-test="user-open">
                    {u.account}
                  </button>
                </td>
                <td>{u.display_name}</td>
                <td>{u.departments.map(nameOf).join(", ")}</td>
                <td data-test="user-state">
                  {[
                    u.admin ? t("users.admin") : "",
                    u.disabled ? t("users.disabled") : t("users.active"),
                    u.must_change_password ? t("users.must.changing") : "",
                  ]
                    .filter(Boolean)
                    .join(" · ")}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="admin-form">
        <Said said={said} />
        {current ? (
          <EditUser
            key={current.user_id}
            api={api}
            user={current}
            self={self}
            departments={departments.map((d) => d.node)}
            onDone={(text, ok = true) => {
              setSaid({ ok, text });
              void load();
            }}
            onDeleted={() => setSelected(null)}
          />
        ) : (
          <NewUserForm
            api={api}
            departments={departments.map((d) => d.node)}
            onCreated={(user) => {
              setSaid({ ok: true, text: t("users.created", { account: user.account }) });
              void load();
            }}
            onFailed={fail}
          />
        )}
      </div>
    </div>
  );
}

function NewUserForm({
  api,
  departments,
  onCreated,
  onFailed,
}: {
  api: AdminApi;
  departments: DepartmentNode[];
  onCreated: (user: User) => void;
  onFailed: (err: unknown) => void;
}) {
  const t = useT();
  const [account, setAccount] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [admin, setAdmin] = useState(false);
  const [mustChange, setMustChange] = useState(true);
  const [department, setDepartment] = useState("0");
  const [busy, setBusy] = useState(false);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    try {
      const user = await api.createUser({
        account: account.trim(),
        password,
        display_name: name.trim(),
        admin,
        departments: department === "0" ? [] : [Number(department)],
        must_change_password: mustChange,
      });
      setAccount("");
      setPassword("");
      setName("");
      setAdmin(false);
      onCreated(user);
    } catch (err) {
      onFailed(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="stack" onSubmit={submit} data-test="user-new">
      <h3>{t("users.new")}</h3>
      <label>
        {t("users.account")}
        <input value={account} onInput={(e) => setAccount(e.currentTarget.value)} required autocomplete="off" data-test="user-new-account" />
      </label>
      <label>
        {t("users.password")}
        <input type="password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required autocomplete="new-password" data-test="user-new-password" />
      </label>
      <label>
        {t("users.name")}
        <input value={name} onInput={(e) => setName(e.currentTarget.value)} data-test="user-new-name" />
      </label>
      <label>
        {t("users.departments")}
        <select value={department} onChange={(e) => setDepartment(e.currentTarget.value)} data-test="user-new-department">
          <option value="0">{t("admin.none")}</option>
          {departments.map((d) => (
            <option value={String(d.department_id)}>{d.name}</option>
          ))}
        </select>
      </label>
      <label class="check">
        <input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.currentTarget.checked)} />
        {t("users.make.admin")}
      </label>
      <label class="check">
        <input type="checkbox" checked={mustChange} onChange={(e) => setMustChange(e.currentTarget.checked)} data-test="user-new-must-change" />
        {t("users.must.change")}
      </label>
      <button type="submit" disabled={busy} data-test="user-create">
        {t("users.create")}
      </button>
    </form>
  );
}

const PROFILE = ["display_name", "title", "phone", "mobile", "email"] as const;
const PROFILE_LABEL = { display_name: "users.name", title: "users.title", phone: "users.phone", mobile: "users.mobile", email: "users.email" } as const;

function EditUser({
  api,
  user,
  self,
  departments,
  onDone,
  onDeleted,
}: {
  api: AdminApi;
  user: User;
  self: number;
  departments: DepartmentNode[];
  onDone: (text: string, ok?: boolean) => void;
  onDeleted: () => void;
}) {
  const t = useT();
  const [profile, setProfile] = useState(() => Object.fromEntries(PROFILE.map((k) => [k, user[k]])) as Record<(typeof PROFILE)[number], string>);
  const [posts, setPosts] = useState<Post[]>(user.posts);
  const [adding, setAdding] = useState("0");
  const nameOf = (id: number) => departments.find((d) => d.department_id === id)?.name ?? `#${id}`;

  const run = async (work: () => Promise<unknown>, after?: () => void) => {
    try {
      await work();
      after?.();
      onDone(t("admin.done"));
    } catch (err) {
      onDone(t("admin.failed", { message: (err as Error).message }), false);
    }
  };

  const save = (ev: Event) => {
    ev.preventDefault();
    void run(() => api.changeUser(user.user_id, { ...profile, posts }));
  };

  return (
    <form class="stack" onSubmit={save} data-test="user-edit">
      <h3>{t("users.edit", { account: user.account })}</h3>
      {PROFILE.map((field) => (
        <label>
          {t(PROFILE_LABEL[field])}
          <input
            value={profile[field]}
            onInput={(e) => setProfile({ ...profile, [field]: e.currentTarget.value })}
            data-test={`user-edit-${field}`}
          />
        </label>
      ))}
      <fieldset>
        <legend>{t("users.posts")}</legend>
        <ul class="posts" data-test="user-posts">
          {posts.map((post, i) => (
            <li>
              <span>{nameOf(post.department_id)}</span>
              <input
                value={post.title}
                placeholder={t("users.post.title")}
                aria-label={`${nameOf(post.department_id)} ${t("users.post.title")}`}
                onInput={(e) => setPosts(posts.map((p, j) => (j === i ? { ...p, title: e.currentTarget.value } : p)))}
              />
              <button type="button" class="link" onClick={() => setPosts(posts.filter((_, j) => j !== i))}>
                {t("users.post.remove")}
              </button>
            </li>
          ))}
        </ul>
        <label>
          {t("users.post.add")}
          <select
            value={adding}
            onChange={(e) => {
              const id = Number(e.currentTarget.value);
              if (id && !posts.some((p) => p.department_id === id)) setPosts([...posts, { department_id: id, title: "" }]);
              setAdding("0");
            }}
            data-test="user-post-add"
          >
            <option value="0">…</option>
            {departments.map((d) => (
              <option value={String(d.department_id)}>{d.name}</option>
            ))}
          </select>
        </label>
      </fieldset>
      <button type="submit" data-test="user-save">
        {t("admin.save")}
      </button>
      {user.user_id === self ? null : (
        <div class="inline">
          <button
            type="button"
            onClick={() => void run(() => api.changeUser(user.user_id, { disabled: !user.disabled }))}
            data-test={user.disabled ? "user-enable" : "user-disable"}
          >
            {user.disabled ? t("users.enable") : t("users.disable")}
          </button>
          <ConfirmDelete name={user.account} test="user-delete" onDelete={() => void run(() => api.deleteUser(user.user_id), onDeleted)} />
        </div>
      )}
      {user.user_id === self ? null : <ResetPassword api={api} user={user} onDone={onDone} />}
    </form>
  );
}

/** An administrator sets a user's password (not their own: that is the chat's "Change password"). */
function ResetPassword({ api, user, onDone }: { api: AdminApi; user: User; onDone: (text: string, ok?: boolean) => void }) {
  const t = useT();
  const [password, setPassword] = useState("");
  const [mustChange, setMustChange] = useState(true);
  const [busy, setBusy] = useState(false);

  const reset = async () => {
    setBusy(true);
    try {
      await api.resetPassword(user.user_id, password, mustChange);
      setPassword("");
      onDone(t("users.reset.done", { account: user.account }));
    } catch (err) {
      onDone(t("admin.failed", { message: (err as Error).message }), false);
    } finally {
      setBusy(false);
    }
  };

  // A fieldset, not a form: it sits inside the profile's form.
  return (
    <fieldset data-test="user-reset">
      <legend>{t("users.reset")}</legend>
      <label>
        {t("users.reset.password")}
        <input
          type="password"
          autocomplete="new-password"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              if (password) void reset();
            }
          }}
          data-test="user-reset-password"
        />
      </label>
      <label class="check">
        <input type="checkbox" checked={mustChange} onChange={(e) => setMustChange(e.currentTarget.checked)} data-test="user-reset-must-change" />
        {t("users.reset.must")}
      </label>
      <button type="button" disabled={busy || !password} onClick={() => void reset()} data-test="user-reset-submit">
        {t("users.reset")}
      </button>
    </fieldset>
  );
}
