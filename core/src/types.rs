//! Small value types shared by every module: node and request ids, time, ballot helpers.

use paxkv_proto::peer::{Ballot, LogState};
use std::fmt;

/// Identity of a replica in the cluster. Never 0 (0 means "nobody" on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Opaque token the caller attaches to a client request; the answer in `Ready` carries it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A point on the caller's monotonic clock, in milliseconds from an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    pub fn millis(self) -> u64 {
        self.0
    }

    pub fn plus_millis(self, millis: u64) -> Time {
        Time(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// The ballot carried in an optional protobuf field; absent means the zero ballot.
pub fn ballot_or_zero(ballot: Option<Ballot>) -> Ballot {
    ballot.unwrap_or(Ballot::ZERO)
}

/// The log state in an optional protobuf field; absent means an empty log.
pub fn log_state_or_empty(log: Option<LogState>) -> LogState {
    log.unwrap_or_default()
}
