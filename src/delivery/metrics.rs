//! Metrics of the delivery plane: user homes, sessions and their outboxes.

/// Live actors on this node, by kind (user, conversation, session).
pub const LIVE_ACTORS: &str = "chorus_actors_live";
/// Frames pushed to sessions (messages, read syncs, receipts).
pub const PUSHES_DELIVERED: &str = "chorus_pushes_delivered_total";
/// Watch and unwatch operations sent to user homes by WatchPresence
/// requests: only what a request changes, so a steady rate of re-sent
/// watch lists does not raise it.
pub const PRESENCE_WATCH_OPS: &str = "chorus_presence_watch_ops_total";

/// Bytes of frames queued for client connections and not yet written, over
/// all connections.
pub const OUTBOUND_QUEUED_BYTES: &str = "chorus_outbound_queued_bytes";
/// Connections ended by a limit or timeout after they started, by reason.
pub const CONNECTIONS_CUT: &str = "chorus_connections_cut_total";

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_gauge!(LIVE_ACTORS, "Live actors on this node, by kind");
    metrics::describe_gauge!(
        OUTBOUND_QUEUED_BYTES,
        metrics::Unit::Bytes,
        "Bytes of frames queued for client connections and not yet written"
    );
    metrics::describe_counter!(PUSHES_DELIVERED, "Frames pushed to sessions, by kind");
    metrics::describe_counter!(
        PRESENCE_WATCH_OPS,
        "Watch and unwatch operations sent to user homes by WatchPresence requests"
    );
    metrics::describe_counter!(
        CONNECTIONS_CUT,
        "Connections ended by a limit or timeout after they started, by reason"
    );
}
