//! Property tests over random fault schedules on the in-memory cluster.
//!
//! Each case draws a cluster size, a seed, and a schedule of faults (crashes with loss of
//! unsynced state, restarts, partitions of every shape, one-way links, loss, duplication,
//! reordering) while clients issue writes and reads of every consistency. Checked throughout:
//! no two replicas apply different entries at one index, only proposed commands are applied.
//! Checked at the end: every acknowledged write is chosen, every read is linearizable (or, for
//! stale reads, returned a value that existed), and after the faults stop the cluster commits
//! again within a bound and converges.
//!
//! `PAXKV_SCHEDULES=N` sets how many schedules run (default 1000); use a large N for soak runs.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{Cluster, STEP_MS};
use paxkv_core::NodeId;
use paxkv_proto::client::Consistency;
use proptest::prelude::*;

const ELECTION_TIMEOUT_MS: u64 = 300;
/// After healing, a write must commit within this long.
const RECOVERY_MS_MAX: u64 = 10 * ELECTION_TIMEOUT_MS;

#[derive(Debug, Clone)]
enum Fault {
    Crash(u64),
    Restart(u64),
    CrashAll,
    Isolate(u64),
    /// Cuts the nodes in the bit mask from the rest.
    Split(u64),
    /// Cuts one direction of one link.
    OneWay(u64, u64),
    /// Cuts both directions of one link (chains and other partial shapes accumulate).
    CutLink(u64, u64),
    Lossy {
        drop_ppm: u64,
        duplicate_ppm: u64,
        jitter_ms: u64,
    },
    Heal,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => (1u64..=5).prop_map(Fault::Crash),
        3 => (1u64..=5).prop_map(Fault::Restart),
        1 => Just(Fault::CrashAll),
        2 => (1u64..=5).prop_map(Fault::Isolate),
        2 => (1u64..32).prop_map(Fault::Split),
        2 => ((1u64..=5), (1u64..=5)).prop_map(|(a, b)| Fault::OneWay(a, b)),
        2 => ((1u64..=5), (1u64..=5)).prop_map(|(a, b)| Fault::CutLink(a, b)),
        2 => ((0u64..200_000), (0u64..100_000), (0u64..40))
            .prop_map(|(drop_ppm, duplicate_ppm, jitter_ms)| Fault::Lossy { drop_ppm, duplicate_ppm, jitter_ms }),
        2 => Just(Fault::Heal),
    ]
}

#[derive(Debug, Clone)]
struct Schedule {
    size: u64,
    seed: u64,
    steps: Vec<(Fault, u64)>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop_oneof![Just(3u64), Just(5u64)],
        any::<u64>(),
        prop::collection::vec((fault(), 50u64..1500), 1..12),
    )
        .prop_map(|(size, seed, steps)| Schedule { size, seed, steps })
}

fn apply(cluster: &mut Cluster, fault: &Fault, size: u64) {
    let node = |i: u64| NodeId((i - 1) % size + 1);
    match *fault {
        Fault::Crash(i) => cluster.crash(node(i)),
        Fault::Restart(i) => cluster.restart(node(i)),
        Fault::CrashAll => {
            for id in cluster.ids() {
                cluster.crash(id);
            }
            for id in cluster.ids() {
                cluster.restart(id);
            }
        }
        Fault::Isolate(i) => cluster.isolate(node(i)),
        Fault::Split(mask) => {
            let (a, b): (Vec<NodeId>, Vec<NodeId>) = cluster
                .ids()
                .into_iter()
                .partition(|id| mask & (1 << (id.0 - 1)) != 0);
            cluster.partition(&a, &b);
        }
        Fault::OneWay(a, b) => {
            cluster.faults.cut.insert((node(a), node(b)));
        }
        Fault::CutLink(a, b) => cluster.cut_both_ways(node(a), node(b)),
        Fault::Lossy {
            drop_ppm,
            duplicate_ppm,
            jitter_ms,
        } => {
            cluster.faults.drop_ppm = drop_ppm;
            cluster.faults.duplicate_ppm = duplicate_ppm;
            cluster.faults.jitter_ms = jitter_ms;
        }
        Fault::Heal => cluster.heal(),
    }
}

