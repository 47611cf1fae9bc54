//! The checker against histories made by a real register: every history produced by running
//! operations atomically at some point between their call and return is linearizable, and
//! corrupting one read's answer in a history where every read sees a unique value is caught.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use paxkv_sim::checker::check;
use paxkv_sim::history::parse;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put,
    Get,
    Delete,
}

/// Simulates `processes` clients on one key: at each step one client either invokes, takes
/// effect (atomically, against the register) or returns. Returns JSON lines.
fn run(steps: &[(usize, Op, u8)], processes: usize) -> (Vec<String>, usize) {
    #[derive(Clone)]
    enum Phase {
        Idle,
        Invoked(Op, String),
        Done(String),
    }
    let mut phases = vec![Phase::Idle; processes];
    let mut register: Option<String> = None;
    let mut revision = 0u64;
    let mut lines = Vec::new();
    let mut reads_of_values = 0;
    for (index, (process, op, _)) in steps.iter().enumerate() {
        let process = process % processes;
        match phases[process].clone() {
            Phase::Idle => {
                let value = format!("v{index}");
                let (f, extra) = match op {
                    Op::Put => ("put", format!(r#","value":"{value}""#)),
                    Op::Get => ("get", String::new()),
                    Op::Delete => ("delete", String::new()),
                };
                lines.push(format!(
                    r#"{{"process":{process},"type":"invoke","f":"{f}","key":"k"{extra}}}"#
                ));
                phases[process] = Phase::Invoked(op.clone(), value);
            }
            Phase::Invoked(op, value) => {
                // The linearization point: the operation acts on the register now.
                let completion = match op {
                    Op::Put => {
                        revision += 1;
                        register = Some(value);
                        format!(
                            r#"{{"process":{process},"type":"ok","f":"put","revision":{revision}}}"#
                        )
                    }
                    Op::Get => match &register {
                        Some(read) => {
                            reads_of_values += 1;
                            format!(
                                r#"{{"process":{process},"type":"ok","f":"get","value":"{read}"}}"#
                            )
                        }
                        None => format!(r#"{{"process":{process},"type":"ok","f":"get"}}"#),
                    },
                    Op::Delete => {
                        let deleted = register.take().is_some();
                        if deleted {
                            revision += 1;
                        }
                        format!(
                            r#"{{"process":{process},"type":"ok","f":"delete","succeeded":{deleted}}}"#
                        )
                    }
                };
                phases[process] = Phase::Done(completion);
            }
            Phase::Done(completion) => {
                lines.push(completion);
                phases[process] = Phase::Idle;
            }
        }
    }
    (lines, reads_of_values)
}

fn steps() -> impl Strategy<Value = Vec<(usize, Op, u8)>> {
    let op = prop_oneof![Just(Op::Put), Just(Op::Get), Just(Op::Delete)];
    prop::collection::vec((0usize..4, op, any::<u8>()), 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn histories_of_a_real_register_are_linearizable(steps in steps()) {
        let (lines, _) = run(&steps, 4);
        let operations = parse(&lines.join("\n")).unwrap();
        prop_assert_eq!(check(&operations).unwrap(), None);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught(steps in steps()) {
        let (mut lines, _) = run(&steps, 4);
        let position = lines.iter().position(|line| line.contains(r#""f":"get","value""#));
        prop_assume!(position.is_some());
        let position = position.unwrap();
        let corrupted = lines[position].replace(r#""value":"v"#, r#""value":"never-written-"#);
        lines[position] = corrupted;
        let operations = parse(&lines.join("\n")).unwrap();
        prop_assert!(check(&operations).unwrap().is_some());
    }
}
