import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import {
  CHUNK_BYTES,
  type Fetch,
  MAX_RESUMES,
  type SpaceEntry,
  addSpaceFile,
  changePassword,
  changeSpaceEntry,
  chunkBytes,
  deleteSpaceEntry,
  exportHistory,
  fetchFile,
  fetchSpaceFile,
  listSpace,
  makeSpaceFolder,
  nextChunk,
  resumable,
  resumeDelay,
  resumeOffset,
  uploadFile,
  uploadToSpace,
} from "./rest.js";

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

const MiB = 1024 * 1024;

test("chunks are the server's limit at most 1 MiB, at the offsets in turn, the last one short", () => {
  assert.equal(chunkBytes(8 * MiB), CHUNK_BYTES);
  assert.equal(chunkBytes(256 * 1024), 256 * 1024);
  assert.equal(chunkBytes(0), CHUNK_BYTES, "a server naming no limit gets 1 MiB chunks");
  const plan: [number, number][] = [];
  for (let at: number | null = 0; at !== null; ) {
    const range = nextChunk(at, 2.5 * MiB, MiB);
    if (range) plan.push([range.start, range.end]);
    at = range ? range.end : null;
  }
  assert.deepEqual(plan, [
    [0, MiB],
    [MiB, 2 * MiB],
    [2 * MiB, 2.5 * MiB],
  ]);
  assert.deepEqual(nextChunk(1234, 5000, MiB), { start: 1234, end: 5000 }, "a resumption starts where the server is");
  assert.equal(nextChunk(5000, 5000, MiB), null);
  assert.equal(nextChunk(0, 0, MiB), null, "an empty file has no chunk");
});

test("the offset to resume from is the server's, within the file; 409s and outages resume, refusals do not", () => {
  assert.equal(resumeOffset({ offset: 0 }, 10), 0);
  assert.equal(resumeOffset({ offset: 10 }, 10), 10);
  for (const offset of [11, -1, 1.5, "3", undefined]) assert.throws(() => resumeOffset({ offset }, 10), /offset/);
  for (const status of [409, 408, 429, 502, 503, 504]) assert.ok(resumable(status), String(status));
  for (const status of [400, 401, 403, 404, 413, 500]) assert.ok(!resumable(status), String(status));
  assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => resumeDelay(n, 500)), [500, 1000, 2000, 4000, 8000, 8000]);
});

/**
 * A stand-in for the upload endpoints: keeps the bytes at the offsets sent,
 * and runs `trouble` before each chunk (to answer it otherwise).
 */
