//! One replica driven by hand with crafted messages, for rules that random schedules reach
//! only rarely: which ballots an acceptor answers, what a follower acknowledges and commits,
//! and how a new leader copies a log from another acceptor.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use paxkv_core::{DurableState, NodeId, Outgoing, Ready, Replica, ReplicaConfig, Role, Time};
use paxkv_proto::peer::{
    peer_message::Body, Accept, Ballot, Entry, Heartbeat, KvSnapshot, LogEntry, LogRequest,
    LogResponse, LogState, Noop, PeerMessage, Ping, Prepare, Promise, SnapshotChunk, SnapshotMeta,
};
use prost::Message;

const ELECTION_TIMEOUT_MS: u64 = 300;

fn config(id: u64) -> ReplicaConfig {
    let mut config = ReplicaConfig::new(NodeId(id), vec![NodeId(1), NodeId(2), NodeId(3)], 7);
    config.election_timeout_ms = ELECTION_TIMEOUT_MS;
    config.heartbeat_interval_ms = 50;
    config
}

fn replica() -> Replica {
    Replica::new(config(1), DurableState::default(), Time(0)).unwrap()
}

fn deliver(replica: &mut Replica, from: u64, ballot: Ballot, body: Body) {
    let now = replica.now();
    replica.step(
        NodeId(from),
        PeerMessage {
            ballot: Some(ballot),
            body: Some(body),
        },
        now,
    );
}

/// Persists (by fiat) what `ready` asks, advances, and returns the messages released by the sync.
fn persist_and_advance(replica: &mut Replica, mut ready: Ready) -> Vec<Outgoing> {
    ready.take_persist();
    replica.advance(ready).take_messages()
}

/// Persists (by fiat) and advances; returns every message released, in order.
fn cycle(replica: &mut Replica) -> Vec<(NodeId, Body)> {
    let mut sent = Vec::new();
    for _ in 0..3 {
        if !replica.has_ready() {
            break;
        }
        let mut ready: Ready = replica.ready();
        let messages = ready.take_messages();
        let after_persist = persist_and_advance(replica, ready);
        for outgoing in messages.into_iter().chain(after_persist) {
            sent.push((outgoing.to, outgoing.message.body.unwrap()));
        }
    }
    sent
}

fn entries(first: u64, last: u64, ballot: Ballot) -> Vec<LogEntry> {
    (first..=last)
        .map(|index| LogEntry {
            index,
            ballot: Some(ballot),
            entry: Some(Entry {
                kind: Some(paxkv_proto::peer::entry::Kind::Noop(Noop {})),
                log_time_ms: index,
            }),
        })
        .collect()
}

fn accept(prev_index: u64, prev_ballot: Ballot, entries: Vec<LogEntry>, commit_index: u64) -> Body {
    Body::Accept(Accept {
        prev_index,
        prev_ballot: Some(prev_ballot),
        entries,
        commit_index,
    })
}

fn accepted_to(sent: &[(NodeId, Body)], to: u64) -> Vec<u64> {
    sent.iter()
        .filter_map(|(node, body)| match body {
            Body::Accepted(accepted) if node.0 == to => Some(accepted.match_index),
            _ => None,
        })
        .collect()
}

#[test]
fn an_acknowledgement_owed_to_an_old_ballot_is_never_sent_to_a_newer_leader() {
    let mut replica = replica();
    let old = Ballot::new(1, 2);
    let new = Ballot::new(2, 3);
    deliver(
        &mut replica,
        2,
        old,
        accept(0, Ballot::ZERO, entries(1, 3, old), 0),
    );
    // Before anything is synced, a newer leader replaces the entries with one of its own.
    deliver(
        &mut replica,
        3,
        new,
        accept(0, Ballot::ZERO, entries(1, 1, new), 0),
    );
    let sent = cycle(&mut replica);
    assert_eq!(
        accepted_to(&sent, 3),
        vec![1],
        "the new leader hears only of what it sent"
    );
    assert!(
        accepted_to(&sent, 2).is_empty(),
        "the replaced entries are not acknowledged"
    );
}

#[test]
fn a_re_elected_leader_does_not_commit_what_matched_under_its_old_ballot() {
    let mut replica = replica();
    let old = Ballot::new(1, 2);
    deliver(
        &mut replica,
        2,
        old,
        accept(0, Ballot::ZERO, entries(1, 3, old), 0),
    );
    cycle(&mut replica);
    assert_eq!(replica.commit_index(), 0);
    // Node 2 leads again under a new ballot whose log may differ after index 0.
    let new = Ballot::new(2, 2);
    deliver(
        &mut replica,
        2,
        new,
        Body::Heartbeat(Heartbeat {
            round: 1,
            commit_index: 3,
        }),
    );
    cycle(&mut replica);
    assert_eq!(
        replica.commit_index(),
        0,
        "no entry is known to match the new ballot's log"
    );
    deliver(&mut replica, 2, new, accept(3, old, vec![], 3));
    cycle(&mut replica);
    assert_eq!(
        replica.commit_index(),
        3,
        "after a matching Accept it commits"
    );
}

#[test]
fn log_requests_are_answered_only_for_the_promised_ballot() {
    let mut replica = replica();
    let leader = Ballot::new(1, 2);
    deliver(
        &mut replica,
        2,
        leader,
        accept(0, Ballot::ZERO, entries(1, 3, leader), 0),
    );
    cycle(&mut replica);
    let candidate = Ballot::new(5, 3);
    let request = || Body::LogRequest(LogRequest { from_index: 1 });
    deliver(&mut replica, 3, candidate, request());
    assert!(
        cycle(&mut replica).is_empty(),
        "no answer to a ballot it has not promised"
    );
    // Support for the live leader lasts an election timeout; after that it promises.
    replica.tick(Time(ELECTION_TIMEOUT_MS + 1));
    cycle(&mut replica);
    deliver(
        &mut replica,
        3,
        candidate,
        Body::Prepare(Prepare { commit_index: 0 }),
    );
    let sent = cycle(&mut replica);
    assert!(sent
        .iter()
        .any(|(to, body)| to.0 == 3 && matches!(body, Body::Promise(_))));
    deliver(&mut replica, 3, candidate, request());
    let sent = cycle(&mut replica);
    let answered = sent.iter().any(|(to, body)| {
        to.0 == 3 && matches!(body, Body::LogResponse(response) if response.entries.len() == 3)
    });
    assert!(answered, "the promised candidate gets the log: {sent:?}");
    deliver(&mut replica, 2, leader, request());
    let sent = cycle(&mut replica);
    assert!(sent
        .iter()
        .all(|(_, body)| !matches!(body, Body::LogResponse(_))));
    assert!(
        sent.iter()
            .any(|(to, body)| to.0 == 2 && matches!(body, Body::Nack(_))),
        "{sent:?}"
    );
}

/// Lets replica 1 hear its peers until its election timer makes it campaign (node 2 grants its
/// pre-vote); returns the time.
fn campaign(replica: &mut Replica) -> u64 {
    let mut now = replica.now().millis();
    let start = now;
    while replica.role() != Role::Candidate {
        now += 10;
        for peer in [2, 3] {
            deliver(replica, peer, Ballot::ZERO, Body::Ping(Ping {}));
        }
        replica.tick(Time(now));
        for (to, body) in cycle(replica) {
            if let (2, Body::PreVote(pre_vote)) = (to.0, body) {
                let answer = paxkv_proto::peer::PreVoteAnswer {
                    round: pre_vote.round,
                    granted: true,
                };
                deliver(replica, 2, Ballot::ZERO, Body::PreVoteAnswer(answer));
                // The campaign starts: its promise is persisted like any other.
                cycle(replica);
            }
        }
        assert!(now < start + 10 * ELECTION_TIMEOUT_MS, "never campaigned");
    }
    now
}

