//! The closed-loop load generator: `concurrency` workers, each with one request in flight at a
//! time, share the connections; latencies after the warm-up go into HDR histograms.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::backend::Conn;

/// What each request of a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Put random keys.
    Put,
    /// Linearizable get of random (preloaded) keys.
    Get,
    /// Stale get (any node's local copy) of random (preloaded) keys.
    GetStale,
    /// Linearizable gets and puts of random (preloaded) keys: --read-share percent gets (90 by
    /// default), the rest puts.
    Mixed,
    /// Puts with a short TTL (--ttl), so keys keep expiring while others are written.
    TtlChurn,
    /// Each worker holds a lease with a key on it and renews it as fast as it can.
    Lease,
    /// Put every key once, in order (fills the store; ends when all are written).
    Load,
    /// A transaction on two keys: if the first holds the preloaded value, put both.
    Txn,
    /// --watchers watches on one prefix and one writer putting under it at --put-rate; measures
    /// events delivered per second (all watchers together) and the time from a put being sent
    /// to its delivery.
    Watch,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::GetStale => "get-stale",
            Workload::Mixed => "mixed",
            Workload::TtlChurn => "ttl-churn",
            Workload::Lease => "lease",
            Workload::Load => "load",
            Workload::Txn => "txn",
            Workload::Watch => "watch",
        }
    }

    /// Whether the keys must exist before the run starts.
    pub fn reads(self) -> bool {
        matches!(
            self,
            Workload::Get | Workload::GetStale | Workload::Mixed | Workload::Txn
        )
    }
}

/// Keys and values of a run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub keys: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub ttl: Duration,
    pub lease_ttl: Duration,
}

impl Shape {
    /// Key number `index`: `k` and the number, zero-padded to `key_size` bytes.
    pub fn key(&self, index: u64) -> Vec<u8> {
        self.key_with('k', index)
    }

    /// Like [`Shape::key`] with another first letter: TTL churn writes `t` keys, so the `k`
    /// keys that reads expect never expire under them.
    fn key_with(&self, first: char, index: u64) -> Vec<u8> {
        let width = self.key_size.saturating_sub(1);
        format!("{first}{index:0>width$}").into_bytes()
    }

    /// Checks that every key of the run fits in `key_size` bytes.
    pub fn validate(&self) -> anyhow::Result<()> {
        let longest = self.key(self.keys.saturating_sub(1)).len();
        anyhow::ensure!(self.keys > 0, "--keys must be at least 1");
        anyhow::ensure!(
            longest <= self.key_size,
            "--key-size {} is too small for {} keys: they need {longest} bytes",
            self.key_size,
            self.keys
        );
        Ok(())
    }

    fn value(&self) -> Vec<u8> {
        (0..self.value_size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect()
    }
}

/// How long and how hard to run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub workload: Workload,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub shape: Shape,
    pub progress: bool,
    /// Watches of the watch workload.
    pub watchers: usize,
    /// Puts per second of the watch workload's writer.
    pub put_rate: u32,
    /// Percent of the mixed workload's requests that are gets (0 to 100).
    pub read_share: u8,
}

/// What a run measured.
pub struct Outcome {
    /// Requests completed (the watch workload: events delivered).
    pub ops: u64,
    pub errors: u64,
    /// Gets that found no value (the keys were preloaded, so this should stay 0); the watch
    /// workload: events never delivered.
    pub misses: u64,
    pub measured: Duration,
    pub histogram: Histogram<u64>,
    pub first_error: Option<String>,
}

struct Shared {
    /// Requests completed (warm-up included), for the progress line.
    done: AtomicU64,
    errors: AtomicU64,
    /// The next key of a `Load` run.
    next_key: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct WorkerResult {
    histogram: Histogram<u64>,
    ops: u64,
    errors: u64,
    misses: u64,
}

/// A histogram of microseconds from 1 µs to 10 minutes with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds are valid")
}

/// Runs `plan` against the cluster behind `conns` and returns what it measured.
pub async fn run(conns: &[Conn], plan: Plan) -> anyhow::Result<Outcome> {
    if plan.workload == Workload::Watch {
        return crate::watch::run(conns, plan).await;
    }
    anyhow::ensure!(plan.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(!conns.is_empty(), "--connections must be at least 1");
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        next_key: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let start = Instant::now();
    let (measure_from, end) = if plan.workload == Workload::Load {
        (start, None)
    } else {
        (
            start + plan.warmup,
            Some(start + plan.warmup + plan.duration),
        )
    };
    let mut workers = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let conn = conns[worker % conns.len()].clone();
        let shared = shared.clone();
        workers.push(tokio::spawn(work(
            conn,
            plan,
            worker as u64,
            shared,
            measure_from,
            end,
        )));
    }
    let progress = plan
        .progress
        .then(|| tokio::spawn(report_progress(plan, shared.clone(), start)));
    let mut histogram = new_histogram();
    let (mut ops, mut errors, mut misses) = (0, 0, 0);
    let mut failure = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(result)) => {
                histogram.add(&result.histogram)?;
                ops += result.ops;
                errors += result.errors;
                misses += result.misses;
            }
            Ok(Err(error)) => failure = Some(error),
            Err(panic) => failure = Some(anyhow::anyhow!("a worker panicked: {panic}")),
        }
    }
    let measured = Instant::now().saturating_duration_since(measure_from);
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let first_error = shared.first_error.lock().expect("not poisoned").clone();
    Ok(Outcome {
        ops,
        errors,
        misses,
        measured,
        histogram,
        first_error,
    })
}

