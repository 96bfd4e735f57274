//! The node's event loop: one task owns every state machine of the node —
//! the metadata quorum (voter or observer), the active controller's pending
//! decisions, and one replica per hosted partition — and feeds them network
//! messages, timers and client calls one at a time. It executes their
//! effects: persistence first (fsync), then sends, batched per peer at the
//! end of each turn. It makes no protocol decision itself: leadership, the
//! ISR, the high watermark and every metadata change come from `runnel-model`.

mod groups;

pub use groups::{GroupAnswer, GroupOp, GroupSummary, OFFSETS_TOPIC};

use super::messages::{
    ControllerAck, ControllerFailure, PartitionMessage, PeerMessage, QuorumStatus,
};
use super::quorum_store::QuorumStore;
use super::settings::NodeSettings;
use super::transport::{ConnId, NetEvent};
use crate::partition_runner::{Output, PartitionRunner};
use crate::storage::disk_log::{BatchBytes, DiskLog, FileSlice};
use crate::storage::log_dirs::LogDirs;
use crate::wire::{self, LinkIdentity, LinkRole};
use bytes::Bytes;
use runnel_model::controller::{
    Controller, ControllerError, ControllerRequest, MetadataDecision, MetadataImage,
    MetadataRecord, Outcome, RequestKey,
};
use runnel_model::core::{BrokerEpoch, Effect, NodeId, Offset, RequestId};
use runnel_model::idempotence::SequenceCheck;
use runnel_model::log::PartitionLog;
use runnel_model::partition::{AlterPartitionError, PartitionRegistration};
use runnel_model::quorum::{Payload, Quorum, QuorumConfig, QuorumEffects, QuorumRole, QuorumTimer};
use runnel_model::replication::{
    Acks, FetchError, ProduceError, ProduceReply, ProduceRequest, Replica, ReplicaConfig,
    ReplicaTimer, ReplicationMessage,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
// tokio's clock: the real one normally, the simulated one under turmoil.
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Replicas address ISR proposals to this id; the node forwards them to the
/// active controller as `AlterPartition` requests.
pub const CONTROLLER_ADDRESS: NodeId = u32::MAX;
/// Tools (`quorum status`, observers) linked at once; more are refused.
const TOOL_LINKS_MAX: usize = 32;
/// How long a request to the controller may stay unanswered before it is sent again.
const CONTROLLER_RETRY_MS: u64 = 1_000;
/// The longest a client's admin request waits for the controller, whatever
/// its own timeout says (Kafka's admin clients default to 60 s).
const CONTROLLER_CLIENT_TIMEOUT_MS: u64 = 300_000;
/// What the node's own admin requests (auto-created topics) allow.
pub const CONTROLLER_INTERNAL_TIMEOUT_MS: u64 = 30_000;
/// Async mode: flush (and move the recovery point) this often.
const BACKGROUND_FLUSH_MS: u64 = 5_000;
pub const TICK_MS: u64 = 100;
/// Events one loop turn handles before it flushes (fsync, frames to peers).
const TURN_EVENTS_MAX: usize = 256;
/// Replicas [`Node::reconcile_partitions`] opens or updates in one turn.
/// Opening a log creates files: a decision that adds thousands of
/// partitions is carried out a slice per turn, the rest when the loop is
/// otherwise idle, so that the quorum's heartbeats and elections, client
/// calls and replication keep running in between (a 2,000-partition grow
/// done in one turn stalled the loop past the election timeout).
const RECONCILE_PER_TURN_MAX: usize = 128;
/// Logs opened on blocking threads at once. Opening creates or scans
/// files (a new log: a directory and three files, ~1.5 ms on this host's
/// ext4; an existing one: recovery), so it never runs on the loop.
const OPENS_IN_FLIGHT_MAX: usize = 64;
/// A turn at least this long is logged (a quarter of Kafka's default
/// controller.quorum.election.timeout.ms).
const SLOW_TURN_MS: u64 = 250;
/// Internal messages queued for the loop (links to every peer, all
/// partitions). Client requests queue separately, `queued.max.requests`.
pub const NET_QUEUE_MAX: usize = 65_536;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimerKey {
    Quorum(QuorumTimer),
    Replica(String, u32, ReplicaTimer),
    Group(String, runnel_model::group::GroupTimer),
}

/// Why a partition operation failed, for the Kafka front end to translate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartError {
    UnknownTopicOrPartition,
    NotLeaderOrFollower,
    OffsetOutOfRange,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    RequestTimedOut,
    CorruptMessage(String),
    Storage(String),
    /// Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER (idempotent producer gap).
    OutOfOrderSequence,
    /// Kafka's INVALID_PRODUCER_EPOCH.
    InvalidProducerEpoch,
    /// Not ready to answer yet (Kafka's COORDINATOR_LOAD_IN_PROGRESS): no
    /// block of producer ids has arrived from the controller.
    NotReady,
}

/// One partition's ListOffsets answer (Kafka's TimestampAndOffset): -1s
/// for "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

impl ListedOffset {
    const NONE: ListedOffset = ListedOffset {
        offset: -1,
        timestamp: -1,
        leader_epoch: -1,
    };
}

pub struct FetchPart {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: usize,
}

pub struct FetchOutcome {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Where the batches are in the segment file (`None`: nothing new).
    pub result: Result<Option<FileSlice>, PartError>,
}

