//! The log's side of compaction: what a cleaning pass may read
//! ([`DiskLog::clean_job`]), when one is due (`min.cleanable.dirty.ratio`,
//! `max.compaction.lag.ms`, a tombstone's delete horizon), and the swap of
//! the cleaned files ([`DiskLog::install_cleaned`]). The pass itself runs
//! off the event loop (`storage::cleaner`).
//!
//! The swap, per segment, crash-safe at every step: (1) the old index
//! files go (a restart then rebuilds them from whichever `.log` it finds);
//! (2) `<base>.log.cleaned` is renamed over `<base>.log` (atomic: either
//! file, whole, both holding the same offsets); (3) new index files are
//! written from the cleaned batches and synced. A `.cleaned` file a crash
//! left behind is removed when the log opens.

use super::*;
use crate::storage::cleaner::{cleaned_path, CleanJob, Cleaned};
use runnel_model::compaction::CleanPolicy;

/// Kafka's cleaner-offset-checkpoint, one per partition here: the first
/// offset the cleaner has not cleaned.
pub(super) const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// When a compacted log is cleaned (Kafka's topic keys).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanTrigger {
    /// `min.cleanable.dirty.ratio` (Kafka's default 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// `max.compaction.lag.ms` (Kafka's default: never).
    pub max_compaction_lag_ms: Option<i64>,
}

impl Default for CleanTrigger {
    fn default() -> Self {
        Self {
            min_cleanable_dirty_ratio: 0.5,
            max_compaction_lag_ms: None,
        }
    }
}

/// A segment's `.log` path (the cleaner reads closed segments by path).
pub fn log_path(dir: &Path, base: Offset) -> PathBuf {
    segment_path(dir, base, "log")
}

/// Removes `.cleaned` files an interrupted pass left.
pub(super) fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".cleaned")) {
            let _ = fs::remove_file(e.path());
        }
    }
}

impl DiskLog {
    /// The first offset not yet cleaned.
    pub fn cleaner_checkpoint(&self) -> Offset {
        self.cleaner_checkpoint
            .clamp(self.segments[0].base_offset, self.end_offset())
    }

    /// How much of the closed segments is dirty (past the cleaner
    /// checkpoint), in bytes, and their total: Kafka's dirty ratio, by
    /// whole segments (one straddling the checkpoint counts as dirty).
    pub fn dirty_bytes(&self) -> (u64, u64) {
        let checkpoint = self.cleaner_checkpoint();
        let closed = &self.segments[..self.segments.len() - 1];
        let total = closed.iter().map(|s| s.size_bytes).sum();
        let dirty = closed
            .iter()
            .filter(|s| s.end_offset > checkpoint)
            .map(|s| s.size_bytes)
            .sum();
        (dirty, total)
    }

    /// Is a cleaning pass due: dirty enough, a dirty segment older than
    /// `max.compaction.lag.ms` (by its newest record: the bound only ever
    /// cleans later than Kafka, which goes by the first), or a kept
    /// tombstone's delete horizon passed?
    pub fn clean_due(&self, now_ms: i64, trigger: &CleanTrigger) -> bool {
        let (dirty, total) = self.dirty_bytes();
        if total == 0 {
            return false;
        }
        if self.next_horizon_ms.is_some_and(|h| now_ms >= h) {
            return true;
        }
        if dirty == 0 {
            return false;
        }
        if dirty as f64 / total as f64 >= trigger.min_cleanable_dirty_ratio {
            return true;
        }
        let checkpoint = self.cleaner_checkpoint();
        trigger.max_compaction_lag_ms.is_some_and(|lag| {
            self.segments[..self.segments.len() - 1]
                .iter()
                .find(|s| s.end_offset > checkpoint)
                .is_some_and(|s| s.max_timestamp_ms < now_ms.saturating_sub(lag))
        })
    }

