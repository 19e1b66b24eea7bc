//! Results: merged raw steps become a [`RunReport`] (printed as a table and
//! written as JSON); the `report` command turns the JSON of the three
//! targets into the comparison document.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::coord::Mark;
use crate::stats::{Metric, Percentiles, StepRaw, new_histogram};
use crate::targets::TargetKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_gib: (memory_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// One step, merged over processes and summarised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    pub name: String,
    pub offered_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub delivered: u64,
    pub acked: u64,
    pub errors: u64,
    pub disconnects: u64,
    pub connects: u64,
    /// Pushes received per second of the step.
    pub throughput_per_s: f64,
    pub push_ms: Option<Percentiles>,
    pub ack_ms: Option<Percentiles>,
    pub connect_ms: Option<Percentiles>,
    /// Group: per message, the time to its last receiver.
    pub last_member_ms: Option<Percentiles>,
    /// Group: messages that reached every receiver.
    pub complete_messages: Option<u64>,
    /// Server CPU seconds from this step's start to the next barrier.
    pub server_cpu_s: Option<f64>,
    /// Cores used by the server over the same span.
    #[serde(default)]
    pub server_cores: Option<f64>,
    /// Cores used by everything but the server and the load generator over
    /// the same span: other work on the machine that disturbed the step.
    #[serde(default)]
    pub other_cores: Option<f64>,
    /// Server CPU per message sent in the step, in ms (the span includes
    /// the drain after the step, so the work of every message is in it).
    #[serde(default)]
    pub server_cpu_ms_per_msg: Option<f64>,
    /// Context switches of the server's threads per message sent, over
    /// the same span.
    #[serde(default)]
    pub server_switches_per_msg: Option<f64>,
    pub extra: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleSummary {
    pub connections: u64,
    pub server_rss_before_kb: Option<u64>,
    pub server_rss_after_kb: Option<u64>,
    pub server_kib_per_conn: Option<f64>,
    pub loadgen_kib_per_conn: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub tool: String,
    pub workload: String,
    pub target: TargetKind,
    pub label: String,
    pub server: String,
    pub params: serde_json::Value,
    pub machine: Machine,
    pub started_at_unix_s: u64,
    pub procs: usize,
    pub marks: Vec<Mark>,
    pub steps: Vec<StepSummary>,
    pub idle: Option<IdleSummary>,
}

fn percentiles(raw: &StepRaw, metric: Metric) -> anyhow::Result<Option<Percentiles>> {
    Ok(raw.histogram(metric)?.map(|h| Percentiles::of(&h)))
}

fn mark<'a>(marks: &'a [Mark], name: &str) -> Option<(usize, &'a Mark)> {
    marks.iter().enumerate().find(|(_, m)| m.name == name)
}

pub fn summarise(raw: &StepRaw, marks: &[Mark]) -> anyhow::Result<StepSummary> {
    let duration_s = raw.maxes.get("duration_s").copied().unwrap_or(0.0);
    let (mut last_member_ms, mut complete_messages) = (None, None);
    if !raw.slots.is_empty() {
        let receivers = raw.sums.get("receivers").copied().unwrap_or(0.0) as u32;
        let mut hist = new_histogram();
        for (max_us, count) in &raw.slots {
            if *count >= receivers && receivers > 0 {
                hist.saturating_record(*max_us);
            }
        }
        complete_messages = Some(hist.len());
        last_member_ms = (!hist.is_empty()).then(|| Percentiles::of(&hist));
    }
    let span = mark(marks, &raw.name).and_then(|(at, start)| Some((start, marks.get(at + 1)?)));
    let server_cpu_s = span.and_then(|(start, end)| Some(end.server_cpu_s? - start.server_cpu_s?));
    let wall_s = span.map(|(start, end)| end.at_ns.saturating_sub(start.at_ns) as f64 / 1e9);
    let server_cores = wall_s
        .filter(|w| *w > 0.0)
        .and_then(|w| Some(server_cpu_s? / w));
    let other_cores = span.and_then(|(start, end)| {
        let machine = end.machine_busy_s? - start.machine_busy_s?;
        let loadgen = raw.sums.get("loadgen_cpu_s").copied().unwrap_or(0.0);
        let wall = wall_s.filter(|w| *w > 0.0)?;
        Some(((machine - server_cpu_s.unwrap_or(0.0) - loadgen) / wall).max(0.0))
    });
    let per_msg = |total: Option<f64>| total.filter(|_| raw.sent > 0).map(|t| t / raw.sent as f64);
    let server_switches = span.and_then(|(start, end)| {
        Some(end.server_switches?.saturating_sub(start.server_switches?) as f64)
    });
    let mut extra = raw.sums.clone();
    extra.extend(raw.maxes.clone());
    Ok(StepSummary {
        name: raw.name.clone(),
        offered_rate: raw.sums.get("offered_rate").copied().unwrap_or(0.0),
        duration_s,
        sent: raw.sent,
        delivered: raw.pushes,
        acked: raw.acks,
        errors: raw.errors,
        disconnects: raw.disconnects,
        connects: raw.connects,
        throughput_per_s: if duration_s > 0.0 {
            raw.pushes as f64 / duration_s
        } else {
            0.0
        },
        push_ms: percentiles(raw, Metric::Push)?,
        ack_ms: percentiles(raw, Metric::Ack)?,
        connect_ms: percentiles(raw, Metric::Connect)?,
        last_member_ms,
        complete_messages,
        server_cpu_s,
        server_cores,
        other_cores,
        server_cpu_ms_per_msg: per_msg(server_cpu_s.map(|s| s * 1000.0)),
        server_switches_per_msg: per_msg(server_switches),
        extra,
    })
}

