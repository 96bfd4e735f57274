//! Framing of internal (node-to-node) messages: a 4-byte big-endian length,
//! then the message in postcard. The first frame each side sends is a
//! [`Handshake`] naming the protocol version and the cluster id, so nodes
//! of another cluster or an incompatible version are refused at once; then
//! the dialer, and only after checking it the acceptor, sends a [`Proof`]
//! that it knows the cluster secret: an HMAC-SHA256 over the whole
//! transcript (both ids, both fresh nonces) and the prover's side, so a
//! proof can be neither replayed on another connection, relayed between
//! two nodes, nor reflected back at its maker. Tools (`quorum status`)
//! introduce themselves as [`LinkRole::Tool`]: they prove nothing, get no
//! proof, and may only ask for status. TLS for links can later replace the
//! proof without changing the rest.
//!
//! Sans-IO: [`encode`] produces bytes, [`FrameDecoder`] consumes whatever
//! the socket delivered and yields whole messages. Malformed or oversized
//! input is an error, never a panic.

use bytes::{Buf, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::cell::RefCell;

/// The internal protocol's version; peers must match. 2: keep-alives on
/// idle links. 3: roles, nonces and the secret proof; one metadata-log
/// entry per controller decision; brokers' internal endpoints. 4: offline
/// replicas (a new controller request and metadata record). 5: log start
/// offsets in replica fetches and their answers (DeleteRecords).
pub const PROTOCOL_VERSION: u16 = 5;
/// Handshake and proof frames are tiny: nothing larger is read before the
/// peer has proven who it is.
pub const HANDSHAKE_BYTES_MAX: usize = 4096;
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

/// What the dialer of a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkRole {
    /// A node of the cluster: proves the secret, may send anything.
    Peer,
    /// A tool: proves nothing, may only ask for status.
    Tool,
}

/// The first frame each side sends. (The first three fields stay first:
/// the fault suites' proxies read the node id from them.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    pub protocol_version: u16,
    pub cluster_id: String,
    pub node_id: u32,
    pub role: LinkRole,
    /// Fresh for every connection: the other side's proof covers it, so a
    /// recorded proof cannot be replayed.
    pub nonce: [u8; 32],
}

/// The second frame: HMAC-SHA256(secret, what [`proof_input`] lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub mac: [u8; 32],
}

/// The cluster secret links prove (`cluster.secret.file`). Empty means no
/// secret was configured: proofs are then computable by anyone, and the
/// node says so at startup.
#[derive(Clone, Default)]
pub struct LinkSecret(Vec<u8>);

impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.is_empty() {
            true => f.write_str("LinkSecret(none)"),
            false => f.write_str("LinkSecret(..)"),
        }
    }
}

/// Who this end of a link is.
#[derive(Clone, Debug)]
pub struct LinkIdentity {
    pub cluster_id: String,
    pub node_id: u32,
    pub role: LinkRole,
    pub secret: LinkSecret,
}

/// Which end of a link a proof speaks for: a dialer's proof is never
/// accepted as an acceptor's, so a proof cannot be reflected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Dialer,
    Acceptor,
}

/// What a proof covers: the prover's side and the whole transcript.
fn proof_input(side: Side, dialer: &Handshake, acceptor: &Handshake) -> Vec<u8> {
    let mut input = match side {
        Side::Dialer => b"runnel internal link v3 dialer\0".to_vec(),
        Side::Acceptor => b"runnel internal link v3 acceptor\0".to_vec(),
    };
    input.extend_from_slice(dialer.cluster_id.as_bytes());
    input.push(0);
    input.extend_from_slice(&dialer.node_id.to_be_bytes());
    input.extend_from_slice(&acceptor.node_id.to_be_bytes());
    input.extend_from_slice(&dialer.nonce);
    input.extend_from_slice(&acceptor.nonce);
    input
}

impl LinkSecret {
    pub fn new(secret: Vec<u8>) -> LinkSecret {
        LinkSecret(secret)
    }

    pub fn is_configured(&self) -> bool {
        !self.0.is_empty()
    }

    fn mac(&self, input: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(input);
        mac
    }

    /// The proof `side` sends, given both handshakes.
    pub fn prove(&self, side: Side, dialer: &Handshake, acceptor: &Handshake) -> Proof {
        use hmac::Mac;
        let input = proof_input(side, dialer, acceptor);
        Proof {
            mac: self.mac(&input).finalize().into_bytes().into(),
        }
    }

    /// Checks the proof `side` sent (in constant time).
    pub fn verify(
        &self,
        side: Side,
        dialer: &Handshake,
        acceptor: &Handshake,
        proof: &Proof,
    ) -> Result<(), WireError> {
        use hmac::Mac;
        let input = proof_input(side, dialer, acceptor);
        let prover = match side {
            Side::Dialer => dialer.node_id,
            Side::Acceptor => acceptor.node_id,
        };
        self.mac(&input).verify_slice(&proof.mac).map_err(|_| {
            WireError::Incompatible(format!(
                "node {prover} did not prove the cluster secret (cluster.secret.file differs)"
            ))
        })
    }
}

impl LinkIdentity {
    /// This side's handshake for a new connection, with a fresh nonce.
    pub fn handshake(&self) -> Handshake {
        Handshake {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            role: self.role,
            nonce: fresh_nonce(),
        }
    }
}

