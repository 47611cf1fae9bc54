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
    MembersResponse,
};
use paxkv_proto::io::{write_frame, write_frames, FrameReader, IoError};
use paxkv_proto::peer::{Configuration, MemberAddress, PeerMessage};
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
/// An inbound peer connection that delivers no frame for this long is dropped. Every node
/// sends each peer something every heartbeat (50 ms), so such a connection is dead: after a
/// partition, frames sent into it can stay queued behind the transport's retransmission
/// backoff for seconds after the heal, and the node that sent them only dials again once the
/// connection is gone (in the simulator, elections failed for 9-11 s after a heal without this).
const PEER_SILENCE_MAX: Duration = Duration::from_secs(2);
/// At most this long between attempts to dial a peer: after a partition heals, two nodes
/// that dial each other on the same schedule wait up to this long to talk again.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A connection attempt to a peer gives up after this long (and is made again).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Who the peers are, how to reach them, and their client addresses. It grows as the node
/// learns of members: from its flags, from the configuration (peer addresses travel in it), and
/// from the handshakes of nodes that connect to it (a member its configuration does not know
/// yet, such as a leader added while it was down, says where it listens).
pub struct PeerDirectory {
    me: NodeId,
    my_client_address: String,
    my_peer_address: String,
    secret: ClusterSecret,
    shutdown: crate::shutdown::Shutdown,
    span: tracing::Span,
    peers: Mutex<BTreeMap<NodeId, Peer>>,
    client_addresses: Mutex<BTreeMap<NodeId, String>>,
    /// This node's incarnation, and the one each peer showed when it first proved the secret:
    /// a peer that comes back with another (its data was wiped) is refused.
    my_incarnation: u64,
    incarnations: Mutex<BTreeMap<NodeId, u64>>,
    new_incarnations: Mutex<Vec<(NodeId, u64)>>,
    /// Set when a member refused this node for good (it came back wiped): the node stops.
    refused: Mutex<Option<String>>,
    /// Whether this node holds any of the cluster's data, told to every node that connects.
    holds_data: std::sync::atomic::AtomicBool,
    /// What each peer this node connected to said of its own data (see `bootstrap`), and a
    /// wake-up for whoever waits on it.
    peers_hold_data: Mutex<BTreeMap<NodeId, bool>>,
    peers_answered: tokio::sync::Notify,
}

/// One peer: where it listens, the outbox its dialing task drains, and a wake-up for that task
/// when the peer connects to this node (it is up: no need to wait out a backoff).
struct Peer {
    address: SocketAddr,
    outbox: mpsc::Sender<PeerMessage>,
    up: Arc<tokio::sync::Notify>,
}

impl PeerDirectory {
    pub fn send(&self, to: NodeId, message: PeerMessage) {
        let peers = self.peers.lock().expect("the peer map is never poisoned");
        if let Some(peer) = peers.get(&to) {
            let _ = peer.outbox.try_send(message);
        }
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

    /// Where `id` listens for peers, if known.
    pub fn peer_address(&self, id: NodeId) -> Option<SocketAddr> {
        if id == self.me {
            return self.my_peer_address.parse().ok();
        }
        self.peers
            .lock()
            .expect("the peer map is never poisoned")
            .get(&id)
            .map(|peer| peer.address)
    }

    pub fn learn_client_address(&self, id: NodeId, address: String) {
        if !address.is_empty() {
            self.client_addresses
                .lock()
                .expect("the address map is never poisoned")
                .insert(id, address);
        }
    }

    /// `id` listens for peers at `address`: dial it from now on (a new address replaces the
    /// old one, whose dialing task ends).
    pub fn learn_peer_address(self: &Arc<Self>, id: NodeId, address: SocketAddr) {
        if id == self.me || id.0 == 0 {
            return;
        }
        let mut peers = self.peers.lock().expect("the peer map is never poisoned");
        if peers.get(&id).is_some_and(|peer| peer.address == address) {
            return;
        }
        let (sender, receiver) = mpsc::channel(OUTBOX_MESSAGES_MAX);
        let up = Arc::new(tokio::sync::Notify::new());
        peers.insert(
            id,
            Peer {
                address,
                outbox: sender,
                up: up.clone(),
            },
        );
        drop(peers);
        let task = dial(
            self.clone(),
            id,
            address,
            receiver,
            up,
            self.secret.clone(),
            self.shutdown.clone(),
        );
        tokio::spawn(tracing::Instrument::instrument(task, self.span.clone()));
    }

    /// `id` proved the secret on a connection of its own: it is up, so a dialing task waiting
    /// out its backoff for it dials now (a restarted follower hears from the leader at once,
    /// not up to 2 s later).
    fn peer_is_up(&self, id: NodeId) {
        let peers = self.peers.lock().expect("the peer map is never poisoned");
        if let Some(peer) = peers.get(&id) {
            peer.up.notify_one();
        }
    }

    /// Why a member refused this node for good, if one did.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().expect("never poisoned").clone()
    }

