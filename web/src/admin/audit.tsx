// The audit trail, newest first, filtered by account, action, target and
// time, with older pages on request.

import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";
import type { AdminApi, AuditEntry, AuditFilter } from "./api.js";

/** A datetime-local input's value as Unix milliseconds (undefined: empty). */
function millis(local: string): number | undefined {
  if (!local) return undefined;
  const ms = new Date(local).getTime();
  return Number.isFinite(ms) ? ms : undefined;
}

export function AuditTab({ api }: { api: AdminApi }) {
  const t = useT();
  const [fields, setFields] = useState({ actor: "", action: "", target: "", since: "", until: "" });
  const [entries, setEntries] = useState<AuditEntry[] | null>(null);
  const [next, setNext] = useState<number | null>(null);
  const [failed, setFailed] = useState("");

  const filter = (): AuditFilter => ({
    actor: fields.actor.trim(),
    action: fields.action.trim(),
    target: fields.target.trim(),
    since_ms: millis(fields.since),
    until_ms: millis(fields.until),
  });
  const load = (before = 0, shown: AuditEntry[] = []) => {
    setFailed("");
    return api.audit(filter(), before).then(
      (page) => {
        setEntries([...shown, ...page.items]);
        setNext(page.next);
      },
      (err: Error) => setFailed(err.message),
    );
  };
  useEffect(() => void load(), [api]);

  const field = (name: keyof typeof fields, label: string, type = "text") => (
    <label>
      {label}
      <input type={type} value={fields[name]} onInput={(e) => setFields({ ...fields, [name]: e.currentTarget.value })} data-test={`audit-${name}`} />
    </label>
  );

  return (
    <div data-test="audit">
      <form
        class="audit-filters"
        onSubmit={(ev) => {
          ev.preventDefault();
          void load();
        }}
      >
        {field("actor", t("audit.actor"))}
        {field("action", t("audit.action"))}
        {field("target", t("audit.target"))}
        {field("since", t("audit.since"), "datetime-local")}
        {field("until", t("audit.until"), "datetime-local")}
        <button type="submit" data-test="audit-apply">
          {t("audit.apply")}
        </button>
        <button
          type="button"
          class="link"
          onClick={() => setFields({ actor: "", action: "", target: "", since: "", until: "" })}
        >
          {t("audit.clear")}
        </button>
      </form>
      {failed ? (
        <p class="error" role="alert" data-test="admin-said">
          {t("admin.failed", { message: failed })}
        </p>
      ) : null}
      {entries && entries.length === 0 ? <p class="quiet">{t("audit.empty")}</p> : null}
      <table class="admin-table" data-test="audit-entries">
        <thead>
          <tr>
            <th>{t("audit.when")}</th>
            <th>{t("audit.who")}</th>
            <th>{t("audit.what")}</th>
            <th>{t("audit.on")}</th>
            <th>{t("audit.detail")}</th>
            <th>{t("audit.ip")}</th>
          </tr>
        </thead>
        <tbody>
          {(entries ?? []).map((e) => (
            <tr data-test="audit-entry" data-action={e.action}>
              <td>{new Date(e.at_ms).toLocaleString()}</td>
              <td>{e.actor_account || (e.actor ? `#${e.actor}` : "—")}</td>
              <td class="mono">{e.action}</td>
              <td class="mono" data-test="audit-target">
                {e.target}
              </td>
              <td class="mono detail">{e.detail === null ? "" : JSON.stringify(e.detail)}</td>
              <td class="mono">{e.ip}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {next !== null ? (
        <button class="link" onClick={() => void load(next, entries ?? [])} data-test="audit-older">
          {t("audit.older")}
        </button>
      ) : null}
    </div>
  );
}
