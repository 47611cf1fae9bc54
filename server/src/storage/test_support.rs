//! Helpers the storage tests share: noop entries, writes, reopening a data directory.

use std::path::{Path, PathBuf};

use paxkv_core::{DurableState, LogWrite, SnapshotWrite};
use paxkv_proto::peer::{entry::Kind, Ballot, Entry, LogEntry, Noop, SnapshotMeta};

use super::{DiskStorage, Storage, StorageError};

pub(super) fn entries(first: u64, last: u64, round: u64) -> Vec<LogEntry> {
    (first..=last)
        .map(|index| LogEntry {
            index,
            ballot: Some(Ballot::new(round, 1)),
            entry: Some(Entry {
                kind: Some(Kind::Noop(Noop {})),
                log_time_ms: index,
            }),
        })
        .collect()
}

pub(super) fn write(storage: &mut DiskStorage, first: u64, last: u64, round: u64) {
    let log = LogWrite {
        from_index: first,
        entries: entries(first, last, round),
    };
    storage.persist(None, None, Some(&log)).unwrap();
}

pub(super) fn reopen(dir: &Path) -> Result<DurableState, StorageError> {
    DiskStorage::open(dir).unwrap().load()
}

pub(super) fn last_segment(dir: &Path) -> PathBuf {
    let storage = DiskStorage::open(dir).unwrap();
    storage.segment_paths().unwrap().pop().unwrap().1
}

/// A snapshot taken locally at `index` (of round 1's entries), which trims the log up to it.
pub(super) fn local_snapshot(index: u64) -> SnapshotWrite {
    SnapshotWrite {
        meta: SnapshotMeta {
            index,
            ballot: Some(Ballot::new(1, 1)),
            configuration: None,
        },
        data: std::sync::Arc::new(b"state".to_vec().into()),
        replaces_log: false,
    }
}

/// A new data directory with two appends (entries 1..=3, then 4..=6); returns the segment.
pub(super) fn two_appends(dir: &Path) -> PathBuf {
    let mut storage = DiskStorage::open(dir).unwrap();
    storage.load().unwrap();
    write(&mut storage, 1, 3, 1);
    write(&mut storage, 4, 6, 1);
    drop(storage);
    last_segment(dir)
}
