//! Kafka record batches (magic v2) as the log stores them: the header
//! fields the log needs, validation before anything touches disk, and the
//! in-place patch of base offset and leader epoch a leader applies.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8,
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C of
//! everything from @21 to the end), attributes i16 @21, lastOffsetDelta i32
//! @23, baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43,
//! producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57, records @61.
//! Base offset and leader epoch are outside the CRC, which is why a leader
//! may patch them without recomputing it.

use runnel_model::core::{LeaderEpoch, Offset};

pub const HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s count starts (baseOffset + batchLength).
pub const LENGTH_PREFIX_BYTES: usize = 12;
const MAGIC_V2: i8 = 2;
/// Upper bound on one batch (Kafka's default `message.max.bytes` is ~1 MB;
/// this bounds what a corrupt length field can make us read).
pub const BATCH_BYTES_MAX: usize = 64 << 20;

/// Why bytes are not a valid v2 batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length.
    Truncated {
        needed: usize,
        available: usize,
    },
    BadLength(i32),
    BadMagic(i8),
    BadCrc {
        stored: u32,
        computed: u32,
    },
    NoRecords,
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Truncated { needed, available } => {
                write!(
                    f,
                    "batch truncated: needs {needed} bytes, {available} available"
                )
            }
            BatchError::BadLength(l) => write!(f, "batch length {l} out of range"),
            BatchError::BadMagic(m) => write!(f, "unsupported magic byte {m} (only v2)"),
            BatchError::BadCrc { stored, computed } => {
                write!(
                    f,
                    "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            BatchError::NoRecords => write!(f, "batch holds no record"),
        }
    }
}

/// The header fields of one validated batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub leader_epoch: LeaderEpoch,
    /// Whole batch size in bytes, header included.
    pub size_bytes: usize,
    pub record_count: u32,
    pub max_timestamp_ms: i64,
}

impl BatchHeader {
    pub fn end_offset(&self) -> Offset {
        self.base_offset + Offset::from(self.record_count)
    }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The size the batch at the start of `bytes` declares, checked only for range.
/// The producer id, epoch and first sequence of a v2 batch (idempotence).
pub fn producer_fields(b: &[u8]) -> Option<(i64, i16, i32)> {
    if b.len() < HEADER_BYTES {
        return None;
    }
    let epoch = i16::from_be_bytes(b[51..53].try_into().expect("2 bytes"));
    Some((i64_at(b, 43), epoch, i32_at(b, 53)))
}

/// Offsets a v2 batch spans (last offset delta + 1); sequences span the same.
pub fn declared_record_count(b: &[u8]) -> Option<u32> {
    (b.len() >= HEADER_BYTES).then(|| i32_at(b, 23).max(0) as u32 + 1)
}

pub fn declared_size(bytes: &[u8]) -> Result<usize, BatchError> {
    if bytes.len() < LENGTH_PREFIX_BYTES {
        return Err(BatchError::Truncated {
            needed: LENGTH_PREFIX_BYTES,
            available: bytes.len(),
        });
    }
    let length = i32_at(bytes, 8);
    let size = LENGTH_PREFIX_BYTES as i64 + i64::from(length);
    if length < 0 || size < HEADER_BYTES as i64 || size > BATCH_BYTES_MAX as i64 {
        return Err(BatchError::BadLength(length));
    }
    Ok(size as usize)
}

/// Validates the batch at the start of `bytes` (length, magic, CRC-32C) and
/// returns its header. Never panics, whatever the bytes.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let size = declared_size(bytes)?;
    if bytes.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: bytes.len(),
        });
    }
    let batch = &bytes[..size];
    let magic = batch[16] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(magic));
    }
    let stored = u32::from_be_bytes(batch[17..21].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&batch[21..]);
    if stored != computed {
        return Err(BatchError::BadCrc { stored, computed });
    }
    let last_offset_delta = i32_at(batch, 23);
    let record_count = i32_at(batch, 57);
    // Zero records is a batch compaction emptied: kept for its offset range
    // and producer state (Kafka keeps such batches too). Produced batches
    // must hold records (the front end's check).
    if record_count < 0 || last_offset_delta < 0 {
        return Err(BatchError::NoRecords);
    }
    Ok(BatchHeader {
        base_offset: i64_at(batch, 0).max(0) as Offset,
        leader_epoch: i32_at(batch, 12).max(0) as LeaderEpoch,
        size_bytes: size,
        // Offsets a batch occupies: lastOffsetDelta + 1 (compaction may
        // leave fewer records than that).
        record_count: (last_offset_delta as u32) + 1,
        max_timestamp_ms: i64_at(batch, 35),
    })
}

