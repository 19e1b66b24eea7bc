import { ChorusError } from "@chorus/client";
import { useState } from "preact/hooks";

import { useT } from "../context.js";

interface Props {
  onLogin: (account: string, password: string, remember: boolean) => Promise<void>;
  onSwitchLang: () => void;
}

export function Login({ onLogin, onSwitchLang }: Props) {
  const t = useT();
  const [account, setAccount] = useState("");
  const [password, setPassword] = useState("");
  const [remember, setRemember] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setError("");
    try {
      await onLogin(account.trim(), password, remember);
    } catch (err) {
      const e = err instanceof ChorusError ? err : new ChorusError("INTERNAL", String(err));
      const code = e.code === "TIMEOUT" ? "DISCONNECTED" : e.code;
      switch (code) {
        case "UNAUTHENTICATED":
        case "RATE_LIMITED":
        case "INVALID":
        case "DISCONNECTED":
          setError(t(`login.error.${code}`, { message: e.message }));
          break;
        default:
          setError(t("login.error.other", { message: e.message }));
      }
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form class="login-box" onSubmit={submit} data-test="login-form">
        <div class="login-top">
          <h1>{t("login.heading")}</h1>
          <button type="button" class="link" onClick={onSwitchLang} data-test="lang">
            {t("lang.switch")}
          </button>
        </div>
        <label>
          {t("login.account")}
          <input name="account" autocomplete="username" value={account} onInput={(e) => setAccount(e.currentTarget.value)} required autofocus />
        </label>
        <label>
          {t("login.password")}
          <input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />
        </label>
        <label class="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.currentTarget.checked)} />
          {t("login.remember")}
        </label>
        {error && (
          <p class="error" role="alert" data-test="login-error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy} data-test="login-submit">
          {busy ? t("login.busy") : t("login.submit")}
        </button>
      </form>
    </main>
  );
}
