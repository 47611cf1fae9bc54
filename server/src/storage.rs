//! Durable storage of one replica: a segmented write-ahead log with a CRC per record and
//! fdatasync, and snapshots written to a temporary file, synced and renamed.
//!
//! Layout under the data directory:
//! - `wal/<first-sequence>.wal`: segments of records `[length u32][crc32 u32][kind u8][payload]`
//!   (little endian; the CRC covers kind and payload);
//! - `snapshot`: `[magic][crc32][meta length u32][meta][data]`, replaced atomically.
//!
//! Recovery replays every segment in order. A damaged record at the very end of the last
//! segment is a write torn by a crash: it is cut off. Damage anywhere else is corruption: the
//! node refuses to start and names the file and offset, because dropping it could lose
//! acknowledged writes.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use paxkv_core::{DurableState, LogWrite, SnapshotWrite};
use paxkv_proto::peer::{HardState, LogEntry, SnapshotMeta};
use prost::Message;

/// A segment is closed and a new one started once it passes this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Largest record accepted on recovery (a batch of entries); larger means a corrupt length.
pub const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;
const RECORD_HEADER_BYTES: usize = 9;
const SNAPSHOT_MAGIC: &[u8; 8] = b"PAXKVSN1";

const KIND_HARD_STATE: u8 = 1;
const KIND_LOG_WRITE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: corrupt record at byte offset {offset} ({reason}); refusing to start, because \
         skipping it could lose acknowledged writes. Restore this node's data directory from a \
         backup, or remove it so the node catches up from its peers"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a replica's state survives crashes. `persist` returns only once everything it was
/// given is durable.
pub trait Storage: Send + 'static {
    /// Reads back everything persisted so far.
    fn load(&mut self) -> Result<DurableState, StorageError>;
    /// Writes what a `Ready` asks to keep. It may be lost in a crash until `sync` returns.
    fn write(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError>;
    /// Makes everything written so far durable. After an error nothing written since the last
    /// good sync may be counted on: the node must stop.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// `write`, then `sync`.
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError> {
        self.write(hard_state, snapshot, log_write)?;
        self.sync()
    }
    /// Number of syncs so far (for measuring group commit).
    fn sync_count(&self) -> u64;
    /// How long the coming sync takes in simulated time (simulated storage only: a real disk
    /// takes as long as it takes, inside `sync`).
    fn simulated_sync_delay(&mut self) -> std::time::Duration {
        std::time::Duration::from_millis(4)
    }
}

/// The real storage: files under a data directory.
pub struct DiskStorage {
    dir: PathBuf,
    wal_dir: PathBuf,
    /// What is durable, mirrored in memory so a new segment can start from a checkpoint. The
    /// snapshot's bytes are not kept here (only its metadata): they are in their own file.
    mirror: DurableState,
    segment: Option<(PathBuf, File, u64)>,
    /// Whether the open segment has appends not yet synced.
    unsynced: bool,
    next_segment_number: u64,
    sync_count: u64,
}