/// Makes replica 1 campaign and win with node 2's promise reporting `log`; returns the
/// replica and the time reached.
fn campaign_and_win(log: LogState) -> (Replica, u64) {
    campaign_and_win_from(replica(), log)
}

/// `campaign_and_win` for a replica made by the caller.
fn campaign_and_win_from(mut replica: Replica, log: LogState) -> (Replica, u64) {
    let now = campaign(&mut replica);
    let ballot = replica.promised();
    deliver(
        &mut replica,
        2,
        ballot,
        Body::Promise(Promise {
            log: Some(log),
            configs: vec![],
        }),
    );
    assert_eq!(replica.role(), Role::Leader);
    (replica, now)
}

/// Makes replica 1 win with node 2's promise reporting a longer log, so it must copy it.
fn leader_syncing_from_node_2(last_index: u64) -> Replica {
    let log = LogState {
        last_index,
        last_ballot: Some(Ballot::new(1, 2)),
        commit_index: 0,
        snapshot_index: 0,
    };
    let (mut replica, _) = campaign_and_win(log);
    let sent = cycle(&mut replica);
    let asked = sent.iter().any(|(to, body)| {
        to.0 == 2 && matches!(body, Body::LogRequest(request) if request.from_index == 1)
    });
    assert!(
        asked,
        "a new leader behind asks the most advanced acceptor: {sent:?}"
    );
    replica
}

#[test]
fn a_new_leader_copies_the_most_advanced_log_in_batches_before_leading() {
    let mut replica = leader_syncing_from_node_2(600);
    let ballot = replica.promised();
    let old = Ballot::new(1, 2);
    let response = |from_index: u64, entries: Vec<LogEntry>| {
        Body::LogResponse(LogResponse {
            from_index,
            entries,
            last_index: 600,
            snapshot_follows: false,
        })
    };
    deliver(&mut replica, 3, ballot, response(1, entries(1, 512, old)));
    cycle(&mut replica);
    assert_eq!(
        replica.status().last_index,
        0,
        "an answer from another node is ignored"
    );
    deliver(&mut replica, 2, ballot, response(1, entries(1, 512, old)));
    let sent = cycle(&mut replica);
    assert_eq!(
        replica.status().last_index,
        512,
        "no no-op yet: the copy is incomplete"
    );
    let asked_more = sent.iter().any(|(to, body)| {
        to.0 == 2 && matches!(body, Body::LogRequest(request) if request.from_index == 513)
    });
    assert!(asked_more, "{sent:?}");
    deliver(
        &mut replica,
        2,
        ballot,
        response(513, entries(513, 600, old)),
    );
    cycle(&mut replica);
    assert_eq!(
        replica.status().last_index,
        601,
        "copied everything, then appended its no-op"
    );
}

#[test]
fn accepts_reaching_into_an_installed_snapshot_skip_the_covered_entries() {
    let ballot = Ballot::new(1, 2);
    let meta = SnapshotMeta {
        index: 10,
        ballot: Some(ballot),
        configuration: None,
    };
    let durable = DurableState {
        snapshot: Some((meta, KvSnapshot::default().encode_to_vec())),
        ..DurableState::default()
    };
    let mut replica = Replica::new(config(1), durable, Time(0)).unwrap();
    deliver(
        &mut replica,
        2,
        ballot,
        accept(5, ballot, entries(6, 12, ballot), 12),
    );
    let sent = cycle(&mut replica);
    assert_eq!(replica.status().last_index, 12);
    assert_eq!(accepted_to(&sent, 2), vec![12]);
    assert_eq!(replica.commit_index(), 12);
}

#[test]
fn the_configuration_is_persisted_and_wins_over_the_callers_on_restart() {
    let mut replica = replica();
    let mut ready = replica.ready();
    let hard_state = ready
        .take_persist()
        .hard_state
        .expect("the first ready persists the configuration");
    replica.advance(ready);
    let members = hard_state.configuration.as_ref().unwrap().members.clone();
    assert_eq!(members, vec![1, 2, 3]);
    // Restarted with different flags, the replica keeps the membership it persisted.
    let mut flags = config(1);
    flags.members = vec![NodeId(1), NodeId(4), NodeId(5)];
    let durable = DurableState {
        hard_state,
        ..DurableState::default()
    };
    let restarted = Replica::new(flags, durable, Time(0)).unwrap();
    assert_eq!(restarted.members(), &[NodeId(1), NodeId(2), NodeId(3)]);
}

// --- leader side ----------------------------------------------------------------------------

fn accepted(match_index: u64) -> Body {
    Body::Accepted(paxkv_proto::peer::Accepted { match_index })
}

fn heartbeat_rounds_to(sent: &[(NodeId, Body)], to: u64) -> Vec<u64> {
    sent.iter()
        .filter_map(|(node, body)| match body {
            Body::Heartbeat(heartbeat) if node.0 == to => Some(heartbeat.round),
            _ => None,
        })
        .collect()
}

fn get(request: u64) -> (paxkv_core::RequestId, paxkv_core::ReadRequest) {
    let read = paxkv_core::ReadRequest::Get(paxkv_proto::client::GetRequest {
        key: b"k".to_vec(),
        consistency: paxkv_proto::client::Consistency::Linearizable as i32,
        min_revision: 0,
        min_applied_index: 0,
    });
    (paxkv_core::RequestId(request), read)
}

/// Reads and returns which requests were answered with a value (not an error), draining
/// every ready.
fn answered_reads(replica: &mut Replica) -> Vec<u64> {
    let mut answered = Vec::new();
    for _ in 0..3 {
        if !replica.has_ready() {
            break;
        }
        let mut ready = replica.ready();
        for (request, response) in &ready.take_responses() {
            if matches!(response, paxkv_proto::client::client_response::Body::Get(_)) {
                answered.push(request.0);
            }
        }
        persist_and_advance(replica, ready);
    }
    answered
}

/// Counting copies of an old ballot's entry is unsafe (another leader may still overwrite it):
/// a leader commits only once an entry of its own ballot reaches a quorum.
#[test]
fn a_leader_commits_adopted_entries_only_with_one_of_its_own() {
    let mut replica = leader_syncing_from_node_2(3);
    let ballot = replica.promised();
    let old = Ballot::new(1, 2);
    let response = LogResponse {
        from_index: 1,
        entries: entries(1, 3, old),
        last_index: 3,
        snapshot_follows: false,
    };
    deliver(&mut replica, 2, ballot, Body::LogResponse(response));
    cycle(&mut replica);
    assert_eq!(
        replica.status().last_index,
        4,
        "adopted 1..=3, then its no-op at 4"
    );
    deliver(&mut replica, 3, ballot, accepted(3));
    cycle(&mut replica);
    assert_eq!(
        replica.commit_index(),
        0,
        "a quorum holds 1..=3, but not in this ballot"
    );
    deliver(&mut replica, 3, ballot, accepted(4));
    cycle(&mut replica);
    assert_eq!(replica.commit_index(), 4);
}

