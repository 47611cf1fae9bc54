//! The clients: what each one asks, how its answers become history lines, and the checks after
//! the heal (every key read back, every replica converged).

use super::*;

pub(super) fn new_client(endpoints: &[String]) -> Client {
    let mut config = ClientConfig::new(endpoints.to_vec());
    config.secret = Some(SECRET.to_vec());
    config.timeout = Duration::from_secs(3);
    Client::new(config).expect("a valid client configuration")
}

/// Samples one node's status every 250 ms for the trace (and the nemesis's idea of the leader).
pub(super) async fn sample_status(shared: Arc<Shared>, endpoints: Vec<String>, index: usize) {
    let client = new_client(&endpoints);
    loop {
        if let Ok(status) = client.status_of(&endpoints[index]).await {
            let ballot = (status.ballot_round, status.ballot_node);
            shared
                .applied
                .lock()
                .expect("not poisoned")
                .insert(index, status.applied_index);
            if status.role == Role::Leader as i32 {
                let mut leader = shared.leader.lock().expect("not poisoned");
                if leader.is_none_or(|(_, known)| ballot >= known) {
                    *leader = Some((index, ballot));
                }
            }
            shared.trace(
                "status",
                json!({"node": index + 1, "role": status.role().as_str_name(),
                       "ballot": [ballot.0, ballot.1], "leader": status.leader_id,
                       "commit_index": status.commit_index, "applied_index": status.applied_index,
                       "revision": status.revision, "keys": status.key_count,
                       "log_time_ms": status.log_time_ms}),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Separates a value's name from the padding that makes it large.
const VALUE_PADDING_MARK: u8 = b'#';

/// What a client process remembers between operations.
struct ClientState {
    process: u64,
    clients: u64,
    counter: u64,
    lease: Option<u64>,
    /// Last revision seen per key, for compare-and-set.
    revisions: BTreeMap<String, u64>,
    /// Put values are padded up to this size (0: not padded).
    value_bytes_max: usize,
}

/// One operation: its request and the history fields of its invocation.
struct Planned {
    request: Request,
    invoke: Value,
}

fn plan(state: &mut ClientState) -> Planned {
    state.counter += 1;
    let mut rng = thread_rng();
    let shared_key = format!("k{}", rng.gen_range(0..SHARED_KEYS));
    let value = format!("p{}-{}", state.process, state.counter);
    // Large values carry their name first; the history records only the name.
    let stored_value = {
        let mut bytes = value.clone().into_bytes();
        if state.value_bytes_max > 0 && rng.gen_bool(0.25) {
            let padding = rng.gen_range(0..state.value_bytes_max - bytes.len() - 1);
            bytes.push(VALUE_PADDING_MARK);
            bytes.resize(bytes.len() + padding, b'.');
        }
        bytes
    };
    let own_lease_key = format!("l{}", state.process);
    let get = |key: &str, consistency: Consistency, min_revision: u64| {
        let name = match consistency {
            Consistency::Stale => "stale",
            Consistency::AtLeastRevision => "session",
            _ => "linearizable",
        };
        Planned {
            request: Request::Get(GetRequest {
                key: key.as_bytes().to_vec(),
                consistency: consistency as i32,
                min_revision,
                min_applied_index: 0,
            }),
            invoke: json!({"f": "get", "key": key, "consistency": name}),
        }
    };
    match rng.gen_range(0..100u32) {
        0..=21 => {
            let ttl_ms = rng.gen_bool(0.25).then(|| rng.gen_range(300..3000u64));
            Planned {
                request: Request::Put(PutRequest {
                    key: shared_key.clone().into_bytes(),
                    value: stored_value.clone(),
                    ttl_ms,
                    ..Default::default()
                }),
                invoke: json!({"f": "put", "key": shared_key, "value": value, "ttl_ms": ttl_ms}),
            }
        }
        22..=43 => get(&shared_key, Consistency::Linearizable, 0),
        44..=49 => get(&shared_key, Consistency::Stale, 0),
        50..=55 => get(&shared_key, Consistency::AtLeastRevision, 0),
        56..=60 => Planned {
            request: Request::Delete(DeleteRequest {
                key: shared_key.clone().into_bytes(),
                expected_revision: None,
            }),
            invoke: json!({"f": "delete", "key": shared_key}),
        },
        61..=70 => {
            let expected = state.revisions.get(&shared_key).copied().unwrap_or(0);
            Planned {
                request: Request::Put(PutRequest {
                    key: shared_key.clone().into_bytes(),
                    value: stored_value.clone(),
                    expected_revision: Some(expected),
                    ..Default::default()
                }),
                invoke: json!({"f": "cas", "key": shared_key, "value": value,
                               "expected_revision": expected}),
            }
        }
        71..=74 => {
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
        75..=78 => Planned {
            request: Request::Ttl(TtlRequest {
                key: shared_key.clone().into_bytes(),
                consistency: Consistency::Linearizable as i32,
                min_revision: 0,
                min_applied_index: 0,
            }),
            invoke: json!({"f": "ttl", "key": shared_key}),
        },
        79..=82 => {
            let other = format!("l{}", rng.gen_range(1..=state.clients));
            let consistency = if rng.gen_bool(0.5) {
                Consistency::Linearizable
            } else {
                Consistency::Stale
            };
            get(&other, consistency, 0)
        }
        _ => match state.lease {
            None => {
                let ttl_ms = rng.gen_range(500..2500u64);
                Planned {
                    request: Request::LeaseGrant(LeaseGrantRequest { ttl_ms }),
                    invoke: json!({"f": "lease_grant", "key": own_lease_key, "ttl_ms": ttl_ms}),
                }
            }
            Some(lease_id) => match rng.gen_range(0..10u32) {
                0..=3 => Planned {
                    request: Request::Put(PutRequest {
                        key: own_lease_key.clone().into_bytes(),
                        value: stored_value.clone(),
                        lease_id: Some(lease_id),
                        ..Default::default()
                    }),
                    invoke: json!({"f": "put", "key": own_lease_key, "value": value,
                                   "lease_id": lease_id}),
                },
                4..=6 => Planned {
                    request: Request::LeaseKeepAlive(LeaseKeepAliveRequest { lease_id }),
                    invoke: json!({"f": "lease_keepalive", "key": own_lease_key,
                                   "lease_id": lease_id}),
                },
                7 => Planned {
                    request: Request::LeaseRevoke(LeaseRevokeRequest { lease_id }),
                    invoke: json!({"f": "lease_revoke", "key": own_lease_key,
                                   "lease_id": lease_id}),
                },
                _ => get(&own_lease_key, Consistency::Linearizable, 0),
            },
        },
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
    let is_read = matches!(planned.request, Request::Get(_) | Request::Ttl(_));
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
                _ => json!({"type": "fail", "f": f, "error": message}),
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
    let header = header_of(&response).cloned().unwrap_or_default();
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
                state.revisions.insert(key, kv.mod_revision);
            }
            None => {
                state.revisions.insert(key, 0);
            }
        },
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

pub(super) async fn client_loop(
    process: u64,
    clients: u64,
    endpoints: Vec<String>,
    shared: Arc<Shared>,
    workload_end: Duration,
) {
    let client = if shared.options.pinned_clients {
        let index = (process as usize - 1) % endpoints.len();
        new_client(&endpoints[index..=index])
    } else {
        new_client(&endpoints)
    };
    let mut state = ClientState {
        process,
        clients,
        counter: 0,
        lease: None,
        revisions: BTreeMap::new(),
        value_bytes_max: shared.options.value_bytes_max,
    };
    loop {
        let healed_at = *shared.healed_at.lock().expect("not poisoned");
        let served = shared
            .served
            .lock()
            .expect("not poisoned")
            .contains_key(&process);
        // Work until the end, and past it until served after the heal (within the bound).
        let past_end = shared.start.elapsed() >= workload_end;
        let past_bound = healed_at.is_some_and(|at| at.elapsed() >= SERVE_BOUND);
        if past_bound || (past_end && served) {
            break;
        }
        let mut planned = plan(&mut state);
        if let Request::Get(get) = &mut planned.request {
            if get.consistency == Consistency::AtLeastRevision as i32 {
                get.min_revision = client.revision_seen();
                get.min_applied_index = client.applied_index_seen();
            }
        }
        // Served again: an operation completed after the heal.
        if perform(&client, &mut state, &planned, &shared).await {
            if let Some(at) = *shared.healed_at.lock().expect("not poisoned") {
                shared
                    .served
                    .lock()
                    .expect("not poisoned")
                    .entry(process)
                    .or_insert_with(|| at.elapsed());
            }
        }
    }
}

/// Runs one operation and records its invocation and completion; true if it completed.
async fn perform(
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

/// After the workload: one more process reads every key linearizably, so any acknowledged
/// write that the faults lost shows up in the history.
pub(super) async fn verify(process: u64, clients: u64, endpoints: &[String], shared: &Shared) {
    let client = new_client(endpoints);
    let mut state = ClientState {
        process,
        clients,
        counter: 0,
        lease: None,
        revisions: BTreeMap::new(),
        value_bytes_max: shared.options.value_bytes_max,
    };
    let keys = (0..SHARED_KEYS)
        .map(|k| format!("k{k}"))
        .chain((1..=clients).map(|p| format!("l{p}")));
    for key in keys {
        let planned = Planned {
            request: Request::Get(GetRequest {
                key: key.clone().into_bytes(),
                consistency: Consistency::Linearizable as i32,
                min_revision: 0,
                min_applied_index: 0,
            }),
            invoke: json!({"f": "get", "key": key}),
        };
        for _ in 0..5 {
            if perform(&client, &mut state, &planned, shared).await {
                break;
            }
        }
    }
}

/// Waits until every replica reports the same applied index and state digest.
pub(super) async fn convergence(endpoints: &[String], shared: &Shared) -> Result<Duration, String> {
    let client = new_client(endpoints);
    let healed_at = shared
        .healed_at
        .lock()
        .expect("not poisoned")
        .expect("convergence is checked after the heal");
    let quiet_at = Instant::now();
    let mut last = Vec::new();
    while healed_at.elapsed() < CONVERGE_BOUND {
        let mut states = Vec::new();
        for endpoint in endpoints {
            let state = client
                .status_with(endpoint, true)
                .await
                .map(|status| (status.applied_index, status.state_hash));
            states.push(state.ok());
        }
        let first = states[0];
        if first.is_some() && states.iter().all(|state| *state == first) {
            let after = quiet_at.elapsed();
            shared.trace(
                "converged",
                json!({"applied_index": first.map(|s| s.0),
                       "after_heal_ms": healed_at.elapsed().as_millis() as u64,
                       "after_clients_stopped_ms": after.as_millis() as u64}),
            );
            return Ok(after);
        }
        last = states;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "replicas did not converge within {} s of the heal; last (applied index, state hash) per node: {last:?}",
        CONVERGE_BOUND.as_secs()
    ))
}
