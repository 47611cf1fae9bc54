//! Change streams: [`Client::watch`] follows every change of a key or of the keys under a
//! prefix. The stream survives the node it reads from: when the connection breaks or the node
//! stops, it goes on through another node from the revision after the last one delivered, so
//! no change is missed and none comes twice (every response says up to which revision it has
//! delivered everything; the stream always starts with one).

use std::time::Duration;

use paxkv_proto::client::{
    client_request::Body as Request, client_response::Body as Response, ErrorCode, WatchRequest,
};
pub use paxkv_proto::client::{EventKind, WatchEvent};
use tokio::time::Instant;

use crate::connection::until;
use crate::watch_hub::{unsequenced, Subscription};

use crate::{Client, ClientError, ErrorDetail};

/// What to watch besides the key (see [`Client::watch`]).
///
/// ```
/// let options = paxkv_client::WatchOptions::new().prefix().prev_kv().from_revision(42);
/// assert!(options.prefix && options.prev_kv);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// The key is a prefix: every key under it.
    pub prefix: bool,
    /// The first revision to deliver (0: the changes after now).
    pub start_revision: u64,
    /// Each event also carries the key as it was before.
    pub prev_kv: bool,
    /// With no change for this long, a batch without events says how far the stream got.
    pub progress_interval: Option<Duration>,
}

impl WatchOptions {
    /// A watch of one key, from now, without previous values or progress notices.
    ///
    /// ```
    /// assert_eq!(paxkv_client::WatchOptions::new().start_revision, 0);
    /// ```
    pub fn new() -> WatchOptions {
        WatchOptions::default()
    }

    /// Watch every key under the key given, as a prefix.
    ///
    /// ```
    /// assert!(paxkv_client::WatchOptions::new().prefix().prefix);
    /// ```
    pub fn prefix(mut self) -> WatchOptions {
        self.prefix = true;
        self
    }

    /// Deliver the changes from `revision` on (it must still be in a node's history).
    ///
    /// ```
    /// assert_eq!(paxkv_client::WatchOptions::new().from_revision(7).start_revision, 7);
    /// ```
    pub fn from_revision(mut self, revision: u64) -> WatchOptions {
        self.start_revision = revision;
        self
    }

    /// Each event carries the key as it was before the change.
    ///
    /// ```
    /// assert!(paxkv_client::WatchOptions::new().prev_kv().prev_kv);
    /// ```
    pub fn prev_kv(mut self) -> WatchOptions {
        self.prev_kv = true;
        self
    }

    /// A progress notice after `interval` without changes.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = paxkv_client::WatchOptions::new().progress(Duration::from_secs(1));
    /// assert_eq!(options.progress_interval, Some(Duration::from_secs(1)));
    /// ```
    pub fn progress(mut self, interval: Duration) -> WatchOptions {
        self.progress_interval = Some(interval);
        self
    }
}

/// What one read of a stream gives: the changes of whole revisions (or none, for a progress
/// notice), and the revision up to which the stream has delivered every change.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    pub revision: u64,
    pub events: Vec<WatchEvent>,
    /// A progress notice (no change since the last batch), or the stream's start.
    pub progress: bool,
}

/// A change stream (see [`Client::watch`]).
pub struct Watch {
    client: Client,
    key: Vec<u8>,
    options: WatchOptions,
    /// The revision up to which every change was delivered (None before the first answer of a
    /// watch from now).
    delivered: Option<u64>,
    /// The stream on the node it reads from now (see `watch_hub`).
    stream: Option<Subscription>,
    /// The endpoint the stream reads from now.
    endpoint: String,
    /// When `next` last returned a batch.
    returned_at: Instant,
}

impl Client {
    /// Follows every change of `key` (or, with [`WatchOptions::prefix`], of the keys under it):
    /// puts, deletes, expiry and lease revokes, each at its revision, in revision order, every
    /// change of a revision in one batch. Any node serves it, from what it has applied (so
    /// committed changes only), and the stream moves to another node by itself, without a gap
    /// or a repeat. Fails with [`ClientError::Compacted`] if the start revision is older than
    /// every node's history.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::{EventKind, WatchOptions};
    /// let mut watch = client.watch(b"config/", WatchOptions::new().prefix()).await?;
    /// loop {
    ///     let batch = watch.next().await?;
    ///     for event in &batch.events {
    ///         let key = &event.kv.as_ref().expect("every event names its key").key;
    ///         match event.kind() {
    ///             EventKind::Put => println!("{key:?} written at {}", event.revision),
    ///             EventKind::Delete | EventKind::Expire => println!("{key:?} gone"),
    ///         }
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn watch(&self, key: &[u8], options: WatchOptions) -> Result<Watch, ClientError> {
        let mut watch = Watch {
            client: self.clone(),
            key: key.to_vec(),
            delivered: options.start_revision.checked_sub(1),
            options,
            stream: None,
            endpoint: String::new(),
            returned_at: Instant::now(),
        };
        watch.connect().await?;
        Ok(watch)
    }
}

