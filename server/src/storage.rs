//! Durable storage of one replica: a segmented write-ahead log with a CRC per record and
//! fdatasync, and snapshots written to a temporary file, synced and renamed.
//!
//! Layout under the data directory:
//! - `wal/<first-sequence>.wal`: segments of records `[length u32][crc32 u32][kind u8][payload]`
//!   (little endian; the length counts kind and payload, the CRC covers them). A segment opens
//!   with a header record, synced before anything follows it; then comes one batch per append:
//!   a marker record holding the byte length of the records after it, then those records (a
//!   log write takes several once it passes `LOG_RECORD_BYTES_TARGET`);
//! - `snapshot`: `[magic][crc32][meta length u32][meta][data]`, replaced atomically.
//!
//! Recovery replays every segment in order, each batch only once all of it checks out. Every
//! append is synced before the next one starts (`persist` writes then syncs, and a new segment
//! starts only after the old one is synced), so unsynced bytes can only be in the last batch of
//! the last segment, and a crash may leave them in any state: missing, zeros, torn, or on disk
//! out of order. Damage inside that batch is a write torn by a crash: the whole batch is cut
//! off, so an append survives whole or not at all. Damage anywhere else is corruption: the node
//! refuses to start and names the file and offset, because dropping it could lose acknowledged
//! writes. The file cannot tell a synced last batch from an unsynced one: damage to a synced
//! last batch is cut off too (the one loss this rule allows). A caller that writes twice
//! between syncs gets the safe mistake instead: damage in its unsynced earlier batch is refused.
//!
//! Segments from before batches (records only, no header) are still read, under the rule they
//! were written with: a damaged record that only zeros follow, or that exactly fills the rest
//! of the file, is torn.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use paxkv_core::{DurableState, LogWrite, SnapshotWrite};
use paxkv_proto::peer::{HardState, LogEntry, SnapshotMeta};
use paxkv_proto::PEER_FRAME_BYTES_MAX;
use prost::Message;

/// A segment is closed and a new one started once it passes this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Largest record accepted on recovery; larger means a corrupt length. `encode_record` asserts
/// it, and log writes stay far below it (`LOG_RECORD_BYTES_TARGET`).
pub const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;
/// A log write goes to records of contiguous entries of at most this many bytes each: a large
/// write, or the checkpoint of a long log, becomes several records, never one over
/// `RECORD_BYTES_MAX` that recovery would refuse. Only a single entry larger than this makes a
/// larger record.
pub const LOG_RECORD_BYTES_TARGET: usize = 16 * 1024 * 1024;
// An entry reached this node in a client or peer frame, so a record stays below the target plus
// one such frame.
const _: () = assert!(LOG_RECORD_BYTES_TARGET + PEER_FRAME_BYTES_MAX < RECORD_BYTES_MAX);
/// Length, CRC and kind in front of every record's payload.
const RECORD_HEADER_BYTES: usize = 9;
const SNAPSHOT_MAGIC: &[u8; 8] = b"PAXKVSN1";
/// Format of the segments this code writes, in their header record.
const SEGMENT_FORMAT: u32 = 2;
/// The header record: format u32.
const SEGMENT_HEADER_BYTES: usize = RECORD_HEADER_BYTES + 4;
/// The marker record in front of a batch: byte length u64 of the batch's records after it.
const BATCH_MARKER_BYTES: usize = RECORD_HEADER_BYTES + 8;
/// In a log write record, the u32 length in front of each entry.
const ENTRY_LENGTH_BYTES: usize = 4;

