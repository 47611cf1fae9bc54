//! Linearizable reads at the leader: each waits until the leader knows it still leads (its
//! lease, or a heartbeat round a quorum acknowledged after the read arrived) and until the state
//! machine has applied the commit index the read saw.

use paxkv_proto::client::ErrorCode;

use crate::kv::error_response;
use crate::kv::ReadRequest;
use crate::replica::Replica;
use crate::types::RequestId;
use crate::PENDING_READS_MAX;

use super::LeaderPhase;

/// The three stages a linearizable read passes at the leader.
#[derive(Debug, Default)]
pub(crate) struct ReadQueues {
    /// Arrived before our no-op committed: our commit index is not yet the cluster's.
    before_activation: Vec<(RequestId, ReadRequest)>,
    /// (heartbeat round a quorum must acknowledge, read index, request).
    waiting_round: Vec<(u64, u64, RequestId, ReadRequest)>,
    /// (read index, request): confirmed, waiting for the state machine to reach the index.
    waiting_apply: Vec<(u64, RequestId, ReadRequest)>,
}

impl ReadQueues {
    fn len(&self) -> usize {
        self.before_activation.len() + self.waiting_round.len() + self.waiting_apply.len()
    }

    /// Reads waiting for a round up to `round` are confirmed.
    pub(crate) fn confirm_rounds_through(&mut self, round: u64) {
        let (confirmed, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_round)
            .into_iter()
            .partition(|(read_round, _, _, _)| *read_round <= round);
        self.waiting_round = waiting;
        self.waiting_apply.extend(
            confirmed
                .into_iter()
                .map(|(_, read_index, request, read)| (read_index, request, read)),
        );
    }

    /// Every waiting read's request, when leadership ends.
    pub(crate) fn into_requests(self) -> impl Iterator<Item = RequestId> {
        let before = self
            .before_activation
            .into_iter()
            .map(|(request, _)| request);
        let round = self
            .waiting_round
            .into_iter()
            .map(|(_, _, request, _)| request);
        let apply = self
            .waiting_apply
            .into_iter()
            .map(|(_, request, _)| request);
        before.chain(round).chain(apply)
    }
}

impl Replica {
    pub(crate) fn leader_read(&mut self, request: RequestId, read: ReadRequest) {
        let now = self.now;
        let commit_index = self.commit_index;
        let Some(leader) = self.role.leader_mut() else {
            let error = self.not_leader_error();
            self.respond(request, error);
            return;
        };
        if leader.reads.len() >= PENDING_READS_MAX {
            self.respond(
                request,
                error_response(ErrorCode::Busy, "too many reads waiting; retry shortly"),
            );
            return;
        }
        let unchecked = crate::planted::active(crate::planted::Bug::ReadWithoutLease);
        let serving = matches!(leader.phase, LeaderPhase::Active { noop_index } if commit_index >= noop_index);
        if !serving && !unchecked {
            leader.reads.before_activation.push((request, read));
        } else if now < leader.lease.until || unchecked {
            leader
                .reads
                .waiting_apply
                .push((commit_index, request, read));
            self.serve_confirmed_reads();
        } else {
            let round = leader.lease.round + 1;
            leader
                .reads
                .waiting_round
                .push((round, commit_index, request, read));
            leader.lease.heartbeat_requested = true;
        }
    }

    /// Our no-op committed: reads that arrived before need one more round, at today's commit.
    pub(crate) fn admit_reads_after_activation(&mut self) {
        let commit_index = self.commit_index;
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        if leader.reads.before_activation.is_empty() {
            return;
        }
        let round = leader.lease.round + 1;
        let reads = std::mem::take(&mut leader.reads.before_activation);
        leader.reads.waiting_round.extend(
            reads
                .into_iter()
                .map(|(request, read)| (round, commit_index, request, read)),
        );
        leader.lease.heartbeat_requested = true;
    }

    /// Answers confirmed reads whose read index the state machine has reached.
    pub(crate) fn serve_confirmed_reads(&mut self) {
        let applied = if crate::planted::active(crate::planted::Bug::ReadBeforeApplied) {
            u64::MAX
        } else {
            self.applied_index
        };
        let Some(leader) = self.role.leader_mut() else {
            return;
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut leader.reads.waiting_apply)
            .into_iter()
            .partition(|(read_index, _, _)| *read_index <= applied);
        leader.reads.waiting_apply = waiting;
        for (_, request, read) in ready {
            self.answer_read(request, &read);
        }
    }
}
