//! The seed's walk-through against real processes: 3 ZooKeeper-style
//! coordinators and 3 brokers from the seed's own configuration files (typos
//! included), a topic with 3 partitions and 3 replicas, produce via one
//! broker and consume via another, `kill -9` a broker (ISR shrinks, leaders
//! move, traffic continues), restart it (it rejoins the ISR), kill a
//! coordinator and then the coordinator leader (traffic continues, a new
//! leader is elected). Every acknowledged (acks=all) message is read back
//! exactly once and in order per partition.

use runnel_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const TOPIC: &str = "topic";

fn produce(c: &SeedCluster, via: &[usize], from: usize, to: usize) {
    let lines: String = (from..to).map(|i| format!("k{i}:v{i}\n")).collect();
    let out = tool(
        &[
            "console-producer",
            "--broker-list",
            &c.bootstrap(via),
            "--topic",
            TOPIC,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
            "--producer-property",
            "acks=all",
        ],
        Some(&lines),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads everything and checks: each acknowledged message exactly once, and
/// per partition in the order produced.
fn consume_and_check(c: &SeedCluster, via: &[usize], expected: usize) {
    let out = tool(
        &[
            "console-consumer",
            "--bootstrap-server",
            &c.bootstrap(via),
            "--topic",
            TOPIC,
            "--from-beginning",
            "--max-messages",
            &expected.to_string(),
            "--timeout-ms",
            "20000",
            "--property",
            "print.key=true",
            "--property",
            "print.partition=true",
        ],
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = parse_consumed(&stdout(&out));
    assert_eq!(
        records.len(),
        expected,
        "messages read back (stderr: {})",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = BTreeSet::new();
    let mut per_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (p, key, value) in records {
        let i: usize = key.trim_start_matches('k').parse().expect("key");
        assert_eq!(value, format!("v{i}"), "value of {key}");
        assert!(seen.insert(i), "message {i} read twice");
        per_partition.entry(p).or_default().push(i);
    }
    assert_eq!(
        seen,
        (0..expected).collect(),
        "every acknowledged message read"
    );
    for (p, seq) in per_partition {
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order: {seq:?}"
        );
    }
}

#[test]
fn the_seed_walkthrough_with_real_processes() {
    let mut c = SeedCluster::new(&["replica.lag.time.max.ms=3000"]);
    c.start_all();

    // The coordinators elect a leader; the seed's typos are reported.
    wait_for("a coordinator leader", Duration::from_secs(30), || {
        c.coordinator_leader()
    });
    let broker_log = wait_for(
        "broker 0's config warnings",
        Duration::from_secs(10),
        || {
            let log = c.log_of(&c.brokers[0]);
            log.contains("replica.lag.max.messages").then_some(log)
        },
    );
    assert!(broker_log
        .contains("unknown key eplica.lag.time.max.ms; did you mean replica.lag.time.max.ms?"));

    // kafka-topics.sh --create --replication-factor 3 --partitions 3 --topic topic
    wait_for(
        "topic creation (all 3 brokers registered)",
        Duration::from_secs(30),
        || {
            let out = tool(
                &[
                    "topics",
                    "--bootstrap-server",
                    &c.bootstrap(&[0]),
                    "--create",
                    "--replication-factor",
                    "3",
                    "--partitions",
                    "3",
                    "--topic",
                    TOPIC,
                ],
                None,
                Duration::from_secs(30),
            );
            stdout(&out).contains("Created topic topic.").then_some(())
        },
    );
    let d = wait_for("full ISRs", Duration::from_secs(20), || {
        c.describe(0, TOPIC)
            .filter(|d| d.values().all(|p| p.isr.len() == 3))
    });
    // The seed's placement rule: partition i on broker i mod n, replica j on (i + j) mod n.
    for (p, part) in &d {
        let expected: Vec<u32> = (0..3).map(|j| (p + j) % 3).collect();
        assert_eq!(part.replicas, expected, "placement of partition {p}");
        assert_eq!(
            part.leader,
            Some(expected[0]),
            "preferred leader of partition {p}"
        );
    }

    // Produce through broker 0, consume through broker 1.
    produce(&c, &[0], 0, 300);
    consume_and_check(&c, &[1], 300);

    // kill -9 broker 0: it leaves every ISR and leads nothing.
    c.brokers[0].kill9();
    let d = wait_for("ISRs without broker 0", Duration::from_secs(30), || {
        c.describe(1, TOPIC).filter(|d| {
            d.values()
                .all(|p| !p.isr.contains(&0) && p.leader.is_some_and(|l| l != 0))
        })
    });
    for (p, part) in &d {
        assert_eq!(part.isr, vec![1, 2], "ISR of partition {p} after the kill");
    }
    // Traffic continues through the remaining brokers.
    produce(&c, &[1, 2], 300, 600);
    consume_and_check(&c, &[2], 600);

    // Restart broker 0 with the same broker.id: it catches up and rejoins.
    c.start_broker(0);
    wait_for(
        "broker 0 back in every ISR",
        Duration::from_secs(40),
        || {
            c.describe(1, TOPIC)
                .filter(|d| d.values().all(|p| p.isr.len() == 3))
        },
    );
    consume_and_check(&c, &[0], 600);

    // Kill a coordinator that is not the leader: nothing visible changes.
    let leader = c.coordinator_leader().expect("a coordinator leader");
    let follower = (leader + 1) % 3;
    c.coordinators[follower].kill9();
    produce(&c, &[0, 1, 2], 600, 700);
    consume_and_check(&c, &[1], 700);
    assert_eq!(c.coordinator_leader(), Some(leader), "the leader stays");
    c.start_coordinator(follower);

    // Kill the leader coordinator: a new one is elected, traffic continues,
    // and the new controller serves metadata changes.
    std::thread::sleep(Duration::from_secs(2)); // let the restarted follower catch up
    c.coordinators[leader].kill9();
    let new_leader = wait_for("a new coordinator leader", Duration::from_secs(30), || {
        c.coordinator_leader().filter(|l| *l != leader)
    });
    assert_ne!(new_leader, leader);
    produce(&c, &[0, 1, 2], 700, 800);
    consume_and_check(&c, &[2], 800);
    let out = tool(
        &[
            "topics",
            "--bootstrap-server",
            &c.bootstrap(&[1]),
            "--create",
            "--partitions",
            "2",
            "--replication-factor",
            "2",
            "--topic",
            "after-failover",
        ],
        None,
        Duration::from_secs(40),
    );
    assert!(
        stdout(&out).contains("Created topic after-failover."),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The seed's other topology: three combined nodes (coordinator and broker
/// in one process each). `kill -9` of a node that is both a partition leader
/// and, possibly, the active controller: leadership and ISR move, traffic
/// continues, and the node rejoins after a restart.
#[test]
fn three_combined_nodes_survive_kill_9() {
    let mut c = SeedCluster::combined(&["replica.lag.time.max.ms=3000"]);
    c.start_all();
    wait_for(
        "topic creation (all 3 nodes registered)",
        Duration::from_secs(30),
        || {
            let out = tool(
                &[
                    "topics",
                    "--bootstrap-server",
                    &c.bootstrap(&[0]),
                    "--create",
                    "--replication-factor",
                    "3",
                    "--partitions",
                    "3",
                    "--topic",
                    TOPIC,
                ],
                None,
                Duration::from_secs(30),
            );
            stdout(&out).contains("Created topic topic.").then_some(())
        },
    );
    wait_for("full ISRs", Duration::from_secs(20), || {
        c.describe(0, TOPIC)
            .filter(|d| d.values().all(|p| p.isr.len() == 3))
    });
    produce(&c, &[0], 0, 200);
    let victim = c.coordinator_leader().expect("an active controller");
    c.brokers[victim].kill9();
    let others: Vec<usize> = (0..3).filter(|b| *b != victim).collect();
    wait_for(
        "ISRs without the killed node",
        Duration::from_secs(30),
        || {
            c.describe(others[0], TOPIC).filter(|d| {
                d.values().all(|p| {
                    !p.isr.contains(&(victim as u32))
                        && p.leader.is_some_and(|l| l != victim as u32)
                })
            })
        },
    );
    produce(&c, &others, 200, 400);
    consume_and_check(&c, &others, 400);
    c.start_broker(victim);
    wait_for(
        "the node back in every ISR",
        Duration::from_secs(40),
        || {
            c.describe(others[0], TOPIC)
                .filter(|d| d.values().all(|p| p.isr.len() == 3))
        },
    );
    consume_and_check(&c, &[victim], 400);
}
