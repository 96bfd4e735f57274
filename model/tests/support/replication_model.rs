//! The stateright model of one partition replicated on three brokers.
//!
//! The replicas are the real [`Replica`] state machine over [`MemLog`]. The
//! controller is an abstract actor that never crashes (it stands for the
//! replicated coordinator quorum, checked on its own) and applies the real
//! partition rules of `runnel_model::partition`. The network is ordered per
//! link (TCP); a crashed broker loses the messages sent to it. A client
//! produces acks=all batches to whichever replica believes it leads, and a
//! consumer reads below every leader's high watermark.

use runnel_model::controller::{
    Controller, ControllerConfig, ControllerError, ControllerRequest, MetadataImage,
};
use runnel_model::core::{BrokerEpoch, Effect, NodeId, Offset};
use runnel_model::log::{MemBatch, MemLog, MemRecords, PartitionLog};
use runnel_model::partition::{ElectionPolicy, PartitionRegistration};
use runnel_model::replication::{
    Acks, FlushMode, ProduceRequest, Replica, ReplicaConfig, ReplicaEffects, ReplicaTimer,
    ReplicationBugs, ReplicationMessage, Role,
};
use stateright::{Model, Property};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub const CONTROLLER: NodeId = 100;
const TOPIC: &str = "t";
type Log = MemLog<u8>;
type Msg = ReplicationMessage<MemRecords<u8>>;

/// What the model explores; every field bounds the state space.
#[derive(Clone, Debug)]
pub struct ReplicationModel {
    pub replicas: u32,
    pub min_insync_replicas: usize,
    pub flush_mode: FlushMode,
    /// Produce requests (each one batch holding one distinct value).
    pub values_max: u8,
    /// Crash events (one broker, or all at once), each followed by a restart.
    pub crashes_max: u8,
    /// Allow every broker to crash at once.
    pub crash_all: bool,
    /// A crash is a power loss (the unflushed tail is gone). Otherwise it is
    /// a process crash (`kill -9`): the OS keeps the page cache, so the log
    /// survives whole and only volatile state is lost.
    pub power_loss: bool,
    /// ISR changes are bounded so shrink/expand cycles end.
    pub partition_epoch_max: u32,
    pub policy: ElectionPolicy,
    pub bugs: ReplicationBugs,
    /// Record the events behind the `Sometimes` properties. Off for deep
    /// safety runs: the flags multiply otherwise identical states.
    pub track_examples: bool,
    /// Firings of the leader's fetch max wait timer. It only re-answers a
    /// held fetch with what the follower already knows (no records, the HW
    /// it was told), so a small budget covers the re-fetch it causes.
    pub fetch_waits_max: u8,
    /// DeleteRecords requests (each deletes up to the leader's high
    /// watermark); 0 in the runs that do not check deletion.
    pub deletes_max: u8,
}

impl Default for ReplicationModel {
    fn default() -> Self {
        Self {
            replicas: 3,
            min_insync_replicas: 2,
            flush_mode: FlushMode::Durable,
            values_max: 2,
            crashes_max: 1,
            crash_all: true,
            power_loss: true,
            partition_epoch_max: 5,
            policy: ElectionPolicy::default(),
            bugs: ReplicationBugs::default(),
            track_examples: true,
            fetch_waits_max: 1,
            deletes_max: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub replicas: Vec<Replica<Log>>,
    pub up: Vec<bool>,
    pub timers: Vec<BTreeSet<ReplicaTimer>>,
    pub flush_requested: Vec<bool>,
    pub fetch_waits: u8,
    /// The controller's metadata (the real controller's image).
    pub image: MetadataImage,
    /// The partition's registration in `image`, kept at hand.
    pub registration: PartitionRegistration,
    /// Each live broker's epoch, stamped on what it sends the controller.
    pub broker_epochs: Vec<BrokerEpoch>,
    pub net: BTreeMap<(NodeId, NodeId), VecDeque<(Msg, BrokerEpoch)>>,
    pub values_produced: u8,
    pub crashes: u8,
    pub deletes: u8,
    /// History: acks=all acknowledged (offset → value).
    pub acked: BTreeMap<Offset, u8>,
    /// History: what consumers read from any leader below its HW.
    pub read: BTreeMap<Offset, u8>,
    pub violated: Violations,
    pub reached: Reached,
}

/// Safety conditions that need history, latched when first broken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Violations {
    pub stale_isr_change_accepted: bool,
    pub consistent_reads: bool,
    pub min_isr_gate: bool,
    pub epoch_monotonic: bool,
}

/// Interesting events, for the `Sometimes` properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reached {
    pub leader_change: bool,
    pub truncation: bool,
    pub isr_shrunk: bool,
    pub isr_reexpanded: bool,
    /// A follower moved its log start after its leader's.
    pub follower_start_moved: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Deliver {
        from: NodeId,
        to: NodeId,
    },
    Timer {
        node: NodeId,
        timer: ReplicaTimer,
    },
    Flush {
        node: NodeId,
    },
    Produce {
        node: NodeId,
    },
    /// DeleteRecords to the leader's high watermark (Kafka's offset -1).
    DeleteRecords {
        node: NodeId,
    },
    Crash {
        node: NodeId,
    },
    CrashAll,
    /// The controller's session for a crashed broker expires.
    Fence {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
}

impl ReplicationModel {
    fn replica_config(&self, id: NodeId) -> ReplicaConfig {
        let mut c = ReplicaConfig::new(id, CONTROLLER);
        c.min_insync_replicas = self.min_insync_replicas;
        c.flush_mode = self.flush_mode;
        c.bugs = self.bugs;
        c
    }