/// Issues one random client operation to a random node (mostly the apparent leader).
fn client_operation(cluster: &mut Cluster, next_sequence: &mut u64) {
    let ids = cluster.ids();
    let target = match cluster.leader() {
        Some(leader) if cluster.rng.below(4) != 0 => leader,
        _ => ids[cluster.rng.below(ids.len() as u64) as usize],
    };
    let key = format!("k{}", cluster.rng.below(4));
    match cluster.rng.below(12) {
        0..=4 => {
            *next_sequence += 1;
            let client_id = 1 + cluster.rng.below(3);
            let value = format!("v{next_sequence}");
            cluster.put_via(
                target,
                client_id,
                *next_sequence,
                key.as_bytes(),
                value.as_bytes(),
            );
        }
        5..=7 => {
            cluster.get_via(target, key.as_bytes(), Consistency::Linearizable);
        }
        8..=9 => {
            cluster.get_via(target, key.as_bytes(), Consistency::Stale);
        }
        _ => {
            // A session read: at least the newest revision any answer has shown so far.
            let seen = cluster
                .operations
                .values()
                .filter_map(|op| op.revision)
                .max();
            let min_revision = seen.unwrap_or(0);
            cluster.get_at_least_via(
                target,
                key.as_bytes(),
                Consistency::AtLeastRevision,
                min_revision,
            );
        }
    }
}

fn run_schedule(schedule: &Schedule) {
    let mut cluster = Cluster::with_config(schedule.size, schedule.seed, |config| {
        config.snapshot_entries_threshold = 40;
    });
    let mut next_sequence = 0;
    for (fault, duration_ms) in &schedule.steps {
        apply(&mut cluster, fault, schedule.size);
        let mut elapsed = 0;
        while elapsed < *duration_ms {
            if cluster.rng.below(2) == 0 {
                client_operation(&mut cluster, &mut next_sequence);
            }
            cluster.run_for(STEP_MS);
            elapsed += STEP_MS;
        }
    }
    // Heal phase: everything back, the cluster must commit again within a bound and converge.
    let took = cluster.heal_and_converge(RECOVERY_MS_MAX);
    let applied = cluster
        .replica(NodeId(1))
        .expect("all nodes are up")
        .applied_index();
    assert!(
        applied >= cluster.chosen.len() as u64,
        "a chosen entry is no longer applied"
    );
    cluster.check_acknowledged_writes_chosen();
    cluster.check_reads();
    #[allow(clippy::disallowed_methods)]
    let verbose = std::env::var_os("PAXKV_VERBOSE").is_some();
    if verbose {
        let acknowledged = cluster
            .operations
            .values()
            .filter(|op| op.revision.is_some())
            .count();
        eprintln!(
            "size {} steps {} chosen {} operations {} answered {} recovery {took} ms",
            schedule.size,
            schedule.steps.len(),
            cluster.chosen.len(),
            cluster.operations.len(),
            acknowledged
        );
    }
}

#[allow(clippy::disallowed_methods)] // the test harness, not the core, reads the environment
fn schedules() -> u32 {
    std::env::var("PAXKV_SCHEDULES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: schedules(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_fault_schedules_keep_safety_and_recover(schedule in schedule()) {
        run_schedule(&schedule);
    }
}

/// Schedules that once failed, pinned so they keep passing.
mod pinned {
    use super::*;

    #[test]
    fn lossy_links_then_restart_converges() {
        run_schedule(&Schedule {
            size: 5,
            seed: 6282578602341847681,
            steps: vec![
                (Fault::CutLink(4, 1), 761),
                (
                    Fault::Lossy {
                        drop_ppm: 142604,
                        duplicate_ppm: 71891,
                        jitter_ms: 25,
                    },
                    50,
                ),
                (Fault::Restart(1), 1211),
            ],
        });
    }
}

mod pinned_sync {
    use super::*;

    /// A syncing leader's retry timer once made it start leading with its own stale log.
    #[test]
    fn crashes_and_loss_around_a_syncing_leader_keep_agreement() {
        run_schedule(&Schedule {
            size: 3,
            seed: 16062717618177326908,
            steps: vec![
                (Fault::Crash(3), 831),
                (
                    Fault::Lossy {
                        drop_ppm: 42035,
                        duplicate_ppm: 77888,
                        jitter_ms: 31,
                    },
                    1321,
                ),
                (Fault::Crash(4), 1271),
                (Fault::Crash(1), 1311),
                (Fault::Crash(3), 231),
                (Fault::Crash(1), 81),
                (Fault::CrashAll, 121),
                (Fault::CutLink(3, 2), 201),
                (Fault::Restart(1), 1111),
            ],
        });
    }
}
