//! The simulated world (built only with `--cfg madsim`): a seeded cluster of real paxkv server
//! nodes on distinct IPv6 addresses, simulated storage that survives crashes, per-node clock
//! offset and drift, a nemesis of partitions and crashes, and clients that record a history.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use paxkv_client::{Client, ClientConfig, ClientError, PutOptions, ReadConsistency};
use paxkv_core::{DurableState, LogWrite, NodeId, SnapshotWrite};
use paxkv_proto::auth::ClusterSecret;
use paxkv_proto::peer::HardState;
use paxkv_server::clock::NodeClock;
use paxkv_server::storage::{Storage, StorageError};
use paxkv_server::{start_node, NodeConfig};

const SECRET: &[u8] = b"simulated-cluster-secret-0123456789";
const CLIENT_PORT: u16 = 7000;
const PEER_PORT: u16 = 7100;

/// Storage whose synced state lives outside the node, so it survives the node's crash. A
/// persist is synced when it returns (the simulator runs it inline, so a crash cannot cut it).
#[derive(Clone, Default)]
pub struct SimStorage {
    disk: Arc<Mutex<DurableState>>,
    syncs: Arc<Mutex<u64>>,
}

impl Storage for SimStorage {
    fn load(&mut self) -> Result<DurableState, StorageError> {
        Ok(self.disk.lock().expect("not poisoned").clone())
    }

    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError> {
        self.disk
            .lock()
            .expect("not poisoned")
            .apply_persisted(hard_state, snapshot, log_write);
        *self.syncs.lock().expect("not poisoned") += 1;
        Ok(())
    }

    fn sync_count(&self) -> u64 {
        *self.syncs.lock().expect("not poisoned")
    }
}

/// What one seed runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: u64,
    pub sim_secs: u64,
    pub clients: u64,
}

fn node_ip(id: u64) -> IpAddr {
    format!("fd00::{id}").parse().expect("a valid IPv6 address")
}

fn history_line(process: u64, kind: &str, f: &str, rest: &str) -> String {
    format!(r#"{{"process":{process},"type":"{kind}","f":"{f}"{rest}}}"#)
}

/// Runs one seed; returns the recorded history (JSON lines).
pub fn run(config: RunConfig) -> Vec<String> {
    let runtime = Runtime::with_seed_and_config(config.seed, madsim::Config::default());
    runtime.block_on(simulate(config))
}

async fn simulate(config: RunConfig) -> Vec<String> {
    let handle = Handle::current();
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=config.nodes)
        .map(|id| (NodeId(id), SocketAddr::new(node_ip(id), PEER_PORT)))
        .collect();
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for id in 1..=config.nodes {
        let storage = SimStorage::default();
        let peers = peers.clone();
        let (offset_ms, drift_ppm, seed) = {
            let mut rng = thread_rng();
            (
                rng.gen_range(0..600_000u64),
                rng.gen_range(-10_000i64..=10_000),
                rng.gen::<u64>(),
            )
        };
        let node = handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_ip(id))
            .init(move || {
                let (storage, peers) = (storage.clone(), peers.clone());
                async move {
                    let config = NodeConfig {
                        id: NodeId(id),
                        client_addr: SocketAddr::new(node_ip(id), CLIENT_PORT),
                        peer_addr: SocketAddr::new(node_ip(id), PEER_PORT),
                        peers,
                        data_dir: format!("sim/node-{id}").into(),
                        secret: ClusterSecret::new(SECRET).expect("a long enough secret"),
                        allow_unauthenticated_clients: false,
                        election_timeout_ms: 500,
                        heartbeat_interval_ms: 50,
                        snapshot_entries_threshold: 200,
                        seed: Some(seed),
                    };
                    let (_stop, shutdown) = tokio::sync::watch::channel(false);
                    let clock = NodeClock::skewed(offset_ms, drift_ppm);
                    let running = start_node(config, Box::new(storage), clock, shutdown)
                        .await
                        .expect("a simulated node starts");
                    let _ = running.node.await;
                }
            })
            .build();
        nodes.push(node);
    }
    let history = Arc::new(Mutex::new(Vec::new()));
    let endpoints: Vec<String> = (1..=config.nodes)
        .map(|id| SocketAddr::new(node_ip(id), CLIENT_PORT).to_string())
        .collect();
    let client_node = handle
        .create_node()
        .name("clients")
        .ip("fd00::100".parse().expect("ip"))
        .build();
    let workload = {
        let (history, endpoints, sim_secs, clients) = (
            history.clone(),
            endpoints.clone(),
            config.sim_secs,
            config.clients,
        );
        client_node.spawn(async move {
            let mut tasks = Vec::new();
            for process in 1..=clients {
                tasks.push(tokio::spawn(client_loop(
                    process,
                    endpoints.clone(),
                    history.clone(),
                    sim_secs,
                )));
            }
            for task in tasks {
                let _ = task.await;
            }
        })
    };
    nemesis(&handle, &nodes, config.sim_secs).await;
    let _ = workload.await;
    let lines = history.lock().expect("not poisoned").clone();
    lines
}

