//! `chorus-bench`: the load generator of Chorus. It logs in many users over
//! TCP, runs fixed-rate (open-loop) workloads and reports HdrHistogram
//! percentiles; the same workloads run against ejabberd (XMPP) and NATS for
//! comparison. Past one process's open-file limit it spreads the connections
//! over worker processes of itself and merges their results.

mod clock;
mod conns;
mod coord;
mod files;
mod notice;
mod report;
mod search;
mod stats;
mod targets;
mod workloads;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::clock::parse_duration;
use crate::coord::{Coord, Marks};
use crate::report::{DocText, Inputs, Machine, RunReport};
use crate::targets::{Account, GroupPlan, Plan, TargetKind, Transport};
use crate::workloads::{Ctx, Slice};

/// Connections one process holds at most (the open-file limit is 20,000).
const CONNS_PER_PROCESS: usize = 18_000;

#[derive(Parser)]
#[command(
    name = "chorus-bench",
    version,
    about = "Load generator for Chorus (and ejabberd, NATS)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Holds logged-in idle connections; with --server-pid, reports server memory per connection.
    Idle(IdleArgs),
    /// Pairs exchanging messages at fixed offered rates (one step per rate).
    #[command(name = "one-to-one")]
    OneToOne(OneToOneArgs),
    /// One group, every member online; one member sends at a fixed rate.
    Group(GroupArgs),
    /// Connect/login/disconnect at a fixed rate, then a mass reconnect.
    Churn(ChurnArgs),
    /// Creates the accounts (Chorus: users and cached tokens; ejabberd: registrations) and exits.
    Setup(SetupArgs),
    /// Writes the comparison document from the JSON results of the three targets.
    Report(ReportArgs),
    /// A notice to every member of one department, all online: time to the
    /// last delivery and the cost of its read statistics (Chorus only).
    Notice(notice::NoticeArgs),
    /// Fills the history, then times searches of a Chinese term and the
    /// send→ack latency while the index follows (Chorus only).
    Search(search::SearchArgs),
    /// Uploads and downloads one large file, then holds many uploads open
    /// and samples the node's memory (Chorus only).
    Files(files::FilesArgs),
}

#[derive(Args, Debug, Clone, Serialize)]
struct Common {
    /// Which server to load.
    #[arg(long, value_enum, default_value = "chorus")]
    target: TargetKind,
    /// The client port: Chorus TCP, XMPP client-to-server, or NATS (loopback
    /// only). Several, comma-separated, spread the accounts over them (the
    /// nodes of a cluster).
    #[arg(long, default_value = "127.0.0.1:7100")]
    server: String,
    /// Chorus REST address (users, tokens, groups; WebSocket with --transport ws).
    #[arg(long, default_value = "127.0.0.1:7180")]
    http: String,
    /// Chorus long connections: TCP frames on --server, or WebSocket on --http.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Chorus admin password (users are created through the admin REST API).
    #[arg(long, env = "CHORUS_ADMIN_PASSWORD", hide_env_values = true)]
    #[serde(skip)]
    admin_password: Option<String>,
    /// XMPP domain of the accounts.
    #[arg(long, default_value = "localhost")]
    xmpp_domain: String,
    /// XMPP multi-user chat service.
    #[arg(long, default_value = "conference.localhost")]
    muc_service: String,
    /// Prefix of the account names (accounts are <prefix><n>, reused across runs).
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    /// Process id of the server: its memory, CPU and context switches are
    /// read from /proc at each phase. Several, comma-separated, are summed
    /// (the nodes of a cluster).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Load-generator processes (default: one per 18,000 connections).
    #[arg(long)]
    procs: Option<usize>,
    /// Logins in flight at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Where Chorus tokens are cached between runs.
    #[arg(long)]
    token_cache: Option<PathBuf>,
    /// Writes the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Names the server build in the results (e.g. "ejabberd 23.01").
    #[arg(long, default_value = "")]
    label: String,
    /// Internal: this process is worker N of --procs.
    #[arg(long, hide = true)]
    #[serde(skip)]
    worker: Option<usize>,
    /// Internal: the plan file a worker reads.
    #[arg(long, hide = true)]
    #[serde(skip)]
    plan: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Serialize)]
struct IdleArgs {
    #[command(flatten)]
    #[serde(flatten)]
    common: Common,
    /// Connections to hold.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Accounts they log in as (default: one per connection). Fewer accounts
    /// mean fewer password hashes at setup: connection i resumes account
    /// i % accounts's token, so one account holds several connections.
    #[arg(long)]
    accounts: Option<usize>,
    /// How long to hold them before the memory is read.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_text")]
    hold: Duration,
}

