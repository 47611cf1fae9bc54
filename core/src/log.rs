//! The replica's in-memory log: entries after the snapshot point, plus the bookkeeping of which
//! of them the caller has made durable.
//!
//! Memory holds less than storage: once entries are applied and durable, those older than a
//! window the replica chooses are let go (`forget_through`) although no snapshot covers them
//! yet. Storage keeps them until one does (a restart replays them), and a peer that needs one
//! of them gets a snapshot instead. So the log has two points: the snapshot's
//! (`snapshot_index`, what storage may drop) and the floor (`floor_index`, the last entry no
//! longer in memory, whose ballot is still known), which is never before it.
//!
//! Persistence protocol: `take_unstable` hands out "replace the durable log from index `from`
//! with these entries"; once the caller has synced that, `mark_stable` moves the durable mark.
//! Only one hand-out is outstanding at a time (the replica asserts it).

use std::collections::VecDeque;

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
    /// The last index a durable snapshot covers.
    snapshot_index: u64,
    /// The last index no longer in memory (the snapshot's, or a later applied and durable one)
    /// and its ballot.
    floor_index: u64,
    floor_ballot: Ballot,
    /// `entries[k]` holds index `floor_index + 1 + k`.
    entries: VecDeque<LogEntry>,
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
            floor_index: snapshot_index,
            floor_ballot: snapshot_ballot,
            entries: entries.into(),
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

    /// The last index a durable snapshot covers (storage keeps the entries after it).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// The last index no longer in memory: entries at or before it are committed and applied
    /// (a peer that needs one gets a snapshot). Its ballot is still known.
    pub fn floor_index(&self) -> u64 {
        self.floor_index
    }

    pub fn first_index(&self) -> u64 {
        self.floor_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.floor_index + self.entries.len() as u64
    }

    pub fn last_ballot(&self) -> Ballot {
        self.ballot_at(self.last_index())
            .expect("the last index is always in the log or the snapshot point")
    }

    pub fn stable_last(&self) -> u64 {
        self.stable_last
    }

    /// Ballot of the entry at `index`; known for the floor and the entries after it.
    pub fn ballot_at(&self, index: u64) -> Option<Ballot> {
        if index == self.floor_index {
            return Some(self.floor_ballot);
        }
        self.entry(index).map(|entry| ballot_or_zero(entry.ballot))
    }

    pub fn entry(&self, index: u64) -> Option<&LogEntry> {
        if index <= self.floor_index || index > self.last_index() {
            return None;
        }
        Some(&self.entries[(index - self.floor_index - 1) as usize])
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
        self.entries.push_back(entry);
    }

    fn mark_dirty(&mut self, index: u64) {
        self.dirty_from = Some(self.dirty_from.map_or(index, |from| from.min(index)));
    }

    /// Drops every entry at `index` or later (never at or before the floor: those applied).
    pub fn truncate_from(&mut self, index: u64) {
        assert!(
            index > self.floor_index,
            "cannot truncate into the applied entries"
        );
        if index > self.last_index() {
            return;
        }
        self.entries
            .truncate((index - self.floor_index - 1) as usize);
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
            from_index > self.floor_index,
            "dirty entries are never let go"
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
        self.floor_index = meta.index;
        self.floor_ballot = ballot_or_zero(meta.ballot);
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
        self.snapshot_index = index;
        self.forget_through(index);
    }

    /// Lets go of the entries up to `index` (inclusive) in memory, which must be durable (the
    /// caller also knows them applied); storage keeps them until a snapshot covers them.
    pub fn forget_through(&mut self, index: u64) {
        if index <= self.floor_index {
            return;
        }
        assert!(index <= self.stable_last, "only durable entries are let go");
        let ballot = self.ballot_at(index).expect("index is within the log");
        self.entries.drain(..(index - self.floor_index) as usize);
        // A log that was long once (recovered, or before a snapshot) gives its room back.
        if self.entries.capacity() > 4 * self.entries.len() + 1024 {
            self.entries.shrink_to_fit();
        }
        self.floor_index = index;
        self.floor_ballot = ballot;
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

    #[test]
    fn entries_let_go_keep_the_floor_ballot_and_the_snapshot_point() {
        let mut log = Log::recovered(
            2,
            Ballot::new(2, 1),
            Configuration::default(),
            (3..=8).map(|i| entry(i, i)).collect(),
        );
        log.forget_through(5);
        assert_eq!(log.snapshot_index(), 2, "no snapshot covers them yet");
        assert_eq!(log.floor_index(), 5);
        assert_eq!(log.first_index(), 6);
        assert_eq!(log.ballot_at(5), Some(Ballot::new(5, 1)));
        assert_eq!(log.ballot_at(4), None);
        assert!(log.entry(5).is_none());
        assert_eq!(log.entry(6), Some(&entry(6, 6)));
        assert_eq!(log.last_index(), 8);
        // A snapshot older than the floor moves only the snapshot point.
        log.compact_to(4);
        assert_eq!((log.snapshot_index(), log.floor_index()), (4, 5));
        // A newer one moves both.
        log.compact_to(7);
        assert_eq!((log.snapshot_index(), log.floor_index()), (7, 7));
        assert_eq!(log.ballot_at(7), Some(Ballot::new(7, 1)));
        assert_eq!(log.slice(1, 10, usize::MAX), vec![entry(8, 8)]);
    }

    #[test]
    #[should_panic(expected = "only durable entries are let go")]
    fn entries_not_yet_durable_are_never_let_go() {
        let mut log = Log::recovered(0, Ballot::ZERO, Configuration::default(), vec![]);
        log.append(entry(1, 1));
        log.append(entry(2, 1));
        log.forget_through(1);
    }
}
