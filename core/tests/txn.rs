//! Transactions and range deletes in the state machine: compares on several keys pick a
//! branch, the branch applies whole at one revision or not at all, and its bounds hold.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use paxkv_core::KvStore;
use paxkv_proto::client::{
    client_response::Body as Response, txn_op, txn_op_response, Compare, CompareOp, CompareTarget,
    DeleteRequest, ErrorCode, GetRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, TxnOp,
    TxnRequest, TxnResponse,
};
use paxkv_proto::peer::{command::Op, entry::Kind, Command, Entry};
use paxkv_proto::{DELETE_PREFIX_KEYS_MAX, TXN_OPS_MAX};

struct Store {
    kv: KvStore,
    index: u64,
}

impl Store {
    fn new() -> Store {
        Store {
            kv: KvStore::new(),
            index: 0,
        }
    }

    fn apply(&mut self, op: Op) -> Response {
        self.index += 1;
        let entry = Entry {
            kind: Some(Kind::Command(Command {
                client_id: 0,
                sequence: 0,
                op: Some(op),
            })),
            log_time_ms: 1,
        };
        self.kv.apply(self.index, &entry).unwrap()
    }

    fn put(&mut self, key: &str, value: &str) -> u64 {
        self.apply(Op::Put(put_request(key, value)));
        self.kv.revision()
    }

    fn txn(&mut self, txn: TxnRequest) -> Result<TxnResponse, (i32, String)> {
        match self.apply(Op::Txn(txn)) {
            Response::Txn(txn) => Ok(txn),
            Response::Error(error) => Err((error.code, error.message)),
            other => panic!("not a transaction answer: {other:?}"),
        }
    }

    fn value(&self, key: &str) -> Option<String> {
        self.kv
            .get(key.as_bytes())
            .map(|kv| String::from_utf8(kv.value).unwrap())
    }
}

fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp {
        op: Some(txn_op::Op::Put(put_request(key, value))),
    }
}

fn get(key: &str) -> TxnOp {
    TxnOp {
        op: Some(txn_op::Op::Get(GetRequest {
            key: key.into(),
            ..Default::default()
        })),
    }
}

fn delete(key: &str, range_end: &str, prefix: bool) -> TxnOp {
    TxnOp {
        op: Some(txn_op::Op::Delete(DeleteRequest {
            key: key.into(),
            range_end: range_end.into(),
            prefix,
            expected_revision: None,
        })),
    }
}

fn compare(key: &str, target: CompareTarget, op: CompareOp, number: u64, value: &str) -> Compare {
    Compare {
        key: key.into(),
        target: target as i32,
        op: op as i32,
        value: value.into(),
        number,
    }
}

fn got(response: &TxnResponse, index: usize) -> Option<String> {
    match &response.responses[index].op {
        Some(txn_op_response::Op::Get(get)) => get
            .kv
            .as_ref()
            .map(|kv| String::from_utf8(kv.value.clone()).unwrap()),
        other => panic!("not a get answer: {other:?}"),
    }
}

#[test]
fn compares_on_several_keys_pick_the_branch_and_its_writes_share_one_revision() {
    let mut store = Store::new();
    let a = store.put("a", "1");
    store.put("b", "2");
    let holds = vec![
        compare("a", CompareTarget::ModRevision, CompareOp::Equal, a, ""),
        compare("b", CompareTarget::Value, CompareOp::Equal, 0, "2"),
        compare("c", CompareTarget::Exists, CompareOp::NotEqual, 0, ""),
        compare("b", CompareTarget::Version, CompareOp::Greater, 0, ""),
    ];
    let txn = store
        .txn(TxnRequest {
            compare: holds.clone(),
            success: vec![
                put("a", "10"),
                put("c", "30"),
                delete("b", "", false),
                get("c"),
            ],
            failure: vec![get("a")],
        })
        .unwrap();
    assert!(txn.succeeded);
    assert_eq!(txn.responses.len(), 4);
    assert_eq!(
        got(&txn, 3).as_deref(),
        Some("30"),
        "a get sees the writes before it"
    );
    let revision = txn.header.unwrap().revision;
    assert_eq!(revision, 3, "three writes, one revision");
    assert_eq!(store.kv.get(b"a").unwrap().mod_revision, revision);
    assert_eq!(store.kv.get(b"c").unwrap().mod_revision, revision);
    assert_eq!(store.value("b"), None);
    let events = store.kv.watch_events(2).unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|event| event.revision == revision));

    // The same compares no longer hold: the failure branch runs and nothing is written.
    let txn = store
        .txn(TxnRequest {
            compare: holds,
            success: vec![put("a", "never")],
            failure: vec![get("a")],
        })
        .unwrap();
    assert!(!txn.succeeded);
    assert_eq!(got(&txn, 0).as_deref(), Some("10"));
    assert_eq!(
        store.kv.revision(),
        revision,
        "a branch of reads creates no revision"
    );
}

#[test]
fn a_value_compare_on_a_missing_key_is_false_whatever_the_operator() {
    let mut store = Store::new();
    for op in [
        CompareOp::Equal,
        CompareOp::NotEqual,
        CompareOp::Greater,
        CompareOp::Less,
    ] {
        let txn = store
            .txn(TxnRequest {
                compare: vec![compare("nope", CompareTarget::Value, op, 0, "x")],
                success: vec![put("hit", "1")],
                failure: vec![],
            })
            .unwrap();
        assert!(!txn.succeeded, "{op:?}");
    }
    // Numbers of a missing key are 0.
    let txn = store
        .txn(TxnRequest {
            compare: vec![
                compare("nope", CompareTarget::Version, CompareOp::Equal, 0, ""),
                compare("nope", CompareTarget::ModRevision, CompareOp::Less, 1, ""),
            ],
            success: vec![put("hit", "1")],
            failure: vec![],
        })
        .unwrap();
    assert!(txn.succeeded);
}

