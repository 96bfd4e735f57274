//! The node's event loop: one task owns every state machine of the node —
//! the metadata quorum (voter or observer), the active controller's pending
//! decisions, and one replica per hosted partition — and feeds them network
//! messages, timers and client calls one at a time. It executes their
//! effects: persistence first (fsync), then sends, batched per peer at the
//! end of each turn. It makes no protocol decision itself: leadership, the
//! ISR, the high watermark and every metadata change come from `runnel-model`.
//!
//! This file holds the node's state, the loop and the timers; each runtime
//! concern's methods live in a child module: `links` (peers' links and the
//! outbox), `peers` (checking and routing peer messages), `metadata` (the
//! quorum's host and the published view), `controller_host` (the active
//! controller), `controller_client` (requests to it), `broker`
//! (registration and the hosted replicas), `flush` (group commit and
//! background flushes), `produce`, `reads` (Fetch, ListOffsets),
//! `delete_records` and `groups` (the group coordinator).

mod broker;
mod compaction;
mod controller_client;
mod controller_host;
mod delete_records;
mod flush;
mod group_records;
mod groups;
mod links;
mod metadata;
mod offline;
mod peers;
mod produce;
mod reads;
mod retention;
mod topic_configs;

pub use groups::{GroupAnswer, GroupOp, GroupSummary, OFFSETS_TOPIC};
pub use retention::{cleanup_policy_compacts, cleanup_policy_deletes};

