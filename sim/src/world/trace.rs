//! What a run records: the event trace (JSON lines with simulated time), the clients' history,
//! and the status samples that show who leads.

use super::workload::new_client;
use super::*;

/// The digest of a trace (its lines, each ended by a newline): equal for equal traces, on any
/// machine.
pub fn trace_hash(lines: &[String]) -> u64 {
    paxkv_core::kv::fnv1a((lines.join("\n") + "\n").as_bytes())
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// One event of the trace.
    pub(super) fn trace(&self, event: &str, mut fields: Value) {
        fields["t_ms"] = json!(self.now_ms());
        fields["event"] = json!(event);
        self.trace
            .lock()
            .expect("not poisoned")
            .push(fields.to_string());
    }

    /// One history line, also traced.
    pub(super) fn record(&self, line: Value) {
        let text = line.to_string();
        self.history
            .lock()
            .expect("not poisoned")
            .push(text.clone());
        self.trace("client", line);
    }

    /// The trace and the history so far, leaving both empty.
    pub(super) fn take_records(&self) -> (Vec<String>, Vec<String>) {
        let trace = std::mem::take(&mut *self.trace.lock().expect("not poisoned"));
        let history = std::mem::take(&mut *self.history.lock().expect("not poisoned"));
        (trace, history)
    }
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
