// The few REST calls the page makes itself (everything else goes over the
// socket), each with the session's token as a bearer token: the history
// export of a conversation, file uploads and downloads (docs/decisions/0022),
// a group's file space, and saving what they return as a download.

/** What the page passes to fetch (a subset of RequestInit). */
export interface FetchInit {
  method?: string;
  headers: Record<string, string>;
  body?: Blob | string;
  signal?: AbortSignal;
}

/** A fetch as the page's (injectable for the tests). */
export type Fetch = (url: string, init: FetchInit) => Promise<Response>;

export const pageFetch: Fetch = (url, init) => fetch(url, init);

export type ExportFormat = "json" | "text";

/** Parts fetched at most: 10,000 messages each, the server's part. */
const MAX_PARTS = 100;

/** The REST error body: `{ "code": "FORBIDDEN", "message": "…" }`. */
export async function refusal(response: Response): Promise<Error> {
  try {
    const body = (await response.json()) as { code?: string; message?: string };
    if (body.message) return new Error(body.message);
  } catch {
    // Not the JSON error body.
  }
  return new Error(`HTTP ${response.status}`);
}

function fileName(disposition: string | null): string | null {
  const m = disposition?.match(/filename="([^"]+)"/);
  return m ? m[1] : null;
}

/**
 * Fetches the whole history of a conversation from
 * `GET /api/v1/conversations/{id}/export` with the session's token, every
 * part of it (the server answers 10,000 messages a part and names the next
 * in `X-Chorus-Next-After-Seq`), joined into one file.
 */
export async function exportHistory(
  token: string,
  conversation: string,
  format: ExportFormat,
  fetchFn: Fetch = pageFetch,
): Promise<{ blob: Blob; fileName: string }> {
  const texts: string[] = [];
  let json: { messages?: unknown[]; next_after_seq?: number } | null = null;
  let name: string | null = null;
  let afterSeq = "";
  for (let part = 0; part < MAX_PARTS; part++) {
    const url =
      `/api/v1/conversations/${encodeURIComponent(conversation)}/export?format=${format}` +
      (afterSeq ? `&after_seq=${afterSeq}` : "");
    const response = await fetchFn(url, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) throw await refusal(response);
    name ??= fileName(response.headers.get("content-disposition"));
    if (format === "text") {
      texts.push(await response.text());
    } else {
      const page = (await response.json()) as { messages?: unknown[] };
      if (!json) json = page;
      else json.messages = [...(json.messages ?? []), ...(page.messages ?? [])];
    }
    afterSeq = response.headers.get("x-chorus-next-after-seq") ?? "";
    if (!afterSeq || afterSeq === "0") break;
  }
  if (json) json.next_after_seq = 0;
  const blob =
    format === "text"
      ? new Blob(texts, { type: "text/plain;charset=utf-8" })
      : new Blob([JSON.stringify(json, null, 2)], { type: "application/json" });
  return { blob, fileName: name ?? `chorus-${conversation.replace(/:/g, "-")}.${format === "text" ? "txt" : "json"}` };
}

/** Saves a blob as a download named `fileName`. */
export function saveBlob(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = fileName;
  a.rel = "noopener";
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
  // The download has its own copy once started.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A completed upload, as `POST /api/v1/uploads/{id}/complete` answers it. */
export interface UploadedFile {
  file_id: string;
  name: string;
  size: number;
  mime_type: string;
  sha256: string;
  image: boolean;
  width: number;
  height: number;
  thumbnail: boolean;
}

/** An upload in progress, as the server answers its announcement and every chunk. */
interface UploadStatus {
  upload_id: string;
  offset: number;
  size: number;
  expires_at_ms: number;
  max_chunk_bytes: number;
}

/** The largest chunk the page sends, whatever the server allows: progress moves every MiB. */
export const CHUNK_BYTES = 1024 * 1024;

/** Resumptions of an upload in a row without a byte kept, before it fails. */
export const MAX_RESUMES = 5;

/**
 * Why an upload failed on the page's side (the server's refusals reject
 * with its message instead): no crypto.subtle outside a secure context,
 * the file unreadable for its hash, or the connection lost past resuming.
 */
export class UploadError extends Error {
  constructor(
    readonly reason: "insecure" | "unreadable" | "network",
    message: string,
  ) {
    super(message);
    this.name = "UploadError";
  }
}

/** The size of the chunks sent: the server's limit, at most CHUNK_BYTES. */
export function chunkBytes(maxChunkBytes: number): number {
  return maxChunkBytes > 0 ? Math.min(maxChunkBytes, CHUNK_BYTES) : CHUNK_BYTES;
}

/** The bytes of the next chunk from `offset` (end exclusive); null once all are sent. */
export function nextChunk(offset: number, size: number, chunk: number): { start: number; end: number } | null {
  if (offset >= size) return null;
  return { start: offset, end: Math.min(size, offset + chunk) };
}

/**
 * The offset to go on from, as the server tells it (after a chunk, or
 * re-read after a 409 or a lost connection): the server's word, since
 * only it knows which bytes it kept; one outside the file is refused
 * rather than trusted.
 */
export function resumeOffset(status: { offset?: unknown }, size: number): number {
  const offset = status.offset;
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0 || offset > size) {
    throw new Error(`the server named offset ${String(offset)} of a ${size}-byte upload`);
  }
  return offset;
}

