//! The nemesis: network splits and one-way links, crashes and power cuts, slow and lossy
//! networks, failing and slow syncs, paused nodes; which moves a seed makes and how often is
//! in its `SimOptions`, every single move drawn from the seed.

use super::options::pick_weighted;
use super::*;

/// A move of the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// One node stops hearing from another.
    OneWayLink,
    /// Both directions between two nodes work again.
    LinkRestored,
    /// The servers split in two sides (clients still reach all).
    Split,
    /// Every link between servers works again.
    NetworkHealed,
    /// A node crashes (a minority at most is down).
    Crash,
    /// A crashed node starts again.
    Restart,
    /// Every node crashes and nothing unsynced survives.
    PowerCut,
    /// The leader reaches its followers but hears none of them.
    LeaderWithoutQuorum,
    /// One node is cut from the leader both ways.
    CutFromLeader,
    /// The nodes form a chain with the leader at one end.
    Chain,
    /// The network turns calm, slow or lossy.
    Weather,
    /// A node's next sync fails (it stops, as a real node must).
    DiskFault,
    /// A node's disk (often the leader's) turns slow for a while.
    SlowDisk,
    /// A node (often the leader) is frozen while its clock runs on.
    Pause,
    /// The leader is cut so that its lease outlives its reach.
    LeaseOutlivingReach,
    /// The leader's disk stalls and its links fail at once.
    SickLeader,
    /// The node furthest behind crashes.
    CrashLagging,
    /// A node crashes, restarts and crashes again while catching up.
    Flap,
    /// The followers a commit needs have slow disks and lose what they had not synced in a
    /// crash; then the leader crashes too.
    LoseUnsyncedAcknowledgements,
    /// A new node starts on a spare address and joins as a learner (`kv-server --join`).
    AddNode,
    /// A learner is promoted to voter (refused while it catches up).
    PromoteLearner,
    /// A member is removed: a voter, a learner, the leader, or a node that is down.
    RemoveMember,
    /// A node that was removed comes back with a wiped data directory under its old id; it
    /// must be refused and stop.
    WipedNodeRejoins,
    /// A member the cluster started with loses its disk and comes back empty under its old id
    /// and flags (an operator who swapped the disk and restarted the service), just as the
    /// leader crashes and a follower that missed the latest writes is back: it forgot what it
    /// promised and accepted, so the members must refuse it, and it stops.
    WipedMemberRejoins,
    /// Two learners are added at addresses where no node ever runs (an operator who never
    /// started them): they must neither be promoted nor count in a quorum.
    AddPhantomLearner,
}

impl Fault {
    pub const ALL: [Fault; 25] = [
        Fault::OneWayLink,
        Fault::LinkRestored,
        Fault::Split,
        Fault::NetworkHealed,
        Fault::Crash,
        Fault::Restart,
        Fault::PowerCut,
        Fault::LeaderWithoutQuorum,
        Fault::CutFromLeader,
        Fault::Chain,
        Fault::Weather,
        Fault::DiskFault,
        Fault::SlowDisk,
        Fault::Pause,
        Fault::LeaseOutlivingReach,
        Fault::SickLeader,
        Fault::CrashLagging,
        Fault::Flap,
        Fault::LoseUnsyncedAcknowledgements,
        Fault::AddNode,
        Fault::PromoteLearner,
        Fault::RemoveMember,
        Fault::WipedNodeRejoins,
        Fault::WipedMemberRejoins,
        Fault::AddPhantomLearner,
    ];

    /// Whether the move changes membership (a seed with any of them starts no pinned clients:
    /// the node a client is pinned to may leave).
    pub fn changes_membership(self) -> bool {
        matches!(
            self,
            Fault::AddNode
                | Fault::PromoteLearner
                | Fault::RemoveMember
                | Fault::WipedNodeRejoins
                | Fault::WipedMemberRejoins
                | Fault::AddPhantomLearner
        )
    }

