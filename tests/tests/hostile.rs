//! Hostile input against a real three-process cluster (`SeedCluster::combined`:
//! three `runnel` processes, each broker and controller): huge counts,
//! negative and lying lengths, truncated strings, lying frame sizes, absurd
//! tagged fields, random and mutated bodies for every API key and version the
//! node advertises, junk on `__consumer_offsets`, thousands of idle
//! connections. After every group of cases each process must still be running
//! and answer ApiVersions and Metadata on its Kafka port, and at the end every
//! record acknowledged with acks=all before (and during) the abuse must still
//! be readable at its offset.
//!
//! Each test starts its own cluster; a lock runs them one at a time (the
//! machine the suite was written on has two cores). Cases are deterministic:
//! the random ones come from a xorshift generator seeded per (API key,
//! version), so a failure names a case that can be replayed.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FetchRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, InitProducerIdRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestHeader, RequestKind,
    SyncGroupRequest, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel::client::{decode_records, encode_batch, Client, Connection};
use runnel::kafka::versions::SUPPORTED;
use runnel_tests::*;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The acknowledged records live here.
const TOPIC: &str = "hostile-acked";
const PARTITIONS: i32 = 3;
/// Mutated produce requests go here, never to `TOPIC`.
const SCRATCH: &str = "hostile-scratch";
const OFFSETS_TOPIC: &str = "__consumer_offsets";
const OFFSETS_PARTITIONS: u32 = 3;
/// `connections.max.idle.ms` of the cluster under test.
const IDLE_MS: u64 = 6_000;
/// The cluster's settings: `connections.max.idle.ms` as given, a small
/// offsets topic, no initial rebalance delay.
fn overrides(idle_ms: u64) -> Vec<String> {
    vec![
        format!("connections.max.idle.ms={idle_ms}"),
        format!("offsets.topic.num.partitions={OFFSETS_PARTITIONS}"),
        "group.initial.rebalance.delay.ms=0".to_string(),
    ]
}
/// A complete frame must be answered or refused (connection closed) within
/// this; it is below `IDLE_MS`, so a server that waits for more bytes of a
/// complete frame is caught rather than excused by the idle bound.
const PROMPT: Duration = Duration::from_secs(4);
/// How many cases are in flight at once.
const PARALLEL: usize = 12;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn tn(s: &str) -> TopicName {
    TopicName(sb(s))
}

fn gid(s: &str) -> GroupId {
    GroupId(sb(s))
}

// ----- the cluster and its acknowledged records ------------------------------------

#[derive(Clone, Debug)]
struct Acked {
    partition: i32,
    offset: i64,
    key: Bytes,
    value: Bytes,
}

struct Hostile {
    c: SeedCluster,
    rt: tokio::runtime::Runtime,
    acked: Vec<Acked>,
}

impl Hostile {
    /// Three combined processes, `TOPIC` (RF 3, 3 partitions) with records
    /// produced with acks=all, and `SCRATCH` for mutated produce requests.
    fn start() -> Hostile {
        Hostile::start_with_idle(IDLE_MS)
    }

    fn start_with_idle(idle_ms: u64) -> Hostile {
        let started = Instant::now();
        let o = overrides(idle_ms);
        let mut c = SeedCluster::combined(&o.iter().map(String::as_str).collect::<Vec<_>>());
        c.start_all();
        c.create_topic(TOPIC, PARTITIONS as u32, 3);
        c.create_topic(SCRATCH, 1, 3);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut h = Hostile {
            c,
            rt,
            acked: Vec::new(),
        };
        h.produce_acked("setup", 4);
        eprintln!(
            "cluster up, {} records acknowledged, in {:?}",
            h.acked.len(),
            started.elapsed()
        );
        h
    }

    fn bootstrap(&self) -> String {
        self.c.bootstrap(&[0, 1, 2])
    }

    /// `batches` batches of 5 records per partition of `TOPIC`, acks=all;
    /// every acknowledged record is remembered with its offset.
    fn produce_acked(&mut self, tag: &str, batches: usize) {
        let bootstrap = self.bootstrap();
        let acked = self.rt.block_on(async {
            let mut out = Vec::new();
            let mut client = connect_client(&bootstrap).await;
            for p in 0..PARTITIONS {
                for b in 0..batches {
                    let records: Vec<(Bytes, Bytes)> = (0..5)
                        .map(|i| {
                            (
                                Bytes::from(format!("{tag}-{p}-{b}-{i}")),
                                Bytes::from(format!("value {tag} {p} {b} {i} {}", "x".repeat(i))),
                            )
                        })
                        .collect();
                    let batch = encode_batch(
                        &records
                            .iter()
                            .map(|(k, v)| (Some(k.clone()), Some(v.clone())))
                            .collect::<Vec<_>>(),
                        1_700_000_000_000,
                    )
                    .expect("batch");
                    let base = produce_with_retries(&mut client, TOPIC, p, batch).await;
                    for (i, (key, value)) in records.into_iter().enumerate() {
                        out.push(Acked {
                            partition: p,
                            offset: base + i as i64,
                            key,
                            value,
                        });
                    }
                }
            }
            out
        });
        self.acked.extend(acked);
    }

    /// The lines of node `i`'s log worth showing: panics and errors, and the end.
    fn excerpt(&self, i: usize) -> String {
        let log = self.c.log_of(&self.c.brokers[i]);
        let lines: Vec<&str> = log.lines().collect();
        let mut out = Vec::new();
        for (n, l) in lines.iter().enumerate() {
            if l.contains("panicked") || l.contains("ERROR") || l.contains("stopped") {
                out.extend(lines[n..(n + 4).min(lines.len())].iter().copied());
            }
        }
        out.truncate(40);
        out.push("  ... last lines:");
        out.extend(lines.iter().rev().take(12).rev().copied());
        let p = &self.c.brokers[i];
        format!(
            "---- {} (pid {:?}, process state {}) ----\n{}",
            p.name,
            p.pid(),
            process_state(p),
            out.join("\n")
        )
    }

    /// Every process is running, and every node's Kafka port answers
    /// ApiVersions and Metadata (within 20 s: a restarted node may be booting).
    fn assert_alive(&self, after: &str) {
        self.assert_nodes_alive(&[0, 1, 2], after);
    }

    fn assert_nodes_alive(&self, nodes: &[usize], after: &str) {
        for &i in nodes {
            let b = &self.c.brokers[i];
            assert!(
                process_alive(b),
                "after {after}: {} (pid {:?}) is no longer running\n{}",
                b.name,
                b.pid(),
                self.excerpt(i)
            );
        }
        for &i in nodes {
            let port = self.c.kafka_ports[i];
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = self.rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), answers(port)).await
                });
                let last = match r {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => e,
                    Err(_) => "no answer within 10 s".to_string(),
                };
                assert!(
                    Instant::now() < deadline,
                    "after {after}: node {i} (port {port}) does not answer: {last}\n{}",
                    self.excerpt(i)
                );
                std::thread::sleep(Duration::from_millis(300));
            }
            assert!(
                process_alive(&self.c.brokers[i]),
                "after {after}: node {i} died\n{}",
                self.excerpt(i)
            );
        }
    }

    /// Every acknowledged record is read back (Fetch from the leader) at
    /// its offset with its key and value.
    fn verify_acked(&self) {
        let bootstrap = self.bootstrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let r = self.rt.block_on(read_partitions(&bootstrap));
            let missing: Vec<String> = match &r {
                Ok(read) => self
                    .acked
                    .iter()
                    .filter(|a| {
                        read.get(&(a.partition, a.offset))
                            != Some(&(Some(a.key.clone()), Some(a.value.clone())))
                    })
                    .map(|a| {
                        format!(
                            "{TOPIC}-{} offset {}: want {:?}, read {:?}",
                            a.partition,
                            a.offset,
                            a.key,
                            read.get(&(a.partition, a.offset))
                        )
                    })
                    .collect(),
                Err(e) => vec![format!("{e:#}")],
            };
            if missing.is_empty() {
                eprintln!("all {} acknowledged records read back", self.acked.len());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "acknowledged records lost or unreadable ({} of {}):\n{}",
                missing.len(),
                self.acked.len(),
                missing
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The final check of every test.
    fn every_node_answers_and_acked_records_survive(&self, after: &str) {
        self.assert_alive(after);
        self.verify_acked();
    }

    /// Runs `cases` (`PARALLEL` at a time, spread over the nodes) and
    /// returns each one's outcome, in order.
    fn run_cases(&self, cases: &[Case], limit: Duration) -> Vec<(Outcome, Duration)> {
        let ports = self.c.kafka_ports.clone();
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(cases.len());
            for (chunk_index, chunk) in cases.chunks(PARALLEL).enumerate() {
                let mut tasks = Vec::new();
                for (j, case) in chunk.iter().enumerate() {
                    let port = ports[(chunk_index * PARALLEL + j) % ports.len()];
                    let bytes = case.bytes.clone();
                    tasks.push(tokio::spawn(exchange(port, bytes, limit)));
                }
                for t in tasks {
                    out.push(t.await.expect("case task"));
                }
            }
            out
        })
    }
}

