//! The simulating commands of kv-sim (built only with `--cfg madsim`): each seed runs the world
//! on its own thread, its history goes to the checker, and the verdicts come back in seed order.
//!
//! `seeds.rs` runs ranges and pinned seeds, `replay.rs` replays one seed and checks
//! determinism, `teeth.rs` runs the planted bugs; this file judges one seed, and many at once.

mod replay;
mod seeds;
mod teeth;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use paxkv_core::planted::Bug;

use crate::cli::Command;
use crate::history::Outcome;
use crate::seeds::Seed;
use crate::world::{RunConfig, RunReport};

/// Carries out a simulating command.
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Run(args) => seeds::run_seeds(
            &args.seeds.seeds(args.shape.nodes(), args.shape.sim_secs),
            args.jobs.jobs(),
            args.time_limit,
            args.min_seeds,
        ),
        Command::Regressions(args) => match crate::seeds::read_pinned(&args.file) {
            Ok(seeds) => seeds::run_seeds(&seeds, args.jobs.jobs(), None, 0),
            Err(problem) => {
                eprintln!("kv-sim: {problem}");
                ExitCode::from(2)
            }
        },
        Command::Replay(args) => replay::replay(&args),
        Command::Determinism(args) => {
            replay::determinism(&args.seeds.seeds(args.shape.nodes(), args.shape.sim_secs))
        }
        Command::Teeth(args) => teeth::teeth(&args),
        Command::Check { .. } => unreachable!("kv-sim check needs no simulator"),
    }
}

/// How a seed went.
pub struct Judged {
    pub seed: Seed,
    pub report: Option<RunReport>,
    /// The trace up to the panic, for a run that panicked (it has no report).
    pub panic_trace: Vec<String>,
    /// None: fine. Some: what went wrong.
    pub violation: Option<String>,
    pub summary: String,
}

impl Judged {
    /// The cluster size the seed ran with (drawn again if the run panicked before its report).
    fn nodes(&self) -> u64 {
        self.report.as_ref().map_or_else(
            || crate::world::options_of(self.seed.seed, self.seed.nodes).nodes,
            |report| report.options.nodes,
        )
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "a panic".to_string())
}

/// Runs one seed on a fresh thread (the simulator's state is per thread) and judges it.
pub fn judge(seed: Seed, bug: Option<Bug>) -> Judged {
    let started = Instant::now();
    let config = RunConfig {
        seed: seed.seed,
        nodes: seed.nodes,
        sim_secs: seed.sim_secs,
        bug,
    };
    let outcome = std::thread::Builder::new()
        .name(format!("seed-{}", seed.seed))
        .spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::world::run(config)))
                .map_err(|panic| (panic, crate::world::trace_so_far()))
        })
        .expect("a thread starts")
        .join()
        .unwrap_or_else(|panic| Err((panic, Vec::new())));
    let simulated_secs = started.elapsed().as_secs_f64();
    let report = match outcome {
        Ok(report) => report,
        Err((panic, panic_trace)) => {
            return Judged {
                seed,
                report: None,
                panic_trace,
                violation: Some(format!("the simulation panicked: {}", panic_message(panic))),
                summary: String::new(),
            }
        }
    };
    let (violation, summary) = verdict(&report, simulated_secs, started);
    Judged {
        seed,
        report: Some(report),
        panic_trace: Vec::new(),
        violation,
        summary,
    }
}

/// What the checker and the world's own checks say of a run: a violation, if any, and a
/// summary line.
fn verdict(report: &RunReport, simulated_secs: f64, started: Instant) -> (Option<String>, String) {
    let checked = crate::history::parse(&report.history.join("\n"))
        .map_err(|error| format!("the recorded history is malformed: {error}"))
        .and_then(|operations| {
            crate::checker::check(&operations)
                .map(|violation| (operations, violation))
                .map_err(|error| format!("the checker gave up: {error}"))
        });
    let (operations, violation) = match checked {
        Err(problem) => return (Some(problem), String::new()),
        Ok(checked) => checked,
    };
    let ms = |duration: Option<Duration>| {
        duration.map_or("-".to_string(), |d| d.as_millis().to_string())
    };
    let completed = operations
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .count();
    let summary = format!(
        "{} nodes, {} operations ({completed} completed), served {} ms after the heal, converged {} ms after the clients stopped, trace {:016x}; simulated in {simulated_secs:.1} s, checked in {:.1} s",
        report.options.nodes,
        operations.len(),
        ms(report.served_after),
        ms(report.converged_after),
        report.trace_hash,
        started.elapsed().as_secs_f64() - simulated_secs,
    );
    let violation =
        violation.or_else(|| crate::checker::check_watches(&operations, &report.watches));
    let violation = match violation {
        Some(violation) => Some(format!("history violation\n{violation}")),
        None if !report.problems.is_empty() => Some(report.problems.join("\n")),
        None => None,
    };
    (violation, summary)
}

/// Judges `seeds` on `jobs` threads and hands each result to `each` in seed order, until
/// `each` returns false or the seeds run out; after `time_limit_secs` no new seed starts.
fn judge_in_order(
    seeds: &[Seed],
    jobs: usize,
    bug: Option<Bug>,
    time_limit_secs: Option<u64>,
    mut each: impl FnMut(Judged) -> bool,
) {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, results) = mpsc::channel::<(usize, Judged)>();
    let workers: Vec<_> = (0..jobs.min(seeds.len()))
        .map(|_| {
            let (next, stop, sender, seeds) =
                (next.clone(), stop.clone(), sender.clone(), seeds.to_vec());
            std::thread::spawn(move || loop {
                let over_time =
                    time_limit_secs.is_some_and(|limit| started.elapsed().as_secs() >= limit);
                if stop.load(Ordering::SeqCst) || over_time {
                    return;
                }
                let index = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(seed) = seeds.get(index) else {
                    return;
                };
                if sender.send((index, judge(*seed, bug))).is_err() {
                    return;
                }
            })
        })
        .collect();
    drop(sender);
    let mut waiting: BTreeMap<usize, Judged> = BTreeMap::new();
    let mut handed = 0usize;
    'results: for (index, judged) in results {
        waiting.insert(index, judged);
        while let Some(judged) = waiting.remove(&handed) {
            handed += 1;
            if !each(judged) {
                break 'results;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = worker.join();
    }
}

/// Prints a violation with the seed's history file and the command that replays it.
fn report_violation(judged: &Judged, violation: &str, bug: Option<Bug>) {
    let seed = judged.seed;
    let path = std::env::temp_dir().join(format!("paxkv-seed-{}.jsonl", seed.seed));
    if let Some(report) = &judged.report {
        let _ = std::fs::write(&path, report.history.join("\n") + "\n");
    }
    let nodes = judged.nodes();
    println!(
        "seed {}: VIOLATION ({nodes} nodes, {} simulated seconds)\n{violation}\nhistory: {}\nreplay: {}",
        seed.seed,
        seed.sim_secs,
        path.display(),
        seed.replay_command(Some(nodes), bug.map(Bug::name))
    );
}

/// The planted bug called `name`.
fn bug_named(name: &str) -> Result<Bug, String> {
    Bug::ALL
        .into_iter()
        .find(|bug| bug.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Bug::ALL.iter().map(|bug| bug.name()).collect();
            format!("no planted bug `{name}`; there are: {}", names.join(", "))
        })
}
