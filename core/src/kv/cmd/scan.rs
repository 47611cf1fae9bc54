//! `scan`: the live keys under a prefix, in key order, a page at a time.

use std::collections::BTreeMap;

use paxkv_proto::client::{
    client_response::Body as Response, ErrorCode, KeyValue, ResponseHeader, ScanRequest,
    ScanResponse,
};
use paxkv_proto::{KEY_BYTES_MAX, SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX};

use crate::kv::errors::error_response;
use crate::kv::{KvStore, StoredValue};

#[allow(clippy::result_large_err)]
pub(super) fn validate(scan: &ScanRequest) -> Result<(), Response> {
    if scan.prefix.len() > KEY_BYTES_MAX || scan.start_after.len() > KEY_BYTES_MAX {
        return Err(error_response(
            ErrorCode::KeyTooLarge,
            format!("scan prefix and start key are limited to {KEY_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

pub(super) fn answer(kv: &KvStore, scan: &ScanRequest) -> Response {
    if scan.revision != 0 && scan.revision < kv.revision() {
        return kv.scan_at(scan);
    }
    let (kvs, more) = kv.scan(&scan.prefix, &scan.start_after, scan.limit);
    Response::Scan(ScanResponse {
        header: kv.header(),
        kvs,
        more,
    })
}

/// Page size asked for, with the default and the cap applied.
fn page_size(limit: u32) -> usize {
    (match limit {
        0 => SCAN_LIMIT_DEFAULT,
        limit => limit.min(SCAN_LIMIT_MAX),
    }) as usize
}

/// Where a page starts: at the prefix, or just after the last key of the page before.
fn page_start<'a>(prefix: &'a [u8], start_after: &'a [u8]) -> std::ops::Bound<&'a [u8]> {
    if start_after.is_empty() || start_after < prefix {
        std::ops::Bound::Included(prefix)
    } else {
        std::ops::Bound::Excluded(start_after)
    }
}

impl KvStore {
    /// A page of a scan as the keys were at `scan.revision` (older than the current one): the
    /// current keys with every change made since undone, from the history. Keys that expired
    /// since are shown, as they were then; the header names that revision and its log time.
    fn scan_at(&self, scan: &ScanRequest) -> Response {
        let revision = scan.revision;
        if revision < self.history.first_revision() {
            return error_response(
                ErrorCode::Compacted,
                format!(
                    "revision {revision} is older than this node's history, which starts at \
                     revision {} (the current one is {}): start the scan again",
                    self.history.first_revision(),
                    self.revision
                ),
            );
        }
        let start = page_start(&scan.prefix, &scan.start_after);
        let in_page = |key: &[u8]| {
            key.starts_with(&scan.prefix)
                && match start {
                    std::ops::Bound::Excluded(after) => key > after,
                    _ => true,
                }
        };
        // Each key changed since: as it was before its first change after `revision`.
        let mut then: BTreeMap<&[u8], Option<&StoredValue>> = BTreeMap::new();
        let undo_after = match crate::planted::active(crate::planted::Bug::HistoryOffByOne) {
            true => revision + 1,
            false => revision,
        };
        for change in self.history.since(undo_after) {
            if in_page(change.key()) {
                then.entry(change.key()).or_insert(change.previous());
            }
        }
        let now = self
            .stored_from(start)
            .take_while(|(key, _)| key.starts_with(&scan.prefix))
            .filter(|(key, stored)| !then.contains_key(key) && self.is_live(stored));
        let changed = then
            .iter()
            .filter_map(|(key, stored)| stored.map(|stored| (*key, stored)));
        let limit = page_size(scan.limit);
        let mut merged = merge_by_key(now, changed);
        let kvs: Vec<KeyValue> = merged
            .by_ref()
            .take(limit)
            .map(|(key, stored)| Self::key_value(key, stored))
            .collect();
        let more = merged.next().is_some();
        let log_time_ms = self
            .history
            .log_time_at(revision)
            .unwrap_or(self.log_time_ms);
        Response::Scan(ScanResponse {
            header: Some(ResponseHeader {
                revision,
                served_by: 0,
                log_time_ms,
                applied_index: self.applied_index,
                leader_address: String::new(),
            }),
            kvs,
            more,
        })
    }

    /// Live keys with `prefix` strictly after `start_after`, at most `limit` (0: the default);
    /// returns the page and whether more keys follow.
    pub fn scan(&self, prefix: &[u8], start_after: &[u8], limit: u32) -> (Vec<KeyValue>, bool) {
        let limit = page_size(limit);
        let start = page_start(prefix, start_after);
        let mut matching = self
            .stored_from(start)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, stored)| self.is_live(stored));
        let page: Vec<KeyValue> = matching
            .by_ref()
            .take(limit)
            .map(|(key, stored)| Self::key_value(key, stored))
            .collect();
        let more = matching.next().is_some();
        (page, more)
    }
}

/// Two key-ordered sequences of distinct keys as one, in key order.
fn merge_by_key<'a>(
    a: impl Iterator<Item = (&'a [u8], &'a StoredValue)>,
    b: impl Iterator<Item = (&'a [u8], &'a StoredValue)>,
) -> impl Iterator<Item = (&'a [u8], &'a StoredValue)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((x, _)), Some((y, _))) if x <= y => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}
