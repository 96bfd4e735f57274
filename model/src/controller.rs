//! The controller: the cluster metadata as a deterministic state machine.
//!
//! [`MetadataImage`] is what every node builds by applying committed
//! [`MetadataRecord`]s from the coordinator quorum's log, in order (the
//! active controller, standby coordinators and brokers alike).
//! [`Controller::decide`] is the active controller's logic: it validates a
//! request against the image and answers with the records to propose; it
//! changes nothing itself, so the decision is the same wherever it runs and
//! only committed records change the metadata.
//!
//! The role ZooKeeper's ephemeral nodes played is played by broker epochs
//! and sessions: a broker registers (getting a new broker epoch), heartbeats,
//! and is fenced when its session expires; partition leadership moves by the
//! rules in [`crate::partition`].

use crate::acl::{AclBinding, AclFilter, AclStore, ACLS_MAX, ACL_FILTERS_MAX};
use crate::core::{BrokerEpoch, LeaderEpoch, NodeId};
use crate::partition::{
    AlterPartitionError, AlterPartitionRequest, ElectionPolicy, PartitionRegistration,
};
use crate::producer_ids::{ProducerIdBlock, PRODUCER_ID_BLOCK_SIZE, PRODUCER_ID_MAX};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One committed change to the cluster metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker (re-)registered; it starts fenced.
    RegisterBroker {
        broker: NodeId,
        epoch: BrokerEpoch,
        endpoint: String,
        /// Where other brokers replicate from (internal protocol only).
        internal_endpoint: String,
    },
    UnfenceBroker {
        broker: NodeId,
        epoch: BrokerEpoch,
    },
    FenceBroker {
        broker: NodeId,
        epoch: BrokerEpoch,
    },
    /// The broker asked to shut down; it leads nothing from now on.
    BrokerShuttingDown {
        broker: NodeId,
        epoch: BrokerEpoch,
    },
    Topic {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// A new partition, or a change to one (full registration).
    Partition {
        topic: String,
        partition: u32,
        registration: PartitionRegistration,
    },
    RemoveTopic {
        name: String,
    },
    /// A block of producer ids went to `broker`; the next block starts at
    /// `next_producer_id` (Kafka's ProducerIdsRecord).
    ProducerIds {
        broker: NodeId,
        broker_epoch: BrokerEpoch,
        next_producer_id: u64,
    },
    /// A topic was created with its id (KIP-516; Kafka's TopicRecord): a
    /// topic deleted and created again under the same name gets a new id,
    /// which is how clients tell the two apart. Variants are appended,
    /// never reordered (postcard): logs written with the id-less `Topic`
    /// above still replay, their topics with id 0 ("none recorded").
    TopicCreated {
        name: String,
        topic_id: u128,
        configs: BTreeMap<String, String>,
    },
    /// ACLs added (Kafka's AccessControlEntryRecord): one record carries a
    /// whole CreateAcls request, which commits whole or not at all.
    AclsCreated {
        acls: Vec<AclBinding>,
    },
    /// ACLs removed (Kafka's RemoveAccessControlEntryRecord).
    AclsDeleted {
        acls: Vec<AclBinding>,
    },
    /// The broker's replicas of these partitions have no usable log (it
    /// could not open or write it): they lead nothing and join no ISR until
    /// the broker registers again (Kafka's offline log directory, KIP-858,
    /// per replica).
    ReplicasOffline {
        broker: NodeId,
        epoch: BrokerEpoch,
        partitions: Vec<(String, u32)>,
    },
    /// The whole image at a snapshot's end (KIP-630): what a metadata
    /// snapshot holds. Never decided by the controller; applying it makes
    /// the image this one.
    Image(Box<MetadataImage>),
}

/// One controller decision: every record that carries out one request,
/// written to the metadata log as a single entry, so that it commits,
/// replicates and applies whole or not at all (KRaft's atomic batches). A
/// broker never shows half a topic; a leader change never commits a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetadataDecision {
    /// The request it carries out, when a broker asked (the controller's
    /// own decisions, such as fencing on session expiry, have none).
    pub request: Option<RequestKey>,
    pub records: Vec<MetadataRecord>,
}

/// Which request a decision carries out: a broker process's session (drawn
/// fresh when the process starts) and the request's number in it. A
/// re-sent request carries the same key, so the controller can tell it
/// from a new one (Raft's client sessions, Ongaro's dissertation §6.3).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct RequestKey {
    pub session: u64,
    pub seq: u64,
}

/// Sessions whose applied requests the metadata remembers; the least
/// recently active is forgotten first.
pub const REQUEST_SESSIONS_MAX: usize = 1024;
/// Applied requests remembered per session; the oldest is forgotten first.
/// A broker re-sends only requests still outstanding, far fewer than this.
pub const REQUESTS_PER_SESSION_MAX: usize = 1024;

/// The requests the committed metadata has carried out, and where: part of
/// the replicated state (a fold of the log like the rest of the image), so
/// a new controller knows them. Bounded by the two constants above; what
/// is forgotten is forgotten the same way on every node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestLedger {
    sessions: BTreeMap<u64, SessionRequests>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct SessionRequests {
    /// The end offset of the session's latest decision (its activity).
    last_end_offset: u64,
    /// seq → the end offset of the decision that carried it out.
    applied: BTreeMap<u64, u64>,
}

impl RequestLedger {
    /// Where the decision that carried out `key` ends, if it was applied
    /// (and is still remembered).
    pub fn applied(&self, key: RequestKey) -> Option<u64> {
        self.sessions
            .get(&key.session)?
            .applied
            .get(&key.seq)
            .copied()
    }

    fn note(&mut self, key: RequestKey, end_offset: u64) {
        let session = self.sessions.entry(key.session).or_default();
        session.last_end_offset = end_offset;
        session.applied.insert(key.seq, end_offset);
        if session.applied.len() > REQUESTS_PER_SESSION_MAX {
            session.applied.pop_first();
        }
        if self.sessions.len() > REQUEST_SESSIONS_MAX {
            let idlest = self
                .sessions
                .iter()
                .min_by_key(|(id, s)| (s.last_end_offset, **id))
                .map(|(id, _)| *id);
            if let Some(id) = idlest {
                self.sessions.remove(&id);
            }
        }
    }
}

impl MetadataRecord {
    /// An upper bound on the record's encoded size (postcard: strings are a
    /// varint length and their bytes, numbers at most 10 bytes each).
    pub fn size_bound(&self) -> usize {
        const FIXED: usize = 64;
        match self {
            MetadataRecord::RegisterBroker {
                endpoint,
                internal_endpoint,
                ..
            } => FIXED + endpoint.len() + internal_endpoint.len(),
            MetadataRecord::Topic { name, configs }
            | MetadataRecord::TopicCreated { name, configs, .. } => {
                FIXED
                    + name.len()
                    + configs
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 10)
                        .sum::<usize>()
            }
            MetadataRecord::Partition {
                topic,
                registration,
                ..
            } => FIXED + topic.len() + 10 * (registration.replicas.len() + registration.isr.len()),
            MetadataRecord::RemoveTopic { name } => FIXED + name.len(),
            MetadataRecord::ReplicasOffline { partitions, .. } => {
                FIXED + partitions.iter().map(|(t, _)| t.len() + 10).sum::<usize>()
            }
            MetadataRecord::AclsCreated { acls } | MetadataRecord::AclsDeleted { acls } => {
                FIXED + acls.iter().map(AclBinding::size_bound).sum::<usize>()
            }
            _ => FIXED,
        }
    }
}

impl crate::quorum::EntryWeight for MetadataDecision {
    fn weight(&self) -> usize {
        self.records.len()
    }
}

/// Topics the cluster keeps for itself: clients may read them, never write,
/// create, grow or delete them (Kafka's `Topic.isInternal`; Kafka lets an
/// authorized client delete or grow one, which breaks every group placed on
/// it, so Runnel refuses).
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets"];

pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

fn refuse_internal(name: &str, what: &str) -> Result<(), ControllerError> {
    match is_internal_topic(name) {
        true => Err(ControllerError::InvalidTopic(format!(
            "Topic {name} is internal: clients cannot {what} it."
        ))),
        false => Ok(()),
    }
}

/// The most partitions one request may create. They are one decision (one
/// metadata-log entry), so the bound is what one entry may hold. Kafka
/// bounds a user operation at 10,000 metadata records and answers
/// POLICY_VIOLATION beyond it; Runnel bounds partitions, so a topic of
/// 10,000 partitions (10,001 records) is still one decision.
pub const PARTITIONS_PER_REQUEST_MAX: u32 = 10_000;

/// The most partitions one topic may have (more are INVALID_PARTITIONS).
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 100_000;

/// The most bytes a client's request may write to the metadata log in one
/// decision (by [`MetadataRecord::size_bound`]); more is POLICY_VIOLATION.
/// Half of what the metadata log reads back as one entry (16 MiB), so no
/// decision is ever committed that recovery would take for a torn tail.
pub const DECISION_BYTES_MAX: usize = 8 << 20;

/// Kafka's topic-level configuration keys (`TopicConfig`). CreateTopics with
/// any other key is INVALID_CONFIG, as in Kafka.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Topic keys the brokers apply as numbers (retention), checked as such
/// at creation so that every broker reads the same policy.
pub const TOPIC_RETENTION_KEYS: &[&str] = &["retention.ms", "retention.bytes"];

/// Topic keys the brokers or the controller apply, with Kafka's types and
/// lower bounds (`TopicConfig`'s ConfigDef), checked when set so that every
/// node reads the same value.
const TOPIC_TYPED_KEYS: &[(&str, ConfigType)] = &[
    ("min.insync.replicas", ConfigType::Int { at_least: 1 }),
    ("max.message.bytes", ConfigType::Int { at_least: 0 }),
    // Kafka 4.0's floor (KIP-1030; 14 bytes before): every roll costs
    // file creations and an index fsync.
    ("segment.bytes", ConfigType::Int { at_least: 1 << 20 }),
    // The floor KIP-1030 sets for Kafka 5.0 (1 ms before), for the same
    // reason: a topic key must not make every append roll.
    ("segment.ms", ConfigType::Long { at_least: 60_000 }),
    ("unclean.leader.election.enable", ConfigType::Boolean),
    // Compaction (the brokers' cleaner applies them).
    ("delete.retention.ms", ConfigType::Long { at_least: 0 }),
    ("min.compaction.lag.ms", ConfigType::Long { at_least: 0 }),
    ("max.compaction.lag.ms", ConfigType::Long { at_least: 1 }),
    ("min.cleanable.dirty.ratio", ConfigType::Fraction),
    (
        "message.timestamp.type",
        ConfigType::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
];

#[derive(Clone, Copy)]
enum ConfigType {
    Int {
        at_least: i64,
    },
    Long {
        at_least: i64,
    },
    Boolean,
    /// A DOUBLE between 0 and 1 (Kafka's `between(0, 1)`).
    Fraction,
    /// Kafka's `ValidString.in(...)` (case-sensitive).
    OneOf(&'static [&'static str]),
}

