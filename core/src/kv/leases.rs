//! Leases: a time to live shared by the keys attached to it. A lease ends at its deadline in
//! log time (or when revoked), and its keys go with it, on every replica at the same entry.

use std::collections::BTreeSet;

use super::history::After;
use super::KvStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lease {
    pub(super) granted_ttl_ms: u64,
    pub(super) expires_at_ms: u64,
    pub(super) keys: BTreeSet<Vec<u8>>,
}

impl KvStore {
    /// The lease, if it has not reached its deadline at the current log time.
    pub(super) fn live_lease(&self, lease_id: u64) -> Option<&Lease> {
        self.leases
            .get(&lease_id)
            .filter(|lease| lease.expires_at_ms > self.log_time_ms)
    }

    /// Removes a lease and its deadline, not its keys.
    pub(super) fn take_lease(&mut self, lease_id: u64) -> Option<Lease> {
        let lease = self.leases.remove(&lease_id)?;
        let removed = self
            .lease_deadlines
            .remove(&(lease.expires_at_ms, lease_id));
        assert!(removed, "every lease is in the deadline index");
        Some(lease)
    }

    /// Removes a lease and deletes every key attached to it, as changes at the current
    /// revision (the caller moved it, if there are keys); returns how many keys went.
    pub(super) fn end_lease(&mut self, lease_id: u64) -> usize {
        let Some(lease) = self.take_lease(lease_id) else {
            return 0;
        };
        let count = lease.keys.len();
        for key in lease.keys {
            let stored = self.remove_key(&key).expect("a lease's keys are stored");
            self.record(&key, Some(stored), After::Deleted);
        }
        count
    }
}