/// One worker: a request at a time until the end of the run.
async fn work(
    mut conn: Conn,
    plan: Plan,
    worker: u64,
    shared: Arc<Shared>,
    measure_from: Instant,
    end: Option<Instant>,
) -> anyhow::Result<WorkerResult> {
    let shape = plan.shape;
    let value = shape.value();
    let mut random = Random::new(worker);
    let mut result = WorkerResult {
        histogram: new_histogram(),
        ops: 0,
        errors: 0,
        misses: 0,
    };
    let mut lease = if plan.workload == Workload::Lease {
        let key = format!("lease-{worker}").into_bytes();
        Some(conn.lease_with_key(shape.lease_ttl, &key, &value).await?)
    } else {
        None
    };
    loop {
        let began = Instant::now();
        if end.is_some_and(|end| began >= end) {
            break;
        }
        let outcome = match plan.workload {
            Workload::Put => {
                let key = shape.key(random.below(shape.keys));
                conn.put(&key, &value, None).await.map(|()| true)
            }
            Workload::Get | Workload::GetStale => {
                let key = shape.key(random.below(shape.keys));
                conn.get(&key, plan.workload == Workload::GetStale).await
            }
            Workload::Mixed => {
                let key = shape.key(random.below(shape.keys));
                if random.reads(plan.read_share) {
                    conn.get(&key, false).await
                } else {
                    conn.put(&key, &value, None).await.map(|()| true)
                }
            }
            Workload::TtlChurn => {
                let key = shape.key_with('t', random.below(shape.keys));
                conn.put(&key, &value, Some(shape.ttl)).await.map(|()| true)
            }
            Workload::Lease => {
                let lease = lease.as_mut().expect("granted above");
                conn.keep_alive(lease).await.map(|()| true)
            }
            Workload::Txn => {
                let first = random.below(shape.keys);
                let second = (first + 1) % shape.keys;
                conn.txn_pair(&shape.key(first), &shape.key(second), &value)
                    .await
            }
            Workload::Watch => unreachable!("the watch workload runs apart"),
            Workload::Load => {
                let index = shared.next_key.fetch_add(1, Ordering::Relaxed);
                if index >= shape.keys {
                    break;
                }
                conn.put(&shape.key(index), &value, None)
                    .await
                    .map(|()| true)
            }
        };
        shared.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(found) => {
                if began >= measure_from {
                    let micros = began.elapsed().as_micros() as u64;
                    result.histogram.saturating_record(micros.max(1));
                    result.ops += 1;
                    result.misses += u64::from(!found);
                }
            }
            Err(error) if fatal(&error) => return Err(error),
            Err(error) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                result.errors += 1;
                let mut first = shared.first_error.lock().expect("not poisoned");
                first.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    if let Some(lease) = lease {
        // Leave nothing behind; a failure here does not change what was measured.
        let _ = conn.revoke(lease).await;
    }
    Ok(result)
}

/// Errors that every later request would repeat (a wrong secret, a request the store refuses):
/// the run stops at once rather than measure them.
fn fatal(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<paxkv_client::ClientError>(),
        Some(
            paxkv_client::ClientError::Authentication(_)
                | paxkv_client::ClientError::InvalidArgument(_)
        )
    )
}

/// Prints a progress line every second (rewritten in place on a terminal).
async fn report_progress(plan: Plan, shared: Arc<Shared>, start: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let total = plan.warmup + plan.duration;
    let mut last_done = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed);
        let elapsed = start.elapsed().as_secs_f64();
        let phase = if plan.workload == Workload::Load {
            format!("{done}/{} keys", plan.shape.keys)
        } else if start.elapsed() < plan.warmup {
            "warm-up".to_string()
        } else {
            format!("of {:.0}s", total.as_secs_f64())
        };
        let line = format!(
            "{:>9} {elapsed:>5.0}s {phase}  {:>8} ops/s  {errors} errors",
            plan.workload.name(),
            done - last_done
        );
        last_done = done;
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(err, "\r{line:<70}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

/// A small deterministic generator (xorshift64*), one per worker: no shared state, no locks.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }

    /// Whether the next request of a mixed run is a get, with `percent` of them gets.
    pub fn reads(&mut self, percent: u8) -> bool {
        self.below(100) < u64::from(percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(keys: u64, key_size: usize) -> Shape {
        Shape {
            keys,
            key_size,
            value_size: 100,
            ttl: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(10),
        }
    }

    #[test]
    fn keys_have_the_asked_size_and_are_distinct() {
        let shape = shape(1_000_000, 16);
        assert_eq!(shape.key(0), b"k000000000000000");
        assert_eq!(shape.key(999_999), b"k000000000999999");
        assert_ne!(shape.key(1), shape.key(10));
        shape.validate().expect("fits");
    }

    #[test]
    fn a_key_size_too_small_for_the_key_count_is_refused() {
        let error = shape(1_000_000, 4).validate().expect_err("too small");
        assert!(error.to_string().contains("--key-size 4"), "{error}");
        assert!(shape(0, 16).validate().is_err());
    }

    #[test]
    fn random_indexes_cover_the_range_and_stay_inside_it() {
        let mut random = Random::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[random.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&count| count > 800), "{seen:?}");
    }

    #[test]
    fn the_read_share_is_the_percent_of_gets() {
        let mut random = Random::new(3);
        let gets =
            |random: &mut Random, percent| (0..100_000).filter(|_| random.reads(percent)).count();
        assert_eq!(gets(&mut random, 0), 0);
        assert_eq!(gets(&mut random, 100), 100_000);
        for percent in [50u8, 90, 99] {
            let expected = usize::from(percent) * 1000;
            let got = gets(&mut random, percent);
            assert!(
                got.abs_diff(expected) < 1000,
                "{percent}%: {got} gets of 100000"
            );
        }
    }
}
