//! The write-ahead log on disk: `DiskStorage`, its segments under `wal/`, appends, syncs,
//! checkpoints (a new segment that starts from the durable state, so older segments can go)
//! and recovery, which tells a torn last append from corruption and leaves the log it read
//! where it is (appends go to a new segment that starts with the hard state). Record framing is in
//! `record`, payloads in `payload`, the snapshot file in `snapshot_file`.
//!
//! A snapshot taken locally is written by a thread of its own while appends and syncs go on:
//! writing a large state takes longer than an election timeout, and the log must not wait for
//! it. The log it covers stays on disk until the file is durable; then a marker and the hard
//! state are appended, and after the next sync the oldest segments go, as many as hold nothing
//! past the snapshot (a prefix: a later segment may truncate what an earlier one holds, so a
//! segment never goes while one before it stays). No entry is rewritten, and memory holds no
//! copy of the log: the replica's is the only one. A snapshot installed from a peer replaces
//! the log: it is written before anything else, and a checkpoint starts a new segment.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use paxkv_core::{DurableState, LogWrite, SnapshotEnd, SnapshotPart, SnapshotWrite};
use paxkv_proto::peer::{HardState, SnapshotMeta};
use prost::Message;

use super::payload::{
    add_log_write, decode_log_write, decode_snapshot_marker, encode_snapshot_marker,
};
use super::record::{
    all_zero, decode_record, encode_record, is_torn_tail, read_batch, segment_header, Batch,
    Damage, RecordError, KIND_HARD_STATE, KIND_LOG_WRITE, KIND_SEGMENT_HEADER, KIND_SNAPSHOT,
    SEGMENT_FORMAT, SEGMENT_HEADER_BYTES,
};
use super::{io_error, snapshot_file, sync_directory, Storage, StorageError};

/// A segment is closed and a new one started once it passes this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The open segment's file is allocated ahead of its appends, this much at a time. An append
/// into allocated space leaves the file's size as it is, so its sync writes the data and not
/// the inode as well: on this project's test machine a small append and its sync took 94 us
/// into allocated space against 130 us growing the file. Recovery reads the zeros after the
/// last append of the last segment as the end of the log; a closed segment is cut to its
/// appends.
const SEGMENT_ALLOCATION_STEP: u64 = 4 * 1024 * 1024;

/// The real storage: files under a data directory.
pub struct DiskStorage {
    dir: PathBuf,
    wal_dir: PathBuf,
    /// What is durable, mirrored in memory so a new segment can start from a checkpoint. The
    /// snapshot's bytes are not kept here (only its metadata): they are in their own file.
    /// Entries are kept only while the log is recovered and while a checkpoint is written.
    mirror: DurableState,
    segment: Option<OpenSegment>,
    /// The highest log index each segment written since the last checkpoint holds (0: none).
    segment_last_index: std::collections::BTreeMap<u64, u64>,
    /// The local snapshot being written by its own thread, if any.
    writing: Option<SnapshotInWriting>,
    /// What that thread has been handed and not written yet.
    snapshot_backlog: super::SnapshotBacklog,
    /// A durable snapshot whose covered segments go after the next sync.
    trim_after_sync: Option<u64>,
    /// The thread removing covered segments, if any (see `drop_segments_covered_by`).
    removing: Option<std::thread::JoinHandle<Result<(), StorageError>>>,
    /// Whether the open segment has appends not yet synced.
    unsynced: bool,
    next_segment_number: u64,
    sync_count: u64,
    /// While a segment is replayed: the highest log index it wrote so far.
    replayed_last_index: u64,
    /// The snapshot the last `load` read, decoded while the log was replayed.
    decoded_snapshot: Option<paxkv_core::KvStore>,
}

/// The segment appends go to.
struct OpenSegment {
    path: PathBuf,
    file: File,
    /// Bytes written: where the next append goes.
    bytes: u64,
    /// The file's allocated size (at least `bytes`); zeros after `bytes`.
    allocated: u64,
    /// False once the file system refused to allocate ahead: the file then grows with each
    /// append.
    allocate_ahead: bool,
}

impl OpenSegment {
    /// Makes room for `length` more bytes ahead of time, if the file system can.
    fn allocate_for(&mut self, length: u64) -> Result<(), StorageError> {
        let end = self.bytes + length;
        if !self.allocate_ahead || end <= self.allocated {
            return Ok(());
        }
        let to = end.max(self.allocated + SEGMENT_ALLOCATION_STEP);
        match allocate(&self.file, self.allocated, to - self.allocated) {
            Ok(()) => self.allocated = to,
            Err(error) if error.kind() == std::io::ErrorKind::Unsupported => {
                tracing::debug!(%error, "the file system cannot allocate the log ahead");
                self.allocate_ahead = false;
            }
            Err(error) => return Err(io_error(&self.path)(error)),
        }
        Ok(())
    }
}