impl DiskStorage {
    pub fn open(dir: &Path) -> Result<DiskStorage, StorageError> {
        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).map_err(io_error(&wal_dir))?;
        Ok(DiskStorage {
            dir: dir.to_path_buf(),
            wal_dir,
            mirror: DurableState::default(),
            segment: None,
            unsynced: false,
            next_segment_number: 1,
            sync_count: 0,
        })
    }

    fn segment_paths(&self) -> Result<Vec<(u64, PathBuf)>, StorageError> {
        let mut segments = Vec::new();
        let listing = fs::read_dir(&self.wal_dir).map_err(io_error(&self.wal_dir))?;
        for entry in listing {
            let path = entry.map_err(io_error(&self.wal_dir))?.path();
            let number = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".wal"))
                .and_then(|number| number.parse::<u64>().ok());
            if let Some(number) = number {
                segments.push((number, path));
            }
        }
        segments.sort();
        Ok(segments)
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    fn read_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let path = self.snapshot_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(&path)(error)),
        };
        let corrupt = |reason: &str| StorageError::Corrupt {
            path: path.clone(),
            offset: 0,
            reason: reason.to_string(),
        };
        if bytes.len() < 16 || &bytes[..8] != SNAPSHOT_MAGIC {
            return Err(corrupt("not a paxkv snapshot"));
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[12..]) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let meta_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if 16 + meta_len > bytes.len() {
            return Err(corrupt("metadata length beyond the file"));
        }
        let meta = SnapshotMeta::decode(&bytes[16..16 + meta_len])
            .map_err(|_| corrupt("metadata does not decode"))?;
        Ok(Some((meta, bytes[16 + meta_len..].to_vec())))
    }

    fn write_snapshot(&mut self, write: &SnapshotWrite) -> Result<(), StorageError> {
        let path = self.snapshot_path();
        let temporary = self.dir.join("snapshot.tmp");
        let meta = write.meta.encode_to_vec();
        let mut body = Vec::with_capacity(4 + meta.len() + write.data.len());
        body.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        body.extend_from_slice(&meta);
        body.extend_from_slice(&write.data);
        let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
        file.write_all(SNAPSHOT_MAGIC)
            .map_err(io_error(&temporary))?;
        file.write_all(&crc32fast::hash(&body).to_le_bytes())
            .map_err(io_error(&temporary))?;
        file.write_all(&body).map_err(io_error(&temporary))?;
        file.sync_data().map_err(io_error(&temporary))?;
        fs::rename(&temporary, &path).map_err(io_error(&path))?;
        sync_directory(&self.dir)?;
        self.sync_count += 1;
        Ok(())
    }

    /// Starts a new segment holding a checkpoint of the durable state, then drops the older
    /// segments: the log never grows past what the last snapshot left.
    fn checkpoint(&mut self) -> Result<(), StorageError> {
        let old = self.segment_paths()?;
        self.open_new_segment()?;
        let hard_state = self.mirror.hard_state.clone();
        let entries = self.mirror.entries.clone();
        let mut records = Vec::new();
        encode_record(&mut records, KIND_HARD_STATE, &hard_state.encode_to_vec());
        if let Some((meta, _)) = &self.mirror.snapshot {
            encode_record(
                &mut records,
                KIND_SNAPSHOT,
                &encode_snapshot_marker(meta, false),
            );
        }
        if let Some(first) = entries.first() {
            let write = LogWrite {
                from_index: first.index,
                entries,
            };
            encode_record(&mut records, KIND_LOG_WRITE, &encode_log_write(&write));
        }
        self.append_and_sync(&records)?;
        for (_, path) in old {
            fs::remove_file(&path).map_err(io_error(&path))?;
        }
        sync_directory(&self.wal_dir)
    }

    fn open_new_segment(&mut self) -> Result<(), StorageError> {
        // What the old segment still holds unsynced must be durable before it stops being the
        // one `sync` reaches.
        self.sync_segment()?;
        let path = self
            .wal_dir
            .join(format!("{:020}.wal", self.next_segment_number));
        self.next_segment_number += 1;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        sync_directory(&self.wal_dir)?;
        self.segment = Some((path, file, 0));
        Ok(())
    }

    fn append_and_sync(&mut self, records: &[u8]) -> Result<(), StorageError> {
        self.append(records)?;
        self.sync_segment()
    }

    fn sync_segment(&mut self) -> Result<(), StorageError> {
        if let (true, Some((path, file, _))) = (self.unsynced, self.segment.as_ref()) {
            file.sync_data().map_err(io_error(path))?;
            self.unsynced = false;
            self.sync_count += 1;
        }
        Ok(())
    }

    fn append(&mut self, records: &[u8]) -> Result<(), StorageError> {
        let rolling = self
            .segment
            .as_ref()
            .is_none_or(|(_, _, bytes)| *bytes >= SEGMENT_BYTES_MAX);
        if rolling {
            self.open_new_segment()?;
        }
        let (path, file, bytes) = self.segment.as_mut().expect("a segment is open");
        file.write_all(records).map_err(io_error(path))?;
        *bytes += records.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Replays one segment into the mirror. Returns the offset where a torn tail starts, if the
    /// segment ends in a damaged record.
    fn replay_segment(&mut self, path: &Path, is_last: bool) -> Result<Option<u64>, StorageError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(io_error(path))?;
        let mut offset = 0usize;
        while offset < bytes.len() {
            match decode_record(&bytes[offset..]) {
                Ok((kind, payload, length)) => {
                    self.apply_record(kind, payload)
                        .map_err(|reason| StorageError::Corrupt {
                            path: path.to_path_buf(),
                            offset: offset as u64,
                            reason,
                        })?;
                    offset += length;
                }
                Err(RecordError::Truncated) if is_last => return Ok(Some(offset as u64)),
                Err(RecordError::Damaged(_)) if is_last && is_torn_tail(&bytes[offset..]) => {
                    return Ok(Some(offset as u64))
                }
                Err(error) => {
                    return Err(StorageError::Corrupt {
                        path: path.to_path_buf(),
                        offset: offset as u64,
                        reason: error.to_string(),
                    })
                }
            }
        }
        Ok(None)
    }

    fn apply_record(&mut self, kind: u8, payload: &[u8]) -> Result<(), String> {
        match kind {
            KIND_HARD_STATE => {
                self.mirror.hard_state =
                    HardState::decode(payload).map_err(|error| error.to_string())?;
            }
            KIND_LOG_WRITE => {
                let write = decode_log_write(payload)?;
                self.mirror.apply_log_write(&write);
            }
            KIND_SNAPSHOT => {
                let (index, replaces_log) = decode_snapshot_marker(payload)?;
                self.mirror
                    .drop_log_covered_by_snapshot(index, replaces_log);
            }
            other => return Err(format!("unknown record kind {other}")),
        }
        Ok(())
    }
}

