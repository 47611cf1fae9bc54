//! What the map holds for a key: the key, its metadata and its value packed into one
//! allocation.
//!
//! A million keys are a million map entries, so the entry's size is most of the store's
//! memory. Held as a struct, a key's metadata (three revisions, a lease, a deadline, a type:
//! 48 bytes) sat in the map's tree nodes next to a boxed key and a boxed value: about 150 bytes
//! of tree per key on top of the two allocations. Packed behind one pointer, a tree slot is 16
//! bytes, and the key and the metadata share the value's allocation: revisions are varints
//! (3 or 4 bytes below 2^28, where 8 were), keys without a lease or a deadline skip those
//! fields. A 16-byte key with a 100-byte value takes 128 bytes, one allocator size class, where
//! the key's own allocation (16), the record (128) and a tree slot twice as wide (about 32 more
//! per key) took 176.
//!
//! Layout: `[key length: varint][key][value type: 1][flags: 1][create revision: varint]
//! [mod revision: varint][version: varint]`, then the lease id (8, if flag `LEASE`), the
//! deadline (8, if flag `DEADLINE`), then the value. Fixed-width numbers are little-endian.
//!
//! The map orders records by key: [`ByKey`] wraps a record so that a set of them is a map from
//! key to record, looked up by key bytes.

use std::fmt;

use paxkv_proto::client::ValueType;

const LEASE: u8 = 1;
const DEADLINE: u8 = 2;

/// A key's metadata, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct KeyMeta {
    pub(super) create_revision: u64,
    pub(super) mod_revision: u64,
    pub(super) version: u64,
    /// 0: no lease.
    pub(super) lease_id: u64,
    /// Log time the key's own TTL ends; 0: no TTL.
    pub(super) expires_at_ms: u64,
    /// A string, or a Redis hash (`redis::value`).
    pub(super) value_type: ValueType,
}

/// A key, its value and its metadata in one allocation (see the module comment).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct StoredValue(Box<[u8]>);

fn put_varint(mut number: u64, out: &mut Vec<u8>) {
    while number >= 0x80 {
        out.push(number as u8 | 0x80);
        number >>= 7;
    }
    out.push(number as u8);
}

fn varint_len(number: u64) -> usize {
    (64 - (number | 1).leading_zeros() as usize).div_ceil(7)
}

/// The varint at `bytes[*at..]`, moving `at` past it. Only records this module wrote are read.
fn take_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut number = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        number |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return number;
        }
        shift += 7;
    }
}

/// Where the fields start in a record.
struct Offsets {
    /// The value type (the flags follow it).
    header: usize,
    /// The lease id or deadline if any, else the value.
    optional: usize,
    value: usize,
}

impl StoredValue {
    pub(super) fn new(key: &[u8], meta: &KeyMeta, value: &[u8]) -> StoredValue {
        let mut flags = 0;
        let mut optional = 0;
        if meta.lease_id != 0 {
            flags |= LEASE;
            optional += 8;
        }
        if meta.expires_at_ms != 0 {
            flags |= DEADLINE;
            optional += 8;
        }
        let numbers = [meta.create_revision, meta.mod_revision, meta.version];
        let length = varint_len(key.len() as u64)
            + key.len()
            + 2
            + numbers.iter().map(|n| varint_len(*n)).sum::<usize>()
            + optional
            + value.len();
        let mut bytes = Vec::with_capacity(length);
        put_varint(key.len() as u64, &mut bytes);
        bytes.extend_from_slice(key);
        bytes.push(meta.value_type as i32 as u8);
        bytes.push(flags);
        for number in numbers {
            put_varint(number, &mut bytes);
        }
        if meta.lease_id != 0 {
            bytes.extend_from_slice(&meta.lease_id.to_le_bytes());
        }
        if meta.expires_at_ms != 0 {
            bytes.extend_from_slice(&meta.expires_at_ms.to_le_bytes());
        }
        bytes.extend_from_slice(value);
        debug_assert_eq!(bytes.len(), length);
        StoredValue(bytes.into_boxed_slice())
    }

    /// The same key and value with other metadata.
    pub(super) fn with_meta(&self, meta: &KeyMeta) -> StoredValue {
        StoredValue::new(self.key(), meta, self.value())
    }

    /// Where the key starts and ends (the header starts there). Every comparison in the map
    /// asks this, so a key shorter than 128 bytes (a length of one byte) takes no loop.
    #[inline]
    fn key_span(&self) -> (usize, usize) {
        let first = self.0[0];
        if first < 0x80 {
            return (1, 1 + usize::from(first));
        }
        let mut at = 0;
        let length = take_varint(&self.0, &mut at) as usize;
        (at, at + length)
    }

