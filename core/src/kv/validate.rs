//! Checks on client commands, the same on every replica and before proposing, so a bad one
//! never enters the log; and the error answers they produce.

use paxkv_proto::client::{client_response::Body as Response, Error as WireError, ErrorCode};
use paxkv_proto::peer::{command::Op, Command};
use paxkv_proto::{KEY_BYTES_MAX, VALUE_BYTES_MAX};

/// Longest TTL or lease time to live: about 100 years of log time.
pub const TTL_MS_MAX: u64 = 100 * 365 * 24 * 3600 * 1000;

/// An error answer with a message that says what to do.
pub fn error_response(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error(WireError {
        code: code as i32,
        message: message.into(),
        leader_id: 0,
        leader_address: String::new(),
    })
}

fn bad_request(message: impl Into<String>) -> Response {
    error_response(ErrorCode::BadRequest, message)
}

// The error is the client answer itself; these run once per request, so its size is moot.
#[allow(clippy::result_large_err)]
/// Checks a key against the limits.
pub fn validate_key(key: &[u8]) -> Result<(), Response> {
    if key.is_empty() {
        return Err(bad_request("the key is empty; keys need at least one byte"));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(error_response(
            ErrorCode::KeyTooLarge,
            format!(
                "the key has {} bytes; the limit is {KEY_BYTES_MAX}",
                key.len()
            ),
        ));
    }
    Ok(())
}

#[allow(clippy::result_large_err)]
fn validate_ttl(ttl_ms: u64, what: &str) -> Result<(), Response> {
    if ttl_ms == 0 || ttl_ms > TTL_MS_MAX {
        return Err(bad_request(format!(
            "{what} of {ttl_ms} ms is out of range; use 1 to {TTL_MS_MAX} ms"
        )));
    }
    Ok(())
}

#[allow(clippy::result_large_err)]
fn validate_lease_id(lease_id: u64) -> Result<(), Response> {
    if lease_id == 0 {
        return Err(bad_request("lease id 0 names no lease"));
    }
    Ok(())
}

#[allow(clippy::result_large_err)]
/// Checks a command before it is proposed and again when it is applied.
pub fn validate_command(command: &Command) -> Result<(), Response> {
    match &command.op {
        Some(Op::Put(put)) => {
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
        Some(Op::Delete(delete)) => validate_key(&delete.key),
        Some(Op::Expire(expire)) => {
            validate_key(&expire.key)?;
            validate_ttl(expire.ttl_ms, "a TTL")
        }
        Some(Op::Persist(persist)) => validate_key(&persist.key),
        Some(Op::LeaseGrant(grant)) => validate_ttl(grant.ttl_ms, "a lease time to live"),
        Some(Op::LeaseKeepAlive(keep_alive)) => validate_lease_id(keep_alive.lease_id),
        Some(Op::LeaseRevoke(revoke)) => validate_lease_id(revoke.lease_id),
        Some(Op::RegisterSession(_)) if command.client_id != 0 => Err(bad_request(
            "a session is registered with client id 0 (it has none yet)",
        )),
        Some(Op::RegisterSession(_)) => Ok(()),
        None => Err(bad_request("the command has no operation")),
    }
}
