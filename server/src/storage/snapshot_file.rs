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
    let mut writer = SnapshotFileWriter::create(dir, &write.meta)?;
    for piece in write.data.pieces() {
        writer.append(piece)?;
    }
    writer.finish()
}

/// What the thread writing a snapshot handed over in parts receives.
pub(super) enum Streamed {
    /// The next bytes of the state.
    Bytes(Vec<u8>),
    /// Every byte is in: make it the snapshot. A channel closed before this abandons the
    /// snapshot (the file written so far is removed; the last snapshot stays).
    Complete,
}

/// Writes the snapshot whose bytes come over `bytes` (a thread's body). Returns whether it
/// replaced the snapshot in `dir` (false: abandoned before it was complete).
pub(super) fn write_streamed(
    dir: &Path,
    meta: &SnapshotMeta,
    bytes: std::sync::mpsc::Receiver<Streamed>,
    backlog: &super::SnapshotBacklog,
) -> Result<bool, StorageError> {
    // However the writer stops, nothing it was handed waits any more.
    struct ClearOnExit<'a>(&'a super::SnapshotBacklog);
    impl Drop for ClearOnExit<'_> {
        fn drop(&mut self) {
            self.0.clear();
        }
    }
    let _clear = ClearOnExit(backlog);
    let mut writer = SnapshotFileWriter::create(dir, meta)?;
    loop {
        match bytes.recv() {
            Ok(Streamed::Bytes(piece)) => {
                writer.append(&piece)?;
                backlog.written(piece.len());
            }
            Ok(Streamed::Complete) => {
                writer.finish()?;
                return Ok(true);
            }
            Err(std::sync::mpsc::RecvError) => {
                writer.abandon();
                return Ok(false);
            }
        }
    }
}

/// A snapshot file being written: to a temporary file, whose checksum (in the header, over
/// everything after it) is filled in once the last byte is known; then synced and renamed over
/// the snapshot. Until then the last snapshot stays, whatever happens.
struct SnapshotFileWriter {
    dir: PathBuf,
    temporary: PathBuf,
    file: File,
    crc: crc32fast::Hasher,
    unsynced: usize,
    state_bytes: usize,
    index: u64,
    started: std::time::Instant,
}

impl SnapshotFileWriter {
    fn create(dir: &Path, meta: &SnapshotMeta) -> Result<SnapshotFileWriter, StorageError> {
        let temporary = dir.join("snapshot.tmp");
        let meta_bytes = meta.encode_to_vec();
        let meta_length = (meta_bytes.len() as u32).to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&meta_length);
        crc.update(&meta_bytes);
        let mut header = SNAPSHOT_MAGIC.to_vec();
        // The checksum's place; `finish` writes it.
        header.extend_from_slice(&[0; 4]);
        header.extend_from_slice(&meta_length);
        header.extend_from_slice(&meta_bytes);
        let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
        file.write_all(&header).map_err(io_error(&temporary))?;
        Ok(SnapshotFileWriter {
            dir: dir.to_path_buf(),
            temporary,
            file,
            crc,
            unsynced: header.len(),
            state_bytes: 0,
            index: meta.index,
            started: std::time::Instant::now(),
        })
    }

    /// Appends the next bytes of the state, syncing every `WRITE_SLICE_BYTES`.
    fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.crc.update(bytes);
        self.state_bytes += bytes.len();
        // A piece (`SnapshotBytes::PIECE_BYTES`) may be larger than a slice.
        for slice in bytes.chunks(WRITE_SLICE_BYTES) {
            self.file
                .write_all(slice)
                .map_err(io_error(&self.temporary))?;
            self.unsynced += slice.len();
            if self.unsynced >= WRITE_SLICE_BYTES {
                let syncing = std::time::Instant::now();
                self.file.sync_data().map_err(io_error(&self.temporary))?;
                self.unsynced = 0;
                // Then the disk is left to the log for as long as the slice's sync took: each
                // sync here is a flush of the whole device, and every log sync on the disk
                // (other nodes' too) waits behind it. In a million-key fill every log sync of
                // 8 ms or more (39 of them, up to 26 ms) fell inside some node's snapshot
                // write; with this pause, none took over 13 ms.
                std::thread::sleep(syncing.elapsed());
            }
        }
        Ok(())
    }

    /// Fills in the checksum, syncs, and renames the file over the snapshot: durable when
    /// this returns.
    fn finish(self) -> Result<(), StorageError> {
        use std::os::unix::fs::FileExt;
        let crc = self.crc.finalize().to_le_bytes();
        let io = io_error(&self.temporary);
        self.file
            .write_all_at(&crc, SNAPSHOT_MAGIC.len() as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(io)?;
        let path = snapshot_path(&self.dir);
        fs::rename(&self.temporary, &path).map_err(io_error(&path))?;
        sync_directory(&self.dir)?;
        tracing::info!(
            index = self.index,
            bytes = self.state_bytes,
            ms = self.started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        Ok(())
    }

    /// Drops what was written: the last snapshot stays. (A file left behind by a crash is
    /// harmless: it is never read, and the next snapshot replaces it.)
    fn abandon(self) {
        let _ = fs::remove_file(&self.temporary);
        tracing::info!(
            index = self.index,
            "snapshot abandoned before it was complete"
        );
    }
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
