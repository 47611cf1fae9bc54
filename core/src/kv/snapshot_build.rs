//! A snapshot encoded a slice at a time while the store keeps applying entries, so that a large
//! state never stops the node loop for the whole encoding (a million keys take hundreds of
//! milliseconds, longer than an election timeout).
//!
//! The snapshot shows the store as it was when it started. Its small parts (revision, log time,
//! sessions, leases, Unix offset) are encoded at once; the keys follow in key order, a slice per
//! call to [`KvStore::continue_snapshot`]. A write to a key the encoding has not reached yet
//! first saves what the key held at the start, once per key: the encoding reads the saved state
//! for such keys and the map for the others. A key created since the start needs nothing saved:
//! its create revision is later than the snapshot's, and the encoding skips it. So the extra memory
//! is what the writes during the encoding change, never a second copy of the state, and the
//! bytes are those [`KvStore::encode_snapshot`] would have given at the start (the same fields,
//! the keys in the same order; only the fields' order differs, which decoding ignores).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{KvStore, StoredValue};
use crate::ready::SnapshotBytes;

#[derive(Debug, Clone, Default)]
pub(super) struct SnapshotBuild {
    /// The bytes so far.
    out: SnapshotBytes,
    /// The last key encoded; None before the first.
    cursor: Option<Box<[u8]>>,
    /// For each key after the cursor that existed at the start and changed since: what it held.
    before: BTreeMap<Box<[u8]>, StoredValue>,
    /// The store's revision at the start: keys created after it are not in the snapshot.
    revision: u64,
}

impl SnapshotBuild {
    /// Whether `key` is still ahead of the encoding.
    fn ahead(&self, key: &[u8]) -> bool {
        self.cursor.as_deref().is_none_or(|cursor| key > cursor)
    }
}

impl KvStore {
    /// Starts encoding a snapshot of the store as it is now. Panics if one is under way.
    pub fn start_snapshot(&mut self) {
        assert!(self.build.is_none(), "a snapshot is already being encoded");
        let mut small = Vec::new();
        self.encode_small_parts(&mut small);
        self.build = Some(Box::new(SnapshotBuild {
            out: small.into(),
            revision: self.revision,
            ..SnapshotBuild::default()
        }));
    }

    /// Whether a snapshot is being encoded.
    pub fn snapshot_in_progress(&self) -> bool {
        self.build.is_some()
    }

    /// Encodes keys until about `budget_bytes` more bytes are out; returns the whole snapshot
    /// once the last key is in (and the store is done with it).
    pub fn continue_snapshot(&mut self, budget_bytes: usize) -> Option<SnapshotBytes> {
        let build = self.build.as_mut()?;
        let mut encoded = 0;
        let revision = build.revision;
        let from = match &build.cursor {
            Some(cursor) => Bound::Excluded(&cursor[..]),
            None => Bound::Unbounded,
        };
        // (The map itself, not `stored_from`: `build` is borrowed meanwhile.)
        let mut current = self
            .map
            .range_from(from)
            .map(|record| (record.key(), record))
            .peekable();
        let mut saved = build
            .before
            .range::<[u8], _>((from, Bound::Unbounded))
            .peekable();
        let mut last: Option<&[u8]> = None;
        while encoded < budget_bytes.max(1) {
            // The next key of either, the saved state winning for a key in both.
            let next_current = current.peek().map(|(key, _)| &key[..]);
            let next_saved = saved.peek().map(|(key, _)| &key[..]);
            let (key, stored) = match (next_current, next_saved) {
                (None, None) => break,
                (Some(a), Some(b)) if a < b => {
                    let (key, stored) = current.next().expect("peeked");
                    (key, Some(stored))
                }
                (Some(a), Some(b)) if a == b => {
                    current.next();
                    let (key, stored) = saved.next().expect("peeked");
                    (&key[..], Some(stored))
                }
                (Some(_), None) => {
                    let (key, stored) = current.next().expect("peeked");
                    (key, Some(stored))
                }
                _ => {
                    let (key, stored) = saved.next().expect("peeked");
                    (&key[..], Some(stored))
                }
            };
            match stored {
                Some(stored) if stored.create_revision() <= revision => {
                    let tail = build.out.tail();
                    let before = tail.len();
                    Self::encode_key_value(key, stored, tail);
                    encoded += tail.len() - before;
                }
                // Created since the start: passed over, and counted, so that a slice over many
                // new keys still ends.
                _ => encoded += key.len(),
            }
            last = Some(key);
        }
        let finished = current.peek().is_none() && saved.peek().is_none();
        let last = last.map(Box::<[u8]>::from);
        let build = self.build.as_mut().expect("checked above");
        build.out.update_len();
        if finished {
            return self.build.take().map(|build| build.out);
        }
        if let Some(last) = last {
            // What is saved for keys now behind the cursor is no longer needed.
            let mut rest = build.before.split_off(&last);
            rest.remove(&last);
            build.before = rest;
            build.cursor = Some(last);
        }
        None
    }

