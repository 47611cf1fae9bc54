//! kvctl itself, run as a user runs it: every subcommand against a real 3-node cluster (its
//! nodes run in this test's process, on loopback), with the exit codes and the JSON shapes
//! scripts rely on.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use paxkv_core::NodeId;
use paxkv_server::auth::ClusterSecret;
use paxkv_server::clock::NodeClock;
use paxkv_server::shutdown::Trigger;
use paxkv_server::storage::DiskStorage;
use paxkv_server::{start_node, NodeConfig};

const SECRET: &str = "kvctl-test-secret-0123456789abcdef";

struct Cluster {
    dir: tempfile::TempDir,
    endpoints: Vec<String>,
    stops: Vec<Trigger>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for stop in &self.stops {
            stop.stop();
        }
    }
}

fn free_address() -> SocketAddr {
    TcpListener::bind("[::1]:0").unwrap().local_addr().unwrap()
}

/// Three nodes started together (a fresh cluster starts once all three are up).
async fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let ids = [1, 2, 3].map(NodeId);
    let peers: BTreeMap<NodeId, SocketAddr> = ids.iter().map(|id| (*id, free_address())).collect();
    let clients: Vec<SocketAddr> = ids.iter().map(|_| free_address()).collect();
    let mut starting = Vec::new();
    let mut stops = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let data_dir = dir.path().join(format!("node-{}", id.0));
        let config = NodeConfig {
            id: *id,
            client_addr: clients[index],
            peer_addr: peers[id],
            peers: peers.clone(),
            data_dir: data_dir.clone(),
            secret: ClusterSecret::new(SECRET.as_bytes()).unwrap(),
            allow_unauthenticated_clients: false,
            election_timeout_ms: 300,
            heartbeat_interval_ms: 50,
            snapshot_entries_threshold: 10_000,
            snapshot_chunk_bytes: paxkv_core::SNAPSHOT_CHUNK_BYTES,
            sessions_max: paxkv_core::kv::SESSIONS_MAX,
            seed: None,
            join: None,
        };
        let storage = Box::new(DiskStorage::open(&data_dir).unwrap());
        let (stop, shutdown) = paxkv_server::shutdown::channel();
        stops.push(stop);
        starting.push(tokio::spawn(start_node(
            config,
            storage,
            NodeClock::real(),
            shutdown,
        )));
    }
    for started in starting {
        started.await.unwrap().unwrap();
    }
    Cluster {
        endpoints: clients.iter().map(ToString::to_string).collect(),
        dir,
        stops,
    }
}

/// What a kvctl run printed and its exit code.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }
}

impl Cluster {
    fn secret_file(&self) -> PathBuf {
        self.dir.path().join("secret")
    }

    /// Runs kvctl with `args` against the cluster (the cluster flags first).
    async fn kvctl(&self, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvctl"));
        command
            .arg("--endpoints")
            .arg(self.endpoints.join(","))
            .arg("--cluster-secret-file")
            .arg(self.secret_file())
            .args(args)
            .env_remove("PAXKV_ENDPOINTS")
            .env_remove("PAXKV_CLUSTER_SECRET")
            .env_remove("PAXKV_CLUSTER_SECRET_FILE");
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .expect("kvctl ends")
            .unwrap();
        Run {
            code: output.status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }
    }

