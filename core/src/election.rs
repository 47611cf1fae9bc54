//! Leader election (phase 1): campaigning, promises, refusals, and the new leader's catch-up
//! from the most advanced log among its promises.
//!
//! Partial connectivity: a node campaigns only while it hears from a quorum; an acceptor refuses
//! a new ballot while it still hears from its leader (stickiness), so two nodes that cannot see
//! each other do not keep pre-empting each other; a leader that stops hearing from a quorum
//! steps down, so its followers' support runs out and a quorum-connected node takes over.

use std::collections::{BTreeMap, BTreeSet};

use paxkv_proto::peer::{
    peer_message::Body, Ballot, ConfigAt, Configuration, LogRequest, LogResponse, LogState, Nack,
    PreVote, PreVoteAnswer, Prepare, Promise,
};

use crate::leader::{LeaderPhase, LeaderState};
use crate::membership;
use crate::quorum::Quorum;
use crate::replica::Replica;
use crate::role::RoleState;
use crate::types::{ballot_or_zero, log_state_or_empty, NodeId};
use crate::ACCEPT_BATCH_BYTES_MAX;
use crate::ACCEPT_BATCH_ENTRIES_MAX;

/// A pre-vote in progress: the round we would campaign with and who would promise it.
#[derive(Debug)]
pub(crate) struct PreVoteState {
    pub(crate) round: u64,
    pub(crate) granted: BTreeSet<NodeId>,
}

#[derive(Debug)]
pub(crate) struct CandidateState {
    pub(crate) ballot: Ballot,
    pub(crate) promises: BTreeMap<NodeId, LogState>,
    /// The configurations each promiser's log holds active at its commit point.
    pub(crate) promised_configs: BTreeMap<NodeId, Vec<Configuration>>,
    /// Our own promise counts only once it is durable.
    pub(crate) self_promise_durable: bool,
}

impl CandidateState {
    /// The promiser with the most advanced log (the lowest id among equals), if one is more
    /// advanced than `own`.
    fn best_log_above(&self, own: &LogState) -> Option<(NodeId, LogState)> {
        self.promises
            .iter()
            .max_by_key(|(node, log)| (log_rank(log), std::cmp::Reverse(**node)))
            .map(|(node, log)| (*node, *log))
            .filter(|(_, log)| log_rank(log) > log_rank(own))
    }
}

/// Orders logs by how advanced they are: the ballot of the last entry, then its index.
fn log_rank(log: &LogState) -> (Ballot, u64) {
    (ballot_or_zero(log.last_ballot), log.last_index)
}

impl Replica {
    pub(crate) fn on_election_timeout(&mut self) {
        // A learner (or a voter on its way out) never campaigns: it has no vote to win with,
        // and a ballot it raised would only depose the leader it learns from.
        let voter = self.log.configs().newest().members.contains(&self.id.0);
        if !voter && !crate::planted::active(crate::planted::Bug::LearnerCampaigns) {
            self.reset_election_deadline();
            return;
        }
        if self.quorum_connected() {
            self.start_pre_vote();
        } else {
            if matches!(self.role, RoleState::Candidate(_)) {
                self.become_follower(None);
            }
            self.reset_election_deadline();
        }
    }

