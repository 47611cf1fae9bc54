//! The replica's in-memory log: entries after the snapshot point, plus the bookkeeping of which
//! of them the caller has made durable.
//!
//! Persistence protocol: `take_unstable` hands out "replace the durable log from index `from`
//! with these entries"; once the caller has synced that, `mark_stable` moves the durable mark.
//! Only one hand-out is outstanding at a time (the replica asserts it).

use paxkv_proto::peer::{entry::Kind, Ballot, Configuration, LogEntry, SnapshotMeta};

use crate::membership::ConfigHistory;
use crate::types::ballot_or_zero;

/// A suffix of the log the caller must persist: drop every durable entry at `from_index` or
/// later, then append `entries` (which start at `from_index`, or are empty for a pure truncation).
#[derive(Debug, Clone, PartialEq)]
pub struct LogWrite {
    pub from_index: u64,
    pub entries: Vec<LogEntry>,
}

#[derive(Debug, Clone)]
pub struct Log {
    snapshot_index: u64,
    snapshot_ballot: Ballot,
    /// `entries[k]` holds index `snapshot_index + 1 + k`.
    entries: Vec<LogEntry>,
    /// Lowest index changed (appended or truncated) since the last hand-out.
    dirty_from: Option<u64>,
    /// Last index of the outstanding hand-out, if one is outstanding.
    in_flight_last: Option<u64>,
    /// Every index up to this one is durable as it is in memory.
    stable_last: u64,
    /// The configuration at the snapshot point and the change entries after it.
    configs: ConfigHistory,
}

/// The configuration a change entry brings in, if it is one.
fn config_change(entry: &LogEntry) -> Option<&Configuration> {
    match entry.entry.as_ref()?.kind.as_ref()? {
        Kind::ConfigChange(change) => change.next.as_ref(),
        Kind::Noop(_) | Kind::Command(_) => None,
    }
}

