//! `txn`: compares on several keys, then the operations of one branch, all at one revision.
//!
//! Atomic in the strong sense: everything a branch could be refused for (a lease that is gone,
//! a range too large, reads too large to answer) is checked before anything changes, so a
//! transaction is applied whole or not at all. Every write of the branch that changes
//! something shares one revision (`KvStore::take_revision`); the history records each key's
//! change at it, so a watcher gets the transaction's changes as one batch.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use paxkv_proto::client::{
    client_response::Body as Response, txn_op, txn_op_response, Compare, CompareOp, CompareTarget,
    ErrorCode, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
};
use paxkv_proto::{DELETE_PREFIX_KEYS_MAX, TXN_COMPARES_MAX, TXN_OPS_MAX};

use super::delete::Span;
use super::{delete, get, put};
use crate::kv::errors::{bad_request, error_response, lease_not_found, validate_key};
use crate::kv::KvStore;
use crate::planted::{active, Bug};

/// Bytes of values the gets of one transaction may return: the answer must fit in a frame
/// (`CLIENT_FRAME_BYTES_MAX`) with room for everything else.
pub const TXN_READ_BYTES_MAX: usize = 3 << 19;

#[allow(clippy::result_large_err)]
pub(super) fn validate(txn: &TxnRequest) -> Result<(), Response> {
    if txn.compare.len() > TXN_COMPARES_MAX {
        return Err(bad_request(format!(
            "the transaction has {} compares; the limit is {TXN_COMPARES_MAX}",
            txn.compare.len()
        )));
    }
    for compare in &txn.compare {
        validate_key(&compare.key)?;
        if CompareTarget::try_from(compare.target).is_err()
            || CompareOp::try_from(compare.op).is_err()
        {
            return Err(bad_request("a compare names an unknown target or operator"));
        }
        if compare.target() == CompareTarget::Exists
            && !matches!(compare.op(), CompareOp::Equal | CompareOp::NotEqual)
        {
            return Err(bad_request(
                "an exists compare takes EQUAL (the key exists) or NOT_EQUAL (it does not)",
            ));
        }
    }
    for (name, branch) in [("success", &txn.success), ("failure", &txn.failure)] {
        validate_branch(name, branch)?;
    }
    Ok(())
}

/// A branch's operations are valid alone, and its writes touch different keys.
#[allow(clippy::result_large_err)]
fn validate_branch(name: &str, branch: &[TxnOp]) -> Result<(), Response> {
    if branch.len() > TXN_OPS_MAX {
        return Err(bad_request(format!(
            "the {name} branch has {} operations; the limit is {TXN_OPS_MAX}",
            branch.len()
        )));
    }
    let mut put_keys = BTreeSet::new();
    let mut deleted = Vec::new();
    for op in branch {
        match &op.op {
            None => {
                return Err(bad_request(format!(
                    "an operation of the {name} branch is empty"
                )))
            }
            Some(txn_op::Op::Put(request)) => {
                put::validate(request)?;
                if request.expected_revision.is_some() {
                    return Err(bad_request(
                        "a put inside a transaction takes no expected revision: compare the \
                         key's mod revision instead",
                    ));
                }
                if !put_keys.insert(request.key.as_slice()) {
                    return Err(bad_request(format!(
                        "the {name} branch puts {:?} twice; a branch writes each key once",
                        String::from_utf8_lossy(&request.key)
                    )));
                }
            }
            Some(txn_op::Op::Delete(request)) => {
                delete::validate(request)?;
                deleted.push(request);
            }
            Some(txn_op::Op::Get(request)) => get::validate(request)?,
        }
    }
    for request in deleted {
        let covers = |key: &&&[u8]| match Span::of(request) {
            Some(span) => span.contains(key),
            None => **key == request.key.as_slice(),
        };
        if let Some(key) = put_keys.iter().find(covers) {
            return Err(bad_request(format!(
                "the {name} branch both puts and deletes {:?}; a branch writes each key once",
                String::from_utf8_lossy(key)
            )));
        }
    }
    Ok(())
}

