//! `get`: a key's value and revisions as of the state the read is served at.

use paxkv_proto::client::{client_response::Body as Response, GetRequest, GetResponse, KeyValue};

use crate::kv::errors::validate_key;
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(get: &GetRequest) -> Result<(), Response> {
    validate_key(&get.key)
}

pub(super) fn answer(kv: &KvStore, get: &GetRequest) -> Response {
    Response::Get(GetResponse {
        header: kv.header(),
        kv: kv.get(&get.key),
    })
}

impl KvStore {
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.live(key).map(|stored| Self::key_value(key, stored))
    }
}
