//! The node's clock as the replica sees it: monotonic time, shifted by an offset and scaled by
//! a drift rate, so the simulator can give every node a different clock.

use paxkv_core::Time;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct NodeClock {
    start: Instant,
    offset_ms: u64,
    /// Parts per million faster (positive) or slower (negative) than real time.
    drift_ppm: i64,
}

impl NodeClock {
    /// The real monotonic clock.
    pub fn real() -> NodeClock {
        NodeClock::skewed(0, 0)
    }

    pub fn skewed(offset_ms: u64, drift_ppm: i64) -> NodeClock {
        assert!(drift_ppm > -1_000_000, "a clock must move forward");
        NodeClock {
            start: Instant::now(),
            offset_ms,
            drift_ppm,
        }
    }

    pub fn now(&self) -> Time {
        let real_ms = i128::try_from(self.start.elapsed().as_millis()).expect("fits");
        let local =
            i128::from(self.offset_ms) + real_ms + real_ms * i128::from(self.drift_ppm) / 1_000_000;
        Time(u64::try_from(local).expect("a clock that moves forward stays positive"))
    }
}
