//! The node loop: the one task that owns the replica. Each turn it feeds the replica what
//! arrived, takes a `Ready`, and handles it in the order `paxkv_core::ready` documents (the
//! one description of it; this loop follows it step by step in `handle_ready`).
//!
//! Group commit: while a sync runs, inputs queue in the channel; the next turn takes them all,
//! so one sync covers everything that arrived during the previous one.

use std::collections::BTreeMap;
use std::sync::Arc;

use paxkv_core::{MemberRequest, NodeId, Persist, ReadRequest, Ready, Replica, RequestId, Role};
use paxkv_proto::client::{
    client_response::Body as Response, PeerStatus, StatusResponse, WatchEvent,
};
use paxkv_proto::peer::{Command, PeerMessage};
use tokio::sync::{mpsc, oneshot};

use crate::clock::NodeClock;
use crate::peer::PeerDirectory;
use crate::router::{LeaderBoard, LeaderHint};
use crate::storage::{Storage, StorageError};
use crate::watch::{Batch, Feed};

/// How often the replica's timers are driven.
pub const TICK_MS: u64 = 10;

/// Inputs handled per turn at most, so a flood cannot starve the persist step.
pub const INPUTS_PER_TURN_MAX: usize = 4096;
/// Capacity of the node's input channel.
pub const INPUT_QUEUE_MAX: usize = 16 * 1024;

/// Something for the node loop to do.
#[derive(Debug)]
pub enum Input {
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
    Propose {
        command: Command,
        reply: oneshot::Sender<Response>,
    },
    Read {
        read: ReadRequest,
        reply: oneshot::Sender<Response>,
    },
    Status {
        reply: oneshot::Sender<Response>,
        with_state_hash: bool,
    },
    Members {
        reply: oneshot::Sender<Response>,
    },
    MemberChange {
        change: MemberRequest,
        reply: oneshot::Sender<Response>,
    },
    /// The changes after revision `after` from the history, with the revision they reach, or
    /// the oldest revision the history keeps (for a watch: see `watch`).
    WatchHistory {
        after: u64,
        reply: oneshot::Sender<Result<(Vec<WatchEvent>, u64), u64>>,
    },
}

/// Why the node loop ended without a storage error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to (Ctrl-C, SIGTERM, a test), or its inputs closed.
    Shutdown,
    /// The node was removed from the cluster (the configuration at this log index retired its
    /// id): it must not run again.
    Removed { configuration_index: u64 },
    /// A member refused this node for good (it came back with a wiped data directory under
    /// its old id); the reason says what to do.
    Refused { reason: String },
}

/// Counters the node exposes (for tests and the benchmark).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    pub syncs: std::sync::atomic::AtomicU64,
    pub committed_entries: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
}

pub struct Node {
    replica: Replica,
    storage: Option<Box<dyn Storage>>,
    /// The snapshot bytes storage has yet to write, told to the replica before each turn.
    snapshot_backlog: crate::storage::SnapshotBacklog,
    clock: NodeClock,
    peers: Arc<PeerDirectory>,
    waiting: BTreeMap<RequestId, oneshot::Sender<Response>>,
    next_request: u64,
    metrics: Arc<NodeMetrics>,
    started: tokio::time::Instant,
    /// What the node had committed when it started and had yet to apply, until it has: then
    /// the time that took is logged (a restart answers reads between slices of it, so its
    /// first answer says nothing of when it has everything back).
    applying_at_start: Option<(u64, u64)>,
    /// The index of the configuration whose addresses the peer directory last learnt.
    configuration_seen: Option<u64>,
    /// The leader last published (None at start), to log each change.
    leader_seen: Option<NodeId>,
    /// Where the changes each turn applies go to the watches (`watch`), and the revision
    /// published last.
    feed: Feed,
    published: u64,
    /// Who leads, for the router (`router`).
    leader_board: Arc<LeaderBoard>,
}

