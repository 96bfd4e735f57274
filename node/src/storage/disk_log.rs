//! A partition's log on disk, laid out as Kafka lays it out.
//!
//! `<dir>/00000000000000000000.log` holds record batches (v2) exactly as on
//! the wire, one segment per file, named by its 20-digit base offset; the
//! `.index` beside it maps relative offset → byte position (8 bytes an
//! entry, one per `index_interval_bytes` of batches). `leader-epoch-checkpoint`
//! is Kafka's epoch → start offset file, `recovery-point` the offset below
//! which everything was fsynced. Both are written atomically.
//!
//! Invariants (checked by `check_invariants` in debug builds): segments are
//! contiguous and sorted; the last one is the active one; every byte of every
//! `.log` file is a whole valid batch; `flushed_offset <= end_offset`.

use crate::io::fs::{self, File, OpenOptions};
use crate::io::FileExt;
use crate::storage::batch::{self, BatchHeader, HEADER_BYTES};
use crate::storage::checkpoint::{decode_epochs, encode_epochs, write_atomically};
use crate::storage::file_cache::{CachedFile, FileBudget};
use bytes::{Bytes, BytesMut};
use runnel_model::core::{LeaderEpoch, Offset};
use runnel_model::log::{
    end_offset_for_epoch, AppendInfo, EpochEndOffset, LogError, PartitionLog, Records,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod compaction;
pub use compaction::{log_path, CleanTrigger};

const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const RECOVERY_POINT: &str = "recovery-point";
/// The log start offset when it lies above the first segment's base
/// (DeleteRecords, or a follower following its leader's start); Kafka keeps
/// these in a per-directory `log-start-offset-checkpoint`.
const LOG_START: &str = "log-start-offset";
/// The most read of a one-number file (recovery point, log start) and of
/// the epoch checkpoint: more is not a file we wrote, and reads as absent.
const OFFSET_FILE_BYTES_MAX: u64 = 64;
const EPOCHS_BYTES_MAX: u64 = 4 << 20;
const INDEX_ENTRY_BYTES: usize = 8;

/// A one-number checkpoint file's offset, if it holds one.
fn read_offset(path: &Path) -> Option<Offset> {
    let bytes = crate::storage::checkpoint::read_bounded(path, OFFSET_FILE_BYTES_MAX).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}
const TIME_ENTRY_BYTES: usize = 12;

/// Kafka's per-topic log settings that the storage layer owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.segment.bytes`: roll to a new segment past this size.
    pub segment_bytes: u64,
    /// `log.index.interval.bytes`: bytes of batches between index entries.
    pub index_interval_bytes: u64,
    /// `log.roll.ms` / `log.roll.hours`: roll once the active segment's
    /// first record is this much older than an incoming one (record
    /// timestamps, as Kafka does, so no clock is read here).
    pub roll_ms: Option<u64>,
    /// The descriptors every log of the node draws from: segment files
    /// open only while recently used (see `file_cache`).
    pub files: FileBudget,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            roll_ms: Some(7 * 24 * 3_600_000),
            files: FileBudget::process_wide(),
        }
    }
}

/// Kafka's `log.retention.ms|minutes|hours` and `log.retention.bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
}

/// Kafka's `log.flush.interval.messages` / `log.flush.interval.ms`, or
/// durable mode (every acknowledged write is flushed first; callers share
/// one fsync among all writes waiting for it — group commit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushPolicy {
    pub interval_messages: Option<u64>,
    pub interval_ms: Option<u64>,
    pub durable: bool,
}

impl FlushPolicy {
    /// Should the log be flushed now? The default (nothing set) leaves it
    /// to the page cache, as Kafka does.
    pub fn flush_due(&self, unflushed_messages: u64, ms_since_flush: u64) -> bool {
        if unflushed_messages == 0 {
            return false;
        }
        self.durable
            || self
                .interval_messages
                .is_some_and(|n| unflushed_messages >= n)
            || self.interval_ms.is_some_and(|ms| ms_since_flush >= ms)
    }
}

/// A run of whole record batches, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchBytes(pub Bytes);

impl Records for BatchBytes {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn first_offset(&self) -> Option<Offset> {
        let base = self.0.get(..8)?;
        Some(u64::from_be_bytes(base.try_into().expect("8 bytes")))
    }
}

impl BatchBytes {
    /// Splits into validated batches (header and bytes).
    pub fn batches(&self) -> Result<Vec<(BatchHeader, Bytes)>, LogError> {
        split_batches(&self.0)
    }
}

/// A byte range of a segment file: whole batches, ready for `sendfile`.
#[derive(Debug)]
pub struct FileSlice {
    /// A shared handle on the segment file (valid even if the segment is
    /// deleted or its descriptor leaves the budget meanwhile, as an open
    /// file stays readable on Unix).
    pub file: Arc<File>,
    pub position: u64,
    pub len: u64,
}

/// What opening the log found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Segments scanned batch by batch (those at or after the recovery point).
    pub segments_scanned: usize,
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
    /// Index files rebuilt because they were missing or damaged.
    pub indexes_rebuilt: usize,
    /// Why the tail was cut, if it was.
    pub corruption: Option<String>,
}

struct Segment {
    base_offset: Offset,
    log: CachedFile,
    index: CachedFile,
    /// `.timeindex`: (largest timestamp so far, relative offset of the
    /// batch holding it), 12 bytes an entry, at index points where it grew.
    timeindex: CachedFile,
    time_entries: Vec<(i64, u32)>,
    /// Entries of `entries` / `time_entries` written to their files. The
    /// rest are written by [`Segment::write_indexes`] before a checkpoint
    /// syncs them (or on a roll), not on every append: an appending replica
    /// then keeps one file in use, not three, which is what lets thousands
    /// of them share a small descriptor budget. Recovery never trusts an
    /// index past the recovery point, and one below it was written in full.
    index_written: usize,
    time_written: usize,
    size_bytes: u64,
    end_offset: Offset,
    /// (offset - base_offset, byte position), also in the `.index` file.
    entries: Vec<(u32, u32)>,
    bytes_since_entry: u64,
    /// Bytes known to be on stable storage.
    durable_bytes: u64,
    /// The index or time index was written since its last fsync: the next
    /// checkpoint syncs it before the recovery point may pass this segment.
    index_dirty: bool,
    /// Max timestamp of the first batch (for time-based rolls).
    first_timestamp_ms: Option<i64>,
    /// Largest record timestamp in the segment (for time-based retention),
    /// and the relative offset of the batch holding it.
    max_timestamp_ms: i64,
    max_timestamp_rel: u32,
}

/// The largest offset a segment may hold relative to its base.
const RELATIVE_OFFSET_MAX: Offset = i32::MAX as Offset;
/// Kafka offsets are non-negative i64s.
const OFFSET_MAX: Offset = i64::MAX as Offset;

/// Do `headers` run without a gap from `base` to `end`?
fn batches_follow(headers: &[(u64, BatchHeader)], base: Offset, end: Offset) -> bool {
    let mut expected = base;
    for (_, h) in headers {
        if h.base_offset != expected {
            return false;
        }
        expected = h.end_offset();
    }
    expected == end
}

/// What a scan found: (byte position, header) of each valid batch, where
/// the valid prefix ends, and why it ended early if it did.
type Scanned = (Vec<(u64, BatchHeader)>, u64, Option<String>);

/// Reads one batch header of a segment's `.log` file.
fn read_header(log: &File, position: u64) -> io::Result<[u8; HEADER_BYTES]> {
    let mut h = [0u8; HEADER_BYTES];
    log.read_exact_at(&mut h, position)?;
    Ok(h)
}

fn io_error(e: io::Error) -> LogError {
    LogError::Io(e.to_string())
}

fn segment_path(dir: &Path, base_offset: Offset, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Removes a segment's log and index files (a time index may be missing:
/// logs written before it existed have none).
fn remove_segment_files(dir: &Path, base_offset: Offset) -> Result<(), LogError> {
    fs::remove_file(segment_path(dir, base_offset, "log")).map_err(io_error)?;
    fs::remove_file(segment_path(dir, base_offset, "index")).map_err(io_error)?;
    let _ = fs::remove_file(segment_path(dir, base_offset, "timeindex"));
    Ok(())
}

fn split_batches(bytes: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, LogError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let header = batch::validate(&bytes[at..]).map_err(|e| LogError::Corrupt(e.to_string()))?;
        out.push((header, bytes.slice(at..at + header.size_bytes)));
        at += header.size_bytes;
    }
    Ok(out)
}

impl Segment {
    fn create(dir: &Path, base_offset: Offset, files: &FileBudget) -> io::Result<Segment> {
        let open = |ext| {
            let path = segment_path(dir, base_offset, ext);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            io::Result::Ok((path, file))
        };
        let (log_path, log) = open("log")?;
        // The indexes are written at the next checkpoint or roll: created
        // now (recovery expects them), closed until then.
        let (index_path, _) = open("index")?;
        let (timeindex_path, _) = open("timeindex")?;
        Ok(Segment {
            base_offset,
            log: files.adopt(log_path, log),
            index: files.closed(index_path),
            timeindex: files.closed(timeindex_path),
            time_entries: Vec::new(),
            index_written: 0,
            time_written: 0,
            size_bytes: 0,
            end_offset: base_offset,
            entries: Vec::new(),
            bytes_since_entry: 0,
            durable_bytes: 0,
            index_dirty: false,
            first_timestamp_ms: None,
            max_timestamp_ms: i64::MIN,
            max_timestamp_rel: 0,
        })
    }

    fn note_timestamps(&mut self, headers: &[BatchHeader]) {
        for h in headers {
            self.first_timestamp_ms.get_or_insert(h.max_timestamp_ms);
            if h.max_timestamp_ms > self.max_timestamp_ms {
                self.max_timestamp_ms = h.max_timestamp_ms;
                self.max_timestamp_rel = (h.base_offset - self.base_offset) as u32;
            }
        }
    }

    /// Appends whole, validated batches at the end.
    fn append(
        &mut self,
        bytes: &[u8],
        headers: &[BatchHeader],
        index_interval_bytes: u64,
    ) -> io::Result<()> {
        // Positional writes: the file cursor is not ours to trust after a reopen.
        self.log.get()?.write_all_at(bytes, self.size_bytes)?;
        let mut position = self.size_bytes;
        let (entries_before, time_entries_before) = (self.entries.len(), self.time_entries.len());
        for h in headers {
            let rel = (h.base_offset - self.base_offset) as u32;
            let grew = self
                .time_entries
                .last()
                .is_none_or(|&(t, _)| h.max_timestamp_ms > t);
            if grew
                && (self.bytes_since_entry >= index_interval_bytes || self.time_entries.is_empty())
            {
                self.time_entries.push((h.max_timestamp_ms, rel));
            }
            if self.bytes_since_entry >= index_interval_bytes
                || self.entries.is_empty() && position == 0
            {
                let entry = ((h.base_offset - self.base_offset) as u32, position as u32);
                self.entries.push(entry);
                self.bytes_since_entry = 0;
            }
            self.bytes_since_entry += h.size_bytes as u64;
            position += h.size_bytes as u64;
            self.end_offset = h.end_offset();
        }
        if self.entries.len() > entries_before || self.time_entries.len() > time_entries_before {
            self.index_dirty = true;
        }
        self.size_bytes = position;
        self.note_timestamps(headers);
        Ok(())
    }

