//! `scan`: the live keys under a prefix, in key order, a page at a time.

use paxkv_proto::client::{
    client_response::Body as Response, ErrorCode, KeyValue, ScanRequest, ScanResponse,
};
use paxkv_proto::{KEY_BYTES_MAX, SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX};

use crate::kv::errors::error_response;
use crate::kv::KvStore;

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
    let (kvs, more) = kv.scan(&scan.prefix, &scan.start_after, scan.limit);
    Response::Scan(ScanResponse {
        header: kv.header(),
        kvs,
        more,
    })
}

impl KvStore {
    /// Live keys with `prefix` strictly after `start_after`, at most `limit` (0: the default);
    /// returns the page and whether more keys follow.
    pub fn scan(&self, prefix: &[u8], start_after: &[u8], limit: u32) -> (Vec<KeyValue>, bool) {
        let limit = match limit {
            0 => SCAN_LIMIT_DEFAULT,
            limit => limit.min(SCAN_LIMIT_MAX),
        } as usize;
        let start = if start_after.is_empty() || start_after < prefix {
            std::ops::Bound::Included(prefix)
        } else {
            std::ops::Bound::Excluded(start_after)
        };
        let mut matching = self
            .map
            .range::<[u8], _>((start, std::ops::Bound::Unbounded))
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
