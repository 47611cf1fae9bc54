//! The stores under test. Every workload calls these few operations, so paxkv and etcd see the
//! same load through the same code; only the last step (the client library call) differs.

use std::time::Duration;

#[cfg(feature = "etcd")]
use anyhow::Context;
use anyhow::{anyhow, bail};
use paxkv_client::{
    Client, ClientConfig, Compare, EventKind, PutOptions, ReadConsistency, Role, Txn, TxnOp,
    WatchOptions,
};

/// Which store to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Paxkv,
    /// etcd v3 (needs a kv-bench built with `--features etcd`).
    Etcd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Paxkv => "paxkv",
            Kind::Etcd => "etcd",
        }
    }
}

/// One connection (client) to the cluster; workers share them round-robin.
#[derive(Clone)]
pub enum Conn {
    Paxkv(Client),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd_client::Client>),
}

/// A lease a worker holds, with what it needs to keep it alive.
pub enum Lease {
    Paxkv(u64),
    #[cfg(feature = "etcd")]
    Etcd {
        id: i64,
        keeper: Box<etcd_client::LeaseKeeper>,
        answers: Box<etcd_client::LeaseKeepAliveStream>,
    },
}

/// A change stream on a prefix.
pub enum WatchStream {
    Paxkv(Box<paxkv_client::Watch>),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd_client::WatchStream>),
}

impl WatchStream {
    /// The values of the next puts delivered (empty for a progress notice).
    pub async fn next_values(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            WatchStream::Paxkv(watch) => Ok(watch
                .next()
                .await?
                .events
                .into_iter()
                .filter(|event| event.kind() == EventKind::Put)
                .filter_map(|event| event.kv.map(|kv| kv.value))
                .collect()),
            #[cfg(feature = "etcd")]
            WatchStream::Etcd(stream) => {
                let Some(answer) = stream.message().await? else {
                    bail!("etcd closed the watch stream");
                };
                Ok(answer
                    .events()
                    .iter()
                    .filter(|event| event.event_type() == etcd_client::EventType::Put)
                    .filter_map(|event| event.kv().map(|kv| kv.value().to_vec()))
                    .collect())
            }
        }
    }
}

/// Opens `count` independent connections to the cluster at `endpoints`.
pub async fn connect(
    kind: Kind,
    endpoints: &[String],
    secret: Option<Vec<u8>>,
    timeout: Duration,
    count: usize,
) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        conns.push(match kind {
            Kind::Paxkv => {
                let mut config = ClientConfig::new(endpoints.to_vec());
                config.secret = secret.clone();
                config.timeout = timeout;
                Conn::Paxkv(Client::new(config)?)
            }
            Kind::Etcd => connect_etcd(endpoints, timeout).await?,
        });
    }
    Ok(conns)
}

