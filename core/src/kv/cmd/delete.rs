//! `delete`: removes a key; optionally only if its revision is as expected.

use paxkv_proto::client::{client_response::Body as Response, DeleteRequest, DeleteResponse};

use crate::kv::errors::validate_key;
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(delete: &DeleteRequest) -> Result<(), Response> {
    validate_key(&delete.key)
}

impl KvStore {
    pub(super) fn delete(&mut self, delete: &DeleteRequest) -> Response {
        let current = self.map.get(delete.key.as_slice());
        let previous = current.map(|stored| Self::key_value(&delete.key, stored));
        if current.is_none() || !Self::revision_matches(current, delete.expected_revision) {
            return Response::Delete(DeleteResponse {
                header: self.header(),
                deleted: false,
                previous,
            });
        }
        self.revision += 1;
        let removed = self.remove_key(&delete.key);
        self.record(delete.key.as_slice().into(), removed, None);
        Response::Delete(DeleteResponse {
            header: self.header(),
            deleted: true,
            previous,
        })
    }
}