    /// Writes the index entries not yet in their files (see
    /// `index_written`); the caller syncs them.
    fn write_indexes(&mut self) -> io::Result<()> {
        if self.entries.len() > self.index_written {
            let mut bytes = Vec::new();
            for (o, p) in &self.entries[self.index_written..] {
                bytes.extend_from_slice(&o.to_be_bytes());
                bytes.extend_from_slice(&p.to_be_bytes());
            }
            let at = (self.index_written * INDEX_ENTRY_BYTES) as u64;
            self.index.get()?.write_all_at(&bytes, at)?;
            self.index_written = self.entries.len();
        }
        if self.time_entries.len() > self.time_written {
            let mut bytes = Vec::new();
            for (t, o) in &self.time_entries[self.time_written..] {
                bytes.extend_from_slice(&t.to_be_bytes());
                bytes.extend_from_slice(&o.to_be_bytes());
            }
            let at = (self.time_written * TIME_ENTRY_BYTES) as u64;
            self.timeindex.get()?.write_all_at(&bytes, at)?;
            self.time_written = self.time_entries.len();
        }
        Ok(())
    }

    /// Byte position of the batch holding `offset` (or of the first batch
    /// after it): the index's floor entry, then a scan of headers.
    fn position_of(&self, offset: Offset) -> io::Result<u64> {
        let rel = offset.saturating_sub(self.base_offset) as u32;
        let floor = self.entries.partition_point(|&(o, _)| o <= rel);
        let mut position = if floor == 0 {
            0
        } else {
            u64::from(self.entries[floor - 1].1)
        };
        let log = self.log.get()?;
        while position < self.size_bytes {
            let h = read_header(&log, position)?;
            let header = batch::validate_header_only(&h);
            if header.end_offset() > offset {
                break;
            }
            position += header.size_bytes as u64;
        }
        Ok(position)
    }

    /// The furthest indexed batch start a read from `first` may reach
    /// without a header read: within `max_bytes` of `first`, and starting
    /// at or below `until` (the batches before an indexed start end at its
    /// base offset, so all of them belong to the read). One index entry per
    /// `index.interval.bytes` (4 KiB) saves the ~1,000 header reads a 1 MiB
    /// fetch of 1 KiB batches would make; the walk goes on from there.
    fn skip_by_index(&self, first: u64, until: Offset, max_bytes: usize) -> u64 {
        let reach = first.saturating_add(max_bytes as u64);
        let fits = |&(rel, position): &(u32, u32)| {
            u64::from(position) <= reach && self.base_offset + Offset::from(rel) <= until
        };
        let k = self.entries.partition_point(fits);
        match k.checked_sub(1).map(|i| u64::from(self.entries[i].1)) {
            Some(position) if position > first => position,
            _ => first,
        }
    }

    /// Scans `[from_position, size)`, validating every batch; returns the
    /// headers and where the valid prefix ends plus why it ended early.
    /// Only a read of the open file counts against the bytes: a file that
    /// cannot be opened (no descriptor) is an error, never a torn tail.
    fn scan(&self, from_position: u64, file_len: u64) -> io::Result<Scanned> {
        let log = self.log.get()?;
        Ok(Self::scan_file(&log, from_position, file_len))
    }

    fn scan_file(log: &File, from_position: u64, file_len: u64) -> Scanned {
        let mut out = Vec::new();
        let mut position = from_position;
        while position < file_len {
            let mut prefix = [0u8; batch::LENGTH_PREFIX_BYTES];
            if file_len - position < prefix.len() as u64
                || log.read_exact_at(&mut prefix, position).is_err()
            {
                return (
                    out,
                    position,
                    Some(format!("torn batch header at byte {position}")),
                );
            }
            let size = match batch::declared_size(&prefix) {
                Ok(size) if position + size as u64 <= file_len => size,
                Ok(size) => {
                    return (
                        out,
                        position,
                        Some(format!(
                            "torn batch at byte {position}: {size} bytes declared"
                        )),
                    )
                }
                Err(e) => return (out, position, Some(format!("at byte {position}: {e}"))),
            };
            let mut bytes = vec![0u8; size];
            if log.read_exact_at(&mut bytes, position).is_err() {
                return (
                    out,
                    position,
                    Some(format!("unreadable batch at byte {position}")),
                );
            }
            match batch::validate(&bytes) {
                Ok(h) => {
                    out.push((position, h));
                    position += size as u64;
                }
                Err(e) => return (out, position, Some(format!("at byte {position}: {e}"))),
            }
        }
        (out, position, None)
    }

    /// Loads the `.index` file; false if it is missing, damaged or does not
    /// fit the log (then the caller rebuilds it).
    fn load_index(&mut self, log_len: u64) -> bool {
        let Ok(index) = self.index.get() else {
            return false;
        };
        let Ok(len) = index.metadata().map(|m| m.len()) else {
            return false;
        };
        if len % INDEX_ENTRY_BYTES as u64 != 0 || (len == 0 && log_len > 0) || len > log_len {
            return false;
        }
        let mut bytes = vec![0u8; len as usize];
        if index.read_exact_at(&mut bytes, 0).is_err() {
            return false;
        }
        let entries: Vec<(u32, u32)> = bytes
            .chunks_exact(INDEX_ENTRY_BYTES)
            .map(|c| {
                let o = u32::from_be_bytes(c[0..4].try_into().expect("4 bytes"));
                let p = u32::from_be_bytes(c[4..8].try_into().expect("4 bytes"));
                (o, p)
            })
            .collect();
        let sorted = entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let in_range = entries.iter().all(|&(_, p)| u64::from(p) < log_len.max(1));
        if !sorted || !in_range || entries.first().is_some_and(|&(_, p)| p != 0) {
            return false;
        }
        self.bytes_since_entry = entries.last().map_or(0, |&(_, p)| log_len - u64::from(p));
        self.index_written = entries.len();
        self.entries = entries;
        true
    }

    /// Rebuilds the in-memory index (and the file) from scanned headers.
    fn rebuild_index(
        &mut self,
        headers: &[(u64, BatchHeader)],
        index_interval_bytes: u64,
    ) -> io::Result<()> {
        self.entries.clear();
        self.bytes_since_entry = 0;
        let mut file_bytes = Vec::new();
        for (position, h) in headers {
            if self.bytes_since_entry >= index_interval_bytes || self.entries.is_empty() {
                let entry = ((h.base_offset - self.base_offset) as u32, *position as u32);
                self.entries.push(entry);
                file_bytes.extend_from_slice(&entry.0.to_be_bytes());
                file_bytes.extend_from_slice(&entry.1.to_be_bytes());
                self.bytes_since_entry = 0;
            }
            self.bytes_since_entry += h.size_bytes as u64;
        }
        let index = self.index.get()?;
        index.set_len(0)?;
        index.write_all_at(&file_bytes, 0)?;
        self.index_written = self.entries.len();
        self.index_dirty = true;
        self.rebuild_time_index(headers)
    }

    /// Rebuilds `.timeindex` from scanned headers, ending with the segment's
    /// largest timestamp (so a closed segment's age is its last entry).
    fn rebuild_time_index(&mut self, headers: &[(u64, BatchHeader)]) -> io::Result<()> {
        self.time_entries.clear();
        for (_, h) in headers {
            if self
                .time_entries
                .last()
                .is_none_or(|&(t, _)| h.max_timestamp_ms > t)
            {
                self.time_entries.push((
                    h.max_timestamp_ms,
                    (h.base_offset - self.base_offset) as u32,
                ));
            }
        }
        self.write_time_index()
    }

    fn write_time_index(&mut self) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(self.time_entries.len() * TIME_ENTRY_BYTES);
        for (t, o) in &self.time_entries {
            bytes.extend_from_slice(&t.to_be_bytes());
            bytes.extend_from_slice(&o.to_be_bytes());
        }
        let timeindex = self.timeindex.get()?;
        timeindex.set_len(0)?;
        timeindex.write_all_at(&bytes, 0)?;
        self.time_written = self.time_entries.len();
        // A rewrite on roll too: the next checkpoint must sync it before
        // the recovery point passes this segment.
        self.index_dirty = true;
        Ok(())
    }

    /// On roll: the time index's last entry records the segment's largest
    /// timestamp, and both indexes are written and synced now. The segment
    /// may already lie below the recovery point (a checkpoint at this very
    /// offset), where recovery trusts its index files with no later
    /// checkpoint to sync them: a lost last entry would make the segment
    /// look older than it is, and retention would delete it early (found
    /// by review). One fsync pair per roll (a segment is 1 GiB by default).
    fn close(&mut self) -> io::Result<()> {
        if self
            .time_entries
            .last()
            .is_none_or(|&(t, _)| t < self.max_timestamp_ms)
        {
            self.time_entries
                .push((self.max_timestamp_ms, self.max_timestamp_rel));
        }
        // Dirty until synced: a failure below leaves it to the checkpoint.
        self.index_dirty = true;
        self.write_indexes()?;
        for file in [&self.index, &self.timeindex] {
            let file = file.get()?;
            crate::io::sync_data(&file)?;
        }
        self.index_dirty = false;
        Ok(())
    }

    /// Loads `.timeindex`; false if missing or damaged.
    fn load_time_index(&mut self) -> bool {
        let Ok(bytes) = self.timeindex.get().and_then(|f| Self::read_all_of(&f)) else {
            return false;
        };
        if bytes.len() % TIME_ENTRY_BYTES != 0 || (bytes.is_empty() && self.size_bytes > 0) {
            return false;
        }
        let entries: Vec<(i64, u32)> = bytes
            .chunks_exact(TIME_ENTRY_BYTES)
            .map(|c| {
                let t = i64::from_be_bytes(c[0..8].try_into().expect("8 bytes"));
                let o = u32::from_be_bytes(c[8..12].try_into().expect("4 bytes"));
                (t, o)
            })
            .collect();
        if !entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        {
            return false;
        }
        self.time_written = entries.len();
        self.time_entries = entries;
        true
    }

    fn read_all_of(file: &File) -> io::Result<Vec<u8>> {
        let len = file.metadata()?.len();
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// The first offset whose batch's max timestamp is `>= timestamp_ms`.
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> io::Result<Option<Offset>> {
        let floor = self
            .time_entries
            .partition_point(|&(t, _)| t < timestamp_ms);
        let start = if floor == 0 {
            self.base_offset
        } else {
            self.base_offset + u64::from(self.time_entries[floor - 1].1)
        };
        let mut position = self.position_of(start)?;
        let log = self.log.get()?;
        while position < self.size_bytes {
            let h = batch::validate_header_only(&read_header(&log, position)?);
            if h.max_timestamp_ms >= timestamp_ms {
                return Ok(Some(h.base_offset));
            }
            position += h.size_bytes as u64;
        }
        Ok(None)
    }

    fn truncate_to_position(&mut self, position: u64, end_offset: Offset) -> io::Result<()> {
        let log = self.log.get()?;
        log.set_len(position)?;
        crate::io::sync_all(&log)?;
        self.size_bytes = position;
        self.durable_bytes = self.durable_bytes.min(position);
        self.index_dirty = true;
        self.end_offset = end_offset;
        self.entries.retain(|&(_, p)| u64::from(p) < position);
        self.index_written = self.index_written.min(self.entries.len());
        let index_len = (self.index_written * INDEX_ENTRY_BYTES) as u64;
        self.index.get()?.set_len(index_len)?;
        let end_rel = end_offset.saturating_sub(self.base_offset);
        self.time_entries.retain(|&(_, o)| u64::from(o) < end_rel);
        self.time_written = self.time_written.min(self.time_entries.len());
        self.timeindex
            .get()?
            .set_len((self.time_written * TIME_ENTRY_BYTES) as u64)?;
        self.max_timestamp_ms = self.time_entries.last().map_or(i64::MIN, |&(t, _)| t);
        // Re-derive how far we are past the last entry.
        self.bytes_since_entry = match self.entries.last() {
            Some(&(_, p)) => position - u64::from(p),
            None => position,
        };
        Ok(())
    }
}

