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

/// A link dialled as a node: its sender and its events.
struct Dialled {
    tx: mpsc::Sender<Vec<u8>>,
    events: mpsc::Receiver<NetEvent>,
    _task: tokio::task::JoinHandle<()>,
}

impl Dialled {
    /// Asks for status on the link and waits for the answer: everything
    /// sent on it before has then been handled by the node (one link, in
    /// order).
    async fn round_trip(&mut self) {
        // Asked again every 2 s: the node answers a peer on the link it
        // picks for that peer, which may for a moment be an earlier link
        // of the same node id still closing (its answer is then lost).
        for _ in 0..10 {
            self.tx
                .send(wire::encode(&PeerMessage::StatusRequest).unwrap())
                .await
                .unwrap();
            let answered = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    match self.events.recv().await.expect("link events") {
                        NetEvent::Message {
                            message: PeerMessage::StatusResponse(_),
                            ..
                        } => return,
                        NetEvent::Down { .. } => panic!("the link closed"),
                        _ => continue,
                    }
                }
            })
            .await;
            if answered.is_ok() {
                return;
            }
        }
        panic!("no status answer on the link in 20 s");
    }
}

impl Drop for Dialled {
    /// The connector would otherwise keep the link up (and redial).
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// Dials `address` as `me`; the link if it comes up within 5 s.
async fn dial(address: String, me: LinkIdentity) -> Option<Dialled> {
    let (tx, mut events) = mpsc::channel(1024);
    let task = tokio::spawn(transport::connector(
        address,
        me,
        LinkTimeouts::default(),
        tx,
    ));
    let up = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await? {
                NetEvent::Up { tx, .. } => return Some(tx),
                _ => continue,
            }
        }
    })
    .await
    .ok()
    .flatten();
    match up {
        Some(tx) => Some(Dialled {
            tx,
            events,
            _task: task,
        }),
        None => {
            task.abort();
            None
        }
    }
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
        assert!(
            dial(controller.clone(), peer(7, secret.trim().as_bytes()))
                .await
                .is_some(),
            "a node with the secret links up"
        );

        // Even a node speaks only for itself: node 7 asking every
        // coordinator to shut broker 1 down (any of its likely epochs) is
        // dropped; if it were not, broker 1 would stay shutting down and
        // out of the metadata for good.
        for i in 0..3 {
            let address = format!("127.0.0.1:{}", c.port + 100 + i);
            let mut link = dial(address, peer(7, secret.trim().as_bytes()))
                .await
                .expect("link");
            for epoch in 1..=10 {
                let forged = PeerMessage::ControllerRequest {
                    session: 7,
                    id: epoch,
                    request: ControllerRequest::ControlledShutdown { broker: 1, epoch },
                };
                link.tx.send(wire::encode(&forged).unwrap()).await.unwrap();
            }
            link.round_trip().await;
        }

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
            session: 7,
            id: 2,
            request: ControllerRequest::CreateTopic {
                assignment: None,
                name: "made-by-a-tool".into(),
                partitions: Some(1),
                replication_factor: Some(1),
                configs: BTreeMap::new(),
                topic_id: 1,
            },
        };
        let refused = tokio::time::timeout(Duration::from_secs(5), link.ask(&create)).await;
        assert!(
            matches!(refused, Ok(Err(_))),
            "the node closes a tool link that sends a node's request: {refused:?}"
        );
    });
    // What the refused messages asked for did not happen: a topic created
    // now is decided after them (the controller decides in order), so once
    // it shows, so would any of theirs.
    c.create_topic("after-the-forgeries", 1);
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
