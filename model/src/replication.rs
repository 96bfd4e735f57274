//! The partition replication protocol (Kafka's ISR design) for one partition
//! on one replica, leader and follower roles in one state machine.
//!
//! Rules, each in exactly one place below:
//! - every batch carries the leader epoch it was written in; a new leader
//!   records its epoch start offset ([`Replica::become_leader`]);
//! - followers pull: a fetch carries (fetch offset, last fetched epoch) and
//!   the leader answers a diverging epoch when the follower's log does not
//!   match its own ([`Replica::check_divergence`]); the follower truncates by
//!   leader epoch, never to its high watermark ([`Replica::on_diverging_epoch`]);
//! - the high watermark is the minimum log end offset over the *maximal* ISR
//!   (committed ISR ∪ pending additions), counting a follower only once it has
//!   fetched in the current leader epoch at or past the epoch start offset, and
//!   only while the ISR has at least `min.insync.replicas` members
//!   ([`Replica::maybe_advance_high_watermark`]);
//! - ISR shrink and expand are proposals to the controller carrying the
//!   partition epoch, applied only when accepted ([`Replica::on_lag_check`],
//!   [`Replica::maybe_expand_isr`]);
//! - acks=all is answered only once the high watermark passes the batch
//!   ([`Replica::complete_produces`]);
//! - in durable mode nothing is counted or acknowledged before it is flushed.

use crate::core::{Effects, LeaderEpoch, NodeId, Offset, RequestId};
use crate::log::{LogError, PartitionLog, Records as _};
use crate::partition::{AlterPartitionError, AlterPartitionRequest, PartitionRegistration};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// When a replica's appends become durable relative to acknowledgements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlushMode {
    /// Kafka's default: leave flushing to the page cache. An acknowledged
    /// write survives only as long as one replica holding it does not lose
    /// power before the OS writes it back.
    Async,
    /// Flush before acknowledging: the leader counts its own flushed offset
    /// and followers flush before fetching further, so the high watermark
    /// only covers records durable on every ISR member that counted.
    Durable,
}

/// Known mistakes the checker must catch. All off in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicationBugs {
    /// Truncate to the local high watermark on becoming follower (pre-KIP-101).
    pub truncate_to_high_watermark: bool,
    /// A new leader assumes every follower already holds its whole log, so
    /// the HW moves over followers that have not fetched in this epoch.
    pub hw_over_unfetched_follower: bool,
    /// Expand the ISR with a follower below the leader's epoch start offset.
    pub expand_isr_below_epoch_start: bool,
    /// Serve a fetch without checking the follower's last fetched epoch.
    pub skip_divergence_check: bool,
    /// Apply an ISR shrink locally before the controller accepts it.
    pub shrink_isr_before_commit: bool,
    /// Ignore `min.insync.replicas`.
    pub ignore_min_insync_replicas: bool,
    /// DeleteRecords moves the log start to the log end offset instead of
    /// stopping at the high watermark (deletes records not yet committed).
    pub delete_above_high_watermark: bool,
}

/// Per-replica settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaConfig {
    pub replica_id: NodeId,
    /// Where ISR change proposals go.
    pub controller_id: NodeId,
    pub min_insync_replicas: usize,
    pub flush_mode: FlushMode,
    /// Kafka's `replica.lag.time.max.ms`; also the ISR check period.
    pub replica_lag_time_max_ms: u64,
    /// Wait before retrying a failed fetch.
    pub fetch_backoff_ms: u64,
    /// Longest the leader holds a follower's fetch that has nothing new.
    pub fetch_max_wait_ms: u64,
    pub fetch_max_bytes: usize,
    /// Bound on produce requests waiting for the high watermark.
    pub pending_produces_max: usize,
    pub bugs: ReplicationBugs,
}

impl ReplicaConfig {
    pub fn new(replica_id: NodeId, controller_id: NodeId) -> Self {
        Self {
            replica_id,
            controller_id,
            min_insync_replicas: 1,
            flush_mode: FlushMode::Async,
            replica_lag_time_max_ms: 30_000,
            fetch_backoff_ms: 1_000,
            fetch_max_wait_ms: 500,
            fetch_max_bytes: 1 << 20,
            pending_produces_max: 4096,
            bugs: ReplicationBugs::default(),
        }
    }
}

/// Kafka's produce `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Acks {
    /// No answer at all.
    None,
    /// Answer once the leader has the batch (durable mode: flushed).
    Leader,
    /// Answer once the high watermark passes the batch.
    All,
}

/// A client's produce request for this partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProduceRequest<R> {
    pub id: RequestId,
    pub records: R,
    pub acks: Acks,
}

/// Why a produce failed (Kafka's error names).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProduceError {
    NotLeaderOrFollower,
    /// The ISR is below `min.insync.replicas`; nothing was appended.
    NotEnoughReplicas,
    /// Appended, but the ISR fell below `min.insync.replicas` before it was committed.
    NotEnoughReplicasAfterAppend,
    /// Too many produces are waiting for replication.
    RequestTimedOut,
    Log(LogError),
}

/// Why DeleteRecords failed, as Kafka's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeleteRecordsError {
    NotLeaderOrFollower,
    /// Above the high watermark.
    OffsetOutOfRange,
}

/// The answer to a produce request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProduceReply {
    pub id: RequestId,
    /// The base offset of the batch on success.
    pub result: Result<Offset, ProduceError>,
}

/// A follower's fetch (Kafka's replica `Fetch`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FetchRequest {
    pub replica_id: NodeId,
    /// The epoch the follower believes is current.
    pub leader_epoch: LeaderEpoch,
    /// The follower's log end offset.
    pub fetch_offset: Offset,
    /// The epoch of the follower's last batch (its latest epoch-cache entry).
    pub last_fetched_epoch: Option<LeaderEpoch>,
    /// The follower's log start offset (Kafka's fetch field of that name):
    /// the leader's low watermark for DeleteRecords.
    pub log_start_offset: Offset,
}

/// The leader's answer to a [`FetchRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FetchResult<R> {
    Records {
        records: R,
        high_watermark: Offset,
        /// The leader's log start offset: followers move theirs up to it
        /// (never past their own high watermark), as Kafka's do.
        log_start_offset: Offset,
    },
    /// The follower's log diverges from the leader's at or before
    /// `end_offset`, the end of the leader's `epoch`.
    DivergingEpoch {
        epoch: LeaderEpoch,
        end_offset: Offset,
        high_watermark: Offset,
    },
    /// The fetch offset is past the leader's log end offset, or below its
    /// log start offset (retention deleted what the follower lacks).
    OffsetOutOfRange {
        log_start_offset: Offset,
        log_end_offset: Offset,
    },
    /// The follower's epoch is older than the leader's.
    FencedLeaderEpoch,
    /// The follower's epoch is newer than the leader's (the leader lags the controller).
    UnknownLeaderEpoch,
    NotLeader,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FetchResponse<R> {
    /// Echoes the request's epoch so stale answers are recognised.
    pub leader_epoch: LeaderEpoch,
    pub result: FetchResult<R>,
}

/// Everything a replica sends or receives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReplicationMessage<R> {
    /// Controller → replicas: the partition's registration (Kafka's LeaderAndIsr).
    PartitionState(PartitionRegistration),
    /// Leader → controller: an ISR change proposal.
    AlterPartition(AlterPartitionRequest),
    /// Controller → leader; echoes the request so that a late answer to an
    /// earlier proposal is not taken for the answer to the pending one.
    AlterPartitionResponse {
        request: AlterPartitionRequest,
        result: Result<PartitionRegistration, AlterPartitionError>,
    },
    Fetch(FetchRequest),
    FetchResponse(FetchResponse<R>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReplicaTimer {
    /// Leader: look for followers that fell out of sync.
    LagCheck,
    /// Follower: retry a fetch after an error.
    FetchBackoff,
    /// Leader: answer fetches held for new records (Kafka's
    /// replica.fetch.wait.max.ms). Set only while a follower outside the ISR
    /// waits, so that it fetches again and can rejoin; an in-sync follower's
    /// held fetch is answered only when there is news.
    FetchMaxWait,
}

/// The replication protocol keeps no durable state of its own besides the
/// log (flushed through [`crate::core::Effect::FlushLog`]): leadership and
/// the ISR are the controller's, and the high watermark is rebuilt.
pub type ReplicaDurable = ();

pub type ReplicaEffects<R> =
    Effects<ReplicationMessage<R>, ReplicaTimer, ProduceReply, ReplicaDurable>;

/// What the leader knows of one follower in the current leader epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FollowerProgress {
    /// The follower's log end offset, known only once it has fetched in this
    /// epoch at or past the epoch start offset; until then it holds back the HW.
    pub end_offset: Option<Offset>,
    /// Fetched up to the leader's log end offset (as of the last answer)
    /// since the last lag check.
    caught_up: bool,
    /// The leader's log end offset when it last answered this follower.
    leader_end_at_last_answer: Offset,
    /// A fetch the leader holds until there is something new (long poll).
    parked: Option<FetchRequest>,
    /// The high watermark the follower was last told.
    high_watermark_sent: Offset,
    /// The follower's log start offset as of its last fetch.
    log_start_offset: Offset,
}

