//! Log compaction's runtime half (Kafka's `LogCleaner`): reads a
//! partition's closed segments, asks the model's rule
//! (`runnel_model::compaction`) which records stay, and writes each
//! segment that loses records as `<base>.log.cleaned` beside it. The
//! event loop then swaps the cleaned files in (`DiskLog::install_cleaned`).
//! This half touches only closed segments, which nothing else writes, so
//! it runs off the event loop; produce and fetch never wait for it.
//!
//! What a pass keeps, so that nothing a reader relies on changes:
//! - every batch, with its base offset, last offset delta, producer id,
//!   epoch and sequence: a batch whose records all go stays as an empty
//!   batch (record count 0). The log's offsets then still run without a
//!   gap from batch to batch (what recovery, replication and the model's
//!   log require), and producer state rebuilt from batch headers is the
//!   same as before. Kafka keeps empty batches only where producer state
//!   needs them and otherwise leaves offset gaps; clients skip both alike.
//! - each kept record's offset delta, key, value and headers, byte for
//!   byte; only its timestamp delta changes where the batch's base
//!   timestamp becomes a delete horizon (KIP-534: attribute bit 6 set, the
//!   base timestamp holds the horizon, each record's timestamp stays
//!   base + delta).
//! - the batch's compression codec (the kept records are compressed again).
//!
//! Memory is bounded by `log.cleaner.dedupe.buffer.size` (Kafka's key):
//! one entry (a 128-bit hash of the key, not the key) per record read; a
//! pass that would exceed it cleans only the segments read so far.

use crate::io::fs::{self, OpenOptions};
use crate::io::FileExt;
use crate::kafka::batch_check::{self, Deltas};
use crate::storage::batch::{self, BatchHeader, HEADER_BYTES};
use bytes::{Bytes, BytesMut};
use runnel_model::compaction::{self, CleanPolicy, Entry, Verdict};
use runnel_model::core::Offset;
use runnel_model::log::LogError;
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Kafka's `log.cleaner.dedupe.buffer.size` default (128 MiB).
pub const DEDUPE_BUFFER_BYTES_DEFAULT: u64 = 128 << 20;
/// What one record costs the pass in memory (its [`Entry`] and verdict).
const ENTRY_BYTES: u64 = 80;

/// KIP-534's delete horizon flag in a batch's attributes.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;
const ATTR_CONTROL: i16 = 0x20;

/// What a pass may read: taken from a `DiskLog` on the event loop.
#[derive(Clone, Debug)]
pub struct CleanJob {
    pub dir: PathBuf,
    /// The log instance and its truncation count when the job was taken:
    /// the swap is refused if either changed.
    pub log_id: u64,
    pub generation: u64,
    /// The closed segments from the log's first, as (base, end offset).
    pub segments: Vec<(Offset, Offset)>,
    pub high_watermark: Offset,
    pub now_ms: i64,
    pub policy: CleanPolicy,
    /// `log.cleaner.dedupe.buffer.size`.
    pub dedupe_buffer_bytes: u64,
}

/// One segment written anew as `<base>.log.cleaned` (fsynced).
#[derive(Clone, Debug)]
pub struct CleanedSegment {
    pub base: Offset,
    pub end: Offset,
    /// (byte position, header) of each batch in the new file.
    pub headers: Vec<(u64, BatchHeader)>,
    pub size_bytes: u64,
}

/// What a pass did.
#[derive(Clone, Debug, Default)]
pub struct Cleaned {
    pub log_id: u64,
    pub generation: u64,
    pub segments: Vec<CleanedSegment>,
    /// The first offset this pass did not clean (Kafka's
    /// cleaner-offset-checkpoint): what lies past it is dirty.
    pub clean_end: Offset,
    /// The earliest delete horizon of a tombstone kept: a pass is due then
    /// even if nothing new is written.
    pub next_horizon_ms: Option<i64>,
    pub records_read: u64,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

pub fn cleaned_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}.log.cleaned"))
}

fn corrupt(e: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(e.to_string())
}

fn io_error(e: io::Error) -> LogError {
    LogError::Io(e.to_string())
}

