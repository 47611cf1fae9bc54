//! TTLs and leases: log time, removal of what expired, and the TTL and lease commands.

use paxkv_proto::client::{
    client_response::Body as Response, ErrorCode, ExpireCondition, ExpireRequest, ExpireResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveResponse, PersistRequest,
    PersistResponse, TtlResponse, TtlState,
};

use super::{error_response, KvStore, Lease, StoredValue};

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

    pub(super) fn live_lease(&self, lease_id: u64) -> Option<&Lease> {
        self.leases
            .get(&lease_id)
            .filter(|lease| lease.expires_at_ms > self.log_time_ms)
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

    /// Removes a lease and every key attached to it; returns how many keys went.
    fn end_lease(&mut self, lease_id: u64) -> usize {
        let Some(lease) = self.leases.remove(&lease_id) else {
            return 0;
        };
        let removed = self
            .lease_deadlines
            .remove(&(lease.expires_at_ms, lease_id));
        assert!(removed, "every lease is in the deadline index");
        for key in &lease.keys {
            let stored = self
                .map
                .remove(key.as_slice())
                .expect("a lease's keys are stored");
            if stored.expires_at_ms != 0 {
                self.key_deadlines
                    .remove(&(stored.expires_at_ms, key.clone()));
            }
        }
        lease.keys.len()
    }

    fn set_key_deadline(&mut self, key: &[u8], expires_at_ms: u64) {
        let mut stored = self.map.get(key).expect("the key exists").clone();
        stored.expires_at_ms = expires_at_ms;
        self.insert_key(key.to_vec(), stored);
    }

    pub(super) fn expire(&mut self, expire: &ExpireRequest) -> Response {
        self.purge_if_expired(&expire.key);
        let deadline = self.log_time_ms.saturating_add(expire.ttl_ms);
        let applied = match self.map.get(expire.key.as_slice()) {
            None => false,
            Some(stored) => {
                let current = stored.expires_at_ms;
                match expire.condition() {
                    ExpireCondition::Always => true,
                    ExpireCondition::Nx => current == 0,
                    ExpireCondition::Xx => current != 0,
                    ExpireCondition::Gt => current != 0 && deadline > current,
                    ExpireCondition::Lt => current == 0 || deadline < current,
                }
            }
        };
        if applied {
            self.revision += 1;
            self.set_key_deadline(&expire.key, deadline);
        }
        Response::Expire(ExpireResponse {
            header: self.header(),
            applied,
        })
    }

    pub(super) fn persist(&mut self, persist: &PersistRequest) -> Response {
        self.purge_if_expired(&persist.key);
        let removed = self
            .map
            .get(persist.key.as_slice())
            .is_some_and(|stored| stored.expires_at_ms != 0);
        if removed {
            self.revision += 1;
            self.set_key_deadline(&persist.key, 0);
        }
        Response::Persist(PersistResponse {
            header: self.header(),
            removed,
        })
    }

    /// The key's remaining time to live at the current log time.
    pub fn ttl(&self, key: &[u8]) -> Response {
        let (state, remaining_ms) = match self.live(key) {
            None => (TtlState::NoKey, 0),
            Some(stored) if stored.expires_at_ms == 0 => (TtlState::NoTtl, 0),
            Some(stored) => (TtlState::Remaining, stored.expires_at_ms - self.log_time_ms),
        };
        Response::Ttl(TtlResponse {
            header: self.header(),
            state: state as i32,
            remaining_ms,
        })
    }

    /// A lease's id is the log index of its grant: unique, and the same on every replica.
    pub(super) fn lease_grant(&mut self, index: u64, grant: &LeaseGrantRequest) -> Response {
        assert!(
            !self.leases.contains_key(&index),
            "lease ids are log indexes, used once"
        );
        let expires_at_ms = self.log_time_ms.saturating_add(grant.ttl_ms);
        self.lease_deadlines.insert((expires_at_ms, index));
        self.leases.insert(
            index,
            Lease {
                granted_ttl_ms: grant.ttl_ms,
                expires_at_ms,
                keys: Default::default(),
            },
        );
        Response::LeaseGrant(LeaseGrantResponse {
            header: self.header(),
            lease_id: index,
            ttl_ms: grant.ttl_ms,
        })
    }

    fn lease_not_found(lease_id: u64) -> Response {
        error_response(
            ErrorCode::NotFound,
            format!("lease {lease_id} does not exist or has expired; grant a new one"),
        )
    }

    pub(super) fn lease_keep_alive(&mut self, keep_alive: &LeaseKeepAliveRequest) -> Response {
        let Some(lease) = self.live_lease(keep_alive.lease_id) else {
            return Self::lease_not_found(keep_alive.lease_id);
        };
        let (old_deadline, ttl_ms) = (lease.expires_at_ms, lease.granted_ttl_ms);
        let new_deadline = self.log_time_ms.saturating_add(ttl_ms);
        self.lease_deadlines
            .remove(&(old_deadline, keep_alive.lease_id));
        self.lease_deadlines
            .insert((new_deadline, keep_alive.lease_id));
        self.leases
            .get_mut(&keep_alive.lease_id)
            .expect("checked live above")
            .expires_at_ms = new_deadline;
        Response::LeaseKeepAlive(LeaseKeepAliveResponse {
            header: self.header(),
            ttl_ms,
        })
    }

    pub(super) fn lease_revoke(&mut self, revoke: &LeaseRevokeRequest) -> Response {
        if self.live_lease(revoke.lease_id).is_none() {
            return Self::lease_not_found(revoke.lease_id);
        }
        let has_keys = !self.leases[&revoke.lease_id].keys.is_empty();
        if has_keys {
            self.revision += 1;
        }
        let deleted_keys = self.end_lease(revoke.lease_id) as u64;
        Response::LeaseRevoke(LeaseRevokeResponse {
            header: self.header(),
            deleted_keys,
        })
    }

    /// The lease's remaining time to live at the current log time, and optionally its keys.
    pub fn lease_time_to_live(&self, lease_id: u64, with_keys: bool) -> Response {
        let Some(lease) = self.live_lease(lease_id) else {
            return Self::lease_not_found(lease_id);
        };
        let keys = if with_keys {
            lease.keys.iter().cloned().collect()
        } else {
            Vec::new()
        };
        Response::LeaseTimeToLive(LeaseTimeToLiveResponse {
            header: self.header(),
            remaining_ms: lease.expires_at_ms - self.log_time_ms,
            granted_ttl_ms: lease.granted_ttl_ms,
            keys,
        })
    }
}
