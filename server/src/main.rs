//! kv-server: runs one paxkv node, or a local cluster of them.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use paxkv_core::NodeId;
use paxkv_server::auth::ClusterSecret;
use paxkv_server::clock::NodeClock;
use paxkv_server::local_cluster::LocalCluster;
use paxkv_server::resp::RespConfig;
use paxkv_server::storage::DiskStorage;
use paxkv_server::{
    parse_peers, shutdown_signal, start_node, NodeConfig, RespPort, ServerError, Stopped,
};

#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One node of a paxkv cluster (a replicated key-value store kept consistent by Multi-Paxos).
///
/// Example (node 1 of 3, all on this machine):
///   kv-server --id 1 --client-addr [::1]:7001 --peer-addr [::1]:7101
///     --peers 1=[::1]:7101,2=[::1]:7102,3=[::1]:7103 --data-dir data/1
///     --cluster-secret-file secret
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Commands>,
    /// This node's id: a positive integer listed in --peers (not needed with --join: the
    /// cluster picks it).
    #[arg(long, env = "PAXKV_ID")]
    id: Option<u64>,
    /// Exact address clients connect to, such as [::1]:7001 or 127.0.0.1:7001.
    #[arg(long, env = "PAXKV_CLIENT_ADDR")]
    client_addr: Option<SocketAddr>,
    /// Exact address peers connect to.
    #[arg(long, env = "PAXKV_PEER_ADDR")]
    peer_addr: Option<SocketAddr>,
    /// Every member's peer address, this node included: 1=[::1]:7101,2=[::1]:7102,... (for
    /// the nodes a new cluster starts with; a node added later uses --join).
    #[arg(long, env = "PAXKV_PEERS", conflicts_with = "join")]
    peers: Option<String>,
    /// Join a running cluster through these client endpoints ([::1]:7001,[::1]:7002): with an
    /// empty --data-dir the node asks to be added as a learner, catches up, and is promoted to
    /// voter once close to the leader; restarted, it goes on from its data directory.
    #[arg(long, env = "PAXKV_JOIN")]
    join: Option<String>,
    /// With --join: stay a learner (receives the log, never votes) until promoted by hand
    /// (kvctl member promote ID).
    #[arg(long, requires = "join")]
    no_promote: bool,
    /// Directory for the write-ahead log and snapshots (created if missing).
    #[arg(long, env = "PAXKV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Threads that serve clients, peers and the node loop; disk work has threads of its own.
    /// Default: half the machine's cores, at least 1 (every request passes through the one
    /// node loop, and each hand-off between threads costs a wake-up).
    #[arg(long, env = "PAXKV_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// File holding the shared cluster secret (or set PAXKV_CLUSTER_SECRET).
    #[arg(long, env = "PAXKV_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Let clients in without the cluster secret (peers always need it).
    #[arg(long)]
    allow_unauthenticated_clients: bool,
    /// Election timeout in milliseconds: a follower that hears nothing from the leader for
    /// 1 to 2 times this long takes over, and a leader's read lease lasts a bit less. Raise it
    /// (with the heartbeat) on networks or disks that can stall for longer.
    #[arg(long, default_value_t = paxkv_core::ELECTION_TIMEOUT_MS_DEFAULT)]
    election_timeout_ms: u64,
    /// Heartbeat interval in milliseconds (at most half the election timeout).
    #[arg(long, default_value_t = paxkv_core::HEARTBEAT_INTERVAL_MS_DEFAULT)]
    heartbeat_interval_ms: u64,
    /// Snapshot the state and trim the log after this many applied entries.
    #[arg(long, default_value_t = paxkv_core::SNAPSHOT_ENTRIES_THRESHOLD_DEFAULT)]
    snapshot_entries: u64,
    /// Applied entries kept in memory for peers a little behind; a peer further behind gets a
    /// snapshot. Older entries stay on disk until a snapshot covers them.
    #[arg(long, default_value_t = paxkv_core::LOG_ENTRIES_KEPT_DEFAULT)]
    log_entries_kept: u64,
    /// Committed entries applied per turn of the node loop at most: a long run of them (a
    /// restart, a follower catching up) is applied in such slices, with peer messages and
    /// requests taken between them.
    #[arg(long, default_value_t = paxkv_core::APPLY_ENTRIES_PER_READY_MAX)]
    apply_entries_per_turn: u64,
    /// Serve the Redis protocol (RESP2 and RESP3) on this exact address, such as [::1]:6379:
    /// any Redis client can then use the cluster through any node. Off unless set.
    #[arg(long, env = "PAXKV_RESP_ADDR")]
    resp_addr: Option<SocketAddr>,
    /// File holding the password Redis clients must give with AUTH (the user is "default").
    #[arg(long, env = "PAXKV_RESP_PASSWORD_FILE")]
    resp_password_file: Option<PathBuf>,
    /// Let Redis clients in without a password.
    #[arg(long, conflicts_with = "resp_password_file")]
    resp_allow_unauthenticated: bool,
    /// Allow FLUSHDB and FLUSHALL on the Redis port (they delete every key of the cluster).
    #[arg(long)]
    resp_allow_flush: bool,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Start a local cluster of real kv-server processes on [::1] and stop it on Ctrl-C (or,
    /// with add-node / remove-node, change the members of one that runs).
    LocalCluster {
        #[command(subcommand)]
        action: Option<LocalAction>,
        /// Number of nodes (3 or 5 make sense).
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Directory for every node's data, logs and the cluster secret.
        #[arg(long, default_value = "paxkv-local", global = true)]
        dir: PathBuf,
        /// First client port; node i listens for clients on BASE+i-1 and for peers on BASE+100+i-1.
        #[arg(long, default_value_t = 7001, global = true)]
        base_port: u16,
    },
}

