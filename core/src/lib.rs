//! paxkv-core: a sans-IO Multi-Paxos replica and the key-value state machine it drives.
//!
//! The caller (a node loop, a simulator, or the in-memory test cluster) owns all IO. It feeds
//! the replica with `tick(now)`, `step(from, message)`, `propose(..)` and `read(..)`, then takes
//! a [`Ready`] and handles it in this fixed order:
//!
//! 1. persist `hard_state`, `snapshot` and `log_write`, and sync them;
//! 2. send `messages` (these may also be sent before the sync) and then
//!    `messages_after_persist` (these promise durability and must never leave before the sync);
//! 3. deliver `responses` to clients (the replica has already applied `committed`);
//! 4. call [`Replica::advance`] with the ready's number.
//!
//! Inputs that arrive while a ready is being persisted are gathered into the next one, which is
//! how group commit falls out: one sync covers everything that arrived during the previous one.

mod config;
mod election;
mod follower;
pub mod kv;
mod leader;
mod log;
pub mod planted;
mod replica;
mod rng;
mod snapshot;
mod types;

pub use config::ReplicaConfig;
pub use kv::KvStore;
pub use log::LogWrite;
pub use replica::{
    DurableState, Outgoing, ReadRequest, Ready, Replica, ReplicaStatus, Role, SnapshotWrite,
};
pub use types::{NodeId, RequestId, Time};

/// Errors of the replica's API. Protocol-level refusals are answers, not errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid replica configuration: {0}")]
    InvalidConfig(String),
    #[error("persisted state is inconsistent: {0}")]
    CorruptState(String),
}

/// Entries in one Accept message at most.
pub const ACCEPT_BATCH_ENTRIES_MAX: usize = 512;
/// Bytes of entries in one Accept message; a batch stops after passing it.
pub const ACCEPT_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Entries a leader sends a follower beyond what it acknowledged (the pipeline window).
pub const PIPELINE_ENTRIES_MAX: u64 = 4096;
/// Bytes of snapshot per chunk message at most (`ReplicaConfig::snapshot_chunk_bytes`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
/// Linearizable and at-least-revision reads waiting at once; more get `Busy`.
pub const PENDING_READS_MAX: usize = 10_000;
