//! The partition log abstraction the replication protocol reads and writes.
//!
//! [`PartitionLog`] is what the protocol needs from storage, nothing more:
//! append a run of batches (as leader, assigning offsets and the leader epoch;
//! as follower, keeping the leader's offsets and epochs), truncate, read whole
//! batches, the leader-epoch cache lookups that reconcile diverging logs, and
//! the flushed offset that bounds what survives a crash.
//!
//! [`MemLog`] is the in-memory implementation the model checker uses. Its
//! [`MemLog::crash`] drops everything past the flushed offset, which is the
//! only crash behaviour the protocol may rely on. The on-disk log in the node
//! implements the same trait, and a property test holds the two to identical
//! observable behaviour.

use crate::core::{LeaderEpoch, Offset};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// The end offset of a leader epoch, Kafka's `OffsetsForLeaderEpoch` answer:
/// `epoch` is the largest epoch known that is `<=` the epoch asked about, and
/// `end_offset` is the first offset after it (the start of the next epoch, or
/// the log end offset for the latest epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EpochEndOffset {
    pub epoch: LeaderEpoch,
    pub end_offset: Offset,
}

/// Where an append landed: offsets `[first_offset, end_offset)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppendInfo {
    pub first_offset: Offset,
    pub end_offset: Offset,
}

/// Why a log operation was refused. Nothing in the log changed when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogError {
    /// A batch failed validation (length, magic, checksum): Kafka's CORRUPT_MESSAGE.
    Corrupt(String),
    /// A read or append outside `[log start offset, log end offset]`.
    OffsetOutOfRange {
        requested: Offset,
        start: Offset,
        end: Offset,
    },
    /// A follower append whose first offset is not the log end offset.
    NonContiguous { expected: Offset, got: Offset },
    /// A batch whose leader epoch is older than the log's latest epoch.
    EpochRegression {
        latest: LeaderEpoch,
        got: LeaderEpoch,
    },
    /// Nothing to append.
    Empty,
    /// The storage failed; the message says how.
    Io(String),
}

/// A run of whole record batches, as read from or appended to a log.
pub trait Records: Clone + Debug {
    /// True if the run holds no batch.
    fn is_empty(&self) -> bool;

    /// The base offset of the first batch, if there is one.
    fn first_offset(&self) -> Option<Offset>;
}

/// What the replication protocol needs from a partition's storage.
///
/// Appends and truncations take effect immediately in the log's volatile
/// view (the page cache); only offsets below [`PartitionLog::flushed_offset`]
/// are guaranteed to survive a crash.
pub trait PartitionLog {
    type Records: Records;

    /// First offset still in the log (retention moves it forward).
    fn start_offset(&self) -> Offset;
    /// One past the last offset in the log (Kafka's log end offset, LEO).
    fn end_offset(&self) -> Offset;
    /// Everything below this offset is durable.
    fn flushed_offset(&self) -> Offset;

    /// Leader append: assigns offsets from the log end offset and stamps
    /// `leader_epoch` on every batch.
    fn append_as_leader(
        &mut self,
        records: Self::Records,
        leader_epoch: LeaderEpoch,
    ) -> Result<AppendInfo, LogError>;

    /// Follower append: the batches keep the leader's offsets and epochs; the
    /// first must start at the log end offset.
    fn append_as_follower(&mut self, records: Self::Records) -> Result<AppendInfo, LogError>;

    /// Removes every offset `>= end_offset` (no-op for the records if
    /// `end_offset >= LEO`) and every epoch-cache entry starting at or after the
    /// resulting log end offset — Kafka does the latter even when no record is
    /// removed, to drop an epoch a former leader assigned but never wrote.
    fn truncate_to(&mut self, end_offset: Offset);

    /// Kafka's `truncateFullyAndStartAt`: drops every record and the whole
    /// epoch cache and restarts the log, empty, at `start_offset` (which is
    /// then both its start and end offset, and durable). Past the log end,
    /// or anywhere when the log holds no record (its start is its end).
    fn truncate_fully_and_start_at(&mut self, start_offset: Offset);

    /// Moves the log start offset up to `start_offset` (at most the log
    /// end): records below it are gone for readers (DeleteRecords, or a
    /// follower following its leader's start). Whole batches below it may
    /// be dropped; a batch holding it stays. Durable when it returns, so a
    /// restart never brings deleted records back.
    fn advance_start_offset(&mut self, start_offset: Offset);

    /// Whole batches starting with the one containing `from`, none reaching
    /// `until` or beyond, at most `max_bytes` but always at least one batch.
    fn read(
        &self,
        from: Offset,
        until: Offset,
        max_bytes: usize,
    ) -> Result<Self::Records, LogError>;

