//! Change streams. The node loop publishes what each turn applied to a `Feed` (the changes
//! after the revision it published last, taken from the replica's history); every watch on
//! this node is a task that takes from the feed what its key or prefix matches and sends it
//! on the watcher's connection.
//!
//! A watch starting at an older revision first takes the changes since then from the history
//! (through the node loop), then follows the feed, skipping what it already sent: it
//! subscribes before it asks, so nothing falls between the two. A watcher that reads too
//! slowly lets the feed run past it (the feed keeps `FEED_BATCHES_MAX` batches); it catches up
//! from the history while that still reaches back, else it is cut off with
//! ERROR_CODE_WATCHER_TOO_SLOW: the server's memory never grows with a slow reader.

use std::sync::Arc;
use std::time::Duration;

use paxkv_core::kv::error_response;
use paxkv_proto::client::{
    client_response::Body as Response, ClientResponse, ErrorCode, ResponseHeader, WatchEvent,
    WatchRequest, WatchResponse,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::node::Input;

/// Batches the feed holds for watchers that fall behind (a batch is one node-loop turn).
pub const FEED_BATCHES_MAX: usize = 4096;

/// Events sent in one WatchResponse at most; a larger catch-up goes in several, each ending
/// at a revision boundary.
pub const EVENTS_PER_RESPONSE_MAX: usize = 1000;

/// How long a watch waits for this node to apply the revision it starts after.
pub const WATCH_START_TIMEOUT: Duration = Duration::from_secs(3);

/// What one turn of the node loop applied.
#[derive(Debug, Clone)]
pub enum Batch {
    /// Every change after revision `after` up to revision `to`, oldest first.
    Changes {
        after: u64,
        to: u64,
        events: Vec<WatchEvent>,
    },
    /// The node jumped to revision `to` without the changes in between (it installed a
    /// snapshot): a watch behind it cannot go on here.
    Gap { to: u64 },
}

/// The node loop's side: where it publishes.
#[derive(Clone)]
pub struct Feed {
    batches: broadcast::Sender<Arc<Batch>>,
    revision: watch::Sender<u64>,
}

impl Feed {
    pub fn new(revision: u64) -> Feed {
        Feed {
            batches: broadcast::channel(FEED_BATCHES_MAX).0,
            revision: watch::channel(revision).0,
        }
    }

    /// Every batch published from now on (for keyspace notifications: `resp`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batches.subscribe()
    }

    /// Whether any watch listens.
    pub fn has_watchers(&self) -> bool {
        self.batches.receiver_count() > 0
    }

    /// Publishes a turn's changes (no subscriber is not an error).
    pub fn publish(&self, batch: Batch) {
        let to = match &batch {
            Batch::Changes { to, .. } | Batch::Gap { to } => *to,
        };
        let _ = self.batches.send(Arc::new(batch));
        self.revision.send_replace(to);
    }
}

/// A WatchResponse on the watcher's connection.
fn response(
    request_id: u64,
    revision: u64,
    events: Vec<WatchEvent>,
    progress: bool,
) -> ClientResponse {
    ClientResponse {
        request_id,
        body: Some(Response::Watch(WatchResponse {
            header: Some(ResponseHeader {
                revision,
                ..ResponseHeader::default()
            }),
            events,
            progress,
        })),
    }
}

fn error(request_id: u64, code: ErrorCode, message: String) -> ClientResponse {
    ClientResponse {
        request_id,
        body: Some(error_response(code, message)),
    }
}

