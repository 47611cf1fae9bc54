//! `kv-sim replay` (one seed again, its full trace written) and `kv-sim determinism` (every
//! seed twice, the same trace both times).

use std::process::ExitCode;

use super::{bug_named, judge, report_violation};
use crate::cli::ReplayArgs;
use crate::seeds::Seed;
use crate::world::trace_hash;

pub fn replay(args: &ReplayArgs) -> ExitCode {
    let bug = match args.bug.as_deref().map(bug_named).transpose() {
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
    let seed = Seed {
        seed: args.seed,
        nodes: args.shape.nodes(),
        sim_secs: args.shape.sim_secs,
    };
    let judged = judge(seed, bug);
    let path = args
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
    } else if !judged.panic_trace.is_empty() {
        if let Err(error) = std::fs::write(&path, judged.panic_trace.join("\n") + "\n") {
            eprintln!("kv-sim: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
        println!(
            "trace up to the panic: {} ({} events)",
            path.display(),
            judged.panic_trace.len()
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

/// Runs every seed twice; fails at the first whose two traces differ, naming the first event
/// that differs and writing both traces.
pub fn determinism(seeds: &[Seed]) -> ExitCode {
    for seed in seeds.iter().copied() {
        let runs: Vec<_> = (0..2).map(|_| judge(seed, None)).collect();
        let nodes = runs[0].nodes();
        // A run's options are drawn first, so drawing them alone gives the same (a panicked
        // run is reported with them).
        let drawn = crate::world::options_of(seed.seed, seed.nodes).to_json();
        if let Some(report) = &runs[0].report {
            if report.options.to_json() != drawn {
                println!(
                    "seed {}: NOT deterministic: the options drawn alone differ from the run's",
                    seed.seed
                );
                return ExitCode::from(1);
            }
        }
        let traces: Vec<Vec<String>> = runs
            .into_iter()
            .map(|judged| judged.report.map_or_else(Vec::new, |report| report.trace))
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
            seed.replay_command(Some(nodes), None)
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