#[derive(Subcommand, Debug)]
enum LocalAction {
    /// Start one more node on the next free port that joins the running local cluster
    /// (kv-server --join), wait until it is a voter, and leave it running (the running
    /// local-cluster stops it on Ctrl-C).
    AddNode,
    /// Remove member ID from the running local cluster; the node stops by itself.
    RemoveNode { id: u64 },
}

fn read_secret(file: Option<&PathBuf>) -> anyhow::Result<ClusterSecret> {
    let raw = match (file, std::env::var("PAXKV_CLUSTER_SECRET")) {
        (Some(file), _) => std::fs::read(file)
            .with_context(|| format!("cannot read the cluster secret file {}", file.display()))?,
        (None, Ok(secret)) => secret.into_bytes(),
        (None, Err(_)) => {
            bail!("no cluster secret: pass --cluster-secret-file FILE or set PAXKV_CLUSTER_SECRET")
        }
    };
    Ok(ClusterSecret::new(&raw)?)
}

fn node_config(args: Args) -> anyhow::Result<NodeConfig> {
    let missing = |flag: &str| anyhow::anyhow!("missing {flag} (see kv-server --help)");
    let resp = resp_port(&args)?;
    let join = args.join.as_deref().map(paxkv_client::parse_endpoints);
    let (id, peers) = match &join {
        // The cluster picks the id of a new node (or the data directory has it).
        Some(_) => (args.id.unwrap_or(0), Default::default()),
        None => {
            let id = args.id.ok_or_else(|| missing("--id (or --join)"))?;
            let peers = parse_peers(&args.peers.ok_or_else(|| missing("--peers (or --join)"))?)
                .map_err(anyhow::Error::msg)?;
            if !peers.contains_key(&NodeId(id)) {
                bail!("--id {id} is not one of the nodes in --peers");
            }
            (id, peers)
        }
    };
    Ok(NodeConfig {
        join,
        id: NodeId(id),
        client_addr: args.client_addr.ok_or_else(|| missing("--client-addr"))?,
        peer_addr: args.peer_addr.ok_or_else(|| missing("--peer-addr"))?,
        peers,
        data_dir: args.data_dir.ok_or_else(|| missing("--data-dir"))?,
        secret: read_secret(args.cluster_secret_file.as_ref())?,
        allow_unauthenticated_clients: args.allow_unauthenticated_clients,
        election_timeout_ms: args.election_timeout_ms,
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        snapshot_entries_threshold: args.snapshot_entries,
        log_entries_kept: args.log_entries_kept,
        snapshot_chunk_bytes: paxkv_core::SNAPSHOT_CHUNK_BYTES,
        snapshot_step_bytes: paxkv_core::SNAPSHOT_STEP_BYTES_DEFAULT,
        snapshot_write_backlog_max: paxkv_core::SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT,
        apply_entries_per_ready: args.apply_entries_per_turn,
        sessions_max: paxkv_core::kv::SESSIONS_MAX,
        seed: None,
        resp,
    })
}

