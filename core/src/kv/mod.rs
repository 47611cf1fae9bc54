//! The key-value state machine every replica applies the log to: an ordered map of keys with
//! revisions, compare-and-set, prefix scans, TTLs and leases judged by log time, and the client
//! sessions that make writes apply once.
//!
//! Where things live: each command in `cmd/` (one file each: check, apply or answer);
//! `sessions.rs` (exactly-once writes), `leases.rs`, `expiry.rs` (log time and removal of what
//! expired), `snapshot_codec.rs`, `errors.rs` (error answers and shared checks). This file
//! holds the store itself, the order in which an entry is applied, and the key indexes.
//!
//! Time: every entry carries the log time its leader stamped. Applying an entry first moves the
//! store's log time forward and deletes what expired, at a revision of its own (see `expiry`:
//! work per entry is bounded by holding log time back, never by showing a key past its
//! deadline), then applies the command. A key exists at log time t iff it is stored: nothing
//! stored has a deadline at or before the store's log time once an entry has applied.
//! Every change of visible state is recorded in the replica's own `history` (for reads at a
//! past revision).

pub mod cmd;
mod errors;
mod expiry;
mod history;
mod leases;
mod records;
pub mod redis;
mod sessions;
mod snapshot_build;
mod snapshot_codec;
mod stored;

use std::collections::{BTreeMap, BTreeSet};

use paxkv_proto::client::{
    client_response::Body as Response, EventKind, KeyValue, ResponseHeader, ValueType, WatchEvent,
};
use paxkv_proto::peer::{command::Op, entry::Kind, Command, Entry, SessionRecord};

pub use cmd::{route, validate_command, ReadPoint, ReadRequest, Routed};
pub use errors::{error_response, validate_key, TTL_MS_MAX};
pub use expiry::EXPIRED_KEYS_PER_ENTRY_MAX;
pub use history::{HISTORY_BYTES_MAX, HISTORY_REVISIONS_MAX};
pub use sessions::SESSIONS_MAX;

use history::{After, Change, History};
use leases::Lease;
use records::Records;
use stored::{KeyMeta, StoredValue};

#[derive(Debug, Clone)]
pub struct KvStore {
    /// Every key's record (key, metadata and value in one allocation), ordered by key.
    map: Records,
    /// Revision of the last write that changed some key; starts at 0.
    revision: u64,
    /// Log time of the last applied entry.
    log_time_ms: u64,
    /// Log index of the last applied entry (or of the snapshot the store was built from): the
    /// position every answer is served at. Not part of the snapshot's bytes or the state hash.
    applied_index: u64,
    /// (deadline, key) of every key with a TTL.
    key_deadlines: BTreeSet<(u64, Vec<u8>)>,
    leases: BTreeMap<u64, Lease>,
    /// (deadline, lease id) of every lease.
    lease_deadlines: BTreeSet<(u64, u64)>,
    sessions: BTreeMap<u64, SessionRecord>,
    /// (last_index, client_id) of every session, oldest first, for eviction.
    sessions_by_age: BTreeMap<(u64, u64), ()>,
    /// Sessions kept at most (`SESSIONS_MAX` unless configured). Every replica must use the
    /// same bound, or they would forget different sessions and answer a write differently.
    sessions_max: usize,
    /// The recent changes (this replica's own: see `history`). Not part of the state hash.
    history: History,
    /// The last entry stopped short of its log time to bound its expiry work (see `expiry`).
    expiry_lags: bool,
    /// While a transaction applies: whether one of its writes has taken its revision yet
    /// (every write of a transaction shares one). None outside a transaction.
    txn_revision_taken: Option<bool>,
    /// Unix time minus log time (ms) for the Redis commands' absolute times; 0: not set yet.
    unix_offset_ms: i64,
    /// The snapshot being encoded a slice at a time, if any (`snapshot_build`). Not part of
    /// the state.
    build: Option<Box<snapshot_build::SnapshotBuild>>,
}

/// An empty store; the same as [`KvStore::new`] (a derived default would keep no sessions).
impl Default for KvStore {
    fn default() -> KvStore {
        KvStore::new()
    }
}

