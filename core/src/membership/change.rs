//! The replica's side of membership change: the leader checks a change against the rules and
//! appends it as a log entry (it takes effect at once, on every replica that appends it);
//! every replica answers it once applied; a node that learns it was removed stops.

use std::net::SocketAddr;

use paxkv_proto::client::{
    client_response::Body as Response, ErrorCode, Member, MembersResponse, ResponseHeader,
};
use paxkv_proto::peer::{
    entry::Kind, peer_message::Body, ConfigChange, Configuration, MemberAddress, Removed,
};

use super::{
    address_of, apply_change, check_caught_up, check_live_quorum, is_member, learners, member_at,
    next_id, voters, ChangeRefused, MembershipChange,
};
use crate::kv::error_response;
use crate::leader::{LeaderPhase, Progress};
use crate::replica::Replica;
use crate::types::{NodeId, RequestId, Time};

/// A membership request as a client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRequest {
    /// Add a learner reachable at these addresses; the cluster picks its id.
    Add {
        peer_address: String,
        client_address: String,
        /// Addresses of the current members as the proposing node knows them (from its
        /// flags), recorded with the change where the configuration lacks them.
        known: Vec<MemberAddress>,
    },
    Promote(NodeId),
    Remove(NodeId),
}

/// What a checked request does: a new entry to append, or an answer at once (a change that is
/// already done: a learner at that address, a voter promoted, an id retired), so that a
/// request may be retried.
enum Planned {
    Append(Configuration),
    AlreadyDone(NodeId),
}

fn refused(message: impl Into<String>) -> Response {
    error_response(ErrorCode::MembershipRefused, message)
}

impl Replica {
    /// Proposes a membership change that arrived by `now`; answered once the change is
    /// applied (or at once, with the reason, if it is refused).
    pub fn change_membership(&mut self, request: RequestId, change: MemberRequest, now: Time) {
        self.observe_time(now);
        match self.plan_change(&change) {
            Err(refusal) => self.respond(request, refusal),
            Ok(Planned::AlreadyDone(node)) => {
                let answer = self.members_response(node);
                self.respond(request, Response::Members(answer));
            }
            Ok(Planned::Append(next)) => {
                let now = self.now;
                let Some(leader) = self.role.leader_mut() else {
                    unreachable!("a change is planned only while leading");
                };
                let index = leader.append(
                    &mut self.log,
                    now,
                    Kind::ConfigChange(ConfigChange { next: Some(next) }),
                );
                leader.writes.entry(index).or_default().push(request);
                self.leader_sync_followers();
            }
        }
    }

    /// Answers a member list: from the leader only, which knows every member's progress (a
    /// follower redirects, as for a write).
    pub fn list_members(&mut self, request: RequestId, now: Time) {
        self.observe_time(now);
        let answer = if self.role.is_leader() {
            Response::Members(self.members_response(NodeId(0)))
        } else {
            self.not_leader_error()
        };
        self.respond(request, answer);
    }

