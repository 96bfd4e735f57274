//! Producer ids, unique cluster-wide by construction (Kafka's KIP-730).
//!
//! The controller hands out blocks of [`PRODUCER_ID_BLOCK_SIZE`] ids; the
//! next free id is part of the replicated metadata (each allocation is a
//! `ProducerIds` record, see [`crate::controller`]), so a new controller
//! continues where the last stopped and no block is given twice. A broker
//! hands out the ids of its block in order to the idempotent producers that
//! ask it (InitProducerId), and asks for the next block before this one runs
//! out. A restarted broker forgets its block: the ids left in it are never
//! used, which is the price of never using one twice.
//!
//! The earlier scheme, `broker epoch << 20 | counter` chosen by each broker
//! alone, gave two producers the same id after 2^20 InitProducerId calls on
//! one broker incarnation (the counter ran into the next epoch's range); it
//! survives here as the seeded bug [`ProducerIdBugs::broker_local`], which
//! the uniqueness test (`model/tests/producer_ids.rs`) must catch.

use crate::core::BrokerEpoch;
use serde::{Deserialize, Serialize};

/// Ids per block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: u64 = 1000;

/// The largest producer id (Kafka's are non-negative i64s).
pub const PRODUCER_ID_MAX: u64 = i64::MAX as u64;

/// A range of ids `[first, first + len)` the controller gave one broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub first: u64,
    pub len: u64,
}

/// Known mistakes the uniqueness test must catch. All off in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProducerIdBugs {
    /// Ignore the controller's blocks: `epoch << counter_bits | counter`,
    /// chosen by the broker alone (the old scheme; the counter width is a
    /// parameter so a test reaches the wrap-around in a few calls).
    pub broker_local: Option<u32>,
}

/// One broker's producer ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BrokerProducerIds {
    current: Option<ProducerIdBlock>,
    /// Ids of `current` already handed out.
    used: u64,
    /// The block asked for ahead of time, once it arrives.
    next: Option<ProducerIdBlock>,
    requested: bool,
    bugs: ProducerIdBugs,
    /// Only for the seeded bug.
    epoch: BrokerEpoch,
    local_counter: u64,
}

impl BrokerProducerIds {
    pub fn new(bugs: ProducerIdBugs) -> Self {
        BrokerProducerIds {
            bugs,
            ..Default::default()
        }
    }

    /// A new incarnation of the broker: whatever it held is forgotten.
    pub fn on_registered(&mut self, epoch: BrokerEpoch) {
        *self = BrokerProducerIds {
            epoch,
            ..BrokerProducerIds::new(self.bugs)
        };
    }

    /// The next id for a producer, or `None` until a block arrives (Kafka
    /// answers COORDINATOR_LOAD_IN_PROGRESS, which clients retry).
    pub fn next_id(&mut self) -> Option<u64> {
        if let Some(bits) = self.bugs.broker_local {
            let counter = self.local_counter & ((1 << bits) - 1);
            self.local_counter += 1;
            return Some((self.epoch << bits) | counter);
        }
        if self.current.is_none_or(|b| self.used >= b.len) {
            self.current = self.next.take();
            self.used = 0;
        }
        let block = self.current?;
        let id = block.first + self.used;
        self.used += 1;
        debug_assert!(id < block.first + block.len);
        Some(id)
    }

    /// Should the broker ask the controller for a block now: it has none
    /// waiting and has used 90% of the current one (Kafka's threshold), or
    /// has none at all. At most one request is in flight.
    pub fn wants_block(&self) -> bool {
        if self.requested || self.next.is_some() || self.bugs.broker_local.is_some() {
            return false;
        }
        match self.current {
            None => true,
            Some(b) => self.used * 10 >= b.len * 9,
        }
    }

    /// The request for a block left (or failed: `false`, ask again later).
    pub fn on_request(&mut self, sent: bool) {
        self.requested = sent;
    }

    /// The controller's answer.
    pub fn on_block(&mut self, block: Option<ProducerIdBlock>) {
        self.requested = false;
        if let Some(b) = block {
            assert!(b.len > 0, "the controller never gives an empty block");
            if self.current.is_none() {
                self.current = Some(b);
                self.used = 0;
            } else {
                self.next = Some(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_block_and_the_next_is_asked_for_at_90_percent() {
        let mut b = BrokerProducerIds::new(ProducerIdBugs::default());
        b.on_registered(7);
        assert_eq!(b.next_id(), None, "no block yet");
        assert!(b.wants_block());
        b.on_request(true);
        assert!(!b.wants_block(), "one request at a time");
        b.on_block(Some(ProducerIdBlock {
            first: 5000,
            len: 10,
        }));
        let ids: Vec<u64> = (0..9).map(|_| b.next_id().unwrap()).collect();
        assert_eq!(ids, (5000..5009).collect::<Vec<_>>());
        assert!(b.wants_block(), "90% used");
        b.on_request(true);
        b.on_block(Some(ProducerIdBlock {
            first: 9000,
            len: 10,
        }));
        assert_eq!(b.next_id(), Some(5009));
        assert_eq!(b.next_id(), Some(9000), "then the next block");
        b.on_registered(8);
        assert_eq!(
            b.next_id(),
            None,
            "a new incarnation starts without a block"
        );
    }
}
