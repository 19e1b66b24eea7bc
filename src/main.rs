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
        /// Log filter, instead of the config's log.level: a level (info,
        /// debug …: chorus at that level, other crates at warn) and
        /// target=level directives. RUST_LOG, when set, wins over both.
        #[arg(long, env = "CHORUS_LOG", value_name = "FILTER")]
        log_level: Option<String>,
        /// One JSON object per log line (true or false), instead of the
        /// config's log.json.
        #[arg(long, env = "CHORUS_LOG_JSON", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        log_json: Option<bool>,
    },
    /// The terminal client (interactive without a subcommand).
    Client(chorus::client::cli::ClientArgs),
    /// The cluster's credentials: a CA, node certificates, the gossip secret.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Prints the OpenAPI document of the REST API (as served at /api/openapi.json).
    Openapi,
    /// Takes an online backup of a running node (POST /api/v1/admin/backup),
    /// written into the node's backup folder on its host.
    Backup(chorus::client::backup::BackupArgs),
    /// Restores a backup into an empty data folder as the first node of a
    /// new cluster: the node of --config, which must have no seeds. Run
    /// `chorus serve --config FILE` afterwards.
    Restore {
        /// The backup's folder (holding backup.json and db/).
        #[arg(long, value_name = "DIR")]
        backup: PathBuf,
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Creates a cluster CA (ca.pem, ca-key.pem) and the cluster secret
    /// (cluster.secret) in DIR. Keep ca-key.pem off the nodes.
    InitCa {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Signs a certificate for one node with the CA in --ca: writes
    /// NAME.pem and NAME-key.pem into --out.
    IssueCert {
        /// The folder `init-ca` wrote.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The node's name, e.g. node1 (letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Prints the cluster as one node sees it: nodes, the metadata group,
    /// partitions and their leaders (GET /api/v1/admin/cluster).
    Status(chorus::client::status::StatusArgs),
}

fn cluster_command(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::InitCa { out } => {
            for file in chorus::pki::init_ca(&out)? {
                println!("wrote {}", file.display());
            }
            println!(
                "copy {} and {} to every node; keep {} safe and off the nodes",
                chorus::pki::CA_CERT_FILE,
                chorus::pki::SECRET_FILE,
                chorus::pki::CA_KEY_FILE
            );
        }
        ClusterCommand::IssueCert { ca, name, out } => {
            let files = chorus::pki::issue_cert(&ca, &name, &out)?;
            println!("wrote {}", files.cert.display());
            println!("wrote {}", files.key.display());
        }
        ClusterCommand::Status(_) => unreachable!("runs on the tokio runtime"),
    }
    Ok(())
}

fn restore(backup: &std::path::Path, config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = chorus::NodeConfig::load(config_path)?;
    let report = chorus::restore_backup(&config, backup)
        .with_context(|| format!("failed to restore {}", backup.display()))?;
    println!(
        "restored the backup of node {} (chorus {}, {} partitions) into {} as node {}",
        report.manifest.node_id,
        report.manifest.chorus_version,
        report.manifest.partitions,
        report.db_dir.display(),
        config.node_id
    );
    println!(
        "{} raft groups rewritten with node {} as their only voter; {} unapplied log entries dropped",
        report.groups.len(),
        config.node_id,
        report.dropped_entries
    );
    println!(
        "start it with: chorus serve --config {}",
        config_path.display()
    );
    Ok(())
}

/// How `serve` was asked to log, over the config's `[log]`.
struct LogOverrides {
    level: Option<String>,
    json: Option<bool>,
}

async fn serve(config: Option<PathBuf>, demo: bool, log: LogOverrides) -> anyhow::Result<()> {
    let config = match &config {
        Some(path) => chorus::NodeConfig::load(path)?,
        None => chorus::NodeConfig::default().validate()?,
    };
    chorus::init_logging(
        log.level.as_deref().unwrap_or(&config.log.level),
        log.json.unwrap_or(config.log.json),
    )?;
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
        let created = node
            .seed_demo()
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

/// glibc's malloc raises its mmap threshold to the size of the largest
/// block freed (up to 32 MiB). After the first password check, each argon2
/// hash's 19 MiB then comes from a malloc arena that keeps it: 120 logins
/// left a node at 1.3 GB resident instead of 57 MB. A fixed threshold keeps
/// blocks of 1 MiB and more in their own mappings, returned to the system
/// when freed. glibc reads it from the environment at start only (`mallopt`
/// would need unsafe code), so `serve` runs itself again once with it set,
/// unless the operator set it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn reexec_with_fixed_mmap_threshold() {
    use std::os::unix::process::CommandExt as _;
    const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    // /proc/self/exe runs this very binary even if its file was replaced since.
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env(VAR, (1024 * 1024).to_string())
        .exec();
    eprintln!("could not restart with {VAR} set, continuing without: {err}");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reexec_with_fixed_mmap_threshold() {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Cluster(ClusterCommand::Status(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("failed to start the tokio runtime")?;
            return runtime
                .block_on(chorus::client::status::run(args))
                .map_err(Into::into);
        }
        Command::Cluster(command) => return cluster_command(command),
        Command::Openapi => {
            println!("{}", chorus::openapi_json());
            return Ok(());
        }
        Command::Backup(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("failed to start the tokio runtime")?;
            return runtime
                .block_on(chorus::client::backup::run(args))
                .map_err(Into::into);
        }
        Command::Restore { backup, config } => return restore(&backup, &config),
        _ => {}
    }
    if matches!(cli.command, Command::Serve { .. }) {
        reexec_with_fixed_mmap_threshold();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                demo,
                log_level,
                log_json,
            } => {
                let log = LogOverrides {
                    level: log_level,
                    json: log_json,
                };
                serve(config, demo, log).await
            }
            Command::Client(args) => {
                chorus::init_logging("warn", false)?;
                chorus::client::cli::run(args).await.map_err(Into::into)
            }
            Command::Cluster(_)
            | Command::Openapi
            | Command::Backup(_)
            | Command::Restore { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
    })
}
