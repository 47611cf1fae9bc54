//! The checks after the heal: every key read back (so a lost acknowledged write shows in the
//! history), every client served again, every replica converged, each within its bound.

use super::workload::{new_client, perform, planned_get, ClientState};
use super::*;

/// After the workload: one more process reads every key linearizably, so any acknowledged
/// write that the faults lost shows up in the history.
pub(super) async fn verify(process: u64, endpoints: &[String], shared: &Shared) {
    let client = new_client(endpoints);
    let mut state = ClientState::new(process);
    let resp_keys = match shared.options.resp_clients {
        0 => 0,
        _ => shared.options.shared_keys,
    };
    let keys = (0..shared.options.shared_keys)
        .map(|k| format!("k{k}"))
        .chain((1..=shared.options.clients).map(|p| format!("l{p}")))
        .chain((0..resp_keys).map(|k| format!("r{k}")));
    for key in keys {
        let planned = planned_get(&key, Consistency::Linearizable);
        for _ in 0..5 {
            if perform(&client, &mut state, &planned, shared).await {
                break;
            }
        }
    }
}

/// Waits until every replica that is a member (or joining) reports the same applied index and
/// state digest; a removed node is not asked.
pub(super) async fn convergence(shared: &Shared) -> Result<Duration, String> {
    let all: Vec<String> = (0..SLOTS).map(client_endpoint).collect();
    let client = new_client(&all);
    let healed_at = shared
        .healed_at
        .lock()
        .expect("not poisoned")
        .expect("convergence is checked after the heal");
    let quiet_at = Instant::now();
    let mut last = Vec::new();
    while healed_at.elapsed() < CONVERGE_BOUND {
        let mut states = Vec::new();
        let endpoints: Vec<String> = shared
            .active_slots()
            .into_iter()
            .map(client_endpoint)
            .collect();
        for endpoint in &endpoints {
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
    if last.is_empty() {
        return Err(format!(
            "the read-back of every key was not done within {} s of the heal (no leader \
             served it), so the replicas were never compared",
            CONVERGE_BOUND.as_secs()
        ));
    }
    Err(format!(
        "replicas did not converge within {} s of the heal; last (applied index, state hash) per node: {last:?}",
        CONVERGE_BOUND.as_secs()
    ))
}

/// A problem for every client that completed no operation within `SERVE_BOUND` of the heal,
/// and the time until the last one was served (None if one was not).
pub(super) fn service(shared: &Shared) -> (Vec<String>, Option<Duration>) {
    let served: BTreeMap<u64, Duration> = shared.served.lock().expect("not poisoned").clone();
    let clients = shared.options.clients;
    // A client pinned to a node refused for good (it started with nothing after the others
    // had gone on: see the server's `bootstrap`) has nowhere to be served.
    let stranded = |process: u64| {
        let index = (process as usize - 1) % shared.options.nodes as usize;
        shared.options.pinned_clients && shared.slot(index) == Slot::Removed
    };
    let problems = (1..=clients)
        .filter(|process| !served.contains_key(process) && !stranded(*process))
        .map(|process| {
            format!(
                "client {process} completed no operation within {} s of the heal",
                SERVE_BOUND.as_secs()
            )
        })
        .collect();
    let expected = (1..=clients).filter(|process| !stranded(*process)).count();
    let served_after = (served.len() >= expected)
        .then(|| served.values().max().copied())
        .flatten();
    (problems, served_after)
}
