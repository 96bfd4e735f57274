//! Kafka's error codes, one table for the whole front end, with the values
//! the kafka-protocol crate defines (`ResponseError`), so no number here is
//! typed by hand.

use kafka_protocol::error::ResponseError as E;

pub const NONE: i16 = 0;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = E::CoordinatorLoadInProgress.code();
pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();
pub const GROUP_MAX_SIZE_REACHED: i16 = E::GroupMaxSizeReached.code();
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = E::GroupSubscribedToTopic.code();
pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
pub const INVALID_CONFIG: i16 = E::InvalidConfig.code();
pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();
pub const INVALID_PARTITIONS: i16 = E::InvalidPartitions.code();
pub const INVALID_RECORD: i16 = E::InvalidRecord.code();
pub const INVALID_REPLICATION_FACTOR: i16 = E::InvalidReplicationFactor.code();
pub const INVALID_REPLICA_ASSIGNMENT: i16 = E::InvalidReplicaAssignment.code();
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
pub const INVALID_SESSION_TIMEOUT: i16 = E::InvalidSessionTimeout.code();
pub const INVALID_TIMESTAMP: i16 = E::InvalidTimestamp.code();
pub const INVALID_TOPIC_EXCEPTION: i16 = E::InvalidTopicException.code();
pub const KAFKA_STORAGE_ERROR: i16 = E::KafkaStorageError.code();
pub const LEADER_NOT_AVAILABLE: i16 = E::LeaderNotAvailable.code();
pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
pub const MESSAGE_TOO_LARGE: i16 = E::MessageTooLarge.code();
pub const NON_EMPTY_GROUP: i16 = E::NonEmptyGroup.code();
pub const NOT_CONTROLLER: i16 = E::NotController.code();
pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
pub const NOT_ENOUGH_REPLICAS: i16 = E::NotEnoughReplicas.code();
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = E::NotEnoughReplicasAfterAppend.code();
pub const NOT_LEADER_OR_FOLLOWER: i16 = E::NotLeaderOrFollower.code();
pub const OFFSET_METADATA_TOO_LARGE: i16 = E::OffsetMetadataTooLarge.code();
pub const OFFSET_OUT_OF_RANGE: i16 = E::OffsetOutOfRange.code();
pub const POLICY_VIOLATION: i16 = E::PolicyViolation.code();
pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
pub const REQUEST_TIMED_OUT: i16 = E::RequestTimedOut.code();
pub const TOPIC_ALREADY_EXISTS: i16 = E::TopicAlreadyExists.code();
pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = E::UnsupportedCompressionType.code();
pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();

#[cfg(test)]
mod tests {
    /// The numbers Kafka's clients know (the tables this replaced).
    #[test]
    fn codes_are_kafkas() {
        assert_eq!(super::COORDINATOR_LOAD_IN_PROGRESS, 14);
        assert_eq!(super::COORDINATOR_NOT_AVAILABLE, 15);
        assert_eq!(super::CORRUPT_MESSAGE, 2);
        assert_eq!(super::FENCED_INSTANCE_ID, 82);
        assert_eq!(super::GROUP_ID_NOT_FOUND, 69);
        assert_eq!(super::GROUP_MAX_SIZE_REACHED, 81);
        assert_eq!(super::GROUP_SUBSCRIBED_TO_TOPIC, 86);
        assert_eq!(super::ILLEGAL_GENERATION, 22);
        assert_eq!(super::INCONSISTENT_GROUP_PROTOCOL, 23);
        assert_eq!(super::INVALID_CONFIG, 40);
        assert_eq!(super::INVALID_GROUP_ID, 24);
        assert_eq!(super::INVALID_PARTITIONS, 37);
        assert_eq!(super::INVALID_RECORD, 87);
        assert_eq!(super::INVALID_REPLICATION_FACTOR, 38);
        assert_eq!(super::INVALID_REPLICA_ASSIGNMENT, 39);
        assert_eq!(super::INVALID_REQUEST, 42);
        assert_eq!(super::INVALID_SESSION_TIMEOUT, 26);
        assert_eq!(super::INVALID_TIMESTAMP, 32);
        assert_eq!(super::INVALID_TOPIC_EXCEPTION, 17);
        assert_eq!(super::KAFKA_STORAGE_ERROR, 56);
        assert_eq!(super::LEADER_NOT_AVAILABLE, 5);
        assert_eq!(super::MEMBER_ID_REQUIRED, 79);
        assert_eq!(super::MESSAGE_TOO_LARGE, 10);
        assert_eq!(super::NONE, 0);
        assert_eq!(super::NON_EMPTY_GROUP, 68);
        assert_eq!(super::NOT_CONTROLLER, 41);
        assert_eq!(super::NOT_COORDINATOR, 16);
        assert_eq!(super::NOT_ENOUGH_REPLICAS, 19);
        assert_eq!(super::NOT_ENOUGH_REPLICAS_AFTER_APPEND, 20);
        assert_eq!(super::NOT_LEADER_OR_FOLLOWER, 6);
        assert_eq!(super::OFFSET_METADATA_TOO_LARGE, 12);
        assert_eq!(super::OFFSET_OUT_OF_RANGE, 1);
        assert_eq!(super::POLICY_VIOLATION, 44);
        assert_eq!(super::REBALANCE_IN_PROGRESS, 27);
        assert_eq!(super::REQUEST_TIMED_OUT, 7);
        assert_eq!(super::TOPIC_ALREADY_EXISTS, 36);
        assert_eq!(super::UNKNOWN_MEMBER_ID, 25);
        assert_eq!(super::UNKNOWN_SERVER_ERROR, -1);
        assert_eq!(super::UNKNOWN_TOPIC_OR_PARTITION, 3);
        assert_eq!(super::UNSUPPORTED_COMPRESSION_TYPE, 76);
        assert_eq!(super::UNSUPPORTED_VERSION, 35);
    }
}
