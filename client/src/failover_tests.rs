//! The client against nodes played by the test: silent ones (a frozen process keeps its
//! connections open and answers nothing), slow ones, and followers whose hints name them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paxkv_proto::client::{
    AuthOk, ClientRequest, ClientResponse, Error as ErrorAnswer, GetResponse, PutResponse,
    RegisterSessionResponse,
};
use paxkv_proto::io::{write_frame, FrameReader};
use paxkv_proto::{FrameCodec, CLIENT_FRAME_BYTES_MAX};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::*;

/// The session id every played node hands out.
const PLAYED_SESSION: u64 = 42;

/// What a played node does with the n-th request it gets (counting from 0).
enum Reply {
    Silent,
    Now(Response),
    After(Duration, Response),
}

struct PlayedNode {
    endpoint: String,
    requests: Arc<Mutex<Vec<ClientRequest>>>,
}

impl PlayedNode {
    async fn start(behaviour: impl Fn(usize) -> Reply + Send + Sync + 'static) -> PlayedNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (behaviour, seen) = (Arc::new(behaviour), requests.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(stream, behaviour.clone(), seen.clone()));
            }
        });
        PlayedNode { endpoint, requests }
    }

    fn requests(&self) -> Vec<(u64, u64)> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .map(|request| (request.client_id, request.sequence))
            .collect()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    behaviour: Arc<impl Fn(usize) -> Reply + Send + Sync + 'static>,
    seen: Arc<Mutex<Vec<ClientRequest>>>,
) {
    let codec = FrameCodec::new(CLIENT_FRAME_BYTES_MAX);
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read_half, codec);
    let writer = Arc::new(tokio::sync::Mutex::new(write_half));
    while let Ok(request) = reader.read::<ClientRequest>().await {
        let reply = match &request.body {
            Some(Request::AuthHello(_)) => Reply::Now(Response::AuthOk(AuthOk {})),
            // Every played node registers sessions at once, whatever it does with the writes
            // the tests are about.
            Some(Request::RegisterSession(_)) => {
                Reply::Now(Response::RegisterSession(RegisterSessionResponse {
                    header: None,
                    client_id: PLAYED_SESSION,
                }))
            }
            _ => {
                let mut seen = seen.lock().unwrap();
                seen.push(request.clone());
                behaviour(seen.len() - 1)
            }
        };
        let (delay, body) = match reply {
            Reply::Silent => continue,
            Reply::Now(body) => (Duration::ZERO, body),
            Reply::After(delay, body) => (delay, body),
        };
        let writer = writer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let answer = ClientResponse {
                request_id: request.request_id,
                body: Some(body),
            };
            let _ = write_frame(&mut *writer.lock().await, &codec, &answer).await;
        });
    }
}

fn put_served_by(node: u64) -> Response {
    Response::Put(PutResponse {
        header: Some(ResponseHeader {
            revision: 7,
            served_by: node,
            log_time_ms: 0,
            applied_index: 7,
            leader_address: String::new(),
        }),
        succeeded: true,
        previous: None,
    })
}

/// A get answered by the leader `served_by`, passed on by the node asked if `leader_address`
/// is set (as a follower marks what it passed on).
fn get_served_by(served_by: u64, leader_address: &str) -> Response {
    Response::Get(GetResponse {
        header: Some(ResponseHeader {
            revision: 7,
            served_by,
            log_time_ms: 0,
            applied_index: 7,
            leader_address: leader_address.to_string(),
        }),
        kv: None,
    })
}

#[tokio::test]
async fn an_answer_passed_on_by_a_follower_sends_the_next_request_to_the_leader() {
    let leader = PlayedNode::start(|_| Reply::Now(get_served_by(2, ""))).await;
    let address = leader.endpoint.clone();
    let follower = PlayedNode::start(move |_| Reply::Now(get_served_by(2, &address))).await;
    // The follower first: the client starts with it.
    let client = client(&[&follower, &leader], Duration::from_secs(5));
    for _ in 0..3 {
        client
            .get(b"k", ReadConsistency::Linearizable)
            .await
            .unwrap();
    }
    assert_eq!(
        follower.requests().len(),
        1,
        "only the first went through it"
    );
    assert_eq!(leader.requests().len(), 2);
}

