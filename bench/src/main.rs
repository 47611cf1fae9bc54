//! kv-bench: puts load on a paxkv cluster (or, built with `--features etcd`, an etcd cluster)
//! and reports throughput and latency percentiles as a table and as JSON.

mod backend;
mod failover;
mod load;
mod report;
mod watch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use paxkv_cli::{parse_duration, ClusterArgs};

use crate::backend::Kind;
use crate::load::{Plan, Shape, Workload};
use crate::report::{Report, RunReport};

/// Load generator for paxkv: throughput and latency percentiles of put, get, TTL and lease
/// workloads, against paxkv or (built with `--features etcd`) etcd under the same load.
///
/// Example (a local cluster started with `kv-server local-cluster`):
///   kv-bench --workload put,get --concurrency 64 --duration 10s --json out.json
#[derive(Parser, Debug)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Kill or freeze the leader with a command and measure how long puts fail (from the
    /// failure to the first put that succeeds).
    Failover(FailoverArgs),
    /// Wait until one node answers a local read of a key; print how long that took.
    Ready(ReadyArgs),
    /// Put from many workers while a shell command runs (a membership change: replace a dead
    /// node), and report the longest time without any acknowledged put.
    WriteGap(WriteGapArgs),
}

#[derive(Args, Debug)]
struct WriteGapArgs {
    #[command(flatten)]
    target: Target,
    /// Shell command run while the workers put (its standard output is passed through).
    #[arg(long)]
    command: String,
    /// Workers putting (distinct keys, each waits for its answer).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Puts before the command starts, and after it ends.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct Target {
    /// The store to drive.
    #[arg(long, value_enum, default_value = "paxkv")]
    backend: Kind,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// How long one request may take, retries included, before it counts as an error.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    request_timeout: Duration,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Workloads to run one after another, separated by commas.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "put,get")]
    workload: Vec<Workload>,
    /// Requests in flight at once (each worker waits for its answer before the next).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Client connections the workers share (each one a client object with its own sockets).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Distinct keys the workloads pick from (reads preload them all first).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Measured time of each workload (like 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Unmeasured time before each workload's measurement starts.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    warmup: Duration,
    /// TTL of the keys the ttl-churn workload writes.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    ttl: Duration,
    /// TTL of the leases of the lease workload.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    lease_ttl: Duration,
    /// Watches the watch workload opens on its prefix (each gets every put).
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Puts per second the watch workload's writer sends (one at a time, on a fixed schedule).
    #[arg(long, default_value_t = 100)]
    put_rate: u32,
    /// Percent of the mixed workload's requests that are gets (the rest are puts).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100))]
    read_share: u8,
    /// Do not write the keys before read workloads (they must exist already).
    #[arg(long)]
    no_preload: bool,
    /// Also write the results as JSON to this file (- for standard output, then the table
    /// goes to standard error).
    #[arg(long)]
    json: Option<PathBuf>,
    /// A name for this run in the table and the JSON (like the round of a comparison).
    #[arg(long, default_value = "")]
    label: String,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Fail (exit 1) if any request failed or a read missed a preloaded key.
    #[arg(long)]
    strict: bool,
}

#[derive(Args, Debug)]
struct FailoverArgs {
    #[command(flatten)]
    target: Target,
    /// How the leader fails: killed, or frozen with its connections left open.
    #[arg(long, value_enum, default_value = "kill")]
    mode: failover::Mode,
    /// Shell command that kills the leader (mode kill); it gets the leader's endpoint as $1.
    #[arg(long)]
    kill_command: Option<String>,
    /// Shell command that freezes the leader (mode freeze), e.g. sends its process SIGSTOP;
    /// it gets the leader's endpoint as $1.
    #[arg(long, required_if_eq("mode", "freeze"))]
    freeze_command: Option<String>,
    /// Shell command that lets the frozen leader go on (mode freeze), e.g. sends it SIGCONT;
    /// it gets the leader's endpoint as $1. Run after the measurement, also when it failed.
    #[arg(long, required_if_eq("mode", "freeze"))]
    thaw_command: Option<String>,
    /// Workers putting while the leader fails.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Puts before the failure, to be sure the cluster is serving.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Give up if no put succeeds this long after the leader's failure.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    give_up: Duration,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReadyArgs {
    #[command(flatten)]
    target: Target,
    /// The key that must be readable (a local read at the node).
    #[arg(long)]
    key: String,
    /// Wait also until the node has caught up: it knows its leader and has applied everything
    /// it knows to be committed (a restarted node may answer a local read before that).
    #[arg(long)]
    caught_up: bool,
    /// Give up after this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    give_up: Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            None => run(cli.run).await,
            Some(Command::Failover(args)) => failover(args).await,
            Some(Command::Ready(args)) => ready(args).await,
            Some(Command::WriteGap(args)) => write_gap(args).await,
        }
    })
}

