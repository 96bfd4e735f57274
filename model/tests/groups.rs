//! Model check of the group coordinator (`model/src/group.rs`): two consumers
//! joining, syncing, heartbeating, committing, leaving, crashing and timing
//! out in any order against the real state machine; in the static variant
//! (KIP-345) each consumer has a `group.instance.id` and comes back from a
//! crash under it, taking its old member's place.

mod support;

use runnel_model::core::{Effect, RequestId};
use runnel_model::group::{
    Group, GroupBugs, GroupConfig, GroupEffects, GroupError, GroupReply, GroupState, GroupTimer,
    JoinRequest,
};
use stateright::HasDiscoveries;
use stateright::{Model, Property};
use std::collections::{BTreeMap, BTreeSet};
use support::{check, set};

const PARTITIONS: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Joining,
    /// Joined `generation`; the leader holds the member list.
    Joined {
        generation: i32,
        members: Vec<String>,
    },
    Syncing {
        generation: i32,
    },
    Member {
        generation: i32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Consumer {
    up: bool,
    id: String,
    /// `group.instance.id` (static variant only); kept across crashes.
    instance: Option<String>,
    phase: Phase,
    /// Partitions from the last successful SyncGroup, with its generation;
    /// given up (eager protocol) when told to rejoin.
    owned: Option<(i32, BTreeSet<u32>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    group: Group,
    consumers: Vec<Consumer>,
    timers: BTreeSet<GroupTimer>,
    pending: BTreeMap<RequestId, usize>,
    next_request: RequestId,
    crashes: u8,
    timeouts: u8,
    commits: u8,
    max_generation: i32,
    stale_commit_accepted: bool,
    member_dropped_without_cause: bool,
    crashed_then_rebalanced: (bool, bool),
    /// A static member came back from a crash into the generation it left.
    static_rejoin_without_rebalance: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Join(usize),
    Sync(usize),
    Heartbeat(usize),
    Commit(usize),
    Leave(usize),
    Crash(usize),
    Restart(usize),
    Timer(GroupTimer),
}

struct GroupModel {
    bugs: GroupBugs,
    static_members: bool,
    crashes_max: u8,
    timeouts_max: u8,
    commits_max: u8,
}

fn assignment(members: &[String], me: &str) -> Vec<u8> {
    // Round-robin over the sorted member list: the leader's assignor.
    let i = members.iter().position(|m| m == me).unwrap_or(0);
    (0..PARTITIONS)
        .filter(|p| *p as usize % members.len() == i)
        .map(|p| p as u8)
        .collect()
}

impl GroupModel {
    fn apply(&self, s: &mut State, out: &mut GroupEffects) {
        for e in out.drain() {
            match e {
                Effect::SetTimer { timer, .. } => {
                    s.timers.insert(timer);
                }
                Effect::CancelTimer { timer } => {
                    s.timers.remove(&timer);
                }
                Effect::Reply(reply) => Self::deliver(s, reply),
                _ => {}
            }
        }
    }

    fn deliver(s: &mut State, reply: GroupReply) {
        let Some(i) = s.pending.remove(&reply.request()) else {
            return;
        };
        let c = &mut s.consumers[i];
        if !c.up {
            return;
        }
        let rejoin = |c: &mut Consumer, forget_id: bool| {
            c.phase = Phase::Idle;
            c.owned = None;
            if forget_id {
                c.id.clear();
            }
        };
        match reply {
            GroupReply::Join { result: Ok(r), .. } => {
                c.id = r.member_id;
                c.phase = Phase::Joined {
                    generation: r.generation,
                    members: r.members.into_iter().map(|m| m.member_id).collect(),
                };
            }
            GroupReply::Join {
                result: Err(GroupError::MemberIdRequired(id)),
                ..
            } => {
                c.id = id;
                c.phase = Phase::Idle;
            }
            GroupReply::Join { result: Err(_), .. } => rejoin(c, true),
            GroupReply::Sync { result: Ok(a), .. } => {
                let Phase::Syncing { generation } = c.phase else {
                    return;
                };
                c.owned = Some((generation, a.iter().map(|p| *p as u32).collect()));
                c.phase = Phase::Member { generation };
            }
            GroupReply::Sync { result: Err(e), .. }
            | GroupReply::Heartbeat { result: Err(e), .. } => {
                rejoin(c, e == GroupError::UnknownMemberId)
            }
            GroupReply::Leave { .. } => rejoin(c, true),
            GroupReply::Heartbeat { result: Ok(()), .. }
            | GroupReply::Commit { .. }
            | GroupReply::Delete { .. }
            | GroupReply::DeleteOffsets { .. } => {}
        }
    }

    fn request(s: &mut State, i: usize) -> RequestId {
        s.next_request += 1;
        s.pending.insert(s.next_request, i);
        s.next_request
    }
}

impl Model for GroupModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let config = GroupConfig {
            incarnation: 0,
            initial_rebalance_delay_ms: 0,
            limits: Default::default(),
            bugs: self.bugs,
        };
        let consumer = |i: usize| Consumer {
            up: true,
            id: String::new(),
            instance: self.static_members.then(|| format!("i{i}")),
            phase: Phase::Idle,
            owned: None,
        };
        vec![State {
            group: Group::new(config),
            consumers: vec![consumer(0), consumer(1)],
            timers: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_request: 0,
            crashes: 0,
            timeouts: 0,
            commits: 0,
            max_generation: 0,
            stale_commit_accepted: false,
            member_dropped_without_cause: false,
            crashed_then_rebalanced: (false, false),
            static_rejoin_without_rebalance: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (i, c) in s.consumers.iter().enumerate() {
            if !c.up {
                actions.push(Action::Restart(i));
                continue;
            }
            match &c.phase {
                Phase::Idle => actions.push(Action::Join(i)),
                Phase::Joined { .. } => actions.push(Action::Sync(i)),
                Phase::Member { .. } => {
                    actions.push(Action::Heartbeat(i));
                    actions.push(Action::Leave(i));
                }
                Phase::Joining | Phase::Syncing { .. } => {}
            }
            if !matches!(c.phase, Phase::Idle | Phase::Joining) && s.commits < self.commits_max {
                actions.push(Action::Commit(i));
            }
            if s.crashes < self.crashes_max {
                actions.push(Action::Crash(i));
            }
        }
        if s.timeouts < self.timeouts_max {
            for t in &s.timers {
                actions.push(Action::Timer(t.clone()));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let mut out = GroupEffects::new();
        let before: BTreeSet<String> = s.group.members().map(String::from).collect();
        let mut allowed_removal: Option<String> = None;
        match action.clone() {
            Action::Join(i) => {
                let request = Self::request(&mut s, i);
                // A new process under an instance id replaces its holder.
                if let (true, Some(instance)) =
                    (s.consumers[i].id.is_empty(), &s.consumers[i].instance)
                {
                    allowed_removal = s
                        .group
                        .describe_members()
                        .into_iter()
                        .find(|m| m.group_instance_id.as_ref() == Some(instance))
                        .map(|m| m.member_id);
                }
                let c = &mut s.consumers[i];
                c.phase = Phase::Joining;
                c.owned = None; // eager: give up partitions before rejoining
                let join = JoinRequest {
                    request,
                    member_id: c.id.clone(),
                    client_id: format!("c{i}"),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 60_000,
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), vec![])],
                    group_instance_id: c.instance.clone(),
                };
                let generation = s.group.generation();
                let replacing = allowed_removal.is_some();
                s.group.on_join(join, &mut out);
                let same_generation = out.iter().any(|e| {
                    matches!(e, Effect::Reply(GroupReply::Join { result: Ok(r), .. })
                        if r.generation == generation)
                });
                if replacing && same_generation && s.crashed_then_rebalanced.0 {
                    s.static_rejoin_without_rebalance = true;
                }
            }
            Action::Sync(i) => {
                let Phase::Joined {
                    generation,
                    members,
                } = s.consumers[i].phase.clone()
                else {
                    return None;
                };
                let request = Self::request(&mut s, i);
                let id = s.consumers[i].id.clone();
                let assignments = members
                    .iter()
                    .map(|m| (m.clone(), assignment(&members, m)))
                    .collect();
                s.consumers[i].phase = Phase::Syncing { generation };
                let instance = s.consumers[i].instance.clone();
                s.group.on_sync(
                    request,
                    (&id, instance.as_deref()),
                    generation,
                    assignments,
                    &mut out,
                );
            }
            Action::Heartbeat(i) => {
                let Phase::Member { generation } = s.consumers[i].phase else {
                    return None;
                };
                let request = Self::request(&mut s, i);
                let id = s.consumers[i].id.clone();
                let instance = s.consumers[i].instance.clone();
                s.group
                    .on_heartbeat(request, (&id, instance.as_deref()), generation, &mut out);
            }
            Action::Commit(i) => {
                let generation = match s.consumers[i].phase {
                    Phase::Joined { generation, .. }
                    | Phase::Syncing { generation }
                    | Phase::Member { generation } => generation,
                    _ => return None,
                };
                s.commits += 1;
                let request = Self::request(&mut s, i);
                let id = s.consumers[i].id.clone();
                let current = s.group.generation();
                let instance = s.consumers[i].instance.clone();
                s.group.on_commit(
                    request,
                    (&id, instance.as_deref()),
                    generation,
                    vec![(
                        ("t".into(), 0),
                        runnel_model::group::CommittedOffset::bare(1),
                    )],
                    0,
                    &mut out,
                );
                let accepted = out
                    .iter()
                    .any(|e| matches!(e, Effect::Reply(GroupReply::Commit { result: Ok(()), .. })));
                if accepted && generation != current {
                    s.stale_commit_accepted = true;
                }
            }
            Action::Leave(i) => {
                let request = Self::request(&mut s, i);
                let id = s.consumers[i].id.clone();
                allowed_removal = Some(id.clone());
                let instance = s.consumers[i].instance.clone();
                s.group
                    .on_leave(request, (&id, instance.as_deref()), &mut out);
            }
            Action::Crash(i) => {
                s.crashes += 1;
                s.consumers[i] = Consumer {
                    up: false,
                    id: String::new(),
                    instance: s.consumers[i].instance.clone(),
                    phase: Phase::Idle,
                    owned: None,
                };
                s.crashed_then_rebalanced.0 = true;
                s.pending.retain(|_, m| *m != i);
            }
            Action::Restart(i) => s.consumers[i].up = true,
            Action::Timer(t) => {
                s.timeouts += 1;
                s.timers.remove(&t);
                match &t {
                    GroupTimer::Session(id) => allowed_removal = Some(id.clone()),
                    GroupTimer::RebalanceTimeout => allowed_removal = Some("*".into()),
                    GroupTimer::InitialDelay => {}
                }
                s.group.on_timer(t, &mut out);
            }
        }
        self.apply(&mut s, &mut out);
        let after: BTreeSet<String> = s.group.members().map(String::from).collect();
        for gone in before.difference(&after) {
            if allowed_removal.as_deref() != Some(gone.as_str())
                && allowed_removal.as_deref() != Some("*")
            {
                s.member_dropped_without_cause = true;
            }
        }
        if s.group.generation() < s.max_generation {
            s.max_generation = i32::MAX; // flag the regression
        } else {
            s.max_generation = s.group.generation();
        }
        if s.crashed_then_rebalanced.0
            && s.group.state() == GroupState::Stable
            && s.consumers.iter().any(|c| c.up && c.owned.is_some())
        {
            s.crashed_then_rebalanced.1 = true;
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("ExclusiveOwnershipPerGeneration", |_, s: &State| {
                let owned: Vec<&(i32, BTreeSet<u32>)> = s
                    .consumers
                    .iter()
                    .filter(|c| c.up)
                    .filter_map(|c| c.owned.as_ref())
                    .collect();
                owned.iter().enumerate().all(|(i, a)| {
                    owned[i + 1..]
                        .iter()
                        .all(|b| a.0 != b.0 || a.1.is_disjoint(&b.1))
                })
            }),
            Property::always("GenerationMonotonic", |_, s: &State| {
                s.max_generation != i32::MAX
            }),
            Property::always("StaleCommitRejected", |_, s: &State| {
                !s.stale_commit_accepted
            }),
            Property::always("NoMemberDroppedWithoutCause", |_, s: &State| {
                !s.member_dropped_without_cause
            }),
            Property::always("OneMemberPerInstance", |_, s: &State| {
                let mut instances: Vec<String> = s
                    .group
                    .describe_members()
                    .into_iter()
                    .filter_map(|m| m.group_instance_id)
                    .collect();
                let all = instances.len();
                instances.sort();
                instances.dedup();
                instances.len() == all
            }),
            Property::sometimes("StableWithAllPartitionsAssigned", |_, s: &State| {
                s.group.state() == GroupState::Stable
                    && s.consumers
                        .iter()
                        .filter(|c| c.up && c.owned.is_some())
                        .count()
                        == 2
                    && s.consumers
                        .iter()
                        .filter_map(|c| c.owned.as_ref())
                        .flat_map(|(_, p)| p.iter().copied())
                        .collect::<BTreeSet<u32>>()
                        .len()
                        == PARTITIONS as usize
            }),
            Property::sometimes("RebalanceAfterDeath", |_, s: &State| {
                s.crashed_then_rebalanced.1
            }),
            Property::sometimes("StaticRejoinWithoutRebalance", |_, s: &State| {
                s.static_rejoin_without_rebalance
            }),
        ]
    }
}

const ALWAYS: &[&str] = &[
    "ExclusiveOwnershipPerGeneration",
    "GenerationMonotonic",
    "StaleCommitRejected",
    "NoMemberDroppedWithoutCause",
    "OneMemberPerInstance",
];
const SOMETIMES: &[&str] = &["StableWithAllPartitionsAssigned", "RebalanceAfterDeath"];

fn model(bugs: GroupBugs) -> GroupModel {
    GroupModel {
        bugs,
        static_members: false,
        crashes_max: 1,
        timeouts_max: 3,
        commits_max: 2,
    }
}

#[test]
fn group_safety_holds_and_examples_are_reached() {
    let depth = std::env::var("RUNNEL_CHECK_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(16);
    let run = check(
        "groups/safety",
        model(GroupBugs::default()),
        depth,
        HasDiscoveries::AnyFailures,
    );
    run.assert_holds(ALWAYS);
    run.assert_reached(SOMETIMES);
}

#[test]
fn seeded_stale_generation_commit_is_caught() {
    let bugs = GroupBugs {
        accept_stale_generation_commit: true,
        ..Default::default()
    };
    check(
        "bug/stale-commit",
        model(bugs),
        16,
        HasDiscoveries::AnyOf(set(&["StaleCommitRejected"])),
    )
    .assert_caught("StaleCommitRejected");
}

#[test]
fn seeded_early_rebalance_completion_is_caught() {
    let bugs = GroupBugs {
        complete_rebalance_early: true,
        ..Default::default()
    };
    check(
        "bug/complete-rebalance-early",
        model(bugs),
        16,
        HasDiscoveries::AnyOf(set(&["NoMemberDroppedWithoutCause"])),
    )
    .assert_caught("NoMemberDroppedWithoutCause");
}

/// Static membership: the same safety, one member per instance id, and a
/// crashed static member's successor rejoins its generation.
#[test]
fn static_membership_safety_holds_and_a_restart_keeps_the_generation() {
    let depth = std::env::var("RUNNEL_CHECK_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(16);
    let model = GroupModel {
        static_members: true,
        ..model(GroupBugs::default())
    };
    let run = check("groups/static", model, depth, HasDiscoveries::AnyFailures);
    run.assert_holds(ALWAYS);
    run.assert_reached(&[
        "StableWithAllPartitionsAssigned",
        "StaticRejoinWithoutRebalance",
    ]);
}

#[test]
fn seeded_kept_replaced_static_member_is_caught() {
    let model = GroupModel {
        static_members: true,
        ..model(GroupBugs {
            keep_replaced_static_member: true,
            ..Default::default()
        })
    };
    check(
        "bug/keep-replaced-static-member",
        model,
        16,
        HasDiscoveries::AnyOf(set(&["OneMemberPerInstance"])),
    )
    .assert_caught("OneMemberPerInstance");
}