/**
 * Whether an answer to a chunk means "re-read the offset and go on": a
 * wrong offset (409, a chunk lost or sent twice), a timeout, rate
 * limiting, or a node unavailable for a moment. Other refusals end the
 * upload with the server's message.
 */
export function resumable(status: number): boolean {
  return status === 409 || status === 408 || status === 429 || status === 502 || status === 503 || status === 504;
}

/** The wait before the n-th resumption in a row (1, 2, …): doubled each time, at most 8 s. */
export function resumeDelay(attempt: number, baseMs: number): number {
  return Math.min(8_000, baseMs * 2 ** Math.max(0, attempt - 1));
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("the upload was cancelled", "AbortError");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The lowercase hex SHA-256 of a file. crypto.subtle hashes one buffer,
 * not a stream, so the whole file is read into memory once: acceptable for
 * the sizes the file policy allows (100 MiB unless an admin raises it); a
 * file too large for the browser to read whole fails as "unreadable"
 * before a byte is sent. crypto.subtle exists only in a secure context
 * (HTTPS, or localhost / 127.0.0.1).
 */
export async function sha256Hex(file: Blob): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new UploadError("insecure", "crypto.subtle is unavailable: the page is not in a secure context");
  let digest: ArrayBuffer;
  try {
    digest = await subtle.digest("SHA-256", await file.arrayBuffer());
  } catch (err) {
    throw new UploadError("unreadable", (err as Error).message || String(err));
  }
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Uploads a file for a conversation (docs/decisions/0022) and returns the
 * file the server holds, whose `file_id` a message then sends. It
 * announces the upload (the policy checks name, size and membership before
 * any byte), hashes the file, sends it in chunks of
 * min(max_chunk_bytes, 1 MiB) at the offsets the server keeps, and on a
 * 409 or a lost connection re-reads the offset (GET) and goes on from
 * there, up to MAX_RESUMES times in a row. `onProgress` hears the bytes
 * the server kept. Aborting `signal` cancels the upload on the server too
 * (DELETE), as does a failure; the server discards it anyway once it
 * expires. A 307 (the upload held by another node) is followed by fetch:
 * the chunk is a Blob, which it can send again.
 */
export async function uploadFile(
  token: string,
  conversation: string,
  file: File,
  onProgress: (sent: number, total: number) => void,
  signal?: AbortSignal,
  fetchFn: Fetch = pageFetch,
  resumeDelayMs = 500,
): Promise<UploadedFile> {
  // Refused before announcing: nothing to clean up on the server.
  if (!globalThis.crypto?.subtle) throw new UploadError("insecure", "crypto.subtle is unavailable: the page is not in a secure context");
  const auth = { Authorization: `Bearer ${token}` };
  const json = { ...auth, "Content-Type": "application/json" };
  const announced = await fetchFn("/api/v1/uploads", {
    method: "POST",
    headers: json,
    body: JSON.stringify({ conversation, name: file.name, size: file.size }),
    signal,
  });
  if (!announced.ok) throw await refusal(announced);
  const upload = (await announced.json()) as UploadStatus;
  const url = `/api/v1/uploads/${encodeURIComponent(upload.upload_id)}`;
  const size = file.size;
  try {
    onProgress(0, size);
    const sha256 = await sha256Hex(file);
    const chunk = chunkBytes(upload.max_chunk_bytes);
    let offset = resumeOffset(upload, size);
    let resumes = 0;
    onProgress(offset, size);
    for (;;) {
      const range = nextChunk(offset, size, chunk);
      if (!range) break;
      let lost: string;
      try {
        const answer = await fetchFn(url, {
          method: "PATCH",
          headers: { ...auth, "Upload-Offset": String(range.start), "Content-Type": "application/offset+octet-stream" },
          body: file.slice(range.start, range.end),
          signal,
        });
        if (answer.ok) {
          const kept = resumeOffset((await answer.json()) as UploadStatus, size);
          // A chunk answered without a byte kept counts as a failure, so this cannot loop for ever.
          if (kept > offset) resumes = 0;
          else if (++resumes > MAX_RESUMES) throw new UploadError("network", `the upload is stuck at byte ${offset}`);
          offset = kept;
          onProgress(offset, size);
          continue;
        }
        if (!resumable(answer.status)) throw await refusal(answer);
        lost = (await refusal(answer)).message;
      } catch (err) {
        // fetch rejects with a TypeError when the connection is lost.
        if (signal?.aborted || !(err instanceof TypeError)) throw err;
        lost = err.message;
      }
      if (++resumes > MAX_RESUMES) throw new UploadError("network", lost);
      offset = await currentOffset(url, auth, size, resumes, resumeDelayMs, signal, fetchFn);
      onProgress(offset, size);
    }
    const completed = await fetchFn(`${url}/complete`, { method: "POST", headers: json, body: JSON.stringify({ sha256 }), signal });
    if (!completed.ok) throw await refusal(completed);
    return (await completed.json()) as UploadedFile;
  } catch (err) {
    // Best effort, without the signal (it may be the reason): the server frees the bytes now.
    void fetchFn(url, { method: "DELETE", headers: auth }).catch(() => {});
    throw err;
  }
}

/**
 * Waits, then re-reads where an upload stands, waiting longer and trying
 * again while the connection stays lost (up to MAX_RESUMES tries in all).
 */
async function currentOffset(
  url: string,
  auth: Record<string, string>,
  size: number,
  attempt: number,
  baseMs: number,
  signal: AbortSignal | undefined,
  fetchFn: Fetch,
): Promise<number> {
  for (let n = attempt; ; n++) {
    await sleep(resumeDelay(n, baseMs), signal);
    try {
      const answer = await fetchFn(url, { headers: auth, signal });
      if (answer.ok) return resumeOffset((await answer.json()) as UploadStatus, size);
      if (!resumable(answer.status) || n >= MAX_RESUMES) throw await refusal(answer);
    } catch (err) {
      if (signal?.aborted || !(err instanceof TypeError)) throw err;
      if (n >= MAX_RESUMES) throw new UploadError("network", err.message);
    }
  }
}

/** Download attempts after a lost connection, each going on from the bytes received (Range). */
const DOWNLOAD_RESUMES = 3;

/**
 * Fetches the file of a message (or, with `thumbnail`, its image's
 * thumbnail) from `GET /api/v1/conversations/{conv}/messages/{seq}/file`.
 * The bearer token goes in the Authorization header, never in a URL, so
 * the page shows the blob (URL.createObjectURL) rather than linking to
 * the file. `onProgress` hears the bytes received of the total (0 when the
 * server names none); a connection lost midway goes on with a Range from
 * the bytes received.
 */
export async function fetchFile(
  token: string,
  conversation: string,
  seq: number,
  thumbnail = false,
  onProgress?: (received: number, total: number) => void,
  signal?: AbortSignal,
  fetchFn: Fetch = pageFetch,
): Promise<Blob> {
  const url =
    `/api/v1/conversations/${encodeURIComponent(conversation)}/messages/${seq}/file` + (thumbnail ? "?thumbnail=true" : "");
  return fetchBytes(token, url, onProgress, signal, fetchFn);
}

/**
 * Fetches the bytes at `url` with the bearer token, reporting progress and
 * going on with a Range from the bytes received after a lost connection
 * (up to DOWNLOAD_RESUMES times).
 */
async function fetchBytes(
  token: string,
  url: string,
  onProgress: ((received: number, total: number) => void) | undefined,
  signal: AbortSignal | undefined,
  fetchFn: Fetch,
): Promise<Blob> {
  const parts: Uint8Array[] = [];
  let received = 0;
  let total = 0;
  let type = "";
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
    if (received > 0) headers.Range = `bytes=${received}-`;
    try {
      const response = await fetchFn(url, { headers, signal });
      if (!response.ok) throw await refusal(response);
      if (response.status !== 206 && received > 0) {
        // The whole file again, not the rest: start over.
        parts.length = 0;
        received = 0;
        total = 0;
      }
      type ||= response.headers.get("content-type") ?? "";
      total ||= received + Number(response.headers.get("content-length") ?? 0);
      onProgress?.(received, total);
      if (!response.body) {
        const rest = new Uint8Array(await response.arrayBuffer());
        parts.push(rest);
        received += rest.byteLength;
      } else {
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parts.push(value);
          received += value.byteLength;
          onProgress?.(received, total);
        }
      }
      onProgress?.(received, Math.max(total, received));
      return new Blob(parts as BlobPart[], { type });
    } catch (err) {
      // fetch, and reading its body, reject with a TypeError when the connection is lost.
      if (signal?.aborted || !(err instanceof TypeError) || attempt >= DOWNLOAD_RESUMES) throw err;
    }
  }
}

