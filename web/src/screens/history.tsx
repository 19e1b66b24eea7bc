import { type ChorusClient, type SearchHit } from "@chorus/client";
import { useEffect, useRef, useState } from "preact/hooks";

import { useT } from "../context.js";
import { type ExportFormat, exportHistory, saveBlob } from "../rest.js";
import { humanSize } from "../sizes.js";
import { Fragment, when } from "./search.js";

interface Props {
  client: ChorusClient;
  conversation: string;
  /** Shows a message in the chat. */
  onJump: (seq: number) => void;
  onClose: () => void;
}

type Tab = "files" | "images" | "links";

const KIND = { files: "file", images: "image", links: "link" } as const;

/** Only web links become links: the server finds http(s) URLs, the page does not trust it blindly. */
function safe(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

/**
 * The history manager of a conversation (聊天记录管理, docs/decisions/0021):
 * its files, images and links, newest first, a page at a time (a search
 * with an empty query, a kind and the conversation), and its whole history
 * exported as JSON or text through the REST API with the session's token.
 */
export function HistoryPanel({ client, conversation, onJump, onClose }: Props) {
  const t = useT();
  const [tab, setTab] = useState<Tab>("files");
  const [items, setItems] = useState<SearchHit[] | null>(null);
  const [cursor, setCursor] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [exporting, setExporting] = useState<ExportFormat | null>(null);
  const latest = useRef(0);

  const load = (more: boolean) => {
    const id = ++latest.current;
    setBusy(true);
    setError("");
    client.search({ conversation, kind: KIND[tab], cursor: more ? cursor : "" }).then(
      (result) => {
        if (id !== latest.current) return;
        setItems((old) => (more ? [...(old ?? []), ...result.hits] : result.hits));
        setCursor(result.nextCursor);
        setBusy(false);
      },
      (err: Error) => {
        if (id !== latest.current) return;
        setError(err.message);
        setBusy(false);
      },
    );
  };

  useEffect(() => {
    setItems(null);
    setCursor("");
    load(false);
  }, [client, conversation, tab]);

  const download = (format: ExportFormat) => {
    const token = client.session?.token;
    if (!token || exporting) return;
    setExporting(format);
    setError("");
    exportHistory(token, conversation, format).then(
      ({ blob, fileName }) => {
        saveBlob(blob, fileName);
        setExporting(null);
      },
      (err: Error) => {
        setError(t("history.export.failed", { message: err.message }));
        setExporting(null);
      },
    );
  };

  const item = (hit: SearchHit) => {
    const m = hit.message;
    const show = (
      <button class="link" onClick={() => onJump(m.seq)} data-test="history-show">
        {t("history.show")}
      </button>
    );
    if (tab === "links") {
      return (
        <li key={m.seq} data-test="history-item" data-seq={m.seq}>
          {hit.links.filter(safe).map((url) => (
            <a key={url} href={url} target="_blank" rel="noopener noreferrer" data-test="history-link">
              {url}
            </a>
          ))}
          <span class="quiet">
            <Fragment hit={hit} /> · {when(m.serverTimeMs)}
          </span>{" "}
          {show}
        </li>
      );
    }
    const file = m.content.kind === "file" ? m.content : null;
    return (
      <li key={m.seq} data-test="history-item" data-seq={m.seq}>
        <bdi class="name">
          {tab === "images" ? "🖼 " : "📎 "}
          {file?.name ?? hit.fragment}
        </bdi>
        <span class="quiet">
          {file ? `${humanSize(file.size)} · ` : ""}
          {when(m.serverTimeMs)}
        </span>{" "}
        {show}
      </li>
    );
  };

  return (
    <div
      class="history"
      role="region"
      aria-label={t("history.title")}
      onKeyDown={(e) => e.key === "Escape" && onClose()}
      data-test="history"
    >
      <div class="history-top">
        <div class="tabs" role="tablist">
          {(["files", "images", "links"] as const).map((name) => (
            <button
              key={name}
              role="tab"
              aria-selected={tab === name ? "true" : "false"}
              class={tab === name ? "link tab current" : "link tab"}
              onClick={() => setTab(name)}
              data-test={`history-${name}`}
            >
              {t(`history.${name}`)}
            </button>
          ))}
        </div>
        <span class="spacer" />
        <button class="link" onClick={() => download("json")} disabled={exporting !== null} data-test="export-json">
          {t("history.export.json")}
        </button>
        <button class="link" onClick={() => download("text")} disabled={exporting !== null} data-test="export-text">
          {t("history.export.text")}
        </button>
        <button class="link" onClick={onClose} aria-label={t("history.close")} data-test="history-close">
          ✕
        </button>
      </div>
      {exporting && <p class="quiet">{t("history.exporting")}</p>}
      {error && (
        <p class="error" role="alert" data-test="history-error">
          {error}
        </p>
      )}
      {items === null && !error && <p class="quiet">{t("lists.loading")}</p>}
      {items?.length === 0 && (
        <p class="quiet" data-test="history-empty">
          {t(`history.empty.${tab}`)}
        </p>
      )}
      <ul class="history-items" data-test="history-items" data-tab={tab}>
        {items?.map(item)}
      </ul>
      {cursor && (
        <button class="link more" onClick={() => load(true)} disabled={busy} data-test="history-more">
          {t("search.more")}
        </button>
      )}
    </div>
  );
}
