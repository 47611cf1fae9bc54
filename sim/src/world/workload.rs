//! The clients: what each one asks (in the proportions the seed drew) and how its answers
//! become history lines.

use super::options::pick_weighted;
use super::*;

pub(super) fn new_client(endpoints: &[String]) -> Client {
    let mut config = ClientConfig::new(endpoints.to_vec());
    config.secret = Some(SECRET.to_vec());
    config.timeout = Duration::from_secs(3);
    Client::new(config).expect("a valid client configuration")
}

/// Separates a value's name from the padding that makes it large.
const VALUE_PADDING_MARK: u8 = b'#';

/// A kind of client operation; a seed weighs each (`SimOptions::operation_weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OperationKind {
    /// A put on a shared key, a quarter of them with a TTL.
    Put,
    LinearizableGet,
    StaleGet,
    /// A get that must see at least what its client saw (a session read).
    SessionGet,
    Delete,
    /// A put on the last revision the client saw of the key.
    CompareAndSet,
    Expire,
    Ttl,
    /// A get of another client's lease key.
    GetLeaseKey,
    /// On the client's own lease: grant, put with it, keep-alive, revoke, read its key.
    Lease,
    /// A read of a shared key as it was at a revision a little older than the newest its client
    /// saw (a scan page at a revision, rebuilt from a node's change history).
    GetAtRevision,
    /// A transaction on two shared keys: compares on what the client last saw of them (by
    /// revision or by value), puts and deletes if they hold (sometimes a put on the client's
    /// own lease key, with its lease, which may have ended), gets of both if not.
    Transaction,
}

impl OperationKind {
    pub const ALL: [OperationKind; 12] = [
        OperationKind::Put,
        OperationKind::LinearizableGet,
        OperationKind::StaleGet,
        OperationKind::SessionGet,
        OperationKind::Delete,
        OperationKind::CompareAndSet,
        OperationKind::Expire,
        OperationKind::Ttl,
        OperationKind::GetLeaseKey,
        OperationKind::Lease,
        OperationKind::GetAtRevision,
        OperationKind::Transaction,
    ];

    /// The kind's weight in a seed that asks it (out of 100 when a seed asks every kind).
    pub fn base_weight(self) -> u32 {
        match self {
            OperationKind::Put | OperationKind::LinearizableGet => 22,
            OperationKind::Lease => 17,
            OperationKind::CompareAndSet | OperationKind::Transaction => 10,
            OperationKind::StaleGet | OperationKind::SessionGet | OperationKind::GetAtRevision => 6,
            OperationKind::Delete => 5,
            OperationKind::Expire | OperationKind::Ttl | OperationKind::GetLeaseKey => 4,
        }
    }

    /// Every seed writes and reads linearizably: a history without them shows nothing.
    pub fn always(self) -> bool {
        matches!(self, OperationKind::Put | OperationKind::LinearizableGet)
    }

    pub fn name(self) -> &'static str {
        match self {
            OperationKind::Put => "put",
            OperationKind::LinearizableGet => "linearizable_get",
            OperationKind::StaleGet => "stale_get",
            OperationKind::SessionGet => "session_get",
            OperationKind::Delete => "delete",
            OperationKind::CompareAndSet => "cas",
            OperationKind::Expire => "expire",
            OperationKind::Ttl => "ttl",
            OperationKind::GetLeaseKey => "get_lease_key",
            OperationKind::Lease => "lease",
            OperationKind::GetAtRevision => "get_at_revision",
            OperationKind::Transaction => "txn",
        }
    }
}

/// What a client process remembers between operations.
pub(super) struct ClientState {
    pub(super) process: u64,
    counter: u64,
    lease: Option<u64>,
    /// Last revision seen per key, for compare-and-set.
    revisions: BTreeMap<String, u64>,
    /// Last value seen per key, whole (padding included), for compares by value.
    values: BTreeMap<String, Vec<u8>>,
}

impl ClientState {
    pub(super) fn new(process: u64) -> ClientState {
        ClientState {
            process,
            counter: 0,
            lease: None,
            revisions: BTreeMap::new(),
            values: BTreeMap::new(),
        }
    }
}

/// One operation: its request and the history fields of its invocation.
pub(super) struct Planned {
    pub(super) request: Request,
    pub(super) invoke: Value,
}

