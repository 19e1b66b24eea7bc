// The shapes the client gives its users, converted from the wire frames.

import {
  type DeviceClass,
  type ErrorCode,
  type WireBurnReason,
  type WireContent,
  type WireGroup,
  type WireMessage,
  type WireSignOff,
  type WireFavouriteChanged,
  type WireNotice,
  type WireSearchKind,
  type WireSearchRequest,
  type WireSearchResult,
  type WireSignStatus,
  num,
} from "./wire.js";

export interface Session {
  token: string;
  userId: string;
  account: string;
  deviceClass: DeviceClass;
  expiresAtMs: number;
  heartbeatSecs: number;
  /**
   * The password must be changed first (an administrator reset it, or it is
   * older than the password policy allows): the server serves nothing on
   * this socket but pings until then, so the client does not sync; change it
   * over REST (`PUT /api/v1/me/password` with this token), then resume.
   */
  mustChangePassword: boolean;
}

export type Content =
  | { kind: "text"; text: string; mentions: string[]; mentionAll: boolean }
  | { kind: "emoji"; code: string }
  /**
   * A file or image held by the server (docs/decisions/0022). A send needs
   * only `fileId` (from a completed upload): the server fills in the rest
   * from its record. `width`/`height` are the image's; `thumbnail` says the
   * server holds a thumbnail of it.
   */
  | {
      kind: "file";
      fileId: string;
      name: string;
      size: number;
      mimeType: string;
      image: boolean;
      width: number;
      height: number;
      thumbnail: boolean;
    }
  /** A message recalled by `by`: its content is gone from the server. */
  | { kind: "recalled"; by: string; atMs: number }
  /** The notice a recall appended; `seq` is the message recalled. */
  | { kind: "recallNotice"; seq: number; by: string; atMs: number }
  /** A message burned after reading (阅后即焚): its content is gone from the server. */
  | { kind: "burned"; atMs: number; reason: BurnReason }
  /** The notice a burn appended; `seqs` are the messages burned. */
  | { kind: "burnNotice"; seqs: number[]; atMs: number; reason: BurnReason }
  | { kind: "unknown" };

/** Why a message burned: its recipient read it, or its time ran out. */
export type BurnReason = "read" | "expired";

function burnReasonFromWire(wire: WireBurnReason | undefined): BurnReason {
  return wire === "BURN_REASON_EXPIRED" ? "expired" : "read";
}

/** What a send asks of the server besides its content. */
export interface SendOptions {
  signOff?: SignOff;
  /** Burn after reading, or after this many seconds unread (1:1 only). */
  burnAfterSecs?: number;
  /**
   * Forwards this message (a text, an emoji, a file or an image the user
   * may read): the server copies its content, so a file's bytes are not
   * uploaded again. The content passed to send() is then not sent; it is
   * what the sent message holds here (pass the source's).
   */
  forwardOf?: { conversation: string; seq: number };
}

export interface Message {
  conversation: string;
  seq: number;
  messageId: string;
  sender: string;
  clientMsgId: string;
  serverTimeMs: number;
  content: Content;
  readCount: number;
  /** What the message asks of its recipients (消息签收). */
  signOff: SignOff;
  /** When this user signed it (0: not signed, or nothing to sign). */
  signedAtMs: number;
  /** A burn-after-reading message's time to live (0: an ordinary message). */
  burnAfterSecs: number;
  /** When it burns unread. */
  burnAtMs: number;
}

export type SignOff = "none" | "confirm" | "password";

export function signOffFromWire(wire: WireSignOff | undefined): SignOff {
  if (wire === "SIGN_OFF_CONFIRM") return "confirm";
  if (wire === "SIGN_OFF_PASSWORD") return "password";
  return "none";
}

export function signOffToWire(signOff: SignOff): WireSignOff {
  if (signOff === "confirm") return "SIGN_OFF_CONFIRM";
  if (signOff === "password") return "SIGN_OFF_PASSWORD";
  return "SIGN_OFF_NONE";
}

/** Who received, read and signed a message, for its sender. */
export interface SignStatus {
  conversation: string;
  seq: number;
  signOff: SignOff;
  sender: string;
  recipients: { userId: string; delivered: boolean; read: boolean; signed: boolean; signedAtMs: number }[];
  recipientCount: number;
  deliveredCount: number;
  readCount: number;
  signedCount: number;
}