    /// The move's weight in a seed that makes it, before the seed's emphasis. The sick leader
    /// and the power cut weigh more than their share of real incidents: they are the moves
    /// that let a lease or clock slip and an unsynced acknowledgement show (measured on seeds
    /// 0..200: at the old weights of 2 and 6 the planted stale-clock bug was caught by 1 seed
    /// in 300).
    pub fn base_weight(self) -> u32 {
        match self {
            Fault::OneWayLink | Fault::LinkRestored | Fault::NetworkHealed => 10,
            Fault::Crash | Fault::Restart | Fault::PowerCut => 10,
            Fault::SickLeader => 16,
            Fault::Split | Fault::Weather | Fault::SlowDisk | Fault::Pause => 8,
            Fault::LeaderWithoutQuorum | Fault::Chain | Fault::CrashLagging => 5,
            Fault::CutFromLeader | Fault::DiskFault | Fault::Flap => 4,
            Fault::LoseUnsyncedAcknowledgements => 4,
            Fault::LeaseOutlivingReach => 3,
            Fault::AddNode => 16,
            Fault::PromoteLearner => 30,
            Fault::RemoveMember => 16,
            Fault::WipedNodeRejoins => 3,
            Fault::WipedMemberRejoins => 10,
            Fault::AddPhantomLearner => 6,
        }
    }

    /// How likely a seed makes this move at all. Frozen nodes stretch every timing, so half
    /// the seeds run without them; slow disks a quarter.
    pub fn enabled_probability(self) -> f64 {
        match self {
            Fault::Pause => 0.5,
            Fault::SlowDisk => 0.75,
            Fault::SickLeader => 0.9,
            // Half the seeds change membership at all (`SimOptions`); those make every move
            // but the wiped node's return.
            Fault::AddNode | Fault::PromoteLearner | Fault::RemoveMember => 1.0,
            Fault::WipedNodeRejoins | Fault::WipedMemberRejoins | Fault::AddPhantomLearner => 0.6,
            _ => 0.85,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::OneWayLink => "one_way_link",
            Fault::LinkRestored => "link_restored",
            Fault::Split => "split",
            Fault::NetworkHealed => "network_healed",
            Fault::Crash => "crash",
            Fault::Restart => "restart",
            Fault::PowerCut => "power_cut",
            Fault::LeaderWithoutQuorum => "leader_without_quorum",
            Fault::CutFromLeader => "cut_from_leader",
            Fault::Chain => "chain",
            Fault::Weather => "weather",
            Fault::DiskFault => "disk_fault",
            Fault::SlowDisk => "slow_disk",
            Fault::Pause => "pause",
            Fault::LeaseOutlivingReach => "lease_outliving_reach",
            Fault::SickLeader => "sick_leader",
            Fault::CrashLagging => "crash_lagging",
            Fault::Flap => "flap",
            Fault::LoseUnsyncedAcknowledgements => "lose_unsynced_acknowledgements",
            Fault::AddNode => "add_node",
            Fault::PromoteLearner => "promote_learner",
            Fault::RemoveMember => "remove_member",
            Fault::WipedNodeRejoins => "wiped_node_rejoins",
            Fault::WipedMemberRejoins => "wiped_member_rejoins",
            Fault::AddPhantomLearner => "add_phantom_learner",
        }
    }
}

pub(super) struct Nemesis<'a> {
    pub(super) handle: &'a Handle,
    pub(super) net: &'a madsim::net::NetSim,
    /// Every address a node may run on (see `Slot`).
    pub(super) nodes: &'a [NodeHandle],
    /// Where the nemesis's membership requests come from.
    pub(super) client_node: &'a NodeHandle,
    pub(super) storages: &'a [SimStorage],
    pub(super) down: Vec<bool>,
    /// The member that came back wiped, if one did (at most one a run: a refused voter stays
    /// in the configuration until removed, and a second could cost the quorum for good).
    pub(super) wiped_member: Option<usize>,
    pub(super) shared: &'a Shared,
}