/// A get of `key`; a session read's minimum is filled in just before it is sent.
pub(super) fn planned_get(key: &str, consistency: Consistency) -> Planned {
    let name = match consistency {
        Consistency::Stale => "stale",
        Consistency::AtLeastRevision => "session",
        _ => "linearizable",
    };
    Planned {
        request: Request::Get(GetRequest {
            key: key.as_bytes().to_vec(),
            consistency: consistency as i32,
            min_revision: 0,
            min_applied_index: 0,
        }),
        invoke: json!({"f": "get", "key": key, "consistency": name}),
    }
}

/// The value of a new write: its name (`p<process>-<counter>`), and the bytes stored, the name
/// padded to a large size in a quarter of the seeds' puts that pad.
pub(super) fn new_value(state: &mut ClientState, options: &SimOptions) -> (String, Vec<u8>) {
    state.counter += 1;
    let value = format!("p{}-{}", state.process, state.counter);
    // Large values carry their name first; the history records only the name.
    let mut bytes = value.clone().into_bytes();
    let mut rng = thread_rng();
    if options.value_bytes_max > 0 && rng.gen_bool(0.25) {
        let padding = rng.gen_range(0..options.value_bytes_max - bytes.len() - 1);
        bytes.push(VALUE_PADDING_MARK);
        bytes.resize(bytes.len() + padding, b'.');
    }
    (value, bytes)
}

fn plan(state: &mut ClientState, options: &SimOptions) -> Planned {
    let (value, stored_value) = new_value(state, options);
    let mut rng = thread_rng();
    let shared_key = format!("k{}", rng.gen_range(0..options.shared_keys));
    let kind = pick_weighted(&options.operation_weights, &mut rng)
        .expect("every seed asks puts and linearizable gets");
    if state.process <= options.reader_clients {
        return planned_get(&shared_key, Consistency::Linearizable);
    }
    match kind {
        OperationKind::Put => {
            let ttl_ms = rng.gen_bool(0.25).then(|| rng.gen_range(300..3000u64));
            Planned {
                request: Request::Put(PutRequest {
                    key: shared_key.clone().into_bytes(),
                    value: stored_value,
                    ttl_ms,
                    ..Default::default()
                }),
                invoke: json!({"f": "put", "key": shared_key, "value": value, "ttl_ms": ttl_ms}),
            }
        }
        OperationKind::LinearizableGet => planned_get(&shared_key, Consistency::Linearizable),
        OperationKind::StaleGet => planned_get(&shared_key, Consistency::Stale),
        OperationKind::SessionGet => planned_get(&shared_key, Consistency::AtLeastRevision),
        OperationKind::Delete => Planned {
            request: Request::Delete(DeleteRequest {
                key: shared_key.clone().into_bytes(),
                expected_revision: None,
                prefix: false,
                range_end: Vec::new(),
            }),
            invoke: json!({"f": "delete", "key": shared_key}),
        },
        OperationKind::CompareAndSet => {
            let expected = state.revisions.get(&shared_key).copied().unwrap_or(0);
            Planned {
                request: Request::Put(PutRequest {
                    key: shared_key.clone().into_bytes(),
                    value: stored_value,
                    expected_revision: Some(expected),
                    ..Default::default()
                }),
                invoke: json!({"f": "cas", "key": shared_key, "value": value,
                               "expected_revision": expected}),
            }
        }
        OperationKind::Expire => {
            let ttl_ms = rng.gen_range(300..3000u64);
            Planned {
                request: Request::Expire(ExpireRequest {
                    key: shared_key.clone().into_bytes(),
                    ttl_ms,
                    condition: ExpireCondition::Always as i32,
                }),
                invoke: json!({"f": "expire", "key": shared_key, "ttl_ms": ttl_ms}),
            }
        }
        OperationKind::Ttl => Planned {
            request: Request::Ttl(TtlRequest {
                key: shared_key.clone().into_bytes(),
                consistency: Consistency::Linearizable as i32,
                min_revision: 0,
                min_applied_index: 0,
            }),
            invoke: json!({"f": "ttl", "key": shared_key}),
        },
        OperationKind::GetLeaseKey => {
            let other = format!("l{}", rng.gen_range(1..=options.clients));
            let consistency = if rng.gen_bool(0.5) {
                Consistency::Linearizable
            } else {
                Consistency::Stale
            };
            planned_get(&other, consistency)
        }
        OperationKind::Lease => plan_lease(state, value, stored_value),
        OperationKind::Transaction => plan_txn(state, options, &shared_key, (value, stored_value)),
        OperationKind::GetAtRevision => Planned {
            // The revision is chosen just before it is sent (`at_revision`).
            request: Request::Scan(ScanRequest {
                prefix: shared_key.clone().into_bytes(),
                limit: 1,
                consistency: Consistency::AtLeastRevision as i32,
                ..Default::default()
            }),
            invoke: json!({"f": "get", "key": shared_key, "consistency": "stale",
                           "at_revision": true}),
        },
    }
}

