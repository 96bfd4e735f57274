//! Bad input from the network gets an error answer or a closed connection,
//! never a crash: oversized, negative and garbage frames, unknown API keys,
//! too-new ApiVersions (KIP-511 answer), corrupt record batches (nothing
//! appended), garbage after the internal magic. Pipelined requests are
//! answered in order. The node keeps serving throughout.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel::client::{encode_batch, Connection};
use runnel_tests::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn raw(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// True if the server closes the connection (reads reach end of stream)
/// within the read timeout; whatever it sent before is skipped.
fn closed(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut
            }
        }
    }
    false
}

fn still_serves(port: u16) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Connection::connect(&format!("127.0.0.1:{port}"))
            .await
            .expect("connect");
        let r = c
            .call(&ApiVersionsRequest::default(), 3)
            .await
            .expect("ApiVersions after bad input");
        assert_eq!(r.error_code, 0);
    });
}

#[test]
fn bad_frames_close_the_connection_and_the_node_keeps_serving() {
    let c = DevCluster::start();
    let port = c.port;

    // Oversized (above socket.request.max.bytes, 100 MB by default).
    let mut s = raw(port);
    s.write_all(&(200_000_000i32).to_be_bytes()).unwrap();
    assert!(closed(s), "oversized request");
    // Negative size.
    let mut s = raw(port);
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(closed(s), "negative size");
    // Unknown API key 999.
    let mut s = raw(port);
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(999);
    f.put_i16(0);
    f.put_i32(1);
    f.put_i16(-1);
    s.write_all(&f).unwrap();
    assert!(closed(s), "unknown api key");
    // A Metadata v9 header followed by garbage.
    let mut s = raw(port);
    let mut f = BytesMut::new();
    f.put_i32(40);
    f.put_i16(3);
    f.put_i16(9);
    f.put_i32(7);
    f.put_slice(&[0xff; 32]);
    s.write_all(&f).unwrap();
    assert!(closed(s), "garbage body");
    // Garbage after the internal magic.
    let mut s = raw(port);
    s.write_all(b"RNL\x01").unwrap();
    s.write_all(&[0xff; 64]).unwrap();
    assert!(closed(s), "garbage internal handshake");
    still_serves(port);
}

/// A few bytes that declare a huge array or string: kafka-protocol 0.18
/// sized its allocation from the count and aborted the process; the
/// patched decoders (vendor/kafka-protocol) refuse it as malformed.
#[test]
fn huge_declared_counts_are_refused_without_allocating() {
    let c = DevCluster::start();
    let port = c.port;
    let header = |f: &mut BytesMut, api_key: i16, version: i16, flexible: bool| {
        f.put_i16(api_key);
        f.put_i16(version);
        f.put_i32(1);
        f.put_i16(-1); // null client id
        if flexible {
            f.put_u8(0); // no tagged fields
        }
    };
    let mut cases: Vec<(&str, BytesMut)> = Vec::new();
    // Metadata v1: topics array of i32::MAX elements.
    let mut f = BytesMut::new();
    header(&mut f, 3, 1, false);
    f.put_i32(i32::MAX);
    cases.push(("Metadata v1 array", f));
    // Metadata v9: compact array of 2^32 - 2 elements (varint).
    let mut f = BytesMut::new();
    header(&mut f, 3, 9, true);
    f.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    cases.push(("Metadata v9 compact array", f));
    // Produce v9: a transactional id compact string of ~4 GB.
    let mut f = BytesMut::new();
    header(&mut f, 0, 9, true);
    f.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    cases.push(("Produce v9 compact string", f));
    // Produce v3: one topic, one partition, records of i32::MAX bytes.
    let mut f = BytesMut::new();
    header(&mut f, 0, 3, false);
    f.put_i16(-1); // null transactional id
    f.put_i16(1); // acks
    f.put_i32(1000); // timeout
    f.put_i32(1); // one topic
    f.put_i16(1);
    f.put_u8(b't');
    f.put_i32(1); // one partition
    f.put_i32(0);
    f.put_i32(i32::MAX); // records length
    cases.push(("Produce v3 records bytes", f));
    for (what, body) in cases {
        let mut s = raw(port);
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        s.write_all(&frame).unwrap();
        assert!(closed(s), "{what}: the connection is closed");
        still_serves(port);
    }
}