/// One batch of a segment file, read whole and checked (CRC included).
struct StoredBatch {
    header: BatchHeader,
    bytes: Vec<u8>,
}

/// Reads the batches of a closed segment in order, one at a time.
fn for_each_batch(
    path: &Path,
    mut each: impl FnMut(StoredBatch) -> Result<(), LogError>,
) -> Result<u64, LogError> {
    let file = OpenOptions::new().read(true).open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    let mut position = 0u64;
    // Bounded by the file: each round moves past one batch or fails.
    while position < len {
        let mut prefix = [0u8; batch::LENGTH_PREFIX_BYTES];
        file.read_exact_at(&mut prefix, position)
            .map_err(io_error)?;
        let size = batch::declared_size(&prefix).map_err(corrupt)?;
        let mut bytes = vec![0u8; size];
        file.read_exact_at(&mut bytes, position)
            .map_err(io_error)?;
        let header = batch::validate(&bytes).map_err(corrupt)?;
        each(StoredBatch { header, bytes })?;
        position += size as u64;
    }
    Ok(len)
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A record of a stored batch, decoded (owned, for the rewrite).
struct Record {
    offset: Offset,
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    tombstone: bool,
    tail: Vec<u8>,
}

/// The records of a stored batch (none of a control batch: those stay whole).
fn records_of(b: &StoredBatch) -> Result<Vec<Record>, LogError> {
    let attributes = i16_at(&b.bytes, 21);
    if attributes & ATTR_CONTROL != 0 {
        return Ok(Vec::new());
    }
    let (_, base_timestamp, max_timestamp, count) =
        batch_check::stored_fields(&b.bytes).map_err(|e| corrupt(e.message()))?;
    let log_append_time = attributes & 0x08 != 0;
    let body = Bytes::copy_from_slice(&b.bytes[HEADER_BYTES..]);
    let body = batch_check::decompress(attributes & batch_check::ATTR_COMPRESSION_MASK, body)
        .map_err(|e| corrupt(e.message()))?;
    let mut out = Vec::with_capacity(count);
    batch_check::walk_records(&body, count, Deltas::Increasing, |r| {
        out.push(Record {
            offset: b.header.base_offset + r.offset_delta as Offset,
            timestamp_ms: match log_append_time {
                true => max_timestamp,
                false => base_timestamp.saturating_add(r.timestamp_delta),
            },
            key: r.key.map(<[u8]>::to_vec),
            tombstone: r.value_is_null,
            tail: r.tail.to_vec(),
        });
        Ok(())
    })
    .map_err(|e| corrupt(e.message()))?;
    Ok(out)
}

/// The delete horizon a batch records (KIP-534), if it does.
fn horizon_of(bytes: &[u8]) -> Option<i64> {
    (i16_at(bytes, 21) & ATTR_DELETE_HORIZON != 0).then(|| i64_at(bytes, 27))
}

/// Runs one pass: reads, decides, writes the cleaned files. Returns what
/// to swap in; nothing is changed in the log itself.
pub fn run(job: &CleanJob) -> Result<Cleaned, LogError> {
    let hasher = (
        std::collections::hash_map::RandomState::new(),
        std::collections::hash_map::RandomState::new(),
    );
    let hash = |key: &[u8]| -> u128 {
        (u128::from(hasher.0.hash_one(key)) << 64) | u128::from(hasher.1.hash_one(key))
    };
    // Pass 1: every record of the segments that fit the buffer.
    let entries_max = (job.dedupe_buffer_bytes / ENTRY_BYTES).max(1) as usize;
    let mut entries: Vec<Entry<u128>> = Vec::new();
    let mut batches: Vec<(Offset, Offset)> = Vec::new();
    let mut read_end = job.segments.first().map_or(0, |s| s.0);
    let mut segments_read = 0;
    let mut bytes_before = 0;
    for &(base, end) in &job.segments {
        if segments_read > 0 && entries.len() >= entries_max {
            break;
        }
        bytes_before += for_each_batch(&crate::storage::disk_log::log_path(&job.dir, base), |b| {
            let horizon = horizon_of(&b.bytes);
            for r in records_of(&b)? {
                entries.push(Entry {
                    offset: r.offset,
                    key: r.key.as_deref().map(&hash),
                    tombstone: r.tombstone,
                    timestamp_ms: r.timestamp_ms,
                    delete_horizon_ms: horizon.filter(|_| r.tombstone),
                });
            }
            batches.push((b.header.base_offset, b.header.end_offset()));
            Ok(())
        })?;
        segments_read += 1;
        read_end = end;
    }
    let end = compaction::cleanable_end(
        &entries,
        read_end,
        job.high_watermark,
        job.now_ms,
        &job.policy,
    );
    // Whole batches only: a batch's tombstones share one delete horizon.
    let end = batches
        .iter()
        .find(|&&(b, e)| b <= end && end < e)
        .map_or(end, |&(b, _)| b);
    let verdicts = compaction::clean(&entries, end, job.now_ms, &job.policy);
    let mut cleaned = Cleaned {
        log_id: job.log_id,
        generation: job.generation,
        clean_end: end,
        records_read: entries.len() as u64,
        bytes_before,
        bytes_after: bytes_before,
        ..Cleaned::default()
    };
    for (e, v) in entries.iter().zip(&verdicts) {
        let horizon = match v {
            Verdict::KeepUntil(h) => Some(*h),
            Verdict::Keep => e.delete_horizon_ms,
            Verdict::Remove => None,
        };
        if let Some(h) = horizon {
            cleaned.next_horizon_ms = Some(cleaned.next_horizon_ms.map_or(h, |n| n.min(h)));
        }
    }
    // Pass 2: each segment that changes is written anew.
    let mut at = 0usize;
    for &(base, seg_end) in job.segments.iter().take(segments_read) {
        let first = at;
        while at < entries.len() && entries[at].offset < seg_end {
            at += 1;
        }
        let (seg_entries, seg_verdicts) = (&entries[first..at], &verdicts[first..at]);
        if seg_verdicts.iter().all(|v| *v == Verdict::Keep) {
            continue;
        }
        let segment = rewrite_segment(&job.dir, base, seg_end, seg_entries, seg_verdicts)?;
        cleaned.records_removed += seg_verdicts
            .iter()
            .filter(|v| **v == Verdict::Remove)
            .count() as u64;
        let old_len = fs::metadata(crate::storage::disk_log::log_path(&job.dir, base))
            .map_err(io_error)?
            .len();
        cleaned.bytes_after = cleaned.bytes_after - old_len + segment.size_bytes;
        cleaned.segments.push(segment);
    }
    Ok(cleaned)
}

/// Writes `<base>.log.cleaned`: the segment's batches with the records
/// `verdicts` remove taken out, and fsyncs it.
fn rewrite_segment(
    dir: &Path,
    base: Offset,
    end: Offset,
    entries: &[Entry<u128>],
    verdicts: &[Verdict],
) -> Result<CleanedSegment, LogError> {
    let path = cleaned_path(dir, base);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_error)?;
    let mut out = io::BufWriter::with_capacity(1 << 20, &file);
    let mut headers = Vec::new();
    let mut position = 0u64;
    let mut at = 0usize;
    for_each_batch(&crate::storage::disk_log::log_path(dir, base), |b| {
        let records = records_of(&b)?;
        let first = at;
        at += records.len();
        if at > entries.len() || records.iter().zip(&entries[first..at]).any(|(r, e)| r.offset != e.offset) {
            return Err(corrupt("the segment changed while it was cleaned"));
        }
        let verdicts = &verdicts[first..at];
        let bytes = match verdicts.iter().all(|v| *v == Verdict::Keep) {
            true => b.bytes,
            false => rebuild_batch(&b, &records, verdicts)?,
        };
        let header = batch::validate(&bytes).map_err(corrupt)?;
        debug_assert_eq!(
            (header.base_offset, header.end_offset()),
            (b.header.base_offset, b.header.end_offset())
        );
        out.write_all(&bytes).map_err(io_error)?;
        headers.push((position, header));
        position += bytes.len() as u64;
        Ok(())
    })?;
    out.flush().map_err(io_error)?;
    drop(out);
    crate::io::sync_data(&file).map_err(io_error)?;
    assert!(
        headers.first().is_none_or(|(_, h)| h.base_offset == base)
            && headers.last().is_none_or(|(_, h)| h.end_offset() == end),
        "a cleaned segment spans what it did"
    );
    Ok(CleanedSegment {
        base,
        end,
        headers,
        size_bytes: position,
    })
}

