//! What a produced record batch must be before the leader appends it
//! (Kafka's `LogValidator`, magic v2): one batch per partition, within the
//! size limits, its CRC right, its record count what its offset range says,
//! every record whole and numbered in order, its compression known, its
//! timestamps within the allowed distance of the broker's clock, no control
//! batch from a client. Everything is read from the bytes with bounds
//! checked first, so no input can panic it or make it allocate more than
//! the batch decompresses to (bounded by `DECOMPRESSED_BYTES_MAX`).
//!
//! The log itself checks less on appends from followers and on recovery
//! (`storage::batch::validate`: length, magic, CRC): a compacted batch may
//! hold fewer records than its offset range.

use crate::storage::batch::{self, BatchError, HEADER_BYTES};
use bytes::Bytes;

/// The limits a produced batch is checked against.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// The topic's `max.message.bytes`, else the broker's `message.max.bytes`.
    pub max_batch_bytes: usize,
    /// The broker's clock.
    pub now_ms: i64,
    /// `log.message.timestamp.before.max.ms` / `.after.max.ms`.
    pub before_max_ms: u64,
    pub after_max_ms: u64,
    /// zstd needs Produce v7+ (KIP-110).
    pub zstd_allowed: bool,
    /// The topic's `message.timestamp.type` is LogAppendTime: the batch is
    /// stamped with `now_ms`, whatever its records say.
    pub log_append_time: bool,
    /// The topic's `cleanup.policy` includes `compact`: every record needs
    /// a key (compaction keeps the latest value per key).
    pub compacted: bool,
}

/// Why a batch is refused, with Kafka's error for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// MESSAGE_TOO_LARGE.
    TooLarge { bytes: usize, max: usize },
    /// CORRUPT_MESSAGE: the bytes are not what they claim (CRC, lengths).
    Corrupt(String),
    /// INVALID_RECORD: a well-formed batch Kafka does not accept.
    InvalidRecord(String),
    /// INVALID_TIMESTAMP.
    InvalidTimestamp(String),
    /// UNSUPPORTED_COMPRESSION_TYPE.
    UnsupportedCompression,
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::TooLarge { bytes, max } => format!(
                "The request included a message larger than the max message size the server will accept ({bytes} > {max} bytes)."
            ),
            Refusal::Corrupt(m) | Refusal::InvalidRecord(m) | Refusal::InvalidTimestamp(m) => {
                m.clone()
            }
            Refusal::UnsupportedCompression => {
                "zstd compression needs Produce version 7 or later".into()
            }
        }
    }
}

pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_CONTROL: i16 = 0x20;

/// Kafka's RecordBatch.NO_TIMESTAMP.
const NO_TIMESTAMP: i64 = -1;

/// What a batch that passed needs before it is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The batch's max timestamp must be rewritten to this (the records'
    /// largest, or the broker's time for LogAppendTime): see
    /// [`Checked::apply`].
    pub max_timestamp: Option<i64>,
    /// Mark the batch LogAppendTime (attributes bit 3), as Kafka's
    /// `LogValidator` does: readers then take the max timestamp for every
    /// record.
    pub log_append_time: bool,
}

