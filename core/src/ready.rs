//! What the replica hands its caller, as types whose use follows the one order that keeps the
//! replica's promises. This is the only description of that order; the crate page and the
//! server's node loop point here.
//!
//! The caller (a node loop, a simulator, or the in-memory test cluster) owns all IO. It feeds
//! the replica with `tick`, `step`, `propose` and `read`, each with the time the input arrived,
//! and then, while [`Replica::has_ready`](crate::Replica::has_ready):
//!
//! 1. takes a [`Ready`] with [`Replica::ready`](crate::Replica::ready);
//! 2. sends [`Ready::take_messages`] (they promise nothing durable, so they may leave before the
//!    sync) and delivers [`Ready::take_responses`] to clients (answers come from committed
//!    entries, durable on a quorum, and from reads of them: none depends on this ready's sync);
//! 3. writes [`Ready::take_persist`] (snapshot, then hard state, then log write) and syncs it.
//!    While the sync runs it may keep feeding inputs and take
//!    [`Replica::progress_while_persisting`](crate::Replica::progress_while_persisting), whose
//!    messages and answers may leave at once;
//! 4. hands the ready back with [`Replica::advance`](crate::Replica::advance), which returns
//!    [`AfterPersist`]: the messages that promise durability (promises, acknowledgements of
//!    accepted entries, the last snapshot acknowledgement). They must never leave before step 3's
//!    sync returned, and `advance` is the only way to get them.
//!
//! Inputs that arrive while a ready is being persisted are gathered into the next one, which is
//! how group commit falls out: one sync covers everything that arrived during the previous one.
//! Only one ready is outstanding at a time.

use paxkv_proto::client::client_response::Body as Response;
use paxkv_proto::peer::{HardState, LogEntry, PeerMessage, SnapshotMeta};

use crate::log::LogWrite;
use crate::types::{NodeId, RequestId};

/// A message for one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub to: NodeId,
    pub message: PeerMessage,
}

/// The bytes of an encoded snapshot, in pieces of at most `SnapshotBytes::PIECE_BYTES`: a
/// large state grows by a piece at a time, never by copying all it has into a buffer twice
/// the size (at a million keys that copy alone stopped the node loop for tens of ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotBytes {
    pieces: Vec<Vec<u8>>,
    len: usize,
}

impl SnapshotBytes {
    pub const PIECE_BYTES: usize = 1024 * 1024;

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter().map(Vec::as_slice)
    }

    /// The piece to append to: one with room left, a new one otherwise.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        let full = self
            .pieces
            .last()
            .is_none_or(|piece| piece.len() >= Self::PIECE_BYTES);
        if full {
            self.pieces
                .push(Vec::with_capacity(Self::PIECE_BYTES * 9 / 8));
        }
        self.pieces.last_mut().expect("pushed above")
    }

    /// Counts what was appended to the tail since the last call (`tail` hands out the buffer).
    pub fn update_len(&mut self) {
        self.len = self.pieces.iter().map(Vec::len).sum();
    }

    /// A copy of bytes `range`.
    pub fn copy_range(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let mut out = Vec::with_capacity(range.len());
        let mut start = 0;
        for piece in &self.pieces {
            let end = start + piece.len();
            if end > range.start && start < range.end {
                let from = range.start.max(start) - start;
                let to = range.end.min(end) - start;
                out.extend_from_slice(&piece[from..to]);
            }
            start = end;
        }
        out
    }

    /// All of it in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.copy_range(0..self.len)
    }

    /// Takes every piece (the last one gives back the room it has left: a queue of them may
    /// wait to be written).
    pub fn take_pieces(&mut self) -> Vec<Vec<u8>> {
        let mut taken = std::mem::take(&mut self.pieces);
        self.len = 0;
        if let Some(last) = taken.last_mut() {
            last.shrink_to_fit();
        }
        taken
    }
}

impl From<Vec<u8>> for SnapshotBytes {
    fn from(bytes: Vec<u8>) -> SnapshotBytes {
        let len = bytes.len();
        SnapshotBytes {
            pieces: vec![bytes],
            len,
        }
    }
}

/// A snapshot to persist. `replaces_log`: it was installed from a peer and replaces the whole
/// log; otherwise it was taken locally and the log up to `meta.index` may be dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotWrite {
    pub meta: SnapshotMeta,
    /// Shared with the transfers that send the same snapshot.
    pub data: std::sync::Arc<SnapshotBytes>,
    pub replaces_log: bool,
}