/// What the Kafka front end asks the node.
pub enum KafkaCall {
    Produce {
        acks: i16,
        timeout_ms: u64,
        parts: Vec<(String, u32, Bytes)>,
        reply: oneshot::Sender<Vec<Result<i64, PartError>>>,
    },
    Fetch {
        parts: Vec<FetchPart>,
        reply: oneshot::Sender<Vec<FetchOutcome>>,
    },
    /// Timestamp -2 earliest, -1 latest, else the first offset at or after it.
    ListOffsets {
        parts: Vec<(String, u32, i64)>,
        reply: oneshot::Sender<Vec<Result<ListedOffset, PartError>>>,
    },
    /// Answered within `timeout_ms` (the client's): past it, TimedOut, and
    /// the request goes on being carried out (once) all the same.
    Controller {
        request: ControllerRequest,
        timeout_ms: u64,
        reply: oneshot::Sender<Result<ControllerAck, ControllerFailure>>,
    },
    InitProducerId {
        reply: oneshot::Sender<Result<i64, PartError>>,
    },
    /// A request for a group whose coordinator this node should be.
    Group {
        group_id: String,
        op: GroupOp,
        reply: oneshot::Sender<GroupAnswer>,
    },
    /// The groups this node coordinates.
    ListGroups {
        reply: oneshot::Sender<Vec<GroupSummary>>,
    },
}

pub enum Event {
    Net(NetEvent),
    Timer(TimerKey),
    Kafka(KafkaCall),
    Status(oneshot::Sender<QuorumStatus>),
    Tick,
    /// The background write-back of these partitions' files finished.
    WrittenBack(Vec<(String, u32)>),
    /// Nothing else is ready and replicas are still to be reconciled.
    Reconcile,
    /// A partition's log was opened off the loop (or could not be).
    Opened {
        key: (String, u32),
        log: Result<DiskLog, String>,
    },
}

impl Event {
    /// What kind of event this is, for logs.
    fn kind(&self) -> &'static str {
        match self {
            Event::Net(NetEvent::Up { .. }) => "link up",
            Event::Net(NetEvent::Down { .. }) => "link down",
            Event::Net(NetEvent::Message { .. }) => "peer message",
            Event::Timer(_) => "timer",
            Event::Kafka(_) => "client call",
            Event::Status(_) => "status",
            Event::Tick => "tick",
            Event::WrittenBack(_) => "write-back",
            Event::Reconcile => "reconcile",
            Event::Opened { .. } => "log opened",
        }
    }
}

/// What the Kafka front end reads without asking the loop.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub node_id: NodeId,
    pub image: MetadataImage,
    pub controller: Option<NodeId>,
    /// Committed metadata offset this view reflects.
    pub metadata_offset: Offset,
}

/// Handles the front end holds.
#[derive(Clone)]
pub struct NodeHandle {
    pub events: mpsc::Sender<Event>,
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// Bumped whenever a high watermark moves (wakes long-polling fetches).
    pub data_changed: watch::Receiver<u64>,
    pub settings: Arc<NodeSettings>,
    /// Kafka's `queued.max.request.bytes`: the request bytes (with room for
    /// what they decode into) all connections may hold at once; a
    /// connection waits for its share before it reads a request's body.
    pub request_bytes: Arc<tokio::sync::Semaphore>,
}

struct MetaState {
    quorum: Quorum<MetadataDecision>,
    store: QuorumStore,
    /// The committed image.
    image: MetadataImage,
    applied: Offset,
}

struct Link {
    peer: NodeId,
    role: LinkRole,
    outbound: bool,
    tx: mpsc::Sender<Vec<u8>>,
}

enum Waiter {
    Remote {
        peer: NodeId,
        id: u64,
    },
    Broker(u64),
    /// The controller's own decisions (session expiry): nobody waits.
    Nobody,
}

/// Requests this node's broker side has sent to the controller.
enum Purpose {
    Register,
    Heartbeat,
    Alter {
        topic: String,
        partition: u32,
        request: runnel_model::partition::AlterPartitionRequest,
    },
    Client {
        reply: oneshot::Sender<Result<ControllerAck, ControllerFailure>>,
        timeout_ms: u64,
    },
    /// A block of producer ids for this broker's incarnation `epoch`.
    ProducerIds {
        epoch: BrokerEpoch,
    },
}

struct Outstanding {
    request: ControllerRequest,
    purpose: Purpose,
    sent_at: Instant,
    deadline: Instant,
    /// The peers it was sent to: only they may answer it.
    asked: std::collections::BTreeSet<NodeId>,
}

struct Slot {
    runner: PartitionRunner,
    delivered: Option<PartitionRegistration>,
}

/// What a produce becomes for one partition's replica.
enum Submission {
    Append(ProduceRequest<BatchBytes>),
    /// A retried idempotent batch already in the log.
    Duplicate {
        id: RequestId,
        base_offset: Offset,
        end_offset: Offset,
        acks: Acks,
    },
}

struct ProduceCall {
    results: Vec<Option<Result<i64, PartError>>>,
    remaining: usize,
    reply: Option<oneshot::Sender<Vec<Result<i64, PartError>>>>,
    deadline: Instant,
}

struct BrokerState {
    endpoint: String,
    /// Where other brokers replicate from (registered with the controller).
    internal_endpoint: String,
    epoch: Option<BrokerEpoch>,
    registering: bool,
    last_heartbeat: Instant,
    log_dirs: LogDirs,
    slots: BTreeMap<(String, u32), Slot>,
    /// Logs being opened off the loop ([`Node::start_open`]), at most
    /// [`OPENS_IN_FLIGHT_MAX`].
    opening: std::collections::BTreeSet<(String, u32)>,
    /// A reconcile left partitions unopened because `opening` was full.
    opens_waiting: bool,
    /// Model request id → (produce call, index of the partition in it).
    produce_waiters: BTreeMap<RequestId, (u64, usize)>,
    produce_calls: BTreeMap<u64, ProduceCall>,
    next_request_id: RequestId,
    /// The block of producer ids the controller gave this incarnation.
    producer_ids: runnel_model::producer_ids::BrokerProducerIds,
    last_flush: Instant,
}

