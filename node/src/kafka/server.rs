//! Kafka client connections: size-prefixed frames in, one request at a time
//! (so pipelined requests are answered in order, as Kafka does by muting a
//! connection while it serves one), responses out. A frame above
//! `socket.request.max.bytes`, an unknown API key, an unsupported version or
//! a body that does not decode closes the connection (Kafka does the same);
//! ApiVersions with a too-new version gets the v0 error answer (KIP-511).

use super::fetch_encode::Segment;
use super::handlers;
use super::versions;
use crate::io::TcpStream;
use crate::runtime::node::NodeHandle;
use crate::storage::disk_log::FileSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A request, decoded.
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
    /// The client's address as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
}

/// Serves one client connection until it closes. `first` holds the four
/// bytes already read (the size of the first request).
pub async fn serve(mut stream: TcpStream, first: [u8; 4], node: NodeHandle) {
    let _ = stream.set_nodelay(true);
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    let client_host = peer_addr
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default();
    let idle = Duration::from_millis(node.settings.connections_max_idle_ms);
    let mut size_bytes = first;
    loop {
        let size = i32::from_be_bytes(size_bytes);
        if size < 8 || size as usize > node.settings.socket_request_max_bytes {
            tracing::warn!(
                "{peer}: request of {size} bytes (socket.request.max.bytes={}); closing",
                node.settings.socket_request_max_bytes
            );
            return;
        }
        let mut frame = vec![0u8; size as usize];
        if !read_within(&mut stream, &mut frame, idle, &peer).await {
            return;
        }
        let frame = Bytes::from(frame);
        let segments = match answer(frame, &client_host, &node).await {
            Ok(segments) => segments, // empty for acks=0: no response at all
            Err(why) => {
                tracing::warn!("{peer}: {why}; closing the connection");
                return;
            }
        };
        for segment in segments {
            let written = match segment {
                Segment::Bytes(b) => stream.write_all(&b).await,
                Segment::File(f) => send_file(&mut stream, &f).await,
            };
            if let Err(e) = written {
                tracing::debug!("{peer}: {e}; closing the connection");
                return;
            }
        }
        if !read_within(&mut stream, &mut size_bytes, idle, &peer).await {
            return;
        }
    }
}

/// Fills `buf`, or says why not: the client closed, or sent nothing for
/// `connections.max.idle.ms` (a request trickling in slower than that counts
/// as idle too: it holds a task and a buffer).
async fn read_within(stream: &mut TcpStream, buf: &mut [u8], idle: Duration, peer: &str) -> bool {
    match crate::io::read_exact_within(stream, buf, idle).await {
        Ok(()) => true,
        Err(crate::io::ReadStop::Closed) => false,
        Err(crate::io::ReadStop::Idle) => {
            tracing::debug!(
                "{peer}: idle for {} ms (connections.max.idle.ms); closing",
                idle.as_millis()
            );
            false
        }
    }
}

async fn answer(
    mut frame: Bytes,
    client_host: &str,
    node: &NodeHandle,
) -> Result<Vec<Segment>, String> {
    let api_key_raw = frame.clone().get_i16();
    let version = frame.clone().slice(2..).get_i16();
    let correlation_id = frame.clone().slice(4..).get_i32();
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        return Err(format!("unknown API key {api_key_raw}"));
    };
    let supported = versions::range(api_key);
    if api_key == ApiKey::ApiVersions && supported.is_some_and(|r| version > r.1) {
        return Ok(vec![Segment::Bytes(
            versions::unsupported_api_versions(correlation_id).freeze(),
        )]);
    }
    match supported {
        Some((min, max)) if (min..=max).contains(&version) => {}
        _ => return Err(format!("{api_key:?} v{version} is not supported")),
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("bad {api_key:?} header: {e}"))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| format!("bad {api_key:?} v{version} body: {e}"))?;
    if let RequestKind::Fetch(fetch) = body {
        return Ok(handlers::fetch(fetch, version, correlation_id, node).await);
    }
    let request = Request {
        header,
        api_key,
        body,
        client_host: client_host.to_string(),
    };
    let Some(response) = handlers::handle(request, node).await else {
        return Ok(Vec::new());
    };
    encode_response(api_key, version, correlation_id, &response)
        .map(|b| vec![Segment::Bytes(b.freeze())])
}

pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<BytesMut, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("encoding the {api_key:?} header: {e}"))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| format!("encoding {api_key:?} v{version}: {e}"))?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// Sends a file range to the socket with `sendfile(2)`: the bytes go from
/// the page cache to the socket without passing through user space.
#[cfg(not(feature = "sim"))]
async fn send_file(stream: &mut TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let stream = &*stream;
    let (socket, file) = (stream.as_raw_fd(), slice.file.as_raw_fd());
    let mut position = slice.position as libc::off_t;
    let mut left = slice.len as usize;
    // Bounded: every round sends at least one byte or fails.
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call
            // (the slice owns a duplicate of the segment file's descriptor,
            // and `stream` is borrowed); `position` is a valid pointer.
            let n = unsafe { libc::sendfile(socket, file, &mut position, left) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => {
                // The file is shorter than the range we promised in the
                // response header: the connection cannot be saved.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than its index says",
                ));
            }
            Ok(n) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// In the simulation there is no sendfile: read the range, write it.
#[cfg(feature = "sim")]
async fn send_file(stream: &mut TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    use crate::io::FileExt;
    let mut buf = vec![0u8; slice.len as usize];
    let mut done = 0usize;
    // Bounded: every round reads at least one byte or fails.
    while done < buf.len() {
        let n = slice
            .file
            .read_at(&mut buf[done..], slice.position + done as u64)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment file shorter than its index says",
            ));
        }
        done += n;
    }
    stream.write_all(&buf).await
}
