//! Framing of internal (node-to-node) messages: a 4-byte big-endian length,
//! then the message in postcard. The first frame on every connection is a
//! [`Handshake`] naming the protocol version and the cluster id, so nodes
//! of another cluster or an incompatible version are refused at once.
//!
//! Sans-IO: [`encode`] produces bytes, [`FrameDecoder`] consumes whatever
//! the socket delivered and yields whole messages. Malformed or oversized
//! input is an error, never a panic.

use bytes::{Buf, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The internal protocol's version; peers must match. 2: keep-alives on idle links.
pub const PROTOCOL_VERSION: u16 = 2;
const LENGTH_BYTES: usize = 4;

/// Why bytes from a peer were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A frame longer than the connection allows.
    TooLarge { len: usize, max: usize },
    /// The payload is not a valid message.
    Malformed(String),
    /// The handshake names another cluster or protocol version.
    Incompatible(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            WireError::Malformed(why) => write!(f, "malformed frame: {why}"),
            WireError::Incompatible(why) => write!(f, "incompatible peer: {why}"),
        }
    }
}

/// The first frame each side sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    pub protocol_version: u16,
    pub cluster_id: String,
    pub node_id: u32,
}

impl Handshake {
    /// Accepts a peer's handshake or says why not.
    pub fn check_peer(&self, peer: &Handshake) -> Result<(), WireError> {
        if peer.protocol_version != self.protocol_version {
            return Err(WireError::Incompatible(format!(
                "node {} speaks protocol version {}, this node {}",
                peer.node_id, peer.protocol_version, self.protocol_version
            )));
        }
        if peer.cluster_id != self.cluster_id {
            return Err(WireError::Incompatible(format!(
                "node {} belongs to cluster {:?}, this node to {:?}",
                peer.node_id, peer.cluster_id, self.cluster_id
            )));
        }
        Ok(())
    }
}

/// One frame: length prefix and postcard payload.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    let payload = postcard::to_stdvec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
    let mut frame = Vec::with_capacity(LENGTH_BYTES + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Accumulates bytes from a connection and yields whole frames.
pub struct FrameDecoder {
    buffer: BytesMut,
    frame_bytes_max: usize,
}

impl FrameDecoder {
    pub fn new(frame_bytes_max: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            frame_bytes_max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, `None` if more bytes are needed.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        if self.buffer.len() < LENGTH_BYTES {
            return Ok(None);
        }
        let len =
            u32::from_be_bytes(self.buffer[..LENGTH_BYTES].try_into().expect("4 bytes")) as usize;
        if len > self.frame_bytes_max {
            return Err(WireError::TooLarge {
                len,
                max: self.frame_bytes_max,
            });
        }
        if self.buffer.len() < LENGTH_BYTES + len {
            return Ok(None);
        }
        self.buffer.advance(LENGTH_BYTES);
        let payload = self.buffer.split_to(len);
        postcard::from_bytes(&payload)
            .map(Some)
            .map_err(|e| WireError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_model::partition::PartitionRegistration;
    use runnel_model::replication::{FetchRequest, ReplicationMessage};

    type Msg = ReplicationMessage<Vec<u8>>;

    #[test]
    fn frames_round_trip_even_when_split_anywhere() {
        let messages: Vec<Msg> = vec![
            ReplicationMessage::Fetch(FetchRequest {
                replica_id: 2,
                leader_epoch: 7,
                fetch_offset: 42,
                last_fetched_epoch: Some(6),
            }),
            ReplicationMessage::PartitionState(PartitionRegistration::new(vec![0, 1, 2], |_| true)),
        ];
        let bytes: Vec<u8> = messages.iter().flat_map(|m| encode(m).unwrap()).collect();
        for cut in 0..bytes.len() {
            let mut d = FrameDecoder::new(1 << 20);
            d.push(&bytes[..cut]);
            let mut got: Vec<Msg> = Vec::new();
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
            d.push(&bytes[cut..]);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
            assert_eq!(got, messages, "split at {cut}");
        }
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let mut d = FrameDecoder::new(16);
        d.push(&1000u32.to_be_bytes());
        assert_eq!(
            d.next_message::<Msg>(),
            Err(WireError::TooLarge { len: 1000, max: 16 })
        );
        let mut d = FrameDecoder::new(1 << 20);
        d.push(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.next_message::<Msg>(),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn handshakes_refuse_other_clusters_and_versions() {
        let me = Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: "a".into(),
            node_id: 1,
        };
        let same = Handshake {
            node_id: 2,
            ..me.clone()
        };
        assert_eq!(me.check_peer(&same), Ok(()));
        let other = Handshake {
            cluster_id: "b".into(),
            ..same.clone()
        };
        assert!(
            matches!(me.check_peer(&other), Err(WireError::Incompatible(m)) if m.contains("\"b\""))
        );
        let old = Handshake {
            protocol_version: 0,
            ..same
        };
        assert!(me.check_peer(&old).is_err());
    }
}