/// A read that reaches a new leader before its no-op commits waits, then is confirmed by a
/// fresh heartbeat round.
#[test]
fn reads_wait_for_the_new_leaders_no_op_and_a_fresh_round() {
    let (mut replica, _) = campaign_and_win(LogState::default());
    let ballot = replica.promised();
    cycle(&mut replica);
    let (request, read) = get(1);
    replica.read(request, read, replica.now());
    assert!(
        answered_reads(&mut replica).is_empty(),
        "the no-op is not committed yet"
    );
    deliver(&mut replica, 2, ballot, accepted(1));
    let sent = cycle(&mut replica);
    let rounds = heartbeat_rounds_to(&sent, 2);
    assert!(
        !rounds.is_empty(),
        "the commit of the no-op starts a round for the waiting read"
    );
    let round = *rounds.last().unwrap();
    // An acknowledgement of an older round does not confirm it.
    deliver(
        &mut replica,
        2,
        ballot,
        Body::HeartbeatAck(paxkv_proto::peer::HeartbeatAck {
            round: round - 1,
            log: None,
        }),
    );
    assert!(
        answered_reads(&mut replica).is_empty(),
        "confirmed by a round sent before the read"
    );
    deliver(
        &mut replica,
        2,
        ballot,
        Body::HeartbeatAck(paxkv_proto::peer::HeartbeatAck { round, log: None }),
    );
    assert_eq!(answered_reads(&mut replica), vec![1]);
}

/// Replica 1 leading, its no-op committed, and a heartbeat round sent at the returned time and
/// acknowledged by node 2: its lease runs from that send time. Returns the round too.
fn leader_with_a_lease() -> (Replica, u64, u64) {
    leader_with_a_lease_from(replica())
}

/// `leader_with_a_lease` for a replica made by the caller.
fn leader_with_a_lease_from(replica: Replica) -> (Replica, u64, u64) {
    let (mut replica, start) = campaign_and_win_from(replica, LogState::default());
    let ballot = replica.promised();
    cycle(&mut replica);
    deliver(&mut replica, 2, ballot, accepted(1));
    cycle(&mut replica);
    let sent_at = start + 50;
    replica.tick(Time(sent_at));
    let sent = cycle(&mut replica);
    let round = *heartbeat_rounds_to(&sent, 2)
        .last()
        .expect("a heartbeat went out");
    deliver(
        &mut replica,
        2,
        ballot,
        Body::HeartbeatAck(paxkv_proto::peer::HeartbeatAck { round, log: None }),
    );
    cycle(&mut replica);
    (replica, sent_at, round)
}

/// With a lease the leader answers at once; once the lease runs out it needs a new round,
/// and an acknowledgement of a round sent before the read does not do.
#[test]
fn lease_reads_hold_only_while_the_lease_does() {
    let (mut replica, sent_at, round) = leader_with_a_lease();
    let ballot = replica.promised();
    let lease_ms = config(1).lease_duration_ms();
    // Keep hearing from node 3 so the leader keeps its quorum connectivity, but let node 2's
    // acknowledgements stop: no later round is acknowledged.
    let mut now = sent_at;
    let mut request = 10;
    while now + 10 < sent_at + lease_ms {
        now += 10;
        deliver(&mut replica, 3, ballot, Body::Ping(Ping {}));
        replica.tick(Time(now));
        cycle(&mut replica);
        request += 1;
        let (id, read) = get(request);
        replica.read(id, read, replica.now());
        assert_eq!(
            answered_reads(&mut replica),
            vec![request],
            "inside the lease at {now} ms"
        );
    }
    now = sent_at + lease_ms + 1;
    deliver(&mut replica, 3, ballot, Body::Ping(Ping {}));
    replica.tick(Time(now));
    let sent = cycle(&mut replica);
    let latest = heartbeat_rounds_to(&sent, 2)
        .into_iter()
        .max()
        .unwrap_or(round);
    let (id, read) = get(99);
    replica.read(id, read, replica.now());
    let sent = cycle(&mut replica);
    let confirming = heartbeat_rounds_to(&sent, 2)
        .into_iter()
        .max()
        .expect("the read starts a round");
    assert!(
        confirming > latest,
        "a read is confirmed by a round sent after it arrived"
    );
    assert!(
        answered_reads(&mut replica).is_empty(),
        "the lease ran out: no answer from local state"
    );
    for old in [round, latest] {
        let ack = paxkv_proto::peer::HeartbeatAck {
            round: old,
            log: None,
        };
        deliver(&mut replica, 2, ballot, Body::HeartbeatAck(ack));
        assert!(
            answered_reads(&mut replica).is_empty(),
            "round {old}, sent before the read, does not confirm it"
        );
    }
    let ack = paxkv_proto::peer::HeartbeatAck {
        round: confirming,
        log: None,
    };
    deliver(&mut replica, 2, ballot, Body::HeartbeatAck(ack));
    assert_eq!(answered_reads(&mut replica), vec![99]);
}

#[test]
fn a_rejected_accept_is_resent_from_the_followers_hint() {
    let (mut replica, _) = campaign_and_win(LogState::default());
    let ballot = replica.promised();
    cycle(&mut replica);
    for sequence in 1..=3 {
        let command = paxkv_proto::peer::Command {
            client_id: 1,
            sequence,
            op: Some(paxkv_proto::peer::command::Op::Put(
                paxkv_proto::client::PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                },
            )),
        };
        replica.propose(paxkv_core::RequestId(sequence), command, replica.now());
    }
    cycle(&mut replica);
    deliver(&mut replica, 3, ballot, accepted(4));
    cycle(&mut replica);
    let reject = |hint_index| {
        Body::AcceptReject(paxkv_proto::peer::AcceptReject {
            hint_index,
            log: None,
        })
    };
    // A reject under another ballot is stale and ignored.
    deliver(&mut replica, 3, Ballot::new(ballot.round + 7, 3), reject(1));
    let sent = cycle(&mut replica);
    assert!(
        !sent
            .iter()
            .any(|(to, body)| to.0 == 3 && matches!(body, Body::Accept(_))),
        "{sent:?}"
    );
    deliver(&mut replica, 3, ballot, reject(1));
    let sent = cycle(&mut replica);
    let resent = sent.iter().any(|(to, body)| {
        to.0 == 3 && matches!(body, Body::Accept(accept) if accept.prev_index == 1 && accept.entries.len() == 3)
    });
    assert!(resent, "{sent:?}");
}

#[test]
fn an_accept_no_correct_leader_sends_is_dropped_without_a_panic() {
    let mut replica = replica();
    let ballot = Ballot::new(1, 2);
    // A ballot before the log's first entry.
    deliver(
        &mut replica,
        2,
        ballot,
        accept(0, Ballot::new(1, 2), entries(1, 2, ballot), 0),
    );
    // Entries with a gap in their numbers.
    let mut gapped = entries(1, 3, ballot);
    gapped.remove(1);
    deliver(&mut replica, 2, ballot, accept(0, Ballot::ZERO, gapped, 0));
    let sent = cycle(&mut replica);
    assert!(accepted_to(&sent, 2).is_empty(), "{sent:?}");
    // The follower is unharmed: the leader's next, well-formed accept is taken.
    deliver(
        &mut replica,
        2,
        ballot,
        accept(0, Ballot::ZERO, entries(1, 2, ballot), 0),
    );
    let sent = cycle(&mut replica);
    assert_eq!(accepted_to(&sent, 2), vec![2]);
}

