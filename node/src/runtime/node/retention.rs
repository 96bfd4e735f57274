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

impl Node {
    pub(super) fn retention_check(&mut self, now: Instant) {
        let interval = Duration::from_millis(self.s.retention_check_interval_ms);
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if now.duration_since(b.last_retention_check) < interval {
            return;
        }
        b.last_retention_check = now;
        let keys: Vec<(String, u32)> = b.slots.keys().cloned().collect();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for key in keys {
            let policy = self.retention_of(&key.0);
            let Some(slot) = self.slot_mut(&key) else {
                continue;
            };
            match slot.runner.enforce_retention(now_ms, policy) {
                Ok(0) => {}
                Ok(deleted) => {
                    let start = slot.runner.replica().log().start_offset();
                    tracing::info!(
                        "{}-{}: retention deleted {deleted} segment(s); the log now starts at {start}",
                        key.0,
                        key.1
                    );
                    // Readers parked on this partition see the new start.
                    self.on_runner_output(&key, Output::default());
                }
                Err(e) => tracing::error!("{}-{}: retention failed: {e:?}", key.0, key.1),
            }
        }
    }

    /// The broker's policy with the topic's own keys over it.
    fn retention_of(&self, topic: &str) -> RetentionPolicy {
        let configs = self
            .meta
            .as_ref()
            .and_then(|m| m.image.topics.get(topic))
            .map(|t| &t.configs);
        topic_retention(self.s.retention, configs)
    }
}

/// `retention.ms` / `retention.bytes` of a topic over the broker's
/// `log.retention.*`; -1 is "keep forever", as in Kafka. A value that is
/// not a number cannot be stored (the controller refuses it), and is
/// ignored here if an older log holds one.
pub(super) fn topic_retention(
    broker: RetentionPolicy,
    configs: Option<&BTreeMap<String, String>>,
) -> RetentionPolicy {
    let key = |name: &str| -> Option<Option<u64>> {
        let value: i64 = configs?.get(name)?.trim().parse().ok()?;
        Some(u64::try_from(value).ok())
    };
    RetentionPolicy {
        retention_ms: key("retention.ms").unwrap_or(broker.retention_ms),
        retention_bytes: key("retention.bytes").unwrap_or(broker.retention_bytes),
    }
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
        assert_eq!(topic_retention(broker, None), broker);
        let configs = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "1048576".to_string()),
        ]);
        assert_eq!(
            topic_retention(broker, Some(&configs)),
            RetentionPolicy {
                retention_ms: None,
                retention_bytes: Some(1 << 20),
            }
        );
        let junk = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
        assert_eq!(topic_retention(broker, Some(&junk)), broker);
    }
}