/// Allocates `length` bytes of `file` from `offset` (reading as zeros), growing its size.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn allocate(file: &File, offset: u64, length: u64) -> std::io::Result<()> {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), offset, length).map_err(
        |errno| match errno {
            rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS => {
                std::io::Error::new(std::io::ErrorKind::Unsupported, errno)
            }
            errno => errno.into(),
        },
    )
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn allocate(_file: &File, _offset: u64, _length: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// What follows the log's end in the last segment.
enum Tail {
    /// An append torn by a crash, from this offset.
    Torn(u64),
    /// Zeros allocated ahead of appends, from this offset.
    Allocated(u64),
}

/// A local snapshot being written by its own thread (`snapshot_file::write`, or
/// `write_streamed` for one handed over in parts). The thread returns whether it replaced the
/// snapshot (not if abandoned).
struct SnapshotInWriting {
    meta: SnapshotMeta,
    /// Where the bytes of a snapshot handed over in parts go, until its last part: dropping it
    /// before then abandons the snapshot.
    stream: Option<std::sync::mpsc::Sender<snapshot_file::Streamed>>,
    thread: std::thread::JoinHandle<Result<bool, StorageError>>,
}

impl Drop for DiskStorage {
    /// A snapshot being written is finished first (a node stopping cleanly leaves it durable;
    /// one still being handed over is abandoned); if this fails, the log it covers is still
    /// there.
    fn drop(&mut self) {
        if let Some(mut writing) = self.writing.take() {
            writing.stream = None;
            let _ = writing.thread.join();
        }
        let _ = self.finish_removing(true);
    }
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
            segment_last_index: std::collections::BTreeMap::new(),
            writing: None,
            snapshot_backlog: super::SnapshotBacklog::default(),
            trim_after_sync: None,
            removing: None,
            unsynced: false,
            next_segment_number: 1,
            sync_count: 0,
            replayed_last_index: 0,
            decoded_snapshot: None,
        })
    }

    pub(super) fn segment_paths(&self) -> Result<Vec<(u64, PathBuf)>, StorageError> {
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

    /// Starts a new segment holding a checkpoint of the durable state, then drops the older
    /// segments: the log never grows past what the last snapshot left.
    fn checkpoint(&mut self) -> Result<(), StorageError> {
        self.finish_removing(true)?;
        let old = self.segment_paths()?;
        self.open_new_segment()?;
        let mut batch = Batch::new();
        batch.record(KIND_HARD_STATE, &self.mirror.hard_state.encode_to_vec());
        if let Some((meta, _)) = &self.mirror.snapshot {
            batch.record(KIND_SNAPSHOT, &encode_snapshot_marker(meta, false));
        }
        if let Some(first) = self.mirror.entries.first() {
            add_log_write(&mut batch, first.index, &self.mirror.entries);
        }
        let last_index = self.mirror.entries.last().map_or(0, |entry| entry.index);
        self.append_and_sync(batch)?;
        self.segment_last_index.clear();
        self.segment_last_index
            .insert(self.next_segment_number - 1, last_index);
        for (_, path) in old {
            fs::remove_file(&path).map_err(io_error(&path))?;
        }
        sync_directory(&self.wal_dir)
    }

    /// After recovery: a new segment starts with the hard state and the snapshot's marker, the
    /// recovered log stays in the segments it was read from (`last_indexes`: the highest index
    /// each wrote), and those the snapshot covers go. Rewriting the whole log into the new
    /// segment instead cost a node restarted with 170,000 entries 110 ms.
    fn start_after_recovery(
        &mut self,
        last_indexes: std::collections::BTreeMap<u64, u64>,
    ) -> Result<(), StorageError> {
        self.open_new_segment()?;
        let mut batch = Batch::new();
        // The segments that go may hold the only copy of the hard state: the new one has it
        // first.
        batch.record(KIND_HARD_STATE, &self.mirror.hard_state.encode_to_vec());
        let snapshot_index = self.mirror.snapshot.as_ref().map(|(meta, _)| meta.index);
        if let Some((meta, _)) = &self.mirror.snapshot {
            batch.record(KIND_SNAPSHOT, &encode_snapshot_marker(meta, false));
        }
        self.append_and_sync(batch)?;
        self.segment_last_index.extend(last_indexes);
        if let Some(index) = snapshot_index {
            self.drop_segments_covered_by(index)?;
            self.finish_removing(true)?;
        }
        Ok(())
    }

    /// Once the local snapshot being written is durable (at once if `wait`, else only if its
    /// thread is done): appends its marker and the hard state, and lets the next sync drop the
    /// segments it covers. Waiting abandons a snapshot still being handed over in parts.
    fn finish_snapshot(&mut self, wait: bool) -> Result<(), StorageError> {
        let done = self
            .writing
            .as_ref()
            .is_some_and(|writing| wait || writing.thread.is_finished());
        if !done {
            return Ok(());
        }
        let mut writing = self.writing.take().expect("checked above");
        writing.stream = None;
        let replaced = writing
            .thread
            .join()
            .expect("the snapshot writer does not panic")?;
        if !replaced {
            return Ok(());
        }
        self.sync_count += 1;
        let mut batch = Batch::new();
        batch.record(KIND_HARD_STATE, &self.mirror.hard_state.encode_to_vec());
        batch.record(KIND_SNAPSHOT, &encode_snapshot_marker(&writing.meta, false));
        self.append(batch)?;
        self.trim_after_sync = Some(writing.meta.index);
        self.mirror.snapshot = Some((writing.meta, Vec::new()));
        Ok(())
    }

    /// Removes the oldest segments while each holds nothing past `index` (never the open one),
    /// on a thread of their own: unlinking a 64 MiB segment took up to 44 ms, and inline it
    /// held up the sync of every write waiting behind it (a fill's slowest puts). The order of
    /// removal stays oldest first, so a crash halfway leaves what recovery expects: covered
    /// segments from the oldest, which it drops again. While an earlier removal is still
    /// running, this one waits for the next sync.
    fn drop_segments_covered_by(&mut self, index: u64) -> Result<(), StorageError> {
        if !self.finish_removing(false)? {
            self.trim_after_sync = Some(self.trim_after_sync.map_or(index, |at| at.max(index)));
            return Ok(());
        }
        let open = self.next_segment_number - 1;
        let mut covered_paths = Vec::new();
        for (number, path) in self.segment_paths()? {
            let covered = self
                .segment_last_index
                .get(&number)
                .is_some_and(|last| *last <= index);
            if number == open || !covered {
                break;
            }
            self.segment_last_index.remove(&number);
            covered_paths.push(path);
        }
        if covered_paths.is_empty() {
            return Ok(());
        }
        let wal_dir = self.wal_dir.clone();
        let thread = std::thread::Builder::new()
            .name("segment-remover".into())
            .spawn(move || {
                for path in covered_paths {
                    fs::remove_file(&path).map_err(io_error(&path))?;
                }
                sync_directory(&wal_dir)
            })
            .map_err(io_error(&self.wal_dir))?;
        self.removing = Some(thread);
        Ok(())
    }

    /// Whether no removal of covered segments is running any more (waiting for one if
    /// `wait`); a removal that failed is reported here.
    fn finish_removing(&mut self, wait: bool) -> Result<bool, StorageError> {
        match &self.removing {
            None => return Ok(true),
            Some(thread) if !wait && !thread.is_finished() => return Ok(false),
            Some(_) => {}
        }
        let thread = self.removing.take().expect("checked above");
        thread.join().expect("the segment remover does not panic")?;
        Ok(true)
    }

    fn open_new_segment(&mut self) -> Result<(), StorageError> {
        // A closed segment ends with its last append: zeros after it would read as damage.
        if let Some(open) = self.segment.as_mut() {
            if open.allocated > open.bytes {
                open.file
                    .set_len(open.bytes)
                    .map_err(io_error(&open.path))?;
                open.allocated = open.bytes;
                self.unsynced = true;
            }
        }
        // What the old segment still holds unsynced must be durable before it stops being the
        // one `sync` reaches.
        self.sync_segment()?;
        let path = self
            .wal_dir
            .join(format!("{:020}.wal", self.next_segment_number));
        self.next_segment_number += 1;
        // Appends go at the offset written so far, not at the end of the file (which is
        // allocated ahead of them).
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
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
        file.write_all_at(&header, 0).map_err(io_error(&path))?;
        file.sync_data().map_err(io_error(&path))?;
        self.sync_count += 1;
        sync_directory(&self.wal_dir)?;
        let written = header.len() as u64;
        self.segment = Some(OpenSegment {
            path,
            file,
            bytes: written,
            allocated: written,
            allocate_ahead: true,
        });
        self.segment_last_index
            .insert(self.next_segment_number - 1, 0);
        Ok(())
    }

    fn append_and_sync(&mut self, batch: Batch) -> Result<(), StorageError> {
        self.append(batch)?;
        self.sync_segment()
    }

    fn sync_segment(&mut self) -> Result<(), StorageError> {
        if let (true, Some(open)) = (self.unsynced, self.segment.as_ref()) {
            open.file.sync_data().map_err(io_error(&open.path))?;
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
            .is_none_or(|open| open.bytes >= SEGMENT_BYTES_MAX);
        if rolling {
            self.open_new_segment()?;
        }
        let bytes_written = batch.finish();
        let open = self.segment.as_mut().expect("a segment is open");
        open.allocate_for(bytes_written.len() as u64)?;
        open.file
            .write_all_at(&bytes_written, open.bytes)
            .map_err(io_error(&open.path))?;
        open.bytes += bytes_written.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Replays one segment into the mirror. Returns where the log ends in the last segment if
    /// more bytes follow: a torn write, or zeros allocated ahead (`Tail`).
    fn replay_segment(&mut self, path: &Path, is_last: bool) -> Result<Option<Tail>, StorageError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(io_error(path))?;
        let replayed = match segment_header(&bytes) {
            Ok(Some(first_batch)) => self.replay_batches(&bytes, first_batch, is_last),
            Ok(None) => self.replay_records(&bytes).map(|()| bytes.len()),
            Err(damage) => Err(damage),
        };
        match replayed {
            Ok(end) if end < bytes.len() => Ok(Some(Tail::Allocated(end as u64))),
            Ok(_) => Ok(None),
            Err(Damage {
                torn_from: Some(cut),
                ..
            }) if is_last => Ok(Some(Tail::Torn(cut as u64))),
            Err(damage) => Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: damage.offset as u64,
                reason: damage.reason,
            }),
        }
    }

    /// Replays the batches of a segment from `offset`, each once all of it checked out. In the
    /// last segment, zeros to the end of the file are space allocated ahead: the end of the log.
    /// Returns where the appends end.
    fn replay_batches(
        &mut self,
        bytes: &[u8],
        mut offset: usize,
        is_last: bool,
    ) -> Result<usize, Damage> {
        while offset < bytes.len() {
            if is_last && all_zero(&bytes[offset..]) {
                break;
            }
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
        Ok(offset)
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
                if let Some(last) = write.entries.last() {
                    self.replayed_last_index = self.replayed_last_index.max(last.index);
                }
                self.mirror.apply_owned_log_write(write);
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
        // The snapshot file is read, checked and decoded by a thread of its own while the log
        // is replayed: at a million keys about 280 ms against up to 180 ms of replay (nothing
        // in the replay needs it before the end). Bytes that do not decode are left to
        // `Replica::new`, which refuses them.
        let dir = self.dir.clone();
        let reading = std::thread::Builder::new()
            .name("snapshot-reader".into())
            .spawn(move || {
                snapshot_file::read(&dir).map(|snapshot| {
                    snapshot.map(|(meta, bytes)| {
                        let decoded = paxkv_core::KvStore::decode_snapshot(&bytes).ok();
                        (meta, bytes, decoded)
                    })
                })
            })
            .map_err(io_error(&self.dir))?;
        self.mirror = DurableState::default();
        let segments = self.segment_paths()?;
        let last = segments.len().saturating_sub(1);
        let mut last_indexes = std::collections::BTreeMap::new();
        for (position, (number, path)) in segments.iter().enumerate() {
            self.next_segment_number = number + 1;
            self.replayed_last_index = 0;
            // The last segment is cut to its appends: only the open segment may have zeros
            // after them (a crash while the next checkpoint starts must not leave a segment
            // that is no longer the last one with such zeros).
            let end = match self.replay_segment(path, position == last)? {
                Some(Tail::Torn(torn_at)) => {
                    tracing::warn!(path = %path.display(), offset = torn_at, "cutting off a torn write at the end of the log");
                    Some(torn_at)
                }
                Some(Tail::Allocated(end)) => Some(end),
                None => None,
            };
            if let Some(end) = end {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_error(path))?;
                file.set_len(end).map_err(io_error(path))?;
                file.sync_all().map_err(io_error(path))?;
            }
            last_indexes.insert(*number, self.replayed_last_index);
        }
        let snapshot = reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?
            .map(|(meta, bytes, decoded)| {
                self.decoded_snapshot = decoded;
                (meta, bytes)
            });
        self.mirror.snapshot = snapshot
            .as_ref()
            .map(|(meta, _)| (meta.clone(), Vec::new()));
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
            return Err(StorageError::LogGap {
                path: self.wal_dir.clone(),
                snapshot_index,
                first_index: self.mirror.entries[0].index,
            });
        }
        self.start_after_recovery(last_indexes)?;
        Ok(DurableState {
            hard_state: self.mirror.hard_state.clone(),
            snapshot,
            entries: std::mem::take(&mut self.mirror.entries),
        })
    }

    fn write(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError> {
        self.finish_snapshot(false)?;
        let installed = snapshot.filter(|write| write.replaces_log);
        if let Some(write) = installed {
            // An older snapshot must not land after this one.
            self.finish_snapshot(true)?;
            snapshot_file::write(&self.dir, write)?;
            self.sync_count += 1;
        } else if let Some(write) = snapshot {
            if self.writing.is_some() {
                // Still writing the last one: waiting would stall the log for as long. This
                // one is skipped; the log it covers stays on disk until the next one.
                tracing::debug!(
                    index = write.meta.index,
                    "skipping a snapshot while the last one is still being written"
                );
            } else {
                let (dir, write) = (self.dir.clone(), write.clone());
                let meta = write.meta.clone();
                let thread = std::thread::Builder::new()
                    .name("snapshot-writer".into())
                    .spawn(move || snapshot_file::write(&dir, &write).map(|()| true))
                    .map_err(io_error(&self.dir))?;
                self.writing = Some(SnapshotInWriting {
                    meta,
                    stream: None,
                    thread,
                });
            }
        }
        let mut batch = Batch::new();
        if let Some(hard_state) = hard_state {
            batch.record(KIND_HARD_STATE, &hard_state.encode_to_vec());
        }
        if let Some(write) = installed {
            let marker = encode_snapshot_marker(&write.meta, write.replaces_log);
            batch.record(KIND_SNAPSHOT, &marker);
        }
        if let Some(write) = log_write {
            add_log_write(&mut batch, write.from_index, &write.entries);
        }
        if !batch.is_empty() {
            self.append(batch)?;
        }
        if let Some(hard_state) = hard_state {
            self.mirror.hard_state = hard_state.clone();
        }
        if let Some(last) = log_write.and_then(|write| write.entries.last()) {
            let open = self.next_segment_number - 1;
            let highest = self.segment_last_index.entry(open).or_insert(0);
            *highest = (*highest).max(last.index);
        }
        if let Some(write) = installed {
            // The installed state replaces the whole log: the new segment holds what this
            // write appended after it, and nothing older survives.
            self.mirror.snapshot = Some((write.meta.clone(), Vec::new()));
            self.mirror.entries = log_write
                .map(|write| write.entries.clone())
                .unwrap_or_default();
            self.checkpoint()?;
            self.mirror.entries = Vec::new();
        }
        Ok(())
    }

    fn write_snapshot_part(&mut self, part: SnapshotPart) -> Result<(), StorageError> {
        self.finish_snapshot(false)?;
        if part.first {
            if self.writing.is_some() {
                // As for a whole one: the log it covers stays on disk until the next one.
                tracing::debug!(
                    index = part.meta.index,
                    "skipping a snapshot while the last one is still being written"
                );
                return Ok(());
            }
            let (sender, receiver) = std::sync::mpsc::channel();
            let (dir, meta) = (self.dir.clone(), part.meta.clone());
            let backlog = self.snapshot_backlog.clone();
            let thread = std::thread::Builder::new()
                .name("snapshot-writer".into())
                .spawn(move || snapshot_file::write_streamed(&dir, &meta, receiver, &backlog))
                .map_err(io_error(&self.dir))?;
            self.writing = Some(SnapshotInWriting {
                meta: part.meta.clone(),
                stream: Some(sender),
                thread,
            });
        }
        // Parts of a snapshot skipped above, or of one already ended, go nowhere.
        let Some(writing) = self.writing.as_mut().filter(|w| w.meta == part.meta) else {
            return Ok(());
        };
        let Some(stream) = &writing.stream else {
            return Ok(());
        };
        // A send fails only once the writer stopped on an error, which joining it reports.
        for piece in part.pieces {
            let bytes = piece.len();
            self.snapshot_backlog.handed_over(bytes);
            if stream.send(snapshot_file::Streamed::Bytes(piece)).is_err() {
                self.snapshot_backlog.written(bytes);
            }
        }
        match part.end {
            Some(SnapshotEnd::Complete) => {
                let _ = stream.send(snapshot_file::Streamed::Complete);
                writing.stream = None;
            }
            Some(SnapshotEnd::Abandoned) => writing.stream = None,
            None => {}
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.sync_segment()?;
        if let Some(index) = self.trim_after_sync.take() {
            self.drop_segments_covered_by(index)?;
        }
        Ok(())
    }

    fn sync_count(&self) -> u64 {
        self.sync_count
    }

    fn take_decoded_snapshot(&mut self) -> Option<paxkv_core::KvStore> {
        self.decoded_snapshot.take()
    }

    fn snapshot_backlog(&self) -> super::SnapshotBacklog {
        self.snapshot_backlog.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use paxkv_proto::client::PutRequest;
    use paxkv_proto::peer::{command::Op, entry::Kind, Ballot, Command, Entry, LogEntry};

    use super::*;
    use crate::storage::payload::{encode_log_write, LOG_RECORD_BYTES_TARGET};
    use crate::storage::record::{BATCH_MARKER_BYTES, RECORD_BYTES_MAX, RECORD_HEADER_BYTES};
    use crate::storage::test_support::{
        entries, last_segment, local_snapshot, reopen, two_appends, write,
    };

    #[test]
    fn writes_truncations_and_hard_state_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        let hard_state = HardState {
            promised: Some(Ballot::new(3, 2)),
            commit_index: 2,
            ..HardState::default()
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
    fn a_snapshot_drops_the_segments_it_covers_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 5, 1);
        storage.open_new_segment().unwrap();
        write(&mut storage, 6, 10, 1);
        storage.open_new_segment().unwrap();
        assert_eq!(storage.segment_paths().unwrap().len(), 3);
        storage
            .persist(None, Some(&local_snapshot(7)), None)
            .unwrap();
        storage.finish_snapshot(true).unwrap();
        storage.sync().unwrap();
        // Covered segments go on their own thread.
        assert!(storage.finish_removing(true).unwrap());
        // The first segment (1..=5) is covered; the second holds 8..=10 too; the open one stays.
        let left: Vec<u64> = storage
            .segment_paths()
            .unwrap()
            .into_iter()
            .map(|(number, _)| number)
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        let state = reopen(dir.path()).unwrap();
        assert_eq!(state.snapshot.as_ref().unwrap().1, b"state");
        let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, vec![8, 9, 10]);
    }

    /// Recovery leaves the log in the segments it read (no rewrite) and starts a new one with
    /// the hard state: when the snapshot file covers a segment that holds the only copy of the
    /// hard state (the node stopped before the snapshot's marker was appended), the segment
    /// goes and the hard state stays.
    #[test]
    fn recovery_keeps_the_log_where_it_is_and_the_hard_state_with_the_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        let hard_state = HardState {
            promised: Some(Ballot::new(7, 3)),
            commit_index: 5,
            ..HardState::default()
        };
        storage.persist(Some(&hard_state), None, None).unwrap();
        write(&mut storage, 1, 5, 1);
        drop(storage);
        let first = last_segment(dir.path());
        // A restart reads 1..=5 (cutting the space allocated after them) and appends 6..=8 to
        // a new segment; the first one is not written again.
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        assert_eq!(storage.load().unwrap().entries.len(), 5);
        let first_bytes = fs::read(&first).unwrap();
        write(&mut storage, 6, 8, 1);
        drop(storage);
        assert!(
            fs::read(&first).unwrap() == first_bytes,
            "the first segment changed"
        );
        assert_ne!(last_segment(dir.path()), first);
        let state = reopen(dir.path()).unwrap();
        let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, (1..=8).collect::<Vec<_>>());
        assert_eq!(state.hard_state, hard_state);
        // A snapshot at 8 made durable by a node that stopped before its marker: the next
        // start drops every segment it covers, and the hard state survives in the new one.
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        storage
            .persist(None, Some(&local_snapshot(8)), None)
            .unwrap();
        drop(storage);
        let state = reopen(dir.path()).unwrap();
        assert!(state.entries.is_empty(), "{:?}", state.entries);
        assert!(!first.exists(), "the covered segment is still there");
        let state = reopen(dir.path()).unwrap();
        assert_eq!(state.hard_state, hard_state);
        assert_eq!(state.snapshot.as_ref().unwrap().0.index, 8);
    }

    /// Until the snapshot's own thread is done, no segment goes: a crash before its file is
    /// durable must find the log it covers.
    #[test]
    fn a_snapshot_being_written_leaves_the_log_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 5, 1);
        storage.open_new_segment().unwrap();
        storage
            .persist(None, Some(&local_snapshot(5)), None)
            .unwrap();
        // Its thread may well be done by now; what counts is that nothing was dropped before
        // `finish_snapshot` saw it done.
        assert!(storage.writing.is_some() || storage.trim_after_sync.is_some());
        assert_eq!(storage.segment_paths().unwrap().len(), 2);
        storage.finish_snapshot(true).unwrap();
        storage.sync().unwrap();
        // Covered segments go on their own thread.
        assert!(storage.finish_removing(true).unwrap());
        assert_eq!(storage.segment_paths().unwrap().len(), 1);
    }

    /// The parts of a snapshot handed over as it is encoded.
    fn part(index: u64, first: bool, pieces: &[&[u8]], end: Option<SnapshotEnd>) -> SnapshotPart {
        SnapshotPart {
            meta: local_snapshot(index).meta,
            first,
            pieces: pieces.iter().map(|piece| piece.to_vec()).collect(),
            end,
        }
    }

    /// A snapshot handed over in parts (larger than a write slice, so synced in slices on the
    /// way) is the snapshot once its last part is in, with the bytes of every part in order;
    /// the log it covers goes then, not before.
    #[test]
    fn a_snapshot_in_parts_is_written_as_it_comes_and_counts_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 5, 1);
        storage.open_new_segment().unwrap();
        let big = vec![9u8; 700 * 1024];
        storage
            .write_snapshot_part(part(5, true, &[b"ab", &big], None))
            .unwrap();
        storage
            .write_snapshot_part(part(5, false, &[], None))
            .unwrap();
        storage.sync().unwrap();
        // Not complete: the writer waits for more, nothing is the snapshot yet.
        assert!(storage.writing.as_ref().unwrap().stream.is_some());
        assert!(!dir.path().join("snapshot").exists());
        // What it was handed leaves the backlog as it is written, while it waits for more.
        let backlog = storage.snapshot_backlog();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while backlog.bytes() > 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(backlog.bytes(), 0, "the writer counted what it wrote");
        assert!(!storage.writing.as_ref().unwrap().thread.is_finished());
        storage
            .write_snapshot_part(part(5, false, &[b"cd", b"e"], Some(SnapshotEnd::Complete)))
            .unwrap();
        storage.finish_snapshot(true).unwrap();
        assert_eq!(backlog.bytes(), 0);
        storage.sync().unwrap();
        assert!(storage.finish_removing(true).unwrap());
        assert_eq!(storage.segment_paths().unwrap().len(), 1);
        drop(storage);
        let state = reopen(dir.path()).unwrap();
        let (meta, bytes) = state.snapshot.unwrap();
        assert_eq!(meta.index, 5);
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"cde");
        assert!(bytes == expected, "the snapshot's bytes differ");
        assert!(state.entries.is_empty());
    }

    /// A snapshot abandoned before its last part (the state was replaced), or cut short by
    /// the node stopping, never becomes the snapshot: the last one and the log stay, and the
    /// parts of a snapshot that came while another was written go nowhere.
    #[test]
    fn a_snapshot_in_parts_that_never_completes_leaves_the_last_one_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 8, 1);
        storage
            .persist(None, Some(&local_snapshot(3)), None)
            .unwrap();
        // Skipped: the snapshot at 3 may still be being written.
        let skipped = storage.writing.is_some();
        storage
            .write_snapshot_part(part(4, true, &[b"skip"], Some(SnapshotEnd::Complete)))
            .unwrap();
        storage.finish_snapshot(true).unwrap();
        storage.sync().unwrap();
        storage
            .write_snapshot_part(part(6, true, &[b"half"], None))
            .unwrap();
        storage
            .write_snapshot_part(part(6, false, &[b"way"], Some(SnapshotEnd::Abandoned)))
            .unwrap();
        storage.finish_snapshot(true).unwrap();
        storage
            .write_snapshot_part(part(7, true, &[b"cut short"], None))
            .unwrap();
        storage.sync().unwrap();
        drop(storage);
        let state = reopen(dir.path()).unwrap();
        let (meta, bytes) = state.snapshot.unwrap();
        let expected_index = if skipped { 3 } else { 4 };
        assert_eq!(meta.index, expected_index);
        if skipped {
            assert_eq!(bytes, b"state");
        }
        let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, ((expected_index + 1)..=8).collect::<Vec<_>>());
        assert!(!dir.path().join("snapshot.tmp").exists());
    }

    /// A snapshot installed from a peer while a local one is still being handed over
    /// abandons the local one (which encoded a state now replaced) instead of waiting for it.
    #[test]
    fn an_installed_snapshot_abandons_the_local_one_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 4, 1);
        storage
            .write_snapshot_part(part(3, true, &[b"local"], None))
            .unwrap();
        let installed = SnapshotWrite {
            replaces_log: true,
            data: std::sync::Arc::new(b"installed".to_vec().into()),
            ..local_snapshot(20)
        };
        storage.persist(None, Some(&installed), None).unwrap();
        assert!(storage.writing.is_none());
        // A late end of the abandoned one changes nothing.
        storage
            .write_snapshot_part(part(3, false, &[], Some(SnapshotEnd::Complete)))
            .unwrap();
        storage.sync().unwrap();
        drop(storage);
        let state = reopen(dir.path()).unwrap();
        let (meta, bytes) = state.snapshot.unwrap();
        assert_eq!((meta.index, bytes.as_slice()), (20, &b"installed"[..]));
    }

    /// A segment whose entries a snapshot covers stays while an earlier one stays: the later
    /// one may have truncated the earlier one's tail, which would come back without it.
    #[test]
    fn covered_segments_go_only_from_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 10, 1);
        storage.open_new_segment().unwrap();
        write(&mut storage, 4, 8, 2); // replaces 4..=10 with 4..=8 of round 2
        storage.open_new_segment().unwrap();
        storage
            .persist(None, Some(&local_snapshot(8)), None)
            .unwrap();
        storage.finish_snapshot(true).unwrap();
        storage.sync().unwrap();
        assert_eq!(
            storage.segment_paths().unwrap().len(),
            3,
            "the first holds 9 and 10"
        );
        drop(storage);
        let state = reopen(dir.path()).unwrap();
        assert!(state.entries.is_empty(), "{:?}", state.entries);
    }

    /// Appends go into space allocated ahead (the file is longer than they are), a restart
    /// reads the zeros after them as the end of the log, and appends after the restart are
    /// read back too.
    #[test]
    fn appends_go_into_space_allocated_ahead_and_the_zeros_after_them_end_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_appends(dir.path());
        let appended = last_segment_bytes(dir.path()) as u64;
        let length = fs::metadata(&path).unwrap().len();
        assert!(
            length > appended && length >= SEGMENT_ALLOCATION_STEP,
            "{length} bytes allocated for {appended} appended"
        );
        let state = reopen(dir.path()).unwrap();
        let indexes: Vec<u64> = state.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, (1..=6).collect::<Vec<_>>());
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 7, 9, 2);
        drop(storage);
        assert_eq!(reopen(dir.path()).unwrap().entries.len(), 9);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_appends(dir.path());
        let length = last_segment_bytes(dir.path()) as u64;
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
        let path = two_appends(dir.path());
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
        let path = two_appends(dir.path());
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
            while !all_zero(&bytes[offset..]) {
                let (records, end) = read_batch(&bytes, offset).unwrap();
                for record in records {
                    largest = largest.max(RECORD_HEADER_BYTES + record.payload.len());
                }
                offset = end;
            }
        }
        largest
    }

    /// Bytes the appends to the last segment hold: where the next append starts (the file may
    /// be longer, allocated ahead).
    fn last_segment_bytes(dir: &Path) -> usize {
        let bytes = fs::read(last_segment(dir)).unwrap();
        let mut offset = segment_header(&bytes).unwrap().unwrap();
        while !all_zero(&bytes[offset..]) {
            offset = read_batch(&bytes, offset).unwrap().1;
        }
        offset
    }

    fn hard_state(commit_index: u64) -> HardState {
        HardState {
            promised: Some(Ballot::new(1, 1)),
            commit_index,
            ..HardState::default()
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
            // A segment is cut to its appends before the next one starts.
            let appended = last_segment_bytes(dir.path()) as u64;
            let previous = OpenOptions::new()
                .write(true)
                .open(last_segment(dir.path()));
            previous.unwrap().set_len(appended).unwrap();
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

    /// Records that all check out but leave the log short of the snapshot it follows (here the
    /// snapshot file was lost after a checkpoint dropped the log it covered) are refused.
    #[test]
    fn a_log_that_does_not_follow_the_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = DiskStorage::open(dir.path()).unwrap();
        storage.load().unwrap();
        write(&mut storage, 1, 5, 1);
        storage.open_new_segment().unwrap();
        write(&mut storage, 6, 10, 1);
        storage
            .persist(None, Some(&local_snapshot(7)), None)
            .unwrap();
        storage.finish_snapshot(true).unwrap();
        storage.sync().unwrap();
        drop(storage);
        fs::remove_file(dir.path().join("snapshot")).unwrap();
        let error = reopen(dir.path()).unwrap_err();
        assert!(
            matches!(
                error,
                StorageError::LogGap {
                    snapshot_index: 0,
                    first_index: 8,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("refusing to start"), "{error}");
    }
}
