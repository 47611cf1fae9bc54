//! `register session`: opens a client session, whose id is the log index of its registration
//! (unique, never 0). Writes naming a session apply at most once per sequence number.

use paxkv_proto::client::{client_response::Body as Response, RegisterSessionResponse};
use paxkv_proto::peer::Command;

use crate::kv::errors::bad_request;
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(command: &Command) -> Result<(), Response> {
    if command.client_id != 0 {
        return Err(bad_request(
            "a session is registered with client id 0 (it has none yet)",
        ));
    }
    Ok(())
}

impl KvStore {
    pub(in crate::kv) fn register_session(&mut self, index: u64, command: &Command) -> Response {
        let response = Response::RegisterSession(RegisterSessionResponse {
            header: self.header(),
            client_id: index,
        });
        let record = Command {
            client_id: index,
            sequence: 0,
            op: command.op.clone(),
        };
        self.remember_session(index, &record, &response);
        response
    }
}
