// An in-memory stand-in for Chorus nodes that speaks the JSON text mapping:
// enough of login, resume, sync, pull, send (with dedupe), read and search to
// test the client's catch-up, retries and reconnects without a real node.

import type { SocketLike } from "../src/index.js";
import type {
  ClientFrame,
  ServerFrame,
  WireContent,
  WireMessage,
  WireSearchHit,
  WireSearchRequest,
  WireSearchResult,
} from "../src/wire.js";

interface StoredMessage extends WireMessage {
  seq: string;
}

export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  userId: string | null = null;

  constructor(
    readonly server: FakeServer,
    readonly url: string,
  ) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("socket not open");
    const frame = JSON.parse(data) as ClientFrame;
    this.server.received.push({ url: this.url, frame });
    queueMicrotask(() => this.server.handle(this, frame));
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.server.sockets.delete(this);
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }

  deliver(frame: ServerFrame): void {
    if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(frame) });
  }
}

export class FakeServer {
  readonly sockets = new Set<FakeSocket>();
  readonly received: { url: string; frame: ClientFrame }[] = [];
  readonly logs = new Map<string, StoredMessage[]>();
  readonly dedup = new Map<string, string>();
  readonly readSeqs = new Map<string, number>();
  readonly titles = new Map<string, string>();
  /** URLs that refuse connections (the socket closes before opening). */
  readonly down = new Set<string>();
  /** Per kind of request, answers to give before serving normally. */
  readonly script: { kind: keyof ClientFrame; answer: (socket: FakeSocket, frame: ClientFrame) => boolean }[] = [];
  /** Frames held back from the given kinds until released. */
  holdPulls = false;
  private held: (() => void)[] = [];
  private tokenSeq = 0;
  readonly tokens = new Map<string, string>();

  constructor(readonly users: Record<string, { id: string; password: string }>) {}

  factory = (url: string): SocketLike => {
    const socket = new FakeSocket(this, url);
    queueMicrotask(() => {
      if (this.down.has(url)) {
        socket.readyState = 3;
        socket.onclose?.({ code: 1006, reason: "refused" });
        return;
      }
      socket.readyState = 1;
      this.sockets.add(socket);
      socket.onopen?.({});
    });
    return socket;
  };

  releasePulls(): void {
    this.holdPulls = false;
    for (const go of this.held.splice(0)) go();
  }

  /** Appends a message as if another client sent it; returns it. */
  append(conversation: string, sender: string, text: string): StoredMessage {
    const log = this.logs.get(conversation) ?? [];
    this.logs.set(conversation, log);
    const seq = String(log.length + 1);
    const m: StoredMessage = {
      conversation,
      seq,
      messageId: `${conversation}:${seq}`,
      sender,
      clientMsgId: `x-${seq}`,
      serverTimeMs: String(1_000 + log.length),
      content: { text: { text } },
    };
    log.push(m);
    return m;
  }

  /** Pushes a stored message to every socket of the given user. */
  push(userId: string, m: WireMessage): void {
    for (const s of this.sockets) if (s.userId === userId) s.deliver({ message: m });
  }

  kick(userId: string, code: number, reason: string): void {
    for (const s of [...this.sockets]) if (s.userId === userId) s.close(code, reason);
  }

  handle(socket: FakeSocket, frame: ClientFrame): void {
    const i = this.script.findIndex((s) => frame[s.kind] !== undefined);
    if (i >= 0) {
      const [entry] = this.script.splice(i, 1);
      if (entry.answer(socket, frame)) return;
    }
    const reply = (body: ServerFrame) => socket.deliver({ requestId: frame.requestId, ...body });
    const fail = (code: NonNullable<ServerFrame["error"]>["code"], message: string) =>
      reply({ error: { code, message } });
    if (frame.login) {
      const user = this.users[frame.login.account];
      if (!user || user.password !== frame.login.password) return fail("UNAUTHENTICATED", "wrong account or password");
      const token = `t${++this.tokenSeq}`;
      this.tokens.set(token, user.id);
      socket.userId = user.id;
      return reply({ session: { token, userId: user.id, account: frame.login.account, deviceClass: "WEB", heartbeatSecs: 30 } });
    }
    if (frame.resume) {
      const userId = this.tokens.get(frame.resume.token);
      if (!userId) return fail("UNAUTHENTICATED", "unknown or revoked token");
      socket.userId = userId;
      return reply({ session: { token: frame.resume.token, userId, deviceClass: "WEB", heartbeatSecs: 30 } });
    }
    if (!socket.userId) return fail("UNAUTHENTICATED", "log in first");
    const me = socket.userId;
    if (frame.ping) return reply({ pong: {} });
    if (frame.sync) {
      const conversations = [...this.logs.entries()].map(([conversation, log]) => ({
        conversation,
        maxSeq: String(log.length),
        readSeq: String(this.readSeqs.get(`${me}|${conversation}`) ?? 0),
        title: this.titles.get(conversation) ?? conversation,
      }));
      return reply({ sync: { conversations } });
    }
    if (frame.pull) {
      const { conversation, afterSeq, limit } = frame.pull;
      const serve = () => {
        const log = this.logs.get(conversation) ?? [];
        const after = Number(afterSeq);
        const max = limit || 100;
        const messages = log.slice(after, after + max);
        reply({ pull: { conversation, messages, hasMore: after + max < log.length, maxSeq: String(log.length) } });
      };
      if (this.holdPulls) this.held.push(serve);
      else serve();
      return;
    }
    if (frame.send) {
      const { clientMsgId, conversation, forwardOf } = frame.send;
      let content = frame.send.content;
      if (forwardOf) {
        // As the server does: the source's content, its mentions dropped.
        if (content) return fail("INVALID", "a forward takes its content from forward_of: leave content out");
        const source = (this.logs.get(forwardOf.conversation) ?? [])[Number(forwardOf.seq) - 1];
        if (!source?.content) return fail("NOT_FOUND", `no message ${forwardOf.seq} in ${forwardOf.conversation}`);
        content = source.content.text ? { text: { text: source.content.text.text } } : source.content;
      }
      if (!content) return fail("INVALID", "message has no content");
      const key = `${me}|${conversation}|${clientMsgId}`;
      const seen = this.dedup.get(key);
      if (seen) {
        const m = (this.logs.get(conversation) ?? [])[Number(seen) - 1];
        return reply({ ack: { clientMsgId, conversation, seq: seen, messageId: m.messageId, serverTimeMs: m.serverTimeMs, duplicate: true } });
      }
      const m = this.store(conversation, me, clientMsgId, content);
      this.dedup.set(key, m.seq);
      return reply({ ack: { clientMsgId, conversation, seq: m.seq, messageId: m.messageId, serverTimeMs: m.serverTimeMs } });
    }
    if (frame.read) {
      const key = `${me}|${frame.read.conversation}`;
      const readSeq = Math.max(this.readSeqs.get(key) ?? 0, Number(frame.read.seq));
      this.readSeqs.set(key, readSeq);
      return reply({ read: { conversation: frame.read.conversation, readSeq: String(readSeq) } });
    }
    if (frame.search) {
      const result = this.search(frame.search);
      if (typeof result === "string") return fail("INVALID", result);
      return reply({ search: result });
    }
    if (frame.logout) return reply({ loggedOut: {} });
    fail("INVALID", "not served by the fake");
  }

