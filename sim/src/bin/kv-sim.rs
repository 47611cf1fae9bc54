//! kv-sim: runs the real paxkv server in the deterministic simulator, seed after seed, and
//! checks every client history; also checks histories from files.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage:
  kv-sim check FILE
      checks a JSON-lines history (format: sim/HISTORY.md)
  kv-sim run --seeds A..B|fresh:N [--nodes 3|5] [--sim-secs N] [--jobs J]
             [--time-limit SECS --min-seeds M]
      simulates a cluster per seed and checks its history; stops at the first violation and
      prints a replay command. fresh:N takes N seeds from a start drawn from the clock. With a
      time limit, no new seed starts after SECS seconds, and fewer than M seeds is a failure.
  kv-sim replay SEED [--nodes 3|5] [--sim-secs N] [--bug NAME] [--trace FILE]
      runs one seed again and writes its full event trace (JSON lines) to FILE
      (default: paxkv-trace-SEED.jsonl), printing the trace hash
  kv-sim determinism --seeds A..B [--nodes 3|5] [--sim-secs N]
      runs every seed twice and fails unless both runs give the same trace hash
  kv-sim regressions FILE [--jobs J]
      runs the pinned seeds listed in FILE (lines: SEED NODES SIM_SECS [# why])
  kv-sim teeth [--bug NAME] [--max-seeds N] [--sim-secs N] [--jobs J]
      runs each planted bug (or one) until a seed catches it (needs --features planted-bugs); fails if one
      survives N seeds (default 200). Bugs no run can show (they only delay) are pinned by a named
      test instead and skipped unless named with --bug
Without --nodes, each seed picks 3 or 5 nodes itself. Defaults: --sim-secs 30, --jobs 2.
The simulator needs a build with RUSTFLAGS=\"--cfg madsim\" (own target dir).
Exit codes: 0 fine, 1 violation (or a planted bug not caught), 2 bad usage or input.";

/// Options shared by the simulating commands.
#[cfg_attr(not(madsim), allow(dead_code))]
#[derive(Debug, Clone)]
struct Options {
    seeds: Option<(u64, u64)>,
    nodes: Option<u64>,
    sim_secs: u64,
    jobs: usize,
    time_limit: Option<u64>,
    min_seeds: u64,
    max_seeds: u64,
    bug: Option<String>,
    trace: Option<PathBuf>,
}

#[cfg_attr(not(madsim), allow(dead_code))]
fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seeds: None,
        nodes: None,
        sim_secs: 30,
        jobs: 2,
        time_limit: None,
        min_seeds: 0,
        max_seeds: 200,
        bug: None,
        trace: None,
    };
    let number = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("`{text}` is not a number"))
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seeds" => {
                options.seeds = Some(if let Some(count) = value.strip_prefix("fresh:") {
                    let start = fresh_start();
                    (start, start + number(count)?)
                } else {
                    let (first, end) = value.split_once("..").ok_or("--seeds takes A..B")?;
                    (number(first)?, number(end)?)
                });
            }
            "--nodes" => options.nodes = Some(number(value)?),
            "--sim-secs" => options.sim_secs = number(value)?,
            "--jobs" => options.jobs = number(value)? as usize,
            "--time-limit" => options.time_limit = Some(number(value)?),
            "--min-seeds" => options.min_seeds = number(value)?,
            "--max-seeds" => options.max_seeds = number(value)?,
            "--bug" => options.bug = Some(value.clone()),
            "--trace" => options.trace = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if let Some((first, end)) = options.seeds {
        if end <= first {
            return Err("--seeds A..B needs A < B".into());
        }
    }
    if options.nodes.is_some_and(|nodes| nodes != 3 && nodes != 5) {
        return Err("--nodes takes 3 or 5".into());
    }
    if options.sim_secs < 3 || options.jobs == 0 {
        return Err("--sim-secs must be at least 3 and --jobs at least 1".into());
    }
    Ok(options)
}

