//! A node's settings, built from Kafka's `server.properties` (broker,
//! coordinator or both, by `process.roles`) or from ZooKeeper's `zoo.cfg`
//! (a coordinator, as in the seed). All defaults are Kafka's unless noted.

use crate::config::{ConfigError, Properties, ZooConfig, SERVER_KEYS};
use crate::storage::disk_log::{FlushPolicy, LogConfig, RetentionPolicy};
use runnel_model::controller::ControllerConfig;
use runnel_model::core::NodeId;
use runnel_model::partition::ElectionPolicy;
use runnel_model::replication::FlushMode;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// ZooKeeper-style coordinators (`zoo.cfg`, `myid`) number themselves 1, 2,
/// 3 while the seed's brokers are 0, 1, 2: the two id spaces overlap. Inside
/// the cluster (quorum, links) a coordinator's id is `ZOO_ID_BASE + myid`,
/// like the 3000+ ids Kafka's docs give controllers.
pub const ZOO_ID_BASE: NodeId = 3000;

/// `host:port`, as configured (host may be empty: all interfaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn parse(text: &str) -> Result<HostPort, ConfigError> {
        let text = text.trim();
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| ConfigError(format!("{text:?}: expected host:port")))?;
        let port = port
            .parse()
            .map_err(|_| ConfigError(format!("{text:?}: port must be a number 0-65535")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(HostPort { host, port })
    }

    /// The address to connect to (an empty host means this machine).
    pub fn connect_string(&self) -> String {
        let host = if self.host.is_empty() {
            "localhost"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.connect_string())
    }
}

