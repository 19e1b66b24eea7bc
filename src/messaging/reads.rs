//! Reads of partition data for a user: pulls, receipts, sign-off status
//! and sync. A node
//! answers from its own replica when it leads the partition; otherwise it
//! asks the partition's leader over a peer link, which answers from its
//! replica, so a client reads every write it was acked.

use std::collections::BTreeMap;

use super::{Messaging, members_for, members_of};
use crate::authz::{self, Action, Subject};
use crate::cluster::{Request, Response, response_label};
use crate::db;
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, pb};

const DEFAULT_PULL: u32 = 100;
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long a read waits for its partition to have a leader.
const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A read that a node without a replica asks a replica to do.
#[derive(Debug, Clone)]
pub enum ReadRequest {
    Pull {
        user: u64,
        pull: pb::PullRequest,
    },
    Receipts {
        user: u64,
        request: pb::ReceiptsRequest,
    },
    Sync {
        user: u64,
        partitions: Vec<u16>,
    },
    SignStatus {
        subject: Subject,
        request: pb::SignStatusRequest,
    },
}

#[derive(Debug)]
pub enum ReadResponse {
    Pull(pb::PullResult),
    Receipts(pb::ReceiptsResult),
    SignStatus(pb::SignStatus),
    Sync(Vec<pb::ConversationState>),
    Failed { code: i32, message: String },
}

impl Messaging {
    /// Confirms that this node still leads the partitions, by a round of
    /// heartbeats to a quorum (Raft's read index), and waits until its
    /// replicas applied everything committed before: a read that follows
    /// holds every write acked before it began, wherever that was acked.
    async fn confirm_leadership(&self, partitions: &[u16]) -> Result<(), ProtocolError> {
        let checks = partitions.iter().map(|p| async move {
            self.inner.partitions.rafts()[*p as usize]
                .ensure_linearizable()
                .await
                .map(|_| ())
                .map_err(|e| {
                    ProtocolError::new(
                        ErrorCode::UnavailableRetry,
                        format!(
                            "node {} cannot serve partition {p}: {e}",
                            self.inner.node_id
                        ),
                    )
                })
        });
        futures::future::try_join_all(checks).await.map(|_| ())
    }

    /// Runs a read on this node's replicas, once it confirmed it leads
    /// their partitions.
    pub async fn read_here(&self, request: ReadRequest) -> ReadResponse {
        let partitions = match &request {
            ReadRequest::Pull { pull, .. } => pull
                .conversation
                .parse()
                .map(|c| vec![self.partition_of(&c)]),
            ReadRequest::Receipts { request, .. } => request
                .conversation
                .parse()
                .map(|c| vec![self.partition_of(&c)]),
            ReadRequest::SignStatus { request, .. } => request
                .conversation
                .parse()
                .map(|c| vec![self.partition_of(&c)]),
            ReadRequest::Sync { partitions, .. } => Ok(partitions.clone()),
        };
        let confirmed = match partitions {
            Ok(partitions) => self.confirm_leadership(&partitions).await,
            Err(err) => Err(err),
        };
        if let Err(err) = confirmed {
            return ReadResponse::Failed {
                code: err.code as i32,
                message: err.message,
            };
        }
        let messaging = self.clone();
        let result = tokio::task::spawn_blocking(move || match request {
            ReadRequest::Pull { user, pull } => {
                pull_messages(&messaging, user, pull).map(ReadResponse::Pull)
            }
            ReadRequest::Receipts { user, request } => {
                receipts(&messaging, user, request).map(ReadResponse::Receipts)
            }
            ReadRequest::Sync { user, partitions } => {
                sync_partitions(&messaging, user, &partitions).map(ReadResponse::Sync)
            }
            ReadRequest::SignStatus { subject, request } => {
                sign_status(&messaging, &subject, request).map(ReadResponse::SignStatus)
            }
        })
        .await
        .unwrap_or_else(|e| Err(ProtocolError::internal(e.to_string())));
        result.unwrap_or_else(|err| ReadResponse::Failed {
            code: err.code as i32,
            message: err.message,
        })
    }

