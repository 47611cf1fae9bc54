//! Leader side of phase 2: proposing, replicating with batching and pipelining, committing,
//! heartbeat rounds, the read lease and read-index reads.

use std::collections::BTreeMap;

use paxkv_proto::client::ErrorCode;
use paxkv_proto::peer::{
    entry::Kind, peer_message::Body, Accept, AcceptReject, Accepted, Ballot, Command, Entry,
    Heartbeat, HeartbeatAck, LogEntry, LogState, Noop,
};

use crate::kv::error_response;
use crate::replica::{ReadRequest, Replica, Role};
use crate::types::{NodeId, RequestId, Time};
use crate::{
    ACCEPT_BATCH_BYTES_MAX, ACCEPT_BATCH_ENTRIES_MAX, PENDING_READS_MAX, PIPELINE_ENTRIES_MAX,
};

/// Heartbeat rounds whose send time is remembered for the lease.
const HEARTBEAT_ROUNDS_KEPT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaderPhase {
    /// Copying the most advanced promised log from `source` before proposing anything.
    Syncing {
        source: NodeId,
        target_last: u64,
        next_index: u64,
    },
    /// Proposing; reads are served once the no-op at `noop_index` is committed.
    Active { noop_index: u64 },
}

/// What the leader knows of one follower's log.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Next index to send.
    pub(crate) next_index: u64,
    /// Highest index the follower durably holds as in our log.
    pub(crate) match_index: u64,
    /// Retransmission timer: when we last heard from it or last rewound it.
    pub(crate) last_ack_at: Time,
    /// When it last answered a message of our ballot (the leader's quorum check).
    pub(crate) answered_at: Time,
}

#[derive(Debug)]
pub(crate) struct LeaderState {
    pub(crate) ballot: Ballot,
    pub(crate) phase: LeaderPhase,
    pub(crate) promises: BTreeMap<NodeId, LogState>,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) heartbeat_round: u64,
    pub(crate) heartbeat_requested: bool,
    pub(crate) round_sent_at: BTreeMap<u64, Time>,
    pub(crate) round_acked: BTreeMap<NodeId, u64>,
    /// Reads may be served from local state until this time (exclusive).
    pub(crate) lease_until: Time,
    /// Requests answered by the entry at an index (several when keep-alives share one).
    pub(crate) pending_writes: BTreeMap<u64, Vec<RequestId>>,
    /// Log time of the newest entry in our log when we took over.
    pub(crate) takeover_log_time_ms: u64,
    /// Our clock when we took over.
    pub(crate) takeover_at: Time,
    /// Log time stamped on our last appended entry.
    pub(crate) last_log_time_ms: u64,
    pub(crate) last_append_at: Time,
    pub(crate) reads_before_activation: Vec<(RequestId, ReadRequest)>,
    /// (heartbeat round a quorum must acknowledge, read index, request).
    pub(crate) reads_waiting_round: Vec<(u64, u64, RequestId, ReadRequest)>,
    /// (read index, request): confirmed, waiting for the state machine to reach the index.
    pub(crate) reads_waiting_apply: Vec<(u64, RequestId, ReadRequest)>,
}

impl LeaderState {
    pub(crate) fn new(
        ballot: Ballot,
        peers: impl Iterator<Item = NodeId>,
        now: Time,
    ) -> LeaderState {
        LeaderState {
            ballot,
            phase: LeaderPhase::Active { noop_index: 0 },
            promises: BTreeMap::new(),
            progress: peers
                .map(|peer| {
                    let progress = Progress {
                        next_index: 1,
                        match_index: 0,
                        last_ack_at: now,
                        answered_at: now,
                    };
                    (peer, progress)
                })
                .collect(),
            heartbeat_round: 0,
            heartbeat_requested: false,
            round_sent_at: BTreeMap::new(),
            round_acked: BTreeMap::new(),
            lease_until: Time(0),
            pending_writes: BTreeMap::new(),
            takeover_log_time_ms: 0,
            takeover_at: now,
            last_log_time_ms: 0,
            last_append_at: now,
            reads_before_activation: Vec::new(),
            reads_waiting_round: Vec::new(),
            reads_waiting_apply: Vec::new(),
        }
    }

