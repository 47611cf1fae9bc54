//! The rules of membership change, apart from the replica (as etcd's `confchange` is): which
//! change may follow a configuration, and what configuration it makes. A change adds one
//! learner, promotes one learner to voter, or removes one member, so two configurations in a
//! row differ by at most one voter and any majority of one meets any majority of the other.
//!
//! The log keeps a [`ConfigHistory`] of the change entries it holds. A change takes effect as
//! soon as it is appended: every count of votes asks the newest configuration in the log.
//! That is safe because the leader proposes a change only when no other is uncommitted and
//! only after an entry of its own ballot committed, so any two configurations in force at once
//! differ by at most one voter. A candidate counts its promises against the newest
//! configuration of the most advanced promised log (each promise carries it), not against its
//! own: a node two changes behind would otherwise win with a majority of a configuration that
//! no longer decides anything. `change.rs` is the replica's side: proposing a change on the
//! leader, answering it once committed, and stopping a node that was removed.
//!
//! Why not count the change jointly with the one before it until it commits: a leader that
//! removes itself stops once the removal commits, maybe before any follower learnt the commit;
//! a survivor that then counted jointly would need the removed node's vote forever (the
//! simulator found this: seed 94 shrank a cluster to one voter that could never lead).

mod change;

pub use change::MemberRequest;

use std::collections::BTreeMap;

use paxkv_proto::peer::{Configuration, MemberAddress};

use crate::types::NodeId;

/// Voters a configuration may have at most: 7 tolerate 3 failures, and every write waits for
/// a majority of them.
pub const VOTERS_MAX: usize = 7;

/// A learner may be promoted only when its log is at most this many entries behind the
/// leader's commit (one Accept batch): a voter far behind would hold up every commit that
/// needs it.
pub const PROMOTION_LAG_ENTRIES_MAX: u64 = crate::ACCEPT_BATCH_ENTRIES_MAX as u64;

/// One change of membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// A new node joins without a vote and starts receiving the log.
    AddLearner(NodeId),
    /// A learner that has caught up becomes a voter.
    Promote(NodeId),
    /// A voter or learner leaves; its id is never used again.
    Remove(NodeId),
}

/// Why a change was refused. The messages say what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    #[error("node id 0 is reserved for \"nobody\"")]
    NodeIdZero,
    #[error("{0} is already a member; remove it first to add it again under a new id")]
    AlreadyMember(NodeId),
    #[error("{0} was removed before and its id is retired; add the node under a new id")]
    Retired(NodeId),
    #[error("{0} is not a learner; add it as a learner first, then promote it")]
    NotALearner(NodeId),
    #[error("{0} is not a member")]
    NotAMember(NodeId),
    #[error("the cluster already has {VOTERS_MAX} voters, the most it may have")]
    TooManyVoters,
    #[error("{0} is the last voter; a cluster needs at least one")]
    LastVoter(NodeId),
    #[error(
        "{learner} is {lag_entries} entries behind the commit point; a learner is promoted \
         within {PROMOTION_LAG_ENTRIES_MAX} of it; retry once it has caught up"
    )]
    LearnerBehind { learner: NodeId, lag_entries: u64 },
    #[error(
        "{0} has not answered the leader lately; start it (kv-server --join) or check its \
         network, then retry"
    )]
    LearnerSilent(NodeId),
    #[error(
        "after this change {answering} of its {voters} voters answer, and a quorum is {quorum}: \
         the cluster would stop; bring members back or replace them first"
    )]
    WouldLoseQuorum {
        answering: usize,
        voters: usize,
        quorum: usize,
    },
}

fn ids(list: &[u64]) -> impl Iterator<Item = NodeId> + '_ {
    list.iter().map(|id| NodeId(*id))
}

/// The voters of a configuration.
pub fn voters(configuration: &Configuration) -> Vec<NodeId> {
    ids(&configuration.members).collect()
}

/// The learners of a configuration.
pub fn learners(configuration: &Configuration) -> Vec<NodeId> {
    ids(&configuration.learners).collect()
}

/// Whether `node` is a voter of `configuration`.
pub fn is_voter(configuration: &Configuration, node: NodeId) -> bool {
    configuration.members.contains(&node.0)
}

/// The id a new member gets: one above every id the configuration ever had (voters, learners
/// and retired), so that no id is used twice.
pub fn next_id(configuration: &Configuration) -> NodeId {
    let highest = configuration
        .members
        .iter()
        .chain(&configuration.learners)
        .chain(&configuration.retired)
        .copied()
        .max()
        .unwrap_or(0);
    NodeId(highest + 1)
}

/// The addresses `configuration` records for `node`, if any.
pub fn address_of(configuration: &Configuration, node: NodeId) -> Option<&MemberAddress> {
    configuration
        .addresses
        .iter()
        .find(|address| address.node == node.0)
}

