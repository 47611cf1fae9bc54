//! The snapshot codec: the store as a `KvSnapshot` message (keys, revisions, TTLs, leases,
//! sessions, log time) and back. Encoded one key at a time, so a large state is never held
//! twice; decoded into a tree built in one pass.

use std::collections::BTreeSet;

use paxkv_proto::client::ValueType;
use paxkv_proto::peer::{KvSnapshot, LeaseRecord, SessionRecord};
use prost::{DecodeError, Message};

use super::history::History;
use super::leases::Lease;
use super::records::Records;
use super::{fnv1a, KeyMeta, KvStore, StoredValue};

/// Snapshots at least this large are decoded by two threads, each taking about half of the
/// bytes (the tree is then built in one pass as before). A node restarting with a million keys
/// spends most of its time here: on 2 cores, 240 ms in one thread.
const PARALLEL_DECODE_MIN_BYTES: usize = 16 * 1024 * 1024;

/// What a snapshot holds, read from a message or from its bytes. A scalar is `None` where the
/// bytes did not set it (it reads as 0).
#[derive(Default)]
struct SnapshotParts {
    revision: Option<u64>,
    log_time_ms: Option<u64>,
    unix_offset_ms: Option<i64>,
    sessions: Vec<SessionRecord>,
    leases: Vec<LeaseRecord>,
    keys: Vec<StoredValue>,
}

impl SnapshotParts {
    /// Adds the parts decoded from the bytes that follow these ones: what a decoding of both
    /// in one pass would give (a scalar set again later wins).
    fn append(&mut self, later: SnapshotParts) {
        self.revision = later.revision.or(self.revision);
        self.log_time_ms = later.log_time_ms.or(self.log_time_ms);
        self.unix_offset_ms = later.unix_offset_ms.or(self.unix_offset_ms);
        self.sessions.extend(later.sessions);
        self.leases.extend(later.leases);
        self.keys.extend(later.keys);
    }
}

impl KvStore {
    pub fn to_snapshot(&self) -> KvSnapshot {
        KvSnapshot {
            revision: self.revision,
            kvs: self
                .stored_from(std::ops::Bound::Unbounded)
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
            unix_offset_ms: self.unix_offset_ms,
        }
    }