/// Partitions and crashes during the fault phase, then everything healed.
async fn nemesis(handle: &Handle, nodes: &[NodeHandle], sim_secs: u64) {
    let net = madsim::net::NetSim::current();
    let fault_phase = Duration::from_secs(sim_secs * 2 / 3);
    let start = tokio::time::Instant::now();
    let mut down: Vec<bool> = vec![false; nodes.len()];
    while start.elapsed() < fault_phase {
        let (choice, a, b, pause_ms) = {
            let mut rng = thread_rng();
            (
                rng.gen_range(0..6u32),
                rng.gen_range(0..nodes.len()),
                rng.gen_range(0..nodes.len()),
                rng.gen_range(100..1500u64),
            )
        };
        match choice {
            0 if a != b => net.clog_link(nodes[a].id(), nodes[b].id()),
            1 if a != b => net.unclog_link(nodes[a].id(), nodes[b].id()),
            // A split between servers (clients still reach every node, so a deposed leader
            // would be asked, and caught, if it answered from stale state).
            2 => {
                let mask = thread_rng().gen_range(1..(1u32 << nodes.len()) - 1);
                for (i, x) in nodes.iter().enumerate() {
                    for (j, y) in nodes.iter().enumerate() {
                        if (mask >> i) & 1 != (mask >> j) & 1 {
                            net.clog_link(x.id(), y.id());
                        }
                    }
                }
            }
            3 => {
                for x in nodes {
                    for y in nodes {
                        net.unclog_link(x.id(), y.id());
                    }
                }
            }
            4 if !down[a]
                && down.iter().filter(|d| **d).count() + 1 < nodes.len().div_ceil(2) + 1 =>
            {
                handle.kill(nodes[a].id());
                down[a] = true;
            }
            5 if down[a] => {
                handle.restart(nodes[a].id());
                down[a] = false;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    // Heal: every link back, every node up; the clients keep working in the last third.
    for (index, node) in nodes.iter().enumerate() {
        for other in nodes {
            net.unclog_link(node.id(), other.id());
        }
        if down[index] {
            handle.restart(node.id());
        }
    }
}

async fn client_loop(
    process: u64,
    endpoints: Vec<String>,
    history: Arc<Mutex<Vec<String>>>,
    sim_secs: u64,
) {
    let mut config = ClientConfig::new(endpoints);
    config.secret = Some(SECRET.to_vec());
    config.timeout = Duration::from_secs(3);
    let client = Client::new(config).expect("a valid client configuration");
    let start = tokio::time::Instant::now();
    let mut counter = 0u64;
    let record = |line: String| history.lock().expect("not poisoned").push(line);
    while start.elapsed() < Duration::from_secs(sim_secs) {
        counter += 1;
        let (key, choice) = {
            let mut rng = thread_rng();
            (
                format!("k{}", rng.gen_range(0..3u32)),
                rng.gen_range(0..3u32),
            )
        };
        if choice == 0 {
            record(history_line(
                process,
                "invoke",
                "get",
                &format!(r#","key":"{key}""#),
            ));
            match client
                .get(key.as_bytes(), ReadConsistency::Linearizable)
                .await
            {
                Ok(read) => {
                    let value = read.kv.map_or("null".to_string(), |kv| {
                        format!("\"{}\"", String::from_utf8_lossy(&kv.value))
                    });
                    record(history_line(
                        process,
                        "ok",
                        "get",
                        &format!(r#","value":{value}"#),
                    ));
                }
                Err(_) => record(history_line(process, "fail", "get", "")),
            }
        } else {
            let value = format!("p{process}-{counter}");
            record(history_line(
                process,
                "invoke",
                "put",
                &format!(r#","key":"{key}","value":"{value}""#),
            ));
            match client
                .put(key.as_bytes(), value.as_bytes(), PutOptions::default())
                .await
            {
                Ok(put) => record(history_line(
                    process,
                    "ok",
                    "put",
                    &format!(r#","revision":{}"#, put.revision),
                )),
                Err(ClientError::InvalidArgument(_)) => {
                    record(history_line(process, "fail", "put", ""))
                }
                Err(_) => record(history_line(process, "info", "put", "")),
            }
        }
    }
}
