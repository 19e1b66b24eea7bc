//! `chorus-bench notice`: a notice to every member of one department, all
//! online (docs/decisions/0020). It creates the department and its users,
//! logs every one of them in, sends one notice from the admin and measures
//! how long each push took to arrive (p50, p99, the last); then half the
//! recipients read it and the statistics request is timed, round trip
//! included (p50, p99 over `--stats-runs`). The target: statistics
//! for 5,000 recipients in at most 50 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chorus::client::{ClientOptions, Connection, Event, Transport};
use chorus::pb;
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

#[derive(Args, Debug, Clone)]
pub struct NoticeArgs {
    /// Chorus TCP address.
    #[arg(long, default_value = "127.0.0.1:7100")]
    server: String,
    /// Chorus REST address.
    #[arg(long, default_value = "127.0.0.1:7180")]
    http: String,
    #[arg(long, env = "CHORUS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// Recipients: members of the department, all online.
    #[arg(long, default_value_t = 5000)]
    members: usize,
    /// Timed statistics requests.
    #[arg(long, default_value_t = 20)]
    stats_runs: usize,
    /// Logins (and user creations) in flight at once: below the node's
    /// `auth.max_failures_per_ip`, which counts attempts in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

const PASSWORD: &str = "bench-notice-password";

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Logs the admin in over REST; returns the bearer token.
pub(crate) async fn admin_token(
    http: &reqwest::Client,
    base: &str,
    password: &str,
) -> anyhow::Result<String> {
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({ "account": "admin", "password": password, "device_class": "web" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(login["token"].as_str().context("admin token")?.to_string())
}

pub async fn run(args: NoticeArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", args.http);
    let token = admin_token(&http, &base, &args.admin_password).await?;
    let run_id = chorus_now_ms();
    let department: Value = http
        .post(format!("{base}/api/v1/departments"))
        .bearer_auth(&token)
        .json(&json!({ "name": format!("bench-notice-{run_id}") }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let department_id = department["department_id"]
        .as_u64()
        .context("department id")?;
    eprintln!(
        "creating {} users in department {department_id}",
        args.members
    );
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut creations = Vec::new();
    for n in 0..args.members {
        let (http, base, token, gate) = (http.clone(), base.clone(), token.clone(), gate.clone());
        creations.push(tokio::spawn(async move {
            let _slot = gate.acquire().await?;
            http.post(format!("{base}/api/v1/users"))
                .bearer_auth(&token)
                .json(&json!({
                    "account": format!("nb{run_id}x{n}"),
                    "password": PASSWORD,
                    "departments": [department_id],
                }))
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(())
        }));
    }
    for creation in creations {
        creation.await??;
    }
    eprintln!("logging {} users in", args.members);
    // In batches, pinging those already in between: a login phase of
    // minutes must not let the first connections hit the idle timeout.
    let mut conns: Vec<Connection> = Vec::new();
    for batch in (0..args.members).collect::<Vec<_>>().chunks(500) {
        let mut logins = Vec::new();
        for &n in batch {
            let (server, gate) = (args.server.clone(), gate.clone());
            logins.push(tokio::spawn(async move {
                let _slot = gate.acquire().await?;
                let conn = Connection::connect(&ClientOptions::new(server, Transport::Tcp)).await?;
                conn.login(&format!("nb{run_id}x{n}"), PASSWORD, pb::DeviceClass::Pc)
                    .await?;
                anyhow::Ok(conn)
            }));
        }
        for login in logins {
            conns.push(login.await??);
        }
        for conn in &conns {
            conn.ping().await?;
        }
    }
    let admin =
        Connection::connect(&ClientOptions::new(args.server.clone(), Transport::Tcp)).await?;
    admin
        .login("admin", &args.admin_password, pb::DeviceClass::Pc)
        .await?;

    let sent_at = Instant::now();
    let sent = admin
        .send_notice(pb::SendNotice {
            title: "Benchmark notice".into(),
            body: "Read me.".into(),
            departments: vec![department_id],
            ..Default::default()
        })
        .await?;
    let mut waits = Vec::new();
    for mut conn in conns {
        let id = sent.notice_id;
        waits.push(tokio::spawn(async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(120), conn.next_event()).await {
                    Ok(Some(Event::Push(pb::ServerFrame {
                        body: Some(pb::server_frame::Body::Notice(notice)),
                        ..
                    }))) if notice.notice_id == id => return Ok((sent_at.elapsed(), conn)),
                    Ok(Some(_)) => {}
                    other => anyhow::bail!("no notice push: {other:?}"),
                }
            }
        }));
    }
    let mut deliveries = Vec::new();
    let mut conns = Vec::new();
    for wait in waits {
        let (took, conn) = wait.await??;
        deliveries.push(took);
        conns.push(conn);
    }
    deliveries.sort_unstable();

    // Half of them read it, so that the statistics have both halves.
    for conn in conns.iter().step_by(2) {
        conn.read_notice(sent.notice_id, false).await?;
    }
    let mut stats_times = Vec::new();
    let mut last = None;
    for _ in 0..args.stats_runs {
        let started = Instant::now();
        let stats = admin.notice_stats(sent.notice_id, 0).await?;
        stats_times.push(started.elapsed());
        last = Some(stats);
    }
    stats_times.sort_unstable();
    let stats = last.context("no statistics run")?;
    let report = json!({
        "recipients": sent.recipient_count,
        "delivery_ms": {
            "p50": ms(percentile(&deliveries, 0.5)),
            "p99": ms(percentile(&deliveries, 0.99)),
            "last": ms(*deliveries.last().unwrap_or(&Duration::ZERO)),
        },
        "stats_ms": {
            "p50": ms(percentile(&stats_times, 0.5)),
            "p99": ms(percentile(&stats_times, 0.99)),
            "max": ms(*stats_times.last().unwrap_or(&Duration::ZERO)),
        },
        "read_count": stats.read_count,
        "unread": stats.unread.len(),
        "target_stats_ms": 50,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

pub(crate) fn chorus_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
