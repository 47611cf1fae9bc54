//! The simulated world (built only with `--cfg madsim`): a seeded cluster of real paxkv server
//! nodes on distinct IPv6 addresses, a simulated disk that loses unsynced writes in a crash,
//! a clock per node with its own offset and drift, a nemesis, and clients that record a
//! history. Every choice is drawn from the seed, so a seed replays exactly.

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

/// One write the node made that is not synced yet.
#[derive(Clone)]
struct PendingWrite {
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotWrite>,
    log_write: Option<LogWrite>,
}

#[derive(Default)]
struct SimDisk {
    synced: DurableState,
    unsynced: Vec<PendingWrite>,
    syncs: u64,
    fail_next_sync: bool,
}

impl SimDisk {
    /// Makes the first `count` unsynced writes durable and forgets the rest.
    fn keep_unsynced(&mut self, count: usize) {
        for write in std::mem::take(&mut self.unsynced).iter().take(count) {
            self.synced.apply_persisted(
                write.hard_state.as_ref(),
                write.snapshot.as_ref(),
                write.log_write.as_ref(),
            );
        }
    }
}

/// A node's disk. It lives outside the node, so it survives the node's crash; what was written
/// but not synced is lost in a crash, all of it or a prefix (the seed decides).
#[derive(Clone, Default)]
pub struct SimStorage {
    disk: Arc<Mutex<SimDisk>>,
}

impl SimStorage {
    /// The node crashed: keep a random prefix of the unsynced writes (often none; none at all
    /// in a power cut). Returns (writes kept, writes lost).
    fn crash(&self, power_cut: bool) -> (usize, usize) {
        let mut disk = self.disk.lock().expect("not poisoned");
        let pending = disk.unsynced.len();
        let kept = if pending == 0 || power_cut || thread_rng().gen_bool(0.5) {
            0
        } else {
            thread_rng().gen_range(0..=pending)
        };
        disk.keep_unsynced(kept);
        disk.fail_next_sync = false;
        (kept, pending - kept)
    }

    fn fail_next_sync(&self) {
        self.disk.lock().expect("not poisoned").fail_next_sync = true;
    }
}

impl Storage for SimStorage {
    fn load(&mut self) -> Result<DurableState, StorageError> {
        Ok(self.disk.lock().expect("not poisoned").synced.clone())
    }

    fn write(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError> {
        self.disk
            .lock()
            .expect("not poisoned")
            .unsynced
            .push(PendingWrite {
                hard_state: hard_state.cloned(),
                snapshot: snapshot.cloned(),
                log_write: log_write.cloned(),
            });
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let mut disk = self.disk.lock().expect("not poisoned");
        if std::mem::take(&mut disk.fail_next_sync) {
            return Err(StorageError::Io {
                path: "simulated-disk".into(),
                source: std::io::Error::other("injected fsync failure"),
            });
        }
        let all = disk.unsynced.len();
        disk.keep_unsynced(all);
        disk.syncs += 1;
        Ok(())
    }

    fn sync_count(&self) -> u64 {
        self.disk.lock().expect("not poisoned").syncs
    }
}

/// What one seed runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: u64,
    pub sim_secs: u64,
    pub clients: u64,
    /// A planted bug to turn on (simulator builds with the `teeth` feature only).
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
struct Shared {
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
    #[cfg(feature = "teeth")]
    paxkv_core::planted::plant(config.bug);
    #[cfg(not(feature = "teeth"))]
    assert!(
        config.bug.is_none(),
        "planted bugs need a build with the `teeth` feature"
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
    });
    shared.trace(
        "start",
        json!({"seed": config.seed, "nodes": config.nodes, "sim_secs": config.sim_secs,
               "clients": config.clients, "bug": config.bug.map(|bug| bug.name())}),
    );
    let count = config.nodes as usize;
    let peers: BTreeMap<NodeId, SocketAddr> = (0..count)
        .map(|index| {
            (
                NodeId(index as u64 + 1),
                SocketAddr::new(node_ip(index), PEER_PORT),
            )
        })
        .collect();
    let storages: Vec<SimStorage> = (0..count).map(|_| SimStorage::default()).collect();
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
    let trace = shared.trace.lock().expect("not poisoned").clone();
    let history = shared.history.lock().expect("not poisoned").clone();
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

struct Nemesis<'a> {
    handle: &'a Handle,
    net: &'a madsim::net::NetSim,
    nodes: &'a [NodeHandle],
    storages: &'a [SimStorage],
    down: Vec<bool>,
    shared: &'a Shared,
}

