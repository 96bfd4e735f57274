//! The stateright model of controller decisions through the metadata
//! quorum: three voters run the real `Quorum<MetadataDecision>`; whichever
//! leads decides with the real `Controller::decide_once` against the image
//! of its whole log, and answers the request once the decision commits. A
//! broker sends one request, and sends it again (to any voter) whenever it
//! likes, as the node does after a lost answer, a timeout or a controller
//! change. The network loses and reorders messages; voters crash keeping
//! only what they persisted; followers fetch one entry at a time, so a
//! leader change can catch a follower holding part of what a leader wrote.

use runnel_model::controller::{
    Controller, ControllerConfig, ControllerRequest, MetadataDecision, MetadataImage,
    MetadataRecord, Outcome, RequestKey,
};
use runnel_model::core::{Effect, LeaderEpoch, NodeId};
use runnel_model::quorum::{
    Entry, Payload, Quorum, QuorumConfig, QuorumDurable, QuorumEffects, QuorumMessage, QuorumTimer,
};
use stateright::{Model, Property};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The broker (client) in the network.
pub const BROKER: NodeId = 0;
pub const KEY: RequestKey = RequestKey { session: 7, seq: 1 };

/// Known mistakes the checker must catch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MetadataBugs {
    /// Propose each record of a decision as its own entry (as the node did).
    pub per_record_entries: bool,
    /// Decide a re-sent request again (no de-duplication).
    pub decide_resent_requests: bool,
}

#[derive(Clone, Debug)]
pub struct MetadataModel {
    pub voters: Vec<NodeId>,
    pub request: ControllerRequest,
    pub sends_max: u8,
    pub crashes_max: u8,
    pub drops_max: u8,
    pub timeouts_max: u8,
    pub epoch_max: LeaderEpoch,
    pub bugs: MetadataBugs,
    /// How many records the request's decision writes (computed once).
    pub decision_records: usize,
}

impl MetadataModel {
    /// A CreateTopics of two partitions: a decision of three records.
    pub fn create_topic() -> Self {
        MetadataModel::new(ControllerRequest::CreateTopic {
            assignment: None,
            name: "t".into(),
            partitions: Some(2),
            replication_factor: Some(1),
            configs: BTreeMap::new(),
            topic_id: 1,
        })
    }

    fn new(request: ControllerRequest) -> Self {
        let mut m = MetadataModel {
            voters: vec![1, 2, 3],
            request,
            sends_max: 2,
            crashes_max: 1,
            // What the properties need is a leader change, re-sends and
            // crashes; message loss is the quorum model's subject.
            drops_max: 0,
            timeouts_max: 2,
            epoch_max: 3,
            bugs: MetadataBugs::default(),
            decision_records: 0,
        };
        m.decision_records = m.request_records();
        m
    }

    /// A block of producer ids: deciding it twice hands out two blocks.
    pub fn allocate_producer_ids() -> Self {
        MetadataModel::new(ControllerRequest::AllocateProducerIds {
            broker: BROKER,
            broker_epoch: 1,
        })
    }

    fn controller(&self) -> Controller {
        Controller::new(ControllerConfig {
            default_replication_factor: 1,
            bug_decide_resent_requests: self.bugs.decide_resent_requests,
            ..ControllerConfig::default()
        })
    }

    fn config(&self, id: NodeId) -> QuorumConfig {
        let mut c = QuorumConfig::new(id, self.voters.iter().copied());
        // One entry per answer: a follower can hold part of what a leader
        // appended when the leader dies.
        c.fetch_entries_max = 1;
        c
    }

    fn index(&self, id: NodeId) -> usize {
        self.voters.iter().position(|&v| v == id).expect("a voter")
    }
}

/// What crosses the network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Msg {
    Quorum(QuorumMessage<MetadataDecision>),
    /// Broker → voter: the request, under its key.
    Request,
    /// Voter → broker: the decision ending at `end_offset` carried it out,
    /// or it was refused.
    Answer(Result<u64, String>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub nodes: Vec<Quorum<MetadataDecision>>,
    pub durable: Vec<QuorumDurable<MetadataDecision>>,
    pub up: Vec<bool>,
    pub timers: Vec<BTreeSet<QuorumTimer>>,
    /// Each voter's decisions waiting for commit before they are answered
    /// (volatile: lost with leadership or a crash).
    pub waiting: Vec<BTreeSet<u64>>,
    pub net: BTreeMap<(NodeId, NodeId), VecDeque<Msg>>,
    pub sends: u8,
    pub crashes: u8,
    pub drops: u8,
    pub timeouts: u8,
    /// History: every answer the broker got.
    pub answers: BTreeSet<Result<u64, String>>,
    /// History: the leader epoch of the first proposal, and whether an
    /// answer came from a later leader.
    pub proposed_in: Option<LeaderEpoch>,
    pub answered_by_later_leader: bool,
}

