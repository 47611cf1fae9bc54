//! Membership change on the in-memory cluster: growing and shrinking under writes, the rules a
//! change must pass (one at a time, after the leader's own entry, a caught-up learner, a live
//! quorum), and what a removed node does. Each rule has a test that fails without it.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{write_keys, Cluster, STEP_MS};
use paxkv_core::{MemberRequest, NodeId, Replica, Role};
use paxkv_proto::client::{client_response::Body as Response, ErrorCode, MembersResponse};

const ELECTION_TIMEOUT_MS: u64 = 300;

fn elect(cluster: &mut Cluster) -> NodeId {
    cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 999)
        .expect("the cluster elects a leader");
    cluster.leader().expect("a leader exists")
}

/// The first leader after the old one crashed, as soon as there is one (within 10 s).
fn next_leader(cluster: &mut Cluster) -> NodeId {
    let start = cluster.now;
    loop {
        if let Some(new) = cluster.leader() {
            return new;
        }
        assert!(cluster.now.millis_since(start) < 10_000, "no new leader");
        cluster.run_for(1);
    }
}

fn add(id: u64) -> MemberRequest {
    MemberRequest::Add {
        peer_address: format!("[::1]:{}", 7100 + id),
        client_address: format!("[::1]:{}", 7000 + id),
        known: Vec::new(),
    }
}

/// Sends `change` to the leader until it is answered with the members (retrying while the
/// leader is busy or the learner catching up); panics after `millis`.
fn change(cluster: &mut Cluster, change: MemberRequest, millis: u64) -> MembersResponse {
    let start = cluster.now;
    let mut last = None;
    while cluster.now.millis_since(start) < millis {
        let Some(leader) = cluster.leader() else {
            cluster.run_for(STEP_MS);
            continue;
        };
        let request = cluster.member_via(leader, change.clone());
        match cluster.wait_for(request, 1000) {
            Some(Response::Members(members)) => return members,
            other => {
                last = other;
                cluster.run_for(5 * STEP_MS);
            }
        }
    }
    panic!("{change:?} was not done within {millis} ms; last answer {last:?}");
}

/// Sends `change` once to the current leader and returns the answer.
fn try_change(cluster: &mut Cluster, change: MemberRequest) -> Response {
    let leader = cluster.leader().expect("a leader exists");
    let request = cluster.member_via(leader, change);
    cluster.wait_for(request, 1000).expect("an answer")
}

fn refusal_message(response: &Response, code: ErrorCode) -> String {
    match response {
        Response::Error(error) if error.code == code as i32 => error.message.clone(),
        other => panic!("expected a {code:?} refusal, got {other:?}"),
    }
}

fn voters(members: &MembersResponse) -> Vec<u64> {
    members
        .members
        .iter()
        .filter(|member| member.voter)
        .map(|member| member.node_id)
        .collect()
}

/// Adds node `id` as a learner, lets it catch up and promotes it.
fn grow(cluster: &mut Cluster, id: u64) {
    cluster.join_node(NodeId(id));
    let added = change(cluster, add(id), 5000);
    assert_eq!(added.node_id, id, "the cluster picks the next unused id");
    let learner = added.members.iter().find(|member| member.node_id == id);
    assert!(
        learner.is_some_and(|learner| !learner.voter),
        "{id} joins as a learner: {added:?}"
    );
    let promoted = change(cluster, MemberRequest::Promote(NodeId(id)), 10_000);
    assert!(voters(&promoted).contains(&id), "{promoted:?}");
}

/// Removes `id` and waits until it knows it was removed (if it is up).
fn shrink(cluster: &mut Cluster, id: u64) {
    let removed = change(cluster, MemberRequest::Remove(NodeId(id)), 5000);
    assert!(removed.retired.contains(&id), "{removed:?}");
    if cluster.is_up(NodeId(id)) {
        let start = cluster.now;
        while cluster.replica(NodeId(id)).unwrap().removed_at().is_none() {
            assert!(
                cluster.now.millis_since(start) < 5000,
                "{id} never learnt it was removed"
            );
            cluster.run_for(STEP_MS);
        }
    }
    cluster.forget(NodeId(id));
}

