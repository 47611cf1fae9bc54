//! Named failure scenarios on the in-memory cluster. Each prints how long recovery took in
//! harness steps (one step = `STEP_MS` ms; election timeout = 300 ms = 30 steps).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{write_keys, Cluster, STEP_MS};
use paxkv_core::{NodeId, Role};
use paxkv_proto::client::{client_response::Body as Response, Consistency, ErrorCode};

const ELECTION_TIMEOUT_MS: u64 = 300;

fn elect(cluster: &mut Cluster) -> NodeId {
    let took = cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 999)
        .expect("a fresh cluster elects a leader");
    assert!(
        took <= 4 * ELECTION_TIMEOUT_MS,
        "first election took {took} ms"
    );
    cluster.leader().expect("a leader exists")
}

fn settle_and_check(cluster: &mut Cluster) {
    cluster.heal_and_converge(20 * ELECTION_TIMEOUT_MS);
    cluster.check_acknowledged_writes_chosen();
    cluster.check_reads();
}

fn report(name: &str, millis: u64) {
    eprintln!(
        "{name}: working leader after {} steps ({millis} ms)",
        millis / STEP_MS
    );
}

#[test]
fn basic_put_and_reads_of_every_consistency() {
    let mut cluster = Cluster::new(3, 1);
    let leader = elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 20), 20);
    let read = cluster.get_via(leader, b"key-5", Consistency::Linearizable);
    match cluster.wait_for(read, 1000) {
        Some(Response::Get(get)) => assert_eq!(get.kv.expect("key exists").value, b"value"),
        other => panic!("{other:?}"),
    }
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let refused = cluster.get_via(follower, b"key-5", Consistency::Linearizable);
    let answer = cluster.wait_for(refused, 100).expect("answered at once");
    assert!(
        Cluster::is_error(&answer, ErrorCode::NotLeader),
        "{answer:?}"
    );
    cluster.run_for(200);
    let stale = cluster.get_via(follower, b"key-5", Consistency::Stale);
    match cluster.wait_for(stale, 100) {
        Some(Response::Get(get)) => {
            assert!(get.kv.is_some(), "follower caught up after a heartbeat")
        }
        other => panic!("{other:?}"),
    }
    settle_and_check(&mut cluster);
}

#[test]
fn leader_crash_elects_a_new_leader_and_keeps_acknowledged_writes() {
    let mut cluster = Cluster::new(3, 2);
    let old = elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 10), 10);
    cluster.crash(old);
    let took = cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 7)
        .expect("new leader");
    report("leader crash", took);
    assert!(took <= 4 * ELECTION_TIMEOUT_MS);
    assert_ne!(cluster.leader(), Some(old));
    assert_eq!(write_keys(&mut cluster, 1, 11, 10), 10);
    settle_and_check(&mut cluster);
}

#[test]
fn minority_partition_of_the_leader() {
    let mut cluster = Cluster::new(5, 3);
    let old = elect(&mut cluster);
    let others: Vec<NodeId> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    let buddy = others[0];
    cluster.partition(&[old, buddy], &others[1..]);
    // A write sent to the deposed leader cannot commit.
    let stranded = cluster.put_via(old, 1, 1, b"stranded", b"x");
    let took = cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 8)
        .expect("majority side elects");
    report("minority partition of the leader", took);
    assert!(took <= 4 * ELECTION_TIMEOUT_MS);
    let new = cluster.leader().unwrap();
    assert!(others[1..].contains(&new));
    assert_ne!(
        cluster.replica(old).unwrap().role(),
        Role::Leader,
        "the cut-off leader stepped down"
    );
    // Once the deposed leader steps down, the stranded write is answered: it may still commit
    // under a later leader (if the old leader's entry survives), so its outcome is unknown.
    let answer = cluster
        .responses
        .get(&stranded)
        .expect("answered on stepping down");
    assert!(
        Cluster::is_error(answer, ErrorCode::OutcomeUnknown),
        "{answer:?}"
    );
    settle_and_check(&mut cluster);
}

