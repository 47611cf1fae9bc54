//! Peer transport: one outbound TCP connection per peer carrying our messages to it, and a
//! listener for the peers' connections carrying theirs to us. Every connection starts with a
//! mutual proof of the cluster secret; a peer without it is refused and logged.
//!
//! Outboxes are bounded and never block the node loop: when a peer is slow or gone its outbox
//! fills and further messages are dropped (the protocol retransmits what matters).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paxkv_core::NodeId;
use paxkv_proto::client::{
    client_response::Body as Response, AuthChallenge, AuthHello, AuthOk, AuthProof, ErrorCode,
};
use paxkv_proto::io::{write_frame, write_frames, FrameReader, IoError};
use paxkv_proto::peer::PeerMessage;
use paxkv_proto::{FrameCodec, PEER_FRAME_BYTES_MAX};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::node::Input;
use paxkv_proto::auth::{nonce, ClusterSecret};

/// Messages queued for one peer at most; more are dropped.
pub const OUTBOX_MESSAGES_MAX: usize = 4096;
/// Inbound peer connections at once at most.
pub const PEER_CONNECTIONS_MAX: usize = 64;
/// A handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Who the peers are, how to reach them, and their client addresses (learned in handshakes).
pub struct PeerDirectory {
    me: NodeId,
    my_client_address: String,
    outboxes: BTreeMap<NodeId, mpsc::Sender<PeerMessage>>,
    client_addresses: Mutex<BTreeMap<NodeId, String>>,
}

impl PeerDirectory {
    pub fn send(&self, to: NodeId, message: PeerMessage) {
        if let Some(outbox) = self.outboxes.get(&to) {
            let _ = outbox.try_send(message);
        }
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.outboxes.contains_key(&id)
    }

    pub fn client_address(&self, id: NodeId) -> Option<String> {
        if id == self.me {
            return Some(self.my_client_address.clone());
        }
        self.client_addresses
            .lock()
            .expect("the address map is never poisoned")
            .get(&id)
            .cloned()
    }

    fn learn_client_address(&self, id: NodeId, address: String) {
        if !address.is_empty() {
            self.client_addresses
                .lock()
                .expect("the address map is never poisoned")
                .insert(id, address);
        }
    }

    /// Completes a NotLeader answer with the leader's client address, if known.
    pub fn fill_leader_address(&self, response: &mut Response) {
        if let Response::Error(error) = response {
            if error.code == ErrorCode::NotLeader as i32 && error.leader_id != 0 {
                if let Some(address) = self.client_address(NodeId(error.leader_id)) {
                    error.message = format!("{}; the leader is at {address}", error.message);
                    error.leader_address = address;
                }
            }
        }
    }
}

/// Creates the outboxes and starts one dialing task per peer.
pub fn start_outbound(
    span: tracing::Span,
    me: NodeId,
    my_client_address: String,
    peers: &BTreeMap<NodeId, SocketAddr>,
    secret: ClusterSecret,
    shutdown: crate::shutdown::Shutdown,
) -> Arc<PeerDirectory> {
    let mut outboxes = BTreeMap::new();
    let mut receivers = Vec::new();
    for (id, address) in peers {
        if *id == me {
            continue;
        }
        let (sender, receiver) = mpsc::channel(OUTBOX_MESSAGES_MAX);
        outboxes.insert(*id, sender);
        receivers.push((*id, *address, receiver));
    }
    let directory = Arc::new(PeerDirectory {
        me,
        my_client_address,
        outboxes,
        client_addresses: Mutex::new(BTreeMap::new()),
    });
    for (id, address, receiver) in receivers {
        let task = dial(
            directory.clone(),
            id,
            address,
            receiver,
            secret.clone(),
            shutdown.clone(),
        );
        tokio::spawn(tracing::Instrument::instrument(task, span.clone()));
    }
    directory
}

fn codec() -> FrameCodec {
    FrameCodec::new(PEER_FRAME_BYTES_MAX)
}

