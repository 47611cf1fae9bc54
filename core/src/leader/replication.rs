//! Replication: what the leader knows of each follower's log, sending it what it misses in
//! batches within a pipeline window, and committing what a quorum durably holds.

use paxkv_proto::peer::{peer_message::Body, Accept, AcceptReject, Accepted, Ballot, LogEntry};

use crate::replica::Replica;
use crate::types::{NodeId, Time};
use crate::{ACCEPT_BATCH_BYTES_MAX, ACCEPT_BATCH_ENTRIES_MAX, PIPELINE_ENTRIES_MAX};

use super::LeaderPhase;

/// What the leader knows of one follower's log.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Next index to send.
    pub(crate) next_index: u64,
    /// Highest index the follower durably holds as in our log.
    pub(crate) match_index: u64,
    /// Retransmission timer: when we last heard from it or last rewound it.
    pub(crate) last_ack_at: Time,
    /// When it last answered a message of our ballot (the leader's quorum check); counts from
    /// when leading began, so that a new leader does not step down at once.
    pub(crate) answered_at: Time,
    /// When it last answered, with no such grace: none since leading began (or since it was
    /// added). Membership checks count a node as live only on this.
    pub(crate) heard_at: Option<Time>,
    /// The commit index the last Accept sent to it carried.
    pub(crate) commit_told: u64,
}

impl Progress {
    pub(crate) fn new(now: Time) -> Progress {
        Progress {
            next_index: 1,
            match_index: 0,
            last_ack_at: now,
            answered_at: now,
            heard_at: None,
            commit_told: 0,
        }
    }

    /// It answered a message of our ballot.
    pub(crate) fn answered(&mut self, now: Time) {
        self.answered_at = self.answered_at.max(now);
        self.heard_at = Some(now);
    }

    /// It answered within the last `window_ms` (no grace for a leader that just began).
    pub(crate) fn heard_within(&self, now: Time, window_ms: u64) -> bool {
        self.heard_at
            .is_some_and(|at| now.millis_since(at) < window_ms)
    }

    /// Starts sending at `next_index` when leading begins.
    pub(crate) fn restart_at(&mut self, next_index: u64, now: Time) {
        self.next_index = next_index;
        self.commit_told = 0;
        self.last_ack_at = now;
        self.answered_at = now;
        self.heard_at = None;
    }

    /// The follower durably holds our log through `index` (an acknowledgement or a snapshot).
    pub(crate) fn matched(&mut self, index: u64, now: Time) {
        self.match_index = self.match_index.max(index);
        self.next_index = self.next_index.max(self.match_index + 1);
        self.last_ack_at = now;
        self.answered(now);
    }
}

