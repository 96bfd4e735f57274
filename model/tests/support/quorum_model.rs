//! The stateright model of the coordinator quorum: three voters running the
//! real [`Quorum`] state machine over a network that loses and reorders
//! messages, with crashes that keep only what was persisted.

use runnel_model::core::{Effect, LeaderEpoch, NodeId, Offset};
use runnel_model::quorum::{
    Entry, Payload, Quorum, QuorumBugs, QuorumConfig, QuorumDurable, QuorumEffects, QuorumMessage,
    QuorumPersist, QuorumSnapshot, QuorumTimer,
};
use stateright::{Model, Property};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

type Msg = QuorumMessage<u8>;

#[derive(Clone, Debug)]
pub struct QuorumModel {
    pub voters: Vec<NodeId>,
    /// Records proposed to leaders.
    pub values_max: u8,
    pub crashes_max: u8,
    pub drops_max: u8,
    /// Timer firings (election timeouts and check-quorum). Each can fire at
    /// any moment, so this bounds spurious elections as well as real ones.
    pub timeouts_max: u8,
    pub epoch_max: LeaderEpoch,
    /// Snapshots taken (each at the node's commit offset: the records of
    /// its log below it).
    pub snapshots_max: u8,
    pub bugs: QuorumBugs,
    /// Where exploration starts (None: three empty voters).
    pub initial: Option<Vec<QuorumDurable<u8>>>,
    /// What the history knows to be committed in that starting state.
    pub initial_committed: Vec<(Entry<u8>, LeaderEpoch)>,
    /// Steps taken from the starting state before exploring, each checked
    /// to be enabled: exploration then starts from a reachable state.
    pub prefix: Vec<Action>,
}

