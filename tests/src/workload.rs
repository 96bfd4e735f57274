//! The fault-injection workload, shared by the real-process nemesis
//! (`tests/tests/nemesis.rs`) and the deterministic simulation (`sim/`):
//! a producer (acks=all, one record per request, every value sent once and
//! never retried), a plain reader and a group reader, and the final drain,
//! all recording into a [`Recorder`] for the history checker. Built on
//! Runnel's own Kafka client, so under the simulation (the node's `sim`
//! feature) the same code talks over turmoil's network.

use crate::history::{History, Op, SendOutcome};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel::cli::group_member::{GroupMember, MemberStatus};
use runnel::client::{decode_records, encode_batch, Client};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The workload's topic.
pub const TOPIC: &str = "nemesis";

pub const GROUP: &str = "nemesis-readers";
/// Every client call is bounded.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
pub struct Recorder {
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Recorder {
    pub fn push(&self, op: Op) {
        self.ops.lock().expect("recorder").push(op);
    }
    pub fn history(&self) -> History {
        History {
            ops: self.ops.lock().expect("recorder").clone(),
        }
    }
}

pub fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

pub async fn connect(bootstrap: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout(CALL_TIMEOUT, Client::connect(bootstrap)).await {
            Ok(Ok(c)) => return c,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => panic!("cannot connect to {bootstrap}"),
        }
    }
}

/// One record, acks=all, to one partition; never retried (so a value is in
/// the log at most once unless the cluster duplicates it).
/// `acks` -1 (all) or 1: an acks=1 acknowledgement promises nothing the
/// checker holds the cluster to, so it is recorded as `Unknown`.
pub async fn send_one(client: &mut Client, p: u32, value: &str, acks: i16) -> SendOutcome {
    let Some(leader) = client.leader(TOPIC, p as i32) else {
        let _ = tokio::time::timeout(CALL_TIMEOUT, client.refresh(Some(&[TOPIC.into()]))).await;
        return SendOutcome::Failed;
    };
    let batch = encode_batch(&[(None, Some(Bytes::from(value.to_string())))], 0).expect("batch");
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(3_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(p as i32)
                .with_records(Some(batch))])]);
    let outcome =
        match tokio::time::timeout(CALL_TIMEOUT, client.call_at(&leader, &request, 7)).await {
            Ok(Ok(r)) => {
                let pr = &r.responses[0].partition_responses[0];
                match pr.error_code {
                    0 if acks == -1 => SendOutcome::Ok {
                        partition: p,
                        offset: pr.base_offset as u64,
                    },
                    0 => SendOutcome::Unknown,
                    // Refused before any append: nothing was written.
                    3 | 6 | 19 => SendOutcome::Failed,
                    _ => SendOutcome::Unknown,
                }
            }
            _ => SendOutcome::Unknown,
        };
    if !matches!(outcome, SendOutcome::Ok { .. }) {
        let _ = tokio::time::timeout(CALL_TIMEOUT, client.refresh(Some(&[TOPIC.into()]))).await;
    }
    outcome
}

/// Sends `v0, v1, …` round-robin over the partitions until stopped, with
/// `acks` (-1 or 1), waiting `pause_ms` between sends (0: as fast as
/// acknowledgements come).
pub async fn producer(
    bootstrap: String,
    partitions: u32,
    acks: i16,
    pause_ms: u64,
    rec: Recorder,
    stop: Arc<AtomicBool>,
) {
    let mut client = connect(&bootstrap).await;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let value = format!("v{i}");
        let outcome = send_one(&mut client, (i % partitions as u64) as u32, &value, acks).await;
        rec.push(Op::Send { value, outcome });
        i += 1;
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }
}