    /// Checks `change` against every rule, in the order an operator can act on.
    #[allow(clippy::result_large_err)] // the error is the answer itself
    fn plan_change(&self, change: &MemberRequest) -> Result<Planned, Response> {
        let Some(leader) = self.role.leader() else {
            return Err(self.not_leader_error());
        };
        let LeaderPhase::Active { noop_index } = leader.phase else {
            return Err(error_response(
                ErrorCode::NoQuorum,
                "this node is taking over leadership; retry shortly",
            ));
        };
        // A leader that has not committed an entry of its own ballot may hold an uncommitted
        // change of an earlier leader it does not know of yet; a change of its own on top of
        // that one could differ from the configuration in force by two voters.
        if self.commit_index < noop_index {
            return Err(error_response(
                ErrorCode::NoQuorum,
                "this leader has not committed an entry of its own yet; retry shortly",
            ));
        }
        let (newest_index, newest) = self.log.configs().newest_at();
        if newest_index > self.commit_index
            && !crate::planted::active(crate::planted::Bug::ChangesOverlap)
        {
            return Err(refused(format!(
                "a membership change (log index {newest_index}) is still in progress; retry once \
                 it has committed"
            )));
        }
        let (membership_change, address) = match change {
            MemberRequest::Add {
                peer_address,
                client_address,
                ..
            } => {
                if peer_address.parse::<SocketAddr>().is_err() {
                    return Err(error_response(
                        ErrorCode::BadRequest,
                        format!(
                            "`{peer_address}` is not a peer address such as [::1]:7104 or \
                             127.0.0.1:7104"
                        ),
                    ));
                }
                if let Some(member) = member_at(newest, peer_address) {
                    if newest.learners.contains(&member.0) {
                        return Ok(Planned::AlreadyDone(member));
                    }
                    return Err(refused(format!(
                        "{peer_address} is the peer address of voter {member}; remove {member} \
                         first if that node was replaced"
                    )));
                }
                let node = next_id(newest);
                let address = MemberAddress {
                    node: node.0,
                    peer_address: peer_address.clone(),
                    client_address: client_address.clone(),
                };
                (MembershipChange::AddLearner(node), Some(address))
            }
            MemberRequest::Promote(node) if newest.members.contains(&node.0) => {
                return Ok(Planned::AlreadyDone(*node));
            }
            MemberRequest::Remove(node) if newest.retired.contains(&node.0) => {
                return Ok(Planned::AlreadyDone(*node));
            }
            MemberRequest::Promote(node) => (MembershipChange::Promote(*node), None),
            MemberRequest::Remove(node) => (MembershipChange::Remove(*node), None),
        };
        let mut next = apply_change(newest, membership_change)
            .map_err(|refusal| refused(refusal.to_string()))?;
        if let MembershipChange::Promote(node) = membership_change {
            // A voter that does not answer, or is far behind, only makes quorums harder to
            // reach (and holds up every commit that needs it).
            let window = self.config.election_timeout_ms;
            let answering = leader.followers.get(&node).is_some_and(|progress| {
                progress.match_index > 0 && progress.heard_within(self.now, window)
            });
            if !answering {
                return Err(refused(ChangeRefused::LearnerSilent(node).to_string()));
            }
            let matched = leader.match_index(node).unwrap_or(0);
            check_caught_up(node, matched, self.commit_index)
                .map_err(|refusal| refused(refusal.to_string()))?;
        }
        if let Some(address) = address {
            next.addresses.push(address);
        }
        if let MemberRequest::Add { known, .. } = change {
            for address in known {
                let node = NodeId(address.node);
                // Retired ids too: a node removed while down that comes back must be told, and
                // a member that joined later knows its address only from here.
                let known_id = is_member(&next, node) || next.retired.contains(&node.0);
                if known_id && address_of(&next, node).is_none() {
                    next.addresses.push(address.clone());
                }
            }
        }
        next.addresses.sort_unstable_by_key(|address| address.node);
        let window = self.config.election_timeout_ms;
        check_live_quorum(&next, |node| {
            node == self.id
                || leader
                    .followers
                    .get(&node)
                    .is_some_and(|progress| progress.heard_within(self.now, window))
        })
        .map_err(|refusal| refused(refusal.to_string()))?;
        Ok(Planned::Append(next))
    }

    /// The leader replicates to every peer of the configurations now active, no more.
    /// Called every turn, so it does the work only when the active configurations changed
    /// (one came in force at the commit point, or a newer one was appended or dropped).
    pub(crate) fn leader_sync_followers(&mut self) {
        let configs = self.log.configs();
        let active = (
            configs.in_force_at(self.commit_index).0,
            configs.newest_at().0,
        );
        if self
            .role
            .leader()
            .is_none_or(|leader| leader.followers_synced_for == Some(active))
        {
            return;
        }
        let peers: Vec<NodeId> = self.peers().collect();
        let (now, next_index) = (self.now, self.log.last_index() + 1);
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        leader.followers_synced_for = Some(active);
        leader.followers.retain(|node, _| peers.contains(node));
        for peer in peers {
            leader.followers.entry(peer).or_insert_with(|| {
                let mut progress = Progress::new(now);
                progress.restart_at(next_index, now);
                progress
            });
        }
    }

