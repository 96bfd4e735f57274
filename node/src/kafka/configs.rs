//! The config APIs for topics: DescribeConfigs (32), AlterConfigs (33) and
//! IncrementalAlterConfigs (44), as kafka-configs.sh and the admin clients
//! use them. A change is one controller decision per resource
//! (`ControllerRequest::AlterTopicConfigs`), validated there as at creation;
//! brokers apply what the metadata says (retention reads it at every check).
//! Broker configs are static (server.properties): describing them works,
//! altering them is refused with INVALID_REQUEST.

use super::access::{Access, TOPIC_AUTHORIZATION_FAILED};
use super::handlers::{
    admin_deadline, await_metadata, call_controller, code, controller_error, remaining_ms,
    str_bytes, TOPIC_DENIED,
};
use crate::runtime::node::NodeHandle;
use kafka_protocol::protocol::StrBytes;
use runnel_model::acl::Operation;
use runnel_model::controller::ControllerRequest;
use std::collections::BTreeMap;
use tokio::time::Instant;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// IncrementalAlterConfigs' operations (KIP-339).
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// One resource's change, as asked.
struct Change {
    set: BTreeMap<String, String>,
    delete: Vec<String>,
    append: BTreeMap<String, Vec<String>>,
    subtract: BTreeMap<String, Vec<String>>,
    replace: bool,
}

/// What happened to one resource: its error code and message (0, None: done).
type Outcome = (i16, Option<String>);

/// Carries out one topic's change (or refuses it) for the connection at
/// `client_host`: ALTER_CONFIGS on the topic, then the controller.
async fn alter_topic(
    node: &NodeHandle,
    client_host: &str,
    name: &str,
    change: Result<Change, String>,
    validate_only: bool,
    deadline: Instant,
) -> Outcome {
    let view = node.view.borrow().clone();
    if !Access::new(&node.settings, &view, client_host).topic(Operation::AlterConfigs, name) {
        return (TOPIC_AUTHORIZATION_FAILED, Some(TOPIC_DENIED.into()));
    }
    let change = match change {
        Ok(c) => c,
        Err(m) => return (code::INVALID_REQUEST, Some(m)),
    };
    let mut request = ControllerRequest::AlterTopicConfigs {
        name: name.to_string(),
        set: change.set,
        delete: change.delete,
        append: change.append,
        subtract: change.subtract,
        replace: change.replace,
    };
    if validate_only {
        request = ControllerRequest::ValidateOnly(Box::new(request));
    }
    match call_controller(node, request, remaining_ms(deadline)).await {
        Ok(ack) if !validate_only => {
            await_metadata(node, ack.end_offset, deadline).await;
            (0, None)
        }
        Ok(_) => (0, None),
        Err(e) => {
            let (c, m) = controller_error(&e);
            (c, Some(m))
        }
    }
}

/// The answer for a resource that is not a topic.
fn not_a_topic(resource_type: i8) -> Outcome {
    let m = match resource_type {
        BROKER => "broker configs are static here: set them in server.properties",
        _ => "only topic configs can be altered",
    };
    (code::INVALID_REQUEST, Some(m.into()))
}

/// The config requests carry no timeout of their own; Kafka's default
/// `request.timeout.ms` bounds the whole request (every resource in it),
/// so a request naming many resources cannot hold its connection longer.
const ALTER_TIMEOUT_MS: i32 = 30_000;

/// Names that occur more than once (Kafka refuses duplicate resources, and
/// duplicate keys within one, with INVALID_REQUEST: their order would
/// otherwise decide the outcome).
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> std::collections::BTreeSet<&'a str> {
    let mut seen = std::collections::BTreeSet::new();
    names.filter(|n| !seen.insert(*n)).collect()
}

/// Carries out each resource's change in the request's order, all within
/// one deadline: (resource type, name, change) in, (error code, message)
/// out, one per resource.
async fn alter_all(
    node: &NodeHandle,
    client_host: &str,
    validate_only: bool,
    resources: Vec<(i8, &str, Result<Change, String>)>,
) -> Vec<Outcome> {
    let deadline = admin_deadline(ALTER_TIMEOUT_MS);
    let repeated = duplicates(resources.iter().map(|(_, name, _)| *name));
    let mut outcomes = Vec::with_capacity(resources.len());
    for (resource_type, name, change) in resources {
        outcomes.push(match resource_type {
            TOPIC if repeated.contains(name) => duplicate_resource(),
            TOPIC => alter_topic(node, client_host, name, change, validate_only, deadline).await,
            other => not_a_topic(other),
        });
    }
    outcomes
}

