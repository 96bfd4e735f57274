//! Writes the seed corpora (`fuzz/seeds/<target>/`): a few valid inputs per
//! target in the formats `runnel_fuzz` reads, built with the node's own
//! encoders. Run from the repository root:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//!
//! (scripts/fuzz.sh does not run it: the seeds are committed.)

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel::runtime::messages::{
    ControllerAck, ControllerFailure, PartitionMessage, PeerMessage, QuorumStatus,
};
use runnel::runtime::quorum_store::encode_entry;
use runnel::storage::disk_log::{BatchBytes, DiskLog, LogConfig};
use runnel::wire::{self, Handshake, LinkRole, Proof, PROTOCOL_VERSION};
use runnel_fuzz::batch_check::NOW_MS;
use runnel_fuzz::{segment_recovery, Writer};
use runnel_model::controller::{ControllerRequest, MetadataDecision, MetadataRecord};
use runnel_model::log::PartitionLog;
use runnel_model::partition::PartitionRegistration;
use runnel_model::quorum::{Entry, LogPosition, Payload, QuorumFetchResult, QuorumMessage};
use runnel_model::replication::{
    FetchRequest as ReplicaFetch, FetchResponse as ReplicaFetchResponse, FetchResult,
    ReplicationMessage,
};
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for target in [
        "kafka_request",
        "internal_frame",
        "batch_check",
        "segment_recovery",
    ] {
        let dir = root.join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
    kafka_request(&root.join("kafka_request"));
    internal_frame(&root.join("internal_frame"));
    batch_check(&root.join("batch_check"));
    segment_recovery(&root.join("segment_recovery"));
}

fn save(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn records(compression: Compression, producer: (i64, i16, i32)) -> Bytes {
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: producer.2.wrapping_add(i as i32),
            timestamp: NOW_MS + i,
            key: (i == 1).then(|| Bytes::from_static(b"key")),
            value: Some(Bytes::from(format!("value {i}").repeat(1 + i as usize))),
            headers: [(s("h"), Some(Bytes::from_static(b"v")))]
                .into_iter()
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// A request of `key` with some content (not only defaults) where that
/// matters to the decoder.
fn request(key: ApiKey) -> RequestKind {
    let topic = || TopicName(s("orders"));
    match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic())
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records(Compression::None, (-1, -1, -1)))),
                    ])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic())
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(5)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
            ])))
        }
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(topic())
                    .with_num_partitions(3)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("60000"))),
                    ])]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x06orders"))]),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(1)
                .with_member_id(s("m-1"))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(42),
                        ]),
                ]),
        ),
        other => default_request(other),
    }
}

fn default_request(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
        other => panic!("{other:?} is not served: add it here"),
    }
}

/// One seed per served (key, version): `[selector][body]` (the body of a
/// request with content where it encodes at that version, else the
/// default one); plus a few whole frames for the raw path.
fn kafka_request(dir: &Path) {
    let served = runnel_fuzz::kafka_request::served();
    assert!(served.len() <= 256, "the selector is one byte");
    for (i, &(key, version)) in served.iter().enumerate() {
        let mut body = BytesMut::new();
        if request(key).encode(&mut body, version).is_err() {
            body.clear();
            // Produce v0-2 has no encoding (advertised, refused): no body.
            if default_request(key).encode(&mut body, version).is_err() {
                body.clear();
            }
        }
        let mut frame = runnel_fuzz::kafka_request::header(key, version, 1);
        frame.extend_from_slice(&body);
        let decoded = runnel::kafka::server::decode_request(frame.clone().freeze());
        let refused = key == ApiKey::Produce && version < 3;
        assert_eq!(decoded.is_ok(), !refused, "{key:?} v{version} seed");
        let mut input = vec![i as u8];
        input.extend_from_slice(&body);
        save(dir, &format!("{key:?}-v{version}"), &input);
        if matches!(
            key,
            ApiKey::Produce | ApiKey::Metadata | ApiKey::ApiVersions
        ) && version % 3 == 0
        {
            save(dir, &format!("raw-{key:?}-v{version}"), &frame);
        }
    }
}

fn frame<T: serde::Serialize>(message: &T) -> Vec<u8> {
    wire::encode(message).unwrap()
}

fn meta_entry(epoch: u32) -> Entry<MetadataDecision> {
    Entry {
        epoch,
        payload: Payload::Record(MetadataDecision {
            request: None,
            records: vec![
                MetadataRecord::RegisterBroker {
                    broker: 1,
                    epoch: 3,
                    endpoint: "127.0.0.1:9092".into(),
                    internal_endpoint: "127.0.0.1:9093".into(),
                },
                MetadataRecord::Topic {
                    name: "orders".into(),
                    configs: [("retention.ms".to_string(), "1000".to_string())].into(),
                },
                MetadataRecord::Partition {
                    topic: "orders".into(),
                    partition: 0,
                    registration: PartitionRegistration::new(vec![1, 2, 3], |_| true),
                },
                MetadataRecord::ProducerIds {
                    broker: 1,
                    broker_epoch: 3,
                    next_producer_id: 2000,
                },
            ],
        }),
    }
}