pub struct Node {
    s: Arc<NodeSettings>,
    me: LinkIdentity,
    events_tx: mpsc::Sender<Event>,
    net_tx: mpsc::Sender<NetEvent>,
    /// Every live internal connection. Several may lead to one peer (a
    /// combined node is dialled on its controller and its Kafka listener, and
    /// dials back): all are kept open, and one is chosen per peer.
    links: BTreeMap<ConnId, Link>,
    // Lookups only (never iterated), so hash order cannot leak into behaviour;
    // everything iterated is a BTreeMap, for a deterministic simulation.
    /// One connector task per address, and the flag that stops it
    /// reconnecting once the address is no longer wanted.
    connectors: HashMap<String, Arc<std::sync::atomic::AtomicBool>>,
    /// The addresses of `connectors` that lead to non-voter brokers.
    broker_links: std::collections::BTreeSet<String>,
    outbox: BTreeMap<NodeId, Vec<PeerMessage>>,
    replication_outbox: BTreeMap<NodeId, Vec<PartitionMessage>>,
    unreachable: Vec<NodeId>,
    timers: super::timers::Timers<TimerKey>,
    meta: Option<MetaState>,
    voters: BTreeMap<NodeId, String>,
    controller: Controller,
    /// Active controller only: the image with every record proposed so far.
    leader_image: Option<MetadataImage>,
    pending_commits: Vec<(Offset, Vec<MetadataRecord>, Waiter)>,
    heartbeats: BTreeMap<NodeId, Instant>,
    outstanding: BTreeMap<u64, Outstanding>,
    next_outstanding: u64,
    /// This process's session: with an outstanding id, the key of a request
    /// to the controller (fresh at every start, so a restarted broker's
    /// requests are never taken for its previous life's).
    session: u64,
    next_produce_call: u64,
    broker: Option<BrokerState>,
    groups: groups::GroupHost,
    view_tx: watch::Sender<Arc<ClusterView>>,
    data_tx: watch::Sender<u64>,
    /// [`Node::reconcile_partitions`] stopped at its per-turn bound.
    reconcile_pending: bool,
}