impl Checked {
    /// The batch as it is stored: its max timestamp rewritten if needed,
    /// with its CRC (over the attributes onward) computed again.
    pub fn apply(&self, records: Bytes) -> Bytes {
        let Some(t) = self.max_timestamp else {
            return records;
        };
        let mut b = bytes::BytesMut::from(&records[..]);
        b[35..43].copy_from_slice(&t.to_be_bytes());
        if self.log_append_time {
            let attributes = i16::from_be_bytes([b[21], b[22]]) | ATTR_LOG_APPEND_TIME;
            b[21..23].copy_from_slice(&attributes.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }
}

/// Checks one partition's produced records (the whole `records` field).
pub fn check(records: &[u8], limits: &BatchLimits) -> Result<Checked, Refusal> {
    if records.len() > limits.max_batch_bytes {
        return Err(Refusal::TooLarge {
            bytes: records.len(),
            max: limits.max_batch_bytes,
        });
    }
    if records.len() >= 17 && records[16] as i8 != 2 {
        return Err(Refusal::InvalidRecord(format!(
            "record batches of magic {} are not accepted with this produce version (magic 2 only)",
            records[16] as i8
        )));
    }
    let header = batch::validate(records).map_err(|e| match e {
        BatchError::NoRecords => {
            Refusal::InvalidRecord("a batch must hold at least one record".into())
        }
        other => Refusal::Corrupt(other.to_string()),
    })?;
    if header.size_bytes != records.len() {
        return Err(Refusal::InvalidRecord(
            "a produce request carries exactly one record batch per partition".into(),
        ));
    }
    let i16_at = |at: usize| i16::from_be_bytes([records[at], records[at + 1]]);
    let i32_at = |at: usize| i32::from_be_bytes(records[at..at + 4].try_into().expect("4"));
    let i64_at = |at: usize| i64::from_be_bytes(records[at..at + 8].try_into().expect("8"));
    let attributes = i16_at(21);
    let (last_offset_delta, record_count) = (i32_at(23), i32_at(57));
    if record_count == 0 {
        return Err(Refusal::InvalidRecord(
            "a batch must hold at least one record".into(),
        ));
    }
    if record_count != last_offset_delta.saturating_add(1) {
        return Err(Refusal::InvalidRecord(format!(
            "Inconsistent batch offset range: {record_count} records, last offset delta {last_offset_delta}"
        )));
    }
    if attributes & ATTR_CONTROL != 0 {
        return Err(Refusal::InvalidRecord(
            "clients may not produce control batches".into(),
        ));
    }
    let (producer_id, base_sequence) = (i64_at(43), i32_at(53));
    if producer_id >= 0 && base_sequence < 0 {
        return Err(Refusal::InvalidRecord(format!(
            "producer id {producer_id} with base sequence {base_sequence}"
        )));
    }
    let compression = attributes & ATTR_COMPRESSION_MASK;
    if compression == 4 && !limits.zstd_allowed {
        return Err(Refusal::UnsupportedCompression);
    }
    // The log's time index, segment rolls and retention go by the batch's
    // max timestamp: it must be the records' own, and within the bounds.
    // A client may not claim the broker's LogAppendTime (Kafka rewrites it;
    // Runnel, which keeps batches byte for byte, refuses it).
    if attributes & ATTR_LOG_APPEND_TIME != 0 {
        return Err(Refusal::InvalidRecord(
            "clients may not produce batches stamped with LogAppendTime".into(),
        ));
    }
    let (base_timestamp, max_timestamp) = (i64_at(27), i64_at(35));
    // Uncompressed records are walked where they lie: copying them cost a
    // memmove of every produced byte.
    let decompressed;
    let body: &[u8] = match compression {
        0 => &records[HEADER_BYTES..],
        _ => {
            let raw = Bytes::copy_from_slice(&records[HEADER_BYTES..]);
            decompressed = decompress(compression, raw)?;
            &decompressed
        }
    };
    // Kafka's NO_TIMESTAMP (-1) when no record has a timestamp.
    let mut newest = NO_TIMESTAMP;
    walk_records(body, record_count as usize, Deltas::Consecutive, |r| {
        let delta = r.timestamp_delta;
        if limits.compacted && r.key.is_none() {
            // Kafka's LogValidator, INVALID_RECORD.
            return Err(Refusal::InvalidRecord(
                "Compacted topic cannot accept message without key".into(),
            ));
        }
        let ts = base_timestamp.saturating_add(delta);
        newest = newest.max(ts);
        // LogAppendTime replaces the records' times: Kafka checks none.
        match limits.log_append_time {
            true => Ok(()),
            false => check_timestamp(ts, limits),
        }
    })?;
    if limits.log_append_time {
        return Ok(Checked {
            max_timestamp: Some(limits.now_ms),
            log_append_time: true,
        });
    }
    // As Kafka's LogValidator: the batch's max timestamp becomes its
    // records' own (librdkafka writes 0 for records without a timestamp).
    Ok(Checked {
        max_timestamp: (newest != max_timestamp).then_some(newest),
        log_append_time: false,
    })
}

fn check_timestamp(ts: i64, limits: &BatchLimits) -> Result<(), Refusal> {
    // Kafka checks the range of real timestamps only.
    if ts == NO_TIMESTAMP {
        return Ok(());
    }
    let before = limits.now_ms.saturating_sub(ts);
    let after = ts.saturating_sub(limits.now_ms);
    if before > 0 && before as u64 > limits.before_max_ms {
        return Err(Refusal::InvalidTimestamp(format!(
            "Timestamp {ts} of a record is {before} ms before the broker's time, more than log.message.timestamp.before.max.ms={}",
            limits.before_max_ms
        )));
    }
    if after > 0 && after as u64 > limits.after_max_ms {
        return Err(Refusal::InvalidTimestamp(format!(
            "Timestamp {ts} of a record is {after} ms after the broker's time, more than log.message.timestamp.after.max.ms={}",
            limits.after_max_ms
        )));
    }
    Ok(())
}

/// The offset delta and timestamp of each record of one stored batch (v2),
/// in order: the base timestamp plus each record's delta, or the batch's
/// max timestamp for every record of a LogAppendTime batch (as Kafka reads
/// them). A compacted batch may skip offset deltas.
pub fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, Refusal> {
    let (attributes, base_timestamp, max_timestamp, count) = stored_fields(batch)?;
    let log_append_time = attributes & ATTR_LOG_APPEND_TIME != 0;
    let body = Bytes::copy_from_slice(&batch[HEADER_BYTES..]);
    let body = decompress(attributes & ATTR_COMPRESSION_MASK, body)?;
    let mut out = Vec::with_capacity(count);
    walk_records(&body, count, Deltas::Increasing, |r| {
        let ts = match log_append_time {
            true => max_timestamp,
            false => base_timestamp.saturating_add(r.timestamp_delta),
        };
        out.push((r.offset_delta, ts));
        Ok(())
    })?;
    Ok(out)
}

/// Attributes, base and max timestamp and record count of a stored batch,
/// the count checked against the bytes.
pub fn stored_fields(batch: &[u8]) -> Result<(i16, i64, i64, usize), Refusal> {
    if batch.len() < HEADER_BYTES {
        return Err(Refusal::Corrupt("a batch shorter than its header".into()));
    }
    let i16_at = |at: usize| i16::from_be_bytes([batch[at], batch[at + 1]]);
    let i32_at = |at: usize| i32::from_be_bytes(batch[at..at + 4].try_into().expect("4"));
    let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().expect("8"));
    let count = i32_at(57);
    let count = usize::try_from(count)
        .map_err(|_| Refusal::Corrupt(format!("a batch of {count} records")))?;
    // Each record takes at least 7 bytes: a count beyond that is a lie.
    if count > batch.len() {
        return Err(Refusal::Corrupt(format!(
            "{count} records in {} bytes",
            batch.len()
        )));
    }
    Ok((i16_at(21), i64_at(27), i64_at(35), count))
}

/// The record section, decompressed (bounded by the vendored codecs).
pub fn decompress(compression: i16, body: Bytes) -> Result<Bytes, Refusal> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
    let mut body = body;
    let out: anyhow::Result<Bytes> = match compression {
        0 => return Ok(body),
        1 => Gzip::decompress(&mut body, |b| Ok(b.clone())),
        2 => Snappy::decompress(&mut body, |b| Ok(b.clone())),
        3 => Lz4::decompress(&mut body, |b| Ok(b.clone())),
        4 => Zstd::decompress(&mut body, |b| Ok(b.clone())),
        other => {
            return Err(Refusal::InvalidRecord(format!(
                "unknown compression codec {other}"
            )))
        }
    };
    out.map_err(|e| Refusal::Corrupt(format!("the records do not decompress: {e}")))
}

