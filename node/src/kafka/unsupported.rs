//! The answer to a request Runnel does not serve: an API it does not
//! implement, or one it does at a version outside the range it advertises
//! (`versions::SUPPORTED`), when kafka-protocol can still decode the
//! request. The answer is that API's own response at the request's version,
//! with UNSUPPORTED_VERSION (35) in every error field a client reads: the
//! top-level error code where the response has one at that version, and
//! the error code of each item (topic, partition, resource, group, ...) the
//! request named.
//!
//! Why answer at all: Kafka closes the connection instead
//! (`SocketServer.parseRequestHeader` throws InvalidRequestException), and a
//! client that skipped ApiVersions (kafka-python with an explicit
//! `api_version`, sarama with a configured version, a hand-written tool)
//! then sees a reset, with no reason. An answer names the reason and keeps
//! the connection (and the client's other requests on it) alive.
//!
//! A Produce with acks=0 gets no response: its client reads none (and
//! would take a response for the answer to its next request).
//! Everything here is a pure function of the decoded request: no I/O, no
//! node state, so the fuzz target reaches it through `decode_request`.
//!
//! Field rule (what keeps every answer encodable): kafka-protocol refuses to
//! encode a field that is set (not its default) at a version that lacks it.
//! So an error code is set only at the versions that have it, and an item is
//! echoed only from request fields whose versions are within the response
//! field's versions (a request field absent at a version decodes as its
//! default). The tests encode every answer for every API key at every
//! version kafka-protocol decodes. (Its `ApiKey::valid_versions` lists three
//! its request types lack: OffsetCommit v10, OffsetFetch v10, InitProducerId
//! v6; those frames do not decode, so they close the connection.)

use super::handlers::code::UNSUPPORTED_VERSION;
use kafka_protocol::messages as m;
use kafka_protocol::messages::{RequestKind, ResponseKind};

/// The error every refused request carries.
const ERROR: i16 = UNSUPPORTED_VERSION;

/// How a request that decodes but is not served is answered.
#[derive(Debug)]
pub enum Refusal {
    /// The API's own response at the request's version, carrying ERROR
    /// (boxed: a response is hundreds of bytes, silence none).
    Answer(Box<ResponseKind>),
    /// No response at all: a Produce with acks=0 expects none.
    Silent,
}

/// The refusal of `request` (decoded at `version`). `None` only for a
/// request kind this module does not know (a newer kafka-protocol): the
/// caller then closes the connection, as for an unknown API key.
pub fn refuse(request: &RequestKind, version: i16) -> Option<Refusal> {
    if let RequestKind::Produce(r) = request {
        if r.acks == 0 {
            return Some(Refusal::Silent);
        }
    }
    let response = produce_and_fetch(request, version)
        .or_else(|| groups(request, version))
        .or_else(|| admin(request, version))
        .or_else(|| transactions(request, version))
        .or_else(|| cluster(request))?;
    Some(Refusal::Answer(Box::new(response)))
}

/// Partition reads and writes, and topic and partition metadata.
fn produce_and_fetch(request: &RequestKind, version: i16) -> Option<ResponseKind> {
    use RequestKind as Q;
    use ResponseKind as R;
    Some(match request {
        Q::Produce(r) => R::Produce(produce(r)),
        Q::Fetch(r) => R::Fetch(fetch(r, version)),
        Q::ListOffsets(r) => R::ListOffsets(list_offsets(r)),
        Q::Metadata(r) => R::Metadata(metadata(r, version)),
        Q::OffsetForLeaderEpoch(r) => R::OffsetForLeaderEpoch(offset_for_leader_epoch(r)),
        Q::DescribeProducers(r) => R::DescribeProducers(describe_producers(r)),
        Q::DescribeTopicPartitions(r) => R::DescribeTopicPartitions(describe_topic_partitions(r)),
        _ => return None,
    })
}

/// Consumer group APIs (classic, KIP-848 and share groups).
fn groups(request: &RequestKind, version: i16) -> Option<ResponseKind> {
    use RequestKind as Q;
    use ResponseKind as R;
    Some(match request {
        Q::OffsetCommit(r) => R::OffsetCommit(offset_commit(r)),
        Q::OffsetFetch(r) => R::OffsetFetch(offset_fetch(r, version)),
        Q::OffsetDelete(r) => R::OffsetDelete(offset_delete(r)),
        Q::FindCoordinator(r) => R::FindCoordinator(find_coordinator(r, version)),
        Q::JoinGroup(_) => R::JoinGroup(m::JoinGroupResponse::default().with_error_code(ERROR)),
        Q::Heartbeat(_) => R::Heartbeat(m::HeartbeatResponse::default().with_error_code(ERROR)),
        Q::LeaveGroup(r) => R::LeaveGroup(leave_group(r)),
        Q::SyncGroup(_) => R::SyncGroup(m::SyncGroupResponse::default().with_error_code(ERROR)),
        Q::DescribeGroups(r) => R::DescribeGroups(describe_groups(r)),
        Q::ListGroups(_) => R::ListGroups(m::ListGroupsResponse::default().with_error_code(ERROR)),
        Q::DeleteGroups(r) => R::DeleteGroups(delete_groups(r)),
        Q::ConsumerGroupHeartbeat(_) => R::ConsumerGroupHeartbeat(
            m::ConsumerGroupHeartbeatResponse::default().with_error_code(ERROR),
        ),
        Q::ConsumerGroupDescribe(r) => R::ConsumerGroupDescribe(consumer_group_describe(r)),
        Q::ShareGroupHeartbeat(_) => {
            R::ShareGroupHeartbeat(m::ShareGroupHeartbeatResponse::default().with_error_code(ERROR))
        }
        Q::ShareGroupDescribe(r) => R::ShareGroupDescribe(share_group_describe(r)),
        Q::ShareFetch(_) => R::ShareFetch(m::ShareFetchResponse::default().with_error_code(ERROR)),
        Q::ShareAcknowledge(_) => {
            R::ShareAcknowledge(m::ShareAcknowledgeResponse::default().with_error_code(ERROR))
        }
        Q::DescribeShareGroupOffsets(r) => {
            R::DescribeShareGroupOffsets(describe_share_group_offsets(r))
        }
        Q::AlterShareGroupOffsets(_) => R::AlterShareGroupOffsets(
            m::AlterShareGroupOffsetsResponse::default().with_error_code(ERROR),
        ),
        Q::DeleteShareGroupOffsets(_) => R::DeleteShareGroupOffsets(
            m::DeleteShareGroupOffsetsResponse::default().with_error_code(ERROR),
        ),
        // The share coordinator's own state APIs (broker to broker): their
        // results name topics and partitions by id that no client tracks;
        // the empty response is the answer.
        Q::InitializeShareGroupState(_) => {
            R::InitializeShareGroupState(m::InitializeShareGroupStateResponse::default())
        }
        Q::ReadShareGroupState(_) => {
            R::ReadShareGroupState(m::ReadShareGroupStateResponse::default())
        }
        Q::WriteShareGroupState(_) => {
            R::WriteShareGroupState(m::WriteShareGroupStateResponse::default())
        }
        Q::DeleteShareGroupState(_) => {
            R::DeleteShareGroupState(m::DeleteShareGroupStateResponse::default())
        }
        Q::ReadShareGroupStateSummary(_) => {
            R::ReadShareGroupStateSummary(m::ReadShareGroupStateSummaryResponse::default())
        }
        _ => return None,
    })
}

