//! kvctl itself, run as a user runs it: every subcommand against a real 3-node cluster (its
//! nodes run in this test's process, on loopback), with the exit codes and the JSON shapes
//! scripts rely on.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
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

// The server's end-to-end tests' port picker: a port the OS picked and released (`bind :0`)
// could be taken by an outgoing connection of a test running alongside before the node bound
// it, and the cluster then never started (the test hung).
#[path = "../../../server/tests/common/ports.rs"]
mod ports;

fn free_address() -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, ports::free_port()))
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
            log_entries_kept: paxkv_core::LOG_ENTRIES_KEPT_DEFAULT,
            snapshot_chunk_bytes: paxkv_core::SNAPSHOT_CHUNK_BYTES,
            snapshot_step_bytes: paxkv_core::SNAPSHOT_STEP_BYTES_DEFAULT,
            snapshot_write_backlog_max: paxkv_core::SNAPSHOT_WRITE_BACKLOG_MAX_DEFAULT,
            apply_entries_per_ready: paxkv_core::APPLY_ENTRIES_PER_READY_MAX,
            sessions_max: paxkv_core::kv::SESSIONS_MAX,
            seed: None,
            join: None,
            resp: None,
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
        // A node that cannot start fails the test, not hangs it.
        tokio::time::timeout(Duration::from_secs(30), started)
            .await
            .expect("the node started within 30 s")
            .unwrap()
            .unwrap();
    }
    Cluster {
        endpoints: clients.iter().map(ToString::to_string).collect(),
        dir,
        stops,
    }
}

/// Sends a running kvctl SIGINT (Ctrl-C); returns its exit code (within 10 s).
async fn interrupt(child: &mut tokio::process::Child) -> Option<i32> {
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("kvctl stops on Ctrl-C")
        .unwrap();
    status.code()
}

/// What a kvctl run printed and its exit code.
struct Run {
    code: i32,
    /// Trimmed, lossy: for text.
    stdout: String,
    /// As printed, newline included.
    stdout_bytes: Vec<u8>,
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

