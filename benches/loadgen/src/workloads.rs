//! The workload shapes, each run by every process on its slice of the
//! accounts: `idle`, `one-to-one`, `group` and `churn`. Sends follow an
//! open-loop schedule on a thread of their own; latencies count from the
//! scheduled time, so a server that falls behind shows it in the figures.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::{now_ns, open_loop};
use crate::conns::{self, Shared};
use crate::coord::{Coord, rss_kb};
use crate::stats::{Metric, StepRaw, StepRecorder};
use crate::targets::{LOGIN_TIMEOUT, Plan, Role, Route};

/// This process's place among the load-generator processes.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub index: usize,
    pub count: usize,
}

impl Slice {
    /// Returns this process's contiguous share of `0..n`.
    pub fn share(&self, n: usize) -> Range<usize> {
        (n * self.index / self.count)..(n * (self.index + 1) / self.count)
    }
}

/// What every workload needs.
pub struct Ctx {
    pub plan: Arc<Plan>,
    pub slice: Slice,
    pub coord: Coord,
    pub concurrency: usize,
}

fn ns_to_instant(at_ns: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_nanos(at_ns.saturating_sub(now_ns()))
}

/// Waits until `done` holds or the clock passes `deadline_ns`.
async fn wait_until(deadline_ns: u64, done: impl Fn() -> bool) {
    while !done() && now_ns() < deadline_ns {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn loadgen_cpu() -> f64 {
    crate::coord::cpu_seconds("self").unwrap_or(0.0)
}

/// Runs `open_loop` on a blocking thread, dispatching to `dispatch`.
async fn schedule(
    start_ns: u64,
    rate: f64,
    count: u64,
    dispatch: impl FnMut(u64, u64) + Send + 'static,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || open_loop(start_ns, rate, count, dispatch)).await?;
    Ok(())
}

/// Holds `conns` logged-in idle connections, connection i as account
/// i % `accounts`; the parent reads the server's memory before connecting
/// and after holding them for `hold`.
pub async fn idle(
    ctx: &mut Ctx,
    conns: usize,
    accounts: usize,
    hold: Duration,
) -> anyhow::Result<Vec<StepRaw>> {
    let shared = Shared::new(1, 0);
    let roles = ctx
        .slice
        .share(conns)
        .map(|conn| (Role::idle(conn % accounts), false))
        .collect();
    let rss_before = rss_kb("self").unwrap_or(0);
    ctx.coord.barrier("before-connect", true).await?;
    let started = now_ns();
    let open = conns::open_many(&ctx.plan, roles, ctx.concurrency, &shared, Some(0)).await;
    let connect_s = (now_ns() - started) as f64 / 1e9;
    let connected = open.iter().flatten().count();
    ctx.coord.barrier("connected", true).await?;
    tokio::time::sleep(hold).await;
    let rss_after = rss_kb("self").unwrap_or(0);
    ctx.coord.barrier("held", true).await?;
    conns::close_all(open).await;
    let mut raw = shared.steps[0].to_raw("idle")?;
    raw.sums.insert("connections".into(), connected as f64);
    raw.sums.insert(
        "loadgen_rss_delta_kb".into(),
        rss_after.saturating_sub(rss_before) as f64,
    );
    raw.maxes.insert("connect_wall_s".into(), connect_s);
    Ok(vec![raw])
}

/// Arguments of the one-to-one workload.
pub struct OneToOne {
    pub pairs: usize,
    pub rates: Vec<f64>,
    pub duration: Duration,
    pub drain: Duration,
    /// A step whose push p99 exceeds this ends the sweep.
    pub max_p99_ms: f64,
}

/// Pairs of users exchanging messages (alternating directions) at each
/// offered rate in turn; push latency is send → the peer's push.
pub async fn one_to_one(ctx: &mut Ctx, args: &OneToOne) -> anyhow::Result<Vec<StepRaw>> {
    let shared = Shared::new(args.rates.len(), 0);
    let pairs = ctx.slice.share(args.pairs);
    let mine = pairs.len();
    let mut roles = Vec::with_capacity(mine * 2);
    for pair in pairs {
        let (a, b) = (2 * pair, 2 * pair + 1);
        for (me, peer) in [(a, b), (b, a)] {
            let role = Role {
                account: me,
                route: Route::Direct(peer),
                member: false,
            };
            roles.push((role, true));
        }
    }
    let open = Arc::new(conns::open_many(&ctx.plan, roles, ctx.concurrency, &shared, None).await);
    let mut raws = Vec::new();
    let mut proceed = true;
    // Steps over the latency limit in a row: one alone may be a burst of
    // other work on the machine, two mean the server is saturated.
    let mut over = 0;
    for (step, rate) in args.rates.iter().enumerate() {
        let go = ctx.coord.barrier(&format!("rate-{rate}"), proceed).await?;
        if go.stop {
            break;
        }
        shared.set_current(step);
        let cpu_before = loadgen_cpu();
        let my_rate = rate * mine as f64 / args.pairs as f64;
        let count = (my_rate * args.duration.as_secs_f64()).round() as u64;
        if mine > 0 && count > 0 {
            let (open, shared) = (open.clone(), shared.clone());
            schedule(go.start_ns, my_rate, count, move |k, at| {
                let pair = (k as usize) % mine;
                let direction = ((k as usize) / mine) % 2;
                match &open[2 * pair + direction] {
                    Some(conn) => conn.send(&shared, step as u32, k, at),
                    None => shared.steps[step].error(),
                }
            })
            .await?;
        }
        let recorder = &shared.steps[step];
        let end = go.start_ns + args.duration.as_nanos() as u64 + args.drain.as_nanos() as u64;
        wait_until(end, || {
            let sent = StepRecorder::get(&recorder.sent);
            StepRecorder::get(&recorder.pushes) >= sent && StepRecorder::get(&recorder.acks) >= sent
        })
        .await;
        let p99 = recorder.percentile_ms(Metric::Push, 99.0);
        let behind = StepRecorder::get(&recorder.pushes) < StepRecorder::get(&recorder.sent);
        // Saturated (still behind after the drain, or far over the limit):
        // stop now. Just over the limit: one more step, since one step alone
        // may have met a burst of other work on the machine.
        if behind || p99.is_some_and(|p99| p99 > 5.0 * args.max_p99_ms) {
            over = 2;
        } else if p99.is_some_and(|p99| p99 > args.max_p99_ms) {
            over += 1;
        } else {
            over = 0;
        }
        proceed = over < 2;
        let mut raw = recorder.to_raw(&format!("rate-{rate}"))?;
        raw.sums.insert("offered_rate".into(), my_rate);
        raw.sums
            .insert("loadgen_cpu_s".into(), loadgen_cpu() - cpu_before);
        raw.maxes
            .insert("duration_s".into(), args.duration.as_secs_f64());
        raws.push(raw);
    }
    // A saturated server still works through its backlog: let it finish
    // (bounded) so that the next workload starts on an idle server.
    let settle_end = now_ns() + SETTLE.as_nanos() as u64;
    wait_until(settle_end, || {
        shared.steps.iter().all(|s| {
            StepRecorder::get(&s.acks) + StepRecorder::get(&s.errors) >= StepRecorder::get(&s.sent)
        })
    })
    .await;
    drop(shared);
    if let Ok(open) = Arc::try_unwrap(open) {
        conns::close_all(open).await;
    }
    Ok(raws)
}

/// Longest wait, after a sweep, for the server to answer every send.
const SETTLE: Duration = Duration::from_secs(60);

/// Arguments of the group workload.
pub struct Group {
    pub members: usize,
    pub rate: f64,
    pub duration: Duration,
    pub drain: Duration,
}

/// One group with every member online; member 0 sends at a fixed rate and
/// each message is timed to every other member, the last one included.
pub async fn group(ctx: &mut Ctx, args: &Group) -> anyhow::Result<Vec<StepRaw>> {
    let count = (args.rate * args.duration.as_secs_f64()).round() as u64;
    let shared = Shared::new(1, count as usize);
    let accounts = ctx.slice.share(args.members);
    let sender_here = accounts.contains(&0);
    let receivers = accounts.len() - usize::from(sender_here);
    let roles = accounts
        .map(|account| {
            let route = if account == 0 {
                Route::Group
            } else {
                Route::None
            };
            let role = Role {
                account,
                route,
                member: true,
            };
            (role, account != 0)
        })
        .collect();
    let open = Arc::new(conns::open_many(&ctx.plan, roles, ctx.concurrency, &shared, None).await);
    let joined = open.iter().flatten().count();
    let go = ctx.coord.barrier("group", true).await?;
    let cpu_before = loadgen_cpu();
    if sender_here {
        let (open, shared) = (open.clone(), shared.clone());
        schedule(go.start_ns, args.rate, count, move |k, at| match &open[0] {
            Some(conn) => conn.send(&shared, 0, k, at),
            None => shared.steps[0].error(),
        })
        .await?;
    }
    let recorder = &shared.steps[0];
    let expected = count * receivers as u64;
    let end = go.start_ns + args.duration.as_nanos() as u64 + args.drain.as_nanos() as u64;
    wait_until(end, || {
        StepRecorder::get(&recorder.pushes) >= expected
            && StepRecorder::get(&recorder.acks) >= StepRecorder::get(&recorder.sent)
    })
    .await;
    let mut raw = recorder.to_raw("group")?;
    raw.sums.insert("receivers".into(), receivers as f64);
    raw.sums.insert("joined".into(), joined as f64);
    raw.sums
        .insert("loadgen_cpu_s".into(), loadgen_cpu() - cpu_before);
    if sender_here {
        raw.sums.insert("offered_rate".into(), args.rate);
    }
    raw.maxes
        .insert("duration_s".into(), args.duration.as_secs_f64());
    drop(shared);
    if let Ok(open) = Arc::try_unwrap(open) {
        conns::close_all(open).await;
    }
    Ok(vec![raw])
}

/// Arguments of the churn workload.
pub struct Churn {
    pub pool: usize,
    pub rate: f64,
    pub duration: Duration,
    pub mass: usize,
    pub window: Duration,
}

/// Logins in flight at once during the churn step, per process.
const MAX_IN_FLIGHT: usize = 4000;

/// Connect → login → disconnect at a fixed rate over a pool of accounts,
/// then a mass reconnect: `mass` sessions drop at once and come back,
/// spread over `window`.
pub async fn churn(ctx: &mut Ctx, args: &Churn) -> anyhow::Result<Vec<StepRaw>> {
    let shared = Shared::new(2, 0);
    let pool = ctx.slice.share(args.pool);
    let mine = pool.len();
    let my_rate = args.rate * mine as f64 / args.pool.max(1) as f64;
    let count = (my_rate * args.duration.as_secs_f64()).round() as u64;
    let go = ctx.coord.barrier("churn", true).await?;
    let cpu_before = loadgen_cpu();
    let in_flight = Arc::new(AtomicUsize::new(0));
    if mine > 0 && count > 0 {
        let (plan, shared, in_flight) = (ctx.plan.clone(), shared.clone(), in_flight.clone());
        let runtime = tokio::runtime::Handle::current();
        let first = pool.start;
        schedule(go.start_ns, my_rate, count, move |k, at| {
            if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                shared.steps[0].error();
                return;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            shared.steps[0].sent.fetch_add(1, Ordering::Relaxed);
            let (plan, shared, in_flight) = (plan.clone(), shared.clone(), in_flight.clone());
            runtime.spawn(async move {
                let role = Role::idle(first + (k as usize) % mine);
                if let Some(conn) =
                    conns::open_one(&plan, role, false, &shared, Some((0, at))).await
                {
                    conn.close().await;
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        })
        .await?;
    }
    let deadline = now_ns() + LOGIN_TIMEOUT.as_nanos() as u64 + 1_000_000_000;
    wait_until(deadline, || in_flight.load(Ordering::Relaxed) == 0).await;
    let mut churn = shared.steps[0].to_raw("churn")?;
    churn.sums.insert("offered_rate".into(), my_rate);
    churn
        .sums
        .insert("loadgen_cpu_s".into(), loadgen_cpu() - cpu_before);
    churn
        .maxes
        .insert("duration_s".into(), args.duration.as_secs_f64());

    shared.set_current(1);
    let accounts = ctx.slice.share(args.mass);
    let n = accounts.len();
    let roles = accounts.clone().map(|a| (Role::idle(a), false)).collect();
    let open = conns::open_many(&ctx.plan, roles, ctx.concurrency, &shared, None).await;
    let held = open.iter().flatten().count();
    let go = ctx.coord.barrier("mass-connected", true).await?;
    tokio::time::sleep_until(ns_to_instant(go.start_ns)).await;
    conns::close_all(open).await;
    let closed_ns = now_ns();
    let last_back = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let spacing = args.window.as_nanos() as u64 / n.max(1) as u64;
    for (i, account) in accounts.enumerate() {
        let at = closed_ns + spacing * i as u64;
        let (plan, shared, last_back) = (ctx.plan.clone(), shared.clone(), last_back.clone());
        shared.steps[1].sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            tokio::time::sleep_until(ns_to_instant(at)).await;
            let conn =
                conns::open_one(&plan, Role::idle(account), false, &shared, Some((1, at))).await;
            if conn.is_some() {
                last_back.fetch_max(now_ns(), Ordering::Relaxed);
            }
            conn
        });
    }
    let mut back = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        back.push(done.ok().flatten());
    }
    let all_back_ms = last_back.load(Ordering::Relaxed).saturating_sub(closed_ns) as f64 / 1e6;
    let mut mass = shared.steps[1].to_raw("mass-reconnect")?;
    mass.sums.insert("held".into(), held as f64);
    mass.maxes.insert("all_back_ms".into(), all_back_ms);
    mass.maxes.insert(
        "close_ms".into(),
        closed_ns.saturating_sub(go.start_ns) as f64 / 1e6,
    );
    mass.maxes
        .insert("window_s".into(), args.window.as_secs_f64());
    conns::close_all(back).await;
    Ok(vec![churn, mass])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_everything_once() {
        for count in 1..5 {
            let mut covered = Vec::new();
            for index in 0..count {
                covered.extend(Slice { index, count }.share(10));
            }
            assert_eq!(covered, (0..10).collect::<Vec<_>>());
        }
    }
}
