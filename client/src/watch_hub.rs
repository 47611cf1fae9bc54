//! One connection per node for all of a client's watches. Each watch is a request id on it;
//! a reader task hands every answer to the watch it belongs to. A watch that stops reading is
//! not allowed to hold up the others: when its queue is full, the hub drops it (and tells the
//! node to stop it), and the watch opens itself again from the revision after the last one it
//! delivered, as after any broken connection, so nothing is lost or repeated.
//!
//! A node that stops answering without closing the connection (a frozen process) must show:
//! each hub keeps one watch of its own, on a key nobody writes, that asks for a progress notice
//! every `PULSE`; when nothing at all has come for `SILENCE_MAX`, the hub closes and every
//! watch on it resumes through another node. The watches themselves ask for no heartbeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paxkv_proto::client::{
    client_request::Body as Request, ClientRequest, ClientResponse, WatchCancelRequest,
    WatchRequest,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::connection::{open_halves, write_request, ConnectError};
use crate::Client;

/// Answers queued for one watch at most before the hub drops it (it then resumes).
pub(crate) const WATCH_QUEUE_MAX: usize = 256;

/// How often the hub's own watch asks the node for a progress notice.
const PULSE: Duration = Duration::from_secs(1);

/// Nothing from the node for this long: it is taken for gone, and the hub closes.
const SILENCE_MAX: Duration = Duration::from_secs(3);

/// The key of the hub's own watch: nothing is expected to write it (it starts with a NUL and
/// names itself), and what would is drained and ignored like the notices.
const PULSE_KEY: &[u8] = b"\0paxkv-watch-connection-pulse";

/// The watches' connection to one node.
pub(crate) struct Hub {
    /// Requests to send (watch starts and cancels), written by the writer task in order.
    outgoing: mpsc::UnboundedSender<ClientRequest>,
    routes: Mutex<HashMap<u64, mpsc::Sender<ClientResponse>>>,
    next_id: AtomicU64,
    open: AtomicBool,
    /// When the node last sent anything.
    heard_at: Mutex<Instant>,
    /// The reader and writer tasks, stopped when the node goes silent.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// A watch's place on a hub: its request id and its answers. Dropping it stops the watch on
/// the node.
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    pub(crate) answers: mpsc::Receiver<ClientResponse>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.cancel(self.id);
    }
}

impl Hub {
    async fn open(
        client: &Client,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<Arc<Hub>, ConnectError> {
        let (mut reader, mut writer) =
            open_halves(endpoint, client.inner.secret.as_ref(), deadline).await?;
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<ClientRequest>();
        let hub = Arc::new(Hub {
            outgoing,
            routes: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            open: AtomicBool::new(true),
            heard_at: Mutex::new(Instant::now()),
            tasks: Mutex::new(Vec::new()),
        });
        let writing = hub.clone();
        let writer_task = tokio::spawn(async move {
            while let Some(request) = to_send.recv().await {
                if write_request(&mut writer, &request).await.is_err() {
                    break;
                }
            }
            writing.close();
        });
        let reading = hub.clone();
        let reader_task = tokio::spawn(async move {
            while let Ok(answer) = reader.read::<ClientResponse>().await {
                *reading.heard_at.lock().expect("not poisoned") = Instant::now();
                let route = reading
                    .routes
                    .lock()
                    .expect("not poisoned")
                    .get(&answer.request_id)
                    .cloned();
                let Some(route) = route else { continue };
                let id = answer.request_id;
                if route.try_send(answer).is_err() {
                    // Full (the watch does not keep up) or gone: it resumes by itself.
                    reading.cancel(id);
                }
            }
            reading.close();
        });
        hub.tasks
            .lock()
            .expect("not poisoned")
            .extend([writer_task.abort_handle(), reader_task.abort_handle()]);
        hub.start_pulse();
        Ok(hub)
    }

    /// Keeps the node talking (the hub's own watch, progress notices only) and closes the hub
    /// when it falls silent.
    fn start_pulse(self: &Arc<Hub>) {
        let pulse = self.subscribe(unsequenced(Request::Watch(WatchRequest {
            key: PULSE_KEY.to_vec(),
            progress_interval_ms: PULSE.as_millis() as u32,
            ..Default::default()
        })));
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(mut pulse) = pulse else { return };
            loop {
                // Drain the notices; look at the clock at least every pulse. A closed queue:
                // the hub closed (or dropped this watch), so there is nothing left to watch.
                if let Ok(None) = tokio::time::timeout(PULSE, pulse.answers.recv()).await {
                    return;
                }
                let Some(hub) = hub.upgrade() else { return };
                if !hub.is_open() {
                    return;
                }
                let heard_at = *hub.heard_at.lock().expect("not poisoned");
                if heard_at.elapsed() >= SILENCE_MAX {
                    tracing::debug!("paxkv watch connection's node went silent; closing it");
                    for task in hub.tasks.lock().expect("not poisoned").drain(..) {
                        task.abort();
                    }
                    hub.close();
                    return;
                }
            }
        });
    }

    /// Starts a watch: `request` goes out with an id of the hub's own.
    pub(crate) fn subscribe(self: &Arc<Hub>, mut request: ClientRequest) -> Option<Subscription> {
        if !self.open.load(Ordering::Acquire) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (route, answers) = mpsc::channel(WATCH_QUEUE_MAX);
        self.routes.lock().expect("not poisoned").insert(id, route);
        request.request_id = id;
        if self.outgoing.send(request).is_err() {
            self.routes.lock().expect("not poisoned").remove(&id);
            return None;
        }
        Some(Subscription {
            hub: self.clone(),
            id,
            answers,
        })
    }

    /// Stops the watch `id`: its queue closes and the node is asked to stop it.
    fn cancel(&self, id: u64) {
        if self
            .routes
            .lock()
            .expect("not poisoned")
            .remove(&id)
            .is_some()
        {
            let _ = self
                .outgoing
                .send(unsequenced(Request::WatchCancel(WatchCancelRequest {
                    watch_request_id: id,
                })));
        }
    }

    /// The connection broke: every watch on it resumes elsewhere.
    fn close(&self) {
        self.open.store(false, Ordering::Release);
        self.routes.lock().expect("not poisoned").clear();
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

/// The hubs of one client, by endpoint.
#[derive(Default)]
pub(crate) struct Hubs {
    /// One slot per endpoint, locked while its hub opens: the watches that start together
    /// share one connection, and a node slow to connect holds up only the watches bound for it.
    by_endpoint: Mutex<HashMap<String, Slot>>,
}

/// Where the hub to one endpoint is kept (None until one opens).
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Hub>>>>;

impl Hubs {
    /// The open hub to `endpoint`, opened now if there is none.
    pub(crate) async fn get(
        &self,
        client: &Client,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<Arc<Hub>, ConnectError> {
        let slot = self
            .by_endpoint
            .lock()
            .expect("not poisoned")
            .entry(endpoint.to_string())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(hub) = slot.as_ref().filter(|hub| hub.is_open()) {
            return Ok(hub.clone());
        }
        let hub = Hub::open(client, endpoint, deadline).await?;
        *slot = Some(hub.clone());
        Ok(hub)
    }
}

/// A request that belongs to no session (watch starts and stops).
pub(crate) fn unsequenced(body: Request) -> ClientRequest {
    ClientRequest {
        request_id: 0,
        forwarded: false,
        client_id: 0,
        sequence: 0,
        body: Some(body),
    }
}
