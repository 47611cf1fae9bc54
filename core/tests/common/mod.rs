//! A deterministic in-memory cluster for testing `paxkv-core`: seeded message latency, loss,
//! duplication and reordering, one-way and partial partitions, and crashes that lose whatever a
//! replica had not yet persisted. It also records every client operation and checks the safety
//! properties (agreement, validity, durability of acknowledged writes, linearizable reads).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use paxkv_core::{
    DurableState, NodeId, Persist, ReadRequest, Ready, Replica, ReplicaConfig, RequestId, Role,
    SnapshotAssembly, Time,
};
use paxkv_proto::client::{
    client_response::Body as Response, Consistency, ErrorCode, GetRequest, PutRequest,
};
use paxkv_proto::peer::{command::Op, entry::Kind, Command, LogEntry, PeerMessage};

/// Time advances in steps of this many milliseconds; every live replica ticks each step.
pub const STEP_MS: u64 = 10;

/// SplitMix64, so the harness replays exactly from its seed.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> TestRng {
        TestRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
    pub fn chance_ppm(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }
}

/// What survives a crash: exactly what was synced.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub state: DurableState,
    /// A local snapshot handed over in parts, until its last part (a crash loses it, but a
    /// restarted node's first part starts over anyway).
    assembly: SnapshotAssembly,
}

impl Disk {
    fn persist(&mut self, persist: &Persist) {
        if let Some(part) = &persist.snapshot_part {
            if let Some(write) = self.assembly.add(part, false) {
                self.state.apply_persisted(None, Some(&write), None);
            }
        }
        if persist.snapshot.is_some() {
            self.assembly.clear();
        }
        self.state.apply_persisted(
            persist.hard_state.as_ref(),
            persist.snapshot.as_ref(),
            persist.log_write.as_ref(),
        );
    }

    pub fn recover(&self) -> DurableState {
        let snapshot_index = self
            .state
            .snapshot
            .as_ref()
            .map_or(0, |(meta, _)| meta.index);
        for (offset, entry) in self.state.entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                snapshot_index + 1 + offset as u64,
                "durable log has a hole"
            );
        }
        self.state.clone()
    }
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        message: PeerMessage,
    },
    PersistDone {
        node: NodeId,
        incarnation: u64,
        ready: Box<Ready>,
        persist: Box<paxkv_core::Persist>,
    },
}

/// Readies with nothing to write that a node may take in a row without an input between them
/// (each is handed back at once); more means its node loop would spin.
const READIES_WITHOUT_INPUT_MAX: usize = 64;

pub struct Node {
    pub replica: Option<Replica>,
    pub disk: Disk,
    incarnation: u64,
    persisting: bool,
}

/// Network faults currently in force.
#[derive(Debug, Clone, Default)]
pub struct NetworkFaults {
    pub drop_ppm: u64,
    pub duplicate_ppm: u64,
    /// Extra latency drawn uniformly from 0..=this, which also reorders messages.
    pub jitter_ms: u64,
    /// Directed links that deliver nothing: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
}

/// One client operation as the checker sees it.
#[derive(Debug, Clone)]
pub struct Operation {
    pub request: RequestId,
    pub invoked_at: Time,
    pub completed_at: Option<Time>,
    pub kind: OperationKind,
    /// Revision the answer reported (writes: the revision they created).
    pub revision: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperationKind {
    Put {
        client_id: u64,
        sequence: u64,
        key: Vec<u8>,
        value: Vec<u8>,
        acknowledged: bool,
    },
    Read {
        key: Vec<u8>,
        consistency: Consistency,
        min_revision: u64,
        value: Option<Option<Vec<u8>>>,
    },
}

pub struct Cluster {
    pub config: ReplicaConfig,
    pub nodes: BTreeMap<NodeId, Node>,
    pub now: Time,
    pub rng: TestRng,
    pub faults: NetworkFaults,
    /// Persist latency in milliseconds (the time an fsync takes).
    pub persist_ms: u64,
    /// Base one-way message latency.
    pub latency_ms: u64,
    events: BTreeMap<(Time, u64), Event>,
    event_sequence: u64,
    /// Every entry any replica applied, by index: the chosen log. Agreement is checked on insert.
    pub chosen: BTreeMap<u64, LogEntry>,
    pub applied_per_node: BTreeMap<NodeId, u64>,
    pub operations: BTreeMap<RequestId, Operation>,
    pub proposed: BTreeSet<(u64, u64)>,
    next_request: u64,
    pub responses: BTreeMap<RequestId, Response>,
    /// Per-node clock: offset and drift (nodes absent here run on the real clock).
    pub clocks: BTreeMap<NodeId, NodeClock>,
    /// Compare every replica's state hash at every log position it applies.
    pub check_state_hashes: bool,
    state_hash_at: BTreeMap<u64, u64>,
}

/// A node's clock: `offset_ms + real * (1 + drift_ppm / 10^6)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeClock {
    pub offset_ms: u64,
    pub drift_ppm: i64,
}