impl FollowerProgress {
    /// Is this follower's fetch held here at `leader_end` (it has all of it)?
    fn waits_at(&self, leader_end: Offset) -> bool {
        self.parked
            .as_ref()
            .is_some_and(|r| r.fetch_offset >= leader_end)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PendingProduce {
    id: RequestId,
    base_offset: Offset,
    end_offset: Offset,
    acks: Acks,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaderState {
    pub epoch_start_offset: Offset,
    pub followers: BTreeMap<NodeId, FollowerProgress>,
    /// The ISR change this replica proposed and the controller has not answered yet.
    pub pending_isr: Option<AlterPartitionRequest>,
    pending_produces: VecDeque<PendingProduce>,
    /// The lag check's timer is set. A quiet partition (every in-sync
    /// follower's fetch held at the log end) lets it lapse, so an idle
    /// partition has no timer at all; the log growing or a follower's link
    /// breaking sets it again (`arm_lag_check`).
    lag_check_armed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FollowerState {
    pub leader: NodeId,
    pub fetch_in_flight: bool,
    /// Durable mode: waiting for a flush before fetching further.
    pub awaiting_flush: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// No partition state yet (just started), or not a replica with a live leader.
    Offline,
    Leader(LeaderState),
    Follower(FollowerState),
}

/// One replica of one partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica<L> {
    config: ReplicaConfig,
    log: L,
    high_watermark: Offset,
    /// The latest registration learnt from the controller.
    registration: Option<PartitionRegistration>,
    role: Role,
}

impl<L: PartitionLog> Replica<L> {
    /// Starts a replica over a recovered log. Nothing volatile survives a
    /// restart: the replica waits for the controller's partition state.
    pub fn recover(config: ReplicaConfig, log: L) -> Self {
        assert!(config.min_insync_replicas >= 1);
        Self {
            config,
            // Everything below the log start was committed (only committed
            // records are deleted); Kafka's HW never sits below the start.
            high_watermark: log.start_offset(),
            log,
            registration: None,
            role: Role::Offline,
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.replica_id
    }
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }
    pub fn log(&self) -> &L {
        &self.log
    }
    /// For the caller executing a `FlushLog` effect and for crash simulation.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }
    /// Kafka's `min.insync.replicas` for this partition from now on (the
    /// topic's override changed): acks=all writes need that many in the ISR
    /// when they arrive. Writes already waiting keep waiting for the high
    /// watermark, which this does not move.
    pub fn set_min_insync_replicas(&mut self, min_insync_replicas: usize) {
        assert!(min_insync_replicas >= 1);
        self.config.min_insync_replicas = min_insync_replicas;
    }

    /// The produce requests waiting for the high watermark: a caller that
    /// drops this replica (its log failed) answers them itself.
    pub fn pending_produce_ids(&self) -> Vec<RequestId> {
        match &self.role {
            Role::Leader(ls) => ls.pending_produces.iter().map(|p| p.id).collect(),
            _ => Vec::new(),
        }
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }
    pub fn registration(&self) -> Option<&PartitionRegistration> {
        self.registration.as_ref()
    }
    pub fn role(&self) -> &Role {
        &self.role
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }
    pub fn leader_epoch(&self) -> Option<LeaderEpoch> {
        self.registration.as_ref().map(|r| r.leader_epoch)
    }

    /// The ISR as the leader counts it for the high watermark: the committed
    /// ISR plus any member of a pending proposal (Kafka's maximal ISR).
    pub fn maximal_isr(&self) -> BTreeSet<NodeId> {
        let mut isr = self
            .registration
            .as_ref()
            .map(|r| r.isr.clone())
            .unwrap_or_default();
        if let Role::Leader(ls) = &self.role {
            isr.extend(
                ls.pending_isr
                    .iter()
                    .flat_map(|p| p.new_isr.iter().copied()),
            );
        }
        isr
    }

    // ----- inputs -------------------------------------------------------------

    /// A message from node `from`.
    pub fn on_message(
        &mut self,
        from: NodeId,
        message: ReplicationMessage<L::Records>,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        if !self.may_send(from, &message) {
            return;
        }
        match message {
            ReplicationMessage::PartitionState(reg) => self.on_partition_state(reg, out),
            ReplicationMessage::AlterPartitionResponse { request, result } => {
                self.on_alter_partition_response(request, result, out)
            }
            ReplicationMessage::Fetch(request) => self.on_fetch(request, out),
            ReplicationMessage::FetchResponse(response) => {
                self.on_fetch_response(from, response, out)
            }
            // Only the controller handles proposals.
            ReplicationMessage::AlterPartition(_) => {}
        }
    }

    /// A message is believed only from who may send it (the caller's
    /// transport authenticates `from`): partition state and ISR answers
    /// come from the controller, and a fetch speaks only for its sender, so
    /// no peer can forge leadership or another follower's progress.
    fn may_send(&self, from: NodeId, message: &ReplicationMessage<L::Records>) -> bool {
        match message {
            ReplicationMessage::PartitionState(_)
            | ReplicationMessage::AlterPartitionResponse { .. } => {
                from == self.config.controller_id
            }
            ReplicationMessage::Fetch(request) => request.replica_id == from,
            ReplicationMessage::FetchResponse(_) | ReplicationMessage::AlterPartition(_) => true,
        }
    }

    pub fn on_timer(&mut self, timer: ReplicaTimer, out: &mut ReplicaEffects<L::Records>) {
        match timer {
            ReplicaTimer::LagCheck => self.on_lag_check(out),
            ReplicaTimer::FetchBackoff => {
                if matches!(&self.role, Role::Follower(f) if !f.fetch_in_flight) {
                    self.maybe_send_fetch(out);
                }
            }
            ReplicaTimer::FetchMaxWait => self.release_parked_fetches(out),
        }
    }

    /// The transport lost the link to `peer` (its connection broke, or there
    /// is none): messages to and from it may be gone. The protocol assumes
    /// ordered, lossless links while both ends live, so the caller reports a
    /// broken link here: a follower forgets the fetch it had in flight to that
    /// leader and tries again after the backoff (a late answer to the old fetch
    /// is still safe: `append_as_follower` only takes records that continue
    /// the log), and a leader forgets the follower's parked fetch.
    pub fn on_peer_disconnected(&mut self, peer: NodeId, out: &mut ReplicaEffects<L::Records>) {
        match &mut self.role {
            Role::Follower(f) if f.leader == peer && f.fetch_in_flight => {
                f.fetch_in_flight = false;
                out.set_timer(ReplicaTimer::FetchBackoff, self.config.fetch_backoff_ms);
            }
            Role::Leader(ls) => {
                if let Some(p) = ls.followers.get_mut(&peer) {
                    p.parked = None;
                    // Its fetch no longer vouches for it: check it again.
                    self.arm_lag_check(out);
                }
            }
            _ => {}
        }
    }

    /// The log is durable up to `flushed_offset` (completion of `FlushLog`).
    pub fn on_flushed(&mut self, flushed_offset: Offset, out: &mut ReplicaEffects<L::Records>) {
        debug_assert!(flushed_offset <= self.log.flushed_offset());
        match &mut self.role {
            Role::Leader(_) => {
                self.maybe_advance_high_watermark(out);
                self.complete_produces(out);
            }
            Role::Follower(f) if f.awaiting_flush => {
                f.awaiting_flush = false;
                self.maybe_send_fetch(out);
            }
            _ => {}
        }
    }

    /// A retry of a batch already in the log at `[base_offset, end_offset)`
    /// (an idempotent producer's duplicate): nothing is appended, and it is
    /// acknowledged like the original would be — acks=all once the high
    /// watermark covers it.
    pub fn on_duplicate_produce(
        &mut self,
        id: RequestId,
        base_offset: Offset,
        end_offset: Offset,
        acks: Acks,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        let Role::Leader(ls) = &mut self.role else {
            return reply(out, id, Err(ProduceError::NotLeaderOrFollower));
        };
        debug_assert!(end_offset <= self.log.end_offset());
        if acks == Acks::None {
            return;
        }
        ls.pending_produces.push_back(PendingProduce {
            id,
            base_offset,
            end_offset,
            acks,
        });
        self.complete_produces(out);
    }

    /// A client's produce.
    pub fn on_produce(
        &mut self,
        request: ProduceRequest<L::Records>,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        let Some(reg) = self.registration.as_ref() else {
            return reply(out, request.id, Err(ProduceError::NotLeaderOrFollower));
        };
        let Role::Leader(ls) = &self.role else {
            return reply(out, request.id, Err(ProduceError::NotLeaderOrFollower));
        };
        if request.acks == Acks::All && !self.min_isr_met(reg) {
            return reply(out, request.id, Err(ProduceError::NotEnoughReplicas));
        }
        if ls.pending_produces.len() >= self.config.pending_produces_max {
            return reply(out, request.id, Err(ProduceError::RequestTimedOut));
        }
        let epoch = reg.leader_epoch;
        let info = match self.log.append_as_leader(request.records, epoch) {
            Ok(info) => info,
            Err(e) => return reply(out, request.id, Err(ProduceError::Log(e))),
        };
        if self.config.flush_mode == FlushMode::Durable {
            out.flush_log(info.end_offset);
        }
        if request.acks != Acks::None {
            let Role::Leader(ls) = &mut self.role else {
                unreachable!()
            };
            ls.pending_produces.push_back(PendingProduce {
                id: request.id,
                base_offset: info.first_offset,
                end_offset: info.end_offset,
                acks: request.acks,
            });
        }
        self.arm_lag_check(out);
        self.maybe_advance_high_watermark(out);
        self.complete_produces(out);
        self.answer_parked_fetches(out);
    }

    /// Sets the lag check's timer if a quiet spell let it lapse: the log
    /// grew (each follower now has `replica.lag.time.max.ms` to fetch it),
    /// or a follower's held fetch was dropped.
    fn arm_lag_check(&mut self, out: &mut ReplicaEffects<L::Records>) {
        if let Role::Leader(ls) = &mut self.role {
            if !ls.lag_check_armed {
                ls.lag_check_armed = true;
                out.set_timer(ReplicaTimer::LagCheck, self.config.replica_lag_time_max_ms);
            }
        }
    }

    /// A consumer's fetch: whole batches from `from`, never past the high watermark.
    pub fn read_committed(&self, from: Offset, max_bytes: usize) -> Result<L::Records, FetchError> {
        let (from, until) = self.committed_range(from)?;
        self.log
            .read(from, until, max_bytes)
            .map_err(FetchError::Log)
    }

    /// What a consumer may read from `from`: `[from, high watermark)`, on
    /// the leader only. For callers that serve the bytes themselves (the
    /// node sends file ranges with `sendfile`).
    pub fn committed_range(&self, from: Offset) -> Result<(Offset, Offset), FetchError> {
        if !self.is_leader() {
            return Err(FetchError::NotLeaderOrFollower);
        }
        if from < self.log.start_offset() || from > self.high_watermark {
            return Err(FetchError::OffsetOutOfRange);
        }
        Ok((from, self.high_watermark))
    }

    /// DeleteRecords (Kafka's `deleteRecordsOnLocalLog`): moves the log
    /// start offset to `offset` (`None`: the high watermark, Kafka's -1),
    /// on the leader only and never past the high watermark, so only
    /// committed records are deleted. Returns the new log start offset;
    /// an offset at or below it changes nothing. Followers follow through
    /// their fetches; [`Replica::low_watermark`] says when they have.
    pub fn delete_records(
        &mut self,
        offset: Option<Offset>,
        out: &mut ReplicaEffects<L::Records>,
    ) -> Result<Offset, DeleteRecordsError> {
        if !self.is_leader() {
            return Err(DeleteRecordsError::NotLeaderOrFollower);
        }
        let limit = if self.config.bugs.delete_above_high_watermark {
            self.log.end_offset()
        } else {
            self.high_watermark
        };
        let offset = offset.unwrap_or(limit);
        if offset > limit {
            return Err(DeleteRecordsError::OffsetOutOfRange);
        }
        if offset > self.log.start_offset() {
            self.log.advance_start_offset(offset);
        }
        // Held follower fetches learn the start now, not at the next append
        // (an idle partition may see none for long): also when this call
        // moved nothing but a follower is behind the start (retention moved
        // it), or the answer would wait for its low watermark in vain.
        self.answer_parked_fetches(out);
        Ok(self.log.start_offset())
    }

    /// The lowest log start offset of the leader and its in-sync
    /// followers (Kafka's `lowWatermarkIfLeader`, over the ISR rather than
    /// every live broker): DeleteRecords answers once it reaches the
    /// requested offset. `None` when not leading.
    pub fn low_watermark(&self) -> Option<Offset> {
        let Role::Leader(ls) = &self.role else {
            return None;
        };
        let me = self.config.replica_id;
        let isr = self.registration.as_ref().map(|r| &r.isr)?;
        let followers = isr
            .iter()
            .filter(|&&id| id != me)
            .map(|id| ls.followers.get(id).map_or(0, |p| p.log_start_offset));
        Some(followers.fold(self.log.start_offset(), Offset::min))
    }

    // ----- controller --------------------------------------------------------

    fn on_partition_state(
        &mut self,
        reg: PartitionRegistration,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        let me = self.config.replica_id;
        let newer_leader_epoch = match &self.registration {
            None => true,
            Some(known) => {
                if (reg.leader_epoch, reg.partition_epoch)
                    <= (known.leader_epoch, known.partition_epoch)
                {
                    return; // stale or duplicate
                }
                reg.leader_epoch > known.leader_epoch
            }
        };
        let leader = reg.leader;
        let is_replica = reg.replicas.contains(&me);
        self.registration = Some(reg);
        if !newer_leader_epoch && !matches!(self.role, Role::Offline) {
            // Same leader epoch, newer ISR: the leader adopts it.
            self.maybe_advance_high_watermark(out);
            self.complete_produces(out);
            self.arm_fetch_max_wait(out);
            return;
        }
        self.resign(out);
        match leader {
            Some(l) if l == me => self.become_leader(out),
            Some(l) if is_replica => self.become_follower(l, out),
            _ => {}
        }
    }

    fn on_alter_partition_response(
        &mut self,
        request: AlterPartitionRequest,
        result: Result<PartitionRegistration, AlterPartitionError>,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        if ls.pending_isr.as_ref() != Some(&request) {
            return; // the answer to an earlier proposal
        }
        ls.pending_isr = None;
        if let Ok(reg) = result {
            let known = self
                .registration
                .as_ref()
                .expect("a leader has a registration");
            let same_epoch = reg.leader_epoch == known.leader_epoch;
            if same_epoch && reg.partition_epoch > known.partition_epoch {
                self.registration = Some(reg);
            }
        }
        // On error the controller's newer registration is on its way.
        self.maybe_advance_high_watermark(out);
        self.complete_produces(out);
        self.arm_fetch_max_wait(out);
    }

    // ----- leader ------------------------------------------------------------

    fn become_leader(&mut self, out: &mut ReplicaEffects<L::Records>) {
        let reg = self
            .registration
            .as_ref()
            .expect("leader has a registration");
        let epoch_start_offset = self.log.end_offset();
        self.log
            .assign_epoch_start(reg.leader_epoch, epoch_start_offset);
        let me = self.config.replica_id;
        let assumed = self
            .config
            .bugs
            .hw_over_unfetched_follower
            .then_some(epoch_start_offset);
        let followers = reg
            .replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                (
                    r,
                    FollowerProgress {
                        end_offset: assumed,
                        ..Default::default()
                    },
                )
            })
            .collect();
        self.role = Role::Leader(LeaderState {
            epoch_start_offset,
            followers,
            pending_isr: None,
            pending_produces: VecDeque::new(),
            lag_check_armed: true,
        });
        out.set_timer(ReplicaTimer::LagCheck, self.config.replica_lag_time_max_ms);
        self.maybe_advance_high_watermark(out);
    }

    /// Leaves the current role: pending produces fail, held fetches are dropped
    /// (their followers learn the new leader from the controller).
    fn resign(&mut self, out: &mut ReplicaEffects<L::Records>) {
        match std::mem::replace(&mut self.role, Role::Offline) {
            Role::Leader(ls) => {
                out.cancel_timer(ReplicaTimer::LagCheck);
                out.cancel_timer(ReplicaTimer::FetchMaxWait);
                for p in ls.pending_produces {
                    reply(out, p.id, Err(ProduceError::NotLeaderOrFollower));
                }
            }
            Role::Follower(_) => out.cancel_timer(ReplicaTimer::FetchBackoff),
            Role::Offline => {}
        }
    }

    fn on_fetch(&mut self, request: FetchRequest, out: &mut ReplicaEffects<L::Records>) {
        let from = request.replica_id;
        let answer = |out: &mut ReplicaEffects<L::Records>, epoch, result| {
            out.send(
                from,
                ReplicationMessage::FetchResponse(FetchResponse {
                    leader_epoch: epoch,
                    result,
                }),
            )
        };
        let epoch = request.leader_epoch;
        let Some(reg) = &self.registration else {
            return answer(out, epoch, FetchResult::NotLeader);
        };
        let Role::Leader(ls) = &self.role else {
            return answer(out, epoch, FetchResult::NotLeader);
        };
        if !ls.followers.contains_key(&from) {
            return answer(out, epoch, FetchResult::NotLeader);
        }
        if epoch < reg.leader_epoch {
            return answer(out, epoch, FetchResult::FencedLeaderEpoch);
        }
        if epoch > reg.leader_epoch {
            return answer(out, epoch, FetchResult::UnknownLeaderEpoch);
        }
        if let Some(diverging) = self.check_divergence(&request) {
            return answer(out, epoch, diverging);
        }
        if request.fetch_offset > self.log.end_offset() {
            let out_of_range = FetchResult::OffsetOutOfRange {
                log_start_offset: self.log.start_offset(),
                log_end_offset: self.log.end_offset(),
            };
            return answer(out, epoch, out_of_range);
        }
        self.record_follower_fetch(&request);
        self.maybe_expand_isr(&request, out);
        self.maybe_advance_high_watermark(out);
        self.complete_produces(out);
        self.answer_or_park(request, out);
        // This fetch may have moved the HW: others learn it now.
        self.answer_parked_fetches(out);
    }

    /// The leader's side of log reconciliation: the follower's log matches
    /// ours up to its fetch offset only if our log ends `last_fetched_epoch`
    /// at or after that offset.
    fn check_divergence(&self, request: &FetchRequest) -> Option<FetchResult<L::Records>> {
        if self.config.bugs.skip_divergence_check {
            return None;
        }
        let high_watermark = self.high_watermark;
        let Some(last_epoch) = request.last_fetched_epoch else {
            // An empty follower log matches any leader log.
            return None;
        };
        match self.log.end_offset_for_epoch(last_epoch) {
            Some(e) if e.epoch == last_epoch && e.end_offset >= request.fetch_offset => None,
            Some(e) => Some(FetchResult::DivergingEpoch {
                epoch: e.epoch,
                end_offset: e.end_offset,
                high_watermark,
            }),
            // The follower claims an epoch newer than ours: we are stale.
            None => Some(FetchResult::UnknownLeaderEpoch),
        }
    }

    /// The progress of a follower the caller has checked is assigned.
    fn follower_mut(&mut self, follower: NodeId) -> &mut FollowerProgress {
        let Role::Leader(ls) = &mut self.role else {
            unreachable!("only a leader tracks followers")
        };
        ls.followers.get_mut(&follower).expect("checked by caller")
    }

    fn record_follower_fetch(&mut self, request: &FetchRequest) {
        let leader_end = self.log.end_offset();
        let assume_fetched = self.config.bugs.hw_over_unfetched_follower;
        let Role::Leader(ls) = &self.role else {
            unreachable!("only a leader records fetches")
        };
        let epoch_start_offset = ls.epoch_start_offset;
        let p = self.follower_mut(request.replica_id);
        let offset = request.fetch_offset;
        // Counting a follower below the epoch start would let the HW cover
        // records it may not share with us.
        if offset >= epoch_start_offset {
            p.end_offset = Some(offset);
        } else if !assume_fetched {
            p.end_offset = None;
        }
        if offset >= leader_end || offset >= p.leader_end_at_last_answer {
            p.caught_up = true;
        }
        p.log_start_offset = request.log_start_offset;
        p.parked = None;
    }

    /// A follower out of the ISR rejoins once it reaches the high watermark
    /// and the start of this leader epoch.
    fn maybe_expand_isr(&mut self, request: &FetchRequest, out: &mut ReplicaEffects<L::Records>) {
        let maximal = self.maximal_isr();
        let Role::Leader(ls) = &self.role else { return };
        let f = request.replica_id;
        if maximal.contains(&f) || ls.pending_isr.is_some() {
            return;
        }
        let reached_hw = request.fetch_offset >= self.high_watermark;
        let reached_epoch_start = request.fetch_offset >= ls.epoch_start_offset
            || self.config.bugs.expand_isr_below_epoch_start;
        if reached_hw && reached_epoch_start {
            let mut new_isr = self.registration.as_ref().expect("leader").isr.clone();
            new_isr.insert(f);
            self.propose_isr(new_isr, out);
        }
    }

    /// Leader timer: propose removing ISR members that have not caught up
    /// since the last check.
    fn on_lag_check(&mut self, out: &mut ReplicaEffects<L::Records>) {
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        let isr = &self.registration.as_ref().expect("leader").isr;
        // An idle follower is not lagging: its fetch waits here at our log
        // end (a fetch is held only there, and answered as soon as the log
        // grows), so it has everything. Counting the held fetch, instead of
        // answering it every fetch max wait to see the follower fetch again,
        // is what makes an idle partition cost nothing: Kafka reaches the
        // same with one fetch session per broker pair (KIP-227).
        let leader_end = self.log.end_offset();
        let lagging: BTreeSet<NodeId> = ls
            .followers
            .iter()
            .filter(|(r, p)| isr.contains(r) && !p.caught_up && !p.waits_at(leader_end))
            .map(|(&r, _)| r)
            .collect();
        for p in ls.followers.values_mut() {
            p.caught_up = false;
        }
        // Quiet: every in-sync follower waits at our log end. Nothing can
        // lag until the log grows or a follower's link breaks, and each of
        // those sets the timer again; until then an idle partition costs
        // no timer (at 10,000 partitions the checks alone were ~1.5 % of a
        // core).
        let quiet = ls.pending_isr.is_none()
            && ls
                .followers
                .iter()
                .filter(|(r, _)| isr.contains(r))
                .all(|(_, p)| p.waits_at(leader_end));
        ls.lag_check_armed = !quiet;
        if !quiet {
            out.set_timer(ReplicaTimer::LagCheck, self.config.replica_lag_time_max_ms);
        }
        if lagging.is_empty() || ls.pending_isr.is_some() {
            return;
        }
        let mut new_isr: BTreeSet<NodeId> = isr.difference(&lagging).copied().collect();
        // A leader is in its own ISR even if a (buggy) controller said otherwise.
        new_isr.insert(self.config.replica_id);
        self.propose_isr(new_isr, out);
    }

    fn propose_isr(&mut self, new_isr: BTreeSet<NodeId>, out: &mut ReplicaEffects<L::Records>) {
        let me = self.config.replica_id;
        assert!(
            new_isr.contains(&me),
            "a leader never proposes an ISR without itself"
        );
        let reg = self.registration.as_mut().expect("leader");
        let request = AlterPartitionRequest {
            leader: me,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            new_isr,
        };
        if self.config.bugs.shrink_isr_before_commit && request.new_isr.is_subset(&reg.isr) {
            reg.isr = request.new_isr.clone();
        }
        let Role::Leader(ls) = &mut self.role else {
            unreachable!()
        };
        ls.pending_isr = Some(request.clone());
        out.send(
            self.config.controller_id,
            ReplicationMessage::AlterPartition(request),
        );
    }

    fn min_isr_met(&self, reg: &PartitionRegistration) -> bool {
        reg.isr.len() >= self.config.min_insync_replicas
            || self.config.bugs.ignore_min_insync_replicas
    }

    /// The leader's own end offset as far as the HW may count it.
    fn own_end_offset_for_hw(&self) -> Offset {
        match self.config.flush_mode {
            FlushMode::Async => self.log.end_offset(),
            FlushMode::Durable => self.log.flushed_offset(),
        }
    }

    /// HW = min end offset over the maximal ISR, counting only followers that
    /// fetched in this epoch past its start, gated by `min.insync.replicas`.
    /// The HW never moves backwards while this replica leads.
    fn maybe_advance_high_watermark(&mut self, out: &mut ReplicaEffects<L::Records>) {
        let Role::Leader(ls) = &self.role else { return };
        let reg = self.registration.as_ref().expect("leader");
        if !self.min_isr_met(reg) {
            return;
        }
        let me = self.config.replica_id;
        let mut candidate = self.own_end_offset_for_hw();
        for member in self.maximal_isr().into_iter().filter(|&m| m != me) {
            match ls.followers.get(&member).and_then(|p| p.end_offset) {
                Some(end) => candidate = candidate.min(end),
                None => return,
            }
        }
        if candidate > self.high_watermark {
            assert!(
                candidate <= self.log.end_offset(),
                "HW never passes the log end"
            );
            self.high_watermark = candidate;
            self.answer_parked_fetches(out);
        }
    }

    /// Answers produces whose condition now holds, in offset order.
    fn complete_produces(&mut self, out: &mut ReplicaEffects<L::Records>) {
        let min_isr_met = self
            .registration
            .as_ref()
            .is_some_and(|r| self.min_isr_met(r));
        let hw = self.high_watermark;
        let leader_durable = self.own_end_offset_for_hw();
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        ls.pending_produces.retain(|p| {
            let result = match p.acks {
                Acks::Leader if leader_durable >= p.end_offset => Ok(p.base_offset),
                Acks::All if hw >= p.end_offset && min_isr_met => Ok(p.base_offset),
                Acks::All if hw >= p.end_offset => Err(ProduceError::NotEnoughReplicasAfterAppend),
                _ => return true,
            };
            out.reply(ProduceReply { id: p.id, result });
            false
        });
    }

    /// Answers a fetch now if there is something to say, else holds it.
    fn answer_or_park(&mut self, request: FetchRequest, out: &mut ReplicaEffects<L::Records>) {
        let hw = self.high_watermark;
        let has_records = request.fetch_offset < self.log.end_offset();
        // A follower behind our log start learns it from the answer.
        let start_known = request.log_start_offset >= self.log.start_offset();
        let p = self.follower_mut(request.replica_id);
        if !has_records && p.high_watermark_sent == hw && start_known {
            p.parked = Some(request);
            return self.arm_fetch_max_wait(out);
        }
        self.answer_fetch(request, out);
    }

    /// Only a follower outside the ISR needs its held fetch answered without
    /// news: its next fetch is what lets it rejoin (`maybe_expand_isr` did
    /// not propose it when it fetched, because another proposal was pending,
    /// or its proposal was refused since, or the controller took it out of
    /// the ISR while its fetch was held). Called wherever one of those can
    /// start. A held fetch of an ISR member keeps it in sync by itself
    /// (`on_lag_check`), so an idle in-sync partition sets no timer.
    fn arm_fetch_max_wait(&self, out: &mut ReplicaEffects<L::Records>) {
        let Role::Leader(ls) = &self.role else {
            return;
        };
        let maximal = self.maximal_isr();
        let outside_held = ls
            .followers
            .iter()
            .any(|(r, f)| f.parked.is_some() && !maximal.contains(r));
        if outside_held {
            out.set_timer(ReplicaTimer::FetchMaxWait, self.config.fetch_max_wait_ms);
        }
    }

    /// The fetch max wait passed: answer every held fetch (nothing new).
    fn release_parked_fetches(&mut self, out: &mut ReplicaEffects<L::Records>) {
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        let held: Vec<FetchRequest> = ls
            .followers
            .values_mut()
            .filter_map(|p| p.parked.take())
            .collect();
        for request in held {
            self.answer_fetch(request, out);
        }
    }

    fn answer_parked_fetches(&mut self, out: &mut ReplicaEffects<L::Records>) {
        let hw = self.high_watermark;
        let leader_end = self.log.end_offset();
        let leader_start = self.log.start_offset();
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        let ready: Vec<FetchRequest> = ls
            .followers
            .values_mut()
            .filter(|p| {
                p.parked.as_ref().is_some_and(|r| {
                    r.fetch_offset < leader_end
                        || p.high_watermark_sent != hw
                        || r.log_start_offset < leader_start
                })
            })
            .filter_map(|p| p.parked.take())
            .collect();
        for request in ready {
            self.answer_fetch(request, out);
        }
    }

    fn answer_fetch(&mut self, request: FetchRequest, out: &mut ReplicaEffects<L::Records>) {
        let hw = self.high_watermark;
        let leader_end = self.log.end_offset();
        let records = self.log.read(
            request.fetch_offset,
            leader_end,
            self.config.fetch_max_bytes,
        );
        let result = match records {
            Ok(records) => FetchResult::Records {
                records,
                high_watermark: hw,
                log_start_offset: self.log.start_offset(),
            },
            Err(_) => FetchResult::OffsetOutOfRange {
                log_start_offset: self.log.start_offset(),
                log_end_offset: leader_end,
            },
        };
        let p = self.follower_mut(request.replica_id);
        p.high_watermark_sent = hw;
        p.leader_end_at_last_answer = leader_end;
        let response = FetchResponse {
            leader_epoch: request.leader_epoch,
            result,
        };
        out.send(
            request.replica_id,
            ReplicationMessage::FetchResponse(response),
        );
    }

    // ----- follower ----------------------------------------------------------

    fn become_follower(&mut self, leader: NodeId, out: &mut ReplicaEffects<L::Records>) {
        if self.config.bugs.truncate_to_high_watermark {
            self.log.truncate_to(self.high_watermark);
        }
        self.high_watermark = self.high_watermark.min(self.log.end_offset());
        self.role = Role::Follower(FollowerState {
            leader,
            fetch_in_flight: false,
            awaiting_flush: false,
        });
        self.maybe_send_fetch(out);
    }

    /// Sends the next fetch — in durable mode only once everything the
    /// fetch offset claims is flushed, since the leader counts it for the HW.
    fn maybe_send_fetch(&mut self, out: &mut ReplicaEffects<L::Records>) {
        let durable = self.config.flush_mode == FlushMode::Durable;
        let end = self.log.end_offset();
        let unflushed = durable && self.log.flushed_offset() < end;
        let Role::Follower(f) = &mut self.role else {
            return;
        };
        debug_assert!(!f.fetch_in_flight);
        if unflushed {
            if !f.awaiting_flush {
                f.awaiting_flush = true;
                out.flush_log(end);
            }
            return;
        }
        f.fetch_in_flight = true;
        let request = FetchRequest {
            replica_id: self.config.replica_id,
            leader_epoch: self.registration.as_ref().expect("follower").leader_epoch,
            fetch_offset: end,
            last_fetched_epoch: self.log.latest_epoch(),
            log_start_offset: self.log.start_offset(),
        };
        out.send(f.leader, ReplicationMessage::Fetch(request));
    }

    fn on_fetch_response(
        &mut self,
        from: NodeId,
        response: FetchResponse<L::Records>,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        let current = self.leader_epoch();
        let Role::Follower(f) = &mut self.role else {
            return;
        };
        if f.leader != from || !f.fetch_in_flight || Some(response.leader_epoch) != current {
            return; // an answer to a fetch from an earlier epoch
        }
        f.fetch_in_flight = false;
        match response.result {
            FetchResult::Records {
                records,
                high_watermark,
                log_start_offset,
            } => self.on_fetched_records(records, high_watermark, log_start_offset, out),
            FetchResult::DivergingEpoch {
                epoch, end_offset, ..
            } => self.on_diverging_epoch(epoch, end_offset, out),
            FetchResult::OffsetOutOfRange {
                log_start_offset,
                log_end_offset,
            } => self.on_offset_out_of_range(log_start_offset, log_end_offset, out),
            FetchResult::FencedLeaderEpoch
            | FetchResult::UnknownLeaderEpoch
            | FetchResult::NotLeader => {
                out.set_timer(ReplicaTimer::FetchBackoff, self.config.fetch_backoff_ms);
            }
        }
    }

    fn on_fetched_records(
        &mut self,
        records: L::Records,
        leader_high_watermark: Offset,
        leader_start_offset: Offset,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        self.restart_below_a_straddling_batch(&records);
        if !records.is_empty() {
            if let Err(_e) = self.log.append_as_follower(records) {
                // A response that does not fit our log (e.g. reordered by a
                // buggy peer): drop it and fetch again after a pause.
                out.set_timer(ReplicaTimer::FetchBackoff, self.config.fetch_backoff_ms);
                return;
            }
        }
        // Never below our own start (Kafka's `updateHighWatermark`): a new
        // leader may not know yet of a start its predecessor moved.
        self.high_watermark = leader_high_watermark
            .min(self.log.end_offset())
            .max(self.log.start_offset());
        // Kafka's `maybeIncrementLogStartOffset` on the follower: what the
        // leader deleted goes here too, but never above our own high
        // watermark (only committed records are ever deleted).
        let start = leader_start_offset.min(self.high_watermark);
        if start > self.log.start_offset() {
            self.log.advance_start_offset(start);
        }
        self.maybe_send_fetch(out);
    }

    /// An empty log whose start lies inside the leader's first batch (the
    /// leader's start is inside a batch, and this follower restarted there,
    /// `on_offset_out_of_range`) cannot append the batch, which begins
    /// below its end: it restarts at the batch's base instead (Kafka's
    /// `appendRecordsToFollowerOrFutureReplica`), and moves its start up to
    /// the leader's again once the batch is in (`on_fetched_records`).
    fn restart_below_a_straddling_batch(&mut self, records: &L::Records) {
        let end = self.log.end_offset();
        let Some(base) = records.first_offset() else {
            return;
        };
        if self.log.start_offset() == end && base < end {
            self.log.truncate_fully_and_start_at(base);
            self.high_watermark = self.high_watermark.min(base);
        }
    }

    /// KIP-279 truncation: cut the log at the end of the last epoch both logs
    /// share, then fetch again (which may find an earlier divergence).
    fn on_diverging_epoch(
        &mut self,
        leader_epoch: LeaderEpoch,
        leader_end_offset: Offset,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        let target = match self.log.end_offset_for_epoch(leader_epoch) {
            None => self.log.start_offset(),
            // We never saw the leader's epoch: cut back to our end of the
            // largest epoch before it and ask again.
            Some(own) if own.epoch != leader_epoch => own.end_offset,
            Some(own) => own.end_offset.min(leader_end_offset),
        };
        self.truncate(target.min(self.log.end_offset()));
        self.maybe_send_fetch(out);
    }

    /// Kafka's `handleOutOfRangeError`. Our log ends below the leader's
    /// start: retention there deleted what we lack (we were away longer than
    /// the topic keeps data), so no fetch can continue our log. Start over
    /// empty at the leader's start offset (`truncateFullyAndStartAt`) and
    /// fetch from there at once. Nothing is lost that the leader still has:
    /// retention deletes only below the high watermark, so everything below
    /// its start was committed, and the HW moves to the new start as
    /// Kafka's `updateLogStartOffset` does. Otherwise only an unclean
    /// leader can be behind us: follow it, after the backoff.
    fn on_offset_out_of_range(
        &mut self,
        leader_start_offset: Offset,
        leader_end_offset: Offset,
        out: &mut ReplicaEffects<L::Records>,
    ) {
        if self.log.end_offset() < leader_start_offset {
            self.log.truncate_fully_and_start_at(leader_start_offset);
            self.high_watermark = leader_start_offset;
            return self.maybe_send_fetch(out);
        }
        if leader_end_offset < self.log.end_offset() {
            self.truncate(leader_end_offset);
        }
        out.set_timer(ReplicaTimer::FetchBackoff, self.config.fetch_backoff_ms);
    }

    fn truncate(&mut self, end_offset: Offset) {
        self.log.truncate_to(end_offset);
        self.high_watermark = self.high_watermark.min(self.log.end_offset());
    }
}

/// Why a consumer fetch failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FetchError {
    NotLeaderOrFollower,
    OffsetOutOfRange,
    Log(LogError),
}