#[cfg(feature = "etcd")]
async fn connect_etcd(endpoints: &[String], timeout: Duration) -> anyhow::Result<Conn> {
    let urls: Vec<String> = endpoints
        .iter()
        .map(|endpoint| {
            if endpoint.contains("://") {
                endpoint.clone()
            } else {
                format!("http://{endpoint}")
            }
        })
        .collect();
    let options = etcd_client::ConnectOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(Duration::from_secs(5));
    let client = etcd_client::Client::connect(&urls, Some(options))
        .await
        .with_context(|| format!("connecting to etcd at {}", urls.join(",")))?;
    Ok(Conn::Etcd(Box::new(client)))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(_endpoints: &[String], _timeout: Duration) -> anyhow::Result<Conn> {
    bail!("this kv-bench was built without etcd support: rebuild with `cargo build --release -p paxkv-bench --features etcd` (needs protoc)")
}

impl Conn {
    /// Writes `key`; with a TTL the key disappears by itself (etcd has no per-key TTL, so there
    /// a put with a TTL is a lease grant followed by a put under that lease, as etcd users do).
    pub async fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> anyhow::Result<()> {
        match self {
            Conn::Paxkv(client) => {
                // Nothing here reads the old value, and etcd's puts leave it out unless asked
                // (prev_kv): neither store sends it.
                let options = PutOptions::new().without_previous();
                let options = match ttl {
                    Some(ttl) => options.ttl_ms(ttl.as_millis() as u64),
                    None => options,
                };
                client.put(key, value, options).await?;
            }
            #[cfg(feature = "etcd")]
            Conn::Etcd(client) => {
                let options = match ttl {
                    Some(ttl) => {
                        let lease = client.lease_grant(etcd_seconds(ttl), None).await?;
                        Some(etcd_client::PutOptions::new().with_lease(lease.id()))
                    }
                    None => None,
                };
                client.put(key, value, options).await?;
            }
        }
        Ok(())
    }

    /// Reads `key`; returns whether it exists. `stale` allows any node's local copy.
    pub async fn get(&mut self, key: &[u8], stale: bool) -> anyhow::Result<bool> {
        match self {
            Conn::Paxkv(client) => {
                let consistency = if stale {
                    ReadConsistency::Stale
                } else {
                    ReadConsistency::Linearizable
                };
                Ok(client.get(key, consistency).await?.kv.is_some())
            }
            #[cfg(feature = "etcd")]
            Conn::Etcd(client) => {
                let options = stale.then(|| etcd_client::GetOptions::new().with_serializable());
                Ok(!client.get(key, options).await?.kvs().is_empty())
            }
        }
    }

    /// A transaction on two keys: if `first` holds `value`, put `value` under both; else read
    /// `first`. Returns whether the compare held.
    pub async fn txn_pair(
        &mut self,
        first: &[u8],
        second: &[u8],
        value: &[u8],
    ) -> anyhow::Result<bool> {
        match self {
            Conn::Paxkv(client) => {
                let txn = Txn::new()
                    .when([Compare::value(first).eq(value)])
                    .and_then([
                        TxnOp::put(first, value, PutOptions::new()),
                        TxnOp::put(second, value, PutOptions::new()),
                    ])
                    .or_else([TxnOp::get(first)]);
                Ok(client.txn(txn).await?.succeeded)
            }
            #[cfg(feature = "etcd")]
            Conn::Etcd(client) => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                let txn = Txn::new()
                    .when([Compare::value(first, CompareOp::Equal, value)])
                    .and_then([
                        TxnOp::put(first, value, None),
                        TxnOp::put(second, value, None),
                    ])
                    .or_else([TxnOp::get(first, None)]);
                Ok(client.txn(txn).await?.succeeded())
            }
        }
    }

    /// Watches every key under `prefix`, from now.
    pub async fn watch_prefix(&mut self, prefix: &[u8]) -> anyhow::Result<WatchStream> {
        match self {
            Conn::Paxkv(client) => {
                let watch = client.watch(prefix, WatchOptions::new().prefix()).await?;
                Ok(WatchStream::Paxkv(Box::new(watch)))
            }
            #[cfg(feature = "etcd")]
            Conn::Etcd(client) => {
                let options = etcd_client::WatchOptions::new().with_prefix();
                let stream = client.watch(prefix, Some(options)).await?;
                Ok(WatchStream::Etcd(Box::new(stream)))
            }
        }
    }

    /// Grants a lease of `ttl` and attaches `key` to it.
    pub async fn lease_with_key(
        &mut self,
        ttl: Duration,
        key: &[u8],
        value: &[u8],
    ) -> anyhow::Result<Lease> {
        match self {
            Conn::Paxkv(client) => {
                let id = client.lease_grant(ttl.as_millis() as u64).await?;
                let options = PutOptions::new().lease(id).without_previous();
                client.put(key, value, options).await?;
                Ok(Lease::Paxkv(id))
            }
            #[cfg(feature = "etcd")]
            Conn::Etcd(client) => {
                let id = client.lease_grant(etcd_seconds(ttl), None).await?.id();
                let options = etcd_client::PutOptions::new().with_lease(id);
                client.put(key, value, Some(options)).await?;
                let (keeper, answers) = client.lease_keep_alive(id).await?;
                Ok(Lease::Etcd {
                    id,
                    keeper: Box::new(keeper),
                    answers: Box::new(answers),
                })
            }
        }
    }

    /// Renews `lease` and waits for the answer.
    pub async fn keep_alive(&mut self, lease: &mut Lease) -> anyhow::Result<()> {
        match (self, lease) {
            (Conn::Paxkv(client), Lease::Paxkv(id)) => {
                client.lease_keep_alive(*id).await?;
                Ok(())
            }
            #[cfg(feature = "etcd")]
            (
                Conn::Etcd(_),
                Lease::Etcd {
                    keeper, answers, ..
                },
            ) => {
                keeper.keep_alive().await?;
                match answers.message().await? {
                    Some(answer) if answer.ttl() > 0 => Ok(()),
                    Some(_) => bail!("etcd says the lease expired"),
                    None => bail!("etcd closed the keep-alive stream"),
                }
            }
            #[cfg(feature = "etcd")]
            _ => bail!("a lease of one store used with another"),
        }
    }

    /// Revokes `lease` (and so deletes its keys).
    pub async fn revoke(&mut self, lease: Lease) -> anyhow::Result<()> {
        match (self, lease) {
            (Conn::Paxkv(client), Lease::Paxkv(id)) => {
                client.lease_revoke(id).await?;
            }
            #[cfg(feature = "etcd")]
            (Conn::Etcd(client), Lease::Etcd { id, .. }) => {
                client.lease_revoke(id).await?;
            }
            #[cfg(feature = "etcd")]
            _ => bail!("a lease of one store used with another"),
        }
        Ok(())
    }

    /// Whether the one node this connection talks to has caught up: it follows a leader (or is
    /// one) and has applied every entry it knows to be committed. A restarted node can answer a
    /// local read while it is still applying its log (between slices of it), before this.
    pub async fn caught_up(&mut self) -> anyhow::Result<bool> {
        match self {
            Conn::Paxkv(client) => {
                let (_, status) = client
                    .status_all()
                    .await
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("no endpoint to ask"))?;
                let status = status?;
                Ok(status.leader_id != 0 && status.applied_index >= status.commit_index)
            }
            #[cfg(feature = "etcd")]
            Conn::Etcd(client) => {
                let status = client.status().await?;
                Ok(status.leader() != 0 && status.raft_applied_index() >= status.raft_index())
            }
        }
    }

    /// The client endpoint of the current leader, as it appears in `endpoints`.
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub async fn leader_endpoint(&mut self, endpoints: &[String]) -> anyhow::Result<String> {
        match self {
            Conn::Paxkv(client) => {
                for (endpoint, status) in client.status_all().await {
                    if let Ok(status) = status {
                        if status.role == Role::Leader as i32 {
                            return Ok(endpoint);
                        }
                    }
                }
                Err(anyhow!("no paxkv node says it is the leader"))
            }
            #[cfg(feature = "etcd")]
            Conn::Etcd(_) => {
                for endpoint in endpoints {
                    let Ok(Conn::Etcd(mut one)) =
                        connect_etcd(std::slice::from_ref(endpoint), Duration::from_secs(2)).await
                    else {
                        continue;
                    };
                    if let Ok(status) = one.status().await {
                        let member = status.header().map(|header| header.member_id());
                        if member == Some(status.leader()) {
                            return Ok(endpoint.clone());
                        }
                    }
                }
                Err(anyhow!("no etcd member says it is the leader"))
            }
        }
    }
}

/// etcd counts lease TTLs in whole seconds.
#[cfg(feature = "etcd")]
fn etcd_seconds(ttl: Duration) -> i64 {
    ttl.as_secs().max(1) as i64
}