/// One watch: runs until its connection closes or it ends with an error answer.
pub async fn run(
    request_id: u64,
    request: WatchRequest,
    feed: Feed,
    inputs: mpsc::Sender<Input>,
    answers: mpsc::Sender<ClientResponse>,
) {
    let matches = |event: &WatchEvent| {
        let key = event.kv.as_ref().map_or(&[][..], |kv| &kv.key[..]);
        if request.prefix {
            key.starts_with(&request.key)
        } else {
            key == request.key
        }
    };
    let strip = |mut event: WatchEvent| {
        if !request.prev_kv {
            event.prev_kv = None;
        }
        event
    };
    let mut batches = feed.batches.subscribe();
    let mut revision = feed.revision.subscribe();
    // The revision the stream has delivered everything up to.
    let late = paxkv_core::planted::active(paxkv_core::planted::Bug::WatchResumedLate);
    let mut sent = match request.start_revision {
        0 => *revision.borrow(),
        start if late => start,
        start => start - 1,
    };
    let reached = tokio::time::timeout(WATCH_START_TIMEOUT, revision.wait_for(|now| *now >= sent))
        .await
        .is_ok_and(|waited| waited.is_ok());
    if !reached {
        let message = format!(
            "this node has not applied revision {sent} within {WATCH_START_TIMEOUT:?}; watch through another"
        );
        let _ = answers
            .send(error(request_id, ErrorCode::Timeout, message))
            .await;
        return;
    }
    // What happened since `sent`, from the history.
    if !catch_up(
        request_id, &mut sent, false, &inputs, &answers, &matches, &strip,
    )
    .await
    {
        return;
    }
    // The stream's start: how far it has delivered (a watch from now learns its revision).
    if answers
        .send(response(request_id, sent, Vec::new(), true))
        .await
        .is_err()
    {
        return;
    }
    let progress_every = match request.progress_interval_ms {
        0 => None,
        ms => Some(Duration::from_millis(u64::from(ms))),
    };
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let progress_due = progress_every.map(|every| quiet_since + every);
        let next = tokio::select! {
            biased;
            batch = batches.recv() => batch,
            () = sleep_until(progress_due) => {
                if answers.send(response(request_id, sent, Vec::new(), true)).await.is_err() {
                    return;
                }
                quiet_since = tokio::time::Instant::now();
                continue;
            }
            () = answers.closed() => return,
            // The node loop stopped (shutdown, removal, a failed disk): this node serves no more.
            () = inputs.closed() => {
                let message = "the node stopped; watch through another".to_string();
                let _ = answers.send(error(request_id, ErrorCode::NoQuorum, message)).await;
                return;
            }
        };
        match next {
            Ok(batch) => match &*batch {
                Batch::Changes { to, events, .. } => {
                    if *to <= sent {
                        continue;
                    }
                    let fresh: Vec<WatchEvent> = events
                        .iter()
                        .filter(|event| event.revision > sent && matches(event))
                        .cloned()
                        .map(&strip)
                        .collect();
                    sent = *to;
                    if !fresh.is_empty() {
                        if answers
                            .send(response(request_id, sent, fresh, false))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        quiet_since = tokio::time::Instant::now();
                    }
                }
                Batch::Gap { to } => {
                    let message = format!(
                        "this node skipped from revision {sent} to {to} (it installed a \
                         snapshot): watch again from revision {} through another node",
                        sent + 1
                    );
                    let _ = answers
                        .send(error(request_id, ErrorCode::Compacted, message))
                        .await;
                    return;
                }
            },
            // Fell behind the feed: the history may still have what was missed.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if !catch_up(
                    request_id, &mut sent, true, &inputs, &answers, &matches, &strip,
                )
                .await
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends what the history holds after `sent` (in responses ending at revision boundaries) and
/// moves `sent` to the revision it reached; false if the stream ended (an error was sent, or
/// the connection closed). `lagged`: the watcher fell behind the feed (a history that no
/// longer reaches back then means it was too slow).
async fn catch_up(
    request_id: u64,
    sent: &mut u64,
    lagged: bool,
    inputs: &mpsc::Sender<Input>,
    answers: &mpsc::Sender<ClientResponse>,
    matches: &impl Fn(&WatchEvent) -> bool,
    strip: &impl Fn(WatchEvent) -> WatchEvent,
) -> bool {
    let (reply, answer) = oneshot::channel();
    let asked = Input::WatchHistory {
        after: *sent,
        reply,
    };
    if inputs.send(asked).await.is_err() {
        return false;
    }
    let Ok(history) = answer.await else {
        return false;
    };
    let (events, revision) = match history {
        Ok(found) => found,
        Err(first) => {
            let next = *sent + 1;
            let (code, message) = if lagged {
                (
                    ErrorCode::WatcherTooSlow,
                    format!(
                        "the watcher read too slowly: it was sent every change up to revision \
                         {sent} and this node's history now starts at revision {first}; watch \
                         again from revision {next} through another node, or read the keys \
                         again and watch from now",
                        sent = *sent
                    ),
                )
            } else {
                (
                    ErrorCode::Compacted,
                    format!(
                        "revision {next} is older than this node's history, which starts after \
                         revision {first}: read the keys again and watch from a newer revision, \
                         or watch through another node"
                    ),
                )
            };
            let _ = answers.send(error(request_id, code, message)).await;
            return false;
        }
    };
    let mut chunk = Vec::new();
    let mut matching = events
        .into_iter()
        .filter(|event| matches(event))
        .map(strip)
        .peekable();
    while let Some(event) = matching.next() {
        let at = event.revision;
        chunk.push(event);
        let boundary = matching.peek().is_none_or(|next| next.revision != at);
        if boundary && chunk.len() >= EVENTS_PER_RESPONSE_MAX {
            let events = std::mem::take(&mut chunk);
            if answers
                .send(response(request_id, at, events, false))
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    if !chunk.is_empty()
        && answers
            .send(response(request_id, revision, chunk, false))
            .await
            .is_err()
    {
        return false;
    }
    *sent = (*sent).max(revision);
    true
}
