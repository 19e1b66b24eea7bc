import type { ChorusClient } from "@chorus/client";
import { useState } from "preact/hooks";

import { useT } from "../context.js";
import { changePassword } from "../rest.js";

/** The shortest password the server accepts. */
const MIN_CHARS = 8;

interface Props {
  client: ChorusClient;
  onClose: () => void;
}

/**
 * Changes the signed-in user's password: the current one, the new one
 * twice. The server ends the user's other sessions; this one stays.
 */
export function PasswordDialog({ client, onClose }: Props) {
  const t = useT();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [repeat, setRepeat] = useState("");
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState<{ ok: boolean; text: string } | null>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    if ([...next].length < MIN_CHARS) return setSaid({ ok: false, text: t("password.short") });
    if (next !== repeat) return setSaid({ ok: false, text: t("password.mismatch") });
    setBusy(true);
    try {
      await changePassword(client.session?.token ?? "", current, next);
      setCurrent("");
      setNext("");
      setRepeat("");
      setSaid({ ok: true, text: t("password.done") });
    } catch (err) {
      setSaid({ ok: false, text: t("password.failed", { message: (err as Error).message }) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="overlay" onClick={onClose} onKeyDown={(e) => e.key === "Escape" && onClose()}>
      <div
        class="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby="password-heading"
        onClick={(e) => e.stopPropagation()}
        data-test="password"
      >
      <h3 id="password-heading">{t("password.heading")}</h3>
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
        <button type="button" class="link" onClick={onClose}>
          {t("password.cancel")}
        </button>
      </form>
      </div>
    </div>
  );
}
