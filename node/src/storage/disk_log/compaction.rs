//! The log's side of compaction: what a cleaning pass may read
//! ([`DiskLog::clean_job`]), when one is due (`min.cleanable.dirty.ratio`,
//! `max.compaction.lag.ms`, a tombstone's delete horizon), and the swap of
//! the cleaned files ([`DiskLog::install_cleaned`]). The pass itself runs
//! off the event loop (`storage::cleaner`).
//!
//! The swap, per group of neighbouring segments merged into one, crash-safe
//! at every step (Kafka's `.swap` files): (1) `<base>.log.cleaned` (whole
//! and fsynced) is renamed `<base>.log.swap` and the directory synced; (2)
//! the replaced segments' index files and every `.log` but the first go;
//! (3) the swap file is renamed `<base>.log`, the directory synced; (4) new
//! index files are written from the pass's batch headers and synced. A
//! restart finishes a swap it finds (`complete_swaps`) and removes a
//! `.cleaned` file a crash left behind.

use super::*;
use crate::storage::cleaner::{cleaned_path, CleanJob, Cleaned};
use runnel_model::compaction::CleanPolicy;

/// Kafka's cleaner-offset-checkpoint, one per partition here: the first
/// offset the cleaner has not cleaned.
pub(super) const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// How long a replica whose last pass cleaned nothing waits before another,
/// unless its log grows (Kafka's default `log.retention.check.interval.ms`).
const STALLED_RETRY_MS: i64 = 300_000;

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
        // A pass that could clean nothing (records too young for
        // `min.compaction.lag.ms`, above the high watermark) is not run
        // again, over and over, ahead of every other replica: only once
        // the log has grown or a while has passed.
        if self.cleaner_stalled.is_some_and(|(end, at_ms)| {
            end == self.end_offset() && now_ms < at_ms + STALLED_RETRY_MS
        }) {
            return false;
        }
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
                .map(|s| (s.base_offset, s.end_offset, s.size_bytes))
                .collect(),
            segment_bytes: self.config.segment_bytes,
            high_watermark,
            now_ms,
            policy,
            dedupe_buffer_bytes,
            compactable_key: |_| true,
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
                .position(|seg| seg.base_offset == s.base);
            let same = found.is_some_and(|i| {
                i + s.replaced.len() <= closed
                    && self.segments[i..i + s.replaced.len()]
                        .iter()
                        .map(|seg| seg.base_offset)
                        .eq(s.replaced.iter().copied())
                    && self.segments[i + s.replaced.len() - 1].end_offset == s.end
            });
            if !same {
                let _ = fs::remove_file(cleaned_path(&self.dir, s.base));
                continue;
            }
            let result = self.swap_group(found.expect("checked"), s);
            self.note_failure(result)?;
            swapped += 1;
        }
        let progress = swapped > 0 || cleaned.clean_end > self.cleaner_checkpoint;
        self.cleaner_stalled = (!progress).then_some((self.end_offset(), cleaned.now_ms));
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

    /// Swaps one cleaned group in for the segments `i..` it replaces.
    fn swap_group(
        &mut self,
        i: usize,
        cleaned: &crate::storage::cleaner::CleanedSegment,
    ) -> Result<(), LogError> {
        let base = cleaned.base;
        let dir = self.dir.clone();
        // (1) The swap file's name is the promise a restart keeps
        // (`complete_swaps`): durable before any old file goes.
        let swap = swap_path(&dir, base);
        fs::rename(cleaned_path(&dir, base), &swap).map_err(io_error)?;
        crate::io::sync_dir(&dir).map_err(io_error)?;
        // (2) The old files go, then the swap file takes the first's name.
        remove_replaced(&dir, &cleaned.replaced)?;
        let log = log_path(&dir, base);
        fs::rename(&swap, &log).map_err(io_error)?;
        crate::io::sync_dir(&dir).map_err(io_error)?;
        // (3) New indexes, from the batches the pass wrote.
        // The index files are created empty, then every file is left to
        // the descriptor budget (opened when used).
        for ext in ["index", "timeindex"] {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(segment_path(&dir, base, ext))
                .map_err(io_error)?;
        }
        let log_file = self.config.files.closed(log);
        let index = self.config.files.closed(segment_path(&dir, base, "index"));
        let timeindex = self
            .config
            .files
            .closed(segment_path(&dir, base, "timeindex"));
        let interval = self.config.index_interval_bytes;
        // A reader holding an old file keeps reading it (same offsets).
        self.segments.drain(i + 1..i + cleaned.replaced.len());
        let max_timestamp_ms = self.segments[i].max_timestamp_ms;
        let segment = &mut self.segments[i];
        segment.log = log_file;
        segment.index = index;
        segment.timeindex = timeindex;
        segment.end_offset = cleaned.end;
        segment.size_bytes = cleaned.size_bytes;
        segment.durable_bytes = cleaned.size_bytes;
        segment
            .rebuild_index(&cleaned.headers, interval)
            .map_err(io_error)?;
        for file in [&segment.index, &segment.timeindex] {
            crate::io::sync_data(&*file.get().map_err(io_error)?).map_err(io_error)?;
        }
        segment.index_dirty = false;
        match segment.time_entries.last() {
            Some(&(t, o)) => (segment.max_timestamp_ms, segment.max_timestamp_rel) = (t, o),
            None => segment.max_timestamp_ms = max_timestamp_ms,
        }
        Ok(())
    }
}

