//! How the write-ahead log is framed: records, batches of records, and the segment header.
//!
//! A record is `[length u32][crc32 u32][kind u8][payload]`, little endian. The length counts the
//! kind byte and the payload (so it is never 0 and at most `RECORD_BYTES_MAX`); the CRC-32 covers
//! the same bytes. The kind says what the payload holds:
//!
//! | kind | record          | payload                                                     |
//! |------|-----------------|-------------------------------------------------------------|
//! | 1    | hard state      | a `HardState` message (prost)                               |
//! | 2    | log write       | `[from_index u64]([entry length u32][LogEntry])*` (payload) |
//! | 3    | snapshot marker | `[snapshot index u64][replaces log u8]` (payload)           |
//! | 4    | segment header  | `[format u32]`: `SEGMENT_FORMAT`                            |
//! | 5    | batch marker    | `[records length u64]`: the bytes of the records after it   |
//!
//! A segment is one segment header record, synced before anything follows it, then one batch
//! per append: a batch marker, then the records of that append, whose total length the marker
//! states. Recovery keeps or cuts off a batch whole, so an append survives a crash whole or not
//! at all; `read_batch` decides whether damage is a torn last append or corruption. Segments
//! written before batches have no header and hold records one after another.

use paxkv_proto::PEER_FRAME_BYTES_MAX;

use super::payload::LOG_RECORD_BYTES_TARGET;

/// Largest record accepted on recovery; larger means a corrupt length. `encode_record` asserts
/// it, and log writes stay far below it (`LOG_RECORD_BYTES_TARGET`).
pub const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;
// An entry reached this node in a client or peer frame, so a record stays below the target plus
// one such frame.
const _: () = assert!(LOG_RECORD_BYTES_TARGET + PEER_FRAME_BYTES_MAX < RECORD_BYTES_MAX);
/// Length, CRC and kind in front of every record's payload.
pub(super) const RECORD_HEADER_BYTES: usize = 9;
/// Format of the segments this code writes, in their header record.
pub(super) const SEGMENT_FORMAT: u32 = 2;
/// The header record: format u32.
pub(super) const SEGMENT_HEADER_BYTES: usize = RECORD_HEADER_BYTES + 4;
/// The marker record in front of a batch: byte length u64 of the batch's records after it.
pub(super) const BATCH_MARKER_BYTES: usize = RECORD_HEADER_BYTES + 8;

pub(super) const KIND_HARD_STATE: u8 = 1;
pub(super) const KIND_LOG_WRITE: u8 = 2;
pub(super) const KIND_SNAPSHOT: u8 = 3;
pub(super) const KIND_SEGMENT_HEADER: u8 = 4;
pub(super) const KIND_BATCH_MARKER: u8 = 5;

/// The records of one append behind room for the marker that states their length.
pub(super) struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            bytes: vec![0; BATCH_MARKER_BYTES],
        }
    }

    pub(super) fn record(&mut self, kind: u8, payload: &[u8]) {
        encode_record(&mut self.bytes, kind, payload);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.len() == BATCH_MARKER_BYTES
    }

    /// The marker, then the records.
    pub(super) fn finish(mut self) -> Vec<u8> {
        let records_bytes = (self.bytes.len() - BATCH_MARKER_BYTES) as u64;
        let mut marker = Vec::with_capacity(BATCH_MARKER_BYTES);
        encode_record(&mut marker, KIND_BATCH_MARKER, &records_bytes.to_le_bytes());
        self.bytes[..BATCH_MARKER_BYTES].copy_from_slice(&marker);
        self.bytes
    }
}

