//! One pipelined connection to one node: many requests in flight, answers matched by id.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paxkv_proto::auth::{nonce, ClusterSecret};
use paxkv_proto::client::{
    client_request::Body as Request, client_response::Body as Response, AuthHello, AuthProof,
    ClientRequest, ClientResponse,
};
use paxkv_proto::io::{write_frame, write_frames, FrameReader, IoError};
use paxkv_proto::{FrameCodec, CLIENT_FRAME_BYTES_MAX};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Requests waiting to be written on one connection at most.
const QUEUE_MAX: usize = 1024;
/// Connecting to one node may take this long at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection with requests waiting that reads nothing for this long is closed (its
/// waiting requests fail as lost), so that the next request opens a new one. A node answers a
/// request within an election timeout or two (a session read waits 600 ms at most), so such a
/// connection is dead: after a partition, frames sent into it can stay queued behind the
/// transport's retransmission backoff for seconds after the heal. (A node passing requests on
/// to its leader kept one for 9 s after a heal in the simulator.)
pub const ANSWER_SILENCE_MAX: Duration = Duration::from_secs(2);

type Call = (ClientRequest, oneshot::Sender<Response>);

/// Why a connection to one node could not be opened. The messages are the ones callers show.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No TCP connection within `CONNECT_TIMEOUT` (or the call's deadline).
    #[error("connect timed out")]
    ConnectTimedOut,
    /// The operating system could not connect (refused, unreachable, bad address).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The connected socket could not be set up.
    #[error("{0}")]
    Socket(std::io::Error),
    /// The node did not finish the handshake in time (a frozen process still accepts).
    #[error("authentication timed out")]
    HandshakeTimedOut,
    /// Reading or writing a handshake frame failed.
    #[error("{0}")]
    Transport(IoError),
    /// The node answered the handshake with something else than the handshake (shown).
    #[error("unexpected answer to the handshake: {0}")]
    Protocol(String),
    /// The node asks for the cluster secret and this client has none.
    #[error(
        "the cluster requires the cluster secret; pass --cluster-secret-file or set \
         PAXKV_CLUSTER_SECRET"
    )]
    SecretRequired,
    /// The node's proof does not match our secret: one of the two is wrong.
    #[error("the node could not prove the cluster secret: wrong cluster secret (ours or theirs)")]
    WrongSecret,
    /// The node refused our proof, with its message.
    #[error("refused: {0} (wrong cluster secret?)")]
    ProofRefused(String),
}

impl ConnectError {
    /// True if the node and this client do not share the cluster secret (either side may be
    /// wrong), as opposed to a node that cannot be reached right now.
    pub fn is_authentication(&self) -> bool {
        match self {
            ConnectError::SecretRequired
            | ConnectError::WrongSecret
            | ConnectError::ProofRefused(_) => true,
            ConnectError::ConnectTimedOut
            | ConnectError::Connect(_)
            | ConnectError::Socket(_)
            | ConnectError::HandshakeTimedOut
            | ConnectError::Transport(_)
            | ConnectError::Protocol(_) => false,
        }
    }
}

pub struct Connection {
    calls: mpsc::Sender<Call>,
    open: Arc<AtomicBool>,
}

/// Time left until `deadline` (`timeout_at` is not available under the simulator).
pub(crate) fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn codec() -> FrameCodec {
    FrameCodec::new(CLIENT_FRAME_BYTES_MAX)
}

/// The two halves of an authenticated connection.
pub(crate) type Halves = (
    FrameReader<tokio::io::ReadHalf<TcpStream>>,
    tokio::io::WriteHalf<TcpStream>,
);

/// Connects to `endpoint` and proves the cluster secret (if the node asks for it).
pub(crate) async fn open_halves(
    endpoint: &str,
    secret: Option<&ClusterSecret>,
    deadline: Instant,
) -> Result<Halves, ConnectError> {
    let limit = deadline.min(Instant::now() + CONNECT_TIMEOUT);
    let stream = tokio::time::timeout(until(limit), TcpStream::connect(endpoint))
        .await
        .map_err(|_| ConnectError::ConnectTimedOut)?
        .map_err(ConnectError::Connect)?;
    stream.set_nodelay(true).map_err(ConnectError::Socket)?;
    let (read_half, mut write_half) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read_half, codec());
    tokio::time::timeout(
        until(limit),
        authenticate(&mut reader, &mut write_half, secret),
    )
    .await
    .map_err(|_| ConnectError::HandshakeTimedOut)??;
    Ok((reader, write_half))
}