/// A start for fresh seeds, from the wall clock: different on every CI run.
#[cfg_attr(not(madsim), allow(dead_code))]
fn fresh_start() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    (now % 100_000_000) * 1000
}

fn check_file(file: &PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("kv-sim: cannot read {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let operations = match paxkv_sim::history::parse(&text) {
        Ok(operations) => operations,
        Err(error) => {
            eprintln!("kv-sim: {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    match paxkv_sim::checker::check(&operations) {
        Ok(None) => {
            println!(
                "linearizable: {} operations, every stale and session read as promised",
                operations.len()
            );
            ExitCode::SUCCESS
        }
        Ok(Some(violation)) => {
            println!("VIOLATION\n{violation}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("kv-sim: {error}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    // A panic inside a simulated node is a finding, reported with its seed; one line is enough.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        eprintln!(
            "kv-sim: panic in {}: {info}",
            thread.name().unwrap_or("a thread")
        );
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") if args.len() == 2 => return check_file(&PathBuf::from(&args[1])),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(command @ ("run" | "replay" | "determinism" | "regressions" | "teeth")) => {
            simulate(command, &args[1..])
        }
        _ => Err("expected a command".to_string()),
    };
    match result {
        Ok(code) => code,
        Err(problem) => {
            eprintln!("kv-sim: {problem}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(madsim))]
fn simulate(_command: &str, _args: &[String]) -> Result<ExitCode, String> {
    eprintln!(
        "kv-sim: this build has no simulator; build with RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim"
    );
    Ok(ExitCode::from(2))
}

#[cfg(madsim)]
fn simulate(command: &str, args: &[String]) -> Result<ExitCode, String> {
    use simulator::*;
    match command {
        "run" => {
            let options = parse_options(args)?;
            let (first, end) = options.seeds.ok_or("--seeds is required")?;
            let seeds: Vec<Seed> = (first..end)
                .map(|seed| Seed::new(seed, options.nodes, options.sim_secs))
                .collect();
            Ok(run_seeds(&seeds, &options, None))
        }
        "regressions" => {
            let (file, rest) = args.split_first().ok_or("regressions needs a FILE")?;
            let options = parse_options(rest)?;
            let seeds = read_pinned(file)?;
            Ok(run_seeds(&seeds, &options, None))
        }
        "replay" => {
            let (seed, rest) = args.split_first().ok_or("replay needs a SEED")?;
            let seed: u64 = seed
                .parse()
                .map_err(|_| format!("`{seed}` is not a seed"))?;
            let options = parse_options(rest)?;
            Ok(replay(
                Seed::new(seed, options.nodes, options.sim_secs),
                &options,
            ))
        }
        "determinism" => {
            let options = parse_options(args)?;
            let (first, end) = options.seeds.ok_or("--seeds is required")?;
            Ok(determinism(first, end, &options))
        }
        "teeth" => Ok(teeth(&parse_options(args)?)),
        _ => unreachable!("commands are matched in main"),
    }
}

#[cfg(madsim)]
mod simulator {
    use std::collections::BTreeMap;
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    use paxkv_core::planted::Bug;
    use paxkv_sim::world::{run, trace_hash, RunConfig, RunReport};

    use super::Options;

    /// One seed to run, with the cluster size and length it runs with.
    #[derive(Debug, Clone, Copy)]
    pub struct Seed {
        pub seed: u64,
        pub nodes: u64,
        pub sim_secs: u64,
    }

    impl Seed {
        /// Without a cluster size, the seed picks one (a third of seeds run 5 nodes).
        pub fn new(seed: u64, nodes: Option<u64>, sim_secs: u64) -> Seed {
            let mixed = seed
                .wrapping_add(0x9e37_79b9_7f4a_7c15)
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let nodes = nodes.unwrap_or(if (mixed >> 33).is_multiple_of(3) {
                5
            } else {
                3
            });
            Seed {
                seed,
                nodes,
                sim_secs,
            }
        }

        fn config(self, bug: Option<Bug>) -> RunConfig {
            RunConfig {
                seed: self.seed,
                nodes: self.nodes,
                sim_secs: self.sim_secs,
                clients: 4,
                bug,
            }
        }

        fn replay_command(self, bug: Option<Bug>) -> String {
            let features = if bug.is_some() {
                " --features planted-bugs"
            } else {
                ""
            };
            let bug = bug.map_or(String::new(), |bug| format!(" --bug {}", bug.name()));
            format!(
                "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run --release -p paxkv-sim{features} --bin kv-sim -- replay {} --nodes {} --sim-secs {}{bug}",
                self.seed, self.nodes, self.sim_secs
            )
        }
    }

    /// How a seed went.
    pub struct Judged {
        pub seed: Seed,
        pub report: Option<RunReport>,
        /// None: fine. Some: what went wrong.
        pub violation: Option<String>,
        pub summary: String,
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
        let config = seed.config(bug);
        let outcome = std::thread::Builder::new()
            .name(format!("seed-{}", seed.seed))
            .spawn(move || run(config))
            .expect("a thread starts")
            .join();
        let simulated = started.elapsed().as_secs_f64();
        let report = match outcome {
            Ok(report) => report,
            Err(panic) => {
                return Judged {
                    seed,
                    report: None,
                    violation: Some(format!("the simulation panicked: {}", panic_message(panic))),
                    summary: String::new(),
                }
            }
        };
        let verdict = paxkv_sim::history::parse(&report.history.join("\n"))
            .map_err(|error| format!("the recorded history is malformed: {error}"))
            .and_then(|operations| {
                paxkv_sim::checker::check(&operations)
                    .map(|violation| (operations, violation))
                    .map_err(|error| format!("the checker gave up: {error}"))
            });
        let ms = |duration: Option<std::time::Duration>| {
            duration.map_or("-".to_string(), |d| d.as_millis().to_string())
        };
        let (violation, summary) = match verdict {
            Err(problem) => (Some(problem), String::new()),
            Ok((operations, violation)) => {
                let completed = operations
                    .iter()
                    .filter(|op| matches!(op.outcome, paxkv_sim::history::Outcome::Ok(_)))
                    .count();
                let summary = format!(
                    "{} nodes, {} operations ({completed} completed), served {} ms after the heal, converged {} ms after the clients stopped, trace {:016x}; simulated in {simulated:.1} s, checked in {:.1} s",
                    seed.nodes,
                    operations.len(),
                    ms(report.served_after),
                    ms(report.converged_after),
                    report.trace_hash,
                    started.elapsed().as_secs_f64() - simulated,
                );
                let violation = match violation {
                    Some(violation) => Some(format!("history violation\n{violation}")),
                    None if !report.problems.is_empty() => Some(report.problems.join("\n")),
                    None => None,
                };
                (violation, summary)
            }
        };
        Judged {
            seed,
            report: Some(report),
            violation,
            summary,
        }
    }

    /// Judges `seeds` on `jobs` threads and hands each result to `each` in seed order, until
    /// `each` returns false or the seeds run out; after `time_limit` seconds no new seed starts.
    fn judge_in_order(
        seeds: &[Seed],
        jobs: usize,
        bug: Option<Bug>,
        time_limit: Option<u64>,
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
                        time_limit.is_some_and(|limit| started.elapsed().as_secs() >= limit);
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

    /// Runs `seeds`, reporting each; stops at the first violation.
    pub fn run_seeds(seeds: &[Seed], options: &Options, bug: Option<Bug>) -> ExitCode {
        let started = Instant::now();
        let (mut passed, mut simulated_secs, mut failed) = (0u64, 0u64, false);
        judge_in_order(seeds, options.jobs, bug, options.time_limit, |judged| {
            match &judged.violation {
                None => {
                    println!("seed {}: ok: {}", judged.seed.seed, judged.summary);
                    passed += 1;
                    simulated_secs += judged.seed.sim_secs;
                }
                Some(violation) => {
                    failed = true;
                    report_violation(&judged, violation, bug);
                }
            }
            !failed
        });
        if failed {
            return ExitCode::from(1);
        }
        let wall = started.elapsed().as_secs_f64();
        println!(
            "{passed} seeds passed in {wall:.0} s: {:.1} seeds per minute, {:.1} simulated seconds per wall second ({} jobs)",
            passed as f64 * 60.0 / wall,
            simulated_secs as f64 / wall,
            options.jobs
        );
        if passed < options.min_seeds {
            println!(
                "kv-sim: only {passed} seeds ran within the time limit; at least {} must",
                options.min_seeds
            );
            return ExitCode::from(1);
        }
        ExitCode::SUCCESS
    }

    fn report_violation(judged: &Judged, violation: &str, bug: Option<Bug>) {
        let seed = judged.seed;
        let path = std::env::temp_dir().join(format!("paxkv-seed-{}.jsonl", seed.seed));
        if let Some(report) = &judged.report {
            let _ = std::fs::write(&path, report.history.join("\n") + "\n");
        }
        println!(
            "seed {}: VIOLATION ({} nodes, {} simulated seconds)\n{violation}\nhistory: {}\nreplay: {}",
            seed.seed,
            seed.nodes,
            seed.sim_secs,
            path.display(),
            seed.replay_command(bug)
        );
    }

    pub fn bug_named(name: &str) -> Result<Bug, String> {
        Bug::ALL
            .into_iter()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Bug::ALL.iter().map(|bug| bug.name()).collect();
                format!("no planted bug `{name}`; there are: {}", names.join(", "))
            })
    }

    pub fn replay(seed: Seed, options: &Options) -> ExitCode {
        let bug = match options.bug.as_deref().map(bug_named).transpose() {
            Ok(bug) => bug,
            Err(problem) => {
                eprintln!("kv-sim: {problem}");
                return ExitCode::from(2);
            }
        };
        if bug.is_some() && !cfg!(feature = "planted-bugs") {
            eprintln!("kv-sim: --bug needs a build with --features planted-bugs");
            return ExitCode::from(2);
        }
        let judged = judge(seed, bug);
        let path = options
            .trace
            .clone()
            .unwrap_or_else(|| format!("paxkv-trace-{}.jsonl", seed.seed).into());
        if let Some(report) = &judged.report {
            if let Err(error) = std::fs::write(&path, report.trace.join("\n") + "\n") {
                eprintln!("kv-sim: cannot write {}: {error}", path.display());
                return ExitCode::from(2);
            }
            println!(
                "trace: {} ({} events), trace hash {:016x}",
                path.display(),
                report.trace.len(),
                report.trace_hash
            );
        }
        match &judged.violation {
            None => {
                println!("seed {}: ok: {}", seed.seed, judged.summary);
                ExitCode::SUCCESS
            }
            Some(violation) => {
                report_violation(&judged, violation, bug);
                ExitCode::from(1)
            }
        }
    }

    pub fn determinism(first: u64, end: u64, options: &Options) -> ExitCode {
        for seed in first..end {
            let seed = Seed::new(seed, options.nodes, options.sim_secs);
            let traces: Vec<Vec<String>> = (0..2)
                .map(|_| {
                    judge(seed, None)
                        .report
                        .map_or_else(Vec::new, |report| report.trace)
                })
                .collect();
            let hashes: Vec<u64> = traces.iter().map(|trace| trace_hash(trace)).collect();
            if hashes[0] == hashes[1] && !traces[0].is_empty() {
                println!(
                    "seed {}: trace hash {:016x} both times",
                    seed.seed, hashes[0]
                );
                continue;
            }
            for (run, trace) in traces.iter().enumerate() {
                let path = std::env::temp_dir().join(format!(
                    "paxkv-trace-{}-run{}.jsonl",
                    seed.seed,
                    run + 1
                ));
                let _ = std::fs::write(&path, trace.join("\n") + "\n");
                println!("trace of run {}: {}", run + 1, path.display());
            }
            let first_difference = traces[0]
                .iter()
                .zip(&traces[1])
                .position(|(a, b)| a != b)
                .unwrap_or(traces[0].len().min(traces[1].len()));
            println!(
                "seed {}: NOT deterministic: trace hashes {:016x} and {:016x}; first different event (#{first_difference}):\n  {}\n  {}\nreplay: {}",
                seed.seed,
                hashes[0],
                hashes[1],
                traces[0].get(first_difference).map_or("(end)", String::as_str),
                traces[1].get(first_difference).map_or("(end)", String::as_str),
                seed.replay_command(None)
            );
            return ExitCode::from(1);
        }
        ExitCode::SUCCESS
    }

    /// Reads pinned seeds: `SEED NODES SIM_SECS [# why]` per line; `#` starts a comment.
    pub fn read_pinned(file: &str) -> Result<Vec<Seed>, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|error| format!("cannot read {file}: {error}"))?;
        let mut seeds = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<u64> = line
                .split_whitespace()
                .map(|field| field.parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("{file}:{}: expected SEED NODES SIM_SECS", number + 1))?;
            match fields.as_slice() {
                [seed, nodes @ (3 | 5), sim_secs] if *sim_secs >= 3 => seeds.push(Seed {
                    seed: *seed,
                    nodes: *nodes,
                    sim_secs: *sim_secs,
                }),
                _ => {
                    return Err(format!(
                        "{file}:{}: expected SEED NODES(3|5) SIM_SECS(>=3)",
                        number + 1
                    ))
                }
            }
        }
        if seeds.is_empty() {
            return Err(format!("{file} pins no seeds"));
        }
        Ok(seeds)
    }

    /// Runs each planted bug on seeds 0, 1, 2, ... until one is caught.
    pub fn teeth(options: &Options) -> ExitCode {
        if !cfg!(feature = "planted-bugs") {
            eprintln!("kv-sim: teeth needs a build with --features planted-bugs");
            return ExitCode::from(2);
        }
        let bugs: Vec<Bug> = match options.bug.as_deref().map(bug_named).transpose() {
            Ok(Some(bug)) => vec![bug],
            Ok(None) => Bug::ALL.to_vec(),
            Err(problem) => {
                eprintln!("kv-sim: {problem}");
                return ExitCode::from(2);
            }
        };
        let mut all_caught = true;
        let chosen = options.bug.is_some();
        for bug in bugs {
            if let (false, Some((why, test))) = (chosen, bug.pinned_by()) {
                println!("{:<30} not run: {why}; pinned by {test}", bug.name());
                continue;
            }
            let started = Instant::now();
            let caught = catch(bug, options);
            match caught {
                Some((tried, judged)) => {
                    let first_line = judged
                        .violation
                        .as_deref()
                        .and_then(|text| {
                            text.lines().find(|line| {
                                !line.is_empty() && !line.starts_with("history violation")
                            })
                        })
                        .unwrap_or_default()
                        .to_string();
                    println!(
                        "{:<30} caught after {tried:>3} seeds (seed {}, {} nodes; {:.0} s): {first_line}",
                        bug.name(),
                        judged.seed.seed,
                        judged.seed.nodes,
                        started.elapsed().as_secs_f64()
                    );
                }
                None => {
                    all_caught = false;
                    println!(
                        "{:<30} NOT caught in {} seeds",
                        bug.name(),
                        options.max_seeds
                    );
                }
            }
        }
        if all_caught {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    /// The number of seeds run (in order) until the first that catches `bug`, and that seed.
    fn catch(bug: Bug, options: &Options) -> Option<(u64, Judged)> {
        let seeds: Vec<Seed> = (0..options.max_seeds)
            .map(|seed| Seed::new(seed, options.nodes, options.sim_secs))
            .collect();
        let (mut tried, mut caught) = (0u64, None);
        judge_in_order(&seeds, options.jobs, Some(bug), None, |judged| {
            tried += 1;
            if judged.violation.is_some() {
                caught = Some((tried, judged));
            }
            caught.is_none()
        });
        caught
    }
}
