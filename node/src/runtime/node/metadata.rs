//! The metadata quorum's host: steps the model's `Quorum`, executes its
//! effects (persist, then send), follows the controller's election, folds
//! committed decisions into the image and publishes the cluster view the
//! Kafka front end reads.

use super::*;

impl Node {
    // ----- metadata quorum ---------------------------------------------------------

    pub(super) fn quorum_step(
        &mut self,
        f: impl FnOnce(&mut Quorum<MetadataDecision>, &mut QuorumEffects<MetadataDecision>),
    ) {
        let Some(meta) = self.meta.as_mut() else {
            return;
        };
        let was_leader = meta.quorum.is_leader();
        let known_leader = meta.quorum.leader();
        let mut out = QuorumEffects::new();
        f(&mut meta.quorum, &mut out);
        self.execute_quorum(out);
        let is_leader = self.meta.as_ref().is_some_and(|m| m.quorum.is_leader());
        if is_leader && !was_leader {
            self.on_became_controller();
        } else if was_leader && !is_leader {
            self.on_lost_controller();
        }
        let leader = self.meta.as_ref().and_then(|m| m.quorum.leader());
        if leader.is_some() && leader != known_leader {
            self.send_outstanding_to_new_leader();
            // Register (or heartbeat) now rather than at the next tick.
            self.broker_lifecycle(Instant::now());
        }
        self.apply_committed();
    }

    /// A controller is known (first election, or a new one): requests that
    /// waited for one go now, not at their next retry, so a request that
    /// arrived before the election is answered as soon as the controller
    /// can decide it (the admin-right-after-start case). Requests
    /// the old controller held are asked again; their `RequestKey` makes
    /// the new controller answer a decided one with its first decision.
    pub(super) fn send_outstanding_to_new_leader(&mut self) {
        let now = Instant::now();
        let ids: Vec<u64> = self.outstanding.keys().copied().collect();
        for id in ids {
            let Some(o) = self.outstanding.get_mut(&id) else {
                continue; // answered while an earlier one was sent
            };
            o.sent_at = now;
            let request = o.request.clone();
            self.send_outstanding(id, request);
        }
    }

    pub(super) fn execute_quorum(&mut self, mut out: QuorumEffects<MetadataDecision>) {
        let mut effects: Vec<_> = out.drain().collect();
        if self.s.test_bugs.vote_before_fsync {
            // The seeded bug: messages (votes among them) leave before the
            // state they promise is written, which is then not fsynced.
            effects.sort_by_key(|e| matches!(e, Effect::Persist(_)));
        }
        for effect in effects {
            match effect {
                Effect::Persist(change) => {
                    if let runnel_model::quorum::QuorumPersist::InstallSnapshot(snapshot) = &change
                    {
                        tracing::info!(
                            "installing the leader's metadata snapshot at offset {}",
                            snapshot.end_offset
                        );
                    }
                    let meta = self.meta.as_mut().expect("quorum effects need a quorum");
                    if let Err(e) = meta.store.apply(&change) {
                        // Going on would break a promise already made on disk.
                        tracing::error!("cannot persist quorum state: {e}; stopping");
                        std::process::exit(2);
                    }
                }
                Effect::Send { to, message } => self.send(to, PeerMessage::Quorum(message)),
                Effect::SetTimer { timer, after_ms } => {
                    self.set_timer(TimerKey::Quorum(timer), after_ms)
                }
                Effect::CancelTimer { timer } => self.cancel_timer(&TimerKey::Quorum(timer)),
                Effect::FlushLog { .. } | Effect::Reply(()) => {}
            }
        }
    }

    pub(super) fn on_became_controller(&mut self) {
        let meta = self.meta.as_ref().expect("leader has a quorum");
        let mut image = meta
            .quorum
            .snapshot()
            .map_or_else(MetadataImage::default, snapshot_image);
        let start = meta.quorum.log_start();
        for (i, entry) in meta.quorum.entries().iter().enumerate() {
            if let Payload::Record(d) = &entry.payload {
                image.apply_decision(d, start + i as Offset + 1);
            }
        }
        tracing::info!(
            "node {} is the active controller (epoch {})",
            self.s.node_id,
            meta.quorum.epoch()
        );
        // Every broker gets a full session from now: the new controller has
        // not heard anyone yet.
        let now = Instant::now();
        self.heartbeats = image.brokers.keys().map(|b| (*b, now)).collect();
        self.leader_image = Some(image);
    }

