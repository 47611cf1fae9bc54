//! paxkv-server: one node of a paxkv cluster — the node loop around a `paxkv_core::Replica`,
//! its durable storage, and the peer and client transports.

pub mod storage;
