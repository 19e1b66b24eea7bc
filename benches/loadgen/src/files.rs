//! `chorus-bench files`: file transfer on one node (docs/decisions/0022).
//! It uploads one `--size-mb` file in chunks over REST and completes it
//! (the node hashes it), sends it in a message, downloads it whole, and
//! reports each throughput in MB/s. Then it holds `--concurrent` uploads
//! open at once, each sending chunk after chunk, and samples the node's
//! resident memory (`--node-pid`): what one upload in progress costs,
//! against the chunk size. The targets: a download of 100 MB at
//! 200 MB/s or more from the node holding it; memory per upload bounded by
//! the chunk size, not the file's.

use std::time::{Duration, Instant};

use anyhow::Context;
use chorus::client::{ClientOptions, Connection, Transport};
use chorus::pb;
use clap::Args;
use serde_json::{Value, json};

use crate::notice::{admin_token, chorus_now_ms};

#[derive(Args, Debug, Clone)]
pub struct FilesArgs {
    /// Chorus TCP address.
    #[arg(long, default_value = "127.0.0.1:7100")]
    server: String,
    /// Chorus REST address.
    #[arg(long, default_value = "127.0.0.1:7180")]
    http: String,
    #[arg(long, env = "CHORUS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// The size of the file timed, in MB (10^6 bytes).
    #[arg(long, default_value_t = 100)]
    size_mb: u64,
    /// Bytes per upload chunk.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    chunk_bytes: usize,
    /// Downloads of the file timed (the median is reported).
    #[arg(long, default_value_t = 5)]
    downloads: usize,
    /// Uploads held open at once for the memory sample (0: none).
    #[arg(long, default_value_t = 32)]
    concurrent: usize,
    /// Chunks each of those uploads sends.
    #[arg(long, default_value_t = 8)]
    concurrent_chunks: usize,
    /// The node's process id, to sample its resident memory.
    #[arg(long)]
    node_pid: Option<u32>,
}

const PASSWORD: &str = "bench-files-password";

/// Returns a process's resident memory in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// Deterministic bytes that neither compress nor sniff as any type.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn announce(&self, conv: &str, name: &str, size: usize) -> anyhow::Result<String> {
        let created: Value = self
            .http
            .post(format!("{}/api/v1/uploads", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"conversation": conv, "name": name, "size": size}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(created["upload_id"]
            .as_str()
            .context("upload id")?
            .to_string())
    }

    async fn chunk(&self, id: &str, offset: usize, bytes: &[u8]) -> anyhow::Result<()> {
        self.http
            .patch(format!("{}/api/v1/uploads/{id}", self.base))
            .bearer_auth(&self.token)
            .header("Upload-Offset", offset.to_string())
            .body(bytes.to_vec())
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

pub async fn run(args: FilesArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", args.http);
    let admin = admin_token(&http, &base, &args.admin_password).await?;
    let run_id = chorus_now_ms();
    let mut ids = Vec::new();
    for n in 0..2 {
        let account = format!("fb{run_id}x{n}");
        let user: Value = http
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(&admin)
            .json(&json!({ "account": account, "password": PASSWORD }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push((account, user["user_id"].as_u64().context("user id")?));
    }
    // No quota or size limit of the policy stands in the way.
    http.put(format!("{base}/api/v1/policies/files"))
        .bearer_auth(&admin)
        .json(&json!({"max_file_bytes": 4u64 << 30}))
        .send()
        .await?
        .error_for_status()?;
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"account": ids[0].0, "password": PASSWORD, "device_class": "web"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let api = Api {
        http: http.clone(),
        base: base.clone(),
        token: login["token"].as_str().context("token")?.to_string(),
    };
    let conv = chorus::ConversationId::direct(ids[0].1, ids[1].1).to_string();

    let size = (args.size_mb * 1_000_000) as usize;
    let bytes = noise(size);
    let sha = sha256_hex(&bytes);
    let id = api.announce(&conv, "bench.bin", size).await?;
    let started = Instant::now();
    for (n, part) in bytes.chunks(args.chunk_bytes).enumerate() {
        api.chunk(&id, n * args.chunk_bytes, part).await?;
    }
    let upload = started.elapsed();
    let started = Instant::now();
    let file: Value = http
        .post(format!("{base}/api/v1/uploads/{id}/complete"))
        .bearer_auth(&api.token)
        .json(&json!({ "sha256": sha }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let complete = started.elapsed();
    let conn =
        Connection::connect(&ClientOptions::new(args.server.clone(), Transport::Tcp)).await?;
    conn.login(&ids[0].0, PASSWORD, pb::DeviceClass::Pc).await?;
    let content = pb::content::Kind::File(pb::FileContent {
        file_id: file["file_id"].as_str().context("file id")?.to_string(),
        ..Default::default()
    });
    let seq = conn.send_message(&conv, "bench-file", content).await?.seq;
    let mut downloads = Vec::new();
    for _ in 0..args.downloads {
        let started = Instant::now();
        let got = http
            .get(format!(
                "{base}/api/v1/conversations/{conv}/messages/{seq}/file"
            ))
            .bearer_auth(&api.token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let took = started.elapsed();
        anyhow::ensure!(
            got.len() == size,
            "downloaded {} of {size} bytes",
            got.len()
        );
        downloads.push(mb_per_s(size as u64, took));
    }
    downloads.sort_by(f64::total_cmp);
    let median = downloads.get(downloads.len() / 2).copied().unwrap_or(0.0);

    let memory = match (args.node_pid, args.concurrent) {
        (Some(pid), n) if n > 0 => Some(concurrent_memory(&api, &conv, &args, pid).await?),
        _ => None,
    };
    let report = json!({
        "file_mb": args.size_mb,
        "chunk_bytes": args.chunk_bytes,
        "upload_mb_per_s": mb_per_s(size as u64, upload),
        "complete_seconds": complete.as_secs_f64(),
        "download_mb_per_s_median": median,
        "download_mb_per_s": downloads,
        "concurrent_uploads": memory,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Holds `--concurrent` uploads open, each sending its chunks, and samples
/// the node's resident memory before and while they run.
async fn concurrent_memory(
    api: &Api,
    conv: &str,
    args: &FilesArgs,
    pid: u32,
) -> anyhow::Result<Value> {
    let chunk = noise(args.chunk_bytes);
    let size = args.chunk_bytes * args.concurrent_chunks;
    let mut ids = Vec::new();
    for n in 0..args.concurrent {
        ids.push(api.announce(conv, &format!("held{n}.bin"), size).await?);
    }
    let before = rss(pid).context("node rss")?;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(now) = rss(pid) {
                    peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let sends = ids.iter().map(|id| {
        let chunk = &chunk;
        async move {
            for n in 0..args.concurrent_chunks {
                api.chunk(id, n * args.chunk_bytes, chunk).await?;
            }
            anyhow::Ok(())
        }
    });
    for result in futures::future::join_all(sends).await {
        result?;
    }
    sampling.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let per_upload = peak.saturating_sub(before) / args.concurrent as u64;
    Ok(json!({
        "uploads": args.concurrent,
        "bytes_each": size,
        "rss_before_bytes": before,
        "rss_peak_bytes": peak,
        "rss_per_upload_bytes": per_upload,
        "rss_per_upload_in_chunks": per_upload as f64 / args.chunk_bytes as f64,
    }))
}
