import assert from "node:assert/strict";
import { test } from "node:test";

import { ChorusClient, ChorusError, type Content, type Message, directConversation, highlightParts, peerOf } from "../src/index.js";
import { FakeServer, FakeSocket, until } from "./fake-server.js";

const users = {
  alice: { id: "1", password: "alice-pass" },
  bob: { id: "2", password: "bob-pass" },
};

function client(server: FakeServer, servers = ["ws://a/ws"]): ChorusClient {
  let n = 0;
  return new ChorusClient({
    servers,
    socket: server.factory,
    initialBackoffMs: 1,
    maxBackoffMs: 5,
    requestTimeoutMs: 500,
    newId: () => `id-${++n}`,
  });
}

function textOf(m: Message): string {
  return m.content.kind === "text" ? m.content.text : "";
}

test("login answers the session; a wrong password is refused plainly and nothing reconnects", async () => {
  const server = new FakeServer(users);
  const c = client(server);
  await assert.rejects(c.login("alice", "nope"), (err: ChorusError) => {
    assert.equal(err.code, "UNAUTHENTICATED");
    assert.equal(err.message, "wrong account or password");
    return true;
  });
  assert.equal(c.state, "idle");
  const session = await c.login("alice", "alice-pass");
  assert.equal(session.userId, "1");
  await until("online", () => c.state === "online");
  c.close();
});

test("resume logs in with a kept token", async () => {
  const server = new FakeServer(users);
  const first = client(server);
  const { token } = await first.login("bob", "bob-pass");
  first.close();
  const second = client(server);
  const session = await second.resume(token);
  assert.equal(session.userId, "2");
  await assert.rejects(client(server).resume("bogus"), (err: ChorusError) => err.code === "UNAUTHENTICATED");
  second.close();
});

test("connect syncs and pulls; pushes during the pull are held and applied once, in order", async () => {
  const server = new FakeServer(users);
  const conv = directConversation("2", "1");
  for (let i = 1; i <= 3; i++) server.append(conv, "2", `m${i}`);
  server.holdPulls = true;
  const c = client(server);
  const seen: number[] = [];
  c.on("message", (m) => seen.push(m.seq));
  await c.login("alice", "alice-pass");
  await until("the pull is asked", () => server.received.some((r) => r.frame.pull));
  assert.equal(c.state, "syncing");
  // Seq 4 and a repeat of 3 arrive while the pull is outstanding.
  const fourth = server.append(conv, "2", "m4");
  server.push("1", fourth);
  server.push("1", server.logs.get(conv)![2]);
  assert.deepEqual(seen, []);
  server.releasePulls();
  await until("online", () => c.state === "online");
  await until("four messages", () => seen.length === 4);
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.deepEqual(c.messages(conv).map(textOf), ["m1", "m2", "m3", "m4"]);
  const summary = c.conversation(conv)!;
  assert.equal(summary.unread, 4);
  assert.equal(summary.lastMessage?.seq, 4);
  c.close();
});

test("the catch-up pulls page after page; a new conversation starts at its recent history", async () => {
  const server = new FakeServer(users);
  for (let i = 1; i <= 250; i++) server.append("d:1:2", "2", `m${i}`);
  const c = new ChorusClient({ servers: ["ws://a/ws"], socket: server.factory, initialHistory: 220 });
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  const seqs = c.messages("d:1:2").map((m) => m.seq);
  assert.equal(seqs.length, 220);
  assert.deepEqual([seqs[0], seqs[219]], [31, 250]);
  const pulls = server.received.filter((r) => r.frame.pull).map((r) => r.frame.pull!.afterSeq);
  assert.deepEqual(pulls, ["30", "130", "230"]);
  const older = await c.loadOlder("d:1:2", 20);
  assert.deepEqual([older[0].seq, older.length], [11, 20]);
  assert.equal(c.messages("d:1:2")[0].seq, 11);
  c.close();
});

test("a push past a gap makes the client pull the missing messages first", async () => {
  const server = new FakeServer(users);
  const conv = "d:1:2";
  server.append(conv, "2", "m1");
  const c = client(server);
  const seen: number[] = [];
  c.on("message", (m) => seen.push(m.seq));
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online" && seen.length === 1);
  server.append(conv, "2", "m2");
  const third = server.append(conv, "2", "m3");
  server.push("1", third);
  await until("the gap filled", () => seen.length === 3);
  assert.deepEqual(seen, [1, 2, 3]);
  c.close();
});

