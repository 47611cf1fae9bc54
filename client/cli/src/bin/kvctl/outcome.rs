//! What a kvctl command produced, before it is shown: one variant per kind of answer, so the
//! renderer (`render`) alone decides the text, the JSON and the exit code.

use paxkv_client::{
    CasResult, ClientError, DeleteResult, KeyValue, LeaseInfo, LeaseSummary, MembersResponse,
    StatusResponse, TtlResult, TxnOpResult,
};

/// The answer of one command that reached the cluster (failures are `ClientError`s).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `put`: the write's revision.
    Written { revision: u64 },
    /// `get`: the key asked for and what it holds (`None`: no such key).
    Value { key: String, kv: Option<KeyValue> },
    /// `del`: the key, the revision it had to be at (`--expected-rev`), and the answer.
    Deleted {
        key: String,
        expected_revision: Option<u64>,
        delete: DeleteResult,
    },
    /// `del --prefix`: how many keys went.
    DeletedPrefix { count: u64 },
    /// `del --range`: how many keys went.
    DeletedRange { count: u64 },
    /// `txn`: which branch ran, at which revision, its operations and what each answered.
    Txn {
        succeeded: bool,
        revision: u64,
        steps: Vec<TxnStep>,
        results: Vec<TxnOpResult>,
    },
    /// `cas`: the key, the revision the write expected, and the answer.
    CompareAndSet {
        key: String,
        expected_revision: u64,
        cas: CasResult,
    },
    /// `scan`: the keys (every page, up to the limit), whether more follow, the revision of
    /// the last page read, the limit asked for (named when there are more), and whether only
    /// keys were asked for.
    Rows {
        kvs: Vec<KeyValue>,
        more: bool,
        revision: u64,
        limit: u64,
        keys_only: bool,
    },
    /// `ttl`: a key's time to live.
    Ttl(TtlResult),
    /// `expire`: whether the new time to live was set; if not, whether the key exists (so the
    /// condition, named as its flag, did not hold).
    Expired {
        key: String,
        applied: bool,
        exists: bool,
        condition: &'static str,
    },
    /// `persist`: whether there was a time to live to remove.
    Persisted { removed: bool },
    /// `lease grant`: the new lease's id.
    LeaseGranted { lease_id: u64 },
    /// `lease keep-alive`: the lease's time to live from now.
    LeaseKeptAlive { ttl_ms: u64 },
    /// `lease revoke`: how many keys went with the lease.
    LeaseRevoked { deleted_keys: u64 },
    /// `lease ttl`: time left, time granted and attached keys.
    LeaseTtl(LeaseInfo),
    /// `lease list`: every live lease.
    Leases(Vec<LeaseSummary>),
    /// `status`: every endpoint, with its status or why it did not answer.
    Status(Vec<(String, Result<StatusResponse, ClientError>)>),
    /// `member ...`: the members after the change (or as listed).
    Members(MembersResponse),
}

/// One operation of a transaction's branch, as its file named it (to show its result by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    Put { key: Vec<u8> },
    Delete { key: Vec<u8> },
    DeletePrefix { prefix: Vec<u8> },
    DeleteRange { start: Vec<u8>, end: Vec<u8> },
    Get { key: Vec<u8> },
}
