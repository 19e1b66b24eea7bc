//! Authorization: every permission decision of a request is made here,
//! from who asks (`Subject`) and what they ask to do (`Action`). Handlers
//! and planes ask [`check`] (or [`allows`]) instead of reading an admin
//! flag themselves, so that roles, graded admins and three-officer
//! separation change this module and not every caller.

use crate::protocol::store_pb::{DiscussionStarters, FileSenders};
use crate::protocol::{ConversationId, ProtocolError};

/// Who asks: an authenticated user and what the metadata says of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub user_id: u64,
    pub admin: bool,
}

/// What a subject asks to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Anything of the admin API: the org tree, users, the cluster, audit.
    Administer,
    /// Change a group (its members) owned by `owner`.
    ChangeGroup { owner: u64 },
    /// Use a conversation (send, read, pull, list members) whose members
    /// are `members` (sorted).
    UseConversation {
        conv: &'a ConversationId,
        members: &'a [u64],
    },
    /// See who the members of a conversation are: its members and admins.
    SeeMembers {
        conv: &'a ConversationId,
        members: &'a [u64],
    },
    /// Moderate a conversation (recall its members' messages): a group's
    /// owner (`owner`, absent in 1:1), its group admins (`group_admins`,
    /// sorted) and admins of the organisation.
    Moderate {
        owner: Option<u64>,
        group_admins: &'a [u64],
    },
    /// Manage a group: rename it, set its avatar and announcement, mute
    /// members or the whole group. Its owner, its group admins and admins.
    ManageGroup { owner: u64, group_admins: &'a [u64] },
    /// Govern a group: transfer its ownership, name its admins, dissolve
    /// it. Its owner and admins.
    OwnGroup { owner: u64 },
    /// Send to a group whose owner is `owner` and admins `group_admins`,
    /// while the subject is `muted` and the group is muted as a whole
    /// (`mute_all`) or not: the owner and group admins always speak.
    Speak {
        owner: u64,
        group_admins: &'a [u64],
        muted: bool,
        mute_all: bool,
    },
    /// Mention everyone of a group (@all): its owner and group admins.
    MentionAll { owner: u64, group_admins: &'a [u64] },
    /// Ask a conversation to recall one of its messages: its members and
    /// admins. Whether the message itself may be recalled is [`Action::Recall`].
    RecallIn {
        conv: &'a ConversationId,
        members: &'a [u64],
    },
    /// Recall a stored message sent by `sender` at `sent_ms`, at `at_ms`:
    /// its sender, or a moderator, within `window_secs` of the messaging
    /// policy (0: never); admins at any time. Decided when the partition
    /// applies the recall, so every replica decides alike.
    Recall {
        sender: u64,
        moderator: bool,
        sent_ms: i64,
        at_ms: i64,
        window_secs: u64,
    },
    /// Start a temporary discussion while the messaging policy lets
    /// `starters` start one (docs/decisions/0019).
    StartDiscussion { starters: DiscussionStarters },
    /// Leave a group whose members are `members` (sorted): any member.
    LeaveGroup { members: &'a [u64] },
    /// Add people to a temporary discussion whose members are `members`
    /// (sorted): its members and admins.
    InviteToDiscussion { members: &'a [u64] },
    /// Address a notice to a department, group or user (docs/decisions/0020):
    /// admins any; others those `in_scope` (a department they hold a post
    /// in or below one, a group they own or admin).
    AddressNotice { in_scope: bool },
    /// See a notice's read and vote statistics: its sender and admins.
    SeeNoticeStats { sender: u64 },
    /// Go past the per-user group quotas.
    ExceedQuotas,
    /// Have admin writes recorded in the audit trail as an admin's.
    BeAudited,
    /// Sign a message that requires sign-off: one of its `recipients`
    /// (sorted), with their password re-entered when it asks for it.
    /// Decided when the partition applies the signature.
    Sign {
        recipients: &'a [u64],
        password_needed: bool,
        password_verified: bool,
    },
    /// See who received, read and signed a message sent by `sender`: its
    /// sender, a moderator of the conversation, or an admin.
    SeeSignOff { sender: u64, moderator: bool },
    /// Remind the recipients of a message sent by `sender` to sign it: its
    /// sender or an admin.
    RemindSigners { sender: u64 },
    /// Upload or send a file, as the file policy's `senders` allow.
    SendFile { senders: FileSenders },
}

/// Says whether `subject` may do `action`.
pub fn allows(subject: &Subject, action: Action<'_>) -> bool {
    match action {
        Action::Administer | Action::ExceedQuotas | Action::BeAudited => subject.admin,
        Action::ChangeGroup { owner } => subject.admin || owner == subject.user_id,
        Action::StartDiscussion { starters } => match starters {
            DiscussionStarters::Everyone => true,
            DiscussionStarters::Admins => subject.admin,
            DiscussionStarters::Nobody => false,
        },
        Action::SendFile { senders } => match senders {
            FileSenders::Everyone => true,
            FileSenders::Admins => subject.admin,
            FileSenders::Nobody => false,
        },
        Action::AddressNotice { in_scope } => subject.admin || in_scope,
        Action::SeeNoticeStats { sender } => subject.admin || sender == subject.user_id,
        Action::LeaveGroup { members } => members.binary_search(&subject.user_id).is_ok(),
        Action::InviteToDiscussion { members } => {
            subject.admin || members.binary_search(&subject.user_id).is_ok()
        }
        Action::UseConversation { members, .. } => members.binary_search(&subject.user_id).is_ok(),
        Action::SeeMembers { members, .. } | Action::RecallIn { members, .. } => {
            subject.admin || members.binary_search(&subject.user_id).is_ok()
        }
        Action::Moderate {
            owner,
            group_admins,
        } => {
            subject.admin
                || owner == Some(subject.user_id)
                || group_admins.binary_search(&subject.user_id).is_ok()
        }
        Action::ManageGroup {
            owner,
            group_admins,
        } => subject.admin || leads(subject.user_id, owner, group_admins),
        Action::OwnGroup { owner } => subject.admin || owner == subject.user_id,
        Action::Speak {
            owner,
            group_admins,
            muted,
            mute_all,
        } => !(muted || mute_all) || leads(subject.user_id, owner, group_admins),
        Action::MentionAll {
            owner,
            group_admins,
        } => leads(subject.user_id, owner, group_admins),
        Action::Sign {
            recipients,
            password_needed,
            password_verified,
        } => {
            recipients.binary_search(&subject.user_id).is_ok()
                && (password_verified || !password_needed)
        }
        Action::SeeSignOff { sender, moderator } => {
            subject.admin || moderator || sender == subject.user_id
        }
        Action::RemindSigners { sender } => subject.admin || sender == subject.user_id,
        Action::Recall {
            sender,
            moderator,
            sent_ms,
            at_ms,
            window_secs,
        } => {
            subject.admin
                || ((sender == subject.user_id || moderator)
                    && window_secs > 0
                    && within_window(sent_ms, at_ms, window_secs))
        }
    }
}

/// Tells whether `user` is a group's owner or one of its admins.
fn leads(user: u64, owner: u64, group_admins: &[u64]) -> bool {
    user == owner || group_admins.binary_search(&user).is_ok()
}

fn within_window(sent_ms: i64, at_ms: i64, window_secs: u64) -> bool {
    let window_ms = i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    at_ms.saturating_sub(sent_ms) <= window_ms
}

/// Returns `FORBIDDEN`, saying what is missing, unless `subject` may do
/// `action`.
pub fn check(subject: &Subject, action: Action<'_>) -> Result<(), ProtocolError> {
    if allows(subject, action) {
        return Ok(());
    }
    Err(ProtocolError::forbidden(match action {
        Action::Administer => "admin only".to_string(),
        Action::ChangeGroup { .. } => {
            "only the group owner or an admin may change members".to_string()
        }
        Action::UseConversation { conv, .. }
        | Action::SeeMembers { conv, .. }
        | Action::RecallIn { conv, .. } => {
            format!("not a member of {conv}")
        }
        Action::Moderate { .. } => {
            "only the group owner, a group admin or an admin may moderate".to_string()
        }
        Action::ManageGroup { .. } => {
            "only the group owner, a group admin or an admin may manage the group".to_string()
        }
        Action::OwnGroup { .. } => {
            "only the group owner or an admin may transfer, name admins or dissolve the group"
                .to_string()
        }
        Action::Speak { muted: true, .. } => "you are muted in this group".to_string(),
        Action::Speak { .. } => {
            "the group is muted: only its owner and admins may send".to_string()
        }
        Action::MentionAll { .. } => {
            "only the group owner or a group admin may mention all (@all)".to_string()
        }
        Action::Recall {
            sender, moderator, ..
        } if sender != subject.user_id && !moderator => {
            "only its sender, the group owner, a group admin or an admin may recall a message"
                .to_string()
        }
        Action::Recall { window_secs: 0, .. } => {
            "recall is disabled by the messaging policy (recall_window_secs 0)".to_string()
        }
        Action::Recall {
            sent_ms,
            at_ms,
            window_secs,
            ..
        } => format!(
            "the recall window of {window_secs} s has passed: the message was sent {} s ago",
            at_ms.saturating_sub(sent_ms) / 1000
        ),
        Action::ExceedQuotas | Action::BeAudited => "admin only".to_string(),
        Action::StartDiscussion {
            starters: DiscussionStarters::Admins,
        } => "the messaging policy lets only admins start temporary discussions".to_string(),
        Action::StartDiscussion { .. } => {
            "temporary discussions are off (messaging policy discussion_starters: nobody)"
                .to_string()
        }
        Action::SendFile {
            senders: FileSenders::Admins,
        } => "the file policy lets only admins send files".to_string(),
        Action::SendFile { .. } => "sending files is off (file policy senders: nobody)".to_string(),
        Action::LeaveGroup { .. } => "not a member of this group".to_string(),
        Action::AddressNotice { .. } => "you may address only the departments you hold a post in \
             (and those below them) and the groups you own or admin; admins address anyone"
            .to_string(),
        Action::SeeNoticeStats { .. } => {
            "only its sender or an admin may see a notice's statistics".to_string()
        }
        Action::InviteToDiscussion { .. } => {
            "only its members or an admin may add people to a discussion".to_string()
        }
        Action::Sign { recipients, .. } if recipients.binary_search(&subject.user_id).is_err() => {
            "only the message's recipients sign it (its sender does not)".to_string()
        }
        Action::Sign { .. } => {
            "this message is signed with your password: send it in the password field".to_string()
        }
        Action::SeeSignOff { .. } => {
            "only its sender, the group's owner or admins, or an admin may see who signed a message"
                .to_string()
        }
        Action::RemindSigners { .. } => {
            "only its sender or an admin may remind its recipients".to_string()
        }
    }))
}

/// Returns `FORBIDDEN` unless `user` is one of a conversation's `members`
/// (sorted): what the conversation actor and reads check, where only the
/// user's id is at hand.
pub fn check_member(
    user: u64,
    conv: &ConversationId,
    members: &[u64],
) -> Result<(), ProtocolError> {
    let subject = Subject {
        user_id: user,
        admin: false,
    };
    check(&subject, Action::UseConversation { conv, members })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    const ADMIN: Subject = Subject {
        user_id: 1,
        admin: true,
    };
    const ALICE: Subject = Subject {
        user_id: 2,
        admin: false,
    };

    #[test]
    fn admins_administer_and_others_are_told_why_not() {
        assert!(check(&ADMIN, Action::Administer).is_ok());
        let refused = check(&ALICE, Action::Administer).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert_eq!(refused.message, "admin only");
        assert!(allows(&ADMIN, Action::ExceedQuotas));
        assert!(!allows(&ALICE, Action::ExceedQuotas));
    }

    #[test]
    fn a_group_changes_by_its_owner_or_an_admin() {
        assert!(allows(&ALICE, Action::ChangeGroup { owner: 2 }));
        assert!(allows(&ADMIN, Action::ChangeGroup { owner: 2 }));
        let bob = Subject {
            user_id: 3,
            admin: false,
        };
        assert!(!allows(&bob, Action::ChangeGroup { owner: 2 }));
    }

    #[test]
    fn only_members_use_a_conversation_even_admins() {
        let conv = ConversationId::Group(9);
        let members = [2, 5, 7];
        assert!(check_member(2, &conv, &members).is_ok());
        let refused = check_member(3, &conv, &members).unwrap_err();
        assert_eq!(refused.message, "not a member of g:9");
        let action = Action::UseConversation {
            conv: &conv,
            members: &members,
        };
        assert!(!allows(&ADMIN, action));
        let see = Action::SeeMembers {
            conv: &conv,
            members: &members,
        };
        assert!(allows(&ADMIN, see) && allows(&ALICE, see));
        assert!(
            check(
                &Subject {
                    user_id: 4,
                    admin: false
                },
                see
            )
            .is_err()
        );
    }

    #[test]
    fn recall_by_the_sender_or_a_moderator_within_the_window_and_by_admins_always() {
        let recall = |sender, moderator, age_ms, window_secs| Action::Recall {
            sender,
            moderator,
            sent_ms: 1_000,
            at_ms: 1_000 + age_ms,
            window_secs,
        };
        assert!(allows(&ALICE, recall(2, false, 120_000, 120)));
        assert!(allows(&ALICE, recall(9, true, 1_000, 120)));
        let late = check(&ALICE, recall(2, false, 120_001, 120)).unwrap_err();
        assert_eq!(late.code, ErrorCode::Forbidden);
        assert_eq!(
            late.message,
            "the recall window of 120 s has passed: the message was sent 120 s ago"
        );
        let off = check(&ALICE, recall(2, false, 0, 0)).unwrap_err();
        assert!(off.message.contains("disabled"), "{}", off.message);
        let other = check(&ALICE, recall(9, false, 0, 120)).unwrap_err();
        assert!(
            other.message.contains("only its sender"),
            "{}",
            other.message
        );
        assert!(allows(&ADMIN, recall(9, false, i64::MAX / 2, 0)));
        let moderate = |owner, group_admins| Action::Moderate {
            owner,
            group_admins,
        };
        assert!(allows(&ALICE, moderate(Some(2), &[])));
        assert!(allows(&ALICE, moderate(Some(9), &[2, 4])));
        assert!(!allows(&ALICE, moderate(None, &[])));
        assert!(allows(&ADMIN, moderate(None, &[])));
    }

    #[test]
    fn groups_are_managed_by_their_owner_and_admins_and_governed_by_their_owner() {
        let bob = Subject {
            user_id: 3,
            admin: false,
        };
        let manage = Action::ManageGroup {
            owner: 2,
            group_admins: &[3],
        };
        assert!(allows(&ALICE, manage) && allows(&bob, manage) && allows(&ADMIN, manage));
        let carol = Subject {
            user_id: 4,
            admin: false,
        };
        let refused = check(&carol, manage).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert!(
            refused.message.contains("group admin"),
            "{}",
            refused.message
        );
        let own = Action::OwnGroup { owner: 2 };
        assert!(allows(&ALICE, own) && allows(&ADMIN, own) && !allows(&bob, own));
    }

    #[test]
    fn in_a_muted_group_only_its_owner_and_admins_speak_and_mention_all() {
        let speak = |muted, mute_all| Action::Speak {
            owner: 2,
            group_admins: &[3],
            muted,
            mute_all,
        };
        let (bob, carol) = (
            Subject {
                user_id: 3,
                admin: false,
            },
            Subject {
                user_id: 4,
                admin: false,
            },
        );
        assert!(allows(&carol, speak(false, false)));
        assert_eq!(
            check(&carol, speak(true, false)).unwrap_err().message,
            "you are muted in this group"
        );
        assert!(check(&carol, speak(false, true)).is_err());
        assert!(allows(&ALICE, speak(false, true)) && allows(&bob, speak(true, true)));
        let all = Action::MentionAll {
            owner: 2,
            group_admins: &[3],
        };
        assert!(allows(&ALICE, all) && allows(&bob, all));
        let refused = check(&carol, all).unwrap_err();
        assert!(refused.message.contains("@all"), "{}", refused.message);
    }
}
