//! The coordinator quorum: leader election and the replicated metadata log
//! (the role ZooKeeper plays in the seed, KRaft's design underneath).
//!
//! One state machine per coordinator (voter) or broker (observer):
//! - durable state is the current epoch, the vote cast in it, and the log
//!   ([`QuorumPersist`] tells the caller what to write, before any message
//!   that depends on it is sent);
//! - elections follow the seed's order made safe: a vote (and a pre-vote)
//!   goes only to a candidate whose (last log epoch, last log offset, node id)
//!   is at least the voter's own, so with equal logs the higher id wins, and
//!   a longer log beats a higher id ([`Quorum::candidate_is_eligible`]);
//! - pre-vote first, so a rejoining node does not bump the epoch of a healthy
//!   quorum; a vote is granted at most once per epoch;
//! - followers and observers pull the log from the leader (fetch offset and
//!   last fetched epoch, diverging-epoch truncation, as for partitions);
//! - the leader commits an offset once a majority of voters hold it, and
//!   only if the entry below it is from its own epoch (older entries are
//!   committed only indirectly); each new leader appends a leader-change
//!   marker so that happens promptly;
//! - the leader resigns when a majority has not fetched within a check
//!   period (check-quorum);
//! - snapshots (KIP-630): the caller may replace the committed prefix of
//!   the log by a [`QuorumSnapshot`] (the records that rebuild its state
//!   there, opaque here) at or below the commit offset; a follower whose
//!   log ends below the leader's first entry, or diverges below it, gets
//!   the leader's snapshot instead of entries and starts its log there,
//!   never going back past what it had committed.

use crate::core::{Effects, LeaderEpoch, NodeId, Offset};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One metadata log entry: a record, or the marker a new leader appends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry<R> {
    pub epoch: LeaderEpoch,
    pub payload: Payload<R>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Payload<R> {
    /// Written by every new leader first (KRaft's LeaderChangeMessage).
    LeaderChange {
        leader: NodeId,
    },
    Record(R),
}

/// How much of a fetch response an entry takes: a metadata decision weighs
/// its record count, so one fetch carries a bounded amount of data however
/// large single decisions are (the bound is [`QuorumConfig::fetch_weight_max`]).
pub trait EntryWeight {
    fn weight(&self) -> usize;
}

impl EntryWeight for u8 {
    fn weight(&self) -> usize {
        1
    }
}

impl<R: EntryWeight> Payload<R> {
    pub fn weight(&self) -> usize {
        match self {
            Payload::LeaderChange { .. } => 1,
            Payload::Record(r) => r.weight().max(1),
        }
    }
}

/// The committed log below `end_offset`, as the records that rebuild the
/// application's state there (the caller's fold: the quorum never reads
/// them) and the epoch of the last entry it stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuorumSnapshot<R> {
    pub end_offset: Offset,
    pub last_epoch: LeaderEpoch,
    pub records: Vec<R>,
}

/// What a coordinator keeps on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumDurable<R> {
    pub epoch: LeaderEpoch,
    pub voted_for: Option<NodeId>,
    /// The latest snapshot; `log` begins at its end (else at 0).
    #[serde(default)]
    pub snapshot: Option<QuorumSnapshot<R>>,
    pub log: Vec<Entry<R>>,
}

/// A change to durable state the caller must write (and fsync) before it
/// executes any effect emitted after it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumPersist<R> {
    /// The epoch and the vote in it.
    Election {
        epoch: LeaderEpoch,
        voted_for: Option<NodeId>,
    },
    /// Entries written at `offset` (everything from `offset` on is replaced).
    Append {
        offset: Offset,
        entries: Vec<Entry<R>>,
    },
    /// A snapshot of this node's own committed log: the entries below its
    /// end go, the rest stays.
    TakeSnapshot(QuorumSnapshot<R>),
    /// A snapshot from the leader: the whole log is replaced, and begins
    /// again at its end.
    InstallSnapshot(QuorumSnapshot<R>),
}

impl<R: Clone> QuorumDurable<R> {
    /// Applies a persisted change: what the node's disk, or the checker's
    /// model of it, does with a `Persist` effect.
    pub fn apply(&mut self, change: &QuorumPersist<R>) {
        match change {
            QuorumPersist::Election { epoch, voted_for } => {
                self.epoch = *epoch;
                self.voted_for = *voted_for;
            }
            QuorumPersist::Append { offset, entries } => {
                let start = self.log_start();
                self.log.truncate(offset.saturating_sub(start) as usize);
                self.log.extend(entries.iter().cloned());
            }
            QuorumPersist::TakeSnapshot(snapshot) => {
                let covered = snapshot.end_offset.saturating_sub(self.log_start()) as usize;
                self.log.drain(..covered.min(self.log.len()));
                self.snapshot = Some(snapshot.clone());
            }
            QuorumPersist::InstallSnapshot(snapshot) => {
                self.log.clear();
                self.snapshot = Some(snapshot.clone());
            }
        }
    }

    /// The offset of the log's first entry: the snapshot's end, else 0.
    pub fn log_start(&self) -> Offset {
        self.snapshot.as_ref().map_or(0, |s| s.end_offset)
    }
}

/// Known mistakes the checker must catch. All off in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumBugs {
    /// Do not persist the vote (a restarted voter may vote again in the epoch).
    pub vote_not_persisted: bool,
    /// Do not persist epoch changes (a restarted node goes back in epoch).
    pub epoch_not_persisted: bool,
    /// Commit an entry of an earlier epoch once a majority holds it.
    pub commit_earlier_epoch_by_count: bool,
    /// Grant votes without comparing logs.
    pub vote_for_shorter_log: bool,
    /// Let a snapshot cover entries not yet committed (they may still be
    /// replaced by a later leader's).
    pub snapshot_above_commit: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// The voters (coordinators); a node not in this set is an observer.
    pub voters: BTreeSet<NodeId>,
    /// A follower that hears nothing from a leader this long starts an election.
    pub election_timeout_ms: u64,
    /// Extra election delay per rank below the highest voter id, so that
    /// with equal logs the highest id usually campaigns first (no randomness
    /// is needed: ranks are distinct).
    pub election_stagger_ms: u64,
    /// How often the leader checks that a majority still fetches.
    pub check_quorum_ms: u64,
    /// Entries per fetch response.
    pub fetch_entries_max: usize,
    /// Total [`EntryWeight`] per fetch response; the first entry is always
    /// sent, however heavy, so a follower never stalls on a large one.
    pub fetch_weight_max: usize,
    /// Longest a leader holds a fetch that has nothing new; below the
    /// election timeout, or an idle follower would start an election.
    pub fetch_max_wait_ms: u64,
    pub bugs: QuorumBugs,
}