export function signStatusFromWire(s: WireSignStatus): SignStatus {
  return {
    conversation: s.conversation ?? "",
    seq: num(s.seq),
    signOff: signOffFromWire(s.signOff),
    sender: s.sender ?? "0",
    recipients: (s.recipients ?? []).map((r) => ({
      userId: r.userId ?? "0",
      delivered: r.delivered ?? false,
      read: r.read ?? false,
      signed: r.signed ?? false,
      signedAtMs: num(r.signedAtMs),
    })),
    recipientCount: s.recipientCount ?? 0,
    deliveredCount: s.deliveredCount ?? 0,
    readCount: s.readCount ?? 0,
    signedCount: s.signedCount ?? 0,
  };
}

/** One conversation as the client knows it. */
export interface Conversation {
  id: string;
  title: string;
  maxSeq: number;
  /** The highest seq held with none missing below it. */
  cursor: number;
  readSeq: number;
  /** The peer's read cursor in a 1:1 conversation; 0 for a group. */
  peerReadSeq: number;
  unread: number;
  lastMessage?: Message;
  /** Do not disturb: the user wants no notification of new messages here. */
  dnd: boolean;
  /** Someone mentioned the user (by name or @all) in an unread message. */
  mentioned: boolean;
  /** Server time of the newest message, from sync (0: none known). */
  lastActivityMs: number;
}

/** A notice (通知公告, docs/protocol.md §5.28) as this user sees it. */
export interface Notice {
  noticeId: string;
  sender: string;
  title: string;
  body: string;
  attachment: string;
  mustAck: boolean;
  vote?: { options: string[]; multiple: boolean; deadlineMs: number; anonymous: boolean };
  sentAtMs: number;
  recipientCount: number;
  readAtMs: number;
  ackedAtMs: number;
  myChoices: number[];
  totals: number[];
}

export function noticeFromWire(n: WireNotice): Notice {
  return {
    noticeId: n.noticeId ?? "0",
    sender: n.sender ?? "0",
    title: n.title ?? "",
    body: n.body ?? "",
    attachment: n.attachment ?? "",
    mustAck: n.mustAck ?? false,
    vote: n.vote
      ? {
          options: n.vote.options ?? [],
          multiple: n.vote.multiple ?? false,
          deadlineMs: num(n.vote.deadlineMs),
          anonymous: n.vote.anonymous ?? false,
        }
      : undefined,
    sentAtMs: num(n.sentAtMs),
    recipientCount: n.recipientCount ?? 0,
    readAtMs: num(n.readAtMs),
    ackedAtMs: num(n.ackedAtMs),
    myChoices: n.myChoices ?? [],
    totals: n.totals ?? [],
  };
}

export interface NoticeStats {
  recipientCount: number;
  readCount: number;
  ackedCount: number;
  departments: { departmentId: string; name: string; recipientCount: number; readCount: number }[];
  unread: string[];
  totals: number[];
  voterCount: number;
}

/** What a favourite names (docs/protocol.md §5.26). */
export type FavouriteItem = { contact: string } | { message: { conversation: string; seq: number } };

export interface FavouriteChange {
  item: FavouriteItem;
  on: boolean;
  addedAtMs: number;
}

export function favouriteChangeFromWire(w: WireFavouriteChanged): FavouriteChange {
  const item: FavouriteItem = w.message
    ? { message: { conversation: w.message.conversation ?? "", seq: num(w.message.seq) } }
    : { contact: w.contact ?? "0" };
  return { item, on: w.on ?? false, addedAtMs: num(w.addedAtMs) };
}

export interface Favourites {
  contacts: { userId: string; account: string; displayName: string; addedAtMs: number }[];
  /** Newest first; `message` is absent once the user can no longer read it. */
  messages: { conversation: string; seq: number; addedAtMs: number; message?: Message }[];
  messageCount: number;
}

export interface RecentContact {
  userId: string;
  account: string;
  displayName: string;
  conversation: string;
  lastActivityMs: number;
}

/**
 * What a search may be limited to: a text message holding a URL is both
 * "text" and "link"; a file is "file", or "image" when it is one.
 */
export type SearchKind = "any" | "text" | "file" | "image" | "link";

/**
 * A full-text search of the user's history (docs/decisions/0021). Every
 * space-separated part of `query` must match, a part in double quotes as a
 * phrase. An empty query with a `kind` (file, image, link) and a
 * `conversation` lists that conversation's files, images or links (the
 * history manager).
 */
export interface SearchRequest {
  query?: string;
  /** Only this conversation; absent or empty: every one of the user's. */
  conversation?: string;
  /** Only this sender's messages (a user id). */
  sender?: string;
  /** Only messages sent at or after / at or before these times (Unix ms). */
  fromMs?: number;
  toMs?: number;
  kind?: SearchKind;
  /** Hits per page (the server's default 20, at most 100). */
  limit?: number;
  /** The previous page's `nextCursor`. */
  cursor?: string;
}

