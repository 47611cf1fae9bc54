//! Heartbeat rounds and the read lease: a round a quorum acknowledged proves nobody else leads
//! until its send time plus the lease duration, so reads until then are served locally. Also
//! the leader's check that it still hears a quorum at all.

use std::collections::BTreeMap;

use paxkv_proto::peer::{peer_message::Body, Ballot, Heartbeat, HeartbeatAck};

use crate::quorum::Quorum;
use crate::replica::Replica;
use crate::types::{NodeId, Time};

/// Heartbeat rounds whose send time is remembered for the lease.
const HEARTBEAT_ROUNDS_KEPT: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Lease {
    /// The newest round sent.
    pub(crate) round: u64,
    /// A round is wanted before the next timer (reads are waiting for one).
    pub(crate) heartbeat_requested: bool,
    round_sent_at: BTreeMap<u64, Time>,
    /// The newest round each follower acknowledged.
    round_acked: BTreeMap<NodeId, u64>,
    /// Reads may be served from local state until this time (exclusive).
    pub(crate) until: Time,
}

impl Lease {
    /// Starts a new round at `now` and returns its number.
    fn start_round(&mut self, now: Time) -> u64 {
        self.heartbeat_requested = false;
        self.round += 1;
        self.round_sent_at.insert(self.round, now);
        while self.round_sent_at.len() > HEARTBEAT_ROUNDS_KEPT {
            self.round_sent_at.pop_first();
        }
        self.round
    }

    fn acknowledged(&mut self, from: NodeId, round: u64) {
        let acked = self.round_acked.entry(from).or_insert(0);
        *acked = (*acked).max(round);
    }

    /// The newest round a quorum acknowledged (our own counts: we sent it), and the lease
    /// extended from its send time.
    fn confirm(&mut self, quorum: Quorum, me: NodeId, lease_duration_ms: u64) -> u64 {
        let quorum_round = quorum.agreed_value(|node| {
            if node == me {
                self.round
            } else {
                self.round_acked.get(&node).copied().unwrap_or(0)
            }
        });
        if let Some(sent_at) = self.round_sent_at.get(&quorum_round) {
            self.until = self.until.max(sent_at.plus_millis(lease_duration_ms));
        }
        quorum_round
    }
}

impl Replica {
    /// Sends a new heartbeat round to every follower and rewinds followers that went quiet.
    pub(crate) fn leader_heartbeat(&mut self) {
        let now = self.now;
        let commit_index = self.commit_index;
        let retransmit_after = self.config.heartbeat_interval_ms;
        let last_index = self.log.last_index();
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        let round = leader.lease.start_round(now);
        // Every 10th round, nodes retired by the committed configuration are told so: one that
        // was down when it was removed may know none of the members left to ask.
        let tell_retired = round % 10 == 0;
        for progress in leader.followers.values_mut() {
            if progress.match_index < last_index
                && now.millis_since(progress.last_ack_at) >= retransmit_after
            {
                progress.next_index = progress.match_index + 1;
                progress.last_ack_at = now;
            }
        }
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send(
                peer,
                Body::Heartbeat(Heartbeat {
                    round,
                    commit_index,
                }),
            );
        }
        if tell_retired {
            let (index, configuration) = self.log.configs().in_force_at(self.commit_index);
            let retired: Vec<NodeId> = configuration.retired.iter().copied().map(NodeId).collect();
            for node in retired {
                self.tell_removed(node, index);
            }
        }
        self.update_lease();
    }

    pub(crate) fn handle_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, ack: HeartbeatAck) {
        let now = self.now;
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        if leader.ballot != ballot {
            return;
        }
        leader.lease.acknowledged(from, ack.round);
        if let Some(progress) = leader.followers.get_mut(&from) {
            progress.answered(now);
        }
        self.update_lease();
    }

    /// Extends the lease to the send time of the newest round a quorum acknowledged, plus the
    /// lease duration, and confirms reads that waited for such a round.
    fn update_lease(&mut self) {
        let lease_duration_ms = self.config.lease_duration_ms();
        let quorum = self.quorum();
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        let quorum_round = leader.lease.confirm(quorum, self.id, lease_duration_ms);
        leader.reads.confirm_rounds_through(quorum_round);
        self.serve_confirmed_reads();
    }

    /// Only answers to our own ballot count (acknowledgements, rejections, heartbeat acks):
    /// a node that pings us but drops our messages is no follower.
    pub(crate) fn leader_hears_quorum(&self) -> bool {
        let Some(leader) = self.role.leader() else {
            return false;
        };
        // While syncing, only the election deadline bounds the takeover.
        if !leader.is_active() {
            return self.quorum_connected();
        }
        self.quorum_seen_lately(|node| {
            leader
                .followers
                .get(&node)
                .map(|progress| progress.answered_at)
        })
    }
}