/// One record of a v2 batch, as [`walk_records`] finds it.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    /// `None`: a null key.
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone on a compacted topic.
    pub value_is_null: bool,
    /// The record's bytes from its key to its end (key, value, headers),
    /// as they are: what a rewrite with new deltas copies.
    pub tail: &'a [u8],
}

/// How the records' offset deltas must run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deltas {
    /// 0, 1, 2, ... (a produced batch).
    Consecutive,
    /// Strictly increasing from 0 up (a stored batch, which compaction may
    /// have thinned).
    Increasing,
}

/// Walks `count` records of v2 format; each must be whole, its offset
/// delta as `deltas` says, and nothing may follow the last. Calls `each`
/// with each record.
pub fn walk_records<'a>(
    body: &'a [u8],
    count: usize,
    deltas: Deltas,
    mut each: impl FnMut(RecordView<'a>) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let mut at = 0usize;
    let mut previous_delta = -1i64;
    // Bounded by `count`, and each round consumes at least one byte or fails.
    for i in 0..count {
        let len = varint(body, &mut at)?;
        let len = usize::try_from(len)
            .map_err(|_| Refusal::Corrupt(format!("record {i} has a negative length")))?;
        let end = at
            .checked_add(len)
            .filter(|e| *e <= body.len())
            .ok_or_else(|| Refusal::Corrupt(format!("record {i} runs past its batch")))?;
        let record = &body[at..end];
        let mut r = 0usize;
        let _attributes = *record
            .first()
            .ok_or_else(|| Refusal::Corrupt(format!("record {i} is empty")))?;
        r += 1;
        let timestamp_delta = varlong(record, &mut r)?;
        let offset_delta = varint(record, &mut r)?;
        let in_order = match deltas {
            Deltas::Consecutive => offset_delta == i as i64,
            Deltas::Increasing => offset_delta > previous_delta,
        };
        if !in_order {
            return Err(Refusal::InvalidRecord(format!(
                "record {i} has offset delta {offset_delta}"
            )));
        }
        previous_delta = offset_delta;
        let tail_at = r;
        let key_at = r;
        let keyed = skip_bytes(record, &mut r, true)?; // key
        let key = keyed.then(|| {
            let mut k = key_at;
            let len = varint(record, &mut k).expect("read above") as usize;
            &record[k..k + len]
        });
        let value_is_null = !skip_bytes(record, &mut r, true)?; // value
        let headers = varint(record, &mut r)?;
        if headers < 0 {
            return Err(Refusal::Corrupt(format!(
                "record {i} has {headers} headers"
            )));
        }
        // Each header takes at least two bytes: the loop ends with the record.
        for _ in 0..headers {
            skip_bytes(record, &mut r, false)?; // header key (never null)
            skip_bytes(record, &mut r, true)?; // header value
        }
        if r != record.len() {
            return Err(Refusal::Corrupt(format!(
                "record {i} declares {len} bytes but holds {r}"
            )));
        }
        each(RecordView {
            timestamp_delta,
            offset_delta,
            key,
            value_is_null,
            tail: &record[tail_at..],
        })?;
        at = end;
    }
    if at != body.len() {
        return Err(Refusal::InvalidRecord(format!(
            "{} bytes follow the last of the batch's {count} records",
            body.len() - at
        )));
    }
    Ok(())
}

