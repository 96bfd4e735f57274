//! The group coordinator of one consumer group, Kafka's classic protocol, as
//! a sans-IO state machine, driven by the node (`runtime/groups.rs`) and
//! model-checked in `tests/groups.rs`.
//!
//! States: Empty → PreparingRebalance → CompletingRebalance → Stable (and
//! Dead). A member joins (first with no id: MEMBER_ID_REQUIRED hands it one),
//! the coordinator waits until every known member has rejoined or the
//! rebalance timeout passed (the first rebalance of an empty group waits
//! `group.initial.rebalance.delay.ms`), then opens a new generation: only
//! the leader gets the member list, the others' SyncGroup waits for the
//! leader's assignment. Heartbeats keep a member's session; a silent member
//! is removed and the group rebalances. Offset commits carry the generation
//! and member id and are refused when stale.
//!
//! Static membership (KIP-345): a member that names a `group.instance.id`
//! joins without MEMBER_ID_REQUIRED, and when a new process comes back
//! under the same instance id (a restart, no LeaveGroup) it takes the old
//! member's place, assignment and all, without a rebalance if the group is
//! Stable. The member id it replaced is fenced: whoever still uses it with
//! that instance id gets FENCED_INSTANCE_ID. At most one member holds an
//! instance id (`OneMemberPerInstance` in the model check).

use crate::core::{Effects, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod offsets_topic;

/// The offsets partition (and so the coordinator) of a group: Kafka's
/// `abs(groupId.hashCode) % offsets.topic.num.partitions`, with Java's
/// String.hashCode over UTF-16 code units, so a group lands on the partition
/// Kafka would pick.
pub fn offsets_partition(group_id: &str, partitions: u32) -> u32 {
    assert!(partitions > 0);
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs as u32 % partitions
}

/// Member ids handed out with MEMBER_ID_REQUIRED and not yet used, kept at most.
pub const PENDING_IDS_MAX: usize = 1024;

/// The most members a group may have, whatever `group.max.size` says. One
/// input (the last member's rejoin) answers every member and re-arms their
/// session timers in one step, about three effects per member, so the
/// bound keeps every input below `EFFECTS_MAX`. Kafka's `group.max.size`
/// defaults to unbounded; Runnel's default and ceiling is this.
pub const GROUP_MAX_SIZE_LIMIT: usize = crate::core::EFFECTS_MAX / 4;
/// Kafka's `offset.metadata.max.bytes` default: a commit's metadata string
/// beyond it gets OFFSET_METADATA_TOO_LARGE (the front end checks it), and a
/// record holding more is no coordinator's.
pub const OFFSET_METADATA_MAX_BYTES_LIMIT: usize = 4096;

/// Kafka's group limits (`group.max.size`, `group.min.session.timeout.ms`,
/// `group.max.session.timeout.ms`), enforced on every JoinGroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupLimits {
    pub max_size: usize,
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            max_size: GROUP_MAX_SIZE_LIMIT,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
        }
    }
}

/// The highest generation a group reaches: one rebalance a second takes 68
/// years to get here; a record claiming more is corrupt.
pub const GENERATION_MAX: i32 = i32::MAX / 2;