/// The process's state letter from /proc (R, S, Z...), "gone" if none.
fn process_state(p: &Proc) -> String {
    let Some(pid) = p.pid() else {
        return "not started".to_string();
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return "gone".to_string();
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

/// Whether the process is still running (a dead, unreaped child is a zombie).
fn process_alive(p: &Proc) -> bool {
    !matches!(
        process_state(p).as_str(),
        "Z" | "X" | "gone" | "not started"
    )
}

/// (VmRSS, VmHWM) of a process in KiB, for the report.
fn memory_kib(p: &Proc) -> (u64, u64) {
    let Some(pid) = p.pid() else { return (0, 0) };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of a process in clock ticks.
fn cpu_ticks(p: &Proc) -> u64 {
    let Some(pid) = p.pid() else { return 0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3 of stat, utime 14 and stime 15.
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(14) + n(15)
}

async fn connect_client(bootstrap: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(bootstrap).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect: {e:#}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(tn(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Produces one batch with acks=all at the partition's leader, retrying
/// (leader changes) for up to 30 s; returns the base offset.
async fn produce_with_retries(client: &mut Client, topic: &str, p: i32, batch: Bytes) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let _ = client.refresh(Some(&[topic.to_string()])).await;
        if let Some(leader) = client.leader(topic, p) {
            match client
                .call_at(&leader, &produce_request(topic, p, batch.clone()), 9)
                .await
            {
                Ok(r) => {
                    let pr = &r.responses[0].partition_responses[0];
                    if pr.error_code == 0 {
                        return pr.base_offset;
                    }
                    last = format!("error {}", pr.error_code);
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("{topic}-{p}: produce not acknowledged in 30 s: {last}");
}

/// ApiVersions and Metadata (for `TOPIC`) on one port.
async fn answers(port: u16) -> Result<(), String> {
    let mut c = Connection::connect(&format!("127.0.0.1:{port}"))
        .await
        .map_err(text)?;
    let r = c
        .call(&ApiVersionsRequest::default(), 3)
        .await
        .map_err(text)?;
    if r.error_code != 0 || r.api_keys.is_empty() {
        return Err(format!(
            "ApiVersions: error {}, {} APIs",
            r.error_code,
            r.api_keys.len()
        ));
    }
    let m = c
        .call(
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(tn(TOPIC)))
            ])),
            12,
        )
        .await
        .map_err(text)?;
    if m.brokers.is_empty() || m.topics.len() != 1 {
        return Err(format!(
            "Metadata: {} brokers, {} topics",
            m.brokers.len(),
            m.topics.len()
        ));
    }
    Ok(())
}

/// An error as text (with its causes, for anyhow's errors).
fn text(e: impl std::fmt::Display) -> String {
    format!("{e:#}")
}

type Read = BTreeMap<(i32, i64), (Option<Bytes>, Option<Bytes>)>;

/// Every record of `TOPIC`, read with Fetch v12 from each partition's leader.
async fn read_partitions(bootstrap: &str) -> Result<Read, String> {
    let mut client = Client::connect(bootstrap).await.map_err(text)?;
    client
        .refresh(Some(&[TOPIC.to_string()]))
        .await
        .map_err(text)?;
    let mut read = Read::new();
    for p in 0..PARTITIONS {
        let leader = client
            .leader(TOPIC, p)
            .ok_or_else(|| format!("{TOPIC}-{p}: no leader"))?;
        let mut next = 0i64;
        // Bounded: each round reads at least one record or stops.
        loop {
            let fetch = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(8 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(tn(TOPIC))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(p)
                        .with_fetch_offset(next)
                        .with_partition_max_bytes(4 << 20)])]);
            let r = client.call_at(&leader, &fetch, 12).await.map_err(text)?;
            let part = r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| format!("{TOPIC}-{p}: empty fetch answer"))?;
            if part.error_code != 0 {
                return Err(format!(
                    "{TOPIC}-{p}: fetch error {} at {next}",
                    part.error_code
                ));
            }
            let records = decode_records(part.records.clone().unwrap_or_default()).map_err(text)?;
            let before = next;
            for r in records {
                if r.offset >= next {
                    next = r.offset + 1;
                }
                read.insert((p, r.offset), (r.key, r.value));
            }
            if next >= part.high_watermark || next == before {
                break;
            }
        }
    }
    Ok(read)
}

// ----- raw exchanges ---------------------------------------------------------------

/// What a connection did with a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// A whole response frame arrived.
    Answered,
    /// The server closed the connection (end of stream or reset) without a
    /// whole response.
    Closed,
    /// Neither within the limit.
    Pending,
    /// The connection could not be made.
    Refused,
}

fn whole_frame(buf: &[u8]) -> bool {
    buf.len() >= 4 && {
        let size = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
        size >= 0 && buf.len() >= 4 + size as usize
    }
}

/// Connects, writes `bytes`, and waits up to `limit` for a whole response
/// frame or the end of the connection.
async fn exchange(port: u16, bytes: Vec<u8>, limit: Duration) -> (Outcome, Duration) {
    let started = Instant::now();
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(3), connect).await else {
        return (Outcome::Refused, started.elapsed());
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    // The write may fail if the server closed before reading everything.
    match tokio::time::timeout_at(deadline, s.write_all(&bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return (Outcome::Closed, started.elapsed()),
        Err(_) => return (Outcome::Pending, started.elapsed()),
    }
    loop {
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                let o = if whole_frame(&buf) {
                    Outcome::Answered
                } else {
                    Outcome::Closed
                };
                return (o, started.elapsed());
            }
            Ok(Ok(_)) => {
                if whole_frame(&buf) {
                    return (Outcome::Answered, started.elapsed());
                }
            }
            Err(_) => return (Outcome::Pending, started.elapsed()),
        }
    }
}

/// A frame to send and what it is.
#[derive(Clone)]
struct Case {
    what: String,
    bytes: Vec<u8>,
    /// The node may legitimately take longer than `PROMPT` (Fetch max wait,
    /// a join waiting for a rebalance, produce with acks=0 has no answer).
    may_wait: bool,
}

fn with_size(size: i32, body: &[u8]) -> Vec<u8> {
    let mut f = size.to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn framed(body: &[u8]) -> Vec<u8> {
    with_size(body.len() as i32, body)
}

/// Whether version `v` of `key` is a flexible version (compact strings,
/// arrays and tagged fields): its request header is v2.
fn flexible(key: ApiKey, v: i16) -> bool {
    key.request_header_version(v) >= 2
}

/// A request header written with kafka-protocol.
fn header_bytes(key: ApiKey, v: i16, correlation_id: i32, client_id: &str) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(sb(client_id)))
        .encode(&mut buf, key.request_header_version(v))
        .expect("header");
    buf.to_vec()
}

/// Header and body of a request, unframed; `None` if kafka-protocol cannot
/// encode it at that version (a field set that the version lacks).
fn encode_request(key: ApiKey, v: i16, request: &RequestKind) -> Option<(Vec<u8>, usize)> {
    let mut out = header_bytes(key, v, 1, "hostile");
    let body_at = out.len();
    let mut buf = BytesMut::new();
    request.encode(&mut buf, v).ok()?;
    out.extend_from_slice(&buf);
    Some((out, body_at))
}

/// What the node's decoder makes of an unframed request: `Ok(body)` or why
/// not (the node must then close the connection).
fn decodes(key_raw: i16, v: i16, unframed: &[u8]) -> Result<RequestKind, String> {
    use kafka_protocol::protocol::Decodable;
    let key = ApiKey::try_from(key_raw).map_err(|_| "unknown key".to_string())?;
    let mut b = Bytes::copy_from_slice(unframed);
    RequestHeader::decode(&mut b, key.request_header_version(v)).map_err(|e| e.to_string())?;
    RequestKind::decode(key, &mut b, v).map_err(|e| e.to_string())
}

/// Whether the node may take longer than `PROMPT` to answer this request.
fn may_wait(body: &RequestKind) -> bool {
    match body {
        RequestKind::Fetch(f) => f.max_wait_ms > 1_000 || f.min_bytes > 0,
        RequestKind::Produce(p) => p.acks == 0 || p.timeout_ms > 1_000,
        RequestKind::JoinGroup(_) | RequestKind::SyncGroup(_) => true,
        RequestKind::CreateTopics(_)
        | RequestKind::DeleteTopics(_)
        | RequestKind::CreatePartitions(_) => true,
        _ => false,
    }
}

// ----- deterministic randomness ----------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Bytes that make counts and lengths small, zero, null, negative or huge.
const INTERESTING: &[u8] = &[0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xfe];
const INTERESTING_I32: &[i32] = &[i32::MAX, i32::MIN, -1, -2, 0, 0x7fff, 0x1_0000, 1 << 30];

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.byte()
            }
        })
        .collect()
}

/// 1 to 4 random edits of `data` at or after `from`.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, from: usize) -> String {
    let mut done = Vec::new();
    for _ in 0..1 + rng.below(4) {
        if data.len() <= from {
            data.push(rng.byte());
            done.push("append".to_string());
            continue;
        }
        let i = from + rng.below(data.len() - from);
        match rng.below(6) {
            0 => {
                let bit = rng.below(8);
                data[i] ^= 1 << bit;
                done.push(format!("flip bit {bit} at {i}"));
            }
            1 => {
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
                done.push(format!("set {i}={:#04x}", data[i]));
            }
            2 => {
                let n = 1 + rng.below(8);
                let ins = random_bytes(rng, n);
                data.splice(i..i, ins);
                done.push(format!("insert {n} at {i}"));
            }
            3 => {
                let n = (1 + rng.below(8)).min(data.len() - i);
                data.drain(i..i + n);
                done.push(format!("remove {n} at {i}"));
            }
            4 => {
                data.truncate(i);
                done.push(format!("truncate at {i}"));
            }
            _ => {
                let v = INTERESTING_I32[rng.below(INTERESTING_I32.len())];
                for (k, b) in v.to_be_bytes().iter().enumerate() {
                    if let Some(x) = data.get_mut(i + k) {
                        *x = *b;
                    }
                }
                done.push(format!("i32 {v} at {i}"));
            }
        }
    }
    done.join(", ")
}

// ----- requests with something in every array and string ---------------------------

fn batch_bytes() -> Bytes {
    encode_batch(
        &[(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"hostile")),
        )],
        1,
    )
    .expect("batch")
}

