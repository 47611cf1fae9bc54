//! paxkv-sim: the history format of client operations and the linearizability checker that
//! judges them. (The simulated cluster that produces histories is not built yet.)

pub mod checker;
pub mod history;
#[cfg(madsim)]
pub mod world;
