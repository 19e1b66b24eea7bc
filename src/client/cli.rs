//! `chorus client`: an interactive terminal chat client, and one-shot
//! subcommands for scripts (`send`, `history`, `conversations`, `read`,
//! `create-group`, `watch`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::files::Rest;
use super::{ClientError, ClientOptions, Connection, Event, TlsClientConfig, Transport};
use crate::protocol::{ConversationId, pb};

use pb::server_frame::Body as Resp;

/// Prints one line with every control and format character escaped
/// (`protocol::terminal_safe`): most of what the client prints comes from
/// the network, names, texts and errors alike, and must not drive the
/// terminal.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", crate::protocol::terminal_safe(&format!($($arg)*)))
    };
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransportArg {
    Tcp,
    Ws,
    WsJson,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Pc,
    Mobile,
    Web,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Node addresses, comma-separated: the TCP port for `tcp`, the HTTP port
    /// for `ws` and `ws-json`. The client uses the first that answers and
    /// moves to the next when its node goes away.
    #[arg(long, env = "CHORUS_SERVER", default_value = "127.0.0.1:7100")]
    pub server: String,
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: TransportArg,
    /// PEM file of the CA that signed the node's certificate (enables TLS).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Name to verify in the node's certificate.
    #[arg(long, default_value = "localhost")]
    pub tls_name: String,
    #[arg(long, short, env = "CHORUS_USER")]
    pub user: String,
    #[arg(
        long,
        short,
        env = "CHORUS_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub password: String,
    #[arg(long, value_enum, default_value = "pc")]
    pub device: DeviceArg,
    /// The HTTP address of a node, for files: by default the server in use
    /// with `ws` and `ws-json`, else 127.0.0.1:7180.
    #[arg(long, env = "CHORUS_HTTP")]
    pub http: Option<String>,
    #[command(subcommand)]
    pub command: Option<ClientCommand>,
}

/// What a sent message asks of its recipients.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SignArg {
    Confirm,
    Password,
}

impl From<SignArg> for pb::SignOff {
    fn from(arg: SignArg) -> Self {
        match arg {
            SignArg::Confirm => pb::SignOff::Confirm,
            SignArg::Password => pb::SignOff::Password,
        }
    }
}

