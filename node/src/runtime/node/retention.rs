//! Retention (Kafka's `log.retention.ms|minutes|hours` and
//! `log.retention.bytes`, with the topic's `retention.ms` and
//! `retention.bytes` over them), checked every
//! `log.retention.check.interval.ms`. Each replica deletes its own old
//! segments, as each Kafka broker does, and only below its high watermark
//! (`DiskLog::enforce_retention`), so nothing uncommitted goes. A reader
//! already sending a deleted segment keeps its open file (the bytes live
//! until it closes), a fetch below the new start gets OFFSET_OUT_OF_RANGE
//! (the consumer's `auto.offset.reset` applies), and a follower that was
//! away longer than retention restarts its log at the leader's start (the
//! model's `on_offset_out_of_range`).

use super::*;
use crate::storage::disk_log::RetentionPolicy;
use std::time::{SystemTime, UNIX_EPOCH};

/// Partitions checked in one tick at most, and partitions that delete
/// segments in one tick at most: deleting costs unlinks and a few fsyncs on
/// the event loop, so a node that finds weeks of old segments at once (an
/// upgrade, a lowered `retention.ms`) spreads them over many ticks instead
/// of stalling its heartbeats.
const RETENTION_CHECKS_PER_TICK_MAX: usize = 256;
const RETENTION_DELETIONS_PER_TICK_MAX: usize = 4;

impl Node {
    pub(super) fn retention_check(&mut self, now: Instant) {
        let interval = Duration::from_millis(self.s.retention_check_interval_ms);
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if b.retention_queue.is_empty() {
            if now.duration_since(b.last_retention_check) < interval {
                return;
            }
            b.last_retention_check = now;
            // Bounded by the slots; drained a tick at a time.
            b.retention_queue = b.slots.keys().cloned().collect();
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let (mut checked, mut deleting) = (0, 0);
        while checked < RETENTION_CHECKS_PER_TICK_MAX && deleting < RETENTION_DELETIONS_PER_TICK_MAX
        {
            let Some(key) = self
                .broker
                .as_mut()
                .and_then(|b| b.retention_queue.pop_front())
            else {
                break;
            };
            checked += 1;
            // Kafka checks every `producer.id.expiration.check.interval.ms`
            // (10 min); here with retention (5 min by default).
            let expiration_ms = self.s.producer_id_expiration_ms;
            if let Some(slot) = self.slot_mut(&key) {
                let gone = slot.runner.expire_producers(now_ms, expiration_ms);
                if gone > 0 {
                    tracing::debug!("{}-{}: {gone} idle producer id(s) expired", key.0, key.1);
                }
            }
            let Some(policy) = self.retention_of(&key.0) else {
                continue; // compacted: never deleted by age or size
            };
            let Some(slot) = self.slot_mut(&key) else {
                continue;
            };
            match slot.runner.enforce_retention(now_ms, policy) {
                Ok(0) => {}
                Ok(deleted) => {
                    deleting += 1;
                    let start = slot.runner.replica().log().start_offset();
                    tracing::info!(
                        "{}-{}: retention deleted {deleted} segment(s); the log now starts at {start}",
                        key.0,
                        key.1
                    );
                    // Readers parked on this partition see the new start.
                    self.on_runner_output(&key, Output::default());
                }
                Err(e) => {
                    tracing::error!("{}-{}: retention failed: {e:?}", key.0, key.1);
                    self.take_offline_if_failed(&key);
                }
            }
        }
    }

    /// The broker's policy with the topic's own keys over it; `None` for a
    /// topic whose `cleanup.policy` does not include `delete` (Kafka deletes
    /// by age or size only then; `__consumer_offsets` is `compact`).
    fn retention_of(&self, topic: &str) -> Option<RetentionPolicy> {
        let configs = self
            .meta
            .as_ref()
            .and_then(|m| m.image.topics.get(topic))
            .map(|t| &t.configs);
        topic_retention(self.s.retention, configs)
    }
}

/// Does the topic's `cleanup.policy` (default `delete`) let records be
/// deleted, by retention or DeleteRecords? Not a compacted topic's
/// (`compact` alone, `__consumer_offsets` among them).
pub fn cleanup_policy_deletes(configs: Option<&BTreeMap<String, String>>) -> bool {
    cleanup_policy(configs).is_none_or(|p| p.split(',').any(|p| p.trim() == "delete"))
}

/// Does the topic's `cleanup.policy` include `compact` (keys required)?
pub fn cleanup_policy_compacts(configs: Option<&BTreeMap<String, String>>) -> bool {
    cleanup_policy(configs).is_some_and(|p| p.split(',').any(|p| p.trim() == "compact"))
}

fn cleanup_policy(configs: Option<&BTreeMap<String, String>>) -> Option<&String> {
    configs.and_then(|c| c.get("cleanup.policy"))
}

/// `retention.ms` / `retention.bytes` of a topic over the broker's
/// `log.retention.*`; -1 is "keep forever", as in Kafka. A value that is
/// not a number cannot be stored (the controller refuses it), and is
/// ignored here if an older log holds one.
pub(super) fn topic_retention(
    broker: RetentionPolicy,
    configs: Option<&BTreeMap<String, String>>,
) -> Option<RetentionPolicy> {
    if !cleanup_policy_deletes(configs) {
        return None;
    }
    let key = |name: &str| -> Option<Option<u64>> {
        let value: i64 = configs?.get(name)?.trim().parse().ok()?;
        Some(u64::try_from(value).ok())
    };
    Some(RetentionPolicy {
        retention_ms: key("retention.ms").unwrap_or(broker.retention_ms),
        retention_bytes: key("retention.bytes").unwrap_or(broker.retention_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_keys_override_the_broker_and_minus_one_keeps_forever() {
        let broker = RetentionPolicy {
            retention_ms: Some(7_000),
            retention_bytes: None,
        };
        assert_eq!(topic_retention(broker, None), Some(broker));
        let configs = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "1048576".to_string()),
        ]);
        assert_eq!(
            topic_retention(broker, Some(&configs)),
            Some(RetentionPolicy {
                retention_ms: None,
                retention_bytes: Some(1 << 20),
            })
        );
        let junk = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
        assert_eq!(topic_retention(broker, Some(&junk)), Some(broker));
        // Compacted topics (`__consumer_offsets` among them) are never cut
        // by age or size; `compact,delete` is.
        let policy = |p: &str| BTreeMap::from([("cleanup.policy".to_string(), p.to_string())]);
        assert_eq!(topic_retention(broker, Some(&policy("compact"))), None);
        assert_eq!(
            topic_retention(broker, Some(&policy("compact,delete"))),
            Some(broker)
        );
        assert_eq!(
            topic_retention(broker, Some(&policy("delete"))),
            Some(broker)
        );
    }
}
