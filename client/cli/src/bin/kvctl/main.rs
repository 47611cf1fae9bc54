//! kvctl: the paxkv command line. Parses the command, runs it into an `Outcome`, and hands
//! that to the one renderer (`render`), which also picks the exit code (listed there).

mod outcome;
mod render;
mod txn;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use paxkv_cli::{parse_timeout, ClusterArgs};
use paxkv_client::{
    Client, ClientError, ExpireCondition, PutOptions, ReadConsistency, TtlState, SCAN_LIMIT_MAX,
};
use tokio::io::AsyncReadExt;

use crate::outcome::Outcome;
use crate::render::{render, Format, EXIT_OK, EXIT_USAGE};

/// Talk to a paxkv cluster.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Give up after this long, retries included (300ms, 5s, 2m; a bare number is seconds).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Give up after this many milliseconds (older spelling of --timeout).
    #[arg(long, global = true, hide = true, conflicts_with = "timeout")]
    timeout_ms: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a value (`-` reads it from stdin, bytes as they are). Without --ttl, --lease or
    /// --keep-ttl the key is permanent and attached to no lease, whatever it had before.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        options: WriteOptions,
    },
    /// Read a value; prints it as stored (bytes as they are).
    Get {
        key: String,
        /// linearizable: every write acknowledged before is seen (the leader answers);
        /// stale: any node's state, maybe behind; session: any node, never behind what this
        /// command saw (for one command, like stale).
        #[arg(long, value_enum, default_value = "linearizable")]
        consistency: ConsistencyArg,
        /// Same as --consistency stale.
        #[arg(long, conflicts_with_all = ["consistency", "min_revision"])]
        stale: bool,
        /// Any node that has applied at least this revision (waits for it within --timeout).
        #[arg(long, value_name = "REV", conflicts_with = "consistency")]
        min_revision: Option<u64>,
    },
    /// Delete a key (or, with --prefix, every key under it; with --range, every key in a
    /// range).
    Del {
        /// The key (with --prefix, the prefix).
        #[arg(required_unless_present = "range")]
        key: Option<String>,
        /// Only if the key's revision is this (exit code 4 and no change if it is not).
        #[arg(long, value_name = "REV", conflicts_with_all = ["prefix", "range"])]
        expected_rev: Option<u64>,
        /// Delete every key starting with KEY (exit 3 if there was none).
        #[arg(long, conflicts_with = "range")]
        prefix: bool,
        /// Delete every key from START (included) up to END (excluded, after START), 10,000
        /// at one revision (exit 3 if there was none), instead of KEY.
        #[arg(long, num_args = 2, value_names = ["START", "END"], conflicts_with = "key")]
        range: Option<Vec<String>>,
    },
    /// Write only if the key's revision is EXPECTED_REV (0: only if absent); VALUE `-` reads
    /// stdin. Takes the options of put, with the same meaning: without them the key becomes
    /// permanent and leaves its lease.
    Cas {
        key: String,
        expected_rev: u64,
        value: String,
        #[command(flatten)]
        options: WriteOptions,
    },
    /// Run a transaction written in JSON, from FILE or stdin: if every compare holds, the
    /// success operations, else the failure ones, all at one revision. Exit 0 when the
    /// success branch ran, 4 when the failure branch did, 2 when the JSON is wrong (then
    /// nothing is sent). --help shows the format.
    #[command(after_long_help = txn::FORMAT_HELP)]
    Txn {
        /// The file holding the transaction (`-` or none: stdin).
        #[arg(value_name = "FILE")]
        file: Option<String>,
        /// The transaction read from it (see `prepare`).
        #[arg(skip)]
        prepared: Option<txn::PreparedTxn>,
    },
    /// List keys starting with PREFIX (every one, a page of 1000 at a time, unless --limit).
    Scan {
        prefix: String,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<u64>,
        /// Keys only, no values.
        #[arg(long)]
        keys_only: bool,
    },
    /// Remaining time to live of a key.
    Ttl { key: String },
    /// Set a key's time to live in seconds. With a condition, exit code 4 when it does not
    /// hold (the key exists) and 3 when there is no key.
    Expire {
        key: String,
        seconds: f64,
        /// Only if the key has no TTL.
        #[arg(long, group = "condition")]
        nx: bool,
        /// Only if the key has a TTL.
        #[arg(long, group = "condition")]
        xx: bool,
        /// Only if the new deadline is later than the current one (no TTL counts as never).
        #[arg(long, group = "condition")]
        gt: bool,
        /// Only if the new deadline is earlier than the current one (no TTL counts as never).
        #[arg(long, group = "condition")]
        lt: bool,
    },
    /// Remove a key's time to live.
    Persist { key: String },
    /// Leases: grant, keep-alive, revoke, ttl, list.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
    /// Print every change of KEY (or, with --prefix, of the keys under it) as it happens:
    /// writes, deletes, expiry and lease revokes, in revision order, until Ctrl-C. Survives the
    /// node it reads from going away. Exit 4 if --rev is older than the nodes' history.
    Watch {
        key: String,
        /// KEY is a prefix (an empty one watches everything).
        #[arg(long)]
        prefix: bool,
        /// Start at this revision (default: the changes after now).
        #[arg(long, value_name = "REV")]
        rev: Option<u64>,
        /// Also show each key as it was before the change.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Status of every node.
    Status,
    /// Cluster membership: list, add, promote, remove.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

/// What a write does to the key's TTL and lease.
#[derive(clap::Args, Debug)]
struct WriteOptions {
    /// Time to live in seconds.
    #[arg(long)]
    ttl: Option<f64>,
    /// Attach the key to this lease.
    #[arg(long)]
    lease: Option<u64>,
    /// Keep the TTL the key has.
    #[arg(long, conflicts_with = "ttl")]
    keep_ttl: bool,
}

impl WriteOptions {
    fn put_options(&self) -> Result<PutOptions, ClientError> {
        let mut options = PutOptions::new();
        if let Some(seconds) = self.ttl {
            options = options.ttl_ms(millis(seconds)?);
        }
        if let Some(lease) = self.lease {
            options = options.lease(lease);
        }
        if self.keep_ttl {
            options = options.keep_ttl();
        }
        Ok(options)
    }
}

/// The read consistency of `get`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ConsistencyArg {
    Linearizable,
    Session,
    Stale,
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// The voters and learners, the configuration id, and a change in progress.
    List,
    /// Add the node whose peer port is at PEER_ADDR (such as [::1]:7104); the cluster picks
    /// its id. Then start that node with `kv-server --join`. Without --learner, waits (within
    /// --timeout) for it to catch up and promotes it to voter.
    Add {
        peer_addr: String,
        /// The node's client address, shown to clients and monitors.
        #[arg(long, default_value = "")]
        client_addr: String,
        /// Leave it a learner (receives the log, no vote) until `member promote`.
        #[arg(long)]
        learner: bool,
    },
    /// Make learner ID a voter (refused until it has caught up).
    Promote { id: u64 },
    /// Remove member ID for good (its id is never used again). Refused if the voters left
    /// that answer would not make a quorum.
    Remove { id: u64 },
}

