//! The CI-sized chaos run: three nodes, SIGKILL, SIGSTOP, network
//! partitions (the first isolates the node leading the most partitions) and
//! delay with loss, under a client workload, replayable by seed
//! (CHAOS_SEED), zero anomalies. A long run: `CHAOS_FAULTS=400 cargo nextest
//! run -p chorus-chaos --run-ignored ignored-only --no-capture` (see
//! docs/chaos.md).

use chorus_chaos::{Fault, Operation, RunSettings, Scenario, Target, run};

const KINDS: [Fault; 4] = [Fault::Kill, Fault::Pause, Fault::Partition, Fault::Degrade];

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
    let scenario = Scenario::generate(seed, 3, faults, &KINDS);
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
            "{:?} held {:?}: {} clients hit, longest write stop {:?}, {} client errors",
            fault.operation,
            fault.held,
            fault.clients_hit,
            fault.writes_resumed_after,
            fault.errors
        );
    }
    println!(
        "| fault | count | held (median) | clients hit | writes resumed after (median) | (max) | client errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    for kind in report.by_kind() {
        println!(
            "| {} | {} | {:.1} s | {} | {:.1} s | {:.1} s | {} |",
            kind.kind,
            kind.faults,
            kind.median_held.as_secs_f64(),
            kind.clients_hit,
            kind.median_resumed.as_secs_f64(),
            kind.max_resumed.as_secs_f64(),
            kind.errors
        );
    }
    assert!(
        report.anomalies.is_empty(),
        "seed {seed}: {:#?}",
        report.anomalies
    );
    assert!(report.acked > 100, "the workload made progress: {report:?}");
    if faults >= KINDS.len() {
        assert!(
            report.faults.iter().any(|f| matches!(
                f.operation,
                Operation::Partition {
                    node: Target::Node(_),
                    ..
                }
            )),
            "a partition ran: {:?}",
            report.faults
        );
    }
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
async fn kills_pauses_and_partitions_under_traffic_keep_every_invariant() {
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
