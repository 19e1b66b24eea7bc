//! Administration: the first admin account and the demo organisation.

use std::sync::Arc;

use base64::Engine as _;
use rand::RngCore;

use crate::auth::hash_password;
use crate::meta::{MetaError, NewUser};
use crate::node::Services;

/// The account created on first start.
pub const ADMIN_ACCOUNT: &str = "admin";
/// Environment variable that sets the first admin password.
pub const ADMIN_PASSWORD_ENV: &str = "CHORUS_ADMIN_PASSWORD";
/// Password of every demo user.
pub const DEMO_PASSWORD: &str = "chorus-demo";

/// The demo organisation: (account, display name, departments).
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

async fn hash(password: &str) -> Result<String, MetaError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| MetaError::Unavailable(e.to_string()))
}

/// Creates the admin account on first start. Returns the password when it
/// was generated (no `CHORUS_ADMIN_PASSWORD`), to be shown once.
pub async fn ensure_admin(services: &Arc<Services>) -> Result<Option<String>, MetaError> {
    if services.meta.user_by_account(ADMIN_ACCOUNT)?.is_some() {
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
    let created = services
        .meta
        .create_user(NewUser {
            account: ADMIN_ACCOUNT.to_string(),
            display_name: "Administrator".to_string(),
            password_hash: hash(&password).await?,
            admin: true,
            departments: Vec::new(),
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

/// Seeds the demo organisation (idempotent): five users in a few
/// departments, and one group holding them all.
pub async fn seed_demo(services: &Arc<Services>) -> Result<Vec<String>, MetaError> {
    let mut ids = Vec::new();
    let mut created = Vec::new();
    let password_hash = hash(DEMO_PASSWORD).await?;
    for (account, name, departments) in DEMO_USERS {
        let user = match services.meta.user_by_account(account)? {
            Some(user) => user,
            None => {
                created.push(account.to_string());
                services
                    .meta
                    .create_user(NewUser {
                        account: account.to_string(),
                        display_name: name.to_string(),
                        password_hash: password_hash.clone(),
                        admin: false,
                        departments: departments.iter().map(|d| d.to_string()).collect(),
                    })
                    .await?
            }
        };
        ids.push(user.user_id);
    }
    if !created.is_empty() {
        let max = services.config.limits.max_group_members;
        services
            .meta
            .create_group(ids[0], "Demo team", &ids, max)
            .await?;
    }
    Ok(created)
}
