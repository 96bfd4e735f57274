//! The group coordinator's runtime: drives `runnel_model::group::Group`
//! state machines for the groups whose `__consumer_offsets` partition this
//! node leads. Their records (offset commits, generations, deletions) are
//! appended to that partition with acks=all through the replica that is
//! already model-checked, and the replies that follow a record are held
//! until it is committed (the core contract's "persist before later
//! effects"). Records are written in Kafka's compactable layout
//! ([`super::group_records`]: a key per committed partition and per group),
//! so the cleaner keeps the topic as large as the live offsets.
//!
//! A node that becomes leader of an offsets partition rebuilds its groups
//! by replaying the partition in slices of [`REPLAY_READ_BYTES`], one slice
//! whenever the event loop has nothing else to do, answering the groups'
//! requests COORDINATOR_LOAD_IN_PROGRESS (as Kafka does) until it is done;
//! one that stops leading drops them and answers their waiting requests
//! NOT_COORDINATOR.

use super::group_records::{self, Decoded};
use super::{Node, TimerKey};
use crate::storage::disk_log::{BatchBytes, DiskLog};
use runnel_model::core::{Effect, Offset, RequestId};
use runnel_model::group::offsets_topic;
use runnel_model::group::{
    offsets_partition, CommittedOffset, Group, GroupConfig, GroupEffects, GroupRecord, GroupReply,
    GroupState, GroupTimer, JoinRequest, MemberDescription,
};
use runnel_model::log::PartitionLog;
use runnel_model::replication::{Acks, ProduceRequest};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Kafka's internal topic of group records.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Bytes read per step when replaying an offsets partition.
const REPLAY_READ_BYTES: usize = 1 << 20;
/// How often empty groups' offsets are checked for expiry.
pub const RETENTION_CHECK_MS: u64 = 60_000;

/// A group request from the Kafka front end.
pub enum GroupOp {
    Join(JoinRequest),
    Sync {
        member_id: String,
        /// `group.instance.id` (KIP-345): checked against the member id.
        instance_id: Option<String>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    },
    Heartbeat {
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    },
    Leave {
        member_id: String,
        instance_id: Option<String>,
    },
    Commit {
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<((String, u32), CommittedOffset)>,
    },
    FetchOffsets,
    Describe,
    Delete,
    /// OffsetDelete (KIP-496).
    DeleteOffsets {
        partitions: Vec<(String, u32)>,
    },
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Clone, Debug)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

pub enum GroupAnswer {
    /// The state machine's answer (join, sync, heartbeat, leave, commit, delete).
    Reply(GroupReply),
    Offsets(BTreeMap<(String, u32), CommittedOffset>),
    Described(GroupSummary),
    /// The offsets topic does not exist yet or its partition has no leader.
    CoordinatorNotAvailable,
    NotCoordinator,
    /// This node leads the group's offsets partition and is still
    /// replaying it (COORDINATOR_LOAD_IN_PROGRESS: retriable).
    LoadInProgress,
    /// DeleteGroups/DescribeGroups of a group this coordinator does not know.
    GroupIdNotFound,
}

/// Groups hosted by this node, by offsets partition.
#[derive(Default)]
pub struct GroupHost {
    /// Offsets partitions led and loaded here → the leader epoch loaded at.
    loaded: BTreeMap<u32, u32>,
    /// Offsets partitions led here and being replayed.
    loading: BTreeMap<u32, Loading>,
    groups: BTreeMap<String, (u32, Group)>,
    /// Model request id → (offsets partition, the front end's waiter).
    waiters: BTreeMap<RequestId, (u32, oneshot::Sender<GroupAnswer>)>,
    /// Replica produce id of a group record → (offsets partition, replies held until it commits).
    writes: BTreeMap<RequestId, (u32, Vec<GroupReply>)>,
    next_request: RequestId,
    loads: u64,
    last_retention_check_ms: u64,
}