    /// kvctl with the cluster flags, and nothing from the environment.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvctl"));
        command
            .arg("--endpoints")
            .arg(self.endpoints.join(","))
            .arg("--cluster-secret-file")
            .arg(self.secret_file())
            .args(args)
            .env_remove("PAXKV_ENDPOINTS")
            .env_remove("PAXKV_CLUSTER_SECRET")
            .env_remove("PAXKV_CLUSTER_SECRET_FILE")
            .kill_on_drop(true);
        command
    }

    /// Runs kvctl with `args` against the cluster (the cluster flags first).
    async fn kvctl(&self, args: &[&str]) -> Run {
        self.kvctl_with_stdin(args, &[]).await
    }

    /// Runs kvctl with `stdin` as its input.
    async fn kvctl_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("kvctl ends")
            .unwrap();
        Run {
            code: output.status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_string(),
            stdout_bytes: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }
    }

    /// A client of the cluster, for what would take thousands of kvctl runs.
    fn client(&self) -> paxkv_client::Client {
        let mut config = paxkv_client::ClientConfig::new(self.endpoints.clone());
        config.secret = Some(SECRET.as_bytes().to_vec());
        paxkv_client::Client::new(config).unwrap()
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
    let keys: Vec<&str> = rows["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["s/a", "s/b", "s/c"]);
    // A prefix goes at once; then there is nothing under it (3).
    let deleted = cluster.kvctl(&["--json", "del", "s/", "--prefix"]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(deleted.json()["deleted_count"], 3);
    assert_eq!(cluster.kvctl(&["del", "s/", "--prefix"]).await.code, 3);
    assert_eq!(
        cluster
            .kvctl(&["del", "s/", "--prefix", "--expected-rev", "1"])
            .await
            .code,
        2
    );
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
        cluster
            .kvctl(&["lease", "keep-alive", &lease, "--once"])
            .await
            .code,
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
    assert_eq!(
        roles.iter().filter(|role| **role == "leader").count(),
        1,
        "{roles:?}"
    );
    assert!(
        roles
            .iter()
            .all(|role| ["leader", "follower"].contains(role)),
        "{roles:?}"
    );
    let members = cluster.kvctl(&["member", "list", "--json"]).await.json();
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
    assert!(members["leader"].as_u64().unwrap() > 0);
    // A learner added for a node that never starts: listed, not promoted (it never answered),
    // then removed for good.
    let phantom = free_address().to_string();
    let added = cluster
        .kvctl(&["--json", "member", "add", &phantom, "--learner"])
        .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let id = added.json()["node"].as_u64().unwrap();
    let learner = |members: &serde_json::Value| {
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|member| member["id"] == id)
            .cloned()
    };
    assert_eq!(learner(&added.json()).unwrap()["voter"], false);
    let promoted = cluster
        .kvctl(&["member", "promote", &id.to_string(), "--timeout", "2s"])
        .await;
    assert_eq!(promoted.code, 1, "{} {}", promoted.stdout, promoted.stderr);
    assert!(promoted.stderr.contains("refused"), "{}", promoted.stderr);
    let removed = cluster
        .kvctl(&["--json", "member", "remove", &id.to_string()])
        .await;
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert!(learner(&removed.json()).is_none());
    assert!(removed.json()["retired"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(id)));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_stdin_come_back_byte_for_byte_and_as_base64_in_json() {
    let cluster = start_cluster().await;
    cluster.settled().await;
    let binary: &[u8] = &[0xff, 0x00, b'A', b'\n', 0xc3];
    let put = cluster.kvctl_with_stdin(&["put", "bin", "-"], binary).await;
    assert_eq!(put.code, 0, "{}", put.stderr);
    let got = cluster.kvctl(&["get", "bin"]).await;
    assert_eq!(got.code, 0);
    // The value as stored, then the newline kvctl ends its output with.
    assert_eq!(got.stdout_bytes, [binary, b"\n"].concat());
    let json = cluster.kvctl(&["get", "bin", "--json"]).await.json();
    assert_eq!(json["key"], "bin");
    assert_eq!(json["value"], serde_json::json!({"base64": "/wBBCsM="}));
    // A UTF-8 value is a plain string; a value that is only "-" can come from stdin.
    let put = cluster.kvctl_with_stdin(&["put", "dash", "-"], b"-").await;
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert_eq!(
        cluster.kvctl(&["--json", "get", "dash"]).await.json()["value"],
        "-"
    );
    // cas takes stdin too.
    let revision = json["mod_revision"].as_u64().unwrap().to_string();
    let cas = cluster
        .kvctl_with_stdin(&["cas", "bin", &revision, "-"], "été".as_bytes())
        .await;
    assert_eq!(cas.code, 0, "{}", cas.stderr);
    assert_eq!(cluster.kvctl(&["get", "bin"]).await.stdout, "été");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_pages_through_more_than_a_thousand_keys() {
    let cluster = start_cluster().await;
    cluster.settled().await;
    let client = cluster.client();
    let mut pending = Vec::new();
    for i in 0..1234 {
        let client = client.clone();
        pending.push(tokio::spawn(async move {
            client
                .put(format!("many/{i:05}").as_bytes(), b"v", Default::default())
                .await
        }));
    }
    for write in pending {
        write.await.unwrap().unwrap();
    }
    let all = cluster.kvctl(&["--json", "scan", "many/"]).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    let all = all.json();
    let keys: Vec<&str> = all["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 1234);
    assert_eq!((keys[0], keys[1233]), ("many/00000", "many/01233"));
    assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "in order, once each"
    );
    assert_eq!(all["more"], false);
    assert!(all["revision"].as_u64().unwrap() >= 1234);
    let some = cluster
        .kvctl(&["--json", "scan", "many/", "--limit", "1001", "--keys-only"])
        .await
        .json();
    assert_eq!(some["kvs"].as_array().unwrap().len(), 1001);
    assert_eq!(some["more"], true);
    assert!(some["kvs"][0].get("value").is_none(), "{}", some["kvs"][0]);
    let text = cluster.kvctl(&["scan", "many/", "--limit", "2"]).await;
    assert_eq!(
        text.stdout,
        "many/00000 = v\nmany/00001 = v\n(more; raise --limit above 2)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_conditions_reads_at_each_consistency_and_lease_list() {
    let cluster = start_cluster().await;
    cluster.settled().await;
    assert_eq!(cluster.kvctl(&["put", "plain", "v"]).await.code, 0);
    assert_eq!(
        cluster
            .kvctl(&["put", "timed", "v", "--ttl", "100"])
            .await
            .code,
        0
    );
    let remaining = |run: Run| run.json()["remaining_ms"].as_u64().unwrap();
    // --nx: only without a TTL. On a key with one it does not hold: 4, nothing changes.
    let refused = cluster.kvctl(&["expire", "timed", "10", "--nx"]).await;
    assert_eq!(refused.code, 4, "{}", refused.stdout);
    assert!(refused.stdout.contains("--nx"), "{}", refused.stdout);
    assert!(remaining(cluster.kvctl(&["--json", "ttl", "timed"]).await) > 50_000);
    assert_eq!(
        cluster
            .kvctl(&["expire", "plain", "300", "--nx"])
            .await
            .code,
        0
    );
    // --xx: only with one.
    assert_eq!(cluster.kvctl(&["put", "plain", "v"]).await.code, 0);
    assert_eq!(
        cluster.kvctl(&["expire", "plain", "10", "--xx"]).await.code,
        4
    );
    assert_eq!(
        cluster
            .kvctl(&["expire", "timed", "200", "--xx"])
            .await
            .code,
        0
    );
    // --gt and --lt compare deadlines.
    assert_eq!(
        cluster.kvctl(&["expire", "timed", "50", "--gt"]).await.code,
        4
    );
    assert!(remaining(cluster.kvctl(&["--json", "ttl", "timed"]).await) > 150_000);
    assert_eq!(
        cluster.kvctl(&["expire", "timed", "50", "--lt"]).await.code,
        0
    );
    assert!(remaining(cluster.kvctl(&["--json", "ttl", "timed"]).await) <= 50_000);
    // No key is 3 whatever the condition; two conditions are bad usage.
    assert_eq!(
        cluster
            .kvctl(&["expire", "absent", "10", "--nx"])
            .await
            .code,
        3
    );
    assert_eq!(
        cluster
            .kvctl(&["expire", "timed", "10", "--nx", "--gt"])
            .await
            .code,
        2
    );

    // Reads at every consistency see the value; --min-revision waits for a revision.
    let written = cluster.kvctl(&["--json", "put", "r", "v1"]).await.json()["revision"]
        .as_u64()
        .unwrap()
        .to_string();
    for args in [
        vec!["get", "r", "--consistency", "linearizable"],
        vec!["get", "r", "--min-revision", &written],
    ] {
        let got = cluster.kvctl(&args).await;
        assert_eq!((got.code, got.stdout.as_str()), (0, "v1"), "{args:?}");
    }
    // A node's own state, which may not have the write yet (one command has seen nothing, so
    // session is stale too): the value or no key, never an error.
    for consistency in ["stale", "session"] {
        let got = cluster
            .kvctl(&["get", "r", "--consistency", consistency])
            .await;
        assert!(
            (got.code, got.stdout.as_str()) == (0, "v1") || got.code == 3,
            "{consistency}: {} {}",
            got.stdout,
            got.stderr
        );
    }
    assert_eq!(
        cluster
            .kvctl(&["get", "r", "--consistency", "eventual"])
            .await
            .code,
        2
    );
    assert_eq!(
        cluster
            .kvctl(&["get", "r", "--stale", "--min-revision", "1"])
            .await
            .code,
        2
    );
    // A revision far ahead is never reached: the read times out.
    let ahead = cluster
        .kvctl(&[
            "get",
            "r",
            "--min-revision",
            "1000000",
            "--timeout",
            "500ms",
        ])
        .await;
    assert_eq!(ahead.code, 1, "{}", ahead.stdout);

    // lease list: every live lease, with its keys counted.
    let mut granted = Vec::new();
    for seconds in ["60", "30"] {
        let lease = cluster
            .kvctl(&["--json", "lease", "grant", seconds])
            .await
            .json()["lease"]
            .as_u64()
            .unwrap();
        granted.push(lease);
    }
    let (a, b) = (granted[0], granted[1]);
    let put = cluster
        .kvctl(&["put", "held", "v", "--lease", &a.to_string()])
        .await;
    assert_eq!(put.code, 0);
    let leases = cluster.kvctl(&["--json", "lease", "list"]).await.json();
    let rows = leases.as_array().unwrap();
    let row = |id: u64| rows.iter().find(|row| row["lease"] == id).unwrap().clone();
    assert_eq!(row(a)["keys"], 1);
    assert_eq!(row(b)["keys"], 0);
    assert_eq!(row(b)["granted_ttl_ms"], 30_000);
    assert!(cluster
        .kvctl(&["lease", "list"])
        .await
        .stdout
        .contains(&a.to_string()));
    assert_eq!(
        cluster
            .kvctl(&["lease", "revoke", &b.to_string()])
            .await
            .code,
        0
    );
    let leases = cluster.kvctl(&["--json", "lease", "list"]).await.json();
    assert!(leases
        .as_array()
        .unwrap()
        .iter()
        .all(|row| row["lease"] != b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keep_alive_renews_until_interrupted() {
    use tokio::io::AsyncBufReadExt;
    let cluster = start_cluster().await;
    cluster.settled().await;
    let lease = cluster
        .kvctl(&["--json", "lease", "grant", "1"])
        .await
        .json()["lease"]
        .as_u64()
        .unwrap()
        .to_string();
    let once = cluster
        .kvctl(&["lease", "keep-alive", &lease, "--once"])
        .await;
    assert_eq!(
        (once.code, once.stdout.as_str()),
        (0, "kept alive for 1.000 s")
    );
    let mut child = cluster
        .command(&["lease", "keep-alive", &lease, "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Renewed at a third of its second: six renewals outlast the lease's own time to live.
    let started = std::time::Instant::now();
    for _ in 0..6 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a renewal within 10 s")
            .unwrap()
            .expect("still running");
        let renewal: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(renewal["ttl_ms"], 1000);
    }
    assert!(started.elapsed() > Duration::from_secs(1));
    assert_eq!(
        cluster.kvctl(&["lease", "ttl", &lease]).await.code,
        0,
        "still alive"
    );
    assert_eq!(interrupt(&mut child).await, Some(0));
    // A lease that is gone ends the loop with 3.
    assert_eq!(cluster.kvctl(&["lease", "revoke", &lease]).await.code, 0);
    let gone = cluster.kvctl(&["lease", "keep-alive", &lease]).await;
    assert_eq!(gone.code, 3, "{}", gone.stderr);
}

/// Reads batches until `count` events came (within 20 s).
async fn events(watch: &mut paxkv_client::Watch, count: usize) -> Vec<paxkv_client::WatchEvent> {
    let mut events = Vec::new();
    while events.len() < count {
        let Ok(batch) = tokio::time::timeout(Duration::from_secs(20), watch.next()).await else {
            panic!("{count} events within 20 s; came: {:?}", described(&events));
        };
        let batch = batch.unwrap();
        events.extend(batch.events);
    }
    events
}

fn described(events: &[paxkv_client::WatchEvent]) -> Vec<(paxkv_client::EventKind, String)> {
    events
        .iter()
        .map(|event| {
            let key = &event.kv.as_ref().unwrap().key;
            (event.kind(), String::from_utf8_lossy(key).to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_deliver_every_change_once_in_order_and_survive_their_node() {
    use paxkv_client::{EventKind, PutOptions, WatchOptions};
    let mut cluster = start_cluster().await;
    cluster.settled().await;
    let client = cluster.client();
    let mut watch = client
        .watch(b"w/", WatchOptions::new().prefix().prev_kv())
        .await
        .unwrap();
    let started = client
        .put(b"w/a", b"1", PutOptions::new())
        .await
        .unwrap()
        .revision;
    client.put(b"w/b", b"2", PutOptions::new()).await.unwrap();
    client
        .put(b"elsewhere", b"x", PutOptions::new())
        .await
        .unwrap();
    client.delete(b"w/a").await.unwrap();
    client
        .put(b"w/t", b"3", PutOptions::new().ttl_ms(300))
        .await
        .unwrap();
    let lease = client.lease_grant(60_000).await.unwrap();
    client
        .put(b"w/l", b"4", PutOptions::new().lease(lease))
        .await
        .unwrap();
    client.lease_revoke(lease).await.unwrap();
    let seen = events(&mut watch, 7).await;
    let key = |name: &str| name.to_string();
    assert_eq!(
        described(&seen)[..5],
        [
            (EventKind::Put, key("w/a")),
            (EventKind::Put, key("w/b")),
            (EventKind::Delete, key("w/a")),
            (EventKind::Put, key("w/t")),
            (EventKind::Put, key("w/l")),
        ]
    );
    // The TTL (300 ms) ran out before the lease was revoked, or after: either order, each at
    // its revision.
    let mut tail = described(&seen)[5..].to_vec();
    tail.sort();
    assert_eq!(
        tail,
        [
            (EventKind::Delete, key("w/l")),
            (EventKind::Expire, key("w/t"))
        ]
    );
    assert!(seen
        .windows(2)
        .all(|pair| pair[0].revision < pair[1].revision));
    assert_eq!(seen[2].prev_kv.as_ref().unwrap().value, b"1");
    // From a revision in the past: the same changes, from the history.
    let mut replay = client
        .watch(b"w/", WatchOptions::new().prefix().from_revision(started))
        .await
        .unwrap();
    let replayed = events(&mut replay, 7).await;
    assert_eq!(described(&replayed), described(&seen));
    // The node a watch reads from stops: the stream goes on through another, from the next
    // revision, with nothing missed and nothing twice.
    let first_node = cluster.endpoints[0].clone();
    let mut config = paxkv_client::ClientConfig::new(vec![first_node]);
    config
        .endpoints
        .extend(cluster.endpoints[1..].iter().cloned());
    config.secret = Some(SECRET.as_bytes().to_vec());
    let pinned = paxkv_client::Client::new(config).unwrap();
    let mut moving = pinned
        .watch(b"m/", WatchOptions::new().prefix())
        .await
        .unwrap();
    client
        .put(b"m/1", b"before", PutOptions::new())
        .await
        .unwrap();
    assert_eq!(
        described(&events(&mut moving, 1).await),
        [(EventKind::Put, key("m/1"))]
    );
    cluster.stops.remove(0).stop();
    let writer = paxkv_client::Client::new({
        let mut config = paxkv_client::ClientConfig::new(cluster.endpoints[1..].to_vec());
        config.secret = Some(SECRET.as_bytes().to_vec());
        config
    })
    .unwrap();
    for index in 2..=4 {
        writer
            .put(format!("m/{index}").as_bytes(), b"after", PutOptions::new())
            .await
            .unwrap();
    }
    let after = events(&mut moving, 3).await;
    assert_eq!(
        described(&after),
        [
            (EventKind::Put, key("m/2")),
            (EventKind::Put, key("m/3")),
            (EventKind::Put, key("m/4"))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvctl_watch_prints_each_change_until_interrupted() {
    use tokio::io::AsyncBufReadExt;
    let cluster = start_cluster().await;
    cluster.settled().await;
    let mut child = cluster
        .command(&["watch", "cfg/", "--prefix", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The watch starts after kvctl connected: write until its first event shows.
    let first = loop {
        assert_eq!(cluster.kvctl(&["put", "cfg/mode", "fast"]).await.code, 0);
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
        {
            break line.unwrap().expect("still running");
        }
    };
    let event: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (
            event["kind"].as_str(),
            event["key"].as_str(),
            event["value"].as_str()
        ),
        (Some("put"), Some("cfg/mode"), Some("fast"))
    );
    assert_eq!(cluster.kvctl(&["del", "cfg/mode"]).await.code, 0);
    let deleted = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the delete within 10 s")
            .unwrap()
            .expect("still running");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["kind"] == "delete" {
            break event;
        }
    };
    assert_eq!(deleted["key"], "cfg/mode");
    assert_eq!(interrupt(&mut child).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_from_a_file_and_stdin_with_their_exit_codes() {
    let cluster = start_cluster().await;
    cluster.settled().await;
    let a = cluster.kvctl(&["--json", "put", "a", "1"]).await.json()["revision"]
        .as_u64()
        .unwrap();
    let b = cluster.kvctl(&["--json", "put", "b", "2"]).await.json()["revision"]
        .as_u64()
        .unwrap();
    let file = cluster.dir.path().join("move.json");
    let transaction = serde_json::json!({
        "compare": [{"key": "a", "target": "value", "op": "=", "value": "1"},
                    {"key": "b", "target": "mod_revision", "op": "=", "number": b},
                    {"key": "c", "target": "exists", "op": "!="}],
        "success": [{"put": {"key": "a", "value": "10"}},
                    {"delete": {"key": "b"}},
                    {"put": {"key": {"base64": "/wA="}, "value": {"base64": "AP8="}}},
                    {"get": {"key": "a"}}],
        "failure": [{"get": {"key": "a"}}, {"get": {"key": "b"}}]
    });
    std::fs::write(&file, transaction.to_string()).unwrap();
    let file = file.to_str().unwrap();

    // Every compare holds: the success branch runs, at one revision.
    let done = cluster.kvctl(&["--json", "txn", file]).await;
    assert_eq!(done.code, 0, "{}", done.stderr);
    let done = done.json();
    assert_eq!(done["succeeded"], true);
    let revision = done["revision"].as_u64().unwrap();
    assert_eq!(
        done["results"],
        serde_json::json!([
            {"put": {"key": "a", "revision": revision}},
            {"delete": {"key": "b", "deleted": 1}},
            {"put": {"key": {"base64": "/wA="}, "revision": revision}},
            {"get": {"key": "a", "kv": {"key": "a", "value": "10", "create_revision": a,
                                        "mod_revision": revision, "version": 2, "lease": 0}}},
        ])
    );
    let scan = cluster.kvctl(&["--json", "scan", ""]).await.json();
    assert!(scan["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|kv| kv["key"] == serde_json::json!({"base64": "/wA="})
            && kv["value"] == serde_json::json!({"base64": "AP8="})));

    // The same again: a compare fails, so the failure branch runs and exits 4.
    let failed = cluster.kvctl(&["txn", file]).await;
    assert_eq!(failed.code, 4, "{}", failed.stderr);
    assert_eq!(
        failed.stdout,
        format!(
            "FAILED at revision {revision}: a compare did not hold; the failure branch ran\n\
             get a = 10 (revision {revision})\n\
             get b: (no key)"
        )
    );

    // From stdin, as `-` or with no file at all.
    let create = r#"{"compare": [{"key": "c", "target": "version", "op": "=", "number": 0}],
                     "success": [{"put": {"key": "c", "value": "new", "ttl_ms": 60000}}]}"#;
    let created = cluster
        .kvctl_with_stdin(&["txn", "-"], create.as_bytes())
        .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let revision = cluster.kvctl(&["--json", "get", "c"]).await.json()["mod_revision"]
        .as_u64()
        .unwrap();
    assert_eq!(
        created.stdout,
        format!("SUCCEEDED at revision {revision}\nput c (revision {revision})")
    );
    let ttl = cluster.kvctl(&["--json", "ttl", "c"]).await.json();
    assert!(ttl["remaining_ms"].as_u64().unwrap() > 50_000, "{ttl}");
    let again = cluster
        .kvctl_with_stdin(&["--json", "txn"], create.as_bytes())
        .await;
    assert_eq!(again.code, 4, "{}", again.stderr);
    assert_eq!(
        again.json(),
        serde_json::json!({"succeeded": false, "revision": again.json()["revision"], "results": []})
    );

    // A branch that writes a key twice is refused by the cluster (1), a lease that is gone
    // is not found (3): nothing of either is applied.
    let twice =
        r#"{"success": [{"put": {"key": "d", "value": "1"}}, {"delete": {"prefix": "d"}}]}"#;
    let refused = cluster.kvctl_with_stdin(&["txn"], twice.as_bytes()).await;
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("writes each key once"),
        "{}",
        refused.stderr
    );
    let gone = r#"{"success": [{"put": {"key": "d", "value": "1"}},
                               {"put": {"key": "e", "value": "1", "lease": 123456}}]}"#;
    assert_eq!(
        cluster
            .kvctl_with_stdin(&["txn"], gone.as_bytes())
            .await
            .code,
        3
    );
    assert_eq!(cluster.kvctl(&["get", "d"]).await.code, 3);

    // A malformed file is bad usage (2), named with what is wrong and where; nothing is sent.
    let bad = cluster.dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"compare": [{"key": "a", "target": "version", "op": "=", "value": "1"}]}"#,
    )
    .unwrap();
    let malformed = cluster.kvctl(&["txn", bad.to_str().unwrap()]).await;
    assert_eq!(malformed.code, 2);
    assert!(
        malformed
            .stderr
            .contains("compare[0] (\"a\"): a version compare takes \"number\""),
        "{}",
        malformed.stderr
    );
    for (json, expected) in [
        ("{\"compare\": [", "EOF while parsing"),
        (
            "{\"success\": [{\"remove\": {\"key\": \"a\"}}]}",
            "unknown variant `remove`",
        ),
    ] {
        let run = cluster
            .kvctl_with_stdin(&["txn", "-"], json.as_bytes())
            .await;
        assert_eq!(run.code, 2, "{json}");
        assert!(
            run.stderr.starts_with("kvctl: stdin: ") && run.stderr.contains(expected),
            "{}",
            run.stderr
        );
    }
    let missing = cluster.kvctl(&["txn", "/nonexistent/txn.json"]).await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("/nonexistent/txn.json"));
    assert_eq!(cluster.kvctl(&["get", "a"]).await.stdout, "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_range_deletes_from_start_up_to_end() {
    let cluster = start_cluster().await;
    cluster.settled().await;
    for key in ["r/a", "r/b", "r/c", "r/d", "r/e"] {
        assert_eq!(cluster.kvctl(&["put", key, "x"]).await.code, 0);
    }
    let deleted = cluster
        .kvctl(&["--json", "del", "--range", "r/b", "r/d"])
        .await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(deleted.json()["deleted_count"], 2);
    let left = cluster.kvctl(&["scan", "r/", "--keys-only"]).await;
    assert_eq!(left.stdout, "r/a\nr/d\nr/e");
    // Nothing left in the range: 3, like a prefix with no key.
    let again = cluster.kvctl(&["del", "--range", "r/b", "r/d"]).await;
    assert_eq!(
        (again.code, again.stdout.as_str()),
        (3, "(no key in the range)")
    );
    let text = cluster.kvctl(&["del", "--range", "r/", "r/z"]).await;
    assert_eq!((text.code, text.stdout.as_str()), (0, "deleted 3 keys"));
    // An end before the start, one bound, or a key as well: bad usage, nothing deleted.
    assert_eq!(cluster.kvctl(&["put", "r/m", "x"]).await.code, 0);
    for args in [
        &["del", "--range", "r/z", "r/a"][..],
        &["del", "--range", "r/a", "r/a"],
        &["del", "--range", "r/a"],
        &["del", "r/m", "--range", "r/a", "r/z"],
        &["del", "--range", "r/a", "r/z", "--prefix"],
    ] {
        let run = cluster.kvctl(args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
    assert_eq!(cluster.kvctl(&["get", "r/m"]).await.stdout, "x");
}