    /// The bytes of [`KvStore::to_snapshot`], written one key at a time: the state is never held
    /// twice (a store of a million keys would otherwise copy all of them first).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.map.len() * 48);
        self.encode_small_parts(&mut out);
        for (key, stored) in self.stored_from(std::ops::Bound::Unbounded) {
            Self::encode_key_value(key, stored, &mut out);
        }
        out
    }

    /// Appends `key` as the snapshot's field 2 (a `KeyValue`), the bytes
    /// `message::encode(2, &key_value(key, stored), out)` gives, without building the message
    /// (two allocations and copies of every key and value).
    pub(super) fn encode_key_value(key: &[u8], stored: &StoredValue, out: &mut Vec<u8>) {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
        let bytes_len = |bytes: &[u8]| {
            if bytes.is_empty() {
                0
            } else {
                1 + encoded_len_varint(bytes.len() as u64) as usize + bytes.len()
            }
        };
        let number_len = |value: u64| {
            if value == 0 {
                0
            } else {
                1 + encoded_len_varint(value) as usize
            }
        };
        // (Every field read once: each reader of a record walks it from its start.)
        let meta = stored.meta();
        let value = stored.value();
        let numbers = [
            (3, meta.create_revision),
            (4, meta.mod_revision),
            (5, meta.version),
            (6, meta.lease_id),
            (7, meta.expires_at_ms),
            (8, meta.value_type as i32 as u64),
        ];
        let length = bytes_len(key)
            + bytes_len(value)
            + numbers
                .iter()
                .map(|(_, value)| number_len(*value))
                .sum::<usize>();
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(length as u64, out);
        for (tag, bytes) in [(1, key), (2, value)] {
            if !bytes.is_empty() {
                encode_key(tag, WireType::LengthDelimited, out);
                encode_varint(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
        }
        for (tag, value) in numbers {
            if value != 0 {
                encode_key(tag, WireType::Varint, out);
                encode_varint(value, out);
            }
        }
    }

    /// Every part of the snapshot but the keys: revision, sessions, log time, leases, Unix
    /// offset. (Decoding takes the fields in any order.)
    pub(super) fn encode_small_parts(&self, out: &mut Vec<u8>) {
        use prost::encoding::{message, sint64, uint64};
        if self.revision != 0 {
            uint64::encode(1, &self.revision, out);
        }
        for session in self.sessions.values() {
            message::encode(3, session, out);
        }
        if self.log_time_ms != 0 {
            uint64::encode(4, &self.log_time_ms, out);
        }
        for (id, lease) in &self.leases {
            let record = LeaseRecord {
                lease_id: *id,
                granted_ttl_ms: lease.granted_ttl_ms,
                expires_at_ms: lease.expires_at_ms,
            };
            message::encode(5, &record, out);
        }
        if self.unix_offset_ms != 0 {
            sint64::encode(6, &self.unix_offset_ms, out);
        }
    }

    /// The store a snapshot describes, keeping at most `SESSIONS_MAX` sessions (call
    /// `set_sessions_max` for another bound).
    pub fn from_snapshot(snapshot: KvSnapshot) -> KvStore {
        let keys = snapshot
            .kvs
            .into_iter()
            .map(|kv| {
                let meta = KeyMeta {
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    lease_id: kv.lease_id,
                    expires_at_ms: kv.expires_at_ms,
                    value_type: kv.value_type(),
                };
                StoredValue::new(&kv.key, &meta, &kv.value)
            })
            .collect();
        Self::assemble(SnapshotParts {
            revision: Some(snapshot.revision),
            log_time_ms: Some(snapshot.log_time_ms),
            unix_offset_ms: Some(snapshot.unix_offset_ms),
            sessions: snapshot.sessions,
            leases: snapshot.leases,
            keys,
        })
    }

    /// The store a snapshot's bytes describe, read straight into the store's own types: no
    /// message of a million keys is built first (the same as decoding a `KvSnapshot` and
    /// `from_snapshot`, in less time and memory).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<KvStore, String> {
        let two_threads = bytes.len() >= PARALLEL_DECODE_MIN_BYTES
            && std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 1);
        let parts = if two_threads {
            Self::decode_in_halves(bytes)?
        } else {
            Self::decode_parts(bytes, bytes.len())?
        };
        Ok(Self::assemble(parts))
    }

    /// Decodes the bytes before and after the top-level field nearest their middle at once, the
    /// later half in a thread of its own.
    fn decode_in_halves(bytes: &[u8]) -> Result<SnapshotParts, String> {
        let (earlier, later) = bytes.split_at(Self::field_boundary(bytes, bytes.len() / 2)?);
        let (earlier, later) = std::thread::scope(|scope| {
            let later = scope.spawn(|| Self::decode_parts(later, later.len()));
            let earlier = Self::decode_parts(earlier, bytes.len());
            let later = later
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (earlier, later)
        });
        let mut parts = earlier?;
        parts.append(later?);
        Ok(parts)
    }

    /// The offset of the first top-level field that starts at or after `target` (the end if
    /// none does): only tags and lengths are read.
    fn field_boundary(bytes: &[u8], target: usize) -> Result<usize, String> {
        use prost::encoding::{decode_key, skip_field, DecodeContext};
        let mut rest = bytes;
        while bytes.len() - rest.len() < target && !rest.is_empty() {
            let (tag, wire_type) = decode_key(&mut rest).map_err(|error| error.to_string())?;
            skip_field(wire_type, tag, &mut rest, DecodeContext::default())
                .map_err(|error| error.to_string())?;
        }
        Ok(bytes.len() - rest.len())
    }

    /// The parts of a run of whole top-level fields; `keys_room_for` is the length of bytes
    /// whose keys the list makes room for at once.
    fn decode_parts(mut bytes: &[u8], keys_room_for: usize) -> Result<SnapshotParts, String> {
        let text = |error: DecodeError| error.to_string();
        use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
        let mut parts = SnapshotParts {
            // About 130 bytes a key at 100-byte values: a guess that saves most regrowth.
            keys: Vec::with_capacity(keys_room_for / 128),
            ..SnapshotParts::default()
        };
        /// A length-delimited field's bytes, left where they are.
        fn borrowed<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
            let length = decode_varint(buf).map_err(|error| error.to_string())? as usize;
            if length > buf.len() {
                return Err("buffer underflow".to_string());
            }
            let (field, rest) = buf.split_at(length);
            *buf = rest;
            Ok(field)
        }
        while !bytes.is_empty() {
            let (tag, wire_type) = decode_key(&mut bytes).map_err(text)?;
            match (tag, wire_type) {
                (1, WireType::Varint) => {
                    parts.revision = Some(decode_varint(&mut bytes).map_err(text)?)
                }
                (4, WireType::Varint) => {
                    parts.log_time_ms = Some(decode_varint(&mut bytes).map_err(text)?)
                }
                (6, WireType::Varint) => {
                    let zigzag = decode_varint(&mut bytes).map_err(text)?;
                    parts.unix_offset_ms = Some(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64));
                }
                (3, WireType::LengthDelimited) => parts
                    .sessions
                    .push(SessionRecord::decode(borrowed(&mut bytes)?).map_err(text)?),
                (5, WireType::LengthDelimited) => parts
                    .leases
                    .push(LeaseRecord::decode(borrowed(&mut bytes)?).map_err(text)?),
                (2, WireType::LengthDelimited) => {
                    let length = decode_varint(&mut bytes).map_err(text)? as usize;
                    if length > bytes.len() {
                        return Err("buffer underflow".to_string());
                    }
                    let (mut field, rest) = bytes.split_at(length);
                    bytes = rest;
                    // The key and the value stay slices of `bytes` until the key's fields
                    // are all read: the value is copied once, into its packed record.
                    let mut key: &[u8] = &[];
                    let mut value: &[u8] = &[];
                    let mut meta = KeyMeta::default();
                    while !field.is_empty() {
                        let (tag, wire_type) = decode_key(&mut field).map_err(text)?;
                        match (tag, wire_type) {
                            (1, WireType::LengthDelimited) => key = borrowed(&mut field)?,
                            (2, WireType::LengthDelimited) => value = borrowed(&mut field)?,
                            (3, WireType::Varint) => {
                                meta.create_revision = decode_varint(&mut field).map_err(text)?;
                            }
                            (4, WireType::Varint) => {
                                meta.mod_revision = decode_varint(&mut field).map_err(text)?;
                            }
                            (5, WireType::Varint) => {
                                meta.version = decode_varint(&mut field).map_err(text)?
                            }
                            (6, WireType::Varint) => {
                                meta.lease_id = decode_varint(&mut field).map_err(text)?
                            }
                            (7, WireType::Varint) => {
                                meta.expires_at_ms = decode_varint(&mut field).map_err(text)?;
                            }
                            (8, WireType::Varint) => {
                                meta.value_type = ValueType::try_from(
                                    decode_varint(&mut field).map_err(text)? as i32,
                                )
                                .unwrap_or_default();
                            }
                            _ => skip_field(wire_type, tag, &mut field, DecodeContext::default())
                                .map_err(text)?,
                        }
                    }
                    parts.keys.push(StoredValue::new(key, &meta, value));
                }
                _ => skip_field(wire_type, tag, &mut bytes, DecodeContext::default())
                    .map_err(text)?,
            }
        }
        Ok(parts)
    }

    /// The store made of a snapshot's parts.
    fn assemble(parts: SnapshotParts) -> KvStore {
        let mut store = KvStore::new();
        store.revision = parts.revision.unwrap_or_default();
        store.log_time_ms = parts.log_time_ms.unwrap_or_default();
        store.unix_offset_ms = parts.unix_offset_ms.unwrap_or_default();
        for lease in parts.leases {
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
        for stored in &parts.keys {
            let key = stored.key();
            assert!(
                stored.mod_revision() <= store.revision,
                "snapshot key newer than its revision"
            );
            if stored.expires_at_ms() != 0 {
                store
                    .key_deadlines
                    .insert((stored.expires_at_ms(), key.to_vec()));
            }
            if stored.lease_id() != 0 {
                let lease = store
                    .leases
                    .get_mut(&stored.lease_id())
                    .expect("a snapshot's keys attach only to its leases");
                lease.keys.insert(key.to_vec());
            }
        }
        // Built in one pass from keys in order (a snapshot lists them sorted): every chunk
        // comes out full.
        store.map = Records::from_sorted(parts.keys);
        for session in parts.sessions {
            store
                .sessions_by_age
                .insert((session.last_index, session.client_id), ());
            store.sessions.insert(session.client_id, session);
        }
        store.history = History::starting_at(store.revision, store.log_time_ms);
        store
    }

    /// A deterministic digest of the whole state (keys, values, revisions, TTLs, leases, log
    /// time, sessions): equal on two replicas exactly when they applied the same log prefix.
    pub fn state_hash(&self) -> u64 {
        fnv1a(&self.encode_snapshot())
    }
}

