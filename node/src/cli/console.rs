//! `runnel console-producer` and `runnel console-consumer`: Kafka's console
//! tools (lines from stdin to a topic; records of a topic to stdout), with
//! Kafka's key partitioner (murmur2) and retries on leader changes.

use super::group_member::{GroupMember, MemberStatus, HEARTBEAT_INTERVAL_MS};
use crate::client::{decode_records, encode_batch, Client};
use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

/// One record to produce: key and value, either absent.
type KeyValue = (Option<Bytes>, Option<Bytes>);

/// Attempts for one batch before giving up (a leader election takes seconds).
const SEND_ATTEMPTS_MAX: u32 = 150;
const RETRY_BACKOFF_MS: u64 = 200;
/// Lines per produce request.
const BATCH_RECORDS_MAX: usize = 1000;

/// Kafka's murmur2, so keys land on the same partitions as with Kafka's clients.
pub fn murmur2(data: &[u8]) -> i32 {
    let m: i32 = 0x5bd1_e995;
    let mut h: i32 = (0x9747_b28c_u32 as i32) ^ (data.len() as i32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> 24) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    if tail.len() == 3 {
        h ^= (tail[2] as i32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as i32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as i32;
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions
}

pub struct ProducerArgs {
    pub bootstrap: String,
    pub topic: String,
    pub properties: Vec<(String, String)>,
    pub producer_properties: Vec<(String, String)>,
}

async fn wait_for_partitions(client: &mut Client, topic: &str) -> Result<Vec<i32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        client.refresh(Some(&[topic.to_string()])).await?;
        if let Some(p) = client.partitions(topic).filter(|p| !p.is_empty()) {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!("topic {topic} not found");
        }
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
    }
}