fn peer_messages() -> Vec<(&'static str, PeerMessage)> {
    let batch = BatchBytes(runnel::storage::batch::build(2, b"payload", NOW_MS).into());
    vec![
        (
            "hello",
            PeerMessage::Hello {
                voters: vec![(1, "127.0.0.1:9093".into()), (2, "127.0.0.1:9193".into())],
            },
        ),
        (
            "vote",
            PeerMessage::Quorum(QuorumMessage::Vote {
                epoch: 4,
                position: LogPosition {
                    last_epoch: 3,
                    end_offset: 17,
                },
            }),
        ),
        (
            "quorum-fetch-response",
            PeerMessage::Quorum(QuorumMessage::FetchResponse {
                epoch: 4,
                fetch_offset: 0,
                result: QuorumFetchResult::Entries {
                    entries: vec![
                        Entry {
                            epoch: 4,
                            payload: Payload::LeaderChange { leader: 1 },
                        },
                        meta_entry(4),
                    ],
                    commit_offset: 1,
                },
            }),
        ),
        (
            "replication",
            PeerMessage::Replication(vec![
                PartitionMessage {
                    topic: "orders".into(),
                    partition: 0,
                    message: ReplicationMessage::Fetch(ReplicaFetch {
                        replica_id: 2,
                        leader_epoch: 1,
                        fetch_offset: 0,
                        last_fetched_epoch: None,
                    }),
                },
                PartitionMessage {
                    topic: "orders".into(),
                    partition: 1,
                    message: ReplicationMessage::FetchResponse(ReplicaFetchResponse {
                        leader_epoch: 1,
                        result: FetchResult::Records {
                            records: batch,
                            high_watermark: 2,
                        },
                    }),
                },
                PartitionMessage {
                    topic: "orders".into(),
                    partition: 2,
                    message: ReplicationMessage::PartitionState(PartitionRegistration::new(
                        vec![1, 2],
                        |_| true,
                    )),
                },
            ]),
        ),
        (
            "controller-request",
            PeerMessage::ControllerRequest {
                session: 7,
                id: 9,
                request: ControllerRequest::CreateTopic {
                    name: "orders".into(),
                    partitions: Some(3),
                    replication_factor: None,
                    configs: [("cleanup.policy".to_string(), "delete".to_string())].into(),
                    assignment: None,
                    topic_id: 0x0123_4567_89ab_4def_8123_4567_89ab_cdef,
                },
            },
        ),
        (
            "controller-response",
            PeerMessage::ControllerResponse {
                id: 9,
                result: Ok(ControllerAck {
                    end_offset: 12,
                    records: vec![MetadataRecord::RemoveTopic {
                        name: "orders".into(),
                    }],
                }),
            },
        ),
        (
            "controller-failure",
            PeerMessage::ControllerResponse {
                id: 10,
                result: Err(ControllerFailure::NotController { leader: Some(2) }),
            },
        ),
        ("status-request", PeerMessage::StatusRequest),
        (
            "status-response",
            PeerMessage::StatusResponse(QuorumStatus {
                node_id: 1,
                mode: "leader".into(),
                leader: Some(1),
                epoch: 4,
                log_end_offset: 10,
                commit_offset: 9,
                followers: vec![(2, 9), (3, 7)],
                metadata_log_fsyncs: 4,
                fsyncs: 12,
            }),
        ),
        ("keep-alive", PeerMessage::KeepAlive),
    ]
}

/// `[chunk seed: u16][mode][bytes]`: a link's opening and its messages, each
/// peer message alone, a metadata log, one entry body.
fn internal_frame(dir: &Path) {
    let input = |seed: u16, mode: u8, bytes: &[u8]| {
        let mut w = Writer::default();
        w.u16(seed).u8(mode).bytes(bytes);
        w.0
    };
    let handshake = Handshake {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: "fuzz-cluster".into(),
        node_id: 2,
        role: LinkRole::Peer,
        nonce: [7; 32],
    };
    let mut link = frame(&handshake);
    link.extend(frame(&Proof { mac: [9; 32] }));
    for (_, m) in peer_messages() {
        link.extend(frame(&m));
    }
    save(dir, "link", &input(0x0005, 0, &link));
    save(
        dir,
        "link-bytewise",
        &input(0x0000, 0, &link[..200.min(link.len())]),
    );
    for (name, m) in peer_messages() {
        let bytes = frame(&m);
        let mut decoder = wire::FrameDecoder::new(1 << 20);
        decoder.push(&bytes);
        let decoded = decoder.next_message::<PeerMessage>();
        assert!(matches!(decoded, Ok(Some(_))), "{name}: {decoded:?}");
        save(dir, &format!("peer-{name}"), &input(0x000c, 1, &bytes));
    }
    let mut log = Vec::new();
    for epoch in 1..4 {
        log.extend(encode_entry(&meta_entry(epoch)));
    }
    assert!(runnel::runtime::quorum_store::decode_entry(&log).is_some());
    save(dir, "metadata-log", &input(0x0003, 1, &log));
    let body = postcard::to_stdvec(&meta_entry(5)).unwrap();
    save(dir, "metadata-entry-body", &input(0x0003, 1, &body));
}

