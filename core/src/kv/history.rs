//! The change history: every change of visible state, as (revision, log time, the key before,
//! what the change left), for the most recent revisions. It lets a reader see the store as it
//! was at a recent revision (a scan whose pages all show one revision: `scan_at`) and change
//! streams resume from a revision.
//!
//! A change keeps only the key as it was before (its record, or its name if it did not exist):
//! the record it left is the one the next change of that key found, or, after the key's last
//! change, the one the map holds now (`KvStore::watch_events` reads it from there). Holding
//! both, every overwrite kept two copies of the record, one of them the map's own.
//!
//! The history is each replica's own: it is derived while entries apply, is not replicated, is
//! not in snapshots or the state hash. A replica built from a snapshot starts it empty at the
//! snapshot's revision, so two replicas may keep different stretches: a revision one has
//! forgotten another may still serve.
//!
//! Bounds: `HISTORY_REVISIONS_MAX` revisions and `HISTORY_BYTES_MAX` bytes (keys and values
//! counted, plus `CHANGE_OVERHEAD_BYTES` each). The oldest revision goes whole, never in part
//! (a revision half undone would show a state that never was); one revision larger than the
//! byte bound (a lease with many keys) leaves the history empty at that revision.

use std::collections::VecDeque;

use super::StoredValue;

pub use paxkv_proto::{HISTORY_BYTES_MAX, HISTORY_REVISIONS_MAX};

/// What one change costs besides its key and value: its queue slot (48 bytes) and what the
/// allocator rounds its record or key up by.
const CHANGE_OVERHEAD_BYTES: usize = 64;

/// The key as a change found it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Before {
    /// It did not exist: its name alone.
    Absent(Box<[u8]>),
    Stored(StoredValue),
}

/// What a change left of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// The key exists: the record the next change of it found, or the map's.
    Stored,
    /// Deleted by a request.
    Deleted,
    /// Deleted by log time (its TTL or its lease ran out).
    Expired,
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) revision: u64,
    /// Log time of the entry that made the change.
    pub(super) log_time_ms: u64,
    before: Before,
    pub(super) after: After,
}

impl Change {
    /// A change of `key`, which was `previous` before it.
    pub(super) fn new(
        revision: u64,
        log_time_ms: u64,
        key: &[u8],
        previous: Option<StoredValue>,
        after: After,
    ) -> Change {
        let before = match previous {
            Some(stored) => {
                debug_assert_eq!(stored.key(), key, "a change's record is of its key");
                Before::Stored(stored)
            }
            None => Before::Absent(key.into()),
        };
        Change {
            revision,
            log_time_ms,
            before,
            after,
        }
    }

    pub(super) fn key(&self) -> &[u8] {
        match &self.before {
            Before::Absent(key) => key,
            Before::Stored(stored) => stored.key(),
        }
    }

    /// The key before the change (None: it did not exist).
    pub(super) fn previous(&self) -> Option<&StoredValue> {
        match &self.before {
            Before::Absent(_) => None,
            Before::Stored(stored) => Some(stored),
        }
    }