/// A populated request of each key (mutation starts from this).
fn rich(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(produce_request(SCRATCH, 0, batch_bytes())),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(100)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(tn(TOPIC))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(65_536)])]),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(tn(TOPIC))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(tn(TOPIC))),
            ])))
        }
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(sb("hostile"))
                .with_client_software_version(sb("1.0")),
        ),
        // num_partitions and replication_factor -1 (the defaults): a flipped
        // bit makes them negative or far above the 100000 limit, never a
        // topic with tens of thousands of partitions. validate_only too.
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(5_000)
                .with_validate_only(true)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(tn("hostile-created"))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_configs(vec![CreatableTopicConfig::default()
                        .with_name(sb("retention.ms"))
                        .with_value(Some(sb("1000")))])]),
        ),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_timeout_ms(5_000)
                .with_topic_names(vec![tn("hostile-deleteme")]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_transactional_id(Some(TransactionalId(sb("hostile-tx")))),
        ),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(sb(TOPIC))
                    .with_configuration_keys(Some(vec![sb("retention.ms")])),
            ]))
        }
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5_000)
                .with_validate_only(true)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(tn(SCRATCH))
                    .with_count(-1)]),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(sb(""))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(tn(TOPIC))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(sb("m")))])]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(tn(TOPIC))
                    .with_partition_indexes(vec![0, 1])])),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default().with_key(sb("hostile-g")),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_session_timeout_ms(10_000)
                .with_member_id(sb(""))
                .with_protocol_type(sb("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(sb("range"))
                    .with_metadata(Bytes::from_static(b"\x00\x01\x00\x00\x00\x00"))]),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_generation_id(1)
                .with_member_id(sb("m-1")),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_member_id(sb("m-1")),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_generation_id(1)
                .with_member_id(sb("m-1"))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(sb("m-1"))
                    .with_assignment(Bytes::from_static(b"\x00\x01"))]),
        ),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![gid("hostile-g")]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![gid("hostile-deleted")]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            kafka_protocol::messages::OffsetDeleteRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_topics(vec![
                    kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(sb("hostile-acl")))
                        .with_partitions(vec![
                            kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        // ACLs only on a topic no other request names.
        ApiKey::CreateAcls => RequestKind::CreateAcls(
            kafka_protocol::messages::CreateAclsRequest::default().with_creations(vec![
                kafka_protocol::messages::create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(sb("hostile-acl"))
                    .with_resource_pattern_type(3)
                    .with_principal(sb("User:*"))
                    .with_host(sb("*"))
                    .with_operation(3)
                    .with_permission_type(2),
            ]),
        ),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(
            kafka_protocol::messages::DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_resource_name_filter(None)
                .with_pattern_type_filter(1)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(
            kafka_protocol::messages::DeleteAclsRequest::default().with_filters(vec![
                kafka_protocol::messages::delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(sb("hostile-acl")))
                    .with_pattern_type_filter(3)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
        ),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(
            kafka_protocol::messages::AlterConfigsRequest::default().with_resources(vec![
                kafka_protocol::messages::alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(sb("hostile-configs"))
                    .with_configs(vec![
                        kafka_protocol::messages::alter_configs_request::AlterableConfig::default()
                            .with_name(sb("retention.ms"))
                            .with_value(Some(sb("1000"))),
                    ]),
            ]),
        ),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            kafka_protocol::messages::IncrementalAlterConfigsRequest::default().with_resources(
                vec![
                    kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(sb("hostile-configs"))
                        .with_configs(vec![
                            kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(sb("retention.ms"))
                                .with_config_operation(0)
                                .with_value(Some(sb("1000"))),
                        ]),
                ],
            ),
        ),
        // On the scratch topic: a mutated offset may delete what it names.
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(
            kafka_protocol::messages::DeleteRecordsRequest::default()
                .with_timeout_ms(1_000)
                .with_topics(vec![
                    kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
                        .with_name(tn(SCRATCH))
                        .with_partitions(vec![
                            kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(0),
                        ]),
                ]),
        ),
        other => panic!("no request built for {other:?}"),
    }
}

/// Version-specific shapes of `rich` (fields that exist only in some versions).
fn rich_at(key: ApiKey, v: i16) -> RequestKind {
    match (key, rich(key)) {
        (ApiKey::DeleteTopics, _) if v >= 6 => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(tn("hostile-deleteme")))
                ]),
        ),
        (ApiKey::OffsetFetch, _) if v >= 8 => RequestKind::OffsetFetch(
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(gid("hostile-g"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(tn(TOPIC))
                    .with_partition_indexes(vec![0])]))]),
        ),
        (ApiKey::FindCoordinator, _) if v >= 4 => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default().with_coordinator_keys(vec![sb("hostile-g")]),
        ),
        (ApiKey::LeaveGroup, _) if v >= 3 => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(gid("hostile-g"))
                .with_members(vec![MemberIdentity::default().with_member_id(sb("m-1"))]),
        ),
        (ApiKey::ListGroups, _) if v >= 4 => RequestKind::ListGroups(
            ListGroupsRequest::default().with_states_filter(vec![sb("Stable")]),
        ),
        (ApiKey::Fetch, RequestKind::Fetch(f)) if v >= 7 => {
            RequestKind::Fetch(f.with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(tn(TOPIC))
                .with_partitions(vec![2])]))
        }
        (_, r) => r,
    }
}

/// How a length or count is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// An array or bytes: i32 in classic versions, unsigned varint (n+1) in flexible ones.
    Array,
    /// A string: i16 in classic versions, unsigned varint (n+1) in flexible ones.
    Str,
}

/// Pairs of requests that differ in one length or count only (empty vs one
/// element or character): the first byte where their encodings differ
/// locates that field, whatever the version's layout.
fn probe_pairs(key: ApiKey, v: i16) -> Vec<(&'static str, Field, RequestKind, RequestKind)> {
    let base = rich_at(key, v);
    let mut out: Vec<(&'static str, Field, RequestKind, RequestKind)> = Vec::new();
    macro_rules! pair {
        ($label:expr, $field:expr, $variant:ident, |$r:ident| $empty:expr) => {
            if let RequestKind::$variant(full) = base.clone() {
                let $r = full.clone();
                out.push((
                    $label,
                    $field,
                    RequestKind::$variant($empty),
                    RequestKind::$variant(full),
                ));
            }
        };
    }
    match key {
        ApiKey::Produce => {
            pair!("topic_data", Field::Array, Produce, |r| r
                .with_topic_data(vec![]));
            pair!("topic name", Field::Str, Produce, |r| {
                let mut r = r;
                r.topic_data[0].name = tn("");
                r
            });
            pair!("partition_data", Field::Array, Produce, |r| {
                let mut r = r;
                r.topic_data[0].partition_data.clear();
                r
            });
            pair!("records", Field::Array, Produce, |r| {
                let mut r = r;
                r.topic_data[0].partition_data[0].records = Some(Bytes::new());
                r
            });
        }
        ApiKey::Fetch => {
            pair!("topics", Field::Array, Fetch, |r| r.with_topics(vec![]));
            pair!("topic name", Field::Str, Fetch, |r| {
                let mut r = r;
                r.topics[0].topic = tn("");
                r
            });
            pair!("partitions", Field::Array, Fetch, |r| {
                let mut r = r;
                r.topics[0].partitions.clear();
                r
            });
            if v >= 7 {
                pair!("forgotten_topics_data", Field::Array, Fetch, |r| r
                    .with_forgotten_topics_data(vec![]));
            }
            if v >= 11 {
                // rack_id: "" vs "a", the other way round from the others.
                if let RequestKind::Fetch(f) = base.clone() {
                    out.push((
                        "rack_id",
                        Field::Str,
                        RequestKind::Fetch(f.clone()),
                        RequestKind::Fetch(f.with_rack_id(sb("a"))),
                    ));
                }
            }
        }
        ApiKey::ListOffsets => {
            pair!("topics", Field::Array, ListOffsets, |r| r
                .with_topics(vec![]));
            pair!("topic name", Field::Str, ListOffsets, |r| {
                let mut r = r;
                r.topics[0].name = tn("");
                r
            });
            pair!("partitions", Field::Array, ListOffsets, |r| {
                let mut r = r;
                r.topics[0].partitions.clear();
                r
            });
        }
        ApiKey::Metadata => {
            pair!("topics", Field::Array, Metadata, |r| r
                .with_topics(Some(vec![])));
            pair!("topic name", Field::Str, Metadata, |r| r.with_topics(Some(
                vec![MetadataRequestTopic::default().with_name(Some(tn("")))]
            )));
        }
        ApiKey::ApiVersions => {
            pair!("client_software_name", Field::Str, ApiVersions, |r| r
                .with_client_software_name(sb("")));
        }
        ApiKey::CreateTopics => {
            pair!("topics", Field::Array, CreateTopics, |r| r
                .with_topics(vec![]));
            pair!("topic name", Field::Str, CreateTopics, |r| {
                let mut r = r;
                r.topics[0].name = tn("");
                r
            });
            pair!("configs", Field::Array, CreateTopics, |r| {
                let mut r = r;
                r.topics[0].configs.clear();
                r
            });
        }
        ApiKey::DeleteTopics if v >= 6 => {
            pair!("topics", Field::Array, DeleteTopics, |r| r
                .with_topics(vec![]));
        }
        ApiKey::DeleteTopics => {
            pair!("topic_names", Field::Array, DeleteTopics, |r| r
                .with_topic_names(vec![]));
            pair!("topic name", Field::Str, DeleteTopics, |r| r
                .with_topic_names(vec![tn("")]));
        }
        ApiKey::InitProducerId => {
            pair!("transactional_id", Field::Str, InitProducerId, |r| r
                .with_transactional_id(Some(TransactionalId(sb("")))));
        }
        ApiKey::DescribeConfigs => {
            pair!("resources", Field::Array, DescribeConfigs, |r| r
                .with_resources(vec![]));
            pair!("resource_name", Field::Str, DescribeConfigs, |r| {
                let mut r = r;
                r.resources[0].resource_name = sb("");
                r
            });
            pair!("configuration_keys", Field::Array, DescribeConfigs, |r| {
                let mut r = r;
                r.resources[0].configuration_keys = Some(vec![]);
                r
            });
        }
        ApiKey::CreatePartitions => {
            pair!("topics", Field::Array, CreatePartitions, |r| r
                .with_topics(vec![]));
            pair!("topic name", Field::Str, CreatePartitions, |r| {
                let mut r = r;
                r.topics[0].name = tn("");
                r
            });
        }
        ApiKey::OffsetCommit => {
            pair!("group_id", Field::Str, OffsetCommit, |r| r
                .with_group_id(gid("")));
            pair!("topics", Field::Array, OffsetCommit, |r| r
                .with_topics(vec![]));
            pair!("partitions", Field::Array, OffsetCommit, |r| {
                let mut r = r;
                r.topics[0].partitions.clear();
                r
            });
            pair!("committed_metadata", Field::Str, OffsetCommit, |r| {
                let mut r = r;
                r.topics[0].partitions[0].committed_metadata = Some(sb(""));
                r
            });
        }
        ApiKey::OffsetFetch if v >= 8 => {
            pair!("groups", Field::Array, OffsetFetch, |r| r
                .with_groups(vec![]));
        }
        ApiKey::OffsetFetch => {
            pair!("group_id", Field::Str, OffsetFetch, |r| r
                .with_group_id(gid("")));
            pair!("partition_indexes", Field::Array, OffsetFetch, |r| r
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default().with_name(tn(TOPIC))
                ])));
        }
        ApiKey::FindCoordinator if v >= 4 => {
            pair!("coordinator_keys", Field::Array, FindCoordinator, |r| r
                .with_coordinator_keys(vec![]));
        }
        ApiKey::FindCoordinator => {
            pair!("key", Field::Str, FindCoordinator, |r| r.with_key(sb("")));
        }
        ApiKey::JoinGroup => {
            pair!("group_id", Field::Str, JoinGroup, |r| r
                .with_group_id(gid("")));
            pair!("protocols", Field::Array, JoinGroup, |r| r
                .with_protocols(vec![]));
            pair!("protocol metadata", Field::Array, JoinGroup, |r| {
                let mut r = r;
                r.protocols[0].metadata = Bytes::new();
                r
            });
        }
        ApiKey::Heartbeat => {
            pair!("member_id", Field::Str, Heartbeat, |r| r
                .with_member_id(sb("")));
        }
        ApiKey::LeaveGroup if v >= 3 => {
            pair!("members", Field::Array, LeaveGroup, |r| r
                .with_members(vec![]));
        }
        ApiKey::LeaveGroup => {
            pair!("member_id", Field::Str, LeaveGroup, |r| r
                .with_member_id(sb("")));
        }
        ApiKey::SyncGroup => {
            pair!("assignments", Field::Array, SyncGroup, |r| r
                .with_assignments(vec![]));
            pair!("assignment", Field::Array, SyncGroup, |r| {
                let mut r = r;
                r.assignments[0].assignment = Bytes::new();
                r
            });
        }
        ApiKey::DescribeGroups => {
            pair!("groups", Field::Array, DescribeGroups, |r| r
                .with_groups(vec![]));
            pair!("group name", Field::Str, DescribeGroups, |r| r
                .with_groups(vec![gid("")]));
        }
        ApiKey::ListGroups if v >= 4 => {
            pair!("states_filter", Field::Array, ListGroups, |r| r
                .with_states_filter(vec![]));
        }
        ApiKey::DeleteGroups => {
            pair!("groups_names", Field::Array, DeleteGroups, |r| r
                .with_groups_names(vec![]));
        }
        _ => {}
    }
    out
}