    /// Asks the peers whether they would promise our next ballot, without raising our own
    /// promise; the campaign starts once a quorum would.
    fn start_pre_vote(&mut self) {
        let round = self.round_seen_max.max(self.promised.round) + 1;
        self.reset_election_deadline();
        if crate::planted::active(crate::planted::Bug::NoPreVote) {
            self.campaign();
            return;
        }
        self.pre_vote = Some(PreVoteState {
            round,
            granted: BTreeSet::new(),
        });
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send(peer, Body::PreVote(PreVote { round }));
        }
        self.check_pre_vote_quorum();
    }

    /// Would we promise `from` a ballot of `round` now? The same rule as for a real prepare.
    pub(crate) fn handle_pre_vote(&mut self, from: NodeId, _ballot: Ballot, pre_vote: PreVote) {
        let ballot = Ballot::new(pre_vote.round, from.0);
        let granted = ballot > self.promised && !self.supports_another_than(from);
        self.send(
            from,
            Body::PreVoteAnswer(PreVoteAnswer {
                round: pre_vote.round,
                granted,
            }),
        );
    }

    pub(crate) fn handle_pre_vote_answer(
        &mut self,
        from: NodeId,
        _ballot: Ballot,
        answer: PreVoteAnswer,
    ) {
        let Some(pre_vote) = self.pre_vote.as_mut() else {
            return;
        };
        if answer.round == pre_vote.round && answer.granted {
            pre_vote.granted.insert(from);
            self.check_pre_vote_quorum();
        }
    }

    fn check_pre_vote_quorum(&mut self) {
        let Some(pre_vote) = &self.pre_vote else {
            return;
        };
        let granted = self
            .quorum()
            .is_reached_by(|node| node == self.id || pre_vote.granted.contains(&node));
        if granted && !self.role.is_leader() {
            self.pre_vote = None;
            self.campaign();
        }
    }

    fn campaign(&mut self) {
        let round = self.round_seen_max.max(self.promised.round) + 1;
        let ballot = Ballot::new(round, self.id.0);
        self.set_promised(ballot);
        let candidate = RoleState::Candidate(CandidateState {
            ballot,
            promises: BTreeMap::new(),
            promised_configs: BTreeMap::new(),
            self_promise_durable: false,
        });
        self.change_role(candidate);
        self.reset_election_deadline();
        self.broadcast_prepare(&[]);
    }

    pub(crate) fn broadcast_prepare(&mut self, skip: &[NodeId]) {
        let peers: Vec<NodeId> = self.peers().filter(|peer| !skip.contains(peer)).collect();
        for peer in peers {
            self.send(
                peer,
                Body::Prepare(Prepare {
                    commit_index: self.commit_index,
                }),
            );
        }
    }

    pub(crate) fn resend_prepares(&mut self) {
        let answered: Vec<NodeId> = match &self.role {
            RoleState::Candidate(candidate) => candidate.promises.keys().copied().collect(),
            _ => return,
        };
        self.broadcast_prepare(&answered);
    }

    /// Whether this node still supports a live leader other than `candidate` (or leads
    /// itself): the stickiness rule, the same for a prepare and for a pre-vote.
    fn supports_another_than(&self, candidate: NodeId) -> bool {
        self.role.is_leader() || (self.now < self.support_until && self.leader() != Some(candidate))
    }

    pub(crate) fn handle_prepare(&mut self, from: NodeId, ballot: Ballot, _prepare: Prepare) {
        if ballot < self.promised {
            self.nack_stale_ballot(from);
            return;
        }
        if ballot > self.promised {
            if self.supports_another_than(from) {
                self.send(from, Body::Nack(Nack { leader_alive: true }));
                return;
            }
            self.set_promised(ballot);
            match self.role.follower_mut() {
                Some(follower) => {
                    follower.leader = None;
                    self.reset_election_deadline();
                }
                None => self.become_follower(None),
            }
        }
        if ballot.node != from.0 {
            return;
        }
        let log = self.log_state();
        let configs = self
            .log
            .configs()
            .active(self.commit_index)
            .map(|(index, configuration)| ConfigAt {
                index,
                configuration: Some(configuration.clone()),
            })
            .collect();
        self.send_after_persist(
            from,
            Body::Promise(Promise {
                log: Some(log),
                configs,
            }),
        );
    }

    /// Tells a sender of a lower ballot that this acceptor promised a higher one.
    pub(crate) fn nack_stale_ballot(&mut self, to: NodeId) {
        self.send(
            to,
            Body::Nack(Nack {
                leader_alive: false,
            }),
        );
    }

    pub(crate) fn handle_promise(&mut self, from: NodeId, ballot: Ballot, promise: Promise) {
        let log = log_state_or_empty(promise.log);
        let configs: Vec<Configuration> = promise
            .configs
            .into_iter()
            .filter_map(|at| at.configuration)
            .filter(|configuration| !configuration.members.is_empty())
            .collect();
        match &mut self.role {
            RoleState::Leader(leader) if leader.ballot == ballot => {
                self.leader_handle_late_promise(from, log);
            }
            RoleState::Candidate(candidate) if candidate.ballot == ballot => {
                candidate.promises.insert(from, log);
                candidate.promised_configs.insert(from, configs);
                self.check_promise_quorum();
            }
            _ => {}
        }
    }

    pub(crate) fn handle_nack(&mut self, _from: NodeId, ballot: Ballot, nack: Nack) {
        if nack.leader_alive || ballot <= self.promised {
            // A sticky refusal changes nothing: the campaign times out and retries if it must.
            return;
        }
        if !matches!(self.role, RoleState::Follower(_)) {
            self.become_follower(None);
        }
    }

    pub(crate) fn on_candidate_persisted(&mut self) {
        let durable = self.durable_promised;
        if let Some(candidate) = self.role.candidate_mut() {
            if candidate.ballot == durable {
                candidate.self_promise_durable = true;
            }
        }
        self.check_promise_quorum();
    }

    /// A candidate counts its promises against the configuration of the log it will adopt:
    /// the newest of the most advanced promised log (it may be newer than its own, whose
    /// majority could then miss a value chosen under it), else its own.
    fn election_quorum(&self, candidate: &CandidateState) -> Quorum {
        let promised = candidate
            .best_log_above(&self.log_state())
            .and_then(|(holder, _)| candidate.promised_configs.get(&holder))
            .filter(|configs| !configs.is_empty())
            .filter(|_| {
                !crate::planted::active(crate::planted::Bug::ElectionCountsOwnConfiguration)
            });
        match promised.and_then(|configs| configs.last()) {
            Some(newest) => Quorum::joint([membership::voters(newest)]),
            None => self.quorum(),
        }
    }

    fn check_promise_quorum(&mut self) {
        let RoleState::Candidate(candidate) = &self.role else {
            return;
        };
        let elected = self.election_quorum(candidate).is_reached_by(|node| {
            if node == self.id {
                candidate.self_promise_durable
            } else {
                candidate.promises.contains_key(&node)
            }
        });
        if elected {
            match self.take_role() {
                RoleState::Candidate(candidate) => self.become_leader(candidate),
                other => self.role = other,
            }
        }
    }

    fn become_leader(&mut self, candidate: CandidateState) {
        assert_eq!(
            candidate.ballot, self.promised,
            "a leader leads with the ballot it promised"
        );
        let best = candidate.best_log_above(&self.log_state());
        let leader = LeaderState::new(candidate.ballot, self.peers(), candidate.promises, self.now);
        self.role = RoleState::Leader(Box::new(leader));
        match best {
            Some((source, log))
                if !crate::planted::active(crate::planted::Bug::IgnorePromisedLogs) =>
            {
                let next_index = self.commit_index + 1;
                self.request_log(source, log.last_index, next_index);
            }
            _ => self.activate_leader(),
        }
    }

    /// A new leader asks the holder of the most advanced log for its entries.
    pub(crate) fn handle_log_request(&mut self, from: NodeId, ballot: Ballot, request: LogRequest) {
        if ballot != self.promised || ballot.node != from.0 {
            if ballot < self.promised {
                self.nack_stale_ballot(from);
            }
            return;
        }
        if request.from_index <= self.log.floor_index() {
            self.send(
                from,
                Body::LogResponse(LogResponse {
                    from_index: request.from_index,
                    entries: Vec::new(),
                    last_index: self.log.last_index(),
                    snapshot_follows: true,
                }),
            );
            self.start_snapshot_transfer(from);
            return;
        }
        let entries = self.log.slice(
            request.from_index,
            ACCEPT_BATCH_ENTRIES_MAX,
            ACCEPT_BATCH_BYTES_MAX,
        );
        self.send(
            from,
            Body::LogResponse(LogResponse {
                from_index: request.from_index,
                entries,
                last_index: self.log.last_index(),
                snapshot_follows: false,
            }),
        );
    }

    pub(crate) fn handle_log_response(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        response: LogResponse,
    ) {
        let Some(leader) = self.role.leader() else {
            return;
        };
        let LeaderPhase::Syncing {
            source,
            target_last,
            next_index,
        } = leader.phase
        else {
            return;
        };
        if source != from || ballot != leader.ballot || response.snapshot_follows {
            return;
        }
        if response.from_index != next_index {
            return;
        }
        // Our log becomes the source's from here on: drop our own suffix even when the source
        // sends nothing (its log may end where ours still has stale entries).
        assert!(
            next_index > self.commit_index,
            "sync never rewrites committed entries"
        );
        self.log.truncate_from(next_index);
        for entry in response.entries {
            self.log.append(entry);
        }
        self.continue_sync(source, target_last, response.last_index.min(target_last));
    }

    /// Asks `source` for its log from `next_index`, remembering where the copy stands.
    pub(crate) fn request_log(&mut self, source: NodeId, target_last: u64, next_index: u64) {
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        leader.phase = LeaderPhase::Syncing {
            source,
            target_last,
            next_index,
        };
        self.resend_log_request(source, next_index);
    }

    /// Repeats the outstanding log request (it or its answer may have been lost).
    pub(crate) fn resend_log_request(&mut self, source: NodeId, next_index: u64) {
        self.send(
            source,
            Body::LogRequest(LogRequest {
                from_index: next_index,
            }),
        );
    }

    /// After a response: asks for more or, once the log reached the source's, starts leading.
    fn continue_sync(&mut self, source: NodeId, target_last: u64, source_last: u64) {
        let next_index = self.log.last_index() + 1;
        if self.log.last_index() >= source_last {
            self.activate_leader();
            return;
        }
        self.request_log(source, target_last, next_index);
    }

    /// Where to start sending a follower entries, judged from the log state it reported.
    pub(crate) fn next_index_from_log_state(&self, log: &LogState) -> u64 {
        let matches = log.last_index <= self.log.last_index()
            && self.log.ballot_at(log.last_index) == Some(ballot_or_zero(log.last_ballot));
        let next = if matches {
            log.last_index + 1
        } else {
            log.commit_index.max(log.snapshot_index) + 1
        };
        next.min(self.log.last_index() + 1)
    }
}
