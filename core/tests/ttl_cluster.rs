//! TTLs and leases on the in-memory cluster: expiry after the writer is gone, leader changes
//! mid-TTL, overwrites, clock offsets of minutes and drift within the bound, and snapshots taken
//! while keys are about to expire. Every test also checks that all replicas agree on the state
//! (hence on which keys exist) at every log position they apply.
//!
//! Bounds checked (real time, from the acknowledgement of the write):
//! a key with TTL T lives at least T x (1 - drift) and at most
//! T x (1 + drift) + tick interval + commit latency + any leaderless gap.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{Cluster, NodeClock, STEP_MS};
use paxkv_core::{NodeId, ReadRequest};
use paxkv_proto::client::{
    client_response::Body as Response, Consistency, GetRequest, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest,
};
use paxkv_proto::peer::command::Op;

const ELECTION_TIMEOUT_MS: u64 = 300;
const TICK_MS: u64 = 100;
/// Drift bound of the configuration (1%); test clocks drift at most this much.
const DRIFT_PPM: i64 = 10_000;
/// Commit latency and poll granularity allowance.
const SLACK_MS: u64 = 60;

fn cluster(seed: u64) -> Cluster {
    let mut cluster = Cluster::new(3, seed);
    cluster.check_state_hashes = true;
    cluster
}

/// Minutes apart and drifting within the bound: none of it may matter.
fn skewed_clocks(cluster: &mut Cluster) {
    let clocks = [
        (1, 0, DRIFT_PPM),
        (2, 7 * 60_000, -DRIFT_PPM),
        (3, 23 * 60_000, 0),
    ];
    for (id, offset_ms, drift_ppm) in clocks {
        cluster.clocks.insert(
            NodeId(id),
            NodeClock {
                offset_ms,
                drift_ppm,
            },
        );
    }
}

fn leader(cluster: &mut Cluster) -> NodeId {
    cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 900)
        .expect("a leader");
    cluster.leader().unwrap()
}

/// Proposes at the leader and waits for the answer.
fn write(cluster: &mut Cluster, sequence: u64, op: Op) -> Response {
    let leader = cluster.leader().expect("a leader");
    let request = cluster.command_via(leader, 5, sequence, op);
    cluster.wait_for(request, 2000).expect("answered")
}

fn put_ttl(key: &[u8], ttl_ms: Option<u64>, lease_id: Option<u64>) -> Op {
    Op::Put(PutRequest {
        key: key.to_vec(),
        value: b"v".to_vec(),
        ttl_ms,
        lease_id,
        ..Default::default()
    })
}

fn visible_on(cluster: &mut Cluster, node: NodeId, key: &[u8]) -> Option<bool> {
    let read = ReadRequest::Get(GetRequest {
        key: key.to_vec(),
        consistency: Consistency::Stale as i32,
        min_revision: 0,
        min_applied_index: 0,
    });
    let request = cluster.read_via(node, read);
    match cluster.wait_for(request, 20)? {
        Response::Get(get) => Some(get.kv.is_some()),
        other => panic!("{other:?}"),
    }
}

/// Polls `key` on every live node until it is gone everywhere; returns the real time of the
/// last poll that still saw it anywhere (the start, if the first poll did not), and the first
/// at which every node had lost it. (A key already gone at the first poll returns at once:
/// waiting for it to be seen first would wait forever and blame the key.)
fn watch_until_gone(cluster: &mut Cluster, key: &[u8], millis_max: u64) -> (u64, u64) {
    let start = cluster.now.millis();
    let mut last_seen = start;
    while cluster.now.millis() - start < millis_max {
        let mut seen_anywhere = false;
        for node in cluster.ids() {
            if cluster.is_up(node) && visible_on(cluster, node, key) == Some(true) {
                seen_anywhere = true;
            }
        }
        if seen_anywhere {
            last_seen = cluster.now.millis();
        } else {
            return (last_seen, cluster.now.millis());
        }
        cluster.run_for(STEP_MS);
    }
    panic!("{key:?} still visible after {millis_max} ms");
}

