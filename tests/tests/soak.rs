//! The long run (issue 18's soak) on real processes: three combined nodes
//! with small segments, short retention and metadata snapshots every few
//! seconds carry, at a steady rate, a deleting topic (`soak-delete`), a
//! compacted one (`soak-compact`, 50 keys) and the nemesis workload (an
//! acks=all producer and a committing group reader, so `__consumer_offsets`
//! is written and cleaned too), while one node after another is killed
//! with -9 and started again. Every sample prints the disk the bounded
//! data takes on each node (everything but the workload topic, which keeps
//! every record for the history checker), the metadata log's bytes and the
//! last restart's time to serving. At the end: the history checker finds
//! nothing in the workload topic; the compacted topic holds, for every key,
//! its latest acknowledged value or a later one; disk use in the last third
//! of the run is no larger than in the middle third (with a slack of one
//! segment per partition), the metadata log stays below its bound, and
//! every restart served within 30 s.
//!
//! `RUNNEL_SOAK_SECONDS` sets the length (CI: 60); figures of an hour-long
//! run are in specs/storage.md.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use runnel::client::{encode_batch, Client};
use runnel_tests::history::{check, CheckOptions};
use runnel_tests::workload::*;
use runnel_tests::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DELETE_TOPIC: &str = "soak-delete";
const COMPACT_TOPIC: &str = "soak-compact";
const KEYS: u64 = 50;
const SEGMENT_BYTES: u64 = 65_536;
const METADATA_SNAPSHOT_BYTES: u64 = 16_384;

fn seconds() -> u64 {
    std::env::var("RUNNEL_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Bytes of the files under `dir`, but for the workload topic's partitions.
fn bounded_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            if !name.starts_with(&format!("{TOPIC}-")) {
                total += bounded_bytes(&e.path());
            }
        } else {
            total += meta.len();
        }
    }
    total
}

/// Bytes of a node's metadata log files (the snapshot aside).
fn metadata_log_bytes(node_dir: &Path) -> u64 {
    std::fs::read_dir(node_dir.join("__cluster_metadata"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("metadata-2") && n.ends_with(".log")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Sends `records` (key, value) to `topic`'s partition `p`, acks=all;
/// whether they were acknowledged.
/// The client's metadata holds the topics of its last refresh: both, always.
async fn send_keyed(
    client: &mut Client,
    topic: &str,
    p: u32,
    records: &[(String, String)],
) -> bool {
    let both = [DELETE_TOPIC.to_string(), COMPACT_TOPIC.to_string()];
    let Some(leader) = client.leader(topic, p as i32) else {
        let _ = tokio::time::timeout(CALL_TIMEOUT, client.refresh(Some(&both))).await;
        return false;
    };
    let records: Vec<_> = records
        .iter()
        .map(|(k, v)| (Some(Bytes::from(k.clone())), Some(Bytes::from(v.clone()))))
        .collect();
    let batch = encode_batch(&records, 0).expect("batch");
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(3_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(p as i32)
                .with_records(Some(batch))])]);
    let acked = matches!(
        tokio::time::timeout(CALL_TIMEOUT, client.call_at(&leader, &request, 7)).await,
        Ok(Ok(r)) if r.responses[0].partition_responses[0].error_code == 0
    );
    if !acked {
        let _ = tokio::time::timeout(CALL_TIMEOUT, client.refresh(Some(&both))).await;
    }
    acked
}

