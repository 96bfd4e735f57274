//! DeleteRecords on real processes (`runnel delete-records`, Kafka's
//! `kafka-delete-records.sh`): records below the offset go on every in-sync
//! replica before the answer, consumers from the beginning start there, a
//! consumer at a deleted offset gets OFFSET_OUT_OF_RANGE and its
//! `auto.offset.reset` applies, an offset above the high watermark is
//! refused, and after the leader is killed the new leader starts at the
//! same place (the log start is replicated, not the leader's alone).

use runnel_tests::*;
use std::process::Command;
use std::time::Duration;

const TOPIC: &str = "dr";

fn produce(c: &SeedCluster, count: usize) {
    let lines: String = (0..count).map(|i| format!("{i}\n")).collect();
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
            "batch.num.messages=7",
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

/// The offsets a consumer starting at `from` reads to the end, with
/// `auto.offset.reset=earliest`.
fn offsets_from(c: &SeedCluster, from: &str) -> Vec<u64> {
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
            from,
            "-X",
            "auto.offset.reset=earliest",
            "-e",
            "-f",
            "%o\\n",
        ]),
        None,
        Duration::from_secs(30),
    );
    stdout(&out)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn delete_records(c: &SeedCluster, offset: i64) -> String {
    delete_records_of(c, TOPIC, offset)
}

fn delete_records_of(c: &SeedCluster, topic: &str, offset: i64) -> String {
    let file = c.dir.path().join(format!("offsets-{topic}-{offset}.json"));
    let json = format!(
        r#"{{"partitions": [{{"topic": "{topic}", "partition": 0, "offset": {offset}}}], "version": 1}}"#
    );
    std::fs::write(&file, json).unwrap();
    let out = tool(
        &[
            "delete-records",
            "--bootstrap-server",
            &c.bootstrap(&[0, 1, 2]),
            "--offset-json-file",
            file.to_str().unwrap(),
        ],
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

#[test]
fn deleted_records_are_gone_on_every_replica_and_consumers_start_past_them() {
    let mut c = SeedCluster::combined(&["replica.lag.time.max.ms=2000"]);
    c.start_all();
    c.create_topic(TOPIC, 1, 3);
    let described = wait_for("a full ISR", Duration::from_secs(30), || {
        c.describe(0, TOPIC).filter(|d| {
            d.get(&0)
                .is_some_and(|p| p.isr.len() == 3 && p.leader.is_some())
        })
    });
    let leader = described[&0].leader.expect("led") as usize;
    produce(&c, 100);
    let said = delete_records(&c, 40);
    assert!(
        said.contains("Records delete operation completed:")
            && said.contains("partition: dr-0\tlow_watermark: 40"),
        "{said}"
    );
    // From the beginning: 40..100, nothing below.
    assert_eq!(offsets_from(&c, "beginning"), (40..100).collect::<Vec<_>>());
    // At a deleted offset: OFFSET_OUT_OF_RANGE, reset to the earliest.
    assert_eq!(offsets_from(&c, "10"), (40..100).collect::<Vec<_>>());
    // Above the high watermark: refused, nothing changes.
    let said = delete_records(&c, 1_000);
    assert!(said.contains("error: OffsetOutOfRange"), "{said}");
    // Below the start: nothing to do, the low watermark stays.
    let said = delete_records(&c, 5);
    assert!(said.contains("low_watermark: 40"), "{said}");
    // A compacted topic's records are not deleted (Kafka's POLICY_VIOLATION).
    let out = tool(
        &[
            "topics",
            "--bootstrap-server",
            &c.bootstrap(&[0, 1, 2]),
            "--create",
            "--topic",
            "compacted",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
            "--config",
            "cleanup.policy=compact",
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(stdout(&out).contains("Created topic"), "{}", stdout(&out));
    let said = delete_records_of(&c, "compacted", -1);
    assert!(said.contains("error: PolicyViolation"), "{said}");
    // The leader dies: the new one starts where the old one did.
    c.brokers[leader].kill9();
    wait_for("a new leader", Duration::from_secs(30), || {
        let via = (leader + 1) % 3;
        c.describe(via, TOPIC)
            .filter(|d| d[&0].leader.is_some_and(|l| l as usize != leader))
            .map(|_| ())
    });
    let offsets = wait_for(
        "a read from the new leader",
        Duration::from_secs(30),
        || {
            let o = offsets_from(&c, "beginning");
            (!o.is_empty()).then_some(o)
        },
    );
    assert_eq!(
        offsets,
        (40..100).collect::<Vec<_>>(),
        "deleted records came back"
    );
    // -1: everything up to the high watermark.
    let said = delete_records(&c, -1);
    assert!(said.contains("low_watermark: 100"), "{said}");
    produce(&c, 3);
    assert_eq!(offsets_from(&c, "beginning"), vec![100, 101, 102]);
    // The killed broker returns: its start follows the leader's, so it
    // never serves 40..100 again once it leads.
    c.start_broker(leader);
    wait_for(
        "the returning broker in the ISR",
        Duration::from_secs(60),
        || {
            c.describe((leader + 1) % 3, TOPIC)
                .filter(|d| d[&0].isr.len() == 3)
                .map(|_| ())
        },
    );
    let start = std::fs::read_to_string(
        c.dir
            .path()
            .join(format!("node{leader}"))
            .join(format!("{TOPIC}-0"))
            .join("log-start-offset"),
    );
    assert_eq!(start.ok().as_deref().map(str::trim), Some("100"));
}
