//! Deliberate mistakes for the simulator to catch. Compiled in only with the `planted-bugs`
//! feature (simulator builds); without it `active` is always false and compiles away.
//!
//! Each is a one-line slip a real implementation could make. The simulator turns one on per
//! run (on its own thread) and must find a history, or a replica state, that gives it away.

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The acceptor acknowledges entries before they are synced to disk.
    AckBeforeSync,
    /// A new leader ignores the accepted values reported in promises and leads with its own log.
    IgnorePromisedLogs,
    /// The leader serves linearizable reads without a valid lease or a committed entry of its
    /// own ballot.
    ReadWithoutLease,
    /// A follower decides expiry by its own clock rather than by the entries' log time.
    FollowerExpiryByOwnClock,
    /// The leader counts a minority (half the members, rounded down) as a quorum.
    CommitOnMinority,
    /// A retried write (same client and sequence) is applied again instead of answered from
    /// its session.
    RetryAppliedTwice,
    /// The replica's clock moves only on its periodic tick, not with every input, and the node
    /// loop does not tick while a sync runs: leases and support are judged against a time that
    /// lags the message or read they answer by up to a whole sync.
    StaleClock,
    /// A snapshot receiver that lost its partial copy drops later chunks without an answer,
    /// so the sender resends the same chunk forever.
    SnapshotResumeIgnored,
    /// A new leader copying a log whose snapshot point it already holds acknowledges the
    /// snapshot but never asks for the entries after it.
    SyncStuckOnOwnSnapshotPoint,
    /// A session read waits for the revision its client saw, not for the log position, so it
    /// can be served at an earlier log time (a key the client saw expire comes back).
    SessionPointRevisionOnly,
    /// A write of a session the state machine does not know (forgotten to keep sessions
    /// bounded) is applied as new: a retry of a write that was applied before its session was
    /// forgotten applies again.
    UnknownSessionApplied,
    /// A node campaigns without asking first whether it could win, so one cut off from the
    /// leader alone raises its ballot and deposes the healthy leader when it comes back.
    NoPreVote,
    /// A candidate counts its promises against its own configuration only, not against the
    /// newer ones of the log it adopts: a node two membership changes behind can win with a
    /// majority of a configuration that no longer decides anything.
    ElectionCountsOwnConfiguration,
    /// A learner campaigns like a voter when it stops hearing from a leader.
    LearnerCampaigns,
    /// A learner's acknowledgements count as a voter's: a commit can rest on a node that is
    /// not asked in an election.
    LearnerCountsInQuorum,
    /// A change takes effect only once committed: until then quorums are counted over the
    /// configuration before it alone, so a leader of the new one and a leader of the old one
    /// can both decide.
    QuorumOfOldConfiguration,
    /// The leader proposes a membership change while another is still uncommitted, so two
    /// configurations in force differ by two voters and their majorities need not meet.
    ChangesOverlap,
    /// Members let a node back in under its old id with whatever incarnation it shows: a member
    /// whose data was wiped votes and acknowledges again, having forgotten what it promised and
    /// accepted.
    WipedMemberAccepted,
    /// Expiry deletes keys without a revision of its own: a key is there at a revision and
    /// gone at the same revision, so a scan at a revision or a compare by revision is wrong.
    ExpiryWithoutRevision,
    /// A read at a revision undoes the changes made after the revision that follows it, not
    /// after it: the changes of the next revision show through.
    HistoryOffByOne,
    /// A watch from a revision starts one revision late: the changes of its first revision
    /// (on a resume, those right after the last one delivered) are never sent.
    WatchResumedLate,
    /// A transaction leaves the check of a put's lease to the put itself: when the lease is
    /// gone, the writes before that put stay applied and the client is told it failed.
    TxnAppliedPartially,
    /// A follower's watch feed reports as expired the keys whose deadline its own clock has
    /// passed, with the changes it publishes, instead of waiting for the log's expiry.
    WatchExpiryByOwnClock,
    /// Each write of a transaction takes a revision of its own: the transaction's answer names
    /// the last, and the keys written before it carry earlier ones.
    TxnWritesOwnRevisions,
    /// A node serves a read another node passed on to it as a stale read, trusting that the
    /// sender saw it lead: a deposed leader answers from a state that misses newer writes.
    ForwardedReadServedStale,
    /// The Redis port serves a connection's reads from its own node by default, as READONLY
    /// asks, instead of linearizably: a follower behind the leader answers an old value.
    RespReadsStale,
    /// A node sends a request again to the new leader also after an answer that it may have
    /// taken effect (outcome unknown), not only after a refusal that applied nothing: a write
    /// without a session can apply twice, and its client is told what the second time found.
    RouterResendsUnknownOutcome,
    /// A snapshot encoded a slice at a time reads the keys it has not reached yet as they are
    /// now, not as they were when it started: it holds writes of entries after its index,
    /// which a node restarted from it applies a second time.
    SnapshotSeesLaterWrites,
    /// A leader answers a linearizable read as soon as its read index is confirmed, without
    /// waiting until it has applied up to it: a new leader still applying its predecessor's
    /// committed entries (a slice per turn) answers from a state that misses writes already
    /// acknowledged.
    ReadBeforeApplied,
    /// A node keeps a peer connection that has delivered nothing for a long time: frames sent
    /// into a partition stay queued behind a transport's retransmission backoff after the
    /// heal, and no election gathers a quorum until they drain (seconds, not an election
    /// timeout).
    PeerSilenceIgnored,
    /// A node passing requests on to its leader keeps using a connection that has answered
    /// nothing for a long time: after a partition heals, every request it passes on sits
    /// behind frames the transport is still backing off to resend, and times out.
    ForwardSilenceIgnored,
    /// A snapshot handed to storage in parts loses the bytes of one part in the middle: the
    /// file written holds a state with a gap (keys missing, or bytes that do not decode),
    /// which a node restarted from it serves.
    SnapshotPartLost,
    /// A node lets go of the entries its commit index covers, not only those it applied: one
    /// that commits faster than it applies no longer holds an entry it has still to apply.
    LogForgetsUnapplied,
    /// A leader lets go of applied entries its live followers have not acknowledged yet: a
    /// follower a moment behind (one lost message) needs a whole snapshot to catch up.
    LogForgetsWhatFollowersLack,
    /// A watch event of a change shows the key's record as it is now, not as the change left
    /// it (the record the next change of the key found): a key written twice since the watch's
    /// start shows its latest value at both revisions.
    WatchShowsLatestRecord,
}