fn not_leader(hint: &str) -> Response {
    Response::Error(ErrorAnswer {
        code: ErrorCode::NotLeader as i32,
        message: "not the leader".into(),
        leader_id: 1,
        leader_address: hint.to_string(),
    })
}

fn client(endpoints: &[&PlayedNode], timeout: Duration) -> Client {
    let mut config =
        ClientConfig::new(endpoints.iter().map(|node| node.endpoint.clone()).collect());
    config.timeout = timeout;
    config.attempt_timeout = Duration::from_millis(200);
    Client::new(config).unwrap()
}

#[tokio::test]
async fn a_silent_leader_costs_one_attempt_and_the_retry_keeps_the_sequence() {
    let frozen = PlayedNode::start(|_| Reply::Silent).await;
    let serving = PlayedNode::start(|_| Reply::Now(put_served_by(2))).await;
    let client = client(&[&frozen, &serving], Duration::from_secs(10));
    let started = Instant::now();
    let put = client.put(b"k", b"v", PutOptions::default()).await.unwrap();
    assert_eq!(put.revision, 7);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(frozen.requests().len(), 1);
    assert_eq!(
        frozen.requests(),
        serving.requests(),
        "the retry carries the same (client id, sequence), so the write applies once"
    );
    // The node that answered is the leader now; the silent one is not asked again.
    let started = Instant::now();
    client.put(b"k", b"v", PutOptions::default()).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(frozen.requests().len(), 1);
    assert_eq!(serving.requests().len(), 2);
}

#[tokio::test]
async fn a_hint_naming_a_node_that_just_went_silent_is_not_followed_back_into_it() {
    const ELECTED_AFTER: Duration = Duration::from_millis(600);
    let frozen = PlayedNode::start(|_| Reply::Silent).await;
    let hint = frozen.endpoint.clone();
    let started = Instant::now();
    // A follower that names the frozen leader until it has been elected itself.
    let follower = PlayedNode::start(move |_| {
        if started.elapsed() < ELECTED_AFTER {
            Reply::Now(not_leader(&hint))
        } else {
            Reply::Now(put_served_by(2))
        }
    })
    .await;
    let client = client(&[&follower], Duration::from_secs(10));
    client.put(b"k", b"v", PutOptions::default()).await.unwrap();
    assert_eq!(
        frozen.requests().len(),
        2,
        "one attempt at the silent node and one request on the side, not one per hint"
    );
    // Meanwhile the client asks the follower again after a pause each time, not in a busy loop.
    let asked = follower.requests().len();
    let pauses_max = (ELECTED_AFTER.as_millis() / RETRY_PAUSE.as_millis()) as usize;
    assert!((2..=pauses_max + 2).contains(&asked), "{asked} requests");
    assert!(
        started.elapsed() < ELECTED_AFTER + Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_late_answer_from_a_slow_leader_still_ends_the_call() {
    let slow =
        PlayedNode::start(|_| Reply::After(Duration::from_millis(500), put_served_by(1))).await;
    let hint = slow.endpoint.clone();
    let follower = PlayedNode::start(move |_| Reply::Now(not_leader(&hint))).await;
    let client = client(&[&slow, &follower], Duration::from_secs(10));
    let started = Instant::now();
    let put = client
        .request(Request::Put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        put.header().unwrap().served_by,
        1,
        "answered by the slow node"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(900),
        "the first attempt's answer at 500 ms ends the call: took {took:?}"
    );
    assert_eq!(
        slow.requests().len(),
        2,
        "one attempt and one request on the side, not one per hint"
    );
    let silent = client.inner.silent.lock().unwrap();
    assert!(
        !silent.avoids(&slow.endpoint, Instant::now()),
        "a node that answers is trusted again at once"
    );
}

#[tokio::test]
async fn a_node_that_went_silent_and_came_back_serves_as_soon_as_a_hint_names_it() {
    // Silent for its first request (a pause), then the leader again.
    let paused = PlayedNode::start(|index| match index {
        0 => Reply::Silent,
        _ => Reply::Now(put_served_by(1)),
    })
    .await;
    let hint = paused.endpoint.clone();
    let follower = PlayedNode::start(move |_| Reply::Now(not_leader(&hint))).await;
    let client = client(&[&paused, &follower], Duration::from_secs(10));
    let started = Instant::now();
    client.put(b"k", b"v", PutOptions::default()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "one attempt (200 ms), then the follower's hint; not the whole avoidance ({:?}): took {:?}",
        SILENT_NODE_AVOIDANCE,
        started.elapsed()
    );
    assert_eq!(paused.requests().len(), 2);
    assert_eq!(follower.requests().len(), 1);
}

#[tokio::test]
async fn when_no_node_answers_the_error_names_each_and_says_the_write_may_have_applied() {
    let first = PlayedNode::start(|_| Reply::Silent).await;
    let second = PlayedNode::start(|_| Reply::Silent).await;
    let client = client(&[&first, &second], Duration::from_secs(1));
    let started = Instant::now();
    let error = client
        .put(b"k", b"v", PutOptions::default())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1500));
    let ClientError::Timeout(detail) = &error else {
        panic!("{error:?}")
    };
    let message = &detail.message;
    assert!(message.contains(&first.endpoint), "{message}");
    assert!(message.contains(&second.endpoint), "{message}");
    assert!(message.contains("no answer in"), "{message}");
    assert!(
        message.contains("may or may not have taken effect"),
        "{message}"
    );
    // Every attempt carried the same session and sequence.
    let mut sent = first.requests();
    sent.extend(second.requests());
    sent.dedup();
    assert_eq!(sent.len(), 1, "{sent:?}");
}

