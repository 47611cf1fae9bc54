//! `persist`: removes a key's TTL, so it lives until deleted (or its lease ends).

use paxkv_proto::client::{client_response::Body as Response, PersistRequest, PersistResponse};

use crate::kv::errors::validate_key;
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(persist: &PersistRequest) -> Result<(), Response> {
    validate_key(&persist.key)
}

impl KvStore {
    pub(super) fn persist(&mut self, persist: &PersistRequest) -> Response {
        let removed = self
            .stored(persist.key.as_slice())
            .is_some_and(|stored| stored.expires_at_ms() != 0);
        if removed {
            self.revision += 1;
            self.set_key_deadline(&persist.key, 0);
        }
        Response::Persist(PersistResponse {
            header: self.header(),
            removed,
        })
    }
}