impl Nemesis<'_> {
    fn ids(&self, indexes: &[usize]) -> Vec<usize> {
        indexes.iter().map(|index| index + 1).collect()
    }

    fn clog(&self, from: usize, to: usize) {
        self.net
            .clog_link(self.nodes[from].id(), self.nodes[to].id());
    }

    fn clog_both(&self, a: usize, b: usize) {
        self.clog(a, b);
        self.clog(b, a);
    }

    fn unclog_all(&self) {
        for a in self.nodes {
            for b in self.nodes {
                self.net.unclog_link(a.id(), b.id());
            }
        }
    }

    fn crash(&mut self, index: usize, power_cut: bool) {
        self.handle.kill(self.nodes[index].id());
        let (kept, lost) = self.storages[index].crash(power_cut);
        self.down[index] = true;
        self.shared
            .stopped
            .lock()
            .expect("not poisoned")
            .remove(&index);
        self.shared.trace(
            "crash",
            json!({"node": index + 1, "unsynced_writes_kept": kept, "unsynced_writes_lost": lost}),
        );
    }

    /// Nodes that stopped on a failed sync count as crashed (a real one exited); a restart
    /// brings them back.
    fn crash_stopped(&mut self) {
        let stopped = std::mem::take(&mut *self.shared.stopped.lock().expect("not poisoned"));
        for index in stopped {
            if !self.down[index] {
                self.crash(index, false);
            }
        }
    }

    fn restart(&mut self, index: usize) {
        self.handle.restart(self.nodes[index].id());
        self.down[index] = false;
        self.shared.trace("restart", json!({"node": index + 1}));
    }

    fn leader(&self) -> Option<usize> {
        self.shared
            .leader
            .lock()
            .expect("not poisoned")
            .map(|(index, _)| index)
            .filter(|index| !self.down[*index])
    }

    fn weather(&self, name: &str, loss: f64, latency_ms: (u64, u64)) {
        self.net.update_config(|config| {
            config.packet_loss_rate = loss;
            config.send_latency =
                Duration::from_millis(latency_ms.0)..Duration::from_millis(latency_ms.1);
        });
        self.shared.trace(
            "network",
            json!({"weather": name, "packet_loss": loss, "latency_ms": [latency_ms.0, latency_ms.1]}),
        );
    }

    /// Faults until `length` of simulated time has passed since the start.
    async fn fault_phase(&mut self, length: Duration) {
        let count = self.nodes.len();
        let may_crash = (count - 1) / 2;
        while self.shared.start.elapsed() < length {
            self.crash_stopped();
            let (choice, a, b, pause_ms) = {
                let mut rng = thread_rng();
                (
                    rng.gen_range(0..100u32),
                    rng.gen_range(0..count),
                    rng.gen_range(0..count),
                    rng.gen_range(50..1500u64),
                )
            };
            let down = self.down.iter().filter(|down| **down).count();
            match choice {
                0..=9 if a != b => {
                    self.clog(a, b);
                    self.shared
                        .trace("one_way_link", json!({"from": a + 1, "to": b + 1}));
                }
                10..=19 if a != b => {
                    self.net.unclog_link(self.nodes[a].id(), self.nodes[b].id());
                    self.net.unclog_link(self.nodes[b].id(), self.nodes[a].id());
                    self.shared
                        .trace("link_restored", json!({"between": [a + 1, b + 1]}));
                }
                20..=27 => {
                    // A split between servers; clients still reach every node, so a deposed
                    // leader would be asked, and caught, if it answered from stale state.
                    let mask = thread_rng().gen_range(1..(1u32 << count) - 1);
                    let side: Vec<usize> = (0..count).filter(|i| (mask >> i) & 1 == 1).collect();
                    for i in 0..count {
                        for j in 0..count {
                            if (mask >> i) & 1 != (mask >> j) & 1 {
                                self.clog(i, j);
                            }
                        }
                    }
                    self.shared.trace("split", json!({"side": self.ids(&side)}));
                }
                28..=37 => {
                    self.unclog_all();
                    self.shared.trace("network_healed", json!({}));
                }
                38..=47 if !self.down[a] && down < may_crash => self.crash(a, false),
                48..=57 if self.down[a] => self.restart(a),
                58..=63 => {
                    // A power cut: nothing unsynced survives anywhere.
                    for index in 0..count {
                        if !self.down[index] {
                            self.crash(index, true);
                        }
                    }
                    self.shared.trace("whole_cluster_crashed", json!({}));
                    let outage = thread_rng().gen_range(100..3000u64);
                    tokio::time::sleep(Duration::from_millis(outage)).await;
                    for index in 0..count {
                        self.restart(index);
                    }
                }
                64..=68 => {
                    // The leader still reaches its followers but hears from none of them.
                    if let Some(leader) = self.leader() {
                        for other in (0..count).filter(|other| *other != leader) {
                            self.clog(other, leader);
                        }
                        self.shared
                            .trace("leader_without_quorum", json!({"leader": leader + 1}));
                    }
                }
                69..=72 => {
                    if let Some(leader) = self.leader() {
                        if a != leader {
                            self.clog_both(a, leader);
                            self.shared.trace(
                                "cut_from_leader",
                                json!({"node": a + 1, "leader": leader + 1}),
                            );
                        }
                    }
                }
                73..=77 => {
                    // A chain with the leader at one end: only neighbours talk.
                    if let Some(leader) = self.leader() {
                        let mut order: Vec<usize> = (0..count).filter(|i| *i != leader).collect();
                        for i in (1..order.len()).rev() {
                            order.swap(i, thread_rng().gen_range(0..=i));
                        }
                        order.insert(0, leader);
                        for (i, x) in order.iter().enumerate() {
                            for (j, y) in order.iter().enumerate() {
                                if i.abs_diff(j) > 1 {
                                    self.clog(*x, *y);
                                }
                            }
                        }
                        self.shared
                            .trace("chain", json!({"order": self.ids(&order)}));
                    }
                }
                78..=85 => match thread_rng().gen_range(0..3u32) {
                    0 => self.weather("calm", 0.0, (1, 5)),
                    1 => {
                        let high = thread_rng().gen_range(20..300u64);
                        self.weather("slow", 0.0, (1, high));
                    }
                    _ => {
                        let loss = thread_rng().gen_range(0.01..0.15);
                        self.weather("lossy", loss, (1, 10));
                    }
                },
                86..=89 if !self.down[a] => {
                    self.storages[a].fail_next_sync();
                    self.shared.trace("disk_fault", json!({"node": a + 1}));
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }

    /// Every link back, every node up, calm network; the clients keep working.
    fn heal(&mut self) {
        self.unclog_all();
        self.weather("calm", 0.0, (1, 5));
        for storage in self.storages {
            storage.disk.lock().expect("not poisoned").fail_next_sync = false;
        }
        self.crash_stopped();
        for index in 0..self.nodes.len() {
            if self.down[index] {
                self.restart(index);
            }
        }
        *self.shared.healed_at.lock().expect("not poisoned") = Some(Instant::now());
        self.shared.trace("healed", json!({}));
    }
}

fn new_client(endpoints: &[String]) -> Client {
    let mut config = ClientConfig::new(endpoints.to_vec());
    config.secret = Some(SECRET.to_vec());
    config.timeout = Duration::from_secs(3);
    Client::new(config).expect("a valid client configuration")
}

/// Samples one node's status every 250 ms for the trace (and the nemesis's idea of the leader).
async fn sample_status(shared: Arc<Shared>, endpoints: Vec<String>, index: usize) {
    let client = new_client(&endpoints);
    loop {
        if let Ok(status) = client.status_of(&endpoints[index]).await {
            let ballot = (status.ballot_round, status.ballot_node);
            if status.role == Role::Leader as i32 {
                let mut leader = shared.leader.lock().expect("not poisoned");
                if leader.is_none_or(|(_, known)| ballot >= known) {
                    *leader = Some((index, ballot));
                }
            }
            shared.trace(
                "status",
                json!({"node": index + 1, "role": status.role().as_str_name(),
                       "ballot": [ballot.0, ballot.1], "leader": status.leader_id,
                       "commit_index": status.commit_index, "applied_index": status.applied_index,
                       "revision": status.revision, "keys": status.key_count,
                       "log_time_ms": status.log_time_ms}),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a client process remembers between operations.
struct ClientState {
    process: u64,
    clients: u64,
    counter: u64,
    lease: Option<u64>,
    /// Last revision seen per key, for compare-and-set.
    revisions: BTreeMap<String, u64>,
}

/// One operation: its request and the history fields of its invocation.
struct Planned {
    request: Request,
    invoke: Value,
}

fn plan(state: &mut ClientState) -> Planned {
    state.counter += 1;
    let mut rng = thread_rng();
    let shared_key = format!("k{}", rng.gen_range(0..SHARED_KEYS));
    let value = format!("p{}-{}", state.process, state.counter);
    let own_lease_key = format!("l{}", state.process);
    let get = |key: &str, consistency: Consistency, min_revision: u64| {
        let name = match consistency {
            Consistency::Stale => "stale",
            Consistency::AtLeastRevision => "session",
            _ => "linearizable",
        };
        Planned {
            request: Request::Get(GetRequest {
                key: key.as_bytes().to_vec(),
                consistency: consistency as i32,
                min_revision,
            }),
            invoke: json!({"f": "get", "key": key, "consistency": name}),
        }
    };
    match rng.gen_range(0..100u32) {
        0..=21 => {
            let ttl_ms = rng.gen_bool(0.25).then(|| rng.gen_range(300..3000u64));
            Planned {
                request: Request::Put(PutRequest {
                    key: shared_key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ttl_ms,
                    ..Default::default()
                }),
                invoke: json!({"f": "put", "key": shared_key, "value": value, "ttl_ms": ttl_ms}),
            }
        }
        22..=43 => get(&shared_key, Consistency::Linearizable, 0),
        44..=49 => get(&shared_key, Consistency::Stale, 0),
        50..=55 => get(&shared_key, Consistency::AtLeastRevision, 0),
        56..=60 => Planned {
            request: Request::Delete(DeleteRequest {
                key: shared_key.clone().into_bytes(),
                expected_revision: None,
            }),
            invoke: json!({"f": "delete", "key": shared_key}),
        },
        61..=70 => {
            let expected = state.revisions.get(&shared_key).copied().unwrap_or(0);
            Planned {
                request: Request::Put(PutRequest {
                    key: shared_key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    expected_revision: Some(expected),
                    ..Default::default()
                }),
                invoke: json!({"f": "cas", "key": shared_key, "value": value,
                               "expected_revision": expected}),
            }
        }
        71..=74 => {
            let ttl_ms = rng.gen_range(300..3000u64);
            Planned {
                request: Request::Expire(ExpireRequest {
                    key: shared_key.clone().into_bytes(),
                    ttl_ms,
                    condition: ExpireCondition::Always as i32,
                }),
                invoke: json!({"f": "expire", "key": shared_key, "ttl_ms": ttl_ms}),
            }
        }
        75..=78 => Planned {
            request: Request::Ttl(TtlRequest {
                key: shared_key.clone().into_bytes(),
                consistency: Consistency::Linearizable as i32,
                min_revision: 0,
            }),
            invoke: json!({"f": "ttl", "key": shared_key}),
        },
        79..=82 => {
            let other = format!("l{}", rng.gen_range(1..=state.clients));
            let consistency = if rng.gen_bool(0.5) {
                Consistency::Linearizable
            } else {
                Consistency::Stale
            };
            get(&other, consistency, 0)
        }
        _ => match state.lease {
            None => {
                let ttl_ms = rng.gen_range(500..2500u64);
                Planned {
                    request: Request::LeaseGrant(LeaseGrantRequest { ttl_ms }),
                    invoke: json!({"f": "lease_grant", "key": own_lease_key, "ttl_ms": ttl_ms}),
                }
            }
            Some(lease_id) => match rng.gen_range(0..10u32) {
                0..=3 => Planned {
                    request: Request::Put(PutRequest {
                        key: own_lease_key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        lease_id: Some(lease_id),
                        ..Default::default()
                    }),
                    invoke: json!({"f": "put", "key": own_lease_key, "value": value,
                                   "lease_id": lease_id}),
                },
                4..=6 => Planned {
                    request: Request::LeaseKeepAlive(LeaseKeepAliveRequest { lease_id }),
                    invoke: json!({"f": "lease_keepalive", "key": own_lease_key,
                                   "lease_id": lease_id}),
                },
                7 => Planned {
                    request: Request::LeaseRevoke(LeaseRevokeRequest { lease_id }),
                    invoke: json!({"f": "lease_revoke", "key": own_lease_key,
                                   "lease_id": lease_id}),
                },
                _ => get(&own_lease_key, Consistency::Linearizable, 0),
            },
        },
    }
}

/// The completion line of an operation, and what the client learns from it.
fn complete(
    state: &mut ClientState,
    planned: &Planned,
    result: Result<Response, ClientError>,
) -> Value {
    let f = planned.invoke["f"].as_str().unwrap_or_default().to_string();
    let key = planned.invoke["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let is_read = matches!(planned.request, Request::Get(_) | Request::Ttl(_));
    let response = match result {
        Ok(response) => response,
        Err(ClientError::NotFound(message)) => {
            // A lease that is gone: keep-alive and revoke answer that it was not found (a
            // definite answer); a put with it was refused.
            state.lease = None;
            return match f.as_str() {
                "lease_keepalive" | "lease_revoke" => {
                    json!({"type": "ok", "f": f, "succeeded": false})
                }
                _ => json!({"type": "fail", "f": f, "error": message}),
            };
        }
        Err(error @ (ClientError::InvalidArgument(_) | ClientError::Authentication(_))) => {
            return json!({"type": "fail", "f": f, "error": error.to_string()});
        }
        Err(error) if is_read => {
            return json!({"type": "fail", "f": f, "error": error.to_string()});
        }
        Err(error) => {
            if f == "lease_grant" {
                state.lease = None;
            }
            return json!({"type": "info", "f": f, "error": error.to_string()});
        }
    };
    let header = header_of(&response).cloned().unwrap_or_default();
    let mut line = json!({"type": "ok", "f": f, "revision": header.revision,
                          "log_time_ms": header.log_time_ms});
    match response {
        Response::Put(put) => {
            line["succeeded"] = json!(put.succeeded);
            if put.succeeded {
                state.revisions.insert(key, header.revision);
            } else if let Some(previous) = put.previous {
                state.revisions.insert(key, previous.mod_revision);
            } else {
                state.revisions.insert(key, 0);
            }
        }
        Response::Get(get) => match get.kv {
            Some(kv) => {
                line["value"] = json!(String::from_utf8_lossy(&kv.value));
                line["mod_revision"] = json!(kv.mod_revision);
                state.revisions.insert(key, kv.mod_revision);
            }
            None => {
                state.revisions.insert(key, 0);
            }
        },
        Response::Delete(delete) => line["succeeded"] = json!(delete.deleted),
        Response::Expire(expire) => line["succeeded"] = json!(expire.applied),
        Response::Ttl(ttl) => {
            let name = match ttl.state() {
                TtlState::NoKey => "no_key",
                TtlState::NoTtl => "no_ttl",
                TtlState::Remaining => "remaining",
            };
            line["ttl_state"] = json!(name);
            line["remaining_ms"] = json!(ttl.remaining_ms);
        }
        Response::LeaseGrant(grant) => {
            state.lease = Some(grant.lease_id);
            line["lease_id"] = json!(grant.lease_id);
        }
        Response::LeaseKeepAlive(_) => line["succeeded"] = json!(true),
        Response::LeaseRevoke(_) => {
            state.lease = None;
            line["succeeded"] = json!(true);
        }
        other => {
            return json!({"type": "info", "f": f, "error": format!("unexpected answer {other:?}")})
        }
    }
    line
}

async fn client_loop(
    process: u64,
    clients: u64,
    endpoints: Vec<String>,
    shared: Arc<Shared>,
    workload_end: Duration,
) {
    let client = new_client(&endpoints);
    let mut state = ClientState {
        process,
        clients,
        counter: 0,
        lease: None,
        revisions: BTreeMap::new(),
    };
    loop {
        let healed_at = *shared.healed_at.lock().expect("not poisoned");
        let served = shared
            .served
            .lock()
            .expect("not poisoned")
            .contains_key(&process);
        // Work until the end, and past it until served after the heal (within the bound).
        let past_end = shared.start.elapsed() >= workload_end;
        let past_bound = healed_at.is_some_and(|at| at.elapsed() >= SERVE_BOUND);
        if past_bound || (past_end && served) {
            break;
        }
        let mut planned = plan(&mut state);
        if let Request::Get(get) = &mut planned.request {
            if get.consistency == Consistency::AtLeastRevision as i32 {
                get.min_revision = client.revision_seen();
            }
        }
        // Served again: an operation completed after the heal.
        if perform(&client, &mut state, &planned, &shared).await {
            if let Some(at) = *shared.healed_at.lock().expect("not poisoned") {
                shared
                    .served
                    .lock()
                    .expect("not poisoned")
                    .entry(process)
                    .or_insert_with(|| at.elapsed());
            }
        }
    }
}

/// Runs one operation and records its invocation and completion; true if it completed.
async fn perform(
    client: &Client,
    state: &mut ClientState,
    planned: &Planned,
    shared: &Shared,
) -> bool {
    let mut invoke = planned.invoke.clone();
    invoke["process"] = json!(state.process);
    invoke["type"] = json!("invoke");
    shared.record(strip_nulls(invoke));
    let result = client.request(planned.request.clone()).await;
    let mut completion = complete(state, planned, result);
    let ok = completion["type"] == "ok";
    completion["process"] = json!(state.process);
    shared.record(completion);
    ok
}

fn strip_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, field| !field.is_null());
    }
    value
}

/// After the workload: one more process reads every key linearizably, so any acknowledged
/// write that the faults lost shows up in the history.
async fn verify(process: u64, clients: u64, endpoints: &[String], shared: &Shared) {
    let client = new_client(endpoints);
    let mut state = ClientState {
        process,
        clients,
        counter: 0,
        lease: None,
        revisions: BTreeMap::new(),
    };
    let keys = (0..SHARED_KEYS)
        .map(|k| format!("k{k}"))
        .chain((1..=clients).map(|p| format!("l{p}")));
    for key in keys {
        let planned = Planned {
            request: Request::Get(GetRequest {
                key: key.clone().into_bytes(),
                consistency: Consistency::Linearizable as i32,
                min_revision: 0,
            }),
            invoke: json!({"f": "get", "key": key}),
        };
        for _ in 0..5 {
            if perform(&client, &mut state, &planned, shared).await {
                break;
            }
        }
    }
}

/// Waits until every replica reports the same applied index and state digest.
async fn convergence(endpoints: &[String], shared: &Shared) -> Result<Duration, String> {
    let client = new_client(endpoints);
    let healed_at = shared
        .healed_at
        .lock()
        .expect("not poisoned")
        .expect("convergence is checked after the heal");
    let quiet_at = Instant::now();
    let mut last = Vec::new();
    while healed_at.elapsed() < CONVERGE_BOUND {
        let mut states = Vec::new();
        for endpoint in endpoints {
            let state = client
                .status_with(endpoint, true)
                .await
                .map(|status| (status.applied_index, status.state_hash));
            states.push(state.ok());
        }
        let first = states[0];
        if first.is_some() && states.iter().all(|state| *state == first) {
            let after = quiet_at.elapsed();
            shared.trace(
                "converged",
                json!({"applied_index": first.map(|s| s.0),
                       "after_heal_ms": healed_at.elapsed().as_millis() as u64,
                       "after_clients_stopped_ms": after.as_millis() as u64}),
            );
            return Ok(after);
        }
        last = states;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "replicas did not converge within {} s of the heal; last (applied index, state hash) per node: {last:?}",
        CONVERGE_BOUND.as_secs()
    ))
}