impl Bug {
    pub const ALL: [Bug; 35] = [
        Bug::AckBeforeSync,
        Bug::IgnorePromisedLogs,
        Bug::ReadWithoutLease,
        Bug::FollowerExpiryByOwnClock,
        Bug::CommitOnMinority,
        Bug::RetryAppliedTwice,
        Bug::StaleClock,
        Bug::SnapshotResumeIgnored,
        Bug::SyncStuckOnOwnSnapshotPoint,
        Bug::SessionPointRevisionOnly,
        Bug::UnknownSessionApplied,
        Bug::NoPreVote,
        Bug::ElectionCountsOwnConfiguration,
        Bug::LearnerCampaigns,
        Bug::LearnerCountsInQuorum,
        Bug::QuorumOfOldConfiguration,
        Bug::ChangesOverlap,
        Bug::WipedMemberAccepted,
        Bug::ExpiryWithoutRevision,
        Bug::HistoryOffByOne,
        Bug::WatchResumedLate,
        Bug::TxnAppliedPartially,
        Bug::WatchExpiryByOwnClock,
        Bug::TxnWritesOwnRevisions,
        Bug::ForwardedReadServedStale,
        Bug::RespReadsStale,
        Bug::RouterResendsUnknownOutcome,
        Bug::SnapshotSeesLaterWrites,
        Bug::ReadBeforeApplied,
        Bug::PeerSilenceIgnored,
        Bug::ForwardSilenceIgnored,
        Bug::SnapshotPartLost,
        Bug::LogForgetsUnapplied,
        Bug::LogForgetsWhatFollowersLack,
        Bug::WatchShowsLatestRecord,
    ];

