//! The broker's partitions: registration and heartbeats, reconciling the
//! replicas this node hosts with the committed metadata, opening logs off
//! the loop, and executing each replica's outputs (sends, timers, produce
//! replies, parked fetches to wake).

use super::*;

impl Node {
    // ----- broker: registration, heartbeats, partitions ------------------------------------

    pub(super) fn broker_lifecycle(&mut self, now: Instant) {
        let me = self.s.node_id;
        let interval = Duration::from_millis(self.s.heartbeat_interval_ms);
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if self.meta.as_ref().and_then(|m| m.quorum.leader()).is_none() {
            return;
        }
        match b.epoch {
            None if !b.registering => {
                b.registering = true;
                let endpoint = b.endpoint.clone();
                let internal_endpoint = b.internal_endpoint.clone();
                self.submit(
                    ControllerRequest::RegisterBroker {
                        broker: me,
                        endpoint,
                        internal_endpoint,
                    },
                    Purpose::Register,
                );
            }
            Some(epoch) if now.duration_since(b.last_heartbeat) >= interval => {
                // Heartbeat only once our own registration is in the committed
                // metadata we follow: we act on metadata as this incarnation only.
                let caught_up = self
                    .meta
                    .as_ref()
                    .is_some_and(|m| m.image.brokers.get(&me).is_some_and(|r| r.epoch == epoch));
                if caught_up {
                    self.report_offline();
                    if self.offline_unknown_while_fenced() {
                        // The first heartbeat unfences, and unfencing
                        // elects: not before the controller knows which
                        // replicas here have no log (tried next tick).
                        return;
                    }
                    let b = self.broker.as_mut().expect("checked");
                    b.last_heartbeat = now;
                    self.submit(
                        ControllerRequest::Heartbeat { broker: me, epoch },
                        Purpose::Heartbeat,
                    );
                }
            }
            _ => {}
        }
    }

    /// Asks the controller for the next block of producer ids when the
    /// broker's book says so (none yet, or 90% of the current one used).
    pub(super) fn maybe_ask_producer_ids(&mut self) {
        let me = self.s.node_id;
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        let Some(epoch) = b.epoch.filter(|_| b.producer_ids.wants_block()) else {
            return;
        };
        b.producer_ids.on_request(true);
        self.submit(
            ControllerRequest::AllocateProducerIds {
                broker: me,
                broker_epoch: epoch,
            },
            Purpose::ProducerIds { epoch },
        );
    }

    pub(super) fn slot_mut(&mut self, key: &(String, u32)) -> Option<&mut Slot> {
        self.broker.as_mut()?.slots.get_mut(key)
    }

    /// Brings the hosted replicas in line with the committed metadata:
    /// opens logs of new partitions, delivers changed registrations, drops
    /// deleted topics.
    pub(super) fn reconcile_partitions(&mut self) {
        let me = self.s.node_id;
        let Some(meta) = self.meta.as_ref() else {
            return;
        };
        let Some(b) = self.broker.as_ref() else {
            return;
        };
        let registered =
            b.epoch.is_some() && meta.image.brokers.get(&me).map(|r| r.epoch) == b.epoch;
        if !registered {
            return;
        }
        let mut deliveries = Vec::new();
        for (topic, t) in &meta.image.topics {
            for (p, reg) in t.partitions.iter().enumerate() {
                if reg.replicas.contains(&me) {
                    let key = (topic.clone(), p as u32);
                    if b.offline.get(&key) == Some(&t.id) {
                        continue; // no usable log until the process restarts
                    }
                    let known = b
                        .slots
                        .get(&key)
                        .filter(|s| s.topic_id == t.id)
                        .and_then(|s| s.delivered.as_ref());
                    if known != Some(reg) && !b.opening.contains(&key) {
                        deliveries.push((key, reg.clone(), t.id));
                    }
                }
            }
        }
        // Gone, moved away, or a replica of an earlier topic of the same
        // name (deleted and created again): Kafka tells them apart by topic
        // id too, so a new topic never starts from an old one's log.
        let removed: Vec<_> = b
            .slots
            .iter()
            .filter(|((t, p), slot)| {
                let topic = meta.image.topics.get(t);
                topic.is_none_or(|topic| topic.id != slot.topic_id)
                    || meta
                        .image
                        .partition(t, *p)
                        .is_none_or(|r| !r.replicas.contains(&me))
            })
            .map(|(k, _)| k.clone())
            .collect();
        // Removals first (they free what new replicas may need), all within
        // one turn's bound.
        let work = removed.len() + deliveries.len();
        let removals = removed.len().min(RECONCILE_PER_TURN_MAX);
        for key in removed.into_iter().take(removals) {
            self.remove_partition(&key);
        }
        let budget = RECONCILE_PER_TURN_MAX - removals;
        let mut opens_waiting = false;
        for (key, reg, topic_id) in deliveries.into_iter().take(budget) {
            let b = self.broker.as_mut().expect("checked");
            if b.slots.get(&key).is_some_and(|s| s.topic_id != topic_id) {
                // An earlier topic's replica whose removal this turn's bound
                // put off: it goes first, the new one opens after.
                continue;
            }
            if !b.slots.contains_key(&key) {
                // Delivered once the log is open (finish_open).
                match b.opening.len() < OPENS_IN_FLIGHT_MAX {
                    true => self.start_open(key),
                    false => opens_waiting = true,
                }
                continue;
            }
            self.deliver(&key, reg);
        }
        // More to do next idle moment only if the per-turn bound cut this
        // one short and opens can start: with every open slot taken, the
        // next finished open asks again (finish_open), so the loop never
        // spins rescanning while it waits for the disk.
        self.reconcile_pending = work > RECONCILE_PER_TURN_MAX && !opens_waiting;
        if let Some(b) = self.broker.as_mut() {
            b.opens_waiting = opens_waiting;
        }
    }

