//! Scans at a revision: every page of a scan shows one state, rebuilt from the change history
//! (deletes, overwrites, expiry and lease ends undone), and a revision older than the history
//! is refused with its bound.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use paxkv_core::{KvStore, ReadRequest};
use paxkv_proto::client::{
    client_response::Body as Response, Consistency, DeleteRequest, ErrorCode, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, ScanRequest,
};
use paxkv_proto::peer::{command::Op, entry::Kind, Command, Entry, Noop};

struct Store {
    kv: KvStore,
    index: u64,
    time: u64,
}

impl Store {
    fn new() -> Store {
        Store {
            kv: KvStore::new(),
            index: 0,
            time: 0,
        }
    }

    fn apply(&mut self, op: Option<Op>) -> Option<Response> {
        self.index += 1;
        let kind = match op {
            Some(op) => Kind::Command(Command {
                client_id: 0,
                sequence: 0,
                op: Some(op),
            }),
            None => Kind::Noop(Noop {}),
        };
        let entry = Entry {
            kind: Some(kind),
            log_time_ms: self.time,
        };
        self.kv.apply(self.index, &entry)
    }

    fn put(&mut self, key: &str, value: &str, ttl_ms: Option<u64>, lease_id: Option<u64>) -> u64 {
        self.apply(Some(Op::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ttl_ms,
            lease_id,
            ..Default::default()
        })));
        self.kv.revision()
    }

    fn delete(&mut self, key: &str) {
        self.apply(Some(Op::Delete(DeleteRequest {
            key: key.into(),
            expected_revision: None,
            prefix: false,
            range_end: Vec::new(),
        })));
    }

    /// (key, value) of one page at `revision` (0: now), the page's header revision, and more.
    fn page(&self, after: &str, limit: u32, revision: u64) -> (Vec<(String, String)>, u64, bool) {
        let read = ReadRequest::Scan(ScanRequest {
            prefix: b"k".to_vec(),
            limit,
            start_after: after.into(),
            consistency: Consistency::AtLeastRevision as i32,
            min_revision: revision,
            min_applied_index: 0,
            revision,
        });
        match read.answer(&self.kv) {
            Response::Scan(scan) => (
                scan.kvs
                    .iter()
                    .map(|kv| {
                        (
                            String::from_utf8(kv.key.clone()).unwrap(),
                            String::from_utf8(kv.value.clone()).unwrap(),
                        )
                    })
                    .collect(),
                scan.header.unwrap().revision,
                scan.more,
            ),
            other => panic!("not a scan: {other:?}"),
        }
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[test]
fn later_pages_show_the_first_pages_revision_whatever_changed_since() {
    let mut store = Store::new();
    store.apply(Some(Op::LeaseGrant(LeaseGrantRequest { ttl_ms: 60_000 })));
    let lease = store.kv.lease_list(0, 10).0[0].lease_id;
    store.put("k1", "a", None, None);
    store.put("k2", "b", Some(50), None);
    store.put("k3", "c", None, Some(lease));
    store.put("k4", "d", None, None);
    let (first, pinned, more) = store.page("", 2, 0);
    assert_eq!((first, more), (pairs(&[("k1", "a"), ("k2", "b")]), true));
    // Everything changes after the first page: an overwrite, a delete, a new key, an expiry
    // (k2's TTL ends) and a lease revoked with its key.
    store.put("k1", "a2", None, None);
    store.delete("k4");
    store.put("k5", "e", None, None);
    store.time = 100;
    store.apply(None);
    store.apply(Some(Op::LeaseRevoke(LeaseRevokeRequest {
        lease_id: lease,
    })));
    assert!(store.kv.revision() >= pinned + 5);
    assert_eq!(store.page("", 10, 0).0, pairs(&[("k1", "a2"), ("k5", "e")]));
    // The later pages, at the first page's revision, show the state it showed.
    let (rest, revision, more) = store.page("k2", 2, pinned);
    assert_eq!(
        (rest, revision, more),
        (pairs(&[("k3", "c"), ("k4", "d")]), pinned, false)
    );
    let (all, _, _) = store.page("", 10, pinned);
    assert_eq!(
        all,
        pairs(&[("k1", "a"), ("k2", "b"), ("k3", "c"), ("k4", "d")])
    );
    // Every revision in between shows what it was.
    let (at_overwrite, _, _) = store.page("", 10, pinned + 1);
    assert_eq!(at_overwrite[0], ("k1".to_string(), "a2".to_string()));
    assert_eq!(at_overwrite.len(), 4);
}

#[test]
fn expiry_is_a_revision_of_its_own() {
    let mut store = Store::new();
    let written = store.put("k1", "v", Some(10), None);
    store.time = 5;
    store.apply(None);
    assert_eq!(store.kv.revision(), written, "nothing expired yet");
    store.time = 10;
    store.apply(None);
    assert_eq!(
        store.kv.revision(),
        written + 1,
        "the expiry is one revision"
    );
    assert_eq!(store.page("", 10, written).0, pairs(&[("k1", "v")]));
    assert!(store.page("", 10, 0).0.is_empty());
}

#[test]
fn a_revision_older_than_the_history_is_refused_with_its_bound() {
    let mut store = Store::new();
    store.put("k1", "v", None, None);
    store.put("k2", "v", None, None);
    // A replica built from a snapshot keeps no history from before it.
    let mut restored = Store::new();
    restored.kv = KvStore::from_snapshot(store.kv.to_snapshot());
    assert_eq!(restored.kv.history_first_revision(), 2);
    let read = ReadRequest::Scan(ScanRequest {
        prefix: b"k".to_vec(),
        revision: 1,
        ..Default::default()
    });
    match read.answer(&restored.kv) {
        Response::Error(error) => {
            assert_eq!(error.code, ErrorCode::Compacted as i32);
            assert!(
                error.message.contains("starts at revision 2"),
                "{}",
                error.message
            );
        }
        other => panic!("not refused: {other:?}"),
    }
    // The node that applied them can.
    assert_eq!(store.page("", 10, 1).0, pairs(&[("k1", "v")]));
}

#[test]
fn watch_events_name_each_change_with_its_kind_revision_and_previous_value() {
    use paxkv_proto::client::EventKind;
    let mut store = Store::new();
    let first = store.put("k1", "a", None, None);
    store.put("k1", "b", Some(10), None);
    store.delete("k1");
    store.put("k2", "c", Some(10), None);
    store.time = 10;
    store.apply(None);
    // What a change left comes from the next change of its key, or from the map after its
    // last one: both kinds, interleaved with another key.
    store.put("k3", "d", None, None);
    store.put("k4", "x", None, None);
    store.put("k3", "e", None, None);
    let events = store.kv.watch_events(first - 1).unwrap();
    let seen: Vec<(EventKind, u64, String, String, u64, Option<String>)> = events
        .iter()
        .map(|event| {
            let kv = event.kv.as_ref().unwrap();
            (
                event.kind(),
                event.revision,
                String::from_utf8(kv.key.clone()).unwrap(),
                String::from_utf8(kv.value.clone()).unwrap(),
                kv.mod_revision,
                event
                    .prev_kv
                    .as_ref()
                    .map(|previous| String::from_utf8(previous.value.clone()).unwrap()),
            )
        })
        .collect();
    let k = |key: &str| key.to_string();
    let (delete, put, expire) = (EventKind::Delete, EventKind::Put, EventKind::Expire);
    assert_eq!(
        seen,
        [
            (put, first, k("k1"), k("a"), first, None),
            (put, first + 1, k("k1"), k("b"), first + 1, Some(k("a"))),
            (delete, first + 2, k("k1"), k(""), first + 2, Some(k("b"))),
            (put, first + 3, k("k2"), k("c"), first + 3, None),
            (expire, first + 4, k("k2"), k(""), first + 4, Some(k("c"))),
            (put, first + 5, k("k3"), k("d"), first + 5, None),
            (put, first + 6, k("k4"), k("x"), first + 6, None),
            (put, first + 7, k("k3"), k("e"), first + 7, Some(k("d"))),
        ]
    );
    assert_eq!(
        store.kv.watch_events(first + 5).unwrap().len(),
        2,
        "a watch from the middle sees only what follows"
    );
    assert!(store
        .kv
        .watch_events(store.kv.revision())
        .unwrap()
        .is_empty());
    let restored = KvStore::from_snapshot(store.kv.to_snapshot());
    assert_eq!(restored.watch_events(first), Err(store.kv.revision()));
}

#[test]
fn a_prefix_delete_removes_every_key_under_it_at_one_revision() {
    use paxkv_proto::client::EventKind;
    let mut store = Store::new();
    store.put("k1", "a", None, None);
    store.put("k2", "b", Some(1000), None);
    store.put("x", "c", None, None);
    let before = store.kv.revision();
    let answer = store.apply(Some(Op::Delete(DeleteRequest {
        key: b"k".to_vec(),
        expected_revision: None,
        prefix: true,
        range_end: Vec::new(),
    })));
    match answer {
        Some(Response::Delete(delete)) => {
            assert_eq!(
                (delete.deleted, delete.deleted_count, delete.more),
                (true, 2, false)
            );
        }
        other => panic!("not a delete: {other:?}"),
    }
    assert_eq!(
        store.kv.revision(),
        before + 1,
        "one revision for the whole prefix"
    );
    assert!(store.page("", 10, 0).0.is_empty());
    assert!(store.kv.get(b"x").is_some());
    let events = store.kv.watch_events(before).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|event| event.kind() == EventKind::Delete && event.revision == before + 1));
    // Nothing under it: nothing changes, no revision.
    let again = store.apply(Some(Op::Delete(DeleteRequest {
        key: b"k".to_vec(),
        expected_revision: None,
        prefix: true,
        range_end: Vec::new(),
    })));
    assert!(matches!(again, Some(Response::Delete(delete)) if delete.deleted_count == 0));
    assert_eq!(store.kv.revision(), before + 1);
}
