//! Which acceptors make a quorum: the one place that counts votes. Commits, leases, elections,
//! pre-votes and the checks that a node still hears enough of the cluster all ask a [`Quorum`],
//! so a change of membership changes this file and the configuration it is built from.

use crate::types::NodeId;

/// The voters whose agreement counts now. Today that is every member of the one configuration;
/// a membership change in flight would make it the majorities of two configurations, and every
/// question below would be asked of both.
///
/// It owns its voters (a handful of ids), so it can be asked while the leader's state is
/// borrowed for changing.
#[derive(Debug, Clone)]
pub(crate) struct Quorum {
    voters: Vec<NodeId>,
}

impl Quorum {
    pub(crate) fn of(voters: &[NodeId]) -> Quorum {
        assert!(!voters.is_empty(), "a configuration has at least one voter");
        Quorum {
            voters: voters.to_vec(),
        }
    }

    /// How many voters make a majority.
    fn size(&self) -> usize {
        if crate::planted::active(crate::planted::Bug::CommitOnMinority) {
            return self.voters.len() / 2;
        }
        self.voters.len() / 2 + 1
    }

    /// Whether the voters for which `holds` is true form a quorum (a node asking about itself
    /// answers for itself too: its own vote, its own durable log).
    pub(crate) fn is_reached_by(&self, holds: impl Fn(NodeId) -> bool) -> bool {
        let count = self.voters.iter().filter(|voter| holds(**voter)).count();
        count >= self.size()
    }

    /// The highest value at least a quorum of voters has reached: the commit point when the
    /// values are match indexes, the newest confirmed heartbeat round when they are rounds.
    pub(crate) fn agreed_value(&self, value_of: impl Fn(NodeId) -> u64) -> u64 {
        let mut values: Vec<u64> = self.voters.iter().map(|voter| value_of(*voter)).collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[self.size().max(1) - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(count: u64) -> Vec<NodeId> {
        (1..=count).map(NodeId).collect()
    }

    #[test]
    fn a_majority_of_the_voters_is_needed_and_enough() {
        for (count, needed) in [(1, 1), (3, 2), (5, 3), (7, 4)] {
            let voters = nodes(count);
            let quorum = Quorum::of(&voters);
            assert!(quorum.is_reached_by(|node| node.0 <= needed));
            assert!(!quorum.is_reached_by(|node| node.0 < needed));
        }
    }

    #[test]
    fn the_agreed_value_is_the_highest_a_majority_reached() {
        let voters = nodes(5);
        let quorum = Quorum::of(&voters);
        // Values 50, 40, 30, 20, 10: three voters reached 30.
        assert_eq!(quorum.agreed_value(|node| 60 - 10 * node.0), 30);
        let one = nodes(1);
        assert_eq!(Quorum::of(&one).agreed_value(|_| 7), 7);
    }
}
