import type { ChorusClient } from "@chorus/client";
import { useEffect, useState } from "preact/hooks";

import { DEFAULT_POLICY, type PasswordPolicy, passwordPolicy, weakness } from "../account.js";
import { useT } from "../context.js";
import { changePassword } from "../rest.js";

interface Props {
  client: ChorusClient;
  /** Closes the dialog; in the forced mode, signs out. */
  onClose: () => void;
  /**
   * The password must be changed before anything else (an administrator
   * reset it, or it is older than the policy allows): the dialog is the
   * whole page and `onChanged` runs once the server took the new one.
   */
  forced?: boolean;
  onChanged?: () => void;
}

/** The policy's rules in words, for the line under the new password. */
function rule(t: ReturnType<typeof useT>, policy: PasswordPolicy): string {
  const base = t("password.rule", { min: policy.min_length, classes: policy.min_classes });
  return policy.history > 0 ? `${base} ${t("password.rule.history", { n: policy.history })}` : base;
}

/**
 * Changes the signed-in user's password: the current one, the new one
 * twice, checked against the password policy before it is sent (the
 * server checks again, reuse included). The server ends the user's other
 * sessions; this one stays.
 */
export function PasswordDialog({ client, onClose, forced = false, onChanged }: Props) {
  const t = useT();
  const token = client.session?.token ?? "";
  const [policy, setPolicy] = useState<PasswordPolicy>(DEFAULT_POLICY);
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [repeat, setRepeat] = useState("");
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState<{ ok: boolean; text: string } | null>(null);

  useEffect(() => {
    // The defaults stand until the policy arrives; the server's check binds either way.
    passwordPolicy(token).then(setPolicy, () => {});
  }, [token]);

  const submit = async (event: Event) => {
    event.preventDefault();
    const weak = weakness(policy, next);
    if (weak === "short") return setSaid({ ok: false, text: t("password.short", { min: policy.min_length }) });
    if (weak === "classes") return setSaid({ ok: false, text: t("password.classes", { classes: policy.min_classes }) });
    if (next !== repeat) return setSaid({ ok: false, text: t("password.mismatch") });
    setBusy(true);
    try {
      await changePassword(token, current, next);
      setCurrent("");
      setNext("");
      setRepeat("");
      setSaid({ ok: true, text: t("password.done") });
      onChanged?.();
    } catch (err) {
      setSaid({ ok: false, text: t("password.failed", { message: (err as Error).message }) });
    } finally {
      setBusy(false);
    }
  };

  const close = () => {
    if (!forced) onClose();
  };

  return (
    <div class={forced ? "overlay forced" : "overlay"} onClick={close} onKeyDown={(e) => e.key === "Escape" && close()}>
      <div
        class="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby="password-heading"
        onClick={(e) => e.stopPropagation()}
        data-test="password"
      >
      <h3 id="password-heading">{t(forced ? "password.forced.heading" : "password.heading")}</h3>
      {forced ? (
        <p data-test="password-forced">
          {t("password.forced")}
        </p>
      ) : null}
      <form class="password-form" onSubmit={submit}>
        <label>
          {t("password.current")}
          <input
            type="password"
            autocomplete="current-password"
            autoFocus
            value={current} onInput={(e) => setCurrent(e.currentTarget.value)} data-test="password-current" />
        </label>
        <label>
          {t("password.new")}
          <input type="password" autocomplete="new-password" value={next} onInput={(e) => setNext(e.currentTarget.value)} data-test="password-new" />
        </label>
        <p class="quiet rule" data-test="password-rule">
          {rule(t, policy)}
        </p>
        <label>
          {t("password.repeat")}
          <input type="password" autocomplete="new-password" value={repeat} onInput={(e) => setRepeat(e.currentTarget.value)} data-test="password-repeat" />
        </label>
        {said ? (
          <p role={said.ok ? "status" : "alert"} class={said.ok ? "ok" : "error"} data-test="password-said">
            {said.text}
          </p>
        ) : null}
        <button type="submit" disabled={busy || !current} data-test="password-submit">
          {t("password.submit")}
        </button>
        <button type="button" class="link" onClick={onClose} data-test="password-close">
          {t(forced ? "main.logout" : "password.cancel")}
        </button>
      </form>
      </div>
    </div>
  );
}