function uploadServer(trouble: (n: number, offset: number) => Response | "lost" | "lost-after" | null = () => null) {
  // The bytes kept, chunk by chunk (a spread of 1 MiB would overflow the stack).
  const kept: Uint8Array[] = [];
  const bytes = { get length() { return kept.reduce((n, c) => n + c.length, 0); } };
  const asked: string[] = [];
  let chunks = 0;
  let completed: { sha256: string } | null = null;
  const status = () =>
    new Response(JSON.stringify({ upload_id: "u1", offset: bytes.length, size: 0, expires_at_ms: 0, max_chunk_bytes: 4 * MiB }));
  const fetchFn: Fetch = async (url, init) => {
    const method = init.method ?? "GET";
    assert.equal(init.headers.Authorization, "Bearer tok");
    if (method === "POST" && url === "/api/v1/uploads") {
      asked.push(`announce ${init.body}`);
      return new Response(
        JSON.stringify({ upload_id: "u1", offset: 0, size: 0, expires_at_ms: 0, max_chunk_bytes: 4 * MiB }),
        { status: 201 },
      );
    }
    if (method === "PATCH") {
      const offset = Number(init.headers["Upload-Offset"]);
      asked.push(`patch ${offset}`);
      assert.equal(init.headers["Content-Type"], "application/offset+octet-stream");
      const chunk = new Uint8Array(await (init.body as Blob).arrayBuffer());
      assert.ok(chunk.length <= MiB, "at most 1 MiB a chunk");
      const problem = trouble(++chunks, offset);
      if (problem instanceof Response) return problem;
      if (problem === "lost") throw new TypeError("Failed to fetch");
      if (offset !== bytes.length) {
        return new Response(JSON.stringify({ code: "CONFLICT", message: `the upload is at ${bytes.length}` }), { status: 409 });
      }
      kept.push(chunk);
      // The chunk was kept, but its answer never came.
      if (problem === "lost-after") throw new TypeError("network error");
      return status();
    }
    if (method === "GET") {
      asked.push("status");
      return status();
    }
    if (method === "POST" && url.endsWith("/complete")) {
      asked.push("complete");
      completed = JSON.parse(init.body as string);
      const hash = createHash("sha256");
      for (const c of kept) hash.update(c);
      const sha256 = hash.digest("hex");
      if (completed!.sha256 !== sha256) return new Response(JSON.stringify({ code: "INVALID", message: "hash mismatch" }), { status: 400 });
      return new Response(
        JSON.stringify({ file_id: "f1", name: "a.bin", size: bytes.length, mime_type: "application/octet-stream", sha256, image: false, width: 0, height: 0, thumbnail: false }),
        { status: 201 },
      );
    }
    if (method === "DELETE") {
      asked.push("delete");
      return new Response(null, { status: 204 });
    }
    throw new Error(`unexpected ${method} ${url}`);
  };
  return { fetchFn, asked, completed: () => completed };
}

function fileOf(size: number): File {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + 7) & 0xff;
  return new File([data], "a.bin");
}

test("an upload announces, sends 1 MiB chunks at the offsets kept, completes with the SHA-256 and returns the file", async () => {
  const server = uploadServer();
  const file = fileOf(2.5 * MiB);
  const progress: number[] = [];
  const uploaded = await uploadFile("tok", "d:1:2", file, (sent, total) => {
    assert.equal(total, file.size);
    progress.push(sent);
  }, undefined, server.fetchFn, 0);
  assert.deepEqual(server.asked, [
    `announce ${JSON.stringify({ conversation: "d:1:2", name: "a.bin", size: file.size })}`,
    "patch 0",
    `patch ${MiB}`,
    `patch ${2 * MiB}`,
    "complete",
  ]);
  assert.deepEqual([...new Set(progress)], [0, MiB, 2 * MiB, 2.5 * MiB]);
  const expected = createHash("sha256").update(new Uint8Array(await file.arrayBuffer())).digest("hex");
  assert.equal(server.completed()?.sha256, expected);
  assert.equal(uploaded.file_id, "f1");
  assert.equal(uploaded.size, file.size);
});

test("a 409 or a lost connection re-reads the offset and resumes from the server's", async () => {
  // Chunk 2 is kept but its answer lost: the re-read says 2 MiB, so it is
  // not sent again. Chunk 4 is lost on its way: it is sent again.
  const server = uploadServer((n) => (n === 2 ? "lost-after" : n === 4 ? "lost" : null));
  const file = fileOf(3.5 * MiB);
  const uploaded = await uploadFile("tok", "g:7", file, () => {}, undefined, server.fetchFn, 0);
  assert.deepEqual(server.asked.slice(1), [
    "patch 0",
    `patch ${MiB}`,
    "status",
    `patch ${2 * MiB}`,
    `patch ${3 * MiB}`,
    "status",
    `patch ${3 * MiB}`,
    "complete",
  ]);
  assert.equal(uploaded.size, file.size, "every byte once, in order");

  // A server that moved on (a chunk sent twice from elsewhere): 409, then its offset.
  let conflicts = 0;
  const conflicting = uploadServer((n, offset) => {
    if (n !== 2) return null;
    conflicts++;
    return new Response(JSON.stringify({ code: "CONFLICT", message: `not at ${offset}` }), { status: 409 });
  });
  await uploadFile("tok", "g:7", fileOf(2 * MiB), () => {}, undefined, conflicting.fetchFn, 0);
  assert.equal(conflicts, 1);
  assert.deepEqual(conflicting.asked.slice(1), ["patch 0", `patch ${MiB}`, "status", `patch ${MiB}`, "complete"]);
});