/// Quorum loss: the leader can reach only one node, which reaches everyone; the other three see
/// each other and that one node but not the leader.
#[test]
fn partial_connectivity_leader_without_quorum_is_replaced() {
    let mut cluster = Cluster::new(5, 4);
    let old = elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
    let others: Vec<NodeId> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    let hub = others[0];
    cluster.partition(&[old], &others[1..]);
    let start = cluster.now;
    let took = cluster
        .time_to_working_leader(20 * ELECTION_TIMEOUT_MS, 9)
        .expect("a leader works again");
    report("quorum loss", took);
    assert!(took <= 5 * ELECTION_TIMEOUT_MS, "took {took} ms");
    let new = cluster.leader().unwrap();
    assert_ne!(new, old);
    let _ = (hub, start);
    assert_eq!(write_keys(&mut cluster, 1, 6, 5), 5);
    settle_and_check(&mut cluster);
}

/// Constrained election: the leader dies; the only quorum-connected node is one whose log is
/// behind; it must still take over (syncing from the most advanced log among its promises).
#[test]
fn partial_connectivity_constrained_election() {
    let took = constrained_election(5, 10, |_| {});
    report("constrained election", took);
}

/// The same with a lag of 700 entries: the new leader copies the log in several batches.
#[test]
fn constrained_election_copies_a_long_log_in_batches() {
    constrained_election(15, 700, |_| {});
}

/// The same when the most advanced acceptor compacted its log past the new leader's commit
/// point: the new leader first installs that acceptor's snapshot.
#[test]
fn constrained_election_installs_a_snapshot_from_the_most_advanced_acceptor() {
    constrained_election(16, 200, |config| config.snapshot_entries_threshold = 50);
}

/// Runs the constrained-election shape with `lag` entries the hub misses; returns the time
/// until a leader worked again.
fn constrained_election(
    seed: u64,
    lag: u64,
    adjust: impl Fn(&mut paxkv_core::ReplicaConfig),
) -> u64 {
    let mut cluster = Cluster::with_config(5, seed, adjust);
    let old = elect(&mut cluster);
    let others: Vec<NodeId> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    let hub = others[0];
    // Put the hub behind: it misses writes while cut off.
    cluster.isolate(hub);
    assert_eq!(write_keys(&mut cluster, 1, 1, lag), lag);
    cluster.heal();
    cluster.crash(old);
    // Now only the hub reaches a quorum: the three others see only the hub.
    for (i, x) in others[1..].iter().enumerate() {
        for y in &others[i + 2..] {
            cluster.cut_both_ways(*x, *y);
        }
    }
    let took = cluster
        .time_to_working_leader(20 * ELECTION_TIMEOUT_MS, 10)
        .expect("the hub leads");
    assert!(took <= 5 * ELECTION_TIMEOUT_MS, "took {took} ms");
    assert_eq!(cluster.leader(), Some(hub));
    assert!(
        cluster.replica(hub).unwrap().applied_index() > lag,
        "the hub has every write"
    );
    assert_eq!(write_keys(&mut cluster, 1, lag + 1, 5), 5);
    settle_and_check(&mut cluster);
    took
}

/// Chained: A and C cannot see each other, both see B. Whoever leads, the other must not keep
/// pre-empting it: leadership settles and stays.
#[test]
fn partial_connectivity_chain_does_not_livelock() {
    let mut cluster = Cluster::new(3, 6);
    let old = elect(&mut cluster);
    let others: Vec<NodeId> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    cluster.cut_both_ways(old, others[1]);
    let took = cluster
        .time_to_working_leader(20 * ELECTION_TIMEOUT_MS, 11)
        .expect("a leader works");
    report("chain", took);
    assert!(took <= 5 * ELECTION_TIMEOUT_MS, "took {took} ms");
    // Leadership stays put for a long stretch: count ballot changes.
    let ballot_before = cluster
        .replica(cluster.leader().unwrap())
        .unwrap()
        .promised();
    let mut changes = 0;
    let mut last = ballot_before;
    for _ in 0..100 {
        cluster.run_for(100);
        if let Some(leader) = cluster.leader() {
            let ballot = cluster.replica(leader).unwrap().promised();
            if ballot != last {
                changes += 1;
                last = ballot;
            }
        }
    }
    assert!(
        changes <= 1,
        "leadership changed {changes} times in 10 s: pre-emption loop"
    );
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
    settle_and_check(&mut cluster);
}

