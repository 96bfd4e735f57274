//! Test tool: appends deterministic batches to a `DiskLog` as fast as it can,
//! fsyncing every `flush_every` batches and printing `flushed <offset>` after
//! each fsync, so a test can `kill -9` it mid-write and check recovery.
//!
//! Usage: log-torture <dir> <end_offset> <flush_every> [segment_bytes]

use runnel::storage::disk_log::{BatchBytes, DiskLog, LogConfig};
use runnel::storage::torture;
use runnel_model::log::PartitionLog;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: log-torture <dir> <end_offset> <flush_every> [segment_bytes]");
        std::process::exit(2);
    }
    let parse = |i: usize, what: &str| -> u64 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("log-torture: {what} must be a number, got {:?}", args[i]);
            std::process::exit(2)
        })
    };
    let (target, flush_every) = (parse(2, "end_offset"), parse(3, "flush_every").max(1));
    let segment_bytes = if args.len() > 4 {
        parse(4, "segment_bytes")
    } else {
        1 << 20
    };
    let config = LogConfig {
        segment_bytes,
        ..LogConfig::default()
    };
    let (mut log, _) = DiskLog::open(std::path::Path::new(&args[1]), config).unwrap_or_else(|e| {
        eprintln!("log-torture: cannot open log: {e:?}");
        std::process::exit(1)
    });
    let mut out = std::io::stdout().lock();
    let mut appended = 0u64;
    while log.end_offset() < target {
        let batch = torture::batch_at(log.end_offset());
        if let Err(e) = log.append_as_leader(BatchBytes(batch.into()), 1) {
            eprintln!("log-torture: append failed: {e:?}");
            std::process::exit(1);
        }
        appended += 1;
        if appended.is_multiple_of(flush_every) {
            let flushed = log.flush().expect("flush");
            writeln!(out, "flushed {flushed}").expect("stdout");
            out.flush().expect("stdout");
        }
    }
}