/// Topic, config, ACL, quota, SCRAM and reassignment administration.
fn admin(request: &RequestKind, version: i16) -> Option<ResponseKind> {
    use RequestKind as Q;
    use ResponseKind as R;
    Some(match request {
        Q::CreateTopics(r) => R::CreateTopics(create_topics(r)),
        Q::DeleteTopics(r) => R::DeleteTopics(delete_topics(r)),
        Q::CreatePartitions(r) => R::CreatePartitions(create_partitions(r)),
        Q::DescribeConfigs(r) => R::DescribeConfigs(describe_configs(r)),
        Q::AlterConfigs(r) => R::AlterConfigs(alter_configs(r)),
        Q::IncrementalAlterConfigs(r) => R::IncrementalAlterConfigs(incremental_alter_configs(r)),
        Q::ListConfigResources(_) => {
            R::ListConfigResources(m::ListConfigResourcesResponse::default().with_error_code(ERROR))
        }
        Q::DescribeAcls(_) => {
            R::DescribeAcls(m::DescribeAclsResponse::default().with_error_code(ERROR))
        }
        Q::CreateAcls(r) => R::CreateAcls(create_acls(r)),
        Q::DeleteAcls(r) => R::DeleteAcls(delete_acls(r)),
        Q::DescribeClientQuotas(_) => R::DescribeClientQuotas(
            m::DescribeClientQuotasResponse::default().with_error_code(ERROR),
        ),
        Q::AlterClientQuotas(r) => R::AlterClientQuotas(alter_client_quotas(r)),
        Q::DescribeUserScramCredentials(r) => {
            R::DescribeUserScramCredentials(describe_user_scram_credentials(r))
        }
        Q::AlterUserScramCredentials(r) => {
            R::AlterUserScramCredentials(alter_user_scram_credentials(r))
        }
        Q::ElectLeaders(r) => R::ElectLeaders(elect_leaders(r, version)),
        Q::AlterPartitionReassignments(r) => {
            R::AlterPartitionReassignments(alter_partition_reassignments(r))
        }
        Q::ListPartitionReassignments(_) => R::ListPartitionReassignments(
            m::ListPartitionReassignmentsResponse::default().with_error_code(ERROR),
        ),
        Q::DescribeLogDirs(_) => R::DescribeLogDirs(describe_log_dirs(version)),
        Q::AlterReplicaLogDirs(r) => R::AlterReplicaLogDirs(alter_replica_log_dirs(r)),
        Q::CreateDelegationToken(_) => R::CreateDelegationToken(
            m::CreateDelegationTokenResponse::default().with_error_code(ERROR),
        ),
        Q::RenewDelegationToken(_) => R::RenewDelegationToken(
            m::RenewDelegationTokenResponse::default().with_error_code(ERROR),
        ),
        Q::ExpireDelegationToken(_) => R::ExpireDelegationToken(
            m::ExpireDelegationTokenResponse::default().with_error_code(ERROR),
        ),
        Q::DescribeDelegationToken(_) => R::DescribeDelegationToken(
            m::DescribeDelegationTokenResponse::default().with_error_code(ERROR),
        ),
        _ => return None,
    })
}

/// Producer ids and transactions.
fn transactions(request: &RequestKind, version: i16) -> Option<ResponseKind> {
    use RequestKind as Q;
    use ResponseKind as R;
    Some(match request {
        Q::InitProducerId(_) => {
            R::InitProducerId(m::InitProducerIdResponse::default().with_error_code(ERROR))
        }
        Q::AddPartitionsToTxn(r) => R::AddPartitionsToTxn(add_partitions_to_txn(r, version)),
        Q::AddOffsetsToTxn(_) => {
            R::AddOffsetsToTxn(m::AddOffsetsToTxnResponse::default().with_error_code(ERROR))
        }
        Q::EndTxn(_) => R::EndTxn(m::EndTxnResponse::default().with_error_code(ERROR)),
        Q::WriteTxnMarkers(r) => R::WriteTxnMarkers(write_txn_markers(r)),
        Q::TxnOffsetCommit(r) => R::TxnOffsetCommit(txn_offset_commit(r)),
        Q::DescribeTransactions(r) => R::DescribeTransactions(describe_transactions(r)),
        Q::ListTransactions(_) => {
            R::ListTransactions(m::ListTransactionsResponse::default().with_error_code(ERROR))
        }
        Q::AllocateProducerIds(_) => {
            R::AllocateProducerIds(m::AllocateProducerIdsResponse::default().with_error_code(ERROR))
        }
        _ => return None,
    })
}

/// Connection, cluster, quorum and broker-lifecycle APIs: each response
/// has a top-level error code and nothing per item a client would read.
fn cluster(request: &RequestKind) -> Option<ResponseKind> {
    use RequestKind as Q;
    use ResponseKind as R;
    Some(match request {
        Q::ApiVersions(_) => {
            R::ApiVersions(m::ApiVersionsResponse::default().with_error_code(ERROR))
        }
        Q::SaslHandshake(_) => {
            R::SaslHandshake(m::SaslHandshakeResponse::default().with_error_code(ERROR))
        }
        Q::SaslAuthenticate(_) => {
            R::SaslAuthenticate(m::SaslAuthenticateResponse::default().with_error_code(ERROR))
        }
        Q::DescribeCluster(_) => {
            R::DescribeCluster(m::DescribeClusterResponse::default().with_error_code(ERROR))
        }
        Q::GetTelemetrySubscriptions(_) => R::GetTelemetrySubscriptions(
            m::GetTelemetrySubscriptionsResponse::default().with_error_code(ERROR),
        ),
        Q::PushTelemetry(_) => {
            R::PushTelemetry(m::PushTelemetryResponse::default().with_error_code(ERROR))
        }
        Q::UpdateFeatures(_) => {
            R::UpdateFeatures(m::UpdateFeaturesResponse::default().with_error_code(ERROR))
        }
        Q::Envelope(_) => R::Envelope(m::EnvelopeResponse::default().with_error_code(ERROR)),
        Q::Vote(_) => R::Vote(m::VoteResponse::default().with_error_code(ERROR)),
        Q::BeginQuorumEpoch(_) => {
            R::BeginQuorumEpoch(m::BeginQuorumEpochResponse::default().with_error_code(ERROR))
        }
        Q::EndQuorumEpoch(_) => {
            R::EndQuorumEpoch(m::EndQuorumEpochResponse::default().with_error_code(ERROR))
        }
        Q::DescribeQuorum(_) => {
            R::DescribeQuorum(m::DescribeQuorumResponse::default().with_error_code(ERROR))
        }
        Q::FetchSnapshot(_) => {
            R::FetchSnapshot(m::FetchSnapshotResponse::default().with_error_code(ERROR))
        }
        Q::AddRaftVoter(_) => {
            R::AddRaftVoter(m::AddRaftVoterResponse::default().with_error_code(ERROR))
        }
        Q::RemoveRaftVoter(_) => {
            R::RemoveRaftVoter(m::RemoveRaftVoterResponse::default().with_error_code(ERROR))
        }
        Q::UpdateRaftVoter(_) => {
            R::UpdateRaftVoter(m::UpdateRaftVoterResponse::default().with_error_code(ERROR))
        }
        Q::AlterPartition(_) => {
            R::AlterPartition(m::AlterPartitionResponse::default().with_error_code(ERROR))
        }
        Q::BrokerRegistration(_) => {
            R::BrokerRegistration(m::BrokerRegistrationResponse::default().with_error_code(ERROR))
        }
        Q::BrokerHeartbeat(_) => {
            R::BrokerHeartbeat(m::BrokerHeartbeatResponse::default().with_error_code(ERROR))
        }
        Q::UnregisterBroker(_) => {
            R::UnregisterBroker(m::UnregisterBrokerResponse::default().with_error_code(ERROR))
        }
        Q::ControllerRegistration(_) => R::ControllerRegistration(
            m::ControllerRegistrationResponse::default().with_error_code(ERROR),
        ),
        Q::AssignReplicasToDirs(_) => R::AssignReplicasToDirs(
            m::AssignReplicasToDirsResponse::default().with_error_code(ERROR),
        ),
        _ => return None,
    })
}

