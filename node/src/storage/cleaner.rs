//! Log compaction's runtime half (Kafka's `LogCleaner`): reads a
//! partition's closed segments, asks the model's rule
//! (`runnel_model::compaction`) which records stay, and writes each
//! segment that loses records as `<base>.log.cleaned` beside it. The
//! event loop then swaps the cleaned files in (`DiskLog::install_cleaned`).
//! This half touches only closed segments, which nothing else writes, so
//! it runs off the event loop; produce and fetch never wait for it.
//!
//! What a pass keeps, so that nothing a reader relies on changes:
//! - every batch that keeps a record, with its base offset, last offset
//!   delta, producer id, epoch and sequence. A batch whose records all go
//!   becomes an empty batch (record count 0), and a run of neighbouring
//!   empty batches one empty batch spanning their offsets (where one
//!   header can say them all: the same leader epoch and producer, running
//!   sequences). The log's offsets then still run without a gap from batch
//!   to batch (what recovery, replication and the model's log require),
//!   producer state rebuilt from batch headers is the same as before, and a
//!   log whose keys are rewritten over and over (the offsets topic) keeps
//!   one 61-byte header per run, not per write. A replica whose log ends
//!   inside a merged run (it was away while its leader cleaned) is served
//!   the run from its own end on (`DiskLog::read`). Kafka drops empty
//!   batches where producer state does not need them and leaves offset
//!   gaps; clients skip both alike.
//! - each kept record's offset delta, key, value and headers, byte for
//!   byte; only its timestamp delta changes where the batch's base
//!   timestamp becomes a delete horizon (KIP-534: attribute bit 6 set, the
//!   base timestamp holds the horizon, each record's timestamp stays
//!   base + delta).
//! - the batch's compression codec (the kept records are compressed again).
//!
//! Memory is bounded by `log.cleaner.dedupe.buffer.size` (Kafka's key):
//! one entry (a 128-bit hash of the key, not the key) per record read; a
//! pass that reaches it after a segment cleans only the segments read so
//! far (the first is always read whole).

use crate::io::fs::OpenOptions;
use crate::io::FileExt;
use crate::kafka::batch_check::{self, Deltas};
use crate::storage::batch::{self, BatchHeader, HEADER_BYTES};
use bytes::{Bytes, BytesMut};
use runnel_model::compaction::{self, CleanPolicy, Entry, Verdict};
use runnel_model::core::Offset;
use runnel_model::log::LogError;
use std::hash::BuildHasher;
use std::io;
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
    /// The closed segments from the log's first, as (base, end offset,
    /// bytes).
    pub segments: Vec<(Offset, Offset, u64)>,
    /// `segment.bytes`: cleaned neighbours are merged up to it.
    pub segment_bytes: u64,
    pub high_watermark: Offset,
    pub now_ms: i64,
    pub policy: CleanPolicy,
    /// `log.cleaner.dedupe.buffer.size`.
    pub dedupe_buffer_bytes: u64,
    /// Which keys a pass may compact; a record whose key is not is kept as
    /// if it had none (the offsets topic's records from before its keyed
    /// layout). Every key, unless the caller says otherwise.
    pub compactable_key: fn(&[u8]) -> bool,
}

/// Neighbouring segments written anew as one, `<first base>.log.cleaned`
/// (fsynced).
#[derive(Clone, Debug)]
pub struct CleanedSegment {
    pub base: Offset,
    pub end: Offset,
    /// The base offsets of the segments it replaces, in order.
    pub replaced: Vec<Offset>,
    /// (byte position, header) of each batch in the new file.
    pub headers: Vec<(u64, BatchHeader)>,
    pub size_bytes: u64,
}

