//! The failover window: the time from the leader's failure (killed, or frozen with its
//! connections left open) to the first put that succeeds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::backend::Conn;

/// How the leader fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The process dies (kill -9): the kernel resets its connections, so clients learn at once.
    Kill,
    /// The process stops (SIGSTOP, a VM pause, a stalled disk): its connections stay open and
    /// nothing answers, so clients learn only from their own deadlines.
    Freeze,
}

impl Mode {
    /// What happened to the leader, for messages.
    pub fn past_tense(self) -> &'static str {
        match self {
            Mode::Kill => "killed",
            Mode::Freeze => "frozen",
        }
    }
}

/// Runs `command` through `sh -c` with the leader's endpoint as `$1`; returns when it was run.
/// `purpose` names the command in errors (kill, freeze, thaw).
pub async fn run_command(purpose: &str, command: &str, leader: &str) -> anyhow::Result<Instant> {
    let run_at = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .arg("kv-bench")
        .arg(leader)
        .status()
        .await
        .with_context(|| format!("running the {purpose} command {command:?}"))?;
    if !status.success() {
        bail!("the {purpose} command {command:?} failed ({status}) for leader {leader}");
    }
    Ok(run_at)
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
        Err(_) => bail!("no put succeeded within {give_up:?} of the leader's failure"),
    }
}