/// Hostile rewrites of the length/count at `at` in `full` (an unframed
/// request whose field there holds a small count: 1 element, 1 character).
fn lying_lengths(
    full: &[u8],
    at: usize,
    old_len: usize,
    field: Field,
    flex: bool,
) -> Vec<(String, Vec<u8>)> {
    let head = &full[..at];
    let tail = &full[at + old_len..];
    let mut out = Vec::new();
    let mut put = |what: String, len: Vec<u8>, tail: &[u8]| {
        let mut b = head.to_vec();
        b.extend_from_slice(&len);
        b.extend_from_slice(tail);
        out.push((what, b));
    };
    match (flex, field) {
        (false, Field::Array) => {
            for n in [i32::MAX, 1 << 28, -2, i32::MIN] {
                put(format!("i32 count {n}"), n.to_be_bytes().to_vec(), tail);
            }
            // Declares 1000 and ends inside the first element.
            put(
                "count 1000, truncated".into(),
                1000i32.to_be_bytes().to_vec(),
                &tail[..tail.len().min(1)],
            );
        }
        (false, Field::Str) => {
            for n in [i16::MAX, -2, i16::MIN] {
                put(format!("i16 length {n}"), n.to_be_bytes().to_vec(), tail);
            }
            put(
                "length 200, truncated".into(),
                200i16.to_be_bytes().to_vec(),
                &tail[..tail.len().min(1)],
            );
        }
        (true, _) => {
            let varints: [(&str, &[u8]); 5] = [
                (
                    "varint 2^32-1 (count 2^32-2)",
                    &[0xff, 0xff, 0xff, 0xff, 0x0f],
                ),
                (
                    "varint 2^31 (count 2^31-1)",
                    &[0x80, 0x80, 0x80, 0x80, 0x08],
                ),
                ("varint 2^28", &[0x80, 0x80, 0x80, 0x80, 0x01]),
                (
                    "overlong varint (6 bytes)",
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                ),
                ("varint 0 (null)", &[0x00]),
            ];
            for (what, len) in varints {
                put(what.to_string(), len.to_vec(), tail);
            }
            put(
                "varint 1000, truncated".into(),
                vec![0xe9, 0x07],
                &tail[..tail.len().min(1)],
            );
        }
    }
    out
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
}

/// Every lying length/count of every probed field of every served (key,
/// version), plus the client id of the header.
fn field_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for &(key, min, max) in SUPPORTED {
        for v in min..=max {
            let flex = flexible(key, v);
            for (label, field, empty, full) in probe_pairs(key, v) {
                let (Some((a, _)), Some((b, _))) = (
                    encode_request(key, v, &empty),
                    encode_request(key, v, &full),
                ) else {
                    continue;
                };
                let Some(d) = first_difference(&a, &b) else {
                    continue;
                };
                let (at, old_len) = match (flex, field) {
                    (true, _) => (d, 1),
                    (false, Field::Array) => (d - 3, 4),
                    (false, Field::Str) => (d - 1, 2),
                };
                for (what, bytes) in lying_lengths(&b, at, old_len, field, flex) {
                    cases.push(Case {
                        what: format!("{key:?} v{v} {label}: {what}"),
                        bytes: framed(&bytes),
                        may_wait: false,
                    });
                }
            }
            // The header's client id is a classic (i16) string in every version.
            if let Some((b, _)) = encode_request(key, v, &rich_at(key, v)) {
                let at = 8; // key, version, correlation id
                for (what, bytes) in lying_lengths(&b, at, 2, Field::Str, false) {
                    cases.push(Case {
                        what: format!("{key:?} v{v} header client_id: {what}"),
                        bytes: framed(&bytes),
                        may_wait: false,
                    });
                }
            }
        }
    }
    cases
}