/// Writes both soak topics every 100 ms until stopped: 20 records of
/// 200 bytes to a `soak-delete` partition, and one value for each of 5 keys
/// of `soak-compact` (values count up per key). Notes each key's latest
/// acknowledged value, and the bytes of values acknowledged.
async fn keyed_load(
    bootstrap: String,
    acked: Arc<Mutex<BTreeMap<String, u64>>>,
    acked_bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut client = connect(&bootstrap).await;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let filler = "x".repeat(200);
        let records: Vec<_> = (0..20)
            .map(|i| (format!("d{i}"), format!("{round}-{filler}")))
            .collect();
        if send_keyed(&mut client, DELETE_TOPIC, (round % 3) as u32, &records).await {
            let bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
            acked_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        let keyed: Vec<_> = (0..5)
            .map(|i| {
                let key = format!("k{}", (round * 5 + i) % KEYS);
                (key, format!("{round}"))
            })
            .collect();
        if send_keyed(&mut client, COMPACT_TOPIC, 0, &keyed).await {
            let mut a = acked.lock().expect("acked");
            for (k, _) in &keyed {
                a.insert(k.clone(), round);
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create(c: &SeedCluster, topic: &str, partitions: &str, configs: &[&str]) {
    wait_for(&format!("{topic} created"), Duration::from_secs(30), || {
        let bootstrap = c.bootstrap(&[0, 1, 2]);
        let mut args = vec![
            "topics",
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            partitions,
            "--replication-factor",
            "3",
        ];
        for config in configs {
            args.extend_from_slice(&["--config", config]);
        }
        let out = stdout(&tool(&args, None, Duration::from_secs(30)));
        (out.contains("Created topic") || out.contains("already exists")).then_some(())
    });
}

/// Every partition of every topic led and fully in sync, as node `via` sees it.
fn all_in_sync(c: &SeedCluster, via: usize) -> bool {
    [TOPIC, DELETE_TOPIC, COMPACT_TOPIC].iter().all(|t| {
        c.describe(via, t).is_some_and(|d| {
            !d.is_empty() && d.values().all(|p| p.leader.is_some() && p.isr.len() == 3)
        })
    })
}

struct Sample {
    at_s: u64,
    bounded: [u64; 3],
    metadata_log: [u64; 3],
}

#[test]
fn a_long_run_keeps_disk_and_the_metadata_log_bounded_and_loses_nothing() {
    let total = Duration::from_secs(seconds());
    let kill_every = Duration::from_secs((seconds() / 4).clamp(15, 60));
    let segment = format!("log.segment.bytes={SEGMENT_BYTES}");
    let snapshot =
        format!("metadata.log.max.record.bytes.between.snapshots={METADATA_SNAPSHOT_BYTES}");
    let offsets_segment = format!("offsets.topic.segment.bytes={SEGMENT_BYTES}");
    let mut c = SeedCluster::combined(&[
        &segment,
        "log.retention.ms=10000",
        "log.retention.check.interval.ms=1000",
        "log.cleaner.backoff.ms=1000",
        "log.cleaner.min.cleanable.ratio=0.1",
        &offsets_segment,
        "offsets.topic.num.partitions=3",
        &snapshot,
        "metadata.log.max.snapshot.interval.ms=5000",
    ]);
    c.start_all();
    create(&c, TOPIC, "3", &["retention.ms=-1"]);
    create(&c, DELETE_TOPIC, "3", &[]);
    create(
        &c,
        COMPACT_TOPIC,
        "1",
        &["cleanup.policy=compact", "min.cleanable.dirty.ratio=0.1"],
    );
    wait_for("every partition in sync", Duration::from_secs(60), || {
        all_in_sync(&c, 0).then_some(())
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bootstrap = c.bootstrap(&[0, 1, 2]);
    let rec = Recorder::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicU64::new(1));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let acked_bytes = Arc::new(AtomicU64::new(0));
    let tasks = [
        rt.spawn(producer(
            bootstrap.clone(),
            3,
            -1,
            100,
            rec.clone(),
            stop.clone(),
        )),
        rt.spawn(reader(
            bootstrap.clone(),
            rec.clone(),
            stop.clone(),
            sessions.clone(),
        )),
        rt.spawn(keyed_load(
            bootstrap.clone(),
            acked.clone(),
            acked_bytes.clone(),
            stop.clone(),
        )),
    ];
    let root = c.dir.path().to_path_buf();
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut restarts_ms: Vec<u64> = Vec::new();
    let mut next_kill = started + kill_every;
    let mut victim = 0usize;
    // Bounded by the run's length: every step waits (a kill's restart, or
    // a sampling period).
    while started.elapsed() < total {
        if Instant::now() >= next_kill {
            c.brokers[victim].kill9();
            c.start_broker(victim);
            let t = Instant::now();
            wait_for(
                "the restarted node serving",
                Duration::from_secs(60),
                || all_in_sync(&c, victim).then_some(()),
            );
            restarts_ms.push(t.elapsed().as_millis() as u64);
            victim = (victim + 1) % 3;
            next_kill = Instant::now() + kill_every;
        }
        let node = |b: usize| root.join(format!("node{b}"));
        let sample = Sample {
            at_s: started.elapsed().as_secs(),
            bounded: [0, 1, 2].map(|b| bounded_bytes(&node(b))),
            metadata_log: [0, 1, 2].map(|b| metadata_log_bytes(&node(b))),
        };
        eprintln!(
            "[soak] t={:>4}s written {} bytes; bounded data {:?} bytes, metadata log {:?} bytes, \
             restarts so far (ms) {:?}",
            sample.at_s,
            acked_bytes.load(Ordering::Relaxed),
            sample.bounded,
            sample.metadata_log,
            restarts_ms
        );
        samples.push(sample);
        std::thread::sleep(Duration::from_secs(5));
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    });
    wait_for(
        "every partition in sync at the end",
        Duration::from_secs(90),
        || all_in_sync(&c, 0).then_some(()),
    );
    let session = sessions.fetch_add(1, Ordering::Relaxed);
    rt.block_on(drain(&bootstrap, 3, &rec, session));
    let report = check(
        &rec.history(),
        CheckOptions {
            idempotent: true,
            drained: true,
        },
    );
    eprintln!("[soak] history: {}", report.summary());
    assert!(report.is_valid(), "{}", report.summary());
    // The compacted topic: each key's latest acknowledged value, or later.
    let out = run(
        std::process::Command::new("kcat").args([
            "-C",
            "-b",
            &bootstrap,
            "-t",
            COMPACT_TOPIC,
            "-e",
            "-q",
            "-f",
            "%k %s\n",
        ]),
        None,
        Duration::from_secs(60),
    );
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if let Ok(v) = v.parse() {
                latest.insert(k.to_string(), v);
            }
        }
    }
    for (k, v) in acked.lock().expect("acked").iter() {
        let read = latest.get(k).copied();
        assert!(
            read.is_some_and(|r| r >= *v),
            "key {k}: acknowledged {v}, read {read:?}"
        );
    }
    // Flat: the last third no larger than the middle third, give or take a
    // segment per partition (7 partitions with data, 3 offsets partitions).
    let third = samples.len() / 3;
    let slack = 10 * SEGMENT_BYTES;
    for b in 0..3 {
        let max = |s: &[Sample]| s.iter().map(|s| s.bounded[b]).max().unwrap_or(0);
        let (middle, last) = (max(&samples[third..2 * third]), max(&samples[2 * third..]));
        assert!(
            last <= middle + slack,
            "node {b}: bounded data grew from {middle} to {last} bytes"
        );
    }
    // Data flowed: more was written than any node holds of it.
    let written = acked_bytes.load(Ordering::Relaxed);
    let held = samples.iter().flat_map(|s| s.bounded).max().unwrap_or(0);
    assert!(
        written > 2 * held,
        "{written} bytes written, up to {held} held: retention did not bound it"
    );
    let metadata_max = samples
        .iter()
        .flat_map(|s| s.metadata_log)
        .max()
        .unwrap_or(0);
    assert!(
        metadata_max < 4 * METADATA_SNAPSHOT_BYTES,
        "the metadata log reached {metadata_max} bytes"
    );
    assert!(
        restarts_ms.iter().all(|&ms| ms < 30_000),
        "restarts to serving: {restarts_ms:?} ms"
    );
}
