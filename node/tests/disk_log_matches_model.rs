//! The on-disk log against the model's in-memory log: random sequences of
//! leader and follower appends, truncations, epoch starts, flushes, power
//! losses and restarts must give identical observable results — offsets,
//! epochs, contents, and what survives a crash.

use proptest::prelude::*;
use runnel::storage::batch::{self, HEADER_BYTES};
use runnel::storage::disk_log::{BatchBytes, DiskLog, LogConfig};
use runnel::storage::file_cache::FileBudget;
use runnel_model::core::{LeaderEpoch, Offset};
use runnel_model::log::{MemBatch, MemLog, MemRecords, PartitionLog};
use std::path::Path;

#[derive(Clone, Debug)]
enum Op {
    Leader {
        batches: Vec<(u32, Vec<u8>)>,
        new_epoch: bool,
    },
    Follower {
        batches: Vec<(u32, Vec<u8>)>,
        new_epoch: bool,
    },
    Truncate {
        per_mille: u16,
    },
    AssignEpoch,
    Flush,
    PowerLoss,
    Restart,
    Read {
        from_per_mille: u16,
    },
}

fn batches() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    prop::collection::vec((1u32..4, prop::collection::vec(any::<u8>(), 0..40)), 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (batches(), any::<bool>()).prop_map(|(batches, new_epoch)| Op::Leader { batches, new_epoch }),
        2 => (batches(), any::<bool>()).prop_map(|(batches, new_epoch)| Op::Follower { batches, new_epoch }),
        1 => (0u16..1000).prop_map(|per_mille| Op::Truncate { per_mille }),
        1 => Just(Op::AssignEpoch),
        2 => Just(Op::Flush),
        1 => Just(Op::PowerLoss),
        1 => Just(Op::Restart),
        2 => (0u16..1000).prop_map(|from_per_mille| Op::Read { from_per_mille }),
    ]
}

fn config() -> LogConfig {
    // Tiny segments and index interval so rolls and index lookups happen,
    // and a budget of descriptors so small that files close and reopen.
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        roll_ms: None,
        files: FileBudget::new(runnel::storage::file_cache::CAPACITY_MIN),
    }
}

fn open(dir: &Path) -> DiskLog {
    DiskLog::open(dir, config()).expect("opens").0
}

/// (base offset, epoch, record count, payload) of every batch.
fn disk_contents(log: &DiskLog, from: Offset) -> Vec<(Offset, LeaderEpoch, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < log.end_offset() {
        let records = log.read(at, log.end_offset(), usize::MAX).expect("reads");
        let batches = records.batches().expect("valid");
        assert!(!batches.is_empty(), "a read below the end returns a batch");
        for (h, bytes) in batches {
            out.push((
                h.base_offset,
                h.leader_epoch,
                h.record_count,
                bytes[HEADER_BYTES..].to_vec(),
            ));
            at = h.end_offset();
        }
    }
    out
}

fn mem_contents(log: &MemLog<Vec<u8>>, from: Offset) -> Vec<(Offset, LeaderEpoch, u32, Vec<u8>)> {
    log.batches()
        .iter()
        .filter(|b| b.end_offset() > from)
        .map(|b| {
            (
                b.base_offset,
                b.leader_epoch,
                b.record_count,
                b.payload.clone(),
            )
        })
        .collect()
}

fn assert_same(disk: &DiskLog, mem: &MemLog<Vec<u8>>, max_epoch: LeaderEpoch) {
    assert_eq!(disk.end_offset(), mem.end_offset(), "log end offset");
    assert_eq!(
        disk.flushed_offset(),
        mem.flushed_offset(),
        "flushed offset"
    );
    assert_eq!(disk.latest_epoch(), mem.latest_epoch(), "latest epoch");
    for e in 0..=max_epoch + 1 {
        assert_eq!(
            disk.end_offset_for_epoch(e),
            mem.end_offset_for_epoch(e),
            "end offset for epoch {e}"
        );
    }
    for o in 0..disk.end_offset() {
        assert_eq!(
            disk.epoch_of_offset(o),
            mem.epoch_of_offset(o),
            "epoch of offset {o}"
        );
    }
    assert_eq!(disk_contents(disk, 0), mem_contents(mem, 0), "contents");
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = open(dir.path());
    let mut mem = MemLog::<Vec<u8>>::new();
    let mut epoch: LeaderEpoch = 0;
    for op in ops {
        match op {
            Op::Leader { batches, new_epoch } => {
                epoch += u32::from(new_epoch);
                let bytes: Vec<u8> = batches
                    .iter()
                    .flat_map(|(n, p)| batch::build(*n, p, 0))
                    .collect();
                let mem_records = MemRecords(
                    batches
                        .iter()
                        .map(|(n, p)| MemBatch::new(*n, p.clone()))
                        .collect(),
                );
                let d = disk.append_as_leader(BatchBytes(bytes.into()), epoch);
                let m = mem.append_as_leader(mem_records, epoch);
                assert_eq!(d, m, "leader append");
            }
            Op::Follower { batches, new_epoch } => {
                epoch += u32::from(new_epoch);
                let mut base = mem.end_offset();
                let mut bytes = Vec::new();
                let mut mem_batches = Vec::new();
                for (n, p) in &batches {
                    let mut b = batch::build(*n, p, 0);
                    batch::patch(&mut b, base, epoch);
                    bytes.extend_from_slice(&b);
                    mem_batches.push(MemBatch {
                        base_offset: base,
                        leader_epoch: epoch,
                        record_count: *n,
                        payload: p.clone(),
                    });
                    base += Offset::from(*n);
                }
                let d = disk.append_as_follower(BatchBytes(bytes.into()));
                let m = mem.append_as_follower(MemRecords(mem_batches));
                assert_eq!(d, m, "follower append");
            }
            Op::Truncate { per_mille } => {
                let to = mem.end_offset() * Offset::from(per_mille) / 1000;
                disk.truncate_to(to);
                mem.truncate_to(to);
            }
            Op::AssignEpoch => {
                epoch += 1;
                disk.assign_epoch_start(epoch, disk.end_offset());
                mem.assign_epoch_start(epoch, mem.end_offset());
            }
            Op::Flush => {
                assert_eq!(disk.flush(), mem.flush());
            }
            Op::PowerLoss => {
                disk.lose_unflushed_bytes().unwrap();
                disk = open(dir.path());
                mem.crash();
            }
            Op::Restart => {
                // A process crash keeps the page cache: nothing is lost,
                // and recovery makes it durable (and, as Kafka's load does,
                // drops an epoch that starts at the log end).
                drop(disk);
                disk = open(dir.path());
                mem.flush().unwrap();
                mem.crash();
            }
            Op::Read { from_per_mille } => {
                let from = mem.end_offset() * Offset::from(from_per_mille) / 1000;
                let records = disk.read(from, disk.end_offset(), 1).unwrap();
                if from < disk.end_offset() {
                    let batches = records.batches().unwrap();
                    assert_eq!(
                        batches.len(),
                        1,
                        "max bytes 1 still returns one whole batch"
                    );
                    let h = batches[0].0;
                    assert!(
                        h.base_offset <= from && from < h.end_offset(),
                        "the batch containing {from}"
                    );
                }
                assert_eq!(
                    disk_contents(&disk, from),
                    mem_contents(&mem, from),
                    "read from {from}"
                );
            }
        }
        assert_same(&disk, &mem, epoch);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
    #[test]
    fn disk_log_behaves_like_the_model_log(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
