//! Nodes that went silent: which ones a client avoids for a while, and the answers that may
//! still come from them.
//!
//! A frozen node (SIGSTOP, a VM pause, a stalled disk) keeps its connections open, so nothing
//! but time says it is gone. After one attempt without an answer the client tries the other
//! nodes, and for a short while it prefers them even when a follower's hint still names the
//! silent node (followers name the old leader until they elect a new one): such a hint gets one
//! request on the side, and the call goes on elsewhere. Requests sent to a silent node stay
//! pending: if that node was only slow, or is back, its answer still ends the call.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::Response;

/// How long a node that let an attempt run out is passed over. kv-server's followers elect a
/// new leader within two election timeouts (300 ms each by default) of the last heartbeat, and
/// learn of it with its first message, so after this long their hints name the new leader; a
/// node only slow comes back sooner, as soon as it answers anything.
pub const SILENT_NODE_AVOIDANCE: Duration = Duration::from_secs(3);

/// Silent nodes remembered at most (each entry lives `SILENT_NODE_AVOIDANCE`; a hint may name a
/// node outside the configured endpoints, so the endpoints alone do not bound them).
const SILENT_NODES_MAX: usize = 64;

/// Attempts whose late answer a call still waits for at most (one per attempt that ran out).
const LATE_ANSWERS_MAX: usize = 16;

/// Endpoints that recently let an attempt run out without an answer, and until when.
#[derive(Debug, Default)]
pub struct SilentNodes {
    avoid_until: BTreeMap<String, Instant>,
}

impl SilentNodes {
    /// `endpoint` let a whole attempt pass without answering at `now`.
    pub fn went_silent(&mut self, endpoint: &str, now: Instant) {
        self.avoid_until.retain(|_, until| *until > now);
        if self.avoid_until.len() >= SILENT_NODES_MAX && !self.avoid_until.contains_key(endpoint) {
            let soonest = self
                .avoid_until
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(endpoint, _)| endpoint.clone())
                .expect("the map is full, so not empty");
            self.avoid_until.remove(&soonest);
        }
        self.avoid_until
            .insert(endpoint.to_string(), now + SILENT_NODE_AVOIDANCE);
        assert!(self.avoid_until.len() <= SILENT_NODES_MAX);
    }

    /// `endpoint` answered (anything, even an error): it is alive.
    pub fn answered(&mut self, endpoint: &str) {
        self.avoid_until.remove(endpoint);
    }

    pub fn avoids(&self, endpoint: &str, now: Instant) -> bool {
        self.avoid_until
            .get(endpoint)
            .is_some_and(|until| *until > now)
    }

    /// The first of `candidates` not avoided; if every one is, the one that went silent
    /// longest ago (the likeliest to be back), the first of those on a tie.
    pub fn pick<'a>(&self, candidates: &[&'a String], now: Instant) -> &'a String {
        assert!(!candidates.is_empty(), "a client has at least one endpoint");
        let avoided_until = |endpoint: &String| {
            self.avoid_until
                .get(endpoint.as_str())
                .copied()
                .filter(|until| *until > now)
        };
        let mut best = candidates[0];
        for candidate in candidates {
            match (avoided_until(candidate), avoided_until(best)) {
                (None, _) => return candidate,
                (Some(until), Some(best_until)) if until < best_until => best = candidate,
                _ => {}
            }
        }
        best
    }
}

/// An answer a call no longer waits on alone but still takes: from an attempt that ran out of
/// time, or from a request sent on the side to a silent node a hint named. It yields the
/// endpoint and the answer if that is not an error, `None` otherwise.
pub type LateAnswer<'call> =
    Pin<Box<dyn Future<Output = Option<(String, Response)>> + Send + 'call>>;

/// The late answers one call still accepts: a slow leader's answer is as good as any.
#[derive(Default)]
pub struct LateAnswers<'call> {
    pending: Vec<LateAnswer<'call>>,
}

impl<'call> LateAnswers<'call> {
    pub fn push(&mut self, late: LateAnswer<'call>) {
        if self.pending.len() >= LATE_ANSWERS_MAX {
            // The oldest gives way: its node has had the longest to answer.
            drop(self.pending.remove(0));
        }
        self.pending.push(late);
        assert!(self.pending.len() <= LATE_ANSWERS_MAX);
    }

    /// The first answer that is not an error, with the endpoint it came from. An error (say,
    /// "not the leader" from a node that resumed after a pause) or a lost connection only
    /// removes that one: the attempts since speak for the call. Never finishes while nothing
    /// answers, so it can race the next attempt.
    pub async fn first_success(&mut self) -> (String, Response) {
        std::future::poll_fn(|context| {
            let mut index = 0;
            while index < self.pending.len() {
                match self.pending[index].as_mut().poll(context) {
                    Poll::Pending => index += 1,
                    Poll::Ready(Some(answer)) => {
                        drop(self.pending.swap_remove(index));
                        return Poll::Ready(answer);
                    }
                    Poll::Ready(None) => drop(self.pending.swap_remove(index)),
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_node_is_avoided_until_it_answers_or_its_time_is_up() {
        let start = Instant::now();
        let mut silent = SilentNodes::default();
        silent.went_silent("a:1", start);
        assert!(silent.avoids("a:1", start));
        assert!(!silent.avoids("b:1", start));
        assert!(silent.avoids(
            "a:1",
            start + SILENT_NODE_AVOIDANCE - Duration::from_millis(1)
        ));
        assert!(!silent.avoids("a:1", start + SILENT_NODE_AVOIDANCE));
        silent.went_silent("a:1", start);
        silent.answered("a:1");
        assert!(!silent.avoids("a:1", start));
    }

    #[test]
    fn the_pick_is_a_node_not_silent_else_the_one_silent_longest_ago() {
        let start = Instant::now();
        let (a, b, c) = ("a:1".to_string(), "b:1".to_string(), "c:1".to_string());
        let mut silent = SilentNodes::default();
        assert_eq!(silent.pick(&[&a, &b, &c], start), &a);
        silent.went_silent(&a, start + Duration::from_millis(10));
        assert_eq!(silent.pick(&[&a, &b, &c], start), &b);
        silent.went_silent(&c, start);
        silent.went_silent(&b, start + Duration::from_millis(20));
        let now = start + Duration::from_millis(30);
        assert_eq!(silent.pick(&[&a, &b, &c], now), &c, "c went silent first");
        assert_eq!(silent.pick(&[&b, &a], now), &a);
    }

    #[test]
    fn silent_nodes_are_bounded_and_the_latest_is_kept() {
        let start = Instant::now();
        let mut silent = SilentNodes::default();
        for index in 0..SILENT_NODES_MAX + 10 {
            silent.went_silent(
                &format!("node-{index}:1"),
                start + Duration::from_millis(index as u64),
            );
        }
        let now = start + Duration::from_millis(SILENT_NODES_MAX as u64 + 10);
        assert_eq!(silent.avoid_until.len(), SILENT_NODES_MAX);
        assert!(silent.avoids(&format!("node-{}:1", SILENT_NODES_MAX + 9), now));
        assert!(!silent.avoids("node-0:1", now));
    }
}