    pub(super) fn on_lost_controller(&mut self) {
        self.leader_image = None;
        let leader = self.meta.as_ref().and_then(|m| m.quorum.leader());
        for (_, _, waiter) in std::mem::take(&mut self.pending_commits) {
            self.answer(waiter, Err(ControllerFailure::NotController { leader }));
        }
    }

    /// One fsync for every metadata entry this turn wrote (group commit),
    /// before any message of the turn leaves; then what that made durable
    /// may be answered.
    pub(super) fn sync_metadata_log(&mut self) {
        let Some(meta) = self.meta.as_mut() else {
            return;
        };
        if let Err(e) = meta.store.sync() {
            // Going on would break a promise about to be made.
            tracing::error!("cannot sync the metadata log: {e}; stopping");
            std::process::exit(2);
        }
        self.apply_committed();
    }

    /// Folds newly committed records into the image; answers decisions now
    /// committed. Only entries this node has on disk count: a single voter
    /// commits what it appended at once, but answers after the turn's fsync.
    pub(super) fn apply_committed(&mut self) {
        let Some(meta) = self.meta.as_mut() else {
            return;
        };
        let commit = meta
            .quorum
            .commit_offset()
            .min(meta.quorum.end_offset())
            .min(meta.store.synced_end_offset());
        let advanced = commit > meta.applied;
        // Topics whose configs changed: their replicas here apply them.
        let mut reconfigured = BTreeSet::new();
        // A snapshot installed from the leader (or found at start) past
        // what is applied: the image becomes its image, every topic's
        // configs are applied again.
        if let Some(snapshot) = meta.quorum.snapshot() {
            if meta.applied < snapshot.end_offset {
                meta.image = snapshot_image(snapshot);
                meta.applied = snapshot.end_offset;
                reconfigured.extend(meta.image.topics.keys().cloned());
            }
        }
        for offset in meta.applied..commit {
            let Some(entry) = meta.quorum.entry(offset) else {
                break; // not held (never below the snapshot: applied above)
            };
            if let Payload::Record(d) = &entry.payload {
                meta.image.apply_decision(d, offset + 1);
                for r in &d.records {
                    if let MetadataRecord::Topic { name, .. } = r {
                        reconfigured.insert(name.clone());
                    }
                }
            }
        }
        let commit = commit.max(meta.applied);
        meta.applied = commit;
        // Answers for decisions applied by now, including a re-sent
        // request's first decision that was applied before it came back:
        // answered at once, not at the next unrelated commit.
        let done: Vec<_> = {
            let (done, waiting) = std::mem::take(&mut self.pending_commits)
                .into_iter()
                .partition(|(end, _, _)| *end <= commit);
            self.pending_commits = waiting;
            done
        };
        for (end_offset, records, waiter) in done {
            self.answer(
                waiter,
                Ok(ControllerAck {
                    end_offset,
                    records,
                }),
            );
        }
        if advanced {
            self.publish_view();
            self.reconcile_partitions();
            for topic in reconfigured {
                self.apply_topic_configs(&topic);
            }
        }
    }