/// How a snapshot handed to storage in parts ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotEnd {
    /// Every byte has been handed over: the snapshot may be made durable.
    Complete,
    /// The state it encoded was replaced (a snapshot from a peer was installed): what was
    /// handed over must never become the snapshot.
    Abandoned,
}

/// Part of a snapshot taken locally, handed to storage while it is still being encoded, so that
/// no node ever holds the whole encoding in memory (130 MB at a million keys, on top of the
/// state it encodes). The parts of one snapshot come in order, in successive readies, the
/// first with `first` set, the last with `end` set. Storage may skip a snapshot (say, while it
/// still writes the last one): then it skips every part of it. Nothing may be made durable as
/// the snapshot before the `Complete` part; the log it covers stays until then.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPart {
    pub meta: SnapshotMeta,
    pub first: bool,
    /// The next bytes of the snapshot, in order.
    pub pieces: Vec<Vec<u8>>,
    pub end: Option<SnapshotEnd>,
}

/// Puts a snapshot handed over in parts back together, for storage that keeps it whole (the
/// simulator's disk, the in-memory test cluster).
#[derive(Debug, Clone, Default)]
pub struct SnapshotAssembly {
    under_way: Option<(SnapshotMeta, Vec<u8>)>,
}

impl SnapshotAssembly {
    /// Takes one part; returns the snapshot once its last part is in. A first part drops any
    /// snapshot left incomplete; a part of no snapshot under way is ignored (`skip`: the
    /// storage skips this snapshot).
    pub fn add(&mut self, part: &SnapshotPart, skip: bool) -> Option<SnapshotWrite> {
        if part.first {
            self.under_way = (!skip).then(|| (part.meta.clone(), Vec::new()));
        }
        let (meta, bytes) = self.under_way.as_mut()?;
        if *meta != part.meta {
            return None;
        }
        for piece in &part.pieces {
            bytes.extend_from_slice(piece);
        }
        match part.end? {
            SnapshotEnd::Abandoned => {
                self.under_way = None;
                None
            }
            SnapshotEnd::Complete => {
                let (meta, bytes) = self.under_way.take().expect("checked above");
                Some(SnapshotWrite {
                    meta,
                    data: std::sync::Arc::new(bytes.into()),
                    replaces_log: false,
                })
            }
        }
    }

    /// Whether a snapshot is being put together.
    pub fn in_progress(&self) -> bool {
        self.under_way.is_some()
    }

    /// Forgets the snapshot under way (a crash, or an installed snapshot replacing it).
    pub fn clear(&mut self) {
        self.under_way = None;
    }
}

/// What one ready asks the caller to write and sync, applied by storage in field order:
/// the part of a local snapshot, the installed snapshot, then the hard state, then the log write.
#[derive(Debug, Default)]
pub struct Persist {
    /// Part of a snapshot taken locally (see `SnapshotPart`).
    pub snapshot_part: Option<SnapshotPart>,
    /// A whole snapshot: one installed from a peer, or one taken locally while peers waited
    /// for it too (held whole for them anyway, it is not handed over in parts).
    pub snapshot: Option<SnapshotWrite>,
    pub hard_state: Option<HardState>,
    pub log_write: Option<LogWrite>,
}

impl Persist {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.log_write.is_none()
            && self.snapshot_part.is_none()
    }
}

/// Everything the caller must do after the last turn, in the order the module page gives.
#[derive(Debug)]
pub struct Ready {
    number: u64,
    persist: Persist,
    persist_taken: bool,
    messages: Vec<Outgoing>,
    /// Leave only through `Replica::advance`, after the sync.
    messages_after_persist: Vec<Outgoing>,
    committed: Vec<LogEntry>,
    committed_count: u64,
    responses: Vec<(RequestId, Response)>,
}

impl Ready {
    pub(crate) fn new(
        number: u64,
        persist: Persist,
        messages: Vec<Outgoing>,
        messages_after_persist: Vec<Outgoing>,
        (committed, committed_count): (Vec<LogEntry>, u64),
        responses: Vec<(RequestId, Response)>,
    ) -> Ready {
        Ready {
            number,
            persist,
            persist_taken: false,
            messages,
            messages_after_persist,
            committed,
            committed_count,
            responses,
        }
    }

    /// How many entries were applied to the state machine for this ready.
    pub fn committed_count(&self) -> u64 {
        self.committed_count
    }