/// The idle figures: server memory from the marks around the connections.
pub fn idle_summary(step: &StepSummary, marks: &[Mark]) -> IdleSummary {
    let connections = step.extra.get("connections").copied().unwrap_or(0.0) as u64;
    let before = mark(marks, "before-connect").and_then(|(_, m)| m.server_rss_kb);
    let after = mark(marks, "held").and_then(|(_, m)| m.server_rss_kb);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) if connections > 0 => {
            Some(a.saturating_sub(b) as f64 / connections as f64)
        }
        _ => None,
    };
    IdleSummary {
        connections,
        server_rss_before_kb: before,
        server_rss_after_kb: after,
        server_kib_per_conn: per_conn,
        loadgen_kib_per_conn: step
            .extra
            .get("loadgen_rss_delta_kb")
            .copied()
            .unwrap_or(0.0)
            / connections.max(1) as f64,
    }
}

fn ms(p: &Option<Percentiles>, pick: impl Fn(&Percentiles) -> f64) -> String {
    p.as_ref()
        .map_or_else(|| "-".to_string(), |p| format!("{:.2}", pick(p)))
}

/// Returns the human table of a run.
pub fn table(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {} ({}{}), {} process(es)",
        report.workload,
        report.target.name(),
        report.server,
        if report.label.is_empty() {
            String::new()
        } else {
            format!(", {}", report.label)
        },
        report.procs
    );
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>8} {:>9} {:>8} {:>5} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>6} {:>6}",
        "step",
        "offered/s",
        "sent",
        "delivered",
        "acked",
        "err",
        "drop",
        "deliv/s",
        "push50",
        "push99",
        "pushmax",
        "ack50",
        "ack99",
        "conn50",
        "conn99",
        "last99",
        "srvcpu",
        "cpu/msg",
        "cs/msg",
        "other"
    );
    for s in &report.steps {
        let _ = writeln!(
            out,
            "{:<16} {:>9.0} {:>8} {:>9} {:>8} {:>5} {:>5} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>6} {:>6}",
            s.name,
            s.offered_rate,
            s.sent,
            s.delivered,
            s.acked,
            s.errors,
            s.disconnects,
            s.throughput_per_s,
            ms(&s.push_ms, |p| p.p50),
            ms(&s.push_ms, |p| p.p99),
            ms(&s.push_ms, |p| p.max),
            ms(&s.ack_ms, |p| p.p50),
            ms(&s.ack_ms, |p| p.p99),
            ms(&s.connect_ms, |p| p.p50),
            ms(&s.connect_ms, |p| p.p99),
            ms(&s.last_member_ms, |p| p.p99),
            s.server_cores.map_or("-".into(), |c| format!("{c:.2}")),
            s.server_cpu_ms_per_msg
                .map_or("-".into(), |c| format!("{c:.3}")),
            s.server_switches_per_msg
                .map_or("-".into(), |c| format!("{c:.1}")),
            s.other_cores.map_or("-".into(), |c| format!("{c:.2}")),
        );
    }
    let _ = writeln!(
        out,
        "(latencies in ms, from the scheduled send or connect; srvcpu: cores the server used, \
         cpu/msg: server CPU ms per message sent, cs/msg: server context switches per message sent, \
         other: cores used by other work on the machine, all from the step's start to the next phase)"
    );
    let loads: Vec<String> = report
        .marks
        .iter()
        .filter_map(|m| Some(format!("{:.1}", m.load_1m?)))
        .collect();
    if !loads.is_empty() {
        let _ = writeln!(
            out,
            "machine load average (1 min) at each phase: {}",
            loads.join(", ")
        );
    }
    if let Some(idle) = &report.idle {
        let _ = writeln!(
            out,
            "idle: {} connections, server RSS {} → {} KiB: {} KiB per connection; load generator {:.1} KiB per connection",
            idle.connections,
            idle.server_rss_before_kb
                .map_or("?".into(), |v| v.to_string()),
            idle.server_rss_after_kb
                .map_or("?".into(), |v| v.to_string()),
            idle.server_kib_per_conn
                .map_or("? (no --server-pid)".into(), |v| format!("{v:.1}")),
            idle.loadgen_kib_per_conn
        );
    }
    for s in &report.steps {
        for key in ["all_back_ms", "close_ms"] {
            if let Some(value) = s.extra.get(key) {
                let _ = writeln!(out, "{}: {key} = {value:.0}", s.name);
            }
        }
        if let Some(complete) = s.complete_messages {
            let _ = writeln!(
                out,
                "{}: {complete} of {} messages reached all {} receivers",
                s.name,
                s.sent,
                s.extra.get("receivers").copied().unwrap_or(0.0)
            );
        }
    }
    out
}