#[test]
fn a_cluster_grows_from_three_to_five_and_back_under_writes_and_loses_nothing() {
    let mut cluster = Cluster::new(3, 11);
    cluster.check_state_hashes = true;
    elect(&mut cluster);
    let mut sequence = 1;
    for id in [4, 5] {
        assert_eq!(write_keys(&mut cluster, 1, sequence, 20), 20);
        sequence += 20;
        grow(&mut cluster, id);
    }
    assert_eq!(write_keys(&mut cluster, 1, sequence, 20), 20);
    sequence += 20;
    for id in [1, 4] {
        shrink(&mut cluster, id);
        assert_eq!(write_keys(&mut cluster, 1, sequence, 20), 20);
        sequence += 20;
    }
    let leader = cluster.leader().unwrap();
    let members = cluster.replica(leader).unwrap().members_response(NodeId(0));
    assert_eq!(voters(&members), vec![2, 3, 5]);
    assert_eq!(members.retired, vec![1, 4]);
    cluster.check_acknowledged_writes_chosen();
    cluster.check_reads();
    cluster.heal_and_converge(10_000);
}

#[test]
fn one_voter_grows_to_seven_and_shrinks_back_to_one() {
    let mut cluster = Cluster::new(1, 5);
    elect(&mut cluster);
    for id in 2..=7 {
        grow(&mut cluster, id);
        assert_eq!(write_keys(&mut cluster, 1, id * 10, 5), 5);
    }
    cluster.join_node(NodeId(8));
    change(&mut cluster, add(8), 5000);
    let refused = try_change(&mut cluster, MemberRequest::Promote(NodeId(8)));
    let message = refusal_message(&refused, ErrorCode::MembershipRefused);
    assert!(message.contains("7 voters"), "{message}");
    shrink(&mut cluster, 8);
    for id in (2..=7).rev() {
        shrink(&mut cluster, id);
    }
    let refused = try_change(&mut cluster, MemberRequest::Remove(NodeId(1)));
    let message = refusal_message(&refused, ErrorCode::MembershipRefused);
    assert!(message.contains("last voter"), "{message}");
    assert_eq!(write_keys(&mut cluster, 1, 1000, 5), 5);
    cluster.check_acknowledged_writes_chosen();
}

/// Pins the planted `changes-overlap`.
#[test]
fn a_second_change_waits_until_the_first_has_committed() {
    let mut cluster = Cluster::new(3, 3);
    let leader = elect(&mut cluster);
    cluster.join_node(NodeId(4));
    cluster.join_node(NodeId(5));
    // Both in the same instant: the first is appended, not yet committed.
    let first = cluster.member_via(leader, add(4));
    let second = cluster.member_via(leader, add(5));
    let refused = cluster.wait_for(second, 1000).unwrap();
    let message = refusal_message(&refused, ErrorCode::MembershipRefused);
    assert!(message.contains("still in progress"), "{message}");
    assert!(matches!(
        cluster.wait_for(first, 1000),
        Some(Response::Members(_))
    ));
}

#[test]
fn a_new_leader_changes_nothing_before_an_entry_of_its_own_ballot_commits() {
    let mut cluster = Cluster::new(3, 17);
    let old = elect(&mut cluster);
    // Slow disks stretch the new leader's first commit over many steps.
    cluster.persist_ms = 300;
    cluster.crash(old);
    let new = next_leader(&mut cluster);
    cluster.join_node(NodeId(4));
    let request = cluster.member_via(new, add(4));
    // Refused at once (the answer leaves with the node's next ready, after the slow sync).
    let answer = cluster.wait_for(request, 1000).unwrap();
    let message = refusal_message(&answer, ErrorCode::NoQuorum);
    assert!(message.contains("entry of its own"), "{message}");
    cluster.persist_ms = 2;
    change(&mut cluster, add(4), 5000);
}

