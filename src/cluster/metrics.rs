//! Metrics owned by the cluster plane.

/// Frames waiting in a peer link's queue, by peer address.
pub const LINK_QUEUE_DEPTH: &str = "chorus_peer_link_queue_depth";
/// Peer connections dialled (first connect and every reconnect), by peer address.
pub const LINK_CONNECTS: &str = "chorus_peer_link_connects_total";
/// Bytes written to peer links, by peer address.
pub const LINK_BYTES_OUT: &str = "chorus_peer_link_sent_bytes_total";
/// Bytes read from peer links, by peer address.
pub const LINK_BYTES_IN: &str = "chorus_peer_link_received_bytes_total";
/// Peer connections dropped before or instead of a request, by reason
/// (handshake: no valid certificate; deadline: no handshake in time;
/// frame: a frame over the size limit or malformed framing; busy: too
/// many handshakes in progress).
pub const LINK_REFUSED: &str = "chorus_peer_link_refused_total";
/// One-way peer requests (deliveries, pushes, revocations) dropped unsent,
/// by reason (queue_full: the link's queue was full; unreachable: the peer
/// could not be dialled; link_closed: the link broke as it was queued).
pub const ENVELOPES_DROPPED: &str = "chorus_peer_envelopes_dropped_total";
/// Round trip of a peer request, by kind, seconds.
pub const LINK_RPC_SECONDS: &str = "chorus_peer_rpc_seconds";
/// Partition replica changes made by the placement controller.
pub const PLACEMENT_CHANGES: &str = "chorus_placement_changes_total";

/// Ready nodes in this node's membership view.
pub const GOSSIP_LIVE_NODES: &str = "chorus_gossip_live_nodes";
/// Nodes the gossip failure detector holds dead (not yet forgotten).
pub const GOSSIP_DEAD_NODES: &str = "chorus_gossip_dead_nodes";
/// Membership views published (each re-places soft actors).
pub const GOSSIP_VIEW_CHANGES: &str = "chorus_gossip_view_changes_total";
/// Routed user envelopes this node did not own, by outcome (forwarded, redirected).
pub const ROUTING_MISSES: &str = "chorus_routing_misses_total";

/// Registers help texts for the gossip and routing metrics.
pub fn describe_membership() {
    metrics::describe_gauge!(GOSSIP_LIVE_NODES, "Ready nodes in this node's view");
    metrics::describe_gauge!(GOSSIP_DEAD_NODES, "Nodes gossip holds dead");
    metrics::describe_counter!(GOSSIP_VIEW_CHANGES, "Membership views published");
    metrics::describe_counter!(
        ROUTING_MISSES,
        "Routed user envelopes this node did not own, by outcome"
    );
    metrics::gauge!(GOSSIP_LIVE_NODES).set(0.0);
    metrics::gauge!(GOSSIP_DEAD_NODES).set(0.0);
    metrics::counter!(GOSSIP_VIEW_CHANGES).increment(0);
    metrics::counter!(ROUTING_MISSES, "outcome" => "forwarded").increment(0);
    metrics::counter!(ROUTING_MISSES, "outcome" => "redirected").increment(0);
}

/// Registers help texts for the metrics above.
pub fn describe() {
    metrics::describe_gauge!(
        LINK_QUEUE_DEPTH,
        "Frames waiting in a peer link's queue, by peer address"
    );
    metrics::describe_counter!(LINK_CONNECTS, "Peer connections dialled, by peer address");
    metrics::describe_counter!(
        LINK_REFUSED,
        "Peer connections dropped before a request, by reason"
    );
    for reason in ["handshake", "deadline", "frame", "busy"] {
        metrics::counter!(LINK_REFUSED, "reason" => reason).increment(0);
    }
    metrics::describe_counter!(
        ENVELOPES_DROPPED,
        "One-way peer requests dropped unsent, by reason"
    );
    for reason in ["queue_full", "unreachable", "link_closed"] {
        metrics::counter!(ENVELOPES_DROPPED, "reason" => reason).increment(0);
    }
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
    metrics::describe_counter!(
        PLACEMENT_CHANGES,
        "Partition replica changes made by the placement controller"
    );
}