pub(super) fn encode_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let length = 1 + payload.len();
    // Recovery refuses a longer record as a corrupt length: writing one would leave a node that
    // cannot restart.
    assert!(
        length <= RECORD_BYTES_MAX,
        "a record of {length} bytes (kind {kind}) is over RECORD_BYTES_MAX"
    );
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Where and why replaying a segment stopped.
#[derive(Debug)]
pub(super) struct Damage {
    pub(super) offset: usize,
    pub(super) reason: String,
    /// If this is the last segment, the damage is a write torn by a crash, to cut off from
    /// here; `None`: corruption wherever it is.
    pub(super) torn_from: Option<usize>,
}

/// Where the first batch starts if `bytes` opens with a segment header, `None` for a segment
/// written before headers and batches.
pub(super) fn segment_header(bytes: &[u8]) -> Result<Option<usize>, Damage> {
    let header = &bytes[..bytes.len().min(SEGMENT_HEADER_BYTES)];
    match decode_record(header) {
        Ok((KIND_SEGMENT_HEADER, payload, _)) => {
            let format = u32::from_le_bytes(payload.try_into().map_err(|_| Damage {
                offset: 0,
                reason: "segment header of the wrong size".into(),
                torn_from: None,
            })?);
            if format != SEGMENT_FORMAT {
                return Err(Damage {
                    offset: 0,
                    reason: format!("unknown segment format {format}"),
                    torn_from: None,
                });
            }
            Ok(Some(SEGMENT_HEADER_BYTES))
        }
        // A header that was synced, so data may follow it, and is now damaged. (A header torn
        // while the segment was created has nothing after it, and the rule for segments from
        // before batches cuts it off.)
        Err(error)
            if bytes.len() > SEGMENT_HEADER_BYTES
                && bytes.get(RECORD_HEADER_BYTES - 1) == Some(&KIND_SEGMENT_HEADER) =>
        {
            Err(Damage {
                offset: 0,
                reason: format!("damaged segment header ({error})"),
                torn_from: None,
            })
        }
        _ => Ok(None),
    }
}

/// A record checked in place.
pub(super) struct RecordAt<'a> {
    pub(super) offset: usize,
    pub(super) kind: u8,
    pub(super) payload: &'a [u8],
}

/// Checks the batch whose marker is at `start`: its records, and where it ends. Damage counts
/// as torn only inside the last append: in a batch that runs past or up to the end of the file,
/// or at a damaged marker that no intact marker follows.
pub(super) fn read_batch(bytes: &[u8], start: usize) -> Result<(Vec<RecordAt<'_>>, usize), Damage> {
    let records_bytes = read_batch_marker(bytes, start)?;
    let records_start = start + BATCH_MARKER_BYTES;
    let end = records_start
        .checked_add(records_bytes)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| Damage {
            offset: start,
            reason: format!("a batch of {records_bytes} bytes runs past the end of the file"),
            torn_from: Some(start),
        })?;
    // Bytes after this batch come from a later append, and every append is synced before the
    // next: only a batch followed by nothing but the file's end, or by zeros (space allocated
    // ahead and never written), can be torn.
    let torn_from = all_zero(&bytes[end..]).then_some(start);
    let mut records = Vec::new();
    let mut offset = records_start;
    while offset < end {
        let (kind, payload, length) =
            decode_record(&bytes[offset..end]).map_err(|error| Damage {
                offset,
                reason: format!("{error} in the batch at byte offset {start}"),
                torn_from,
            })?;
        records.push(RecordAt {
            offset,
            kind,
            payload,
        });
        offset += length;
    }
    if records.is_empty() {
        return Err(Damage {
            offset: start,
            reason: "a batch without records".into(),
            torn_from: None,
        });
    }
    Ok((records, end))
}

