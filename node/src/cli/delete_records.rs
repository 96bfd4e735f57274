//! `runnel delete-records`: Kafka's `kafka-delete-records.sh`. Reads
//! `--offset-json-file` (`{"partitions": [{"topic": "t", "partition": 0,
//! "offset": 3}], "version": 1}`; offset -1 means the high watermark),
//! sends each partition's DeleteRecords to its leader, and prints Kafka's
//! lines: `partition: t-0\tlow_watermark: 3` or `partition: t-0\terror: ...`.

use crate::client::Client;
use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

/// Larger files are refused before parsing (a mistake, not an offsets file).
const OFFSET_FILE_BYTES_MAX: u64 = 16 << 20;
/// Kafka's AdminClient default (`default.api.timeout.ms` is 60 s; the
/// request's own timeout is `request.timeout.ms`, 30 s).
const TIMEOUT_MS: i32 = 30_000;
/// Rounds of asking leaders again after NOT_LEADER_OR_FOLLOWER.
const ATTEMPTS_MAX: usize = 5;

#[derive(serde::Deserialize)]
struct OffsetFile {
    partitions: Vec<PartitionOffset>,
}

#[derive(serde::Deserialize, Clone)]
struct PartitionOffset {
    topic: String,
    partition: i32,
    offset: i64,
}

type Outcome = Result<i64, i16>;

pub async fn run(bootstrap: &str, offset_json_file: &str) -> Result<()> {
    let wanted = read_offsets(offset_json_file)?;
    let mut client = Client::connect(bootstrap).await?;
    println!("Executing records delete operation");
    let mut done: BTreeMap<(String, i32), Outcome> = BTreeMap::new();
    let mut todo = wanted.clone();
    for attempt in 0..ATTEMPTS_MAX {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let topics: Vec<String> = todo.iter().map(|p| p.topic.clone()).collect();
        client.refresh(Some(&topics)).await?;
        let mut retry = Vec::new();
        for (leader, parts) in by_leader(&client, &todo) {
            let answers = match leader {
                Some(address) => send(&mut client, &address, &parts).await,
                None => parts
                    .iter()
                    .map(|_| Err(code_of(ResponseError::LeaderNotAvailable)))
                    .collect(),
            };
            for (p, outcome) in parts.into_iter().zip(answers) {
                let retriable = matches!(outcome, Err(c) if is_retriable(c));
                if retriable && attempt + 1 < ATTEMPTS_MAX {
                    retry.push(p);
                } else {
                    done.insert((p.topic, p.partition), outcome);
                }
            }
        }
        todo = retry;
        if todo.is_empty() {
            break;
        }
    }
    println!("Records delete operation completed:");
    for ((topic, partition), outcome) in &done {
        match outcome {
            Ok(low) => println!("partition: {topic}-{partition}\tlow_watermark: {low}"),
            Err(code) => println!(
                "partition: {topic}-{partition}\terror: {}",
                error_name(*code)
            ),
        }
    }
    Ok(())
}

fn read_offsets(path: &str) -> Result<Vec<PartitionOffset>> {
    let len = std::fs::metadata(path)
        .with_context(|| path.to_string())?
        .len();
    if len > OFFSET_FILE_BYTES_MAX {
        bail!("{path}: {len} bytes is more than an offsets file holds");
    }
    let text = std::fs::read_to_string(path).with_context(|| path.to_string())?;
    let file: OffsetFile = serde_json::from_str(&text).map_err(|e| anyhow!("{path}: {e}"))?;
    let mut seen = std::collections::BTreeSet::new();
    for p in &file.partitions {
        if !seen.insert((p.topic.clone(), p.partition)) {
            bail!(
                "Offset json file contains duplicate topic partitions: {}-{}",
                p.topic,
                p.partition
            );
        }
    }
    if file.partitions.is_empty() {
        bail!("{path}: no partitions");
    }
    Ok(file.partitions)
}

fn by_leader(
    client: &Client,
    parts: &[PartitionOffset],
) -> BTreeMap<Option<String>, Vec<PartitionOffset>> {
    let mut out: BTreeMap<Option<String>, Vec<PartitionOffset>> = BTreeMap::new();
    for p in parts {
        let leader = client.leader(&p.topic, p.partition);
        out.entry(leader).or_default().push(p.clone());
    }
    out
}

/// One DeleteRecords to `address` for `parts`; an answer per partition, in order.
async fn send(client: &mut Client, address: &str, parts: &[PartitionOffset]) -> Vec<Outcome> {
    let mut topics: Vec<DeleteRecordsTopic> = Vec::new();
    for p in parts {
        let partition = DeleteRecordsPartition::default()
            .with_partition_index(p.partition)
            .with_offset(p.offset);
        match topics.iter_mut().find(|t| t.name.0.as_str() == p.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                DeleteRecordsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(p.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = DeleteRecordsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(TIMEOUT_MS);
    let response = match client.call_at(address, &request, 1).await {
        Ok(r) => r,
        Err(_) => {
            return parts
                .iter()
                .map(|_| Err(code_of(ResponseError::NetworkException)))
                .collect()
        }
    };
    parts
        .iter()
        .map(|p| {
            let found = response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == p.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|r| r.partition_index == p.partition);
            match found {
                Some(r) if r.error_code == 0 => Ok(r.low_watermark),
                Some(r) => Err(r.error_code),
                None => Err(code_of(ResponseError::UnknownServerError)),
            }
        })
        .collect()
}

fn code_of(e: ResponseError) -> i16 {
    e.code()
}

/// Retried: leadership moving. Not a timeout: the leader has deleted
/// already and only waited for its followers, which asking again would
/// only wait for again.
fn is_retriable(code: i16) -> bool {
    ResponseError::try_from_code(code)
        .is_some_and(|e| e.is_retriable() && e != ResponseError::RequestTimedOut)
}

/// Kafka prints the exception; its class name is the error's name.
fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} (error code {code})"),
        None => format!("error code {code}"),
    }
}
