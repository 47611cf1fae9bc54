//! Per-key linearizability checking by the Wing-Gong search with Lowe's memoisation, with TTL
//! and lease semantics; stale and session reads are checked apart for what they promise.
//!
//! Operations on different keys commute, so each key's sub-history is checked alone (a lease
//! is checked with the key it is recorded on). The search builds a linearization one operation
//! at a time: the next operation may be any not yet placed whose call comes before the earliest
//! return still outstanding; it is placed if the model accepts what it returned. Every
//! (set of placed operations, model state) explored is remembered, so no configuration is
//! searched twice. Operations with unknown outcomes are placed only where they take effect, at
//! any point after their call; one that never took effect stays unplaced, and a configuration
//! that differs from an explored one only by more of them placed is skipped (it has fewer
//! moves left). Failed operations never took effect.
//!
//! Time: a completed operation reports the log time of the state it was served at. Log time
//! never decreases along the log, so it must not decrease along the linearization, and a key
//! is visible at log time `t` only if its deadline (own TTL, or its lease's) is after `t`.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{
    Call, Operand, Operation, Outcome, ReadKind, Returned, StepResult, TtlAnswer, TxnCompare,
    TxnPart, TxnStep,
};

/// Operations per key the search takes on; larger sub-histories are refused, not guessed.
pub const OPERATIONS_PER_KEY_MAX: usize = 20_000;
/// Configurations one key's search may explore before it gives up (an error, never a verdict).
pub const CONFIGURATIONS_MAX: usize = 5_000_000;

/// When something expires, in log time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Deadline {
    Never,
    At(u64),
    /// Set by an operation whose log time is unknown: it may pass at any later point.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lease {
    /// Deadline and the granted TTL a keep-alive restores.
    Alive(Deadline, u64),
    Ended,
}

/// The model of one key (and the leases recorded on it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Register {
    value: Option<String>,
    /// Revision that wrote the value (None when the writer's revision is not known).
    revision: Option<u64>,
    deadline: Deadline,
    lease: Option<u64>,
    leases: BTreeMap<u64, Lease>,
    /// Log time of the latest placed operation that reported one.
    time: u64,
}

impl Register {
    fn empty() -> Register {
        Register {
            value: None,
            revision: None,
            deadline: Deadline::Never,
            lease: None,
            leases: BTreeMap::new(),
            time: 0,
        }
    }

    fn cleared(mut self) -> Register {
        self.value = None;
        self.revision = None;
        self.deadline = Deadline::Never;
        self.lease = None;
        self
    }

    fn written(&self, value: &str, revision: Option<u64>) -> Register {
        let mut next = self.clone();
        next.value = Some(value.to_string());
        next.revision = revision;
        next.deadline = Deadline::Never;
        next.lease = None;
        next
    }

    fn end_lease(mut self, id: u64) -> Register {
        self.leases.insert(id, Lease::Ended);
        if self.lease == Some(id) {
            self = self.cleared();
        }
        self
    }

    fn visible(&self) -> bool {
        self.value.is_some()
    }

    /// The earliest log time at which the key can be gone: its own deadline or its lease's,
    /// whichever comes first (the current time if either is unknown).
    fn earliest_end(&self) -> u64 {
        let lease = self
            .lease
            .and_then(|id| self.leases.get(&id))
            .map(|lease| match lease {
                Lease::Alive(deadline, _) => *deadline,
                Lease::Ended => Deadline::At(self.time),
            });
        let ends = [Some(self.deadline), lease];
        let mut earliest = u64::MAX;
        for end in ends.into_iter().flatten() {
            match end {
                Deadline::At(at) => earliest = earliest.min(at),
                Deadline::Unknown => return self.time,
                Deadline::Never => {}
            }
        }
        earliest.max(self.time)
    }

    /// Whether the key could expire or go with a lease at some unknown moment.
    fn may_vanish(&self) -> bool {
        self.deadline != Deadline::Never || self.lease.is_some()
    }

    /// The states at log time `time`: everything whose deadline passed is gone. Unknown
    /// deadlines may or may not have passed. Empty if time would go backwards.
    fn advance(&self, time: Option<u64>) -> Vec<Register> {
        let Some(time) = time else {
            return vec![self.clone()];
        };
        if time < self.time {
            return Vec::new();
        }
        let mut start = self.clone();
        start.time = time;
        let mut states = match start.deadline {
            Deadline::At(deadline) if deadline <= time => vec![start.cleared()],
            Deadline::Unknown if start.visible() => vec![start.clone().cleared(), start],
            _ => vec![start],
        };
        let ids: Vec<u64> = self.leases.keys().copied().collect();
        for id in ids {
            states = states
                .into_iter()
                .flat_map(|state| match state.leases[&id] {
                    Lease::Alive(Deadline::At(deadline), _) if deadline <= time => {
                        vec![state.end_lease(id)]
                    }
                    Lease::Alive(Deadline::Unknown, _) => {
                        vec![state.clone().end_lease(id), state]
                    }
                    _ => vec![state],
                })
                .collect();
        }
        states
    }
}

fn deadline_after(time: Option<u64>, ttl_ms: u64) -> Deadline {
    time.map_or(Deadline::Unknown, |time| {
        Deadline::At(time.saturating_add(ttl_ms))
    })
}

/// Whether a transaction's compare holds for the key's state (None: the revision that wrote
/// the value is not known). A value compare on a missing key is false, whatever the operator.
fn compare_holds(state: &Register, compare: &TxnCompare) -> Option<bool> {
    let matches = match &compare.operand {
        Operand::Value(value) => match &state.value {
            None => return Some(false),
            Some(held) => held == value,
        },
        Operand::ModRevision(revision) => match (state.visible(), state.revision) {
            (false, _) => *revision == 0,
            (true, Some(written)) => written == *revision,
            (true, None) => return None,
        },
    };
    Some(matches == compare.equal)
}

/// Whether all of a part's compares hold: false if one surely fails, unknown if one may.
fn compares_hold(state: &Register, part: &TxnPart) -> Option<bool> {
    let mut holds = Some(true);
    for compare in &part.compares {
        match compare_holds(state, compare) {
            Some(false) => return Some(false),
            None => holds = None,
            Some(true) => {}
        }
    }
    holds
}

/// The state after the branch's puts on this key (written at `revision`, which is None when
/// unknown, as is then the log time of their TTLs) and deletes; None if a put names a lease
/// that had ended (the whole transaction would have failed).
fn apply_branch_writes(
    mut state: Register,
    steps: &[(usize, TxnStep)],
    revision: Option<u64>,
    time: Option<u64>,
) -> Option<Register> {
    for (_, step) in steps {
        state = match step {
            TxnStep::Put {
                value,
                ttl_ms,
                lease_id,
            } => put_on(&state, value, *ttl_ms, *lease_id, revision, time)?,
            TxnStep::Delete => state.cleared(),
            TxnStep::Get => state,
        };
    }
    Some(state)
}

/// Whether a read of `value`, written at `mod_revision` (if reported), fits the key's state.
fn read_fits(state: &Register, value: &Option<String>, mod_revision: Option<u64>) -> bool {
    let revision_fits = match (mod_revision, state.revision) {
        (Some(read), Some(known)) => read == known,
        _ => true,
    };
    &state.value == value && revision_fits
}