fn check_record(record: &GroupRecord) -> Result<(), String> {
    match record {
        GroupRecord::Generation { generation } if !(0..=GENERATION_MAX).contains(generation) => {
            Err(format!("generation {generation} is out of range"))
        }
        // Only names Kafka allows: the live path commits for existing topics
        // alone, so anything else is not a coordinator's record.
        GroupRecord::OffsetsWithoutMetadata { offsets, .. } => {
            for ((topic, _), _) in offsets {
                crate::controller::validate_topic_name(topic).map_err(|e| format!("{e:?}"))?;
            }
            Ok(())
        }
        GroupRecord::Offsets { offsets, .. } => {
            for ((topic, _), o) in offsets {
                crate::controller::validate_topic_name(topic).map_err(|e| format!("{e:?}"))?;
                if o.metadata.len() > OFFSET_METADATA_MAX_BYTES_LIMIT {
                    return Err(format!("{} bytes of offset metadata", o.metadata.len()));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Known mistakes the checker must catch. All off in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupBugs {
    /// Accept an offset commit whatever its generation.
    pub accept_stale_generation_commit: bool,
    /// Complete the join phase as soon as one member has rejoined.
    pub complete_rebalance_early: bool,
    /// A static member's rejoin adds a member instead of replacing the one
    /// holding its instance id (both then hold the instance's partitions).
    pub keep_replaced_static_member: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupConfig {
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u64,
    /// Distinguishes this coordinator's member ids from those of earlier
    /// coordinators of the group (the node passes its leader epoch of the
    /// offsets partition and a load count): an id handed out before a
    /// failover never names a member after it.
    pub incarnation: u64,
    pub limits: GroupLimits,
    pub bugs: GroupBugs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

/// Kafka's error names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GroupError {
    /// Rejoin with this member id (KIP-394).
    MemberIdRequired(String),
    UnknownMemberId,
    IllegalGeneration,
    RebalanceInProgress,
    InconsistentGroupProtocol,
    CoordinatorNotAvailable,
    /// DeleteGroups on a group with members.
    NonEmptyGroup,
    /// A new member of a group at `group.max.size`.
    GroupMaxSizeReached,
    /// The session timeout is outside `group.{min,max}.session.timeout.ms`.
    InvalidSessionTimeout,
    /// The instance id belongs to another member id now (KIP-345): this
    /// member was replaced by a newer process with the same instance id.
    FencedInstanceId,
    /// OffsetDelete of a topic the group's members consume.
    GroupSubscribedToTopic,
    /// OffsetDelete of a deleted (Dead) group.
    GroupIdNotFound,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JoinRequest {
    pub request: RequestId,
    /// Empty on the first join.
    pub member_id: String,
    pub client_id: String,
    /// The member's address as the coordinator saw it (DescribeGroups).
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in the member's preference order.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// `group.instance.id` (JoinGroup v5+): a static member.
    pub group_instance_id: Option<String>,
}

/// One member in the leader's JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// Its subscription for the chosen protocol.
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// The leader alone gets every member's subscription.
    pub members: Vec<JoinMember>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GroupReply {
    Join {
        request: RequestId,
        result: Result<JoinResult, GroupError>,
    },
    Sync {
        request: RequestId,
        result: Result<Vec<u8>, GroupError>,
    },
    Heartbeat {
        request: RequestId,
        result: Result<(), GroupError>,
    },
    Leave {
        request: RequestId,
        result: Result<(), GroupError>,
    },
    Commit {
        request: RequestId,
        result: Result<(), GroupError>,
    },
    Delete {
        request: RequestId,
        result: Result<(), GroupError>,
    },
    /// OffsetDelete: each partition asked, with its own outcome.
    DeleteOffsets {
        request: RequestId,
        result: Result<Vec<PartitionOutcome>, GroupError>,
    },
}

/// One partition of a request that decides per partition.
pub type PartitionOutcome = ((String, u32), Result<(), GroupError>);

impl GroupReply {
    /// The request this answers.
    pub fn request(&self) -> RequestId {
        match self {
            GroupReply::Join { request, .. }
            | GroupReply::Sync { request, .. }
            | GroupReply::Heartbeat { request, .. }
            | GroupReply::Leave { request, .. }
            | GroupReply::Commit { request, .. }
            | GroupReply::Delete { request, .. }
            | GroupReply::DeleteOffsets { request, .. } => *request,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupTimer {
    /// The first rebalance of an empty group waits for more members.
    InitialDelay,
    /// Members that have not rejoined by now are removed.
    RebalanceTimeout,
    /// The member's session expired (no heartbeat).
    Session(String),
}

/// What the coordinator writes to the offsets topic. The caller makes it
/// durable (replicated and committed) before any reply that follows it; a
/// new coordinator rebuilds the group by [`Group::replay`]ing them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupRecord {
    /// Offsets as the first releases wrote them (no metadata, no epoch):
    /// still replayed, never written.
    OffsetsWithoutMetadata {
        generation: i32,
        offsets: Vec<((String, u32), i64)>,
        commit_timestamp_ms: u64,
    },
    /// A generation was opened: after a failover generations go on from it,
    /// so a member of an old generation is never mistaken for a current one.
    Generation { generation: i32 },
    /// DeleteGroups, as releases before the compacted layout wrote it (the
    /// group and all its offsets are gone): still replayed, never written.
    Deleted,
    /// Committed offsets (postcard variant 3: variants are appended, never
    /// reordered, so older records stay readable).
    Offsets {
        generation: i32,
        offsets: Vec<((String, u32), CommittedOffset)>,
        /// The coordinator's clock at the commit (offsets retention).
        commit_timestamp_ms: u64,
    },
    /// OffsetDelete, or offsets expired: these partitions' committed
    /// offsets are gone (Kafka writes a tombstone per partition).
    OffsetsDeleted { partitions: Vec<(String, u32)> },
    /// DeleteGroups: the group, its generation and these offsets (all it
    /// had) are gone. Named partitions, unlike `Deleted`, so that the
    /// offsets topic's compacted layout can write a tombstone for each.
    GroupDeleted { partitions: Vec<(String, u32)> },
}

/// A committed position, as Kafka's OffsetAndMetadata: the offset, the
/// leader epoch of the record before it (-1: unknown; KIP-320) and the
/// client's metadata string (at most `offset.metadata.max.bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl CommittedOffset {
    /// An offset with no epoch and no metadata.
    pub fn bare(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }
}

/// One member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its subscription for the chosen protocol.
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

pub type GroupEffects = Effects<(), GroupTimer, GroupReply, GroupRecord>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
    awaiting_join: Option<RequestId>,
    awaiting_sync: Option<RequestId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    config: GroupConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pending_ids: Vec<String>,
    /// Static members: instance id → the member id holding it (one each).
    static_members: BTreeMap<String, String>,
    next_member: u64,
    offsets: BTreeMap<(String, u32), CommittedOffset>,
    /// When each committed offset was committed (durable, with it): the
    /// group's last commit, for offsets retention, is the newest of its
    /// live offsets', so a replay of the compacted offsets topic (where a
    /// deleted offset's commits are gone) computes the same.
    commit_ms: BTreeMap<(String, u32), u64>,
    /// The first rebalance of an empty group is held until this timer.
    initial_delay_pending: bool,
}

impl Group {
    pub fn new(config: GroupConfig) -> Group {
        Group {
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_ids: Vec::new(),
            static_members: BTreeMap::new(),
            next_member: 0,
            offsets: BTreeMap::new(),
            commit_ms: BTreeMap::new(),
            initial_delay_pending: false,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }
    pub fn committed(&self, topic: &str, partition: u32) -> Option<i64> {
        self.offsets
            .get(&(topic.to_string(), partition))
            .map(|o| o.offset)
    }
    pub fn offsets(&self) -> &BTreeMap<(String, u32), CommittedOffset> {
        &self.offsets
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    pub fn describe_members(&self) -> Vec<MemberDescription> {
        let protocol = self.protocol.as_deref().unwrap_or("");
        self.members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(p, _)| p == protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    /// Rebuilds the durable part of a group (committed offsets, the last
    /// generation) from its records, in log order. Members are not durable:
    /// after a failover they rejoin (their heartbeats get UNKNOWN_MEMBER_ID).
    /// A record no coordinator could have written (a generation near the
    /// end of its range, an offset for a topic name Kafka forbids) is
    /// refused, not applied: the log is input like any other.
    pub fn replay(&mut self, record: &GroupRecord) -> Result<(), String> {
        debug_assert!(self.members.is_empty(), "replay happens before serving");
        check_record(record)?;
        match record {
            GroupRecord::OffsetsWithoutMetadata {
                offsets,
                commit_timestamp_ms,
                ..
            } => {
                for (tp, offset) in offsets {
                    let offset = CommittedOffset::bare(*offset);
                    self.set_offset(tp, offset, *commit_timestamp_ms);
                }
            }
            GroupRecord::Offsets {
                offsets,
                commit_timestamp_ms,
                ..
            } => {
                for (tp, offset) in offsets {
                    self.set_offset(tp, offset.clone(), *commit_timestamp_ms);
                }
            }
            GroupRecord::Generation { generation } => {
                self.generation = self.generation.max(*generation)
            }
            GroupRecord::Deleted => {
                self.take_offsets();
                self.generation = 0;
            }
            GroupRecord::OffsetsDeleted { partitions } => {
                for tp in partitions {
                    self.remove_offset(tp);
                }
            }
            GroupRecord::GroupDeleted { partitions } => {
                for tp in partitions {
                    self.remove_offset(tp);
                }
                self.generation = 0;
            }
        }
        Ok(())
    }

    fn set_offset(&mut self, tp: &(String, u32), offset: CommittedOffset, commit_ms: u64) {
        self.offsets.insert(tp.clone(), offset);
        self.commit_ms.insert(tp.clone(), commit_ms);
    }

    /// Whether there was an offset to remove.
    fn remove_offset(&mut self, tp: &(String, u32)) -> bool {
        self.commit_ms.remove(tp);
        self.offsets.remove(tp).is_some()
    }

    /// Removes every offset; returns their partitions.
    fn take_offsets(&mut self) -> Vec<(String, u32)> {
        self.commit_ms.clear();
        std::mem::take(&mut self.offsets).into_keys().collect()
    }

    /// The newest commit among the live offsets (0 without any).
    pub fn last_commit_ms(&self) -> u64 {
        self.commit_ms.values().copied().max().unwrap_or(0)
    }

    /// A group with neither members nor offsets can be forgotten.
    pub fn is_forgettable(&self) -> bool {
        self.members.is_empty() && self.offsets.is_empty() && self.pending_ids.is_empty()
    }

    // ----- inputs -------------------------------------------------------------

    pub fn on_join(&mut self, j: JoinRequest, out: &mut GroupEffects) {
        let reply = |out: &mut GroupEffects, result| {
            out.reply(GroupReply::Join {
                request: j.request,
                result,
            })
        };
        if self.state == GroupState::Dead {
            return reply(out, Err(GroupError::CoordinatorNotAvailable));
        }
        let limits = self.config.limits;
        if j.session_timeout_ms < limits.min_session_timeout_ms
            || j.session_timeout_ms > limits.max_session_timeout_ms
        {
            return reply(out, Err(GroupError::InvalidSessionTimeout));
        }
        if self
            .protocol_type
            .as_ref()
            .is_some_and(|t| *t != j.protocol_type)
            && !self.members.is_empty()
        {
            return reply(out, Err(GroupError::InconsistentGroupProtocol));
        }
        if let Some(instance) = j.group_instance_id.clone() {
            return self.join_static(j, instance, out);
        }
        if j.member_id.is_empty() {
            // KIP-394: hand out an id; the member rejoins with it.
            let id = self.new_member_id(&j.client_id);
            // Bounded: a client that never comes back with its id must not
            // grow the list forever (Kafka expires them after a session).
            if self.pending_ids.len() >= PENDING_IDS_MAX {
                self.pending_ids.remove(0);
            }
            self.pending_ids.push(id.clone());
            return reply(out, Err(GroupError::MemberIdRequired(id)));
        }
        let known = self.members.contains_key(&j.member_id);
        if !known && !self.pending_ids.contains(&j.member_id) {
            return reply(out, Err(GroupError::UnknownMemberId));
        }
        self.pending_ids.retain(|p| *p != j.member_id);
        // Members already in the group may always rejoin; a new one only
        // while there is room (Kafka's acceptJoiningMember).
        if !known && self.members.len() >= limits.max_size {
            return reply(out, Err(GroupError::GroupMaxSizeReached));
        }
        self.admit(j, out);
    }

    /// A JoinGroup naming a `group.instance.id` (KIP-345). A member that
    /// knows its id must still hold the instance; a new process (no member
    /// id) gets an id at once (no MEMBER_ID_REQUIRED) and takes the place
    /// of the member holding its instance id, if any.
    fn join_static(&mut self, mut j: JoinRequest, instance: String, out: &mut GroupEffects) {
        let reply = |out: &mut GroupEffects, request, result| {
            out.reply(GroupReply::Join { request, result })
        };
        let holder = self.static_members.get(&instance).cloned();
        if !j.member_id.is_empty() {
            return match holder {
                Some(h) if h == j.member_id => self.admit(j, out),
                Some(_) => reply(out, j.request, Err(GroupError::FencedInstanceId)),
                None => reply(out, j.request, Err(GroupError::UnknownMemberId)),
            };
        }
        let id = self.new_member_id(&instance);
        match holder {
            Some(old) if !self.config.bugs.keep_replaced_static_member => {
                self.replace_static(old, id, instance, j, out)
            }
            _ => {
                if self.members.len() >= self.config.limits.max_size {
                    return reply(out, j.request, Err(GroupError::GroupMaxSizeReached));
                }
                self.static_members.insert(instance, id.clone());
                j.member_id = id;
                self.admit(j, out);
            }
        }
    }

    /// A new process under a static member's instance id takes its place:
    /// same assignment, a new member id; the old id is fenced. A Stable
    /// group whose protocol choice does not change answers at once, with
    /// no rebalance (KIP-345's point: a restart does not move partitions);
    /// otherwise the group rebalances (Kafka's
    /// `updateStaticMemberAndRebalance`: in CompletingRebalance the leader
    /// may be assigning to the old id, so a new round is needed).
    fn replace_static(
        &mut self,
        old: String,
        id: String,
        instance: String,
        j: JoinRequest,
        out: &mut GroupEffects,
    ) {
        let mut member = self
            .members
            .remove(&old)
            .expect("an instance id's holder is a member");
        out.cancel_timer(GroupTimer::Session(old.clone()));
        if let Some(request) = member.awaiting_join.take() {
            out.reply(GroupReply::Join {
                request,
                result: Err(GroupError::FencedInstanceId),
            });
        }
        if let Some(request) = member.awaiting_sync.take() {
            out.reply(GroupReply::Sync {
                request,
                result: Err(GroupError::FencedInstanceId),
            });
        }
        member.client_id = j.client_id;
        member.client_host = j.client_host;
        member.session_timeout_ms = j.session_timeout_ms;
        member.rebalance_timeout_ms = j.rebalance_timeout_ms;
        member.protocols = j.protocols;
        self.members.insert(id.clone(), member);
        self.static_members.insert(instance, id.clone());
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(id.clone());
        }
        out.set_timer(GroupTimer::Session(id.clone()), j.session_timeout_ms);
        let unchanged = self.choose_protocol() == self.protocol;
        match self.state {
            GroupState::Stable if unchanged => {
                let protocol = self
                    .protocol
                    .clone()
                    .expect("a Stable group has a protocol");
                let leader = self.leader.clone().expect("a Stable group has a leader");
                let members = match leader == id {
                    true => self.subscriptions(&protocol),
                    false => Vec::new(),
                };
                out.reply(GroupReply::Join {
                    request: j.request,
                    result: Ok(JoinResult {
                        generation: self.generation,
                        protocol,
                        leader,
                        member_id: id,
                        members,
                    }),
                });
            }
            GroupState::PreparingRebalance => {
                self.member_mut(&id).awaiting_join = Some(j.request);
                self.maybe_complete_join(out);
            }
            _ => {
                self.member_mut(&id).awaiting_join = Some(j.request);
                self.prepare_rebalance(out);
            }
        }
    }

    fn member_mut(&mut self, id: &str) -> &mut Member {
        self.members.get_mut(id).expect("the member was just added")
    }

    /// A member id no coordinator of this group handed out before: the
    /// prefix (client id, or instance id for a static member, as Kafka),
    /// this coordinator's incarnation, a counter.
    fn new_member_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}-{}-{}", self.config.incarnation, self.next_member);
        self.next_member += 1;
        id
    }

    /// Adds or updates the member `j.member_id` and (re)starts a rebalance
    /// round with it.
    fn admit(&mut self, j: JoinRequest, out: &mut GroupEffects) {
        self.protocol_type = Some(j.protocol_type.clone());
        let member = self
            .members
            .entry(j.member_id.clone())
            .or_insert_with(|| Member {
                instance_id: j.group_instance_id.clone(),
                client_id: j.client_id.clone(),
                client_host: j.client_host.clone(),
                session_timeout_ms: j.session_timeout_ms,
                rebalance_timeout_ms: j.rebalance_timeout_ms,
                protocols: Vec::new(),
                assignment: Vec::new(),
                awaiting_join: None,
                awaiting_sync: None,
            });
        member.protocols = j.protocols;
        member.session_timeout_ms = j.session_timeout_ms;
        member.rebalance_timeout_ms = j.rebalance_timeout_ms;
        member.awaiting_join = Some(j.request);
        out.set_timer(
            GroupTimer::Session(j.member_id.clone()),
            j.session_timeout_ms,
        );
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(out),
            _ => self.prepare_rebalance(out),
        }
    }

    /// Kafka's `isStaticMemberFenced`: the request names an instance id
    /// that another member id holds now.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|holder| holder != member_id)
    }

    pub fn on_sync(
        &mut self,
        request: RequestId,
        member: (&str, Option<&str>),
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        out: &mut GroupEffects,
    ) {
        let reply =
            |out: &mut GroupEffects, result| out.reply(GroupReply::Sync { request, result });
        let (member_id, instance_id) = member;
        if self.fenced(member_id, instance_id) {
            return reply(out, Err(GroupError::FencedInstanceId));
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return reply(out, Err(GroupError::UnknownMemberId));
        };
        if generation != self.generation {
            return reply(out, Err(GroupError::IllegalGeneration));
        }
        match self.state {
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {
                reply(out, Err(GroupError::RebalanceInProgress))
            }
            GroupState::Stable => reply(out, Ok(member.assignment.clone())),
            GroupState::CompletingRebalance => {
                member.awaiting_sync = Some(request);
                if self.leader.as_deref() == Some(member_id) {
                    for (id, assignment) in assignments {
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    self.state = GroupState::Stable;
                    self.answer_syncs(out);
                }
            }
        }
    }

    pub fn on_heartbeat(
        &mut self,
        request: RequestId,
        member: (&str, Option<&str>),
        generation: i32,
        out: &mut GroupEffects,
    ) {
        let (member_id, instance_id) = member;
        let result = match self.members.get(member_id) {
            _ if self.fenced(member_id, instance_id) => Err(GroupError::FencedInstanceId),
            None => Err(GroupError::UnknownMemberId),
            Some(_) if generation != self.generation => Err(GroupError::IllegalGeneration),
            Some(m) => {
                out.set_timer(
                    GroupTimer::Session(member_id.to_string()),
                    m.session_timeout_ms,
                );
                match self.state {
                    GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
                    _ => Ok(()),
                }
            }
        };
        out.reply(GroupReply::Heartbeat { request, result });
    }

    /// LeaveGroup. From v3 a member may be named by its instance id alone
    /// (an empty member id: `kafka-consumer-groups`-style removal of a
    /// static member); naming both, they must match.
    pub fn on_leave(
        &mut self,
        request: RequestId,
        member: (&str, Option<&str>),
        out: &mut GroupEffects,
    ) {
        let (member_id, instance_id) = member;
        let reply =
            |out: &mut GroupEffects, result| out.reply(GroupReply::Leave { request, result });
        let id = match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(holder) if member_id.is_empty() || holder == member_id => holder.clone(),
            Some(_) => return reply(out, Err(GroupError::FencedInstanceId)),
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return reply(out, Err(GroupError::UnknownMemberId));
        }
        self.remove_member(&id, out);
        out.reply(GroupReply::Leave {
            request,
            result: Ok(()),
        });
    }

    /// `generation` -1 with an empty member id is a standalone consumer.
    /// `now_ms` is the caller's clock (for offsets retention).
    pub fn on_commit(
        &mut self,
        request: RequestId,
        member: (&str, Option<&str>),
        generation: i32,
        offsets: Vec<((String, u32), CommittedOffset)>,
        now_ms: u64,
        out: &mut GroupEffects,
    ) {
        let (member_id, instance_id) = member;
        let result = match self.fenced(member_id, instance_id) {
            true => Err(GroupError::FencedInstanceId),
            false => self.check_commit(member_id, generation),
        };
        if result.is_ok() {
            for (tp, offset) in &offsets {
                self.set_offset(tp, offset.clone(), now_ms);
            }
            out.persist(GroupRecord::Offsets {
                generation,
                offsets,
                commit_timestamp_ms: now_ms,
            });
        }
        out.reply(GroupReply::Commit { request, result });
    }

    /// Kafka's `offsets.retention.minutes` (KIP-211): the offsets of a group
    /// without members expire once nothing was committed for `retention_ms`.
    /// Returns whether they expired.
    pub fn on_retention_check(
        &mut self,
        now_ms: u64,
        retention_ms: u64,
        out: &mut GroupEffects,
    ) -> bool {
        let idle = self.state == GroupState::Empty && self.members.is_empty();
        let expired = now_ms >= self.last_commit_ms().saturating_add(retention_ms);
        if !idle || !expired || self.offsets.is_empty() {
            return false;
        }
        let partitions = self.take_offsets();
        out.persist(GroupRecord::OffsetsDeleted { partitions });
        true
    }

    /// DeleteGroups: only a group without members may go.
    pub fn on_delete(&mut self, request: RequestId, out: &mut GroupEffects) {
        if !self.members.is_empty() {
            return out.reply(GroupReply::Delete {
                request,
                result: Err(GroupError::NonEmptyGroup),
            });
        }
        let partitions = self.take_offsets();
        self.generation = 0;
        self.state = GroupState::Dead;
        out.persist(GroupRecord::GroupDeleted { partitions });
        out.reply(GroupReply::Delete {
            request,
            result: Ok(()),
        });
    }

    /// OffsetDelete (KIP-496): an Empty group loses the offsets asked for;
    /// a consumer group with members keeps those of the topics it is
    /// subscribed to (GROUP_SUBSCRIBED_TO_TOPIC for each), and loses the
    /// rest; a group of another protocol type with members refuses
    /// (NON_EMPTY_GROUP). Which topics a member's subscription names is the
    /// caller's to read (`subscribed_topics`: the consumer protocol's
    /// encoding; None when it does not parse, and then, as Kafka does,
    /// every topic counts as subscribed).
    pub fn on_delete_offsets(
        &mut self,
        request: RequestId,
        partitions: Vec<(String, u32)>,
        subscribed_topics: &dyn Fn(&[u8]) -> Option<Vec<String>>,
        out: &mut GroupEffects,
    ) {
        let reply = |out: &mut GroupEffects, result| {
            out.reply(GroupReply::DeleteOffsets { request, result })
        };
        let subscribed = match self.state {
            GroupState::Dead => return reply(out, Err(GroupError::GroupIdNotFound)),
            GroupState::Empty => Some(Vec::new()),
            _ if self.protocol_type.as_deref() == Some("consumer") => {
                self.subscribed_topics(subscribed_topics)
            }
            _ => return reply(out, Err(GroupError::NonEmptyGroup)),
        };
        let consumed = |topic: &str| {
            subscribed
                .as_ref()
                .is_none_or(|s| s.iter().any(|t| t == topic))
        };
        let mut outcomes = Vec::with_capacity(partitions.len());
        let mut deleted = Vec::new();
        for tp in partitions {
            if consumed(&tp.0) {
                outcomes.push((tp, Err(GroupError::GroupSubscribedToTopic)));
                continue;
            }
            if self.remove_offset(&tp) {
                deleted.push(tp.clone());
            }
            outcomes.push((tp, Ok(())));
        }
        if !deleted.is_empty() {
            out.persist(GroupRecord::OffsetsDeleted {
                partitions: deleted,
            });
        }
        reply(out, Ok(outcomes));
    }

    /// Every topic a member's subscription for the chosen protocol names;
    /// None if any does not parse.
    fn subscribed_topics(
        &self,
        parse: &dyn Fn(&[u8]) -> Option<Vec<String>>,
    ) -> Option<Vec<String>> {
        let protocol = self.protocol.as_deref()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            let (_, metadata) = m.protocols.iter().find(|(p, _)| p == protocol)?;
            topics.extend(parse(metadata)?);
        }
        Some(topics)
    }

    pub fn on_timer(&mut self, timer: GroupTimer, out: &mut GroupEffects) {
        match timer {
            GroupTimer::InitialDelay if self.state == GroupState::PreparingRebalance => {
                self.complete_join(out)
            }
            GroupTimer::RebalanceTimeout if self.state == GroupState::PreparingRebalance => {
                // Members that did not rejoin in time leave the group.
                let late: Vec<String> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.awaiting_join.is_none())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in late {
                    self.forget_member(&id, out);
                }
                self.complete_join(out);
            }
            GroupTimer::Session(id) if self.members.contains_key(&id) => {
                self.remove_member(&id, out)
            }
            _ => {}
        }
    }

    // ----- rules --------------------------------------------------------------

    fn check_commit(&self, member_id: &str, generation: i32) -> Result<(), GroupError> {
        if self.config.bugs.accept_stale_generation_commit {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() {
            // Standalone (assign()) consumers may commit while nobody is in the group.
            return match self.members.is_empty() {
                true => Ok(()),
                false => Err(GroupError::UnknownMemberId),
            };
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    fn prepare_rebalance(&mut self, out: &mut GroupEffects) {
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        // Members waiting in SyncGroup learn they must rejoin.
        for m in self.members.values_mut() {
            if let Some(request) = m.awaiting_sync.take() {
                out.reply(GroupReply::Sync {
                    request,
                    result: Err(GroupError::RebalanceInProgress),
                });
            }
        }
        if was_empty && self.config.initial_rebalance_delay_ms > 0 {
            self.initial_delay_pending = true;
            out.set_timer(
                GroupTimer::InitialDelay,
                self.config.initial_rebalance_delay_ms,
            );
        } else {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0);
            out.set_timer(GroupTimer::RebalanceTimeout, timeout);
            self.maybe_complete_join(out);
        }
    }

    /// The join phase ends once every known member has rejoined.
    fn maybe_complete_join(&mut self, out: &mut GroupEffects) {
        let all = self.members.values().all(|m| m.awaiting_join.is_some());
        let any = self.members.values().any(|m| m.awaiting_join.is_some());
        let early = self.config.bugs.complete_rebalance_early && any;
        // While the initial delay runs, its timer completes the join.
        if (all || early) && !self.members.is_empty() && !self.initial_delay_pending {
            self.complete_join(out);
        }
    }

    fn complete_join(&mut self, out: &mut GroupEffects) {
        self.initial_delay_pending = false;
        out.cancel_timer(GroupTimer::RebalanceTimeout);
        out.cancel_timer(GroupTimer::InitialDelay);
        // Who did not rejoin is not part of the new generation.
        let late: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &late {
            self.forget_member(id, out);
        }
        // Below GENERATION_MAX by construction (replay refuses more); a
        // generation never wraps to a value an old member could hold.
        self.generation = self.generation.saturating_add(1).min(GENERATION_MAX);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.leader = None;
            self.protocol = None;
            return;
        }
        self.protocol = self.choose_protocol();
        let Some(protocol) = self.protocol.clone() else {
            for m in self.members.values_mut() {
                if let Some(request) = m.awaiting_join.take() {
                    out.reply(GroupReply::Join {
                        request,
                        result: Err(GroupError::InconsistentGroupProtocol),
                    });
                }
            }
            self.state = GroupState::Empty;
            return;
        };
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().expect("members exist");
        self.state = GroupState::CompletingRebalance;
        // Durable before anyone hears of it (the caller holds the replies).
        out.persist(GroupRecord::Generation {
            generation: self.generation,
        });
        let subscriptions = self.subscriptions(&protocol);
        for (id, m) in self.members.iter_mut() {
            m.assignment.clear();
            let Some(request) = m.awaiting_join.take() else {
                continue;
            };
            let members = if *id == leader {
                subscriptions.clone()
            } else {
                Vec::new()
            };
            let result = JoinResult {
                generation: self.generation,
                protocol: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members,
            };
            out.reply(GroupReply::Join {
                request,
                result: Ok(result),
            });
        }
        debug_assert!(self.members.values().all(|m| m.awaiting_join.is_none()));
    }

    /// Every member's subscription for `protocol`: what the leader assigns from.
    fn subscriptions(&self, protocol: &str) -> Vec<JoinMember> {
        self.members
            .iter()
            .map(|(id, m)| JoinMember {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(p, _)| p == protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The first protocol of the leader's (or first member's) list that every
    /// member supports.
    fn choose_protocol(&self) -> Option<String> {
        let first = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())?;
        first
            .protocols
            .iter()
            .map(|(p, _)| p)
            .find(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(q, _)| q == *p))
            })
            .cloned()
    }

    fn answer_syncs(&mut self, out: &mut GroupEffects) {
        for m in self.members.values_mut() {
            if let Some(request) = m.awaiting_sync.take() {
                out.reply(GroupReply::Sync {
                    request,
                    result: Ok(m.assignment.clone()),
                });
            }
        }
    }

    /// Drops a member and what refers to it (its session timer, its
    /// instance id), answering nothing and starting no rebalance.
    fn forget_member(&mut self, id: &str, out: &mut GroupEffects) -> Option<Member> {
        let m = self.members.remove(id)?;
        out.cancel_timer(GroupTimer::Session(id.to_string()));
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).is_some_and(|h| h == id) {
                self.static_members.remove(instance);
            }
        }
        Some(m)
    }

    fn remove_member(&mut self, id: &str, out: &mut GroupEffects) {
        let Some(m) = self.forget_member(id, out) else {
            return;
        };
        if let Some(request) = m.awaiting_join {
            out.reply(GroupReply::Join {
                request,
                result: Err(GroupError::UnknownMemberId),
            });
        }
        if let Some(request) = m.awaiting_sync {
            out.reply(GroupReply::Sync {
                request,
                result: Err(GroupError::UnknownMemberId),
            });
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(out),
            GroupState::PreparingRebalance => self.maybe_complete_join(out),
            GroupState::Empty | GroupState::Dead => {}
        }
        if self.members.is_empty() && self.state == GroupState::PreparingRebalance {
            self.complete_join(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Effect;

    fn group(delay_ms: u64) -> Group {
        Group::new(GroupConfig {
            initial_rebalance_delay_ms: delay_ms,
            incarnation: 0,
            limits: GroupLimits::default(),
            bugs: GroupBugs::default(),
        })
    }

    fn join(g: &mut Group, request: RequestId, member: &str) -> Vec<GroupReply> {
        let mut out = GroupEffects::new();
        g.on_join(
            JoinRequest {
                request,
                member_id: member.into(),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 300_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), member.as_bytes().to_vec())],
                group_instance_id: None,
            },
            &mut out,
        );
        replies(&mut out)
    }

    fn replies(out: &mut GroupEffects) -> Vec<GroupReply> {
        out.drain()
            .filter_map(|e| {
                if let Effect::Reply(r) = e {
                    Some(r)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id.
    fn new_member(g: &mut Group, request: RequestId) -> String {
        match &join(g, request, "")[..] {
            [GroupReply::Join {
                result: Err(GroupError::MemberIdRequired(id)),
                ..
            }] => id.clone(),
            other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
        }
    }

    /// group.max.size: a new member of a full group is refused, a member
    /// already in it rejoins; a full group at the ceiling answers every
    /// member of a rebalance within EFFECTS_MAX.
    #[test]
    fn group_max_size_refuses_new_members_only() {
        let mut g = Group::new(GroupConfig {
            initial_rebalance_delay_ms: 0,
            incarnation: 0,
            limits: GroupLimits {
                max_size: 2,
                ..GroupLimits::default()
            },
            bugs: GroupBugs::default(),
        });
        let a = new_member(&mut g, 1);
        join(&mut g, 2, &a);
        let b = new_member(&mut g, 3);
        join(&mut g, 4, &b);
        let c = new_member(&mut g, 5);
        assert_eq!(
            join(&mut g, 6, &c),
            vec![GroupReply::Join {
                request: 6,
                result: Err(GroupError::GroupMaxSizeReached)
            }]
        );
        assert_eq!(g.members().count(), 2);
        join(&mut g, 7, &a);
        assert!(g.members().any(|m| m == a), "a member of the group rejoins");

        let mut big = group(0);
        let ids: Vec<String> = (0..GROUP_MAX_SIZE_LIMIT as u64)
            .map(|i| new_member(&mut big, i))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            join(&mut big, 10_000 + i as u64, id);
        }
        assert_eq!(big.members().count(), GROUP_MAX_SIZE_LIMIT);
        // Everyone rejoins a rebalance; the last join answers them all.
        for (i, id) in ids.iter().enumerate() {
            join(&mut big, 20_000 + i as u64, id);
        }
        let extra = new_member(&mut big, 30_000);
        assert!(matches!(
            &join(&mut big, 30_001, &extra)[..],
            [GroupReply::Join {
                result: Err(GroupError::GroupMaxSizeReached),
                ..
            }]
        ));
    }

    /// Records no coordinator writes are refused on replay, and a group at
    /// the generation ceiling stays there instead of overflowing.
    #[test]
    fn replay_refuses_impossible_records() {
        let mut g = group(0);
        assert!(g
            .replay(&GroupRecord::Generation {
                generation: i32::MAX
            })
            .is_err());
        let long_name = GroupRecord::Offsets {
            generation: 1,
            offsets: vec![(("t".repeat(100_000), 0), CommittedOffset::bare(5))],
            commit_timestamp_ms: 0,
        };
        assert!(g.replay(&long_name).is_err());
        assert!(g.offsets().is_empty());
        g.replay(&GroupRecord::Generation {
            generation: GENERATION_MAX,
        })
        .unwrap();
        let a = new_member(&mut g, 1);
        let r = join(&mut g, 2, &a);
        assert!(
            matches!(&r[..], [GroupReply::Join { result: Ok(j), .. }] if j.generation == GENERATION_MAX)
        );
    }

    #[test]
    fn session_timeouts_outside_the_bounds_are_refused() {
        let mut g = group(0);
        for (timeout, ok) in [
            (5_999, false),
            (6_000, true),
            (1_800_000, true),
            (1_800_001, false),
        ] {
            let mut out = GroupEffects::new();
            g.on_join(
                JoinRequest {
                    request: 1,
                    member_id: String::new(),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: timeout,
                    rebalance_timeout_ms: 300_000,
                    protocol_type: "consumer".into(),
                    protocols: vec![],
                    group_instance_id: None,
                },
                &mut out,
            );
            let refused = replies(&mut out).iter().any(|r| {
                matches!(
                    r,
                    GroupReply::Join {
                        result: Err(GroupError::InvalidSessionTimeout),
                        ..
                    }
                )
            });
            assert_eq!(refused, !ok, "session timeout {timeout}");
        }
    }

    #[test]
    fn two_members_form_a_generation_and_only_the_leader_gets_the_members() {
        let mut g = group(0);
        let a = new_member(&mut g, 1);
        let b = new_member(&mut g, 2);
        let first = join(&mut g, 3, &a);
        // a's join completed a generation alone (no initial delay): b joins a rebalance.
        assert!(
            matches!(&first[..], [GroupReply::Join { result: Ok(r), .. }] if r.generation == 1 && r.leader == a)
        );
        let mut out = GroupEffects::new();
        g.on_sync(
            4,
            (&a, None),
            1,
            vec![(a.clone(), b"p0".to_vec())],
            &mut out,
        );
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Sync {
                request: 4,
                result: Ok(b"p0".to_vec())
            }]
        );
        assert_eq!(g.state(), GroupState::Stable);
        join(&mut g, 5, &b);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let mut out = GroupEffects::new();
        g.on_heartbeat(6, (&a, None), 1, &mut out);
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Heartbeat {
                request: 6,
                result: Err(GroupError::RebalanceInProgress)
            }]
        );
        let done = join(&mut g, 7, &a);
        assert_eq!(done.len(), 2, "both joins answered: {done:?}");
        for r in &done {
            let GroupReply::Join { result: Ok(r), .. } = r else {
                panic!("{r:?}")
            };
            assert_eq!(r.generation, 2);
            assert_eq!(
                r.members.len(),
                if r.member_id == a { 2 } else { 0 },
                "only the leader gets the member list"
            );
        }
        // b's SyncGroup waits for the leader's assignment.
        let mut out = GroupEffects::new();
        g.on_sync(8, (&b, None), 2, vec![], &mut out);
        assert!(replies(&mut out).is_empty());
        g.on_sync(
            9,
            (&a, None),
            2,
            vec![(a.clone(), b"p0".to_vec()), (b.clone(), b"p1".to_vec())],
            &mut out,
        );
        let r = replies(&mut out);
        assert!(r.contains(&GroupReply::Sync {
            request: 8,
            result: Ok(b"p1".to_vec())
        }));
        assert!(r.contains(&GroupReply::Sync {
            request: 9,
            result: Ok(b"p0".to_vec())
        }));
    }

    fn join_static(
        g: &mut Group,
        request: RequestId,
        member: &str,
        instance: &str,
    ) -> Vec<GroupReply> {
        let mut out = GroupEffects::new();
        g.on_join(
            JoinRequest {
                request,
                member_id: member.into(),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 300_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), instance.as_bytes().to_vec())],
                group_instance_id: Some(instance.into()),
            },
            &mut out,
        );
        replies(&mut out)
    }

    fn joined(replies: &[GroupReply]) -> JoinResult {
        match replies {
            [GroupReply::Join { result: Ok(r), .. }] => r.clone(),
            other => panic!("expected one successful join, got {other:?}"),
        }
    }

    /// Two static members in a Stable group; returns their member ids.
    fn stable_static_pair(g: &mut Group) -> (String, String) {
        let a = joined(&join_static(g, 1, "", "ia")).member_id;
        let mut out = GroupEffects::new();
        g.on_sync(
            2,
            (&a, Some("ia")),
            1,
            vec![(a.clone(), b"all".to_vec())],
            &mut out,
        );
        let first_b = join_static(g, 3, "", "ib");
        assert!(first_b.is_empty(), "b waits for a to rejoin: {first_b:?}");
        let both = join_static(g, 4, &a, "ia");
        assert_eq!(both.len(), 2, "{both:?}");
        let b = g.members().find(|m| *m != a).unwrap().to_string();
        g.on_sync(
            5,
            (&a, Some("ia")),
            2,
            vec![(a.clone(), b"p0".to_vec()), (b.clone(), b"p1".to_vec())],
            &mut out,
        );
        g.on_sync(6, (&b, Some("ib")), 2, vec![], &mut out);
        assert_eq!(g.state(), GroupState::Stable);
        (a, b)
    }

    /// KIP-345: a static member joins without MEMBER_ID_REQUIRED; a new
    /// process under its instance id takes its place and assignment in a
    /// Stable group without a rebalance; the old id is fenced everywhere.
    #[test]
    fn a_static_member_restart_keeps_its_assignment_without_a_rebalance() {
        let mut g = group(0);
        let (a, b) = stable_static_pair(&mut g);
        assert!(a.starts_with("ia-") && b.starts_with("ib-"), "{a} {b}");
        let rejoined = joined(&join_static(&mut g, 10, "", "ib"));
        assert_ne!(rejoined.member_id, b);
        assert_eq!(rejoined.generation, 2, "no new generation");
        assert!(
            rejoined.members.is_empty(),
            "not the leader: no member list"
        );
        assert_eq!(g.state(), GroupState::Stable);
        let mut out = GroupEffects::new();
        g.on_sync(11, (&rejoined.member_id, Some("ib")), 2, vec![], &mut out);
        g.on_heartbeat(12, (&a, Some("ia")), 2, &mut out);
        g.on_heartbeat(13, (&b, Some("ib")), 2, &mut out);
        g.on_commit(14, (&b, Some("ib")), 2, vec![], 0, &mut out);
        assert_eq!(
            replies(&mut out),
            vec![
                GroupReply::Sync {
                    request: 11,
                    result: Ok(b"p1".to_vec())
                },
                GroupReply::Heartbeat {
                    request: 12,
                    result: Ok(())
                },
                GroupReply::Heartbeat {
                    request: 13,
                    result: Err(GroupError::FencedInstanceId)
                },
                GroupReply::Commit {
                    request: 14,
                    result: Err(GroupError::FencedInstanceId)
                },
            ]
        );
        let described = g.describe_members();
        assert_eq!(described.len(), 2);
        assert!(described
            .iter()
            .any(|m| m.member_id == rejoined.member_id
                && m.group_instance_id.as_deref() == Some("ib")));
        // The old id rejoining with the instance id is fenced too.
        assert!(matches!(
            &join_static(&mut g, 15, &b, "ib")[..],
            [GroupReply::Join {
                result: Err(GroupError::FencedInstanceId),
                ..
            }]
        ));
    }

    /// The leader's restart hands the new process the member list (it is
    /// the leader still), and a static member removed by instance id alone
    /// (LeaveGroup v3+) starts a rebalance and frees the instance id.
    #[test]
    fn a_static_leader_restarts_and_a_static_member_leaves_by_instance_id() {
        let mut g = group(0);
        let (a, _b) = stable_static_pair(&mut g);
        let rejoined = joined(&join_static(&mut g, 10, "", "ia"));
        assert_eq!(g.leader(), Some(rejoined.member_id.as_str()));
        assert_eq!(rejoined.members.len(), 2);
        assert!(rejoined
            .members
            .iter()
            .all(|m| m.group_instance_id.is_some()));
        let mut out = GroupEffects::new();
        g.on_leave(20, (&a, Some("ia")), &mut out);
        g.on_leave(21, ("", Some("ib")), &mut out);
        let r = replies(&mut out);
        assert_eq!(
            r[0],
            GroupReply::Leave {
                request: 20,
                result: Err(GroupError::FencedInstanceId)
            }
        );
        assert!(r.contains(&GroupReply::Leave {
            request: 21,
            result: Ok(())
        }));
        assert_eq!(g.members().count(), 1);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        // ib is free again: a new process joins as a new member.
        let waits = join_static(&mut g, 22, "", "ib");
        assert!(
            waits.is_empty(),
            "it waits for the leader to rejoin: {waits:?}"
        );
        assert_eq!(g.members().count(), 2);
    }

    /// KIP-496: an Empty group loses the offsets asked for (recorded, so a
    /// replay agrees); with members, the offsets of subscribed topics stay
    /// (GROUP_SUBSCRIBED_TO_TOPIC) and the others go; an unparsable
    /// subscription counts as subscribed to everything.
    #[test]
    fn offset_delete_spares_the_topics_a_live_group_consumes() {
        let parse = |m: &[u8]| -> Option<Vec<String>> {
            let text = std::str::from_utf8(m).ok()?.strip_prefix("topics:")?;
            Some(text.split(',').map(String::from).collect())
        };
        let mut g = group(0);
        let mut out = GroupEffects::new();
        let offsets = vec![
            (("t".into(), 0), CommittedOffset::bare(5)),
            (("u".into(), 0), CommittedOffset::bare(6)),
        ];
        g.on_commit(1, ("", None), -1, offsets, 0, &mut out);
        out.drain().for_each(drop);
        let a = new_member(&mut g, 2);
        let join_a = |g: &mut Group, request, metadata: &[u8]| {
            let mut out = GroupEffects::new();
            g.on_join(
                JoinRequest {
                    request,
                    member_id: a.clone(),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 300_000,
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), metadata.to_vec())],
                    group_instance_id: None,
                },
                &mut out,
            );
        };
        join_a(&mut g, 3, b"topics:t");
        let asked = vec![("t".to_string(), 0), ("u".to_string(), 0)];
        g.on_delete_offsets(4, asked.clone(), &parse, &mut out);
        let records: Vec<GroupRecord> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Persist(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::DeleteOffsets {
                request: 4,
                result: Ok(vec![
                    (asked[0].clone(), Err(GroupError::GroupSubscribedToTopic)),
                    (asked[1].clone(), Ok(())),
                ])
            }]
        );
        assert_eq!((g.committed("t", 0), g.committed("u", 0)), (Some(5), None));
        let mut replayed = group(0);
        replayed
            .replay(&GroupRecord::Offsets {
                generation: -1,
                offsets: vec![
                    (("t".into(), 0), CommittedOffset::bare(5)),
                    (("u".into(), 0), CommittedOffset::bare(6)),
                ],
                commit_timestamp_ms: 0,
            })
            .unwrap();
        for r in &records {
            replayed.replay(r).unwrap();
        }
        assert_eq!(replayed.offsets(), g.offsets(), "a replay agrees");
        // A subscription that does not parse protects every topic.
        join_a(&mut g, 5, b"\xff\x00");
        g.on_delete_offsets(6, asked[..1].to_vec(), &parse, &mut out);
        assert!(matches!(
            &replies(&mut out)[..],
            [GroupReply::DeleteOffsets { result: Ok(r), .. }] if r[0].1 == Err(GroupError::GroupSubscribedToTopic)
        ));
        // Empty again: everything asked for goes.
        g.on_leave(7, (&a, None), &mut out);
        out.drain().for_each(drop);
        assert_eq!(g.state(), GroupState::Empty);
        g.on_delete_offsets(8, asked.clone(), &parse, &mut out);
        assert!(matches!(
            &replies(&mut out)[..],
            [GroupReply::DeleteOffsets { result: Ok(r), .. }] if r.iter().all(|(_, e)| e.is_ok())
        ));
        assert!(g.offsets().is_empty());
    }

    #[test]
    fn stale_commits_are_refused_and_standalone_commits_need_an_empty_group() {
        let mut g = group(0);
        let mut out = GroupEffects::new();
        g.on_commit(
            1,
            ("", None),
            -1,
            vec![(("t".into(), 0), CommittedOffset::bare(5))],
            0,
            &mut out,
        );
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Commit {
                request: 1,
                result: Ok(())
            }]
        );
        let a = new_member(&mut g, 2);
        join(&mut g, 3, &a);
        g.on_commit(
            4,
            (&a, None),
            1,
            vec![(("t".into(), 0), CommittedOffset::bare(6))],
            0,
            &mut out,
        );
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Commit {
                request: 4,
                result: Err(GroupError::RebalanceInProgress)
            }]
        );
        g.on_sync(5, (&a, None), 1, vec![], &mut out);
        out.drain().for_each(drop);
        g.on_commit(
            6,
            (&a, None),
            0,
            vec![(("t".into(), 0), CommittedOffset::bare(7))],
            0,
            &mut out,
        );
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Commit {
                request: 6,
                result: Err(GroupError::IllegalGeneration)
            }]
        );
        g.on_commit(
            7,
            ("", None),
            -1,
            vec![(("t".into(), 0), CommittedOffset::bare(8))],
            0,
            &mut out,
        );
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Commit {
                request: 7,
                result: Err(GroupError::UnknownMemberId)
            }]
        );
        g.on_commit(
            8,
            (&a, None),
            1,
            vec![(("t".into(), 0), CommittedOffset::bare(9))],
            0,
            &mut out,
        );
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Commit {
                request: 8,
                result: Ok(())
            }]
        );
        assert_eq!(g.committed("t", 0), Some(9));
    }

    #[test]
    fn a_silent_member_is_removed_and_the_group_rebalances() {
        let mut g = group(0);
        let a = new_member(&mut g, 1);
        join(&mut g, 2, &a);
        let mut out = GroupEffects::new();
        g.on_sync(3, (&a, None), 1, vec![], &mut out);
        let b = new_member(&mut g, 4);
        join(&mut g, 5, &b);
        join(&mut g, 6, &a);
        g.on_sync(7, (&a, None), 2, vec![], &mut out);
        assert_eq!(g.state(), GroupState::Stable);
        g.on_timer(GroupTimer::Session(b.clone()), &mut out);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.members().collect::<Vec<_>>(), vec![a.as_str()]);
        let r = join(&mut g, 8, &a);
        assert!(matches!(&r[..], [GroupReply::Join { result: Ok(r), .. }] if r.generation == 3));
    }

    #[test]
    fn the_first_rebalance_of_an_empty_group_waits_for_the_initial_delay() {
        let mut g = group(3_000);
        let a = new_member(&mut g, 1);
        let b = new_member(&mut g, 2);
        assert!(join(&mut g, 3, &a).is_empty(), "held for the initial delay");
        assert!(join(&mut g, 4, &b).is_empty());
        let mut out = GroupEffects::new();
        g.on_timer(GroupTimer::InitialDelay, &mut out);
        let r = replies(&mut out);
        assert_eq!(r.len(), 2, "one generation with both members: {r:?}");
        assert_eq!(g.generation(), 1);
    }

    #[test]
    fn seeded_bugs_change_the_outcome() {
        let mut g = Group::new(GroupConfig {
            initial_rebalance_delay_ms: 0,
            incarnation: 0,
            limits: GroupLimits::default(),
            bugs: GroupBugs {
                accept_stale_generation_commit: true,
                ..Default::default()
            },
        });
        let a = new_member(&mut g, 1);
        join(&mut g, 2, &a);
        let mut out = GroupEffects::new();
        g.on_commit(3, (&a, None), 0, vec![], 0, &mut out);
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Commit {
                request: 3,
                result: Ok(())
            }],
            "the stale commit is (wrongly) accepted"
        );
    }

    #[test]
    fn offsets_of_an_empty_group_expire_after_the_retention() {
        let mut g = group(0);
        let mut out = GroupEffects::new();
        g.on_commit(
            1,
            ("", None),
            -1,
            vec![(("t".into(), 0), CommittedOffset::bare(5))],
            1_000,
            &mut out,
        );
        assert!(!g.on_retention_check(60_999, 60_000, &mut out));
        assert_eq!(g.committed("t", 0), Some(5));
        out.drain().for_each(drop);
        assert!(g.on_retention_check(61_000, 60_000, &mut out));
        assert_eq!(g.committed("t", 0), None);
        assert!(out.iter().any(|e| *e
            == Effect::Persist(GroupRecord::OffsetsDeleted {
                partitions: vec![("t".into(), 0)]
            })));
        // A group with members keeps its offsets.
        let a = new_member(&mut g, 2);
        join(&mut g, 3, &a);
        g.on_sync(4, (&a, None), 1, vec![], &mut out);
        g.on_commit(
            5,
            (&a, None),
            1,
            vec![(("t".into(), 0), CommittedOffset::bare(6))],
            0,
            &mut out,
        );
        assert!(!g.on_retention_check(u64::MAX, 1, &mut out));
    }

    #[test]
    fn groups_land_on_the_partition_kafka_picks() {
        // Java: "test-group".hashCode() == 627841412; "polygenelubricants"
        // is the classic string whose hashCode is Integer.MIN_VALUE.
        assert_eq!(offsets_partition("test-group", 50), 12);
        assert_eq!(offsets_partition("polygenelubricants", 50), 0);
        assert_eq!(offsets_partition("", 50), 0);
        assert!(offsets_partition("g", 3) < 3);
    }

    #[test]
    fn replaying_the_records_restores_offsets_and_continues_generations() {
        let mut g = group(0);
        let a = new_member(&mut g, 1);
        let mut out = GroupEffects::new();
        g.on_join(
            JoinRequest {
                request: 2,
                member_id: a.clone(),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 300_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), vec![])],
                group_instance_id: None,
            },
            &mut out,
        );
        g.on_sync(3, (&a, None), 1, vec![], &mut out);
        g.on_commit(
            4,
            (&a, None),
            1,
            vec![(("t".into(), 0), CommittedOffset::bare(42))],
            0,
            &mut out,
        );
        let records: Vec<GroupRecord> = out
            .drain()
            .filter_map(|e| match e {
                Effect::Persist(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(records.len(), 2, "generation and offsets: {records:?}");
        let mut restored = Group::new(GroupConfig {
            incarnation: 1,
            ..g.config.clone()
        });
        for r in &records {
            restored.replay(r).unwrap();
        }
        assert_eq!(restored.committed("t", 0), Some(42));
        assert_eq!(restored.state(), GroupState::Empty);
        let b = new_member(&mut restored, 5);
        assert_ne!(a, b, "a new coordinator never hands out an old id");
        let r = join(&mut restored, 6, &b);
        assert!(
            matches!(&r[..], [GroupReply::Join { result: Ok(r), .. }] if r.generation == 2),
            "generations go on after a failover: {r:?}"
        );
        // Deleting forgets offsets (only when empty).
        let mut out = GroupEffects::new();
        restored.on_delete(7, &mut out);
        assert_eq!(
            replies(&mut out),
            vec![GroupReply::Delete {
                request: 7,
                result: Err(GroupError::NonEmptyGroup)
            }]
        );
    }
}
