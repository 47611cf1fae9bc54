//! paxkv-client: the async Rust client of paxkv.
//!
//! A [`Client`] talks to a list of endpoints. It finds the leader (following the `NotLeader`
//! hints nodes give), keeps one pipelined connection per node, retries what is safe to retry
//! until its timeout, and gives every write a `(client id, sequence)` so that a retried write
//! is applied once. Nodes remember one sequence per client id, so writes in flight at the same
//! time each use a session of their own (see `Lane`). Reads are linearizable unless asked
//! otherwise; session reads never go back in time behind anything this client has seen.
//!
//! Each attempt at one node has its own deadline (`ClientConfig::attempt_timeout`), so a node
//! that stops answering without closing its connections (a frozen process) costs a call one
//! attempt, not its whole timeout; see `silence` for how such a node is passed over.

mod config;
mod connection;
mod error;
mod recipes;
mod silence;
mod txn;
mod watch;
mod watch_hub;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paxkv_proto::auth::ClusterSecret;
pub use paxkv_proto::client::{
    client_request::Body as Request, client_response::Body as Response, ExpireCondition, KeyValue,
    LeaseSummary, Member, MembersResponse, PutRequest, ResponseHeader, Role, StatusResponse,
    TtlState,
};
use paxkv_proto::client::{
    Consistency, DeleteRequest, ExpireRequest, GetRequest, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseListRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, PersistRequest,
    RegisterSessionRequest, ScanRequest, StatusRequest, TtlRequest,
};
pub use paxkv_proto::{
    DELETE_PREFIX_KEYS_MAX, HISTORY_REVISIONS_MAX, KEY_BYTES_MAX, SCAN_LIMIT_MAX, VALUE_BYTES_MAX,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use crate::config::{
    parse_endpoints, ClientConfig, PutOptions, ReadConsistency, ATTEMPT_TIMEOUT_DEFAULT,
    TIMEOUT_DEFAULT,
};
use crate::connection::{until, ConnectError};
pub use crate::connection::{Connection, ANSWER_SILENCE_MAX};
pub use crate::error::{ClientError, ErrorCode, ErrorDetail, LeaderHint};
pub use crate::recipes::{Election, Held, Leadership, LockGuard, LockOptions, Observer};
pub use crate::silence::SILENT_NODE_AVOIDANCE;
use crate::silence::{LateAnswer, LateAnswers, SilentNodes};
pub use crate::txn::{
    Compare, CompareOn, Txn, TxnOp, TxnOpResult, TxnResult, TXN_COMPARES_MAX, TXN_OPS_MAX,
};
pub use crate::watch::{EventKind, Watch, WatchBatch, WatchEvent, WatchOptions};

/// Pause between attempts when no leader is known or the cluster is busy.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq)]
pub struct PutResult {
    pub revision: u64,
    /// The key as it was before the put, if it existed.
    pub previous: Option<KeyValue>,
    /// Log time of the write: `previous`'s TTL left is its `expires_at_ms` minus this.
    pub log_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GetResult {
    pub kv: Option<KeyValue>,
    pub revision: u64,
    /// Log time of the state the read saw: a TTL's time left is `expires_at_ms` minus this.
    pub log_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CasResult {
    pub succeeded: bool,
    pub revision: u64,
    /// The key as it was before (on failure: as it is).
    pub previous: Option<KeyValue>,
    /// Log time of the answer (see [`PutResult::log_time_ms`]).
    pub log_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteResult {
    /// False if the key did not exist, or (compare-and-delete) its revision was not the one
    /// expected: `previous` tells which.
    pub deleted: bool,
    pub revision: u64,
    /// The key as it was before (when not deleted: as it is), if it existed.
    pub previous: Option<KeyValue>,
    /// Log time of the answer (see [`PutResult::log_time_ms`]).
    pub log_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScanPage {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub revision: u64,
    /// Log time of the state the scan saw (see [`GetResult::log_time_ms`]).
    pub log_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TtlResult {
    pub state: TtlState,
    pub remaining_ms: u64,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaseInfo {
    pub lease_id: u64,
    pub remaining_ms: u64,
    pub granted_ttl_ms: u64,
    pub keys: Vec<Vec<u8>>,
}

/// One page of [`Client::lease_list`].
#[derive(Debug, Clone, PartialEq)]
pub struct LeasePage {
    pub leases: Vec<LeaseSummary>,
    /// True if more leases follow: ask again after the last one's id.
    pub more: bool,
    pub revision: u64,
}

/// Whether a refused membership change only has to wait: another change is still in
/// progress, or the learner has not started answering or not caught up yet (the server's
/// refusals say so in these words; the others do not pass with time).
///
/// ```
/// assert!(paxkv_client::refusal_passes_with_time("a membership change (log index 9) is still in progress"));
/// assert!(!paxkv_client::refusal_passes_with_time("n1 is the last voter"));
/// ```
pub fn refusal_passes_with_time(message: &str) -> bool {
    ["in progress", "entries behind", "has not answered"]
        .iter()
        .any(|reason| message.contains(reason))
}

/// A paxkv client; cheap to clone and safe to share between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// How long one call may take, retries included (see [`Client::with_timeout`]).
    timeout: Duration,
}

struct Inner {
    endpoints: Vec<String>,
    secret: Option<ClusterSecret>,
    attempt_timeout: Duration,
    /// Identifies reads (sessions matter for writes only).
    client_id: u64,
    /// Sessions not used by a write in flight right now.
    idle_lanes: Mutex<Vec<Lane>>,
    request_id: AtomicU64,
    /// Highest revision any answer showed (for session reads).
    revision_seen: AtomicU64,
    /// Highest log position any answer was served at (for session reads).
    applied_index_seen: AtomicU64,
    leader: Mutex<Option<String>>,
    /// The leader as the cluster last named it (for errors: see `ErrorDetail::leader`).
    leader_hint: Mutex<Option<LeaderHint>>,
    /// Nodes that let an attempt run out recently: tried only when no other is left.
    silent: Mutex<SilentNodes>,
    rotation: AtomicUsize,
    connections: Mutex<BTreeMap<String, Arc<Connection>>>,
    /// One connection per node for all watches (see `watch_hub`).
    watch_hubs: watch_hub::Hubs,
}

/// A write session: a client id the cluster registered and the sequence of its next write.
/// Nodes remember the last sequence applied per client id and refuse an older one, so a
/// session carries one write at a time; a client with many writes in flight uses as many
/// sessions, each kept for later writes. A new lane has no id until its first write registers
/// one (a write of an unknown id is refused, never applied as new).
struct Lane {
    /// 0 until registered.
    client_id: u64,
    next_sequence: u64,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            client_id: 0,
            next_sequence: 1,
        }
    }
}

/// A lane taken for one write (all its retries); it goes back to the idle ones, at the next
/// sequence, when the write ends or is abandoned. If an abandoned attempt reaches a node after
/// the next write of its lane, the node refuses it as stale: it cannot apply late.
struct LaneGuard<'a> {
    lane: Option<Lane>,
    idle: &'a Mutex<Vec<Lane>>,
}

impl<'a> LaneGuard<'a> {
    fn take(idle: &'a Mutex<Vec<Lane>>) -> LaneGuard<'a> {
        let lane = idle
            .lock()
            .expect("not poisoned")
            .pop()
            .unwrap_or_else(Lane::new);
        LaneGuard {
            lane: Some(lane),
            idle,
        }
    }

    fn ids(&self) -> (u64, u64) {
        let lane = self.lane.as_ref().expect("held until dropped");
        (lane.client_id, lane.next_sequence)
    }

    fn registered(&self) -> bool {
        self.ids().0 != 0
    }

    /// The cluster forgot the lane's session: the next write registers a new one.
    fn forget_session(&mut self) {
        let lane = self.lane.as_mut().expect("held until dropped");
        lane.client_id = 0;
    }

    /// Starts the lane over under a newly registered session.
    fn register(&mut self, client_id: u64) {
        assert_ne!(client_id, 0, "registered sessions have an id");
        let lane = self.lane.as_mut().expect("held until dropped");
        lane.client_id = client_id;
        lane.next_sequence = 1;
    }
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        if let Some(mut lane) = self.lane.take() {
            lane.next_sequence += 1;
            self.idle.lock().expect("not poisoned").push(lane);
        }
    }
}

/// Times a write registers a new session because the cluster had already forgotten the last
/// one before the write's first attempt reached it.
const SESSION_REGISTRATIONS_PER_WRITE_MAX: usize = 3;

/// A call that failed, and how many attempts it made (sent or not).
struct CallFailed {
    error: ClientError,
    attempts: u64,
}

/// What stays the same across the attempts of one call.
struct CallPlan<'body> {
    body: &'body Request,
    /// (client id, sequence): the same in every attempt, so a write applies once.
    ids: (u64, u64),
    deadline: Instant,
    /// Only a leader may serve it.
    to_leader: bool,
}

enum Attempt {
    Done(Response),
    Retry(String),
    /// The node did not answer before the attempt's deadline; its answer may still come (on
    /// this connection, which the client no longer lists).
    Silent {
        problem: String,
        late: Option<(Arc<Connection>, oneshot::Receiver<Response>)>,
    },
    /// Not the leader, and the leader it names did not answer lately.
    SilentHint {
        problem: String,
        hint: String,
    },
    /// The node and we disagree on the cluster secret (either side may be wrong).
    AuthFailed(String),
    Fail(ClientError),
}

impl Client {
    /// ```
    /// use paxkv_client::{Client, ClientConfig};
    /// let client = Client::new(ClientConfig::new(vec!["[::1]:7001".into()]))?;
    /// # let _ = client; Ok::<(), paxkv_client::ClientError>(())
    /// ```
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::InvalidArgument("no endpoints given".into()));
        }
        if config.attempt_timeout.is_zero() {
            return Err(ClientError::InvalidArgument(
                "the attempt timeout must be longer than zero".into(),
            ));
        }
        let secret = match &config.secret {
            Some(raw) => Some(
                ClusterSecret::new(raw)
                    .map_err(|error| ClientError::InvalidArgument(error.to_string().into()))?,
            ),
            None => None,
        };
        if config.timeout.is_zero() {
            return Err(ClientError::InvalidArgument(
                "the timeout must be longer than zero".into(),
            ));
        }
        Ok(Client {
            timeout: config.timeout,
            inner: Arc::new(Inner {
                endpoints: config.endpoints,
                secret,
                attempt_timeout: config.attempt_timeout,
                client_id: Lane::new().client_id,
                idle_lanes: Mutex::new(Vec::new()),
                request_id: AtomicU64::new(0),
                revision_seen: AtomicU64::new(0),
                applied_index_seen: AtomicU64::new(0),
                leader: Mutex::new(None),
                leader_hint: Mutex::new(None),
                silent: Mutex::new(SilentNodes::default()),
                rotation: AtomicUsize::new(0),
                connections: Mutex::new(BTreeMap::new()),
                watch_hubs: watch_hub::Hubs::default(),
            }),
        })
    }

    /// How long one call may take, retries included.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// println!("calls give up after {:?}", client.timeout());
    /// # Ok(()) }
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same client (same connections, sessions and knowledge of the leader) with another
    /// timeout for the calls made through it: a per-call deadline.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use std::time::Duration;
    /// let quick = client.with_timeout(Duration::from_millis(200));
    /// let value = quick.get(b"config/mode", Default::default()).await?;
    /// # let _ = value; Ok(()) }
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// for endpoint in client.endpoints() {
    ///     println!("{endpoint}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Highest revision this client has seen in any answer.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// client.put(b"k", b"v", PutOptions::new()).await?;
    /// assert!(client.revision_seen() > 0);
    /// # Ok(()) }
    /// ```
    pub fn revision_seen(&self) -> u64 {
        self.inner.revision_seen.load(Ordering::Relaxed)
    }

    /// Highest log position any answer this client has seen was served at: with the revision,
    /// the point a session read must not go back from (the time a lease or a TTL has left
    /// changes with log time alone, without a new revision).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// client.get(b"k", ReadConsistency::Linearizable).await?;
    /// println!("seen up to log index {}", client.applied_index_seen());
    /// # Ok(()) }
    /// ```
    pub fn applied_index_seen(&self) -> u64 {
        self.inner.applied_index_seen.load(Ordering::Relaxed)
    }

    /// Closes every connection this client holds (calls in flight on them fail and are
    /// retried on a new one). The client stays usable: the next call connects again.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// client.close();
    /// // The next call connects again.
    /// client.get(b"k", Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.inner.connections.lock().expect("not poisoned").clear();
        *self.inner.leader.lock().expect("not poisoned") = None;
    }

    /// The known leader if asked for and not silent lately, else the next endpoint in turn
    /// that was not silent lately, else (all of them were) the one silent longest ago.
    fn next_endpoint(&self, prefer_leader: bool) -> String {
        let now = Instant::now();
        let silent = self.inner.silent.lock().expect("not poisoned");
        if prefer_leader {
            if let Some(leader) = self.inner.leader.lock().expect("not poisoned").clone() {
                if !silent.avoids(&leader, now) {
                    return leader;
                }
            }
        }
        let endpoints = &self.inner.endpoints;
        let turn = self.inner.rotation.fetch_add(1, Ordering::Relaxed);
        let in_turn: Vec<&String> = (0..endpoints.len())
            .map(|offset| &endpoints[(turn + offset) % endpoints.len()])
            .collect();
        silent.pick(&in_turn, now).clone()
    }

    async fn connection(
        &self,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<Arc<Connection>, ConnectError> {
        if let Some(connection) = self
            .inner
            .connections
            .lock()
            .expect("not poisoned")
            .get(endpoint)
        {
            if connection.is_open() {
                return Ok(connection.clone());
            }
        }
        let connection =
            Arc::new(Connection::open(endpoint, self.inner.secret.as_ref(), deadline).await?);
        self.inner
            .connections
            .lock()
            .expect("not poisoned")
            .insert(endpoint.to_string(), connection.clone());
        Ok(connection)
    }

    fn forget(&self, endpoint: &str) {
        self.inner
            .connections
            .lock()
            .expect("not poisoned")
            .remove(endpoint);
        let mut leader = self.inner.leader.lock().expect("not poisoned");
        if leader.as_deref() == Some(endpoint) {
            *leader = None;
        }
    }

    /// Sends `body` until it gets an answer that is not retryable, or the timeout passes.
    /// Each attempt at one node has `attempt_timeout` at most; a node that lets it run out is
    /// passed over for a while, but its answer still ends the call if it comes first. Writes
    /// keep one sequence number across retries, so they apply once.
    async fn call(
        &self,
        body: Request,
        write: bool,
        to_leader: bool,
    ) -> Result<Response, ClientError> {
        check_frame_size(&body)?;
        let leader_hint = || self.inner.leader_hint.lock().expect("not poisoned").clone();
        self.call_until(body, write, to_leader)
            .await
            .map_err(|error| error.with_leader(leader_hint()))
    }

    async fn call_until(
        &self,
        body: Request,
        write: bool,
        to_leader: bool,
    ) -> Result<Response, ClientError> {
        let deadline = Instant::now() + self.timeout;
        if !write {
            let ids = (self.inner.client_id, 0);
            return self
                .call_with(&body, ids, deadline, false, to_leader)
                .await
                .map_err(|failed| failed.error);
        }
        let mut lane = LaneGuard::take(&self.inner.idle_lanes);
        for _ in 0..SESSION_REGISTRATIONS_PER_WRITE_MAX {
            if !lane.registered() {
                let client_id = self.register_session(deadline).await?;
                lane.register(client_id);
            }
            match self
                .call_with(&body, lane.ids(), deadline, true, to_leader)
                .await
            {
                Ok(response) => return Ok(response),
                // Refused before any earlier attempt went out: nothing of this write was
                // applied, so it is safe to send it again under a new session.
                Err(CallFailed {
                    error: ClientError::SessionExpired(_),
                    attempts: 1,
                }) => lane.forget_session(),
                Err(failed) => {
                    // An earlier attempt may have gone out, so this write's outcome is
                    // unknown; but the session is gone either way, and the lane's next write
                    // must not try it again (it would only be refused the same way).
                    if matches!(failed.error, ClientError::SessionExpired(_)) {
                        lane.forget_session();
                    }
                    return Err(failed.error);
                }
            }
        }
        // Every session was refused at the first attempt: nothing of this write was applied.
        Err(ClientError::Unavailable(
            format!(
                "the cluster forgot {SESSION_REGISTRATIONS_PER_WRITE_MAX} new sessions in a row \
                 before this write reached it (it keeps too few for this many writers); the \
                 write was not applied"
            )
            .into(),
        ))
    }

    /// Registers a new write session (a replicated entry); returns its id.
    async fn register_session(&self, deadline: Instant) -> Result<u64, ClientError> {
        let body = Request::RegisterSession(RegisterSessionRequest {});
        let response = self
            .call_with(&body, (0, 0), deadline, true, true)
            .await
            .map_err(|failed| failed.error)?;
        match response {
            Response::RegisterSession(session) if session.client_id != 0 => Ok(session.client_id),
            other => Err(unexpected(other)),
        }
    }

    /// Sends `body` with the same ids in every attempt until an answer that is not retryable,
    /// or the deadline.
    async fn call_with(
        &self,
        body: &Request,
        ids: (u64, u64),
        deadline: Instant,
        write: bool,
        to_leader: bool,
    ) -> Result<Response, CallFailed> {
        let plan = CallPlan {
            body,
            ids,
            deadline,
            to_leader,
        };
        let mut attempts = 0u64;
        // The last problem of every endpoint tried, for the error if nothing works.
        let mut problems = BTreeMap::new();
        // One node failing the secret may be an impostor; all of them means ours is wrong.
        let mut auth_failures = BTreeSet::new();
        let mut late_answers = LateAnswers::default();
        // Silent nodes a hint named that got this call's request on the side.
        let mut asked_aside = BTreeSet::new();
        let mut pause = false;
        let failed = |error: ClientError, attempts: u64| CallFailed { error, attempts };
        while Instant::now() < plan.deadline {
            attempts += 1;
            let endpoint = self.next_endpoint(to_leader);
            let attempt = tokio::select! {
                biased;
                (answered_by, response) = late_answers.first_success() => {
                    return Ok(self.on_success(&answered_by, response, to_leader));
                }
                attempt = self.attempt(&endpoint, &plan, std::mem::take(&mut pause)) => attempt,
            };
            let problem = match attempt {
                Attempt::Done(response) => return Ok(response),
                Attempt::Fail(error) => return Err(failed(error, attempts)),
                Attempt::AuthFailed(problem) => {
                    auth_failures.insert(endpoint.clone());
                    if auth_failures.len() >= self.inner.endpoints.len() {
                        let error =
                            ClientError::Authentication(format!("{endpoint}: {problem}").into());
                        return Err(failed(error, attempts));
                    }
                    problem
                }
                Attempt::Retry(problem) => problem,
                Attempt::Silent { problem, late } => {
                    if let Some((connection, answer)) = late {
                        late_answers.push(self.late_answer(&endpoint, connection, answer));
                    }
                    problem
                }
                Attempt::SilentHint { problem, hint } => {
                    // The hint may be right (the node is back, or was only slow): one request
                    // there on the side, while the call goes on with the others after a pause.
                    if asked_aside.insert(hint.clone()) {
                        late_answers.push(self.ask_aside(hint, &plan));
                    }
                    pause = true;
                    problem
                }
            };
            tracing::debug!(%endpoint, %problem, attempts, "paxkv call retrying");
            problems.insert(endpoint, problem);
        }
        Err(failed(self.gave_up(write, &problems), attempts))
    }

    /// The error of a call that ran out of time, naming every endpoint tried.
    fn gave_up(&self, write: bool, problems: &BTreeMap<String, String>) -> ClientError {
        let tried = if problems.is_empty() {
            String::from("no attempt finished")
        } else {
            let each: Vec<String> = problems
                .iter()
                .map(|(endpoint, problem)| format!("{endpoint}: {problem}"))
                .collect();
            format!("tried {}", each.join("; "))
        };
        let timeout = self.timeout;
        tracing::debug!(?timeout, write, %tried, "paxkv call gave up");
        if write {
            ClientError::Timeout(
                format!(
                    "no answer within {timeout:?} ({tried}); the write may or may not have \
                     taken effect"
                )
                .into(),
            )
        } else {
            ClientError::Unavailable(format!("no answer within {timeout:?} ({tried})").into())
        }
    }

    /// One try at one node (after a pause if asked), for `attempt_timeout` at most. A node
    /// that lets the whole of it pass is avoided for a while; an attempt cut short by the end
    /// of the call says little about a node when calls are short, so it does not count.
    async fn attempt(&self, endpoint: &str, plan: &CallPlan<'_>, pause: bool) -> Attempt {
        if pause {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let started = Instant::now();
        let deadline = plan.deadline.min(started + self.inner.attempt_timeout);
        let silent = |problem, late| {
            self.forget(endpoint);
            if deadline < plan.deadline {
                let mut silent = self.inner.silent.lock().expect("not poisoned");
                silent.went_silent(endpoint, Instant::now());
            }
            Attempt::Silent { problem, late }
        };
        let connection = match self.connection(endpoint, deadline).await {
            Ok(connection) => connection,
            Err(error) if error.is_authentication() => {
                self.forget(endpoint);
                return Attempt::AuthFailed(error.to_string());
            }
            // A frozen process's kernel still accepts connections; the handshake goes unanswered.
            Err(error) if Instant::now() >= deadline => return silent(error.to_string(), None),
            Err(error) => {
                self.forget(endpoint);
                tokio::time::sleep(RETRY_PAUSE).await;
                return Attempt::Retry(error.to_string());
            }
        };
        let mut answer = match connection.send(self.request_frame(plan), deadline).await {
            Ok(answer) => answer,
            Err(problem) if Instant::now() >= deadline => return silent(problem, None),
            Err(problem) => {
                self.forget(endpoint);
                return Attempt::Retry(problem);
            }
        };
        match tokio::time::timeout(until(deadline), &mut answer).await {
            Ok(Ok(Response::Error(error))) => {
                self.mark_answered(endpoint);
                self.on_error(endpoint, error).await
            }
            Ok(Ok(response)) => Attempt::Done(self.on_success(endpoint, response, plan.to_leader)),
            Ok(Err(_)) => {
                self.forget(endpoint);
                Attempt::Retry("connection lost before the answer".into())
            }
            // The connection leaves the client's list (a frozen node's queue only grows) but
            // stays open for the answer.
            Err(_) => silent(
                format!("no answer in {} ms", started.elapsed().as_millis()),
                Some((connection, answer)),
            ),
        }
    }

    fn request_frame(&self, plan: &CallPlan<'_>) -> paxkv_proto::client::ClientRequest {
        let (client_id, sequence) = plan.ids;
        paxkv_proto::client::ClientRequest {
            request_id: self.inner.request_id.fetch_add(1, Ordering::Relaxed) + 1,
            forwarded: false,
            client_id,
            sequence,
            body: Some(plan.body.clone()),
        }
    }

    /// The answer of an attempt that ran out of time, should it still come.
    fn late_answer<'call>(
        &'call self,
        endpoint: &str,
        connection: Arc<Connection>,
        answer: oneshot::Receiver<Response>,
    ) -> LateAnswer<'call> {
        let endpoint = endpoint.to_string();
        Box::pin(async move {
            // Keeps the connection open: the answer comes back on it.
            let _connection = connection;
            let response = answer.await.ok()?;
            self.take_late_answer(endpoint, response)
        })
    }

    /// Sends the call's request to `endpoint` without waiting for it; its answer counts if it
    /// comes before the call ends.
    fn ask_aside<'call>(&'call self, endpoint: String, plan: &CallPlan<'_>) -> LateAnswer<'call> {
        let (request, deadline) = (self.request_frame(plan), plan.deadline);
        Box::pin(async move {
            let connection = self.connection(&endpoint, deadline).await.ok()?;
            let answer = connection.send(request, deadline).await.ok()?;
            let response = tokio::time::timeout(until(deadline), answer)
                .await
                .ok()?
                .ok()?;
            self.take_late_answer(endpoint, response)
        })
    }

    /// A late answer shows its node is alive; only one that is not an error ends the call.
    fn take_late_answer(&self, endpoint: String, response: Response) -> Option<(String, Response)> {
        self.mark_answered(&endpoint);
        (!matches!(response, Response::Error(_))).then_some((endpoint, response))
    }

    /// `endpoint` answered something: it is not silent.
    fn mark_answered(&self, endpoint: &str) {
        let mut silent = self.inner.silent.lock().expect("not poisoned");
        silent.answered(endpoint);
    }

    /// Takes in an answer that is not an error: `endpoint` is alive, and (for a request only a
    /// leader serves) the leader.
    fn on_success(&self, endpoint: &str, response: Response, to_leader: bool) -> Response {
        self.mark_answered(endpoint);
        if to_leader {
            let served_by = response.header().map_or(0, |header| header.served_by);
            // A node that passed the request on names the leader: go there next time, not
            // through the same node again (an extra hop for every request).
            let leader = response
                .header()
                .map(|header| header.leader_address.as_str())
                .filter(|address| !address.is_empty())
                .unwrap_or(endpoint);
            self.set_leader(Some(leader.to_string()), served_by);
        }
        if let Some(header) = response.header() {
            self.inner
                .revision_seen
                .fetch_max(header.revision, Ordering::Relaxed);
            self.inner
                .applied_index_seen
                .fetch_max(header.applied_index, Ordering::Relaxed);
        }
        response
    }

    /// Records where the leader is (None: unknown, or not worth trying), and its id if known;
    /// a change is a debug event.
    fn set_leader(&self, endpoint: Option<String>, id: u64) {
        let mut leader = self.inner.leader.lock().expect("not poisoned");
        if *leader != endpoint {
            tracing::debug!(from = ?*leader, to = ?endpoint, id, "paxkv leader changed");
        }
        if let Some(address) = &endpoint {
            *self.inner.leader_hint.lock().expect("not poisoned") =
                Some(LeaderHint::new(id, address.clone()));
        }
        *leader = endpoint;
    }

    async fn on_error(&self, endpoint: &str, error: paxkv_proto::client::Error) -> Attempt {
        let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Unspecified);
        match code {
            ErrorCode::NotLeader => {
                let hint = (!error.leader_address.is_empty()).then_some(error.leader_address);
                let silent_hint = hint.as_ref().is_some_and(|hint| {
                    let silent = self.inner.silent.lock().expect("not poisoned");
                    silent.avoids(hint, Instant::now())
                });
                // Followers name the old leader until they elect another: following a hint at a
                // node that just went silent would lead back into it (see `call`).
                self.set_leader(hint.clone().filter(|_| !silent_hint), error.leader_id);
                match hint {
                    Some(hint) if silent_hint => Attempt::SilentHint {
                        problem: format!("{} ({hint} did not answer lately)", error.message),
                        hint,
                    },
                    Some(_) => Attempt::Retry(error.message),
                    None => {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        Attempt::Retry(error.message)
                    }
                }
            }
            ErrorCode::NoQuorum
            | ErrorCode::Busy
            | ErrorCode::OutcomeUnknown
            | ErrorCode::Timeout => {
                if code == ErrorCode::NoQuorum {
                    self.forget(endpoint);
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                Attempt::Retry(error.message)
            }
            ErrorCode::KeyTooLarge
            | ErrorCode::ValueTooLarge
            | ErrorCode::BadRequest
            | ErrorCode::FrameTooLarge => Attempt::Fail(ClientError::InvalidArgument(
                ErrorDetail::from_node(code, error.message),
            )),
            ErrorCode::Unauthenticated => Attempt::AuthFailed(error.message),
            ErrorCode::NotFound => Attempt::Fail(ClientError::NotFound(ErrorDetail::from_node(
                code,
                error.message,
            ))),
            ErrorCode::SessionExpired => Attempt::Fail(ClientError::SessionExpired(
                ErrorDetail::from_node(code, error.message),
            )),
            ErrorCode::Compacted | ErrorCode::WatcherTooSlow => Attempt::Fail(
                ClientError::Compacted(ErrorDetail::from_node(code, error.message)),
            ),
            ErrorCode::MembershipRefused => Attempt::Fail(ClientError::Refused(
                ErrorDetail::from_node(code, error.message),
            )),
            ErrorCode::StaleSequence | ErrorCode::Unspecified => Attempt::Fail(
                ClientError::Server(ErrorDetail::from_node(code, error.message)),
            ),
        }
    }

    /// The consistency level, minimum revision and minimum log position a read asks for.
    fn read_consistency(&self, consistency: ReadConsistency) -> (Consistency, u64, u64) {
        match consistency {
            ReadConsistency::Linearizable => (Consistency::Linearizable, 0, 0),
            ReadConsistency::Stale => (Consistency::Stale, 0, 0),
            ReadConsistency::Session => (
                Consistency::AtLeastRevision,
                self.revision_seen(),
                self.applied_index_seen(),
            ),
            ReadConsistency::AtLeast(revision) => (Consistency::AtLeastRevision, revision, 0),
        }
    }

    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let put = client.put(b"session/42", b"alice", PutOptions::new().ttl_ms(30_000)).await?;
    /// println!("written at revision {}", put.revision);
    /// # Ok(()) }
    /// ```
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        options: PutOptions,
    ) -> Result<PutResult, ClientError> {
        let put = self.put_with(options.request(key, value, None)).await?;
        Ok(PutResult {
            revision: put.revision,
            previous: put.previous,
            log_time_ms: put.log_time_ms,
        })
    }

    /// Writes `value` only if the key's revision is `expected_revision` (0: only if absent).
    /// It takes every option a put takes, with the same meaning: without a TTL, a lease or
    /// `keep_ttl`, the key written is permanent and attached to no lease, whatever it had.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let current = client.get(b"counter", ReadConsistency::Linearizable).await?;
    /// let revision = current.kv.as_ref().map_or(0, |kv| kv.mod_revision);
    /// let cas = client.compare_and_set(b"counter", revision, b"2", PutOptions::new()).await?;
    /// if !cas.succeeded {
    ///     println!("someone else wrote it first");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn compare_and_set(
        &self,
        key: &[u8],
        expected_revision: u64,
        value: &[u8],
        options: PutOptions,
    ) -> Result<CasResult, ClientError> {
        self.put_with(options.request(key, value, Some(expected_revision)))
            .await
    }

    /// Any put, every option of the request at hand (a TTL or lease together with an expected
    /// revision, say); `succeeded` is false only when the expected revision did not match.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// # use paxkv_client::PutRequest;
    /// let answer = client
    ///     .put_with(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), expected_revision: Some(0), ..Default::default() })
    ///     .await?;
    /// println!("created: {}", answer.succeeded);
    /// # Ok(()) }
    /// ```
    pub async fn put_with(&self, put: PutRequest) -> Result<CasResult, ClientError> {
        match self.request(Request::Put(put)).await? {
            Response::Put(put) => Ok(CasResult {
                succeeded: put.succeeded,
                revision: header_revision(&put.header),
                log_time_ms: header_log_time(&put.header),
                previous: put.previous,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// match client.get(b"config/mode", ReadConsistency::Linearizable).await?.kv {
    ///     Some(kv) => println!("{:?} at revision {}", kv.value, kv.mod_revision),
    ///     None => println!("no such key"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(
        &self,
        key: &[u8],
        consistency: ReadConsistency,
    ) -> Result<GetResult, ClientError> {
        let (consistency, min_revision, min_applied_index) = self.read_consistency(consistency);
        let body = Request::Get(GetRequest {
            key: key.to_vec(),
            consistency: consistency as i32,
            min_revision,
            min_applied_index,
        });
        match self.request(body).await? {
            Response::Get(get) => Ok(GetResult {
                revision: header_revision(&get.header),
                log_time_ms: header_log_time(&get.header),
                kv: get.kv,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes `key`; the result says whether it existed and what it held.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let deleted = client.delete(b"session/42").await?;
    /// println!("existed: {}", deleted.deleted);
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: &[u8]) -> Result<DeleteResult, ClientError> {
        self.delete_with(key, None).await
    }

    /// Deletes `key` only if its revision is `expected_revision` (a lock released only by
    /// the one who holds it). When nothing is deleted, `previous` shows the key as it is.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let lock = client.put(b"lock", b"me", PutOptions::new()).await?;
    /// // ... later: release it only if it is still ours.
    /// let released = client.compare_and_delete(b"lock", lock.revision).await?;
    /// println!("released: {}", released.deleted);
    /// # Ok(()) }
    /// ```
    pub async fn compare_and_delete(
        &self,
        key: &[u8],
        expected_revision: u64,
    ) -> Result<DeleteResult, ClientError> {
        self.delete_with(key, Some(expected_revision)).await
    }

    /// Deletes every key that starts with `prefix` (not empty); returns how many went. The
    /// cluster removes up to [`DELETE_PREFIX_KEYS_MAX`] keys at one revision; a prefix holding
    /// more is deleted in several such steps (a watcher sees one batch per step).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let deleted = client.delete_prefix(b"session/").await?;
    /// println!("{deleted} sessions removed");
    /// # Ok(()) }
    /// ```
    pub async fn delete_prefix(&self, prefix: &[u8]) -> Result<u64, ClientError> {
        self.delete_all(DeleteRequest {
            key: prefix.to_vec(),
            prefix: true,
            ..Default::default()
        })
        .await
    }

    /// Sends a prefix or range delete again until nothing is left; returns how many went.
    async fn delete_all(&self, request: DeleteRequest) -> Result<u64, ClientError> {
        let mut deleted = 0;
        loop {
            match self.request(Request::Delete(request.clone())).await? {
                Response::Delete(delete) => {
                    deleted += delete.deleted_count;
                    if !delete.more {
                        return Ok(deleted);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Deletes every key from `start` (included) to `end` (excluded, after `start`); returns
    /// how many went. Like [`Client::delete_prefix`], at most [`DELETE_PREFIX_KEYS_MAX`] keys
    /// go at one revision and a larger range takes several.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let deleted = client.delete_range(b"log/2026-01", b"log/2026-07").await?;
    /// println!("{deleted} entries of the first half-year removed");
    /// # Ok(()) }
    /// ```
    pub async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<u64, ClientError> {
        if end <= start {
            // An empty end would ask the node for the one key `start`.
            return Err(ClientError::InvalidArgument(
                "the range end must come after the start (start..end, end excluded)"
                    .to_string()
                    .into(),
            ));
        }
        self.delete_all(DeleteRequest {
            key: start.to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Runs a transaction: compares on several keys, then one branch of operations, applied
    /// atomically at one revision (see [`Txn`]). A retry after a lost answer applies it once.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// // Create both keys, or neither if either exists.
    /// let txn = Txn::new()
    ///     .when([Compare::absent(b"user/alice"), Compare::absent(b"email/alice@example.org")])
    ///     .and_then([
    ///         TxnOp::put(b"user/alice", b"alice@example.org", PutOptions::new()),
    ///         TxnOp::put(b"email/alice@example.org", b"alice", PutOptions::new()),
    ///     ]);
    /// let created = client.txn(txn).await?.succeeded;
    /// # let _ = created;
    /// # Ok(()) }
    /// ```
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, ClientError> {
        match self.request(Request::Txn(txn.into_request())).await? {
            Response::Txn(txn) => Ok(TxnResult::from_wire(txn)),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_with(
        &self,
        key: &[u8],
        expected_revision: Option<u64>,
    ) -> Result<DeleteResult, ClientError> {
        let body = Request::Delete(DeleteRequest {
            key: key.to_vec(),
            expected_revision,
            ..Default::default()
        });
        match self.request(body).await? {
            Response::Delete(delete) => Ok(DeleteResult {
                deleted: delete.deleted,
                revision: header_revision(&delete.header),
                log_time_ms: header_log_time(&delete.header),
                previous: delete.previous,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// One page of keys with `prefix` after `start_after` (empty: from the start).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let mut after = Vec::new();
    /// loop {
    ///     let page = client.scan(b"user/", &after, 1000, ReadConsistency::Linearizable).await?;
    ///     for kv in &page.kvs {
    ///         println!("{:?}", kv.key);
    ///     }
    ///     match page.kvs.last() {
    ///         Some(last) if page.more => after = last.key.clone(),
    ///         _ => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn scan(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<ScanPage, ClientError> {
        let (consistency, min_revision, min_applied_index) = self.read_consistency(consistency);
        self.scan_request(ScanRequest {
            prefix: prefix.to_vec(),
            limit,
            start_after: start_after.to_vec(),
            consistency: consistency as i32,
            min_revision,
            min_applied_index,
            revision: 0,
        })
        .await
    }

    /// One page of keys with `prefix` after `start_after`, as they were at `revision` (the
    /// first page's [`ScanPage::revision`]): the later pages of a scan that shows one state.
    /// Any node that has applied `revision` answers; one whose history no longer reaches back
    /// to it fails with [`ClientError::Compacted`].
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::ReadConsistency;
    /// let first = client.scan(b"user/", b"", 1000, ReadConsistency::Linearizable).await?;
    /// let mut keys: Vec<Vec<u8>> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    /// let mut more = first.more;
    /// while more {
    ///     let after = keys.last().cloned().unwrap_or_default();
    ///     let page = client.scan_at(b"user/", &after, 1000, first.revision).await?;
    ///     keys.extend(page.kvs.into_iter().map(|kv| kv.key));
    ///     more = page.more;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn scan_at(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: u32,
        revision: u64,
    ) -> Result<ScanPage, ClientError> {
        self.scan_request(ScanRequest {
            prefix: prefix.to_vec(),
            limit,
            start_after: start_after.to_vec(),
            consistency: Consistency::AtLeastRevision as i32,
            min_revision: revision,
            min_applied_index: 0,
            revision,
        })
        .await
    }

    async fn scan_request(&self, scan: ScanRequest) -> Result<ScanPage, ClientError> {
        let body = Request::Scan(scan);
        match self.request(body).await? {
            Response::Scan(scan) => Ok(ScanPage {
                revision: header_revision(&scan.header),
                log_time_ms: header_log_time(&scan.header),
                kvs: scan.kvs,
                more: scan.more,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let ttl = client.ttl(b"session/42").await?;
    /// println!("{:?}: {} ms left", ttl.state, ttl.remaining_ms);
    /// # Ok(()) }
    /// ```
    pub async fn ttl(&self, key: &[u8]) -> Result<TtlResult, ClientError> {
        let body = Request::Ttl(TtlRequest {
            key: key.to_vec(),
            consistency: Consistency::Linearizable as i32,
            min_revision: 0,
            min_applied_index: 0,
        });
        match self.request(body).await? {
            Response::Ttl(ttl) => Ok(TtlResult {
                state: ttl.state(),
                remaining_ms: ttl.remaining_ms,
                revision: header_revision(&ttl.header),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Sets a TTL; returns whether it was applied (false: no such key, or condition unmet).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// // Only if the key has no TTL yet.
    /// let set = client.expire(b"session/42", 60_000, ExpireCondition::Nx).await?;
    /// println!("set: {set}");
    /// # Ok(()) }
    /// ```
    pub async fn expire(
        &self,
        key: &[u8],
        ttl_ms: u64,
        condition: ExpireCondition,
    ) -> Result<bool, ClientError> {
        let body = Request::Expire(ExpireRequest {
            key: key.to_vec(),
            ttl_ms,
            condition: condition as i32,
        });
        match self.request(body).await? {
            Response::Expire(expire) => Ok(expire.applied),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a TTL; returns whether the key had one.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let had_ttl = client.persist(b"session/42").await?;
    /// println!("had a TTL: {had_ttl}");
    /// # Ok(()) }
    /// ```
    pub async fn persist(&self, key: &[u8]) -> Result<bool, ClientError> {
        let body = Request::Persist(PersistRequest { key: key.to_vec() });
        match self.request(body).await? {
            Response::Persist(persist) => Ok(persist.removed),
            other => Err(unexpected(other)),
        }
    }

    /// Grants a lease; returns its id.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::*;
    /// let lease = client.lease_grant(10_000).await?;
    /// client.put(b"leader", b"node-1", PutOptions::new().lease(lease)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn lease_grant(&self, ttl_ms: u64) -> Result<u64, ClientError> {
        match self
            .request(Request::LeaseGrant(LeaseGrantRequest { ttl_ms }))
            .await?
        {
            Response::LeaseGrant(grant) => Ok(grant.lease_id),
            other => Err(unexpected(other)),
        }
    }

    /// Restarts a lease's time to live; returns it.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lease = client.lease_grant(10_000).await?;
    /// let ttl_ms = client.lease_keep_alive(lease).await?;
    /// assert_eq!(ttl_ms, 10_000);
    /// # Ok(()) }
    /// ```
    pub async fn lease_keep_alive(&self, lease_id: u64) -> Result<u64, ClientError> {
        let body = Request::LeaseKeepAlive(LeaseKeepAliveRequest { lease_id });
        match self.request(body).await? {
            Response::LeaseKeepAlive(keep_alive) => Ok(keep_alive.ttl_ms),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a lease, deleting its keys; returns how many keys went.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lease = client.lease_grant(10_000).await?;
    /// let deleted = client.lease_revoke(lease).await?;
    /// println!("{deleted} keys went with it");
    /// # Ok(()) }
    /// ```
    pub async fn lease_revoke(&self, lease_id: u64) -> Result<u64, ClientError> {
        let body = Request::LeaseRevoke(LeaseRevokeRequest { lease_id });
        match self.request(body).await? {
            Response::LeaseRevoke(revoke) => Ok(revoke.deleted_keys),
            other => Err(unexpected(other)),
        }
    }

    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let lease = client.lease_grant(10_000).await?;
    /// let info = client.lease_time_to_live(lease, true).await?;
    /// println!("{} ms left, {} keys", info.remaining_ms, info.keys.len());
    /// # Ok(()) }
    /// ```
    pub async fn lease_time_to_live(
        &self,
        lease_id: u64,
        keys: bool,
    ) -> Result<LeaseInfo, ClientError> {
        let body = Request::LeaseTimeToLive(LeaseTimeToLiveRequest {
            lease_id,
            keys,
            consistency: Consistency::Linearizable as i32,
            min_revision: 0,
            min_applied_index: 0,
        });
        match self.request(body).await? {
            Response::LeaseTimeToLive(lease) => Ok(LeaseInfo {
                lease_id,
                remaining_ms: lease.remaining_ms,
                granted_ttl_ms: lease.granted_ttl_ms,
                keys: lease.keys,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the live leases with an id above `after_id` (0: from the first), at most
    /// `limit` (capped at [`SCAN_LIMIT_MAX`]), read linearizably.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let mut after = 0;
    /// loop {
    ///     let page = client.lease_list(after, 1000).await?;
    ///     for lease in &page.leases {
    ///         println!("lease {}: {} ms left", lease.lease_id, lease.remaining_ms);
    ///     }
    ///     match page.leases.last() {
    ///         Some(last) if page.more => after = last.lease_id,
    ///         _ => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lease_list(&self, after_id: u64, limit: u32) -> Result<LeasePage, ClientError> {
        let body = Request::LeaseList(LeaseListRequest {
            after_id,
            limit,
            consistency: Consistency::Linearizable as i32,
            min_revision: 0,
            min_applied_index: 0,
        });
        match self.request(body).await? {
            Response::LeaseList(list) => Ok(LeasePage {
                revision: header_revision(&list.header),
                leases: list.leases,
                more: list.more,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// The members as the leader knows them (with each one's log position and whether it
    /// answered lately).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// for member in client.members().await?.members {
    ///     println!("{} voter={}", member.node_id, member.voter);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn members(&self) -> Result<MembersResponse, ClientError> {
        self.members_call(Request::MemberList(MemberListRequest {}))
            .await
    }

    /// Adds a learner reachable at `peer_address`; the answer's `node_id` is the id the cluster
    /// picked. Asking again for the same address answers with the same id.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let added = client.member_add("[::1]:7104", "[::1]:7004").await?;
    /// println!("start it with kv-server --join; its id is {}", added.node_id);
    /// # Ok(()) }
    /// ```
    pub async fn member_add(
        &self,
        peer_address: &str,
        client_address: &str,
    ) -> Result<MembersResponse, ClientError> {
        self.members_call(Request::MemberAdd(MemberAddRequest {
            peer_address: peer_address.to_string(),
            client_address: client_address.to_string(),
        }))
        .await
    }

    /// Makes a caught-up learner a voter.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// client.member_promote(4).await?;
    /// # Ok(()) }
    /// ```
    pub async fn member_promote(&self, node_id: u64) -> Result<MembersResponse, ClientError> {
        self.members_call(Request::MemberPromote(MemberPromoteRequest { node_id }))
            .await
    }

    /// Removes a voter or learner for good (its id is never used again).
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// client.member_remove(2).await?;
    /// # Ok(()) }
    /// ```
    pub async fn member_remove(&self, node_id: u64) -> Result<MembersResponse, ClientError> {
        self.members_call(Request::MemberRemove(MemberRemoveRequest { node_id }))
            .await
    }

    async fn members_call(&self, body: Request) -> Result<MembersResponse, ClientError> {
        match self.request(body).await? {
            Response::Members(members) => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// Sends any request with the routing and retries its kind gets (writes to the leader,
    /// once per sequence; reads where their consistency allows) and returns the whole answer,
    /// header included. Every typed call goes through here. Status requests go through
    /// [`Client::status_of`].
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// # use paxkv_client::{PutRequest, Request};
    /// let answer = client
    ///     .request(Request::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() }))
    ///     .await?;
    /// println!("revision {:?}", answer.header().map(|header| header.revision));
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, body: Request) -> Result<Response, ClientError> {
        let linearizable = |consistency: i32| consistency == Consistency::Linearizable as i32;
        let (write, to_leader) = match &body {
            Request::Put(_)
            | Request::Delete(_)
            | Request::Expire(_)
            | Request::Persist(_)
            | Request::LeaseGrant(_)
            | Request::LeaseKeepAlive(_)
            | Request::LeaseRevoke(_)
            | Request::Txn(_) => (true, true),
            Request::Get(get) => (false, linearizable(get.consistency)),
            Request::Scan(scan) => (false, linearizable(scan.consistency)),
            Request::Ttl(ttl) => (false, linearizable(ttl.consistency)),
            Request::LeaseTimeToLive(lease) => (false, linearizable(lease.consistency)),
            Request::LeaseList(list) => (false, linearizable(list.consistency)),
            // Changes are idempotent (an add by peer address, a promotion of a voter and a
            // removal of a retired id answer as done), so they need no session to retry.
            Request::MemberList(_)
            | Request::MemberAdd(_)
            | Request::MemberPromote(_)
            | Request::MemberRemove(_) => (false, true),
            other => {
                return Err(ClientError::InvalidArgument(
                    format!("{other:?} is not a key-value request").into(),
                ))
            }
        };
        self.call(body, write, to_leader).await
    }

    /// The status of every node, asked all at once, in the order of the endpoints.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// for (endpoint, status) in client.status_all().await {
    ///     println!("{endpoint}: {:?}", status.map(|status| status.role()));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn status_all(&self) -> Vec<(String, Result<StatusResponse, ClientError>)> {
        let asked: Vec<_> = self
            .endpoints()
            .iter()
            .map(|endpoint| {
                let client = self.clone();
                let endpoint = endpoint.clone();
                tokio::spawn(async move { client.status_of(&endpoint).await })
            })
            .collect();
        let mut statuses = Vec::with_capacity(asked.len());
        for (endpoint, answer) in self.endpoints().iter().zip(asked) {
            let status = answer
                .await
                .unwrap_or_else(|error| Err(ClientError::Server(error.to_string().into())));
            statuses.push((endpoint.clone(), status));
        }
        statuses
    }

    /// The status of one node, asked directly.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let status = client.status_of("[::1]:7001").await?;
    /// println!("commit index {}", status.commit_index);
    /// # Ok(()) }
    /// ```
    pub async fn status_of(&self, endpoint: &str) -> Result<StatusResponse, ClientError> {
        self.status_with(endpoint, false).await
    }

    /// The status of one node, with the digest of its applied state if `with_state_hash`.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// let status = client.status_with("[::1]:7001", true).await?;
    /// println!("state digest {}", status.state_hash);
    /// # Ok(()) }
    /// ```
    pub async fn status_with(
        &self,
        endpoint: &str,
        with_state_hash: bool,
    ) -> Result<StatusResponse, ClientError> {
        let body = Request::Status(StatusRequest { with_state_hash });
        let plan = CallPlan {
            body: &body,
            ids: (self.inner.client_id, 0),
            deadline: Instant::now() + self.timeout.min(Duration::from_secs(2)),
            to_leader: false,
        };
        match self.attempt(endpoint, &plan, false).await {
            Attempt::Done(Response::Status(status)) => Ok(status),
            Attempt::Done(other) => Err(unexpected(other)),
            Attempt::Fail(error) => Err(error),
            Attempt::AuthFailed(problem) => Err(ClientError::Authentication(
                format!("{endpoint}: {problem}").into(),
            )),
            Attempt::Retry(problem)
            | Attempt::Silent { problem, .. }
            | Attempt::SilentHint { problem, .. } => Err(ClientError::Unavailable(
                format!("{endpoint}: {problem}").into(),
            )),
        }
    }
}

/// Refuses a request too large for one frame before it is sent: a node would close the
/// connection on it, and retrying could never help.
fn check_frame_size(body: &Request) -> Result<(), ClientError> {
    /// The envelope around the body: three 10-byte varints, the body's tag and length.
    const ENVELOPE_BYTES_MAX: usize = 3 * 11 + 1 + 5;
    let bytes = body.encoded_len() + ENVELOPE_BYTES_MAX;
    if bytes > paxkv_proto::CLIENT_FRAME_BYTES_MAX {
        return Err(ClientError::InvalidArgument(
            format!(
                "the request has {bytes} bytes, more than the {} a frame may carry; values are \
             limited to {} bytes and keys to {}",
                paxkv_proto::CLIENT_FRAME_BYTES_MAX,
                paxkv_proto::VALUE_BYTES_MAX,
                paxkv_proto::KEY_BYTES_MAX
            )
            .into(),
        ));
    }
    Ok(())
}

fn header_revision(header: &Option<paxkv_proto::client::ResponseHeader>) -> u64 {
    header.as_ref().map_or(0, |header| header.revision)
}

fn header_log_time(header: &Option<paxkv_proto::client::ResponseHeader>) -> u64 {
    header.as_ref().map_or(0, |header| header.log_time_ms)
}

fn unexpected(response: Response) -> ClientError {
    ClientError::Server(format!("unexpected answer {response:?}").into())
}

#[cfg(test)]
mod failover_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn put_of(value_bytes: usize) -> Request {
        Request::Put(PutRequest {
            key: b"k".to_vec(),
            value: vec![7; value_bytes],
            ..Default::default()
        })
    }

    #[test]
    fn a_request_larger_than_a_frame_is_refused_before_sending() {
        assert!(check_frame_size(&put_of(paxkv_proto::VALUE_BYTES_MAX)).is_ok());
        let refused = check_frame_size(&put_of(paxkv_proto::CLIENT_FRAME_BYTES_MAX));
        assert!(
            matches!(&refused, Err(ClientError::InvalidArgument(detail)) if detail.message.contains("frame")),
            "{refused:?}"
        );
    }
}
