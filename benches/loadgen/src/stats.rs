//! What a run records: latency histograms (microseconds, HdrHistogram),
//! counters, and the per-message fan-out slots of the group workload. A
//! worker turns its records into a [`StepRaw`]; the parent merges the raws of
//! all workers and summarises them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::clock::now_ns;

/// Highest latency a histogram holds: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Returns the microseconds from `sent_ns` to now, at least 1.
pub fn elapsed_us(sent_ns: u64) -> u64 {
    (now_ns().saturating_sub(sent_ns) / 1_000).clamp(1, MAX_US)
}

/// The latencies one step records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Scheduled send to the receiver's push.
    Push,
    /// Scheduled send to the server's acknowledgement.
    Ack,
    /// Scheduled connect to an authenticated session.
    Connect,
}

const METRICS: [Metric; 3] = [Metric::Push, Metric::Ack, Metric::Connect];

/// The fastest and slowest receiver of one group message.
#[derive(Default)]
struct Slot {
    max_us: AtomicU64,
    count: AtomicU32,
}

/// The records of one step in one process, shared by every connection task.
pub struct StepRecorder {
    hists: [Mutex<Histogram<u64>>; 3],
    slots: Vec<Slot>,
    pub sent: AtomicU64,
    pub pushes: AtomicU64,
    pub acks: AtomicU64,
    pub errors: AtomicU64,
    pub disconnects: AtomicU64,
    pub connects: AtomicU64,
}

impl StepRecorder {
    /// A recorder; `group_messages` slots track fan-out per message.
    pub fn new(group_messages: usize) -> Self {
        StepRecorder {
            hists: METRICS.map(|_| Mutex::new(new_histogram())),
            slots: (0..group_messages).map(|_| Slot::default()).collect(),
            sent: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            connects: AtomicU64::new(0),
        }
    }

    pub fn record(&self, metric: Metric, us: u64) {
        let index = METRICS.iter().position(|m| *m == metric).unwrap_or(0);
        let mut hist = self.hists[index].lock().unwrap_or_else(|p| p.into_inner());
        hist.saturating_record(us);
    }

