//! Flushing partition logs: the turn's group commit (one fsync per
//! partition that asked) and background flushes that push dirty pages to
//! disk off the loop.

use super::*;
use std::ops::Bound;

impl Node {
    /// The group commit: one fsync per partition that asked for one (the
    /// durable mode's appends, a follower's fetched batches), all of them
    /// in one blocking task off the event loop, so a slow disk delays only
    /// the acks waiting for it, never the loop. Partitions asking while one
    /// is in flight wait for it to finish and go together in the next one.
    /// What a flush vouches for comes back through the model's `on_flushed`
    /// only once its fsync is done (`Node::finish_group_commit`).
    pub(super) fn group_commit(&mut self) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if b.flush_in_flight {
            return;
        }
        // A ticket holds its file open past the descriptor budget's
        // eviction, so one group commit takes at most a quarter of the
        // budget's worth of partitions; a cursor makes the next one go on
        // after the last taken (it starts as soon as this one ends), so no
        // partition waits behind names that keep asking.
        let keys_max = (self.s.log.files.capacity() / 4).max(1);
        let b = self.broker.as_mut().expect("checked above");
        let mut keys = Vec::new();
        let slots = &b.slots;
        round(&mut b.flush_asked, &mut b.flush_cursor, keys_max, |key| {
            let wanted = slots.get(key).is_some_and(|s| s.runner.flush_wanted());
            if wanted {
                keys.push(key.clone());
            }
            usize::from(wanted)
        });
        if keys.is_empty() {
            return;
        }
        if crate::io::SIMULATED {
            // One thread per simulated host: flush in the loop.
            return self.group_commit_inline(keys);
        }
        let mut tickets = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(t) = self.slot_mut(&key).and_then(|s| s.runner.begin_flush()) {
                tickets.push((key, t));
            }
        }
        let b = self.broker.as_mut().expect("checked above");
        b.flush_in_flight = true;
        let events = self.events_tx.clone();
        tokio::task::spawn_blocking(move || {
            for (_, t) in &mut tickets {
                t.run();
            }
            let _ = events.blocking_send(Event::Flushed(tickets));
        });
    }

    /// The simulation's group commit: every fsync in the loop, at once.
    fn group_commit_inline(&mut self, keys: Vec<(String, u32)>) {
        for key in keys {
            let result = self.slot_mut(&key).map(|s| s.runner.group_commit());
            match result {
                Some(Ok(out)) => self.on_runner_output(&key, out),
                Some(Err(e)) => {
                    // As off the loop (finish_group_commit): the replica
                    // goes offline, the node serves on.
                    tracing::error!("{}-{}: flush failed: {e:?}", key.0, key.1);
                    self.take_offline_if_failed(&key);
                }
                None => {}
            }
        }
    }

    /// A group commit's fsyncs are done: each partition learns what is
    /// durable now (a partition removed meanwhile is skipped; a log cut
    /// meanwhile wants its flush again). A failed fsync fails the log
    /// (`DiskLog::complete_flush`) and `on_runner_output` takes the replica
    /// offline: the controller moves its leadership and ISR membership, and
    /// the node serves on. Kafka takes the whole log directory offline and,
    /// when it was the broker's last, halts the broker; here the other
    /// replicas go offline one by one as their own writes or fsyncs fail,
    /// and the rest (the metadata quorum, replicas on healthy logs) keeps
    /// being served.
    pub(super) fn finish_group_commit(&mut self, tickets: Vec<((String, u32), FlushTicket)>) {
        if let Some(b) = self.broker.as_mut() {
            b.flush_in_flight = false;
        }
        for (key, ticket) in tickets {
            if let Some(out) = self.slot_mut(&key).map(|s| s.runner.finish_flush(ticket)) {
                self.on_runner_output(&key, out);
            }
        }
    }

    /// Async mode's periodic flush (it only moves the recovery point, so
    /// restarts scan little). The fsyncs that push a few hundred MB to disk
    /// run on a blocking thread, not in this loop; the loop then flushes
    /// what little is left.
    pub(super) fn background_flush(&mut self, now: Instant) {
        let due = self.broker.as_ref().is_some_and(|b| {
            !b.write_back_in_flight
                && (b.write_back_cursor.is_some()
                    || now.duration_since(b.last_flush)
                        >= Duration::from_millis(BACKGROUND_FLUSH_MS))
        });
        if !due {
            return;
        }
        // Files the list below holds stay open even when the descriptor
        // budget evicts them, so one round takes at most a quarter of the
        // budget's worth. Unbounded, a restart of 10,000 partitions (every
        // reopened index to sync) held 60,000 descriptors at once and ran
        // out (EMFILE). A capped round leaves a cursor: the next round
        // starts after it as soon as this one ends, until the pass reaches
        // the end of the set; then the next pass waits for the period. So
        // every due partition is visited once a pass, whatever its name
        // (starting each round from the first name starved the last ones).
        let files_max = (self.s.log.files.capacity() / 4).max(1);
        let b = self.broker.as_mut().expect("due implies broker");
        if b.write_back_cursor.is_none() {
            b.last_flush = now;
        }
        let mut keys = Vec::new();
        let mut files = Vec::new();
        let slots = &mut b.slots;
        round(
            &mut b.write_back_due,
            &mut b.write_back_cursor,
            files_max,
            |key| {
                let Some(slot) = slots.get_mut(key) else {
                    return 0;
                };
                // Durable mode leaves no unflushed data, but its recovery point
                // still moves only here.
                if !slot.runner.replica().log().needs_write_back() {
                    return 0;
                }
                let before = files.len();
                files.extend(slot.runner.unflushed_files());
                keys.push(key.clone());
                files.len() - before
            },
        );
        if keys.is_empty() {
            return;
        }
        b.write_back_in_flight = true;
        if crate::io::SIMULATED {
            // One thread per simulated host: flush in the loop.
            for f in files {
                let _ = crate::io::sync_data(&f);
            }
            return self.finish_background_flush(keys);
        }
        let events = self.events_tx.clone();
        tokio::task::spawn_blocking(move || {
            for f in files {
                let _ = crate::io::sync_data(&f);
            }
            let _ = events.blocking_send(Event::WrittenBack(keys));
        });
    }

    pub(super) fn finish_background_flush(&mut self, keys: Vec<(String, u32)>) {
        if let Some(b) = self.broker.as_mut() {
            b.write_back_in_flight = false;
        }
        for key in keys {
            match self.slot_mut(&key).map(|s| s.runner.flush_now()) {
                Some(Ok(out)) => self.on_runner_output(&key, out),
                Some(Err(e)) => {
                    tracing::error!("{}-{}: flush failed: {e:?}", key.0, key.1);
                    self.take_offline_if_failed(&key);
                }
                None => {}
            }
        }
    }
}

