//! `kv-server local-cluster`: starts a cluster of real `kv-server` processes on `[::1]` with data
//! under one directory, prints how to reach it, and stops every process on Ctrl-C or SIGTERM.
//! `local-cluster add-node` starts one more node that joins it (`kv-server --join`) and
//! `local-cluster remove-node ID` removes a member, so a node can be replaced end to end.
//!
//! Every node has a slot: slot `s` (from 1) listens for clients on `base_port + s - 1`, for
//! peers 100 above and for Redis clients (RESP, password in `resp-password`) 200 above, keeps its data in `node-s` and its log in `node-s.log`. A slot is never
//! reused, so a node that left never meets its old address again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the local cluster looks like.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub nodes: u64,
    pub dir: PathBuf,
    /// Client ports are `base_port + i - 1`, peer ports `base_port + 100 + i - 1`.
    pub base_port: u16,
}

impl LocalCluster {
    pub fn client_endpoints(&self) -> Vec<String> {
        (0..self.nodes)
            .map(|i| format!("[::1]:{}", self.base_port + i as u16))
            .collect()
    }

    fn peer_address(&self, i: u64) -> String {
        format!("[::1]:{}", self.base_port + 100 + i as u16)
    }

    fn client_address(&self, slot: u64) -> String {
        format!("[::1]:{}", self.base_port as u64 + slot - 1)
    }

    /// The Redis protocol port of slot `slot`.
    pub fn resp_port(&self, slot: u64) -> u64 {
        self.base_port as u64 + 200 + slot - 1
    }

    pub fn resp_password_path(&self) -> PathBuf {
        self.dir.join("resp-password")
    }

    /// The flags that give slot `slot` its Redis protocol port.
    fn resp_args(&self, slot: u64) -> [String; 4] {
        [
            "--resp-addr".into(),
            format!("[::1]:{}", self.resp_port(slot)),
            "--resp-password-file".into(),
            self.resp_password_path().display().to_string(),
        ]
    }

    /// The slots that have a data directory: every node started here, running or not.
    fn slots_used(&self) -> Vec<u64> {
        (1..=SLOTS_MAX)
            .filter(|slot| self.dir.join(format!("node-{slot}")).exists())
            .collect()
    }

    pub fn secret_path(&self) -> PathBuf {
        self.dir.join("cluster-secret")
    }