/// An offsets partition being replayed.
struct Loading {
    /// The leader epoch it is loaded at.
    epoch: u32,
    /// The next offset to read, and the log end when the load began (this
    /// leader writes nothing there while it loads).
    next: Offset,
    end: Offset,
    records: u64,
    /// After a failed read: not before then (no busy loop on a bad disk).
    retry_at: Option<Instant>,
}

/// How long a load waits after a failed read.
const LOAD_RETRY_MS: u64 = 1_000;

impl GroupHost {
    /// The groups of loaded partitions, and whether any partition is still
    /// loading (ListGroups then says COORDINATOR_LOAD_IN_PROGRESS).
    pub fn summaries(&self) -> (Vec<GroupSummary>, bool) {
        let groups = self
            .groups
            .iter()
            .filter(|(_, (p, g))| self.loaded.contains_key(p) && g.state() != GroupState::Dead)
            .map(|(id, (_, g))| summary(id, g))
            .collect();
        (groups, !self.loading.is_empty())
    }

    /// Whether an offsets partition waits for its next replay slice now.
    pub fn loading(&self) -> bool {
        self.next_load(Instant::now()).is_some()
    }

    /// The first loading partition not waiting after a failed read.
    fn next_load(&self, now: Instant) -> Option<u32> {
        self.loading
            .iter()
            .find(|(_, l)| l.retry_at.is_none_or(|t| t <= now))
            .map(|(p, _)| *p)
    }
}

fn summary(group_id: &str, g: &Group) -> GroupSummary {
    GroupSummary {
        group_id: group_id.to_string(),
        state: g.state(),
        protocol_type: g.protocol_type().unwrap_or("").to_string(),
        protocol: g.protocol().unwrap_or("").to_string(),
        members: g.describe_members(),
    }
}

