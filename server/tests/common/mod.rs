//! Real `kv-server` processes on `[::1]` for end-to-end tests: free ports, a temporary data
//! directory, and every process stopped when the cluster is dropped.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use paxkv_client::{Client, ClientConfig};

pub const SECRET: &str = "end-to-end-test-secret-0123456789";

pub struct Process {
    /// The node's id (for a node that joined: the one the cluster picked, once known).
    pub id: u64,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub child: Option<Child>,
    /// Started with `--join` (the other nodes' client addresses) instead of `--id --peers`.
    pub joins: bool,
    /// Its data directory's name under the cluster's directory.
    pub name: String,
}

pub struct LocalCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Process>,
    pub extra_args: Vec<String>,
}

mod ports;
pub use ports::free_port;

impl LocalCluster {
    pub fn start(size: u64, extra_args: &[&str]) -> LocalCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("secret"), SECRET).expect("write secret");
        let nodes = (1..=size)
            .map(|id| Process {
                id,
                client_addr: format!("[::1]:{}", free_port()).parse().expect("address"),
                peer_addr: format!("[::1]:{}", free_port()).parse().expect("address"),
                child: None,
                joins: false,
                name: format!("node-{id}"),
            })
            .collect();
        let mut cluster = LocalCluster {
            dir,
            nodes,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        for index in 0..cluster.nodes.len() {
            cluster.spawn(index);
        }
        cluster
    }

    pub fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[index].name)
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.nodes[index].name))
    }

    /// Starts one more node, on new ports, that joins the cluster (`kv-server --join` with
    /// the other nodes' client addresses); returns its index. Its id is learnt from the
    /// cluster (`wait_for_member`).
    pub fn spawn_joiner(&mut self, extra_args: &[&str]) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Process {
            id: 0,
            client_addr: format!("[::1]:{}", free_port()).parse().expect("address"),
            peer_addr: format!("[::1]:{}", free_port()).parse().expect("address"),
            child: None,
            joins: true,
            name: format!("joined-{index}"),
        });
        let saved = self.extra_args.clone();
        self.extra_args
            .extend(extra_args.iter().map(|arg| arg.to_string()));
        self.spawn(index);
        self.extra_args = saved;
        index
    }

    pub fn command(&self, index: usize, secret_file: &str) -> Command {
        let node = &self.nodes[index];
        let mut command = Command::new(env!("CARGO_BIN_EXE_kv-server"));
        if node.joins {
            let others: Vec<String> = self
                .nodes
                .iter()
                .filter(|other| other.peer_addr != node.peer_addr)
                .map(|other| other.client_addr.to_string())
                .collect();
            command.arg("--join").arg(others.join(","));
        } else {
            let peers: Vec<String> = self
                .nodes
                .iter()
                .filter(|other| !other.joins)
                .map(|other| format!("{}={}", other.id, other.peer_addr))
                .collect();
            command
                .arg("--id")
                .arg(node.id.to_string())
                .arg("--peers")
                .arg(peers.join(","));
        }
        command
            .arg("--client-addr")
            .arg(node.client_addr.to_string())
            .arg("--peer-addr")
            .arg(node.peer_addr.to_string())
            .arg("--data-dir")
            .arg(self.data_dir(index))
            .arg("--cluster-secret-file")
            .arg(self.dir.path().join(secret_file))
            .arg("--election-timeout-ms")
            .arg("500")
            .arg("--heartbeat-interval-ms")
            .arg("50")
            .args(&self.extra_args)
            .env_remove("PAXKV_CLUSTER_SECRET")
            .stdin(Stdio::null());
        command
    }

    pub fn spawn(&mut self, index: usize) {
        self.spawn_with_secret(index, "secret");
    }

    pub fn spawn_with_secret(&mut self, index: usize, secret_file: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(index))
            .expect("log file");
        let child = self
            .command(index, secret_file)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("kv-server starts");
        self.nodes[index].child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn stop(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        let mut child = self.nodes[index].child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.client_addr.to_string())
            .collect()
    }

    pub fn client(&self) -> Client {
        self.client_for(self.endpoints())
    }

    pub fn client_for(&self, endpoints: Vec<String>) -> Client {
        let mut config = ClientConfig::new(endpoints);
        config.secret = Some(SECRET.as_bytes().to_vec());
        config.timeout = Duration::from_secs(15);
        Client::new(config).expect("client")
    }

    /// SIGSTOP of a node's process (what a VM pause or a stalled disk looks like from outside:
    /// its connections stay open, nothing answers); returns once the process is stopped. The
    /// returned guard sends SIGCONT when dropped, on a panic too, so the cluster can stop it.
    pub fn freeze(&self, index: usize) -> Frozen {
        let pid = self.nodes[index]
            .child
            .as_ref()
            .expect("a running node to freeze")
            .id();
        assert!(signal(pid, "STOP"), "kill -STOP {pid} failed");
        let frozen = Frozen { pid };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while process_state(pid) != Some('T') {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} did not stop"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        frozen
    }

    /// Index of the leader once every running node names the same one and it says it leads
    /// (after a failover the old leader may still call itself leader for a moment).
    pub async fn settled_leader(&self, within: Duration) -> usize {
        let client = self.client();
        let deadline = std::time::Instant::now() + within;
        loop {
            let mut statuses = Vec::new();
            for (index, (_, status)) in client.status_all().await.into_iter().enumerate() {
                if self.nodes[index].child.is_some() {
                    statuses.push((index, status.ok()));
                }
            }
            let leader_id = statuses
                .first()
                .and_then(|(_, status)| status.as_ref())
                .map(|status| status.leader_id);
            let leader = self
                .nodes
                .iter()
                .position(|node| Some(node.id) == leader_id);
            let settled = statuses.iter().all(|(index, status)| {
                status.as_ref().is_some_and(|status| {
                    let leads = status.role == paxkv_proto::client::Role::Leader as i32;
                    Some(status.leader_id) == leader_id && (leads == (Some(*index) == leader))
                })
            });
            if let (true, Some(leader)) = (settled, leader) {
                return leader;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the nodes did not agree on one leader within {within:?}: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Index of the node that reports itself leader, asking every node.
    pub async fn leader_index(&self) -> Option<usize> {
        let client = self.client();
        for (index, endpoint) in self.endpoints().iter().enumerate() {
            if self.nodes[index].child.is_none() {
                continue;
            }
            if let Ok(status) = client.status_of(endpoint).await {
                if status.role == paxkv_proto::client::Role::Leader as i32 {
                    return Some(index);
                }
            }
        }
        None
    }
}

/// A stopped process; SIGCONT when dropped.
pub struct Frozen {
    pid: u32,
}

impl Frozen {
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // No assertion here: a panic while unwinding would abort the test run.
        let _ = signal(self.pid, "CONT");
    }
}

/// Sends a signal by name with the `kill` command; true if it was delivered.
pub fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|status| status.success())
}

/// The state letter of a process from /proc (R running, S sleeping, T stopped, ...).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (name) state ...": the name may hold spaces and parentheses, so look after the last ')'.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}