test("an upload gives up after a few resumptions in a row, and a refusal at once; both cancel it on the server", async () => {
  const down = uploadServer(() => "lost");
  await assert.rejects(uploadFile("tok", "g:7", fileOf(10), () => {}, undefined, down.fetchFn, 0), /Failed to fetch/);
  assert.equal(down.asked.filter((a) => a.startsWith("patch")).length, MAX_RESUMES + 1);
  assert.equal(down.asked.at(-1), "delete");

  const blocked = uploadServer(() => new Response(JSON.stringify({ code: "FORBIDDEN", message: "files of type x are blocked" }), { status: 403 }));
  await assert.rejects(uploadFile("tok", "g:7", fileOf(10), () => {}, undefined, blocked.fetchFn, 0), /files of type x are blocked/);
  assert.deepEqual(blocked.asked.slice(1), ["patch 0", "delete"]);

  const refused: Fetch = async () => new Response(JSON.stringify({ code: "TOO_LARGE", message: "larger than 100 MiB" }), { status: 413 });
  await assert.rejects(uploadFile("tok", "g:7", fileOf(10), () => {}, undefined, refused, 0), /larger than 100 MiB/);
});

test("cancelling an upload stops it and deletes it on the server", async () => {
  const controller = new AbortController();
  const server = uploadServer((n) => {
    if (n === 2) controller.abort();
    return null;
  });
  const fetchFn: Fetch = async (url, init) => {
    // As fetch does: an aborted signal rejects.
    if (init.signal?.aborted) throw new DOMException("aborted", "AbortError");
    return server.fetchFn(url, init);
  };
  await assert.rejects(
    uploadFile("tok", "g:7", fileOf(3 * MiB), () => {}, controller.signal, fetchFn, 0),
    (err: Error) => err.name === "AbortError",
  );
  assert.ok(!server.asked.includes("complete"));
  assert.equal(server.asked.at(-1), "delete");
});

test("a download sends the bearer token, reports progress and resumes a broken body with a Range", async () => {
  const data = new TextEncoder().encode("0123456789abcdef");
  const asked: { url: string; range?: string }[] = [];
  const fetchFn: Fetch = async (url, init) => {
    assert.equal(init.headers.Authorization, "Bearer tok");
    const range = init.headers.Range;
    asked.push({ url, range });
    if (!range) {
      // Six bytes, then the connection drops.
      let pulls = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulls++ === 0) controller.enqueue(data.slice(0, 6));
          else controller.error(new TypeError("terminated"));
        },
      });
      return new Response(body, { headers: { "content-type": "image/png", "content-length": String(data.length) } });
    }
    assert.equal(range, "bytes=6-");
    return new Response(data.slice(6), { status: 206, headers: { "content-type": "image/png", "content-length": "10" } });
  };
  const progress: [number, number][] = [];
  const blob = await fetchFile("tok", "d:1:2", 5, true, (r, t) => progress.push([r, t]), undefined, fetchFn);
  assert.deepEqual(asked, [
    { url: "/api/v1/conversations/d%3A1%3A2/messages/5/file?thumbnail=true", range: undefined },
    { url: "/api/v1/conversations/d%3A1%3A2/messages/5/file?thumbnail=true", range: "bytes=6-" },
  ]);
  assert.equal(await blob.text(), "0123456789abcdef");
  assert.equal(blob.type, "image/png");
  assert.deepEqual(progress.at(-1), [16, 16]);
  assert.ok(progress.some(([r]) => r === 6));

  const gone: Fetch = async () => new Response(JSON.stringify({ code: "NOT_FOUND", message: "message 5 was recalled" }), { status: 404 });
  await assert.rejects(fetchFile("tok", "d:1:2", 5, false, undefined, undefined, gone), /message 5 was recalled/);
});