/// What `chorus client space` does.
#[derive(Debug, Subcommand)]
pub enum SpaceAction {
    /// Lists a folder (default: the top).
    List {
        #[arg(long, default_value_t = 0)]
        folder: u64,
    },
    /// Makes a folder.
    Mkdir {
        name: String,
        #[arg(long = "in", default_value_t = 0)]
        parent: u64,
    },
    /// Uploads a file into a folder.
    Put {
        path: PathBuf,
        #[arg(long = "in", default_value_t = 0)]
        parent: u64,
    },
    /// Downloads a file (a cut download goes on from what `--out` holds).
    Get {
        entry: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Renames an entry.
    Rename { entry: u64, name: String },
    /// Moves an entry into a folder (0: the top).
    Mv { entry: u64, to: u64 },
    /// Deletes an entry (a folder only empty).
    Rm { entry: u64 },
}

impl SpaceAction {
    /// Runs the action against group `group`; returns the lines to print.
    async fn run(self, rest: &Rest, group: u64) -> Result<Vec<String>, ClientError> {
        let base = format!("/api/v1/groups/{group}/files");
        let entry_line = |e: &serde_json::Value| {
            let kind = if e["folder"].as_bool() == Some(true) {
                "folder".to_string()
            } else {
                format!("{} bytes, {} downloads", e["size"], e["downloads"])
            };
            format!(
                "#{} {} ({kind}, by user {})",
                e["entry_id"],
                crate::protocol::terminal_safe(e["name"].as_str().unwrap_or("")),
                e["uploader"]
            )
        };
        let done = |value: serde_json::Value| vec![entry_line(&value)];
        Ok(match self {
            SpaceAction::List { folder } => {
                let listing = rest
                    .call("GET", &format!("{base}?folder={folder}"), None)
                    .await
                    .map_err(rest_error)?;
                let entries = listing["entries"].as_array().cloned().unwrap_or_default();
                if entries.is_empty() {
                    vec!["(empty)".to_string()]
                } else {
                    entries.iter().map(entry_line).collect()
                }
            }
            SpaceAction::Mkdir { name, parent } => {
                let body = serde_json::json!({ "folder": name, "parent_id": parent });
                done(
                    rest.call("POST", &base, Some(&body))
                        .await
                        .map_err(rest_error)?,
                )
            }
            SpaceAction::Put { path, parent } => {
                let file = rest
                    .upload(&format!("g:{group}"), &path, |_, _| {})
                    .await
                    .map_err(rest_error)?;
                let body = serde_json::json!({ "file_id": file["file_id"], "parent_id": parent });
                done(
                    rest.call("POST", &base, Some(&body))
                        .await
                        .map_err(rest_error)?,
                )
            }
            SpaceAction::Get { entry, out } => {
                let out = out.unwrap_or_else(|| PathBuf::from(format!("space-{group}-{entry}")));
                let size = rest
                    .download_path(&format!("{base}/{entry}/content"), &out)
                    .await
                    .map_err(rest_error)?;
                vec![format!("saved {} ({size} bytes)", out.display())]
            }
            SpaceAction::Rename { entry, name } => {
                let body = serde_json::json!({ "name": name });
                done(
                    rest.call("PATCH", &format!("{base}/{entry}"), Some(&body))
                        .await
                        .map_err(rest_error)?,
                )
            }
            SpaceAction::Mv { entry, to } => {
                let body = serde_json::json!({ "parent_id": to });
                done(
                    rest.call("PATCH", &format!("{base}/{entry}"), Some(&body))
                        .await
                        .map_err(rest_error)?,
                )
            }
            SpaceAction::Rm { entry } => {
                rest.call("DELETE", &format!("{base}/{entry}"), None)
                    .await
                    .map_err(rest_error)?;
                vec![format!("deleted #{entry}")]
            }
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Sends one text message and prints its ack.
    Send {
        /// Account of the peer of a 1:1 conversation.
        #[arg(long, conflicts_with = "conversation")]
        to: Option<String>,
        /// Conversation id (`d:<a>:<b>` or `g:<id>`).
        #[arg(long)]
        conversation: Option<String>,
        /// Client message id; a resend with the same id is stored once.
        #[arg(long)]
        id: Option<String>,
        /// Every recipient must sign the message: with a confirmation, or
        /// by re-entering their password.
        #[arg(long, value_enum)]
        sign: Option<SignArg>,
        /// Burn after reading (1:1 only): the server deletes the message
        /// once its recipient read it, or this many seconds after sending.
        #[arg(long, value_name = "SECS", conflicts_with = "sign")]
        burn: Option<u64>,
        text: String,
    },
    /// Prints the history of a conversation, oldest first.
    History {
        #[arg(long, conflicts_with = "conversation")]
        with: Option<String>,
        #[arg(long)]
        conversation: Option<String>,
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Lists conversations with unread counts.
    Conversations,
    /// Marks a conversation read up to a seq (default: its newest message).
    Read {
        conversation: String,
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Recalls a message of a conversation by its seq.
    Recall { conversation: String, seq: u64 },
    /// Signs a message that requires sign-off.
    Sign {
        conversation: String,
        seq: u64,
        /// Sign with the login password (for a message that asks for it).
        #[arg(long)]
        with_password: bool,
    },
    /// Prints who received, read and signed a message.
    SignStatus { conversation: String, seq: u64 },
    /// Reminds the recipients of a message who have not signed it.
    Remind { conversation: String, seq: u64 },
    /// Creates a group with the given member accounts.
    CreateGroup { name: String, members: Vec<String> },
    /// Starts a temporary discussion (多人临时会话) with these accounts.
    Discuss { members: Vec<String> },
    /// Manages a group: its name, avatar, announcement, owner, admins,
    /// mutes, or dissolves it (prints the group after the change).
    Group {
        group_id: u64,
        #[command(subcommand)]
        action: GroupAction,
    },
    /// Sets do-not-disturb for a conversation (`--off` clears it).
    Dnd {
        conversation: String,
        #[arg(long)]
        off: bool,
    },
    /// Adds a favourite contact (常用联系人; `--off` removes it).
    FavContact {
        account: String,
        #[arg(long)]
        off: bool,
    },
    /// Adds a message to the favourites (收藏; `--off` removes it).
    FavMessage {
        conversation: String,
        seq: u64,
        #[arg(long)]
        off: bool,
    },
    /// Prints the favourite contacts and messages, newest first.
    Favourites {
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Notices (通知公告): sends one, reads or votes on one, or prints one's
    /// statistics.
    Notice {
        #[command(subcommand)]
        action: NoticeAction,
    },
    /// Prints this user's notices, newest first (`--sent`: those they sent).
    Notices {
        #[arg(long)]
        sent: bool,
    },
    /// Changes this user's password: --password is the current one. Every
    /// other session of the user ends. Works when the password must be
    /// changed (an administrator's reset, or it is older than the policy allows).
    Passwd {
        /// The new password, within the password policy (`chorus client password-policy`).
        new_password: String,
    },
    /// Uploads a file (resumably) and sends it; prints its ack.
    SendFile {
        /// Account of the peer of a 1:1 conversation.
        #[arg(long, conflicts_with = "conversation")]
        to: Option<String>,
        #[arg(long)]
        conversation: Option<String>,
        path: PathBuf,
    },
    /// Downloads the file of a message; a cut download goes on from what
    /// the output file holds.
    GetFile {
        conversation: String,
        seq: u64,
        /// Where to write it (default: the file's name, in this folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The image's thumbnail instead.
        #[arg(long)]
        thumbnail: bool,
    },
    /// A group's file space (群文件): list, make folders, upload, download,
    /// rename, move and delete.
    Space {
        group_id: u64,
        #[command(subcommand)]
        action: SpaceAction,
    },
    /// Finds messages of this user's conversations, newest first; with
    /// `--kind` and `--conversation` and no words, lists that conversation's
    /// files, images or links (the history manager).
    Search {
        /// Words or Chinese text; every part must match, "a phrase" in quotes.
        words: Vec<String>,
        #[arg(long)]
        conversation: Option<String>,
        /// Only messages of this account.
        #[arg(long)]
        sender: Option<String>,
        /// text, file, image or link.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Sent at or after / before these Unix ms.
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        #[arg(long, default_value_t = 0)]
        to_ms: i64,
        /// The cursor a previous page printed.
        #[arg(long, default_value = "")]
        cursor: String,
    },
    /// Prints the recent contacts, latest activity first.
    Recent {
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Prints pushes as they arrive, until `count` have arrived.
    Watch {
        #[arg(long)]
        count: Option<usize>,
    },
    #[command(flatten)]
    Account(super::account::AccountCommand),
}

#[derive(Debug, Subcommand)]
pub enum NoticeAction {
    /// Sends a notice to departments (with their sub-departments), groups
    /// and users.
    Send {
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        body: String,
        /// A department id (repeatable).
        #[arg(long = "dept")]
        departments: Vec<u64>,
        /// A group id (repeatable).
        #[arg(long = "group")]
        groups: Vec<u64>,
        /// A user's account (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// Recipients must acknowledge it.
        #[arg(long)]
        ack: bool,
        /// A vote option (repeatable: two or more make a vote).
        #[arg(long = "option")]
        options: Vec<String>,
        #[arg(long)]
        multiple: bool,
        #[arg(long)]
        anonymous: bool,
        /// Voting closes this many seconds after sending.
        #[arg(long)]
        deadline_secs: Option<u64>,
    },
    /// Marks a notice read (`--ack`: acknowledged too).
    Read {
        notice_id: u64,
        #[arg(long)]
        ack: bool,
    },
    /// Votes on a notice (option numbers, from 0).
    Vote { notice_id: u64, choices: Vec<u32> },
    /// Prints a notice's read and vote statistics.
    Stats { notice_id: u64 },
}

/// Returns the lines that show a notice.
fn notice_lines(notice: &pb::Notice) -> Vec<String> {
    let mut state = Vec::new();
    if notice.read_at_ms == 0 {
        state.push("unread".to_string());
    }
    if notice.must_ack {
        state.push(
            if notice.acked_at_ms == 0 {
                "to acknowledge"
            } else {
                "acknowledged"
            }
            .into(),
        );
    }
    let mut lines = vec![
        crate::protocol::terminal_safe(&format!(
            "notice #{} from user{}: {} [{}] ({} recipients)",
            notice.notice_id,
            notice.sender,
            notice.title,
            state.join(", "),
            notice.recipient_count
        ))
        .into_owned(),
    ];
    if !notice.body.is_empty() {
        lines.push(crate::protocol::terminal_safe(&format!("  {}", notice.body)).into_owned());
    }
    if let Some(vote) = &notice.vote {
        for (i, option) in vote.options.iter().enumerate() {
            let mine = if notice.my_choices.contains(&(i as u32)) {
                " *"
            } else {
                ""
            };
            let total = notice.totals.get(i).copied().unwrap_or(0);
            lines.push(
                crate::protocol::terminal_safe(&format!("  [{i}] {option}: {total}{mine}"))
                    .into_owned(),
            );
        }
    }
    lines
}

/// Returns the lines that show a notice's statistics.
fn stats_lines(stats: &pb::NoticeStats) -> Vec<String> {
    let mut lines = vec![format!(
        "notice #{}: read by {} of {}, acknowledged by {}, {} voted",
        stats.notice_id,
        stats.read_count,
        stats.recipient_count,
        stats.acked_count,
        stats.voter_count
    )];
    for d in &stats.departments {
        lines.push(
            crate::protocol::terminal_safe(&format!(
                "  department {} {}: read by {} of {}",
                d.department_id, d.name, d.read_count, d.recipient_count
            ))
            .into_owned(),
        );
    }
    if !stats.totals.is_empty() {
        lines.push(format!("  totals {:?}", stats.totals));
    }
    lines.push(format!("  unread {:?}", stats.unread));
    lines
}

impl NoticeAction {
    async fn run(self, conn: &Connection) -> Result<Vec<String>, ClientError> {
        Ok(match self {
            NoticeAction::Send {
                title,
                body,
                departments,
                groups,
                users,
                ack,
                options,
                multiple,
                anonymous,
                deadline_secs,
            } => {
                let mut ids = Vec::new();
                for account in &users {
                    ids.push(conn.lookup(account).await?.user_id);
                }
                let vote = (!options.is_empty()).then(|| pb::NoticeVote {
                    options,
                    multiple,
                    anonymous,
                    deadline_ms: deadline_secs
                        .map_or(0, |s| crate::protocol::now_ms() + (s as i64) * 1000),
                });
                let send = pb::SendNotice {
                    title,
                    body,
                    attachment: String::new(),
                    departments,
                    groups,
                    users: ids,
                    must_ack: ack,
                    vote,
                };
                let sent = conn.send_notice(send).await?;
                vec![format!(
                    "sent notice #{} to {} recipients",
                    sent.notice_id, sent.recipient_count
                )]
            }
            NoticeAction::Read { notice_id, ack } => {
                let read = conn.read_notice(notice_id, ack).await?;
                vec![format!(
                    "notice #{} read_at_ms={} acked_at_ms={}",
                    read.notice_id, read.read_at_ms, read.acked_at_ms
                )]
            }
            NoticeAction::Vote { notice_id, choices } => {
                notice_lines(&conn.vote_notice(notice_id, &choices).await?)
            }
            NoticeAction::Stats { notice_id } => {
                stats_lines(&conn.notice_stats(notice_id, 0).await?)
            }
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// Prints the group, with its announcement's read count.
    Show,
    Rename {
        name: String,
    },
    /// Sets the avatar's file id (empty removes it).
    Avatar {
        file_id: String,
    },
    /// Pins an announcement (empty removes it).
    Announce {
        text: String,
    },
    /// Makes a member (by account) the owner.
    Transfer {
        account: String,
    },
    /// Names a member (by account) an admin, or with `--off` no longer.
    Admin {
        account: String,
        #[arg(long)]
        off: bool,
    },
    /// Mutes a member (by account), or with `--off` lets them speak.
    Mute {
        account: String,
        #[arg(long)]
        off: bool,
    },
    /// Mutes the whole group but its owner and admins (`--off` ends it).
    MuteAll {
        #[arg(long)]
        off: bool,
    },
    /// Dissolves the group.
    Dissolve {
        /// Members keep reading its history.
        #[arg(long)]
        keep_history: bool,
    },
    /// Turns a temporary discussion into a permanent group with this name.
    Permanent {
        name: String,
    },
    /// Leaves the group (the last to leave a discussion dissolves it).
    Leave,
}

impl GroupAction {
    /// Returns the protocol's change, looking accounts up; `None` for `Show`.
    async fn change(
        self,
        conn: &Connection,
    ) -> Result<Option<pb::group_change::Change>, ClientError> {
        use pb::group_change::Change;
        let flag = |user_id, off: bool| pb::MemberFlag { user_id, on: !off };
        Ok(Some(match self {
            GroupAction::Show => return Ok(None),
            GroupAction::Rename { name } => Change::Rename(name),
            GroupAction::Avatar { file_id } => Change::Avatar(file_id),
            GroupAction::Announce { text } => Change::Announcement(text),
            GroupAction::Transfer { account } => {
                Change::TransferOwner(conn.lookup(&account).await?.user_id)
            }
            GroupAction::Admin { account, off } => {
                Change::SetAdmin(flag(conn.lookup(&account).await?.user_id, off))
            }
            GroupAction::Mute { account, off } => {
                Change::MuteMember(flag(conn.lookup(&account).await?.user_id, off))
            }
            GroupAction::MuteAll { off } => Change::MuteAll(!off),
            GroupAction::Dissolve { keep_history } => {
                Change::Dissolve(pb::Dissolve { keep_history })
            }
            GroupAction::Permanent { name } => Change::MakePermanent(name),
            GroupAction::Leave => return Ok(None),
        }))
    }
}

/// Prints a group: one `key=value` line, then its announcement if any.
fn print_group(group: &pb::GroupInfo) {
    say!(
        "group {} {:?}{} owner={} admins={:?} members={:?} muted={:?} mute_all={} avatar={:?} dissolved={}",
        group.conversation,
        group.name,
        if group.temporary { " (temporary)" } else { "" },
        group.owner,
        group.admins,
        group.members,
        group.muted,
        group.mute_all,
        group.avatar,
        group.dissolved_at_ms != 0
    );
    if let Some(a) = &group.announcement {
        say!(
            "announcement #{} by {} read_count={}: {}",
            a.seq,
            a.by,
            a.read_count,
            a.text
        );
    }
}

impl ClientArgs {
    /// Returns the options of each listed node, in order.
    fn options(&self) -> Result<Vec<ClientOptions>, ClientError> {
        let transport = match self.transport {
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Ws => Transport::WsBinary,
            TransportArg::WsJson => Transport::WsJson,
        };
        let tls = match &self.tls_ca {
            Some(ca) => Some(TlsClientConfig::from_pem_file(ca, &self.tls_name)?),
            None => None,
        };
        let servers: Vec<ClientOptions> = self
            .server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|server| {
                let mut options = ClientOptions::new(server, transport);
                options.tls = tls.clone();
                options
            })
            .collect();
        if servers.is_empty() {
            return Err(ClientError::Unexpected("--server names no address".into()));
        }
        Ok(servers)
    }

    /// Returns the REST options for files: `--http`, or the server in use
    /// over WebSocket, or the default HTTP port.
    fn http_options(&self, servers: &[ClientOptions], at: usize) -> ClientOptions {
        let addr = match (&self.http, self.transport) {
            (Some(http), _) => http.clone(),
            (None, TransportArg::Ws | TransportArg::WsJson) => servers[at].addr.clone(),
            (None, TransportArg::Tcp) => "127.0.0.1:7180".to_string(),
        };
        let mut options = ClientOptions::new(addr, Transport::WsBinary);
        options.tls = servers[at].tls.clone();
        options
    }

    fn device_class(&self) -> pb::DeviceClass {
        match self.device {
            DeviceArg::Pc => pb::DeviceClass::Pc,
            DeviceArg::Mobile => pb::DeviceClass::Mobile,
            DeviceArg::Web => pb::DeviceClass::Web,
        }
    }
}

/// Runs `chorus client`.
pub async fn run(args: ClientArgs) -> Result<(), ClientError> {
    let servers = args.options()?;
    let (conn, at) = connect_any(&servers, 0).await?;
    let session = conn
        .login(&args.user, &args.password, args.device_class())
        .await?;
    if session.must_change_password && !matches!(args.command, Some(ClientCommand::Passwd { .. })) {
        return Err(ClientError::Unexpected(format!(
            "the password of {} must be changed first: chorus client --user {} --password \
             <current> passwd <new>",
            args.user, args.user
        )));
    }
    let mut names = Names::default();
    let rest = Rest {
        options: args.http_options(&servers, at),
        token: session.token.clone(),
    };
    match args.command {
        None => {
            Interactive::new(servers, at, conn, session, rest)
                .run()
                .await
        }
        Some(ClientCommand::SendFile {
            to,
            conversation,
            path,
        }) => {
            let conversation = resolve(&conn, to.as_deref(), conversation).await?;
            let ack = send_file(&conn, &rest, &conversation, &path).await?;
            say!(
                "sent {} seq={} id={}",
                ack.conversation,
                ack.seq,
                ack.message_id
            );
            Ok(())
        }
        Some(ClientCommand::Account(command)) => {
            for line in command.run(&conn, &rest).await? {
                println!("{}", crate::protocol::terminal_safe(&line));
            }
            Ok(())
        }
        Some(ClientCommand::Passwd { new_password }) => {
            change_password(&rest, &args.password, &new_password).await?;
            say!(
                "password changed; the other sessions of {} ended",
                args.user
            );
            Ok(())
        }
        Some(ClientCommand::Space { group_id, action }) => {
            for line in action.run(&rest, group_id).await? {
                println!("{line}");
            }
            Ok(())
        }
        Some(ClientCommand::GetFile {
            conversation,
            seq,
            out,
            thumbnail,
        }) => {
            let (out, size) = get_file(&conn, &rest, &conversation, seq, out, thumbnail).await?;
            say!("saved {} ({size} bytes)", out.display());
            Ok(())
        }
        Some(ClientCommand::Send {
            to,
            conversation,
            id,
            sign,
            burn,
            text,
        }) => {
            let conversation = resolve(&conn, to.as_deref(), conversation).await?;
            let id = id.unwrap_or_else(new_client_msg_id);
            let content = pb::content::Kind::Text(pb::TextContent {
                text,
                ..Default::default()
            });
            let ack = match burn {
                Some(secs) => conn.send_burning(&conversation, &id, content, secs).await?,
                None => {
                    let sign_off = sign.map_or(pb::SignOff::None, pb::SignOff::from);
                    conn.send_message_with(&conversation, &id, content, sign_off)
                        .await?
                }
            };
            say!(
                "sent {} seq={} id={} duplicate={}",
                ack.conversation,
                ack.seq,
                ack.message_id,
                ack.duplicate
            );
            Ok(())
        }
        Some(ClientCommand::History {
            with,
            conversation,
            after,
        }) => {
            let conversation = resolve(&conn, with.as_deref(), conversation).await?;
            for message in conn.pull_all(&conversation, after).await? {
                println!("{}", names.render(&conn, &message).await);
            }
            Ok(())
        }
        Some(ClientCommand::Conversations) => {
            for state in conn.sync().await?.conversations {
                say!(
                    "{}\t{}\tunread={}\tmax_seq={}\tdnd={}\tmentioned={}",
                    state.conversation,
                    state.title,
                    state.unread,
                    state.max_seq,
                    state.dnd,
                    state.mentioned
                );
            }
            Ok(())
        }
        Some(ClientCommand::Group { group_id, action }) => {
            let leave = matches!(action, GroupAction::Leave);
            let group = match action.change(&conn).await? {
                Some(change) => conn.update_group(group_id, change).await?,
                None if leave => conn.leave_group(group_id, session.user_id).await?,
                None => conn.get_group(group_id).await?,
            };
            print_group(&group);
            Ok(())
        }
        Some(ClientCommand::Dnd { conversation, off }) => {
            let settings = conn.set_dnd(&conversation, !off).await?;
            say!("{} dnd={}", settings.conversation, settings.dnd);
            Ok(())
        }
        Some(ClientCommand::FavContact { account, off }) => {
            let contact = conn.lookup(&account).await?.user_id;
            let item = pb::set_favourite::Item::Contact(contact);
            say!("{}", changed_line(&conn.set_favourite(item, !off).await?));
            Ok(())
        }
        Some(ClientCommand::FavMessage {
            conversation,
            seq,
            off,
        }) => {
            let item = pb::set_favourite::Item::Message(pb::MessageRef { conversation, seq });
            say!("{}", changed_line(&conn.set_favourite(item, !off).await?));
            Ok(())
        }
        Some(ClientCommand::Favourites { offset }) => {
            let favourites = conn.favourites(0, offset).await?;
            for line in favourite_lines(&conn, &mut names, &favourites).await {
                println!("{line}");
            }
            Ok(())
        }
        Some(ClientCommand::Notice { action }) => {
            for line in action.run(&conn).await? {
                println!("{line}");
            }
            Ok(())
        }
        Some(ClientCommand::Notices { sent }) => {
            for notice in conn.notices(0, 0, sent).await?.notices {
                for line in notice_lines(&notice) {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Some(ClientCommand::Search {
            words,
            conversation,
            sender,
            kind,
            limit,
            from_ms,
            to_ms,
            cursor,
        }) => {
            let sender = match sender {
                Some(account) => conn.lookup(&account).await?.user_id,
                None => 0,
            };
            let request = pb::SearchRequest {
                query: words.join(" "),
                conversation: conversation.unwrap_or_default(),
                sender,
                from_ms,
                to_ms,
                kind: search_kind(kind.as_deref())? as i32,
                limit,
                cursor,
            };
            for line in search_lines(&conn.search(request).await?) {
                println!("{line}");
            }
            Ok(())
        }
        Some(ClientCommand::Recent { limit }) => {
            for contact in conn.recent_contacts(limit).await?.contacts {
                say!("{}", recent_line(&contact));
            }
            Ok(())
        }
        Some(ClientCommand::Read { conversation, seq }) => {
            let seq = match seq {
                Some(seq) => seq,
                None => conn.pull(&conversation, u64::MAX - 1, 1).await?.max_seq,
            };
            let ack = conn.mark_read(&conversation, seq).await?;
            say!("read {} up to {}", ack.conversation, ack.read_seq);
            Ok(())
        }
        Some(ClientCommand::Recall { conversation, seq }) => {
            let ack = conn.recall(&conversation, seq).await?;
            say!(
                "recalled {} #{} notice=#{} duplicate={}",
                ack.conversation,
                ack.seq,
                ack.notice_seq,
                ack.duplicate
            );
            Ok(())
        }
        Some(ClientCommand::Sign {
            conversation,
            seq,
            with_password,
        }) => {
            let password = if with_password {
                args.password.as_str()
            } else {
                ""
            };
            let ack = conn.sign(&conversation, seq, password).await?;
            say!(
                "signed {} #{} at={} duplicate={}",
                ack.conversation,
                ack.seq,
                ack.signed_at_ms,
                ack.duplicate
            );
            Ok(())
        }
        Some(ClientCommand::SignStatus { conversation, seq }) => {
            let status = conn.sign_status(&conversation, seq).await?;
            for line in sign_status_lines(&mut names, &conn, &status).await {
                say!("{line}");
            }
            Ok(())
        }
        Some(ClientCommand::Remind { conversation, seq }) => {
            let reminded = conn.remind(&conversation, seq).await?;
            say!(
                "reminded {} of {} #{}",
                reminded.user_ids.len(),
                reminded.conversation,
                reminded.seq
            );
            Ok(())
        }
        Some(ClientCommand::Discuss { members }) => {
            let mut ids = Vec::new();
            for account in &members {
                ids.push(conn.lookup(account).await?.user_id);
            }
            print_group(&conn.start_discussion(&ids).await?);
            Ok(())
        }
        Some(ClientCommand::CreateGroup { name, members }) => {
            let mut ids = Vec::new();
            for account in &members {
                ids.push(conn.lookup(account).await?.user_id);
            }
            let group = conn.create_group(&name, &ids).await?;
            say!(
                "created {} {:?} members={:?}",
                group.conversation,
                group.name,
                group.members
            );
            Ok(())
        }
        Some(ClientCommand::Watch { count }) => {
            let mut conn = conn;
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                match conn.next_event().await {
                    Some(Event::Push(frame)) => {
                        if let Some(Resp::Message(message)) = &frame.body {
                            println!("{}", names.render(&conn, message).await);
                        } else {
                            say!("{}", serde_json::to_string(&frame).unwrap_or_default());
                        }
                        seen += 1;
                    }
                    Some(Event::Closed { reason, .. }) => {
                        say!("closed: {reason}");
                        return Err(ClientError::Closed);
                    }
                    None => return Err(ClientError::Closed),
                }
            }
            Ok(())
        }
    }
}

/// Connects to the first node that answers, trying them in turn from `start`.
async fn connect_any(
    servers: &[ClientOptions],
    start: usize,
) -> Result<(Connection, usize), ClientError> {
    let mut last = ClientError::Closed;
    for offset in 0..servers.len() {
        let at = (start + offset) % servers.len();
        match Connection::connect(&servers[at]).await {
            Ok(conn) => return Ok((conn, at)),
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn new_client_msg_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("cli-{nanos:x}-{:x}", rand::random::<u32>())
}

/// Returns the conversation named by a peer account or given as an id.
async fn resolve(
    conn: &Connection,
    peer: Option<&str>,
    conversation: Option<String>,
) -> Result<String, ClientError> {
    match (peer, conversation) {
        (Some(peer), _) => {
            let user = conn.lookup(peer).await?;
            if user.direct_conversation.is_empty() {
                return Err(ClientError::Unexpected(
                    "cannot open a conversation with yourself".into(),
                ));
            }
            Ok(user.direct_conversation)
        }
        (None, Some(conversation)) => Ok(conversation),
        (None, None) => Err(ClientError::Unexpected(
            "name a peer (--to/--with) or a --conversation".into(),
        )),
    }
}

/// Caches account names by user id.
#[derive(Default)]
struct Names(HashMap<u64, String>);

impl Names {
    async fn name(&mut self, conn: &Connection, user: u64) -> String {
        if let Some(name) = self.0.get(&user) {
            return name.clone();
        }
        let lookup = pb::LookupUser {
            account: String::new(),
            user_id: user,
        };
        let name = match conn
            .request(pb::client_frame::Body::LookupUser(lookup))
            .await
        {
            Ok(Resp::User(info)) => info.account,
            _ => format!("user{user}"),
        };
        self.0.insert(user, name.clone());
        name
    }

    /// Returns the line that shows `message`, escaped for the terminal.
    async fn render(&mut self, conn: &Connection, message: &pb::Message) -> String {
        let sender = self.name(conn, message.sender).await;
        message_line(&sender, message)
    }
}

/// Returns the line that tells what a favourite's change did.
fn changed_line(changed: &pb::FavouriteChanged) -> String {
    let what = match &changed.item {
        Some(pb::favourite_changed::Item::Contact(user)) => format!("contact user{user}"),
        Some(pb::favourite_changed::Item::Message(m)) => {
            format!("message {} #{}", m.conversation, m.seq)
        }
        None => "nothing".to_string(),
    };
    let state = if changed.on { "favourite" } else { "removed" };
    format!("{what}: {state}")
}

/// Returns the lines that show a user's favourites (escaped).
async fn favourite_lines(
    conn: &Connection,
    names: &mut Names,
    favourites: &pb::Favourites,
) -> Vec<String> {
    let mut lines = vec![format!("contacts ({}):", favourites.contacts.len())];
    for contact in &favourites.contacts {
        lines.push(
            crate::protocol::terminal_safe(&format!(
                "  {} ({})",
                contact.account, contact.display_name
            ))
            .into_owned(),
        );
    }
    lines.push(format!("messages ({}):", favourites.message_count));
    for favourite in &favourites.messages {
        let shown = match &favourite.message {
            Some(message) => names.render(conn, message).await,
            None => "[no longer readable]".to_string(),
        };
        // `shown` is escaped already; conversation ids are plain ASCII.
        lines.push(format!("  {} {shown}", favourite.conversation));
    }
    lines
}

/// Parses a search kind's name.
fn search_kind(name: Option<&str>) -> Result<pb::SearchKind, ClientError> {
    match name.unwrap_or("any") {
        "any" => Ok(pb::SearchKind::Any),
        "text" => Ok(pb::SearchKind::Text),
        "file" | "files" => Ok(pb::SearchKind::File),
        "image" | "images" => Ok(pb::SearchKind::Image),
        "link" | "links" => Ok(pb::SearchKind::Link),
        other => Err(ClientError::Unexpected(format!(
            "unknown kind {other}: text, file, image or link"
        ))),
    }
}

/// Returns the lines that show a page of search hits, each match in
/// brackets, and the cursor of the next page.
fn search_lines(result: &pb::SearchResult) -> Vec<String> {
    let mut lines = Vec::new();
    for hit in &result.hits {
        let Some(message) = &hit.message else {
            continue;
        };
        let chars: Vec<char> = hit.fragment.chars().collect();
        let mut shown = String::new();
        let mut at = 0usize;
        for range in &hit.highlights {
            let (start, end) = (range.start as usize, (range.end as usize).min(chars.len()));
            if start < at || start > end {
                continue;
            }
            shown.extend(&chars[at..start]);
            shown.push('[');
            shown.extend(&chars[start..end]);
            shown.push(']');
            at = end;
        }
        shown.extend(&chars[at.min(chars.len())..]);
        let line = format!(
            "{} #{} user{} {}: {}",
            message.conversation, message.seq, message.sender, message.server_time_ms, shown
        );
        lines.push(crate::protocol::terminal_safe(&line).into_owned());
        for link in &hit.links {
            lines.push(crate::protocol::terminal_safe(&format!("  {link}")).into_owned());
        }
    }
    if result.hits.is_empty() {
        lines.push("no match".to_string());
    }
    if !result.next_cursor.is_empty() {
        lines.push(format!("more: --cursor {}", result.next_cursor));
    }
    lines
}

/// Returns the line that shows a recent contact.
fn recent_line(contact: &pb::RecentContact) -> String {
    format!(
        "{}\t{}\t{}\tlast_activity_ms={}",
        contact.account, contact.display_name, contact.conversation, contact.last_activity_ms
    )
}

/// Returns the line that shows `message` from `sender`, with every control
/// and format character of it escaped (`protocol::terminal_safe`).
fn message_line(sender: &str, message: &pb::Message) -> String {
    let body = match message.content.as_ref().and_then(|c| c.kind.as_ref()) {
        Some(pb::content::Kind::Text(text)) => text.text.clone(),
        Some(pb::content::Kind::Emoji(emoji)) => emoji.code.clone(),
        Some(pb::content::Kind::File(file)) => {
            let what = if file.image { "image" } else { "file" };
            format!(
                "[{what} {} {} bytes: /get {}]",
                file.name, file.size, message.seq
            )
        }
        Some(pb::content::Kind::Recalled(_)) => "[recalled]".to_string(),
        Some(pb::content::Kind::RecallNotice(notice)) => {
            format!("[recalled #{}]", notice.seq)
        }
        Some(pb::content::Kind::Burned(_)) => "[burned]".to_string(),
        Some(pb::content::Kind::BurnNotice(notice)) => {
            let seqs: Vec<String> = notice.seqs.iter().map(|s| format!("#{s}")).collect();
            format!("[burned {}]", seqs.join(" "))
        }
        None => String::new(),
    };
    let burn = if message.burn_after_secs > 0
        && !matches!(
            message.content.as_ref().and_then(|c| c.kind.as_ref()),
            Some(pb::content::Kind::Burned(_))
        ) {
        format!(
            " [burns after reading, or in {} s]",
            message.burn_after_secs
        )
    } else {
        String::new()
    };
    let reads = if message.read_count > 0 {
        format!(" ({} read)", message.read_count)
    } else {
        String::new()
    };
    let sign = match pb::SignOff::try_from(message.sign_off) {
        Ok(pb::SignOff::None) | Err(_) => "",
        _ if message.signed_at_ms > 0 => " [signed]",
        Ok(pb::SignOff::Confirm) => " [to sign: /sign]",
        Ok(pb::SignOff::Password) => " [to sign with password: /sign <seq> <password>]",
    };
    let line = format!(
        "[{} #{}] {}: {}{}{}{}",
        message.conversation, message.seq, sender, body, reads, sign, burn
    );
    crate::protocol::terminal_safe(&line).into_owned()
}

/// Returns the lines that show a message's sign-off status: the counts,
/// then one line per recipient.
async fn sign_status_lines(
    names: &mut Names,
    conn: &Connection,
    status: &pb::SignStatus,
) -> Vec<String> {
    let mut lines = vec![format!(
        "{} #{}: {} recipients, {} delivered, {} read, {} signed",
        status.conversation,
        status.seq,
        status.recipient_count,
        status.delivered_count,
        status.read_count,
        status.signed_count
    )];
    for recipient in &status.recipients {
        let name = names.name(conn, recipient.user_id).await;
        let state = if recipient.signed {
            format!("signed at {}", recipient.signed_at_ms)
        } else if recipient.read {
            "read".to_string()
        } else if recipient.delivered {
            "delivered".to_string()
        } else {
            "not delivered".to_string()
        };
        lines.push(crate::protocol::terminal_safe(&format!("  {name}: {state}")).into_owned());
    }
    lines
}

fn rest_error(err: super::status::StatusError) -> ClientError {
    ClientError::Unexpected(err.to_string())
}

/// Changes the signed-in user's password (PUT /api/v1/me/password).
async fn change_password(rest: &Rest, current: &str, new: &str) -> Result<(), ClientError> {
    let body = serde_json::json!({ "current_password": current, "new_password": new });
    rest.call("PUT", "/api/v1/me/password", Some(&body))
        .await
        .map_err(rest_error)?;
    Ok(())
}

/// Uploads the file at `path` and sends it to `conversation`.
async fn send_file(
    conn: &Connection,
    rest: &Rest,
    conversation: &str,
    path: &Path,
) -> Result<pb::SendAck, ClientError> {
    let file = rest
        .upload(conversation, path, |sent, size| {
            tracing::debug!(sent, size, "upload progress")
        })
        .await
        .map_err(rest_error)?;
    let file_id = file["file_id"].as_str().ok_or_else(|| {
        ClientError::Unexpected(format!("a completed upload without an id: {file}"))
    })?;
    let content = pb::content::Kind::File(pb::FileContent {
        file_id: file_id.to_string(),
        ..Default::default()
    });
    conn.send_message(conversation, &new_client_msg_id(), content)
        .await
}

/// Downloads the file of message `seq` into `out` (default: the file's
/// name, which the message gives, in this folder); returns where and its size.
async fn get_file(
    conn: &Connection,
    rest: &Rest,
    conversation: &str,
    seq: u64,
    out: Option<PathBuf>,
    thumbnail: bool,
) -> Result<(PathBuf, u64), ClientError> {
    let out = match out {
        Some(out) => out,
        None => {
            let page = conn.pull(conversation, seq.saturating_sub(1), 1).await?;
            let name = page
                .messages
                .iter()
                .find(|m| m.seq == seq)
                .and_then(|m| match m.content.as_ref()?.kind.as_ref()? {
                    pb::content::Kind::File(file) => Some(file.name.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    ClientError::Unexpected(format!(
                        "message {seq} of {conversation} carries no file"
                    ))
                })?;
            // The name is the sender's: keep only its last part, never a path.
            let name = Path::new(&name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("file-{seq}"));
            PathBuf::from(if thumbnail {
                format!("thumbnail-{name}")
            } else {
                name
            })
        }
    };
    let size = rest
        .download(conversation, seq, thumbnail, &out)
        .await
        .map_err(rest_error)?;
    Ok((out, size))
}

const HELP: &str =
    "commands: /list  /open <account|conversation>  /history  /group <name> <account>...  /receipts
          /recall <seq>  /must <text>  /sign <seq> [password]  /signs <seq>  /remind <seq>
          /burn <secs> <text> (1:1: burns after reading, or in secs)
          /fav <seq> [off]  /favcontact <account> [off]  /favs  /recent
          /notices  /nread <id> [ack]  /nvote <id> <option>...  /nstats <id>
          /search <text> (every conversation)  /files  /images  /links (the open one)
          /send-file <path>  /get <seq> [path]  /forward <seq> <account|conversation>
          /space [folder] (a group's files; `chorus client space` changes them)
          /status <online|busy|away>  /watch <account>...  /passwd <current> <new>
          /profile [phone|email|mobile <value>]  /card <account>  /contacts <text>  /help  /quit
  groups: /info  /rename <name>  /announce <text>  /admin <account> [off]  /transfer <account>
          /mute <account> [off]  /muteall [off]  /dissolve [keep]  /leave  /permanent <name>
          /discuss <account>... (a temporary discussion)   any conversation: /dnd [off]
anything else is sent to the open conversation (\"@all\" in it mentions everyone)";

/// The interactive client: keeps a cursor per conversation, prints pushes,
/// and on a lost connection resumes its session and pulls what it missed.
struct Interactive {
    servers: Vec<ClientOptions>,
    /// Index in `servers` of the node this client is connected to.
    at: usize,
    conn: Connection,
    session: pb::Session,
    names: Names,
    /// Highest seq shown per conversation.
    cursors: BTreeMap<String, u64>,
    current: Option<String>,
    /// Users whose presence this client watches (again after a reconnect).
    watching: Vec<u64>,
    /// The REST API, for files.
    rest: Rest,
}

impl Interactive {
    fn new(
        servers: Vec<ClientOptions>,
        at: usize,
        conn: Connection,
        session: pb::Session,
        rest: Rest,
    ) -> Self {
        Interactive {
            rest,
            servers,
            at,
            conn,
            session,
            names: Names::default(),
            cursors: BTreeMap::new(),
            current: None,
            watching: Vec::new(),
        }
    }

    async fn run(mut self) -> Result<(), ClientError> {
        say!(
            "logged in as {} (user {}).",
            self.session.account,
            self.session.user_id
        );
        println!("{HELP}");
        self.catch_up(false).await?;
        self.list().await?;
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(u64::from(
            self.session.heartbeat_secs.max(1),
        )));
        loop {
            tokio::select! {
                line = stdin.next_line() => {
                    let Ok(Some(line)) = line else { return Ok(()) };
                    match self.command(line.trim()).await {
                        Ok(true) => return Ok(()),
                        Ok(false) => {}
                        Err(err) => say!("error: {err}"),
                    }
                }
                event = self.conn.next_event() => match event {
                    Some(Event::Push(frame)) => self.push(frame).await,
                    Some(Event::Closed { reason, .. }) => {
                        say!("connection lost ({reason}); reconnecting");
                        self.reconnect().await?;
                    }
                    None => self.reconnect().await?,
                },
                _ = heartbeat.tick() => { let _ = self.conn.ping().await; }
            }
        }
    }

    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::time::sleep(delay).await;
            // Start with the next node: the last one just went away.
            match connect_any(&self.servers, self.at + 1).await {
                Ok((conn, at)) => match conn.resume(&self.session.token).await {
                    Ok(_) => {
                        self.conn = conn;
                        self.at = at;
                        say!("reconnected to {}", self.servers[at].addr);
                        if !self.watching.is_empty() {
                            let list = self.conn.watch_presence(&self.watching, false).await?;
                            self.show_presence(&list.users).await;
                        }
                        return self.catch_up(true).await;
                    }
                    Err(err @ ClientError::Server(_)) => {
                        say!("cannot resume the session: {err}");
                        return Err(err);
                    }
                    Err(_) => {}
                },
                Err(err) => say!("reconnect failed: {err}"),
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Pulls every conversation past its cursor; prints what is new when `show`.
    async fn catch_up(&mut self, show: bool) -> Result<(), ClientError> {
        for state in self.conn.sync().await?.conversations {
            let cursor = *self.cursors.get(&state.conversation).unwrap_or(&if show {
                0
            } else {
                state.max_seq
            });
            if state.max_seq > cursor {
                for message in self.conn.pull_all(&state.conversation, cursor).await? {
                    self.show(message).await;
                }
            }
            self.cursors
                .entry(state.conversation)
                .or_insert(state.max_seq);
        }
        Ok(())
    }

    /// Prints a message once (by seq) and marks it read when its conversation is open.
    async fn show(&mut self, message: pb::Message) {
        let cursor = self
            .cursors
            .entry(message.conversation.clone())
            .or_insert(0);
        if message.seq <= *cursor {
            return;
        }
        *cursor = message.seq;
        println!("{}", self.names.render(&self.conn, &message).await);
        if self.current.as_deref() == Some(message.conversation.as_str()) {
            let _ = self
                .conn
                .mark_read(&message.conversation, message.seq)
                .await;
        }
    }

    async fn push(&mut self, frame: pb::ServerFrame) {
        match frame.body {
            Some(Resp::Message(message)) => {
                let cursor = *self.cursors.get(&message.conversation).unwrap_or(&0);
                if message.seq > cursor + 1 {
                    // A gap: the log is the truth, pull what is missing.
                    if let Ok(missing) = self.conn.pull_all(&message.conversation, cursor).await {
                        for m in missing {
                            self.show(m).await;
                        }
                        return;
                    }
                }
                self.show(message).await;
            }
            Some(Resp::ReadReceipt(receipt)) => {
                let reader = self.names.name(&self.conn, receipt.reader).await;
                say!(
                    "  ({reader} read {} up to #{})",
                    receipt.conversation,
                    receipt.read_seq
                );
            }
            Some(Resp::ReadSync(sync)) => say!(
                "  (read {} up to #{} on another device)",
                sync.conversation,
                sync.read_seq
            ),
            Some(Resp::Kicked(kicked)) => {
                say!("session ended by the server: {}", kicked.reason)
            }
            Some(Resp::Presence(event)) => {
                self.show_presence(&event.presence.into_iter().collect::<Vec<_>>())
                    .await
            }
            Some(Resp::Signed(event)) => {
                let signer = self.names.name(&self.conn, event.user_id).await;
                say!("  ({signer} signed {} #{})", event.conversation, event.seq);
            }
            Some(Resp::SignReminder(reminder)) => {
                let from = self.names.name(&self.conn, reminder.from).await;
                say!(
                    "  ({from} asks you to sign {} #{}: /sign {})",
                    reminder.conversation,
                    reminder.seq,
                    reminder.seq
                );
            }
            Some(Resp::GroupEvent(event)) => {
                let by = self.names.name(&self.conn, event.by).await;
                let name = event
                    .group
                    .as_ref()
                    .map(|g| g.name.clone())
                    .unwrap_or_default();
                say!("  ({by} changed group {name:?}: {})", event.change);
            }
            Some(Resp::Notice(notice)) => {
                for line in notice_lines(&notice) {
                    println!("  {line}");
                }
                say!("  (/nread {} to read it)", notice.notice_id);
            }
            Some(Resp::FavouriteChanged(changed)) => {
                say!("  ({} on another device)", changed_line(&changed))
            }
            Some(Resp::ConversationSettings(settings)) => say!(
                "  ({} dnd={} set on another device)",
                settings.conversation,
                settings.dnd
            ),
            Some(Resp::Error(err)) => say!("server error: {}", err.message),
            _ => {}
        }
    }

    async fn show_presence(&mut self, users: &[pb::Presence]) {
        for presence in users {
            let name = self.names.name(&self.conn, presence.user_id).await;
            let status = pb::PresenceStatus::try_from(presence.status)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("PRESENCE_STATUS_")
                        .to_lowercase()
                })
                .unwrap_or_else(|_| "unknown".to_string());
            say!("  ({name} is {status})");
        }
    }

    async fn list(&mut self) -> Result<(), ClientError> {
        let sync = self.conn.sync().await?;
        if sync.conversations.is_empty() {
            say!("no conversations yet: /open <account> to start one");
        }
        for state in sync.conversations {
            say!(
                "  {:<16} {:<24} unread {}{}{}",
                state.conversation,
                state.title,
                state.unread,
                if state.mentioned { "  [@you]" } else { "" },
                if state.dnd { "  [dnd]" } else { "" }
            );
        }
        Ok(())
    }

    /// Returns the open conversation.
    fn open_conversation(&self) -> Result<String, ClientError> {
        self.current
            .clone()
            .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))
    }

    /// Runs one line of input; returns true to quit.
    async fn command(&mut self, line: &str) -> Result<bool, ClientError> {
        let mut words = line.split_whitespace();
        match words.next() {
            None => {}
            Some("/quit") => return Ok(true),
            Some("/help") => println!("{HELP}"),
            Some("/list") => self.list().await?,
            Some("/open") => {
                let target = words.next().ok_or_else(|| {
                    ClientError::Unexpected("/open <account|conversation>".into())
                })?;
                let conversation = if target.parse::<ConversationId>().is_ok() {
                    target.to_string()
                } else {
                    resolve(&self.conn, Some(target), None).await?
                };
                self.current = Some(conversation.clone());
                let page = self.conn.pull(&conversation, 0, 0).await?;
                let from = page.max_seq.saturating_sub(20);
                for message in self.conn.pull_all(&conversation, from).await? {
                    println!("{}", self.names.render(&self.conn, &message).await);
                }
                self.cursors.insert(conversation.clone(), page.max_seq);
                if page.max_seq > 0 {
                    self.conn.mark_read(&conversation, page.max_seq).await?;
                }
                say!("now talking in {conversation}");
            }
            Some("/history") => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                for message in self.conn.pull_all(&conversation, 0).await? {
                    println!("{}", self.names.render(&self.conn, &message).await);
                }
            }
            Some("/recall") => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let seq = words
                    .next()
                    .and_then(|w| w.trim_start_matches('#').parse::<u64>().ok())
                    .ok_or_else(|| ClientError::Unexpected("/recall <seq>".into()))?;
                let ack = self.conn.recall(&conversation, seq).await?;
                // No push of the notice comes to this connection, as for a send.
                let cursor = self.cursors.entry(conversation).or_insert(0);
                if ack.notice_seq == *cursor + 1 {
                    *cursor = ack.notice_seq;
                }
                say!("  (recalled #{}, notice #{})", ack.seq, ack.notice_seq);
            }
            Some(cmd @ ("/sign" | "/signs" | "/remind")) => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let seq = words
                    .next()
                    .and_then(|w| w.trim_start_matches('#').parse::<u64>().ok())
                    .ok_or_else(|| ClientError::Unexpected(format!("{cmd} <seq>")))?;
                match cmd {
                    "/sign" => {
                        let password = words.next().unwrap_or("");
                        let ack = self.conn.sign(&conversation, seq, password).await?;
                        say!("  (signed #{} at {})", ack.seq, ack.signed_at_ms);
                    }
                    "/signs" => {
                        let status = self.conn.sign_status(&conversation, seq).await?;
                        for line in sign_status_lines(&mut self.names, &self.conn, &status).await {
                            say!("{line}");
                        }
                    }
                    _ => {
                        let reminded = self.conn.remind(&conversation, seq).await?;
                        say!("  (reminded {} to sign #{seq})", reminded.user_ids.len());
                    }
                }
            }
            Some("/must") => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let text = line.trim_start_matches("/must").trim();
                if text.is_empty() {
                    return Err(ClientError::Unexpected("/must <text>".into()));
                }
                let content = pb::content::Kind::Text(pb::TextContent {
                    text: text.to_string(),
                    ..Default::default()
                });
                let ack = self
                    .conn
                    .send_message_with(
                        &conversation,
                        &new_client_msg_id(),
                        content,
                        pb::SignOff::Confirm,
                    )
                    .await?;
                let cursor = self.cursors.entry(conversation).or_insert(0);
                if ack.seq == *cursor + 1 {
                    *cursor = ack.seq;
                }
                say!("  (sent #{}, to be signed by every recipient)", ack.seq);
            }
            Some("/burn") => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let usage = || ClientError::Unexpected("/burn <secs> <text>".into());
                let rest = line.trim_start_matches("/burn").trim();
                let (secs, text) = rest.split_once(' ').ok_or_else(usage)?;
                let secs: u64 = secs.parse().map_err(|_| usage())?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(usage());
                }
                let content = pb::content::Kind::Text(pb::TextContent {
                    text: text.to_string(),
                    ..Default::default()
                });
                let ack = self
                    .conn
                    .send_burning(&conversation, &new_client_msg_id(), content, secs)
                    .await?;
                let cursor = self.cursors.entry(conversation).or_insert(0);
                if ack.seq == *cursor + 1 {
                    *cursor = ack.seq;
                }
                say!("  (sent #{}, burns once read or in {secs} s)", ack.seq);
            }
            Some("/receipts") => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let max = self.conn.pull(&conversation, 0, 1).await?.max_seq;
                let seqs: Vec<u64> = (max.saturating_sub(4).max(1)..=max).collect();
                if !seqs.is_empty() && max > 0 {
                    for receipt in self.conn.receipts(&conversation, &seqs).await?.receipts {
                        say!(
                            "  #{} read by {} of {}",
                            receipt.seq,
                            receipt.read_count,
                            receipt.member_count.saturating_sub(1)
                        );
                    }
                }
            }
            Some("/group") => {
                let name = words
                    .next()
                    .ok_or_else(|| ClientError::Unexpected("/group <name> <account>...".into()))?;
                let mut ids = Vec::new();
                for account in words {
                    ids.push(self.conn.lookup(account).await?.user_id);
                }
                let group = self.conn.create_group(name, &ids).await?;
                say!("created {} ({})", group.conversation, group.name);
                self.current = Some(group.conversation);
            }
            Some("/discuss") => {
                let mut ids = Vec::new();
                for account in words {
                    ids.push(self.conn.lookup(account).await?.user_id);
                }
                let group = self.conn.start_discussion(&ids).await?;
                say!("started {} ({})", group.conversation, group.name);
                self.current = Some(group.conversation);
            }
            Some("/status") => {
                let status = match words.next() {
                    Some("online") => pb::PresenceStatus::Online,
                    Some("busy") => pb::PresenceStatus::Busy,
                    Some("away") => pb::PresenceStatus::Away,
                    _ => {
                        return Err(ClientError::Unexpected("/status <online|busy|away>".into()));
                    }
                };
                let list = self.conn.set_presence(status).await?;
                self.show_presence(&list.users).await;
            }
            Some("/watch") => {
                let mut ids = Vec::new();
                for account in words {
                    ids.push(self.conn.lookup(account).await?.user_id);
                }
                if ids.is_empty() {
                    return Err(ClientError::Unexpected("/watch <account>...".into()));
                }
                let list = self.conn.watch_presence(&ids, false).await?;
                self.watching.extend(ids);
                self.watching.sort_unstable();
                self.watching.dedup();
                self.show_presence(&list.users).await;
            }
            Some("/fav") => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let seq = words
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ClientError::Unexpected("/fav <seq> [off]".into()))?;
                let on = words.next() != Some("off");
                let item = pb::set_favourite::Item::Message(pb::MessageRef { conversation, seq });
                say!(
                    "  ({})",
                    changed_line(&self.conn.set_favourite(item, on).await?)
                );
            }
            Some("/favcontact") => {
                let account = words
                    .next()
                    .ok_or_else(|| ClientError::Unexpected("/favcontact <account> [off]".into()))?;
                let contact = self.conn.lookup(account).await?.user_id;
                let on = words.next() != Some("off");
                let item = pb::set_favourite::Item::Contact(contact);
                say!(
                    "  ({})",
                    changed_line(&self.conn.set_favourite(item, on).await?)
                );
            }
            Some("/favs") => {
                let favourites = self.conn.favourites(0, 0).await?;
                for line in favourite_lines(&self.conn, &mut self.names, &favourites).await {
                    println!("{line}");
                }
            }
            Some("/notices") => {
                for notice in self.conn.notices(0, 0, false).await?.notices {
                    for line in notice_lines(&notice) {
                        println!("  {line}");
                    }
                }
            }
            Some(cmd @ ("/nread" | "/nvote" | "/nstats")) => {
                let id = words
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ClientError::Unexpected(format!("{cmd} <notice id> ...")))?;
                let action = match cmd {
                    "/nread" => NoticeAction::Read {
                        notice_id: id,
                        ack: words.next() == Some("ack"),
                    },
                    "/nvote" => NoticeAction::Vote {
                        notice_id: id,
                        choices: words.filter_map(|w| w.parse().ok()).collect(),
                    },
                    _ => NoticeAction::Stats { notice_id: id },
                };
                for line in action.run(&self.conn).await? {
                    println!("  {line}");
                }
            }
            Some(cmd @ ("/profile" | "/card" | "/contacts")) => {
                use super::account::AccountCommand;
                let usage = |u: &str| ClientError::Unexpected(u.into());
                let command = match cmd {
                    "/profile" => {
                        let field = words.next();
                        let value = words.collect::<Vec<_>>().join(" ");
                        let value = || Some(value.clone());
                        match field {
                            None => AccountCommand::Profile {
                                phone: None,
                                email: None,
                                mobile: None,
                            },
                            Some("phone") => AccountCommand::Profile {
                                phone: value(),
                                email: None,
                                mobile: None,
                            },
                            Some("email") => AccountCommand::Profile {
                                phone: None,
                                email: value(),
                                mobile: None,
                            },
                            Some("mobile") => AccountCommand::Profile {
                                phone: None,
                                email: None,
                                mobile: value(),
                            },
                            Some(_) => {
                                return Err(usage("/profile [phone|email|mobile <value>]"));
                            }
                        }
                    }
                    "/card" => AccountCommand::Card {
                        account: words
                            .next()
                            .ok_or_else(|| usage("/card <account>"))?
                            .to_string(),
                    },
                    _ => {
                        let query = words.collect::<Vec<_>>().join(" ");
                        if query.is_empty() {
                            return Err(usage("/contacts <name, account or pinyin initials>"));
                        }
                        AccountCommand::Contacts { query }
                    }
                };
                for line in command.run(&self.conn, &self.rest).await? {
                    println!("  {}", crate::protocol::terminal_safe(&line));
                }
            }
            Some("/passwd") => {
                let (Some(current), Some(new)) = (words.next(), words.next()) else {
                    return Err(ClientError::Unexpected(
                        "/passwd <current password> <new password>".into(),
                    ));
                };
                change_password(&self.rest, current, new).await?;
                say!("  password changed; your other sessions ended");
            }
            Some("/space") => {
                let conversation = self.open_conversation()?;
                let Ok(ConversationId::Group(group)) = conversation.parse::<ConversationId>()
                else {
                    return Err(ClientError::Unexpected(
                        "/space is for a group: /open one".into(),
                    ));
                };
                let folder = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let lines = SpaceAction::List { folder }.run(&self.rest, group).await?;
                for line in lines {
                    println!("  {line}");
                }
            }
            Some("/send-file") => {
                let conversation = self.open_conversation()?;
                let path = words.collect::<Vec<_>>().join(" ");
                if path.is_empty() {
                    return Err(ClientError::Unexpected("/send-file <path>".into()));
                }
                let ack =
                    send_file(&self.conn, &self.rest, &conversation, Path::new(&path)).await?;
                say!("sent #{}", ack.seq);
            }
            Some("/get") => {
                let conversation = self.open_conversation()?;
                let seq = words
                    .next()
                    .and_then(|w| w.trim_start_matches('#').parse::<u64>().ok())
                    .ok_or_else(|| ClientError::Unexpected("/get <seq> [path]".into()))?;
                let out = words.next().map(PathBuf::from);
                let (out, size) =
                    get_file(&self.conn, &self.rest, &conversation, seq, out, false).await?;
                say!("saved {} ({size} bytes)", out.display());
            }
            Some("/forward") => {
                let conversation = self.open_conversation()?;
                let (Some(seq), Some(target)) = (
                    words
                        .next()
                        .and_then(|w| w.trim_start_matches('#').parse::<u64>().ok()),
                    words.next(),
                ) else {
                    return Err(ClientError::Unexpected(
                        "/forward <seq> <account|conversation>".into(),
                    ));
                };
                let target = if target.parse::<ConversationId>().is_ok() {
                    target.to_string()
                } else {
                    resolve(&self.conn, Some(target), None).await?
                };
                let source = pb::MessageRef { conversation, seq };
                let ack = self
                    .conn
                    .forward(&target, &new_client_msg_id(), source)
                    .await?;
                say!("forwarded to {} as #{}", ack.conversation, ack.seq);
            }
            Some("/search") => {
                let query = words.collect::<Vec<_>>().join(" ");
                let request = pb::SearchRequest {
                    query,
                    ..Default::default()
                };
                for line in search_lines(&self.conn.search(request).await?) {
                    println!("  {line}");
                }
            }
            Some(cmd @ ("/files" | "/images" | "/links")) => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let request = pb::SearchRequest {
                    conversation,
                    kind: search_kind(Some(&cmd[1..]))? as i32,
                    ..Default::default()
                };
                for line in search_lines(&self.conn.search(request).await?) {
                    println!("  {line}");
                }
            }
            Some("/recent") => {
                for contact in self.conn.recent_contacts(0).await?.contacts {
                    say!("  {}", recent_line(&contact));
                }
            }
            Some("/dnd") => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let on = words.next() != Some("off");
                let settings = self.conn.set_dnd(&conversation, on).await?;
                say!("  ({} dnd={})", settings.conversation, settings.dnd);
            }
            Some(
                cmd @ ("/info" | "/rename" | "/announce" | "/admin" | "/transfer" | "/mute"
                | "/muteall" | "/dissolve" | "/permanent" | "/leave"),
            ) => {
                let group_id = match self.current.as_deref().map(str::parse::<ConversationId>) {
                    Some(Ok(ConversationId::Group(id))) => id,
                    _ => {
                        return Err(ClientError::Unexpected("/open a group first".into()));
                    }
                };
                let rest: Vec<&str> = words.collect();
                let off = rest.get(1) == Some(&"off");
                let account = rest.first().copied().unwrap_or_default();
                let action = match cmd {
                    "/info" => GroupAction::Show,
                    "/rename" => GroupAction::Rename {
                        name: rest.join(" "),
                    },
                    "/announce" => GroupAction::Announce {
                        text: rest.join(" "),
                    },
                    "/admin" => GroupAction::Admin {
                        account: account.to_string(),
                        off,
                    },
                    "/transfer" => GroupAction::Transfer {
                        account: account.to_string(),
                    },
                    "/mute" => GroupAction::Mute {
                        account: account.to_string(),
                        off,
                    },
                    "/muteall" => GroupAction::MuteAll {
                        off: rest.first() == Some(&"off"),
                    },
                    "/permanent" => GroupAction::Permanent {
                        name: rest.join(" "),
                    },
                    "/leave" => GroupAction::Leave,
                    _ => GroupAction::Dissolve {
                        keep_history: rest.first() == Some(&"keep"),
                    },
                };
                let leave = matches!(action, GroupAction::Leave);
                let group = match action.change(&self.conn).await? {
                    Some(change) => self.conn.update_group(group_id, change).await?,
                    None if leave => {
                        self.conn
                            .leave_group(group_id, self.session.user_id)
                            .await?
                    }
                    None => self.conn.get_group(group_id).await?,
                };
                print_group(&group);
            }
            Some(cmd) if cmd.starts_with('/') => {
                say!("unknown command {cmd}.");
                println!("{HELP}");
            }
            Some(_) => {
                let conversation = self
                    .current
                    .clone()
                    .ok_or_else(|| ClientError::Unexpected("/open a conversation first".into()))?;
                let content = pb::content::Kind::Text(pb::TextContent {
                    text: line.to_string(),
                    mentions: Vec::new(),
                    mention_all: line.split_whitespace().any(|w| w == "@all"),
                });
                let ack = self
                    .conn
                    .send_message(&conversation, &new_client_msg_id(), content)
                    .await?;
                let cursor = self.cursors.entry(conversation).or_insert(0);
                // Our own message: shown as typed, so only move the cursor if contiguous.
                if ack.seq == *cursor + 1 {
                    *cursor = ack.seq;
                }
                say!("  (sent #{})", ack.seq);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_message(conversation: &str, text: &str) -> pb::Message {
        pb::Message {
            conversation: conversation.into(),
            seq: 3,
            sender: 2,
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::Text(pb::TextContent {
                    text: text.into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hostile_messages_are_shown_escaped() {
        // A name that clears the screen, a text that forges a second line
        // and reverses its tail, and a conversation id with a bell.
        let line = message_line(
            "mallory\u{1b}[2J",
            &text_message("g:1\u{7}", "hi\n[g:1 #4] admin: \u{202E}txt.exe\0\u{9b}"),
        );
        assert_eq!(
            line,
            "[g:1\\u{7} #3] mallory\\e[2J: hi\\n[g:1 #4] admin: \\u{202e}txt.exe\\u{0}\\u{9b}"
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
        let file = pb::Message {
            content: Some(pb::Content {
                kind: Some(pb::content::Kind::File(pb::FileContent {
                    name: "a\u{1b}]0;pwned\u{7}".into(),
                    ..Default::default()
                })),
            }),
            ..text_message("d:1:2", "")
        };
        assert_eq!(
            message_line("bob", &file),
            "[d:1:2 #3] bob: [file a\\e]0;pwned\\u{7} 0 bytes: /get 3]"
        );
        assert_eq!(
            message_line("张伟", &text_message("d:1:2", "你好 👩\u{200D}💻")),
            "[d:1:2 #3] 张伟: 你好 👩\u{200D}💻"
        );
    }
}
