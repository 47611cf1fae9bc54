//! The leader: taking over, proposing, stamping log time, and answering writes once applied.
//! Its state is split by concept: `replication` (what each follower holds, what commits),
//! `lease` (heartbeat rounds and the read lease), `reads` (linearizable reads waiting for a
//! round or for the state machine) and `log_time` (the clock TTLs expire by).

mod lease;
mod log_time;
mod reads;
mod replication;

use std::collections::BTreeMap;

use paxkv_proto::client::ErrorCode;
use paxkv_proto::peer::{entry::Kind, Ballot, Command, Entry, LogEntry, LogState, Noop};

use crate::kv::error_response;
use crate::log::Log;
use crate::replica::Replica;
use crate::types::{NodeId, RequestId, Time};

pub(crate) use lease::Lease;
pub(crate) use log_time::LogClock;
pub(crate) use reads::ReadQueues;
pub(crate) use replication::Progress;

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

#[derive(Debug)]
pub(crate) struct LeaderState {
    pub(crate) ballot: Ballot,
    pub(crate) phase: LeaderPhase,
    /// Promises that arrived after the quorum did, kept until the take-over sync is done.
    pub(crate) promises: BTreeMap<NodeId, LogState>,
    /// What each follower holds of our log.
    pub(crate) followers: BTreeMap<NodeId, Progress>,
    pub(crate) lease: Lease,
    pub(crate) reads: ReadQueues,
    /// Requests answered by the entry at an index.
    pub(crate) writes: BTreeMap<u64, Vec<RequestId>>,
    pub(crate) log_clock: LogClock,
    /// The active configurations (in force at the commit point, newest) `followers` was last
    /// made to match.
    pub(crate) followers_synced_for: Option<(u64, u64)>,
}

impl LeaderState {
    pub(crate) fn new(
        ballot: Ballot,
        peers: impl Iterator<Item = NodeId>,
        promises: BTreeMap<NodeId, LogState>,
        now: Time,
    ) -> LeaderState {
        LeaderState {
            ballot,
            phase: LeaderPhase::Active { noop_index: 0 },
            promises,
            followers: peers.map(|peer| (peer, Progress::new(now))).collect(),
            lease: Lease::default(),
            reads: ReadQueues::default(),
            writes: BTreeMap::new(),
            log_clock: LogClock::new(now),
            followers_synced_for: None,
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        matches!(self.phase, LeaderPhase::Active { .. })
    }

    pub(crate) fn match_index(&self, peer: NodeId) -> Option<u64> {
        self.followers
            .get(&peer)
            .map(|progress| progress.match_index)
    }

    /// Appends an entry of our ballot stamped with the log time.
    pub(crate) fn append(&mut self, log: &mut Log, now: Time, kind: Kind) -> u64 {
        let index = log.last_index() + 1;
        let log_time_ms = self.log_clock.stamp(now);
        log.append(LogEntry {
            index,
            ballot: Some(self.ballot),
            entry: Some(Entry {
                kind: Some(kind),
                log_time_ms,
            }),
        });
        index
    }

    /// Answers everything still waiting when leadership ends: writes may still commit under a
    /// later leader, so their outcome is unknown; reads have no effect and can simply be retried.
    pub(crate) fn fail_pending(self, replica: &mut Replica) {
        let LeaderState { writes, reads, .. } = self;
        for request in writes.into_values().flatten() {
            replica.respond(
                request,
                error_response(
                    ErrorCode::OutcomeUnknown,
                    "leadership changed while the write was in flight; it may or may not have \
                     taken effect; retrying with the same client id and sequence is safe",
                ),
            );
        }
        for request in reads.into_requests() {
            let error = replica.not_leader_error();
            replica.respond(request, error);
        }
    }
}

impl Replica {
    /// Starts proposing: a no-op commits everything adopted, then reads are served.
    pub(crate) fn activate_leader(&mut self) {
        // The take-over may have adopted change entries: replicate to who is a peer now.
        self.leader_sync_followers();
        let peers: Vec<NodeId> = self.peers().collect();
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        let promises = std::mem::take(&mut leader.promises);
        let starts: BTreeMap<NodeId, u64> = peers
            .into_iter()
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
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        leader.log_clock.start(adopted_log_time_ms, now);
        let noop_index = leader.append(&mut self.log, now, Kind::Noop(Noop {}));
        leader.phase = LeaderPhase::Active { noop_index };
        for (peer, next_index) in starts {
            if let Some(progress) = leader.followers.get_mut(&peer) {
                progress.restart_at(next_index, now);
            }
        }
        self.leader_heartbeat();
    }

