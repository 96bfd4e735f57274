//! DeleteRecords (API 21, Kafka's `kafka-delete-records.sh` and
//! `AdminClient.deleteRecords`): per partition, the node's replica deletes
//! what lies below the requested offset and answers with the low
//! watermark once the in-sync replicas have followed
//! (`runtime/node/delete_records.rs`); this module checks the request and
//! bounds the wait by the request's `timeout_ms`.

use super::access::{Access, TOPIC_AUTHORIZATION_FAILED};
use super::code;
use crate::runtime::node::{cleanup_policy_deletes, Event, KafkaCall, NodeHandle, PartError};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use runnel_model::acl::Operation;
use std::time::Duration;
use tokio::sync::oneshot;

/// One partition of the request: its answer now, or where it will come.
enum Pending {
    Now(Result<i64, i16>),
    Later(oneshot::Receiver<Result<i64, PartError>>),
}

pub async fn delete_records(
    r: DeleteRecordsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> DeleteRecordsResponse {
    let view = node.view.borrow().clone();
    let access = Access::new(&node.settings, &view, client_host);
    let mut pending = Vec::new();
    for t in &r.topics {
        let name = t.name.0.to_string();
        // Kafka asks for DELETE on the topic.
        let allowed = access.topic(Operation::Delete, &name);
        let configs = view.image.topics.get(&name).map(|t| &t.configs);
        for p in &t.partitions {
            let partition = u32::try_from(p.partition_index).ok();
            let known = partition.is_some_and(|i| view.image.partition(&name, i).is_some());
            let now = if !allowed {
                Err(TOPIC_AUTHORIZATION_FAILED)
            } else if !known {
                Err(code::UNKNOWN_TOPIC_OR_PARTITION)
            } else if !cleanup_policy_deletes(configs) {
                // Kafka: "can not be deleted due to the configured policy"
                // (a compacted topic, `__consumer_offsets` among them).
                Err(code::POLICY_VIOLATION)
            } else if p.offset < -1 {
                // Kafka: any negative offset but -1 (the high watermark).
                Err(code::OFFSET_OUT_OF_RANGE)
            } else {
                let (reply, rx) = oneshot::channel();
                let call = KafkaCall::DeleteRecords {
                    topic: name.clone(),
                    partition: partition.expect("known"),
                    offset: p.offset,
                    reply,
                };
                match node.events.send(Event::Kafka(call)).await {
                    Ok(()) => {
                        pending.push(Pending::Later(rx));
                        continue;
                    }
                    Err(_) => Err(code::NOT_LEADER_OR_FOLLOWER),
                }
            };
            pending.push(Pending::Now(now));
        }
    }
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(r.timeout_ms).unwrap_or(0));
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        results.push(match p {
            Pending::Now(result) => result,
            Pending::Later(rx) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(low_watermark))) => Ok(low_watermark),
                Ok(Ok(Err(e))) => Err(super::handlers::part_error_code(&e)),
                // The replica went away (topic deleted, log offline).
                Ok(Err(_)) => Err(code::NOT_LEADER_OR_FOLLOWER),
                Err(_) => Err(code::REQUEST_TIMED_OUT),
            },
        });
    }
    let mut results = results.into_iter();
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                let (low_watermark, error_code) = match results.next() {
                    Some(Ok(low)) => (low, code::NONE),
                    Some(Err(e)) => (-1, e),
                    None => (-1, code::NOT_LEADER_OR_FOLLOWER),
                };
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(low_watermark)
                    .with_error_code(error_code)
            });
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions.collect())
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