    fn ids(&self) -> std::ops::Range<NodeId> {
        0..self.replicas
    }

    /// Delivers `effects` emitted by `node`.
    fn apply_effects(
        &self,
        s: &mut State,
        node: NodeId,
        effects: &mut ReplicaEffects<MemRecords<u8>>,
    ) {
        for effect in effects.drain() {
            match effect {
                Effect::Send { to, message } => {
                    let epoch = s.broker_epochs[node as usize];
                    send(s, node, to, message, epoch)
                }
                // Without a budget the fetch max wait never fires: not
                // tracking it keeps otherwise equal states equal.
                Effect::SetTimer {
                    timer: ReplicaTimer::FetchMaxWait,
                    ..
                } if self.fetch_waits_max == 0 => {}
                Effect::SetTimer { timer, .. } => {
                    s.timers[node as usize].insert(timer);
                }
                Effect::CancelTimer { timer } => {
                    s.timers[node as usize].remove(&timer);
                }
                Effect::FlushLog { .. } => s.flush_requested[node as usize] = true,
                Effect::Persist(()) => {}
                Effect::Reply(reply) => {
                    if let Ok(offset) = reply.result {
                        let value = reply.id as u8;
                        self.check_min_isr_gate(s, offset, value);
                        s.acked.insert(offset, value);
                    }
                }
            }
        }
    }

    /// MinIsrGate: an acks=all ack means the record is on at least
    /// `min.insync.replicas` replicas (durably, in durable mode).
    fn check_min_isr_gate(&self, s: &mut State, offset: Offset, value: u8) {
        let copies = s
            .replicas
            .iter()
            .filter(|r| {
                let durable_end = match self.flush_mode {
                    FlushMode::Durable => r.log().flushed_offset(),
                    FlushMode::Async => r.log().end_offset(),
                };
                offset < durable_end && value_at(r.log(), offset) == Some(value)
            })
            .count();
        if copies < self.min_insync_replicas {
            s.violated.min_isr_gate = true;
        }
    }

    fn controller(&self) -> Controller {
        Controller::new(ControllerConfig {
            num_partitions: 1,
            default_replication_factor: self.replicas,
            policy: self.policy,
            bug_ignore_broker_epoch: false,
            bug_decide_resent_requests: false,
        })
    }

    /// Runs a request through the real controller and applies its records.
    fn control(&self, s: &mut State, request: ControllerRequest) -> Result<(), ControllerError> {
        let records = self.controller().decide(&s.image, &request)?;
        for r in &records {
            s.image.apply(r);
        }
        s.registration = s.image.partition(TOPIC, 0).expect("the partition").clone();
        Ok(())
    }