/// What the comparison document is built from: one run file per target and workload.
pub struct Inputs {
    runs: BTreeMap<(TargetKind, String), RunReport>,
}

const TARGETS: [TargetKind; 3] = [TargetKind::Chorus, TargetKind::Ejabberd, TargetKind::Nats];

impl Inputs {
    /// Reads `<target>-<workload>.json` files from a folder.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut runs = BTreeMap::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let report: RunReport = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            runs.insert((report.target, report.workload.clone()), report);
        }
        Ok(Inputs { runs })
    }

    fn run(&self, target: TargetKind, workload: &str) -> Option<&RunReport> {
        self.runs.get(&(target, workload.to_string()))
    }
}

/// The headline figures of one target.
#[derive(Default, Clone, Copy)]
struct Headline {
    kib_per_conn: Option<f64>,
    best_rate: Option<f64>,
    best_push_p99: Option<f64>,
    best_ack_p99: Option<f64>,
    loose_rate: Option<f64>,
    group_last_p50: Option<f64>,
    group_last_p99: Option<f64>,
    group_pushes_per_s: Option<f64>,
    churn_p99: Option<f64>,
    churn_rate: Option<f64>,
    mass_p99: Option<f64>,
    mass_all_back: Option<f64>,
    cpu_at_250: Option<f64>,
    cpu_at_4000: Option<f64>,
    cpu_at_12000: Option<f64>,
    switches_at_4000: Option<f64>,
    push_p99_at_1000: Option<f64>,
}

/// Picks one figure of a headline.
type Pick = fn(&Headline) -> Option<f64>;

/// Latency bound of the throughput headline.
const P99_BOUND_MS: f64 = 10.0;

/// A looser bound: where the server saturates, less sensitive to other work.
const LOOSE_P99_BOUND_MS: f64 = 100.0;

/// Returns the one-to-one step offered at `rate` msg/s.
fn step_at(run: Option<&RunReport>, rate: f64) -> Option<&StepSummary> {
    run?.steps
        .iter()
        .find(|s| (s.offered_rate - rate).abs() < 0.5)
}

