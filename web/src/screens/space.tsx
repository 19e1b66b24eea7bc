import { type ChorusClient, peerOf } from "@chorus/client";
import { useEffect, useRef, useState } from "preact/hooks";

import { type T, useT } from "../context.js";
import {
  type SpaceEntry,
  changeSpaceEntry,
  deleteSpaceEntry,
  fetchSpaceFile,
  listSpace,
  makeSpaceFolder,
  saveBlob,
  uploadToSpace,
} from "../rest.js";
import { humanSize, percent } from "../sizes.js";
import { uploadFailure } from "./attachments.js";
import { when } from "./search.js";

interface Props {
  client: ChorusClient;
  /** The group's id (its conversation is `g:{groupId}`). */
  groupId: string;
  onClose: () => void;
}

/** A folder on the way from the top to the one shown. */
interface Crumb {
  id: number;
  name: string;
}

/** An upload into the space, until its entry is added. */
interface SpaceUpload {
  key: string;
  name: string;
  size: number;
  sent: number;
  controller: AbortController;
}

/**
 * A user's name as the page knows it: "Me", the title of the 1:1
 * conversation with them, or else their id.
 */
export function userName(client: ChorusClient, t: T, userId: string): string {
  const me = client.session?.userId ?? "";
  if (userId === me) return t("chat.me");
  const direct = client.conversationList().find((c) => peerOf(c.id, me) === userId);
  return direct?.title || `#${userId}`;
}

/**
 * A group's file space (群文件共享): one folder at a time, with the way
 * from the top as a breadcrumb; its files downloaded and uploaded through
 * the REST API with the session's token. The server decides who may
 * rename, move and delete what; a refusal is shown here.
 */