// A group's file space (群文件共享): folders and files kept with the group,
// under `/api/v1/groups/{id}/files`. Members list, add and download; an
// entry's uploader, the group's owner and admins, and admins of the
// organisation rename, move and delete it (the server decides).

/** A folder or a file of a group's file space, as the server answers it. */
export interface SpaceEntry {
  entry_id: number;
  /** The folder it is in; 0: the top. */
  parent_id: number;
  folder: boolean;
  name: string;
  /** A file's size, type and upload; empty for a folder. */
  size: number;
  mime_type: string;
  file_id: string;
  /** The user id of who added it. */
  uploader: number;
  created_ms: number;
  updated_ms: number;
  downloads: number;
}

/** One folder's entries, folders first, then by name. */
export interface SpaceListing {
  folder: number;
  entries: SpaceEntry[];
}

/** A rename, a move (to `parent_id`, 0: the top), or both. */
export interface SpaceChange {
  name?: string;
  parent_id?: number;
}

function spaceUrl(groupId: string, entryId?: number): string {
  const base = `/api/v1/groups/${encodeURIComponent(groupId)}/files`;
  return entryId === undefined ? base : `${base}/${entryId}`;
}

/** The JSON answer of a REST call, or its refusal's message as an Error. */
async function callJson<R>(fetchFn: Fetch, url: string, token: string, method = "GET", body?: unknown): Promise<R> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  const init: FetchInit = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetchFn(url, init);
  if (!response.ok) throw await refusal(response);
  return (await response.json()) as R;
}

