//! The topic configs a broker applies to its replicas, over its own
//! settings: `min.insync.replicas` (acks=all writes), `segment.bytes` and
//! `segment.ms` (rolls). Applied when a replica opens and whenever a
//! topic's configs change in the committed metadata. Elsewhere:
//! `retention.*` and `cleanup.policy` in `retention.rs`,
//! `max.message.bytes` in the front end's produce check,
//! `unclean.leader.election.enable` in the controller (the model's
//! `Controller::policy_for`). The controller has checked every value's
//! type and bounds (`validate_topic_configs`); a value that does not parse
//! here (a log written before those checks) falls back to the broker's.

use super::*;

/// What a replica of a topic runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TopicSettings {
    pub min_insync_replicas: usize,
    pub segment_bytes: u64,
    pub roll_ms: Option<u64>,
}

impl Node {
    /// The settings of `topic`'s replicas: the topic's keys, else this
    /// broker's (`min.insync.replicas`, `log.segment.bytes`, `log.roll.ms`).
    pub(super) fn topic_settings(&self, topic: &str) -> TopicSettings {
        let configs = self
            .meta
            .as_ref()
            .and_then(|m| m.image.topics.get(topic))
            .map(|t| &t.configs);
        let get = |key: &str| -> Option<u64> { configs?.get(key)?.trim().parse().ok() };
        TopicSettings {
            min_insync_replicas: get("min.insync.replicas")
                .map_or(self.s.min_insync_replicas, |n| n.max(1) as usize),
            segment_bytes: get("segment.bytes")
                .filter(|&b| b > 0)
                .unwrap_or(self.s.log.segment_bytes),
            roll_ms: get("segment.ms").or(self.s.log.roll_ms),
        }
    }

    /// Applies `topic`'s settings to every replica of it here.
    pub(super) fn apply_topic_configs(&mut self, topic: &str) {
        let t = self.topic_settings(topic);
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        let range = (topic.to_string(), 0)..=(topic.to_string(), u32::MAX);
        for (_, slot) in b.slots.range_mut(range) {
            slot.runner
                .apply_topic_settings(t.min_insync_replicas, t.segment_bytes, t.roll_ms);
        }
    }
}
