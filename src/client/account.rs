//! The terminal client's account and directory commands, over REST: one's
//! own profile, the org tree and a department's members, contact search and
//! cards, and for admins a password reset and the password policy. Each
//! returns the lines it prints.

use clap::Subcommand;
use serde_json::{Value, json};

use super::files::Rest;
use super::{ClientError, Connection};

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Prints this user's profile; with options, changes its contact fields
    /// ("" clears one). Name, titles and departments are an admin's.
    Profile {
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        mobile: Option<String>,
    },
    /// Prints the org tree with online/total counts; with a department id,
    /// that department's members.
    Directory { department: Option<u64> },
    /// Finds colleagues by name, account prefix or pinyin initials.
    Contacts { query: String },
    /// Prints a colleague's contact card.
    Card { account: String },
    /// Admins: sets another user's password and ends their sessions; their
    /// next sign-in must choose a new one unless --keep.
    ResetPassword {
        account: String,
        password: String,
        #[arg(long)]
        keep: bool,
    },
    /// Prints the password policy; admins change it with the options.
    PasswordPolicy {
        #[arg(long)]
        min_length: Option<u32>,
        #[arg(long)]
        min_classes: Option<u32>,
        #[arg(long)]
        history: Option<u32>,
        #[arg(long)]
        max_age_days: Option<u32>,
    },
}

fn rest_error(err: super::status::StatusError) -> ClientError {
    ClientError::Unexpected(err.to_string())
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_string()
}

impl AccountCommand {
    /// Runs the command over REST (`conn` looks accounts up).
    pub async fn run(self, conn: &Connection, rest: &Rest) -> Result<Vec<String>, ClientError> {
        let call = |method: &'static str, path: String, body: Option<Value>| async move {
            rest.call(method, &path, body.as_ref())
                .await
                .map_err(rest_error)
        };
        match self {
            AccountCommand::Profile {
                phone,
                email,
                mobile,
            } => {
                let me = if phone.is_none() && email.is_none() && mobile.is_none() {
                    call("GET", "/api/v1/me".into(), None).await?
                } else {
                    let mut body = serde_json::Map::new();
                    for (key, value) in [("phone", phone), ("email", email), ("mobile", mobile)] {
                        if let Some(value) = value {
                            body.insert(key.into(), Value::String(value));
                        }
                    }
                    call("PATCH", "/api/v1/me".into(), Some(Value::Object(body))).await?
                };
                Ok(vec![profile_line(&me)])
            }
            AccountCommand::Directory { department: None } => {
                let tree = call("GET", "/api/v1/departments/tree".into(), None).await?;
                let mut lines = Vec::new();
                tree_lines(&tree, 0, &mut lines);
                Ok(lines)
            }
            AccountCommand::Directory {
                department: Some(id),
            } => {
                let mut lines = Vec::new();
                let mut after = 0u64;
                loop {
                    let path = format!("/api/v1/departments/{id}/members?after={after}&limit=500");
                    let page = call("GET", path, None).await?;
                    let members = page.as_array().cloned().unwrap_or_default();
                    for m in &members {
                        lines.push(format!(
                            "{} {} {:?} {}",
                            m["user_id"],
                            text(m, "account"),
                            text(m, "display_name"),
                            text(m, "title")
                        ));
                    }
                    match members.last().and_then(|m| m["user_id"].as_u64()) {
                        Some(last) if members.len() == 500 => after = last,
                        _ => break,
                    }
                }
                Ok(lines)
            }
            AccountCommand::Contacts { query } => {
                let path = format!("/api/v1/contacts?q={}", query_value(&query));
                let found = call("GET", path, None).await?;
                Ok(found
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let departments: Vec<String> = c["departments"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|d| text(d, "name"))
                            .collect();
                        format!(
                            "{} {} {:?} [{}]",
                            c["user_id"],
                            text(c, "account"),
                            text(c, "display_name"),
                            departments.join(", ")
                        )
                    })
                    .collect())
            }
            AccountCommand::Card { account } => {
                let id = conn.lookup(&account).await?.user_id;
                let card = call("GET", format!("/api/v1/contacts/{id}"), None).await?;
                let mut lines = vec![format!(
                    "{} {} {:?}{} title={:?} phone={:?} mobile={:?} email={:?}",
                    card["user_id"],
                    text(&card, "account"),
                    text(&card, "display_name"),
                    if card["disabled"] == true {
                        " (disabled)"
                    } else {
                        ""
                    },
                    text(&card, "title"),
                    text(&card, "phone"),
                    text(&card, "mobile"),
                    text(&card, "email"),
                )];
                for d in card["departments"].as_array().into_iter().flatten() {
                    lines.push(format!("  {} {:?}", text(d, "name"), text(d, "title")));
                }
                let direct = text(&card, "direct_conversation");
                if !direct.is_empty() {
                    lines.push(format!("  chat: {direct}"));
                }
                Ok(lines)
            }
            AccountCommand::ResetPassword {
                account,
                password,
                keep,
            } => {
                let id = conn.lookup(&account).await?.user_id;
                let body = json!({ "password": password, "must_change_password": !keep });
                call("PUT", format!("/api/v1/users/{id}/password"), Some(body)).await?;
                Ok(vec![format!(
                    "password of {account} reset; their sessions ended{}",
                    if keep {
                        ""
                    } else {
                        "; the next sign-in must change it"
                    }
                )])
            }
            AccountCommand::PasswordPolicy {
                min_length,
                min_classes,
                history,
                max_age_days,
            } => {
                let mut policy = call("GET", "/api/v1/policies/password".into(), None).await?;
                let changes = [
                    ("min_length", min_length),
                    ("min_classes", min_classes),
                    ("history", history),
                    ("max_age_days", max_age_days),
                ];
                if changes.iter().any(|(_, v)| v.is_some()) {
                    for (key, value) in changes {
                        if let Some(value) = value {
                            policy[key] = json!(value);
                        }
                    }
                    policy = call("PUT", "/api/v1/policies/password".into(), Some(policy)).await?;
                }
                Ok(vec![format!(
                    "password policy: min_length={} min_classes={} history={} max_age_days={}",
                    policy["min_length"],
                    policy["min_classes"],
                    policy["history"],
                    policy["max_age_days"]
                )])
            }
        }
    }
}

/// One line for a user record (`GET /api/v1/me`).
fn profile_line(me: &Value) -> String {
    format!(
        "{} {} {:?} title={:?} phone={:?} mobile={:?} email={:?}{}",
        me["user_id"],
        text(me, "account"),
        text(me, "display_name"),
        text(me, "title"),
        text(me, "phone"),
        text(me, "mobile"),
        text(me, "email"),
        if me["must_change_password"] == true {
            " (the password must be changed)"
        } else {
            ""
        }
    )
}

/// The tree, one department a line, indented by depth: id, name, online/total.
fn tree_lines(nodes: &Value, depth: usize, lines: &mut Vec<String>) {
    for node in nodes.as_array().into_iter().flatten() {
        lines.push(format!(
            "{}{} {} {}/{}",
            "  ".repeat(depth),
            node["department_id"],
            text(node, "name"),
            node["online_total"],
            node["total_count"]
        ));
        tree_lines(&node["children"], depth + 1, lines);
    }
}

/// Percent-encodes a query value.
fn query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}
