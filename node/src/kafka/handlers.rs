//! One function per Kafka API: translate the request into calls on the node
//! (or reads of its committed metadata view) and the outcome into Kafka's
//! response shape and error codes. No protocol decisions here.

use super::access::{Access, CLUSTER_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use super::acls;
use super::batch_check;
use super::configs;
use super::fetch_encode::{self, PartitionOut, RecordsOut, Segment};
use super::groups;
use super::server::Request;
use super::versions::SUPPORTED;
use crate::runtime::messages::{ControllerAck, ControllerFailure};
use crate::runtime::node::{ClusterView, FetchPart, KafkaCall, NodeHandle, PartError};
use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, InitProducerIdRequest,
    ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_model::acl::{Operation, ResourceType};
use runnel_model::controller::{ControllerError, ControllerRequest, MetadataImage, MetadataRecord};
use runnel_model::core::NodeId;
use runnel_model::partition::PartitionRegistration;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A produce request's partition: its index and, if it was refused before
/// any append, the error code and message (the response keeps the
/// request's shape).
type PartitionShape = (i32, Option<(i16, Option<String>)>);

pub use super::code;

/// The response, or `None` when the client expects none (acks=0).
pub async fn handle(request: Request, node: &NodeHandle) -> Option<ResponseKind> {
    let v = request.header.request_api_version;
    let host = request.client_host.as_str();
    Some(match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata(r, v, host, node).await),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics(r, v, host, node).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics(r, v, host, node).await)
        }
        RequestKind::Produce(r) => ResponseKind::Produce(produce(r, v, host, node).await?),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets(r, v, host, node).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id(r, host, node).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe_configs(r, host, node))
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(r, host, node).await,
        ),
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(configs::alter_configs(r, host, node).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(super::delete_records::delete_records(r, host, node).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions(r, host, node).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(acls::describe_acls(r, host, node))
        }
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(acls::create_acls(r, host, node).await)
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(acls::delete_acls(r, host, node).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(r, v, host, node).await)
        }
        RequestKind::JoinGroup(r) => {
            let client_id = request
                .header
                .client_id
                .as_deref()
                .unwrap_or("")
                .to_string();
            ResponseKind::JoinGroup(
                groups::join_group(r, v, &client_id, &request.client_host, node).await,
            )
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync_group(r, v, host, node).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(groups::heartbeat(r, host, node).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(r, v, host, node).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(r, host, node).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(r, v, host, node).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list_groups(r, v, host, node).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(r, host, node).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(r, host, node).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(r, host, node).await)
        }
        _ => return None,
    })
}

fn api_versions() -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// A new topic's id: a random (v4) UUID, as Kafka's controller draws one
/// (`Uuid.randomUuid`). Drawn here, at the broker that took the request,
/// so that the controller's decision stays a pure function of it.
pub fn new_topic_id() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

/// A topic's id as clients see it (Metadata v10+, CreateTopics v7+,
/// DeleteTopics v6+): the one recorded at its creation; Kafka's zero UUID
/// for a topic that does not exist; for a topic created before ids were
/// recorded, a stable id derived from its name.
pub fn topic_id(image: &MetadataImage, name: &str) -> uuid::Uuid {
    match image.topics.get(name) {
        None => uuid::Uuid::nil(),
        Some(t) if t.id != 0 => uuid::Uuid::from_u128(t.id),
        Some(_) => legacy_topic_id(name),
    }
}

fn legacy_topic_id(name: &str) -> uuid::Uuid {
    let a = crc32c::crc32c(name.as_bytes()) as u128;
    let b = crc32c::crc32c_append(0x5a5a_5a5a, name.as_bytes()) as u128;
    let c = name.len() as u128;
    uuid::Uuid::from_u128((a << 96) | (b << 64) | (c << 32) | 0x4000_8000)
}

/// Host and port of an advertised endpoint `host:port`.
pub fn split_endpoint(endpoint: &str) -> (String, i32) {
    match endpoint.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(9092),
        ),
        None => (endpoint.to_string(), 9092),
    }
}

fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .iter()
        .filter(|(id, _)| image.is_active(**id))
        .map(|(id, b)| {
            let (host, port) = split_endpoint(&b.endpoint);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id as i32))
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect()
}

