//! `__consumer_offsets` compacted on real processes: a group that commits
//! over and over leaves its offsets topic as large as its live offsets,
//! not its history; a group that committed once long ago keeps its
//! offsets; a deleted group stays deleted; and after kill -9 of every node
//! the coordinators rebuild the same groups from the cleaned log.

use runnel::cli::group_member::{find_coordinator, offset_commit_request};
use runnel::client::Client;
use runnel_tests::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const TOPIC: &str = "t";
const COMMITS: i64 = 300;
/// A commit of two partitions is one batch of two records: at least a
/// 61-byte header and two 40-byte records.
const COMMIT_BYTES_MIN: u64 = 61 + 2 * 40;

/// Bytes of `__consumer_offsets-0`'s `.log` files in one node's data dir.
fn offsets_log_bytes(node_dir: &Path) -> u64 {
    partition_log_bytes(node_dir, "__consumer_offsets", 0)
}

/// Commits `t-0 = a, t-1 = b` for `group` (standalone: generation -1),
/// looking for the coordinator again until it answers without an error.
async fn commit(client: &mut Client, group: &str, a: i64, b: i64) {
    let positions = BTreeMap::from([((TOPIC.to_string(), 0), a), ((TOPIC.to_string(), 1), b)]);
    let request = offset_commit_request(group, -1, "", &positions);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let coordinator = find_coordinator(client, group).await.expect("coordinator");
        if let Ok(r) = client.call_at(&coordinator, &request, 8).await {
            let codes: Vec<i16> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect();
            if codes.iter().all(|&c| c == 0) {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "commit for {group}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn groups(c: &SeedCluster, args: &[&str]) -> String {
    let bootstrap = c.bootstrap(&[0, 1, 2]);
    let mut all = vec!["consumer-groups", "--bootstrap-server", &bootstrap];
    all.extend_from_slice(args);
    stdout(&tool(&all, None, Duration::from_secs(60)))
}

/// (partition, committed offset) of `group` as `--describe` shows them.
fn committed(c: &SeedCluster, group: &str) -> BTreeMap<u32, Option<i64>> {
    parse_group_describe(&groups(c, &["--describe", "--group", group]))
        .into_iter()
        .filter(|r| r.topic == TOPIC)
        .map(|r| (r.partition, r.current))
        .collect()
}

fn expected(a: i64, b: i64) -> BTreeMap<u32, Option<i64>> {
    BTreeMap::from([(0, Some(a)), (1, Some(b))])
}

#[test]
fn the_offsets_topic_keeps_live_offsets_only_and_replays_them_after_kill_9() {
    let mut c = SeedCluster::combined(&[
        "offsets.topic.num.partitions=1",
        "offsets.topic.segment.bytes=4096",
        "log.cleaner.backoff.ms=200",
        "log.cleaner.min.cleanable.ratio=0.01",
        "log.cleaner.delete.retention.ms=1000",
    ]);
    c.start_all();
    c.create_topic(TOPIC, 2, 3);
    let bootstrap = c.bootstrap(&[0, 1, 2]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = Client::connect(&bootstrap).await.expect("connect");
        commit(&mut client, "old", 5, 6).await;
        commit(&mut client, "gone", 7, 8).await;
        for i in 1..=COMMITS {
            commit(&mut client, "busy", i, 2 * i).await;
        }
    });
    let deleted = groups(&c, &["--delete", "--group", "gone"]);
    assert!(deleted.contains("gone"), "{deleted}");
    let written = COMMITS as u64 * COMMIT_BYTES_MIN;
    let root = c.dir.path().to_path_buf();
    for b in 0..3 {
        wait_for(
            &format!("node {b} cleans __consumer_offsets-0"),
            Duration::from_secs(60),
            || {
                let bytes = offsets_log_bytes(&root.join(format!("node{b}")));
                eprintln!("node {b}: __consumer_offsets-0 holds {bytes} bytes (written: at least {written})");
                (bytes > 0 && bytes < written / 4).then_some(())
            },
        );
    }
    assert_eq!(committed(&c, "busy"), expected(COMMITS, 2 * COMMITS));
    assert_eq!(committed(&c, "old"), expected(5, 6));
    assert!(!groups(&c, &["--list"]).lines().any(|l| l == "gone"));
    // Only the cleaned log is left to rebuild the groups from.
    for b in 0..3 {
        c.brokers[b].kill9();
    }
    for b in 0..3 {
        c.start_broker(b);
    }
    wait_for("the groups back", Duration::from_secs(90), || {
        let busy = committed(&c, "busy");
        (busy == expected(COMMITS, 2 * COMMITS)).then_some(())
    });
    assert_eq!(committed(&c, "old"), expected(5, 6));
    let listed = groups(&c, &["--list"]);
    assert!(listed.lines().any(|l| l == "busy"), "{listed}");
    assert!(!listed.lines().any(|l| l == "gone"), "{listed}");
}