/// What a pass did.
#[derive(Clone, Debug, Default)]
pub struct Cleaned {
    pub dir: PathBuf,
    /// The pass's clock.
    pub now_ms: i64,
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
        file.read_exact_at(&mut bytes, position).map_err(io_error)?;
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
    // Each record's bytes (for the size of a cleaned group), and each
    // segment's batch count.
    let mut record_bytes: Vec<u32> = Vec::new();
    let mut batch_counts: Vec<u64> = Vec::new();
    let mut batches: Vec<(Offset, Offset)> = Vec::new();
    let mut batch_entries: Vec<(usize, usize)> = Vec::new();
    let mut read_end = job.segments.first().map_or(0, |s| s.0);
    // A key the job may not compact (the offsets topic's records from
    // before its keyed layout) is kept as if keyless.
    let uncompactable = std::cell::Cell::new(false);
    let compactable = |k: &[u8]| {
        let ok = (job.compactable_key)(k);
        uncompactable.set(uncompactable.get() || !ok);
        ok
    };
    let mut segments_read = 0;
    let mut bytes_before = 0;
    for &(base, end, _) in &job.segments {
        if segments_read > 0 && entries.len() >= entries_max {
            break;
        }
        bytes_before += for_each_batch(&crate::storage::disk_log::log_path(&job.dir, base), |b| {
            let horizon = horizon_of(&b.bytes);
            let first_entry = entries.len();
            for r in records_of(&b)? {
                record_bytes.push(r.tail.len() as u32 + 16);
                entries.push(Entry {
                    offset: r.offset,
                    key: r.key.as_deref().filter(|k| compactable(k)).map(&hash),
                    tombstone: r.tombstone,
                    timestamp_ms: r.timestamp_ms,
                    delete_horizon_ms: horizon.filter(|_| r.tombstone),
                });
            }
            batches.push((b.header.base_offset, b.header.end_offset()));
            batch_entries.push((first_entry, entries.len()));
            Ok(())
        })?;
        batch_counts.push(batches.len() as u64 - batch_counts.iter().sum::<u64>());
        segments_read += 1;
        read_end = end;
    }
    // Such records stay for good, and a tombstone is all that stops them
    // from bringing a deleted key back on replay: in a log that holds any,
    // a key's latest tombstone stays for good too (no horizon is recorded,
    // none recorded before counts).
    let keep_tombstones = uncompactable.get();
    if keep_tombstones {
        entries.iter_mut().for_each(|e| e.delete_horizon_ms = None);
    }
    let policy = job.policy;
    let end =
        compaction::cleanable_end(&entries, read_end, job.high_watermark, job.now_ms, &policy);
    // Whole batches only: a batch's tombstones share one delete horizon.
    let end = batches
        .iter()
        .find(|&&(b, e)| b <= end && end < e)
        .map_or(end, |&(b, _)| b);
    let mut verdicts = compaction::clean(&entries, end, job.now_ms, &policy);
    if keep_tombstones {
        for v in verdicts.iter_mut() {
            if let Verdict::KeepUntil(_) = v {
                *v = Verdict::Keep;
            }
        }
    }
    let mut cleaned = Cleaned {
        dir: job.dir.clone(),
        now_ms: job.now_ms,
        log_id: job.log_id,
        generation: job.generation,
        clean_end: end,
        records_read: entries.len() as u64,
        bytes_before,
        bytes_after: bytes_before,
        ..Cleaned::default()
    };
    for (e, v) in entries
        .iter()
        .zip(&verdicts)
        .take_while(|(e, _)| e.offset < end)
    {
        let horizon = match v {
            Verdict::KeepUntil(h) => Some(*h),
            Verdict::Keep => e.delete_horizon_ms,
            Verdict::Remove => None,
        };
        if let Some(h) = horizon {
            cleaned.next_horizon_ms = Some(cleaned.next_horizon_ms.map_or(h, |n| n.min(h)));
        }
    }
    // Pass 2: groups of neighbouring segments (Kafka's
    // `groupSegmentsBySize`: together within `segment.bytes` and the
    // index's 32-bit relative offsets) are written anew as one, if a
    // record in them goes or there is more than one to merge.
    // Groups go by what each segment will hold after this pass (its
    // batch headers and the bytes of its records that stay, uncompressed:
    // an upper bound but for tiny compressed batches), so that a pass
    // merges the segments it empties.
    let mut cleaned_sizes = Vec::with_capacity(segments_read);
    let mut next_batch = 0usize;
    for &count in &batch_counts {
        let spans = &batch_entries[next_batch..next_batch + count as usize];
        next_batch += count as usize;
        let (mut size, mut kept_batches) = (0u64, 0u64);
        for &(from, to) in spans {
            let kept: u64 = (from..to)
                .filter(|&r| verdicts[r] != Verdict::Remove)
                .map(|r| u64::from(record_bytes[r]))
                .sum();
            // A control batch (no records here) stays whole: count it.
            if kept > 0 || from == to {
                size += HEADER_BYTES as u64 + kept;
                kept_batches += 1;
            }
        }
        // Emptied batches, as their headers: an upper bound (runs that
        // merge take less), so a group never outgrows `segment.bytes`.
        size += (count - kept_batches) * HEADER_BYTES as u64;
        cleaned_sizes.push(size);
    }
    let mut at = 0usize;
    let read = &job.segments[..segments_read];
    let mut g = 0usize;
    // Bounded: each round consumes at least one segment.
    while g < read.len() {
        let mut k = g + 1;
        let mut size = read[g].2;
        let mut estimate = cleaned_sizes[g];
        while k < read.len()
            && estimate + cleaned_sizes[k] <= job.segment_bytes
            && read[k].1 - read[g].0 <= RELATIVE_OFFSET_MAX
        {
            size += read[k].2;
            estimate += cleaned_sizes[k];
            k += 1;
        }
        let group = &read[g..k];
        tracing::debug!(
            "{}: cleaning segments {g}..{k} as one (about {estimate} of {} bytes)",
            job.dir.display(),
            job.segment_bytes
        );
        g = k;
        let group_end = group.last().expect("one at least").1;
        let first = at;
        while at < entries.len() && entries[at].offset < group_end {
            at += 1;
        }
        let (group_entries, group_verdicts) = (&entries[first..at], &verdicts[first..at]);
        if group.len() == 1 && group_verdicts.iter().all(|v| *v == Verdict::Keep) {
            continue;
        }
        let segment = match rewrite_group(&job.dir, group, group_entries, group_verdicts) {
            Ok(segment) => segment,
            Err(e) => {
                // Nothing of a failed pass stays on disk.
                for s in cleaned.segments.iter().map(|s| s.base).chain([group[0].0]) {
                    let _ = crate::io::fs::remove_file(cleaned_path(&job.dir, s));
                }
                return Err(e);
            }
        };
        cleaned.records_removed += group_verdicts
            .iter()
            .filter(|v| **v == Verdict::Remove)
            .count() as u64;
        cleaned.bytes_after = cleaned.bytes_after - size + segment.size_bytes;
        cleaned.segments.push(segment);
    }
    Ok(cleaned)
}

