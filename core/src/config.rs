//! Replica configuration: validated once, then read-only.

use crate::types::NodeId;
use crate::Error;

/// How a replica behaves. Every duration is in milliseconds of the caller's clock.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub node_id: NodeId,
    /// Every member, including `node_id`. The initial configuration of a new cluster; a
    /// recovered replica takes the one it persisted.
    pub members: Vec<NodeId>,
    /// A follower that hears nothing from its leader for a random time in
    /// `election_timeout_ms ..= 2 * election_timeout_ms` may campaign.
    pub election_timeout_ms: u64,
    /// How often a leader sends heartbeats and every node pings its peers.
    pub heartbeat_interval_ms: u64,
    /// Bound on how fast any node's clock may drift from real time, in parts per million.
    /// Leases are shortened by twice this rate (one clock fast, the other slow).
    pub clock_drift_ppm_max: u64,
    /// Seed of the replica's random choices (election timeouts).
    pub seed: u64,
    /// Take a snapshot and trim the log once this many applied entries are not in a snapshot.
    pub snapshot_entries_threshold: u64,
    /// Applied entries kept in memory behind the last one applied, for peers a little behind
    /// (one further behind gets a snapshot); older ones stay only in storage until a snapshot
    /// covers them. A leader also keeps what its live followers have not acknowledged yet.
    pub log_entries_kept: u64,
    /// Entries a leader may have proposed but not yet committed; further proposals get `Busy`.
    pub uncommitted_entries_max: u64,
    /// An idle leader proposes a tick entry this often while TTLs or leases exist, so log
    /// time (and with it expiry) advances without client writes.
    pub log_tick_interval_ms: u64,
    /// Bytes of snapshot per chunk message of a transfer (the simulator lowers it, so that
    /// small states still travel in many chunks).
    pub snapshot_chunk_bytes: usize,
    /// Bytes of snapshot encoded per turn of the node loop: a large state is encoded in
    /// slices between other work, never in one stop (the simulator lowers it, so that small
    /// states are encoded over many turns with writes in between).
    pub snapshot_step_bytes: usize,
    /// Bytes of a snapshot for disk handed to storage and not yet written (as the caller
    /// reports them, `Replica::set_snapshot_write_backlog`) at which encoding pauses until
    /// storage catches up: encoding outruns a disk that syncs every slice, and the bytes in
    /// between wait in memory (at a million keys, tens of MB held, then freed at once).
    pub snapshot_write_backlog_max: usize,
    /// Committed entries applied per ready at most (`APPLY_ENTRIES_PER_READY_MAX`; the
    /// simulator lowers it, so that reads and messages arrive while committed entries wait).
    pub apply_entries_per_ready: u64,
    /// Copy every applied entry into `Ready::committed` (for tests that compare what the
    /// replicas applied). Off in a server, which only counts them: the copy cost an allocation
    /// and a copy of each key and value on every node.
    pub report_committed_entries: bool,
    /// Client sessions the state machine keeps (least recently used forgotten first). Every
    /// replica of a cluster must use the same value.
    pub sessions_max: usize,
    /// The node is joining a running cluster: its log starts from the cluster's first
    /// configuration (`members`), which does not list it; the change that adds it arrives
    /// from the leader. It never campaigns until it is a voter.
    pub joining: bool,
    /// Addresses of the members at start, kept with the first configuration (a joining node
    /// learns them from the cluster; a new cluster's nodes have them in their flags).
    pub addresses: Vec<paxkv_proto::peer::MemberAddress>,
}