/// Hand-built frames: sizes that lie or are absurd, headers that are cut
/// short or carry absurd tagged fields, unknown keys and versions.
fn frame_cases() -> Vec<Case> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let api_versions = encode_request(ApiKey::ApiVersions, 3, &rich(ApiKey::ApiVersions))
        .expect("ApiVersions v3")
        .0;
    let metadata1 = encode_request(ApiKey::Metadata, 1, &rich(ApiKey::Metadata))
        .expect("Metadata v1")
        .0;
    out.push(("size 0".into(), with_size(0, &[])));
    out.push(("size 1 with 1 byte".into(), with_size(1, &[0x12])));
    out.push((
        "size 7 with 7 bytes".into(),
        with_size(7, &[0, 18, 0, 3, 0, 0, 0]),
    ));
    out.push(("size -1".into(), with_size(-1, &[0; 16])));
    out.push(("size i32::MIN".into(), with_size(i32::MIN, &[0; 16])));
    out.push(("size i32::MAX".into(), with_size(i32::MAX, &[0; 16])));
    out.push((
        "size socket.request.max.bytes + 1".into(),
        with_size(104_857_601, &[0; 16]),
    ));
    out.push((
        "size 8: header without client id".into(),
        with_size(8, &[0, 18, 0, 3, 0, 0, 0, 9]),
    ));
    out.push((
        "size 5 shorter than an ApiVersions v3 body".into(),
        with_size(api_versions.len() as i32 - 5, &api_versions),
    ));
    out.push((
        "size cuts a Metadata v1 topic name".into(),
        with_size(metadata1.len() as i32 - 3, &metadata1),
    ));
    out.push((
        "size covers the header only, body follows as the next frame".into(),
        with_size(16, &metadata1),
    ));
    let mut v0 = framed(
        &encode_request(
            ApiKey::ApiVersions,
            0,
            &RequestKind::ApiVersions(Default::default()),
        )
        .expect("v0")
        .0,
    );
    v0.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    out.push(("ApiVersions v0, then a size of -1".into(), v0));
    for (key, v) in [(-1i16, 0i16), (32_767, 0), (-32_768, 0), (67, 0)] {
        out.push((
            format!("API key {key}"),
            framed(
                &[
                    &key.to_be_bytes()[..],
                    &v.to_be_bytes(),
                    &[0, 0, 0, 1, 0xff, 0xff],
                ]
                .concat(),
            ),
        ));
    }
    for (key, v) in [
        (18i16, -1i16),
        (18, 32_767),
        (18, 4),
        (3, -1),
        (3, 13),
        (1, 3),
        (0, 10),
        (11, 8),
    ] {
        out.push((
            format!("API key {key} version {v}"),
            framed(
                &[
                    &key.to_be_bytes()[..],
                    &v.to_be_bytes(),
                    &[0, 0, 0, 1, 0xff, 0xff, 0],
                ]
                .concat(),
            ),
        ));
    }
    // Client id: invalid UTF-8.
    let mut bad_utf8 = vec![0, 3, 0, 1, 0, 0, 0, 1, 0, 2, 0xff, 0xfe];
    bad_utf8.extend_from_slice(&0i32.to_be_bytes());
    out.push((
        "Metadata v1 client id of invalid UTF-8".into(),
        framed(&bad_utf8),
    ));
    // Tagged fields in a flexible header (after the client id) and at the
    // end of a flexible body.
    let absurd_tags: [(&str, &[u8]); 7] = [
        (
            "one tag of 2^32-1 bytes",
            &[0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
        (
            "one tag of i32::MAX bytes",
            &[0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x07],
        ),
        (
            "one tag of 1000 bytes, 3 present",
            &[0x01, 0x00, 0xe8, 0x07, 1, 2, 3],
        ),
        ("2^32-1 tags, none present", &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        (
            "tag number overlong varint",
            &[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00],
        ),
        (
            "the same tag twice",
            &[0x02, 0x05, 0x01, 0xaa, 0x05, 0x01, 0xbb],
        ),
        (
            "tag count overlong varint",
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
    ];
    for &(key, _, max) in SUPPORTED {
        if !flexible(key, max) {
            continue;
        }
        let Some((full, body_at)) = encode_request(key, max, &rich_at(key, max)) else {
            continue;
        };
        for (what, tags) in absurd_tags {
            // The header's tag count is its last byte.
            let mut h = full[..body_at - 1].to_vec();
            h.extend_from_slice(tags);
            h.extend_from_slice(&full[body_at..]);
            out.push((format!("{key:?} v{max} header: {what}"), framed(&h)));
            // The body's top-level tag count is its last byte.
            let mut b = full[..full.len() - 1].to_vec();
            b.extend_from_slice(tags);
            out.push((format!("{key:?} v{max} body: {what}"), framed(&b)));
        }
    }
    out.into_iter()
        .map(|(what, bytes)| Case {
            what,
            bytes,
            may_wait: false,
        })
        .collect()
}

/// Valid requests made of very many tiny elements.
fn amplification_cases() -> Vec<Case> {
    let mut out = Vec::new();
    // Metadata v9: 2,500,000 topics whose names are null (2 bytes each).
    let n = 2_500_000usize;
    let mut m = header_bytes(ApiKey::Metadata, 9, 1, "hostile");
    let mut count = Vec::new();
    varint_u64(n as u64 + 1, &mut count);
    m.extend_from_slice(&count);
    m.extend(std::iter::repeat_n([0u8, 0u8], n).flatten());
    m.extend_from_slice(&[0, 0, 0, 0]); // allow auto-creation, two authorized-operations flags, no tags
    out.push(Case {
        what: format!("Metadata v9 with {n} null-named topics"),
        bytes: framed(&m),
        may_wait: false,
    });
    // ApiVersions v3 whose header carries 1,000,000 distinct empty tagged fields.
    let n = 1_000_000u64;
    let mut a = header_bytes(ApiKey::ApiVersions, 3, 2, "hostile");
    a.pop(); // the header's tag count
    varint_u64(n, &mut a);
    for tag in 0..n {
        varint_u64(tag, &mut a);
        a.push(0);
    }
    let body =
        encode_request(ApiKey::ApiVersions, 3, &rich(ApiKey::ApiVersions)).expect("ApiVersions v3");
    a.extend_from_slice(&body.0[body.1..]);
    out.push(Case {
        what: format!("ApiVersions v3 with {n} tagged fields in its header"),
        bytes: framed(&a),
        may_wait: false,
    });
    out
}

/// Frames after which the server must wait for more bytes and close the
/// connection once `connections.max.idle.ms` has passed.
fn idle_cases() -> Vec<Case> {
    let api_versions = encode_request(ApiKey::ApiVersions, 3, &rich(ApiKey::ApiVersions))
        .expect("ApiVersions v3")
        .0;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("connect and say nothing", vec![]),
        ("2 bytes of a size, then silence", vec![0, 0]),
        (
            "size 1000, a 20-byte ApiVersions, then silence",
            with_size(1000, &api_versions),
        ),
        (
            "size 104857600 (the maximum), then silence",
            with_size(104_857_600, &[]),
        ),
        (
            "size 104857600 and 64 KiB of it, then silence",
            with_size(104_857_600, &[7u8; 65_536]),
        ),
        (
            "size 100, the first 4 header bytes",
            with_size(100, &[0, 18, 0, 3]),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, bytes)| Case {
            what: what.to_string(),
            bytes,
            may_wait: true,
        })
        .collect()
}

/// Judges outcomes: a complete frame must be answered or closed within the
/// limit unless it may legitimately wait. Returns the failures.
fn judge(cases: &[Case], outcomes: &[(Outcome, Duration)]) -> Vec<String> {
    cases
        .iter()
        .zip(outcomes)
        .filter(|(c, (o, _))| match o {
            Outcome::Answered | Outcome::Closed => false,
            Outcome::Pending => !c.may_wait,
            Outcome::Refused => true,
        })
        .map(|(c, (o, took))| format!("{} → {o:?} after {took:?}", c.what))
        .collect()
}

// ----- 2. hand-built hostile frames ------------------------------------------------

#[test]
fn hostile_frames_are_refused_and_every_node_survives() {
    let _serial = serial();
    let started = Instant::now();
    let h = Hostile::start();
    let mut failures = Vec::new();

    let frames = frame_cases();
    let outcomes = h.run_cases(&frames, PROMPT);
    failures.extend(judge(&frames, &outcomes));
    let answered: Vec<&str> = frames
        .iter()
        .zip(&outcomes)
        .filter(|(_, (o, _))| *o == Outcome::Answered)
        .map(|(c, _)| c.what.as_str())
        .collect();
    eprintln!(
        "{} frame-level cases, {} answered: {answered:?}",
        frames.len(),
        answered.len()
    );
    h.assert_alive("frame-level cases");

    let fields = field_cases();
    let outcomes = h.run_cases(&fields, PROMPT);
    failures.extend(judge(&fields, &outcomes));
    // The node's decoder is the one linked here: what it accepts, we accept.
    for (c, (o, _)) in fields.iter().zip(&outcomes) {
        let unframed = &c.bytes[4..];
        let key = i16::from_be_bytes([unframed[0], unframed[1]]);
        let v = i16::from_be_bytes([unframed[2], unframed[3]]);
        if *o == Outcome::Answered && decodes(key, v, unframed).is_err() {
            failures.push(format!("{}: answered although it does not decode", c.what));
        }
    }
    eprintln!(
        "{} lying lengths and counts; {} answered (they decode)",
        fields.len(),
        outcomes
            .iter()
            .filter(|(o, _)| *o == Outcome::Answered)
            .count()
    );
    h.assert_alive("lying lengths and counts in every key and version");

    // Honest counts of tiny elements: a few MB that decode into many
    // structures (reported with node 0's peak memory, then must be survived).
    for case in amplification_cases() {
        let (rss0, hwm0) = memory_kib(&h.c.brokers[0]);
        let outcome = h.rt.block_on(exchange(
            h.c.kafka_ports[0],
            case.bytes.clone(),
            Duration::from_secs(30),
        ));
        let (rss1, hwm1) = memory_kib(&h.c.brokers[0]);
        eprintln!(
            "{} ({} bytes): {outcome:?}; node 0 RSS {rss0} → {rss1} KiB, peak {hwm0} → {hwm1} KiB",
            case.what,
            case.bytes.len()
        );
        if matches!(outcome.0, Outcome::Pending | Outcome::Refused) {
            failures.push(format!("{} → {outcome:?}", case.what));
        }
        h.assert_alive(&case.what);
    }

    // The server waits for the rest of these, then drops them after
    // connections.max.idle.ms; all at once, so the test waits once.
    let idle = idle_cases();
    let limit = Duration::from_millis(IDLE_MS) + Duration::from_secs(8);
    let outcomes = h.run_cases(&idle, limit);
    for (c, (o, took)) in idle.iter().zip(&outcomes) {
        if *o != Outcome::Closed {
            failures.push(format!(
                "{}: {o:?} after {took:?} (connections.max.idle.ms={IDLE_MS})",
                c.what
            ));
        }
    }
    h.assert_alive("frames that stop short");

    h.every_node_answers_and_acked_records_survive("hostile frames");
    eprintln!("hostile frames: {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} hostile frames were not refused in time:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ----- 3. random and mutated bodies for every key and version ----------------------

const RANDOM_CASES: usize = 48;
const MUTATED_CASES: usize = 64;

fn seed(key: ApiKey, v: i16, salt: u64) -> u64 {
    ((key as i16 as u64) << 32) ^ ((v as u16 as u64) << 8) ^ salt
}

/// The random and mutated cases of one API key: random bodies behind a
/// valid header for the versions served and one either side, mutations of a
/// populated request for the versions served.
fn random_cases(key: ApiKey, min: i16, max: i16) -> Vec<(Case, Option<bool>)> {
    let mut out = Vec::new();
    let mut corr = 0i32;
    for v in (min - 1)..=(max + 1) {
        let served = (min..=max).contains(&v);
        let mut rng = Rng::new(seed(key, v, 1));
        let count = if served { RANDOM_CASES } else { 3 };
        for i in 0..count {
            corr += 1;
            let mut unframed = header_bytes(key, v, corr, "hostile-random");
            let len = rng.below(512);
            unframed.extend(random_bytes(&mut rng, len));
            out.push(case_for(
                key,
                v,
                served,
                format!(
                    "{key:?} v{v} random body #{i} ({len} bytes, seed {:#x})",
                    seed(key, v, 1)
                ),
                unframed,
            ));
        }
        if !served {
            continue;
        }
        let Some((base, body_at)) = encode_request(key, v, &rich_at(key, v))
            .or_else(|| encode_request(key, v, &default_request(key)))
        else {
            continue;
        };
        let mut rng = Rng::new(seed(key, v, 2));
        for i in 0..MUTATED_CASES {
            let mut unframed = base.clone();
            // One case in ten may edit the header too.
            let from = if rng.below(10) == 0 { 0 } else { body_at };
            let how = mutate(&mut rng, &mut unframed, from);
            out.push(case_for(
                key,
                v,
                served,
                format!(
                    "{key:?} v{v} mutated #{i} ({how}; seed {:#x})",
                    seed(key, v, 2)
                ),
                unframed,
            ));
        }
    }
    out
}

/// A case with the local decoder's verdict: `Some(true)` if the node should
/// answer it, `Some(false)` if it must close, `None` if it may do either.
fn case_for(
    key: ApiKey,
    v: i16,
    served: bool,
    what: String,
    unframed: Vec<u8>,
) -> (Case, Option<bool>) {
    let bytes = framed(&unframed);
    let k = unframed
        .get(..2)
        .map_or(key as i16, |b| i16::from_be_bytes([b[0], b[1]]));
    let ver = unframed
        .get(2..4)
        .map_or(v, |b| i16::from_be_bytes([b[0], b[1]]));
    // A mutated header may name another key or version: no verdict then.
    if k != key as i16 || ver != v {
        return (
            Case {
                what,
                bytes,
                may_wait: true,
            },
            None,
        );
    }
    if !served && key == ApiKey::ApiVersions {
        // ApiVersions above the range gets the KIP-511 answer.
        return (
            Case {
                what,
                bytes,
                may_wait: false,
            },
            Some(v > 0),
        );
    }
    // Served or not, a request that decodes is answered (one the node does
    // not serve with UNSUPPORTED_VERSION, `kafka/unsupported.rs`).
    match decodes(k, ver, &unframed) {
        Ok(body) => {
            let wait = may_wait(&body);
            (
                Case {
                    what,
                    bytes,
                    may_wait: wait,
                },
                (!wait).then_some(true),
            )
        }
        Err(_) => (
            Case {
                what,
                bytes,
                may_wait: false,
            },
            Some(false),
        ),
    }
}

fn default_request(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
        ApiKey::CreateAcls => RequestKind::CreateAcls(Default::default()),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(Default::default()),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(Default::default()),
        other => panic!("no default request for {other:?}"),
    }
}

#[test]
fn random_and_mutated_bodies_for_every_api_key_and_version() {
    let _serial = serial();
    let started = Instant::now();
    let h = Hostile::start();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut total = 0;
    for &(key, min, max) in SUPPORTED {
        let cases = random_cases(key, min, max);
        total += cases.len();
        let plain: Vec<Case> = cases.iter().map(|(c, _)| c.clone()).collect();
        let outcomes = h.run_cases(&plain, PROMPT);
        failures.extend(judge(&plain, &outcomes));
        for ((c, verdict), (o, took)) in cases.iter().zip(&outcomes) {
            match (verdict, o) {
                (Some(false), Outcome::Answered) => {
                    failures.push(format!("{}: answered although it does not decode", c.what))
                }
                (Some(true), Outcome::Closed) => notes.push(format!(
                    "{}: decodes, but the node closed the connection after {took:?}",
                    c.what
                )),
                (_, Outcome::Pending) if c.may_wait => notes.push(format!(
                    "{}: no answer within {PROMPT:?} (may wait)",
                    c.what
                )),
                _ => {}
            }
        }
        let answered = outcomes
            .iter()
            .filter(|(o, _)| *o == Outcome::Answered)
            .count();
        eprintln!(
            "{key:?} v{min}-{max}: {} cases, {answered} answered, {:?} so far",
            cases.len(),
            started.elapsed()
        );
        h.assert_alive(&format!("random and mutated {key:?} requests"));
    }
    h.every_node_answers_and_acked_records_survive("random and mutated bodies");
    eprintln!(
        "{total} random and mutated cases in {:?}; notes ({}):\n{}",
        started.elapsed(),
        notes.len(),
        notes.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} random/mutated cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ----- 4. junk on __consumer_offsets ------------------------------------------------

/// CRC-32C (Castagnoli), as record batches use it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Rewrites a v2 batch's field at `at` and fixes its CRC (which covers the
/// bytes from the attributes on), so only the lie is wrong.
fn patch_batch(batch: &Bytes, at: usize, value: &[u8]) -> Bytes {
    let mut b = batch.to_vec();
    b[at..at + value.len()].copy_from_slice(value);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn varint_u64(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag32(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// `GroupRecord::Generation { generation }` in postcard (variant 1).
fn postcard_generation(generation: i32) -> Vec<u8> {
    let mut out = vec![1];
    varint_u64(zigzag32(generation), &mut out);
    out
}

/// `GroupRecord::Offsets { generation, offsets, commit_timestamp_ms }` in postcard (variant 0).
fn postcard_offsets(
    generation: i32,
    offsets: &[(&str, u32, i64)],
    commit_timestamp_ms: u64,
) -> Vec<u8> {
    let mut out = vec![0];
    varint_u64(zigzag32(generation), &mut out);
    varint_u64(offsets.len() as u64, &mut out);
    for (topic, p, o) in offsets {
        varint_u64(topic.len() as u64, &mut out);
        out.extend_from_slice(topic.as_bytes());
        varint_u64(*p as u64, &mut out);
        varint_u64(zigzag64(*o), &mut out);
    }
    varint_u64(commit_timestamp_ms, &mut out);
    out
}

/// Batches of junk for one offsets partition: garbage keys and values,
/// lying record counts and lengths, a compressed batch of junk, and group
/// records that decode but carry absurd values.
fn offsets_junk(victim: &str) -> Vec<(String, Bytes)> {
    let mut rng = Rng::new(0x0ff5e75);
    let mut out = Vec::new();
    let garbage: Vec<(Option<Bytes>, Option<Bytes>)> = (0..20)
        .map(|i| {
            let (kl, vl) = (rng.below(64), rng.below(200));
            let k = random_bytes(&mut rng, kl);
            let v = random_bytes(&mut rng, vl);
            match i % 5 {
                0 => (None, Some(Bytes::from(v))),
                1 => (Some(Bytes::from(k)), None),
                2 => (
                    Some(Bytes::from(victim.as_bytes().to_vec())),
                    Some(Bytes::from(v)),
                ),
                _ => (Some(Bytes::from(k)), Some(Bytes::from(v))),
            }
        })
        .collect();
    out.push((
        "garbage keys and values".into(),
        encode_batch(&garbage, 1).expect("batch"),
    ));
    let three = encode_batch(
        &[
            (
                Some(Bytes::from_static(b"a")),
                Some(Bytes::from_static(b"\x01\x02")),
            ),
            (
                Some(Bytes::from_static(b"b")),
                Some(Bytes::from_static(b"\x01\x04")),
            ),
            (
                Some(Bytes::from_static(b"c")),
                Some(Bytes::from_static(b"\x01\x06")),
            ),
        ],
        1,
    )
    .expect("batch");
    // The record count is at 57..61 of a v2 batch.
    for n in [i32::MAX, -1, 0, 1 << 20] {
        out.push((
            format!("record count {n} (3 records present, CRC fixed)"),
            patch_batch(&three, 57, &n.to_be_bytes()),
        ));
    }
    // The first record's length (a zigzag varint at 61): 2^27 and -1.
    out.push((
        "first record length 2^27 (CRC fixed)".into(),
        patch_batch(&three, 61, &[0x80, 0x80, 0x80, 0x80]),
    ));
    // lastOffsetDelta (23..27) far beyond the records.
    out.push((
        "lastOffsetDelta i32::MAX (CRC fixed)".into(),
        patch_batch(&three, 23, &i32::MAX.to_be_bytes()),
    ));
    // attributes (21..23): gzip, over records that are not gzip.
    out.push((
        "gzip attribute over uncompressed junk (CRC fixed)".into(),
        patch_batch(&three, 21, &[0, 1]),
    ));
    out.push((
        "zstd attribute over uncompressed junk (CRC fixed)".into(),
        patch_batch(&three, 21, &[0, 4]),
    ));
    // Group records that decode but lie.
    let v = |b: Vec<u8>| Some(Bytes::from(b));
    let k = Some(Bytes::from(victim.as_bytes().to_vec()));
    let long_topic = "t".repeat(249);
    let records = vec![
        (
            k.clone(),
            v(postcard_offsets(
                i32::MIN,
                &[
                    (TOPIC, u32::MAX, i64::MIN),
                    (TOPIC, 0, -5),
                    (&long_topic, 7, i64::MAX),
                ],
                u64::MAX,
            )),
        ),
        (k.clone(), v(postcard_generation(i32::MIN))),
        // A valid variant tag with its fields cut short, and an unknown variant.
        (k.clone(), v(vec![0, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f])),
        (k, v(vec![9, 9, 9])),
    ];
    out.push((
        "group records with absurd values (offsets of partition u32::MAX and i64::MIN, of an unknown 249-byte topic, timestamp u64::MAX, generation i32::MIN)".into(),
        encode_batch(&records, 1).expect("batch"),
    ));
    out
}

/// One group record that decodes: an offset of a topic whose name (100000
/// bytes) no Kafka string of the classic versions can carry.
fn huge_topic_name(victim: &str) -> Vec<(String, Bytes)> {
    let long_topic = "t".repeat(100_000);
    let record = (
        Some(Bytes::from(victim.as_bytes().to_vec())),
        Some(Bytes::from(postcard_offsets(1, &[(&long_topic, 0, 5)], 1))),
    );
    vec![(
        "GroupRecord::Offsets with a 100000-byte topic name".into(),
        encode_batch(&[record], 1).expect("batch"),
    )]
}

/// One group record that decodes: the group's generation is i32::MAX, so
/// the next rebalance must not overflow it.
fn generation_max(victim: &str) -> Vec<(String, Bytes)> {
    let record = (
        Some(Bytes::from(victim.as_bytes().to_vec())),
        Some(Bytes::from(postcard_generation(i32::MAX))),
    );
    vec![(
        "GroupRecord::Generation { generation: i32::MAX }".into(),
        encode_batch(&[record], 1).expect("batch"),
    )]
}

fn offsets_partition_of(group: &str) -> u32 {
    runnel_model::group::offsets_partition(group, OFFSETS_PARTITIONS)
}

/// FindCoordinator until a coordinator is named; returns its node id and address.
async fn find_coordinator(client: &mut Client, group: &str) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = String::new();
    while Instant::now() < deadline {
        let r = client
            .call_any(&FindCoordinatorRequest::default().with_key(sb(group)), 3)
            .await;
        match r {
            Ok(r) if r.error_code == 0 => return (r.node_id.0, format!("{}:{}", r.host, r.port)),
            Ok(r) => last = format!("error {}", r.error_code),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("no coordinator for {group}: {last}");
}

/// Join (twice: v5 first gets MEMBER_ID_REQUIRED), sync, commit, fetch
/// offsets, describe: whatever the node answers, it must answer.
async fn use_group(client: &mut Client, group: &str) -> Result<String, String> {
    let mut log = Vec::new();
    let r = use_group_logged(client, group, &mut log).await;
    let text = log.join("; ");
    match r {
        Ok(()) => Ok(text),
        Err(e) => Err(format!("{text}; {e}")),
    }
}

async fn use_group_logged(
    client: &mut Client,
    group: &str,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let (_, coordinator) = find_coordinator(client, group).await;
    let mut join = JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(Bytes::from_static(b"\x00\x01\x00\x00\x00\x00"))]);
    log.push(format!("coordinator {coordinator}"));
    let mut joined = None;
    for _ in 0..3 {
        let r = client
            .call_at(&coordinator, &join, 5)
            .await
            .map_err(|e| format!("JoinGroup: {e:#}"))?;
        log.push(format!(
            "join: error {} generation {}",
            r.error_code, r.generation_id
        ));
        match r.error_code {
            79 => join.member_id = r.member_id.clone(),
            0 => {
                joined = Some(r);
                break;
            }
            _ => break,
        }
    }
    if let Some(j) = joined {
        let sync = SyncGroupRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(j.generation_id)
            .with_member_id(j.member_id.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(j.member_id.clone())
                .with_assignment(Bytes::from_static(b"\x00\x01"))]);
        let r = client
            .call_at(&coordinator, &sync, 3)
            .await
            .map_err(|e| format!("SyncGroup: {e:#}"))?;
        log.push(format!("sync: error {}", r.error_code));
        let commit = OffsetCommitRequest::default()
            .with_group_id(gid(group))
            .with_generation_id_or_member_epoch(j.generation_id)
            .with_member_id(j.member_id.clone())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(tn(TOPIC))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(3)])]);
        let r = client
            .call_at(&coordinator, &commit, 2)
            .await
            .map_err(|e| format!("OffsetCommit: {e:#}"))?;
        log.push(format!(
            "commit: error {:?}",
            r.topics
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.error_code)
        ));
    }
    let r = client
        .call_at(
            &coordinator,
            &OffsetFetchRequest::default()
                .with_group_id(gid(group))
                .with_topics(None),
            5,
        )
        .await
        .map_err(|e| format!("OffsetFetch: {e:#}"))?;
    log.push(format!(
        "offsets: error {} {:?}",
        r.error_code,
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (
                t.name.0.to_string().len(),
                p.partition_index,
                p.committed_offset
            )))
            .collect::<Vec<_>>()
    ));
    let r = client
        .call_at(
            &coordinator,
            &DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
            5,
        )
        .await
        .map_err(|e| format!("DescribeGroups: {e:#}"))?;
    log.push(format!(
        "describe: {:?}",
        r.groups
            .first()
            .map(|g| (g.error_code, g.group_state.to_string()))
    ));
    Ok(())
}

