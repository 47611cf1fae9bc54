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
    /// `cas` by value: the value the key must hold.
    old: Option<String>,
    /// `txn`: its compares and branches (invocation), and each operation's result (`ok`).
    compare: Option<Vec<TxnCompareLine>>,
    success: Option<Vec<TxnStepLine>>,
    failure: Option<Vec<TxnStepLine>>,
    results: Option<Vec<TxnResultLine>>,
}

/// A compare of a `txn` invocation.
#[derive(Debug, Clone, Deserialize)]
struct TxnCompareLine {
    key: String,
    target: String,
    op: String,
    value: Option<String>,
    revision: Option<u64>,
}

/// An operation of a `txn` branch.
#[derive(Debug, Clone, Deserialize)]
struct TxnStepLine {
    f: String,
    key: String,
    value: Option<String>,
    ttl_ms: Option<u64>,
    lease_id: Option<u64>,
}

/// The result of one operation of the branch a `txn` ran.
#[derive(Debug, Clone, Default, Deserialize)]
struct TxnResultLine {
    value: Option<String>,
    mod_revision: Option<u64>,
    succeeded: Option<bool>,
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
    /// Write `value` if the key holds `old` (a register's compare-and-set by value).
    CasValue {
        old: String,
        value: String,
    },
    /// One key's part of a transaction (`txn` lines are split by key: each part is judged
    /// with its key's other operations; see `TxnPart`).
    Txn(TxnPart),
}

/// What a transaction asks of one key: the compares on it, and its operations in each branch
/// (with their positions in the branch, to find their results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPart {
    pub compares: Vec<TxnCompare>,
    /// Every compare of the transaction is on this key: its compares alone pick the branch.
    pub decides: bool,
    pub success: Vec<(usize, TxnStep)>,
    pub failure: Vec<(usize, TxnStep)>,
}

/// A compare: the key's value, or the revision that wrote it (0: no key), equal or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnCompare {
    pub operand: Operand,
    pub equal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Value(String),
    ModRevision(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    Put {
        value: String,
        ttl_ms: Option<u64>,
        lease_id: Option<u64>,
    },
    Delete,
    Get,
}

/// What one operation of the branch that ran answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    Written,
    Deleted {
        deleted: bool,
    },
    Read {
        value: Option<String>,
        mod_revision: Option<u64>,
    },
}

impl TxnPart {
    /// The values this part may have written to its key (both branches': which one ran may
    /// be unknown).
    pub fn put_values(&self) -> impl Iterator<Item = &String> {
        self.success
            .iter()
            .chain(&self.failure)
            .filter_map(|(_, step)| match step {
                TxnStep::Put { value, .. } => Some(value),
                _ => None,
            })
    }