    fn controller_receive(
        &self,
        s: &mut State,
        from: NodeId,
        message: Msg,
        broker_epoch: BrokerEpoch,
    ) {
        let ReplicationMessage::AlterPartition(request) = message else {
            return;
        };
        let before = s.registration.clone();
        let alter = ControllerRequest::AlterPartition {
            topic: TOPIC.into(),
            partition: 0,
            broker_epoch,
            request: request.clone(),
        };
        let result = match self.control(s, alter) {
            Ok(()) => Ok(s.registration.clone()),
            Err(ControllerError::AlterPartition(e)) => Err(e),
            Err(e) => unreachable!("AlterPartition fails only with its own errors: {e:?}"),
        };
        if result.is_ok() && request.partition_epoch != before.partition_epoch {
            s.violated.stale_isr_change_accepted = true;
        }
        if result.is_ok() && self.track_examples {
            let (before, after) = (&before.isr, &s.registration.isr);
            if after.is_subset(before) && after != before {
                s.reached.isr_shrunk = true;
            }
            if after.is_superset(before) && after != before && s.reached.isr_shrunk {
                s.reached.isr_reexpanded = true;
            }
        }
        let response = ReplicationMessage::AlterPartitionResponse { request, result };
        send(s, CONTROLLER, from, response, 0);
    }

    /// The controller publishes a changed registration. Followers ignore an
    /// ISR-only change (same leader epoch), so the model sends that to the
    /// leader alone; a new leader epoch goes to every live replica.
    fn publish(&self, s: &mut State, before: &PartitionRegistration) {
        if *before == s.registration {
            return;
        }
        let reg = s.registration.clone();
        if reg.leader_epoch == before.leader_epoch {
            if let Some(l) = reg.leader {
                send(s, CONTROLLER, l, ReplicationMessage::PartitionState(reg), 0);
            }
            return;
        }
        for id in self.ids() {
            send(
                s,
                CONTROLLER,
                id,
                ReplicationMessage::PartitionState(reg.clone()),
                0,
            );
        }
    }

    /// The broker's session expired: the controller fences it.
    fn fence(&self, s: &mut State, node: NodeId) {
        let before = s.registration.clone();
        let epoch = s.image.brokers[&node].epoch;
        self.control(
            s,
            ControllerRequest::SessionExpired {
                broker: node,
                epoch,
            },
        )
        .expect("the current incarnation");
        self.publish(s, &before);
    }

    fn crash(&self, s: &mut State, node: NodeId) {
        let i = node as usize;
        s.up[i] = false;
        s.timers[i].clear();
        s.flush_requested[i] = false;
        let mut log = s.replicas[i].log().clone();
        if self.power_loss {
            log.crash();
        }
        s.replicas[i] = Replica::recover(self.replica_config(node), log);
        // The process is gone: what was in flight to it is lost.
        s.net.retain(|&(_, to), _| to != node);
    }

    /// The broker registers again (a new incarnation, which fences the
    /// old one) and its first heartbeat unfences it.
    fn restart(&self, s: &mut State, node: NodeId) {
        s.up[node as usize] = true;
        let before = s.registration.clone();
        self.control(
            s,
            ControllerRequest::RegisterBroker {
                broker: node,
                endpoint: String::new(),
                internal_endpoint: String::new(),
            },
        )
        .expect("registration always succeeds");
        let epoch = s.image.brokers[&node].epoch;
        s.broker_epochs[node as usize] = epoch;
        self.control(
            s,
            ControllerRequest::Heartbeat {
                broker: node,
                epoch,
            },
        )
        .expect("the current incarnation");
        self.publish(s, &before);
        if before.leader_epoch == s.registration.leader_epoch {
            // Unchanged for the others; the new incarnation still needs it.
            let reg = s.registration.clone();
            send(
                s,
                CONTROLLER,
                node,
                ReplicationMessage::PartitionState(reg),
                0,
            );
        }
    }

    /// History checks run after every step.
    fn observe(&self, before: &State, s: &mut State) {
        for r in s.replicas.iter().filter(|r| r.is_leader()) {
            for offset in r.log().start_offset()..r.high_watermark() {
                let value = value_at(r.log(), offset).expect("HW never passes the log end");
                match s.read.get(&offset) {
                    Some(&seen) if seen != value => s.violated.consistent_reads = true,
                    Some(_) => {}
                    None => {
                        if s.read.values().any(|&v| v == value) {
                            s.violated.consistent_reads = true; // one value at two offsets
                        }
                        s.read.insert(offset, value);
                    }
                }
            }
        }
        let (a, b) = (&before.registration, &s.registration);
        if a != b {
            let epochs_grow =
                b.partition_epoch > a.partition_epoch && b.leader_epoch >= a.leader_epoch;
            let leader_bumps = a.leader == b.leader || b.leader_epoch > a.leader_epoch;
            if !epochs_grow || !leader_bumps {
                s.violated.epoch_monotonic = true;
            }
            let track = self.track_examples;
            if track && a.leader.is_some() && b.leader.is_some() && a.leader != b.leader {
                s.reached.leader_change = true;
            }
            if track && b.isr.is_subset(&a.isr) && b.isr != a.isr {
                s.reached.isr_shrunk = true;
            }
        }
        for (r0, r1) in before.replicas.iter().zip(&s.replicas) {
            if r0.leader_epoch() > r1.leader_epoch() && r1.leader_epoch().is_some() {
                s.violated.epoch_monotonic = true;
            }
        }
    }

