//! A request for an API (or version) Runnel does not serve, from a client
//! that skipped ApiVersions, gets that API's response with
//! UNSUPPORTED_VERSION (35) and the connection stays open (Kafka closes it;
//! see specs/conformance.md, "Unserved APIs", and
//! node/src/kafka/unsupported.rs).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, DescribeClusterRequest,
    DescribeClusterResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_tests::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const UNSUPPORTED_VERSION: i16 = 35;

/// Writes one request (size, header, body) as a client would.
fn send(s: &mut TcpStream, key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) {
    let mut f = BytesMut::new();
    f.extend_from_slice(&[0; 4]);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("unsupported-apis-test")))
        .encode(&mut f, key.request_header_version(version))
        .unwrap();
    body.encode(&mut f, version).unwrap();
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    s.write_all(&f).unwrap();
}

/// Reads one response and checks its correlation id; returns the body.
fn receive(s: &mut TcpStream, key: ApiKey, version: i16, correlation_id: i32) -> Bytes {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: no answer ({e}): connection closed?"));
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, correlation_id, "{key:?} v{version}");
    body
}

#[test]
fn unserved_apis_get_unsupported_version_and_the_connection_stays_open() {
    let c = DevCluster::start();
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // AlterConfigs v0 is served (topics only): one result per resource,
    // each naming what is wrong with it.
    let resources = ["a", "b"].map(|name| {
        AlterConfigsResource::default()
            .with_resource_type(2) // TOPIC
            .with_resource_name(StrBytes::from_static_str(name))
    });
    let alter = AlterConfigsRequest::default().with_resources(resources.to_vec());
    send(&mut s, ApiKey::AlterConfigs, 0, 1, &alter);
    let mut body = receive(&mut s, ApiKey::AlterConfigs, 0, 1);
    let r = AlterConfigsResponse::decode(&mut body, 0).unwrap();
    let got: Vec<_> = r
        .responses
        .iter()
        .map(|c| (c.resource_name.to_string(), c.error_code))
        .collect();
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    assert_eq!(
        got,
        [
            ("a".to_string(), UNKNOWN_TOPIC_OR_PARTITION),
            ("b".to_string(), UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    assert!(!body.has_remaining());

    // DescribeCluster v0 (not implemented; flexible: header v2, tagged
    // fields): its top-level error code.
    send(
        &mut s,
        ApiKey::DescribeCluster,
        0,
        2,
        &DescribeClusterRequest::default(),
    );
    let mut body = receive(&mut s, ApiKey::DescribeCluster, 0, 2);
    let r = DescribeClusterResponse::decode(&mut body, 0).unwrap();
    assert_eq!(r.error_code, UNSUPPORTED_VERSION);

    // The same connection still serves: Metadata v1 lists the brokers.
    let metadata = MetadataRequest::default().with_topics(Some(vec![]));
    send(&mut s, ApiKey::Metadata, 1, 3, &metadata);
    let mut body = receive(&mut s, ApiKey::Metadata, 1, 3);
    let r = MetadataResponse::decode(&mut body, 1).unwrap();
    assert_eq!(r.brokers.len(), 3, "{r:?}");
}
