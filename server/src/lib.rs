//! paxkv-server: one node of a paxkv cluster — the node loop around a `paxkv_core::Replica`,
//! its durable storage, and the peer and client transports.

pub mod bootstrap;
pub mod client_port;
pub mod clock;
pub mod join;
pub mod local_cluster;
mod net;
pub mod node;
pub mod peer;
pub mod resp;
pub mod router;
pub mod shutdown;
pub mod storage;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use paxkv_core::{NodeId, Replica, ReplicaConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::clock::NodeClock;
pub use crate::node::Stopped;
use crate::node::{Node, NodeMetrics, INPUT_QUEUE_MAX};
use crate::storage::{Storage, StorageError};
pub use paxkv_proto::auth;
use paxkv_proto::auth::ClusterSecret;

/// Everything one node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    /// Every member's peer address, including this node's.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Where the node's storage lives (for messages; storage itself is passed to `start_node`).
    pub data_dir: PathBuf,
    pub secret: ClusterSecret,
    pub allow_unauthenticated_clients: bool,
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Snapshot and trim the log after this many applied entries.
    pub snapshot_entries_threshold: u64,
    /// Applied entries kept in memory for peers a little behind
    /// (`paxkv_core::LOG_ENTRIES_KEPT_DEFAULT` unless configured).
    pub log_entries_kept: u64,
    /// Bytes per snapshot chunk (`paxkv_core::SNAPSHOT_CHUNK_BYTES` unless testing).
    pub snapshot_chunk_bytes: usize,
    /// Snapshot bytes encoded per turn of the node loop
    /// (`paxkv_core::SNAPSHOT_STEP_BYTES_DEFAULT` unless testing).
    pub snapshot_step_bytes: usize,
    /// Snapshot bytes waiting for the disk at which encoding pauses
    /// (`paxkv_core::SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT` unless testing).
    pub snapshot_write_backlog_max: usize,
    /// Committed entries applied per turn at most (`paxkv_core::APPLY_ENTRIES_PER_READY_MAX`
    /// unless testing).
    pub apply_entries_per_ready: u64,
    /// Client sessions kept (`paxkv_core::kv::SESSIONS_MAX` unless testing); the same on every
    /// node of a cluster.
    pub sessions_max: usize,
    /// Seed of the replica's random choices; None draws one from the operating system (a
    /// simulator passes its own, so a run replays exactly).
    pub seed: Option<u64>,
    /// Join a running cluster through these client endpoints instead of starting one from
    /// `peers`: a node with an empty data directory asks to be added as a learner (and learns
    /// its id); one that joined before restarts from what it kept.
    pub join: Option<Vec<String>>,
    /// The Redis protocol port, if the node serves one (`resp`).
    pub resp: Option<RespPort>,
}

/// Where the Redis protocol port listens and how it is set up.
#[derive(Debug, Clone)]
pub struct RespPort {
    pub address: SocketAddr,
    pub config: resp::RespConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Storage loaded, but what it holds cannot start a replica (a snapshot whose state does
    /// not decode, a node missing from its own persisted configuration).
    #[error(
        "{data_dir}: the persisted state is inconsistent ({reason}); refusing to start. Restore \
         this node's data directory from a backup, or remove it so the node catches up from its \
         peers"
    )]
    CorruptState { data_dir: PathBuf, reason: String },
    /// The node was removed from the cluster: it must not start again under its id.
    #[error("{0}")]
    Removed(String),
    /// The cluster refused this node for good: it holds no data under the id of a member
    /// (its data directory was wiped).
    #[error("{0}")]
    Refused(String),
    /// Joining a cluster failed (no node answered, or the cluster refused the new node).
    #[error("cannot join the cluster: {0}")]
    Join(String),
}

