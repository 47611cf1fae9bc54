//! kvctl: the paxkv command line.
//!
//! Exit codes: 0 done; 1 error; 2 bad usage; 3 not found (no such key or lease);
//! 4 compare-and-set conflict (the key's revision was not the expected one).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use paxkv_client::{
    Client, ClientError, ClusterArgs, ExpireCondition, KeyValue, PutOptions, ReadConsistency,
    TtlState,
};

const EXIT_ERROR: u8 = 1;
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_CONFLICT: u8 = 4;

/// Talk to a paxkv cluster.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Give up after this many milliseconds (retries included).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a value.
    Put {
        key: String,
        value: String,
        /// Time to live in seconds.
        #[arg(long)]
        ttl: Option<f64>,
        /// Attach the key to this lease.
        #[arg(long)]
        lease: Option<u64>,
    },
    /// Read a value (linearizable unless --stale).
    Get {
        key: String,
        #[arg(long)]
        stale: bool,
    },
    /// Delete a key.
    Del { key: String },
    /// Write only if the key's revision is EXPECTED_REV (0: only if absent).
    Cas {
        key: String,
        expected_rev: u64,
        value: String,
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

fn json_string(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn kv_json(kv: &KeyValue) -> String {
    format!(
        "{{\"key\":{},\"value\":{},\"create_revision\":{},\"mod_revision\":{},\"version\":{},\"lease\":{}}}",
        json_string(&kv.key),
        json_string(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease_id
    )
}

/// Runs the command; returns the text to print and the exit code.
async fn run(client: &Client, command: Command, json: bool) -> Result<(String, u8), ClientError> {
    let done = |text: String| Ok((text, 0));
    match command {
        Command::Put {
            key,
            value,
            ttl,
            lease,
        } => {
            let options = PutOptions {
                ttl_ms: ttl.map(millis).transpose()?,
                lease_id: lease,
                keep_ttl: false,
            };
            let put = client
                .put(key.as_bytes(), value.as_bytes(), options)
                .await?;
            done(if json {
                format!("{{\"revision\":{}}}", put.revision)
            } else {
                format!("OK (revision {})", put.revision)
            })
        }
        Command::Get { key, stale } => {
            let consistency = if stale {
                ReadConsistency::Stale
            } else {
                ReadConsistency::Linearizable
            };
            let get = client.get(key.as_bytes(), consistency).await?;
            match get.kv {
                Some(kv) if json => done(kv_json(&kv)),
                Some(kv) => done(String::from_utf8_lossy(&kv.value).into_owned()),
                None => Ok((
                    if json {
                        "null".into()
                    } else {
                        format!("(no key {key})")
                    },
                    EXIT_NOT_FOUND,
                )),
            }
        }
        Command::Del { key } => {
            let delete = client.delete(key.as_bytes()).await?;
            let code = if delete.deleted { 0 } else { EXIT_NOT_FOUND };
            let text = if json {
                format!(
                    "{{\"deleted\":{},\"revision\":{}}}",
                    delete.deleted, delete.revision
                )
            } else if delete.deleted {
                format!("deleted (revision {})", delete.revision)
            } else {
                format!("(no key {key})")
            };
            Ok((text, code))
        }
        Command::Cas {
            key,
            expected_rev,
            value,
        } => {
            let cas = client
                .compare_and_set(key.as_bytes(), expected_rev, value.as_bytes())
                .await?;
            let current = cas.previous.as_ref().map_or(0, |kv| kv.mod_revision);
            let code = if cas.succeeded { 0 } else { EXIT_CONFLICT };
            let text = if json {
                format!(
                    "{{\"succeeded\":{},\"revision\":{}}}",
                    cas.succeeded, cas.revision
                )
            } else if cas.succeeded {
                format!("OK (revision {})", cas.revision)
            } else {
                format!("conflict: {key} is at revision {current}, not {expected_rev}")
            };
            Ok((text, code))
        }
        Command::Scan { prefix, limit } => {
            let page = client
                .scan(prefix.as_bytes(), b"", limit, ReadConsistency::Linearizable)
                .await?;
            let text = if json {
                format!(
                    "[{}]",
                    page.kvs.iter().map(kv_json).collect::<Vec<_>>().join(",")
                )
            } else {
                let mut lines: Vec<String> = page
                    .kvs
                    .iter()
                    .map(|kv| {
                        format!(
                            "{} = {}",
                            String::from_utf8_lossy(&kv.key),
                            String::from_utf8_lossy(&kv.value)
                        )
                    })
                    .collect();
                if page.more {
                    lines.push(format!("(more; raise --limit above {limit})"));
                }
                lines.join("\n")
            };
            done(text)
        }
        Command::Ttl { key } => {
            let ttl = client.ttl(key.as_bytes()).await?;
            let (text, code) = match ttl.state {
                TtlState::NoKey => ("no such key".to_string(), EXIT_NOT_FOUND),
                TtlState::NoTtl => ("no TTL".to_string(), 0),
                TtlState::Remaining => (format!("{:.3} s", ttl.remaining_ms as f64 / 1000.0), 0),
            };
            if json {
                return Ok((
                    format!(
                        "{{\"state\":\"{:?}\",\"remaining_ms\":{}}}",
                        ttl.state, ttl.remaining_ms
                    ),
                    code,
                ));
            }
            Ok((text, code))
        }
        Command::Expire { key, seconds } => {
            let applied = client
                .expire(key.as_bytes(), millis(seconds)?, ExpireCondition::Always)
                .await?;
            let code = if applied { 0 } else { EXIT_NOT_FOUND };
            Ok((
                if json {
                    format!("{{\"applied\":{applied}}}")
                } else if applied {
                    "OK".into()
                } else {
                    format!("(no key {key})")
                },
                code,
            ))
        }
        Command::Persist { key } => {
            let removed = client.persist(key.as_bytes()).await?;
            done(if json {
                format!("{{\"removed\":{removed}}}")
            } else if removed {
                "OK".into()
            } else {
                "(no TTL to remove)".into()
            })
        }
        Command::Lease { command } => run_lease(client, command, json).await,
        Command::Status => {
            let mut lines = Vec::new();
            for (endpoint, status) in client.status_all().await {
                let line = match status {
                    Ok(status) if json => format!(
                        "{{\"endpoint\":{},\"node\":{},\"role\":{},\"leader\":{},\"commit\":{},\"applied\":{},\"revision\":{},\"keys\":{}}}",
                        json_string(endpoint.as_bytes()), status.node_id, status.role, status.leader_id,
                        status.commit_index, status.applied_index, status.revision, status.key_count
                    ),
                    Ok(status) => format!(
                        "{endpoint}  node {}  {:<9} leader {}  commit {}  applied {}  revision {}  keys {}",
                        status.node_id,
                        status.role().as_str_name().trim_start_matches("ROLE_").to_lowercase(),
                        status.leader_id,
                        status.commit_index,
                        status.applied_index,
                        status.revision,
                        status.key_count
                    ),
                    Err(error) if json => format!("{{\"endpoint\":{},\"error\":{}}}", json_string(endpoint.as_bytes()), json_string(error.to_string().as_bytes())),
                    Err(error) => format!("{endpoint}  unreachable: {error}"),
                };
                lines.push(line);
            }
            done(if json {
                format!("[{}]", lines.join(","))
            } else {
                lines.join("\n")
            })
        }
    }
}

async fn run_lease(
    client: &Client,
    command: LeaseCommand,
    json: bool,
) -> Result<(String, u8), ClientError> {
    let text = match command {
        LeaseCommand::Grant { seconds } => {
            let id = client.lease_grant(millis(seconds)?).await?;
            if json {
                format!("{{\"lease\":{id}}}")
            } else {
                id.to_string()
            }
        }
        LeaseCommand::KeepAlive { id } => {
            let ttl_ms = client.lease_keep_alive(id).await?;
            if json {
                format!("{{\"ttl_ms\":{ttl_ms}}}")
            } else {
                format!("kept alive for {:.3} s", ttl_ms as f64 / 1000.0)
            }
        }
        LeaseCommand::Revoke { id } => {
            let deleted = client.lease_revoke(id).await?;
            if json {
                format!("{{\"deleted_keys\":{deleted}}}")
            } else {
                format!("revoked; {deleted} keys deleted")
            }
        }
        LeaseCommand::Ttl { id } => {
            let lease = client.lease_time_to_live(id, true).await?;
            let keys: Vec<String> = lease
                .keys
                .iter()
                .map(|key| String::from_utf8_lossy(key).into_owned())
                .collect();
            if json {
                let keys: Vec<String> = lease.keys.iter().map(|key| json_string(key)).collect();
                format!(
                    "{{\"remaining_ms\":{},\"granted_ttl_ms\":{},\"keys\":[{}]}}",
                    lease.remaining_ms,
                    lease.granted_ttl_ms,
                    keys.join(",")
                )
            } else {
                format!(
                    "{:.3} s left of {:.3} s; keys: {}",
                    lease.remaining_ms as f64 / 1000.0,
                    lease.granted_ttl_ms as f64 / 1000.0,
                    keys.join(" ")
                )
            }
        }
    };
    Ok((text, 0))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.cluster.config(Duration::from_millis(args.timeout_ms)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kvctl: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let client = match Client::new(config) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("kvctl: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match run(&client, args.command, args.json).await {
        Ok((text, code)) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::from(code)
        }
        Err(ClientError::NotFound(message)) => {
            eprintln!("kvctl: {message}");
            ExitCode::from(EXIT_NOT_FOUND)
        }
        Err(error) => {
            eprintln!("kvctl: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
