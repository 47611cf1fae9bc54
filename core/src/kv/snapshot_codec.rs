//! The snapshot codec: the store as a `KvSnapshot` message (keys, revisions, TTLs, leases,
//! sessions, log time) and back. Encoded one key at a time, so a large state is never held
//! twice; decoded into a tree built in one pass.

use std::collections::BTreeSet;

use paxkv_proto::client::ValueType;
use paxkv_proto::peer::{KvSnapshot, LeaseRecord, SessionRecord};
use prost::{DecodeError, Message};

use super::history::History;
use super::leases::Lease;
use super::{fnv1a, KvStore, StoredValue};

/// What a snapshot holds, read from a message or from its bytes.
#[derive(Default)]
struct SnapshotParts {
    revision: u64,
    log_time_ms: u64,
    unix_offset_ms: i64,
    sessions: Vec<SessionRecord>,
    leases: Vec<LeaseRecord>,
    keys: Vec<(Box<[u8]>, StoredValue)>,
}

impl KvStore {
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
            unix_offset_ms: self.unix_offset_ms,
        }
    }

    /// The bytes of [`KvStore::to_snapshot`], written one key at a time: the state is never held
    /// twice (a store of a million keys would otherwise copy all of them first).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.map.len() * 48);
        self.encode_small_parts(&mut out);
        for (key, stored) in &self.map {
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
        let value_type = stored.value_type as i32 as u64;
        let numbers = [
            (3, stored.create_revision),
            (4, stored.mod_revision),
            (5, stored.version),
            (6, stored.lease_id),
            (7, stored.expires_at_ms),
            (8, value_type),
        ];
        let length = bytes_len(key)
            + bytes_len(&stored.value)
            + numbers
                .iter()
                .map(|(_, value)| number_len(*value))
                .sum::<usize>();
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(length as u64, out);
        for (tag, bytes) in [(1, key), (2, &stored.value[..])] {
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
                let value_type = kv.value_type();
                let stored = StoredValue {
                    value: kv.value.into_boxed_slice(),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    lease_id: kv.lease_id,
                    expires_at_ms: kv.expires_at_ms,
                    value_type,
                };
                (kv.key.into_boxed_slice(), stored)
            })
            .collect();
        Self::assemble(SnapshotParts {
            revision: snapshot.revision,
            log_time_ms: snapshot.log_time_ms,
            unix_offset_ms: snapshot.unix_offset_ms,
            sessions: snapshot.sessions,
            leases: snapshot.leases,
            keys,
        })
    }

    /// The store a snapshot's bytes describe, read straight into the store's own types: no
    /// message of a million keys is built first (the same as decoding a `KvSnapshot` and
    /// `from_snapshot`, in less time and memory).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<KvStore, String> {
        Self::decode_parts(bytes)
    }

    fn decode_parts(mut bytes: &[u8]) -> Result<KvStore, String> {
        let text = |error: DecodeError| error.to_string();
        use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
        let mut parts = SnapshotParts {
            // About 130 bytes a key at 100-byte values: a guess that saves most regrowth.
            keys: Vec::with_capacity(bytes.len() / 128),
            ..SnapshotParts::default()
        };
        let length_delimited = |buf: &mut &[u8]| -> Result<Vec<u8>, String> {
            let length = decode_varint(buf).map_err(text)? as usize;
            if length > buf.len() {
                return Err("buffer underflow".to_string());
            }
            let (field, rest) = buf.split_at(length);
            *buf = rest;
            Ok(field.to_vec())
        };
        while !bytes.is_empty() {
            let (tag, wire_type) = decode_key(&mut bytes).map_err(text)?;
            match (tag, wire_type) {
                (1, WireType::Varint) => {
                    parts.revision = decode_varint(&mut bytes).map_err(text)?
                }
                (4, WireType::Varint) => {
                    parts.log_time_ms = decode_varint(&mut bytes).map_err(text)?
                }
                (6, WireType::Varint) => {
                    let zigzag = decode_varint(&mut bytes).map_err(text)?;
                    parts.unix_offset_ms = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
                }
                (3, WireType::LengthDelimited) => parts.sessions.push(
                    SessionRecord::decode(length_delimited(&mut bytes)?.as_slice())
                        .map_err(text)?,
                ),
                (5, WireType::LengthDelimited) => parts.leases.push(
                    LeaseRecord::decode(length_delimited(&mut bytes)?.as_slice()).map_err(text)?,
                ),
                (2, WireType::LengthDelimited) => {
                    let length = decode_varint(&mut bytes).map_err(text)? as usize;
                    if length > bytes.len() {
                        return Err("buffer underflow".to_string());
                    }
                    let (mut field, rest) = bytes.split_at(length);
                    bytes = rest;
                    let mut key = Vec::new();
                    let mut stored = StoredValue {
                        value: Box::new([]),
                        create_revision: 0,
                        mod_revision: 0,
                        version: 0,
                        lease_id: 0,
                        expires_at_ms: 0,
                        value_type: ValueType::String,
                    };
                    while !field.is_empty() {
                        let (tag, wire_type) = decode_key(&mut field).map_err(text)?;
                        match (tag, wire_type) {
                            (1, WireType::LengthDelimited) => {
                                key = length_delimited(&mut field)?;
                            }
                            (2, WireType::LengthDelimited) => {
                                stored.value = length_delimited(&mut field)?.into_boxed_slice();
                            }
                            (3, WireType::Varint) => {
                                stored.create_revision = decode_varint(&mut field).map_err(text)?;
                            }
                            (4, WireType::Varint) => {
                                stored.mod_revision = decode_varint(&mut field).map_err(text)?;
                            }
                            (5, WireType::Varint) => {
                                stored.version = decode_varint(&mut field).map_err(text)?
                            }
                            (6, WireType::Varint) => {
                                stored.lease_id = decode_varint(&mut field).map_err(text)?
                            }
                            (7, WireType::Varint) => {
                                stored.expires_at_ms = decode_varint(&mut field).map_err(text)?;
                            }
                            (8, WireType::Varint) => {
                                stored.value_type = ValueType::try_from(
                                    decode_varint(&mut field).map_err(text)? as i32,
                                )
                                .unwrap_or_default();
                            }
                            _ => skip_field(wire_type, tag, &mut field, DecodeContext::default())
                                .map_err(text)?,
                        }
                    }
                    parts.keys.push((key.into_boxed_slice(), stored));
                }
                _ => skip_field(wire_type, tag, &mut bytes, DecodeContext::default())
                    .map_err(text)?,
            }
        }
        Ok(Self::assemble(parts))
    }

    /// The store made of a snapshot's parts.
    fn assemble(parts: SnapshotParts) -> KvStore {
        let mut store = KvStore::new();
        store.revision = parts.revision;
        store.log_time_ms = parts.log_time_ms;
        store.unix_offset_ms = parts.unix_offset_ms;
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
        for (key, stored) in &parts.keys {
            assert!(
                stored.mod_revision <= store.revision,
                "snapshot key newer than its revision"
            );
            if stored.expires_at_ms != 0 {
                store
                    .key_deadlines
                    .insert((stored.expires_at_ms, key.to_vec()));
            }
            if stored.lease_id != 0 {
                let lease = store
                    .leases
                    .get_mut(&stored.lease_id)
                    .expect("a snapshot's keys attach only to its leases");
                lease.keys.insert(key.to_vec());
            }
        }
        // Built in one pass from keys in order (a snapshot lists them sorted): the tree's nodes
        // come out full, where inserting one key at a time leaves them about half empty.
        store.map = parts.keys.into_iter().collect();
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