/// Sends one request on a stream of one's own (a watch).
pub(crate) async fn write_request(
    writer: &mut tokio::io::WriteHalf<TcpStream>,
    request: &ClientRequest,
) -> Result<(), IoError> {
    write_frame(writer, &codec(), request).await
}

impl Connection {
    /// Connects and proves the cluster secret (if the node asks for it).
    pub async fn open(
        endpoint: &str,
        secret: Option<&ClusterSecret>,
        deadline: Instant,
    ) -> Result<Connection, ConnectError> {
        Connection::open_with_silence_limit(endpoint, secret, deadline, Some(ANSWER_SILENCE_MAX))
            .await
    }

    /// `open`, closing the connection once requests have waited `silence_limit` with nothing
    /// read (None: never; only the simulator's planted bug asks for that).
    pub async fn open_with_silence_limit(
        endpoint: &str,
        secret: Option<&ClusterSecret>,
        deadline: Instant,
        silence_limit: Option<Duration>,
    ) -> Result<Connection, ConnectError> {
        let (reader, write_half) = open_halves(endpoint, secret, deadline).await?;
        let (calls, receiver) = mpsc::channel(QUEUE_MAX);
        let open = Arc::new(AtomicBool::new(true));
        tokio::spawn(run(
            reader,
            write_half,
            receiver,
            open.clone(),
            silence_limit,
        ));
        Ok(Connection { calls, open })
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Queues `request`; its answer arrives on the returned receiver (which fails if the
    /// connection is lost first). Waits for room in the queue until `deadline` at most: a node
    /// that reads nothing (a frozen process) fills it.
    pub async fn send(
        &self,
        request: ClientRequest,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<Response>, String> {
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout(until(deadline), self.calls.send((request, reply))).await {
            Ok(Ok(())) => Ok(answer),
            Ok(Err(_)) => Err("connection closed".into()),
            Err(_) => Err("the connection's queue stayed full until the deadline".into()),
        }
    }
}

async fn authenticate<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    secret: Option<&ClusterSecret>,
) -> Result<(), ConnectError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let hello_nonce = nonce();
    let hello = ClientRequest {
        request_id: 0,
        forwarded: false,
        client_id: 0,
        sequence: 0,
        body: Some(Request::AuthHello(AuthHello {
            nonce: hello_nonce.clone(),
            ..AuthHello::default()
        })),
    };
    write_frame(writer, &codec(), &hello)
        .await
        .map_err(ConnectError::Transport)?;
    let answer: ClientResponse = reader.read().await.map_err(ConnectError::Transport)?;
    let challenge = match answer.body {
        Some(Response::AuthOk(_)) => return Ok(()),
        Some(Response::AuthChallenge(challenge)) => challenge,
        other => return Err(ConnectError::Protocol(format!("{other:?}"))),
    };
    let Some(secret) = secret else {
        return Err(ConnectError::SecretRequired);
    };
    if !secret.verify_accept_proof(&hello_nonce, &challenge.nonce, &challenge.proof) {
        return Err(ConnectError::WrongSecret);
    }
    let proof = ClientRequest {
        request_id: 0,
        forwarded: false,
        client_id: 0,
        sequence: 0,
        body: Some(Request::AuthProof(AuthProof {
            proof: secret.connect_proof(&challenge.nonce, &hello_nonce),
            refused: String::new(),
        })),
    };
    write_frame(writer, &codec(), &proof)
        .await
        .map_err(ConnectError::Transport)?;
    let answer: ClientResponse = reader.read().await.map_err(ConnectError::Transport)?;
    match answer.body {
        Some(Response::AuthOk(_)) => Ok(()),
        Some(Response::Error(error)) => Err(ConnectError::ProofRefused(error.message)),
        other => Err(ConnectError::Protocol(format!("{other:?}"))),
    }
}

/// The limit on a silence and its timer, which is moved on only when it fires (at most once
/// per limit), not on every frame read.
type SilenceTimer = (Duration, std::pin::Pin<Box<tokio::time::Sleep>>);

/// Sleeps until the timer fires, or for ever without one.
async fn fires(silence: &mut Option<SilenceTimer>) {
    match silence {
        Some((_, timer)) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn run<R, W>(
    mut reader: FrameReader<R>,
    mut writer: W,
    mut calls: mpsc::Receiver<Call>,
    open: Arc<AtomicBool>,
    silence_limit: Option<Duration>,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut waiting: BTreeMap<u64, oneshot::Sender<Response>> = BTreeMap::new();
    // Since when requests have waited with nothing read (the last frame read, or the moment
    // the first of them was sent).
    let mut quiet_since = Instant::now();
    let mut silence: Option<SilenceTimer> =
        silence_limit.map(|limit| (limit, Box::pin(tokio::time::sleep(limit))));
    loop {
        tokio::select! {
            biased;
            call = calls.recv() => {
                let Some((request, reply)) = call else { break };
                if waiting.is_empty() {
                    quiet_since = Instant::now();
                }
                waiting.insert(request.request_id, reply);
                // Callers on other tasks are often about to send too (a burst of requests, or
                // the next ones of a pipeline): let them run first, so that their requests
                // share this write (one system call, not one each).
                tokio::task::yield_now().await;
                let more = || {
                    let (request, reply) = calls.try_recv().ok()?;
                    waiting.insert(request.request_id, reply);
                    Some(request)
                };
                if write_frames(&mut writer, &codec(), &request, more).await.is_err() {
                    break;
                }
            }
            answer = reader.read::<ClientResponse>() => {
                let Ok(answer) = answer else { break };
                quiet_since = Instant::now();
                let Some(body) = answer.body else { continue };
                if answer.request_id == 0 {
                    // A connection-level error (bad frame): it concerns every request.
                    for (_, reply) in std::mem::take(&mut waiting) {
                        let _ = reply.send(body.clone());
                    }
                } else if let Some(reply) = waiting.remove(&answer.request_id) {
                    let _ = reply.send(body);
                }
            }
            // Last: an answer already readable is taken first.
            () = fires(&mut silence), if !waiting.is_empty() => {
                if let Some((limit, timer)) = silence.as_mut() {
                    let silent_until = quiet_since + *limit;
                    if Instant::now() >= silent_until {
                        break;
                    }
                    timer.as_mut().reset(silent_until);
                }
            }
        }
    }
    open.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers show these messages (and tests of the servers and the Python client match on
    /// them): the enum must keep them as they were when they were strings.
    #[test]
    fn connect_errors_keep_their_messages_and_only_secret_mismatches_are_authentication() {
        let cases = [
            (ConnectError::ConnectTimedOut, "connect timed out", false),
            (
                ConnectError::Connect(std::io::ErrorKind::ConnectionRefused.into()),
                "cannot connect: connection refused",
                false,
            ),
            (ConnectError::HandshakeTimedOut, "authentication timed out", false),
            (
                ConnectError::Protocol("None".into()),
                "unexpected answer to the handshake: None",
                false,
            ),
            (
                ConnectError::SecretRequired,
                "the cluster requires the cluster secret; pass --cluster-secret-file or set \
                 PAXKV_CLUSTER_SECRET",
                true,
            ),
            (
                ConnectError::WrongSecret,
                "the node could not prove the cluster secret: wrong cluster secret (ours or theirs)",
                true,
            ),
            (
                ConnectError::ProofRefused("bad proof".into()),
                "refused: bad proof (wrong cluster secret?)",
                true,
            ),
        ];
        for (error, message, authentication) in cases {
            assert_eq!(error.to_string(), message);
            assert_eq!(error.is_authentication(), authentication, "{message}");
        }
    }
}
