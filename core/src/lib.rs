//! paxkv-core: a sans-IO Multi-Paxos replica and the key-value state machine it drives.
//!
//! The caller owns all IO: it feeds the replica inputs with the time they arrived and carries
//! out the effects the replica hands back in a [`Ready`]. The order those effects must follow
//! (what may leave before the sync, what only after) is documented once, in [`ready`].
//!
//! Where things live: `quorum` says which acceptors make a quorum; `role` holds the state
//! only one role has; `election`, `leader/` and `follower` hold the handlers of each role;
//! [`kv`] is the state machine, one file per command under `kv/cmd/`.

mod config;
mod election;
mod follower;
pub mod kv;
mod leader;
mod log;
pub mod membership;
pub mod planted;
mod quorum;
mod reads;
pub mod ready;
mod replica;
mod rng;
mod role;
mod snapshot;
mod types;

pub use config::{
    ReplicaConfig, ELECTION_TIMEOUT_MS_DEFAULT, HEARTBEAT_INTERVAL_MS_DEFAULT,
    LOG_ENTRIES_KEPT_DEFAULT, SNAPSHOT_ENTRIES_THRESHOLD_DEFAULT, SNAPSHOT_STEP_BYTES_DEFAULT,
    SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT,
};
pub use kv::KvStore;
pub use kv::ReadRequest;
pub use log::LogWrite;
pub use membership::MemberRequest;
pub use ready::{
    AfterPersist, DurableState, Outgoing, Persist, Ready, SnapshotAssembly, SnapshotBytes,
    SnapshotEnd, SnapshotPart, SnapshotWrite, WhilePersisting,
};
pub use replica::{Replica, ReplicaStatus};
pub use role::Role;
pub use types::{NodeId, RequestId, Time};

/// Errors of the replica's API. Protocol-level refusals are answers, not errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid replica configuration: {0}")]
    InvalidConfig(String),
    #[error("persisted state is inconsistent: {0}")]
    CorruptState(String),
    /// The node's own log says it was removed from the cluster: it must not start again.
    #[error(
        "{node} was removed from the cluster (configuration at log index \
         {configuration_index}); its id is retired and it will not start again. To bring this \
         machine back, empty its data directory and start it with --join"
    )]
    Removed {
        node: NodeId,
        configuration_index: u64,
    },
}

/// Entries in one Accept message at most.
pub const ACCEPT_BATCH_ENTRIES_MAX: usize = 512;
/// Bytes of entries in one Accept message; a batch stops after passing it.
pub const ACCEPT_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Entries a leader sends a follower beyond what it acknowledged (the pipeline window).
pub const PIPELINE_ENTRIES_MAX: u64 = 4096;
/// Bytes of snapshot per chunk message at most (`ReplicaConfig::snapshot_chunk_bytes`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
/// Committed entries one ready applies at most (`ReplicaConfig::apply_entries_per_ready`); the rest wait for the next ready, so inputs
/// (messages, reads) are handled in between. A node restarted with 150,000 entries after its
/// snapshot applied them in one turn of about half a second.
pub const APPLY_ENTRIES_PER_READY_MAX: u64 = 2048;
/// Linearizable and at-least-revision reads waiting at once; more get `Busy`.
pub const PENDING_READS_MAX: usize = 10_000;
