//! Per-key linearizability checking by the Wing-Gong search with Lowe's memoisation.
//!
//! Operations on different keys commute, so each key's sub-history is checked alone. The
//! search walks the history's calls and returns in order, tries to linearize each pending call
//! (if the register model accepts what it returned), backtracks at a return whose operation was
//! not linearized yet, and remembers every (set of linearized operations, register state) it
//! has explored, so no configuration is searched twice. Operations with unknown outcomes never
//! return: they may take effect at any point after their call, or never.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Call, Operation, Outcome, Returned};

/// Operations per key the search takes on; larger sub-histories are refused, not guessed.
pub const OPERATIONS_PER_KEY_MAX: usize = 4096;

/// The register the operations act on: value and the revision that wrote it (None when the
/// writer's revision is not known, e.g. an unknown-outcome put).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Register {
    value: Option<String>,
    revision: Option<u64>,
}

/// The possible states after `operation` runs on `state`, if what it returned is consistent.
fn step(state: &Register, operation: &Operation) -> Vec<Register> {
    let written = |value: &String, revision: Option<u64>| Register {
        value: Some(value.clone()),
        revision,
    };
    let mut next = match (&operation.call, &operation.outcome) {
        (_, Outcome::Failed) => vec![state.clone()],
        (Call::Put { value }, Outcome::Ok(Returned::Written { revision })) => {
            vec![written(value, *revision)]
        }
        (Call::Put { value }, Outcome::Unknown) => vec![written(value, None)],
        (Call::Get, Outcome::Ok(Returned::Read { value })) => {
            if &state.value == value {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (Call::Get, Outcome::Unknown) => vec![state.clone()],
        (Call::Delete, Outcome::Ok(Returned::Deleted { deleted })) => {
            if *deleted == state.value.is_some() {
                vec![Register {
                    value: None,
                    revision: None,
                }]
            } else {
                vec![]
            }
        }
        (Call::Delete, Outcome::Unknown) => vec![Register {
            value: None,
            revision: None,
        }],
        (
            Call::Cas {
                expected_revision,
                value,
            },
            outcome,
        ) => {
            let matches = match (*expected_revision, &state.value, state.revision) {
                (0, None, _) => Some(true),
                (0, Some(_), _) => Some(false),
                (_, None, _) => Some(false),
                (expected, Some(_), Some(revision)) => Some(expected == revision),
                // The writer's revision is unknown: it may have been the expected one.
                (_, Some(_), None) => None,
            };
            match outcome {
                Outcome::Ok(Returned::Written { revision }) if matches != Some(false) => {
                    vec![written(value, *revision)]
                }
                Outcome::Ok(Returned::CasRefused) if matches != Some(true) => vec![state.clone()],
                Outcome::Unknown if matches != Some(false) => vec![written(value, None)],
                _ => vec![],
            }
        }
        _ => vec![],
    };
    // An operation with an unknown outcome may also have had no effect at all.
    if operation.outcome == Outcome::Unknown && !next.contains(state) {
        next.push(state.clone());
    }
    next
}

/// A violation: the smallest failing key's sub-history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub operations: Vec<Operation>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "key {:?}: no linearization of these {} operations exists:",
            self.key,
            self.operations.len()
        )?;
        for operation in &self.operations {
            let completed = operation
                .completed_at
                .map_or("never".to_string(), |line| format!("line {line}"));
            writeln!(
                f,
                "  process {:>3}  line {:>5} .. {:<10} {:?} -> {:?}",
                operation.process,
                operation.invoked_at,
                completed,
                operation.call,
                operation.outcome
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("key {key:?} has {operations} operations; the checker takes at most {OPERATIONS_PER_KEY_MAX} per key")]
    TooLarge { key: String, operations: usize },
}

/// Checks every key; returns the violation with the fewest operations, if any.
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
        if !linearizable(&operations) {
            let violation = Violation {
                key: key.to_string(),
                operations: operations.into_iter().cloned().collect(),
            };
            if smallest
                .as_ref()
                .is_none_or(|found| violation.operations.len() < found.operations.len())
            {
                smallest = Some(violation);
            }
        }
    }
    Ok(smallest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Call(usize),
    Return(usize),
}