fn topic_metadata(view: &ClusterView, name: &str) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(topic_id(&view.image, name))
        .with_is_internal(runnel_model::controller::is_internal_topic(name));
    let Some(topic) = view.image.topics.get(name) else {
        return t.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
    };
    t.partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, reg)| {
            let ids = |v: &mut dyn Iterator<Item = u32>| {
                v.map(|b| BrokerId(b as i32)).collect::<Vec<_>>()
            };
            MetadataResponsePartition::default()
                .with_error_code(if reg.leader.is_some() {
                    code::NONE
                } else {
                    code::LEADER_NOT_AVAILABLE
                })
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(reg.leader.map_or(-1, |l| l as i32)))
                .with_leader_epoch(reg.leader_epoch as i32)
                .with_replica_nodes(ids(&mut reg.replicas.iter().copied()))
                .with_isr_nodes(ids(&mut reg.isr.iter().copied()))
                .with_offline_replicas(ids(&mut reg
                    .replicas
                    .iter()
                    .copied()
                    .filter(|&b| !view.image.is_eligible(b, name, i as u32))))
        })
        .collect();
    t
}

/// How long a request that needs the cluster's metadata waits, at a node
/// that is still joining, for the metadata to show this broker (Kafka does
/// not serve clients before then either).
const STARTUP_WAIT_MS: u64 = 5_000;

/// The committed metadata, once it shows this broker serving (or after
/// [`STARTUP_WAIT_MS`]): a client that connects the moment the listener
/// opens gets the cluster, not an empty broker list it cannot use.
async fn ready_view(node: &NodeHandle) -> std::sync::Arc<ClusterView> {
    let me = node.settings.node_id;
    let mut view = node.view.clone();
    let ready = |v: &std::sync::Arc<ClusterView>| v.image.is_active(me);
    if node.settings.broker && !ready(&view.borrow()) {
        let wait = Duration::from_millis(STARTUP_WAIT_MS);
        let _ = tokio::time::timeout(wait, view.wait_for(ready)).await;
    }
    let current = view.borrow().clone();
    current
}

async fn metadata(
    r: MetadataRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> MetadataResponse {
    let view = ready_view(node).await;
    let access = Access::new(&node.settings, &view, client_host);
    // Every topic: those the client may not describe are left out, as
    // Kafka does (so a wildcard subscription never sees them).
    let every_topic = || {
        view.image
            .topics
            .keys()
            .filter(|n| access.topic(Operation::Describe, n))
            .cloned()
            .collect()
    };
    let names: Vec<String> = match &r.topics {
        None => every_topic(),
        // v0 has no null: an empty list means all topics.
        Some(list) if list.is_empty() && v == 0 => every_topic(),
        Some(list) => list
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect(),
    };
    let auto_create = node.settings.auto_create_topics && (v < 4 || r.allow_auto_topic_creation);
    let mut topics = Vec::new();
    for name in names {
        if !access.topic(Operation::Describe, &name) {
            topics.push(unauthorized_topic(&name));
            continue;
        }
        let mut t = topic_metadata(&view, &name);
        let missing = t.error_code == code::UNKNOWN_TOPIC_OR_PARTITION;
        if missing
            && auto_create
            && !(access.cluster(Operation::Create) || access.topic(Operation::Create, &name))
        {
            topics.push(unauthorized_topic(&name));
            continue;
        }
        if missing && auto_create && !name.is_empty() {
            if runnel_model::controller::validate_topic_name(&name).is_ok() {
                // Created in the background; the client retries on LEADER_NOT_AVAILABLE.
                let (tx, _rx) = oneshot::channel();
                let request = ControllerRequest::CreateTopic {
                    name: name.clone(),
                    partitions: None,
                    replication_factor: None,
                    configs: BTreeMap::new(),
                    assignment: None,
                    topic_id: new_topic_id(),
                };
                let _ = node
                    .events
                    .send(crate::runtime::node::Event::Kafka(KafkaCall::Controller {
                        request,
                        timeout_ms: crate::runtime::node::CONTROLLER_INTERNAL_TIMEOUT_MS,
                        reply: tx,
                    }))
                    .await;
                t.error_code = code::LEADER_NOT_AVAILABLE;
            } else {
                t.error_code = code::INVALID_TOPIC_EXCEPTION;
            }
        }
        topics.push(t);
    }
    if v >= 8 && r.include_topic_authorized_operations {
        for t in topics
            .iter_mut()
            .filter(|t| t.error_code != TOPIC_AUTHORIZATION_FAILED)
        {
            let name = t.name.as_ref().map_or("", |n| n.0.as_str());
            t.topic_authorized_operations = access.operations(ResourceType::Topic, name);
        }
    }
    let brokers = brokers(&view.image);
    // Kafka names some broker as "controller" for admin requests; any
    // broker forwards them, so name one that is alive.
    let controller = view
        .controller
        .filter(|c| view.image.is_active(*c))
        .or_else(|| view.image.active_brokers().first().copied())
        .map_or(-1, |c| c as i32);
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics)
        .with_controller_id(BrokerId(controller));
    if v >= 2 {
        response.cluster_id = Some(str_bytes(&node.settings.cluster_id));
    }
    if (8..=10).contains(&v) && r.include_cluster_authorized_operations {
        response.cluster_authorized_operations = access.cluster_operations();
    }
    response
}

