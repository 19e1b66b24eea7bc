//! The protobuf form (`store.proto`) of the metadata commands and
//! responses, as the metadata group's log holds them and as a follower
//! forwards them to the leader. The Rust enums stay the in-memory types
//! that the state machine matches on.

use prost::Message as _;

use super::favourites::Favourite;
use super::state_machine::{GroupQuota, MetaCommand, MetaResponse, NodeRecord, Refusal};
use super::{UserUpdate, store_pb};
use crate::protocol::ErrorCode;
use crate::raft::{Wire, WireError, wire::decode_pb};

use store_pb::meta_command::{self as command, Command};
use store_pb::meta_response::{self as response, Response};

fn missing(field: &'static str) -> WireError {
    WireError::missing("metadata command", field)
}

fn usize_from(value: u64) -> usize {
    // A limit past the address space is no limit.
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl From<&NodeRecord> for store_pb::NodeRecord {
    fn from(node: &NodeRecord) -> Self {
        store_pb::NodeRecord {
            node_id: node.node_id,
            peer_addr: node.peer_addr.clone(),
            tcp_addr: node.tcp_addr.clone(),
            http_addr: node.http_addr.clone(),
        }
    }
}

impl From<store_pb::NodeRecord> for NodeRecord {
    fn from(node: store_pb::NodeRecord) -> Self {
        NodeRecord {
            node_id: node.node_id,
            peer_addr: node.peer_addr,
            tcp_addr: node.tcp_addr,
            http_addr: node.http_addr,
        }
    }
}

impl From<&UserUpdate> for store_pb::UserUpdate {
    fn from(update: &UserUpdate) -> Self {
        store_pb::UserUpdate {
            display_name: update.display_name.clone(),
            title: update.title.clone(),
            phone: update.phone.clone(),
            email: update.email.clone(),
            mobile: update.mobile.clone(),
            disabled: update.disabled,
            posts: update
                .posts
                .as_ref()
                .map(|posts| store_pb::user_update::Posts {
                    posts: posts.clone(),
                }),
            password_hash: update.password_hash.clone(),
            keep_token: update.keep_token.clone(),
            must_change_password: update.must_change_password,
            password_set_at_ms: update.password_set_at_ms,
            keep_previous: update.keep_previous,
        }
    }
}

impl From<store_pb::UserUpdate> for UserUpdate {
    fn from(update: store_pb::UserUpdate) -> Self {
        UserUpdate {
            display_name: update.display_name,
            title: update.title,
            phone: update.phone,
            email: update.email,
            mobile: update.mobile,
            disabled: update.disabled,
            posts: update.posts.map(|p| p.posts),
            password_hash: update.password_hash,
            keep_token: update.keep_token,
            must_change_password: update.must_change_password,
            password_set_at_ms: update.password_set_at_ms,
            keep_previous: update.keep_previous,
        }
    }
}

impl From<&MetaCommand> for store_pb::MetaCommand {
    fn from(meta: &MetaCommand) -> Self {
        let command = match meta {
            MetaCommand::SetPartitions { count } => {
                Command::SetPartitions(command::SetPartitions { count: *count })
            }
            MetaCommand::CreateUser { user } => Command::CreateUser(user.clone()),
            MetaCommand::CreateGroup {
                group,
                max_members,
                quota,
            } => Command::CreateGroup(command::CreateGroup {
                group: Some(group.clone()),
                max_members: *max_members as u64,
                quota: quota.map(|q| store_pb::GroupQuota {
                    max_owned: q.max_owned,
                    per_hour: q.per_hour,
                }),
            }),
            MetaCommand::ChangeMembers {
                group_id,
                add,
                remove,
                max_members,
                at_ms,
            } => Command::ChangeMembers(command::ChangeMembers {
                group_id: *group_id,
                add: add.clone(),
                remove: remove.clone(),
                max_members: *max_members as u64,
                at_ms: *at_ms,
            }),
            MetaCommand::IssueToken { digest, record } => {
                Command::IssueToken(command::IssueToken {
                    digest: digest.clone(),
                    record: Some(*record),
                })
            }
            MetaCommand::RevokeToken { digest } => Command::RevokeToken(digest.clone()),
            MetaCommand::RegisterNode { node } => Command::RegisterNode(node.into()),
            MetaCommand::RemoveNode { node_id } => Command::RemoveNode(*node_id),
            MetaCommand::SetPlacement {
                partition,
                replicas,
            } => Command::SetPlacement(command::SetPlacement {
                partition: u32::from(*partition),
                replicas: replicas.clone(),
            }),
            MetaCommand::CreateDepartment { department } => {
                Command::CreateDepartment(department.clone())
            }
            MetaCommand::UpdateDepartment {
                department_id,
                name,
                order,
            } => Command::UpdateDepartment(command::UpdateDepartment {
                department_id: *department_id,
                name: name.clone(),
                order: *order,
            }),
            MetaCommand::MoveDepartment {
                department_id,
                parent_id,
            } => Command::MoveDepartment(command::MoveDepartment {
                department_id: *department_id,
                parent_id: *parent_id,
            }),
            MetaCommand::DeleteDepartment { department_id } => {
                Command::DeleteDepartment(*department_id)
            }
            MetaCommand::UpdateUser { user_id, update } => {
                Command::UpdateUser(command::UpdateUser {
                    user_id: *user_id,
                    update: Some(update.into()),
                })
            }
            MetaCommand::DeleteUser { user_id } => Command::DeleteUser(*user_id),
            MetaCommand::Noop => Command::Noop(command::Noop {}),
            MetaCommand::SetMessagingPolicy { policy } => Command::SetMessagingPolicy(*policy),
            MetaCommand::SetFilePolicy { policy } => Command::SetFilePolicy(policy.clone()),
            MetaCommand::SetPasswordPolicy { policy } => Command::SetPasswordPolicy(*policy),
            MetaCommand::SpaceChange { change } => Command::SpaceChange(change.clone()),
            MetaCommand::RegisterFile { file, exempt } => {
                Command::RegisterFile(command::RegisterFile {
                    file: Some(file.clone()),
                    exempt: *exempt,
                })
            }
            MetaCommand::UpdateGroup {
                group_id,
                by,
                admin,
                change,
                at_ms,
                announcement_seq,
            } => Command::UpdateGroup(command::UpdateGroup {
                group_id: *group_id,
                by: *by,
                admin: *admin,
                change: Some(change.clone()),
                at_ms: *at_ms,
                announcement_seq: *announcement_seq,
            }),
            MetaCommand::SetConversationSettings {
                user_id,
                conversation,
                dnd,
            } => Command::SetConversationSettings(command::SetConversationSettings {
                user_id: *user_id,
                conversation: conversation.clone(),
                dnd: *dnd,
            }),
            MetaCommand::SetFavourite {
                user_id,
                item,
                on,
                at_ms,
            } => {
                let (contact, message) = item.to_wire();
                Command::SetFavourite(command::SetFavourite {
                    user_id: *user_id,
                    contact,
                    message,
                    on: *on,
                    at_ms: *at_ms,
                })
            }
            MetaCommand::SendNotice { notice, admin } => Command::SendNotice(command::SendNotice {
                notice: Some(notice.clone()),
                admin: *admin,
            }),
            MetaCommand::NoticeRead {
                notice_id,
                user_id,
                ack,
                at_ms,
            } => Command::NoticeRead(command::NoticeRead {
                notice_id: *notice_id,
                user_id: *user_id,
                ack: *ack,
                at_ms: *at_ms,
            }),
            MetaCommand::NoticeVote {
                notice_id,
                user_id,
                choices,
                at_ms,
            } => Command::NoticeVote(command::NoticeVote {
                notice_id: *notice_id,
                user_id: *user_id,
                choices: choices.clone(),
                at_ms: *at_ms,
            }),
            MetaCommand::Audited { command, audit } => {
                Command::Audited(Box::new(command::Audited {
                    command: Some(Box::new(command.as_ref().into())),
                    audit: Some(audit.clone()),
                }))
            }
        };
        store_pb::MetaCommand {
            command: Some(command),
        }
    }
}

impl TryFrom<store_pb::MetaCommand> for MetaCommand {
    type Error = WireError;

    fn try_from(meta: store_pb::MetaCommand) -> Result<Self, WireError> {
        Ok(match meta.command.ok_or(missing("command"))? {
            Command::SetPartitions(c) => MetaCommand::SetPartitions { count: c.count },
            Command::CreateUser(user) => MetaCommand::CreateUser { user },
            Command::CreateGroup(c) => MetaCommand::CreateGroup {
                group: c.group.ok_or(missing("group"))?,
                max_members: usize_from(c.max_members),
                quota: c.quota.map(|q| GroupQuota {
                    max_owned: q.max_owned,
                    per_hour: q.per_hour,
                }),
            },
            Command::ChangeMembers(c) => MetaCommand::ChangeMembers {
                group_id: c.group_id,
                add: c.add,
                remove: c.remove,
                max_members: usize_from(c.max_members),
                at_ms: c.at_ms,
            },
            Command::IssueToken(c) => MetaCommand::IssueToken {
                digest: c.digest,
                record: c.record.ok_or(missing("token record"))?,
            },
            Command::RevokeToken(digest) => MetaCommand::RevokeToken { digest },
            Command::RegisterNode(node) => MetaCommand::RegisterNode { node: node.into() },
            Command::RemoveNode(node_id) => MetaCommand::RemoveNode { node_id },
            Command::SetPlacement(c) => MetaCommand::SetPlacement {
                partition: u16::try_from(c.partition)
                    .map_err(|_| WireError::new("metadata command", "partition beyond u16"))?,
                replicas: c.replicas,
            },
            Command::CreateDepartment(department) => MetaCommand::CreateDepartment { department },
            Command::UpdateDepartment(c) => MetaCommand::UpdateDepartment {
                department_id: c.department_id,
                name: c.name,
                order: c.order,
            },
            Command::MoveDepartment(c) => MetaCommand::MoveDepartment {
                department_id: c.department_id,
                parent_id: c.parent_id,
            },
            Command::DeleteDepartment(department_id) => {
                MetaCommand::DeleteDepartment { department_id }
            }
            Command::UpdateUser(c) => MetaCommand::UpdateUser {
                user_id: c.user_id,
                update: c.update.ok_or(missing("update"))?.into(),
            },
            Command::DeleteUser(user_id) => MetaCommand::DeleteUser { user_id },
            Command::Noop(_) => MetaCommand::Noop,
            Command::SetMessagingPolicy(policy) => MetaCommand::SetMessagingPolicy { policy },
            Command::SetFilePolicy(policy) => MetaCommand::SetFilePolicy { policy },
            Command::SetPasswordPolicy(policy) => MetaCommand::SetPasswordPolicy { policy },
            Command::SpaceChange(change) => MetaCommand::SpaceChange { change },
            Command::RegisterFile(c) => MetaCommand::RegisterFile {
                file: c.file.ok_or(missing("file"))?,
                exempt: c.exempt,
            },
            Command::UpdateGroup(c) => MetaCommand::UpdateGroup {
                group_id: c.group_id,
                by: c.by,
                admin: c.admin,
                change: c.change.ok_or(missing("change"))?,
                at_ms: c.at_ms,
                announcement_seq: c.announcement_seq,
            },
            Command::SetConversationSettings(c) => MetaCommand::SetConversationSettings {
                user_id: c.user_id,
                conversation: c.conversation,
                dnd: c.dnd,
            },
            Command::SetFavourite(c) => MetaCommand::SetFavourite {
                user_id: c.user_id,
                item: Favourite::from_wire(c.contact, c.message).ok_or(missing("item"))?,
                on: c.on,
                at_ms: c.at_ms,
            },
            Command::SendNotice(c) => MetaCommand::SendNotice {
                notice: c.notice.ok_or(missing("notice"))?,
                admin: c.admin,
            },
            Command::NoticeRead(c) => MetaCommand::NoticeRead {
                notice_id: c.notice_id,
                user_id: c.user_id,
                ack: c.ack,
                at_ms: c.at_ms,
            },
            Command::NoticeVote(c) => MetaCommand::NoticeVote {
                notice_id: c.notice_id,
                user_id: c.user_id,
                choices: c.choices,
                at_ms: c.at_ms,
            },
            Command::Audited(c) => MetaCommand::Audited {
                command: Box::new(MetaCommand::try_from(
                    *c.command.ok_or(missing("command"))?,
                )?),
                audit: c.audit.ok_or(missing("audit"))?,
            },
        })
    }
}

impl From<&Refusal> for response::Refusal {
    fn from(refusal: &Refusal) -> Self {
        let (code, message) = match refusal {
            Refusal::NotFound(m) => (ErrorCode::NotFound, m),
            Refusal::Conflict(m) => (ErrorCode::Conflict, m),
            Refusal::Invalid(m) => (ErrorCode::Invalid, m),
            Refusal::Forbidden(m) => (ErrorCode::Forbidden, m),
            Refusal::RateLimited(m) => (ErrorCode::RateLimited, m),
        };
        response::Refusal {
            code: code as i32,
            message: message.clone(),
        }
    }
}

impl TryFrom<response::Refusal> for Refusal {
    type Error = WireError;

    fn try_from(refusal: response::Refusal) -> Result<Self, WireError> {
        let message = refusal.message;
        Ok(match ErrorCode::try_from(refusal.code) {
            Ok(ErrorCode::NotFound) => Refusal::NotFound(message),
            Ok(ErrorCode::Conflict) => Refusal::Conflict(message),
            Ok(ErrorCode::Invalid) => Refusal::Invalid(message),
            Ok(ErrorCode::Forbidden) => Refusal::Forbidden(message),
            Ok(ErrorCode::RateLimited) => Refusal::RateLimited(message),
            _ => {
                return Err(WireError::new(
                    "metadata response",
                    format!("refusal code {}", refusal.code),
                ));
            }
        })
    }
}

impl From<&MetaResponse> for store_pb::MetaResponse {
    fn from(meta: &MetaResponse) -> Self {
        let response = match meta {
            MetaResponse::Done => Response::Done(response::Done {}),
            MetaResponse::Partitions(count) => Response::Partitions(*count),
            MetaResponse::User(user) => Response::User(user.clone()),
            MetaResponse::Group(group) => Response::Group(group.clone()),
            MetaResponse::Replaced(digest) => Response::Replaced(response::Replaced {
                digest: digest.clone(),
            }),
            MetaResponse::Revoked(record) => {
                Response::Revoked(response::Revoked { record: *record })
            }
            MetaResponse::Department(department) => Response::Department(department.clone()),
            MetaResponse::UserChanged { user, revoked } => {
                Response::UserChanged(response::UserChanged {
                    user: Some(user.clone()),
                    revoked: revoked.clone(),
                })
            }
            MetaResponse::Refused(refusal) => Response::Refused(refusal.into()),
            MetaResponse::MessagingPolicy(policy) => Response::MessagingPolicy(*policy),
            MetaResponse::FilePolicy(policy) => Response::FilePolicy(policy.clone()),
            MetaResponse::PasswordPolicy(policy) => Response::PasswordPolicy(*policy),
            MetaResponse::File(file) => Response::File(file.clone()),
            MetaResponse::SpaceEntry(entry) => Response::SpaceEntry(entry.clone()),
            MetaResponse::Favourite(record) => Response::Favourite(record.clone()),
            MetaResponse::Notice(notice) => Response::Notice(notice.clone()),
            MetaResponse::NoticeRead(state) => Response::NoticeRead(*state),
        };
        store_pb::MetaResponse {
            response: Some(response),
        }
    }
}

impl TryFrom<store_pb::MetaResponse> for MetaResponse {
    type Error = WireError;

    fn try_from(meta: store_pb::MetaResponse) -> Result<Self, WireError> {
        let missing = |field| WireError::missing("metadata response", field);
        Ok(match meta.response.ok_or(missing("response"))? {
            Response::Done(_) => MetaResponse::Done,
            Response::Partitions(count) => MetaResponse::Partitions(count),
            Response::User(user) => MetaResponse::User(user),
            Response::Group(group) => MetaResponse::Group(group),
            Response::Replaced(r) => MetaResponse::Replaced(r.digest),
            Response::Revoked(r) => MetaResponse::Revoked(r.record),
            Response::Department(department) => MetaResponse::Department(department),
            Response::UserChanged(r) => MetaResponse::UserChanged {
                user: r.user.ok_or(missing("user"))?,
                revoked: r.revoked,
            },
            Response::Refused(refusal) => MetaResponse::Refused(refusal.try_into()?),
            Response::MessagingPolicy(policy) => MetaResponse::MessagingPolicy(policy),
            Response::FilePolicy(policy) => MetaResponse::FilePolicy(policy),
            Response::PasswordPolicy(policy) => MetaResponse::PasswordPolicy(policy),
            Response::File(file) => MetaResponse::File(file),
            Response::SpaceEntry(entry) => MetaResponse::SpaceEntry(entry),
            Response::Favourite(record) => MetaResponse::Favourite(record),
            Response::Notice(notice) => MetaResponse::Notice(notice),
            Response::NoticeRead(state) => MetaResponse::NoticeRead(state),
        })
    }
}

impl Wire for MetaCommand {
    fn to_wire(&self) -> Vec<u8> {
        store_pb::MetaCommand::from(self).encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        decode_pb::<store_pb::MetaCommand>("metadata command", bytes)?.try_into()
    }
}

impl Wire for MetaResponse {
    fn to_wire(&self) -> Vec<u8> {
        store_pb::MetaResponse::from(self).encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        decode_pb::<store_pb::MetaResponse>("metadata response", bytes)?.try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{AuditRecord, DepartmentRecord, GroupRecord, Post, TokenRecord, UserRecord};

    fn user() -> UserRecord {
        UserRecord {
            user_id: 7,
            account: "ada".into(),
            display_name: "Ada".into(),
            password_hash: "$argon2id$x".into(),
            posts: vec![Post {
                department_id: 3,
                title: "lead".into(),
            }],
            ..Default::default()
        }
    }

    fn commands() -> Vec<MetaCommand> {
        let token = TokenRecord {
            user_id: 7,
            device_class: 2,
            issued_at_ms: 1,
            expires_at_ms: 2,
        };
        let group = GroupRecord {
            group_id: 0,
            name: "ops".into(),
            owner: 7,
            members: vec![7, 8],
            created_at_ms: 5,
            ..GroupRecord::default()
        };
        vec![
            MetaCommand::SetPartitions { count: 64 },
            MetaCommand::CreateUser { user: user() },
            MetaCommand::CreateGroup {
                group: group.clone(),
                max_members: 500,
                quota: Some(GroupQuota {
                    max_owned: 10,
                    per_hour: 3,
                }),
            },
            MetaCommand::CreateGroup {
                group,
                max_members: 500,
                quota: None,
            },
            MetaCommand::ChangeMembers {
                group_id: 4,
                add: vec![1, 2],
                remove: vec![3],
                max_members: 500,
                at_ms: 11,
            },
            MetaCommand::IssueToken {
                digest: vec![1, 2, 3],
                record: token,
            },
            MetaCommand::RevokeToken { digest: vec![4, 5] },
            MetaCommand::RegisterNode {
                node: NodeRecord {
                    node_id: 2,
                    peer_addr: "10.0.0.2:7000".into(),
                    tcp_addr: "10.0.0.2:7001".into(),
                    http_addr: "10.0.0.2:7002".into(),
                },
            },
            MetaCommand::RemoveNode { node_id: 2 },
            MetaCommand::SetPlacement {
                partition: 63,
                replicas: vec![1, 2, 3],
            },
            MetaCommand::CreateDepartment {
                department: DepartmentRecord {
                    department_id: 0,
                    parent_id: 1,
                    name: "R&D".into(),
                    order: -1,
                    created_at_ms: 9,
                },
            },
            MetaCommand::UpdateDepartment {
                department_id: 3,
                name: Some("Research".into()),
                order: None,
            },
            MetaCommand::UpdateDepartment {
                department_id: 3,
                name: None,
                order: Some(0),
            },
            MetaCommand::MoveDepartment {
                department_id: 3,
                parent_id: 0,
            },
            MetaCommand::DeleteDepartment { department_id: 3 },
            MetaCommand::UpdateUser {
                user_id: 7,
                update: UserUpdate {
                    display_name: Some(String::new()),
                    disabled: Some(false),
                    posts: Some(Vec::new()),
                    ..Default::default()
                },
            },
            MetaCommand::UpdateUser {
                user_id: 7,
                update: UserUpdate::default(),
            },
            MetaCommand::UpdateUser {
                user_id: 7,
                update: UserUpdate {
                    password_hash: Some("$argon2id$y".into()),
                    must_change_password: true,
                    password_set_at_ms: 5,
                    keep_previous: 3,
                    ..Default::default()
                },
            },
            MetaCommand::DeleteUser { user_id: 7 },
            MetaCommand::Noop,
            MetaCommand::SetMessagingPolicy {
                policy: store_pb::MessagingPolicy {
                    recall_window_secs: 0,
                    burn_max_secs: Some(30),
                    discussion_starters: store_pb::DiscussionStarters::Admins as i32,
                    discussion_idle_secs: Some(3600),
                },
            },
            MetaCommand::SetFilePolicy {
                policy: store_pb::FilePolicy {
                    max_file_bytes: Some(0),
                    blocked_types: vec!["exe".into()],
                    retention_days: None,
                    ..Default::default()
                },
            },
            MetaCommand::SetPasswordPolicy {
                policy: store_pb::PasswordPolicy {
                    min_length: 12,
                    min_classes: 3,
                    history: 5,
                    max_age_days: 90,
                },
            },
            MetaCommand::SpaceChange {
                change: store_pb::meta_command::SpaceChange {
                    group_id: 4,
                    by: 7,
                    admin: false,
                    at_ms: 9,
                    op: Some(store_pb::meta_command::space_change::Op::Delete(3)),
                },
            },
            MetaCommand::RegisterFile {
                file: store_pb::FileRecord {
                    file_id: "f1".into(),
                    holders: vec![1, 2],
                    ..Default::default()
                },
                exempt: true,
            },
            MetaCommand::UpdateGroup {
                group_id: 4,
                by: 7,
                admin: false,
                change: crate::protocol::pb::GroupChange {
                    change: Some(crate::protocol::pb::group_change::Change::MuteMember(
                        crate::protocol::pb::MemberFlag {
                            user_id: 8,
                            on: true,
                        },
                    )),
                },
                at_ms: 9,
                announcement_seq: 3,
            },
            MetaCommand::SetConversationSettings {
                user_id: 7,
                conversation: "g:4".into(),
                dnd: true,
            },
            MetaCommand::SendNotice {
                notice: store_pb::NoticeRecord {
                    sender: 7,
                    title: "Holiday".into(),
                    departments: vec![3],
                    vote: Some(crate::protocol::pb::NoticeVote {
                        options: vec!["yes".into(), "no".into()],
                        deadline_ms: 9,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                admin: true,
            },
            MetaCommand::NoticeRead {
                notice_id: 2,
                user_id: 7,
                ack: true,
                at_ms: 9,
            },
            MetaCommand::NoticeVote {
                notice_id: 2,
                user_id: 7,
                choices: vec![0, 1],
                at_ms: 9,
            },
            MetaCommand::SetFavourite {
                user_id: 7,
                item: Favourite::Contact(8),
                on: true,
                at_ms: 9,
            },
            MetaCommand::SetFavourite {
                user_id: 7,
                item: Favourite::Message(crate::protocol::pb::MessageRef {
                    conversation: "g:4".into(),
                    seq: 3,
                }),
                on: false,
                at_ms: 9,
            },
            MetaCommand::Audited {
                command: Box::new(MetaCommand::DeleteUser { user_id: 7 }),
                audit: AuditRecord {
                    actor: 1,
                    action: "user.delete".into(),
                    detail: "{}".into(),
                    ..Default::default()
                },
            },
        ]
    }

    #[test]
    fn every_command_round_trips() {
        for command in commands() {
            let back = MetaCommand::from_wire(&command.to_wire()).unwrap();
            // The enums hold no PartialEq of their own: compare the encodings.
            assert_eq!(back.to_wire(), command.to_wire(), "{command:?}");
            assert_eq!(format!("{back:?}"), format!("{command:?}"));
        }
    }

    #[test]
    fn every_response_round_trips() {
        let responses = vec![
            MetaResponse::Done,
            MetaResponse::Partitions(64),
            MetaResponse::User(user()),
            MetaResponse::Group(GroupRecord::default()),
            MetaResponse::Replaced(None),
            MetaResponse::Replaced(Some(Vec::new())),
            MetaResponse::Replaced(Some(vec![9])),
            MetaResponse::Revoked(None),
            MetaResponse::Revoked(Some(TokenRecord::default())),
            MetaResponse::Department(DepartmentRecord::default()),
            MetaResponse::UserChanged {
                user: user(),
                revoked: vec![vec![1], vec![2]],
            },
            MetaResponse::Refused(Refusal::NotFound("no".into())),
            MetaResponse::Refused(Refusal::Conflict("taken".into())),
            MetaResponse::Refused(Refusal::Invalid("bad".into())),
            MetaResponse::Refused(Refusal::Forbidden("quota".into())),
            MetaResponse::Refused(Refusal::RateLimited("slow down".into())),
        ];
        for response in responses {
            let back = MetaResponse::from_wire(&response.to_wire()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{response:?}"));
        }
    }

    #[test]
    fn malformed_commands_are_errors() {
        assert!(MetaCommand::from_wire(&[0xff, 0x01]).is_err());
        assert!(MetaCommand::from_wire(&[]).is_err());
        let refusal = store_pb::MetaResponse {
            response: Some(Response::Refused(response::Refusal {
                code: ErrorCode::Internal as i32,
                message: "not a refusal".into(),
            })),
        };
        assert!(MetaResponse::try_from(refusal).is_err());
    }
}