impl KvStore {
    pub fn new() -> KvStore {
        KvStore {
            map: Records::new(),
            revision: 0,
            log_time_ms: 0,
            applied_index: 0,
            key_deadlines: BTreeSet::new(),
            leases: BTreeMap::new(),
            lease_deadlines: BTreeSet::new(),
            sessions: BTreeMap::new(),
            sessions_by_age: BTreeMap::new(),
            sessions_max: SESSIONS_MAX,
            history: History::starting_at(0, 0),
            expiry_lags: false,
            txn_revision_taken: None,
            unix_offset_ms: 0,
            build: None,
        }
    }

    /// Moves to the revision of a write that changes something: the next one, unless a write
    /// of the same transaction took it already.
    fn take_revision(&mut self) {
        let own = crate::planted::active(crate::planted::Bug::TxnWritesOwnRevisions);
        match self.txn_revision_taken {
            None => self.revision += 1,
            Some(true) if own => self.revision += 1,
            Some(false) => {
                self.revision += 1;
                self.txn_revision_taken = Some(true);
            }
            Some(true) => {}
        }
    }

    /// Records a change of `key` (`previous` before it) at the current revision and log time.
    fn record(&mut self, key: &[u8], previous: Option<StoredValue>, after: After) {
        self.history.record(Change::new(
            self.revision,
            self.log_time_ms,
            key,
            previous,
            after,
        ));
    }

    /// Every change after `after` (at least the oldest revision kept) as watch events, oldest
    /// first, with the keys as they were before; or the oldest revision kept if `after` is
    /// older.
    pub fn watch_events(&self, after: u64) -> Result<Vec<WatchEvent>, u64> {
        if after < self.history.first_revision() {
            return Err(self.history.first_revision());
        }
        let changes: Vec<&Change> = self.history.since(after).collect();
        // What a change left is what the next change of its key found, or after its last
        // change the record stored now: walked newest first.
        let mut found_next: BTreeMap<&[u8], Option<&StoredValue>> = BTreeMap::new();
        let latest_only = crate::planted::active(crate::planted::Bug::WatchShowsLatestRecord);
        let mut events: Vec<WatchEvent> = changes
            .iter()
            .rev()
            .map(|change| {
                let key = change.key();
                let left = match change.after {
                    After::Stored => match found_next.get(key).filter(|_| !latest_only) {
                        Some(found) => *found,
                        None => self.stored(key),
                    },
                    After::Deleted | After::Expired => None,
                };
                found_next.insert(key, change.previous());
                let kind = match change.after {
                    After::Stored => EventKind::Put,
                    After::Expired => EventKind::Expire,
                    After::Deleted => EventKind::Delete,
                };
                let kv = match left {
                    Some(stored) => Self::key_value(key, stored),
                    None => KeyValue {
                        key: key.to_vec(),
                        mod_revision: change.revision,
                        ..KeyValue::default()
                    },
                };
                WatchEvent {
                    kind: kind as i32,
                    revision: change.revision,
                    kv: Some(kv),
                    prev_kv: change.previous().map(|stored| Self::key_value(key, stored)),
                }
            })
            .collect();
        events.reverse();
        Ok(events)
    }