const KIND_HARD_STATE: u8 = 1;
const KIND_LOG_WRITE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_SEGMENT_HEADER: u8 = 4;
const KIND_BATCH_MARKER: u8 = 5;

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
        let mut batch = Batch::new();
        batch.record(KIND_HARD_STATE, &self.mirror.hard_state.encode_to_vec());
        if let Some((meta, _)) = &self.mirror.snapshot {
            batch.record(KIND_SNAPSHOT, &encode_snapshot_marker(meta, false));
        }
        if let Some(first) = self.mirror.entries.first() {
            batch.log_write(first.index, &self.mirror.entries);
        }
        self.append_and_sync(batch)?;
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
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        // Synced before any batch follows it: damage to a header with data after it is then
        // never a torn write, and recovery can tell this format from the one before.
        let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES);
        encode_record(
            &mut header,
            KIND_SEGMENT_HEADER,
            &SEGMENT_FORMAT.to_le_bytes(),
        );
        file.write_all(&header).map_err(io_error(&path))?;
        file.sync_data().map_err(io_error(&path))?;
        self.sync_count += 1;
        sync_directory(&self.wal_dir)?;
        self.segment = Some((path, file, header.len() as u64));
        Ok(())
    }

    fn append_and_sync(&mut self, batch: Batch) -> Result<(), StorageError> {
        self.append(batch)?;
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

    /// Writes one batch: the unit recovery keeps or cuts off whole.
    fn append(&mut self, batch: Batch) -> Result<(), StorageError> {
        let rolling = self
            .segment
            .as_ref()
            .is_none_or(|(_, _, bytes)| *bytes >= SEGMENT_BYTES_MAX);
        if rolling {
            self.open_new_segment()?;
        }
        let bytes_written = batch.finish();
        let (path, file, bytes) = self.segment.as_mut().expect("a segment is open");
        file.write_all(&bytes_written).map_err(io_error(path))?;
        *bytes += bytes_written.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Replays one segment into the mirror. Returns the offset where a torn tail starts, if the
    /// last segment ends in one.
    fn replay_segment(&mut self, path: &Path, is_last: bool) -> Result<Option<u64>, StorageError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(io_error(path))?;
        let replayed = match segment_header(&bytes) {
            Ok(Some(first_batch)) => self.replay_batches(&bytes, first_batch),
            Ok(None) => self.replay_records(&bytes),
            Err(damage) => Err(damage),
        };
        match replayed {
            Ok(()) => Ok(None),
            Err(Damage {
                torn_from: Some(cut),
                ..
            }) if is_last => Ok(Some(cut as u64)),
            Err(damage) => Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: damage.offset as u64,
                reason: damage.reason,
            }),
        }
    }

    /// Replays the batches of a segment from `offset`, each once all of it checked out.
    fn replay_batches(&mut self, bytes: &[u8], mut offset: usize) -> Result<(), Damage> {
        while offset < bytes.len() {
            let (records, end) = read_batch(bytes, offset)?;
            for record in records {
                self.apply_record(record.kind, record.payload)
                    .map_err(|reason| Damage {
                        offset: record.offset,
                        reason,
                        torn_from: None,
                    })?;
            }
            offset = end;
        }
        Ok(())
    }

    /// Replays a segment written before batches: records one after another.
    fn replay_records(&mut self, bytes: &[u8]) -> Result<(), Damage> {
        let mut offset = 0usize;
        while offset < bytes.len() {
            let (kind, payload, length) = decode_record(&bytes[offset..]).map_err(|error| {
                let torn = match error {
                    RecordError::Truncated => true,
                    RecordError::Damaged(_) => is_torn_tail(&bytes[offset..]),
                };
                Damage {
                    offset,
                    reason: error.to_string(),
                    torn_from: torn.then_some(offset),
                }
            })?;
            self.apply_record(kind, payload).map_err(|reason| Damage {
                offset,
                reason,
                torn_from: None,
            })?;
            offset += length;
        }
        Ok(())
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
            other => return Err(format!("unexpected record kind {other}")),
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
        let mut batch = Batch::new();
        if let Some(hard_state) = hard_state {
            batch.record(KIND_HARD_STATE, &hard_state.encode_to_vec());
        }
        if let Some(write) = snapshot {
            let marker = encode_snapshot_marker(&write.meta, write.replaces_log);
            batch.record(KIND_SNAPSHOT, &marker);
        }
        if let Some(write) = log_write {
            batch.log_write(write.from_index, &write.entries);
        }
        if !batch.is_empty() {
            self.append(batch)?;
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

/// The records of one append behind room for the marker that states their length.
struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            bytes: vec![0; BATCH_MARKER_BYTES],
        }
    }

    fn record(&mut self, kind: u8, payload: &[u8]) {
        encode_record(&mut self.bytes, kind, payload);
    }

    /// A log write, as records of at most about `LOG_RECORD_BYTES_TARGET` bytes.
    fn log_write(&mut self, from_index: u64, entries: &[LogEntry]) {
        for (part_from_index, part) in split_log_write(from_index, entries, LOG_RECORD_BYTES_TARGET)
        {
            self.record(KIND_LOG_WRITE, &encode_log_write(part_from_index, part));
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes.len() == BATCH_MARKER_BYTES
    }

    /// The marker, then the records.
    fn finish(mut self) -> Vec<u8> {
        let records_bytes = (self.bytes.len() - BATCH_MARKER_BYTES) as u64;
        let mut marker = Vec::with_capacity(BATCH_MARKER_BYTES);
        encode_record(&mut marker, KIND_BATCH_MARKER, &records_bytes.to_le_bytes());
        self.bytes[..BATCH_MARKER_BYTES].copy_from_slice(&marker);
        self.bytes
    }
}

