// A Chorus client over WebSocket JSON text frames: one logical session that
// survives reconnects. It logs in or resumes, catches up from the log on
// every connect (docs/protocol.md §6), resends unacked messages with their
// client_msg_id until acked, and moves to the next server of its list with
// backoff when a connection ends.

import { Emitter } from "./emitter.js";
import {
  type Ack,
  type BurnReason,
  ChorusError,
  type Content,
  type Conversation,
  type FavouriteChange,
  type FavouriteItem,
  type Favourites,
  type Group,
  type Message,
  type Notice,
  type NoticeStats,
  type RecallAck,
  type SendOptions,
  type Session,
  type SignStatus,
  type RecentContact,
  type SearchRequest,
  type SearchResult,
  contentToWire,
  favouriteChangeFromWire,
  noticeFromWire,
  groupFromWire,
  messageFromWire,
  searchRequestToWire,
  searchResultFromWire,
  signOffToWire,
  signStatusFromWire,
} from "./model.js";
import {
  type ClientBody,
  type DeviceClass,
  type ErrorCode,
  type ServerFrame,
  type WireGroupChange,
  type WireSession,
  num,
} from "./wire.js";

/** The part of a WebSocket the client uses (the browser's and `ws`'s both fit). */
export interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type SocketFactory = (url: string) => SocketLike;

export type ConnectionState =
  /** No session yet, or after logout. */
  | "idle"
  | "connecting"
  /** Authenticated and catching up from the log. */
  | "syncing"
  | "online"
  /** Between connections; a reconnect is scheduled. */
  | "offline"
  /** Ended for good: logged in elsewhere, token refused, logged out. */
  | "ended";

export interface ClientEvents {
  state: ConnectionState;
  session: Session;
  /** A new message, delivered once, in seq order per conversation. */
  message: Message;
  /** A conversation's summary changed (new message, cursor, receipts). */
  conversation: Conversation;
  /** A message held was recalled: its content is now the placeholder. */
  recalled: { conversation: string; seq: number; by: string };
  /** Messages held burned after reading: their content is now the placeholder. */
  burned: { conversation: string; seqs: number[] };
  /** A group changed (by anyone, this user included): the group as it is now. */
  group: { group: Group; change: string; by: string };
  /** A recipient signed a message (pushed to its sender and the signer's devices). */
  signed: { conversation: string; seq: number; userId: string };
  /** The sender of a message asks this user to sign it. */
  signReminder: { conversation: string; seq: number; from: string };
  /** A notice addressed to this user arrived. */
  notice: Notice;
  /** A favourite was added or removed (by this user, on any device). */
  favourite: FavouriteChange;
  /** The peer of a 1:1 conversation read up to readSeq. */
  receipt: { conversation: string; reader: string; readSeq: number };
  /** The session ended and will not come back by itself. */
  ended: { code: ErrorCode | "LOGGED_OUT"; reason: string };
  /** A connection attempt failed or a connection dropped. */
  disconnected: { server: string; code: number; reason: string };
}

export interface ClientOptions {
  /** WebSocket URLs of the nodes, tried in turn: `ws://host:7180/ws`. */
  servers: string[];
  /** Creates a socket; by default the global WebSocket. */
  socket?: SocketFactory;
  deviceClass?: DeviceClass;
  /** First reconnect delay; doubled per failed attempt up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long a request waits for its answer. */
  requestTimeoutMs?: number;
  /** Messages pulled, at most, of a conversation the client has not seen. */
  initialHistory?: number;
  /** Returns a fresh client_msg_id. */
  newId?: () => string;
  random?: () => number;
}

