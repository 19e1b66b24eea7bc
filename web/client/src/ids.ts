// Conversation ids (docs/protocol.md §4): `d:<lo>:<hi>` for 1:1, `g:<id>` for a group.

/** Returns the 1:1 conversation id of two users. */
export function directConversation(a: string, b: string): string {
  const [lo, hi] = BigInt(a) < BigInt(b) ? [a, b] : [b, a];
  return `d:${lo}:${hi}`;
}

/** Returns the other user of a 1:1 conversation, or null for a group. */
export function peerOf(conversation: string, me: string): string | null {
  const parts = conversation.split(":");
  if (parts[0] !== "d" || parts.length !== 3) return null;
  return parts[1] === me ? parts[2] : parts[1];
}