    /// Records in the leader-epoch cache that `epoch` starts at `start_offset`
    /// (a new leader does this before appending anything). Ignored if the
    /// log already knows `epoch` or a later one.
    fn assign_epoch_start(&mut self, epoch: LeaderEpoch, start_offset: Offset);

    /// The latest leader epoch in the epoch cache.
    fn latest_epoch(&self) -> Option<LeaderEpoch>;

    /// The leader epoch of the batch holding `offset`.
    fn epoch_of_offset(&self, offset: Offset) -> Option<LeaderEpoch>;

    /// Kafka's `endOffsetFor(epoch)`. `None` when `epoch` is newer than any
    /// epoch the log knows or the cache is empty.
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<EpochEndOffset>;

    /// Makes everything appended so far durable; returns the flushed offset.
    fn flush(&mut self) -> Result<Offset, LogError>;
}

/// What a [`MemLog`] batch carries; its size bounds reads.
pub trait Payload: Clone + Debug + Eq + std::hash::Hash {
    fn size_bytes(&self) -> usize;
}

impl Payload for u8 {
    fn size_bytes(&self) -> usize {
        1
    }
}

impl Payload for Vec<u8> {
    fn size_bytes(&self) -> usize {
        self.len()
    }
}

/// One batch of a [`MemLog`]: `record_count` records at `[base_offset, base_offset + record_count)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemBatch<P> {
    pub base_offset: Offset,
    pub leader_epoch: LeaderEpoch,
    pub record_count: u32,
    pub payload: P,
}

impl<P> MemBatch<P> {
    /// A batch not yet placed in a log (the leader assigns offset and epoch).
    pub fn new(record_count: u32, payload: P) -> Self {
        assert!(record_count > 0, "a batch holds at least one record");
        Self {
            base_offset: 0,
            leader_epoch: 0,
            record_count,
            payload,
        }
    }

    pub fn end_offset(&self) -> Offset {
        self.base_offset + Offset::from(self.record_count)
    }
}

/// A run of [`MemBatch`]es.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemRecords<P>(pub Vec<MemBatch<P>>);

impl<P: Clone + Debug> Records for MemRecords<P> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn first_offset(&self) -> Option<Offset> {
        self.0.first().map(|b| b.base_offset)
    }
}

/// In-memory partition log with page-cache crash semantics, for the checker
/// and as the reference the on-disk log is tested against.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemLog<P> {
    batches: Vec<MemBatch<P>>,
    /// Leader-epoch cache: (epoch, start offset), both strictly increasing.
    epochs: Vec<(LeaderEpoch, Offset)>,
    flushed: Offset,
    /// The log start offset (0 until `truncate_fully_and_start_at`).
    start: Offset,
}

impl<P: Payload> MemLog<P> {
    pub fn new() -> Self {
        Self {
            batches: Vec::new(),
            epochs: Vec::new(),
            flushed: 0,
            start: 0,
        }
    }

    pub fn batches(&self) -> &[MemBatch<P>] {
        &self.batches
    }

    /// Power loss: everything past the flushed offset is gone. The epoch
    /// cache is rebuilt from what survives, as Kafka's recovery does.
    pub fn crash(&mut self) {
        let flushed = self.flushed;
        self.batches.retain(|b| b.end_offset() <= flushed);
        let end = self.end_offset();
        self.epochs.retain(|&(_, start)| start < end);
        self.flushed = end;
        self.check_invariants();
    }