// --- rules found untested by mutation testing -------------------------------------------------

fn rejects_to(sent: &[(NodeId, Body)], to: u64) -> Vec<u64> {
    sent.iter()
        .filter_map(|(node, body)| match body {
            Body::AcceptReject(reject) if node.0 == to => Some(reject.hint_index),
            _ => None,
        })
        .collect()
}

/// On a mismatch the follower points the leader before the whole run of entries with the
/// mismatching ballot, so one round trip skips a stale run.
#[test]
fn a_mismatch_hint_skips_the_whole_stale_run() {
    let mut replica = replica();
    let (first, second) = (Ballot::new(1, 2), Ballot::new(2, 2));
    deliver(
        &mut replica,
        2,
        first,
        accept(0, Ballot::ZERO, entries(1, 2, first), 0),
    );
    deliver(
        &mut replica,
        2,
        second,
        accept(2, first, entries(3, 5, second), 0),
    );
    cycle(&mut replica);
    let third = Ballot::new(3, 3);
    deliver(
        &mut replica,
        3,
        third,
        accept(5, third, entries(6, 6, third), 0),
    );
    let sent = cycle(&mut replica);
    assert_eq!(
        rejects_to(&sent, 3),
        vec![2],
        "entries 3..=5 (ballot 2) are one stale run"
    );
    deliver(
        &mut replica,
        3,
        third,
        accept(2, first, entries(3, 3, third), 0),
    );
    let sent = cycle(&mut replica);
    assert_eq!(accepted_to(&sent, 3), vec![3]);
    assert_eq!(
        replica.status().last_index,
        3,
        "the stale run after the new entry is gone"
    );
}

#[test]
fn a_re_elected_leader_is_never_acknowledged_what_it_sent_under_its_old_ballot() {
    let mut replica = replica();
    let old = Ballot::new(1, 2);
    let new = Ballot::new(2, 2);
    deliver(
        &mut replica,
        2,
        old,
        accept(0, Ballot::ZERO, entries(1, 3, old), 0),
    );
    // Before the sync, the same node, re-elected, replaces the entries with one of its own.
    deliver(
        &mut replica,
        2,
        new,
        accept(0, Ballot::ZERO, entries(1, 1, new), 0),
    );
    let sent = cycle(&mut replica);
    assert_eq!(accepted_to(&sent, 2), vec![1]);
}

#[test]
fn prepares_are_answered_again_and_lower_ballots_are_refused() {
    let mut replica = replica();
    replica.tick(Time(ELECTION_TIMEOUT_MS + 1));
    cycle(&mut replica);
    let ballot = Ballot::new(4, 3);
    for _ in 0..2 {
        // A candidate whose promise was lost asks again and must get it again.
        deliver(
            &mut replica,
            3,
            ballot,
            Body::Prepare(Prepare { commit_index: 0 }),
        );
        let sent = cycle(&mut replica);
        assert!(
            sent.iter()
                .any(|(to, body)| to.0 == 3 && matches!(body, Body::Promise(_))),
            "{sent:?}"
        );
    }
    deliver(
        &mut replica,
        2,
        Ballot::new(3, 2),
        Body::Prepare(Prepare { commit_index: 0 }),
    );
    let sent = cycle(&mut replica);
    assert!(
        sent.iter()
            .any(|(to, body)| to.0 == 2 && matches!(body, Body::Nack(nack) if !nack.leader_alive)),
        "{sent:?}"
    );
    assert!(!sent
        .iter()
        .any(|(_, body)| matches!(body, Body::Promise(_))));
}

/// Makes replica 1 a candidate; returns it and the time reached.
fn candidate() -> (Replica, u64) {
    let mut replica = replica();
    let now = campaign(&mut replica);
    (replica, now)
}

#[test]
fn a_candidate_asks_again_those_that_have_not_answered() {
    let (mut replica, now) = candidate();
    let ballot = replica.promised();
    deliver(
        &mut replica,
        2,
        ballot,
        Body::Nack(paxkv_proto::peer::Nack { leader_alive: true }),
    );
    replica.tick(Time(now + 60));
    let sent = cycle(&mut replica);
    let prepared: Vec<u64> = sent
        .iter()
        .filter(|(_, body)| matches!(body, Body::Prepare(_)))
        .map(|(to, _)| to.0)
        .collect();
    assert_eq!(
        prepared,
        vec![2, 3],
        "a lost or refused prepare is repeated on the next heartbeat"
    );
    assert_eq!(
        replica.role(),
        Role::Candidate,
        "a refusal for a live leader does not end the campaign"
    );
    deliver(
        &mut replica,
        3,
        Ballot::new(ballot.round + 1, 3),
        Body::Nack(paxkv_proto::peer::Nack {
            leader_alive: false,
        }),
    );
    assert_eq!(
        replica.role(),
        Role::Follower,
        "a higher promise elsewhere ends it"
    );
}

#[test]
fn a_syncing_leader_waits_for_the_snapshot_it_was_promised() {
    let mut replica = leader_syncing_from_node_2(600);
    let ballot = replica.promised();
    let response = LogResponse {
        from_index: 1,
        entries: vec![],
        last_index: 600,
        snapshot_follows: true,
    };
    deliver(&mut replica, 2, ballot, Body::LogResponse(response));
    let sent = cycle(&mut replica);
    assert!(
        sent.iter()
            .all(|(_, body)| !matches!(body, Body::LogRequest(_) | Body::Accept(_))),
        "{sent:?}"
    );
    assert_eq!(replica.status().last_index, 0);
}

#[test]
fn a_new_leader_sends_a_matching_follower_only_what_it_lacks() {
    // Replica 1 holds entries 1..=3 of ballot (1,2); node 2 reports the same last entry, node 3
    // reports a different one (and commit 1).
    let mut replica = replica();
    let old = Ballot::new(1, 2);
    deliver(
        &mut replica,
        2,
        old,
        accept(0, Ballot::ZERO, entries(1, 3, old), 0),
    );
    cycle(&mut replica);
    campaign(&mut replica);
    let ballot = replica.promised();
    let same = LogState {
        last_index: 3,
        last_ballot: Some(old),
        commit_index: 0,
        snapshot_index: 0,
    };
    let other = LogState {
        last_index: 3,
        last_ballot: Some(Ballot::new(1, 1)),
        commit_index: 1,
        snapshot_index: 0,
    };
    deliver(
        &mut replica,
        2,
        ballot,
        Body::Promise(Promise {
            log: Some(same),
            configs: vec![],
        }),
    );
    deliver(
        &mut replica,
        3,
        ballot,
        Body::Promise(Promise {
            log: Some(other),
            configs: vec![],
        }),
    );
    let sent = cycle(&mut replica);
    let first_prev = |to: u64| {
        sent.iter().find_map(|(node, body)| match body {
            Body::Accept(accept) if node.0 == to => Some(accept.prev_index),
            _ => None,
        })
    };
    assert_eq!(
        first_prev(2),
        Some(3),
        "node 2 already has 1..=3: only the no-op goes"
    );
    assert_eq!(
        first_prev(3),
        Some(1),
        "node 3 differs after its commit point 1"
    );
}