impl ServerError {
    /// Why `Replica::new` refused what was recovered from `data_dir`.
    fn from_replica(error: paxkv_core::Error, data_dir: &std::path::Path) -> ServerError {
        match error {
            paxkv_core::Error::InvalidConfig(_) => ServerError::Config(error.to_string()),
            paxkv_core::Error::CorruptState(reason) => ServerError::CorruptState {
                data_dir: data_dir.to_path_buf(),
                reason,
            },
            paxkv_core::Error::Removed { .. } => ServerError::Removed(error.to_string()),
        }
    }
}

/// A started node: its metrics, and the task that ends when the node stops.
pub struct RunningNode {
    /// This node's id (picked by the cluster for a node that joined).
    pub id: NodeId,
    pub metrics: Arc<NodeMetrics>,
    pub client_addr: SocketAddr,
    pub node: tokio::task::JoinHandle<Result<Stopped, StorageError>>,
}

/// Loads `storage`, binds both listeners and starts the node with time from `clock`. Stops
/// when `shutdown` turns true.
pub async fn start_node(
    mut config: NodeConfig,
    mut storage: Box<dyn Storage>,
    clock: NodeClock,
    shutdown: crate::shutdown::Shutdown,
) -> Result<RunningNode, ServerError> {
    let loading = tokio::time::Instant::now();
    let durable = run_blocking(move || storage.load().map(|state| (storage, state))).await;
    let (mut storage, durable) = durable?;
    tracing::info!(
        ms = loading.elapsed().as_millis() as u64,
        snapshot_index = durable.snapshot.as_ref().map_or(0, |(meta, _)| meta.index),
        snapshot_bytes = durable.snapshot.as_ref().map_or(0, |(_, data)| data.len()),
        log_entries = durable.entries.len(),
        "read the data directory"
    );
    let first_start = durable.hard_state.incarnation == 0;
    let kept_id = NodeId(durable.hard_state.node_id);
    let joining = config.join.is_some();
    let mut addresses = Vec::new();
    let members: Vec<NodeId> = match &config.join {
        // Joined before: the id and the configuration are in the data directory.
        Some(_) if kept_id.0 != 0 => {
            config.id = kept_id;
            Vec::new()
        }
        Some(endpoints) => {
            let joined = join::join(endpoints, &config).await?;
            config.id = joined.id;
            for (id, address) in joined.peers {
                config.peers.entry(id).or_insert(address);
            }
            addresses = joined.addresses;
            joined.first_voters
        }
        None => {
            if config.peers.get(&config.id) != Some(&config.peer_addr) {
                return Err(ServerError::Config(format!(
                    "--peers must list this node ({}) with its --peer-addr {}",
                    config.id.0, config.peer_addr
                )));
            }
            config.peers.keys().copied().collect()
        }
    };
    let first_members = members.clone();
    let mut replica_config =
        ReplicaConfig::new(config.id, members, config.seed.unwrap_or_else(seed));
    replica_config.joining = joining;
    replica_config.addresses = addresses;
    replica_config.election_timeout_ms = config.election_timeout_ms;
    replica_config.heartbeat_interval_ms = config.heartbeat_interval_ms;
    replica_config.snapshot_entries_threshold = config.snapshot_entries_threshold;
    replica_config.log_entries_kept = config.log_entries_kept;
    replica_config.snapshot_chunk_bytes = config.snapshot_chunk_bytes;
    replica_config.snapshot_step_bytes = config.snapshot_step_bytes;
    replica_config.snapshot_write_backlog_max = config.snapshot_write_backlog_max;
    replica_config.apply_entries_per_ready = config.apply_entries_per_ready;
    replica_config.sessions_max = config.sessions_max;
    let rebuilding = tokio::time::Instant::now();
    let decoded = storage.take_decoded_snapshot();
    let mut replica = Replica::with_decoded_snapshot(replica_config, durable, decoded, clock.now())
        .map_err(|error| ServerError::from_replica(error, &config.data_dir))?;
    tracing::info!(
        ms = rebuilding.elapsed().as_millis() as u64,
        keys = replica.kv().key_count(),
        "rebuilt the state from the snapshot"
    );
    if first_start {
        // Peers remember the incarnation they are first shown; one lost in a crash before the
        // node's first sync would have it refused as wiped when it comes back.
        let (back, written) = node::persist_hard_state(storage, replica.hard_state()).await;
        storage = back;
        written?;
    }
    let bind = |address: SocketAddr| async move {
        TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind { address, source })
    };
    let peer_listener = bind(config.peer_addr).await?;
    let client_listener = bind(config.client_addr).await?;
    let resp_listener = match &config.resp {
        Some(resp) => Some(bind(resp.address).await?),
        None => None,
    };
    let client_addr = client_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            address: config.client_addr,
            source,
        })?;
    let (inputs, receiver) = mpsc::channel(INPUT_QUEUE_MAX);
    let directory = peer::start_outbound(
        tracing::info_span!("node", id = config.id.0),
        config.id,
        replica.incarnation(),
        &replica
            .peer_incarnations()
            .iter()
            .map(|(id, incarnation)| (NodeId(*id), *incarnation))
            .collect(),
        replica.holds_data(),
        client_addr.to_string(),
        config.peer_addr.to_string(),
        &config.peers,
        config.secret.clone(),
        shutdown.clone(),
    );
    let span = tracing::info_span!("node", id = config.id.0);
    tokio::spawn(
        peer::serve_inbound(
            peer_listener,
            directory.clone(),
            config.secret.clone(),
            inputs.clone(),
            shutdown.clone(),
        )
        .instrument(span.clone()),
    );
    if replica.needs_bootstrap_check() {
        bootstrap::confirm_fresh_cluster(config.id, &first_members, &directory).await?;
        replica.mark_bootstrapped();
        let (back, written) = node::persist_hard_state(storage, replica.hard_state()).await;
        storage = back;
        written?;
    }
    let feed = watch::Feed::new(replica.kv().revision());
    let leader_board = Arc::new(router::LeaderBoard::default());
    let router = router::Router::new(inputs.clone(), leader_board.clone(), config.secret.clone());
    if let (Some(listener), Some(resp)) = (resp_listener, &config.resp) {
        tokio::spawn(
            resp::serve(
                listener,
                resp.config.clone(),
                router.clone(),
                feed.clone(),
                config.id.0,
                shutdown.clone(),
            )
            .instrument(span.clone()),
        );
    }
    let port = client_port::ClientPort {
        router,
        inputs,
        secret: (!config.allow_unauthenticated_clients).then(|| config.secret.clone()),
        feed: feed.clone(),
    };
    tokio::spawn(
        client_port::serve(client_listener, port, shutdown.clone()).instrument(span.clone()),
    );
    let metrics = Arc::new(NodeMetrics::default());
    let node = Node::new(
        replica,
        storage,
        clock,
        directory,
        metrics.clone(),
        feed,
        leader_board,
    );
    let node = tokio::spawn(node.run(receiver, shutdown).instrument(span));
    Ok(RunningNode {
        id: config.id,
        metrics,
        client_addr,
        node,
    })
}