impl Replica {
    /// Sends every follower what it is missing, within the pipeline window. Called once per
    /// turn, so all proposals of a turn travel in one batch.
    pub(crate) fn flush_replication(&mut self) {
        let Some(leader) = self.role.leader() else {
            return;
        };
        if !leader.is_active() {
            return;
        }
        if leader.lease.heartbeat_requested {
            self.leader_heartbeat();
        }
        // A change entry may have come or gone (proposed, or adopted in a take-over).
        self.leader_sync_followers();
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send_accepts(peer);
        }
        // A cluster of one commits as soon as its own log is durable.
        self.leader_maybe_commit();
        self.tell_commit();
    }

    /// Tells every follower that has not heard it yet that the commit index moved, with an
    /// Accept without entries, so that it applies (and serves reads and watches of) what
    /// committed now rather than with the next write or heartbeat.
    fn tell_commit(&mut self) {
        let commit_index = self.commit_index;
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            if self.outgoing_snapshots.contains_key(&peer) {
                continue;
            }
            let floor_index = self.log.floor_index();
            let last_index = self.log.last_index();
            let Some(leader) = self.role.leader_mut() else {
                return;
            };
            let Some(progress) = leader.followers.get_mut(&peer) else {
                continue;
            };
            let prev_index = progress.next_index - 1;
            if progress.commit_told >= commit_index
                || prev_index < floor_index
                || prev_index > last_index
            {
                continue;
            }
            progress.commit_told = commit_index;
            self.send_accept(peer, prev_index, Vec::new(), commit_index);
        }
    }

    /// Sends `entries` after `prev_index` (in the log or its snapshot point) to `peer`.
    fn send_accept(
        &mut self,
        peer: NodeId,
        prev_index: u64,
        entries: Vec<LogEntry>,
        commit_index: u64,
    ) {
        let prev_ballot = self
            .log
            .ballot_at(prev_index)
            .expect("prev is the snapshot point or in the log");
        self.send(
            peer,
            Body::Accept(Accept {
                prev_index,
                prev_ballot: Some(prev_ballot),
                entries,
                commit_index,
            }),
        );
    }

    pub(crate) fn send_accepts(&mut self, peer: NodeId) {
        let active = self.role.leader().is_some_and(|leader| leader.is_active());
        if !active || self.outgoing_snapshots.contains_key(&peer) {
            return;
        }
        let commit_index = self.commit_index;
        loop {
            let Some(leader) = self.role.leader_mut() else {
                return;
            };
            let Some(progress) = leader.followers.get_mut(&peer) else {
                return;
            };
            let next = progress.next_index;
            if next > self.log.last_index() || next - progress.match_index > PIPELINE_ENTRIES_MAX {
                return;
            }
            if next <= self.log.floor_index() {
                self.start_snapshot_transfer(peer);
                return;
            }
            let entries = self
                .log
                .slice(next, ACCEPT_BATCH_ENTRIES_MAX, ACCEPT_BATCH_BYTES_MAX);
            progress.next_index = next + entries.len() as u64;
            progress.commit_told = commit_index;
            self.send_accept(peer, next - 1, entries, commit_index);
        }
    }

    /// The progress of follower `from`, if we lead in `ballot`.
    pub(crate) fn progress_in_ballot(
        &mut self,
        from: NodeId,
        ballot: Ballot,
    ) -> Option<&mut Progress> {
        let leader = self
            .role
            .leader_mut()
            .filter(|leader| leader.ballot == ballot)?;
        leader.followers.get_mut(&from)
    }

    pub(crate) fn handle_accepted(&mut self, from: NodeId, ballot: Ballot, accepted: Accepted) {
        let now = self.now;
        let last_index = self.log.last_index();
        let Some(progress) = self.progress_in_ballot(from, ballot) else {
            return;
        };
        assert!(
            accepted.match_index <= last_index,
            "a follower cannot match beyond our log"
        );
        progress.matched(accepted.match_index, now);
        self.leader_maybe_commit();
        // The pipeline window moved: keep the follower's stream going.
        self.send_accepts(from);
    }

    pub(crate) fn handle_accept_reject(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        reject: AcceptReject,
    ) {
        let now = self.now;
        let Some(progress) = self.progress_in_ballot(from, ballot) else {
            return;
        };
        // The follower says its log matches ours at most up to the hint. It never loses what it
        // acknowledged, but a reordered reject may be older than an acknowledgement; trusting the
        // lower figure only costs a resend.
        progress.match_index = progress.match_index.min(reject.hint_index);
        progress.next_index = reject.hint_index + 1;
        progress.last_ack_at = now;
        progress.answered(now);
        self.send_accepts(from);
    }

    /// Commits the highest index a quorum durably holds, if it was proposed in our ballot
    /// (earlier entries then commit with it; counting old-ballot copies alone is unsafe).
    pub(crate) fn leader_maybe_commit(&mut self) {
        let Some(leader) = self.role.leader() else {
            return;
        };
        let LeaderPhase::Active { noop_index } = leader.phase else {
            return;
        };
        let own_durable = self.log.stable_last();
        let candidate = self.quorum().agreed_value(|node| {
            if node == self.id {
                own_durable
            } else {
                leader.match_index(node).unwrap_or(0)
            }
        });
        if candidate > self.commit_index && self.log.ballot_at(candidate) == Some(leader.ballot) {
            self.commit_index = candidate;
            self.hard_state_dirty = true;
            if candidate >= noop_index {
                self.admit_reads_after_activation();
            }
        }
    }
}