fn reply<R>(out: &mut ReplicaEffects<R>, id: RequestId, result: Result<Offset, ProduceError>) {
    out.reply(ProduceReply { id, result });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Effect;
    use crate::log::{MemBatch, MemLog, MemRecords};

    type R = MemRecords<u8>;
    const CONTROLLER: NodeId = 9;

    fn replica(id: NodeId, min_isr: usize, mode: FlushMode) -> Replica<MemLog<u8>> {
        let mut c = ReplicaConfig::new(id, CONTROLLER);
        c.min_insync_replicas = min_isr;
        c.flush_mode = mode;
        Replica::recover(c, MemLog::new())
    }

    fn registration(isr: &[NodeId]) -> PartitionRegistration {
        PartitionRegistration {
            replicas: vec![0, 1, 2],
            isr: isr.iter().copied().collect(),
            leader: Some(0),
            leader_epoch: 1,
            partition_epoch: 1,
        }
    }

    fn produce(r: &mut Replica<MemLog<u8>>, id: u64, acks: Acks) -> Vec<ProduceReply> {
        let mut out = ReplicaEffects::<R>::new();
        let records = MemRecords(vec![MemBatch::new(1, id as u8)]);
        r.on_produce(ProduceRequest { id, records, acks }, &mut out);
        replies(&mut out)
    }

    fn replies(out: &mut ReplicaEffects<R>) -> Vec<ProduceReply> {
        out.drain()
            .filter_map(|e| match e {
                Effect::Reply(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn leader(isr: &[NodeId], min_isr: usize, mode: FlushMode) -> Replica<MemLog<u8>> {
        let mut r = replica(0, min_isr, mode);
        let mut out = ReplicaEffects::<R>::new();
        r.on_message(
            CONTROLLER,
            ReplicationMessage::PartitionState(registration(isr)),
            &mut out,
        );
        assert!(r.is_leader());
        r
    }

    fn fetch(r: &mut Replica<MemLog<u8>>, from: NodeId, offset: Offset) -> ReplicaEffects<R> {
        let mut out = ReplicaEffects::<R>::new();
        let last_fetched_epoch = (offset > 0).then_some(1);
        let request = FetchRequest {
            replica_id: from,
            leader_epoch: 1,
            fetch_offset: offset,
            last_fetched_epoch,
            log_start_offset: 0,
        };
        r.on_message(from, ReplicationMessage::Fetch(request), &mut out);
        out
    }

    fn proposals(out: &mut ReplicaEffects<R>) -> Vec<BTreeSet<NodeId>> {
        out.drain()
            .filter_map(|e| match e {
                Effect::Send {
                    message: ReplicationMessage::AlterPartition(a),
                    ..
                } => Some(a.new_isr),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_idle_follower_stays_in_the_isr_while_its_fetch_waits_and_costs_nothing() {
        let mut r = leader(&[0, 1, 2], 1, FlushMode::Async);
        let mut out = fetch(&mut r, 1, 0);
        assert_eq!(
            out.drain().count(),
            0,
            "nothing to send and no timer: the fetch waits for news"
        );
        assert!(fetch(&mut r, 2, 0).is_empty());
        let mut out = ReplicaEffects::<R>::new();
        for _ in 0..3 {
            r.on_timer(ReplicaTimer::LagCheck, &mut out);
            assert!(
                proposals(&mut out).is_empty(),
                "both wait at the log end: neither lags, however long it is idle"
            );
        }
        // A write answers both held fetches; follower 1 fetches again, 2 is gone.
        produce(&mut r, 1, Acks::Leader);
        fetch(&mut r, 1, 1);
        r.on_timer(ReplicaTimer::LagCheck, &mut out);
        assert_eq!(
            proposals(&mut out),
            vec![BTreeSet::from([0, 1])],
            "only the follower that did not fetch what was written leaves"
        );
    }

    fn sets_lag_check(out: &ReplicaEffects<R>) -> bool {
        out.iter().any(|e| {
            matches!(
                e,
                Effect::SetTimer {
                    timer: ReplicaTimer::LagCheck,
                    ..
                }
            )
        })
    }

    #[test]
    fn a_quiet_partitions_lag_check_lapses_until_the_log_grows_or_a_link_breaks() {
        let mut r = leader(&[0, 1, 2], 1, FlushMode::Async);
        produce(&mut r, 1, Acks::Leader);
        fetch(&mut r, 1, 1).drain().for_each(drop);
        // Follower 2 fetched, but behind: answered, not held.
        fetch(&mut r, 2, 0).drain().for_each(drop);
        let mut out = ReplicaEffects::<R>::new();
        r.on_timer(ReplicaTimer::LagCheck, &mut out);
        assert!(
            sets_lag_check(&out) && proposals(&mut out).is_empty(),
            "follower 2 is in sync but not held at the log end: checked again"
        );
        out.drain().for_each(drop);
        // Each fetches again until told nothing new (the HW moved meanwhile).
        for _ in 0..2 {
            fetch(&mut r, 2, 1).drain().for_each(drop);
            fetch(&mut r, 1, 1).drain().for_each(drop);
        }
        r.on_timer(ReplicaTimer::LagCheck, &mut out);
        assert!(
            !sets_lag_check(&out) && proposals(&mut out).is_empty(),
            "both wait at the log end: no timer, no shrink"
        );
        // A write sets it again, once.
        let mut out = ReplicaEffects::<R>::new();
        let records = MemRecords(vec![MemBatch::new(1, 2u8)]);
        r.on_produce(
            ProduceRequest {
                id: 2,
                records,
                acks: Acks::Leader,
            },
            &mut out,
        );
        assert!(sets_lag_check(&out));
        let mut out = ReplicaEffects::<R>::new();
        let records = MemRecords(vec![MemBatch::new(1, 3u8)]);
        r.on_produce(
            ProduceRequest {
                id: 3,
                records,
                acks: Acks::Leader,
            },
            &mut out,
        );
        assert!(!sets_lag_check(&out), "already set");
        // Both catch up and wait again: quiet; then follower 2's link breaks.
        for _ in 0..2 {
            fetch(&mut r, 1, 3).drain().for_each(drop);
            fetch(&mut r, 2, 3).drain().for_each(drop);
        }
        let mut out = ReplicaEffects::<R>::new();
        r.on_timer(ReplicaTimer::LagCheck, &mut out);
        assert!(!sets_lag_check(&out));
        r.on_peer_disconnected(2, &mut out);
        assert!(
            sets_lag_check(&out),
            "a dropped held fetch is checked again"
        );
        out.drain().for_each(drop);
        r.on_timer(ReplicaTimer::LagCheck, &mut out);
        r.on_timer(ReplicaTimer::LagCheck, &mut out);
        assert_eq!(
            proposals(&mut out),
            vec![BTreeSet::from([0, 1])],
            "the follower whose link broke leaves the ISR"
        );
    }

    #[test]
    fn a_follower_outside_the_isr_is_answered_after_the_fetch_max_wait_and_rejoins() {
        let mut r = leader(&[0], 1, FlushMode::Async);
        let mut out = fetch(&mut r, 1, 0);
        assert_eq!(proposals(&mut out), vec![BTreeSet::from([0, 1])]);
        // Follower 2 reaches the HW while that proposal is pending: it
        // cannot be proposed now, so its fetch is held for the max wait only.
        let out = fetch(&mut r, 2, 0);
        assert!(out.iter().any(|e| matches!(
            e,
            Effect::SetTimer {
                timer: ReplicaTimer::FetchMaxWait,
                ..
            }
        )));
        let mut out = ReplicaEffects::<R>::new();
        r.on_message(
            CONTROLLER,
            ReplicationMessage::AlterPartitionResponse {
                request: AlterPartitionRequest {
                    leader: 0,
                    leader_epoch: 1,
                    partition_epoch: 1,
                    new_isr: BTreeSet::from([0, 1]),
                },
                result: Ok(PartitionRegistration {
                    partition_epoch: 2,
                    ..registration(&[0, 1])
                }),
            },
            &mut out,
        );
        r.on_timer(ReplicaTimer::FetchMaxWait, &mut out);
        let answered = out.drain().any(|e| {
            matches!(
                e,
                Effect::Send {
                    to: 2,
                    message: ReplicationMessage::FetchResponse(FetchResponse {
                        result: FetchResult::Records { .. },
                        ..
                    })
                }
            )
        });
        assert!(
            answered,
            "the held fetch of the outside follower is answered"
        );
        let mut out = fetch(&mut r, 2, 0);
        assert_eq!(
            proposals(&mut out),
            vec![BTreeSet::from([0, 1, 2])],
            "its next fetch brings it back"
        );
    }

    #[test]
    fn a_broken_link_makes_the_follower_fetch_again_after_the_backoff() {
        let mut r = replica(1, 1, FlushMode::Async);
        let mut out = ReplicaEffects::<R>::new();
        r.on_message(
            CONTROLLER,
            ReplicationMessage::PartitionState(registration(&[0, 1, 2])),
            &mut out,
        );
        let fetches = |out: &mut ReplicaEffects<R>| {
            out.drain()
                .filter(|e| {
                    matches!(
                        e,
                        Effect::Send {
                            message: ReplicationMessage::Fetch(_),
                            ..
                        }
                    )
                })
                .count()
        };
        assert_eq!(fetches(&mut out), 1, "the follower fetches from the leader");
        r.on_timer(ReplicaTimer::FetchBackoff, &mut out);
        assert_eq!(fetches(&mut out), 0, "one fetch in flight at a time");
        r.on_peer_disconnected(2, &mut out);
        assert!(out.is_empty(), "another peer's link does not matter");
        r.on_peer_disconnected(0, &mut out);
        let backoff = out.drain().any(|e| {
            matches!(
                e,
                Effect::SetTimer {
                    timer: ReplicaTimer::FetchBackoff,
                    ..
                }
            )
        });
        assert!(backoff);
        r.on_timer(ReplicaTimer::FetchBackoff, &mut out);
        assert_eq!(fetches(&mut out), 1, "the lost fetch is sent again");
    }

    #[test]
    fn a_duplicate_is_acknowledged_with_the_original_once_committed() {
        let mut r = leader(&[0, 1, 2], 1, FlushMode::Async);
        assert!(produce(&mut r, 1, Acks::All).is_empty());
        let mut out = ReplicaEffects::<R>::new();
        r.on_duplicate_produce(2, 0, 1, Acks::All, &mut out);
        assert!(replies(&mut out).is_empty(), "not committed yet");
        assert_eq!(r.log().end_offset(), 1, "nothing appended");
        fetch(&mut r, 1, 1);
        let mut out = fetch(&mut r, 2, 1);
        let got = replies(&mut out);
        assert_eq!(
            got,
            vec![
                ProduceReply {
                    id: 1,
                    result: Ok(0)
                },
                ProduceReply {
                    id: 2,
                    result: Ok(0)
                }
            ]
        );
    }

    #[test]
    fn acks_zero_gets_no_reply_and_acks_one_is_immediate_in_async_mode() {
        let mut r = leader(&[0, 1, 2], 1, FlushMode::Async);
        assert!(produce(&mut r, 1, Acks::None).is_empty());
        assert_eq!(
            produce(&mut r, 2, Acks::Leader),
            vec![ProduceReply {
                id: 2,
                result: Ok(1)
            }]
        );
    }

    #[test]
    fn acks_one_waits_for_the_flush_in_durable_mode() {
        let mut r = leader(&[0], 1, FlushMode::Durable);
        assert!(produce(&mut r, 1, Acks::Leader).is_empty());
        let flushed = r.log_mut().flush().unwrap();
        let mut out = ReplicaEffects::<R>::new();
        r.on_flushed(flushed, &mut out);
        assert_eq!(
            replies(&mut out),
            vec![ProduceReply {
                id: 1,
                result: Ok(0)
            }]
        );
    }

    #[test]
    fn acks_all_below_min_isr_is_refused_without_appending() {
        let mut r = leader(&[0], 2, FlushMode::Async);
        let reply = produce(&mut r, 1, Acks::All);
        assert_eq!(
            reply,
            vec![ProduceReply {
                id: 1,
                result: Err(ProduceError::NotEnoughReplicas)
            }]
        );
        assert_eq!(r.log().end_offset(), 0);
    }

    /// A peer cannot forge another follower's progress (a fetch naming
    /// replica 2 sent by 1) nor the controller's partition state.
    #[test]
    fn only_the_sender_speaks_for_itself_and_only_the_controller_sets_state() {
        let mut r = leader(&[0, 1, 2], 2, FlushMode::Async);
        assert!(produce(&mut r, 1, Acks::All).is_empty());
        let _ = fetch(&mut r, 1, 1);
        let mut out = ReplicaEffects::<R>::new();
        let forged = FetchRequest {
            replica_id: 2,
            leader_epoch: 1,
            fetch_offset: 1,
            last_fetched_epoch: Some(1),
            log_start_offset: 0,
        };
        r.on_message(1, ReplicationMessage::Fetch(forged), &mut out);
        assert!(
            out.is_empty(),
            "a fetch for replica 2 from node 1 is ignored"
        );
        assert_eq!(r.high_watermark(), 0, "replica 2 has not fetched");
        let mut demoted = registration(&[0, 1, 2]);
        demoted.leader = Some(1);
        demoted.leader_epoch = 2;
        demoted.partition_epoch = 2;
        r.on_message(1, ReplicationMessage::PartitionState(demoted), &mut out);
        assert!(r.is_leader(), "partition state from a peer is ignored");
    }

    #[test]
    fn acks_all_waits_for_every_isr_member() {
        let mut r = leader(&[0, 1, 2], 2, FlushMode::Async);
        assert!(produce(&mut r, 1, Acks::All).is_empty());
        assert!(
            replies(&mut fetch(&mut r, 1, 1)).is_empty(),
            "follower 2 has not fetched"
        );
        assert_eq!(r.high_watermark(), 0);
        let mut out = fetch(&mut r, 2, 1);
        assert_eq!(
            replies(&mut out),
            vec![ProduceReply {
                id: 1,
                result: Ok(0)
            }]
        );
        assert_eq!(r.high_watermark(), 1);
    }

    #[test]
    fn a_follower_is_answered_with_a_diverging_epoch() {
        let mut r = leader(&[0, 1, 2], 1, FlushMode::Async);
        produce(&mut r, 1, Acks::None);
        let mut out = ReplicaEffects::<R>::new();
        let request = FetchRequest {
            replica_id: 1,
            leader_epoch: 1,
            fetch_offset: 3,
            last_fetched_epoch: Some(0),
            log_start_offset: 0,
        };
        r.on_message(1, ReplicationMessage::Fetch(request), &mut out);
        let sent: Vec<_> = out.drain().collect();
        assert!(
            sent.iter().any(|e| matches!(
                e,
                Effect::Send {
                    to: 1,
                    message: ReplicationMessage::FetchResponse(FetchResponse {
                        result: FetchResult::DivergingEpoch {
                            epoch: 0,
                            end_offset: 0,
                            ..
                        },
                        ..
                    })
                }
            )),
            "{sent:?}"
        );
    }

    /// Found by the kill -9 walk-through: a restarted broker fetched before
    /// it was unfenced, its expansion was refused, and with no timer its
    /// held fetch never came back to try again.
    #[test]
    fn a_refused_expansion_arms_the_fetch_max_wait_for_the_held_follower() {
        let mut r = leader(&[0, 2], 1, FlushMode::Async);
        let mut out = fetch(&mut r, 1, 0);
        let proposed = proposals(&mut out);
        assert_eq!(proposed, vec![BTreeSet::from([0, 1, 2])]);
        r.on_message(
            CONTROLLER,
            ReplicationMessage::AlterPartitionResponse {
                request: AlterPartitionRequest {
                    leader: 0,
                    leader_epoch: 1,
                    partition_epoch: 1,
                    new_isr: BTreeSet::from([0, 1, 2]),
                },
                result: Err(AlterPartitionError::IneligibleReplica),
            },
            &mut out,
        );
        assert!(
            out.iter().any(|e| matches!(
                e,
                Effect::SetTimer {
                    timer: ReplicaTimer::FetchMaxWait,
                    ..
                }
            )),
            "follower 1 waits outside the ISR: its fetch must come back"
        );
    }

    #[test]
    fn a_follower_behind_the_leaders_log_start_restarts_its_log_there() {
        let mut f = replica(1, 1, FlushMode::Async);
        let mut out = ReplicaEffects::<R>::new();
        f.on_message(
            CONTROLLER,
            ReplicationMessage::PartitionState(registration(&[0, 1, 2])),
            &mut out,
        );
        out.drain().for_each(drop);
        // Retention on the leader deleted offsets 0..5, which we never had.
        let response = |start, end| {
            ReplicationMessage::FetchResponse(FetchResponse {
                leader_epoch: 1,
                result: FetchResult::OffsetOutOfRange {
                    log_start_offset: start,
                    log_end_offset: end,
                },
            })
        };
        f.on_message(0, response(5, 9), &mut out);
        assert_eq!((f.log().start_offset(), f.log().end_offset()), (5, 5));
        assert_eq!(
            f.high_watermark(),
            5,
            "all below the leader's start was committed"
        );
        let fetches: Vec<FetchRequest> = out
            .drain()
            .filter_map(|e| match e {
                Effect::Send {
                    to: 0,
                    message: ReplicationMessage::Fetch(r),
                } => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(
            fetches,
            vec![FetchRequest {
                replica_id: 1,
                leader_epoch: 1,
                fetch_offset: 5,
                last_fetched_epoch: None,
                log_start_offset: 5,
            }],
            "it fetches again at once, from the leader's start"
        );
        // A leader whose start we have reached is out of range only above
        // us (an unclean leader): nothing restarts then.
        f.on_message(0, response(5, 9), &mut out);
        assert_eq!(f.log().start_offset(), 5);
    }

    #[test]
    fn delete_records_moves_the_start_up_to_the_high_watermark_only() {
        let mut r = leader(&[0, 1], 1, FlushMode::Async);
        for id in 1..=4 {
            produce(&mut r, id, Acks::Leader);
        }
        fetch(&mut r, 1, 3).drain().for_each(drop);
        assert_eq!(r.high_watermark(), 3);
        let mut out = ReplicaEffects::<R>::new();
        assert_eq!(
            r.delete_records(Some(4), &mut out),
            Err(DeleteRecordsError::OffsetOutOfRange),
            "offset 3 is not committed yet"
        );
        assert_eq!(r.delete_records(Some(2), &mut out), Ok(2));
        assert_eq!(r.log().start_offset(), 2);
        assert_eq!(
            r.read_committed(1, 100).unwrap_err(),
            FetchError::OffsetOutOfRange
        );
        assert_eq!(
            r.delete_records(Some(1), &mut out),
            Ok(2),
            "the start never goes back"
        );
        assert_eq!(r.low_watermark(), Some(0), "follower 1 still holds 0..2");
        let request = FetchRequest {
            replica_id: 1,
            leader_epoch: 1,
            fetch_offset: 4,
            last_fetched_epoch: Some(1),
            log_start_offset: 2,
        };
        r.on_message(1, ReplicationMessage::Fetch(request), &mut out);
        assert_eq!(r.low_watermark(), Some(2));
        assert_eq!(
            r.delete_records(None, &mut out),
            Ok(4),
            "-1 means the high watermark"
        );
        let mut follower = replica(1, 1, FlushMode::Async);
        assert_eq!(
            follower.delete_records(Some(0), &mut out),
            Err(DeleteRecordsError::NotLeaderOrFollower)
        );
    }

    #[test]
    fn a_follower_moves_its_start_to_the_leaders_but_not_past_its_own_high_watermark() {
        let mut f = replica(1, 1, FlushMode::Async);
        let mut out = ReplicaEffects::<R>::new();
        f.on_message(
            CONTROLLER,
            ReplicationMessage::PartitionState(registration(&[0, 1, 2])),
            &mut out,
        );
        out.drain().for_each(drop);
        let batches = (0..4)
            .map(|o| MemBatch {
                base_offset: o,
                leader_epoch: 1,
                record_count: 1,
                payload: o as u8,
            })
            .collect();
        let response = ReplicationMessage::FetchResponse(FetchResponse {
            leader_epoch: 1,
            result: FetchResult::Records {
                records: MemRecords(batches),
                high_watermark: 3,
                log_start_offset: 4,
            },
        });
        f.on_message(0, response, &mut out);
        assert_eq!(f.high_watermark(), 3);
        assert_eq!(
            (f.log().start_offset(), f.log().end_offset()),
            (3, 4),
            "the uncommitted offset 3 stays until the HW covers it"
        );
        let reported = out.drain().find_map(|e| match e {
            Effect::Send {
                message: ReplicationMessage::Fetch(r),
                ..
            } => Some(r.log_start_offset),
            _ => None,
        });
        assert_eq!(reported, Some(3), "the next fetch tells the leader");
    }

    /// Found by review: a follower restarted empty at a leader's start
    /// that lies inside a batch is sent that whole batch, which begins
    /// below its end; it restarts at the batch's base and catches up.
    #[test]
    fn a_follower_restarted_inside_a_batch_takes_the_whole_batch() {
        let mut f = replica(1, 1, FlushMode::Async);
        let mut out = ReplicaEffects::<R>::new();
        f.on_message(
            CONTROLLER,
            ReplicationMessage::PartitionState(registration(&[0, 1, 2])),
            &mut out,
        );
        let respond = |f: &mut Replica<MemLog<u8>>, result| {
            let mut out = ReplicaEffects::<R>::new();
            let response = FetchResponse {
                leader_epoch: 1,
                result,
            };
            f.on_message(0, ReplicationMessage::FetchResponse(response), &mut out);
        };
        respond(
            &mut f,
            FetchResult::OffsetOutOfRange {
                log_start_offset: 1,
                log_end_offset: 3,
            },
        );
        assert_eq!((f.log().start_offset(), f.log().end_offset()), (1, 1));
        let batch = MemBatch {
            base_offset: 0,
            leader_epoch: 1,
            record_count: 3,
            payload: 9u8,
        };
        respond(
            &mut f,
            FetchResult::Records {
                records: MemRecords(vec![batch]),
                high_watermark: 3,
                log_start_offset: 1,
            },
        );
        assert_eq!(
            (
                f.log().start_offset(),
                f.log().end_offset(),
                f.high_watermark()
            ),
            (1, 3, 3),
            "the batch is in, and the start is the leader's again"
        );
    }

    #[test]
    fn non_leader_refuses_produce() {
        let mut r = replica(1, 1, FlushMode::Async);
        let reply = produce(&mut r, 7, Acks::All);
        assert_eq!(
            reply,
            vec![ProduceReply {
                id: 7,
                result: Err(ProduceError::NotLeaderOrFollower)
            }]
        );
    }

    #[test]
    fn consumers_never_read_past_the_high_watermark() {
        let mut r = leader(&[0, 1], 1, FlushMode::Async);
        produce(&mut r, 1, Acks::None);
        assert!(r.read_committed(0, 100).unwrap().0.is_empty());
        fetch(&mut r, 1, 1);
        assert_eq!(r.read_committed(0, 100).unwrap().0.len(), 1);
        assert_eq!(r.read_committed(2, 100), Err(FetchError::OffsetOutOfRange));
    }
}
