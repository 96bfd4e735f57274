//! Links to peers: connecting, link up/down, routing a message to the
//! link of its node, and the outbox flushed once per turn (batched per
//! peer).

use super::*;

impl Node {
    // ----- links ---------------------------------------------------------------

    pub(super) fn on_link_up(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        role: LinkRole,
        outbound: bool,
        tx: mpsc::Sender<Vec<u8>>,
    ) {
        tracing::trace!(node = self.s.node_id, peer, conn, outbound, "link up");
        let tools = self
            .links
            .values()
            .filter(|l| l.role == LinkRole::Tool)
            .count();
        if role == LinkRole::Tool && tools >= TOOL_LINKS_MAX {
            // Dropping its sender closes the link.
            tracing::warn!("tool link from {peer} refused: {TOOL_LINKS_MAX} tools are linked");
            return;
        }
        self.links.insert(
            conn,
            Link {
                peer,
                role,
                outbound,
                tx,
            },
        );
        if self.s.coordinator && role == LinkRole::Peer {
            let voters = self.voters.iter().map(|(id, a)| (*id, a.clone())).collect();
            self.send(peer, PeerMessage::Hello { voters });
        }
    }

    pub(super) fn on_link_down(&mut self, conn: ConnId, peer: NodeId) {
        tracing::trace!(node = self.s.node_id, peer, conn, "link down");
        // What was in flight on it is lost, even if another link remains.
        if self
            .links
            .remove(&conn)
            .is_some_and(|l| l.role == LinkRole::Peer)
        {
            self.unreachable.push(peer);
        }
    }

    /// Queues a message; it leaves at the end of the turn.
    pub(super) fn send(&mut self, to: NodeId, message: PeerMessage) {
        self.outbox.entry(to).or_default().push(message);
    }

    /// The link messages to `to` take: the oldest outbound one, else the
    /// oldest inbound one. A stable choice keeps messages to a peer on one
    /// TCP connection, in order, for as long as it lives.
    pub(super) fn route(&self, to: NodeId) -> Option<(ConnId, mpsc::Sender<Vec<u8>>)> {
        let mut candidates = self
            .links
            .iter()
            .filter(|(_, l)| l.peer == to && l.role == LinkRole::Peer);
        let first_outbound = candidates.clone().find(|(_, l)| l.outbound);
        first_outbound
            .or_else(|| candidates.next())
            .map(|(c, l)| (*c, l.tx.clone()))
    }

    pub(super) fn flush_outbox(&mut self) {
        for (to, batch) in std::mem::take(&mut self.replication_outbox) {
            self.outbox
                .entry(to)
                .or_default()
                .push(PeerMessage::Replication(batch));
        }
        for (to, messages) in std::mem::take(&mut self.outbox) {
            if to == self.s.node_id {
                for m in messages {
                    self.on_peer_message(to, m);
                }
                continue;
            }
            let Some((conn, tx)) = self.route(to) else {
                tracing::trace!(
                    node = self.s.node_id,
                    to,
                    "no link: {} messages dropped",
                    messages.len()
                );
                self.unreachable.push(to);
                continue;
            };
            for m in messages {
                match wire::encode(&m) {
                    Ok(frame) => {
                        if let Err(e) = tx.try_send(frame) {
                            tracing::trace!(node = self.s.node_id, to, "link queue: {e}");
                            // Full or closed: close the link, the peer retries.
                            self.links.remove(&conn);
                            self.unreachable.push(to);
                            break;
                        }
                    }
                    Err(e) => tracing::error!("cannot encode a message for node {to}: {e}"),
                }
            }
        }
    }

    /// Tells every replica about links that broke (lost messages).
    pub(super) fn report_unreachable(&mut self) {
        let mut peers = std::mem::take(&mut self.unreachable);
        peers.sort_unstable();
        peers.dedup();
        for peer in peers {
            tracing::trace!(node = self.s.node_id, peer, "link to peer reported broken");
            let keys: Vec<_> = self
                .broker
                .iter()
                .flat_map(|b| b.slots.keys().cloned())
                .collect();
            for key in keys {
                let out = self
                    .slot_mut(&key)
                    .map(|s| s.runner.on_peer_disconnected(peer));
                if let Some(out) = out {
                    self.on_runner_output(&key, out);
                }
            }
        }
    }

    pub(super) fn end_turn(&mut self) {
        self.sync_group_leadership();
        // One slice a turn, so that a node that is never idle loads too.
        self.load_groups_step();
        self.group_commit();
        self.sync_metadata_log();
        self.flush_outbox();
        self.report_unreachable();
        // Effects of the reports (fetch backoff timers) need no flush now.
        self.flush_outbox();
    }
}