    /// A change entry at `index` was applied: its answer, and this node's removal if it is
    /// the one removed.
    pub(crate) fn on_config_change_applied(&mut self, index: u64) -> Response {
        let before = self.configuration_at(index.saturating_sub(1));
        let after = self.configuration_at(index);
        let changed = changed_member(&before, &after).unwrap_or(NodeId(0));
        Response::Members(self.members_response(changed))
    }

    /// If the change at `index` removed this node: it stops (a leader steps down, having
    /// answered the removal, and its followers elect another once its lease has run out).
    pub(crate) fn stop_if_removed(&mut self, index: u64) {
        if self.configuration_at(index).retired.contains(&self.id.0) {
            self.on_removed(index);
        }
    }

    pub(crate) fn on_removed(&mut self, index: u64) {
        if self.removed_at.is_none() {
            self.removed_at = Some(index.max(1));
            // Kept, so that the node refuses to start again even if its log never held the
            // change (it was down, and a member told it).
            self.hard_state_dirty = true;
            self.become_follower(None);
        }
    }

    /// If `from` was removed by a configuration this node knows committed: the index of that
    /// configuration (the sender is told, and stops).
    pub(crate) fn committed_removal_of(&self, from: NodeId) -> Option<u64> {
        let (index, configuration) = self.log.configs().in_force_at(self.commit_index);
        configuration.retired.contains(&from.0).then_some(index)
    }

    pub(crate) fn tell_removed(&mut self, to: NodeId, configuration_index: u64) {
        self.send(
            to,
            Body::Removed(Removed {
                configuration_index,
            }),
        );
    }

    /// The log index of the configuration that removed this node, once it knows.
    pub fn removed_at(&self) -> Option<u64> {
        self.removed_at
    }

    /// The newest configuration in this node's log (committed or not) and its index.
    pub fn configuration(&self) -> (u64, &Configuration) {
        self.log.configs().newest_at()
    }

    /// The configuration the cluster started with (this log's index 0): a joining node's log
    /// starts from it, so the join answer carries its voters.
    pub fn first_configuration(&self) -> &Configuration {
        &self.first_configuration
    }

    /// The members as this node knows them; `changed` names the node a change was about.
    pub fn members_response(&self, changed: NodeId) -> MembersResponse {
        let (index, newest) = self.log.configs().newest_at();
        let window = self.config.election_timeout_ms;
        let leader = self.role.leader();
        let member = |node: NodeId, voter: bool| {
            let address = address_of(newest, node);
            let (match_index, reachable) = if node == self.id {
                (self.log.stable_last(), true)
            } else {
                let matched = leader.and_then(|leader| leader.match_index(node));
                (matched.unwrap_or(0), self.heard_within(node, window))
            };
            Member {
                node_id: node.0,
                voter,
                peer_address: address.map(|a| a.peer_address.clone()).unwrap_or_default(),
                client_address: address
                    .map(|a| a.client_address.clone())
                    .unwrap_or_default(),
                match_index,
                reachable,
            }
        };
        let mut members: Vec<Member> = voters(newest)
            .into_iter()
            .map(|node| member(node, true))
            .collect();
        members.extend(learners(newest).into_iter().map(|node| member(node, false)));
        MembersResponse {
            header: Some(ResponseHeader {
                revision: self.kv.revision(),
                served_by: self.id.0,
                log_time_ms: self.kv.log_time_ms(),
                applied_index: self.applied_index,
                leader_address: String::new(),
            }),
            members,
            configuration_index: index,
            change_in_progress: index > self.commit_index,
            node_id: changed.0,
            retired: newest.retired.clone(),
            leader_id: self.leader().map_or(0, |leader| leader.0),
            first_voters: self.first_configuration.members.clone(),
        }
    }
}

/// The node whose place differs between two configurations in a row (added, promoted or
/// removed).
fn changed_member(before: &Configuration, after: &Configuration) -> Option<NodeId> {
    let place = |configuration: &Configuration, node: u64| {
        (
            configuration.members.contains(&node),
            configuration.learners.contains(&node),
            configuration.retired.contains(&node),
        )
    };
    after
        .members
        .iter()
        .chain(&after.learners)
        .chain(&after.retired)
        .copied()
        .find(|node| place(before, *node) != place(after, *node))
        .map(NodeId)
        .filter(|node| is_member(after, *node) || after.retired.contains(&node.0))
}
