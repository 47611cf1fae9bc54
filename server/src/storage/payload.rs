//! What WAL records hold, besides the framing in `record`: the log write codec (and how a large
//! write is split over several records) and the snapshot marker codec. A hard state record is a
//! plain `HardState` message.
//!
//! A log write record is `[from_index u64]` then, for each entry from that index on,
//! `[entry length u32][LogEntry message]` (little endian); replaying it replaces the log from
//! `from_index` on. A snapshot marker is `[snapshot index u64][replaces log u8]`.

use paxkv_core::LogWrite;
use paxkv_proto::peer::{LogEntry, SnapshotMeta};
use prost::Message;

use super::record::{Batch, KIND_LOG_WRITE};

/// A log write goes to records of contiguous entries of at most this many bytes each: a large
/// write, or the checkpoint of a long log, becomes several records, never one over
/// `RECORD_BYTES_MAX` that recovery would refuse. Only a single entry larger than this makes a
/// larger record.
pub const LOG_RECORD_BYTES_TARGET: usize = 16 * 1024 * 1024;
/// In a log write record, the u32 length in front of each entry.
pub(super) const ENTRY_LENGTH_BYTES: usize = 4;

/// Adds a log write to `batch`, as records of at most about `LOG_RECORD_BYTES_TARGET` bytes.
pub(super) fn add_log_write(batch: &mut Batch, from_index: u64, entries: &[LogEntry]) {
    for (part_from_index, part) in split_log_write(from_index, entries, LOG_RECORD_BYTES_TARGET) {
        batch.record(KIND_LOG_WRITE, &encode_log_write(part_from_index, part));
    }
}

/// Splits a log write into parts of contiguous entries of at most `bytes_target` encoded bytes
/// (a part is larger only when it is a single entry larger than that). Replayed in order with
/// `DurableState::apply_log_write`, the parts do what the whole write does: the first replaces
/// the log from `from_index` on, and each later part starts right after the last entry of the
/// one before, so it replaces nothing and appends. A pure truncation (no entries) stays one part.
fn split_log_write(
    from_index: u64,
    entries: &[LogEntry],
    bytes_target: usize,
) -> Vec<(u64, &[LogEntry])> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut part_bytes = 0;
    for (position, entry) in entries.iter().enumerate() {
        // What makes a part's first index its `from_index`, and recovery checks it.
        assert_eq!(
            entry.index,
            from_index + position as u64,
            "a log write's entries follow each other from its from_index"
        );
        let entry_bytes = ENTRY_LENGTH_BYTES + entry.encoded_len();
        if position > start && part_bytes + entry_bytes > bytes_target {
            parts.push((from_index + start as u64, &entries[start..position]));
            start = position;
            part_bytes = 0;
        }
        part_bytes += entry_bytes;
    }
    parts.push((from_index + start as u64, &entries[start..]));
    parts
}

pub(super) fn encode_log_write(from_index: u64, entries: &[LogEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&from_index.to_le_bytes());
    for entry in entries {
        let encoded = entry.encode_to_vec();
        out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        out.extend_from_slice(&encoded);
    }
    out
}

pub(super) fn decode_log_write(payload: &[u8]) -> Result<LogWrite, String> {
    if payload.len() < 8 {
        return Err("log write shorter than its header".into());
    }
    let from_index = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    let mut entries = Vec::new();
    let mut rest = &payload[8..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("entry length cut short".into());
        }
        let length = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + length {
            return Err("entry cut short".into());
        }
        let entry = LogEntry::decode(&rest[4..4 + length]).map_err(|error| error.to_string())?;
        if entry.index != from_index + entries.len() as u64 {
            return Err("entries of a log write are not contiguous".into());
        }
        entries.push(entry);
        rest = &rest[4 + length..];
    }
    Ok(LogWrite {
        from_index,
        entries,
    })
}

pub(super) fn encode_snapshot_marker(meta: &SnapshotMeta, replaces_log: bool) -> Vec<u8> {
    let mut out = meta.index.to_le_bytes().to_vec();
    out.push(u8::from(replaces_log));
    out
}

pub(super) fn decode_snapshot_marker(payload: &[u8]) -> Result<(u64, bool), String> {
    if payload.len() != 9 {
        return Err("snapshot marker of the wrong size".into());
    }
    let index = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    Ok((index, payload[8] == 1))
}

#[cfg(test)]
mod tests {
    use paxkv_core::DurableState;

    use super::*;
    use crate::storage::test_support::entries;

    #[test]
    fn the_parts_of_a_split_log_write_replay_like_the_whole_write() {
        let logged = entries(1, 10, 1);
        let written = entries(4, 12, 2); // replaces 4 to 10, appends 11 and 12
        let entry_bytes = ENTRY_LENGTH_BYTES + written[0].encoded_len();
        assert!(written
            .iter()
            .all(|entry| ENTRY_LENGTH_BYTES + entry.encoded_len() == entry_bytes));
        let mut whole = DurableState {
            entries: logged.clone(),
            ..DurableState::default()
        };
        whole.apply_log_write(&LogWrite {
            from_index: 4,
            entries: written.clone(),
        });
        for (bytes_target, entries_per_part) in [
            (0, 1),
            (entry_bytes, 1),
            (2 * entry_bytes, 2),
            (3 * entry_bytes + 1, 3),
            (usize::MAX, written.len()),
        ] {
            let parts = split_log_write(4, &written, bytes_target);
            assert_eq!(
                parts.len(),
                written.len().div_ceil(entries_per_part),
                "{bytes_target}"
            );
            let mut split = DurableState {
                entries: logged.clone(),
                ..DurableState::default()
            };
            for (from_index, part) in parts {
                assert!(part.len() <= entries_per_part, "{bytes_target}");
                assert_eq!(from_index, part[0].index, "{bytes_target}");
                split.apply_log_write(&LogWrite {
                    from_index,
                    entries: part.to_vec(),
                });
            }
            assert_eq!(split.entries, whole.entries, "{bytes_target}");
        }
        let truncation: &[LogEntry] = &[];
        assert_eq!(split_log_write(4, truncation, 0), vec![(4, truncation)]);
    }
}
