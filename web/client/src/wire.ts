// The JSON text mapping of the client protocol (docs/protocol.md §1.2): field
// names in lowerCamelCase, 64-bit integers as strings, fields holding their
// default value left out. These types describe the frames as they travel;
// `model.ts` holds the shapes the client hands to its users.

export type DeviceClass = "PC" | "MOBILE" | "WEB";

export type ErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "INVALID"
  | "TOO_LARGE"
  | "RATE_LIMITED"
  | "UNAVAILABLE_RETRY"
  | "CONFLICT"
  | "INTERNAL";

/** A 64-bit integer as the server writes it (a string) or accepts it. */
export type U64 = string;

export interface WireMention {
  userId?: U64;
}

export interface WireContent {
  text?: { text?: string; mentions?: WireMention[]; mentionAll?: boolean };
  emoji?: { code?: string };
  file?: {
    fileId?: string;
    name?: string;
    size?: U64;
    mimeType?: string;
    image?: boolean;
    width?: number;
    height?: number;
    /** The server holds a thumbnail of the image (…/file?thumbnail=true). */
    thumbnail?: boolean;
  };
  /** What a recalled message holds instead of its content (server-written). */
  recalled?: { by?: U64; atMs?: U64; noticeSeq?: U64 };
  /** The message a recall appends: seq names the message recalled. */
  recallNotice?: { seq?: U64; by?: U64; atMs?: U64 };
  /** What a burned message holds instead of its content (server-written). */
  burned?: { atMs?: U64; noticeSeq?: U64; reason?: WireBurnReason };
  /** The message a burn appends: seqs name the messages burned. */
  burnNotice?: { seqs?: U64[]; atMs?: U64; reason?: WireBurnReason };
}

export type WireBurnReason = "BURN_REASON_UNSPECIFIED" | "BURN_REASON_READ" | "BURN_REASON_EXPIRED";

export interface WireMessage {
  conversation?: string;
  seq?: U64;
  messageId?: string;
  sender?: U64;
  clientMsgId?: string;
  serverTimeMs?: U64;
  content?: WireContent;
  readCount?: number;
  signOff?: WireSignOff;
  signedAtMs?: U64;
  burnAfterSecs?: number;
  burnAtMs?: U64;
}

export type WireSignOff = "SIGN_OFF_NONE" | "SIGN_OFF_CONFIRM" | "SIGN_OFF_PASSWORD";

export interface WireSignStatus {
  conversation?: string;
  seq?: U64;
  signOff?: WireSignOff;
  sender?: U64;
  recipients?: {
    userId?: U64;
    delivered?: boolean;
    deliveredAtMs?: U64;
    read?: boolean;
    signed?: boolean;
    signedAtMs?: U64;
  }[];
  recipientCount?: number;
  deliveredCount?: number;
  readCount?: number;
  signedCount?: number;
}

export interface WireConversationState {
  conversation?: string;
  maxSeq?: U64;
  readSeq?: U64;
  unread?: U64;
  title?: string;
  peerReadSeq?: U64;
  dnd?: boolean;
  mentioned?: boolean;
  lastActivityMs?: U64;
}

/** A favourite's item (docs/protocol.md §5.26): exactly one key. */
export interface WireFavouriteItem {
  contact?: U64;
  message?: { conversation?: string; seq?: U64 };
}

export interface WireNoticeVote {
  options?: string[];
  multiple?: boolean;
  deadlineMs?: U64;
  anonymous?: boolean;
}

export interface WireNotice {
  noticeId?: U64;
  sender?: U64;
  title?: string;
  body?: string;
  attachment?: string;
  mustAck?: boolean;
  vote?: WireNoticeVote;
  sentAtMs?: U64;
  recipientCount?: number;
  readAtMs?: U64;
  ackedAtMs?: U64;
  myChoices?: number[];
  totals?: number[];
}

/** What a search may be limited to (docs/decisions/0021). */
export type WireSearchKind =
  | "SEARCH_KIND_ANY"
  | "SEARCH_KIND_TEXT"
  | "SEARCH_KIND_FILE"
  | "SEARCH_KIND_IMAGE"
  | "SEARCH_KIND_LINK";

export interface WireSearchRequest {
  query?: string;
  conversation?: string;
  sender?: U64;
  /** int64 Unix ms, a string like every 64-bit integer. */
  fromMs?: U64;
  toMs?: U64;
  kind?: WireSearchKind;
  limit?: number;
  cursor?: string;
}

export interface WireSearchHit {
  message?: WireMessage;
  fragment?: string;
  /** In Unicode code points from the fragment's start (not UTF-16 units). */
  highlights?: { start?: number; end?: number }[];
  links?: string[];
}

export interface WireSearchResult {
  hits?: WireSearchHit[];
  nextCursor?: string;
}

export type WireFavouriteChanged = WireFavouriteItem & { on?: boolean; addedAtMs?: U64 };

export interface WireGroup {
  groupId?: U64;
  conversation?: string;
  name?: string;
  owner?: U64;
  members?: U64[];
  admins?: U64[];
  muted?: U64[];
  muteAll?: boolean;
  avatar?: string;
  announcement?: { text?: string; by?: U64; atMs?: U64; seq?: U64; readCount?: number };
  dissolvedAtMs?: U64;
  temporary?: boolean;
}

/** One change of a group: exactly one key (docs/protocol.md, UpdateGroup). */
export interface WireGroupChange {
  rename?: string;
  avatar?: string;
  announcement?: string;
  transferOwner?: U64;
  setAdmin?: { userId: U64; on: boolean };
  muteMember?: { userId: U64; on: boolean };
  muteAll?: boolean;
  dissolve?: { keepHistory: boolean };
  makePermanent?: string;
}