impl ConfigType {
    /// Kafka's ConfigDef complaint about `value`, if any (the text after
    /// "Invalid value V for configuration K: ").
    fn complaint(self, value: &str) -> Option<String> {
        let v = value.trim();
        let (number, at_least) = match self {
            ConfigType::Boolean => {
                let ok = v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false");
                return (!ok).then(|| "Expected value to be either true or false".to_string());
            }
            ConfigType::Fraction => {
                return match v.parse::<f64>() {
                    Err(_) => Some("Not a number of type DOUBLE".to_string()),
                    Ok(x) if x < 0.0 => Some("Value must be at least 0".to_string()),
                    Ok(x) if x > 1.0 => Some("Value must be no more than 1".to_string()),
                    Ok(_) => None,
                };
            }
            ConfigType::OneOf(allowed) => {
                return (!allowed.contains(&v))
                    .then(|| format!("String must be one of: {}", allowed.join(", ")));
            }
            ConfigType::Int { at_least } => (v.parse::<i32>().map(i64::from).ok(), at_least),
            ConfigType::Long { at_least } => (v.parse::<i64>().ok(), at_least),
        };
        let kind = match self {
            ConfigType::Int { .. } => "INT",
            _ => "LONG",
        };
        match number {
            None => Some(format!("Not a number of type {kind}")),
            Some(n) if n < at_least => Some(format!("Value must be at least {at_least}")),
            Some(_) => None,
        }
    }
}

/// Topic keys of Kafka's LIST type, the only ones APPEND and SUBTRACT
/// take, with Kafka's defaults.
const TOPIC_LIST_KEYS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("follower.replication.throttled.replicas", ""),
    ("leader.replication.throttled.replicas", ""),
];

/// IncrementalAlterConfigs' APPEND (values not there yet go at the end)
/// and SUBTRACT (values go), on the current value or Kafka's default, as
/// Kafka's `ConfigAdminManager` does; any other key is INVALID_CONFIG.
fn alter_lists(
    configs: &mut BTreeMap<String, String>,
    append: &BTreeMap<String, Vec<String>>,
    subtract: &BTreeMap<String, Vec<String>>,
) -> Result<(), ControllerError> {
    for (key, values, adding) in append
        .iter()
        .map(|(k, v)| (k, v, true))
        .chain(subtract.iter().map(|(k, v)| (k, v, false)))
    {
        let Some(&(_, default)) = TOPIC_LIST_KEYS.iter().find(|(k, _)| k == key) else {
            let key: String = key.chars().take(100).collect();
            return Err(ControllerError::InvalidConfig(format!(
                "Config value append is not allowed for config key: {key}"
            )));
        };
        let current = configs.get(key).map_or(default, String::as_str);
        let mut list: Vec<String> = current
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            match adding {
                true if !list.iter().any(|x| x == v) => list.push(v.to_string()),
                true => {}
                false => list.retain(|x| x != v),
            }
        }
        configs.insert(key.clone(), list.join(","));
    }
    Ok(())
}

/// The longest value a topic config may have.
pub const TOPIC_CONFIG_VALUE_BYTES_MAX: usize = 16 << 10;

/// Kafka's INVALID_CONFIG for an unknown key; a bound on values.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ControllerError> {
    for (key, value) in configs {
        if !TOPIC_CONFIG_KEYS.contains(&key.as_str()) {
            let key: String = key.chars().take(100).collect();
            return Err(ControllerError::InvalidConfig(format!(
                "Unknown topic config name: {key}"
            )));
        }
        if value.len() > TOPIC_CONFIG_VALUE_BYTES_MAX {
            return Err(ControllerError::InvalidConfig(format!(
                "The value of {key} is longer than {TOPIC_CONFIG_VALUE_BYTES_MAX} bytes"
            )));
        }
        let typed = TOPIC_TYPED_KEYS.iter().find(|(k, _)| k == key);
        if let Some(why) = typed.and_then(|(_, t)| t.complaint(value)) {
            let value: String = value.chars().take(100).collect();
            return Err(ControllerError::InvalidConfig(format!(
                "Invalid value {value} for configuration {key}: {why}"
            )));
        }
        let long_at_least_minus_one = value.trim().parse::<i64>().is_ok_and(|v| v >= -1);
        if TOPIC_RETENTION_KEYS.contains(&key.as_str()) && !long_at_least_minus_one {
            // Kafka's ConfigDef message for a LONG with atLeast(-1).
            let value: String = value.chars().take(100).collect();
            return Err(ControllerError::InvalidConfig(format!(
                "Invalid value {value} for configuration {key}: must be a number of type LONG, at least -1"
            )));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub epoch: BrokerEpoch,
    /// The advertised Kafka listener (what Metadata hands to clients).
    pub endpoint: String,
    /// The broker's internal listener (never handed to clients).
    pub internal_endpoint: String,
    pub fenced: bool,
    pub shutting_down: bool,
    /// Partitions whose replica on this broker has no usable log
    /// ([`MetadataRecord::ReplicasOffline`]); emptied by a new registration.
    #[serde(default)]
    pub offline_replicas: BTreeSet<(String, u32)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicImage {
    /// The topic id (KIP-516) drawn when it was created; 0 for topics
    /// created before ids were recorded.
    #[serde(default)]
    pub id: u128,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRegistration>,
}

/// The cluster metadata as of some committed offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<NodeId, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
    /// Broker epochs are unique and increasing across the cluster.
    pub last_broker_epoch: BrokerEpoch,
    /// The first producer id no block has included yet.
    pub next_producer_id: u64,
    /// Which brokers' requests were carried out, and where.
    pub requests: RequestLedger,
    /// Every ACL of the cluster (what the authorizer decides by).
    pub acls: AclStore,
    /// The leader epoch new partitions start at: above every epoch any
    /// deleted topic reached. A topic deleted and created again under the
    /// same name is another topic (Kafka tells them apart by topic id, which
    /// replication messages here do not carry): starting above the old
    /// epochs makes every replica of the old one fence the new one's
    /// messages and the new one fence the old one's, by the epoch rules
    /// alone, while brokers catch up with the change.
    #[serde(default)]
    pub leader_epoch_floor: LeaderEpoch,
}

impl MetadataImage {
    /// Applies one decision, all its records in order; `end_offset` is the
    /// metadata-log offset after its entry.
    pub fn apply_decision(&mut self, decision: &MetadataDecision, end_offset: u64) {
        for r in &decision.records {
            self.apply(r);
        }
        if let Some(key) = decision.request {
            self.requests.note(key, end_offset);
        }
    }

    /// Applies one committed record. Records come from the active
    /// controller's decisions, so an inconsistent record is ignored rather
    /// than trusted (it can only come from a bug or a corrupt log).
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker {
                broker,
                epoch,
                endpoint,
                internal_endpoint,
            } => {
                self.last_broker_epoch = self.last_broker_epoch.max(*epoch);
                let reg = BrokerRegistration {
                    epoch: *epoch,
                    endpoint: endpoint.clone(),
                    internal_endpoint: internal_endpoint.clone(),
                    fenced: true,
                    shutting_down: false,
                    offline_replicas: BTreeSet::new(),
                };
                self.brokers.insert(*broker, reg);
            }
            MetadataRecord::UnfenceBroker { broker, epoch } => {
                if let Some(b) = self.brokers.get_mut(broker).filter(|b| b.epoch == *epoch) {
                    b.fenced = false;
                    b.shutting_down = false;
                }
            }
            MetadataRecord::FenceBroker { broker, epoch } => {
                if let Some(b) = self.brokers.get_mut(broker).filter(|b| b.epoch == *epoch) {
                    b.fenced = true;
                }
            }
            MetadataRecord::BrokerShuttingDown { broker, epoch } => {
                if let Some(b) = self.brokers.get_mut(broker).filter(|b| b.epoch == *epoch) {
                    b.shutting_down = true;
                }
            }
            MetadataRecord::Topic { name, configs } => {
                let topic = self.topics.entry(name.clone()).or_default();
                topic.configs = configs.clone();
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                configs,
            } => {
                let topic = self.topics.entry(name.clone()).or_default();
                topic.configs = configs.clone();
                topic.id = *topic_id;
            }
            MetadataRecord::Partition {
                topic,
                partition,
                registration,
            } => {
                let Some(t) = self.topics.get_mut(topic) else {
                    return;
                };
                let p = *partition as usize;
                if p < t.partitions.len() {
                    t.partitions[p] = registration.clone();
                } else if p == t.partitions.len() {
                    t.partitions.push(registration.clone());
                }
            }
            MetadataRecord::RemoveTopic { name } => {
                // A topic of the same name created later has new logs.
                for b in self.brokers.values_mut() {
                    b.offline_replicas.retain(|(t, _)| t != name);
                }
                if let Some(topic) = self.topics.remove(name) {
                    let reached = topic.partitions.iter().map(|p| p.leader_epoch).max();
                    if let Some(reached) = reached {
                        self.leader_epoch_floor =
                            self.leader_epoch_floor.max(reached.saturating_add(1));
                    }
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::ReplicasOffline {
                broker,
                epoch,
                partitions,
            } => {
                if let Some(b) = self.brokers.get_mut(broker).filter(|b| b.epoch == *epoch) {
                    b.offline_replicas.extend(partitions.iter().cloned());
                }
            }
            MetadataRecord::AclsCreated { acls } => acls.iter().for_each(|a| self.acls.insert(a)),
            MetadataRecord::AclsDeleted { acls } => acls.iter().for_each(|a| self.acls.remove(a)),
            MetadataRecord::Image(image) => *self = (**image).clone(),
        }
    }

    /// May this broker lead or join an ISR: registered, unfenced, not
    /// shutting down.
    pub fn is_active(&self, broker: NodeId) -> bool {
        self.brokers
            .get(&broker)
            .is_some_and(|b| !b.fenced && !b.shutting_down)
    }

    /// May this broker's replica of `topic`-`partition` lead or join its
    /// ISR: the broker is active and the replica is not offline.
    pub fn is_eligible(&self, broker: NodeId, topic: &str, partition: u32) -> bool {
        self.brokers.get(&broker).is_some_and(|b| {
            !b.fenced
                && !b.shutting_down
                && !b.offline_replicas.contains(&(topic.to_string(), partition))
        })
    }

    /// Active brokers, sorted by id (the order placement uses).
    pub fn active_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .keys()
            .copied()
            .filter(|&b| self.is_active(b))
            .collect()
    }

    /// A new partition on `replicas`, led by the first active one, at the
    /// image's leader epoch floor.
    pub fn new_partition(&self, replicas: Vec<NodeId>) -> PartitionRegistration {
        PartitionRegistration {
            leader_epoch: self.leader_epoch_floor,
            ..PartitionRegistration::new(replicas, |b| self.is_active(b))
        }
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionRegistration> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }
}