/// The member whose recorded peer address is `peer_address`, if any.
pub fn member_at(configuration: &Configuration, peer_address: &str) -> Option<NodeId> {
    configuration
        .addresses
        .iter()
        .find(|address| address.peer_address == peer_address)
        .map(|address| NodeId(address.node))
        .filter(|node| is_member(configuration, *node))
}

/// Whether `node` is a voter or a learner of `configuration`.
pub fn is_member(configuration: &Configuration, node: NodeId) -> bool {
    configuration.members.contains(&node.0) || configuration.learners.contains(&node.0)
}

/// The configuration `change` makes of `current`, or why it may not follow it.
pub fn apply_change(
    current: &Configuration,
    change: MembershipChange,
) -> Result<Configuration, ChangeRefused> {
    let mut next = current.clone();
    match change {
        MembershipChange::AddLearner(node) => {
            if node.0 == 0 {
                return Err(ChangeRefused::NodeIdZero);
            }
            if is_member(current, node) {
                return Err(ChangeRefused::AlreadyMember(node));
            }
            if current.retired.contains(&node.0) {
                return Err(ChangeRefused::Retired(node));
            }
            next.learners.push(node.0);
        }
        MembershipChange::Promote(node) => {
            if !current.learners.contains(&node.0) {
                return Err(ChangeRefused::NotALearner(node));
            }
            if current.members.len() >= VOTERS_MAX {
                return Err(ChangeRefused::TooManyVoters);
            }
            next.learners.retain(|id| *id != node.0);
            next.members.push(node.0);
        }
        MembershipChange::Remove(node) => {
            if !is_member(current, node) {
                return Err(ChangeRefused::NotAMember(node));
            }
            if current.members == [node.0] {
                return Err(ChangeRefused::LastVoter(node));
            }
            next.members.retain(|id| *id != node.0);
            next.learners.retain(|id| *id != node.0);
            next.retired.push(node.0);
            // Its address stays, so that members can tell it it was removed when it returns.
        }
    }
    next.members.sort_unstable();
    next.learners.sort_unstable();
    next.retired.sort_unstable();
    Ok(next)
}

/// A promotion waits until the learner's durable log is within `PROMOTION_LAG_ENTRIES_MAX` of
/// the leader's commit point.
pub fn check_caught_up(
    learner: NodeId,
    match_index: u64,
    commit_index: u64,
) -> Result<(), ChangeRefused> {
    let lag_entries = commit_index.saturating_sub(match_index);
    if lag_entries > PROMOTION_LAG_ENTRIES_MAX {
        return Err(ChangeRefused::LearnerBehind {
            learner,
            lag_entries,
        });
    }
    Ok(())
}

/// A change must leave a quorum of the next configuration's voters answering (`answering`
/// says which nodes the leader heard from lately, itself included): removing a live voter
/// while others are down must not stop the cluster.
pub fn check_live_quorum(
    next: &Configuration,
    answering: impl Fn(NodeId) -> bool,
) -> Result<(), ChangeRefused> {
    let voters = voters(next);
    let live = voters.iter().filter(|voter| answering(**voter)).count();
    let quorum = voters.len() / 2 + 1;
    if live < quorum {
        return Err(ChangeRefused::WouldLoseQuorum {
            answering: live,
            voters: voters.len(),
            quorum,
        });
    }
    Ok(())
}

/// The configurations a log holds: the one in force at its snapshot point (or from the start)
/// and one per change entry after it, by index. The log keeps it in step with its entries, so
/// the configuration in force at any index is the newest change at or before it.
#[derive(Debug, Clone)]
pub(crate) struct ConfigHistory {
    /// Never empty: the first is the base (snapshot point, or 0 for a log from the start).
    by_index: BTreeMap<u64, Configuration>,
}

impl ConfigHistory {
    pub(crate) fn new(base_index: u64, base: Configuration) -> ConfigHistory {
        ConfigHistory {
            by_index: BTreeMap::from([(base_index, base)]),
        }
    }

    /// The configuration in force at `index`.
    pub(crate) fn at(&self, index: u64) -> &Configuration {
        self.in_force_at(index).1
    }

    /// The configuration in force at `index`, with the index it is in force from.
    pub(crate) fn in_force_at(&self, index: u64) -> (u64, &Configuration) {
        self.by_index
            .range(..=index)
            .next_back()
            .or_else(|| self.by_index.first_key_value())
            .map(|(from, configuration)| (*from, configuration))
            .expect("a history is never empty")
    }

    /// The newest configuration in the log, committed or not.
    pub(crate) fn newest(&self) -> &Configuration {
        self.newest_at().1
    }