/// One partition's on-disk log.
pub struct DiskLog {
    dir: PathBuf,
    config: LogConfig,
    segments: Vec<Segment>,
    /// The log start offset: at or above the first segment's base, at most
    /// the log end. Readers see nothing below it.
    log_start: Offset,
    epochs: Vec<(LeaderEpoch, Offset)>,
    /// Offsets whose batches are on stable storage (what durable mode acks).
    flushed: Offset,
    /// What the recovery-point file says: at most `flushed`, and only past
    /// segments whose index files are synced too (`checkpoint`).
    recovery_point: Offset,
    /// Directory entries not yet fsynced: a segment file created since the
    /// last flush (in `dir`), and `dir` itself when the log created it (in
    /// its parent). As Kafka (KAFKA-12190), they are made durable by the
    /// first flush that needs them, so that creating a log costs no fsync:
    /// a new replica holds nothing acknowledged, and creating thousands at
    /// once must not stall the node for thousands of fsyncs.
    unsynced_dirs: UnsyncedDirs,
    /// This instance's id and truncation count, for [`FlushTicket`]s.
    log_id: u64,
    generation: u64,
    /// Why a write, truncation or checkpoint failed part way, if one did:
    /// the files may no longer be what this instance believes, so it takes
    /// no more writes and the node takes the replica offline (Kafka's
    /// `LogDirFailureChannel`). Until then nothing here panics on an I/O
    /// error (a truncation used to: one `EMFILE` stopped the process).
    failed: Option<String>,
    /// The first offset the cleaner has not cleaned (compacted topics;
    /// `cleaner-offset-checkpoint`), and when a tombstone it kept may go.
    cleaner_checkpoint: Offset,
    next_horizon_ms: Option<i64>,
    /// The log end and time of a pass that cleaned nothing.
    cleaner_stalled: Option<(Offset, i64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct UnsyncedDirs {
    dir: bool,
    parent: bool,
    /// Bumped whenever `dir` is set: a flush that synced the directory
    /// clears the flag only if no segment was created since it began.
    dir_seq: u64,
}

/// A flush taken out of the event loop ([`DiskLog::begin_flush`]): the
/// files and directories to fsync, run anywhere ([`FlushTicket::run`]),
/// then handed back to [`DiskLog::complete_flush`]. What it claims durable
/// is what was written when it began, and only if the log was not cut or
/// replaced meanwhile.
#[derive(Debug)]
pub struct FlushTicket {
    log_id: u64,
    generation: u64,
    end: Offset,
    /// (segment base offset, bytes written when the flush began).
    segments: Vec<(Offset, u64)>,
    files: Vec<Arc<File>>,
    dir: Option<(PathBuf, u64)>,
    parent: Option<PathBuf>,
    synced: bool,
    /// The first fsync error [`FlushTicket::run`] met, if any.
    error: Option<String>,
    /// Every file with unsynced bytes could be opened: the ticket covers the
    /// log end. If not (out of descriptors), it vouches for nothing new and
    /// the flush must be asked for again.
    complete: bool,
}

impl FlushTicket {
    /// The fsyncs, on whatever thread the caller likes. An error leaves the
    /// ticket unsynced: completing it then claims nothing.
    pub fn run(&mut self) {
        let mut error = None;
        let mut note = |r: io::Result<()>| {
            if let Err(e) = r {
                error.get_or_insert_with(|| e.to_string());
            }
        };
        for f in &self.files {
            note(crate::io::sync_data(f));
        }
        if let Some((d, _)) = &self.dir {
            note(crate::io::sync_dir(d));
        }
        if let Some(d) = &self.parent {
            note(crate::io::sync_dir(d));
        }
        self.synced = error.is_none();
        self.error = error;
        self.files.clear();
    }

    /// Did [`FlushTicket::run`] sync everything it had to?
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Does it cover everything written when it began?
    pub fn complete(&self) -> bool {
        self.complete
    }
}

/// Distinguishes log instances (a topic deleted and created again reuses
/// the directory): a flush ticket completes only on the log it began on.
static LOG_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl DiskLog {
    /// Opens (creating if needed) the log in `dir`, recovering from the
    /// recovery point: later segments are scanned, a torn or corrupt tail is
    /// cut, missing or damaged indexes are rebuilt. Nothing below the
    /// recovery point is dropped.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(DiskLog, RecoveryReport), LogError> {
        assert!(config.segment_bytes > 0 && config.index_interval_bytes > 0);
        let created = !dir.exists();
        fs::create_dir_all(dir).map_err(io_error)?;
        let mut report = RecoveryReport::default();
        compaction::complete_swaps(dir)?;
        let recovery_point_found: Option<Offset> = read_offset(&dir.join(RECOVERY_POINT));
        let recovery_point = recovery_point_found.unwrap_or(0);
        let mut bases: Vec<Offset> = fs::read_dir(dir)
            .map_err(io_error)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let base = name.strip_suffix(".log")?;
                (base.len() == 20).then(|| base.parse().ok()).flatten()
            })
            // Kafka offsets are i64: a name beyond is no segment of ours.
            .filter(|&base: &Offset| {
                let ours = base <= OFFSET_MAX;
                if !ours {
                    tracing::warn!(
                        "{}: ignoring {base:020}.log (beyond any offset)",
                        dir.display()
                    );
                }
                ours
            })
            .collect();
        bases.sort_unstable();
        let mut segments = Vec::new();
        let mut cut = false;
        for (i, &base) in bases.iter().enumerate() {
            if cut {
                // Everything after a corrupt point goes, as in Kafka.
                let _ = fs::remove_file(segment_path(dir, base, "log"));
                let _ = fs::remove_file(segment_path(dir, base, "index"));
                let _ = fs::remove_file(segment_path(dir, base, "timeindex"));
                continue;
            }
            let next_base = bases.get(i + 1).copied();
            let (segment, tail_cut) =
                Self::recover_segment(dir, base, next_base, recovery_point, &config, &mut report)?;
            // A short segment (a torn tail, or bytes lost with the power)
            // leaves a gap before the next one: the rest goes too.
            let gap = next_base.is_some_and(|n| segment.end_offset != n);
            cut = tail_cut || gap;
            segments.push(segment);
        }
        // A log without segments may sit in a directory someone else just
        // made (`partition_metadata::claim`): its entry is synced too.
        let mut unsynced_dirs = UnsyncedDirs {
            dir: false,
            parent: created || segments.is_empty(),
            dir_seq: 0,
        };
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0, &config.files).map_err(io_error)?);
            unsynced_dirs.dir = true;
        }
        report.segments = segments.len();
        let end = segments.last().map_or(0, |s| s.end_offset);
        let first_base = segments[0].base_offset;
        let log_start_found: Option<Offset> = read_offset(&dir.join(LOG_START));
        let mut log = DiskLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start: log_start_found.unwrap_or(first_base).clamp(first_base, end),
            epochs: Vec::new(),
            flushed: end,
            recovery_point: recovery_point_found.unwrap_or(0).min(end),
            unsynced_dirs,
            log_id: LOG_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            generation: 0,
            failed: None,
            cleaner_checkpoint: read_offset(&dir.join(compaction::CLEANER_CHECKPOINT)).unwrap_or(0),
            // Unknown after a restart: the next pass finds out.
            next_horizon_ms: Some(i64::MIN),
            cleaner_stalled: None,
        };
        compaction::remove_leftovers(dir);
        // A damaged or foreign file (too long, or not parsing) is rebuilt.
        let checkpoint =
            crate::storage::checkpoint::read_bounded(&dir.join(EPOCH_CHECKPOINT), EPOCHS_BYTES_MAX)
                .ok();
        log.epochs = match checkpoint.as_deref().and_then(decode_epochs) {
            Some(epochs) => epochs,
            None => log.epochs_from_batches().map_err(io_error)?,
        };
        log.epochs.retain(|&(_, start)| start < end);
        // Batches of a damaged segment below the recovery point (not
        // scanned) may go back in epoch or offset: keep only a history
        // that only goes forward, never trust one that does not.
        let mut forward: Vec<(LeaderEpoch, Offset)> = Vec::with_capacity(log.epochs.len());
        for (epoch, start) in log.epochs.drain(..) {
            if forward.last().is_none_or(|&(e, s)| epoch > e && start >= s) {
                forward.push((epoch, start));
            }
        }
        log.epochs = forward;
        // Each write below is skipped when the file already says it: a node
        // restarting with thousands of clean logs, or creating thousands of
        // new ones, must not pay four fsyncs per log.
        let epochs_found = checkpoint.unwrap_or_default();
        if encode_epochs(&log.epochs) != epochs_found
            && !(epochs_found.is_empty() && log.epochs.is_empty())
        {
            log.write_epochs()?;
        }
        // What recovery kept may still be only in the page cache (after a
        // process crash): fsync it, then move the recovery point, so the
        // next start scans only what is written from now on. A log that
        // ends where its recovery point says has nothing to recover.
        if recovery_point_found != Some(end) && !(recovery_point_found.is_none() && end == 0) {
            // Written even where the recovery kept less than the file
            // claims (a cut tail below it): a stale claim above the end
            // would make a later restart trust segments written after it.
            log.checkpoint_inner(true)?;
        } else {
            // Everything up to the recovery point was fsynced before it was written.
            for s in &mut log.segments {
                s.durable_bytes = s.size_bytes;
            }
        }
        // Records were deleted up to a start that recovery cut below (a
        // power loss took the tail): nothing readable is left, and the log
        // continues at that start rather than bring deleted offsets back.
        if log_start_found.is_some_and(|s| s > end) {
            log.try_truncate_fully_and_start_at(log_start_found.expect("checked"))?;
        }
        // A crash while the start moved (the start written, segments
        // wholly below it not yet removed): they go now.
        if log.segments.len() > 1 && log.segments[0].end_offset <= log.log_start {
            // Bounded: each round removes one segment; the last stays.
            while log.segments.len() > 1 && log.segments[0].end_offset <= log.log_start {
                remove_segment_files(&log.dir, log.segments[0].base_offset)?;
                log.segments.remove(0);
            }
            log.truncate_epochs_from_start()?;
            crate::io::sync_dir(&log.dir).map_err(io_error)?;
        }
        log.check_invariants();
        Ok((log, report))
    }

    fn recover_segment(
        dir: &Path,
        base: Offset,
        next_base: Option<Offset>,
        recovery_point: Offset,
        config: &LogConfig,
        report: &mut RecoveryReport,
    ) -> Result<(Segment, bool), LogError> {
        let open = |ext| {
            let path = segment_path(dir, base, ext);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            io::Result::Ok(config.files.adopt(path, file))
        };
        let log = open("log").map_err(io_error)?;
        let index = open("index").map_err(io_error)?;
        let timeindex = open("timeindex").map_err(io_error)?;
        let file_len = log
            .get()
            .and_then(|f| f.metadata())
            .map_err(io_error)?
            .len();
        let mut segment = Segment {
            base_offset: base,
            log,
            index,
            timeindex,
            time_entries: Vec::new(),
            index_written: 0,
            time_written: 0,
            size_bytes: file_len,
            end_offset: base,
            entries: Vec::new(),
            bytes_since_entry: 0,
            durable_bytes: file_len,
            index_dirty: false,
            first_timestamp_ms: None,
            max_timestamp_ms: i64::MIN,
            max_timestamp_rel: 0,
        };
        let below_recovery_point = next_base.is_some_and(|n| n <= recovery_point);
        if let Some(next) = next_base.filter(|_| below_recovery_point) {
            // Trusted: fsynced before the recovery point was written. Its
            // indexes are rebuilt from its batches only if those run from
            // its base to the next segment's; a segment that is not what
            // its name and the recovery point say is recovered like any
            // untrusted one (scanned and cut), never indexed from lies.
            segment.end_offset = next;
            let mut trusted = segment.load_index(file_len) && segment.load_time_index();
            if !trusted {
                let (headers, end, _) = segment.scan(0, file_len).map_err(io_error)?;
                if end == file_len && batches_follow(&headers, base, next) {
                    segment
                        .rebuild_index(&headers, config.index_interval_bytes)
                        .map_err(io_error)?;
                    report.indexes_rebuilt += 1;
                    trusted = true;
                }
            }
            if trusted {
                // A closed segment's time index ends with its largest timestamp.
                if let Some(&(t, o)) = segment.time_entries.last() {
                    (segment.max_timestamp_ms, segment.max_timestamp_rel) = (t, o);
                }
                return Ok((segment, false));
            }
            segment.end_offset = base;
            segment.entries.clear();
            segment.time_entries.clear();
        }
        report.segments_scanned += 1;
        // Past the recovery point nothing is known to be on stable storage.
        segment.durable_bytes = 0;
        let (mut headers, mut valid_end, mut why) = segment.scan(0, file_len).map_err(io_error)?;
        // Base offsets are outside the CRC: a damaged one shows as a gap.
        let mut expected = base;
        if let Some(k) = headers.iter().position(|(_, h)| {
            let gap = h.base_offset != expected;
            expected = h.end_offset();
            gap
        }) {
            valid_end = headers[k].0;
            why = Some(format!(
                "at byte {valid_end}: offset {} breaks the sequence",
                headers[k].1.base_offset
            ));
            headers.truncate(k);
        }
        segment.end_offset = headers.last().map_or(base, |(_, h)| h.end_offset());
        let cut = valid_end < file_len;
        if cut {
            report.truncated_bytes += file_len - valid_end;
            report.corruption = why;
            segment
                .log
                .get()
                .and_then(|f| f.set_len(valid_end))
                .map_err(io_error)?;
            segment.size_bytes = valid_end;
            segment.durable_bytes = 0;
        }
        segment
            .rebuild_index(&headers, config.index_interval_bytes)
            .map_err(io_error)?;
        Ok((segment, cut))
    }

    fn epochs_from_batches(&self) -> io::Result<Vec<(LeaderEpoch, Offset)>> {
        let mut epochs: Vec<(LeaderEpoch, Offset)> = Vec::new();
        for s in &self.segments {
            let (headers, _, _) = s.scan(0, s.size_bytes)?;
            for (_, h) in headers {
                if epochs.last().is_none_or(|&(e, _)| h.leader_epoch > e) {
                    epochs.push((h.leader_epoch, h.base_offset));
                }
            }
        }
        Ok(epochs)
    }

    fn write_epochs(&self) -> Result<(), LogError> {
        write_atomically(
            &self.dir.join(EPOCH_CHECKPOINT),
            &encode_epochs(&self.epochs),
        )
        .map_err(io_error)
    }

    fn active(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log has an active segment")
    }

    fn check_invariants(&self) {
        debug_assert!(!self.segments.is_empty());
        debug_assert!(
            self.segments[0].base_offset <= self.log_start && self.log_start <= self.end_offset()
        );
        debug_assert!(self
            .segments
            .windows(2)
            .all(|w| w[0].end_offset == w[1].base_offset));
        debug_assert!(self.flushed <= self.end_offset());
        debug_assert!(self
            .epochs
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    fn note_epoch(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> Result<(), LogError> {
        if self.epochs.last().is_none_or(|&(latest, _)| epoch > latest) {
            self.epochs.push((epoch, start_offset));
            self.write_epochs()?;
        }
        Ok(())
    }

    /// The topic's `segment.bytes` and `segment.ms` from now on (the next
    /// append rolls by them).
    pub fn set_roll(&mut self, segment_bytes: u64, roll_ms: Option<u64>) {
        assert!(segment_bytes > 0);
        self.config.segment_bytes = segment_bytes;
        self.config.roll_ms = roll_ms;
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The base offset of the active segment (it changes when the log rolls).
    pub fn active_base_offset(&self) -> Offset {
        self.segments.last().expect("active segment").base_offset
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Why this log failed, if it did (see `failed`).
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Notes a failure part way through a change of the files.
    fn note_failure<T>(&mut self, result: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(e) = &result {
            self.failed.get_or_insert_with(|| format!("{e:?}"));
        }
        result
    }

    /// A log that failed takes no more writes.
    fn check_not_failed(&self) -> Result<(), LogError> {
        match &self.failed {
            Some(why) => Err(LogError::Io(format!("the log failed earlier: {why}"))),
            None => Ok(()),
        }
    }

    /// Writes batches whose headers are validated and whose offsets follow
    /// the log end, rolling the segment first if it is full.
    fn write(&mut self, bytes: &[u8], headers: &[BatchHeader]) -> Result<AppendInfo, LogError> {
        self.check_not_failed()?;
        let result = self.write_unchecked(bytes, headers);
        self.note_failure(result)
    }

    fn write_unchecked(
        &mut self,
        bytes: &[u8],
        headers: &[BatchHeader],
    ) -> Result<AppendInfo, LogError> {
        let first_offset = self.end_offset();
        let segment_bytes = self.config.segment_bytes;
        let roll_ms = self.config.roll_ms;
        let newest_ms = headers
            .iter()
            .map(|h| h.max_timestamp_ms)
            .max()
            .unwrap_or(i64::MIN);
        let active = self.active();
        let too_old = match (roll_ms, active.first_timestamp_ms) {
            (Some(ms), Some(first)) => newest_ms.saturating_sub(first) >= ms as i64,
            _ => false,
        };
        let too_big = active.size_bytes + bytes.len() as u64 > segment_bytes;
        // The indexes store offsets relative to the segment's base in 32
        // bits: roll before they would not fit (Kafka: Int.MaxValue).
        let last_end = headers.last().map_or(first_offset, |h| h.end_offset());
        let too_far = last_end - active.base_offset > RELATIVE_OFFSET_MAX;
        if active.size_bytes > 0 && (too_big || too_old || too_far) {
            active.close().map_err(io_error)?;
            let segment =
                Segment::create(&self.dir, first_offset, &self.config.files).map_err(io_error)?;
            self.segments.push(segment);
            self.unsynced_dirs.dir = true;
            self.unsynced_dirs.dir_seq += 1;
        }
        let interval = self.config.index_interval_bytes;
        self.active()
            .append(bytes, headers, interval)
            .map_err(io_error)?;
        // Only once the batches are in: an append that failed part way must
        // not leave epochs in the cache for offsets the log does not hold
        // (the simulation found one, and the next append broke the cache's
        // order).
        for h in headers {
            self.note_epoch(h.leader_epoch, h.base_offset)?;
        }
        self.check_invariants();
        Ok(AppendInfo {
            first_offset,
            end_offset: self.end_offset(),
        })
    }

    fn check_epochs(&self, headers: &[BatchHeader]) -> Result<(), LogError> {
        let mut latest = self.latest_epoch().unwrap_or(0);
        for h in headers {
            if h.leader_epoch < latest {
                return Err(LogError::EpochRegression {
                    latest,
                    got: h.leader_epoch,
                });
            }
            latest = h.leader_epoch;
        }
        Ok(())
    }

    /// Deletes whole segments that retention no longer keeps — older than
    /// `retention_ms` (by their newest record) or beyond `retention_bytes`
    /// (oldest first) — never the active segment and never one holding
    /// offsets at or above `high_watermark`. Advances the log start offset.
    /// Returns how many segments were deleted.
    pub fn enforce_retention(
        &mut self,
        now_ms: i64,
        policy: RetentionPolicy,
        high_watermark: Offset,
    ) -> Result<usize, LogError> {
        self.check_not_failed()?;
        let result = self.enforce_retention_unchecked(now_ms, policy, high_watermark);
        self.note_failure(result)
    }

    fn enforce_retention_unchecked(
        &mut self,
        now_ms: i64,
        policy: RetentionPolicy,
        high_watermark: Offset,
    ) -> Result<usize, LogError> {
        let mut total: u64 = self.segments.iter().map(|s| s.size_bytes).sum();
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            if oldest.end_offset > high_watermark {
                break;
            }
            let expired = policy
                .retention_ms
                .is_some_and(|ms| oldest.max_timestamp_ms < now_ms.saturating_sub(ms as i64));
            let oversize = policy
                .retention_bytes
                .is_some_and(|max| total - oldest.size_bytes >= max);
            if !expired && !oversize {
                break;
            }
            // Out of the list only once its files are gone.
            remove_segment_files(&self.dir, oldest.base_offset)?;
            let s = self.segments.remove(0);
            total -= s.size_bytes;
            deleted += 1;
        }
        if deleted > 0 {
            self.log_start = self.log_start.max(self.segments[0].base_offset);
            self.truncate_epochs_from_start()?;
            crate::io::sync_dir(&self.dir).map_err(io_error)?;
        }
        self.check_invariants();
        Ok(deleted)
    }

    /// Kafka's `truncateFromStart` of the epoch cache: the epoch covering
    /// the log start now starts there; older ones go.
    fn truncate_epochs_from_start(&mut self) -> Result<(), LogError> {
        let start = self.log_start;
        let before = self.epochs.clone();
        while self.epochs.len() > 1 && self.epochs[1].1 <= start {
            self.epochs.remove(0);
        }
        if let Some(first) = self.epochs.first_mut() {
            first.1 = first.1.max(start);
        }
        if self.epochs != before {
            self.write_epochs()?;
        }
        Ok(())
    }

    /// [`PartitionLog::advance_start_offset`]'s work: the new start is
    /// written (and fsynced) first, then whole segments below it go, oldest
    /// first, each out of the list once its files are gone. A crash part
    /// way leaves the start recorded and files that reopening drops.
    fn try_advance_start_offset(&mut self, start_offset: Offset) -> Result<(), LogError> {
        let start_offset = start_offset.min(self.end_offset());
        if start_offset <= self.log_start {
            return Ok(());
        }
        write_atomically(
            &self.dir.join(LOG_START),
            start_offset.to_string().as_bytes(),
        )
        .map_err(io_error)?;
        self.log_start = start_offset;
        // Bounded: each round removes one segment; the active one stays.
        while self.segments.len() > 1 && self.segments[0].end_offset <= start_offset {
            remove_segment_files(&self.dir, self.segments[0].base_offset)?;
            self.segments.remove(0);
        }
        self.truncate_epochs_from_start()?;
        crate::io::sync_dir(&self.dir).map_err(io_error)?;
        self.flushed = self.flushed.max(start_offset);
        self.check_invariants();
        Ok(())
    }

    /// Where the batches a read would return lie: whole batches starting
    /// with the one holding `from`, none reaching `until`, at most
    /// `max_bytes` but at least one batch. The network layer sends the
    /// slice straight from the file (`sendfile`), without copying it
    /// through user space. `None` at the log end.
    pub fn locate(
        &self,
        from: Offset,
        until: Offset,
        max_bytes: usize,
    ) -> Result<Option<FileSlice>, LogError> {
        let Some((i, position, len)) = self.span(from, until, max_bytes)? else {
            return Ok(None);
        };
        let file = self.segments[i].log.get().map_err(io_error)?;
        Ok(Some(FileSlice {
            file,
            position,
            len,
        }))
    }

    /// The segment holding `from` and the byte position of the batch
    /// holding it; `None` at the log end, an error outside the log.
    fn position_of(&self, from: Offset) -> Result<Option<(usize, u64)>, LogError> {
        let (start, end) = (self.start_offset(), self.end_offset());
        if from < start || from > end {
            return Err(LogError::OffsetOutOfRange {
                requested: from,
                start,
                end,
            });
        }
        if from == end {
            return Ok(None);
        }
        let i = self.segments.partition_point(|s| s.base_offset <= from) - 1;
        let position = self.segments[i].position_of(from).map_err(io_error)?;
        Ok(Some((i, position)))
    }

    /// Where [`DiskLog::locate`]'s batches are: (segment index, byte
    /// position, length), `None` at the log end.
    fn span(
        &self,
        from: Offset,
        until: Offset,
        max_bytes: usize,
    ) -> Result<Option<(usize, u64, u64)>, LogError> {
        let Some((i, first)) = self.position_of(from)? else {
            return Ok(None);
        };
        let s = &self.segments[i];
        let mut last = s.skip_by_index(first, until, max_bytes);
        let log = s.log.get().map_err(io_error)?;
        // Header by header from there, bounded by the segment's size.
        while last < s.size_bytes {
            let h = batch::validate_header_only(&read_header(&log, last).map_err(io_error)?);
            if last + h.size_bytes as u64 > s.size_bytes {
                // Only a damaged file says a batch runs past its end.
                return Err(LogError::Corrupt(format!(
                    "segment {}: a batch at byte {last} runs past the file's {} bytes",
                    s.base_offset, s.size_bytes
                )));
            }
            let taken = last - first;
            if h.end_offset() > until
                || (taken > 0 && taken + h.size_bytes as u64 > max_bytes as u64)
            {
                break;
            }
            last += h.size_bytes as u64;
        }
        if last == first {
            return Ok(None);
        }
        Ok(Some((i, first, last - first)))
    }

    /// The raw headers of the batches from the one holding `from` up to
    /// `until`, at most `batches_max` of them and within one segment (call
    /// again from the last one's end): one 61-byte read per batch and no
    /// copy of the records, for callers that need only header fields (the
    /// producer table: producer id, epoch and first sequence are there).
    /// The batches were validated when they were appended.
    pub fn batch_headers(
        &self,
        from: Offset,
        until: Offset,
        batches_max: usize,
    ) -> Result<Vec<[u8; HEADER_BYTES]>, LogError> {
        let mut out = Vec::new();
        let Some((i, mut position)) = self.position_of(from)? else {
            return Ok(out);
        };
        let s = &self.segments[i];
        let log = s.log.get().map_err(io_error)?;
        // Bounded by batches_max and by the segment's size.
        while position < s.size_bytes && out.len() < batches_max {
            let raw = read_header(&log, position).map_err(io_error)?;
            let h = batch::validate_header_only(&raw);
            if h.end_offset() > until {
                break;
            }
            position += h.size_bytes as u64;
            out.push(raw);
        }
        Ok(out)
    }

    /// Is anything left for a background flush: unsynced data or index
    /// bytes, or a recovery point behind the log end?
    pub fn needs_write_back(&self) -> bool {
        self.recovery_point < self.end_offset()
            || self
                .segments
                .iter()
                .any(|s| s.durable_bytes < s.size_bytes || s.index_dirty)
    }

    /// Handles on the files holding unsynced bytes, for a caller that
    /// pushes them to disk off its own thread first (then the checkpoint
    /// finds little left to do). Index entries not yet in their files are
    /// written first, so that their sync happens there too. A file that
    /// cannot be opened or written now is left to the checkpoint.
    pub fn unflushed_files(&mut self) -> Vec<Arc<File>> {
        let mut out = Vec::new();
        for s in &mut self.segments {
            if s.durable_bytes < s.size_bytes {
                out.extend(s.log.get().ok());
            }
            if s.index_dirty && s.write_indexes().is_ok() {
                out.extend(s.index.get().ok());
                out.extend(s.timeindex.get().ok());
            }
        }
        out
    }

    /// Kafka's ListOffsets by timestamp: the first offset whose batch's
    /// max timestamp is at or after `timestamp_ms`, `None` if none is.
    /// The first batch whose max timestamp is at or after `timestamp_ms`.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<Offset>, LogError> {
        for s in &self.segments {
            if s.max_timestamp_ms >= timestamp_ms {
                let found = s.offset_for_timestamp(timestamp_ms).map_err(io_error)?;
                // Nothing below the log start is found (Kafka searches from it).
                return Ok(found.map(|o| o.max(self.log_start)));
            }
        }
        Ok(None)
    }

    /// Kafka's `fetchOffsetByTimestamp` for a target time: the offset and
    /// timestamp of the first *record* whose timestamp is at or after
    /// `timestamp_ms` (the time index finds its batch; the batch's records
    /// are read to find the record).
    pub fn record_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, LogError> {
        let Some(mut from) = self.offset_for_timestamp(timestamp_ms)? else {
            return Ok(None);
        };
        // Onward from the batch the index found (Kafka's
        // `searchForTimestamp`): below the log start, or a batch whose
        // large timestamps all belong to deleted records, it is not there
        // yet. Bounded: each round moves past one batch.
        let end = self.end_offset();
        while from < end {
            let batch = self.read(from, end, 1)?;
            let Some((header, bytes)) = batch.batches()?.into_iter().next() else {
                return Ok(None);
            };
            let timestamps = crate::kafka::batch_check::record_timestamps(&bytes)
                .map_err(|e| LogError::Corrupt(e.message()))?;
            let found = timestamps
                .iter()
                .map(|&(delta, t)| (header.base_offset + delta as Offset, t))
                .find(|&(o, t)| o >= self.log_start && t >= timestamp_ms);
            if found.is_some() {
                return Ok(found);
            }
            from = header.end_offset();
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the first record that has it
    /// (ListOffsets' MAX_TIMESTAMP, KIP-734), if the log has records.
    pub fn max_timestamp_record(&self) -> Result<Option<(Offset, i64)>, LogError> {
        let Some(max) = self
            .segments
            .iter()
            .map(|s| s.max_timestamp_ms)
            .filter(|&t| t != i64::MIN)
            .max()
        else {
            return Ok(None);
        };
        self.record_for_timestamp(max)
    }

    /// Size of the log's segments in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Simulates a power loss: every byte not fsynced is gone. For tests of
    /// recovery; the log is closed.
    pub fn lose_unflushed_bytes(self) -> io::Result<()> {
        for s in &self.segments {
            s.log.get()?.set_len(s.durable_bytes)?;
        }
        Ok(())
    }
}

impl PartitionLog for DiskLog {
    type Records = BatchBytes;

    fn start_offset(&self) -> Offset {
        self.log_start
    }

    fn end_offset(&self) -> Offset {
        self.segments.last().expect("active segment").end_offset
    }

    fn flushed_offset(&self) -> Offset {
        self.flushed
    }

    fn append_as_leader(
        &mut self,
        records: BatchBytes,
        leader_epoch: LeaderEpoch,
    ) -> Result<AppendInfo, LogError> {
        let batches = records.batches()?;
        if batches.is_empty() {
            return Err(LogError::Empty);
        }
        if let Some(latest) = self.latest_epoch().filter(|&l| leader_epoch < l) {
            return Err(LogError::EpochRegression {
                latest,
                got: leader_epoch,
            });
        }
        // One copy, to patch offsets and epoch in place (outside the CRC).
        let mut bytes = BytesMut::from(&records.0[..]);
        let mut headers = Vec::with_capacity(batches.len());
        let mut offset = self.end_offset();
        let mut at = 0usize;
        for (h, _) in &batches {
            batch::patch(&mut bytes[at..at + h.size_bytes], offset, leader_epoch);
            headers.push(BatchHeader {
                base_offset: offset,
                leader_epoch,
                ..*h
            });
            offset += Offset::from(h.record_count);
            at += h.size_bytes;
        }
        self.write(&bytes, &headers)
    }

    fn append_as_follower(&mut self, records: BatchBytes) -> Result<AppendInfo, LogError> {
        let batches = records.batches()?;
        if batches.is_empty() {
            return Err(LogError::Empty);
        }
        let headers: Vec<BatchHeader> = batches.iter().map(|(h, _)| *h).collect();
        let mut expected = self.end_offset();
        for h in &headers {
            if h.base_offset != expected {
                return Err(LogError::NonContiguous {
                    expected,
                    got: h.base_offset,
                });
            }
            expected = h.end_offset();
        }
        self.check_epochs(&headers)?;
        self.write(&records.0, &headers)
    }

    fn truncate_to(&mut self, end_offset: Offset) {
        // A failed truncation leaves the files in an unknown state: the log
        // is marked failed, and the node stops serving it (`failure`).
        if self.failed.is_none() {
            let result = self.try_truncate_to(end_offset);
            let _ = self.note_failure(result);
        }
    }

    fn truncate_fully_and_start_at(&mut self, start_offset: Offset) {
        if self.failed.is_none() {
            let result = self.try_truncate_fully_and_start_at(start_offset);
            let _ = self.note_failure(result);
        }
    }

    fn advance_start_offset(&mut self, start_offset: Offset) {
        // A failure part way marks the log failed (the node takes the
        // replica offline), as for truncations.
        if self.failed.is_none() {
            let result = self.try_advance_start_offset(start_offset);
            let _ = self.note_failure(result);
        }
    }

    fn read(&self, from: Offset, until: Offset, max_bytes: usize) -> Result<BatchBytes, LogError> {
        let Some((i, position, len)) = self.span(from, until, max_bytes)? else {
            return Ok(BatchBytes::default());
        };
        let mut buf = vec![0u8; len as usize];
        self.segments[i]
            .log
            .get()
            .and_then(|f| f.read_exact_at(&mut buf, position))
            .map_err(io_error)?;
        // `from` inside a run of empty batches the cleaner merged (a
        // follower that was away while they were cleaned): it gets the run
        // from its own end on, which it can append.
        if let Some((head, replaced)) = super::cleaner::empty_batch_from(&buf, from) {
            let mut out = head;
            out.extend_from_slice(&buf[replaced.min(buf.len())..]);
            buf = out;
        }
        Ok(BatchBytes(Bytes::from(buf)))
    }

    fn assign_epoch_start(&mut self, epoch: LeaderEpoch, start_offset: Offset) {
        assert!(start_offset <= self.end_offset());
        let result = self.note_epoch(epoch, start_offset);
        let _ = self.note_failure(result);
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|&(e, _)| e)
    }

    fn epoch_of_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        if offset >= self.end_offset() {
            return None;
        }
        self.epochs
            .iter()
            .rev()
            .find(|&&(_, start)| start <= offset)
            .map(|&(e, _)| e)
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<EpochEndOffset> {
        end_offset_for_epoch(&self.epochs, self.end_offset(), epoch)
    }

    /// Makes every appended batch durable: an fsync of each segment file
    /// with unsynced bytes (in practice the active one) and of new
    /// directory entries. The index files and the recovery point wait for
    /// the next [`DiskLog::checkpoint`]: recovery rebuilds the index of every
    /// segment past the recovery point from its batches, so an ack needs
    /// one fsync, not four (log, index, recovery-point file and its rename).
    fn flush(&mut self) -> Result<Offset, LogError> {
        self.check_not_failed()?;
        let result = self.flush_unchecked();
        self.note_failure(result)
    }
}

impl DiskLog {
    /// [`PartitionLog::flush`]'s work. A failed fsync marks the log failed:
    /// Linux may have dropped the pages it could not write, and a later
    /// fsync that succeeds would vouch for them.
    fn flush_unchecked(&mut self) -> Result<Offset, LogError> {
        for s in &mut self.segments {
            if s.durable_bytes < s.size_bytes {
                let log = s.log.get().map_err(io_error)?;
                crate::io::sync_data(&log).map_err(io_error)?;
                s.durable_bytes = s.size_bytes;
            }
        }
        // The files' data is durable; now their names (and the log's own
        // directory, if it was new), so recovery finds them.
        if self.unsynced_dirs.dir {
            crate::io::sync_dir(&self.dir).map_err(io_error)?;
            self.unsynced_dirs.dir = false;
        }
        if self.unsynced_dirs.parent {
            if let Some(parent) = self.dir.parent() {
                crate::io::sync_dir(parent).map_err(io_error)?;
            }
            self.unsynced_dirs.parent = false;
        }
        let end = self.end_offset();
        self.flushed = end;
        Ok(end)
    }
}

impl DiskLog {
    /// What a flush now would sync, taken out so the fsyncs can run off the
    /// event loop (shared handles: the segments may roll meanwhile).
    pub fn begin_flush(&self) -> FlushTicket {
        let mut segments = Vec::new();
        let mut files = Vec::new();
        for s in self
            .segments
            .iter()
            .filter(|s| s.durable_bytes < s.size_bytes)
        {
            if let Ok(f) = s.log.get() {
                segments.push((s.base_offset, s.size_bytes));
                files.push(f);
            }
        }
        let complete = segments.len()
            == self
                .segments
                .iter()
                .filter(|s| s.durable_bytes < s.size_bytes)
                .count();
        FlushTicket {
            log_id: self.log_id,
            generation: self.generation,
            // A file that could not be opened (out of descriptors):
            // the ticket vouches for nothing new, the next flush retries.
            end: if complete {
                self.end_offset()
            } else {
                self.flushed
            },
            complete,
            segments,
            files,
            dir: self
                .unsynced_dirs
                .dir
                .then(|| (self.dir.clone(), self.unsynced_dirs.dir_seq)),
            parent: self
                .unsynced_dirs
                .parent
                .then(|| self.dir.parent().map(Path::to_path_buf))
                .flatten(),
            synced: false,
            error: None,
        }
    }

    /// Takes a run ticket back: the bytes it synced are durable, and the
    /// durable end moves to where the log ended when it began. `None` if
    /// it failed, or the log was cut or replaced since (flush again).
    pub fn complete_flush(&mut self, ticket: FlushTicket) -> Option<Offset> {
        if ticket.log_id != self.log_id {
            return None;
        }
        if let Some(e) = &ticket.error {
            // Linux may have dropped the pages it could not write (marked
            // clean, the error reported once): a later fsync that succeeds
            // would vouch for bytes that are not on disk. The log is failed
            // and its replica goes offline (Kafka's LogDirFailureChannel).
            self.failed
                .get_or_insert_with(|| format!("fsync failed: {e}"));
            return None;
        }
        if !ticket.synced || ticket.generation != self.generation {
            return None;
        }
        for (base, size) in ticket.segments {
            if let Some(s) = self.segments.iter_mut().find(|s| s.base_offset == base) {
                s.durable_bytes = s.durable_bytes.max(size.min(s.size_bytes));
            }
        }
        if ticket
            .dir
            .is_some_and(|(_, seq)| seq == self.unsynced_dirs.dir_seq)
        {
            self.unsynced_dirs.dir = false;
        }
        if ticket.parent.is_some() {
            self.unsynced_dirs.parent = false;
        }
        self.flushed = self.flushed.max(ticket.end.min(self.end_offset()));
        self.check_invariants();
        Some(self.flushed)
    }

    /// Flushes, syncs the index files written since the last checkpoint,
    /// then moves the recovery point to the log end, so the next start
    /// scans only what comes after it (Kafka's recovery-point checkpoint,
    /// on the background flush's timer). Returns the durable end.
    pub fn checkpoint(&mut self) -> Result<Offset, LogError> {
        self.check_not_failed()?;
        let result = self.checkpoint_inner(false);
        self.note_failure(result)
    }

    /// [`DiskLog::checkpoint`]; `rewrite` writes the recovery-point file
    /// even if this instance believes it already says the end.
    fn checkpoint_inner(&mut self, rewrite: bool) -> Result<Offset, LogError> {
        let end = self.flush()?;
        for s in &mut self.segments {
            if s.index_dirty {
                s.write_indexes().map_err(io_error)?;
                for file in [&s.index, &s.timeindex] {
                    let file = file.get().map_err(io_error)?;
                    crate::io::sync_data(&file).map_err(io_error)?;
                }
                s.index_dirty = false;
            }
        }
        if rewrite
            || end != self.recovery_point
            || fs::metadata(self.dir.join(RECOVERY_POINT)).is_err()
        {
            write_atomically(&self.dir.join(RECOVERY_POINT), end.to_string().as_bytes())
                .map_err(io_error)?;
            self.recovery_point = end;
        }
        Ok(end)
    }

    /// Where the recovery-point file says recovery may start scanning.
    pub fn recovery_point(&self) -> Offset {
        self.recovery_point
    }

    /// Deletes every segment, oldest first (a crash part way leaves a
    /// shorter log that is still whole, which the follower then cuts again),
    /// and starts one empty segment at `start_offset`.
    fn try_truncate_fully_and_start_at(&mut self, start_offset: Offset) -> Result<(), LogError> {
        assert!(
            start_offset > self.end_offset() || self.log_start == self.end_offset(),
            "a log with records restarts only past its end (else it would reuse offsets)"
        );
        self.restart_empty_at(start_offset)
    }

    /// Drops every segment and the epoch cache and starts one empty
    /// segment at `start_offset`: past the log end (above), or at the log
    /// start when a truncation reaches it.
    fn restart_empty_at(&mut self, start_offset: Offset) -> Result<(), LogError> {
        self.generation += 1;
        // The new start first: a crash anywhere below leaves it recorded,
        // and reopening continues there (a start above the end restarts
        // the log at it; segments wholly below it are dropped).
        write_atomically(
            &self.dir.join(LOG_START),
            start_offset.to_string().as_bytes(),
        )
        .map_err(io_error)?;
        // The epoch cache next: one that outlived a crash part way would
        // describe batches no longer there.
        self.epochs.clear();
        self.write_epochs()?;
        // A failure part way leaves a log with segments (the node takes it
        // offline), never none (found by review: a failed restart of the
        // log then panicked on the missing active segment). A segment
        // already based at the new start is cut empty in place: creating
        // it again would reopen its file, and removing "the old one" would
        // then unlink the new one's (found by review, 2026-12-03).
        match self
            .segments
            .iter()
            .position(|s| s.base_offset == start_offset)
        {
            Some(i) => {
                self.segments[i]
                    .truncate_to_position(0, start_offset)
                    .map_err(io_error)?;
                // Bounded: each round removes one segment.
                while self.segments.len() > 1 {
                    let j = usize::from(self.segments[0].base_offset == start_offset);
                    remove_segment_files(&self.dir, self.segments[j].base_offset)?;
                    self.segments.remove(j);
                }
            }
            None => {
                let new = Segment::create(&self.dir, start_offset, &self.config.files)
                    .map_err(io_error)?;
                self.segments.push(new);
                // Bounded: each round removes one segment.
                while self.segments.len() > 1 {
                    remove_segment_files(&self.dir, self.segments[0].base_offset)?;
                    self.segments.remove(0);
                }
            }
        }
        crate::io::sync_dir(&self.dir).map_err(io_error)?;
        self.log_start = start_offset;
        self.flushed = start_offset;
        self.recovery_point = start_offset;
        write_atomically(
            &self.dir.join(RECOVERY_POINT),
            start_offset.to_string().as_bytes(),
        )
        .map_err(io_error)?;
        self.check_invariants();
        Ok(())
    }

    fn try_truncate_to(&mut self, end_offset: Offset) -> Result<(), LogError> {
        // A flush begun before the cut must not vouch for what is written
        // after it at the same offsets.
        self.generation += 1;
        if end_offset < self.log_start {
            // Kafka's `truncateTo` below the log start: the log restarts,
            // empty, at the target (its start moves down with it).
            return self.restart_empty_at(end_offset);
        }
        if end_offset == self.log_start && self.log_start > self.segments[0].base_offset {
            // Batches are atomic: cutting at a start inside a batch would
            // end the log below its start. Nothing readable is left.
            return self.restart_empty_at(end_offset);
        }
        if end_offset < self.end_offset() {
            // Drop whole segments past the new end (keeping the first).
            while self.segments.len() > 1
                && self.segments.last().expect("non-empty").base_offset >= end_offset
            {
                let s = self.segments.pop().expect("non-empty");
                remove_segment_files(&self.dir, s.base_offset)?;
            }
            let active = self.active();
            // Batches are atomic: one straddling the new end goes too.
            let position = active.position_of(end_offset).map_err(io_error)?;
            let (headers, _, _) = active.scan(0, position).map_err(io_error)?;
            let new_end = headers
                .last()
                .map_or(active.base_offset, |(_, h)| h.end_offset());
            let position = headers.last().map_or(0, |(p, h)| p + h.size_bytes as u64);
            active
                .truncate_to_position(position, new_end)
                .map_err(io_error)?;
            crate::io::sync_dir(&self.dir).map_err(io_error)?;
        }
        if self.end_offset() < self.log_start {
            // The cut took the batch holding the start (the target lay
            // inside it): nothing readable is left, as in the model's log.
            return self.restart_empty_at(self.log_start);
        }
        let end = self.end_offset();
        let before = self.epochs.len();
        self.epochs.retain(|&(_, start)| start < end);
        if self.epochs.len() != before {
            self.write_epochs()?;
        }
        self.flushed = self.flushed.min(end);
        if end < self.recovery_point {
            // The recovery point must not claim offsets that are gone, or a
            // later recovery would trust bytes written after them unchecked.
            self.recovery_point = end;
            write_atomically(&self.dir.join(RECOVERY_POINT), end.to_string().as_bytes())
                .map_err(io_error)?;
        }
        self.check_invariants();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(log: &mut DiskLog, timestamp_ms: i64) {
        let b = batch::build(1, &[0u8; 100], timestamp_ms);
        log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
    }

    /// Few enough descriptors that the tests' logs (many small segments)
    /// have their files closed and reopened all the time.
    fn tiny_budget() -> FileBudget {
        FileBudget::new(crate::storage::file_cache::CAPACITY_MIN)
    }

    fn small() -> LogConfig {
        LogConfig {
            segment_bytes: 400,
            index_interval_bytes: 100,
            roll_ms: None,
            files: tiny_budget(),
        }
    }

    proptest::proptest! {
        /// The index skip in `span` finds what a header-by-header walk
        /// finds: whole batches from the one holding `from`, none reaching
        /// past `until`, within `max_bytes` but at least one.
        #[test]
        fn locate_matches_a_walk_of_every_header(
            batches in proptest::collection::vec((1u32..5, 0usize..300), 1..40),
            interval in 1u64..600,
            from_pick in 0usize..1000,
            until_pick in 0usize..1000,
            max_bytes in 1usize..3000,
        ) {
            let d = tempfile::tempdir().unwrap();
            let config = LogConfig {
                segment_bytes: 1 << 20,
                index_interval_bytes: interval,
                roll_ms: None,
                files: tiny_budget(),
            };
            let (mut log, _) = DiskLog::open(d.path(), config).unwrap();
            // (base offset, end offset, position, size) of each batch.
            let mut laid = Vec::new();
            let mut position = 0u64;
            for (i, &(count, payload)) in batches.iter().enumerate() {
                let b = batch::build(count, &vec![7u8; payload], i as i64);
                let base = log.end_offset();
                log.append_as_leader(BatchBytes(b.clone().into()), 1).unwrap();
                laid.push((base, log.end_offset(), position, b.len() as u64));
                position += b.len() as u64;
            }
            let end = log.end_offset();
            let from = (from_pick as u64) % (end + 1);
            let until = from + (until_pick as u64) % (end - from + 1);
            let mut expected: Option<(u64, u64)> = None;
            for &(_, batch_end, at, size) in laid.iter().filter(|b| b.1 > from) {
                if batch_end > until {
                    break;
                }
                match expected.as_mut() {
                    None => expected = Some((at, size)),
                    Some((_, len)) if *len + size <= max_bytes as u64 => *len += size,
                    Some(_) => break,
                }
            }
            let got = log
                .locate(from, until, max_bytes)
                .unwrap()
                .map(|slice| (slice.position, slice.len));
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_reopen_below_the_recovery_point_rewrites_it() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..12 {
            append(&mut log, t);
        }
        log.checkpoint().unwrap();
        let last = log.segments.last().unwrap().base_offset;
        drop(log);
        // The last segment loses its tail (a torn write found on restart).
        let path = segment_path(d.path(), last, "log");
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 10).unwrap();
        let (log, report) = DiskLog::open(d.path(), small()).unwrap();
        assert!(log.end_offset() < 12, "{report:?}");
        let written: u64 = std::fs::read_to_string(d.path().join(RECOVERY_POINT))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            written,
            log.end_offset(),
            "the recovery point never claims more than the log holds"
        );
    }

    #[test]
    fn a_roll_right_at_the_recovery_point_syncs_the_closed_segments_indexes() {
        let d = tempfile::tempdir().unwrap();
        // Two batches a segment; index entries only at a segment's start.
        let config = LogConfig {
            segment_bytes: 400,
            index_interval_bytes: 4096,
            roll_ms: None,
            files: tiny_budget(),
        };
        let (mut log, _) = DiskLog::open(d.path(), config.clone()).unwrap();
        append(&mut log, 0);
        append(&mut log, 1);
        log.checkpoint().unwrap();
        assert!(log.segments.iter().all(|s| !s.index_dirty));
        // This batch rolls at the recovery point: the closed segment lies
        // below it, so recovery will trust its index files as they are.
        // They are written and synced by the roll, its time index closed
        // with its largest timestamp (1), not left to a checkpoint.
        let fsyncs = crate::io::fsyncs();
        append(&mut log, 2);
        assert_eq!(log.segment_count(), 2);
        assert!(!log.segments[0].index_dirty);
        assert!(crate::io::fsyncs() >= fsyncs + 2);
        let timeindex = std::fs::read(segment_path(d.path(), 0, "timeindex")).unwrap();
        let last = &timeindex[timeindex.len() - TIME_ENTRY_BYTES..];
        assert_eq!(i64::from_be_bytes(last[..8].try_into().unwrap()), 1);
        drop(log);
        let (log, report) = DiskLog::open(d.path(), config).unwrap();
        assert_eq!(report.indexes_rebuilt, 0);
        assert_eq!(log.segments[0].max_timestamp_ms, 1);
    }

    #[test]
    fn many_logs_share_a_small_budget_and_lose_nothing_across_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let budget = tiny_budget();
        let config = LogConfig {
            files: budget.clone(),
            ..small()
        };
        let dirs: Vec<PathBuf> = (0..12).map(|i| d.path().join(format!("t-{i}"))).collect();
        let mut logs: Vec<DiskLog> = dirs
            .iter()
            .map(|dir| DiskLog::open(dir, config.clone()).unwrap().0)
            .collect();
        // Round-robin appends: every log rolls segments while the budget
        // keeps closing the others' files.
        for round in 0..8 {
            for log in &mut logs {
                append(log, round);
                assert!(budget.open_count() <= budget.capacity());
            }
        }
        for log in &mut logs {
            assert!(log.segment_count() > 1);
            for o in 0..8 {
                let batches = log.read(o, 8, 1 << 20).unwrap().batches().unwrap();
                assert_eq!(batches[0].0.base_offset, o);
            }
            log.checkpoint().unwrap();
        }
        assert!(budget.evictions() > 0, "the budget was never short");
        drop(logs);
        assert_eq!(budget.open_count(), 0, "a closed log holds no descriptor");
        for dir in &dirs {
            let (log, report) = DiskLog::open(dir, config.clone()).unwrap();
            assert_eq!((log.end_offset(), report.indexes_rebuilt), (8, 0));
            assert_eq!(log.offset_for_timestamp(5).unwrap(), Some(5));
        }
    }

    #[test]
    fn a_segment_file_that_cannot_be_reopened_fails_the_append_as_an_io_error() {
        let d = tempfile::tempdir().unwrap();
        let budget = tiny_budget();
        let config = LogConfig {
            files: budget.clone(),
            ..small()
        };
        let (mut log, _) = DiskLog::open(&d.path().join("p"), config.clone()).unwrap();
        append(&mut log, 0);
        std::fs::remove_dir_all(d.path().join("p")).unwrap();
        // Other logs take the budget: this one's file closes, and with its
        // directory gone it cannot open again.
        let _others: Vec<DiskLog> = (0..budget.capacity())
            .map(|i| {
                DiskLog::open(&d.path().join(format!("o-{i}")), config.clone())
                    .unwrap()
                    .0
            })
            .collect();
        let b = batch::build(1, &[0u8; 100], 1);
        match log.append_as_leader(BatchBytes(b.into()), 1) {
            Err(LogError::Io(_)) => {}
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert_eq!(log.end_offset(), 1, "nothing half-appended");
        assert!(log.failure().is_some(), "the node takes it offline");
    }

    #[test]
    fn a_truncation_that_fails_marks_the_log_failed_instead_of_stopping_the_process() {
        let d = tempfile::tempdir().unwrap();
        let budget = tiny_budget();
        let config = LogConfig {
            files: budget.clone(),
            ..small()
        };
        let (mut log, _) = DiskLog::open(&d.path().join("p"), config.clone()).unwrap();
        for t in 0..3 {
            append(&mut log, t);
        }
        std::fs::remove_dir_all(d.path().join("p")).unwrap();
        let _others: Vec<DiskLog> = (0..budget.capacity())
            .map(|i| {
                DiskLog::open(&d.path().join(format!("o-{i}")), config.clone())
                    .unwrap()
                    .0
            })
            .collect();
        log.truncate_to(2);
        assert!(log.failure().is_some());
        let b = batch::build(1, &[0u8; 100], 9);
        assert!(matches!(
            log.append_as_leader(BatchBytes(b.into()), 1),
            Err(LogError::Io(_))
        ));
        assert!(log.checkpoint().is_err());
    }

    #[test]
    fn a_flush_off_the_loop_vouches_only_for_what_it_saw() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..5 {
            append(&mut log, t);
        }
        let mut ticket = log.begin_flush();
        ticket.run();
        assert!(ticket.synced());
        // Appends while the fsync ran are not covered by it.
        append(&mut log, 5);
        append(&mut log, 6);
        assert_eq!(log.complete_flush(ticket), Some(5));
        assert_eq!(log.flushed_offset(), 5);
        // A cut while a flush runs: the bytes now at those offsets are not
        // the ones it synced, so it vouches for nothing.
        let mut ticket = log.begin_flush();
        log.truncate_to(3);
        append(&mut log, 7);
        ticket.run();
        assert_eq!(log.complete_flush(ticket), None);
        assert_eq!(log.flushed_offset(), 3);
        // An unrun (failed) ticket claims nothing either.
        let ticket = log.begin_flush();
        assert_eq!(log.complete_flush(ticket), None);
        let mut ticket = log.begin_flush();
        ticket.run();
        assert_eq!(log.complete_flush(ticket), Some(4));
    }

    #[test]
    fn batch_headers_walk_every_batch_once_across_segments() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..10 {
            append(&mut log, t * 1000);
        }
        assert!(log.segment_count() >= 3);
        let mut walked = Vec::new();
        let mut from = 3;
        // Bounded: ten batches, at most two per call.
        for _ in 0..20 {
            let headers = log.batch_headers(from, 9, 2).unwrap();
            if headers.is_empty() {
                break;
            }
            assert!(headers.len() <= 2);
            for raw in headers {
                let h = batch::validate_header_only(&raw);
                walked.push((h.base_offset, h.max_timestamp_ms));
                from = h.end_offset();
            }
        }
        let expected: Vec<_> = (3..9).map(|o| (o, o as i64 * 1000)).collect();
        assert_eq!(walked, expected, "offsets 3..9, none twice, 9 not reached");
        assert!(log.batch_headers(11, 12, 1).is_err(), "past the end");
    }

    #[test]
    fn retention_deletes_old_segments_below_the_high_watermark_only() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..10 {
            append(&mut log, t * 1000);
        }
        let segments = log.segment_count();
        assert!(segments >= 3);
        let by_time = RetentionPolicy {
            retention_ms: Some(5_000),
            retention_bytes: None,
        };
        // Nothing is committed yet: nothing may go.
        assert_eq!(log.enforce_retention(100_000, by_time, 0).unwrap(), 0);
        let deleted = log
            .enforce_retention(100_000, by_time, log.end_offset())
            .unwrap();
        assert_eq!(deleted, segments - 1, "all but the active segment");
        assert!(log.start_offset() > 0);
        assert!(log.read(0, 10, 1000).is_err(), "below the log start offset");
        assert_eq!(log.end_offset_for_epoch(1).unwrap().end_offset, 10);
        // Reopen: the start offset is where the first segment begins.
        let start = log.start_offset();
        drop(log);
        let (log, _) = DiskLog::open(d.path(), small()).unwrap();
        assert_eq!(log.start_offset(), start);
    }

    /// DeleteRecords: the start moves inside a batch, whole segments below
    /// it go, nothing below it is readable, and a reopen (also after the
    /// tail was lost) never brings deleted offsets back.
    #[test]
    fn an_advanced_start_offset_hides_what_is_below_it_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..10 {
            let b = batch::build(3, &[0u8; 100], t);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
        let segments = log.segment_count();
        assert!(segments >= 3);
        log.advance_start_offset(13);
        assert_eq!(log.start_offset(), 13);
        assert!(log.segment_count() < segments, "whole segments below 13 go");
        assert!(log.read(12, 30, 1000).is_err());
        let batches = log.read(13, 30, 1).unwrap().batches().unwrap();
        assert_eq!(batches[0].0.base_offset, 12, "the batch holding 13, whole");
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(13));
        log.advance_start_offset(5);
        assert_eq!(log.start_offset(), 13, "never backwards");
        drop(log);
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (13, 30));
        // Truncating to the start (inside a batch) leaves an empty log there.
        log.truncate_to(13);
        assert!(log.failure().is_none());
        assert_eq!((log.start_offset(), log.end_offset()), (13, 13));
        log.append_as_follower(BatchBytes({
            let mut b = batch::build(2, &[1u8; 10], 0);
            b[0..8].copy_from_slice(&13u64.to_be_bytes());
            b.into()
        }))
        .unwrap();
        assert_eq!(log.end_offset(), 15);
        // Deleted up to the end, then the power fails before 13..15 was
        // flushed: the log continues empty at its start, not at 13.
        log.advance_start_offset(15);
        log.lose_unflushed_bytes().unwrap();
        let (log, _) = DiskLog::open(d.path(), small()).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (15, 15));
    }

    fn append_batches(log: &mut DiskLog, batches: &[(u32, i64)]) {
        for &(count, timestamp_ms) in batches {
            let b = batch::build(count, &[0u8; 100], timestamp_ms);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
    }

    /// Found by review: a crash after the new start was written but before
    /// the segments below it were removed, then a truncation to below the
    /// start onto a segment's own base, unlinked the live segment's files.
    #[test]
    fn a_start_recorded_before_a_crash_drops_old_segments_and_truncations_keep_the_live_one() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        append_batches(&mut log, &[(3, 0); 10]);
        let bases: Vec<Offset> = log.segments.iter().map(|s| s.base_offset).collect();
        assert!(bases.len() >= 3);
        let second = bases[1];
        drop(log);
        // The crash: the start file says `second + 1`, no segment is gone.
        std::fs::write(d.path().join(LOG_START), (second + 1).to_string()).unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        assert_eq!(log.start_offset(), second + 1);
        assert_eq!(
            log.segments[0].base_offset, second,
            "the first segment went"
        );
        assert!(!segment_path(d.path(), 0, "log").exists());
        // Below the start, onto the first segment's base: empty there.
        log.truncate_to(second);
        assert!(log.failure().is_none());
        assert_eq!((log.start_offset(), log.end_offset()), (second, second));
        append_batches(&mut log, &[(3, 0)]);
        log.flush().unwrap();
        drop(log);
        let (log, _) = DiskLog::open(d.path(), small()).unwrap();
        assert_eq!(
            (log.start_offset(), log.end_offset()),
            (second, second + 3),
            "what was appended and flushed after the truncation is there"
        );
    }

    /// Found by review: a cut inside the batch holding the start ended the
    /// log below its start; and timestamp lookups stopped at the first
    /// batch the index named, though it held only deleted records.
    #[test]
    fn cuts_and_timestamp_lookups_respect_a_start_inside_a_batch() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        // Real records: the lookup reads each record's timestamp.
        for timestamp_ms in [1_000, 1_000, 10, 600] {
            let records = vec![(None, Some(Bytes::from_static(b"v"))); 3];
            let b = crate::client::encode_batch(&records, timestamp_ms).unwrap();
            log.append_as_leader(BatchBytes(b), 1).unwrap();
        }
        log.advance_start_offset(6);
        assert_eq!(log.record_for_timestamp(500).unwrap(), Some((9, 600)));
        log.advance_start_offset(7);
        log.truncate_to(8);
        assert!(log.failure().is_none());
        assert_eq!((log.start_offset(), log.end_offset()), (7, 7));
    }

    #[test]
    fn a_log_restarted_past_its_end_is_empty_there_and_takes_the_leaders_batches() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..6 {
            append(&mut log, t);
        }
        log.truncate_fully_and_start_at(40);
        assert_eq!((log.start_offset(), log.end_offset()), (40, 40));
        assert_eq!(log.flushed_offset(), 40);
        assert_eq!(log.latest_epoch(), None, "the epoch cache starts over");
        assert_eq!(log.segment_count(), 1);
        // The leader's batch at the new start continues it.
        let mut raw = batch::build(1, &[7u8; 50], 99);
        batch::patch(&mut raw, 40, 3);
        log.append_as_follower(BatchBytes(raw.into())).unwrap();
        assert_eq!(log.end_offset(), 41);
        assert_eq!(log.latest_epoch(), Some(3));
        drop(log);
        let (log, _) = DiskLog::open(d.path(), small()).unwrap();
        assert_eq!((log.start_offset(), log.end_offset()), (40, 41));
        assert!(
            log.read(0, 41, 1000).is_err(),
            "nothing below the new start"
        );
    }

    #[test]
    fn retention_by_size_keeps_the_newest_bytes() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..12 {
            append(&mut log, t);
        }
        let by_size = RetentionPolicy {
            retention_ms: None,
            retention_bytes: Some(500),
        };
        log.enforce_retention(0, by_size, log.end_offset()).unwrap();
        assert!(
            log.size_bytes() >= 500 - 400 && log.size_bytes() < 500 + 400,
            "{}",
            log.size_bytes()
        );
    }

    #[test]
    fn segments_roll_by_record_time() {
        let d = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1 << 20,
            index_interval_bytes: 4096,
            roll_ms: Some(10_000),
            files: tiny_budget(),
        };
        let (mut log, _) = DiskLog::open(d.path(), config).unwrap();
        append(&mut log, 0);
        append(&mut log, 9_999);
        assert_eq!(log.segment_count(), 1);
        append(&mut log, 10_000);
        assert_eq!(log.segment_count(), 2);
    }

    /// Relative offsets are 32-bit in the indexes: a segment rolls before
    /// a batch would take one past i32::MAX from its base.
    #[test]
    fn segments_roll_before_relative_offsets_overflow() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), LogConfig::default()).unwrap();
        let span = (RELATIVE_OFFSET_MAX / 2) as u32;
        for _ in 0..2 {
            let b = batch::build(span, &[0u8; 10], 0);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
        assert_eq!(log.segment_count(), 1, "2 * span fits");
        let b = batch::build(span, &[0u8; 10], 0);
        log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        assert_eq!(log.segment_count(), 2);
        drop(log);
        let (log, _) = DiskLog::open(d.path(), LogConfig::default()).unwrap();
        assert_eq!(log.end_offset(), 3 * span as Offset);
    }

    #[test]
    fn time_index_answers_offsets_by_timestamp_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), small()).unwrap();
        for t in 0..10 {
            append(&mut log, 100 + t * 10);
        }
        assert!(log.segment_count() >= 3);
        for (ts, expect) in [
            (0, Some(0)),
            (100, Some(0)),
            (101, Some(1)),
            (150, Some(5)),
            (190, Some(9)),
            (191, None),
        ] {
            assert_eq!(
                log.offset_for_timestamp(ts).unwrap(),
                expect,
                "timestamp {ts}"
            );
        }
        // The checkpoint moves the recovery point past the first segments:
        // recovery trusts them, and rebuilds only a missing index.
        log.checkpoint().unwrap();
        drop(log);
        for f in std::fs::read_dir(d.path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "timeindex")
                && p.to_string_lossy().contains("0000000000000000000.")
            {
                std::fs::remove_file(p).unwrap();
            }
        }
        let (log, report) = DiskLog::open(d.path(), small()).unwrap();
        assert!(report.indexes_rebuilt >= 1, "{report:?}");
        assert_eq!(log.offset_for_timestamp(150).unwrap(), Some(5));
        assert_eq!(log.offset_for_timestamp(101).unwrap(), Some(1));
    }

    #[test]
    fn flush_policy_follows_kafka_keys() {
        let page_cache = FlushPolicy::default();
        assert!(!page_cache.flush_due(1_000_000, 1_000_000));
        let by_count = FlushPolicy {
            interval_messages: Some(100),
            ..Default::default()
        };
        assert!(!by_count.flush_due(99, 0) && by_count.flush_due(100, 0));
        let by_time = FlushPolicy {
            interval_ms: Some(50),
            ..Default::default()
        };
        assert!(by_time.flush_due(1, 50) && !by_time.flush_due(0, 50));
        assert!(FlushPolicy {
            durable: true,
            ..Default::default()
        }
        .flush_due(1, 0));
    }
}