#[test]
fn every_kind_of_pending_work_makes_a_ready() {
    let mut replica = replica();
    assert!(
        replica.has_ready(),
        "a new replica persists its configuration first"
    );
    let mut numbers = Vec::new();
    while replica.has_ready() {
        let ready = replica.ready();
        numbers.push(ready.number());
        persist_and_advance(&mut replica, ready);
    }
    // An answer to give.
    let (request, read) = get(1);
    let stale = match read {
        paxkv_core::ReadRequest::Get(mut get) => {
            get.consistency = paxkv_proto::client::Consistency::Stale as i32;
            paxkv_core::ReadRequest::Get(get)
        }
        other => other,
    };
    replica.read(request, stale, replica.now());
    assert!(replica.has_ready(), "an answer waits");
    let ready = replica.ready();
    numbers.push(ready.number());
    persist_and_advance(&mut replica, ready);
    // An acknowledgement owed for entries already durable.
    let leader = Ballot::new(1, 2);
    deliver(
        &mut replica,
        2,
        leader,
        accept(0, Ballot::ZERO, entries(1, 2, leader), 0),
    );
    cycle(&mut replica);
    assert_eq!(replica.leader(), Some(NodeId(2)));
    deliver(
        &mut replica,
        2,
        leader,
        accept(0, Ballot::ZERO, entries(1, 2, leader), 0),
    );
    assert!(
        replica.has_ready(),
        "a duplicate accept still owes an acknowledgement"
    );
    let sent = cycle(&mut replica);
    assert_eq!(accepted_to(&sent, 2), vec![2]);
    // Messages to send (pings on the heartbeat timer).
    replica.tick(Time(1_000));
    assert!(replica.has_ready(), "pings wait to be sent");
    let ready = replica.ready();
    numbers.push(ready.number());
    persist_and_advance(&mut replica, ready);
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "ready numbers grow: {numbers:?}"
    );
}

/// A removed node is told so and not listened to (a node this one merely does not know yet is
/// heard: it may lead a configuration newer than this node's).
#[test]
fn a_removed_node_is_told_and_its_messages_are_ignored() {
    let durable = DurableState {
        hard_state: paxkv_proto::peer::HardState {
            configuration: Some(paxkv_proto::peer::Configuration {
                members: vec![1, 2, 3],
                retired: vec![9],
                ..Default::default()
            }),
            ..Default::default()
        },
        ..DurableState::default()
    };
    let mut replica = Replica::new(config(1), durable, Time(0)).unwrap();
    cycle(&mut replica);
    let stranger = Ballot::new(9, 9);
    deliver(
        &mut replica,
        9,
        stranger,
        accept(0, Ballot::ZERO, entries(1, 1, stranger), 0),
    );
    let sent = cycle(&mut replica);
    assert!(
        matches!(sent.as_slice(), [(NodeId(9), Body::Removed(_))]),
        "a removed node is told, nothing else: {sent:?}"
    );
    assert_eq!(replica.status().last_index, 0);
    assert_eq!(replica.promised(), Ballot::ZERO);
}

/// An at-least-revision read on a replica that is behind waits until it catches up.
#[test]
fn a_session_read_waits_for_the_revision_it_asks_for() {
    let mut replica = replica();
    let leader = Ballot::new(1, 2);
    let put = |index: u64| LogEntry {
        index,
        ballot: Some(leader),
        entry: Some(Entry {
            kind: Some(paxkv_proto::peer::entry::Kind::Command(
                paxkv_proto::peer::Command {
                    client_id: 0,
                    sequence: 0,
                    op: Some(paxkv_proto::peer::command::Op::Put(
                        paxkv_proto::client::PutRequest {
                            key: b"k".to_vec(),
                            value: format!("v{index}").into_bytes(),
                            ..Default::default()
                        },
                    )),
                },
            )),
            log_time_ms: 0,
        }),
    };
    deliver(
        &mut replica,
        2,
        leader,
        accept(0, Ballot::ZERO, vec![put(1)], 1),
    );
    cycle(&mut replica);
    assert_eq!(replica.kv().revision(), 1);
    let read = paxkv_core::ReadRequest::Get(paxkv_proto::client::GetRequest {
        key: b"k".to_vec(),
        consistency: paxkv_proto::client::Consistency::AtLeastRevision as i32,
        min_revision: 2,
        min_applied_index: 0,
    });
    replica.read(paxkv_core::RequestId(7), read, replica.now());
    assert!(
        answered_reads(&mut replica).is_empty(),
        "revision 2 is not here yet"
    );
    deliver(&mut replica, 2, leader, accept(1, leader, vec![put(2)], 2));
    assert_eq!(answered_reads(&mut replica), vec![7]);
    assert_eq!(replica.kv().get(b"k").unwrap().value, b"v2");
}

/// Accept batches stay within their entry and byte bounds, so a frame never outgrows the limit.
#[test]
fn accept_batches_respect_their_bounds() {
    let (mut replica, _) = campaign_and_win(LogState::default());
    cycle(&mut replica);
    let big = vec![b'x'; 64 * 1024];
    let propose = |replica: &mut Replica, sequence: u64, value: &[u8]| {
        let command = paxkv_proto::peer::Command {
            client_id: 1,
            sequence,
            op: Some(paxkv_proto::peer::command::Op::Put(
                paxkv_proto::client::PutRequest {
                    key: b"k".to_vec(),
                    value: value.to_vec(),
                    ..Default::default()
                },
            )),
        };
        replica.propose(paxkv_core::RequestId(sequence), command, replica.now());
    };
    for sequence in 1..=40 {
        propose(&mut replica, sequence, &big);
    }
    for sequence in 41..=700 {
        propose(&mut replica, sequence, b"v");
    }
    let sent = cycle(&mut replica);
    let accepts: Vec<&Accept> = sent
        .iter()
        .filter_map(|(to, body)| match body {
            Body::Accept(accept) if to.0 == 2 => Some(accept),
            _ => None,
        })
        .collect();
    assert!(
        accepts.len() >= 3,
        "2.5 MiB and 700 entries need several batches"
    );
    let mut next = 2; // the no-op at 1 went out when the leader took over
    for accept in accepts {
        assert_eq!(accept.prev_index + 1, next, "batches are contiguous");
        next += accept.entries.len() as u64;
        assert!(accept.entries.len() <= paxkv_core::ACCEPT_BATCH_ENTRIES_MAX);
        let bytes: usize = accept.entries.iter().map(Message::encoded_len).sum();
        let last = accept.entries.last().map_or(0, Message::encoded_len);
        assert!(
            bytes - last <= paxkv_core::ACCEPT_BATCH_BYTES_MAX,
            "a batch stops once past the byte bound"
        );
    }
    assert_eq!(next, 702, "all 700 writes went out");
}

