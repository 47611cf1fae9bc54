//! Transactions: compares on several keys, then one list of operations or another, applied by
//! the cluster atomically at one revision.
//!
//! ```no_run
//! # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
//! use paxkv_client::*;
//! // Move 10 from one account to another, only if neither changed since it was read.
//! let a = client.get(b"acct/a", ReadConsistency::Linearizable).await?.kv.unwrap();
//! let b = client.get(b"acct/b", ReadConsistency::Linearizable).await?.kv.unwrap();
//! let txn = Txn::new()
//!     .when([Compare::mod_revision(b"acct/a").eq(a.mod_revision),
//!            Compare::mod_revision(b"acct/b").eq(b.mod_revision)])
//!     .and_then([TxnOp::put(b"acct/a", b"90", PutOptions::new()),
//!                TxnOp::put(b"acct/b", b"110", PutOptions::new())])
//!     .or_else([TxnOp::get(b"acct/a"), TxnOp::get(b"acct/b")]);
//! let result = client.txn(txn).await?;
//! println!("moved: {} at revision {}", result.succeeded, result.revision);
//! # Ok(()) }
//! ```

use paxkv_proto::client::{
    txn_op, txn_op_response, Compare as WireCompare, CompareOp, CompareTarget, DeleteRequest,
    GetRequest, KeyValue, TxnOp as WireOp, TxnRequest, TxnResponse,
};
pub use paxkv_proto::{TXN_COMPARES_MAX, TXN_OPS_MAX};

use crate::config::PutOptions;

/// A transaction to send with [`crate::Client::txn`]: if every compare holds, the `and_then`
/// operations run, else the `or_else` ones. At most [`TXN_COMPARES_MAX`] compares and
/// [`TXN_OPS_MAX`] operations per branch; a branch writes each key once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    request: TxnRequest,
}

impl Txn {
    /// An empty transaction: no compares (so the `and_then` branch runs), no operations.
    ///
    /// ```
    /// let txn = paxkv_client::Txn::new();
    /// # let _ = txn;
    /// ```
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds compares; all of them must hold for the `and_then` branch to run.
    ///
    /// ```
    /// use paxkv_client::{Compare, Txn};
    /// let txn = Txn::new().when([Compare::absent(b"lock"), Compare::value(b"mode").eq(b"on")]);
    /// # let _ = txn;
    /// ```
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.request
            .compare
            .extend(compares.into_iter().map(|compare| compare.wire));
        self
    }

    /// Adds operations to the branch that runs when every compare holds.
    ///
    /// ```
    /// use paxkv_client::{PutOptions, Txn, TxnOp};
    /// let txn = Txn::new().and_then([TxnOp::put(b"a", b"1", PutOptions::new()), TxnOp::get(b"b")]);
    /// # let _ = txn;
    /// ```
    pub fn and_then(mut self, operations: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.request
            .success
            .extend(operations.into_iter().map(|op| op.wire));
        self
    }

    /// Adds operations to the branch that runs when some compare does not hold.
    ///
    /// ```
    /// use paxkv_client::{Txn, TxnOp};
    /// let txn = Txn::new().or_else([TxnOp::get(b"lock")]);
    /// # let _ = txn;
    /// ```
    pub fn or_else(mut self, operations: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.request
            .failure
            .extend(operations.into_iter().map(|op| op.wire));
        self
    }

    /// The request as it goes on the wire.
    ///
    /// ```
    /// let request = paxkv_client::Txn::new().into_request();
    /// assert!(request.compare.is_empty());
    /// ```
    pub fn into_request(self) -> TxnRequest {
        self.request
    }
}

/// One condition of a transaction, on one key. A key that does not exist has version, create
/// and mod revision and lease 0 and no value: a value compare on it never holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    wire: WireCompare,
}

/// A compare that still needs its operator and operand (`eq`, `ne`, `gt`, `lt`).
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a compare needs an operator: .eq(..), .ne(..), .gt(..) or .lt(..)"]
pub struct CompareOn<T> {
    key: Vec<u8>,
    target: CompareTarget,
    _operand: std::marker::PhantomData<T>,
}

impl Compare {
    /// The key's value, compared byte by byte.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::value(b"mode").eq(b"on");
    /// # let _ = compare;
    /// ```
    pub fn value(key: &[u8]) -> CompareOn<Vec<u8>> {
        CompareOn::new(key, CompareTarget::Value)
    }