/// A topic the client may not describe (or create): named, with
/// TOPIC_AUTHORIZATION_FAILED and nothing else, as Kafka answers.
fn unauthorized_topic(name: &str) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
}

/// Asks the controller, answered within `timeout_ms` (the client's).
pub(super) async fn call_controller(
    node: &NodeHandle,
    request: ControllerRequest,
    timeout_ms: i32,
) -> Result<ControllerAck, ControllerFailure> {
    let (tx, rx) = oneshot::channel();
    let call = KafkaCall::Controller {
        request,
        timeout_ms: timeout_ms.max(1) as u64,
        reply: tx,
    };
    if node
        .events
        .send(crate::runtime::node::Event::Kafka(call))
        .await
        .is_err()
    {
        return Err(ControllerFailure::NotController { leader: None });
    }
    rx.await
        .unwrap_or(Err(ControllerFailure::NotController { leader: None }))
}

/// Waits (up to the request's deadline) until this broker's metadata
/// includes a controller decision, so that a client's next Metadata request
/// sees it.
pub(super) async fn await_metadata(node: &NodeHandle, offset: u64, deadline: Instant) {
    let mut view = node.view.clone();
    let _ = tokio::time::timeout_at(deadline, view.wait_for(|v| v.metadata_offset >= offset)).await;
}

/// When an admin request's `timeout_ms` (Kafka's: for the whole request)
/// runs out.
pub(super) fn admin_deadline(timeout_ms: i32) -> Instant {
    Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64)
}

pub(super) fn remaining_ms(deadline: Instant) -> i32 {
    deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(i32::MAX as u128) as i32
}

pub(super) fn controller_error(e: &ControllerFailure) -> (i16, String) {
    match e {
        ControllerFailure::NotController { .. } => {
            (code::NOT_CONTROLLER, "no active controller (yet)".into())
        }
        ControllerFailure::TimedOut => (
            code::REQUEST_TIMED_OUT,
            "Not answered within the request's timeout; it is carried out all the same.".into(),
        ),
        ControllerFailure::Rejected(e) => match e {
            ControllerError::TopicAlreadyExists => {
                (code::TOPIC_ALREADY_EXISTS, "Topic already exists.".into())
            }
            ControllerError::UnknownTopicOrPartition => (
                code::UNKNOWN_TOPIC_OR_PARTITION,
                "This server does not host this topic-partition.".into(),
            ),
            ControllerError::InvalidPartitions(m) => (code::INVALID_PARTITIONS, m.clone()),
            ControllerError::InvalidReplicationFactor(m) => {
                (code::INVALID_REPLICATION_FACTOR, m.clone())
            }
            ControllerError::InvalidReplicaAssignment(m) => {
                (code::INVALID_REPLICA_ASSIGNMENT, m.clone())
            }
            ControllerError::InvalidTopic(m) => (code::INVALID_TOPIC_EXCEPTION, m.clone()),
            ControllerError::PolicyViolation(m) => (code::POLICY_VIOLATION, m.clone()),
            ControllerError::InvalidConfig(m) => (code::INVALID_CONFIG, m.clone()),
            other => (code::UNKNOWN_SERVER_ERROR, format!("{other:?}")),
        },
    }
}

/// TOPIC_AUTHORIZATION_FAILED's message, as Kafka words it.
pub(super) const TOPIC_DENIED: &str = "Authorization failed.";

/// Whether a connection may do `operation` on topic `name` (read from the
/// metadata as it is now).
fn may_topic(node: &NodeHandle, client_host: &str, operation: Operation, name: &str) -> bool {
    let view = node.view.borrow().clone();
    Access::new(&node.settings, &view, client_host).topic(operation, name)
}

