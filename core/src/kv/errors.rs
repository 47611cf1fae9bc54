//! The error answers every command gives, and the checks shared by several commands (keys,
//! TTLs, lease ids): the same on every replica and before proposing, so a bad command never
//! enters the log.

use paxkv_proto::client::{client_response::Body as Response, Error as WireError, ErrorCode};
use paxkv_proto::KEY_BYTES_MAX;

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

pub(super) fn bad_request(message: impl Into<String>) -> Response {
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
pub(super) fn validate_ttl(ttl_ms: u64, what: &str) -> Result<(), Response> {
    if ttl_ms == 0 || ttl_ms > TTL_MS_MAX {
        return Err(bad_request(format!(
            "{what} of {ttl_ms} ms is out of range; use 1 to {TTL_MS_MAX} ms"
        )));
    }
    Ok(())
}

#[allow(clippy::result_large_err)]
pub(super) fn validate_lease_id(lease_id: u64) -> Result<(), Response> {
    if lease_id == 0 {
        return Err(bad_request("lease id 0 names no lease"));
    }
    Ok(())
}

/// The answer to a command naming a lease that is not live.
pub(super) fn lease_not_found(lease_id: u64) -> Response {
    error_response(
        ErrorCode::NotFound,
        format!("lease {lease_id} does not exist or has expired; grant a new one"),
    )
}