    pub(crate) fn match_index(&self, peer: NodeId) -> Option<u64> {
        self.progress
            .get(&peer)
            .map(|progress| progress.match_index)
    }

    fn pending_reads(&self) -> usize {
        self.reads_before_activation.len()
            + self.reads_waiting_round.len()
            + self.reads_waiting_apply.len()
    }

    /// Answers everything still waiting when leadership ends: writes may still commit under a
    /// later leader, so their outcome is unknown; reads have no effect and can simply be retried.
    pub(crate) fn fail_pending(&mut self, replica: &mut Replica) {
        for request in std::mem::take(&mut self.pending_writes)
            .into_values()
            .flatten()
        {
            replica.respond(
                request,
                error_response(
                    ErrorCode::OutcomeUnknown,
                    "leadership changed while the write was in flight; it may or may not have \
                     taken effect; retrying with the same client id and sequence is safe",
                ),
            );
        }
        let reads = std::mem::take(&mut self.reads_before_activation)
            .into_iter()
            .chain(
                self.reads_waiting_round
                    .drain(..)
                    .map(|(_, _, request, read)| (request, read)),
            )
            .chain(
                self.reads_waiting_apply
                    .drain(..)
                    .map(|(_, request, read)| (request, read)),
            );
        for (request, _) in reads {
            let error = replica.not_leader_error();
            replica.respond(request, error);
        }
    }
}

impl Replica {
    pub(crate) fn leader_mut(&mut self) -> &mut LeaderState {
        self.leader.as_mut().expect("called only while leading")
    }

    /// Starts proposing: a no-op commits everything adopted, then reads are served.
    pub(crate) fn activate_leader(&mut self) {
        let promises = std::mem::take(&mut self.leader_mut().promises);
        let starts: BTreeMap<NodeId, u64> = self
            .peers()
            .map(|peer| {
                let next = match promises.get(&peer) {
                    Some(log) => self.next_index_from_log_state(log),
                    None => self.log.last_index() + 1,
                };
                (peer, next)
            })
            .collect();
        // Log time continues from the latest time anything in our log or state carries, and
        // from here on advances with our own monotonic clock.
        let adopted_log_time_ms = (self.commit_index + 1..=self.log.last_index())
            .filter_map(|index| self.log.entry(index))
            .filter_map(|entry| entry.entry.as_ref().map(|payload| payload.log_time_ms))
            .fold(self.kv.log_time_ms(), u64::max);
        let now = self.now;
        let leader = self.leader_mut();
        leader.takeover_log_time_ms = adopted_log_time_ms;
        leader.last_log_time_ms = adopted_log_time_ms;
        leader.takeover_at = now;
        let noop_index = self.leader_append(Kind::Noop(Noop {}));
        let leader = self.leader_mut();
        leader.phase = LeaderPhase::Active { noop_index };
        for (peer, next_index) in starts {
            let progress = leader
                .progress
                .get_mut(&peer)
                .expect("every peer has progress");
            progress.next_index = next_index;
            progress.last_ack_at = now;
            progress.answered_at = now;
        }
        self.leader_heartbeat();
    }

    pub(crate) fn leader_handle_late_promise(&mut self, from: NodeId, log: LogState) {
        if !matches!(self.leader_mut().phase, LeaderPhase::Active { .. }) {
            self.leader_mut().promises.insert(from, log);
            return;
        }
        let next = self.next_index_from_log_state(&log);
        let progress = self
            .leader_mut()
            .progress
            .get_mut(&from)
            .expect("every peer has progress");
        if progress.match_index == 0 {
            progress.next_index = next;
        }
    }

