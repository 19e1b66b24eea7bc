//! `chorus backup`: asks a node's admin API for an online backup, written
//! into that node's backup folder on its host, and prints where it went.

use clap::Args;

use super::status::{StatusArgs, StatusError, admin_session, expect_ok, request};

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub node: StatusArgs,
    /// The backup's folder name (default: node<id>-<unix ms>).
    #[arg(long)]
    pub name: Option<String>,
}

/// Takes the backup and prints its path (or, with --json, the node's answer).
pub async fn run(args: BackupArgs) -> Result<(), StatusError> {
    let (options, token) = admin_session(&args.node).await?;
    let body = serde_json::json!({ "name": args.name });
    let reply = request(
        &options,
        "POST",
        "/api/v1/admin/backup",
        Some(&token),
        Some(&body),
    )
    .await?;
    let backup = expect_ok("backup", reply)?;
    if args.node.json {
        println!("{backup:#}");
        return Ok(());
    }
    let path = backup["path"].as_str().unwrap_or("?");
    println!(
        "backup of node {} written on its host in {path} ({} bytes, {} ms)",
        backup["node_id"], backup["bytes"], backup["took_ms"]
    );
    if let Some(lagging) = backup["lagging"].as_array().filter(|l| !l.is_empty()) {
        println!("warning: groups {lagging:?} had entries not yet applied on this node");
    }
    println!("copy it off the host, e.g. tar -C {path} -czf backup.tgz .");
    Ok(())
}
