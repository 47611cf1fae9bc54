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
    revision: Option<u64>,
    succeeded: Option<bool>,
}

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Put {
        value: String,
    },
    Get,
    Delete,
    /// Write `value` if the key's revision is `expected_revision` (0: if absent).
    Cas {
        expected_revision: u64,
        value: String,
    },
}

impl Call {
    pub fn name(&self) -> &'static str {
        match self {
            Call::Put { .. } => "put",
            Call::Get => "get",
            Call::Delete => "delete",
            Call::Cas { .. } => "cas",
        }
    }
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
    Written { revision: Option<u64> },
    /// A get: the value read.
    Read { value: Option<String> },
    /// A delete: whether a key was removed.
    Deleted { deleted: bool },
    /// A CAS that did not write.
    CasRefused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: usize,
    pub process: u64,
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
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
    let value = || {
        event
            .value
            .clone()
            .ok_or_else(|| bad(line, format!("`{}` needs a value", event.f)))
    };
    Ok(match event.f.as_str() {
        "put" => Call::Put { value: value()? },
        "get" => Call::Get,
        "delete" => Call::Delete,
        "cas" => Call::Cas {
            expected_revision: event
                .expected_revision
                .ok_or_else(|| bad(line, "`cas` needs expected_revision"))?,
            value: value()?,
        },
        other => return Err(bad(line, format!("unknown operation `{other}`"))),
    })
}

fn parse_returned(call: &Call, event: &Event, line: usize) -> Result<Returned, HistoryError> {
    Ok(match call {
        Call::Put { .. } => Returned::Written {
            revision: event.revision,
        },
        Call::Get => Returned::Read {
            value: event.value.clone(),
        },
        Call::Delete => Returned::Deleted {
            deleted: event
                .succeeded
                .ok_or_else(|| bad(line, "a completed delete needs `succeeded`"))?,
        },
        Call::Cas { .. } => match event.succeeded {
            Some(true) => Returned::Written {
                revision: event.revision,
            },
            Some(false) => Returned::CasRefused,
            None => return Err(bad(line, "a completed cas needs `succeeded`")),
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
                if event.kind != "info" {
                    operation.completed_at = Some(line);
                }
            }
            other => return Err(bad(line, format!("unknown event type `{other}`"))),
        }
    }
    Ok(operations)
}
