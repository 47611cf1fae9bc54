//! kv-sim's command line: its commands and flags, and `run`, which carries one out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::seeds::SeedRange;

const AFTER_HELP: &str = "\
Without --nodes, each seed picks 3 or 5 nodes itself.
The simulator needs a build with RUSTFLAGS=\"--cfg madsim\" (own target dir).
Exit codes: 0 fine, 1 violation (or a planted bug not caught), 2 bad usage or input.";

/// Runs the real paxkv server in the deterministic simulator, seed after seed, and checks every
/// client history; also checks histories from files.
#[derive(Debug, Parser)]
#[command(name = "kv-sim", arg_required_else_help = true, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checks a JSON-lines history (format: sim/HISTORY.md)
    Check {
        /// The history file
        file: PathBuf,
    },
    /// Simulates a cluster per seed and checks its history; stops at the first violation and
    /// prints a replay command
    Run(RunArgs),
    /// Runs one seed again and writes its full event trace (JSON lines), printing the trace hash
    Replay(ReplayArgs),
    /// Runs every seed twice and fails unless both runs give the same trace hash
    Determinism(DeterminismArgs),
    /// Runs the pinned seeds listed in FILE (lines: SEED NODES SIM_SECS [# why])
    Regressions(RegressionsArgs),
    /// Runs each planted bug (or one) until a seed catches it (needs --features planted-bugs).
    /// Bugs no run can show (they only delay) are pinned by a named test instead and skipped
    /// unless named with --bug
    Teeth(TeethArgs),
}

/// What every simulated seed runs with.
#[derive(Debug, Clone, Args)]
pub struct ShapeArgs {
    /// Nodes in the cluster (3 or 5); without it, each seed draws its own
    #[arg(long, value_parser = ["3", "5"], value_name = "3|5")]
    nodes: Option<String>,
    /// Simulated seconds per seed (at least 3): two thirds of faults, then the heal
    #[arg(long, value_name = "N", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..))]
    pub sim_secs: u64,
}

impl ShapeArgs {
    pub fn nodes(&self) -> Option<u64> {
        self.nodes
            .as_deref()
            .map(|nodes| nodes.parse().expect("clap let only 3 or 5 through"))
    }
}

/// How many seeds run at once.
#[derive(Debug, Clone, Copy, Args)]
pub struct JobsArgs {
    /// Seeds simulated at once, each on its own thread
    #[arg(long, value_name = "J", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    jobs: u64,
}

impl JobsArgs {
    pub fn jobs(&self) -> usize {
        self.jobs as usize
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seeds A..B (B excluded), or fresh:N: N seeds from a start drawn from the clock
    #[arg(long, value_name = "A..B|fresh:N", value_parser = SeedRange::parse)]
    pub seeds: SeedRange,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub jobs: JobsArgs,
    /// No new seed starts after SECS seconds
    #[arg(long, value_name = "SECS")]
    pub time_limit: Option<u64>,
    /// Fewer seeds than this within the time limit is a failure
    #[arg(long, value_name = "M", default_value_t = 0)]
    pub min_seeds: u64,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The seed to run again
    pub seed: u64,
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// The planted bug the seed ran with (needs --features planted-bugs)
    #[arg(long, value_name = "NAME")]
    pub bug: Option<String>,
    /// Where the trace goes (default: paxkv-trace-SEED.jsonl)
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeterminismArgs {
    /// Seeds A..B (B excluded), or fresh:N
    #[arg(long, value_name = "A..B|fresh:N", value_parser = SeedRange::parse)]
    pub seeds: SeedRange,
    #[command(flatten)]
    pub shape: ShapeArgs,
}

#[derive(Debug, Args)]
pub struct RegressionsArgs {
    /// The file of pinned seeds
    pub file: PathBuf,
    #[command(flatten)]
    pub jobs: JobsArgs,
}

#[derive(Debug, Args)]
pub struct TeethArgs {
    /// Only this planted bug (also one that is otherwise skipped)
    #[arg(long, value_name = "NAME")]
    pub bug: Option<String>,
    /// A bug that survives this many seeds (0, 1, 2, ...) is a failure
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_seeds: u64,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub jobs: JobsArgs,
}

/// Carries out a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { file } => check_file(&file),
        #[cfg(madsim)]
        simulating => crate::runner::run(simulating),
        #[cfg(not(madsim))]
        _ => {
            eprintln!(
                "kv-sim: this build has no simulator; build with RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim"
            );
            ExitCode::from(2)
        }
    }
}

fn check_file(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("kv-sim: cannot read {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let operations = match crate::history::parse(&text) {
        Ok(operations) => operations,
        Err(error) => {
            eprintln!("kv-sim: {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    match crate::checker::check(&operations) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kv-sim").chain(line.split_whitespace()))
    }

    #[test]
    fn the_commands_of_the_test_script_parse_with_their_defaults() {
        let Command::Run(run) =
            parse("run --seeds fresh:2000 --sim-secs 30 --min-seeds 200 --time-limit 420")
                .unwrap()
                .command
        else {
            panic!("a run")
        };
        assert_eq!(run.seeds.end - run.seeds.first, 2000);
        assert_eq!((run.time_limit, run.min_seeds), (Some(420), 200));
        assert_eq!((run.shape.nodes(), run.jobs.jobs()), (None, 2));
        let Command::Teeth(teeth) = parse("teeth --max-seeds 200").unwrap().command else {
            panic!("teeth")
        };
        assert_eq!(
            (teeth.max_seeds, teeth.shape.sim_secs, teeth.bug),
            (200, 30, None)
        );
        let Command::Determinism(determinism) = parse("determinism --seeds 0..3").unwrap().command
        else {
            panic!("determinism")
        };
        assert_eq!(determinism.seeds, SeedRange { first: 0, end: 3 });
        assert!(matches!(
            parse("regressions sim/regression-seeds.txt")
                .unwrap()
                .command,
            Command::Regressions(_)
        ));
        let Command::Replay(replay) =
            parse("replay 42 --nodes 5 --bug stale-clock --trace t.jsonl")
                .unwrap()
                .command
        else {
            panic!("a replay")
        };
        assert_eq!((replay.seed, replay.shape.nodes()), (42, Some(5)));
    }

    #[test]
    fn bad_usage_is_refused_with_exit_code_2() {
        for line in [
            "",
            "frobnicate",
            "run",
            "run --seeds 5..5",
            "run --seeds 0..10 --nodes 4",
            "run --seeds 0..10 --sim-secs 2",
            "run --seeds 0..10 --jobs 0",
            "run --seeds 0..10 --bogus 1",
            "replay notaseed",
            "check",
            "check a b",
        ] {
            let error = parse(line).expect_err(line);
            assert_eq!(error.exit_code(), 2, "{line:?}: {error}");
        }
    }
}
