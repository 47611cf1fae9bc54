//! The replica: its state, the public API, and the ready / advance cycle that hands effects to
//! the caller (the order is documented once, in `ready.rs`). Role-specific handlers live in
//! `election.rs`, `leader/`, `follower.rs` and `snapshot.rs`, all on this one struct; what only
//! one role has lives in that role's variant of `role::RoleState`.

use std::collections::BTreeMap;

use paxkv_proto::client::{client_response::Body as Response, ErrorCode};
use paxkv_proto::peer::{
    entry::Kind, peer_message::Body, Ballot, Command, Configuration, HardState, LogEntry, LogState,
    PeerMessage, SnapshotMeta,
};

use crate::config::ReplicaConfig;
use crate::election::PreVoteState;
use crate::kv::{error_response, KvStore};
use crate::log::Log;
use crate::membership;
use crate::quorum::Quorum;
use crate::ready::{
    AfterPersist, DurableState, Outgoing, Persist, Ready, SnapshotWrite, WhilePersisting,
};
use crate::rng::SeededRng;
use crate::role::{FollowerState, Role, RoleState};
use crate::snapshot::{IncomingSnapshot, OutgoingSnapshot};
use crate::types::{ballot_or_zero, NodeId, RequestId, Time};
use crate::Error;

/// A plain status summary for monitors.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub ballot: Ballot,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    /// The last index a durable snapshot covers.
    pub snapshot_index: u64,
    /// The first log entry held in memory; earlier ones are in storage or the snapshot only.
    pub log_first_index: u64,
    pub revision: u64,
    pub log_time_ms: u64,
    pub key_count: u64,
    pub lease_count: u64,
    /// Per peer: milliseconds since last heard (None: never), and the leader's match index.
    pub peers: Vec<(NodeId, Option<u64>, Option<u64>)>,
}

/// What an outstanding ready asked the caller to persist.
#[derive(Debug)]
pub(crate) struct InFlight {
    number: u64,
    promised: Option<Ballot>,
    snapshot: Option<SnapshotMeta>,
}

pub struct Replica {
    pub(crate) config: ReplicaConfig,
    pub(crate) id: NodeId,
    pub(crate) rng: SeededRng,
    pub(crate) now: Time,

    // Acceptor state.
    /// Highest ballot promised (in memory; may be ahead of disk until the next ready is synced).
    pub(crate) promised: Ballot,
    /// Highest ballot known durable.
    pub(crate) durable_promised: Ballot,
    pub(crate) hard_state_dirty: bool,
    pub(crate) log: Log,
    pub(crate) commit_index: u64,
    pub(crate) applied_index: u64,
    pub(crate) kv: KvStore,
    /// Highest round seen in any ballot, so a campaign picks a higher one.
    pub(crate) round_seen_max: u64,

    // Roles.
    pub(crate) role: RoleState,
    /// An Accepted owed to (leader, ballot) for entries up to an index, sent once durable
    /// (and dropped if the promise moved on by then, whatever the role).
    pub(crate) pending_accepted: Option<(NodeId, Ballot, u64)>,
    /// A pre-vote in progress (followers and candidates whose election timer ran out).
    pub(crate) pre_vote: Option<PreVoteState>,

    // Timers and connectivity.
    pub(crate) last_heard: BTreeMap<NodeId, Time>,
    /// This node promises no other node's new ballot before this time: it supports the leader
    /// it last heard from (leader stickiness, which is also what makes leader leases safe).
    pub(crate) support_until: Time,
    pub(crate) election_deadline: Time,
    pub(crate) next_ping_at: Time,

    // Snapshots.
    /// The snapshot new outgoing transfers send, encoded when one starts and none is at hand
    /// (or the one at hand is older than the log's start), dropped when no transfer runs: a
    /// large state is not held twice in memory between transfers.
    pub(crate) snapshot: Option<(SnapshotMeta, std::sync::Arc<crate::ready::SnapshotBytes>)>,
    /// The snapshot being encoded a slice per turn (see `kv::snapshot_build`), if any.
    pub(crate) snapshot_building: Option<crate::snapshot::SnapshotBuilding>,
    /// Peers whose transfer waits for the snapshot being encoded, with the ballot and role
    /// the transfer was asked for in.
    pub(crate) snapshot_waiting: BTreeMap<NodeId, (Ballot, bool)>,
    pub(crate) snapshot_write: Option<SnapshotWrite>,
    /// What storage takes with the next ready of the snapshot being handed over in parts.
    pub(crate) snapshot_part: Option<crate::ready::SnapshotPart>,
    /// Bytes of a snapshot storage took in parts and has not written yet, as the caller last
    /// said (`set_snapshot_write_backlog`).
    pub(crate) snapshot_write_backlog: usize,
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    pub(crate) outgoing_snapshots: BTreeMap<NodeId, OutgoingSnapshot>,

    /// Session reads waiting for the state machine to reach their session point.
    pub(crate) revision_waiters: Vec<crate::reads::SessionWaiter>,

