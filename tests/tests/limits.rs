//! Client limits with Kafka's keys, enforced on a real cluster:
//! `max.connections` (the listener stops accepting until a connection
//! closes), `max.connections.per.ip(.overrides)` (accepted and closed at
//! once), `queued.max.requests` (a tiny queue still serves everyone), and
//! listeners that are what they say (an SSL listener or an address another
//! process holds is a startup error naming it).

use kafka_protocol::messages::ApiVersionsRequest;
use runnel::client::Connection;
use runnel_tests::*;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// ApiVersions on a fresh connection; `None` if no answer within `within`.
fn answered(port: u16, within: Duration) -> Option<i16> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::time::timeout(within, async {
            let mut c = Connection::connect(&format!("127.0.0.1:{port}"))
                .await
                .ok()?;
            c.call(&ApiVersionsRequest::default(), 3)
                .await
                .ok()
                .map(|r| r.error_code)
        })
        .await
        .ok()
        .flatten()
    })
}

#[test]
fn max_connections_holds_new_clients_until_one_closes() {
    let c = DevCluster::start_with(&["max.connections=6"]);
    let port = c.port;
    // Six idle connections take every slot of node 0...
    let held: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // ...(once the node accepted them all: a seventh waits in the backlog).
    assert_eq!(
        answered(port, Duration::from_secs(3)),
        None,
        "a seventh client was served past max.connections"
    );
    // The other nodes are unaffected.
    assert_eq!(answered(port + 1, Duration::from_secs(5)), Some(0));
    // One closes: the next client is served.
    drop(held);
    let served = wait_for(
        "a slot after the idle clients left",
        Duration::from_secs(20),
        || answered(port, Duration::from_secs(2)),
    );
    assert_eq!(served, 0);
}

#[test]
fn max_connections_per_ip_closes_the_extra_ones_at_once() {
    // 127.0.0.2 may hold two connections; everyone else is unlimited.
    let c = DevCluster::start_with(&["max.connections.per.ip.overrides=127.0.0.2:2"]);
    let node: SocketAddr = format!("127.0.0.1:{}", c.port).parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let from_2 = || {
        rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            s.connect(node).await.unwrap().into_std().unwrap()
        })
    };
    let first = from_2();
    let second = from_2();
    let mut third = from_2();
    third.set_nonblocking(false).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        third.read(&mut buf).unwrap_or(usize::MAX),
        0,
        "the third connection from 127.0.0.2 is closed at once"
    );
    // 127.0.0.1 is not limited, and the first two from 127.0.0.2 still work.
    assert_eq!(answered(c.port, Duration::from_secs(5)), Some(0));
    drop((first, second));
}

#[test]
fn a_queue_of_one_request_still_serves_many_clients() {
    let c = DevCluster::start_with(&["queued.max.requests=1"]);
    c.create_topic("q", 3);
    let out = run(
        Command::new("kcat").args(["-b", &c.bootstrap(), "-t", "q", "-P", "-X", "acks=all"]),
        Some(
            (1..=200)
                .map(|i| format!("{i}\n"))
                .collect::<String>()
                .as_bytes(),
        ),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        Command::new("kcat").args(["-b", &c.bootstrap(), "-t", "q", "-C", "-e"]),
        None,
        Duration::from_secs(60),
    );
    assert_eq!(stdout(&out).lines().count(), 200);
}

/// `runnel server` with `listeners` (and a coordinator that is never
/// reached): the process must refuse to start, saying why.
fn refuses_to_start(listeners: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.properties");
    std::fs::write(
        &path,
        format!(
            "broker.id=0\nlisteners={listeners}\nlog.dirs={}\nzookeeper.connect=127.0.0.1:1\n",
            dir.path().join("logs").display()
        ),
    )
    .unwrap();
    let out = run(
        Command::new(runnel_bin()).args(["server", &path.display().to_string()]),
        None,
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "the node started with {listeners}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn listeners_are_what_they_say() {
    let port = free_ports(1)[0];
    let err = refuses_to_start(&format!("PLAINTEXT://:{port},SSL://:{}", port + 1));
    assert!(
        err.contains("SSL://") && err.contains("does not serve"),
        "{err}"
    );
    // Another process holds 127.0.0.1:port: `localhost` cannot be served
    // there, and the node must not start half-bound on ::1.
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let err = refuses_to_start(&format!("PLAINTEXT://localhost:{port}"));
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
