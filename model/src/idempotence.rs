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

/// The producer fields of one record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    pub record_count: u32,
    /// Where the batch is (or would be) in the log.
    pub base_offset: Offset,
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
        let e = self.producers.entry(b.producer_id).or_default();
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
    fn sequences_wrap_after_i32_max() {
        let b = batch(i32::MAX, 2, 0);
        assert_eq!(b.last_sequence(), 0);
        let mut t = ProducerTable::default();
        t.record(&b);
        assert_eq!(t.check(&batch(1, 1, 2)), SequenceCheck::Append);
    }
}
