//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
//! DescribeGroups, DeleteGroups. Each turns into a `GroupOp` for the node,
//! whose group state machines (`runnel_model::group`) decide; this module
//! only translates shapes, versions and error codes.

use super::access::{Access, GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use super::handlers::{split_endpoint, str_bytes};
use crate::runtime::node::{
    Event, GroupAnswer, GroupOp, GroupSummary, KafkaCall, NodeHandle, OFFSETS_TOPIC,
};
use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use runnel_model::acl::{Operation, ResourceType};
use runnel_model::controller::ControllerRequest;
use runnel_model::group::{
    offsets_partition, CommittedOffset, GroupError, GroupReply, GroupState, JoinRequest,
    OFFSET_METADATA_MAX_BYTES_LIMIT,
};
use std::collections::BTreeMap;
use tokio::sync::oneshot;

pub use super::code;

pub fn state_name(s: GroupState) -> &'static str {
    match s {
        GroupState::Empty => "Empty",
        GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
        GroupState::Stable => "Stable",
        GroupState::Dead => "Dead",
    }
}

fn error_code(e: &GroupError) -> i16 {
    match e {
        GroupError::MemberIdRequired(_) => code::MEMBER_ID_REQUIRED,
        GroupError::UnknownMemberId => code::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => code::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => code::REBALANCE_IN_PROGRESS,
        GroupError::InconsistentGroupProtocol => code::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::CoordinatorNotAvailable => code::COORDINATOR_NOT_AVAILABLE,
        GroupError::NonEmptyGroup => code::NON_EMPTY_GROUP,
        GroupError::GroupMaxSizeReached => code::GROUP_MAX_SIZE_REACHED,
        GroupError::InvalidSessionTimeout => code::INVALID_SESSION_TIMEOUT,
        GroupError::FencedInstanceId => code::FENCED_INSTANCE_ID,
        GroupError::GroupSubscribedToTopic => code::GROUP_SUBSCRIBED_TO_TOPIC,
        GroupError::GroupIdNotFound => code::GROUP_ID_NOT_FOUND,
    }
}

/// The error code of an answer that is not the state machine's reply.
fn answer_code(a: &GroupAnswer) -> i16 {
    match a {
        GroupAnswer::CoordinatorNotAvailable => code::COORDINATOR_NOT_AVAILABLE,
        GroupAnswer::NotCoordinator => code::NOT_COORDINATOR,
        GroupAnswer::LoadInProgress => code::COORDINATOR_LOAD_IN_PROGRESS,
        GroupAnswer::GroupIdNotFound => code::GROUP_ID_NOT_FOUND,
        _ => code::NONE,
    }
}

/// An answer that should have been the state machine's reply.
fn fallback_code(a: &GroupAnswer) -> i16 {
    match answer_code(a) {
        code::NONE => code::NOT_COORDINATOR,
        c => c,
    }
}

async fn call(node: &NodeHandle, group_id: &str, op: GroupOp) -> GroupAnswer {
    let (tx, rx) = oneshot::channel();
    let call = KafkaCall::Group {
        group_id: group_id.to_string(),
        op,
        reply: tx,
    };
    if node.events.send(Event::Kafka(call)).await.is_err() {
        return GroupAnswer::NotCoordinator;
    }
    rx.await.unwrap_or(GroupAnswer::NotCoordinator)
}

/// The unit result of heartbeat/leave/commit/delete as an error code.
fn unit_code(a: &GroupAnswer) -> i16 {
    match a {
        GroupAnswer::Reply(
            GroupReply::Heartbeat { result, .. }
            | GroupReply::Leave { result, .. }
            | GroupReply::Commit { result, .. }
            | GroupReply::Delete { result, .. },
        ) => result.as_ref().err().map_or(code::NONE, error_code),
        GroupAnswer::Reply(_) => code::INVALID_REQUEST,
        other => answer_code(other),
    }
}

// ----- FindCoordinator ------------------------------------------------------------