/// Offsets a segment may span (its index holds them in 32 bits).
const RELATIVE_OFFSET_MAX: Offset = i32::MAX as Offset;

/// An empty batch being written, which the next empty batch may extend.
struct PendingEmpty {
    bytes: Vec<u8>,
}

impl PendingEmpty {
    fn i32_at(&self, at: usize) -> i32 {
        i32::from_be_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Takes `next` (an empty batch right after this one) in, if one
    /// header can say both: the same producer id, epoch and leader epoch,
    /// sequences that run on. Producer state and the epoch cache then read
    /// the same from the merged header as from the two.
    fn absorb(&mut self, next: &[u8]) -> bool {
        let same = |from: usize, to: usize| self.bytes[from..to] == next[from..to];
        let producer = i64_at(&self.bytes, 43);
        let runs_on = producer < 0
            || self
                .i32_at(53)
                .wrapping_add(self.i32_at(23))
                .wrapping_add(1)
                == i32::from_be_bytes(next[53..57].try_into().expect("4 bytes"));
        let next_end = i64_at(next, 0)
            + i64::from(i32::from_be_bytes(
                next[23..27].try_into().expect("4 bytes"),
            ));
        let span = next_end - i64_at(&self.bytes, 0);
        if !(same(12, 16) && same(43, 53) && runs_on && span <= i64::from(i32::MAX)) {
            return false;
        }
        self.bytes[23..27].copy_from_slice(&(span as i32).to_be_bytes());
        let max_ts = i64_at(&self.bytes, 35).max(i64_at(next, 35));
        self.bytes[35..43].copy_from_slice(&max_ts.to_be_bytes());
        seal(&mut self.bytes);
        true
    }
}

/// If `bytes` begins with an empty batch (no records, not a control
/// batch) that starts below `from` and ends past it (a run the cleaner
/// merged), the same batch from `from` on, and the length of the batch it
/// stands for. A replica whose log ends at `from` appends it as it would
/// the batches that were merged; its sequence runs on from theirs.
pub fn empty_batch_from(bytes: &[u8], from: Offset) -> Option<(Vec<u8>, usize)> {
    if bytes.len() < HEADER_BYTES {
        return None;
    }
    let i32_at = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let base = Offset::try_from(i64_at(bytes, 0)).ok()?;
    let end = base + Offset::try_from(i32_at(23)).ok()? + 1;
    let empty = i16_at(bytes, 21) & ATTR_CONTROL == 0 && i32_at(57) == 0;
    if !(empty && base < from && from < end) {
        return None;
    }
    let size = batch::LENGTH_PREFIX_BYTES + usize::try_from(i32_at(8)).ok()?;
    let mut head = bytes[..HEADER_BYTES].to_vec();
    head[0..8].copy_from_slice(&(from as i64).to_be_bytes());
    head[23..27].copy_from_slice(&((end - from - 1) as i32).to_be_bytes());
    let sequence = i32_at(53);
    if i64_at(bytes, 43) >= 0 && sequence >= 0 {
        let skipped = (from - base) as i32;
        head[53..57].copy_from_slice(&sequence.wrapping_add(skipped).to_be_bytes());
    }
    seal(&mut head);
    Some((head, size))
}

/// Sets a batch's length and CRC from its bytes.
fn seal(b: &mut [u8]) {
    let length = (b.len() - batch::LENGTH_PREFIX_BYTES) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Writes `<first base>.log.cleaned`: the group's batches in order, the
/// records `verdicts` remove taken out, runs of empty batches one batch
/// where a header can say them all (a replica reading from inside such a
/// batch is served the part from its offset on: `empty_batch_from`); then
/// fsyncs it.
fn rewrite_group(
    dir: &Path,
    group: &[(Offset, Offset, u64)],
    entries: &[Entry<u128>],
    verdicts: &[Verdict],
) -> Result<CleanedSegment, LogError> {
    let (base, end) = (group[0].0, group.last().expect("one at least").1);
    let path = cleaned_path(dir, base);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_error)?;
    // Written in 1 MiB pieces at their positions (the simulation's files
    // take positional writes only).
    const WRITE_BYTES: usize = 1 << 20;
    let mut buffer: Vec<u8> = Vec::with_capacity(WRITE_BYTES);
    let mut written = 0u64;
    let mut headers = Vec::new();
    let mut position = 0u64;
    let mut pending: Option<PendingEmpty> = None;
    let mut put = |bytes: &[u8]| -> Result<(), LogError> {
        let header = batch::validate(bytes).map_err(corrupt)?;
        // The index holds byte positions in 32 bits.
        if position + bytes.len() as u64 > i32::MAX as u64 {
            return Err(LogError::Io("a merged segment would exceed 2 GiB".into()));
        }
        buffer.extend_from_slice(bytes);
        if buffer.len() >= WRITE_BYTES {
            file.write_all_at(&buffer, written).map_err(io_error)?;
            written += buffer.len() as u64;
            buffer.clear();
        }
        headers.push((position, header));
        position += bytes.len() as u64;
        Ok(())
    };
    let mut at = 0usize;
    for &(segment_base, _, _) in group {
        for_each_batch(
            &crate::storage::disk_log::log_path(dir, segment_base),
            |b| {
                let records = records_of(&b)?;
                let first = at;
                at += records.len();
                if at > entries.len()
                    || records
                        .iter()
                        .zip(&entries[first..at])
                        .any(|(r, e)| r.offset != e.offset)
                {
                    return Err(corrupt("the segment changed while it was cleaned"));
                }
                let verdicts = &verdicts[first..at];
                let bytes = match verdicts.iter().all(|v| *v == Verdict::Keep) {
                    true => b.bytes,
                    false => rebuild_batch(&b, &records, verdicts)?,
                };
                let control = i16_at(&bytes, 21) & ATTR_CONTROL != 0;
                let empty =
                    !control && i32::from_be_bytes(bytes[57..61].try_into().expect("4 bytes")) == 0;
                if empty {
                    if let Some(p) = pending.as_mut() {
                        if p.absorb(&bytes) {
                            return Ok(());
                        }
                    }
                    if let Some(p) = pending.replace(PendingEmpty { bytes }) {
                        put(&p.bytes)?;
                    }
                    return Ok(());
                }
                if let Some(p) = pending.take() {
                    put(&p.bytes)?;
                }
                put(&bytes)
            },
        )?;
    }
    if let Some(p) = pending.take() {
        put(&p.bytes)?;
    }
    file.write_all_at(&buffer, written).map_err(io_error)?;
    crate::io::sync_data(&file).map_err(io_error)?;
    // A segment cut or shorter than its neighbours say (a truncation
    // between the two reads, a damaged file): nothing to swap in.
    let spans = headers.first().is_some_and(|(_, h)| h.base_offset == base)
        && headers.last().is_some_and(|(_, h)| h.end_offset() == end);
    if !spans {
        return Err(corrupt("a cleaned group does not span its segments"));
    }
    Ok(CleanedSegment {
        base,
        end,
        replaced: group.iter().map(|s| s.0).collect(),
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
    // An empty batch is written uncompressed: nothing to compress, and a
    // reader never inflates an empty payload.
    if kept == 0 {
        attributes &= !(batch_check::ATTR_COMPRESSION_MASK | ATTR_DELETE_HORIZON);
    }
    let body = compress(attributes & batch_check::ATTR_COMPRESSION_MASK, body)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&b.bytes[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    out[57..61].copy_from_slice(&kept.to_be_bytes());
    seal(&mut out);
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
        assert_eq!(
            contents(&log),
            vec![
                expected[0].clone(),
                expected[2].clone(),
                expected[3].clone()
            ]
        );
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
            .clean_job(
                3,
                1_000,
                CleanPolicy::default(),
                DEDUPE_BUFFER_BYTES_DEFAULT,
            )
            .unwrap();
        let cleaned = run(&job).unwrap();
        assert_eq!(cleaned.segments.len(), 1);
        log.truncate_to(2);
        assert_eq!(log.install_cleaned(cleaned).unwrap(), 0);
        assert_eq!(contents(&log), before[..2].to_vec());
        assert!(!cleaned_path(d.path(), 0).exists(), "the copy is dropped");
    }

    fn pass_merging(log: &mut DiskLog, now_ms: i64) -> Cleaned {
        log.set_roll(1 << 20, None);
        let cleaned = pass(log, now_ms);
        log.set_roll(80, None);
        cleaned
    }

    /// Ten superseded values of one key, then the latest.
    fn superseded_log(dir: &Path) -> DiskLog {
        let (mut log, _) = DiskLog::open(dir, config()).unwrap();
        for i in 0..10 {
            let v = format!("{i}");
            let b = keyed_batch(&[("a", Some(v.as_str())), ("b", Some(v.as_str()))], 100);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
        let b = keyed_batch(&[("c", Some("last"))], 100);
        log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        log
    }

    #[test]
    fn neighbours_merge_into_one_segment_and_empty_batches_into_one_batch() {
        let d = tempfile::tempdir().unwrap();
        let mut log = superseded_log(d.path());
        let (end, segments) = (log.end_offset(), log.segment_count());
        assert_eq!((end, segments), (21, 11));
        let before = contents(&log);
        pass_merging(&mut log, 1_000);
        let kept = contents(&log);
        assert_eq!(kept, before[18..].to_vec(), "a=9, b=9 and c stay");
        assert_eq!(log.segment_count(), 2, "the closed ten became one");
        assert_eq!(log.end_offset(), end);
        let headers = log.batch_headers(0, end, 100).unwrap();
        assert_eq!(
            headers.len(),
            2,
            "nine emptied batches became one, then a=9 b=9"
        );
        drop(log);
        let (log, _) = DiskLog::open(d.path(), config()).unwrap();
        assert_eq!(contents(&log), kept);
        assert_eq!(log.segment_count(), 2);
    }

    /// Records a job may not compact (the offsets topic's legacy ones)
    /// stay, and so does every latest tombstone of a log holding any: it
    /// is what keeps such a record from bringing a deleted key back.
    #[test]
    fn uncompactable_records_and_tombstones_beside_them_stay() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(d.path(), config()).unwrap();
        let produced: &[&[(&str, Option<&str>)]] = &[
            &[("legacy", Some("1")), ("b", Some("1"))],
            &[("legacy", Some("2")), ("b", None)],
            &[("c", Some("1"))],
        ];
        for records in produced {
            let b = keyed_batch(records, 100);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
        let policy = CleanPolicy {
            delete_retention_ms: 1_000,
            ..CleanPolicy::default()
        };
        for now_ms in [1_000, 5_000, 50_000] {
            let hw = log.end_offset();
            let mut job = log
                .clean_job(hw, now_ms, policy, DEDUPE_BUFFER_BYTES_DEFAULT)
                .unwrap();
            job.compactable_key = |k| k != b"legacy";
            let cleaned = run(&job).unwrap();
            log.install_cleaned(cleaned).unwrap();
        }
        let kept: Vec<_> = contents(&log).into_iter().map(|(o, k, _)| (o, k)).collect();
        assert_eq!(
            kept,
            vec![
                (0, "legacy".to_string()),
                (2, "legacy".to_string()),
                (3, "b".to_string()),
                (4, "c".to_string())
            ],
            "both legacy records, b's tombstone long past its retention"
        );
    }

    #[test]
    fn a_follower_whose_log_ends_inside_a_merged_run_catches_up() {
        let d = tempfile::tempdir().unwrap();
        let mut leader = superseded_log(d.path());
        let end = leader.end_offset();
        pass_merging(&mut leader, 1_000);
        // Followers that had copied 1, 4 and 9 of the ten batches (offsets
        // 2, 8, 18; the merged run spans 0..18).
        for copied in [1usize, 4, 9] {
            let f = tempfile::tempdir().unwrap();
            let (mut follower, _) = DiskLog::open(f.path(), config()).unwrap();
            for i in 0..copied {
                let v = format!("{i}");
                let b = keyed_batch(&[("a", Some(v.as_str())), ("b", Some(v.as_str()))], 100);
                let mut b = b.to_vec();
                batch::patch(&mut b, 2 * i as Offset, 1);
                follower.append_as_follower(BatchBytes(b.into())).unwrap();
            }
            // Bounded: each fetch appends at least one batch.
            for _ in 0..end {
                let from = follower.end_offset();
                if from == end {
                    break;
                }
                let bytes = leader.read(from, end, 1 << 20).unwrap();
                follower.append_as_follower(bytes).unwrap();
            }
            assert_eq!(follower.end_offset(), end, "after {copied} batches");
            let tail: Vec<_> = contents(&follower)
                .into_iter()
                .filter(|r| r.0 >= 18)
                .collect();
            assert_eq!(tail, contents(&leader));
        }
    }

    #[test]
    fn a_swap_a_crash_interrupted_is_finished_when_the_log_opens() {
        let d = tempfile::tempdir().unwrap();
        let mut log = superseded_log(d.path());
        let before = contents(&log);
        log.set_roll(1 << 20, None);
        let job = log
            .clean_job(
                21,
                1_000,
                CleanPolicy::default(),
                DEDUPE_BUFFER_BYTES_DEFAULT,
            )
            .unwrap();
        let cleaned = run(&job).unwrap();
        assert_eq!(cleaned.segments.len(), 1);
        drop(log);
        // The crash: the swap file was durable and some old files gone.
        let swap = d.path().join(format!("{:020}.log.swap", 0));
        std::fs::rename(cleaned_path(d.path(), 0), &swap).unwrap();
        std::fs::remove_file(crate::storage::disk_log::log_path(d.path(), 2)).unwrap();
        let (log, _) = DiskLog::open(d.path(), config()).unwrap();
        assert!(!swap.exists());
        assert_eq!(contents(&log), before[18..].to_vec());
        assert_eq!(log.segment_count(), 2);
        // A cleaned copy a crash left before its swap is only removed.
        drop(log);
        std::fs::write(cleaned_path(d.path(), 0), b"half").unwrap();
        let (log, _) = DiskLog::open(d.path(), config()).unwrap();
        assert!(!cleaned_path(d.path(), 0).exists());
        assert_eq!(contents(&log), before[18..].to_vec());
    }

    #[test]
    fn emptied_segments_merge_within_segment_bytes() {
        let d = tempfile::tempdir().unwrap();
        let mut c = config();
        c.segment_bytes = 400;
        let (mut log, _) = DiskLog::open(d.path(), c).unwrap();
        for i in 0..40 {
            let v = format!("{i:03}");
            let b = keyed_batch(&[("a", Some(v.as_str()))], 100);
            log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        }
        let segments = log.segment_count();
        assert!(segments >= 8, "{segments}");
        // Each emptied segment keeps five 61-byte headers: three fit.
        log.set_roll(1_000, None);
        let cleaned = pass(&mut log, 1_000);
        assert!(
            cleaned.segments.len() <= 3,
            "{} groups of {segments}",
            cleaned.segments.len()
        );
        assert!(
            log.segment_count() <= 4,
            "{} segments left",
            log.segment_count()
        );
    }

    #[test]
    fn a_pass_that_cleans_nothing_is_not_due_again_until_the_log_grows() {
        let d = tempfile::tempdir().unwrap();
        let mut log = superseded_log(d.path());
        let trigger = crate::storage::disk_log::CleanTrigger::default();
        assert!(log.clean_due(1_000, &trigger));
        // Everything is younger than the lag: nothing may go.
        let policy = CleanPolicy {
            min_compaction_lag_ms: 1_000_000,
            ..CleanPolicy::default()
        };
        let job = log
            .clean_job(21, 1_000, policy, DEDUPE_BUFFER_BYTES_DEFAULT)
            .unwrap();
        let cleaned = run(&job).unwrap();
        assert_eq!(cleaned.records_removed, 0);
        log.install_cleaned(cleaned).unwrap();
        assert!(!log.clean_due(2_000, &trigger), "stalled");
        let b = keyed_batch(&[("d", Some("1"))], 100);
        log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
        assert!(log.clean_due(2_000, &trigger), "the log grew");
    }
}
