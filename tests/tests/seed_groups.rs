//! The seed's consumer-group section against 3 coordinators + 3 brokers
//! (real processes): a plain console consumer shows up as its own
//! `console-consumer-NNNNN` group; two consumers with
//! `--consumer-property group.id=mygroup` split the partitions of `test`
//! (the seed's `1 2 4 5` / `3 6`); another group sees everything;
//! `--list`/`--describe` with LAG; a member killed with `kill -9` has its
//! partitions taken over within the session timeout and consumption resumes
//! at the committed offsets; a broker killed with `kill -9` during group
//! consumption loses no acknowledged message and no committed offset goes
//! backwards; `--reset-offsets` and `--delete`; `topics --alter --partitions`.

use runnel_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOPIC: &str = "test";

fn groups(c: &SeedCluster, args: &[&str]) -> String {
    let bootstrap = c.bootstrap(&[0, 1, 2]);
    let mut all = vec!["consumer-groups", "--bootstrap-server", &bootstrap];
    all.extend_from_slice(args);
    let out = tool(&all, None, Duration::from_secs(60));
    format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr))
}

fn describe(c: &SeedCluster, group: &str) -> Vec<GroupRow> {
    parse_group_describe(&groups(c, &["--describe", "--group", group]))
}

/// Lines typed one at a time, as in the seed (each its own batch).
fn produce_typed(c: &SeedCluster, via: &[usize], lines: &[String]) {
    let mut child = Command::new(runnel_bin())
        .args([
            "console-producer",
            "--broker-list",
            &c.bootstrap(via),
            "--topic",
            TOPIC,
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("console-producer");
    let mut stdin = child.stdin.take().expect("stdin");
    for l in lines {
        writeln!(stdin, "{l}").expect("write a line");
        stdin.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(stdin);
    let out = child.wait_with_output().expect("producer exits");
    assert!(
        out.status.success(),
        "producer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn member(c: &SeedCluster, name: &str, group: &str) -> Background {
    Background::runnel(
        c.dir.path(),
        name,
        &[
            "console-consumer",
            "--bootstrap-server",
            &c.bootstrap(&[0, 1, 2]),
            "--topic",
            TOPIC,
            "--consumer-property",
            &format!("group.id={group}"),
            "--from-beginning",
        ],
    )
}

fn numbers(lines: &[String]) -> Vec<u32> {
    lines.iter().filter_map(|l| l.trim().parse().ok()).collect()
}

fn committed(rows: &[GroupRow]) -> BTreeMap<u32, i64> {
    rows.iter()
        .filter_map(|r| Some((r.partition, r.current?)))
        .collect()
}

#[test]
fn the_seed_consumer_group_steps() {
    let mut c = SeedCluster::new(&["replica.lag.time.max.ms=3000"]);
    c.start_all();
    wait_for("a coordinator leader", Duration::from_secs(30), || {
        c.coordinator_leader()
    });
    c.create_topic(TOPIC, 3, 3);

    // A plain console consumer is a group of its own, with no offsets.
    let mut plain = Background::runnel(
        c.dir.path(),
        "plain",
        &[
            "console-consumer",
            "--bootstrap-server",
            &c.bootstrap(&[0, 1, 2]),
            "--topic",
            TOPIC,
        ],
    );
    let name = wait_for(
        "the console consumer's group",
        Duration::from_secs(40),
        || {
            groups(&c, &["--list"])
                .lines()
                .find(|l| l.starts_with("console-consumer-"))
                .map(str::to_string)
        },
    );
    let rows = wait_for("its three partitions", Duration::from_secs(20), || {
        Some(describe(&c, &name)).filter(|r| r.len() == 3 && r.iter().all(|r| r.consumer_id != "-"))
    });
    assert!(rows.iter().all(|r| r.current.is_none() && r.lag.is_none()));
    assert!(plain.terminate(Duration::from_secs(10)), "stops on SIGTERM");

    // Two members of mygroup split the partitions: 1 2 4 5 / 3 6.
    let mut a = member(&c, "a", "mygroup");
    wait_for("a owns all partitions", Duration::from_secs(40), || {
        Some(describe(&c, "mygroup"))
            .filter(|r| r.len() == 3 && r.iter().all(|r| r.consumer_id != "-"))
    });
    let mut b = member(&c, "b", "mygroup");
    wait_for(
        "a and b share the partitions",
        Duration::from_secs(40),
        || {
            let rows = describe(&c, "mygroup");
            let ids: BTreeSet<_> = rows.iter().map(|r| r.consumer_id.clone()).collect();
            (rows.len() == 3 && ids.len() == 2 && !ids.contains("-")).then_some(())
        },
    );
    let six: Vec<String> = (1..=6).map(|i| i.to_string()).collect();
    produce_typed(&c, &[0, 1, 2], &six);
    wait_for("both members printed", Duration::from_secs(30), || {
        (numbers(&a.lines()).len() + numbers(&b.lines()).len() >= 6).then_some(())
    });
    assert_eq!(
        numbers(&a.lines()),
        vec![1, 2, 4, 5],
        "the seed's first member"
    );
    assert_eq!(numbers(&b.lines()), vec![3, 6], "the seed's second member");

    // Another group sees every message.
    let out = tool(
        &[
            "console-consumer",
            "--bootstrap-server",
            &c.bootstrap(&[2]),
            "--topic",
            TOPIC,
            "--group",
            "other",
            "--from-beginning",
            "--max-messages",
            "6",
            "--timeout-ms",
            "20000",
        ],
        None,
        Duration::from_secs(60),
    );
    let mut all = numbers(&stdout(&out).lines().map(str::to_string).collect::<Vec<_>>());
    all.sort();
    assert_eq!(all, vec![1, 2, 3, 4, 5, 6], "group other");
    let list = groups(&c, &["--list"]);
    assert!(list.lines().any(|l| l == "mygroup"), "{list}");
    assert!(list.lines().any(|l| l == "other"), "{list}");

    // --describe: commits arrive (every 5 s) and LAG reaches 0.
    let rows = wait_for("mygroup's lag at 0", Duration::from_secs(30), || {
        Some(describe(&c, "mygroup")).filter(|r| r.len() == 3 && r.iter().all(|r| r.lag == Some(0)))
    });
    let total: i64 = rows.iter().filter_map(|r| r.log_end).sum();
    assert_eq!(total, 6);

    // kill -9 member a: b takes its partitions within the session timeout
    // and resumes at a's committed offsets (nothing read twice).
    a.kill9();
    wait_for("b owns all partitions", Duration::from_secs(30), || {
        let rows = describe(&c, "mygroup");
        let ids: BTreeSet<_> = rows.iter().map(|r| r.consumer_id.clone()).collect();
        (rows.len() == 3 && ids.len() == 1 && !ids.contains("-")).then_some(())
    });
    let more: Vec<String> = (7..=12).map(|i| i.to_string()).collect();
    produce_typed(&c, &[0, 1, 2], &more);
    wait_for("b read 7..12", Duration::from_secs(30), || {
        (numbers(&b.lines()).len() >= 8).then_some(())
    });

    // kill -9 a broker during group consumption: no acknowledged message is
    // lost and no committed offset goes backwards.
    let mut history = vec![committed(&describe(&c, "mygroup"))];
    c.brokers[0].kill9();
    let lines: String = (13..=60).map(|i| format!("{i}\n")).collect();
    let out = tool(
        &[
            "console-producer",
            "--broker-list",
            &c.bootstrap(&[1, 2]),
            "--topic",
            TOPIC,
        ],
        Some(&lines),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("b read everything", Duration::from_secs(60), || {
        history.push(committed(&describe(&c, "mygroup")));
        (numbers(&b.lines()).len() >= 56).then_some(())
    });
    c.start_broker(0);
    wait_for("commits cover everything", Duration::from_secs(40), || {
        let rows = describe(&c, "mygroup");
        history.push(committed(&rows));
        (rows.len() == 3 && rows.iter().all(|r| r.lag == Some(0))).then_some(())
    });
    for w in history.windows(2) {
        for (p, o) in &w[0] {
            if let Some(next) = w[1].get(p) {
                assert!(
                    next >= o,
                    "partition {p}: committed offset went back {o} -> {next}"
                );
            }
        }
    }
    let mut got = numbers(&a.lines());
    got.extend(numbers(&b.lines()));
    got.sort();
    assert_eq!(
        got,
        (1..=60).collect::<Vec<u32>>(),
        "each message exactly once in mygroup"
    );

    // b stops (commits and leaves): the group is empty, LAG counts new messages.
    assert!(b.terminate(Duration::from_secs(15)), "b stops on SIGTERM");
    let text = groups(&c, &["--describe", "--group", "mygroup"]);
    assert!(
        text.contains("Consumer group 'mygroup' has no active members."),
        "{text}"
    );
    let lines: String = (61..=70).map(|i| format!("{i}\n")).collect();
    tool(
        &[
            "console-producer",
            "--broker-list",
            &c.bootstrap(&[0, 1, 2]),
            "--topic",
            TOPIC,
        ],
        Some(&lines),
        Duration::from_secs(60),
    );
    let rows = wait_for("a lag of 10", Duration::from_secs(20), || {
        Some(describe(&c, "mygroup")).filter(|r| r.iter().filter_map(|r| r.lag).sum::<i64>() == 10)
    });
    assert!(rows.iter().all(|r| r.consumer_id == "-"));

    // --reset-offsets --to-earliest --execute, then --delete.
    let out = groups(
        &c,
        &[
            "--reset-offsets",
            "--group",
            "mygroup",
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(out.contains("NEW-OFFSET"), "{out}");
    let rows = describe(&c, "mygroup");
    assert!(rows.iter().all(|r| r.current == Some(0)), "{rows:?}");
    assert_eq!(rows.iter().filter_map(|r| r.lag).sum::<i64>(), 70);
    let out = groups(&c, &["--delete", "--group", "mygroup"]);
    assert!(
        out.contains("Deletion of requested consumer groups ('mygroup') was successful."),
        "{out}"
    );
    assert!(!groups(&c, &["--list"]).lines().any(|l| l == "mygroup"));

    // kafka-topics.sh --alter --partitions 4 (replication factor 3: broker
    // 0 must be back): a partition is added, the others stay where they were.
    wait_for(
        "broker 0 back in every ISR",
        Duration::from_secs(40),
        || {
            c.describe(1, TOPIC)
                .filter(|d| d.values().all(|p| p.isr.len() == 3))
        },
    );
    let before = c.describe(1, TOPIC).expect("describe");
    let out = tool(
        &[
            "topics",
            "--bootstrap-server",
            &c.bootstrap(&[1]),
            "--alter",
            "--topic",
            TOPIC,
            "--partitions",
            "4",
        ],
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}\n{:?}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.describe(1, TOPIC),
        c.log_of(&c.brokers[0])
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let after = wait_for("4 partitions", Duration::from_secs(20), || {
        c.describe(1, TOPIC).filter(|d| d.len() == 4)
    });
    for (p, part) in &before {
        assert_eq!(after[p].replicas, part.replicas, "partition {p} unchanged");
    }
}
