//! The queue under a lock's or an election's name (see the module above).

use std::time::Duration;

use tokio::sync::watch as signal;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{
    Client, ClientError, Compare, EventKind, KeyValue, PutOptions, ReadConsistency, Txn, TxnOp,
    WatchOptions,
};

/// A contender's place: its key under the name, the lease it lives by, and the task that
/// keeps that lease alive.
pub(crate) struct Ticket {
    pub(crate) client: Client,
    pub(crate) key: Vec<u8>,
    pub(crate) lease_id: u64,
    /// The create revision of the key: the fencing token once it is the contender's turn.
    pub(crate) revision: u64,
    lost: signal::Receiver<bool>,
    keeper: Option<JoinHandle<()>>,
    released: bool,
}

/// Keys of a queue start with the name and this separator.
pub(crate) fn queue_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

impl Ticket {
    /// Joins the queue under `name` with `value`, on a new lease of `ttl_ms`, by `deadline`.
    pub(crate) async fn join_by(
        client: &Client,
        name: &[u8],
        value: &[u8],
        ttl_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<Ticket, ClientError> {
        let join = Ticket::join(client, name, value, ttl_ms);
        let Some(deadline) = deadline else {
            return join.await;
        };
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), join).await {
            Ok(joined) => joined,
            // A lease granted by then runs out by itself.
            Err(_) => Err(ClientError::Timeout(
                "the cluster did not take this contender before the timeout"
                    .to_string()
                    .into(),
            )),
        }
    }

    /// Joins the queue under `name` with `value`, on a new lease of `ttl_ms`.
    async fn join(
        client: &Client,
        name: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<Ticket, ClientError> {
        let lease_id = client.lease_grant(ttl_ms).await?;
        let mut key = queue_prefix(name);
        key.extend_from_slice(format!("{lease_id:016x}").as_bytes());
        // A retried attempt finds its own key: the lease is new, so nobody else writes it.
        let created = client
            .txn(
                Txn::new()
                    .when([Compare::absent(&key)])
                    .and_then([TxnOp::put(&key, value, PutOptions::new().lease(lease_id))])
                    .or_else([TxnOp::get(&key)]),
            )
            .await;
        let created = match created {
            Ok(created) => created,
            Err(error) => {
                let _ = client.lease_revoke(lease_id).await;
                return Err(error);
            }
        };
        let revision = match created.succeeded {
            true => created.revision,
            false => created
                .get(0)
                .map_or(created.revision, |kv| kv.create_revision),
        };
        let (lost_tx, lost) = signal::channel(false);
        let keeper = tokio::spawn(keep_alive(client.clone(), lease_id, ttl_ms, lost_tx));
        Ok(Ticket {
            client: client.clone(),
            key,
            lease_id,
            revision,
            lost,
            keeper: Some(keeper),
            released: false,
        })
    }

    /// Waits until no key created before this one is left under `prefix`, or `deadline`.
    pub(crate) async fn wait_turn(
        &self,
        prefix: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        loop {
            let (keys, revision) = scan_all(&self.client, prefix).await?;
            if !keys.iter().any(|kv| kv.key == self.key) {
                return Err(ClientError::NotFound(
                    "this contender's lease ended before its turn came (it was not kept alive \
                     in time); nothing is held"
                        .to_string()
                        .into(),
                ));
            }
            let Some(ahead) = keys
                .iter()
                .filter(|kv| kv.create_revision < self.revision)
                .max_by_key(|kv| kv.create_revision)
            else {
                return Ok(());
            };
            let wait = wait_for_delete(&self.client, &ahead.key, revision + 1);
            match deadline {
                None => wait.await?,
                Some(deadline) => match tokio::time::timeout(
                    deadline.saturating_duration_since(Instant::now()),
                    wait,
                )
                .await
                {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(ClientError::Timeout(
                            "the lock or leadership was not free before the timeout"
                                .to_string()
                                .into(),
                        ))
                    }
                },
            }
        }
    }

    pub(crate) fn held(&self) -> Held {
        Held {
            key: self.key.clone(),
            token: self.revision,
            lost: self.lost.clone(),
        }
    }

    /// Leaves the queue: revokes the lease, which deletes the key.
    pub(crate) async fn release(mut self) -> Result<(), ClientError> {
        self.released = true;
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
        match self.client.lease_revoke(self.lease_id).await {
            // Gone already (it ran out): nothing is held either way.
            Ok(_) | Err(ClientError::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

impl Drop for Ticket {
    /// Dropped without `release`: stop renewing and revoke in the background (the lease runs
    /// out by itself if that cannot be sent).
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
        if !self.released {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (client, lease_id) = (self.client.clone(), self.lease_id);
                runtime.spawn(async move {
                    let _ = client.lease_revoke(lease_id).await;
                });
            }
        }
    }
}

/// What a holder has: its key, its fencing token, and word of its lease being lost.
#[derive(Debug, Clone)]
pub struct Held {
    key: Vec<u8>,
    token: u64,
    lost: signal::Receiver<bool>,
}

impl Held {
    /// The fencing token: the create revision of the holder's key. It grows from each holder
    /// to the next; whatever the holder writes to should refuse a token lower than the highest
    /// it has seen.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// println!("fencing token {}", lock.held().token());
    /// # Ok(()) }
    /// ```
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The holder's own key.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// println!("{:?}", lock.held().key());
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// A compare that holds only while this holder still holds: put it in a transaction to
    /// write to paxkv only as the holder.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// let txn = Txn::new()
    ///     .when([lock.held().held()])
    ///     .and_then([TxnOp::put(b"jobs/nightly/state", b"done", PutOptions::new())]);
    /// if !client.txn(txn).await?.succeeded {
    ///     println!("the lock was lost before the write");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn held(&self) -> Compare {
        Compare::create_revision(&self.key).eq(self.token)
    }

    /// True once a renewal found the lease gone: the key is gone and someone else may hold.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// assert!(!lock.held().is_lost());
    /// # Ok(()) }
    /// ```
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when a renewal finds the lease gone (it borrows nothing: keep it across awaits).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lock = client.lock(b"jobs/nightly", Default::default()).await?;
    /// tokio::select! {
    ///     _ = lock.held().lost() => println!("lost the lock: stop"),
    ///     _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => println!("work done"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            let _ = lost.wait_for(|lost| *lost).await;
        }
    }
}