/// Election timeout of `kv-server` unless configured: short enough for failover within a
/// second, long enough for loaded machines on one network.
pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 300;
/// Heartbeat interval of `kv-server` unless configured (at most half the election timeout).
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 50;
/// Applied entries outside a snapshot before `kv-server` takes one, unless configured.
pub const SNAPSHOT_ENTRIES_THRESHOLD_DEFAULT: u64 = 10_000;
/// Applied entries kept in memory unless configured: a follower that falls this far behind
/// (a fifth of a second of writes at 50,000 a second) while not answering gets a snapshot.
pub const LOG_ENTRIES_KEPT_DEFAULT: u64 = 10_000;
/// Snapshot bytes encoded per turn unless configured: about a millisecond of work.
pub const SNAPSHOT_STEP_BYTES_DEFAULT: usize = 256 * 1024;
/// Snapshot bytes waiting for storage at which encoding pauses, unless configured: four of
/// storage's 512 KiB synced slices, so the writer never waits for the encoder either.
pub const SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT: usize = 2 * 1024 * 1024;

impl ReplicaConfig {
    /// A configuration with the defaults `kv-server` uses when no flag says otherwise.
    pub fn new(node_id: NodeId, members: Vec<NodeId>, seed: u64) -> ReplicaConfig {
        ReplicaConfig {
            node_id,
            members,
            election_timeout_ms: ELECTION_TIMEOUT_MS_DEFAULT,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            clock_drift_ppm_max: 10_000,
            seed,
            snapshot_entries_threshold: SNAPSHOT_ENTRIES_THRESHOLD_DEFAULT,
            log_entries_kept: LOG_ENTRIES_KEPT_DEFAULT,
            uncommitted_entries_max: 4096,
            log_tick_interval_ms: 100,
            snapshot_chunk_bytes: crate::SNAPSHOT_CHUNK_BYTES,
            snapshot_step_bytes: SNAPSHOT_STEP_BYTES_DEFAULT,
            snapshot_write_backlog_max: SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT,
            apply_entries_per_ready: crate::APPLY_ENTRIES_PER_READY_MAX,
            report_committed_entries: false,
            sessions_max: crate::kv::SESSIONS_MAX,
            joining: false,
            addresses: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: String| Err(Error::InvalidConfig(why));
        if self.node_id.0 == 0 {
            return invalid("node id 0 is reserved for \"nobody\"".into());
        }
        if !self.joining && !self.members.contains(&self.node_id) {
            return invalid(format!(
                "members {:?} do not include {}",
                self.members, self.node_id
            ));
        }
        let mut sorted = self.members.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.members.len() {
            return invalid(format!("members {:?} contain duplicates", self.members));
        }
        if self.heartbeat_interval_ms == 0
            || self.election_timeout_ms < 2 * self.heartbeat_interval_ms
        {
            return invalid(format!(
                "election timeout ({} ms) must be at least twice the heartbeat interval ({} ms)",
                self.election_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        if self.clock_drift_ppm_max >= 250_000 {
            return invalid(format!(
                "clock drift bound {} ppm leaves no lease; keep it under 250000",
                self.clock_drift_ppm_max
            ));
        }
        if self.snapshot_entries_threshold == 0
            || self.uncommitted_entries_max == 0
            || self.log_tick_interval_ms == 0
            || self.snapshot_chunk_bytes == 0
            || self.snapshot_step_bytes == 0
            || self.snapshot_write_backlog_max == 0
            || self.apply_entries_per_ready == 0
            || self.sessions_max == 0
            || self.snapshot_chunk_bytes > crate::SNAPSHOT_CHUNK_BYTES
        {
            return invalid(
                "snapshot threshold, uncommitted limit, tick interval, snapshot chunk, step and \
                 backlog sizes, entries applied per turn and sessions kept must be positive (chunks at \
                 most SNAPSHOT_CHUNK_BYTES)"
                    .into(),
            );
        }
        Ok(())
    }

    /// How long a leader may serve reads from its lease after the send time of a heartbeat
    /// round a quorum acknowledged: the election timeout, which every follower waits before
    /// supporting someone else, shortened by the worst relative drift of two clocks.
    pub fn lease_duration_ms(&self) -> u64 {
        let shrink_ppm = 2 * self.clock_drift_ppm_max;
        self.election_timeout_ms * (1_000_000 - shrink_ppm) / 1_000_000
    }
}
