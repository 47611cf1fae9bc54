//! Results: one row per workload run, printed as a table and serialized as JSON.

use std::fmt::Write;

use crate::backend::Kind;
use crate::load::{Outcome, Plan};

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub runs: Vec<RunReport>,
}

#[derive(Debug, serde::Serialize)]
pub struct RunReport {
    pub backend: Kind,
    pub label: String,
    pub workload: &'static str,
    pub concurrency: usize,
    pub connections: usize,
    pub keys: u64,
    pub key_size: usize,
    pub value_size: usize,
    /// Percent of gets (the mixed workload only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_share: Option<u8>,
    pub seconds: f64,
    pub ops: u64,
    pub errors: u64,
    pub misses: u64,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    pub first_error: Option<String>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, serde::Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl RunReport {
    pub fn new(
        backend: Kind,
        label: &str,
        plan: &Plan,
        connections: usize,
        outcome: &Outcome,
    ) -> RunReport {
        let seconds = outcome.measured.as_secs_f64();
        let histogram = &outcome.histogram;
        RunReport {
            backend,
            label: label.to_string(),
            workload: plan.workload.name(),
            // The watch workload's column is its watchers.
            concurrency: if plan.workload == crate::load::Workload::Watch {
                plan.watchers
            } else {
                plan.concurrency
            },
            connections,
            keys: plan.shape.keys,
            key_size: plan.shape.key_size,
            value_size: plan.shape.value_size,
            read_share: (plan.workload == crate::load::Workload::Mixed).then_some(plan.read_share),
            seconds,
            ops: outcome.ops,
            errors: outcome.errors,
            misses: outcome.misses,
            ops_per_sec: if seconds > 0.0 {
                outcome.ops as f64 / seconds
            } else {
                0.0
            },
            latency_us: Latency {
                mean: histogram.mean(),
                p50: histogram.value_at_quantile(0.50),
                p90: histogram.value_at_quantile(0.90),
                p99: histogram.value_at_quantile(0.99),
                p999: histogram.value_at_quantile(0.999),
                max: histogram.max(),
            },
            first_error: outcome.first_error.clone(),
        }
    }
}

impl Report {
    /// The runs as an aligned text table, latencies in milliseconds.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<7} {:<10} {:>6} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "backend",
            "workload",
            "inflt",
            "ops/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors"
        );
        for run in &self.runs {
            let ms = |micros: u64| micros as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{:<7} {:<10} {:>6} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>7}",
                run.backend.name(),
                run.workload,
                run.concurrency,
                run.ops_per_sec,
                ms(run.latency_us.p50),
                ms(run.latency_us.p90),
                ms(run.latency_us.p99),
                ms(run.latency_us.p999),
                ms(run.latency_us.max),
                run.errors + run.misses,
            );
        }
        for run in &self.runs {
            if let Some(error) = &run.first_error {
                let _ = writeln!(out, "{} first error: {error}", run.workload);
            }
        }
        out
    }
}
