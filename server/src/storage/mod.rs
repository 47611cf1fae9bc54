//! Durable storage of one replica: the `Storage` trait the node loop writes through, its error
//! type, and the real implementation on disk (`DiskStorage`).
//!
//! Layout under the data directory:
//! - `wal/<first-sequence>.wal`: segments of the write-ahead log (`wal`), each a header record
//!   then one batch of records per append; how a record and a batch are framed is in `record`,
//!   what a record's payload holds in `payload`;
//! - `snapshot`: the last snapshot of the state machine, replaced atomically (`snapshot_file`).
//!
//! Recovery replays every segment in order, each batch only once all of it checks out. Every
//! append is synced before the next one starts (`persist` writes then syncs, and a new segment
//! starts only after the old one is synced), so unsynced bytes can only be in the last batch of
//! the last segment, and a crash may leave them in any state: missing, zeros, torn, or on disk
//! out of order. Damage inside that batch is a write torn by a crash: the whole batch is cut
//! off, so an append survives whole or not at all. Damage anywhere else is corruption: the node
//! refuses to start and names the file and offset, because dropping it could lose acknowledged
//! writes. The file cannot tell a synced last batch from an unsynced one: damage to a synced
//! last batch is cut off too (the one loss this rule allows). A caller that writes twice
//! between syncs gets the safe mistake instead: damage in its unsynced earlier batch is refused.
//!
//! Segments from before batches (records only, no header) are still read, under the rule they
//! were written with: a damaged record that only zeros follow, or that exactly fills the rest
//! of the file, is torn.

mod payload;
mod record;
mod snapshot_file;
#[cfg(test)]
mod test_support;
mod wal;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use paxkv_core::{DurableState, LogWrite, SnapshotPart, SnapshotWrite};
use paxkv_proto::peer::HardState;

pub use payload::LOG_RECORD_BYTES_TARGET;
pub use record::RECORD_BYTES_MAX;
pub use wal::{DiskStorage, SEGMENT_BYTES_MAX};

/// Advice shared by every refusal to start on damaged data.
macro_rules! refusal_advice {
    () => {
        "refusing to start, because skipping it could lose acknowledged writes. Restore this \
         node's data directory from a backup, or remove it so the node catches up from its peers"
    };
}

/// Why storage failed. Every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused a read, write, sync, rename or listing.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A WAL record that is neither intact nor a write torn by the last crash.
    #[error("{path}: corrupt record at byte offset {offset} ({reason}); {}", refusal_advice!())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The snapshot file fails its own checks (magic, checksum, metadata).
    #[error("{path}: corrupt snapshot ({reason}); {}", refusal_advice!())]
    CorruptSnapshot { path: PathBuf, reason: String },
    /// Every record checks out, but the log they replay to does not follow the snapshot.
    #[error(
        "{path}: the log has a gap after the snapshot (snapshot at index {snapshot_index}, log \
         from index {first_index}); {}",
        refusal_advice!()
    )]
    LogGap {
        path: PathBuf,
        snapshot_index: u64,
        first_index: u64,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the entries of `dir` (a rename, a new or removed file) durable.
fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io_error(dir))
}

/// Bytes of a snapshot handed over in parts (`Storage::write_snapshot_part`) that storage has
/// not written yet, read by the node loop while storage is away syncing: the replica pauses
/// its encoding while they are many (`Replica::set_snapshot_write_backlog`).
#[derive(Debug, Clone, Default)]
pub struct SnapshotBacklog(Arc<AtomicUsize>);

impl SnapshotBacklog {
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub fn handed_over(&self, bytes: usize) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn written(&self, bytes: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_sub(bytes))
            });
    }

    /// Nothing is waiting any more (the writer stopped, whatever it had left).
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Where a replica's state survives crashes. `persist` returns only once everything it was
/// given is durable.
pub trait Storage: Send + 'static {
    /// Reads back everything persisted so far.
    fn load(&mut self) -> Result<DurableState, StorageError>;
    /// Writes what a `Ready` asks to keep. It may be lost in a crash until `sync` returns.
    fn write(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError>;
    /// Takes part of a snapshot taken locally (`SnapshotPart`). Like a whole local snapshot,
    /// it may be written on the side, and made durable (the log it covers then dropped) only
    /// once complete, or skipped; it is never counted on before then.
    fn write_snapshot_part(&mut self, part: SnapshotPart) -> Result<(), StorageError>;
    /// Makes everything written so far durable. After an error nothing written since the last
    /// good sync may be counted on: the node must stop.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// `write`, then `sync`.
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError> {
        self.write(hard_state, snapshot, log_write)?;
        self.sync()
    }
    /// Number of syncs so far (for measuring group commit).
    fn sync_count(&self) -> u64;
    /// How long the coming sync takes in simulated time (simulated storage only: a real disk
    /// takes as long as it takes, inside `sync`).
    fn simulated_sync_delay(&mut self) -> std::time::Duration {
        std::time::Duration::from_millis(4)
    }
    /// Where this storage counts the snapshot bytes it took and has yet to write (a storage
    /// that writes them as it takes them never has any).
    fn snapshot_backlog(&self) -> SnapshotBacklog {
        SnapshotBacklog::default()
    }
    /// The snapshot the last `load` returned, already decoded, if this storage decoded it
    /// while it read the log (`Replica::new` then need not; it decodes the bytes otherwise).
    fn take_decoded_snapshot(&mut self) -> Option<paxkv_core::KvStore> {
        None
    }
}