/// Runs blocking disk work off the async threads (inline under the simulator, whose disk is
/// memory and which forbids blocking threads).
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    #[cfg(madsim)]
    {
        work()
    }
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(work)
            .await
            .expect("blocking storage work does not panic")
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(all(unix, not(madsim)))]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler can be installed");
        tokio::select! {
            biased;
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(all(unix, not(madsim))))]
    {
        let _ = interrupt.await;
    }
}

/// Seed of the replica's randomised election timeouts: different on every start.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the operating system provides randomness");
    u64::from_le_bytes(bytes)
}

/// Parses `1=[::1]:7101,2=127.0.0.1:7102` into member ids and peer addresses.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut peers = BTreeMap::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}` is not ID=ADDRESS (for example 1=[::1]:7101)"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}` in `{item}` is not a node id (a positive integer)"))?;
        if id == 0 {
            return Err(format!("node id 0 in `{item}` is reserved; ids start at 1"));
        }
        let address: SocketAddr = address.trim().parse().map_err(|_| {
            format!(
                "`{address}` in `{item}` is not an address such as [::1]:7101 or 127.0.0.1:7101"
            )
        })?;
        if peers.insert(NodeId(id), address).is_some() {
            return Err(format!("node {id} is listed twice in --peers"));
        }
    }
    if peers.is_empty() {
        return Err("--peers lists no node".into());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paxkv_core::{DurableState, LogWrite, SnapshotWrite};
    use paxkv_proto::peer::{HardState, SnapshotMeta};

    /// Storage that hands back fixed recovered state and keeps nothing.
    struct Recovered(DurableState);

    impl Storage for Recovered {
        fn load(&mut self) -> Result<DurableState, StorageError> {
            Ok(std::mem::take(&mut self.0))
        }
        fn write(
            &mut self,
            _: Option<&HardState>,
            _: Option<&SnapshotWrite>,
            _: Option<&LogWrite>,
        ) -> Result<(), StorageError> {
            Ok(())
        }
        fn write_snapshot_part(&mut self, _: paxkv_core::SnapshotPart) -> Result<(), StorageError> {
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StorageError> {
            Ok(())
        }
        fn sync_count(&self) -> u64 {
            0
        }
    }

    /// Regression: a snapshot whose state does not decode was reported as "invalid
    /// configuration", sending the operator to check flags instead of the data directory.
    #[tokio::test]
    async fn a_snapshot_that_does_not_decode_is_corrupt_state_naming_the_data_directory() {
        let address: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = NodeConfig {
            id: NodeId(1),
            client_addr: address,
            peer_addr: address,
            peers: BTreeMap::from([(NodeId(1), address)]),
            data_dir: PathBuf::from("data/node-1"),
            secret: ClusterSecret::new(&[7; 32]).unwrap(),
            allow_unauthenticated_clients: false,
            election_timeout_ms: 300,
            heartbeat_interval_ms: 50,
            snapshot_entries_threshold: 10_000,
            log_entries_kept: paxkv_core::LOG_ENTRIES_KEPT_DEFAULT,
            snapshot_chunk_bytes: paxkv_core::SNAPSHOT_CHUNK_BYTES,
            snapshot_step_bytes: paxkv_core::SNAPSHOT_STEP_BYTES_DEFAULT,
            snapshot_write_backlog_max: paxkv_core::SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT,
            apply_entries_per_ready: paxkv_core::APPLY_ENTRIES_PER_READY_MAX,
            sessions_max: paxkv_core::kv::SESSIONS_MAX,
            seed: Some(1),
            join: None,
            resp: None,
        };
        let durable = DurableState {
            snapshot: Some((SnapshotMeta::default(), vec![0xff; 8])),
            ..DurableState::default()
        };
        let (_stop, shutdown) = crate::shutdown::channel();
        let started = start_node(
            config,
            Box::new(Recovered(durable)),
            NodeClock::real(),
            shutdown,
        )
        .await;
        let Err(error) = started else {
            panic!("a node started from a snapshot that does not decode");
        };
        let message = error.to_string();
        assert!(
            matches!(&error, ServerError::CorruptState { data_dir, .. } if data_dir.ends_with("node-1")),
            "{error:?}"
        );
        assert!(message.contains("snapshot does not decode"), "{message}");
        assert!(message.contains("data/node-1"), "{message}");
        assert!(!message.contains("invalid configuration"), "{message}");
    }

    #[test]
    fn peers_parse_with_ipv6_and_ipv4_and_bad_input_is_explained() {
        let peers = parse_peers("1=[::1]:7101, 2=127.0.0.1:7102").unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&NodeId(1)].to_string(), "[::1]:7101");
        for (bad, expected) in [
            ("1:[::1]:7101", "is not ID=ADDRESS"),
            ("x=[::1]:1", "is not a node id"),
            ("0=[::1]:1", "reserved"),
            ("1=::1:7101", "is not an address"),
            ("1=[::1]:1,1=[::1]:2", "listed twice"),
            ("", "lists no node"),
        ] {
            let error = parse_peers(bad).unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }
}