/** A part of a fragment, `start` to `end` in Unicode code points. */
export interface TextRange {
  start: number;
  end: number;
}

export interface SearchHit {
  /** The stored message, to open it in place (conversation and seq). */
  message: Message;
  /** A part of its text (or file name) around the first match. */
  fragment: string;
  /** The matched parts of the fragment, in code points (see highlightParts). */
  highlights: TextRange[];
  /** The URLs its text holds. */
  links: string[];
}

export interface SearchResult {
  /** Newest first. */
  hits: SearchHit[];
  /** Pass as `cursor` for the next page; empty when there is none. */
  nextCursor: string;
}

const SEARCH_KINDS: Record<SearchKind, WireSearchKind> = {
  any: "SEARCH_KIND_ANY",
  text: "SEARCH_KIND_TEXT",
  file: "SEARCH_KIND_FILE",
  image: "SEARCH_KIND_IMAGE",
  link: "SEARCH_KIND_LINK",
};

/** The request as it travels: defaults left out, 64-bit integers as strings. */
export function searchRequestToWire(r: SearchRequest): WireSearchRequest {
  const wire: WireSearchRequest = {};
  if (r.query) wire.query = r.query;
  if (r.conversation) wire.conversation = r.conversation;
  if (r.sender && r.sender !== "0") wire.sender = r.sender;
  if (r.fromMs) wire.fromMs = String(Math.trunc(r.fromMs));
  if (r.toMs) wire.toMs = String(Math.trunc(r.toMs));
  if (r.kind && r.kind !== "any") wire.kind = SEARCH_KINDS[r.kind];
  if (r.limit) wire.limit = r.limit;
  if (r.cursor) wire.cursor = r.cursor;
  return wire;
}

export function searchResultFromWire(w: WireSearchResult): SearchResult {
  return {
    hits: (w.hits ?? []).map((h) => ({
      message: messageFromWire(h.message ?? {}),
      fragment: h.fragment ?? "",
      highlights: (h.highlights ?? []).map((r) => ({ start: r.start ?? 0, end: r.end ?? 0 })),
      links: h.links ?? [],
    })),
    nextCursor: w.nextCursor ?? "",
  };
}

/**
 * Cuts a fragment into its plain and matched parts, in order, for showing
 * the matches (in <mark>). The ranges count Unicode code points, as the
 * server does, not the UTF-16 units of JavaScript strings: "𠀀预算" has
 * 预算 at 1..3. Ranges out of order, overlapping or past the end are
 * clipped rather than trusted.
 */
export function highlightParts(fragment: string, highlights: TextRange[]): { text: string; marked: boolean }[] {
  const chars = Array.from(fragment);
  const parts: { text: string; marked: boolean }[] = [];
  const push = (text: string, marked: boolean) => {
    if (!text) return;
    const last = parts[parts.length - 1];
    if (last && last.marked === marked) last.text += text;
    else parts.push({ text, marked });
  };
  let at = 0;
  for (const r of [...highlights].sort((a, b) => a.start - b.start)) {
    const start = Math.max(at, Math.min(r.start, chars.length));
    const end = Math.max(start, Math.min(r.end, chars.length));
    push(chars.slice(at, start).join(""), false);
    push(chars.slice(start, end).join(""), true);
    at = end;
  }
  push(chars.slice(at).join(""), false);
  return parts;
}

/** A group, with its management state (docs/decisions/0016). */
export interface Group {
  groupId: string;
  conversation: string;
  name: string;
  owner: string;
  members: string[];
  admins: string[];
  muted: string[];
  muteAll: boolean;
  avatar: string;
  announcement?: { text: string; by: string; atMs: number; seq: number; readCount: number };
  dissolvedAtMs: number;
  /** A temporary discussion (多人临时会话, docs/protocol.md §5.27). */
  temporary: boolean;
}

export function groupFromWire(g: WireGroup): Group {
  const a = g.announcement;
  return {
    groupId: g.groupId ?? "0",
    conversation: g.conversation ?? "",
    name: g.name ?? "",
    owner: g.owner ?? "0",
    members: g.members ?? [],
    admins: g.admins ?? [],
    muted: g.muted ?? [],
    muteAll: g.muteAll ?? false,
    avatar: g.avatar ?? "",
    announcement: a
      ? { text: a.text ?? "", by: a.by ?? "0", atMs: num(a.atMs), seq: num(a.seq), readCount: a.readCount ?? 0 }
      : undefined,
    dissolvedAtMs: num(g.dissolvedAtMs),
    temporary: g.temporary ?? false,
  };
}

