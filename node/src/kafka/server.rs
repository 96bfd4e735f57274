//! Kafka client connections: size-prefixed frames in, one request at a time
//! (so pipelined requests are answered in order, as Kafka does by muting a
//! connection while it serves one), responses out. A frame above
//! `socket.request.max.bytes`, an unknown API key or a body that does not
//! decode closes the connection (Kafka does the same); ApiVersions with a
//! too-new version gets the v0 error answer (KIP-511). A request that
//! decodes but that this node does not serve (an API it does not implement,
//! or a version outside its range) gets UNSUPPORTED_VERSION in that API's
//! response, and the connection stays open (Kafka closes it; see
//! `unsupported.rs` for why Runnel answers).

use super::fetch_encode::Segment;
use super::handlers;
use super::unsupported::{self, Refusal};
use super::versions;
use crate::io::TcpStream;
use crate::runtime::node::NodeHandle;
use crate::storage::disk_log::FileSlice;
use bytes::{BufMut, Bytes, BytesMut};
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
        // An IPv4 client of a dual-stack listener shows as itself, not as
        // ::ffff:a.b.c.d (ACL hosts and DescribeGroups name it so, as Kafka).
        .map(|a| format!("/{}", a.ip().to_canonical()))
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
        // The body in chunks as they arrive, each charged to
        // queued.max.request.bytes before it is read (the connection waits,
        // unread, while the node holds too many request bytes): only bytes
        // a client really sent cost memory, never the size it declared.
        let Some((frame, _share)) =
            read_frame(&mut stream, size as usize, idle, &node, &peer).await
        else {
            return;
        };
        let segments = match answer(frame, &client_host, &peer, &node).await {
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

/// Bytes a request body is read in (and charged in).
const READ_CHUNK_BYTES: usize = 64 << 10;

/// Reads a request body of `size` bytes within the idle bound, in chunks,
/// each charged to `queued.max.request.bytes` before it is read; returns the
/// body and its charge (freed when dropped, after the answer is written).
async fn read_frame(
    stream: &mut TcpStream,
    size: usize,
    idle: Duration,
    node: &NodeHandle,
    peer: &str,
) -> Option<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>)> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + idle;
    let bounded = node.settings.queued_max_request_bytes != usize::MAX;
    let mut frame = Vec::with_capacity(size.min(READ_CHUNK_BYTES));
    let mut charge: Option<tokio::sync::OwnedSemaphorePermit> = None;
    // Bounded by `size`: each round reads a chunk whole or ends the request.
    while frame.len() < size {
        let chunk = (size - frame.len()).min(READ_CHUNK_BYTES);
        if bounded {
            let permit = node.request_bytes.clone().acquire_many_owned(chunk as u32);
            let permit = tokio::time::timeout_at(deadline, permit).await.ok()?.ok()?;
            match charge.as_mut() {
                Some(held) => held.merge(permit),
                None => charge = Some(permit),
            }
        }
        let start = frame.len();
        frame.resize(start + chunk, 0);
        let read = stream.read_exact(&mut frame[start..]);
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None, // closed before the whole request arrived
            Err(_) => {
                tracing::debug!(
                    "{peer}: a request arrived slower than connections.max.idle.ms ({} ms); closing",
                    idle.as_millis()
                );
                return None;
            }
        }
    }
    Some((Bytes::from(frame), charge))
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

/// A request as it arrived, decoded or refused. (Made once per request and
/// taken apart at once: boxing the large variant would only add a copy.)
#[allow(clippy::large_enum_variant)]
pub enum Decoded {
    /// A request this node serves, ready for its handler.
    Request {
        header: RequestHeader,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
    },
    /// ApiVersions newer than we know: answer it with the v0 error (KIP-511).
    TooNewApiVersions { correlation_id: i32 },
    /// A request that decodes but that this node does not serve (the API
    /// or its version): answered with UNSUPPORTED_VERSION, or not at all
    /// (Produce with acks=0), and the connection stays open.
    Unsupported {
        header: RequestHeader,
        api_key: ApiKey,
        version: i16,
        refusal: Refusal,
    },
}

/// The memory one request may decode into: eight times its size (at least
/// 4 MiB), so a request cannot make the node build much more than the
/// client sent (a Metadata topic with a null name is 2 bytes on the wire
/// and ~80 in memory); a real request is far below the bound.
pub fn decode_budget(frame_bytes: usize) -> usize {
    frame_bytes.saturating_mul(8).max(4 << 20)
}

