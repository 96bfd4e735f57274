//! A consumer-group member for the CLI (what Kafka's console consumer does
//! with `--group`): find the coordinator, join (MEMBER_ID_REQUIRED, then
//! again with the id), compute the range assignment when leader, sync,
//! heartbeat, commit and leave — Kafka's classic protocol from the client's
//! side. The consumer protocol blobs (subscription, assignment) are Kafka's,
//! so the CLI can share a group with any Kafka client.

use crate::client::Client;
use anyhow::{anyhow, bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::BTreeMap;
use std::time::Duration;

pub const SESSION_TIMEOUT_MS: i32 = 10_000;
pub const REBALANCE_TIMEOUT_MS: i32 = 300_000;
/// How often a member heartbeats (Kafka's heartbeat.interval.ms).
pub const HEARTBEAT_INTERVAL_MS: u64 = 3_000;
/// Attempts at finding a coordinator (the offsets topic is created on first use).
pub const COORDINATOR_ATTEMPTS_MAX: u32 = 100;
pub const RETRY_BACKOFF_MS: u64 = 200;

pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const NOT_COORDINATOR: i16 = 16;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A consumer protocol blob: i16 version, then the body at that version.
fn encode_versioned<M: Encodable>(m: &M, version: i16) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    m.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

fn decode_versioned<M: Decodable>(bytes: &[u8]) -> Result<M> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        bail!("consumer protocol blob of {} bytes", buf.remaining());
    }
    let version = buf.get_i16().clamp(0, 3);
    M::decode(&mut buf, version)
}

pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    encode_versioned(&sub, 0)
}

pub fn decode_subscription(bytes: &[u8]) -> Result<Vec<String>> {
    let sub: ConsumerProtocolSubscription = decode_versioned(bytes)?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

pub fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Result<Bytes> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(s(t)))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    encode_versioned(&a, 0)
}

/// topic → partitions; an empty blob is an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeMap<String, Vec<i32>>> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(bytes)?;
    Ok(a.assigned_partitions
        .into_iter()
        .map(|t| (t.topic.0.to_string(), t.partitions))
        .collect())
}

/// Kafka's RangeAssignor: per topic, the subscribed members in id order get
/// consecutive ranges, the first `n % m` one partition more.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (topic, &n) in partition_counts {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() || n <= 0 {
            continue;
        }
        let m = members.len() as i32;
        let (per, extra) = (n / m, n % m);
        for (i, member) in members.into_iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            let ps: Vec<i32> = (start..start + len).collect();
            if !ps.is_empty() {
                out.get_mut(member)
                    .expect("every member has an entry")
                    .insert(topic.clone(), ps);
            }
        }
    }
    out
}

/// The coordinator's address for `group`, waiting while the offsets topic
/// is being created or has no leader.
/// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS:
/// retriable, after finding the coordinator again.
pub fn coordinator_moved(code: i16) -> bool {
    matches!(
        code,
        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS
    )
}

