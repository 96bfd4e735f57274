//! Internal TCP links between nodes: connect (with retry), the magic prefix
//! and handshake (protocol version, cluster id, node id), then postcard
//! frames both ways. Every connection reports `Up`, its messages and `Down`
//! to the node's event loop; the loop sends by handing encoded frames to a
//! bounded per-connection queue (a full queue closes the link: the protocols
//! treat a broken link as lost messages and retry).

use super::messages::{PeerMessage, INTERNAL_MAGIC};
use crate::io::TcpStream;
use crate::wire::{self, FrameDecoder, Handshake};
use runnel_model::core::NodeId;
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
const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub enum NetEvent {
    Up {
        conn: ConnId,
        peer: NodeId,
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
pub async fn connector(address: String, me: Handshake, events: mpsc::Sender<NetEvent>) {
    loop {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            TcpStream::connect(address.as_str()),
        )
        .await
        {
            let _ = stream.set_nodelay(true);
            match run_connection(stream, me.clone(), true, &events).await {
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
pub async fn accepted(stream: TcpStream, me: Handshake, events: mpsc::Sender<NetEvent>) {
    let _ = stream.set_nodelay(true);
    if let Err(e) = run_connection(stream, me, false, &events).await {
        tracing::debug!("internal connection closed: {e}");
    }
}

async fn run_connection(
    mut stream: TcpStream,
    me: Handshake,
    outbound: bool,
    events: &mpsc::Sender<NetEvent>,
) -> Result<(), String> {
    let mut decoder = FrameDecoder::new(INTERNAL_FRAME_BYTES_MAX);
    let hello = wire::encode(&me).map_err(|e| e.to_string())?;
    if outbound {
        stream
            .write_all(&INTERNAL_MAGIC)
            .await
            .map_err(|e| e.to_string())?;
    }
    stream.write_all(&hello).await.map_err(|e| e.to_string())?;
    let peer: Handshake = tokio::time::timeout(
        Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
        read_frame(&mut stream, &mut decoder),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())??;
    me.check_peer(&peer).map_err(|e| e.to_string())?;
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONNECTION_QUEUE_FRAMES_MAX);
    let (mut reader, mut writer) = stream.into_split();
    events
        .send(NetEvent::Up {
            conn,
            peer: peer.node_id,
            outbound,
            tx,
        })
        .await
        .map_err(|_| "node stopped")?;
    let write = async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            loop {
                match decoder.next::<PeerMessage>() {
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
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => decoder.push(&buf[..n]),
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

async fn read_frame(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<Handshake, String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(h) = decoder.next::<Handshake>().map_err(|e| e.to_string())? {
            return Ok(h);
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        decoder.push(&buf[..n]);
    }
}

/// A one-off request/response exchange (the CLI's `quorum status`).
pub async fn ask(
    address: &str,
    me: Handshake,
    request: &PeerMessage,
    timeout: Duration,
) -> Result<PeerMessage, String> {
    let work = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let mut decoder = FrameDecoder::new(INTERNAL_FRAME_BYTES_MAX);
        stream
            .write_all(&INTERNAL_MAGIC)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&wire::encode(&me).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let peer = read_frame(&mut stream, &mut decoder).await?;
        me.check_peer(&peer).map_err(|e| e.to_string())?;
        stream
            .write_all(&wire::encode(request).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        loop {
            match decoder.next::<PeerMessage>().map_err(|e| e.to_string())? {
                Some(PeerMessage::Hello { .. }) => continue,
                Some(m) => return Ok(m),
                None => {}
            }
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            decoder.push(&buf[..n]);
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "timed out".to_string())?
}