/// Valid batches (each codec, idempotent or not) for modes 0 and 2, and a
/// few recipes (mode 1).
fn batch_check(dir: &Path) {
    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    for (name, compression) in codecs {
        for (producer_name, producer) in [("plain", (-1, -1, -1)), ("idempotent", (4000, 0, 7))] {
            let batch = records(compression, producer);
            let limits = runnel_fuzz::batch_check::limits(true);
            let checked = runnel::kafka::batch_check::check(&batch, &limits);
            assert_eq!(checked, Ok(()), "{name} {producer_name}");
            let mode = if producer.0 < 0 { 0 } else { 2 };
            let mut input = vec![mode];
            input.extend_from_slice(&batch);
            save(dir, &format!("{name}-{producer_name}"), &input);
        }
    }
    let client = runnel::client::encode_batch(
        &[
            (None, Some(Bytes::from_static(b"hello"))),
            (Some(Bytes::from_static(b"k")), None),
        ],
        NOW_MS,
    )
    .unwrap();
    let mut input = vec![0u8];
    input.extend_from_slice(&client);
    save(dir, "client-batch", &input);
    // Recipes: [mode 1][records][producer][timestamp offset][fields...][mutations].
    let mut w = Writer::default();
    w.u8(1).u8(2).u8(0).u32(0);
    w.u8(3).bytes(b"abc").u8(255);
    w.u8(255).u8(5).bytes(b"hello");
    save(dir, "recipe-two-records", &w.0);
    let mut w = Writer::default();
    w.u8(1).u8(0).u8(9).u32(1000).u8(0).u8(1).bytes(b"x");
    w.u16(57).u8(1); // record count + 1 (inconsistent with the offset range)
    save(dir, "recipe-mutated", &w.0);
}

/// Real log directories written by `DiskLog` (one segment, rolled
/// segments, with and without indexes and checkpoints), and a torn tail.
fn segment_recovery(dir: &Path) {
    let scratch = std::env::temp_dir().join(format!("runnel-gen-seeds-{}", std::process::id()));
    let cases: [(&str, LogConfig, usize, bool); 3] = [
        ("one-segment", LogConfig::default(), 3, false),
        (
            "rolled",
            LogConfig {
                segment_bytes: 200,
                index_interval_bytes: 1,
                roll_ms: None,
                ..LogConfig::default()
            },
            5,
            true,
        ),
        (
            "indexed",
            LogConfig {
                segment_bytes: 4096,
                index_interval_bytes: 100,
                roll_ms: None,
                ..LogConfig::default()
            },
            6,
            true,
        ),
    ];
    for (config_choice, (name, config, batches, indexes)) in cases.into_iter().enumerate() {
        let path = scratch.join(name);
        let _ = std::fs::remove_dir_all(&path);
        let (mut log, _) = DiskLog::open(&path, config).unwrap();
        for i in 0..batches {
            let batch =
                runnel::storage::batch::build(1 + i as u32 % 3, b"payload", NOW_MS + i as i64);
            log.append_as_leader(BatchBytes(batch.into()), (i / 2) as u32)
                .unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let mut read = segment_recovery::read(&path).unwrap();
        read.config = match config_choice {
            0 => 0,
            1 => 1,
            _ => 2,
        };
        if !indexes {
            for s in &mut read.segments {
                (s.2, s.3) = (None, None);
            }
        }
        read.timestamp = (NOW_MS + 2) as u64;
        read.reopen = config_choice == 2;
        assert!(read.segments.len() <= 3, "{name}: at most 3 segments");
        let parsed = segment_recovery::parse(&segment_recovery::unparse(&read));
        assert_eq!(parsed.segments.len(), read.segments.len(), "{name}");
        save(dir, name, &segment_recovery::unparse(&read));
        if name == "one-segment" {
            // A torn tail, no recovery point: the scan must cut it.
            let log = &mut read.segments[0].1;
            log.truncate(log.len() - 5);
            read.recovery_point = None;
            save(dir, "torn-tail", &segment_recovery::unparse(&read));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