/// A cluster whose nodes keep `kept` applied entries in memory and take no snapshot of their
/// own in these tests (the threshold is never reached).
fn windowed_cluster(seed: u64, kept: u64) -> Cluster {
    Cluster::with_config(3, seed, |config| {
        config.log_entries_kept = kept;
        config.snapshot_entries_threshold = 10_000;
    })
}

/// Restarts `lagging`, which the leader's log no longer reaches: it must install a snapshot,
/// catch up, and the cluster check out.
fn restart_and_catch_up_from_a_snapshot(cluster: &mut Cluster, lagging: NodeId) {
    cluster.restart(lagging);
    cluster.run_for(2000);
    let status = cluster.replica(lagging).unwrap().status();
    assert!(
        status.snapshot_index > 0,
        "the lagging replica installed a snapshot"
    );
    assert!(cluster.converged(), "the lagging replica caught up");
    settle_and_check(cluster);
}

#[test]
fn whole_cluster_crash_and_restart_loses_no_acknowledged_write() {
    whole_cluster_crash_and_restart(Cluster::new(3, 7));
}

/// With nothing kept in memory once applied and no snapshot taken, the entries live in
/// storage alone: a restart of every node still finds them.
#[test]
fn whole_cluster_restart_finds_the_entries_only_storage_kept() {
    whole_cluster_crash_and_restart(windowed_cluster(7, 0));
}

fn whole_cluster_crash_and_restart(mut cluster: Cluster) {
    elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 30), 30);
    // Writes in flight at the moment of the crash may be lost, acknowledged ones never.
    let leader = cluster.leader().unwrap();
    for sequence in 31..40 {
        cluster.put_via(leader, 1, sequence, b"in-flight", b"x");
    }
    cluster.run_for(1);
    for id in cluster.ids() {
        cluster.crash(id);
    }
    for id in cluster.ids() {
        cluster.restart(id);
    }
    let took = cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 12)
        .expect("recovers");
    report("whole-cluster restart", took);
    let leader = cluster.leader().unwrap();
    for sequence in 1..=30 {
        let key = format!("key-{sequence}");
        let read = cluster.get_via(leader, key.as_bytes(), Consistency::Linearizable);
        match cluster.wait_for(read, 1000) {
            Some(Response::Get(get)) => assert!(get.kv.is_some(), "{key} lost"),
            other => panic!("{other:?}"),
        }
    }
    settle_and_check(&mut cluster);
}

/// A leader lets go of applied entries beyond the window it keeps even though no snapshot
/// covers them yet; a follower that was down meanwhile gets a snapshot encoded for it.
#[test]
fn a_follower_behind_the_entries_kept_in_memory_gets_a_snapshot() {
    let mut cluster = windowed_cluster(21, 10);
    elect(&mut cluster);
    let leader = cluster.leader().unwrap();
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.crash(lagging);
    assert_eq!(write_keys(&mut cluster, 1, 1, 100), 100);
    // The snapshot the leader starts sending the dead peer holds the log back for 20
    // election timeouts of silence (a receiver decoding a large one says nothing), no longer.
    cluster.run_for(20 * ELECTION_TIMEOUT_MS);
    let status = cluster.replica(leader).unwrap().status();
    assert_eq!(status.snapshot_index, 0, "no snapshot was taken");
    assert!(
        status.log_first_index > 80,
        "the leader let go of the old entries (first in memory: {}): {status:?}",
        status.log_first_index
    );
    restart_and_catch_up_from_a_snapshot(&mut cluster, lagging);
}

fn set_snapshot_write_backlogs(cluster: &mut Cluster, bytes: usize) {
    for node in cluster.nodes.values_mut() {
        if let Some(replica) = node.replica.as_mut() {
            replica.set_snapshot_write_backlog(bytes);
        }
    }
}

fn disk_snapshot_index(cluster: &Cluster, id: NodeId) -> u64 {
    let snapshot = cluster.nodes[&id].disk.state.snapshot.as_ref();
    snapshot.map_or(0, |(meta, _)| meta.index)
}