#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub broker: bool,
    pub coordinator: bool,
    /// Where Kafka clients (and peer brokers) connect.
    pub kafka_listeners: Vec<HostPort>,
    pub advertised: Option<HostPort>,
    /// Internal-only listeners of a coordinator (peer port, client port).
    pub coordinator_listeners: Vec<HostPort>,
    /// The listener other brokers replicate from (internal protocol only):
    /// the listener `inter.broker.listener.name` names; else a combined
    /// node's coordinator listener; else one the broker binds on its Kafka
    /// listener's host with a port the system picks. Never a Kafka listener:
    /// no client can speak the internal protocol to a Kafka port.
    pub broker_listener: Option<HostPort>,
    /// How other brokers reach `broker_listener` (from
    /// `advertised.listeners`, else the listener itself).
    pub advertised_broker_listener: Option<HostPort>,
    /// What internal links prove (`cluster.secret.file`); without it links
    /// are unauthenticated, like Kafka's PLAINTEXT inter-broker listener
    /// without an authorizer, and the node warns at startup.
    pub cluster_secret: crate::wire::LinkSecret,
    /// Voters with addresses, when the configuration names them.
    pub voters: BTreeMap<NodeId, HostPort>,
    /// Where to reach the coordinators when only addresses are known
    /// (`zookeeper.connect`).
    pub coordinator_addresses: Vec<HostPort>,
    pub metadata_dir: PathBuf,
    pub log_dirs: Vec<PathBuf>,
    pub controller: ControllerConfig,
    pub min_insync_replicas: usize,
    pub flush_mode: FlushMode,
    pub replica_lag_time_max_ms: u64,
    pub replica_fetch_backoff_ms: u64,
    pub log: LogConfig,
    pub retention: RetentionPolicy,
    pub flush: FlushPolicy,
    pub retention_check_interval_ms: u64,
    /// Kafka's `producer.id.expiration.ms`: an idempotent producer not
    /// heard of for this long is forgotten (checked with retention).
    pub producer_id_expiration_ms: u64,
    /// Log compaction (`log.cleaner.*`).
    pub cleaner: CleanerSettings,
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// Kafka's `metadata.log.max.record.bytes.between.snapshots` (20 MiB):
    /// a metadata snapshot is taken once the log after the last one holds
    /// this much.
    pub metadata_snapshot_max_bytes: u64,
    /// Kafka's `metadata.log.max.snapshot.interval.ms` (1 h; 0: never by
    /// time): a snapshot is taken this long after the last one if anything
    /// was committed since.
    pub metadata_snapshot_interval_ms: u64,
    pub socket_request_max_bytes: usize,
    /// Kafka's `connections.max.idle.ms`: a client connection that sends
    /// nothing for this long is closed (its task and socket freed).
    pub connections_max_idle_ms: u64,
    /// Kafka's `max.connections`: client connections open at once on this
    /// node; past it the listener stops accepting (they wait in the kernel's
    /// backlog) until one closes. Kafka's default is unbounded; Runnel's is
    /// half the process's file-descriptor limit, so clients can never take
    /// the descriptors the logs need (see `limits::default_max_connections`).
    pub max_connections: usize,
    /// Kafka's `max.connections.per.ip` (default unbounded) and
    /// `max.connections.per.ip.overrides` (`host:count,...`): a connection
    /// past its address's limit is accepted and closed at once.
    pub max_connections_per_ip: usize,
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// Kafka's `queued.max.requests` (500): requests waiting for the event
    /// loop; when full, connections stop reading (backpressure).
    pub queued_max_requests: usize,
    /// Kafka's `queued.max.request.bytes`: request bytes held at once by all
    /// connections, charged as they arrive (a connection waits, unread, for
    /// room). Kafka's default is unbounded (-1); Runnel's is 512 MiB, so a
    /// flood of large requests waits instead of exhausting memory.
    pub queued_max_request_bytes: usize,
    /// Kafka's `message.max.bytes` (1048588): the largest record batch a
    /// produce may carry (a topic's `max.message.bytes` overrides it).
    pub message_max_bytes: usize,
    /// KIP-937's `log.message.timestamp.before.max.ms` (default unbounded)
    /// and `log.message.timestamp.after.max.ms` (Kafka 4.0's default: one
    /// hour): how far a batch's timestamps may be from the broker's clock.
    /// The older `log.message.timestamp.difference.max.ms` sets both.
    pub timestamp_before_max_ms: u64,
    pub timestamp_after_max_ms: u64,
    /// `log.message.timestamp.type=LogAppendTime` (default CreateTime):
    /// batches are stamped with the broker's time unless the topic's
    /// `message.timestamp.type` says otherwise.
    pub log_append_time: bool,
    /// Kafka's `group.max.size`, `group.min.session.timeout.ms` (6000) and
    /// `group.max.session.timeout.ms` (1800000).
    pub group_max_size: usize,
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    pub auto_create_topics: bool,
    /// The authorizer (ACLs, `runnel_model::acl`); its
    /// `allow.everyone.if.no.acl.found` defaults to true here (Kafka:
    /// false, but Kafka without an authorizer allows everything, and that
    /// is what a cluster without ACLs does here).
    pub authorizer: runnel_model::acl::Authorizer,
    pub offsets_topic_replication_factor: u32,
    /// Kafka's `offsets.topic.num.partitions` (50).
    pub offsets_topic_num_partitions: u32,
    /// Kafka's `offsets.topic.segment.bytes` (100 MiB): the offsets
    /// topic's `segment.bytes`, smaller than other topics' so that the
    /// cleaner (which cleans closed segments only) keeps it small.
    pub offsets_topic_segment_bytes: u64,
    /// Kafka's `offsets.retention.minutes` (7 days), in ms.
    pub offsets_retention_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    /// Seeded node bugs for the fault-injection suite (never set in
    /// production: only the RUNNEL_TEST_BUGS environment variable sets them).
    pub test_bugs: TestBugs,
    pub warnings: Vec<String>,
}

/// Known node-level mistakes the fault-injection suite must catch. Protocol
/// bugs are seeded in `runnel-model`; these are the node misusing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestBugs {
    /// Answer acks=all produces as soon as the leader appended (as acks=1),
    /// before any follower's fetch covers the batch.
    pub ack_before_replication: bool,
    /// Serve consumer fetches up to the log end instead of the high watermark.
    pub fetch_above_high_watermark: bool,
    /// Send quorum messages (votes among them) before writing the epoch and
    /// vote they promise, and never fsync that write: a power loss can make
    /// a voter forget its vote and vote again in the same epoch.
    pub vote_before_fsync: bool,
}

impl TestBugs {
    /// `RUNNEL_TEST_BUGS=ack-before-replication,fetch-above-high-watermark,vote-before-fsync`.
    pub fn from_env() -> TestBugs {
        let v = std::env::var("RUNNEL_TEST_BUGS").unwrap_or_default();
        let on = |name: &str| v.split(',').any(|b| b.trim() == name);
        TestBugs {
            ack_before_replication: on("ack-before-replication"),
            fetch_above_high_watermark: on("fetch-above-high-watermark"),
            vote_before_fsync: on("vote-before-fsync"),
        }
    }
}