fn clock_at(clock: Option<&NodeClock>, real: Time) -> Time {
    let Some(clock) = clock else { return real };
    let real_ms = i128::from(real.millis());
    let local =
        i128::from(clock.offset_ms) + real_ms + real_ms * i128::from(clock.drift_ppm) / 1_000_000;
    Time(u64::try_from(local).expect("clocks stay positive"))
}

/// Client ids the harness's clusters are born with as registered sessions, so tests can use
/// ids 1 ..= this for exactly-once writes without registering first (a write of an unknown
/// session is refused).
pub const PREREGISTERED_SESSIONS: u64 = 1000;

/// What every node of a new test cluster starts from: an empty store at index 0 that already
/// knows the sessions 1 ..= `PREREGISTERED_SESSIONS`.
pub fn initial_state() -> DurableState {
    use paxkv_proto::client::{ClientResponse, RegisterSessionResponse};
    use paxkv_proto::peer::{KvSnapshot, SessionRecord, SnapshotMeta};
    use prost::Message;
    let sessions = (1..=PREREGISTERED_SESSIONS)
        .map(|client_id| SessionRecord {
            client_id,
            last_sequence: 0,
            last_response: ClientResponse {
                request_id: 0,
                body: Some(Response::RegisterSession(RegisterSessionResponse {
                    header: None,
                    client_id,
                })),
            }
            .encode_to_vec(),
            last_index: 0,
        })
        .collect();
    let snapshot = KvSnapshot {
        sessions,
        ..KvSnapshot::default()
    };
    let meta = SnapshotMeta {
        index: 0,
        ballot: None,
        configuration: None,
    };
    DurableState {
        snapshot: Some((meta, snapshot.encode_to_vec())),
        ..DurableState::default()
    }
}

/// Writes `count` keys (`key-SEQUENCE`) through whichever node leads, each waited for up to a
/// second; returns how many were acknowledged.
pub fn write_keys(cluster: &mut Cluster, client_id: u64, first_sequence: u64, count: u64) -> u64 {
    let mut acknowledged = 0;
    for sequence in first_sequence..first_sequence + count {
        let Some(leader) = cluster.leader() else {
            cluster.run_for(STEP_MS);
            continue;
        };
        let key = format!("key-{sequence}");
        let request = cluster.put_via(leader, client_id, sequence, key.as_bytes(), b"value");
        if let Some(Response::Put(_)) = cluster.wait_for(request, 1000) {
            acknowledged += 1;
        }
    }
    acknowledged
}

/// In a build with the `planted-bugs` feature, `PAXKV_PLANTED_BUG=NAME` turns that bug on for
/// the test's thread, to check that the test pinning it fails with it.
pub fn plant_from_environment() {
    #[cfg(feature = "planted-bugs")]
    if let Ok(name) = std::env::var("PAXKV_PLANTED_BUG") {
        let bug = paxkv_core::planted::Bug::ALL
            .into_iter()
            .find(|bug| bug.name() == name)
            .unwrap_or_else(|| panic!("no planted bug is named {name}"));
        paxkv_core::planted::plant(Some(bug));
    }
}

impl Cluster {
    pub fn new(size: u64, seed: u64) -> Cluster {
        Cluster::with_config(size, seed, |_| {})
    }