#[cfg(test)]
mod tests {
    use paxkv_proto::client::{client_response::Body, LeaseGrantRequest, PutRequest};
    use paxkv_proto::peer::{command::Op, entry::Kind, Command, Entry};
    use prost::Message;

    use crate::KvStore;

    /// A store with keys (some with a TTL, some on a lease), a lease and sessions.
    fn store() -> KvStore {
        let mut store = KvStore::new();
        let apply = |store: &mut KvStore, index: u64, client_id: u64, op: Op| {
            let entry = Entry {
                log_time_ms: index * 3,
                kind: Some(Kind::Command(Command {
                    client_id,
                    sequence: index,
                    op: Some(op),
                })),
            };
            store.apply(index, &entry)
        };
        let sessions: Vec<u64> = (1..=40)
            .map(|index| {
                match apply(
                    &mut store,
                    index,
                    0,
                    Op::RegisterSession(Default::default()),
                ) {
                    Some(Body::RegisterSession(session)) => session.client_id,
                    other => panic!("expected a session, got {other:?}"),
                }
            })
            .collect();
        let grant = Op::LeaseGrant(LeaseGrantRequest { ttl_ms: 60_000 });
        let lease_id = match apply(&mut store, 41, 0, grant) {
            Some(Body::LeaseGrant(granted)) => granted.lease_id,
            other => panic!("expected a lease, got {other:?}"),
        };
        for i in 0..3_000u64 {
            let put = PutRequest {
                key: format!("key/{i:05}").into_bytes(),
                value: vec![i as u8; (i % 200) as usize],
                ttl_ms: (i % 3 == 0).then_some(100_000 + i),
                lease_id: (i % 5 == 0).then_some(lease_id),
                ..Default::default()
            };
            let session = sessions[i as usize % sessions.len()];
            apply(&mut store, 42 + i, session, Op::Put(put));
        }
        store
    }

