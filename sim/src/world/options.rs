//! What a seed decides once, before anything runs: the cluster, the clocks, which faults the
//! nemesis uses and how often, and the workload's shape. Drawn from the seed, so a seed replays
//! exactly; traced as the run's first line after the start.
//!
//! Swarm testing: a seed does not run every fault and every operation at its usual rate. Each
//! fault and each optional operation is switched off in some seeds, and each fault weighs
//! three times its usual weight in half of the seeds that make it, so that some moves run far
//! more often than others and reach states that the full mix dilutes. Some seeds are calm
//! (up to 5 s between moves), which gives a long fault such as a sick leader room to play out.

use std::collections::BTreeMap;

use madsim::rand::{thread_rng, Rng};
use paxkv_core::{NodeId, ReplicaConfig};
use serde_json::{json, Value};

use super::nemesis::Fault;
use super::workload::OperationKind;

/// Client processes of every run (more than the smallest session bound a seed draws).
const CLIENTS: u64 = 4;
/// The clock drift bound the replicas assume (`ReplicaConfig`'s default): the simulated clocks
/// never drift faster.
const CLOCK_DRIFT_PPM_MAX: i64 = 10_000;
/// Node clocks start up to 20 minutes apart.
const CLOCK_OFFSET_MS_MAX: u64 = 1_200_000;
/// The shortest time between two moves of the nemesis.
const FAULT_INTERVAL_MS_MIN: u64 = 50;

/// The shape of one seed's run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The seed the run's random generator was seeded with.
    pub seed: u64,
    /// Replicas in the cluster: 3 or 5 (a third of seeds draw 5; `--nodes` overrides).
    pub nodes: u64,
    /// Client processes recording the history.
    pub clients: u64,
    /// A node's clock starts up to this far from the others (drawn again at every start).
    pub clock_offset_ms_max: u64,
    /// A node's clock drifts up to this fast or slow (drawn again at every start); never above
    /// the bound the replicas assume.
    pub clock_drift_ppm_max: i64,
    /// Healthy syncs take 10 us to 1 ms (else 1 to 8 ms).
    pub fast_disks: bool,
    /// The weight of each move of the nemesis (0: this seed never makes it).
    pub fault_weights: BTreeMap<Fault, u32>,
    /// The nemesis waits 50 ms up to this long (0.3 to 5 s) between two moves.
    pub fault_interval_ms_max: u64,
    /// The weight of each kind of client operation (0: this seed never asks it).
    pub operation_weights: BTreeMap<OperationKind, u32>,
    /// Keys every client writes, so operations collide.
    pub shared_keys: u32,
    /// A quarter of the puts pad their value to a random size up to this many bytes (16 KiB to
    /// 1 MiB; 0: short values), so that snapshots span many chunks and log records grow large.
    pub value_bytes_max: usize,
    /// Each client process (in 70% of seeds) knows one node only (as an application configured with one
    /// address does), so it keeps asking a deposed leader that still believes it leads.
    pub pinned_clients: bool,
    /// The first this many client processes only read, linearizably (as a dashboard does):
    /// a deposed leader that still answers is asked again and again, never held up by a
    /// write of the same process that waits for a quorum it no longer has.
    pub reader_clients: u64,
    /// Bytes per snapshot chunk: small chunks make even a small state travel in many, so a
    /// crash lands in the middle of a transfer.
    pub snapshot_chunk_bytes: usize,
    /// Snapshot bytes encoded per turn: small, so that a snapshot is encoded over many turns
    /// with writes between them.
    pub snapshot_step_bytes: usize,
    /// Committed entries a node applies per turn: 1 to 8 in 60% of the seeds, so that reads,
    /// requests and messages arrive while committed entries wait to be applied (the default
    /// bound is reached only by a long log, which seeds rarely build).
    pub apply_entries_per_ready: u64,
    /// Client sessions the nodes keep: 1 to 3 in 40% of the seeds, fewer than the clients that
    /// write (at least two: readers never open a session), so the state machine forgets
    /// sessions all the time (a write must then be refused, never applied as new).
    pub sessions_max: usize,
    /// Applied entries a node keeps in memory: 0 to 150 in 60% of the seeds (below the
    /// snapshot threshold of 200), so that logs let entries go that no snapshot covers yet and
    /// a peer a little behind needs a snapshot; the default (never reached) in the others.
    pub log_entries_kept: u64,
    /// Snapshot bytes waiting for the disk at which a node pauses encoding: 1 to 2,000 in half
    /// the seeds (the simulated disk counts the parts it took since its last sync), so that
    /// snapshots pause and resume between syncs; the default (never reached) in the others.
    pub snapshot_write_backlog_max: usize,
    /// Client processes that speak the Redis protocol (2 or 3; none in half the seeds), each
    /// to one node's RESP port (a different one each), on keys of their own.
    pub resp_clients: u64,
}