    pub fn with_config(size: u64, seed: u64, adjust: impl Fn(&mut ReplicaConfig)) -> Cluster {
        plant_from_environment();
        let members: Vec<NodeId> = (1..=size).map(NodeId).collect();
        let mut config = ReplicaConfig::new(NodeId(1), members.clone(), seed);
        config.election_timeout_ms = 300;
        config.report_committed_entries = true;
        config.heartbeat_interval_ms = 50;
        adjust(&mut config);
        let mut cluster = Cluster {
            config,
            nodes: BTreeMap::new(),
            now: Time(0),
            rng: TestRng::new(seed),
            faults: NetworkFaults::default(),
            persist_ms: 2,
            latency_ms: 1,
            events: BTreeMap::new(),
            event_sequence: 0,
            chosen: BTreeMap::new(),
            applied_per_node: BTreeMap::new(),
            operations: BTreeMap::new(),
            proposed: BTreeSet::new(),
            next_request: 1,
            responses: BTreeMap::new(),
            clocks: BTreeMap::new(),
            check_state_hashes: false,
            state_hash_at: BTreeMap::new(),
        };
        for id in members {
            let replica = Replica::new(cluster.node_config(id), initial_state(), Time(0))
                .expect("test configuration is valid");
            cluster.nodes.insert(
                id,
                Node {
                    replica: Some(replica),
                    disk: Disk {
                        state: initial_state(),
                        ..Disk::default()
                    },
                    incarnation: 0,
                    persisting: false,
                },
            );
        }
        cluster
    }

