//! How a typed value lives in the store: a key's `value_type` says what its bytes hold. A
//! string is its bytes. A hash is its fields in byte order, each as a varint length and the
//! field's bytes, then a varint length and the value's bytes; an empty hash is never stored
//! (deleting its last field deletes the key, as in Redis). Lists and sets can follow as new
//! types with encodings of their own.

use std::collections::BTreeMap;

/// A hash's fields, ordered.
pub type Hash = BTreeMap<Vec<u8>, Vec<u8>>;

pub fn encode_hash(hash: &Hash) -> Vec<u8> {
    let size: usize = hash.iter().map(|(f, v)| f.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(size);
    for (field, value) in hash {
        put_bytes(&mut out, field);
        put_bytes(&mut out, value);
    }
    out
}

/// The hash the bytes hold; None if they are not a hash's encoding (never written by this
/// module, so a corrupt store).
pub fn decode_hash(mut bytes: &[u8]) -> Option<Hash> {
    let mut hash = Hash::new();
    while !bytes.is_empty() {
        let field = take_bytes(&mut bytes)?;
        let value = take_bytes(&mut bytes)?;
        hash.insert(field.to_vec(), value.to_vec());
    }
    Some(hash)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut length = bytes.len() as u64;
    loop {
        let low = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(bytes);
}

fn take_bytes<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut length: u64 = 0;
    let mut shift = 0;
    loop {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        length |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let length = usize::try_from(length).ok()?;
    if length > bytes.len() {
        return None;
    }
    let (taken, rest) = bytes.split_at(length);
    *bytes = rest;
    Some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_round_trips_and_garbage_is_refused() {
        let mut hash = Hash::new();
        hash.insert(b"name".to_vec(), b"ada".to_vec());
        hash.insert(Vec::new(), vec![0; 300]);
        hash.insert(b"z".to_vec(), Vec::new());
        let bytes = encode_hash(&hash);
        assert_eq!(decode_hash(&bytes), Some(hash));
        assert_eq!(decode_hash(&[]), Some(Hash::new()));
        assert_eq!(decode_hash(&[5, b'a']), None, "a length past the end");
        assert_eq!(decode_hash(&[1, b'a']), None, "a field without a value");
        assert_eq!(decode_hash(&[0xff; 12]), None, "a varint too long");
    }
}
