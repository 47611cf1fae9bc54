//! `kv-sim run` and `kv-sim regressions`: seeds in order, stopping at the first violation.

use std::process::ExitCode;
use std::time::Instant;

use super::{judge_in_order, report_violation};
use crate::seeds::Seed;

/// Runs `seeds` on `jobs` threads, reporting each; stops at the first violation. After
/// `time_limit_secs` no new seed starts, and fewer than `min_seeds` passed is a failure.
pub fn run_seeds(
    seeds: &[Seed],
    jobs: usize,
    time_limit_secs: Option<u64>,
    min_seeds: u64,
) -> ExitCode {
    let started = Instant::now();
    let (mut passed, mut simulated_secs, mut failed) = (0u64, 0u64, false);
    judge_in_order(seeds, jobs, None, time_limit_secs, |judged| {
        match &judged.violation {
            None => {
                println!("seed {}: ok: {}", judged.seed.seed, judged.summary);
                passed += 1;
                simulated_secs += judged.seed.sim_secs;
            }
            Some(violation) => {
                failed = true;
                report_violation(&judged, violation, None);
            }
        }
        !failed
    });
    if failed {
        return ExitCode::from(1);
    }
    let wall_secs = started.elapsed().as_secs_f64();
    println!(
        "{passed} seeds passed in {wall_secs:.0} s: {:.1} seeds per minute, {:.1} simulated seconds per wall second ({jobs} jobs)",
        passed as f64 * 60.0 / wall_secs,
        simulated_secs as f64 / wall_secs,
    );
    if passed < min_seeds {
        println!(
            "kv-sim: only {passed} seeds ran within the time limit; at least {min_seeds} must"
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