    // Output buffers of the current turn.
    pub(crate) messages: Vec<Outgoing>,
    pub(crate) messages_after_persist: Vec<Outgoing>,
    pub(crate) responses: Vec<(RequestId, Response)>,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) ready_number: u64,
    /// Entries applied by `apply_while_persisting`, reported in the next ready's `committed`.
    pub(crate) committed_early: Vec<LogEntry>,
    /// Entries applied since the last ready.
    pub(crate) committed_count: u64,
    /// Whether the last application of committed entries stopped at its bound with more
    /// committed (`ReplicaConfig::apply_entries_per_ready`).
    apply_cut_short: bool,

    // Membership.
    /// The configuration this log starts from (index 0), kept in the hard state.
    pub(crate) first_configuration: Configuration,
    /// The index of the configuration that removed this node, once it knows: it then stops.
    pub(crate) removed_at: Option<u64>,
    /// Drawn when this node's data was first used (see `HardState::incarnation`).
    pub(crate) incarnation: u64,
    /// Whether this node may take part (see `HardState::bootstrapped`).
    bootstrapped: bool,
    /// The incarnation each peer first showed this node (see `HardState::peer_incarnations`).
    peer_incarnations: BTreeMap<u64, u64>,
}

/// A snapshot waits for at least key count / this many entries since the last one.
const SNAPSHOT_STATE_FRACTION: u64 = 8;
/// Election timeouts a peer that is being sent a snapshot may stay silent (decoding it) and
/// still keep the entries after the snapshot in the sender's memory.
const SNAPSHOT_RECEIVER_SILENCE_TIMEOUTS: u64 = 20;

impl Replica {
    /// Starts a replica from what the caller recovered (`DurableState::default()` for a new node).
    pub fn new(config: ReplicaConfig, durable: DurableState, now: Time) -> Result<Replica, Error> {
        Replica::with_decoded_snapshot(config, durable, None, now)
    }