    /// Runs a read on the leader of `partition`: here, or over a peer link.
    /// While the partition has no leader that can confirm it leads (an
    /// election, a hand-off), the read waits for one, up to
    /// [`READ_PATIENCE`].
    async fn read_at(
        &self,
        partition: u16,
        request: ReadRequest,
    ) -> Result<ReadResponse, ProtocolError> {
        let deadline = std::time::Instant::now() + READ_PATIENCE;
        loop {
            let outcome = self.read_once(partition, &request).await;
            match outcome {
                Err(err)
                    if err.code == ErrorCode::UnavailableRetry
                        && std::time::Instant::now() < deadline =>
                {
                    let raft = &self.inner.partitions.rafts()[partition as usize];
                    let known = raft.metrics().borrow().current_leader;
                    let _ = raft
                        .wait(Some(std::time::Duration::from_millis(100)))
                        .metrics(|m| m.current_leader != known, "leader changed")
                        .await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn read_once(
        &self,
        partition: u16,
        request: &ReadRequest,
    ) -> Result<ReadResponse, ProtocolError> {
        let mut response = None;
        if self.leads(partition) {
            match self.read_here(request.clone()).await {
                // Deposed since: its successor answers.
                ReadResponse::Failed { code, .. } if code == ErrorCode::UnavailableRetry as i32 => {
                }
                answer => response = Some(answer),
            }
        }
        let response = match response {
            Some(response) => response,
            None => self.read_remote(partition, request).await?,
        };
        match response {
            ReadResponse::Failed { code, message } => Err(ProtocolError::new(
                ErrorCode::try_from(code).unwrap_or(ErrorCode::Internal),
                message,
            )),
            other => Ok(other),
        }
    }

    /// Asks the replicas of a partition, the known leader first, then the
    /// committed placement in order, until one confirms it leads (a
    /// follower's answer could miss acked writes, so none is taken).
    async fn read_remote(
        &self,
        partition: u16,
        request: &ReadRequest,
    ) -> Result<ReadResponse, ProtocolError> {
        let leader = self.inner.partitions.rafts()[partition as usize]
            .metrics()
            .borrow()
            .current_leader;
        let mut candidates: Vec<u64> = leader.into_iter().collect();
        candidates.extend(self.inner.meta.placement(partition)?.replicas);
        let mut last = format!("partition {partition} has no replica to read from");
        let mut tried = Vec::new();
        for node in candidates {
            if tried.contains(&node) {
                continue;
            }
            tried.push(node);
            if node == self.inner.node_id {
                continue;
            }
            let Some(addr) = self.peer_addr(partition, node) else {
                continue;
            };
            match self
                .inner
                .links
                .call(&addr, Request::Read(request.clone().into()))
                .await
            {
                Ok(Response::Read(response)) => match ReadResponse::try_from(response)? {
                    // Not the leader (any more): ask the next replica.
                    ReadResponse::Failed { code, message }
                        if code == ErrorCode::UnavailableRetry as i32 =>
                    {
                        last = message;
                    }
                    answer => return Ok(answer),
                },
                Ok(other) => {
                    last = format!("unexpected {} answer to a read", response_label(&other))
                }
                Err(err) => last = err.to_string(),
            }
        }
        Err(ProtocolError::new(ErrorCode::UnavailableRetry, last))
    }

    /// Reads one message as `user` may (membership checked by the pull);
    /// `None` when the conversation has no such seq.
    pub async fn read_message(
        &self,
        user: u64,
        at: &pb::MessageRef,
    ) -> Result<Option<pb::Message>, ProtocolError> {
        if at.seq == 0 {
            return Err(ProtocolError::invalid("seqs start at 1"));
        }
        let pull = pb::PullRequest {
            conversation: at.conversation.clone(),
            after_seq: at.seq - 1,
            limit: 1,
        };
        let page = self.pull(user, pull).await?;
        Ok(page.messages.into_iter().find(|m| m.seq == at.seq))
    }

    /// Pulls a page of a conversation for a member.
    pub async fn pull(
        &self,
        user: u64,
        pull: pb::PullRequest,
    ) -> Result<pb::PullResult, ProtocolError> {
        let conv: ConversationId = pull.conversation.parse()?;
        match self
            .read_at(self.partition_of(&conv), ReadRequest::Pull { user, pull })
            .await?
        {
            ReadResponse::Pull(result) => Ok(result),
            other => Err(ProtocolError::internal(format!(
                "unexpected read response {other:?}"
            ))),
        }
    }

    /// Returns read counts of messages of a conversation.
    pub async fn receipts(
        &self,
        user: u64,
        request: pb::ReceiptsRequest,
    ) -> Result<pb::ReceiptsResult, ProtocolError> {
        let conv: ConversationId = request.conversation.parse()?;
        match self
            .read_at(
                self.partition_of(&conv),
                ReadRequest::Receipts { user, request },
            )
            .await?
        {
            ReadResponse::Receipts(result) => Ok(result),
            other => Err(ProtocolError::internal(format!(
                "unexpected read response {other:?}"
            ))),
        }
    }

    /// Returns who received, read and signed a message that requires
    /// sign-off, for its sender, a moderator or an admin.
    pub async fn sign_status(
        &self,
        subject: Subject,
        request: pb::SignStatusRequest,
    ) -> Result<pb::SignStatus, ProtocolError> {
        let conv: ConversationId = request.conversation.parse()?;
        match self
            .read_at(
                self.partition_of(&conv),
                ReadRequest::SignStatus { subject, request },
            )
            .await?
        {
            ReadResponse::SignStatus(status) => Ok(status),
            other => Err(ProtocolError::internal(format!(
                "unexpected read response {other:?}"
            ))),
        }
    }

    /// Returns every conversation of the user: each partition's leader
    /// answers for its partitions (one request per leader, this node's own
    /// replicas included). A leader that cannot confirm all of them (one
    /// moved since) is skipped, and each of its partitions is read alone.
    pub async fn sync(&self, user: u64) -> Result<pb::SyncResult, ProtocolError> {
        let mut leaders: BTreeMap<Option<u64>, Vec<u16>> = BTreeMap::new();
        for partition in 0..self.inner.partitions.count() as u16 {
            let leader = self.inner.partitions.rafts()[partition as usize]
                .metrics()
                .borrow()
                .current_leader;
            leaders.entry(leader).or_default().push(partition);
        }
        let me = Some(self.inner.node_id);
        let mut conversations = Vec::new();
        for (leader, partitions) in leaders {
            let request = ReadRequest::Sync {
                user,
                partitions: partitions.clone(),
            };
            let together = if leader == me {
                match self.read_here(request).await {
                    ReadResponse::Failed { code, message } => Err(ProtocolError::new(
                        ErrorCode::try_from(code).unwrap_or(ErrorCode::Internal),
                        message,
                    )),
                    answer => Ok(answer),
                }
            } else {
                self.read_once(partitions[0], &request).await
            };
            let answers = match together {
                Err(err) if err.code == ErrorCode::UnavailableRetry => {
                    let mut answers = Vec::new();
                    for partition in partitions {
                        let one = ReadRequest::Sync {
                            user,
                            partitions: vec![partition],
                        };
                        answers.push(self.read_at(partition, one).await?);
                    }
                    answers
                }
                other => vec![other?],
            };
            for answer in answers {
                match answer {
                    ReadResponse::Sync(states) => conversations.extend(states),
                    other => {
                        return Err(ProtocolError::internal(format!(
                            "unexpected read response {other:?}"
                        )));
                    }
                }
            }
        }
        conversations.sort_by(|a, b| a.conversation.cmp(&b.conversation));
        Ok(pb::SyncResult { conversations })
    }
}

/// Returns the state of the user's conversations whose partitions are in
/// `partitions`, read from this node's replicas.
fn sync_partitions(
    messaging: &Messaging,
    user: u64,
    partitions: &[u16],
) -> Result<Vec<pb::ConversationState>, ProtocolError> {
    let parts = &messaging.inner.partitions;
    let mut conversations = Vec::new();
    let mut state =
        |conv: ConversationId, title: String, peer_read_seq: u64| -> Result<(), ProtocolError> {
            let max_seq = parts.max_seq(&conv)?;
            let read_seq = parts.read_cursor(&conv, user)?;
            conversations.push(pb::ConversationState {
                conversation: conv.to_string(),
                max_seq,
                read_seq,
                unread: max_seq.saturating_sub(read_seq),
                title,
                peer_read_seq,
                dnd: messaging.inner.meta.dnd(user, &conv)?,
                mentioned: parts.mentioned_at(&conv, user)? > read_seq,
                last_activity_ms: match max_seq {
                    0 => 0,
                    seq => parts.message(&conv, seq)?.map_or(0, |m| m.server_time_ms),
                },
            });
            Ok(())
        };
    for conv in parts.direct_conversations_in(user, partitions)? {
        let peer = conv.peer_of(user).unwrap_or(user);
        let title = messaging
            .inner
            .meta
            .user(peer)?
            .map(|u| u.account)
            .unwrap_or_default();
        let peer_read_seq = parts.read_cursor(&conv, peer)?;
        state(conv, title, peer_read_seq)?;
    }
    for group_id in messaging.inner.meta.groups_of(user)? {
        let conv = ConversationId::Group(group_id);
        if !partitions.contains(&messaging.partition_of(&conv)) {
            continue;
        }
        let title = messaging
            .inner
            .meta
            .group(group_id)?
            .map(|g| g.name)
            .unwrap_or_default();
        state(conv, title, 0)?;
    }
    Ok(conversations)
}

/// Counts, for each message, the members other than its sender whose read
/// cursor has reached it: an aggregate over cursors, never a row per reader.
fn fill_read_counts(
    messaging: &Messaging,
    conv: &ConversationId,
    members: &[u64],
    messages: &mut [pb::Message],
) -> Result<(), db::StorageError> {
    let cursors = messaging.inner.partitions.read_cursors(conv)?;
    let mut reached: Vec<(u64, u64)> = cursors
        .into_iter()
        .filter(|(user, _)| members.binary_search(user).is_ok())
        .map(|(user, seq)| (seq, user))
        .collect();
    reached.sort_unstable();
    for message in messages {
        let first = reached.partition_point(|(seq, _)| *seq < message.seq);
        let readers = reached.len() - first;
        let sender_read = reached[first..]
            .iter()
            .any(|(_, user)| *user == message.sender);
        message.read_count = (readers - usize::from(sender_read)) as u32;
    }
    Ok(())
}

/// Reads one page of a conversation for a member, with read counts.
fn pull_messages(
    messaging: &Messaging,
    user: u64,
    pull: pb::PullRequest,
) -> Result<pb::PullResult, ProtocolError> {
    let conv: ConversationId = pull.conversation.parse()?;
    let members = members_for(&messaging.inner.meta, &conv, user)?;
    let max = messaging.inner.limits.max_pull;
    let limit = if pull.limit == 0 {
        DEFAULT_PULL.min(max)
    } else {
        pull.limit.min(max)
    } as usize;
    let mut messages = messaging
        .inner
        .partitions
        .read_range(&conv, pull.after_seq, limit + 1)?;
    let mut has_more = messages.len() > limit;
    messages.truncate(limit);
    // Keep a page well under the largest frame the server writes, and
    // within a quarter of a connection's queue budget: the reader takes a
    // request while under half of it, so the answer fits with room left for
    // pushes, and a client that syncs history is not taken for a slow one.
    let page_bytes = MAX_PAGE_BYTES.min(messaging.inner.limits.page_bytes);
    let mut bytes = 0;
    if let Some(cut) = messages.iter().position(|m| {
        bytes += prost::Message::encoded_len(m);
        bytes > page_bytes
    }) {
        messages.truncate(cut.max(1));
        has_more = true;
    }
    fill_read_counts(messaging, &conv, &members, &mut messages)?;
    for message in &mut messages {
        if message.sign_off != pb::SignOff::None as i32 && message.sender != user {
            message.signed_at_ms =
                messaging
                    .inner
                    .partitions
                    .signed_at(&conv, message.seq, user)?;
        }
    }
    Ok(pb::PullResult {
        conversation: pull.conversation,
        messages,
        has_more,
        max_seq: messaging.inner.partitions.max_seq(&conv)?,
    })
}

fn receipts(
    messaging: &Messaging,
    user: u64,
    request: pb::ReceiptsRequest,
) -> Result<pb::ReceiptsResult, ProtocolError> {
    let conv: ConversationId = request.conversation.parse()?;
    let members = members_for(&messaging.inner.meta, &conv, user)?;
    if request.seqs.len() > messaging.inner.limits.max_pull as usize {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            "too many seqs in one receipts request",
        ));
    }
    let mut messages = Vec::with_capacity(request.seqs.len());
    for seq in &request.seqs {
        let message = messaging
            .inner
            .partitions
            .message(&conv, *seq)?
            .ok_or_else(|| {
                ProtocolError::not_found(format!("message {conv}:{seq} does not exist"))
            })?;
        messages.push(message);
    }
    fill_read_counts(messaging, &conv, &members, &mut messages)?;
    Ok(pb::ReceiptsResult {
        conversation: request.conversation,
        receipts: messages
            .iter()
            .map(|m| pb::Receipt {
                seq: m.seq,
                read_count: m.read_count,
                member_count: members.len() as u32,
            })
            .collect(),
    })
}

/// Reads a message's sign-off status, for those `authz` lets see it.
pub(super) fn sign_status(
    messaging: &Messaging,
    subject: &Subject,
    request: pb::SignStatusRequest,
) -> Result<pb::SignStatus, ProtocolError> {
    let conv: ConversationId = request.conversation.parse()?;
    let members = members_of(&messaging.inner.meta, &conv)?;
    authz::check(
        subject,
        Action::SeeMembers {
            conv: &conv,
            members: &members,
        },
    )?;
    let status = messaging.inner.partitions.sign_status(&conv, request.seq)?;
    let (owner, group_admins) = match conv {
        ConversationId::Group(id) => match messaging.inner.meta.group(id)? {
            Some(group) => (Some(group.owner), group.admins),
            None => (None, Vec::new()),
        },
        ConversationId::Direct { .. } => (None, Vec::new()),
    };
    let moderator = authz::allows(
        subject,
        Action::Moderate {
            owner,
            group_admins: &group_admins,
        },
    );
    authz::check(
        subject,
        Action::SeeSignOff {
            sender: status.sender,
            moderator,
        },
    )?;
    Ok(status)
}
