//! `chorus-bench search`: full-text search on one node (docs/decisions/0021).
//! It fills the history of a few 1:1 conversations with `--messages`
//! generated Chinese and English messages as fast as a window of sends in
//! flight allows, waits until the last of them is searchable, then times
//! `--queries` searches of a two-character Chinese term (p50, p99) and
//! states the index's size per message (with `--index-dir`). Last it sends
//! at `--rate` for `--duration` and reports the send→ack percentiles and
//! how long after the last ack it was searchable: run it once more
//! against a node with `[search] enabled = false` for the ack baseline.
//! The targets: on 1,000,000 messages, p50 ≤ 20 ms and p99 ≤ 100 ms;
//! the ack p99 at 5,000 msg/s within 10% of the baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chorus::client::{ClientOptions, Connection, Transport};
use chorus::pb;
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::notice::{admin_token, chorus_now_ms, ms, percentile};

#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    /// Chorus TCP address.
    #[arg(long, default_value = "127.0.0.1:7100")]
    server: String,
    /// Chorus REST address.
    #[arg(long, default_value = "127.0.0.1:7180")]
    http: String,
    #[arg(long, env = "CHORUS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// Messages written before the queries (0: none, for the ack baseline).
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Conversations (one sender each) the messages are spread over.
    #[arg(long, default_value_t = 16)]
    conversations: usize,
    /// Sends in flight at once while filling.
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
    /// Timed searches.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// The term searched: two Chinese characters.
    #[arg(long, default_value = "项目")]
    term: String,
    /// The node's search index folder (`<data_dir>/search`), to state its size.
    #[arg(long)]
    index_dir: Option<std::path::PathBuf>,
    /// The paced phase: sends per second, and for how long.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    #[arg(long, default_value = "20s", value_parser = crate::clock::parse_duration)]
    duration: Duration,
    /// Only the paced phase, without searching: the baseline against a
    /// node with `[search] enabled = false`.
    #[arg(long)]
    ack_only: bool,
}

const PASSWORD: &str = "bench-search-password";

const HAN: &[&str] = &[
    "会议", "明天", "上午", "项目", "进度", "客户", "需求", "文档", "测试", "发布", "计划", "同事",
    "周报", "问题", "方案", "讨论", "确认", "时间", "安排", "部门", "通知", "资料", "系统", "服务",
    "预算", "审批", "合同", "采购", "培训", "招聘", "绩效", "考勤", "报销", "出差", "版本", "上线",
];
const WORDS: &[&str] = &[
    "meeting", "tomorrow", "project", "status", "client", "draft", "release", "plan", "team",
    "weekly", "issue", "lunch", "office", "schedule", "update", "sync", "notes", "slides",
    "budget", "review", "contract", "deadline", "design", "report", "deploy", "ticket",
];