fn headline(inputs: &Inputs, target: TargetKind) -> Headline {
    let mut h = Headline::default();
    let one = inputs.run(target, "one-to-one");
    h.cpu_at_250 = step_at(one, 250.0).and_then(|s| s.server_cpu_ms_per_msg);
    h.cpu_at_4000 = step_at(one, 4000.0).and_then(|s| s.server_cpu_ms_per_msg);
    h.cpu_at_12000 = step_at(one, 12000.0).and_then(|s| s.server_cpu_ms_per_msg);
    h.switches_at_4000 = step_at(one, 4000.0).and_then(|s| s.server_switches_per_msg);
    h.push_p99_at_1000 = step_at(one, 1000.0).and_then(|s| s.push_ms.map(|p| p.p99));
    if let Some(run) = inputs.run(target, "idle") {
        h.kib_per_conn = run.idle.as_ref().and_then(|i| i.server_kib_per_conn);
    }
    if let Some(run) = inputs.run(target, "one-to-one") {
        for step in &run.steps {
            let Some(push) = step.push_ms else { continue };
            let delivered_all = step.delivered as f64 >= 0.999 * step.sent as f64;
            if push.p99 < LOOSE_P99_BOUND_MS
                && delivered_all
                && step.disconnects == 0
                && h.loose_rate.is_none_or(|r| step.throughput_per_s > r)
            {
                h.loose_rate = Some(step.throughput_per_s);
            }
            if push.p99 < P99_BOUND_MS
                && delivered_all
                && step.disconnects == 0
                && h.best_rate.is_none_or(|r| step.throughput_per_s > r)
            {
                h.best_rate = Some(step.throughput_per_s);
                h.best_push_p99 = Some(push.p99);
                h.best_ack_p99 = step.ack_ms.map(|a| a.p99);
            }
        }
    }
    if let Some(step) = inputs.run(target, "group").and_then(|r| r.steps.first()) {
        h.group_last_p50 = step.last_member_ms.map(|p| p.p50);
        h.group_last_p99 = step.last_member_ms.map(|p| p.p99);
        h.group_pushes_per_s = Some(step.throughput_per_s);
    }
    if let Some(run) = inputs.run(target, "churn") {
        if let Some(step) = run.steps.iter().find(|s| s.name == "churn") {
            h.churn_p99 = step.connect_ms.map(|p| p.p99);
            h.churn_rate = Some(step.connects as f64 / step.duration_s.max(1e-9));
        }
        if let Some(step) = run.steps.iter().find(|s| s.name == "mass-reconnect") {
            h.mass_p99 = step.connect_ms.map(|p| p.p99);
            h.mass_all_back = step.extra.get("all_back_ms").copied();
        }
    }
    h
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

fn ratio(chorus: Option<f64>, other: Option<f64>) -> String {
    match (chorus, other) {
        (Some(c), Some(o)) if o > 0.0 => format!("{:.2}×", c / o),
        _ => "n/a".to_string(),
    }
}

/// Where the document's free text comes from, and the reproduce command.
pub struct DocText<'a> {
    pub command: &'a str,
    pub notes: Option<String>,
    pub fsync_ms: Option<f64>,
}

/// Reads a run parameter as text: numbers without a needless ".0", lists joined.
fn param(run: Option<&RunReport>, key: &str) -> String {
    fn text(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
                _ => n.to_string(),
            },
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => {
                items.iter().map(text).collect::<Vec<_>>().join(", ")
            }
            other => other.to_string(),
        }
    }
    run.and_then(|r| r.params.get(key))
        .map(text)
        .unwrap_or_else(|| "?".into())
}