    pub(crate) fn leader_propose(&mut self, request: RequestId, command: Command) {
        let leader = self.leader.as_ref().expect("called only while leading");
        if !matches!(leader.phase, LeaderPhase::Active { .. }) {
            self.respond(
                request,
                error_response(
                    ErrorCode::NoQuorum,
                    "this node is taking over leadership; retry shortly",
                ),
            );
            return;
        }
        if self.log.last_index() - self.commit_index >= self.config.uncommitted_entries_max {
            self.respond(
                request,
                error_response(
                    ErrorCode::Busy,
                    "too many writes waiting for a quorum; retry shortly",
                ),
            );
            return;
        }
        // Every keep-alive gets an entry of its own, stamped when it arrived. Sharing the
        // entry of an earlier one still in flight would answer a later request with a lease
        // extended from an older time (or not at all, if that entry is a retry answered from
        // its session).
        let index = self.leader_append(Kind::Command(command));
        let leader = self.leader_mut();
        leader
            .pending_writes
            .entry(index)
            .or_default()
            .push(request);
    }

    /// Appends an entry of our ballot stamped with the log time:
    /// max(last stamp, log time at takeover + our monotonic time since takeover).
    pub(crate) fn leader_append(&mut self, kind: Kind) -> u64 {
        let now = self.now;
        let index = self.log.last_index() + 1;
        let leader = self.leader_mut();
        let elapsed_ms = now.millis_since(leader.takeover_at);
        let log_time_ms = leader
            .last_log_time_ms
            .max(leader.takeover_log_time_ms.saturating_add(elapsed_ms));
        leader.last_log_time_ms = log_time_ms;
        leader.last_append_at = now;
        let ballot = leader.ballot;
        self.log.append(LogEntry {
            index,
            ballot: Some(ballot),
            entry: Some(Entry {
                kind: Some(kind),
                log_time_ms,
            }),
        });
        index
    }

    /// An idle leader keeps log time moving while anything waits for it (a TTL or a lease).
    pub(crate) fn maybe_propose_tick(&mut self) {
        let Some(leader) = &self.leader else { return };
        let active = matches!(leader.phase, LeaderPhase::Active { .. });
        let idle_ms = self.now.millis_since(leader.last_append_at);
        // A leader without a quorum must not grow its log with ticks forever.
        let room = self.log.last_index() - self.commit_index < self.config.uncommitted_entries_max;
        if active && room && idle_ms >= self.config.log_tick_interval_ms && self.kv.has_deadlines()
        {
            self.leader_append(Kind::Noop(Noop {}));
        }
    }