/// The decision's records, one entry (or one per record under the bug).
fn entries(bugs: MetadataBugs, records: Vec<MetadataRecord>) -> Vec<MetadataDecision> {
    match bugs.per_record_entries {
        true => records
            .into_iter()
            .map(|r| MetadataDecision {
                request: Some(KEY),
                records: vec![r],
            })
            .collect(),
        false => vec![MetadataDecision {
            request: Some(KEY),
            records,
        }],
    }
}

/// The image of `log[..end]`.
fn image_of(log: &[Entry<MetadataDecision>], end: usize) -> MetadataImage {
    let mut image = MetadataImage::default();
    for (i, e) in log[..end].iter().enumerate() {
        if let Payload::Record(d) = &e.payload {
            image.apply_decision(d, i as u64 + 1);
        }
    }
    image
}

/// Records of the request's decisions in `log[..end]`, per entry.
fn committed_for_key(log: &[Entry<MetadataDecision>], end: usize) -> Vec<usize> {
    log[..end]
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Record(d) if d.request == Some(KEY) => Some(d.records.len()),
            _ => None,
        })
        .collect()
}

impl MetadataModel {
    /// Every voter starts with the broker registered and active (entry 1,
    /// epoch 1), so the request can be carried out.
    fn initial_durable(&self) -> QuorumDurable<MetadataDecision> {
        let setup = MetadataDecision {
            request: None,
            records: vec![
                MetadataRecord::RegisterBroker {
                    broker: BROKER,
                    epoch: 1,
                    endpoint: String::new(),
                    internal_endpoint: String::new(),
                },
                MetadataRecord::UnfenceBroker {
                    broker: BROKER,
                    epoch: 1,
                },
            ],
        };
        QuorumDurable {
            epoch: 1,
            voted_for: None,
            snapshot: None,
            log: vec![Entry {
                epoch: 1,
                payload: Payload::Record(setup),
            }],
        }
    }

    fn apply_effects(
        &self,
        s: &mut State,
        node: NodeId,
        out: &mut QuorumEffects<MetadataDecision>,
    ) {
        let i = self.index(node);
        for effect in out.drain() {
            match effect {
                Effect::Send { to, message } => {
                    s.net
                        .entry((node, to))
                        .or_default()
                        .push_back(Msg::Quorum(message));
                }
                Effect::SetTimer { timer, .. } => {
                    s.timers[i].insert(timer);
                }
                Effect::CancelTimer { timer } => {
                    s.timers[i].remove(&timer);
                }
                Effect::Persist(change) => s.durable[i].apply(&change),
                Effect::FlushLog { .. } | Effect::Reply(()) => {}
            }
        }
    }

    /// A leader's handling of the request: decide once against the image of
    /// its whole log, propose, answer on commit.
    fn on_request(&self, s: &mut State, node: NodeId) {
        let i = self.index(node);
        if !s.nodes[i].is_leader() {
            return; // the broker sends again
        }
        let log = s.nodes[i].entries();
        let image = image_of(log, log.len());
        let answer_now = |s: &mut State, answer| {
            s.net
                .entry((node, BROKER))
                .or_default()
                .push_back(Msg::Answer(answer));
        };
        match self
            .controller()
            .decide_once(&image, Some(KEY), &self.request)
        {
            Ok(Outcome::AlreadyApplied { end_offset }) => {
                s.waiting[i].insert(end_offset);
            }
            Ok(Outcome::Decided(records)) if records.is_empty() => {
                answer_now(s, Ok(log.len() as u64));
            }
            Ok(Outcome::Decided(records)) => {
                let mut out = QuorumEffects::new();
                let mut end = 0;
                for d in entries(self.bugs, records) {
                    end = s.nodes[i].propose(d, &mut out).expect("leader") + 1;
                }
                s.proposed_in.get_or_insert(s.nodes[i].epoch());
                s.waiting[i].insert(end);
                self.apply_effects(s, node, &mut out);
            }
            Err(e) => answer_now(s, Err(format!("{e:?}"))),
        }
    }