/// The Redis port's settings: it needs a password file or an explicit choice to go without.
fn resp_port(args: &Args) -> anyhow::Result<Option<RespPort>> {
    let Some(address) = args.resp_addr else {
        return Ok(None);
    };
    let password = match (&args.resp_password_file, args.resp_allow_unauthenticated) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).with_context(|| {
                format!("cannot read the RESP password file {}", file.display())
            })?;
            let password = text.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                bail!("the RESP password file {} is empty", file.display());
            }
            Some(password)
        }
        (None, true) => None,
        (None, false) => bail!(
            "--resp-addr needs --resp-password-file FILE (clients AUTH with its password) or \
             --resp-allow-unauthenticated"
        ),
    };
    Ok(Some(RespPort {
        address,
        config: RespConfig {
            password,
            allow_flush: args.resp_allow_flush,
        },
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = match args.threads {
        Some(threads) => usize::from(threads),
        None => std::thread::available_parallelism().map_or(1, |cores| cores.get().div_ceil(2)),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Commands::LocalCluster {
        action,
        nodes,
        dir,
        base_port,
    }) = args.command
    {
        if nodes == 0 || nodes > 9 {
            bail!("--nodes must be between 1 and 9");
        }
        let cluster = LocalCluster {
            nodes,
            dir,
            base_port,
        };
        match action {
            None => paxkv_server::local_cluster::run(cluster).await?,
            Some(LocalAction::AddNode) => paxkv_server::local_cluster::add_node(&cluster).await?,
            Some(LocalAction::RemoveNode { id }) => {
                paxkv_server::local_cluster::remove_node(&cluster, id).await?
            }
        }
        return Ok(());
    }
    let promote = !args.no_promote;
    let config = node_config(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (stop, shutdown) = paxkv_server::shutdown::channel();
    let storage = Box::new(DiskStorage::open(&config.data_dir)?);
    let running =
        match start_node(config.clone(), storage, NodeClock::real(), shutdown.clone()).await {
            Ok(running) => running,
            Err(error @ ServerError::Removed(_)) => {
                eprintln!("error: {error}");
                std::process::exit(EXIT_REMOVED);
            }
            Err(error @ ServerError::Refused(_)) => {
                eprintln!("error: {error}");
                std::process::exit(EXIT_REFUSED);
            }
            Err(error) => return Err(error.into()),
        };
    let span = tracing::info_span!("node", id = running.id.0);
    let _guard = span.enter();
    tracing::info!(client = %running.client_addr, peer = %config.peer_addr, "serving");
    if let (Some(endpoints), true) = (config.join.clone(), promote) {
        let mut endpoints = endpoints;
        endpoints.push(running.client_addr.to_string());
        let task =
            paxkv_server::join::promote_when_caught_up(endpoints, running.id, config, shutdown);
        tokio::spawn(tracing::Instrument::instrument(task, span.clone()));
    }
    let mut node = running.node;
    tokio::select! {
        biased;
        _ = shutdown_signal() => {
            tracing::info!("stopping");
            stop.stop();
            node.await.context("the node task failed")??;
        }
        result = &mut node => {
            match result.context("the node task failed")?? {
                Stopped::Removed { .. } => std::process::exit(EXIT_REMOVED),
                Stopped::Refused { reason } => {
                    eprintln!("error: {reason}");
                    std::process::exit(EXIT_REFUSED);
                }
                Stopped::Shutdown => bail!("the node stopped unexpectedly"),
            }
        }
    }
    Ok(())
}

/// The exit code of a node that was removed from its cluster (it must not be restarted as is).
const EXIT_REMOVED: i32 = 3;
/// The exit code of a node refused by its cluster: it came back with a wiped data directory
/// under an id that is still a member.
const EXIT_REFUSED: i32 = 4;