/// A transaction on `first` and another shared key (see `OperationKind::Transaction`).
fn plan_txn(
    state: &mut ClientState,
    options: &SimOptions,
    first: &str,
    first_value: (String, Vec<u8>),
) -> Planned {
    let mut rng = thread_rng();
    let second = loop {
        let key = format!("k{}", rng.gen_range(0..options.shared_keys));
        if key != first {
            break key;
        }
    };
    let mut compares = Vec::new();
    let mut compare_lines = Vec::new();
    for key in [first, second.as_str()] {
        // The first key is always compared; the second in half the transactions.
        if key != first && rng.gen_bool(0.5) {
            continue;
        }
        let equal = rng.gen_bool(0.9);
        let op = if equal {
            CompareOp::Equal
        } else {
            CompareOp::NotEqual
        };
        let symbol = if equal { "=" } else { "!=" };
        match state.values.get(key).filter(|_| rng.gen_bool(0.3)) {
            Some(bytes) => {
                let name = value_name(bytes);
                compares.push(Compare {
                    key: key.as_bytes().to_vec(),
                    target: CompareTarget::Value as i32,
                    op: op as i32,
                    value: bytes.clone(),
                    number: 0,
                });
                compare_lines.push(json!({"key": key, "target": "value", "op": symbol,
                                          "value": name}));
            }
            None => {
                let revision = state.revisions.get(key).copied().unwrap_or(0);
                compares.push(Compare {
                    key: key.as_bytes().to_vec(),
                    target: CompareTarget::ModRevision as i32,
                    op: op as i32,
                    number: revision,
                    ..Default::default()
                });
                compare_lines.push(json!({"key": key, "target": "mod_revision", "op": symbol,
                                          "revision": revision}));
            }
        }
    }
    let (value, stored_value) = first_value;
    let ttl_ms = rng.gen_bool(0.25).then(|| rng.gen_range(300..3000u64));
    let mut success = vec![TxnOp {
        op: Some(txn_op::Op::Put(PutRequest {
            key: first.as_bytes().to_vec(),
            value: stored_value,
            ttl_ms,
            ..Default::default()
        })),
    }];
    let mut success_lines = vec![json!({"f": "put", "key": first, "value": value,
                                        "ttl_ms": ttl_ms})];
    if rng.gen_bool(0.25) {
        success.push(TxnOp {
            op: Some(txn_op::Op::Delete(DeleteRequest {
                key: second.as_bytes().to_vec(),
                ..Default::default()
            })),
        });
        success_lines.push(json!({"f": "delete", "key": second}));
    } else {
        let (value, stored_value) = new_value(state, options);
        success.push(TxnOp {
            op: Some(txn_op::Op::Put(PutRequest {
                key: second.as_bytes().to_vec(),
                value: stored_value,
                ..Default::default()
            })),
        });
        success_lines.push(json!({"f": "put", "key": second, "value": value}));
    }
    // Last, so that a lease that ended would leave the writes above applied if the branch
    // were not checked whole first.
    if let Some(lease_id) = state.lease.filter(|_| rng.gen_bool(0.4)) {
        let own = format!("l{}", state.process);
        let (value, stored_value) = new_value(state, options);
        success.push(TxnOp {
            op: Some(txn_op::Op::Put(PutRequest {
                key: own.as_bytes().to_vec(),
                value: stored_value,
                lease_id: Some(lease_id),
                ..Default::default()
            })),
        });
        success_lines.push(json!({"f": "put", "key": own, "value": value,
                                  "lease_id": lease_id}));
    }
    let failure = [first, second.as_str()]
        .into_iter()
        .map(|key| TxnOp {
            op: Some(txn_op::Op::Get(GetRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        })
        .collect();
    let failure_lines = vec![
        json!({"f": "get", "key": first}),
        json!({"f": "get", "key": second}),
    ];
    Planned {
        request: Request::Txn(TxnRequest {
            compare: compares,
            success,
            failure,
        }),
        invoke: json!({"f": "txn", "compare": compare_lines, "success": success_lines,
                       "failure": failure_lines}),
    }
}

/// The name a stored value carries before its padding.
fn value_name(bytes: &[u8]) -> String {
    let name = bytes
        .split(|byte| *byte == VALUE_PADDING_MARK)
        .next()
        .unwrap_or_default();
    String::from_utf8_lossy(name).to_string()
}

/// A revision for a read at a revision: up to 30 before the newest this client saw.
pub(super) fn at_revision(newest_seen: u64) -> u64 {
    newest_seen
        .saturating_sub(thread_rng().gen_range(0..30))
        .max(1)
}

/// An operation on the client's own lease: a grant while it has none, else a put with it, a
/// keep-alive, a revoke or a read of its key.
fn plan_lease(state: &ClientState, value: String, stored_value: Vec<u8>) -> Planned {
    let own_lease_key = format!("l{}", state.process);
    let mut rng = thread_rng();
    let Some(lease_id) = state.lease else {
        let ttl_ms = rng.gen_range(500..2500u64);
        return Planned {
            request: Request::LeaseGrant(LeaseGrantRequest { ttl_ms }),
            invoke: json!({"f": "lease_grant", "key": own_lease_key, "ttl_ms": ttl_ms}),
        };
    };
    match rng.gen_range(0..10u32) {
        0..=3 => Planned {
            request: Request::Put(PutRequest {
                key: own_lease_key.clone().into_bytes(),
                value: stored_value,
                lease_id: Some(lease_id),
                ..Default::default()
            }),
            invoke: json!({"f": "put", "key": own_lease_key, "value": value,
                           "lease_id": lease_id}),
        },
        4..=6 => Planned {
            request: Request::LeaseKeepAlive(LeaseKeepAliveRequest { lease_id }),
            invoke: json!({"f": "lease_keepalive", "key": own_lease_key, "lease_id": lease_id}),
        },
        7 => Planned {
            request: Request::LeaseRevoke(LeaseRevokeRequest { lease_id }),
            invoke: json!({"f": "lease_revoke", "key": own_lease_key, "lease_id": lease_id}),
        },
        _ => planned_get(&own_lease_key, Consistency::Linearizable),
    }
}

/// The completion line of an operation, and what the client learns from it.
fn complete(
    state: &mut ClientState,
    planned: &Planned,
    result: Result<Response, ClientError>,
) -> Value {
    let f = planned.invoke["f"].as_str().unwrap_or_default().to_string();
    let key = planned.invoke["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let is_read = matches!(
        planned.request,
        Request::Get(_) | Request::Ttl(_) | Request::Scan(_)
    );
    let response = match result {
        Ok(response) => response,
        Err(ClientError::NotFound(message)) => {
            // A lease that is gone: keep-alive and revoke answer that it was not found (a
            // definite answer); a put with it was refused.
            state.lease = None;
            return match f.as_str() {
                "lease_keepalive" | "lease_revoke" => {
                    json!({"type": "ok", "f": f, "succeeded": false})
                }
                _ => json!({"type": "fail", "f": f, "error": message.message}),
            };
        }
        // Definite refusals: nothing was applied (a write the cluster may have applied fails
        // with Timeout or SessionExpired instead).
        Err(
            error @ (ClientError::InvalidArgument(_)
            | ClientError::Authentication(_)
            | ClientError::Unavailable(_)),
        ) => {
            return json!({"type": "fail", "f": f, "error": error.to_string()});
        }
        Err(error) if is_read => {
            return json!({"type": "fail", "f": f, "error": error.to_string()});
        }
        Err(error) => {
            if f == "lease_grant" {
                state.lease = None;
            }
            return json!({"type": "info", "f": f, "error": error.to_string()});
        }
    };
    let header = response.header().cloned().unwrap_or_default();
    let mut line = json!({"type": "ok", "f": f, "revision": header.revision,
                          "log_time_ms": header.log_time_ms});
    match response {
        Response::Put(put) => {
            line["succeeded"] = json!(put.succeeded);
            if put.succeeded {
                state.revisions.insert(key, header.revision);
            } else if let Some(previous) = put.previous {
                state.revisions.insert(key, previous.mod_revision);
            } else {
                state.revisions.insert(key, 0);
            }
        }
        Response::Get(get) => match get.kv {
            Some(kv) => {
                let name = kv
                    .value
                    .split(|byte| *byte == VALUE_PADDING_MARK)
                    .next()
                    .unwrap_or_default();
                line["value"] = json!(String::from_utf8_lossy(name));
                line["mod_revision"] = json!(kv.mod_revision);
                state.revisions.insert(key.clone(), kv.mod_revision);
                state.values.insert(key, kv.value);
            }
            None => {
                state.revisions.insert(key.clone(), 0);
                state.values.remove(&key);
            }
        },
        Response::Txn(txn) => {
            line["succeeded"] = json!(txn.succeeded);
            let branch = if txn.succeeded { "success" } else { "failure" };
            let steps = planned.invoke[branch]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut results = Vec::new();
            for (step, answer) in steps.iter().zip(txn.responses) {
                let key = step["key"].as_str().unwrap_or_default().to_string();
                results.push(match answer.op {
                    Some(txn_op_response::Op::Put(_)) => {
                        state.revisions.insert(key.clone(), header.revision);
                        state.values.remove(&key);
                        json!({})
                    }
                    Some(txn_op_response::Op::Delete(delete)) => {
                        state.revisions.insert(key.clone(), 0);
                        state.values.remove(&key);
                        json!({"succeeded": delete.deleted})
                    }
                    Some(txn_op_response::Op::Get(get)) => match get.kv {
                        Some(kv) => {
                            state.revisions.insert(key.clone(), kv.mod_revision);
                            let result = json!({"value": value_name(&kv.value),
                                                "mod_revision": kv.mod_revision});
                            state.values.insert(key, kv.value);
                            result
                        }
                        None => {
                            state.revisions.insert(key.clone(), 0);
                            state.values.remove(&key);
                            json!({})
                        }
                    },
                    None => json!({}),
                });
            }
            line["results"] = json!(results);
        }
        // A read at a revision: the page holds the key, or it did not exist then.
        Response::Scan(scan) => {
            if let Some(kv) = scan.kvs.into_iter().find(|kv| kv.key == key.as_bytes()) {
                let name = kv
                    .value
                    .split(|byte| *byte == VALUE_PADDING_MARK)
                    .next()
                    .unwrap_or_default();
                line["value"] = json!(String::from_utf8_lossy(name));
                line["mod_revision"] = json!(kv.mod_revision);
            }
        }
        Response::Delete(delete) => line["succeeded"] = json!(delete.deleted),
        Response::Expire(expire) => line["succeeded"] = json!(expire.applied),
        Response::Ttl(ttl) => {
            let name = match ttl.state() {
                TtlState::NoKey => "no_key",
                TtlState::NoTtl => "no_ttl",
                TtlState::Remaining => "remaining",
            };
            line["ttl_state"] = json!(name);
            line["remaining_ms"] = json!(ttl.remaining_ms);
        }
        Response::LeaseGrant(grant) => {
            state.lease = Some(grant.lease_id);
            line["lease_id"] = json!(grant.lease_id);
        }
        Response::LeaseKeepAlive(_) => line["succeeded"] = json!(true),
        Response::LeaseRevoke(_) => {
            state.lease = None;
            line["succeeded"] = json!(true);
        }
        other => {
            return json!({"type": "info", "f": f, "error": format!("unexpected answer {other:?}")})
        }
    }
    line
}

/// One client process: operations until the workload's end, and on until it is served after
/// the heal (or the bound for that passes).
pub(super) async fn client_loop(
    process: u64,
    endpoints: Vec<String>,
    initial_nodes: usize,
    shared: Arc<Shared>,
    workload_end: Duration,
) {
    let client = if shared.options.pinned_clients {
        let index = (process as usize - 1) % initial_nodes;
        new_client(&endpoints[index..=index])
    } else {
        new_client(&endpoints)
    };
    let mut state = ClientState::new(process);
    while !shared.done_working(process, workload_end) {
        let mut planned = plan(&mut state, &shared.options);
        if let Request::Get(get) = &mut planned.request {
            if get.consistency == Consistency::AtLeastRevision as i32 {
                get.min_revision = client.revision_seen();
                get.min_applied_index = client.applied_index_seen();
            }
        }
        if let Request::Scan(scan) = &mut planned.request {
            scan.revision = at_revision(client.revision_seen());
            scan.min_revision = scan.revision;
        }
        if perform(&client, &mut state, &planned, &shared).await {
            shared.note_completed(process);
        }
    }
}

impl Shared {
    /// Whether a client process stops: it works until the workload's end, and past it until
    /// it is served after the heal (or the bound for that passes).
    pub(super) fn done_working(&self, process: u64, workload_end: Duration) -> bool {
        let healed_at = *self.healed_at.lock().expect("not poisoned");
        let served = self
            .served
            .lock()
            .expect("not poisoned")
            .contains_key(&process);
        let past_end = self.start.elapsed() >= workload_end;
        let past_bound = healed_at.is_some_and(|at| at.elapsed() >= SERVE_BOUND);
        past_bound || (past_end && served)
    }

    /// An operation of `process` completed: after the heal, that process is served again.
    pub(super) fn note_completed(&self, process: u64) {
        if let Some(at) = *self.healed_at.lock().expect("not poisoned") {
            self.served
                .lock()
                .expect("not poisoned")
                .entry(process)
                .or_insert_with(|| at.elapsed());
        }
    }
}

/// Runs one operation and records its invocation and completion; true if it completed.
pub(super) async fn perform(
    client: &Client,
    state: &mut ClientState,
    planned: &Planned,
    shared: &Shared,
) -> bool {
    let mut invoke = planned.invoke.clone();
    invoke["process"] = json!(state.process);
    invoke["type"] = json!("invoke");
    shared.record(strip_nulls(invoke));
    let result = client.request(planned.request.clone()).await;
    let mut completion = complete(state, planned, result);
    let ok = completion["type"] == "ok";
    completion["process"] = json!(state.process);
    shared.record(completion);
    ok
}

fn strip_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, field| !field.is_null());
    }
    value
}

