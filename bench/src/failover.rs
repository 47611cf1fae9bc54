//! The failover window: the time from killing the leader to the first put that succeeds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::backend::Conn;

/// Runs `command` through `sh -c` with the leader's endpoint as `$1`; returns when it was run.
pub async fn kill(command: &str, leader: &str) -> anyhow::Result<Instant> {
    let killed_at = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .arg("kv-bench")
        .arg(leader)
        .status()
        .await
        .with_context(|| format!("running the kill command {command:?}"))?;
    if !status.success() {
        bail!("the kill command {command:?} failed ({status}) for leader {leader}");
    }
    Ok(killed_at)
}

/// `workers` put in a loop; returns how long after `since` the first put that was sent at or
/// after `since` succeeded.
pub async fn first_success_after(
    conn: &Conn,
    since: Instant,
    workers: usize,
    give_up: Duration,
) -> anyhow::Result<Duration> {
    let (done, mut first) = tokio::sync::mpsc::channel::<Instant>(workers.max(1));
    let mut tasks = Vec::new();
    for worker in 0..workers.max(1) {
        let mut conn = conn.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("failover-{worker:06}").into_bytes();
            loop {
                let began = Instant::now();
                match conn.put(&key, b"x", None).await {
                    Ok(()) if began >= since => {
                        let _ = done.send(Instant::now()).await;
                        return;
                    }
                    Ok(()) => {}
                    // A refused connection fails at once: pause so the loop does not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    drop(done);
    let outcome = tokio::time::timeout(give_up, first.recv()).await;
    for task in &tasks {
        task.abort();
    }
    match outcome {
        Ok(Some(at)) => Ok(at.saturating_duration_since(since)),
        Ok(None) => bail!("every put worker stopped"),
        Err(_) => bail!("no put succeeded within {give_up:?} of the kill"),
    }
}
