//! The check a node makes before it takes part when its data directory holds nothing and it
//! did not `--join`: it cannot tell its first start from a wiped directory, and a wiped member
//! that takes part has forgotten what it promised and accepted. Members that met its old
//! incarnation refuse it (see `peer`), but one that never did would not, and with the nodes
//! that did down, it and the wiped node could make a quorum that knows none of the writes its
//! old self acknowledged.
//!
//! Its peers can tell: a quorum that included its old self holds data on at least `quorum - 1`
//! other nodes, so finding `members - quorum + 1` other members that hold nothing proves no
//! such quorum ever formed (the two sets of others must share a node). A fresh cluster passes
//! at once; a node that finds a peer holding data is refused: wiped, or started for the first
//! time after the cluster went on without it, it must be removed and added anew (`--join`).
//! The price: a fresh cluster starts only once that many of the others answer (all of them
//! with three members), since until then a first start looks like a wipe.

use std::time::Duration;

use paxkv_core::NodeId;

use crate::peer::PeerDirectory;
use crate::ServerError;

/// How often a node still waiting says so.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(5);

/// How long a node waits for more answers once a member said it holds data: that member went
/// on without this node, so this one is wiped or late either way, unless enough others still
/// say they hold nothing; the members that could have are often gone for good (removed).
const WAIT_AFTER_A_HOLDER: Duration = Duration::from_secs(10);

/// How many other members must answer that they hold nothing, out of `members` voters.
pub fn others_needed(members: usize) -> usize {
    let quorum = members / 2 + 1;
    (members + 1)
        .saturating_sub(quorum)
        .min(members.saturating_sub(1))
}

/// Waits until enough of `members` (this node's among them) said they hold nothing; refuses
/// if one holds data or a member refused this node.
pub async fn confirm_fresh_cluster(
    me: NodeId,
    members: &[NodeId],
    directory: &PeerDirectory,
) -> Result<(), ServerError> {
    if paxkv_core::planted::active(paxkv_core::planted::Bug::WipedMemberAccepted) {
        return Ok(());
    }
    let others: Vec<NodeId> = members.iter().copied().filter(|id| *id != me).collect();
    let needed = others_needed(members.len());
    let mut waited = Duration::ZERO;
    let mut first_holder_at: Option<Duration> = None;
    loop {
        if let Some(reason) = directory.refused() {
            return Err(ServerError::Refused(reason));
        }
        let answers = directory.peers_hold_data();
        // Any node of the cluster that holds data counts, also one that joined after this
        // node's own list of members was written (seed 96587917881: every member this node
        // knew by its flags had left, and the ones that replaced them, which connected to it,
        // were not heard).
        let holders: Vec<NodeId> = answers
            .iter()
            .filter(|(id, holds)| **id != me && **holds)
            .map(|(id, _)| *id)
            .collect();
        let holding_members = holders.iter().filter(|id| others.contains(id)).count();
        // Refused once too few others are left that might still say they hold nothing, or
        // when those have not answered for a while.
        if !holders.is_empty() {
            first_holder_at.get_or_insert(waited);
        }
        let holders_waited = first_holder_at.is_some_and(|at| waited - at >= WAIT_AFTER_A_HOLDER);
        if let Some(holder) = holders
            .first()
            .filter(|_| others.len() - holding_members < needed || holders_waited)
        {
            return Err(ServerError::Refused(format!(
                "this node's data directory holds nothing, but {holder} already holds the \
                 cluster's data: either the directory was wiped, and {me} would have forgotten \
                 what it promised and accepted, or this is the first start of a member the \
                 cluster went on without. Either way it may not take part as {me}: remove it \
                 (kvctl member remove {}) and add this machine anew with kv-server --join",
                me.0
            )));
        }
        let fresh = others
            .iter()
            .filter(|id| answers.get(id) == Some(&false))
            .count();
        if fresh >= needed {
            return Ok(());
        }
        let step = Duration::from_millis(200);
        directory.peer_answer(step).await;
        waited += step;
        if waited.as_millis() % WAITING_LOG_EVERY.as_millis() < step.as_millis() {
            tracing::info!(
                answered = fresh,
                needed,
                "this node holds no data yet: waiting for enough members to say they hold none \
                 either (a fresh cluster) before taking part"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_others_to_meet_every_quorum_that_included_this_node() {
        // (members, others needed): a quorum with this node in it has quorum - 1 others;
        // the others asked must meet it among the members - 1 others.
        let expected = [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3), (7, 4)];
        for (members, needed) in expected {
            assert_eq!(others_needed(members), needed, "{members} members");
            let quorum = members / 2 + 1;
            if members > 1 {
                assert!(needed + (quorum - 1) > members - 1, "{members} members");
            }
        }
    }
}
