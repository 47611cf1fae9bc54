//! What the map holds for a key: its value and its metadata packed into one allocation.
//!
//! A million keys are a million map entries, so the entry's size is most of the store's
//! memory. Held as a struct, a key's metadata (three revisions, a lease, a deadline, a type:
//! 48 bytes) sat in the map's tree nodes next to a boxed value, and the tree's leaves are about
//! half full after keys written in order: about 150 bytes of tree per key on top of the value's
//! own allocation. Packed with the value behind one pointer, a tree slot is 16 bytes and the
//! metadata shares the value's allocation (keys without a lease or a deadline skip those
//! fields).
//!
//! Layout: `[value type: 1][flags: 1][create revision: 8][mod revision: 8][version: 8]`, then
//! the lease id (8, if flag `LEASE`), the deadline (8, if flag `DEADLINE`), then the value.
//! Numbers are little-endian.

use std::fmt;

use paxkv_proto::client::ValueType;

const LEASE: u8 = 1;
const DEADLINE: u8 = 2;
/// Value type, flags and the three revisions.
const FIXED_BYTES: usize = 2 + 3 * 8;

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

/// A key's value and metadata in one allocation (see the module comment).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct StoredValue(Box<[u8]>);

impl StoredValue {
    pub(super) fn new(meta: &KeyMeta, value: &[u8]) -> StoredValue {
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
        let mut bytes = Vec::with_capacity(FIXED_BYTES + optional + value.len());
        bytes.push(meta.value_type as i32 as u8);
        bytes.push(flags);
        for number in [meta.create_revision, meta.mod_revision, meta.version] {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        if meta.lease_id != 0 {
            bytes.extend_from_slice(&meta.lease_id.to_le_bytes());
        }
        if meta.expires_at_ms != 0 {
            bytes.extend_from_slice(&meta.expires_at_ms.to_le_bytes());
        }
        bytes.extend_from_slice(value);
        StoredValue(bytes.into_boxed_slice())
    }

    /// The same value with other metadata.
    pub(super) fn with_meta(&self, meta: &KeyMeta) -> StoredValue {
        StoredValue::new(meta, self.value())
    }

    fn number_at(&self, offset: usize) -> u64 {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.0[offset..offset + 8]);
        u64::from_le_bytes(bytes)
    }

    fn flags(&self) -> u8 {
        self.0[1]
    }

    fn value_offset(&self) -> usize {
        FIXED_BYTES + 8 * (self.flags() & (LEASE | DEADLINE)).count_ones() as usize
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.0[self.value_offset()..]
    }

    pub(super) fn value_type(&self) -> ValueType {
        ValueType::try_from(i32::from(self.0[0])).unwrap_or_default()
    }

    pub(super) fn create_revision(&self) -> u64 {
        self.number_at(2)
    }

    pub(super) fn mod_revision(&self) -> u64 {
        self.number_at(10)
    }

    pub(super) fn version(&self) -> u64 {
        self.number_at(18)
    }

    pub(super) fn lease_id(&self) -> u64 {
        if self.flags() & LEASE == 0 {
            return 0;
        }
        self.number_at(FIXED_BYTES)
    }

    pub(super) fn expires_at_ms(&self) -> u64 {
        if self.flags() & DEADLINE == 0 {
            return 0;
        }
        let lease_bytes = if self.flags() & LEASE == 0 { 0 } else { 8 };
        self.number_at(FIXED_BYTES + lease_bytes)
    }

    pub(super) fn meta(&self) -> KeyMeta {
        KeyMeta {
            create_revision: self.create_revision(),
            mod_revision: self.mod_revision(),
            version: self.version(),
            lease_id: self.lease_id(),
            expires_at_ms: self.expires_at_ms(),
            value_type: self.value_type(),
        }
    }
}

impl fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredValue")
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
                let meta = KeyMeta {
                    create_revision: 3,
                    mod_revision: u64::MAX - 1,
                    version: 1 << 40,
                    lease_id,
                    expires_at_ms,
                    value_type: ValueType::Hash,
                };
                let stored = StoredValue::new(&meta, value);
                assert_eq!(stored.meta(), meta);
                assert_eq!(stored.value(), value);
                let plain = KeyMeta::default();
                let changed = stored.with_meta(&plain);
                assert_eq!((changed.meta(), changed.value()), (plain, value));
            }
        }
    }

    #[test]
    fn a_key_with_neither_lease_nor_deadline_pays_only_the_fixed_header() {
        let stored = StoredValue::new(&KeyMeta::default(), &[1; 100]);
        assert_eq!(stored.0.len(), FIXED_BYTES + 100);
        let leased = KeyMeta {
            lease_id: 9,
            ..KeyMeta::default()
        };
        assert_eq!(
            StoredValue::new(&leased, &[1; 100]).0.len(),
            FIXED_BYTES + 108
        );
    }
}