/// The Wing-Gong-Lowe search over one key's operations.
fn linearizable(operations: &[&Operation]) -> bool {
    // Calls and returns in history order; unknown outcomes never return.
    let mut points: Vec<(usize, Point)> = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        points.push((operation.invoked_at, Point::Call(index)));
        if let Some(line) = operation.completed_at {
            points.push((line, Point::Return(index)));
        }
    }
    points.sort_by_key(|(line, _)| *line);
    let points: Vec<Point> = points.into_iter().map(|(_, point)| point).collect();
    let count = operations.len();
    let mut done = vec![false; count];
    let mut seen: BTreeSet<(Vec<bool>, Register)> = BTreeSet::new();
    // Depth-first search with an explicit stack: (state, point to resume from, op, choice).
    let mut stack: Vec<(Register, usize, usize, usize)> = Vec::new();
    let mut state = Register {
        value: None,
        revision: None,
    };
    let mut position = 0usize;
    let mut choice = 0usize;
    loop {
        // Every completed operation is linearized (unknown ones may stay out): success.
        let complete = operations
            .iter()
            .enumerate()
            .all(|(index, operation)| done[index] || operation.completed_at.is_none());
        if complete {
            return true;
        }
        let point = points.get(position).copied();
        let advanced = match point {
            Some(Point::Call(index)) if !done[index] => {
                let options = step(&state, operations[index]);
                let mut placed = false;
                for (offset, next) in options.iter().enumerate().skip(choice) {
                    let mut marks = done.clone();
                    marks[index] = true;
                    if seen.insert((marks, next.clone())) {
                        stack.push((state.clone(), position, index, offset + 1));
                        done[index] = true;
                        state = next.clone();
                        placed = true;
                        break;
                    }
                }
                choice = 0;
                if placed {
                    // Linearizing an operation can make earlier-skipped calls placeable again.
                    position = 0;
                } else {
                    position += 1;
                }
                true
            }
            Some(Point::Call(_)) => {
                position += 1;
                true
            }
            Some(Point::Return(index)) if done[index] => {
                position += 1;
                true
            }
            // A return whose operation is not linearized yet, or the end: backtrack.
            Some(Point::Return(_)) | None => false,
        };
        if advanced {
            continue;
        }
        let Some((previous, resume, index, next_choice)) = stack.pop() else {
            return false;
        };
        done[index] = false;
        state = previous;
        position = resume;
        choice = next_choice;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse;

    fn history(lines: &[&str]) -> Vec<Operation> {
        parse(&lines.join("\n")).unwrap()
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let operations = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
            r#"{"process":1,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":1,"type":"ok","f":"get","value":"a"}"#,
            r#"{"process":1,"type":"invoke","f":"cas","key":"k","expected_revision":1,"value":"b"}"#,
            r#"{"process":1,"type":"ok","f":"cas","succeeded":true,"revision":2}"#,
            r#"{"process":1,"type":"invoke","f":"delete","key":"k"}"#,
            r#"{"process":1,"type":"ok","f":"delete","succeeded":true}"#,
        ]);
        assert_eq!(check(&operations).unwrap(), None);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let operations = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"b"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":2}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
            r#"{"process":3,"type":"invoke","f":"get","key":"other"}"#,
            r#"{"process":3,"type":"ok","f":"get"}"#,
        ]);
        let violation = check(&operations).unwrap().expect("a violation");
        assert_eq!(violation.key, "k");
        assert!(violation.to_string().contains("no linearization"));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let operations = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
        ]);
        assert_eq!(check(&operations).unwrap(), None);
    }

    #[test]
    fn an_unknown_write_may_take_effect_or_not() {
        let took_effect = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"info","f":"put"}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
        ]);
        assert_eq!(check(&took_effect).unwrap(), None);
        let did_not = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get"}"#,
        ]);
        assert_eq!(check(&did_not).unwrap(), None);
        // But a failed write certainly did not happen.
        let failed = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"fail","f":"put"}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get","value":"a"}"#,
        ]);
        assert!(check(&failed).unwrap().is_some());
    }

    #[test]
    fn a_lost_acknowledged_write_is_a_violation() {
        let operations = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":1}"#,
            r#"{"process":2,"type":"invoke","f":"get","key":"k"}"#,
            r#"{"process":2,"type":"ok","f":"get"}"#,
        ]);
        assert!(check(&operations).unwrap().is_some());
    }

    #[test]
    fn compare_and_set_follows_revisions() {
        let wrong = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":5}"#,
            r#"{"process":1,"type":"invoke","f":"cas","key":"k","expected_revision":4,"value":"b"}"#,
            r#"{"process":1,"type":"ok","f":"cas","succeeded":true,"revision":6}"#,
        ]);
        assert!(
            check(&wrong).unwrap().is_some(),
            "a CAS on a stale revision must not succeed"
        );
        let refused = history(&[
            r#"{"process":1,"type":"invoke","f":"put","key":"k","value":"a"}"#,
            r#"{"process":1,"type":"ok","f":"put","revision":5}"#,
            r#"{"process":1,"type":"invoke","f":"cas","key":"k","expected_revision":4,"value":"b"}"#,
            r#"{"process":1,"type":"ok","f":"cas","succeeded":false}"#,
        ]);
        assert_eq!(check(&refused).unwrap(), None);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let error = parse("{\"process\":1,\"type\":\"invoke\",\"f\":\"put\",\"key\":\"k\",\"value\":\"a\"}\nnot json").unwrap_err();
        assert!(error.to_string().starts_with("line 2:"), "{error}");
    }
}
