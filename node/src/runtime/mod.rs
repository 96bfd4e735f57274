//! The runtime: settings, the internal transport, the durable quorum store,
//! and the event loop that drives the model's state machines. `serve` binds
//! the listeners and runs a node until the process stops.

pub mod messages;
pub mod node;
pub mod quorum_store;
pub mod settings;
pub mod transport;

use self::messages::INTERNAL_MAGIC;
use self::node::{Node, NodeHandle};
use self::settings::{HostPort, NodeSettings};
use self::transport::NetEvent;
use crate::io::{TcpListener, TcpStream};
use crate::wire::{self, Handshake};
use tokio::sync::mpsc;

/// Binds every listener (so errors surface before anything runs), then
/// spawns the node. Returns the handle and the node task.
pub async fn start(
    settings: NodeSettings,
) -> anyhow::Result<(NodeHandle, tokio::task::JoinHandle<()>)> {
    for w in &settings.warnings {
        tracing::warn!("config: {w}");
    }
    if settings.test_bugs != Default::default() {
        tracing::warn!(
            "RUNNEL_TEST_BUGS: seeded bugs are ON ({:?}); this node is unsafe",
            settings.test_bugs
        );
    }
    let kafka = bind_all(&settings.kafka_listeners).await?;
    let internal = bind_all(&settings.coordinator_listeners).await?;
    let (node, handle, events, net) = Node::open(settings.clone())?;
    let me = Handshake {
        protocol_version: wire::PROTOCOL_VERSION,
        cluster_id: settings.cluster_id.clone(),
        node_id: settings.node_id,
    };
    let net_tx = node_net_sender(&node);
    for l in kafka {
        tokio::spawn(accept_loop(
            l,
            me.clone(),
            net_tx.clone(),
            Some(handle.clone()),
        ));
    }
    for l in internal {
        tokio::spawn(accept_loop(l, me.clone(), net_tx.clone(), None));
    }
    let task = tokio::spawn(node.run(events, net));
    Ok((handle, task))
}

fn node_net_sender(node: &Node) -> mpsc::Sender<NetEvent> {
    node.net_sender()
}

/// Binds `host:port`; an empty host means every interface, IPv6 and IPv4
/// (a dual-stack socket), and `localhost` means both loopbacks, because
/// clients may resolve it to ::1.
async fn bind_all(listeners: &[HostPort]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for hp in listeners {
        let candidates: Vec<String> = match hp.host.as_str() {
            // The simulated network is IPv4 only.
            _ if crate::io::SIMULATED => vec![format!("0.0.0.0:{}", hp.port)],
            "" | "0.0.0.0" | "::" => {
                vec![format!("[::]:{}", hp.port), format!("0.0.0.0:{}", hp.port)]
            }
            "localhost" => vec![
                format!("127.0.0.1:{}", hp.port),
                format!("[::1]:{}", hp.port),
            ],
            h if h.contains(':') => vec![format!("[{h}]:{}", hp.port)],
            h => vec![format!("{h}:{}", hp.port)],
        };
        let mut bound = 0;
        let mut last_error = None;
        for (i, addr) in candidates.iter().enumerate() {
            match TcpListener::bind(addr.as_str()).await {
                Ok(l) => {
                    tracing::info!("listening on {addr}");
                    out.push(l);
                    bound += 1;
                    // The dual-stack socket also takes IPv4.
                    if i == 0 && (hp.host.is_empty() || hp.host == "::" || hp.host == "0.0.0.0") {
                        break;
                    }
                }
                Err(e) => last_error = Some(format!("{addr}: {e}")),
            }
        }
        if bound == 0 {
            anyhow::bail!("cannot listen on {hp}: {}", last_error.unwrap_or_default());
        }
    }
    Ok(out)
}

async fn accept_loop(
    listener: TcpListener,
    me: Handshake,
    net: mpsc::Sender<NetEvent>,
    kafka: Option<NodeHandle>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let me = me.clone();
        let net = net.clone();
        let kafka = kafka.clone();
        tokio::spawn(async move { dispatch(stream, me, net, kafka).await });
    }
}

/// An internal peer starts with the magic; anything else on a Kafka
/// listener is a Kafka client.
async fn dispatch(
    mut stream: TcpStream,
    me: Handshake,
    net: mpsc::Sender<NetEvent>,
    kafka: Option<NodeHandle>,
) {
    // Whoever connects must say something within the idle bound of what it
    // may be: `connections.max.idle.ms` where Kafka clients are served.
    let idle_ms = match &kafka {
        Some(node) => node.settings.connections_max_idle_ms,
        None => transport::LinkTimeouts::default().idle_timeout_ms,
    };
    let mut first = [0u8; 4];
    let within = std::time::Duration::from_millis(idle_ms);
    if crate::io::read_exact_within(&mut stream, &mut first, within)
        .await
        .is_err()
    {
        return;
    }
    if first == INTERNAL_MAGIC {
        transport::accepted(stream, me, transport::LinkTimeouts::default(), net).await;
    } else if let Some(node) = kafka {
        crate::kafka::server::serve(stream, first, node).await;
    }
}