/// One fetch per partition leader; returns records read per partition.
pub async fn fetch(
    client: &mut Client,
    positions: &BTreeMap<u32, i64>,
) -> Option<BTreeMap<u32, Vec<(u64, String)>>> {
    let mut by_leader: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for &p in positions.keys() {
        by_leader
            .entry(client.leader(TOPIC, p as i32)?)
            .or_default()
            .push(p);
    }
    let mut out = BTreeMap::new();
    for (leader, ps) in by_leader {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(TOPIC))
                .with_partitions(
                    ps.iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p as i32)
                                .with_fetch_offset(positions[p])
                                .with_partition_max_bytes(256 << 10)
                        })
                        .collect(),
                )]);
        let r = tokio::time::timeout(CALL_TIMEOUT, client.call_at(&leader, &request, 11))
            .await
            .ok()?
            .ok()?;
        for t in r.responses {
            for pd in t.partitions {
                let p = pd.partition_index as u32;
                if pd.error_code != 0 {
                    return None;
                }
                let records = decode_records(pd.records.unwrap_or_default()).ok()?;
                let got: Vec<(u64, String)> = records
                    .into_iter()
                    .filter(|r| r.offset >= positions[&p])
                    .map(|r| {
                        let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                        (r.offset as u64, v.unwrap_or_default())
                    })
                    .collect();
                out.insert(p, got);
            }
        }
    }
    Some(out)
}

/// Records one fetch's records as a poll of `session` and moves the positions past them.
pub fn record_read(
    read: BTreeMap<u32, Vec<(u64, String)>>,
    positions: &mut BTreeMap<u32, i64>,
    rec: &Recorder,
    session: u64,
) {
    let mut records = Vec::new();
    for (p, rs) in read {
        for (o, v) in rs {
            positions.insert(p, o as i64 + 1);
            records.push((p, o, v));
        }
    }
    if !records.is_empty() {
        rec.push(Op::Poll { session, records });
    }
}