    fn step(&self, s: &mut State, action: Action) {
        let mut out = ReplicaEffects::new();
        match action {
            Action::Deliver { from, to } => {
                let queue = s
                    .net
                    .get_mut(&(from, to))
                    .expect("enabled only with a message");
                let (message, broker_epoch) = queue.pop_front().expect("non-empty");
                if queue.is_empty() {
                    s.net.remove(&(from, to));
                }
                if to == CONTROLLER {
                    return self.controller_receive(s, from, message, broker_epoch);
                }
                let log = s.replicas[to as usize].log();
                let (start_before, end_before) = (log.start_offset(), log.end_offset());
                s.replicas[to as usize].on_message(from, message, &mut out);
                let log = s.replicas[to as usize].log();
                if self.track_examples && log.end_offset() < end_before {
                    s.reached.truncation = true;
                }
                if self.track_examples && log.start_offset() > start_before {
                    s.reached.follower_start_moved = true;
                }
                self.apply_effects(s, to, &mut out);
            }
            Action::Timer { node, timer } => {
                if timer == ReplicaTimer::FetchMaxWait {
                    s.fetch_waits += 1;
                }
                s.timers[node as usize].remove(&timer);
                s.replicas[node as usize].on_timer(timer, &mut out);
                self.apply_effects(s, node, &mut out);
            }
            Action::Flush { node } => {
                s.flush_requested[node as usize] = false;
                let r = &mut s.replicas[node as usize];
                let flushed = r.log_mut().flush().expect("in-memory flush");
                r.on_flushed(flushed, &mut out);
                self.apply_effects(s, node, &mut out);
            }
            Action::Produce { node } => {
                s.values_produced += 1;
                let value = s.values_produced;
                let records = MemRecords(vec![MemBatch::new(1, value)]);
                let request = ProduceRequest {
                    id: u64::from(value),
                    records,
                    acks: Acks::All,
                };
                s.replicas[node as usize].on_produce(request, &mut out);
                self.apply_effects(s, node, &mut out);
            }
            Action::DeleteRecords { node } => {
                s.deletes += 1;
                let deleted = s.replicas[node as usize].delete_records(None, &mut out);
                assert!(deleted.is_ok(), "the leader deletes: {deleted:?}");
                self.apply_effects(s, node, &mut out);
            }
            Action::Crash { node } => {
                s.crashes += 1;
                self.crash(s, node);
            }
            Action::CrashAll => {
                s.crashes += 1;
                let live: Vec<NodeId> = self.ids().filter(|&id| s.up[id as usize]).collect();
                for id in live {
                    self.crash(s, id);
                }
            }
            Action::Fence { node } => self.fence(s, node),
            Action::Restart { node } => self.restart(s, node),
        }
    }
}

/// `broker_epoch` is the sender's incarnation (meaningful toward the controller).
fn send(s: &mut State, from: NodeId, to: NodeId, message: Msg, broker_epoch: BrokerEpoch) {
    if to != CONTROLLER && !s.up[to as usize] {
        return; // connection refused
    }
    s.net
        .entry((from, to))
        .or_default()
        .push_back((message, broker_epoch));
}

/// Something a DeleteRecords could remove (with the seeded bug, above the HW too).
fn log_has_records(log: &Log) -> bool {
    log.start_offset() < log.end_offset()
}

pub fn value_at(log: &Log, offset: Offset) -> Option<u8> {
    log.batches()
        .iter()
        .find(|b| b.base_offset == offset)
        .map(|b| b.payload)
}

/// The batch at `offset` (every batch of the model holds one record).
fn batch_at(log: &Log, offset: Offset) -> Option<&MemBatch<u8>> {
    log.batches().iter().find(|b| b.base_offset == offset)
}

/// True if `a` and `b` hold the same records below `end` (where both still
/// have them: below a log start, DeleteRecords removed them).
fn agree_below(a: &Log, b: &Log, end: Offset) -> bool {
    let start = a.start_offset().max(b.start_offset());
    (start..end).all(|o| {
        let (x, y) = (batch_at(a, o), batch_at(b, o));
        matches!((x, y), (Some(x), Some(y)) if x == y)
    })
}

/// True if `log` holds every acknowledged record it has not deleted.
fn holds_acked(log: &Log, acked: &BTreeMap<Offset, u8>) -> bool {
    acked
        .iter()
        .all(|(&o, &v)| o < log.start_offset() || value_at(log, o) == Some(v))
}

/// The replica that leads in the controller's current leader epoch, if it
/// has taken up leadership.
fn legit_leader(s: &State) -> Option<&Replica<Log>> {
    let l = s.registration.leader?;
    let r = &s.replicas[l as usize];
    let current = r.leader_epoch() == Some(s.registration.leader_epoch);
    (s.up[l as usize] && r.is_leader() && current).then_some(r)
}

impl Model for ReplicationModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let n = self.replicas as usize;
        let mut s = State {
            replicas: self
                .ids()
                .map(|id| Replica::recover(self.replica_config(id), MemLog::new()))
                .collect(),
            up: vec![true; n],
            timers: vec![BTreeSet::new(); n],
            flush_requested: vec![false; n],
            fetch_waits: 0,
            image: MetadataImage::default(),
            registration: PartitionRegistration::new(vec![0], |_| true),
            broker_epochs: vec![0; n],
            net: BTreeMap::new(),
            values_produced: 0,
            crashes: 0,
            deletes: 0,
            acked: BTreeMap::new(),
            read: BTreeMap::new(),
            violated: Violations::default(),
            reached: Reached::default(),
        };
        // Brokers register, then the topic is created by the real controller.
        for id in self.ids() {
            let register = ControllerRequest::RegisterBroker {
                broker: id,
                endpoint: String::new(),
                internal_endpoint: String::new(),
            };
            let records = self
                .controller()
                .decide(&s.image, &register)
                .expect("registers");
            records.iter().for_each(|r| s.image.apply(r));
            let epoch = s.image.brokers[&id].epoch;
            s.broker_epochs[id as usize] = epoch;
            let heartbeat = ControllerRequest::Heartbeat { broker: id, epoch };
            let records = self
                .controller()
                .decide(&s.image, &heartbeat)
                .expect("unfences");
            records.iter().for_each(|r| s.image.apply(r));
        }
        let create = ControllerRequest::CreateTopic {
            assignment: None,
            name: TOPIC.into(),
            partitions: Some(1),
            replication_factor: Some(self.replicas),
            configs: BTreeMap::new(),
            topic_id: 1,
        };
        self.control(&mut s, create).expect("topic created");
        for id in self.ids() {
            let reg = s.registration.clone();
            send(
                &mut s,
                CONTROLLER,
                id,
                ReplicationMessage::PartitionState(reg),
                0,
            );
        }
        vec![s]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for &(from, to) in s.net.keys() {
            actions.push(Action::Deliver { from, to });
        }
        for id in self.ids() {
            let i = id as usize;
            if !s.up[i] {
                if !s.image.brokers[&id].fenced {
                    actions.push(Action::Fence { node: id });
                }
                actions.push(Action::Restart { node: id });
                continue;
            }
            for &timer in &s.timers[i] {
                if timer == ReplicaTimer::FetchMaxWait && s.fetch_waits >= self.fetch_waits_max {
                    continue;
                }
                actions.push(Action::Timer { node: id, timer });
            }
            let log = s.replicas[i].log();
            // Page-cache write-back happens at any moment; it only matters
            // if a crash can lose what was not written back.
            let background = self.flush_mode == FlushMode::Async
                && self.power_loss
                && log.flushed_offset() < log.end_offset();
            if s.flush_requested[i] || background {
                actions.push(Action::Flush { node: id });
            }
            if s.values_produced < self.values_max && s.replicas[i].is_leader() {
                actions.push(Action::Produce { node: id });
            }
            if s.deletes < self.deletes_max && s.replicas[i].is_leader() && log_has_records(log) {
                actions.push(Action::DeleteRecords { node: id });
            }
            if s.crashes < self.crashes_max {
                actions.push(Action::Crash { node: id });
            }
        }
        if self.crash_all && s.crashes < self.crashes_max && s.up.iter().all(|&u| u) {
            actions.push(Action::CrashAll);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        self.step(&mut s, action);
        self.observe(last, &mut s);
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.registration.partition_epoch <= self.partition_epoch_max
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("LogMatching", |_, s: &State| {
                let n = s.replicas.len();
                (0..n).all(|i| {
                    (i + 1..n).all(|j| {
                        let (a, b) = (&s.replicas[i], &s.replicas[j]);
                        agree_below(a.log(), b.log(), a.high_watermark().min(b.high_watermark()))
                    })
                })
            }),
            Property::always("StrongIsr", |_, s: &State| {
                s.replicas.iter().filter(|l| l.is_leader()).all(|l| {
                    s.registration.isr.iter().all(|&m| {
                        agree_below(l.log(), s.replicas[m as usize].log(), l.high_watermark())
                    })
                })
            }),
            Property::always("LeaderCandidateCompleteness", |_, s: &State| {
                s.registration
                    .isr
                    .iter()
                    .all(|&m| holds_acked(s.replicas[m as usize].log(), &s.acked))
            }),
            Property::always("MaximalIsrSuperset", |_, s: &State| {
                legit_leader(s).is_none_or(|l| l.maximal_isr().is_superset(&s.registration.isr))
            }),
            Property::always("NoAckedLoss", |_, s: &State| {
                legit_leader(s).is_none_or(|l| holds_acked(l.log(), &s.acked))
            }),
            Property::always("ConsistentReads", |_, s: &State| {
                !s.violated.consistent_reads
            }),
            Property::always("LeaderInIsr", |_, s: &State| {
                s.registration
                    .leader
                    .is_none_or(|l| s.registration.isr.contains(&l))
            }),
            Property::always("EpochMonotonic", |_, s: &State| {
                let logs_ordered = s.replicas.iter().all(|r| {
                    r.log()
                        .batches()
                        .windows(2)
                        .all(|w| w[0].leader_epoch <= w[1].leader_epoch)
                });
                logs_ordered && !s.violated.epoch_monotonic
            }),
            Property::always("MinIsrGate", |_, s: &State| !s.violated.min_isr_gate),
            Property::always("FencedBrokerNeverLeads", |_, s: &State| {
                s.registration.leader.is_none_or(|l| s.image.is_active(l))
            }),
            Property::always("StaleIsrChangeRejected", |_, s: &State| {
                !s.violated.stale_isr_change_accepted
            }),
            // Only committed records are ever deleted: every offset below a
            // replica's log start was once read below a leader's HW.
            Property::always("DeletedOnlyCommitted", |_, s: &State| {
                s.replicas
                    .iter()
                    .all(|r| (0..r.log().start_offset()).all(|o| s.read.contains_key(&o)))
            }),
            Property::sometimes("AckedWrite", |_, s: &State| !s.acked.is_empty()),
            Property::sometimes("LeaderChange", |_, s: &State| s.reached.leader_change),
            Property::sometimes("FollowerTruncation", |_, s: &State| s.reached.truncation),
            Property::sometimes("IsrShrinkThenExpand", |_, s: &State| {
                s.reached.isr_reexpanded
            }),
            Property::sometimes("FollowerStartMoved", |_, s: &State| {
                s.reached.follower_start_moved
            }),
        ]
    }
}

pub const ALWAYS: &[&str] = &[
    "LogMatching",
    "StrongIsr",
    "LeaderCandidateCompleteness",
    "MaximalIsrSuperset",
    "NoAckedLoss",
    "ConsistentReads",
    "LeaderInIsr",
    "EpochMonotonic",
    "MinIsrGate",
    "FencedBrokerNeverLeads",
    "StaleIsrChangeRejected",
    "DeletedOnlyCommitted",
];

pub const SOMETIMES: &[&str] = &[
    "AckedWrite",
    "LeaderChange",
    "FollowerTruncation",
    "IsrShrinkThenExpand",
];

/// Roles by name, for readable traces.
#[allow(dead_code)]
pub fn role_name(r: &Replica<Log>) -> &'static str {
    match r.role() {
        Role::Offline => "offline",
        Role::Leader(_) => "leader",
        Role::Follower(_) => "follower",
    }
}