#[derive(Args, Debug, Clone, Serialize)]
struct OneToOneArgs {
    #[command(flatten)]
    #[serde(flatten)]
    common: Common,
    /// Pairs of users; each pair is a 1:1 conversation.
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// Offered rates in messages per second over all pairs; a list runs a sweep.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    rate: Vec<f64>,
    /// Length of each rate step.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_text")]
    duration: Duration,
    /// Time allowed after a step for late pushes and acks.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_text")]
    drain: Duration,
    /// A step whose push p99 exceeds this many ms ends the sweep.
    #[arg(long, default_value_t = 200.0)]
    max_p99_ms: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
struct GroupArgs {
    #[command(flatten)]
    #[serde(flatten)]
    common: Common,
    /// Members of the group, all online (at most 5,000 on Chorus by default).
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Messages per second sent to the group.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_text")]
    duration: Duration,
    /// Time allowed after the sends for the last pushes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_text")]
    drain: Duration,
}

#[derive(Args, Debug, Clone, Serialize)]
struct ChurnArgs {
    #[command(flatten)]
    #[serde(flatten)]
    common: Common,
    /// Accounts the churn cycles through.
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// Connect + login + disconnect cycles per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_text")]
    duration: Duration,
    /// Sessions that drop at once and reconnect.
    #[arg(long, default_value_t = 2000)]
    mass: usize,
    /// The reconnects are spread evenly over this window (0: all at once).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_text")]
    window: Duration,
}

#[derive(Args, Debug)]
struct SetupArgs {
    #[command(flatten)]
    common: Common,
    /// Accounts to create: <prefix>0 .. <prefix>N-1.
    #[arg(long)]
    accounts: usize,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Folder of <target>-<workload>.json results.
    #[arg(long)]
    results: PathBuf,
    /// The document to write.
    #[arg(long)]
    out: PathBuf,
    /// Folder of the results of a multi-node Chorus run, for its own section.
    #[arg(long)]
    cluster_results: Option<PathBuf>,
    /// A Markdown file appended as the analysis section.
    #[arg(long)]
    notes: Option<PathBuf>,
    /// The command that reproduces the run.
    #[arg(long, default_value = "bash benches/compare/run.sh")]
    command: String,
    /// Time one synced 4 KiB write in this folder, for the machine section.
    #[arg(long)]
    fsync_probe: Option<PathBuf>,
}

fn as_text<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", duration.as_secs_f64()))
}

/// Resolves an address and refuses anything but loopback: load goes nowhere else.
fn loopback(addr: &str) -> anyhow::Result<SocketAddr> {
    let resolved = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    if !resolved.ip().is_loopback() {
        bail!("{addr} is not a loopback address: chorus-bench only loads servers on this machine");
    }
    Ok(resolved)
}

/// The workload of a run, with what it needs from setup.
enum Workload {
    Idle(IdleArgs),
    OneToOne(OneToOneArgs),
    Group(GroupArgs),
    Churn(ChurnArgs),
}

impl Workload {
    fn common(&self) -> &Common {
        match self {
            Workload::Idle(a) => &a.common,
            Workload::OneToOne(a) => &a.common,
            Workload::Group(a) => &a.common,
            Workload::Churn(a) => &a.common,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Workload::Idle(_) => "idle",
            Workload::OneToOne(_) => "one-to-one",
            Workload::Group(_) => "group",
            Workload::Churn(_) => "churn",
        }
    }

    /// Accounts the workload uses: 0..n.
    fn accounts(&self) -> usize {
        match self {
            Workload::Idle(a) => a.accounts.unwrap_or(a.conns).clamp(1, a.conns.max(1)),
            Workload::OneToOne(a) => 2 * a.pairs,
            Workload::Group(a) => a.members,
            Workload::Churn(a) => a.pool.max(a.mass),
        }
    }

    /// Connections held at once.
    fn peak_connections(&self) -> usize {
        match self {
            Workload::Churn(a) => a.mass,
            Workload::Idle(a) => a.conns,
            _ => self.accounts(),
        }
    }

    fn group_members(&self) -> Option<usize> {
        match self {
            Workload::Group(a) => Some(a.members),
            _ => None,
        }
    }