/// Keeps a connection to one peer up and drains its outbox into it.
async fn dial(
    directory: Arc<PeerDirectory>,
    peer: NodeId,
    address: SocketAddr,
    mut outbox: mpsc::Receiver<PeerMessage>,
    secret: ClusterSecret,
    shutdown: crate::shutdown::Shutdown,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let session = async {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (read_half, mut write_half) = tokio::io::split(stream);
            let mut reader = FrameReader::new(read_half, codec());
            handshake_as_connector(&directory, peer, &secret, &mut reader, &mut write_half).await?;
            tracing::info!(%peer, %address, "connected to peer");
            while let Some(message) = outbox.recv().await {
                let more = || outbox.try_recv().ok();
                write_frames(&mut write_half, &codec(), &message, more).await?;
            }
            Ok::<(), IoError>(())
        };
        tokio::select! {
            biased;
            result = session => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %address, %error, "peer connection lost; retrying");
                }
            }
            _ = shutdown.stopped() => return,
        }
        if shutdown.is_stopped() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn handshake_as_connector<R, W>(
    directory: &PeerDirectory,
    peer: NodeId,
    secret: &ClusterSecret,
    reader: &mut FrameReader<R>,
    writer: &mut W,
) -> Result<(), IoError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let refused = |why: &str| {
        IoError::Io(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            why.to_string(),
        ))
    };
    let hello = AuthHello {
        nonce: nonce(),
        node_id: directory.me.0,
        client_address: directory.my_client_address.clone(),
    };
    write_frame(writer, &codec(), &hello).await?;
    let challenge: AuthChallenge = timed(reader.read()).await?;
    if challenge.node_id != peer.0
        || !secret.verify_accept_proof(&hello.nonce, &challenge.nonce, &challenge.proof)
    {
        tracing::warn!(%peer, "peer failed to prove the cluster secret; not sending to it");
        return Err(refused("peer failed to prove the cluster secret"));
    }
    directory.learn_client_address(peer, challenge.client_address.clone());
    let proof = AuthProof {
        proof: secret.connect_proof(&challenge.nonce, &hello.nonce),
    };
    write_frame(writer, &codec(), &proof).await?;
    let _: AuthOk = timed(reader.read()).await?;
    Ok(())
}

async fn timed<T>(
    future: impl std::future::Future<Output = Result<T, IoError>>,
) -> Result<T, IoError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, future)
        .await
        .map_err(|_| IoError::Io(std::io::ErrorKind::TimedOut.into()))?
}

/// Accepts peers' connections and feeds their messages to the node loop.
pub async fn serve_inbound(
    listener: TcpListener,
    directory: Arc<PeerDirectory>,
    secret: ClusterSecret,
    inputs: mpsc::Sender<Input>,
    shutdown: crate::shutdown::Shutdown,
) {
    let serve = move |stream| {
        let (directory, secret, inputs) = (directory.clone(), secret.clone(), inputs.clone());
        async move { receive_from_peer(stream, &directory, &secret, &inputs).await }
    };
    crate::net::accept_bounded(listener, PEER_CONNECTIONS_MAX, "peer", shutdown, serve).await;
}

async fn receive_from_peer(
    stream: TcpStream,
    directory: &PeerDirectory,
    secret: &ClusterSecret,
    inputs: &mpsc::Sender<Input>,
) -> Result<(), IoError> {
    let remote = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    let (read_half, mut write_half) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read_half, codec());
    let hello: AuthHello = timed(reader.read()).await?;
    let from = NodeId(hello.node_id);
    if !directory.is_member(from) {
        tracing::warn!(%remote, node = hello.node_id, "refused a peer connection from a node that is not a member");
        return Ok(());
    }
    let challenge_nonce = nonce();
    let challenge = AuthChallenge {
        proof: secret.accept_proof(&hello.nonce, &challenge_nonce),
        nonce: challenge_nonce,
        node_id: directory.me.0,
        client_address: directory.my_client_address.clone(),
    };
    write_frame(&mut write_half, &codec(), &challenge).await?;
    let proof: AuthProof = timed(reader.read()).await?;
    if !secret.verify_connect_proof(&challenge.nonce, &hello.nonce, &proof.proof) {
        tracing::warn!(%remote, node = %from, "refused a peer connection: wrong cluster secret");
        return Ok(());
    }
    write_frame(&mut write_half, &codec(), &AuthOk {}).await?;
    directory.learn_client_address(from, hello.client_address);
    loop {
        let message: PeerMessage = match reader.read().await {
            Ok(message) => message,
            Err(IoError::Closed) => return Ok(()),
            Err(error) => return Err(error),
        };
        if inputs.send(Input::Peer { from, message }).await.is_err() {
            return Ok(()); // the node is shutting down
        }
    }
}
