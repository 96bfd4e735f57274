//! Runs one partition's replication state machine over the on-disk log:
//! executes its effects, the storage side of the node's driver.
//!
//! Group commit lives here: every `FlushLog` effect only records that a
//! flush is wanted; [`PartitionRunner::group_commit`] then runs one fsync
//! for all of them and feeds the completion back, releasing every produce
//! that was waiting for durability at once. Messages and timers are handed
//! to the caller (the network and clock belong to the runtime).

use crate::storage::batch;
use crate::storage::disk_log::{BatchBytes, DiskLog, FlushTicket, RetentionPolicy};
use crate::storage::producer_snapshot::{self, Snapshot};
use runnel_model::core::{Effect, NodeId, Offset};
use runnel_model::idempotence::{ProducerBatch, ProducerTable, SequenceCheck};
use runnel_model::log::{LogError, PartitionLog};
use runnel_model::replication::{
    DeleteRecordsError, ProduceReply, ProduceRequest, Replica, ReplicaEffects, ReplicaTimer,
    ReplicationMessage,
};

pub type Message = ReplicationMessage<BatchBytes>;

/// What the runtime must do after an input.
#[derive(Debug, Default)]
pub struct Output {
    pub sends: Vec<(NodeId, Message)>,
    pub replies: Vec<ProduceReply>,
    pub timers_set: Vec<(ReplicaTimer, u64)>,
    pub timers_cancelled: Vec<ReplicaTimer>,
}

pub struct PartitionRunner {
    replica: Replica<DiskLog>,
    /// The highest offset some effect asked to make durable.
    flush_wanted: Option<Offset>,
    /// fsyncs run so far (one per group commit).
    pub fsyncs: u64,
    /// Idempotent producers' recent batches: a fold over the log.
    producers: ProducerTable,
    /// The log end offset the producer table covers.
    producers_to: Offset,
    /// The active segment's base offset when the table was last
    /// snapshotted (or the log opened): a roll past it writes a snapshot.
    snapshot_base: Offset,
}

/// Batch headers read at a time when folding the log into the producer
/// table (61 bytes each).
const PRODUCER_SCAN_BATCHES: usize = 4_096;

impl PartitionRunner {
    pub fn new(replica: Replica<DiskLog>) -> Self {
        let mut runner = Self {
            replica,
            flush_wanted: None,
            fsyncs: 0,
            producers: ProducerTable::default(),
            producers_to: 0,
            snapshot_base: 0,
        };
        runner.snapshot_base = runner.replica.log().active_base_offset();
        runner.rebuild_producers();
        runner
    }

    /// Checks a produce's batch against the idempotent producers' history.
    pub fn check_sequence(&self, records: &BatchBytes) -> SequenceCheck {
        let Some((producer_id, producer_epoch, first_sequence)) =
            batch::producer_fields(&records.0)
        else {
            return SequenceCheck::Append; // malformed: the append validates and refuses it
        };
        let record_count = batch::declared_record_count(&records.0).unwrap_or(0);
        let b = ProducerBatch {
            producer_id,
            producer_epoch,
            first_sequence,
            record_count,
            base_offset: self.replica.log().end_offset(),
            // Checking does not look at the time.
            max_timestamp_ms: 0,
        };
        self.producers.check(&b)
    }

    /// The table from the log: from the snapshot if one fits the log (see
    /// `producer_snapshot`), else from the log start; then the batches after.
    fn rebuild_producers(&mut self) {
        let log = self.replica.log();
        let (start, end) = (log.start_offset(), log.end_offset());
        let fits = |s: &Snapshot| {
            start <= s.offset
                && s.offset <= end
                && (s.offset == 0 || log.epoch_of_offset(s.offset - 1) == s.last_epoch)
        };
        match producer_snapshot::read(log.dir()).filter(fits) {
            Some(s) => {
                self.producers = s.table;
                self.producers_to = s.offset;
            }
            None => {
                self.producers = ProducerTable::default();
                self.producers_to = start;
            }
        }
        self.sync_producers();
    }

    /// After a roll, the table is snapshotted where it stands (two fsyncs
    /// per segment, 1 GiB by default); a failed write only means a longer
    /// fold at the next open.
    fn maybe_snapshot_producers(&mut self) {
        let log = self.replica.log();
        let base = log.active_base_offset();
        if base == self.snapshot_base || self.producers_to != log.end_offset() {
            return;
        }
        self.snapshot_base = base;
        let offset = self.producers_to;
        let snapshot = Snapshot {
            offset,
            last_epoch: offset.checked_sub(1).and_then(|o| log.epoch_of_offset(o)),
            table: self.producers.clone(),
        };
        if let Err(e) = producer_snapshot::write(log.dir(), &snapshot) {
            tracing::warn!(
                "{}: producer snapshot not written: {e}",
                log.dir().display()
            );
        }
    }

