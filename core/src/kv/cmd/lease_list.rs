//! `lease list`: the live leases in id order, a page at a time, each with its time left, its
//! granted time and how many keys it holds.

use paxkv_proto::client::{
    client_response::Body as Response, LeaseListRequest, LeaseListResponse, LeaseSummary,
};
use std::ops::Bound;

use paxkv_proto::{SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX};

use crate::kv::KvStore;

pub(super) fn answer(kv: &KvStore, list: &LeaseListRequest) -> Response {
    let (leases, more) = kv.lease_list(list.after_id, list.limit);
    Response::LeaseList(LeaseListResponse {
        header: kv.header(),
        leases,
        more,
    })
}

impl KvStore {
    /// Live leases with an id above `after_id`, at most `limit` (0: the default, capped like a
    /// scan's); returns the page and whether more follow.
    pub fn lease_list(&self, after_id: u64, limit: u32) -> (Vec<LeaseSummary>, bool) {
        let limit = match limit {
            0 => SCAN_LIMIT_DEFAULT,
            limit => limit.min(SCAN_LIMIT_MAX),
        } as usize;
        let mut live = self
            .leases
            .range((Bound::Excluded(after_id), Bound::Unbounded))
            .filter(|(_, lease)| lease.expires_at_ms > self.log_time_ms);
        let page = live
            .by_ref()
            .take(limit)
            .map(|(id, lease)| LeaseSummary {
                lease_id: *id,
                remaining_ms: lease.expires_at_ms - self.log_time_ms,
                granted_ttl_ms: lease.granted_ttl_ms,
                key_count: lease.keys.len() as u64,
            })
            .collect();
        (page, live.next().is_some())
    }
}
