//! The client listener: bounded connections, size-limited frames, optional proof of the cluster
//! secret, and pipelined requests (many in flight per connection, answered as they complete).

use std::collections::HashMap;

use paxkv_core::kv::error_response;
use paxkv_proto::client::{
    client_request::Body as Request, client_response::Body as Response, AuthChallenge, AuthOk,
    ClientRequest, ClientResponse, ErrorCode,
};
use paxkv_proto::frame::FrameError;
use paxkv_proto::io::{write_frames, FrameReader, IoError};
use paxkv_proto::{FrameCodec, CLIENT_FRAME_BYTES_MAX};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::node::Input;
use crate::router::{Call, Router};
use paxkv_proto::auth::{nonce, ClusterSecret};

/// Client connections at once at most; more are refused. (A client's watches share one
/// connection per node.) The process needs a file descriptor limit above it.
pub const CLIENT_CONNECTIONS_MAX: usize = 16_384;
/// Watches one connection carries at most (each a task on the node); more are refused with
/// ERROR_CODE_BUSY.
pub const WATCHES_PER_CONNECTION_MAX: usize = 16_384;
/// Requests in flight on one connection at most; the reader waits beyond that.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;

fn codec() -> FrameCodec {
    FrameCodec::new(CLIENT_FRAME_BYTES_MAX)
}

/// What a connection needs; `secret` is None when unauthenticated clients are allowed.
#[derive(Clone)]
pub struct ClientPort {
    pub inputs: mpsc::Sender<Input>,
    /// Where requests are served (here or at the leader).
    pub router: Router,
    pub secret: Option<ClusterSecret>,
    /// What the node applies, for the watches on this port (`watch`).
    pub feed: crate::watch::Feed,
}

pub async fn serve(listener: TcpListener, port: ClientPort, shutdown: crate::shutdown::Shutdown) {
    let serve = move |stream| serve_connection(stream, port.clone());
    crate::net::accept_bounded(listener, CLIENT_CONNECTIONS_MAX, "client", shutdown, serve).await;
}

fn answer(request_id: u64, body: Response) -> ClientResponse {
    ClientResponse {
        request_id,
        body: Some(body),
    }
}

async fn serve_connection(stream: TcpStream, port: ClientPort) -> Result<(), IoError> {
    let remote = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    let (read_half, mut write_half) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read_half, codec());
    let (answers, mut outgoing) = mpsc::channel::<ClientResponse>(REQUESTS_IN_FLIGHT_MAX);
    let writer = tokio::spawn(async move {
        while let Some(response) = outgoing.recv().await {
            // Answers of one batch of applied entries come from as many tasks: let the others
            // of them run first, so that they share this write (one system call, not one each).
            tokio::task::yield_now().await;
            let more = || outgoing.try_recv().ok();
            if write_frames(&mut write_half, &codec(), &response, more)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut authenticated = port.secret.is_none();
    let mut pending_challenge: Option<(Vec<u8>, Vec<u8>)> = None;
    // The watches of this connection, by request id, to stop one when asked; all stop when
    // the connection closes (their answers have nowhere to go).
    let mut watches: HashMap<u64, tokio::task::AbortHandle> = HashMap::new();
    let result = loop {
        let request: ClientRequest = match reader.read().await {
            Ok(request) => request,
            Err(IoError::Closed) => break Ok(()),
            Err(IoError::Frame(error)) => {
                // Bad input gets a clear answer, then the connection closes (the stream can no
                // longer be trusted to be in step); the server goes on serving everyone else.
                let code = match error {
                    FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    FrameError::Malformed(_) => ErrorCode::BadRequest,
                };
                tracing::warn!(%remote, %error, "closing a client connection after bad input");
                let message = format!("{error}; closing the connection");
                let _ = answers.send(answer(0, error_response(code, message))).await;
                break Ok(());
            }
            Err(error) => break Err(error),
        };
        let request_id = request.request_id;
        match request.body {
            Some(Request::AuthHello(hello)) => {
                let Some(secret) = &port.secret else {
                    let _ = answers
                        .send(answer(request_id, Response::AuthOk(AuthOk {})))
                        .await;
                    authenticated = true;
                    continue;
                };
                let challenge_nonce = nonce();
                let proof = secret.accept_proof(&hello.nonce, &challenge_nonce);
                pending_challenge = Some((hello.nonce, challenge_nonce.clone()));
                let challenge = AuthChallenge {
                    nonce: challenge_nonce,
                    proof,
                    ..AuthChallenge::default()
                };
                let _ = answers
                    .send(answer(request_id, Response::AuthChallenge(challenge)))
                    .await;
            }
            Some(Request::AuthProof(proof)) => {
                let verified = match (&port.secret, &pending_challenge) {
                    (Some(secret), Some((hello_nonce, challenge_nonce))) => {
                        secret.verify_connect_proof(challenge_nonce, hello_nonce, &proof.proof)
                    }
                    (None, _) => true,
                    (Some(_), None) => false,
                };
                if !verified {
                    tracing::warn!(%remote, "refused a client: wrong cluster secret");
                    let error = error_response(
                        ErrorCode::Unauthenticated,
                        "wrong cluster secret; check --cluster-secret-file or PAXKV_CLUSTER_SECRET",
                    );
                    let _ = answers.send(answer(request_id, error)).await;
                    break Ok(());
                }
                authenticated = true;
                let _ = answers
                    .send(answer(request_id, Response::AuthOk(AuthOk {})))
                    .await;
            }
            body if !authenticated => {
                let _ = body;
                let error = error_response(
                    ErrorCode::Unauthenticated,
                    "this cluster requires the cluster secret; pass --cluster-secret-file or set \
                     PAXKV_CLUSTER_SECRET",
                );
                let _ = answers.send(answer(request_id, error)).await;
                break Ok(());
            }
            Some(Request::Watch(watch)) => {
                if watches.len() >= WATCHES_PER_CONNECTION_MAX {
                    watches.retain(|_, task| !task.is_finished());
                }
                if watches.len() >= WATCHES_PER_CONNECTION_MAX {
                    let message = format!(
                        "this connection carries {WATCHES_PER_CONNECTION_MAX} watches already; \
                         stop one or open another connection"
                    );
                    let _ = answers
                        .send(answer(request_id, error_response(ErrorCode::Busy, message)))
                        .await;
                    continue;
                }
                let (feed, inputs) = (port.feed.clone(), port.inputs.clone());
                let task = tokio::spawn(crate::watch::run(
                    request_id,
                    watch,
                    feed,
                    inputs,
                    answers.clone(),
                ));
                if let Some(replaced) = watches.insert(request_id, task.abort_handle()) {
                    replaced.abort();
                }
            }
            Some(Request::WatchCancel(cancel)) => {
                if let Some(task) = watches.remove(&cancel.watch_request_id) {
                    task.abort();
                }
            }
            body => {
                let call = Call {
                    client_id: request.client_id,
                    sequence: request.sequence,
                    body,
                    forwarded: request.forwarded,
                };
                dispatch(&port.router, request_id, call, answers.clone()).await;
            }
        }
    };
    for task in watches.values() {
        task.abort();
    }
    drop(answers);
    let _ = writer.await;
    result
}

/// Hands the request to where it is served (this node, or the leader: `router`) in the order
/// the connection read it, and answers it when done without holding up the requests behind it.
async fn dispatch(
    router: &Router,
    request_id: u64,
    call: Call,
    answers: mpsc::Sender<ClientResponse>,
) {
    let pending = router.submit(call).await;
    tokio::spawn(async move {
        let body = pending.answer().await;
        let _ = answers.send(answer(request_id, body)).await;
    });
}
