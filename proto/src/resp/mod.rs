//! RESP, the Redis serialization protocol: what Redis clients send (commands: arrays of bulk
//! strings, or inline lines) and what they get back (replies, RESP2 or RESP3). No I/O here:
//! the parser takes bytes as they arrive and says how many more it needs; the encoder appends
//! a reply to a buffer.
//!
//! Bad input is bounded before it is buffered: a command announces its argument count and each
//! argument its length, and both are checked against the limits as soon as they are read, so a
//! client cannot make the server hold more than `COMMAND_BYTES_MAX` for one command. The error
//! strings are Redis's own ("Protocol error: invalid bulk length"), so clients that match on
//! them behave as they do against Redis.

mod parse;
mod reply;

pub use parse::{parse_command, Parsed, RespError};
pub use reply::{Protocol, Reply};

/// Arguments of one command at most (Redis: 1024 * 1024).
pub const ARGUMENTS_MAX: usize = 1024 * 1024;
/// Bytes of one argument at most: a value as large as paxkv stores, and a little room.
pub const ARGUMENT_BYTES_MAX: usize = crate::VALUE_BYTES_MAX + 64 * 1024;
/// Bytes of one command at most, arguments and framing together.
pub const COMMAND_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Bytes of one inline command line at most (Redis: 64 KiB).
pub const INLINE_BYTES_MAX: usize = 64 * 1024;