    /// The newest configuration with the index it is in force from (its id).
    pub(crate) fn newest_at(&self) -> (u64, &Configuration) {
        self.by_index
            .last_key_value()
            .map(|(from, configuration)| (*from, configuration))
            .expect("a history is never empty")
    }

    /// The configurations that may still matter at commit point `commit_index`, each with the
    /// index it is in force from: the one in force there and every change after it. Their
    /// members are the nodes a replica talks to; a promise carries them (the newest counts).
    pub(crate) fn active(
        &self,
        commit_index: u64,
    ) -> impl Iterator<Item = (u64, &Configuration)> + '_ {
        let changes = self
            .by_index
            .range(commit_index + 1..)
            .map(|(from, configuration)| (*from, configuration));
        std::iter::once(self.in_force_at(commit_index)).chain(changes)
    }

    /// A change entry was appended at `index`.
    pub(crate) fn appended(&mut self, index: u64, next: Configuration) {
        assert!(
            self.by_index
                .last_key_value()
                .is_some_and(|(last, _)| *last < index),
            "changes are appended in log order"
        );
        self.by_index.insert(index, next);
    }

    /// The log from `index` on was dropped: so are its changes (never the base).
    pub(crate) fn truncated_from(&mut self, index: u64) {
        let base = *self.by_index.keys().next().expect("never empty");
        self.by_index.retain(|at, _| *at < index || *at == base);
    }

    /// The log up to `index` was compacted: the configuration in force there becomes the base.
    /// (A node lets go of log entries with every ready, so this moves the configuration in
    /// force rather than cloning it.)
    pub(crate) fn compacted_to(&mut self, index: u64) {
        let later = self.by_index.split_off(&(index + 1));
        let (_, base) = self.by_index.pop_last().expect("never empty");
        self.by_index = later;
        self.by_index.insert(index, base);
    }

    /// The whole log was replaced by a snapshot at `index`, taken with `configuration` in force
    /// (none: an older snapshot without one, and the newest configuration stays in force).
    pub(crate) fn reset(&mut self, index: u64, configuration: Option<Configuration>) {
        let base = configuration
            .filter(|configuration| !configuration.members.is_empty())
            .unwrap_or_else(|| self.newest().clone());
        self.by_index = BTreeMap::from([(index, base)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MembershipChange::{AddLearner, Promote, Remove};

    fn configuration(voters: &[u64]) -> Configuration {
        Configuration {
            members: voters.to_vec(),
            ..Configuration::default()
        }
    }

    /// Runs `changes` from `start` and returns the last configuration, or the first refusal
    /// with the index of the change that met it.
    fn run(
        start: &Configuration,
        changes: &[MembershipChange],
    ) -> Result<Configuration, (usize, ChangeRefused)> {
        changes
            .iter()
            .enumerate()
            .try_fold(start.clone(), |current, (step, change)| {
                apply_change(&current, *change).map_err(|refusal| (step, refusal))
            })
    }

    #[test]
    fn change_sequences_give_the_configurations_the_rules_say() {
        let n = NodeId;
        let three = configuration(&[1, 2, 3]);
        // (changes, voters after, learners after, retired after)
        type Case = (Vec<MembershipChange>, Vec<u64>, Vec<u64>, Vec<u64>);
        let accepted: Vec<Case> = vec![
            (vec![AddLearner(n(4))], vec![1, 2, 3], vec![4], vec![]),
            (
                vec![AddLearner(n(4)), Promote(n(4))],
                vec![1, 2, 3, 4],
                vec![],
                vec![],
            ),
            // Replace a dead voter: add, promote, remove.
            (
                vec![AddLearner(n(4)), Promote(n(4)), Remove(n(2))],
                vec![1, 3, 4],
                vec![],
                vec![2],
            ),
            // A learner can leave before it is promoted.
            (
                vec![AddLearner(n(9)), Remove(n(9))],
                vec![1, 2, 3],
                vec![],
                vec![9],
            ),
            // Shrink to one voter.
            (
                vec![Remove(n(3)), Remove(n(2))],
                vec![1],
                vec![],
                vec![2, 3],
            ),
        ];
        for (changes, voters, learners, retired) in accepted {
            let end = run(&three, &changes).unwrap_or_else(|refusal| {
                panic!("{changes:?} was refused: {refusal:?}");
            });
            assert_eq!(
                (end.members, end.learners, end.retired),
                (voters, learners, retired),
                "{changes:?}"
            );
        }
    }

    #[test]
    fn changes_that_break_a_rule_are_refused_with_the_reason() {
        let n = NodeId;
        let three = configuration(&[1, 2, 3]);
        let refused: Vec<(Vec<MembershipChange>, usize, ChangeRefused)> = vec![
            (vec![AddLearner(n(0))], 0, ChangeRefused::NodeIdZero),
            (
                vec![AddLearner(n(2))],
                0,
                ChangeRefused::AlreadyMember(n(2)),
            ),
            (vec![Promote(n(4))], 0, ChangeRefused::NotALearner(n(4))),
            (vec![Promote(n(2))], 0, ChangeRefused::NotALearner(n(2))),
            (vec![Remove(n(4))], 0, ChangeRefused::NotAMember(n(4))),
            // A removed id never comes back.
            (
                vec![Remove(n(3)), AddLearner(n(3))],
                1,
                ChangeRefused::Retired(n(3)),
            ),
            (
                vec![Remove(n(3)), Remove(n(2)), Remove(n(1))],
                2,
                ChangeRefused::LastVoter(n(1)),
            ),
        ];
        for (changes, step, refusal) in refused {
            assert_eq!(run(&three, &changes), Err((step, refusal)), "{changes:?}");
        }
        let seven = configuration(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            run(&seven, &[AddLearner(n(8)), Promote(n(8))]),
            Err((1, ChangeRefused::TooManyVoters))
        );
    }

    #[test]
    fn two_configurations_in_a_row_differ_by_at_most_one_voter() {
        let n = NodeId;
        let mut current = configuration(&[1, 2, 3]);
        let changes = [
            AddLearner(n(4)),
            Promote(n(4)),
            AddLearner(n(5)),
            Promote(n(5)),
            Remove(n(1)),
            Remove(n(2)),
            AddLearner(n(6)),
            Remove(n(6)),
        ];
        for change in changes {
            let next = apply_change(&current, change).unwrap();
            let differ = current
                .members
                .iter()
                .filter(|id| !next.members.contains(id))
                .count()
                + next
                    .members
                    .iter()
                    .filter(|id| !current.members.contains(id))
                    .count();
            assert!(differ <= 1, "{change:?} changed {differ} voters");
            current = next;
        }
    }

    #[test]
    fn a_promotion_waits_for_the_learner_and_a_removal_for_a_live_quorum() {
        let learner = NodeId(4);
        assert!(check_caught_up(learner, 1000, 1000 + PROMOTION_LAG_ENTRIES_MAX).is_ok());
        assert_eq!(
            check_caught_up(learner, 10, 1000),
            Err(ChangeRefused::LearnerBehind {
                learner,
                lag_entries: 990
            })
        );
        // Voters 1, 2, 3 with 3 down: removing 2 leaves {1, 3} with one answering.
        let next = apply_change(&configuration(&[1, 2, 3]), Remove(NodeId(2))).unwrap();
        let refusal = check_live_quorum(&next, |node| node != NodeId(3)).unwrap_err();
        assert_eq!(
            refusal,
            ChangeRefused::WouldLoseQuorum {
                answering: 1,
                voters: 2,
                quorum: 2
            }
        );
        assert!(refusal.to_string().contains("would stop"), "{refusal}");
        // Removing the dead one instead keeps two of two answering.
        let next = apply_change(&configuration(&[1, 2, 3]), Remove(NodeId(3))).unwrap();
        assert!(check_live_quorum(&next, |node| node != NodeId(3)).is_ok());
    }

    #[test]
    fn the_history_follows_appends_truncations_compactions_and_snapshots() {
        let mut history = ConfigHistory::new(0, configuration(&[1, 2, 3]));
        history.appended(5, configuration(&[1, 2, 3, 4]));
        history.appended(9, configuration(&[1, 3, 4]));
        assert_eq!(history.at(4).members, vec![1, 2, 3]);
        assert_eq!(history.at(5).members, vec![1, 2, 3, 4]);
        assert_eq!(history.newest().members, vec![1, 3, 4]);
        let members = |history: &ConfigHistory, commit_index| -> Vec<Vec<u64>> {
            history
                .active(commit_index)
                .map(|(_, configuration)| configuration.members.clone())
                .collect()
        };
        assert_eq!(
            members(&history, 6),
            vec![vec![1, 2, 3, 4], vec![1, 3, 4]],
            "a change after the commit point is active with the one in force"
        );
        assert_eq!(members(&history, 9), vec![vec![1, 3, 4]]);
        history.truncated_from(9);
        assert_eq!(history.newest().members, vec![1, 2, 3, 4]);
        history.compacted_to(7);
        assert_eq!(history.at(7).members, vec![1, 2, 3, 4]);
        history.truncated_from(8);
        assert_eq!(history.newest().members, vec![1, 2, 3, 4], "the base stays");
        history.reset(20, Some(configuration(&[2, 3])));
        assert_eq!(history.at(25).members, vec![2, 3]);
        history.reset(30, None);
        assert_eq!(history.at(30).members, vec![2, 3]);
    }
}