impl Log {
    /// A log recovered from durable state: everything in it is already stable. `base` is the
    /// configuration in force at the snapshot point (or from the start).
    pub fn recovered(
        snapshot_index: u64,
        snapshot_ballot: Ballot,
        base: Configuration,
        entries: Vec<LogEntry>,
    ) -> Log {
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                snapshot_index + 1 + offset as u64,
                "recovered log entries must be contiguous after the snapshot"
            );
        }
        let last = snapshot_index + entries.len() as u64;
        let mut configs = ConfigHistory::new(snapshot_index, base);
        for entry in &entries {
            if let Some(next) = config_change(entry) {
                configs.appended(entry.index, next.clone());
            }
        }
        Log {
            snapshot_index,
            snapshot_ballot,
            entries,
            dirty_from: None,
            in_flight_last: None,
            stable_last: last,
            configs,
        }
    }

    /// The configurations of this log (see `membership`).
    pub(crate) fn configs(&self) -> &ConfigHistory {
        &self.configs
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn last_ballot(&self) -> Ballot {
        self.ballot_at(self.last_index())
            .expect("the last index is always in the log or the snapshot point")
    }

    pub fn stable_last(&self) -> u64 {
        self.stable_last
    }

    /// Ballot of the entry at `index`; known for the snapshot point and the entries after it.
    pub fn ballot_at(&self, index: u64) -> Option<Ballot> {
        if index == self.snapshot_index {
            return Some(self.snapshot_ballot);
        }
        self.entry(index).map(|entry| ballot_or_zero(entry.ballot))
    }

    pub fn entry(&self, index: u64) -> Option<&LogEntry> {
        if index <= self.snapshot_index || index > self.last_index() {
            return None;
        }
        Some(&self.entries[(index - self.snapshot_index - 1) as usize])
    }

    /// Up to `entries_max` entries from `from_index`, stopping once `bytes_max` is passed (but
    /// always at least one entry when there is one, so progress is never blocked).
    pub fn slice(&self, from_index: u64, entries_max: usize, bytes_max: usize) -> Vec<LogEntry> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut index = from_index.max(self.first_index());
        while index <= self.last_index() && out.len() < entries_max {
            let entry = self.entry(index).expect("index is within the log");
            bytes += prost::Message::encoded_len(entry);
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
            index += 1;
        }
        out
    }

    /// Appends one entry right after the last one.
    pub fn append(&mut self, entry: LogEntry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log appends must be contiguous"
        );
        self.mark_dirty(entry.index);
        if let Some(next) = config_change(&entry) {
            self.configs.appended(entry.index, next.clone());
        }
        self.entries.push(entry);
    }

    fn mark_dirty(&mut self, index: u64) {
        self.dirty_from = Some(self.dirty_from.map_or(index, |from| from.min(index)));
    }

    /// Drops every entry at `index` or later (never the snapshot).
    pub fn truncate_from(&mut self, index: u64) {
        assert!(
            index > self.snapshot_index,
            "cannot truncate into the snapshot"
        );
        if index > self.last_index() {
            return;
        }
        self.entries
            .truncate((index - self.snapshot_index - 1) as usize);
        self.configs.truncated_from(index);
        self.mark_dirty(index);
        self.stable_last = self.stable_last.min(index - 1);
        if let Some(last) = self.in_flight_last.as_mut() {
            *last = (*last).min(index - 1);
        }
    }

    /// Hands out what must be persisted, if anything changed since the last hand-out.
    pub fn take_unstable(&mut self) -> Option<LogWrite> {
        assert!(self.in_flight_last.is_none(), "one log hand-out at a time");
        let from_index = self.dirty_from.take()?;
        assert!(
            from_index > self.snapshot_index,
            "dirty entries are never compacted"
        );
        let entries = self.slice(from_index, usize::MAX, usize::MAX);
        self.in_flight_last = Some(self.last_index());
        Some(LogWrite {
            from_index,
            entries,
        })
    }

    /// The caller made the last hand-out durable.
    pub fn mark_stable(&mut self) {
        if let Some(last) = self.in_flight_last.take() {
            self.stable_last = self.stable_last.max(last);
        }
    }

    /// Replaces the whole log with the state of an installed snapshot.
    pub fn reset_to_snapshot(&mut self, meta: &SnapshotMeta) {
        self.snapshot_index = meta.index;
        self.snapshot_ballot = ballot_or_zero(meta.ballot);
        self.entries.clear();
        self.dirty_from = None;
        self.in_flight_last = None;
        self.stable_last = meta.index;
        self.configs.reset(meta.index, meta.configuration.clone());
    }

    /// Forgets entries up to `index` (inclusive), which a durable snapshot now covers.
    pub fn compact_to(&mut self, index: u64) {
        if index <= self.snapshot_index {
            return;
        }
        assert!(
            index <= self.stable_last,
            "only durable entries are compacted"
        );
        let ballot = self.ballot_at(index).expect("index is within the log");
        let drop_count = (index - self.snapshot_index) as usize;
        self.entries.drain(..drop_count);
        self.snapshot_index = index;
        self.snapshot_ballot = ballot;
        self.configs.compacted_to(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, round: u64) -> LogEntry {
        LogEntry {
            index,
            ballot: Some(Ballot::new(round, 1)),
            entry: None,
        }
    }

    #[test]
    fn hand_out_covers_appends_then_truncation_rewrites_from_the_conflict() {
        let mut log = Log::recovered(0, Ballot::ZERO, Configuration::default(), vec![]);
        log.append(entry(1, 1));
        log.append(entry(2, 1));
        let write = log.take_unstable().unwrap();
        assert_eq!(write.from_index, 1);
        assert_eq!(write.entries.len(), 2);
        log.mark_stable();
        assert_eq!(log.stable_last(), 2);
        assert!(log.take_unstable().is_none());

        log.truncate_from(2);
        assert_eq!(log.stable_last(), 1);
        log.append(entry(2, 2));
        let write = log.take_unstable().unwrap();
        assert_eq!(write.from_index, 2);
        assert_eq!(write.entries, vec![entry(2, 2)]);
        log.mark_stable();
        assert_eq!(log.stable_last(), 2);
    }

    #[test]
    fn truncation_while_a_hand_out_is_in_flight_does_not_count_the_dropped_part_as_stable() {
        let mut log = Log::recovered(0, Ballot::ZERO, Configuration::default(), vec![]);
        for index in 1..=3 {
            log.append(entry(index, 1));
        }
        log.take_unstable().unwrap();
        log.truncate_from(2);
        log.mark_stable();
        assert_eq!(log.stable_last(), 1);
        let write = log.take_unstable().unwrap();
        assert_eq!(write.from_index, 2);
        assert!(
            write.entries.is_empty(),
            "a pure truncation is still handed out"
        );
    }

    #[test]
    fn compaction_keeps_ballot_of_the_snapshot_point() {
        let mut log = Log::recovered(
            0,
            Ballot::ZERO,
            Configuration::default(),
            (1..=5).map(|i| entry(i, i)).collect(),
        );
        log.compact_to(3);
        assert_eq!(log.first_index(), 4);
        assert_eq!(log.ballot_at(3), Some(Ballot::new(3, 1)));
        assert_eq!(log.ballot_at(2), None);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.slice(1, 10, usize::MAX).len(), 2);
    }
}