    /// For a bug a simulated run cannot show (it only delays, within the bounds the world
    /// allows a run to recover in): why, and the deterministic test that pins it instead.
    /// `kv-sim teeth` skips these unless asked for one by name.
    pub fn pinned_by(self) -> Option<(&'static str, &'static str)> {
        match self {
            Bug::SyncStuckOnOwnSnapshotPoint => Some((
                "the stuck leader steps down at its election deadline and another node leads, \
                 so a run only loses a second of service",
                "core/tests/messages.rs \
                 a_new_leader_holding_the_sources_snapshot_point_asks_for_what_follows_it",
            )),
            Bug::SnapshotResumeIgnored => Some((
                "the receiver must crash inside a transfer of a few round trips and stay down \
                 until the heal (in 25 seeds traced, no chunk from the middle ever reached a \
                 receiver without its copy; 200 seeds never caught it)",
                "core/tests/messages.rs \
                 a_snapshot_chunk_from_the_middle_of_a_lost_transfer_asks_for_the_start",
            )),
            Bug::NoPreVote => Some((
                "a deposed healthy leader is replaced within an election: nothing a history or \
                 the convergence bound can see",
                "core/tests/scenarios.rs \
                 a_node_cut_off_from_the_leader_alone_neither_campaigns_nor_deposes_it",
            )),
            Bug::ElectionCountsOwnConfiguration => Some((
                "it needs a candidate two changes behind the log it adopts, elected while the \
                 nodes of the newer configurations are cut off: 200 seeds with membership \
                 changes never made one",
                "core/tests/messages.rs \
                 a_candidate_counts_promises_against_the_configurations_of_the_log_it_would_adopt",
            )),
            Bug::LearnerCampaigns => Some((
                "a learner's campaign only raises ballots (no quorum counts its vote) and the \
                 cluster recovers within an election: nothing a history or the convergence \
                 bound can see",
                "core/tests/messages.rs a_learner_never_campaigns",
            )),
            Bug::QuorumOfOldConfiguration => Some((
                "seeds caught it (at 145 of 200) when a leader that removed itself stopped \
                 before its survivor learnt the commit; since the leader sends a new commit \
                 index at once, that needs the link to fail within one round trip, and 200 \
                 seeds never lined it up",
                "core/tests/membership.rs a_change_counts_from_the_moment_it_is_appended",
            )),
            Bug::ChangesOverlap => Some((
                "the second change must come before the first commits and a leader of the \
                 older configuration must then win without the nodes of the newer one: 200 \
                 seeds with membership changes never lined that up",
                "core/tests/membership.rs a_second_change_waits_until_the_first_has_committed",
            )),
            Bug::ReadBeforeApplied => Some((
                "applying takes no simulated time, so committed entries never wait to be \
                 applied across a round trip and a read never arrives in between (200 seeds \
                 with 1 to 8 entries applied per turn never caught it)",
                "core/tests/messages.rs \
                 a_leader_answers_a_read_only_once_it_has_applied_up_to_the_reads_index",
            )),
            Bug::ForwardSilenceIgnored => Some((
                "only clients that go through a follower (Redis protocol, pinned) use its \
                 connection to the leader, which must have been cut long enough before the \
                 heal that the transport's next resend lands over 6 s after it: the first of \
                 seeds 0, 1, 2, ... to catch it is 209 (regression seed 16191 catches it too)",
                "client/src/failover_tests.rs \
                 a_connection_whose_requests_wait_without_an_answer_is_closed",
            )),
            Bug::LogForgetsWhatFollowersLack => Some((
                "the follower still catches up, from a snapshot instead of the log: only \
                 slower, and within the bounds a run allows",
                "core/tests/scenarios.rs \
                 a_follower_briefly_cut_off_catches_up_from_the_entries_kept_for_it",
            )),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeSync => "ack-before-sync",
            Bug::IgnorePromisedLogs => "ignore-promised-logs",
            Bug::ReadWithoutLease => "read-without-lease",
            Bug::FollowerExpiryByOwnClock => "follower-expiry-by-own-clock",
            Bug::CommitOnMinority => "commit-on-minority",
            Bug::RetryAppliedTwice => "retry-applied-twice",
            Bug::StaleClock => "stale-clock",
            Bug::SnapshotResumeIgnored => "snapshot-resume-ignored",
            Bug::SyncStuckOnOwnSnapshotPoint => "sync-stuck-on-own-snapshot-point",
            Bug::SessionPointRevisionOnly => "session-point-revision-only",
            Bug::UnknownSessionApplied => "unknown-session-applied",
            Bug::NoPreVote => "no-pre-vote",
            Bug::ElectionCountsOwnConfiguration => "election-counts-own-configuration",
            Bug::LearnerCampaigns => "learner-campaigns",
            Bug::LearnerCountsInQuorum => "learner-counts-in-quorum",
            Bug::QuorumOfOldConfiguration => "quorum-of-old-configuration",
            Bug::ChangesOverlap => "changes-overlap",
            Bug::WipedMemberAccepted => "wiped-member-accepted",
            Bug::ExpiryWithoutRevision => "expiry-without-revision",
            Bug::HistoryOffByOne => "history-off-by-one",
            Bug::WatchResumedLate => "watch-resumed-late",
            Bug::TxnAppliedPartially => "txn-applied-partially",
            Bug::WatchExpiryByOwnClock => "watch-expiry-by-own-clock",
            Bug::TxnWritesOwnRevisions => "txn-writes-own-revisions",
            Bug::ForwardedReadServedStale => "forwarded-read-served-stale",
            Bug::RespReadsStale => "resp-reads-stale",
            Bug::RouterResendsUnknownOutcome => "router-resends-unknown-outcome",
            Bug::SnapshotSeesLaterWrites => "snapshot-sees-later-writes",
            Bug::ReadBeforeApplied => "read-before-applied",
            Bug::PeerSilenceIgnored => "peer-silence-ignored",
            Bug::ForwardSilenceIgnored => "forward-silence-ignored",
            Bug::SnapshotPartLost => "snapshot-part-lost",
            Bug::LogForgetsUnapplied => "log-forgets-unapplied",
            Bug::LogForgetsWhatFollowersLack => "log-forgets-what-followers-lack",
            Bug::WatchShowsLatestRecord => "watch-shows-latest-record",
        }
    }
}

#[cfg(feature = "planted-bugs")]
std::thread_local! {
    static ACTIVE: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Turns `bug` on (or every bug off) for the calling thread.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<Bug>) {
    ACTIVE.with(|active| active.set(bug));
}

/// Whether `bug` is on for the calling thread.
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        ACTIVE.with(|active| active.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
