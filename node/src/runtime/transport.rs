//! Internal TCP links between nodes: connect (with retry), the magic prefix
//! and handshake (protocol version, cluster id, node id, role, nonce), the
//! proof of the cluster secret (`wire::LinkSecret`), then postcard frames
//! both ways. Nothing but the two small handshake frames is read from a
//! peer that has not proven itself. Every connection reports `Up`, its messages and `Down`
//! to the node's event loop; the loop sends by handing encoded frames to a
//! bounded per-connection queue (a full queue closes the link: the protocols
//! treat a broken link as lost messages and retry). An idle link carries
//! keep-alives, and a link that hears nothing for `idle_timeout_ms` is
//! closed: a peer that lost power or sits behind a partition leaves a
//! half-open TCP connection that would otherwise look alive for as long as
//! TCP's own timers take (Kafka closes such links after
//! `replica.socket.timeout.ms`).

use super::messages::{PeerMessage, INTERNAL_MAGIC};
use crate::io::TcpStream;
use crate::wire::{
    self, FrameDecoder, Handshake, LinkIdentity, LinkRole, Proof, Side, HANDSHAKE_BYTES_MAX,
};
use runnel_model::core::NodeId;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub type ConnId = u64;
/// Frames waiting to be written on one connection.
pub const CONNECTION_QUEUE_FRAMES_MAX: usize = 4096;
/// Internal frames are bounded too (a full replication batch of a few MB).
pub const INTERNAL_FRAME_BYTES_MAX: usize = 256 << 20;
const CONNECT_RETRY_MS: u64 = 200;
/// Room made in a link's read buffer before each read.
const READ_CHUNK_BYTES: usize = 64 << 10;
const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// How a link tells a quiet peer from a gone one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTimeouts {
    /// A keep-alive leaves after this long without any other frame.
    pub keepalive_ms: u64,
    /// The link closes after this long without any byte from the peer.
    pub idle_timeout_ms: u64,
}

impl Default for LinkTimeouts {
    /// Ten keep-alives may go missing before the link closes; longer than
    /// any pause the fault suites inject on purpose (≤ 8 s), far shorter
    /// than TCP's retransmission timeout (minutes).
    fn default() -> Self {
        LinkTimeouts {
            keepalive_ms: 1_000,
            idle_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug)]
pub enum NetEvent {
    Up {
        conn: ConnId,
        peer: NodeId,
        /// A tool's link may only ask for status; it never carries a peer's traffic.
        role: LinkRole,
        outbound: bool,
        tx: mpsc::Sender<Vec<u8>>,
    },
    Down {
        conn: ConnId,
        peer: NodeId,
    },
    Message {
        conn: ConnId,
        from: NodeId,
        message: PeerMessage,
    },
}

/// Keeps a connection to `address` open for as long as the task runs.
pub async fn connector(
    address: String,
    me: LinkIdentity,
    timeouts: LinkTimeouts,
    events: mpsc::Sender<NetEvent>,
) {
    let never = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    connector_until(address, me, timeouts, events, never).await
}

/// As [`connector`], but stops reconnecting once `stop` is set (the link it
/// has lives until it breaks, and reports `Down` as always).
pub async fn connector_until(
    address: String,
    me: LinkIdentity,
    timeouts: LinkTimeouts,
    events: mpsc::Sender<NetEvent>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            TcpStream::connect(address.as_str()),
        )
        .await
        {
            let _ = stream.set_nodelay(true);
            match run_connection(stream, &me, true, timeouts, &events).await {
                Err(e) if e.contains("incompatible") => {
                    tracing::error!("{address}: {e}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                _ => {}
            }
        }
        if events.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(CONNECT_RETRY_MS)).await;
    }
}

