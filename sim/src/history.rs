//! Client histories: the JSON-lines format of `sim/HISTORY.md`, parsed into operations with an
//! invocation and (maybe) a completion.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One line of a history file.
#[derive(Debug, Clone, Deserialize)]
struct Event {
    process: u64,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    key: Option<String>,
    value: Option<String>,
    expected_revision: Option<u64>,
    ttl_ms: Option<u64>,
    lease_id: Option<u64>,
    consistency: Option<String>,
    revision: Option<u64>,
    mod_revision: Option<u64>,
    log_time_ms: Option<u64>,
    succeeded: Option<bool>,
    ttl_state: Option<String>,
    remaining_ms: Option<u64>,
}

/// How fresh a read asked to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// Must reflect every write completed before it: checked for linearizability.
    Linearizable,
    /// Any replica's state: checked only for returning a value that was written.
    Stale,
    /// Like stale, but never older than what the same process has seen before.
    Session,
}

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Write `value`; with a TTL (the key expires `ttl_ms` after the write's log time) or
    /// attached to a lease (the key goes when the lease does).
    Put {
        value: String,
        ttl_ms: Option<u64>,
        lease_id: Option<u64>,
    },
    Get {
        read: ReadKind,
    },
    Delete,
    /// Write `value` if the key's revision is `expected_revision` (0: if absent).
    Cas {
        expected_revision: u64,
        value: String,
    },
    /// Give an existing key a TTL of `ttl_ms` from the operation's log time.
    Expire {
        ttl_ms: u64,
    },
    /// Ask for a key's remaining time to live.
    Ttl,
    /// Grant a lease; the keys later attached to it live while it does.
    LeaseGrant {
        ttl_ms: u64,
    },
    LeaseKeepAlive {
        lease_id: u64,
    },
    LeaseRevoke {
        lease_id: u64,
    },
}

impl Call {
    pub fn name(&self) -> &'static str {
        match self {
            Call::Put { .. } => "put",
            Call::Get { .. } => "get",
            Call::Delete => "delete",
            Call::Cas { .. } => "cas",
            Call::Expire { .. } => "expire",
            Call::Ttl => "ttl",
            Call::LeaseGrant { .. } => "lease_grant",
            Call::LeaseKeepAlive { .. } => "lease_keepalive",
            Call::LeaseRevoke { .. } => "lease_revoke",
        }
    }

    /// Whether the linearizability search judges it (stale and session reads are judged apart).
    pub fn is_linearizable(&self) -> bool {
        !matches!(
            self,
            Call::Get {
                read: ReadKind::Stale | ReadKind::Session
            }
        )
    }
}

/// What a `ttl` call answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlAnswer {
    NoKey,
    NoTtl,
    Remaining(u64),
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Completed: what it returned.
    Ok(Returned),
    /// Certainly did not take effect.
    Failed,
    /// Unknown: may or may not have taken effect (timeouts, lost connections, no completion).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// A put or a successful CAS: the revision it created.
    Written {
        revision: Option<u64>,
    },
    /// A get: the value read, and the revision that last wrote it (if reported).
    Read {
        value: Option<String>,
        mod_revision: Option<u64>,
    },
    /// A delete: whether a key was removed.
    Deleted {
        deleted: bool,
    },
    /// A CAS that did not write.
    CasRefused,
    /// An expire: whether the key existed and got the TTL.
    Expired {
        applied: bool,
    },
    Ttl(TtlAnswer),
    Granted {
        lease_id: u64,
    },
    /// A keep-alive or revoke: whether the lease was alive.
    LeaseFound {
        found: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: usize,
    pub process: u64,
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
    /// Revision and log time of the state the answer was served at (completed operations).
    pub revision: Option<u64>,
    pub log_time_ms: Option<u64>,
    /// Position of the invocation and completion in the history (completion: None if unknown).
    pub invoked_at: usize,
    pub completed_at: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("line {line}: {message}")]
    Bad { line: usize, message: String },
}

fn bad(line: usize, message: impl Into<String>) -> HistoryError {
    HistoryError::Bad {
        line,
        message: message.into(),
    }
}

