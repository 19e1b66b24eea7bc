import type { ChorusClient, ConnectionState } from "@chorus/client";
import { useEffect, useRef, useState } from "preact/hooks";

import { AdminApi } from "../admin/api.js";
import { useT } from "../context.js";
import { Chat } from "./chat.js";
import { ConversationList } from "./conversations.js";
import { PasswordDialog } from "./password.js";
import { ProfileDialog } from "./profile.js";

interface Props {
  client: ChorusClient;
  onLeave: (logout: boolean) => void;
  onSwitchLang: () => void;
}

/** Re-renders the caller on every change the client reports. */
export function useClientVersion(client: ChorusClient): number {
  const [version, setVersion] = useState(0);
  useEffect(() => {
    const bump = () => setVersion((v) => v + 1);
    const offs = [
      client.on("conversation", bump),
      client.on("message", bump),
      client.on("state", bump),
      client.on("receipt", bump),
      client.on("favourite", bump),
    ];
    // Changes between the first render and this subscription.
    bump();
    return () => offs.forEach((off) => off());
  }, [client]);
  return version;
}

export function Main({ client, onLeave, onSwitchLang }: Props) {
  const t = useT();
  const [open, setOpen] = useState<string | null>(null);
  // The message a search hit or the history manager asked to show.
  const [focus, setFocus] = useState<{ conversation: string; seq: number; nonce: number } | null>(null);
  // Every jump gets a new nonce, so that the same message can be jumped to again.
  const jumps = useRef(0);
  const [state, setState] = useState<ConnectionState>(client.state);
  const [ended, setEnded] = useState<{ code: string; reason: string } | null>(null);
  const [changingPassword, setChangingPassword] = useState(false);
  const [editingProfile, setEditingProfile] = useState(false);
  useEffect(() => {
    const offs = [client.on("state", setState), client.on("ended", (e) => e.code !== "LOGGED_OUT" && setEnded(e))];
    setState(client.state);
    return () => offs.forEach((off) => off());
  }, [client]);
  // Administrators get a link to the console.
  const [admin, setAdmin] = useState(false);
  useEffect(() => {
    new AdminApi(client.session?.token ?? "").me().then(
      (me) => setAdmin(me.admin),
      () => setAdmin(false),
    );
  }, [client]);
  // Learn the favourite contacts once online, for the chat's ☆ toggle.
  useEffect(() => {
    if (state === "online") void client.favourites(1).catch(() => {});
  }, [client, state === "online"]);

  // Opening a conversation from the list shows its newest messages.
  const openConversation = (conversation: string) => {
    setFocus(null);
    setOpen(conversation);
  };
  const jump = (conversation: string, seq: number) => {
    setOpen(conversation);
    setFocus({ conversation, seq, nonce: ++jumps.current });
  };

  if (ended) {
    return (
      <main class="ended" data-test="ended">
        <p role="alert">{ended.code === "CONFLICT" ? t("main.ended.CONFLICT") : t("main.ended.other", { reason: ended.reason })}</p>
        <button onClick={() => onLeave(false)}>{t("main.ended.again")}</button>
      </main>
    );
  }

  return (
    <div class="main">
      <header class="bar">
        <strong>{t("app.title")}</strong>
        <button class="link me" onClick={() => setEditingProfile(true)} title={t("profile.open")} data-test="me">
          {client.session?.account}
        </button>
        <span class="spacer" />
        {admin ? (
          <a href="/admin" data-test="admin-open">
            {t("admin.open")}
          </a>
        ) : null}
        <button class="link" onClick={onSwitchLang}>
          {t("lang.switch")}
        </button>
        <button class="link" onClick={() => setChangingPassword(true)} data-test="password-open">
          {t("password.open")}
        </button>
        <button class="link" onClick={() => onLeave(true)} data-test="logout">
          {t("main.logout")}
        </button>
      </header>
      {changingPassword ? <PasswordDialog client={client} onClose={() => setChangingPassword(false)} /> : null}
      {editingProfile ? <ProfileDialog client={client} onClose={() => setEditingProfile(false)} /> : null}
      {state === "offline" || state === "connecting" ? (
        <div class="banner" role="status" data-test="offline">
          {t("main.offline")}
        </div>
      ) : state === "syncing" ? (
        <div class="banner quiet" role="status">
          {t("main.syncing")}
        </div>
      ) : null}
      <div class="panes">
        <ConversationList client={client} open={open} onOpen={openConversation} onJump={jump} />
        {open ? (
          <Chat
            key={open}
            client={client}
            conversation={open}
            focus={focus?.conversation === open ? focus : undefined}
            onJump={(seq) => jump(open, seq)}
          />
        ) : (
          <section class="chat empty">{t("chat.none")}</section>
        )}
      </div>
    </div>
  );
}