export interface Ack {
  clientMsgId: string;
  conversation: string;
  seq: number;
  messageId: string;
  serverTimeMs: number;
  duplicate: boolean;
}

export interface RecallAck {
  conversation: string;
  seq: number;
  noticeSeq: number;
  atMs: number;
  duplicate: boolean;
}

/** An error answered by the server, or one of the client's own. */
export class ChorusError extends Error {
  constructor(
    readonly code: ErrorCode | "DISCONNECTED" | "TIMEOUT",
    message: string,
  ) {
    super(message);
    this.name = "ChorusError";
  }

  /** Whether the same request may succeed if sent again. */
  get retryable(): boolean {
    return this.code === "UNAVAILABLE_RETRY" || this.code === "DISCONNECTED" || this.code === "TIMEOUT";
  }
}

export function contentFromWire(content: WireContent | undefined): Content {
  if (content?.text) {
    return {
      kind: "text",
      text: content.text.text ?? "",
      mentions: (content.text.mentions ?? []).map((m) => m.userId ?? "0"),
      mentionAll: content.text.mentionAll ?? false,
    };
  }
  if (content?.emoji) return { kind: "emoji", code: content.emoji.code ?? "" };
  if (content?.file) {
    return {
      kind: "file",
      fileId: content.file.fileId ?? "",
      name: content.file.name ?? "",
      size: num(content.file.size),
      mimeType: content.file.mimeType ?? "",
      image: content.file.image ?? false,
      width: content.file.width ?? 0,
      height: content.file.height ?? 0,
      thumbnail: content.file.thumbnail ?? false,
    };
  }
  if (content?.recalled) {
    return { kind: "recalled", by: content.recalled.by ?? "0", atMs: num(content.recalled.atMs) };
  }
  if (content?.recallNotice) {
    const n = content.recallNotice;
    return { kind: "recallNotice", seq: num(n.seq), by: n.by ?? "0", atMs: num(n.atMs) };
  }
  if (content?.burned) {
    return { kind: "burned", atMs: num(content.burned.atMs), reason: burnReasonFromWire(content.burned.reason) };
  }
  if (content?.burnNotice) {
    const n = content.burnNotice;
    return { kind: "burnNotice", seqs: (n.seqs ?? []).map(num), atMs: num(n.atMs), reason: burnReasonFromWire(n.reason) };
  }
  return { kind: "unknown" };
}

export function contentToWire(content: Content): WireContent {
  switch (content.kind) {
    case "text":
      return {
        text: {
          text: content.text,
          mentions: content.mentions.map((userId) => ({ userId })),
          mentionAll: content.mentionAll,
        },
      };
    case "emoji":
      return { emoji: { code: content.code } };
    case "file":
      // The server fills in the rest from the upload's record, and takes
      // nothing else from the sender.
      return { file: { fileId: content.fileId } };
    case "recalled":
    case "recallNotice":
      throw new ChorusError("INVALID", "recalls are made with recall(), not sent");
    case "burned":
    case "burnNotice":
      throw new ChorusError("INVALID", "the server burns messages; a client cannot send a burn");
    case "unknown":
      throw new ChorusError("INVALID", "a message needs content");
  }
}

export function messageFromWire(m: WireMessage): Message {
  return {
    conversation: m.conversation ?? "",
    seq: num(m.seq),
    messageId: m.messageId ?? "",
    sender: m.sender ?? "0",
    clientMsgId: m.clientMsgId ?? "",
    serverTimeMs: num(m.serverTimeMs),
    content: contentFromWire(m.content),
    readCount: m.readCount ?? 0,
    signOff: signOffFromWire(m.signOff),
    signedAtMs: num(m.signedAtMs),
    burnAfterSecs: m.burnAfterSecs ?? 0,
    burnAtMs: num(m.burnAtMs),
  };
}

/**
 * Returns a message as one line for the conversation list: a burn message
 * shows only that it is one, so that it is read (and burns) in the chat.
 */
export function previewMessage(m: Message): string {
  const unread = m.burnAfterSecs > 0 && !["burned", "recalled"].includes(m.content.kind);
  return unread ? "[burn after reading]" : preview(m.content);
}

/** Returns the text of a message as one line, for lists and notifications. */
export function preview(content: Content): string {
  switch (content.kind) {
    case "text":
      return content.text.replace(/\s+/g, " ");
    case "emoji":
      return content.code;
    case "file":
      return `[${content.name}]`;
    case "recalled":
    case "recallNotice":
      return "[recalled]";
    case "burned":
    case "burnNotice":
      return "[burned]";
    case "unknown":
      return "";
  }
}
