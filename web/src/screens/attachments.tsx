// Files and images in the chat (docs/decisions/0022): a file message's card
// with its download, an image's thumbnail and full view, an upload pending
// in the composer, and the picker of where to forward a message. Every byte
// comes through fetch() with the session's bearer token (rest.ts), shown
// from a blob URL: a token never goes in a URL.

import type { ChorusClient, Content, Message } from "@chorus/client";
import { useEffect, useRef, useState } from "preact/hooks";

import { type T, useT } from "../context.js";
import { UploadError, fetchFile, saveBlob } from "../rest.js";
import { fitWithin, humanSize, percent } from "../sizes.js";

export type FileContent = Extract<Content, { kind: "file" }>;

/** The longest side of an image shown in the chat. */
const THUMB_PX = 256;

/** An upload pending in the composer, until its message is sent. */
export interface PendingUpload {
  name: string;
  size: number;
  /** Bytes the server kept. */
  sent: number;
  /** Uploaded: its message is on its way, and cannot be cancelled any more. */
  sending: boolean;
  controller: AbortController;
}

/** The text to show for a failed upload: the server's message, or why the page could not. */
export function uploadFailure(t: T, err: unknown): string {
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof UploadError) return t(`file.error.${err.reason}`, { message });
  return message;
}

/** Fetches a message's file (or thumbnail) into a blob URL while mounted; revokes it after. */
function useBlobUrl(client: ChorusClient, m: Message, thumbnail: boolean) {
  const [state, setState] = useState<{ url?: string; blob?: Blob; error?: string; progress: number }>({ progress: 0 });
  useEffect(() => {
    const token = client.session?.token;
    if (!token) return;
    const controller = new AbortController();
    let url: string | undefined;
    setState({ progress: 0 });
    fetchFile(token, m.conversation, m.seq, thumbnail, (received, total) => setState((s) => ({ ...s, progress: percent(received, total) })), controller.signal).then(
      (blob) => {
        if (controller.signal.aborted) return;
        url = URL.createObjectURL(blob);
        setState({ url, blob, progress: 100 });
      },
      (err: Error) => {
        if (!controller.signal.aborted) setState({ error: err.message, progress: 0 });
      },
    );
    return () => {
      controller.abort();
      if (url) URL.revokeObjectURL(url);
    };
  }, [client, m.conversation, m.seq, thumbnail]);
  return state;
}

/** A file message: its name, size and type, and a Download button with its progress. */
export function FileCard({ client, message, file }: { client: ChorusClient; message: Message; file: FileContent }) {
  const t = useT();
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState("");
  // A download still running when the card goes (another conversation opened) stops.
  const running = useRef<AbortController | null>(null);
  useEffect(() => () => running.current?.abort(), []);

  const download = () => {
    const token = client.session?.token;
    if (!token || running.current) return;
    const controller = new AbortController();
    running.current = controller;
    setError("");
    setProgress(0);
    fetchFile(token, message.conversation, message.seq, false, (received, total) => setProgress(percent(received, total)), controller.signal)
      .then(
        (blob) => saveBlob(blob, file.name),
        (err: Error) => {
          if (!controller.signal.aborted) setError(t("file.download.failed", { message: err.message }));
        },
      )
      .finally(() => {
        running.current = null;
        if (!controller.signal.aborted) setProgress(null);
      });
  };

  return (
    <div class="file-card" data-test="file-card">
      <span class="file-icon" aria-hidden="true">
        {file.image ? "🖼" : "📎"}
      </span>
      <span class="file-info">
        <bdi class="file-name" data-test="file-name">
          {file.name}
        </bdi>
        <span class="quiet" data-test="file-meta">
          {humanSize(file.size)} · {file.mimeType || t("file.type.unknown")}
        </span>
        {progress !== null && (
          <span class="file-progress">
            <progress max={100} value={progress} aria-label={t("file.downloading", { percent: progress })} data-test="download-progress" />{" "}
            <span class="quiet">{t("file.downloading", { percent: progress })}</span>
          </span>
        )}
        {error && (
          <span class="error" role="alert" data-test="download-error">
            {error}
          </span>
        )}
      </span>
      <button type="button" class="link" onClick={download} disabled={progress !== null} data-test="file-download">
        {t("file.download")}
      </button>
    </div>
  );
}

/** An image message: its thumbnail, sized from the image's own size, opening the full image. */
export function ImageThumb({ client, message, file, onOpen }: { client: ChorusClient; message: Message; file: FileContent; onOpen: () => void }) {
  const t = useT();
  const { url, error } = useBlobUrl(client, message, true);
  // The box has its final size before the thumbnail arrives, so the list does not jump.
  const box = fitWithin(file.width, file.height, THUMB_PX);
  if (error) {
    return (
      <>
        <span class="error" data-test="image-error">
          {t("file.image.failed", { message: error })}
        </span>
        <FileCard client={client} message={message} file={file} />
      </>
    );
  }
  return (
    <button
      type="button"
      class="image-thumb"
      style={{ width: `${box.width}px`, height: `${box.height}px` }}
      onClick={onOpen}
      aria-label={t("file.image.open", { name: file.name })}
      title={file.name}
      data-test="image-thumb"
      data-loaded={url ? "true" : "false"}
    >
      {url ? <img src={url} alt={file.name} width={box.width} height={box.height} /> : <span class="quiet">{t("file.image.loading")}</span>}
    </button>
  );
}

