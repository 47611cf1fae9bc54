//! What a replica is doing now, as one value: following, campaigning or leading, each with the
//! state only that role has. Acceptor state (promise, log, commit) belongs to every role and
//! stays on the replica.

use crate::election::CandidateState;
use crate::leader::LeaderState;
use crate::types::NodeId;

/// The role, as monitors see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

/// What a follower knows of the leader it follows.
#[derive(Debug, Default)]
pub(crate) struct FollowerState {
    /// The leader it follows, once one has been heard in the promised ballot.
    pub(crate) leader: Option<NodeId>,
    /// Highest index known to match the leader's log.
    pub(crate) leader_match_index: u64,
    /// Highest commit index the leader announced.
    pub(crate) leader_commit_seen: u64,
}

#[derive(Debug)]
pub(crate) enum RoleState {
    Follower(FollowerState),
    Candidate(CandidateState),
    Leader(Box<LeaderState>),
}

impl RoleState {
    pub(crate) fn role(&self) -> Role {
        match self {
            RoleState::Follower(_) => Role::Follower,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        matches!(self, RoleState::Leader(_))
    }

    pub(crate) fn leader(&self) -> Option<&LeaderState> {
        match self {
            RoleState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    pub(crate) fn leader_mut(&mut self) -> Option<&mut LeaderState> {
        match self {
            RoleState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    pub(crate) fn candidate_mut(&mut self) -> Option<&mut CandidateState> {
        match self {
            RoleState::Candidate(candidate) => Some(candidate),
            _ => None,
        }
    }

    pub(crate) fn follower_mut(&mut self) -> Option<&mut FollowerState> {
        match self {
            RoleState::Follower(follower) => Some(follower),
            _ => None,
        }
    }
}