pub async fn produce(a: ProducerArgs) -> Result<()> {
    let prop = |k: &str| {
        a.properties
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.clone())
    };
    let parse_key = prop("parse.key").is_some_and(|v| v == "true");
    let separator = prop("key.separator").unwrap_or_else(|| "\t".into());
    let acks: i16 = match a
        .producer_properties
        .iter()
        .find(|(k, _)| k == "acks")
        .map(|(_, v)| v.as_str())
    {
        None | Some("all") | Some("-1") => -1,
        Some("1") => 1,
        Some("0") => 0,
        Some(other) => bail!("acks={other}: expected all, -1, 0 or 1"),
    };
    let mut client = Client::connect(&a.bootstrap).await?;
    // Like Kafka's producer, ask with auto-creation on.
    client.auto_create(&a.topic).await;
    let partitions = wait_for_partitions(&mut client, &a.topic).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(BATCH_RECORDS_MAX * 4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut sticky = 0usize;
    while let Some(first) = rx.recv().await {
        let mut lines = vec![first];
        while lines.len() < BATCH_RECORDS_MAX {
            match rx.try_recv() {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        let mut by_partition: BTreeMap<i32, Vec<KeyValue>> = BTreeMap::new();
        for line in lines {
            let (key, value) = match (parse_key, line.split_once(separator.as_str())) {
                (true, Some((k, v))) => {
                    (Some(Bytes::from(k.to_string())), Bytes::from(v.to_string()))
                }
                (true, None) => bail!("No key separator found on line: {line}"),
                (false, _) => (None, Bytes::from(line)),
            };
            let p = match &key {
                Some(k) => partitions[partition_for_key(k, partitions.len())],
                None => partitions[sticky],
            };
            by_partition.entry(p).or_default().push((key, Some(value)));
        }
        for (p, records) in by_partition {
            send_batch(&mut client, &a.topic, p, &records, acks).await?;
        }
        // Keyless records: one partition per batch, the next one for the
        // next batch (lines typed one by one go round-robin from partition 0).
        sticky = (sticky + 1) % partitions.len();
    }
    Ok(())
}

async fn send_batch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: &[(Option<Bytes>, Option<Bytes>)],
    acks: i16,
) -> Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let batch = encode_batch(records, now_ms)?;
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let mut last = String::new();
    for _ in 0..SEND_ATTEMPTS_MAX {
        if let Some(leader) = client.leader(topic, partition) {
            if acks == 0 {
                if client.send_only(&leader, &request, 8).await.is_ok() {
                    return Ok(());
                }
            } else {
                match client.call_at(&leader, &request, 8).await {
                    Ok(r) => {
                        let code = r.responses[0].partition_responses[0].error_code;
                        if code == 0 {
                            return Ok(());
                        }
                        last = format!("error code {code}");
                        if code == 2 || code == 10 {
                            bail!("{topic}-{partition}: the broker rejected the batch ({last})");
                        }
                    }
                    Err(e) => last = e.to_string(),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
        let _ = client.refresh(Some(&[topic.to_string()])).await;
    }
    bail!("{topic}-{partition}: giving up after {SEND_ATTEMPTS_MAX} attempts: {last}")
}

pub struct ConsumerArgs {
    pub bootstrap: String,
    pub topic: String,
    pub from_beginning: bool,
    pub partition: Option<i32>,
    pub offset: Option<String>,
    pub max_messages: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// `--group`, or `group.id` in `--consumer-property`/`--property`.
    pub group: Option<String>,
    pub properties: Vec<(String, String)>,
}

/// How records are printed (Kafka's console consumer `--property` keys).
struct Printer {
    print_key: bool,
    print_offset: bool,
    print_partition: bool,
    separator: String,
    printed: u64,
    max_messages: Option<u64>,
    last_message: Instant,
}

impl Printer {
    fn done(&self) -> bool {
        self.max_messages.is_some_and(|m| self.printed >= m)
    }

    fn print(&mut self, p: i32, r: &kafka_protocol::records::Record) -> Result<()> {
        let separator = &self.separator;
        let mut line = String::new();
        if self.print_partition {
            line.push_str(&format!("Partition:{p}{separator}"));
        }
        if self.print_offset {
            line.push_str(&format!("Offset:{}{separator}", r.offset));
        }
        if self.print_key {
            let k = r
                .key
                .as_ref()
                .map_or("null".into(), |k| String::from_utf8_lossy(k).into_owned());
            line.push_str(&k);
            line.push_str(separator);
        }
        line.push_str(
            &r.value
                .as_ref()
                .map_or("null".into(), |v| String::from_utf8_lossy(v).into_owned()),
        );
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        self.printed += 1;
        self.last_message = Instant::now();
        Ok(())
    }
}

/// Kafka's console consumer commits this often in a group.
const COMMIT_INTERVAL_MS: u64 = 5_000;

pub async fn consume(a: ConsumerArgs) -> Result<()> {
    let prop = |k: &str| {
        a.properties
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.clone())
    };
    let mut printer = Printer {
        print_key: prop("print.key").is_some_and(|v| v == "true"),
        print_offset: prop("print.offset").is_some_and(|v| v == "true"),
        print_partition: prop("print.partition").is_some_and(|v| v == "true"),
        separator: prop("key.separator").unwrap_or_else(|| "\t".into()),
        printed: 0,
        max_messages: a.max_messages,
        last_message: Instant::now(),
    };
    let group = a.group.clone().or_else(|| prop("group.id"));
    let mut client = Client::connect(&a.bootstrap).await?;
    let all = wait_for_partitions(&mut client, &a.topic).await?;
    let assigned = a.partition.is_some() || a.offset.is_some();
    if group.is_some() && assigned {
        bail!("--partition and --offset cannot be used with a consumer group");
    }
    if !assigned {
        // Kafka's console consumer without --group joins a group of its own,
        // console-consumer-NNNNN, and commits nothing (the seed lists one).
        let commit = group.is_some();
        let group = group.unwrap_or_else(|| format!("console-consumer-{}", random_suffix()));
        let reset = match (prop("auto.offset.reset").as_deref(), a.from_beginning) {
            (Some("earliest"), _) | (None, true) => -2,
            _ => -1,
        };
        consume_in_group(&a, &group, reset, commit, &mut client, &mut printer).await?;
        eprintln!("Processed a total of {} messages", printer.printed);
        return Ok(());
    }
    let partitions = match a.partition {
        Some(p) if all.contains(&p) => vec![p],
        Some(p) => bail!("partition {p} of {} does not exist", a.topic),
        None => all,
    };
    let start = match (a.offset.as_deref(), a.from_beginning) {
        (Some("earliest"), _) | (None, true) => -2,
        (Some("latest"), _) | (None, false) => -1,
        (Some(o), _) => o
            .parse::<i64>()
            .map_err(|_| anyhow::anyhow!("--offset {o}: a number, earliest or latest"))?,
    };
    let mut positions = BTreeMap::new();
    for &p in &partitions {
        let pos = if start >= 0 {
            start
        } else {
            list_offset(&mut client, &a.topic, p, start).await?
        };
        positions.insert(p, pos);
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        if printer.done() || timed_out(&a, &printer) {
            break;
        }
        tokio::select! {
            r = fetch_round(&mut client, &a.topic, &mut positions, &mut printer) => r?,
            _ = &mut stop => break,
        }
    }
    eprintln!("Processed a total of {} messages", printer.printed);
    Ok(())
}

fn timed_out(a: &ConsumerArgs, printer: &Printer) -> bool {
    a.timeout_ms
        .is_some_and(|t| printer.last_message.elapsed() > Duration::from_millis(t))
}

/// Ctrl-C or SIGTERM: the consumer stops, commits and leaves its group.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Consumes as a member of `group`: positions start at the committed
/// offsets (else `reset`: -2 earliest, -1 latest), are committed every few
/// seconds and on exit; a rebalance commits, rejoins and starts over from
/// the group's offsets.
async fn consume_in_group(
    a: &ConsumerArgs,
    group: &str,
    reset: i64,
    commit: bool,
    client: &mut Client,
    printer: &mut Printer,
) -> Result<()> {
    let mut member = GroupMember::new(group, vec![a.topic.clone()]);
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut positions = BTreeMap::new();
    let mut joined = false;
    let mut last_heartbeat = Instant::now();
    let mut last_commit = Instant::now();
    loop {
        if !joined {
            tokio::select! {
                r = member.join(client) => r?,
                _ = &mut stop => break,
            }
            positions = start_positions(client, &mut member, &a.topic, reset).await?;
            joined = true;
            last_heartbeat = Instant::now();
        }
        if printer.done() || timed_out(a, printer) {
            break;
        }
        if commit && last_commit.elapsed() >= Duration::from_millis(COMMIT_INTERVAL_MS) {
            last_commit = Instant::now();
            if member.commit(client, &keyed(&a.topic, &positions)).await? == MemberStatus::Rejoin {
                joined = false;
                continue;
            }
        }
        if last_heartbeat.elapsed() >= Duration::from_millis(HEARTBEAT_INTERVAL_MS) {
            last_heartbeat = Instant::now();
            if member.heartbeat(client).await? == MemberStatus::Rejoin {
                // Commit what was consumed before giving up the partitions.
                if commit {
                    let _ = member.commit(client, &keyed(&a.topic, &positions)).await;
                }
                joined = false;
                continue;
            }
        }
        if positions.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut stop => break,
            }
            continue;
        }
        tokio::select! {
            r = fetch_round(client, &a.topic, &mut positions, printer) => r?,
            _ = &mut stop => break,
        }
    }
    if joined {
        if commit {
            let _ = member.commit(client, &keyed(&a.topic, &positions)).await;
        }
        let _ = member.leave(client).await;
    }
    Ok(())
}

