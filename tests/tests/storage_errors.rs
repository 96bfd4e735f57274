//! A replica whose log cannot be opened is offline, never a leader: the
//! broker tells the controller, the replica leaves its ISR, leadership moves
//! to a replica with a log, and the partition takes writes and serves reads
//! as before. Before, the broker logged the error and nothing else: the
//! controller kept it as the partition's leader (with a leader and a full
//! ISR in Metadata), and every write to the partition failed.
//!
//! The error is a real one from the filesystem: a regular file sits where
//! the broker will make the partition's directory, so creating the
//! directory fails (as a full disk, a read-only mount or a lost descriptor
//! limit would: every one of them fails the same open).

use runnel_tests::*;
use std::process::Command;
use std::time::Duration;

const TOPIC: &str = "nolog";
const RECORDS: usize = 300;

#[test]
fn a_replica_that_cannot_open_its_log_leaves_the_isr_and_leadership_moves() {
    let mut c = SeedCluster::combined(&[]);
    // Placement puts partition 0 first on broker 0 (its preferred leader).
    let obstruction = c.dir.path().join("node0").join(format!("{TOPIC}-0"));
    std::fs::create_dir_all(obstruction.parent().unwrap()).unwrap();
    std::fs::write(&obstruction, b"not a directory").unwrap();
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
                "3",
                "--replication-factor",
                "3",
            ],
            None,
            Duration::from_secs(30),
        );
        let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        // A retry after a lost answer finds the topic made by the first.
        (said.contains("Created topic") || said.contains("already exists")).then_some(())
    });
    let d = wait_for(
        "partition 0 led without broker 0",
        Duration::from_secs(60),
        || {
            c.describe(1, TOPIC).filter(|d| {
                let p0 = &d[&0];
                d.len() == 3
                    && p0.leader.is_some_and(|l| l != 0)
                    && p0.isr.len() == 2
                    && !p0.isr.contains(&0)
                    && d[&1].isr.len() == 3
                    && d[&2].isr.len() == 3
            })
        },
    );
    assert_eq!(d[&0].replicas, vec![0, 1, 2], "still assigned to broker 0");
    assert!(
        c.log_of(&c.brokers[0]).contains("replica offline"),
        "broker 0 says why"
    );
    // Every partition, the one with an offline replica too, takes writes
    // with acks=all and gives them back.
    // Keyed, so that every partition gets records: librdkafka's sticky
    // partitioner may put all keyless ones on one partition (a flake).
    let lines: String = (0..RECORDS).map(|i| format!("k-{i}:r-{i}\n")).collect();
    let out = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(&[0, 1, 2]),
            "-t",
            TOPIC,
            "-P",
            "-K:",
            "-X",
            "acks=all",
            "-X",
            "message.timeout.ms=30000",
        ]),
        Some(lines.as_bytes()),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("failed"),
        "kcat: {err}"
    );
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
            "-f",
            "%p %s\n",
        ]),
        None,
        Duration::from_secs(60),
    );
    let read = stdout(&out);
    assert!(
        read.lines().filter(|l| l.starts_with("0 r-")).count() > 0,
        "partition 0 holds records: {read}"
    );
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
    let mut values: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    values.sort_unstable();
    let mut expected: Vec<String> = (0..RECORDS).map(|i| format!("r-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(values, expected, "every record, once");
}