fn lower_bound(ttl_ms: u64) -> u64 {
    ttl_ms - ttl_ms * DRIFT_PPM as u64 / 1_000_000
}

fn upper_bound(ttl_ms: u64, leaderless_ms: u64) -> u64 {
    ttl_ms + ttl_ms * DRIFT_PPM as u64 / 1_000_000 + TICK_MS + SLACK_MS + leaderless_ms
}

#[test]
fn a_key_expires_after_its_writer_dies_forever() {
    let mut cluster = cluster(1);
    skewed_clocks(&mut cluster);
    let writer = leader(&mut cluster);
    let ttl_ms = 1500;
    assert!(matches!(
        write(&mut cluster, 1, put_ttl(b"k", Some(ttl_ms), None)),
        Response::Put(_)
    ));
    let acked_at = cluster.now.millis();
    cluster.run_for(200); // followers learn the commit
    cluster.crash(writer);
    let gap = cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 901)
        .expect("new leader");
    let (last_seen, gone_at) = watch_until_gone(&mut cluster, b"k", 10_000);
    eprintln!(
        "writer dead: ttl {ttl_ms} ms, seen until +{} ms, gone by +{} ms, leaderless {gap} ms",
        last_seen - acked_at,
        gone_at - acked_at
    );
    assert!(
        last_seen - acked_at >= lower_bound(ttl_ms),
        "expired early: {}",
        last_seen - acked_at
    );
    assert!(
        gone_at - acked_at <= upper_bound(ttl_ms, gap + 200),
        "expired late: {}",
        gone_at - acked_at
    );
    cluster.heal_and_converge(20 * ELECTION_TIMEOUT_MS);
}

#[test]
fn a_leader_change_mid_ttl_does_not_reset_ttls_or_leases() {
    let mut cluster = cluster(2);
    skewed_clocks(&mut cluster);
    let old = leader(&mut cluster);
    let ttl_ms = 2000;
    write(&mut cluster, 1, put_ttl(b"k", Some(ttl_ms), None));
    let Response::LeaseGrant(grant) = write(
        &mut cluster,
        2,
        Op::LeaseGrant(LeaseGrantRequest { ttl_ms }),
    ) else {
        panic!("granted")
    };
    write(
        &mut cluster,
        3,
        put_ttl(b"leased", None, Some(grant.lease_id)),
    );
    let acked_at = cluster.now.millis();
    cluster.run_for(ttl_ms / 2);
    cluster.crash(old);
    let gap = cluster
        .time_to_working_leader(10 * ELECTION_TIMEOUT_MS, 902)
        .expect("new leader");
    let new = cluster.leader().unwrap();
    let read = ReadRequest::LeaseTimeToLive(LeaseTimeToLiveRequest {
        lease_id: grant.lease_id,
        keys: true,
        ..Default::default()
    });
    let request = cluster.read_via(new, read);
    let Some(Response::LeaseTimeToLive(lease)) = cluster.wait_for(request, 1000) else {
        panic!("lease lives")
    };
    assert!(
        lease.remaining_ms <= ttl_ms / 2 + SLACK_MS,
        "the lease was reset: {} ms left",
        lease.remaining_ms
    );
    assert_eq!(lease.keys, vec![b"leased".to_vec()]);
    let (last_seen, gone_at) = watch_until_gone(&mut cluster, b"k", 10_000);
    eprintln!(
        "leader change: ttl {ttl_ms} ms, seen until +{} ms, gone by +{} ms, leaderless {gap} ms",
        last_seen - acked_at,
        gone_at - acked_at
    );
    assert!(last_seen - acked_at >= lower_bound(ttl_ms));
    assert!(gone_at - acked_at <= upper_bound(ttl_ms, gap + 200));
    let (_, lease_gone_at) = watch_until_gone(&mut cluster, b"leased", 10_000);
    assert!(
        lease_gone_at - acked_at <= upper_bound(ttl_ms, gap + 200),
        "lease keys outlived the lease"
    );
    cluster.heal_and_converge(20 * ELECTION_TIMEOUT_MS);
}

