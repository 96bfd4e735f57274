//! What a durable flush costs and what it promises. One test in its own
//! binary: it reads the process-wide fsync counter, which tests running in
//! parallel would disturb.
//!
//! Durable mode acknowledges after `flush`, so `flush` must be one fsync
//! (the active segment's data) once the log's directories are on disk; the
//! index files and the recovery point wait for `checkpoint`. A power loss
//! right after `flush` must still keep every flushed batch: recovery scans
//! past the recovery point and rebuilds those indexes from the batches.

use runnel::io::fsyncs;
use runnel::storage::batch;
use runnel::storage::disk_log::{BatchBytes, DiskLog, LogConfig};
use runnel_model::log::PartitionLog;

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn append(log: &mut DiskLog, n: u32) {
    for i in 0..n {
        let b = batch::build(1, &[i as u8; 200], i64::from(i));
        log.append_as_leader(BatchBytes(b.into()), 1).unwrap();
    }
}

fn recovery_point_file(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("recovery-point"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

#[test]
fn a_durable_flush_is_one_fsync_and_survives_power_loss() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    let (mut log, _) = DiskLog::open(&dir, config()).unwrap();
    append(&mut log, 5);
    // The first flush also makes the new directory's entries durable.
    log.flush().unwrap();

    append(&mut log, 5);
    let before = fsyncs();
    assert_eq!(log.flush().unwrap(), 10);
    assert_eq!(fsyncs() - before, 1, "one fsync per durable flush");
    assert!(
        recovery_point_file(&dir).unwrap_or(0) < 10,
        "the flush leaves the recovery point to the checkpoint"
    );

    // Power loss now: whatever was not fsynced is gone. Every flushed batch
    // is still there, found by scanning past the recovery point.
    append(&mut log, 3);
    log.lose_unflushed_bytes().unwrap();
    let (log, report) = DiskLog::open(&dir, config()).unwrap();
    assert_eq!(log.end_offset(), 10, "{report:?}");
    for offset in 0..10 {
        let read = log.read(offset, 10, 1 << 20).unwrap();
        let (h, _) = read.batches().unwrap()[0];
        assert_eq!(h.base_offset, offset);
    }

    // The checkpoint syncs the index files and moves the recovery point.
    let mut log = log;
    append(&mut log, 2);
    let before = fsyncs();
    assert_eq!(log.checkpoint().unwrap(), 12);
    assert!(
        fsyncs() - before >= 3,
        "data, index and time index at least"
    );
    assert_eq!(recovery_point_file(&dir), Some(12));
    assert_eq!(log.recovery_point(), 12);
}