impl Storage for DiskStorage {
    fn load(&mut self) -> Result<DurableState, StorageError> {
        let snapshot = self.read_snapshot()?;
        self.mirror = DurableState {
            snapshot: snapshot
                .as_ref()
                .map(|(meta, _)| (meta.clone(), Vec::new())),
            ..DurableState::default()
        };
        let segments = self.segment_paths()?;
        let last = segments.len().saturating_sub(1);
        for (position, (number, path)) in segments.iter().enumerate() {
            self.next_segment_number = number + 1;
            if let Some(torn_at) = self.replay_segment(path, position == last)? {
                tracing::warn!(path = %path.display(), offset = torn_at, "cutting off a torn write at the end of the log");
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_error(path))?;
                file.set_len(torn_at).map_err(io_error(path))?;
                file.sync_all().map_err(io_error(path))?;
            }
        }
        // The snapshot file may be newer than the last marker (a crash between the two).
        if let Some((meta, _)) = &self.mirror.snapshot {
            let index = meta.index;
            self.mirror.drop_log_covered_by_snapshot(index, false);
        }
        let snapshot_index = self
            .mirror
            .snapshot
            .as_ref()
            .map_or(0, |(meta, _)| meta.index);
        let contiguous = self
            .mirror
            .entries
            .iter()
            .enumerate()
            .all(|(offset, entry)| entry.index == snapshot_index + 1 + offset as u64);
        if !contiguous {
            return Err(StorageError::Corrupt {
                path: self.wal_dir.clone(),
                offset: 0,
                reason: "the log has a gap after the snapshot".into(),
            });
        }
        // New writes go to a fresh segment after a checkpoint of what was recovered.
        self.checkpoint()?;
        Ok(DurableState {
            hard_state: self.mirror.hard_state.clone(),
            snapshot,
            entries: self.mirror.entries.clone(),
        })
    }

    fn write(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError> {
        if let Some(write) = snapshot {
            self.write_snapshot(write)?;
        }
        let mut records = Vec::new();
        if let Some(hard_state) = hard_state {
            encode_record(&mut records, KIND_HARD_STATE, &hard_state.encode_to_vec());
        }
        if let Some(write) = snapshot {
            let marker = encode_snapshot_marker(&write.meta, write.replaces_log);
            encode_record(&mut records, KIND_SNAPSHOT, &marker);
        }
        if let Some(write) = log_write {
            encode_record(&mut records, KIND_LOG_WRITE, &encode_log_write(write));
        }
        if !records.is_empty() {
            self.append(&records)?;
        }
        if let Some(write) = snapshot {
            self.mirror
                .drop_log_covered_by_snapshot(write.meta.index, write.replaces_log);
            self.mirror.snapshot = Some((write.meta.clone(), Vec::new()));
        }
        self.mirror.apply_persisted(hard_state, None, log_write);
        if snapshot.is_some() {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.sync_segment()
    }

    fn sync_count(&self) -> u64 {
        self.sync_count
    }
}

fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io_error(dir))
}

fn encode_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    out.extend_from_slice(&((payload.len() + 1) as u32).to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("record cut short")]
    Truncated,
    #[error("{0}")]
    Damaged(String),
}

/// Decodes the record at the start of `bytes`: (kind, payload, total length).
fn decode_record(bytes: &[u8]) -> Result<(u8, &[u8], usize), RecordError> {
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

/// True if a damaged record looks like a write torn by a crash: only zeros follow (blocks the
/// file system allocated but never wrote), or a plausible record exactly fills the rest of the
/// file. A damaged record with more after it is corruption, never a torn write.
fn is_torn_tail(bytes: &[u8]) -> bool {
    if bytes.iter().all(|byte| *byte == 0) {
        return true;
    }
    let length = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    length != 0 && length <= RECORD_BYTES_MAX && 8 + length == bytes.len()
}

fn encode_log_write(write: &LogWrite) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&write.from_index.to_le_bytes());
    for entry in &write.entries {
        let encoded = entry.encode_to_vec();
        out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        out.extend_from_slice(&encoded);
    }
    out
}