    /// Hands the replica of `key` its current registration.
    pub(super) fn deliver(&mut self, key: &(String, u32), reg: PartitionRegistration) {
        let Some(slot) = self.slot_mut(key) else {
            return;
        };
        slot.delivered = Some(reg.clone());
        let out = slot
            .runner
            .on_message(CONTROLLER_ADDRESS, ReplicationMessage::PartitionState(reg));
        self.on_runner_output(key, out);
    }

    /// Opens the log of `key` on a blocking thread (in the simulation, one
    /// thread per host, at once); [`Event::Opened`] brings it back.
    pub(super) fn start_open(&mut self, key: (String, u32)) {
        let topic_id = self.current_topic_id(&key.0);
        let b = self.broker.as_mut().expect("broker");
        let dir = b.log_dirs.partition_dir(&key.0, key.1);
        b.opening.insert(key.clone());
        let config = self.s.log.clone();
        let open = move || -> Result<DiskLog, String> {
            crate::storage::partition_metadata::claim(&dir, topic_id)
                .map_err(|e| format!("partition.metadata: {e}"))?;
            let (log, report) = DiskLog::open(&dir, config).map_err(|e| format!("{e:?}"))?;
            tracing::info!("{}: opened log {report:?}", dir.display());
            Ok(log)
        };
        if crate::io::SIMULATED {
            let log = open();
            return self.finish_open(key, topic_id, log);
        }
        let events = self.events_tx.clone();
        crate::runtime::open_pool::spawn(move || {
            let log = open();
            let _ = events.blocking_send(Event::Opened { key, topic_id, log });
        });
    }

    /// A log opened off the loop becomes the partition's replica, if the
    /// partition is still hosted here (else its directory goes).
    pub(super) fn finish_open(
        &mut self,
        key: (String, u32),
        topic_id: u128,
        log: Result<DiskLog, String>,
    ) {
        let me = self.s.node_id;
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        b.opening.remove(&key);
        if b.opens_waiting {
            self.reconcile_pending = true;
        }
        let log = match log {
            Ok(log) => log,
            Err(e) => {
                let why = format!("cannot open the log: {e}");
                return self.take_offline(&key, topic_id, &why);
            }
        };
        let reg = self
            .meta
            .as_ref()
            .filter(|_| self.current_topic_id(&key.0) == topic_id)
            .and_then(|m| m.image.partition(&key.0, key.1))
            .filter(|r| r.replicas.contains(&me))
            .cloned();
        let Some(reg) = reg else {
            // Deleted, moved away, or deleted and created again while it
            // was being opened: a new topic opens its own log next time.
            drop(log);
            let b = self.broker.as_mut().expect("checked");
            let dir = b.log_dirs.partition_dir(&key.0, key.1);
            let _ = crate::storage::partition_metadata::remove(&dir);
            self.reconcile_pending = true;
            return;
        };
        let settings = self.topic_settings(&key.0);
        let mut log = log;
        log.set_roll(settings.segment_bytes, settings.roll_ms);
        let s = &self.s;
        let mut config = ReplicaConfig::new(s.node_id, CONTROLLER_ADDRESS);
        config.min_insync_replicas = settings.min_insync_replicas;
        config.flush_mode = s.flush_mode;
        config.replica_lag_time_max_ms = s.replica_lag_time_max_ms;
        config.fetch_backoff_ms = s.replica_fetch_backoff_ms;
        let runner = PartitionRunner::new(Replica::recover(config, log));
        let b = self.broker.as_mut().expect("checked");
        b.slots.insert(
            key.clone(),
            Slot {
                topic_id,
                runner,
                delivered: None,
                parked: ParkedFetches::default(),
                deletes: Default::default(),
            },
        );
        self.deliver(&key, reg);
    }