/// Appends one record in v2 format: its length, attributes (always 0),
/// the deltas and `tail` (key, value, headers) as they were.
pub fn put_record(out: &mut Vec<u8>, timestamp_delta: i64, offset_delta: i64, tail: &[u8]) {
    let mut head = Vec::with_capacity(16);
    head.push(0u8);
    put_varlong(&mut head, timestamp_delta);
    put_varlong(&mut head, offset_delta);
    put_varlong(out, (head.len() + tail.len()) as i64);
    out.extend_from_slice(&head);
    out.extend_from_slice(tail);
}

/// A zigzag varint (or varlong: the encoding is the same).
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Skips a length-prefixed byte string (length -1: null, where allowed);
/// false if it was null.
fn skip_bytes(b: &[u8], at: &mut usize, nullable: bool) -> Result<bool, Refusal> {
    let len = varint(b, at)?;
    if len == -1 && nullable {
        return Ok(false);
    }
    let len = usize::try_from(len).map_err(|_| Refusal::Corrupt("a negative length".into()))?;
    *at = at
        .checked_add(len)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| Refusal::Corrupt("a field runs past its record".into()))?;
    Ok(true)
}

/// A zigzag varint of at most 5 bytes (an i32).
fn varint(b: &[u8], at: &mut usize) -> Result<i64, Refusal> {
    let v = unsigned_varint(b, at, 5)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// A zigzag varint of at most 10 bytes (an i64).
fn varlong(b: &[u8], at: &mut usize) -> Result<i64, Refusal> {
    let v = unsigned_varint(b, at, 10)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn unsigned_varint(b: &[u8], at: &mut usize, max_bytes: usize) -> Result<u64, Refusal> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = *b
            .get(*at)
            .ok_or_else(|| Refusal::Corrupt("a varint runs past its record".into()))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Refusal::Corrupt("a varint is too long".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::encode_batch;

    fn limits() -> BatchLimits {
        BatchLimits {
            max_batch_bytes: 1 << 20,
            now_ms: 1_700_000_000_000,
            before_max_ms: u64::MAX,
            after_max_ms: 3_600_000,
            zstd_allowed: true,
            log_append_time: false,
            compacted: false,
        }
    }

    /// A compacted topic takes keyed records only (Kafka's LogValidator).
    #[test]
    fn a_compacted_topic_refuses_keyless_records() {
        let compacted = BatchLimits {
            compacted: true,
            ..limits()
        };
        let keyless = Bytes::from(batch(&["a"], compacted.now_ms));
        assert_eq!(
            check(&keyless, &compacted).unwrap_err(),
            Refusal::InvalidRecord("Compacted topic cannot accept message without key".into())
        );
        assert!(check(&keyless, &limits()).is_ok());
        let keyed = vec![(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"v")),
        )];
        let keyed = encode_batch(&keyed, compacted.now_ms).unwrap();
        assert!(check(&keyed, &compacted).is_ok());
    }

    /// `message.timestamp.type=LogAppendTime`: the batch is stamped with
    /// the broker's time and marked, its CRC still holds, every record
    /// reads back with that time, and the records' own times (here two
    /// days old, past the bounds) are not checked, as in Kafka.
    #[test]
    fn log_append_time_stamps_the_batch_with_the_brokers_time() {
        let stamped = BatchLimits {
            log_append_time: true,
            before_max_ms: 1_000,
            ..limits()
        };
        let old = stamped.now_ms - 2 * 86_400_000;
        let raw = Bytes::from(batch(&["a", "b"], old));
        let checked = check(&raw, &stamped).expect("accepted");
        let stored = checked.apply(raw);
        let header = crate::storage::batch::validate(&stored).expect("the CRC holds");
        assert_eq!(header.max_timestamp_ms, stamped.now_ms);
        assert_eq!(
            i16::from_be_bytes([stored[21], stored[22]]) & ATTR_LOG_APPEND_TIME,
            ATTR_LOG_APPEND_TIME
        );
        assert_eq!(
            record_timestamps(&stored).unwrap(),
            vec![(0, stamped.now_ms), (1, stamped.now_ms)]
        );
        assert!(check(
            &Bytes::from(batch(&["a"], old)),
            &BatchLimits {
                before_max_ms: 1_000,
                ..limits()
            }
        )
        .is_err());
    }

    fn batch(values: &[&str], timestamp_ms: i64) -> Vec<u8> {
        let records: Vec<(Option<Bytes>, Option<Bytes>)> = values
            .iter()
            .map(|v| (None, Some(Bytes::copy_from_slice(v.as_bytes()))))
            .collect();
        encode_batch(&records, timestamp_ms).unwrap().to_vec()
    }

    fn with_crc(mut b: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// A snappy block whose header claims more output than its bytes can
    /// encode is refused before the claim is allocated (the batch_check
    /// fuzz target found 130-byte batches claiming 64 MiB); the densest
    /// real snappy (a run of zeros) still decompresses.
    #[test]
    fn snappy_claims_are_bounded_by_the_input() {
        use kafka_protocol::compression::{Compressor, Snappy};
        let zeros = vec![0u8; 1 << 20];
        let mut dense = bytes::BytesMut::new();
        Snappy::compress(&mut dense, |raw| {
            raw.extend_from_slice(&zeros);
            Ok(())
        })
        .unwrap();
        assert!(dense.len() < zeros.len() / 20, "{} bytes", dense.len());
        assert_eq!(decompress(2, dense.freeze()).unwrap().len(), zeros.len());
        // Raw snappy: a varint claiming 64 MiB, then one literal byte.
        let lying = Bytes::from_static(b"\x80\x80\x80\x20\x00a");
        match decompress(2, lying) {
            Err(Refusal::Corrupt(m)) => assert!(m.contains("claims"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_client_batch_passes() {
        let l = limits();
        assert_eq!(
            check(&batch(&["a", "bb", "ccc"], l.now_ms), &l),
            Ok(Checked::default())
        );
    }

    #[test]
    fn every_kafka_refusal() {
        let l = limits();
        let good = batch(&["a", "bb", "ccc"], l.now_ms);
        // Size.
        let small = BatchLimits {
            max_batch_bytes: good.len() - 1,
            ..l
        };
        assert!(matches!(
            check(&good, &small),
            Err(Refusal::TooLarge { .. })
        ));
        // Two batches in one partition.
        let two = [good.clone(), good.clone()].concat();
        assert!(matches!(check(&two, &l), Err(Refusal::InvalidRecord(_))));
        // CRC.
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(check(&flipped, &l), Err(Refusal::Corrupt(_))));
        // A record count that is not the offset range.
        let mut lying = good.clone();
        lying[23..27].copy_from_slice(&1_000_000i32.to_be_bytes());
        assert!(matches!(
            check(&with_crc(lying), &l),
            Err(Refusal::InvalidRecord(_))
        ));
        // Count and range agree, but the records are fewer.
        let mut fewer = good.clone();
        fewer[23..27].copy_from_slice(&3i32.to_be_bytes());
        fewer[57..61].copy_from_slice(&4i32.to_be_bytes());
        assert!(matches!(
            check(&with_crc(fewer), &l),
            Err(Refusal::Corrupt(_))
        ));
        // Count and range agree, but more records follow.
        let mut more = good.clone();
        more[23..27].copy_from_slice(&1i32.to_be_bytes());
        more[57..61].copy_from_slice(&2i32.to_be_bytes());
        assert!(matches!(
            check(&with_crc(more), &l),
            Err(Refusal::InvalidRecord(_))
        ));
        // A control batch.
        let mut control = good.clone();
        control[22] |= 0x20;
        assert!(matches!(
            check(&with_crc(control), &l),
            Err(Refusal::InvalidRecord(_))
        ));
        // An unknown codec, and zstd with an old produce version.
        let mut codec = good.clone();
        codec[22] |= 0x07;
        assert!(matches!(
            check(&with_crc(codec), &l),
            Err(Refusal::InvalidRecord(_))
        ));
        let mut zstd = good.clone();
        zstd[22] |= 0x04;
        let old = BatchLimits {
            zstd_allowed: false,
            ..l
        };
        assert_eq!(
            check(&with_crc(zstd), &old),
            Err(Refusal::UnsupportedCompression)
        );
        // LogAppendTime from a client, and a max timestamp that is not the
        // records' (it would drive segment rolls and retention).
        let mut append_time = good.clone();
        append_time[22] |= 0x08;
        assert!(matches!(
            check(&with_crc(append_time), &l),
            Err(Refusal::InvalidRecord(_))
        ));
        // A max timestamp that is not the records' is rewritten (Kafka's
        // LogValidator), CRC and all: librdkafka writes 0 for records
        // without a timestamp.
        let mut max_ts = good.clone();
        max_ts[35..43].copy_from_slice(&(l.now_ms + 1_000).to_be_bytes());
        let checked = check(&with_crc(max_ts.clone()), &l).expect("accepted");
        assert_eq!(checked.max_timestamp, Some(l.now_ms));
        let stored = checked.apply(Bytes::from(with_crc(max_ts)));
        assert_eq!(
            &stored[..],
            &good[..],
            "rewritten to what the client should have sent"
        );
        let untimed = batch(&["x", "y"], NO_TIMESTAMP);
        let mut zero = untimed.clone();
        zero[35..43].copy_from_slice(&0i64.to_be_bytes());
        let checked = check(&with_crc(zero), &l).expect("records without timestamps pass");
        assert_eq!(checked.max_timestamp, Some(NO_TIMESTAMP));
        // Magic 1.
        let mut magic = good.clone();
        magic[16] = 1;
        assert!(matches!(check(&magic, &l), Err(Refusal::InvalidRecord(_))));
        // Timestamps: a day ahead is refused, a year behind is fine by default.
        let future = batch(&["x"], l.now_ms + 86_400_000);
        assert!(matches!(
            check(&future, &l),
            Err(Refusal::InvalidTimestamp(_))
        ));
        let past = batch(&["x"], l.now_ms - 365 * 86_400_000);
        assert_eq!(check(&past, &l), Ok(Checked::default()));
        let strict = BatchLimits {
            before_max_ms: 1_000,
            ..l
        };
        assert!(matches!(
            check(&past, &strict),
            Err(Refusal::InvalidTimestamp(_))
        ));
    }

    #[test]
    fn any_bytes_are_judged_without_panicking() {
        let l = limits();
        let good = batch(&["a", "bb", "ccc"], l.now_ms);
        for cut in 0..good.len() {
            let _ = check(&good[..cut], &l);
        }
        for i in HEADER_BYTES..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = check(&with_crc(b), &l);
            }
        }
    }
}
