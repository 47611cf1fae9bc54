//! `kv-sim teeth`: each planted bug runs on seeds 0, 1, 2, ... until one catches it; a bug that
//! survives `--max-seeds` means the simulator has lost a tooth.

use std::process::ExitCode;
use std::time::Instant;

use paxkv_core::planted::Bug;

use super::{bug_named, judge_in_order, Judged};
use crate::cli::TeethArgs;
use crate::seeds::SeedRange;

pub fn teeth(args: &TeethArgs) -> ExitCode {
    if !cfg!(feature = "planted-bugs") {
        eprintln!("kv-sim: teeth needs a build with --features planted-bugs");
        return ExitCode::from(2);
    }
    let bugs: Vec<Bug> = match args.bug.as_deref().map(bug_named).transpose() {
        Ok(Some(bug)) => vec![bug],
        Ok(None) => Bug::ALL.to_vec(),
        Err(problem) => {
            eprintln!("kv-sim: {problem}");
            return ExitCode::from(2);
        }
    };
    let mut all_caught = true;
    let chosen = args.bug.is_some();
    for bug in bugs {
        if let (false, Some((why, test))) = (chosen, bug.pinned_by()) {
            println!("{:<30} not run: {why}; pinned by {test}", bug.name());
            continue;
        }
        let started = Instant::now();
        match catch(bug, args) {
            Some((tried, judged)) => println!(
                "{:<30} caught after {tried:>3} seeds (seed {}, {} nodes; {:.0} s): {}",
                bug.name(),
                judged.seed.seed,
                judged.nodes(),
                started.elapsed().as_secs_f64(),
                first_line(&judged)
            ),
            None => {
                all_caught = false;
                println!("{:<30} NOT caught in {} seeds", bug.name(), args.max_seeds);
            }
        }
    }
    if all_caught {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The first line of what caught a bug that says what went wrong.
fn first_line(judged: &Judged) -> &str {
    judged
        .violation
        .as_deref()
        .and_then(|text| {
            text.lines()
                .find(|line| !line.is_empty() && !line.starts_with("history violation"))
        })
        .unwrap_or_default()
}

/// The number of seeds run (in order) until the first that catches `bug`, and that seed.
fn catch(bug: Bug, args: &TeethArgs) -> Option<(u64, Judged)> {
    if args.max_seeds == 0 {
        return None;
    }
    let seeds = SeedRange {
        first: 0,
        end: args.max_seeds,
    }
    .seeds(args.shape.nodes(), args.shape.sim_secs);
    let (mut tried, mut caught) = (0u64, None);
    judge_in_order(&seeds, args.jobs.jobs(), Some(bug), None, |judged| {
        tried += 1;
        if judged.violation.is_some() {
            caught = Some((tried, judged));
        }
        caught.is_none()
    });
    caught
}
