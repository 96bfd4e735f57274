//! Listeners: binding every address a listener names, accepting within the
//! client connection limits, and handing each connection to the Kafka front
//! end or the internal transport.
//!
//! Limits, with Kafka's keys (`specs/node.md` lists them all):
//! - `max.connections`: client connections open at once. A permit is taken
//!   *before* `accept`, so at the limit the listener stops accepting and new
//!   connections wait in the kernel's backlog until one closes (Kafka's
//!   acceptor blocks the same way).
//! - `max.connections.per.ip` (and `.overrides`): a connection beyond its
//!   address's limit is accepted and closed at once, as Kafka does.
//! - accept errors (EMFILE: out of descriptors) back off, 10 ms doubling to
//!   1 s, instead of spinning on a listener that stays readable.

use super::node::NodeHandle;
use super::settings::{HostPort, NodeSettings};
use super::transport::{self, NetEvent};
use crate::io::{TcpListener, TcpStream};
use crate::wire::LinkIdentity;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

const ACCEPT_BACKOFF_MIN_MS: u64 = 10;
const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;

/// Binds `host:port`. An empty host means every interface (one dual-stack
/// socket, or IPv4 alone where IPv6 is missing); any other host must bind
/// every address it names (`localhost`: 127.0.0.1 and ::1), because clients
/// may resolve it to either: a node that answered on one while another
/// process held the other would advertise an address half its clients
/// cannot reach. Errors name the address and why.
pub async fn bind_all(listeners: &[HostPort]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for hp in listeners {
        out.extend(bind_one(hp).await?);
    }
    Ok(out)
}

