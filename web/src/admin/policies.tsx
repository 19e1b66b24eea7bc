// Policies: the password policy (length, character classes, reuse, age),
// which binds every password set from the moment it is saved.

import { useEffect, useState } from "preact/hooks";

import { DEFAULT_POLICY, type PasswordPolicy, passwordPolicy, setPasswordPolicy } from "../account.js";
import { useT } from "../context.js";
import { Said } from "./parts.js";

const FIELDS = [
  ["min_length", 8, 128],
  ["min_classes", 1, 4],
  ["history", 0, 24],
  ["max_age_days", 0, 3650],
] as const;

export function PoliciesTab({ token }: { token: string }) {
  const t = useT();
  const [policy, setPolicy] = useState<PasswordPolicy>(DEFAULT_POLICY);
  const [loaded, setLoaded] = useState(false);
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState<{ ok: boolean; text: string } | null>(null);
  const fail = (err: unknown) => setSaid({ ok: false, text: t("admin.failed", { message: (err as Error).message }) });

  useEffect(() => {
    passwordPolicy(token).then((p) => {
      setPolicy(p);
      setLoaded(true);
    }, fail);
  }, [token]);

  const save = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    try {
      setPolicy(await setPasswordPolicy(token, policy));
      setSaid({ ok: true, text: t("policy.saved") });
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="admin-form">
      <Said said={said} />
      <form class="stack" onSubmit={save} data-test="password-policy">
        <h3>{t("policy.password")}</h3>
        {FIELDS.map(([field, min, max]) => (
          <label key={field}>
            {t(`policy.${field}`)}
            <input
              type="number"
              min={min}
              max={max}
              required
              value={String(policy[field])}
              onInput={(e) => setPolicy({ ...policy, [field]: Number(e.currentTarget.value) })}
              data-test={`policy-${field}`}
            />
          </label>
        ))}
        <button type="submit" disabled={busy || !loaded} data-test="policy-save">
          {t("admin.save")}
        </button>
      </form>
    </div>
  );
}