/// Serves an accepted internal connection (its magic already read).
pub async fn accepted(
    stream: TcpStream,
    me: LinkIdentity,
    timeouts: LinkTimeouts,
    events: mpsc::Sender<NetEvent>,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    match run_connection(stream, &me, false, timeouts, &events).await {
        Err(e) if e.contains("secret") => tracing::warn!("internal connection from {peer}: {e}"),
        Err(e) => tracing::debug!("internal connection from {peer} closed: {e}"),
        Ok(()) => {}
    }
}

/// Both handshakes and proofs, on a fresh connection: who the peer is, and
/// (for a peer) that it knows the cluster secret. The dialer proves first;
/// the acceptor checks that proof before it sends its own, and never proves
/// anything to a tool, so an unauthenticated party can never obtain a proof
/// to relay. Returns the peer's handshake; `decoder` keeps whatever followed.
async fn introduce(
    stream: &mut TcpStream,
    me: &LinkIdentity,
    outbound: bool,
    decoder: &mut FrameDecoder,
) -> Result<Handshake, String> {
    let mine = me.handshake();
    if outbound {
        stream
            .write_all(&INTERNAL_MAGIC)
            .await
            .map_err(|e| e.to_string())?;
    }
    let hello = wire::encode(&mine).map_err(|e| e.to_string())?;
    stream.write_all(&hello).await.map_err(|e| e.to_string())?;
    let exchange = async {
        let peer: Handshake = read_frame(stream, decoder).await?;
        mine.check_peer(&peer).map_err(|e| e.to_string())?;
        let send = |proof: Proof| wire::encode(&proof).map_err(|e| e.to_string());
        match (outbound, me.role, peer.role) {
            // A node dials a node: prove, then check the acceptor's proof.
            (true, LinkRole::Peer, LinkRole::Peer) => {
                let proof = me.secret.prove(Side::Dialer, &mine, &peer);
                stream
                    .write_all(&send(proof)?)
                    .await
                    .map_err(|e| e.to_string())?;
                let theirs: Proof = read_frame(stream, decoder).await?;
                me.secret
                    .verify(Side::Acceptor, &mine, &peer, &theirs)
                    .map_err(|e| e.to_string())?;
            }
            // A node is dialled by a node: check its proof, then prove.
            (false, LinkRole::Peer, LinkRole::Peer) => {
                let theirs: Proof = read_frame(stream, decoder).await?;
                me.secret
                    .verify(Side::Dialer, &peer, &mine, &theirs)
                    .map_err(|e| e.to_string())?;
                let proof = me.secret.prove(Side::Acceptor, &peer, &mine);
                stream
                    .write_all(&send(proof)?)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            // A tool dials a node: it proves nothing and gets no proof (it
            // could not check one); the node lets it ask for status only.
            (true, LinkRole::Tool, LinkRole::Peer) | (false, LinkRole::Peer, LinkRole::Tool) => {}
            _ => return Err("a link joins a dialer and a node accepting it".into()),
        }
        Ok(peer)
    };
    tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), exchange)
        .await
        .map_err(|_| "handshake timed out".to_string())?
}

