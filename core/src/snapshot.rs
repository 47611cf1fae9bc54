//! Snapshot transfer in bounded chunks, stop-and-wait: the sender sends one chunk, the receiver
//! acknowledges the offset it has, and the final acknowledgement leaves only after the installed
//! snapshot is durable. Used by a leader for lagging followers and by the holder of the most
//! advanced log for a new leader that is behind.

use paxkv_proto::peer::{peer_message::Body, Ballot, SnapshotAck, SnapshotChunk, SnapshotMeta};
use std::sync::Arc;

use crate::leader::LeaderPhase;
use crate::ready::{SnapshotBytes, SnapshotEnd, SnapshotPart, SnapshotWrite};
use crate::replica::Replica;
use crate::types::{NodeId, Time};

/// A snapshot being encoded (`KvStore::start_snapshot`), and who needs it once complete.
#[derive(Debug)]
pub(crate) struct SnapshotBuilding {
    meta: SnapshotMeta,
    /// To be written to disk (else only transfers wait for it).
    pub(crate) for_disk: bool,
    /// Handed to storage in parts as it is encoded (`SnapshotPart`): a snapshot for disk that
    /// no transfer waited for when it started. Otherwise it is held whole until complete.
    streamed: bool,
}

/// Bytes reserved at most for a snapshot being received, whatever its sender announces.
const INCOMING_RESERVE_MAX: u64 = 1 << 30;

#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    from: NodeId,
    meta: SnapshotMeta,
    total_bytes: u64,
    data: Vec<u8>,
    /// Set once installed: the final acknowledgement waits for the snapshot to be durable.
    installed: bool,
}

#[derive(Debug)]
pub(crate) struct OutgoingSnapshot {
    /// The ballot the transfer serves: ours as leader, or the new leader's that asked us for
    /// its log. A transfer outlives neither.
    ballot: Ballot,
    as_leader: bool,
    index: u64,
    /// The snapshot this transfer sends; a newer one taken meanwhile does not restart it.
    meta: SnapshotMeta,
    data: Arc<SnapshotBytes>,
    acked_offset: u64,
    sent_at: Time,
}

impl Replica {
    /// Starts encoding a snapshot of the applied state (committed, so any peer may install
    /// it), a slice per turn.
    pub(crate) fn start_snapshot(&mut self, for_disk: bool) {
        assert!(self.snapshot_building.is_none(), "one snapshot at a time");
        let meta = SnapshotMeta {
            index: self.applied_index,
            ballot: self.log.ballot_at(self.applied_index),
            configuration: Some(self.configuration_at(self.applied_index)),
        };
        self.kv.start_snapshot();
        // (A part of the last one not yet taken by a ready would be overwritten.)
        let streamed = for_disk && self.snapshot_waiting.is_empty() && self.snapshot_part.is_none();
        if streamed {
            self.snapshot_part = Some(SnapshotPart {
                meta: meta.clone(),
                first: true,
                pieces: Vec::new(),
                end: None,
            });
        }
        self.snapshot_building = Some(SnapshotBuilding {
            meta,
            for_disk,
            streamed,
        });
    }

    /// Adds to the part storage takes with the next ready (one exists from the snapshot's
    /// start until a ready takes its end).
    fn add_to_snapshot_part(&mut self, mut pieces: Vec<Vec<u8>>, end: Option<SnapshotEnd>) {
        let middle = end.is_none() && self.snapshot_part.is_none();
        if middle && crate::planted::active(crate::planted::Bug::SnapshotPartLost) {
            pieces.clear();
        }
        let part = self.snapshot_part.get_or_insert_with(|| SnapshotPart {
            meta: self
                .snapshot_building
                .as_ref()
                .expect("parts only of a snapshot under way")
                .meta
                .clone(),
            first: false,
            pieces: Vec::new(),
            end: None,
        });
        part.pieces.extend(pieces);
        part.end = end;
    }

