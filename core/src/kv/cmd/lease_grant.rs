//! `lease grant`: a lease with a time to live, which keys can be attached to; they all go
//! when it ends.

use paxkv_proto::client::{
    client_response::Body as Response, LeaseGrantRequest, LeaseGrantResponse,
};

use crate::kv::errors::validate_ttl;
use crate::kv::leases::Lease;
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(grant: &LeaseGrantRequest) -> Result<(), Response> {
    validate_ttl(grant.ttl_ms, "a lease time to live")
}

impl KvStore {
    /// A lease's id is the log index of its grant: unique, and the same on every replica.
    pub(super) fn lease_grant(&mut self, index: u64, grant: &LeaseGrantRequest) -> Response {
        assert!(
            !self.leases.contains_key(&index),
            "lease ids are log indexes, used once"
        );
        let expires_at_ms = self.log_time_ms.saturating_add(grant.ttl_ms);
        self.lease_deadlines.insert((expires_at_ms, index));
        self.leases.insert(
            index,
            Lease {
                granted_ttl_ms: grant.ttl_ms,
                expires_at_ms,
                keys: Default::default(),
            },
        );
        Response::LeaseGrant(LeaseGrantResponse {
            header: self.header(),
            lease_id: index,
            ttl_ms: grant.ttl_ms,
        })
    }
}