/// The key after a put of `value` at `revision` and log `time` (None: unknown, and so is then
/// its TTL's deadline); None if the put names a lease that had ended.
fn put_on(
    state: &Register,
    value: &str,
    ttl_ms: Option<u64>,
    lease_id: Option<u64>,
    revision: Option<u64>,
    time: Option<u64>,
) -> Option<Register> {
    if let Some(id) = lease_id {
        if state.leases.get(&id) == Some(&Lease::Ended) {
            return None;
        }
    }
    let mut next = state.written(value, revision);
    next.deadline = ttl_ms.map_or(Deadline::Never, |ttl| deadline_after(time, ttl));
    next.lease = lease_id;
    Some(next)
}

/// A completed transaction's part: the branch it says ran must be the one the compares on
/// this key allow, and each of its operations on this key must answer what the key held then.
fn apply_txn_known(
    state: Register,
    part: &TxnPart,
    succeeded: bool,
    revision: Option<u64>,
    results: &[StepResult],
    time: Option<u64>,
) -> Option<Register> {
    let holds = compares_hold(&state, part);
    if (succeeded && holds == Some(false)) || (!succeeded && part.decides && holds == Some(true)) {
        return None;
    }
    let steps = part.branch(succeeded);
    if steps.len() != results.len() {
        return None;
    }
    let mut state = state;
    for (step, result) in steps.iter().zip(results) {
        state = match (&step.1, result) {
            (TxnStep::Put { .. }, StepResult::Written) => {
                apply_branch_writes(state, std::slice::from_ref(step), revision, time)?
            }
            (TxnStep::Delete, StepResult::Deleted { deleted }) => {
                if *deleted != state.visible() {
                    return None;
                }
                state.cleared()
            }
            (
                TxnStep::Get,
                StepResult::Read {
                    value,
                    mod_revision,
                },
            ) => {
                if !read_fits(&state, value, *mod_revision) {
                    return None;
                }
                state
            }
            _ => return None,
        };
    }
    Some(state)
}

