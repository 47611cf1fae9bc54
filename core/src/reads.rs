//! Serving reads at each consistency level. Stale reads answer from the local state at once;
//! session reads (at least a revision and log position the client saw) wait here until the
//! state machine has reached that point, at most two election timeouts; linearizable reads go
//! to the leader (`leader/reads.rs`). What a read returns is its command's (`kv/cmd/`).

use paxkv_proto::client::{Consistency, ErrorCode};

use crate::kv::{error_response, ReadRequest};
use crate::replica::Replica;
use crate::types::{RequestId, Time};
use crate::PENDING_READS_MAX;

/// What a session read has already seen: the state it reads must be at least this new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionPoint {
    pub(crate) revision: u64,
    /// Revisions alone miss expiry and leases, which change what a read returns without one;
    /// the log position covers everything visible.
    pub(crate) applied_index: u64,
}

/// A session read waiting for its session point.
#[derive(Debug)]
pub(crate) struct SessionWaiter {
    point: SessionPoint,
    since: Time,
    request: RequestId,
    read: ReadRequest,
}

/// A session read waits at most this long (in election timeouts) for the replica to reach its
/// session point, then is refused with `Timeout` so the client tries another node: a node cut
/// off from its leader, or asked for a point it will never reach, must not hold reads forever.
const SESSION_READ_WAIT_ELECTION_TIMEOUTS: u64 = 2;

impl Replica {
    /// Serves a read that arrived by `now`, at the consistency level it asks for.
    pub fn read(&mut self, request: RequestId, read: ReadRequest, now: Time) {
        self.observe_time(now);
        let wanted = read.point();
        let point = SessionPoint {
            revision: wanted.min_revision,
            applied_index: wanted.min_applied_index,
        };
        match wanted.consistency {
            Consistency::Stale => self.answer_read(request, &read),
            Consistency::AtLeastRevision => {
                if self.reached(point) {
                    self.answer_read(request, &read);
                } else if self.revision_waiters.len() >= PENDING_READS_MAX {
                    self.respond(
                        request,
                        error_response(ErrorCode::Busy, "too many reads waiting; retry shortly"),
                    );
                } else {
                    self.revision_waiters.push(SessionWaiter {
                        point,
                        since: self.now,
                        request,
                        read,
                    });
                }
            }
            Consistency::Linearizable => self.leader_read(request, read),
        }
    }

    pub(crate) fn answer_read(&mut self, request: RequestId, read: &ReadRequest) {
        let response = read.answer(&self.kv);
        self.respond(request, response);
    }

    /// Whether the applied state is at least as new as a session point.
    fn reached(&self, point: SessionPoint) -> bool {
        let index_reached = self.kv.applied_index() >= point.applied_index
            || crate::planted::active(crate::planted::Bug::SessionPointRevisionOnly);
        self.kv.revision() >= point.revision && index_reached
    }

    /// Answers the session reads whose point the state machine has reached.
    pub(crate) fn wake_revision_waiters(&mut self) {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.revision_waiters)
            .into_iter()
            .partition(|waiter| self.reached(waiter.point));
        self.revision_waiters = waiting;
        for waiter in ready {
            self.answer_read(waiter.request, &waiter.read);
        }
    }

    /// Refuses the session reads that waited too long (the client then asks another node).
    pub(crate) fn expire_revision_waiters(&mut self) {
        let wait_ms_max = SESSION_READ_WAIT_ELECTION_TIMEOUTS * self.config.election_timeout_ms;
        let now = self.now;
        // Waiters are kept in arrival order, so the expired ones are a prefix (no work per tick
        // while none has waited that long).
        let expired = self
            .revision_waiters
            .partition_point(|waiter| now.millis_since(waiter.since) >= wait_ms_max);
        let expired: Vec<SessionWaiter> = self.revision_waiters.drain(..expired).collect();
        for waiter in expired {
            let message = format!(
                "{} has not caught up with this session (revision {}, log index {}) within \
                 {wait_ms_max} ms; try another node",
                self.id, waiter.point.revision, waiter.point.applied_index
            );
            self.respond(waiter.request, error_response(ErrorCode::Timeout, message));
        }
    }
}