/// The byte length of the records of the batch whose marker is at `start`.
fn read_batch_marker(bytes: &[u8], start: usize) -> Result<usize, Damage> {
    let Some(marker) = bytes.get(start..start + BATCH_MARKER_BYTES) else {
        // Nothing follows a marker cut short: it is the start of the last append.
        return Err(Damage {
            offset: start,
            reason: "batch marker cut short".into(),
            torn_from: Some(start),
        });
    };
    let decoded = decode_record(marker).map_err(|error| error.to_string());
    match decoded {
        Ok((KIND_BATCH_MARKER, payload, BATCH_MARKER_BYTES)) => {
            let length = u64::from_le_bytes(payload.try_into().expect("8 bytes"));
            Ok(usize::try_from(length).unwrap_or(usize::MAX))
        }
        other => {
            let reason = match other {
                Ok((kind, _, _)) => format!("a record of kind {kind} where a batch marker belongs"),
                Err(error) => format!("damaged batch marker ({error})"),
            };
            // The batch's extent is unknown. An intact marker after it proves a later append,
            // so this one was synced; without one, this is the last append.
            let torn = !batch_marker_follows(bytes, start);
            Err(Damage {
                offset: start,
                reason,
                torn_from: torn.then_some(start),
            })
        }
    }
}

/// True if an intact batch marker starts anywhere after `offset`. (A value that happens to
/// hold one only makes recovery refuse, the safe mistake.)
fn batch_marker_follows(bytes: &[u8], offset: usize) -> bool {
    // A record's length field counts what follows the length and CRC fields.
    let length_field = ((BATCH_MARKER_BYTES - 8) as u32).to_le_bytes();
    let last_start = bytes.len().saturating_sub(BATCH_MARKER_BYTES);
    (offset + 1..=last_start).any(|at| {
        let candidate = &bytes[at..at + BATCH_MARKER_BYTES];
        candidate[..4] == length_field
            && candidate[RECORD_HEADER_BYTES - 1] == KIND_BATCH_MARKER
            && decode_record(candidate).is_ok()
    })
}

#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    #[error("record cut short")]
    Truncated,
    #[error("{0}")]
    Damaged(String),
}

/// Decodes the record at the start of `bytes`: (kind, payload, total length).
pub(super) fn decode_record(bytes: &[u8]) -> Result<(u8, &[u8], usize), RecordError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(RecordError::Truncated);
    }
    let length = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if length == 0 || length > RECORD_BYTES_MAX {
        return Err(RecordError::Damaged(format!(
            "impossible record length {length}"
        )));
    }
    if bytes.len() < 8 + length {
        return Err(RecordError::Truncated);
    }
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let body = &bytes[8..8 + length];
    if crc32fast::hash(body) != crc {
        return Err(RecordError::Damaged("checksum mismatch".into()));
    }
    Ok((body[0], &body[1..], 8 + length))
}

/// True if `bytes` holds only zeros (or nothing).
pub(super) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == 0)
}

/// True if a damaged record looks like a write torn by a crash: only zeros follow (blocks the
/// file system allocated but never wrote), or a plausible record exactly fills the rest of the
/// file. A damaged record with more after it is corruption, never a torn write.
pub(super) fn is_torn_tail(bytes: &[u8]) -> bool {
    if all_zero(bytes) {
        return true;
    }
    let length = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    length != 0 && length <= RECORD_BYTES_MAX && 8 + length == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_a_flipped_or_missing_byte_is_caught() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, KIND_HARD_STATE, b"payload");
        assert_eq!(bytes.len(), RECORD_HEADER_BYTES + 7);
        assert_eq!(
            &bytes[..4],
            &8u32.to_le_bytes(),
            "the length counts kind and payload"
        );
        let (kind, payload, length) = decode_record(&bytes).unwrap();
        assert_eq!(
            (kind, payload, length),
            (KIND_HARD_STATE, &b"payload"[..], bytes.len())
        );
        let mut flipped = bytes.clone();
        flipped[RECORD_HEADER_BYTES] ^= 0x01;
        assert!(matches!(
            decode_record(&flipped),
            Err(RecordError::Damaged(reason)) if reason == "checksum mismatch"
        ));
        assert!(matches!(
            decode_record(&bytes[..bytes.len() - 1]),
            Err(RecordError::Truncated)
        ));
    }
}