    /// Two threads decoding the halves of a snapshot give the store one pass gives: for the
    /// field order written now (small parts first), the one written before (keys first), and
    /// a revision written twice (the later one wins, as in one pass).
    #[test]
    fn a_snapshot_decoded_in_halves_equals_one_decoded_in_one_pass() {
        let store = store();
        let mut twice = store.encode_snapshot();
        prost::encoding::uint64::encode(1, &(store.revision + 5), &mut twice);
        for bytes in [
            store.encode_snapshot(),
            store.to_snapshot().encode_to_vec(),
            twice,
        ] {
            let middle = KvStore::field_boundary(&bytes, bytes.len() / 2).unwrap();
            assert!(middle > bytes.len() / 3 && middle < bytes.len() * 2 / 3);
            let halves = KvStore::assemble(KvStore::decode_in_halves(&bytes).unwrap());
            let one_pass = KvStore::assemble(KvStore::decode_parts(&bytes, 0).unwrap());
            assert_eq!(halves.state_hash(), one_pass.state_hash());
            assert_eq!(halves.key_count(), 3_000);
            assert_eq!(halves.sessions.len(), one_pass.sessions.len());
            assert!(!halves.sessions.is_empty() && !halves.leases.is_empty());
        }
        let bytes = store.encode_snapshot();
        assert!(KvStore::decode_in_halves(&bytes[..bytes.len() - 3]).is_err());
        let mut damaged = bytes.clone();
        let middle = KvStore::field_boundary(&bytes, bytes.len() / 2).unwrap();
        damaged.truncate(middle + 2);
        assert!(KvStore::decode_in_halves(&damaged).is_err());
    }
}
