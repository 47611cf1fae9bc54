//! `put`: stores a value under a key; optionally only if the key's revision is as expected
//! (compare-and-set), with a TTL, keeping the key's TTL, or attached to a lease.

use paxkv_proto::client::{
    client_response::Body as Response, ErrorCode, PutRequest, PutResponse, ValueType,
};
use paxkv_proto::VALUE_BYTES_MAX;

use crate::kv::errors::{
    error_response, lease_not_found, validate_key, validate_lease_id, validate_ttl,
};
use crate::kv::{KeyLease, KvStore, Ttl};

#[allow(clippy::result_large_err)]
pub(super) fn validate(put: &PutRequest) -> Result<(), Response> {
    validate_key(&put.key)?;
    if put.value.len() > VALUE_BYTES_MAX {
        return Err(error_response(
            ErrorCode::ValueTooLarge,
            format!(
                "the value has {} bytes; the limit is {VALUE_BYTES_MAX}",
                put.value.len()
            ),
        ));
    }
    if let Some(ttl_ms) = put.ttl_ms {
        validate_ttl(ttl_ms, "a TTL")?;
    }
    if let Some(lease_id) = put.lease_id {
        validate_lease_id(lease_id)?;
    }
    Ok(())
}

impl KvStore {
    pub(super) fn put(&mut self, put: &PutRequest) -> Response {
        if let Some(lease_id) = put.lease_id {
            if self.live_lease(lease_id).is_none() {
                return lease_not_found(lease_id);
            }
        }
        let current = self.stored(put.key.as_slice());
        let existing = current.map(|stored| stored.meta());
        if !Self::revision_matches(current, put.expected_revision) {
            // A failed compare-and-set shows the key as it is, asked for or not.
            return Response::Put(PutResponse {
                header: self.header(),
                succeeded: false,
                previous: current.map(|stored| Self::key_value(&put.key, stored)),
            });
        }
        // (Copied before the write replaces it, and only if the answer carries it.)
        let previous = current
            .filter(|_| !put.skip_previous)
            .map(|stored| Self::key_value(&put.key, stored));
        let ttl = match (put.ttl_ms, put.keep_ttl) {
            (Some(ttl_ms), _) => Ttl::At(self.log_time_ms.saturating_add(ttl_ms)),
            (None, true) => Ttl::Keep,
            (None, false) => Ttl::Clear,
        };
        let lease = put.lease_id.map_or(KeyLease::Detach, KeyLease::Attach);
        self.store_value_over(
            &put.key,
            existing,
            &put.value,
            ValueType::String,
            ttl,
            lease,
        );
        Response::Put(PutResponse {
            header: self.header(),
            succeeded: true,
            previous,
        })
    }
}