#[test]
fn junk_on_consumer_offsets_does_not_break_group_loading() {
    junk_on_consumer_offsets("hostile-victim", offsets_junk);
}

#[test]
fn a_huge_topic_name_on_consumer_offsets_does_not_poison_the_group() {
    junk_on_consumer_offsets("hostile-longname", huge_topic_name);
}

#[test]
fn a_generation_of_i32_max_on_consumer_offsets_does_not_crash_the_coordinator() {
    junk_on_consumer_offsets("hostile-generation", generation_max);
}

/// Produces `junk(victim)` to the offsets partition of group `victim`
/// (accepting a refusal), kills that partition's leader so another node
/// replays it, uses the group there, restarts the killed node, uses the
/// group again; every node must keep serving throughout.
fn junk_on_consumer_offsets(victim: &str, junk: fn(&str) -> Vec<(String, Bytes)>) {
    let _serial = serial();
    let started = Instant::now();
    let mut h = Hostile::start();
    let p = offsets_partition_of(victim) as i32;
    let bootstrap = h.bootstrap();
    // The offsets topic is created on the first FindCoordinator.
    let before = h.rt.block_on(async {
        let mut client = connect_client(&bootstrap).await;
        find_coordinator(&mut client, victim).await;
        use_group(&mut client, victim).await
    });
    eprintln!("{victim} before the junk: {before:?}");
    let (leader, produced) = h.rt.block_on(async {
        let mut client = connect_client(&bootstrap).await;
        client
            .refresh(Some(&[OFFSETS_TOPIC.to_string()]))
            .await
            .expect("metadata");
        let leader_id = client
            .metadata
            .topics
            .iter()
            .find(|t| {
                t.name
                    .as_ref()
                    .is_some_and(|n| n.0.as_str() == OFFSETS_TOPIC)
            })
            .and_then(|t| t.partitions.iter().find(|x| x.partition_index == p))
            .map(|x| x.leader_id.0)
            .expect("offsets partition leader");
        let address = client.leader(OFFSETS_TOPIC, p).expect("leader address");
        let mut produced = Vec::new();
        for (what, batch) in junk(victim) {
            let r = client
                .call_at(&address, &produce_request(OFFSETS_TOPIC, p, batch), 9)
                .await;
            let code = match r {
                Ok(r) => format!(
                    "error code {}",
                    r.responses[0].partition_responses[0].error_code
                ),
                Err(e) => format!("connection: {e:#}"),
            };
            produced.push(format!("{what}: {code}"));
        }
        (leader_id as usize, produced)
    });
    eprintln!(
        "junk produced to {OFFSETS_TOPIC}-{p} at node {leader} (17 = INVALID_TOPIC_EXCEPTION is the refusal):\n  {}",
        produced.join("\n  ")
    );
    h.assert_alive("junk produced to __consumer_offsets");

    // Another node loads the partition (replays the junk) when the leader dies.
    h.c.brokers[leader].kill9();
    let new_leader = h.rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
            let b = others
                .iter()
                .map(|i| format!("127.0.0.1:{}", h.c.kafka_ports[*i]))
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(mut client) = Client::connect(&b).await {
                if client
                    .refresh(Some(&[OFFSETS_TOPIC.to_string()]))
                    .await
                    .is_ok()
                {
                    let l = client
                        .metadata
                        .topics
                        .iter()
                        .find(|t| {
                            t.name
                                .as_ref()
                                .is_some_and(|n| n.0.as_str() == OFFSETS_TOPIC)
                        })
                        .and_then(|t| t.partitions.iter().find(|x| x.partition_index == p))
                        .map(|x| x.leader_id.0);
                    if let Some(l) = l.filter(|l| *l >= 0 && *l as usize != leader) {
                        return l as usize;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no new leader of {OFFSETS_TOPIC}-{p}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    eprintln!("node {leader} killed; node {new_leader} leads {OFFSETS_TOPIC}-{p} now");
    std::thread::sleep(Duration::from_secs(1));
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in &others {
        assert!(
            process_alive(&h.c.brokers[*i]),
            "node {i} died replaying junk on {OFFSETS_TOPIC}-{p}\n{}",
            h.excerpt(*i)
        );
    }
    let bootstrap_others = others
        .iter()
        .map(|i| format!("127.0.0.1:{}", h.c.kafka_ports[*i]))
        .collect::<Vec<_>>()
        .join(",");
    let after = h.rt.block_on(async {
        let mut client = connect_client(&bootstrap_others).await;
        tokio::time::timeout(Duration::from_secs(60), use_group(&mut client, victim)).await
    });
    eprintln!("{victim} after the junk was replayed: {after:?}");
    let replayed: Vec<String> =
        h.c.log_of(&h.c.brokers[new_leader])
            .lines()
            .filter(|l| l.contains(&format!("{OFFSETS_TOPIC}-{p}")))
            .map(str::to_string)
            .collect();
    eprintln!(
        "node {new_leader} on {OFFSETS_TOPIC}-{p}:\n{}",
        replayed.join("\n")
    );
    // A dying process may take a moment (it prints a backtrace).
    std::thread::sleep(Duration::from_secs(2));
    h.assert_nodes_alive(
        &others,
        &format!("using group {victim} after loading junk from {OFFSETS_TOPIC}-{p} ({after:?})"),
    );
    // The killed node comes back and replays the partition too.
    h.c.start_broker(leader);
    h.assert_alive("restarting the node that led the polluted offsets partition");
    let again = h.rt.block_on(async {
        let mut client = connect_client(&bootstrap).await;
        tokio::time::timeout(Duration::from_secs(60), use_group(&mut client, victim)).await
    });
    eprintln!("{victim} after the restart: {again:?}");
    h.every_node_answers_and_acked_records_survive("junk on __consumer_offsets");
    assert!(
        matches!(after, Ok(Ok(_))),
        "the group on the polluted partition is not served after the load: {after:?}"
    );
    assert!(
        matches!(again, Ok(Ok(_))),
        "the group on the polluted partition is not served after the restart: {again:?}"
    );
    eprintln!("junk on {OFFSETS_TOPIC}: {:?}", started.elapsed());
}

// ----- 5. thousands of idle connections --------------------------------------------

const IDLE_CONNECTIONS: usize = 2_000;

/// Opens `n` connections to `port`, each sending `first_bytes`; returns
/// them, how many failed, and how many took over a second to connect (a SYN
/// dropped because the accept queue was full is retried after 1 s).
fn open_silent(port: u16, n: usize, first_bytes: &[u8]) -> (Vec<std::net::TcpStream>, usize) {
    open_connections(port, n, first_bytes, Duration::from_secs(5))
}

fn open_connections(
    port: u16,
    n: usize,
    first_bytes: &[u8],
    timeout: Duration,
) -> (Vec<std::net::TcpStream>, usize) {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut open = Vec::with_capacity(n);
    let (mut failed, mut slow, mut slowest) = (0, 0, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        match std::net::TcpStream::connect_timeout(&addr, timeout) {
            Ok(mut s) => {
                if !first_bytes.is_empty() {
                    let _ = s.write_all(first_bytes);
                }
                open.push(s);
            }
            Err(_) => failed += 1,
        }
        let took = t.elapsed();
        slowest = slowest.max(took);
        if took > Duration::from_secs(1) {
            slow += 1;
        }
    }
    if n > 1 {
        eprintln!(
            "  port {port}: {} connections, {failed} failed, {slow} took over 1 s to connect (slowest {slowest:?})",
            open.len()
        );
    }
    (open, failed)
}

/// How many of `conns` the server has closed (end of stream or reset).
fn closed_count(conns: &[std::net::TcpStream]) -> usize {
    use std::io::Read;
    conns
        .iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut buf = [0u8; 256];
            let mut r = *s;
            loop {
                match r.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                    Err(_) => return true,
                }
            }
        })
        .count()
}

