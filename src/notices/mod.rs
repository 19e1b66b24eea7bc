//! Notices and broadcasts (通知公告/群发, docs/decisions/0020): checking a
//! notice before it is written, pushing it to its recipients, and the
//! views of it: a recipient's (with their read, acknowledgement and vote),
//! and its sender's statistics (reads per department, who has not read,
//! vote totals). A notice is metadata stored once; who may address whom
//! and every count are decided by the metadata's apply.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::authz::{self, Action, Subject};
use crate::delivery::Delivery;
use crate::meta::{Meta, NoticeRecord};
use crate::protocol::{ProtocolError, blocking, check_text, now_ms, pb};

/// How long a send waits for this node's replica to apply its notice.
const APPLY_PATIENCE: Duration = Duration::from_secs(5);

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_BYTES: usize = 16 * 1024;
const MAX_ATTACHMENT_BYTES: usize = 128;
const MAX_OPTIONS: usize = 20;
const MAX_OPTION_CHARS: usize = 200;
/// Departments, groups and users one notice may name, each.
const MAX_TARGETS: usize = 1000;
/// Notices a list returns by default, and at most.
const LIST_DEFAULT_LIMIT: u32 = 50;
const LIST_MAX_LIMIT: u32 = 200;

/// The notices handle.
#[derive(Clone)]
pub struct Notices {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Meta,
    /// Pushes a new notice to its recipients.
    delivery: Delivery,
}

fn dedup(mut ids: Vec<u64>, what: &str) -> Result<Vec<u64>, ProtocolError> {
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > MAX_TARGETS {
        return Err(ProtocolError::invalid(format!(
            "a notice names at most {MAX_TARGETS} {what}"
        )));
    }
    Ok(ids)
}

/// Checks what a notice says before it is written.
fn validate(send: &pb::SendNotice) -> Result<(), ProtocolError> {
    let title = send.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(ProtocolError::invalid(format!(
            "a notice's title is 1 to {MAX_TITLE_CHARS} characters"
        )));
    }
    check_text("title", title)?;
    if send.body.len() > MAX_BODY_BYTES {
        return Err(ProtocolError::invalid(format!(
            "a notice's body is at most {MAX_BODY_BYTES} bytes"
        )));
    }
    check_text("body", &send.body)?;
    if send.attachment.len() > MAX_ATTACHMENT_BYTES {
        return Err(ProtocolError::invalid(format!(
            "an attachment reference is at most {MAX_ATTACHMENT_BYTES} bytes"
        )));
    }
    check_text("attachment", &send.attachment)?;
    if send.departments.is_empty() && send.groups.is_empty() && send.users.is_empty() {
        return Err(ProtocolError::invalid(
            "a notice names at least one department, group or user",
        ));
    }
    if let Some(vote) = &send.vote {
        if vote.options.len() < 2 || vote.options.len() > MAX_OPTIONS {
            return Err(ProtocolError::invalid(format!(
                "a vote has 2 to {MAX_OPTIONS} options"
            )));
        }
        for option in &vote.options {
            let chars = option.trim().chars().count();
            if chars == 0 || chars > MAX_OPTION_CHARS {
                return Err(ProtocolError::invalid(format!(
                    "a vote's option is 1 to {MAX_OPTION_CHARS} characters"
                )));
            }
            check_text("option", option)?;
        }
        if vote.deadline_ms != 0 && vote.deadline_ms <= now_ms() {
            return Err(ProtocolError::invalid("the vote's deadline has passed"));
        }
    }
    Ok(())
}

/// Returns the votes per option and the options `user` chose.
fn tally(options: usize, votes: &[(u64, Vec<u32>)], user: u64) -> (Vec<u32>, Vec<u32>) {
    let mut totals = vec![0u32; options];
    let mut mine = Vec::new();
    for (voter, choices) in votes {
        for choice in choices {
            if let Some(total) = totals.get_mut(*choice as usize) {
                *total += 1;
            }
        }
        if *voter == user {
            mine = choices.clone();
        }
    }
    (totals, mine)
}