    /// Leaders answer what has committed; non-leaders forget their waiters.
    fn answer_committed(&self, s: &mut State) {
        for i in 0..self.voters.len() {
            if !s.up[i] || !s.nodes[i].is_leader() {
                s.waiting[i].clear();
                continue;
            }
            let commit = s.nodes[i].commit_offset();
            let done: Vec<u64> = s.waiting[i].range(..=commit).copied().collect();
            for end in done {
                s.waiting[i].remove(&end);
                if s.proposed_in.is_some_and(|e| e < s.nodes[i].epoch()) {
                    s.answered_by_later_leader = true;
                }
                s.net
                    .entry((self.voters[i], BROKER))
                    .or_default()
                    .push_back(Msg::Answer(Ok(end)));
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Send { to: NodeId },
    Deliver { from: NodeId, to: NodeId },
    Drop { from: NodeId, to: NodeId },
    Timer { node: NodeId, timer: QuorumTimer },
    Crash { node: NodeId },
    Restart { node: NodeId },
}

impl Model for MetadataModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let n = self.voters.len();
        let durable = vec![self.initial_durable(); n];
        let mut s = State {
            nodes: Vec::new(),
            durable: durable.clone(),
            up: vec![true; n],
            timers: vec![BTreeSet::new(); n],
            waiting: vec![BTreeSet::new(); n],
            net: BTreeMap::new(),
            sends: 0,
            crashes: 0,
            drops: 0,
            timeouts: 0,
            answers: BTreeSet::new(),
            proposed_in: None,
            answered_by_later_leader: false,
        };
        for (i, &id) in self.voters.iter().enumerate() {
            let mut node = Quorum::recover(self.config(id), durable[i].clone());
            let mut out = QuorumEffects::new();
            node.start(&mut out);
            s.nodes.push(node);
            self.apply_effects(&mut s, id, &mut out);
        }
        // Exploration starts from a settled cluster: the highest voter
        // elected (its election timer fired, every message delivered in
        // order) and its followers caught up. What is checked happens after
        // (the request, partial replication, crashes, new elections); the
        // quorum's own model checks elections from scratch.
        let leader = *self.voters.last().expect("voters");
        let next = self.next_state(
            &s,
            Action::Timer {
                node: leader,
                timer: QuorumTimer::Election,
            },
        );
        s = next.expect("a step");
        for _ in 0..200 {
            let Some(&(from, to)) = s.net.keys().next() else {
                break;
            };
            s = self
                .next_state(&s, Action::Deliver { from, to })
                .expect("a step");
        }
        assert!(s.nodes[self.index(leader)].is_leader(), "a settled leader");
        s.timeouts = 0;
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
            if s.sends < self.sends_max {
                actions.push(Action::Send { to: id });
            }
            if !s.up[i] {
                actions.push(Action::Restart { node: id });
                continue;
            }
            if s.timeouts < self.timeouts_max {
                for &timer in &s.timers[i] {
                    actions.push(Action::Timer { node: id, timer });
                }
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
            Action::Send { to } => {
                s.sends += 1;
                s.net
                    .entry((BROKER, to))
                    .or_default()
                    .push_back(Msg::Request);
            }
            Action::Deliver { from, to } => {
                let message = take(&mut s, from, to);
                if to == BROKER {
                    if let Msg::Answer(a) = message {
                        s.answers.insert(a);
                    }
                } else if s.up[self.index(to)] {
                    match message {
                        Msg::Quorum(m) => {
                            s.nodes[self.index(to)].on_message(from, m, &mut out);
                            self.apply_effects(&mut s, to, &mut out);
                        }
                        Msg::Request => self.on_request(&mut s, to),
                        Msg::Answer(_) => {}
                    }
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
            Action::Crash { node } => {
                let i = self.index(node);
                s.crashes += 1;
                s.up[i] = false;
                s.timers[i].clear();
                s.waiting[i].clear();
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
        self.answer_committed(&mut s);
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.nodes.iter().all(|n| n.epoch() <= self.epoch_max)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            // Every committed prefix holds the request's decision whole or
            // not at all (and so does every image folded from one).
            Property::always("DecisionAtomicity", |m, s: &State| {
                let whole = m.decision_records;
                s.nodes.iter().all(|n| {
                    let commit = (n.commit_offset() as usize).min(n.entries().len());
                    committed_for_key(n.entries(), commit).iter().sum::<usize>() % whole == 0
                })
            }),
            // No committed log carries the request out twice.
            Property::always("RequestAppliedOnce", |m, s: &State| {
                let whole = m.decision_records;
                s.nodes.iter().all(|n| {
                    let commit = (n.commit_offset() as usize).min(n.entries().len());
                    committed_for_key(n.entries(), commit).iter().sum::<usize>() <= whole
                })
            }),
            // Every answer is the first decision's: one success, pointing
            // at the committed entry that carried the request out.
            Property::always("AnswerIsTheFirstDecision", |_, s: &State| {
                s.answers.len() <= 1 && s.answers.iter().all(|a| a.is_ok())
            }),
            Property::sometimes("Answered", |_, s: &State| !s.answers.is_empty()),
            Property::sometimes("RetryAnsweredByALaterLeader", |_, s: &State| {
                s.answered_by_later_leader
            }),
        ]
    }
}

impl MetadataModel {
    /// How many records the request's decision writes.
    fn request_records(&self) -> usize {
        let image = image_of(&self.initial_durable().log, 1);
        match self.controller().decide(&image, &self.request) {
            Ok(records) => records.len().max(1),
            Err(e) => panic!("the model's request must be accepted: {e:?}"),
        }
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
    "DecisionAtomicity",
    "RequestAppliedOnce",
    "AnswerIsTheFirstDecision",
];
pub const SOMETIMES: &[&str] = &["Answered", "RetryAnsweredByALaterLeader"];