async fn run_connection(
    mut stream: TcpStream,
    me: &LinkIdentity,
    outbound: bool,
    timeouts: LinkTimeouts,
    events: &mpsc::Sender<NetEvent>,
) -> Result<(), String> {
    assert!(timeouts.keepalive_ms < timeouts.idle_timeout_ms);
    let mut decoder = FrameDecoder::new(HANDSHAKE_BYTES_MAX);
    let peer = introduce(&mut stream, me, outbound, &mut decoder).await?;
    decoder.set_frame_bytes_max(INTERNAL_FRAME_BYTES_MAX);
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONNECTION_QUEUE_FRAMES_MAX);
    let (mut reader, mut writer) = stream.into_split();
    events
        .send(NetEvent::Up {
            conn,
            peer: peer.node_id,
            role: peer.role,
            outbound,
            tx,
        })
        .await
        .map_err(|_| "node stopped")?;
    let keepalive = wire::encode(&PeerMessage::KeepAlive).map_err(|e| e.to_string())?;
    let write = async move {
        let quiet = Duration::from_millis(timeouts.keepalive_ms);
        loop {
            let frame = match tokio::time::timeout(quiet, rx.recv()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => keepalive.clone(),
            };
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    };
    let read = async {
        loop {
            loop {
                match decoder.next_message::<PeerMessage>() {
                    Ok(Some(PeerMessage::KeepAlive)) => {}
                    Ok(Some(message)) => {
                        let event = NetEvent::Message {
                            conn,
                            from: peer.node_id,
                            message,
                        };
                        if events.send(event).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("node {}: {e}; closing the link", peer.node_id);
                        return;
                    }
                }
            }
            let idle = Duration::from_millis(timeouts.idle_timeout_ms);
            // Straight into the decoder's buffer: the frames (and the record
            // batches in them, `wire::frame_slice`) are slices of what the
            // socket wrote there.
            let into = decoder.read_buffer(READ_CHUNK_BYTES);
            match tokio::time::timeout(idle, reader.read_buf(into)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::warn!(
                        "node {}: nothing heard for {} ms; closing the link",
                        peer.node_id,
                        timeouts.idle_timeout_ms
                    );
                    return;
                }
            }
        }
    };
    tokio::select! {
        biased;
        _ = write => {}
        _ = read => {}
    }
    let _ = events
        .send(NetEvent::Down {
            conn,
            peer: peer.node_id,
        })
        .await;
    Ok(())
}

async fn read_frame<T: DeserializeOwned>(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<T, String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(h) = decoder.next_message::<T>().map_err(|e| e.to_string())? {
            return Ok(h);
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        decoder.push(&buf[..n]);
    }
}

/// A tool's internal connection (the CLI's `quorum status`, the fault
/// suites' quorum observer): one request at a time, answered in order. A
/// failed or abandoned exchange leaves the stream in an unknown state: drop
/// the link and connect again.
pub struct ToolLink {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl ToolLink {
    pub async fn connect(address: &str, me: LinkIdentity) -> Result<ToolLink, String> {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let mut decoder = FrameDecoder::new(HANDSHAKE_BYTES_MAX);
        introduce(&mut stream, &me, true, &mut decoder).await?;
        decoder.set_frame_bytes_max(INTERNAL_FRAME_BYTES_MAX);
        Ok(ToolLink { stream, decoder })
    }

