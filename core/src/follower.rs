//! Acceptor side of phase 2: accepting the leader's entries, learning the commit index, and
//! acknowledging heartbeats (which is what the leader's read lease rests on).

use paxkv_proto::peer::{
    peer_message::Body, Accept, AcceptReject, Accepted, Ballot, Heartbeat, HeartbeatAck, LogEntry,
};

use crate::replica::Replica;
use crate::role::{FollowerState, RoleState};
use crate::types::{ballot_or_zero, NodeId};

impl Replica {
    /// Common to every message from a leader. Returns false if the ballot is stale.
    pub(crate) fn accept_leader_contact(&mut self, from: NodeId, ballot: Ballot) -> bool {
        if ballot < self.promised {
            self.nack_stale_ballot(from);
            return false;
        }
        if ballot.node != from.0 {
            return false;
        }
        let following =
            matches!(&self.role, RoleState::Follower(follower) if follower.leader == Some(from));
        if !following || ballot > self.promised {
            // What we knew of an earlier leader's log says nothing about this one's.
            self.change_role(RoleState::Follower(FollowerState {
                leader: Some(from),
                ..FollowerState::default()
            }));
            self.reset_election_deadline();
        }
        // Accepting from a higher ballot implies promising it: its leader passed phase 1.
        self.set_promised(ballot);
        self.support_until = self.now.plus_millis(self.config.election_timeout_ms);
        self.reset_election_deadline();
        true
    }

    pub(crate) fn handle_accept(&mut self, from: NodeId, ballot: Ballot, accept: Accept) {
        // What no correct leader sends is dropped before it counts as contact: taken as it is,
        // it tripped the assertions below that guard committed entries (a peer proved the
        // cluster secret, but may run other code).
        if !accept_is_well_formed(&accept) {
            return;
        }
        if !self.accept_leader_contact(from, ballot) {
            return;
        }
        let end_index = accept.prev_index + accept.entries.len() as u64;
        let mut prev_index = accept.prev_index;
        let mut prev_ballot = ballot_or_zero(accept.prev_ballot);
        let mut entries = accept.entries;
        let floor_index = self.log.floor_index();
        if prev_index < floor_index {
            // Entries up to the floor are applied (committed), hence equal to the leader's:
            // skip them.
            let skip = ((floor_index - prev_index) as usize).min(entries.len());
            entries.drain(..skip);
            prev_index = floor_index;
            prev_ballot = self
                .log
                .ballot_at(floor_index)
                .expect("the floor has a ballot");
        }
        if prev_index > self.log.last_index() {
            self.reject_accept(from, self.log.last_index());
            return;
        }
        if self.log.ballot_at(prev_index) != Some(prev_ballot) {
            let hint = self.conflict_hint(prev_index);
            self.reject_accept(from, hint);
            return;
        }
        self.accept_entries(prev_index, entries);
        let matched = end_index.max(floor_index);
        self.learn_from_leader(matched, accept.commit_index);
        // Acknowledged once durable, and only if we still follow this ballot then: entries
        // accepted now may be replaced by a newer leader before the next sync.
        let match_index = match self.pending_accepted {
            Some((to, pending_ballot, pending_match)) if to == from && pending_ballot == ballot => {
                pending_match.max(matched)
            }
            _ => matched,
        };
        self.pending_accepted = Some((from, ballot, match_index));
        if crate::planted::active(crate::planted::Bug::AckBeforeSync) {
            self.send(from, Body::Accepted(Accepted { match_index }));
        }
    }

    /// After a sync: tells the leader how far its log is durably held here.
    pub(crate) fn flush_pending_accepted(&mut self) {
        let Some((leader, ballot, match_index)) = self.pending_accepted else {
            return;
        };
        if ballot != self.promised {
            self.pending_accepted = None;
            return;
        }
        if self.log.stable_last() >= match_index {
            self.pending_accepted = None;
            self.send(leader, Body::Accepted(Accepted { match_index }));
        }
    }

    /// Appends the leader's entries after `prev_index`, replacing a conflicting suffix.
    fn accept_entries(&mut self, prev_index: u64, entries: Vec<LogEntry>) {
        for (offset, entry) in entries.into_iter().enumerate() {
            let index = prev_index + 1 + offset as u64;
            assert_eq!(entry.index, index, "accepted entries are contiguous");
            let entry_ballot = ballot_or_zero(entry.ballot);
            match self.log.ballot_at(index) {
                Some(existing) if existing == entry_ballot => continue,
                Some(_) => {
                    assert!(
                        index > self.commit_index,
                        "{}: a committed entry at {index} would change (commit {})",
                        self.id,
                        self.commit_index
                    );
                    self.log.truncate_from(index);
                    self.log.append(entry);
                }
                None => self.log.append(entry),
            }
        }
    }

    /// Where the leader should retry after a mismatch at `prev_index`: before the run of entries
    /// with the mismatching ballot, never below what is committed.
    fn conflict_hint(&self, prev_index: u64) -> u64 {
        assert!(
            prev_index > self.commit_index,
            "{}: committed entry {prev_index} differs from the leader's (commit {})",
            self.id,
            self.commit_index
        );
        let conflicting = self.log.ballot_at(prev_index);
        let floor = self.commit_index.max(self.log.floor_index());
        let mut index = prev_index;
        while index - 1 > floor && self.log.ballot_at(index - 1) == conflicting {
            index -= 1;
        }
        index - 1
    }

    fn reject_accept(&mut self, to: NodeId, hint_index: u64) {
        let log = self.log_state();
        self.send(
            to,
            Body::AcceptReject(AcceptReject {
                hint_index,
                log: Some(log),
            }),
        );
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, ballot: Ballot, heartbeat: Heartbeat) {
        if !self.accept_leader_contact(from, ballot) {
            return;
        }
        self.learn_from_leader(0, heartbeat.commit_index);
        let log = self.log_state();
        self.send(
            from,
            Body::HeartbeatAck(HeartbeatAck {
                round: heartbeat.round,
                log: Some(log),
            }),
        );
    }

    /// A follower commits what the leader committed, as far as its log is known to match the
    /// leader's and is durable: commit never passes what is durably accepted.
    pub(crate) fn follower_update_commit(&mut self) {
        let RoleState::Follower(follower) = &self.role else {
            return;
        };
        let commit = follower
            .leader_commit_seen
            .min(follower.leader_match_index)
            .min(self.log.stable_last());
        if commit > self.commit_index {
            self.commit_index = commit;
            self.hard_state_dirty = true;
        }
    }

    /// The leader showed that our log matches its own through `matched` and that it committed
    /// through `commit_index`: commit what both allow.
    pub(crate) fn learn_from_leader(&mut self, matched: u64, commit_index: u64) {
        if let Some(follower) = self.role.follower_mut() {
            follower.leader_match_index = follower.leader_match_index.max(matched);
            follower.leader_commit_seen = follower.leader_commit_seen.max(commit_index);
        }
        self.follower_update_commit();
    }
}

/// Entries numbered on from `prev_index + 1`, and no ballot before the first entry of a log (a
/// log's start has the zero ballot, or a snapshot's, at an index above 0).
fn accept_is_well_formed(accept: &Accept) -> bool {
    let numbered = accept.entries.iter().enumerate().all(|(offset, entry)| {
        Some(entry.index) == accept.prev_index.checked_add(offset as u64 + 1)
    });
    let start = accept.prev_index != 0 || ballot_or_zero(accept.prev_ballot) == Ballot::ZERO;
    numbered && start
}
