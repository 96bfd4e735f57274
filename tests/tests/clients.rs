//! Real Kafka clients against `runnel dev`: kcat (librdkafka 2.0, Debian)
//! metadata, produce with acks=all (plain and compressed), consume; and
//! confluent-kafka from Python (admin, producer with delivery reports,
//! consumer). Installed by scripts/test-all.sh.

use runnel_tests::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

#[test]
fn kcat_lists_produces_and_consumes() {
    let c = DevCluster::start();
    let b = c.bootstrap();
    let out = run(
        Command::new("kcat").args(["-b", &b, "-L"]),
        None,
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 3 brokers:"), "kcat -L: {text}");
    c.create_topic("kcat", 3);
    let mut expected = BTreeSet::new();
    for codec in ["none", "gzip", "snappy", "lz4"] {
        let lines: String = (0..500).map(|i| format!("{codec}-{i}\n")).collect();
        expected.extend((0..500).map(|i| format!("{codec}-{i}")));
        let out = run(
            Command::new("kcat")
                .args(["-b", &b, "-t", "kcat", "-P", "-X", "acks=all", "-z", codec]),
            Some(lines.as_bytes()),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "kcat -P -z {codec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(
        Command::new("kcat").args([
            "-b",
            &b,
            "-t",
            "kcat",
            "-C",
            "-e",
            "-q",
            "-o",
            "beginning",
            "-f",
            "%p %o %s\n",
        ]),
        None,
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut values = BTreeSet::new();
    let mut positions = BTreeSet::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ' ');
        let (p, o, v) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        assert!(
            positions.insert((p.to_string(), o.parse::<u64>().unwrap())),
            "offset {p}/{o} twice"
        );
        assert!(values.insert(v.to_string()), "{v} read twice");
    }
    assert_eq!(
        values, expected,
        "kcat -C reads back every acknowledged message"
    );
}

#[test]
fn confluent_kafka_admin_produce_consume() {
    let c = DevCluster::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/confluent_smoke.py");
    let out = run(
        Command::new(python())
            .arg(&script)
            .args([&c.bootstrap(), "confluent", "5000"]),
        None,
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "confluent-kafka: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Durable mode (`log.flush.interval.messages=1`): every acknowledged
/// write is fsynced on each ISR member that counted, by the group commit
/// that runs its fsyncs off the event loop. kcat's acks=all messages are
/// all delivered and read back in order per partition.
#[test]
fn durable_mode_acknowledges_through_the_off_loop_group_commit() {
    let c = DevCluster::start_with(&["log.flush.interval.messages=1"]);
    let b = c.bootstrap();
    c.create_topic("durable", 3);
    let lines: String = (0..3_000).map(|i| format!("d-{i}\n")).collect();
    let out = run(
        Command::new("kcat").args([
            "-b",
            &b,
            "-t",
            "durable",
            "-P",
            "-X",
            "acks=all",
            "-X",
            "linger.ms=1",
        ]),
        Some(lines.as_bytes()),
        Duration::from_secs(120),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("Delivery failed"),
        "kcat -P: {err}"
    );
    let out = run(
        Command::new("kcat").args([
            "-b",
            &b,
            "-t",
            "durable",
            "-C",
            "-e",
            "-q",
            "-o",
            "beginning",
            "-f",
            "%p %s\n",
        ]),
        None,
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut last_per_partition = std::collections::BTreeMap::new();
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let (p, v) = line.split_once(' ').expect("partition and value");
        let n: u32 = v.trim_start_matches("d-").parse().expect("a number");
        // kcat sends in order; each partition keeps its messages' order.
        if let Some(prev) = last_per_partition.insert(p.to_string(), n) {
            assert!(n > prev, "partition {p}: {n} after {prev}");
        }
        seen.insert(n);
    }
    assert_eq!(seen.len(), 3_000, "every acknowledged message is read back");
}