#[test]
fn shrinking_below_a_quorum_of_the_live_voters_is_refused_with_the_reason() {
    let mut cluster = Cluster::new(3, 23);
    let leader = elect(&mut cluster);
    let others: Vec<NodeId> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let (dead, live) = (others[0], others[1]);
    cluster.crash(dead);
    // Once the leader has not heard from it for an election timeout, it counts as down.
    cluster.run_for(2 * ELECTION_TIMEOUT_MS);
    let refused = try_change(&mut cluster, MemberRequest::Remove(live));
    let message = refusal_message(&refused, ErrorCode::MembershipRefused);
    assert!(
        message.contains("1 of its 2 voters answer") && message.contains("would stop"),
        "{message}"
    );
    // Removing the dead one keeps both live voters.
    let removed = change(&mut cluster, MemberRequest::Remove(dead), 5000);
    assert_eq!(voters(&removed).len(), 2);
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
}

/// A new leader counts a voter as answering only once it has heard from it: the grace it gives
/// every follower for its own quorum check (so as not to step down at once) must not make a
/// dead voter look live to the membership check.
#[test]
fn a_new_leader_does_not_count_a_voter_it_never_heard_as_live() {
    let mut cluster = Cluster::new(3, 29);
    let old = elect(&mut cluster);
    cluster.crash(old);
    let new = next_leader(&mut cluster);
    let took_over = cluster.now;
    let live = cluster
        .ids()
        .into_iter()
        .find(|id| *id != old && *id != new)
        .unwrap();
    // Removing the live follower would leave {new, old}, and old is dead. Ask as soon as the
    // leader takes changes at all (once an entry of its own ballot committed).
    let message = loop {
        let request = cluster.member_via(new, MemberRequest::Remove(live));
        let answer = cluster.wait_for(request, 1000).unwrap();
        if !Cluster::is_error(&answer, ErrorCode::NoQuorum) {
            break refusal_message(&answer, ErrorCode::MembershipRefused);
        }
        cluster.run_for(1);
    };
    assert!(
        cluster.now.millis_since(took_over) < ELECTION_TIMEOUT_MS,
        "asked within the leader's first election timeout"
    );
    assert!(
        message.contains("1 of its 2 voters answer") && message.contains("would stop"),
        "{message}"
    );
}

/// (How far behind a learner may be is checked in `membership`'s unit tests; here the
/// learner is cut off, so it is both behind and silent, and silence is what is reported.)
#[test]
fn a_learner_is_promoted_only_once_it_answers_and_has_caught_up() {
    let mut cluster = Cluster::new(3, 29);
    let leader = elect(&mut cluster);
    cluster.join_node(NodeId(4));
    change(&mut cluster, add(4), 5000);
    cluster.cut_both_ways(leader, NodeId(4));
    let lag = paxkv_core::membership::PROMOTION_LAG_ENTRIES_MAX + 100;
    assert_eq!(write_keys(&mut cluster, 1, 1, lag), lag);
    let refused = try_change(&mut cluster, MemberRequest::Promote(NodeId(4)));
    let message = refusal_message(&refused, ErrorCode::MembershipRefused);
    assert!(message.contains("has not answered"), "{message}");
    cluster.heal();
    let promoted = change(&mut cluster, MemberRequest::Promote(NodeId(4)), 10_000);
    assert_eq!(voters(&promoted), vec![1, 2, 3, 4]);
}

#[test]
fn a_removed_node_learns_it_stops_and_does_not_start_again() {
    let mut cluster = Cluster::new(3, 31);
    let leader = elect(&mut cluster);
    let gone = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    // Removed while down: it learns when it comes back and pings a member.
    cluster.crash(gone);
    change(&mut cluster, MemberRequest::Remove(gone), 5000);
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
    cluster.restart(gone);
    let start = cluster.now;
    while cluster.replica(gone).unwrap().removed_at().is_none() {
        assert!(cluster.now.millis_since(start) < 5000, "never told");
        cluster.run_for(STEP_MS);
    }
    // It campaigns no more, and its own log now refuses a restart.
    cluster.run_for(5 * ELECTION_TIMEOUT_MS);
    assert_eq!(cluster.replica(gone).unwrap().role(), Role::Follower);
    cluster.crash(gone);
    let node = cluster.forget(gone);
    let config = cluster.node_config(gone);
    let refused = Replica::new(config, node.disk.recover(), cluster.now);
    let error = refused.err().expect("a removed node does not start");
    assert!(
        error.to_string().contains("was removed from the cluster"),
        "{error}"
    );
    assert_eq!(write_keys(&mut cluster, 1, 100, 5), 5);
}

