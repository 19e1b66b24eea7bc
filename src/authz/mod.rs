//! Authorization: every permission decision of a request is made here,
//! from who asks (`Subject`) and what they ask to do (`Action`). Handlers
//! and planes ask [`check`] (or [`allows`]) instead of reading an admin
//! flag themselves, so that roles, graded admins and three-officer
//! separation change this module and not every caller.

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
    /// Go past the per-user group quotas.
    ExceedQuotas,
    /// Have admin writes recorded in the audit trail as an admin's.
    BeAudited,
}

/// Says whether `subject` may do `action`.
pub fn allows(subject: &Subject, action: Action<'_>) -> bool {
    match action {
        Action::Administer | Action::ExceedQuotas | Action::BeAudited => subject.admin,
        Action::ChangeGroup { owner } => subject.admin || owner == subject.user_id,
        Action::UseConversation { members, .. } => members.binary_search(&subject.user_id).is_ok(),
        Action::SeeMembers { members, .. } => {
            subject.admin || members.binary_search(&subject.user_id).is_ok()
        }
    }
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
        Action::UseConversation { conv, .. } | Action::SeeMembers { conv, .. } => {
            format!("not a member of {conv}")
        }
        Action::ExceedQuotas | Action::BeAudited => "admin only".to_string(),
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
}