    /// Encodes the next slice of the snapshot under way; once it is complete, hands it to
    /// storage and to the transfers waiting for it.
    pub(crate) fn continue_snapshot(&mut self) {
        let Some(building) = &self.snapshot_building else {
            return;
        };
        let streamed = building.streamed;
        if !self.kv.snapshot_in_progress() {
            // The state it was encoding was replaced by an installed snapshot.
            if streamed {
                self.add_to_snapshot_part(Vec::new(), Some(SnapshotEnd::Abandoned));
            }
            self.snapshot_building = None;
            self.restart_waiting_transfers();
            return;
        }
        if self.snapshot_encoding_paused() {
            return;
        }
        let complete = self.kv.continue_snapshot(self.config.snapshot_step_bytes);
        if streamed {
            match complete {
                None => {
                    let pieces = self.kv.take_snapshot_pieces();
                    if !pieces.is_empty() {
                        self.add_to_snapshot_part(pieces, None);
                    }
                }
                Some(mut rest) => {
                    let pieces = rest.take_pieces();
                    self.add_to_snapshot_part(pieces, Some(SnapshotEnd::Complete));
                    self.snapshot_building = None;
                    // Transfers that asked meanwhile need the bytes, which went to storage:
                    // they get a snapshot encoded for them (it is stale now, so they ask).
                    self.restart_waiting_transfers();
                }
            }
            return;
        }
        let Some(data) = complete else {
            return;
        };
        let for_disk = building.for_disk;
        let meta = self.snapshot_building.take().expect("checked above").meta;
        let data = Arc::new(data);
        if for_disk && self.snapshot_write.is_none() {
            self.snapshot_write = Some(SnapshotWrite {
                meta: meta.clone(),
                data: data.clone(),
                replaces_log: false,
            });
        }
        if !self.snapshot_waiting.is_empty() {
            self.snapshot = Some((meta, data));
            self.restart_waiting_transfers();
        }
    }

    /// Whether the snapshot being handed to storage in parts waits for storage to write what
    /// it has (the parts of the next ready count too): encoding ahead of the disk only holds
    /// the bytes in memory meanwhile. A snapshot held whole (for a transfer) never waits.
    pub(crate) fn snapshot_encoding_paused(&self) -> bool {
        let streamed = self
            .snapshot_building
            .as_ref()
            .is_some_and(|building| building.streamed);
        let unwritten = self.snapshot_write_backlog
            + self
                .snapshot_part
                .as_ref()
                .map_or(0, |part| part.pieces.iter().map(Vec::len).sum::<usize>());
        streamed && unwritten >= self.config.snapshot_write_backlog_max
    }

    /// Starts the transfers that waited for a snapshot, if still asked for in the same ballot
    /// and role.
    fn restart_waiting_transfers(&mut self) {
        let leading = self.role.is_leader();
        for (to, (ballot, as_leader)) in std::mem::take(&mut self.snapshot_waiting) {
            if ballot == self.promised && as_leader == leading {
                self.start_snapshot_transfer(to);
            }
        }
    }

    /// The lowest index a peer for which `counts` holds will continue from once it installs a
    /// snapshot being encoded for it or being sent to it: the log keeps the entries after it
    /// in memory, or the peer would need another snapshot as soon as it installed this one.
    pub(crate) fn lowest_snapshot_sent(&self, counts: impl Fn(NodeId) -> bool) -> Option<u64> {
        let building = self
            .snapshot_building
            .as_ref()
            .filter(|_| self.snapshot_waiting.keys().any(|to| counts(*to)))
            .map(|building| building.meta.index);
        let sending = self
            .outgoing_snapshots
            .iter()
            .filter(|(to, _)| counts(**to))
            .map(|(_, out)| out.index);
        building.into_iter().chain(sending).min()
    }

    pub(crate) fn start_snapshot_transfer(&mut self, to: NodeId) {
        if self.outgoing_snapshots.contains_key(&to) || self.snapshot_waiting.contains_key(&to) {
            return;
        }
        // A snapshot older than the log's start would leave the peer short of entries again
        // (and other transfers would keep it alive): encode the state as it is now instead,
        // a slice per turn, and start once it is complete.
        let stale = self
            .snapshot
            .as_ref()
            .is_none_or(|(meta, _)| meta.index < self.log.floor_index());
        if stale {
            self.snapshot_waiting
                .insert(to, (self.promised, self.role.is_leader()));
            if self.snapshot_building.is_none() {
                self.start_snapshot(false);
            }
            return;
        }
        let (meta, data) = self.snapshot.clone().expect("checked above");
        self.outgoing_snapshots.insert(
            to,
            OutgoingSnapshot {
                ballot: self.promised,
                as_leader: self.role.is_leader(),
                index: meta.index,
                meta,
                data,
                acked_offset: 0,
                sent_at: self.now,
            },
        );
        self.send_snapshot_chunk(to);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let transfer = self
            .outgoing_snapshots
            .get_mut(&to)
            .expect("transfer exists");
        transfer.sent_at = self.now;
        let data = &transfer.data;
        let offset = transfer.acked_offset as usize;
        let end = (offset + self.config.snapshot_chunk_bytes).min(data.len());
        let chunk = SnapshotChunk {
            meta: Some(transfer.meta.clone()),
            offset: offset as u64,
            data: data.copy_range(offset..end),
            total_bytes: data.len() as u64,
        };
        self.send(to, Body::SnapshotChunk(chunk));
    }