    /// `new`, with the recovered snapshot already decoded into `decoded` if the caller did so
    /// (at a million keys decoding takes a few hundred milliseconds, which a caller can spend
    /// while it reads the log).
    pub fn with_decoded_snapshot(
        config: ReplicaConfig,
        durable: DurableState,
        decoded: Option<KvStore>,
        now: Time,
    ) -> Result<Replica, Error> {
        config.validate()?;
        let id = config.node_id;
        // The configuration the log starts from: the persisted one wins over the caller's, since
        // membership is replicated state and flags only start a new cluster (or, for a node
        // that joins, carry what the cluster told it). A snapshot records the one in force at
        // its point; change entries in the log apply on top.
        let non_empty = |configuration: &Configuration| !configuration.members.is_empty();
        let persisted = durable.hard_state.configuration.clone().filter(non_empty);
        let hard_state_complete = persisted.is_some()
            && durable.hard_state.node_id == id.0
            && durable.hard_state.incarnation != 0;
        if durable.hard_state.node_id != 0 && durable.hard_state.node_id != id.0 {
            return Err(Error::CorruptState(format!(
                "this data belongs to node {}, not to {id}",
                durable.hard_state.node_id
            )));
        }
        let first_configuration = persisted.unwrap_or_else(|| Configuration {
            members: config.members.iter().map(|member| member.0).collect(),
            addresses: config.addresses.clone(),
            ..Configuration::default()
        });
        let snapshot_configuration = durable
            .snapshot
            .as_ref()
            .and_then(|(meta, _)| meta.configuration.clone())
            .filter(non_empty);
        let base = snapshot_configuration.unwrap_or_else(|| first_configuration.clone());
        let (kv, log, snapshot) = match durable.snapshot {
            Some((meta, data)) => {
                let decoded = match decoded {
                    Some(decoded) => decoded,
                    None => KvStore::decode_snapshot(data.as_slice()).map_err(|error| {
                        Error::CorruptState(format!("snapshot does not decode: {error}"))
                    })?,
                };
                let ballot = ballot_or_zero(meta.ballot);
                let log = Log::recovered(meta.index, ballot, base, durable.entries);
                // The bytes are not kept: a transfer encodes the state it has then.
                drop(data);
                let mut kv = decoded;
                kv.set_applied_index(meta.index);
                (kv, log, None)
            }
            None => {
                let log = Log::recovered(0, Ballot::ZERO, base, durable.entries);
                (KvStore::new(), log, None)
            }
        };
        let promised = ballot_or_zero(durable.hard_state.promised);
        let snapshot_index = log.snapshot_index();
        // A persisted commit index is an optimisation; never trust it beyond the durable log.
        let commit_index = durable
            .hard_state
            .commit_index
            .clamp(snapshot_index, log.last_index());
        let (removal_index, committed) = log.configs().in_force_at(commit_index);
        let removal_index = match durable.hard_state.removed_at {
            0 => committed.retired.contains(&id.0).then_some(removal_index),
            told => Some(told),
        };
        if let Some(configuration_index) = removal_index {
            return Err(Error::Removed {
                node: id,
                configuration_index,
            });
        }
        // A member of some configuration its log holds (the newest may be an uncommitted
        // removal of it), or a node joining, whose change arrives from the leader.
        let known = log
            .configs()
            .active(commit_index)
            .any(|(_, configuration)| membership::is_member(configuration, id));
        if !known && !config.joining {
            let newest = log.configs().newest();
            return Err(Error::CorruptState(format!(
                "{id} is not a member of its configuration (voters {:?}, learners {:?}); a node \
                 that is joining a cluster starts with --join",
                newest.members, newest.learners
            )));
        }
        let mut kv = kv;
        kv.set_sessions_max(config.sessions_max);
        let mut replica = Replica {
            rng: SeededRng::new(config.seed ^ id.0.rotate_left(32)),
            id,
            now,
            promised,
            durable_promised: promised,
            hard_state_dirty: !hard_state_complete,
            log,
            commit_index,
            applied_index: snapshot_index,
            kv,
            round_seen_max: promised.round,
            role: RoleState::Follower(FollowerState::default()),
            pending_accepted: None,
            pre_vote: None,
            last_heard: BTreeMap::new(),
            // After a restart we may have supported a leader's lease just before crashing.
            support_until: now.plus_millis(config.election_timeout_ms),
            election_deadline: now,
            next_ping_at: now,
            snapshot,
            snapshot_building: None,
            snapshot_waiting: BTreeMap::new(),
            snapshot_write: None,
            snapshot_part: None,
            snapshot_write_backlog: 0,
            incoming_snapshot: None,
            outgoing_snapshots: BTreeMap::new(),
            revision_waiters: Vec::new(),
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            responses: Vec::new(),
            in_flight: None,
            ready_number: 0,
            committed_early: Vec::new(),
            committed_count: 0,
            apply_cut_short: false,
            first_configuration,
            removed_at: None,
            incarnation: durable.hard_state.incarnation,
            peer_incarnations: durable.hard_state.peer_incarnations.clone(),
            // A joining node comes under a new id the cluster hands out: it cannot be a wiped
            // member.
            bootstrapped: durable.hard_state.bootstrapped || config.joining,
            config,
        };
        if replica.incarnation == 0 {
            replica.incarnation = replica.rng.next_u64() | 1;
        }
        replica.reset_election_deadline();
        Ok(replica)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The incarnation of this node's data (drawn at its first start, kept in its hard state).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The hard state as it stands: what the next ready writes if it changed. A node whose
    /// incarnation was drawn at this start writes it before it shows it to any peer (they
    /// remember it, and one lost in a crash would have the node refused as wiped).
    pub fn hard_state(&self) -> HardState {
        HardState {
            promised: Some(self.promised),
            commit_index: self.commit_index.min(self.log.stable_last()),
            configuration: Some(self.first_configuration.clone()),
            node_id: self.id.0,
            removed_at: self.removed_at.unwrap_or(0),
            incarnation: self.incarnation,
            peer_incarnations: self.peer_incarnations.clone(),
            bootstrapped: self.bootstrapped || self.holds_data(),
        }
    }

    /// Whether this node has promised or accepted anything: its data directory holds more
    /// than its identity.
    pub fn holds_data(&self) -> bool {
        self.promised != Ballot::ZERO || self.log.last_index() > 0
    }

    /// Whether the caller must make sure, before this node takes part, that it is not a member
    /// whose data directory was wiped: it holds nothing, and neither joined nor passed that
    /// check before. Such a node cannot tell a first start from a wipe; its peers can (a
    /// fresh cluster holds nothing anywhere), see the server's `bootstrap`.
    pub fn needs_bootstrap_check(&self) -> bool {
        !self.bootstrapped && !self.holds_data()
    }

    /// The bootstrap check passed (or is not needed): kept with the next hard state written.
    pub fn mark_bootstrapped(&mut self) {
        if !self.bootstrapped {
            self.bootstrapped = true;
            self.hard_state_dirty = true;
        }
    }

    /// The incarnation each peer first showed this node, by node id.
    pub fn peer_incarnations(&self) -> &BTreeMap<u64, u64> {
        &self.peer_incarnations
    }

    /// Keeps the incarnation `peer` showed, if it is the first this node has seen of it (the
    /// caller refuses a peer that shows another). Persisted with the next ready.
    pub fn remember_peer_incarnation(&mut self, peer: NodeId, incarnation: u64) {
        if incarnation != 0 && !self.peer_incarnations.contains_key(&peer.0) {
            self.peer_incarnations.insert(peer.0, incarnation);
            self.hard_state_dirty = true;
        }
    }

    pub fn role(&self) -> Role {
        self.role.role()
    }

    /// The leader this node knows of: itself when leading, the one it follows, or none.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            RoleState::Leader(_) => Some(self.id),
            RoleState::Candidate(_) => None,
            RoleState::Follower(follower) => follower.leader,
        }
    }

    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn promised(&self) -> Ballot {
        self.promised
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// Every change after revision `after` as watch events (see `KvStore::watch_events`):
    /// expiry among them only as the log applied it, never by this node's own clock.
    pub fn watch_events(&self, after: u64) -> Result<Vec<paxkv_proto::client::WatchEvent>, u64> {
        let mut events = self.kv.watch_events(after)?;
        if crate::planted::active(crate::planted::Bug::WatchExpiryByOwnClock)
            && !self.role.is_leader()
        {
            events.extend(self.kv.expiry_events_due_by(self.now.0));
        }
        Ok(events)
    }

    /// The voters and learners of the newest configuration in the log.
    pub fn members(&self) -> Vec<NodeId> {
        let newest = self.log.configs().newest();
        let mut members = membership::voters(newest);
        members.extend(membership::learners(newest));
        members
    }

    /// The ids the newest configuration retired (removed nodes, which may still come back and
    /// must then be told).
    pub fn retired(&self) -> Vec<NodeId> {
        let newest = self.log.configs().newest();
        newest.retired.iter().copied().map(NodeId).collect()
    }

    /// The election timeout this replica runs with (peers unheard for longer count as lost).
    pub fn config_election_timeout_ms(&self) -> u64 {
        self.config.election_timeout_ms
    }

    /// Which acceptors make a quorum now: the one thing every count of votes asks. A majority
    /// of the voters of the newest configuration in the log, committed or not: a change takes
    /// effect once appended. That is safe because two configurations that can be in force at
    /// once differ by at most one voter (one change at a time, none before the leader's own
    /// entry commits), so their majorities meet; and it keeps a node that holds a change
    /// whose commit it never learnt (its leader removed itself and stopped) able to count
    /// without the members that change removed.
    pub(crate) fn quorum(&self) -> Quorum {
        use crate::planted::{active, Bug};
        let configs = self.log.configs();
        let in_force = if active(Bug::QuorumOfOldConfiguration) {
            configs.at(self.commit_index)
        } else {
            configs.newest()
        };
        let mut voters = membership::voters(in_force);
        if active(Bug::LearnerCountsInQuorum) {
            voters.extend(membership::learners(in_force));
        }
        Quorum::joint([voters])
    }

    /// Every other node of the configurations active at the commit point, voter or learner:
    /// the nodes this one talks to (the leader replicates to all of them).
    pub(crate) fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let mut peers: Vec<NodeId> = Vec::new();
        for (_, configuration) in self.log.configs().active(self.commit_index) {
            let members = membership::voters(configuration)
                .into_iter()
                .chain(membership::learners(configuration));
            for member in members {
                if member != self.id && !peers.contains(&member) {
                    peers.push(member);
                }
            }
        }
        peers.into_iter()
    }

    pub(crate) fn log_state(&self) -> LogState {
        LogState {
            last_index: self.log.last_index(),
            last_ballot: Some(self.log.last_ballot()),
            commit_index: self.commit_index,
            snapshot_index: self.log.snapshot_index(),
        }
    }

    /// The ballot this node speaks with: its own when leading or campaigning, else its promise.
    pub(crate) fn current_ballot(&self) -> Ballot {
        self.promised
    }

    pub(crate) fn send(&mut self, to: NodeId, body: Body) {
        let message = PeerMessage {
            ballot: Some(self.current_ballot()),
            body: Some(body),
        };
        self.messages.push(Outgoing { to, message });
    }

    /// Queues a message that promises durability: it leaves only after this turn's sync.
    pub(crate) fn send_after_persist(&mut self, to: NodeId, body: Body) {
        let message = PeerMessage {
            ballot: Some(self.current_ballot()),
            body: Some(body),
        };
        self.messages_after_persist.push(Outgoing { to, message });
    }

    /// Queues an answer for a client, marked with this node as the one that served it.
    pub(crate) fn respond(&mut self, request: RequestId, mut response: Response) {
        if let Some(header) = response.header_mut() {
            header.served_by = self.id.0;
        }
        self.responses.push((request, response));
    }

    pub(crate) fn not_leader_error(&self) -> Response {
        let mut response = error_response(
            ErrorCode::NotLeader,
            match self.leader() {
                Some(leader) => format!("{} is not the leader; send this to {leader}", self.id),
                None => format!(
                    "{} is not the leader and knows of none yet; retry shortly",
                    self.id
                ),
            },
        );
        if let Response::Error(error) = &mut response {
            error.leader_id = self.leader().map_or(0, |leader| leader.0);
        }
        response
    }

    /// Raises the promise. Ballots only grow: that is the acceptor's whole safety rule.
    pub(crate) fn set_promised(&mut self, ballot: Ballot) {
        assert!(
            ballot >= self.promised,
            "promised ballot must never shrink: {:?} < {:?}",
            ballot,
            self.promised
        );
        if ballot > self.promised {
            self.promised = ballot;
            self.hard_state_dirty = true;
            self.round_seen_max = self.round_seen_max.max(ballot.round);
        }
    }

    pub(crate) fn reset_election_deadline(&mut self) {
        let timeout = self.config.election_timeout_ms;
        let jitter = self.rng.in_range(0, timeout);
        self.election_deadline = self.now.plus_millis(timeout + jitter);
    }

    /// True if this node heard from a quorum (counting itself) within an election timeout.
    pub(crate) fn quorum_connected(&self) -> bool {
        self.quorum_seen_lately(|node| self.last_heard.get(&node).copied())
    }

    /// Whether `node` was heard from within the last `millis` ms.
    pub(crate) fn heard_within(&self, node: NodeId, millis: u64) -> bool {
        self.last_heard
            .get(&node)
            .is_some_and(|at| self.now.millis_since(*at) < millis)
    }

    /// Whether this node and the peers whose last sign of life (`last_seen`) lies within an
    /// election timeout make a quorum.
    pub(crate) fn quorum_seen_lately(&self, last_seen: impl Fn(NodeId) -> Option<Time>) -> bool {
        let window = self.config.election_timeout_ms;
        self.quorum().is_reached_by(|node| {
            node == self.id || last_seen(node).is_some_and(|at| self.now.millis_since(at) < window)
        })
    }

    // --- inputs -------------------------------------------------------------------------------

    /// The caller's clock as it reads when an input arrives. Every input carries it, because a
    /// lease is only as good as the clock it is checked against: a cached time that lags the
    /// input by one tick, a sync or a frozen loop would let a deposed leader serve a stale read
    /// and a follower promise a new leader while the old lease still runs.
    pub(crate) fn observe_time(&mut self, now: Time) {
        if crate::planted::active(crate::planted::Bug::StaleClock) {
            return;
        }
        self.set_time(now);
    }

    fn set_time(&mut self, now: Time) {
        assert!(
            now >= self.now,
            "time must not go backwards: {:?} < {:?}",
            now,
            self.now
        );
        self.now = now;
    }

    /// The time of the last input (what the replica's timers and leases are judged against).
    pub fn now(&self) -> Time {
        self.now
    }

    /// Advances time: heartbeats, pings, election and retransmission timers.
    pub fn tick(&mut self, now: Time) {
        self.set_time(now);
        if self.removed_at.is_some() {
            return;
        }
        if now >= self.next_ping_at {
            self.next_ping_at = now.plus_millis(self.config.heartbeat_interval_ms);
            self.on_heartbeat_timeout();
        }
        match self.role.role() {
            Role::Leader => {
                self.check_leader_quorum();
                self.maybe_propose_tick();
            }
            Role::Candidate | Role::Follower => {
                if now >= self.election_deadline {
                    self.on_election_timeout();
                }
            }
        }
        self.retransmit_snapshots();
        self.expire_revision_waiters();
    }

    /// The heartbeat timer: a leader's round (or take-over request), a candidate's repeated
    /// prepares, and everyone's pings, which keep `last_heard` fresh for the quorum checks.
    fn on_heartbeat_timeout(&mut self) {
        match self.role.role() {
            Role::Leader => self.on_leader_heartbeat_timeout(),
            Role::Candidate => {
                self.resend_prepares();
                self.ping_peers();
            }
            Role::Follower => self.ping_peers(),
        }
    }

    fn ping_peers(&mut self) {
        let peers: Vec<NodeId> = self.peers().collect();
        for peer in peers {
            self.send(peer, Body::Ping(paxkv_proto::peer::Ping {}));
        }
    }

    /// Handles one message from a peer that arrived by `now` on the caller's clock. Messages
    /// to the acceptor go to their handler whatever the role; answers go to one `match` per
    /// role.
    pub fn step(&mut self, from: NodeId, message: PeerMessage, now: Time) {
        self.observe_time(now);
        if from == self.id || self.removed_at.is_some() {
            return;
        }
        // A node removed for good is told so (it stops) and not listened to. Any other sender
        // proved the cluster secret: one this node does not know yet (it joined, or this
        // node's configuration is behind) may well lead.
        if let Some(configuration_index) = self.committed_removal_of(from) {
            self.tell_removed(from, configuration_index);
            return;
        }
        self.last_heard.insert(from, self.now);
        let ballot = ballot_or_zero(message.ballot);
        self.round_seen_max = self.round_seen_max.max(ballot.round);
        let Some(body) = message.body else { return };
        match body {
            // Every node is an acceptor whatever its role: these are handled the same by all.
            Body::Ping(_) => {}
            Body::PreVote(pre_vote) => self.handle_pre_vote(from, ballot, pre_vote),
            Body::Prepare(prepare) => self.handle_prepare(from, ballot, prepare),
            Body::Accept(accept) => self.handle_accept(from, ballot, accept),
            Body::Heartbeat(heartbeat) => self.handle_heartbeat(from, ballot, heartbeat),
            Body::LogRequest(request) => self.handle_log_request(from, ballot, request),
            Body::SnapshotChunk(chunk) => self.handle_snapshot_chunk(from, ballot, chunk),
            // Any node may be sending a snapshot (a leader, or the source of a new leader's
            // take-over copy).
            Body::SnapshotAck(ack) => self.handle_snapshot_ack(from, ballot, ack),
            Body::Removed(removed) => self.on_removed(removed.configuration_index),
            // Answers to a proposer: only the role that asked has a use for them.
            answer => match self.role.role() {
                Role::Leader => self.step_leader(from, ballot, answer),
                Role::Candidate => self.step_candidate(from, ballot, answer),
                Role::Follower => self.step_follower(from, ballot, answer),
            },
        }
    }

    fn step_leader(&mut self, from: NodeId, ballot: Ballot, answer: Body) {
        match answer {
            Body::Accepted(accepted) => self.handle_accepted(from, ballot, accepted),
            Body::AcceptReject(reject) => self.handle_accept_reject(from, ballot, reject),
            Body::HeartbeatAck(ack) => self.handle_heartbeat_ack(from, ballot, ack),
            Body::LogResponse(response) => self.handle_log_response(from, ballot, response),
            Body::Promise(promise) => self.handle_promise(from, ballot, promise),
            Body::Nack(nack) => self.handle_nack(from, ballot, nack),
            _ => {}
        }
    }

    fn step_candidate(&mut self, from: NodeId, ballot: Ballot, answer: Body) {
        match answer {
            Body::Promise(promise) => self.handle_promise(from, ballot, promise),
            Body::Nack(nack) => self.handle_nack(from, ballot, nack),
            Body::PreVoteAnswer(answer) => self.handle_pre_vote_answer(from, ballot, answer),
            _ => {}
        }
    }

    fn step_follower(&mut self, from: NodeId, ballot: Ballot, answer: Body) {
        // A follower's only question is its pre-vote; a refusal of a campaign it already gave
        // up, or an answer to a ballot it no longer leads, changes nothing.
        if let Body::PreVoteAnswer(answer) = answer {
            self.handle_pre_vote_answer(from, ballot, answer);
        }
    }

    /// Proposes a client write that arrived by `now`. The answer arrives in a later `Ready`
    /// under `request`.
    pub fn propose(&mut self, request: RequestId, command: Command, now: Time) {
        self.observe_time(now);
        if let Err(error) = crate::kv::validate_command(&command) {
            self.respond(request, error);
            return;
        }
        self.leader_propose(request, command);
    }

    // --- ready / advance ---------------------------------------------------------------------

    pub fn has_ready(&self) -> bool {
        self.in_flight.is_none()
            && (self.hard_state_dirty
                || self.snapshot_write.is_some()
                || self
                    .snapshot_part
                    .as_ref()
                    .is_some_and(|part| part.end.is_some())
                // Encoding waits for storage, which has yet to take what is encoded.
                || (self.snapshot_part.is_some() && self.snapshot_encoding_paused())
                || !self.messages.is_empty()
                || !self.messages_after_persist.is_empty()
                || !self.responses.is_empty()
                || self.pending_accepted_can_leave()
                || self
                    .role
                    .leader()
                    .is_some_and(|leader| leader.lease.heartbeat_requested)
                || self.applied_index < self.commit_index
                || self.log.stable_last() < self.log.last_index())
    }

    /// Whether the acknowledgement waiting for a sync could leave after the next one: not while
    /// the entries it covers are missing from the log (a snapshot from the leader replaced the
    /// log meanwhile), since no sync would bring them; a ready for it would have nothing to do,
    /// and a node loop would spin on it until the leader's next message.
    fn pending_accepted_can_leave(&self) -> bool {
        self.pending_accepted
            .is_some_and(|(_, ballot, match_index)| {
                ballot == self.promised && self.log.last_index() >= match_index
            })
    }

    /// Whether work is waiting that nothing else is waiting for (a snapshot being encoded):
    /// the caller does it with `do_background_work` when it has no input to take, a slice at
    /// a time, and after it asks `has_ready` again.
    pub fn has_background_work(&self) -> bool {
        self.snapshot_building.is_some() && !self.snapshot_encoding_paused()
    }

    /// How many bytes of a snapshot handed over in parts storage has yet to write. While they
    /// reach `ReplicaConfig::snapshot_write_backlog_max`, the encoding waits (neither a ready
    /// nor `do_background_work` takes a slice): tell it again before each.
    pub fn set_snapshot_write_backlog(&mut self, bytes: usize) {
        self.snapshot_write_backlog = bytes;
    }

    /// Whether the last ready left committed entries unapplied (it applies at most
    /// `ReplicaConfig::apply_entries_per_ready`): the caller takes its inputs before the next ready.
    pub fn has_apply_backlog(&self) -> bool {
        self.apply_cut_short
    }

    /// One slice of the background work (about a millisecond).
    pub fn do_background_work(&mut self) {
        self.continue_snapshot();
    }

    /// Takes everything the caller must do, in the order `ready.rs` documents. Hand it back to
    /// `advance` once done; only one ready is outstanding at a time.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.in_flight.is_none(),
            "ready() called again before advance()"
        );
        self.flush_replication();
        let mut committed = std::mem::take(&mut self.committed_early);
        committed.extend(self.apply_committed());
        self.maybe_take_snapshot();
        self.forget_applied_entries();
        // One slice per ready (not per input while a sync runs, which under load would make
        // the encoding crowd out everything else until done).
        self.continue_snapshot();
        self.ready_number += 1;
        let hard_state = self.hard_state_dirty.then(|| self.hard_state());
        self.hard_state_dirty = false;
        let persist = Persist {
            snapshot_part: self.snapshot_part.take(),
            snapshot: self.snapshot_write.take(),
            hard_state,
            log_write: self.log.take_unstable(),
        };
        self.in_flight = Some(InFlight {
            number: self.ready_number,
            promised: persist
                .hard_state
                .as_ref()
                .map(|state| ballot_or_zero(state.promised)),
            snapshot: persist
                .snapshot
                .as_ref()
                .map(|write| write.meta.clone())
                .or_else(|| {
                    persist
                        .snapshot_part
                        .as_ref()
                        .filter(|part| part.end == Some(crate::ready::SnapshotEnd::Complete))
                        .map(|part| part.meta.clone())
                }),
        });
        Ready::new(
            self.ready_number,
            persist,
            std::mem::take(&mut self.messages),
            std::mem::take(&mut self.messages_after_persist),
            (committed, std::mem::take(&mut self.committed_count)),
            std::mem::take(&mut self.responses),
        )
    }

    /// While a ready is being persisted: replicates what was proposed since, applies what has
    /// committed since (commits count only entries already durable, so none depends on that
    /// persist), and returns the messages that may leave at once and every answer that is
    /// ready, so that neither waits for the sync. The entries applied here are reported in the
    /// next ready's `committed`; messages that promise durability wait for the next ready.
    pub fn progress_while_persisting(&mut self) -> WhilePersisting {
        self.flush_replication();
        let committed = self.apply_committed();
        self.committed_early.extend(committed);
        WhilePersisting::new(
            std::mem::take(&mut self.messages),
            std::mem::take(&mut self.responses),
        )
    }

    /// The caller has persisted and synced what `ready` asked and sent its other output.
    /// Returns the messages that promise durability, which may leave now.
    pub fn advance(&mut self, ready: Ready) -> AfterPersist {
        let (number, after_persist) = ready.finish();
        let in_flight = self
            .in_flight
            .take()
            .expect("advance() without an outstanding ready");
        assert_eq!(
            in_flight.number, number,
            "advance() for a ready that is not outstanding"
        );
        self.log.mark_stable();
        if let Some(promised) = in_flight.promised {
            self.durable_promised = self.durable_promised.max(promised);
        }
        if let Some(meta) = in_flight.snapshot {
            self.on_snapshot_persisted(meta);
        }
        self.flush_pending_accepted();
        match self.role.role() {
            Role::Candidate => self.on_candidate_persisted(),
            Role::Leader => self.leader_maybe_commit(),
            Role::Follower => self.follower_update_commit(),
        }
        assert!(
            self.durable_promised <= self.promised,
            "durable promise ahead of memory"
        );
        after_persist
    }

    /// Applies committed entries to the state machine (at most `apply_entries_per_ready`;
    /// `has_ready` stays true for the rest) and answers waiting requests.
    fn apply_committed(&mut self) -> Vec<LogEntry> {
        assert!(
            self.commit_index <= self.log.last_index(),
            "commit index beyond the log"
        );
        let mut committed = Vec::new();
        let applied_before = self.applied_index;
        let own_clock = crate::planted::active(crate::planted::Bug::FollowerExpiryByOwnClock)
            && !self.role.is_leader();
        let apply_to = self
            .commit_index
            .min(applied_before + self.config.apply_entries_per_ready);
        while self.applied_index < apply_to {
            let index = self.applied_index + 1;
            let entry = self
                .log
                .entry(index)
                .expect("committed entries are in the log");
            let payload = entry.entry.as_ref().expect("log entries have a payload");
            let config_change = matches!(payload.kind, Some(Kind::ConfigChange(_)));
            let mut response = if own_clock {
                let mut payload = payload.clone();
                payload.log_time_ms = self.now.0;
                self.kv.apply(index, &payload)
            } else {
                self.kv.apply(index, payload)
            };
            if self.config.report_committed_entries {
                committed.push(entry.clone());
            }
            self.committed_count += 1;
            self.applied_index = index;
            if config_change {
                response = Some(self.on_config_change_applied(index));
            }
            self.on_applied(index, response);
            if config_change {
                self.stop_if_removed(index);
            }
        }
        self.apply_cut_short = self.applied_index < self.commit_index;
        if self.applied_index > applied_before {
            self.wake_revision_waiters();
        }
        self.serve_confirmed_reads();
        committed
    }

    /// Starts a snapshot once enough applied entries are outside the last one. It is encoded
    /// a slice per turn (`continue_snapshot`) and handed to storage as it goes.
    fn maybe_take_snapshot(&mut self) {
        let uncovered = self.applied_index - self.log.snapshot_index();
        // A snapshot costs in proportion to the state, so a large state snapshots less often:
        // the log it replaces is then at least a fraction of the state it rewrites.
        let threshold = self
            .config
            .snapshot_entries_threshold
            .max(self.kv.key_count() as u64 / SNAPSHOT_STATE_FRACTION);
        // Each node a little later than the one before: replicas that snapshot at the same
        // index would all be busy (and share a disk, when on one machine) at once.
        let threshold = threshold + threshold * (self.id.0 % 4) / 8;
        if uncovered < threshold
            || self.snapshot_write.is_some()
            || self.snapshot_part.is_some()
            || self.applied_index > self.log.stable_last()
        {
            return;
        }
        match &mut self.snapshot_building {
            // One under way for a transfer serves: it covers entries past the log's start.
            Some(building) => building.for_disk = true,
            None => self.start_snapshot(true),
        }
    }

    /// Lets go of the applied entries older than the window the configuration keeps
    /// (`log_entries_kept`): storage holds them until a snapshot covers them, and a peer that
    /// needs one gets a snapshot. A leader keeps what its live followers have yet to
    /// acknowledge and what follows a snapshot it is sending, so that neither has to start
    /// over with another snapshot.
    fn forget_applied_entries(&mut self) {
        let floor = self.log.floor_index();
        let applied = if crate::planted::active(crate::planted::Bug::LogForgetsUnapplied) {
            self.commit_index
        } else {
            self.applied_index
        };
        let mut through = applied
            .min(self.log.stable_last())
            .saturating_sub(self.config.log_entries_kept);
        if through <= floor {
            return;
        }
        // A peer silent for an election timeout may be gone for good: it holds nothing back.
        let live = |peer: NodeId| self.heard_within(peer, self.config.election_timeout_ms);
        // A peer installing a snapshot is silent while it decodes it (hundreds of ms at a
        // million keys, seconds at ten million): were the entries after it let go meanwhile,
        // its last acknowledgement would find it short of them, and it would need another.
        let receiving = |peer: NodeId| {
            self.heard_within(
                peer,
                self.config.election_timeout_ms * SNAPSHOT_RECEIVER_SILENCE_TIMEOUTS,
            )
        };
        let forget_lacking =
            crate::planted::active(crate::planted::Bug::LogForgetsWhatFollowersLack);
        if let Some(leader) = self.role.leader().filter(|_| !forget_lacking) {
            for (peer, progress) in &leader.followers {
                if live(*peer) && progress.match_index >= floor {
                    through = through.min(progress.match_index);
                }
            }
        }
        if let Some(sent) = self
            .lowest_snapshot_sent(receiving)
            .filter(|sent| *sent >= floor)
        {
            through = through.min(sent);
        }
        self.log.forget_through(through);
    }

    /// The configuration in force at log position `index` (what a snapshot there records).
    pub(crate) fn configuration_at(&self, index: u64) -> Configuration {
        self.log.configs().at(index).clone()
    }

    fn on_snapshot_persisted(&mut self, meta: SnapshotMeta) {
        if meta.index > self.log.snapshot_index() && meta.index <= self.log.stable_last() {
            self.log.compact_to(meta.index);
        }
        self.on_installed_snapshot_persisted(&meta);
    }

    /// Abandons leadership or candidacy and follows (`leader` if known). Following the same
    /// leader as before keeps what we learnt of its log.
    pub(crate) fn become_follower(&mut self, leader: Option<NodeId>) {
        let same = matches!(&self.role, RoleState::Follower(follower) if follower.leader == leader);
        if same {
            self.pre_vote = None;
        } else {
            self.change_role(RoleState::Follower(FollowerState {
                leader,
                ..FollowerState::default()
            }));
        }
        self.reset_election_deadline();
    }

    /// Every role change goes through here: a pre-vote ends, and a leader's waiting requests
    /// are answered (it can no longer answer them itself).
    pub(crate) fn change_role(&mut self, next: RoleState) {
        let previous = std::mem::replace(&mut self.role, next);
        self.pre_vote = None;
        if let RoleState::Leader(leader) = previous {
            leader.fail_pending(self);
        }
    }

    /// Takes the role out to move its state into the next one (the caller puts a role back).
    pub(crate) fn take_role(&mut self) -> RoleState {
        std::mem::replace(
            &mut self.role,
            RoleState::Follower(FollowerState::default()),
        )
    }

    /// Digest of the applied state: equal on replicas that applied the same log prefix.
    pub fn state_hash(&self) -> u64 {
        self.kv.state_hash()
    }

    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            node_id: self.id,
            role: self.role.role(),
            ballot: self.promised,
            leader: self.leader(),
            commit_index: self.commit_index,
            applied_index: self.applied_index,
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot_index(),
            log_first_index: self.log.first_index(),
            revision: self.kv.revision(),
            log_time_ms: self.kv.log_time_ms(),
            key_count: self.kv.key_count() as u64,
            lease_count: self.kv.lease_count() as u64,
            peers: self
                .peers()
                .map(|peer| {
                    let heard = self
                        .last_heard
                        .get(&peer)
                        .map(|at| self.now.millis_since(*at));
                    let matched = self
                        .role
                        .leader()
                        .and_then(|leader| leader.match_index(peer));
                    (peer, heard, matched)
                })
                .collect(),
        }
    }
}
