//! Metrics owned by the actor plane.

/// Live actors on this node, by kind (user, conversation, session).
pub const LIVE_ACTORS: &str = "chorus_actors_live";
/// Actors that failed and were dropped for a rebuild, by kind.
pub const ACTOR_RESTARTS: &str = "chorus_actor_restarts_total";
/// Messages appended to a conversation log.
pub const MESSAGES_ACCEPTED: &str = "chorus_messages_accepted_total";
/// Resends answered with the original ack.
pub const MESSAGES_DEDUPLICATED: &str = "chorus_messages_deduplicated_total";
/// Frames pushed to sessions (messages, read syncs, receipts).
pub const PUSHES_DELIVERED: &str = "chorus_pushes_delivered_total";
/// Time from receiving a send to queueing its ack, seconds.
pub const SEND_ACK_SECONDS: &str = "chorus_send_ack_seconds";
/// Time from commit to queueing the last push of a message, seconds.
pub const COMMIT_PUSH_SECONDS: &str = "chorus_commit_push_seconds";
/// Watch and unwatch operations sent to user homes by WatchPresence
/// requests: only what a request changes, so a steady rate of re-sent
/// watch lists does not raise it.
pub const PRESENCE_WATCH_OPS: &str = "chorus_presence_watch_ops_total";

/// Bytes of frames queued for client connections and not yet written, over
/// all connections.
pub const OUTBOUND_QUEUED_BYTES: &str = "chorus_outbound_queued_bytes";

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_gauge!(LIVE_ACTORS, "Live actors on this node, by kind");
    metrics::describe_gauge!(
        OUTBOUND_QUEUED_BYTES,
        metrics::Unit::Bytes,
        "Bytes of frames queued for client connections and not yet written"
    );
    metrics::describe_counter!(
        ACTOR_RESTARTS,
        "Actors that failed and were dropped for a rebuild, by kind"
    );
    metrics::describe_counter!(MESSAGES_ACCEPTED, "Messages appended to a conversation log");
    metrics::describe_counter!(
        MESSAGES_DEDUPLICATED,
        "Resends answered with the original ack"
    );
    metrics::describe_counter!(PUSHES_DELIVERED, "Frames pushed to sessions, by kind");
    metrics::describe_histogram!(
        SEND_ACK_SECONDS,
        metrics::Unit::Seconds,
        "Time from receiving a send to queueing its ack"
    );
    metrics::describe_counter!(
        PRESENCE_WATCH_OPS,
        "Watch and unwatch operations sent to user homes by WatchPresence requests"
    );
    metrics::describe_histogram!(
        COMMIT_PUSH_SECONDS,
        metrics::Unit::Seconds,
        "Time from commit to queueing the last push of a message"
    );
}
