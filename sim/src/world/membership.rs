//! Membership in the simulated world: the addresses nodes may run on (`Slot`), and the moves
//! of the nemesis that change who the members are. A new node joins through the real
//! `kv-server --join` path; promotions and removals are asked of the cluster like an operator
//! would, through a client, and the cluster may refuse them (a change in progress, a learner
//! behind, a quorum that would be lost): the refusal is traced, as an operator would see it.

use super::*;

/// Addresses a node may run on: the initial members' and spares for nodes that join. Each
/// spare is used once (a removed node's address is not reused), so that at most this many
/// nodes ever run.
pub const SLOTS: usize = 9;

/// Where the learners an operator added and never started would run (no node does).
const PHANTOM_IP: &str = "fd00::ff";

/// What runs on one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// Nothing yet.
    Spare,
    /// One of the nodes the cluster started with (`--peers`).
    Initial,
    /// A node that joined (`--join`), or is joining.
    Joining,
    /// A node that was removed and stopped; it does not start again.
    Removed,
    /// A removed node the cluster started with, restarted with an empty data directory under
    /// its old id and flags. It holds nothing and must never serve: it is refused once it
    /// reaches a member, and waits (as a real one would) while none of its peers answers. It is
    /// not a member, so the convergence check does not ask it.
    Retired,
}

impl Shared {
    pub(super) fn slot(&self, index: usize) -> Slot {
        self.slots.lock().expect("not poisoned")[index]
    }

    pub(super) fn set_slot(&self, index: usize, slot: Slot) {
        self.slots.lock().expect("not poisoned")[index] = slot;
    }

    pub(super) fn is_active(&self, index: usize) -> bool {
        matches!(self.slot(index), Slot::Initial | Slot::Joining)
    }

    /// The addresses that run a member or a node joining.
    pub(super) fn active_slots(&self) -> Vec<usize> {
        (0..SLOTS).filter(|index| self.is_active(*index)).collect()
    }
}

/// The client address of slot `index`.
pub(super) fn client_endpoint(index: usize) -> String {
    SocketAddr::new(node_ip(index), CLIENT_PORT).to_string()
}

/// The ids of the voters (or of the learners) of a member list.
fn ids(members: &paxkv_client::MembersResponse, voters: bool) -> Vec<u64> {
    members
        .members
        .iter()
        .filter(|member| member.voter == voters)
        .map(|member| member.node_id)
        .collect()
}

/// The slot a member's peer address belongs to.
fn slot_of(member: &paxkv_client::Member) -> Option<usize> {
    let address: SocketAddr = member.peer_address.parse().ok()?;
    (0..SLOTS).find(|index| node_ip(*index) == address.ip())
}

