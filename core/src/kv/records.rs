//! The map of every key's record, ordered by key: sorted runs ("chunks") of at most
//! `CHUNK_RECORDS` records, in key order.
//!
//! Why not a `BTreeSet`: its nodes hold 11 slots and split in the middle, so keys written in
//! order (a fill, an import, keys with a time or a counter in them) leave every leaf half
//! empty: at a million keys the tree took about 32 MB for 16 MB of record pointers. A chunk
//! that overflows at its end splits there instead (the full one stays full), and one that
//! overflows in its middle splits in halves, so a map filled in order is full and one filled
//! at random about three quarters full. A chunk's room is reserved whole when it is made, so
//! no chunk grows by doubling.
//!
//! A lookup is a binary search over the chunks' first keys, then a search within the chunk
//! (`search`: halving, then a short scan); each comparison reads a key inside its record. An
//! insert or a removal moves at most a chunk's slots (8 KiB), and a chunk made or dropped
//! moves the list of chunks (24 bytes per 512 records).

use std::ops::Bound;

use super::stored::StoredValue;

/// Records per chunk at most.
const CHUNK_RECORDS: usize = 512;

#[derive(Debug, Clone, Default)]
pub(super) struct Records {
    /// Never empty ones; each sorted, and every key of one below every key of the next.
    chunks: Vec<Vec<StoredValue>>,
    len: usize,
}

/// Where a key is, or would go: the chunk, and the position in it.
struct Place {
    chunk: usize,
    position: usize,
    found: bool,
}

/// Records a search within a chunk reads one after another at its end, not halving.
const SCAN_RECORDS: usize = 8;

/// Where `key` is in `records` (sorted), or where it would go; and whether it is there.
///
/// Each step reads a record at an address of its own, and nearly all of a lookup's time is
/// those reads missing the cache. The standard library's binary search picks the next half
/// without a branch, so the processor cannot start on the next record before the comparison
/// with this one is done: every miss waits for the one before it. Here the halving branches
/// (the processor guesses a half and reads on, right half the time), and the last
/// `SCAN_RECORDS` are read in order, whose addresses do not depend on the comparisons, so
/// several misses are under way at once. A put's lookups took 13% of the leader's time and
/// 17% of a follower's; now 6-8% and 9-11% (`perf`, 64 puts in flight on 10,000 keys; a tail
/// of 16 and of 32 records did worse than 8).
fn search(records: &[StoredValue], key: &[u8]) -> (usize, bool) {
    let (mut low, mut high) = (0, records.len());
    while high - low > SCAN_RECORDS {
        let middle = low + (high - low) / 2;
        match records[middle].key().cmp(key) {
            std::cmp::Ordering::Less => low = middle + 1,
            std::cmp::Ordering::Greater => high = middle,
            std::cmp::Ordering::Equal => return (middle, true),
        }
    }
    for (position, record) in records.iter().enumerate().take(high).skip(low) {
        match record.key().cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return (position, true),
            std::cmp::Ordering::Greater => return (position, false),
        }
    }
    (high, false)
}

impl Records {
    pub(super) fn new() -> Records {
        Records::default()
    }

