//! The simulated world (built only with `--cfg madsim`): a seeded cluster of real paxkv server
//! nodes on distinct IPv6 addresses, a simulated disk that loses unsynced writes in a crash,
//! a clock per node with its own offset and drift, a nemesis, and clients that record a
//! history. Every choice is drawn from the seed, so a seed replays exactly.
//!
//! One file per concern: `options.rs` what a seed decides once, `node.rs` a simulated node and
//! its clock, `disk.rs` the simulated disk, `nemesis.rs` the faults, `workload.rs` the clients,
//! `checks.rs` the checks after the heal, `trace.rs` what a run records. This file builds the
//! world from a seed and runs it: a fault phase, then a heal after which it must recover.

mod checks;
mod disk;
mod membership;
mod nemesis;
mod node;
mod options;
mod resp_client;
mod trace;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use paxkv_client::{Client, ClientConfig, ClientError, ReadConsistency, Request, Response};

use crate::checker::WatchSegment;
use paxkv_core::planted::Bug;
use paxkv_core::{DurableState, LogWrite, NodeId, SnapshotAssembly, SnapshotPart, SnapshotWrite};
use paxkv_proto::auth::ClusterSecret;
use paxkv_proto::client::{
    txn_op, txn_op_response, Compare, CompareOp, CompareTarget, Consistency, DeleteRequest,
    ExpireCondition, ExpireRequest, GetRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseRevokeRequest, PutRequest, Role, ScanRequest, TtlRequest, TtlState, TxnOp, TxnRequest,
};
use paxkv_proto::peer::HardState;
use paxkv_server::clock::NodeClock;
use paxkv_server::storage::{Storage, StorageError};
use paxkv_server::{start_node, NodeConfig, ServerError, Stopped};
use serde_json::{json, Value};
use tokio::time::Instant;

pub use disk::SimStorage;
use membership::{client_endpoint, Slot, SLOTS};
pub use nemesis::Fault;
use nemesis::Nemesis;
use node::{node_ip, start_sim_node};
pub use options::SimOptions;
use trace::sample_status;
pub use trace::trace_hash;
use workload::client_loop;
pub use workload::OperationKind;

const SECRET: &[u8] = b"simulated-cluster-secret-0123456789";
const CLIENT_PORT: u16 = 7000;
const PEER_PORT: u16 = 7100;
/// After the heal, every client must complete an operation within this time. In 800 seeds
/// the slowest took 2.4 s; connections kept after they went silent (frames stuck behind a
/// transport's retransmission backoff since the partition) took 5-11 s in about one seed in
/// ten, which this bound catches (planted bugs peer-silence-ignored, forward-silence-ignored).
pub const SERVE_BOUND: Duration = Duration::from_secs(6);
/// After the heal, every replica must reach the same applied index and state within this time.
pub const CONVERGE_BOUND: Duration = Duration::from_secs(30);
/// The election timeout of the simulated nodes.
const ELECTION_TIMEOUT_MS: u64 = 500;

/// What one seed runs; everything else the seed decides (`SimOptions`).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    /// A cluster size (3 or 5) that overrides the seed's.
    pub nodes: Option<u64>,
    pub sim_secs: u64,
    /// A planted bug to turn on (simulator builds with the `planted-bugs` feature only).
    pub bug: Option<Bug>,
}

/// What one seed produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// What the seed decided.
    pub options: SimOptions,
    /// The clients' history, JSON lines (format: sim/HISTORY.md).
    pub history: Vec<String>,
    /// Everything that happened, JSON lines with simulated time: faults, node starts and
    /// stops, status samples, client operations.
    pub trace: Vec<String>,
    pub trace_hash: u64,
    /// What the world saw go wrong besides the history: no convergence, clients not served.
    pub problems: Vec<String>,
    /// Simulated time from the heal until every client completed an operation.
    pub served_after: Option<Duration>,
    /// What the watcher's stream delivered.
    pub watches: Vec<WatchSegment>,
    /// Simulated time from the clients' last operation until every replica had the same
    /// applied state.
    pub converged_after: Option<Duration>,
}