/// Kafka's `connections.max.idle.ms`: a client that connects and says
/// nothing, or stops in the middle of a request, is disconnected; one that
/// keeps talking is not.
#[test]
fn idle_client_connections_are_closed() {
    let c = DevCluster::start_with(&["connections.max.idle.ms=1000"]);
    let silent = raw(c.port);
    let started = std::time::Instant::now();
    assert!(closed(silent), "a silent connection is closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    let mut stalled = raw(c.port);
    stalled.write_all(&100i32.to_be_bytes()).unwrap();
    stalled.write_all(&[0, 18, 0, 3]).unwrap();
    assert!(closed(stalled), "a stalled request is dropped");
    // A client asking every 300 ms for 3 s stays connected throughout.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut talker = Connection::connect(&format!("127.0.0.1:{}", c.port))
            .await
            .expect("connect");
        for _ in 0..10 {
            let r = talker
                .call(&ApiVersionsRequest::default(), 3)
                .await
                .expect("a talking client keeps its connection");
            assert_eq!(r.error_code, 0);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

#[test]
fn too_new_api_versions_gets_the_v0_error_answer() {
    let c = DevCluster::start();
    let mut s = raw(c.port);
    let mut f = BytesMut::new();
    f.put_i32(0);
    f.put_i16(18); // ApiVersions
    f.put_i16(99);
    f.put_i32(42);
    f.put_i16(-1); // client id: null
    f.put_u8(0); // tagged fields (header v2)
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    s.write_all(&f).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(
        i32::from_be_bytes(body[0..4].try_into().unwrap()),
        42,
        "correlation id"
    );
    assert_eq!(
        i16::from_be_bytes(body[4..6].try_into().unwrap()),
        35,
        "UNSUPPORTED_VERSION"
    );
    let keys = i32::from_be_bytes(body[6..10].try_into().unwrap());
    assert!(keys >= 5, "the answer lists the supported APIs");
}

#[test]
fn corrupt_batches_are_refused_and_nothing_is_appended() {
    let c = DevCluster::start();
    c.create_topic("corrupt", 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = runnel::client::Client::connect(&c.bootstrap())
            .await
            .unwrap();
        client
            .refresh(Some(&["corrupt".to_string()]))
            .await
            .unwrap();
        let leader = client.leader("corrupt", 0).expect("leader");
        let good = encode_batch(&[(None, Some(Bytes::from_static(b"hello")))], 1).unwrap();
        let mut bad = BytesMut::from(&good[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0x55; // the CRC covers the records: this breaks it
        let produce = |records: Bytes| {
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("corrupt")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records))])])
        };
        let r = client
            .call_at(&leader, &produce(bad.freeze()), 8)
            .await
            .unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 2,
            "CORRUPT_MESSAGE"
        );
        let r = client.call_at(&leader, &produce(good), 8).await.unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, 0),
            "the corrupt batch took no offset"
        );
        // A negative partition index names no partition (it must not read partition 0).
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        let fetch = kafka_protocol::messages::FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("corrupt")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(-1)
                    .with_partition_max_bytes(1 << 20)])]);
        let r = client.call_at(&leader, &fetch, 11).await.unwrap();
        assert_eq!(
            r.responses[0].partitions[0].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let c = DevCluster::start();
    let mut s = raw(c.port);
    let mut all = BytesMut::new();
    for (i, key) in [(1, 18i16), (2, 3), (3, 18), (4, 3)] {
        let mut f = BytesMut::new();
        f.put_i32(0);
        let header = kafka_protocol::messages::RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(if key == 18 { 0 } else { 1 })
            .with_correlation_id(i);
        use kafka_protocol::protocol::Encodable;
        header.encode(&mut f, 1).unwrap();
        if key == 18 {
            ApiVersionsRequest::default().encode(&mut f, 0).unwrap();
        } else {
            MetadataRequest::default()
                .with_topics(Some(vec![]))
                .encode(&mut f, 1)
                .unwrap();
        }
        let size = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&size.to_be_bytes());
        all.put_slice(&f);
    }
    s.write_all(&all).unwrap();
    for expected in 1..=4 {
        let mut size = [0u8; 4];
        s.read_exact(&mut size).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        s.read_exact(&mut body).unwrap();
        assert_eq!(i32::from_be_bytes(body[0..4].try_into().unwrap()), expected);
    }
}

