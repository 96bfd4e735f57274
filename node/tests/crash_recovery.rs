//! Crash tests with a real process: `kill -9` a writer in the middle of
//! heavy appends, then damage the files (torn tail, flipped bytes, deleted
//! indexes) — every reopen recovers to the last valid batch and loses
//! nothing below the offset the writer reported as flushed.

use runnel::storage::disk_log::{BatchBytes, DiskLog, LogConfig, RecoveryReport};
use runnel::storage::{batch, torture};
use runnel_model::core::Offset;
use runnel_model::log::{LogError, PartitionLog};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SEGMENT_BYTES: u64 = 256 << 10;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> (DiskLog, RecoveryReport) {
    DiskLog::open(dir, config()).expect("recovery never fails on a damaged tail")
}

/// Every batch must be the one the writer wrote at its offset.
fn verify(log: &DiskLog) {
    let mut at: Offset = 0;
    while at < log.end_offset() {
        let records = log.read(at, log.end_offset(), 1 << 20).unwrap();
        for (h, bytes) in records.batches().unwrap() {
            assert_eq!(h.base_offset, at, "contiguous offsets");
            assert_eq!(
                &bytes[batch::HEADER_BYTES..],
                &torture::payload_at(at)[..],
                "batch at {at}"
            );
            at = h.end_offset();
        }
    }
}

/// Runs the writer, kills it with SIGKILL after `flushes` fsyncs, returns
/// the last offset it reported flushed.
fn kill_writer_after(dir: &Path, flushes: usize) -> Offset {
    let mut child = Command::new(env!("CARGO_BIN_EXE_log-torture"))
        .args([
            dir.to_str().unwrap(),
            "100000000",
            "7",
            &SEGMENT_BYTES.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("writer starts");
    let stdout = child.stdout.take().unwrap();
    let mut flushed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (seen, line) in BufReader::new(stdout).lines().enumerate() {
        let line = line.expect("writer output");
        flushed = line
            .strip_prefix("flushed ")
            .and_then(|n| n.parse().ok())
            .expect("flushed <offset>");
        if seen + 1 >= flushes || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    flushed
}

/// A log left by a killed writer and recovered once; returns its end.
fn crashed_and_recovered_log(dir: &Path) -> Offset {
    kill_writer_after(dir, 30);
    open(dir).0.end_offset()
}

fn segments(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn kill_9_during_heavy_appends_loses_nothing_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let flushed = kill_writer_after(dir.path(), 100);
    assert!(flushed > 0);
    let (log, report) = open(dir.path());
    assert!(
        log.end_offset() >= flushed,
        "lost flushed data: end {} < flushed {flushed}",
        log.end_offset()
    );
    assert!(report.segments > 1, "the writer rolled segments");
    verify(&log);

    // The writer restarts on the recovered log and carries on.
    drop(log);
    let again = kill_writer_after(dir.path(), 20);
    let (log, _) = open(dir.path());
    assert!(log.end_offset() >= again && again > flushed);
    verify(&log);
}

#[test]
fn a_torn_tail_is_cut_at_the_last_valid_batch() {
    let dir = tempfile::tempdir().unwrap();
    let end = crashed_and_recovered_log(dir.path());
    let last = segments(dir.path(), "log").pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    assert!(len > 100);
    // Cut mid-batch and force a full scan.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let (log, report) = open(dir.path());
    assert!(report.truncated_bytes > 0, "{report:?}");
    assert!(log.end_offset() < end && log.end_offset() > 0);
    verify(&log);
}

#[test]
fn a_flipped_byte_is_detected_and_what_precedes_it_kept() {
    // Positions across the segment: headers (offsets outside the CRC,
    // lengths, magic) and payloads alike.
    for per_mille in [3, 250, 500, 501, 502, 750, 997] {
        let dir = tempfile::tempdir().unwrap();
        let end = crashed_and_recovered_log(dir.path());
        let first = segments(dir.path(), "log").remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        let mut at = bytes.len() * per_mille / 1000;
        // The partition leader epoch (bytes 12..16 of a batch) is outside
        // the CRC and is not covered here: step over it.
        let mut pos = 0;
        while pos + batch::declared_size(&bytes[pos..]).unwrap() <= at {
            pos += batch::declared_size(&bytes[pos..]).unwrap();
        }
        if (pos + 12..pos + 16).contains(&at) {
            at = pos + 16;
        }
        bytes[at] ^= 0x40;
        std::fs::write(&first, &bytes).unwrap();
        std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
        let (log, report) = open(dir.path());
        assert!(
            report.corruption.is_some(),
            "flip at byte {at} not reported: {report:?}"
        );
        assert!(log.end_offset() < end);
        assert_eq!(
            segments(dir.path(), "log").len(),
            1,
            "segments after the corrupt one are removed"
        );
        verify(&log);
    }
}

#[test]
fn deleted_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let end = crashed_and_recovered_log(dir.path());
    for index in segments(dir.path(), "index") {
        std::fs::remove_file(index).unwrap();
    }
    let (log, report) = open(dir.path());
    assert!(
        report.indexes_rebuilt + report.segments_scanned >= report.segments,
        "{report:?}"
    );
    assert_eq!(log.end_offset(), end, "nothing lost");
    verify(&log);
    for index in segments(dir.path(), "index") {
        assert!(std::fs::metadata(index).unwrap().len() > 0);
    }
}

#[test]
fn a_corrupt_batch_from_a_client_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path());
    log.append_as_leader(BatchBytes(torture::batch_at(0).into()), 1)
        .unwrap();
    let size_before = std::fs::metadata(&segments(dir.path(), "log")[0])
        .unwrap()
        .len();
    let mut bad = torture::batch_at(log.end_offset());
    let n = bad.len();
    bad[n - 1] ^= 1;
    let mut two = torture::batch_at(log.end_offset());
    two.extend_from_slice(&bad);
    let err = log.append_as_leader(BatchBytes(two.into()), 1).unwrap_err();
    assert!(
        matches!(err, LogError::Corrupt(ref m) if m.contains("CRC")),
        "{err:?}"
    );
    assert_eq!(
        log.end_offset(),
        1,
        "the valid batch before it is not appended either"
    );
    assert_eq!(
        std::fs::metadata(&segments(dir.path(), "log")[0])
            .unwrap()
            .len(),
        size_before
    );
    let garbage = BatchBytes(vec![0xff; 10].into());
    assert!(matches!(
        log.append_as_leader(garbage, 1),
        Err(LogError::Corrupt(_))
    ));
}
