//! What a seed decides once, before anything runs: which fault models and which workload shape
//! it uses. Drawn from the seed, so a seed replays exactly; traced at the start of the run.

use madsim::rand::{thread_rng, Rng};
use serde_json::{json, Value};

/// The shape of one seed's run.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Nodes may be frozen (every task paused while time and the node's clock run on), as by
    /// SIGSTOP or a virtual machine pause.
    pub pauses: bool,
    /// A node's disk may turn slow for a while: syncs of tens of milliseconds to seconds.
    pub slow_disks: bool,
    /// Healthy syncs take 10 us to 1 ms (else 1 to 8 ms).
    pub fast_disks: bool,
    /// A quarter of the puts pad their value to a random size up to this many bytes (16 KiB to
    /// 1 MiB; 0: short values), so that snapshots span many chunks and log records grow large.
    pub value_bytes_max: usize,
    /// Each client process knows one node only (as an application configured with one
    /// address does), so it keeps asking a deposed leader that still believes it leads.
    pub pinned_clients: bool,
    /// Bytes per snapshot chunk: small chunks make even a small state travel in many, so a
    /// crash lands in the middle of a transfer.
    pub snapshot_chunk_bytes: usize,
    /// Client sessions the nodes keep: a few, fewer than the clients, make the state machine
    /// forget sessions all the time (a write must then be refused, never applied as new).
    pub sessions_max: usize,
}

impl SeedOptions {
    /// Chunks of a snapshot transfer are 256 KiB: a few large values make a transfer of many.
    const LARGE_VALUE_BYTES_MAX: usize = paxkv_proto::VALUE_BYTES_MAX;

    pub fn draw() -> SeedOptions {
        let mut rng = thread_rng();
        // Large values cost memory in every copy the simulation holds (logs, disks, messages
        // in flight): the largest sizes are drawn rarely.
        let value_bytes_max = if rng.gen_bool(0.25) {
            let exponent = rng.gen_range(14..=20u32);
            (1usize << exponent).min(Self::LARGE_VALUE_BYTES_MAX)
        } else {
            0
        };
        SeedOptions {
            pauses: rng.gen_bool(0.5),
            slow_disks: rng.gen_bool(0.5),
            fast_disks: rng.gen_bool(0.3),
            value_bytes_max,
            pinned_clients: rng.gen_bool(0.5),
            sessions_max: if rng.gen_bool(0.4) {
                rng.gen_range(2..=6)
            } else {
                paxkv_core::kv::SESSIONS_MAX
            },
            // Large values already make many chunks of the full size.
            snapshot_chunk_bytes: if value_bytes_max == 0 && rng.gen_bool(0.5) {
                rng.gen_range(16..=512)
            } else {
                paxkv_core::SNAPSHOT_CHUNK_BYTES
            },
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"pauses": self.pauses, "slow_disks": self.slow_disks, "fast_disks": self.fast_disks,
               "value_bytes_max": self.value_bytes_max, "pinned_clients": self.pinned_clients,
               "snapshot_chunk_bytes": self.snapshot_chunk_bytes,
               "sessions_max": self.sessions_max})
    }
}