/// Decodes one request frame (the bytes after the size). A pure function
/// of the bytes, and the fuzz targets' entry point: every count and length
/// is checked against the bytes left (vendor/kafka-protocol), and the whole
/// decode against [`decode_budget`]. A request this node does not serve is
/// decoded all the same and comes back as [`Decoded::Unsupported`], its
/// answer made. An error says why the frame was refused (the connection is
/// closed, as Kafka does): no header, an unknown API key, or a body that
/// does not decode.
pub fn decode_request(frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!("a request of {} bytes has no header", frame.len()));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        return Err(format!("unknown API key {api_key_raw}"));
    };
    let supported = versions::range(api_key);
    if api_key == ApiKey::ApiVersions && supported.is_some_and(|r| version > r.1) {
        return Ok(Decoded::TooNewApiVersions { correlation_id });
    }
    let served = supported.is_some_and(|(min, max)| (min..=max).contains(&version));
    let (header, body) = decode_parts(frame, api_key, version).map_err(|why| match served {
        true => why,
        false => format!("{api_key:?} v{version} is not supported ({why})"),
    })?;
    if served {
        return Ok(Decoded::Request {
            header,
            api_key,
            version,
            body,
        });
    }
    let Some(refusal) = unsupported::refuse(&body, version) else {
        return Err(format!("{api_key:?} v{version} is not supported"));
    };
    Ok(Decoded::Unsupported {
        header,
        api_key,
        version,
        refusal,
    })
}

/// The header and body of a request, decoded within [`decode_budget`].
fn decode_parts(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<(RequestHeader, RequestKind), String> {
    let budget = decode_budget(frame.len());
    let (decoded, _) = kafka_protocol::protocol::types::with_decode_budget(budget, || {
        let header_version = api_key.request_header_version(version);
        let header = RequestHeader::decode(&mut frame, header_version)
            .map_err(|e| format!("bad {api_key:?} header: {e:#}"))?;
        let body = RequestKind::decode(api_key, &mut frame, version)
            .map_err(|e| format!("bad {api_key:?} v{version} body: {e:#}"))?;
        Ok::<_, String>((header, body))
    });
    decoded
}

async fn answer(
    frame: Bytes,
    client_host: &str,
    peer: &str,
    node: &NodeHandle,
) -> Result<Vec<Segment>, String> {
    let (header, api_key, version, body) = match decode_request(frame)? {
        Decoded::TooNewApiVersions { correlation_id } => {
            return Ok(vec![Segment::Bytes(
                versions::unsupported_api_versions(correlation_id).freeze(),
            )])
        }
        Decoded::Unsupported {
            header,
            api_key,
            version,
            refusal,
        } => return refused(&header, api_key, version, refusal, peer),
        Decoded::Request {
            header,
            api_key,
            version,
            body,
        } => (header, api_key, version, body),
    };
    let correlation_id = header.correlation_id;
    if let RequestKind::Fetch(fetch) = body {
        return Ok(handlers::fetch(fetch, version, correlation_id, client_host, node).await);
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

/// The answer to a request this node does not serve, logged (one line per
/// request, at debug: a client that skipped ApiVersions may send many, and
/// each gets its reason on the wire).
fn refused(
    header: &RequestHeader,
    api_key: ApiKey,
    version: i16,
    refusal: Refusal,
    peer: &str,
) -> Result<Vec<Segment>, String> {
    let client = header.client_id.as_deref().unwrap_or("");
    let response = match refusal {
        Refusal::Silent => {
            tracing::debug!(
                "{peer} (client {client:?}): {api_key:?} v{version} is not supported; no answer (acks=0)"
            );
            return Ok(Vec::new());
        }
        Refusal::Answer(response) => response,
    };
    tracing::debug!(
        "{peer} (client {client:?}): {api_key:?} v{version} is not supported; answered UNSUPPORTED_VERSION"
    );
    encode_response(api_key, version, header.correlation_id, &response)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata v9 naming `n` topics with null names: two bytes each on
    /// the wire, a whole struct each in memory.
    fn metadata_v9(n: u32) -> Bytes {
        let mut f = BytesMut::new();
        f.put_i16(3);
        f.put_i16(9);
        f.put_i32(1);
        f.put_i16(-1); // null client id
        f.put_u8(0); // header tagged fields
        let mut count = u64::from(n) + 1;
        while count >= 0x80 {
            f.put_u8((count as u8 & 0x7f) | 0x80);
            count >>= 7;
        }
        f.put_u8(count as u8);
        for _ in 0..n {
            f.put_u8(0); // null name
            f.put_u8(0); // tagged fields
        }
        f.put_u8(1); // allow auto topic creation
        f.put_u8(0); // include cluster authorized operations (v8-10)
        f.put_u8(0); // include topic authorized operations
        f.put_u8(0); // tagged fields
        f.freeze()
    }

    #[test]
    fn a_request_may_not_decode_into_much_more_than_its_size() {
        assert!(matches!(
            decode_request(metadata_v9(1_000)),
            Ok(Decoded::Request { .. })
        ));
        let amplified = metadata_v9(2_000_000);
        let size = amplified.len();
        let err = decode_request(amplified).err().expect("refused");
        assert!(err.contains("memory"), "{size} bytes: {err}");
    }

    #[test]
    fn short_unknown_and_unsupported_frames_are_refused() {
        assert!(decode_request(Bytes::from_static(&[0, 3, 0, 1])).is_err());
        assert!(decode_request(Bytes::from_static(&[3, 231, 0, 0, 0, 0, 0, 1, 255, 255])).is_err());
        // ApiVersions v99: the KIP-511 answer.
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 7, 255, 255])),
            Ok(Decoded::TooNewApiVersions { correlation_id: 7 })
        ));
    }
}
