//! Consumer groups with the four clients of the compatibility suite
//! (tests/python/groups_compat.py): confluent-kafka, kafka-python 3,
//! aiokafka and kcat -G each read everything exactly once in their own
//! group, admin clients list and describe groups and offsets, two members
//! split the partitions; and three members of different clients join one
//! group at once while a producer runs and a node is killed with `kill -9`.

use runnel_tests::*;
use std::process::Command;
use std::time::Duration;

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/groups_compat.py")
}

#[test]
fn every_client_consumes_in_groups() {
    let c = DevCluster::start();
    let out = run(
        Command::new(python())
            .arg(script())
            .args(["each", &c.bootstrap(), "compat"]),
        None,
        Duration::from_secs(300),
    );
    assert!(
        out.status.success() && stdout(&out).contains("OK"),
        "groups_compat each: {}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mixed_clients_rebalance_concurrently_through_a_node_kill() {
    let mut c = SeedCluster::combined(&["replica.lag.time.max.ms=3000"]);
    c.start_all();
    wait_for("an active controller", Duration::from_secs(30), || {
        c.coordinator_leader()
    });
    wait_for("all three brokers", Duration::from_secs(30), || {
        let out = tool(
            &[
                "broker-api-versions",
                "--bootstrap-server",
                &c.bootstrap(&[0]),
            ],
            None,
            Duration::from_secs(10),
        );
        (stdout(&out).matches("(id: ").count() == 3).then_some(())
    });
    let mut cmd = Command::new(python());
    cmd.arg(script())
        .args(["concurrent", &c.bootstrap(&[0, 1, 2]), "mixed", "600"]);
    let mut clients = Background::spawn(c.dir.path(), "concurrent", &mut cmd);
    wait_for("the clients under way", Duration::from_secs(120), || {
        clients.stdout().contains("KILL").then_some(())
    });
    c.brokers[1].kill9();
    let status = clients
        .wait(Duration::from_secs(240))
        .expect("the clients finish");
    assert!(
        status.success() && clients.stdout().contains("OK"),
        "groups_compat concurrent: {}\n{}",
        clients.stdout(),
        clients.stderr()
    );
    eprintln!("{}", clients.stderr().lines().last().unwrap_or(""));
}
