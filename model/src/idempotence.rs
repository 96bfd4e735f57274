//! Idempotent producers (Kafka's KIP-98 rules): per producer id, the epoch
//! and the last five batches' sequence ranges with their offsets. A retried
//! batch is recognised and answered with its original offset instead of
//! being appended twice; a gap in the sequence is refused; an older epoch is
//! fenced.
//!
//! The table is a fold over the batches of the log, in offset order, so any
//! replica rebuilds it from its own log — after a restart, after a
//! truncation, and on becoming leader. That is what makes de-duplication
//! survive a leader change: the new leader's log holds every committed batch
//! with its producer fields.

use crate::core::Offset;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Batches remembered per producer (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence).
pub const BATCHES_PER_PRODUCER: usize = 5;

/// Producers remembered per partition at most. Kafka bounds its table only
/// by `producer.id.expiration.ms` (a day), which a client minting producer
/// ids in a loop outruns; past this bound the tenth with the oldest last
/// batches is forgotten at once. A forgotten producer loses only duplicate
/// detection for a retry of a batch it sent long ago: its next batch is
/// taken as a new producer's (Kafka's answer to an expired one).
pub const PRODUCERS_MAX: usize = 100_000;

/// The producer fields of one record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    pub record_count: u32,
    /// Where the batch is (or would be) in the log.
    pub base_offset: Offset,
    /// The batch's largest record timestamp: when the producer was last
    /// heard of, for `producer.id.expiration.ms` (Kafka's `lastTimestamp`).
    pub max_timestamp_ms: i64,
}

impl ProducerBatch {
    /// Sequences wrap after `i32::MAX` (as Kafka's do).
    pub fn last_sequence(&self) -> i32 {
        let span = self.record_count.saturating_sub(1) as i64;
        ((self.first_sequence as i64 + span) % (i32::MAX as i64 + 1)) as i32
    }

    fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && self.first_sequence >= 0
    }
}

/// What to do with an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// A retry of a batch already in the log at `base_offset`.
    Duplicate {
        base_offset: Offset,
        end_offset: Offset,
    },
    /// Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER: the producer skipped sequences.
    OutOfOrder {
        expected: i32,
    },
    /// Kafka's INVALID_PRODUCER_EPOCH: a newer epoch of this id exists.
    FencedEpoch,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    /// The last batch's largest timestamp.
    last_timestamp_ms: i64,
    /// (first sequence, last sequence, base offset, end offset), oldest first.
    recent: VecDeque<(i32, i32, Offset, Offset)>,
}