/// The review's worry for every multi-step write: a branch that cannot finish must not leave
/// its first half behind. A put naming a lease that has gone fails the whole transaction.
#[test]
fn a_put_with_a_lease_that_is_gone_fails_the_whole_transaction() {
    let mut store = Store::new();
    let Response::LeaseGrant(grant) =
        store.apply(Op::LeaseGrant(LeaseGrantRequest { ttl_ms: 10_000 }))
    else {
        panic!("no grant")
    };
    store.apply(Op::LeaseRevoke(LeaseRevokeRequest {
        lease_id: grant.lease_id,
    }));
    let before = store.kv.revision();
    let mut with_lease = put_request("owned", "x");
    with_lease.lease_id = Some(grant.lease_id);
    let error = store
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                put("first", "1"),
                TxnOp {
                    op: Some(txn_op::Op::Put(with_lease)),
                },
            ],
            failure: vec![],
        })
        .unwrap_err();
    assert_eq!(error.0, ErrorCode::NotFound as i32, "{error:?}");
    assert_eq!(store.value("first"), None, "the put before it was applied");
    assert_eq!(store.kv.revision(), before);
}

#[test]
fn a_branch_writes_each_key_once_and_stays_within_its_bounds() {
    let mut store = Store::new();
    let refused = |store: &mut Store, success: Vec<TxnOp>| {
        let error = store
            .txn(TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            })
            .unwrap_err();
        assert_eq!(error.0, ErrorCode::BadRequest as i32, "{error:?}");
        error.1
    };
    assert!(refused(&mut store, vec![put("a", "1"), put("a", "2")]).contains("twice"));
    assert!(refused(&mut store, vec![put("p/a", "1"), delete("p/", "", true)]).contains("both"));
    assert!(refused(&mut store, vec![delete("a", "c", false), put("b", "1")]).contains("both"));
    let many = (0..=TXN_OPS_MAX)
        .map(|i| put(&format!("k{i}"), "v"))
        .collect();
    assert!(refused(&mut store, many).contains("limit"));
    let mut cas = put_request("a", "1");
    cas.expected_revision = Some(0);
    assert!(refused(
        &mut store,
        vec![TxnOp {
            op: Some(txn_op::Op::Put(cas))
        }]
    )
    .contains("compare"));
    assert_eq!(store.kv.revision(), 0, "nothing refused was applied");
}

#[test]
fn range_delete_removes_start_to_end_excluded_at_one_revision() {
    let mut store = Store::new();
    for key in ["a", "b", "b2", "c", "d"] {
        store.put(key, "v");
    }
    let Response::Delete(deleted) = store.apply(Op::Delete(DeleteRequest {
        key: "b".into(),
        range_end: "d".into(),
        prefix: false,
        expected_revision: None,
    })) else {
        panic!("not a delete answer")
    };
    assert_eq!((deleted.deleted_count, deleted.more), (3, false));
    assert_eq!(deleted.header.unwrap().revision, 6);
    let left: Vec<_> = ["a", "b", "b2", "c", "d"]
        .into_iter()
        .filter(|key| store.value(key).is_some())
        .collect();
    assert_eq!(left, ["a", "d"]);
    // An end before the start, or a range with an expected revision, is refused.
    for (end, expected) in [("a", None), ("z", Some(1))] {
        let Response::Error(error) = store.apply(Op::Delete(DeleteRequest {
            key: "b".into(),
            range_end: end.into(),
            prefix: false,
            expected_revision: expected,
        })) else {
            panic!("a bad range was accepted")
        };
        assert_eq!(error.code, ErrorCode::BadRequest as i32);
    }
}

#[test]
fn a_range_delete_too_large_for_one_transaction_is_refused_before_anything_changes() {
    let mut store = Store::new();
    for i in 0..=DELETE_PREFIX_KEYS_MAX {
        store.put(&format!("big/{i:06}"), "");
    }
    let before = store.kv.revision();
    let error = store
        .txn(TxnRequest {
            compare: vec![],
            success: vec![put("other", "1"), delete("big/", "", true)],
            failure: vec![],
        })
        .unwrap_err();
    assert!(error.1.contains("more than"), "{error:?}");
    assert_eq!(store.kv.revision(), before);
    assert_eq!(store.value("other"), None);
}

#[test]
fn compare_and_delete_removes_only_the_revision_it_names() {
    let mut store = Store::new();
    let first = store.put("k", "1");
    store.put("k", "2");
    let delete = |revision| {
        Op::Delete(DeleteRequest {
            key: "k".into(),
            expected_revision: Some(revision),
            ..Default::default()
        })
    };
    let Response::Delete(stale) = store.apply(delete(first)) else {
        panic!()
    };
    assert!(!stale.deleted);
    assert_eq!(stale.previous.unwrap().mod_revision, first + 1);
    let Response::Delete(current) = store.apply(delete(first + 1)) else {
        panic!()
    };
    assert!(current.deleted);
    assert_eq!(store.value("k"), None);
}