impl NodeSettings {
    fn defaults(node_id: NodeId) -> NodeSettings {
        NodeSettings {
            node_id,
            cluster_id: "runnel".into(),
            broker: false,
            coordinator: false,
            kafka_listeners: Vec::new(),
            advertised: None,
            coordinator_listeners: Vec::new(),
            broker_listener: None,
            advertised_broker_listener: None,
            cluster_secret: Default::default(),
            voters: BTreeMap::new(),
            coordinator_addresses: Vec::new(),
            metadata_dir: PathBuf::new(),
            log_dirs: Vec::new(),
            controller: ControllerConfig::default(),
            min_insync_replicas: 1,
            flush_mode: FlushMode::Async,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_backoff_ms: 1_000,
            log: LogConfig::default(),
            retention: RetentionPolicy::default(),
            flush: FlushPolicy::default(),
            retention_check_interval_ms: 300_000,
            producer_id_expiration_ms: 86_400_000,
            cleaner: CleanerSettings::default(),
            session_timeout_ms: 9_000,
            heartbeat_interval_ms: 2_000,
            election_timeout_ms: 1_000,
            metadata_snapshot_max_bytes: 20 << 20,
            metadata_snapshot_interval_ms: 3_600_000,
            socket_request_max_bytes: 104_857_600,
            connections_max_idle_ms: 600_000,
            max_connections: crate::limits::default_max_connections(),
            max_connections_per_ip: i32::MAX as usize,
            max_connections_per_ip_overrides: BTreeMap::new(),
            queued_max_requests: 500,
            queued_max_request_bytes: 512 << 20,
            message_max_bytes: 1_048_588,
            timestamp_before_max_ms: i64::MAX as u64,
            timestamp_after_max_ms: 3_600_000,
            log_append_time: false,
            group_max_size: runnel_model::group::GROUP_MAX_SIZE_LIMIT,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            auto_create_topics: true,
            authorizer: runnel_model::acl::Authorizer::default(),
            offsets_topic_replication_factor: 3,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            group_initial_rebalance_delay_ms: 3_000,
            test_bugs: TestBugs::from_env(),
            warnings: Vec::new(),
        }
    }

    /// A coordinator from a ZooKeeper `zoo.cfg`; its id is in `dataDir/myid`.
    pub fn from_zoo_cfg(text: &str) -> Result<NodeSettings, ConfigError> {
        let (zoo, warnings) = ZooConfig::parse(text)?;
        let myid_path = PathBuf::from(&zoo.data_dir).join("myid");
        let myid = std::fs::read_to_string(&myid_path).map_err(|e| {
            ConfigError(format!(
                "{}: {e} (write this coordinator's id there, as for ZooKeeper)",
                myid_path.display()
            ))
        })?;
        let node_id: NodeId = myid.trim().parse().map_err(|_| {
            ConfigError(format!(
                "{}: {:?} is not a number",
                myid_path.display(),
                myid.trim()
            ))
        })?;
        if !(1..=255).contains(&node_id) {
            return Err(ConfigError(format!(
                "{}: myid {node_id} must be between 1 and 255, as for ZooKeeper",
                myid_path.display()
            )));
        }
        let Some((host, peer_port, _)) = zoo.servers.get(&node_id) else {
            return Err(ConfigError(format!(
                "myid is {node_id} but there is no server.{node_id} line in zoo.cfg"
            )));
        };
        let mut s = NodeSettings::defaults(ZOO_ID_BASE + node_id);
        s.coordinator = true;
        s.warnings = warnings;
        s.coordinator_listeners = vec![
            HostPort {
                host: host.clone(),
                port: *peer_port,
            },
            HostPort {
                host: String::new(),
                port: zoo.client_port,
            },
        ];
        s.voters = zoo
            .servers
            .iter()
            .map(|(id, (h, p, _))| {
                (
                    ZOO_ID_BASE + *id,
                    HostPort {
                        host: h.clone(),
                        port: *p,
                    },
                )
            })
            .collect();
        s.metadata_dir = PathBuf::from(&zoo.data_dir);
        if let Some(file) = &zoo.secret_file {
            s.cluster_secret = read_secret(file)?;
        }
        // ZooKeeper's session timeout is at least 2 ticks; an election
        // follows a tick of silence.
        s.session_timeout_ms = 3 * zoo.tick_time_ms;
        s.election_timeout_ms = zoo.tick_time_ms.max(200);
        Ok(s)
    }

