//! `kv-server local-cluster`: starts a cluster of real `kv-server` processes on `[::1]` with data
//! under one directory, prints how to reach it, and stops every process on Ctrl-C or SIGTERM.

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

    pub fn secret_path(&self) -> PathBuf {
        self.dir.join("cluster-secret")
    }

    /// Creates the directory and a random secret (kept if it exists, so a restarted cluster
    /// keeps its data and its secret).
    fn prepare(&self) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        if !self.secret_path().exists() {
            let mut bytes = [0u8; 24];
            getrandom::getrandom(&mut bytes)
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            fs::write(self.secret_path(), format!("{hex}\n"))?;
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
            .env_remove("PAXKV_CLUSTER_SECRET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    }

    fn banner(&self) -> String {
        let endpoints = self.client_endpoints().join(",");
        let secret = self.secret_path().display().to_string();
        format!(
            "paxkv local cluster: {} nodes, data and logs under {}\n\
             \n  endpoints:   {endpoints}\n  secret file: {secret}\n\
             \nTalk to it from another terminal:\n\
             \n  cargo run --release -q --bin kvctl -- --endpoints {endpoints} --cluster-secret-file {secret} put hello world\
             \n  cargo run --release -q --bin kvctl -- --endpoints {endpoints} --cluster-secret-file {secret} get hello\
             \n  cargo run --release -q --bin kvctl -- --endpoints {endpoints} --cluster-secret-file {secret} status\n\
             \nor set PAXKV_CLUSTER_SECRET=$(cat {secret}) and PAXKV_ENDPOINTS={endpoints}.\n\
             \nPress Ctrl-C to stop every node.\n",
            self.nodes,
            self.dir.display()
        )
    }
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
    let stopped_early = tokio::select! {
        biased;
        _ = crate::shutdown_signal() => false,
        _ = watch_children(&mut children) => true,
    };
    if stopped_early {
        eprintln!(
            "a node exited on its own; see its log under {}",
            cluster.dir.display()
        );
    }
    stop(&mut children);
    println!("stopped {} nodes", children.len());
    Ok(())
}

/// Returns once any child has exited.
async fn watch_children(children: &mut [Child]) {
    loop {
        for child in children.iter_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks every node to stop (SIGTERM), waits up to five seconds, then kills what is left.
fn stop(children: &mut [Child]) {
    for child in children.iter() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
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
