//! The event loop's timers, all in one `DelayQueue` (a hashed timer wheel):
//! setting, re-arming and cancelling cost no task and no channel message,
//! and a timer that never fires costs nothing but its slot. One key holds at
//! most one timer (setting a set timer re-arms it, as the model's
//! `Effect::SetTimer` says), so the number of timers is bounded by the
//! number of keys: quorum timers, partition timers, group timers.

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::Hash;
use std::time::Duration;
use tokio_util::time::{delay_queue, DelayQueue};

/// The furthest a timer is set (about a year): the wheel refuses deadlines
/// past 2^36 ms, and a configured value may be larger (a timer that far out
/// only has to fire eventually; a state machine re-arms what it still needs).
pub const TIMER_MS_MAX: u64 = 1 << 35;

pub struct Timers<K> {
    queue: DelayQueue<K>,
    slots: HashMap<K, delay_queue::Key>,
}

impl<K: Clone + Eq + Hash> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            queue: DelayQueue::new(),
            slots: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Timers<K> {
    /// Fires `key` once, `after_ms` from now (re-arms it if set).
    pub fn set(&mut self, key: K, after_ms: u64) {
        let after = Duration::from_millis(after_ms.min(TIMER_MS_MAX));
        match self.slots.get(&key) {
            Some(slot) => self.queue.reset(slot, after),
            None => {
                let slot = self.queue.insert(key.clone(), after);
                self.slots.insert(key, slot);
            }
        }
    }

    pub fn cancel(&mut self, key: &K) {
        if let Some(slot) = self.slots.remove(key) {
            self.queue.remove(&slot);
        }
    }

    pub fn is_set(&self, key: &K) -> bool {
        self.slots.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The next timer to fire; pending for as long as none is set.
    pub async fn next(&mut self) -> K {
        poll_fn(|cx| match self.queue.poll_expired(cx) {
            std::task::Poll::Ready(Some(expired)) => {
                let key = expired.into_inner();
                self.slots.remove(&key);
                std::task::Poll::Ready(key)
            }
            // Empty: the queue wakes this task again when a timer is inserted.
            _ => std::task::Poll::Pending,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_order_rearm_and_cancel() {
        let mut t = Timers::default();
        t.set("a", 300);
        t.set("b", 100);
        t.set("c", 200);
        t.set("a", 50); // re-armed earlier
        t.cancel(&"c");
        assert_eq!(t.len(), 2);
        assert_eq!(t.next().await, "a");
        assert_eq!(t.next().await, "b");
        assert!(t.is_empty());
        let none = tokio::time::timeout(Duration::from_secs(3600), t.next()).await;
        assert!(none.is_err(), "no timer set: nothing fires");
        // A configured duration beyond what the wheel takes is clamped, not a panic.
        t.set("far", u64::MAX);
        t.set("far", i64::MAX as u64);
        assert!(t.is_set(&"far"));
    }
}
