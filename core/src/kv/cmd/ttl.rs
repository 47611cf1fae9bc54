//! `ttl`: a key's remaining time to live at the log time the read is served at.

use paxkv_proto::client::{client_response::Body as Response, TtlRequest, TtlResponse, TtlState};

use crate::kv::errors::validate_key;
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(ttl: &TtlRequest) -> Result<(), Response> {
    validate_key(&ttl.key)
}

pub(super) fn answer(kv: &KvStore, ttl: &TtlRequest) -> Response {
    match validate(ttl) {
        Err(error) => error,
        Ok(()) => kv.ttl(&ttl.key),
    }
}

impl KvStore {
    /// The key's remaining time to live at the current log time.
    pub fn ttl(&self, key: &[u8]) -> Response {
        let (state, remaining_ms) = match self.live(key) {
            None => (TtlState::NoKey, 0),
            Some(stored) if stored.expires_at_ms() == 0 => (TtlState::NoTtl, 0),
            Some(stored) => (
                TtlState::Remaining,
                stored.expires_at_ms() - self.log_time_ms,
            ),
        };
        Response::Ttl(TtlResponse {
            header: self.header(),
            state: state as i32,
            remaining_ms,
        })
    }
}
