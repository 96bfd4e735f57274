//! Storage: the one module that touches the disk.
//!
//! - [`batch`]: Kafka v2 record batches — validation and offset patching.
//! - [`disk_log`]: a partition's log as Kafka lays it out (segments named by
//!   their 20-digit base offset, `.log` + sparse `.index`), the leader-epoch
//!   checkpoint, flushing, recovery from the recovery point, truncation. It
//!   implements the model's [`runnel_model::log::PartitionLog`], so the
//!   replication state machine runs over it unchanged.
//! - [`cleaner`]: log compaction's pass over closed segments (off the
//!   event loop), deciding by the model's rule.
//! - [`file_cache`]: the log files open at once, on a descriptor budget
//!   (least recently used closed, reopened on use).
//! - [`producer_snapshot`]: the idempotent producers' table, snapshotted
//!   at segment rolls so that opening a log folds only its tail.
//! - [`log_dirs`]: `log.dirs` — `meta.properties`, partition placement,
//!   the high-watermark checkpoint.
//! - [`checkpoint`]: small files written atomically (temp, fsync, rename,
//!   fsync dir).

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod disk_log;
pub mod file_cache;
pub mod log_dirs;
pub mod partition_metadata;
pub mod producer_snapshot;
pub mod torture;