/// The seed's placement rule: brokers sorted by id; partition `i`'s `j`-th
/// replica on broker `(i + start + j) mod n`. `start` spreads the first
/// (preferred leader) replicas of successive topics across brokers.
pub fn place_replicas(
    brokers: &[NodeId],
    partitions: u32,
    replication_factor: u32,
    start: usize,
) -> Vec<Vec<NodeId>> {
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    assert!(replication_factor as usize <= n && replication_factor > 0);
    (0..partitions as usize)
        .map(|i| {
            (0..replication_factor as usize)
                .map(|j| sorted[(i + start + j) % n])
                .collect()
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// Kafka's `num.partitions`.
    pub num_partitions: u32,
    /// Kafka's `default.replication.factor`.
    pub default_replication_factor: u32,
    pub policy: ElectionPolicy,
    /// Accept an ISR change from a broker whose epoch is stale (seeded bug).
    pub bug_ignore_broker_epoch: bool,
    /// Decide a re-sent request again instead of answering it with its
    /// first outcome (seeded bug).
    pub bug_decide_resent_requests: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            num_partitions: 1,
            default_replication_factor: 1,
            policy: ElectionPolicy::default(),
            bug_ignore_broker_epoch: false,
            bug_decide_resent_requests: false,
        }
    }
}

/// What brokers and admin clients ask the active controller.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker {
        broker: NodeId,
        endpoint: String,
        internal_endpoint: String,
    },
    /// A registered broker is alive (and caught up with the metadata log).
    Heartbeat {
        broker: NodeId,
        epoch: BrokerEpoch,
    },
    /// The broker's session expired (the caller's session timer decided).
    SessionExpired {
        broker: NodeId,
        epoch: BrokerEpoch,
    },
    ControlledShutdown {
        broker: NodeId,
        epoch: BrokerEpoch,
    },
    CreateTopic {
        name: String,
        partitions: Option<u32>,
        replication_factor: Option<u32>,
        configs: BTreeMap<String, String>,
        /// A manual replica assignment (partition i's replicas, preferred
        /// leader first); then `partitions` and `replication_factor` are
        /// None (the front end refuses both at once, as Kafka does).
        assignment: Option<Vec<Vec<NodeId>>>,
        /// The new topic's id, drawn at random by the broker that took the
        /// request (the decision stays a pure function of its input; a
        /// re-sent request carries the same id).
        topic_id: u128,
    },
    /// An internal topic the cluster makes for itself (`__consumer_offsets`
    /// on first use): as `CreateTopic`, but its replication factor is
    /// lowered to the live brokers when fewer are up, so a small cluster (a
    /// single dev node) still gets consumer groups. Kafka instead refuses
    /// until enough brokers are up.
    CreateInternalTopic {
        name: String,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
        topic_id: u128,
    },
    DeleteTopic {
        name: String,
    },
    /// Kafka's IncrementalAlterConfigs (`set` and `delete` applied to the
    /// topic's current configs) and AlterConfigs (`replace`: the topic's
    /// configs become `set`), decided against the current image so that
    /// two concurrent changes never lose one another's keys.
    AlterTopicConfigs {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        /// IncrementalAlterConfigs' APPEND and SUBTRACT (KIP-339): values
        /// added to or taken from a list config's current value (the
        /// topic's own, else Kafka's default).
        append: BTreeMap<String, Vec<String>>,
        subtract: BTreeMap<String, Vec<String>>,
        replace: bool,
    },
    /// Kafka's CreatePartitions: grow `name` to `count` partitions.
    CreatePartitions {
        name: String,
        count: u32,
        /// The new partitions' replicas (count minus the current number of
        /// them), or None to place them.
        assignment: Option<Vec<Vec<NodeId>>>,
    },
    /// Kafka's validate_only: decided like the request inside, never
    /// committed; the answer carries the records it would have written.
    ValidateOnly(Box<ControllerRequest>),
    AlterPartition {
        topic: String,
        partition: u32,
        broker_epoch: BrokerEpoch,
        request: AlterPartitionRequest,
    },
    /// A broker wants a block of producer ids (Kafka's AllocateProducerIds).
    AllocateProducerIds {
        broker: NodeId,
        broker_epoch: BrokerEpoch,
    },
    /// Kafka's CreateAcls: add these ACLs (each validated by the front end
    /// with `AclBinding::from_wire`, Kafka's per-creation errors).
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Kafka's DeleteAcls: remove every ACL one of the filters selects.
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// A broker's replicas that have no usable log (it could not open or
    /// write it): they leave their ISRs and their leaderships move, as if
    /// the broker were fenced for these partitions only. Each names the
    /// topic's id: a report about a topic since deleted and created again
    /// under the name is not about the new one's replica. (Variants are
    /// appended: the internal protocol is postcard.)
    ReplicasOffline {
        broker: NodeId,
        epoch: BrokerEpoch,
        partitions: Vec<(String, u32, u128)>,
    },
}

/// Why the controller refused (Kafka's error names).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ControllerError {
    TopicAlreadyExists,
    UnknownTopicOrPartition,
    InvalidPartitions(String),
    InvalidReplicationFactor(String),
    /// Kafka's INVALID_REPLICA_ASSIGNMENT.
    InvalidReplicaAssignment(String),
    InvalidTopic(String),
    /// Too large to decide at once (Kafka's POLICY_VIOLATION).
    PolicyViolation(String),
    /// An unknown topic config or an unacceptable value (INVALID_CONFIG).
    InvalidConfig(String),
    /// Unknown broker or a broker epoch from an earlier registration.
    StaleBrokerEpoch,
    /// Every producer id has been handed out.
    ProducerIdsExhausted,
    AlterPartition(AlterPartitionError),
}

/// The active controller's decision logic: pure functions of the image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Controller {
    pub config: ControllerConfig,
}

pub type Decision = Result<Vec<MetadataRecord>, ControllerError>;