test("a send answered UNAVAILABLE_RETRY is resent with the same client_msg_id until acked", async () => {
  const server = new FakeServer(users);
  server.script.push({
    kind: "send",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, error: { code: "UNAVAILABLE_RETRY", message: "no leader" } });
      return true;
    },
  });
  const c = client(server);
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  const ack = await c.send("d:1:2", { kind: "text", text: "hello", mentions: [], mentionAll: false });
  assert.equal(ack.seq, 1);
  const sends = server.received.filter((r) => r.frame.send).map((r) => r.frame.send!.clientMsgId);
  assert.deepEqual(sends, ["id-1", "id-1"]);
  assert.deepEqual(c.messages("d:1:2").map(textOf), ["hello"]);
  assert.equal(c.unacked, 0);
  c.close();
});

test("a refused send rejects with the server's code", async () => {
  const server = new FakeServer(users);
  server.script.push({
    kind: "send",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, error: { code: "FORBIDDEN", message: "not a member of g:7" } });
      return true;
    },
  });
  const c = client(server);
  await c.login("alice", "alice-pass");
  await assert.rejects(c.send("g:7", { kind: "emoji", code: "👍" }), (err: ChorusError) => err.code === "FORBIDDEN");
  c.close();
});

test("a lost connection moves to the next node, resumes, catches up and resends unacked sends once", async () => {
  const server = new FakeServer(users);
  const conv = "d:1:2";
  // The first node takes the send and stores it but dies before acking.
  server.script.push({
    kind: "send",
    answer: (socket, frame) => {
      const throwaway = new FakeSocket(server, "x");
      throwaway.userId = socket.userId;
      server.handle(throwaway, frame);
      socket.close(1006, "node died");
      return true;
    },
  });
  const c = client(server, ["ws://a/ws", "ws://b/ws"]);
  const states: string[] = [];
  c.on("state", (s) => states.push(s));
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  const sent = c.send(conv, { kind: "text", text: "survives", mentions: [], mentionAll: false });
  server.down.add("ws://a/ws");
  const ack = await sent;
  assert.equal(ack.seq, 1);
  assert.ok(states.includes("offline"), `states: ${states}`);
  const urls = server.received.map((r) => r.url);
  assert.ok(urls.includes("ws://b/ws"), "reconnected to the second node");
  assert.ok(server.received.some((r) => r.url === "ws://b/ws" && r.frame.resume), "resumed with the token");
  const sends = server.received.filter((r) => r.frame.send).map((r) => r.frame.send!.clientMsgId);
  assert.ok(sends.every((id) => id === "id-1"));
  assert.equal(server.logs.get(conv)?.length, 1, "stored once");
  assert.deepEqual(c.messages(conv).map(textOf), ["survives"]);
  c.close();
});

test("logged in elsewhere (close 4409) ends the session without reconnecting", async () => {
  const server = new FakeServer(users);
  const c = client(server);
  const ended: string[] = [];
  c.on("ended", (e) => ended.push(`${e.code}: ${e.reason}`));
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  server.kick("1", 4409, "logged in elsewhere");
  await until("ended", () => c.state === "ended");
  assert.deepEqual(ended, ["CONFLICT: logged in elsewhere"]);
  const resumes = server.received.filter((r) => r.frame.resume).length;
  assert.equal(resumes, 0);
});

test("a Kicked push ends the session with its reason", async () => {
  const server = new FakeServer(users);
  const c = client(server);
  const ended: string[] = [];
  c.on("ended", (e) => ended.push(`${e.code}: ${e.reason}`));
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  for (const s of server.sockets) s.deliver({ kicked: { reason: "account disabled" } });
  await until("ended", () => c.state === "ended");
  assert.deepEqual(ended, ["UNAUTHENTICATED: account disabled"]);
});

test("read receipts and read cursors only move forward", async () => {
  const server = new FakeServer(users);
  const conv = "d:1:2";
  server.append(conv, "2", "m1");
  server.append(conv, "2", "m2");
  const c = client(server);
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  assert.equal(c.conversation(conv)?.unread, 2);
  assert.equal(await c.markRead(conv, 2), 2);
  assert.equal(c.conversation(conv)?.unread, 0);
  for (const s of server.sockets) s.deliver({ readReceipt: { conversation: conv, reader: "2", readSeq: "2" } });
  for (const s of server.sockets) s.deliver({ readReceipt: { conversation: conv, reader: "2", readSeq: "1" } });
  assert.equal(c.conversation(conv)?.peerReadSeq, 2);
  c.close();
});

