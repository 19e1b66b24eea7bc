// The page: the login screen until a session exists, then the main screen.
// One ChorusClient per session; the token is kept only when "remember me" is on.

import { ChorusClient, ChorusError } from "@chorus/client";
import { useEffect, useMemo, useState } from "preact/hooks";

import { type Key, type Lang, browserLang, translate } from "./i18n.js";
import { I18n, type T } from "./context.js";
import { AdminConsole } from "./admin/console.js";
import { Login } from "./screens/login.js";
import { Main } from "./screens/main.js";
import { PasswordDialog } from "./screens/password.js";

const TOKEN_KEY = "chorus.token";
const LANG_KEY = "chorus.lang";

/** The WebSocket URL of the node that served the page. */
function servers(): string[] {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return [`${scheme}//${location.host}/ws`];
}

/** The admin console is the page at /admin; everything else is the chat. */
function adminPage(): boolean {
  return location.pathname.replace(/\/+$/, "") === "/admin";
}

function newClient(): ChorusClient {
  return new ChorusClient({ servers: servers(), deviceClass: "WEB" });
}

export function App() {
  const [lang, setLang] = useState<Lang>(
    () => (localStorage.getItem(LANG_KEY) as Lang | null) ?? browserLang(navigator.languages ?? [navigator.language]),
  );
  const [client, setClient] = useState<ChorusClient | null>(null);
  const [resuming, setResuming] = useState(() => localStorage.getItem(TOKEN_KEY) !== null);
  const t: T = useMemo(() => (key: Key, params?: Record<string, string | number>) => translate(lang, key, params), [lang]);

  useEffect(() => {
    document.documentElement.lang = lang;
    localStorage.setItem(LANG_KEY, lang);
  }, [lang]);

  useEffect(() => {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) return;
    const c = newClient();
    c.resume(token).then(
      () => {
        setClient(c);
        setResuming(false);
      },
      (err: ChorusError) => {
        if (err.code === "UNAUTHENTICATED") localStorage.removeItem(TOKEN_KEY);
        setResuming(false);
      },
    );
  }, []);

  const login = async (account: string, password: string, remember: boolean) => {
    const c = newClient();
    const session = await c.login(account, password);
    if (remember) localStorage.setItem(TOKEN_KEY, session.token);
    else localStorage.removeItem(TOKEN_KEY);
    setClient(c);
  };

  const leave = (logout: boolean) => {
    localStorage.removeItem(TOKEN_KEY);
    if (client && logout) void client.logout().catch(() => {});
    else client?.close();
    setClient(null);
  };

  const switchLang = () => setLang(lang === "en" ? "zh-CN" : "en");

  // A session whose password must be changed is served nothing else; once
  // the change is taken, the same token (kept by the server) resumes a
  // full session on a new socket.
  const changed = async () => {
    const token = client?.session?.token;
    client?.close();
    if (!token) return setClient(null);
    const c = newClient();
    try {
      await c.resume(token);
      setClient(c);
    } catch {
      localStorage.removeItem(TOKEN_KEY);
      setClient(null);
    }
  };

  return (
    <I18n.Provider value={t}>
      {client?.session?.mustChangePassword ? (
        <PasswordDialog client={client} forced onClose={() => leave(true)} onChanged={() => void changed()} />
      ) : client ? (
        adminPage() ? (
          <AdminConsole client={client} onLeave={leave} onSwitchLang={switchLang} />
        ) : (
          <Main client={client} onLeave={leave} onSwitchLang={switchLang} />
        )
      ) : resuming ? null : (
        <Login onLogin={login} onSwitchLang={switchLang} />
      )}
    </I18n.Provider>
  );
}
