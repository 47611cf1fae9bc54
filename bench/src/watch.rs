//! The watch workload: `watchers` watches on one prefix and one writer putting under it on a
//! fixed schedule (`put_rate` a second). Each value carries the moment its put was sent, so
//! every watcher measures, for every event, the time from the put being sent to the event
//! reaching it: the commit, the node applying it, and the fan-out to all the watchers. Counted
//! are the events of the puts sent in the measured window; an event of such a put that a
//! watcher never got is a miss.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Conn;
use crate::load::{new_histogram, Outcome, Plan};

/// Where the writer puts; watchers watch the prefix.
const PREFIX: &[u8] = b"watched/";
/// Distinct keys the writer cycles through.
const KEYS: u64 = 100;
/// How long watchers wait for the events of the last puts after the writer stops.
const DRAIN: Duration = Duration::from_secs(3);

pub async fn run(conns: &[Conn], plan: Plan) -> anyhow::Result<Outcome> {
    anyhow::ensure!(plan.watchers > 0, "--watchers must be at least 1");
    anyhow::ensure!(plan.put_rate > 0, "--put-rate must be at least 1");
    anyhow::ensure!(!conns.is_empty(), "--connections must be at least 1");
    let base = Instant::now();
    let mut streams = Vec::with_capacity(plan.watchers);
    for index in 0..plan.watchers {
        let mut conn = conns[index % conns.len()].clone();
        streams.push(conn.watch_prefix(PREFIX).await?);
    }
    let opened = base.elapsed();
    // Offsets from `base`, in microseconds, of the measured window.
    let measure_from = opened + plan.warmup;
    let end = measure_from + plan.duration;
    let window = (measure_from.as_micros() as u64, end.as_micros() as u64);
    let errors = Arc::new(AtomicU64::new(0));
    let mut watchers = Vec::with_capacity(streams.len());
    for mut stream in streams {
        let errors = errors.clone();
        watchers.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let mut events = 0u64;
            let stop = base + end + DRAIN;
            loop {
                let left = stop.saturating_duration_since(Instant::now());
                let Ok(next) = tokio::time::timeout(left, stream.next_values()).await else {
                    break;
                };
                let values = match next {
                    Ok(values) => values,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                let now = base.elapsed().as_micros() as u64;
                for value in values {
                    let Some(sent) = sent_at(&value) else {
                        continue;
                    };
                    if sent >= window.0 && sent < window.1 {
                        histogram.saturating_record(now.saturating_sub(sent).max(1));
                        events += 1;
                    }
                }
            }
            (histogram, events)
        }));
    }
    // The writer: one put at a time, on a fixed schedule (a late put is sent at once).
    let mut writer = conns[0].clone();
    let period = Duration::from_secs(1) / plan.put_rate;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent_in_window, mut sequence) = (0u64, 0u64);
    let mut first_error = None;
    while base.elapsed() < end {
        ticker.tick().await;
        let sent = base.elapsed().as_micros() as u64;
        let key = format!("{}{:03}", String::from_utf8_lossy(PREFIX), sequence % KEYS);
        sequence += 1;
        let mut value = format!("{sent:020}").into_bytes();
        value.resize(plan.shape.value_size.max(value.len()), b'.');
        match writer.put(key.as_bytes(), &value, None).await {
            Ok(()) => sent_in_window += u64::from(sent >= window.0 && sent < window.1),
            Err(error) => {
                errors.fetch_add(1, Ordering::Relaxed);
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    let mut histogram = new_histogram();
    let mut delivered = 0u64;
    for watcher in watchers {
        let (one, events) = watcher.await?;
        histogram.add(&one)?;
        delivered += events;
    }
    let expected = sent_in_window * plan.watchers as u64;
    Ok(Outcome {
        ops: delivered,
        errors: errors.load(Ordering::Relaxed),
        misses: expected.saturating_sub(delivered),
        measured: plan.duration,
        histogram,
        first_error,
    })
}

/// When the put of `value` was sent (microseconds after the run's start).
fn sent_at(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..20)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_carries_its_send_time_whatever_its_padding() {
        let mut value = format!("{:020}", 123_456u64).into_bytes();
        value.resize(100, b'.');
        assert_eq!(sent_at(&value), Some(123_456));
        assert_eq!(sent_at(b"short"), None);
    }
}