    /// Records a push of message `k`, sent at `sent_ns`.
    pub fn push(&self, sent_ns: u64, k: u64) {
        let us = elapsed_us(sent_ns);
        self.record(Metric::Push, us);
        self.pushes.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.slots.get(k as usize) {
            slot.max_us.fetch_max(us, Ordering::Relaxed);
            slot.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn ack(&self, sent_ns: u64) {
        self.record(Metric::Ack, elapsed_us(sent_ns));
        self.acks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connected(&self, started_ns: u64) {
        self.record(Metric::Connect, elapsed_us(started_ns));
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns a percentile (0..=100) of a metric so far, in milliseconds.
    pub fn percentile_ms(&self, metric: Metric, percentile: f64) -> Option<f64> {
        let index = METRICS.iter().position(|m| *m == metric).unwrap_or(0);
        let hist = self.hists[index].lock().unwrap_or_else(|p| p.into_inner());
        (!hist.is_empty()).then(|| hist.value_at_percentile(percentile) as f64 / 1000.0)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Freezes the records into a mergeable raw step.
    pub fn to_raw(&self, name: &str) -> anyhow::Result<StepRaw> {
        let mut hists = BTreeMap::new();
        for (metric, hist) in METRICS.iter().zip(&self.hists) {
            let hist = hist.lock().unwrap_or_else(|p| p.into_inner());
            if hist.is_empty() {
                continue;
            }
            let mut bytes = Vec::new();
            V2Serializer::new()
                .serialize(&hist, &mut bytes)
                .map_err(|e| anyhow::anyhow!("serializing a histogram: {e:?}"))?;
            hists.insert(*metric, STANDARD.encode(bytes));
        }
        Ok(StepRaw {
            name: name.to_string(),
            sent: Self::get(&self.sent),
            pushes: Self::get(&self.pushes),
            acks: Self::get(&self.acks),
            errors: Self::get(&self.errors),
            disconnects: Self::get(&self.disconnects),
            connects: Self::get(&self.connects),
            hists,
            slots: self
                .slots
                .iter()
                .map(|s| {
                    (
                        s.max_us.load(Ordering::Relaxed),
                        s.count.load(Ordering::Relaxed),
                    )
                })
                .collect(),
            sums: BTreeMap::new(),
            maxes: BTreeMap::new(),
        })
    }
}

/// One step of one process, in a form that crosses process boundaries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepRaw {
    pub name: String,
    pub sent: u64,
    pub pushes: u64,
    pub acks: u64,
    pub errors: u64,
    pub disconnects: u64,
    pub connects: u64,
    /// V2-serialised histograms, base64.
    pub hists: BTreeMap<Metric, String>,
    /// Per group message: the slowest receiver's latency (µs) and how many received it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<(u64, u32)>,
    /// Figures that add up over processes.
    #[serde(default)]
    pub sums: BTreeMap<String, f64>,
    /// Figures whose overall value is the largest over processes.
    #[serde(default)]
    pub maxes: BTreeMap<String, f64>,
}

pub fn decode_histogram(encoded: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = STANDARD.decode(encoded).context("histogram base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("deserializing a histogram: {e:?}"))
}

impl StepRaw {
    /// Adds another process's records of the same step.
    pub fn merge(&mut self, other: &StepRaw) -> anyhow::Result<()> {
        self.sent += other.sent;
        self.pushes += other.pushes;
        self.acks += other.acks;
        self.errors += other.errors;
        self.disconnects += other.disconnects;
        self.connects += other.connects;
        for (metric, encoded) in &other.hists {
            let mut merged = decode_histogram(encoded)?;
            if let Some(mine) = self.hists.get(metric) {
                merged
                    .add(decode_histogram(mine)?)
                    .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
            }
            let mut bytes = Vec::new();
            V2Serializer::new()
                .serialize(&merged, &mut bytes)
                .map_err(|e| anyhow::anyhow!("serializing a histogram: {e:?}"))?;
            self.hists.insert(*metric, STANDARD.encode(bytes));
        }
        if self.slots.len() < other.slots.len() {
            self.slots.resize(other.slots.len(), (0, 0));
        }
        for (mine, theirs) in self.slots.iter_mut().zip(&other.slots) {
            mine.0 = mine.0.max(theirs.0);
            mine.1 += theirs.1;
        }
        for (key, value) in &other.sums {
            *self.sums.entry(key.clone()).or_default() += value;
        }
        for (key, value) in &other.maxes {
            let entry = self.maxes.entry(key.clone()).or_insert(*value);
            *entry = entry.max(*value);
        }
        Ok(())
    }

    pub fn histogram(&self, metric: Metric) -> anyhow::Result<Option<Histogram<u64>>> {
        self.hists
            .get(&metric)
            .map(|encoded| decode_histogram(encoded))
            .transpose()
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(hist: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: hist.len(),
            mean: hist.mean() / 1000.0,
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raws_merge_histograms_counters_and_slots() {
        let a = StepRecorder::new(2);
        let b = StepRecorder::new(2);
        a.record(Metric::Push, 1_000);
        a.record(Metric::Push, 3_000);
        b.record(Metric::Push, 9_000);
        b.record(Metric::Ack, 500);
        a.pushes.fetch_add(2, Ordering::Relaxed);
        b.pushes.fetch_add(1, Ordering::Relaxed);
        let mut raw_a = a.to_raw("s").unwrap();
        let mut raw_b = b.to_raw("s").unwrap();
        raw_a.slots = vec![(10, 1), (5, 2)];
        raw_b.slots = vec![(7, 3), (50, 1)];
        raw_a.maxes.insert("all_back_ms".into(), 10.0);
        raw_b.maxes.insert("all_back_ms".into(), 12.0);
        raw_b.sums.insert("connected".into(), 4.0);
        raw_a.merge(&raw_b).unwrap();
        assert_eq!(raw_a.pushes, 3);
        assert_eq!(raw_a.slots, vec![(10, 4), (50, 3)]);
        assert_eq!(raw_a.maxes["all_back_ms"], 12.0);
        assert_eq!(raw_a.sums["connected"], 4.0);
        let push = raw_a.histogram(Metric::Push).unwrap().unwrap();
        assert_eq!(push.len(), 3);
        assert!(push.max() >= 9_000);
        assert_eq!(raw_a.histogram(Metric::Ack).unwrap().unwrap().len(), 1);
        let p = Percentiles::of(&push);
        assert!((p.p50 - 3.0).abs() < 0.01, "{p:?}");
    }
}
