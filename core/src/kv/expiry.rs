//! Log time and expiry: moving the store's log time forward and deleting what expired, at a
//! revision of its own, so that a key's disappearance is a change like any other (a scan at a
//! revision, a change stream, a compare-and-set all see it at one revision).
//!
//! Invariant after every applied entry: no stored key has a deadline at or before the store's
//! log time, and no lease does. So a key is visible exactly while it is stored, and nothing
//! becomes invisible between entries (log time only moves when an entry applies).
//!
//! Work per entry is bounded without ever showing a key past its deadline: deadlines are
//! taken in order, a whole deadline at a time (every key and every lease's keys that end at
//! that millisecond), while they fit `EXPIRED_KEYS_PER_ENTRY_MAX`; if the next one does not fit
//! (and something was deleted already), the store's log time stops just before it, behind the
//! leader's stamp, and the next entries catch up (the leader proposes them at once while the
//! store lags: `KvStore::expiry_lags`). Every replica applies the same entries, so every
//! replica stops at the same time. A single deadline with more keys than the bound (a lease
//! with many keys) goes whole.

use std::collections::BTreeMap;

use super::history::After;
use super::{KeyMeta, KvStore, StoredValue};

/// Keys deleted by expiry per applied entry at most (beyond that, see the module comment).
pub const EXPIRED_KEYS_PER_ENTRY_MAX: usize = 1000;

impl KvStore {
    /// Moves log time toward `log_time_ms` (never back) and deletes what expired, at one new
    /// revision if anything did.
    pub(super) fn advance_time(&mut self, log_time_ms: u64) {
        let target = self.log_time_ms.max(log_time_ms);
        let mut expired: BTreeMap<Box<[u8]>, StoredValue> = BTreeMap::new();
        let mut reached = target;
        while let Some(deadline) = self.next_deadline().filter(|deadline| *deadline <= target) {
            if !expired.is_empty()
                && expired.len() + self.keys_ending_at(deadline) > EXPIRED_KEYS_PER_ENTRY_MAX
            {
                // Just before the deadline that does not fit: nothing else ends in between.
                reached = deadline - 1;
                break;
            }
            self.delete_ending_at(deadline, &mut expired);
        }
        self.expiry_lags = reached < target;
        self.log_time_ms = reached.max(self.log_time_ms);
        if !expired.is_empty() {
            if !crate::planted::active(crate::planted::Bug::ExpiryWithoutRevision) {
                self.revision += 1;
            }
            for (key, stored) in expired {
                self.record(&key, Some(stored), After::Expired);
            }
        }
    }

    /// The earliest deadline of a key or a lease.
    fn next_deadline(&self) -> Option<u64> {
        let key = self.key_deadlines.first().map(|(deadline, _)| *deadline);
        let lease = self.lease_deadlines.first().map(|(deadline, _)| *deadline);
        key.into_iter().chain(lease).min()
    }

    /// How many keys end at `deadline` (by their own TTL or their lease's), counting a key
    /// that ends both ways twice (a bound, not an exact count).
    fn keys_ending_at(&self, deadline: u64) -> usize {
        let own = self
            .key_deadlines
            .range((deadline, Vec::new())..)
            .take_while(|(at, _)| *at == deadline)
            .count();
        let leased: usize = self
            .lease_deadlines
            .range((deadline, 0)..)
            .take_while(|(at, _)| *at == deadline)
            .map(|(_, lease_id)| self.leases[lease_id].keys.len().max(1))
            .sum();
        own + leased
    }

    /// Deletes every key whose TTL ends at `deadline` and ends every lease that does (with its
    /// keys), moving what was stored into `expired`.
    fn delete_ending_at(&mut self, deadline: u64, expired: &mut BTreeMap<Box<[u8]>, StoredValue>) {
        while let Some((at, key)) = self.key_deadlines.first().cloned() {
            if at != deadline {
                break;
            }
            let stored = self
                .remove_key(&key)
                .expect("every deadline's key is stored");
            expired.insert(key.into_boxed_slice(), stored);
        }
        while let Some(&(at, lease_id)) = self.lease_deadlines.first() {
            if at != deadline {
                break;
            }
            let lease = self
                .take_lease(lease_id)
                .expect("every deadline's lease exists");
            for key in lease.keys {
                if let Some(stored) = self.remove_key(&key) {
                    expired.insert(key.into_boxed_slice(), stored);
                }
            }
        }
    }

    /// True if the last entry stopped short of its log time to bound its work: more is due,
    /// and the leader should propose the next entry at once.
    pub fn expiry_lags(&self) -> bool {
        self.expiry_lags
    }

    /// Whether a stored key is visible. After every entry every stored key is (see the module
    /// comment); this holds for a store loaded from an older snapshot too, whose expired
    /// leftovers go with its first entry.
    pub(super) fn is_live(&self, stored: &StoredValue) -> bool {
        let ttl_live = stored.expires_at_ms() == 0 || stored.expires_at_ms() > self.log_time_ms;
        let lease_live = stored.lease_id() == 0 || self.live_lease(stored.lease_id()).is_some();
        ttl_live && lease_live
    }

    /// The key as it exists at the current log time.
    pub(super) fn live(&self, key: &[u8]) -> Option<&StoredValue> {
        self.stored(key).filter(|stored| self.is_live(stored))
    }

    /// Sets (or with 0 clears) the deadline of a stored key, at the current revision: a change
    /// the history records.
    pub(super) fn set_key_deadline(&mut self, key: &[u8], expires_at_ms: u64) {
        let current = self.stored(key).expect("the key exists");
        let stored = current.with_meta(&KeyMeta {
            expires_at_ms,
            ..current.meta()
        });
        let before = self.insert_key(stored);
        self.record(key, before, After::Stored);
    }
}