    fn check_invariants(&self) {
        debug_assert!(self.start <= self.flushed && self.flushed <= self.end_offset());
        // The log start may lie inside the first batch (DeleteRecords).
        debug_assert!(self
            .batches
            .first()
            .is_none_or(|b| b.base_offset <= self.start && self.start < b.end_offset()));
        debug_assert!(self
            .batches
            .windows(2)
            .all(|w| w[0].end_offset() == w[1].base_offset));
        debug_assert!(self
            .batches
            .windows(2)
            .all(|w| w[0].leader_epoch <= w[1].leader_epoch));
        debug_assert!(self
            .epochs
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    fn note_epoch(&mut self, epoch: LeaderEpoch, start_offset: Offset) {
        match self.epochs.last() {
            Some(&(latest, _)) if latest >= epoch => {}
            _ => self.epochs.push((epoch, start_offset)),
        }
    }

    fn check_epoch(&self, epoch: LeaderEpoch) -> Result<(), LogError> {
        match self.latest_epoch() {
            Some(latest) if epoch < latest => Err(LogError::EpochRegression { latest, got: epoch }),
            _ => Ok(()),
        }
    }
}

impl<P: Payload> PartitionLog for MemLog<P> {
    type Records = MemRecords<P>;

    fn start_offset(&self) -> Offset {
        self.start
    }

    fn end_offset(&self) -> Offset {
        self.batches.last().map_or(self.start, MemBatch::end_offset)
    }

    fn flushed_offset(&self) -> Offset {
        self.flushed
    }

    fn append_as_leader(
        &mut self,
        records: MemRecords<P>,
        leader_epoch: LeaderEpoch,
    ) -> Result<AppendInfo, LogError> {
        if records.0.is_empty() {
            return Err(LogError::Empty);
        }
        self.check_epoch(leader_epoch)?;
        let first_offset = self.end_offset();
        for mut batch in records.0 {
            batch.base_offset = self.end_offset();
            batch.leader_epoch = leader_epoch;
            self.note_epoch(leader_epoch, batch.base_offset);
            self.batches.push(batch);
        }
        self.check_invariants();
        Ok(AppendInfo {
            first_offset,
            end_offset: self.end_offset(),
        })
    }

    fn append_as_follower(&mut self, records: MemRecords<P>) -> Result<AppendInfo, LogError> {
        let first = records.0.first().ok_or(LogError::Empty)?;
        let first_offset = self.end_offset();
        if first.base_offset != first_offset {
            return Err(LogError::NonContiguous {
                expected: first_offset,
                got: first.base_offset,
            });
        }
        // Validate the whole run before changing anything: all or nothing.
        let mut expected = first_offset;
        let mut epoch = self.latest_epoch().unwrap_or(0);
        for batch in &records.0 {
            if batch.base_offset != expected {
                return Err(LogError::NonContiguous {
                    expected,
                    got: batch.base_offset,
                });
            }
            if batch.leader_epoch < epoch {
                return Err(LogError::EpochRegression {
                    latest: epoch,
                    got: batch.leader_epoch,
                });
            }
            if batch.record_count == 0 {
                return Err(LogError::Corrupt("batch with no record".into()));
            }
            epoch = batch.leader_epoch;
            expected = batch.end_offset();
        }
        for batch in records.0 {
            self.note_epoch(batch.leader_epoch, batch.base_offset);
            self.batches.push(batch);
        }
        self.check_invariants();
        Ok(AppendInfo {
            first_offset,
            end_offset: self.end_offset(),
        })
    }

    fn truncate_to(&mut self, end_offset: Offset) {
        if end_offset < self.start {
            // Kafka's `truncateTo` below the log start restarts the log there.
            return self.truncate_fully_and_start_at(end_offset);
        }
        // Batches are atomic: a batch straddling `end_offset` goes too.
        self.batches.retain(|b| b.end_offset() <= end_offset);
        let end = self.end_offset();
        self.epochs.retain(|&(_, start)| start < end);
        self.flushed = self.flushed.min(end);
        self.check_invariants();
    }

    fn truncate_fully_and_start_at(&mut self, start_offset: Offset) {
        self.batches.clear();
        self.epochs.clear();
        self.start = start_offset;
        self.flushed = start_offset;
        self.check_invariants();
    }

    fn advance_start_offset(&mut self, start_offset: Offset) {
        let start_offset = start_offset.min(self.end_offset());
        if start_offset <= self.start {
            return;
        }
        self.start = start_offset;
        self.batches.retain(|b| b.end_offset() > start_offset);
        // Kafka's `truncateFromStart` of the epoch cache.
        while self.epochs.len() > 1 && self.epochs[1].1 <= start_offset {
            self.epochs.remove(0);
        }
        if let Some(first) = self.epochs.first_mut() {
            first.1 = first.1.max(start_offset);
        }
        // Durable: what is below the start is gone for good.
        self.flushed = self.flushed.max(start_offset);
        self.check_invariants();
    }

    fn read(
        &self,
        from: Offset,
        until: Offset,
        max_bytes: usize,
    ) -> Result<MemRecords<P>, LogError> {
        let end = self.end_offset();
        if from < self.start || from > end {
            return Err(LogError::OffsetOutOfRange {
                requested: from,
                start: self.start,
                end,
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for batch in self.batches.iter().filter(|b| b.end_offset() > from) {
            if batch.end_offset() > until {
                break;
            }
            bytes += batch.payload.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(batch.clone());
        }
        Ok(MemRecords(out))
    }

    fn assign_epoch_start(&mut self, epoch: LeaderEpoch, start_offset: Offset) {
        assert!(
            start_offset <= self.end_offset(),
            "an epoch starts at or below the log end"
        );
        self.note_epoch(epoch, start_offset);
        self.check_invariants();
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|&(e, _)| e)
    }

    fn epoch_of_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.batches
            .iter()
            .find(|b| b.base_offset <= offset && offset < b.end_offset())
            .map(|b| b.leader_epoch)
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<EpochEndOffset> {
        end_offset_for_epoch(&self.epochs, self.end_offset(), epoch)
    }

    fn flush(&mut self) -> Result<Offset, LogError> {
        self.flushed = self.end_offset();
        Ok(self.flushed)
    }
}

/// Kafka's `LeaderEpochFileCache.endOffsetFor`, over a cache of
/// `(epoch, start offset)` entries sorted by epoch. One copy of the rule, for
/// every log implementation.
pub fn end_offset_for_epoch(
    epochs: &[(LeaderEpoch, Offset)],
    log_end_offset: Offset,
    epoch: LeaderEpoch,
) -> Option<EpochEndOffset> {
    let &(latest, _) = epochs.last()?;
    if epoch == latest {
        return Some(EpochEndOffset {
            epoch,
            end_offset: log_end_offset,
        });
    }
    // The first entry after `epoch` ends it.
    let higher = epochs.iter().find(|&&(e, _)| e > epoch)?;
    let floor = epochs.iter().rev().find(|&&(e, _)| e <= epoch);
    Some(EpochEndOffset {
        // No floor: the log never saw `epoch` or anything older; Kafka answers
        // with the asked epoch ending where the log's first epoch starts.
        epoch: floor.map_or(epoch, |&(e, _)| e),
        end_offset: higher.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_append(log: &mut MemLog<u8>, value: u8, epoch: LeaderEpoch) -> AppendInfo {
        log.append_as_leader(MemRecords(vec![MemBatch::new(1, value)]), epoch)
            .unwrap()
    }

    #[test]
    fn epoch_lookups_follow_kafka() {
        let mut log = MemLog::new();
        leader_append(&mut log, 1, 1);
        leader_append(&mut log, 2, 1);
        log.assign_epoch_start(3, 2);
        leader_append(&mut log, 3, 3);
        assert_eq!(
            log.end_offset_for_epoch(3),
            Some(EpochEndOffset {
                epoch: 3,
                end_offset: 3
            })
        );
        assert_eq!(
            log.end_offset_for_epoch(2),
            Some(EpochEndOffset {
                epoch: 1,
                end_offset: 2
            })
        );
        assert_eq!(
            log.end_offset_for_epoch(1),
            Some(EpochEndOffset {
                epoch: 1,
                end_offset: 2
            })
        );
        assert_eq!(
            log.end_offset_for_epoch(0),
            Some(EpochEndOffset {
                epoch: 0,
                end_offset: 0
            })
        );
        assert_eq!(log.end_offset_for_epoch(4), None);
        assert_eq!(log.epoch_of_offset(2), Some(3));
        assert_eq!(log.epoch_of_offset(3), None);
    }

    #[test]
    fn crash_keeps_only_the_flushed_prefix() {
        let mut log = MemLog::new();
        leader_append(&mut log, 1, 1);
        log.flush().unwrap();
        leader_append(&mut log, 2, 2);
        assert_eq!(log.flushed_offset(), 1);
        log.crash();
        assert_eq!(log.end_offset(), 1);
        assert_eq!(log.latest_epoch(), Some(1));
    }

    #[test]
    fn truncate_at_end_drops_an_unwritten_epoch() {
        let mut log = MemLog::new();
        leader_append(&mut log, 1, 1);
        log.assign_epoch_start(2, 1);
        assert_eq!(log.latest_epoch(), Some(2));
        log.truncate_to(1);
        assert_eq!(log.latest_epoch(), Some(1));
        assert_eq!(log.end_offset(), 1);
    }

    #[test]
    fn follower_append_is_all_or_nothing() {
        let mut log = MemLog::<u8>::new();
        let good = MemBatch {
            base_offset: 0,
            leader_epoch: 2,
            record_count: 1,
            payload: 1,
        };
        let stale = MemBatch {
            base_offset: 1,
            leader_epoch: 1,
            record_count: 1,
            payload: 2,
        };
        let err = log
            .append_as_follower(MemRecords(vec![good, stale]))
            .unwrap_err();
        assert_eq!(err, LogError::EpochRegression { latest: 2, got: 1 });
        assert_eq!(log.end_offset(), 0);
    }

    #[test]
    fn read_returns_whole_batches_at_least_one() {
        let mut log = MemLog::<Vec<u8>>::new();
        log.append_as_leader(MemRecords(vec![MemBatch::new(2, vec![0; 10])]), 1)
            .unwrap();
        log.append_as_leader(MemRecords(vec![MemBatch::new(1, vec![0; 10])]), 1)
            .unwrap();
        let r = log.read(1, 3, 1).unwrap();
        assert_eq!(r.0.len(), 1);
        assert_eq!(r.0[0].base_offset, 0, "the batch containing the offset");
        assert_eq!(
            log.read(0, 2, 100).unwrap().0.len(),
            1,
            "bounded by `until`"
        );
        assert!(log.read(4, 4, 100).is_err());
    }
}
