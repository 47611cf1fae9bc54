//! A simulated node: the real paxkv server on its own address, with a clock drawn at every
//! start, stopping (as a real one exits) when its disk fails a sync.

use super::*;

pub(super) fn node_ip(index: usize) -> IpAddr {
    format!("fd00::{}", index + 1)
        .parse()
        .expect("a valid IPv6 address")
}

/// Creates node `index` (its first start and every restart run the same init).
pub(super) fn start_sim_node(
    handle: &Handle,
    index: usize,
    peers: &BTreeMap<NodeId, SocketAddr>,
    storage: &SimStorage,
    shared: &Arc<Shared>,
) -> NodeHandle {
    let (storage, peers, shared) = (storage.clone(), peers.clone(), shared.clone());
    let seed = thread_rng().gen::<u64>();
    // A start on an empty disk is a new machine as far as the node can tell, so it draws anew
    // (its incarnation above all: a wiped member must not come back with the one it had).
    let empty_disk_starts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    handle
        .create_node()
        .name(format!("node-{}", index + 1))
        .ip(node_ip(index))
        .init(move || {
            let (storage, peers, shared) = (storage.clone(), peers.clone(), shared.clone());
            let empty_disk_starts = empty_disk_starts.clone();
            async move {
                let disk_empty = storage
                    .disk
                    .lock()
                    .expect("not poisoned")
                    .synced
                    .hard_state
                    .incarnation
                    == 0;
                let seed = if disk_empty {
                    seed.wrapping_add(
                        empty_disk_starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    )
                } else {
                    seed
                };
                // Every start draws a new clock, within the ranges the seed drew (at most
                // minutes apart, drifting up to the bound the replicas assume).
                let (offset_ms, drift_ppm) = {
                    let options = &shared.options;
                    let drift_ppm_max = options.clock_drift_ppm_max;
                    let mut rng = thread_rng();
                    (
                        rng.gen_range(0..=options.clock_offset_ms_max),
                        rng.gen_range(-drift_ppm_max..=drift_ppm_max),
                    )
                };
                let slot = shared.slot(index);
                let join = match slot {
                    // No node on this address (yet, or any more).
                    Slot::Spare | Slot::Removed => return std::future::pending().await,
                    Slot::Initial | Slot::Retired => None,
                    Slot::Joining => Some(
                        shared
                            .active_slots()
                            .into_iter()
                            .filter(|other| *other != index)
                            .map(client_endpoint)
                            .collect(),
                    ),
                };
                shared.trace(
                    "node_start",
                    json!({"node": index + 1, "clock_offset_ms": offset_ms, "drift_ppm": drift_ppm,
                           "joining": join.is_some()}),
                );
                let config = NodeConfig {
                    id: NodeId(index as u64 + 1),
                    client_addr: SocketAddr::new(node_ip(index), CLIENT_PORT),
                    peer_addr: SocketAddr::new(node_ip(index), PEER_PORT),
                    peers: if join.is_some() {
                        BTreeMap::new()
                    } else {
                        peers
                    },
                    data_dir: format!("sim/node-{}", index + 1).into(),
                    secret: ClusterSecret::new(SECRET).expect("a long enough secret"),
                    allow_unauthenticated_clients: false,
                    election_timeout_ms: ELECTION_TIMEOUT_MS,
                    heartbeat_interval_ms: 50,
                    snapshot_entries_threshold: 200,
                    log_entries_kept: shared.options.log_entries_kept,
                    snapshot_chunk_bytes: shared.options.snapshot_chunk_bytes,
                    snapshot_step_bytes: shared.options.snapshot_step_bytes,
                    snapshot_write_backlog_max: shared.options.snapshot_write_backlog_max,
                    apply_entries_per_ready: shared.options.apply_entries_per_ready,
                    sessions_max: shared.options.sessions_max,
                    seed: Some(seed),
                    join,
                    // Served only in seeds with Redis-protocol clients, so that the others run
                    // exactly as they did before the port existed.
                    resp: (shared.options.resp_clients > 0).then(|| paxkv_server::RespPort {
                        address: super::resp_client::resp_endpoint(index),
                        config: paxkv_server::resp::RespConfig {
                            password: None,
                            allow_flush: false,
                        },
                    }),
                };
                let (stop, shutdown) = paxkv_server::shutdown::channel();
                let clock = NodeClock::skewed(offset_ms, drift_ppm);
                let running =
                    match start_node(config, Box::new(storage.clone()), clock, shutdown).await {
                        Ok(running) => running,
                        // A removed node (its own log says so) refuses to start, as a real one
                        // does; so does one that holds nothing under the id of a member while
                        // its peers hold data (wiped).
                        Err(error @ (ServerError::Removed(_) | ServerError::Refused(_))) => {
                            shared.trace(
                                "node_refused_to_start",
                                json!({"node": index + 1, "error": error.to_string()}),
                            );
                            shared
                                .must_be_refused
                                .lock()
                                .expect("not poisoned")
                                .remove(&index);
                            shared.set_slot(index, Slot::Removed);
                            return;
                        }
                        // The cluster did not answer the join in time: the address is free again.
                        Err(error @ ServerError::Join(_)) => {
                            shared.trace(
                                "join_failed",
                                json!({"node": index + 1, "error": error.to_string()}),
                            );
                            *storage.disk.lock().expect("not poisoned") = Default::default();
                            shared.set_slot(index, Slot::Spare);
                            return;
                        }
                        // Its first sync failed (a fresh node writes its incarnation before it
                        // talks to anyone): a real one exits; the nemesis restarts it.
                        Err(error @ ServerError::Storage(_)) => {
                            shared.trace(
                                "node_stopped",
                                json!({"node": index + 1, "error": error.to_string()}),
                            );
                            stop.stop();
                            shared.stopped.lock().expect("not poisoned").insert(index);
                            return;
                        }
                        Err(error) => panic!("a simulated node did not start: {error}"),
                    };
                shared.trace(
                    "node_serving",
                    json!({"node": index + 1, "id": running.id.0}),
                );
                if shared
                    .must_be_refused
                    .lock()
                    .expect("not poisoned")
                    .contains(&index)
                {
                    shared.problems.lock().expect("not poisoned").push(format!(
                        "node {}, restarted with an empty data directory under an id the \
                         cluster knows ({}), was let start (it must be refused)",
                        index + 1,
                        if slot == Slot::Retired {
                            "removed"
                        } else {
                            "a member"
                        }
                    ));
                }
                match running.node.await {
                    Ok(Ok(Stopped::Removed {
                        configuration_index,
                    })) => {
                        shared.trace(
                            "node_removed",
                            json!({"node": index + 1, "id": running.id.0,
                                   "configuration_index": configuration_index}),
                        );
                        stop.stop();
                        shared.set_slot(index, Slot::Removed);
                    }
                    Ok(Ok(Stopped::Refused { reason })) => {
                        shared.trace(
                            "node_refused",
                            json!({"node": index + 1, "id": running.id.0, "reason": reason}),
                        );
                        stop.stop();
                        shared.set_slot(index, Slot::Removed);
                    }
                    Ok(Err(error)) => {
                        // A real node exits here; the nemesis restarts it like a crashed one.
                        shared.trace(
                            "node_stopped",
                            json!({"node": index + 1, "error": error.to_string()}),
                        );
                        stop.stop();
                        shared.stopped.lock().expect("not poisoned").insert(index);
                    }
                    _ => {}
                }
            }
        })
        .build()
}
