// Small pieces the console's tabs share.

import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";

/** A Delete button that asks again before it calls `onDelete`. */
export function ConfirmDelete({ name, onDelete, test }: { name: string; onDelete: () => void; test: string }) {
  const t = useT();
  const [confirming, setConfirming] = useState(false);
  useEffect(() => setConfirming(false), [name]);
  if (!confirming) {
    return (
      <button type="button" class="danger" onClick={() => setConfirming(true)} data-test={test}>
        {t("admin.delete")}
      </button>
    );
  }
  return (
    <>
      <span>{t("admin.delete.confirm", { name })}</span>
      <button type="button" class="danger" onClick={onDelete} data-test={`${test}-yes`}>
        {t("admin.yes")}
      </button>
      <button type="button" class="link" onClick={() => setConfirming(false)}>
        {t("admin.cancel")}
      </button>
    </>
  );
}

/** What a failed call says, and a success note, for a tab's status line. */
export function Said({ said }: { said: { ok: boolean; text: string } | null }) {
  if (!said) return null;
  return (
    <p role={said.ok ? "status" : "alert"} class={said.ok ? "ok" : "error"} data-test="admin-said">
      {said.text}
    </p>
  );
}
