//! Reads for the Kafka front end: Fetch (what the model says may be read,
//! where the log says it is) and ListOffsets.

use super::*;

impl Node {
    pub(super) fn fetch_one(&mut self, p: FetchPart, waker: &Arc<Notify>) -> FetchOutcome {
        let fetch_above_hw = self.s.test_bugs.fetch_above_high_watermark;
        let key = (p.topic, p.partition);
        let missing = self.missing_replica_error(&key);
        let Some(slot) = self.slot_mut(&key) else {
            let e = missing;
            return FetchOutcome {
                high_watermark: -1,
                log_start_offset: -1,
                result: Err(e),
            };
        };
        slot.parked.park(waker);
        let replica = slot.runner.replica();
        let high_watermark = replica.high_watermark() as i64;
        let log_start_offset = replica.log().start_offset() as i64;
        let result = if p.offset < 0 {
            Err(PartError::OffsetOutOfRange)
        } else if fetch_above_hw && replica.is_leader() {
            // Seeded bug (tests only): serve what is not committed yet.
            let end = replica.log().end_offset();
            let from = (p.offset as u64).max(replica.log().start_offset());
            match from < end {
                true => replica
                    .log()
                    .locate(from, end, p.max_bytes)
                    .map_err(|e| PartError::Storage(format!("{e:?}"))),
                false => Ok(None),
            }
        } else {
            // The model says what may be read; the log says where it is.
            replica
                .committed_range(p.offset as u64)
                .map_err(|e| match e {
                    FetchError::NotLeaderOrFollower => PartError::NotLeaderOrFollower,
                    FetchError::OffsetOutOfRange => PartError::OffsetOutOfRange,
                    FetchError::Log(e) => PartError::Storage(format!("{e:?}")),
                })
                .and_then(|(from, until)| {
                    replica
                        .log()
                        .locate(from, until, p.max_bytes)
                        .map_err(|e| PartError::Storage(format!("{e:?}")))
                })
        };
        FetchOutcome {
            high_watermark,
            log_start_offset,
            result,
        }
    }

    pub(super) fn list_offset(
        &mut self,
        key: &(String, u32),
        timestamp: i64,
    ) -> Result<ListedOffset, PartError> {
        let missing = self.missing_replica_error(key);
        let Some(slot) = self.slot_mut(key) else {
            return Err(missing);
        };
        let replica = slot.runner.replica();
        let Some(leader_epoch) = replica.leader_epoch().filter(|_| replica.is_leader()) else {
            return Err(PartError::NotLeaderOrFollower);
        };
        // Kafka's Partition.fetchOffsetForTimestamp for a client: nothing
        // past the high watermark (the last stable offset, without
        // transactions) is visible.
        let log = replica.log();
        let hw = replica.high_watermark();
        let epoch_of = |o: u64| log.epoch_of_offset(o).map_or(-1, |e| e as i32);
        let storage = |e: runnel_model::log::LogError| PartError::Storage(format!("{e:?}"));
        let found = match timestamp {
            // LATEST: the high watermark, with the leader's epoch.
            -1 => Some(ListedOffset {
                offset: hw as i64,
                timestamp: -1,
                leader_epoch: leader_epoch as i32,
            }),
            // EARLIEST and EARLIEST_LOCAL (KIP-405; all of it is local).
            -2 | -4 => {
                let start = log.start_offset();
                Some(ListedOffset {
                    offset: start as i64,
                    timestamp: -1,
                    leader_epoch: epoch_of(start),
                })
            }
            // MAX_TIMESTAMP (KIP-734): the first record with the largest timestamp.
            -3 => log
                .max_timestamp_record()
                .map_err(storage)?
                .map(|(o, t)| ListedOffset {
                    offset: o as i64,
                    timestamp: t,
                    leader_epoch: epoch_of(o),
                }),
            // The first record whose timestamp is at or after ts (any other
            // negative ts too, as Kafka looks it up like a time).
            ts => log
                .record_for_timestamp(ts)
                .map_err(storage)?
                .map(|(o, t)| ListedOffset {
                    offset: o as i64,
                    timestamp: t,
                    leader_epoch: epoch_of(o),
                }),
        };
        let special = matches!(timestamp, -1 | -2 | -4);
        let visible = found.filter(|f| special || (f.offset as u64) < hw);
        Ok(visible.unwrap_or(ListedOffset::NONE))
    }
}