/// The watcher: one watch of every key, from a revision read just before it starts (or up to
/// 200 before it), followed
/// until the workload ends. The client moves it between nodes by itself; when it cannot go on
/// (its start left every node's history, no node answered in time) the segment ends and a new
/// one starts. Every segment is judged against the history (`checker::check_watches`).
pub(super) async fn watcher(endpoints: Vec<String>, shared: Arc<Shared>, workload_end: Duration) {
    let client = new_client(&endpoints);
    while shared.start.elapsed() < workload_end {
        let Ok(now) = client.get(b"k0", ReadConsistency::Linearizable).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Half the segments start from the past: a watch from an old revision replays the
        // node's history before it follows new changes.
        let back = if thread_rng().gen_bool(0.5) {
            thread_rng().gen_range(1..=200)
        } else {
            0
        };
        let start = (now.revision + 1).saturating_sub(back).max(1);
        let options = paxkv_client::WatchOptions::new()
            .prefix()
            .from_revision(start);
        let Ok(mut watch) = client.watch(b"", options).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut segment = WatchSegment {
            start,
            end: start - 1,
            events: Vec::new(),
        };
        loop {
            let left = workload_end.saturating_sub(shared.start.elapsed());
            match tokio::time::timeout(left, watch.next()).await {
                Ok(Ok(batch)) => {
                    for event in batch.events {
                        let put = event.kind() == paxkv_client::EventKind::Put;
                        let kv = event.kv.unwrap_or_default();
                        let value = put.then(|| {
                            let name = kv
                                .value
                                .split(|byte| *byte == VALUE_PADDING_MARK)
                                .next()
                                .unwrap_or_default();
                            String::from_utf8_lossy(name).to_string()
                        });
                        let key = String::from_utf8_lossy(&kv.key).to_string();
                        segment.events.push((event.revision, key, value));
                    }
                }
                Ok(Err(error)) => {
                    shared.trace("watch_ended", json!({"error": error.to_string()}));
                    break;
                }
                Err(_) => break,
            }
        }
        segment.end = watch
            .delivered()
            .unwrap_or(segment.end)
            .max(segment.start - 1);
        shared.trace(
            "watch_segment",
            json!({"start": segment.start, "end": segment.end, "events": segment.events.len()}),
        );
        shared.watched.lock().expect("not poisoned").push(segment);
    }
}
