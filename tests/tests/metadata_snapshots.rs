//! Metadata snapshots (KIP-630) on real processes: with a small
//! `metadata.log.max.record.bytes.between.snapshots`, every node replaces
//! its metadata log's prefix by a snapshot; a node that was down while the
//! others moved their log start past its end catches up from the leader's
//! snapshot; and after kill -9 of every node the cluster starts from its
//! snapshots plus their logs' tails with every topic there.

use runnel_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn metadata_dir(c: &SeedCluster, b: usize) -> PathBuf {
    c.dir.path().join(format!("node{b}/__cluster_metadata"))
}

/// The metadata files of a node: (has a snapshot, the log file's base,
/// the log file's bytes).
fn metadata_files(dir: &Path) -> (bool, Option<u64>, u64) {
    let mut snapshot = false;
    let mut log = None;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let bytes = e.metadata().map_or(0, |m| m.len());
        if name == "metadata-snapshot" {
            snapshot = true;
        } else if name == "metadata-2.log" {
            log = Some((0, bytes));
        } else if let Some(base) = name
            .strip_prefix("metadata-2-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            log = Some((base, bytes));
        }
    }
    (snapshot, log.map(|l| l.0), log.map_or(0, |l| l.1))
}

fn topics(c: &SeedCluster, via: usize) -> BTreeSet<String> {
    let out = tool(
        &[
            "topics",
            "--bootstrap-server",
            &c.bootstrap(&[via]),
            "--list",
        ],
        None,
        Duration::from_secs(30),
    );
    stdout(&out)
        .lines()
        .filter(|l| l.starts_with("snap-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn snapshots_bound_the_metadata_log_and_bring_a_returning_node_up_to_date() {
    let mut c = SeedCluster::combined(&["metadata.log.max.record.bytes.between.snapshots=512"]);
    c.start_all();
    let mut expected = BTreeSet::new();
    for i in 0..15 {
        let name = format!("snap-{i}");
        c.create_topic(&name, 2, 3);
        expected.insert(name);
    }
    for b in 0..3 {
        wait_for(
            &format!("node {b} takes a snapshot"),
            Duration::from_secs(30),
            || {
                let (snapshot, base, _) = metadata_files(&metadata_dir(&c, b));
                (snapshot && base.is_some_and(|b| b > 0)).then_some(())
            },
        );
    }
    // Node 2 is away while the others go on well past its log end.
    let away = 2;
    c.brokers[away].kill9();
    let (_, away_base, _) = metadata_files(&metadata_dir(&c, away));
    for i in 15..40 {
        let name = format!("snap-{i}");
        c.create_topic(&name, 1, 2);
        expected.insert(name);
    }
    let (_, leader_base, bytes) = metadata_files(&metadata_dir(&c, 0));
    assert!(
        leader_base > away_base,
        "the others' log start ({leader_base:?}) moved past node {away}'s ({away_base:?})"
    );
    // 40 topics took about 5 KB of log; the tail after the last snapshot
    // is what one tick adds past the 512-byte trigger.
    assert!(
        bytes < 2048,
        "node 0's metadata log after its snapshot: {bytes} bytes"
    );
    c.start_broker(away);
    wait_for(
        "the returning node installs the leader's snapshot",
        Duration::from_secs(60),
        || {
            c.log_of(&c.brokers[away])
                .contains("installing the leader's metadata snapshot")
                .then_some(())
        },
    );
    wait_for(
        "the returning node knows every topic",
        Duration::from_secs(60),
        || (topics(&c, away) == expected).then_some(()),
    );
    // Every node restarts from its snapshot and the tail after it.
    for b in 0..3 {
        c.brokers[b].kill9();
    }
    for b in 0..3 {
        c.start_broker(b);
    }
    for b in 0..3 {
        wait_for(
            &format!("node {b} lists every topic after the restart"),
            Duration::from_secs(60),
            || (topics(&c, b) == expected).then_some(()),
        );
    }
}