pub(super) async fn incremental_alter_configs(
    r: kafka_protocol::messages::IncrementalAlterConfigsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> kafka_protocol::messages::IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let asked = r
        .resources
        .iter()
        .map(|res| {
            (
                res.resource_type,
                res.resource_name.as_str(),
                incremental_change(res),
            )
        })
        .collect();
    let outcomes = alter_all(node, client_host, r.validate_only, asked).await;
    let responses = r
        .resources
        .iter()
        .zip(outcomes)
        .map(|(res, (error_code, message))| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(message.map(StrBytes::from_string))
        })
        .collect();
    kafka_protocol::messages::IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// SET, DELETE, and APPEND / SUBTRACT of comma-separated values (list
/// configs only: the controller decides them against the current value).
fn incremental_change(
    res: &kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource,
) -> Result<Change, String> {
    let mut change = Change {
        set: BTreeMap::new(),
        delete: Vec::new(),
        append: BTreeMap::new(),
        subtract: BTreeMap::new(),
        replace: false,
    };
    if let Some(key) = duplicates(res.configs.iter().map(|c| c.name.as_str())).first() {
        return Err(format!("Error due to duplicate config keys: {key}"));
    }
    for c in &res.configs {
        let key = c.name.to_string();
        match (c.config_operation, &c.value) {
            (SET, Some(v)) => {
                change.set.insert(key, v.to_string());
            }
            (SET, None) => return Err(format!("no value to set for {key}")),
            (DELETE, _) => change.delete.push(key),
            (APPEND | SUBTRACT, Some(v)) => {
                let values = v.split(',').map(|x| x.trim().to_string()).collect();
                match c.config_operation {
                    APPEND => change.append.insert(key, values),
                    _ => change.subtract.insert(key, values),
                };
            }
            (APPEND | SUBTRACT, None) => return Err(format!("no value to add or take for {key}")),
            (op, _) => return Err(format!("config operation {op} on {key} is not supported")),
        }
    }
    Ok(change)
}

/// AlterConfigs' resource as a replacement of all the topic's configs; a
/// key without a value is refused, as Kafka refuses it.
fn replacement(
    res: &kafka_protocol::messages::alter_configs_request::AlterConfigsResource,
) -> Result<Change, String> {
    if let Some(key) = duplicates(res.configs.iter().map(|c| c.name.as_str())).first() {
        return Err(format!("Error due to duplicate config keys: {key}"));
    }
    let mut set = BTreeMap::new();
    for c in &res.configs {
        let Some(value) = &c.value else {
            return Err(format!("Null value not supported for : {}", c.name));
        };
        set.insert(c.name.to_string(), value.to_string());
    }
    Ok(Change {
        set,
        delete: Vec::new(),
        append: BTreeMap::new(),
        subtract: BTreeMap::new(),
        replace: true,
    })
}

fn duplicate_resource() -> Outcome {
    (
        code::INVALID_REQUEST,
        Some("Error due to duplicate resources in the request".into()),
    )
}

/// The older AlterConfigs: the given configs replace all of the topic's.
pub(super) async fn alter_configs(
    r: kafka_protocol::messages::AlterConfigsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> kafka_protocol::messages::AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let asked = r
        .resources
        .iter()
        .map(|res| {
            (
                res.resource_type,
                res.resource_name.as_str(),
                replacement(res),
            )
        })
        .collect();
    let outcomes = alter_all(node, client_host, r.validate_only, asked).await;
    let responses = r
        .resources
        .iter()
        .zip(outcomes)
        .map(|(res, (error_code, message))| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(message.map(StrBytes::from_string))
        })
        .collect();
    kafka_protocol::messages::AlterConfigsResponse::default().with_responses(responses)
}

/// DescribeConfigs' `config_source` values (Kafka's ConfigSource).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// One topic config as DescribeConfigs describes it.
struct TopicConfig {
    name: String,
    value: String,
    source: i8,
    /// Kafka's `synonyms` (with `include_synonyms`): where the value could
    /// come from, highest precedence first: the topic's own key
    /// (DYNAMIC_TOPIC_CONFIG), the broker's key where this broker sets it
    /// apart from Kafka's default (STATIC_BROKER_CONFIG), Kafka's default
    /// under the broker key that carries it (DEFAULT_CONFIG).
    synonyms: Vec<(String, String, i8)>,
}

