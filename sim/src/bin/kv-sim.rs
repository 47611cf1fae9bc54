//! kv-sim: checks client histories for linearizability.

use std::path::PathBuf;
use std::process::ExitCode;

/// What to do.
enum Command {
    Check(PathBuf),
    /// Seeds `first..end`, cluster size, simulated seconds per seed.
    Run {
        first: u64,
        end: u64,
        nodes: u64,
        sim_secs: u64,
    },
}

const USAGE: &str = "usage:\n  kv-sim check FILE\n      checks a JSON-lines history (format: sim/HISTORY.md) for per-key linearizability\n  kv-sim run --seeds A..B [--nodes 3|5] [--sim-secs N]\n      simulates a cluster per seed (needs a build with RUSTFLAGS=\"--cfg madsim\")\nExit codes: 0 fine, 1 violation, 2 bad usage or unreadable history.";

fn parse_run(args: &[String]) -> Result<Command, String> {
    let (mut seeds, mut nodes, mut sim_secs) = (None, 3u64, 20u64);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| format!("`{text}` is not a number"))
        };
        match flag.as_str() {
            "--seeds" => {
                let (first, end) = value.split_once("..").ok_or("--seeds takes A..B")?;
                seeds = Some((number(first)?, number(end)?));
            }
            "--nodes" => nodes = number(value)?,
            "--sim-secs" => sim_secs = number(value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let (first, end) = seeds.ok_or("--seeds A..B is required")?;
    if end <= first || !(nodes == 3 || nodes == 5) || sim_secs == 0 {
        return Err("need A < B, --nodes 3 or 5, and --sim-secs above 0".into());
    }
    Ok(Command::Run {
        first,
        end,
        nodes,
        sim_secs,
    })
}

fn parse_args() -> Result<Command, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, file] if command == "check" => Ok(Command::Check(PathBuf::from(file))),
        [command, rest @ ..] if command == "run" => parse_run(rest),
        [flag] if flag == "--help" || flag == "-h" => Err(String::new()),
        _ => Err("expected a command".into()),
    }
}

#[cfg(madsim)]
fn run_seeds(first: u64, end: u64, nodes: u64, sim_secs: u64) -> ExitCode {
    for seed in first..end {
        let config = paxkv_sim::world::RunConfig {
            seed,
            nodes,
            sim_secs,
            clients: 4,
        };
        // Each seed on a fresh thread: the simulator's state is per thread.
        let started = std::time::Instant::now();
        let lines = std::thread::spawn(move || paxkv_sim::world::run(config))
            .join()
            .unwrap_or_else(|_| panic!("seed {seed} panicked"));
        let simulated = started.elapsed();
        let operations = match paxkv_sim::history::parse(&lines.join("\n")) {
            Ok(operations) => operations,
            Err(error) => {
                eprintln!("kv-sim: seed {seed} recorded a bad history: {error}");
                return ExitCode::from(2);
            }
        };
        let completed = operations
            .iter()
            .filter(|op| matches!(op.outcome, paxkv_sim::history::Outcome::Ok(_)))
            .count();
        match paxkv_sim::checker::check(&operations) {
            Ok(None) => println!(
                "seed {seed}: linearizable ({} operations, {completed} completed; simulated in {:.1} s, checked in {:.1} s)",
                operations.len(), simulated.as_secs_f64(), (started.elapsed() - simulated).as_secs_f64()
            ),
            Ok(Some(violation)) => {
                let path = std::env::temp_dir().join(format!("paxkv-seed-{seed}.jsonl"));
                let _ = std::fs::write(&path, lines.join("\n"));
                println!(
                    "seed {seed}: NOT linearizable (history in {})\n{violation}",
                    path.display()
                );
                println!(
                    "replay: RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run -p paxkv-sim --bin kv-sim -- run --seeds {seed}..{} --nodes {nodes} --sim-secs {sim_secs}",
                    seed + 1
                );
                return ExitCode::from(1);
            }
            Err(error) => {
                eprintln!("kv-sim: seed {seed}: {error}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(not(madsim))]
fn run_seeds(_first: u64, _end: u64, _nodes: u64, _sim_secs: u64) -> ExitCode {
    eprintln!("kv-sim: this build has no simulator; build with RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let file = match parse_args() {
        Ok(Command::Check(file)) => file,
        Ok(Command::Run {
            first,
            end,
            nodes,
            sim_secs,
        }) => return run_seeds(first, end, nodes, sim_secs),
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("kv-sim: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&file) {
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
            println!("linearizable: {} operations", operations.len());
            ExitCode::SUCCESS
        }
        Ok(Some(violation)) => {
            println!("NOT linearizable\n{violation}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("kv-sim: {error}");
            ExitCode::from(2)
        }
    }
}