async fn create_topics(
    r: CreateTopicsRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> CreateTopicsResponse {
    let deadline = admin_deadline(r.timeout_ms);
    let may_create_any = {
        let view = node.view.borrow().clone();
        Access::new(&node.settings, &view, client_host).cluster(Operation::Create)
    };
    let mut results = Vec::new();
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        if !(may_create_any || may_topic(node, client_host, Operation::Create, &name)) {
            result.error_code = TOPIC_AUTHORIZATION_FAILED;
            if v >= 1 {
                result.error_message = Some(str_bytes(TOPIC_DENIED));
            }
            results.push(result);
            continue;
        }
        let assigned = !t.assignments.is_empty();
        // Kafka's checks of the request's shape, in its order: a manual
        // assignment excludes both counts; else -1 asks for the broker's
        // default and 0 or below -1 is an error.
        let refused = if assigned && t.replication_factor != -1 {
            Some((
                code::INVALID_REQUEST,
                "A manual partition assignment was specified, but replication factor was not set to -1.",
            ))
        } else if assigned && t.num_partitions != -1 {
            Some((
                code::INVALID_REQUEST,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
            ))
        } else if t.replication_factor == 0 || t.replication_factor < -1 {
            Some((
                code::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            ))
        } else if t.num_partitions == 0 || t.num_partitions < -1 {
            Some((
                code::INVALID_PARTITIONS,
                "Number of partitions must be larger than 0, or -1 to use the default value.",
            ))
        } else {
            None
        };
        if let Some((c, m)) = refused {
            result.error_code = c;
            if v >= 1 {
                result.error_message = Some(str_bytes(m));
            }
            results.push(result);
            continue;
        }
        let assignment = match manual_assignment(&t.assignments) {
            Ok(a) => a,
            Err(m) => {
                result.error_code = code::INVALID_REPLICA_ASSIGNMENT;
                if v >= 1 {
                    result.error_message = Some(str_bytes(&m));
                }
                results.push(result);
                continue;
            }
        };
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let mut request = ControllerRequest::CreateTopic {
            name: name.clone(),
            partitions: (t.num_partitions > 0).then_some(t.num_partitions as u32),
            replication_factor: (t.replication_factor > 0).then_some(t.replication_factor as u32),
            configs,
            assignment,
            topic_id: new_topic_id(),
        };
        if r.validate_only {
            // Decided by the controller like any other, never committed.
            request = ControllerRequest::ValidateOnly(Box::new(request));
        }
        match call_controller(node, request, remaining_ms(deadline)).await {
            Ok(ack) => {
                if !r.validate_only {
                    await_metadata(node, ack.end_offset, deadline).await;
                }
                if v >= 5 {
                    // What the decision holds: its partitions and their replicas.
                    let partitions: Vec<&PartitionRegistration> = ack
                        .records
                        .iter()
                        .filter_map(|r| match r {
                            MetadataRecord::Partition { registration, .. } => Some(registration),
                            _ => None,
                        })
                        .collect();
                    result.num_partitions = partitions.len() as i32;
                    result.replication_factor =
                        partitions.first().map_or(-1, |p| p.replicas.len() as i16);
                    result.configs = Some(Vec::new());
                }
                if v >= 7 {
                    // The id the decision recorded (the first one's, for a
                    // request answered again).
                    if let Some(id) = ack.records.iter().find_map(|r| match r {
                        MetadataRecord::TopicCreated { topic_id, .. } => Some(*topic_id),
                        _ => None,
                    }) {
                        result.topic_id = uuid::Uuid::from_u128(id);
                    }
                }
            }
            Err(e) => {
                let (c, m) = controller_error(&e);
                result.error_code = c;
                if v >= 1 {
                    result.error_message = Some(str_bytes(&m));
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn delete_topics(
    r: DeleteTopicsRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> DeleteTopicsResponse {
    let deadline = admin_deadline(r.timeout_ms);
    let names: Vec<String> = if v >= 6 {
        r.topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect()
    } else {
        r.topic_names.iter().map(|n| n.0.to_string()).collect()
    };
    let mut responses = Vec::new();
    for name in names {
        let mut result = DeletableTopicResult::default().with_name(Some(topic_name(&name)));
        if !may_topic(node, client_host, Operation::Delete, &name) {
            result.error_code = TOPIC_AUTHORIZATION_FAILED;
            if v >= 5 {
                result.error_message = Some(str_bytes(TOPIC_DENIED));
            }
            responses.push(result);
            continue;
        }
        if v >= 6 {
            result.topic_id = topic_id(&node.view.borrow().image, &name);
        }
        let request = ControllerRequest::DeleteTopic { name };
        match call_controller(node, request, remaining_ms(deadline)).await {
            Ok(ack) => await_metadata(node, ack.end_offset, deadline).await,
            Err(e) => {
                let (c, m) = controller_error(&e);
                result.error_code = c;
                if v >= 5 {
                    result.error_message = Some(str_bytes(&m));
                }
            }
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn create_partitions(
    r: kafka_protocol::messages::CreatePartitionsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> kafka_protocol::messages::CreatePartitionsResponse {
    let deadline = admin_deadline(r.timeout_ms);
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    let mut results = Vec::new();
    for t in r.topics {
        let name = t.name.0.to_string();
        let mut result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !may_topic(node, client_host, Operation::Alter, &name) {
            result.error_code = TOPIC_AUTHORIZATION_FAILED;
            result.error_message = Some(str_bytes(TOPIC_DENIED));
            results.push(result);
            continue;
        }
        let assignment: Option<Vec<Vec<i32>>> = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let assignment = match assignment.map(checked_broker_ids).transpose() {
            Ok(a) => a,
            Err(m) => {
                result.error_code = code::INVALID_REPLICA_ASSIGNMENT;
                result.error_message = Some(str_bytes(&m));
                results.push(result);
                continue;
            }
        };
        if t.count <= 0 {
            result.error_code = code::INVALID_PARTITIONS;
            result.error_message = Some(str_bytes("the partition count must be positive"));
        } else {
            let mut request = ControllerRequest::CreatePartitions {
                name,
                count: t.count as u32,
                assignment,
            };
            if r.validate_only {
                request = ControllerRequest::ValidateOnly(Box::new(request));
            }
            match call_controller(node, request, remaining_ms(deadline)).await {
                Ok(ack) if !r.validate_only => await_metadata(node, ack.end_offset, deadline).await,
                Ok(_) => {}
                Err(e) => {
                    let (c, m) = controller_error(&e);
                    result.error_code = c;
                    result.error_message = Some(str_bytes(&m));
                }
            }
        }
        results.push(result);
    }
    kafka_protocol::messages::CreatePartitionsResponse::default().with_results(results)
}

/// CreateTopics' assignments as partition-ordered broker lists: partition
/// indexes must run 0, 1, 2... (Kafka's "consecutive 0-based" rule).
fn manual_assignment(
    assignments: &[kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment],
) -> Result<Option<Vec<Vec<NodeId>>>, String> {
    if assignments.is_empty() {
        return Ok(None);
    }
    let mut lists = Vec::with_capacity(assignments.len());
    for (i, a) in assignments.iter().enumerate() {
        if a.partition_index != i as i32 {
            return Err("partitions should be a consecutive 0-based integer sequence".into());
        }
        lists.push(a.broker_ids.iter().map(|b| b.0).collect());
    }
    checked_broker_ids(lists).map(Some)
}

/// Broker ids are non-negative (the rest of each list the controller checks).
fn checked_broker_ids(lists: Vec<Vec<i32>>) -> Result<Vec<Vec<NodeId>>, String> {
    lists
        .into_iter()
        .map(|l| {
            l.into_iter()
                .map(|b| {
                    NodeId::try_from(b).map_err(|_| {
                        format!("The manual partition assignment includes broker {b}, but no such broker is registered.")
                    })
                })
                .collect()
        })
        .collect()
}

pub(super) fn part_error_code(e: &PartError) -> i16 {
    match e {
        PartError::UnknownTopicOrPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        PartError::NotLeaderOrFollower => code::NOT_LEADER_OR_FOLLOWER,
        PartError::OffsetOutOfRange => code::OFFSET_OUT_OF_RANGE,
        PartError::NotEnoughReplicas => code::NOT_ENOUGH_REPLICAS,
        PartError::NotEnoughReplicasAfterAppend => code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        PartError::RequestTimedOut => code::REQUEST_TIMED_OUT,
        PartError::CorruptMessage(_) => code::CORRUPT_MESSAGE,
        PartError::Storage(_) => code::KAFKA_STORAGE_ERROR,
        PartError::OutOfOrderSequence => 45,
        PartError::InvalidProducerEpoch => 47,
        PartError::NotReady => code::COORDINATOR_LOAD_IN_PROGRESS,
    }
}

/// The request's shape (every partition, refused or not, to answer in
/// order) and the partitions whose batches passed the checks.
type CheckedProduce = (
    Vec<(TopicName, Vec<PartitionShape>)>,
    Vec<(String, u32, Bytes)>,
);

/// Checks every partition's records (`batch_check`): refused ones get their
/// error in the shape, the rest go on to the node.
fn check_produce(
    topic_data: Vec<kafka_protocol::messages::produce_request::TopicProduceData>,
    view: &ClusterView,
    settings: &crate::runtime::settings::NodeSettings,
    client_host: &str,
    v: i16,
    now_ms: i64,
) -> CheckedProduce {
    let access = Access::new(settings, view, client_host);
    let mut shape: Vec<(TopicName, Vec<PartitionShape>)> = Vec::new();
    let mut parts = Vec::new();
    for t in topic_data {
        let name = t.name.0.to_string();
        let limits = batch_limits(view, &name, v, now_ms, settings);
        let may_write = access.topic(Operation::Write, &name);
        let mut ps = Vec::new();
        for p in t.partition_data {
            let early = if v < 3 {
                Some((code::UNSUPPORTED_VERSION, None))
            } else if !may_write {
                Some((TOPIC_AUTHORIZATION_FAILED, None))
            } else if runnel_model::controller::is_internal_topic(&name) {
                let m = format!("Cannot append to internal topic {name}");
                Some((code::INVALID_TOPIC_EXCEPTION, Some(m)))
            } else if p.index < 0 {
                Some((code::UNKNOWN_TOPIC_OR_PARTITION, None))
            } else {
                let records = p.records.unwrap_or_default();
                match batch_check::check(&records, &limits) {
                    Ok(checked) => {
                        parts.push((name.clone(), p.index as u32, checked.apply(records)));
                        None
                    }
                    Err(refusal) => {
                        tracing::debug!("produce to {name}-{}: {}", p.index, refusal.message());
                        Some((refusal_code(&refusal), Some(refusal.message())))
                    }
                }
            };
            ps.push((p.index, early));
        }
        shape.push((t.name, ps));
    }
    (shape, parts)
}

async fn produce(
    r: ProduceRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> Option<ProduceResponse> {
    let acks = r.acks;
    let view = node.view.borrow().clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // Compressed batches are decompressed to be checked (up to 64 MiB
    // each): that runs on a blocking thread, never on the workers that
    // drive the event loop and every connection.
    let compressed = r
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .any(|p| {
            p.records
                .as_ref()
                .is_some_and(|b| b.len() > 22 && b[22] & 0x07 != 0)
        });
    let settings = node.settings.clone();
    let (shape, parts) = if compressed && !crate::io::SIMULATED {
        let topic_data = r.topic_data;
        let host = client_host.to_string();
        let (view, settings) = (view.clone(), settings.clone());
        tokio::task::spawn_blocking(move || {
            check_produce(topic_data, &view, &settings, &host, v, now_ms)
        })
        .await
        .unwrap_or_default()
    } else {
        check_produce(r.topic_data, &view, &settings, client_host, v, now_ms)
    };
    let (tx, rx) = oneshot::channel();
    let call = KafkaCall::Produce {
        acks,
        timeout_ms: r.timeout_ms.max(0) as u64,
        parts,
        reply: tx,
    };
    let results = match node
        .events
        .send(crate::runtime::node::Event::Kafka(call))
        .await
    {
        Ok(()) => rx.await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    if acks == 0 {
        return None;
    }
    let mut results = results.into_iter();
    let responses = shape
        .into_iter()
        .map(|(name, ps)| {
            // Kafka answers LogAppendTime topics with the time it stamped.
            let stamped = log_append_time(&view, name.0.as_str(), &settings).then_some(now_ms);
            let partition_responses = ps
                .into_iter()
                .map(|(index, early)| {
                    let mut pr = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_base_offset(-1);
                    match early {
                        Some((c, message)) => {
                            pr.error_code = c;
                            if v >= 8 {
                                pr.error_message = message.as_deref().map(str_bytes);
                            }
                        }
                        None => match results.next() {
                            Some(Ok(offset)) => {
                                pr.base_offset = offset;
                                pr.log_append_time_ms = stamped.unwrap_or(-1);
                            }
                            Some(Err(e)) => pr.error_code = part_error_code(&e),
                            None => pr.error_code = code::REQUEST_TIMED_OUT,
                        },
                    }
                    pr
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// What a batch produced to `topic` is checked against: the topic's
/// `max.message.bytes` (else the broker's `message.max.bytes`), the clock,
/// the timestamp bounds, and whether this produce version may use zstd.
fn batch_limits(
    view: &ClusterView,
    topic: &str,
    version: i16,
    now_ms: i64,
    s: &crate::runtime::settings::NodeSettings,
) -> batch_check::BatchLimits {
    let max_batch_bytes = view
        .image
        .topics
        .get(topic)
        .and_then(|t| t.configs.get("max.message.bytes"))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(s.message_max_bytes);
    batch_check::BatchLimits {
        max_batch_bytes,
        now_ms,
        before_max_ms: s.timestamp_before_max_ms,
        after_max_ms: s.timestamp_after_max_ms,
        zstd_allowed: version >= 7,
        log_append_time: log_append_time(view, topic, s),
        compacted: crate::runtime::node::cleanup_policy_compacts(
            view.image.topics.get(topic).map(|t| &t.configs),
        ),
    }
}

/// Is the topic's `message.timestamp.type` (else the broker's
/// `log.message.timestamp.type`) LogAppendTime?
fn log_append_time(
    view: &ClusterView,
    topic: &str,
    s: &crate::runtime::settings::NodeSettings,
) -> bool {
    let own = view
        .image
        .topics
        .get(topic)
        .and_then(|t| t.configs.get("message.timestamp.type"));
    match own {
        Some(v) => v.trim() == "LogAppendTime",
        None => s.log_append_time,
    }
}

fn refusal_code(r: &batch_check::Refusal) -> i16 {
    match r {
        batch_check::Refusal::TooLarge { .. } => code::MESSAGE_TOO_LARGE,
        batch_check::Refusal::Corrupt(_) => code::CORRUPT_MESSAGE,
        batch_check::Refusal::InvalidRecord(_) => code::INVALID_RECORD,
        batch_check::Refusal::InvalidTimestamp(_) => code::INVALID_TIMESTAMP,
        batch_check::Refusal::UnsupportedCompression => code::UNSUPPORTED_COMPRESSION_TYPE,
    }
}

/// Fetch, answered as segments: record batches go from the segment files
/// to the socket with `sendfile` (see `fetch_encode`).
pub async fn fetch(
    r: FetchRequest,
    v: i16,
    correlation_id: i32,
    client_host: &str,
    node: &NodeHandle,
) -> Vec<Segment> {
    // Topics the client may not read: their partitions are answered
    // TOPIC_AUTHORIZATION_FAILED at once and never read.
    let denied: std::collections::BTreeSet<String> = {
        let view = node.view.borrow().clone();
        let access = Access::new(&node.settings, &view, client_host);
        r.topics
            .iter()
            .map(|t| t.topic.0.to_string())
            .filter(|name| !access.topic(Operation::Read, name))
            .collect()
    };
    let started = Instant::now();
    let max_wait = Duration::from_millis(r.max_wait_ms.clamp(0, 60_000) as u64);
    let min_bytes = r.min_bytes.max(0) as usize;
    let response_max_bytes = r.max_bytes.max(1) as usize;
    // Woken by a change a consumer can see on a partition it reads
    // (runtime/parked_fetches.rs), not by every replication message.
    let waker = std::sync::Arc::new(tokio::sync::Notify::new());
    loop {
        let parts: Vec<FetchPart> = r
            .topics
            .iter()
            .filter(|t| !denied.contains(t.topic.0.as_str()))
            .flat_map(|t| {
                t.partitions.iter().map(move |p| FetchPart {
                    topic: t.topic.0.to_string(),
                    // A negative index names no partition (u32::MAX never exists).
                    partition: u32::try_from(p.partition).unwrap_or(u32::MAX),
                    offset: p.fetch_offset,
                    // Kafka: no partition reads beyond the response's
                    // max_bytes either (one batch always comes, however big).
                    max_bytes: (p.partition_max_bytes.max(1) as usize).min(response_max_bytes),
                })
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        let outcomes = match node
            .events
            .send(crate::runtime::node::Event::Kafka(KafkaCall::Fetch {
                parts,
                waker: waker.clone(),
                reply: tx,
            }))
            .await
        {
            Ok(()) => rx.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let total: usize = outcomes
            .iter()
            .map(|o| {
                o.result
                    .as_ref()
                    .ok()
                    .and_then(|s| s.as_ref())
                    .map_or(0, |s| s.len as usize)
            })
            .sum();
        // Denied partitions do not cut the long poll short for the others
        // (Kafka merges them into the answer); a request of nothing but
        // denied partitions is answered at once.
        let any_error = (outcomes.is_empty() && !denied.is_empty())
            || outcomes.iter().any(|o| o.result.is_err());
        let elapsed = started.elapsed();
        if !(total >= min_bytes.max(1) || any_error || elapsed >= max_wait) {
            // Long poll: wait for a partition it reads to move, or the deadline.
            let _ = tokio::time::timeout(max_wait - elapsed, waker.notified()).await;
            continue;
        }
        let mut outcomes = outcomes.into_iter();
        let mut sent = 0usize;
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut out = PartitionOut {
                            partition_index: p.partition,
                            error_code: code::NOT_LEADER_OR_FOLLOWER,
                            high_watermark: -1,
                            last_stable_offset: -1,
                            log_start_offset: -1,
                            records: Some(RecordsOut::Bytes(Bytes::new())),
                        };
                        if denied.contains(t.topic.0.as_str()) {
                            out.error_code = TOPIC_AUTHORIZATION_FAILED;
                        } else if let Some(o) = outcomes.next() {
                            // last_stable_offset = HW: there are no transactions.
                            (
                                out.high_watermark,
                                out.last_stable_offset,
                                out.log_start_offset,
                            ) = (o.high_watermark, o.high_watermark, o.log_start_offset);
                            match o.result {
                                Ok(Some(slice)) => {
                                    // At least one batch always; beyond the
                                    // response limit, later partitions wait.
                                    if sent == 0 || sent + slice.len as usize <= response_max_bytes
                                    {
                                        sent += slice.len as usize;
                                        out.records = Some(RecordsOut::File(slice));
                                    }
                                    out.error_code = code::NONE;
                                }
                                Ok(None) => out.error_code = code::NONE,
                                Err(e) => out.error_code = part_error_code(&e),
                            }
                        }
                        out
                    })
                    .collect();
                (t.topic.0.to_string(), partitions)
            })
            .collect();
        return fetch_encode::encode(v, correlation_id, topics);
    }
}

async fn list_offsets(
    r: ListOffsetsRequest,
    v: i16,
    client_host: &str,
    node: &NodeHandle,
) -> ListOffsetsResponse {
    let denied: std::collections::BTreeSet<String> = {
        let view = node.view.borrow().clone();
        let access = Access::new(&node.settings, &view, client_host);
        r.topics
            .iter()
            .map(|t| t.name.0.to_string())
            .filter(|name| !access.topic(Operation::Describe, name))
            .collect()
    };
    let parts: Vec<(String, u32, i64)> = r
        .topics
        .iter()
        .filter(|t| !denied.contains(t.name.0.as_str()))
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                    p.timestamp,
                )
            })
        })
        .collect();
    let (tx, rx) = oneshot::channel();
    let results = match node
        .events
        .send(crate::runtime::node::Event::Kafka(KafkaCall::ListOffsets {
            parts,
            reply: tx,
        }))
        .await
    {
        Ok(()) => rx.await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut results = results.into_iter();
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut pr = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if denied.contains(t.name.0.as_str()) {
                        pr.error_code = TOPIC_AUTHORIZATION_FAILED;
                        return pr;
                    }
                    match results.next() {
                        Some(Ok(found)) => {
                            pr.offset = found.offset;
                            pr.timestamp = found.timestamp;
                            if v >= 4 {
                                pr.leader_epoch = found.leader_epoch;
                            }
                        }
                        Some(Err(e)) => pr.error_code = part_error_code(&e),
                        None => pr.error_code = code::NOT_LEADER_OR_FOLLOWER,
                    }
                    pr
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

async fn init_producer_id(
    r: InitProducerIdRequest,
    client_host: &str,
    node: &NodeHandle,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    let allowed = {
        let view = node.view.borrow().clone();
        let access = Access::new(&node.settings, &view, client_host);
        // Kafka 2.8+: IDEMPOTENT_WRITE on the cluster, or WRITE on some
        // topic (here: some existing topic).
        access.cluster(Operation::IdempotentWrite)
            || view
                .image
                .topics
                .keys()
                .any(|t| access.topic(Operation::Write, t))
    };
    if !allowed {
        return response
            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
            .with_producer_id((-1).into());
    }
    if r.transactional_id.is_some() {
        // Transactions are not supported.
        return response
            .with_error_code(code::INVALID_REQUEST)
            .with_producer_id((-1).into());
    }
    let (tx, rx) = oneshot::channel();
    let _ = node
        .events
        .send(crate::runtime::node::Event::Kafka(
            KafkaCall::InitProducerId { reply: tx },
        ))
        .await;
    match rx.await {
        Ok(Ok(id)) => response.with_producer_id(id.into()).with_producer_epoch(0),
        // Retriable: the broker's block of producer ids is on its way.
        _ => response
            .with_error_code(code::COORDINATOR_LOAD_IN_PROGRESS)
            .with_producer_id((-1).into()),
    }
}