async fn connect(target: &Target, count: usize) -> anyhow::Result<Vec<backend::Conn>> {
    let endpoints = target.cluster.endpoint_list();
    let secret = match target.backend {
        // The secret file is paxkv's; etcd in the comparison runs without authentication.
        Kind::Paxkv => target.cluster.config(target.request_timeout)?.secret,
        Kind::Etcd => None,
    };
    backend::connect(
        target.backend,
        &endpoints,
        secret,
        target.request_timeout,
        count,
    )
    .await
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shape = Shape {
        keys: args.keys,
        key_size: args.key_size,
        value_size: args.value_size,
        ttl: args.ttl,
        lease_ttl: args.lease_ttl,
    };
    shape.validate()?;
    if args.workload.is_empty() {
        bail!("--workload needs at least one workload");
    }
    let conns = connect(&args.target, args.connections.max(1)).await?;
    let plan_of = |workload| Plan {
        workload,
        concurrency: args.concurrency,
        warmup: args.warmup,
        duration: args.duration,
        shape,
        progress: !args.quiet,
        watchers: args.watchers,
        put_rate: args.put_rate,
        read_share: args.read_share,
    };
    let mut report = Report::default();
    let mut preloaded = args.no_preload;
    for &workload in &args.workload {
        if workload.reads() && !preloaded {
            load::run(&conns, plan_of(Workload::Load))
                .await
                .context("preloading the keys")?;
            preloaded = true;
        }
        let outcome = load::run(&conns, plan_of(workload)).await?;
        if workload == Workload::Load {
            preloaded = true;
        }
        report.runs.push(RunReport::new(
            args.target.backend,
            &args.label,
            &plan_of(workload),
            args.connections,
            &outcome,
        ));
    }
    let table = report.table();
    match &args.json {
        Some(path) if path.as_os_str() == "-" => {
            eprint!("{table}");
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some(path) => {
            print!("{table}");
            std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => print!("{table}"),
    }
    if args.strict {
        for run in &report.runs {
            if run.errors > 0 || run.misses > 0 || run.ops == 0 {
                bail!(
                    "{}: {} ops, {} errors, {} missing keys{}",
                    run.workload,
                    run.ops,
                    run.errors,
                    run.misses,
                    run.first_error
                        .as_ref()
                        .map(|error| format!(" (first error: {error})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// Puts from many workers; kills or freezes the leader; reports the time from then to the
/// first put that was sent after it and succeeded. A frozen leader is thawed at the end.
async fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    let (purpose, command) = match args.mode {
        failover::Mode::Kill => ("kill", &args.kill_command),
        failover::Mode::Freeze => ("freeze", &args.freeze_command),
    };
    let Some(command) = command else {
        bail!("--mode {purpose} needs --{purpose}-command");
    };
    let endpoints = args.target.cluster.endpoint_list();
    let mut conns = connect(&args.target, 1).await?;
    let shape = Shape {
        keys: 1000,
        key_size: 16,
        value_size: 100,
        ttl: Duration::from_secs(5),
        lease_ttl: Duration::from_secs(10),
    };
    let warm = Plan {
        workload: Workload::Put,
        concurrency: args.concurrency,
        warmup: Duration::ZERO,
        duration: args.warmup,
        shape,
        progress: false,
        watchers: 0,
        put_rate: 0,
        read_share: 0,
    };
    let before = load::run(&conns, warm).await?;
    if before.ops == 0 {
        bail!(
            "no put succeeded before the failure: {}",
            before.first_error.unwrap_or_default()
        );
    }
    let leader = conns[0].leader_endpoint(&endpoints).await?;
    let failed_at = failover::run_command(purpose, command, &leader).await?;
    let window =
        failover::first_success_after(&conns[0], failed_at, args.concurrency, args.give_up).await;
    if let Some(thaw) = &args.thaw_command {
        failover::run_command("thaw", thaw, &leader).await?;
    }
    let what = args.mode.past_tense();
    let window = window.with_context(|| format!("after the leader at {leader} was {what}"))?;
    let millis = window.as_secs_f64() * 1000.0;
    println!(
        "{} failover: leader {leader} {what}; first put after it succeeded {millis:.0} ms later",
        args.target.backend.name()
    );
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "backend": args.target.backend,
            "mode": args.mode,
            "leader": leader,
            "failover_ms": millis,
            "request_timeout_ms": args.target.request_timeout.as_millis() as u64,
        });
        std::fs::write(&path, json.to_string() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    conns.clear();
    Ok(())
}

/// Puts from `concurrency` workers while `command` runs; reports the acknowledged puts and
/// the longest time between two acknowledgements from the command's start to the end.
async fn write_gap(args: WriteGapArgs) -> anyhow::Result<()> {
    let conns = connect(&args.target, 1).await?;
    let acks = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..args.concurrency.max(1) {
        let (mut conn, acks, stop) = (conns[0].clone(), acks.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut sequence = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sequence += 1;
                let key = format!("gap-{worker:04}-{:010}", sequence % 1000).into_bytes();
                match conn.put(&key, b"x", None).await {
                    Ok(()) => acks.lock().expect("not poisoned").push(Instant::now()),
                    // A refused connection fails at once: pause so the loop does not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    tokio::time::sleep(args.warmup).await;
    let began = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&args.command)
        .status()
        .await
        .with_context(|| format!("running {:?}", args.command))?;
    let command_ms = began.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(args.warmup).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    if !status.success() {
        bail!("the command {:?} failed ({status})", args.command);
    }
    let mut acks = acks.lock().expect("not poisoned").clone();
    acks.sort();
    let gap_ms = acks
        .windows(2)
        .filter(|pair| pair[1] > began)
        .map(|pair| (pair[1] - pair[0]).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    println!(
        "{}: {} puts acknowledged; the command took {command_ms:.0} ms; longest write gap \
         {gap_ms:.0} ms",
        args.target.backend.name(),
        acks.len()
    );
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "backend": args.target.backend,
            "acknowledged": acks.len(),
            "command_ms": command_ms,
            "write_gap_ms": gap_ms,
        });
        std::fs::write(&path, json.to_string() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Polls one node with a local read of `key` until it answers with a value (and, with
/// `--caught-up`, until the node has caught up).
async fn ready(args: ReadyArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let endpoints = args.target.cluster.endpoint_list();
    if endpoints.len() != 1 {
        bail!("ready checks one node: give exactly one endpoint");
    }
    let mut last_error = String::from("no answer yet");
    while start.elapsed() < args.give_up {
        let attempt = async {
            let mut conns = connect(&args.target, 1).await?;
            let conn = &mut conns[0];
            Ok::<_, anyhow::Error>(
                conn.get(args.key.as_bytes(), true).await?
                    && (!args.caught_up || conn.caught_up().await?),
            )
        };
        match tokio::time::timeout(Duration::from_millis(500), attempt).await {
            Ok(Ok(true)) => {
                println!("{:.0}", start.elapsed().as_secs_f64() * 1000.0);
                return Ok(());
            }
            Ok(Ok(false)) if args.caught_up => {
                last_error = format!("{} not there, or the node not caught up (yet)", args.key)
            }
            Ok(Ok(false)) => last_error = format!("{} not there (yet)", args.key),
            Ok(Err(error)) => last_error = format!("{error:#}"),
            Err(_) => last_error = "no answer within 500 ms".into(),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!(
        "the node did not serve {} within {:?}: {last_error}",
        args.key,
        args.give_up
    )
}
