//! Runs one partition's replication state machine over the on-disk log:
//! executes its effects, the storage side of the node's driver.
//!
//! Group commit lives here: every `FlushLog` effect only records that a
//! flush is wanted; [`PartitionRunner::group_commit`] then runs one fsync
//! for all of them and feeds the completion back, releasing every produce
//! that was waiting for durability at once. Messages and timers are handed
//! to the caller (the network and clock belong to the runtime).

use crate::storage::disk_log::{BatchBytes, DiskLog};
use runnel_model::core::{Effect, NodeId, Offset};
use runnel_model::log::{LogError, PartitionLog};
use runnel_model::replication::{
    ProduceReply, ProduceRequest, Replica, ReplicaEffects, ReplicaTimer, ReplicationMessage,
};

pub type Message = ReplicationMessage<BatchBytes>;

/// What the runtime must do after an input.
#[derive(Debug, Default)]
pub struct Output {
    pub sends: Vec<(NodeId, Message)>,
    pub replies: Vec<ProduceReply>,
    pub timers_set: Vec<(ReplicaTimer, u64)>,
    pub timers_cancelled: Vec<ReplicaTimer>,
}

pub struct PartitionRunner {
    replica: Replica<DiskLog>,
    /// The highest offset some effect asked to make durable.
    flush_wanted: Option<Offset>,
    /// fsyncs run so far (one per group commit).
    pub fsyncs: u64,
}

impl PartitionRunner {
    pub fn new(replica: Replica<DiskLog>) -> Self {
        Self {
            replica,
            flush_wanted: None,
            fsyncs: 0,
        }
    }

    pub fn replica(&self) -> &Replica<DiskLog> {
        &self.replica
    }

    pub fn on_message(&mut self, from: NodeId, message: Message) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_message(from, message, &mut effects);
        self.execute(effects)
    }

    pub fn on_produce(&mut self, request: ProduceRequest<BatchBytes>) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_produce(request, &mut effects);
        self.execute(effects)
    }

    pub fn on_timer(&mut self, timer: ReplicaTimer) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_timer(timer, &mut effects);
        self.execute(effects)
    }

    /// Is a flush waiting (the runtime runs [`Self::group_commit`] soon)?
    pub fn flush_wanted(&self) -> bool {
        self.flush_wanted.is_some()
    }

    /// One fsync for every append so far, then the completion goes back to
    /// the state machine.
    pub fn group_commit(&mut self) -> Result<Output, LogError> {
        if self.flush_wanted.take().is_none() {
            return Ok(Output::default());
        }
        let flushed = self.replica.log_mut().flush()?;
        self.fsyncs += 1;
        let mut effects = ReplicaEffects::new();
        self.replica.on_flushed(flushed, &mut effects);
        Ok(self.execute(effects))
    }

    /// The link to `peer` broke: see `Replica::on_peer_disconnected`.
    pub fn on_peer_disconnected(&mut self, peer: NodeId) -> Output {
        let mut effects = ReplicaEffects::new();
        self.replica.on_peer_disconnected(peer, &mut effects);
        self.execute(effects)
    }

    /// Flushes everything appended so far (the periodic flush of async mode,
    /// which also moves the recovery point so restarts scan little).
    pub fn flush_now(&mut self) -> Result<Output, LogError> {
        if self.replica.log().flushed_offset() < self.replica.log().end_offset() {
            self.flush_wanted = Some(self.replica.log().end_offset());
        }
        self.group_commit()
    }

    fn execute(&mut self, mut effects: ReplicaEffects<BatchBytes>) -> Output {
        let mut out = Output::default();
        for effect in effects.drain() {
            match effect {
                Effect::Send { to, message } => out.sends.push((to, message)),
                Effect::SetTimer { timer, after_ms } => out.timers_set.push((timer, after_ms)),
                Effect::CancelTimer { timer } => out.timers_cancelled.push(timer),
                Effect::FlushLog { up_to } => {
                    self.flush_wanted = Some(self.flush_wanted.map_or(up_to, |o| o.max(up_to)));
                }
                Effect::Persist(()) => {}
                Effect::Reply(reply) => out.replies.push(reply),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch;
    use crate::storage::disk_log::LogConfig;
    use runnel_model::partition::PartitionRegistration;
    use runnel_model::replication::{Acks, FlushMode, ReplicaConfig};

    fn durable_leader(dir: &std::path::Path) -> PartitionRunner {
        let (log, _) = DiskLog::open(dir, LogConfig::default()).unwrap();
        let mut config = ReplicaConfig::new(0, 100);
        config.flush_mode = FlushMode::Durable;
        let mut runner = PartitionRunner::new(Replica::recover(config, log));
        let reg = PartitionRegistration::new(vec![0], |_| true);
        runner.on_message(100, ReplicationMessage::PartitionState(reg));
        assert!(runner.replica().is_leader());
        runner
    }

    #[test]
    fn many_durable_produces_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = durable_leader(dir.path());
        for id in 0..100 {
            for acks in [Acks::Leader, Acks::All] {
                let records = BatchBytes(batch::build(1, b"x", 0).into());
                let out = runner.on_produce(ProduceRequest {
                    id: id * 2 + (acks == Acks::All) as u64,
                    records,
                    acks,
                });
                assert!(
                    out.replies.is_empty(),
                    "nothing is acknowledged before the fsync"
                );
            }
        }
        assert!(runner.flush_wanted());
        let out = runner.group_commit().unwrap();
        assert_eq!(runner.fsyncs, 1);
        assert_eq!(
            out.replies.len(),
            200,
            "every waiting produce answered by one fsync"
        );
        assert!(out.replies.iter().all(|r| r.result.is_ok()));
        assert_eq!(runner.replica().log().flushed_offset(), 200);
        assert_eq!(runner.replica().high_watermark(), 200);
    }

    #[test]
    fn a_corrupt_batch_is_answered_with_corrupt_message_and_nothing_appended() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = durable_leader(dir.path());
        let mut bytes = batch::build(1, b"x", 0);
        bytes[batch::HEADER_BYTES] ^= 1;
        let out = runner.on_produce(ProduceRequest {
            id: 7,
            records: BatchBytes(bytes.into()),
            acks: Acks::All,
        });
        assert!(matches!(
            &out.replies[..],
            [ProduceReply {
                id: 7,
                result: Err(runnel_model::replication::ProduceError::Log(
                    LogError::Corrupt(_)
                ))
            }]
        ));
        assert_eq!(runner.replica().log().end_offset(), 0);
        assert!(!runner.flush_wanted());
    }
}
