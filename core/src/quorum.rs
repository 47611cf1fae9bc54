//! Which acceptors make a quorum: the one place that counts votes. Commits, leases, elections,
//! pre-votes and the checks that a node still hears enough of the cluster all ask a [`Quorum`],
//! so a change of membership changes this file and the configuration it is built from.

use crate::types::NodeId;

/// The voters whose agreement counts now: a majority of every voter set given. One set while
/// the configuration is settled; two while a change is uncommitted (the configuration before
/// it and the one it brings in), so that any quorum meets every quorum of either.
///
/// It owns its voters (a handful of ids), so it can be asked while the leader's state is
/// borrowed for changing.
#[derive(Debug, Clone)]
pub(crate) struct Quorum {
    voter_sets: Vec<Vec<NodeId>>,
}

impl Quorum {
    /// A majority of `voters`.
    #[cfg(test)]
    pub(crate) fn of(voters: &[NodeId]) -> Quorum {
        Quorum::joint([voters.to_vec()])
    }

    /// A majority of each of `voter_sets`.
    pub(crate) fn joint(voter_sets: impl IntoIterator<Item = Vec<NodeId>>) -> Quorum {
        let voter_sets: Vec<Vec<NodeId>> = voter_sets.into_iter().collect();
        assert!(
            !voter_sets.is_empty() && voter_sets.iter().all(|voters| !voters.is_empty()),
            "a configuration has at least one voter"
        );
        Quorum { voter_sets }
    }

    /// How many voters of `voters` make a majority.
    fn size(voters: &[NodeId]) -> usize {
        if crate::planted::active(crate::planted::Bug::CommitOnMinority) {
            return voters.len() / 2;
        }
        voters.len() / 2 + 1
    }

    /// Whether the voters for which `holds` is true form a quorum (a node asking about itself
    /// answers for itself too: its own vote, its own durable log).
    pub(crate) fn is_reached_by(&self, holds: impl Fn(NodeId) -> bool) -> bool {
        self.voter_sets.iter().all(|voters| {
            let count = voters.iter().filter(|voter| holds(**voter)).count();
            count >= Self::size(voters)
        })
    }

    /// The highest value at least a quorum of voters has reached: the commit point when the
    /// values are match indexes, the newest confirmed heartbeat round when they are rounds.
    pub(crate) fn agreed_value(&self, value_of: impl Fn(NodeId) -> u64) -> u64 {
        self.voter_sets
            .iter()
            .map(|voters| {
                let mut values: Vec<u64> = voters.iter().map(|voter| value_of(*voter)).collect();
                values.sort_unstable_by(|a, b| b.cmp(a));
                values[Self::size(voters).max(1) - 1]
            })
            .min()
            .expect("at least one voter set")
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

    #[test]
    fn a_joint_quorum_needs_a_majority_of_each_set() {
        let old = nodes(3);
        let new: Vec<NodeId> = vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)];
        let quorum = Quorum::joint([old, new]);
        // {1, 2} is a majority of the old set, not of the new one (3 of 4).
        assert!(!quorum.is_reached_by(|node| node.0 <= 2));
        assert!(quorum.is_reached_by(|node| node.0 <= 3));
        // Old set agrees on 20 (1, 2), the new one only on 10 (the third highest of 4).
        let value = |node: NodeId| [30, 20, 10, 5][node.0 as usize - 1];
        assert_eq!(quorum.agreed_value(value), 10);
    }
}
