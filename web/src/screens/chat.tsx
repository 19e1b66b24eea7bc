import { type ChorusClient, type Message, peerOf, preview } from "@chorus/client";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { useT } from "../context.js";
import { GroupPanel } from "./group.js";
import { useClientVersion } from "./main.js";

interface Props {
  client: ChorusClient;
  conversation: string;
}

interface Outgoing {
  key: string;
  text: string;
  error?: string;
}

function time(ms: number): string {
  return ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

export function Chat({ client, conversation }: Props) {
  const t = useT();
  useClientVersion(client);
  const [draft, setDraft] = useState("");
  const [outgoing, setOutgoing] = useState<Outgoing[]>([]);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [recallError, setRecallError] = useState<{ seq: number; message: string } | null>(null);
  const list = useRef<HTMLOListElement>(null);
  const stickToBottom = useRef(true);
  const me = client.session?.userId ?? "";
  const summary = client.conversation(conversation);
  const held = client.messages(conversation);
  // Read up to the newest seq held, a recall's notice included: it counts as unread.
  const newest = held.length ? held[held.length - 1].seq : 0;
  // A recall's notice is shown where it acts: on the message it recalled.
  const messages = held.filter((m) => m.content.kind !== "recallNotice");
  const direct = peerOf(conversation, me) !== null;

  // Reading the open conversation moves the read cursor (and clears the badge
  // everywhere), past one's own messages too: the server counts them as unread.
  useEffect(() => {
    if (newest > (summary?.readSeq ?? 0) && client.state === "online" && document.visibilityState !== "hidden") {
      void client.markRead(conversation, newest).catch(() => {});
    }
  }, [newest, summary?.readSeq, client.state]);

  useLayoutEffect(() => {
    const el = list.current;
    if (el && stickToBottom.current) el.scrollTop = el.scrollHeight;
  });

  const older = async () => {
    if (loadingOlder) return;
    setLoadingOlder(true);
    const el = list.current;
    const before = el ? el.scrollHeight - el.scrollTop : 0;
    try {
      await client.loadOlder(conversation);
    } finally {
      setLoadingOlder(false);
      requestAnimationFrame(() => {
        if (el) el.scrollTop = el.scrollHeight - before;
      });
    }
  };

  const onScroll = () => {
    const el = list.current;
    if (!el) return;
    stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop === 0 && (messages[0]?.seq ?? 1) > 1) void older();
  };

  const send = (ev: Event) => {
    ev.preventDefault();
    const text = draft.trim();
    if (!text) return;
    setDraft("");
    stickToBottom.current = true;
    const key = `${Date.now()}-${Math.random()}`;
    setOutgoing((o) => [...o, { key, text }]);
    // "@all" as a word mentions everyone; the server allows it to the owner and admins only.
    const mentionAll = text.split(/\s+/).includes("@all");
    client.send(conversation, { kind: "text", text, mentions: [], mentionAll }).then(
      () => setOutgoing((o) => o.filter((x) => x.key !== key)),
      (err: Error) => setOutgoing((o) => o.map((x) => (x.key === key ? { ...x, error: err.message } : x))),
    );
  };

  const recall = (m: Message) => {
    setRecallError(null);
    client.recall(conversation, m.seq).catch((err: Error) => setRecallError({ seq: m.seq, message: err.message }));
  };

  const body = (m: Message) => {
    if (m.content.kind !== "recalled") return <bdi class="text">{preview(m.content)}</bdi>;
    const by = m.content.by === me ? t("chat.recalled.me") : t("chat.recalled.other", { name: summary?.title ?? m.content.by });
    return (
      <span class="recalled" data-test="recalled">
        {by}
      </span>
    );
  };

  const recallable = (m: Message) => m.sender === me && ["text", "emoji", "file"].includes(m.content.kind);

  const receipt = (m: Message) => {
    if (m.sender !== me || !direct) return null;
    const read = (summary?.peerReadSeq ?? 0) >= m.seq;
    return (
      <span class={read ? "receipt read" : "receipt"} data-test="receipt" data-read={read ? "true" : "false"}>
        {read ? t("chat.read") : t("chat.unread")}
      </span>
    );
  };

  return (
    <section class="chat" aria-label={summary?.title || conversation}>
      <h2 class="chat-title">
        {summary?.title || conversation}
        {summary?.dnd && (
          <span class="dnd" data-test="chat-dnd" title={t("group.dnd")}>
            {" "}
            🔕
          </span>
        )}
      </h2>
      <GroupPanel client={client} conversation={conversation} />
      <ol class="messages" ref={list} onScroll={onScroll} data-test="messages">
        {(messages[0]?.seq ?? 1) > 1 && (
          <li class="older">
            <button class="link" onClick={older} disabled={loadingOlder}>
              {t("chat.older")}
            </button>
          </li>
        )}
        {messages.map((m) => (
          <li key={m.seq} class={m.sender === me ? "msg mine" : "msg"} data-test="message" data-seq={m.seq}>
            <div class={m.content.kind === "recalled" ? "bubble recalled-bubble" : "bubble"}>{body(m)}</div>
            <div class="meta">
              {m.sender === me ? t("chat.me") : summary?.title} · {time(m.serverTimeMs)} {receipt(m)}
              {recallable(m) && (
                <button class="link recall" onClick={() => recall(m)} data-test="recall">
                  {t("chat.recall")}
                </button>
              )}
              {recallError?.seq === m.seq && (
                <span class="error" data-test="recall-error">
                  {t("chat.recall.failed", { message: recallError.message })}
                </span>
              )}
            </div>
          </li>
        ))}
        {outgoing.map((o) => (
          <li key={o.key} class="msg mine pending">
            <div class="bubble">
              <bdi class="text">{o.text}</bdi>
            </div>
            <div class="meta">{o.error ? t("chat.failed", { message: o.error }) : t("chat.sending")}</div>
          </li>
        ))}
      </ol>
      <form class="composer" onSubmit={send}>
        <textarea
          aria-label={t("chat.placeholder")}
          placeholder={t("chat.placeholder")}
          value={draft}
          onInput={(e) => setDraft(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
          }}
          rows={2}
          data-test="composer"
        />
        <button type="submit" data-test="send">
          {t("chat.send")}
        </button>
      </form>
    </section>
  );
}