impl KvStore {
    pub(super) fn txn(&mut self, txn: &TxnRequest) -> Response {
        let succeeded = txn
            .compare
            .iter()
            .all(|compare| self.compare_holds(compare));
        let branch = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        if let Some(refusal) = self.refusal(branch) {
            return refusal;
        }
        self.txn_revision_taken = Some(false);
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            let response = match op.op.as_ref().expect("validated operations have a body") {
                txn_op::Op::Put(request) => self.put(request),
                txn_op::Op::Delete(request) => self.delete(request),
                txn_op::Op::Get(request) => get::answer(self, request),
            };
            let answer = match response {
                // Only the previous values are left out: the answer must fit in a frame, and a
                // get before the write asks for one explicitly.
                Response::Put(mut put) => {
                    put.previous = None;
                    txn_op_response::Op::Put(put)
                }
                Response::Delete(mut delete) => {
                    delete.previous = None;
                    txn_op_response::Op::Delete(delete)
                }
                Response::Get(get) => txn_op_response::Op::Get(get),
                // Only a planted bug gets here: `refusal` checked everything that can fail.
                error => {
                    self.txn_revision_taken = None;
                    return error;
                }
            };
            responses.push(TxnOpResponse { op: Some(answer) });
        }
        self.txn_revision_taken = None;
        // The transaction's header is every operation's: one state, one revision.
        for response in &mut responses {
            match &mut response.op {
                Some(txn_op_response::Op::Put(put)) => put.header = None,
                Some(txn_op_response::Op::Delete(delete)) => delete.header = None,
                Some(txn_op_response::Op::Get(get)) => get.header = None,
                None => {}
            }
        }
        Response::Txn(TxnResponse {
            header: self.header(),
            succeeded,
            responses,
        })
    }

    /// Why the branch cannot apply whole, judged before anything of it changes.
    fn refusal(&self, branch: &[TxnOp]) -> Option<Response> {
        let mut read_bytes = 0usize;
        let mut written: Vec<(&[u8], usize)> = Vec::new();
        for op in branch {
            match op.op.as_ref().expect("validated operations have a body") {
                txn_op::Op::Put(request) => {
                    if let Some(lease_id) = request.lease_id {
                        // The planted slip: the lease is left for the put itself to check, so
                        // the writes before it stay applied when it is gone.
                        if self.live_lease(lease_id).is_none() && !active(Bug::TxnAppliedPartially)
                        {
                            return Some(lease_not_found(lease_id));
                        }
                    }
                    written.push((&request.key, request.value.len()));
                }
                txn_op::Op::Delete(request) => {
                    if let Some(span) = Span::of(request) {
                        if self.keys_in(span).nth(DELETE_PREFIX_KEYS_MAX).is_some() {
                            return Some(bad_request(format!(
                                "a delete in the transaction covers more than \
                                 {DELETE_PREFIX_KEYS_MAX} keys; delete them outside it"
                            )));
                        }
                    }
                    written.push((&request.key, 0));
                }
                txn_op::Op::Get(request) => {
                    read_bytes += written
                        .iter()
                        .rfind(|(key, _)| *key == request.key.as_slice())
                        .map(|(_, bytes)| *bytes)
                        .or_else(|| self.live(&request.key).map(|stored| stored.value().len()))
                        .unwrap_or(0);
                }
            }
        }
        (read_bytes > TXN_READ_BYTES_MAX).then(|| {
            error_response(
                ErrorCode::BadRequest,
                format!(
                    "the gets of the transaction would return {read_bytes} bytes; the limit is \
                     {TXN_READ_BYTES_MAX}: read the large values apart"
                ),
            )
        })
    }

    /// Whether `compare` holds for the key as it stands.
    fn compare_holds(&self, compare: &Compare) -> bool {
        let stored = self.live(&compare.key);
        let number = |field: fn(&crate::kv::StoredValue) -> u64| stored.map_or(0, field);
        let ordering: Ordering = match compare.target() {
            CompareTarget::Value => match stored {
                None => return false,
                Some(stored) => stored.value()[..].cmp(&compare.value[..]),
            },
            CompareTarget::ModRevision => number(|s| s.mod_revision()).cmp(&compare.number),
            CompareTarget::CreateRevision => number(|s| s.create_revision()).cmp(&compare.number),
            CompareTarget::Version => number(|s| s.version()).cmp(&compare.number),
            CompareTarget::Lease => number(|s| s.lease_id()).cmp(&compare.number),
            CompareTarget::Exists => {
                return match compare.op() {
                    CompareOp::Equal => stored.is_some(),
                    CompareOp::NotEqual => stored.is_none(),
                    CompareOp::Greater | CompareOp::Less => false,
                }
            }
        };
        match compare.op() {
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
            CompareOp::Greater => ordering == Ordering::Greater,
            CompareOp::Less => ordering == Ordering::Less,
        }
    }
}