/// The topics a consumer-protocol subscription names (Kafka's
/// ConsumerProtocolSubscription: a version, then the fields of that
/// version); None if it does not decode.
fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut bytes = bytes::Bytes::copy_from_slice(metadata);
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    bytes::Buf::advance(&mut bytes, 2);
    // Newer versions only append fields: read them as the newest we know.
    let version = version.clamp(0, 3);
    let subscription = ConsumerProtocolSubscription::decode(&mut bytes, version).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    fn offsets_partitions(&self) -> Option<u32> {
        let meta = self.meta.as_ref()?;
        let n = meta.image.topics.get(OFFSETS_TOPIC)?.partitions.len() as u32;
        (n > 0).then_some(n)
    }

    /// A request for group `group_id`, answered through `reply`.
    pub(super) fn on_group_call(
        &mut self,
        group_id: String,
        op: GroupOp,
        reply: oneshot::Sender<GroupAnswer>,
    ) {
        let Some(n) = self.offsets_partitions() else {
            let _ = reply.send(GroupAnswer::CoordinatorNotAvailable);
            return;
        };
        let p = offsets_partition(&group_id, n);
        if self.groups.loading.contains_key(&p) {
            let _ = reply.send(GroupAnswer::LoadInProgress);
            return;
        }
        if !self.groups.loaded.contains_key(&p) {
            let _ = reply.send(GroupAnswer::NotCoordinator);
            return;
        }
        // Reads answer from memory; they never create a group.
        match op {
            GroupOp::FetchOffsets => {
                let offsets = self
                    .groups
                    .groups
                    .get(&group_id)
                    .map(|(_, g)| g.offsets().clone())
                    .unwrap_or_default();
                let _ = reply.send(GroupAnswer::Offsets(offsets));
                return;
            }
            GroupOp::Describe => {
                let answer = match self.groups.groups.get(&group_id) {
                    Some((_, g)) => GroupAnswer::Described(summary(&group_id, g)),
                    None => GroupAnswer::GroupIdNotFound,
                };
                let _ = reply.send(answer);
                return;
            }
            GroupOp::Delete | GroupOp::DeleteOffsets { .. }
                if !self.groups.groups.contains_key(&group_id) =>
            {
                let _ = reply.send(GroupAnswer::GroupIdNotFound);
                return;
            }
            _ => {}
        }
        let request = self.groups.next_request;
        self.groups.next_request += 1;
        self.groups.waiters.insert(request, (p, reply));
        let config = self.group_config(p);
        let (_, group) = self
            .groups
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| (p, Group::new(config)));
        let mut out = GroupEffects::new();
        match op {
            GroupOp::Join(mut j) => {
                j.request = request;
                group.on_join(j, &mut out)
            }
            GroupOp::Sync {
                member_id,
                instance_id,
                generation,
                assignments,
            } => {
                let member = (member_id.as_str(), instance_id.as_deref());
                group.on_sync(request, member, generation, assignments, &mut out)
            }
            GroupOp::Heartbeat {
                member_id,
                instance_id,
                generation,
            } => {
                let member = (member_id.as_str(), instance_id.as_deref());
                group.on_heartbeat(request, member, generation, &mut out)
            }
            GroupOp::Leave {
                member_id,
                instance_id,
            } => group.on_leave(request, (&member_id, instance_id.as_deref()), &mut out),
            GroupOp::Commit {
                member_id,
                instance_id,
                generation,
                offsets,
            } => {
                let member = (member_id.as_str(), instance_id.as_deref());
                group.on_commit(request, member, generation, offsets, now_ms(), &mut out)
            }
            GroupOp::Delete => group.on_delete(request, &mut out),
            GroupOp::DeleteOffsets { partitions } => {
                group.on_delete_offsets(request, partitions, &subscribed_topics, &mut out)
            }
            GroupOp::FetchOffsets | GroupOp::Describe => unreachable!("answered above"),
        }
        self.execute_group(&group_id, p, out);
    }

    fn group_config(&self, p: u32) -> GroupConfig {
        let loading = self.groups.loading.get(&p).map(|l| l.epoch);
        let epoch = self.groups.loaded.get(&p).copied().or(loading).unwrap_or(0) as u64;
        GroupConfig {
            initial_rebalance_delay_ms: self.s.group_initial_rebalance_delay_ms,
            // Unique per (leader epoch, load): ids never repeat across coordinators.
            incarnation: (epoch << 24) | (self.groups.loads & 0xff_ffff),
            limits: runnel_model::group::GroupLimits {
                max_size: self.s.group_max_size,
                min_session_timeout_ms: self.s.group_min_session_timeout_ms,
                max_session_timeout_ms: self.s.group_max_session_timeout_ms,
            },
            bugs: Default::default(),
        }
    }

    pub(super) fn on_group_timer(&mut self, group_id: String, timer: GroupTimer) {
        let Some((p, group)) = self.groups.groups.get_mut(&group_id) else {
            return;
        };
        let p = *p;
        // A timer of a coordinator that was unloaded (and is loading again)
        // is stale: the group it was for is gone.
        if !self.groups.loaded.contains_key(&p) {
            return;
        }
        let mut out = GroupEffects::new();
        group.on_timer(timer, &mut out);
        self.execute_group(&group_id, p, out);
    }

    /// Timers and replies go out at once, except that replies following a
    /// record wait until the record is committed.
    fn execute_group(&mut self, group_id: &str, p: u32, mut out: GroupEffects) {
        let mut records = Vec::new();
        let mut immediate = Vec::new();
        let mut held = Vec::new();
        for effect in out.drain() {
            match effect {
                Effect::SetTimer { timer, after_ms } => {
                    self.set_timer(TimerKey::Group(group_id.to_string(), timer), after_ms)
                }
                Effect::CancelTimer { timer } => {
                    self.cancel_timer(&TimerKey::Group(group_id.to_string(), timer))
                }
                Effect::Persist(record) => records.push(record),
                Effect::Reply(r) if records.is_empty() => immediate.push(r),
                Effect::Reply(r) => held.push(r),
                Effect::Send { .. } | Effect::FlushLog { .. } => {
                    debug_assert!(false, "a group sends nothing and has no log")
                }
            }
        }
        for r in immediate {
            self.deliver_group_reply(r);
        }
        let last = records.len().saturating_sub(1);
        let mut held = Some(held);
        for (i, record) in records.into_iter().enumerate() {
            let replies = if i == last {
                held.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            self.write_group_record(group_id, p, &record, replies);
        }
        let forget = self
            .groups
            .groups
            .get(group_id)
            .is_some_and(|(_, g)| g.state() == GroupState::Dead || g.is_forgettable());
        if forget {
            self.groups.groups.remove(group_id);
        }
    }

    fn deliver_group_reply(&mut self, r: GroupReply) {
        if let Some((_, tx)) = self.groups.waiters.remove(&r.request()) {
            let _ = tx.send(GroupAnswer::Reply(r));
        }
    }

    /// Appends one coordinator record, as its entries of the offsets
    /// topic's layout in one batch (they commit together), with acks=all.
    fn write_group_record(
        &mut self,
        group_id: &str,
        p: u32,
        record: &GroupRecord,
        replies: Vec<GroupReply>,
    ) {
        let key = (OFFSETS_TOPIC.to_string(), p);
        let now = now_ms() as i64;
        let records: Result<Vec<_>, String> = offsets_topic::entries(group_id, record)
            .iter()
            .map(|e| {
                let k = group_records::encode_key(&e.key)?;
                let v = e
                    .value
                    .as_ref()
                    .map(|v| group_records::encode_value(v, now));
                Ok((Some(k), v.transpose()?))
            })
            .collect();
        // A record with no entries (an OffsetDelete of nothing) writes nothing.
        if records.as_ref().is_ok_and(|r| r.is_empty()) {
            for r in replies {
                self.deliver_group_reply(r);
            }
            return;
        }
        let batch = records
            .and_then(|r| crate::client::encode_batch(&r, now).map_err(|e| format!("{e:#}")));
        let (Ok(batch), Some(b)) = (batch, self.broker.as_mut()) else {
            return self.fail_group_write(p, replies);
        };
        let id = b.next_request_id;
        b.next_request_id += 1;
        self.groups.writes.insert(id, (p, replies));
        let Some(slot) = self.slot_mut(&key) else {
            let (_, replies) = self.groups.writes.remove(&id).expect("inserted");
            return self.fail_group_write(p, replies);
        };
        let out = slot.runner.on_produce(ProduceRequest {
            id,
            records: BatchBytes(batch),
            acks: Acks::All,
        });
        self.on_runner_output(&key, out);
    }

    /// A produce reply for a group record; false if `id` is not one.
    pub(super) fn on_group_write_done(&mut self, id: RequestId, ok: bool) -> bool {
        let Some((p, replies)) = self.groups.writes.remove(&id) else {
            return false;
        };
        if ok {
            for r in replies {
                self.deliver_group_reply(r);
            }
        } else {
            self.fail_group_write(p, replies);
        }
        true
    }

    /// The in-memory groups of `p` may now be ahead of the log: drop them
    /// (their waiters hear NOT_COORDINATOR) and replay the log again.
    fn fail_group_write(&mut self, p: u32, replies: Vec<GroupReply>) {
        tracing::warn!("{OFFSETS_TOPIC}-{p}: a group record was not committed; reloading");
        for r in replies {
            if let Some((_, tx)) = self.groups.waiters.remove(&r.request()) {
                let _ = tx.send(GroupAnswer::NotCoordinator);
            }
        }
        self.unload_groups(p);
    }

    /// Starts loading the groups of offsets partitions this node now leads,
    /// drops those of partitions it no longer leads. Runs every turn.
    pub(super) fn sync_group_leadership(&mut self) {
        let Some(b) = self.broker.as_ref() else {
            return;
        };
        let range = (OFFSETS_TOPIC.to_string(), 0)..=(OFFSETS_TOPIC.to_string(), u32::MAX);
        let mut leading = BTreeMap::new();
        for ((_, p), slot) in b.slots.range(range) {
            let replica = slot.runner.replica();
            if let Some(epoch) = replica.leader_epoch().filter(|_| replica.is_leader()) {
                leading.insert(*p, epoch);
            }
        }
        let loading = self.groups.loading.iter().map(|(p, l)| (p, &l.epoch));
        let stale: Vec<u32> = (self.groups.loaded.iter().chain(loading))
            .filter(|(p, epoch)| leading.get(p) != Some(epoch))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.unload_groups(p);
        }
        for (p, epoch) in leading {
            if !self.groups.loaded.contains_key(&p) && !self.groups.loading.contains_key(&p) {
                self.start_loading_groups(p, epoch);
            }
        }
    }

    fn unload_groups(&mut self, p: u32) {
        self.groups.loaded.remove(&p);
        self.groups.loading.remove(&p);
        self.groups.groups.retain(|_, (gp, _)| *gp != p);
        let gone: Vec<RequestId> = self
            .groups
            .waiters
            .iter()
            .filter(|(_, (wp, _))| *wp == p)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some((_, tx)) = self.groups.waiters.remove(&id) {
                let _ = tx.send(GroupAnswer::NotCoordinator);
            }
        }
        // Writes still in flight answer through on_group_write_done, whose
        // waiters are gone by now.
    }

    /// Begins replaying `__consumer_offsets-p` to its log end (this
    /// leader's log is what will be committed) into fresh groups.
    fn start_loading_groups(&mut self, p: u32, epoch: u32) {
        let key = (OFFSETS_TOPIC.to_string(), p);
        let Some(slot) = self.broker.as_ref().and_then(|b| b.slots.get(&key)) else {
            return;
        };
        let log = slot.runner.replica().log();
        self.groups.loads += 1;
        let loading = Loading {
            epoch,
            next: log.start_offset(),
            end: log.end_offset(),
            records: 0,
            retry_at: None,
        };
        self.groups.loading.insert(p, loading);
    }

    /// Replays the next slice of one loading partition (the event loop
    /// calls it when nothing else is ready, and once every turn so that a
    /// busy node loads too); the partition serves once its last slice is in.
    pub(super) fn load_groups_step(&mut self) {
        let now = Instant::now();
        let Some(p) = self.groups.next_load(now) else {
            return;
        };
        let loading = &self.groups.loading[&p];
        let (from, end) = (loading.next, loading.end);
        let key = (OFFSETS_TOPIC.to_string(), p);
        let slice = match self.broker.as_ref().and_then(|b| b.slots.get(&key)) {
            Some(slot) => read_slice(slot.runner.replica().log(), p, from, end),
            None => Ok(None),
        };
        let (next, records) = match slice {
            Ok(Some(slice)) => slice,
            Ok(None) => return self.finish_loading_groups(p),
            // Serving a part of the groups would be wrong: try again later
            // (a log that keeps failing takes the replica offline, and the
            // partition's leadership and this load with it).
            Err(e) => {
                tracing::warn!("{OFFSETS_TOPIC}-{p}: cannot read to load groups: {e}");
                let retry_at = now + std::time::Duration::from_millis(LOAD_RETRY_MS);
                let loading = self.groups.loading.get_mut(&p).expect("loading");
                loading.retry_at = Some(retry_at);
                return;
            }
        };
        let config = self.group_config(p);
        let count = records.len() as u64;
        for (group_id, record) in records {
            let (_, g) = self
                .groups
                .groups
                .entry(group_id.clone())
                .or_insert_with(|| (p, Group::new(config.clone())));
            let replayed = match &record {
                Decoded::Entry(e) => g.replay_entry(e),
                Decoded::Legacy(_, r) => g.replay(r),
            };
            if let Err(why) = replayed {
                tracing::warn!(
                    "{OFFSETS_TOPIC}-{p}: skipping a record of group {group_id:?}: {why}"
                );
            }
        }
        let loading = self.groups.loading.get_mut(&p).expect("loading");
        loading.records += count;
        loading.next = next;
        if next >= end {
            self.finish_loading_groups(p);
        }
    }

    fn finish_loading_groups(&mut self, p: u32) {
        let Some(loading) = self.groups.loading.remove(&p) else {
            return;
        };
        self.groups.loaded.insert(p, loading.epoch);
        self.groups
            .groups
            .retain(|_, (gp, g)| *gp != p || !g.is_forgettable());
        tracing::info!(
            "{OFFSETS_TOPIC}-{p}: coordinator at epoch {}, replayed {} group records",
            loading.epoch,
            loading.records
        );
    }

    /// Expires offsets of idle groups (`offsets.retention.minutes`).
    pub(super) fn expire_group_offsets(&mut self) {
        let now = now_ms();
        if now < self.groups.last_retention_check_ms + RETENTION_CHECK_MS {
            return;
        }
        self.groups.last_retention_check_ms = now;
        let retention_ms = self.s.offsets_retention_ms;
        let ids: Vec<(String, u32)> = self
            .groups
            .groups
            .iter()
            .map(|(id, (p, _))| (id.clone(), *p))
            .collect();
        for (id, p) in ids {
            if !self.groups.loaded.contains_key(&p) {
                continue; // still loading: it may have more to read
            }
            let mut out = GroupEffects::new();
            let expired = self
                .groups
                .groups
                .get_mut(&id)
                .is_some_and(|(_, g)| g.on_retention_check(now, retention_ms, &mut out));
            if expired {
                tracing::info!("group {id}: offsets expired (offsets.retention.minutes)");
                self.execute_group(&id, p, out);
            }
        }
    }
}

