//! The log cleaner (Kafka's `LogCleaner`, `log.cleaner.threads=1`): every
//! `log.cleaner.backoff.ms` it picks the dirtiest replica of a compacted
//! topic here that is due (`DiskLog::clean_due`: the topic's
//! `min.cleanable.dirty.ratio`, `max.compaction.lag.ms`, a tombstone's
//! delete horizon), runs one pass over its closed segments off the event
//! loop (`storage::cleaner`), and swaps the result in on the loop
//! (`DiskLog::install_cleaned`). Each replica cleans its own log, as each
//! Kafka broker does; the rule deciding what stays is the model's
//! (`runnel_model::compaction`), so every replica keeps the same records.
//!
//! `__consumer_offsets` is cleaned like any compacted topic: its records
//! are keyed as Kafka's (`group_records`), and the records of the layout
//! before (keyed by group alone) are kept as if keyless.

use super::*;
use crate::storage::cleaner::{self, Cleaned};
use crate::storage::disk_log::CleanTrigger;
use runnel_model::compaction::CleanPolicy;
use runnel_model::log::LogError;
use std::time::{SystemTime, UNIX_EPOCH};

impl Node {
    pub(super) fn cleaner_check(&mut self, now: Instant) {
        let backoff = Duration::from_millis(self.s.cleaner.backoff_ms);
        if !self.s.cleaner.enable {
            return;
        }
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if b.cleaning.is_some() || now.duration_since(b.last_cleaner_check) < backoff {
            return;
        }
        b.last_cleaner_check = now;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let Some((key, policy)) = self.dirtiest(now_ms) else {
            return;
        };
        let dedupe = self.s.cleaner.dedupe_buffer_bytes;
        let Some(mut job) = self
            .slot_mut(&key)
            .and_then(|s| s.runner.clean_job(now_ms, policy, dedupe))
        else {
            return;
        };
        if key.0 == OFFSETS_TOPIC {
            job.compactable_key = super::group_records::compactable_key;
        }
        let b = self.broker.as_mut().expect("checked above");
        b.cleaning = Some(key.clone());
        if crate::io::SIMULATED {
            // One thread per simulated host: the pass runs in the loop.
            return self.finish_cleaning(key, cleaner::run(&job));
        }
        let events = self.events_tx.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in the pass must not leave `cleaning` set forever
            // (no pass would ever start again): it comes back as an error.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cleaner::run(&job)))
                    .unwrap_or_else(|_| Err(LogError::Io("the cleaning pass panicked".into())));
            let _ = events.blocking_send(Event::Cleaned { key, result });
        });
    }

    /// The compacted replica here with the most dirty bytes among those due,
    /// and its topic's policy. Bounded by the compacted topics' replicas.
    fn dirtiest(&self, now_ms: i64) -> Option<((String, u32), CleanPolicy)> {
        let b = self.broker.as_ref()?;
        let image = &self.meta.as_ref()?.image;
        let mut best: Option<(u64, (String, u32), CleanPolicy)> = None;
        for (topic, t) in &image.topics {
            if !cleanup_policy_compacts(Some(&t.configs)) {
                continue;
            }
            let (trigger, policy) = self.clean_settings(&t.configs);
            let range = (topic.clone(), 0)..=(topic.clone(), u32::MAX);
            for (key, slot) in b.slots.range(range) {
                let log = slot.runner.replica().log();
                if !log.clean_due(now_ms, &trigger) {
                    continue;
                }
                let (dirty, _) = log.dirty_bytes();
                if best.as_ref().is_none_or(|(d, _, _)| dirty > *d) {
                    best = Some((dirty, key.clone(), policy));
                }
            }
        }
        best.map(|(_, key, policy)| (key, policy))
    }

    /// The topic's compaction keys over the broker's `log.cleaner.*`. The
    /// controller checked their types; one that does not parse (a log
    /// written before those checks) falls back to the broker's.
    fn clean_settings(&self, configs: &BTreeMap<String, String>) -> (CleanTrigger, CleanPolicy) {
        let c = &self.s.cleaner;
        let long = |key: &str| -> Option<i64> { configs.get(key)?.trim().parse().ok() };
        let ratio = configs
            .get("min.cleanable.dirty.ratio")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r));
        let max_lag = long("max.compaction.lag.ms").or(c.max_compaction_lag_ms);
        let trigger = CleanTrigger {
            min_cleanable_dirty_ratio: ratio.unwrap_or(c.min_cleanable_ratio),
            max_compaction_lag_ms: max_lag.filter(|&l| l > 0 && l < i64::MAX),
        };
        let policy = CleanPolicy {
            delete_retention_ms: long("delete.retention.ms")
                .unwrap_or(c.delete_retention_ms)
                .max(0),
            min_compaction_lag_ms: long("min.compaction.lag.ms")
                .unwrap_or(c.min_compaction_lag_ms)
                .max(0),
            ..CleanPolicy::default()
        };
        (trigger, policy)
    }

    /// A pass finished: its files are swapped in, unless the replica went
    /// or its log changed meanwhile. A pass that failed (a segment deleted
    /// under it, a damaged batch) changes nothing and is tried again later;
    /// a swap that failed part way fails the log like any write.
    pub(super) fn finish_cleaning(
        &mut self,
        key: (String, u32),
        result: Result<Cleaned, LogError>,
    ) {
        if let Some(b) = self.broker.as_mut() {
            b.cleaning = None;
        }
        let cleaned = match result {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{}-{}: a cleaning pass failed: {e:?}", key.0, key.1);
                return;
            }
        };
        let Some(slot) = self.slot_mut(&key) else {
            for s in &cleaned.segments {
                let _ = crate::io::fs::remove_file(cleaner::cleaned_path(&cleaned.dir, s.base));
            }
            return;
        };
        let stats = (
            cleaned.records_read,
            cleaned.records_removed,
            cleaned.bytes_before,
            cleaned.bytes_after,
        );
        match slot.runner.install_cleaned(cleaned) {
            Ok(0) => {}
            Ok(segments) => tracing::info!(
                "{}-{}: cleaned {segments} segment(s): {} of {} records removed, {} -> {} bytes",
                key.0,
                key.1,
                stats.1,
                stats.0,
                stats.2,
                stats.3
            ),
            Err(e) => {
                tracing::error!(
                    "{}-{}: swapping cleaned segments failed: {e:?}",
                    key.0,
                    key.1
                );
                self.take_offline_if_failed(&key);
            }
        }
    }
}
