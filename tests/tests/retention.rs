//! Retention on real processes: a topic's `retention.bytes` deletes old
//! segments on every replica (consumers from the beginning start past them),
//! and a follower that was down while the leader deleted what it lacked
//! restarts its log at the leader's start and rejoins the ISR.

use runnel_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TOPIC: &str = "r";

/// The base offsets of a partition's segments in one node's data dir.
fn segment_bases(node_dir: &Path) -> Vec<u64> {
    let dir = node_dir.join(format!("{TOPIC}-0"));
    let mut bases: Vec<u64> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".log")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    bases.sort_unstable();
    bases
}

fn produce(c: &SeedCluster, count: usize) {
    let value = "x".repeat(200);
    let lines: String = (0..count).map(|i| format!("{i}-{value}\n")).collect();
    let out = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(&[0, 1, 2]),
            "-t",
            TOPIC,
            "-p",
            "0",
            "-P",
            "-X",
            "acks=all",
            "-X",
            "linger.ms=0",
            // Small batches: a segment rolls only between batches.
            "-X",
            "batch.num.messages=5",
        ]),
        Some(lines.as_bytes()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The offset of the first record a consumer from the beginning reads.
fn first_offset(c: &SeedCluster) -> Option<u64> {
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
            "-c",
            "1",
            "-e",
            "-f",
            "%o\\n",
        ]),
        None,
        Duration::from_secs(20),
    );
    stdout(&out).lines().next()?.trim().parse().ok()
}

#[test]
fn retention_deletes_old_segments_and_a_returning_follower_restarts_at_the_leaders_start() {
    let mut c = SeedCluster::combined(&[
        "log.segment.bytes=4096",
        "log.retention.check.interval.ms=200",
        "replica.lag.time.max.ms=2000",
    ]);
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
                "retention.bytes=8192",
            ],
            None,
            Duration::from_secs(30),
        );
        stdout(&out).contains("Created topic").then_some(())
    });
    let described = wait_for("a full ISR", Duration::from_secs(30), || {
        c.describe(0, TOPIC).filter(|d| {
            d.get(&0)
                .is_some_and(|p| p.isr.len() == 3 && p.leader.is_some())
        })
    });
    let leader = described[&0].leader.expect("led") as usize;
    let away = (leader + 1) % 3;
    // A follower goes away; the others take ~40 KB, ten segments of 4 KiB
    // where the topic keeps 8 KiB.
    c.brokers[away].kill9();
    wait_for(
        "the ISR without the killed node",
        Duration::from_secs(30),
        || {
            c.describe(leader, TOPIC)
                .filter(|d| d[&0].isr.len() == 2)
                .map(|_| ())
        },
    );
    produce(&c, 200);
    let root = c.dir.path().to_path_buf();
    let data = |b: usize| root.join(format!("node{b}"));
    let start = wait_for("retention on the leader", Duration::from_secs(30), || {
        let bases = segment_bases(&data(leader));
        (bases.first().copied().unwrap_or(0) > 0).then(|| bases[0])
    });
    let away_end = segment_bases(&data(away));
    assert_eq!(
        away_end,
        vec![0],
        "the away follower holds only the first segment"
    );
    // Consumers from the beginning start at the new log start.
    let first = wait_for(
        "a consumer from the beginning",
        Duration::from_secs(30),
        || first_offset(&c),
    );
    assert!(
        first >= start,
        "read from {first}, below the log start {start}"
    );
    // The follower comes back: its log ends (a few records in) far below
    // the leader's start, so it restarts its log there and rejoins.
    c.start_broker(away);
    wait_for(
        "the returning follower in the ISR",
        Duration::from_secs(60),
        || {
            c.describe(leader, TOPIC)
                .filter(|d| d[&0].isr.len() == 3)
                .map(|_| ())
        },
    );
    let bases = segment_bases(&data(away));
    assert!(
        bases.first().is_some_and(|&b| b > 0),
        "the follower's log restarted past offset 0: {bases:?}"
    );
    // Retention keeps running there too, and nothing below the HW is gone
    // that a consumer could still read: everything from the start is read.
    produce(&c, 100);
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
            "-f",
            "%o\\n",
        ]),
        None,
        Duration::from_secs(30),
    );
    let offsets: Vec<u64> = stdout(&out)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!offsets.is_empty(), "nothing read");
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap in what is kept"
    );
    assert_eq!(
        offsets.last().copied(),
        Some(299),
        "the newest record is kept"
    );
}

/// A retention set after creation (`runnel configs --alter`, Kafka's
/// IncrementalAlterConfigs) is applied at the next check: the topic keeps
/// everything until then, and `configs --describe` shows the change.
#[test]
fn retention_altered_after_creation_applies() {
    let mut c = SeedCluster::combined(&[
        "log.segment.bytes=4096",
        "log.retention.check.interval.ms=200",
    ]);
    c.start_all();
    c.create_topic(TOPIC, 1, 3);
    produce(&c, 200);
    let leader = c.describe(0, TOPIC).expect("described")[&0]
        .leader
        .expect("led") as usize;
    let node_dir = c.dir.path().join(format!("node{leader}"));
    let before = segment_bases(&node_dir);
    assert!(before.len() >= 5, "segments rolled: {before:?}");
    assert_eq!(before[0], 0, "no retention yet");
    let bootstrap = c.bootstrap(&[0, 1, 2]);
    let alter = |args: &[&str]| {
        let mut all = vec![
            "configs",
            "--bootstrap-server",
            &bootstrap,
            "--entity-type",
            "topics",
            "--entity-name",
            TOPIC,
        ];
        all.extend_from_slice(args);
        stdout(&tool(&all, None, Duration::from_secs(30)))
    };
    let out = alter(&["--alter", "--add-config", "retention.bytes=8192"]);
    assert!(
        out.contains("Completed updating config for topic r."),
        "{out}"
    );
    let out = alter(&["--describe"]);
    assert!(out.contains("  retention.bytes=8192 "), "{out}");
    wait_for(
        "retention after the change",
        Duration::from_secs(30),
        || {
            let bases = segment_bases(&node_dir);
            (bases.first().copied().unwrap_or(0) > 0 && bases.len() < before.len()).then_some(())
        },
    );
    let first = wait_for(
        "a consumer from the beginning",
        Duration::from_secs(30),
        || first_offset(&c),
    );
    assert!(first > 0, "the oldest records are gone");
}