/// What the controller does with a request that may have been sent before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// New: these records carry it out (none: nothing to change).
    Decided(Vec<MetadataRecord>),
    /// Carried out already, by the decision ending at `end_offset`: its
    /// answer is that decision's, not a second one.
    AlreadyApplied { end_offset: u64 },
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Self {
        Self { config }
    }

    /// A request is decided once: one the image shows carried out (sent
    /// again after a lost answer, a timeout or a controller change) gets its
    /// first decision back, never a second decision against a state that
    /// already holds the first (which answered a retried CreateTopics with
    /// TOPIC_ALREADY_EXISTS although the topic was created for it).
    pub fn decide_once(
        &self,
        image: &MetadataImage,
        key: Option<RequestKey>,
        request: &ControllerRequest,
    ) -> Result<Outcome, ControllerError> {
        if let Some(end_offset) = key
            .filter(|_| !self.config.bug_decide_resent_requests)
            .and_then(|k| image.requests.applied(k))
        {
            return Ok(Outcome::AlreadyApplied { end_offset });
        }
        self.decide(image, request).map(Outcome::Decided)
    }

    /// The records that carry out `request` against `image`, or why not.
    /// Applying the records in order to `image` yields the new metadata.
    pub fn decide(&self, image: &MetadataImage, request: &ControllerRequest) -> Decision {
        match request {
            ControllerRequest::RegisterBroker {
                broker,
                endpoint,
                internal_endpoint,
            } => Ok(self.register(image, *broker, endpoint, internal_endpoint)),
            ControllerRequest::Heartbeat { broker, epoch } => {
                self.heartbeat(image, *broker, *epoch)
            }
            ControllerRequest::SessionExpired { broker, epoch } => {
                self.check_epoch(image, *broker, *epoch)?;
                Ok(self.fence(image, *broker))
            }
            ControllerRequest::ControlledShutdown { broker, epoch } => {
                self.check_epoch(image, *broker, *epoch)?;
                Ok(self.shut_down(image, *broker))
            }
            ControllerRequest::ReplicasOffline {
                broker,
                epoch,
                partitions,
            } => {
                self.check_epoch(image, *broker, *epoch)?;
                let records = self.replicas_offline(image, *broker, *epoch, partitions);
                check_decision_size(&records)?;
                Ok(records)
            }
            ControllerRequest::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                assignment,
                topic_id,
            } => {
                refuse_internal(name, "create")?;
                validate_topic_configs(configs)?;
                let topic = topic_record(image, name, *topic_id, configs)?;
                let records = match assignment {
                    Some(a) => self.create_assigned_topic(image, topic, a)?,
                    None => self.create_topic(image, topic, *partitions, *replication_factor)?,
                };
                check_decision_size(&records)?;
                Ok(records)
            }
            ControllerRequest::ValidateOnly(inner) => match inner.as_ref() {
                ControllerRequest::ValidateOnly(_) => Err(ControllerError::PolicyViolation(
                    "validate-only requests do not nest".into(),
                )),
                inner => self.decide(image, inner),
            },
            ControllerRequest::CreateInternalTopic {
                name,
                partitions,
                replication_factor,
                configs,
                topic_id,
            } => {
                let live = image.active_brokers().len().max(1) as u32;
                let rf = (*replication_factor).min(live);
                let topic = topic_record(image, name, *topic_id, configs)?;
                self.create_topic(image, topic, Some(*partitions), Some(rf))
            }
            ControllerRequest::CreatePartitions {
                name,
                count,
                assignment,
            } => {
                refuse_internal(name, "add partitions to")?;
                let records = self.create_partitions(image, name, *count, assignment.as_deref())?;
                check_decision_size(&records)?;
                Ok(records)
            }
            ControllerRequest::AlterTopicConfigs {
                name,
                set,
                delete,
                append,
                subtract,
                replace,
            } => {
                let topic = image
                    .topics
                    .get(name)
                    .ok_or(ControllerError::UnknownTopicOrPartition)?;
                let mut configs = match replace {
                    true => BTreeMap::new(),
                    false => topic.configs.clone(),
                };
                for key in delete {
                    configs.remove(key);
                }
                configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                alter_lists(&mut configs, append, subtract)?;
                // Deleting a key the topic does not set is no error (Kafka).
                let unknown_delete = delete
                    .iter()
                    .find(|k| !TOPIC_CONFIG_KEYS.contains(&k.as_str()));
                if let Some(key) = unknown_delete {
                    let key: String = key.chars().take(100).collect();
                    return Err(ControllerError::InvalidConfig(format!(
                        "Unknown topic config name: {key}"
                    )));
                }
                validate_topic_configs(&configs)?;
                let mut records = vec![MetadataRecord::Topic {
                    name: name.clone(),
                    configs,
                }];
                // A topic that now allows unclean elections gets leaders
                // for its leaderless partitions at once (as Kafka's
                // controller does on the config change).
                let mut after = image.clone();
                after.apply(&records[0]);
                records.extend(self.partition_changes(
                    &after,
                    Some(name),
                    |reg, is_active, policy| reg.elect(is_active, policy),
                ));
                check_decision_size(&records)?;
                Ok(records)
            }
            ControllerRequest::DeleteTopic { name } => match image.topics.contains_key(name) {
                true if is_internal_topic(name) => {
                    refuse_internal(name, "delete").map(|()| Vec::new())
                }
                true => Ok(vec![MetadataRecord::RemoveTopic { name: name.clone() }]),
                false => Err(ControllerError::UnknownTopicOrPartition),
            },
            ControllerRequest::AlterPartition {
                topic,
                partition,
                broker_epoch,
                request,
            } => self.alter_partition(image, topic, *partition, *broker_epoch, request),
            ControllerRequest::AllocateProducerIds {
                broker,
                broker_epoch,
            } => {
                self.check_epoch(image, *broker, *broker_epoch)?;
                let first = image.next_producer_id;
                let next_producer_id = first
                    .checked_add(PRODUCER_ID_BLOCK_SIZE)
                    .filter(|n| *n <= PRODUCER_ID_MAX)
                    .ok_or(ControllerError::ProducerIdsExhausted)?;
                Ok(vec![MetadataRecord::ProducerIds {
                    broker: *broker,
                    broker_epoch: *broker_epoch,
                    next_producer_id,
                }])
            }
            ControllerRequest::CreateAcls { acls } => self.create_acls(image, acls),
            ControllerRequest::DeleteAcls { filters } => self.delete_acls(image, filters),
        }
    }

    /// CreateAcls: the ACLs not held yet, in one record (none: nothing to
    /// change), unless the cluster would then hold more than [`ACLS_MAX`].
    fn create_acls(&self, image: &MetadataImage, acls: &[AclBinding]) -> Decision {
        let mut new: Vec<AclBinding> = acls
            .iter()
            .filter(|a| !image.acls.contains(a))
            .cloned()
            .collect();
        new.sort();
        new.dedup();
        if new.is_empty() {
            return Ok(Vec::new());
        }
        if image.acls.len() + new.len() > ACLS_MAX {
            return Err(ControllerError::PolicyViolation(format!(
                "The cluster holds {} ACLs; {} more would exceed the limit of {ACLS_MAX}.",
                image.acls.len(),
                new.len()
            )));
        }
        let records = vec![MetadataRecord::AclsCreated { acls: new }];
        check_decision_size(&records)?;
        Ok(records)
    }

    /// DeleteAcls: every ACL some filter selects, removed in one record.
    fn delete_acls(&self, image: &MetadataImage, filters: &[AclFilter]) -> Decision {
        // Each filter is matched against every ACL on the controller loop.
        if filters.len() > ACL_FILTERS_MAX {
            return Err(ControllerError::PolicyViolation(format!(
                "One DeleteAcls request takes at most {ACL_FILTERS_MAX} filters."
            )));
        }
        let gone: Vec<AclBinding> = image
            .acls
            .iter()
            .filter(|a| filters.iter().any(|f| f.matches(a)))
            .collect();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let records = vec![MetadataRecord::AclsDeleted { acls: gone }];
        check_decision_size(&records)?;
        Ok(records)
    }

    /// The block a committed `ProducerIds` record gave its broker.
    pub fn producer_id_block(record: &MetadataRecord) -> Option<(NodeId, ProducerIdBlock)> {
        match record {
            MetadataRecord::ProducerIds {
                broker,
                next_producer_id,
                ..
            } => Some((
                *broker,
                ProducerIdBlock {
                    first: next_producer_id.checked_sub(PRODUCER_ID_BLOCK_SIZE)?,
                    len: PRODUCER_ID_BLOCK_SIZE,
                },
            )),
            _ => None,
        }
    }

    fn check_epoch(
        &self,
        image: &MetadataImage,
        broker: NodeId,
        epoch: BrokerEpoch,
    ) -> Result<(), ControllerError> {
        match image.brokers.get(&broker) {
            Some(b) if b.epoch == epoch => Ok(()),
            _ => Err(ControllerError::StaleBrokerEpoch),
        }
    }

    /// A (re-)registration is a new incarnation: the old one, if active, is
    /// fenced first (its leaderships move), and the new one starts fenced.
    fn register(
        &self,
        image: &MetadataImage,
        broker: NodeId,
        endpoint: &str,
        internal_endpoint: &str,
    ) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        let mut scratch = image.clone();
        if image.brokers.get(&broker).is_some_and(|b| !b.fenced) {
            records = self.fence(image, broker);
            for r in &records {
                scratch.apply(r);
            }
        }
        let epoch = scratch.last_broker_epoch + 1;
        records.push(MetadataRecord::RegisterBroker {
            broker,
            epoch,
            endpoint: endpoint.to_string(),
            internal_endpoint: internal_endpoint.to_string(),
        });
        records
    }

    /// First heartbeat of a fenced broker unfences it; leaderless partitions
    /// that it may lead get a leader.
    fn heartbeat(&self, image: &MetadataImage, broker: NodeId, epoch: BrokerEpoch) -> Decision {
        self.check_epoch(image, broker, epoch)?;
        let b = &image.brokers[&broker];
        if !b.fenced || b.shutting_down {
            return Ok(Vec::new());
        }
        let mut records = vec![MetadataRecord::UnfenceBroker { broker, epoch }];
        let mut after = image.clone();
        after.apply(&records[0]);
        records.extend(
            self.partition_changes(&after, None, |reg, is_active, policy| {
                reg.elect(is_active, policy)
            }),
        );
        Ok(records)
    }

    /// Fences a broker: out of every ISR it is not the last member of, and
    /// its leaderships move to the next eligible ISR replica.
    fn fence(&self, image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
        let Some(b) = image.brokers.get(&broker) else {
            return Vec::new();
        };
        let mut records = vec![MetadataRecord::FenceBroker {
            broker,
            epoch: b.epoch,
        }];
        let mut after = image.clone();
        after.apply(&records[0]);
        records.extend(
            self.partition_changes(&after, None, |reg, is_active, policy| {
                reg.fence_broker(broker, is_active, policy)
            }),
        );
        records
    }

    /// Controlled shutdown: leaderships move off the broker and it leaves
    /// every ISR it is not the last member of, before it stops.
    fn shut_down(&self, image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
        let epoch = image.brokers[&broker].epoch;
        let mut records = vec![MetadataRecord::BrokerShuttingDown { broker, epoch }];
        let mut after = image.clone();
        after.apply(&records[0]);
        records.extend(
            self.partition_changes(&after, None, |reg, is_active, policy| {
                reg.fence_broker(broker, is_active, policy)
            }),
        );
        records
    }

    /// Marks `partitions`' replicas on `broker` offline: out of each ISR it
    /// is not the last member of, and leadership moves to the next eligible
    /// ISR replica (`fence_broker`'s rule, for these partitions only).
    /// Partitions unknown (or of another topic id: the topic was deleted
    /// and created again since), not assigned to the broker, or already
    /// offline there, are left out; nothing left is no decision.
    fn replicas_offline(
        &self,
        image: &MetadataImage,
        broker: NodeId,
        epoch: BrokerEpoch,
        partitions: &[(String, u32, u128)],
    ) -> Vec<MetadataRecord> {
        let offline_already = &image.brokers[&broker].offline_replicas;
        let mut named: Vec<(String, u32)> = partitions
            .iter()
            .filter(|(t, _, id)| image.topics.get(t).is_some_and(|t| t.id == *id))
            .map(|(t, p, _)| (t.clone(), *p))
            .filter(|k| !offline_already.contains(k))
            .filter(|(t, p)| {
                image
                    .partition(t, *p)
                    .is_some_and(|r| r.replicas.contains(&broker))
            })
            .collect();
        named.sort();
        named.dedup();
        if named.is_empty() {
            return Vec::new();
        }
        let mut records = vec![MetadataRecord::ReplicasOffline {
            broker,
            epoch,
            partitions: named.clone(),
        }];
        let mut after = image.clone();
        after.apply(&records[0]);
        for (topic, partition) in named {
            let mut reg = after
                .partition(&topic, partition)
                .expect("filtered")
                .clone();
            let eligible = |b: NodeId| after.is_eligible(b, &topic, partition);
            let policy = self.policy_for(&after, &topic);
            if reg.fence_broker(broker, eligible, &policy) {
                records.push(MetadataRecord::Partition {
                    topic,
                    partition,
                    registration: reg,
                });
            }
        }
        records
    }

    /// The election policy for `topic`: the controller's, with the topic's
    /// `unclean.leader.election.enable` over it (Kafka's topic override).
    pub fn policy_for(&self, image: &MetadataImage, topic: &str) -> ElectionPolicy {
        let mut policy = self.config.policy;
        let set = image
            .topics
            .get(topic)
            .and_then(|t| t.configs.get("unclean.leader.election.enable"));
        match set.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("true") => policy.unclean_leader_election_enable = true,
            Some("false") => policy.unclean_leader_election_enable = false,
            _ => {}
        }
        policy
    }

    /// Runs `change` on every partition (of `only` that topic, if given),
    /// with each one's eligibility rule and its topic's election policy; a
    /// `Partition` record for each one that changed.
    fn partition_changes(
        &self,
        image: &MetadataImage,
        only: Option<&str>,
        change: impl Fn(&mut PartitionRegistration, &dyn Fn(NodeId) -> bool, &ElectionPolicy) -> bool,
    ) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for (name, topic) in &image.topics {
            if only.is_some_and(|t| t != name) {
                continue;
            }
            let policy = self.policy_for(image, name);
            for (p, reg) in topic.partitions.iter().enumerate() {
                let mut reg = reg.clone();
                let eligible = |b: NodeId| image.is_eligible(b, name, p as u32);
                if change(&mut reg, &eligible, &policy) {
                    records.push(MetadataRecord::Partition {
                        topic: name.clone(),
                        partition: p as u32,
                        registration: reg,
                    });
                }
            }
        }
        records
    }

    /// `topic`: its [`topic_record`].
    fn create_topic(
        &self,
        image: &MetadataImage,
        topic: MetadataRecord,
        partitions: Option<u32>,
        replication_factor: Option<u32>,
    ) -> Decision {
        let MetadataRecord::TopicCreated { name, .. } = &topic else {
            unreachable!("topic_record makes TopicCreated");
        };
        let name = name.clone();
        let partitions = partitions.unwrap_or(self.config.num_partitions);
        let rf = replication_factor.unwrap_or(self.config.default_replication_factor);
        if partitions == 0 {
            return Err(ControllerError::InvalidPartitions(
                "Number of partitions must be larger than 0.".into(),
            ));
        }
        check_partitions_per_request(partitions)?;
        let brokers = image.active_brokers();
        if rf == 0 || rf as usize > brokers.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {rf} must be between 1 and the {} live broker(s)",
                brokers.len()
            )));
        }
        // Spread preferred leaders of successive topics across brokers.
        let start = image.topics.len() % brokers.len();
        let mut records = vec![topic];
        for (p, replicas) in place_replicas(&brokers, partitions, rf, start)
            .into_iter()
            .enumerate()
        {
            let registration = image.new_partition(replicas);
            records.push(MetadataRecord::Partition {
                topic: name.to_string(),
                partition: p as u32,
                registration,
            });
        }
        Ok(records)
    }

    /// CreateTopics with a manual assignment (Kafka's
    /// ReplicationControlManager.createTopic): partition i gets the i-th
    /// list, validated as Kafka validates it.
    fn create_assigned_topic(
        &self,
        image: &MetadataImage,
        topic: MetadataRecord,
        assignment: &[Vec<NodeId>],
    ) -> Decision {
        let MetadataRecord::TopicCreated { name, .. } = &topic else {
            unreachable!("topic_record makes TopicCreated");
        };
        let name = name.clone();
        if assignment.is_empty() {
            return Err(ControllerError::InvalidReplicaAssignment(
                "The manual partition assignment is empty.".into(),
            ));
        }
        check_partitions_per_request(assignment.len() as u32)?;
        let mut records = vec![topic];
        for (p, registration) in assigned_partitions(image, assignment, None, 0)?
            .into_iter()
            .enumerate()
        {
            records.push(MetadataRecord::Partition {
                topic: name.to_string(),
                partition: p as u32,
                registration,
            });
        }
        Ok(records)
    }

    /// New partitions keep the topic's replication factor and continue its
    /// placement (partition i's replicas start where partition 0's leader
    /// is, plus i); existing partitions are untouched, so keyed records of
    /// old partitions stay where they are.
    fn create_partitions(
        &self,
        image: &MetadataImage,
        name: &str,
        count: u32,
        assignment: Option<&[Vec<NodeId>]>,
    ) -> Decision {
        let topic = image
            .topics
            .get(name)
            .ok_or(ControllerError::UnknownTopicOrPartition)?;
        let current = topic.partitions.len() as u32;
        if count <= current {
            return Err(ControllerError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {count}."
            )));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(ControllerError::InvalidPartitions(format!(
                "A topic may have at most {PARTITIONS_PER_TOPIC_MAX} partitions, {count} were requested."
            )));
        }
        check_partitions_per_request(count - current)?;
        let rf = topic.partitions.first().map_or(1, |p| p.replicas.len()) as u32;
        if let Some(assignment) = assignment {
            let added = count - current;
            if assignment.len() != added as usize {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "Increasing the number of partitions by {added} but {} assignments provided.",
                    assignment.len()
                )));
            }
            return Ok(
                assigned_partitions(image, assignment, Some(rf as usize), current)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, registration)| MetadataRecord::Partition {
                        topic: name.to_string(),
                        partition: current + i as u32,
                        registration,
                    })
                    .collect(),
            );
        }
        let mut brokers = image.active_brokers();
        brokers.sort_unstable();
        if rf == 0 || rf as usize > brokers.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {rf} needs {rf} live brokers, {} are live",
                brokers.len()
            )));
        }
        let first = topic.partitions.first().and_then(|p| p.replicas.first());
        let start = first
            .and_then(|b| brokers.iter().position(|x| x == b))
            .unwrap_or(0);
        let placed = place_replicas(&brokers, count, rf, start);
        Ok(placed
            .into_iter()
            .enumerate()
            .skip(current as usize)
            .map(|(p, replicas)| MetadataRecord::Partition {
                topic: name.to_string(),
                partition: p as u32,
                registration: image.new_partition(replicas),
            })
            .collect())
    }

    fn alter_partition(
        &self,
        image: &MetadataImage,
        topic: &str,
        partition: u32,
        broker_epoch: BrokerEpoch,
        request: &AlterPartitionRequest,
    ) -> Decision {
        let reg = image
            .partition(topic, partition)
            .ok_or(ControllerError::UnknownTopicOrPartition)?;
        // A zombie incarnation of the leader must not change the ISR.
        if !self.config.bug_ignore_broker_epoch
            && self
                .check_epoch(image, request.leader, broker_epoch)
                .is_err()
        {
            return Err(ControllerError::AlterPartition(
                AlterPartitionError::StaleBrokerEpoch,
            ));
        }
        let mut reg = reg.clone();
        reg.alter_partition(
            request,
            |b| image.is_eligible(b, topic, partition),
            &self.config.policy,
        )
        .map_err(ControllerError::AlterPartition)?;
        Ok(vec![MetadataRecord::Partition {
            topic: topic.to_string(),
            partition,
            registration: reg,
        }])
    }
}

