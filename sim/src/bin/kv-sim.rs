//! kv-sim: checks client histories for linearizability.

use std::path::PathBuf;
use std::process::ExitCode;

/// What to do.
enum Command {
    Check(PathBuf),
}

const USAGE: &str = "usage: kv-sim check FILE\n\nChecks a JSON-lines history (format: sim/HISTORY.md) for per-key linearizability.\nExit codes: 0 linearizable, 1 violation, 2 bad usage or unreadable history.";

fn parse_args() -> Result<Command, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, file] if command == "check" => Ok(Command::Check(PathBuf::from(file))),
        [flag] if flag == "--help" || flag == "-h" => Err(String::new()),
        _ => Err("expected: kv-sim check FILE".into()),
    }
}

fn main() -> ExitCode {
    let Command::Check(file) = match parse_args() {
        Ok(command) => command,
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