/// Creates `__consumer_offsets` (in the background) the first time a
/// coordinator is looked for, as Kafka does.
async fn create_offsets_topic(node: &NodeHandle) {
    let s = &node.settings;
    let request = ControllerRequest::CreateInternalTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: s.offsets_topic_num_partitions,
        replication_factor: s.offsets_topic_replication_factor,
        configs: BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                s.offsets_topic_segment_bytes.to_string(),
            ),
        ]),
        topic_id: super::handlers::new_topic_id(),
    };
    let (tx, _rx) = oneshot::channel();
    let _ = node
        .events
        .send(Event::Kafka(KafkaCall::Controller {
            request,
            timeout_ms: crate::runtime::node::CONTROLLER_INTERNAL_TIMEOUT_MS,
            reply: tx,
        }))
        .await;
}

/// (node id, host, port) of the coordinator of `key`, or an error code.
async fn coordinator_of(node: &NodeHandle, key: &str) -> Result<(i32, String, i32), i16> {
    let view = node.view.borrow().clone();
    let Some(topic) = view.image.topics.get(OFFSETS_TOPIC) else {
        create_offsets_topic(node).await;
        return Err(code::COORDINATOR_NOT_AVAILABLE);
    };
    if topic.partitions.is_empty() {
        return Err(code::COORDINATOR_NOT_AVAILABLE);
    }
    let p = offsets_partition(key, topic.partitions.len() as u32);
    let leader = topic.partitions[p as usize]
        .leader
        .filter(|l| view.image.is_active(*l))
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
    let broker = view
        .image
        .brokers
        .get(&leader)
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
    let (host, port) = split_endpoint(&broker.endpoint);
    Ok((leader as i32, host, port))
}

pub async fn find_coordinator(
    r: FindCoordinatorRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = match v {
        0..=3 => vec![r.key.to_string()],
        _ => r.coordinator_keys.iter().map(|k| k.to_string()).collect(),
    };
    let mut coordinators = Vec::new();
    for key in keys {
        let mut c = Coordinator::default()
            .with_key(str_bytes(&key))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        let found = match r.key_type {
            0 if !may_group(node, client_host, Operation::Describe, &key) => {
                Err(GROUP_AUTHORIZATION_FAILED)
            }
            0 => coordinator_of(node, &key).await,
            // Transactions are not supported (yet).
            _ => Err(code::COORDINATOR_NOT_AVAILABLE),
        };
        match found {
            Ok((id, host, port)) => {
                c.node_id = BrokerId(id);
                c.host = str_bytes(&host);
                c.port = port;
            }
            Err(e) => {
                c.error_code = e;
                c.error_message = Some(str_bytes(match e {
                    code::COORDINATOR_NOT_AVAILABLE => "The coordinator is not available.",
                    GROUP_AUTHORIZATION_FAILED => "Group authorization failed.",
                    _ => "error",
                }));
            }
        }
        coordinators.push(c);
    }
    if v >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if v >= 1 {
        response.error_message = c.error_message;
    }
    response
}

// ----- membership ------------------------------------------------------------------

