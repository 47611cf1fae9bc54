//! The leader's log clock: the time stamped on every entry it appends, which is what TTLs and
//! leases expire by on every replica (a follower never consults its own clock for expiry).

use crate::types::Time;

/// Log time continues from the latest time anything in the new leader's log or state carries,
/// and from there advances with its own monotonic clock; it never goes back.
#[derive(Debug)]
pub(crate) struct LogClock {
    /// Log time of the newest entry in our log when we took over.
    takeover_log_time_ms: u64,
    /// Our clock when we took over.
    takeover_at: Time,
    /// Log time stamped on our last appended entry.
    last_stamp_ms: u64,
    /// When we last appended an entry (an idle leader proposes ticks).
    pub(crate) last_append_at: Time,
}

impl LogClock {
    pub(crate) fn new(now: Time) -> LogClock {
        LogClock {
            takeover_log_time_ms: 0,
            takeover_at: now,
            last_stamp_ms: 0,
            last_append_at: now,
        }
    }

    /// Starts the clock at takeover from the newest log time adopted.
    pub(crate) fn start(&mut self, adopted_log_time_ms: u64, now: Time) {
        self.takeover_log_time_ms = adopted_log_time_ms;
        self.last_stamp_ms = adopted_log_time_ms;
        self.takeover_at = now;
    }

    /// The stamp for an entry appended at `now`:
    /// max(last stamp, log time at takeover + our monotonic time since takeover).
    pub(crate) fn stamp(&mut self, now: Time) -> u64 {
        let elapsed_ms = now.millis_since(self.takeover_at);
        let log_time_ms = self
            .last_stamp_ms
            .max(self.takeover_log_time_ms.saturating_add(elapsed_ms));
        self.last_stamp_ms = log_time_ms;
        self.last_append_at = now;
        log_time_ms
    }
}
