import { type ChorusClient, type Group, type GroupChange } from "@chorus/client";
import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";
import { FileSpace } from "./space.js";

interface Props {
  client: ChorusClient;
  conversation: string;
}

/**
 * The management of a conversation above the chat: its do-not-disturb
 * switch, and for a group its pinned announcement (with its read count), its
 * name, its mutes and its admins (docs/decisions/0016), and its file space
 * (群文件, FileSpace). The server decides
 * who may change what; a refusal is shown here.
 */
export function GroupPanel({ client, conversation }: Props) {
  const t = useT();
  const groupId = conversation.startsWith("g:") ? conversation.slice(2) : null;
  const [group, setGroup] = useState<Group | null>(null);
  const [error, setError] = useState("");
  const [name, setName] = useState("");
  const [announcement, setAnnouncement] = useState("");
  const [permanentName, setPermanentName] = useState("");
  const me = client.session?.userId ?? "";
  const dnd = client.conversation(conversation)?.dnd ?? false;

  const [opened, setOpened] = useState(0);
  // The conversation whose file space (群文件) is shown: another one opened closes it.
  const [spaceOf, setSpaceOf] = useState<string | null>(null);
  const space = groupId !== null && spaceOf === conversation;

  useEffect(() => {
    setGroup(null);
    setError("");
  }, [conversation]);

  // Reloads keep the group shown until the new one comes.
  useEffect(() => {
    if (!groupId) return;
    let live = true;
    const load = () =>
      client.getGroup(groupId).then(
        (g) => live && setGroup(g),
        () => {},
      );
    void load();
    const off = client.on("group", (e) => {
      if (e.group.conversation === conversation) void load();
    });
    return () => {
      live = false;
      off();
    };
  }, [conversation, client.state, opened]);

  const change = (c: GroupChange) => {
    if (!groupId) return;
    setError("");
    client.updateGroup(groupId, c).then(
      () => client.getGroup(groupId).then(setGroup),
      (err: Error) => setError(err.message),
    );
  };

  const leave = () => {
    if (!groupId) return;
    setError("");
    client.leaveGroup(groupId).then(setGroup, (err: Error) => setError(err.message));
  };

  const toggleDnd = () => {
    setError("");
    client.setDnd(conversation, !dnd).catch((err: Error) => setError(err.message));
  };

  const leads = group !== null && (group.owner === me || group.admins.includes(me));
  const owns = group !== null && group.owner === me;
  const silenced = group !== null && !leads && (group.muteAll || group.muted.includes(me));

  return (
    <div class="group-panel" data-test="group-panel">
      {group?.announcement && (
        <p class="announcement" data-test="announcement">
          <strong>{t("group.announcement")}</strong> <bdi>{group.announcement.text}</bdi>{" "}
          <span class="quiet" data-test="announcement-reads">
            {t("group.announcement.reads", { count: group.announcement.readCount })}
          </span>
        </p>
      )}
      {group?.dissolvedAtMs ? (
        <p class="quiet" data-test="dissolved">
          {t("group.dissolved")}
        </p>
      ) : null}
      {silenced && (
        <p class="quiet" data-test="muted-notice">
          {group?.muteAll ? t("group.muted.all") : t("group.muted.me")}
        </p>
      )}
      {groupId && (
        <button
          type="button"
          class="link space-open"
          onClick={() => setSpaceOf(space ? null : conversation)}
          aria-expanded={space ? "true" : "false"}
          data-test="space-open"
        >
          📁 {t("space.open")}
        </button>
      )}
      {groupId && space && <FileSpace key={groupId} client={client} groupId={groupId} onClose={() => setSpaceOf(null)} />}
      {/* Opening the settings reads the group again: the read count moves without a push. */}
      <details class="group-settings" data-test="group-settings" onToggle={() => setOpened((n) => n + 1)}>
        <summary>
          {groupId ? t(group?.temporary ? "discussion.settings" : "group.settings") : t("group.conversation.settings")}
        </summary>
        <label>
          <input type="checkbox" checked={dnd} onChange={toggleDnd} data-test="dnd" /> {t("group.dnd")}
        </label>
        {group && (
          <>
            <form
              onSubmit={(e) => {
                e.preventDefault();
                if (name.trim()) change({ rename: name.trim() });
              }}
            >
              <input
                aria-label={t("group.rename")}
                placeholder={group.name}
                value={name}
                onInput={(e) => setName(e.currentTarget.value)}
                data-test="group-name"
              />
              <button type="submit" data-test="group-rename">
                {t("group.rename")}
              </button>
            </form>
            <form
              onSubmit={(e) => {
                e.preventDefault();
                change({ announcement: announcement.trim() });
                setAnnouncement("");
              }}
            >
              <textarea
                aria-label={t("group.announcement")}
                placeholder={t("group.announcement")}
                value={announcement}
                onInput={(e) => setAnnouncement(e.currentTarget.value)}
                rows={2}
                data-test="group-announcement"
              />
              <button type="submit" data-test="group-announce">
                {t("group.announce")}
              </button>
            </form>
            <label>
              <input
                type="checkbox"
                checked={group.muteAll}
                disabled={!leads}
                onChange={() => change({ muteAll: !group.muteAll })}
                data-test="mute-all"
              />{" "}
              {t("group.mute.all")}
            </label>
            {group.temporary && leads && (
              <form
                onSubmit={(e) => {
                  e.preventDefault();
                  if (permanentName.trim()) change({ makePermanent: permanentName.trim() });
                }}
              >
                <input
                  aria-label={t("discussion.permanent")}
                  placeholder={t("discussion.permanent.name")}
                  value={permanentName}
                  onInput={(e) => setPermanentName(e.currentTarget.value)}
                  data-test="make-permanent-name"
                />
                <button type="submit" data-test="make-permanent">
                  {t("discussion.permanent")}
                </button>
              </form>
            )}
            {!group.dissolvedAtMs && (
              <button class="link" onClick={leave} data-test="group-leave">
                {t("group.leave")}
              </button>
            )}
            <ul class="members" data-test="group-members">
              {group.members.map((m) => {
                const role = m === group.owner ? t("group.owner") : group.admins.includes(m) ? t("group.admin") : "";
                const muted = group.muted.includes(m);
                return (
                  <li key={m} data-test="group-member" data-user={m}>
                    {m === me ? t("chat.me") : `#${m}`} {role && <em>{role}</em>} {muted && <em>{t("group.muted")}</em>}
                    {owns && m !== group.owner && (
                      <button
                        class="link"
                        onClick={() => change({ setAdmin: { userId: m, on: !group.admins.includes(m) } })}
                        data-test="toggle-admin"
                      >
                        {group.admins.includes(m) ? t("group.admin.remove") : t("group.admin.add")}
                      </button>
                    )}
                    {leads && m !== group.owner && !group.admins.includes(m) && (
                      <button class="link" onClick={() => change({ muteMember: { userId: m, on: !muted } })} data-test="toggle-mute">
                        {muted ? t("group.unmute") : t("group.mute")}
                      </button>
                    )}
                  </li>
                );
              })}
            </ul>
          </>
        )}
      </details>
      {error && (
        <p class="error" role="alert" data-test="group-error">
          {error}
        </p>
      )}
    </div>
  );
}