    fn bytes(&self) -> usize {
        CHANGE_OVERHEAD_BYTES + self.key().len() + self.previous().map_or(0, |s| s.value().len())
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct History {
    /// Oldest first; revisions never decrease.
    changes: VecDeque<Change>,
    /// The state at every revision from this one to the store's current one can be rebuilt
    /// (every change after it is kept).
    first_revision: u64,
    /// Log time of the state at `first_revision`.
    first_log_time_ms: u64,
    bytes: usize,
}

impl History {
    /// An empty history of a store at `revision` and `log_time_ms`.
    pub(super) fn starting_at(revision: u64, log_time_ms: u64) -> History {
        History {
            changes: VecDeque::new(),
            first_revision: revision,
            first_log_time_ms: log_time_ms,
            bytes: 0,
        }
    }

    /// The oldest revision whose state can be rebuilt.
    pub(super) fn first_revision(&self) -> u64 {
        self.first_revision
    }

    /// Keeps `change` (of the store's newest revision), then forgets the oldest revisions
    /// beyond the bounds.
    pub(super) fn record(&mut self, change: Change) {
        debug_assert!(
            self.changes
                .back()
                .is_none_or(|last| last.revision <= change.revision),
            "changes are recorded in revision order"
        );
        // The rest of a revision already forgotten (it outgrew the byte bound on its own): the
        // state at it is the oldest one, and its changes are not needed to rebuild it.
        if change.revision <= self.first_revision {
            return;
        }
        self.bytes += change.bytes();
        let newest = change.revision;
        self.changes.push_back(change);
        while newest - self.first_revision > HISTORY_REVISIONS_MAX || self.bytes > HISTORY_BYTES_MAX
        {
            self.forget_oldest_revision();
        }
    }

    /// Forgets every change of the oldest revision kept: the state at that revision is the
    /// oldest one left.
    fn forget_oldest_revision(&mut self) {
        let Some(oldest) = self.changes.front() else {
            return;
        };
        let (revision, log_time_ms) = (oldest.revision, oldest.log_time_ms);
        while let Some(change) = self.changes.front() {
            if change.revision != revision {
                break;
            }
            self.bytes -= change.bytes();
            self.changes.pop_front();
        }
        self.first_revision = revision;
        self.first_log_time_ms = log_time_ms;
    }

    /// The changes made after `revision`, oldest first (`revision` at least
    /// `first_revision`).
    pub(super) fn since(&self, revision: u64) -> impl Iterator<Item = &Change> {
        let start = self
            .changes
            .partition_point(|change| change.revision <= revision);
        self.changes.range(start..)
    }

    /// Log time of the state at `revision` (between `first_revision` and the newest one kept),
    /// or None if the newest revision kept is older (the state at `revision` is the current
    /// one: its log time is the store's).
    pub(super) fn log_time_at(&self, revision: u64) -> Option<u64> {
        if revision == self.first_revision {
            return Some(self.first_log_time_ms);
        }
        let after = self
            .changes
            .partition_point(|change| change.revision <= revision);
        match after {
            0 => Some(self.first_log_time_ms),
            _ if after == self.changes.len() => None,
            _ => Some(self.changes[after - 1].log_time_ms),
        }
    }

    /// Changes kept and their bytes.
    #[cfg(test)]
    pub(super) fn size(&self) -> (usize, usize) {
        (self.changes.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::stored::KeyMeta;

    fn change(revision: u64, key: &str, value_bytes: usize) -> Change {
        let previous = StoredValue::new(
            key.as_bytes(),
            &KeyMeta {
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                ..KeyMeta::default()
            },
            &vec![7; value_bytes],
        );
        Change::new(
            revision,
            revision * 10,
            key.as_bytes(),
            Some(previous),
            After::Deleted,
        )
    }

    #[test]
    fn the_oldest_revisions_go_whole_and_the_first_revision_follows() {
        let mut history = History::starting_at(0, 0);
        for revision in 1..=HISTORY_REVISIONS_MAX + 2 {
            history.record(change(revision, "a", 1));
            if revision == 3 {
                // Two keys at one revision go together.
                history.record(change(3, "b", 1));
            }
        }
        assert_eq!(history.first_revision(), 2);
        assert_eq!(history.since(2).next().map(|c| c.revision), Some(3));
        assert_eq!(history.since(2).filter(|c| c.revision == 3).count(), 2);
        assert_eq!(history.since(3).next().map(|c| c.revision), Some(4));
        assert_eq!(history.log_time_at(2), Some(20));
        assert_eq!(history.log_time_at(3), Some(30));
        assert_eq!(history.log_time_at(HISTORY_REVISIONS_MAX + 2), None);
    }

    #[test]
    fn a_revision_larger_than_the_byte_bound_leaves_the_history_empty_at_it() {
        let mut history = History::starting_at(5, 50);
        history.record(change(6, "a", 10));
        let big = HISTORY_BYTES_MAX / 4 + 1;
        for key in ["b", "c", "d", "e", "f"] {
            history.record(change(7, key, big));
        }
        assert_eq!(history.first_revision(), 7);
        assert_eq!(history.size(), (0, 0));
        assert_eq!(history.since(7).count(), 0);
        assert_eq!(history.log_time_at(7), Some(70));
        history.record(change(8, "a", 1));
        assert_eq!(
            history.since(7).map(|c| c.revision).collect::<Vec<_>>(),
            [8]
        );
    }
}