impl Nemesis<'_> {
    /// Asks the cluster (from the clients' node) with `ask`; None if it did not answer.
    async fn ask<T, F>(&self, ask: impl FnOnce(Client) -> F + Send + 'static) -> Option<T>
    where
        F: std::future::Future<Output = Result<T, ClientError>> + Send + 'static,
        T: Send + 'static,
    {
        let endpoints: Vec<String> = self.active().into_iter().map(client_endpoint).collect();
        let shared = self.shared;
        let task = self.client_node.spawn(async move {
            let client = workload::new_client(&endpoints);
            let answer = ask(client.clone()).await;
            client.close();
            answer
        });
        match task.await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(error)) => {
                shared.trace("member_request_failed", json!({"error": error.to_string()}));
                None
            }
            Err(_) => None,
        }
    }

    /// A new node on the first spare address, joining as a learner.
    pub(super) fn add_node(&mut self) {
        let Some(index) = (0..SLOTS).find(|index| self.shared.slot(*index) == Slot::Spare) else {
            return;
        };
        self.shared.set_slot(index, Slot::Joining);
        self.down[index] = false;
        self.shared.trace("add_node", json!({"node": index + 1}));
        self.start_afresh(index);
    }

    pub(super) async fn promote_learner(&mut self) {
        let Some(members) = self
            .ask(|client| async move { client.members().await })
            .await
        else {
            return;
        };
        let learners = ids(&members, false);
        if learners.is_empty() {
            return;
        }
        let id = learners[thread_rng().gen_range(0..learners.len())];
        self.shared.trace("promote_learner", json!({"id": id}));
        let answer = self
            .ask(move |client| async move { client.member_promote(id).await })
            .await;
        self.trace_members("promoted", id, answer);
    }

    /// Removes the member on slot `a` half the time (whatever its state: down, leading), else
    /// a random member.
    pub(super) async fn remove_member(&mut self, a: usize) {
        let Some(members) = self
            .ask(|client| async move { client.members().await })
            .await
        else {
            return;
        };
        let on_a = members
            .members
            .iter()
            .find(|member| slot_of(member) == Some(a))
            .map(|member| member.node_id);
        // The leader of two voters removes itself half the time: the survivor must lead on
        // even if it never learnt that the removal committed.
        let voters = members.members.iter().filter(|member| member.voter).count();
        let leader = Some(members.leader_id).filter(|id| *id != 0);
        let id = match (on_a, leader) {
            (_, Some(leader)) if voters == 2 && thread_rng().gen_bool(0.5) => leader,
            (Some(id), _) if thread_rng().gen_bool(0.5) => id,
            _ => {
                let all = &members.members;
                if all.is_empty() {
                    return;
                }
                all[thread_rng().gen_range(0..all.len())].node_id
            }
        };
        // Shrinking a small cluster further is rarer: each removal of a voter there costs an
        // election or a stretch without a quorum, and writes whose outcome stays unknown pile
        // up on the few keys (past what the checker can search).
        let voter = members
            .members
            .iter()
            .any(|member| member.node_id == id && member.voter);
        if voter && voters <= 3 && Some(id) != leader && thread_rng().gen_bool(0.4) {
            return;
        }
        self.shared.trace("remove_member", json!({"id": id}));
        let answer = self
            .ask(move |client| async move { client.member_remove(id).await })
            .await;
        self.trace_members("removed", id, answer);
    }

    /// An operator adds learners and never starts them (two, one after the other): members
    /// that never answer, which must neither be promoted nor count in any quorum (a later move
    /// may remove them).
    pub(super) async fn add_phantom_learners(&mut self) {
        for _ in 0..2 {
            let port = 7200 + thread_rng().gen_range(0..1000u16);
            let peer_address = SocketAddr::new(PHANTOM_IP.parse().expect("an address"), port);
            let peer_address = peer_address.to_string();
            self.shared
                .trace("add_phantom_learner", json!({"peer_address": peer_address}));
            let answer = self
                .ask(move |client| async move { client.member_add(&peer_address, "").await })
                .await;
            let Some(members) = answer else { return };
            let id = members.node_id;
            self.trace_members("added", id, Some(members));
        }
    }

    /// A removed node that the cluster started with comes back with an empty data directory
    /// under its old id and flags: the members must refuse it (it stops).
    ///
    /// Only while one of its peers is still a member and no other node that the cluster
    /// started with holds nothing: wiped nodes that reach only each other cannot tell their
    /// state from a new cluster's first start (the README says so), which is an operator's
    /// mistake no node can detect, not a fault to survive.
    pub(super) fn wiped_node_rejoins(&mut self) {
        let initial = 0..self.shared.options.nodes as usize;
        let member_left = initial
            .clone()
            .any(|index| self.shared.slot(index) == Slot::Initial);
        let holding_nothing = initial.clone().any(|index| {
            self.shared.slot(index) == Slot::Retired
                || (self.wiped_member == Some(index) && self.shared.slot(index) == Slot::Initial)
        });
        let removed: Vec<usize> = initial
            .filter(|index| self.shared.slot(*index) == Slot::Removed)
            .collect();
        if removed.is_empty() || !member_left || holding_nothing {
            return;
        }
        let index = removed[thread_rng().gen_range(0..removed.len())];
        *self.storages[index].disk.lock().expect("not poisoned") = Default::default();
        self.shared.set_slot(index, Slot::Retired);
        self.shared
            .must_be_refused
            .lock()
            .expect("not poisoned")
            .insert(index);
        self.down[index] = false;
        self.shared
            .trace("wiped_node_rejoins", json!({"node": index + 1}));
        self.start_afresh(index);
    }

    /// A member the cluster started with comes back with an empty data directory under its
    /// old id and flags: the members must refuse it (it stops, and stays a member until a
    /// removal). The schedule where accepting it loses writes: a minority `cut` (one short of a
    /// quorum) is cut off while the others commit without it; then every node that holds those
    /// writes crashes but one follower, which comes back wiped, so that it and `cut` could make
    /// a quorum that knows none of them. Only with three or more voters, so that a quorum of
    /// the others is left once the wiped one is refused and the crashed ones restart.
    pub(super) async fn wiped_member_rejoins(&mut self) {
        let Some(leader) = self.leader() else { return };
        let retired = (0..SLOTS).any(|index| self.shared.slot(index) == Slot::Retired);
        if self.wiped_member.is_some() || retired {
            return;
        }
        let Some(members) = self
            .ask(|client| async move { client.members().await })
            .await
        else {
            return;
        };
        // Every voter must be one the leader hears (so holds the cluster's data): a voter that
        // never started (refused later as a late first start) and a wiped one would be two
        // lost, which no cluster of four or five survives.
        if members
            .members
            .iter()
            .any(|member| member.voter && !member.reachable)
        {
            return;
        }
        let voters: Vec<usize> = members
            .members
            .iter()
            .filter(|member| member.voter)
            .filter_map(slot_of)
            .collect();
        let followers: Vec<usize> = self
            .others_in_random_order(leader)
            .into_iter()
            .filter(|index| voters.contains(index) && !self.down[*index])
            .collect();
        // The wiped node is one the cluster started with (a joined one would join afresh).
        let Some(wiped) = followers
            .iter()
            .copied()
            .find(|index| self.shared.slot(*index) == Slot::Initial)
        else {
            return;
        };
        let quorum = voters.len() / 2 + 1;
        let cut: Vec<usize> = followers
            .iter()
            .copied()
            .filter(|index| *index != wiped)
            .take(quorum - 1)
            .collect();
        if voters.len() < 3 || cut.len() < quorum - 1 {
            return;
        }
        self.wiped_member = Some(wiped);
        self.shared.trace(
            "wiped_member_rejoins",
            json!({"node": wiped + 1, "leader": leader + 1, "cut": self.ids(&cut)}),
        );
        let everyone = self.active();
        for a in &cut {
            for b in everyone.iter().filter(|b| !cut.contains(b)) {
                self.clog_both(*a, *b);
            }
        }
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(100..1500))).await;
        for index in everyone.iter().copied() {
            if index != wiped && !cut.contains(&index) && !self.down[index] {
                self.crash(index, false);
            }
        }
        self.handle.kill(self.nodes[wiped].id());
        *self.storages[wiped].disk.lock().expect("not poisoned") = Default::default();
        self.shared
            .must_be_refused
            .lock()
            .expect("not poisoned")
            .insert(wiped);
        self.down[wiped] = false;
        for a in &cut {
            for b in &everyone {
                self.net
                    .unclog_link(self.nodes[*a].id(), self.nodes[*b].id());
                self.net
                    .unclog_link(self.nodes[*b].id(), self.nodes[*a].id());
            }
        }
        self.start_afresh(wiped);
    }

    /// Starts the node on `index` from nothing: whatever ran there before (a removed node's
    /// listeners may still be open) is killed first.
    fn start_afresh(&mut self, index: usize) {
        self.handle.kill(self.nodes[index].id());
        self.handle.restart(self.nodes[index].id());
    }

    fn trace_members(&self, done: &str, id: u64, answer: Option<paxkv_client::MembersResponse>) {
        if let Some(members) = answer {
            let (voters, learners) = (ids(&members, true), ids(&members, false));
            self.shared.trace(
                "membership",
                json!({done: id, "voters": voters, "learners": learners,
                       "configuration_index": members.configuration_index}),
            );
        }
    }
}