    /// Sends every follower what it is missing, within the pipeline window. Called once per
    /// turn, so all proposals of a turn travel in one batch.
    pub(crate) fn flush_replication(&mut self) {
        let Some(leader) = &self.leader else { return };
        if !matches!(leader.phase, LeaderPhase::Active { .. }) {
            return;
        }
        if leader.heartbeat_requested {
            self.leader_heartbeat();
        }
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send_accepts(peer);
        }
        // A cluster of one commits as soon as its own log is durable.
        self.leader_maybe_commit();
    }

    pub(crate) fn send_accepts(&mut self, peer: NodeId) {
        let active = matches!(&self.leader, Some(leader) if matches!(leader.phase, LeaderPhase::Active { .. }));
        if !active || self.outgoing_snapshots.contains_key(&peer) {
            return;
        }
        let commit_index = self.commit_index;
        loop {
            let leader = self.leader.as_ref().expect("called only while leading");
            let progress = &leader.progress[&peer];
            let next = progress.next_index;
            if next > self.log.last_index() || next - progress.match_index > PIPELINE_ENTRIES_MAX {
                return;
            }
            if next <= self.log.snapshot_index() {
                self.start_snapshot_transfer(peer);
                return;
            }
            let entries = self
                .log
                .slice(next, ACCEPT_BATCH_ENTRIES_MAX, ACCEPT_BATCH_BYTES_MAX);
            let prev_index = next - 1;
            let prev_ballot = self
                .log
                .ballot_at(prev_index)
                .expect("prev is the snapshot point or in the log");
            let sent = entries.len() as u64;
            self.send(
                peer,
                Body::Accept(Accept {
                    prev_index,
                    prev_ballot: Some(prev_ballot),
                    entries,
                    commit_index,
                }),
            );
            self.leader_mut()
                .progress
                .get_mut(&peer)
                .expect("every peer has progress")
                .next_index = next + sent;
        }
    }

    /// The progress of follower `from`, if we lead in `ballot`.
    fn progress_in_ballot(&mut self, from: NodeId, ballot: Ballot) -> Option<&mut Progress> {
        let leader = self
            .leader
            .as_mut()
            .filter(|leader| leader.ballot == ballot)?;
        Some(
            leader
                .progress
                .get_mut(&from)
                .expect("every peer has progress"),
        )
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
        progress.match_index = progress.match_index.max(accepted.match_index);
        progress.next_index = progress.next_index.max(progress.match_index + 1);
        progress.last_ack_at = now;
        progress.answered_at = now;
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
        progress.answered_at = now;
        self.send_accepts(from);
    }

    /// Commits the highest index a quorum durably holds, if it was proposed in our ballot
    /// (earlier entries then commit with it; counting old-ballot copies alone is unsafe).
    pub(crate) fn leader_maybe_commit(&mut self) {
        let Some(leader) = &self.leader else { return };
        let LeaderPhase::Active { noop_index } = leader.phase else {
            return;
        };
        let mut matches: Vec<u64> = leader
            .progress
            .values()
            .map(|progress| progress.match_index)
            .collect();
        matches.push(self.log.stable_last());
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[self.quorum() - 1];
        if candidate > self.commit_index && self.log.ballot_at(candidate) == Some(leader.ballot) {
            self.commit_index = candidate;
            self.hard_state_dirty = true;
            if candidate >= noop_index {
                self.admit_reads_after_activation();
            }
        }
    }

    fn admit_reads_after_activation(&mut self) {
        let commit_index = self.commit_index;
        let leader = self.leader_mut();
        if leader.reads_before_activation.is_empty() {
            return;
        }
        let round = leader.heartbeat_round + 1;
        let reads = std::mem::take(&mut leader.reads_before_activation);
        leader.reads_waiting_round.extend(
            reads
                .into_iter()
                .map(|(request, read)| (round, commit_index, request, read)),
        );
        leader.heartbeat_requested = true;
    }

    pub(crate) fn leader_read(&mut self, request: RequestId, read: ReadRequest) {
        let now = self.now;
        let commit_index = self.commit_index;
        let leader = self.leader_mut();
        if leader.pending_reads() >= PENDING_READS_MAX {
            self.respond(
                request,
                error_response(ErrorCode::Busy, "too many reads waiting; retry shortly"),
            );
            return;
        }
        let unchecked = crate::planted::active(crate::planted::Bug::ReadWithoutLease);
        let serving = matches!(leader.phase, LeaderPhase::Active { noop_index } if commit_index >= noop_index);
        if !serving && !unchecked {
            leader.reads_before_activation.push((request, read));
        } else if now < leader.lease_until || unchecked {
            leader
                .reads_waiting_apply
                .push((commit_index, request, read));
            self.serve_confirmed_reads();
        } else {
            let round = leader.heartbeat_round + 1;
            leader
                .reads_waiting_round
                .push((round, commit_index, request, read));
            leader.heartbeat_requested = true;
        }
    }

    /// Answers confirmed reads whose read index the state machine has reached.
    pub(crate) fn serve_confirmed_reads(&mut self) {
        let applied = self.applied_index;
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut leader.reads_waiting_apply)
            .into_iter()
            .partition(|(read_index, _, _)| *read_index <= applied);
        leader.reads_waiting_apply = waiting;
        for (_, request, read) in ready {
            self.answer_read(request, &read);
        }
    }

    /// Sends a new heartbeat round to every follower and rewinds followers that went quiet.
    pub(crate) fn leader_heartbeat(&mut self) {
        let now = self.now;
        let commit_index = self.commit_index;
        let retransmit_after = self.config.heartbeat_interval_ms;
        let last_index = self.log.last_index();
        let leader = self.leader_mut();
        leader.heartbeat_requested = false;
        leader.heartbeat_round += 1;
        let round = leader.heartbeat_round;
        leader.round_sent_at.insert(round, now);
        while leader.round_sent_at.len() > HEARTBEAT_ROUNDS_KEPT {
            leader.round_sent_at.pop_first();
        }
        for progress in leader.progress.values_mut() {
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
        self.update_lease();
    }

    pub(crate) fn handle_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, ack: HeartbeatAck) {
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        if leader.ballot != ballot {
            return;
        }
        let acked = leader.round_acked.entry(from).or_insert(0);
        *acked = (*acked).max(ack.round);
        if let Some(progress) = leader.progress.get_mut(&from) {
            progress.answered_at = progress.answered_at.max(self.now);
        }
        self.update_lease();
    }

    /// Extends the lease to the send time of the newest round a quorum acknowledged, plus the
    /// lease duration, and confirms reads that waited for such a round.
    fn update_lease(&mut self) {
        let quorum = self.quorum();
        let lease_duration = self.config.lease_duration_ms();
        let leader = self.leader_mut();
        let mut rounds: Vec<u64> = leader
            .progress
            .keys()
            .map(|peer| leader.round_acked.get(peer).copied().unwrap_or(0))
            .collect();
        rounds.push(leader.heartbeat_round);
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_round = rounds[quorum - 1];
        if let Some(sent_at) = leader.round_sent_at.get(&quorum_round) {
            leader.lease_until = leader.lease_until.max(sent_at.plus_millis(lease_duration));
        }
        let (confirmed, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut leader.reads_waiting_round)
                .into_iter()
                .partition(|(round, _, _, _)| *round <= quorum_round);
        leader.reads_waiting_round = waiting;
        leader.reads_waiting_apply.extend(
            confirmed
                .into_iter()
                .map(|(_, read_index, request, read)| (read_index, request, read)),
        );
        self.serve_confirmed_reads();
    }

    /// A leader that has not heard from a quorum for an election timeout steps down, so that
    /// its followers' support runs out and a quorum-connected node can take over.
    /// Only answers to our own ballot count (acknowledgements, rejections, heartbeat acks):
    /// a node that pings us but drops our messages is no follower.
    pub(crate) fn check_leader_quorum(&mut self) {
        let stuck_syncing = matches!(self.leader_mut().phase, LeaderPhase::Syncing { .. })
            && self.now >= self.election_deadline;
        if stuck_syncing || !self.leader_hears_quorum() {
            self.become_follower(None);
        }
    }

    fn leader_hears_quorum(&self) -> bool {
        let Some(leader) = &self.leader else {
            return false;
        };
        // While syncing, only the election deadline bounds the takeover.
        if matches!(leader.phase, LeaderPhase::Syncing { .. }) {
            return self.quorum_connected();
        }
        let window = self.config.election_timeout_ms;
        let answering = leader
            .progress
            .values()
            .filter(|progress| self.now.millis_since(progress.answered_at) < window)
            .count();
        answering + 1 >= self.quorum()
    }

    pub(crate) fn on_heartbeat_timeout(&mut self) {
        match self.role {
            Role::Leader => match self.leader_mut().phase {
                LeaderPhase::Active { .. } => self.leader_heartbeat(),
                LeaderPhase::Syncing {
                    source, next_index, ..
                } => self.resend_log_request(source, next_index),
            },
            Role::Candidate => {
                self.resend_prepares();
                self.ping_peers();
            }
            Role::Follower => self.ping_peers(),
        }
    }

    fn ping_peers(&mut self) {
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send(peer, Body::Ping(paxkv_proto::peer::Ping {}));
        }
    }

    /// Answers the writer of an applied entry, if it was proposed here.
    pub(crate) fn on_applied(
        &mut self,
        index: u64,
        response: Option<paxkv_proto::client::client_response::Body>,
    ) {
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        if let Some(requests) = leader.pending_writes.remove(&index) {
            let response = response.expect("a proposed command always has an answer");
            for request in requests {
                self.respond(request, response.clone());
            }
        }
    }
}