/// Returns the mean cores other work used during a target's steps.
fn other_cores(inputs: &Inputs, target: TargetKind) -> Option<f64> {
    let values: Vec<f64> = inputs
        .runs
        .values()
        .filter(|r| r.target == target)
        .flat_map(|r| r.steps.iter().filter_map(|s| s.other_cores))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The three-node row: the one-to-one sweep against a cluster whose
/// clients are spread over every node, CPU summed over the nodes.
fn cluster_section(out: &mut String, cluster: &Inputs) {
    let Some(run) = cluster.run(TargetKind::Chorus, "one-to-one") else {
        return;
    };
    let nodes = run.server.split(',').count().max(1);
    let h = headline(cluster, TargetKind::Chorus);
    let best = run
        .steps
        .iter()
        .find(|s| Some(s.throughput_per_s) == h.best_rate);
    let _ = writeln!(
        out,
        "\n## {nodes} nodes\n\n\
         One-to-one against {nodes} Chorus nodes on this machine (replication factor {nodes}:\n\
         every append is fsynced on a majority before the ack), the pairs' users spread\n\
         over all nodes, so most messages cross a peer link to their partition's leader\n\
         and again to the receiver's node. The nodes and the load generator share the\n\
         same two cores.\n\n\
         | figure | {nodes} nodes |\n|---|---:|\n\
         | one-to-one throughput with push p99 < {P99_BOUND_MS} ms (msg/s) | {} |\n\
         | one-to-one throughput with push p99 < {LOOSE_P99_BOUND_MS} ms (msg/s) | {} |\n\
         |   push p99 at that rate (ms) | {} |\n\
         |   server CPU per message at that rate, all nodes (ms) | {} |\n\
         |   server CPU per message at that rate, per node (ms) | {} |\n\
         |   server CPU per message at 4,000 msg/s, per node (ms) | {} |",
        cell(h.best_rate, 0),
        cell(h.loose_rate, 0),
        cell(h.best_push_p99, 2),
        cell(best.and_then(|s| s.server_cpu_ms_per_msg), 3),
        cell(
            best.and_then(|s| s.server_cpu_ms_per_msg)
                .map(|c| c / nodes as f64),
            3
        ),
        cell(h.cpu_at_4000.map(|c| c / nodes as f64), 3),
    );
    let _ = writeln!(out, "\n```text\n{}```", table(run));
}

/// Writes the comparison document; `cluster`, when given, holds the
/// results of the multi-node run.
pub fn document(inputs: &Inputs, cluster: Option<&Inputs>, text: &DocText) -> String {
    let heads: Vec<Headline> = TARGETS.iter().map(|t| headline(inputs, *t)).collect();
    let any = inputs.runs.values().next();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks: Chorus, ejabberd and NATS side by side\n"
    );
    let _ = writeln!(
        out,
        "Generated by `chorus-bench report` from the JSON results of one run of\n\
         `benches/compare/run.sh`. Every figure comes from the same load generator\n\
         (`benches/loadgen`, open loop: sends are scheduled by the clock and latency\n\
         counts from the scheduled time) speaking each server's own protocol on\n\
         loopback: Chorus TCP frames, XMPP to ejabberd, the NATS text protocol.\n"
    );
    let _ = writeln!(out, "## Machine\n");
    if let Some(run) = any {
        let m = &run.machine;
        let _ = writeln!(
            out,
            "- {} cores ({}), {} GiB memory, Linux {}",
            m.cores, m.cpu, m.memory_gib, m.kernel
        );
    }
    let _ = writeln!(
        out,
        "- server and load generator share the machine: both cores serve both"
    );
    if let Some(fsync) = text.fsync_ms {
        let _ = writeln!(
            out,
            "- one synced 4 KiB write on the data disk: {fsync:.2} ms (measured by the script)"
        );
    }
    let busy: Vec<String> = TARGETS
        .iter()
        .filter_map(|t| {
            Some(format!(
                "{:.2} during {}",
                other_cores(inputs, *t)?,
                t.name()
            ))
        })
        .collect();
    if !busy.is_empty() {
        let _ = writeln!(
            out,
            "- other work on the machine (builds and tests of other sessions) used, in\n  \
             cores on average over the measured steps: {}; the servers and the load\n  \
             generator shared what was left of the 2 cores (the `other` column of the details)",
            busy.join(", ")
        );
    }
    for target in TARGETS {
        if let Some(run) = inputs.runs.values().find(|r| r.target == target) {
            let _ = writeln!(
                out,
                "- {}: {}",
                target.name(),
                if run.label.is_empty() {
                    "?"
                } else {
                    &run.label
                }
            );
        }
    }
    let idle = inputs.run(TargetKind::Chorus, "idle");
    let one = inputs.run(TargetKind::Chorus, "one-to-one");
    let group = inputs.run(TargetKind::Chorus, "group");
    let churn = inputs.run(TargetKind::Chorus, "churn");
    let _ = writeln!(out, "\n## Sizes\n");
    let _ = writeln!(
        out,
        "- idle: {} logged-in connections, held {}\n\
         - one-to-one: {} pairs (each message alternates direction), 64-byte bodies, offered rates {} msg/s, {} each\n\
         - group: one group of {} members all online, one member sends {} msg/s for {}\n\
         - churn: connect + login + disconnect at {}/s for {} over {} accounts; then a mass reconnect of {} sessions spread over {}",
        param(idle, "conns"),
        param(idle, "hold"),
        param(one, "pairs"),
        param(one, "rate"),
        param(one, "duration"),
        param(group, "members"),
        param(group, "rate"),
        param(group, "duration"),
        param(churn, "rate"),
        param(churn, "duration"),
        param(churn, "pool"),
        param(churn, "mass"),
        param(churn, "window"),
    );
    let members = param(group, "members");
    let _ = writeln!(out, "\n## Headline\n");
    let _ = writeln!(
        out,
        "| figure | Chorus | ejabberd | NATS | Chorus ÷ ejabberd | Chorus ÷ NATS |\n|---|---:|---:|---:|---:|---:|"
    );
    let rows: Vec<(String, Pick, usize)> = vec![
        (
            "idle memory per connection, server RSS (KiB; lower is better)".into(),
            |h| h.kib_per_conn,
            1,
        ),
        (
            format!(
                "one-to-one throughput with push p99 < {P99_BOUND_MS} ms (msg/s; higher is better)"
            ),
            |h| h.best_rate,
            0,
        ),
        (
            format!(
                "one-to-one throughput with push p99 < {LOOSE_P99_BOUND_MS} ms (msg/s; higher is better)"
            ),
            |h| h.loose_rate,
            0,
        ),
        (
            format!("  push p99 at the {P99_BOUND_MS} ms rate (ms)"),
            |h| h.best_push_p99,
            2,
        ),
        (
            format!("  ack p99 at the {P99_BOUND_MS} ms rate (ms; Chorus: durable ack)"),
            |h| h.best_ack_p99,
            2,
        ),
        (
            "  push p99 at 1,000 msg/s (ms)".into(),
            |h| h.push_p99_at_1000,
            2,
        ),
        (
            "  server CPU per message at 250 msg/s (ms)".into(),
            |h| h.cpu_at_250,
            3,
        ),
        (
            "  server CPU per message at 4,000 msg/s (ms)".into(),
            |h| h.cpu_at_4000,
            3,
        ),
        (
            "  server CPU per message at 12,000 msg/s (ms)".into(),
            |h| h.cpu_at_12000,
            3,
        ),
        (
            "  server context switches per message at 4,000 msg/s".into(),
            |h| h.switches_at_4000,
            1,
        ),
        (
            format!("group fan-out, time to the last of {members} members, p50 (ms)"),
            |h| h.group_last_p50,
            2,
        ),
        (
            format!("group fan-out, time to the last of {members} members, p99 (ms)"),
            |h| h.group_last_p99,
            2,
        ),
        (
            "group pushes delivered per second".into(),
            |h| h.group_pushes_per_s,
            0,
        ),
        ("churn: connect + login p99 (ms)".into(), |h| h.churn_p99, 2),
        (
            "churn: logins completed per second".into(),
            |h| h.churn_rate,
            0,
        ),
        ("mass reconnect: login p99 (ms)".into(), |h| h.mass_p99, 2),
        (
            "mass reconnect: all sessions back (ms, includes the spread window)".into(),
            |h| h.mass_all_back,
            0,
        ),
    ];
    for (label, pick, digits) in rows {
        let values: Vec<Option<f64>> = heads.iter().map(pick).collect();
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} |",
            cell(values[0], digits),
            cell(values[1], digits),
            cell(values[2], digits),
            ratio(values[0], values[1]),
            ratio(values[0], values[2]),
        );
    }
    if let Some(cluster) = cluster {
        cluster_section(&mut out, cluster);
    }
    if let Some(notes) = &text.notes {
        let _ = writeln!(out, "\n{}", notes.trim_end());
    }
    let _ = writeln!(out, "\n## Details\n");
    for target in TARGETS {
        let _ = writeln!(out, "### {}\n", target.name());
        for workload in ["idle", "one-to-one", "group", "churn"] {
            let Some(run) = inputs.run(target, workload) else {
                continue;
            };
            let _ = writeln!(out, "`{workload}`:\n\n```text\n{}```\n", table(run));
        }
    }
    let _ = writeln!(out, "## Reproduce\n");
    let _ = writeln!(
        out,
        "```sh\n{}\n```\n\nThe script installs the Debian packages, builds Chorus in release, starts each\nserver on loopback in turn, runs the same `chorus-bench` commands against it\n(they are printed as it goes) and rewrites this file. After the release build a\nrun takes 7 to 13 minutes on this machine, about 3 of them creating the 5,000\nChorus users (two argon2 hashes each). Sizes can be changed through the\nenvironment (see the head of the script).",
        text.command
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_cells_read_well() {
        assert_eq!(ratio(Some(2.0), Some(4.0)), "0.50×");
        assert_eq!(ratio(Some(2.0), None), "n/a");
        assert_eq!(cell(Some(1.23456), 2), "1.23");
        assert_eq!(cell(None, 0), "n/a");
    }
}
