//! kvctl: the paxkv command line. Parses the command, runs it into an `Outcome`, and hands
//! that to the one renderer (`render`), which also picks the exit code (listed there).

mod outcome;
mod render;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use paxkv_cli::{parse_timeout, ClusterArgs};
use paxkv_client::{Client, ClientError, ExpireCondition, PutOptions, ReadConsistency};

use crate::outcome::Outcome;
use crate::render::{render, Format};

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
    /// Write a value. Without --ttl, --lease or --keep-ttl the key is permanent and attached to
    /// no lease, whatever it had before.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        options: WriteOptions,
    },
    /// Read a value (linearizable unless --stale).
    Get {
        key: String,
        #[arg(long)]
        stale: bool,
    },
    /// Delete a key.
    Del {
        key: String,
        /// Only if the key's revision is this (exit code 4 and no change if it is not).
        #[arg(long, value_name = "REV")]
        expected_rev: Option<u64>,
    },
    /// Write only if the key's revision is EXPECTED_REV (0: only if absent). Takes the options
    /// of put, with the same meaning: without them the key becomes permanent and leaves its
    /// lease.
    Cas {
        key: String,
        expected_rev: u64,
        value: String,
        #[command(flatten)]
        options: WriteOptions,
    },
    /// List keys starting with PREFIX.
    Scan {
        prefix: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Remaining time to live of a key.
    Ttl { key: String },
    /// Set a key's time to live in seconds.
    Expire { key: String, seconds: f64 },
    /// Remove a key's time to live.
    Persist { key: String },
    /// Leases: grant, keep-alive, revoke, ttl.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
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
        Ok(PutOptions {
            ttl_ms: self.ttl.map(millis).transpose()?,
            lease_id: self.lease,
            keep_ttl: self.keep_ttl,
        })
    }
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
    Grant {
        seconds: f64,
    },
    KeepAlive {
        id: u64,
    },
    Revoke {
        id: u64,
    },
    /// Remaining time and attached keys.
    Ttl {
        id: u64,
    },
}

fn millis(seconds: f64) -> Result<u64, ClientError> {
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(ClientError::InvalidArgument(format!(
            "{seconds} is not a positive number of seconds"
        )));
    }
    Ok((seconds * 1000.0).round().max(1.0) as u64)
}

/// Runs the command against the cluster.
async fn run(client: &Client, command: Command) -> Result<Outcome, ClientError> {
    let outcome = match command {
        Command::Put {
            key,
            value,
            options,
        } => {
            let put = client
                .put(key.as_bytes(), value.as_bytes(), options.put_options()?)
                .await?;
            Outcome::Written {
                revision: put.revision,
            }
        }
        Command::Get { key, stale } => {
            let consistency = if stale {
                ReadConsistency::Stale
            } else {
                ReadConsistency::Linearizable
            };
            let kv = client.get(key.as_bytes(), consistency).await?.kv;
            Outcome::Value { key, kv }
        }
        Command::Del { key, expected_rev } => {
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
            let cas = client
                .compare_and_set(
                    key.as_bytes(),
                    expected_rev,
                    value.as_bytes(),
                    options.put_options()?,
                )
                .await?;
            Outcome::CompareAndSet {
                key,
                expected_revision: expected_rev,
                cas,
            }
        }
        Command::Scan { prefix, limit } => {
            let page = client
                .scan(prefix.as_bytes(), b"", limit, ReadConsistency::Linearizable)
                .await?;
            Outcome::Rows { page, limit }
        }
        Command::Ttl { key } => Outcome::Ttl(client.ttl(key.as_bytes()).await?),
        Command::Expire { key, seconds } => {
            let applied = client
                .expire(key.as_bytes(), millis(seconds)?, ExpireCondition::Always)
                .await?;
            Outcome::Expired { key, applied }
        }
        Command::Persist { key } => Outcome::Persisted {
            removed: client.persist(key.as_bytes()).await?,
        },
        Command::Lease { command } => run_lease(client, command).await?,
        Command::Status => Outcome::Status(client.status_all().await),
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
                if paxkv_client::refusal_passes_with_time(&message)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(ClientError::Refused(message))
                if paxkv_client::refusal_passes_with_time(&message) =>
            {
                return Err(ClientError::Refused(format!(
                    "{message}; {id} was added as a learner: start it with kv-server --join, \
                     then run kvctl member promote {id}"
                )));
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
        LeaseCommand::KeepAlive { id } => Outcome::LeaseKeptAlive {
            ttl_ms: client.lease_keep_alive(id).await?,
        },
        LeaseCommand::Revoke { id } => Outcome::LeaseRevoked {
            deleted_keys: client.lease_revoke(id).await?,
        },
        LeaseCommand::Ttl { id } => Outcome::LeaseTtl(client.lease_time_to_live(id, true).await?),
    };
    Ok(outcome)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
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
        Ok(client) => run(&client, args.command).await,
        Err(error) => Err(error),
    };
    let rendered = render(&result, format);
    rendered.print();
    ExitCode::from(rendered.exit_code)
}