    pub(super) fn remove_partition(&mut self, key: &(String, u32)) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if let Some(mut slot) = b.slots.remove(key) {
            slot.parked.wake_all();
            let dir = b.log_dirs.partition_dir(&key.0, key.1);
            tracing::info!(
                "{}-{}: topic deleted, removing {}",
                key.0,
                key.1,
                dir.display()
            );
            let _ = crate::storage::partition_metadata::remove(&dir);
            // Writes the replica took before this node learnt of the
            // deletion (a broker catching up after a pause) are answered
            // now: NOT_LEADER_OR_FOLLOWER sends the client to fresh
            // metadata. Left waiting, each held its whole request until
            // the request's timeout (found by tests/tests/topic_recreate.rs).
            let waiting = slot.runner.replica().pending_produce_ids();
            self.answer_dropped_produces(waiting, ProduceError::NotLeaderOrFollower);
        }
        self.forget_replica(key);
    }

    /// What the node keeps for a replica besides its slot: its timers and
    /// its places in the flush sets. Cleared when the slot goes (deleted
    /// topic or offline replica), so a later replica of the same key
    /// starts with none of it.
    pub(super) fn forget_replica(&mut self, key: &(String, u32)) {
        if let Some(b) = self.broker.as_mut() {
            b.flush_asked.remove(key);
            b.write_back_due.remove(key);
        }
        for t in [
            ReplicaTimer::LagCheck,
            ReplicaTimer::FetchBackoff,
            ReplicaTimer::FetchMaxWait,
        ] {
            self.timers
                .cancel(&TimerKey::Replica(key.0.clone(), key.1, t));
        }
    }

    pub(super) fn on_runner_output(&mut self, key: &(String, u32), out: Output) {
        for (to, message) in out.sends {
            if to == CONTROLLER_ADDRESS {
                self.propose_isr_change(key, message);
            } else {
                self.replication_outbox
                    .entry(to)
                    .or_default()
                    .push(PartitionMessage {
                        topic: key.0.clone(),
                        partition: key.1,
                        message,
                    });
            }
        }
        for (t, after_ms) in out.timers_set {
            self.set_timer(TimerKey::Replica(key.0.clone(), key.1, t), after_ms);
        }
        for t in out.timers_cancelled {
            self.cancel_timer(&TimerKey::Replica(key.0.clone(), key.1, t));
        }
        for reply in out.replies {
            self.on_produce_reply(reply);
        }
        if self.take_offline_if_failed(key) {
            return;
        }
        if let Some(slot) = self.slot_mut(key) {
            let replica = slot.runner.replica();
            let visible = Visible {
                high_watermark: replica.high_watermark(),
                log_start_offset: replica.log().start_offset(),
                is_leader: replica.is_leader(),
            };
            slot.parked.observe(visible);
            slot.deletes.complete(replica);
            let flush_wanted = slot.runner.flush_wanted();
            let write_back = replica.log().needs_write_back();
            let b = self.broker.as_mut().expect("a slot implies a broker");
            if flush_wanted {
                b.flush_asked.insert(key.clone());
            }
            if write_back {
                b.write_back_due.insert(key.clone());
            }
        }
    }

    pub(super) fn propose_isr_change(
        &mut self,
        key: &(String, u32),
        message: ReplicationMessage<BatchBytes>,
    ) {
        let ReplicationMessage::AlterPartition(request) = message else {
            return;
        };
        let Some(broker_epoch) = self.broker.as_ref().and_then(|b| b.epoch) else {
            return;
        };
        let controller_request = ControllerRequest::AlterPartition {
            topic: key.0.clone(),
            partition: key.1,
            broker_epoch,
            request: request.clone(),
        };
        let purpose = Purpose::Alter {
            topic: key.0.clone(),
            partition: key.1,
            request,
        };
        self.submit(controller_request, purpose);
    }
}