#[test]
fn an_overwrite_with_a_new_ttl_is_not_deleted_by_the_old_deadline() {
    let mut cluster = cluster(3);
    skewed_clocks(&mut cluster);
    let node = leader(&mut cluster);
    write(&mut cluster, 1, put_ttl(b"k", Some(500), None));
    cluster.run_for(300);
    write(&mut cluster, 2, put_ttl(b"k", Some(3000), None));
    let rewritten_at = cluster.now.millis();
    cluster.run_for(1000);
    for id in cluster.ids() {
        assert_eq!(
            visible_on(&mut cluster, id, b"k"),
            Some(true),
            "{id} lost the rewritten key"
        );
    }
    let (last_seen, _) = watch_until_gone(&mut cluster, b"k", 10_000);
    assert!(last_seen - rewritten_at >= lower_bound(3000));
    // A plain put clears the TTL altogether.
    write(&mut cluster, 3, put_ttl(b"p", Some(300), None));
    write(&mut cluster, 4, put_ttl(b"p", None, None));
    cluster.run_for(1000);
    assert_eq!(visible_on(&mut cluster, node, b"p"), Some(true));
    cluster.heal_and_converge(20 * ELECTION_TIMEOUT_MS);
}

#[test]
fn keys_about_to_expire_survive_a_snapshot_and_expire_on_the_replica_that_installed_it() {
    let mut cluster = Cluster::with_config(3, 4, |config| config.snapshot_entries_threshold = 20);
    cluster.check_state_hashes = true;
    skewed_clocks(&mut cluster);
    let node = leader(&mut cluster);
    let lagging = cluster.ids().into_iter().find(|id| *id != node).unwrap();
    cluster.crash(lagging);
    for sequence in 1..=40 {
        let key = format!("k{sequence}");
        write(
            &mut cluster,
            sequence,
            put_ttl(key.as_bytes(), Some(1500), None),
        );
    }
    cluster.run_for(1000);
    cluster.restart(lagging);
    cluster.run_for(300);
    let status = cluster.replica(lagging).unwrap().status();
    assert!(
        status.snapshot_index > 0,
        "the lagging replica installed a snapshot"
    );
    assert!(
        status.key_count > 0,
        "the snapshot carried keys about to expire"
    );
    cluster.run_for(2000);
    assert_eq!(visible_on(&mut cluster, lagging, b"k40"), Some(false));
    // Only the leader probe's key (no TTL) is left: the rest were removed, not just hidden.
    assert_eq!(cluster.replica(lagging).unwrap().status().key_count, 1);
    cluster.heal_and_converge(20 * ELECTION_TIMEOUT_MS);
}