    /// Folds batches appended since the last call (a truncation below what
    /// was folded means a rebuild: the table must match the log). Reads
    /// only the batches' headers, where the producer fields are: one
    /// 61-byte read per batch, no copy of the records and no second CRC
    /// pass (the batches were validated when they were appended).
    fn sync_producers(&mut self) {
        let log = self.replica.log();
        let end = log.end_offset();
        // A truncation below what was folded, or a follower's log restarted
        // past it (`truncate_fully_and_start_at`): the table must match the log.
        if end < self.producers_to || self.producers_to < log.start_offset() {
            return self.rebuild_producers();
        }
        // Bounded: each round moves forward by at least one batch.
        while self.producers_to < end {
            let Ok(headers) =
                self.replica
                    .log()
                    .batch_headers(self.producers_to, end, PRODUCER_SCAN_BATCHES)
            else {
                return;
            };
            if headers.is_empty() {
                return;
            }
            for raw in headers {
                let header = batch::validate_header_only(&raw);
                if header.end_offset() <= self.producers_to {
                    // A base offset damaged on disk (outside the CRC, in a
                    // segment recovery trusted) would walk the same headers
                    // forever: stop; the table covers what came before.
                    tracing::warn!(
                        "a batch at or below offset {} does not move forward; producer table stops there",
                        self.producers_to
                    );
                    return;
                }
                if let Some((producer_id, producer_epoch, first_sequence)) =
                    batch::producer_fields(&raw)
                {
                    self.producers.record(&ProducerBatch {
                        producer_id,
                        producer_epoch,
                        first_sequence,
                        record_count: header.record_count,
                        base_offset: header.base_offset,
                        max_timestamp_ms: header.max_timestamp_ms,
                    });
                }
                self.producers_to = header.end_offset();
            }
        }
    }

    pub fn replica(&self) -> &Replica<DiskLog> {
        &self.replica
    }

    /// Applies the topic's `min.insync.replicas`, `segment.bytes` and
    /// `segment.ms` (after the broker's own, in `runtime/node/topic_configs.rs`).
    pub fn apply_topic_settings(
        &mut self,
        min_insync_replicas: usize,
        segment_bytes: u64,
        roll_ms: Option<u64>,
    ) {
        self.replica.set_min_insync_replicas(min_insync_replicas);
        self.replica.log_mut().set_roll(segment_bytes, roll_ms);
    }

    /// The log's files with unsynced bytes, for a sync off the event loop
    /// (see `DiskLog::unflushed_files`).
    pub fn unflushed_files(&mut self) -> Vec<std::sync::Arc<crate::io::fs::File>> {
        self.replica.log_mut().unflushed_files()
    }