#[tokio::test]
async fn a_call_shorter_than_an_attempt_does_not_mark_the_node_silent() {
    let slow = PlayedNode::start(|_| Reply::Silent).await;
    let mut config = ClientConfig::new(vec![slow.endpoint.clone()]);
    config.timeout = Duration::from_millis(300);
    let client = Client::new(config).unwrap();
    let error = client
        .get(b"k", ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Unavailable(_)), "{error:?}");
    let silent = client.inner.silent.lock().unwrap();
    assert!(!silent.avoids(&slow.endpoint, Instant::now()));
}

fn session_expired() -> Response {
    Response::Error(ErrorAnswer {
        code: ErrorCode::SessionExpired as i32,
        message: "session 42 is not known".into(),
        leader_id: 0,
        leader_address: String::new(),
    })
}

/// A write refused at its very first attempt for a forgotten session was not applied: the
/// client registers a new session and sends it again, and the caller sees only the success.
#[tokio::test]
async fn a_write_refused_at_once_for_a_forgotten_session_is_sent_again_under_a_new_one() {
    let node = PlayedNode::start(|n| match n {
        0 => Reply::Now(session_expired()),
        _ => Reply::Now(put_served_by(1)),
    })
    .await;
    let client = client(&[&node], Duration::from_secs(5));
    client
        .put(b"k", b"v", PutOptions::default())
        .await
        .expect("sent again under a new session");
    assert_eq!(node.requests().len(), 2, "{:?}", node.requests());
}

/// After an attempt that may have reached a node, a refusal for a forgotten session means the
/// outcome is unknown: the client says so instead of sending the write again as new.
#[tokio::test]
async fn a_forgotten_session_after_an_earlier_attempt_is_an_unknown_outcome() {
    let frozen = PlayedNode::start(|_| Reply::Silent).await;
    let forgetful = PlayedNode::start(|_| Reply::Now(session_expired())).await;
    let client = client(&[&frozen, &forgetful], Duration::from_secs(5));
    let error = client
        .put(b"k", b"v", PutOptions::default())
        .await
        .expect_err("the outcome is unknown");
    assert!(matches!(error, ClientError::SessionExpired(_)), "{error:?}");
    assert_eq!(forgetful.requests().len(), 1, "not sent again as new");
}

fn error_answer(code: ErrorCode, message: &str) -> Response {
    Response::Error(ErrorAnswer {
        code: code as i32,
        message: message.into(),
        leader_id: 0,
        leader_address: String::new(),
    })
}