    /// Resends the current chunk of any transfer whose acknowledgement is overdue.
    pub(crate) fn retransmit_snapshots(&mut self) {
        let overdue_ms = self.config.election_timeout_ms / 2;
        // A transfer for a ballot that is over is dropped, not resent: its receiver ignores
        // it (say, it leads now itself), and the encoded state would stay in memory.
        let leading = self.role.is_leader();
        let promised = self.promised;
        self.outgoing_snapshots
            .retain(|_, transfer| transfer.ballot == promised && transfer.as_leader == leading);
        let overdue: Vec<NodeId> = self
            .outgoing_snapshots
            .iter()
            .filter(|(_, transfer)| self.now.millis_since(transfer.sent_at) >= overdue_ms)
            .map(|(to, _)| *to)
            .collect();
        for to in overdue {
            self.send_snapshot_chunk(to);
        }
        self.drop_snapshot_if_unused();
    }

    /// Forgets the shared snapshot once no transfer sends it (each transfer keeps its own).
    fn drop_snapshot_if_unused(&mut self) {
        if self.outgoing_snapshots.is_empty() && self.snapshot_waiting.is_empty() {
            self.snapshot = None;
        }
    }

    pub(crate) fn handle_snapshot_ack(&mut self, from: NodeId, ballot: Ballot, ack: SnapshotAck) {
        let now = self.now;
        if let Some(progress) = self.progress_in_ballot(from, ballot) {
            progress.answered(now);
        }
        let Some(transfer) = self.outgoing_snapshots.get_mut(&from) else {
            return;
        };
        let total = transfer.data.len() as u64;
        if ack.snapshot_index != transfer.index {
            return;
        }
        if ack.next_offset < transfer.acked_offset {
            // The receiver holds less than we thought (it restarted, dropped bytes that did
            // not decode, or this acknowledgement is old): go on from what it says it has, or
            // the chunk it cannot take would be resent for as long as we lead. An old
            // acknowledgement only costs a chunk it already has, which it answers with its
            // real offset.
            transfer.acked_offset = ack.next_offset;
            self.send_snapshot_chunk(from);
            return;
        }
        if ack.next_offset < total {
            transfer.acked_offset = ack.next_offset;
            self.send_snapshot_chunk(from);
            return;
        }
        let index = transfer.index;
        self.outgoing_snapshots.remove(&from);
        self.drop_snapshot_if_unused();
        if let Some(leader) = self.role.leader_mut() {
            if let Some(progress) = leader.followers.get_mut(&from) {
                progress.matched(index, now);
            }
            self.send_accepts(from);
        }
    }

    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        chunk: SnapshotChunk,
    ) {
        let syncing_from_sender = matches!(
            self.role.leader(),
            Some(leader) if leader.ballot == ballot
                && matches!(leader.phase, LeaderPhase::Syncing { source, .. } if source == from)
        );
        if !syncing_from_sender && !self.accept_leader_contact(from, ballot) {
            return;
        }
        let Some(meta) = chunk.meta else { return };
        let ack = |replica: &mut Replica, next_offset: u64| {
            replica.send(
                from,
                Body::SnapshotAck(SnapshotAck {
                    snapshot_index: meta.index,
                    next_offset,
                }),
            );
        };
        if meta.index <= self.commit_index {
            ack(self, chunk.total_bytes);
            return;
        }
        if self.log.ballot_at(meta.index) == meta.ballot {
            // Our log already holds the snapshot point, so it matches the sender's log up to
            // there: keep it (and what follows) rather than throwing accepted entries away.
            if syncing_from_sender
                && !crate::planted::active(crate::planted::Bug::SyncStuckOnOwnSnapshotPoint)
            {
                // A new leader copying the sender's log needs only what follows the point.
                self.continue_sync_after(from, meta.index);
            }
            if self.leader() == Some(from) {
                self.learn_from_leader(meta.index, meta.index);
            }
            if self.log.stable_last() >= meta.index {
                ack(self, chunk.total_bytes);
            }
            return;
        }
        // A first chunk starts a copy, unless it is a late duplicate of the copy under way
        // (restarting that would leave the sender, past it, resending a chunk we cannot take).
        let same_copy = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            incoming.from == from && incoming.meta.index == meta.index && !incoming.installed
        });
        if chunk.offset == 0 && !same_copy {
            self.incoming_snapshot = Some(IncomingSnapshot {
                from,
                meta: meta.clone(),
                total_bytes: chunk.total_bytes,
                // Received into one buffer of the announced size: growing it by doubling would
                // copy a large state several times over.
                data: Vec::with_capacity(chunk.total_bytes.min(INCOMING_RESERVE_MAX) as usize),
                installed: false,
            });
        }
        let resumable = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            incoming.from == from && incoming.meta.index == meta.index && !incoming.installed
        });
        if !resumable {
            // A chunk from the middle of a transfer we hold no start of (we restarted, or
            // dropped a copy that did not decode): ask for it from the beginning, or the sender
            // would resend this chunk for as long as it leads.
            let installing = self
                .incoming_snapshot
                .as_ref()
                .is_some_and(|incoming| incoming.installed);
            if chunk.offset != 0
                && !installing
                && !crate::planted::active(crate::planted::Bug::SnapshotResumeIgnored)
            {
                ack(self, 0);
            }
            return;
        }
        let incoming = self
            .incoming_snapshot
            .as_mut()
            .expect("checked to be resumable");
        if chunk.offset == incoming.data.len() as u64
            && incoming.data.len() + chunk.data.len() <= incoming.total_bytes as usize
        {
            incoming.data.extend_from_slice(&chunk.data);
        }
        let received = incoming.data.len() as u64;
        if received < incoming.total_bytes {
            ack(self, received);
            return;
        }
        self.install_snapshot();
    }

    /// Replaces the state machine and the log with a received snapshot.
    fn install_snapshot(&mut self) {
        let incoming = self
            .incoming_snapshot
            .as_mut()
            .expect("a snapshot is being received");
        let Ok(decoded) = crate::KvStore::decode_snapshot(incoming.data.as_slice()) else {
            // Corrupt in transit: start over from the first byte.
            let (from, index) = (incoming.from, incoming.meta.index);
            self.incoming_snapshot = None;
            self.send(
                from,
                Body::SnapshotAck(SnapshotAck {
                    snapshot_index: index,
                    next_offset: 0,
                }),
            );
            return;
        };
        incoming.installed = true;
        let meta = incoming.meta.clone();
        // Only the final acknowledgement's size is needed from here on.
        let data = std::mem::take(&mut incoming.data);
        let from = incoming.from;
        assert!(
            meta.index > self.commit_index,
            "an installed snapshot moves the commit point forward"
        );
        self.kv = decoded;
        self.kv.set_applied_index(meta.index);
        self.kv.set_sessions_max(self.config.sessions_max);
        self.log.reset_to_snapshot(&meta);
        self.commit_index = meta.index;
        self.applied_index = meta.index;
        self.hard_state_dirty = true;
        if let Some(follower) = self.role.follower_mut() {
            if follower.leader == Some(from) {
                follower.leader_match_index = follower.leader_match_index.max(meta.index);
            }
        }
        self.snapshot_write = Some(SnapshotWrite {
            meta: meta.clone(),
            data: Arc::new(data.into()),
            replaces_log: true,
        });
        // Reads waiting for a revision may be satisfied by the installed state.
        self.wake_revision_waiters();
        self.continue_sync_after(from, meta.index);
    }

    /// A leader copying `source`'s log whose log now matches it through `index` asks for what
    /// follows (unless its copy is already past that point).
    fn continue_sync_after(&mut self, source: NodeId, index: u64) {
        let Some(leader) = self.role.leader() else {
            return;
        };
        if let LeaderPhase::Syncing {
            source: syncing_from,
            target_last,
            next_index,
        } = leader.phase
        {
            if syncing_from == source && next_index <= index {
                self.request_log(source, target_last, index + 1);
            }
        }
    }

    /// Sends the final acknowledgement of an installed snapshot once it is durable.
    pub(crate) fn on_installed_snapshot_persisted(&mut self, meta: &SnapshotMeta) {
        let Some(incoming) = &self.incoming_snapshot else {
            return;
        };
        if !incoming.installed || incoming.meta.index != meta.index {
            return;
        }
        let (from, total_bytes) = (incoming.from, incoming.total_bytes);
        self.incoming_snapshot = None;
        self.send(
            from,
            Body::SnapshotAck(SnapshotAck {
                snapshot_index: meta.index,
                next_offset: total_bytes,
            }),
        );
    }
}