/// A node pauses the snapshot it hands to storage in parts while storage has as many of its
/// bytes still to write as the bound allows (encoding ahead of the disk only holds them in
/// memory), and finishes it once storage catches up; writes commit all the while.
#[test]
fn a_snapshot_waits_for_the_disk_to_write_what_it_was_given() {
    let mut cluster = Cluster::with_config(3, 23, |config| {
        config.snapshot_entries_threshold = 20;
        config.snapshot_step_bytes = 64;
        config.snapshot_write_backlog_max = 4096;
    });
    set_snapshot_write_backlogs(&mut cluster, 4096);
    elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 60), 60);
    cluster.run_for(2000);
    for id in cluster.ids() {
        let status = cluster.replica(id).unwrap().status();
        assert!(status.applied_index >= 60, "{id} applied the writes");
        assert_eq!(
            status.snapshot_index, 0,
            "{id} finished a snapshot the disk had no room for"
        );
        assert_eq!(disk_snapshot_index(&cluster, id), 0, "{id}");
    }
    // Just under the bound, the encoding goes on (its own parts count towards it too).
    set_snapshot_write_backlogs(&mut cluster, 1024);
    cluster.run_for(2000);
    for id in cluster.ids() {
        let status = cluster.replica(id).unwrap().status();
        assert!(
            status.snapshot_index >= 20,
            "{id} finished its snapshot: {status:?}"
        );
        assert_eq!(
            disk_snapshot_index(&cluster, id),
            status.snapshot_index,
            "{id}"
        );
    }
    settle_and_check(&mut cluster);
}

/// A peer installing a snapshot says nothing while it decodes it (seconds, at ten million
/// keys): the leader keeps the entries after the snapshot meanwhile, or the peer's last
/// acknowledgement would find them gone and it would need a second snapshot. Here its
/// acknowledgements are lost for a second while the writes go on.
#[test]
fn a_peer_silent_while_it_installs_a_snapshot_continues_from_the_log() {
    let mut cluster = windowed_cluster(23, 5);
    elect(&mut cluster);
    let leader = cluster.leader().unwrap();
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.crash(lagging);
    assert_eq!(write_keys(&mut cluster, 1, 1, 30), 30);
    cluster.cut_one_way(lagging, leader);
    cluster.restart(lagging);
    assert_eq!(write_keys(&mut cluster, 1, 31, 30), 30);
    cluster.run_for(1000);
    let installed = cluster.replica(lagging).unwrap().status().snapshot_index;
    assert!(installed > 0, "the lagging replica installed a snapshot");
    let first_kept = cluster.replica(leader).unwrap().status().log_first_index;
    assert!(
        first_kept <= installed + 1,
        "the leader kept what follows the snapshot (first in memory {first_kept}, snapshot at \
         {installed})"
    );
    cluster.heal();
    cluster.run_for(1000);
    assert!(cluster.converged(), "the lagging replica caught up");
    assert_eq!(
        cluster.replica(lagging).unwrap().status().snapshot_index,
        installed,
        "one snapshot was enough"
    );
    settle_and_check(&mut cluster);
}

/// A follower cut off for less than an election timeout still counts as live: the leader keeps
/// the entries it has not acknowledged, however few it keeps otherwise, and the follower
/// catches up from the log without a snapshot.
#[test]
fn a_follower_briefly_cut_off_catches_up_from_the_entries_kept_for_it() {
    let mut cluster = windowed_cluster(22, 0);
    elect(&mut cluster);
    let leader = cluster.leader().unwrap();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.run_for(100);
    let matched = |cluster: &Cluster| {
        let status = cluster.replica(leader).unwrap().status();
        let peer = status.peers.iter().find(|(peer, _, _)| *peer == follower);
        peer.and_then(|(_, _, matched)| *matched).unwrap()
    };
    let matched_before = matched(&cluster);
    let started = cluster.now.0;
    cluster.cut_both_ways(leader, follower);
    assert_eq!(write_keys(&mut cluster, 1, 1, 10), 10);
    assert!(
        cluster.now.0 - started < ELECTION_TIMEOUT_MS - 100,
        "the writes took {} ms: the follower no longer counts as live",
        cluster.now.0 - started
    );
    let status = cluster.replica(leader).unwrap().status();
    assert!(
        status.log_first_index <= matched_before + 1,
        "the leader kept what the follower lacks (first in memory {}, follower matched {})",
        status.log_first_index,
        matched_before
    );
    cluster.heal();
    cluster.run_for(1000);
    let status = cluster.replica(follower).unwrap().status();
    assert_eq!(status.snapshot_index, 0, "caught up without a snapshot");
    assert!(cluster.converged(), "the follower caught up");
    assert!(
        cluster.replica(leader).unwrap().status().log_first_index > status.commit_index - 5,
        "once it caught up, the leader let go of what it kept for it"
    );
    settle_and_check(&mut cluster);
}

