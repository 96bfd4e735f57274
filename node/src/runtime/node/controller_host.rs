//! The active controller's side: decides a request once (the model's
//! `Controller::decide_once`), proposes it as one quorum entry and
//! answers when it commits; fences brokers whose sessions expired.

use super::*;

impl Node {
    // ----- active controller ---------------------------------------------------------

    /// Decides a request once (`Controller::decide_once`): a re-sent copy of
    /// one already carried out is answered with that decision, when it is
    /// committed, never decided a second time.
    pub(super) fn controller_request(
        &mut self,
        request: ControllerRequest,
        key: Option<RequestKey>,
        waiter: Waiter,
    ) {
        let Some(meta) = self.meta.as_mut() else {
            return self.answer(
                waiter,
                Err(ControllerFailure::NotController { leader: None }),
            );
        };
        if !meta.quorum.is_leader() {
            let leader = meta.quorum.leader();
            return self.answer(waiter, Err(ControllerFailure::NotController { leader }));
        }
        let image = self
            .leader_image
            .as_mut()
            .expect("the active controller has an image");
        match &request {
            ControllerRequest::Heartbeat { broker, .. }
            | ControllerRequest::RegisterBroker { broker, .. } => {
                self.heartbeats.insert(*broker, Instant::now());
            }
            _ => {}
        }
        let records = match self.controller.decide_once(image, key, &request) {
            Ok(Outcome::Decided(records)) => records,
            Ok(Outcome::AlreadyApplied { end_offset }) => {
                // Its first decision lies below the metadata snapshot: it
                // was carried out, but its records (the answer) are gone
                // from the log. REQUEST_TIMED_OUT says just that (carried
                // out, answer unknown), rather than an answer without them.
                if end_offset <= meta.quorum.log_start() {
                    return self.answer(waiter, Err(ControllerFailure::TimedOut));
                }
                // Its first decision's answer, once that is committed.
                let records = match meta.quorum.entry(end_offset - 1) {
                    Some(runnel_model::quorum::Entry {
                        payload: Payload::Record(d),
                        ..
                    }) => d.records.clone(),
                    _ => Vec::new(),
                };
                self.pending_commits.push((end_offset, records, waiter));
                return self.apply_committed();
            }
            Err(e) => return self.answer(waiter, Err(ControllerFailure::Rejected(e))),
        };
        if records.is_empty() || matches!(request, ControllerRequest::ValidateOnly(_)) {
            // Nothing to commit: answer now (a heartbeat of an unfenced
            // broker; a validate-only request, with what it would write).
            let end_offset = meta.quorum.end_offset();
            return self.answer(
                waiter,
                Ok(ControllerAck {
                    end_offset,
                    records,
                }),
            );
        }
        // One decision, one entry: it commits and applies whole or not at all.
        let decision = MetadataDecision {
            request: key,
            records,
        };
        let mut out = QuorumEffects::new();
        let end = match meta.quorum.propose(decision.clone(), &mut out) {
            Ok(offset) => offset + 1,
            Err(_) => unreachable!("checked leadership above"),
        };
        image.apply_decision(&decision, end);
        self.execute_quorum(out);
        self.pending_commits.push((end, decision.records, waiter));
        self.apply_committed();
    }

    pub(super) fn answer(
        &mut self,
        waiter: Waiter,
        result: Result<ControllerAck, ControllerFailure>,
    ) {
        match waiter {
            Waiter::Remote { peer, id } => {
                self.send(peer, PeerMessage::ControllerResponse { id, result })
            }
            Waiter::Broker(id) => self.on_controller_response(id, result),
            Waiter::Nobody => {}
        }
    }

    /// Fences brokers whose heartbeats stopped (the session timer is the
    /// runtime's; the fencing decision is the controller's).
    pub(super) fn expire_sessions(&mut self, now: Instant) {
        let Some(image) = self.leader_image.as_ref() else {
            return;
        };
        let timeout = Duration::from_millis(self.s.session_timeout_ms);
        let expired: Vec<_> = image
            .brokers
            .iter()
            .filter(|(id, b)| {
                !b.fenced
                    && self
                        .heartbeats
                        .get(id)
                        .is_none_or(|t| now.duration_since(*t) > timeout)
            })
            .map(|(id, b)| (*id, b.epoch))
            .collect();
        for (broker, epoch) in expired {
            tracing::warn!(
                "broker {broker} (epoch {epoch}): no heartbeat for {timeout:?}, fencing it"
            );
            self.controller_request(
                ControllerRequest::SessionExpired { broker, epoch },
                None,
                Waiter::Nobody,
            );
        }
    }
}