/// A client's decision writes at most [`DECISION_BYTES_MAX`].
/// Registrations for manually assigned partitions numbered from `first`
/// (Kafka's validateManualPartitionAssignment): no empty list, only
/// registered brokers, none twice, every list as long as the first (or as
/// `replication_factor`), and at least one active broker in each (it leads).
fn assigned_partitions(
    image: &MetadataImage,
    assignment: &[Vec<NodeId>],
    replication_factor: Option<usize>,
    first: u32,
) -> Result<Vec<PartitionRegistration>, ControllerError> {
    let invalid = |m: String| ControllerError::InvalidReplicaAssignment(m);
    let mut rf = replication_factor;
    let mut out = Vec::with_capacity(assignment.len());
    for (i, replicas) in assignment.iter().enumerate() {
        let partition = first as usize + i;
        if replicas.is_empty() {
            return Err(invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            ));
        }
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        for pair in sorted.windows(2) {
            if pair[0] == pair[1] {
                return Err(invalid(format!(
                    "The manual partition assignment includes the broker {} more than once.",
                    pair[0]
                )));
            }
        }
        if let Some(b) = sorted.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            )));
        }
        match rf {
            Some(n) if n != replicas.len() => {
                return Err(invalid(format!(
                    "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {n} replica(s).",
                    replicas.len()
                )))
            }
            _ => rf = Some(replicas.len()),
        }
        if !replicas.iter().any(|&b| image.is_active(b)) {
            return Err(invalid(format!(
                "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
            )));
        }
        // Kafka: the ISR is the assigned replicas that are active now.
        let mut registration = image.new_partition(replicas.clone());
        registration.isr.retain(|&b| image.is_active(b));
        out.push(registration);
    }
    Ok(out)
}

fn check_decision_size(records: &[MetadataRecord]) -> Result<(), ControllerError> {
    let bytes: usize = records.iter().map(MetadataRecord::size_bound).sum();
    if bytes > DECISION_BYTES_MAX {
        return Err(ControllerError::PolicyViolation(format!(
            "The request would write {bytes} bytes of metadata; one request writes at most {DECISION_BYTES_MAX}."
        )));
    }
    Ok(())
}

/// One request creates at most [`PARTITIONS_PER_REQUEST_MAX`] partitions.
fn check_partitions_per_request(new_partitions: u32) -> Result<(), ControllerError> {
    if new_partitions > PARTITIONS_PER_REQUEST_MAX {
        return Err(ControllerError::PolicyViolation(format!(
            "Unable to create {new_partitions} partitions in one request: one request creates at most {PARTITIONS_PER_REQUEST_MAX}."
        )));
    }
    Ok(())
}

/// The record that creates topic `name` with id `topic_id`, if the name
/// is free and valid and the id is neither zero (Kafka's ZERO_UUID, "no
/// id") nor held by a live topic. Ids are drawn at random (122 random
/// bits), so the second refusal protects against a broken generator, not
/// against chance.
fn topic_record(
    image: &MetadataImage,
    name: &str,
    topic_id: u128,
    configs: &BTreeMap<String, String>,
) -> Result<MetadataRecord, ControllerError> {
    validate_topic_name(name)?;
    if image.topics.contains_key(name) {
        return Err(ControllerError::TopicAlreadyExists);
    }
    if topic_id == 0 || image.topics.values().any(|t| t.id == topic_id) {
        return Err(ControllerError::InvalidTopic(format!(
            "topic id {topic_id:032x} is zero or already in use"
        )));
    }
    Ok(MetadataRecord::TopicCreated {
        name: name.to_string(),
        topic_id,
        configs: configs.clone(),
    })
}