/// Returns a notice as `user` sees it, with their own state.
fn view(meta: &Meta, record: NoticeRecord, user: u64) -> Result<pb::Notice, ProtocolError> {
    let state = meta
        .notice_read_state(record.notice_id, user)?
        .unwrap_or_default();
    let (totals, my_choices) = match &record.vote {
        Some(vote) => tally(
            vote.options.len(),
            &meta.notice_votes(record.notice_id)?,
            user,
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(pb::Notice {
        notice_id: record.notice_id,
        sender: record.sender,
        title: record.title,
        body: record.body,
        attachment: record.attachment,
        must_ack: record.must_ack,
        vote: record.vote,
        sent_at_ms: record.sent_at_ms,
        recipient_count: record.recipient_count,
        read_at_ms: state.read_at_ms,
        acked_at_ms: state.acked_at_ms,
        my_choices,
        totals,
    })
}

impl Notices {
    pub fn new(meta: Meta, delivery: Delivery) -> Notices {
        Notices {
            inner: Arc::new(Inner { meta, delivery }),
        }
    }

    /// Sends a notice from `subject` to the departments (with their
    /// sub-departments), groups and users it names, if they may address
    /// them; every recipient's sessions are pushed it.
    pub async fn send(
        &self,
        subject: &Subject,
        send: pb::SendNotice,
    ) -> Result<pb::NoticeSent, ProtocolError> {
        validate(&send)?;
        let record = NoticeRecord {
            notice_id: 0,
            sender: subject.user_id,
            title: send.title.trim().to_string(),
            body: send.body,
            attachment: send.attachment,
            departments: dedup(send.departments, "departments")?,
            groups: dedup(send.groups, "groups")?,
            users: dedup(send.users, "users")?,
            must_ack: send.must_ack,
            vote: send.vote.map(|vote| pb::NoticeVote {
                options: vote.options.iter().map(|o| o.trim().to_string()).collect(),
                ..vote
            }),
            sent_at_ms: now_ms(),
            recipient_count: 0,
        };
        let notice = self.inner.meta.send_notice(record, subject.admin).await?;
        let recipients = self
            .applied_recipients(notice.notice_id, notice.recipient_count)
            .await?;
        let sent = pb::NoticeSent {
            notice_id: notice.notice_id,
            recipient_count: notice.recipient_count,
            sent_at_ms: notice.sent_at_ms,
        };
        // What every recipient sees before reading: nobody's state is in it.
        let push = view(&self.inner.meta, notice, 0)?;
        let frame = pb::ServerFrame {
            request_id: 0,
            body: Some(pb::server_frame::Body::Notice(push)),
        };
        self.inner.delivery.deliver(frame, recipients, None);
        Ok(sent)
    }

    /// Returns a notice's recipients from this node's metadata replica,
    /// once it applied the notice: the write was answered by the leader,
    /// and a replica that has not applied it yet knows no recipient (whom
    /// the push would then miss). Gives what it holds after a few seconds.
    async fn applied_recipients(&self, id: u64, count: u32) -> Result<Vec<u64>, ProtocolError> {
        let deadline = std::time::Instant::now() + APPLY_PATIENCE;
        loop {
            let meta = self.inner.meta.clone();
            let applied = meta.raft().metrics().borrow().last_applied;
            let recipients = blocking(move || Ok(meta.notice_recipients(id)?)).await?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if recipients.len() >= count as usize || left.is_zero() {
                return Ok(recipients);
            }
            let _ = self
                .inner
                .meta
                .raft()
                .wait(Some(left))
                .metrics(|m| m.last_applied != applied, "metadata applied more")
                .await;
        }
    }

    /// Returns the user's notices (or those they sent), newest first.
    pub async fn list(
        &self,
        user: u64,
        list: pb::ListNotices,
    ) -> Result<pb::NoticeList, ProtocolError> {
        let meta = self.inner.meta.clone();
        blocking(move || {
            let limit = match list.limit {
                0 => LIST_DEFAULT_LIMIT,
                n => n.min(LIST_MAX_LIMIT),
            } as usize;
            let mut notices = Vec::new();
            for record in meta.notices_of(user, list.before_id, limit, list.sent)? {
                notices.push(view(&meta, record, user)?);
            }
            Ok(pb::NoticeList { notices })
        })
        .await
    }

    /// Marks a notice read (and acknowledged) by a recipient.
    pub async fn read(
        &self,
        user: u64,
        read: pb::ReadNotice,
    ) -> Result<pb::NoticeRead, ProtocolError> {
        let state = self
            .inner
            .meta
            .read_notice(read.notice_id, user, read.ack)
            .await?;
        Ok(pb::NoticeRead {
            notice_id: read.notice_id,
            read_at_ms: state.read_at_ms,
            acked_at_ms: state.acked_at_ms,
        })
    }

    /// Records a recipient's vote; returns the notice with the totals.
    pub async fn vote(&self, user: u64, vote: pb::VoteNotice) -> Result<pb::Notice, ProtocolError> {
        let record = self
            .inner
            .meta
            .vote_notice(vote.notice_id, user, vote.choices)
            .await?;
        let meta = self.inner.meta.clone();
        blocking(move || view(&meta, record, user)).await
    }

    /// Returns a notice's read and vote statistics, for its sender and
    /// admins.
    pub async fn stats(
        &self,
        subject: &Subject,
        request: pb::NoticeStatsRequest,
    ) -> Result<pb::NoticeStats, ProtocolError> {
        let meta = self.inner.meta.clone();
        let subject = *subject;
        blocking(move || statistics(&meta, &subject, request)).await
    }
}

/// Computes a notice's statistics from its recipients, reads and votes.
pub fn statistics(
    meta: &Meta,
    subject: &Subject,
    request: pb::NoticeStatsRequest,
) -> Result<pb::NoticeStats, ProtocolError> {
    let id = request.notice_id;
    let record = meta
        .notice(id)?
        .ok_or_else(|| ProtocolError::not_found(format!("notice {id} does not exist")))?;
    authz::check(
        subject,
        Action::SeeNoticeStats {
            sender: record.sender,
        },
    )?;
    let recipients = meta.notice_recipients(id)?;
    let reads = meta.notice_reads(id)?;
    let readers: BTreeSet<u64> = reads.iter().map(|(user, _)| *user).collect();
    let acked_count = reads.iter().filter(|(_, s)| s.acked_at_ms != 0).count() as u32;
    let limit = match request.unread_limit {
        0 => usize::MAX,
        n => n as usize,
    };
    let unread: Vec<u64> = recipients
        .iter()
        .copied()
        .filter(|user| !readers.contains(user))
        .take(limit)
        .collect();
    let mut departments = Vec::new();
    for (department, users) in meta.department_reach(&record.departments)? {
        let reached: Vec<u64> = recipients
            .iter()
            .copied()
            .filter(|user| users.contains(user))
            .collect();
        departments.push(pb::DepartmentReads {
            department_id: department.department_id,
            name: department.name,
            recipient_count: reached.len() as u32,
            read_count: reached.iter().filter(|u| readers.contains(u)).count() as u32,
        });
    }
    let (totals, voters, voter_count) = match &record.vote {
        Some(vote) => {
            let votes = meta.notice_votes(id)?;
            let (totals, _) = tally(vote.options.len(), &votes, 0);
            let voters = if vote.anonymous {
                Vec::new()
            } else {
                (0..vote.options.len() as u32)
                    .map(|option| pb::OptionVoters {
                        option,
                        user_ids: votes
                            .iter()
                            .filter(|(_, choices)| choices.contains(&option))
                            .map(|(user, _)| *user)
                            .collect(),
                    })
                    .collect()
            };
            (totals, voters, votes.len() as u32)
        }
        None => (Vec::new(), Vec::new(), 0),
    };
    Ok(pb::NoticeStats {
        notice_id: id,
        recipient_count: recipients.len() as u32,
        read_count: recipients.iter().filter(|u| readers.contains(u)).count() as u32,
        acked_count,
        departments,
        unread,
        totals,
        voters,
        voter_count,
    })
}
