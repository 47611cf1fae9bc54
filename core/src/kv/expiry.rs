//! Log time and expiry: moving the store's log time forward, removing what expired (a bounded
//! amount per entry), and deciding whether a key is live at the current log time.

use super::{KvStore, StoredValue};

/// Expired keys removed per applied entry at most (a lease's keys go all at once, counted
/// here too), so a burst of deadlines never stalls the apply loop. What is left is already
/// invisible and goes with the next entries.
pub const EXPIRED_KEYS_PER_ENTRY_MAX: usize = 1000;

impl KvStore {
    /// Moves log time forward to `log_time_ms` (never back) and removes what expired.
    pub(super) fn advance_time(&mut self, log_time_ms: u64) {
        self.log_time_ms = self.log_time_ms.max(log_time_ms);
        let mut budget = EXPIRED_KEYS_PER_ENTRY_MAX;
        while budget > 0 {
            let Some((deadline, key)) = self.key_deadlines.first().cloned() else {
                break;
            };
            if deadline > self.log_time_ms {
                break;
            }
            self.remove_key(&key);
            budget -= 1;
        }
        while budget > 0 {
            let Some(&(deadline, lease_id)) = self.lease_deadlines.first() else {
                break;
            };
            if deadline > self.log_time_ms {
                break;
            }
            let removed = self.end_lease(lease_id);
            budget = budget.saturating_sub(removed.max(1));
        }
    }

    pub(super) fn is_live(&self, stored: &StoredValue) -> bool {
        let ttl_live = stored.expires_at_ms == 0 || stored.expires_at_ms > self.log_time_ms;
        let lease_live = stored.lease_id == 0 || self.live_lease(stored.lease_id).is_some();
        ttl_live && lease_live
    }

    /// The key as it exists at the current log time.
    pub(super) fn live(&self, key: &[u8]) -> Option<&StoredValue> {
        self.map.get(key).filter(|stored| self.is_live(stored))
    }

    /// Removes a key that expired but is still stored, so a write sees it as absent.
    pub(super) fn purge_if_expired(&mut self, key: &[u8]) {
        let expired = self
            .map
            .get(key)
            .is_some_and(|stored| !self.is_live(stored));
        if expired {
            self.remove_key(key);
        }
    }

    /// Sets (or with 0 clears) the deadline of a stored key.
    pub(super) fn set_key_deadline(&mut self, key: &[u8], expires_at_ms: u64) {
        let mut stored = self.map.get(key).expect("the key exists").clone();
        stored.expires_at_ms = expires_at_ms;
        self.insert_key(key.to_vec(), stored);
    }
}
