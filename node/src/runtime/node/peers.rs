//! Messages from peers: every message is checked against the node id its
//! link proved, then handed to the quorum, a replica or the controller.

use super::*;

impl Node {
    // ----- peer messages -------------------------------------------------------------

    /// A message from a link: a tool may only ask for status (answered on
    /// its own link); a peer's message goes on, checked against the node
    /// id its link proved.
    pub(super) fn on_link_message(&mut self, conn: ConnId, from: NodeId, message: PeerMessage) {
        let Some(link) = self.links.get(&conn) else {
            return; // the link closed meanwhile
        };
        if link.role == LinkRole::Tool {
            match message {
                PeerMessage::StatusRequest => {
                    let answer = wire::encode(&PeerMessage::StatusResponse(self.status()));
                    if let Ok(frame) = answer {
                        let _ = link.tx.try_send(frame);
                    }
                }
                other => {
                    tracing::warn!(
                        "tool {from} sent {}, which only nodes may send; closing its link",
                        other.kind()
                    );
                    self.links.remove(&conn);
                }
            }
            return;
        }
        if matches!(message, PeerMessage::Hello { .. }) && !link.outbound {
            // Voters are learnt from coordinators this node dialled itself.
            return;
        }
        if let Err(why) = claims_match_sender(from, &message) {
            tracing::warn!("node {from}: {why}; message dropped");
            return;
        }
        self.on_peer_message(from, message);
    }

    pub(super) fn on_peer_message(&mut self, from: NodeId, message: PeerMessage) {
        match message {
            PeerMessage::Hello { voters } => {
                if self.meta.is_none() && !voters.is_empty() {
                    let voters = voters.into_iter().collect();
                    if let Err(e) = self.start_metadata(voters) {
                        tracing::error!("cannot start the metadata log: {e}");
                    }
                }
            }
            PeerMessage::Quorum(m) => self.quorum_step(|q, out| q.on_message(from, m, out)),
            PeerMessage::Replication(batch) => {
                for pm in batch {
                    self.on_replication(from, pm);
                }
            }
            PeerMessage::ControllerRequest {
                session,
                id,
                request,
            } => {
                let key = RequestKey { session, seq: id };
                self.controller_request(request, Some(key), Waiter::Remote { peer: from, id })
            }
            PeerMessage::ControllerResponse { id, result } => {
                self.on_remote_controller_response(from, id, result)
            }
            PeerMessage::StatusRequest => {
                let status = self.status();
                self.send(from, PeerMessage::StatusResponse(status));
            }
            PeerMessage::StatusResponse(_) | PeerMessage::KeepAlive => {}
        }
    }

    pub(super) fn on_replication(&mut self, from: NodeId, pm: PartitionMessage) {
        tracing::trace!(
            node = self.s.node_id,
            from,
            "{}-{}: {:?}",
            pm.topic,
            pm.partition,
            summary(&pm.message)
        );
        let key = (pm.topic, pm.partition);
        match self.slot_mut(&key) {
            Some(slot) => {
                let out = slot.runner.on_message(from, pm.message);
                self.on_runner_output(&key, out);
            }
            None => {
                // No replica here (yet): answer a fetch the way a replica
                // without partition state does, so the follower backs off.
                if let ReplicationMessage::Fetch(f) = pm.message {
                    let message = ReplicationMessage::FetchResponse(
                        runnel_model::replication::FetchResponse {
                            leader_epoch: f.leader_epoch,
                            result: runnel_model::replication::FetchResult::NotLeader,
                        },
                    );
                    self.replication_outbox
                        .entry(from)
                        .or_default()
                        .push(PartitionMessage {
                            topic: key.0,
                            partition: key.1,
                            message,
                        });
                }
            }
        }
    }
}
