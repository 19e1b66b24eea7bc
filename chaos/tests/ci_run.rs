//! The CI-sized chaos run: three nodes, SIGKILL and SIGSTOP faults under a
//! client workload, replayable by seed (CHAOS_SEED), zero anomalies. A long
//! run: `CHAOS_FAULTS=400 cargo nextest run -p chorus-chaos --run-ignored
//! ignored-only --no-capture` (30 to 40 minutes).

use chorus_chaos::{Fault, RunSettings, Scenario, run};

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        })
}

async fn run_faults(faults: usize) {
    let seed = seed();
    println!("chaos seed {seed} (replay with CHAOS_SEED={seed})");
    let scenario = Scenario::generate(seed, 3, faults, &[Fault::Kill, Fault::Pause]);
    let settings = RunSettings {
        nodes: 3,
        clients: 6,
        partitions: 8,
    };
    let report = run(&scenario, &settings).await.expect("the run completes");
    println!(
        "invoked {}, acked {}, gave up {}",
        report.invoked, report.acked, report.gave_up
    );
    for fault in &report.faults {
        println!(
            "{:?}: writes resumed for every client after {:?}",
            fault.operation, fault.writes_resumed_after
        );
    }
    assert!(
        report.anomalies.is_empty(),
        "seed {seed}: {:#?}",
        report.anomalies
    );
    assert!(report.acked > 100, "the workload made progress: {report:?}");
    assert!(
        report
            .faults
            .iter()
            .all(|f| f.writes_resumed_after.is_some()),
        "writes resumed after every fault: {:?}",
        report.faults
    );
}

#[tokio::test]
async fn kills_and_pauses_under_traffic_keep_every_invariant() {
    run_faults(6).await;
}

#[tokio::test]
#[ignore = "long run, 30 to 40 minutes: see the file's doc"]
async fn a_long_run_keeps_every_invariant() {
    let faults = std::env::var("CHAOS_FAULTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    run_faults(faults).await;
}
