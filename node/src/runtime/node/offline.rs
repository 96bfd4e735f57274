//! Replicas without a usable log: a log this node could not open (no
//! descriptor, no space, an I/O error, a path that is not a directory) or
//! could not write. Such a replica is never served: it is dropped from the
//! node (its files are left as they are, for an operator to look at), every
//! request for it gets KAFKA_STORAGE_ERROR, and the controller is told, so
//! that the replica leaves its ISR and leadership moves to another (the
//! controller's rule, `Controller::replicas_offline` in the model). It
//! stays offline until the process restarts, as a Kafka log directory
//! does (KIP-858 marks directories; Runnel marks single replicas).

use super::*;

/// Partitions named in one report to the controller; the rest go in the
/// next one.
const OFFLINE_REPORT_PARTITIONS_MAX: usize = 1_000;

impl Node {
    /// Takes the replica of `key` offline if its log failed part way
    /// through a write, a truncation or a checkpoint (an I/O error, as
    /// Kafka's `LogDirFailureChannel` counts them: any of them). True if
    /// it did.
    pub(super) fn take_offline_if_failed(&mut self, key: &(String, u32)) -> bool {
        let Some(slot) = self.slot_mut(key) else {
            return false;
        };
        let Some(why) = slot.runner.replica().log().failure().map(str::to_string) else {
            return false;
        };
        let topic_id = slot.topic_id;
        self.take_offline(key, topic_id, &format!("its log failed: {why}"));
        true
    }

    /// Stops serving the replica of `key` and marks it offline.
    pub(super) fn take_offline(&mut self, key: &(String, u32), topic_id: u128, why: &str) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        tracing::error!(
            "{}-{}: replica offline, its log is unusable: {why}",
            key.0,
            key.1
        );
        b.offline.insert(key.clone(), topic_id);
        let mut waiting = Vec::new();
        if let Some(mut slot) = b.slots.remove(key) {
            slot.parked.wake_all();
            waiting = slot.runner.replica().pending_produce_ids();
        }
        // Writes waiting for replication are answered now, not at their
        // timeout: KAFKA_STORAGE_ERROR, retriable (the client finds the new
        // leader in its next Metadata).
        let offline = runnel_model::log::LogError::Io("the replica went offline".into());
        self.answer_dropped_produces(waiting, ProduceError::Log(offline));
        self.forget_replica(key);
        self.report_offline();
    }

    /// Answers the writes a dropped replica still held (`pending_produce_ids`).
    pub(super) fn answer_dropped_produces(&mut self, ids: Vec<RequestId>, error: ProduceError) {
        for id in ids {
            self.on_produce_reply(ProduceReply {
                id,
                result: Err(error.clone()),
            });
        }
    }

    /// Is this node's replica of `key` (of the current topic) offline?
    pub(super) fn is_offline(&self, key: &(String, u32)) -> bool {
        let Some(b) = self.broker.as_ref() else {
            return false;
        };
        b.offline
            .get(key)
            .is_some_and(|&id| id == self.current_topic_id(&key.0))
    }

    /// The error for a request about a partition this node has no replica
    /// of: an offline one is a storage error (retriable: clients refresh
    /// their metadata and find the new leader), else not this node's.
    pub(super) fn missing_replica_error(&self, key: &(String, u32)) -> PartError {
        let known = self
            .meta
            .as_ref()
            .is_some_and(|m| m.image.partition(&key.0, key.1).is_some());
        if self.is_offline(key) {
            PartError::Storage("the replica's log is offline".into())
        } else if known {
            PartError::NotLeaderOrFollower
        } else {
            PartError::UnknownTopicOrPartition
        }
    }

    /// Tells the controller of the offline replicas its committed metadata
    /// does not show yet (one report at a time; again at the next heartbeat
    /// if one was lost, and after a new registration, which forgets them).
    /// Forgets those of topics deleted since.
    pub(super) fn report_offline(&mut self) {
        let me = self.s.node_id;
        let (Some(b), Some(meta)) = (self.broker.as_mut(), self.meta.as_ref()) else {
            return;
        };
        let image = &meta.image;
        // Only replicas still assigned here, of the same topic (the
        // controller would leave the others out, and they would then hold
        // the first heartbeat back for ever).
        b.offline.retain(|(t, p), id| {
            image.topics.get(t).is_some_and(|t| t.id == *id)
                && image
                    .partition(t, *p)
                    .is_some_and(|r| r.replicas.contains(&me))
        });
        let Some(epoch) = b.epoch.filter(|_| !b.offline_reporting) else {
            return;
        };
        let Some(known) = image.brokers.get(&me).filter(|r| r.epoch == epoch) else {
            return;
        };
        let partitions: Vec<(String, u32, u128)> = b
            .offline
            .iter()
            .filter(|(k, _)| !known.offline_replicas.contains(*k))
            .take(OFFLINE_REPORT_PARTITIONS_MAX)
            .map(|((t, p), id)| (t.clone(), *p, *id))
            .collect();
        if partitions.is_empty() {
            return;
        }
        b.offline_reporting = true;
        self.submit(
            ControllerRequest::ReplicasOffline {
                broker: me,
                epoch,
                partitions,
            },
            Purpose::ReplicasOffline,
        );
    }

    /// Is this broker fenced in the committed metadata while some of its
    /// offline replicas are not shown there yet (a new registration, made
    /// without a restart, forgot them)?
    pub(super) fn offline_unknown_while_fenced(&self) -> bool {
        let (Some(b), Some(meta)) = (self.broker.as_ref(), self.meta.as_ref()) else {
            return false;
        };
        let Some(known) = meta.image.brokers.get(&self.s.node_id) else {
            return false;
        };
        known.fenced
            && b.offline
                .keys()
                .any(|k| !known.offline_replicas.contains(k))
    }

    /// The id of the current topic called `topic` (0: none, or one created
    /// before ids were recorded).
    pub(super) fn current_topic_id(&self, topic: &str) -> u128 {
        self.meta
            .as_ref()
            .and_then(|m| m.image.topics.get(topic))
            .map_or(0, |t| t.id)
    }
}