function entry(over: Partial<SpaceEntry>): SpaceEntry {
  return {
    entry_id: 1,
    parent_id: 0,
    folder: false,
    name: "a.bin",
    size: 10,
    mime_type: "application/octet-stream",
    file_id: "f1",
    uploader: 5,
    created_ms: 1,
    updated_ms: 1,
    downloads: 0,
    ...over,
  };
}

/** Records each call (method, URL, JSON body) and answers with `answer`'s response. */
function recorder(answer: (method: string, url: string) => Response) {
  const asked: { method: string; url: string; body?: unknown; type?: string }[] = [];
  const fetchFn: Fetch = async (url, init) => {
    assert.equal(init.headers.Authorization, "Bearer tok");
    const method = init.method ?? "GET";
    asked.push({
      method,
      url,
      ...(init.body !== undefined ? { body: JSON.parse(init.body as string), type: init.headers["Content-Type"] } : {}),
    });
    return answer(method, url);
  };
  return { fetchFn, asked };
}

test("the file space lists a folder, makes folders, adds files, renames, moves and deletes with the bearer token", async () => {
  const folder = entry({ entry_id: 3, folder: true, name: "Reports", size: 0, file_id: "", mime_type: "" });
  const file = entry({ entry_id: 4, parent_id: 3 });
  const { fetchFn, asked } = recorder((method, url) => {
    if (method === "GET") return new Response(JSON.stringify({ folder: url.endsWith("?folder=3") ? 3 : 0, entries: [folder] }));
    if (method === "DELETE") return new Response(null, { status: 204 });
    return new Response(JSON.stringify(method === "POST" && url.endsWith("/files") ? folder : file), {
      status: method === "POST" ? 201 : 200,
    });
  });
  assert.deepEqual(await listSpace("tok", "7", 0, fetchFn), { folder: 0, entries: [folder] });
  assert.equal((await listSpace("tok", "7", 3, fetchFn)).folder, 3);
  assert.equal((await makeSpaceFolder("tok", "7", 0, "Reports", fetchFn)).entry_id, 3);
  await addSpaceFile("tok", "7", 3, "f1", fetchFn);
  assert.equal((await changeSpaceEntry("tok", "7", 4, { name: "b.bin" }, fetchFn)).entry_id, 4);
  await changeSpaceEntry("tok", "7", 4, { parent_id: 0 }, fetchFn);
  await deleteSpaceEntry("tok", "7", 4, fetchFn);
  const json = "application/json";
  assert.deepEqual(asked, [
    { method: "GET", url: "/api/v1/groups/7/files" },
    { method: "GET", url: "/api/v1/groups/7/files?folder=3" },
    { method: "POST", url: "/api/v1/groups/7/files", body: { folder: "Reports", parent_id: 0 }, type: json },
    { method: "POST", url: "/api/v1/groups/7/files", body: { file_id: "f1", parent_id: 3 }, type: json },
    { method: "PATCH", url: "/api/v1/groups/7/files/4", body: { name: "b.bin" }, type: json },
    { method: "PATCH", url: "/api/v1/groups/7/files/4", body: { parent_id: 0 }, type: json },
    { method: "DELETE", url: "/api/v1/groups/7/files/4" },
  ]);
});

test("the file space's refusals reject with the server's message", async () => {
  const refuse = (status: number, code: string, message: string) =>
    recorder(() => new Response(JSON.stringify({ code, message }), { status })).fetchFn;
  await assert.rejects(listSpace("tok", "7", 0, refuse(403, "FORBIDDEN", "not a member of group 7")), /not a member of group 7/);
  await assert.rejects(makeSpaceFolder("tok", "7", 0, "Reports", refuse(409, "CONFLICT", "Reports exists")), /Reports exists/);
  await assert.rejects(changeSpaceEntry("tok", "7", 4, { name: "x" }, refuse(403, "FORBIDDEN", "not yours")), /not yours/);
  await assert.rejects(deleteSpaceEntry("tok", "7", 3, refuse(409, "CONFLICT", "the folder is not empty")), /the folder is not empty/);
  await assert.rejects(deleteSpaceEntry("tok", "7", 3, async () => new Response("oops", { status: 500 })), /HTTP 500/);
});