    /// Sends `request`; returns the next message that is not the link's
    /// own chatter (`Hello`, keep-alives).
    pub async fn ask(&mut self, request: &PeerMessage) -> Result<PeerMessage, String> {
        self.stream
            .write_all(&wire::encode(request).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        loop {
            match self
                .decoder
                .next_message::<PeerMessage>()
                .map_err(|e| e.to_string())?
            {
                Some(PeerMessage::Hello { .. } | PeerMessage::KeepAlive) => continue,
                Some(m) => return Ok(m),
                None => {}
            }
            let n = self
                .stream
                .read(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.decoder.push(&buf[..n]);
        }
    }
}

/// A one-off request/response exchange on a fresh [`ToolLink`].
pub async fn ask(
    address: &str,
    me: LinkIdentity,
    request: &PeerMessage,
    timeout: Duration,
) -> Result<PeerMessage, String> {
    let work = async { ToolLink::connect(address, me).await?.ask(request).await };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[cfg(all(test, not(feature = "sim")))]
mod tests {
    use super::*;
    use crate::io::TcpListener;
    use crate::wire::LinkSecret;
    use tokio::time::Instant;

    const FAST: LinkTimeouts = LinkTimeouts {
        keepalive_ms: 50,
        idle_timeout_ms: 400,
    };

    fn with_secret(node_id: NodeId, secret: &str) -> LinkIdentity {
        LinkIdentity {
            cluster_id: "test".into(),
            node_id,
            role: LinkRole::Peer,
            secret: LinkSecret::new(secret.as_bytes().to_vec()),
        }
    }

    fn me(node_id: NodeId) -> LinkIdentity {
        with_secret(node_id, "the cluster's own secret")
    }

    /// A node's side of one accepted connection, and the events it reports.
    async fn serve_one() -> (String, mpsc::Receiver<NetEvent>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut magic = [0u8; 4];
            stream.read_exact(&mut magic).await.unwrap();
            accepted(stream, me(1), FAST, tx).await;
        });
        (address, rx)
    }

    #[tokio::test]
    async fn a_peer_that_goes_silent_is_dropped_after_the_idle_timeout() {
        let (address, mut events) = serve_one().await;
        // A peer that completes the handshake, then never sends a byte (as
        // one behind a partition or without power would).
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let mut decoder = FrameDecoder::new(HANDSHAKE_BYTES_MAX);
        let node = introduce(&mut stream, &me(2), true, &mut decoder)
            .await
            .unwrap();
        assert_eq!(node.node_id, 1);
        decoder.set_frame_bytes_max(INTERNAL_FRAME_BYTES_MAX);
        let up = events.recv().await.unwrap();
        assert!(matches!(up, NetEvent::Up { peer: 2, .. }));
        let started = Instant::now();
        let down = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the link closes by itself")
            .unwrap();
        assert!(matches!(down, NetEvent::Down { peer: 2, .. }));
        let waited_ms = started.elapsed().as_millis() as u64;
        assert!(
            waited_ms >= FAST.idle_timeout_ms - 50,
            "closed after {waited_ms} ms, before the idle timeout"
        );
        // Meanwhile the node kept the link alive from its side.
        let mut buf = vec![0u8; 4096];
        let mut keepalives = 0;
        loop {
            while let Ok(Some(frame)) = decoder.next_message::<PeerMessage>() {
                keepalives += matches!(frame, PeerMessage::KeepAlive) as u32;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => decoder.push(&buf[..n]),
            }
        }
        assert!(keepalives >= 3, "{keepalives} keep-alives");
    }

    /// Only a node that proves the cluster secret becomes a peer; a tool
    /// becomes a tool link (which the node lets ask for status only).
    #[tokio::test]
    async fn links_need_the_cluster_secret() {
        let (address, mut events) = serve_one().await;
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let mut decoder = FrameDecoder::new(HANDSHAKE_BYTES_MAX);
        let impostor = with_secret(2, "a guess at the secret");
        // The impostor may not be able to tell (it cannot check the node's
        // proof either), but the node never reports a link.
        let _ = introduce(&mut stream, &impostor, true, &mut decoder).await;
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the node closes it"
        );
        assert!(events.try_recv().is_err(), "no link came up");

        let (address, mut events) = serve_one().await;
        let tool = LinkIdentity {
            role: LinkRole::Tool,
            secret: LinkSecret::default(),
            ..me(2_000_000_001)
        };
        let _link = ToolLink::connect(&address, tool).await.unwrap();
        let up = events.recv().await.unwrap();
        assert!(matches!(
            up,
            NetEvent::Up {
                peer: 2_000_000_001,
                role: LinkRole::Tool,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_quiet_link_between_two_nodes_stays_up() {
        let (address, mut accepted_events) = serve_one().await;
        let (tx, mut connector_events) = mpsc::channel(64);
        let task = tokio::spawn(connector(address, me(2), FAST, tx));
        // Held as the event loop holds them: dropping an `Up`'s sender
        // closes the link.
        let up_accepted = accepted_events.recv().await;
        let up_connector = connector_events.recv().await;
        assert!(matches!(up_accepted, Some(NetEvent::Up { peer: 2, .. })));
        assert!(matches!(up_connector, Some(NetEvent::Up { peer: 1, .. })));
        // Three idle timeouts without a message: keep-alives carry it, and
        // none of them reaches the event loop.
        let quiet = Duration::from_millis(3 * FAST.idle_timeout_ms);
        if let Ok(event) = tokio::time::timeout(quiet, accepted_events.recv()).await {
            panic!("the quiet link reported {event:?}");
        }
        assert!(connector_events.try_recv().is_err());
        task.abort();
    }
}