fn encode_record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
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
struct Damage {
    offset: usize,
    reason: String,
    /// If this is the last segment, the damage is a write torn by a crash, to cut off from
    /// here; `None`: corruption wherever it is.
    torn_from: Option<usize>,
}

/// Where the first batch starts if `bytes` opens with a segment header, `None` for a segment
/// written before headers and batches.
fn segment_header(bytes: &[u8]) -> Result<Option<usize>, Damage> {
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
struct RecordAt<'a> {
    offset: usize,
    kind: u8,
    payload: &'a [u8],
}

/// Checks the batch whose marker is at `start`: its records, and where it ends. Damage counts
/// as torn only inside the last append: in a batch that runs past or up to the end of the file,
/// or at a damaged marker that no intact marker follows.
fn read_batch(bytes: &[u8], start: usize) -> Result<(Vec<RecordAt<'_>>, usize), Damage> {
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
    // next: only a batch that reaches the end of the file can be torn.
    let torn_from = (end == bytes.len()).then_some(start);
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

fn encode_log_write(from_index: u64, entries: &[LogEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&from_index.to_le_bytes());
    for entry in entries {
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
    use paxkv_proto::client::PutRequest;
    use paxkv_proto::peer::{command::Op, entry::Kind, Ballot, Command, Entry, Noop};

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
        // The segment opens with its header and a checkpoint batch (marker, 9-byte hard state);
        // then comes the first write's batch. Flip a byte in the length of its log write.
        let log_write = SEGMENT_HEADER_BYTES + BATCH_MARKER_BYTES + 9 + BATCH_MARKER_BYTES;
        bytes[log_write + 3] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let error = reopen(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, StorageError::Corrupt { offset, .. } if offset == log_write as u64),
            "{message}"
        );
        assert!(
            message.contains(&format!("byte offset {log_write} ")),
            "{message}"
        );
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
        // A payload byte of the first log write (see the test above for the layout).
        let log_write = SEGMENT_HEADER_BYTES + BATCH_MARKER_BYTES + 9 + BATCH_MARKER_BYTES;
        bytes[log_write + RECORD_HEADER_BYTES + 2] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let error = reopen(dir.path()).unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }

    /// Entries carrying a put of `value_bytes` bytes each, to one of five keys.
    fn large_entries(first: u64, last: u64, value_bytes: usize) -> Vec<LogEntry> {
        (first..=last)
            .map(|index| LogEntry {
                index,
                ballot: Some(Ballot::new(1, 1)),
                entry: Some(Entry {
                    kind: Some(Kind::Command(Command {
                        client_id: 0,
                        sequence: 0,
                        op: Some(Op::Put(PutRequest {
                            key: format!("key-{}", index % 5).into_bytes(),
                            value: vec![index as u8; value_bytes],
                            ..PutRequest::default()
                        })),
                    })),
                    log_time_ms: index,
                }),
            })
            .collect()
    }

    /// Regression: a log write, and the checkpoint of the whole log since the last snapshot,
    /// went to disk as one record each, which recovery refuses once it passes
    /// RECORD_BYTES_MAX: the first reopen wrote such a checkpoint and the second refused it.
    #[test]
    fn a_log_larger_than_a_record_survives_two_reopens() {
        const VALUE_BYTES: usize = 1024 * 1024;
        let last = (RECORD_BYTES_MAX / VALUE_BYTES) as u64 + 4;
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        let written = large_entries(1, last, VALUE_BYTES);
        let log = LogWrite {
            from_index: 1,
            entries: written.clone(),
        };
        storage.persist(None, None, Some(&log)).unwrap();
        drop(storage);
        let record_bytes_bound = LOG_RECORD_BYTES_TARGET + 2 * VALUE_BYTES;
        assert!(largest_record_bytes(dir.path()) <= record_bytes_bound);
        // The first reopen reads the records of `write`; the second those of the checkpoint
        // the first one wrote.
        for reopening in 1..=2 {
            let state =
                reopen(dir.path()).unwrap_or_else(|error| panic!("reopening {reopening}: {error}"));
            assert!(state.entries == written, "reopening {reopening}");
            assert!(largest_record_bytes(dir.path()) <= record_bytes_bound);
        }
    }

    /// The length of the longest record in the segments of `dir`.
    fn largest_record_bytes(dir: &Path) -> usize {
        let storage = DiskStorage::open(dir).unwrap();
        let mut largest = 0;
        for (_, path) in storage.segment_paths().unwrap() {
            let bytes = fs::read(&path).unwrap();
            let mut offset = segment_header(&bytes).unwrap().unwrap();
            while offset < bytes.len() {
                let (records, end) = read_batch(&bytes, offset).unwrap();
                for record in records {
                    largest = largest.max(RECORD_HEADER_BYTES + record.payload.len());
                }
                offset = end;
            }
        }
        largest
    }

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

    /// Length of the last segment: where the next append starts.
    fn last_segment_bytes(dir: &Path) -> usize {
        fs::metadata(last_segment(dir)).unwrap().len() as usize
    }

    fn hard_state(commit_index: u64) -> HardState {
        HardState {
            promised: Some(Ballot::new(1, 1)),
            commit_index,
            configuration: None,
        }
    }

    /// Damages the bytes of one append in place.
    type Damaging = fn(&mut [u8]);

    /// The unsynced last append may reach the disk out of order: a block of it missing (zeros)
    /// or torn while later blocks of it made it. Only unsynced data is damaged, so the node
    /// must start, without that append.
    #[test]
    fn a_last_append_written_out_of_order_is_cut_off_and_the_earlier_data_kept() {
        let damages: [(&str, Damaging); 3] = [
            ("its first bytes never written", |append| {
                append[..12].fill(0)
            }),
            ("its marker torn", |append| append[5] ^= 0xff),
            ("its first record torn", |append| {
                append[BATCH_MARKER_BYTES + RECORD_HEADER_BYTES] ^= 0xff
            }),
        ];
        for (damage, apply) in damages {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = DiskStorage::open(dir.path()).unwrap();
            storage.load().unwrap();
            let first = LogWrite {
                from_index: 1,
                entries: entries(1, 3, 1),
            };
            storage
                .persist(Some(&hard_state(2)), None, Some(&first))
                .unwrap();
            let last_append = last_segment_bytes(dir.path());
            let second = LogWrite {
                from_index: 4,
                entries: entries(4, 6, 1),
            };
            storage
                .persist(Some(&hard_state(5)), None, Some(&second))
                .unwrap();
            drop(storage);
            let path = last_segment(dir.path());
            let mut bytes = fs::read(&path).unwrap();
            apply(&mut bytes[last_append..]);
            fs::write(&path, &bytes).unwrap();
            let state = reopen(dir.path()).unwrap_or_else(|error| panic!("{damage}: {error}"));
            let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
            assert_eq!(indexes, vec![1, 2, 3], "{damage}");
            assert_eq!(state.hard_state, hard_state(2), "{damage}");
            // And the node keeps working after the cut.
            let mut storage = DiskStorage::open(dir.path()).unwrap();
            storage.load().unwrap();
            write(&mut storage, 4, 4, 2);
            assert_eq!(reopen(dir.path()).unwrap().entries.len(), 4, "{damage}");
        }
    }

    /// Damage in an append that a later append follows is in synced data (every append is
    /// synced before the next one): corruption, whatever follows it.
    #[test]
    fn damage_in_an_earlier_append_is_refused_even_with_a_valid_append_after_it() {
        let damages: [(&str, usize, Damaging); 3] = [
            ("its first bytes zeroed", 0, |append| append[..12].fill(0)),
            ("its marker damaged", 0, |append| append[5] ^= 0xff),
            ("its first record damaged", BATCH_MARKER_BYTES, |append| {
                append[BATCH_MARKER_BYTES + RECORD_HEADER_BYTES] ^= 0xff
            }),
        ];
        for (damage, offset_in_append, apply) in damages {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = DiskStorage::open(dir.path()).unwrap();
            storage.load().unwrap();
            let damaged_append = last_segment_bytes(dir.path());
            write(&mut storage, 1, 3, 1);
            write(&mut storage, 4, 6, 1);
            drop(storage);
            let path = last_segment(dir.path());
            let mut bytes = fs::read(&path).unwrap();
            apply(&mut bytes[damaged_append..]);
            fs::write(&path, &bytes).unwrap();
            let error = reopen(dir.path()).unwrap_err();
            let offset = (damaged_append + offset_in_append) as u64;
            assert!(
                matches!(error, StorageError::Corrupt { offset: at, .. } if at == offset),
                "{damage}: {error}"
            );
            assert!(
                error
                    .to_string()
                    .contains(path.file_name().unwrap().to_str().unwrap()),
                "{damage}: {error}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "{damage}: nothing is changed on refusal"
            );
        }
    }

    /// A crash while a segment was created, before its header was synced, leaves a header cut
    /// short or zeros, and nothing after it.
    #[test]
    fn a_segment_torn_while_it_was_created_is_cut_off() {
        let mut header = Vec::new();
        encode_record(
            &mut header,
            KIND_SEGMENT_HEADER,
            &SEGMENT_FORMAT.to_le_bytes(),
        );
        let torn_headers: [&[u8]; 3] = [&header[..5], &[0; SEGMENT_HEADER_BYTES], &[]];
        for torn in torn_headers {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = DiskStorage::open(dir.path()).unwrap();
            storage.load().unwrap();
            write(&mut storage, 1, 3, 1);
            let next = storage.next_segment_number;
            drop(storage);
            fs::write(dir.path().join(format!("wal/{next:020}.wal")), torn).unwrap();
            let state = reopen(dir.path()).unwrap_or_else(|error| panic!("{torn:?}: {error}"));
            assert_eq!(state.entries.len(), 3, "{torn:?}");
        }
    }

    #[test]
    fn a_damaged_segment_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 3, 1);
        drop(storage);
        let path = last_segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[RECORD_HEADER_BYTES] ^= 0x01; // the format
        fs::write(&path, &bytes).unwrap();
        let error = reopen(dir.path()).unwrap_err();
        assert!(
            matches!(error, StorageError::Corrupt { offset: 0, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("segment header"), "{error}");
    }

    /// Segments written before headers and batches still load, their torn tail rule included,
    /// and the checkpoint after loading them is in the new format.
    #[test]
    fn a_segment_from_before_batches_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        fs::create_dir_all(&wal).unwrap();
        let mut bytes = Vec::new();
        encode_record(&mut bytes, KIND_HARD_STATE, &hard_state(2).encode_to_vec());
        let first = encode_log_write(1, &entries(1, 3, 1));
        encode_record(&mut bytes, KIND_LOG_WRITE, &first);
        let torn = encode_log_write(4, &entries(4, 5, 1));
        encode_record(&mut bytes, KIND_LOG_WRITE, &torn);
        bytes.truncate(bytes.len() - 3);
        fs::write(wal.join(format!("{:020}.wal", 1)), &bytes).unwrap();
        for reopening in 1..=2 {
            let state = reopen(dir.path()).unwrap();
            let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
            assert_eq!(indexes, vec![1, 2, 3], "reopening {reopening}");
            assert_eq!(state.hard_state, hard_state(2), "reopening {reopening}");
        }
        let rewritten = fs::read(last_segment(dir.path())).unwrap();
        assert_eq!(
            segment_header(&rewritten).unwrap(),
            Some(SEGMENT_HEADER_BYTES)
        );
    }

    #[test]
    fn a_corrupt_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("snapshot"), b"PAXKVSN1garbage-garbage").unwrap();
        let error = reopen(dir.path()).unwrap_err();
        assert!(error.to_string().contains("snapshot"), "{error}");
    }
}