    pub(crate) fn leader_handle_late_promise(&mut self, from: NodeId, log: LogState) {
        let next = self.next_index_from_log_state(&log);
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        if !leader.is_active() {
            leader.promises.insert(from, log);
            return;
        }
        // A promise from a node that is no peer (removed meanwhile) has no progress to set.
        if let Some(progress) = leader.followers.get_mut(&from) {
            if progress.match_index == 0 {
                progress.next_index = next;
            }
        }
    }

    pub(crate) fn leader_propose(&mut self, request: RequestId, command: Command) {
        let uncommitted = self.log.last_index() - self.commit_index;
        let room = uncommitted < self.config.uncommitted_entries_max;
        let now = self.now;
        let refusal = match self.role.leader_mut() {
            None => Some(self.not_leader_error()),
            Some(leader) if !leader.is_active() => Some(error_response(
                ErrorCode::NoQuorum,
                "this node is taking over leadership; retry shortly",
            )),
            Some(_) if !room => Some(error_response(
                ErrorCode::Busy,
                "too many writes waiting for a quorum; retry shortly",
            )),
            Some(leader) => {
                // Every keep-alive gets an entry of its own, stamped when it arrived. Sharing
                // the entry of an earlier one still in flight would answer a later request
                // with a lease extended from an older time (or not at all, if that entry is a
                // retry answered from its session).
                let index = leader.append(&mut self.log, now, Kind::Command(command));
                leader.writes.entry(index).or_default().push(request);
                None
            }
        };
        if let Some(refusal) = refusal {
            self.respond(request, refusal);
        }
    }

    /// An idle leader keeps log time moving while anything waits for it (a TTL or a lease).
    pub(crate) fn maybe_propose_tick(&mut self) {
        // A leader without a quorum must not grow its log with ticks forever.
        let room = self.log.last_index() - self.commit_index < self.config.uncommitted_entries_max;
        let deadlines = self.kv.has_deadlines();
        let expiry_lags = self.kv.expiry_lags();
        let applied_all = self.kv.applied_index() == self.log.last_index();
        let (now, tick_interval_ms) = (self.now, self.config.log_tick_interval_ms);
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        let idle_ms = now.millis_since(leader.log_clock.last_append_at);
        // Expiry that stopped short to bound its work goes on with the next entry at once, as
        // soon as the last one applied (one such entry in flight at a time).
        let catching_up = expiry_lags && applied_all;
        if leader.is_active() && room && deadlines && (idle_ms >= tick_interval_ms || catching_up) {
            leader.append(&mut self.log, now, Kind::Noop(Noop {}));
        }
    }

    /// A leader that has not heard from a quorum for an election timeout steps down, so that
    /// its followers' support runs out and a quorum-connected node can take over. A take-over
    /// sync that outlives the election deadline gives up too.
    pub(crate) fn check_leader_quorum(&mut self) {
        let Some(leader) = self.role.leader() else {
            return;
        };
        let stuck_syncing = !leader.is_active() && self.now >= self.election_deadline;
        if stuck_syncing || !self.leader_hears_quorum() {
            self.become_follower(None);
        }
    }

    /// The heartbeat timer of a leader: a new round, or a repeat of the take-over log request.
    pub(crate) fn on_leader_heartbeat_timeout(&mut self) {
        let Some(leader) = self.role.leader() else {
            return;
        };
        match leader.phase {
            LeaderPhase::Active { .. } => self.leader_heartbeat(),
            LeaderPhase::Syncing {
                source, next_index, ..
            } => self.resend_log_request(source, next_index),
        }
    }

    /// Answers the writer of an applied entry, if it was proposed here.
    pub(crate) fn on_applied(
        &mut self,
        index: u64,
        response: Option<paxkv_proto::client::client_response::Body>,
    ) {
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        if let Some(requests) = leader.writes.remove(&index) {
            let response = response.expect("a proposed command always has an answer");
            for request in requests {
                self.respond(request, response.clone());
            }
        }
    }
}
