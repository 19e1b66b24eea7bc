// @chorus/client: a client of the Chorus WebSocket protocol (JSON text frames).
export { ChorusClient } from "./client.js";
export type { ClientEvents, ClientOptions, ConnectionState, SocketFactory, SocketLike } from "./client.js";
export { ChorusError, highlightParts, preview, previewMessage } from "./model.js";
export type {
  Ack,
  BurnReason,
  Content,
  Conversation,
  FavouriteChange,
  FavouriteItem,
  Favourites,
  Group,
  Message,
  Notice,
  NoticeStats,
  RecallAck,
  RecentContact,
  SearchHit,
  SearchKind,
  SearchRequest,
  SearchResult,
  SendOptions,
  Session,
  SignOff,
  SignStatus,
  TextRange,
} from "./model.js";
export type { DeviceClass, ErrorCode, WireGroupChange as GroupChange } from "./wire.js";
export { directConversation, peerOf } from "./ids.js";
