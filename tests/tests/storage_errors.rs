//! A replica whose log cannot be opened is offline, never a leader: the
//! broker tells the controller, the replica leaves its ISR, leadership moves
//! to a replica with a log, and the partition takes writes and serves reads
//! as before. Before, the broker logged the error and nothing else: the
//! controller kept it as the partition's leader (with a leader and a full
//! ISR in Metadata), and every write to the partition failed.
//!
//! The errors are real ones from the kernel:
//! - a regular file sits where the broker will make the partition's
//!   directory, so creating the directory fails;
//! - EMFILE: the broker's open-files limit is lowered (`prlimit`) to the
//!   descriptors it holds, so every new log file fails to open. ENOSPC and
//!   EIO are injected by `tests/tests/disk_faults.rs`.

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
    create(&c.bootstrap(&[0, 1, 2]), TOPIC);
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
    every_record_once(&c.bootstrap(&[0, 1, 2]), TOPIC);
}

/// `RECORDS` keyed records produced with acks=all through `bootstrap`,
/// each read back once, partition 0 holding some of them.
fn every_record_once(bootstrap: &str, topic: &str) {
    // Keyed, so that every partition gets records: librdkafka's sticky
    // partitioner may put all keyless ones on one partition (a flake).
    let lines: String = (0..RECORDS).map(|i| format!("k-{i}:r-{i}\n")).collect();
    let out = run(
        Command::new("kcat").args([
            "-b",
            bootstrap,
            "-t",
            topic,
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
            bootstrap,
            "-C",
            "-t",
            topic,
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
            bootstrap,
            "-C",
            "-t",
            topic,
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

/// `topics --create` of three partitions, RF 3, retried until it is done.
fn create(bootstrap: &str, topic: &str) {
    wait_for("topic creation", Duration::from_secs(60), || {
        let out = tool(
            &[
                "topics",
                "--bootstrap-server",
                bootstrap,
                "--create",
                "--topic",
                topic,
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
}

/// Sets the soft open-files limit of a running process (`prlimit`), the
/// hard one unchanged.
fn set_open_files_limit(pid: u32, soft: &str) {
    let out = run(
        Command::new("prlimit").args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")]),
        None,
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "prlimit: {:?}", out);
}

/// EMFILE: broker 0 may open no descriptor beyond those it holds when a
/// topic is created, so none of its three new replicas can open a log.
/// Each is offline, never a leader; the others lead and serve every write.
/// With the limit restored and broker 0 restarted (an offline replica
/// stays offline until its broker registers again, as a Kafka log
/// directory does), its replicas open their logs and rejoin every ISR.
#[test]
fn a_broker_out_of_descriptors_never_leads_a_replica_it_cannot_open() {
    const TOPIC: &str = "emfile";
    let mut c = SeedCluster::combined(&[]);
    c.start_all();
    // Every broker registered and linked to the others.
    c.create_topic("warm", 1, 3);
    let pid = c.brokers[0].pid().expect("broker 0 runs");
    // Far below what it holds (links, listeners, the metadata log): the
    // descriptors it has stay valid, and however many of them close
    // meanwhile (the tool's connections, a checkpoint's file), it cannot
    // open a new one.
    let held = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(held > 16, "broker 0 holds {held} descriptors");
    set_open_files_limit(pid, "16");
    create(&c.bootstrap(&[1, 2]), TOPIC);
    let d = wait_for(
        "every partition led without broker 0",
        Duration::from_secs(60),
        || {
            c.describe(1, TOPIC).filter(|d| {
                d.len() == 3
                    && d.values().all(|p| {
                        p.leader.is_some_and(|l| l != 0) && p.isr.len() == 2 && !p.isr.contains(&0)
                    })
            })
        },
    );
    assert!(d.values().all(|p| p.replicas.contains(&0)), "{d:?}");
    let log = c.log_of(&c.brokers[0]);
    assert!(
        log.lines().any(|l| l.contains(&format!("{TOPIC}-"))
            && l.contains("replica offline")
            && l.contains("os error 24")),
        "broker 0 says why: {log}"
    );
    assert!(!c.brokers[0].has_exited(), "broker 0 keeps running");
    every_record_once(&c.bootstrap(&[1, 2]), TOPIC);

    // The restarted process has the test's own limit again.
    c.brokers[0].kill9();
    c.start_broker(0);
    wait_for("full ISRs again", Duration::from_secs(60), || {
        c.describe(1, TOPIC)
            .filter(|d| d.len() == 3 && d.values().all(|p| p.isr.len() == 3))
    });
}
