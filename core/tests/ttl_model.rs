//! The TTL and lease semantics of the state machine, against a simple reference model.
//!
//! The model keeps, per key, its value, its own deadline and its lease, and per lease its
//! deadline; existence at log time t is `deadline > t` for both. Random sequences of puts
//! (plain, with TTL, keeping the TTL, with a lease), deletes, expires with every condition,
//! persists, lease grants / keep-alives / revokes and time steps are applied to both, and every
//! answer and every key's visibility and remaining TTL must agree after each step.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeMap;

use paxkv_core::KvStore;
use paxkv_proto::client::{
    client_response::Body as Response, DeleteRequest, ExpireCondition, ExpireRequest,
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PersistRequest, PutRequest,
    TtlState,
};
use paxkv_proto::peer::{command::Op, entry::Kind, Command, Entry, Noop};
use proptest::prelude::*;

const KEYS: [&[u8]; 3] = [b"a", b"b", b"c"];

#[derive(Debug, Clone)]
enum Step {
    Put {
        key: usize,
        ttl_ms: Option<u64>,
        keep_ttl: bool,
        lease: Option<usize>,
    },
    Delete {
        key: usize,
    },
    Expire {
        key: usize,
        ttl_ms: u64,
        condition: ExpireCondition,
    },
    Persist {
        key: usize,
    },
    Grant {
        ttl_ms: u64,
    },
    KeepAlive {
        lease: usize,
    },
    Revoke {
        lease: usize,
    },
    /// Advance log time by this many milliseconds with a tick entry.
    Tick {
        millis: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0..KEYS.len();
    let condition = prop_oneof![
        Just(ExpireCondition::Always),
        Just(ExpireCondition::Nx),
        Just(ExpireCondition::Xx),
        Just(ExpireCondition::Gt),
        Just(ExpireCondition::Lt),
    ];
    prop_oneof![
        4 => (key.clone(), prop::option::of(1u64..300), any::<bool>(), prop::option::of(0usize..4))
            .prop_map(|(key, ttl_ms, keep_ttl, lease)| Step::Put { key, ttl_ms, keep_ttl, lease }),
        1 => key.clone().prop_map(|key| Step::Delete { key }),
        2 => (key.clone(), 1u64..300, condition).prop_map(|(key, ttl_ms, condition)| Step::Expire { key, ttl_ms, condition }),
        1 => key.prop_map(|key| Step::Persist { key }),
        1 => (1u64..300).prop_map(|ttl_ms| Step::Grant { ttl_ms }),
        1 => (0usize..4).prop_map(|lease| Step::KeepAlive { lease }),
        1 => (0usize..4).prop_map(|lease| Step::Revoke { lease }),
        4 => (0u64..150).prop_map(|millis| Step::Tick { millis }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelKey {
    value: Vec<u8>,
    /// 0: no TTL.
    deadline: u64,
    /// 0: no lease.
    lease: u64,
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    keys: BTreeMap<Vec<u8>, ModelKey>,
    /// lease id -> (granted ttl, deadline)
    leases: BTreeMap<u64, (u64, u64)>,
    granted: Vec<u64>,
}

impl Model {
    fn lease_live(&self, id: u64) -> bool {
        self.leases
            .get(&id)
            .is_some_and(|(_, deadline)| *deadline > self.now)
    }

    fn live(&self, key: &[u8]) -> Option<&ModelKey> {
        self.keys.get(key).filter(|k| {
            (k.deadline == 0 || k.deadline > self.now) && (k.lease == 0 || self.lease_live(k.lease))
        })
    }

    fn lease_id(&self, slot: usize) -> u64 {
        // Slot beyond the granted ones names a lease that never existed.
        self.granted
            .get(slot)
            .copied()
            .unwrap_or(1_000_000 + slot as u64)
    }

    /// Applies a step; returns the outcome the store must report.
    fn apply(&mut self, index: u64, step: &Step) -> Outcome {
        match *step {
            Step::Put {
                key,
                ttl_ms,
                keep_ttl,
                lease,
            } => {
                let lease = lease.map(|slot| self.lease_id(slot));
                if let Some(id) = lease {
                    if !self.lease_live(id) {
                        return Outcome::NotFound;
                    }
                }
                let current = self.live(KEYS[key]).cloned();
                let deadline = match (ttl_ms, keep_ttl) {
                    (Some(ttl), _) => self.now + ttl,
                    (None, true) => current.map_or(0, |k| k.deadline),
                    (None, false) => 0,
                };
                let value = format!("v{index}").into_bytes();
                self.keys.insert(
                    KEYS[key].to_vec(),
                    ModelKey {
                        value,
                        deadline,
                        lease: lease.unwrap_or(0),
                    },
                );
                Outcome::Done(true)
            }
            Step::Delete { key } => {
                let existed = self.live(KEYS[key]).is_some();
                self.keys.remove(KEYS[key]);
                Outcome::Done(existed)
            }
            Step::Expire {
                key,
                ttl_ms,
                condition,
            } => {
                let deadline = self.now + ttl_ms;
                let Some(current) = self.live(KEYS[key]).map(|k| k.deadline) else {
                    return Outcome::Done(false);
                };
                let applies = match condition {
                    ExpireCondition::Always => true,
                    ExpireCondition::Nx => current == 0,
                    ExpireCondition::Xx => current != 0,
                    ExpireCondition::Gt => current != 0 && deadline > current,
                    ExpireCondition::Lt => current == 0 || deadline < current,
                };
                if applies {
                    self.keys.get_mut(KEYS[key]).unwrap().deadline = deadline;
                }
                Outcome::Done(applies)
            }
            Step::Persist { key } => {
                let has_ttl = self.live(KEYS[key]).is_some_and(|k| k.deadline != 0);
                if has_ttl {
                    self.keys.get_mut(KEYS[key]).unwrap().deadline = 0;
                }
                Outcome::Done(has_ttl)
            }
            Step::Grant { ttl_ms } => {
                self.leases.insert(index, (ttl_ms, self.now + ttl_ms));
                self.granted.push(index);
                Outcome::Done(true)
            }
            Step::KeepAlive { lease } => {
                let id = self.lease_id(lease);
                if !self.lease_live(id) {
                    return Outcome::NotFound;
                }
                let entry = self.leases.get_mut(&id).unwrap();
                entry.1 = self.now + entry.0;
                Outcome::Done(true)
            }
            Step::Revoke { lease } => {
                let id = self.lease_id(lease);
                if !self.lease_live(id) {
                    return Outcome::NotFound;
                }
                self.leases.remove(&id);
                self.keys.retain(|_, k| k.lease != id);
                Outcome::Done(true)
            }
            Step::Tick { millis } => {
                self.now += millis;
                Outcome::Nothing
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The command took effect (true) or was a no-op answer (false).
    Done(bool),
    NotFound,
    Nothing,
}

fn outcome_of(response: Option<Response>) -> Outcome {
    match response {
        None => Outcome::Nothing,
        Some(Response::Put(put)) => Outcome::Done(put.succeeded),
        Some(Response::Delete(delete)) => Outcome::Done(delete.deleted),
        Some(Response::Expire(expire)) => Outcome::Done(expire.applied),
        Some(Response::Persist(persist)) => Outcome::Done(persist.removed),
        Some(Response::LeaseGrant(_))
        | Some(Response::LeaseKeepAlive(_))
        | Some(Response::LeaseRevoke(_)) => Outcome::Done(true),
        Some(Response::Error(error))
            if error.code == paxkv_proto::client::ErrorCode::NotFound as i32 =>
        {
            Outcome::NotFound
        }
        Some(other) => panic!("unexpected answer {other:?}"),
    }
}

fn entry(index: u64, step: &Step, model: &Model, log_time_ms: u64) -> Entry {
    let op = match *step {
        Step::Put {
            key,
            ttl_ms,
            keep_ttl,
            lease,
        } => Op::Put(PutRequest {
            key: KEYS[key].to_vec(),
            value: format!("v{index}").into_bytes(),
            ttl_ms,
            keep_ttl,
            lease_id: lease.map(|slot| model.lease_id(slot)),
            expected_revision: None,
            skip_previous: false,
        }),
        Step::Delete { key } => Op::Delete(DeleteRequest {
            key: KEYS[key].to_vec(),
            expected_revision: None,
            prefix: false,
            range_end: Vec::new(),
        }),
        Step::Expire {
            key,
            ttl_ms,
            condition,
        } => Op::Expire(ExpireRequest {
            key: KEYS[key].to_vec(),
            ttl_ms,
            condition: condition as i32,
        }),
        Step::Persist { key } => Op::Persist(PersistRequest {
            key: KEYS[key].to_vec(),
        }),
        Step::Grant { ttl_ms } => Op::LeaseGrant(LeaseGrantRequest { ttl_ms }),
        Step::KeepAlive { lease } => Op::LeaseKeepAlive(LeaseKeepAliveRequest {
            lease_id: model.lease_id(lease),
        }),
        Step::Revoke { lease } => Op::LeaseRevoke(LeaseRevokeRequest {
            lease_id: model.lease_id(lease),
        }),
        Step::Tick { .. } => {
            return Entry {
                kind: Some(Kind::Noop(Noop {})),
                log_time_ms,
            }
        }
    };
    Entry {
        kind: Some(Kind::Command(Command {
            client_id: 0,
            sequence: 0,
            op: Some(op),
        })),
        log_time_ms,
    }
}

fn check_keys(store: &KvStore, model: &Model, after: &Step) {
    for key in KEYS {
        let expected = model.live(key);
        let got = store.get(key);
        assert_eq!(
            got.as_ref().map(|kv| &kv.value),
            expected.map(|k| &k.value),
            "{key:?} after {after:?}"
        );
        let Response::Ttl(ttl) = store.ttl(key) else {
            panic!("ttl answers with a TtlResponse")
        };
        match expected {
            None => assert_eq!(ttl.state(), TtlState::NoKey),
            Some(k) if k.deadline == 0 => assert_eq!(ttl.state(), TtlState::NoTtl),
            Some(k) => {
                assert_eq!(ttl.state(), TtlState::Remaining);
                assert_eq!(ttl.remaining_ms, k.deadline - model.now);
            }
        }
    }
    for (id, (_, deadline)) in &model.leases {
        match store.lease_time_to_live(*id, false) {
            Response::LeaseTimeToLive(lease) => {
                assert!(
                    *deadline > model.now,
                    "lease {id} answered after its deadline"
                );
                assert_eq!(lease.remaining_ms, deadline - model.now);
            }
            Response::Error(_) => assert!(*deadline <= model.now, "live lease {id} not found"),
            other => panic!("{other:?}"),
        }
    }
}

fn run(steps: &[Step]) {
    let mut store = KvStore::new();
    let mut model = Model::default();
    for (offset, step) in steps.iter().enumerate() {
        let index = offset as u64 + 1;
        if let Step::Tick { millis } = step {
            model.now += millis;
        }
        let log_entry = entry(index, step, &model, model.now);
        let expected = if matches!(step, Step::Tick { .. }) {
            Outcome::Nothing
        } else {
            model.apply(index, step)
        };
        let got = outcome_of(store.apply(index, &log_entry));
        assert_eq!(
            got, expected,
            "answer to {step:?} at log time {}",
            model.now
        );
        check_keys(&store, &model, step);
        // A snapshot taken at any point restores the same state.
        if index.is_multiple_of(7) {
            let restored = KvStore::from_snapshot(store.to_snapshot());
            assert_eq!(restored.state_hash(), store.state_hash());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ttl_and_lease_semantics_match_the_model(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps);
    }
}

#[test]
fn an_overwrite_with_a_new_ttl_outlives_the_old_deadline() {
    run(&[
        Step::Put {
            key: 0,
            ttl_ms: Some(100),
            keep_ttl: false,
            lease: None,
        },
        Step::Tick { millis: 50 },
        Step::Put {
            key: 0,
            ttl_ms: Some(500),
            keep_ttl: false,
            lease: None,
        },
        Step::Tick { millis: 100 },
        Step::Tick { millis: 300 },
    ]);
}

fn put_with_ttl(key: &str, ttl_ms: u64) -> Entry {
    Entry {
        kind: Some(Kind::Command(Command {
            client_id: 0,
            sequence: 0,
            op: Some(Op::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                ttl_ms: Some(ttl_ms),
                ..Default::default()
            })),
        })),
        log_time_ms: 0,
    }
}

fn tick(log_time_ms: u64) -> Entry {
    Entry {
        kind: Some(Kind::Noop(Noop {})),
        log_time_ms,
    }
}

/// A burst of keys that end at the same millisecond goes at once, at one revision, whatever
/// the bound on expiry work per entry.
#[test]
fn a_burst_of_expiries_at_one_deadline_goes_at_once_at_one_revision() {
    let mut store = KvStore::new();
    let count = paxkv_core::kv::EXPIRED_KEYS_PER_ENTRY_MAX * 2 + 10;
    for index in 0..count {
        store.apply(index as u64 + 1, &put_with_ttl(&format!("k{index:05}"), 10));
    }
    let revision = store.revision();
    store.apply(count as u64 + 1, &tick(10));
    assert_eq!(store.key_count(), 0);
    assert_eq!(
        store.revision(),
        revision + 1,
        "one revision for the whole burst"
    );
    assert!(!store.has_deadlines() && !store.expiry_lags());
}

/// Deadlines spread over several milliseconds, more keys than the bound: each entry deletes
/// whole deadlines while they fit, and the store's log time stops just before the first that
/// does not, so that no key is ever visible after its deadline and none vanishes without a
/// revision.
#[test]
fn spread_expiries_beyond_the_bound_hold_log_time_back_and_catch_up() {
    let mut store = KvStore::new();
    let per_deadline = paxkv_core::kv::EXPIRED_KEYS_PER_ENTRY_MAX * 6 / 10;
    let mut index = 0;
    for deadline in 10..14u64 {
        for key in 0..per_deadline {
            index += 1;
            store.apply(
                index,
                &put_with_ttl(&format!("d{deadline}/{key:04}"), deadline),
            );
        }
    }
    let revision = store.revision();
    for (step, deadline) in (10..14u64).enumerate() {
        index += 1;
        store.apply(index, &tick(100));
        let step = step as u64 + 1;
        assert_eq!(store.revision(), revision + step, "one revision per entry");
        assert_eq!(store.key_count(), per_deadline * (4 - step as usize));
        if deadline < 13 {
            // Held just before the next deadline, whose keys are still there and visible.
            assert_eq!(store.log_time_ms(), deadline);
            assert!(store.expiry_lags());
            assert!(store
                .get(format!("d{}/0000", deadline + 1).as_bytes())
                .is_some());
        } else {
            assert_eq!(store.log_time_ms(), 100);
            assert!(!store.expiry_lags());
        }
        assert!(store.get(format!("d{deadline}/0000").as_bytes()).is_none());
    }
}
