//! Administration: the first admin account and the demo organisation.

use base64::Engine as _;
use rand::RngCore;

use crate::meta::{Actor, MetaError, NewUser, Post};
mod cluster;

pub use cluster::{ClusterAdmin, ClusterStatus, PartitionStatus};

use crate::auth::Auth;
use crate::meta::Meta;

/// The account created on first start.
pub const ADMIN_ACCOUNT: &str = "admin";
/// Environment variable that sets the first admin password.
pub const ADMIN_PASSWORD_ENV: &str = "CHORUS_ADMIN_PASSWORD";
/// Password of every demo user.
pub const DEMO_PASSWORD: &str = "chorus-demo";

/// The demo organisation: (account, display name, department paths).
const DEMO_USERS: [(&str, &str, &[&str]); 5] = [
    (
        "alice",
        "Alice Wang",
        &["Headquarters/Engineering/Platform"],
    ),
    ("bob", "Bob Li", &["Headquarters/Engineering/Clients"]),
    (
        "carol",
        "Carol Zhang",
        &["Headquarters/Sales", "Headquarters/Engineering/Clients"],
    ),
    ("dave", "Dave Chen", &["Headquarters/Operations"]),
    ("erin", "Erin Liu", &["Branch Shanghai/Sales"]),
];

/// Hashes through the node's hash slots, as logins do.
async fn hash(auth: &Auth, password: &str) -> Result<String, MetaError> {
    auth.hash_password(password)
        .await
        .map_err(|e| MetaError::Unavailable(e.to_string()))
}

/// Creates the admin account on first start. Returns the password when it
/// was generated (no `CHORUS_ADMIN_PASSWORD`), to be shown once.
pub async fn ensure_admin(meta: &Meta, auth: &Auth) -> Result<Option<String>, MetaError> {
    if meta.user_by_account(ADMIN_ACCOUNT)?.is_some() {
        return Ok(None);
    }
    let (password, generated) = match std::env::var(ADMIN_PASSWORD_ENV) {
        Ok(password) if !password.is_empty() => (password, false),
        _ => {
            let mut bytes = [0u8; 12];
            rand::rng().fill_bytes(&mut bytes);
            (
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                true,
            )
        }
    };
    let created = meta
        .create_user(NewUser {
            account: ADMIN_ACCOUNT.to_string(),
            display_name: "Administrator".to_string(),
            password_hash: hash(auth, &password).await?,
            admin: true,
            ..Default::default()
        })
        .await;
    match created {
        Ok(_) => {
            tracing::info!(account = ADMIN_ACCOUNT, "created the admin account");
            Ok(generated.then_some(password))
        }
        // Another node of the cluster created it first.
        Err(MetaError::Conflict(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The actor of writes the node makes on its own (the demo seed) in the audit trail.
fn system() -> Actor {
    Actor {
        user_id: 0,
        ip: "local".to_string(),
    }
}

/// Returns the id of the department at `path` ("A/B/C"), creating the
/// missing ones.
async fn ensure_department(meta: &Meta, path: &str) -> Result<u64, MetaError> {
    let mut parent = 0;
    for name in path.split('/') {
        let existing = |meta: &Meta, parent: u64| -> Result<Option<u64>, MetaError> {
            Ok(meta
                .departments()?
                .into_iter()
                .find(|d| d.parent_id == parent && d.name == name)
                .map(|d| d.department_id))
        };
        parent = match existing(meta, parent)? {
            Some(id) => id,
            None => match meta.create_department(&system(), parent, name, 0).await {
                Ok(department) => department.department_id,
                // Another node of the cluster created it first.
                Err(MetaError::Conflict(_)) => existing(meta, parent)?.ok_or_else(|| {
                    MetaError::Unavailable(format!("department {name:?} vanished"))
                })?,
                Err(err) => return Err(err),
            },
        };
    }
    Ok(parent)
}

/// Seeds the demo organisation (idempotent): five users with posts in a few
/// departments, and one group holding them all.
pub async fn seed_demo(
    meta: &Meta,
    auth: &Auth,
    max_group_members: usize,
) -> Result<Vec<String>, MetaError> {
    let mut ids = Vec::new();
    let mut created = Vec::new();
    let password_hash = hash(auth, DEMO_PASSWORD).await?;
    for (account, name, departments) in DEMO_USERS {
        let mut posts = Vec::new();
        for path in departments {
            posts.push(Post {
                department_id: ensure_department(meta, path).await?,
                title: String::new(),
            });
        }
        let user = match meta.user_by_account(account)? {
            Some(user) => user,
            None => {
                created.push(account.to_string());
                meta.create_user(NewUser {
                    account: account.to_string(),
                    display_name: name.to_string(),
                    password_hash: password_hash.clone(),
                    admin: false,
                    posts,
                    ..Default::default()
                })
                .await?
            }
        };
        ids.push(user.user_id);
    }
    if !created.is_empty() {
        let max = max_group_members;
        meta.create_group(ids[0], "Demo team", &ids, max, None, false)
            .await?;
    }
    Ok(created)
}