pub async fn join_group(
    r: JoinGroupRequest,
    v: i16,
    client_id: &str,
    client_host: &str,
    node: &NodeHandle,
) -> JoinGroupResponse {
    let group_id = r.group_id.0.to_string();
    let mut response = JoinGroupResponse::default()
        .with_generation_id(-1)
        .with_protocol_name(Some(str_bytes("")));
    if group_id.is_empty() {
        response.error_code = code::INVALID_GROUP_ID;
        return response;
    }
    if !may_group(node, client_host, Operation::Read, &group_id) {
        response.error_code = GROUP_AUTHORIZATION_FAILED;
        return response;
    }
    let session_timeout_ms = r.session_timeout_ms.max(1) as u64;
    let rebalance_timeout_ms = match v {
        0 => session_timeout_ms,
        _ => r.rebalance_timeout_ms.max(1) as u64,
    };
    let mut join = JoinRequest {
        request: 0, // the node assigns it
        member_id: r.member_id.to_string(),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        // v5+ (the decoder leaves it None before).
        group_instance_id: r.group_instance_id.as_ref().map(|i| i.to_string()),
    };
    // Before v4 a client cannot handle MEMBER_ID_REQUIRED: join again for it.
    let mut answer = call(node, &group_id, GroupOp::Join(join.clone())).await;
    if v < 4 {
        if let GroupAnswer::Reply(GroupReply::Join {
            result: Err(GroupError::MemberIdRequired(id)),
            ..
        }) = &answer
        {
            join.member_id = id.clone();
            answer = call(node, &group_id, GroupOp::Join(join)).await;
        }
    }
    match answer {
        GroupAnswer::Reply(GroupReply::Join { result, .. }) => match result {
            Ok(j) => {
                response.generation_id = j.generation;
                response.protocol_name = Some(str_bytes(&j.protocol));
                if v >= 7 {
                    response.protocol_type = Some(r.protocol_type.clone());
                }
                response.leader = str_bytes(&j.leader);
                response.member_id = str_bytes(&j.member_id);
                response.members = j
                    .members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(&m.member_id))
                            .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                            .with_metadata(Bytes::from(m.metadata))
                    })
                    .collect();
            }
            Err(e) => {
                response.error_code = error_code(&e);
                if let GroupError::MemberIdRequired(id) = e {
                    response.member_id = str_bytes(&id);
                }
            }
        },
        other => response.error_code = fallback_code(&other),
    }
    response
}