    /// A broker, a coordinator or both, from `server.properties`.
    pub fn from_properties(props: &Properties) -> Result<NodeSettings, ConfigError> {
        let id = props
            .get("node.id")
            .or(props.get("broker.id"))
            .ok_or_else(|| ConfigError("node.id (or broker.id) is required".into()))?;
        let node_id: NodeId = id
            .parse()
            .map_err(|_| ConfigError(format!("node.id={id:?}")))?;
        let mut s = NodeSettings::defaults(node_id);
        s.warnings = props.warnings.clone();
        if let Some(c) = props.get("cluster.id") {
            s.cluster_id = c.to_string();
        }
        let roles = props.get("process.roles").unwrap_or("broker");
        for role in roles.split(',').map(str::trim) {
            match role {
                "broker" => s.broker = true,
                "controller" | "coordinator" => s.coordinator = true,
                other => {
                    return Err(ConfigError(format!(
                        "process.roles: unknown role {other:?} (broker, controller)"
                    )))
                }
            }
        }
        let listeners = props.get("listeners").unwrap_or("PLAINTEXT://:9092");
        let protocols = security_protocols(props)?;
        let controller_names = listener_names(props.get("controller.listener.names"), "CONTROLLER");
        let mut broker_name = props
            .get("inter.broker.listener.name")
            .map(|n| n.trim().to_ascii_uppercase());
        for (name, hp) in parse_listeners("listeners", listeners)? {
            check_served(&name, &hp, &protocols, &controller_names)?;
            if controller_names.contains(&name) {
                s.coordinator_listeners.push(hp);
            } else if broker_name.as_ref() == Some(&name) {
                s.broker_listener = Some(hp);
            } else {
                s.kafka_listeners.push(hp);
            }
        }
        if let Some(name) = broker_name.clone() {
            if s.broker_listener.is_none() {
                return Err(ConfigError(format!(
                    "inter.broker.listener.name={name} names no listener in listeners"
                )));
            }
            if s.kafka_listeners.is_empty() {
                // Kafka's usual `inter.broker.listener.name=PLAINTEXT`: the
                // client listener shared with brokers. Runnel keeps the
                // internal protocol off client listeners, so it stays a
                // client listener and brokers get one of their own.
                s.warnings.push(format!(
                    "inter.broker.listener.name={name} names the only client listener; Runnel \
                     replicates over a listener of its own instead (name another listener to \
                     choose it)"
                ));
                s.kafka_listeners.extend(s.broker_listener.take());
                broker_name = None;
            }
        }
        if let Some(file) = props.get("cluster.secret.file") {
            s.cluster_secret = read_secret(file)?;
        }
        if let Some(adv) = props.get("advertised.listeners") {
            let advertised = parse_listeners("advertised.listeners", adv)?;
            s.advertised_broker_listener = advertised
                .iter()
                .find(|(n, _)| Some(n) == broker_name.as_ref())
                .map(|(_, hp)| hp.clone());
            s.advertised = advertised
                .into_iter()
                .find(|(n, _)| !controller_names.contains(n) && Some(n) != broker_name.as_ref())
                .map(|(_, hp)| hp);
        }
        if let Some(voters) = props.get("controller.quorum.voters") {
            s.voters = parse_voters(voters)?;
        }
        for key in ["zookeeper.connect", "controller.quorum.bootstrap.servers"] {
            if let Some(list) = props.get(key) {
                // `host:port,host:port/chroot`: the chroot means nothing here.
                let list = list.split('/').next().unwrap_or("");
                for hp in list.split(',').filter(|x| !x.trim().is_empty()) {
                    s.coordinator_addresses.push(HostPort::parse(hp)?);
                }
            }
        }
        if s.voters.is_empty() && s.coordinator_addresses.is_empty() {
            return Err(ConfigError(
                "no coordinators: set zookeeper.connect or controller.quorum.voters".into(),
            ));
        }
        if s.coordinator && !s.voters.contains_key(&node_id) {
            return Err(ConfigError(format!(
                "process.roles includes controller but controller.quorum.voters has no {node_id}@host:port"
            )));
        }
        if s.broker && s.kafka_listeners.is_empty() {
            return Err(ConfigError(
                "a broker needs a PLAINTEXT listener in listeners".into(),
            ));
        }
        let dirs = props
            .get("log.dirs")
            .or(props.get("log.dir"))
            .unwrap_or("/tmp/kafka-logs");
        s.log_dirs = dirs
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        s.metadata_dir = props
            .get("metadata.log.dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| s.log_dirs[0].join("__cluster_metadata"));
        apply_numbers(&mut s, props);
        apply_limits(&mut s, props)?;
        Ok(s)
    }

    /// The endpoint brokers advertise (`advertised.listeners`, else the listener).
    pub fn advertised_endpoint(&self) -> Option<HostPort> {
        self.advertised
            .clone()
            .or_else(|| self.kafka_listeners.first().cloned())
            .map(|mut hp| {
                if hp.host.is_empty() || hp.host == "0.0.0.0" || hp.host == "::" {
                    hp.host = "localhost".into();
                }
                hp
            })
    }
}

fn apply_numbers(s: &mut NodeSettings, p: &Properties) {
    let u = |k: &str, d: u64| p.int(k, d as i64).max(0) as u64;
    s.controller = ControllerConfig {
        num_partitions: u("num.partitions", 1) as u32,
        default_replication_factor: u("default.replication.factor", 1) as u32,
        policy: ElectionPolicy {
            unclean_leader_election_enable: p.bool("unclean.leader.election.enable", false),
            ..ElectionPolicy::default()
        },
        bug_ignore_broker_epoch: false,
        bug_decide_resent_requests: false,
    };
    s.min_insync_replicas = u("min.insync.replicas", 1).max(1) as usize;
    s.replica_lag_time_max_ms = u("replica.lag.time.max.ms", 30_000);
    s.replica_fetch_backoff_ms = u("replica.fetch.backoff.ms", 1_000);
    s.log.segment_bytes = u("log.segment.bytes", 1 << 30);
    s.log.index_interval_bytes = u("log.index.interval.bytes", 4096);
    s.log.roll_ms = Some(match p.get("log.roll.ms") {
        Some(_) => u("log.roll.ms", 0),
        None => u("log.roll.hours", 168) * 3_600_000,
    });
    let retention_ms = if p.get("log.retention.ms").is_some() {
        p.int("log.retention.ms", -1)
    } else if p.get("log.retention.minutes").is_some() {
        p.int("log.retention.minutes", -1) * 60_000
    } else {
        p.int("log.retention.hours", 168) * 3_600_000
    };
    s.retention = RetentionPolicy {
        retention_ms: (retention_ms >= 0).then_some(retention_ms as u64),
        retention_bytes: Some(p.int("log.retention.bytes", -1))
            .filter(|b| *b >= 0)
            .map(|b| b as u64),
    };
    s.retention_check_interval_ms = u("log.retention.check.interval.ms", 300_000);
    s.producer_id_expiration_ms = u("producer.id.expiration.ms", 86_400_000);
    let d = CleanerSettings::default();
    let ratio = p
        .get("log.cleaner.min.cleanable.ratio")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| (0.0..=1.0).contains(r));
    let max_lag = p.int("log.cleaner.max.compaction.lag.ms", i64::MAX);
    s.cleaner = CleanerSettings {
        enable: p.bool("log.cleaner.enable", d.enable),
        backoff_ms: u("log.cleaner.backoff.ms", d.backoff_ms),
        dedupe_buffer_bytes: u("log.cleaner.dedupe.buffer.size", d.dedupe_buffer_bytes),
        min_cleanable_ratio: ratio.unwrap_or(d.min_cleanable_ratio),
        delete_retention_ms: p.int("log.cleaner.delete.retention.ms", d.delete_retention_ms),
        min_compaction_lag_ms: p.int("log.cleaner.min.compaction.lag.ms", 0).max(0),
        max_compaction_lag_ms: (max_lag > 0 && max_lag < i64::MAX).then_some(max_lag),
    };
    let every = p
        .get("log.flush.interval.messages")
        .map(|_| u("log.flush.interval.messages", 1));
    s.flush = FlushPolicy {
        interval_messages: every,
        interval_ms: p
            .get("log.flush.interval.ms")
            .map(|_| u("log.flush.interval.ms", 0)),
        durable: every == Some(1),
    };
    // Flushing after every message is Runnel's durable mode: acknowledged
    // writes are on disk on every ISR member that counted (group commit).
    s.flush_mode = if s.flush.durable {
        FlushMode::Durable
    } else {
        FlushMode::Async
    };
    s.session_timeout_ms = u("broker.session.timeout.ms", 9_000);
    s.heartbeat_interval_ms = u("broker.heartbeat.interval.ms", 2_000)
        .min(s.session_timeout_ms / 3)
        .max(50);
    s.election_timeout_ms = u("controller.quorum.election.timeout.ms", 1_000);
    s.metadata_snapshot_max_bytes = u("metadata.log.max.record.bytes.between.snapshots", 20 << 20);
    s.metadata_snapshot_interval_ms = u("metadata.log.max.snapshot.interval.ms", 3_600_000);
    s.socket_request_max_bytes = u("socket.request.max.bytes", 104_857_600) as usize;
    s.connections_max_idle_ms = u("connections.max.idle.ms", 600_000);
    s.auto_create_topics = p.bool("auto.create.topics.enable", true);
    s.authorizer.allow_everyone_if_no_acl_found = p.bool("allow.everyone.if.no.acl.found", true);
    s.offsets_topic_replication_factor = u("offsets.topic.replication.factor", 3) as u32;
    s.offsets_topic_num_partitions = u("offsets.topic.num.partitions", 50) as u32;
    s.offsets_topic_segment_bytes = u("offsets.topic.segment.bytes", 104_857_600);
    s.offsets_retention_ms = u("offsets.retention.minutes", 10_080).saturating_mul(60_000);
    s.group_initial_rebalance_delay_ms = u("group.initial.rebalance.delay.ms", 3_000);
}