    /// Waits (within 10 s) until a write goes through: the cluster has a leader.
    async fn settled(&self) {
        for _ in 0..100 {
            if self.kvctl(&["put", "warm-up", "1"]).await.code == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader within 10 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_writes_and_their_exit_codes() {
    let cluster = start_cluster().await;
    cluster.settled().await;
    let put = cluster.kvctl(&["--json", "put", "k", "v1"]).await;
    assert_eq!(put.code, 0, "{}", put.stderr);
    let revision = put.json()["revision"].as_u64().unwrap();
    let got = cluster.kvctl(&["get", "k"]).await;
    assert_eq!((got.code, got.stdout.as_str()), (0, "v1"));
    let got = cluster.kvctl(&["--json", "get", "k"]).await.json();
    assert_eq!(got["value"], "v1");
    assert_eq!(got["mod_revision"].as_u64(), Some(revision));
    let missing = cluster.kvctl(&["--json", "get", "nothing"]).await;
    assert_eq!((missing.code, missing.stdout.as_str()), (3, "null"));
    // Compare-and-set: the wrong revision is a conflict (4) and changes nothing.
    let stale = cluster
        .kvctl(&["cas", "k", &(revision + 100).to_string(), "v2"])
        .await;
    assert_eq!(stale.code, 4, "{}", stale.stdout);
    assert!(stale.stdout.contains("conflict"), "{}", stale.stdout);
    let cas = cluster
        .kvctl(&["--json", "cas", "k", &revision.to_string(), "v2"])
        .await;
    assert_eq!(cas.code, 0);
    assert_eq!(cas.json()["succeeded"], true);
    let current = cas.json()["revision"].as_u64().unwrap();
    // Compare-and-delete: a stale revision is a conflict, the current one deletes.
    let stale = cluster
        .kvctl(&["del", "k", "--expected-rev", &revision.to_string()])
        .await;
    assert_eq!(stale.code, 4, "{}", stale.stdout);
    assert_eq!(cluster.kvctl(&["get", "k"]).await.stdout, "v2");
    let deleted = cluster
        .kvctl(&["--json", "del", "k", "--expected-rev", &current.to_string()])
        .await;
    assert_eq!(deleted.code, 0);
    assert_eq!(deleted.json()["deleted"], true);
    assert_eq!(cluster.kvctl(&["del", "k"]).await.code, 3);
    // Scans list in key order.
    for key in ["s/b", "s/a", "s/c"] {
        assert_eq!(cluster.kvctl(&["put", key, "x"]).await.code, 0);
    }
    let rows = cluster.kvctl(&["--json", "scan", "s/"]).await.json();
    let keys: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["s/a", "s/b", "s/c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_and_leases_survive_a_compare_and_set_only_when_passed() {
    let cluster = start_cluster().await;
    cluster.settled().await;
    assert_eq!(
        cluster.kvctl(&["put", "t", "v", "--ttl", "60"]).await.code,
        0
    );
    let revision = cluster.kvctl(&["--json", "get", "t"]).await.json()["mod_revision"]
        .as_u64()
        .unwrap();
    let kept = cluster
        .kvctl(&["cas", "t", &revision.to_string(), "w", "--keep-ttl"])
        .await;
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    let ttl = cluster.kvctl(&["--json", "ttl", "t"]).await.json();
    assert_eq!(ttl["state"], "Remaining");
    assert!(ttl["remaining_ms"].as_u64().unwrap() > 50_000);
    assert_eq!(cluster.kvctl(&["persist", "t"]).await.code, 0);
    assert_eq!(cluster.kvctl(&["ttl", "t"]).await.stdout, "no TTL");
    assert_eq!(cluster.kvctl(&["expire", "t", "30"]).await.code, 0);
    assert_eq!(cluster.kvctl(&["expire", "absent", "30"]).await.code, 3);
    // A key under a lease stays under it through a compare-and-set that passes the lease,
    // so revoking the lease deletes it.
    let lease = cluster
        .kvctl(&["--json", "lease", "grant", "30"])
        .await
        .json()["lease"]
        .as_u64()
        .unwrap()
        .to_string();
    assert_eq!(
        cluster
            .kvctl(&["put", "l", "v", "--lease", &lease])
            .await
            .code,
        0
    );
    let revision = cluster.kvctl(&["--json", "get", "l"]).await.json()["mod_revision"]
        .as_u64()
        .unwrap();
    let cas = cluster
        .kvctl(&["cas", "l", &revision.to_string(), "w", "--lease", &lease])
        .await;
    assert_eq!(cas.code, 0, "{}", cas.stderr);
    let status = cluster
        .kvctl(&["--json", "lease", "ttl", &lease])
        .await
        .json();
    assert_eq!(status["keys"], serde_json::json!(["l"]));
    assert_eq!(
        cluster.kvctl(&["lease", "keep-alive", &lease]).await.code,
        0
    );
    let revoked = cluster
        .kvctl(&["--json", "lease", "revoke", &lease])
        .await
        .json();
    assert_eq!(revoked["deleted_keys"], 1);
    assert_eq!(cluster.kvctl(&["get", "l"]).await.code, 3);
    assert_eq!(cluster.kvctl(&["lease", "ttl", &lease]).await.code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_members_global_flags_and_bad_usage() {
    let mut cluster = start_cluster().await;
    cluster.settled().await;
    // The global flags go after the subcommand too.
    let status = cluster
        .kvctl(&["status", "--json", "--timeout", "2s"])
        .await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let nodes = status.json();
    let roles: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|role| **role == "leader").count(), 1);
    assert!(roles
        .iter()
        .all(|role| ["leader", "follower"].contains(role)));
    let members = cluster.kvctl(&["member", "list", "--json"]).await.json();
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
    assert!(members["leader"].as_u64().unwrap() > 0);
    // Bad usage is 2, before anything is sent.
    assert_eq!(cluster.kvctl(&["get"]).await.code, 2);
    assert_eq!(
        cluster.kvctl(&["--timeout", "5h", "get", "k"]).await.code,
        2
    );
    assert_eq!(cluster.kvctl(&["frobnicate"]).await.code, 2);
    // A node that does not answer fails `status`, like a health check.
    cluster.stops.pop().unwrap().stop();
    let status = cluster.kvctl(&["status", "--timeout", "1s"]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(status.stdout.contains("unreachable"), "{}", status.stdout);
}