    /// Expire events, at the current revision, for the keys whose own deadline is at or before
    /// `time_ms` but that the log has not expired yet. Only the planted bug
    /// `WatchExpiryByOwnClock` asks this (with a node's own clock): expiry is the log's.
    pub fn expiry_events_due_by(&self, time_ms: u64) -> Vec<WatchEvent> {
        self.key_deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= time_ms)
            .map(|(_, key)| WatchEvent {
                kind: EventKind::Expire as i32,
                revision: self.revision,
                kv: Some(KeyValue {
                    key: key.clone(),
                    mod_revision: self.revision,
                    ..KeyValue::default()
                }),
                prev_kv: None,
            })
            .collect()
    }

    /// The oldest revision this replica can still show (see `scan_at`).
    pub fn history_first_revision(&self) -> u64 {
        self.history.first_revision()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The position of a store built from a snapshot: the snapshot's index.
    pub fn set_applied_index(&mut self, index: u64) {
        self.applied_index = index;
    }

    /// Keys physically stored (including expired ones not yet removed).
    pub fn key_count(&self) -> usize {
        self.map.len()
    }

    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// True if anything waits for log time to pass (a TTL or a lease): only then must an idle
    /// leader keep log time moving.
    pub fn has_deadlines(&self) -> bool {
        !self.key_deadlines.is_empty() || !self.lease_deadlines.is_empty()
    }

    /// The header of an answer served now. `served_by` is left 0: answers are part of the
    /// replicated state (sessions remember them), so the replica fills it in when it responds.
    pub fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: self.revision,
            served_by: 0,
            log_time_ms: self.log_time_ms,
            applied_index: self.applied_index,
            leader_address: String::new(),
        })
    }

    /// Applies one committed entry at `index`; returns the answer for the writer, if any.
    pub fn apply(&mut self, index: u64, entry: &Entry) -> Option<Response> {
        assert!(
            index > self.applied_index,
            "entries apply in log order: {index} after {}",
            self.applied_index
        );
        self.applied_index = index;
        self.advance_time(entry.log_time_ms);
        match &entry.kind {
            Some(Kind::Command(command)) => Some(self.apply_command(index, command)),
            // Membership is the replica's business (`membership`), not the store's.
            Some(Kind::Noop(_)) | Some(Kind::ConfigChange(_)) | None => None,
        }
    }

    /// A command passes its session (a retry is answered as the first time), then its checks,
    /// then changes the state; its session remembers the answer.
    fn apply_command(&mut self, index: u64, command: &Command) -> Response {
        if let Some(Op::RegisterSession(_)) = &command.op {
            return self.register_session(index, command);
        }
        if let Some(answer) = self.session_answer(command) {
            return answer;
        }
        let response = match validate_command(command) {
            Err(error) => error,
            Ok(()) => self.apply_op(index, command),
        };
        if command.client_id != 0 {
            self.remember_session(index, command, &response);
        }
        response
    }

    fn key_value(key: &[u8], stored: &StoredValue) -> KeyValue {
        let meta = stored.meta();
        KeyValue {
            key: key.to_vec(),
            value: stored.value().to_vec(),
            create_revision: meta.create_revision,
            mod_revision: meta.mod_revision,
            version: meta.version,
            lease_id: meta.lease_id,
            expires_at_ms: meta.expires_at_ms,
            value_type: meta.value_type as i32,
        }
    }

    fn revision_matches(current: Option<&StoredValue>, expected: Option<u64>) -> bool {
        match expected {
            None => true,
            Some(0) => current.is_none(),
            Some(revision) => current.is_some_and(|stored| stored.mod_revision() == revision),
        }
    }

    /// Stores `stored` under `key`, keeping the deadline and lease indexes in step; returns
    /// what was stored before.
    fn insert_key(&mut self, stored: StoredValue) -> Option<StoredValue> {
        let key = stored.key();
        let replaced = self.remove_key(key);
        self.index_key(key, stored.expires_at_ms(), stored.lease_id());
        self.map.insert(stored);
        replaced
    }

    /// What `key` holds, expired or not.
    fn stored(&self, key: &[u8]) -> Option<&StoredValue> {
        self.map.get(key)
    }

    /// The records from `start` on, in key order, each with its key.
    fn stored_from(
        &self,
        start: std::ops::Bound<&[u8]>,
    ) -> impl Iterator<Item = (&[u8], &StoredValue)> {
        self.map
            .range_from(start)
            .map(|record| (record.key(), record))
    }

    /// Stores `value` as `key`'s new value: a new version of the key (or a new key, created at
    /// this revision), with the deadline `ttl` says and the lease `lease` says, at a revision
    /// taken for it; a deadline already past deletes the key instead (as Redis does). The one
    /// way every command writes a key (put, transactions, the Redis commands).
    pub(super) fn store_value(
        &mut self,
        key: &[u8],
        value: &[u8],
        value_type: ValueType,
        ttl: Ttl,
        lease: KeyLease,
    ) {
        let existing = self.stored(key).map(StoredValue::meta);
        self.store_value_over(key, existing, value, value_type, ttl, lease);
    }

    /// `store_value` for a caller that has just looked the key up (`existing`: its metadata
    /// then): one search of the map fewer, and every put makes one.
    pub(in crate::kv) fn store_value_over(
        &mut self,
        key: &[u8],
        existing: Option<KeyMeta>,
        value: &[u8],
        value_type: ValueType,
        ttl: Ttl,
        lease: KeyLease,
    ) {
        let expires_at_ms = match ttl {
            Ttl::Clear => 0,
            Ttl::Keep => existing.map_or(0, |existing| existing.expires_at_ms),
            Ttl::At(deadline) => deadline,
        };
        if expires_at_ms != 0 && expires_at_ms <= self.log_time_ms {
            // Already past: the key is gone, as Redis deletes a key given a past deadline.
            self.delete_key(key);
            return;
        }
        let lease_id = match (lease, existing) {
            (KeyLease::Attach(lease_id), _) => lease_id,
            (KeyLease::Keep, Some(existing)) if self.leases.contains_key(&existing.lease_id) => {
                existing.lease_id
            }
            _ => 0,
        };
        self.take_revision();
        let meta = KeyMeta {
            create_revision: existing.map_or(self.revision, |existing| existing.create_revision),
            mod_revision: self.revision,
            version: existing.map_or(1, |existing| existing.version + 1),
            lease_id,
            expires_at_ms,
            value_type,
        };
        let stored = StoredValue::new(key, &meta, value);
        let before = if existing.is_some() {
            Some(self.replace_key(stored))
        } else {
            self.insert_key(stored)
        };
        self.record(key, before, After::Stored);
    }

    /// Stores `stored` under its key, which exists, in place (one lookup), keeping the deadline
    /// and lease indexes in step; returns what was stored.
    fn replace_key(&mut self, stored: StoredValue) -> StoredValue {
        // Every change of the map passes here, `remove_key` or `insert_key`.
        self.before_key_change(stored.key());
        let (expires_at_ms, lease_id) = (stored.expires_at_ms(), stored.lease_id());
        let before = self
            .map
            .insert(stored)
            .expect("replace_key is for existing keys");
        let key = before.key();
        if (before.expires_at_ms(), before.lease_id()) != (expires_at_ms, lease_id) {
            self.unindex_key(key, before.expires_at_ms(), before.lease_id());
            self.index_key(key, expires_at_ms, lease_id);
        }
        before
    }

    /// Deletes `key` at a revision of its own; false if it did not exist.
    pub(super) fn delete_key(&mut self, key: &[u8]) -> bool {
        if !self.map.contains(key) {
            return false;
        }
        self.take_revision();
        let removed = self.remove_key(key);
        self.record(key, removed, After::Deleted);
        true
    }

    /// Removes `key` and its index entries; returns what was stored.
    fn remove_key(&mut self, key: &[u8]) -> Option<StoredValue> {
        // Every change of the map passes here, `insert_key` (which removes first) or
        // `replace_key`.
        self.before_key_change(key);
        let stored = self.map.remove(key)?;
        self.unindex_key(key, stored.expires_at_ms(), stored.lease_id());
        Some(stored)
    }

    /// Enters `key` in the deadline index (0: no TTL) and its lease's keys (0: none).
    fn index_key(&mut self, key: &[u8], expires_at_ms: u64, lease_id: u64) {
        if expires_at_ms != 0 {
            self.key_deadlines.insert((expires_at_ms, key.to_vec()));
        }
        if lease_id != 0 {
            let lease = self
                .leases
                .get_mut(&lease_id)
                .expect("keys attach only to existing leases");
            lease.keys.insert(key.to_vec());
        }
    }

    /// Takes `key` out of the deadline index and its lease's keys (what `index_key` entered).
    fn unindex_key(&mut self, key: &[u8], expires_at_ms: u64, lease_id: u64) {
        if expires_at_ms != 0 {
            let removed = self.key_deadlines.remove(&(expires_at_ms, key.to_vec()));
            assert!(removed, "every TTL is in the deadline index");
        }
        if lease_id != 0 {
            if let Some(lease) = self.leases.get_mut(&lease_id) {
                lease.keys.remove(key);
            }
        }
    }
}

