//! Metrics owned by the cluster plane.

/// Frames waiting in a peer link's queue, by peer address.
pub const LINK_QUEUE_DEPTH: &str = "chorus_peer_link_queue_depth";
/// Peer connections dialled (first connect and every reconnect), by peer address.
pub const LINK_CONNECTS: &str = "chorus_peer_link_connects_total";
/// Bytes written to peer links, by peer address.
pub const LINK_BYTES_OUT: &str = "chorus_peer_link_sent_bytes_total";
/// Bytes read from peer links, by peer address.
pub const LINK_BYTES_IN: &str = "chorus_peer_link_received_bytes_total";
/// Round trip of a peer request, by kind, seconds.
pub const LINK_RPC_SECONDS: &str = "chorus_peer_rpc_seconds";
/// Raft groups this node leads, by kind (meta, partition).
pub const RAFT_LEADERS: &str = "chorus_raft_groups_led";
/// Partition replica changes made by the placement controller.
pub const PLACEMENT_CHANGES: &str = "chorus_placement_changes_total";

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_gauge!(
        LINK_QUEUE_DEPTH,
        "Frames waiting in a peer link's queue, by peer address"
    );
    metrics::describe_counter!(LINK_CONNECTS, "Peer connections dialled, by peer address");
    metrics::describe_counter!(
        LINK_BYTES_OUT,
        metrics::Unit::Bytes,
        "Bytes written to peer links"
    );
    metrics::describe_counter!(
        LINK_BYTES_IN,
        metrics::Unit::Bytes,
        "Bytes read from peer links"
    );
    metrics::describe_histogram!(
        LINK_RPC_SECONDS,
        metrics::Unit::Seconds,
        "Round trip of a peer request, by kind"
    );
    metrics::describe_gauge!(RAFT_LEADERS, "Raft groups this node leads, by kind");
    metrics::describe_counter!(
        PLACEMENT_CHANGES,
        "Partition replica changes made by the placement controller"
    );
}
