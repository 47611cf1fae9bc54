//! The stop signal every task of a node waits on.
//!
//! Waiters are woken in the order they started waiting. (tokio's watch channel would do, but
//! it spreads its waiters over several notifiers picked at random from process-wide state,
//! which makes simulated runs of one seed differ.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

struct Inner {
    stopped: AtomicBool,
    notify: Notify,
}

/// The sending side: `stop` it once to stop every task holding a [`Shutdown`].
pub struct Trigger(Arc<Inner>);

/// The receiving side, cloned into every task.
#[derive(Clone)]
pub struct Shutdown(Arc<Inner>);

/// A new, not yet stopped, signal.
pub fn channel() -> (Trigger, Shutdown) {
    let inner = Arc::new(Inner {
        stopped: AtomicBool::new(false),
        notify: Notify::new(),
    });
    (Trigger(inner.clone()), Shutdown(inner))
}

impl Trigger {
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
}

impl Shutdown {
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Resolves once the trigger is pulled (at once if it already was).
    pub async fn stopped(&self) {
        loop {
            // Registered before the check, so a stop between the two still wakes it.
            let notified = self.0.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_wakes_once_stopped() {
        let (trigger, shutdown) = channel();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let shutdown = shutdown.clone();
                tokio::spawn(async move { shutdown.stopped().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!shutdown.is_stopped());
        trigger.stop();
        for waiter in waiters {
            waiter.await.unwrap();
        }
        // A waiter that arrives after the stop does not wait.
        shutdown.stopped().await;
    }
}
