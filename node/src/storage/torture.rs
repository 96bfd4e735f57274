//! Deterministic batches for crash tests and benchmarks: the batch at a
//! given offset is always the same, so a recovered log can be checked byte
//! for byte against what the writer must have written.

use crate::storage::batch;
use runnel_model::core::Offset;

/// Records per batch at `offset` (1 to 3) and about 1 KB of payload.
pub fn batch_at(offset: Offset) -> Vec<u8> {
    let records = 1 + (offset % 3) as u32;
    batch::build(records, &payload_at(offset), offset as i64)
}

pub fn payload_at(offset: Offset) -> Vec<u8> {
    let len = 900 + (offset % 200) as usize;
    (0..len)
        .map(|i| (offset as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}
