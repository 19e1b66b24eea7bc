//! The `chorus` command: `serve` runs a node, `client` is the terminal client.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chorus", version, about = "Enterprise instant messaging")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node. Without --config: a single node on loopback, data in ./data.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seeds a small demo organisation (users alice, bob, carol, dave, erin).
        #[arg(long)]
        demo: bool,
    },
    /// The terminal client (interactive without a subcommand).
    Client(chorus::client::cli::ClientArgs),
}

async fn serve(config: Option<PathBuf>, demo: bool) -> anyhow::Result<()> {
    let config = match &config {
        Some(path) => chorus::NodeConfig::load(path)?,
        None => chorus::NodeConfig::default().validate()?,
    };
    chorus::init_logging(&config.log.level, config.log.json)?;
    let node = chorus::Node::start(config)
        .await
        .context("failed to start the node")?;
    if let Some(password) = &node.generated_admin_password {
        println!(
            "created account '{}' with password: {password}",
            chorus::ADMIN_ACCOUNT
        );
        println!(
            "(shown once; set {} before the first start to choose it)",
            chorus::ADMIN_PASSWORD_ENV
        );
    }
    if demo {
        let created = chorus::seed_demo(&node.services)
            .await
            .context("failed to seed the demo organisation")?;
        if !created.is_empty() {
            println!(
                "demo users {} created with password '{}'",
                created.join(", "),
                chorus::DEMO_PASSWORD
            );
        }
    }
    // One line that scripts and tests read to find the bound ports.
    println!(
        "{}",
        serde_json::json!({"event": "ready", "tcp": node.tcp_addr().to_string(), "http": node.http_addr().to_string()})
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
        _ = terminate() => tracing::info!("terminated, shutting down"),
    }
    node.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config, demo } => serve(config, demo).await,
        Command::Client(args) => {
            chorus::init_logging("warn", false)?;
            chorus::client::cli::run(args).await.map_err(Into::into)
        }
    }
}
