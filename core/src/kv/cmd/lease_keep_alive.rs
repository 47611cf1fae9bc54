//! `lease keep-alive`: restarts a live lease's time to live from now (log time).

use paxkv_proto::client::{
    client_response::Body as Response, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
};

use crate::kv::errors::{lease_not_found, validate_lease_id};
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(keep_alive: &LeaseKeepAliveRequest) -> Result<(), Response> {
    validate_lease_id(keep_alive.lease_id)
}

impl KvStore {
    pub(super) fn lease_keep_alive(&mut self, keep_alive: &LeaseKeepAliveRequest) -> Response {
        let Some(lease) = self.live_lease(keep_alive.lease_id) else {
            return lease_not_found(keep_alive.lease_id);
        };
        let (old_deadline, ttl_ms) = (lease.expires_at_ms, lease.granted_ttl_ms);
        let new_deadline = self.log_time_ms.saturating_add(ttl_ms);
        self.lease_deadlines
            .remove(&(old_deadline, keep_alive.lease_id));
        self.lease_deadlines
            .insert((new_deadline, keep_alive.lease_id));
        self.leases
            .get_mut(&keep_alive.lease_id)
            .expect("checked live above")
            .expires_at_ms = new_deadline;
        Response::LeaseKeepAlive(LeaseKeepAliveResponse {
            header: self.header(),
            ttl_ms,
        })
    }
}