test("conversation ids", () => {
  assert.equal(directConversation("10", "9"), "d:9:10");
  assert.equal(peerOf("d:9:10", "9"), "10");
  assert.equal(peerOf("g:7", "9"), null);
});

test("a recall notice, pushed or pulled, turns the message held into the placeholder", async () => {
  const server = new FakeServer(users);
  const conv = "d:1:2";
  server.append(conv, "2", "oops");
  const c = client(server);
  const recalled: number[] = [];
  c.on("recalled", (r) => recalled.push(r.seq));
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online" && c.messages(conv).length === 1);
  const notice = server.append(conv, "2", "");
  notice.content = { recallNotice: { seq: "1", by: "2", atMs: "5000" } };
  server.push("1", notice);
  await until("the recall applied", () => recalled.length === 1);
  const [first, second] = c.messages(conv);
  assert.deepEqual(first.content, { kind: "recalled", by: "2", atMs: 5000 });
  assert.equal(second.content.kind, "recallNotice");
  assert.equal(c.conversation(conv)?.lastMessage?.seq, 2);
  c.close();
});

test("recall() asks the server and applies the ack locally; a refusal keeps the message", async () => {
  const server = new FakeServer(users);
  const conv = "d:1:2";
  const c = client(server);
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  await c.send(conv, { kind: "text", text: "mine", mentions: [], mentionAll: false });
  server.script.push({
    kind: "recall",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, error: { code: "FORBIDDEN", message: "the recall window of 120 s has passed" } });
      return true;
    },
  });
  await assert.rejects(c.recall(conv, 1), (err: ChorusError) => err.code === "FORBIDDEN" && err.message.includes("window"));
  assert.equal(textOf(c.messages(conv)[0]), "mine");
  server.script.push({
    kind: "recall",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, recall: { conversation: conv, seq: "1", noticeSeq: "2", atMs: "7000" } });
      return true;
    },
  });
  const ack = await c.recall(conv, 1);
  assert.deepEqual([ack.seq, ack.noticeSeq, ack.duplicate], [1, 2, false]);
  const held = c.messages(conv);
  assert.deepEqual(held[0].content, { kind: "recalled", by: "1", atMs: 7000 });
  assert.deepEqual(held.map((m) => m.seq), [1, 2]);
  assert.throws(() => c.send(conv, { kind: "recalled", by: "1", atMs: 0 }), (err: ChorusError) => err.code === "INVALID");
  c.close();
});

test("a burn send carries its time to live; a burn notice turns the messages held into the placeholder", async () => {
  const server = new FakeServer(users);
  const conv = "d:1:2";
  const c = client(server);
  const burned: number[][] = [];
  c.on("burned", (b) => burned.push(b.seqs));
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  let asked: number | undefined;
  server.script.push({
    kind: "send",
    answer: (_socket, frame) => {
      asked = frame.send?.burnAfterSecs;
      return false;
    },
  });
  const ack = await c.send(conv, { kind: "text", text: "once", mentions: [], mentionAll: false }, { burnAfterSecs: 30 });
  assert.equal(asked, 30);
  const [mine] = c.messages(conv);
  assert.deepEqual([mine.burnAfterSecs, mine.burnAtMs], [30, ack.serverTimeMs + 30_000]);
  const notice = server.append(conv, "2", "");
  notice.content = { burnNotice: { seqs: ["1"], atMs: "9000", reason: "BURN_REASON_EXPIRED" } };
  server.push("1", notice);
  await until("the burn applied", () => burned.length === 1);
  const [first, second] = c.messages(conv);
  assert.deepEqual(first.content, { kind: "burned", atMs: 9000, reason: "expired" });
  assert.deepEqual(second.content, { kind: "burnNotice", seqs: [1], atMs: 9000, reason: "expired" });
  assert.throws(
    () => c.send(conv, { kind: "burned", atMs: 0, reason: "read" }),
    (err: ChorusError) => err.code === "INVALID",
  );
  c.close();
});