#[test]
fn readies_say_whether_they_need_a_sync_and_the_replica_reports_its_timeout() {
    let mut replica = replica();
    assert_eq!(replica.config_election_timeout_ms(), ELECTION_TIMEOUT_MS);
    let ready = replica.ready();
    assert!(ready.needs_persist(), "the configuration must be synced");
    persist_and_advance(&mut replica, ready);
    replica.tick(Time(1_000));
    let mut ready = replica.ready();
    assert!(
        !ready.take_messages().is_empty() && !ready.needs_persist(),
        "pings need no sync"
    );
    persist_and_advance(&mut replica, ready);
    let leader = Ballot::new(1, 2);
    deliver(
        &mut replica,
        2,
        leader,
        accept(0, Ballot::ZERO, entries(1, 1, leader), 0),
    );
    let mut ready = replica.ready();
    assert!(
        ready.needs_persist() && ready.take_persist().log_write.is_some(),
        "accepted entries must be synced"
    );
    persist_and_advance(&mut replica, ready);
}

// --- regressions of the outside review: time, snapshots, step-down, tick entries -------------

fn deliver_at(replica: &mut Replica, from: u64, ballot: Ballot, body: Body, now: u64) {
    replica.step(
        NodeId(from),
        PeerMessage {
            ballot: Some(ballot),
            body: Some(body),
        },
        Time(now),
    );
}

/// Finding 1, leader side: the lease is checked against the time the read arrives, not the
/// time of the last tick (which lags by a tick, a sync, or a frozen loop).
#[test]
fn a_leader_never_serves_a_lease_read_on_a_time_older_than_the_read() {
    let (mut replica, sent_at, _) = leader_with_a_lease();
    let (id, read) = get(1);
    replica.read(id, read, Time(sent_at + 1));
    assert_eq!(answered_reads(&mut replica), vec![1], "inside the lease");
    // No tick since: the read alone carries a time past the lease.
    let late = sent_at + config(1).lease_duration_ms() + 5;
    let (id, read) = get(2);
    replica.read(id, read, Time(late));
    assert!(
        answered_reads(&mut replica).is_empty(),
        "the lease ran out before the read arrived; it must be confirmed by a new round"
    );
}

/// Finding 1, follower side: support for a leader runs from when its heartbeat arrived, so a
/// follower never promises a new ballot while the leader's lease (counted from the send) runs.
#[test]
fn a_follower_supports_its_leader_from_the_arrival_of_its_heartbeat() {
    let mut replica = replica();
    replica.tick(Time(100));
    cycle(&mut replica);
    let leader = Ballot::new(1, 2);
    let heartbeat = Body::Heartbeat(Heartbeat {
        round: 1,
        commit_index: 0,
    });
    // Arrives at 109, between two ticks.
    deliver_at(&mut replica, 2, leader, heartbeat, 109);
    cycle(&mut replica);
    replica.tick(Time(100 + ELECTION_TIMEOUT_MS + 1));
    cycle(&mut replica);
    let prepare = Body::Prepare(Prepare { commit_index: 0 });
    deliver(&mut replica, 3, Ballot::new(2, 3), prepare);
    let sent = cycle(&mut replica);
    assert!(
        sent.iter()
            .all(|(_, body)| !matches!(body, Body::Promise(_))),
        "promised a new ballot before the leader's lease could have run out: {sent:?}"
    );
    assert_eq!(replica.promised(), leader);
}

/// Finding 4: a receiver that lost its partial copy answers a chunk from the middle with
/// "start over", instead of staying silent while the sender resends that chunk forever.
#[test]
fn a_snapshot_chunk_from_the_middle_of_a_lost_transfer_asks_for_the_start() {
    let mut replica = replica();
    let leader = Ballot::new(1, 2);
    let chunk = paxkv_proto::peer::SnapshotChunk {
        meta: Some(SnapshotMeta {
            index: 50,
            ballot: Some(leader),
            configuration: None,
        }),
        offset: 256 * 1024,
        data: vec![0; 1024],
        total_bytes: 600 * 1024,
    };
    deliver(&mut replica, 2, leader, Body::SnapshotChunk(chunk));
    let sent = cycle(&mut replica);
    let restarts = sent.iter().any(|(to, body)| {
        to.0 == 2 && matches!(body, Body::SnapshotAck(ack) if ack.snapshot_index == 50 && ack.next_offset == 0)
    });
    assert!(restarts, "{sent:?}");
}

/// Finding 6: a new leader copying node 2's log, which answers with a snapshot whose point
/// the new leader already holds (same ballot), goes on to ask for the entries after it.
#[test]
fn a_new_leader_holding_the_sources_snapshot_point_asks_for_what_follows_it() {
    let mut replica = replica();
    let old = Ballot::new(1, 2);
    deliver(
        &mut replica,
        2,
        old,
        accept(0, Ballot::ZERO, entries(1, 5, old), 0),
    );
    cycle(&mut replica);
    let now = campaign(&mut replica);
    let ballot = replica.promised();
    let log = LogState {
        last_index: 10,
        last_ballot: Some(old),
        commit_index: 3,
        snapshot_index: 3,
    };
    deliver_at(
        &mut replica,
        2,
        ballot,
        Body::Promise(Promise {
            log: Some(log),
            configs: vec![],
        }),
        now,
    );
    assert_eq!(replica.role(), Role::Leader);
    cycle(&mut replica);
    let response = LogResponse {
        from_index: 1,
        entries: vec![],
        last_index: 10,
        snapshot_follows: true,
    };
    deliver(&mut replica, 2, ballot, Body::LogResponse(response));
    let data = KvSnapshot::default().encode_to_vec();
    let chunk = paxkv_proto::peer::SnapshotChunk {
        meta: Some(SnapshotMeta {
            index: 3,
            ballot: Some(old),
            configuration: None,
        }),
        offset: 0,
        total_bytes: data.len() as u64,
        data,
    };
    deliver(&mut replica, 2, ballot, Body::SnapshotChunk(chunk));
    let sent = cycle(&mut replica);
    let asked = sent.iter().any(|(to, body)| {
        to.0 == 2 && matches!(body, Body::LogRequest(request) if request.from_index == 4)
    });
    assert!(asked, "the copy goes on after the snapshot point: {sent:?}");
}

/// Finding 8: a read waiting for a revision is answered when a snapshot brings that revision.
#[test]
fn a_session_read_is_woken_by_an_installed_snapshot() {
    let mut replica = replica();
    let read = paxkv_core::ReadRequest::Get(paxkv_proto::client::GetRequest {
        key: b"k".to_vec(),
        consistency: paxkv_proto::client::Consistency::AtLeastRevision as i32,
        min_revision: 5,
        min_applied_index: 0,
    });
    replica.read(paxkv_core::RequestId(7), read, replica.now());
    assert!(answered_reads(&mut replica).is_empty());
    let leader = Ballot::new(1, 2);
    let data = KvSnapshot {
        revision: 5,
        ..KvSnapshot::default()
    }
    .encode_to_vec();
    let chunk = paxkv_proto::peer::SnapshotChunk {
        meta: Some(SnapshotMeta {
            index: 9,
            ballot: Some(leader),
            configuration: None,
        }),
        offset: 0,
        total_bytes: data.len() as u64,
        data,
    };
    deliver(&mut replica, 2, leader, Body::SnapshotChunk(chunk));
    assert_eq!(answered_reads(&mut replica), vec![7]);
}