pub async fn find_coordinator(client: &mut Client, group: &str) -> Result<String> {
    let request = FindCoordinatorRequest::default().with_key(s(group));
    let mut last = String::new();
    for _ in 0..COORDINATOR_ATTEMPTS_MAX {
        match client.call_any(&request, 3).await {
            Ok(r) if r.error_code == 0 => return Ok(format!("{}:{}", r.host, r.port)),
            Ok(r) => last = format!("error {}", r.error_code),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
    }
    bail!("no coordinator for group {group}: {last}")
}

/// OffsetCommit of `positions` for a member (or, with generation -1 and
/// no member id, for an inactive group: `consumer-groups --reset-offsets`).
pub fn offset_commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    positions: &BTreeMap<(String, i32), i64>,
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in positions {
        topics.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// What a heartbeat or commit found out.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberStatus {
    Ok,
    /// Rejoin (rebalance, fenced or coordinator moved).
    Rejoin,
}

pub struct GroupMember {
    pub group: String,
    pub topics: Vec<String>,
    pub member_id: String,
    pub generation: i32,
    pub coordinator: Option<String>,
    /// This member's partitions, by topic.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

impl GroupMember {
    pub fn new(group: &str, topics: Vec<String>) -> GroupMember {
        GroupMember {
            group: group.to_string(),
            topics,
            member_id: String::new(),
            generation: -1,
            coordinator: None,
            assignment: BTreeMap::new(),
        }
    }

    async fn coordinator(&mut self, client: &mut Client) -> Result<String> {
        if let Some(c) = &self.coordinator {
            return Ok(c.clone());
        }
        let c = find_coordinator(client, &self.group).await?;
        self.coordinator = Some(c.clone());
        Ok(c)
    }

    /// Notes an error code: NOT_COORDINATOR and friends mean looking again.
    fn on_error(&mut self, code: i16) {
        if coordinator_moved(code) {
            self.coordinator = None;
        }
        if matches!(code, UNKNOWN_MEMBER_ID) {
            self.member_id.clear();
            self.generation = -1;
        }
    }

    /// Joins and syncs until this member has an assignment (bounded).
    pub async fn join(&mut self, client: &mut Client) -> Result<()> {
        let mut last = String::new();
        for _ in 0..COORDINATOR_ATTEMPTS_MAX {
            match self.join_once(client).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    self.coordinator = None;
                    last = e.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
        }
        bail!("could not join group {}: {last}", self.group)
    }

    async fn join_once(&mut self, client: &mut Client) -> Result<bool> {
        let coordinator = self.coordinator(client).await?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(s(&self.member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(encode_subscription(&self.topics)?)]);
        // A join waits for the others up to the rebalance timeout: Kafka's
        // consumer allows it that plus 5 s (not `request.timeout.ms`).
        let within = std::time::Duration::from_millis(REBALANCE_TIMEOUT_MS as u64 + 5_000);
        let r = client
            .call_at_within(&coordinator, &request, 5, within)
            .await?;
        if r.error_code == MEMBER_ID_REQUIRED {
            self.member_id = r.member_id.to_string();
            return Ok(false);
        }
        if r.error_code != 0 {
            self.on_error(r.error_code);
            return Ok(false);
        }
        self.member_id = r.member_id.to_string();
        self.generation = r.generation_id;
        let assignments = if r.leader == r.member_id {
            self.assign(client, &r.members).await?
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id))
            .with_assignments(assignments);
        let r = client.call_at(&coordinator, &request, 3).await?;
        if r.error_code != 0 {
            self.on_error(r.error_code);
            return Ok(false);
        }
        self.assignment = decode_assignment(&r.assignment)?;
        Ok(true)
    }

    /// The leader's job: the range assignment over every member's subscription.
    async fn assign(
        &mut self,
        client: &mut Client,
        members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for m in members {
            let topics = decode_subscription(&m.metadata).unwrap_or_default();
            subscriptions.insert(m.member_id.to_string(), topics);
        }
        let mut all: Vec<String> = subscriptions.values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        client.refresh(Some(&all)).await?;
        let counts: BTreeMap<String, i32> = all
            .iter()
            .filter_map(|t| Some((t.clone(), client.partitions(t)?.len() as i32)))
            .collect();
        range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member, parts)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(encode_assignment(&parts)?))
            })
            .collect()
    }

    pub async fn heartbeat(&mut self, client: &mut Client) -> Result<MemberStatus> {
        let coordinator = self.coordinator(client).await?;
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(s(&self.member_id));
        let code = match client.call_at(&coordinator, &request, 3).await {
            Ok(r) => r.error_code,
            Err(_) => NOT_COORDINATOR,
        };
        self.on_error(code);
        Ok(match code {
            0 => MemberStatus::Ok,
            _ => MemberStatus::Rejoin,
        })
    }

    /// The committed offsets of this member's partitions (-1: none).
    pub async fn committed(&mut self, client: &mut Client) -> Result<BTreeMap<(String, i32), i64>> {
        let coordinator = self.coordinator(client).await?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_topics(Some(
                self.assignment
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            ));
        let r = client.call_at(&coordinator, &request, 5).await?;
        if r.error_code != 0 {
            self.on_error(r.error_code);
            bail!("OffsetFetch: error {}", r.error_code);
        }
        Ok(r.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    )
                })
            })
            .collect())
    }

    /// Commits positions as this member of its generation.
    pub async fn commit(
        &mut self,
        client: &mut Client,
        positions: &BTreeMap<(String, i32), i64>,
    ) -> Result<MemberStatus> {
        if positions.is_empty() {
            return Ok(MemberStatus::Ok);
        }
        let coordinator = self.coordinator(client).await?;
        let request =
            offset_commit_request(&self.group, self.generation, &self.member_id, positions);
        let r = client.call_at(&coordinator, &request, 7).await?;
        let code = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .find(|c| *c != 0)
            .unwrap_or(0);
        self.on_error(code);
        Ok(match code {
            0 => MemberStatus::Ok,
            _ => MemberStatus::Rejoin,
        })
    }

    /// Leaves the group so that the others rebalance at once.
    pub async fn leave(&mut self, client: &mut Client) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let coordinator = self.coordinator(client).await?;
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_members(vec![
                MemberIdentity::default().with_member_id(s(&self.member_id))
            ]);
        let r = client.call_at(&coordinator, &request, 3).await?;
        if r.error_code != 0 {
            return Err(anyhow!("LeaveGroup: error {}", r.error_code));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_splits_like_kafkas_range_assignor() {
        let subs: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec!["t".to_string()]),
            ("b".to_string(), vec!["t".to_string()]),
        ]
        .into();
        let counts = [("t".to_string(), 3)].into();
        let a = range_assign(&subs, &counts);
        assert_eq!(a["a"]["t"], vec![0, 1]);
        assert_eq!(a["b"]["t"], vec![2]);
    }

    #[test]
    fn consumer_protocol_blobs_round_trip() {
        let sub = encode_subscription(&["t".into(), "u".into()]).unwrap();
        assert_eq!(decode_subscription(&sub).unwrap(), vec!["t", "u"]);
        let parts: BTreeMap<String, Vec<i32>> = [("t".to_string(), vec![0, 2])].into();
        let blob = encode_assignment(&parts).unwrap();
        assert_eq!(decode_assignment(&blob).unwrap(), parts);
    }
}