fn wait_all_closed(conns: &[std::net::TcpStream], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let closed = closed_count(conns);
        if closed == conns.len() || Instant::now() > deadline {
            return closed;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `connections.max.idle.ms` for the idle-connection tests: long enough
/// that thousands of connections are all open while a fresh client is served.
const LONG_IDLE_MS: u64 = 15_000;

#[test]
fn thousands_of_idle_connections_do_not_starve_new_clients() {
    let _serial = serial();
    let started = Instant::now();
    let mut h = Hostile::start_with_idle(LONG_IDLE_MS);
    let mut failures = Vec::new();
    let port = h.c.kafka_ports[0];

    // 2000 silent connections to node 0's Kafka port (this process may hold
    // 20000 descriptors on the machine the suite was written on; so may the
    // nodes, which inherit the limit).
    let opened_at = Instant::now();
    let (silent, failed) = open_silent(port, IDLE_CONNECTIONS, &[]);
    eprintln!(
        "{} silent connections to node 0 in {:?} ({failed} failed); node 0 memory (RSS, HWM) KiB: {:?}",
        silent.len(),
        opened_at.elapsed(),
        memory_kib(&h.c.brokers[0])
    );
    if failed > 0 {
        failures.push(format!(
            "{failed} of {IDLE_CONNECTIONS} connections to node 0 failed"
        ));
    }
    // A fresh client is served while they are open.
    h.assert_alive("2000 silent connections to node 0");
    h.produce_acked("during-idle", 1);
    h.verify_acked();
    let still_open = silent.len() - closed_count(&silent);
    eprintln!(
        "fresh client served {:?} after opening; {still_open} silent connections still open",
        opened_at.elapsed()
    );
    // The node drops them after connections.max.idle.ms.
    let closed = wait_all_closed(
        &silent,
        Duration::from_millis(LONG_IDLE_MS) + Duration::from_secs(15),
    );
    if closed != silent.len() {
        failures.push(format!(
            "{} of {} silent connections still open {:?} after opening (connections.max.idle.ms={LONG_IDLE_MS})",
            silent.len() - closed,
            silent.len(),
            opened_at.elapsed()
        ));
    }
    drop(silent);

    // 2000 connections, spread over the nodes, each declaring a 100 MB
    // request (the maximum) and sending 1 KB of it; and 300 silent
    // connections to each controller port.
    let opened_at = Instant::now();
    let mut declared = Vec::new();
    let mut first = 104_857_600i32.to_be_bytes().to_vec();
    first.extend_from_slice(&[0u8; 1024]);
    for i in 0..3 {
        let (c, failed) = open_silent(h.c.kafka_ports[i], IDLE_CONNECTIONS / 3, &first);
        if failed > 0 {
            failures.push(format!(
                "{failed} connections declaring 100 MB to node {i} failed"
            ));
        }
        declared.extend(c);
    }
    let mut internal = Vec::new();
    for i in 0..3 {
        let (c, failed) = open_silent(h.c.client_ports[i], 300, &[]);
        if failed > 0 {
            failures.push(format!(
                "{failed} silent connections to node {i}'s controller port failed"
            ));
        }
        internal.extend(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let memory: Vec<(u64, u64)> = h.c.brokers.iter().map(memory_kib).collect();
    eprintln!(
        "{} connections declaring 100 MB frames and {} silent controller-port connections in {:?}; memory (RSS, HWM) KiB per node: {memory:?}",
        declared.len(),
        internal.len(),
        opened_at.elapsed()
    );
    h.assert_alive("2000 connections each declaring a 100 MB request");
    h.produce_acked("during-declared", 1);
    let closed = wait_all_closed(
        &declared,
        Duration::from_millis(LONG_IDLE_MS) + Duration::from_secs(15),
    );
    if closed != declared.len() {
        failures.push(format!(
            "{} of {} connections declaring 100 MB still open {:?} after opening",
            declared.len() - closed,
            declared.len(),
            opened_at.elapsed()
        ));
    }
    drop(declared);
    drop(internal);
    h.every_node_answers_and_acked_records_survive("thousands of idle connections");
    eprintln!("idle connections: {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A node whose descriptor limit (lowered to 1024, a common default, with
/// prlimit) is below the connections it is sent cannot accept more while
/// they last; it must still serve the clients it has (without burning a
/// core), the cluster must keep serving, and the node must accept again once
/// the connections go.
#[test]
fn a_node_out_of_descriptors_keeps_serving_its_clients_and_recovers() {
    let _serial = serial();
    let started = Instant::now();
    let mut h = Hostile::start_with_idle(60_000);
    let pid = h.c.brokers[1].pid().expect("node 1 pid");
    let node1 = format!("127.0.0.1:{}", h.c.kafka_ports[1]);
    // A client connected before the flood.
    let mut before =
        h.rt.block_on(async { Connection::connect(&node1).await.expect("connect") });
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=1024:"])
        .status()
        .is_ok_and(|s| s.success());
    if !lowered {
        eprintln!("prlimit cannot lower node 1's limit here: nothing to test");
        return;
    }
    let fds = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    eprintln!(
        "node 1: RLIMIT_NOFILE lowered to 1024; {} descriptors open",
        fds(pid)
    );
    // Connect (short timeout) until the node stops accepting.
    let opened_at = Instant::now();
    let mut flood = Vec::new();
    let mut failed = 0;
    // Until the node holds (nearly) all the descriptors it may, then 200 more
    // that wait in its accept queue.
    while fds(pid) < 1_015 && flood.len() < 1_500 {
        let (c, f) = open_connections(h.c.kafka_ports[1], 100, &[], Duration::from_millis(300));
        flood.extend(c);
        failed += f;
    }
    let mut extra_failed = 0;
    for _ in 0..200 {
        if extra_failed == 3 {
            break;
        }
        let (c, f) = open_connections(h.c.kafka_ports[1], 1, &[], Duration::from_millis(300));
        flood.extend(c);
        extra_failed += f;
    }
    failed += extra_failed;
    std::thread::sleep(Duration::from_millis(500));
    let ticks_before = cpu_ticks(&h.c.brokers[1]);
    std::thread::sleep(Duration::from_secs(3));
    let ticks = cpu_ticks(&h.c.brokers[1]) - ticks_before;
    eprintln!(
        "{} connections to node 1 ({failed} timed out) in {:?}; node 1 holds {} descriptors and used {ticks} CPU ticks (1/100 s) in 3 s",
        flood.len(),
        opened_at.elapsed(),
        fds(pid)
    );
    // The client connected before is still served, promptly.
    let asked = Instant::now();
    let served = h.rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            before.call(&ApiVersionsRequest::default(), 3),
        )
        .await
    });
    let served = match served {
        Ok(Ok(r)) => Ok(r.error_code),
        Ok(Err(e)) => Err(text(e)),
        Err(_) => Err("no answer in 5 s".to_string()),
    };
    eprintln!(
        "the earlier client of node 1 during the flood: {served:?} in {:?}",
        asked.elapsed()
    );
    // It can still produce (acks=all) to the partitions node 1 leads.
    let (produced, acked) = h.rt.block_on(async {
        let mut log = Vec::new();
        let mut acked = Vec::new();
        let meta = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(tn(TOPIC))),
        ]));
        let led: Vec<i32> =
            match tokio::time::timeout(Duration::from_secs(5), before.call(&meta, 12)).await {
                Ok(Ok(m)) => m.topics[0]
                    .partitions
                    .iter()
                    .filter(|p| p.leader_id.0 == 1)
                    .map(|p| p.partition_index)
                    .collect(),
                other => {
                    log.push(format!(
                        "metadata: {:?}",
                        other.map(|r| r.map(|_| ()).map_err(text))
                    ));
                    Vec::new()
                }
            };
        for p in led {
            let key = Bytes::from(format!("flood-{p}"));
            let value = Bytes::from_static(b"produced while node 1 is out of descriptors");
            let batch =
                encode_batch(&[(Some(key.clone()), Some(value.clone()))], 1).expect("batch");
            let t = Instant::now();
            // The request's own timeout is 10 s: an answer must come by then.
            let r = tokio::time::timeout(
                Duration::from_secs(15),
                before.call(&produce_request(TOPIC, p, batch), 9),
            )
            .await;
            match r {
                Ok(Ok(r)) if r.responses[0].partition_responses[0].error_code == 0 => {
                    let offset = r.responses[0].partition_responses[0].base_offset;
                    acked.push(Acked {
                        partition: p,
                        offset,
                        key,
                        value,
                    });
                    log.push(format!("{TOPIC}-{p}: acknowledged in {:?}", t.elapsed()));
                }
                Ok(Ok(r)) => log.push(format!(
                    "{TOPIC}-{p}: error {}",
                    r.responses[0].partition_responses[0].error_code
                )),
                Ok(Err(e)) => log.push(format!("{TOPIC}-{p}: {}", text(e))),
                Err(_) => log.push(format!("{TOPIC}-{p}: no answer in 15 s")),
            }
        }
        (log, acked)
    });
    eprintln!("produce through the earlier client: {produced:?}");
    let all_acked = produced.iter().all(|l| l.contains("acknowledged"));
    h.acked.extend(acked);
    for i in 0..3 {
        let log = h.c.log_of(&h.c.brokers[i]);
        let complaints: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        eprintln!(
            "node {i}'s last warnings and errors:\n{}",
            complaints[complaints.len().saturating_sub(8)..].join("\n")
        );
    }
    h.assert_nodes_alive(
        &[0, 2],
        "a flood of connections to node 1, limited to 1024 descriptors",
    );
    assert!(
        process_alive(&h.c.brokers[1]),
        "node 1 died\n{}",
        h.excerpt(1)
    );
    drop(flood);
    h.assert_alive("the connections to node 1 closed again");
    h.produce_acked("after-descriptor-flood", 1);
    h.every_node_answers_and_acked_records_survive("a node out of descriptors");
    eprintln!("descriptor flood: {:?}", started.elapsed());
    assert_eq!(
        served,
        Ok(0),
        "node 1's existing client is not served while it is out of descriptors"
    );
    assert!(
        all_acked,
        "produce (acks=all) through node 1's existing client while it is out of descriptors: {produced:?}"
    );
    assert!(
        ticks < 150,
        "node 1 burnt {ticks} CPU ticks in 3 s (300 = one core) while it could not accept"
    );
}
