//! Running one workload in several processes. The parent re-executes itself
//! as K workers, each holding a slice of the connections. Workload phases
//! are separated by named barriers: every worker writes a `ready` line on
//! stdout, the parent (once all are ready) notes the server's memory and CPU
//! and answers on each worker's stdin with a common start time, or a stop.
//! At the end each worker writes its raw step records; the parent merges them.
//! With one process the same barriers run in-process.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::clock::now_ns;
use crate::stats::StepRaw;

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Returns the resident memory of a process in KiB (VmRSS).
pub fn rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the user plus system CPU seconds a process has used.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Returns the context switches (voluntary and not) of every live thread of
/// a process. Threads that already exited are not counted; a server's
/// runtime threads live as long as it does.
pub fn context_switches(pid: &str) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue; // the thread exited meanwhile
        };
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches:")
                || line.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
            }
        }
    }
    Some(total)
}

/// Sums one figure over the server's processes (the nodes of a cluster);
/// None when there are none or one could not be read.
fn sum_over<T: std::iter::Sum>(pids: &[u32], read: impl Fn(&str) -> Option<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| read(&pid.to_string())).sum()
}

/// Returns the machine's one-minute load average.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Returns the CPU seconds the whole machine has been busy (all cores).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy = fields
        .get(..8)?
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4);
    Some(busy.map(|(_, v)| v).sum::<f64>() / TICKS_PER_SECOND)
}

/// The server's figures at one barrier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mark {
    pub name: String,
    pub at_ns: u64,
    pub server_rss_kb: Option<u64>,
    pub server_cpu_s: Option<f64>,
    /// Context switches of the server's threads so far.
    #[serde(default)]
    pub server_switches: Option<u64>,
    /// The machine's one-minute load average (other work shares the cores).
    #[serde(default)]
    pub load_1m: Option<f64>,
    /// CPU seconds the whole machine has been busy, to tell other work apart.
    #[serde(default)]
    pub machine_busy_s: Option<f64>,
}

/// Server figures taken at each barrier (when server pids were given),
/// summed over the server's processes.
#[derive(Debug, Default)]
pub struct Marks {
    server_pids: Vec<u32>,
    pub list: Vec<Mark>,
}

impl Marks {
    pub fn new(server_pids: Vec<u32>) -> Self {
        Marks {
            server_pids,
            list: Vec::new(),
        }
    }

    fn mark(&mut self, name: &str) {
        let pids = &self.server_pids;
        self.list.push(Mark {
            name: name.to_string(),
            at_ns: now_ns(),
            server_rss_kb: sum_over(pids, rss_kb),
            server_cpu_s: sum_over(pids, cpu_seconds),
            server_switches: sum_over(pids, context_switches),
            load_1m: load_average(),
            machine_busy_s: machine_busy_seconds(),
        });
    }
}

/// What a barrier tells the processes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Go {
    /// When the next phase starts, the same for every process.
    pub start_ns: u64,
    /// Some process asked to stop (e.g. a sweep went past its latency limit).
    pub stop: bool,
}

/// Lead time between a barrier and the common start.
const LEAD_NS: u64 = 100_000_000;

#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WorkerLine {
    Ready { barrier: String, proceed: bool },
    Result { steps: Vec<StepRaw> },
}

/// This process's side of the barriers.
pub enum Coord {
    /// The only process: barriers only take the marks.
    Local(Marks),
    /// A worker: barriers go through stdout and stdin.
    Worker(Lines<BufReader<tokio::io::Stdin>>),
}

impl Coord {
    pub fn worker() -> Self {
        Coord::Worker(BufReader::new(tokio::io::stdin()).lines())
    }

    /// Waits for every process to reach `name`. `proceed` false asks all to stop.
    pub async fn barrier(&mut self, name: &str, proceed: bool) -> anyhow::Result<Go> {
        match self {
            Coord::Local(marks) => {
                marks.mark(name);
                Ok(Go {
                    start_ns: now_ns() + LEAD_NS,
                    stop: !proceed,
                })
            }
            Coord::Worker(lines) => {
                let line = WorkerLine::Ready {
                    barrier: name.to_string(),
                    proceed,
                };
                println!("{}", serde_json::to_string(&line)?);
                let answer = lines
                    .next_line()
                    .await?
                    .context("the parent closed stdin")?;
                Ok(serde_json::from_str(&answer)?)
            }
        }
    }

    /// Hands the results to the parent (a worker) or returns them (local).
    pub fn finish(self, steps: Vec<StepRaw>) -> anyhow::Result<(Vec<StepRaw>, Vec<Mark>)> {
        match self {
            Coord::Local(marks) => Ok((steps, marks.list)),
            Coord::Worker(_) => {
                println!("{}", serde_json::to_string(&WorkerLine::Result { steps })?);
                Ok((Vec::new(), Vec::new()))
            }
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// Runs `procs` workers of this binary with `args` plus their index and the
/// plan file; relays barriers; returns their merged steps and the marks.
pub async fn run_workers(
    args: &[String],
    procs: usize,
    plan_path: &Path,
    mut marks: Marks,
) -> anyhow::Result<(Vec<StepRaw>, Vec<Mark>)> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut workers = Vec::new();
    for index in 0..procs {
        let mut child = Command::new(&exe)
            .args(args)
            .arg("--worker")
            .arg(index.to_string())
            .arg("--plan")
            .arg(plan_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        workers.push(Worker {
            child,
            stdin,
            stdout,
        });
    }
    let mut merged: Option<Vec<StepRaw>> = None;
    loop {
        let mut barrier = None;
        let mut proceed = true;
        let mut results = 0;
        for (index, worker) in workers.iter_mut().enumerate() {
            let line = worker
                .stdout
                .next_line()
                .await?
                .with_context(|| format!("worker {index} exited early"))?;
            match serde_json::from_str(&line)
                .with_context(|| format!("worker {index} wrote {line:?}"))?
            {
                WorkerLine::Ready {
                    barrier: name,
                    proceed: ok,
                } => {
                    if barrier.get_or_insert_with(|| name.clone()) != &name {
                        bail!("workers disagree on the barrier: {barrier:?} and {name}");
                    }
                    proceed &= ok;
                }
                WorkerLine::Result { steps } => {
                    results += 1;
                    match &mut merged {
                        None => merged = Some(steps),
                        Some(all) => {
                            for (mine, theirs) in all.iter_mut().zip(&steps) {
                                mine.merge(theirs)?;
                            }
                        }
                    }
                }
            }
        }
        if results == procs {
            break;
        }
        let Some(name) = barrier.filter(|_| results == 0) else {
            bail!("workers are out of step: some finished while others wait");
        };
        marks.mark(&name);
        let go = Go {
            start_ns: now_ns() + LEAD_NS,
            stop: !proceed,
        };
        let line = format!("{}\n", serde_json::to_string(&go)?);
        for worker in &mut workers {
            worker.stdin.write_all(line.as_bytes()).await?;
        }
    }
    for worker in &mut workers {
        worker.child.wait().await?;
    }
    Ok((merged.unwrap_or_default(), marks.list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_figures() {
        let me = std::process::id().to_string();
        assert!(rss_kb(&me).unwrap() > 0);
        assert!(cpu_seconds(&me).unwrap() >= 0.0);
        assert_eq!(rss_kb("not-a-pid"), None);
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }
}