/// Every config of a topic, as Kafka describes it: the topic's own keys
/// (DYNAMIC_TOPIC_CONFIG), else what this broker's settings give
/// (STATIC_BROKER_CONFIG where they differ from Kafka's default), else
/// Kafka's default (DEFAULT_CONFIG). Clients that copy a topic's configs
/// (librdkafka's AlterConfigs round trip) need the whole list.
fn topic_configs(
    s: &crate::runtime::settings::NodeSettings,
    own: &BTreeMap<String, String>,
) -> Vec<TopicConfig> {
    let long_or_unset = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    let max = i64::MAX.to_string();
    // (topic key, broker key, this broker's value, Kafka's default as
    // (broker key carrying it, value)); Kafka's `LogConfig` synonyms.
    let keys: Vec<(&'static str, &str, String, (&str, String))> = vec![
        (
            "cleanup.policy",
            "log.cleanup.policy",
            "delete".into(),
            ("log.cleanup.policy", "delete".into()),
        ),
        (
            "compression.type",
            "compression.type",
            "producer".into(),
            ("compression.type", "producer".into()),
        ),
        (
            "delete.retention.ms",
            "log.cleaner.delete.retention.ms",
            "86400000".into(),
            ("log.cleaner.delete.retention.ms", "86400000".into()),
        ),
        (
            "file.delete.delay.ms",
            "log.segment.delete.delay.ms",
            "60000".into(),
            ("log.segment.delete.delay.ms", "60000".into()),
        ),
        (
            "flush.messages",
            "log.flush.interval.messages",
            max.clone(),
            ("log.flush.interval.messages", max.clone()),
        ),
        (
            "flush.ms",
            "log.flush.interval.ms",
            max.clone(),
            ("log.flush.scheduler.interval.ms", max.clone()),
        ),
        (
            "index.interval.bytes",
            "log.index.interval.bytes",
            s.log.index_interval_bytes.to_string(),
            ("log.index.interval.bytes", "4096".into()),
        ),
        (
            "max.compaction.lag.ms",
            "log.cleaner.max.compaction.lag.ms",
            max.clone(),
            ("log.cleaner.max.compaction.lag.ms", max.clone()),
        ),
        (
            "max.message.bytes",
            "message.max.bytes",
            s.message_max_bytes.to_string(),
            ("message.max.bytes", "1048588".into()),
        ),
        (
            "message.timestamp.type",
            "log.message.timestamp.type",
            match s.log_append_time {
                true => "LogAppendTime".into(),
                false => "CreateTime".into(),
            },
            ("log.message.timestamp.type", "CreateTime".into()),
        ),
        (
            "min.cleanable.dirty.ratio",
            "log.cleaner.min.cleanable.ratio",
            "0.5".into(),
            ("log.cleaner.min.cleanable.ratio", "0.5".into()),
        ),
        (
            "min.compaction.lag.ms",
            "log.cleaner.min.compaction.lag.ms",
            "0".into(),
            ("log.cleaner.min.compaction.lag.ms", "0".into()),
        ),
        (
            "min.insync.replicas",
            "min.insync.replicas",
            s.min_insync_replicas.to_string(),
            ("min.insync.replicas", "1".into()),
        ),
        (
            "preallocate",
            "log.preallocate",
            "false".into(),
            ("log.preallocate", "false".into()),
        ),
        (
            "retention.bytes",
            "log.retention.bytes",
            long_or_unset(s.retention.retention_bytes),
            ("log.retention.bytes", "-1".into()),
        ),
        // Kafka's default lives in the hours key (log.retention.ms has none).
        (
            "retention.ms",
            "log.retention.ms",
            long_or_unset(s.retention.retention_ms),
            ("log.retention.hours", "168".into()),
        ),
        (
            "segment.bytes",
            "log.segment.bytes",
            s.log.segment_bytes.to_string(),
            ("log.segment.bytes", "1073741824".into()),
        ),
        (
            "segment.index.bytes",
            "log.index.size.max.bytes",
            "10485760".into(),
            ("log.index.size.max.bytes", "10485760".into()),
        ),
        (
            "segment.jitter.ms",
            "log.roll.jitter.ms",
            "0".into(),
            ("log.roll.jitter.hours", "0".into()),
        ),
        (
            "segment.ms",
            "log.roll.ms",
            long_or_unset(s.log.roll_ms),
            ("log.roll.hours", "168".into()),
        ),
        (
            "unclean.leader.election.enable",
            "unclean.leader.election.enable",
            s.controller
                .policy
                .unclean_leader_election_enable
                .to_string(),
            ("unclean.leader.election.enable", "false".into()),
        ),
    ];
    let mut all: Vec<TopicConfig> = keys
        .into_iter()
        .map(
            |(name, broker_key, broker_value, (default_key, default_value))| {
                // Kafka's default in the topic key's own unit: an hours key's
                // 168 is 604800000 ms.
                let default_ms = match default_key.ends_with(".hours") {
                    true => default_value
                        .parse::<i64>()
                        .map_or(default_value.clone(), |h| (h * 3_600_000).to_string()),
                    false => default_value.clone(),
                };
                let mut synonyms = Vec::new();
                if let Some(v) = own.get(name) {
                    synonyms.push((name.to_string(), v.clone(), DYNAMIC_TOPIC_CONFIG));
                }
                if broker_value != default_ms {
                    synonyms.push((
                        broker_key.to_string(),
                        broker_value.clone(),
                        STATIC_BROKER_CONFIG,
                    ));
                }
                synonyms.push((default_key.to_string(), default_value, DEFAULT_CONFIG));
                let (_, _, source) = synonyms[0];
                let value = match source {
                    DYNAMIC_TOPIC_CONFIG => own[name].clone(),
                    STATIC_BROKER_CONFIG => broker_value,
                    _ => default_ms,
                };
                TopicConfig {
                    name: name.to_string(),
                    value,
                    source,
                    synonyms,
                }
            },
        )
        .collect();
    // The topic's keys beyond those (throttled-replica lists, ...): its own.
    for (k, v) in own {
        if !all.iter().any(|c| &c.name == k) {
            all.push(TopicConfig {
                name: k.clone(),
                value: v.clone(),
                source: DYNAMIC_TOPIC_CONFIG,
                synonyms: vec![(k.clone(), v.clone(), DYNAMIC_TOPIC_CONFIG)],
            });
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

pub(super) fn describe_configs(
    r: kafka_protocol::messages::DescribeConfigsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> kafka_protocol::messages::DescribeConfigsResponse {
    use kafka_protocol::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult,
    };
    let view = node.view.borrow().clone();
    let s = &node.settings;
    let access = Access::new(s, &view, client_host);
    let synonym = |name: &str, value: &str, source: i8| {
        kafka_protocol::messages::describe_configs_response::DescribeConfigsSynonym::default()
            .with_name(str_bytes(name))
            .with_value(Some(str_bytes(value)))
            .with_source(source)
    };
    let entry = |name: &str, value: &str, source: i8| {
        DescribeConfigsResourceResult::default()
            .with_name(str_bytes(name))
            .with_value(Some(str_bytes(value)))
            .with_config_source(source)
    };
    let results = r
        .resources
        .iter()
        .map(|res| {
            let wanted = |k: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|ks| ks.is_empty() || ks.iter().any(|x| x.as_str() == k))
            };
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match res.resource_type {
                TOPIC if !access.topic(Operation::DescribeConfigs, res.resource_name.as_str()) => {
                    out.error_code = TOPIC_AUTHORIZATION_FAILED;
                    out.error_message = Some(str_bytes(TOPIC_DENIED));
                }
                TOPIC => match view.image.topics.get(res.resource_name.as_str()) {
                    None => {
                        out.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                        out.error_message =
                            Some(str_bytes("This server does not host this topic-partition."));
                    }
                    Some(t) => {
                        out.configs = topic_configs(s, &t.configs)
                            .into_iter()
                            .filter(|c| wanted(&c.name))
                            .map(|c| {
                                let synonyms = match r.include_synonyms {
                                    true => c
                                        .synonyms
                                        .iter()
                                        .map(|(k, v, source)| synonym(k, v, *source))
                                        .collect(),
                                    false => Vec::new(),
                                };
                                entry(&c.name, &c.value, c.source).with_synonyms(synonyms)
                            })
                            .collect()
                    }
                },
                BROKER
                    if res.resource_name.is_empty()
                        || res.resource_name.as_str() == s.node_id.to_string() =>
                {
                    let settings = [
                        ("num.partitions", s.controller.num_partitions.to_string()),
                        (
                            "default.replication.factor",
                            s.controller.default_replication_factor.to_string(),
                        ),
                        ("min.insync.replicas", s.min_insync_replicas.to_string()),
                        (
                            "unclean.leader.election.enable",
                            s.controller
                                .policy
                                .unclean_leader_election_enable
                                .to_string(),
                        ),
                        (
                            "replica.lag.time.max.ms",
                            s.replica_lag_time_max_ms.to_string(),
                        ),
                        ("log.segment.bytes", s.log.segment_bytes.to_string()),
                        (
                            "auto.create.topics.enable",
                            s.auto_create_topics.to_string(),
                        ),
                        (
                            "offsets.topic.replication.factor",
                            s.offsets_topic_replication_factor.to_string(),
                        ),
                        (
                            "socket.request.max.bytes",
                            s.socket_request_max_bytes.to_string(),
                        ),
                    ];
                    out.configs = settings
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| entry(k, v, STATIC_BROKER_CONFIG))
                        .collect();
                }
                _ => {
                    out.error_code = code::INVALID_REQUEST;
                    out.error_message = Some(str_bytes(
                        "only topic and this broker's configs can be described",
                    ));
                }
            }
            out
        })
        .collect();
    kafka_protocol::messages::DescribeConfigsResponse::default().with_results(results)
}