    /// The revision of the key's last write (0: no key).
    ///
    /// ```
    /// let compare = paxkv_client::Compare::mod_revision(b"config").eq(42);
    /// # let _ = compare;
    /// ```
    pub fn mod_revision(key: &[u8]) -> CompareOn<u64> {
        CompareOn::new(key, CompareTarget::ModRevision)
    }

    /// The revision that created the key (0: no key).
    ///
    /// ```
    /// let compare = paxkv_client::Compare::create_revision(b"lock/a").lt(7);
    /// # let _ = compare;
    /// ```
    pub fn create_revision(key: &[u8]) -> CompareOn<u64> {
        CompareOn::new(key, CompareTarget::CreateRevision)
    }

    /// Writes since the key was created (0: no key).
    ///
    /// ```
    /// let compare = paxkv_client::Compare::version(b"k").gt(0);
    /// # let _ = compare;
    /// ```
    pub fn version(key: &[u8]) -> CompareOn<u64> {
        CompareOn::new(key, CompareTarget::Version)
    }

    /// The lease the key is attached to (0: none, or no key).
    ///
    /// ```
    /// let compare = paxkv_client::Compare::lease(b"k").eq(1234);
    /// # let _ = compare;
    /// ```
    pub fn lease(key: &[u8]) -> CompareOn<u64> {
        CompareOn::new(key, CompareTarget::Lease)
    }

    /// Holds if the key exists.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::exists(b"k");
    /// # let _ = compare;
    /// ```
    pub fn exists(key: &[u8]) -> Compare {
        CompareOn::<u64>::new(key, CompareTarget::Exists).with(CompareOp::Equal, Vec::new(), 0)
    }

    /// Holds if the key does not exist.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::absent(b"k");
    /// # let _ = compare;
    /// ```
    pub fn absent(key: &[u8]) -> Compare {
        CompareOn::<u64>::new(key, CompareTarget::Exists).with(CompareOp::NotEqual, Vec::new(), 0)
    }
}

impl<T> CompareOn<T> {
    fn new(key: &[u8], target: CompareTarget) -> CompareOn<T> {
        CompareOn {
            key: key.to_vec(),
            target,
            _operand: std::marker::PhantomData,
        }
    }

    fn with(self, op: CompareOp, value: Vec<u8>, number: u64) -> Compare {
        Compare {
            wire: WireCompare {
                key: self.key,
                target: self.target as i32,
                op: op as i32,
                value,
                number,
            },
        }
    }
}

impl CompareOn<u64> {
    /// Equal to `number`.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::version(b"k").eq(0);
    /// # let _ = compare;
    /// ```
    pub fn eq(self, number: u64) -> Compare {
        self.with(CompareOp::Equal, Vec::new(), number)
    }

    /// Not equal to `number`.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::lease(b"k").ne(0);
    /// # let _ = compare;
    /// ```
    pub fn ne(self, number: u64) -> Compare {
        self.with(CompareOp::NotEqual, Vec::new(), number)
    }

    /// Greater than `number`.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::mod_revision(b"k").gt(10);
    /// # let _ = compare;
    /// ```
    pub fn gt(self, number: u64) -> Compare {
        self.with(CompareOp::Greater, Vec::new(), number)
    }

    /// Less than `number`.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::create_revision(b"k").lt(10);
    /// # let _ = compare;
    /// ```
    pub fn lt(self, number: u64) -> Compare {
        self.with(CompareOp::Less, Vec::new(), number)
    }
}

impl CompareOn<Vec<u8>> {
    /// Equal to `value`.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::value(b"k").eq(b"v");
    /// # let _ = compare;
    /// ```
    pub fn eq(self, value: &[u8]) -> Compare {
        self.with(CompareOp::Equal, value.to_vec(), 0)
    }

    /// Not equal to `value` (and the key exists).
    ///
    /// ```
    /// let compare = paxkv_client::Compare::value(b"k").ne(b"v");
    /// # let _ = compare;
    /// ```
    pub fn ne(self, value: &[u8]) -> Compare {
        self.with(CompareOp::NotEqual, value.to_vec(), 0)
    }

    /// After `value` in byte order.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::value(b"k").gt(b"m");
    /// # let _ = compare;
    /// ```
    pub fn gt(self, value: &[u8]) -> Compare {
        self.with(CompareOp::Greater, value.to_vec(), 0)
    }

    /// Before `value` in byte order.
    ///
    /// ```
    /// let compare = paxkv_client::Compare::value(b"k").lt(b"m");
    /// # let _ = compare;
    /// ```
    pub fn lt(self, value: &[u8]) -> Compare {
        self.with(CompareOp::Less, value.to_vec(), 0)
    }
}