    pub fn node_config(&self, id: NodeId) -> ReplicaConfig {
        let mut config = self.config.clone();
        config.node_id = id;
        config
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn replica(&self, id: NodeId) -> Option<&Replica> {
        self.nodes[&id].replica.as_ref()
    }

    fn schedule(&mut self, at: Time, event: Event) {
        self.event_sequence += 1;
        self.events.insert((at, self.event_sequence), event);
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: PeerMessage) {
        if self.faults.cut.contains(&(from, to)) || self.rng.chance_ppm(self.faults.drop_ppm) {
            return;
        }
        let copies = if self.rng.chance_ppm(self.faults.duplicate_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.latency_ms + self.rng.below(self.faults.jitter_ms + 1);
            let at = self.now.plus_millis(delay);
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    message: message.clone(),
                },
            );
        }
    }

    /// Takes and handles a node's readies while it has one and none is being persisted. A
    /// ready with nothing to write is handed back at once, as the node loop does; so many in a
    /// row without an input between would be a node loop spinning.
    fn drive(&mut self, id: NodeId) {
        for _ in 0..READIES_WITHOUT_INPUT_MAX {
            if !self.drive_once(id) {
                return;
            }
        }
        panic!(
            "{id} would spin: {READIES_WITHOUT_INPUT_MAX} readies in a row with nothing to write \
             and no input between them"
        );
    }

    /// Takes one ready if the node has one and none is being persisted; true if its persist
    /// was empty and it was handed back at once.
    fn drive_once(&mut self, id: NodeId) -> bool {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let Some(replica) = node.replica.as_mut() else {
            return false;
        };
        if node.persisting || !replica.has_ready() {
            return false;
        }
        let mut ready = replica.ready();
        let incarnation = node.incarnation;
        node.persisting = true;
        for outgoing in ready.take_messages() {
            self.send(id, outgoing.to, outgoing.message);
        }
        self.record_committed(id, ready.committed());
        if self.check_state_hashes && !ready.committed().is_empty() {
            let replica = self.nodes[&id].replica.as_ref().expect("checked above");
            let (applied, hash) = (replica.applied_index(), replica.kv().state_hash());
            let expected = *self.state_hash_at.entry(applied).or_insert(hash);
            assert_eq!(
                expected, hash,
                "{id} disagrees on the state at log position {applied}"
            );
        }
        for (request, response) in ready.take_responses() {
            self.record_response(request, response);
        }
        let persist = ready.take_persist();
        if persist.is_empty() {
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.persisting = false;
            let replica = node.replica.as_mut().expect("checked above");
            let mut after_persist = replica.advance(ready);
            for outgoing in after_persist.take_messages() {
                self.send(id, outgoing.to, outgoing.message);
            }
            return true;
        }
        let at = self.now.plus_millis(self.persist_ms);
        self.schedule(
            at,
            Event::PersistDone {
                node: id,
                incarnation,
                ready: Box::new(ready),
                persist: Box::new(persist),
            },
        );
        false
    }

    fn record_committed(&mut self, id: NodeId, committed: &[LogEntry]) {
        let applied = self.applied_per_node.entry(id).or_insert(0);
        for entry in committed {
            if let Some(existing) = self.chosen.get(&entry.index) {
                assert_eq!(
                    existing, entry,
                    "agreement violated at index {} on {id}",
                    entry.index
                );
            } else {
                if let Some(Kind::Command(command)) =
                    entry.entry.as_ref().and_then(|e| e.kind.as_ref())
                {
                    assert!(
                        self.proposed
                            .contains(&(command.client_id, command.sequence)),
                        "validity violated: {command:?} was never proposed"
                    );
                }
                self.chosen.insert(entry.index, entry.clone());
            }
            *applied = entry.index;
        }
    }

    fn record_response(&mut self, request: RequestId, response: Response) {
        let now = self.now;
        if let Some(operation) = self.operations.get_mut(&request) {
            operation.completed_at = Some(now);
            match (&mut operation.kind, &response) {
                (OperationKind::Put { acknowledged, .. }, Response::Put(put)) => {
                    assert!(put.succeeded, "unconditional puts always succeed");
                    *acknowledged = true;
                    operation.revision = put.header.as_ref().map(|header| header.revision);
                }
                (OperationKind::Read { value, .. }, Response::Get(get)) => {
                    *value = Some(get.kv.as_ref().map(|kv| kv.value.clone()));
                    operation.revision = get.header.as_ref().map(|header| header.revision);
                }
                _ => {}
            }
        }
        self.responses.insert(request, response);
    }

    fn finish_persist(
        &mut self,
        id: NodeId,
        incarnation: u64,
        ready: Box<Ready>,
        persist: Box<paxkv_core::Persist>,
    ) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return; // forgotten (removed for good)
        };
        if node.incarnation != incarnation || node.replica.is_none() {
            return; // crashed meanwhile: the write never reached the disk
        }
        node.disk.persist(&persist);
        node.persisting = false;
        let mut after_persist = node
            .replica
            .as_mut()
            .expect("checked above")
            .advance(*ready);
        for outgoing in after_persist.take_messages() {
            self.send(id, outgoing.to, outgoing.message);
        }
        self.drive(id);
    }

    /// Runs the cluster for `millis` of simulated time.
    pub fn run_for(&mut self, millis: u64) {
        let end = self.now.plus_millis(millis);
        while self.now < end {
            let step_end = self.now.plus_millis(STEP_MS).min(end);
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > step_end {
                    break;
                }
                let ((at, _), event) = entry.remove_entry();
                self.now = self.now.max(at);
                self.handle_event(event);
            }
            self.now = step_end;
            for id in self.ids() {
                if let Some(replica) = self
                    .nodes
                    .get_mut(&id)
                    .and_then(|node| node.replica.as_mut())
                {
                    replica.tick(clock_at(self.clocks.get(&id), step_end));
                }
                self.drive(id);
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, message } => {
                let local = clock_at(self.clocks.get(&to), self.now);
                if let Some(replica) = self
                    .nodes
                    .get_mut(&to)
                    .and_then(|node| node.replica.as_mut())
                {
                    replica.tick(local);
                    replica.step(from, message, local);
                    self.drive(to);
                }
            }
            Event::PersistDone {
                node,
                incarnation,
                ready,
                persist,
            } => self.finish_persist(node, incarnation, ready, persist),
        }
    }

    // --- faults --------------------------------------------------------------------------------

    pub fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.replica = None;
        node.incarnation += 1;
        node.persisting = false;
    }

    pub fn restart(&mut self, id: NodeId) {
        let config = self.node_config(id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        if node.replica.is_some() {
            return;
        }
        let durable = node.disk.recover();
        let local = clock_at(self.clocks.get(&id), self.now);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.replica = Some(Replica::new(config, durable, local).expect("recovery succeeds"));
    }

    /// Starts a new node `id` that joins the cluster: its log starts from the cluster's first
    /// configuration, which does not list it, until the leader's entries make it a learner.
    pub fn join_node(&mut self, id: NodeId) {
        let mut config = self.node_config(id);
        config.joining = true;
        let replica = Replica::new(config, initial_state(), self.now).expect("a joiner starts");
        let node = Node {
            replica: Some(replica),
            disk: Disk {
                state: initial_state(),
                ..Disk::default()
            },
            incarnation: 0,
            persisting: false,
        };
        assert!(self.nodes.insert(id, node).is_none(), "{id} is new");
    }

    /// Drops node `id` from the cluster for good (a removed node, its machine gone).
    pub fn forget(&mut self, id: NodeId) -> Node {
        self.nodes.remove(&id).expect("node exists")
    }

    /// Sends a membership request to `to`.
    pub fn member_via(&mut self, to: NodeId, change: paxkv_core::MemberRequest) -> RequestId {
        let request = self.new_request();
        let now = clock_at(self.clocks.get(&to), self.now);
        if let Some(replica) = self
            .nodes
            .get_mut(&to)
            .and_then(|node| node.replica.as_mut())
        {
            replica.change_membership(request, change, now);
            self.drive(to);
        }
        request
    }

    /// Whether node `id` waits for a sync (its answers wait for it too).
    pub fn is_persisting(&self, id: NodeId) -> bool {
        self.nodes[&id].persisting
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes[&id].replica.is_some()
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.faults.cut.insert((*x, *y));
                self.faults.cut.insert((*y, *x));
            }
        }
    }

    /// Drops every message `from` sends `to` (the other way still works).
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.faults.cut.insert((from, to));
    }

    pub fn cut_both_ways(&mut self, x: NodeId, y: NodeId) {
        self.faults.cut.insert((x, y));
        self.faults.cut.insert((y, x));
    }

    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|other| *other != id)
            .collect();
        self.partition(&[id], &others);
    }

    pub fn heal(&mut self) {
        self.faults = NetworkFaults::default();
    }

    // --- clients -------------------------------------------------------------------------------

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, node)| {
                node.replica
                    .as_ref()
                    .is_some_and(|replica| replica.role() == Role::Leader)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The leader with the highest ballot, if any node believes it leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.leaders()
            .into_iter()
            .max_by_key(|id| self.replica(*id).expect("leader is up").promised())
    }

    fn new_request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Sends a put to `to` and records it in the history.
    pub fn put_via(
        &mut self,
        to: NodeId,
        client_id: u64,
        sequence: u64,
        key: &[u8],
        value: &[u8],
    ) -> RequestId {
        let request = self.new_request();
        self.proposed.insert((client_id, sequence));
        self.operations.insert(
            request,
            Operation {
                request,
                invoked_at: self.now,
                completed_at: None,
                kind: OperationKind::Put {
                    client_id,
                    sequence,
                    key: key.to_vec(),
                    value: value.to_vec(),
                    acknowledged: false,
                },
                revision: None,
            },
        );
        let command = Command {
            client_id,
            sequence,
            op: Some(Op::Put(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })),
        };
        let now = clock_at(self.clocks.get(&to), self.now);
        if let Some(replica) = self
            .nodes
            .get_mut(&to)
            .and_then(|node| node.replica.as_mut())
        {
            replica.propose(request, command, now);
            self.drive(to);
        }
        request
    }

    /// Proposes any command at `to` (not recorded in the read/write history).
    pub fn command_via(&mut self, to: NodeId, client_id: u64, sequence: u64, op: Op) -> RequestId {
        let request = self.new_request();
        self.proposed.insert((client_id, sequence));
        let command = Command {
            client_id,
            sequence,
            op: Some(op),
        };
        let now = clock_at(self.clocks.get(&to), self.now);
        if let Some(replica) = self
            .nodes
            .get_mut(&to)
            .and_then(|node| node.replica.as_mut())
        {
            replica.propose(request, command, now);
            self.drive(to);
        }
        request
    }

    /// Serves any read at `to` (not recorded in the history).
    pub fn read_via(&mut self, to: NodeId, read: ReadRequest) -> RequestId {
        let request = self.new_request();
        let now = clock_at(self.clocks.get(&to), self.now);
        if let Some(replica) = self
            .nodes
            .get_mut(&to)
            .and_then(|node| node.replica.as_mut())
        {
            replica.read(request, read, now);
            self.drive(to);
        }
        request
    }

    pub fn get_via(&mut self, to: NodeId, key: &[u8], consistency: Consistency) -> RequestId {
        self.get_at_least_via(to, key, consistency, 0)
    }

    /// A read that also carries a minimum revision (used with `AtLeastRevision`).
    pub fn get_at_least_via(
        &mut self,
        to: NodeId,
        key: &[u8],
        consistency: Consistency,
        min_revision: u64,
    ) -> RequestId {
        let request = self.new_request();
        self.operations.insert(
            request,
            Operation {
                request,
                invoked_at: self.now,
                completed_at: None,
                kind: OperationKind::Read {
                    key: key.to_vec(),
                    consistency,
                    min_revision,
                    value: None,
                },
                revision: None,
            },
        );
        let read = ReadRequest::Get(GetRequest {
            key: key.to_vec(),
            consistency: consistency as i32,
            min_revision,
            min_applied_index: 0,
        });
        let now = clock_at(self.clocks.get(&to), self.now);
        if let Some(replica) = self
            .nodes
            .get_mut(&to)
            .and_then(|node| node.replica.as_mut())
        {
            replica.read(request, read, now);
            self.drive(to);
        }
        request
    }

    /// Runs until `request` is answered or `millis` pass; returns the answer.
    pub fn wait_for(&mut self, request: RequestId, millis: u64) -> Option<Response> {
        let end = self.now.plus_millis(millis);
        while self.now < end {
            if let Some(response) = self.responses.get(&request) {
                return Some(response.clone());
            }
            self.run_for(STEP_MS);
        }
        self.responses.get(&request).cloned()
    }

    /// Runs until a leader commits a fresh write; returns the milliseconds it took, or None.
    pub fn time_to_working_leader(&mut self, millis_max: u64, client_id: u64) -> Option<u64> {
        let start = self.now;
        let mut sequence = 1_000_000;
        while self.now.millis_since(start) < millis_max {
            if let Some(leader) = self.leader() {
                sequence += 1;
                let request = self.put_via(leader, client_id, sequence, b"probe", b"p");
                match self.wait_for(request, 200) {
                    Some(Response::Put(_)) => return Some(self.now.millis_since(start)),
                    // Refused at once (say the leader is still taking over): let time pass.
                    _ => self.run_for(STEP_MS),
                }
            } else {
                self.run_for(STEP_MS);
            }
        }
        None
    }

    pub fn is_error(response: &Response, code: ErrorCode) -> bool {
        matches!(response, Response::Error(error) if error.code == code as i32)
    }

    // --- checks --------------------------------------------------------------------------------

    /// Every acknowledged write is in the chosen log.
    pub fn check_acknowledged_writes_chosen(&self) {
        let chosen: BTreeSet<(u64, u64)> = self
            .chosen
            .values()
            .filter_map(
                |entry| match entry.entry.as_ref().and_then(|e| e.kind.as_ref()) {
                    Some(Kind::Command(command)) => Some((command.client_id, command.sequence)),
                    _ => None,
                },
            )
            .collect();
        for operation in self.operations.values() {
            if let OperationKind::Put {
                client_id,
                sequence,
                acknowledged: true,
                ..
            } = &operation.kind
            {
                assert!(
                    chosen.contains(&(*client_id, *sequence)),
                    "acknowledged write ({client_id}, {sequence}) is not in the chosen log"
                );
            }
        }
    }

    /// Value of every key after each revision, replaying the chosen log in order.
    fn states_by_revision(&self) -> Vec<BTreeMap<Vec<u8>, Vec<u8>>> {
        let (_, snapshot) = initial_state()
            .snapshot
            .expect("the initial state is a snapshot");
        let snapshot = <paxkv_proto::peer::KvSnapshot as prost::Message>::decode(&snapshot[..])
            .expect("the initial snapshot decodes");
        let mut store = paxkv_core::KvStore::from_snapshot(snapshot);
        let mut states = vec![BTreeMap::new()];
        let mut current = BTreeMap::new();
        for (index, entry) in &self.chosen {
            let payload = entry.entry.as_ref().expect("entries have a payload");
            let before = store.revision();
            store.apply(*index, payload);
            if store.revision() != before {
                match &payload.kind {
                    Some(Kind::Command(Command {
                        op: Some(Op::Put(put)),
                        ..
                    })) => {
                        current.insert(put.key.clone(), put.value.clone());
                    }
                    Some(Kind::Command(Command {
                        op: Some(Op::Delete(delete)),
                        ..
                    })) => {
                        current.remove(&delete.key);
                    }
                    _ => {}
                }
                states.push(current.clone());
            }
        }
        states
    }

    /// Linearizable reads: each read saw the state at its revision, that revision is at least
    /// the revision of everything completed before the read began, and no write that began
    /// after the read ended is visible to it. Stale reads: the value existed at their revision.
    pub fn check_reads(&self) {
        assert!(
            self.chosen.keys().copied().eq(1..=self.chosen.len() as u64),
            "the chosen log has a gap"
        );
        let states = self.states_by_revision();
        for read in self.operations.values() {
            let OperationKind::Read {
                key,
                consistency,
                min_revision,
                value: Some(value),
            } = &read.kind
            else {
                continue;
            };
            let revision = read.revision.expect("answered reads carry a revision") as usize;
            assert!(
                revision < states.len(),
                "read at revision {revision} beyond the chosen log"
            );
            assert_eq!(
                states[revision].get(key),
                value.as_ref(),
                "read of {key:?} at revision {revision} returned a value that did not exist then"
            );
            assert!(
                revision as u64 >= *min_revision,
                "read {:?} asked for revision {min_revision} and was served at {revision}",
                read.request
            );
            if *consistency != Consistency::Linearizable {
                continue;
            }
            let completed_at = read.completed_at.expect("answered");
            for other in self.operations.values() {
                let Some(other_revision) = other.revision else {
                    continue;
                };
                if other
                    .completed_at
                    .is_some_and(|done| done < read.invoked_at)
                {
                    assert!(
                        other_revision as usize <= revision,
                        "linearizability: read {:?} at revision {revision} misses {:?} (revision {other_revision}) that completed before it began",
                        read.request,
                        other.request
                    );
                }
                let is_write = matches!(other.kind, OperationKind::Put { .. });
                if is_write && other.invoked_at > completed_at {
                    assert!(
                        other_revision as usize > revision,
                        "linearizability: read {:?} sees write {:?} that began after it ended",
                        read.request,
                        other.request
                    );
                }
            }
        }
    }

    /// Heals every fault, restarts every node, and checks the liveness bound: a write commits
    /// within `millis_max` and then every replica converges within `millis_max`. Returns the
    /// time the first write took.
    pub fn heal_and_converge(&mut self, millis_max: u64) -> u64 {
        self.heal();
        for id in self.ids() {
            self.restart(id);
        }
        let took = self.time_to_working_leader(millis_max, 77);
        let took =
            took.unwrap_or_else(|| panic!("no write committed within {millis_max} ms of healing"));
        let mut waited = 0;
        while !self.converged() && waited < millis_max {
            self.run_for(100);
            waited += 100;
        }
        if !self.converged() {
            for id in self.ids() {
                eprintln!(
                    "{:?}",
                    self.replica(id).expect("every node was restarted").status()
                );
            }
            panic!("replicas did not converge within {millis_max} ms of healing");
        }
        took
    }

    /// All live replicas applied the same prefix and agree on the state hash.
    pub fn converged(&self) -> bool {
        let mut seen = BTreeSet::new();
        for node in self.nodes.values() {
            let Some(replica) = &node.replica else {
                return false;
            };
            seen.insert((replica.applied_index(), replica.kv().state_hash()));
        }
        seen.len() == 1
    }
}