use super::messages::{
    ControllerAck, ControllerFailure, PartitionMessage, PeerMessage, QuorumStatus,
};
use super::parked_fetches::{ParkedFetches, Visible};
use super::quorum_store::QuorumStore;
use super::settings::NodeSettings;
use super::transport::{ConnId, NetEvent};
use crate::partition_runner::{Output, PartitionRunner};
use crate::storage::disk_log::{BatchBytes, DiskLog, FileSlice, FlushTicket};
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
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
// tokio's clock: the real one normally, the simulated one under turmoil.
use tokio::sync::{mpsc, oneshot, watch, Notify};
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
/// Logs queued for opening at once (on `runtime::open_pool`, one thread
/// per core). Opening creates or scans files (a new log: a directory and
/// three files, ~1.5 ms on this host's ext4; an existing one: recovery),
/// so it never runs on the loop.
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
        /// The request's waker, parked on every partition it reads: a
        /// change a consumer can see there wakes the long poll.
        waker: Arc<Notify>,
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
    /// The groups this node coordinates, and whether it is still loading
    /// some (an offsets partition it leads is being replayed).
    ListGroups {
        reply: oneshot::Sender<(Vec<GroupSummary>, bool)>,
    },
    /// DeleteRecords for one partition: records below `offset` (-1: the
    /// high watermark) go; answered with the low watermark once every
    /// in-sync replica has deleted them. The caller bounds the wait.
    DeleteRecords {
        topic: String,
        partition: u32,
        offset: i64,
        reply: oneshot::Sender<Result<i64, PartError>>,
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
    /// Nothing else is ready and an offsets partition is being replayed.
    LoadGroups,
    /// A group commit's fsyncs ran off the loop ([`Node::group_commit`]).
    Flushed(Vec<((String, u32), FlushTicket)>),
    /// A cleaning pass ran off the loop ([`Node::cleaner_check`]).
    Cleaned {
        key: (String, u32),
        result: Result<crate::storage::cleaner::Cleaned, runnel_model::log::LogError>,
    },
    /// A partition's log was opened off the loop (or could not be).
    Opened {
        key: (String, u32),
        topic_id: u128,
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
            Event::LoadGroups => "group load",
            Event::Opened { .. } => "log opened",
            Event::Flushed(_) => "group commit done",
            Event::Cleaned { .. } => "cleaning pass done",
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
    /// When the last metadata snapshot was taken (or the node started).
    last_snapshot_at: Instant,
    /// The store's log bytes then: the trigger counts what came after.
    log_bytes_at_snapshot: u64,
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
    /// A report of offline replicas (`offline.rs`).
    ReplicasOffline,
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
    /// The id of the topic incarnation this replica belongs to: a topic
    /// deleted and created again under the same name is another topic.
    topic_id: u128,
    runner: PartitionRunner,
    delivered: Option<PartitionRegistration>,
    /// Consumer fetches waiting for this partition to move.
    parked: ParkedFetches,
    /// DeleteRecords answers waiting for the in-sync replicas' log starts.
    deletes: delete_records::PendingDeletes,
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
    /// Replicas whose log is unusable (`offline.rs`) → their topic's id;
    /// bounded by the partitions assigned here.
    offline: BTreeMap<(String, u32), u128>,
    /// A report of them to the controller is outstanding.
    offline_reporting: bool,
    /// Model request id → (produce call, index of the partition in it).
    produce_waiters: BTreeMap<RequestId, (u64, usize)>,
    produce_calls: BTreeMap<u64, ProduceCall>,
    next_request_id: RequestId,
    /// The block of producer ids the controller gave this incarnation.
    producer_ids: runnel_model::producer_ids::BrokerProducerIds,
    last_flush: Instant,
    /// Partitions whose runner asked for a group commit since the last one,
    /// and partitions with data or a recovery point left to write back: the
    /// flushes visit these, never every partition, so an idle partition
    /// costs no turn and no tick anything (issue 17). Each holds slot keys
    /// only, so it is bounded by the slots.
    flush_asked: BTreeSet<(String, u32)>,
    write_back_due: BTreeSet<(String, u32)>,
    last_retention_check: Instant,
    /// Partitions the current retention pass has still to check (a few
    /// ticks' worth at a time, `retention_check`); bounded by the slots.
    retention_queue: std::collections::VecDeque<(String, u32)>,
    last_cleaner_check: Instant,
    /// The replica whose cleaning pass runs off the loop (one at a time,
    /// Kafka's `log.cleaner.threads` default).
    cleaning: Option<(String, u32)>,
    /// A group commit's fsyncs are running off the loop
    /// ([`Node::group_commit`]); the next waits for them.
    flush_in_flight: bool,
    /// Where a group commit cut short by its bound goes on (`group_commit`).
    flush_cursor: Option<(String, u32)>,
    /// A background write-back round runs off the loop; the next waits.
    write_back_in_flight: bool,
    /// Where a write-back pass cut short by its file bound goes on: the
    /// next round starts after this key as soon as the last one ends.
    write_back_cursor: Option<(String, u32)>,
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
                offline: BTreeMap::new(),
                offline_reporting: false,
                produce_waiters: BTreeMap::new(),
                produce_calls: BTreeMap::new(),
                next_request_id: 1,
                producer_ids: Default::default(),
                last_flush: Instant::now(),
                flush_asked: BTreeSet::new(),
                write_back_due: BTreeSet::new(),
                last_retention_check: Instant::now(),
                last_cleaner_check: Instant::now(),
                cleaning: None,
                retention_queue: Default::default(),
                flush_in_flight: false,
                flush_cursor: None,
                write_back_in_flight: false,
                write_back_cursor: None,
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
            last_snapshot_at: Instant::now(),
            log_bytes_at_snapshot: 0,
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
                    _ = std::future::ready(()), if self.groups.loading() => Some(Event::LoadGroups),
                    else => None,
                },
                false => tokio::select! {
                    biased;
                    _ = tick.tick() => Some(Event::Tick),
                    key = self.timers.next() => Some(Event::Timer(key)),
                    Some(e) = events.recv() => Some(e),
                    Some(e) = net.recv() => Some(Event::Net(e)),
                    _ = std::future::ready(()), if self.reconcile_pending => Some(Event::Reconcile),
                    _ = std::future::ready(()), if self.groups.loading() => Some(Event::LoadGroups),
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
            Event::Opened { key, topic_id, log } => self.finish_open(key, topic_id, log),
            Event::Flushed(tickets) => self.finish_group_commit(tickets),
            Event::Cleaned { key, result } => self.finish_cleaning(key, result),
            Event::LoadGroups => self.load_groups_step(),
        }
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
        self.retention_check(now);
        self.cleaner_check(now);
        self.expire_group_offsets();
        self.metadata_snapshot_check(now);
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
        | ControllerRequest::ControlledShutdown { broker, .. }
        | ControllerRequest::ReplicasOffline { broker, .. } => Some(*broker),
        ControllerRequest::AlterPartition { request, .. } => Some(request.leader),
        ControllerRequest::AllocateProducerIds { broker, .. } => Some(*broker),
        ControllerRequest::SessionExpired { .. } => {
            return Err("a session expiry is the controller's decision, not a request".into())
        }
        ControllerRequest::CreateTopic { .. }
        | ControllerRequest::CreateInternalTopic { .. }
        | ControllerRequest::DeleteTopic { .. }
        | ControllerRequest::AlterTopicConfigs { .. }
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
                log_start_offset,
            } => {
                let bytes = records.0.len();
                format!("Records {bytes} bytes hw {high_watermark} start {log_start_offset}")
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
