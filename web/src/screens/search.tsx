import { type ChorusClient, type SearchHit, type SearchKind, type SearchRequest, highlightParts } from "@chorus/client";
import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";

import { useT } from "../context.js";

interface Props {
  client: ChorusClient;
  /** The conversation open in the chat, for the "this conversation" filter. */
  open: string | null;
  /** Opens a conversation at a message. */
  onJump: (conversation: string, seq: number) => void;
  /** What shows when no search is active: the conversation list. */
  children: ComponentChildren;
}

const KINDS: SearchKind[] = ["any", "text", "file", "image", "link"];

/** A date and time, for hits that may be old. */
export function when(ms: number): string {
  return ms
    ? new Date(ms).toLocaleString([], { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })
    : "";
}

/** A fragment with its matched parts in <mark>. */
export function Fragment({ hit }: { hit: SearchHit }) {
  return (
    <bdi class="fragment">
      {highlightParts(hit.fragment, hit.highlights).map((p, i) => (p.marked ? <mark key={i}>{p.text}</mark> : p.text))}
    </bdi>
  );
}

/**
 * The search box above the conversation list (docs/decisions/0021): Enter
 * searches every conversation of the user's, or the open one, for any kind
 * of message or only texts, files, images or links; the hits replace the
 * list, newest first, with More while the server has another page. A click
 * opens the conversation at the message; Escape or Clear returns to the list.
 */
export function SearchBox({ client, open, onJump, children }: Props) {
  const t = useT();
  const [query, setQuery] = useState("");
  const [scope, setScope] = useState<"all" | "current">("all");
  const [kind, setKind] = useState<SearchKind>("any");
  // The request shown (null: no search, the list shows), its hits and next page.
  const [active, setActive] = useState<SearchRequest | null>(null);
  const [hits, setHits] = useState<SearchHit[]>([]);
  const [cursor, setCursor] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  // Answers to an older request than the last are dropped.
  const latest = useRef(0);

  const run = (request: SearchRequest, more: boolean) => {
    const id = ++latest.current;
    setActive(request);
    setBusy(true);
    setError("");
    if (!more) {
      setHits([]);
      setCursor("");
    }
    client.search(more ? { ...request, cursor } : request).then(
      (result) => {
        if (id !== latest.current) return;
        setHits((h) => (more ? [...h, ...result.hits] : result.hits));
        setCursor(result.nextCursor);
        setBusy(false);
      },
      (err: Error) => {
        if (id !== latest.current) return;
        setError(t("search.failed", { message: err.message }));
        setBusy(false);
      },
    );
  };

  const clear = () => {
    latest.current++;
    setQuery("");
    setActive(null);
    setHits([]);
    setCursor("");
    setError("");
    setBusy(false);
  };

  /** Searches with the box's text and these filters; an empty box lists only files, images or links of one conversation. */
  const search = (text: string, scopeNow: "all" | "current", kindNow: SearchKind) => {
    const conversation = scopeNow === "current" && open ? open : "";
    const q = text.trim();
    const listing = !q && conversation !== "" && kindNow !== "any" && kindNow !== "text";
    if (!q && !listing) {
      if (!text) clear();
      return;
    }
    run({ query: q, conversation, kind: kindNow }, false);
  };

  const submit = (ev: Event) => {
    ev.preventDefault();
    search(query, scope, kind);
  };

  const onKeyDown = (ev: KeyboardEvent) => {
    if (ev.key === "Escape" && (active || query)) {
      ev.preventDefault();
      clear();
    }
  };

  const title = (conversation: string) => client.conversation(conversation)?.title || conversation;

  return (
    <div class="search" onKeyDown={onKeyDown}>
      <form class="search-box" role="search" onSubmit={submit}>
        <input
          type="search"
          aria-label={t("search.label")}
          placeholder={t("search.placeholder")}
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
          data-test="search-input"
        />
        {(active || query) && (
          <button type="button" class="link" onClick={clear} aria-label={t("search.clear")} data-test="search-clear">
            ✕
          </button>
        )}
      </form>
      {active ? (
        <div class="search-results" data-test="search-results">
          <div class="search-filters">
            <select
              aria-label={t("search.scope")}
              value={scope}
              onChange={(e) => {
                const value = e.currentTarget.value as "all" | "current";
                setScope(value);
                search(query, value, kind);
              }}
              data-test="search-scope"
            >
              <option value="all">{t("search.scope.all")}</option>
              <option value="current" disabled={!open}>
                {open ? t("search.scope.current", { name: title(open) }) : t("search.scope.none")}
              </option>
            </select>
            <select
              aria-label={t("search.kind")}
              value={kind}
              onChange={(e) => {
                const value = e.currentTarget.value as SearchKind;
                setKind(value);
                search(query, scope, value);
              }}
              data-test="search-kind"
            >
              {KINDS.map((k) => (
                <option key={k} value={k}>
                  {t(`search.kind.${k}`)}
                </option>
              ))}
            </select>
          </div>
          {error && (
            <p class="error" role="alert" data-test="search-error">
              {error}
            </p>
          )}
          {busy && hits.length === 0 && <p class="quiet">{t("search.searching")}</p>}
          {!busy && !error && hits.length === 0 && (
            <p class="quiet" data-test="search-empty">
              {t("search.empty")}
            </p>
          )}
          <ul>
            {hits.map((hit) => (
              <li key={`${hit.message.conversation}/${hit.message.seq}`}>
                <button
                  class="conv search-hit"
                  onClick={() => onJump(hit.message.conversation, hit.message.seq)}
                  data-test="search-result"
                  data-conversation={hit.message.conversation}
                  data-seq={hit.message.seq}
                  aria-current={hit.message.conversation === open ? "true" : undefined}
                >
                  <span class="title">{title(hit.message.conversation)}</span>
                  <span class="when">{when(hit.message.serverTimeMs)}</span>
                  <span class="last">
                    {hit.message.content.kind === "file" && "📎 "}
                    <Fragment hit={hit} />
                  </span>
                </button>
              </li>
            ))}
          </ul>
          {cursor && (
            <button class="link more" onClick={() => run(active, true)} disabled={busy} data-test="search-more">
              {t("search.more")}
            </button>
          )}
        </div>
      ) : (
        children
      )}
    </div>
  );
}
