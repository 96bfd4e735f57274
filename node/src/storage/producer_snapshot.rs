//! The producer table's snapshot (Kafka's producer-state `.snapshot`
//! files): `<partition dir>/producer-state`, written atomically when the
//! log rolls a segment, so that opening a partition folds only the batch
//! headers after it, not the whole log (a 1 GiB segment of 1 KiB batches
//! is about a million header reads).
//!
//! Layout: magic `RPS2`, CRC-32C of the rest, then postcard of
//! `(offset, last_epoch, table)`: the table is the fold of the log below
//! `offset`, and `last_epoch` the leader epoch of the batch ending there.
//! A snapshot is used only if its offset lies within the log and the log's
//! epoch at `offset - 1` is still `last_epoch`: a log cut below it (power
//! loss, a follower's truncation) and written again differs there, as
//! the epoch rules make every rewritten offset carry a newer epoch. A file
//! that is too long, damaged or of another layout is ignored, and the
//! table is folded from the log start.

use crate::io::fs;
use crate::storage::checkpoint::write_atomically;
use runnel_model::core::{LeaderEpoch, Offset};
use runnel_model::idempotence::ProducerTable;
use std::io;
use std::path::Path;

const FILE: &str = "producer-state";
/// `RPS2`: producers carry their last batch's timestamp (expiration);
/// an `RPS1` file is of another layout and ignored (the table is folded).
const MAGIC: &[u8; 4] = b"RPS2";
/// The largest snapshot read back: a table of ~100,000 producers.
const SNAPSHOT_BYTES_MAX: u64 = 64 << 20;

/// A table and where in the log it stands.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub offset: Offset,
    pub last_epoch: Option<LeaderEpoch>,
    pub table: ProducerTable,
}

/// Writes the snapshot (temp file, fsync, rename, fsync directory).
pub fn write(dir: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let body = postcard::to_stdvec(&(snapshot.offset, snapshot.last_epoch, &snapshot.table))
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut bytes = Vec::with_capacity(8 + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    write_atomically(&dir.join(FILE), &bytes)
}

/// The snapshot in `dir`, if there is a whole one.
pub fn read(dir: &Path) -> Option<Snapshot> {
    let path = dir.join(FILE);
    if fs::metadata(&path).ok()?.len() > SNAPSHOT_BYTES_MAX {
        return None;
    }
    let bytes = fs::read(&path).ok()?;
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let body = &bytes[8..];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let (offset, last_epoch, table) = postcard::from_bytes(body).ok()?;
    Some(Snapshot {
        offset,
        last_epoch,
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_model::idempotence::ProducerBatch;

    #[test]
    fn a_snapshot_reads_back_and_a_damaged_one_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let mut table = ProducerTable::default();
        table.record(&ProducerBatch {
            producer_id: 7,
            producer_epoch: 1,
            first_sequence: 0,
            record_count: 3,
            base_offset: 10,
            max_timestamp_ms: 1_000,
        });
        let snapshot = Snapshot {
            offset: 13,
            last_epoch: Some(2),
            table,
        };
        write(d.path(), &snapshot).unwrap();
        assert_eq!(read(d.path()), Some(snapshot));
        let path = d.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(d.path()), None, "a damaged snapshot is not trusted");
        std::fs::write(&path, b"RPS1").unwrap();
        assert_eq!(read(d.path()), None);
    }
}
