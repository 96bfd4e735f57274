//! The Kafka APIs and versions Runnel serves, advertised in ApiVersions.
//! Never advertise an API that is not implemented: clients switch to
//! whatever is advertised (see shared/reference/kafka-wire-compat.md).

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ApiKey;

/// (API, lowest served version, highest advertised version).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    // Produce v0-2 are advertised but refused: librdkafka < 2.10 stops
    // compressing unless v0 is advertised (KAFKA-18659).
    (ApiKey::Produce, 0, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    // Group APIs from v0: librdkafka 2.0.2's feature map wants the overlap.
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // From v1: kafka-protocol 0.18 does not decode the ACL APIs' v0.
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

pub fn range(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api_key)
        .map(|(_, min, max)| (*min, *max))
}

/// KIP-511: a client that sent a newer ApiVersions than we know gets a v0
/// answer (header v0) with UNSUPPORTED_VERSION and our version list.
pub fn unsupported_api_versions(correlation_id: i32) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    buf.put_i16(35); // UNSUPPORTED_VERSION
    buf.put_i32(SUPPORTED.len() as i32);
    for (k, min, max) in SUPPORTED {
        buf.put_i16(*k as i16);
        buf.put_i16(*min);
        buf.put_i16(*max);
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf
}