/** The full image over the page, with a Download button; Escape or a click outside closes it. */
export function ImageViewer({ client, message, file, onClose }: { client: ChorusClient; message: Message; file: FileContent; onClose: () => void }) {
  const t = useT();
  const { url, blob, error, progress } = useBlobUrl(client, message, false);
  const close = useRef<HTMLButtonElement>(null);
  useEffect(() => close.current?.focus(), []);
  return (
    <div class="overlay" onClick={onClose} onKeyDown={(e) => e.key === "Escape" && onClose()}>
      <div
        class="viewer"
        role="dialog"
        aria-modal="true"
        aria-label={file.name}
        onClick={(e) => e.stopPropagation()}
        data-test="image-viewer"
      >
        <div class="viewer-top">
          <bdi class="file-name">{file.name}</bdi>
          <span class="quiet">
            {" "}
            {file.width}×{file.height} · {humanSize(file.size)}
          </span>
          <span class="spacer" />
          <button type="button" class="link" onClick={() => blob && saveBlob(blob, file.name)} disabled={!blob} data-test="image-download">
            {t("file.download")}
          </button>
          <button type="button" class="link" ref={close} onClick={onClose} aria-label={t("file.image.close")} data-test="image-close">
            ✕
          </button>
        </div>
        {error ? (
          <p class="error" role="alert" data-test="image-error">
            {t("file.image.failed", { message: error })}
          </p>
        ) : url ? (
          <img src={url} alt={file.name} data-test="image-full" />
        ) : (
          <p class="quiet">
            <progress max={100} value={progress} /> {t("file.image.loading")}
          </p>
        )}
      </div>
    </div>
  );
}

/** An upload pending in the chat: its progress and a Cancel button, or why it failed. */
export function UploadItem({ upload, error, onDismiss }: { upload: PendingUpload; error?: string; onDismiss: () => void }) {
  const t = useT();
  const done = percent(upload.sent, upload.size);
  return (
    <li class="msg mine pending" data-test="upload">
      <div class="bubble">
        <div class="file-card">
          <span class="file-icon" aria-hidden="true">
            📎
          </span>
          <span class="file-info">
            <bdi class="file-name">{upload.name}</bdi>
            <span class="quiet">{humanSize(upload.size)}</span>
            {!error && (
              <progress max={upload.size || 1} value={upload.sent} aria-label={t("file.uploading", { percent: done })} data-test="upload-progress" />
            )}
          </span>
        </div>
      </div>
      <div class="meta">
        {error ? (
          <>
            <span class="error" role="alert" data-test="upload-error">
              {t("chat.failed", { message: error })}
            </span>
            <button type="button" class="link" onClick={onDismiss} data-test="upload-dismiss">
              {t("file.dismiss")}
            </button>
          </>
        ) : upload.sending ? (
          t("chat.sending")
        ) : (
          <>
            {t("file.uploading", { percent: done })}
            <button type="button" class="link" onClick={() => upload.controller.abort()} data-test="upload-cancel">
              {t("file.cancel")}
            </button>
          </>
        )}
      </div>
    </li>
  );
}

/** Where to forward a message: the conversations of the list, one click each. */
export function ForwardDialog({ client, onPick, onClose }: { client: ChorusClient; onPick: (conversation: string) => void; onClose: () => void }) {
  const t = useT();
  // As the conversation list shows them: a 1:1 one exists once it has a message.
  const targets = client.conversationList().filter((c) => c.maxSeq > 0 || c.id.startsWith("g:"));
  const first = useRef<HTMLButtonElement>(null);
  useEffect(() => first.current?.focus(), []);
  return (
    <div class="overlay" onClick={onClose} onKeyDown={(e) => e.key === "Escape" && onClose()}>
      <div
        class="dialog"
        role="dialog"
        aria-modal="true"
        aria-label={t("forward.title")}
        onClick={(e) => e.stopPropagation()}
        data-test="forward-dialog"
      >
        <h3>{t("forward.title")}</h3>
        {targets.length === 0 && <p class="quiet">{t("forward.empty")}</p>}
        <ul class="forward-targets">
          {targets.map((c, i) => (
            <li key={c.id}>
              <button
                type="button"
                class="conv"
                ref={i === 0 ? first : undefined}
                onClick={() => onPick(c.id)}
                data-test={`forward-target-${c.id}`}
                data-conversation={c.id}
              >
                <span class="title">{c.title || c.id}</span>
              </button>
            </li>
          ))}
        </ul>
        <button type="button" class="link" onClick={onClose} data-test="forward-cancel">
          {t("forward.cancel")}
        </button>
      </div>
    </div>
  );
}