// Produce, fetch and partition reads: one error per partition named.

fn produce(r: &m::ProduceRequest) -> m::ProduceResponse {
    use m::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    let topic = |t: &m::produce_request::TopicProduceData| {
        let partitions = t.partition_data.iter().map(|p| {
            PartitionProduceResponse::default()
                .with_index(p.index)
                .with_error_code(ERROR)
                .with_base_offset(-1)
        });
        // Name (v3-12) and id (v13+) have the same versions in both.
        TopicProduceResponse::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
            .with_partition_responses(partitions.collect())
    };
    m::ProduceResponse::default().with_responses(r.topic_data.iter().map(topic).collect())
}

fn fetch(r: &m::FetchRequest, version: i16) -> m::FetchResponse {
    use m::fetch_response::{FetchableTopicResponse, PartitionData};
    let topic = |t: &m::fetch_request::FetchTopic| {
        let partitions = t.partitions.iter().map(|p| {
            PartitionData::default()
                .with_partition_index(p.partition)
                .with_error_code(ERROR)
                .with_high_watermark(-1)
        });
        FetchableTopicResponse::default()
            .with_topic(t.topic.clone())
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    };
    let response = m::FetchResponse::default().with_responses(r.topics.iter().map(topic).collect());
    match version >= 7 {
        true => response.with_error_code(ERROR), // the fetch session's error
        false => response,
    }
}