/// 32 unpredictable bytes; in the simulation, a counter (runs must repeat).
fn fresh_nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    #[cfg(not(feature = "sim"))]
    if getrandom::fill(&mut nonce).is_err() {
        // No OS randomness: a unique value still prevents replays within
        // this process's lifetime.
        nonce[..8].copy_from_slice(&next_counter().to_be_bytes());
    }
    #[cfg(feature = "sim")]
    nonce[..8].copy_from_slice(&next_counter().to_be_bytes());
    nonce
}

/// A fresh 64-bit value (a session id): random, or in the simulation the
/// next of a counter.
pub fn fresh_u64() -> u64 {
    let nonce = fresh_nonce();
    u64::from_be_bytes(nonce[..8].try_into().expect("8 bytes"))
}

fn next_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

impl Handshake {
    /// Accepts a peer's handshake or says why not.
    pub fn check_peer(&self, peer: &Handshake) -> Result<(), WireError> {
        if peer.node_id == self.node_id || peer.nonce == self.nonce {
            return Err(WireError::Incompatible(format!(
                "a link from node {} to itself (or a reflected handshake)",
                peer.node_id
            )));
        }
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

thread_local! {
    /// The payload [`FrameDecoder::next_message`] is decoding on this thread.
    static DECODING: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// `bytes` as a slice of the frame being decoded, sharing its memory, if it
/// lies in it (a record batch in a replication message: the follower then
/// writes the very bytes the socket delivered, with no copy in between).
/// `None` outside a decode; the caller copies then.
pub fn frame_slice(bytes: &[u8]) -> Option<Bytes> {
    DECODING.with(|d| {
        let d = d.borrow();
        let frame = d.as_ref()?;
        let start = frame.as_ptr() as usize;
        let at = bytes.as_ptr() as usize;
        let inside = at >= start && at + bytes.len() <= start + frame.len();
        inside.then(|| frame.slice_ref(bytes))
    })
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

    /// Raises (or lowers) the frame bound, e.g. once the handshake is done.
    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) {
        self.frame_bytes_max = frame_bytes_max;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The buffer to read the socket into, with room for `at_least` more
    /// bytes (`AsyncReadExt::read_buf`): no copy from a read buffer.
    pub fn read_buffer(&mut self, at_least: usize) -> &mut BytesMut {
        self.buffer.reserve(at_least);
        &mut self.buffer
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
        let payload = self.buffer.split_to(len).freeze();
        DECODING.with(|d| *d.borrow_mut() = Some(payload.clone()));
        let message = postcard::from_bytes(&payload);
        DECODING.with(|d| *d.borrow_mut() = None);
        message
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
                log_start_offset: 3,
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

    fn identity(node_id: u32, secret: &[u8]) -> LinkIdentity {
        LinkIdentity {
            cluster_id: "a".into(),
            node_id,
            role: LinkRole::Peer,
            secret: LinkSecret::new(secret.to_vec()),
        }
    }

    #[test]
    fn proofs_need_the_secret_the_nonce_and_the_claimed_id() {
        let (a, b) = (identity(1, b"s3cret"), identity(2, b"s3cret"));
        let (ha, hb) = (a.handshake(), b.handshake());
        assert_ne!(ha.nonce, hb.nonce, "fresh nonces");
        // a dials b: a proves first, then b.
        let from_a = a.secret.prove(Side::Dialer, &ha, &hb);
        assert_eq!(b.secret.verify(Side::Dialer, &ha, &hb, &from_a), Ok(()));
        let from_b = b.secret.prove(Side::Acceptor, &ha, &hb);
        assert_eq!(a.secret.verify(Side::Acceptor, &ha, &hb, &from_b), Ok(()));
        // Another secret.
        let mallory = identity(1, b"guess");
        let forged = mallory.secret.prove(Side::Dialer, &ha, &hb);
        assert!(b.secret.verify(Side::Dialer, &ha, &hb, &forged).is_err());
        // Replayed on a new connection (b's fresh nonce).
        let hb2 = b.handshake();
        assert!(b.secret.verify(Side::Dialer, &ha, &hb2, &from_a).is_err());
        // Another claimed id.
        let claims_3 = Handshake {
            node_id: 3,
            ..ha.clone()
        };
        assert!(b
            .secret
            .verify(Side::Dialer, &claims_3, &hb, &from_a)
            .is_err());
        // Reflected: b's own acceptor proof handed back to it as a dialer's.
        assert!(b.secret.verify(Side::Dialer, &ha, &hb, &from_b).is_err());
        // Relayed: mallory dials a as "2" with b's nonce and a's nonce
        // swapped in; b's proof for another transcript does not fit.
        let relay = Handshake {
            node_id: 2,
            nonce: hb.nonce,
            ..ha.clone()
        };
        let ha2 = a.handshake();
        assert!(a
            .secret
            .verify(Side::Dialer, &relay, &ha2, &from_b)
            .is_err());
        // A handshake that names the verifier itself, or echoes its nonce.
        assert!(hb
            .check_peer(&Handshake {
                node_id: 2,
                ..ha.clone()
            })
            .is_err());
        assert!(hb
            .check_peer(&Handshake {
                nonce: hb.nonce,
                ..ha.clone()
            })
            .is_err());
    }

    #[test]
    fn handshakes_refuse_other_clusters_and_versions() {
        let me = identity(1, b"").handshake();
        let same = Handshake {
            node_id: 2,
            ..identity(2, b"").handshake()
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
