//! `expire`: gives an existing key a TTL from now (log time), under a condition on the TTL it
//! has (always, only without one, only with one, only if longer, only if shorter).

use paxkv_proto::client::{
    client_response::Body as Response, ExpireCondition, ExpireRequest, ExpireResponse,
};

use crate::kv::errors::{validate_key, validate_ttl};
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(expire: &ExpireRequest) -> Result<(), Response> {
    validate_key(&expire.key)?;
    validate_ttl(expire.ttl_ms, "a TTL")
}

impl KvStore {
    pub(super) fn expire(&mut self, expire: &ExpireRequest) -> Response {
        let deadline = self.log_time_ms.saturating_add(expire.ttl_ms);
        let applied = match self.stored(expire.key.as_slice()) {
            None => false,
            Some(stored) => {
                let current = stored.expires_at_ms();
                match expire.condition() {
                    ExpireCondition::Always => true,
                    ExpireCondition::Nx => current == 0,
                    ExpireCondition::Xx => current != 0,
                    ExpireCondition::Gt => current != 0 && deadline > current,
                    ExpireCondition::Lt => current == 0 || deadline < current,
                }
            }
        };
        if applied {
            self.revision += 1;
            self.set_key_deadline(&expire.key, deadline);
        }
        Response::Expire(ExpireResponse {
            header: self.header(),
            applied,
        })
    }
}
