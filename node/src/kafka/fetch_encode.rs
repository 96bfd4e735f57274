//! The Fetch response, encoded by hand (versions 4-12) so that record
//! batches go from the segment file to the socket with `sendfile`, never
//! through user space: the response is a list of byte segments and file
//! ranges. A unit test checks the bytes equal what `kafka-protocol` encodes
//! for every version.

use crate::storage::disk_log::FileSlice;
use bytes::{BufMut, Bytes, BytesMut};

/// Records of one partition in a response.
pub enum RecordsOut {
    /// In memory (tests, and any caller without a file).
    Bytes(Bytes),
    /// A range of a segment file, sent with `sendfile`.
    File(FileSlice),
}

impl RecordsOut {
    pub fn len(&self) -> usize {
        match self {
            RecordsOut::Bytes(b) => b.len(),
            RecordsOut::File(f) => f.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct PartitionOut {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Option<RecordsOut>,
}

/// One piece of a response on the wire.
pub enum Segment {
    Bytes(Bytes),
    File(FileSlice),
}

impl Segment {
    pub fn len(&self) -> usize {
        match self {
            Segment::Bytes(b) => b.len(),
            Segment::File(f) => f.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A whole Fetch response frame (size prefix, header, body) for `version`
/// (4..=12), sessionless, with no aborted transactions.
pub fn encode(
    version: i16,
    correlation_id: i32,
    topics: Vec<(String, Vec<PartitionOut>)>,
) -> Vec<Segment> {
    assert!(
        (4..=12).contains(&version),
        "Fetch v{version} is not served"
    );
    let flexible = version >= 12;
    let mut segments = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut buf, 0); // header tagged fields
    }
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(0); // error_code
        buf.put_i32(0); // session_id
    }
    let count = |buf: &mut BytesMut, n: usize| {
        if flexible {
            put_uvarint(buf, n as u32 + 1);
        } else {
            buf.put_i32(n as i32);
        }
    };
    count(&mut buf, topics.len());
    for (topic, partitions) in topics {
        if flexible {
            put_uvarint(&mut buf, topic.len() as u32 + 1);
        } else {
            buf.put_i16(topic.len() as i16);
        }
        buf.put_slice(topic.as_bytes());
        count(&mut buf, partitions.len());
        for p in partitions {
            buf.put_i32(p.partition_index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            count(&mut buf, 0); // aborted_transactions: empty
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            match p.records {
                None if flexible => put_uvarint(&mut buf, 0),
                None => buf.put_i32(-1),
                Some(records) => {
                    if flexible {
                        put_uvarint(&mut buf, records.len() as u32 + 1);
                    } else {
                        buf.put_i32(records.len() as i32);
                    }
                    match records {
                        RecordsOut::Bytes(b) => buf.put_slice(&b),
                        RecordsOut::File(f) if f.len > 0 => {
                            segments.push(Segment::Bytes(std::mem::take(&mut buf).freeze()));
                            segments.push(Segment::File(f));
                        }
                        RecordsOut::File(_) => {}
                    }
                }
            }
            if flexible {
                put_uvarint(&mut buf, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut buf, 0); // response tagged fields
    }
    segments.push(Segment::Bytes(buf.freeze()));
    // Patch the size into the first segment.
    let size = segments.iter().map(Segment::len).sum::<usize>() - 4;
    let Segment::Bytes(first) = &segments[0] else {
        unreachable!("the frame starts with bytes")
    };
    let mut first = BytesMut::from(&first[..]);
    first[..4].copy_from_slice(&(size as i32).to_be_bytes());
    segments[0] = Segment::Bytes(first.freeze());
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        FetchResponse, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{ApiKey, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn flatten(segments: Vec<Segment>) -> Vec<u8> {
        let mut out = Vec::new();
        for s in segments {
            match s {
                Segment::Bytes(b) => out.extend_from_slice(&b),
                Segment::File(_) => panic!("no files in this test"),
            }
        }
        out
    }

    #[test]
    fn the_hand_encoding_equals_kafka_protocols_for_every_served_version() {
        let records = Bytes::from_static(b"pretend these are batches");
        for version in 4..=12i16 {
            let parts = |records: Option<Bytes>, error| PartitionOut {
                partition_index: 3,
                error_code: error,
                high_watermark: 42,
                last_stable_offset: 42,
                log_start_offset: 7,
                records: records.map(RecordsOut::Bytes),
            };
            let mine = flatten(encode(
                version,
                99,
                vec![
                    (
                        "topic".into(),
                        vec![parts(Some(records.clone()), 0), parts(None, 6)],
                    ),
                    ("t2".into(), vec![]),
                ],
            ));
            let pd = |records: Option<Bytes>, error: i16| {
                let mut p = PartitionData::default()
                    .with_partition_index(3)
                    .with_error_code(error)
                    .with_high_watermark(42)
                    .with_last_stable_offset(42)
                    .with_log_start_offset(if version >= 5 { 7 } else { -1 });
                p.records = records;
                p
            };
            let mut response = FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("topic")))
                    .with_partitions(vec![pd(Some(records.clone()), 0), pd(None, 6)]),
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t2"))),
            ]);
            if version < 7 {
                response.session_id = 0;
            }
            let theirs = crate::kafka::server::encode_response(
                ApiKey::Fetch,
                version,
                99,
                &ResponseKind::Fetch(response),
            )
            .unwrap();
            assert_eq!(mine, theirs.to_vec(), "Fetch v{version}");
        }
    }
}