/// The deadline a write gives the key (`KvStore::store_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ttl {
    /// No TTL (a plain SET).
    Clear,
    /// The TTL the key has (INCR, APPEND, HSET, SET KEEPTTL).
    Keep,
    /// This log time.
    At(u64),
}

/// The lease a write leaves the key attached to (`KvStore::store_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyLease {
    /// None (a plain put, SET).
    Detach,
    /// The lease the key has, if it still exists (INCR, APPEND, HSET).
    Keep,
    /// This lease, which the caller checked is live.
    Attach(u64),
}

/// 64-bit FNV-1a; stable across runs and platforms, unlike `std`'s randomly keyed hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use paxkv_proto::client::{DeleteRequest, ErrorCode, PutRequest};
    use paxkv_proto::peer::Noop;
    use prost::Message;

    fn put_entry(
        client_id: u64,
        sequence: u64,
        key: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Entry {
        Entry {
            log_time_ms: 0,
            kind: Some(Kind::Command(Command {
                client_id,
                sequence,
                op: Some(Op::Put(PutRequest {
                    key: key.into(),
                    value: value.into(),
                    expected_revision: expected,
                    ..Default::default()
                })),
            })),
        }
    }

    fn delete_entry(key: &str, expected: Option<u64>) -> Entry {
        Entry {
            log_time_ms: 0,
            kind: Some(Kind::Command(Command {
                client_id: 0,
                sequence: 0,
                op: Some(Op::Delete(DeleteRequest {
                    key: key.into(),
                    expected_revision: expected,
                    prefix: false,
                    range_end: Vec::new(),
                })),
            })),
        }
    }

    /// Applies a session registration at `index`; returns the new session's id.
    fn register(store: &mut KvStore, index: u64) -> u64 {
        let entry = Entry {
            log_time_ms: 0,
            kind: Some(Kind::Command(Command {
                client_id: 0,
                sequence: 0,
                op: Some(Op::RegisterSession(Default::default())),
            })),
        };
        match store.apply(index, &entry) {
            Some(Response::RegisterSession(session)) => session.client_id,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    fn put_succeeded(response: Option<Response>) -> (bool, u64) {
        match response {
            Some(Response::Put(put)) => (put.succeeded, put.header.unwrap().revision),
            other => panic!("expected a put answer, got {other:?}"),
        }
    }

    /// `skip_previous` leaves the key as it was out of a put's answer (and so out of what the
    /// session remembers on every node), writes all the same, and a failed compare-and-set
    /// still shows the key as it is.
    #[test]
    fn a_put_that_skips_previous_answers_without_the_old_value() {
        let with_skip = |key: &str, value: &str, expected: Option<u64>| {
            let mut entry = put_entry(0, 0, key, value, expected);
            if let Some(Kind::Command(Command {
                op: Some(Op::Put(put)),
                ..
            })) = &mut entry.kind
            {
                put.skip_previous = true;
            }
            entry
        };
        let previous = |response: Option<Response>| match response {
            Some(Response::Put(put)) => (put.succeeded, put.previous.map(|kv| kv.value)),
            other => panic!("expected a put answer, got {other:?}"),
        };
        let mut store = KvStore::new();
        assert_eq!(
            previous(store.apply(1, &put_entry(0, 0, "a", "1", None))),
            (true, None)
        );
        assert_eq!(
            previous(store.apply(2, &put_entry(0, 0, "a", "2", None))),
            (true, Some(b"1".to_vec()))
        );
        assert_eq!(
            previous(store.apply(3, &with_skip("a", "3", None))),
            (true, None)
        );
        assert_eq!(store.get(b"a").unwrap().value, b"3");
        assert_eq!(
            previous(store.apply(4, &with_skip("a", "4", Some(1)))),
            (false, Some(b"3".to_vec()))
        );
        assert_eq!(
            previous(store.apply(5, &with_skip("a", "5", Some(3)))),
            (true, None)
        );
        assert_eq!(store.get(b"a").unwrap().value, b"5");
    }

    #[test]
    fn revisions_versions_and_compare_and_set() {
        let mut store = KvStore::new();
        assert_eq!(
            put_succeeded(store.apply(1, &put_entry(0, 0, "a", "1", Some(0)))),
            (true, 1)
        );
        assert_eq!(
            put_succeeded(store.apply(2, &put_entry(0, 0, "a", "2", Some(0)))),
            (false, 1)
        );
        assert_eq!(
            put_succeeded(store.apply(3, &put_entry(0, 0, "a", "3", Some(7)))),
            (false, 1)
        );
        assert_eq!(
            put_succeeded(store.apply(4, &put_entry(0, 0, "a", "4", Some(1)))),
            (true, 2)
        );
        let kv = store.get(b"a").unwrap();
        assert_eq!(
            (
                kv.value.as_slice(),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            ),
            (&b"4"[..], 1, 2, 2)
        );
        assert_eq!(
            store.apply(
                5,
                &Entry {
                    kind: Some(Kind::Noop(Noop {})),
                    log_time_ms: 0,
                }
            ),
            None
        );
        assert_eq!(store.revision(), 2);
        match store.apply(6, &delete_entry("a", Some(1))) {
            Some(Response::Delete(delete)) => assert!(!delete.deleted),
            other => panic!("{other:?}"),
        }
        match store.apply(7, &delete_entry("a", Some(2))) {
            Some(Response::Delete(delete)) => assert!(delete.deleted),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.get(b"a"), None);
        assert_eq!(store.revision(), 3);
        put_succeeded(store.apply(8, &put_entry(0, 0, "a", "5", None)));
        assert_eq!(
            store.get(b"a").unwrap().create_revision,
            4,
            "recreated key starts over"
        );
    }

    #[test]
    fn retried_write_applies_once_and_old_sequence_is_refused() {
        let mut store = KvStore::new();
        let client = register(&mut store, 1);
        let first = store.apply(2, &put_entry(client, 1, "k", "v1", None));
        let retry = store.apply(3, &put_entry(client, 1, "k", "v-retry", None));
        assert_eq!(first, retry);
        assert_eq!(store.get(b"k").unwrap().value, b"v1");
        assert_eq!(store.revision(), 1);
        store.apply(4, &put_entry(client, 2, "k", "v2", None));
        match store.apply(5, &put_entry(client, 1, "k", "v-old", None)) {
            Some(Response::Error(error)) => assert_eq!(error.code, ErrorCode::StaleSequence as i32),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.get(b"k").unwrap().value, b"v2");
    }

    #[test]
    fn sessions_are_bounded_least_recently_used_first() {
        let mut store = KvStore::new();
        let mut index = 0;
        let mut clients = Vec::new();
        for _ in 0..=SESSIONS_MAX {
            index += 1;
            let client = register(&mut store, index);
            index += 1;
            store.apply(index, &put_entry(client, 1, "k", "v", None));
            clients.push(client);
        }
        assert_eq!(store.sessions.len(), SESSIONS_MAX);
        assert!(
            !store.sessions.contains_key(&clients[0]),
            "the oldest session is forgotten"
        );
        assert!(store.sessions.contains_key(&clients[1]));
    }

    /// Finding 2 of the outside review: a write whose session was forgotten is refused with
    /// "session expired", never applied as new, so a retry of a write applied before the
    /// session was forgotten cannot apply a second time after later writes.
    #[test]
    fn a_write_of_a_forgotten_session_is_refused_not_applied_again() {
        let mut store = KvStore::new();
        store.set_sessions_max(2);
        let writer = register(&mut store, 1);
        store.apply(2, &put_entry(writer, 1, "k", "v1", None));
        // Two other clients write after it, and the writer's session is forgotten.
        let second = register(&mut store, 3);
        store.apply(4, &put_entry(second, 1, "k", "v2", None));
        let third = register(&mut store, 5);
        store.apply(6, &put_entry(third, 1, "k", "v3", None));
        assert!(!store.sessions.contains_key(&writer));
        // The writer's answer was lost; it retries the same sequence.
        match store.apply(7, &put_entry(writer, 1, "k", "v1", None)) {
            Some(Response::Error(error)) => {
                assert_eq!(error.code, ErrorCode::SessionExpired as i32, "{error:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.get(b"k").unwrap().value,
            b"v3",
            "the retry applied again"
        );
        // A session never registered is refused the same way.
        match store.apply(8, &put_entry(12345, 1, "k", "x", None)) {
            Some(Response::Error(error)) => {
                assert_eq!(error.code, ErrorCode::SessionExpired as i32)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scan_pages_through_a_prefix() {
        let mut store = KvStore::new();
        for (index, key) in ["a", "p/1", "p/2", "p/3", "q"].iter().enumerate() {
            store.apply(index as u64 + 1, &put_entry(0, 0, key, "v", None));
        }
        let (page, more) = store.scan(b"p/", b"", 2);
        assert_eq!(
            page.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
            vec![b"p/1".to_vec(), b"p/2".to_vec()]
        );
        assert!(more);
        let (page, more) = store.scan(b"p/", b"p/2", 2);
        assert_eq!(page.len(), 1);
        assert!(!more);
    }

    #[test]
    fn oversized_and_empty_keys_are_refused_without_changing_state() {
        let mut store = KvStore::new();
        let big = "x".repeat(paxkv_proto::KEY_BYTES_MAX + 1);
        for (index, key) in [big.as_str(), ""].into_iter().enumerate() {
            match store.apply(index as u64 + 1, &put_entry(0, 0, key, "v", None)) {
                Some(Response::Error(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(store.revision(), 0);
        assert_eq!(store.key_count(), 0);
    }

    #[test]
    fn encoding_a_snapshot_key_by_key_gives_the_whole_message() {
        let decoded = |store: &KvStore| {
            paxkv_proto::peer::KvSnapshot::decode(store.encode_snapshot().as_slice()).unwrap()
        };
        let mut store = KvStore::new();
        assert_eq!(decoded(&store), store.to_snapshot());
        let five = register(&mut store, 1);
        let seven = register(&mut store, 2);
        store.apply(3, &put_entry(five, 1, "a", "1", None));
        store.apply(4, &put_entry(0, 0, "b", "2", None));
        store.apply(5, &put_entry(seven, 1, "c", "", None));
        assert!(store.to_snapshot().kvs.len() == 3 && !store.to_snapshot().sessions.is_empty());
        assert_eq!(decoded(&store), store.to_snapshot());
    }

    #[test]
    fn a_key_is_encoded_as_its_message_would_be() {
        let meta = KeyMeta {
            create_revision: 3,
            mod_revision: 300,
            version: 1 << 40,
            lease_id: 7,
            expires_at_ms: 123_456,
            value_type: ValueType::Hash,
        };
        let stored = StoredValue::new(b"k", &meta, b"value");
        let bare_meta = KeyMeta {
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            ..KeyMeta::default()
        };
        let bare = StoredValue::new(b"key-with-no-value", &bare_meta, b"");
        for stored in [&stored, &bare] {
            let key = stored.key();
            let mut direct = Vec::new();
            KvStore::encode_key_value(key, stored, &mut direct);
            let mut message = Vec::new();
            prost::encoding::message::encode(2, &KvStore::key_value(key, stored), &mut message);
            assert_eq!(direct, message);
        }
    }

    #[test]
    fn snapshot_round_trip_keeps_the_state_hash() {
        let mut store = KvStore::new();
        store.apply(1, &put_entry(5, 1, "a", "1", None));
        store.apply(2, &put_entry(0, 0, "b", "2", None));
        let restored = KvStore::from_snapshot(store.to_snapshot());
        assert_eq!(restored.state_hash(), store.state_hash());
        let mut changed = restored.clone();
        changed.apply(3, &put_entry(0, 0, "b", "3", None));
        assert_ne!(changed.state_hash(), store.state_hash());
    }
}