/// The limits on what clients may ask (Kafka's keys, Kafka's defaults
/// unless `NodeSettings` says otherwise).
fn apply_limits(s: &mut NodeSettings, p: &Properties) -> Result<(), ConfigError> {
    let u = |k: &str, d: u64| p.int(k, d as i64).max(0) as u64;
    if p.get("max.connections").is_some() {
        s.max_connections = u("max.connections", 0) as usize;
    }
    s.max_connections_per_ip = u("max.connections.per.ip", i32::MAX as u64) as usize;
    if let Some(text) = p.get("max.connections.per.ip.overrides") {
        s.max_connections_per_ip_overrides = parse_ip_overrides(text)?;
    }
    s.queued_max_requests = u("queued.max.requests", 500).max(1) as usize;
    match p.int("queued.max.request.bytes", 512 << 20) {
        -1 => s.queued_max_request_bytes = usize::MAX,
        n if n < s.socket_request_max_bytes as i64 => {
            return Err(ConfigError(format!(
                "queued.max.request.bytes={n} must be -1 or at least socket.request.max.bytes={}",
                s.socket_request_max_bytes
            )))
        }
        n => s.queued_max_request_bytes = n as usize,
    }
    s.message_max_bytes = u("message.max.bytes", 1_048_588) as usize;
    let difference = p
        .get("log.message.timestamp.difference.max.ms")
        .map(|_| u("log.message.timestamp.difference.max.ms", 0));
    s.timestamp_before_max_ms = u(
        "log.message.timestamp.before.max.ms",
        difference.unwrap_or(i64::MAX as u64),
    );
    s.timestamp_after_max_ms = u(
        "log.message.timestamp.after.max.ms",
        difference.unwrap_or(3_600_000),
    );
    s.log_append_time = match p.get("log.message.timestamp.type") {
        None | Some("CreateTime") => false,
        Some("LogAppendTime") => true,
        Some(other) => {
            return Err(ConfigError(format!(
                "log.message.timestamp.type={other}: must be CreateTime or LogAppendTime"
            )))
        }
    };
    let limit = runnel_model::group::GROUP_MAX_SIZE_LIMIT;
    s.group_max_size = u("group.max.size", limit as u64) as usize;
    if s.group_max_size > limit {
        s.warnings.push(format!(
            "group.max.size={} is above what one group input may answer; using {limit}",
            s.group_max_size
        ));
        s.group_max_size = limit;
    }
    s.group_min_session_timeout_ms = u("group.min.session.timeout.ms", 6_000);
    s.group_max_session_timeout_ms = u("group.max.session.timeout.ms", 1_800_000);
    Ok(())
}

