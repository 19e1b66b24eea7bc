// @chorus/client: a client of the Chorus WebSocket protocol (JSON text frames).
export { ChorusClient } from "./client.js";
export type { ClientEvents, ClientOptions, ConnectionState, SocketFactory, SocketLike } from "./client.js";
export { ChorusError, preview, previewMessage } from "./model.js";
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
  SendOptions,
  Session,
  SignOff,
  SignStatus,
} from "./model.js";
export type { DeviceClass, ErrorCode, WireGroupChange as GroupChange } from "./wire.js";
export { directConversation, peerOf } from "./ids.js";
