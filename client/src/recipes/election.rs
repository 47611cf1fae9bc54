//! Leader election: contenders campaign, one leads at a time (the earliest still alive), the
//! leader can proclaim a new value and resign, and anyone can observe who leads.

use std::collections::BTreeMap;

use super::queue::{deadline, queue_prefix, scan_all, Held, Ticket};
use super::LockOptions;
use crate::{
    Client, ClientError, EventKind, KeyValue, PutOptions, Txn, TxnOp, Watch, WatchOptions,
};

/// An election by name (see [`Client::election`]).
#[derive(Clone)]
pub struct Election {
    client: Client,
    name: Vec<u8>,
}

/// Leadership won by [`Election::campaign`]. Dropping it resigns in the background.
pub struct Leadership {
    ticket: Ticket,
}

/// Who leads, as it changes (see [`Election::observe`]).
pub struct Observer {
    watch: Watch,
    /// Every contender's key, as the stream says.
    keys: BTreeMap<Vec<u8>, KeyValue>,
    /// The leader last returned: key and mod revision (None: nobody, or nothing returned).
    last: Option<Option<(Vec<u8>, u64)>>,
}

impl Client {
    /// The election `name`: the same queue as a lock of that name, with values.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let election = client.election(b"service/leader");
    /// # let _ = election;
    /// # Ok(()) }
    /// ```
    pub fn election(&self, name: &[u8]) -> Election {
        Election {
            client: self.clone(),
            name: name.to_vec(),
        }
    }
}

/// The leader among contender keys: the earliest created.
fn leader_of<'a>(keys: impl IntoIterator<Item = &'a KeyValue>) -> Option<&'a KeyValue> {
    keys.into_iter().min_by_key(|kv| kv.create_revision)
}

impl Election {
    /// Campaigns with `value` (what observers see, say an address), waiting until every
    /// earlier contender has resigned or died; `options` as for a lock.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let election = client.election(b"service/leader");
    /// let leadership = election.campaign(b"10.0.0.7:8080", Default::default()).await?;
    /// println!("leading with token {}", leadership.held().token());
    /// # Ok(()) }
    /// ```
    pub async fn campaign(
        &self,
        value: &[u8],
        options: LockOptions,
    ) -> Result<Leadership, ClientError> {
        let deadline = deadline(options.timeout);
        let ticket =
            Ticket::join_by(&self.client, &self.name, value, options.ttl_ms, deadline).await?;
        match ticket.wait_turn(&queue_prefix(&self.name), deadline).await {
            Ok(()) => Ok(Leadership { ticket }),
            Err(error) => {
                let _ = ticket.release().await;
                Err(error)
            }
        }
    }

    /// The leader now (its key and value), if any.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// if let Some(leader) = client.election(b"service/leader").leader().await? {
    ///     println!("led by {:?}", leader.value);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn leader(&self) -> Result<Option<KeyValue>, ClientError> {
        let (keys, _) = scan_all(&self.client, &queue_prefix(&self.name)).await?;
        Ok(leader_of(&keys).cloned())
    }

    /// Follows the leader: [`Observer::next`] returns the leader now, then each change of
    /// leader or of its value.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let mut observer = client.election(b"service/leader").observe().await?;
    /// while let Ok(leader) = observer.next().await {
    ///     println!("leader now: {:?}", leader.map(|kv| kv.value));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn observe(&self) -> Result<Observer, ClientError> {
        let prefix = queue_prefix(&self.name);
        let (keys, revision) = scan_all(&self.client, &prefix).await?;
        let watch = self
            .client
            .watch(
                &prefix,
                WatchOptions::new().prefix().from_revision(revision + 1),
            )
            .await?;
        Ok(Observer {
            watch,
            keys: keys.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
            last: None,
        })
    }
}

impl Observer {
    /// The leader when it differs from the one last returned (the first call: the leader
    /// now); None while nobody leads.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let mut observer = client.election(b"service/leader").observe().await?;
    /// let now = observer.next().await?;
    /// # let _ = now;
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Result<Option<KeyValue>, ClientError> {
        loop {
            let leader = leader_of(self.keys.values()).cloned();
            let shown = leader.as_ref().map(|kv| (kv.key.clone(), kv.mod_revision));
            if self.last.as_ref() != Some(&shown) {
                self.last = Some(shown);
                return Ok(leader);
            }
            let batch = self.watch.next().await?;
            for event in batch.events {
                let Some(kv) = event.kv.clone() else { continue };
                match event.kind() {
                    EventKind::Put => {
                        self.keys.insert(kv.key.clone(), kv);
                    }
                    EventKind::Delete | EventKind::Expire => {
                        self.keys.remove(&kv.key);
                    }
                }
            }
        }
    }
}

impl Leadership {
    /// The leader's key, fencing token and word of a lost lease.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let leadership = client.election(b"service/leader").campaign(b"me", Default::default()).await?;
    /// println!("token {}", leadership.held().token());
    /// # Ok(()) }
    /// ```
    pub fn held(&self) -> Held {
        self.ticket.held()
    }

    /// Changes the value observers see, only while still leading; false if leadership was
    /// lost.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let leadership = client.election(b"service/leader").campaign(b"10.0.0.7:8080", Default::default()).await?;
    /// leadership.proclaim(b"10.0.0.7:9090").await?;
    /// # Ok(()) }
    /// ```
    pub async fn proclaim(&self, value: &[u8]) -> Result<bool, ClientError> {
        let held = self.ticket.held();
        let txn = Txn::new().when([held.held()]).and_then([TxnOp::put(
            &self.ticket.key,
            value,
            PutOptions::new().lease(self.ticket.lease_id),
        )]);
        Ok(self.ticket.client.txn(txn).await?.succeeded)
    }

    /// Gives up leadership: the next contender leads at once.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let leadership = client.election(b"service/leader").campaign(b"me", Default::default()).await?;
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub async fn resign(self) -> Result<(), ClientError> {
        self.ticket.release().await
    }
}