impl Default for QuorumModel {
    fn default() -> Self {
        Self {
            voters: vec![1, 2, 3],
            values_max: 1,
            crashes_max: 1,
            drops_max: 1,
            timeouts_max: 3,
            epoch_max: 3,
            snapshots_max: 0,
            bugs: QuorumBugs::default(),
            initial: None,
            initial_committed: Vec::new(),
            prefix: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub nodes: Vec<Quorum<u8>>,
    pub durable: Vec<QuorumDurable<u8>>,
    pub up: Vec<bool>,
    pub timers: Vec<BTreeSet<QuorumTimer>>,
    /// Lossy network, in order per link (TCP), any order across links.
    pub net: BTreeMap<(NodeId, NodeId), VecDeque<Msg>>,
    pub values: u8,
    pub crashes: u8,
    pub drops: u8,
    pub timeouts: u8,
    pub snapshots: u8,
    /// A follower started its log again from a leader's snapshot.
    pub snapshot_installed: bool,
    /// History: the leader of each epoch.
    pub leaders: BTreeMap<LeaderEpoch, NodeId>,
    /// History: (epoch, voter) → the candidate it voted for.
    pub votes: BTreeMap<(LeaderEpoch, NodeId), NodeId>,
    /// History: the longest committed prefix seen, with the epoch in which
    /// each entry was first seen committed.
    pub committed: Vec<(Entry<u8>, LeaderEpoch)>,
    /// History: the highest epoch each node reached.
    pub max_epoch: Vec<LeaderEpoch>,
    pub violated: Violations,
    pub leader_after_crash: bool,
    pub crashed_leader_epoch: Option<LeaderEpoch>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Violations {
    pub election_safety: bool,
    pub committed_prefix: bool,
    pub durable_vote: bool,
    pub monotonic_epoch: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Deliver { from: NodeId, to: NodeId },
    Drop { from: NodeId, to: NodeId },
    Timer { node: NodeId, timer: QuorumTimer },
    Propose { node: NodeId },
    Snapshot { node: NodeId },
    Crash { node: NodeId },
    Restart { node: NodeId },
}

impl QuorumModel {
    fn index(&self, id: NodeId) -> usize {
        self.voters.iter().position(|&v| v == id).expect("a voter")
    }

    fn config(&self, id: NodeId) -> QuorumConfig {
        let mut c = QuorumConfig::new(id, self.voters.iter().copied());
        c.bugs = self.bugs;
        // One entry per answer, so an answer can carry an old entry without
        // the new leader's marker behind it (what Raft's Figure 8 needs).
        c.fetch_entries_max = 1;
        c
    }

    fn apply_effects(&self, s: &mut State, node: NodeId, out: &mut QuorumEffects<u8>) {
        let i = self.index(node);
        for effect in out.drain() {
            match effect {
                Effect::Send { to, message } => {
                    if let QuorumMessage::VoteResponse {
                        epoch,
                        granted: true,
                    } = &message
                    {
                        self.record_vote(s, *epoch, node, to);
                    }
                    s.net.entry((node, to)).or_default().push_back(message);
                }
                Effect::SetTimer { timer, .. } => {
                    s.timers[i].insert(timer);
                }
                Effect::CancelTimer { timer } => {
                    s.timers[i].remove(&timer);
                }
                Effect::Persist(change) => {
                    if matches!(change, QuorumPersist::InstallSnapshot(_)) {
                        s.snapshot_installed = true;
                    }
                    s.durable[i].apply(&change)
                }
                Effect::FlushLog { .. } | Effect::Reply(()) => {}
            }
        }
    }

    fn record_vote(&self, s: &mut State, epoch: LeaderEpoch, voter: NodeId, candidate: NodeId) {
        match s.votes.insert((epoch, voter), candidate) {
            Some(previous) if previous != candidate => s.violated.durable_vote = true,
            _ => {}
        }
    }

    fn observe(&self, s: &mut State) {
        for (i, n) in s.nodes.iter().enumerate() {
            if !s.up[i] {
                continue;
            }
            if n.epoch() < s.max_epoch[i] {
                s.violated.monotonic_epoch = true;
            }
            s.max_epoch[i] = s.max_epoch[i].max(n.epoch());
            if let Some(me) = n.voted_for() {
                // A candidate's vote for itself counts as a vote.
                if me == n.id() {
                    match s.votes.insert((n.epoch(), n.id()), me) {
                        Some(p) if p != me => s.violated.durable_vote = true,
                        _ => {}
                    }
                }
            }
            if n.is_leader() {
                match s.leaders.insert(n.epoch(), n.id()) {
                    Some(other) if other != n.id() => s.violated.election_safety = true,
                    None if s.crashed_leader_epoch.is_some_and(|e| e < n.epoch()) => {
                        s.leader_after_crash = true
                    }
                    _ => {}
                }
            }
            let (start, commit) = (n.log_start(), n.commit_offset());
            for offset in start..commit {
                let entry = n.entry(offset).expect("committed entries are held");
                match s.committed.get(offset as usize) {
                    Some((seen, _)) if seen != entry => s.violated.committed_prefix = true,
                    Some(_) => {}
                    None if s.committed.len() == offset as usize => {
                        s.committed.push((entry.clone(), n.epoch()))
                    }
                    // Past the history: a snapshot of entries never seen
                    // committed (the seeded bug), reported below.
                    None => {}
                }
            }
        }
        // Every snapshot, in memory or on disk (a crashed node's too),
        // stands for the committed history below its end.
        let snapshots = s.nodes.iter().filter_map(|n| n.snapshot());
        let durable = s.durable.iter().filter_map(|d| d.snapshot.as_ref());
        if !snapshots
            .chain(durable)
            .all(|snap| snapshot_agrees(&s.committed, snap))
        {
            s.violated.committed_prefix = true;
        }
    }
}

/// The records of the entries below `end` in `n`'s log (its snapshot's,
/// then its entries'): what the application's state there folds.
pub fn records_below(n: &Quorum<u8>, end: Offset) -> Vec<u8> {
    let mut records = n.snapshot().map_or(Vec::new(), |s| s.records.clone());
    let held = (end.saturating_sub(n.log_start())) as usize;
    records.extend(
        n.entries()
            .iter()
            .take(held)
            .filter_map(|e| match e.payload {
                Payload::Record(r) => Some(r),
                Payload::LeaderChange { .. } => None,
            }),
    );
    records
}

/// A snapshot stands for committed entries only (KIP-630: at or below the
/// high watermark), and its records are those of the committed history
/// below its end.
fn snapshot_agrees(history: &[(Entry<u8>, LeaderEpoch)], snap: &QuorumSnapshot<u8>) -> bool {
    let Some(below) = history.get(..snap.end_offset as usize) else {
        return false;
    };
    let records: Vec<u8> = below
        .iter()
        .filter_map(|(e, _)| match e.payload {
            Payload::Record(r) => Some(r),
            Payload::LeaderChange { .. } => None,
        })
        .collect();
    snap.records == records
}

impl Model for QuorumModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let n = self.voters.len();
        let durable = self
            .initial
            .clone()
            .unwrap_or_else(|| vec![QuorumDurable::default(); n]);
        let mut s = State {
            nodes: Vec::new(),
            durable: durable.clone(),
            up: vec![true; n],
            timers: vec![BTreeSet::new(); n],
            net: BTreeMap::new(),
            values: 0,
            crashes: 0,
            drops: 0,
            timeouts: 0,
            snapshots: 0,
            snapshot_installed: false,
            leaders: BTreeMap::new(),
            votes: BTreeMap::new(),
            committed: self.initial_committed.clone(),
            max_epoch: durable.iter().map(|d| d.epoch).collect(),
            violated: Violations::default(),
            leader_after_crash: false,
            crashed_leader_epoch: None,
        };
        for (i, &id) in self.voters.iter().enumerate() {
            let mut node = Quorum::recover(self.config(id), durable[i].clone());
            let mut out = QuorumEffects::new();
            node.start(&mut out);
            s.nodes.push(node);
            self.apply_effects(&mut s, id, &mut out);
        }
        for action in &self.prefix {
            let mut enabled = Vec::new();
            self.actions(&s, &mut enabled);
            assert!(
                enabled.contains(action),
                "prefix step {action:?} is not enabled"
            );
            s = self.next_state(&s, action.clone()).expect("a step");
        }
        vec![s]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for &(from, to) in s.net.keys() {
            actions.push(Action::Deliver { from, to });
            if s.drops < self.drops_max {
                actions.push(Action::Drop { from, to });
            }
        }
        for (i, &id) in self.voters.iter().enumerate() {
            if !s.up[i] {
                actions.push(Action::Restart { node: id });
                continue;
            }
            if s.timeouts < self.timeouts_max {
                for &timer in &s.timers[i] {
                    actions.push(Action::Timer { node: id, timer });
                }
            }
            if s.nodes[i].is_leader() && s.values < self.values_max {
                actions.push(Action::Propose { node: id });
            }
            let n = &s.nodes[i];
            let limit = match self.bugs.snapshot_above_commit {
                true => n.end_offset(),
                false => n.commit_offset(),
            };
            if s.snapshots < self.snapshots_max && limit > n.log_start() {
                actions.push(Action::Snapshot { node: id });
            }
            if s.crashes < self.crashes_max {
                actions.push(Action::Crash { node: id });
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let mut out = QuorumEffects::new();
        match action {
            Action::Deliver { from, to } => {
                let message = take(&mut s, from, to);
                let i = self.index(to);
                if s.up[i] {
                    s.nodes[i].on_message(from, message, &mut out);
                    self.apply_effects(&mut s, to, &mut out);
                }
            }
            Action::Drop { from, to } => {
                take(&mut s, from, to);
                s.drops += 1;
            }
            Action::Timer { node, timer } => {
                let i = self.index(node);
                s.timeouts += 1;
                s.timers[i].remove(&timer);
                s.nodes[i].on_timer(timer, &mut out);
                self.apply_effects(&mut s, node, &mut out);
            }
            Action::Propose { node } => {
                s.values += 1;
                let i = self.index(node);
                let _ = s.nodes[i].propose(s.values, &mut out);
                self.apply_effects(&mut s, node, &mut out);
            }
            Action::Snapshot { node } => {
                let i = self.index(node);
                s.snapshots += 1;
                let n = &s.nodes[i];
                let end = match self.bugs.snapshot_above_commit {
                    true => n.end_offset(),
                    false => n.commit_offset(),
                };
                let records = records_below(n, end);
                s.nodes[i]
                    .take_snapshot(end, records, &mut out)
                    .expect("a snapshot in range");
                self.apply_effects(&mut s, node, &mut out);
            }
            Action::Crash { node } => {
                let i = self.index(node);
                s.crashes += 1;
                if s.nodes[i].is_leader() {
                    s.crashed_leader_epoch = Some(s.nodes[i].epoch());
                }
                s.up[i] = false;
                s.timers[i].clear();
                s.net.retain(|&(_, to), _| to != node);
            }
            Action::Restart { node } => {
                let i = self.index(node);
                s.up[i] = true;
                s.nodes[i] = Quorum::recover(self.config(node), s.durable[i].clone());
                s.nodes[i].start(&mut out);
                self.apply_effects(&mut s, node, &mut out);
            }
        }
        self.observe(&mut s);
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.nodes.iter().all(|n| n.epoch() <= self.epoch_max)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("ElectionSafety", |_, s: &State| !s.violated.election_safety),
            Property::always("CommittedPrefixAgreement", |_, s: &State| {
                !s.violated.committed_prefix
            }),
            Property::always("LeaderCompleteness", |_, s: &State| {
                s.nodes
                    .iter()
                    .zip(&s.up)
                    .filter(|(n, &up)| up && n.is_leader())
                    .all(|(n, _)| {
                        s.committed
                            .iter()
                            .enumerate()
                            .all(|(offset, (entry, epoch))| {
                                // Below the log start: the snapshot, which
                                // CommittedPrefixAgreement compares.
                                *epoch >= n.epoch()
                                    || (offset as Offset) < n.log_start()
                                    || n.entry(offset as Offset) == Some(entry)
                            })
                    })
            }),
            Property::always("DurableVote", |_, s: &State| !s.violated.durable_vote),
            Property::always("MonotonicEpoch", |_, s: &State| !s.violated.monotonic_epoch),
            Property::sometimes("LeaderElected", |_, s: &State| !s.leaders.is_empty()),
            Property::sometimes("RecordCommitted", |_, s: &State| {
                s.committed
                    .iter()
                    .any(|(e, _)| matches!(e.payload, runnel_model::quorum::Payload::Record(_)))
            }),
            Property::sometimes("NewLeaderAfterCrash", |_, s: &State| s.leader_after_crash),
            Property::sometimes("SnapshotInstalled", |_, s: &State| s.snapshot_installed),
        ]
    }
}

fn take(s: &mut State, from: NodeId, to: NodeId) -> Msg {
    let queue = s
        .net
        .get_mut(&(from, to))
        .expect("enabled only with a message");
    let message = queue.pop_front().expect("non-empty");
    if queue.is_empty() {
        s.net.remove(&(from, to));
    }
    message
}

pub const ALWAYS: &[&str] = &[
    "ElectionSafety",
    "CommittedPrefixAgreement",
    "LeaderCompleteness",
    "DurableVote",
    "MonotonicEpoch",
];
pub const SOMETIMES: &[&str] = &["LeaderElected", "RecordCommitted", "NewLeaderAfterCrash"];
/// Reached by the snapshot runs (`snapshots_max` > 0) only.
pub const SOMETIMES_SNAPSHOT: &[&str] = &["SnapshotInstalled"];

#[allow(dead_code)]
pub fn end(n: &Quorum<u8>) -> Offset {
    n.end_offset()
}
