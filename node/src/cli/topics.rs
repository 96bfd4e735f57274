//! `runnel topics`: Kafka's `kafka-topics.sh` (create, list, describe, alter, delete)
//! with its output layout.

use crate::client::Client;
use anyhow::{bail, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::fmt::Write;

pub struct TopicsArgs {
    pub bootstrap: String,
    pub create: bool,
    pub list: bool,
    pub describe: bool,
    pub delete: bool,
    pub alter: bool,
    pub topic: Option<String>,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub configs: Vec<(String, String)>,
    pub if_not_exists: bool,
}

pub async fn run(a: TopicsArgs) -> Result<()> {
    let actions = [a.create, a.list, a.describe, a.delete, a.alter]
        .iter()
        .filter(|x| **x)
        .count();
    if actions != 1 {
        bail!("exactly one of --create, --list, --describe, --alter, --delete is required");
    }
    let mut client = Client::connect(&a.bootstrap).await?;
    if a.list {
        let m = client.refresh(None).await?;
        let mut names: Vec<String> = m
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        names.sort();
        for n in names {
            println!("{n}");
        }
        return Ok(());
    }
    if a.describe {
        let topics = a.topic.as_ref().map(|t| vec![t.clone()]);
        let m = client.refresh(topics.as_deref()).await?.clone();
        let configs = topic_configs(&mut client, &m).await;
        print!("{}", describe(&m, a.topic.as_deref(), &configs)?);
        return Ok(());
    }
    let Some(topic) = a.topic.clone() else {
        bail!("--topic is required");
    };
    if a.create {
        let configs = a
            .configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let t = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_num_partitions(a.partitions.unwrap_or(-1))
            .with_replication_factor(a.replication_factor.unwrap_or(-1))
            .with_configs(configs);
        let request = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(30_000);
        let response = client.call_any(&request, 5).await?;
        let r = &response.topics[0];
        if r.error_code == 36 && a.if_not_exists {
            return Ok(());
        }
        if r.error_code != 0 {
            let msg = r
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            bail!(
                "Error while executing topic command : {} (error {}) {msg}",
                error_name(r.error_code),
                r.error_code
            );
        }
        println!("Created topic {topic}.");
        return Ok(());
    }
    if a.alter {
        let Some(count) = a.partitions else {
            bail!("--alter needs --partitions (the new, larger count)");
        };
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_count(count)
                .with_assignments(None)])
            .with_timeout_ms(30_000);
        let response = client.call_any(&request, 3).await?;
        let r = &response.results[0];
        if r.error_code != 0 {
            let msg = r
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            bail!(
                "Error while executing topic command : {msg} ({})",
                error_name(r.error_code)
            );
        }
        return Ok(());
    }
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.clone()))))])
        .with_timeout_ms(30_000);
    let response = client.call_any(&request, 6).await?;
    let r = &response.responses[0];
    if r.error_code != 0 {
        bail!(
            "Error while executing topic command : Topic '{topic}' does not exist as expected ({})",
            error_name(r.error_code)
        );
    }
    println!("Deleted topic {topic}.");
    Ok(())
}

fn error_name(code: i16) -> &'static str {
    match code {
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        17 => "INVALID_TOPIC_EXCEPTION",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        38 => "INVALID_REPLICATION_FACTOR",
        41 => "NOT_CONTROLLER",
        42 => "INVALID_REQUEST",
        _ => "UNKNOWN",
    }
}

fn join(ids: impl Iterator<Item = i32>) -> String {
    ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// Kafka's describe layout (tab-separated, one header line per topic).
/// Each topic's configuration overrides, `k=v,k=v` (DescribeConfigs).
/// DescribeConfigs' source of a topic's own config.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

async fn topic_configs(
    client: &mut Client,
    m: &kafka_protocol::messages::MetadataResponse,
) -> std::collections::BTreeMap<String, String> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    let resources = m
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref())
        .map(|n| {
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(n.0.clone())
                .with_configuration_keys(None)
        })
        .collect();
    let request = DescribeConfigsRequest::default().with_resources(resources);
    let response = match client.call_any(&request, 1).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("DescribeConfigs: {e}");
            return Default::default();
        }
    };
    response
        .results
        .iter()
        .map(|r| {
            // kafka-topics.sh lists the topic's own configs only.
            let kv: Vec<String> = r
                .configs
                .iter()
                .filter(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
                .map(|c| {
                    format!(
                        "{}={}",
                        c.name,
                        c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()
                    )
                })
                .collect();
            (r.resource_name.to_string(), kv.join(","))
        })
        .collect()
}

pub fn describe(
    m: &kafka_protocol::messages::MetadataResponse,
    only: Option<&str>,
    configs: &std::collections::BTreeMap<String, String>,
) -> Result<String> {
    let mut out = String::new();
    let mut topics: Vec<_> = m.topics.iter().collect();
    topics.sort_by_key(|t| t.name.as_ref().map(|n| n.0.to_string()));
    for t in topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code == 3 {
            if only.is_some() {
                bail!("Topic '{name}' does not exist as expected");
            }
            continue;
        }
        let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
        let c = configs.get(&name).map(String::as_str).unwrap_or("");
        writeln!(
            out,
            "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {c}",
            t.topic_id,
            t.partitions.len()
        )?;
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        for p in parts {
            let leader = if p.leader_id.0 < 0 {
                "none".to_string()
            } else {
                p.leader_id.0.to_string()
            };
            writeln!(
                out,
                "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}",
                p.partition_index,
                join(p.replica_nodes.iter().map(|b| b.0)),
                join(p.isr_nodes.iter().map(|b| b.0)),
            )?;
        }
    }
    Ok(out)
}

/// `runnel broker-api-versions`: Kafka's `kafka-broker-api-versions.sh`,
/// one block per live broker with the versions it serves.
pub async fn broker_api_versions(bootstrap: &str) -> Result<()> {
    use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
    let mut client = Client::connect(bootstrap).await?;
    let m = client.refresh(Some(&[])).await?.clone();
    let mut brokers: Vec<_> = m.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    for b in brokers {
        let address = format!("{}:{}", b.host, b.port);
        let versions = client
            .call_at(&address, &ApiVersionsRequest::default(), 3)
            .await?;
        println!("{address} (id: {} rack: null) -> (", b.node_id.0);
        for k in versions.api_keys {
            let name = ApiKey::try_from(k.api_key)
                .map(|a| format!("{a:?}"))
                .unwrap_or_else(|_| "Unknown".into());
            println!(
                "\t{name}({}): {} to {} [usable: {}],",
                k.api_key, k.min_version, k.max_version, k.max_version
            );
        }
        println!(")");
    }
    Ok(())
}