test("a file send carries only its file_id; a forward leaves content out and holds the source's here", async () => {
  const server = new FakeServer(users);
  const conv = "d:1:2";
  const photo = server.append(conv, "2", "");
  photo.content = {
    file: { fileId: "f1", name: "cat.png", size: "2048", mimeType: "image/png", image: true, width: 640, height: 480, thumbnail: true },
  };
  const c = client(server);
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  const [held] = c.messages(conv);
  assert.deepEqual(held.content, {
    kind: "file",
    fileId: "f1",
    name: "cat.png",
    size: 2048,
    mimeType: "image/png",
    image: true,
    width: 640,
    height: 480,
    thumbnail: true,
  });

  assert.equal(held.content.kind, "file");
  const mine: Content = { ...(held.content as Extract<Content, { kind: "file" }>), fileId: "f2", name: "report.pdf" };
  await c.send(conv, mine);
  const sends = () => server.received.map((r) => r.frame.send).filter((s) => s !== undefined);
  assert.deepEqual(sends().at(-1)!.content, { file: { fileId: "f2" } }, "the server fills in the rest from its record");

  // Forwarded to a group: no content on the wire, the source named instead.
  const ack = await c.send("g:7", held.content, { forwardOf: { conversation: conv, seq: held.seq } });
  const forward = sends().at(-1)!;
  assert.equal(forward.content, undefined);
  assert.deepEqual(forward.forwardOf, { conversation: conv, seq: "1" });
  assert.deepEqual(server.logs.get("g:7")![0].content, photo.content, "the server copied the source's content");
  assert.deepEqual(c.messages("g:7").map((m) => [m.seq, m.content]), [[ack.seq, held.content]]);

  // A forwarded text loses its mentions: they name the source's members.
  server.append(conv, "2", "hi @bob");
  const text: Content = { kind: "text", text: "hi @bob", mentions: ["2"], mentionAll: true };
  await c.send("g:7", text, { forwardOf: { conversation: conv, seq: 2 } });
  assert.deepEqual(c.messages("g:7").at(-1)!.content, { ...text, mentions: [], mentionAll: false });
  c.close();
});

test("setFavourite answers the change; a pushed change from another device updates the favourite contacts", async () => {
  const server = new FakeServer(users);
  const c = client(server);
  const changes: boolean[] = [];
  c.on("favourite", (f) => changes.push(f.on));
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  server.script.push({
    kind: "setFavourite",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, favouriteChanged: { contact: frame.setFavourite?.contact, on: true, addedAtMs: "42" } });
      return true;
    },
  });
  const change = await c.setFavourite({ contact: "2" }, true);
  assert.deepEqual(change, { item: { contact: "2" }, on: true, addedAtMs: 42 });
  assert.ok(c.isFavouriteContact("2"));
  for (const socket of server.sockets) socket.deliver({ favouriteChanged: { contact: "2", on: false } });
  await until("the push applied", () => !c.isFavouriteContact("2"));
  assert.deepEqual(changes, [true, false]);
  c.close();
});

test("group management: sync's dnd and mention flags, a group event renames, setDnd and updateGroup answer", async () => {
  const server = new FakeServer(users);
  const conv = "g:7";
  server.append(conv, "2", "hello");
  server.titles.set(conv, "team");
  server.script.push({
    kind: "sync",
    answer: (socket, frame) => {
      socket.deliver({
        requestId: frame.requestId,
        sync: { conversations: [{ conversation: conv, maxSeq: "1", title: "team", dnd: true, mentioned: true }] },
      });
      return true;
    },
  });
  const c = client(server);
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  assert.deepEqual([c.conversation(conv)?.dnd, c.conversation(conv)?.mentioned], [true, true]);
  await c.markRead(conv, 1);
  assert.equal(c.conversation(conv)?.mentioned, false, "read past the mention");

  const events: string[] = [];
  c.on("group", (e) => events.push(`${e.change}:${e.group.name}`));
  for (const s of server.sockets) {
    s.deliver({ groupEvent: { group: { groupId: "7", conversation: conv, name: "core", owner: "2" }, change: "rename", by: "2" } });
  }
  await until("the event applied", () => events.length === 1);
  assert.deepEqual(events, ["rename:core"]);
  assert.equal(c.conversation(conv)?.title, "core");

  // A mention of me in a new message flags the conversation again.
  const m = server.append(conv, "2", "@all");
  m.content = { text: { text: "@all", mentionAll: true } };
  server.push("1", m);
  await until("flagged", () => c.conversation(conv)?.mentioned === true);

  server.script.push({
    kind: "conversationSettings",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, conversationSettings: { conversation: conv } });
      return true;
    },
  });
  assert.equal(await c.setDnd(conv, false), false);
  assert.equal(c.conversation(conv)?.dnd, false);
  server.script.push({
    kind: "updateGroup",
    answer: (socket, frame) => {
      assert.deepEqual(frame.updateGroup, { groupId: "7", change: { muteAll: true } });
      socket.deliver({ requestId: frame.requestId, group: { groupId: "7", conversation: conv, name: "core", owner: "1", muteAll: true } });
      return true;
    },
  });
  const group = await c.updateGroup("7", { muteAll: true });
  assert.equal(group.muteAll, true);
  server.script.push({
    kind: "updateGroup",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, error: { code: "FORBIDDEN", message: "only the group owner, a group admin or an admin may manage the group" } });
      return true;
    },
  });
  await assert.rejects(c.updateGroup("7", { rename: "x" }), (err: ChorusError) => err.code === "FORBIDDEN");
  c.close();
});