#[test]
fn removing_the_leader_commits_then_another_node_leads() {
    let mut cluster = Cluster::new(3, 37);
    let old = elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 10), 10);
    let request = cluster.member_via(old, MemberRequest::Remove(old));
    let answer = cluster.wait_for(request, 2000).unwrap();
    assert!(
        matches!(&answer, Response::Members(members) if members.retired.contains(&old.0)),
        "{answer:?}"
    );
    let replica = cluster.replica(old).unwrap();
    assert!(replica.removed_at().is_some());
    assert_ne!(replica.role(), Role::Leader);
    cluster.forget(old);
    let new = elect(&mut cluster);
    assert_ne!(new, old);
    assert_eq!(write_keys(&mut cluster, 1, 100, 10), 10);
    cluster.check_acknowledged_writes_chosen();
    cluster.heal_and_converge(10_000);
}

/// Pins the planted `learner-counts-in-quorum`.
#[test]
fn a_learner_never_makes_up_a_quorum() {
    let mut cluster = Cluster::new(2, 41);
    let leader = elect(&mut cluster);
    cluster.join_node(NodeId(3));
    change(&mut cluster, add(3), 5000);
    let voter = if leader == NodeId(1) {
        NodeId(2)
    } else {
        NodeId(1)
    };
    cluster.crash(voter);
    // The leader and the learner are two of three nodes, but one of two voters.
    let request = cluster.put_via(leader, 1, 1, b"k", b"v");
    let answer = cluster.wait_for(request, 3 * ELECTION_TIMEOUT_MS);
    assert!(
        !matches!(answer, Some(Response::Put(_))),
        "a write was acknowledged by a voter and a learner: {answer:?}"
    );
}

/// Pins the planted `quorum-of-old-configuration`.
#[test]
fn a_change_counts_from_the_moment_it_is_appended() {
    let mut cluster = Cluster::new(3, 43);
    let leader = elect(&mut cluster);
    cluster.join_node(NodeId(4));
    change(&mut cluster, add(4), 5000);
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
    // The leader goes on hearing one other voter: a majority of {1, 2, 3}, not of {1, 2, 3, 4}.
    // The cut is fresh, so the live-quorum check still counts the cut nodes in.
    let others: Vec<NodeId> = [1, 2, 3]
        .into_iter()
        .map(NodeId)
        .filter(|id| *id != leader)
        .collect();
    cluster.cut_both_ways(leader, others[0]);
    cluster.cut_both_ways(leader, NodeId(4));
    let request = cluster.member_via(leader, MemberRequest::Promote(NodeId(4)));
    let answer = cluster.wait_for(request, 2 * ELECTION_TIMEOUT_MS);
    assert!(
        !matches!(answer, Some(Response::Members(_))),
        "a promotion to four voters committed with two of them: {answer:?}"
    );
}

/// Regression (simulator seed 94): a leader removed itself, committed the removal and stopped
/// before its one remaining follower learnt the commit. Counting the change jointly with the
/// configuration before it until commit, the survivor needed the stopped node's vote forever.
#[test]
fn a_survivor_that_never_learnt_the_removal_committed_still_leads() {
    let mut cluster = Cluster::new(3, 47);
    let leader = elect(&mut cluster);
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let third = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    shrink(&mut cluster, third.0);
    let before = cluster.replica(follower).unwrap().status().last_index;
    let request = cluster.member_via(leader, MemberRequest::Remove(leader));
    // Once the follower holds the change, nothing more from the leader reaches it.
    while cluster.replica(follower).unwrap().status().last_index == before {
        cluster.run_for(1);
    }
    cluster.faults.cut.insert((leader, follower));
    let answer = cluster.wait_for(request, 2000);
    assert!(matches!(answer, Some(Response::Members(_))), "{answer:?}");
    assert!(
        cluster.replica(follower).unwrap().commit_index()
            < cluster.replica(leader).unwrap().commit_index(),
        "the follower must not have learnt the commit for this test to mean anything"
    );
    cluster.forget(leader);
    let new = elect(&mut cluster);
    assert_eq!(new, follower);
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
}
