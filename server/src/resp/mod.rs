//! The Redis protocol port (`--resp-addr`): any Redis client talks to any node. Commands on
//! data go through the router like the native port's requests (a follower passes writes and
//! linearizable reads to the leader), as `RedisRequest`s the state machine runs
//! (`paxkv_core::kv::redis`, the one table of commands). This module keeps what belongs to a
//! connection: the protocol version, authentication, MULTI's queue and WATCHed keys,
//! READONLY, subscriptions, and SCAN's cursors.
//!
//! Files: `connection` (reading, pipelining and answering in order), `server_commands` (HELLO,
//! CLIENT, COMMAND, INFO, CONFIG), `pubsub` (keyspace notifications from the watch feed, and
//! PUBLISH between this node's connections).

mod connection;
mod pubsub;
mod server_commands;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;

use crate::router::Router;
use crate::watch::Feed;

/// RESP connections at once at most; more are refused.
pub const RESP_CONNECTIONS_MAX: usize = 10_000;
/// SCAN cursors a node remembers at most, and the bytes of their keys at most (the oldest is
/// forgotten first: a client that resumes a forgotten one gets "invalid cursor").
pub const SCAN_CURSORS_MAX: usize = 100_000;
pub const SCAN_CURSOR_BYTES_MAX: usize = 16 * 1024 * 1024;

/// How the port is set up.
#[derive(Debug, Clone)]
pub struct RespConfig {
    /// The password AUTH must give; None lets every client in.
    pub password: Option<String>,
    /// FLUSHDB and FLUSHALL delete every key; off unless asked for.
    pub allow_flush: bool,
}

/// What every connection of the port shares.
pub(crate) struct Shared {
    config: RespConfig,
    router: Router,
    feed: Feed,
    node_id: u64,
    next_connection_id: AtomicU64,
    connections: AtomicU64,
    cursors: Mutex<Cursors>,
    channels: pubsub::Channels,
}

/// SCAN cursors: a number handed to the client for the key the next page starts at.
#[derive(Default)]
struct Cursors {
    next: u64,
    starts: BTreeMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
    /// Bytes of the keys kept.
    bytes: usize,
}

impl Cursors {
    fn remember(&mut self, start: Vec<u8>) -> u64 {
        // Cursors start high so that a client's own small numbers are never taken for one.
        self.next += 1;
        let cursor = (1 << 40) + self.next;
        self.bytes += start.len();
        self.starts.insert(cursor, start);
        self.order.push_back(cursor);
        while self.order.len() > SCAN_CURSORS_MAX || self.bytes > SCAN_CURSOR_BYTES_MAX {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(start) = self.starts.remove(&oldest) {
                self.bytes -= start.len();
            }
        }
        cursor
    }

    fn start_of(&self, cursor: u64) -> Option<Vec<u8>> {
        self.starts.get(&cursor).cloned()
    }
}

/// Serves the port until shutdown.
pub async fn serve(
    listener: TcpListener,
    config: RespConfig,
    router: Router,
    feed: Feed,
    node_id: u64,
    shutdown: crate::shutdown::Shutdown,
) {
    let shared = Arc::new(Shared {
        config,
        router,
        feed,
        node_id,
        next_connection_id: AtomicU64::new(1),
        connections: AtomicU64::new(0),
        cursors: Mutex::new(Cursors::default()),
        channels: pubsub::Channels::default(),
    });
    let serve = move |stream| {
        let shared = shared.clone();
        async move {
            shared.connections.fetch_add(1, Ordering::Relaxed);
            let result = connection::serve(stream, shared.clone()).await;
            shared.connections.fetch_sub(1, Ordering::Relaxed);
            result
        }
    };
    crate::net::accept_bounded(listener, RESP_CONNECTIONS_MAX, "RESP", shutdown, serve).await;
}