interface Pending {
  resolve: (frame: ServerFrame) => void;
  reject: (err: ChorusError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Outgoing {
  clientMsgId: string;
  conversation: string;
  content: Content;
  options: SendOptions;
  attempts: number;
  inFlight: boolean;
  resolve: (ack: Ack) => void;
  reject: (err: ChorusError) => void;
}

interface ConversationState extends Conversation {
  messages: Map<number, Message>;
  /** Messages received past a gap, held until the gap is filled. */
  held: Map<number, Message>;
  pulling: boolean;
}

const OPEN = 1;
const PULL_PAGE = 100;

function defaultSocket(url: string): SocketLike {
  const ctor = (globalThis as { WebSocket?: new (url: string) => SocketLike }).WebSocket;
  if (!ctor) throw new Error("no global WebSocket: pass options.socket");
  return new ctor(url);
}

function defaultId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

export class ChorusClient extends Emitter<ClientEvents> {
  private readonly options: Required<ClientOptions>;
  private socket: SocketLike | null = null;
  private serverIndex = 0;
  private attempt = 0;
  private nextRequestId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly outbox: Outgoing[] = [];
  private readonly conversations = new Map<string, ConversationState>();
  private favouriteContacts = new Set<string>();
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private stateValue: ConnectionState = "idle";
  private sessionValue: Session | null = null;
  /** Bumped on every new socket, so a late event of an old one is ignored. */
  private generation = 0;

  constructor(options: ClientOptions) {
    super();
    if (options.servers.length === 0) throw new Error("no servers given");
    this.options = {
      socket: defaultSocket,
      deviceClass: "WEB",
      initialBackoffMs: 500,
      maxBackoffMs: 15_000,
      requestTimeoutMs: 12_000,
      initialHistory: 50,
      newId: defaultId,
      random: Math.random,
      ...options,
    };
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get session(): Session | null {
    return this.sessionValue;
  }

  /** Returns the conversations, newest activity first. */
  conversationList(): Conversation[] {
    return [...this.conversations.values()]
      .map((c) => this.summary(c))
      .sort((a, b) => b.lastActivityMs - a.lastActivityMs || a.id.localeCompare(b.id));
  }

  conversation(id: string): Conversation | undefined {
    const c = this.conversations.get(id);
    return c && this.summary(c);
  }

  /** Returns the messages held of a conversation, oldest first. */
  messages(id: string): Message[] {
    const c = this.conversations.get(id);
    if (!c) return [];
    return [...c.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  /** Logs in with a password; later reconnects resume with the token. */
  async login(account: string, password: string): Promise<Session> {
    return this.open({ login: { account, password, deviceClass: this.options.deviceClass } });
  }

  /** Resumes a session from a token kept from an earlier login. */
  async resume(token: string): Promise<Session> {
    return this.open({ resume: { token } });
  }

  /**
   * Sends a message; resolves with its ack. A send that meets a lost
   * connection, a timeout or UNAVAILABLE_RETRY is sent again, with the same
   * client_msg_id, until the server acks or refuses it. Options ask for
   * sign-off (消息签收) or burn after reading (阅后即焚), or forward another
   * message (its content is then the source's, as held here).
   */
  send(conversation: string, content: Content, options: SendOptions = {}): Promise<Ack> {
    contentToWire(content);
    if (options.forwardOf) {
      // Mentions name the source conversation's members: the server drops them.
      if (content.kind === "text") content = { ...content, mentions: [], mentionAll: false };
    }
    return new Promise((resolve, reject) => {
      this.outbox.push({
        clientMsgId: this.options.newId(),
        conversation,
        content,
        options,
        attempts: 0,
        inFlight: false,
        resolve,
        reject,
      });
      this.flushOutbox();
    });
  }

  /** Number of sends not yet acked. */
  get unacked(): number {
    return this.outbox.length;
  }

  /** Moves the read cursor of a conversation to seq. */
  async markRead(conversation: string, seq: number): Promise<number> {
    const frame = await this.request({ read: { conversation, seq: String(seq) } });
    const readSeq = num(frame.read?.readSeq);
    this.updateRead(conversation, readSeq);
    return readSeq;
  }

  /**
   * Recalls a message (one's own within the policy's window; a group owner's
   * or admin's any). The message held becomes the placeholder at once; the
   * other devices hear of it by the notice the server appends.
   */
  async recall(conversation: string, seq: number): Promise<RecallAck> {
    const frame = await this.request({ recall: { conversation, seq: String(seq) } });
    const r = frame.recall;
    if (!r) throw errorOf(frame);
    const ack: RecallAck = {
      conversation: r.conversation ?? conversation,
      seq: num(r.seq),
      noticeSeq: num(r.noticeSeq),
      atMs: num(r.atMs),
      duplicate: r.duplicate ?? false,
    };
    // This connection gets no push of the notice: take it in from the ack.
    const by = this.sessionValue?.userId ?? "0";
    this.ingest(this.state_(ack.conversation), {
      conversation: ack.conversation,
      seq: ack.noticeSeq,
      messageId: `${ack.conversation}:${ack.noticeSeq}`,
      sender: by,
      clientMsgId: "",
      serverTimeMs: ack.atMs,
      content: { kind: "recallNotice", seq: ack.seq, by, atMs: ack.atMs },
      readCount: 0,
      signOff: "none",
      signedAtMs: 0,
      burnAfterSecs: 0,
      burnAtMs: 0,
    });
    return ack;
  }

  /** Returns a group with its announcement's read count. */
  async getGroup(groupId: string): Promise<Group> {
    const frame = await this.request({ getGroup: { groupId } });
    if (!frame.group) throw errorOf(frame);
    return groupFromWire(frame.group);
  }

  /**
   * Changes a group (rename, avatar, announcement, owner, admins, mutes,
   * dissolve); resolves with the group as it is now.
   */
  async updateGroup(groupId: string, change: WireGroupChange): Promise<Group> {
    const frame = await this.request({ updateGroup: { groupId, change } });
    if (!frame.group) throw errorOf(frame);
    const group = groupFromWire(frame.group);
    this.applyGroup(group, Object.keys(change)[0] ?? "", this.sessionValue?.userId ?? "0");
    return group;
  }

  /**
   * Adds (on) or removes a favourite contact or message (docs/protocol.md
   * §5.26); resolves with the change, which the other devices get pushed.
   */
  async setFavourite(item: FavouriteItem, on: boolean): Promise<FavouriteChange> {
    const wire =
      "contact" in item
        ? { contact: item.contact }
        : { message: { conversation: item.message.conversation, seq: String(item.message.seq) } };
    const frame = await this.request({ setFavourite: { ...wire, on } });
    if (!frame.favouriteChanged) throw errorOf(frame);
    return this.applyFavourite(favouriteChangeFromWire(frame.favouriteChanged));
  }

  /** Returns this user's notices (or, with `sent`, those they sent), newest first. */
  async notices(sent = false, limit = 0): Promise<Notice[]> {
    const frame = await this.request({ listNotices: { limit, sent } });
    if (!frame.noticeList) throw errorOf(frame);
    return (frame.noticeList.notices ?? []).map(noticeFromWire);
  }

  /** Marks a notice read, and with `ack` acknowledged. */
  async readNotice(noticeId: string, ack = false): Promise<{ readAtMs: number; ackedAtMs: number }> {
    const frame = await this.request({ readNotice: { noticeId, ack } });
    if (!frame.noticeRead) throw errorOf(frame);
    return { readAtMs: num(frame.noticeRead.readAtMs), ackedAtMs: num(frame.noticeRead.ackedAtMs) };
  }

  /** Votes on a notice (option indexes); resolves with it and the totals. */
  async voteNotice(noticeId: string, choices: number[]): Promise<Notice> {
    const frame = await this.request({ voteNotice: { noticeId, choices } });
    if (!frame.notice) throw errorOf(frame);
    return noticeFromWire(frame.notice);
  }

  /** Returns a notice's read and vote statistics (its sender and admins). */
  async noticeStats(noticeId: string): Promise<NoticeStats> {
    const frame = await this.request({ noticeStats: { noticeId } });
    const s = frame.noticeStats;
    if (!s) throw errorOf(frame);
    return {
      recipientCount: s.recipientCount ?? 0,
      readCount: s.readCount ?? 0,
      ackedCount: s.ackedCount ?? 0,
      departments: (s.departments ?? []).map((d) => ({
        departmentId: d.departmentId ?? "0",
        name: d.name ?? "",
        recipientCount: d.recipientCount ?? 0,
        readCount: d.readCount ?? 0,
      })),
      unread: s.unread ?? [],
      totals: s.totals ?? [],
      voterCount: s.voterCount ?? 0,
    };
  }

  /** Tells whether a user is one of this user's favourite contacts (as last listed or changed). */
  isFavouriteContact(userId: string): boolean {
    return this.favouriteContacts.has(userId);
  }

  /** Returns the favourite contacts and a page of favourite messages, newest first. */
  async favourites(limit = 0, offset = 0): Promise<Favourites> {
    const frame = await this.request({ listFavourites: { limit, offset } });
    const f = frame.favourites;
    if (!f) throw errorOf(frame);
    const favourites: Favourites = {
      contacts: (f.contacts ?? []).map((c) => ({
        userId: c.userId ?? "0",
        account: c.account ?? "",
        displayName: c.displayName ?? "",
        addedAtMs: num(c.addedAtMs),
      })),
      messages: (f.messages ?? []).map((m) => ({
        conversation: m.conversation ?? "",
        seq: num(m.seq),
        addedAtMs: num(m.addedAtMs),
        message: m.message ? messageFromWire(m.message) : undefined,
      })),
      messageCount: f.messageCount ?? 0,
    };
    this.favouriteContacts = new Set(favourites.contacts.map((c) => c.userId));
    return favourites;
  }

  /** Returns the peers of this user's 1:1 conversations, latest activity first. */
  async recentContacts(limit = 0): Promise<RecentContact[]> {
    const frame = await this.request({ recentContacts: { limit } });
    if (!frame.recentContacts) throw errorOf(frame);
    return (frame.recentContacts.contacts ?? []).map((c) => ({
      userId: c.userId ?? "0",
      account: c.account ?? "",
      displayName: c.displayName ?? "",
      conversation: c.conversation ?? "",
      lastActivityMs: num(c.lastActivityMs),
    }));
  }

  /**
   * Searches the user's history (docs/decisions/0021): newest hits first,
   * a page at a time (pass the result's `nextCursor` as `cursor` for the
   * next). With an empty query, a `kind` (file, image, link) and a
   * `conversation`, lists that conversation's files, images or links. An
   * empty query otherwise is refused (INVALID).
   */
  async search(request: SearchRequest): Promise<SearchResult> {
    const frame = await this.request({ search: searchRequestToWire(request) });
    if (!frame.search) throw errorOf(frame);
    return searchResultFromWire(frame.search);
  }

  private applyFavourite(change: FavouriteChange): FavouriteChange {
    if ("contact" in change.item) {
      if (change.on) this.favouriteContacts.add(change.item.contact);
      else this.favouriteContacts.delete(change.item.contact);
    }
    this.emit("favourite", change);
    return change;
  }

  /**
   * Starts a temporary discussion with these users, named after its first
   * members (docs/protocol.md §5.27); it opens in the conversation list.
   */
  async startDiscussion(members: string[]): Promise<Group> {
    const frame = await this.request({ createGroup: { name: "", members, temporary: true } });
    if (!frame.group) throw errorOf(frame);
    const group = groupFromWire(frame.group);
    this.applyGroup(group, "start", this.sessionValue?.userId ?? "0");
    return group;
  }

  /** Leaves a group or discussion (the last to leave a discussion dissolves it). */
  async leaveGroup(groupId: string): Promise<Group> {
    const me = this.sessionValue?.userId ?? "0";
    const frame = await this.request({ changeMembers: { groupId, remove: [me] } });
    if (!frame.group) throw errorOf(frame);
    const group = groupFromWire(frame.group);
    this.applyGroup(group, "leave", me);
    return group;
  }

  /** Sets do-not-disturb for a conversation, on all of this user's devices. */
  async setDnd(conversation: string, dnd: boolean): Promise<boolean> {
    const frame = await this.request({ conversationSettings: { conversation, dnd } });
    if (!frame.conversationSettings) throw errorOf(frame);
    const c = this.state_(conversation);
    c.dnd = frame.conversationSettings.dnd ?? false;
    this.emit("conversation", this.summary(c));
    return c.dnd;
  }

  private applyGroup(group: Group, change: string, by: string): void {
    const c = this.state_(group.conversation);
    if (group.name && c.title !== group.name) c.title = group.name;
    this.emit("group", { group, change, by });
    this.emit("conversation", this.summary(c));
  }

  /**
   * Signs a message that asks for it (消息签收); `password` for one that is
   * signed with the password. The message held shows it signed at once.
   */
  async sign(conversation: string, seq: number, password = ""): Promise<number> {
    const frame = await this.request({ sign: { conversation, seq: String(seq), password } });
    if (!frame.sign) throw errorOf(frame);
    const at = num(frame.sign.signedAtMs);
    this.applySigned(conversation, seq, at);
    return at;
  }

  /** Who received, read and signed a message (its sender, a group's owner or admins, an admin). */
  async signStatus(conversation: string, seq: number): Promise<SignStatus> {
    const frame = await this.request({ signStatus: { conversation, seq: String(seq) } });
    if (!frame.signStatus) throw errorOf(frame);
    return signStatusFromWire(frame.signStatus);
  }

  /** Reminds the recipients who have not signed; resolves with their ids. */
  async remind(conversation: string, seq: number): Promise<string[]> {
    const frame = await this.request({ remind: { conversation, seq: String(seq) } });
    if (!frame.reminded) throw errorOf(frame);
    return frame.reminded.userIds ?? [];
  }

  private applySigned(conversation: string, seq: number, at: number): void {
    const c = this.conversations.get(conversation);
    if (!c) return;
    for (const held of [c.messages.get(seq), c.held.get(seq)]) {
      if (held) held.signedAtMs = at;
    }
    this.emit("conversation", this.summary(c));
  }

  /** Loads older messages of a conversation, before the oldest one held. */
  async loadOlder(conversation: string, count = PULL_PAGE): Promise<Message[]> {
    const c = this.conversations.get(conversation);
    if (!c) return [];
    const oldest = Math.min(c.cursor + 1, ...c.messages.keys());
    const after = Math.max(0, oldest - 1 - count);
    if (oldest <= 1) return [];
    const frame = await this.request({ pull: { conversation, afterSeq: String(after), limit: oldest - 1 - after } });
    const older = (frame.pull?.messages ?? []).map(messageFromWire).filter((m) => m.seq < oldest);
    for (const m of older) c.messages.set(m.seq, m);
    return older;
  }

  /** Finds a user by account; returns the 1:1 conversation id with them too. */
  async lookupUser(account: string): Promise<{ userId: string; account: string; displayName: string; conversation: string }> {
    const frame = await this.request({ lookupUser: { account } });
    return {
      userId: frame.user?.userId ?? "0",
      account: frame.user?.account ?? "",
      displayName: frame.user?.displayName ?? "",
      conversation: frame.user?.directConversation ?? "",
    };
  }

  /** Opens a 1:1 conversation locally (it exists on the server once it has a message). */
  openDirect(conversation: string, title: string): Conversation {
    const c = this.state_(conversation);
    if (!c.title) c.title = title;
    this.emit("conversation", this.summary(c));
    return this.summary(c);
  }

  /** Logs out: revokes the token and ends the session. */
  async logout(): Promise<void> {
    try {
      await this.request({ logout: {} });
    } finally {
      this.end("LOGGED_OUT", "logged out");
    }
  }

  /** Closes the connection and stops reconnecting; the token stays valid. */
  close(): void {
    this.end("LOGGED_OUT", "closed");
  }

  /** Sends a request on the live connection and waits for its answer. */
  request(body: ClientBody): Promise<ServerFrame> {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) {
      return Promise.reject(new ChorusError("DISCONNECTED", "not connected"));
    }
    return this.requestOn(socket, body);
  }

  private requestOn(socket: SocketLike, body: ClientBody): Promise<ServerFrame> {
    const requestId = String(this.nextRequestId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ChorusError("TIMEOUT", `no answer within ${this.options.requestTimeoutMs} ms`));
      }, this.options.requestTimeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      try {
        socket.send(JSON.stringify({ requestId, ...body }));
      } catch {
        clearTimeout(timer);
        this.pending.delete(requestId);
        reject(new ChorusError("DISCONNECTED", "the connection is closed"));
      }
    });
  }

  private setState(state: ConnectionState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.emit("state", state);
  }

  /** The first connection: fails (no retry) when the server refuses the login. */
  private async open(auth: ClientBody): Promise<Session> {
    if (this.stateValue !== "idle" && this.stateValue !== "ended") {
      throw new ChorusError("CONFLICT", "already logged in");
    }
    let lastError: ChorusError = new ChorusError("DISCONNECTED", "no server reachable");
    for (let i = 0; i < this.options.servers.length; i++) {
      try {
        return await this.connect(auth);
      } catch (err) {
        lastError = err instanceof ChorusError ? err : new ChorusError("DISCONNECTED", String(err));
        if (lastError.code !== "DISCONNECTED" && lastError.code !== "TIMEOUT") break;
        this.serverIndex = (this.serverIndex + 1) % this.options.servers.length;
      }
    }
    this.setState("idle");
    throw lastError;
  }

  /** Opens a socket to the current server and authenticates on it. */
  private connect(auth: ClientBody): Promise<Session> {
    this.setState("connecting");
    const generation = ++this.generation;
    const server = this.options.servers[this.serverIndex];
    return new Promise((resolve, reject) => {
      let authenticated = false;
      let socket: SocketLike;
      try {
        socket = this.options.socket(server);
      } catch (err) {
        reject(new ChorusError("DISCONNECTED", String(err)));
        return;
      }
      this.socket = socket;
      socket.onmessage = (ev) => {
        if (generation === this.generation && typeof ev.data === "string") this.onFrame(ev.data);
      };
      socket.onerror = () => {};
      socket.onclose = (ev) => {
        if (generation !== this.generation) return;
        this.onClosed(server, ev.code, ev.reason);
        if (!authenticated) reject(new ChorusError("DISCONNECTED", `connection to ${server} closed (${ev.code})`));
      };
      socket.onopen = () => {
        this.requestOn(socket, auth).then(
          (frame) => {
            if (frame.error || !frame.session) {
              const err = errorOf(frame);
              socket.close(1000, "authentication refused");
              this.socket = null;
              this.generation++;
              reject(err);
              return;
            }
            authenticated = true;
            this.attempt = 0;
            this.sessionValue = sessionFromWire(frame.session);
            this.emit("session", this.sessionValue);
            this.startHeartbeat(socket, this.sessionValue.heartbeatSecs);
            resolve(this.sessionValue);
            if (!this.sessionValue.mustChangePassword) void this.catchUp(socket, generation);
          },
          (err: ChorusError) => {
            socket.close(1000, "authentication failed");
            reject(err);
          },
        );
      };
    });
  }

  private startHeartbeat(socket: SocketLike, secs: number): void {
    this.stopHeartbeat();
    const every = Math.max(5, secs || 30) * 1000;
    this.heartbeat = setInterval(() => {
      this.requestOn(socket, { ping: {} }).catch(() => {});
    }, every);
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Syncs, pulls what is missing, then goes online and resends the outbox. */
  private async catchUp(socket: SocketLike, generation: number): Promise<void> {
    this.setState("syncing");
    try {
      const frame = await this.requestOn(socket, { sync: {} });
      const states = frame.sync?.conversations ?? [];
      for (const s of states) {
        const c = this.state_(s.conversation ?? "");
        c.title = s.title || c.title;
        c.maxSeq = Math.max(c.maxSeq, num(s.maxSeq));
        c.readSeq = Math.max(c.readSeq, num(s.readSeq));
        c.peerReadSeq = Math.max(c.peerReadSeq, num(s.peerReadSeq));
        c.dnd = s.dnd ?? false;
        c.mentioned = s.mentioned ?? false;
        c.lastActivityMs = Math.max(c.lastActivityMs, num(s.lastActivityMs));
        if (c.cursor === 0 && c.messages.size === 0) {
          // A conversation not seen before: only its recent history.
          c.cursor = Math.max(0, c.maxSeq - this.options.initialHistory);
        }
      }
      await Promise.all([...this.conversations.values()].filter((c) => c.maxSeq > c.cursor).map((c) => this.pullGap(c, socket)));
      if (generation !== this.generation) return;
      for (const c of this.conversations.values()) this.emit("conversation", this.summary(c));
      this.setState("online");
      for (const c of this.conversations.values()) if (c.held.size > 0) this.drainHeld(c);
      this.flushOutbox();
    } catch {
      // The connection failed during the catch-up: the close handler reconnects.
      if (generation === this.generation) socket.close(4000, "catch-up failed");
    }
  }

  /** Pulls a conversation from its cursor until no page is left; pushes meanwhile are held. */
  private async pullGap(c: ConversationState, socket: SocketLike): Promise<void> {
    if (c.pulling) return;
    c.pulling = true;
    try {
      for (;;) {
        const frame = await this.requestOn(socket, {
          pull: { conversation: c.id, afterSeq: String(c.cursor), limit: PULL_PAGE },
        });
        if (frame.error) throw errorOf(frame);
        const page = frame.pull ?? {};
        c.maxSeq = Math.max(c.maxSeq, num(page.maxSeq));
        const before = c.cursor;
        for (const m of (page.messages ?? []).map(messageFromWire)) this.ingest(c, m, true);
        if (!page.hasMore || c.cursor === before) break;
      }
    } finally {
      c.pulling = false;
    }
    this.drainHeld(c);
  }

  /** Takes in a message from a pull, a push or an ack; emits it once, in order. */
  private ingest(c: ConversationState, m: Message, fromPull = false): void {
    if (m.seq <= c.cursor || c.messages.has(m.seq)) {
      const known = c.messages.get(m.seq);
      if (known && m.readCount > known.readCount) known.readCount = m.readCount;
      return;
    }
    c.maxSeq = Math.max(c.maxSeq, m.seq);
    if (m.seq !== c.cursor + 1 || (c.pulling && !fromPull)) {
      c.held.set(m.seq, m);
      if (!c.pulling && this.socket && this.stateValue === "online") {
        void this.pullGap(c, this.socket).catch(() => {});
      }
      return;
    }
    this.accept(c, m);
    if (!c.pulling) this.drainHeld(c);
  }

  private accept(c: ConversationState, m: Message): void {
    c.messages.set(m.seq, m);
    c.cursor = m.seq;
    if (!c.lastMessage || m.seq > c.lastMessage.seq) c.lastMessage = m;
    const me = this.sessionValue?.userId ?? "0";
    if (m.content.kind === "text" && m.sender !== me && m.seq > c.readSeq) {
      if (m.content.mentionAll || m.content.mentions.includes(me)) c.mentioned = true;
    }
    this.emit("message", m);
    if (m.content.kind === "recallNotice") this.applyRecall(c, m.content.seq, m.content.by, m.content.atMs);
    if (m.content.kind === "burnNotice") this.applyBurn(c, m.content.seqs, m.content.atMs, m.content.reason);
    this.emit("conversation", this.summary(c));
  }

  /** Replaces a held message by the recalled placeholder (pulled later, it holds it already). */
  private applyRecall(c: ConversationState, seq: number, by: string, atMs: number): void {
    const recalled: Message["content"] = { kind: "recalled", by, atMs };
    for (const held of [c.messages.get(seq), c.held.get(seq)]) {
      if (held) held.content = recalled;
    }
    this.emit("recalled", { conversation: c.id, seq, by });
  }

  /** Replaces held messages by the burned placeholder, as the server did. */
  private applyBurn(c: ConversationState, seqs: number[], atMs: number, reason: BurnReason): void {
    for (const seq of seqs) {
      for (const held of [c.messages.get(seq), c.held.get(seq)]) {
        if (held) held.content = { kind: "burned", atMs, reason };
      }
    }
    this.emit("burned", { conversation: c.id, seqs });
  }

  private drainHeld(c: ConversationState): void {
    for (const seq of [...c.held.keys()].sort((a, b) => a - b)) {
      if (seq <= c.cursor) c.held.delete(seq);
    }
    let next = c.held.get(c.cursor + 1);
    while (next) {
      c.held.delete(next.seq);
      this.accept(c, next);
      next = c.held.get(c.cursor + 1);
    }
    if (c.held.size > 0 && !c.pulling && this.socket && this.stateValue === "online") {
      void this.pullGap(c, this.socket).catch(() => {});
    }
  }

  private flushOutbox(): void {
    const socket = this.socket;
    if (!socket || this.stateValue !== "online") return;
    for (const out of this.outbox) {
      if (!out.inFlight) this.transmit(out, socket);
    }
  }

  private transmit(out: Outgoing, socket: SocketLike): void {
    out.inFlight = true;
    out.attempts++;
    const forwardOf = out.options.forwardOf;
    this.requestOn(socket, {
      send: {
        clientMsgId: out.clientMsgId,
        conversation: out.conversation,
        // A forward leaves content out: the server copies the source's.
        content: forwardOf ? undefined : contentToWire(out.content),
        signOff: signOffToWire(out.options.signOff ?? "none"),
        burnAfterSecs: out.options.burnAfterSecs || undefined,
        forwardOf: forwardOf ? { conversation: forwardOf.conversation, seq: String(forwardOf.seq) } : undefined,
      },
    }).then(
      (frame) => {
        out.inFlight = false;
        if (frame.ack) {
          this.settle(out);
          const ack = ackFromWire(frame.ack);
          const c = this.state_(ack.conversation);
          this.ingest(c, {
            conversation: ack.conversation,
            seq: ack.seq,
            messageId: ack.messageId,
            sender: this.sessionValue?.userId ?? "0",
            clientMsgId: ack.clientMsgId,
            serverTimeMs: ack.serverTimeMs,
            content: out.content,
            readCount: 0,
            signOff: out.options.signOff ?? "none",
            signedAtMs: 0,
            burnAfterSecs: out.options.burnAfterSecs ?? 0,
            burnAtMs: out.options.burnAfterSecs ? ack.serverTimeMs + out.options.burnAfterSecs * 1000 : 0,
          });
          out.resolve(ack);
          return;
        }
        const err = errorOf(frame);
        if (err.retryable) this.retryLater(out);
        else {
          this.settle(out);
          out.reject(err);
        }
      },
      (err: ChorusError) => {
        out.inFlight = false;
        // A lost connection resends from the outbox after the next catch-up.
        if (err.code === "TIMEOUT") this.retryLater(out);
      },
    );
  }

  private retryLater(out: Outgoing): void {
    setTimeout(() => {
      const socket = this.socket;
      if (this.outbox.includes(out) && !out.inFlight && socket && this.stateValue === "online") {
        this.transmit(out, socket);
      }
    }, this.backoff(out.attempts));
  }

  private settle(out: Outgoing): void {
    const i = this.outbox.indexOf(out);
    if (i >= 0) this.outbox.splice(i, 1);
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.options.maxBackoffMs, this.options.initialBackoffMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(ceiling * (0.5 + this.options.random() / 2));
  }

  private onFrame(text: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    const id = frame.requestId ?? "0";
    if (id !== "0") {
      const p = this.pending.get(id);
      if (p) {
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.resolve(frame);
      }
      return;
    }
    if (frame.message) {
      const m = messageFromWire(frame.message);
      const known = this.conversations.has(m.conversation);
      this.ingest(this.state_(m.conversation), m);
      if (!known) void this.refreshTitles();
    } else if (frame.readSync) {
      this.updateRead(frame.readSync.conversation ?? "", num(frame.readSync.readSeq));
    } else if (frame.readReceipt) {
      const r = frame.readReceipt;
      const c = this.state_(r.conversation ?? "");
      c.peerReadSeq = Math.max(c.peerReadSeq, num(r.readSeq));
      this.emit("receipt", { conversation: c.id, reader: r.reader ?? "0", readSeq: c.peerReadSeq });
      this.emit("conversation", this.summary(c));
    } else if (frame.notice) {
      this.emit("notice", noticeFromWire(frame.notice));
    } else if (frame.favouriteChanged) {
      this.applyFavourite(favouriteChangeFromWire(frame.favouriteChanged));
    } else if (frame.conversationSettings) {
      const c = this.state_(frame.conversationSettings.conversation ?? "");
      c.dnd = frame.conversationSettings.dnd ?? false;
      this.emit("conversation", this.summary(c));
    } else if (frame.groupEvent?.group) {
      this.applyGroup(groupFromWire(frame.groupEvent.group), frame.groupEvent.change ?? "", frame.groupEvent.by ?? "0");
    } else if (frame.signed) {
      const s = frame.signed;
      const conversation = s.conversation ?? "";
      const seq = num(s.seq);
      // Signed on another device of this user: the message is no longer pending.
      if ((s.userId ?? "0") === this.sessionValue?.userId) this.applySigned(conversation, seq, num(s.signedAtMs));
      this.emit("signed", { conversation, seq, userId: s.userId ?? "0" });
    } else if (frame.signReminder) {
      const r = frame.signReminder;
      this.emit("signReminder", { conversation: r.conversation ?? "", seq: num(r.seq), from: r.from ?? "0" });
    } else if (frame.kicked) {
      // The close follows: 4409 for another login, 4401 for logout, disable, revocation.
      const reason = frame.kicked.reason ?? "kicked";
      this.end(reason === "logged in elsewhere" ? "CONFLICT" : "UNAUTHENTICATED", reason);
    }
  }

  /** A new conversation came by push: a sync fetches its title. */
  private async refreshTitles(): Promise<void> {
    try {
      const frame = await this.request({ sync: {} });
      for (const s of frame.sync?.conversations ?? []) {
        const c = this.conversations.get(s.conversation ?? "");
        if (c && s.title && c.title !== s.title) {
          c.title = s.title;
          this.emit("conversation", this.summary(c));
        }
      }
    } catch {
      // Titles come with the next sync.
    }
  }

  private updateRead(conversation: string, readSeq: number): void {
    const c = this.state_(conversation);
    if (readSeq <= c.readSeq) return;
    c.readSeq = readSeq;
    if (readSeq >= c.maxSeq) c.mentioned = false;
    this.emit("conversation", this.summary(c));
  }

  private onClosed(server: string, code: number, reason: string): void {
    this.socket = null;
    this.stopHeartbeat();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ChorusError("DISCONNECTED", "the connection closed"));
      this.pending.delete(id);
    }
    for (const out of this.outbox) out.inFlight = false;
    this.emit("disconnected", { server, code, reason });
    if (this.stateValue === "ended" || !this.sessionValue) return;
    // 4409: logged in elsewhere; 4401: the token is no longer valid.
    if (code === 4409) return this.end("CONFLICT", reason || "logged in elsewhere");
    if (code === 4401) return this.end("UNAUTHENTICATED", reason || "session ended");
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.setState("offline");
    this.serverIndex = (this.serverIndex + 1) % this.options.servers.length;
    this.attempt++;
    const delay = this.backoff(this.attempt);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      const token = this.sessionValue?.token;
      if (!token || this.stateValue === "ended") return;
      this.connect({ resume: { token } }).catch((err: ChorusError) => {
        if (err.code === "UNAUTHENTICATED" || err.code === "CONFLICT") this.end(err.code, err.message);
        else if (this.stateValue !== "offline" && this.stateValue !== "ended") this.scheduleReconnect();
      });
    }, delay);
  }

  private end(code: ErrorCode | "LOGGED_OUT", reason: string): void {
    if (this.stateValue === "ended") return;
    this.setState("ended");
    this.generation++;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stopHeartbeat();
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, reason);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ChorusError("DISCONNECTED", reason));
      this.pending.delete(id);
    }
    for (const out of this.outbox.splice(0)) out.reject(new ChorusError("DISCONNECTED", reason));
    this.emit("ended", { code, reason });
  }

  private state_(id: string): ConversationState {
    let c = this.conversations.get(id);
    if (!c) {
      c = {
        id,
        title: "",
        maxSeq: 0,
        cursor: 0,
        readSeq: 0,
        peerReadSeq: 0,
        unread: 0,
        dnd: false,
        mentioned: false,
        lastActivityMs: 0,
        messages: new Map(),
        held: new Map(),
        pulling: false,
      };
      this.conversations.set(id, c);
    }
    return c;
  }

  private summary(c: ConversationState): Conversation {
    return {
      id: c.id,
      title: c.title,
      maxSeq: c.maxSeq,
      cursor: c.cursor,
      readSeq: c.readSeq,
      peerReadSeq: c.peerReadSeq,
      unread: Math.max(0, c.maxSeq - c.readSeq),
      lastMessage: c.lastMessage,
      dnd: c.dnd,
      mentioned: c.mentioned,
      lastActivityMs: Math.max(c.lastActivityMs, c.lastMessage?.serverTimeMs ?? 0),
    };
  }
}

function errorOf(frame: ServerFrame): ChorusError {
  if (frame.error) return new ChorusError(frame.error.code ?? "INTERNAL", frame.error.message ?? "");
  return new ChorusError("INTERNAL", "unexpected answer");
}

function sessionFromWire(s: WireSession): Session {
  return {
    token: s.token ?? "",
    userId: s.userId ?? "0",
    account: s.account ?? "",
    deviceClass: s.deviceClass ?? "WEB",
    expiresAtMs: num(s.expiresAtMs),
    heartbeatSecs: s.heartbeatSecs ?? 30,
    mustChangePassword: s.mustChangePassword ?? false,
  };
}

function ackFromWire(a: NonNullable<ServerFrame["ack"]>): Ack {
  return {
    clientMsgId: a.clientMsgId ?? "",
    conversation: a.conversation ?? "",
    seq: num(a.seq),
    messageId: a.messageId ?? "",
    serverTimeMs: num(a.serverTimeMs),
    duplicate: a.duplicate ?? false,
  };
}
