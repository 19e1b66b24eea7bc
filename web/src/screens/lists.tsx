import { type ChorusClient, type Favourites, type RecentContact, directConversation, preview } from "@chorus/client";
import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";

interface Props {
  client: ChorusClient;
  /** Which list: the recent contacts or the favourites. */
  kind: "recent" | "favourites";
  onOpen: (conversation: string) => void;
}

/** The personal lists (docs/protocol.md §5.26), read from the server each time they are shown or change. */
export function PersonalLists({ client, kind, onOpen }: Props) {
  const t = useT();
  const [recent, setRecent] = useState<RecentContact[] | null>(null);
  const [favourites, setFavourites] = useState<Favourites | null>(null);
  const [error, setError] = useState("");
  const me = client.session?.userId ?? "0";

  useEffect(() => {
    const load = () => {
      setError("");
      const done = (err: Error) => setError(err.message);
      if (kind === "recent") client.recentContacts().then(setRecent, done);
      else client.favourites().then(setFavourites, done);
    };
    load();
    return client.on("favourite", load);
  }, [client, kind]);

  const openWith = (userId: string, account: string) => {
    const conversation = directConversation(me, userId);
    client.openDirect(conversation, account);
    onOpen(conversation);
  };

  if (error) {
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  }
  if (kind === "recent") {
    if (!recent) return <p class="quiet">{t("lists.loading")}</p>;
    if (recent.length === 0) return <p class="quiet">{t("lists.recent.empty")}</p>;
    return (
      <ul class="lists" data-test="recent">
        {recent.map((c) => (
          <li key={c.userId}>
            <button class="conv" onClick={() => openWith(c.userId, c.account)} data-test="recent-contact">
              <span class="title">{c.displayName || c.account}</span>
              <span class="last">{c.account}</span>
            </button>
          </li>
        ))}
      </ul>
    );
  }
  if (!favourites) return <p class="quiet">{t("lists.loading")}</p>;
  return (
    <div class="lists" data-test="favourites">
      <h3>{t("lists.contacts")}</h3>
      {favourites.contacts.length === 0 && <p class="quiet">{t("lists.contacts.empty")}</p>}
      <ul>
        {favourites.contacts.map((c) => (
          <li key={c.userId}>
            <button class="conv" onClick={() => openWith(c.userId, c.account)} data-test="favourite-contact-item">
              <span class="title">{c.displayName || c.account}</span>
              <span class="last">{c.account}</span>
            </button>
          </li>
        ))}
      </ul>
      <h3>{t("lists.messages", { count: String(favourites.messageCount) })}</h3>
      {favourites.messages.length === 0 && <p class="quiet">{t("lists.messages.empty")}</p>}
      <ul>
        {favourites.messages.map((f) => (
          <li key={`${f.conversation}/${f.seq}`}>
            <div class="conv kept-message" data-test="favourite-message">
              <button class="link" onClick={() => onOpen(f.conversation)}>
                <bdi class="text">{f.message ? preview(f.message.content) : t("lists.unreadable")}</bdi>
              </button>
              <button
                class="link"
                onClick={() => void client.setFavourite({ message: { conversation: f.conversation, seq: f.seq } }, false).catch(() => {})}
                data-test="unkeep"
              >
                {t("lists.remove")}
              </button>
            </div>
          </li>
        ))}
      </ul>
    </div>
  );
}