fn decode_log_write(payload: &[u8]) -> Result<LogWrite, String> {
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

fn encode_snapshot_marker(meta: &SnapshotMeta, replaces_log: bool) -> Vec<u8> {
    let mut out = meta.index.to_le_bytes().to_vec();
    out.push(u8::from(replaces_log));
    out
}

fn decode_snapshot_marker(payload: &[u8]) -> Result<(u64, bool), String> {
    if payload.len() != 9 {
        return Err("snapshot marker of the wrong size".into());
    }
    let index = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    Ok((index, payload[8] == 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paxkv_proto::peer::{entry::Kind, Ballot, Entry, Noop};

    fn entries(first: u64, last: u64, round: u64) -> Vec<LogEntry> {
        (first..=last)
            .map(|index| LogEntry {
                index,
                ballot: Some(Ballot::new(round, 1)),
                entry: Some(Entry {
                    kind: Some(Kind::Noop(Noop {})),
                    log_time_ms: index,
                }),
            })
            .collect()
    }

    fn write(storage: &mut DiskStorage, first: u64, last: u64, round: u64) {
        let log = LogWrite {
            from_index: first,
            entries: entries(first, last, round),
        };
        storage.persist(None, None, Some(&log)).unwrap();
    }

    fn reopen(dir: &Path) -> Result<DurableState, StorageError> {
        DiskStorage::open(dir).unwrap().load()
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let storage = DiskStorage::open(dir).unwrap();
        storage.segment_paths().unwrap().pop().unwrap().1
    }

    #[test]
    fn writes_truncations_and_hard_state_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        let hard_state = HardState {
            promised: Some(Ballot::new(3, 2)),
            commit_index: 2,
            configuration: None,
        };
        storage.persist(Some(&hard_state), None, None).unwrap();
        write(&mut storage, 1, 5, 1);
        write(&mut storage, 4, 4, 2); // replaces 4 and drops 5
        let state = reopen(dir.path()).unwrap();
        assert_eq!(state.hard_state, hard_state);
        let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, vec![1, 2, 3, 4]);
        assert_eq!(state.entries[3].ballot, Some(Ballot::new(2, 1)));
    }

    #[test]
    fn a_snapshot_trims_the_log_and_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 10, 1);
        let snapshot = SnapshotWrite {
            meta: SnapshotMeta {
                index: 7,
                ballot: Some(Ballot::new(1, 1)),
                configuration: None,
            },
            data: b"state".to_vec(),
            replaces_log: false,
        };
        storage.persist(None, Some(&snapshot), None).unwrap();
        assert_eq!(
            storage.segment_paths().unwrap().len(),
            1,
            "old segments removed"
        );
        let state = reopen(dir.path()).unwrap();
        assert_eq!(state.snapshot.as_ref().unwrap().1, b"state");
        let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, vec![8, 9, 10]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 3, 1);
        write(&mut storage, 4, 6, 1);
        drop(storage);
        let path = last_segment(dir.path());
        let length = fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(length - 5).unwrap(); // the last write was torn by a crash
        let state = reopen(dir.path()).unwrap();
        let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, vec![1, 2, 3]);
        // And the node keeps working after the cut.
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 4, 4, 2);
        assert_eq!(reopen(dir.path()).unwrap().entries.len(), 4);
    }

    #[test]
    fn corruption_before_the_tail_is_refused_with_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 3, 1);
        write(&mut storage, 4, 6, 1);
        drop(storage);
        let path = last_segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        // The segment starts with a 9-byte hard-state record; flip a byte in the length of the
        // log write after it.
        bytes[12] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let error = reopen(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, StorageError::Corrupt { offset: 9, .. }),
            "{message}"
        );
        assert!(message.contains("byte offset 9"), "{message}");
        assert!(
            message.contains(path.file_name().unwrap().to_str().unwrap()),
            "{message}"
        );
        assert!(message.contains("refusing to start"), "{message}");
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "nothing is changed on refusal"
        );
    }

    #[test]
    fn a_damaged_checksum_in_the_middle_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 3, 1);
        write(&mut storage, 4, 6, 1);
        drop(storage);
        let path = last_segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[30] ^= 0x01; // a payload byte of the first log write
        fs::write(&path, &bytes).unwrap();
        let error = reopen(dir.path()).unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn a_corrupt_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("snapshot"), b"PAXKVSN1garbage-garbage").unwrap();
        let error = reopen(dir.path()).unwrap_err();
        assert!(error.to_string().contains("snapshot"), "{error}");
    }
}
