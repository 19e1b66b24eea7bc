//! Metrics of the message path.

/// Time from a session's request to the conversation's answer, by outcome
/// (`answered`, `gave_up`).
pub const CALL_SECONDS: &str = "chorus_conversation_call_seconds";
/// Requests that a node not leading the partition sent on to its leader.
pub const REDIRECTS: &str = "chorus_conversation_redirects_total";
/// Commands a partition's proposer refused, by reason.
pub const PROPOSALS_REFUSED: &str = "chorus_proposals_refused_total";
/// Commands per Raft entry of a partition.
pub const BATCH_COMMANDS: &str = "chorus_proposal_batch_commands";

/// Leadership hand-offs tried by this node, by outcome (`moved`, `kept`).
pub const LEADER_HAND_OFFS: &str = "chorus_leader_hand_offs_total";

/// Actors that failed and were dropped for a rebuild, by kind.
pub const ACTOR_RESTARTS: &str = "chorus_actor_restarts_total";
/// Messages appended to a conversation log.
pub const MESSAGES_ACCEPTED: &str = "chorus_messages_accepted_total";
/// Resends answered with the original ack.
pub const MESSAGES_DEDUPLICATED: &str = "chorus_messages_deduplicated_total";
/// Messages recalled (each appends a notice).
pub const MESSAGES_RECALLED: &str = "chorus_messages_recalled_total";
/// Burn-after-reading messages burned, by `reason` (`read`, `expired`).
pub const MESSAGES_BURNED: &str = "chorus_messages_burned_total";
/// Signatures on messages that require sign-off (a repeat is not counted).
pub const MESSAGES_SIGNED: &str = "chorus_messages_signed_total";
/// Time from receiving a send to queueing its ack, seconds.
pub const SEND_ACK_SECONDS: &str = "chorus_send_ack_seconds";
/// Time from commit to queueing the last push of a message, seconds.
pub const COMMIT_PUSH_SECONDS: &str = "chorus_commit_push_seconds";

pub fn describe() {
    metrics::describe_counter!(
        ACTOR_RESTARTS,
        "Actors that failed and were dropped for a rebuild, by kind"
    );
    metrics::describe_counter!(MESSAGES_ACCEPTED, "Messages appended to a conversation log");
    metrics::describe_counter!(
        MESSAGES_DEDUPLICATED,
        "Resends answered with the original ack"
    );
    metrics::describe_counter!(
        MESSAGES_RECALLED,
        "Messages recalled (each appends a notice)"
    );
    metrics::describe_counter!(
        MESSAGES_BURNED,
        "Burn-after-reading messages burned, by reason"
    );
    metrics::describe_counter!(
        MESSAGES_SIGNED,
        "Signatures on messages that require sign-off"
    );
    metrics::describe_histogram!(
        SEND_ACK_SECONDS,
        metrics::Unit::Seconds,
        "Time from receiving a send to queueing its ack"
    );
    metrics::describe_histogram!(
        COMMIT_PUSH_SECONDS,
        metrics::Unit::Seconds,
        "Time from commit to queueing the last push of a message"
    );
    metrics::describe_counter!(
        LEADER_HAND_OFFS,
        "Partition leadership hand-offs to the preferred voter, by outcome"
    );
    metrics::describe_histogram!(
        CALL_SECONDS,
        metrics::Unit::Seconds,
        "Time from a session's conversation request to its answer, by outcome"
    );
    metrics::describe_counter!(
        REDIRECTS,
        "Conversation requests redirected to the partition leader another node named"
    );
    metrics::describe_counter!(
        PROPOSALS_REFUSED,
        "Commands a partition's proposer refused, by reason"
    );
    metrics::describe_histogram!(
        BATCH_COMMANDS,
        "Commands per Raft entry proposed by a partition's proposer"
    );
}