/// `max.connections.per.ip.overrides`: `host:count,host:count` (hosts as
/// IP addresses; Kafka also resolves names, Runnel takes addresses only).
fn parse_ip_overrides(text: &str) -> Result<BTreeMap<std::net::IpAddr, usize>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (host, count) = e.rsplit_once(':').ok_or_else(|| {
                ConfigError(format!(
                    "max.connections.per.ip.overrides: {e:?} is not address:count"
                ))
            })?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip = host.parse().map_err(|_| {
                ConfigError(format!(
                    "max.connections.per.ip.overrides: {host:?} is not an IP address"
                ))
            })?;
            let count = count.parse().map_err(|_| {
                ConfigError(format!(
                    "max.connections.per.ip.overrides: {count:?} is not a count"
                ))
            })?;
            Ok((ip, count))
        })
        .collect()
}

/// The cluster secret from `cluster.secret.file` (its contents, trimmed).
fn read_secret(file: &str) -> Result<crate::wire::LinkSecret, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError(format!("cluster.secret.file={file}: {e}")))?;
    let secret = text.trim();
    if secret.len() < 16 {
        return Err(ConfigError(format!(
            "cluster.secret.file={file}: the secret must be at least 16 characters"
        )));
    }
    Ok(crate::wire::LinkSecret::new(secret.as_bytes().to_vec()))
}