    fn params(&self) -> serde_json::Value {
        let value = match self {
            Workload::Idle(a) => serde_json::to_value(a),
            Workload::OneToOne(a) => serde_json::to_value(a),
            Workload::Group(a) => serde_json::to_value(a),
            Workload::Churn(a) => serde_json::to_value(a),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    async fn run(&self, ctx: &mut Ctx) -> anyhow::Result<Vec<stats::StepRaw>> {
        match self {
            Workload::Idle(a) => {
                let accounts = self.accounts();
                workloads::idle(ctx, a.conns, accounts, a.hold).await
            }
            Workload::OneToOne(a) => {
                let args = workloads::OneToOne {
                    pairs: a.pairs,
                    rates: a.rate.clone(),
                    duration: a.duration,
                    drain: a.drain,
                    max_p99_ms: a.max_p99_ms,
                };
                workloads::one_to_one(ctx, &args).await
            }
            Workload::Group(a) => {
                let args = workloads::Group {
                    members: a.members,
                    rate: a.rate,
                    duration: a.duration,
                    drain: a.drain,
                };
                workloads::group(ctx, &args).await
            }
            Workload::Churn(a) => {
                let args = workloads::Churn {
                    pool: a.pool,
                    rate: a.rate,
                    duration: a.duration,
                    mass: a.mass,
                    window: a.window,
                };
                workloads::churn(ctx, &args).await
            }
        }
    }
}

/// Creates what a run needs on the server: `accounts` accounts and, with
/// `members`, a group of the first ones. Returns the plan.
async fn setup(common: &Common, accounts: usize, members: Option<usize>) -> anyhow::Result<Plan> {
    let mut addrs = common
        .server
        .split(',')
        .map(loopback)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let addr = addrs.remove(0);
    let accounts: Vec<Account> = (0..accounts)
        .map(|i| Account {
            name: format!("{}{i}", common.user_prefix),
            password: format!("{}-password-{i}", common.user_prefix),
            user_id: 0,
            token: String::new(),
        })
        .collect();
    // WebSocket goes to the one --http address.
    let (addr, more_addrs, transport) = match (common.target, common.transport) {
        (TargetKind::Chorus, Transport::Ws) => (loopback(&common.http)?, Vec::new(), Transport::Ws),
        (_, Transport::Ws) => bail!("--transport ws is for Chorus only"),
        _ => (addr, addrs, Transport::Tcp),
    };
    let mut plan = Plan {
        kind: common.target,
        addr,
        more_addrs,
        transport,
        domain: common.xmpp_domain.clone(),
        accounts,
        group: members.map(|m| GroupPlan {
            conversation: String::new(),
            room: format!("{}-room-{m}@{}", common.user_prefix, common.muc_service),
            subject: format!("g.{}.{m}", common.user_prefix),
        }),
    };
    match common.target {
        TargetKind::Chorus => {
            loopback(&common.http)?;
            let password = common
                .admin_password
                .as_deref()
                .context("--admin-password (or CHORUS_ADMIN_PASSWORD) is needed for Chorus")?;
            let cache = common
                .token_cache
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("chorus-bench-tokens.json"));
            targets::setup_chorus(&common.http, password, &mut plan.accounts, &cache).await?;
            if let (Some(group), Some(members)) = (&mut plan.group, members) {
                group.conversation =
                    targets::create_chorus_group(&common.http, &plan.accounts[..members]).await?;
            }
        }
        TargetKind::Ejabberd => {
            let shared = Arc::new(plan.clone());
            targets::register_accounts(shared, 32).await?;
            if members.is_some() {
                targets::prepare_room(&plan, 0).await?;
            }
        }
        TargetKind::Nats => {}
    }
    Ok(plan)
}

async fn run_workload(workload: Workload) -> anyhow::Result<()> {
    let common = workload.common().clone();
    let procs = common
        .procs
        .unwrap_or_else(|| workload.peak_connections().div_ceil(CONNS_PER_PROCESS))
        .max(1);
    if let (Some(index), Some(plan_path)) = (common.worker, &common.plan) {
        let plan: Plan = serde_json::from_slice(&std::fs::read(plan_path)?)?;
        let mut ctx = Ctx {
            plan: Arc::new(plan),
            slice: Slice {
                index,
                count: procs,
            },
            coord: Coord::worker(),
            concurrency: common.connect_concurrency,
        };
        let steps = workload.run(&mut ctx).await?;
        ctx.coord.barrier("done", true).await?;
        ctx.coord.finish(steps)?;
        return Ok(());
    }

    let started = clock::now_ns();
    let plan = setup(&common, workload.accounts(), workload.group_members()).await?;
    for pid in &common.server_pid {
        wait_server_idle(*pid).await;
    }
    let marks = Marks::new(common.server_pid.clone());
    eprintln!(
        "running {} on {} with {} account(s) in {procs} process(es)",
        workload.name(),
        common.target.name(),
        plan.accounts.len()
    );
    let (steps, marks) = if procs == 1 {
        let mut ctx = Ctx {
            plan: Arc::new(plan),
            slice: Slice { index: 0, count: 1 },
            coord: Coord::Local(marks),
            concurrency: common.connect_concurrency,
        };
        let steps = workload.run(&mut ctx).await?;
        ctx.coord.barrier("done", true).await?;
        ctx.coord.finish(steps)?
    } else {
        let dir = std::env::temp_dir();
        let plan_path = dir.join(format!("chorus-bench-plan-{}.json", std::process::id()));
        std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        if common.procs.is_none() {
            args.push("--procs".into());
            args.push(procs.to_string());
        }
        let result = coord::run_workers(&args, procs, &plan_path, marks).await;
        let _ = std::fs::remove_file(&plan_path);
        result?
    };
    let mut summaries = Vec::new();
    for raw in &steps {
        summaries.push(report::summarise(raw, &marks)?);
    }
    let idle = match &workload {
        Workload::Idle(_) => summaries.first().map(|s| report::idle_summary(s, &marks)),
        _ => None,
    };
    let report = RunReport {
        tool: format!("chorus-bench {}", env!("CARGO_PKG_VERSION")),
        workload: workload.name().to_string(),
        target: common.target,
        label: common.label.clone(),
        server: common.server.clone(),
        params: workload.params(),
        machine: Machine::this(),
        started_at_unix_s: started / 1_000_000_000,
        procs,
        marks,
        steps: summaries,
        idle,
    };
    print!("{}", report::table(&report));
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Waits (at most 30 s) until the server uses under 5% of a core, so that a
/// run does not start while the server still works off the previous one
/// (closing thousands of sessions, a backlog of sends).
async fn wait_server_idle(pid: u32) {
    let pid = pid.to_string();
    let window = Duration::from_millis(500);
    for _ in 0..60 {
        let Some(before) = coord::cpu_seconds(&pid) else {
            return;
        };
        tokio::time::sleep(window).await;
        let Some(after) = coord::cpu_seconds(&pid) else {
            return;
        };
        if (after - before) / window.as_secs_f64() < 0.05 {
            return;
        }
    }
    eprintln!("the server is still busy after 30 s; starting anyway");
}

/// Times synced 4 KiB writes in a folder; returns the mean in milliseconds.
fn fsync_probe(dir: &std::path::Path) -> anyhow::Result<f64> {
    use std::io::Write as _;
    const WRITES: u32 = 50;
    let path = dir.join(format!("chorus-bench-fsync-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let started = std::time::Instant::now();
    for _ in 0..WRITES {
        file.write_all(&block)?;
        file.sync_data()?;
    }
    let mean = started.elapsed().as_secs_f64() * 1000.0 / f64::from(WRITES);
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(mean)
}

fn write_report(args: &ReportArgs) -> anyhow::Result<()> {
    let inputs = Inputs::load(&args.results)?;
    let cluster = args
        .cluster_results
        .as_deref()
        .filter(|dir| dir.is_dir())
        .map(Inputs::load)
        .transpose()?;
    let notes = args
        .notes
        .as_ref()
        .map(std::fs::read_to_string)
        .transpose()
        .context("reading the notes")?;
    let fsync_ms = args.fsync_probe.as_deref().map(fsync_probe).transpose()?;
    let text = DocText {
        command: &args.command,
        notes,
        fsync_ms,
    };
    std::fs::write(
        &args.out,
        report::document(&inputs, cluster.as_ref(), &text),
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Idle(args) => run_workload(Workload::Idle(args)).await,
        Command::OneToOne(args) => run_workload(Workload::OneToOne(args)).await,
        Command::Group(args) => run_workload(Workload::Group(args)).await,
        Command::Churn(args) => run_workload(Workload::Churn(args)).await,
        Command::Setup(args) => {
            let plan = setup(&args.common, args.accounts, None).await?;
            eprintln!(
                "{} account(s) ready on {}",
                plan.accounts.len(),
                args.common.server
            );
            Ok(())
        }
        Command::Report(args) => write_report(&args),
        Command::Notice(args) => notice::run(args).await,
        Command::Search(args) => search::run(args).await,
        Command::Files(args) => files::run(args).await,
    }
}
