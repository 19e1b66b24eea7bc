import { type ChorusClient, type Message, peerOf, preview } from "@chorus/client";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { useT } from "../context.js";
import { uploadFile } from "../rest.js";
import {
  type FileContent,
  FileCard,
  ForwardDialog,
  ImageThumb,
  ImageViewer,
  type PendingUpload,
  UploadItem,
  uploadFailure,
} from "./attachments.js";
import { GroupPanel } from "./group.js";
import { HistoryPanel } from "./history.js";
import { useClientVersion } from "./main.js";

interface Props {
  client: ChorusClient;
  conversation: string;
  /** A message to show, from a search or the history manager; a new nonce jumps again. */
  focus?: { seq: number; nonce: number };
  /** Asks to show a message of this conversation (the history manager's). */
  onJump?: (seq: number) => void;
}

/** A text on its way, or a file being uploaded before its message is sent. */
interface Outgoing {
  key: string;
  text?: string;
  upload?: PendingUpload;
  error?: string;
}

function time(ms: number): string {
  return ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

export function Chat({ client, conversation, focus, onJump }: Props) {
  const t = useT();
  useClientVersion(client);
  const [draft, setDraft] = useState("");
  const [outgoing, setOutgoing] = useState<Outgoing[]>([]);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [recallError, setRecallError] = useState<{ seq: number; message: string } | null>(null);
  // Must-acknowledge messages (消息签收): the composer's flag, passwords
  // typed for signing, and what the sender last learnt of each message.
  const [mustSign, setMustSign] = useState(false);
  const [passwords, setPasswords] = useState<Record<number, string>>({});
  const [signNote, setSignNote] = useState<Record<number, string>>({});
  // Burn after reading (阅后即焚): the composer's time to live (0: off), and
  // the texts this screen revealed, shown until it closes once they burned.
  const [burnSecs, setBurnSecs] = useState(0);
  const [revealed, setRevealed] = useState<Record<number, string>>({});
  // Favourites (收藏): messages kept from this screen, and refusals.
  const [kept, setKept] = useState<Record<number, string>>({});
  const [history, setHistory] = useState(false);
  // Files (docs/decisions/0022): the image shown whole, the message being
  // forwarded (its target asked for), and what became of each forward.
  const [viewing, setViewing] = useState<{ message: Message; file: FileContent } | null>(null);
  const [forwarding, setForwarding] = useState<Message | null>(null);
  const [forwarded, setForwarded] = useState<Record<number, string>>({});
  const attachInput = useRef<HTMLInputElement>(null);
  // Older pages loaded for a jump, to render them.
  const [, setLoaded] = useState(0);
  const list = useRef<HTMLOListElement>(null);
  const stickToBottom = useRef(true);
  // The nonce of the last jump scrolled to, and whether older pages are on their way for one.
  const jumpedTo = useRef<number | null>(null);
  const loadingForJump = useRef(false);
  const me = client.session?.userId ?? "";
  const summary = client.conversation(conversation);
  const held = client.messages(conversation);
  // A burn message from the peer stays hidden until revealed: reading past
  // it burns it, so the read cursor stops before the first one not revealed.
  const unrevealed = (m: Message) =>
    m.sender !== me && m.burnAfterSecs > 0 && m.content.kind === "text" && revealed[m.seq] === undefined;
  const stop = held.find(unrevealed);
  // Read up to the newest seq held, a notice included: it counts as unread.
  const newest = stop ? stop.seq - 1 : held.length ? held[held.length - 1].seq : 0;
  // A recall's or burn's notice is shown where it acts: on the message it names.
  const messages = held.filter((m) => m.content.kind !== "recallNotice" && m.content.kind !== "burnNotice");
  const direct = peerOf(conversation, me) !== null;

  // Reading the open conversation moves the read cursor (and clears the badge
  // everywhere), past one's own messages too: the server counts them as unread.
  useEffect(() => {
    if (newest > (summary?.readSeq ?? 0) && client.state === "online" && document.visibilityState !== "hidden") {
      void client.markRead(conversation, newest).catch(() => {});
    }
  }, [newest, summary?.readSeq, client.state]);

  const jumping = focus !== undefined && jumpedTo.current !== focus.nonce;

  // A jump (from a search hit or the history manager): the chat holds its
  // recent history, so older pages come first until the message is held;
  // one not yet received comes with the catch-up or its push.
  useEffect(() => {
    if (!focus || !jumping || loadingForJump.current) return;
    if (held.some((m) => m.seq === focus.seq)) return;
    const oldest = held[0]?.seq;
    if (oldest === undefined || oldest < focus.seq) return;
    loadingForJump.current = true;
    client.loadOlder(conversation).then(
      (older) => {
        loadingForJump.current = false;
        if (older.length > 0) setLoaded((n) => n + 1);
      },
      () => {
        loadingForJump.current = false;
      },
    );
  });

  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (focus && jumping) {
      const target = el.querySelector(`[data-seq="${focus.seq}"]`);
      if (!target) return;
      jumpedTo.current = focus.nonce;
      stickToBottom.current = false;
      target.scrollIntoView({ block: "center" });
      return;
    }
    if (stickToBottom.current) el.scrollTop = el.scrollHeight;
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
    const signOff = mustSign ? "confirm" : "none";
    setMustSign(false);
    const burnAfterSecs = direct ? burnSecs : 0;
    client.send(conversation, { kind: "text", text, mentions: [], mentionAll }, { signOff, burnAfterSecs }).then(
      () => setOutgoing((o) => o.filter((x) => x.key !== key)),
      (err: Error) => setOutgoing((o) => o.map((x) => (x.key === key ? { ...x, error: err.message } : x))),
    );
  };

  const changeOutgoing = (key: string, change: Partial<Outgoing> | null) =>
    setOutgoing((o) => (change ? o.map((x) => (x.key === key ? { ...x, ...change } : x)) : o.filter((x) => x.key !== key)));

  // Each file uploads on its own, then its message is sent. Sign-off applies
  // to it as to a text; burn after reading does not: a file's card shows
  // (and so would burn) on sight, without the reveal step a text has.
  const attach = (files: File[]) => {
    const token = client.session?.token;
    if (!token || files.length === 0) return;
    const signOff = mustSign ? "confirm" : "none";
    setMustSign(false);
    stickToBottom.current = true;
    for (const file of files) {
      const key = `${Date.now()}-${Math.random()}`;
      const controller = new AbortController();
      const upload: PendingUpload = { name: file.name, size: file.size, sent: 0, sending: false, controller };
      setOutgoing((o) => [...o, { key, upload }]);
      const progress = (sent: number) =>
        setOutgoing((o) => o.map((x) => (x.key === key && x.upload ? { ...x, upload: { ...x.upload, sent } } : x)));
      uploadFile(token, conversation, file, progress, controller.signal)
        .then((f) => {
          setOutgoing((o) => o.map((x) => (x.key === key && x.upload ? { ...x, upload: { ...x.upload, sending: true } } : x)));
          const content: FileContent = {
            kind: "file",
            fileId: f.file_id,
            name: f.name,
            size: f.size,
            mimeType: f.mime_type,
            image: f.image,
            width: f.width,
            height: f.height,
            thumbnail: f.thumbnail,
          };
          return client.send(conversation, content, { signOff });
        })
        .then(
          () => changeOutgoing(key, null),
          // A cancelled upload just goes; a failed one says why until dismissed.
          (err: unknown) => changeOutgoing(key, controller.signal.aborted ? null : { error: uploadFailure(t, err) }),
        );
    }
  };

  // A pasted image is sent as a file; a paste holding text too (a cell
  // copied from a spreadsheet carries its picture) stays a text paste.
  const onPaste = (ev: ClipboardEvent) => {
    const data = ev.clipboardData;
    if (!data || data.getData("text/plain")) return;
    const images = Array.from(data.files).filter((f) => f.type.startsWith("image/"));
    if (images.length === 0) return;
    ev.preventDefault();
    attach(images);
  };

  const forwardable = (m: Message) => m.burnAfterSecs === 0 && ["text", "emoji", "file"].includes(m.content.kind);

  const forward = (m: Message, target: string) => {
    setForwarding(null);
    const say = (text: string) => setForwarded((f) => ({ ...f, [m.seq]: text }));
    const name = client.conversation(target)?.title || target;
    say(t("forward.sending"));
    // The content passed is the source's as held: what the forward shows here once acked.
    client.send(target, m.content, { forwardOf: { conversation, seq: m.seq } }).then(
      () => say(t("forward.done", { name })),
      (err: Error) => say(t("forward.failed", { message: err.message })),
    );
  };

  const recall = (m: Message) => {
    setRecallError(null);
    client.recall(conversation, m.seq).catch((err: Error) => setRecallError({ seq: m.seq, message: err.message }));
  };

  const body = (m: Message) => {
    if (m.content.kind === "burned") {
      const text = revealed[m.seq];
      const gone = (
        <span class="burned" data-test="burned">
          🔥 {t(m.content.reason === "expired" ? "burn.burned.expired" : "burn.burned.read")}
        </span>
      );
      if (text === undefined) return gone;
      return (
        <>
          <bdi class="text" data-test="burn-revealed">
            {text}
          </bdi>{" "}
          {gone}
        </>
      );
    }
    if (unrevealed(m)) {
      return (
        <button class="link burn-reveal" onClick={() => reveal(m)} data-test="burn-reveal">
          🔥 {t("burn.reveal")}
        </button>
      );
    }
    if (m.content.kind !== "recalled") {
      const file = m.content.kind === "file" ? m.content : null;
      return (
        <>
          {file?.image && file.thumbnail ? (
            <ImageThumb client={client} message={m} file={file} onOpen={() => setViewing({ message: m, file })} />
          ) : file ? (
            <FileCard client={client} message={m} file={file} />
          ) : (
            <bdi class="text">{preview(m.content)}</bdi>
          )}
          {m.burnAfterSecs > 0 && (
            <span class="burn-badge" data-test="burn-badge" title={t("burn.badge")}>
              {" "}
              🔥
            </span>
          )}
        </>
      );
    }
    const by = m.content.by === me ? t("chat.recalled.me") : t("chat.recalled.other", { name: summary?.title ?? m.content.by });
    return (
      <span class="recalled" data-test="recalled">
        {by}
      </span>
    );
  };

  // Revealing keeps the text on this screen; the effect above then reads past it.
  const reveal = (m: Message) => setRevealed((r) => ({ ...r, [m.seq]: preview(m.content) }));

  const note = (seq: number, text: string) => setSignNote((n) => ({ ...n, [seq]: text }));

  const sign = (m: Message) => {
    client.sign(conversation, m.seq, passwords[m.seq] ?? "").then(
      () => note(m.seq, ""),
      (err: Error) => note(m.seq, t("sign.failed", { message: err.message })),
    );
  };

  const showStatus = (m: Message) => {
    client.signStatus(conversation, m.seq).then(
      (s) => note(m.seq, t("sign.status", { signed: String(s.signedCount), count: String(s.recipientCount) })),
      (err: Error) => note(m.seq, err.message),
    );
  };

  const remind = (m: Message) => {
    client.remind(conversation, m.seq).then(
      (users) => note(m.seq, t("sign.reminded", { count: String(users.length) })),
      (err: Error) => note(m.seq, err.message),
    );
  };

  const signControls = (m: Message) => {
    if (m.signOff === "none" || m.content.kind === "recalled" || m.content.kind === "burned") return null;
    const noteOf = signNote[m.seq] ? (
      <span class="sign-note" data-test="sign-note">
        {signNote[m.seq]}
      </span>
    ) : null;
    if (m.sender === me) {
      return (
        <span class="sign" data-test="sign-sender">
          <button class="link" onClick={() => showStatus(m)} data-test="sign-status">
            {t("sign.refresh")}
          </button>
          <button class="link" onClick={() => remind(m)} data-test="sign-remind">
            {t("sign.remind")}
          </button>
          {noteOf}
        </span>
      );
    }
    if (m.signedAtMs) {
      return (
        <span class="sign signed" data-test="signed">
          {t("sign.signed")}
        </span>
      );
    }
    return (
      <span class="sign pending" data-test="sign-pending">
        {t("sign.pending")}
        {m.signOff === "password" && (
          <input
            type="password"
            aria-label={t("sign.password")}
            placeholder={t("sign.password")}
            value={passwords[m.seq] ?? ""}
            onInput={(e) => {
              const value = e.currentTarget.value;
              setPasswords((p) => ({ ...p, [m.seq]: value }));
            }}
            data-test="sign-password"
          />
        )}
        <button class="link" onClick={() => sign(m)} data-test="sign">
          {t("sign.sign")}
        </button>
        {noteOf}
      </span>
    );
  };

  const keepable = (m: Message) => m.burnAfterSecs === 0 && ["text", "emoji", "file"].includes(m.content.kind);

  const keep = (m: Message) => {
    client.setFavourite({ message: { conversation, seq: m.seq } }, true).then(
      () => setKept((k) => ({ ...k, [m.seq]: t("lists.kept") })),
      (err: Error) => setKept((k) => ({ ...k, [m.seq]: err.message })),
    );
  };

  const peer = peerOf(conversation, me);
  const favouriteContact = peer !== null && client.isFavouriteContact(peer);

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
      <div class="chat-tools">
        {peer !== null && (
          <button
            class="link favourite-contact"
            onClick={() => void client.setFavourite({ contact: peer }, !favouriteContact).catch(() => {})}
            data-test="favourite-contact"
            data-on={favouriteContact ? "true" : "false"}
          >
            {favouriteContact ? `★ ${t("lists.contact.on")}` : `☆ ${t("lists.contact.off")}`}
          </button>
        )}
        <button
          class="link history-manager"
          onClick={() => setHistory(!history)}
          aria-expanded={history ? "true" : "false"}
          data-test="history-manager"
        >
          {t("history.open")}
        </button>
      </div>
      {history && (
        <HistoryPanel client={client} conversation={conversation} onJump={(seq) => onJump?.(seq)} onClose={() => setHistory(false)} />
      )}
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
          <li
            key={m.seq}
            class={`${m.sender === me ? "msg mine" : "msg"}${focus?.seq === m.seq ? " focused" : ""}`}
            data-test="message"
            data-seq={m.seq}
            data-focused={focus?.seq === m.seq ? "true" : undefined}
          >
            <div class={["recalled", "burned"].includes(m.content.kind) ? "bubble recalled-bubble" : "bubble"}>
              {body(m)}
            </div>
            <div class="meta">
              {m.sender === me ? t("chat.me") : summary?.title} · {time(m.serverTimeMs)} {receipt(m)}
              {recallable(m) && (
                <button class="link recall" onClick={() => recall(m)} data-test="recall">
                  {t("chat.recall")}
                </button>
              )}
              {keepable(m) &&
                (kept[m.seq] ? (
                  <span class="kept" data-test="kept">
                    {kept[m.seq]}
                  </span>
                ) : (
                  <button class="link" onClick={() => keep(m)} data-test="keep">
                    {t("lists.keep")}
                  </button>
                ))}
              {forwardable(m) && (
                <button class="link" onClick={() => setForwarding(m)} data-test="forward-button">
                  {t("forward.action")}
                </button>
              )}
              {forwarded[m.seq] && (
                <span class="forwarded" data-test="forward-note">
                  {forwarded[m.seq]}
                </span>
              )}
              {recallError?.seq === m.seq && (
                <span class="error" data-test="recall-error">
                  {t("chat.recall.failed", { message: recallError.message })}
                </span>
              )}
              {signControls(m)}
            </div>
          </li>
        ))}
        {outgoing.map((o) =>
          o.upload ? (
            <UploadItem key={o.key} upload={o.upload} error={o.error} onDismiss={() => changeOutgoing(o.key, null)} />
          ) : (
            <li key={o.key} class="msg mine pending">
              <div class="bubble">
                <bdi class="text">{o.text}</bdi>
              </div>
              <div class="meta">{o.error ? t("chat.failed", { message: o.error }) : t("chat.sending")}</div>
            </li>
          ),
        )}
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
          onPaste={onPaste}
          rows={2}
          data-test="composer"
        />
        <input
          type="file"
          multiple
          class="visually-hidden"
          ref={attachInput}
          tabIndex={-1}
          aria-hidden="true"
          onChange={(e) => {
            const input = e.currentTarget;
            attach(Array.from(input.files ?? []));
            // The same file may be picked again.
            input.value = "";
          }}
          data-test="attach-input"
        />
        <button
          type="button"
          class="link attach"
          onClick={() => attachInput.current?.click()}
          aria-label={t("file.attach")}
          title={t("file.attach")}
          data-test="attach-button"
        >
          📎
        </button>
        <label class="must-sign">
          <input
            type="checkbox"
            checked={mustSign}
            onChange={(e) => setMustSign(e.currentTarget.checked)}
            data-test="must-sign"
          />
          {t("sign.must")}
        </label>
        {direct && (
          <label class="burn">
            🔥
            <select
              aria-label={t("burn.label")}
              value={String(burnSecs)}
              onChange={(e) => setBurnSecs(Number(e.currentTarget.value))}
              data-test="burn"
            >
              {[0, 10, 60, 300, 3600].map((secs) => (
                <option key={secs} value={String(secs)}>
                  {secs ? t("burn.after", { secs: String(secs) }) : t("burn.off")}
                </option>
              ))}
            </select>
          </label>
        )}
        <button type="submit" data-test="send">
          {t("chat.send")}
        </button>
      </form>
      {viewing && (
        <ImageViewer client={client} message={viewing.message} file={viewing.file} onClose={() => setViewing(null)} />
      )}
      {forwarding && (
        <ForwardDialog client={client} onPick={(target) => forward(forwarding, target)} onClose={() => setForwarding(null)} />
      )}
    </section>
  );
}