impl Node {
    /// Opens the node's disks; the caller then runs [`Node::run`].
    pub fn open(
        s: NodeSettings,
    ) -> anyhow::Result<(
        Node,
        NodeHandle,
        mpsc::Receiver<Event>,
        mpsc::Receiver<NetEvent>,
    )> {
        let s = Arc::new(s);
        // Client requests waiting for the loop: Kafka's queued.max.requests.
        // A full queue makes connections wait before handing over a request,
        // so they stop reading: backpressure, as Kafka's network threads do.
        let (events_tx, events_rx) = mpsc::channel(s.queued_max_requests.max(1));
        let (net_tx, net_rx) = mpsc::channel(NET_QUEUE_MAX);
        let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView {
            node_id: s.node_id,
            ..Default::default()
        }));
        let (data_tx, data_rx) = watch::channel(0u64);
        let me = LinkIdentity {
            cluster_id: s.cluster_id.clone(),
            node_id: s.node_id,
            role: LinkRole::Peer,
            secret: s.cluster_secret.clone(),
        };
        let broker = if s.broker {
            let log_dirs = LogDirs::open(&s.log_dirs, s.node_id, &s.cluster_id)
                .map_err(|e| anyhow::anyhow!("log.dirs: {e:?}"))?;
            Some(BrokerState {
                endpoint: s
                    .advertised_endpoint()
                    .expect("a broker has a listener")
                    .to_string(),
                internal_endpoint: s
                    .advertised_broker_listener
                    .as_ref()
                    .map(|hp| hp.connect_string())
                    .unwrap_or_default(),
                epoch: None,
                registering: false,
                last_heartbeat: Instant::now(),
                log_dirs,
                slots: BTreeMap::new(),
                opening: Default::default(),
                opens_waiting: false,
                produce_waiters: BTreeMap::new(),
                produce_calls: BTreeMap::new(),
                next_request_id: 1,
                producer_ids: Default::default(),
                last_flush: Instant::now(),
            })
        } else {
            None
        };
        let mut node = Node {
            s: s.clone(),
            me,
            events_tx: events_tx.clone(),
            net_tx,
            links: BTreeMap::new(),
            connectors: HashMap::new(),
            broker_links: Default::default(),
            outbox: BTreeMap::new(),
            replication_outbox: BTreeMap::new(),
            unreachable: Vec::new(),
            timers: Default::default(),
            meta: None,
            voters: BTreeMap::new(),
            controller: Controller::new(s.controller.clone()),
            leader_image: None,
            pending_commits: Vec::new(),
            heartbeats: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            next_outstanding: 1,
            session: wire::fresh_u64(),
            next_produce_call: 1,
            broker,
            groups: Default::default(),
            view_tx,
            data_tx,
            reconcile_pending: false,
        };
        if !s.voters.is_empty() {
            let voters = s
                .voters
                .iter()
                .map(|(id, hp)| (*id, hp.connect_string()))
                .collect();
            node.start_metadata(voters)?;
        }
        let request_bytes = Arc::new(tokio::sync::Semaphore::new(
            s.queued_max_request_bytes
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let handle = NodeHandle {
            events: events_tx,
            view: view_rx,
            data_changed: data_rx,
            settings: s,
            request_bytes,
        };
        Ok((node, handle, events_rx, net_rx))
    }

    /// Creates the metadata quorum member once the voters are known.
    fn start_metadata(&mut self, voters: BTreeMap<NodeId, String>) -> anyhow::Result<()> {
        let mut config = QuorumConfig::new(self.s.node_id, voters.keys().copied());
        config.election_timeout_ms = self.s.election_timeout_ms;
        config.election_stagger_ms = self.s.election_timeout_ms / 3;
        config.check_quorum_ms = self.s.election_timeout_ms * 2;
        config.fetch_max_wait_ms = (self.s.election_timeout_ms / 4).max(20);
        let store = if self.s.coordinator {
            let (mut store, report) = QuorumStore::open(&self.s.metadata_dir)?;
            if let Some(r) = report {
                tracing::warn!("{r}");
            }
            store.fsync_elections = !self.s.test_bugs.vote_before_fsync;
            store
        } else {
            QuorumStore::in_memory()
        };
        let quorum = Quorum::recover(config, store.durable.clone());
        self.meta = Some(MetaState {
            quorum,
            store,
            image: MetadataImage::default(),
            applied: 0,
        });
        for (id, address) in &voters {
            if *id != self.s.node_id {
                self.connect(address.clone());
            }
        }
        self.voters = voters;
        self.quorum_step(|q, out| q.start(out));
        Ok(())
    }

    pub fn net_sender(&self) -> mpsc::Sender<NetEvent> {
        self.net_tx.clone()
    }

    fn connect(&mut self, address: String) {
        if self.connectors.contains_key(&address) {
            return;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(super::transport::connector_until(
            address.clone(),
            self.me.clone(),
            super::transport::LinkTimeouts::default(),
            self.net_tx.clone(),
            stop.clone(),
        ));
        self.connectors.insert(address, stop);
    }

    /// Runs until the event channels close.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut net: mpsc::Receiver<NetEvent>,
    ) {
        for address in self
            .s
            .coordinator_addresses
            .iter()
            .map(|a| a.connect_string())
            .collect::<Vec<_>>()
        {
            self.connect(address);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Fairness: the tick comes first (it is ready once per TICK_MS), and
        // the two queues take turns being first, so a flood on one — say
        // replication traffic on the links — cannot starve the other (client
        // calls, timers) nor the tick-driven work (sessions, retries,
        // produce timeouts). `biased` keeps the simulation deterministic.
        let mut net_first = true;
        loop {
            let event = match net_first {
                true => tokio::select! {
                    biased;
                    _ = tick.tick() => Some(Event::Tick),
                    key = self.timers.next() => Some(Event::Timer(key)),
                    Some(e) = net.recv() => Some(Event::Net(e)),
                    Some(e) = events.recv() => Some(e),
                    _ = std::future::ready(()), if self.reconcile_pending => Some(Event::Reconcile),
                    else => None,
                },
                false => tokio::select! {
                    biased;
                    _ = tick.tick() => Some(Event::Tick),
                    key = self.timers.next() => Some(Event::Timer(key)),
                    Some(e) = events.recv() => Some(e),
                    Some(e) = net.recv() => Some(Event::Net(e)),
                    _ = std::future::ready(()), if self.reconcile_pending => Some(Event::Reconcile),
                    else => None,
                },
            };
            let Some(event) = event else { break };
            net_first = !net_first;
            let started = Instant::now();
            let kind = event.kind();
            self.on_event(event);
            // Drain what is already queued before flushing (one fsync and one
            // frame per peer serve all of it), a message from each queue in
            // turn.
            for _ in 0..TURN_EVENTS_MAX / 2 {
                let from_net = net.try_recv().map(Event::Net);
                let from_events = events.try_recv();
                if from_net.is_err() && from_events.is_err() {
                    break;
                }
                for e in [from_net.ok(), from_events.ok()].into_iter().flatten() {
                    self.on_event(e);
                }
            }
            self.end_turn();
            // A turn holds everything else back, the quorum's heartbeats
            // included: one long enough to risk an election is worth a line.
            let took_ms = started.elapsed().as_millis() as u64;
            if took_ms >= SLOW_TURN_MS {
                tracing::warn!("a slow event-loop turn: {took_ms} ms (began with {kind})");
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Net(NetEvent::Up {
                conn,
                peer,
                role,
                outbound,
                tx,
            }) => self.on_link_up(conn, peer, role, outbound, tx),
            Event::Net(NetEvent::Down { conn, peer }) => self.on_link_down(conn, peer),
            Event::Net(NetEvent::Message {
                conn,
                from,
                message,
            }) => self.on_link_message(conn, from, message),
            Event::Timer(key) => self.on_timer(key),
            Event::Kafka(call) => self.on_kafka(call),
            Event::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Event::Tick => self.on_tick(),
            Event::WrittenBack(keys) => self.finish_background_flush(keys),
            Event::Reconcile => self.reconcile_partitions(),
            Event::Opened { key, log } => self.finish_open(key, log),
        }
    }

    // ----- links ---------------------------------------------------------------

    fn on_link_up(
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

    fn on_link_down(&mut self, conn: ConnId, peer: NodeId) {
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
    fn send(&mut self, to: NodeId, message: PeerMessage) {
        self.outbox.entry(to).or_default().push(message);
    }

    /// The link messages to `to` take: the oldest outbound one, else the
    /// oldest inbound one. A stable choice keeps messages to a peer on one
    /// TCP connection, in order, for as long as it lives.
    fn route(&self, to: NodeId) -> Option<(ConnId, mpsc::Sender<Vec<u8>>)> {
        let mut candidates = self
            .links
            .iter()
            .filter(|(_, l)| l.peer == to && l.role == LinkRole::Peer);
        let first_outbound = candidates.clone().find(|(_, l)| l.outbound);
        first_outbound
            .or_else(|| candidates.next())
            .map(|(c, l)| (*c, l.tx.clone()))
    }

    fn flush_outbox(&mut self) {
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
    fn report_unreachable(&mut self) {
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

    fn end_turn(&mut self) {
        self.sync_group_leadership();
        self.group_commit();
        self.sync_metadata_log();
        self.flush_outbox();
        self.report_unreachable();
        // Effects of the reports (fetch backoff timers) need no flush now.
        self.flush_outbox();
    }

    // ----- timers ----------------------------------------------------------------

    fn set_timer(&mut self, key: TimerKey, after_ms: u64) {
        self.timers.set(key, after_ms);
    }

    fn cancel_timer(&mut self, key: &TimerKey) {
        self.timers.cancel(key);
    }

    fn on_timer(&mut self, key: TimerKey) {
        tracing::trace!(node = self.s.node_id, "timer {key:?}");
        match key {
            TimerKey::Quorum(t) => self.quorum_step(|q, out| q.on_timer(t, out)),
            TimerKey::Replica(topic, partition, t) => {
                let k = (topic, partition);
                if let Some(out) = self.slot_mut(&k).map(|s| s.runner.on_timer(t)) {
                    self.on_runner_output(&k, out);
                }
            }
            TimerKey::Group(group_id, t) => self.on_group_timer(group_id, t),
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.expire_sessions(now);
        self.retry_outstanding(now);
        self.broker_lifecycle(now);
        self.expire_produces(now);
        self.background_flush(now);
        self.expire_group_offsets();
    }

    // ----- metadata quorum ---------------------------------------------------------

    fn quorum_step(
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
    fn send_outstanding_to_new_leader(&mut self) {
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

    fn execute_quorum(&mut self, mut out: QuorumEffects<MetadataDecision>) {
        let mut effects: Vec<_> = out.drain().collect();
        if self.s.test_bugs.vote_before_fsync {
            // The seeded bug: messages (votes among them) leave before the
            // state they promise is written, which is then not fsynced.
            effects.sort_by_key(|e| matches!(e, Effect::Persist(_)));
        }
        for effect in effects {
            match effect {
                Effect::Persist(change) => {
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

    fn on_became_controller(&mut self) {
        let meta = self.meta.as_ref().expect("leader has a quorum");
        let mut image = MetadataImage::default();
        for (i, entry) in meta.quorum.log().iter().enumerate() {
            if let Payload::Record(d) = &entry.payload {
                image.apply_decision(d, i as Offset + 1);
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

    fn on_lost_controller(&mut self) {
        self.leader_image = None;
        let leader = self.meta.as_ref().and_then(|m| m.quorum.leader());
        for (_, _, waiter) in std::mem::take(&mut self.pending_commits) {
            self.answer(waiter, Err(ControllerFailure::NotController { leader }));
        }
    }

    /// One fsync for every metadata entry this turn wrote (group commit),
    /// before any message of the turn leaves; then what that made durable
    /// may be answered.
    fn sync_metadata_log(&mut self) {
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
    fn apply_committed(&mut self) {
        let Some(meta) = self.meta.as_mut() else {
            return;
        };
        let commit = meta
            .quorum
            .commit_offset()
            .min(meta.quorum.log().len() as Offset)
            .min(meta.store.synced_entries() as Offset);
        let advanced = commit > meta.applied;
        for offset in meta.applied..commit {
            if let Payload::Record(d) = &meta.quorum.log()[offset as usize].payload {
                meta.image.apply_decision(d, offset + 1);
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
        }
    }

    fn publish_view(&mut self) {
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

    fn status(&self) -> QuorumStatus {
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
            log_end_offset: q.log().len() as Offset,
            commit_offset: q.commit_offset(),
            followers,
            metadata_log_fsyncs: meta.store.log_syncs,
            fsyncs: crate::io::fsyncs(),
        }
    }

    // ----- peer messages -------------------------------------------------------------

    /// A message from a link: a tool may only ask for status (answered on
    /// its own link); a peer's message goes on, checked against the node
    /// id its link proved.
    fn on_link_message(&mut self, conn: ConnId, from: NodeId, message: PeerMessage) {
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

    fn on_peer_message(&mut self, from: NodeId, message: PeerMessage) {
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

    fn on_replication(&mut self, from: NodeId, pm: PartitionMessage) {
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

    // ----- active controller ---------------------------------------------------------

    /// Decides a request once (`Controller::decide_once`): a re-sent copy of
    /// one already carried out is answered with that decision, when it is
    /// committed, never decided a second time.
    fn controller_request(
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
                // Its first decision's answer, once that is committed.
                let records = match meta.quorum.log().get(end_offset as usize - 1) {
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
            let end_offset = meta.quorum.log().len() as Offset;
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

    fn answer(&mut self, waiter: Waiter, result: Result<ControllerAck, ControllerFailure>) {
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
    fn expire_sessions(&mut self, now: Instant) {
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

    // ----- requests to the controller ------------------------------------------------

    fn submit(&mut self, request: ControllerRequest, purpose: Purpose) {
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

    fn send_outstanding(&mut self, id: u64, request: ControllerRequest) {
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

    fn ask_controller(&mut self, to: NodeId, id: u64, request: ControllerRequest) {
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
    fn on_remote_controller_response(
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

    fn retry_outstanding(&mut self, now: Instant) {
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

    fn on_controller_response(
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

    fn finish_outstanding(
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

    // ----- broker: registration, heartbeats, partitions ------------------------------------

    fn broker_lifecycle(&mut self, now: Instant) {
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
    fn maybe_ask_producer_ids(&mut self) {
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

    fn slot_mut(&mut self, key: &(String, u32)) -> Option<&mut Slot> {
        self.broker.as_mut()?.slots.get_mut(key)
    }

    /// Brings the hosted replicas in line with the committed metadata:
    /// opens logs of new partitions, delivers changed registrations, drops
    /// deleted topics.
    fn reconcile_partitions(&mut self) {
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
                    let known = b.slots.get(&key).and_then(|s| s.delivered.as_ref());
                    if known != Some(reg) && !b.opening.contains(&key) {
                        deliveries.push((key, reg.clone()));
                    }
                }
            }
        }
        let removed: Vec<_> = b
            .slots
            .keys()
            .filter(|(t, p)| {
                meta.image
                    .partition(t, *p)
                    .is_none_or(|r| !r.replicas.contains(&me))
            })
            .cloned()
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
        for (key, reg) in deliveries.into_iter().take(budget) {
            let b = self.broker.as_mut().expect("checked");
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
    fn deliver(&mut self, key: &(String, u32), reg: PartitionRegistration) {
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
    fn start_open(&mut self, key: (String, u32)) {
        let b = self.broker.as_mut().expect("broker");
        let dir = b.log_dirs.partition_dir(&key.0, key.1);
        b.opening.insert(key.clone());
        let config = self.s.log.clone();
        let open = move || -> Result<DiskLog, String> {
            let (log, report) = DiskLog::open(&dir, config).map_err(|e| format!("{e:?}"))?;
            tracing::info!("{}: opened log {report:?}", dir.display());
            Ok(log)
        };
        if crate::io::SIMULATED {
            let log = open();
            return self.finish_open(key, log);
        }
        let events = self.events_tx.clone();
        tokio::task::spawn_blocking(move || {
            let log = open();
            let _ = events.blocking_send(Event::Opened { key, log });
        });
    }

    /// A log opened off the loop becomes the partition's replica, if the
    /// partition is still hosted here (else its directory goes).
    fn finish_open(&mut self, key: (String, u32), log: Result<DiskLog, String>) {
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
                // Tried again at the next metadata change.
                tracing::error!("{}-{}: cannot open the log: {e}", key.0, key.1);
                return;
            }
        };
        let reg = self
            .meta
            .as_ref()
            .and_then(|m| m.image.partition(&key.0, key.1))
            .filter(|r| r.replicas.contains(&me))
            .cloned();
        let Some(reg) = reg else {
            // Deleted or moved away while it was being opened.
            drop(log);
            let b = self.broker.as_mut().expect("checked");
            let _ = crate::io::fs::remove_dir_all(b.log_dirs.partition_dir(&key.0, key.1));
            return;
        };
        let s = &self.s;
        let mut config = ReplicaConfig::new(s.node_id, CONTROLLER_ADDRESS);
        config.min_insync_replicas = s.min_insync_replicas;
        config.flush_mode = s.flush_mode;
        config.replica_lag_time_max_ms = s.replica_lag_time_max_ms;
        config.fetch_backoff_ms = s.replica_fetch_backoff_ms;
        let runner = PartitionRunner::new(Replica::recover(config, log));
        let b = self.broker.as_mut().expect("checked");
        b.slots.insert(
            key.clone(),
            Slot {
                runner,
                delivered: None,
            },
        );
        self.deliver(&key, reg);
    }

    fn remove_partition(&mut self, key: &(String, u32)) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        if b.slots.remove(key).is_some() {
            let dir = b.log_dirs.partition_dir(&key.0, key.1);
            tracing::info!(
                "{}-{}: topic deleted, removing {}",
                key.0,
                key.1,
                dir.display()
            );
            let _ = crate::io::fs::remove_dir_all(&dir);
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

    fn on_runner_output(&mut self, key: &(String, u32), out: Output) {
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
        self.data_tx.send_modify(|v| *v += 1);
    }

    fn propose_isr_change(&mut self, key: &(String, u32), message: ReplicationMessage<BatchBytes>) {
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

    /// One fsync per partition that asked for one this turn.
    fn group_commit(&mut self) {
        let keys: Vec<_> = match self.broker.as_ref() {
            Some(b) => b
                .slots
                .iter()
                .filter(|(_, s)| s.runner.flush_wanted())
                .map(|(k, _)| k.clone())
                .collect(),
            None => return,
        };
        for key in keys {
            let result = self.slot_mut(&key).map(|s| s.runner.group_commit());
            match result {
                Some(Ok(out)) => self.on_runner_output(&key, out),
                Some(Err(e)) => tracing::error!("{}-{}: flush failed: {e:?}", key.0, key.1),
                None => {}
            }
        }
    }

    /// Async mode's periodic flush (it only moves the recovery point, so
    /// restarts scan little). The fsyncs that push a few hundred MB to disk
    /// run on a blocking thread, not in this loop; the loop then flushes
    /// what little is left.
    fn background_flush(&mut self, now: Instant) {
        let due = self.broker.as_ref().is_some_and(|b| {
            now.duration_since(b.last_flush) >= Duration::from_millis(BACKGROUND_FLUSH_MS)
        });
        if !due {
            return;
        }
        let b = self.broker.as_mut().expect("due implies broker");
        b.last_flush = now;
        let mut keys = Vec::new();
        let mut files = Vec::new();
        for (key, slot) in &b.slots {
            let f = slot.runner.replica().log().unflushed_files();
            if !f.is_empty() {
                keys.push(key.clone());
                files.extend(f);
            }
        }
        if keys.is_empty() {
            return;
        }
        if crate::io::SIMULATED {
            // One thread per simulated host: flush in the loop.
            for f in files {
                let _ = crate::io::sync_data(&f);
            }
            return self.finish_background_flush(keys);
        }
        let events = self.events_tx.clone();
        tokio::task::spawn_blocking(move || {
            for f in files {
                let _ = crate::io::sync_data(&f);
            }
            let _ = events.blocking_send(Event::WrittenBack(keys));
        });
    }

    fn finish_background_flush(&mut self, keys: Vec<(String, u32)>) {
        for key in keys {
            match self.slot_mut(&key).map(|s| s.runner.flush_now()) {
                Some(Ok(out)) => self.on_runner_output(&key, out),
                Some(Err(e)) => tracing::error!("{}-{}: flush failed: {e:?}", key.0, key.1),
                None => {}
            }
        }
    }

    // ----- Kafka calls ---------------------------------------------------------------

    fn on_kafka(&mut self, call: KafkaCall) {
        match call {
            KafkaCall::Produce {
                acks,
                timeout_ms,
                parts,
                reply,
            } => self.produce(acks, timeout_ms, parts, reply),
            KafkaCall::Fetch { parts, reply } => {
                let results = parts.into_iter().map(|p| self.fetch_one(p)).collect();
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
        }
    }

    fn produce(
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
                let known = self
                    .meta
                    .as_ref()
                    .is_some_and(|m| m.image.partition(&key.0, key.1).is_some());
                call.results[i] = Some(Err(if known {
                    PartError::NotLeaderOrFollower
                } else {
                    PartError::UnknownTopicOrPartition
                }));
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
            let runner = &mut self.slot_mut(&key).expect("checked").runner;
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

    fn on_produce_reply(&mut self, reply: ProduceReply) {
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

    fn maybe_finish_produce(&mut self, call_id: u64) {
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

    fn expire_produces(&mut self, now: Instant) {
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

    fn fetch_one(&mut self, p: FetchPart) -> FetchOutcome {
        let fetch_above_hw = self.s.test_bugs.fetch_above_high_watermark;
        let key = (p.topic, p.partition);
        let known = self
            .meta
            .as_ref()
            .is_some_and(|m| m.image.partition(&key.0, key.1).is_some());
        let Some(slot) = self.slot_mut(&key) else {
            let e = if known {
                PartError::NotLeaderOrFollower
            } else {
                PartError::UnknownTopicOrPartition
            };
            return FetchOutcome {
                high_watermark: -1,
                log_start_offset: -1,
                result: Err(e),
            };
        };
        let replica = slot.runner.replica();
        let high_watermark = replica.high_watermark() as i64;
        let log_start_offset = replica.log().start_offset() as i64;
        let result = if p.offset < 0 {
            Err(PartError::OffsetOutOfRange)
        } else if fetch_above_hw && replica.is_leader() {
            // Seeded bug (tests only): serve what is not committed yet.
            let end = replica.log().end_offset();
            let from = (p.offset as u64).max(replica.log().start_offset());
            match from < end {
                true => replica
                    .log()
                    .locate(from, end, p.max_bytes)
                    .map_err(|e| PartError::Storage(format!("{e:?}"))),
                false => Ok(None),
            }
        } else {
            // The model says what may be read; the log says where it is.
            replica
                .committed_range(p.offset as u64)
                .map_err(|e| match e {
                    FetchError::NotLeaderOrFollower => PartError::NotLeaderOrFollower,
                    FetchError::OffsetOutOfRange => PartError::OffsetOutOfRange,
                    FetchError::Log(e) => PartError::Storage(format!("{e:?}")),
                })
                .and_then(|(from, until)| {
                    replica
                        .log()
                        .locate(from, until, p.max_bytes)
                        .map_err(|e| PartError::Storage(format!("{e:?}")))
                })
        };
        FetchOutcome {
            high_watermark,
            log_start_offset,
            result,
        }
    }

    fn list_offset(
        &mut self,
        key: &(String, u32),
        timestamp: i64,
    ) -> Result<ListedOffset, PartError> {
        let known = self
            .meta
            .as_ref()
            .is_some_and(|m| m.image.partition(&key.0, key.1).is_some());
        let Some(slot) = self.slot_mut(key) else {
            return Err(if known {
                PartError::NotLeaderOrFollower
            } else {
                PartError::UnknownTopicOrPartition
            });
        };
        let replica = slot.runner.replica();
        let Some(leader_epoch) = replica.leader_epoch().filter(|_| replica.is_leader()) else {
            return Err(PartError::NotLeaderOrFollower);
        };
        // Kafka's Partition.fetchOffsetForTimestamp for a client: nothing
        // past the high watermark (the last stable offset, without
        // transactions) is visible.
        let log = replica.log();
        let hw = replica.high_watermark();
        let epoch_of = |o: u64| log.epoch_of_offset(o).map_or(-1, |e| e as i32);
        let storage = |e: runnel_model::log::LogError| PartError::Storage(format!("{e:?}"));
        let found = match timestamp {
            // LATEST: the high watermark, with the leader's epoch.
            -1 => Some(ListedOffset {
                offset: hw as i64,
                timestamp: -1,
                leader_epoch: leader_epoch as i32,
            }),
            // EARLIEST and EARLIEST_LOCAL (KIP-405; all of it is local).
            -2 | -4 => {
                let start = log.start_offset();
                Some(ListedOffset {
                    offset: start as i64,
                    timestamp: -1,
                    leader_epoch: epoch_of(start),
                })
            }
            // MAX_TIMESTAMP (KIP-734): the first record with the largest timestamp.
            -3 => log
                .max_timestamp_record()
                .map_err(storage)?
                .map(|(o, t)| ListedOffset {
                    offset: o as i64,
                    timestamp: t,
                    leader_epoch: epoch_of(o),
                }),
            // The first record whose timestamp is at or after ts (any other
            // negative ts too, as Kafka looks it up like a time).
            ts => log
                .record_for_timestamp(ts)
                .map_err(storage)?
                .map(|(o, t)| ListedOffset {
                    offset: o as i64,
                    timestamp: t,
                    leader_epoch: epoch_of(o),
                }),
        };
        let special = matches!(timestamp, -1 | -2 | -4);
        let visible = found.filter(|f| special || (f.offset as u64) < hw);
        Ok(visible.unwrap_or(ListedOffset::NONE))
    }
}

/// A peer speaks only for itself: a broker registers, heartbeats, shuts
/// down and proposes ISR changes as the broker its link proved, and session
/// expiry is the controller's own decision, never a peer's request. (Which
/// replica a fetch speaks for, and who may send partition state or quorum
/// messages, the model's state machines check themselves.)
fn claims_match_sender(from: NodeId, message: &PeerMessage) -> Result<(), String> {
    let PeerMessage::ControllerRequest { request, .. } = message else {
        return Ok(());
    };
    let claimed = match request {
        ControllerRequest::RegisterBroker { broker, .. }
        | ControllerRequest::Heartbeat { broker, .. }
        | ControllerRequest::ControlledShutdown { broker, .. } => Some(*broker),
        ControllerRequest::AlterPartition { request, .. } => Some(request.leader),
        ControllerRequest::AllocateProducerIds { broker, .. } => Some(*broker),
        ControllerRequest::SessionExpired { .. } => {
            return Err("a session expiry is the controller's decision, not a request".into())
        }
        ControllerRequest::CreateTopic { .. }
        | ControllerRequest::CreateInternalTopic { .. }
        | ControllerRequest::DeleteTopic { .. }
        | ControllerRequest::CreatePartitions { .. }
        | ControllerRequest::CreateAcls { .. }
        | ControllerRequest::DeleteAcls { .. }
        | ControllerRequest::ValidateOnly(_) => None,
    };
    match claimed {
        Some(broker) if broker != from => Err(format!("request speaks for broker {broker}")),
        _ => Ok(()),
    }
}

fn produce_error(e: ProduceError) -> PartError {
    match e {
        ProduceError::NotLeaderOrFollower => PartError::NotLeaderOrFollower,
        ProduceError::NotEnoughReplicas => PartError::NotEnoughReplicas,
        ProduceError::NotEnoughReplicasAfterAppend => PartError::NotEnoughReplicasAfterAppend,
        ProduceError::RequestTimedOut => PartError::RequestTimedOut,
        ProduceError::Log(runnel_model::log::LogError::Corrupt(why)) => {
            PartError::CorruptMessage(why)
        }
        ProduceError::Log(e) => PartError::Storage(format!("{e:?}")),
    }
}

/// A one-line description of a replication message (for trace logs).
fn summary(m: &ReplicationMessage<BatchBytes>) -> String {
    match m {
        ReplicationMessage::Fetch(f) => {
            format!("Fetch offset {} epoch {}", f.fetch_offset, f.leader_epoch)
        }
        ReplicationMessage::FetchResponse(r) => match &r.result {
            runnel_model::replication::FetchResult::Records {
                records,
                high_watermark,
            } => {
                format!("Records {} bytes hw {high_watermark}", records.0.len())
            }
            other => format!("{other:?}"),
        },
        other => format!("{:?}", std::mem::discriminant(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_model::partition::AlterPartitionRequest;
    use std::collections::BTreeSet;

    fn request(request: ControllerRequest) -> PeerMessage {
        PeerMessage::ControllerRequest {
            session: 1,
            id: 1,
            request,
        }
    }

    #[test]
    fn a_peer_speaks_only_for_itself() {
        let for_broker = |broker| {
            vec![
                ControllerRequest::RegisterBroker {
                    broker,
                    endpoint: String::new(),
                    internal_endpoint: String::new(),
                },
                ControllerRequest::Heartbeat { broker, epoch: 1 },
                ControllerRequest::ControlledShutdown { broker, epoch: 1 },
                ControllerRequest::AllocateProducerIds {
                    broker,
                    broker_epoch: 1,
                },
                ControllerRequest::AlterPartition {
                    topic: "t".into(),
                    partition: 0,
                    broker_epoch: 1,
                    request: AlterPartitionRequest {
                        leader: broker,
                        leader_epoch: 1,
                        partition_epoch: 1,
                        new_isr: BTreeSet::from([broker]),
                    },
                },
            ]
        };
        for r in for_broker(7) {
            assert!(claims_match_sender(7, &request(r.clone())).is_ok(), "{r:?}");
            assert!(
                claims_match_sender(8, &request(r.clone())).is_err(),
                "{r:?}"
            );
        }
        let expiry = ControllerRequest::SessionExpired {
            broker: 7,
            epoch: 1,
        };
        assert!(claims_match_sender(7, &request(expiry)).is_err());
        let admin = ControllerRequest::DeleteTopic { name: "t".into() };
        assert!(claims_match_sender(8, &request(admin)).is_ok());
    }
}