/// Reads every partition from offset 0 without a group (one session): it
/// needs no coordinator, so it keeps reading whichever broker is paused.
pub async fn plain_reader(
    bootstrap: String,
    partitions: u32,
    rec: Recorder,
    stop: Arc<AtomicBool>,
    session: u64,
) {
    let mut client = connect(&bootstrap).await;
    let mut positions: BTreeMap<u32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    while !stop.load(Ordering::Relaxed) {
        match fetch(&mut client, &positions).await {
            Some(read) => record_read(read, &mut positions, &rec, session),
            None => {
                let _ =
                    tokio::time::timeout(CALL_TIMEOUT, client.refresh(Some(&[TOPIC.into()]))).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A group member: reads its partitions from the committed offsets, commits
/// every second, reads the committed offsets back; a rebalance or error
/// starts a new session.
pub async fn reader(
    bootstrap: String,
    rec: Recorder,
    stop: Arc<AtomicBool>,
    sessions: Arc<AtomicU64>,
) {
    let mut client = connect(&bootstrap).await;
    let mut member = GroupMember::new(GROUP, vec![TOPIC.to_string()]);
    'session: while !stop.load(Ordering::Relaxed) {
        let session = sessions.fetch_add(1, Ordering::Relaxed);
        if tokio::time::timeout(Duration::from_secs(30), member.join(&mut client))
            .await
            .is_err()
        {
            continue;
        }
        let Ok(Ok(committed)) =
            tokio::time::timeout(CALL_TIMEOUT, member.committed(&mut client)).await
        else {
            continue;
        };
        let mut positions: BTreeMap<u32, i64> = BTreeMap::new();
        for &p in member.assignment.get(TOPIC).into_iter().flatten() {
            let o = committed
                .get(&(TOPIC.to_string(), p))
                .copied()
                .unwrap_or(-1)
                .max(0);
            if o > 0 {
                rec.push(Op::CommittedRead {
                    group: GROUP.into(),
                    partition: p as u32,
                    offset: o as u64,
                });
            }
            positions.insert(p as u32, o);
        }
        let mut last_commit = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match fetch(&mut client, &positions).await {
                Some(read) => record_read(read, &mut positions, &rec, session),
                None => {
                    let _ =
                        tokio::time::timeout(CALL_TIMEOUT, client.refresh(Some(&[TOPIC.into()])))
                            .await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if last_commit.elapsed() >= Duration::from_secs(1) {
                last_commit = Instant::now();
                let keyed: BTreeMap<(String, i32), i64> = positions
                    .iter()
                    .map(|(p, o)| ((TOPIC.to_string(), *p as i32), *o))
                    .collect();
                match tokio::time::timeout(CALL_TIMEOUT, member.commit(&mut client, &keyed)).await {
                    Ok(Ok(MemberStatus::Ok)) => {
                        for (p, o) in &positions {
                            rec.push(Op::Commit {
                                group: GROUP.into(),
                                partition: *p,
                                offset: *o as u64,
                            });
                        }
                    }
                    _ => continue 'session,
                }
                match tokio::time::timeout(CALL_TIMEOUT, member.heartbeat(&mut client)).await {
                    Ok(Ok(MemberStatus::Ok)) => {}
                    _ => continue 'session,
                }
                if let Ok(Ok(c)) =
                    tokio::time::timeout(CALL_TIMEOUT, member.committed(&mut client)).await
                {
                    for ((_, p), o) in c {
                        if o >= 0 {
                            rec.push(Op::CommittedRead {
                                group: GROUP.into(),
                                partition: p as u32,
                                offset: o as u64,
                            });
                        }
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(CALL_TIMEOUT, member.leave(&mut client)).await;
}

/// After healing: every partition read from 0 to its high watermark.
pub async fn drain(bootstrap: &str, partitions: u32, rec: &Recorder, session: u64) {
    let mut client = connect(bootstrap).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    for p in 0..partitions {
        let mut pos = 0i64;
        let end = loop {
            let _ = client.refresh(Some(&[TOPIC.into()])).await;
            if let Ok(Ok(o)) =
                tokio::time::timeout(CALL_TIMEOUT, client.list_offset(TOPIC, p as i32, -1)).await
            {
                break o;
            }
            assert!(
                Instant::now() < deadline,
                "no leader for partition {p} after healing"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        while pos < end {
            assert!(
                Instant::now() < deadline,
                "drain of partition {p} stuck at {pos}/{end}"
            );
            let positions = BTreeMap::from([(p, pos)]);
            match fetch(&mut client, &positions).await {
                Some(read) => {
                    let records: Vec<_> = read
                        .into_values()
                        .flatten()
                        .map(|(o, v)| (p, o, v))
                        .collect();
                    if let Some((_, o, _)) = records.last() {
                        pos = *o as i64 + 1;
                    }
                    if !records.is_empty() {
                        rec.push(Op::Poll { session, records });
                    }
                }
                None => {
                    let _ = client.refresh(Some(&[TOPIC.into()])).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The last (epoch, leading) each coordinator answered, shared with whoever
/// drives the faults (the simulation aims some at the current leader).
pub type QuorumView = Arc<Mutex<BTreeMap<u32, (u32, bool)>>>;

/// Polls every coordinator's status (what `runnel quorum status` asks) every
/// `interval` until stopped, recording each change of a node's (epoch,
/// leading) as [`Op::Quorum`] for the election-safety check. One task polls
/// the nodes in turn, so one node's answers are recorded in order; each
/// node keeps one connection (reopened after a failure), so polling does
/// not churn through ports.
pub async fn quorum_observer(
    coordinators: Vec<String>,
    cluster_id: String,
    interval: Duration,
    rec: Recorder,
    view: QuorumView,
    stop: Arc<AtomicBool>,
) {
    use runnel::cli::quorum::{ask_status_on, tool_handshake};
    use runnel::runtime::transport::ToolLink;
    const ASK_TIMEOUT: Duration = Duration::from_millis(500);
    let mut links: BTreeMap<usize, ToolLink> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for (i, address) in coordinators.iter().enumerate() {
            let asked = async {
                let mut link = match links.remove(&i) {
                    Some(link) => link,
                    None => ToolLink::connect(address, tool_handshake(&cluster_id)).await?,
                };
                let status = ask_status_on(&mut link).await?;
                links.insert(i, link);
                Ok::<_, String>(status)
            };
            let Ok(Ok(status)) = tokio::time::timeout(ASK_TIMEOUT, asked).await else {
                continue;
            };
            let now = (status.epoch, status.mode == "leader");
            let previous = view.lock().expect("view").insert(status.node_id, now);
            if previous != Some(now) {
                rec.push(Op::Quorum {
                    node: status.node_id,
                    epoch: now.0,
                    leader: now.1,
                });
            }
        }
        tokio::time::sleep(interval).await;
    }
}