    fn key_end(&self) -> usize {
        self.key_span().1
    }

    /// The three revisions and where the fields start.
    fn numbers(&self) -> ([u64; 3], Offsets) {
        let header = self.key_end();
        let mut at = header + 2;
        let numbers = [(); 3].map(|()| take_varint(&self.0, &mut at));
        let optional = at;
        let value = optional + 8 * (self.0[header + 1] & (LEASE | DEADLINE)).count_ones() as usize;
        let offsets = Offsets {
            header,
            optional,
            value,
        };
        (numbers, offsets)
    }

    fn number_at(&self, offset: usize) -> u64 {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.0[offset..offset + 8]);
        u64::from_le_bytes(bytes)
    }

    #[inline]
    pub(super) fn key(&self) -> &[u8] {
        let (start, end) = self.key_span();
        &self.0[start..end]
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.0[self.numbers().1.value..]
    }

    pub(super) fn value_type(&self) -> ValueType {
        ValueType::try_from(i32::from(self.0[self.key_end()])).unwrap_or_default()
    }

    pub(super) fn create_revision(&self) -> u64 {
        self.numbers().0[0]
    }

    pub(super) fn mod_revision(&self) -> u64 {
        self.numbers().0[1]
    }

    pub(super) fn version(&self) -> u64 {
        self.numbers().0[2]
    }

    pub(super) fn lease_id(&self) -> u64 {
        self.meta().lease_id
    }

    pub(super) fn expires_at_ms(&self) -> u64 {
        self.meta().expires_at_ms
    }

    pub(super) fn meta(&self) -> KeyMeta {
        let ([create_revision, mod_revision, version], offsets) = self.numbers();
        let flags = self.0[offsets.header + 1];
        let mut at = offsets.optional;
        let mut optional = |flag: u8| {
            if flags & flag == 0 {
                return 0;
            }
            at += 8;
            self.number_at(at - 8)
        };
        let lease_id = optional(LEASE);
        let expires_at_ms = optional(DEADLINE);
        KeyMeta {
            create_revision,
            mod_revision,
            version,
            lease_id,
            expires_at_ms,
            value_type: ValueType::try_from(i32::from(self.0[offsets.header])).unwrap_or_default(),
        }
    }
}

impl fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredValue")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("meta", &self.meta())
            .field("value", &String::from_utf8_lossy(self.value()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_back_as_written_with_and_without_the_optional_ones() {
        for (lease_id, expires_at_ms) in [(0, 0), (7, 0), (0, 123_456), (u64::MAX, 1)] {
            for value in [&b""[..], b"v", &[0xff; 300]] {
                for key in [&b"k"[..], &[0x80; 200], &[0; 20_000]] {
                    for revisions in [(0, 0, 0), (3, u64::MAX - 1, 1 << 40), (127, 128, 16_383)] {
                        let meta = KeyMeta {
                            create_revision: revisions.0,
                            mod_revision: revisions.1,
                            version: revisions.2,
                            lease_id,
                            expires_at_ms,
                            value_type: ValueType::Hash,
                        };
                        let stored = StoredValue::new(key, &meta, value);
                        assert_eq!(stored.meta(), meta);
                        assert_eq!(stored.key(), key);
                        assert_eq!(stored.value(), value);
                        assert_eq!(stored.value_type(), ValueType::Hash);
                        assert_eq!(stored.lease_id(), lease_id);
                        assert_eq!(stored.expires_at_ms(), expires_at_ms);
                        let plain = KeyMeta::default();
                        let changed = stored.with_meta(&plain);
                        assert_eq!(
                            (changed.meta(), changed.key(), changed.value()),
                            (plain, key, value)
                        );
                    }
                }
            }
        }
    }

    /// The case the layout is for: a 16-byte key and a 100-byte value at revisions below 2^28
    /// fit one 128-byte allocation (1 + 16 + 2 + 3 + 4 + 1 + 100 bytes here); a lease costs 8
    /// bytes more.
    #[test]
    fn a_sixteen_byte_key_with_a_hundred_byte_value_takes_128_bytes() {
        let meta = KeyMeta {
            create_revision: 1_000_000,
            mod_revision: 20_000_000,
            version: 7,
            ..KeyMeta::default()
        };
        let stored = StoredValue::new(&[b'k'; 16], &meta, &[1; 100]);
        assert_eq!(stored.0.len(), 127);
        let leased = KeyMeta {
            lease_id: 9,
            ..meta
        };
        assert_eq!(
            StoredValue::new(&[b'k'; 16], &leased, &[1; 100]).0.len(),
            135
        );
    }
}
