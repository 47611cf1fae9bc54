//! The nemesis: network splits and one-way links, crashes and power cuts, slow and lossy
//! networks, failing syncs; every choice drawn from the seed.

use super::*;

pub(super) struct Nemesis<'a> {
    pub(super) handle: &'a Handle,
    pub(super) net: &'a madsim::net::NetSim,
    pub(super) nodes: &'a [NodeHandle],
    pub(super) storages: &'a [SimStorage],
    pub(super) down: Vec<bool>,
    pub(super) shared: &'a Shared,
}

impl Nemesis<'_> {
    fn ids(&self, indexes: &[usize]) -> Vec<usize> {
        indexes.iter().map(|index| index + 1).collect()
    }

    fn clog(&self, from: usize, to: usize) {
        self.net
            .clog_link(self.nodes[from].id(), self.nodes[to].id());
    }

    fn clog_both(&self, a: usize, b: usize) {
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

    fn crash(&mut self, index: usize, power_cut: bool) {
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
        let applied = self.shared.applied.lock().expect("not poisoned");
        (0..self.nodes.len())
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
        let others: Vec<usize> = (0..self.nodes.len()).filter(|i| *i != leader).collect();
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
        let length_ms = thread_rng().gen_range(1000..5000u64);
        self.storages[leader].slow_down(Duration::from_millis(length_ms));
        for other in (0..self.nodes.len()).filter(|other| *other != leader) {
            self.clog_both(leader, other);
        }
        self.shared.trace(
            "sick_leader",
            json!({"leader": leader + 1, "slow_disk_ms": length_ms}),
        );
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

    fn leader(&self) -> Option<usize> {
        self.shared
            .leader
            .lock()
            .expect("not poisoned")
            .map(|(index, _)| index)
            .filter(|index| !self.down[*index])
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

    /// Faults until `length` of simulated time has passed since the start.
    pub(super) async fn fault_phase(&mut self, length: Duration) {
        let count = self.nodes.len();
        let may_crash = (count - 1) / 2;
        while self.shared.start.elapsed() < length {
            self.crash_stopped();
            let (choice, a, b, pause_ms) = {
                let mut rng = thread_rng();
                (
                    rng.gen_range(0..120u32),
                    rng.gen_range(0..count),
                    rng.gen_range(0..count),
                    rng.gen_range(50..1500u64),
                )
            };
            let down = self.down.iter().filter(|down| **down).count();
            match choice {
                0..=9 if a != b => {
                    self.clog(a, b);
                    self.shared
                        .trace("one_way_link", json!({"from": a + 1, "to": b + 1}));
                }
                10..=19 if a != b => {
                    self.net.unclog_link(self.nodes[a].id(), self.nodes[b].id());
                    self.net.unclog_link(self.nodes[b].id(), self.nodes[a].id());
                    self.shared
                        .trace("link_restored", json!({"between": [a + 1, b + 1]}));
                }
                20..=27 => {
                    // A split between servers; clients still reach every node, so a deposed
                    // leader would be asked, and caught, if it answered from stale state.
                    let mask = thread_rng().gen_range(1..(1u32 << count) - 1);
                    let side: Vec<usize> = (0..count).filter(|i| (mask >> i) & 1 == 1).collect();
                    for i in 0..count {
                        for j in 0..count {
                            if (mask >> i) & 1 != (mask >> j) & 1 {
                                self.clog(i, j);
                            }
                        }
                    }
                    self.shared.trace("split", json!({"side": self.ids(&side)}));
                }
                28..=37 => {
                    self.unclog_all();
                    self.shared.trace("network_healed", json!({}));
                }
                38..=47 if !self.down[a] && down < may_crash => self.crash(a, false),
                48..=57 if self.down[a] => self.restart(a),
                58..=63 => {
                    // A power cut: nothing unsynced survives anywhere.
                    for index in 0..count {
                        if !self.down[index] {
                            self.crash(index, true);
                        }
                    }
                    self.shared.trace("whole_cluster_crashed", json!({}));
                    let outage = thread_rng().gen_range(100..3000u64);
                    tokio::time::sleep(Duration::from_millis(outage)).await;
                    for index in 0..count {
                        self.restart(index);
                    }
                }
                64..=68 => {
                    // The leader still reaches its followers but hears from none of them.
                    if let Some(leader) = self.leader() {
                        for other in (0..count).filter(|other| *other != leader) {
                            self.clog(other, leader);
                        }
                        self.shared
                            .trace("leader_without_quorum", json!({"leader": leader + 1}));
                    }
                }
                69..=72 => {
                    if let Some(leader) = self.leader() {
                        if a != leader {
                            self.clog_both(a, leader);
                            self.shared.trace(
                                "cut_from_leader",
                                json!({"node": a + 1, "leader": leader + 1}),
                            );
                        }
                    }
                }
                73..=77 => {
                    // A chain with the leader at one end: only neighbours talk.
                    if let Some(leader) = self.leader() {
                        let mut order: Vec<usize> = (0..count).filter(|i| *i != leader).collect();
                        for i in (1..order.len()).rev() {
                            order.swap(i, thread_rng().gen_range(0..=i));
                        }
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
                }
                78..=85 => match thread_rng().gen_range(0..3u32) {
                    0 => self.weather("calm", 0.0, (1, 5)),
                    1 => {
                        let high = thread_rng().gen_range(20..300u64);
                        self.weather("slow", 0.0, (1, high));
                    }
                    _ => {
                        let loss = thread_rng().gen_range(0.01..0.15);
                        self.weather("lossy", loss, (1, 10));
                    }
                },
                86..=89 if !self.down[a] => {
                    self.storages[a].fail_next_sync();
                    self.shared.trace("disk_fault", json!({"node": a + 1}));
                }
                90..=97 if self.shared.options.slow_disks => {
                    let node = self.leader_or(a);
                    let length_ms = thread_rng().gen_range(500..5000u64);
                    self.storages[node].slow_down(Duration::from_millis(length_ms));
                    self.shared.trace(
                        "slow_disk",
                        json!({"node": node + 1, "length_ms": length_ms}),
                    );
                }
                98..=105 if self.shared.options.pauses => {
                    let node = self.leader_or(a);
                    if !self.down[node] {
                        self.pause(node).await;
                    }
                }
                106..=108 => self.cut_around_leader_for_a_lease(),
                109..=110 if self.shared.options.slow_disks => self.sicken_leader(),
                116..=119 if down < may_crash && !self.down[a] => self.flap(a).await,
                111..=115 if down < may_crash => {
                    if let Some(lagging) = self.lagging() {
                        self.crash(lagging, false);
                    }
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
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
        for index in 0..self.nodes.len() {
            if self.down[index] {
                self.restart(index);
            }
        }
        *self.shared.healed_at.lock().expect("not poisoned") = Some(Instant::now());
        self.shared.trace("healed", json!({}));
    }
}