/// A slice read: the offset after it, and its records by group.
type Slice = (Offset, Vec<(String, Decoded)>);

/// One slice of an offsets partition's records from `from` (below `end`),
/// by group: the offset after it and its records; None at the end; an
/// error if the log cannot be read there.
fn read_slice(
    log: &DiskLog,
    p: u32,
    mut from: Offset,
    end: Offset,
) -> Result<Option<Slice>, String> {
    if from >= end {
        return Ok(None);
    }
    let bytes = log
        .read(from, end, REPLAY_READ_BYTES)
        .map_err(|e| format!("{e:?}"))?;
    let batches = bytes.batches().map_err(|e| format!("{e:?}"))?;
    if batches.is_empty() {
        return Err(format!("nothing to read at offset {from}, below {end}"));
    }
    let mut records = Vec::new();
    for (header, raw) in batches {
        from = header.end_offset();
        // Only this node writes here (clients are refused), but a log from
        // anywhere is input: what does not decode is skipped with a
        // warning, never trusted or fatal.
        let decoded = crate::client::decode_records(raw).unwrap_or_else(|e| {
            tracing::warn!(
                "{OFFSETS_TOPIC}-{p}: skipping a batch at offset {}: {e}",
                header.base_offset
            );
            Vec::new()
        });
        for r in decoded {
            let Some(k) = r.key else { continue };
            match group_records::decode(&k, r.value.as_deref()) {
                Ok(Decoded::Entry(e)) => {
                    records.push((e.key.group().to_string(), Decoded::Entry(e)))
                }
                Ok(Decoded::Legacy(group, r)) => {
                    records.push((group.clone(), Decoded::Legacy(group, r)))
                }
                Err(e) => tracing::warn!("{OFFSETS_TOPIC}-{p}: skipping a record: {e}"),
            }
        }
    }
    Ok(Some((from, records)))
}
