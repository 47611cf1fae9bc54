//! The simulated world (built only with `--cfg madsim`): a seeded cluster of real paxkv server
//! nodes on distinct IPv6 addresses, a simulated disk that loses unsynced writes in a crash,
//! a clock per node with its own offset and drift, a nemesis, and clients that record a
//! history. Every choice is drawn from the seed, so a seed replays exactly.
//!
//! `disk.rs` is the simulated disk, `nemesis.rs` the faults, `workload.rs` the clients and the
//! checks after the heal; this file builds the world from a seed and runs it.

mod disk;
mod nemesis;
mod options;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use paxkv_client::{header_of, Client, ClientConfig, ClientError, Request, Response};
use paxkv_core::planted::Bug;
use paxkv_core::{DurableState, LogWrite, NodeId, SnapshotWrite};
use paxkv_proto::auth::ClusterSecret;
use paxkv_proto::client::{
    Consistency, DeleteRequest, ExpireCondition, ExpireRequest, GetRequest, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, Role, TtlRequest, TtlState,
};
use paxkv_proto::peer::HardState;
use paxkv_server::clock::NodeClock;
use paxkv_server::storage::{Storage, StorageError};
use paxkv_server::{start_node, NodeConfig};
use serde_json::{json, Value};
use tokio::time::Instant;

pub use disk::SimStorage;
use nemesis::Nemesis;
pub use options::SeedOptions;
use workload::{client_loop, convergence, sample_status, verify};

const SECRET: &[u8] = b"simulated-cluster-secret-0123456789";
const CLIENT_PORT: u16 = 7000;
const PEER_PORT: u16 = 7100;
/// Keys every client writes, so operations collide.
const SHARED_KEYS: u32 = 4;
/// After the heal, every client must complete an operation within this time.
pub const SERVE_BOUND: Duration = Duration::from_secs(15);
/// After the heal, every replica must reach the same applied index and state within this time.
pub const CONVERGE_BOUND: Duration = Duration::from_secs(30);
/// The election timeout of the simulated nodes.
const ELECTION_TIMEOUT_MS: u64 = 500;

/// What one seed runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: u64,
    pub sim_secs: u64,
    pub clients: u64,
    /// A planted bug to turn on (simulator builds with the `planted-bugs` feature only).
    pub bug: Option<Bug>,
}

/// What one seed produced.
#[derive(Debug, Clone)]
pub struct RunReport {
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
    /// Simulated time from the clients' last operation until every replica had the same
    /// applied state.
    pub converged_after: Option<Duration>,
}

/// The digest of a trace (its lines, each ended by a newline): equal for equal traces, on any
/// machine.
pub fn trace_hash(lines: &[String]) -> u64 {
    paxkv_core::kv::fnv1a((lines.join("\n") + "\n").as_bytes())
}

