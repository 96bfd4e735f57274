//! Storage benchmark: prints append MB/s for 1 KB-record batches in
//! page-cache and durable modes next to the raw sequential-write bandwidth
//! measured in the same run, read MB/s, and recovery time.
//!
//! `cargo run --release -p runnel --example log_bench -- [MB] [dir]`

use runnel::storage::batch;
use runnel::storage::disk_log::{BatchBytes, DiskLog, LogConfig};
use runnel_model::log::PartitionLog;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: u32 = 16;
const BYTES_PER_FSYNC: usize = 1 << 20;

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn raw_write(path: &Path, total: usize, chunk: &[u8], fsync_every: Option<usize>) -> f64 {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let start = Instant::now();
    let mut written = 0;
    let mut since_sync = 0;
    while written < total {
        f.write_all(chunk).unwrap();
        written += chunk.len();
        since_sync += chunk.len();
        if fsync_every.is_some_and(|n| since_sync >= n) {
            f.sync_data().unwrap();
            since_sync = 0;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    mb_per_s(written, secs)
}

fn log_append(dir: &Path, total: usize, batch: &[u8], fsync_every: Option<usize>) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let (mut log, _) = DiskLog::open(dir, LogConfig::default()).unwrap();
    let bytes = bytes::Bytes::copy_from_slice(batch);
    let start = Instant::now();
    let mut written = 0;
    let mut since_sync = 0;
    while written < total {
        log.append_as_leader(BatchBytes(bytes.clone()), 1).unwrap();
        written += batch.len();
        since_sync += batch.len();
        if fsync_every.is_some_and(|n| since_sync >= n) {
            log.flush().unwrap();
            since_sync = 0;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    mb_per_s(written, secs)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total_mb: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(512);
    let base = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("runnel-log-bench");
    std::fs::create_dir_all(&base).unwrap();
    let total = total_mb << 20;
    let payload = vec![0x5au8; RECORD_BYTES * RECORDS_PER_BATCH as usize];
    let batch = batch::build(RECORDS_PER_BATCH, &payload, 0);
    println!("log_bench: {total_mb} MB, batches of {RECORDS_PER_BATCH} x {RECORD_BYTES} B records ({} B), fsync every {} KB in durable mode", batch.len(), BYTES_PER_FSYNC >> 10);

    let raw_cache = raw_write(&base.join("raw"), total, &batch, None);
    let log_cache = log_append(&base.join("log-cache"), total, &batch, None);
    let raw_sync = raw_write(&base.join("raw"), total / 4, &batch, Some(BYTES_PER_FSYNC));
    let log_sync = log_append(
        &base.join("log-sync"),
        total / 4,
        &batch,
        Some(BYTES_PER_FSYNC),
    );
    println!("raw sequential write (page cache):   {raw_cache:8.1} MB/s");
    println!(
        "log append, page-cache mode:         {log_cache:8.1} MB/s  ({:.0}% of raw)",
        100.0 * log_cache / raw_cache
    );
    println!("raw write + fsync every 1 MB:        {raw_sync:8.1} MB/s");
    println!("log append, durable (fsync / 1 MB):  {log_sync:8.1} MB/s  ({:.0}% of raw at the same bytes per fsync)", 100.0 * log_sync / raw_sync);

    // Read back the page-cache log.
    let dir = base.join("log-cache");
    let (log, _) = DiskLog::open(&dir, LogConfig::default()).unwrap();
    let start = Instant::now();
    let mut at = 0;
    let mut read = 0;
    while at < log.end_offset() {
        let r = log.read(at, log.end_offset(), 1 << 20).unwrap();
        read += r.0.len();
        let last = r
            .batches()
            .unwrap()
            .last()
            .map(|(h, _)| h.end_offset())
            .unwrap();
        at = last;
    }
    println!(
        "log read (warm page cache, 1 MB fetches): {:8.1} MB/s",
        mb_per_s(read, start.elapsed().as_secs_f64())
    );
    drop(log);

    let start = Instant::now();
    let (log, report) = DiskLog::open(&dir, LogConfig::default()).unwrap();
    println!(
        "recovery, clean (recovery point at end): {:.3} s for {total_mb} MB in {} segments",
        start.elapsed().as_secs_f64(),
        report.segments
    );
    drop(log);
    std::fs::remove_file(dir.join("recovery-point")).unwrap();
    let start = Instant::now();
    let (log, report) = DiskLog::open(&dir, LogConfig::default()).unwrap();
    println!(
        "recovery, full scan with CRC checks:     {:.3} s ({} segments scanned)",
        start.elapsed().as_secs_f64(),
        report.segments_scanned
    );
    drop(log);
    std::fs::remove_dir_all(&base).unwrap();
}