async fn bind_one(hp: &HostPort) -> anyhow::Result<Vec<TcpListener>> {
    if crate::io::SIMULATED {
        // The simulated network is IPv4 only.
        let l = TcpListener::bind(format!("0.0.0.0:{}", hp.port).as_str()).await?;
        return Ok(vec![l]);
    }
    let wildcard = matches!(hp.host.as_str(), "" | "0.0.0.0" | "::");
    if wildcard {
        // The dual-stack socket takes IPv4 too; without IPv6, IPv4 alone.
        let mut last = None;
        for addr in [format!("[::]:{}", hp.port), format!("0.0.0.0:{}", hp.port)] {
            match TcpListener::bind(addr.as_str()).await {
                Ok(l) => {
                    tracing::info!("listening on {addr}");
                    return Ok(vec![l]);
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        anyhow::bail!("cannot listen on {hp}: {}", last.unwrap_or_default());
    }
    let addresses: Vec<std::net::SocketAddr> = match hp.host.parse::<IpAddr>() {
        Ok(ip) => vec![(ip, hp.port).into()],
        Err(_) => tokio::net::lookup_host((hp.host.as_str(), hp.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot resolve listener host {:?}: {e}", hp.host))?
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let mut bound = Vec::new();
    for addr in addresses {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!("listening on {addr}");
                bound.push(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                // This machine has no such address family (no IPv6): no
                // client can reach it there either.
                tracing::info!("{addr}: {e}; not listening there");
            }
            Err(e) => anyhow::bail!(
                "cannot listen on {hp}: {addr}: {e} (another process holds that address; \
                 every address {} resolves to must be free)",
                hp.host
            ),
        }
    }
    if bound.is_empty() {
        anyhow::bail!(
            "cannot listen on {hp}: no address of {:?} can be bound",
            hp.host
        );
    }
    Ok(bound)
}

/// A listener on `host` (every interface if empty) on a port the system
/// picks: one socket, so one port (binding each address of a name
/// separately would give each its own port).
pub async fn bind_any_port(host: &str) -> anyhow::Result<(TcpListener, u16)> {
    let addr = match host {
        _ if crate::io::SIMULATED => "0.0.0.0:0".to_string(),
        "" | "0.0.0.0" | "::" => "[::]:0".to_string(),
        h => {
            let first = tokio::net::lookup_host((h, 0))
                .await
                .map_err(|e| anyhow::anyhow!("cannot resolve {h:?}: {e}"))?
                .next()
                .ok_or_else(|| anyhow::anyhow!("{h:?} resolves to no address"))?;
            first.to_string()
        }
    };
    let l = match TcpListener::bind(addr.as_str()).await {
        Ok(l) => l,
        // No IPv6 on this machine: IPv4 alone.
        Err(_) if addr == "[::]:0" => TcpListener::bind("0.0.0.0:0").await?,
        Err(e) => anyhow::bail!("cannot listen on {addr}: {e}"),
    };
    let port = l.local_addr()?.port();
    tracing::info!("listening on {} (internal)", l.local_addr()?);
    Ok((l, port))
}

/// The client connection limits of one node, shared by its Kafka listeners.
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip_max: usize,
    per_ip_overrides: BTreeMap<IpAddr, usize>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place within the limits; freed when dropped.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    limits: Arc<ConnectionLimits>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().expect("not poisoned");
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// Kafka clients: `max.connections` and the per-address limits.
    pub fn for_clients(s: &NodeSettings) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(s.max_connections)),
            per_ip_max: s.max_connections_per_ip,
            per_ip_overrides: s.max_connections_per_ip_overrides.clone(),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Internal listeners: a budget of their own, independent of the
    /// clients' `max.connections` (Kafka exempts its inter-broker listener
    /// too), a quarter of the open-files limit up to 1,024; no limit per
    /// address (a cluster on one host links from one address). Connections
    /// that never prove themselves close after the handshake timeout.
    pub fn for_peers(_s: &NodeSettings) -> Arc<ConnectionLimits> {
        let max = (crate::limits::open_files_limit() / 4).clamp(16, 1024) as usize;
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(max)),
            per_ip_max: usize::MAX,
            per_ip_overrides: BTreeMap::new(),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip` against its address's limit.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        permit: OwnedSemaphorePermit,
    ) -> Result<ConnectionSlot, usize> {
        let max = *self.per_ip_overrides.get(&ip).unwrap_or(&self.per_ip_max);
        let mut per_ip = self.per_ip.lock().expect("not poisoned");
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return Err(max);
        }
        *n += 1;
        Ok(ConnectionSlot {
            _permit: permit,
            ip,
            limits: self.clone(),
        })
    }
}

/// Accepts Kafka clients. Whatever a connection sends is read as Kafka
/// requests: the internal protocol's magic is a 1.3 GB request size here,
/// refused like any other (internal links have their own listeners).
pub async fn accept_clients(
    listener: TcpListener,
    limits: Arc<ConnectionLimits>,
    node: NodeHandle,
) {
    loop {
        let Some((stream, slot)) = accept_within(&listener, &limits).await else {
            return;
        };
        let node = node.clone();
        tokio::spawn(async move {
            serve_client(stream, node).await;
            drop(slot);
        });
    }
}

/// Accepts peers (and tools) on an internal listener.
pub async fn accept_peers(
    listener: TcpListener,
    limits: Arc<ConnectionLimits>,
    me: LinkIdentity,
    net: mpsc::Sender<NetEvent>,
) {
    loop {
        let Some((stream, slot)) = accept_within(&listener, &limits).await else {
            return;
        };
        let (me, net) = (me.clone(), net.clone());
        tokio::spawn(async move {
            serve_peer(stream, me, net).await;
            drop(slot);
        });
    }
}

/// The next connection within the limits; `None` once the node stops.
async fn accept_within(
    listener: &TcpListener,
    limits: &Arc<ConnectionLimits>,
) -> Option<(TcpStream, ConnectionSlot)> {
    let mut backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    loop {
        // At the limit the permit waits, and so do new connections (in the
        // kernel's backlog): Kafka's acceptor blocks the same way.
        let permit = limits.total.clone().acquire_owned().await.ok()?;
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => {
                backoff_ms = ACCEPT_BACKOFF_MIN_MS;
                accepted
            }
            Err(e) => {
                backoff_ms = accept_failed(e, backoff_ms).await;
                continue;
            }
        };
        match limits.admit(addr.ip(), permit) {
            Ok(slot) => return Some((stream, slot)),
            Err(max) => tracing::warn!(
                "rejected connection from {}: it already has the configured maximum of {max} \
                 connections (max.connections.per.ip)",
                addr.ip()
            ), // dropping the stream closes it
        }
    }
}

/// An accept error (EMFILE, ENFILE, ENOBUFS...) leaves the listener
/// readable: waiting before the next try keeps the loop from spinning.
/// Returns the next backoff.
async fn accept_failed(e: std::io::Error, backoff_ms: u64) -> u64 {
    tracing::warn!("accept failed: {e}; retrying in {backoff_ms} ms");
    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
    (backoff_ms * 2).min(ACCEPT_BACKOFF_MAX_MS)
}

/// A Kafka client: it must say something within `connections.max.idle.ms`.
async fn serve_client(mut stream: TcpStream, node: NodeHandle) {
    let mut first = [0u8; 4];
    let within = Duration::from_millis(node.settings.connections_max_idle_ms);
    if crate::io::read_exact_within(&mut stream, &mut first, within)
        .await
        .is_ok()
    {
        crate::kafka::server::serve(stream, first, node).await;
    }
}

/// A peer or tool: it starts with the internal magic, within the link idle
/// bound; anything else is closed.
async fn serve_peer(mut stream: TcpStream, me: LinkIdentity, net: mpsc::Sender<NetEvent>) {
    let timeouts = transport::LinkTimeouts::default();
    let mut first = [0u8; 4];
    let within = Duration::from_millis(timeouts.idle_timeout_ms);
    if crate::io::read_exact_within(&mut stream, &mut first, within)
        .await
        .is_ok()
        && first == super::messages::INTERNAL_MAGIC
    {
        transport::accepted(stream, me, timeouts, net).await;
    }
}
