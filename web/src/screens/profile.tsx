import type { ChorusClient } from "@chorus/client";
import { useEffect, useState } from "preact/hooks";

import { type Me, me, updateMe } from "../account.js";
import { useT } from "../context.js";

interface Props {
  client: ChorusClient;
  onClose: () => void;
}

type Field = "phone" | "email" | "mobile";
const FIELDS: Field[] = ["phone", "mobile", "email"];

/**
 * The signed-in user's own card: their name and account as the
 * organisation has them, and the contact fields they keep themselves
 * (phone, mobile, email), which colleagues see on the contact card.
 */
export function ProfileDialog({ client, onClose }: Props) {
  const t = useT();
  const token = client.session?.token ?? "";
  const [user, setUser] = useState<Me | null>(null);
  const [fields, setFields] = useState<Record<Field, string>>({ phone: "", email: "", mobile: "" });
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState<{ ok: boolean; text: string } | null>(null);

  useEffect(() => {
    me(token).then(
      (u) => {
        setUser(u);
        setFields({ phone: u.phone, email: u.email, mobile: u.mobile });
      },
      (err: Error) => setSaid({ ok: false, text: t("profile.failed", { message: err.message }) }),
    );
  }, [token]);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (!user) return;
    // Only what changed is sent, so a colleague's admin edit of another field is not undone.
    const changed: Partial<Record<Field, string>> = {};
    for (const f of FIELDS) if (fields[f] !== user[f]) changed[f] = fields[f].trim();
    if (Object.keys(changed).length === 0) return setSaid({ ok: true, text: t("profile.unchanged") });
    setBusy(true);
    try {
      const u = await updateMe(token, changed);
      setUser(u);
      setFields({ phone: u.phone, email: u.email, mobile: u.mobile });
      setSaid({ ok: true, text: t("profile.saved") });
    } catch (err) {
      setSaid({ ok: false, text: t("profile.failed", { message: (err as Error).message }) });
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
        aria-labelledby="profile-heading"
        onClick={(e) => e.stopPropagation()}
        data-test="profile"
      >
        <h3 id="profile-heading">{t("profile.heading")}</h3>
        {user ? (
          <dl class="contact-card">
            <dt>{t("dir.account")}</dt>
            <dd>{user.account}</dd>
            <dt>{t("profile.name")}</dt>
            <dd>{user.display_name}</dd>
            {user.title ? (
              <>
                <dt>{t("dir.title")}</dt>
                <dd>{user.title}</dd>
              </>
            ) : null}
          </dl>
        ) : null}
        <form class="password-form" onSubmit={submit}>
          {FIELDS.map((f) => (
            <label key={f}>
              {t(`dir.${f}`)}
              <input
                type={f === "email" ? "email" : "tel"}
                maxLength={64}
                value={fields[f]}
                disabled={!user}
                onInput={(e) => setFields({ ...fields, [f]: e.currentTarget.value })}
                data-test={`profile-${f}`}
              />
            </label>
          ))}
          <p class="quiet">{t("profile.org")}</p>
          {said ? (
            <p role={said.ok ? "status" : "alert"} class={said.ok ? "ok" : "error"} data-test="profile-said">
              {said.text}
            </p>
          ) : null}
          <button type="submit" disabled={busy || !user} data-test="profile-save">
            {t("profile.save")}
          </button>
          <button type="button" class="link" onClick={onClose}>
            {t("password.cancel")}
          </button>
        </form>
      </div>
    </div>
  );
}