impl SimOptions {
    /// Chunks of a snapshot transfer are 256 KiB: a few large values make a transfer of many.
    const LARGE_VALUE_BYTES_MAX: usize = paxkv_proto::VALUE_BYTES_MAX;

    /// Draws a run's options from the simulator's random generator, which must be the one of a
    /// runtime seeded with `seed` (call it first thing in the run). `nodes` overrides the drawn
    /// cluster size; it is drawn anyway, so the rest of the run is the same either way.
    pub fn from_seed(seed: u64, nodes: Option<u64>) -> SimOptions {
        assert_eq!(
            madsim::runtime::Handle::current().seed(),
            seed,
            "options are drawn inside the runtime of their seed"
        );
        let assumed_drift_ppm_max =
            ReplicaConfig::new(NodeId(1), vec![NodeId(1)], 0).clock_drift_ppm_max as i64;
        assert_eq!(
            CLOCK_DRIFT_PPM_MAX, assumed_drift_ppm_max,
            "the simulated clocks drift within what the replicas assume"
        );
        let mut rng = thread_rng();
        let drawn_nodes = if rng.gen_ratio(1, 3) { 5 } else { 3 };
        let nodes = nodes.unwrap_or(drawn_nodes);
        assert!(nodes == 3 || nodes == 5, "a cluster of 3 or 5 nodes");
        // Most seeds use the full ranges; some keep the clocks close or steady, where a bug
        // that needs only a little skew is not hidden behind a large one.
        let clock_offset_ms_max = if rng.gen_bool(0.8) {
            CLOCK_OFFSET_MS_MAX
        } else {
            rng.gen_range(0..=1000)
        };
        let clock_drift_ppm_max = if rng.gen_bool(0.7) {
            CLOCK_DRIFT_PPM_MAX
        } else {
            rng.gen_range(0..=1000)
        };
        // Half the seeds change membership (all of its moves, so that nodes added are also
        // promoted and removed); the others keep the cluster they started with.
        let membership = rng.gen_bool(0.5);
        let fault_weights: BTreeMap<Fault, u32> = Fault::ALL
            .into_iter()
            .map(|fault| {
                let on = rng.gen_bool(fault.enabled_probability())
                    && (membership || !fault.changes_membership());
                let emphasis = if rng.gen_bool(0.5) { 1 } else { 3 };
                (
                    fault,
                    if on {
                        fault.base_weight() * emphasis
                    } else {
                        0
                    },
                )
            })
            .collect();
        let fault_interval_ms_max = rng.gen_range(300..=5000);
        let mut operation_weights: BTreeMap<OperationKind, u32> = OperationKind::ALL
            .into_iter()
            .filter(|kind| *kind != OperationKind::Transaction)
            .map(|kind| {
                let on = kind.always() || rng.gen_bool(0.85);
                (kind, if on { kind.base_weight() } else { 0 })
            })
            .collect();
        let shared_keys = rng.gen_range(3..=6);
        // Large values cost memory in every copy the simulation holds (logs, disks, messages
        // in flight): the largest sizes are drawn rarely.
        let value_bytes_max = if rng.gen_bool(0.25) {
            let exponent = rng.gen_range(14..=20u32);
            (1usize << exponent).min(Self::LARGE_VALUE_BYTES_MAX)
        } else {
            0
        };
        let fast_disks = rng.gen_bool(0.3);
        // A client pinned to one node is stranded when that node leaves the cluster.
        let pinned_clients = rng.gen_bool(0.7) && !membership;
        let sessions_max = if rng.gen_bool(0.4) {
            rng.gen_range(1..=3)
        } else {
            paxkv_core::kv::SESSIONS_MAX
        };
        // Large values already make many chunks of the full size.
        let snapshot_chunk_bytes = if value_bytes_max == 0 && rng.gen_bool(0.5) {
            rng.gen_range(16..=512)
        } else {
            paxkv_core::SNAPSHOT_CHUNK_BYTES
        };
        let reader_clients = rng.gen_range(0..=2);
        // Drawn last, so that the options drawn before it stay what they were for every seed.
        let transactions = rng.gen_bool(0.85);
        operation_weights.insert(
            OperationKind::Transaction,
            if transactions {
                OperationKind::Transaction.base_weight()
            } else {
                0
            },
        );
        // Drawn after everything else, for the same reason.
        let resp_clients = if rng.gen_bool(0.5) {
            rng.gen_range(2..=3)
        } else {
            0
        };
        // Drawn after everything else, for the same reason.
        let snapshot_step_bytes = if rng.gen_bool(0.8) {
            rng.gen_range(1..=600)
        } else {
            paxkv_core::SNAPSHOT_STEP_BYTES_DEFAULT
        };
        // Drawn after everything else, for the same reason.
        let apply_entries_per_ready = if rng.gen_bool(0.6) {
            rng.gen_range(1..=8)
        } else {
            paxkv_core::APPLY_ENTRIES_PER_READY_MAX
        };
        // Drawn after everything else, for the same reason.
        let log_entries_kept = if rng.gen_bool(0.6) {
            rng.gen_range(0..=150)
        } else {
            paxkv_core::LOG_ENTRIES_KEPT_DEFAULT
        };
        // Drawn after everything else, for the same reason.
        let snapshot_write_backlog_max = if rng.gen_bool(0.5) {
            rng.gen_range(1..=2000)
        } else {
            paxkv_core::SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT
        };
        SimOptions {
            snapshot_write_backlog_max,
            log_entries_kept,
            apply_entries_per_ready,
            snapshot_step_bytes,
            resp_clients,
            seed,
            nodes,
            clients: CLIENTS,
            clock_offset_ms_max,
            clock_drift_ppm_max,
            fast_disks,
            fault_weights,
            fault_interval_ms_max,
            operation_weights,
            shared_keys,
            value_bytes_max,
            pinned_clients,
            reader_clients,
            snapshot_chunk_bytes,
            sessions_max,
        }
    }