/// Kafka's `listener.security.protocol.map` (`NAME:PROTOCOL,...`), with
/// Kafka's default entries (each protocol names itself) and CONTROLLER as
/// PLAINTEXT, as KRaft's examples configure it.
fn security_protocols(p: &Properties) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map: BTreeMap<String, String> = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
        .into_iter()
        .map(|n| (n.to_string(), n.to_string()))
        .collect();
    map.insert("CONTROLLER".into(), "PLAINTEXT".into());
    if let Some(text) = p.get("listener.security.protocol.map") {
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, protocol) = entry.split_once(':').ok_or_else(|| {
                ConfigError(format!(
                    "listener.security.protocol.map: {entry:?} is not NAME:PROTOCOL"
                ))
            })?;
            map.insert(
                name.trim().to_ascii_uppercase(),
                protocol.trim().to_ascii_uppercase(),
            );
        }
    }
    Ok(map)
}

/// A comma-separated list of listener names (upper case), or `default`.
fn listener_names(text: Option<&str>, default: &str) -> Vec<String> {
    text.unwrap_or(default)
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// A listener is served only as what it says it is: this build speaks
/// PLAINTEXT only, so an SSL or SASL listener is a startup error (never
/// plaintext in disguise), and so is a listener whose security protocol
/// nothing names.
fn check_served(
    name: &str,
    hp: &HostPort,
    protocols: &BTreeMap<String, String>,
    controller_names: &[String],
) -> Result<(), ConfigError> {
    // As written (an empty host stays empty).
    let hp = format!("{}:{}", hp.host, hp.port);
    let Some(protocol) = protocols.get(name) else {
        return Err(ConfigError(format!(
            "listeners: {name}://{hp} has no security protocol: add {name}:PLAINTEXT to \
             listener.security.protocol.map{}",
            if controller_names.is_empty() {
                String::new()
            } else {
                format!(" (controller listeners: {})", controller_names.join(","))
            }
        )));
    };
    if protocol != "PLAINTEXT" {
        return Err(ConfigError(format!(
            "listeners: {name}://{hp} uses security protocol {protocol}, which this build of \
             Runnel does not serve (only PLAINTEXT; TLS and SASL are not implemented yet). \
             Remove the listener or make it PLAINTEXT."
        )));
    }
    Ok(())
}

/// `NAME://host:port,NAME2://host:port`.
fn parse_listeners(key: &str, text: &str) -> Result<Vec<(String, HostPort)>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, rest) = l
                .split_once("://")
                .ok_or_else(|| ConfigError(format!("{key}: {l:?} is not NAME://host:port")))?;
            Ok((name.to_ascii_uppercase(), HostPort::parse(rest)?))
        })
        .collect()
}

/// `1@host:port,2@host:port`.
fn parse_voters(text: &str) -> Result<BTreeMap<NodeId, HostPort>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let (id, hp) = v.split_once('@').ok_or_else(|| {
                ConfigError(format!(
                    "controller.quorum.voters: {v:?} is not id@host:port"
                ))
            })?;
            let id = id.parse().map_err(|_| {
                ConfigError(format!("controller.quorum.voters: {id:?} is not a node id"))
            })?;
            Ok((id, HostPort::parse(hp)?))
        })
        .collect()
}