    /// The branch that ran: its steps on this key.
    pub fn branch(&self, succeeded: bool) -> &[(usize, TxnStep)] {
        if succeeded {
            &self.success
        } else {
            &self.failure
        }
    }
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
            Call::CasValue { .. } => "cas",
            Call::Txn(_) => "txn",
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
    /// A transaction, for one key: which branch ran, its revision, and the results of the
    /// branch's operations on this key (in order).
    Txn {
        succeeded: bool,
        revision: Option<u64>,
        results: Vec<StepResult>,
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
        // A register's history names them read / write.
        "put" | "write" => Call::Put {
            value: value()?,
            ttl_ms: event.ttl_ms,
            lease_id: event.lease_id,
        },
        "get" | "read" => Call::Get {
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
        "cas" => match (&event.old, event.expected_revision) {
            (Some(old), None) => Call::CasValue {
                old: old.clone(),
                value: value()?,
            },
            (None, Some(expected_revision)) => Call::Cas {
                expected_revision,
                value: value()?,
            },
            _ => {
                return Err(bad(
                    line,
                    "`cas` needs expected_revision (compare by revision) or old (by value)",
                ))
            }
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
        Call::Cas { .. } | Call::CasValue { .. } => match succeeded()? {
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
        Call::Txn(part) => {
            let succeeded = succeeded()?;
            let results = event.results.as_deref().unwrap_or_default();
            let steps = part
                .branch(succeeded)
                .iter()
                .map(|(index, step)| {
                    let result = results.get(*index).ok_or_else(|| {
                        bad(
                            line,
                            format!("a completed `txn` has no result for operation {index}"),
                        )
                    })?;
                    Ok(match step {
                        TxnStep::Put { .. } => StepResult::Written,
                        TxnStep::Delete => StepResult::Deleted {
                            deleted: result.succeeded.ok_or_else(|| {
                                bad(
                                    line,
                                    format!(
                                        "result {index} of a `txn` (a delete) needs `succeeded`"
                                    ),
                                )
                            })?,
                        },
                        TxnStep::Get => StepResult::Read {
                            value: result.value.clone(),
                            mod_revision: result.mod_revision,
                        },
                    })
                })
                .collect::<Result<_, HistoryError>>()?;
            Returned::Txn {
                succeeded,
                revision: event.revision,
                results: steps,
            }
        }
    })
}

/// A `txn` invocation, one part per key it names (compares and operations alike), in key
/// order.
fn parse_txn(event: &Event, line: usize) -> Result<Vec<(String, Call)>, HistoryError> {
    let compares = event.compare.as_deref().unwrap_or_default();
    let mut parts: BTreeMap<String, TxnPart> = BTreeMap::new();
    for compare in compares {
        let equal = match compare.op.as_str() {
            "=" => true,
            "!=" => false,
            other => return Err(bad(line, format!("compare operator `{other}` (= or !=)"))),
        };
        let operand = match (compare.target.as_str(), &compare.value, compare.revision) {
            ("value", Some(value), _) => Operand::Value(value.clone()),
            ("mod_revision", _, Some(revision)) => Operand::ModRevision(revision),
            _ => {
                return Err(bad(
                    line,
                    "a compare is on `value` (with value) or `mod_revision` (with revision)",
                ))
            }
        };
        entry(&mut parts, &compare.key)
            .compares
            .push(TxnCompare { operand, equal });
    }
    for (succeeded, steps) in [(true, &event.success), (false, &event.failure)] {
        for (index, step) in steps.as_deref().unwrap_or_default().iter().enumerate() {
            let parsed = match step.f.as_str() {
                "put" | "write" => TxnStep::Put {
                    value: step
                        .value
                        .clone()
                        .ok_or_else(|| bad(line, "a `txn` put needs a value"))?,
                    ttl_ms: step.ttl_ms,
                    lease_id: step.lease_id,
                },
                "delete" => TxnStep::Delete,
                "get" | "read" => TxnStep::Get,
                other => {
                    return Err(bad(
                        line,
                        format!("`txn` operation `{other}` (put, delete or get)"),
                    ))
                }
            };
            let part = entry(&mut parts, &step.key);
            if succeeded {
                part.success.push((index, parsed));
            } else {
                part.failure.push((index, parsed));
            }
        }
    }
    if parts.is_empty() {
        return Err(bad(line, "a `txn` names no key"));
    }
    let compared: std::collections::BTreeSet<&str> = compares
        .iter()
        .map(|compare| compare.key.as_str())
        .collect();
    Ok(parts
        .into_iter()
        .map(|(key, mut part)| {
            part.decides = compared.len() == 1 && compared.contains(key.as_str());
            (key, Call::Txn(part))
        })
        .collect())
}

fn entry<'a>(parts: &'a mut BTreeMap<String, TxnPart>, key: &str) -> &'a mut TxnPart {
    parts.entry(key.to_string()).or_insert_with(|| TxnPart {
        compares: Vec::new(),
        decides: false,
        success: Vec::new(),
        failure: Vec::new(),
    })
}

/// Parses a JSON-lines history. Each process has at most one operation open at a time; an
/// operation still open at the end has an unknown outcome. A transaction becomes one operation
/// per key it names, each with the transaction's invocation and completion.
pub fn parse(text: &str) -> Result<Vec<Operation>, HistoryError> {
    let mut operations: Vec<Operation> = Vec::new();
    let mut open: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (number, raw) in text.lines().enumerate() {
        let line = number + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(raw)
            .map_err(|error| bad(line, format!("not a history event: {error}")))?;
        match event.kind.as_str() {
            "invoke" => {
                if open.contains_key(&event.process) {
                    return Err(bad(
                        line,
                        format!("process {} invoked twice without completing", event.process),
                    ));
                }
                let calls = if event.f == "txn" {
                    parse_txn(&event, line)?
                } else {
                    let key = event
                        .key
                        .clone()
                        .ok_or_else(|| bad(line, "an invocation needs a key"))?;
                    vec![(key, parse_call(&event, line)?)]
                };
                let mut parts = Vec::new();
                for (key, call) in calls {
                    parts.push(operations.len());
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
                open.insert(event.process, parts);
            }
            "ok" | "fail" | "info" => {
                let parts = open.remove(&event.process).ok_or_else(|| {
                    bad(line, format!("process {} completes nothing", event.process))
                })?;
                for index in parts {
                    let operation = &mut operations[index];
                    let f = match event.f.as_str() {
                        "write" => "put",
                        "read" => "get",
                        f => f,
                    };
                    if operation.call.name() != f {
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
            }
            other => return Err(bad(line, format!("unknown event type `{other}`"))),
        }
    }
    Ok(operations)
}
