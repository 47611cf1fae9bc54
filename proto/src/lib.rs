//! Wire types of paxkv (client API, replica messages, snapshots) and the length-delimited frame
//! codec that carries them.

#[cfg(feature = "auth")]
pub mod auth;
pub mod frame;
mod header;
#[cfg(feature = "io")]
pub mod io;
/// The Redis protocol (RESP2 and RESP3): commands in, replies out.
pub mod resp;

/// Client API: requests, answers, typed errors.
pub mod client {
    include!(concat!(env!("OUT_DIR"), "/paxkv.client.rs"));
}

/// Replica protocol: ballots, log entries, phase 1 / phase 2 messages, snapshots.
pub mod peer {
    include!(concat!(env!("OUT_DIR"), "/paxkv.peer.rs"));

    impl Ballot {
        /// The ballot below every real ballot; what a fresh acceptor has promised.
        pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

        pub fn new(round: u64, node: u64) -> Ballot {
            Ballot { round, node }
        }
    }
}

/// Largest key a client may write, in bytes.
pub const KEY_BYTES_MAX: usize = 4 * 1024;
/// Largest value a client may write, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Largest number of keys one scan page returns.
pub const SCAN_LIMIT_MAX: u32 = 1000;

/// Keys one prefix delete removes at most (at one revision); a client asks again for the rest.
pub const DELETE_PREFIX_KEYS_MAX: usize = 10_000;

/// Compares one transaction holds at most.
pub const TXN_COMPARES_MAX: usize = 128;
/// Operations one branch of a transaction holds at most.
pub const TXN_OPS_MAX: usize = 128;

/// Revisions of changes a node keeps at most, to show the keys as they were at a recent
/// revision (`ScanRequest.revision`). It also keeps at most `HISTORY_BYTES_MAX` bytes of them.
pub const HISTORY_REVISIONS_MAX: u64 = 100_000;

/// Bytes of recent changes a node keeps at most (16 MiB): each counts its key, the value it
/// replaced and 64 bytes. An overwrite of a 100-byte value counts 180, so this holds about
/// 93,000 of them.
pub const HISTORY_BYTES_MAX: usize = 16 << 20;
/// Scan page size when the request asks for 0.
pub const SCAN_LIMIT_DEFAULT: u32 = 100;
/// Largest frame a client may send or receive, in bytes (a maximal put plus headroom).
pub const CLIENT_FRAME_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Largest frame between replicas, in bytes (a batch of entries or a snapshot chunk).
pub const PEER_FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

pub use frame::{FrameCodec, FrameError};