    /// Creates the directory and a random secret (kept if it exists, so a restarted cluster
    /// keeps its data and its secret).
    fn prepare(&self) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        for (path, bytes) in [(self.secret_path(), 24), (self.resp_password_path(), 16)] {
            if !path.exists() {
                let mut random = vec![0u8; bytes];
                getrandom::getrandom(&mut random)
                    .map_err(|error| std::io::Error::other(error.to_string()))?;
                let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
                fs::write(path, format!("{hex}\n"))?;
            }
        }
        Ok(())
    }

    fn spawn_node(&self, executable: &Path, i: u64) -> std::io::Result<Child> {
        let id = i + 1;
        let peers: Vec<String> = (0..self.nodes)
            .map(|j| format!("{}={}", j + 1, self.peer_address(j)))
            .collect();
        let log = fs::File::create(self.dir.join(format!("node-{id}.log")))?;
        Command::new(executable)
            .arg("--id")
            .arg(id.to_string())
            .arg("--client-addr")
            .arg(&self.client_endpoints()[i as usize])
            .arg("--peer-addr")
            .arg(self.peer_address(i))
            .arg("--peers")
            .arg(peers.join(","))
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{id}")))
            .arg("--cluster-secret-file")
            .arg(self.secret_path())
            .args(self.resp_args(id))
            .env_remove("PAXKV_CLUSTER_SECRET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    }

    fn banner(&self) -> String {
        let endpoints = self.client_endpoints().join(",");
        let secret = self.secret_path().display().to_string();
        let password = self.resp_password_path().display().to_string();
        let resp_ports: Vec<String> = (1..=self.nodes)
            .map(|slot| self.resp_port(slot).to_string())
            .collect();
        let resp_ports = resp_ports.join(", ");
        let resp_first = self.resp_port(1);
        format!(
            "paxkv local cluster: {} nodes, data and logs under {}\n\
             \n  endpoints:   {endpoints}\n  secret file: {secret}\n\
             \nTalk to it from another terminal:\n\
             \n  cargo run --release -q --bin kvctl -- --endpoints {endpoints} --cluster-secret-file {secret} put hello world\
             \n  cargo run --release -q --bin kvctl -- --endpoints {endpoints} --cluster-secret-file {secret} get hello\
             \n  cargo run --release -q --bin kvctl -- --endpoints {endpoints} --cluster-secret-file {secret} status\n\
             \nor set PAXKV_CLUSTER_SECRET=$(cat {secret}) and PAXKV_ENDPOINTS={endpoints}.\n\
             \nAny Redis client works with any node (Redis protocol ports {resp_ports}):\n\
             \n  redis-cli -h ::1 -p {resp_first} -a $(cat {password}) --no-auth-warning set hello world\n\
             \nPress Ctrl-C to stop every node.\n",
            self.nodes,
            self.dir.display()
        )
    }
}

/// Slots a local cluster may use (ports `base_port .. base_port + SLOTS_MAX`).
const SLOTS_MAX: u64 = 50;

/// How long `add-node` waits for the new node to join and become a voter.
const ADD_NODE_TIMEOUT: Duration = Duration::from_secs(60);

fn client_for(cluster: &LocalCluster) -> std::io::Result<paxkv_client::Client> {
    let endpoints = cluster
        .slots_used()
        .into_iter()
        .map(|slot| cluster.client_address(slot))
        .collect();
    let secret = fs::read(cluster.secret_path())?;
    let config = paxkv_client::ClientConfig::new(endpoints)
        .secret(secret)
        .timeout(Duration::from_secs(10));
    paxkv_client::Client::new(config).map_err(|error| std::io::Error::other(error.to_string()))
}

/// Starts a node on the next free slot that joins the running cluster, in the background
/// (the running `local-cluster` stops it with the others), and waits until it is a voter.
pub async fn add_node(cluster: &LocalCluster) -> std::io::Result<()> {
    let used = cluster.slots_used();
    if used.is_empty() {
        return Err(std::io::Error::other(format!(
            "no local cluster in {}: start one with kv-server local-cluster first",
            cluster.dir.display()
        )));
    }
    let slot = used.iter().max().copied().unwrap_or(0) + 1;
    if slot > SLOTS_MAX {
        return Err(std::io::Error::other(
            "every slot of the local cluster was used",
        ));
    }
    let endpoints: Vec<String> = used.iter().map(|s| cluster.client_address(*s)).collect();
    let log = fs::File::create(cluster.dir.join(format!("node-{slot}.log")))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("--join")
        .arg(endpoints.join(","))
        .arg("--client-addr")
        .arg(cluster.client_address(slot))
        .arg("--peer-addr")
        .arg(cluster.peer_address(slot - 1))
        .arg("--data-dir")
        .arg(cluster.dir.join(format!("node-{slot}")))
        .arg("--cluster-secret-file")
        .arg(cluster.secret_path())
        .args(cluster.resp_args(slot))
        .env_remove("PAXKV_CLUSTER_SECRET")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    fs::write(
        cluster.dir.join(format!("node-{slot}.pid")),
        child.id().to_string(),
    )?;
    println!(
        "started a node on slot {slot} (client {}, peer {}, log {}); waiting for it to join",
        cluster.client_address(slot),
        cluster.peer_address(slot - 1),
        cluster.dir.join(format!("node-{slot}.log")).display()
    );
    let client = client_for(cluster)?;
    let peer = cluster.peer_address(slot - 1);
    let deadline = std::time::Instant::now() + ADD_NODE_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Ok(members) = client.members().await {
            let joined = members
                .members
                .iter()
                .find(|member| member.peer_address == peer);
            if let Some(member) = joined.filter(|member| member.voter) {
                println!("node {} on slot {slot} is a voter", member.node_id);
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(std::io::Error::other(format!(
        "the node on slot {slot} did not become a voter within {} s; see its log",
        ADD_NODE_TIMEOUT.as_secs()
    )))
}

/// Removes member `id` from the running cluster (a running node stops by itself).
pub async fn remove_node(cluster: &LocalCluster, id: u64) -> std::io::Result<()> {
    let client = client_for(cluster)?;
    let members = client
        .member_remove(id)
        .await
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let voters: Vec<String> = members
        .members
        .iter()
        .filter(|member| member.voter)
        .map(|member| member.node_id.to_string())
        .collect();
    println!("removed {id}; voters now {}", voters.join(", "));
    Ok(())
}

/// Runs the cluster until Ctrl-C or SIGTERM, then stops every node.
pub async fn run(cluster: LocalCluster) -> std::io::Result<()> {
    cluster.prepare()?;
    let executable = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..cluster.nodes {
        children.push(cluster.spawn_node(&executable, i)?);
    }
    println!("{}", cluster.banner());
    tokio::select! {
        biased;
        _ = crate::shutdown_signal() => {}
        _ = watch_children(&mut children, &cluster.dir) => {}
    }
    stop(&mut children);
    let added = stop_added_nodes(&cluster.dir);
    println!("stopped {} nodes", children.len() + added);
    Ok(())
}

/// Reports each node that exits on its own (the others go on: a replaced or removed node
/// exits, and the cluster keeps serving); returns once every one has.
async fn watch_children(children: &mut [Child], dir: &Path) {
    let mut exited = vec![false; children.len()];
    while exited.iter().any(|exited| !exited) {
        for (i, child) in children.iter_mut().enumerate() {
            if exited[i] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                exited[i] = true;
                eprintln!(
                    "node {} exited ({status}); the others go on; see {}",
                    i + 1,
                    dir.join(format!("node-{}.log", i + 1)).display()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops the nodes `add-node` started (their pid files); returns how many were running.
fn stop_added_nodes(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut stopped = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|extension| extension != "pid") {
            continue;
        }
        let pid = fs::read_to_string(&path).unwrap_or_default();
        let pid = pid.trim();
        if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) {
            let alive = Command::new("kill")
                .arg("-TERM")
                .arg(pid)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if alive {
                stopped += 1;
                wait_gone(pid);
            }
        }
        let _ = fs::remove_file(&path);
    }
    stopped
}

/// Waits up to five seconds for process `pid` to exit, then kills it.
fn wait_gone(pid: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let running = || {
        Command::new("kill")
            .arg("-0")
            .arg(pid)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    while running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running() {
        let _ = Command::new("kill").arg("-KILL").arg(pid).status();
    }
}

/// Asks every node to stop (SIGTERM), waits up to five seconds, then kills what is left.
fn stop(children: &mut [Child]) {
    for child in children.iter() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for child in children.iter_mut() {
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