/// Each produce refusal Kafka gives, through a real client connection:
/// a batch over the topic's max.message.bytes (MESSAGE_TOO_LARGE), a
/// record count that lies about its offset range (INVALID_RECORD), a
/// timestamp a day ahead (INVALID_TIMESTAMP), the internal offsets topic
/// (INVALID_TOPIC_EXCEPTION); nothing refused takes an offset.
#[test]
fn produce_refusals_are_kafkas() {
    let c = DevCluster::start();
    let created = tool(
        &[
            "topics",
            "--bootstrap-server",
            &c.bootstrap(),
            "--create",
            "--topic",
            "small",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
            "--config",
            "max.message.bytes=300",
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(stdout(&created).contains("Created topic"), "{created:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = runnel::client::Client::connect(&c.bootstrap())
            .await
            .unwrap();
        client.refresh(Some(&["small".to_string()])).await.unwrap();
        let leader = client.leader("small", 0).expect("leader");
        let produce = |topic: &'static str, records: Bytes| {
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(topic)))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records))])])
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let value = |n: usize| Some(Bytes::from(vec![b'v'; n]));
        let with_crc = |mut b: BytesMut| {
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            b.freeze()
        };
        let big = encode_batch(&[(None, value(400))], now_ms).unwrap();
        let mut lying = BytesMut::from(&encode_batch(&[(None, value(5))], now_ms).unwrap()[..]);
        lying[23..27].copy_from_slice(&1_000_000i32.to_be_bytes());
        let ahead = encode_batch(&[(None, value(5))], now_ms + 86_400_000).unwrap();
        for (topic, records, code, what) in [
            ("small", big, 10, "MESSAGE_TOO_LARGE"),
            ("small", with_crc(lying), 87, "INVALID_RECORD"),
            ("small", ahead, 32, "INVALID_TIMESTAMP"),
            (
                "__consumer_offsets",
                encode_batch(&[(None, value(5))], now_ms).unwrap(),
                17,
                "INVALID_TOPIC_EXCEPTION",
            ),
        ] {
            let r = client
                .call_at(&leader, &produce(topic, records), 8)
                .await
                .unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, code, "{what}: {:?}", p.error_message);
            assert!(p.error_message.is_some(), "{what} says why");
        }
        let fine = encode_batch(&[(None, value(5))], now_ms).unwrap();
        // The leader may still be opening the new partition's log when the
        // refusals above (decided before the partition is reached) are
        // done: NOT_LEADER_OR_FOLLOWER / LEADER_NOT_AVAILABLE are retriable,
        // and a Kafka producer retries them, as this does (bounded).
        let mut tries = 0;
        let r = loop {
            let r = client
                .call_at(&leader, &produce("small", fine.clone()), 8)
                .await
                .unwrap();
            let code = r.responses[0].partition_responses[0].error_code;
            tries += 1;
            if !matches!(code, 5 | 6) || tries == 100 {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, 0),
            "nothing refused took an offset"
        );
    });
}