/// One operation of a transaction's branch.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOp {
    wire: WireOp,
}

impl TxnOp {
    /// Writes `value` under `key` (with a TTL, a lease or keeping the TTL, as `options` say).
    ///
    /// ```
    /// use paxkv_client::{PutOptions, TxnOp};
    /// let op = TxnOp::put(b"session/1", b"alice", PutOptions::new().ttl_ms(30_000));
    /// # let _ = op;
    /// ```
    pub fn put(key: &[u8], value: &[u8], options: PutOptions) -> TxnOp {
        TxnOp::wire(txn_op::Op::Put(options.request(key, value, None)))
    }

    /// Deletes `key` if it exists.
    ///
    /// ```
    /// let op = paxkv_client::TxnOp::delete(b"k");
    /// # let _ = op;
    /// ```
    pub fn delete(key: &[u8]) -> TxnOp {
        TxnOp::wire(txn_op::Op::Delete(DeleteRequest {
            key: key.to_vec(),
            ..Default::default()
        }))
    }

    /// Deletes every key starting with `prefix` (at most `DELETE_PREFIX_KEYS_MAX`, or the
    /// transaction is refused).
    ///
    /// ```
    /// let op = paxkv_client::TxnOp::delete_prefix(b"cache/");
    /// # let _ = op;
    /// ```
    pub fn delete_prefix(prefix: &[u8]) -> TxnOp {
        TxnOp::wire(txn_op::Op::Delete(DeleteRequest {
            key: prefix.to_vec(),
            prefix: true,
            ..Default::default()
        }))
    }

    /// Deletes every key from `start` (included) to `end` (excluded, after `start`; an empty
    /// `end` is no range: it deletes `start` alone).
    ///
    /// ```
    /// let op = paxkv_client::TxnOp::delete_range(b"log/0100", b"log/0200");
    /// # let _ = op;
    /// ```
    pub fn delete_range(start: &[u8], end: &[u8]) -> TxnOp {
        TxnOp::wire(txn_op::Op::Delete(DeleteRequest {
            key: start.to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        }))
    }

    /// Reads `key` as the transaction sees it at this point (after the writes before it).
    ///
    /// ```
    /// let op = paxkv_client::TxnOp::get(b"k");
    /// # let _ = op;
    /// ```
    pub fn get(key: &[u8]) -> TxnOp {
        TxnOp::wire(txn_op::Op::Get(GetRequest {
            key: key.to_vec(),
            ..Default::default()
        }))
    }

    fn wire(op: txn_op::Op) -> TxnOp {
        TxnOp {
            wire: WireOp { op: Some(op) },
        }
    }
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TxnResult {
    /// True if every compare held and the `and_then` branch ran.
    pub succeeded: bool,
    /// The revision of the state after it (its writes' revision, if it wrote).
    pub revision: u64,
    pub log_time_ms: u64,
    /// One result per operation of the branch that ran, in order.
    pub results: Vec<TxnOpResult>,
}

/// What one operation of the branch that ran answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TxnOpResult {
    Put,
    /// How many keys went.
    Delete {
        deleted: u64,
    },
    Get(Option<KeyValue>),
}

impl TxnResult {
    pub(crate) fn from_wire(response: TxnResponse) -> TxnResult {
        let header = response.header.unwrap_or_default();
        TxnResult {
            succeeded: response.succeeded,
            revision: header.revision,
            log_time_ms: header.log_time_ms,
            results: response
                .responses
                .into_iter()
                .map(|answer| match answer.op {
                    Some(txn_op_response::Op::Put(_)) | None => TxnOpResult::Put,
                    Some(txn_op_response::Op::Delete(delete)) => TxnOpResult::Delete {
                        deleted: delete.deleted_count,
                    },
                    Some(txn_op_response::Op::Get(get)) => TxnOpResult::Get(get.kv),
                })
                .collect(),
        }
    }

    /// The key read by the `index`-th operation, if it was a get that found one.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let result = client.txn(Txn::new().and_then([TxnOp::get(b"a")])).await?;
    /// println!("{:?}", result.get(0).map(|kv| &kv.value));
    /// # Ok(()) }
    /// ```
    pub fn get(&self, index: usize) -> Option<&KeyValue> {
        match self.results.get(index) {
            Some(TxnOpResult::Get(kv)) => kv.as_ref(),
            _ => None,
        }
    }
}