/// Finding 8: a leader whose followers ping it but answer none of its messages steps down
/// (pings prove a live peer, not a follower).
#[test]
fn a_leader_that_only_hears_pings_steps_down() {
    let (mut replica, start) = campaign_and_win(LogState::default());
    let ballot = replica.promised();
    cycle(&mut replica);
    let mut now = start;
    while now < start + 3 * ELECTION_TIMEOUT_MS && replica.role() == Role::Leader {
        now += 10;
        for peer in [2, 3] {
            deliver_at(&mut replica, peer, ballot, Body::Ping(Ping {}), now);
        }
        replica.tick(Time(now));
        cycle(&mut replica);
    }
    assert_eq!(replica.role(), Role::Follower, "still leading at {now} ms");
}

/// Finding 8: an idle leader that cannot commit stops appending tick entries at the bound on
/// uncommitted entries.
#[test]
fn tick_entries_respect_the_bound_on_uncommitted_entries() {
    let mut config = config(1);
    config.uncommitted_entries_max = 4;
    config.log_tick_interval_ms = 10;
    let mut replica = Replica::new(config, DurableState::default(), Time(0)).unwrap();
    let now = campaign(&mut replica);
    let ballot = replica.promised();
    deliver_at(
        &mut replica,
        2,
        ballot,
        Body::Promise(Promise {
            log: None,
            configs: vec![],
        }),
        now,
    );
    assert_eq!(replica.role(), Role::Leader);
    cycle(&mut replica);
    deliver(&mut replica, 2, ballot, accepted(1));
    cycle(&mut replica);
    let put = paxkv_proto::peer::Command {
        client_id: 0,
        sequence: 0,
        op: Some(paxkv_proto::peer::command::Op::Put(
            paxkv_proto::client::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ttl_ms: Some(60_000),
                ..Default::default()
            },
        )),
    };
    replica.propose(paxkv_core::RequestId(1), put, replica.now());
    cycle(&mut replica);
    deliver(&mut replica, 2, ballot, accepted(2));
    cycle(&mut replica);
    assert_eq!(replica.commit_index(), 2);
    // From here node 2 answers heartbeats (so the leader keeps its quorum) but accepts nothing.
    let mut now = replica.now().millis();
    for _ in 0..100 {
        now += 10;
        let ack = paxkv_proto::peer::HeartbeatAck {
            round: 0,
            log: None,
        };
        deliver_at(&mut replica, 2, ballot, Body::HeartbeatAck(ack), now);
        replica.tick(Time(now));
        cycle(&mut replica);
    }
    assert_eq!(replica.role(), Role::Leader);
    let uncommitted = replica.status().last_index - replica.commit_index();
    assert!(uncommitted <= 4, "{uncommitted} uncommitted entries");
}

/// Found by the second review: a keep-alive that arrives while an earlier one of the same
/// lease is still uncommitted gets an entry of its own, stamped when it arrived; sharing the
/// earlier entry answered it with a lease extended from the earlier time (already over if
/// the log stalled between them).
#[test]
fn every_keep_alive_is_stamped_when_it_arrives() {
    let (mut replica, start) = campaign_and_win(LogState::default());
    let ballot = replica.promised();
    cycle(&mut replica);
    deliver(&mut replica, 2, ballot, accepted(1));
    cycle(&mut replica);
    let keep_alive = |sequence: u64| paxkv_proto::peer::Command {
        client_id: 0,
        sequence,
        op: Some(paxkv_proto::peer::command::Op::LeaseKeepAlive(
            paxkv_proto::client::LeaseKeepAliveRequest { lease_id: 7 },
        )),
    };
    replica.propose(paxkv_core::RequestId(1), keep_alive(1), Time(start + 10));
    cycle(&mut replica);
    let first = replica.status().last_index;
    // The first is not committed yet when the second arrives 1.9 s later.
    replica.propose(paxkv_core::RequestId(2), keep_alive(2), Time(start + 1910));
    let sent = cycle(&mut replica);
    assert_eq!(
        replica.status().last_index,
        first + 1,
        "an entry of its own"
    );
    let stamped = sent.iter().find_map(|(_, body)| match body {
        Body::Accept(accept) => accept
            .entries
            .iter()
            .find(|entry| entry.index == first + 1)
            .map(|entry| entry.entry.as_ref().unwrap().log_time_ms),
        _ => None,
    });
    // Log time runs from the takeover at `start` with the leader's clock.
    let stamped = stamped.expect("the new entry is sent");
    assert!(stamped >= 1900, "stamped at log time {stamped}");
}

