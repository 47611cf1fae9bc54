//! paxkv-sim: the real paxkv server in the deterministic simulator (madsim), the history
//! format of client operations, and the linearizability checker that judges them.
//!
//! `history` and `checker` judge a history from anywhere; `world` (simulator builds only, with
//! `--cfg madsim`) runs a seeded cluster that records one; `runner` runs seeds with the world
//! and judges them; `cli` is the command line of `kv-sim`, `seeds` the seeds it runs.

pub mod checker;
pub mod cli;
pub mod history;
#[cfg(madsim)]
pub mod runner;
pub mod seeds;
#[cfg(madsim)]
pub mod world;