    pub fn on_message(&mut self, from: NodeId, message: Message) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_message(from, message, &mut effects);
        self.sync_producers();
        self.maybe_snapshot_producers();
        self.execute(effects)
    }

    /// Forgets idempotent producers not heard of for `expiration_ms`
    /// (`ProducerTable::expire`); how many went.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: u64) -> usize {
        let expiration_ms = i64::try_from(expiration_ms).unwrap_or(i64::MAX);
        self.producers.expire(now_ms, expiration_ms)
    }

    /// DeleteRecords on this replica ([`Replica::delete_records`]).
    pub fn delete_records(
        &mut self,
        offset: Option<Offset>,
    ) -> (Result<Offset, DeleteRecordsError>, Output) {
        let mut effects = ReplicaEffects::new();
        let result = self.replica.delete_records(offset, &mut effects);
        (result, self.execute(effects))
    }

    pub fn on_produce(&mut self, request: ProduceRequest<BatchBytes>) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_produce(request, &mut effects);
        self.sync_producers();
        self.maybe_snapshot_producers();
        self.execute(effects)
    }

    pub fn on_duplicate_produce(
        &mut self,
        id: u64,
        base_offset: Offset,
        end_offset: Offset,
        acks: runnel_model::replication::Acks,
    ) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica
            .on_duplicate_produce(id, base_offset, end_offset, acks, &mut effects);
        self.execute(effects)
    }

    pub fn on_timer(&mut self, timer: ReplicaTimer) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_timer(timer, &mut effects);
        self.execute(effects)
    }

    /// Retention: deletes whole old segments the policy no longer keeps,
    /// below the high watermark only; returns how many went.
    pub fn enforce_retention(
        &mut self,
        now_ms: i64,
        policy: RetentionPolicy,
    ) -> Result<usize, LogError> {
        let high_watermark = self.replica.high_watermark();
        self.replica
            .log_mut()
            .enforce_retention(now_ms, policy, high_watermark)
    }

    /// What a cleaning pass of this replica's log may read (its closed
    /// segments, below its high watermark).
    pub fn clean_job(
        &self,
        now_ms: i64,
        policy: runnel_model::compaction::CleanPolicy,
        dedupe_buffer_bytes: u64,
    ) -> Option<crate::storage::cleaner::CleanJob> {
        let high_watermark = self.replica.high_watermark();
        self.replica
            .log()
            .clean_job(high_watermark, now_ms, policy, dedupe_buffer_bytes)
    }

    /// Swaps a finished pass's files in; how many segments changed.
    pub fn install_cleaned(
        &mut self,
        cleaned: crate::storage::cleaner::Cleaned,
    ) -> Result<usize, LogError> {
        self.replica.log_mut().install_cleaned(cleaned)
    }

    /// Is a flush waiting (the runtime runs [`Self::group_commit`] soon)?
    pub fn flush_wanted(&self) -> bool {
        self.flush_wanted.is_some()
    }

    /// One fsync for every append so far, then the completion goes back to
    /// the state machine.
    pub fn group_commit(&mut self) -> Result<Output, LogError> {
        if self.flush_wanted.take().is_none() {
            return Ok(Output::default());
        }
        let flushed = self.replica.log_mut().flush()?;
        self.fsyncs += 1;
        let mut effects = ReplicaEffects::new();
        self.replica.on_flushed(flushed, &mut effects);
        Ok(self.execute(effects))
    }

    /// The group commit taken off the event loop: the flush the waiting
    /// appends want, as a ticket whose fsyncs the caller runs elsewhere
    /// and hands back to [`Self::finish_flush`]. `None` if none is wanted.
    pub fn begin_flush(&mut self) -> Option<FlushTicket> {
        self.flush_wanted.take()?;
        Some(self.replica.log().begin_flush())
    }

    /// A ticket from [`Self::begin_flush`] came back run: what it made
    /// durable goes to the state machine. If it vouches for nothing (it
    /// failed, or the log was cut meanwhile), the flush is wanted again.
    pub fn finish_flush(&mut self, ticket: FlushTicket) -> Output {
        let complete = ticket.complete();
        let Some(flushed) = self.replica.log_mut().complete_flush(ticket) else {
            let end = self.replica.log().end_offset();
            if self.replica.log().flushed_offset() < end {
                self.flush_wanted = Some(self.flush_wanted.map_or(end, |o| o.max(end)));
            }
            return Output::default();
        };
        self.fsyncs += 1;
        if !complete {
            // Not everything could be synced (no descriptor to duplicate):
            // the appends it left out still want their flush.
            let end = self.replica.log().end_offset();
            self.flush_wanted = Some(self.flush_wanted.map_or(end, |o| o.max(end)));
        }
        let mut effects = ReplicaEffects::new();
        self.replica.on_flushed(flushed, &mut effects);
        self.execute(effects)
    }

    /// The link to `peer` broke: see `Replica::on_peer_disconnected`.
    pub fn on_peer_disconnected(&mut self, peer: NodeId) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_peer_disconnected(peer, &mut effects);
        self.execute(effects)
    }

    /// The background checkpoint: makes everything appended durable (if
    /// it is not yet), syncs the index files and moves the recovery point.
    pub fn flush_now(&mut self) -> Result<Output, LogError> {
        // Whatever the write-back set holds it for (data, index files, the
        // recovery point): a test narrower than `needs_write_back` left a
        // partition with dirty index files in the set for ever.
        if !self.replica.log().needs_write_back() {
            return Ok(Output::default());
        }
        let flushed = self.replica.log_mut().checkpoint()?;
        self.fsyncs += 1;
        self.flush_wanted = None;
        let mut effects = ReplicaEffects::new();
        self.replica.on_flushed(flushed, &mut effects);
        Ok(self.execute(effects))
    }

    fn execute(&mut self, mut effects: ReplicaEffects<BatchBytes>) -> Output {
        let mut out = Output::default();
        for effect in effects.drain() {
            match effect {
                Effect::Send { to, message } => out.sends.push((to, message)),
                Effect::SetTimer { timer, after_ms } => out.timers_set.push((timer, after_ms)),
                Effect::CancelTimer { timer } => out.timers_cancelled.push(timer),
                Effect::FlushLog { up_to } => {
                    self.flush_wanted = Some(self.flush_wanted.map_or(up_to, |o| o.max(up_to)));
                }
                Effect::Persist(()) => {}
                Effect::Reply(reply) => out.replies.push(reply),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch;
    use crate::storage::disk_log::LogConfig;
    use runnel_model::partition::PartitionRegistration;
    use runnel_model::replication::{Acks, FlushMode, ReplicaConfig};

    fn durable_leader(dir: &std::path::Path) -> PartitionRunner {
        let (log, _) = DiskLog::open(dir, LogConfig::default()).unwrap();
        let mut config = ReplicaConfig::new(0, 100);
        config.flush_mode = FlushMode::Durable;
        let mut runner = PartitionRunner::new(Replica::recover(config, log));
        let reg = PartitionRegistration::new(vec![0], |_| true);
        runner.on_message(100, ReplicationMessage::PartitionState(reg));
        assert!(runner.replica().is_leader());
        runner
    }

    #[test]
    fn a_reopened_log_folds_its_producers_from_the_snapshot_of_its_last_roll() {
        let d = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        };
        let (log, _) = DiskLog::open(d.path(), config.clone()).unwrap();
        let mut runner = PartitionRunner::new(Replica::recover(ReplicaConfig::new(0, 99), log));
        // Idempotent batches straight into the log (as a follower takes
        // them), enough to roll a few 4 KiB segments.
        for seq in 0..40i32 {
            let mut b = batch::build(1, &[0u8; 300], 1);
            b[43..51].copy_from_slice(&7i64.to_be_bytes());
            b[51..53].copy_from_slice(&0i16.to_be_bytes());
            b[53..57].copy_from_slice(&seq.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let end = runner.replica.log().end_offset();
            batch::patch(&mut b, end, 0);
            runner
                .replica
                .log_mut()
                .append_as_follower(BatchBytes(b.into()))
                .unwrap();
            runner.sync_producers();
            runner.maybe_snapshot_producers();
        }
        let end = runner.replica.log().end_offset();
        assert!(runner.replica.log().segment_count() > 2);
        let snapshot = producer_snapshot::read(d.path()).expect("written at a roll");
        assert!(snapshot.offset > 0 && snapshot.offset < end);
        let table = runner.producers.clone();
        drop(runner);
        let (log, _) = DiskLog::open(d.path(), config.clone()).unwrap();
        let runner = PartitionRunner::new(Replica::recover(ReplicaConfig::new(0, 99), log));
        assert_eq!(
            runner.producers, table,
            "snapshot plus the tail is the whole fold"
        );
        assert_eq!(runner.producers_to, end);
        drop(runner);
        // The snapshot is what the fold starts from: one naming a producer
        // the log never saw is believed; one whose epoch does not match the
        // log at its offset (a log cut and written again) is not.
        let marked = |last_epoch| {
            let mut table = snapshot.table.clone();
            table.record(&ProducerBatch {
                producer_id: 99,
                producer_epoch: 0,
                first_sequence: 0,
                record_count: 1,
                base_offset: 0,
                max_timestamp_ms: 0,
            });
            Snapshot {
                offset: snapshot.offset,
                last_epoch,
                table,
            }
        };
        let knows_99 = |snapshot: Snapshot| {
            producer_snapshot::write(d.path(), &snapshot).unwrap();
            let (log, _) = DiskLog::open(d.path(), config.clone()).unwrap();
            let runner = PartitionRunner::new(Replica::recover(ReplicaConfig::new(0, 99), log));
            runner.producers.producers() == table.producers() + 1
        };
        assert!(knows_99(marked(snapshot.last_epoch)));
        assert!(!knows_99(marked(snapshot.last_epoch.map(|e| e + 1))));
        // producer.id.expiration.ms: producer 7's last batch is stamped 1.
        let (log, _) = DiskLog::open(d.path(), config).unwrap();
        let mut runner = PartitionRunner::new(Replica::recover(ReplicaConfig::new(0, 99), log));
        assert_eq!(runner.producers.producers(), 1);
        assert_eq!(runner.expire_producers(86_400_000, 86_400_000), 0);
        assert_eq!(runner.expire_producers(86_400_001, 86_400_000), 1);
        assert_eq!(runner.producers.producers(), 0);
    }

    #[test]
    fn many_durable_produces_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = durable_leader(dir.path());
        for id in 0..100 {
            for acks in [Acks::Leader, Acks::All] {
                let records = BatchBytes(batch::build(1, b"x", 0).into());
                let out = runner.on_produce(ProduceRequest {
                    id: id * 2 + (acks == Acks::All) as u64,
                    records,
                    acks,
                });
                assert!(
                    out.replies.is_empty(),
                    "nothing is acknowledged before the fsync"
                );
            }
        }
        assert!(runner.flush_wanted());
        let out = runner.group_commit().unwrap();
        assert_eq!(runner.fsyncs, 1);
        assert_eq!(
            out.replies.len(),
            200,
            "every waiting produce answered by one fsync"
        );
        assert!(out.replies.iter().all(|r| r.result.is_ok()));
        assert_eq!(runner.replica().log().flushed_offset(), 200);
        assert_eq!(runner.replica().high_watermark(), 200);
    }

    /// Delivers every replication message between two runners until quiet.
    fn exchange(a: &mut PartitionRunner, b: &mut PartitionRunner, mut out: Output, from_a: bool) {
        let mut queue: Vec<(bool, Message)> =
            out.sends.drain(..).map(|(_, m)| (from_a, m)).collect();
        for _ in 0..100 {
            let Some((from_a, m)) = queue.pop() else {
                return;
            };
            let (to, from) = if from_a { (&mut *b, 0) } else { (&mut *a, 1) };
            let mut o = to.on_message(from, m);
            queue.extend(
                o.sends
                    .drain(..)
                    .filter(|(dest, _)| *dest < 100)
                    .map(|(_, m)| (!from_a, m)),
            );
        }
    }

    #[test]
    fn a_retried_idempotent_batch_is_recognised_by_a_new_leader() {
        use runnel_model::idempotence::SequenceCheck;
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let open = |dir: &std::path::Path, id| {
            let (log, _) = DiskLog::open(dir, LogConfig::default()).unwrap();
            PartitionRunner::new(Replica::recover(ReplicaConfig::new(id, 100), log))
        };
        let (mut a, mut b) = (open(da.path(), 0), open(db.path(), 1));
        let mut reg = PartitionRegistration::new(vec![0, 1], |_| true);
        let out = a.on_message(100, ReplicationMessage::PartitionState(reg.clone()));
        exchange(&mut a, &mut b, out, true);
        let out = b.on_message(100, ReplicationMessage::PartitionState(reg.clone()));
        exchange(&mut a, &mut b, out, false);
        let value = Some(bytes::Bytes::from_static(b"v"));
        let batch = |seq| {
            BatchBytes(
                crate::client::encode_producer_batch(
                    &[(None, value.clone()), (None, value.clone())],
                    1,
                    (42, 0, seq),
                )
                .unwrap(),
            )
        };
        assert_eq!(a.check_sequence(&batch(0)), SequenceCheck::Append);
        let out = a.on_produce(ProduceRequest {
            id: 1,
            records: batch(0),
            acks: Acks::Leader,
        });
        assert_eq!(out.replies[0].result, Ok(0));
        exchange(&mut a, &mut b, out, true);
        // The follower fetches the batch (its fetch was held until now).
        let out = a.on_timer(runnel_model::replication::ReplicaTimer::FetchMaxWait);
        exchange(&mut a, &mut b, out, true);
        assert_eq!(
            b.replica().log().end_offset(),
            2,
            "the follower has the batch"
        );
        assert_eq!(
            a.check_sequence(&batch(0)),
            SequenceCheck::Duplicate {
                base_offset: 0,
                end_offset: 2
            }
        );
        // Leadership moves to the follower: it knows the batch too.
        reg.leader = Some(1);
        reg.leader_epoch += 1;
        reg.partition_epoch += 1;
        b.on_message(100, ReplicationMessage::PartitionState(reg));
        assert!(b.replica().is_leader());
        assert_eq!(
            b.check_sequence(&batch(0)),
            SequenceCheck::Duplicate {
                base_offset: 0,
                end_offset: 2
            }
        );
        assert_eq!(b.check_sequence(&batch(2)), SequenceCheck::Append);
        assert_eq!(
            b.check_sequence(&batch(5)),
            SequenceCheck::OutOfOrder { expected: 2 }
        );
    }

    #[test]
    fn a_corrupt_batch_is_answered_with_corrupt_message_and_nothing_appended() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = durable_leader(dir.path());
        let mut bytes = batch::build(1, b"x", 0);
        bytes[batch::HEADER_BYTES] ^= 1;
        let out = runner.on_produce(ProduceRequest {
            id: 7,
            records: BatchBytes(bytes.into()),
            acks: Acks::All,
        });
        assert!(matches!(
            &out.replies[..],
            [ProduceReply {
                id: 7,
                result: Err(runnel_model::replication::ProduceError::Log(
                    LogError::Corrupt(_)
                ))
            }]
        ));
        assert_eq!(runner.replica().log().end_offset(), 0);
        assert!(!runner.flush_wanted());
    }
}
