//! Requests to the controller from this node (broker registration,
//! heartbeats, producer-id blocks, ISR changes, clients' admin requests):
//! sent to whoever leads, again when a new controller is known, retried,
//! and finished when the answer comes.

use super::*;

impl Node {
    // ----- requests to the controller ------------------------------------------------

    pub(super) fn submit(&mut self, request: ControllerRequest, purpose: Purpose) {
        let id = self.next_outstanding;
        self.next_outstanding += 1;
        let now = Instant::now();
        let timeout = match purpose {
            Purpose::Client { timeout_ms, .. } => timeout_ms.clamp(1, CONTROLLER_CLIENT_TIMEOUT_MS),
            Purpose::Alter { .. } => u64::MAX / 4,
            _ => self.s.session_timeout_ms,
        };
        self.outstanding.insert(
            id,
            Outstanding {
                request: request.clone(),
                purpose,
                sent_at: now,
                deadline: now + Duration::from_millis(timeout),
                asked: Default::default(),
            },
        );
        self.send_outstanding(id, request);
    }

    pub(super) fn send_outstanding(&mut self, id: u64, request: ControllerRequest) {
        let leader = self.meta.as_ref().and_then(|m| m.quorum.leader());
        match leader {
            Some(l) if l == self.s.node_id => {
                let key = RequestKey {
                    session: self.session,
                    seq: id,
                };
                self.controller_request(request, Some(key), Waiter::Broker(id))
            }
            Some(l) => self.ask_controller(l, id, request),
            None => {} // retried on a tick once a leader is known
        }
    }

    pub(super) fn ask_controller(&mut self, to: NodeId, id: u64, request: ControllerRequest) {
        if let Some(o) = self.outstanding.get_mut(&id) {
            o.asked.insert(to);
        }
        let session = self.session;
        self.send(
            to,
            PeerMessage::ControllerRequest {
                session,
                id,
                request,
            },
        );
    }

    /// A peer's answer counts only if the request went to that peer: no
    /// other node can answer for the controller.
    pub(super) fn on_remote_controller_response(
        &mut self,
        from: NodeId,
        id: u64,
        result: Result<ControllerAck, ControllerFailure>,
    ) {
        if self
            .outstanding
            .get(&id)
            .is_some_and(|o| o.asked.contains(&from))
        {
            self.on_controller_response(id, result);
        } else {
            tracing::debug!("node {from} answered controller request {id}, not asked of it");
        }
    }

    pub(super) fn retry_outstanding(&mut self, now: Instant) {
        let retry = Duration::from_millis(CONTROLLER_RETRY_MS);
        let ids: Vec<u64> = self.outstanding.keys().copied().collect();
        for id in ids {
            let o = self.outstanding.get_mut(&id).expect("listed");
            if now >= o.deadline {
                let o = self.outstanding.remove(&id).expect("listed");
                self.finish_outstanding(o, Err(ControllerFailure::TimedOut));
            } else if now.duration_since(o.sent_at) >= retry {
                o.sent_at = now;
                let request = o.request.clone();
                self.send_outstanding(id, request);
            }
        }
    }

    pub(super) fn on_controller_response(
        &mut self,
        id: u64,
        result: Result<ControllerAck, ControllerFailure>,
    ) {
        if let Err(ControllerFailure::NotController { leader }) = &result {
            // Try the leader it names (or wait for one) instead of failing.
            if let Some(o) = self.outstanding.get_mut(&id) {
                o.sent_at = Instant::now() - Duration::from_millis(CONTROLLER_RETRY_MS / 2);
                if let Some(l) = leader.filter(|l| *l != self.s.node_id) {
                    let request = o.request.clone();
                    self.ask_controller(l, id, request);
                }
            }
            return;
        }
        if let Some(o) = self.outstanding.remove(&id) {
            self.finish_outstanding(o, result);
        }
    }

    pub(super) fn finish_outstanding(
        &mut self,
        o: Outstanding,
        result: Result<ControllerAck, ControllerFailure>,
    ) {
        match o.purpose {
            Purpose::Client { reply, .. } => {
                let _ = reply.send(result);
            }
            Purpose::Register => {
                let me = self.s.node_id;
                if let Some(b) = self.broker.as_mut() {
                    b.registering = false;
                    if let Ok(ack) = &result {
                        b.epoch = ack.records.iter().find_map(|r| match r {
                            MetadataRecord::RegisterBroker { broker, epoch, .. }
                                if *broker == me =>
                            {
                                Some(*epoch)
                            }
                            _ => None,
                        });
                        if let Some(e) = b.epoch {
                            tracing::info!("broker {me} registered with broker epoch {e}");
                            b.producer_ids.on_registered(e);
                        }
                    }
                }
                self.reconcile_partitions();
                // Ahead of the first InitProducerId (Kafka waits for it).
                self.maybe_ask_producer_ids();
            }
            Purpose::Heartbeat => {
                if let Err(ControllerFailure::Rejected(ControllerError::StaleBrokerEpoch)) = result
                {
                    if let Some(b) = self.broker.as_mut() {
                        tracing::warn!(
                            "the controller no longer knows this broker's epoch; registering again"
                        );
                        b.epoch = None;
                    }
                }
            }
            Purpose::ReplicasOffline => {
                if let Some(b) = self.broker.as_mut() {
                    b.offline_reporting = false;
                }
            }
            Purpose::ProducerIds { epoch } => {
                let block = result.ok().and_then(|ack| {
                    ack.records
                        .iter()
                        .find_map(Controller::producer_id_block)
                        .filter(|(broker, _)| *broker == self.s.node_id)
                        .map(|(_, block)| block)
                });
                if let Some(b) = self.broker.as_mut().filter(|b| b.epoch == Some(epoch)) {
                    b.producer_ids.on_block(block);
                }
            }
            Purpose::Alter {
                topic,
                partition,
                request,
            } => {
                let result = match result {
                    Ok(ack) => ack
                        .records
                        .iter()
                        .find_map(|r| match r {
                            MetadataRecord::Partition {
                                topic: t,
                                partition: p,
                                registration,
                            } if *t == topic && *p == partition => Some(registration.clone()),
                            _ => None,
                        })
                        .ok_or(AlterPartitionError::InvalidUpdateVersion),
                    Err(ControllerFailure::Rejected(ControllerError::AlterPartition(e))) => Err(e),
                    Err(ControllerFailure::Rejected(ControllerError::StaleBrokerEpoch)) => {
                        Err(AlterPartitionError::StaleBrokerEpoch)
                    }
                    Err(_) => Err(AlterPartitionError::InvalidUpdateVersion),
                };
                let key = (topic, partition);
                let message = ReplicationMessage::AlterPartitionResponse { request, result };
                if let Some(out) = self
                    .slot_mut(&key)
                    .map(|s| s.runner.on_message(CONTROLLER_ADDRESS, message))
                {
                    self.on_runner_output(&key, out);
                }
            }
        }
    }
}
