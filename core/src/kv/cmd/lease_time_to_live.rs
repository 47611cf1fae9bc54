//! `lease time-to-live`: a live lease's remaining time, its granted time, and optionally its
//! keys.

use paxkv_proto::client::{
    client_response::Body as Response, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

use crate::kv::errors::lease_not_found;
use crate::kv::KvStore;

pub(super) fn answer(kv: &KvStore, lease: &LeaseTimeToLiveRequest) -> Response {
    kv.lease_time_to_live(lease.lease_id, lease.keys)
}

impl KvStore {
    /// The lease's remaining time to live at the current log time, and optionally its keys.
    pub fn lease_time_to_live(&self, lease_id: u64, with_keys: bool) -> Response {
        let Some(lease) = self.live_lease(lease_id) else {
            return lease_not_found(lease_id);
        };
        let keys = if with_keys {
            lease.keys.iter().cloned().collect()
        } else {
            Vec::new()
        };
        Response::LeaseTimeToLive(LeaseTimeToLiveResponse {
            header: self.header(),
            remaining_ms: lease.expires_at_ms - self.log_time_ms,
            granted_ttl_ms: lease.granted_ttl_ms,
            keys,
        })
    }
}