  /**
   * A stand-in for the search plane: every space-separated part a
   * substring of a text (case-insensitive), newest first, a page at a time
   * (the cursor is the count of hits already shown), highlights in code
   * points as the server counts them.
   */
  private search(r: WireSearchRequest): WireSearchResult | string {
    const query = (r.query ?? "").trim();
    if (!query && (!r.kind || !r.conversation)) return "a search needs a query, or a conversation and a kind to list";
    const parts = query.toLowerCase().split(/\s+/).filter((p) => p);
    const found: { m: StoredMessage; text: string }[] = [];
    for (const [conversation, log] of this.logs) {
      if (r.conversation && r.conversation !== conversation) continue;
      for (const m of log) {
        const text = m.content?.text?.text ?? m.content?.file?.name ?? "";
        if (r.sender && m.sender !== r.sender) continue;
        const time = Number(m.serverTimeMs);
        if ((r.fromMs && time < Number(r.fromMs)) || (r.toMs && time > Number(r.toMs))) continue;
        const link = /https?:\/\/\S+/.test(text);
        if (r.kind === "SEARCH_KIND_LINK" && !link) continue;
        if (r.kind === "SEARCH_KIND_TEXT" && !m.content?.text) continue;
        if (r.kind === "SEARCH_KIND_FILE" && !m.content?.file) continue;
        if (r.kind === "SEARCH_KIND_IMAGE" && !m.content?.file?.image) continue;
        if (parts.every((p) => text.toLowerCase().includes(p))) found.push({ m, text });
      }
    }
    found.sort((a, b) => Number(b.m.serverTimeMs) - Number(a.m.serverTimeMs) || a.m.conversation!.localeCompare(b.m.conversation!));
    const from = Number(r.cursor || "0");
    const limit = r.limit || 20;
    const page = found.slice(from, from + limit);
    const hits: WireSearchHit[] = page.map(({ m, text }) => {
      const chars = Array.from(text);
      const lower = chars.map((c) => c.toLowerCase());
      const highlights: { start?: number; end?: number }[] = [];
      for (const p of parts) {
        const want = Array.from(p);
        for (let i = 0; i + want.length <= lower.length; i++) {
          if (want.every((c, j) => lower[i + j] === c)) {
            // proto3 JSON leaves a 0 out.
            highlights.push(i === 0 ? { end: want.length } : { start: i, end: i + want.length });
            break;
          }
        }
      }
      return { message: m, fragment: text, highlights, links: text.match(/https?:\/\/\S+/g) ?? [] };
    });
    return { hits, nextCursor: from + limit < found.length ? String(from + limit) : undefined };
  }

  private store(conversation: string, sender: string, clientMsgId: string, content: WireContent): StoredMessage {
    const log = this.logs.get(conversation) ?? [];
    this.logs.set(conversation, log);
    const seq = String(log.length + 1);
    const m: StoredMessage = {
      conversation,
      seq,
      messageId: `${conversation}:${seq}`,
      sender,
      clientMsgId,
      serverTimeMs: String(1_000 + log.length),
      content,
    };
    log.push(m);
    return m;
  }
}

/** Waits until check() holds, failing after the deadline; never a fixed sleep. */
export async function until(what: string, check: () => boolean, deadlineMs = 3_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