#[test]
fn replica_far_behind_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::with_config(3, 8, |config| config.snapshot_entries_threshold = 20);
    elect(&mut cluster);
    let leader = cluster.leader().unwrap();
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.crash(lagging);
    assert_eq!(write_keys(&mut cluster, 1, 1, 100), 100);
    cluster.run_for(500);
    let leader_snapshot = cluster.replica(leader).unwrap().status().snapshot_index;
    assert!(
        leader_snapshot >= 20,
        "the leader compacted its log (snapshot at {leader_snapshot})"
    );
    restart_and_catch_up_from_a_snapshot(&mut cluster, lagging);
}

#[test]
fn retried_write_is_applied_once_across_a_failover() {
    let mut cluster = Cluster::new(3, 9);
    let old = elect(&mut cluster);
    let first = cluster.put_via(old, 42, 1, b"counter", b"1");
    cluster.wait_for(first, 1000).expect("answered");
    cluster.crash(old);
    cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 13)
        .expect("new leader");
    let leader = cluster.leader().unwrap();
    let retry = cluster.put_via(leader, 42, 1, b"counter", b"1");
    let (Some(Response::Put(a)), Some(Response::Put(b))) = (
        cluster.responses.get(&first).cloned(),
        cluster.wait_for(retry, 1000),
    ) else {
        panic!("both answered")
    };
    assert_eq!(
        a.header.unwrap().revision,
        b.header.unwrap().revision,
        "the retry got the remembered answer"
    );
    settle_and_check(&mut cluster);
}

#[test]
fn leader_status_reports_follower_progress() {
    let mut cluster = Cluster::new(3, 17);
    let leader = elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
    cluster.run_for(200);
    let status = cluster.replica(leader).unwrap().status();
    assert_eq!(status.peers.len(), 2);
    for (peer, heard_ms, matched) in status.peers {
        assert!(heard_ms.is_some_and(|ms| ms < 100), "{peer} heard recently");
        assert_eq!(
            matched,
            Some(status.last_index),
            "{peer} matched the whole log"
        );
    }
}

#[test]
fn reads_beyond_the_waiting_limit_are_refused_as_busy() {
    // A large drift bound makes the lease (180 ms) run out well before the leader steps down.
    let mut cluster = Cluster::with_config(3, 18, |config| config.clock_drift_ppm_max = 200_000);
    let leader = elect(&mut cluster);
    // Cut from its followers, the leader's lease runs out and reads wait for a heartbeat round.
    let followers: Vec<NodeId> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    cluster.partition(&[leader], &followers);
    cluster.run_for(ELECTION_TIMEOUT_MS - 50);
    let reads: Vec<_> = (0..=paxkv_core::PENDING_READS_MAX)
        .map(|_| cluster.get_via(leader, b"k", Consistency::Linearizable))
        .collect();
    cluster.run_for(STEP_MS);
    let last = cluster
        .responses
        .get(reads.last().unwrap())
        .expect("refused at once");
    assert!(Cluster::is_error(last, ErrorCode::Busy), "{last:?}");
    assert!(
        !cluster.responses.contains_key(&reads[0]),
        "earlier reads still wait"
    );
}

#[test]
fn writes_to_a_follower_are_refused_with_a_leader_hint() {
    let mut cluster = Cluster::new(3, 10);
    let leader = elect(&mut cluster);
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.run_for(200);
    let request = cluster.put_via(follower, 1, 1, b"k", b"v");
    match cluster.wait_for(request, 10) {
        Some(Response::Error(error)) => {
            assert_eq!(error.code, ErrorCode::NotLeader as i32);
            assert_eq!(error.leader_id, leader.0, "the refusal names the leader");
        }
        other => panic!("{other:?}"),
    }
}

