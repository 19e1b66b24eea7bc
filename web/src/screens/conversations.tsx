import { type ChorusClient, ChorusError, previewMessage } from "@chorus/client";
import { useState } from "preact/hooks";

import { useT } from "../context.js";
import { Directory } from "./directory.js";
import { PersonalLists } from "./lists.js";
import { NoticeList } from "./notices.js";
import { SearchBox } from "./search.js";
import { useClientVersion } from "./main.js";

interface Props {
  client: ChorusClient;
  open: string | null;
  onOpen: (conversation: string) => void;
  /** Opens a conversation at a message (a search hit). */
  onJump: (conversation: string, seq: number) => void;
}

export function ConversationList({ client, open, onOpen, onJump }: Props) {
  const t = useT();
  useClientVersion(client);
  const [peer, setPeer] = useState("");
  const [error, setError] = useState("");
  const [tab, setTab] = useState<"chats" | "contacts" | "recent" | "favourites" | "notices">("chats");
  const list = client.conversationList().filter((c) => c.maxSeq > 0 || c.id === open || c.id.startsWith("g:"));

  const start = async (ev: Event) => {
    ev.preventDefault();
    const accounts = peer.split(/[\s,，、]+/).filter((a) => a);
    if (accounts.length === 0) return;
    const account = accounts[0];
    setError("");
    if (accounts.length > 1) {
      // Several people: a temporary discussion (多人临时会话).
      let missing = account;
      try {
        const ids: string[] = [];
        for (const a of accounts) {
          missing = a;
          ids.push((await client.lookupUser(a)).userId);
        }
        missing = "";
        const group = await client.startDiscussion(ids);
        setPeer("");
        onOpen(group.conversation);
      } catch (err) {
        const code = err instanceof ChorusError ? err.code : "";
        setError(missing && (code === "NOT_FOUND" || code === "INVALID") ? t("list.new.notfound", { account: missing }) : String((err as Error).message));
      }
      return;
    }
    try {
      const user = await client.lookupUser(account);
      client.openDirect(user.conversation, user.account);
      setPeer("");
      onOpen(user.conversation);
    } catch (err) {
      const code = err instanceof ChorusError ? err.code : "";
      setError(code === "NOT_FOUND" || code === "INVALID" ? t("list.new.notfound", { account }) : String((err as Error).message));
    }
  };

  return (
    <nav class="conversations" aria-label={t("list.heading")}>
      <SearchBox client={client} open={open} onJump={onJump}>
        <form class="new-chat" onSubmit={start}>
          <input
            aria-label={t("list.new")}
            placeholder={t("list.new")}
            value={peer}
            onInput={(e) => setPeer(e.currentTarget.value)}
            data-test="new-chat"
          />
          <button type="submit" data-test="new-chat-go">
            {t("list.new.go")}
          </button>
        </form>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="tabs" role="tablist">
          {(["chats", "contacts", "recent", "favourites", "notices"] as const).map((name) => (
            <button
              key={name}
              role="tab"
              aria-selected={tab === name ? "true" : "false"}
              class={tab === name ? "link tab current" : "link tab"}
              onClick={() => setTab(name)}
              data-test={`tab-${name}`}
            >
              {t(`lists.tab.${name}`)}
            </button>
          ))}
        </div>
        {(tab === "recent" || tab === "favourites") && <PersonalLists client={client} kind={tab} onOpen={onOpen} />}
        {tab === "notices" && <NoticeList client={client} />}
        {tab === "contacts" && <Directory client={client} onOpen={onOpen} />}
        {tab === "chats" && list.length === 0 && <p class="quiet">{t("list.empty")}</p>}
        <ul hidden={tab !== "chats"}>
          {list.map((c) => (
            <li key={c.id}>
              <button
                class={c.id === open ? "conv current" : "conv"}
                onClick={() => onOpen(c.id)}
                data-test="conversation"
                data-conversation={c.id}
                aria-current={c.id === open ? "true" : undefined}
              >
                <span class="title">{c.title || c.id}</span>
                {c.mentioned && c.id !== open && (
                  <span class="mention" data-test="mentioned">
                    {t("list.mentioned")}
                  </span>
                )}
                {c.dnd && (
                  <span class="dnd" aria-label={t("group.dnd")} data-test="dnd-mark">
                    🔕
                  </span>
                )}
                {c.unread > 0 && c.id !== open && (
                  <span class="badge" aria-label={t("list.unread", { count: c.unread })} data-test="unread">
                    {c.unread}
                  </span>
                )}
                <span class="last" dir="auto">
                  {c.lastMessage ? previewMessage(c.lastMessage) : ""}
                </span>
              </button>
            </li>
          ))}
        </ul>
      </SearchBox>
    </nav>
  );
}
