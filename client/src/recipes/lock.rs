//! A mutual exclusion lock: one holder at a time, in the order they asked, each with a fencing
//! token, held while its lease is kept alive.

use std::time::Duration;

use super::queue::{deadline, queue_prefix, Held, Ticket};
use crate::{Client, ClientError};

/// How a lock is taken (see [`Client::lock`]).
///
/// ```
/// use std::time::Duration;
/// let options = paxkv_client::LockOptions::new().ttl_ms(5_000).timeout(Duration::from_secs(2));
/// assert_eq!((options.ttl_ms, options.timeout), (5_000, Some(Duration::from_secs(2))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// Time to live of the holder's lease, renewed at a third of it in the background: how
    /// long a holder that died keeps others waiting.
    pub ttl_ms: u64,
    /// How long to wait to join the queue and for the turn (None: as long as it takes).
    pub timeout: Option<Duration>,
}

impl Default for LockOptions {
    fn default() -> LockOptions {
        LockOptions {
            ttl_ms: 10_000,
            timeout: None,
        }
    }
}

impl LockOptions {
    /// A lease of 10 s, and no timeout.
    ///
    /// ```
    /// assert_eq!(paxkv_client::LockOptions::new().ttl_ms, 10_000);
    /// ```
    pub fn new() -> LockOptions {
        LockOptions::default()
    }

    /// The holder's lease time to live.
    ///
    /// ```
    /// assert_eq!(paxkv_client::LockOptions::new().ttl_ms(3_000).ttl_ms, 3_000);
    /// ```
    pub fn ttl_ms(mut self, ttl_ms: u64) -> LockOptions {
        self.ttl_ms = ttl_ms;
        self
    }

    /// Give up waiting after `timeout` ([`ClientError::Timeout`]; nothing is left behind).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = paxkv_client::LockOptions::new().timeout(Duration::from_secs(1));
    /// assert!(options.timeout.is_some());
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> LockOptions {
        self.timeout = Some(timeout);
        self
    }
}

/// A held lock. Dropping it releases the lock in the background; [`LockGuard::unlock`] waits
/// for the release.
pub struct LockGuard {
    ticket: Ticket,
}

impl Client {
    /// Takes the lock `name`, waiting (on a watch of the holder just ahead, not by polling)
    /// until every earlier asker has released it or died. The holder's lease is kept alive in
    /// the background while the guard lives. The guard's [`Held::token`] is the fencing token:
    /// see the `recipes` module and the README for why a holder needs one.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let lock = client.lock(b"jobs/nightly", LockOptions::new().timeout(std::time::Duration::from_secs(5))).await?;
    /// println!("holding with token {}", lock.token());
    /// lock.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, name: &[u8], options: LockOptions) -> Result<LockGuard, ClientError> {
        let deadline = deadline(options.timeout);
        let ticket = Ticket::join_by(self, name, b"", options.ttl_ms, deadline).await?;
        match ticket.wait_turn(&queue_prefix(name), deadline).await {
            Ok(()) => Ok(LockGuard { ticket }),
            Err(error) => {
                let _ = ticket.release().await;
                Err(error)
            }
        }
    }
}

impl LockGuard {
    /// The fencing token (see [`Held::token`]).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// println!("token {}", lock.token());
    /// # Ok(()) }
    /// ```
    pub fn token(&self) -> u64 {
        self.ticket.revision
    }

    /// The holder's key, token and word of a lost lease.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// let held = lock.held();
    /// assert!(!held.is_lost());
    /// # Ok(()) }
    /// ```
    pub fn held(&self) -> Held {
        self.ticket.held()
    }

    /// Releases the lock: its lease is revoked, which deletes the holder's key at once, so
    /// the next in line gets it.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// lock.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn unlock(self) -> Result<(), ClientError> {
        self.ticket.release().await
    }
}
