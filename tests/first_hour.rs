//! What an operator sees from `chorus serve` as a process: the admin
//! password line without dependency noise around it, JSON logs and the log
//! level from the environment, and a clear refusal of a data folder that
//! another node holds.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};

/// Writes a config on loopback with ports bound to 0 into `dir`.
fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let data = dir.join("data");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\n[listen]\ntcp = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\npeer = \"127.0.0.1:0\"\n[storage]\npartitions = 4\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// Runs `chorus serve` until its ready line, stops it, and returns its
/// stdout up to the ready line and its whole stderr.
async fn serve_until_ready(
    config: &std::path::Path,
    envs: &[(&str, &str)],
    args: &[&str],
) -> (String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("CHORUS_LOG")
        .env_remove("CHORUS_LOG_JSON")
        .env_remove(chorus::ADMIN_PASSWORD_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line.contains("\"event\":\"ready\"") {
                return;
            }
        }
        panic!("node exited before it was ready: {stdout}");
    })
    .await
    .expect("ready in time");
    nix_term(&child);
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let _ = child.start_kill();
    (stdout, err_task.await.unwrap())
}

fn nix_term(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

#[tokio::test]
async fn the_first_start_shows_the_password_without_dependency_noise() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "[log]\nlevel = \"info\"\n");
    let (stdout, stderr) = serve_until_ready(&config, &[], &[]).await;
    assert!(
        stdout.contains("created account 'admin' with password: "),
        "{stdout}"
    );
    let noisy: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("openraft") || l.contains("chitchat"))
        .filter(|l| !l.contains("WARN") && !l.contains("ERROR"))
        .collect();
    assert!(
        noisy.is_empty(),
        "{} lines such as {:?}",
        noisy.len(),
        noisy.first()
    );
    assert!(stderr.contains("node ready"), "{stderr}");
    assert!(stderr.lines().count() < 100, "{stderr}");
}

#[tokio::test]
async fn the_log_level_and_json_come_from_the_environment_or_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "[log]\nlevel = \"info\"\njson = false\n");
    let (_, stderr) = serve_until_ready(&config, &[("CHORUS_LOG_JSON", "true")], &[]).await;
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
    // A flag that silences everything below warn: not even "node ready".
    let dir = tempfile::tempdir().unwrap();
    let config = self::config(dir.path(), "");
    let (_, stderr) = serve_until_ready(&config, &[], &["--log-level", "warn"]).await;
    assert!(!stderr.contains("node ready"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let config = self::config(dir.path(), "");
    let (_, stderr) = serve_until_ready(&config, &[("CHORUS_LOG", "warn,chorus=info")], &[]).await;
    assert!(stderr.contains("node ready"), "{stderr}");
}

#[tokio::test]
async fn a_second_node_on_the_same_data_folder_is_told_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let first = common::spawn_serve(&path, "first-admin-password").await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("in use by another chorus node"), "{stderr}");
    assert!(stderr.contains("stop that node first"), "{stderr}");
    drop(first);
}
