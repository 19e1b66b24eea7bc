//! The scale test: five node processes and several load-generator
//! processes hold 60,000 authenticated connections (no process may hold
//! more than 20,000 open files here) while pairs of users exchange messages.
//! Ignored in CI: it needs a release build and several minutes. Run it with
//! the command in the README; its figures print at the end.

use std::process::Stdio;
use std::time::{Duration, Instant};

use chorus_cluster_tests::{ADMIN_PASSWORD, Cluster, workspace_binary};
use serde_json::Value;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills a process group when dropped, also when the test fails.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // Not `kill -KILL -PGID`: Debian's procps kill misreads it and
        // signals another group (under strace, `kill -KILL -99999` calls
        // kill(-9, SIGKILL)), which took down other processes on the machine.
        let pgid = nix::unistd::Pid::from_raw(i32::try_from(self.0).expect("a pid fits i32"));
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs a release build and several minutes; see the README"]
async fn sixty_thousand_connections_on_five_nodes_with_messages_flowing() {
    let conns = env_usize("CHORUS_SCALE_CONNS", 60_000);
    // Four connections per account (each resumes the account's token), so
    // that setup hashes a quarter as many passwords.
    let accounts = conns.div_ceil(4);
    let bench = workspace_binary(
        "chorus-bench",
        "cargo build --release -p chorus -p chorus-bench",
    );
    let mut cluster = Cluster::builder().nodes(5).start().await.unwrap();
    let servers: Vec<String> = cluster.nodes.iter().map(|n| n.tcp.clone()).collect();
    let servers = servers.join(",");
    let http = cluster.nodes[0].http.clone();
    let scratch = tempfile::tempdir().unwrap();
    let path = |name: &str| scratch.path().join(name).display().to_string();

    let started = Instant::now();
    let mut idle = tokio::process::Command::new(&bench)
        .args(["idle", "--conns", &conns.to_string()])
        .args(["--accounts", &accounts.to_string()])
        .args(["--server", &servers, "--http", &http])
        .args(["--hold", "1800s", "--user-prefix", "scale"])
        .args(["--token-cache", &path("tokens.json")])
        .env("CHORUS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        // Its own process group: the workers it re-executes go with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let idle_group = KillGroup(idle.id().expect("idle load generator pid"));

    // Wait until the cluster holds every connection.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let per_node = loop {
        let mut per_node = Vec::new();
        for index in 0..cluster.nodes.len() {
            let status = cluster.status(index).await.unwrap();
            per_node.push(status["sessions"].as_u64().unwrap_or(0));
        }
        if per_node.iter().sum::<u64>() >= conns as u64 {
            break per_node;
        }
        assert!(
            idle.try_wait().unwrap().is_none(),
            "the idle load generator exited early"
        );
        assert!(
            Instant::now() < deadline,
            "only {per_node:?} connections after an hour"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let connected_after = started.elapsed();
    println!("connections per node at peak: {per_node:?} (all held after {connected_after:?})");

    // Messages flow while every connection is held.
    let flow = tokio::process::Command::new(&bench)
        .args(["one-to-one", "--pairs", "100", "--rate", "200,400"])
        .args(["--duration", "20s", "--server", &servers, "--http", &http])
        .args(["--user-prefix", "flow", "--json", &path("flow.json")])
        .args(["--token-cache", &path("tokens.json")])
        .env("CHORUS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .status()
        .await
        .unwrap();
    assert!(flow.success(), "one-to-one failed: {flow}");
    let mut still = Vec::new();
    for index in 0..cluster.nodes.len() {
        let status = cluster.status(index).await.unwrap();
        still.push(status["sessions"].as_u64().unwrap_or(0));
    }
    let rss: Vec<u64> = cluster
        .nodes
        .iter()
        .filter_map(|n| n.pid())
        .map(rss_kib)
        .collect();
    drop(idle_group);
    let _ = idle.wait().await;

    let report: Value = serde_json::from_slice(&std::fs::read(path("flow.json")).unwrap()).unwrap();
    println!("connections per node after the message flow: {still:?}");
    println!(
        "node RSS (KiB): {rss:?}, {:.1} KiB per connection",
        rss.iter().sum::<u64>() as f64 / conns as f64
    );
    for step in report["steps"].as_array().unwrap() {
        println!(
            "one-to-one at {} msg/s: acked {}, errors {}, ack p50 {} ms p99 {} ms, push p99 {} ms",
            step["offered_rate"],
            step["acked"],
            step["errors"],
            step["ack_ms"]["p50"],
            step["ack_ms"]["p99"],
            step["push_ms"]["p99"]
        );
        assert!(step["acked"].as_u64().unwrap_or(0) > 0, "no message flowed");
    }
    assert!(
        still.iter().sum::<u64>() >= conns as u64,
        "connections dropped while messages flowed: {still:?}"
    );
}