#[tokio::test]
async fn errors_carry_the_nodes_code_and_the_leader_it_named() {
    // A node's refusal keeps its code.
    let refusing =
        PlayedNode::start(|_| Reply::Now(error_answer(ErrorCode::NotFound, "lease 5 not found")))
            .await;
    let refused = client(&[&refusing], Duration::from_secs(2));
    let error = refused.lease_keep_alive(5).await.unwrap_err();
    assert!(matches!(error, ClientError::NotFound(_)), "{error:?}");
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    assert_eq!(error.message(), "lease 5 not found");
    // A follower names a leader that never answers: the call that gives up says where the
    // leader was said to be, and that no node answered with a code.
    let leader = PlayedNode::start(|_| Reply::Silent).await;
    let hint = leader.endpoint.clone();
    let follower = PlayedNode::start(move |_| {
        Reply::Now(Response::Error(ErrorAnswer {
            code: ErrorCode::NotLeader as i32,
            message: "not the leader".into(),
            leader_id: 7,
            leader_address: hint.clone(),
        }))
    })
    .await;
    let client = client(&[&follower], Duration::from_millis(700));
    let error = client
        .get(b"k", ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Unavailable(_)), "{error:?}");
    assert_eq!(error.code(), None);
    assert_eq!(
        error.leader(),
        Some(&LeaderHint::new(7, leader.endpoint.clone()))
    );
}

#[tokio::test]
async fn a_client_with_its_own_timeout_shares_the_connections_and_gives_up_sooner() {
    let frozen = PlayedNode::start(|_| Reply::Silent).await;
    let client = client(&[&frozen], Duration::from_secs(10));
    let quick = client.with_timeout(Duration::from_millis(300));
    assert_eq!(
        (client.timeout(), quick.timeout()),
        (Duration::from_secs(10), Duration::from_millis(300))
    );
    let started = Instant::now();
    let error = quick.get(b"k", ReadConsistency::Stale).await.unwrap_err();
    assert!(matches!(error, ClientError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// Collects the message of every event (and its fields) emitted on this thread.
#[derive(Default, Clone)]
struct Events(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut text = Text(format!("{} ", event.metadata().level()));
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn retries_and_leader_changes_are_debug_events() {
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let leader = PlayedNode::start(|_| Reply::Now(put_served_by(2))).await;
    let hint = leader.endpoint.clone();
    let follower = PlayedNode::start(move |_| Reply::Now(not_leader(&hint))).await;
    let client = client(&[&follower], Duration::from_secs(5));
    client.put(b"k", b"v", PutOptions::default()).await.unwrap();
    let seen = events.0.lock().unwrap().clone();
    let with = |words: &[&str]| {
        seen.iter().any(|event| {
            event.starts_with("DEBUG") && words.iter().all(|word| event.contains(word))
        })
    };
    assert!(
        with(&["paxkv call retrying", &follower.endpoint, "not the leader"]),
        "{seen:#?}"
    );
    assert!(
        with(&["paxkv leader changed", &leader.endpoint]),
        "{seen:#?}"
    );
}

/// A connection on which a request waits `ANSWER_SILENCE_MAX` with nothing read is closed, so
/// that the next request opens a new one: a node passing requests on to its leader kept, after
/// a partition healed, a connection whose frames the transport was still backing off to resend
/// (planted bug forward-silence-ignored). One opened without the limit stays open.
#[tokio::test]
async fn a_connection_whose_requests_wait_without_an_answer_is_closed() {
    let node = PlayedNode::start(|_| Reply::Silent).await;
    let far = Instant::now() + Duration::from_secs(60);
    let limited = Connection::open(&node.endpoint, None, far).await.unwrap();
    let unlimited = Connection::open_with_silence_limit(&node.endpoint, None, far, None)
        .await
        .unwrap();
    let request = |request_id| ClientRequest {
        request_id,
        forwarded: false,
        client_id: 0,
        sequence: 0,
        body: Some(Request::Get(GetRequest {
            key: b"k".to_vec(),
            ..GetRequest::default()
        })),
    };
    let sent = Instant::now();
    let limited_answer = limited.send(request(1), far).await.unwrap();
    let mut unlimited_answer = unlimited.send(request(2), far).await.unwrap();
    let lost = tokio::time::timeout(ANSWER_SILENCE_MAX * 5, limited_answer)
        .await
        .expect("the silent connection is closed");
    assert!(lost.is_err(), "the waiting request fails as lost");
    assert!(sent.elapsed() >= ANSWER_SILENCE_MAX, "{:?}", sent.elapsed());
    assert!(!limited.is_open());
    assert!(unlimited.is_open());
    assert!(unlimited_answer
        .try_recv()
        .is_err_and(|error| error == tokio::sync::oneshot::error::TryRecvError::Empty));
}