    /// Whether `id` showing `incarnation` is the node this one knew under that id (or one it
    /// never met). Refused: it came back with its data wiped, so it may have forgotten what
    /// it promised and accepted.
    fn incarnation_matches(&self, id: NodeId, incarnation: u64) -> bool {
        if paxkv_core::planted::active(paxkv_core::planted::Bug::WipedMemberAccepted) {
            return true;
        }
        let known = self.incarnations.lock().expect("never poisoned");
        known.get(&id).is_none_or(|seen| *seen == incarnation)
    }

    /// Remembers the incarnation `id` showed once it proved the secret; one seen for the first
    /// time waits in `new_incarnations` for the node loop to persist it.
    fn learn_incarnation(&self, id: NodeId, incarnation: u64) {
        if incarnation == 0 {
            return;
        }
        let mut known = self.incarnations.lock().expect("never poisoned");
        if let std::collections::btree_map::Entry::Vacant(entry) = known.entry(id) {
            entry.insert(incarnation);
            self.new_incarnations
                .lock()
                .expect("never poisoned")
                .push((id, incarnation));
        }
    }

    /// Says whether this node holds data, to the nodes that connect from now on (once true,
    /// it stays so).
    pub fn set_holds_data(&self, holds_data: bool) {
        self.holds_data
            .store(holds_data, std::sync::atomic::Ordering::Relaxed);
    }

    /// Keeps what `peer` said of its data in a handshake, either way round. That it held
    /// nothing, once said, stands: it proves the peer had taken part in nothing before then.
    fn learn_holds_data(&self, peer: NodeId, holds_data: bool) {
        let mut answers = self.peers_hold_data.lock().expect("never poisoned");
        let answer = answers.entry(peer).or_insert(holds_data);
        *answer &= holds_data;
        drop(answers);
        self.peers_answered.notify_waiters();
    }

    /// What the peers said of their data in the handshakes so far, by id (false: it held
    /// nothing at least once).
    pub fn peers_hold_data(&self) -> BTreeMap<NodeId, bool> {
        self.peers_hold_data.lock().expect("never poisoned").clone()
    }

    /// Resolves when a peer answers, a member refuses this node, or at the latest after
    /// `wait`.
    pub async fn peer_answer(&self, wait: std::time::Duration) {
        let _ = tokio::time::timeout(wait, self.peers_answered.notified()).await;
    }

    /// The incarnations met for the first time since the last call, for the replica's hard
    /// state (so a restart of this node still knows them).
    pub fn take_new_incarnations(&self) -> Vec<(NodeId, u64)> {
        std::mem::take(&mut *self.new_incarnations.lock().expect("never poisoned"))
    }