fn node_ip(index: usize) -> IpAddr {
    format!("fd00::{}", index + 1)
        .parse()
        .expect("a valid IPv6 address")
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
    options: SeedOptions,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn trace(&self, event: &str, mut fields: Value) {
        fields["t_ms"] = json!(self.now_ms());
        fields["event"] = json!(event);
        self.trace
            .lock()
            .expect("not poisoned")
            .push(fields.to_string());
    }

    /// One history line, also traced.
    fn record(&self, line: Value) {
        let text = line.to_string();
        self.history
            .lock()
            .expect("not poisoned")
            .push(text.clone());
        self.trace("client", line);
    }
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
        options: SeedOptions::draw(),
    });
    shared.trace(
        "start",
        json!({"seed": config.seed, "nodes": config.nodes, "sim_secs": config.sim_secs,
               "clients": config.clients, "bug": config.bug.map(|bug| bug.name())}),
    );
    shared.trace("options", shared.options.to_json());
    let count = config.nodes as usize;
    let peers: BTreeMap<NodeId, SocketAddr> = (0..count)
        .map(|index| {
            (
                NodeId(index as u64 + 1),
                SocketAddr::new(node_ip(index), PEER_PORT),
            )
        })
        .collect();
    let storages: Vec<SimStorage> = (0..count)
        .map(|_| SimStorage {
            fast: shared.options.fast_disks,
            ..SimStorage::default()
        })
        .collect();
    let nodes: Vec<NodeHandle> = (0..count)
        .map(|index| start_sim_node(&handle, index, &peers, &storages[index], &shared))
        .collect();
    let endpoints: Vec<String> = (0..count)
        .map(|index| SocketAddr::new(node_ip(index), CLIENT_PORT).to_string())
        .collect();
    let client_node = handle
        .create_node()
        .name("clients")
        .ip("fd00::100".parse().expect("ip"))
        .build();
    let fault_phase = Duration::from_millis(config.sim_secs * 1000 * 2 / 3);
    let workload_end = Duration::from_secs(config.sim_secs);
    let workload = {
        let (shared, endpoints, clients) = (shared.clone(), endpoints.clone(), config.clients);
        client_node.spawn(async move {
            for index in 0..endpoints.len() {
                tokio::spawn(sample_status(shared.clone(), endpoints.clone(), index));
            }
            let mut tasks = Vec::new();
            for process in 1..=clients {
                tasks.push(tokio::spawn(client_loop(
                    process,
                    clients,
                    endpoints.clone(),
                    shared.clone(),
                    workload_end,
                )));
            }
            for task in tasks {
                let _ = task.await;
            }
            verify(clients + 1, clients, &endpoints, &shared).await;
            convergence(&endpoints, &shared).await
        })
    };
    let net = madsim::net::NetSim::current();
    let mut nemesis = Nemesis {
        handle: &handle,
        net: &net,
        nodes: &nodes,
        storages: &storages,
        down: vec![false; count],
        shared: &shared,
    };
    nemesis.fault_phase(fault_phase).await;
    nemesis.heal();
    let mut problems = Vec::new();
    let converged_after = match workload.await {
        Ok(Ok(after)) => Some(after),
        Ok(Err(problem)) => {
            problems.push(problem);
            None
        }
        Err(_) => {
            problems.push("the client node's task failed".to_string());
            None
        }
    };
    let served: BTreeMap<u64, Duration> = shared.served.lock().expect("not poisoned").clone();
    for process in 1..=config.clients {
        if !served.contains_key(&process) {
            problems.push(format!(
                "client {process} completed no operation within {} s of the heal",
                SERVE_BOUND.as_secs()
            ));
        }
    }
    let served_after = (served.len() == config.clients as usize)
        .then(|| served.values().max().copied())
        .flatten();
    shared.trace(
        "end",
        json!({"problems": problems, "served_after_ms": served_after.map(|d| d.as_millis() as u64),
               "converged_after_ms": converged_after.map(|d| d.as_millis() as u64)}),
    );
    let trace = std::mem::take(&mut *shared.trace.lock().expect("not poisoned"));
    let history = std::mem::take(&mut *shared.history.lock().expect("not poisoned"));
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
    RunReport {
        trace_hash: trace_hash(&trace),
        history,
        trace,
        problems,
        served_after,
        converged_after,
    }
}

fn start_sim_node(
    handle: &Handle,
    index: usize,
    peers: &BTreeMap<NodeId, SocketAddr>,
    storage: &SimStorage,
    shared: &Arc<Shared>,
) -> NodeHandle {
    let (storage, peers, shared) = (storage.clone(), peers.clone(), shared.clone());
    let seed = thread_rng().gen::<u64>();
    handle
        .create_node()
        .name(format!("node-{}", index + 1))
        .ip(node_ip(index))
        .init(move || {
            let (storage, peers, shared) = (storage.clone(), peers.clone(), shared.clone());
            async move {
                // Every start draws a new clock: minutes apart, drifting up to the bound the
                // replicas assume (1%).
                let (offset_ms, drift_ppm) = {
                    let mut rng = thread_rng();
                    (
                        rng.gen_range(0..1_200_000u64),
                        rng.gen_range(-10_000i64..=10_000),
                    )
                };
                shared.trace(
                    "node_start",
                    json!({"node": index + 1, "clock_offset_ms": offset_ms, "drift_ppm": drift_ppm}),
                );
                let config = NodeConfig {
                    id: NodeId(index as u64 + 1),
                    client_addr: SocketAddr::new(node_ip(index), CLIENT_PORT),
                    peer_addr: SocketAddr::new(node_ip(index), PEER_PORT),
                    peers,
                    data_dir: format!("sim/node-{}", index + 1).into(),
                    secret: ClusterSecret::new(SECRET).expect("a long enough secret"),
                    allow_unauthenticated_clients: false,
                    election_timeout_ms: ELECTION_TIMEOUT_MS,
                    heartbeat_interval_ms: 50,
                    snapshot_entries_threshold: 200,
                    snapshot_chunk_bytes: shared.options.snapshot_chunk_bytes,
                    sessions_max: shared.options.sessions_max,
                    seed: Some(seed),
                };
                let (stop, shutdown) = paxkv_server::shutdown::channel();
                let clock = NodeClock::skewed(offset_ms, drift_ppm);
                let running = start_node(config, Box::new(storage), clock, shutdown)
                    .await
                    .expect("a simulated node starts");
                if let Ok(Err(error)) = running.node.await {
                    // A real node exits here; the nemesis restarts it like a crashed one.
                    shared.trace(
                        "node_stopped",
                        json!({"node": index + 1, "error": error.to_string()}),
                    );
                    stop.stop();
                    shared.stopped.lock().expect("not poisoned").insert(index);
                }
            }
        })
        .build()
}
