//! Flushing partition logs: the turn's group commit (one fsync per
//! partition that asked) and background flushes that push dirty pages to
//! disk off the loop.

use super::*;

impl Node {
    /// One fsync per partition that asked for one this turn.
    pub(super) fn group_commit(&mut self) {
        let keys: Vec<_> = match self.broker.as_ref() {
            Some(b) => b
                .slots
                .iter()
                .filter(|(_, s)| s.runner.flush_wanted())
                .map(|(k, _)| k.clone())
                .collect(),
            None => return,
        };
        for key in keys {
            let result = self.slot_mut(&key).map(|s| s.runner.group_commit());
            match result {
                Some(Ok(out)) => self.on_runner_output(&key, out),
                Some(Err(e)) => tracing::error!("{}-{}: flush failed: {e:?}", key.0, key.1),
                None => {}
            }
        }
    }

    /// Async mode's periodic flush (it only moves the recovery point, so
    /// restarts scan little). The fsyncs that push a few hundred MB to disk
    /// run on a blocking thread, not in this loop; the loop then flushes
    /// what little is left.
    pub(super) fn background_flush(&mut self, now: Instant) {
        let due = self.broker.as_ref().is_some_and(|b| {
            now.duration_since(b.last_flush) >= Duration::from_millis(BACKGROUND_FLUSH_MS)
        });
        if !due {
            return;
        }
        let b = self.broker.as_mut().expect("due implies broker");
        b.last_flush = now;
        let mut keys = Vec::new();
        let mut files = Vec::new();
        for (key, slot) in &b.slots {
            let log = slot.runner.replica().log();
            let f = log.unflushed_files();
            // Durable mode leaves no unflushed data, but its recovery point
            // still moves only here.
            if !f.is_empty() || log.recovery_point() < log.end_offset() {
                keys.push(key.clone());
                files.extend(f);
            }
        }
        if keys.is_empty() {
            return;
        }
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
        for key in keys {
            match self.slot_mut(&key).map(|s| s.runner.flush_now()) {
                Some(Ok(out)) => self.on_runner_output(&key, out),
                Some(Err(e)) => tracing::error!("{}-{}: flush failed: {e:?}", key.0, key.1),
                None => {}
            }
        }
    }
}