/// Renews the lease at a third of its time to live until it is found gone.
async fn keep_alive(client: Client, lease_id: u64, ttl_ms: u64, lost: signal::Sender<bool>) {
    let period = Duration::from_millis((ttl_ms / 3).max(1));
    loop {
        tokio::time::sleep(period).await;
        match client.with_timeout(period).lease_keep_alive(lease_id).await {
            Ok(_) => {}
            Err(ClientError::NotFound(_)) => {
                tracing::warn!(lease_id, "paxkv lease lost: the lock or leadership is gone");
                let _ = lost.send(true);
                return;
            }
            // No answer in time: try again, while the lease has time left.
            Err(_) => {}
        }
    }
}

/// Every key under `prefix`, all pages at one revision, and that revision.
pub(crate) async fn scan_all(
    client: &Client,
    prefix: &[u8],
) -> Result<(Vec<KeyValue>, u64), ClientError> {
    let first = client
        .scan(
            prefix,
            b"",
            crate::SCAN_LIMIT_MAX,
            ReadConsistency::Linearizable,
        )
        .await?;
    let revision = first.revision;
    let mut keys = first.kvs;
    let mut more = first.more;
    while more {
        let after = keys.last().map(|kv| kv.key.clone()).unwrap_or_default();
        let page = client
            .scan_at(prefix, &after, crate::SCAN_LIMIT_MAX, revision)
            .await?;
        keys.extend(page.kvs);
        more = page.more;
    }
    Ok((keys, revision))
}

/// Waits until `key` is deleted (or expires) at `from` or later.
async fn wait_for_delete(client: &Client, key: &[u8], from: u64) -> Result<(), ClientError> {
    let mut watch = client
        .watch(key, WatchOptions::new().from_revision(from))
        .await?;
    loop {
        let batch = watch.next().await?;
        if batch.events.iter().any(|event| {
            matches!(event.kind(), EventKind::Delete | EventKind::Expire)
                && event.kv.as_ref().is_some_and(|kv| kv.key == key)
        }) {
            return Ok(());
        }
    }
}

/// A deadline `timeout` from now, if any.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|timeout| Instant::now() + timeout)
}