    /// The map of `records` (a snapshot's, which lists them in key order), chunks filled.
    /// Records out of order are sorted first; of two with one key, the first stays.
    pub(super) fn from_sorted(mut records: Vec<StoredValue>) -> Records {
        if records
            .windows(2)
            .any(|pair| pair[0].key() >= pair[1].key())
        {
            records.sort_by(|a, b| a.key().cmp(b.key()));
            records.dedup_by(|later, earlier| later.key() == earlier.key());
        }
        let len = records.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK_RECORDS));
        let mut records = records.into_iter();
        loop {
            let mut chunk = Vec::with_capacity(CHUNK_RECORDS);
            chunk.extend(records.by_ref().take(CHUNK_RECORDS));
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        Records { chunks, len }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn place(&self, key: &[u8]) -> Place {
        // The last chunk whose first key is at most `key` (the first chunk if none is).
        let chunk = self
            .chunks
            .partition_point(|chunk| chunk[0].key() <= key)
            .saturating_sub(1);
        let Some(records) = self.chunks.get(chunk) else {
            return Place {
                chunk: 0,
                position: 0,
                found: false,
            };
        };
        let (position, found) = search(records, key);
        Place {
            chunk,
            position,
            found,
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&StoredValue> {
        let place = self.place(key);
        place
            .found
            .then(|| &self.chunks[place.chunk][place.position])
    }

    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.place(key).found
    }

    /// Stores `record` under its key; returns what was stored there before.
    pub(super) fn insert(&mut self, record: StoredValue) -> Option<StoredValue> {
        let place = self.place(record.key());
        if place.found {
            let slot = &mut self.chunks[place.chunk][place.position];
            return Some(std::mem::replace(slot, record));
        }
        self.len += 1;
        let Some(chunk) = self.chunks.get_mut(place.chunk) else {
            let mut first = Vec::with_capacity(CHUNK_RECORDS);
            first.push(record);
            self.chunks.push(first);
            return None;
        };
        if chunk.len() < CHUNK_RECORDS {
            chunk.insert(place.position, record);
            return None;
        }
        // Full: a neighbour with room takes the record at this chunk's edge. Writers running
        // side by side fill keys almost in order, each a little behind another: without this,
        // every key that came late to a full chunk split it, and both halves stayed half empty
        // (a million-key fill from 256 writers left its chunks 60% full, 10 MB of room).
        let position = place.position;
        let next = place.chunk + 1;
        if self
            .chunks
            .get(next)
            .is_some_and(|n| n.len() < CHUNK_RECORDS)
        {
            let chunk = &mut self.chunks[place.chunk];
            let spilled = if position == chunk.len() {
                record
            } else {
                // (Out first, so the chunk never grows past its room.)
                let last = chunk.pop().expect("a full chunk");
                chunk.insert(position, record);
                last
            };
            self.chunks[next].insert(0, spilled);
            return None;
        }
        if place.chunk > 0 && position > 0 && self.chunks[place.chunk - 1].len() < CHUNK_RECORDS {
            let chunk = &mut self.chunks[place.chunk];
            let first = chunk.remove(0);
            chunk.insert(position - 1, record);
            self.chunks[place.chunk - 1].push(first);
            return None;
        }
        // Neither has room: one past its end starts the next chunk (a fill in order leaves
        // every chunk full); anywhere else splits it in halves.
        let chunk = &mut self.chunks[place.chunk];
        let mut next = Vec::with_capacity(CHUNK_RECORDS);
        if position == chunk.len() {
            next.push(record);
        } else {
            next.extend(chunk.drain(CHUNK_RECORDS / 2..));
            if position <= chunk.len() {
                chunk.insert(position, record);
            } else {
                next.insert(position - CHUNK_RECORDS / 2, record);
            }
        }
        self.chunks.insert(place.chunk + 1, next);
        None
    }

    /// Removes `key`'s record and returns it.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<StoredValue> {
        let place = self.place(key);
        if !place.found {
            return None;
        }
        self.len -= 1;
        let removed = self.chunks[place.chunk].remove(place.position);
        // A chunk a quarter full joins its successor if both fit one, so that deleting most
        // keys does not leave a chunk's room reserved for a few.
        let left = self.chunks[place.chunk].len();
        let next = place.chunk + 1;
        if left == 0 {
            self.chunks.remove(place.chunk);
        } else if left <= CHUNK_RECORDS / 4
            && next < self.chunks.len()
            && left + self.chunks[next].len() <= CHUNK_RECORDS
        {
            let moved = self.chunks.remove(next);
            self.chunks[place.chunk].extend(moved);
        }
        Some(removed)
    }

    /// The records from `start` on, in key order.
    pub(super) fn range_from(&self, start: Bound<&[u8]>) -> impl Iterator<Item = &StoredValue> {
        let (chunk, position) = match start {
            Bound::Unbounded => (0, 0),
            Bound::Included(key) => {
                let place = self.place(key);
                (place.chunk, place.position)
            }
            Bound::Excluded(key) => {
                let place = self.place(key);
                (place.chunk, place.position + usize::from(place.found))
            }
        };
        let first = self
            .chunks
            .get(chunk)
            .map_or(&[][..], |records| &records[position.min(records.len())..]);
        let rest = self.chunks.get(chunk + 1..).unwrap_or(&[]);
        first.iter().chain(rest.iter().flatten())
    }

    /// Chunks, and the records they have room for (for tests of the layout).
    #[cfg(test)]
    fn shape(&self) -> (usize, usize) {
        (
            self.chunks.len(),
            self.chunks.iter().map(Vec::capacity).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::stored::KeyMeta;
    use std::collections::BTreeMap;

    fn record(key: &[u8], version: u64) -> StoredValue {
        let meta = KeyMeta {
            version,
            ..KeyMeta::default()
        };
        StoredValue::new(key, &meta, b"value")
    }

    fn key(n: u64) -> Vec<u8> {
        format!("k{n:08}").into_bytes()
    }

    /// Every operation against a `BTreeMap` doing the same, over inserts in order, at random
    /// and in reverse, then removals at random: the same answers and the same order, and no
    /// chunk empty, overfull or out of order.
    #[test]
    fn the_map_answers_as_an_ordered_map_does() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut records = Records::new();
        let mut model: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let check = |records: &Records, model: &BTreeMap<Vec<u8>, u64>| {
            assert_eq!(records.len(), model.len());
            let all: Vec<(&[u8], u64)> = records
                .range_from(Bound::Unbounded)
                .map(|record| (record.key(), record.version()))
                .collect();
            let want: Vec<(&[u8], u64)> = model.iter().map(|(k, v)| (&k[..], *v)).collect();
            assert_eq!(all, want);
            for chunk in &records.chunks {
                assert!(!chunk.is_empty() && chunk.len() <= CHUNK_RECORDS);
            }
        };
        let mut version = 0;
        let mut inserts: Vec<u64> = (0..3000).collect();
        inserts.extend((0..3000).map(|_| random(20_000)));
        inserts.extend((0..3000).rev().map(|n| n * 7 + 1));
        for n in inserts {
            version += 1;
            let before = records.insert(record(&key(n), version));
            let model_before = model.insert(key(n), version);
            assert_eq!(before.map(|r| r.version()), model_before);
        }
        check(&records, &model);
        for _ in 0..2000 {
            let probe = key(random(25_000));
            assert_eq!(
                records.get(&probe).map(StoredValue::version),
                model.get(&probe).copied()
            );
            assert_eq!(records.contains(&probe), model.contains_key(&probe));
            for bound in [Bound::Excluded(&probe[..]), Bound::Included(&probe[..])] {
                let from: Vec<u64> = records
                    .range_from(bound)
                    .take(3)
                    .map(StoredValue::version)
                    .collect();
                let want: Vec<u64> = model
                    .range::<[u8], _>((bound, Bound::Unbounded))
                    .take(3)
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(from, want);
            }
        }
        for _ in 0..20_000 {
            let probe = key(random(25_000));
            assert_eq!(
                records.remove(&probe).map(|r| r.version()),
                model.remove(&probe)
            );
        }
        check(&records, &model);
        let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        for k in keys {
            assert!(records.remove(&k).is_some());
        }
        assert_eq!(records.len(), 0);
        assert_eq!(records.shape().0, 0);
        assert!(records.range_from(Bound::Unbounded).next().is_none());
    }

    /// Keys written in order fill every chunk, and so do keys written almost in order (each
    /// up to 300 places late, as writers side by side leave them); keys written at random fill
    /// them more than half.
    #[test]
    fn keys_written_in_order_leave_every_chunk_full() {
        let mut records = Records::new();
        for n in 0..10 * CHUNK_RECORDS as u64 {
            records.insert(record(&key(n), 1));
        }
        assert_eq!(records.shape(), (10, 10 * CHUNK_RECORDS));
        let mut late = Records::new();
        let count = 40 * CHUNK_RECORDS as u64;
        // Blocks of 300 keys, each block written from its end back to its start.
        for block in (0..count).step_by(300) {
            for n in (block..(block + 300).min(count)).rev() {
                late.insert(record(&key(n), 1));
            }
        }
        let (chunks, room) = late.shape();
        assert_eq!(late.len() as u64, count);
        assert!(
            chunks <= 41,
            "{chunks} chunks for {count} keys written a little late"
        );
        assert_eq!(room, chunks * CHUNK_RECORDS);
        let mut state = 12345_u64;
        let mut random = Records::new();
        for _ in 0..20 * CHUNK_RECORDS {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            random.insert(record(&key(state >> 40), 1));
        }
        let (chunks, room) = random.shape();
        let fill = random.len() as f64 / room as f64;
        assert!((0.6..0.95).contains(&fill), "{chunks} chunks {fill} full");
    }

    #[test]
    fn records_from_a_snapshot_fill_their_chunks_and_come_out_in_order() {
        let many: Vec<StoredValue> = (0..1300).map(|n| record(&key(n), n)).collect();
        let records = Records::from_sorted(many);
        assert_eq!(records.shape(), (3, 3 * CHUNK_RECORDS));
        assert_eq!(
            records.get(&key(1299)).map(StoredValue::version),
            Some(1299)
        );
        let unsorted = vec![record(b"b", 1), record(b"a", 2), record(b"b", 3)];
        let records = Records::from_sorted(unsorted);
        let seen: Vec<(&[u8], u64)> = records
            .range_from(Bound::Unbounded)
            .map(|record| (record.key(), record.version()))
            .collect();
        assert_eq!(seen, vec![(&b"a"[..], 2), (&b"b"[..], 1)]);
    }
}