/// Writes and syncs what a ready asks to keep, in one hop off the async threads. Under the
/// simulator (where blocking work runs inline) the sync comes a simulated moment after the
/// write, so a crash can land between them and lose what was written.
pub(crate) async fn persist(
    mut storage: Box<dyn Storage>,
    persist: Persist,
) -> (Box<dyn Storage>, Result<(), StorageError>) {
    let Persist {
        snapshot_part,
        snapshot,
        hard_state,
        log_write,
    } = persist;
    #[cfg(not(madsim))]
    {
        crate::run_blocking(move || {
            let result = snapshot_part
                .map_or(Ok(()), |part| storage.write_snapshot_part(part))
                .and_then(|()| {
                    storage.persist(hard_state.as_ref(), snapshot.as_ref(), log_write.as_ref())
                });
            (storage, result)
        })
        .await
    }
    #[cfg(madsim)]
    {
        let written = snapshot_part
            .map_or(Ok(()), |part| storage.write_snapshot_part(part))
            .and_then(|()| {
                storage.write(hard_state.as_ref(), snapshot.as_ref(), log_write.as_ref())
            });
        if let Err(error) = written {
            return (storage, Err(error));
        }
        let delay = storage.simulated_sync_delay();
        tokio::time::sleep(delay).await;
        let result = storage.sync();
        (storage, result)
    }
}

/// `persist` of the hard state alone (a start that must make it durable before serving).
pub(crate) async fn persist_hard_state(
    storage: Box<dyn Storage>,
    hard_state: paxkv_proto::peer::HardState,
) -> (Box<dyn Storage>, Result<(), StorageError>) {
    let persist = Persist {
        hard_state: Some(hard_state),
        ..Persist::default()
    };
    self::persist(storage, persist).await
}

impl Node {
    pub fn new(
        replica: Replica,
        storage: Box<dyn Storage>,
        clock: NodeClock,
        peers: Arc<PeerDirectory>,
        metrics: Arc<NodeMetrics>,
        feed: Feed,
        leader_board: Arc<LeaderBoard>,
    ) -> Node {
        let published = replica.kv().revision();
        let status = replica.status();
        let applying_at_start = (status.applied_index < status.commit_index)
            .then_some((status.applied_index, status.commit_index));
        let snapshot_backlog = storage.snapshot_backlog();
        Node {
            snapshot_backlog,
            leader_board,
            feed,
            published,
            replica,
            storage: Some(storage),
            clock,
            peers,
            waiting: BTreeMap::new(),
            next_request: 0,
            metrics,
            started: tokio::time::Instant::now(),
            applying_at_start,
            configuration_seen: None,
            leader_seen: None,
        }
    }