fn list_offsets(r: &m::ListOffsetsRequest) -> m::ListOffsetsResponse {
    use m::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
    let topic = |t: &m::list_offsets_request::ListOffsetsTopic| {
        let partitions = t.partitions.iter().map(|p| {
            ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_code(ERROR)
        });
        ListOffsetsTopicResponse::default()
            .with_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    m::ListOffsetsResponse::default().with_topics(r.topics.iter().map(topic).collect())
}

/// Each topic named gets the error (a request for all topics names none);
/// v13+ has a top-level error code too.
fn metadata(r: &m::MetadataRequest, version: i16) -> m::MetadataResponse {
    use m::metadata_response::MetadataResponseTopic;
    let topic = |t: &m::metadata_request::MetadataRequestTopic| {
        MetadataResponseTopic::default()
            .with_error_code(ERROR)
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
    };
    let topics = r.topics.iter().flatten().map(topic).collect();
    let response = m::MetadataResponse::default().with_topics(topics);
    match version >= 13 {
        true => response.with_error_code(ERROR),
        false => response,
    }
}

fn offset_for_leader_epoch(r: &m::OffsetForLeaderEpochRequest) -> m::OffsetForLeaderEpochResponse {
    use m::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
    let topic = |t: &m::offset_for_leader_epoch_request::OffsetForLeaderTopic| {
        let partitions = t.partitions.iter().map(|p| {
            EpochEndOffset::default()
                .with_partition(p.partition)
                .with_error_code(ERROR)
        });
        OffsetForLeaderTopicResult::default()
            .with_topic(t.topic.clone())
            .with_partitions(partitions.collect())
    };
    m::OffsetForLeaderEpochResponse::default().with_topics(r.topics.iter().map(topic).collect())
}

fn describe_producers(r: &m::DescribeProducersRequest) -> m::DescribeProducersResponse {
    use m::describe_producers_response::{PartitionResponse, TopicResponse};
    let topic = |t: &m::describe_producers_request::TopicRequest| {
        let partitions = t.partition_indexes.iter().map(|&p| {
            PartitionResponse::default()
                .with_partition_index(p)
                .with_error_code(ERROR)
        });
        TopicResponse::default()
            .with_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    m::DescribeProducersResponse::default().with_topics(r.topics.iter().map(topic).collect())
}

fn describe_topic_partitions(
    r: &m::DescribeTopicPartitionsRequest,
) -> m::DescribeTopicPartitionsResponse {
    use m::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
    let topic = |t: &m::describe_topic_partitions_request::TopicRequest| {
        DescribeTopicPartitionsResponseTopic::default()
            .with_error_code(ERROR)
            .with_name(Some(t.name.clone()))
    };
    m::DescribeTopicPartitionsResponse::default().with_topics(r.topics.iter().map(topic).collect())
}

// Groups: one error per group, member or partition named.

fn offset_commit(r: &m::OffsetCommitRequest) -> m::OffsetCommitResponse {
    use m::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    let topic = |t: &m::offset_commit_request::OffsetCommitRequestTopic| {
        let partitions = t.partitions.iter().map(|p| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(ERROR)
        });
        OffsetCommitResponseTopic::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    };
    m::OffsetCommitResponse::default().with_topics(r.topics.iter().map(topic).collect())
}

/// v1-7 name one group (errors per partition, and top-level from v2);
/// v8+ name groups (an error per group).
fn offset_fetch(r: &m::OffsetFetchRequest, version: i16) -> m::OffsetFetchResponse {
    use m::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    let topic = |t: &m::offset_fetch_request::OffsetFetchRequestTopic| {
        let partitions = t.partition_indexes.iter().map(|&p| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(ERROR)
        });
        OffsetFetchResponseTopic::default()
            .with_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    let group = |g: &m::offset_fetch_request::OffsetFetchRequestGroup| {
        OffsetFetchResponseGroup::default()
            .with_group_id(g.group_id.clone())
            .with_error_code(ERROR)
    };
    let response = m::OffsetFetchResponse::default()
        .with_topics(r.topics.iter().flatten().map(topic).collect())
        .with_groups(r.groups.iter().map(group).collect());
    match (2..=7).contains(&version) {
        true => response.with_error_code(ERROR),
        false => response,
    }
}

fn offset_delete(r: &m::OffsetDeleteRequest) -> m::OffsetDeleteResponse {
    use m::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
    let topic = |t: &m::offset_delete_request::OffsetDeleteRequestTopic| {
        let partitions = t.partitions.iter().map(|p| {
            OffsetDeleteResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(ERROR)
        });
        OffsetDeleteResponseTopic::default()
            .with_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    m::OffsetDeleteResponse::default()
        .with_error_code(ERROR)
        .with_topics(r.topics.iter().map(topic).collect())
}

/// v0-3 ask for one coordinator (top-level error); v4+ for a list of keys
/// (an error per key).
fn find_coordinator(r: &m::FindCoordinatorRequest, version: i16) -> m::FindCoordinatorResponse {
    use m::find_coordinator_response::Coordinator;
    if version < 4 {
        return m::FindCoordinatorResponse::default()
            .with_error_code(ERROR)
            .with_node_id((-1).into())
            .with_port(-1);
    }
    let coordinator = |key: &kafka_protocol::protocol::StrBytes| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id((-1).into())
            .with_port(-1)
            .with_error_code(ERROR)
    };
    m::FindCoordinatorResponse::default()
        .with_coordinators(r.coordinator_keys.iter().map(coordinator).collect())
}

fn leave_group(r: &m::LeaveGroupRequest) -> m::LeaveGroupResponse {
    use m::leave_group_response::MemberResponse;
    // Members (v3+) have the same versions in request and response.
    let member = |identity: &m::leave_group_request::MemberIdentity| {
        MemberResponse::default()
            .with_member_id(identity.member_id.clone())
            .with_group_instance_id(identity.group_instance_id.clone())
            .with_error_code(ERROR)
    };
    m::LeaveGroupResponse::default()
        .with_error_code(ERROR)
        .with_members(r.members.iter().map(member).collect())
}

fn describe_groups(r: &m::DescribeGroupsRequest) -> m::DescribeGroupsResponse {
    use m::describe_groups_response::DescribedGroup;
    let group = |id: &m::GroupId| {
        DescribedGroup::default()
            .with_group_id(id.clone())
            .with_error_code(ERROR)
    };
    m::DescribeGroupsResponse::default().with_groups(r.groups.iter().map(group).collect())
}

fn delete_groups(r: &m::DeleteGroupsRequest) -> m::DeleteGroupsResponse {
    use m::delete_groups_response::DeletableGroupResult;
    let group = |id: &m::GroupId| {
        DeletableGroupResult::default()
            .with_group_id(id.clone())
            .with_error_code(ERROR)
    };
    m::DeleteGroupsResponse::default().with_results(r.groups_names.iter().map(group).collect())
}

fn consumer_group_describe(
    r: &m::ConsumerGroupDescribeRequest,
) -> m::ConsumerGroupDescribeResponse {
    use m::consumer_group_describe_response::DescribedGroup;
    let group = |id: &m::GroupId| {
        DescribedGroup::default()
            .with_group_id(id.clone())
            .with_error_code(ERROR)
    };
    m::ConsumerGroupDescribeResponse::default().with_groups(r.group_ids.iter().map(group).collect())
}

fn share_group_describe(r: &m::ShareGroupDescribeRequest) -> m::ShareGroupDescribeResponse {
    use m::share_group_describe_response::DescribedGroup;
    let group = |id: &m::GroupId| {
        DescribedGroup::default()
            .with_group_id(id.clone())
            .with_error_code(ERROR)
    };
    m::ShareGroupDescribeResponse::default().with_groups(r.group_ids.iter().map(group).collect())
}

fn describe_share_group_offsets(
    r: &m::DescribeShareGroupOffsetsRequest,
) -> m::DescribeShareGroupOffsetsResponse {
    use m::describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup;
    let group =
        |g: &m::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup| {
            DescribeShareGroupOffsetsResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(ERROR)
        };
    m::DescribeShareGroupOffsetsResponse::default()
        .with_groups(r.groups.iter().map(group).collect())
}

// Administration: one error per topic, resource, ACL, entity or user named.

fn create_topics(r: &m::CreateTopicsRequest) -> m::CreateTopicsResponse {
    use m::create_topics_response::CreatableTopicResult;
    let topic = |t: &m::create_topics_request::CreatableTopic| {
        CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_error_code(ERROR)
    };
    m::CreateTopicsResponse::default().with_topics(r.topics.iter().map(topic).collect())
}

/// v1-5 name topics by name, v6 by name or id.
fn delete_topics(r: &m::DeleteTopicsRequest) -> m::DeleteTopicsResponse {
    use m::delete_topics_response::DeletableTopicResult;
    let by_name = r.topic_names.iter().map(|name| {
        DeletableTopicResult::default()
            .with_name(Some(name.clone()))
            .with_error_code(ERROR)
    });
    let by_state = r.topics.iter().map(|t| {
        DeletableTopicResult::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
            .with_error_code(ERROR)
    });
    m::DeleteTopicsResponse::default().with_responses(by_name.chain(by_state).collect())
}

fn create_partitions(r: &m::CreatePartitionsRequest) -> m::CreatePartitionsResponse {
    use m::create_partitions_response::CreatePartitionsTopicResult;
    let topic = |t: &m::create_partitions_request::CreatePartitionsTopic| {
        CreatePartitionsTopicResult::default()
            .with_name(t.name.clone())
            .with_error_code(ERROR)
    };
    m::CreatePartitionsResponse::default().with_results(r.topics.iter().map(topic).collect())
}

fn describe_configs(r: &m::DescribeConfigsRequest) -> m::DescribeConfigsResponse {
    use m::describe_configs_response::DescribeConfigsResult;
    let resource = |c: &m::describe_configs_request::DescribeConfigsResource| {
        DescribeConfigsResult::default()
            .with_resource_type(c.resource_type)
            .with_resource_name(c.resource_name.clone())
            .with_error_code(ERROR)
    };
    m::DescribeConfigsResponse::default().with_results(r.resources.iter().map(resource).collect())
}

fn alter_configs(r: &m::AlterConfigsRequest) -> m::AlterConfigsResponse {
    use m::alter_configs_response::AlterConfigsResourceResponse;
    let resource = |c: &m::alter_configs_request::AlterConfigsResource| {
        AlterConfigsResourceResponse::default()
            .with_resource_type(c.resource_type)
            .with_resource_name(c.resource_name.clone())
            .with_error_code(ERROR)
    };
    m::AlterConfigsResponse::default().with_responses(r.resources.iter().map(resource).collect())
}

fn incremental_alter_configs(
    r: &m::IncrementalAlterConfigsRequest,
) -> m::IncrementalAlterConfigsResponse {
    use m::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let resource = |c: &m::incremental_alter_configs_request::AlterConfigsResource| {
        AlterConfigsResourceResponse::default()
            .with_resource_type(c.resource_type)
            .with_resource_name(c.resource_name.clone())
            .with_error_code(ERROR)
    };
    let responses = r.resources.iter().map(resource).collect();
    m::IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// One result per creation, in the request's order (how clients match them).
fn create_acls(r: &m::CreateAclsRequest) -> m::CreateAclsResponse {
    use m::create_acls_response::AclCreationResult;
    let result = |_: &m::create_acls_request::AclCreation| {
        AclCreationResult::default().with_error_code(ERROR)
    };
    m::CreateAclsResponse::default().with_results(r.creations.iter().map(result).collect())
}

/// One result per filter, in the request's order.
fn delete_acls(r: &m::DeleteAclsRequest) -> m::DeleteAclsResponse {
    use m::delete_acls_response::DeleteAclsFilterResult;
    let result = |_: &m::delete_acls_request::DeleteAclsFilter| {
        DeleteAclsFilterResult::default().with_error_code(ERROR)
    };
    m::DeleteAclsResponse::default().with_filter_results(r.filters.iter().map(result).collect())
}

fn alter_client_quotas(r: &m::AlterClientQuotasRequest) -> m::AlterClientQuotasResponse {
    use m::alter_client_quotas_response::{EntityData, EntryData};
    let entity = |e: &m::alter_client_quotas_request::EntityData| {
        EntityData::default()
            .with_entity_type(e.entity_type.clone())
            .with_entity_name(e.entity_name.clone())
    };
    let entry = |e: &m::alter_client_quotas_request::EntryData| {
        EntryData::default()
            .with_error_code(ERROR)
            .with_entity(e.entity.iter().map(entity).collect())
    };
    m::AlterClientQuotasResponse::default().with_entries(r.entries.iter().map(entry).collect())
}

fn describe_user_scram_credentials(
    r: &m::DescribeUserScramCredentialsRequest,
) -> m::DescribeUserScramCredentialsResponse {
    use m::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
    let user = |u: &m::describe_user_scram_credentials_request::UserName| {
        DescribeUserScramCredentialsResult::default()
            .with_user(u.name.clone())
            .with_error_code(ERROR)
    };
    m::DescribeUserScramCredentialsResponse::default()
        .with_error_code(ERROR)
        .with_results(r.users.iter().flatten().map(user).collect())
}

/// One result per deletion and per upsertion (clients match them by user).
fn alter_user_scram_credentials(
    r: &m::AlterUserScramCredentialsRequest,
) -> m::AlterUserScramCredentialsResponse {
    use m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
    let deleted = r.deletions.iter().map(|d| &d.name);
    let upserted = r.upsertions.iter().map(|u| &u.name);
    let result = |user: &kafka_protocol::protocol::StrBytes| {
        AlterUserScramCredentialsResult::default()
            .with_user(user.clone())
            .with_error_code(ERROR)
    };
    m::AlterUserScramCredentialsResponse::default()
        .with_results(deleted.chain(upserted).map(result).collect())
}

/// An error per partition named; top-level too from v1.
fn elect_leaders(r: &m::ElectLeadersRequest, version: i16) -> m::ElectLeadersResponse {
    use m::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
    let topic = |t: &m::elect_leaders_request::TopicPartitions| {
        let partitions = t.partitions.iter().map(|&p| {
            PartitionResult::default()
                .with_partition_id(p)
                .with_error_code(ERROR)
        });
        ReplicaElectionResult::default()
            .with_topic(t.topic.clone())
            .with_partition_result(partitions.collect())
    };
    let results = r.topic_partitions.iter().flatten().map(topic).collect();
    let response = m::ElectLeadersResponse::default().with_replica_election_results(results);
    match version >= 1 {
        true => response.with_error_code(ERROR),
        false => response,
    }
}

fn alter_partition_reassignments(
    r: &m::AlterPartitionReassignmentsRequest,
) -> m::AlterPartitionReassignmentsResponse {
    use m::alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    let topic = |t: &m::alter_partition_reassignments_request::ReassignableTopic| {
        let partitions = t.partitions.iter().map(|p| {
            ReassignablePartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_code(ERROR)
        });
        ReassignableTopicResponse::default()
            .with_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    m::AlterPartitionReassignmentsResponse::default()
        .with_error_code(ERROR)
        .with_responses(r.topics.iter().map(topic).collect())
}

/// v3+ have a top-level error code; before, the only error field is per
/// log directory, so the answer is one (unnamed) directory carrying it.
fn describe_log_dirs(version: i16) -> m::DescribeLogDirsResponse {
    use m::describe_log_dirs_response::DescribeLogDirsResult;
    let response = m::DescribeLogDirsResponse::default();
    match version >= 3 {
        true => response.with_error_code(ERROR),
        false => {
            response.with_results(vec![DescribeLogDirsResult::default().with_error_code(ERROR)])
        }
    }
}

fn alter_replica_log_dirs(r: &m::AlterReplicaLogDirsRequest) -> m::AlterReplicaLogDirsResponse {
    use m::alter_replica_log_dirs_response::{
        AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
    };
    let topic = |t: &m::alter_replica_log_dirs_request::AlterReplicaLogDirTopic| {
        let partitions = t.partitions.iter().map(|&p| {
            AlterReplicaLogDirPartitionResult::default()
                .with_partition_index(p)
                .with_error_code(ERROR)
        });
        AlterReplicaLogDirTopicResult::default()
            .with_topic_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    let results = r.dirs.iter().flat_map(|d| &d.topics).map(topic).collect();
    m::AlterReplicaLogDirsResponse::default().with_results(results)
}

// Transactions: one error per partition or transaction named.

/// v0-3 add one transaction's partitions; v4+ a batch of transactions
/// (with a top-level error code).
fn add_partitions_to_txn(
    r: &m::AddPartitionsToTxnRequest,
    version: i16,
) -> m::AddPartitionsToTxnResponse {
    use m::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
    };
    let topic = |t: &m::add_partitions_to_txn_request::AddPartitionsToTxnTopic| {
        let partitions = t.partitions.iter().map(|&p| {
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(p)
                .with_partition_error_code(ERROR)
        });
        AddPartitionsToTxnTopicResult::default()
            .with_name(t.name.clone())
            .with_results_by_partition(partitions.collect())
    };
    let transaction = |t: &m::add_partitions_to_txn_request::AddPartitionsToTxnTransaction| {
        AddPartitionsToTxnResult::default()
            .with_transactional_id(t.transactional_id.clone())
            .with_topic_results(t.topics.iter().map(topic).collect())
    };
    let response = m::AddPartitionsToTxnResponse::default()
        .with_results_by_topic_v3_and_below(r.v3_and_below_topics.iter().map(topic).collect())
        .with_results_by_transaction(r.transactions.iter().map(transaction).collect());
    match version >= 4 {
        true => response.with_error_code(ERROR),
        false => response,
    }
}

fn write_txn_markers(r: &m::WriteTxnMarkersRequest) -> m::WriteTxnMarkersResponse {
    use m::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    let topic = |t: &m::write_txn_markers_request::WritableTxnMarkerTopic| {
        let partitions = t.partition_indexes.iter().map(|&p| {
            WritableTxnMarkerPartitionResult::default()
                .with_partition_index(p)
                .with_error_code(ERROR)
        });
        WritableTxnMarkerTopicResult::default()
            .with_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    let marker = |k: &m::write_txn_markers_request::WritableTxnMarker| {
        WritableTxnMarkerResult::default()
            .with_producer_id(k.producer_id)
            .with_topics(k.topics.iter().map(topic).collect())
    };
    m::WriteTxnMarkersResponse::default().with_markers(r.markers.iter().map(marker).collect())
}

fn txn_offset_commit(r: &m::TxnOffsetCommitRequest) -> m::TxnOffsetCommitResponse {
    use m::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    let topic = |t: &m::txn_offset_commit_request::TxnOffsetCommitRequestTopic| {
        let partitions = t.partitions.iter().map(|p| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(ERROR)
        });
        TxnOffsetCommitResponseTopic::default()
            .with_name(t.name.clone())
            .with_partitions(partitions.collect())
    };
    m::TxnOffsetCommitResponse::default().with_topics(r.topics.iter().map(topic).collect())
}

fn describe_transactions(r: &m::DescribeTransactionsRequest) -> m::DescribeTransactionsResponse {
    use m::describe_transactions_response::TransactionState;
    let state = |id: &m::TransactionalId| {
        TransactionState::default()
            .with_transactional_id(id.clone())
            .with_error_code(ERROR)
    };
    let states = r.transactional_ids.iter().map(state).collect();
    m::DescribeTransactionsResponse::default().with_transaction_states(states)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::server::{decode_request, encode_response, Decoded};
    use crate::kafka::versions;
    use bytes::{Buf, Bytes, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    /// Every request kind, empty: one per API key (the match is exhaustive
    /// over `ApiKey`, so a new key in kafka-protocol fails to compile here).
    macro_rules! empty_request {
        ($key:expr; $($name:ident),* $(,)?) => {
            match $key {
                $(ApiKey::$name => RequestKind::$name(Default::default()),)*
            }
        };
    }

    fn empty_request(key: ApiKey) -> RequestKind {
        empty_request!(key;
            Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch,
            FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup,
            DescribeGroups, ListGroups, SaslHandshake, ApiVersions, CreateTopics,
            DeleteTopics, DeleteRecords, InitProducerId, OffsetForLeaderEpoch,
            AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers,
            TxnOffsetCommit, DescribeAcls, CreateAcls, DeleteAcls, DescribeConfigs,
            AlterConfigs, AlterReplicaLogDirs, DescribeLogDirs, SaslAuthenticate,
            CreatePartitions, CreateDelegationToken, RenewDelegationToken,
            ExpireDelegationToken, DescribeDelegationToken, DeleteGroups,
            ElectLeaders, IncrementalAlterConfigs, AlterPartitionReassignments,
            ListPartitionReassignments, OffsetDelete, DescribeClientQuotas,
            AlterClientQuotas, DescribeUserScramCredentials,
            AlterUserScramCredentials, Vote, BeginQuorumEpoch, EndQuorumEpoch,
            DescribeQuorum, AlterPartition, UpdateFeatures, Envelope, FetchSnapshot,
            DescribeCluster, DescribeProducers, BrokerRegistration, BrokerHeartbeat,
            UnregisterBroker, DescribeTransactions, ListTransactions,
            AllocateProducerIds, ConsumerGroupHeartbeat, ConsumerGroupDescribe,
            ControllerRegistration, GetTelemetrySubscriptions, PushTelemetry,
            AssignReplicasToDirs, ListConfigResources, DescribeTopicPartitions,
            ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch, ShareAcknowledge,
            AddRaftVoter, RemoveRaftVoter, UpdateRaftVoter,
            InitializeShareGroupState, ReadShareGroupState, WriteShareGroupState,
            DeleteShareGroupState, ReadShareGroupStateSummary,
            DescribeShareGroupOffsets, AlterShareGroupOffsets,
            DeleteShareGroupOffsets,
        )
    }

    /// The versions of `key` kafka-protocol knows and this node does not serve.
    fn unserved(key: ApiKey) -> Vec<i16> {
        let known = key.valid_versions();
        let served =
            |v: i16| versions::range(key).is_some_and(|(min, max)| (min..=max).contains(&v));
        (known.min..=known.max).filter(|&v| !served(v)).collect()
    }

    /// A request frame as a client sends it (the bytes after the size), or
    /// `None` where kafka-protocol's request type lacks a version its
    /// `ApiKey` lists (such a frame cannot decode either).
    fn frame(key: ApiKey, version: i16, body: &RequestKind) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")))
            .encode(&mut buf, key.request_header_version(version))
            .expect("a header encodes");
        body.encode(&mut buf, version).ok()?;
        Some(buf.freeze())
    }

    /// What a client reads back for `body`: the node's answer, encoded and
    /// decoded again as the client would (`None`: no answer at all).
    fn answer(key: ApiKey, version: i16, body: RequestKind) -> Option<ResponseKind> {
        let frame = frame(key, version, &body).expect("the request encodes");
        let Ok(Decoded::Unsupported { refusal, .. }) = decode_request(frame) else {
            panic!("{key:?} v{version}: not refused as unsupported");
        };
        let Refusal::Answer(response) = refusal else {
            return None;
        };
        Some(read_back(key, version, &response))
    }

    fn read_back(key: ApiKey, version: i16, response: &ResponseKind) -> ResponseKind {
        let mut bytes = encode_response(key, version, 7, response)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"))
            .freeze();
        assert_eq!(
            bytes.get_i32() as usize,
            bytes.len(),
            "{key:?} v{version} size"
        );
        let header = ResponseHeader::decode(&mut bytes, key.response_header_version(version))
            .expect("a response header");
        assert_eq!(header.correlation_id, 7);
        let decoded = ResponseKind::decode(key, &mut bytes, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version} decodes: {e}"));
        assert!(bytes.is_empty(), "{key:?} v{version}: bytes left over");
        decoded
    }

    fn name(s: &'static str) -> StrBytes {
        StrBytes::from_static_str(s)
    }

    fn topic(s: &'static str) -> TopicName {
        TopicName(name(s))
    }

    #[test]
    fn every_unserved_api_and_version_gets_an_answer_that_encodes() {
        let mut answered = 0;
        for key in ApiKey::iter().filter(|&k| k != ApiKey::ApiVersions) {
            for version in unserved(key) {
                let mut body = empty_request(key);
                if let RequestKind::Produce(p) = &mut body {
                    p.acks = 1; // acks=0 gets no answer (tested below)
                }
                let Some(frame) = frame(key, version, &body) else {
                    continue;
                };
                let Ok(Decoded::Unsupported { refusal, .. }) = decode_request(frame) else {
                    panic!("{key:?} v{version}: not refused as unsupported");
                };
                let Refusal::Answer(response) = refusal else {
                    panic!("{key:?} v{version}: no answer");
                };
                // Every field the answer sets survives the wire.
                assert_eq!(
                    read_back(key, version, &response),
                    *response,
                    "{key:?} v{version}"
                );
                answered += 1;
            }
        }
        assert!(answered > 100, "only {answered} unserved versions answered");
    }

    /// The APIs whose answer is only a top-level error code (their
    /// responses name no items, or none a client matches to its request).
    #[test]
    fn top_level_errors_are_unsupported_version() {
        use ResponseKind as R;
        let top = |r: &ResponseKind| match r {
            R::JoinGroup(r) => r.error_code,
            R::Heartbeat(r) => r.error_code,
            R::SyncGroup(r) => r.error_code,
            R::ListGroups(r) => r.error_code,
            R::InitProducerId(r) => r.error_code,
            R::SaslHandshake(r) => r.error_code,
            R::SaslAuthenticate(r) => r.error_code,
            R::AddOffsetsToTxn(r) => r.error_code,
            R::EndTxn(r) => r.error_code,
            R::DescribeAcls(r) => r.error_code,
            R::ListPartitionReassignments(r) => r.error_code,
            R::DescribeClientQuotas(r) => r.error_code,
            R::DescribeUserScramCredentials(r) => r.error_code,
            R::DescribeCluster(r) => r.error_code,
            R::ListTransactions(r) => r.error_code,
            R::ConsumerGroupHeartbeat(r) => r.error_code,
            R::GetTelemetrySubscriptions(r) => r.error_code,
            R::PushTelemetry(r) => r.error_code,
            R::CreateDelegationToken(r) => r.error_code,
            R::DescribeDelegationToken(r) => r.error_code,
            R::UpdateFeatures(r) => r.error_code,
            R::ShareGroupHeartbeat(r) => r.error_code,
            R::ShareFetch(r) => r.error_code,
            R::Vote(r) => r.error_code,
            R::BrokerHeartbeat(r) => r.error_code,
            other => panic!("no top-level error in {other:?}"),
        };
        let keys = [
            ApiKey::JoinGroup,
            ApiKey::Heartbeat,
            ApiKey::SyncGroup,
            ApiKey::ListGroups,
            ApiKey::InitProducerId,
            ApiKey::SaslHandshake,
            ApiKey::SaslAuthenticate,
            ApiKey::AddOffsetsToTxn,
            ApiKey::EndTxn,
            ApiKey::DescribeAcls,
            ApiKey::ListPartitionReassignments,
            ApiKey::DescribeClientQuotas,
            ApiKey::DescribeUserScramCredentials,
            ApiKey::DescribeCluster,
            ApiKey::ListTransactions,
            ApiKey::ConsumerGroupHeartbeat,
            ApiKey::GetTelemetrySubscriptions,
            ApiKey::PushTelemetry,
            ApiKey::CreateDelegationToken,
            ApiKey::DescribeDelegationToken,
            ApiKey::UpdateFeatures,
            ApiKey::ShareGroupHeartbeat,
            ApiKey::ShareFetch,
            ApiKey::Vote,
            ApiKey::BrokerHeartbeat,
        ];
        for key in keys {
            for version in unserved(key) {
                if frame(key, version, &empty_request(key)).is_none() {
                    continue; // kafka-protocol's request type lacks this version
                }
                let Some(response) = answer(key, version, empty_request(key)) else {
                    panic!("{key:?} v{version}: no answer");
                };
                assert_eq!(top(&response), ERROR, "{key:?} v{version}");
            }
        }
    }

    #[test]
    fn config_answers_name_each_resource() {
        use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
        use kafka_protocol::messages::incremental_alter_configs_request as incremental;
        for version in unserved(ApiKey::AlterConfigs) {
            let resources = vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(name("a")),
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(name("1")),
            ];
            let request = m::AlterConfigsRequest::default().with_resources(resources);
            let Some(ResponseKind::AlterConfigs(r)) =
                answer(ApiKey::AlterConfigs, version, request.into())
            else {
                panic!("AlterConfigs v{version}");
            };
            let got: Vec<_> = r
                .responses
                .iter()
                .map(|c| (c.resource_type, c.resource_name.as_str(), c.error_code))
                .collect();
            assert_eq!(got, [(2, "a", ERROR), (4, "1", ERROR)], "v{version}");
        }
        for version in unserved(ApiKey::IncrementalAlterConfigs) {
            let resource = incremental::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(name("a"));
            let request =
                m::IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
            let Some(ResponseKind::IncrementalAlterConfigs(r)) =
                answer(ApiKey::IncrementalAlterConfigs, version, request.into())
            else {
                panic!("IncrementalAlterConfigs v{version}");
            };
            assert_eq!(r.responses.len(), 1);
            assert_eq!(
                (
                    r.responses[0].resource_name.as_str(),
                    r.responses[0].error_code
                ),
                ("a", ERROR)
            );
        }
    }

    #[test]
    fn acl_answers_have_one_result_per_creation_and_filter() {
        use kafka_protocol::messages::create_acls_request::AclCreation;
        use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
        for version in unserved(ApiKey::CreateAcls) {
            let creations = vec![AclCreation::default(), AclCreation::default()];
            let request = m::CreateAclsRequest::default().with_creations(creations);
            let Some(ResponseKind::CreateAcls(r)) =
                answer(ApiKey::CreateAcls, version, request.into())
            else {
                panic!("CreateAcls v{version}");
            };
            let codes: Vec<_> = r.results.iter().map(|c| c.error_code).collect();
            assert_eq!(codes, [ERROR, ERROR], "v{version}");
        }
        for version in unserved(ApiKey::DeleteAcls) {
            let request =
                m::DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()]);
            let Some(ResponseKind::DeleteAcls(r)) =
                answer(ApiKey::DeleteAcls, version, request.into())
            else {
                panic!("DeleteAcls v{version}");
            };
            let codes: Vec<_> = r.filter_results.iter().map(|c| c.error_code).collect();
            assert_eq!(codes, [ERROR], "v{version}");
        }
    }

    #[test]
    fn partition_answers_carry_the_error_per_partition() {
        use kafka_protocol::messages::offset_for_leader_epoch_request as epoch;
        use kafka_protocol::messages::txn_offset_commit_request as txn;
        for version in unserved(ApiKey::OffsetForLeaderEpoch) {
            let t = epoch::OffsetForLeaderTopic::default()
                .with_topic(topic("t"))
                .with_partitions(vec![
                    epoch::OffsetForLeaderPartition::default().with_partition(3)
                ]);
            let request = m::OffsetForLeaderEpochRequest::default().with_topics(vec![t]);
            let Some(ResponseKind::OffsetForLeaderEpoch(r)) =
                answer(ApiKey::OffsetForLeaderEpoch, version, request.into())
            else {
                panic!("OffsetForLeaderEpoch v{version}");
            };
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.partition, p.error_code, p.end_offset),
                (3, ERROR, -1),
                "v{version}"
            );
        }
        for version in unserved(ApiKey::TxnOffsetCommit) {
            let t = txn::TxnOffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![
                    txn::TxnOffsetCommitRequestPartition::default().with_partition_index(2)
                ]);
            let request = m::TxnOffsetCommitRequest::default().with_topics(vec![t]);
            let Some(ResponseKind::TxnOffsetCommit(r)) =
                answer(ApiKey::TxnOffsetCommit, version, request.into())
            else {
                panic!("TxnOffsetCommit v{version}");
            };
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.partition_index, p.error_code), (2, ERROR), "v{version}");
        }
    }

    #[test]
    fn transaction_answers_carry_the_error_per_item() {
        use kafka_protocol::messages::add_partitions_to_txn_request as add;
        for version in unserved(ApiKey::AddPartitionsToTxn) {
            let t = add::AddPartitionsToTxnTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![0, 1]);
            let request = match version {
                0..=3 => m::AddPartitionsToTxnRequest::default().with_v3_and_below_topics(vec![t]),
                _ => m::AddPartitionsToTxnRequest::default().with_transactions(vec![
                    add::AddPartitionsToTxnTransaction::default().with_topics(vec![t]),
                ]),
            };
            let Some(ResponseKind::AddPartitionsToTxn(r)) =
                answer(ApiKey::AddPartitionsToTxn, version, request.into())
            else {
                panic!("AddPartitionsToTxn v{version}");
            };
            let topics = match version {
                0..=3 => &r.results_by_topic_v3_and_below,
                _ => {
                    assert_eq!(r.error_code, ERROR, "v{version} top level");
                    &r.results_by_transaction[0].topic_results
                }
            };
            let codes: Vec<_> = topics[0]
                .results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
                .collect();
            assert_eq!(codes, [ERROR, ERROR], "v{version}");
        }
        for version in unserved(ApiKey::DescribeTransactions) {
            let ids = vec![m::TransactionalId(name("tx"))];
            let request = m::DescribeTransactionsRequest::default().with_transactional_ids(ids);
            let Some(ResponseKind::DescribeTransactions(r)) =
                answer(ApiKey::DescribeTransactions, version, request.into())
            else {
                panic!("DescribeTransactions v{version}");
            };
            let s = &r.transaction_states[0];
            assert_eq!((s.transactional_id.as_str(), s.error_code), ("tx", ERROR));
        }
    }

    #[test]
    fn admin_answers_carry_the_error_per_item() {
        use kafka_protocol::messages::alter_partition_reassignments_request as reassign;
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        for version in unserved(ApiKey::ElectLeaders) {
            let t = TopicPartitions::default()
                .with_topic(topic("t"))
                .with_partitions(vec![4]);
            let request = m::ElectLeadersRequest::default().with_topic_partitions(Some(vec![t]));
            let Some(ResponseKind::ElectLeaders(r)) =
                answer(ApiKey::ElectLeaders, version, request.into())
            else {
                panic!("ElectLeaders v{version}");
            };
            let p = &r.replica_election_results[0].partition_result[0];
            assert_eq!((p.partition_id, p.error_code), (4, ERROR), "v{version}");
            assert_eq!(
                r.error_code,
                if version >= 1 { ERROR } else { 0 },
                "v{version}"
            );
        }
        for version in unserved(ApiKey::AlterPartitionReassignments) {
            let t = reassign::ReassignableTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![
                    reassign::ReassignablePartition::default().with_partition_index(1)
                ]);
            let request = m::AlterPartitionReassignmentsRequest::default().with_topics(vec![t]);
            let Some(ResponseKind::AlterPartitionReassignments(r)) =
                answer(ApiKey::AlterPartitionReassignments, version, request.into())
            else {
                panic!("AlterPartitionReassignments v{version}");
            };
            assert_eq!(r.error_code, ERROR);
            assert_eq!(r.responses[0].partitions[0].error_code, ERROR);
        }
        for version in unserved(ApiKey::DescribeLogDirs) {
            let Some(ResponseKind::DescribeLogDirs(r)) = answer(
                ApiKey::DescribeLogDirs,
                version,
                m::DescribeLogDirsRequest::default().into(),
            ) else {
                panic!("DescribeLogDirs v{version}");
            };
            match version >= 3 {
                true => assert_eq!(r.error_code, ERROR, "v{version}"),
                false => assert_eq!(r.results[0].error_code, ERROR, "v{version}"),
            }
        }
        for version in unserved(ApiKey::OffsetDelete) {
            use kafka_protocol::messages::offset_delete_request as delete;
            let t = delete::OffsetDeleteRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![delete::OffsetDeleteRequestPartition::default()]);
            let request = m::OffsetDeleteRequest::default().with_topics(vec![t]);
            let Some(ResponseKind::OffsetDelete(r)) =
                answer(ApiKey::OffsetDelete, version, request.into())
            else {
                panic!("OffsetDelete v{version}");
            };
            assert_eq!(
                (r.error_code, r.topics[0].partitions[0].error_code),
                (ERROR, ERROR)
            );
        }
        for version in unserved(ApiKey::AlterUserScramCredentials) {
            use kafka_protocol::messages::alter_user_scram_credentials_request as scram;
            let request = m::AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![
                    scram::ScramCredentialDeletion::default().with_name(name("u1"))
                ])
                .with_upsertions(vec![
                    scram::ScramCredentialUpsertion::default().with_name(name("u2"))
                ]);
            let Some(ResponseKind::AlterUserScramCredentials(r)) =
                answer(ApiKey::AlterUserScramCredentials, version, request.into())
            else {
                panic!("AlterUserScramCredentials v{version}");
            };
            let got: Vec<_> = r
                .results
                .iter()
                .map(|u| (u.user.as_str(), u.error_code))
                .collect();
            assert_eq!(got, [("u1", ERROR), ("u2", ERROR)]);
        }
        for version in unserved(ApiKey::DescribeProducers) {
            use kafka_protocol::messages::describe_producers_request::TopicRequest;
            let t = TopicRequest::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0]);
            let request = m::DescribeProducersRequest::default().with_topics(vec![t]);
            let Some(ResponseKind::DescribeProducers(r)) =
                answer(ApiKey::DescribeProducers, version, request.into())
            else {
                panic!("DescribeProducers v{version}");
            };
            assert_eq!(r.topics[0].partitions[0].error_code, ERROR);
        }
        for version in unserved(ApiKey::DescribeTopicPartitions) {
            use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
            let request = m::DescribeTopicPartitionsRequest::default()
                .with_topics(vec![TopicRequest::default().with_name(topic("t"))]);
            let Some(ResponseKind::DescribeTopicPartitions(r)) =
                answer(ApiKey::DescribeTopicPartitions, version, request.into())
            else {
                panic!("DescribeTopicPartitions v{version}");
            };
            assert_eq!(r.topics[0].error_code, ERROR);
        }
        for version in unserved(ApiKey::ConsumerGroupDescribe) {
            let request = m::ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![m::GroupId(name("g"))]);
            let Some(ResponseKind::ConsumerGroupDescribe(r)) =
                answer(ApiKey::ConsumerGroupDescribe, version, request.into())
            else {
                panic!("ConsumerGroupDescribe v{version}");
            };
            assert_eq!(
                (r.groups[0].group_id.as_str(), r.groups[0].error_code),
                ("g", ERROR)
            );
        }
    }

    /// Served APIs asked at a version above the served range.
    #[test]
    fn served_apis_at_unserved_versions_get_the_error() {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let id = uuid_of(9);
        for version in unserved(ApiKey::Produce) {
            let t = match version >= 13 {
                true => TopicProduceData::default().with_topic_id(id),
                false => TopicProduceData::default().with_name(topic("t")),
            }
            .with_partition_data(vec![PartitionProduceData::default().with_index(2)]);
            let request = m::ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![t.clone()]);
            let Some(ResponseKind::Produce(r)) = answer(ApiKey::Produce, version, request.into())
            else {
                panic!("Produce v{version}");
            };
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(
                (p.index, p.error_code, p.base_offset),
                (2, ERROR, -1),
                "v{version}"
            );
            // acks=0: no answer at all, as Kafka.
            let silent = m::ProduceRequest::default()
                .with_acks(0)
                .with_topic_data(vec![t]);
            assert!(
                answer(ApiKey::Produce, version, silent.into()).is_none(),
                "v{version}"
            );
        }
        for version in unserved(ApiKey::Fetch) {
            let t = FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![FetchPartition::default().with_partition(5)]);
            let request = m::FetchRequest::default().with_topics(vec![t]);
            let Some(ResponseKind::Fetch(r)) = answer(ApiKey::Fetch, version, request.into())
            else {
                panic!("Fetch v{version}");
            };
            assert_eq!(r.error_code, ERROR, "v{version}");
            assert_eq!(r.responses[0].topic_id, id);
            let p = &r.responses[0].partitions[0];
            assert_eq!((p.partition_index, p.error_code), (5, ERROR), "v{version}");
        }
        for version in unserved(ApiKey::Metadata) {
            let Some(ResponseKind::Metadata(r)) = answer(
                ApiKey::Metadata,
                version,
                m::MetadataRequest::default().into(),
            ) else {
                panic!("Metadata v{version}");
            };
            assert_eq!(r.error_code, ERROR, "v{version}");
        }
        for version in unserved(ApiKey::FindCoordinator) {
            let request =
                m::FindCoordinatorRequest::default().with_coordinator_keys(vec![name("g")]);
            let Some(ResponseKind::FindCoordinator(r)) =
                answer(ApiKey::FindCoordinator, version, request.into())
            else {
                panic!("FindCoordinator v{version}");
            };
            let c = &r.coordinators[0];
            assert_eq!(
                (c.key.as_str(), c.error_code, c.node_id.0),
                ("g", ERROR, -1),
                "v{version}"
            );
        }
        for version in unserved(ApiKey::OffsetFetch) {
            use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
            let group = OffsetFetchRequestGroup::default().with_group_id(m::GroupId(name("g")));
            let request = m::OffsetFetchRequest::default().with_groups(vec![group]);
            // kafka-protocol lists OffsetFetch v10 but its request stops at v9.
            let Some(frame) = frame(ApiKey::OffsetFetch, version, &request.clone().into()) else {
                continue;
            };
            assert!(matches!(
                decode_request(frame),
                Ok(Decoded::Unsupported { .. })
            ));
            let Some(ResponseKind::OffsetFetch(r)) =
                answer(ApiKey::OffsetFetch, version, request.into())
            else {
                panic!("OffsetFetch v{version}");
            };
            assert_eq!(r.groups[0].error_code, ERROR, "v{version}");
        }
    }

    fn uuid_of(n: u8) -> uuid::Uuid {
        uuid::Uuid::from_bytes([n; 16])
    }

    #[test]
    fn unknown_keys_and_bodies_that_do_not_decode_still_close_the_connection() {
        // API key 88 is a gap in Kafka's numbering; 999 is past its end.
        for key in [88i16, 999] {
            let mut f = BytesMut::new();
            f.extend_from_slice(&key.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 255, 255]);
            assert!(decode_request(f.freeze()).is_err(), "API key {key}");
        }
        // DeleteRecords v0 declaring more topics than the bytes hold.
        let mut f = frame(
            ApiKey::DeleteRecords,
            0,
            &m::DeleteRecordsRequest::default().into(),
        )
        .expect("encodes")
        .to_vec();
        let at = f.len() - 8; // the topics count, before timeout_ms
        f[at..at + 4].copy_from_slice(&1000i32.to_be_bytes());
        let err = decode_request(Bytes::from(f)).err().expect("refused");
        assert!(err.contains("bad DeleteRecords v0 body"), "{err}");
        // A version kafka-protocol does not know.
        let f = Bytes::from_static(&[0, 33, 0, 9, 0, 0, 0, 1, 255, 255]);
        assert!(decode_request(f).is_err());
    }
}