type Key = (String, u32);

/// One round over `set` that goes on after `cursor`: each key is handed to
/// `visit`, which says how much of the round's bound `max` it used (files,
/// partitions), and leaves the set; once `max` is used the round stops and
/// `cursor` keeps the last key visited, so the next round goes on from
/// there and every key gets its turn whatever its name. A round that
/// reaches the end of the set clears the cursor: the next starts over.
fn round(
    set: &mut BTreeSet<Key>,
    cursor: &mut Option<Key>,
    max: usize,
    mut visit: impl FnMut(&Key) -> usize,
) {
    let from = match cursor.take() {
        Some(after) => (Bound::Excluded(after), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    };
    let mut visited = Vec::new();
    let mut used = 0;
    for key in set.range::<Key, _>(from) {
        if used >= max {
            *cursor = visited.last().cloned();
            break;
        }
        used += visit(key);
        visited.push(key.clone());
    }
    for key in &visited {
        set.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Key {
        ("t".to_string(), i)
    }

    #[test]
    fn rounds_go_on_after_the_cursor_so_every_key_gets_its_turn() {
        let mut set: BTreeSet<Key> = (0..10).map(key).collect();
        let mut cursor = None;
        let mut order = Vec::new();
        // Each key uses one unit of a round of 3; keys 0 and 1 ask again at
        // once every time, which starved the last keys when every round
        // started from the first name.
        for _ in 0..4 {
            round(&mut set, &mut cursor, 3, |k| {
                order.push(k.1);
                1
            });
            set.insert(key(0));
            set.insert(key(1));
        }
        assert_eq!(order, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(cursor, None, "the pass reached the end");
        // Keys that used nothing do not count against the bound.
        let mut set: BTreeSet<Key> = (0..5).map(key).collect();
        round(&mut set, &mut cursor, 1, |k| usize::from(k.1 == 4));
        assert!(set.is_empty() && cursor.is_none());
    }
}