impl Nemesis<'_> {
    pub(super) fn ids(&self, indexes: &[usize]) -> Vec<usize> {
        indexes.iter().map(|index| index + 1).collect()
    }

    fn clog(&self, from: usize, to: usize) {
        self.net
            .clog_link(self.nodes[from].id(), self.nodes[to].id());
    }

    pub(super) fn clog_both(&self, a: usize, b: usize) {
        self.clog(a, b);
        self.clog(b, a);
    }

    fn unclog_all(&self) {
        for a in self.nodes {
            for b in self.nodes {
                self.net.unclog_link(a.id(), b.id());
            }
        }
    }

    /// The addresses that run a member (or a node joining): faults pick among these.
    pub(super) fn active(&self) -> Vec<usize> {
        self.shared.active_slots()
    }

    pub(super) fn crash(&mut self, index: usize, power_cut: bool) {
        self.handle.kill(self.nodes[index].id());
        let (kept, lost) = self.storages[index].crash(power_cut);
        self.down[index] = true;
        self.shared
            .stopped
            .lock()
            .expect("not poisoned")
            .remove(&index);
        self.shared.trace(
            "crash",
            json!({"node": index + 1, "unsynced_writes_kept": kept, "unsynced_writes_lost": lost}),
        );
    }

    /// Nodes that stopped on a failed sync count as crashed (a real one exited); a restart
    /// brings them back.
    fn crash_stopped(&mut self) {
        let stopped = std::mem::take(&mut *self.shared.stopped.lock().expect("not poisoned"));
        for index in stopped {
            if !self.down[index] {
                self.crash(index, false);
            }
        }
    }

    fn restart(&mut self, index: usize) {
        self.handle.restart(self.nodes[index].id());
        self.down[index] = false;
        self.shared.trace("restart", json!({"node": index + 1}));
    }

    /// The leader half the time (when one is known), else `other`.
    fn leader_or(&self, other: usize) -> usize {
        match self.leader() {
            Some(leader) if thread_rng().gen_bool(0.5) => leader,
            _ => other,
        }
    }

    /// The live node the status samples show furthest behind (a snapshot may be on its way
    /// to it, so crashing it tests a transfer's restart).
    fn lagging(&self) -> Option<usize> {
        let active = self.active();
        let applied = self.shared.applied.lock().expect("not poisoned");
        active
            .into_iter()
            .filter(|index| !self.down[*index])
            .min_by_key(|index| (applied.get(index).copied().unwrap_or(0), *index))
    }

    /// Freezes every task of a node for 10 ms to 3 s while its clock runs on (a SIGSTOP or a
    /// virtual machine pause), then lets it go on where it stopped.
    async fn pause(&mut self, node: usize) {
        let length_ms = thread_rng().gen_range(10..3000u64);
        self.shared
            .trace("pause", json!({"node": node + 1, "length_ms": length_ms}));
        self.handle.pause(self.nodes[node].id());
        tokio::time::sleep(Duration::from_millis(length_ms)).await;
        self.handle.resume(self.nodes[node].id());
        self.shared.trace("resume", json!({"node": node + 1}));
    }

    /// The schedule of a lease that outlives its leader's reach: the leader and one follower
    /// cut both ways, and the leader's messages to the other follower lost while that
    /// follower's still arrive (so the leader keeps hearing a quorum). Held until a later move
    /// restores the links, often longer than a lease.
    fn cut_around_leader_for_a_lease(&self) {
        let Some(leader) = self.leader() else { return };
        let others: Vec<usize> = self.active().into_iter().filter(|i| *i != leader).collect();
        if others.is_empty() {
            return;
        }
        let pick = thread_rng().gen_range(0..others.len());
        let one_way = others[pick];
        for other in others.iter().copied().filter(|other| *other != one_way) {
            self.clog_both(leader, other);
        }
        self.clog(leader, one_way);
        self.shared.trace(
            "lease_outliving_reach",
            json!({"leader": leader + 1, "hears_from": one_way + 1}),
        );
    }

    /// A leader whose disk stalls and whose links to its peers fail at once (a sick host):
    /// clients still reach it, the others elect a new leader, and the old one must not go on
    /// answering from its lease while its sync hangs.
    fn sicken_leader(&self) {
        let Some(leader) = self.leader() else { return };
        let length_ms = thread_rng().gen_range(2000..6000u64);
        self.storages[leader].slow_down(Duration::from_millis(length_ms));
        for other in self.active().into_iter().filter(|other| *other != leader) {
            self.clog_both(leader, other);
        }
        self.shared.trace(
            "sick_leader",
            json!({"leader": leader + 1, "slow_disk_ms": length_ms}),
        );
    }

    /// The schedule that shows an acknowledgement given before the sync that backs it: the
    /// followers a commit needs get slow disks (so what they accepted stays unsynced for
    /// seconds) and the others are cut from the leader (so only the slow ones can acknowledge);
    /// after a while of client writes the slow followers crash, losing what they had not
    /// synced, and start again, and then the leader crashes. The survivors then hold exactly
    /// what a quorum durably held: anything committed beyond that was acknowledged unsynced.
    async fn lose_unsynced_acknowledgements(&mut self) {
        let Some(leader) = self.leader() else { return };
        let active = self.active();
        let count = active.len();
        let mut acking = self.others_in_random_order(leader);
        acking.truncate(count / 2);
        let (slow_ms, writing_ms) = {
            let mut rng = thread_rng();
            let slow_ms = rng.gen_range(1000..4000u64);
            (slow_ms, rng.gen_range(100..slow_ms / 2))
        };
        for follower in &acking {
            self.storages[*follower].slow_down(Duration::from_millis(slow_ms));
        }
        for other in active
            .into_iter()
            .filter(|i| *i != leader && !acking.contains(i))
        {
            self.clog_both(leader, other);
        }
        self.shared.trace(
            "lose_unsynced_acknowledgements",
            json!({"leader": leader + 1, "slow": self.ids(&acking), "slow_disk_ms": slow_ms}),
        );
        tokio::time::sleep(Duration::from_millis(writing_ms)).await;
        for follower in acking {
            self.crash(follower, false);
            self.restart(follower);
        }
        // The cut stays until a later move heals it: the stream to a cut follower holds what
        // the leader sent, and delivered now it would hand the survivors what only the crashed
        // nodes had acknowledged. Once they elected a leader of their own, it arrives too late.
        self.crash(leader, false);
    }

    /// A node that crashes, comes back, and crashes again while it catches up (a crash loop):
    /// the second crash often lands in the middle of a snapshot transfer to it.
    async fn flap(&mut self, node: usize) {
        let (down_ms, up_ms) = {
            let mut rng = thread_rng();
            (rng.gen_range(300..1500u64), rng.gen_range(10..400u64))
        };
        self.crash(node, false);
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        self.restart(node);
        tokio::time::sleep(Duration::from_millis(up_ms)).await;
        self.crash(node, false);
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        self.restart(node);
    }

    pub(super) fn leader(&self) -> Option<usize> {
        self.shared
            .leader
            .lock()
            .expect("not poisoned")
            .map(|(index, _)| index)
            .filter(|index| !self.down[*index] && self.shared.is_active(*index))
    }

    fn weather(&self, name: &str, loss: f64, latency_ms: (u64, u64)) {
        self.net.update_config(|config| {
            config.packet_loss_rate = loss;
            config.send_latency =
                Duration::from_millis(latency_ms.0)..Duration::from_millis(latency_ms.1);
        });
        self.shared.trace(
            "network",
            json!({"weather": name, "packet_loss": loss, "latency_ms": [latency_ms.0, latency_ms.1]}),
        );
    }

    /// Faults until `length` of simulated time has passed since the start: one move every
    /// `fault_interval_ms`, each drawn by the seed's fault weights.
    pub(super) async fn fault_phase(&mut self, length: Duration) {
        let shared = self.shared;
        let options = &shared.options;
        while self.shared.start.elapsed() < length {
            self.crash_stopped();
            let active = self.active();
            let (fault, a, b, pause_ms) = {
                let mut rng = thread_rng();
                (
                    pick_weighted(&options.fault_weights, &mut rng),
                    active[rng.gen_range(0..active.len())],
                    active[rng.gen_range(0..active.len())],
                    rng.gen_range(options.fault_interval_ms()),
                )
            };
            if let Some(fault) = fault {
                self.make(fault, a, b).await;
            }
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }

    /// One move, on nodes `a` and `b` where it needs some; a move whose nodes do not fit (a
    /// crash of a node already down, a link from a node to itself) does nothing.
    async fn make(&mut self, fault: Fault, a: usize, b: usize) {
        let active = self.active();
        let may_crash = (active.len() - 1) / 2;
        let down = active.iter().filter(|index| self.down[**index]).count();
        match fault {
            Fault::OneWayLink if a != b => {
                self.clog(a, b);
                self.shared
                    .trace("one_way_link", json!({"from": a + 1, "to": b + 1}));
            }
            Fault::LinkRestored if a != b => {
                self.net.unclog_link(self.nodes[a].id(), self.nodes[b].id());
                self.net.unclog_link(self.nodes[b].id(), self.nodes[a].id());
                self.shared
                    .trace("link_restored", json!({"between": [a + 1, b + 1]}));
            }
            Fault::Split => self.split(),
            Fault::NetworkHealed => {
                self.unclog_all();
                self.shared.trace("network_healed", json!({}));
            }
            Fault::Crash if !self.down[a] && down < may_crash => self.crash(a, false),
            Fault::Restart if self.down[a] => self.restart(a),
            Fault::PowerCut => self.power_cut().await,
            Fault::LeaderWithoutQuorum => self.leader_without_quorum(),
            Fault::CutFromLeader => {
                if let Some(leader) = self.leader().filter(|leader| *leader != a) {
                    self.clog_both(a, leader);
                    self.shared.trace(
                        "cut_from_leader",
                        json!({"node": a + 1, "leader": leader + 1}),
                    );
                }
            }
            Fault::Chain => self.chain(),
            Fault::Weather => self.change_weather(),
            Fault::DiskFault if !self.down[a] => {
                self.storages[a].fail_next_sync();
                self.shared.trace("disk_fault", json!({"node": a + 1}));
            }
            Fault::SlowDisk => {
                let node = self.leader_or(a);
                let length_ms = thread_rng().gen_range(500..5000u64);
                self.storages[node].slow_down(Duration::from_millis(length_ms));
                self.shared.trace(
                    "slow_disk",
                    json!({"node": node + 1, "length_ms": length_ms}),
                );
            }
            Fault::Pause => {
                let node = self.leader_or(a);
                if !self.down[node] {
                    self.pause(node).await;
                }
            }
            Fault::LeaseOutlivingReach => self.cut_around_leader_for_a_lease(),
            Fault::SickLeader => self.sicken_leader(),
            Fault::CrashLagging if down < may_crash => {
                if let Some(lagging) = self.lagging() {
                    self.crash(lagging, false);
                }
            }
            Fault::Flap if down < may_crash && !self.down[a] => self.flap(a).await,
            Fault::LoseUnsyncedAcknowledgements if down == 0 => {
                self.lose_unsynced_acknowledgements().await
            }
            Fault::AddNode => self.add_node(),
            Fault::PromoteLearner => self.promote_learner().await,
            Fault::RemoveMember => self.remove_member(a).await,
            Fault::WipedNodeRejoins => self.wiped_node_rejoins(),
            Fault::WipedMemberRejoins => self.wiped_member_rejoins().await,
            Fault::AddPhantomLearner => self.add_phantom_learners().await,
            _ => {}
        }
    }

    /// A split between servers; clients still reach every node, so a deposed leader would be
    /// asked, and caught, if it answered from stale state.
    fn split(&self) {
        let active = self.active();
        let count = active.len();
        if count < 2 {
            return;
        }
        let mask = thread_rng().gen_range(1..(1u32 << count) - 1);
        let on_side = |position: usize| (mask >> position) & 1 == 1;
        let side: Vec<usize> = (0..count)
            .filter(|position| on_side(*position))
            .map(|position| active[position])
            .collect();
        for i in 0..count {
            for j in 0..count {
                if on_side(i) != on_side(j) {
                    self.clog(active[i], active[j]);
                }
            }
        }
        self.shared.trace("split", json!({"side": self.ids(&side)}));
    }

    /// A power cut: nothing unsynced survives anywhere; every node comes back after an outage.
    async fn power_cut(&mut self) {
        let active = self.active();
        for index in active.iter().copied() {
            if !self.down[index] {
                self.crash(index, true);
            }
        }
        self.shared.trace("whole_cluster_crashed", json!({}));
        let outage = thread_rng().gen_range(100..3000u64);
        tokio::time::sleep(Duration::from_millis(outage)).await;
        for index in active {
            self.restart(index);
        }
    }

    /// The leader still reaches its followers but hears from none of them.
    fn leader_without_quorum(&self) {
        let Some(leader) = self.leader() else { return };
        for other in self.active().into_iter().filter(|other| *other != leader) {
            self.clog(other, leader);
        }
        self.shared
            .trace("leader_without_quorum", json!({"leader": leader + 1}));
    }

    /// Every node but `leader`, in random order.
    pub(super) fn others_in_random_order(&self, leader: usize) -> Vec<usize> {
        let mut rng = thread_rng();
        let mut others: Vec<usize> = self.active().into_iter().filter(|i| *i != leader).collect();
        for i in (1..others.len()).rev() {
            others.swap(i, rng.gen_range(0..=i));
        }
        others
    }

    /// A chain with the leader at one end: only neighbours talk.
    fn chain(&self) {
        let Some(leader) = self.leader() else { return };
        let mut order = self.others_in_random_order(leader);
        order.insert(0, leader);
        for (i, x) in order.iter().enumerate() {
            for (j, y) in order.iter().enumerate() {
                if i.abs_diff(j) > 1 {
                    self.clog(*x, *y);
                }
            }
        }
        self.shared
            .trace("chain", json!({"order": self.ids(&order)}));
    }

    /// Calm, slow (up to 300 ms) or lossy (1 to 15% of packets) network.
    fn change_weather(&self) {
        match thread_rng().gen_range(0..3u32) {
            0 => self.weather("calm", 0.0, (1, 5)),
            1 => {
                let high = thread_rng().gen_range(20..300u64);
                self.weather("slow", 0.0, (1, high));
            }
            _ => {
                let loss = thread_rng().gen_range(0.01..0.15);
                self.weather("lossy", loss, (1, 10));
            }
        }
    }

    /// Every link back, every node up, calm network; the clients keep working.
    pub(super) fn heal(&mut self) {
        self.unclog_all();
        self.weather("calm", 0.0, (1, 5));
        for storage in self.storages {
            let mut disk = storage.disk.lock().expect("not poisoned");
            disk.fail_next_sync = false;
            disk.slow_until = None;
        }
        self.crash_stopped();
        for index in self.active() {
            if self.down[index] {
                self.restart(index);
            }
        }
        *self.shared.healed_at.lock().expect("not poisoned") = Some(Instant::now());
        self.shared.trace("healed", json!({}));
    }
}
