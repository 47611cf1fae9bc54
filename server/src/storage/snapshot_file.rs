//! The snapshot file: the last snapshot of the state machine, next to the WAL, replaced
//! atomically (written to a temporary file, synced, renamed, directory synced).
//!
//! Layout: `[magic "PAXKVSN1"][crc32 u32][meta length u32][SnapshotMeta][state bytes]`, little
//! endian; the CRC covers everything after it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use paxkv_core::SnapshotWrite;
use paxkv_proto::peer::SnapshotMeta;
use prost::Message;

use super::{io_error, sync_directory, StorageError};

const SNAPSHOT_MAGIC: &[u8; 8] = b"PAXKVSN1";
/// Magic, CRC and metadata length in front of the metadata.
const SNAPSHOT_HEADER_BYTES: usize = 16;

/// Where the snapshot of the data directory `dir` lives.
fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot")
}

/// The snapshot in `dir`, if there is one: its metadata and the state machine's bytes (read
/// into a buffer of their own, not copied out of the file's).
pub(super) fn read(dir: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
    let path = snapshot_path(dir);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path)(error)),
    };
    let corrupt = |reason: &str| StorageError::CorruptSnapshot {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let size = file.metadata().map_err(io_error(&path))?.len() as usize;
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    if size < SNAPSHOT_HEADER_BYTES {
        return Err(corrupt("not a paxkv snapshot"));
    }
    file.read_exact(&mut header).map_err(io_error(&path))?;
    if &header[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a paxkv snapshot"));
    }
    let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let meta_len = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")) as usize;
    if SNAPSHOT_HEADER_BYTES + meta_len > size {
        return Err(corrupt("metadata length beyond the file"));
    }
    let mut meta = vec![0u8; meta_len];
    file.read_exact(&mut meta).map_err(io_error(&path))?;
    let mut state = Vec::with_capacity(size - SNAPSHOT_HEADER_BYTES - meta_len);
    file.read_to_end(&mut state).map_err(io_error(&path))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[12..16]);
    hasher.update(&meta);
    hasher.update(&state);
    if hasher.finalize() != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let meta =
        SnapshotMeta::decode(meta.as_slice()).map_err(|_| corrupt("metadata does not decode"))?;
    Ok(Some((meta, state)))
}

/// Bytes written between syncs of the file: the disk never holds much of it unwritten, so the
/// log's own syncs meanwhile wait behind a few milliseconds of flushing at most. (At a million
/// keys a node writes a 130 MB snapshot every few seconds while it syncs its log thousands of
/// times a second on the same disk.)
const WRITE_SLICE_BYTES: usize = 512 * 1024;

/// Replaces the snapshot in `dir` with `write`; durable when this returns. The state's bytes
/// are written as they are (no copy), synced every `WRITE_SLICE_BYTES`, then the directory.
pub(super) fn write(dir: &Path, write: &SnapshotWrite) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    let path = snapshot_path(dir);
    let temporary = dir.join("snapshot.tmp");
    let meta = write.meta.encode_to_vec();
    let meta_length = (meta.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&meta_length);
    crc.update(&meta);
    for piece in write.data.pieces() {
        crc.update(piece);
    }
    let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
    let io = io_error(&temporary);
    let mut header = SNAPSHOT_MAGIC.to_vec();
    header.extend_from_slice(&crc.finalize().to_le_bytes());
    header.extend_from_slice(&meta_length);
    header.extend_from_slice(&meta);
    let result = file.write_all(&header).and_then(|()| {
        let mut unsynced = 0;
        // The pieces (`SnapshotBytes::PIECE_BYTES`) may be larger than a slice.
        for slice in write
            .data
            .pieces()
            .flat_map(|piece| piece.chunks(WRITE_SLICE_BYTES))
        {
            file.write_all(slice)?;
            unsynced += slice.len();
            if unsynced >= WRITE_SLICE_BYTES {
                let syncing = std::time::Instant::now();
                file.sync_data()?;
                unsynced = 0;
                // Then the disk is left to the log for as long as the slice's sync took: each
                // sync here is a flush of the whole device, and every log sync on the disk
                // (other nodes' too) waits behind it. In a million-key fill every log sync of
                // 8 ms or more (39 of them, up to 26 ms) fell inside some node's snapshot
                // write; with this pause, none took over 13 ms.
                std::thread::sleep(syncing.elapsed());
            }
        }
        file.sync_data()
    });
    result.map_err(io)?;
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    sync_directory(dir)?;
    tracing::info!(
        index = write.meta.index,
        bytes = write.data.len(),
        ms = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::storage::test_support::reopen;
    use crate::storage::StorageError;

    #[test]
    fn a_corrupt_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("snapshot"), b"PAXKVSN1garbage-garbage").unwrap();
        let error = reopen(dir.path()).unwrap_err();
        assert!(error.to_string().contains("snapshot"), "{error}");
        assert!(
            matches!(error, StorageError::CorruptSnapshot { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("refusing to start"), "{error}");
    }
}