/// State the nemesis, the clients and the nodes share.
pub(super) struct Shared {
    start: Instant,
    trace: Mutex<Vec<String>>,
    history: Mutex<Vec<String>>,
    /// The node the status samples last showed leading (highest ballot).
    leader: Mutex<Option<(usize, (u64, u64))>>,
    healed_at: Mutex<Option<Instant>>,
    /// Per client process: simulated time from the heal to its first completed operation.
    served: Mutex<BTreeMap<u64, Duration>>,
    /// Nodes that stopped on their own (a failed sync), waiting to be restarted.
    stopped: Mutex<BTreeSet<usize>>,
    /// Applied index per node, as the status samples last showed it.
    applied: Mutex<BTreeMap<usize, u64>>,
    /// What runs on each address (`membership::Slot`).
    slots: Mutex<Vec<Slot>>,
    /// What the nodes saw go wrong during the run (a wiped node let in).
    problems: Mutex<Vec<String>>,
    /// Nodes restarted with an empty data directory under an id the cluster knows (a retired
    /// node, a wiped member): each must be refused, never start serving.
    must_be_refused: Mutex<BTreeSet<usize>>,
    /// What the watcher's stream delivered, segment by segment.
    watched: Mutex<Vec<WatchSegment>>,
    options: SimOptions,
}

/// Runs one seed on the calling thread (use a fresh thread per seed).
pub fn run(config: RunConfig) -> RunReport {
    #[cfg(feature = "planted-bugs")]
    paxkv_core::planted::plant(config.bug);
    #[cfg(not(feature = "planted-bugs"))]
    assert!(
        config.bug.is_none(),
        "planted bugs need a build with the `planted-bugs` feature"
    );
    let runtime = Runtime::with_seed_and_config(config.seed, madsim::Config::default());
    runtime.block_on(simulate(config))
}

/// The options `seed` draws, without running it (for a run that panicked before it could
/// report them): they are the first thing a run draws, so a fresh runtime draws them again.
pub fn options_of(seed: u64, nodes: Option<u64>) -> SimOptions {
    let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.block_on(async move { SimOptions::from_seed(seed, nodes) })
}

thread_local! {
    /// The trace of the run on this thread, kept for `trace_so_far` after a panic.
    static RUNNING_TRACE: std::cell::RefCell<Option<Arc<Shared>>> =
        const { std::cell::RefCell::new(None) };
}