export function FileSpace({ client, groupId, onClose }: Props) {
  const t = useT();
  const [path, setPath] = useState<Crumb[]>([{ id: 0, name: "" }]);
  const [entries, setEntries] = useState<SpaceEntry[] | null>(null);
  const [error, setError] = useState("");
  const [reloads, setReloads] = useState(0);
  const [newFolder, setNewFolder] = useState<string | null>(null);
  const [uploads, setUploads] = useState<SpaceUpload[]>([]);
  const [downloads, setDownloads] = useState<Record<number, number>>({});
  const [busy, setBusy] = useState(false);
  const uploadInput = useRef<HTMLInputElement>(null);
  const latest = useRef(0);
  // Downloads and uploads still running when the view closes stop.
  const running = useRef(new Set<AbortController>());
  useEffect(() => () => running.current.forEach((c) => c.abort()), []);

  const here = path[path.length - 1].id;
  const parent = path.length > 1 ? path[path.length - 2] : null;
  const token = client.session?.token ?? "";
  const refresh = () => setReloads((n) => n + 1);

  useEffect(() => {
    if (!token) return;
    const id = ++latest.current;
    listSpace(token, groupId, here).then(
      (listing) => {
        if (id === latest.current) setEntries(listing.entries);
      },
      (err: Error) => {
        if (id === latest.current) setError(err.message);
      },
    );
  }, [groupId, here, reloads, token]);

  const go = (to: Crumb[]) => {
    setError("");
    setEntries(null);
    setPath(to);
  };

  /** Runs a change, shows its refusal, and lists the folder again either way. */
  const act = (change: Promise<unknown>) => {
    setError("");
    setBusy(true);
    change
      .then(
        () => {},
        (err: Error) => setError(err.message),
      )
      .finally(() => {
        setBusy(false);
        refresh();
      });
  };

  const createFolder = (ev: Event) => {
    ev.preventDefault();
    const name = newFolder?.trim() ?? "";
    if (!name || !token) return;
    setError("");
    setBusy(true);
    makeSpaceFolder(token, groupId, here, name)
      .then(
        () => setNewFolder(null),
        (err: Error) => setError(err.message),
      )
      .finally(() => {
        setBusy(false);
        refresh();
      });
  };

  const rename = (e: SpaceEntry) => {
    const name = window.prompt(t("space.rename.prompt", { name: e.name }), e.name)?.trim();
    if (!name || name === e.name || !token) return;
    act(changeSpaceEntry(token, groupId, e.entry_id, { name }));
  };

  const move = (e: SpaceEntry, to: string) => {
    if (to === "" || !token) return;
    act(changeSpaceEntry(token, groupId, e.entry_id, { parent_id: Number(to) }));
  };

  const remove = (e: SpaceEntry) => {
    if (!token || !window.confirm(t(e.folder ? "space.delete.folder.confirm" : "space.delete.confirm", { name: e.name }))) return;
    act(deleteSpaceEntry(token, groupId, e.entry_id));
  };

  const download = (e: SpaceEntry) => {
    if (!token || downloads[e.entry_id] !== undefined) return;
    const controller = new AbortController();
    running.current.add(controller);
    const progress = (value: number | undefined) =>
      setDownloads((d) => {
        const next = { ...d };
        if (value === undefined) delete next[e.entry_id];
        else next[e.entry_id] = value;
        return next;
      });
    setError("");
    progress(0);
    fetchSpaceFile(token, groupId, e.entry_id, (received, total) => progress(percent(received, total)), controller.signal)
      .then(
        (blob) => {
          saveBlob(blob, e.name);
          // The server counted it.
          refresh();
        },
        (err: Error) => {
          if (!controller.signal.aborted) setError(t("file.download.failed", { message: err.message }));
        },
      )
      .finally(() => {
        running.current.delete(controller);
        if (!controller.signal.aborted) progress(undefined);
      });
  };

  // Each file uploads on its own into the folder shown when it was picked.
  const upload = (files: File[]) => {
    if (!token) return;
    setError("");
    for (const file of files) {
      const key = `${Date.now()}-${Math.random()}`;
      const controller = new AbortController();
      running.current.add(controller);
      setUploads((u) => [...u, { key, name: file.name, size: file.size, sent: 0, controller }]);
      const progress = (sent: number) => setUploads((u) => u.map((x) => (x.key === key ? { ...x, sent } : x)));
      uploadToSpace(token, groupId, here, file, progress, controller.signal)
        .then(
          () => refresh(),
          (err: unknown) => {
            if (!controller.signal.aborted) setError(uploadFailure(t, err));
          },
        )
        .finally(() => {
          running.current.delete(controller);
          setUploads((u) => u.filter((x) => x.key !== key));
        });
    }
  };

  const folders = (entries ?? []).filter((e) => e.folder);

  const moveTargets = (e: SpaceEntry) => {
    const targets: { value: string; label: string }[] = [];
    if (here !== 0) targets.push({ value: "0", label: t("space.move.top") });
    if (parent && parent.id !== 0) targets.push({ value: String(parent.id), label: t("space.move.up", { name: parent.name }) });
    for (const f of folders) if (f.entry_id !== e.entry_id) targets.push({ value: String(f.entry_id), label: f.name });
    return targets;
  };

  const row = (e: SpaceEntry) => {
    const uploader = String(e.uploader);
    const downloading = downloads[e.entry_id];
    const targets = moveTargets(e);
    return (
      <tr key={e.entry_id} data-test="space-entry" data-entry={String(e.entry_id)} data-name={e.name} data-folder={e.folder ? "true" : "false"}>
        <td class="space-name">
          {e.folder ? (
            <button class="link" onClick={() => go([...path, { id: e.entry_id, name: e.name }])} data-test="space-folder-open">
              📁 <bdi>{e.name}</bdi>
            </button>
          ) : (
            <span>
              📄 <bdi>{e.name}</bdi>
            </span>
          )}
          {downloading !== undefined && (
            <span class="file-progress">
              <progress max={100} value={downloading} aria-label={t("file.downloading", { percent: downloading })} data-test="space-download-progress" />{" "}
              <span class="quiet">{t("file.downloading", { percent: downloading })}</span>
            </span>
          )}
        </td>
        <td class="quiet">{e.folder ? "" : humanSize(e.size)}</td>
        <td data-uploader={uploader}>
          <bdi>{userName(client, t, uploader)}</bdi>
        </td>
        <td class="quiet">{when(e.updated_ms || e.created_ms)}</td>
        <td class="quiet space-count" data-test="space-downloads">
          {e.folder ? "" : String(e.downloads)}
        </td>
        <td class="space-actions">
          {!e.folder && (
            <button class="link" onClick={() => download(e)} disabled={downloading !== undefined} data-test="space-download">
              {t("file.download")}
            </button>
          )}
          <button class="link" onClick={() => rename(e)} disabled={busy} data-test="space-rename">
            {t("space.rename")}
          </button>
          {targets.length > 0 && (
            <select
              aria-label={t("space.move", { name: e.name })}
              value=""
              disabled={busy}
              onChange={(ev) => {
                const to = ev.currentTarget.value;
                ev.currentTarget.value = "";
                move(e, to);
              }}
              data-test="space-move"
            >
              <option value="">{t("space.move.to")}</option>
              {targets.map((o) => (
                <option key={o.value} value={o.value}>
                  {o.label}
                </option>
              ))}
            </select>
          )}
          <button class="link" onClick={() => remove(e)} disabled={busy} data-test="space-delete">
            {t("space.delete")}
          </button>
        </td>
      </tr>
    );
  };

  return (
    <div
      class="space"
      role="region"
      aria-label={t("space.title")}
      onKeyDown={(e) => e.key === "Escape" && onClose()}
      data-test="space"
      data-folder={String(here)}
    >
      <div class="space-top">
        <nav class="space-crumbs" aria-label={t("space.path")}>
          {path.map((c, i) => (
            <span key={c.id}>
              {i > 0 && <span class="quiet"> › </span>}
              <button
                class={i === path.length - 1 ? "link current" : "link"}
                onClick={() => i < path.length - 1 && go(path.slice(0, i + 1))}
                aria-current={i === path.length - 1 ? "page" : undefined}
                data-test={`space-crumb-${c.id}`}
              >
                {c.id === 0 ? t("space.top") : <bdi>{c.name}</bdi>}
              </button>
            </span>
          ))}
        </nav>
        <span class="spacer" />
        <button class="link" onClick={() => setNewFolder(newFolder === null ? "" : null)} data-test="space-new-folder">
          {t("space.folder.new")}
        </button>
        <input
          type="file"
          multiple
          class="visually-hidden"
          ref={uploadInput}
          tabIndex={-1}
          aria-hidden="true"
          onChange={(e) => {
            const input = e.currentTarget;
            upload(Array.from(input.files ?? []));
            // The same file may be picked again.
            input.value = "";
          }}
          data-test="space-upload-input"
        />
        <button class="link" onClick={() => uploadInput.current?.click()} data-test="space-upload">
          {t("space.upload")}
        </button>
        <button class="link" onClick={onClose} aria-label={t("space.close")} data-test="space-close">
          ✕
        </button>
      </div>
      {newFolder !== null && (
        <form class="space-folder-form" onSubmit={createFolder}>
          <input
            aria-label={t("space.folder.name")}
            placeholder={t("space.folder.name")}
            value={newFolder}
            onInput={(e) => setNewFolder(e.currentTarget.value)}
            data-test="space-folder-name"
          />
          <button type="submit" disabled={busy || !newFolder.trim()} data-test="space-folder-create">
            {t("space.folder.create")}
          </button>
        </form>
      )}
      {uploads.map((u) => (
        <div key={u.key} class="file-progress space-upload" data-test="space-upload-item">
          📄 <bdi>{u.name}</bdi> <span class="quiet">{humanSize(u.size)}</span>
          <progress
            max={u.size || 1}
            value={u.sent}
            aria-label={t("file.uploading", { percent: percent(u.sent, u.size) })}
            data-test="space-upload-progress"
          />
          <span class="quiet">{t("file.uploading", { percent: percent(u.sent, u.size) })}</span>
          <button class="link" onClick={() => u.controller.abort()} data-test="space-upload-cancel">
            {t("file.cancel")}
          </button>
        </div>
      ))}
      {error && (
        <p class="error" role="alert" data-test="space-error">
          {error}
        </p>
      )}
      {entries === null && !error && <p class="quiet">{t("lists.loading")}</p>}
      {entries?.length === 0 && (
        <p class="quiet" data-test="space-empty">
          {t("space.empty")}
        </p>
      )}
      {entries !== null && entries.length > 0 && (
        <table class="space-table" data-test="space-entries">
          <thead>
            <tr>
              <th>{t("space.col.name")}</th>
              <th>{t("space.col.size")}</th>
              <th>{t("space.col.uploader")}</th>
              <th>{t("space.col.time")}</th>
              <th>{t("space.col.downloads")}</th>
              <th>
                <span class="visually-hidden">{t("space.col.actions")}</span>
              </th>
            </tr>
          </thead>
          <tbody>{entries.map(row)}</tbody>
        </table>
      )}
    </div>
  );
}