pub async fn sync_group(
    r: SyncGroupRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> SyncGroupResponse {
    let group_id = r.group_id.0.to_string();
    if !may_group(node, client_host, Operation::Read, &group_id) {
        return SyncGroupResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    let op = GroupOp::Sync {
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: r.generation_id,
        assignments: r
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
            .collect(),
    };
    let mut response = SyncGroupResponse::default();
    match call(node, &group_id, op).await {
        GroupAnswer::Reply(GroupReply::Sync { result, .. }) => match result {
            Ok(assignment) => response.assignment = Bytes::from(assignment),
            Err(e) => response.error_code = error_code(&e),
        },
        // As Kafka: a loading coordinator has lost the rebalance, so the
        // member rejoins (older clients treat COORDINATOR_LOAD_IN_PROGRESS
        // from SyncGroup as fatal).
        GroupAnswer::LoadInProgress => response.error_code = code::REBALANCE_IN_PROGRESS,
        other => response.error_code = fallback_code(&other),
    }
    if v >= 5 && response.error_code == code::NONE {
        response.protocol_type = r.protocol_type;
        response.protocol_name = r.protocol_name;
    }
    response
}

pub async fn heartbeat(
    r: HeartbeatRequest,
    client_host: &str,
    node: &NodeHandle,
) -> HeartbeatResponse {
    if !may_group(node, client_host, Operation::Read, &r.group_id.0) {
        return HeartbeatResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    let op = GroupOp::Heartbeat {
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: r.generation_id,
    };
    let error = match call(node, &r.group_id.0, op).await {
        // As Kafka: the member heartbeats again once the group is loaded.
        GroupAnswer::LoadInProgress => code::NONE,
        answer => unit_code(&answer),
    };
    HeartbeatResponse::default().with_error_code(error)
}

pub async fn leave_group(
    r: LeaveGroupRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> LeaveGroupResponse {
    let group_id = r.group_id.0.to_string();
    if !may_group(node, client_host, Operation::Read, &group_id) {
        return LeaveGroupResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    if v < 3 {
        let op = GroupOp::Leave {
            member_id: r.member_id.to_string(),
            instance_id: None,
        };
        let answer = call(node, &group_id, op).await;
        return LeaveGroupResponse::default().with_error_code(unit_code(&answer));
    }
    let mut members = Vec::new();
    let mut top = code::NONE;
    for m in &r.members {
        let op = GroupOp::Leave {
            member_id: m.member_id.to_string(),
            instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
        };
        let answer = call(node, &group_id, op).await;
        let c = unit_code(&answer);
        if matches!(c, code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE) {
            top = c;
        }
        members.push(
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(c),
        );
    }
    LeaveGroupResponse::default()
        .with_error_code(top)
        .with_members(members)
}

// ----- offsets ------------------------------------------------------------------------

/// Whether a connection may do `operation` on group `group_id`.
fn may_group(node: &NodeHandle, client_host: &str, operation: Operation, group_id: &str) -> bool {
    let view = node.view.borrow().clone();
    Access::new(&node.settings, &view, client_host).group(operation, group_id)
}

pub async fn offset_commit(
    r: OffsetCommitRequest,
    client_host: &str,
    node: &NodeHandle,
) -> OffsetCommitResponse {
    let group_id = r.group_id.0.to_string();
    let view = node.view.borrow().clone();
    let access = Access::new(&node.settings, &view, client_host);
    let group_denied = !access.group(Operation::Read, &group_id);
    let known = |t: &str, p: i32| {
        view.image
            .topics
            .get(t)
            .is_some_and(|topic| p >= 0 && (p as usize) < topic.partitions.len())
    };
    // Kafka's per-partition checks: an unknown partition and metadata over
    // offset.metadata.max.bytes are refused alone, the rest is committed.
    let check = |t: &str, p: &OffsetCommitRequestPartition| -> i16 {
        let metadata_bytes = p.committed_metadata.as_ref().map_or(0, |m| m.len());
        if group_denied {
            GROUP_AUTHORIZATION_FAILED
        } else if !access.topic(Operation::Read, t) {
            TOPIC_AUTHORIZATION_FAILED
        } else if !known(t, p.partition_index) {
            code::UNKNOWN_TOPIC_OR_PARTITION
        } else if metadata_bytes > OFFSET_METADATA_MAX_BYTES_LIMIT {
            code::OFFSET_METADATA_TOO_LARGE
        } else {
            code::NONE
        }
    };
    let mut offsets = Vec::new();
    for t in &r.topics {
        for p in &t.partitions {
            if check(&t.name.0, p) == code::NONE {
                let committed = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map_or_else(String::new, |m| m.to_string()),
                };
                offsets.push(((t.name.0.to_string(), p.partition_index as u32), committed));
            }
        }
    }
    let c = if group_id.is_empty() {
        code::INVALID_GROUP_ID
    } else if group_denied {
        GROUP_AUTHORIZATION_FAILED
    } else {
        let op = GroupOp::Commit {
            member_id: r.member_id.to_string(),
            instance_id: r.group_instance_id.as_ref().map(|i| i.to_string()),
            generation: r.generation_id_or_member_epoch,
            offsets,
        };
        unit_code(&call(node, &group_id, op).await)
    };
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let own = check(&t.name.0, p);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(if own == code::NONE { c } else { own })
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One partition's answer to OffsetFetch: its committed offset (Kafka's
/// -1, epoch -1, "" if none) and its own error code.
type FetchedPartition = (i32, CommittedOffset, i16);

/// One group's committed offsets for `wanted` (None: every committed
/// partition). As Kafka's authorizer: the group needs DESCRIBE, and each
/// topic DESCRIBE too. A named topic the client may not describe answers
/// TOPIC_AUTHORIZATION_FAILED on each partition; with no topics named,
/// such topics are left out.
async fn fetch_offsets(
    node: &NodeHandle,
    client_host: &str,
    group_id: &str,
    wanted: Option<Vec<(TopicName, Vec<i32>)>>,
) -> (i16, Vec<(TopicName, Vec<FetchedPartition>)>) {
    if !may_group(node, client_host, Operation::Describe, group_id) {
        return (GROUP_AUTHORIZATION_FAILED, Vec::new());
    }
    let committed = match call(node, group_id, GroupOp::FetchOffsets).await {
        GroupAnswer::Offsets(o) => o,
        other => return (fallback_code(&other), Vec::new()),
    };
    let view = node.view.borrow().clone();
    let access = Access::new(&node.settings, &view, client_host);
    let topics = match wanted {
        Some(list) => list
            .into_iter()
            .map(|(name, ps)| {
                let may = access.topic(Operation::Describe, &name.0);
                let offsets = ps
                    .into_iter()
                    .map(|p| {
                        if !may {
                            return (p, CommittedOffset::bare(-1), TOPIC_AUTHORIZATION_FAILED);
                        }
                        let o = committed
                            .get(&(name.0.to_string(), p as u32))
                            .cloned()
                            .unwrap_or_else(|| CommittedOffset::bare(-1));
                        (p, o, code::NONE)
                    })
                    .collect();
                (name, offsets)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<FetchedPartition>> = BTreeMap::new();
            for ((t, p), o) in committed {
                if access.topic(Operation::Describe, &t) {
                    by_topic
                        .entry(t)
                        .or_default()
                        .push((p as i32, o, code::NONE));
                }
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| (TopicName(str_bytes(&t)), ps))
                .collect()
        }
    };
    (code::NONE, topics)
}

pub async fn offset_fetch(
    r: OffsetFetchRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> OffsetFetchResponse {
    if v >= 8 {
        let mut groups = Vec::new();
        for g in r.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let (error, topics) = fetch_offsets(node, client_host, &g.group_id.0, wanted).await;
            let topics = topics
                .into_iter()
                .map(|(name, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|(p, o, e)| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(o.offset)
                                .with_committed_leader_epoch(o.leader_epoch)
                                .with_metadata(Some(str_bytes(&o.metadata)))
                                .with_error_code(e)
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(name)
                        .with_partitions(partitions)
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(error)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let asked = wanted.clone();
    let (error, mut topics) = fetch_offsets(node, client_host, &r.group_id.0, wanted).await;
    if v < 2 && topics.is_empty() && error != code::NONE {
        // v1 has no top-level error: echo what was asked, each partition
        // carrying the error (Kafka's error response), never "no offsets".
        topics = asked
            .unwrap_or_default()
            .into_iter()
            .map(|(name, ps)| {
                let ps = ps
                    .into_iter()
                    .map(|p| (p, CommittedOffset::bare(-1), error))
                    .collect();
                (name, ps)
            })
            .collect();
    }
    let topics = topics
        .into_iter()
        .map(|(name, ps)| {
            let partitions = ps
                .into_iter()
                .map(|(p, o, e)| {
                    // v1 has no top-level error: a group error goes on
                    // each partition.
                    let e = if v < 2 && error != code::NONE {
                        error
                    } else {
                        e
                    };
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(o.offset)
                        .with_committed_leader_epoch(o.leader_epoch)
                        .with_metadata(Some(str_bytes(&o.metadata)))
                        .with_error_code(e)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if v >= 2 {
        response.error_code = error;
    }
    response
}

// ----- admin ----------------------------------------------------------------------------

pub async fn list_groups(
    r: ListGroupsRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> ListGroupsResponse {
    let (tx, rx) = oneshot::channel();
    let (groups, loading): (Vec<GroupSummary>, bool) = match node
        .events
        .send(Event::Kafka(KafkaCall::ListGroups { reply: tx }))
        .await
    {
        Ok(()) => rx.await.unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let filter: Vec<String> = r.states_filter.iter().map(|s| s.to_lowercase()).collect();
    // Kafka lists every group to a client that may describe the cluster,
    // else those it may describe.
    let view = node.view.borrow().clone();
    let access = Access::new(&node.settings, &view, client_host);
    let all = access.cluster(Operation::Describe);
    let groups = groups
        .into_iter()
        .filter(|g| all || access.group(Operation::Describe, &g.group_id))
        .filter(|g| filter.is_empty() || filter.contains(&state_name(g.state).to_lowercase()))
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if v >= 4 {
                l.group_state = str_bytes(state_name(g.state));
            }
            l
        })
        .collect();
    // Kafka answers a coordinator still loading a partition this way: the
    // list is not yet whole (a client retries).
    let error = match loading {
        true => code::COORDINATOR_LOAD_IN_PROGRESS,
        false => code::NONE,
    };
    ListGroupsResponse::default()
        .with_error_code(error)
        .with_groups(groups)
}

pub async fn describe_groups(
    r: DescribeGroupsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> DescribeGroupsResponse {
    let mut out = Vec::new();
    for g in r.groups {
        let mut d = DescribedGroup::default()
            .with_group_id(g.clone())
            .with_group_state(str_bytes("Dead"));
        let operations = {
            let view = node.view.borrow().clone();
            let access = Access::new(&node.settings, &view, client_host);
            access.operations(ResourceType::Group, &g.0)
        };
        if operations & (1 << Operation::Describe.code()) == 0 {
            out.push(
                d.with_error_code(GROUP_AUTHORIZATION_FAILED)
                    .with_group_state(str_bytes("")),
            );
            continue;
        }
        if r.include_authorized_operations {
            // v3+ (the decoder leaves it false before), KIP-430.
            d.authorized_operations = operations;
        }
        match call(node, &g.0, GroupOp::Describe).await {
            GroupAnswer::Described(s) => {
                d.group_state = str_bytes(state_name(s.state));
                d.protocol_type = str_bytes(&s.protocol_type);
                d.protocol_data = str_bytes(&s.protocol);
                d.members = s
                    .members
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(str_bytes(&m.member_id))
                            .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                            .with_client_id(str_bytes(&m.client_id))
                            .with_client_host(str_bytes(&m.client_host))
                            .with_member_metadata(Bytes::from(m.metadata))
                            .with_member_assignment(Bytes::from(m.assignment))
                    })
                    .collect();
            }
            // Kafka describes an unknown group as Dead without an error.
            GroupAnswer::GroupIdNotFound => {}
            other => d.error_code = fallback_code(&other),
        }
        out.push(d);
    }
    DescribeGroupsResponse::default().with_groups(out)
}

pub async fn delete_groups(
    r: DeleteGroupsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for g in r.groups_names {
        let c = if may_group(node, client_host, Operation::Delete, &g.0) {
            unit_code(&call(node, &g.0, GroupOp::Delete).await)
        } else {
            GROUP_AUTHORIZATION_FAILED
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(c),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete (KIP-496, v0): a partition of an unknown topic gets
/// UNKNOWN_TOPIC_OR_PARTITION; the rest is the group's decision
/// (`Group::on_delete_offsets`). A group-level error leaves the topics
/// empty, as Kafka's error response does.
pub async fn offset_delete(
    r: OffsetDeleteRequest,
    client_host: &str,
    node: &NodeHandle,
) -> OffsetDeleteResponse {
    let group_id = r.group_id.0.to_string();
    if !may_group(node, client_host, Operation::Delete, &group_id) {
        return OffsetDeleteResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    let view = node.view.borrow().clone();
    let known = |t: &str, p: i32| {
        view.image
            .topics
            .get(t)
            .is_some_and(|topic| p >= 0 && (p as usize) < topic.partitions.len())
    };
    // Kafka: each topic needs READ; a denied one is answered
    // TOPIC_AUTHORIZATION_FAILED and its offsets stay.
    let access = Access::new(&node.settings, &view, client_host);
    let readable = |t: &str| access.topic(Operation::Read, t);
    let partitions: Vec<(String, u32)> = r
        .topics
        .iter()
        .filter(|t| readable(&t.name.0))
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| known(&t.name.0, p.partition_index))
                .map(|p| (t.name.0.to_string(), p.partition_index as u32))
        })
        .collect();
    let op = GroupOp::DeleteOffsets { partitions };
    let outcomes = match call(node, &group_id, op).await {
        GroupAnswer::Reply(GroupReply::DeleteOffsets { result: Ok(o), .. }) => o,
        GroupAnswer::Reply(GroupReply::DeleteOffsets { result: Err(e), .. }) => {
            return OffsetDeleteResponse::default().with_error_code(error_code(&e));
        }
        other => return OffsetDeleteResponse::default().with_error_code(fallback_code(&other)),
    };
    let outcome = |t: &str, p: i32| -> i16 {
        if !readable(t) {
            return TOPIC_AUTHORIZATION_FAILED;
        }
        outcomes
            .iter()
            .find(|((topic, partition), _)| topic == t && *partition as i32 == p)
            .map_or(code::UNKNOWN_TOPIC_OR_PARTITION, |(_, r)| {
                r.as_ref().err().map_or(code::NONE, error_code)
            })
    };
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(outcome(&t.name.0, p.partition_index))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
