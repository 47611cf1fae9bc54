//! The commands, one file each (as `put.rs`): how a request is checked, and what it does to the
//! state (writes, applied from the log on every replica) or how it is answered (reads, served
//! from the local state). Adding an operation is a new file here, one arm in each `match` below,
//! and its messages in `proto`; nothing else in the server or the replica changes.

mod delete;
mod expire;
mod get;
mod lease_grant;
mod lease_keep_alive;
mod lease_list;
mod lease_revoke;
mod lease_time_to_live;
mod persist;
mod put;
mod register_session;
mod scan;
mod ttl;
mod txn;

pub use txn::TXN_READ_BYTES_MAX;

use paxkv_proto::client::{
    client_request::Body as Request, client_response::Body as Response, Consistency, ErrorCode,
    GetRequest, LeaseListRequest, LeaseTimeToLiveRequest, RedisRequest, ScanRequest, StatusRequest,
    TtlRequest,
};
use paxkv_proto::peer::{command::Op, Command};

use super::errors::{bad_request, error_response};
use super::KvStore;
use crate::membership::MemberRequest;
use crate::types::NodeId;

/// A read request as the client sent it (the consistency level is inside).
#[derive(Debug, Clone, PartialEq)]
pub enum ReadRequest {
    Get(GetRequest),
    Scan(ScanRequest),
    Ttl(TtlRequest),
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    LeaseList(LeaseListRequest),
    Redis(RedisRequest),
}

/// What a read asks of the state it is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPoint {
    pub consistency: Consistency,
    /// The newest revision the client's session has seen.
    pub min_revision: u64,
    /// The newest log position the client's session has seen.
    pub min_applied_index: u64,
}

impl ReadRequest {
    pub fn point(&self) -> ReadPoint {
        let (consistency, min_revision, min_applied_index) = match self {
            ReadRequest::Get(get) => (get.consistency(), get.min_revision, get.min_applied_index),
            ReadRequest::Scan(scan) => (
                scan.consistency(),
                scan.min_revision,
                scan.min_applied_index,
            ),
            ReadRequest::Ttl(ttl) => (ttl.consistency(), ttl.min_revision, ttl.min_applied_index),
            ReadRequest::LeaseTimeToLive(lease) => (
                lease.consistency(),
                lease.min_revision,
                lease.min_applied_index,
            ),
            ReadRequest::LeaseList(list) => (
                list.consistency(),
                list.min_revision,
                list.min_applied_index,
            ),
            ReadRequest::Redis(redis) => (
                redis.consistency(),
                redis.min_revision,
                redis.min_applied_index,
            ),
        };
        ReadPoint {
            consistency,
            min_revision,
            min_applied_index,
        }
    }

    /// The answer from `kv` as it stands.
    pub fn answer(&self, kv: &KvStore) -> Response {
        match self {
            ReadRequest::Get(request) => get::answer(kv, request),
            ReadRequest::Scan(request) => scan::answer(kv, request),
            ReadRequest::Ttl(request) => ttl::answer(kv, request),
            ReadRequest::LeaseTimeToLive(request) => lease_time_to_live::answer(kv, request),
            ReadRequest::LeaseList(request) => lease_list::answer(kv, request),
            ReadRequest::Redis(request) => super::redis::answer(kv, request),
        }
    }
}

/// Where a client request goes: into the log, to a read, to the node's status, or to the
/// membership (a list is answered by the node, a change proposed by the leader).
#[derive(Debug)]
pub enum Routed {
    Write(Op),
    Read(ReadRequest),
    Status(StatusRequest),
    MemberList,
    MemberChange(crate::membership::MemberRequest),
}

