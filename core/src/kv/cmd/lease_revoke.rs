//! `lease revoke`: ends a live lease now, deleting every key attached to it.

use paxkv_proto::client::{
    client_response::Body as Response, LeaseRevokeRequest, LeaseRevokeResponse,
};

use crate::kv::errors::{lease_not_found, validate_lease_id};
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(revoke: &LeaseRevokeRequest) -> Result<(), Response> {
    validate_lease_id(revoke.lease_id)
}

impl KvStore {
    pub(super) fn lease_revoke(&mut self, revoke: &LeaseRevokeRequest) -> Response {
        if self.live_lease(revoke.lease_id).is_none() {
            return lease_not_found(revoke.lease_id);
        }
        let has_keys = !self.leases[&revoke.lease_id].keys.is_empty();
        if has_keys {
            self.revision += 1;
        }
        let deleted_keys = self.end_lease(revoke.lease_id) as u64;
        Response::LeaseRevoke(LeaseRevokeResponse {
            header: self.header(),
            deleted_keys,
        })
    }
}