/// Five digits, like Kafka's console-consumer-NNNNN group names.
fn random_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 100_000
}

fn keyed(topic: &str, positions: &BTreeMap<i32, i64>) -> BTreeMap<(String, i32), i64> {
    positions
        .iter()
        .map(|(p, o)| ((topic.to_string(), *p), *o))
        .collect()
}

/// The member's partitions of `topic` and where to start in each.
async fn start_positions(
    client: &mut Client,
    member: &mut GroupMember,
    topic: &str,
    reset: i64,
) -> Result<BTreeMap<i32, i64>> {
    let committed = member.committed(client).await.unwrap_or_default();
    let mut positions = BTreeMap::new();
    for &p in member.assignment.get(topic).into_iter().flatten() {
        let pos = match committed.get(&(topic.to_string(), p)) {
            Some(&o) if o >= 0 => o,
            _ => list_offset(client, topic, p, reset).await?,
        };
        positions.insert(p, pos);
    }
    Ok(positions)
}

/// One fetch from each leader of `positions`' partitions; prints what came.
async fn fetch_round(
    client: &mut Client,
    topic: &str,
    positions: &mut BTreeMap<i32, i64>,
    printer: &mut Printer,
) -> Result<()> {
    let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for &p in positions.keys() {
        if let Some(l) = client.leader(topic, p) {
            by_leader.entry(l).or_default().push(p);
        }
    }
    if by_leader.is_empty() {
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
        let _ = client.refresh(Some(&[topic.to_string()])).await;
        return Ok(());
    }
    let mut refresh = false;
    for (leader, ps) in by_leader {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(200)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    ps.iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(positions[p])
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]);
        let response = match client.call_at(&leader, &request, 11).await {
            Ok(r) => r,
            Err(_) => {
                refresh = true;
                continue;
            }
        };
        for t in response.responses {
            for pd in t.partitions {
                let p = pd.partition_index;
                if pd.error_code == 1 {
                    // Out of range: start over at the earliest offset, as auto.offset.reset does.
                    let pos = list_offset(client, topic, p, -2).await.unwrap_or(0);
                    positions.insert(p, pos);
                    continue;
                }
                if pd.error_code != 0 {
                    refresh = true;
                    continue;
                }
                let Some(bytes) = pd.records else { continue };
                for r in decode_records(bytes)? {
                    if r.offset < positions[&p] {
                        continue; // earlier records of the first batch
                    }
                    if printer.done() {
                        break;
                    }
                    positions.insert(p, r.offset + 1);
                    printer.print(p, &r)?;
                }
            }
        }
    }
    if refresh {
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
        let _ = client.refresh(Some(&[topic.to_string()])).await;
    }
    Ok(())
}

/// ListOffsets with retries across leader changes.
async fn list_offset(
    client: &mut Client,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64> {
    for _ in 0..SEND_ATTEMPTS_MAX {
        if let Ok(offset) = client.list_offset(topic, partition, timestamp).await {
            return Ok(offset);
        }
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
        let _ = client.refresh(Some(&[topic.to_string()])).await;
    }
    bail!("{topic}-{partition}: no leader answered ListOffsets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
