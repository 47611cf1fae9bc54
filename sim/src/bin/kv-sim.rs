//! kv-sim: runs the real paxkv server in the deterministic simulator, seed after seed, and
//! checks every client history; also checks histories from files. (The commands live in
//! `paxkv_sim::cli`; `kv-sim --help` lists them.)

use std::process::ExitCode;

use clap::Parser;
use paxkv_sim::cli::{run, Cli};

fn main() -> ExitCode {
    // A panic inside a simulated node is a finding, reported with its seed; one line is enough.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        eprintln!(
            "kv-sim: panic in {}: {info}",
            thread.name().unwrap_or("a thread")
        );
    }));
    run(Cli::parse())
}