/// A generated message of 4 to 11 words (xorshift from `seed`).
fn text(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut text = String::new();
    for _ in 0..(4 + next() % 8) {
        if next() % 2 == 0 {
            text.push_str(HAN[(next() % HAN.len() as u64) as usize]);
        } else {
            text.push(' ');
            text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
            text.push(' ');
        }
    }
    text
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn connect(server: &str, account: &str) -> anyhow::Result<Connection> {
    let conn = Connection::connect(&ClientOptions::new(server.to_string(), Transport::Tcp)).await?;
    conn.login(account, PASSWORD, pb::DeviceClass::Pc).await?;
    Ok(conn)
}

/// Waits until a search for `marker` finds it; returns how long that took.
async fn searchable(searcher: &Connection, marker: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let found = searcher
            .search(pb::SearchRequest {
                query: marker.to_string(),
                ..Default::default()
            })
            .await?;
        if !found.hits.is_empty() {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{marker} not searchable within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(args: SearchArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", args.http);
    let token = admin_token(&http, &base, &args.admin_password).await?;
    let run_id = chorus_now_ms();
    let mut ids = Vec::new();
    let accounts: Vec<String> = (0..=args.conversations)
        .map(|n| format!("sb{run_id}x{n}"))
        .collect();
    for account in &accounts {
        let user: Value = http
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(&token)
            .json(&json!({ "account": account, "password": PASSWORD }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(user["user_id"].as_u64().context("user id")?);
    }
    let mut senders = Vec::new();
    for (n, account) in accounts.iter().enumerate().skip(1) {
        let conv = chorus::ConversationId::direct(ids[0], ids[n]).to_string();
        senders.push((Arc::new(connect(&args.server, account).await?), conv));
    }

    if args.ack_only {
        let acks = paced(&args, &senders).await?;
        let report = json!({ "paced": paced_report(&args, &acks, None) });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    // Fill the history.
    eprintln!("writing {} messages", args.messages);
    let gate = Arc::new(Semaphore::new(args.in_flight));
    let started = Instant::now();
    let mut sends = Vec::with_capacity(args.messages);
    for n in 0..args.messages {
        let permit = gate.clone().acquire_owned().await?;
        let (conn, conv) = senders[n % senders.len()].clone();
        sends.push(tokio::spawn(async move {
            let _permit = permit;
            conn.send_text(&conv, &format!("f{n}"), &text(n as u64))
                .await
        }));
        if n % 100_000 == 99_999 {
            eprintln!("  {} sent", n + 1);
        }
    }
    for send in sends {
        send.await??;
    }
    let fill = started.elapsed();
    // Logged in now: idle through the fill, it would have timed out.
    let searcher = connect(&args.server, &accounts[0]).await?;
    let marker = format!("marker{run_id}");
    senders[0]
        .0
        .send_text(&senders[0].1, "marker", &marker)
        .await?;
    let caught_up = searchable(&searcher, &marker).await?;

    // Queries.
    let mut times = Vec::with_capacity(args.queries);
    let mut hits = 0;
    for _ in 0..args.queries {
        let started = Instant::now();
        let found = searcher
            .search(pb::SearchRequest {
                query: args.term.clone(),
                limit: 20,
                ..Default::default()
            })
            .await?;
        times.push(started.elapsed());
        hits = found.hits.len();
    }
    times.sort_unstable();
    let index_bytes = args.index_dir.as_deref().map(dir_bytes);

    let acks = paced(&args, &senders).await?;
    let tail = format!("tail{run_id}");
    senders[0].0.send_text(&senders[0].1, "tail", &tail).await?;
    let tail_lag = searchable(&searcher, &tail).await.ok();

    let messages = args.messages as u64 + 2 + acks.len() as u64;
    let report = json!({
        "messages_indexed": messages,
        "fill": {
            "seconds": fill.as_secs_f64(),
            "msgs_per_sec": args.messages as f64 / fill.as_secs_f64().max(1e-9),
            "searchable_after_last_ack_ms": ms(caught_up),
        },
        "query": {
            "term": args.term,
            "hits_per_page": hits,
            "p50_ms": ms(percentile(&times, 0.5)),
            "p99_ms": ms(percentile(&times, 0.99)),
            "max_ms": ms(*times.last().unwrap_or(&Duration::ZERO)),
            "target_ms": { "p50": 20, "p99": 100 },
        },
        "index": index_bytes.map(|bytes| json!({
            "bytes": bytes,
            "bytes_per_message": bytes as f64 / (args.messages as f64 + 2.0).max(1.0),
        })),
        "paced": paced_report(&args, &acks, tail_lag),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

type Sender = (Arc<Connection>, String);

/// Sends at `--rate` for `--duration`, round robin over the senders;
/// returns each send's time from its scheduled instant to its ack, sorted.
async fn paced(args: &SearchArgs, senders: &[Sender]) -> anyhow::Result<Vec<Duration>> {
    eprintln!("sending at {}/s for {:?}", args.rate, args.duration);
    let total = (args.rate as f64 * args.duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let epoch = tokio::time::Instant::now();
    let mut sends = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = epoch + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due).await;
        let (conn, conv) = senders[n as usize % senders.len()].clone();
        sends.push(tokio::spawn(async move {
            conn.send_text(&conv, &format!("p{n}"), &text(n)).await?;
            // From the scheduled time: a late send counts its lateness.
            anyhow::Ok(due.elapsed())
        }));
    }
    let mut acks = Vec::with_capacity(sends.len());
    for send in sends {
        acks.push(send.await??);
    }
    acks.sort_unstable();
    Ok(acks)
}

fn paced_report(args: &SearchArgs, acks: &[Duration], lag: Option<Duration>) -> Value {
    json!({
        "rate": args.rate,
        "sent": acks.len(),
        "ack_ms": {
            "p50": ms(percentile(acks, 0.5)),
            "p99": ms(percentile(acks, 0.99)),
            "max": ms(*acks.last().unwrap_or(&Duration::ZERO)),
        },
        "searchable_after_last_ack_ms": lag.map(ms),
    })
}
