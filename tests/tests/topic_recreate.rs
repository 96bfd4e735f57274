//! A topic deleted and created again at once under the same name is a new
//! topic (Kafka tells them apart by topic id): every partition takes writes
//! at once and a consumer from the beginning reads only the new records.
//! Found by the 1,000-partition benchmark (bench/produce-bench.sh recreates
//! its topic each round): brokers that saw the deletion and the creation in
//! one metadata update kept the old replicas, whose leader epochs were
//! ahead of the new topic's, and thousands of writes failed.

use runnel_tests::*;
use std::process::Command;
use std::time::Duration;

const TOPIC: &str = "again";
const PARTITIONS: u32 = 300;

fn create(c: &SeedCluster, via: &[usize]) {
    wait_for("creation", Duration::from_secs(60), || {
        let out = tool(
            &[
                "topics",
                "--bootstrap-server",
                &c.bootstrap(via),
                "--create",
                "--topic",
                TOPIC,
                "--partitions",
                &PARTITIONS.to_string(),
                "--replication-factor",
                "3",
            ],
            None,
            Duration::from_secs(30),
        );
        stdout(&out).contains("Created topic").then_some(())
    });
}

/// `count` records `{tag}-{i}`, spread over the partitions, acks=all.
fn produce(c: &SeedCluster, tag: &str, count: usize) {
    let lines: String = (0..count).map(|i| format!("{tag}-{i}\n")).collect();
    let out = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(&[0, 1, 2]),
            "-t",
            TOPIC,
            "-P",
            "-X",
            "acks=all",
            "-X",
            "message.timeout.ms=30000",
        ]),
        Some(lines.as_bytes()),
        Duration::from_secs(90),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("failed"),
        "kcat: {err}"
    );
}

#[test]
fn a_topic_deleted_and_created_again_at_once_starts_empty_and_takes_writes() {
    let mut c = SeedCluster::combined(&[]);
    c.start_all();
    create(&c, &[0, 1, 2]);
    produce(&c, "old", 600);
    // One broker sleeps through the deletion and the creation (briefly:
    // it stays registered), so it learns of both in one metadata update.
    let controller = wait_for("an active controller", Duration::from_secs(30), || {
        c.coordinator_leader()
    });
    // Not the controller, and not the broker whose address the CLI tries
    // first for admin requests (the smallest): a paused process still
    // accepts connections, and the call would wait on it.
    let address = |b: usize| c.bootstrap(&[b]);
    let first = (0..3).min_by_key(|&b| address(b)).expect("three");
    let sleeper = (0..3)
        .find(|&b| b != controller && b != first)
        .expect("three brokers");
    let awake: Vec<usize> = (0..3).filter(|&b| b != sleeper).collect();
    c.brokers[sleeper].pause();
    let out = tool(
        &[
            "topics",
            "--bootstrap-server",
            &c.bootstrap(&awake),
            "--delete",
            "--topic",
            TOPIC,
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(stdout(&out).contains("Deleted topic"), "{}", stdout(&out));
    create(&c, &awake);
    c.brokers[sleeper].resume();
    wait_for("full ISRs", Duration::from_secs(60), || {
        c.describe(0, TOPIC)
            .filter(|d| d.len() == PARTITIONS as usize && d.values().all(|p| p.isr.len() == 3))
    });
    produce(&c, "new", 600);
    let out = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(&[0, 1, 2]),
            "-C",
            "-t",
            TOPIC,
            "-o",
            "beginning",
            "-e",
            "-q",
        ]),
        None,
        Duration::from_secs(60),
    );
    let read = stdout(&out);
    let mut values: Vec<&str> = read.lines().filter(|l| !l.is_empty()).collect();
    values.sort_unstable();
    let mut expected: Vec<String> = (0..600).map(|i| format!("new-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(values, expected, "exactly the new topic's records");
}