/// One batch with the removed records taken out: the same header (offsets,
/// producer fields, max timestamp), the record count of what stays, the
/// delete horizon recorded if the pass set one, the same codec, a new CRC.
fn rebuild_batch(
    b: &StoredBatch,
    records: &[Record],
    verdicts: &[Verdict],
) -> Result<Vec<u8>, LogError> {
    let mut attributes = i16_at(&b.bytes, 21);
    let mut base_timestamp = i64_at(&b.bytes, 27);
    let new_horizon = verdicts.iter().find_map(|v| match v {
        Verdict::KeepUntil(h) => Some(*h),
        _ => None,
    });
    if let Some(h) = new_horizon {
        attributes |= ATTR_DELETE_HORIZON;
        base_timestamp = h;
    }
    let mut body = Vec::new();
    let mut kept = 0i32;
    for (r, v) in records.iter().zip(verdicts) {
        if *v == Verdict::Remove {
            continue;
        }
        let offset_delta = (r.offset - b.header.base_offset) as i64;
        batch_check::put_record(
            &mut body,
            r.timestamp_ms.wrapping_sub(base_timestamp),
            offset_delta,
            &r.tail,
        );
        kept += 1;
    }
    let body = compress(attributes & batch_check::ATTR_COMPRESSION_MASK, body)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&b.bytes[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let length = (out.len() - batch::LENGTH_PREFIX_BYTES) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    out[57..61].copy_from_slice(&kept.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// The record section compressed with the batch's codec again.
fn compress(codec: i16, body: Vec<u8>) -> Result<Vec<u8>, LogError> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out = BytesMut::new();
    let fill = |tmp: &mut BytesMut| -> anyhow::Result<()> {
        tmp.extend_from_slice(&body);
        Ok(())
    };
    let result = match codec {
        0 => return Ok(body),
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        other => return Err(corrupt(format!("unknown compression codec {other}"))),
    };
    result.map_err(|e| LogError::Io(format!("compression failed: {e}")))?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk_log::{BatchBytes, DiskLog, LogConfig};
    use crate::storage::file_cache::{FileBudget, CAPACITY_MIN};
    use runnel_model::log::PartitionLog;

    /// A v2 batch of keyed records (`None`: a tombstone), all at `ts`.
    fn keyed_batch(records: &[(&str, Option<&str>)], ts: i64) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (k, v)) in records.iter().enumerate() {
            let mut tail = Vec::new();
            put_bytes(&mut tail, Some(k.as_bytes()));
            put_bytes(&mut tail, v.map(str::as_bytes));
            tail.push(0); // no headers
            batch_check::put_record(&mut body, 0, i as i64, &tail);
        }
        batch::build(records.len() as u32, &body, ts)
    }

    fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
        // A zigzag varint length, -1 for null (one byte: 0x01).
        match b {
            None => out.push(0x01),
            Some(b) => {
                assert!(b.len() < 64);
                out.push((b.len() as u8) << 1);
                out.extend_from_slice(b);
            }
        }
    }

    fn config() -> LogConfig {
        LogConfig {
            // Every batch of these tests rolls a segment.
            segment_bytes: 80,
            index_interval_bytes: 100,
            roll_ms: None,
            files: FileBudget::new(CAPACITY_MIN),
        }
    }

    /// (offset, key, value) of every record the log serves, in order.
    fn contents(log: &DiskLog) -> Vec<(Offset, String, Option<String>)> {
        let mut out = Vec::new();
        let mut from = 0;
        // A read stops at a segment's end: bounded by the batches.
        let mut all = Vec::new();
        while from < log.end_offset() {
            let batches = log.read(from, log.end_offset(), usize::MAX).unwrap();
            let batches = batches.batches().unwrap();
            from = batches.last().expect("a batch").0.end_offset();
            all.extend(batches);
        }
        for (h, b) in all {
            let sb = StoredBatch {
                header: h,
                bytes: b.to_vec(),
            };
            for r in records_of(&sb).unwrap() {
                let mut at = 0;
                let key = r.key.map(|k| String::from_utf8(k).unwrap());
                // The tail: key, then value.
                let klen = (r.tail[0] >> 1) as usize;
                at += 1 + klen;
                let value = (!r.tombstone).then(|| {
                    let vlen = (r.tail[at] >> 1) as usize;
                    String::from_utf8(r.tail[at + 1..at + 1 + vlen].to_vec()).unwrap()
                });
                out.push((r.offset, key.unwrap(), value));
            }
        }
        out
    }

    fn pass(log: &mut DiskLog, now_ms: i64) -> Cleaned {
        let policy = CleanPolicy {
            delete_retention_ms: 1_000,
            ..CleanPolicy::default()
        };
        let hw = log.end_offset();
        let job = log
            .clean_job(hw, now_ms, policy, DEDUPE_BUFFER_BYTES_DEFAULT)
            .unwrap();
        let cleaned = run(&job).unwrap();
        let report = cleaned.clone();
        log.install_cleaned(cleaned).unwrap();
        report
    }

    #[test]
    fn a_pass_keeps_each_keys_latest_value_and_every_offset_then_the_tombstone_goes() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), config()).unwrap();
        let produced: &[&[(&str, Option<&str>)]] = &[
            &[("a", Some("1")), ("b", Some("1"))],
            &[("a", Some("2"))],
            &[("b", None), ("c", Some("1"))],
            &[("c", Some("2"))],
            // The active segment: never cleaned.
            &[("a", Some("3"))],
        ];
        for records in produced {
            let b = keyed_batch(records, 100);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
        let end = log.end_offset();
        assert_eq!(end, 7);
        let cleaned = pass(&mut log, 1_000);
        assert_eq!(cleaned.records_removed, 3, "a=1, b=1, c=1 go");
        assert_eq!(cleaned.clean_end, 6);
        let kept = contents(&log);
        let expected = vec![
            (2, "a".to_string(), Some("2".to_string())),
            (3, "b".to_string(), None),
            (5, "c".to_string(), Some("2".to_string())),
            (6, "a".to_string(), Some("3".to_string())),
        ];
        assert_eq!(kept, expected);
        assert_eq!(log.end_offset(), end, "offsets never change");
        assert!(cleaned.bytes_after < cleaned.bytes_before);
        // The swap is on disk: a reopened log serves the same.
        drop(log);
        let (mut log, _) = DiskLog::open(d.path(), config()).unwrap();
        assert_eq!(contents(&log), expected);
        assert_eq!(log.cleaner_checkpoint(), 6);
        // Before `delete.retention.ms` has passed the tombstone stays...
        pass(&mut log, 1_500);
        assert_eq!(contents(&log), expected);
        // ...then it goes (every older record of its key went first).
        let cleaned = pass(&mut log, 2_000);
        assert_eq!(cleaned.records_removed, 1);
        assert_eq!(contents(&log), vec![expected[0].clone(), expected[2].clone(), expected[3].clone()]);
        assert_eq!(log.end_offset(), end);
    }

    #[test]
    fn a_pass_over_a_log_that_was_truncated_meanwhile_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), config()).unwrap();
        for v in ["1", "2", "3"] {
            let b = keyed_batch(&[("a", Some(v))], 100);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
        let before = contents(&log);
        let job = log
            .clean_job(3, 1_000, CleanPolicy::default(), DEDUPE_BUFFER_BYTES_DEFAULT)
            .unwrap();
        let cleaned = run(&job).unwrap();
        assert_eq!(cleaned.segments.len(), 1);
        log.truncate_to(2);
        assert_eq!(log.install_cleaned(cleaned).unwrap(), 0);
        assert_eq!(contents(&log), before[..2].to_vec());
        assert!(!cleaned_path(d.path(), 0).exists(), "the copy is dropped");
    }
}