    /// How long the nemesis waits before its next move.
    pub fn fault_interval_ms(&self) -> std::ops::Range<u64> {
        FAULT_INTERVAL_MS_MIN..self.fault_interval_ms_max
    }

    pub fn to_json(&self) -> Value {
        let faults: BTreeMap<&str, u32> = self
            .fault_weights
            .iter()
            .map(|(fault, weight)| (fault.name(), *weight))
            .collect();
        let operations: BTreeMap<&str, u32> = self
            .operation_weights
            .iter()
            .map(|(kind, weight)| (kind.name(), *weight))
            .collect();
        json!({"seed": self.seed, "nodes": self.nodes, "clients": self.clients,
               "clock_offset_ms_max": self.clock_offset_ms_max,
               "clock_drift_ppm_max": self.clock_drift_ppm_max,
               "fast_disks": self.fast_disks, "fault_weights": faults,
               "fault_interval_ms": [FAULT_INTERVAL_MS_MIN, self.fault_interval_ms_max],
               "operation_weights": operations, "shared_keys": self.shared_keys,
               "value_bytes_max": self.value_bytes_max, "pinned_clients": self.pinned_clients,
               "reader_clients": self.reader_clients,
               "snapshot_chunk_bytes": self.snapshot_chunk_bytes,
               "snapshot_step_bytes": self.snapshot_step_bytes,
               "apply_entries_per_ready": self.apply_entries_per_ready,
               "sessions_max": self.sessions_max, "resp_clients": self.resp_clients,
               "log_entries_kept": self.log_entries_kept,
               "snapshot_write_backlog_max": self.snapshot_write_backlog_max})
    }
}

/// Picks one of `weights` with probability proportional to its weight (None if all are 0).
pub(super) fn pick_weighted<T: Copy>(weights: &BTreeMap<T, u32>, rng: &mut impl Rng) -> Option<T> {
    let total: u32 = weights.values().sum();
    if total == 0 {
        return None;
    }
    let mut remaining = rng.gen_range(0..total);
    for (choice, weight) in weights {
        if remaining < *weight {
            return Some(*choice);
        }
        remaining -= weight;
    }
    unreachable!("the draw is below the total weight")
}