/// Serializable, for a node's snapshot of it (Kafka's producer-state
/// `.snapshot` files): a table read back is the fold of the log up to the
/// snapshot's offset, and folding on from there gives the same table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerTable {
    /// Checks an incoming batch against the batches already in the log.
    pub fn check(&self, b: &ProducerBatch) -> SequenceCheck {
        if !b.is_idempotent() {
            // Not idempotent (pid -1): nothing to check. aiokafka sends
            // pid -1 with sequence 0; the pid decides.
            return SequenceCheck::Append;
        }
        let Some(e) = self.producers.get(&b.producer_id) else {
            return SequenceCheck::Append; // a new producer (or one retention forgot)
        };
        if b.producer_epoch < e.epoch {
            return SequenceCheck::FencedEpoch;
        }
        if b.producer_epoch > e.epoch {
            return match b.first_sequence {
                0 => SequenceCheck::Append,
                _ => SequenceCheck::OutOfOrder { expected: 0 },
            };
        }
        let last = b.last_sequence();
        if let Some(&(_, _, base, end)) = e
            .recent
            .iter()
            .find(|(f, l, _, _)| *f == b.first_sequence && *l == last)
        {
            return SequenceCheck::Duplicate {
                base_offset: base,
                end_offset: end,
            };
        }
        let expected = e.recent.back().map_or(0, |&(_, l, _, _)| next_sequence(l));
        if b.first_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Folds a batch that is now in the log.
    pub fn record(&mut self, b: &ProducerBatch) {
        if !b.is_idempotent() {
            return;
        }
        if self.producers.len() >= PRODUCERS_MAX && !self.producers.contains_key(&b.producer_id) {
            self.forget_oldest(PRODUCERS_MAX / 10);
        }
        let e = self.producers.entry(b.producer_id).or_default();
        e.last_timestamp_ms = b.max_timestamp_ms;
        if b.producer_epoch > e.epoch {
            e.epoch = b.producer_epoch;
            e.recent.clear();
        }
        let end = b.base_offset + Offset::from(b.record_count);
        e.recent
            .push_back((b.first_sequence, b.last_sequence(), b.base_offset, end));
        while e.recent.len() > BATCHES_PER_PRODUCER {
            e.recent.pop_front();
        }
        debug_assert!(e.recent.len() <= BATCHES_PER_PRODUCER);
    }

    pub fn producers(&self) -> usize {
        self.producers.len()
    }

    /// Kafka's `removeExpiredProducers`: forgets every producer whose last
    /// batch is `expiration_ms` or more older than `now_ms`
    /// (`producer.id.expiration.ms`). Returns how many went. The table
    /// stays a pure function of the log and the clock: a replica that
    /// rebuilds it from its log and expires at the same time agrees.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms);
        before - self.producers.len()
    }

    /// Forgets the `n` producers heard of longest ago (ties: lower id first).
    fn forget_oldest(&mut self, n: usize) {
        let mut by_age: Vec<(i64, i64)> = self
            .producers
            .iter()
            .map(|(&id, e)| (e.last_timestamp_ms, id))
            .collect();
        by_age.sort_unstable();
        for &(_, id) in by_age.iter().take(n) {
            self.producers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_sequence: i32, record_count: u32, base_offset: Offset) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            producer_epoch: 0,
            first_sequence,
            record_count,
            base_offset,
            max_timestamp_ms: base_offset as i64,
        }
    }

    #[test]
    fn a_retry_is_a_duplicate_with_its_original_offset() {
        let mut t = ProducerTable::default();
        let b = batch(0, 10, 100);
        assert_eq!(t.check(&b), SequenceCheck::Append);
        t.record(&b);
        assert_eq!(
            t.check(&batch(0, 10, 999)),
            SequenceCheck::Duplicate {
                base_offset: 100,
                end_offset: 110
            }
        );
        assert_eq!(t.check(&batch(10, 5, 110)), SequenceCheck::Append);
    }

    #[test]
    fn gaps_are_out_of_order_and_old_epochs_fenced() {
        let mut t = ProducerTable::default();
        t.record(&batch(0, 10, 0));
        assert_eq!(
            t.check(&batch(11, 1, 10)),
            SequenceCheck::OutOfOrder { expected: 10 }
        );
        let newer = ProducerBatch {
            producer_epoch: 1,
            ..batch(0, 1, 10)
        };
        assert_eq!(t.check(&newer), SequenceCheck::Append);
        t.record(&newer);
        assert_eq!(t.check(&batch(10, 1, 11)), SequenceCheck::FencedEpoch);
        let bad_start = ProducerBatch {
            producer_epoch: 2,
            ..batch(5, 1, 11)
        };
        assert_eq!(
            t.check(&bad_start),
            SequenceCheck::OutOfOrder { expected: 0 }
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_pid_minus_one_is_never_checked() {
        let mut t = ProducerTable::default();
        for i in 0..6 {
            t.record(&batch(i, 1, i as Offset));
        }
        assert_eq!(
            t.check(&batch(0, 1, 6)),
            SequenceCheck::OutOfOrder { expected: 6 },
            "forgotten"
        );
        assert!(matches!(
            t.check(&batch(1, 1, 6)),
            SequenceCheck::Duplicate { .. }
        ));
        let plain = ProducerBatch {
            producer_id: -1,
            ..batch(0, 1, 0)
        };
        assert_eq!(t.check(&plain), SequenceCheck::Append);
    }

    #[test]
    fn producers_expire_after_their_last_batch_and_the_table_is_bounded() {
        let mut t = ProducerTable::default();
        let at = |id: i64, ts: i64| ProducerBatch {
            producer_id: id,
            max_timestamp_ms: ts,
            ..batch(0, 1, 0)
        };
        t.record(&at(1, 1_000));
        t.record(&at(2, 5_000));
        assert_eq!(t.expire(10_999, 10_000), 0, "1 was heard of 9,999 ms ago");
        assert_eq!(t.expire(11_000, 10_000), 1);
        assert_eq!(t.producers(), 1);
        assert_eq!(
            t.check(&ProducerBatch {
                first_sequence: 7,
                ..at(1, 20_000)
            }),
            SequenceCheck::Append,
            "an expired producer is a new one"
        );
        let mut t = ProducerTable::default();
        for id in 0..PRODUCERS_MAX as i64 {
            t.record(&at(id, id));
        }
        assert_eq!(t.producers(), PRODUCERS_MAX);
        t.record(&at(-5 + PRODUCERS_MAX as i64 * 2, 1 << 40));
        assert_eq!(t.producers(), PRODUCERS_MAX - PRODUCERS_MAX / 10 + 1);
        assert!(
            matches!(t.check(&at(0, 0)), SequenceCheck::Append)
                && matches!(
                    t.check(&at(PRODUCERS_MAX as i64 - 1, 0)),
                    SequenceCheck::Duplicate { .. }
                ),
            "the oldest went, the newest stayed"
        );
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let b = batch(i32::MAX, 2, 0);
        assert_eq!(b.last_sequence(), 0);
        let mut t = ProducerTable::default();
        t.record(&b);
        assert_eq!(t.check(&batch(1, 1, 2)), SequenceCheck::Append);
    }
}