    /// Runs until `shutdown` turns true, the input channel closes or the node learns it was
    /// removed; returns a storage error if the disk fails (the node must stop rather than
    /// acknowledge what it cannot keep).
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        shutdown: crate::shutdown::Shutdown,
    ) -> Result<Stopped, StorageError> {
        let mut ticker = tokio::time::interval(std::time::Duration::from_millis(TICK_MS));
        self.learn_configuration();
        loop {
            self.replica
                .set_snapshot_write_backlog(self.snapshot_backlog.bytes());
            // Biased: a fixed polling order keeps simulated runs deterministic (tokio's random
            // order draws from process-wide state); the rare events come first so a flood of
            // inputs cannot starve them.
            tokio::select! {
                biased;
                _ = shutdown.stopped() => return Ok(Stopped::Shutdown),
                _ = ticker.tick() => {
                    self.replica.tick(self.clock.now());
                    // Then the inputs waiting: a turn that takes a tick or longer (a slice of
                    // a long apply at a restart) finds the next tick due at once, and the tick
                    // alone, first in this order, kept every peer message and request out
                    // until the whole apply was done (a restarted node heard its leader only
                    // after 500 ms of applying 93,000 entries).
                    if let Ok(input) = inputs.try_recv() {
                        self.take_inputs(input, &mut inputs);
                    }
                }
                input = inputs.recv() => match input {
                    Some(input) => self.take_inputs(input, &mut inputs),
                    None => return Ok(Stopped::Shutdown),
                },
                // Last: a slice of a snapshot only when nothing else is waiting, so that a
                // large one never holds up inputs or timers.
                () = std::future::ready(()), if self.replica.has_background_work() => {
                    self.replica.do_background_work();
                    // Then the other tasks of this thread (connections, peers) run before the
                    // next slice: the inputs they bring come first. Without this, on a single
                    // runtime thread the slices ran back to back, a whole snapshot's encoding,
                    // while no connection was read (a fill's p99.9 went from 34 to 165 ms).
                    tokio::task::yield_now().await;
                }
                // A ready left waiting for the inputs taken first (below).
                () = std::future::ready(()), if self.replica.has_ready() => {}
            }
            for (peer, incarnation) in self.peers.take_new_incarnations() {
                self.replica.remember_peer_incarnation(peer, incarnation);
            }
            while self.replica.has_ready() {
                self.replica
                    .set_snapshot_write_backlog(self.snapshot_backlog.bytes());
                let ready = self.replica.ready();
                self.handle_ready(ready, &mut inputs, &mut ticker).await?;
                self.publish_changes();
                if self.replica.has_apply_backlog() {
                    // A long run of committed entries (a restart, a follower catching up) is
                    // applied a slice per ready, with the inputs and this thread's other tasks
                    // (connections, peers) between slices: before, a node restarted with
                    // 140,000 entries to apply answered nothing for 400 ms.
                    tokio::task::yield_now().await;
                    break;
                }
            }
            self.learn_configuration();
            self.publish_leader();
            if let Some((from, to)) = self.applying_at_start {
                if self.replica.applied_index() >= to {
                    self.applying_at_start = None;
                    tracing::info!(
                        entries = to - from,
                        ms = self.started.elapsed().as_millis() as u64,
                        "applied what was committed before the start"
                    );
                }
            }
            if let Some(reason) = self.peers.refused() {
                tracing::error!(%reason, "stopping for good");
                return Ok(Stopped::Refused { reason });
            }
            // Stop only once what the last ready asked is synced (the removal mark included).
            if let Some(configuration_index) = self.replica.removed_at() {
                if !self.replica.has_ready() {
                    tracing::error!(
                        configuration_index,
                        "this node was removed from the cluster; stopping for good (its id is \
                         retired: to bring the machine back, empty its data directory and start \
                         it with --join)"
                    );
                    return Ok(Stopped::Removed {
                        configuration_index,
                    });
                }
            }
        }
    }

    /// Dials the members a new configuration brought in (and, at start, those the first
    /// configuration knows: a node that joined keeps their addresses there).
    fn learn_configuration(&mut self) {
        let (index, configuration) = self.replica.configuration();
        if self.configuration_seen != Some(index) {
            if self.configuration_seen.is_none() {
                self.peers
                    .learn_configuration(self.replica.first_configuration());
            }
            self.configuration_seen = Some(index);
            self.peers.learn_configuration(configuration);
        }
    }

    /// Handles `first` and what else is queued, up to a turn's worth.
    fn take_inputs(&mut self, first: Input, inputs: &mut mpsc::Receiver<Input>) {
        self.handle(first);
        for _ in 0..INPUTS_PER_TURN_MAX {
            match inputs.try_recv() {
                Ok(input) => self.handle(input),
                Err(_) => break,
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            // The clock is read for every input, not once a turn: a lease is checked against
            // the time the read or message is handled, never an older one.
            Input::Peer { from, message } => self.replica.step(from, message, self.clock.now()),
            Input::Propose { command, reply } => {
                let request = self.track(reply);
                self.replica.propose(request, command, self.clock.now());
            }
            Input::Read { read, reply } => {
                let request = self.track(reply);
                self.replica.read(request, read, self.clock.now());
            }
            Input::Status {
                reply,
                with_state_hash,
            } => {
                let mut status = self.status();
                if with_state_hash {
                    status.state_hash = self.replica.state_hash();
                }
                let _ = reply.send(Response::Status(status));
            }
            Input::Members { reply } => {
                let request = self.track(reply);
                self.replica.list_members(request, self.clock.now());
            }
            Input::MemberChange { mut change, reply } => {
                // The change entry carries every member's address this node knows, so that
                // the configuration tells every node (and a joining one) how to reach them.
                if let MemberRequest::Add { known, .. } = &mut change {
                    let mut ids = self.replica.members();
                    ids.extend(self.replica.retired());
                    *known = self.peers.addresses_of(ids.into_iter());
                }
                let request = self.track(reply);
                self.replica
                    .change_membership(request, change, self.clock.now());
            }
            Input::WatchHistory { after, reply } => {
                let revision = self.replica.kv().revision();
                let _ = reply.send(
                    self.replica
                        .watch_events(after)
                        .map(|events| (events, revision)),
                );
            }
        }
    }

    /// Tells the router who leads, and logs each change of leader.
    fn publish_leader(&mut self) {
        let leader = self.replica.leader();
        if self.leader_seen != leader {
            self.leader_seen = leader;
            // One line per change of leader, with the ballot it holds: an election during a
            // load (a stall longer than the election timeout) shows in the log.
            let promised = self.replica.promised();
            let ballot = format!("{}.{}", promised.round, promised.node);
            let role = self.replica.role();
            match leader {
                Some(leader) => {
                    tracing::info!(leader = leader.0, %ballot, ?role, "leader changed");
                }
                None => tracing::info!(%ballot, ?role, "no leader known"),
            }
        }
        let this_node = self.replica.role() == Role::Leader;
        let address = match leader {
            Some(leader) if !this_node => self.peers.client_address(leader),
            _ => None,
        };
        let id = leader.map(|leader| leader.0);
        self.leader_board.publish(LeaderHint {
            this_node,
            id,
            address,
        });
    }

    /// Hands the watches what was applied since the last turn (only if some watch listens:
    /// a watch that starts later reads the history).
    fn publish_changes(&mut self) {
        let revision = self.replica.kv().revision();
        if revision <= self.published {
            return;
        }
        let batch = if self.feed.has_watchers() {
            match self.replica.watch_events(self.published) {
                Ok(events) => Batch::Changes {
                    after: self.published,
                    to: revision,
                    events,
                },
                Err(_) => Batch::Gap { to: revision },
            }
        } else {
            Batch::Changes {
                after: self.published,
                to: revision,
                events: Vec::new(),
            }
        };
        self.published = revision;
        self.feed.publish(batch);
    }

    fn answer(&mut self, responses: Vec<(RequestId, Response)>) {
        for (request, mut response) in responses {
            self.peers.fill_leader_address(&mut response);
            if let Response::Members(members) = &mut response {
                self.peers.fill_member_addresses(members);
            }
            if let Some(reply) = self.waiting.remove(&request) {
                let _ = reply.send(response);
            }
        }
    }

    fn track(&mut self, reply: oneshot::Sender<Response>) -> RequestId {
        self.metrics
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.next_request += 1;
        let request = RequestId(self.next_request);
        self.waiting.insert(request, reply);
        // Answers nobody waits for any more (timed-out clients) are dropped here.
        if self.waiting.len() > 2 * INPUT_QUEUE_MAX {
            self.waiting.retain(|_, reply| !reply.is_closed());
        }
        request
    }

    async fn handle_ready(
        &mut self,
        mut ready: Ready,
        inputs: &mut mpsc::Receiver<Input>,
        ticker: &mut tokio::time::Interval,
    ) -> Result<(), StorageError> {
        // Before anything this ready holds (a promise, an acknowledgement) leaves: a node
        // that may have promised must not tell a peer it holds nothing (see `bootstrap`).
        self.peers.set_holds_data(self.replica.holds_data());
        for outgoing in ready.take_messages() {
            self.peers.send(outgoing.to, outgoing.message);
        }
        self.answer(ready.take_responses());
        let to_persist = ready.take_persist();
        if !to_persist.is_empty() {
            let storage = self
                .storage
                .take()
                .expect("storage is present between turns");
            let persisting = persist(storage, to_persist);
            tokio::pin!(persisting);
            // While the sync runs, acknowledgements and requests keep being taken in: new
            // entries go to the followers and what commits is applied and answered now, not
            // one sync later. Timers keep running too: a slow disk must not freeze heartbeats,
            // elections or the leader's check that it still has a quorum.
            let mut open = true;
            // The planted version of the bug this prevents: no timers while a sync runs.
            let stale_clock = paxkv_core::planted::active(paxkv_core::planted::Bug::StaleClock);
            let (storage, result) = loop {
                tokio::select! {
                    biased;
                    done = &mut persisting => break done,
                    _ = ticker.tick(), if !stale_clock => self.replica.tick(self.clock.now()),
                    input = inputs.recv(), if open => match input {
                        Some(input) => self.take_inputs(input, inputs),
                        None => open = false,
                    },
                }
                let mut early = self.replica.progress_while_persisting();
                self.peers.set_holds_data(self.replica.holds_data());
                for outgoing in early.take_messages() {
                    self.peers.send(outgoing.to, outgoing.message);
                }
                self.answer(early.take_responses());
            };
            self.metrics
                .syncs
                .store(storage.sync_count(), std::sync::atomic::Ordering::Relaxed);
            self.storage = Some(storage);
            result?;
        }
        self.metrics.committed_entries.fetch_add(
            ready.committed_count(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for outgoing in self.replica.advance(ready).take_messages() {
            self.peers.send(outgoing.to, outgoing.message);
        }
        Ok(())
    }

    fn status(&self) -> StatusResponse {
        let status = self.replica.status();
        let role = match status.role {
            Role::Follower => paxkv_proto::client::Role::Follower,
            Role::Candidate => paxkv_proto::client::Role::Candidate,
            Role::Leader => paxkv_proto::client::Role::Leader,
        };
        let elapsed_s = self.started.elapsed().as_secs_f64().max(1e-3);
        let requests = self
            .metrics
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        let window = self.replica.config_election_timeout_ms();
        StatusResponse {
            node_id: status.node_id.0,
            role: role as i32,
            ballot_round: status.ballot.round,
            ballot_node: status.ballot.node,
            leader_id: status.leader.map_or(0, |leader| leader.0),
            leader_address: status
                .leader
                .and_then(|leader| self.peers.client_address(leader))
                .unwrap_or_default(),
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            revision: status.revision,
            key_count: status.key_count,
            lease_count: status.lease_count,
            peers: status
                .peers
                .iter()
                .map(|(peer, heard_ms, matched)| PeerStatus {
                    node_id: peer.0,
                    address: self.peers.client_address(*peer).unwrap_or_default(),
                    reachable: heard_ms.is_some_and(|ms| ms < window),
                    last_contact_ms: heard_ms.unwrap_or(u64::MAX),
                    match_index: matched.unwrap_or(0),
                    lag_entries: matched
                        .map_or(0, |matched| status.commit_index.saturating_sub(matched)),
                })
                .collect(),
            requests_per_second: requests as f64 / elapsed_s,
            syncs: self
                .metrics
                .syncs
                .load(std::sync::atomic::Ordering::Relaxed),
            applied_entries: self
                .metrics
                .committed_entries
                .load(std::sync::atomic::Ordering::Relaxed),
            state_hash: 0,
            log_time_ms: status.log_time_ms,
            requests_total: requests,
        }
    }
}