/// Parses `server.properties` text plus `--override key=value` pairs.
pub fn load_server_properties(
    text: &str,
    overrides: &[String],
) -> Result<NodeSettings, ConfigError> {
    let mut full = text.to_string();
    for o in overrides {
        if !o.contains('=') {
            return Err(ConfigError(format!("--override {o:?}: expected key=value")));
        }
        full.push('\n');
        full.push_str(o);
    }
    let props = Properties::parse(&full, SERVER_KEYS)?;
    NodeSettings::from_properties(&props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_broker_config_runs_as_it_is() {
        let text = "broker.id=1\nlisteners=PLAINTEXT://:9093\nlog.dirs=/tmp/kafka2\n\
                    zookeeper.connect=localhost:2181,localhost:2182,localhost:2183\n\
                    eplica.lag.time.max.ms=10000\nreplica.lag.max.messages =4000\n";
        let s = load_server_properties(text, &[]).unwrap();
        assert_eq!(s.node_id, 1);
        assert!(s.broker && !s.coordinator);
        assert_eq!(s.coordinator_addresses.len(), 3);
        assert_eq!(
            s.advertised_endpoint().unwrap().to_string(),
            "localhost:9093"
        );
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("did you mean replica.lag.time.max.ms"));
    }

    #[test]
    fn listeners_are_what_they_say_or_the_node_does_not_start() {
        let base = "broker.id=0\nzookeeper.connect=localhost:2181\nlog.dirs=/tmp/x\n";
        let with = |extra: &str| load_server_properties(&format!("{base}{extra}"), &[]);
        for listener in ["SSL://:9093", "SASL_SSL://:9093", "SASL_PLAINTEXT://:9093"] {
            let err = with(&format!("listeners=PLAINTEXT://:9092,{listener}\n")).unwrap_err();
            assert!(
                err.0.contains(listener) && err.0.contains("does not serve"),
                "{}",
                err.0
            );
        }
        let err = with("listeners=INTERNAL://:9093\n").unwrap_err();
        assert!(
            err.0.contains("listener.security.protocol.map"),
            "{}",
            err.0
        );
        let mapped = with(
            "listeners=PLAINTEXT://:9092,INTERNAL://:9093\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT\n",
        )
        .unwrap();
        assert_eq!(mapped.kafka_listeners.len(), 2);
        let err = with(
            "listeners=PLAINTEXT://:9092,INTERNAL://:9093\n\
             listener.security.protocol.map=INTERNAL:SSL\n",
        )
        .unwrap_err();
        assert!(
            err.0.contains("INTERNAL://") && err.0.contains("SSL"),
            "{}",
            err.0
        );
    }

    #[test]
    fn kafkas_usual_inter_broker_listener_stays_a_client_listener() {
        let text = "broker.id=0\nzookeeper.connect=localhost:2181\nlog.dirs=/tmp/x\n\
                    listeners=PLAINTEXT://:9092\ninter.broker.listener.name=PLAINTEXT\n";
        let s = load_server_properties(text, &[]).unwrap();
        assert_eq!(s.kafka_listeners.len(), 1);
        assert!(s.broker_listener.is_none());
        assert!(s
            .warnings
            .iter()
            .any(|w| w.contains("inter.broker.listener.name")));
        let text = "broker.id=0\nzookeeper.connect=localhost:2181\nlog.dirs=/tmp/x\n\
                    listeners=PLAINTEXT://:9092,REPLICATION://:9093\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT\n\
                    inter.broker.listener.name=REPLICATION\n";
        let s = load_server_properties(text, &[]).unwrap();
        assert_eq!(s.kafka_listeners.len(), 1);
        assert_eq!(s.broker_listener.map(|hp| hp.port), Some(9093));
    }

    #[test]
    fn combined_nodes_and_overrides() {
        let text = "process.roles=broker,controller\nnode.id=2\n\
                    listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n\
                    controller.quorum.voters=1@127.0.0.1:19093,2@127.0.0.1:9093,3@127.0.0.1:29093\n\
                    log.dirs=/tmp/x\n";
        let s = load_server_properties(text, &["min.insync.replicas=2".into()]).unwrap();
        assert!(s.broker && s.coordinator);
        assert_eq!(s.voters.len(), 3);
        assert_eq!(s.coordinator_listeners[0].port, 9093);
        assert_eq!(s.min_insync_replicas, 2);
        let err = load_server_properties(text, &["min.insync.replicas=0".into()]).unwrap_err();
        assert!(err.0.contains("min.insync.replicas"), "{}", err.0);
    }
}

/// Kafka's `log.cleaner.*` broker keys, with Kafka's defaults (topics
/// override the last four with `min.cleanable.dirty.ratio`,
/// `delete.retention.ms`, `min.compaction.lag.ms`, `max.compaction.lag.ms`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanerSettings {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.backoff.ms`: how often the cleaner looks for work.
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: the memory of one pass.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.min.cleanable.ratio`.
    pub min_cleanable_ratio: f64,
    /// `log.cleaner.delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms` (Kafka's default: never).
    pub max_compaction_lag_ms: Option<i64>,
}

impl Default for CleanerSettings {
    fn default() -> Self {
        Self {
            enable: true,
            backoff_ms: 15_000,
            dedupe_buffer_bytes: crate::storage::cleaner::DEDUPE_BUFFER_BYTES_DEFAULT,
            min_cleanable_ratio: 0.5,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
        }
    }
}