    /// What a pass may read: the closed segments, none if there are none
    /// or the log failed.
    pub fn clean_job(
        &self,
        high_watermark: Offset,
        now_ms: i64,
        policy: CleanPolicy,
        dedupe_buffer_bytes: u64,
    ) -> Option<CleanJob> {
        if self.failed.is_some() || self.segments.len() < 2 {
            return None;
        }
        let closed = &self.segments[..self.segments.len() - 1];
        Some(CleanJob {
            dir: self.dir.clone(),
            log_id: self.log_id,
            generation: self.generation,
            segments: closed
                .iter()
                .map(|s| (s.base_offset, s.end_offset))
                .collect(),
            high_watermark,
            now_ms,
            policy,
            dedupe_buffer_bytes,
        })
    }

    /// Swaps in what a pass wrote, segment by segment; a segment that is
    /// gone or changed since (retention, DeleteRecords, a truncation) keeps
    /// its files and its cleaned copy is dropped. Returns how many segments
    /// were swapped.
    pub fn install_cleaned(&mut self, cleaned: Cleaned) -> Result<usize, LogError> {
        let same_log = cleaned.log_id == self.log_id && cleaned.generation == self.generation;
        if !same_log || self.failed.is_some() {
            for s in &cleaned.segments {
                let _ = fs::remove_file(cleaned_path(&self.dir, s.base));
            }
            return Ok(0);
        }
        let mut swapped = 0;
        for s in &cleaned.segments {
            let closed = self.segments.len() - 1;
            let found = self.segments[..closed]
                .iter()
                .position(|seg| seg.base_offset == s.base && seg.end_offset == s.end);
            let Some(i) = found else {
                let _ = fs::remove_file(cleaned_path(&self.dir, s.base));
                continue;
            };
            let result = self.swap_segment(i, s);
            self.note_failure(result)?;
            swapped += 1;
        }
        self.cleaner_checkpoint = self.cleaner_checkpoint.max(cleaned.clean_end);
        self.next_horizon_ms = cleaned.next_horizon_ms;
        let result = write_atomically(
            &self.dir.join(CLEANER_CHECKPOINT),
            self.cleaner_checkpoint.to_string().as_bytes(),
        )
        .map_err(io_error);
        self.note_failure(result)?;
        self.check_invariants();
        Ok(swapped)
    }

    fn swap_segment(
        &mut self,
        i: usize,
        cleaned: &crate::storage::cleaner::CleanedSegment,
    ) -> Result<(), LogError> {
        let base = cleaned.base;
        let dir = self.dir.clone();
        // (1) The old indexes go: they point into the old file.
        fs::remove_file(segment_path(&dir, base, "index")).map_err(io_error)?;
        let _ = fs::remove_file(segment_path(&dir, base, "timeindex"));
        crate::io::sync_dir(&dir).map_err(io_error)?;
        // (2) The cleaned file takes the segment's name.
        let log = log_path(&dir, base);
        fs::rename(cleaned_path(&dir, base), &log).map_err(io_error)?;
        crate::io::sync_dir(&dir).map_err(io_error)?;
        // (3) New indexes, from the batches the pass wrote.
        let open = |path: PathBuf| -> Result<CachedFile, LogError> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_error)?;
            Ok(self.config.files.adopt(path, file))
        };
        let log_file = open(log)?;
        let index = open(segment_path(&dir, base, "index"))?;
        let timeindex = open(segment_path(&dir, base, "timeindex"))?;
        let interval = self.config.index_interval_bytes;
        let segment = &mut self.segments[i];
        // A reader holding the old file keeps reading it (same offsets).
        segment.log = log_file;
        segment.index = index;
        segment.timeindex = timeindex;
        segment.size_bytes = cleaned.size_bytes;
        segment.durable_bytes = cleaned.size_bytes;
        segment
            .rebuild_index(&cleaned.headers, interval)
            .map_err(io_error)?;
        for file in [&segment.index, &segment.timeindex] {
            crate::io::sync_data(&*file.get().map_err(io_error)?).map_err(io_error)?;
        }
        segment.index_dirty = false;
        if let Some(&(t, o)) = segment.time_entries.last() {
            (segment.max_timestamp_ms, segment.max_timestamp_rel) = (t, o);
        }
        Ok(())
    }
}