    /// Learns the addresses a configuration records.
    pub fn learn_configuration(self: &Arc<Self>, configuration: &Configuration) {
        for member in &configuration.addresses {
            if let Ok(address) = member.peer_address.parse() {
                self.learn_peer_address(NodeId(member.node), address);
            }
            self.learn_client_address(NodeId(member.node), member.client_address.clone());
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

    /// Completes the addresses of a member list with what this node knows.
    pub fn fill_member_addresses(&self, members: &mut MembersResponse) {
        for member in &mut members.members {
            let id = NodeId(member.node_id);
            if member.peer_address.is_empty() {
                if let Some(address) = self.peer_address(id) {
                    member.peer_address = address.to_string();
                }
            }
            if member.client_address.is_empty() {
                member.client_address = self.client_address(id).unwrap_or_default();
            }
        }
    }

    /// The addresses this node knows of every node in `members` (for a change entry, so that
    /// the configuration carries every member's address).
    pub fn addresses_of(&self, members: impl Iterator<Item = NodeId>) -> Vec<MemberAddress> {
        members
            .filter_map(|id| {
                let peer_address = self.peer_address(id)?.to_string();
                Some(MemberAddress {
                    node: id.0,
                    peer_address,
                    client_address: self.client_address(id).unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// Creates the directory and starts one dialing task per peer known at start.
#[allow(clippy::too_many_arguments)] // each is one thing the directory needs from the start
pub fn start_outbound(
    span: tracing::Span,
    me: NodeId,
    my_incarnation: u64,
    known_incarnations: &BTreeMap<NodeId, u64>,
    holds_data: bool,
    my_client_address: String,
    my_peer_address: String,
    peers: &BTreeMap<NodeId, SocketAddr>,
    secret: ClusterSecret,
    shutdown: crate::shutdown::Shutdown,
) -> Arc<PeerDirectory> {
    let directory = Arc::new(PeerDirectory {
        me,
        my_client_address,
        my_peer_address,
        secret,
        shutdown,
        span,
        peers: Mutex::new(BTreeMap::new()),
        client_addresses: Mutex::new(BTreeMap::new()),
        my_incarnation,
        incarnations: Mutex::new(known_incarnations.clone()),
        new_incarnations: Mutex::new(Vec::new()),
        refused: Mutex::new(None),
        // Known before the first dial: a node that holds data must never say otherwise.
        holds_data: std::sync::atomic::AtomicBool::new(holds_data),
        peers_hold_data: Mutex::new(BTreeMap::new()),
        peers_answered: tokio::sync::Notify::new(),
    });
    for (id, address) in peers {
        directory.learn_peer_address(*id, *address);
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
    up: Arc<tokio::sync::Notify>,
    secret: ClusterSecret,
    shutdown: crate::shutdown::Shutdown,
) {
    let mut backoff = Backoff::new();
    loop {
        let connected = std::sync::atomic::AtomicBool::new(false);
        let session = async {
            // Bounded: a connection attempt made during a partition can wait for the
            // transport's resends of its first packet long after the heal.
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
                .await
                .map_err(|_| IoError::Io(std::io::ErrorKind::TimedOut.into()))??;
            stream.set_nodelay(true)?;
            let (read_half, mut write_half) = tokio::io::split(stream);
            let mut reader = FrameReader::new(read_half, codec());
            handshake_as_connector(&directory, peer, &secret, &mut reader, &mut write_half).await?;
            tracing::info!(%peer, %address, "connected to peer");
            connected.store(true, std::sync::atomic::Ordering::Relaxed);
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
        // Stopping, or the directory dropped this outbox (the peer moved to another address).
        if shutdown.is_stopped() || (outbox.is_closed() && outbox.is_empty()) {
            return;
        }
        let wait = backoff.after_session(connected.load(std::sync::atomic::Ordering::Relaxed));
        tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            () = wait_to_redial(&up, wait) => {}
        }
    }
}

/// How long a dialer waits before its next attempt.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    /// The wait after a session that ended, having `connected` or not. A connection that worked
    /// and broke means the peer is likely restarting: the waits start short again. Attempts
    /// refused in a row wait twice as long each time, up to `BACKOFF_MAX`.
    fn after_session(&mut self, connected: bool) -> Duration {
        if connected {
            self.next = BACKOFF_MIN;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }
}

/// Waits `backoff`, or less if the peer connects to this node meanwhile (`up`).
async fn wait_to_redial(up: &tokio::sync::Notify, backoff: Duration) {
    // Biased: an unbiased select picks its first branch at random, from a source the
    // simulator does not seed (a run would not replay).
    tokio::select! {
        biased;
        () = up.notified() => {}
        () = tokio::time::sleep(backoff) => {}
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
        peer_address: directory.my_peer_address.clone(),
        incarnation: directory.my_incarnation,
        holds_data: directory
            .holds_data
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    write_frame(writer, &codec(), &hello).await?;
    let challenge: AuthChallenge = timed(reader.read()).await?;
    if !challenge.refused.is_empty() {
        tracing::error!(%peer, reason = %challenge.refused, "a member refused this node for good; stopping");
        *directory.refused.lock().expect("never poisoned") = Some(challenge.refused.clone());
        directory.peers_answered.notify_waiters();
        return Err(refused("refused by a member"));
    }
    if challenge.node_id != peer.0
        || !secret.verify_accept_proof(&hello.nonce, &challenge.nonce, &challenge.proof)
    {
        tracing::warn!(%peer, "peer failed to prove the cluster secret; not sending to it");
        return Err(refused("peer failed to prove the cluster secret"));
    }
    if !directory.incarnation_matches(peer, challenge.incarnation) {
        tracing::warn!(%peer, "peer came back with a wiped data directory under its old id; not talking to it");
        // Tell it (it proved the secret): it may not know this node's address to ask itself
        // (seed 96587917881: a wiped member whose own list of peers had all left).
        let refusal = AuthProof {
            proof: secret.connect_proof(&challenge.nonce, &hello.nonce),
            refused: wiped_refusal(peer),
        };
        let _ = write_frame(writer, &codec(), &refusal).await;
        return Err(refused("peer came back with another incarnation"));
    }
    directory.learn_incarnation(peer, challenge.incarnation);
    directory.learn_client_address(peer, challenge.client_address.clone());
    directory.learn_holds_data(peer, challenge.holds_data);
    let proof = AuthProof {
        proof: secret.connect_proof(&challenge.nonce, &hello.nonce),
        refused: String::new(),
    };
    write_frame(writer, &codec(), &proof).await?;
    let _: AuthOk = timed(reader.read()).await?;
    Ok(())
}

/// Why a node that came back wiped under its old id may not take part.
fn wiped_refusal(node: NodeId) -> String {
    format!(
        "node {node} came back with a wiped data directory (another incarnation than the one \
         this cluster knew): it may have forgotten what it promised and accepted, so it may \
         not rejoin under id {node}. Remove it (kvctl member remove {node}) and start the \
         machine anew with an empty data directory and --join"
    )
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
    directory: &Arc<PeerDirectory>,
    secret: &ClusterSecret,
    inputs: &mpsc::Sender<Input>,
) -> Result<(), IoError> {
    let remote = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    let (read_half, mut write_half) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read_half, codec());
    let hello: AuthHello = timed(reader.read()).await?;
    let from = NodeId(hello.node_id);
    if from.0 == 0 || from == directory.me {
        tracing::warn!(%remote, node = hello.node_id, "refused a peer connection that claims id 0 or this node's own id");
        return Ok(());
    }
    if !directory.incarnation_matches(from, hello.incarnation) {
        // Said only to a node that knows the cluster's id scheme; nothing secret is in it.
        let reason = wiped_refusal(from);
        tracing::warn!(%remote, node = %from, "refused a peer that came back wiped under its old id");
        let refusal = AuthChallenge {
            node_id: directory.me.0,
            refused: reason,
            ..AuthChallenge::default()
        };
        write_frame(&mut write_half, &codec(), &refusal).await?;
        return Ok(());
    }
    let challenge_nonce = nonce();
    let challenge = AuthChallenge {
        proof: secret.accept_proof(&hello.nonce, &challenge_nonce),
        nonce: challenge_nonce,
        node_id: directory.me.0,
        client_address: directory.my_client_address.clone(),
        incarnation: directory.my_incarnation,
        refused: String::new(),
        holds_data: directory
            .holds_data
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    write_frame(&mut write_half, &codec(), &challenge).await?;
    let proof: AuthProof = timed(reader.read()).await?;
    if !secret.verify_connect_proof(&challenge.nonce, &hello.nonce, &proof.proof) {
        tracing::warn!(%remote, node = %from, "refused a peer connection: wrong cluster secret");
        return Ok(());
    }
    if !proof.refused.is_empty() {
        tracing::error!(node = %from, reason = %proof.refused, "a member refused this node for good; stopping");
        *directory.refused.lock().expect("never poisoned") = Some(proof.refused);
        directory.peers_answered.notify_waiters();
        return Ok(());
    }
    write_frame(&mut write_half, &codec(), &AuthOk {}).await?;
    directory.learn_incarnation(from, hello.incarnation);
    directory.learn_holds_data(from, hello.holds_data);
    directory.learn_client_address(from, hello.client_address);
    // Only a node that proved the secret is dialed back; the replica decides whether to
    // listen to it (a removed one is told so).
    if let Ok(address) = hello.peer_address.parse() {
        directory.learn_peer_address(from, address);
    }
    directory.peer_is_up(from);
    let ignore_silence = paxkv_core::planted::active(paxkv_core::planted::Bug::PeerSilenceIgnored);
    loop {
        let read = async {
            if ignore_silence {
                Ok(reader.read().await)
            } else {
                tokio::time::timeout(PEER_SILENCE_MAX, reader.read()).await
            }
        };
        let message: PeerMessage = match read.await {
            Ok(Ok(message)) => message,
            Ok(Err(IoError::Closed)) => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                tracing::debug!(node = %from, silence = ?PEER_SILENCE_MAX, "no frame from a peer; dropping its connection so that it dials again");
                return Ok(());
            }
        };
        if inputs.send(Input::Peer { from, message }).await.is_err() {
            return Ok(()); // the node is shutting down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_attempts_back_off_and_a_broken_connection_starts_over() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| backoff.after_session(false)).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(backoff.after_session(true), BACKOFF_MIN);
        assert_eq!(backoff.after_session(false), BACKOFF_MIN * 2);
    }

    #[tokio::test]
    async fn a_peer_that_connects_ends_the_wait_at_once() {
        let up = tokio::sync::Notify::new();
        up.notify_one();
        let hour = Duration::from_secs(3600);
        tokio::time::timeout(Duration::from_secs(30), wait_to_redial(&up, hour))
            .await
            .expect("the peer's connection ends the wait");
        // Without it, the whole backoff.
        let started = std::time::Instant::now();
        wait_to_redial(&up, Duration::from_millis(20)).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
