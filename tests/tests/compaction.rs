//! Log compaction on real processes: a `cleanup.policy=compact` topic's
//! closed segments are cleaned on every replica; a consumer from the
//! beginning (kcat, librdkafka) reads each key's latest value, every record
//! at the offset it was written at, and a deleted key's tombstone.

use runnel_tests::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TOPIC: &str = "compacted";
const KEYS: usize = 20;
const RECORDS: usize = 400;

/// Bytes of a partition's `.log` files in one node's data dir.
fn log_bytes(node_dir: &Path) -> u64 {
    partition_log_bytes(node_dir, TOPIC, 0)
}

fn value(i: usize) -> String {
    format!("v{i}-{}", "x".repeat(200))
}

#[test]
fn a_compacted_topic_keeps_each_keys_latest_value_at_its_offset_on_every_replica() {
    let mut c = SeedCluster::combined(&["log.segment.bytes=4096", "log.cleaner.backoff.ms=200"]);
    c.start_all();
    wait_for("topic creation", Duration::from_secs(30), || {
        let out = tool(
            &[
                "topics",
                "--bootstrap-server",
                &c.bootstrap(&[0, 1, 2]),
                "--create",
                "--topic",
                TOPIC,
                "--partitions",
                "1",
                "--replication-factor",
                "3",
                "--config",
                "cleanup.policy=compact",
                "--config",
                "min.cleanable.dirty.ratio=0.01",
            ],
            None,
            Duration::from_secs(30),
        );
        stdout(&out).contains("Created topic").then_some(())
    });
    wait_for("a full ISR", Duration::from_secs(30), || {
        c.describe(0, TOPIC)
            .filter(|d| d.get(&0).is_some_and(|p| p.isr.len() == 3))
    });
    // Record i has key k(i mod KEYS); the last record of k0 deletes it.
    let mut lines = String::new();
    let mut latest: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
    for i in 0..RECORDS {
        let key = format!("k{}", i % KEYS);
        let v = (i != RECORDS - KEYS).then(|| value(i));
        lines.push_str(&format!("{key}:{}\n", v.as_deref().unwrap_or("")));
        latest.insert(key, (i, v));
    }
    let described = wait_for("a leader", Duration::from_secs(30), || {
        c.describe(0, TOPIC).filter(|d| d[&0].leader.is_some())
    });
    let away = (described[&0].leader.expect("led") as usize + 1) % 3;
    // The first half reaches every replica; then a follower is away while
    // the rest is written and cleaned, and must catch up from cleaned
    // segments (batches emptied or thinned) when it comes back.
    let lines: Vec<&str> = lines.lines().collect();
    let (first, second) = lines.split_at(RECORDS / 2);
    produce(&c, &first.join("\n"));
    wait_for("the first half everywhere", Duration::from_secs(30), || {
        c.describe(0, TOPIC).filter(|d| d[&0].isr.len() == 3)
    });
    c.brokers[away].kill9();
    wait_for(
        "the ISR without the killed node",
        Duration::from_secs(30),
        || {
            c.describe((away + 1) % 3, TOPIC)
                .filter(|d| d[&0].isr.len() == 2)
        },
    );
    produce(&c, &second.join("\n"));
    let produced_bytes = (RECORDS * 210) as u64;
    let root = c.dir.path().to_path_buf();
    let cleaned = |b: usize| {
        wait_for(
            &format!("node {b} cleans its replica"),
            Duration::from_secs(60),
            || {
                let bytes = log_bytes(&root.join(format!("node{b}")));
                (bytes > 0 && bytes < produced_bytes / 2).then_some(())
            },
        )
    };
    for b in (0..3).filter(|&b| b != away) {
        cleaned(b);
    }
    c.start_broker(away);
    wait_for(
        "the returning follower in the ISR",
        Duration::from_secs(60),
        || c.describe(away, TOPIC).filter(|d| d[&0].isr.len() == 3),
    );
    cleaned(away);
    let (read, count) = read_all(&c);
    // Values were checked against their offsets as they were read.
    assert_eq!(
        summary(&read),
        summary(&latest),
        "each key's latest value (k0's tombstone)"
    );
    assert!(
        count < RECORDS / 2,
        "{count} of {RECORDS} records read: compaction removed records"
    );
    // Every node restarts from its cleaned, merged segments (kill -9:
    // recovery reads them) and serves the same.
    for b in 0..3 {
        c.brokers[b].kill9();
        c.start_broker(b);
    }
    wait_for("a full ISR again", Duration::from_secs(60), || {
        c.describe(0, TOPIC).filter(|d| {
            d.get(&0)
                .is_some_and(|p| p.isr.len() == 3 && p.leader.is_some())
        })
    });
    let again = wait_for("a read after the restart", Duration::from_secs(60), || {
        let (again, _) = read_all(&c);
        (!again.is_empty()).then_some(again)
    });
    assert_eq!(summary(&again), summary(&latest));
}

type Latest = BTreeMap<String, (usize, Option<String>)>;

fn summary(m: &Latest) -> Vec<(String, usize, bool)> {
    m.iter()
        .map(|(k, (o, v))| (k.clone(), *o, v.is_some()))
        .collect()
}

/// Reads the partition from the beginning: each key's last record, and how
/// many records were read, checking each record was written at its offset.
fn read_all(c: &SeedCluster) -> (Latest, usize) {
    let out = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(&[0, 1, 2]),
            "-C",
            "-t",
            TOPIC,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-Z",
            "-f",
            "%o %k %S %s\\n",
        ]),
        None,
        Duration::from_secs(60),
    );
    let mut read: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
    let mut count = 0;
    let mut previous = None;
    for line in stdout(&out).lines() {
        let mut parts = line.splitn(4, ' ');
        let offset: usize = parts.next().unwrap().parse().unwrap();
        let key = parts.next().unwrap().to_string();
        let size: i64 = parts.next().unwrap().parse().unwrap();
        let v = parts.next().unwrap_or("");
        assert!(previous < Some(offset), "offsets only grow: {line}");
        previous = Some(offset);
        count += 1;
        // Every record is read at the offset it was written at.
        let v = (size >= 0).then(|| v.to_string());
        let expected = (offset != RECORDS - KEYS).then(|| value(offset));
        assert_eq!(v, expected, "offset {offset}");
        assert_eq!(key, format!("k{}", offset % KEYS));
        read.insert(key, (offset, v));
    }
    (read, count)
}

fn produce(c: &SeedCluster, lines: &str) {
    let out = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(&[0, 1, 2]),
            "-t",
            TOPIC,
            "-p",
            "0",
            "-P",
            "-K:",
            "-Z",
            "-X",
            "acks=all",
            "-X",
            "linger.ms=0",
            // Small batches: segments roll between them, and a pass
            // removes whole batches' records.
            "-X",
            "batch.num.messages=5",
        ]),
        Some(format!("{lines}\n").as_bytes()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