#[derive(Subcommand, Debug)]
enum LeaseCommand {
    /// Create a lease living SECONDS unless kept alive; prints its id.
    Grant { seconds: f64 },
    /// Keep a lease alive: renews it at a third of its time to live, printing each renewal,
    /// until Ctrl-C (or once, with --once). Exits 3 if the lease is gone.
    KeepAlive {
        id: u64,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
    /// End a lease now, deleting its keys.
    Revoke { id: u64 },
    /// Remaining time and attached keys.
    Ttl { id: u64 },
    /// Every live lease: id, time left, time granted, how many keys.
    List,
}

fn millis(seconds: f64) -> Result<u64, ClientError> {
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(ClientError::InvalidArgument(
            format!("{seconds} is not a positive number of seconds").into(),
        ));
    }
    Ok((seconds * 1000.0).round().max(1.0) as u64)
}

/// A value as given: `-` is everything on stdin, byte for byte.
async fn value_bytes(value: String) -> Result<Vec<u8>, ClientError> {
    if value != "-" {
        return Ok(value.into_bytes());
    }
    let mut bytes = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut bytes)
        .await
        .map_err(|error| ClientError::InvalidArgument(format!("reading stdin: {error}").into()))?;
    Ok(bytes)
}

/// Every key under `prefix` (at most `limit`), page after page, all as they were at the
/// first page's revision (read linearizably): one state, however many pages.
async fn scan_all(
    client: &Client,
    prefix: &[u8],
    limit: Option<u64>,
    keys_only: bool,
) -> Result<Outcome, ClientError> {
    let wanted = limit.unwrap_or(u64::MAX);
    let mut kvs: Vec<paxkv_client::KeyValue> = Vec::new();
    let mut pinned = None;
    let (more, revision) = loop {
        let left = wanted - kvs.len() as u64;
        let page_size = left.min(u64::from(SCAN_LIMIT_MAX)) as u32;
        let after = kvs.last().map_or(&[][..], |kv| kv.key.as_slice()).to_vec();
        let page = match pinned {
            None => {
                client
                    .scan(prefix, &after, page_size, ReadConsistency::Linearizable)
                    .await?
            }
            Some(revision) => client.scan_at(prefix, &after, page_size, revision).await?,
        };
        pinned = Some(page.revision);
        kvs.extend(page.kvs);
        if !page.more || kvs.len() as u64 >= wanted {
            break (page.more, page.revision);
        }
    };
    Ok(Outcome::Rows {
        kvs,
        more,
        revision,
        limit: wanted,
        keys_only,
    })
}