fn swap_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}.log.swap"))
}

/// Removes the files of segments a merged file replaces: every index, and
/// every `.log` but the first's (the merged file is renamed over it).
fn remove_replaced(dir: &Path, replaced: &[Offset]) -> Result<(), LogError> {
    for (k, &b) in replaced.iter().enumerate() {
        for ext in ["index", "timeindex"] {
            match fs::remove_file(segment_path(dir, b, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(e)),
                _ => {}
            }
        }
        if k > 0 {
            match fs::remove_file(segment_path(dir, b, "log")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Finishes swaps a crash interrupted (Kafka's `.swap` recovery): each
/// `<base>.log.swap` was whole and durable before any file it replaces was
/// removed, so the segments within its offsets go and it takes its name.
/// A swap file that does not read as whole batches from its base is
/// removed (the files it would replace are then all still there: the swap
/// is durable before anything goes).
pub(super) fn complete_swaps(dir: &Path) -> Result<(), LogError> {
    let swaps: Vec<Offset> = fs::read_dir(dir)
        .map_err(io_error)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let base = name.strip_suffix(".log.swap")?;
            (base.len() == 20).then(|| base.parse().ok()).flatten()
        })
        .collect();
    for base in swaps {
        let swap = swap_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .open(&swap)
            .map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        let (headers, valid_end, _) = Segment::scan_file(&file, 0, len);
        let end = headers.last().map(|(_, h)| h.end_offset());
        let whole = valid_end == len
            && headers.first().is_some_and(|(_, h)| h.base_offset == base)
            && end.is_some_and(|e| batches_follow(&headers, base, e));
        let Some(end) = end.filter(|_| whole) else {
            tracing::warn!("{}: removing a damaged {}", dir.display(), swap.display());
            fs::remove_file(&swap).map_err(io_error)?;
            continue;
        };
        let inside: Vec<Offset> = fs::read_dir(dir)
            .map_err(io_error)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let b = name.strip_suffix(".log")?;
                (b.len() == 20).then(|| b.parse().ok()).flatten()
            })
            .filter(|&b: &Offset| b >= base && b < end)
            .collect();
        let mut replaced = vec![base];
        replaced.extend(inside.into_iter().filter(|&b| b != base));
        remove_replaced(dir, &replaced)?;
        fs::rename(&swap, log_path(dir, base)).map_err(io_error)?;
        crate::io::sync_dir(dir).map_err(io_error)?;
        tracing::info!("{}: finished swapping in {}", dir.display(), swap.display());
    }
    Ok(())
}
