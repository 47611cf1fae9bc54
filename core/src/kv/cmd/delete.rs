//! `delete`: removes a key; optionally only if its revision is as expected.

use paxkv_proto::client::{client_response::Body as Response, DeleteRequest, DeleteResponse};

use paxkv_proto::DELETE_PREFIX_KEYS_MAX;

use crate::kv::errors::{bad_request, validate_key};
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(delete: &DeleteRequest) -> Result<(), Response> {
    if delete.prefix && delete.expected_revision.is_some() {
        return Err(bad_request(
            "a prefix delete takes no expected revision (compare one key at a time)",
        ));
    }
    validate_key(&delete.key)
}

impl KvStore {
    pub(super) fn delete(&mut self, delete: &DeleteRequest) -> Response {
        if delete.prefix {
            return self.delete_prefix(&delete.key);
        }
        let current = self.map.get(delete.key.as_slice());
        let previous = current.map(|stored| Self::key_value(&delete.key, stored));
        if current.is_none() || !Self::revision_matches(current, delete.expected_revision) {
            return Response::Delete(DeleteResponse {
                header: self.header(),
                deleted: false,
                previous,
                deleted_count: 0,
                more: false,
            });
        }
        self.revision += 1;
        let removed = self.remove_key(&delete.key);
        self.record(delete.key.as_slice().into(), removed, None);
        Response::Delete(DeleteResponse {
            header: self.header(),
            deleted: true,
            previous,
            deleted_count: 1,
            more: false,
        })
    }

    /// Deletes the keys under `prefix` (at most `DELETE_PREFIX_KEYS_MAX`) at one revision.
    fn delete_prefix(&mut self, prefix: &[u8]) -> Response {
        let mut under = self
            .map
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.to_vec());
        let keys: Vec<Vec<u8>> = under.by_ref().take(DELETE_PREFIX_KEYS_MAX).collect();
        let more = under.next().is_some();
        if !keys.is_empty() {
            self.revision += 1;
        }
        for key in &keys {
            let removed = self.remove_key(key);
            self.record(key.as_slice().into(), removed, None);
        }
        Response::Delete(DeleteResponse {
            header: self.header(),
            deleted: !keys.is_empty(),
            previous: None,
            deleted_count: keys.len() as u64,
            more,
        })
    }
}