/// Kafka's topic name rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let legal = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 249 || !legal || name == "." || name == ".." {
        return Err(ControllerError::InvalidTopic(format!(
            "topic name {name:?} must be 1-249 characters of [a-zA-Z0-9._-] and not '.' or '..'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A topic id no other test request has (ids must differ per creation).
    fn fresh_topic_id() -> u128 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128
    }
    use std::collections::BTreeSet;

    fn cluster(brokers: &[NodeId]) -> (Controller, MetadataImage) {
        let c = Controller::default();
        let mut image = MetadataImage::default();
        for &b in brokers {
            run(
                &c,
                &mut image,
                ControllerRequest::RegisterBroker {
                    broker: b,
                    endpoint: format!("b{b}:9092"),
                    internal_endpoint: format!("b{b}:9093"),
                },
            );
            let epoch = image.brokers[&b].epoch;
            run(
                &c,
                &mut image,
                ControllerRequest::Heartbeat { broker: b, epoch },
            );
        }
        (c, image)
    }

    fn run(
        c: &Controller,
        image: &mut MetadataImage,
        request: ControllerRequest,
    ) -> Vec<MetadataRecord> {
        let records = c.decide(image, &request).expect("accepted");
        for r in &records {
            image.apply(r);
        }
        records
    }

    #[test]
    fn acls_are_created_once_and_deleted_by_filter() {
        let (c, mut image) = cluster(&[0]);
        let deny = AclBinding::from_wire(2, "t", 3, "User:*", "*", 2, 2).unwrap();
        let allow = AclBinding::from_wire(2, "t", 3, "User:*", "*", 8, 3).unwrap();
        let create = |acls: Vec<AclBinding>| ControllerRequest::CreateAcls { acls };
        let records = run(&c, &mut image, create(vec![deny.clone(), deny.clone()]));
        assert_eq!(
            records,
            vec![MetadataRecord::AclsCreated {
                acls: vec![deny.clone()]
            }]
        );
        // Held already: nothing to write; the new one alone is written.
        assert!(run(&c, &mut image, create(vec![deny.clone()])).is_empty());
        run(&c, &mut image, create(vec![deny.clone(), allow.clone()]));
        assert_eq!(image.acls.len(), 2);
        // Only the DENY ones (permission filter 2).
        let filter = AclFilter::from_wire(2, Some("t"), 3, None, None, 1, 2).unwrap();
        let records = run(
            &c,
            &mut image,
            ControllerRequest::DeleteAcls {
                filters: vec![filter],
            },
        );
        assert_eq!(
            records,
            vec![MetadataRecord::AclsDeleted { acls: vec![deny] }]
        );
        assert_eq!(image.acls.iter().collect::<Vec<_>>(), vec![allow]);
    }

    #[test]
    fn acls_beyond_the_limit_are_refused_whole() {
        let (c, mut image) = cluster(&[0]);
        let acl =
            |i: usize| AclBinding::from_wire(2, &format!("t{i}"), 3, "User:*", "*", 2, 2).unwrap();
        run(
            &c,
            &mut image,
            ControllerRequest::CreateAcls {
                acls: (0..ACLS_MAX).map(acl).collect(),
            },
        );
        let request = ControllerRequest::CreateAcls {
            acls: vec![acl(0), acl(ACLS_MAX)],
        };
        assert!(matches!(
            c.decide(&image, &request),
            Err(ControllerError::PolicyViolation(_))
        ));
        assert_eq!(image.acls.len(), ACLS_MAX);
    }

    fn create(c: &Controller, image: &mut MetadataImage, name: &str, p: u32, rf: u32) -> Decision {
        let request = ControllerRequest::CreateTopic {
            topic_id: fresh_topic_id(),
            assignment: None,
            name: name.into(),
            partitions: Some(p),
            replication_factor: Some(rf),
            configs: BTreeMap::new(),
        };
        let records = c.decide(image, &request)?;
        for r in &records {
            image.apply(r);
        }
        Ok(records)
    }

    fn assigned(name: &str, lists: &[&[NodeId]]) -> ControllerRequest {
        ControllerRequest::CreateTopic {
            topic_id: fresh_topic_id(),
            name: name.into(),
            partitions: None,
            replication_factor: None,
            configs: BTreeMap::new(),
            assignment: Some(lists.iter().map(|l| l.to_vec()).collect()),
        }
    }

    fn refused_assignment(c: &Controller, image: &MetadataImage, r: &ControllerRequest) -> String {
        match c.decide(image, r) {
            Err(ControllerError::InvalidReplicaAssignment(m)) => m,
            other => panic!("INVALID_REPLICA_ASSIGNMENT expected, got {other:?}"),
        }
    }

    /// KIP-516: a topic keeps the id it was created with; deleted and
    /// created again under its name, it has the new request's id. A zero
    /// id, or one a live topic holds, is refused.
    #[test]
    fn a_topic_keeps_the_id_it_was_created_with() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        let named = |name: &str, id: u128| ControllerRequest::CreateTopic {
            name: name.into(),
            partitions: Some(1),
            replication_factor: Some(1),
            configs: BTreeMap::new(),
            assignment: None,
            topic_id: id,
        };
        let create = |id| named("t", id);
        let other = |id| named("u", id);
        run(&c, &mut image, create(0xa1));
        assert_eq!(image.topics["t"].id, 0xa1);
        run(
            &c,
            &mut image,
            ControllerRequest::DeleteTopic { name: "t".into() },
        );
        run(&c, &mut image, create(0xb2));
        assert_eq!(image.topics["t"].id, 0xb2, "a new id for the new topic");
        for id in [0, 0xb2] {
            assert!(
                matches!(
                    c.decide(&image, &other(id)),
                    Err(ControllerError::InvalidTopic(_))
                ),
                "id {id:x}"
            );
        }
    }

    #[test]
    fn a_manual_assignment_is_taken_as_given_or_refused_as_kafka_refuses_it() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        run(&c, &mut image, assigned("m", &[&[2, 0], &[1, 2]]));
        let parts = &image.topics["m"].partitions;
        assert_eq!(parts[0].replicas, vec![2, 0]);
        assert_eq!(parts[0].leader, Some(2), "the first listed replica leads");
        assert_eq!(parts[1].replicas, vec![1, 2]);
        for (lists, says) in [
            (&[&[0, 0][..]][..], "more than once"),
            (&[&[0, 7][..]][..], "no such broker is registered"),
            (
                &[&[0, 1][..], &[2][..]][..],
                "not consistent with previous partitions",
            ),
            (&[&[][..]][..], "empty replica list"),
        ] {
            let m = refused_assignment(&c, &image, &assigned("bad", lists));
            assert!(m.contains(says), "{lists:?}: {m}");
        }
        // Growing with an assignment: one list per new partition, same RF.
        run(
            &c,
            &mut image,
            ControllerRequest::CreatePartitions {
                name: "m".into(),
                count: 3,
                assignment: Some(vec![vec![0, 1]]),
            },
        );
        assert_eq!(image.topics["m"].partitions[2].replicas, vec![0, 1]);
        let grow = |assignment: Vec<Vec<NodeId>>| ControllerRequest::CreatePartitions {
            name: "m".into(),
            count: 5,
            assignment: Some(assignment),
        };
        assert!(
            refused_assignment(&c, &image, &grow(vec![vec![0, 1]])).contains("but 1 assignments")
        );
        assert!(
            refused_assignment(&c, &image, &grow(vec![vec![0, 1], vec![2]]))
                .contains("1 replica(s)")
        );
        // Fenced brokers stay out of the ISR; all fenced is refused.
        let epoch = image.brokers[&0].epoch;
        run(
            &c,
            &mut image,
            ControllerRequest::SessionExpired { broker: 0, epoch },
        );
        run(&c, &mut image, assigned("f", &[&[0, 1]]));
        let p = &image.topics["f"].partitions[0];
        assert_eq!(
            (p.leader, p.isr.iter().copied().collect::<Vec<_>>()),
            (Some(1), vec![1])
        );
        assert!(refused_assignment(&c, &image, &assigned("g", &[&[0]])).contains("fenced"));
    }

    #[test]
    fn validate_only_decides_without_changing_anything() {
        let (c, image) = cluster(&[0, 1, 2]);
        let create = assigned("v", &[&[0, 1]]);
        let records = c
            .decide(
                &image,
                &ControllerRequest::ValidateOnly(Box::new(create.clone())),
            )
            .expect("valid");
        assert_eq!(
            records,
            c.decide(&image, &create).unwrap(),
            "the same decision"
        );
        let twice = ControllerRequest::ValidateOnly(Box::new(ControllerRequest::ValidateOnly(
            Box::new(create),
        )));
        assert!(c.decide(&image, &twice).is_err());
    }

    #[test]
    fn an_internal_topic_takes_the_live_brokers_it_has() {
        let (c, mut image) = cluster(&[0]);
        let request = ControllerRequest::CreateInternalTopic {
            topic_id: fresh_topic_id(),
            name: "__consumer_offsets".into(),
            partitions: 3,
            replication_factor: 3,
            configs: BTreeMap::new(),
        };
        let records = c.decide(&image, &request).unwrap();
        for r in &records {
            image.apply(r);
        }
        let topic = &image.topics["__consumer_offsets"];
        assert_eq!(topic.partitions.len(), 3);
        assert!(topic.partitions.iter().all(|p| p.replicas == vec![0]));
        // A user's topic is refused instead.
        assert!(create(&c, &mut image, "t", 3, 3).is_err());
    }

    #[test]
    fn seed_placement_three_brokers_three_partitions_rf3() {
        assert_eq!(
            place_replicas(&[2, 0, 1], 3, 3, 0),
            vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]],
            "partition i's j-th replica on broker (i + j) mod n"
        );
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "topic", 3, 3).unwrap();
        let leaders: Vec<_> = image.topics["topic"]
            .partitions
            .iter()
            .map(|p| p.leader)
            .collect();
        assert_eq!(
            leaders,
            vec![Some(0), Some(1), Some(2)],
            "one leader per broker"
        );
        assert!(image.topics["topic"]
            .partitions
            .iter()
            .all(|p| p.isr.len() == 3));
    }

    #[test]
    fn added_partitions_continue_the_placement_and_never_shrink() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "topic", 3, 2).unwrap();
        let before = image.topics["topic"].partitions.clone();
        run(
            &c,
            &mut image,
            ControllerRequest::CreatePartitions {
                assignment: None,
                name: "topic".into(),
                count: 5,
            },
        );
        let after = &image.topics["topic"].partitions;
        assert_eq!(after.len(), 5);
        assert_eq!(&after[..3], &before[..], "existing partitions untouched");
        let start = before[0].replicas[0] as usize;
        for (i, p) in after.iter().enumerate().skip(3) {
            assert_eq!(p.replicas.len(), 2, "same replication factor");
            assert_eq!(
                p.replicas[0] as usize,
                (start + i) % 3,
                "placement continues"
            );
        }
        let shrink = c.decide(
            &image,
            &ControllerRequest::CreatePartitions {
                assignment: None,
                name: "topic".into(),
                count: 4,
            },
        );
        assert!(matches!(shrink, Err(ControllerError::InvalidPartitions(_))));
        let unknown = c.decide(
            &image,
            &ControllerRequest::CreatePartitions {
                assignment: None,
                name: "nope".into(),
                count: 4,
            },
        );
        assert_eq!(unknown, Err(ControllerError::UnknownTopicOrPartition));
    }

    #[test]
    fn replication_factor_above_live_brokers_is_a_clear_error() {
        let (c, mut image) = cluster(&[0, 1]);
        let err = create(&c, &mut image, "t", 1, 3).unwrap_err();
        assert_eq!(
            err,
            ControllerError::InvalidReplicationFactor(
                "replication factor 3 must be between 1 and the 2 live broker(s)".into()
            )
        );
    }

    #[test]
    fn expired_session_fences_and_moves_leadership_like_the_seed() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "topic", 3, 3).unwrap();
        let epoch = image.brokers[&0].epoch;
        run(
            &c,
            &mut image,
            ControllerRequest::SessionExpired { broker: 0, epoch },
        );
        for p in &image.topics["topic"].partitions {
            assert_ne!(p.leader, Some(0), "a fenced broker never leads");
            assert!(!p.isr.contains(&0));
        }
        // Re-registration with the same broker.id, then the first heartbeat.
        run(
            &c,
            &mut image,
            ControllerRequest::RegisterBroker {
                broker: 0,
                endpoint: "b0:9092".into(),
                internal_endpoint: "b0:9093".into(),
            },
        );
        let new_epoch = image.brokers[&0].epoch;
        assert!(new_epoch > epoch);
        assert!(image.brokers[&0].fenced, "a new incarnation starts fenced");
        run(
            &c,
            &mut image,
            ControllerRequest::Heartbeat {
                broker: 0,
                epoch: new_epoch,
            },
        );
        assert!(image.is_active(0));
        let stale = ControllerRequest::Heartbeat { broker: 0, epoch };
        assert_eq!(
            c.decide(&image, &stale),
            Err(ControllerError::StaleBrokerEpoch)
        );
    }

    #[test]
    fn isr_change_from_a_stale_broker_epoch_is_rejected() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "t", 1, 3).unwrap();
        let reg = image.partition("t", 0).unwrap().clone();
        let leader = reg.leader.unwrap();
        let request = AlterPartitionRequest {
            leader,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            new_isr: BTreeSet::from([leader]),
        };
        let stale = ControllerRequest::AlterPartition {
            topic: "t".into(),
            partition: 0,
            broker_epoch: image.brokers[&leader].epoch - 1,
            request: request.clone(),
        };
        let stale_epoch = AlterPartitionError::StaleBrokerEpoch;
        assert_eq!(
            c.decide(&image, &stale),
            Err(ControllerError::AlterPartition(stale_epoch))
        );
        let fresh = ControllerRequest::AlterPartition {
            topic: "t".into(),
            partition: 0,
            broker_epoch: image.brokers[&leader].epoch,
            request,
        };
        run(&c, &mut image, fresh.clone());
        assert_eq!(
            image.partition("t", 0).unwrap().isr,
            BTreeSet::from([leader])
        );
        assert_eq!(
            c.decide(&image, &fresh),
            Err(ControllerError::AlterPartition(
                AlterPartitionError::InvalidUpdateVersion
            )),
            "the same request again carries a stale partition epoch"
        );
    }

    #[test]
    fn an_offline_replica_leaves_its_isr_never_leads_and_rejoins_after_a_new_registration() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "t", 3, 3).unwrap();
        let led_by_0 = image.topics["t"]
            .partitions
            .iter()
            .position(|p| p.leader == Some(0))
            .unwrap() as u32;
        let epoch = image.brokers[&0].epoch;
        let id = image.topics["t"].id;
        let offline = ControllerRequest::ReplicasOffline {
            broker: 0,
            epoch,
            partitions: vec![
                ("t".into(), led_by_0, id),
                ("gone".into(), 0, id),
                // An earlier topic of the name: not this one's replica.
                ("t".into(), (led_by_0 + 1) % 3, id.wrapping_add(1)),
            ],
        };
        run(&c, &mut image, offline.clone());
        let reg = image.partition("t", led_by_0).unwrap().clone();
        assert!(reg.leader.is_some_and(|l| l != 0), "leadership moved");
        assert!(!reg.isr.contains(&0));
        assert!(!image.is_eligible(0, "t", led_by_0));
        assert!(
            image.is_eligible(0, "t", (led_by_0 + 1) % 3),
            "only that replica"
        );
        assert_eq!(c.decide(&image, &offline), Ok(vec![]), "said once");
        // The leader may not take it back into the ISR...
        let rejoin = |reg: &PartitionRegistration| ControllerRequest::AlterPartition {
            topic: "t".into(),
            partition: led_by_0,
            broker_epoch: image.brokers[&reg.leader.unwrap()].epoch,
            request: AlterPartitionRequest {
                leader: reg.leader.unwrap(),
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                new_isr: reg.replicas.iter().copied().collect(),
            },
        };
        assert_eq!(
            c.decide(&image, &rejoin(&reg)),
            Err(ControllerError::AlterPartition(
                AlterPartitionError::IneligibleReplica
            ))
        );
        // ...and losing the other replicas leaves the partition leaderless
        // rather than led by the replica without a log.
        for b in [1, 2] {
            let epoch = image.brokers[&b].epoch;
            run(
                &c,
                &mut image,
                ControllerRequest::SessionExpired { broker: b, epoch },
            );
        }
        assert_eq!(image.partition("t", led_by_0).unwrap().leader, None);
        assert!(image.topics["t"]
            .partitions
            .iter()
            .all(|p| p.leader == Some(0) || p.leader.is_none()));
        // A restarted broker registers again with its logs: eligible again.
        run(
            &c,
            &mut image,
            ControllerRequest::RegisterBroker {
                broker: 0,
                endpoint: "b0:9092".into(),
                internal_endpoint: "b0:9093".into(),
            },
        );
        assert!(image.brokers[&0].offline_replicas.is_empty());
        let epoch = image.brokers[&0].epoch;
        run(
            &c,
            &mut image,
            ControllerRequest::Heartbeat { broker: 0, epoch },
        );
        assert!(image.is_eligible(0, "t", led_by_0));
    }

    #[test]
    fn controlled_shutdown_moves_leadership_first() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "t", 3, 3).unwrap();
        let epoch = image.brokers[&1].epoch;
        run(
            &c,
            &mut image,
            ControllerRequest::ControlledShutdown { broker: 1, epoch },
        );
        assert!(image.topics["t"]
            .partitions
            .iter()
            .all(|p| p.leader != Some(1)));
        assert!(!image.is_active(1));
    }

    #[test]
    fn a_request_too_large_to_decide_is_a_policy_violation() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        let records = create(&c, &mut image, "big", PARTITIONS_PER_REQUEST_MAX, 3).unwrap();
        assert_eq!(records.len(), PARTITIONS_PER_REQUEST_MAX as usize + 1);
        assert!(matches!(
            create(&c, &mut image, "bigger", PARTITIONS_PER_REQUEST_MAX + 1, 3),
            Err(ControllerError::PolicyViolation(_))
        ));
        assert!(
            !image.topics.contains_key("bigger"),
            "nothing of it applied"
        );
        let grow = |count| ControllerRequest::CreatePartitions {
            assignment: None,
            name: "big".into(),
            count,
        };
        let too_many = 2 * PARTITIONS_PER_REQUEST_MAX + 1;
        assert!(matches!(
            c.decide(&image, &grow(too_many)),
            Err(ControllerError::PolicyViolation(_))
        ));
        assert!(matches!(
            c.decide(&image, &grow(PARTITIONS_PER_TOPIC_MAX + 1)),
            Err(ControllerError::InvalidPartitions(_))
        ));
        run(&c, &mut image, grow(2 * PARTITIONS_PER_REQUEST_MAX));
        assert_eq!(
            image.topics["big"].partitions.len(),
            2 * PARTITIONS_PER_REQUEST_MAX as usize
        );
        assert!(matches!(
            create(&c, &mut image, "none", 0, 3),
            Err(ControllerError::InvalidPartitions(_))
        ));
    }

    /// IncrementalAlterConfigs sets and deletes keys against the current
    /// configs; AlterConfigs replaces them; the same validation as at
    /// creation; an unknown topic or key is refused whole.
    #[test]
    fn list_configs_take_append_and_subtract_on_their_current_or_default_value() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "t", 1, 1).unwrap();
        let lists = |append: &[(&str, &str)], subtract: &[(&str, &str)]| {
            let map = |ops: &[(&str, &str)]| {
                ops.iter()
                    .map(|(k, v)| (k.to_string(), v.split(',').map(str::to_string).collect()))
                    .collect()
            };
            ControllerRequest::AlterTopicConfigs {
                name: "t".into(),
                set: BTreeMap::new(),
                delete: vec![],
                append: map(append),
                subtract: map(subtract),
                replace: false,
            }
        };
        let policy = |image: &MetadataImage| image.topics["t"].configs["cleanup.policy"].clone();
        // On Kafka's default, `delete`.
        run(&c, &mut image, lists(&[("cleanup.policy", "compact")], &[]));
        assert_eq!(policy(&image), "delete,compact");
        run(&c, &mut image, lists(&[("cleanup.policy", "compact")], &[]));
        assert_eq!(
            policy(&image),
            "delete,compact",
            "a value already there stays once"
        );
        run(&c, &mut image, lists(&[], &[("cleanup.policy", "delete")]));
        assert_eq!(policy(&image), "compact");
        assert_eq!(
            c.decide(&image, &lists(&[("retention.ms", "5")], &[])),
            Err(ControllerError::InvalidConfig(
                "Config value append is not allowed for config key: retention.ms".into()
            ))
        );
    }

    #[test]
    fn applied_topic_keys_are_typed_as_kafka_types_them() {
        for (key, value, why) in [
            ("min.insync.replicas", "0", "Value must be at least 1"),
            ("min.insync.replicas", "two", "Not a number of type INT"),
            ("segment.bytes", "1048575", "Value must be at least 1048576"),
            ("segment.bytes", "4294967296", "Not a number of type INT"),
            ("segment.ms", "59999", "Value must be at least 60000"),
            (
                "unclean.leader.election.enable",
                "yes",
                "Expected value to be either true or false",
            ),
            (
                "message.timestamp.type",
                "logappendtime",
                "String must be one of: CreateTime, LogAppendTime",
            ),
        ] {
            let configs = BTreeMap::from([(key.to_string(), value.to_string())]);
            assert_eq!(
                validate_topic_configs(&configs),
                Err(ControllerError::InvalidConfig(format!(
                    "Invalid value {value} for configuration {key}: {why}"
                )))
            );
        }
        let fine = BTreeMap::from([
            ("min.insync.replicas".to_string(), "2".to_string()),
            ("segment.bytes".to_string(), " 1048576".to_string()),
            (
                "unclean.leader.election.enable".to_string(),
                "TRUE".to_string(),
            ),
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
        ]);
        assert_eq!(validate_topic_configs(&fine), Ok(()));
    }

    #[test]
    fn a_topic_that_allows_unclean_elections_gets_leaders_for_its_leaderless_partitions() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "t", 1, 2).unwrap();
        let reg = image.partition("t", 0).unwrap().clone();
        let (leader, other) = (reg.replicas[0], reg.replicas[1]);
        // The ISR shrinks to the leader, then the leader's broker goes.
        let shrink = ControllerRequest::AlterPartition {
            topic: "t".into(),
            partition: 0,
            broker_epoch: image.brokers[&leader].epoch,
            request: AlterPartitionRequest {
                leader,
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                new_isr: BTreeSet::from([leader]),
            },
        };
        run(&c, &mut image, shrink);
        let epoch = image.brokers[&leader].epoch;
        run(
            &c,
            &mut image,
            ControllerRequest::SessionExpired {
                broker: leader,
                epoch,
            },
        );
        assert_eq!(image.partition("t", 0).unwrap().leader, None, "clean: none");
        run(
            &c,
            &mut image,
            ControllerRequest::AlterTopicConfigs {
                name: "t".into(),
                set: BTreeMap::from([(
                    "unclean.leader.election.enable".to_string(),
                    "true".to_string(),
                )]),
                delete: vec![],
                append: BTreeMap::new(),
                subtract: BTreeMap::new(),
                replace: false,
            },
        );
        let reg = image.partition("t", 0).unwrap();
        assert_eq!(
            reg.leader,
            Some(other),
            "the topic's override elects at once"
        );
        assert_eq!(reg.isr, BTreeSet::from([other]));
    }

    #[test]
    fn topic_configs_are_altered_against_the_current_ones() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "t", 1, 1).unwrap();
        let alter = |set: &[(&str, &str)], delete: &[&str], replace: bool| {
            ControllerRequest::AlterTopicConfigs {
                name: "t".into(),
                set: set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                delete: delete.iter().map(|k| k.to_string()).collect(),
                append: BTreeMap::new(),
                subtract: BTreeMap::new(),
                replace,
            }
        };
        let configs = |image: &MetadataImage| image.topics["t"].configs.clone();
        run(
            &c,
            &mut image,
            alter(
                &[("retention.ms", "1000"), ("segment.bytes", "1048576")],
                &[],
                false,
            ),
        );
        run(
            &c,
            &mut image,
            alter(
                &[("retention.bytes", "10")],
                &["retention.ms", "flush.ms"],
                false,
            ),
        );
        assert_eq!(
            configs(&image),
            BTreeMap::from([
                ("retention.bytes".to_string(), "10".to_string()),
                ("segment.bytes".to_string(), "1048576".to_string()),
            ])
        );
        run(
            &c,
            &mut image,
            alter(&[("cleanup.policy", "delete")], &[], true),
        );
        assert_eq!(
            configs(&image),
            BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())])
        );
        for bad in [
            alter(&[("no.such.key", "1")], &[], false),
            alter(&[], &["no.such.key"], false),
            alter(&[("retention.ms", "soon")], &[], false),
        ] {
            assert!(matches!(
                c.decide(&image, &bad),
                Err(ControllerError::InvalidConfig(_))
            ));
        }
        let unknown = ControllerRequest::AlterTopicConfigs {
            name: "nope".into(),
            set: BTreeMap::new(),
            delete: Vec::new(),
            append: BTreeMap::new(),
            subtract: BTreeMap::new(),
            replace: false,
        };
        assert_eq!(
            c.decide(&image, &unknown),
            Err(ControllerError::UnknownTopicOrPartition)
        );
        assert_eq!(
            configs(&image),
            BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]),
            "a refused change changes nothing"
        );
    }

    /// A topic created again under a deleted one's name starts above every
    /// leader epoch the deleted one reached, so the epoch rules fence the
    /// old replicas' messages from the new ones (and back) on every broker.
    #[test]
    fn a_recreated_topic_starts_above_the_deleted_ones_leader_epochs() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        create(&c, &mut image, "t", 3, 3).unwrap();
        let epoch = image.brokers[&0].epoch;
        // Broker 0 goes: the partitions it led get new leaders (epoch 1).
        run(
            &c,
            &mut image,
            ControllerRequest::SessionExpired { broker: 0, epoch },
        );
        let reached = image.topics["t"]
            .partitions
            .iter()
            .map(|p| p.leader_epoch)
            .max()
            .unwrap();
        assert!(reached >= 1);
        run(
            &c,
            &mut image,
            ControllerRequest::DeleteTopic { name: "t".into() },
        );
        create(&c, &mut image, "t", 3, 2).unwrap();
        assert!(
            image.topics["t"]
                .partitions
                .iter()
                .all(|p| p.leader_epoch == reached + 1),
            "{:?}",
            image.topics["t"].partitions
        );
        // Other topics are unaffected by its own history but share the floor.
        create(&c, &mut image, "u", 1, 2).unwrap();
        assert_eq!(image.topics["u"].partitions[0].leader_epoch, reached + 1);
    }

    /// Topic configs are Kafka's keys with bounded values, and no client
    /// decision writes more than the metadata log reads back as one entry.
    #[test]
    fn configs_and_decision_sizes_are_bounded() {
        let (c, mut image) = cluster(&[0, 1, 2]);
        let with = |configs: &[(&str, String)]| ControllerRequest::CreateTopic {
            topic_id: fresh_topic_id(),
            assignment: None,
            name: "t".into(),
            partitions: Some(1),
            replication_factor: Some(1),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        assert!(matches!(
            c.decide(&image, &with(&[("no.such.key", "1".into())])),
            Err(ControllerError::InvalidConfig(_))
        ));
        assert!(matches!(
            c.decide(&image, &with(&[("retention.ms", "9".repeat(20_000))])),
            Err(ControllerError::InvalidConfig(_))
        ));
        for junk in ["soon", "-2", "1.5"] {
            assert!(
                matches!(
                    c.decide(&image, &with(&[("retention.bytes", junk.into())])),
                    Err(ControllerError::InvalidConfig(_))
                ),
                "retention.bytes={junk}"
            );
        }
        run(&c, &mut image, with(&[("retention.ms", "1000".into())]));
        let brokers: Vec<NodeId> = (0..100).collect();
        let (c, image) = cluster(&brokers);
        let huge = ControllerRequest::CreateTopic {
            topic_id: fresh_topic_id(),
            assignment: None,
            name: "x".repeat(249),
            partitions: Some(PARTITIONS_PER_REQUEST_MAX),
            replication_factor: Some(100),
            configs: BTreeMap::new(),
        };
        assert!(matches!(
            c.decide(&image, &huge),
            Err(ControllerError::PolicyViolation(_))
        ));
    }

    /// A re-sent request is answered with its first decision; with the
    /// seeded bug it is decided again and the copy's rejection comes back.
    #[test]
    fn a_request_is_decided_once() {
        let (mut c, mut image) = cluster(&[0, 1, 2]);
        let key = RequestKey { session: 9, seq: 1 };
        let request = ControllerRequest::CreateTopic {
            topic_id: fresh_topic_id(),
            assignment: None,
            name: "t".into(),
            partitions: Some(3),
            replication_factor: Some(3),
            configs: BTreeMap::new(),
        };
        let Ok(Outcome::Decided(records)) = c.decide_once(&image, Some(key), &request) else {
            panic!("decided")
        };
        let decision = MetadataDecision {
            request: Some(key),
            records,
        };
        image.apply_decision(&decision, 42);
        assert_eq!(
            c.decide_once(&image, Some(key), &request),
            Ok(Outcome::AlreadyApplied { end_offset: 42 })
        );
        let other = RequestKey { session: 9, seq: 2 };
        assert_eq!(
            c.decide_once(&image, Some(other), &request),
            Err(ControllerError::TopicAlreadyExists),
            "a new request for the same topic is a new decision"
        );
        c.config.bug_decide_resent_requests = true;
        assert_eq!(
            c.decide_once(&image, Some(key), &request),
            Err(ControllerError::TopicAlreadyExists)
        );
    }

    #[test]
    fn the_request_ledger_is_bounded() {
        let mut ledger = RequestLedger::default();
        for session in 0..(REQUEST_SESSIONS_MAX as u64 + 10) {
            for seq in 0..3 {
                ledger.note(RequestKey { session, seq }, session * 3 + seq + 1);
            }
        }
        assert_eq!(ledger.sessions.len(), REQUEST_SESSIONS_MAX);
        assert_eq!(
            ledger.applied(RequestKey { session: 0, seq: 0 }),
            None,
            "idlest gone"
        );
        for seq in 0..(REQUESTS_PER_SESSION_MAX as u64 + 5) {
            ledger.note(
                RequestKey {
                    session: 1 << 40,
                    seq,
                },
                1 << 41,
            );
        }
        let s = &ledger.sessions[&(1 << 40)];
        assert_eq!(s.applied.len(), REQUESTS_PER_SESSION_MAX);
        assert!(!s.applied.contains_key(&0), "oldest request gone");
    }

    #[test]
    fn internal_topics_are_the_clusters_own() {
        let (c, mut image) = cluster(&[0]);
        let internal = ControllerRequest::CreateInternalTopic {
            topic_id: fresh_topic_id(),
            name: "__consumer_offsets".into(),
            partitions: 3,
            replication_factor: 1,
            configs: BTreeMap::new(),
        };
        run(&c, &mut image, internal);
        let by_a_client = [
            ControllerRequest::DeleteTopic {
                name: "__consumer_offsets".into(),
            },
            ControllerRequest::CreatePartitions {
                assignment: None,
                name: "__consumer_offsets".into(),
                count: 5,
            },
        ];
        for request in by_a_client {
            assert!(
                matches!(
                    c.decide(&image, &request),
                    Err(ControllerError::InvalidTopic(_))
                ),
                "{request:?}"
            );
        }
        let (c2, image2) = cluster(&[0]);
        assert!(matches!(
            create(&c2, &mut image2.clone(), "__consumer_offsets", 1, 1),
            Err(ControllerError::InvalidTopic(_))
        ));
        assert_eq!(image.topics["__consumer_offsets"].partitions.len(), 3);
    }

    #[test]
    fn topic_names_and_duplicates() {
        let (c, mut image) = cluster(&[0]);
        assert!(matches!(
            create(&c, &mut image, "bad name", 1, 1),
            Err(ControllerError::InvalidTopic(_))
        ));
        create(&c, &mut image, "ok", 1, 1).unwrap();
        assert_eq!(
            create(&c, &mut image, "ok", 1, 1),
            Err(ControllerError::TopicAlreadyExists)
        );
        run(
            &c,
            &mut image,
            ControllerRequest::DeleteTopic { name: "ok".into() },
        );
        assert!(image.topics.is_empty());
    }
}
