//! The key-value state machine every replica applies the log to: an ordered map of keys with
//! revisions, compare-and-set, prefix scans, TTLs and leases judged by log time, and the client
//! sessions that make writes apply once.
//!
//! Time: every entry carries the log time its leader stamped. Applying an entry first moves the
//! store's log time forward, then removes what expired (a bounded amount per entry, oldest
//! deadline first), then applies the command. A key exists at log time t iff its own deadline
//! (if any) is after t and its lease (if any) is live at t; keys past their deadline but not yet
//! removed are already invisible, so the bound on removal work never changes an answer.

mod expiry;
mod validate;

use std::collections::{BTreeMap, BTreeSet};

use paxkv_proto::client::{
    client_response::Body as Response, ClientResponse, DeleteRequest, DeleteResponse, ErrorCode,
    KeyValue, PutRequest, PutResponse, RegisterSessionResponse, ResponseHeader,
};
use paxkv_proto::peer::{
    command::Op, entry::Kind, Command, Entry, KvSnapshot, LeaseRecord, SessionRecord,
};
use paxkv_proto::{SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX};
use prost::Message;

pub use expiry::EXPIRED_KEYS_PER_ENTRY_MAX;
pub use validate::{error_response, validate_command, validate_key, TTL_MS_MAX};

/// Client sessions remembered for exactly-once writes by default; the least recently used one
/// is forgotten beyond this, and its next write is refused as of an expired session (never
/// applied as new, which could apply a retried write twice).
pub const SESSIONS_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredValue {
    /// Boxed, not a `Vec`: no spare capacity and 8 bytes less per key in the map.
    value: Box<[u8]>,
    create_revision: u64,
    mod_revision: u64,
    version: u64,
    /// 0: no lease.
    lease_id: u64,
    /// Log time the key's own TTL ends; 0: no TTL.
    expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    granted_ttl_ms: u64,
    expires_at_ms: u64,
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct KvStore {
    map: BTreeMap<Box<[u8]>, StoredValue>,
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
            map: BTreeMap::new(),
            revision: 0,
            log_time_ms: 0,
            applied_index: 0,
            key_deadlines: BTreeSet::new(),
            leases: BTreeMap::new(),
            lease_deadlines: BTreeSet::new(),
            sessions: BTreeMap::new(),
            sessions_by_age: BTreeMap::new(),
            sessions_max: SESSIONS_MAX,
        }
    }

    /// Sets how many sessions are kept (the simulator lowers it to exercise forgetting).
    pub fn set_sessions_max(&mut self, sessions_max: usize) {
        assert!(sessions_max > 0, "at least one session is kept");
        self.sessions_max = sessions_max;
        self.evict_sessions();
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
            Some(Kind::Noop(_)) | None => None,
        }
    }

    fn apply_command(&mut self, index: u64, command: &Command) -> Response {
        if let Some(Op::RegisterSession(_)) = &command.op {
            return self.register_session(index, command);
        }
        if command.client_id != 0 {
            let known = self.sessions.contains_key(&command.client_id);
            if !known && !crate::planted::active(crate::planted::Bug::UnknownSessionApplied) {
                return error_response(
                    ErrorCode::SessionExpired,
                    format!(
                        "session {} is not known (never registered, or forgotten among the \
                         {} most recently used); the write was not applied now, but if it was \
                         sent before, an earlier attempt may have been: its outcome is unknown",
                        command.client_id, self.sessions_max
                    ),
                );
            }
            if let Some(session) = self.sessions.get(&command.client_id) {
                if command.sequence == session.last_sequence
                    && !crate::planted::active(crate::planted::Bug::RetryAppliedTwice)
                {
                    let cached = ClientResponse::decode(session.last_response.as_slice())
                        .expect("session answers are encoded by this state machine");
                    return cached.body.expect("session answers always have a body");
                }
                if command.sequence < session.last_sequence {
                    return error_response(
                        ErrorCode::StaleSequence,
                        format!(
                            "sequence {} of client {} is older than its last applied write {}",
                            command.sequence, command.client_id, session.last_sequence
                        ),
                    );
                }
            }
        }
        let response = match validate_command(command) {
            Err(error) => error,
            Ok(()) => match command.op.as_ref().expect("validated commands have an op") {
                Op::Put(put) => self.put(put),
                Op::Delete(delete) => self.delete(delete),
                Op::Expire(expire) => self.expire(expire),
                Op::Persist(persist) => self.persist(persist),
                Op::LeaseGrant(grant) => self.lease_grant(index, grant),
                Op::LeaseKeepAlive(keep_alive) => self.lease_keep_alive(keep_alive),
                Op::LeaseRevoke(revoke) => self.lease_revoke(revoke),
                Op::RegisterSession(_) => {
                    unreachable!("registrations are applied before sessions are looked up")
                }
            },
        };
        if command.client_id != 0 {
            self.remember_session(index, command, &response);
        }
        response
    }

    /// Opens a session whose id is the log index of its registration (unique, never 0).
    fn register_session(&mut self, index: u64, command: &Command) -> Response {
        let response = Response::RegisterSession(RegisterSessionResponse {
            header: self.header(),
            client_id: index,
        });
        let record = Command {
            client_id: index,
            sequence: 0,
            op: command.op.clone(),
        };
        self.remember_session(index, &record, &response);
        response
    }

    fn remember_session(&mut self, index: u64, command: &Command, response: &Response) {
        if let Some(old) = self.sessions.get(&command.client_id) {
            self.sessions_by_age
                .remove(&(old.last_index, command.client_id));
        }
        let encoded = ClientResponse {
            request_id: 0,
            body: Some(response.clone()),
        }
        .encode_to_vec();
        self.sessions.insert(
            command.client_id,
            SessionRecord {
                client_id: command.client_id,
                last_sequence: command.sequence,
                last_response: encoded,
                last_index: index,
            },
        );
        self.sessions_by_age.insert((index, command.client_id), ());
        self.evict_sessions();
    }

    /// Forgets the least recently used sessions beyond the bound.
    fn evict_sessions(&mut self) {
        while self.sessions.len() > self.sessions_max {
            let (&(_, oldest), _) = self
                .sessions_by_age
                .iter()
                .next()
                .expect("sessions are not empty");
            self.sessions_by_age
                .remove(&(self.sessions[&oldest].last_index, oldest));
            self.sessions.remove(&oldest);
        }
        assert_eq!(
            self.sessions.len(),
            self.sessions_by_age.len(),
            "session index out of step"
        );
    }

    fn key_value(key: &[u8], stored: &StoredValue) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: stored.value.to_vec(),
            create_revision: stored.create_revision,
            mod_revision: stored.mod_revision,
            version: stored.version,
            lease_id: stored.lease_id,
            expires_at_ms: stored.expires_at_ms,
        }
    }

    fn revision_matches(current: Option<&StoredValue>, expected: Option<u64>) -> bool {
        match expected {
            None => true,
            Some(0) => current.is_none(),
            Some(revision) => current.is_some_and(|stored| stored.mod_revision == revision),
        }
    }

    /// Stores `stored` under `key`, keeping the deadline and lease indexes in step.
    fn insert_key(&mut self, key: Vec<u8>, stored: StoredValue) {
        self.remove_key(&key);
        if stored.expires_at_ms != 0 {
            self.key_deadlines
                .insert((stored.expires_at_ms, key.clone()));
        }
        if stored.lease_id != 0 {
            let lease = self
                .leases
                .get_mut(&stored.lease_id)
                .expect("keys attach only to existing leases");
            lease.keys.insert(key.clone());
        }
        self.map.insert(key.into_boxed_slice(), stored);
    }

    /// Removes `key` and its index entries; returns what was stored.
    fn remove_key(&mut self, key: &[u8]) -> Option<StoredValue> {
        let stored = self.map.remove(key)?;
        if stored.expires_at_ms != 0 {
            let removed = self
                .key_deadlines
                .remove(&(stored.expires_at_ms, key.to_vec()));
            assert!(removed, "every TTL is in the deadline index");
        }
        if stored.lease_id != 0 {
            if let Some(lease) = self.leases.get_mut(&stored.lease_id) {
                lease.keys.remove(key);
            }
        }
        Some(stored)
    }

    fn put(&mut self, put: &PutRequest) -> Response {
        if let Some(lease_id) = put.lease_id {
            if self.live_lease(lease_id).is_none() {
                return error_response(
                    ErrorCode::NotFound,
                    format!("lease {lease_id} does not exist or has expired; grant a new one"),
                );
            }
        }
        self.purge_if_expired(&put.key);
        let current = self.map.get(put.key.as_slice());
        let previous = current.map(|stored| Self::key_value(&put.key, stored));
        if !Self::revision_matches(current, put.expected_revision) {
            return Response::Put(PutResponse {
                header: self.header(),
                succeeded: false,
                previous,
            });
        }
        let expires_at_ms = match (put.ttl_ms, put.keep_ttl) {
            (Some(ttl_ms), _) => self.log_time_ms.saturating_add(ttl_ms),
            (None, true) => current.map_or(0, |stored| stored.expires_at_ms),
            (None, false) => 0,
        };
        self.revision += 1;
        let stored = StoredValue {
            value: Box::from(put.value.as_slice()),
            create_revision: current.map_or(self.revision, |stored| stored.create_revision),
            mod_revision: self.revision,
            version: current.map_or(1, |stored| stored.version + 1),
            lease_id: put.lease_id.unwrap_or(0),
            expires_at_ms,
        };
        self.insert_key(put.key.clone(), stored);
        Response::Put(PutResponse {
            header: self.header(),
            succeeded: true,
            previous,
        })
    }

    fn delete(&mut self, delete: &DeleteRequest) -> Response {
        self.purge_if_expired(&delete.key);
        let current = self.map.get(delete.key.as_slice());
        let previous = current.map(|stored| Self::key_value(&delete.key, stored));
        if current.is_none() || !Self::revision_matches(current, delete.expected_revision) {
            return Response::Delete(DeleteResponse {
                header: self.header(),
                deleted: false,
                previous,
            });
        }
        self.revision += 1;
        self.remove_key(&delete.key);
        Response::Delete(DeleteResponse {
            header: self.header(),
            deleted: true,
            previous,
        })
    }

    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.live(key).map(|stored| Self::key_value(key, stored))
    }

    /// Live keys with `prefix` strictly after `start_after`, at most `limit` (0: the default);
    /// returns the page and whether more keys follow.
    pub fn scan(&self, prefix: &[u8], start_after: &[u8], limit: u32) -> (Vec<KeyValue>, bool) {
        let limit = match limit {
            0 => SCAN_LIMIT_DEFAULT,
            limit => limit.min(SCAN_LIMIT_MAX),
        } as usize;
        let start = if start_after.is_empty() || start_after < prefix {
            std::ops::Bound::Included(prefix)
        } else {
            std::ops::Bound::Excluded(start_after)
        };
        let mut matching = self
            .map
            .range::<[u8], _>((start, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, stored)| self.is_live(stored));
        let page: Vec<KeyValue> = matching
            .by_ref()
            .take(limit)
            .map(|(key, stored)| Self::key_value(key, stored))
            .collect();
        let more = matching.next().is_some();
        (page, more)
    }

    pub fn to_snapshot(&self) -> KvSnapshot {
        KvSnapshot {
            revision: self.revision,
            kvs: self
                .map
                .iter()
                .map(|(key, stored)| Self::key_value(key, stored))
                .collect(),
            sessions: self.sessions.values().cloned().collect(),
            log_time_ms: self.log_time_ms,
            leases: self
                .leases
                .iter()
                .map(|(id, lease)| LeaseRecord {
                    lease_id: *id,
                    granted_ttl_ms: lease.granted_ttl_ms,
                    expires_at_ms: lease.expires_at_ms,
                })
                .collect(),
        }
    }

    /// The bytes of [`KvStore::to_snapshot`], written one key at a time: the state is never held
    /// twice (a store of a million keys would otherwise copy all of them first).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        use prost::encoding::{message, uint64};
        let mut out = Vec::with_capacity(self.map.len() * 48);
        if self.revision != 0 {
            uint64::encode(1, &self.revision, &mut out);
        }
        for (key, stored) in &self.map {
            message::encode(2, &Self::key_value(key, stored), &mut out);
        }
        for session in self.sessions.values() {
            message::encode(3, session, &mut out);
        }
        if self.log_time_ms != 0 {
            uint64::encode(4, &self.log_time_ms, &mut out);
        }
        for (id, lease) in &self.leases {
            let record = LeaseRecord {
                lease_id: *id,
                granted_ttl_ms: lease.granted_ttl_ms,
                expires_at_ms: lease.expires_at_ms,
            };
            message::encode(5, &record, &mut out);
        }
        out
    }

    /// Rebuilds the key map in one pass. Keys inserted one at a time in rising order (the
    /// common way to fill a store) leave the tree's nodes about half empty; rebuilt from the
    /// sorted keys they come out full. Moves the entries, copies no key or value.
    pub fn compact_memory(&mut self) {
        self.map = std::mem::take(&mut self.map).into_iter().collect();
    }

    /// The store a snapshot describes, keeping at most `SESSIONS_MAX` sessions (call
    /// `set_sessions_max` for another bound).
    pub fn from_snapshot(snapshot: KvSnapshot) -> KvStore {
        let mut store = KvStore::new();
        store.revision = snapshot.revision;
        store.log_time_ms = snapshot.log_time_ms;
        for lease in snapshot.leases {
            store
                .lease_deadlines
                .insert((lease.expires_at_ms, lease.lease_id));
            store.leases.insert(
                lease.lease_id,
                Lease {
                    granted_ttl_ms: lease.granted_ttl_ms,
                    expires_at_ms: lease.expires_at_ms,
                    keys: BTreeSet::new(),
                },
            );
        }
        let mut entries = Vec::with_capacity(snapshot.kvs.len());
        for kv in snapshot.kvs {
            let stored = StoredValue {
                value: kv.value.into_boxed_slice(),
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                lease_id: kv.lease_id,
                expires_at_ms: kv.expires_at_ms,
            };
            assert!(
                stored.mod_revision <= store.revision,
                "snapshot key newer than its revision"
            );
            if stored.expires_at_ms != 0 {
                store
                    .key_deadlines
                    .insert((stored.expires_at_ms, kv.key.clone()));
            }
            if stored.lease_id != 0 {
                let lease = store
                    .leases
                    .get_mut(&stored.lease_id)
                    .expect("a snapshot's keys attach only to its leases");
                lease.keys.insert(kv.key.clone());
            }
            entries.push((kv.key.into_boxed_slice(), stored));
        }
        // Built in one pass from keys in order (a snapshot lists them sorted): the tree's nodes
        // come out full, where inserting one key at a time leaves them about half empty.
        store.map = entries.into_iter().collect();
        for session in snapshot.sessions {
            store
                .sessions_by_age
                .insert((session.last_index, session.client_id), ());
            store.sessions.insert(session.client_id, session);
        }
        store
    }

    /// A deterministic digest of the whole state (keys, values, revisions, TTLs, leases, log
    /// time, sessions): equal on two replicas exactly when they applied the same log prefix.
    pub fn state_hash(&self) -> u64 {
        fnv1a(&self.encode_snapshot())
    }
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
    use paxkv_proto::peer::Noop;

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
    fn encoding_a_snapshot_key_by_key_gives_the_bytes_of_the_whole_message() {
        let mut store = KvStore::new();
        assert_eq!(store.encode_snapshot(), store.to_snapshot().encode_to_vec());
        let five = register(&mut store, 1);
        let seven = register(&mut store, 2);
        store.apply(3, &put_entry(five, 1, "a", "1", None));
        store.apply(4, &put_entry(0, 0, "b", "2", None));
        store.apply(5, &put_entry(seven, 1, "c", "", None));
        assert!(store.to_snapshot().kvs.len() == 3 && !store.to_snapshot().sessions.is_empty());
        assert_eq!(store.encode_snapshot(), store.to_snapshot().encode_to_vec());
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