/// Found by a simulator seed (small chunks on a slow network): a late duplicate of a
/// transfer's first chunk restarted the receiver's copy, while the sender, already past it,
/// kept resending a chunk from the middle the receiver could no longer take. A duplicate of the
/// first chunk now leaves the copy as it is.
#[test]
fn a_late_duplicate_of_the_first_chunk_does_not_restart_the_copy() {
    let mut replica = replica();
    let leader = Ballot::new(1, 2);
    let data = vec![7u8; 300];
    let chunk = |offset: usize, length: usize| {
        Body::SnapshotChunk(paxkv_proto::peer::SnapshotChunk {
            meta: Some(SnapshotMeta {
                index: 50,
                ballot: Some(leader),
                configuration: None,
            }),
            offset: offset as u64,
            data: data[offset..offset + length].to_vec(),
            total_bytes: data.len() as u64,
        })
    };
    deliver(&mut replica, 2, leader, chunk(0, 100));
    deliver(&mut replica, 2, leader, chunk(100, 100));
    cycle(&mut replica);
    deliver(&mut replica, 2, leader, chunk(0, 100));
    let sent = cycle(&mut replica);
    let acked: Vec<u64> = sent
        .iter()
        .filter_map(|(_, body)| match body {
            Body::SnapshotAck(ack) => Some(ack.next_offset),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![200], "the copy keeps the 200 bytes it has");
}

/// Found by the second review: a session read for a point this node never reaches is refused
/// with `Timeout` after two election timeouts (the client asks another node), instead of
/// holding one of the bounded waiting slots for good.
#[test]
fn a_session_read_that_cannot_be_served_gives_up_after_two_election_timeouts() {
    let mut replica = replica();
    let read = paxkv_core::ReadRequest::Get(paxkv_proto::client::GetRequest {
        key: b"k".to_vec(),
        consistency: paxkv_proto::client::Consistency::AtLeastRevision as i32,
        min_revision: 0,
        min_applied_index: 99,
    });
    replica.read(paxkv_core::RequestId(7), read, Time(10));
    replica.tick(Time(10 + 2 * ELECTION_TIMEOUT_MS - 1));
    let refused = |replica: &mut Replica| {
        let mut ready = replica.ready();
        let timed_out = ready.take_responses().iter().any(|(request, response)| {
            request.0 == 7
                && matches!(response, paxkv_proto::client::client_response::Body::Error(error)
                    if error.code == paxkv_proto::client::ErrorCode::Timeout as i32)
        });
        persist_and_advance(replica, ready);
        timed_out
    };
    assert!(!refused(&mut replica), "gave up early");
    replica.tick(Time(10 + 2 * ELECTION_TIMEOUT_MS));
    assert!(refused(&mut replica), "still waiting");
}

// --- membership ---------------------------------------------------------------------------

/// A candidate that would adopt a log holding newer configurations than its own counts its
/// promises against those: with its own (older) configuration, two promises of three would
/// elect it although a value may have been chosen by a majority of the newer one it cannot
/// see (a node two changes behind, partitioned with one that has the changes but not the last
/// writes, would otherwise take over and lose them).
#[test]
fn a_candidate_counts_promises_against_the_configurations_of_the_log_it_would_adopt() {
    let advanced = LogState {
        last_index: 30,
        last_ballot: Some(Ballot::new(1, 3)),
        commit_index: 20,
        snapshot_index: 0,
    };
    let configuration = |members: &[u64]| paxkv_proto::peer::ConfigAt {
        index: 20,
        configuration: Some(paxkv_proto::peer::Configuration {
            members: members.to_vec(),
            ..Default::default()
        }),
    };
    // Replica 1 campaigns and node 2 promises, its log holding `voters` at its commit point.
    let role_after_promise = |voters: &[u64]| {
        let mut replica_1 = replica();
        campaign(&mut replica_1);
        let ballot = replica_1.promised();
        let promise = Body::Promise(Promise {
            log: Some(advanced),
            configs: vec![configuration(voters)],
        });
        deliver(&mut replica_1, 2, ballot, promise);
        replica_1.role()
    };
    // Node 2's log has grown the cluster to five voters: 1 and 2 are no majority of it.
    assert_eq!(
        role_after_promise(&[1, 2, 3, 4, 5]),
        Role::Candidate,
        "elected by a minority of the configuration it would adopt"
    );
    // The same log with the three voters it knows elects it.
    assert_eq!(role_after_promise(&[1, 2, 3]), Role::Leader);
}

/// A learner receives the log but never campaigns, however long it hears nothing.
#[test]
fn a_learner_never_campaigns() {
    let durable = DurableState {
        hard_state: paxkv_proto::peer::HardState {
            configuration: Some(paxkv_proto::peer::Configuration {
                members: vec![2, 3],
                learners: vec![1],
                ..Default::default()
            }),
            ..Default::default()
        },
        ..DurableState::default()
    };
    let mut learner = Replica::new(config(1), durable, Time(0)).unwrap();
    let mut sent = Vec::new();
    for step in 1..=40 {
        // It hears the voters (no leader among them), so only being a learner holds it back.
        for voter in [2, 3] {
            deliver(&mut learner, voter, Ballot::ZERO, Body::Ping(Ping {}));
        }
        learner.tick(Time(step * ELECTION_TIMEOUT_MS / 2));
        sent.extend(cycle(&mut learner));
    }
    assert_eq!(learner.role(), Role::Follower);
    let campaigning = sent
        .iter()
        .any(|(_, body)| matches!(body, Body::PreVote(_) | Body::Prepare(_)));
    assert!(!campaigning, "a learner asked for votes: {sent:?}");
    assert_eq!(learner.members(), vec![NodeId(2), NodeId(3), NodeId(1)]);
}

/// An acknowledgement waiting for a sync whose entries a snapshot then replaced can never
/// leave: the node must not keep reporting a ready for it (its loop would take empty readies
/// without end and never read another message).
#[test]
fn an_acknowledgement_for_entries_a_snapshot_replaced_does_not_keep_the_node_busy() {
    let mut replica = replica();
    let ballot = Ballot::new(1, 2);
    deliver(
        &mut replica,
        2,
        ballot,
        accept(0, Ballot::ZERO, entries(1, 20, ballot), 0),
    );
    // Before those entries are synced, a snapshot whose point the log holds under another
    // ballot replaces the log: entries 11..=20 are gone, so the acknowledgement for them is too.
    let data = KvSnapshot::default().encode_to_vec();
    deliver(
        &mut replica,
        2,
        ballot,
        Body::SnapshotChunk(SnapshotChunk {
            meta: Some(SnapshotMeta {
                index: 10,
                ballot: Some(Ballot::new(0, 3)),
                configuration: None,
            }),
            offset: 0,
            total_bytes: data.len() as u64,
            data,
        }),
    );
    let mut readies = 0;
    while replica.has_ready() {
        readies += 1;
        assert!(
            readies <= 8,
            "the node reports a ready with nothing left to do"
        );
        let ready = replica.ready();
        persist_and_advance(&mut replica, ready);
    }
    assert_eq!(replica.status().last_index, 10);
}

/// A long run of committed entries (a restart, a follower far behind) is applied a bounded
/// slice per ready, and the replica says so, so that the node loop takes its inputs between
/// slices instead of answering nothing until all of it is applied.
#[test]
fn a_long_run_of_committed_entries_is_applied_a_slice_per_ready() {
    let slice = paxkv_core::APPLY_ENTRIES_PER_READY_MAX;
    let last = 3 * slice + 5;
    let ballot = Ballot::new(1, 2);
    let mut replica = replica();
    deliver(
        &mut replica,
        2,
        ballot,
        accept(0, Ballot::ZERO, entries(1, last, ballot), last),
    );
    let mut readies = 0;
    let mut applied = replica.applied_index();
    while replica.has_ready() {
        let ready = replica.ready();
        readies += 1;
        let now = replica.applied_index();
        assert!(
            now - applied <= slice,
            "{} applied by one ready",
            now - applied
        );
        assert_eq!(replica.has_apply_backlog(), now < replica.commit_index());
        applied = now;
        persist_and_advance(&mut replica, ready);
        assert!(readies < 20, "no end to the readies");
    }
    assert_eq!(replica.applied_index(), last);
    assert!(!replica.has_apply_backlog());
    // One ready persists the entries (the commit counts only durable ones); then four slices.
    assert_eq!(readies, 5);
}

/// A leader answers a linearizable read only once it has applied up to the read's index, even
/// with its lease: committed entries may wait to be applied (a slice per ready), and a state
/// that misses them misses writes that may already be acknowledged. No simulated run reaches
/// this (applying takes no simulated time, so the wait never spans a round trip): it pins the
/// planted bug `read-before-applied`.
#[test]
fn a_leader_answers_a_read_only_once_it_has_applied_up_to_the_reads_index() {
    let mut config = config(1);
    config.apply_entries_per_ready = 1;
    let (mut replica, now, _) =
        leader_with_a_lease_from(Replica::new(config, DurableState::default(), Time(0)).unwrap());
    let ballot = replica.promised();
    for value in 1..=5u64 {
        let put = paxkv_proto::client::PutRequest {
            key: b"k".to_vec(),
            value: value.to_string().into_bytes(),
            ..Default::default()
        };
        let command = paxkv_proto::peer::Command {
            client_id: 0,
            sequence: 0,
            op: Some(paxkv_proto::peer::command::Op::Put(put)),
        };
        replica.propose(paxkv_core::RequestId(100 + value), command, Time(now));
    }
    cycle(&mut replica);
    let last = replica.status().last_index;
    deliver(&mut replica, 2, ballot, accepted(last));
    assert_eq!(replica.commit_index(), last);
    assert!(replica.applied_index() < last);
    let (request, read) = get(1);
    replica.read(request, read, replica.now());
    let mut value = None;
    for _ in 0..20 {
        if !replica.has_ready() {
            break;
        }
        let mut ready = replica.ready();
        for (request, response) in ready.take_responses() {
            if let (1, paxkv_proto::client::client_response::Body::Get(get)) = (request.0, response)
            {
                assert!(value.is_none(), "answered twice");
                value = Some(get.kv.map(|kv| kv.value));
            }
        }
        persist_and_advance(&mut replica, ready);
    }
    assert_eq!(
        value,
        Some(Some(b"5".to_vec())),
        "the read missed committed writes"
    );
}