#[test]
fn leases_keep_alive_revoke_and_expire_by_log_time() {
    let mut cluster = cluster(5);
    skewed_clocks(&mut cluster);
    let node = leader(&mut cluster);
    let Response::LeaseGrant(grant) = write(
        &mut cluster,
        1,
        Op::LeaseGrant(LeaseGrantRequest { ttl_ms: 800 }),
    ) else {
        panic!("granted")
    };
    write(&mut cluster, 2, put_ttl(b"a", None, Some(grant.lease_id)));
    write(&mut cluster, 3, put_ttl(b"b", None, Some(grant.lease_id)));
    // Kept alive past several TTLs.
    for sequence in 4..10 {
        cluster.run_for(400);
        let answer = write(
            &mut cluster,
            sequence,
            Op::LeaseKeepAlive(LeaseKeepAliveRequest {
                lease_id: grant.lease_id,
            }),
        );
        assert!(
            matches!(answer, Response::LeaseKeepAlive(ref k) if k.ttl_ms == 800),
            "{answer:?}"
        );
    }
    assert_eq!(visible_on(&mut cluster, node, b"a"), Some(true));
    // Keep-alives in flight together each get an entry stamped when it arrived (sharing the
    // first one's entry answered later ones with a lease extended from an older time).
    let before = cluster.replica(node).unwrap().status().last_index;
    let requests: Vec<_> = (100..200)
        .map(|sequence| {
            cluster.command_via(
                node,
                6,
                sequence,
                Op::LeaseKeepAlive(LeaseKeepAliveRequest {
                    lease_id: grant.lease_id,
                }),
            )
        })
        .collect();
    let after = cluster.replica(node).unwrap().status().last_index;
    assert_eq!(
        after - before,
        100,
        "100 keep-alives in flight, 100 entries"
    );
    for request in requests {
        assert!(matches!(
            cluster.wait_for(request, 1000),
            Some(Response::LeaseKeepAlive(_))
        ));
    }
    // Revoke deletes every attached key at once.
    let answer = write(
        &mut cluster,
        300,
        Op::LeaseRevoke(LeaseRevokeRequest {
            lease_id: grant.lease_id,
        }),
    );
    assert!(
        matches!(answer, Response::LeaseRevoke(ref r) if r.deleted_keys == 2),
        "{answer:?}"
    );
    assert_eq!(visible_on(&mut cluster, node, b"a"), Some(false));
    assert_eq!(visible_on(&mut cluster, node, b"b"), Some(false));
    // A lease left alone expires, with its keys, on every replica.
    let Response::LeaseGrant(second) = write(
        &mut cluster,
        301,
        Op::LeaseGrant(LeaseGrantRequest { ttl_ms: 500 }),
    ) else {
        panic!("granted")
    };
    write(
        &mut cluster,
        302,
        put_ttl(b"c", None, Some(second.lease_id)),
    );
    let granted_at = cluster.now.millis();
    let (last_seen, gone_at) = watch_until_gone(&mut cluster, b"c", 5000);
    assert!(last_seen - granted_at >= lower_bound(500) - SLACK_MS);
    assert!(gone_at - granted_at <= upper_bound(500, 0));
    let answer = write(
        &mut cluster,
        303,
        Op::LeaseKeepAlive(LeaseKeepAliveRequest {
            lease_id: second.lease_id,
        }),
    );
    assert!(
        matches!(answer, Response::Error(_)),
        "an expired lease cannot be kept alive: {answer:?}"
    );
    cluster.heal_and_converge(20 * ELECTION_TIMEOUT_MS);
}

/// The leader's clock running fast or slow within the bound keeps lifetimes within the bounds.
#[test]
fn a_fast_or_slow_leader_clock_within_the_drift_bound_keeps_the_bounds() {
    for (seed, drift_ppm) in [(6, DRIFT_PPM), (7, -DRIFT_PPM)] {
        let mut cluster = cluster(seed);
        for id in cluster.ids() {
            cluster.clocks.insert(
                id,
                NodeClock {
                    offset_ms: id.0 * 60_000,
                    drift_ppm,
                },
            );
        }
        leader(&mut cluster);
        let ttl_ms = 3000;
        write(&mut cluster, 1, put_ttl(b"k", Some(ttl_ms), None));
        let acked_at = cluster.now.millis();
        let (last_seen, gone_at) = watch_until_gone(&mut cluster, b"k", 10_000);
        eprintln!(
            "drift {drift_ppm} ppm: seen until +{} ms, gone by +{} ms",
            last_seen - acked_at,
            gone_at - acked_at
        );
        assert!(
            last_seen - acked_at >= lower_bound(ttl_ms),
            "drift {drift_ppm}: early"
        );
        assert!(
            gone_at - acked_at <= upper_bound(ttl_ms, 0),
            "drift {drift_ppm}: late"
        );
    }
}
