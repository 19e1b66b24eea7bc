// The admin console (/admin): the same sign-in as the chat, then, for an
// administrator, the department tree, users, groups, the cluster and the
// audit trail over the admin REST API; anyone else is told it is not theirs.

import type { ChorusClient } from "@chorus/client";
import { useEffect, useMemo, useState } from "preact/hooks";

import { useT } from "../context.js";
import { AdminApi } from "./api.js";
import { AuditTab } from "./audit.js";
import { ClusterTab } from "./cluster.js";
import { DepartmentsTab } from "./departments.js";
import { GroupsTab } from "./groups.js";
import { PoliciesTab } from "./policies.js";
import { UsersTab } from "./users.js";

const TABS = ["departments", "users", "groups", "policies", "cluster", "audit"] as const;
type Tab = (typeof TABS)[number];

interface Props {
  client: ChorusClient;
  onLeave: (logout: boolean) => void;
  onSwitchLang: () => void;
}

export function AdminConsole({ client, onLeave, onSwitchLang }: Props) {
  const t = useT();
  const api = useMemo(() => new AdminApi(client.session?.token ?? ""), [client]);
  const [admin, setAdmin] = useState<boolean | null>(null);
  const [failed, setFailed] = useState("");
  const [tab, setTab] = useState<Tab>(() => {
    const asked = location.hash.slice(1) as Tab;
    return TABS.includes(asked) ? asked : "departments";
  });
  const [ended, setEnded] = useState<string | null>(null);

  useEffect(() => {
    api.me().then(
      (me) => setAdmin(me.admin),
      (err: Error) => setFailed(err.message),
    );
    return client.on("ended", (e) => e.code !== "LOGGED_OUT" && setEnded(e.reason));
  }, [api, client]);

  const choose = (next: Tab) => {
    setTab(next);
    history.replaceState(null, "", `#${next}`);
  };

  if (ended !== null) {
    return (
      <main class="ended" data-test="ended">
        <p role="alert">{t("main.ended.other", { reason: ended })}</p>
        <button onClick={() => onLeave(false)}>{t("main.ended.again")}</button>
      </main>
    );
  }

  const bar = (
    <header class="bar">
      <strong>{t("admin.title")}</strong>
      <span class="me" data-test="me">
        {client.session?.account}
      </span>
      <span class="spacer" />
      <a href="/" data-test="admin-chat">
        {t("admin.chat")}
      </a>
      <button class="link" onClick={onSwitchLang}>
        {t("lang.switch")}
      </button>
      <button class="link" onClick={() => onLeave(true)} data-test="logout">
        {t("main.logout")}
      </button>
    </header>
  );

  if (admin !== true) {
    return (
      <div class="main">
        {bar}
        <main class="admin-refused">
          {failed ? (
            <p role="alert" class="error">
              {t("admin.failed", { message: failed })}
            </p>
          ) : admin === null ? (
            <p class="quiet">{t("admin.checking")}</p>
          ) : (
            <p role="alert" data-test="admin-refused">
              {t("admin.refused")} <a href="/">{t("admin.refused.back")}</a>
            </p>
          )}
        </main>
      </div>
    );
  }

  return (
    <div class="main admin" data-test="admin">
      {bar}
      <nav class="admin-tabs" role="tablist">
        {TABS.map((name) => (
          <button
            role="tab"
            aria-selected={tab === name}
            class={tab === name ? "tab current" : "tab"}
            onClick={() => choose(name)}
            data-test={`admin-tab-${name}`}
          >
            {t(`admin.tab.${name}`)}
          </button>
        ))}
        <span class="spacer" />
        <a href="/metrics" target="_blank" rel="noopener" data-test="admin-metrics">
          {t("admin.metrics")}
        </a>
      </nav>
      <section class="admin-body" role="tabpanel">
        {tab === "departments" ? (
          <DepartmentsTab api={api} />
        ) : tab === "users" ? (
          <UsersTab api={api} self={Number(client.session?.userId ?? 0)} />
        ) : tab === "groups" ? (
          <GroupsTab api={api} />
        ) : tab === "policies" ? (
          <PoliciesTab token={client.session?.token ?? ""} />
        ) : tab === "cluster" ? (
          <ClusterTab api={api} />
        ) : (
          <AuditTab api={api} />
        )}
      </section>
    </div>
  );
}