/**
 * Changes the signed-in user's own password (the current one is required);
 * the server ends every other session of the user and keeps this one.
 */
export async function changePassword(token: string, current: string, next: string, fetchFn: Fetch = pageFetch): Promise<void> {
  const response = await fetchFn("/api/v1/me/password", {
    method: "PUT",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ current_password: current, new_password: next }),
  });
  if (!response.ok) throw await refusal(response);
}

/** Lists one folder (0: the top) of a group's file space. */
export function listSpace(token: string, groupId: string, folder = 0, fetchFn: Fetch = pageFetch): Promise<SpaceListing> {
  return callJson<SpaceListing>(fetchFn, folder > 0 ? `${spaceUrl(groupId)}?folder=${folder}` : spaceUrl(groupId), token);
}

/** Adds a completed upload the caller made for `g:{groupId}` to a folder of the space. */
export function addSpaceFile(token: string, groupId: string, parentId: number, fileId: string, fetchFn: Fetch = pageFetch): Promise<SpaceEntry> {
  return callJson<SpaceEntry>(fetchFn, spaceUrl(groupId), token, "POST", { file_id: fileId, parent_id: parentId });
}

/** Makes a folder in a folder of the space; a name taken there is refused (409). */
export function makeSpaceFolder(token: string, groupId: string, parentId: number, name: string, fetchFn: Fetch = pageFetch): Promise<SpaceEntry> {
  return callJson<SpaceEntry>(fetchFn, spaceUrl(groupId), token, "POST", { folder: name, parent_id: parentId });
}

/** Renames or moves an entry of the space and returns it as it is now. */
export function changeSpaceEntry(
  token: string,
  groupId: string,
  entryId: number,
  change: SpaceChange,
  fetchFn: Fetch = pageFetch,
): Promise<SpaceEntry> {
  return callJson<SpaceEntry>(fetchFn, spaceUrl(groupId, entryId), token, "PATCH", change);
}

/** Deletes an entry of the space; a folder must be empty (409 otherwise). */
export async function deleteSpaceEntry(token: string, groupId: string, entryId: number, fetchFn: Fetch = pageFetch): Promise<void> {
  const response = await fetchFn(spaceUrl(groupId, entryId), { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw await refusal(response);
}

/**
 * Uploads a file for the group's conversation (`g:{groupId}`, as a chat
 * attachment) and then adds it to a folder of the space.
 */
export async function uploadToSpace(
  token: string,
  groupId: string,
  parentId: number,
  file: File,
  onProgress: (sent: number, total: number) => void,
  signal?: AbortSignal,
  fetchFn: Fetch = pageFetch,
  resumeDelayMs = 500,
): Promise<SpaceEntry> {
  const uploaded = await uploadFile(token, `g:${groupId}`, file, onProgress, signal, fetchFn, resumeDelayMs);
  return addSpaceFile(token, groupId, parentId, uploaded.file_id, fetchFn);
}

/**
 * Fetches a file of the space (the server counts the download), with the
 * token in the Authorization header and progress as fetchFile's.
 */
export function fetchSpaceFile(
  token: string,
  groupId: string,
  entryId: number,
  onProgress?: (received: number, total: number) => void,
  signal?: AbortSignal,
  fetchFn: Fetch = pageFetch,
): Promise<Blob> {
  return fetchBytes(token, `${spaceUrl(groupId, entryId)}/content`, onProgress, signal, fetchFn);
}