/// `lease keep-alive` without --once: renews at a third of the time to live, printing each
/// renewal, until Ctrl-C (exit 0) or a failure (the lease gone: 3).
async fn keep_alive_until_interrupted(client: &Client, id: u64, format: Format) -> u8 {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let result = tokio::select! {
            _ = &mut interrupted => return EXIT_OK,
            result = client.lease_keep_alive(id) => result,
        }
        .map(|ttl_ms| Outcome::LeaseKeptAlive { ttl_ms });
        let rendered = render(&result, format);
        rendered.print();
        let Ok(Outcome::LeaseKeptAlive { ttl_ms }) = result else {
            return rendered.exit_code;
        };
        let pause = Duration::from_millis((ttl_ms / 3).max(1));
        tokio::select! {
            _ = &mut interrupted => return EXIT_OK,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// `watch`: prints every event until Ctrl-C (exit 0) or a failure.
async fn watch_until_interrupted(
    client: &Client,
    key: &str,
    options: paxkv_client::WatchOptions,
    format: Format,
) -> u8 {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut watch = tokio::select! {
        _ = &mut interrupted => return EXIT_OK,
        watch = client.watch(key.as_bytes(), options) => match watch {
            Ok(watch) => watch,
            Err(error) => return render::failure(&error),
        },
    };
    loop {
        let batch = tokio::select! {
            _ = &mut interrupted => return EXIT_OK,
            batch = watch.next() => batch,
        };
        match batch {
            Ok(batch) => {
                for event in &batch.events {
                    render::print_event(event, format);
                }
            }
            Err(error) => return render::failure(&error),
        }
    }
}

/// Reads and checks what a command needs before it goes to the cluster (a transaction file,
/// a range); an error here is bad usage, and nothing is sent.
async fn prepare(command: &mut Command) -> Result<(), String> {
    match command {
        Command::Txn { file, prepared } => {
            let (name, json) = read_input(file.as_deref()).await?;
            let parsed = txn::parse(&json).map_err(|error| format!("{name}: {error}"))?;
            *prepared = Some(parsed);
        }
        Command::Del {
            range: Some(range), ..
        } => txn::check_range(range[0].as_bytes(), range[1].as_bytes())?,
        _ => {}
    }
    Ok(())
}

/// What `file` holds (stdin for `-` or none) and the name to call it by; at most one byte
/// more than a transaction may have, so that a larger one is refused without reading it all.
async fn read_input(file: Option<&str>) -> Result<(String, Vec<u8>), String> {
    use std::io::Read;
    let limit = txn::TXN_FILE_BYTES_MAX as u64 + 1;
    let mut bytes = Vec::new();
    match file {
        None | Some("-") => {
            tokio::io::stdin()
                .take(limit)
                .read_to_end(&mut bytes)
                .await
                .map_err(|error| format!("reading stdin: {error}"))?;
            Ok(("stdin".to_string(), bytes))
        }
        Some(path) => {
            std::fs::File::open(path)
                .and_then(|file| file.take(limit).read_to_end(&mut bytes))
                .map_err(|error| format!("{path}: {error}"))?;
            Ok((path.to_string(), bytes))
        }
    }
}

/// Runs the command against the cluster.
async fn run(client: &Client, command: Command) -> Result<Outcome, ClientError> {
    let outcome = match command {
        Command::Put {
            key,
            value,
            options,
        } => {
            let value = value_bytes(value).await?;
            let put = client
                .put(key.as_bytes(), &value, options.put_options()?)
                .await?;
            Outcome::Written {
                revision: put.revision,
            }
        }
        Command::Get {
            key,
            consistency,
            stale,
            min_revision,
        } => {
            let consistency = match (stale, min_revision, consistency) {
                (true, _, _) | (_, None, ConsistencyArg::Stale) => ReadConsistency::Stale,
                (_, Some(revision), _) => ReadConsistency::AtLeast(revision),
                (_, None, ConsistencyArg::Session) => ReadConsistency::Session,
                (_, None, ConsistencyArg::Linearizable) => ReadConsistency::Linearizable,
            };
            let kv = client.get(key.as_bytes(), consistency).await?.kv;
            Outcome::Value { key, kv }
        }
        Command::Del {
            range: Some(range), ..
        } => Outcome::DeletedRange {
            count: client
                .delete_range(range[0].as_bytes(), range[1].as_bytes())
                .await?,
        },
        Command::Del {
            key: Some(key),
            prefix: true,
            ..
        } => Outcome::DeletedPrefix {
            count: client.delete_prefix(key.as_bytes()).await?,
        },
        Command::Del {
            key, expected_rev, ..
        } => {
            let key = key.expect("clap requires KEY unless --range is given");
            let delete = match expected_rev {
                Some(expected) => client.compare_and_delete(key.as_bytes(), expected).await?,
                None => client.delete(key.as_bytes()).await?,
            };
            Outcome::Deleted {
                key,
                expected_revision: expected_rev,
                delete,
            }
        }
        Command::Cas {
            key,
            expected_rev,
            value,
            options,
        } => {
            let value = value_bytes(value).await?;
            let cas = client
                .compare_and_set(key.as_bytes(), expected_rev, &value, options.put_options()?)
                .await?;
            Outcome::CompareAndSet {
                key,
                expected_revision: expected_rev,
                cas,
            }
        }
        Command::Scan {
            prefix,
            limit,
            keys_only,
        } => scan_all(client, prefix.as_bytes(), limit, keys_only).await?,
        Command::Txn { prepared, .. } => {
            let prepared = prepared.expect("main prepares the transaction before connecting");
            let result = client.txn(prepared.txn).await?;
            let steps = match result.succeeded {
                true => prepared.success,
                false => prepared.failure,
            };
            Outcome::Txn {
                succeeded: result.succeeded,
                revision: result.revision,
                steps,
                results: result.results,
            }
        }
        Command::Ttl { key } => Outcome::Ttl(client.ttl(key.as_bytes()).await?),
        Command::Expire {
            key,
            seconds,
            nx,
            xx,
            gt,
            lt,
        } => {
            let (condition, flag) = match (nx, xx, gt, lt) {
                (true, ..) => (ExpireCondition::Nx, "--nx"),
                (_, true, ..) => (ExpireCondition::Xx, "--xx"),
                (_, _, true, _) => (ExpireCondition::Gt, "--gt"),
                (.., true) => (ExpireCondition::Lt, "--lt"),
                _ => (ExpireCondition::Always, ""),
            };
            let applied = client
                .expire(key.as_bytes(), millis(seconds)?, condition)
                .await?;
            // Not set: tell a condition that did not hold from a missing key.
            let exists = !applied
                && condition != ExpireCondition::Always
                && client.ttl(key.as_bytes()).await?.state != TtlState::NoKey;
            Outcome::Expired {
                key,
                applied,
                exists,
                condition: flag,
            }
        }
        Command::Persist { key } => Outcome::Persisted {
            removed: client.persist(key.as_bytes()).await?,
        },
        Command::Lease { command } => run_lease(client, command).await?,
        Command::Status => Outcome::Status(client.status_all().await),
        Command::Watch { .. } => unreachable!("a watch runs until interrupted: see main"),
        Command::Member { command } => run_member(client, command).await?,
    };
    Ok(outcome)
}

async fn run_member(client: &Client, command: MemberCommand) -> Result<Outcome, ClientError> {
    let members = match command {
        MemberCommand::List => client.members().await?,
        MemberCommand::Add {
            peer_addr,
            client_addr,
            learner,
        } => {
            let added = client.member_add(&peer_addr, &client_addr).await?;
            if learner {
                added
            } else {
                promote_when_caught_up(client, added.node_id).await?
            }
        }
        MemberCommand::Promote { id } => client.member_promote(id).await?,
        MemberCommand::Remove { id } => client.member_remove(id).await?,
    };
    Ok(Outcome::Members(members))
}

/// Promotes learner `id`, asking again while it catches up, until the client's timeout.
async fn promote_when_caught_up(
    client: &Client,
    id: u64,
) -> Result<paxkv_client::MembersResponse, ClientError> {
    let deadline = tokio::time::Instant::now() + client.timeout();
    loop {
        match client.member_promote(id).await {
            Err(ClientError::Refused(message))
                if paxkv_client::refusal_passes_with_time(&message.message)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(ClientError::Refused(message))
                if paxkv_client::refusal_passes_with_time(&message.message) =>
            {
                return Err(ClientError::Refused(
                    format!(
                        "{message}; {id} was added as a learner: start it with kv-server \
                         --join, then run kvctl member promote {id}"
                    )
                    .into(),
                ));
            }
            other => return other,
        }
    }
}

async fn run_lease(client: &Client, command: LeaseCommand) -> Result<Outcome, ClientError> {
    let outcome = match command {
        LeaseCommand::Grant { seconds } => Outcome::LeaseGranted {
            lease_id: client.lease_grant(millis(seconds)?).await?,
        },
        LeaseCommand::KeepAlive { id, .. } => Outcome::LeaseKeptAlive {
            ttl_ms: client.lease_keep_alive(id).await?,
        },
        LeaseCommand::Revoke { id } => Outcome::LeaseRevoked {
            deleted_keys: client.lease_revoke(id).await?,
        },
        LeaseCommand::Ttl { id } => Outcome::LeaseTtl(client.lease_time_to_live(id, true).await?),
        LeaseCommand::List => {
            let mut leases = Vec::new();
            loop {
                let after = leases
                    .last()
                    .map_or(0, |lease: &paxkv_client::LeaseSummary| lease.lease_id);
                let page = client.lease_list(after, SCAN_LIMIT_MAX).await?;
                leases.extend(page.leases);
                if !page.more {
                    break Outcome::Leases(leases);
                }
            }
        }
    };
    Ok(outcome)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Err(message) = prepare(&mut args.command).await {
        eprintln!("kvctl: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let client = args
        .cluster
        .config(args.timeout_ms.map_or(args.timeout, Duration::from_millis))
        .and_then(Client::new);
    let result = match client {
        Ok(client) => match args.command {
            Command::Lease {
                command: LeaseCommand::KeepAlive { id, once: false },
            } => return ExitCode::from(keep_alive_until_interrupted(&client, id, format).await),
            Command::Watch {
                key,
                prefix,
                rev,
                prev_kv,
            } => {
                let mut options = paxkv_client::WatchOptions::new();
                if prefix {
                    options = options.prefix();
                }
                if let Some(rev) = rev {
                    options = options.from_revision(rev);
                }
                if prev_kv {
                    options = options.prev_kv();
                }
                return ExitCode::from(
                    watch_until_interrupted(&client, &key, options, format).await,
                );
            }
            command => run(&client, command).await,
        },
        Err(error) => Err(error),
    };
    let rendered = render(&result, format);
    rendered.print();
    ExitCode::from(rendered.exit_code)
}