test("search sends the JSON mapping, reads the hits newest first and pages with the cursor; an empty query is refused", async () => {
  const server = new FakeServer(users);
  const conv = directConversation("1", "2");
  server.append(conv, "2", "年度预算审批");
  server.append(conv, "2", "see https://example.com/spec");
  server.append(conv, "1", "预算 is due friday");
  server.append("g:7", "2", "𠀀预算 for the team").serverTimeMs = "1001";
  const c = client(server);
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");

  const first = await c.search({ query: "预算", limit: 2 });
  const asked = server.received.map((r) => r.frame.search).filter((s) => s !== undefined);
  assert.deepEqual(asked, [{ query: "预算", limit: 2 }], "defaults left out");
  assert.deepEqual(
    first.hits.map((h) => [h.message.conversation, h.message.seq]),
    [
      [conv, 3],
      ["g:7", 1],
    ],
  );
  assert.equal(first.hits[0].message.content.kind, "text");
  assert.deepEqual(first.hits[0].highlights, [{ start: 0, end: 2 }], "a start of 0, left out on the wire, reads as 0");
  // The range counts code points: 𠀀 is one, though two UTF-16 units.
  assert.deepEqual(first.hits[1].highlights, [{ start: 1, end: 3 }]);
  assert.deepEqual(highlightParts(first.hits[1].fragment, first.hits[1].highlights), [
    { text: "𠀀", marked: false },
    { text: "预算", marked: true },
    { text: " for the team", marked: false },
  ]);
  assert.equal(first.nextCursor, "2");
  const second = await c.search({ query: "预算", limit: 2, cursor: first.nextCursor });
  assert.deepEqual(second.hits.map((h) => h.message.seq), [1]);
  assert.equal(second.nextCursor, "");

  // The history manager's listing: an empty query, a kind and a conversation.
  const links = await c.search({ conversation: conv, kind: "link", fromMs: 1000.5, sender: "2" });
  assert.deepEqual(links.hits.map((h) => h.links), [["https://example.com/spec"]]);
  const wire = server.received.map((r) => r.frame.search).filter((s) => s !== undefined).at(-1);
  assert.deepEqual(wire, { conversation: conv, kind: "SEARCH_KIND_LINK", fromMs: "1000", sender: "2" }, "int64 as strings, enums by name");

  await assert.rejects(c.search({ query: "  " }), (err: ChorusError) => err.code === "INVALID");
  await assert.rejects(c.search({ kind: "file" }), (err: ChorusError) => err.code === "INVALID");
  c.close();
});

test("an empty search result and a refusal both answer plainly", async () => {
  const server = new FakeServer(users);
  const c = client(server);
  await c.login("alice", "alice-pass");
  await until("online", () => c.state === "online");
  // An empty SearchResult still sets the oneof: {"search": {}}.
  assert.deepEqual(await c.search({ query: "nothing" }), { hits: [], nextCursor: "" });
  server.script.push({
    kind: "search",
    answer: (socket, frame) => {
      socket.deliver({ requestId: frame.requestId, error: { code: "FORBIDDEN", message: "not a member of g:9" } });
      return true;
    },
  });
  await assert.rejects(c.search({ query: "x", conversation: "g:9" }), (err: ChorusError) => {
    assert.equal(err.code, "FORBIDDEN");
    assert.equal(err.message, "not a member of g:9");
    return true;
  });
  c.close();
});

test("highlightParts counts code points and clips ranges it cannot trust", () => {
  assert.deepEqual(highlightParts("abc", []), [{ text: "abc", marked: false }]);
  assert.deepEqual(highlightParts("😀a😀b", [{ start: 2, end: 3 }]), [
    { text: "😀a", marked: false },
    { text: "😀", marked: true },
    { text: "b", marked: false },
  ]);
  // Out of order, overlapping, past the end.
  assert.deepEqual(
    highlightParts("abcdef", [
      { start: 4, end: 99 },
      { start: 1, end: 3 },
      { start: 2, end: 5 },
    ]),
    [
      { text: "a", marked: false },
      { text: "bcdef", marked: true },
    ],
  );
  assert.deepEqual(highlightParts("", [{ start: 0, end: 2 }]), []);
});