    pub(super) fn publish_view(&mut self) {
        let Some(meta) = self.meta.as_ref() else {
            return;
        };
        let view = ClusterView {
            node_id: self.s.node_id,
            image: meta.image.clone(),
            controller: meta.quorum.leader(),
            metadata_offset: meta.applied,
        };
        self.view_tx.send_replace(Arc::new(view));
        // Brokers replicate from each other: keep a link to every broker,
        // at its internal endpoint (a voter's address when it is one: that
        // link exists already), and none to an endpoint no longer
        // registered (a restarted broker picks a new port).
        if self.broker.is_some() {
            let me = self.s.node_id;
            let wanted: std::collections::BTreeSet<String> = meta
                .image
                .brokers
                .iter()
                .filter(|(id, b)| {
                    **id != me && !self.voters.contains_key(id) && !b.internal_endpoint.is_empty()
                })
                .map(|(_, b)| b.internal_endpoint.clone())
                .collect();
            let gone: Vec<String> = self.broker_links.difference(&wanted).cloned().collect();
            for address in gone {
                if let Some(stop) = self.connectors.remove(&address) {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            for address in &wanted {
                self.connect(address.clone());
            }
            self.broker_links = wanted;
        }
    }

    pub(super) fn status(&self) -> QuorumStatus {
        let Some(meta) = self.meta.as_ref() else {
            return QuorumStatus {
                node_id: self.s.node_id,
                mode: "starting".into(),
                leader: None,
                epoch: 0,
                log_end_offset: 0,
                commit_offset: 0,
                followers: Vec::new(),
                metadata_log_fsyncs: 0,
                fsyncs: crate::io::fsyncs(),
            };
        };
        let q = &meta.quorum;
        let mode = match q.role() {
            QuorumRole::Leader(_) => "leader",
            QuorumRole::Follower { .. } if self.s.coordinator => "follower",
            QuorumRole::Follower { .. } => "observer",
            QuorumRole::Candidate { .. } | QuorumRole::PreCandidate { .. } => "candidate",
            QuorumRole::Unattached => "unattached",
        };
        let followers = match q.role() {
            QuorumRole::Leader(l) => l.end_offsets.iter().map(|(n, o)| (*n, *o)).collect(),
            _ => Vec::new(),
        };
        QuorumStatus {
            node_id: self.s.node_id,
            mode: mode.into(),
            leader: q.leader(),
            epoch: q.epoch(),
            log_end_offset: q.end_offset(),
            commit_offset: q.commit_offset(),
            followers,
            metadata_log_fsyncs: meta.store.log_syncs,
            fsyncs: crate::io::fsyncs(),
        }
    }
}

/// The image a metadata snapshot's records rebuild.
fn snapshot_image(
    snapshot: &runnel_model::quorum::QuorumSnapshot<MetadataDecision>,
) -> MetadataImage {
    let mut image = MetadataImage::default();
    for d in &snapshot.records {
        image.apply_decision(d, snapshot.end_offset);
    }
    image
}

impl Node {
    /// Takes a metadata snapshot at the applied offset when the log after
    /// the last one holds `metadata.log.max.record.bytes.between.snapshots`
    /// or `metadata.log.max.snapshot.interval.ms` passed with something
    /// committed since (Kafka's triggers), on every node: voters bound
    /// their log on disk, observers their log in memory.
    pub(super) fn metadata_snapshot_check(&mut self, now: Instant) {
        let (max_bytes, interval_ms) = (
            self.s.metadata_snapshot_max_bytes,
            self.s.metadata_snapshot_interval_ms,
        );
        let Some(meta) = self.meta.as_mut() else {
            return;
        };
        let (start, applied) = (meta.quorum.log_start(), meta.applied);
        let elapsed_ms = now.duration_since(meta.last_snapshot_at).as_millis() as u64;
        // Growth since the last snapshot: an uncommitted tail longer than
        // the trigger does not make every tick take one.
        let grown = meta
            .store
            .log_bytes()
            .saturating_sub(meta.log_bytes_at_snapshot);
        let due = grown >= max_bytes || (interval_ms > 0 && elapsed_ms >= interval_ms);
        if applied <= start || !due {
            return;
        }
        // One that could not be sent to a follower in a peer frame is not
        // taken (the log goes on growing; said once per trigger period).
        let image_bytes = postcard::to_stdvec(&meta.image).map_or(usize::MAX, |b| b.len());
        if image_bytes > crate::runtime::quorum_store::SNAPSHOT_BYTES_MAX {
            tracing::warn!("no metadata snapshot: the image takes {image_bytes} bytes");
            meta.last_snapshot_at = now;
            meta.log_bytes_at_snapshot = meta.store.log_bytes();
            return;
        }
        let records = vec![MetadataDecision {
            request: None,
            records: vec![MetadataRecord::Image(Box::new(meta.image.clone()))],
        }];
        let mut out = QuorumEffects::new();
        if let Err(e) = meta.quorum.take_snapshot(applied, records, &mut out) {
            tracing::warn!("no metadata snapshot at {applied}: {e:?}");
            return;
        }
        meta.last_snapshot_at = now;
        tracing::info!("metadata snapshot at offset {applied} (the log started at {start})");
        self.execute_quorum(out);
        if let Some(meta) = self.meta.as_mut() {
            meta.log_bytes_at_snapshot = meta.store.log_bytes();
        }
    }
}
