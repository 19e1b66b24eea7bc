// The few REST calls the page makes itself (everything else goes over the
// socket): the history export of a conversation, which needs the session's
// token as a bearer token, and saving what it returns as a download.

/** A fetch as the page's (injectable for the tests). */
export type Fetch = (url: string, init: { headers: Record<string, string> }) => Promise<Response>;

export type ExportFormat = "json" | "text";

/** Parts fetched at most: 10,000 messages each, the server's part. */
const MAX_PARTS = 100;

/** The REST error body: `{ "code": "FORBIDDEN", "message": "…" }`. */
async function refusal(response: Response): Promise<Error> {
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
  fetchFn: Fetch = (url, init) => fetch(url, init),
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