/// With a lease a leader answers a linearizable read at once; once it cannot reach a quorum
/// its lease runs out, it stops answering from local state, and then steps down.
#[test]
fn lease_reads_answer_at_once_and_stop_when_the_quorum_is_gone() {
    let mut cluster = Cluster::new(3, 11);
    let leader = elect(&mut cluster);
    assert_eq!(write_keys(&mut cluster, 1, 1, 3), 3);
    cluster.run_for(100);
    // The harness holds answers while a node syncs (the node loop does not): start from a
    // moment between syncs.
    while cluster.is_persisting(leader) {
        cluster.run_for(1);
    }
    let read = cluster.get_via(leader, b"key-1", Consistency::Linearizable);
    assert!(
        matches!(cluster.responses.get(&read), Some(Response::Get(_))),
        "a leader holding a lease answers in the same turn, with no round trip"
    );
    cluster.isolate(leader);
    cluster.run_for(ELECTION_TIMEOUT_MS); // the lease (shorter than this) has run out
    let late = cluster.get_via(leader, b"key-1", Consistency::Linearizable);
    cluster.run_for(10);
    assert!(
        !matches!(cluster.responses.get(&late), Some(Response::Get(_))),
        "an isolated leader must not answer from an expired lease"
    );
    let answer = cluster
        .wait_for(late, 2 * ELECTION_TIMEOUT_MS)
        .expect("answered once it steps down");
    assert!(
        Cluster::is_error(&answer, ErrorCode::NotLeader),
        "{answer:?}"
    );
    settle_and_check(&mut cluster);
}

/// Chain from a cold start: both ends campaign, neither can see the other; one leader must
/// emerge and then hold on.
#[test]
fn partial_connectivity_chain_from_a_cold_start() {
    let mut cluster = Cluster::new(3, 12);
    cluster.cut_both_ways(NodeId(1), NodeId(3));
    let took = cluster
        .time_to_working_leader(20 * ELECTION_TIMEOUT_MS, 14)
        .expect("a leader works");
    report("chain from a cold start", took);
    assert!(took <= 5 * ELECTION_TIMEOUT_MS, "took {took} ms");
    let leader = cluster.leader().unwrap();
    let ballot = cluster.replica(leader).unwrap().promised();
    cluster.run_for(30 * ELECTION_TIMEOUT_MS);
    assert_eq!(cluster.leader(), Some(leader), "leadership moved");
    assert_eq!(
        cluster.replica(leader).unwrap().promised(),
        ballot,
        "the leader was pre-empted"
    );
    assert_eq!(write_keys(&mut cluster, 1, 1, 5), 5);
    settle_and_check(&mut cluster);
}

/// Finding 8 of the outside review (pre-vote): a node that loses the leader but still hears
/// the third node asks first whether it could win; refused (the third node still hears the
/// leader), it never raises its ballot, so when its link comes back it does not depose the
/// healthy leader. (Without pre-vote it campaigned, raised its promise, and its higher ballot
/// deposed the leader on reconnect.)
#[test]
fn a_node_cut_off_from_the_leader_alone_neither_campaigns_nor_deposes_it() {
    let mut cluster = Cluster::new(3, 13);
    let leader = elect(&mut cluster);
    let ballot = cluster.replica(leader).unwrap().promised();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let follower_ballot = cluster.replica(follower).unwrap().promised();
    cluster.cut_both_ways(leader, follower);
    let mut campaigned = false;
    for _ in 0..(4 * ELECTION_TIMEOUT_MS / STEP_MS) {
        cluster.run_for(STEP_MS);
        campaigned |= cluster.replica(follower).unwrap().role() == Role::Candidate;
    }
    assert!(!campaigned, "it campaigned although it could not win");
    assert_eq!(
        cluster.replica(follower).unwrap().promised(),
        follower_ballot,
        "its promise rose"
    );
    // Isolated for good it settles as a follower; healed, the leader is still the leader.
    cluster.isolate(follower);
    cluster.run_for(6 * ELECTION_TIMEOUT_MS);
    assert_eq!(cluster.replica(follower).unwrap().role(), Role::Follower);
    cluster.heal();
    cluster.run_for(4 * ELECTION_TIMEOUT_MS);
    assert_eq!(cluster.leader(), Some(leader), "leadership moved");
    assert_eq!(
        cluster.replica(leader).unwrap().promised(),
        ballot,
        "the healthy leader was deposed"
    );
    settle_and_check(&mut cluster);
}