    /// Takes the bytes encoded so far, for a caller that writes the snapshot out as it goes;
    /// `continue_snapshot` then returns only what followed.
    pub fn take_snapshot_pieces(&mut self) -> Vec<Vec<u8>> {
        self.build
            .as_mut()
            .map_or_else(Vec::new, |build| build.out.take_pieces())
    }

    /// Gives up the snapshot under way, if any.
    pub fn abandon_snapshot(&mut self) {
        self.build = None;
    }

    /// Called before every change of `key` in the map: saves what it held if the snapshot
    /// under way has yet to encode it.
    pub(super) fn before_key_change(&mut self, key: &[u8]) {
        let Some(build) = self.build.as_mut() else {
            return;
        };
        if crate::planted::active(crate::planted::Bug::SnapshotSeesLaterWrites) {
            return;
        }
        // A key absent now and not saved was absent at the start (one deleted since was saved
        // when deleted), so its creation needs nothing saved.
        if build.ahead(key) && !build.before.contains_key(key) {
            if let Some(record) = self.map.get(key) {
                build.before.insert(key.into(), record.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use paxkv_proto::client::{DeleteRequest, PutRequest};
    use paxkv_proto::peer::{command::Op, entry::Kind, Command, Entry, KvSnapshot};
    use prost::Message;

    use crate::KvStore;

    fn apply(store: &mut KvStore, index: u64, op: Op) {
        let entry = Entry {
            log_time_ms: 0,
            kind: Some(Kind::Command(Command {
                client_id: 0,
                sequence: 0,
                op: Some(op),
            })),
        };
        store.apply(index, &entry);
    }

    fn put(store: &mut KvStore, index: u64, key: &[u8], value: &[u8]) {
        let put = PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        };
        apply(store, index, Op::Put(put));
    }

    fn delete(store: &mut KvStore, index: u64, key: &[u8]) {
        let delete = DeleteRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        apply(store, index, Op::Delete(delete));
    }

    /// Decoding the bytes straight into the store gives the store the message gives, for the
    /// field order written now (small parts first) and the one written before (keys first);
    /// bytes that do not decode are an error, not a panic.
    #[test]
    fn a_snapshot_decodes_straight_into_the_store() {
        use paxkv_proto::client::LeaseGrantRequest;
        let mut store = KvStore::new();
        let grant = Entry {
            log_time_ms: 0,
            kind: Some(Kind::Command(Command {
                client_id: 0,
                sequence: 0,
                op: Some(Op::LeaseGrant(LeaseGrantRequest { ttl_ms: 60_000 })),
            })),
        };
        let lease_id = match store.apply(1, &grant) {
            Some(paxkv_proto::client::client_response::Body::LeaseGrant(granted)) => {
                granted.lease_id
            }
            other => panic!("expected a lease, got {other:?}"),
        };
        for i in 0..50u64 {
            let put = PutRequest {
                key: format!("k{i:03}").into_bytes(),
                value: vec![i as u8; i as usize],
                ttl_ms: (i % 3 == 0).then_some(10_000 + i),
                lease_id: (i % 5 == 0).then_some(lease_id),
                ..Default::default()
            };
            apply(&mut store, 2 + i, Op::Put(put));
        }
        let expected = KvStore::from_snapshot(store.to_snapshot());
        for bytes in [store.encode_snapshot(), store.to_snapshot().encode_to_vec()] {
            let decoded = KvStore::decode_snapshot(&bytes).unwrap();
            assert_eq!(decoded.state_hash(), expected.state_hash());
            assert_eq!(decoded.state_hash(), store.state_hash());
            assert_eq!(decoded.key_count(), 50);
        }
        let bytes = store.encode_snapshot();
        assert!(KvStore::decode_snapshot(&bytes[..bytes.len() - 3]).is_err());
        assert!(KvStore::decode_snapshot(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    /// A snapshot encoded in slices while keys are written, overwritten and deleted on both
    /// sides of the cursor equals the one encoded at once at its start.
    #[test]
    fn a_snapshot_in_slices_shows_the_store_at_its_start() {
        for budget in [1, 40, 300, 5_000] {
            let mut store = KvStore::new();
            let mut index = 0;
            for i in 0..200u32 {
                index += 1;
                put(&mut store, index, format!("k{i:04}").as_bytes(), b"v0");
            }
            let expected = KvSnapshot::decode(store.encode_snapshot().as_slice()).unwrap();
            store.start_snapshot();
            let mut slices = 0u32;
            let bytes = loop {
                if let Some(bytes) = store.continue_snapshot(budget) {
                    break bytes;
                }
                // Writes everywhere: behind the cursor, ahead of it, new keys, deletes.
                for offset in [0u32, 7, 99, 150, 199] {
                    let key = format!("k{:04}", (slices * 13 + offset) % 200);
                    index += 1;
                    if slices.is_multiple_of(3) {
                        delete(&mut store, index, key.as_bytes());
                    } else {
                        put(&mut store, index, key.as_bytes(), b"later");
                    }
                }
                index += 1;
                put(&mut store, index, format!("n{slices}").as_bytes(), b"new");
                slices += 1;
            };
            if budget < 1_000 {
                assert!(slices > 5, "budget {budget}: only {slices} slices");
            }
            let got = KvSnapshot::decode(bytes.to_vec().as_slice()).unwrap();
            assert_eq!(got, expected, "budget {budget}");
            assert!(!store.snapshot_in_progress());
        }
    }

    /// Taking the bytes as the encoding goes (a caller writing them out) gives the same
    /// snapshot, and the store holds nothing between slices.
    #[test]
    fn pieces_taken_as_the_encoding_goes_make_the_same_snapshot() {
        let mut store = KvStore::new();
        let mut index = 0;
        for i in 0..4_000u32 {
            index += 1;
            put(
                &mut store,
                index,
                format!("k{i:05}").as_bytes(),
                &[7; 1_000],
            );
        }
        let expected = store.encode_snapshot();
        store.start_snapshot();
        let mut streamed = Vec::new();
        let mut takes_with_bytes = 0;
        let rest = loop {
            if let Some(rest) = store.continue_snapshot(64 * 1024) {
                break rest;
            }
            index += 1;
            put(
                &mut store,
                index,
                format!("k{:05}", index % 4_000).as_bytes(),
                b"x",
            );
            let pieces = store.take_snapshot_pieces();
            takes_with_bytes += usize::from(!pieces.is_empty());
            for piece in pieces {
                // No piece keeps room it does not use (a queue of them waits to be written).
                assert!(piece.capacity() < piece.len() + 4_096);
                streamed.extend_from_slice(&piece);
            }
            assert_eq!(store.build.as_ref().unwrap().out.len(), 0);
        };
        assert!(takes_with_bytes >= 40, "{takes_with_bytes}");
        streamed.extend_from_slice(&rest.to_vec());
        assert_eq!(
            KvSnapshot::decode(streamed.as_slice()).unwrap(),
            KvSnapshot::decode(expected.as_slice()).unwrap()
        );
    }
}