    /// Which ready this is (they are numbered from 1 in the order they were taken).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Whether anything must be written and synced before `advance`.
    pub fn needs_persist(&self) -> bool {
        !self.persist.is_empty()
    }

    /// Messages that may leave at once.
    pub fn take_messages(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.messages)
    }

    /// Answers for clients, each under the request id the caller gave its input.
    pub fn take_responses(&mut self) -> Vec<(RequestId, Response)> {
        std::mem::take(&mut self.responses)
    }

    /// What must be written and synced before the ready is handed back to `advance`.
    pub fn take_persist(&mut self) -> Persist {
        self.persist_taken = true;
        std::mem::take(&mut self.persist)
    }

    /// Entries applied to the state machine for this ready, in log order; empty unless
    /// `ReplicaConfig::report_committed_entries` asks for them.
    pub fn committed(&self) -> &[LogEntry] {
        &self.committed
    }

    pub fn take_committed(&mut self) -> Vec<LogEntry> {
        std::mem::take(&mut self.committed)
    }

    /// Consumed by `Replica::advance`: what may leave only now that the sync is done.
    pub(crate) fn finish(self) -> (u64, AfterPersist) {
        assert!(
            self.persist_taken || self.persist.is_empty(),
            "ready {} handed back to advance() without taking what it asked to persist",
            self.number
        );
        let after = AfterPersist {
            messages: self.messages_after_persist,
        };
        (self.number, after)
    }
}

/// What `Replica::advance` gives back: messages that promise durability, now free to leave.
#[derive(Debug, Default)]
pub struct AfterPersist {
    messages: Vec<Outgoing>,
}

impl AfterPersist {
    pub fn take_messages(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.messages)
    }
}

/// What `Replica::progress_while_persisting` gives back: output that depends on nothing the
/// running sync writes, so it leaves at once.
#[derive(Debug, Default)]
pub struct WhilePersisting {
    messages: Vec<Outgoing>,
    responses: Vec<(RequestId, Response)>,
}

impl WhilePersisting {
    pub(crate) fn new(
        messages: Vec<Outgoing>,
        responses: Vec<(RequestId, Response)>,
    ) -> WhilePersisting {
        WhilePersisting {
            messages,
            responses,
        }
    }

    pub fn take_messages(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.messages)
    }

    pub fn take_responses(&mut self) -> Vec<(RequestId, Response)> {
        std::mem::take(&mut self.responses)
    }
}

/// What the caller recovered from durable storage.
#[derive(Debug, Clone, Default)]
pub struct DurableState {
    pub hard_state: HardState,
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// Contiguous entries after the snapshot point.
    pub entries: Vec<LogEntry>,
}

impl DurableState {
    /// Applies a log write as storage must: the durable suffix from `from_index` is replaced.
    pub fn apply_log_write(&mut self, write: &LogWrite) {
        self.replace_log_from(write.from_index, write.entries.iter().cloned());
    }

    /// `apply_log_write` for a write the caller gives up: its entries move, not copied.
    pub fn apply_owned_log_write(&mut self, write: LogWrite) {
        self.replace_log_from(write.from_index, write.entries);
    }

    fn replace_log_from(&mut self, from_index: u64, entries: impl IntoIterator<Item = LogEntry>) {
        // Entries are in index order: cut at the first one the write replaces.
        let keep = self
            .entries
            .partition_point(|entry| entry.index < from_index);
        self.entries.truncate(keep);
        self.entries.extend(entries);
    }

    /// Drops the log a snapshot at `index` covers: all of it when the snapshot was installed
    /// from a peer (`replaces_log`), else the entries up to `index`.
    pub fn drop_log_covered_by_snapshot(&mut self, index: u64, replaces_log: bool) {
        if replaces_log {
            self.entries.clear();
        } else {
            let covered = self.entries.partition_point(|entry| entry.index <= index);
            self.entries.drain(..covered);
        }
    }

    /// Applies everything one ready asked to persist (`Persist`'s parts), in the order
    /// storage must: snapshot, hard state, log write.
    pub fn apply_persisted(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) {
        if let Some(write) = snapshot {
            self.drop_log_covered_by_snapshot(write.meta.index, write.replaces_log);
            self.snapshot = Some((write.meta.clone(), write.data.to_vec()));
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state.clone();
        }
        if let Some(write) = log_write {
            self.apply_log_write(write);
        }
    }
}
