//! What nodes say to each other over the internal TCP links (postcard
//! frames, see `crate::wire`): the metadata quorum's messages, replication
//! messages for many partitions at once, controller requests and their
//! answers, and the status query behind `runnel quorum status`.

use crate::storage::disk_log::BatchBytes;
use runnel_model::controller::{
    ControllerError, ControllerRequest, MetadataDecision, MetadataRecord,
};
use runnel_model::core::{LeaderEpoch, NodeId, Offset};
use runnel_model::quorum::QuorumMessage;
use runnel_model::replication::ReplicationMessage;
use serde::{Deserialize, Serialize};

/// Sent first on every internal connection, before the handshake frame, so a
/// Kafka listener can tell an internal peer from a Kafka client: read as a
/// Kafka size field it would be ~1.3 GB, far above `socket.request.max.bytes`.
pub const INTERNAL_MAGIC: [u8; 4] = *b"RNL\x01";

/// Replication traffic of one partition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionMessage {
    pub topic: String,
    pub partition: u32,
    pub message: ReplicationMessage<BatchBytes>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A coordinator tells a new peer who the voters are (brokers configured
    /// with `zookeeper.connect` know only addresses).
    Hello {
        voters: Vec<(NodeId, String)>,
    },
    Quorum(QuorumMessage<MetadataDecision>),
    /// Everything one turn of the event loop has for this peer, for every
    /// partition: one frame, like Kafka's per-broker replica fetchers.
    Replication(Vec<PartitionMessage>),
    /// `session` and `id` name the request (`RequestKey`): a re-sent copy
    /// carries the same pair, so the controller decides it once.
    ControllerRequest {
        session: u64,
        id: u64,
        request: ControllerRequest,
    },
    ControllerResponse {
        id: u64,
        result: Result<ControllerAck, ControllerFailure>,
    },
    StatusRequest,
    StatusResponse(QuorumStatus),
    /// Sent on an otherwise idle link so that the other end can tell a
    /// quiet peer from a gone one (see `transport::LinkTimeouts`); never
    /// reaches the event loop.
    KeepAlive,
}

impl PeerMessage {
    /// The message's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::Hello { .. } => "Hello",
            PeerMessage::Quorum(_) => "Quorum",
            PeerMessage::Replication(_) => "Replication",
            PeerMessage::ControllerRequest { .. } => "ControllerRequest",
            PeerMessage::ControllerResponse { .. } => "ControllerResponse",
            PeerMessage::StatusRequest => "StatusRequest",
            PeerMessage::StatusResponse(_) => "StatusResponse",
            PeerMessage::KeepAlive => "KeepAlive",
        }
    }
}

/// A committed controller decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControllerAck {
    /// The metadata log offset after the last record of the decision.
    pub end_offset: Offset,
    pub records: Vec<MetadataRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerFailure {
    /// Ask the leader instead (if known).
    NotController {
        leader: Option<NodeId>,
    },
    Rejected(ControllerError),
    /// Not answered within the request's timeout (REQUEST_TIMED_OUT); the
    /// request itself is still carried out, once.
    TimedOut,
}

/// One coordinator's view, like `zkServer.sh status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub node_id: NodeId,
    pub mode: String,
    pub leader: Option<NodeId>,
    pub epoch: LeaderEpoch,
    pub log_end_offset: Offset,
    pub commit_offset: Offset,
    /// Leader only: each voter's and observer's fetched end offset.
    pub followers: Vec<(NodeId, Offset)>,
    /// fsyncs of the metadata log since this process started.
    pub metadata_log_fsyncs: u64,
    /// fsyncs of any file or directory since this process started.
    pub fsyncs: u64,
}

impl serde::Serialize for BatchBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for BatchBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BatchBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("record batch bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<BatchBytes, E> {
                Ok(BatchBytes(bytes::Bytes::copy_from_slice(v)))
            }
            /// Decoding a frame (`wire::FrameDecoder`): share its memory.
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<BatchBytes, E> {
                Ok(BatchBytes(
                    crate::wire::frame_slice(v).unwrap_or_else(|| bytes::Bytes::copy_from_slice(v)),
                ))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<BatchBytes, E> {
                Ok(BatchBytes(bytes::Bytes::from(v)))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_model::replication::{FetchResponse, FetchResult};

    /// A follower receives record batches without copying them out of the
    /// frame: the decoded batch lies inside the bytes the socket delivered.
    #[test]
    fn decoded_batches_share_the_frames_memory() {
        let batch = BatchBytes(bytes::Bytes::from(vec![7u8; 4096]));
        let message = PeerMessage::Replication(vec![PartitionMessage {
            topic: "t".into(),
            partition: 0,
            message: ReplicationMessage::FetchResponse(FetchResponse {
                leader_epoch: 1,
                result: FetchResult::Records {
                    records: batch.clone(),
                    high_watermark: 1,
                    log_start_offset: 0,
                },
            }),
        }]);
        let frame = crate::wire::encode(&message).unwrap();
        let mut d = crate::wire::FrameDecoder::new(1 << 20);
        d.push(&frame);
        let start = d.read_buffer(0).as_ptr() as usize;
        let Some(PeerMessage::Replication(back)) = d.next_message::<PeerMessage>().unwrap() else {
            panic!("wrong variant")
        };
        let ReplicationMessage::FetchResponse(FetchResponse {
            result: FetchResult::Records { records, .. },
            ..
        }) = &back[0].message
        else {
            panic!()
        };
        assert_eq!(records, &batch);
        let at = records.0.as_ptr() as usize;
        assert!(
            at >= start && at + records.0.len() <= start + frame.len(),
            "the batch was copied out of the frame"
        );
    }

    #[test]
    fn replication_batches_round_trip_through_postcard() {
        let batch = BatchBytes(bytes::Bytes::from_static(b"0123456789"));
        let message = PeerMessage::Replication(vec![PartitionMessage {
            topic: "t".into(),
            partition: 2,
            message: ReplicationMessage::FetchResponse(FetchResponse {
                leader_epoch: 3,
                result: FetchResult::Records {
                    records: batch.clone(),
                    high_watermark: 7,
                    log_start_offset: 2,
                },
            }),
        }]);
        let bytes = postcard::to_stdvec(&message).unwrap();
        let PeerMessage::Replication(back) = postcard::from_bytes(&bytes).unwrap() else {
            panic!("wrong variant")
        };
        let ReplicationMessage::FetchResponse(r) = &back[0].message else {
            panic!()
        };
        assert_eq!(
            r.result,
            FetchResult::Records {
                records: batch,
                high_watermark: 7,
                log_start_offset: 2,
            }
        );
    }
}
