//! Topic configs apply, at creation and when changed: a topic's
//! `min.insync.replicas` decides whether acks=all writes are taken with a
//! broker gone, and raising or lowering it with `runnel configs --alter`
//! takes effect on the running replicas; its `segment.bytes` decides when
//! the leader's log rolls. Before, both were stored and shown but every
//! replica ran with the broker's settings.

use runnel_tests::*;
use std::process::{Command, Output};
use std::time::Duration;

const TOPIC: &str = "minisr";

/// `count` records of 1,000 bytes, acks=all, in batches of 100.
fn produce(bootstrap: &str, count: usize, timeout_ms: u64) -> Output {
    let lines: String = (0..count).map(|i| format!("{i:0>1000}\n")).collect();
    run(
        Command::new("kcat").args([
            "-b",
            bootstrap,
            "-t",
            TOPIC,
            "-P",
            "-X",
            "acks=all",
            "-X",
            &format!("message.timeout.ms={timeout_ms}"),
            // Small batches, so that the log has several to roll between.
            "-X",
            "batch.num.messages=100",
        ]),
        Some(lines.as_bytes()),
        Duration::from_secs(60),
    )
}

fn ok(out: &Output) -> bool {
    out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("fail")
}

#[test]
fn a_topics_min_insync_replicas_and_segment_bytes_apply_and_change() {
    let mut c = SeedCluster::combined(&[]);
    c.start_all();
    wait_for("topic creation", Duration::from_secs(60), || {
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
                "min.insync.replicas=3",
                "--config",
                "segment.bytes=1048576",
            ],
            None,
            Duration::from_secs(30),
        );
        let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        // A retry after a lost answer finds the topic made by the first.
        (said.contains("Created topic") || said.contains("already exists")).then_some(())
    });
    let d = wait_for("a full ISR", Duration::from_secs(30), || {
        c.describe(0, TOPIC).filter(|d| d[&0].isr.len() == 3)
    });
    let leader = d[&0].leader.expect("a leader") as usize;
    let out = produce(&c.bootstrap(&[0, 1, 2]), 2_000, 30_000);
    assert!(ok(&out), "{}", String::from_utf8_lossy(&out.stderr));
    // 2 MB in 1 MiB segments (the least a topic may set): the log rolled.
    let dir = c
        .dir
        .path()
        .join(format!("node{leader}"))
        .join(format!("{TOPIC}-0"));
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(
        segments > 1,
        "segment.bytes=1048576 rolls the log: {segments} segment(s)"
    );
    // A follower goes (paused: fenced after its session times out, out of
    // the ISR); the CLIs and clients use the other two.
    let gone = (0..3).find(|&b| b != leader).expect("a follower");
    let awake: Vec<usize> = (0..3).filter(|&b| b != gone).collect();
    let bootstrap = c.bootstrap(&awake);
    c.brokers[gone].pause();
    wait_for("an ISR of two", Duration::from_secs(30), || {
        c.describe(leader, TOPIC).filter(|d| d[&0].isr.len() == 2)
    });
    let out = produce(&bootstrap, 1, 3_000);
    assert!(
        !ok(&out),
        "min.insync.replicas=3 refuses acks=all with two in sync"
    );
    let out = tool(
        &[
            "configs",
            "--bootstrap-server",
            &bootstrap,
            "--entity-type",
            "topics",
            "--entity-name",
            TOPIC,
            "--alter",
            "--add-config",
            "min.insync.replicas=2",
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stdout(&out));
    wait_for(
        "writes taken with two in sync",
        Duration::from_secs(30),
        || ok(&produce(&bootstrap, 1, 3_000)).then_some(()),
    );
    c.brokers[gone].resume();
}
