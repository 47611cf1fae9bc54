//! One replica driven by hand with crafted messages, for rules that random schedules reach
//! only rarely: which ballots an acceptor answers, what a follower acknowledges and commits,
//! and how a new leader copies a log from another acceptor.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use paxkv_core::{DurableState, NodeId, Ready, Replica, ReplicaConfig, Role, Time};
use paxkv_proto::peer::{
    peer_message::Body, Accept, Ballot, Entry, Heartbeat, KvSnapshot, LogEntry, LogRequest,
    LogResponse, LogState, Noop, PeerMessage, Ping, Prepare, Promise, SnapshotMeta,
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
    replica.step(
        NodeId(from),
        PeerMessage {
            ballot: Some(ballot),
            body: Some(body),
        },
    );
}

/// Persists (by fiat) and advances; returns every message released, in order.
fn cycle(replica: &mut Replica) -> Vec<(NodeId, Body)> {
    let mut sent = Vec::new();
    for _ in 0..3 {
        if !replica.has_ready() {
            break;
        }
        let ready: Ready = replica.ready();
        let number = ready.number;
        for outgoing in ready
            .messages
            .into_iter()
            .chain(ready.messages_after_persist)
        {
            sent.push((outgoing.to, outgoing.message.body.unwrap()));
        }
        replica.advance(number);
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

/// Makes replica 1 campaign and win with node 2's promise reporting a longer log.
fn leader_syncing_from_node_2(last_index: u64) -> Replica {
    let mut replica = replica();
    let mut now = 0;
    while replica.role() != Role::Candidate {
        now += 10;
        for peer in [2, 3] {
            deliver(&mut replica, peer, Ballot::ZERO, Body::Ping(Ping {}));
        }
        replica.tick(Time(now));
        cycle(&mut replica);
        assert!(now < 10 * ELECTION_TIMEOUT_MS, "never campaigned");
    }
    let ballot = replica.promised();
    let log = LogState {
        last_index,
        last_ballot: Some(Ballot::new(1, 2)),
        commit_index: 0,
        snapshot_index: 0,
    };
    deliver(
        &mut replica,
        2,
        ballot,
        Body::Promise(Promise { log: Some(log) }),
    );
    let sent = cycle(&mut replica);
    assert_eq!(replica.role(), Role::Leader);
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
    let ready = replica.ready();
    let hard_state = ready
        .hard_state
        .clone()
        .expect("the first ready persists the configuration");
    replica.advance(ready.number);
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