/// Sorts a client request, refusing at once what no replica would accept. (Authentication
/// requests belong to the connection and are refused here.)
#[allow(clippy::result_large_err)] // the error is the answer itself
pub fn route(request: Option<Request>) -> Result<Routed, Response> {
    let routed = match request {
        None => return Err(bad_request("the request has no body")),
        Some(Request::Status(status)) => Routed::Status(status),
        Some(Request::Put(put)) => Routed::Write(Op::Put(put)),
        Some(Request::Delete(delete)) => Routed::Write(Op::Delete(delete)),
        Some(Request::Expire(expire)) => Routed::Write(Op::Expire(expire)),
        Some(Request::Persist(persist)) => Routed::Write(Op::Persist(persist)),
        Some(Request::LeaseGrant(grant)) => Routed::Write(Op::LeaseGrant(grant)),
        Some(Request::LeaseKeepAlive(keep_alive)) => Routed::Write(Op::LeaseKeepAlive(keep_alive)),
        Some(Request::LeaseRevoke(revoke)) => Routed::Write(Op::LeaseRevoke(revoke)),
        Some(Request::RegisterSession(register)) => Routed::Write(Op::RegisterSession(register)),
        Some(Request::Txn(txn)) => Routed::Write(Op::Txn(txn)),
        Some(Request::Redis(redis)) => {
            super::redis::validate(&redis)?;
            if super::redis::is_read_only(&redis) {
                Routed::Read(ReadRequest::Redis(redis))
            } else {
                Routed::Write(Op::Redis(redis))
            }
        }
        Some(Request::Get(request)) => {
            get::validate(&request)?;
            Routed::Read(ReadRequest::Get(request))
        }
        Some(Request::Scan(request)) => {
            scan::validate(&request)?;
            Routed::Read(ReadRequest::Scan(request))
        }
        Some(Request::Ttl(request)) => {
            ttl::validate(&request)?;
            Routed::Read(ReadRequest::Ttl(request))
        }
        Some(Request::LeaseTimeToLive(request)) => {
            Routed::Read(ReadRequest::LeaseTimeToLive(request))
        }
        Some(Request::LeaseList(request)) => Routed::Read(ReadRequest::LeaseList(request)),
        Some(Request::Watch(_)) | Some(Request::WatchCancel(_)) => {
            return Err(bad_request(
                "a watch is a stream of answers: the client port serves it, not the node loop",
            ))
        }
        Some(Request::MemberList(_)) => Routed::MemberList,
        Some(Request::MemberAdd(add)) => Routed::MemberChange(MemberRequest::Add {
            peer_address: add.peer_address,
            client_address: add.client_address,
            known: Vec::new(),
        }),
        Some(Request::MemberPromote(promote)) => {
            Routed::MemberChange(MemberRequest::Promote(NodeId(promote.node_id)))
        }
        Some(Request::MemberRemove(remove)) => {
            Routed::MemberChange(MemberRequest::Remove(NodeId(remove.node_id)))
        }
        Some(Request::AuthHello(_)) | Some(Request::AuthProof(_)) => {
            return Err(error_response(
                ErrorCode::BadRequest,
                "authentication happens once, when the connection opens",
            ));
        }
    };
    Ok(routed)
}

#[allow(clippy::result_large_err)]
/// Checks a command before it is proposed and again when it is applied.
pub fn validate_command(command: &Command) -> Result<(), Response> {
    match &command.op {
        Some(Op::Put(put)) => put::validate(put),
        Some(Op::Delete(delete)) => delete::validate(delete),
        Some(Op::Expire(expire)) => expire::validate(expire),
        Some(Op::Persist(persist)) => persist::validate(persist),
        Some(Op::LeaseGrant(grant)) => lease_grant::validate(grant),
        Some(Op::LeaseKeepAlive(keep_alive)) => lease_keep_alive::validate(keep_alive),
        Some(Op::LeaseRevoke(revoke)) => lease_revoke::validate(revoke),
        Some(Op::RegisterSession(_)) => register_session::validate(command),
        Some(Op::Txn(txn)) => txn::validate(txn),
        Some(Op::Redis(redis)) => super::redis::validate(redis),
        None => Err(bad_request("the command has no operation")),
    }
}

impl KvStore {
    /// Applies a validated command's operation at log position `index`.
    pub(super) fn apply_op(&mut self, index: u64, command: &Command) -> Response {
        match command.op.as_ref().expect("validated commands have an op") {
            Op::Put(put) => self.put(put),
            Op::Delete(delete) => self.delete(delete),
            Op::Expire(expire) => self.expire(expire),
            Op::Persist(persist) => self.persist(persist),
            Op::LeaseGrant(grant) => self.lease_grant(index, grant),
            Op::LeaseKeepAlive(keep_alive) => self.lease_keep_alive(keep_alive),
            Op::LeaseRevoke(revoke) => self.lease_revoke(revoke),
            Op::RegisterSession(_) => self.register_session(index, command),
            Op::Txn(txn) => self.txn(txn),
            Op::Redis(redis) => self.redis(redis),
        }
    }
}
