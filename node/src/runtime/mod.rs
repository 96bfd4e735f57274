//! The runtime: settings, the internal transport, the durable quorum store,
//! and the event loop that drives the model's state machines. `serve` binds
//! the listeners and runs a node until the process stops.

pub mod listener;
pub mod messages;
pub mod node;
pub mod open_pool;
pub mod parked_fetches;
pub mod quorum_store;
pub mod settings;
pub mod timers;
pub mod transport;

use self::node::{Node, NodeHandle};
use self::settings::{HostPort, NodeSettings};
use self::transport::NetEvent;
use crate::wire::{LinkIdentity, LinkRole};
use tokio::sync::mpsc;

/// Binds every listener (so errors surface before anything runs), then
/// spawns the node. Returns the handle and the node task.
pub async fn start(
    mut settings: NodeSettings,
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
    if !settings.cluster_secret.is_configured() {
        tracing::warn!(
            "no cluster.secret.file: internal links are not authenticated, so any process that \
             reaches an internal listener can act as a node (Kafka clients cannot: Kafka \
             listeners never speak the internal protocol)"
        );
    }
    let kafka = listener::bind_all(&settings.kafka_listeners).await?;
    let mut internal = listener::bind_all(&settings.coordinator_listeners).await?;
    if settings.broker {
        let (bound, endpoint) = bind_broker_listener(&settings).await?;
        tracing::info!("other brokers replicate from {endpoint}");
        internal.extend(bound);
        settings.advertised_broker_listener = Some(endpoint);
    }
    let (node, handle, events, net) = Node::open(settings.clone())?;
    let me = LinkIdentity {
        cluster_id: settings.cluster_id.clone(),
        node_id: settings.node_id,
        role: LinkRole::Peer,
        secret: settings.cluster_secret.clone(),
    };
    let net_tx = node_net_sender(&node);
    let client_limits = listener::ConnectionLimits::for_clients(&settings);
    for l in kafka {
        tokio::spawn(listener::accept_clients(
            l,
            client_limits.clone(),
            handle.clone(),
        ));
    }
    let peer_limits = listener::ConnectionLimits::for_peers(&settings);
    for l in internal {
        tokio::spawn(listener::accept_peers(
            l,
            peer_limits.clone(),
            me.clone(),
            net_tx.clone(),
        ));
    }
    let task = tokio::spawn(node.run(events, net));
    Ok((handle, task))
}

/// The broker's internal listener and how other brokers reach it: the
/// `inter.broker.listener.name` listener; else a combined node's
/// coordinator listener (already bound); else a new one on the Kafka
/// listener's host, on a port the system picks.
async fn bind_broker_listener(
    s: &NodeSettings,
) -> anyhow::Result<(Vec<crate::io::TcpListener>, HostPort)> {
    let advertised_host = s
        .advertised_endpoint()
        .map(|hp| hp.host)
        .unwrap_or_else(|| "localhost".into());
    let reachable = |hp: &HostPort| {
        let mut hp = hp.clone();
        if matches!(hp.host.as_str(), "" | "0.0.0.0" | "::") {
            hp.host = advertised_host.clone();
        }
        hp
    };
    if let Some(hp) = &s.broker_listener {
        let bound = listener::bind_all(std::slice::from_ref(hp)).await?;
        let endpoint = s
            .advertised_broker_listener
            .clone()
            .unwrap_or_else(|| reachable(hp));
        return Ok((bound, endpoint));
    }
    if let Some(hp) = s.coordinator_listeners.first() {
        return Ok((Vec::new(), reachable(hp)));
    }
    let mut kafka_host = s
        .kafka_listeners
        .first()
        .map(|hp| hp.host.clone())
        .unwrap_or_default();
    let wildcard = matches!(kafka_host.as_str(), "" | "0.0.0.0" | "::");
    if wildcard && !s.cluster_secret.is_configured() && !crate::io::SIMULATED {
        // Without a secret nothing authenticates a link: keep the internal
        // protocol on this machine. A cluster across machines sets
        // cluster.secret.file (or inter.broker.listener.name).
        tracing::warn!(
            "no cluster.secret.file: the broker's internal listener binds 127.0.0.1 only, so \
             brokers on other machines cannot replicate from it"
        );
        kafka_host = "127.0.0.1".into();
    }
    let (bound, port) = listener::bind_any_port(&kafka_host).await?;
    let host = match kafka_host.as_str() {
        "" | "0.0.0.0" | "::" => advertised_host,
        // One address of the host (the listener's): peers dial exactly it.
        _ => bound.local_addr()?.ip().to_string(),
    };
    Ok((vec![bound], HostPort { host, port }))
}

fn node_net_sender(node: &Node) -> mpsc::Sender<NetEvent> {
    node.net_sender()
}
