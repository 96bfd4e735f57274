//! DeleteRecords (Kafka's API 21) on the node: the model moves the
//! leader's log start (`Replica::delete_records`: on the leader, committed
//! records only); the answer waits, as Kafka's `DelayedDeleteRecords`, until
//! every in-sync replica has moved its start as far
//! (`Replica::low_watermark`). The client's timeout bounds the wait (the
//! front end stops listening; the entry goes at the next check).

use super::*;
use runnel_model::replication::DeleteRecordsError;

/// Answers waiting on one partition. Each is one DeleteRecords request's
/// partition, and a connection has one request in flight, so
/// `max.connections` bounds them; this bound holds even so.
const WAITING_MAX: usize = 1_024;

struct PendingDelete {
    /// Answered once the low watermark reaches it.
    target: Offset,
    reply: oneshot::Sender<Result<i64, PartError>>,
}

#[derive(Default)]
pub(super) struct PendingDeletes {
    waiting: Vec<PendingDelete>,
}

impl PendingDeletes {
    /// Answers what the replica now allows: the low watermark reached
    /// (success), or leadership lost (NOT_LEADER_OR_FOLLOWER, retriable).
    /// Entries whose caller stopped waiting go.
    pub(super) fn complete(&mut self, replica: &Replica<DiskLog>) {
        if self.waiting.is_empty() {
            return;
        }
        let low = replica.low_watermark();
        for d in std::mem::take(&mut self.waiting) {
            match low {
                None => {
                    let _ = d.reply.send(Err(PartError::NotLeaderOrFollower));
                }
                Some(low) if low >= d.target => {
                    let _ = d.reply.send(Ok(low as i64));
                }
                Some(_) if d.reply.is_closed() => {}
                Some(_) => self.waiting.push(d),
            }
        }
    }

    fn push(&mut self, d: PendingDelete) {
        if self.waiting.len() >= WAITING_MAX {
            self.waiting.retain(|d| !d.reply.is_closed());
        }
        if self.waiting.len() >= WAITING_MAX {
            // Kafka's answer when a delayed operation cannot complete in time.
            let _ = d.reply.send(Err(PartError::RequestTimedOut));
            return;
        }
        self.waiting.push(d);
    }
}

impl Node {
    pub(super) fn delete_records(
        &mut self,
        key: (String, u32),
        offset: i64,
        reply: oneshot::Sender<Result<i64, PartError>>,
    ) {
        let missing = self.missing_replica_error(&key);
        let Some(slot) = self.slot_mut(&key) else {
            let _ = reply.send(Err(missing));
            return;
        };
        // -1 is Kafka's "up to the high watermark"; the front end refuses
        // every other negative offset.
        let requested = u64::try_from(offset).ok();
        let (result, out) = slot.runner.delete_records(requested);
        match result {
            Ok(start) => slot.deletes.push(PendingDelete {
                target: requested.unwrap_or(start),
                reply,
            }),
            Err(DeleteRecordsError::NotLeaderOrFollower) => {
                let _ = reply.send(Err(PartError::NotLeaderOrFollower));
            }
            Err(DeleteRecordsError::OffsetOutOfRange) => {
                let _ = reply.send(Err(PartError::OffsetOutOfRange));
            }
        }
        // Completes the wait at once where no follower lags (RF 1, or
        // followers already there), and sends the followers the news.
        self.on_runner_output(&key, out);
    }
}