test("an upload to the space is an upload for the group's conversation, then its entry in the folder", async () => {
  const server = uploadServer();
  const added: unknown[] = [];
  const fetchFn: Fetch = async (url, init) => {
    if (url === "/api/v1/groups/7/files") {
      assert.equal(init.headers.Authorization, "Bearer tok");
      added.push(JSON.parse(init.body as string));
      return new Response(JSON.stringify(entry({ entry_id: 9, parent_id: 3 })), { status: 201 });
    }
    return server.fetchFn(url, init);
  };
  const progress: number[] = [];
  const created = await uploadToSpace("tok", "7", 3, fileOf(100), (sent) => progress.push(sent), undefined, fetchFn, 0);
  assert.equal(created.entry_id, 9);
  assert.equal(server.asked[0], `announce ${JSON.stringify({ conversation: "g:7", name: "a.bin", size: 100 })}`);
  assert.deepEqual(added, [{ file_id: "f1", parent_id: 3 }]);
  assert.equal(progress.at(-1), 100);

  // A refused upload adds nothing.
  const refused: Fetch = async (url) => {
    assert.notEqual(url, "/api/v1/groups/7/files");
    return new Response(JSON.stringify({ code: "FORBIDDEN", message: "not a member of g:7" }), { status: 403 });
  };
  await assert.rejects(uploadToSpace("tok", "7", 0, fileOf(10), () => {}, undefined, refused, 0), /not a member of g:7/);
});

test("a space download fetches the entry's content with the token and reports progress", async () => {
  const asked: string[] = [];
  const fetchFn: Fetch = async (url, init) => {
    assert.equal(init.headers.Authorization, "Bearer tok");
    asked.push(url);
    return new Response("hello", { headers: { "content-type": "text/plain", "content-length": "5" } });
  };
  const progress: [number, number][] = [];
  const blob = await fetchSpaceFile("tok", "7", 4, (r, t) => progress.push([r, t]), undefined, fetchFn);
  assert.deepEqual(asked, ["/api/v1/groups/7/files/4/content"]);
  assert.equal(await blob.text(), "hello");
  assert.deepEqual(progress.at(-1), [5, 5]);
  assert.ok(!asked.some((u) => u.includes("tok")), "no token in a URL");

  const gone: Fetch = async () => new Response(JSON.stringify({ code: "NOT_FOUND", message: "no entry 4" }), { status: 404 });
  await assert.rejects(fetchSpaceFile("tok", "7", 4, undefined, undefined, gone), /no entry 4/);
});

test("a password change sends both passwords with the token and shows the server's refusal", async () => {
  const asked: { url: string; method?: string; auth: string; body: unknown }[] = [];
  let answer = new Response(null, { status: 204 });
  const fetchFn: Fetch = async (url, init) => {
    asked.push({ url, method: init.method, auth: init.headers.Authorization, body: JSON.parse(String(init.body)) });
    return answer;
  };
  await changePassword("tok", "old-secret", "new-secret", fetchFn);
  assert.deepEqual(asked, [
    {
      url: "/api/v1/me/password",
      method: "PUT",
      auth: "Bearer tok",
      body: { current_password: "old-secret", new_password: "new-secret" },
    },
  ]);
  answer = new Response(JSON.stringify({ code: "FORBIDDEN", message: "wrong password" }), { status: 403 });
  await assert.rejects(changePassword("tok", "bad", "new-secret", fetchFn), /wrong password/);
});
