//! Long-polling consumer fetches parked on the partitions they read.
//!
//! A Kafka Fetch with nothing to return waits (up to its `max_wait_ms`)
//! until something it asked for changes. Kafka keys its delayed fetches by
//! partition (`DelayedOperationPurgatory`, checked on each partition's
//! high-watermark move); so does this: each partition keeps the wakers of
//! the fetches that read it, and only a change a consumer can see there (the
//! high watermark, the log start offset, or the replica's leadership)
//! wakes them. Before, every replication message woke every parked fetch in
//! the node, so the cost grew as consumers × replication messages.
//!
//! A waker is a `Notify` owned by one Fetch request and woken with
//! `notify_one`, which keeps a permit when the request is not waiting yet:
//! a change between the node's read and the request's wait is never lost.
//! Partitions hold only `Weak` references, pruned as they go, so a request
//! that ended by its timeout costs nothing once it is gone.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

/// What a consumer of one partition can see: a change wakes its fetches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Visible {
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub is_leader: bool,
}

/// Wakers parked on one partition, at most [`WAKERS_MAX`] (a full list
/// wakes everyone and starts again: a spurious wake costs one re-read).
/// Keyed by the waker's address, so a request parks once however often it
/// re-reads. A request that ended by its timeout leaves a dead entry (its
/// `Weak` keeps the allocation, so the address is not reused); dead
/// entries are pruned whenever the map doubles since the last prune, so
/// they never outnumber the live ones by more than that, on a partition
/// that never changes as on any other.
#[derive(Debug)]
pub struct ParkedFetches {
    wakers: HashMap<usize, Weak<Notify>>,
    seen: Visible,
    prune_at: usize,
}

impl Default for ParkedFetches {
    fn default() -> Self {
        Self {
            wakers: HashMap::new(),
            seen: Visible::default(),
            prune_at: PRUNE_AT_MIN,
        }
    }
}

/// Every live Fetch is one connection's one request in flight, so this is
/// far above what `max.connections` lets in; dead entries are pruned first.
const WAKERS_MAX: usize = 65_536;
/// Entries below this are never pruned (a scan of a few is not worth it).
const PRUNE_AT_MIN: usize = 64;

impl ParkedFetches {
    /// Parks a request's waker here.
    pub fn park(&mut self, waker: &Arc<Notify>) {
        if self.wakers.len() >= self.prune_at {
            self.wakers.retain(|_, w| w.strong_count() > 0);
            self.prune_at = (self.wakers.len() * 2).max(PRUNE_AT_MIN);
        }
        if self.wakers.len() >= WAKERS_MAX {
            self.wake_all();
        }
        let key = Arc::as_ptr(waker) as usize;
        self.wakers.insert(key, Arc::downgrade(waker));
    }

    /// Records what consumers see now; wakes the parked fetches if it moved.
    pub fn observe(&mut self, now: Visible) {
        if now != self.seen {
            self.seen = now;
            self.wake_all();
        }
    }

    /// Wakes every parked fetch (the partition moved, or is going away).
    pub fn wake_all(&mut self) {
        for (_, w) in self.wakers.drain() {
            if let Some(n) = w.upgrade() {
                n.notify_one();
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.wakers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn woken(n: &Notify) -> bool {
        use std::future::Future;
        let fut = std::pin::pin!(n.notified());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        fut.poll(&mut cx).is_ready()
    }

    #[test]
    fn only_a_visible_change_wakes_and_a_wake_before_the_wait_is_kept() {
        let mut p = ParkedFetches::default();
        let a = Arc::new(Notify::new());
        p.park(&a);
        p.park(&a);
        assert_eq!(p.len(), 1, "parked once per request");
        p.observe(Visible::default());
        assert!(!woken(&a), "nothing moved");
        p.observe(Visible {
            high_watermark: 5,
            ..Visible::default()
        });
        // Woken before it waits: the permit is kept for its wait.
        assert!(woken(&a));
        assert_eq!(p.len(), 0, "a woken request parks again if it must");
    }

    #[test]
    fn ended_requests_are_pruned_and_the_list_is_bounded() {
        let mut p = ParkedFetches::default();
        let keep = Arc::new(Notify::new());
        p.park(&keep);
        // Long polls that ended by their timeout on a partition that never
        // changes: dead entries stay within a small multiple of the live.
        for _ in 0..10_000 {
            let gone = Arc::new(Notify::new());
            p.park(&gone);
        }
        assert!(p.len() <= PRUNE_AT_MIN, "{}", p.len());
        p.wake_all();
        assert!(woken(&keep), "the live request is still parked");
        // Live requests up to the limit: the next one wakes them all.
        let live: Vec<_> = (0..WAKERS_MAX).map(|_| Arc::new(Notify::new())).collect();
        for n in &live {
            p.park(n);
        }
        assert_eq!(p.len(), WAKERS_MAX);
        p.park(&keep);
        assert_eq!(p.len(), 1, "a full list woke everyone and started again");
        assert!(woken(&live[0]) && woken(&live[WAKERS_MAX - 1]));
        let live: Vec<_> = (0..WAKERS_MAX).map(|_| Arc::new(Notify::new())).collect();
        for n in &live {
            p.park(n);
        }
        let extra = Arc::new(Notify::new());
        p.park(&extra);
        assert!(p.len() <= WAKERS_MAX);
        assert!(
            woken(&live[0]),
            "a full list of live requests wakes them all"
        );
    }
}
