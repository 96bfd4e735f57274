//! Kafka calls into the loop: the dispatch, and produce (idempotence
//! checked by the model's producer table, acks, timeouts).

use super::*;

impl Node {
    // ----- Kafka calls ---------------------------------------------------------------

    pub(super) fn on_kafka(&mut self, call: KafkaCall) {
        match call {
            KafkaCall::Produce {
                acks,
                timeout_ms,
                parts,
                reply,
            } => self.produce(acks, timeout_ms, parts, reply),
            KafkaCall::Fetch {
                parts,
                waker,
                reply,
            } => {
                let results = parts
                    .into_iter()
                    .map(|p| self.fetch_one(p, &waker))
                    .collect();
                let _ = reply.send(results);
            }
            KafkaCall::ListOffsets { parts, reply } => {
                let results = parts
                    .into_iter()
                    .map(|(t, p, ts)| self.list_offset(&(t, p), ts))
                    .collect();
                let _ = reply.send(results);
            }
            KafkaCall::Controller {
                request,
                timeout_ms,
                reply,
            } => self.submit(request, Purpose::Client { reply, timeout_ms }),
            KafkaCall::InitProducerId { reply } => {
                // Ids come from the controller's blocks (model/src/producer_ids.rs):
                // unique cluster-wide, across restarts and failovers.
                let id = self
                    .broker
                    .as_mut()
                    .filter(|b| b.epoch.is_some())
                    .and_then(|b| b.producer_ids.next_id());
                let _ = reply.send(id.map(|id| id as i64).ok_or(PartError::NotReady));
                self.maybe_ask_producer_ids();
            }
            KafkaCall::Group {
                group_id,
                op,
                reply,
            } => self.on_group_call(group_id, op, reply),
            KafkaCall::ListGroups { reply } => {
                let _ = reply.send(self.groups.summaries());
            }
            KafkaCall::DeleteRecords {
                topic,
                partition,
                offset,
                reply,
            } => self.delete_records((topic, partition), offset, reply),
        }
    }

    pub(super) fn produce(
        &mut self,
        acks: i16,
        timeout_ms: u64,
        parts: Vec<(String, u32, Bytes)>,
        reply: oneshot::Sender<Vec<Result<i64, PartError>>>,
    ) {
        let call_id = self.next_produce_call;
        self.next_produce_call += 1;
        let acks = match acks {
            0 => Acks::None,
            1 => Acks::Leader,
            // Seeded bug (tests only): acknowledge before replication.
            _ if self.s.test_bugs.ack_before_replication => Acks::Leader,
            _ => Acks::All,
        };
        let n = parts.len();
        let mut call = ProduceCall {
            results: vec![None; n],
            remaining: n,
            reply: Some(reply),
            deadline: Instant::now() + Duration::from_millis(timeout_ms.clamp(100, 300_000)),
        };
        let mut submitted = Vec::new();
        for (i, (topic, partition, records)) in parts.into_iter().enumerate() {
            let key = (topic, partition);
            let Some(b) = self.broker.as_mut() else {
                call.results[i] = Some(Err(PartError::NotLeaderOrFollower));
                continue;
            };
            if !b.slots.contains_key(&key) {
                call.results[i] = Some(Err(self.missing_replica_error(&key)));
                continue;
            }
            let slot = b.slots.get(&key).expect("checked");
            if slot.runner.replica().is_leader() {
                let batch = BatchBytes(records.clone());
                match slot.runner.check_sequence(&batch) {
                    SequenceCheck::Append => {}
                    SequenceCheck::Duplicate {
                        base_offset,
                        end_offset,
                    } => {
                        // The replica answers it like the original.
                        let id = b.next_request_id;
                        b.next_request_id += 1;
                        if acks == Acks::None {
                            call.results[i] = Some(Ok(-1));
                        } else {
                            b.produce_waiters.insert(id, (call_id, i));
                        }
                        submitted.push((
                            key,
                            Submission::Duplicate {
                                id,
                                base_offset,
                                end_offset,
                                acks,
                            },
                        ));
                        continue;
                    }
                    SequenceCheck::OutOfOrder { .. } => {
                        call.results[i] = Some(Err(PartError::OutOfOrderSequence));
                        continue;
                    }
                    SequenceCheck::FencedEpoch => {
                        call.results[i] = Some(Err(PartError::InvalidProducerEpoch));
                        continue;
                    }
                }
            }
            let id = b.next_request_id;
            b.next_request_id += 1;
            if acks != Acks::None {
                b.produce_waiters.insert(id, (call_id, i));
            } else {
                call.results[i] = Some(Ok(-1));
            }
            submitted.push((
                key,
                Submission::Append(ProduceRequest {
                    id,
                    records: BatchBytes(records),
                    acks,
                }),
            ));
        }
        call.remaining = call.results.iter().filter(|r| r.is_none()).count();
        self.broker
            .as_mut()
            .map(|b| b.produce_calls.insert(call_id, call));
        if self.broker.is_none() {
            return;
        }
        for (key, submission) in submitted {
            let Some(slot) = self.slot_mut(&key) else {
                // Taken offline by an earlier part of this very request
                // (one that names the partition twice).
                let id = match &submission {
                    Submission::Append(request) => request.id,
                    Submission::Duplicate { id, .. } => *id,
                };
                let offline = runnel_model::log::LogError::Io("the replica went offline".into());
                self.on_produce_reply(ProduceReply {
                    id,
                    result: Err(ProduceError::Log(offline)),
                });
                continue;
            };
            let runner = &mut slot.runner;
            let out = match submission {
                Submission::Append(request) => runner.on_produce(request),
                Submission::Duplicate {
                    id,
                    base_offset,
                    end_offset,
                    acks,
                } => runner.on_duplicate_produce(id, base_offset, end_offset, acks),
            };
            self.on_runner_output(&key, out);
        }
        self.maybe_finish_produce(call_id);
    }

    pub(super) fn on_produce_reply(&mut self, reply: ProduceReply) {
        if self.on_group_write_done(reply.id, reply.result.is_ok()) {
            return;
        }
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        let Some((call_id, i)) = b.produce_waiters.remove(&reply.id) else {
            return; // acks=0, or the call timed out
        };
        if let Some(call) = b.produce_calls.get_mut(&call_id) {
            if call.results[i].is_none() {
                call.remaining -= 1;
            }
            call.results[i] = Some(reply.result.map(|o| o as i64).map_err(produce_error));
        }
        self.maybe_finish_produce(call_id);
    }

    pub(super) fn maybe_finish_produce(&mut self, call_id: u64) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if b.produce_calls
            .get(&call_id)
            .is_some_and(|c| c.remaining == 0)
        {
            let mut call = b.produce_calls.remove(&call_id).expect("present");
            let results = call
                .results
                .drain(..)
                .map(|r| r.expect("all answered"))
                .collect();
            if let Some(tx) = call.reply.take() {
                let _ = tx.send(results);
            }
        }
    }

    pub(super) fn expire_produces(&mut self, now: Instant) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        let expired: Vec<u64> = b
            .produce_calls
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let mut call = b.produce_calls.remove(&id).expect("listed");
            b.produce_waiters.retain(|_, (c, _)| *c != id);
            let results = call
                .results
                .drain(..)
                .map(|r| r.unwrap_or(Err(PartError::RequestTimedOut)))
                .collect();
            if let Some(tx) = call.reply.take() {
                let _ = tx.send(results);
            }
        }
    }
}
