import assert from "node:assert/strict";
import { test } from "node:test";

import { type Fetch, exportHistory } from "./rest.js";

test("an export sends the bearer token and joins the parts the server names", async () => {
  const asked: { url: string; auth: string }[] = [];
  const parts = [
    { messages: [{ seq: 1 }, { seq: 2 }], next: "2" },
    { messages: [{ seq: 3 }], next: "" },
  ];
  const fetchFn: Fetch = async (url, init) => {
    asked.push({ url, auth: init.headers.Authorization });
    const part = parts[asked.length - 1];
    const headers: Record<string, string> = { "content-disposition": 'attachment; filename="chorus-d-1-2.json"' };
    if (part.next) headers["x-chorus-next-after-seq"] = part.next;
    return new Response(JSON.stringify({ conversation: "d:1:2", messages: part.messages, next_after_seq: Number(part.next) }), {
      headers,
    });
  };
  const { blob, fileName } = await exportHistory("tok", "d:1:2", "json", fetchFn);
  assert.deepEqual(asked, [
    { url: "/api/v1/conversations/d%3A1%3A2/export?format=json", auth: "Bearer tok" },
    { url: "/api/v1/conversations/d%3A1%3A2/export?format=json&after_seq=2", auth: "Bearer tok" },
  ]);
  assert.equal(fileName, "chorus-d-1-2.json");
  const joined = JSON.parse(await blob.text());
  assert.deepEqual(joined.messages, [{ seq: 1 }, { seq: 2 }, { seq: 3 }]);
  assert.equal(joined.next_after_seq, 0);
});

test("a text export is one file; a refusal rejects with the server's message", async () => {
  const text: Fetch = async () => new Response("2026-12-03 10:00:00 UTC #1 bob: hi\n");
  const { blob, fileName } = await exportHistory("tok", "g:7", "text", text);
  assert.equal(await blob.text(), "2026-12-03 10:00:00 UTC #1 bob: hi\n");
  assert.equal(fileName, "chorus-g-7.txt", "named after the conversation without a Content-Disposition");
  const refused: Fetch = async () =>
    new Response(JSON.stringify({ code: "FORBIDDEN", message: "not a member of g:7" }), { status: 403 });
  await assert.rejects(exportHistory("tok", "g:7", "json", refused), /not a member of g:7/);
});