export interface WireSession {
  token?: string;
  userId?: U64;
  account?: string;
  deviceClass?: DeviceClass;
  expiresAtMs?: U64;
  heartbeatSecs?: number;
  mustChangePassword?: boolean;
}

export interface ClientBody {
  login?: { account: string; password: string; deviceClass: DeviceClass };
  resume?: { token: string };
  ping?: Record<string, never>;
  send?: {
    clientMsgId: string;
    conversation: string;
    /** Left out of a forward: the server copies the source's. */
    content?: WireContent;
    signOff?: WireSignOff;
    burnAfterSecs?: number;
    forwardOf?: { conversation: string; seq: U64 };
  };
  sign?: { conversation: string; seq: U64; password?: string };
  signStatus?: { conversation: string; seq: U64 };
  remind?: { conversation: string; seq: U64 };
  sync?: Record<string, never>;
  pull?: { conversation: string; afterSeq: U64; limit?: number };
  read?: { conversation: string; seq: U64 };
  lookupUser?: { account?: string; userId?: U64 };
  createGroup?: { name: string; members: U64[]; temporary?: boolean };
  changeMembers?: { groupId: U64; add?: U64[]; remove?: U64[] };
  receipts?: { conversation: string; seqs: U64[] };
  logout?: Record<string, never>;
  recall?: { conversation: string; seq: U64 };
  updateGroup?: { groupId: U64; change: WireGroupChange };
  getGroup?: { groupId: U64 };
  conversationSettings?: { conversation: string; dnd: boolean };
  setFavourite?: WireFavouriteItem & { on: boolean };
  listFavourites?: { limit?: number; offset?: number };
  recentContacts?: { limit?: number };
  sendNotice?: {
    title: string;
    body?: string;
    departments?: U64[];
    groups?: U64[];
    users?: U64[];
    mustAck?: boolean;
    vote?: WireNoticeVote;
  };
  listNotices?: { limit?: number; beforeId?: U64; sent?: boolean };
  readNotice?: { noticeId: U64; ack?: boolean };
  voteNotice?: { noticeId: U64; choices: number[] };
  noticeStats?: { noticeId: U64; unreadLimit?: number };
  search?: WireSearchRequest;
}

export type ClientFrame = ClientBody & { requestId: U64 };

export interface ServerFrame {
  requestId?: U64;
  error?: { code?: ErrorCode; message?: string };
  session?: WireSession;
  pong?: { serverTimeMs?: U64 };
  ack?: {
    clientMsgId?: string;
    conversation?: string;
    seq?: U64;
    messageId?: string;
    serverTimeMs?: U64;
    duplicate?: boolean;
  };
  sync?: { conversations?: WireConversationState[] };
  pull?: { conversation?: string; messages?: WireMessage[]; hasMore?: boolean; maxSeq?: U64 };
  read?: { conversation?: string; readSeq?: U64 };
  user?: { userId?: U64; account?: string; displayName?: string; directConversation?: string };
  group?: WireGroup;
  receipts?: {
    conversation?: string;
    receipts?: { seq?: U64; readCount?: number; memberCount?: number }[];
  };
  loggedOut?: Record<string, never>;
  recall?: { conversation?: string; seq?: U64; noticeSeq?: U64; atMs?: U64; duplicate?: boolean };
  message?: WireMessage;
  readSync?: { conversation?: string; readSeq?: U64 };
  readReceipt?: { conversation?: string; reader?: U64; readSeq?: U64 };
  kicked?: { reason?: string };
  sign?: { conversation?: string; seq?: U64; signedAtMs?: U64; duplicate?: boolean };
  signStatus?: WireSignStatus;
  reminded?: { conversation?: string; seq?: U64; userIds?: U64[] };
  signed?: { conversation?: string; seq?: U64; userId?: U64; signedAtMs?: U64 };
  signReminder?: { conversation?: string; seq?: U64; from?: U64 };
  conversationSettings?: { conversation?: string; dnd?: boolean };
  groupEvent?: { group?: WireGroup; change?: string; by?: U64 };
  favouriteChanged?: WireFavouriteChanged;
  noticeSent?: { noticeId?: U64; recipientCount?: number; sentAtMs?: U64 };
  notice?: WireNotice;
  noticeList?: { notices?: WireNotice[] };
  noticeRead?: { noticeId?: U64; readAtMs?: U64; ackedAtMs?: U64 };
  noticeStats?: {
    noticeId?: U64;
    recipientCount?: number;
    readCount?: number;
    ackedCount?: number;
    departments?: { departmentId?: U64; name?: string; recipientCount?: number; readCount?: number }[];
    unread?: U64[];
    totals?: number[];
    voterCount?: number;
  };
  favourites?: {
    contacts?: { userId?: U64; account?: string; displayName?: string; addedAtMs?: U64 }[];
    messages?: { conversation?: string; seq?: U64; addedAtMs?: U64; message?: WireMessage }[];
    messageCount?: number;
  };
  recentContacts?: {
    contacts?: { userId?: U64; account?: string; displayName?: string; conversation?: string; lastActivityMs?: U64 }[];
  };
  search?: WireSearchResult;
}

/** Reads a 64-bit field as a number (seqs and times stay far below 2^53). */
export function num(value: U64 | number | undefined): number {
  if (value === undefined) return 0;
  return typeof value === "number" ? value : Number(value);
}