/// The state after a completed operation, if what it returned fits `state` at its log time.
fn apply_known(
    state: Register,
    call: &Call,
    returned: &Returned,
    time: Option<u64>,
) -> Option<Register> {
    let visible = state.visible();
    match (call, returned) {
        (
            Call::Put {
                value,
                ttl_ms,
                lease_id,
            },
            Returned::Written { revision },
        ) => put_on(&state, value, *ttl_ms, *lease_id, *revision, time),
        (
            Call::Get { .. },
            Returned::Read {
                value,
                mod_revision,
            },
        ) => read_fits(&state, value, *mod_revision).then_some(state),
        (Call::Delete, Returned::Deleted { deleted }) => {
            (*deleted == visible).then(|| state.cleared())
        }
        (
            Call::Cas {
                expected_revision,
                value,
            },
            returned,
        ) => {
            let matches = match (*expected_revision, visible, state.revision) {
                (0, visible, _) => Some(!visible),
                (_, false, _) => Some(false),
                (expected, true, Some(revision)) => Some(expected == revision),
                // The writer's revision is unknown: it may have been the expected one.
                (_, true, None) => None,
            };
            match returned {
                Returned::Written { revision } if matches != Some(false) => {
                    Some(state.written(value, *revision))
                }
                Returned::CasRefused if matches != Some(true) => Some(state),
                _ => None,
            }
        }
        (Call::CasValue { old, value }, returned) => {
            let matches = state.value.as_ref() == Some(old);
            match returned {
                Returned::Written { revision } if matches => Some(state.written(value, *revision)),
                Returned::CasRefused if !matches => Some(state),
                _ => None,
            }
        }
        (
            Call::Txn(part),
            Returned::Txn {
                succeeded,
                revision,
                results,
            },
        ) => apply_txn_known(state, part, *succeeded, *revision, results, time),
        (Call::Expire { ttl_ms }, Returned::Expired { applied }) => {
            if *applied != visible {
                return None;
            }
            let mut next = state;
            if *applied {
                next.deadline = deadline_after(time, *ttl_ms);
            }
            Some(next)
        }
        (Call::Ttl, Returned::Ttl(answer)) => match (answer, visible, state.deadline) {
            (TtlAnswer::NoKey, false, _) => Some(state),
            (TtlAnswer::NoTtl, true, Deadline::Never) => Some(state),
            (TtlAnswer::Remaining(left), true, Deadline::At(deadline)) => match time {
                Some(time) => (deadline.saturating_sub(time) == *left).then_some(state),
                None => Some(state),
            },
            // An unknown deadline becomes known.
            (TtlAnswer::Remaining(left), true, Deadline::Unknown) => {
                let mut next = state;
                if let Some(time) = time {
                    next.deadline = Deadline::At(time + left);
                }
                Some(next)
            }
            _ => None,
        },
        (Call::LeaseGrant { ttl_ms }, Returned::Granted { lease_id }) => {
            let mut next = state;
            if next.leases.contains_key(lease_id) {
                return None;
            }
            next.leases.insert(
                *lease_id,
                Lease::Alive(deadline_after(time, *ttl_ms), *ttl_ms),
            );
            Some(next)
        }
        (
            Call::LeaseKeepAlive { lease_id } | Call::LeaseRevoke { lease_id },
            Returned::LeaseFound { found: false },
        ) if time.is_none() => {
            // "Not found" answers carry no log time: the lease expired by then, so the log
            // time there was at least its deadline.
            match state.leases.get(lease_id).copied() {
                Some(Lease::Alive(deadline, _)) => {
                    let mut next = state;
                    if let Deadline::At(deadline) = deadline {
                        next.time = next.time.max(deadline);
                    }
                    Some(next.end_lease(*lease_id))
                }
                Some(Lease::Ended) | None => Some(state),
            }
        }
        (Call::LeaseKeepAlive { lease_id }, Returned::LeaseFound { found }) => {
            match (state.leases.get(lease_id).copied(), found) {
                (Some(Lease::Alive(_, ttl)), true) => {
                    let mut next = state;
                    next.leases
                        .insert(*lease_id, Lease::Alive(deadline_after(time, ttl), ttl));
                    Some(next)
                }
                (Some(Lease::Ended), false) | (None, _) => Some(state),
                _ => None,
            }
        }
        (Call::LeaseRevoke { lease_id }, Returned::LeaseFound { found }) => {
            match (state.leases.get(lease_id).copied(), found) {
                (Some(Lease::Alive(..)) | None, true) => Some(state.end_lease(*lease_id)),
                (Some(Lease::Ended) | None, false) => Some(state),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The states an operation with an unknown outcome may leave, besides leaving `state` as it
/// was: it took effect at some unknown log time after the state's.
fn apply_unknown(state: &Register, call: &Call) -> Vec<Register> {
    if let Call::Txn(part) = call {
        // It ran at a log time nobody reported: a key that may expire (or lose its lease) by
        // then may be gone when its compares are judged (seed 96584496437: a compare on
        // "absent" after a TTL ran out).
        let mut bases = vec![(state.clone(), false)];
        if state.visible() && state.may_vanish() {
            let mut gone = state.clone();
            gone.time = gone.time.max(state.earliest_end());
            bases.push((gone.cleared(), true));
        }
        let mut states = Vec::new();
        for (base, vanished) in bases {
            let holds = compares_hold(&base, part);
            let branches = [
                (holds != Some(false), &part.success),
                (!part.decides || holds != Some(true), &part.failure),
            ];
            for (possible, steps) in branches {
                // A vanished key is only a state of its own once something is written to it;
                // otherwise the expiry shows when log time passes its deadline.
                let writes = steps.iter().any(|(_, step)| *step != TxnStep::Get);
                if possible && (!vanished || writes) {
                    states.extend(apply_branch_writes(base.clone(), steps, None, None));
                }
            }
        }
        return states;
    }
    apply_unknown_single(state, call).into_iter().collect()
}

/// `apply_unknown` of an operation on one key alone.
fn apply_unknown_single(state: &Register, call: &Call) -> Option<Register> {
    match call {
        Call::Put {
            value,
            ttl_ms,
            lease_id,
        } => put_on(state, value, *ttl_ms, *lease_id, None, None),
        Call::Get { .. } | Call::Ttl | Call::LeaseGrant { .. } => None,
        Call::Delete => Some(state.clone().cleared()),
        Call::Cas {
            expected_revision,
            value,
        } => {
            let possible = match *expected_revision {
                0 => !state.visible() || state.may_vanish(),
                expected => {
                    state.visible() && state.revision.is_none_or(|revision| revision == expected)
                }
            };
            possible.then(|| state.written(value, None))
        }
        Call::CasValue { old, value } => {
            (state.value.as_ref() == Some(old)).then(|| state.written(value, None))
        }
        Call::Txn(_) => None,
        Call::Expire { .. } => state.visible().then(|| {
            let mut next = state.clone();
            next.deadline = Deadline::Unknown;
            next
        }),
        Call::LeaseKeepAlive { lease_id } => match state.leases.get(lease_id) {
            Some(Lease::Alive(_, ttl)) => {
                let mut next = state.clone();
                next.leases
                    .insert(*lease_id, Lease::Alive(Deadline::Unknown, *ttl));
                Some(next)
            }
            _ => None,
        },
        Call::LeaseRevoke { lease_id } => match state.leases.get(lease_id) {
            Some(Lease::Ended) => None,
            _ => Some(state.clone().end_lease(*lease_id)),
        },
    }
}

/// The possible states after `operation` runs on `state`.
fn step(state: &Register, operation: &Operation) -> Vec<Register> {
    match &operation.outcome {
        Outcome::Ok(returned) => state
            .advance(operation.log_time_ms)
            .into_iter()
            .filter_map(|state| {
                apply_known(state, &operation.call, returned, operation.log_time_ms)
            })
            .collect(),
        // Taking no effect is never a move: such an operation simply stays unplaced.
        Outcome::Unknown => apply_unknown(state, &operation.call),
        Outcome::Failed => vec![state.clone()],
    }
}

/// A violation: the smallest failing key's sub-history, or one stale or session read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub reason: String,
    pub operations: Vec<Operation>,
}

/// One operation, readably: who, when, what it asked and what it got.
pub fn describe(operation: &Operation) -> String {
    let call = match &operation.call {
        Call::Put {
            value,
            ttl_ms,
            lease_id,
        } => {
            let mut text = format!("put {:?}", value);
            if let Some(ttl) = ttl_ms {
                text += &format!(" ttl {ttl} ms");
            }
            if let Some(lease) = lease_id {
                text += &format!(" lease {lease}");
            }
            text
        }
        Call::Get { read } => match read {
            ReadKind::Linearizable => "get".to_string(),
            ReadKind::Stale => "get (stale)".to_string(),
            ReadKind::Session => "get (session)".to_string(),
        },
        Call::Delete => "delete".to_string(),
        Call::Cas {
            expected_revision,
            value,
        } => format!("cas {value:?} if revision {expected_revision}"),
        Call::Expire { ttl_ms } => format!("expire {ttl_ms} ms"),
        Call::Ttl => "ttl".to_string(),
        Call::LeaseGrant { ttl_ms } => format!("lease grant {ttl_ms} ms"),
        Call::LeaseKeepAlive { lease_id } => format!("lease keep-alive {lease_id}"),
        Call::LeaseRevoke { lease_id } => format!("lease revoke {lease_id}"),
        Call::CasValue { old, value } => format!("cas {value:?} if value {old:?}"),
        Call::Txn(part) => {
            let steps = |steps: &[(usize, TxnStep)]| {
                steps
                    .iter()
                    .map(|(_, step)| match step {
                        TxnStep::Put { value, .. } => format!("put {value:?}"),
                        TxnStep::Delete => "delete".to_string(),
                        TxnStep::Get => "get".to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let compares = part
                .compares
                .iter()
                .map(|compare| {
                    let op = if compare.equal { "=" } else { "!=" };
                    match &compare.operand {
                        Operand::Value(value) => format!("value {op} {value:?}"),
                        Operand::ModRevision(revision) => format!("revision {op} {revision}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(" and ");
            format!(
                "txn part: if [{compares}]{} then [{}] else [{}]",
                if part.decides {
                    ""
                } else {
                    " (and other keys)"
                },
                steps(&part.success),
                steps(&part.failure)
            )
        }
    };
    let outcome = match &operation.outcome {
        Outcome::Failed => "failed".to_string(),
        Outcome::Unknown => "unknown".to_string(),
        Outcome::Ok(returned) => {
            let what = match returned {
                Returned::Written { revision } => {
                    format!("written at revision {}", optional(*revision))
                }
                Returned::Read {
                    value,
                    mod_revision,
                } => match value {
                    Some(value) => format!("{value:?} (written at {})", optional(*mod_revision)),
                    None => "absent".to_string(),
                },
                Returned::Deleted { deleted } => format!("deleted {deleted}"),
                Returned::CasRefused => "refused".to_string(),
                Returned::Expired { applied } => format!("applied {applied}"),
                Returned::Ttl(answer) => format!("{answer:?}"),
                Returned::Granted { lease_id } => format!("lease {lease_id}"),
                Returned::LeaseFound { found } => format!("found {found}"),
                Returned::Txn {
                    succeeded,
                    revision,
                    results,
                } => format!(
                    "{} at revision {}: {results:?}",
                    if *succeeded { "then" } else { "else" },
                    optional(*revision)
                ),
            };
            format!(
                "{what}; state revision {}, log time {}",
                optional(operation.revision),
                optional(operation.log_time_ms)
            )
        }
    };
    let completed = operation
        .completed_at
        .map_or("never".to_string(), |line| line.to_string());
    format!(
        "process {:>3}  lines {:>6} .. {:<6}  {call} -> {outcome}",
        operation.process, operation.invoked_at, completed
    )
}

fn optional(value: Option<u64>) -> String {
    value.map_or("?".to_string(), |value| value.to_string())
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "key {:?}: {}", self.key, self.reason)?;
        for operation in &self.operations {
            writeln!(f, "  {}", describe(operation))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("key {key:?} has {operations} operations; the checker takes at most {OPERATIONS_PER_KEY_MAX} per key")]
    TooLarge { key: String, operations: usize },
    #[error("key {key:?}: gave up after exploring {CONFIGURATIONS_MAX} configurations (neither verdict)")]
    TooHard { key: String },
}

/// Checks every key, then every stale and session read; returns the violation with the
/// fewest operations, if any.
pub fn check(operations: &[Operation]) -> Result<Option<Violation>, CheckError> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in operations {
        by_key.entry(&operation.key).or_default().push(operation);
    }
    let mut smallest: Option<Violation> = None;
    for (key, operations) in by_key {
        if operations.len() > OPERATIONS_PER_KEY_MAX {
            return Err(CheckError::TooLarge {
                key: key.to_string(),
                operations: operations.len(),
            });
        }
        let judged: Vec<&Operation> = operations
            .iter()
            .copied()
            .filter(|op| op.call.is_linearizable() && op.outcome != Outcome::Failed)
            .collect();
        if !linearizable(key, &judged)? {
            let (line, shown) = shortest_failing_prefix(key, &judged)?;
            let hidden = shown.len().saturating_sub(SHOWN_OPERATIONS_MAX);
            let reason = format!(
                "no linearization exists for its {} operations up to history line {line} \
                 (the history before that line is linearizable){}",
                shown.len(),
                if hidden > 0 {
                    format!("; the last {SHOWN_OPERATIONS_MAX} of them:")
                } else {
                    ":".to_string()
                }
            );
            let violation = Violation {
                key: key.to_string(),
                reason,
                operations: shown.into_iter().skip(hidden).collect(),
            };
            if smallest
                .as_ref()
                .is_none_or(|found| violation.operations.len() < found.operations.len())
            {
                smallest = Some(violation);
            }
        }
    }
    if smallest.is_some() {
        return Ok(smallest);
    }
    Ok(check_relaxed_reads(operations).or_else(|| check_reads_at_one_revision(operations)))
}

/// What one watch delivered without a break: every change of every key from revision `start`
/// to revision `end`, as (revision, key, value's name or None for a delete or an expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSegment {
    pub start: u64,
    pub end: u64,
    pub events: Vec<(u64, String, Option<String>)>,
}

/// A watch stream must show every committed change exactly once, in revision order: each
/// segment's events rise by revision (one event per key per revision), every acknowledged write
/// and delete within its revisions is there with its value, and every read answered at a
/// revision it covers agrees with what the stream says the key held then.
pub fn check_watches(operations: &[Operation], segments: &[WatchSegment]) -> Option<Violation> {
    let violation = |key: &str, reason: String, shown: Vec<Operation>| {
        Some(Violation {
            key: key.to_string(),
            reason,
            operations: shown,
        })
    };
    for (number, segment) in segments.iter().enumerate() {
        let mut seen = HashSet::new();
        let mut last = 0;
        for (revision, key, _) in &segment.events {
            if *revision < last || !seen.insert((*revision, key.as_str())) {
                return violation(
                    key,
                    format!("watch segment {number} delivered revision {revision} out of order or twice"),
                    Vec::new(),
                );
            }
            if *revision < segment.start || *revision > segment.end {
                return violation(
                    key,
                    format!(
                        "watch segment {number} (revisions {}..={}) delivered revision {revision}",
                        segment.start, segment.end
                    ),
                    Vec::new(),
                );
            }
            last = *revision;
        }
        let covers = |revision: u64| segment.start <= revision && revision <= segment.end;
        let event_at = |revision: u64, key: &str| {
            segment
                .events
                .iter()
                .find(|(r, k, _)| *r == revision && k == key)
                .map(|(_, _, value)| value.clone())
        };
        // The key as the stream says it was at `revision`: its last event up to then (None:
        // no event since the segment began, so the stream does not say).
        let state_at = |revision: u64, key: &str| {
            segment
                .events
                .iter()
                .rfind(|(r, k, _)| *r <= revision && k == key)
                .map(|(_, _, value)| value.clone())
        };
        for operation in operations {
            let Some(revision) = operation.revision.filter(|r| covers(*r)) else {
                continue;
            };
            let key = operation.key.as_str();
            let expected = match (&operation.call, &operation.outcome) {
                (
                    Call::Put { value, .. }
                    | Call::Cas { value, .. }
                    | Call::CasValue { value, .. },
                    Outcome::Ok(Returned::Written { .. }),
                ) => Some(Some(value.clone())),
                (_, Outcome::Ok(Returned::Deleted { deleted: true })) => Some(None),
                (
                    Call::Txn(part),
                    Outcome::Ok(Returned::Txn {
                        succeeded, results, ..
                    }),
                ) => part
                    .branch(*succeeded)
                    .iter()
                    .zip(results)
                    .filter_map(|((_, step), result)| match (step, result) {
                        (TxnStep::Put { value, .. }, _) => Some(Some(value.clone())),
                        (TxnStep::Delete, StepResult::Deleted { deleted: true }) => Some(None),
                        _ => None,
                    })
                    .next(),
                _ => None,
            };
            if let Some(expected) = expected {
                if event_at(revision, key) != Some(expected.clone()) {
                    return violation(
                        key,
                        format!(
                            "watch segment {number} (revisions {}..={}) has no event {expected:?} \
                             at revision {revision}, where this write was acknowledged",
                            segment.start, segment.end
                        ),
                        vec![operation.clone()],
                    );
                }
                continue;
            }
            if let (Call::Get { .. }, Outcome::Ok(Returned::Read { value, .. })) =
                (&operation.call, &operation.outcome)
            {
                if let Some(streamed) = state_at(revision, key) {
                    if &streamed != value {
                        return violation(
                            key,
                            format!(
                                "watch segment {number} says the key held {streamed:?} at \
                                 revision {revision}, but a read served there saw {value:?}"
                            ),
                            vec![operation.clone()],
                        );
                    }
                }
            }
        }
    }
    None
}

/// Every visible change has a revision of its own (expiry and lease ends included), so two
/// reads of a key served at the same revision, at any node and any consistency, saw the same
/// thing: the same value, or no key.
fn check_reads_at_one_revision(operations: &[Operation]) -> Option<Violation> {
    let mut first: HashMap<(&str, u64), (&Operation, &Option<String>)> = HashMap::new();
    for operation in operations {
        let (Call::Get { .. }, Outcome::Ok(Returned::Read { value, .. }), Some(revision)) =
            (&operation.call, &operation.outcome, operation.revision)
        else {
            continue;
        };
        let (earlier, seen) = *first
            .entry((&operation.key, revision))
            .or_insert((operation, value));
        if seen != value {
            return Some(Violation {
                key: operation.key.clone(),
                reason: format!(
                    "two reads served at revision {revision} saw {seen:?} and {value:?}: the \
                     key changed without a revision of its own"
                ),
                operations: vec![earlier.clone(), operation.clone()],
            });
        }
    }
    None
}

/// Operations of a failing key shown at most.
const SHOWN_OPERATIONS_MAX: usize = 40;

/// The history cut at `line`: operations invoked before it, those not completed by then
/// turned unknown.
fn cut(operations: &[&Operation], line: usize) -> Vec<Operation> {
    operations
        .iter()
        .filter(|operation| operation.invoked_at <= line)
        .map(|operation| {
            let mut operation = (*operation).clone();
            if operation.completed_at.is_some_and(|at| at > line) {
                operation.completed_at = None;
                operation.outcome = Outcome::Unknown;
            }
            operation
        })
        .collect()
}

/// The first history line by which a key's operations admit no linearization, and the cut
/// history there: what a reader needs to see, not the whole key.
fn shortest_failing_prefix(
    key: &str,
    operations: &[&Operation],
) -> Result<(usize, Vec<Operation>), CheckError> {
    let mut lines: Vec<usize> = operations
        .iter()
        .filter_map(|operation| operation.completed_at)
        .collect();
    lines.sort_unstable();
    // Cutting later only adds constraints, so the first failing cut is found by bisection.
    let (mut good, mut bad) = (0usize, lines.len() - 1);
    while good < bad {
        let middle = (good + bad) / 2;
        let prefix = cut(operations, lines[middle]);
        let prefix: Vec<&Operation> = prefix.iter().collect();
        if linearizable(key, &prefix)? {
            good = middle + 1;
        } else {
            bad = middle;
        }
    }
    Ok((lines[bad], cut(operations, lines[bad])))
}

/// Stale and session reads promise less: the value read was written (by a write invoked before
/// the read returned) at the revision reported, and a session never reads a state older than
/// one its process has already seen.
fn check_relaxed_reads(operations: &[Operation]) -> Option<Violation> {
    let mut writes: HashMap<(&str, &str), Vec<&Operation>> = HashMap::new();
    for operation in operations {
        if operation.outcome == Outcome::Failed {
            continue;
        }
        let values: Vec<&String> = match &operation.call {
            Call::Put { value, .. } | Call::Cas { value, .. } | Call::CasValue { value, .. } => {
                vec![value]
            }
            Call::Txn(part) => part.put_values().collect(),
            _ => continue,
        };
        for value in values {
            writes
                .entry((&operation.key, value))
                .or_default()
                .push(operation);
        }
    }
    let mut seen: HashMap<u64, SessionPoint> = HashMap::new();
    // Each process runs one operation at a time, so invocation order is its program order.
    for operation in operations {
        if let (
            Call::Get { read },
            Outcome::Ok(Returned::Read {
                value,
                mod_revision,
            }),
        ) = (&operation.call, &operation.outcome)
        {
            if *read != ReadKind::Linearizable {
                if let Some(violation) =
                    check_relaxed_read(operation, *read, value, *mod_revision, &writes, &seen)
                {
                    return Some(violation);
                }
            }
        }
        if let Outcome::Ok(_) = &operation.outcome {
            let point = seen.entry(operation.process).or_insert(SessionPoint {
                revision: (0, operation),
                log_time_ms: (0, operation),
            });
            if let Some(revision) = operation.revision.filter(|r| *r >= point.revision.0) {
                point.revision = (revision, operation);
            }
            if let Some(time) = operation.log_time_ms.filter(|t| *t >= point.log_time_ms.0) {
                point.log_time_ms = (time, operation);
            }
        }
    }
    None
}

/// What a process has seen so far: the highest revision and the highest log time any of its
/// answers showed, each with the operation that showed it. A session read must be served at a
/// state at least this new in both: expiry and leases change what a read returns without a
/// revision, so a state with the same revision and an earlier log time is older.
struct SessionPoint<'a> {
    revision: (u64, &'a Operation),
    log_time_ms: (u64, &'a Operation),
}

fn check_relaxed_read(
    read: &Operation,
    kind: ReadKind,
    value: &Option<String>,
    mod_revision: Option<u64>,
    writes: &HashMap<(&str, &str), Vec<&Operation>>,
    seen: &HashMap<u64, SessionPoint>,
) -> Option<Violation> {
    let violation = |reason: String, mut operations: Vec<Operation>| {
        operations.push(read.clone());
        Some(Violation {
            key: read.key.clone(),
            reason,
            operations,
        })
    };
    if let (ReadKind::Session, Some(point)) = (kind, seen.get(&read.process)) {
        let (before, earlier) = point.revision;
        if let Some(revision) = read.revision.filter(|revision| *revision < before) {
            return violation(
                format!(
                    "a session read served at revision {revision} after its process saw revision {before}"
                ),
                vec![earlier.clone()],
            );
        }
        let (before, earlier) = point.log_time_ms;
        if let Some(time) = read.log_time_ms.filter(|time| *time < before) {
            return violation(
                format!(
                    "a session read served at log time {time} ms after its process saw log time \
                     {before} ms (expiry and leases make an earlier log time an older state)"
                ),
                vec![earlier.clone()],
            );
        }
    }
    let Some(value) = value else {
        return None;
    };
    let completed = read.completed_at.unwrap_or(usize::MAX);
    let candidates: Vec<&Operation> = writes
        .get(&(read.key.as_str(), value.as_str()))
        .map(|writes| {
            writes
                .iter()
                .copied()
                .filter(|write| write.invoked_at < completed)
                .collect()
        })
        .unwrap_or_default();
    if candidates.is_empty() {
        return violation(
            format!("a {kind:?} read returned {value:?}, which no write had been asked to write"),
            Vec::new(),
        );
    }
    if let Some(read_revision) = mod_revision {
        let fits = candidates.iter().any(|write| match &write.outcome {
            Outcome::Ok(
                Returned::Written { revision: Some(r) }
                | Returned::Txn {
                    revision: Some(r), ..
                },
            ) => *r == read_revision,
            _ => true,
        });
        if !fits {
            return violation(
                format!("a {kind:?} read says {value:?} was written at revision {read_revision}, but it was not"),
                candidates.into_iter().cloned().collect(),
            );
        }
        if read.revision.is_some_and(|state| state < read_revision) {
            return violation(
                format!("a {kind:?} read of a state older than the write it returned"),
                Vec::new(),
            );
        }
    }
    None
}

/// One configuration of the search: what is placed, the model state, and the moves left.
struct Frame {
    placed: Vec<u64>,
    /// Completed operations not placed yet.
    missing: usize,
    moves: Vec<(usize, Register)>,
    next: usize,
}

fn is_placed(placed: &[u64], index: usize) -> bool {
    placed[index / 64] & (1 << (index % 64)) != 0
}

/// The moves from a configuration: every operation that may come next, with each state it
/// may leave; completed operations (earliest return first) before unknown ones.
fn moves(operations: &[&Operation], placed: &[u64], state: &Register) -> Vec<(usize, Register)> {
    let bound = operations
        .iter()
        .enumerate()
        .filter(|(index, _)| !is_placed(placed, *index))
        .filter_map(|(_, operation)| operation.completed_at)
        .min()
        .unwrap_or(usize::MAX);
    let mut candidates: Vec<usize> = (0..operations.len())
        .filter(|index| !is_placed(placed, *index) && operations[*index].invoked_at < bound)
        .collect();
    candidates.sort_by_key(|index| operations[*index].completed_at.unwrap_or(usize::MAX));
    candidates
        .into_iter()
        .flat_map(|index| {
            step(state, operations[index])
                .into_iter()
                .map(move |next| (index, next))
        })
        .collect()
}

/// The search over one key's operations (stale reads and failed operations left out).
///
/// A configuration is remembered by the completed operations placed and the model state,
/// together with the set of unknown operations placed. Placing an unknown operation only ever
/// takes moves away (it may take effect at most once, and never placing it is always allowed),
/// so a configuration is skipped when one with the same completed operations and state, and a
/// subset of its unknown operations, was explored already. Without that, every way of letting
/// an overwritten unknown write take effect or not was a configuration of its own: 2^k of them
/// for k pending unknown writes (seed 96635709198 gave up after 5,000,000).
fn linearizable(key: &str, operations: &[&Operation]) -> Result<bool, CheckError> {
    let missing = operations
        .iter()
        .filter(|operation| operation.completed_at.is_some())
        .count();
    if missing == 0 {
        return Ok(true);
    }
    let words = operations.len().div_ceil(64);
    let mut unknown = vec![0u64; words];
    for (index, operation) in operations.iter().enumerate() {
        if operation.completed_at.is_none() {
            unknown[index / 64] |= 1 << (index % 64);
        }
    }
    let placed = vec![0u64; words];
    let state = Register::empty();
    let mut seen: HashMap<(Vec<u64>, Register), Vec<Vec<u64>>> = HashMap::new();
    let mut configurations = 0usize;
    let mut stack = vec![Frame {
        moves: moves(operations, &placed, &state),
        placed,
        missing,
        next: 0,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some((index, next)) = frame.moves.get(frame.next).cloned() else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let mut placed = frame.placed.clone();
        placed[index / 64] |= 1 << (index % 64);
        let missing = frame.missing - usize::from(operations[index].completed_at.is_some());
        if missing == 0 {
            return Ok(true);
        }
        let completed: Vec<u64> = placed.iter().zip(&unknown).map(|(p, u)| p & !u).collect();
        let unknowns: Vec<u64> = placed.iter().zip(&unknown).map(|(p, u)| p & u).collect();
        let explored = seen.entry((completed, next.clone())).or_default();
        let subsumed = explored.iter().any(|earlier| {
            earlier
                .iter()
                .zip(&unknowns)
                .all(|(earlier, now)| earlier & !now == 0)
        });
        if subsumed {
            continue;
        }
        explored.push(unknowns);
        configurations += 1;
        if configurations > CONFIGURATIONS_MAX {
            return Err(CheckError::TooHard {
                key: key.to_string(),
            });
        }
        stack.push(Frame {
            moves: moves(operations, &placed, &next),
            placed,
            missing,
            next: 0,
        });
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse;

    fn history(lines: &[&str]) -> Vec<Operation> {
        parse(&lines.join("\n")).unwrap()
    }

    fn verdict(lines: &[&str]) -> Option<Violation> {
        check(&history(lines)).unwrap()
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        assert_eq!(
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
                r#"{"process":1,"type":"invoke","f":"get","key":"k"}"#,
                r#"{"process":1,"type":"ok","f":"get","value":"a"}"#,
                r#"{"process":1,"type":"invoke","f":"cas","key":"k","expected_revision":1,"value":"b"}"#,
                r#"{"process":1,"type":"ok","f":"cas","succeeded":true,"revision":2}"#,
                r#"{"process":1,"type":"invoke","f":"delete","key":"k"}"#,
                r#"{"process":1,"type":"ok","f":"delete","succeeded":true}"#,
            ]),
            None
        );
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let violation = verdict(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"b"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":2}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
            r#"{"process":3,"type":"invoke","f":"get","key":"other"}"#,
            r#"{"process":3,"type":"ok","f":"get"}"#,
        ])
        .expect("a violation");
        assert_eq!(violation.key, "k");
        assert!(violation.to_string().contains("no linearization"));
        assert!(violation.to_string().contains("put \"b\""), "{violation}");
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        assert_eq!(
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
                r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
            ]),
            None
        );
    }

    #[test]
    fn an_unknown_write_may_take_effect_or_not() {
        assert_eq!(
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":1,"type":"info","f":"put"}"#,
                r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
                r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
            ]),
            None
        );
        assert_eq!(
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
                r#"{"process":2,"type":"ok","f":"get"}"#,
            ]),
            None
        );
        // But a failed write certainly did not happen.
        assert!(verdict(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"fail","f":"put"}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
        ])
        .is_some());
    }

    #[test]
    fn an_unknown_write_cannot_take_effect_twice() {
        // "a" is overwritten by "b", then read again: only a second write of "a" could explain it.
        assert!(verdict(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"info","f":"put"}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
            r#"{"process":2,"type":"invoke","f":"put","key":"k","value":"b"}"#,
            r#"{"process":2,"type":"ok","f":"put","revision":3}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
        ])
        .is_some());
    }

    #[test]
    fn a_lost_acknowledged_write_is_a_violation() {
        assert!(verdict(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get"}"#,
        ])
        .is_some());
    }

    #[test]
    fn compare_and_set_follows_revisions() {
        assert!(
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":5}"#,
                r#"{"process":1,"type":"invoke","f":"cas","key":"k","expected_revision":4,"value":"b"}"#,
                r#"{"process":1,"type":"ok","f":"cas","succeeded":true,"revision":6}"#,
            ])
            .is_some(),
            "a CAS on a stale revision must not succeed"
        );
        assert_eq!(
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":5}"#,
                r#"{"process":1,"type":"invoke","f":"cas","key":"k","expected_revision":4,"value":"b"}"#,
                r#"{"process":1,"type":"ok","f":"cas","succeeded":false}"#,
            ]),
            None
        );
    }

    const TTL_PUT: [&str; 2] = [
        r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a","ttl_ms":1000}"#,
        r#"{"process":1,"type":"ok","f":"put","revision":1,"log_time_ms":100}"#,
    ];

    fn after_ttl_put(rest: &[&str]) -> Option<Violation> {
        let mut lines = TTL_PUT.to_vec();
        lines.extend_from_slice(rest);
        verdict(&lines)
    }

    #[test]
    fn a_key_is_visible_only_before_its_deadline() {
        let read = |answer: &str, time: u64| {
            after_ttl_put(&[
                r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
                &format!(r#"{{"process":2,"type":"ok","f":"get",{answer}"log_time_ms":{time}}}"#),
            ])
        };
        assert_eq!(read(r#""value":"a","#, 1099), None);
        assert!(read(r#""value":"a","#, 1100).is_some(), "expired at 1100");
        assert_eq!(read("", 1100), None);
        assert!(read("", 1099).is_some(), "not expired yet at 1099");
    }

    #[test]
    fn log_time_never_goes_back_along_the_linearization() {
        // The read saw the write, so it comes after it, yet reports an earlier log time.
        assert!(after_ttl_put(&[
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a","log_time_ms":50}"#,
        ])
        .is_some());
    }

    #[test]
    fn ttl_answers_the_exact_time_left() {
        let ttl = |answer: &str| {
            after_ttl_put(&[
                r#"{"process":2,"type":"invoke","f":"ttl","key":"k"}"#,
                &format!(r#"{{"process":2,"type":"ok","f":"ttl",{answer},"log_time_ms":400}}"#),
            ])
        };
        assert_eq!(ttl(r#""ttl_state":"remaining","remaining_ms":700"#), None);
        assert!(ttl(r#""ttl_state":"remaining","remaining_ms":900"#).is_some());
        assert!(ttl(r#""ttl_state":"no_ttl""#).is_some());
        assert!(ttl(r#""ttl_state":"no_key""#).is_some());
    }

    #[test]
    fn expire_moves_the_deadline_from_its_own_log_time() {
        let lines = |read_time: u64| {
            after_ttl_put(&[
                r#"{"process":1,"type":"invoke","f":"expire","key":"k","ttl_ms":5000}"#,
                r#"{"process":1,"type":"ok","f":"expire","succeeded":true,"log_time_ms":900}"#,
                r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
                &format!(
                    r#"{{"process":2,"type":"ok","f":"get","value":"a","log_time_ms":{read_time}}}"#
                ),
            ])
        };
        assert_eq!(lines(5899), None);
        assert!(lines(5900).is_some());
    }

    fn leased(rest: &[&str]) -> Option<Violation> {
        let mut lines = vec![
            r#"{"process":1,"type":"invoke","f":"lease_grant","key":"l","ttl_ms":1000}"#,
            r#"{"process":1,"type":"ok","f":"lease_grant","lease_id":7,"log_time_ms":100}"#,
            r#"{"process":1,"type":"invoke","f":"put","key":"l","value":"a","lease_id":7}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":2,"log_time_ms":150}"#,
        ];
        lines.extend_from_slice(rest);
        verdict(&lines)
    }

    #[test]
    fn a_leased_key_lives_as_long_as_its_lease() {
        let read_at = |time: u64| {
            format!(r#"{{"process":2,"type":"ok","f":"get","value":"a","log_time_ms":{time}}}"#)
        };
        let invoke = r#"{"process":2,"type":"invoke","f":"get","key":"l"}"#;
        assert_eq!(leased(&[invoke, &read_at(1099)]), None);
        assert!(leased(&[invoke, &read_at(1100)]).is_some());
        let keep_alive = [
            r#"{"process":1,"type":"invoke","f":"lease_keepalive","key":"l","lease_id":7}"#,
            r#"{"process":1,"type":"ok","f":"lease_keepalive","succeeded":true,"log_time_ms":900}"#,
        ];
        assert_eq!(
            leased(&[keep_alive[0], keep_alive[1], invoke, &read_at(1899)]),
            None
        );
        assert!(leased(&[keep_alive[0], keep_alive[1], invoke, &read_at(1900)]).is_some());
        let revoke = [
            r#"{"process":1,"type":"invoke","f":"lease_revoke","key":"l","lease_id":7}"#,
            r#"{"process":1,"type":"ok","f":"lease_revoke","succeeded":true,"log_time_ms":300}"#,
        ];
        assert!(leased(&[revoke[0], revoke[1], invoke, &read_at(400)]).is_some());
        // A keep-alive of an expired lease must not find it.
        assert!(leased(&[
            keep_alive[0],
            r#"{"process":1,"type":"ok","f":"lease_keepalive","succeeded":true,"log_time_ms":1200}"#,
        ])
        .is_some());
    }

    #[test]
    fn stale_reads_must_return_a_written_value_at_its_revision() {
        let base = [
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":3}"#,
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"b"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":4}"#,
        ];
        let stale = |answer: &str| {
            let mut lines = base.to_vec();
            let completion = format!(r#"{{"process":2,"type":"ok","f":"get",{answer}}}"#);
            lines
                .push(r#"{"process":2,"type":"invoke","f":"get","key":"k","consistency":"stale"}"#);
            lines.push(&completion);
            verdict(&lines)
        };
        assert_eq!(stale(r#""value":"a","mod_revision":3,"revision":3"#), None);
        assert!(stale(r#""value":"c","mod_revision":3,"revision":3"#).is_some());
        assert!(stale(r#""value":"a","mod_revision":4,"revision":4"#).is_some());
        assert!(stale(r#""value":"a","mod_revision":3,"revision":2"#).is_some());
    }

    #[test]
    fn a_session_never_goes_back_in_time() {
        let session = |revision: u64| {
            let completion = format!(
                r#"{{"process":1,"type":"ok","f":"get","value":"a","mod_revision":3,"revision":{revision}}}"#
            );
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":3}"#,
                r#"{"process":1,"type":"invoke","f":"put","key":"j","value":"x"}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":9}"#,
                r#"{"process":1,"type":"invoke","f":"get","key":"k","consistency":"session"}"#,
                &completion,
            ])
        };
        assert_eq!(session(9), None);
        let violation = session(8).expect("went back in time");
        assert!(violation.reason.contains("session"), "{violation}");
    }

    /// Finding 3 of the outside review: a session read is served at a state at least as new in
    /// log time as any its process saw at the same revision (leases and TTLs left change with
    /// log time alone).
    #[test]
    fn a_session_never_goes_back_in_log_time_at_the_same_revision() {
        let session = |log_time_ms: u64| {
            let completion = format!(
                r#"{{"process":1,"type":"ok","f":"get","value":"a","mod_revision":3,"revision":3,"log_time_ms":{log_time_ms}}}"#
            );
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a","ttl_ms":5000}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":3,"log_time_ms":1000}"#,
                r#"{"process":1,"type":"invoke","f":"get","key":"k"}"#,
                r#"{"process":1,"type":"ok","f":"get","value":"a","mod_revision":3,"revision":3,"log_time_ms":1600}"#,
                r#"{"process":1,"type":"invoke","f":"get","key":"k","consistency":"session"}"#,
                &completion,
            ])
        };
        assert_eq!(session(1600), None);
        let violation = session(1200).expect("went back in log time");
        assert!(violation.reason.contains("log time"), "{violation}");
    }

    /// Expiry has a revision of its own: a key seen gone at revision 3 cannot be seen there
    /// at revision 3 too (as it could when expiry made no revision).
    #[test]
    fn two_reads_at_one_revision_see_the_same_key() {
        let second = |revision: u64| {
            let completion = format!(
                r#"{{"process":2,"type":"ok","f":"get","value":"a","mod_revision":3,"revision":{revision},"log_time_ms":1000}}"#
            );
            verdict(&[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a","ttl_ms":500}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":3,"log_time_ms":1000}"#,
                r#"{"process":1,"type":"invoke","f":"get","key":"k","consistency":"stale"}"#,
                r#"{"process":1,"type":"ok","f":"get","revision":4,"log_time_ms":1600}"#,
                r#"{"process":2,"type":"invoke","f":"get","key":"k","consistency":"stale"}"#,
                &completion,
            ])
        };
        assert_eq!(second(3), None);
        let violation = second(4).expect("present and gone at one revision");
        assert!(
            violation.reason.contains("revision of its own"),
            "{violation}"
        );
    }

    #[test]
    fn a_watch_must_show_every_acknowledged_write_and_agree_with_reads() {
        let operations = parse(
            &[
                r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
                r#"{"process":1,"type":"ok","f":"put","revision":5}"#,
                r#"{"process":1,"type":"invoke","f":"delete","key":"k"}"#,
                r#"{"process":1,"type":"ok","f":"delete","succeeded":true,"revision":6}"#,
                r#"{"process":2,"type":"invoke","f":"get","key":"k","consistency":"stale"}"#,
                r#"{"process":2,"type":"ok","f":"get","value":"a","mod_revision":5,"revision":5}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let segment = |events: Vec<(u64, &str, Option<&str>)>| WatchSegment {
            start: 4,
            end: 6,
            events: events
                .into_iter()
                .map(|(r, k, v)| (r, k.to_string(), v.map(str::to_string)))
                .collect(),
        };
        let whole = segment(vec![(5, "k", Some("a")), (6, "k", None)]);
        assert_eq!(check_watches(&operations, &[whole]), None);
        let gap = segment(vec![(6, "k", None)]);
        let violation = check_watches(&operations, &[gap]).expect("the put is missing");
        assert!(violation.reason.contains("revision 5"), "{violation}");
        let twice = segment(vec![
            (5, "k", Some("a")),
            (5, "k", Some("a")),
            (6, "k", None),
        ]);
        assert!(check_watches(&operations, &[twice]).is_some());
        let wrong = segment(vec![(5, "k", Some("b")), (6, "k", None)]);
        assert!(check_watches(&operations, &[wrong]).is_some());
        // A segment that began after these changes says nothing about them.
        let later = WatchSegment {
            start: 7,
            end: 9,
            events: Vec::new(),
        };
        assert_eq!(check_watches(&operations, &[later]), None);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let error = parse("{\"process\":1,\"type\":\"invoke\",\"f\":\"put\",\"key\":\"k\",\"value\":\"a\"}\nnot json").unwrap_err();
        assert!(error.to_string().starts_with("line 2:"), "{error}");
    }

    /// Every linearization by brute force: each subset of the unknown operations taking
    /// effect, in every order real time allows, run through the model.
    fn linearizable_by_brute_force(operations: &[&Operation]) -> bool {
        let unknown: Vec<usize> = (0..operations.len())
            .filter(|index| operations[*index].completed_at.is_none())
            .collect();
        (0..1u32 << unknown.len()).any(|subset| {
            let chosen: Vec<usize> = (0..operations.len())
                .filter(|index| match unknown.iter().position(|u| u == index) {
                    Some(bit) => subset & (1 << bit) != 0,
                    None => true,
                })
                .collect();
            orders_fit(operations, &chosen, &[Register::empty()])
        })
    }

    fn orders_fit(operations: &[&Operation], left: &[usize], states: &[Register]) -> bool {
        if states.is_empty() {
            return false;
        }
        if left.is_empty() {
            return true;
        }
        left.iter().any(|&index| {
            // Nothing left may have returned before this one was called.
            let blocked = left.iter().any(|&other| {
                operations[other]
                    .completed_at
                    .is_some_and(|completed| completed < operations[index].invoked_at)
            });
            if blocked {
                return false;
            }
            let next: Vec<Register> = states
                .iter()
                .flat_map(|state| step(state, operations[index]))
                .collect();
            let rest: Vec<usize> = left.iter().copied().filter(|i| *i != index).collect();
            orders_fit(operations, &rest, &next)
        })
    }

    /// A small random history on key "k": three processes, seven calls, each answered with a
    /// random (often impossible) result or left unknown. Timed histories add TTLs, expiry and
    /// transactions, and log times that mostly go forward.
    fn random_history(next: &mut impl FnMut(u64) -> u64, timed: bool) -> Vec<String> {
        let values = ["a", "b", "c"];
        let mut lines = Vec::new();
        let mut open: [Option<&str>; 3] = [None; 3];
        let (mut calls, mut clock) = (0, 0u64);
        let kinds = if timed { 7 } else { 4 };
        while calls < 7 || open.iter().any(Option::is_some) {
            let process = next(3) as usize;
            match open[process] {
                None if calls < 7 => {
                    calls += 1;
                    let value = values[next(3) as usize];
                    let other = values[next(3) as usize];
                    let ttl = if timed && next(2) == 0 {
                        format!(r#","ttl_ms":{}"#, 10 + 10 * next(2))
                    } else {
                        String::new()
                    };
                    let (f, extra) = match next(kinds) {
                        0 => ("put", format!(r#","key":"k","value":"{value}"{ttl}"#)),
                        1 => ("delete", r#","key":"k""#.to_string()),
                        2 => (
                            "cas",
                            format!(r#","key":"k","old":"{other}","value":"{value}""#),
                        ),
                        3 => ("get", r#","key":"k""#.to_string()),
                        4 => (
                            "expire",
                            format!(r#","key":"k","ttl_ms":{}"#, 10 + 10 * next(2)),
                        ),
                        5 => ("ttl", r#","key":"k""#.to_string()),
                        _ => (
                            "txn",
                            format!(
                                r#","compare":[{{"key":"k","target":"value","op":"=","value":"{other}"}}],"success":[{{"f":"put","key":"k","value":"{value}"{ttl}}}],"failure":[{{"f":"get","key":"k"}}]"#
                            ),
                        ),
                    };
                    lines.push(format!(
                        r#"{{"process":{process},"type":"invoke","f":"{f}"{extra}}}"#
                    ));
                    open[process] = Some(f);
                }
                None => {}
                Some(f) => {
                    let read = |choice: u64| match choice {
                        3 => String::new(),
                        v => format!(r#","value":"{}""#, values[v as usize]),
                    };
                    let ending = if !["get", "ttl"].contains(&f) && next(3) == 0 {
                        r#""type":"info""#.to_string()
                    } else {
                        let mut answer = match f {
                            "get" => read(next(4)),
                            "put" => String::new(),
                            "ttl" => match next(3) {
                                0 => r#","ttl_state":"no_key""#.to_string(),
                                1 => r#","ttl_state":"no_ttl""#.to_string(),
                                _ => format!(
                                    r#","ttl_state":"remaining","remaining_ms":{}"#,
                                    10 * (1 + next(2)) - next(3)
                                ),
                            },
                            "txn" if next(2) == 0 => r#","succeeded":true,"results":[{}]"#.into(),
                            "txn" => format!(
                                r#","succeeded":false,"results":[{{{}}}]"#,
                                read(next(4)).trim_start_matches(',')
                            ),
                            _ => format!(r#","succeeded":{}"#, next(2) == 0),
                        };
                        if timed {
                            // Mostly forward, sometimes a little back (a violation if real).
                            clock += next(8);
                            let back = if next(6) == 0 { next(4) } else { 0 };
                            answer += &format!(r#","log_time_ms":{}"#, clock.saturating_sub(back));
                        }
                        format!(r#""type":"ok"{answer}"#)
                    };
                    lines.push(format!(r#"{{"process":{process},{ending},"f":"{f}"}}"#));
                    open[process] = None;
                }
            }
        }
        lines
    }

    #[test]
    fn the_search_agrees_with_brute_force_on_small_histories_with_unknown_outcomes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for timed in [false, true] {
            let (mut linearizable_seen, mut violations_seen) = (0, 0);
            for _ in 0..3000 {
                let lines = random_history(&mut next, timed);
                let operations = parse(&lines.join("\n")).unwrap();
                let judged: Vec<&Operation> = operations
                    .iter()
                    .filter(|op| op.outcome != Outcome::Failed)
                    .collect();
                let searched = linearizable("k", &judged).unwrap();
                assert_eq!(
                    searched,
                    linearizable_by_brute_force(&judged),
                    "{}",
                    lines.join("\n")
                );
                if searched {
                    linearizable_seen += 1;
                } else {
                    violations_seen += 1;
                }
            }
            // Both verdicts come up many times, or the comparison says little.
            assert!(
                linearizable_seen > 100 && violations_seen > 100,
                "timed {timed}: {linearizable_seen} linearizable, {violations_seen} not"
            );
        }
    }
}