fn parse_call(event: &Event, line: usize) -> Result<Call, HistoryError> {
    let need = |field: Option<u64>, name: &str| {
        field.ok_or_else(|| bad(line, format!("`{}` needs {name}", event.f)))
    };
    let value = || {
        event
            .value
            .clone()
            .ok_or_else(|| bad(line, format!("`{}` needs a value", event.f)))
    };
    Ok(match event.f.as_str() {
        "put" => Call::Put {
            value: value()?,
            ttl_ms: event.ttl_ms,
            lease_id: event.lease_id,
        },
        "get" => Call::Get {
            read: match event.consistency.as_deref() {
                None | Some("linearizable") => ReadKind::Linearizable,
                Some("stale") => ReadKind::Stale,
                Some("session") => ReadKind::Session,
                Some(other) => {
                    return Err(bad(
                        line,
                        format!("unknown consistency `{other}` (linearizable, stale, session)"),
                    ))
                }
            },
        },
        "delete" => Call::Delete,
        "cas" => Call::Cas {
            expected_revision: need(event.expected_revision, "expected_revision")?,
            value: value()?,
        },
        "expire" => Call::Expire {
            ttl_ms: need(event.ttl_ms, "ttl_ms")?,
        },
        "ttl" => Call::Ttl,
        "lease_grant" => Call::LeaseGrant {
            ttl_ms: need(event.ttl_ms, "ttl_ms")?,
        },
        "lease_keepalive" => Call::LeaseKeepAlive {
            lease_id: need(event.lease_id, "lease_id")?,
        },
        "lease_revoke" => Call::LeaseRevoke {
            lease_id: need(event.lease_id, "lease_id")?,
        },
        other => return Err(bad(line, format!("unknown operation `{other}`"))),
    })
}

fn parse_returned(call: &Call, event: &Event, line: usize) -> Result<Returned, HistoryError> {
    let succeeded = || {
        event
            .succeeded
            .ok_or_else(|| bad(line, format!("a completed `{}` needs `succeeded`", event.f)))
    };
    Ok(match call {
        Call::Put { .. } => Returned::Written {
            revision: event.revision,
        },
        Call::Get { .. } => Returned::Read {
            value: event.value.clone(),
            mod_revision: event.mod_revision,
        },
        Call::Delete => Returned::Deleted {
            deleted: succeeded()?,
        },
        Call::Cas { .. } => match succeeded()? {
            true => Returned::Written {
                revision: event.revision,
            },
            false => Returned::CasRefused,
        },
        Call::Expire { .. } => Returned::Expired {
            applied: succeeded()?,
        },
        Call::Ttl => Returned::Ttl(match event.ttl_state.as_deref() {
            Some("no_key") => TtlAnswer::NoKey,
            Some("no_ttl") => TtlAnswer::NoTtl,
            Some("remaining") => TtlAnswer::Remaining(
                event
                    .remaining_ms
                    .ok_or_else(|| bad(line, "`remaining` needs remaining_ms"))?,
            ),
            _ => {
                return Err(bad(
                    line,
                    "a completed `ttl` needs ttl_state: no_key, no_ttl or remaining",
                ))
            }
        }),
        Call::LeaseGrant { .. } => Returned::Granted {
            lease_id: event
                .lease_id
                .ok_or_else(|| bad(line, "a completed `lease_grant` needs lease_id"))?,
        },
        Call::LeaseKeepAlive { .. } | Call::LeaseRevoke { .. } => Returned::LeaseFound {
            found: succeeded()?,
        },
    })
}

/// Parses a JSON-lines history. Each process has at most one operation open at a time; an
/// operation still open at the end has an unknown outcome.
pub fn parse(text: &str) -> Result<Vec<Operation>, HistoryError> {
    let mut operations: Vec<Operation> = Vec::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for (number, raw) in text.lines().enumerate() {
        let line = number + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(raw)
            .map_err(|error| bad(line, format!("not a history event: {error}")))?;
        match event.kind.as_str() {
            "invoke" => {
                let call = parse_call(&event, line)?;
                if open.contains_key(&event.process) {
                    return Err(bad(
                        line,
                        format!("process {} invoked twice without completing", event.process),
                    ));
                }
                let key = event
                    .key
                    .clone()
                    .ok_or_else(|| bad(line, "an invocation needs a key"))?;
                open.insert(event.process, operations.len());
                operations.push(Operation {
                    id: operations.len(),
                    process: event.process,
                    key,
                    call,
                    outcome: Outcome::Unknown,
                    revision: None,
                    log_time_ms: None,
                    invoked_at: line,
                    completed_at: None,
                });
            }
            "ok" | "fail" | "info" => {
                let index = open.remove(&event.process).ok_or_else(|| {
                    bad(line, format!("process {} completes nothing", event.process))
                })?;
                let operation = &mut operations[index];
                if operation.call.name() != event.f {
                    return Err(bad(
                        line,
                        format!(
                            "completes a `{}` but process {} invoked a `{}`",
                            event.f,
                            event.process,
                            operation.call.name()
                        ),
                    ));
                }
                operation.outcome = match event.kind.as_str() {
                    "ok" => Outcome::Ok(parse_returned(&operation.call, &event, line)?),
                    "fail" => Outcome::Failed,
                    _ => Outcome::Unknown,
                };
                if event.kind == "ok" {
                    operation.revision = event.revision;
                    operation.log_time_ms = event.log_time_ms;
                }
                if event.kind != "info" {
                    operation.completed_at = Some(line);
                }
            }
            other => return Err(bad(line, format!("unknown event type `{other}`"))),
        }
    }
    Ok(operations)
}
