import { type ChorusClient, type Notice, type NoticeStats } from "@chorus/client";
import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";

interface Props {
  client: ChorusClient;
}

/**
 * The notices (通知公告, docs/protocol.md §5.28): those addressed to the
 * user, newest first; opening one reads it, and it may ask to be
 * acknowledged or voted on. The Sent switch shows the user's own, with
 * their read statistics.
 */
export function NoticeList({ client }: Props) {
  const t = useT();
  const [sent, setSent] = useState(false);
  const [notices, setNotices] = useState<Notice[] | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [choices, setChoices] = useState<number[]>([]);
  const [stats, setStats] = useState<NoticeStats | null>(null);
  const [error, setError] = useState("");

  const load = () => client.notices(sent).then(setNotices, (err: Error) => setError(err.message));
  useEffect(() => {
    setNotices(null);
    void load();
    return client.on("notice", () => void load());
  }, [client, sent]);

  const show = (n: Notice) => {
    setOpen(n.noticeId);
    setChoices([]);
    setStats(null);
    setError("");
    if (sent) {
      client.noticeStats(n.noticeId).then(setStats, (err: Error) => setError(err.message));
    } else if (!n.readAtMs) {
      client.readNotice(n.noticeId).then(() => load(), (err: Error) => setError(err.message));
    }
  };

  const ack = (n: Notice) =>
    client.readNotice(n.noticeId, true).then(() => load(), (err: Error) => setError(err.message));

  const vote = (n: Notice) =>
    client.voteNotice(n.noticeId, choices).then(() => load(), (err: Error) => setError(err.message));

  const choose = (n: Notice, i: number) => {
    if (n.vote?.multiple) setChoices((c) => (c.includes(i) ? c.filter((x) => x !== i) : [...c, i]));
    else setChoices([i]);
  };

  return (
    <div class="lists notices" data-test="notices">
      <label class="quiet">
        <input type="checkbox" checked={sent} onChange={() => setSent(!sent)} data-test="notices-sent" /> {t("notices.sent")}
      </label>
      {error && (
        <p class="error" role="alert" data-test="notice-error">
          {error}
        </p>
      )}
      {!notices && <p class="quiet">{t("lists.loading")}</p>}
      {notices?.length === 0 && <p class="quiet">{t("notices.empty")}</p>}
      <ul>
        {notices?.map((n) => (
          <li key={n.noticeId} data-test="notice" data-notice={n.noticeId}>
            <button class="conv" onClick={() => show(n)} data-test="notice-open">
              <span class="title">
                {!sent && !n.readAtMs && <span class="badge">{t("notices.new")}</span>} <bdi>{n.title}</bdi>
              </span>
            </button>
            {open === n.noticeId && (
              <div class="notice-body">
                <p dir="auto" data-test="notice-text">
                  {n.body}
                </p>
                {n.mustAck && !sent && (
                  <p>
                    {n.ackedAtMs ? (
                      <span class="quiet" data-test="notice-acked">
                        {t("notices.acked")}
                      </span>
                    ) : (
                      <button onClick={() => ack(n)} data-test="notice-ack">
                        {t("notices.ack")}
                      </button>
                    )}
                  </p>
                )}
                {n.vote && (
                  <ul class="vote" data-test="notice-vote">
                    {n.vote.options.map((option, i) => (
                      <li key={i}>
                        <label>
                          <input
                            type={n.vote?.multiple ? "checkbox" : "radio"}
                            name={`vote-${n.noticeId}`}
                            disabled={sent || n.myChoices.length > 0}
                            checked={n.myChoices.includes(i) || choices.includes(i)}
                            onChange={() => choose(n, i)}
                            data-test="notice-option"
                          />{" "}
                          <bdi>{option}</bdi>{" "}
                          <span class="quiet" data-test="notice-total">
                            {n.totals[i] ?? 0}
                          </span>
                        </label>
                      </li>
                    ))}
                    {!sent && n.myChoices.length === 0 && (
                      <li>
                        <button onClick={() => vote(n)} disabled={choices.length === 0} data-test="notice-vote-go">
                          {t("notices.vote")}
                        </button>
                      </li>
                    )}
                  </ul>
                )}
                {sent && stats && (
                  <p class="quiet" data-test="notice-stats">
                    {t("notices.stats", {
                      read: String(stats.readCount),
                      count: String(stats.recipientCount),
                      unread: String(stats.unread.length),
                    })}
                  </p>
                )}
              </div>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}
