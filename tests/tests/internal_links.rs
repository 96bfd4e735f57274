//! The internal protocol is not reachable by clients: Kafka listeners never
//! speak it, internal listeners admit only nodes that prove the cluster
//! secret (tools may ask for status, nothing else), and a node speaks only
//! for itself.

use runnel::runtime::messages::PeerMessage;
use runnel::runtime::transport::{self, LinkTimeouts, NetEvent, ToolLink};
use runnel::wire::{self, LinkIdentity, LinkRole, LinkSecret};
use runnel_model::controller::ControllerRequest;
use runnel_tests::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;
use tokio::sync::mpsc;

fn peer(node_id: u32, secret: &[u8]) -> LinkIdentity {
    LinkIdentity {
        cluster_id: "runnel".into(),
        node_id,
        role: LinkRole::Peer,
        secret: LinkSecret::new(secret.to_vec()),
    }
}

/// Dials `address` as `me`; the link's sender if it comes up within 5 s.
async fn dial(address: String, me: LinkIdentity) -> Option<mpsc::Sender<Vec<u8>>> {
    let (tx, mut rx) = mpsc::channel(1024);
    let task = tokio::spawn(transport::connector(
        address,
        me,
        LinkTimeouts::default(),
        tx,
    ));
    let up = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rx.recv().await? {
                NetEvent::Up { tx, .. } => return Some(tx),
                _ => continue,
            }
        }
    })
    .await
    .ok()
    .flatten();
    if up.is_none() {
        task.abort();
    } else {
        // Keep the link (and its events) alive for the test's duration.
        tokio::spawn(async move {
            while rx.recv().await.is_some() {}
            drop(task);
        });
    }
    up
}

fn topics(c: &DevCluster) -> String {
    stdout(&tool(
        &["topics", "--list", "--bootstrap-server", &c.bootstrap()],
        None,
        Duration::from_secs(20),
    ))
}

#[test]
fn a_client_cannot_act_as_a_node() {
    let c = DevCluster::start();
    let secret = std::fs::read_to_string(c.dir.path().join("data/cluster.secret")).unwrap();
    let controller = format!("127.0.0.1:{}", c.port + 100);

    // The internal handshake on a Kafka port: read as a 1.3 GB request, the
    // connection is closed without a byte in answer.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"RNL\x01").unwrap();
    s.write_all(&wire::encode(&peer(7, secret.trim().as_bytes()).handshake()).unwrap())
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "the Kafka port answered the internal handshake"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // On an internal port, a guessed secret gets no link; the real one does.
        assert!(
            dial(controller.clone(), peer(7, b"not the cluster's secret"))
                .await
                .is_none(),
            "a link without the secret"
        );
        let node = dial(controller.clone(), peer(7, secret.trim().as_bytes()))
            .await
            .expect("a node with the secret links up");

        // Even a node speaks only for itself: registering broker 1 from node
        // 7's link is dropped (broker 1 keeps its endpoint).
        let forged = PeerMessage::ControllerRequest {
            id: 1,
            request: ControllerRequest::RegisterBroker {
                broker: 1,
                endpoint: "forged:1".into(),
                internal_endpoint: "forged:2".into(),
            },
        };
        node.send(wire::encode(&forged).unwrap()).await.unwrap();

        // A tool may ask for status, and nothing else.
        let tool = LinkIdentity {
            role: LinkRole::Tool,
            secret: LinkSecret::default(),
            ..peer(2_000_000_007, b"")
        };
        let mut link = ToolLink::connect(&controller, tool.clone()).await.unwrap();
        assert!(matches!(
            link.ask(&PeerMessage::StatusRequest).await,
            Ok(PeerMessage::StatusResponse(_))
        ));
        let create = PeerMessage::ControllerRequest {
            id: 2,
            request: ControllerRequest::CreateTopic {
                name: "made-by-a-tool".into(),
                partitions: Some(1),
                replication_factor: Some(1),
                configs: BTreeMap::new(),
            },
        };
        let refused = tokio::time::timeout(Duration::from_secs(5), link.ask(&create)).await;
        assert!(
            matches!(refused, Ok(Err(_))),
            "the node closes a tool link that sends a node's request: {refused:?}"
        );
    });
    // What the refused messages asked for did not happen.
    let listed = topics(&c);
    assert!(!listed.contains("made-by-a-tool"), "{listed}");
    let brokers = stdout(&tool(
        &["broker-api-versions", "--bootstrap-server", &c.bootstrap()],
        None,
        Duration::from_secs(20),
    ));
    assert!(!brokers.contains("forged"), "{brokers}");
    assert_eq!(brokers.matches("(id: ").count(), 3, "{brokers}");
}