impl QuorumConfig {
    pub fn new(node_id: NodeId, voters: impl IntoIterator<Item = NodeId>) -> Self {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        assert!(matches!(voters.len(), 1 | 3 | 5), "1, 3 or 5 voters");
        Self {
            node_id,
            voters,
            election_timeout_ms: 2_000,
            election_stagger_ms: 300,
            check_quorum_ms: 4_000,
            fetch_entries_max: 512,
            fetch_weight_max: 16_384,
            fetch_max_wait_ms: 500,
            bugs: QuorumBugs::default(),
        }
    }

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogPosition {
    pub last_epoch: LeaderEpoch,
    pub end_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumMessage<R> {
    /// Would you vote for me in `epoch`? Changes no state at the voter.
    PreVote {
        epoch: LeaderEpoch,
        position: LogPosition,
    },
    /// `leader` is the responder's leader in `epoch` (its own epoch), if it
    /// has one: a refused pre-candidate that was merely cut off rejoins it.
    PreVoteResponse {
        epoch: LeaderEpoch,
        granted: bool,
        leader: Option<NodeId>,
    },
    Vote {
        epoch: LeaderEpoch,
        position: LogPosition,
    },
    VoteResponse {
        epoch: LeaderEpoch,
        granted: bool,
    },
    /// A new leader announces itself (KRaft's BeginQuorumEpoch).
    BeginEpoch {
        epoch: LeaderEpoch,
    },
    Fetch {
        epoch: LeaderEpoch,
        fetch_offset: Offset,
        last_fetched_epoch: Option<LeaderEpoch>,
    },
    /// `fetch_offset` echoes the request, so a late answer to an earlier
    /// fetch is never applied at the wrong offset.
    FetchResponse {
        epoch: LeaderEpoch,
        fetch_offset: Offset,
        result: QuorumFetchResult<R>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumFetchResult<R> {
    Entries {
        entries: Vec<Entry<R>>,
        commit_offset: Offset,
    },
    /// The fetch offset (or the divergence) lies below the leader's first
    /// entry: its snapshot, to start the log again at its end (KRaft
    /// answers with the snapshot's id and serves it by FetchSnapshot).
    Snapshot { snapshot: QuorumSnapshot<R> },
    DivergingEpoch {
        epoch: LeaderEpoch,
        end_offset: Offset,
    },
    /// Not the leader of `epoch`; `leader` is a hint.
    NotLeader { leader: Option<NodeId> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuorumTimer {
    /// Follower/candidate: no leader heard from; campaign.
    Election,
    /// Leader: did a majority fetch since the last check?
    CheckQuorum,
    /// Leader: answer fetches held for new entries (KRaft's fetch max wait),
    /// so followers hear from the leader before their election timeout.
    FetchMaxWait,
}

/// The answer to a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProposeError {
    NotLeader { leader: Option<NodeId> },
}

/// Why a snapshot was not taken.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SnapshotError {
    /// Its end is not past the current snapshot's, or past the commit
    /// offset (only committed entries may be snapshotted: a later leader
    /// may still replace the others).
    OutOfRange {
        end_offset: Offset,
        log_start: Offset,
        commit_offset: Offset,
    },
}

pub type QuorumEffects<R> = Effects<QuorumMessage<R>, QuorumTimer, (), QuorumPersist<R>>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QuorumRole {
    /// In an epoch with no known leader.
    Unattached,
    Follower {
        leader: NodeId,
        fetch_in_flight: bool,
    },
    PreCandidate {
        granted: BTreeSet<NodeId>,
    },
    Candidate {
        granted: BTreeSet<NodeId>,
    },
    Leader(QuorumLeader),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuorumLeader {
    /// Voters' end offsets, known once they fetched in this epoch.
    pub end_offsets: BTreeMap<NodeId, Offset>,
    /// Voters heard from since the last check-quorum.
    pub fetched_since_check: BTreeSet<NodeId>,
    /// Held fetches (long poll): follower → its fetch offset.
    parked: BTreeMap<NodeId, Offset>,
    /// Commit offset each follower was last told.
    commit_sent: BTreeMap<NodeId, Offset>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quorum<R> {
    config: QuorumConfig,
    epoch: LeaderEpoch,
    voted_for: Option<NodeId>,
    /// The latest snapshot: `log` holds the entries from its end on.
    snapshot: Option<QuorumSnapshot<R>>,
    log: Vec<Entry<R>>,
    /// Entries below this offset are committed (volatile; learnt again).
    commit_offset: Offset,
    role: QuorumRole,
}

impl<R: Clone + std::fmt::Debug + EntryWeight> Quorum<R> {
    /// Starts from what was on disk. Nothing volatile survives a restart.
    pub fn recover(config: QuorumConfig, durable: QuorumDurable<R>) -> Self {
        let QuorumDurable {
            epoch,
            mut voted_for,
            snapshot,
            log,
        } = durable;
        // A snapshot is of committed entries only.
        let commit_offset = snapshot.as_ref().map_or(0, |s| s.end_offset);
        if config.bugs.vote_not_persisted {
            voted_for = None;
        }
        Self {
            config,
            epoch,
            voted_for,
            snapshot,
            log,
            commit_offset,
            role: QuorumRole::Unattached,
        }
    }

    /// Arms the first election timer. Call once after [`Quorum::recover`].
    pub fn start(&mut self, out: &mut QuorumEffects<R>) {
        out.set_timer(QuorumTimer::Election, self.election_timeout_ms());
        if !self.is_voter() {
            self.fetch_from_any_voter(out);
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.node_id
    }
    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    /// The entries from [`Quorum::log_start`] on.
    pub fn entries(&self) -> &[Entry<R>] {
        &self.log
    }
    /// The entry at `offset`, if the log holds it (not below its start).
    pub fn entry(&self, offset: Offset) -> Option<&Entry<R>> {
        let index = offset.checked_sub(self.log_start())?;
        self.log.get(usize::try_from(index).ok()?)
    }
    /// The offset of the first entry: the snapshot's end, else 0.
    pub fn log_start(&self) -> Offset {
        self.snapshot.as_ref().map_or(0, |s| s.end_offset)
    }
    /// The offset after the last entry.
    pub fn end_offset(&self) -> Offset {
        self.log_start() + self.log.len() as Offset
    }
    pub fn snapshot(&self) -> Option<&QuorumSnapshot<R>> {
        self.snapshot.as_ref()
    }
    pub fn commit_offset(&self) -> Offset {
        self.commit_offset
    }
    pub fn role(&self) -> &QuorumRole {
        &self.role
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, QuorumRole::Leader(_))
    }
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            QuorumRole::Leader(_) => Some(self.config.node_id),
            QuorumRole::Follower { leader, .. } => Some(*leader),
            _ => None,
        }
    }
    fn is_voter(&self) -> bool {
        self.config.voters.contains(&self.config.node_id)
    }
    pub fn position(&self) -> LogPosition {
        let snapshot_epoch = self.snapshot.as_ref().map_or(0, |s| s.last_epoch);
        LogPosition {
            last_epoch: self.log.last().map_or(snapshot_epoch, |e| e.epoch),
            end_offset: self.end_offset(),
        }
    }

    /// How long a follower waits for its leader before leaving it: the
    /// same for every voter, so all stop vouching for a dead leader together.
    fn fetch_timeout_ms(&self) -> u64 {
        self.config.election_timeout_ms
    }

    /// From leaderless to campaigning: the highest voter id goes first.
    fn campaign_delay_ms(&self) -> u64 {
        self.election_timeout_ms() - self.config.election_timeout_ms
            + self.config.election_stagger_ms
    }

    /// Rank-staggered election timeout: the highest voter id waits least.
    fn election_timeout_ms(&self) -> u64 {
        let rank_from_top = self
            .config
            .voters
            .iter()
            .rev()
            .position(|&v| v == self.id())
            .unwrap_or(0);
        self.config.election_timeout_ms + self.config.election_stagger_ms * rank_from_top as u64
    }

    // ----- inputs -------------------------------------------------------------

    pub fn on_message(
        &mut self,
        from: NodeId,
        message: QuorumMessage<R>,
        out: &mut QuorumEffects<R>,
    ) {
        // Observers only fetch, and never move a voter's epoch: anything
        // else from a non-voter (a vote, an epoch announcement, an answer),
        // or a fetch from an epoch ahead of ours, would let it make us step
        // down or pose as a leader. Voters learn epochs from voters. The
        // caller's transport authenticates `from`.
        if !self.config.voters.contains(&from) {
            match &message {
                QuorumMessage::Fetch { epoch, .. } if *epoch <= self.epoch => {}
                _ => return,
            }
        }
        let epoch = message_epoch(&message);
        // Only a pre-vote request carries a proposed (not a real) epoch.
        let is_pre_vote = matches!(message, QuorumMessage::PreVote { .. });
        // A higher epoch ends whatever we were doing in ours; pre-votes do
        // not count, so a rejoining node cannot disrupt a healthy quorum.
        if epoch > self.epoch && !is_pre_vote {
            self.enter_epoch(epoch, None, out);
        }
        match message {
            QuorumMessage::PreVote { epoch, position } => {
                self.on_pre_vote(from, epoch, position, out)
            }
            QuorumMessage::PreVoteResponse {
                epoch,
                granted,
                leader,
            } => self.on_pre_vote_response(from, epoch, granted, leader, out),
            QuorumMessage::Vote { epoch, position } => self.on_vote(from, epoch, position, out),
            QuorumMessage::VoteResponse { epoch, granted } => {
                self.on_vote_response(from, epoch, granted, out)
            }
            QuorumMessage::BeginEpoch { epoch } => {
                if epoch == self.epoch && !self.is_leader() {
                    self.become_follower(from, out);
                }
            }
            QuorumMessage::Fetch {
                epoch,
                fetch_offset,
                last_fetched_epoch,
            } => self.on_fetch(from, epoch, fetch_offset, last_fetched_epoch, out),
            QuorumMessage::FetchResponse {
                epoch,
                fetch_offset,
                result,
            } => self.on_fetch_response(from, epoch, fetch_offset, result, out),
        }
    }

    pub fn on_timer(&mut self, timer: QuorumTimer, out: &mut QuorumEffects<R>) {
        match timer {
            QuorumTimer::Election => self.on_election_timeout(out),
            QuorumTimer::CheckQuorum => self.on_check_quorum(out),
            QuorumTimer::FetchMaxWait => self.release_parked_fetches(out),
        }
    }

    /// The application (controller) appends a record; it is committed once
    /// [`Quorum::commit_offset`] passes the returned offset.
    pub fn propose(
        &mut self,
        record: R,
        out: &mut QuorumEffects<R>,
    ) -> Result<Offset, ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let offset = self.append_local(Payload::Record(record), out);
        self.maybe_advance_commit();
        self.answer_parked_fetches(out);
        Ok(offset)
    }

    /// The caller's state at `end_offset` (a committed offset past the
    /// current snapshot) becomes the snapshot, and the entries below it
    /// go; persisted before anything that follows.
    pub fn take_snapshot(
        &mut self,
        end_offset: Offset,
        records: Vec<R>,
        out: &mut QuorumEffects<R>,
    ) -> Result<(), SnapshotError> {
        let limit = match self.config.bugs.snapshot_above_commit {
            true => self.end_offset(),
            false => self.commit_offset,
        };
        let log_start = self.log_start();
        if end_offset <= log_start || end_offset > limit {
            return Err(SnapshotError::OutOfRange {
                end_offset,
                log_start,
                commit_offset: self.commit_offset,
            });
        }
        let last_epoch = self.entry(end_offset - 1).expect("in the log").epoch;
        let snapshot = QuorumSnapshot {
            end_offset,
            last_epoch,
            records,
        };
        self.log.drain(..(end_offset - log_start) as usize);
        self.snapshot = Some(snapshot.clone());
        out.persist(QuorumPersist::TakeSnapshot(snapshot));
        Ok(())
    }

    // ----- elections -----------------------------------------------------------

    /// The seed's election order, made safe: the candidate's log must be at
    /// least as up to date as ours (last epoch, then end offset), and with
    /// equal logs the higher node id wins.
    fn candidate_is_eligible(&self, candidate: NodeId, position: &LogPosition) -> bool {
        if self.config.bugs.vote_for_shorter_log {
            return true;
        }
        let own = self.position();
        (position.last_epoch, position.end_offset, candidate)
            >= (own.last_epoch, own.end_offset, self.id())
    }

    fn on_election_timeout(&mut self, out: &mut QuorumEffects<R>) {
        if self.is_leader() {
            return;
        }
        out.set_timer(QuorumTimer::Election, self.election_timeout_ms());
        if !self.is_voter() {
            // An observer lost its leader: look for the new one.
            self.role = QuorumRole::Unattached;
            return self.fetch_from_any_voter(out);
        }
        if matches!(self.role, QuorumRole::Follower { .. }) {
            // The leader is silent for a fetch timeout: stop vouching for it
            // (grant pre-votes from now on) and campaign after a rank delay.
            // Campaigning at once would livelock: a follower whose own
            // (staggered) timeout has not fired yet would refuse our
            // pre-vote and hint the dead leader, which we would rejoin.
            self.role = QuorumRole::Unattached;
            out.set_timer(QuorumTimer::Election, self.campaign_delay_ms());
            return;
        }
        let granted = BTreeSet::from([self.id()]);
        self.role = QuorumRole::PreCandidate { granted };
        if self.config.majority() == 1 {
            return self.become_candidate(out);
        }
        let position = self.position();
        // The last epoch cannot be followed: no campaign (nothing panics).
        let Some(epoch) = self.epoch.checked_add(1) else {
            return;
        };
        for v in self.other_voters() {
            out.send(
                v,
                QuorumMessage::PreVote {
                    epoch,
                    position: position.clone(),
                },
            );
        }
    }

    fn on_pre_vote(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        position: LogPosition,
        out: &mut QuorumEffects<R>,
    ) {
        // A voter that follows (or is) a live leader refuses: the candidate
        // is the one cut off, not the leader.
        let leader = self.leader();
        let granted =
            epoch > self.epoch && leader.is_none() && self.candidate_is_eligible(from, &position);
        let response = QuorumMessage::PreVoteResponse {
            epoch: self.epoch,
            granted,
            leader,
        };
        out.send(from, response);
    }

    fn on_pre_vote_response(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        granted: bool,
        leader: Option<NodeId>,
        out: &mut QuorumEffects<R>,
    ) {
        if !granted {
            // Refused by a voter that follows a leader of our epoch: we were
            // merely cut off, so rejoin that leader.
            let unled = matches!(
                self.role,
                QuorumRole::Unattached | QuorumRole::PreCandidate { .. }
            );
            if let Some(l) = leader.filter(|&l| l != self.id() && epoch == self.epoch && unled) {
                self.become_follower(l, out);
            }
            return;
        }
        let majority = self.config.majority();
        let QuorumRole::PreCandidate { granted: votes } = &mut self.role else {
            return;
        };
        votes.insert(from);
        if votes.len() >= majority {
            self.become_candidate(out);
        }
    }

    fn become_candidate(&mut self, out: &mut QuorumEffects<R>) {
        let me = self.id();
        let Some(epoch) = self.epoch.checked_add(1) else {
            return;
        };
        self.enter_epoch(epoch, Some(me), out);
        self.role = QuorumRole::Candidate {
            granted: BTreeSet::from([me]),
        };
        out.set_timer(QuorumTimer::Election, self.election_timeout_ms());
        if self.config.majority() == 1 {
            return self.become_leader(out);
        }
        let position = self.position();
        for v in self.other_voters() {
            out.send(
                v,
                QuorumMessage::Vote {
                    epoch: self.epoch,
                    position: position.clone(),
                },
            );
        }
    }

    fn on_vote(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        position: LogPosition,
        out: &mut QuorumEffects<R>,
    ) {
        // `on_message` already moved us to `epoch` if it was newer.
        let granted = match self.voted_for {
            // At most one vote per epoch; repeating it is harmless.
            Some(v) => v == from && epoch == self.epoch,
            None => {
                epoch == self.epoch
                    && matches!(
                        self.role,
                        QuorumRole::Unattached | QuorumRole::PreCandidate { .. }
                    )
                    && self.candidate_is_eligible(from, &position)
            }
        };
        if granted && self.voted_for.is_none() {
            self.voted_for = Some(from);
            // Durable before the answer leaves: a restarted voter must
            // not vote again in this epoch.
            self.persist_election(out);
        }
        out.send(
            from,
            QuorumMessage::VoteResponse {
                epoch: self.epoch,
                granted,
            },
        );
    }

    fn on_vote_response(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        granted: bool,
        out: &mut QuorumEffects<R>,
    ) {
        let majority = self.config.majority();
        let QuorumRole::Candidate { granted: votes } = &mut self.role else {
            return;
        };
        if epoch != self.epoch || !granted {
            return;
        }
        votes.insert(from);
        if votes.len() >= majority {
            self.become_leader(out);
        }
    }

    fn become_leader(&mut self, out: &mut QuorumEffects<R>) {
        assert_eq!(
            self.voted_for,
            Some(self.id()),
            "a leader voted for itself in its epoch"
        );
        out.cancel_timer(QuorumTimer::Election);
        self.role = QuorumRole::Leader(QuorumLeader {
            end_offsets: BTreeMap::new(),
            fetched_since_check: BTreeSet::new(),
            parked: BTreeMap::new(),
            commit_sent: BTreeMap::new(),
        });
        out.set_timer(QuorumTimer::CheckQuorum, self.config.check_quorum_ms);
        let me = self.id();
        self.append_local(Payload::LeaderChange { leader: me }, out);
        for v in self.other_voters() {
            out.send(v, QuorumMessage::BeginEpoch { epoch: self.epoch });
        }
        self.maybe_advance_commit();
    }

    /// Moves to a newer epoch (durably), forgetting the role of the old one.
    fn enter_epoch(
        &mut self,
        epoch: LeaderEpoch,
        voted_for: Option<NodeId>,
        out: &mut QuorumEffects<R>,
    ) {
        assert!(epoch > self.epoch, "epochs only grow");
        if self.is_leader() {
            out.cancel_timer(QuorumTimer::CheckQuorum);
        }
        self.epoch = epoch;
        self.voted_for = voted_for;
        self.role = QuorumRole::Unattached;
        self.persist_election(out);
        out.set_timer(QuorumTimer::Election, self.election_timeout_ms());
    }

    fn persist_election(&self, out: &mut QuorumEffects<R>) {
        if self.config.bugs.epoch_not_persisted {
            return;
        }
        let voted_for = if self.config.bugs.vote_not_persisted {
            None
        } else {
            self.voted_for
        };
        out.persist(QuorumPersist::Election {
            epoch: self.epoch,
            voted_for,
        });
    }

    fn other_voters(&self) -> Vec<NodeId> {
        self.config
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.id())
            .collect()
    }

    /// Leader: resign if a majority has not fetched since the last check.
    fn on_check_quorum(&mut self, out: &mut QuorumEffects<R>) {
        let majority = self.config.majority();
        let me = self.id();
        let QuorumRole::Leader(l) = &mut self.role else {
            return;
        };
        let heard = l.fetched_since_check.iter().filter(|&&v| v != me).count() + 1;
        l.fetched_since_check.clear();
        if heard >= majority {
            out.set_timer(QuorumTimer::CheckQuorum, self.config.check_quorum_ms);
            return;
        }
        // Step down in this epoch; whoever can reach a majority elects a
        // leader in the next one.
        self.role = QuorumRole::Unattached;
        out.set_timer(QuorumTimer::Election, self.election_timeout_ms());
    }

    // ----- log replication -------------------------------------------------------

    fn append_local(&mut self, payload: Payload<R>, out: &mut QuorumEffects<R>) -> Offset {
        let offset = self.end_offset();
        let entry = Entry {
            epoch: self.epoch,
            payload,
        };
        self.log.push(entry.clone());
        out.persist(QuorumPersist::Append {
            offset,
            entries: vec![entry],
        });
        offset
    }

    /// Commit = the largest offset a majority of voters holds, if the entry
    /// below it is from this epoch (entries of earlier epochs commit only
    /// by being followed by one of ours).
    fn maybe_advance_commit(&mut self) {
        let QuorumRole::Leader(l) = &self.role else {
            return;
        };
        let me = self.id();
        let mut ends: Vec<Offset> = self
            .config
            .voters
            .iter()
            .map(|&v| {
                if v == me {
                    self.end_offset()
                } else {
                    l.end_offsets.get(&v).copied().unwrap_or(0)
                }
            })
            .collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = ends[self.config.majority() - 1];
        if candidate <= self.commit_offset {
            return;
        }
        // At or past the commit offset, which is not below the log start.
        let own_epoch = self
            .entry(candidate - 1)
            .is_some_and(|e| e.epoch == self.epoch);
        if own_epoch || self.config.bugs.commit_earlier_epoch_by_count {
            self.commit_offset = candidate;
        }
    }

    fn on_fetch(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        fetch_offset: Offset,
        last_fetched_epoch: Option<LeaderEpoch>,
        out: &mut QuorumEffects<R>,
    ) {
        let respond = |out: &mut QuorumEffects<R>, epoch, result| {
            out.send(
                from,
                QuorumMessage::FetchResponse {
                    epoch,
                    fetch_offset,
                    result,
                },
            )
        };
        if !self.is_leader() || epoch != self.epoch {
            // An older fetcher learns our epoch and leader from the answer.
            let result = QuorumFetchResult::NotLeader {
                leader: self.leader(),
            };
            return respond(out, self.epoch, result);
        }
        if let Some(diverging) = self.check_divergence(fetch_offset, last_fetched_epoch) {
            return respond(out, epoch, diverging);
        }
        let is_voter = self.config.voters.contains(&from);
        let QuorumRole::Leader(l) = &mut self.role else {
            unreachable!()
        };
        if is_voter {
            l.end_offsets.insert(from, fetch_offset);
            l.fetched_since_check.insert(from);
        }
        l.parked.remove(&from);
        self.maybe_advance_commit();
        let has_entries = fetch_offset < self.end_offset();
        let QuorumRole::Leader(l) = &mut self.role else {
            unreachable!()
        };
        let told = l.commit_sent.get(&from).copied().unwrap_or(0);
        if !has_entries && told == self.commit_offset {
            if l.parked.is_empty() {
                out.set_timer(QuorumTimer::FetchMaxWait, self.config.fetch_max_wait_ms);
            }
            l.parked.insert(from, fetch_offset);
        } else {
            self.answer_fetch(from, fetch_offset, out);
        }
        self.answer_parked_fetches(out);
    }

    /// Whether a fetch can be answered with entries: a divergence to
    /// truncate to, or (when the fetch offset or the divergence lies below
    /// the first entry) the snapshot, else None.
    fn check_divergence(
        &self,
        fetch_offset: Offset,
        last_fetched_epoch: Option<LeaderEpoch>,
    ) -> Option<QuorumFetchResult<R>> {
        let diverging = match last_fetched_epoch {
            None => (fetch_offset > 0).then_some((0, 0)),
            Some(last_epoch) => {
                let (epoch, end_offset) = self.end_offset_for_epoch(last_epoch);
                let matches = epoch == last_epoch && end_offset >= fetch_offset;
                (!matches).then_some((epoch, end_offset))
            }
        };
        let below_start = |offset: Offset| offset < self.log_start();
        match (diverging, &self.snapshot) {
            (Some((_, end_offset)), Some(snapshot)) if below_start(end_offset) => {
                Some(QuorumFetchResult::Snapshot {
                    snapshot: snapshot.clone(),
                })
            }
            (None, Some(snapshot)) if below_start(fetch_offset) => {
                Some(QuorumFetchResult::Snapshot {
                    snapshot: snapshot.clone(),
                })
            }
            (Some((epoch, end_offset)), _) => {
                Some(QuorumFetchResult::DivergingEpoch { epoch, end_offset })
            }
            (None, _) => None,
        }
    }

    /// The largest epoch `<= epoch` in our log and the offset where it
    /// ends; the snapshot's last epoch and end if no entry has one. An
    /// epoch older than all of them: (0, 0).
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> (LeaderEpoch, Offset) {
        if let Some(i) = self.log.iter().rposition(|e| e.epoch <= epoch) {
            return (self.log[i].epoch, self.log_start() + i as Offset + 1);
        }
        match &self.snapshot {
            Some(s) if s.last_epoch <= epoch => (s.last_epoch, s.end_offset),
            _ => (0, 0),
        }
    }

    fn answer_fetch(&mut self, to: NodeId, fetch_offset: Offset, out: &mut QuorumEffects<R>) {
        // A held fetch may have fallen below a snapshot taken since.
        if let Some(snapshot) = self
            .snapshot
            .as_ref()
            .filter(|s| fetch_offset < s.end_offset)
        {
            let result = QuorumFetchResult::Snapshot {
                snapshot: snapshot.clone(),
            };
            let epoch = self.epoch;
            return out.send(
                to,
                QuorumMessage::FetchResponse {
                    epoch,
                    fetch_offset,
                    result,
                },
            );
        }
        let start = (fetch_offset - self.log_start()) as usize;
        let limit = (start + self.config.fetch_entries_max).min(self.log.len());
        let mut end = start;
        let mut weight = 0;
        // Bounded by fetch_entries_max; at least one entry when there is one.
        while end < limit {
            weight += self.log[end].payload.weight();
            if end > start && weight > self.config.fetch_weight_max {
                break;
            }
            end += 1;
        }
        let entries = self.log[start..end].to_vec();
        let commit_offset = self.commit_offset;
        if let QuorumRole::Leader(l) = &mut self.role {
            l.commit_sent.insert(to, commit_offset);
        }
        let result = QuorumFetchResult::Entries {
            entries,
            commit_offset,
        };
        out.send(
            to,
            QuorumMessage::FetchResponse {
                epoch: self.epoch,
                fetch_offset,
                result,
            },
        );
    }

    /// The fetch max wait passed: answer every held fetch (with nothing new).
    fn release_parked_fetches(&mut self, out: &mut QuorumEffects<R>) {
        let QuorumRole::Leader(l) = &mut self.role else {
            return;
        };
        let held: Vec<(NodeId, Offset)> = std::mem::take(&mut l.parked).into_iter().collect();
        for (f, o) in held {
            self.answer_fetch(f, o, out);
        }
    }

    fn answer_parked_fetches(&mut self, out: &mut QuorumEffects<R>) {
        let end = self.end_offset();
        let commit = self.commit_offset;
        let QuorumRole::Leader(l) = &mut self.role else {
            return;
        };
        let ready: Vec<(NodeId, Offset)> = l
            .parked
            .iter()
            .filter(|(f, &o)| o < end || l.commit_sent.get(f).copied().unwrap_or(0) != commit)
            .map(|(&f, &o)| (f, o))
            .collect();
        for (f, o) in ready {
            if let QuorumRole::Leader(l) = &mut self.role {
                l.parked.remove(&f);
            }
            self.answer_fetch(f, o, out);
        }
    }

    fn become_follower(&mut self, leader: NodeId, out: &mut QuorumEffects<R>) {
        self.role = QuorumRole::Follower {
            leader,
            fetch_in_flight: false,
        };
        out.set_timer(QuorumTimer::Election, self.fetch_timeout_ms());
        self.send_fetch(out);
    }

    fn send_fetch(&mut self, out: &mut QuorumEffects<R>) {
        let position = self.position();
        let QuorumRole::Follower {
            leader,
            fetch_in_flight,
        } = &mut self.role
        else {
            return;
        };
        *fetch_in_flight = true;
        let last_fetched_epoch = (position.end_offset > 0).then_some(position.last_epoch);
        out.send(
            *leader,
            QuorumMessage::Fetch {
                epoch: self.epoch,
                fetch_offset: position.end_offset,
                last_fetched_epoch,
            },
        );
    }

    /// Observers do not know the leader at first: ask every voter.
    fn fetch_from_any_voter(&mut self, out: &mut QuorumEffects<R>) {
        let position = self.position();
        let fetch_offset = position.end_offset;
        let last_fetched_epoch = (fetch_offset > 0).then_some(position.last_epoch);
        for v in self.config.voters.clone() {
            out.send(
                v,
                QuorumMessage::Fetch {
                    epoch: self.epoch,
                    fetch_offset,
                    last_fetched_epoch,
                },
            );
        }
    }

    fn on_fetch_response(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        fetch_offset: Offset,
        result: QuorumFetchResult<R>,
        out: &mut QuorumEffects<R>,
    ) {
        // `on_message` moved us to a newer epoch already.
        if epoch != self.epoch || self.is_leader() {
            return;
        }
        if let QuorumFetchResult::NotLeader { leader } = result {
            let follows = matches!(self.role, QuorumRole::Follower { .. });
            if let Some(l) = leader.filter(|&l| l != self.id() && !follows) {
                self.become_follower(l, out);
            }
            return;
        }
        // Entries and divergences come only from the leader of `epoch`.
        let end = self.end_offset();
        match &self.role {
            QuorumRole::Follower {
                leader,
                fetch_in_flight: true,
            } if *leader == from => {}
            QuorumRole::Follower { .. } => return,
            // A candidate or observer hears from the leader of its epoch.
            _ => {
                self.role = QuorumRole::Follower {
                    leader: from,
                    fetch_in_flight: true,
                }
            }
        }
        if fetch_offset != end {
            return; // an answer to an earlier fetch
        }
        if let QuorumRole::Follower {
            fetch_in_flight, ..
        } = &mut self.role
        {
            *fetch_in_flight = false;
        }
        out.set_timer(QuorumTimer::Election, self.fetch_timeout_ms());
        match result {
            QuorumFetchResult::Entries {
                entries,
                commit_offset,
            } => {
                if !entries.is_empty() {
                    self.log.extend(entries.iter().cloned());
                    out.persist(QuorumPersist::Append {
                        offset: end,
                        entries,
                    });
                }
                let end = self.end_offset();
                self.commit_offset = self.commit_offset.max(commit_offset.min(end));
            }
            QuorumFetchResult::Snapshot { snapshot } => {
                // Only forward: never back past what this node committed
                // (a correct leader's snapshot is past it, unless both
                // snapshots end at the same offset).
                let start = self.log_start();
                if snapshot.end_offset > self.commit_offset {
                    self.commit_offset = snapshot.end_offset;
                    self.log.clear();
                    self.snapshot = Some(snapshot.clone());
                    out.persist(QuorumPersist::InstallSnapshot(snapshot));
                } else if snapshot.end_offset == start && end > start {
                    // Our own snapshot ends where the leader's does, and
                    // what we hold after it diverges below the leader's
                    // first entry: none of it is committed (the leader
                    // holds every committed entry, none of an epoch this
                    // old after its start). Without this, the next fetch
                    // would be answered the same, forever.
                    self.log.clear();
                    self.commit_offset = self.commit_offset.min(start);
                    out.persist(QuorumPersist::Append {
                        offset: start,
                        entries: Vec::new(),
                    });
                }
            }
            QuorumFetchResult::DivergingEpoch { epoch, end_offset } => {
                let (own_epoch, own_end) = self.end_offset_for_epoch(epoch);
                let target = if own_epoch == epoch {
                    own_end.min(end_offset)
                } else {
                    own_end
                };
                // Never below the commit offset in a correct quorum (and so
                // never into the snapshot); the checker's
                // CommittedPrefixAgreement says so, not a panic.
                let target = target.min(end).max(self.log_start());
                self.log.truncate((target - self.log_start()) as usize);
                self.commit_offset = self.commit_offset.min(target);
                out.persist(QuorumPersist::Append {
                    offset: target,
                    entries: Vec::new(),
                });
            }
            QuorumFetchResult::NotLeader { .. } => unreachable!("handled above"),
        }
        self.send_fetch(out);
    }
}

fn message_epoch<R>(m: &QuorumMessage<R>) -> LeaderEpoch {
    match m {
        QuorumMessage::PreVote { epoch, .. }
        | QuorumMessage::PreVoteResponse { epoch, .. }
        | QuorumMessage::Vote { epoch, .. }
        | QuorumMessage::VoteResponse { epoch, .. }
        | QuorumMessage::BeginEpoch { epoch }
        | QuorumMessage::Fetch { epoch, .. }
        | QuorumMessage::FetchResponse { epoch, .. } => *epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Effect;
    use std::collections::VecDeque;

    #[derive(Clone, Debug, PartialEq)]
    struct Heavy(usize);
    impl EntryWeight for Heavy {
        fn weight(&self) -> usize {
            self.0
        }
    }

    /// A single voter that has elected itself.
    fn lone_leader<R: Clone + std::fmt::Debug + EntryWeight>(log: Vec<Entry<R>>) -> Quorum<R> {
        let durable = QuorumDurable {
            epoch: 1,
            voted_for: Some(1),
            snapshot: None,
            log,
        };
        let mut q = Quorum::recover(QuorumConfig::new(1, [1]), durable);
        let mut out = QuorumEffects::new();
        q.start(&mut out);
        for _ in 0..10 {
            if q.is_leader() {
                break;
            }
            let timers: Vec<_> = out
                .drain()
                .filter_map(|e| match e {
                    Effect::SetTimer { timer, .. } => Some(timer),
                    _ => None,
                })
                .collect();
            for t in timers {
                q.on_timer(t, &mut out);
            }
        }
        assert!(q.is_leader(), "a single voter elects itself");
        q
    }

    /// An observer (node 9) may fetch, nothing else, and never moves a
    /// voter's epoch, even with an epoch far ahead (u32::MAX would leave the
    /// voter unable to ever campaign again).
    #[test]
    fn observers_only_fetch_and_never_move_the_epoch() {
        let mut q: Quorum<u8> = lone_leader(Vec::new());
        let epoch = q.epoch();
        let far = u32::MAX;
        let position = LogPosition {
            last_epoch: far,
            end_offset: 100,
        };
        for message in [
            QuorumMessage::BeginEpoch { epoch: far },
            QuorumMessage::Vote {
                epoch: far,
                position: position.clone(),
            },
            QuorumMessage::PreVote {
                epoch: far,
                position,
            },
            QuorumMessage::VoteResponse {
                epoch: far,
                granted: true,
            },
            QuorumMessage::Fetch {
                epoch: far,
                fetch_offset: 0,
                last_fetched_epoch: None,
            },
        ] {
            let mut out = QuorumEffects::new();
            q.on_message(9, message.clone(), &mut out);
            assert!(out.is_empty(), "{message:?} was answered");
            assert_eq!((q.epoch(), q.is_leader()), (epoch, true), "{message:?}");
        }
        let mut out = QuorumEffects::new();
        let fetch = QuorumMessage::Fetch {
            epoch,
            fetch_offset: 0,
            last_fetched_epoch: None,
        };
        q.on_message(9, fetch, &mut out);
        assert!(
            out.iter().any(|e| matches!(
                e,
                Effect::Send {
                    to: 9,
                    message: QuorumMessage::FetchResponse { .. }
                }
            )),
            "a fetch in the current epoch is answered"
        );
    }

    /// A large decision is one entry: a fetch carries it whole even above
    /// the weight bound, and stops before the next heavy one.
    #[test]
    fn fetch_responses_are_bounded_by_weight_yet_never_empty() {
        let log: Vec<Entry<Heavy>> = [20_000, 10_000, 1, 1]
            .into_iter()
            .map(|w| Entry {
                epoch: 1,
                payload: Payload::Record(Heavy(w)),
            })
            .collect();
        let mut q = lone_leader(log);
        let fetched = |q: &mut Quorum<Heavy>, from: Offset| -> Vec<usize> {
            let mut out = QuorumEffects::new();
            let fetch = QuorumMessage::Fetch {
                epoch: q.epoch(),
                fetch_offset: from,
                last_fetched_epoch: (from > 0).then_some(1),
            };
            q.on_message(9, fetch, &mut out);
            let effects: Vec<_> = out.drain().collect();
            effects
                .into_iter()
                .find_map(|e| match e {
                    Effect::Send {
                        message:
                            QuorumMessage::FetchResponse {
                                result: QuorumFetchResult::Entries { entries, .. },
                                ..
                            },
                        ..
                    } => Some(entries.iter().map(|e| e.payload.weight()).collect()),
                    _ => None,
                })
                .expect("a fetch response with entries")
        };
        assert_eq!(fetched(&mut q, 0), vec![20_000], "heavy entry alone");
        // Then the rest, with the new leader's leader-change marker.
        assert_eq!(fetched(&mut q, 1), vec![10_000, 1, 1, 1]);
    }

    /// A tiny deterministic driver: timers fire in deadline order, every
    /// message is delivered in send order, persistence is instant.
    struct Cluster {
        nodes: BTreeMap<NodeId, Quorum<u8>>,
        timers: BTreeMap<(NodeId, QuorumTimer), u64>,
        queue: VecDeque<(NodeId, NodeId, QuorumMessage<u8>)>,
        now_ms: u64,
    }

    impl Cluster {
        fn new(logs: &[(NodeId, Vec<Entry<u8>>)]) -> Self {
            let voters: Vec<NodeId> = logs.iter().map(|(id, _)| *id).collect();
            let mut c = Cluster {
                nodes: BTreeMap::new(),
                timers: BTreeMap::new(),
                queue: VecDeque::new(),
                now_ms: 0,
            };
            for (id, log) in logs {
                let epoch = log.last().map_or(0, |e| e.epoch);
                let durable = QuorumDurable {
                    epoch,
                    voted_for: None,
                    snapshot: None,
                    log: log.clone(),
                };
                let mut node = Quorum::recover(QuorumConfig::new(*id, voters.clone()), durable);
                let mut out = QuorumEffects::new();
                node.start(&mut out);
                c.nodes.insert(*id, node);
                c.apply(*id, out);
            }
            c
        }

        fn apply(&mut self, from: NodeId, mut out: QuorumEffects<u8>) {
            for effect in out.drain() {
                match effect {
                    Effect::Send { to, message } => self.queue.push_back((from, to, message)),
                    Effect::SetTimer { timer, after_ms } => {
                        self.timers.insert((from, timer), self.now_ms + after_ms);
                    }
                    Effect::CancelTimer { timer } => {
                        self.timers.remove(&(from, timer));
                    }
                    _ => {}
                }
            }
        }

        /// Runs until some node leads and the messages are drained.
        fn drain(&mut self) {
            for _ in 0..100_000 {
                let Some((from, to, message)) = self.queue.pop_front() else {
                    return;
                };
                let mut out = QuorumEffects::new();
                let Some(node) = self.nodes.get_mut(&to) else {
                    continue; // crashed
                };
                node.on_message(from, message, &mut out);
                self.apply(to, out);
            }
            panic!("messages never drained");
        }

        fn elect(&mut self) -> NodeId {
            for _ in 0..10_000 {
                self.drain();
                if let Some(leader) = self.nodes.values().find(|n| n.is_leader()) {
                    return leader.id();
                }
                let (&(node, timer), &at) = self.timers.iter().min_by_key(|(_, &at)| at).unwrap();
                self.timers.remove(&(node, timer));
                self.now_ms = at;
                let mut out = QuorumEffects::new();
                self.nodes.get_mut(&node).unwrap().on_timer(timer, &mut out);
                self.apply(node, out);
            }
            panic!("no leader elected");
        }
    }

    fn record(epoch: LeaderEpoch, value: u8) -> Entry<u8> {
        Entry {
            epoch,
            payload: Payload::Record(value),
        }
    }

    #[test]
    fn seed_order_equal_logs_elect_the_highest_id() {
        // zkServer.sh status in the seed: zookeeper3 is the leader.
        let mut c = Cluster::new(&[(1, vec![]), (2, vec![]), (3, vec![])]);
        assert_eq!(c.elect(), 3);
    }

    #[test]
    fn followers_of_a_dead_leader_elect_a_new_one() {
        // The seed kills the leading ZooKeeper: the two others must agree on
        // a new leader, although each still followed the old one when the
        // other's pre-vote arrived (this once livelocked on leader hints).
        let mut c = Cluster::new(&[(1, vec![]), (2, vec![]), (3, vec![])]);
        assert_eq!(c.elect(), 3);
        c.nodes.remove(&3);
        c.timers.retain(|(n, _), _| *n != 3);
        assert_eq!(c.elect(), 2);
        assert_eq!(c.nodes[&1].leader(), Some(2));
    }

    #[test]
    fn seed_order_a_longer_log_beats_a_higher_id() {
        // The "transaction id" (last epoch, end offset) comes first.
        let long = vec![record(1, 1), record(1, 2)];
        let mut c = Cluster::new(&[(1, long.clone()), (2, long), (3, vec![record(1, 1)])]);
        assert_eq!(c.elect(), 2, "3 has the highest id but a shorter log");
    }

    #[test]
    fn an_observer_follows_the_committed_log() {
        let mut c = Cluster::new(&[(1, vec![]), (2, vec![]), (3, vec![])]);
        let leader = c.elect();
        let mut observer =
            Quorum::recover(QuorumConfig::new(9, [1, 2, 3]), QuorumDurable::default());
        let mut out = QuorumEffects::new();
        observer.start(&mut out);
        c.nodes.insert(9, observer);
        c.apply(9, out);
        let mut out = QuorumEffects::new();
        let offset = c
            .nodes
            .get_mut(&leader)
            .unwrap()
            .propose(7, &mut out)
            .unwrap();
        c.apply(leader, out);
        c.drain();
        let observer = &c.nodes[&9];
        assert_eq!(observer.leader(), Some(leader));
        assert_eq!(observer.entry(offset).unwrap().payload, Payload::Record(7));
        assert!(
            observer.commit_offset() > offset,
            "the record is committed and the observer knows"
        );
        let mut out = QuorumEffects::new();
        let follower = c.nodes.get_mut(&1).unwrap();
        assert_eq!(
            follower.propose(8, &mut out),
            Err(ProposeError::NotLeader {
                leader: Some(leader)
            })
        );
    }

    #[test]
    fn a_restarted_voter_keeps_its_vote() {
        let mut out = QuorumEffects::<u8>::new();
        let mut voter = Quorum::recover(QuorumConfig::new(1, [1, 2, 3]), QuorumDurable::default());
        let position = LogPosition {
            last_epoch: 0,
            end_offset: 0,
        };
        voter.on_message(
            3,
            QuorumMessage::Vote {
                epoch: 1,
                position: position.clone(),
            },
            &mut out,
        );
        let mut durable = QuorumDurable::default();
        for e in out.drain() {
            if let Effect::Persist(change) = e {
                durable.apply(&change);
            }
        }
        assert_eq!((durable.epoch, durable.voted_for), (1, Some(3)));
        let mut restarted = Quorum::recover(QuorumConfig::new(1, [1, 2, 3]), durable);
        let mut out = QuorumEffects::<u8>::new();
        restarted.on_message(2, QuorumMessage::Vote { epoch: 1, position }, &mut out);
        let refused = out.iter().any(|e| {
            matches!(
                e,
                Effect::Send {
                    message: QuorumMessage::VoteResponse { granted: false, .. },
                    ..
                }
            )
        });
        assert!(refused, "one vote per epoch, across restarts");
    }
}