/// Reads the header of a batch this log wrote and validated before (no CRC
/// check: used on the read path, where the batch is not re-verified).
pub fn validate_header_only(h: &[u8; HEADER_BYTES]) -> BatchHeader {
    let size = LENGTH_PREFIX_BYTES + i32_at(h, 8).max(0) as usize;
    BatchHeader {
        base_offset: i64_at(h, 0).max(0) as Offset,
        leader_epoch: i32_at(h, 12).max(0) as LeaderEpoch,
        size_bytes: size.max(HEADER_BYTES),
        record_count: i32_at(h, 23).max(0) as u32 + 1,
        max_timestamp_ms: i64_at(h, 35),
    }
}

/// Sets base offset and leader epoch in place (outside the CRC).
pub fn patch(batch: &mut [u8], base_offset: Offset, leader_epoch: LeaderEpoch) {
    assert!(batch.len() >= HEADER_BYTES, "patch a validated batch only");
    batch[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
    batch[12..16].copy_from_slice(&(leader_epoch as i32).to_be_bytes());
}

/// Builds a valid v2 batch of `record_count` offsets whose record section is
/// `payload` (opaque to the log). For tests and benchmarks.
pub fn build(record_count: u32, payload: &[u8], timestamp_ms: i64) -> Vec<u8> {
    assert!(record_count > 0);
    let size = HEADER_BYTES + payload.len();
    let mut b = vec![0u8; size];
    b[8..12].copy_from_slice(&((size - LENGTH_PREFIX_BYTES) as i32).to_be_bytes());
    b[16] = MAGIC_V2 as u8;
    b[23..27].copy_from_slice(&((record_count - 1) as i32).to_be_bytes());
    b[27..35].copy_from_slice(&timestamp_ms.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&(record_count as i32).to_be_bytes());
    b[HEADER_BYTES..].copy_from_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_batch_validates_and_patching_keeps_the_crc() {
        let mut b = build(3, b"abc", 7);
        let h = validate(&b).unwrap();
        assert_eq!(
            (h.record_count, h.size_bytes, h.max_timestamp_ms),
            (3, HEADER_BYTES + 3, 7)
        );
        patch(&mut b, 42, 5);
        let h = validate(&b).unwrap();
        assert_eq!((h.base_offset, h.leader_epoch, h.end_offset()), (42, 5, 45));
    }

    #[test]
    fn corrupt_batches_are_rejected_not_panicked_on() {
        let good = build(1, b"x", 0);
        let mut flipped = good.clone();
        flipped[HEADER_BYTES] ^= 1;
        assert!(matches!(validate(&flipped), Err(BatchError::BadCrc { .. })));
        let mut magic = good.clone();
        magic[16] = 1;
        assert_eq!(validate(&magic), Err(BatchError::BadMagic(1)));
        assert!(matches!(
            validate(&good[..30]),
            Err(BatchError::Truncated { .. })
        ));
        let mut length = good.clone();
        length[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(validate(&length), Err(BatchError::BadLength(-5)));
        for cut in 0..good.len() {
            let _ = validate(&good[..cut]);
        }
    }
}