impl Watch {
    /// The next batch: changes of one or more whole revisions, or a progress notice. Waits as
    /// long as it takes (a watch has no timeout); moves to another node when the one it reads
    /// from fails, within the client's timeout.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let mut watch = client.watch(b"leader", Default::default()).await?;
    /// let batch = watch.next().await?;
    /// println!("{} changes up to revision {}", batch.events.len(), batch.revision);
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Result<WatchBatch, ClientError> {
        loop {
            if self.stream.is_none() {
                self.connect().await?;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            // A node that goes silent closes the connection's queues (see `watch_hub`).
            let body = match stream.answers.recv().await {
                Some(answer) => answer.body,
                None => {
                    tracing::debug!(endpoint = %self.endpoint,
                        "paxkv watch's connection closed or went silent, or it fell behind; resuming");
                    self.stream = None;
                    continue;
                }
            };
            match body {
                Some(Response::Watch(watch)) => {
                    let revision = watch.header.map_or(0, |header| header.revision);
                    // A node that is behind may repeat what another already delivered.
                    let delivered = self.delivered.unwrap_or(0);
                    let events: Vec<WatchEvent> = watch
                        .events
                        .into_iter()
                        .filter(|event| self.delivered.is_none() || event.revision > delivered)
                        .collect();
                    self.delivered = Some(self.delivered.map_or(revision, |d| d.max(revision)));
                    // Heartbeats go to the caller only as often as it asked for progress.
                    let progress_due = self
                        .options
                        .progress_interval
                        .is_some_and(|interval| self.returned_at.elapsed() >= interval);
                    if events.is_empty() && !progress_due {
                        continue;
                    }
                    self.returned_at = Instant::now();
                    return Ok(WatchBatch {
                        revision: self.delivered.unwrap_or(revision),
                        events,
                        progress: watch.progress,
                    });
                }
                Some(Response::Error(error)) => {
                    let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Unspecified);
                    let detail = ErrorDetail::from_node(code, error.message);
                    match code {
                        ErrorCode::Compacted | ErrorCode::WatcherTooSlow => {
                            self.stream = None;
                            return Err(ClientError::Compacted(detail));
                        }
                        ErrorCode::BadRequest
                        | ErrorCode::KeyTooLarge
                        | ErrorCode::FrameTooLarge => {
                            self.stream = None;
                            return Err(ClientError::InvalidArgument(detail));
                        }
                        // A node behind or shutting down: another one.
                        _ => {
                            tracing::debug!(endpoint = %self.endpoint, message = %detail.message,
                                "paxkv watch moving to another node");
                            self.stream = None;
                        }
                    }
                }
                other => {
                    self.stream = None;
                    return Err(ClientError::Server(
                        format!("unexpected answer to a watch: {other:?}").into(),
                    ));
                }
            }
        }
    }

    /// The revision up to which every change was delivered (None before the first batch of a
    /// watch from now): where a new watch would resume.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let mut watch = client.watch(b"k", Default::default()).await?;
    /// watch.next().await?;
    /// println!("delivered up to {:?}", watch.delivered());
    /// # Ok(()) }
    /// ```
    pub fn delivered(&self) -> Option<u64> {
        self.delivered
    }

    /// Opens the stream on the next endpoint that takes it, from the revision after the last
    /// one delivered, trying each in turn until the client's timeout.
    async fn connect(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.client.timeout();
        let mut problems = Vec::new();
        while Instant::now() < deadline {
            let endpoint = self.client.next_endpoint(false);
            let start = self.delivered.map_or(0, |delivered| delivered + 1);
            let opened = open(
                &self.client,
                &self.key,
                &self.options,
                start,
                &endpoint,
                deadline,
            );
            match opened.await {
                Ok(stream) => {
                    self.stream = Some(stream);
                    self.endpoint = endpoint;
                    return Ok(());
                }
                Err(problem) => {
                    problems.push(format!("{endpoint}: {problem}"));
                    tokio::time::sleep(until(deadline).min(Duration::from_millis(50))).await;
                }
            }
        }
        Err(ClientError::Unavailable(
            format!("no node took the watch: {}", problems.join("; ")).into(),
        ))
    }
}

/// Opens a stream on `endpoint` from revision `start` (0: from now), on the client's shared
/// watch connection to that node.
async fn open(
    client: &Client,
    key: &[u8],
    options: &WatchOptions,
    start: u64,
    endpoint: &str,
    deadline: Instant,
) -> Result<Subscription, String> {
    let hub = client
        .inner
        .watch_hubs
        .get(client, endpoint, deadline)
        .await
        .map_err(|error| error.to_string())?;
    let request = unsequenced(Request::Watch(WatchRequest {
        key: key.to_vec(),
        prefix: options.prefix,
        start_revision: start,
        prev_kv: options.prev_kv,
        // 0: none; the connection's own pulse tells a silent node (see `watch_hub`).
        progress_interval_ms: options.progress_interval.map_or(0, |interval| {
            interval.as_millis().clamp(1, u128::from(u32::MAX)) as u32
        }),
    }));
    hub.subscribe(request)
        .ok_or_else(|| "the connection to the node closed".to_string())
}