/// The limit on uncommitted entries refuses a flood with `Busy` but never a steady stream.
#[test]
fn the_uncommitted_limit_refuses_floods_but_not_steady_writes() {
    let mut cluster = Cluster::with_config(3, 19, |config| config.uncommitted_entries_max = 8);
    elect(&mut cluster);
    assert_eq!(
        write_keys(&mut cluster, 1, 1, 50),
        50,
        "one at a time never hits the limit"
    );
    let leader = cluster.leader().unwrap();
    let flood: Vec<_> = (100..120)
        .map(|sequence| cluster.put_via(leader, 2, sequence, b"f", b"v"))
        .collect();
    cluster.run_for(200);
    let busy = flood
        .iter()
        .filter(|request| {
            cluster
                .responses
                .get(request)
                .is_some_and(|r| Cluster::is_error(r, ErrorCode::Busy))
        })
        .count();
    let done = flood
        .iter()
        .filter(|request| matches!(cluster.responses.get(request), Some(Response::Put(_))))
        .count();
    assert_eq!((done, busy), (8, 12), "eight fit, the rest are refused");
}

/// A snapshot of several chunks reaches a lagging replica through lost, duplicated and
/// reordered messages.
#[test]
fn a_snapshot_of_several_chunks_crosses_a_lossy_network() {
    let mut cluster = Cluster::with_config(3, 20, |config| config.snapshot_entries_threshold = 30);
    let leader = elect(&mut cluster);
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.crash(lagging);
    let value = vec![b'x'; 16 * 1024];
    for sequence in 1..=80 {
        let key = format!("big-{sequence}");
        let request = cluster.put_via(leader, 1, sequence, key.as_bytes(), &value);
        assert!(matches!(
            cluster.wait_for(request, 1000),
            Some(Response::Put(_))
        ));
    }
    cluster.run_for(300);
    cluster.faults.drop_ppm = 100_000;
    cluster.faults.duplicate_ppm = 100_000;
    cluster.faults.jitter_ms = 20;
    cluster.restart(lagging);
    cluster.run_for(5000);
    let status = cluster.replica(lagging).unwrap().status();
    assert!(
        status.snapshot_index >= 30,
        "installed a snapshot of 80 x 16 KiB (several chunks)"
    );
    assert_eq!(
        cluster
            .replica(lagging)
            .unwrap()
            .kv()
            .get(b"big-1")
            .unwrap()
            .value,
        value
    );
    settle_and_check(&mut cluster);
}

/// Followers apply a write as soon as it commits, not with the next write or heartbeat: a
/// watch or a session read served by a follower then sees it at once. Heartbeats here come
/// once a second, so only the leader's commit notice can tell them within 40 ms.
#[test]
fn followers_learn_a_commit_without_waiting_for_the_next_heartbeat() {
    let mut cluster = Cluster::with_config(3, 11, |config| {
        config.heartbeat_interval_ms = 1000;
        config.election_timeout_ms = 3000;
    });
    cluster
        .time_to_working_leader(30_000, 999)
        .expect("a fresh cluster elects a leader");
    cluster.run_for(1500);
    assert_eq!(write_keys(&mut cluster, 0, 1, 1), 1);
    let leader = cluster.leader().unwrap();
    let index = cluster.replica(leader).unwrap().applied_index();
    let committed_at = cluster.now;
    cluster.run_for(40);
    for id in cluster.ids() {
        let applied = cluster.replica(id).unwrap().applied_index();
        assert!(
            applied >= index,
            "node {id:?} (leader {leader:?}) applied {applied} of {index} {} ms after the write",
            cluster.now.millis_since(committed_at)
        );
    }
}