/// The trace of the last run on this thread up to now (for a run that panicked).
pub fn trace_so_far() -> Vec<String> {
    RUNNING_TRACE.with(|running| {
        running.borrow().as_ref().map_or_else(Vec::new, |shared| {
            shared
                .trace
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    })
}

async fn simulate(config: RunConfig) -> RunReport {
    let handle = Handle::current();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        trace: Mutex::new(Vec::new()),
        history: Mutex::new(Vec::new()),
        leader: Mutex::new(None),
        healed_at: Mutex::new(None),
        served: Mutex::new(BTreeMap::new()),
        stopped: Mutex::new(BTreeSet::new()),
        applied: Mutex::new(BTreeMap::new()),
        slots: Mutex::new(vec![Slot::Spare; SLOTS]),
        problems: Mutex::new(Vec::new()),
        must_be_refused: Mutex::new(BTreeSet::new()),
        watched: Mutex::new(Vec::new()),
        options: SimOptions::from_seed(config.seed, config.nodes),
    });
    RUNNING_TRACE.with(|running| *running.borrow_mut() = Some(shared.clone()));
    // The first line: the run and everything its seed decided.
    let mut start = shared.options.to_json();
    start["sim_secs"] = json!(config.sim_secs);
    start["bug"] = json!(config.bug.map(|bug| bug.name()));
    shared.trace("start", start);
    let count = shared.options.nodes as usize;
    for index in 0..count {
        shared.set_slot(index, Slot::Initial);
    }
    let peers: BTreeMap<NodeId, SocketAddr> = (0..count)
        .map(|index| {
            (
                NodeId(index as u64 + 1),
                SocketAddr::new(node_ip(index), PEER_PORT),
            )
        })
        .collect();
    let storages: Vec<SimStorage> = (0..SLOTS)
        .map(|_| SimStorage {
            fast: shared.options.fast_disks,
            ..SimStorage::default()
        })
        .collect();
    let nodes: Vec<NodeHandle> = (0..SLOTS)
        .map(|index| start_sim_node(&handle, index, &peers, &storages[index], &shared))
        .collect();
    // Clients know every address a node may run on (as an application configured with the
    // whole pool), except those pinned to one node, which know only the first nodes'.
    let endpoints: Vec<String> = (0..SLOTS).map(client_endpoint).collect();
    let client_node = handle
        .create_node()
        .name("clients")
        .ip("fd00::100".parse().expect("ip"))
        .build();
    let workload_end = Duration::from_secs(config.sim_secs);
    let workload = client_node.spawn(clients(endpoints, shared.clone(), workload_end));
    let net = madsim::net::NetSim::current();
    let mut nemesis = Nemesis {
        handle: &handle,
        net: &net,
        nodes: &nodes,
        client_node: &client_node,
        storages: &storages,
        down: vec![false; SLOTS],
        wiped_member: None,
        shared: &shared,
    };
    nemesis
        .fault_phase(Duration::from_millis(config.sim_secs * 1000 * 2 / 3))
        .await;
    nemesis.heal();
    let (mut problems, converged_after) = match workload.await {
        Ok(Ok(after)) => (Vec::new(), Some(after)),
        Ok(Err(problem)) => (vec![problem], None),
        Err(_) => (vec!["the client node's task failed".to_string()], None),
    };
    let (not_served, served_after) = checks::service(&shared);
    problems.extend(not_served);
    problems.extend(shared.problems.lock().expect("not poisoned").drain(..));
    shared.trace(
        "end",
        json!({"problems": problems, "served_after_ms": served_after.map(|d| d.as_millis() as u64),
               "converged_after_ms": converged_after.map(|d| d.as_millis() as u64)}),
    );
    let (trace, history) = shared.take_records();
    // The runtime does not free every task it still holds when it is dropped, and a node's
    // replica and disk can hold hundreds of megabytes of large values: stop every node (which
    // drops its tasks) and empty the disks before returning, or each seed leaks its state.
    for node in &nodes {
        handle.kill(node.id());
    }
    handle.kill(client_node.id());
    for storage in &storages {
        *storage.disk.lock().expect("not poisoned") = Default::default();
    }
    let watches = std::mem::take(&mut *shared.watched.lock().expect("not poisoned"));
    RunReport {
        watches,
        options: shared.options.clone(),
        trace_hash: trace_hash(&trace),
        history,
        trace,
        problems,
        served_after,
        converged_after,
    }
}

/// Everything on the client node: status samples, the client processes until the workload
/// ends, then the read-back of every key and the wait for convergence (its result).
async fn clients(
    endpoints: Vec<String>,
    shared: Arc<Shared>,
    workload_end: Duration,
) -> Result<Duration, String> {
    for index in 0..endpoints.len() {
        tokio::spawn(sample_status(shared.clone(), endpoints.clone(), index));
    }
    let count = shared.options.nodes as usize;
    let clients = shared.options.clients;
    let watcher = tokio::spawn(workload::watcher(
        endpoints.clone(),
        shared.clone(),
        workload_end,
    ));
    let tasks: Vec<_> = (1..=clients)
        .map(|process| {
            tokio::spawn(client_loop(
                process,
                endpoints.clone(),
                count,
                shared.clone(),
                workload_end,
            ))
        })
        .collect();
    // The Redis-protocol clients come after the native ones (and the read-back's process).
    let resp_tasks: Vec<_> = (0..shared.options.resp_clients)
        .map(|i| {
            let process = clients + 2 + i;
            tokio::spawn(resp_client::resp_client_loop(
                process,
                i as usize % count,
                shared.clone(),
                workload_end,
            ))
        })
        .collect();
    for task in tasks.into_iter().chain(resp_tasks) {
        let _ = task.await;
    }
    let _ = watcher.await;
    checks::verify(clients + 1, &endpoints, &shared).await;
    checks::convergence(&shared).await
}
