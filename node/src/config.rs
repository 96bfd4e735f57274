//! Configuration: Kafka-style `server.properties` and ZooKeeper-style
//! `zoo.cfg`, parsed with Java-properties rules, validated with errors that
//! name the key, the value and the allowed range, and with one warning per
//! unknown or misspelt key (naming the likely intended key).

use std::collections::BTreeMap;

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses Java properties: `key=value`, `key: value` or `key value`,
/// spaces around the separator, `#`/`!` comments, `\` line continuations
/// and escapes (`\t`, `\n`, `\uXXXX`, `\=`...). Later keys win, as in Java.
/// Returns the entries in file order with their line numbers.
pub fn parse_properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines (an odd number of trailing backslashes).
        let mut logical = trimmed.to_string();
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push((i + 1, unescape(&key), unescape(value.trim_start())));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (String, &str) {
    let mut key = String::new();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                key.push(c);
                if let Some((_, n)) = chars.next() {
                    key.push(n);
                }
            }
            '=' | ':' => return (key.trim_end().to_string(), &line[i + 1..]),
            c if c.is_whitespace() => {
                // Whitespace ends the key; an `=`/`:` may still follow.
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                return (key, rest);
            }
            _ => key.push(c),
        }
    }
    (key, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Keys Runnel understands in `server.properties`, with what they accept.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer in `[min, max]`.
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Text,
}

pub const SERVER_KEYS: &[(&str, Kind)] = &[
    (
        "broker.id",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
    ),
    (
        "node.id",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
    ),
    ("process.roles", Kind::Text),
    ("metadata.log.dir", Kind::Text),
    (
        "broker.session.timeout.ms",
        Kind::Int {
            min: 500,
            max: 3_600_000,
        },
    ),
    (
        "broker.heartbeat.interval.ms",
        Kind::Int {
            min: 50,
            max: 600_000,
        },
    ),
    (
        "metadata.log.max.record.bytes.between.snapshots",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    (
        "metadata.log.max.snapshot.interval.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "controller.quorum.election.timeout.ms",
        Kind::Int {
            min: 100,
            max: 600_000,
        },
    ),
    (
        "replica.fetch.backoff.ms",
        Kind::Int {
            min: 0,
            max: 600_000,
        },
    ),
    ("listeners", Kind::Text),
    ("advertised.listeners", Kind::Text),
    ("log.dirs", Kind::Text),
    ("log.dir", Kind::Text),
    (
        "num.partitions",
        Kind::Int {
            min: 1,
            max: PARTITIONS_PER_REQUEST_MAX as i64,
        },
    ),
    (
        "default.replication.factor",
        Kind::Int {
            min: 1,
            max: 32_767,
        },
    ),
    (
        "min.insync.replicas",
        Kind::Int {
            min: 1,
            max: 32_767,
        },
    ),
    ("unclean.leader.election.enable", Kind::Bool),
    (
        "replica.lag.time.max.ms",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    (
        "log.segment.bytes",
        Kind::Int {
            min: 14,
            max: i32::MAX as i64,
        },
    ),
    (
        "log.roll.ms",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    (
        "log.roll.hours",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    (
        "log.retention.ms",
        Kind::Int {
            min: -1,
            max: i64::MAX,
        },
    ),
    (
        "log.retention.minutes",
        Kind::Int {
            min: -1,
            max: i32::MAX as i64,
        },
    ),
    (
        "log.retention.hours",
        Kind::Int {
            min: -1,
            max: i32::MAX as i64,
        },
    ),
    (
        "log.retention.bytes",
        Kind::Int {
            min: -1,
            max: i64::MAX,
        },
    ),
    (
        "log.retention.check.interval.ms",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    ("log.cleaner.enable", Kind::Bool),
    (
        "log.cleaner.backoff.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "log.cleaner.dedupe.buffer.size",
        Kind::Int {
            min: 1 << 10,
            max: i64::MAX,
        },
    ),
    // A DOUBLE in Kafka; values outside [0, 1] fall back to 0.5.
    ("log.cleaner.min.cleanable.ratio", Kind::Text),
    (
        "log.cleaner.delete.retention.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "log.cleaner.min.compaction.lag.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "log.cleaner.max.compaction.lag.ms",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    (
        "producer.id.expiration.ms",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    (
        "log.index.interval.bytes",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
    ),
    (
        "log.flush.interval.messages",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    (
        "log.flush.interval.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "offsets.topic.replication.factor",
        Kind::Int {
            min: 1,
            max: 32_767,
        },
    ),
    (
        "offsets.topic.segment.bytes",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    (
        "offsets.topic.num.partitions",
        Kind::Int {
            min: 1,
            max: PARTITIONS_PER_REQUEST_MAX as i64,
        },
    ),
    (
        "offsets.retention.minutes",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    (
        "group.initial.rebalance.delay.ms",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
    ),
    (
        "socket.request.max.bytes",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    (
        "connections.max.idle.ms",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
    ),
    (
        "socket.send.buffer.bytes",
        Kind::Int {
            min: -1,
            max: i32::MAX as i64,
        },
    ),
    (
        "socket.receive.buffer.bytes",
        Kind::Int {
            min: -1,
            max: i32::MAX as i64,
        },
    ),
    ("num.network.threads", Kind::Int { min: 1, max: 1024 }),
    ("num.io.threads", Kind::Int { min: 1, max: 1024 }),
    (
        "num.recovery.threads.per.data.dir",
        Kind::Int { min: 1, max: 1024 },
    ),
    (
        "transaction.state.log.replication.factor",
        Kind::Int {
            min: 1,
            max: 32_767,
        },
    ),
    (
        "transaction.state.log.min.isr",
        Kind::Int {
            min: 1,
            max: 32_767,
        },
    ),
    ("zookeeper.connect", Kind::Text),
    (
        "zookeeper.connection.timeout.ms",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    ("controller.quorum.voters", Kind::Text),
    ("controller.quorum.bootstrap.servers", Kind::Text),
    ("auto.create.topics.enable", Kind::Bool),
    ("log.message.timestamp.type", Kind::Text),
    ("allow.everyone.if.no.acl.found", Kind::Bool),
    ("cluster.id", Kind::Text),
    // Listeners: which protocol each serves, and which are internal.
    ("listener.security.protocol.map", Kind::Text),
    ("inter.broker.listener.name", Kind::Text),
    ("controller.listener.names", Kind::Text),
    ("cluster.secret.file", Kind::Text),
    // Limits on what clients may ask of a node.
    ("max.connections", Kind::Int { min: 0, max: I32 }),
    ("max.connections.per.ip", Kind::Int { min: 0, max: I32 }),
    ("max.connections.per.ip.overrides", Kind::Text),
    ("queued.max.requests", Kind::Int { min: 1, max: I32 }),
    (
        "queued.max.request.bytes",
        Kind::Int {
            min: -1,
            max: i64::MAX,
        },
    ),
    ("message.max.bytes", Kind::Int { min: 0, max: I32 }),
    (
        "log.message.timestamp.difference.max.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "log.message.timestamp.before.max.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "log.message.timestamp.after.max.ms",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    ("group.max.size", Kind::Int { min: 1, max: I32 }),
    (
        "group.min.session.timeout.ms",
        Kind::Int { min: 0, max: I32 },
    ),
    (
        "group.max.session.timeout.ms",
        Kind::Int { min: 0, max: I32 },
    ),
];

const I32: i64 = i32::MAX as i64;
// A topic's partitions are created by one controller decision.
use runnel_model::controller::PARTITIONS_PER_REQUEST_MAX;

/// Keys Kafka itself removed, with what replaced them.
const OBSOLETE_KEYS: &[(&str, &str)] = &[(
    "replica.lag.max.messages",
    "removed in Kafka 0.9; replica.lag.time.max.ms alone decides ISR membership",
)];

/// A parsed, validated `server.properties`, plus warnings for the operator.
#[derive(Clone, Debug, Default)]
pub struct Properties {
    pub values: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl Properties {
    /// Parses and validates against `known`; unknown keys warn (once each,
    /// with the likely intended key), bad values are errors.
    pub fn parse(text: &str, known: &[(&str, Kind)]) -> Result<Properties, ConfigError> {
        let mut props = Properties::default();
        for (line, key, value) in parse_properties(text) {
            // The seed annotates its files as `broker.id=0 #comment`. Java
            // would keep the comment in the value and Kafka would refuse
            // it; Runnel cuts it off and says so.
            let value = match value.find(" #").or_else(|| value.find("\t#")) {
                Some(at) => {
                    props.warnings.push(format!(
                        "line {line}: {key}: ignoring the trailing comment {:?} (Java properties would keep it in the value)",
                        value[at..].trim()
                    ));
                    value[..at].trim_end().to_string()
                }
                None => value,
            };
            match known.iter().find(|(k, _)| *k == key) {
                Some((_, kind)) => validate(&key, &value, *kind)?,
                None => props.warnings.push(unknown_key_warning(line, &key, known)),
            }
            props.values.insert(key, value);
        }
        Ok(props)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// An integer key (already validated), or `default`.
    pub fn int(&self, key: &str, default: i64) -> i64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.get(key)
            .map_or(default, |v| v.eq_ignore_ascii_case("true"))
    }
}

fn validate(key: &str, value: &str, kind: Kind) -> Result<(), ConfigError> {
    match kind {
        Kind::Int { min, max } => match value.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            Ok(v) => Err(ConfigError(format!(
                "{key}={v}: must be between {min} and {max}"
            ))),
            Err(_) => Err(ConfigError(format!(
                "{key}={value:?}: must be an integer between {min} and {max}"
            ))),
        },
        Kind::Bool if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") => {
            Ok(())
        }
        Kind::Bool => Err(ConfigError(format!(
            "{key}={value:?}: must be true or false"
        ))),
        Kind::Text => Ok(()),
    }
}

fn unknown_key_warning(line: usize, key: &str, known: &[(&str, Kind)]) -> String {
    if let Some((_, why)) = OBSOLETE_KEYS.iter().find(|(k, _)| *k == key) {
        return format!("line {line}: {key} is not used: {why}");
    }
    let closest = known
        .iter()
        .map(|(k, _)| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 3.max(k.len() / 8));
    match closest {
        Some((_, k)) => format!("line {line}: unknown key {key}; did you mean {k}?"),
        None => format!("line {line}: unknown key {key} (ignored)"),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A ZooKeeper-style `zoo.cfg` for a coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZooConfig {
    pub tick_time_ms: u64,
    pub init_limit: u64,
    pub sync_limit: u64,
    pub data_dir: String,
    pub client_port: u16,
    /// `server.N=host:peerPort:electionPort`.
    pub servers: BTreeMap<u32, (String, u16, u16)>,
    /// Runnel's `cluster.secret.file` (no ZooKeeper key does this).
    pub secret_file: Option<String>,
}

pub const ZOO_KEYS: &[(&str, Kind)] = &[
    (
        "tickTime",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    (
        "initLimit",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    (
        "syncLimit",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
    ),
    ("dataDir", Kind::Text),
    ("dataLogDir", Kind::Text),
    (
        "clientPort",
        Kind::Int {
            min: 1,
            max: 65_535,
        },
    ),
    (
        "maxClientCnxns",
        Kind::Int {
            min: 0,
            max: i32::MAX as i64,
        },
    ),
    ("cluster.secret.file", Kind::Text),
];

impl ZooConfig {
    pub fn parse(text: &str) -> Result<(ZooConfig, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut values = BTreeMap::new();
        let mut servers = BTreeMap::new();
        for (line, key, value) in parse_properties(text) {
            // The seed writes `tickTime=2000   #comment`: strip trailing comments.
            let value = value.split('#').next().unwrap_or("").trim().to_string();
            if let Some(id) = key.strip_prefix("server.") {
                let id: u32 = id
                    .parse()
                    .map_err(|_| ConfigError(format!("{key}: server id must be a number")))?;
                servers.insert(id, parse_server(&key, &value)?);
                continue;
            }
            match ZOO_KEYS.iter().find(|(k, _)| *k == key) {
                Some((_, kind)) => validate(&key, &value, *kind)?,
                None => warnings.push(unknown_key_warning(line, &key, ZOO_KEYS)),
            }
            values.insert(key, value);
        }
        let int = |k: &str, d: u64| {
            values
                .get(k)
                .and_then(|v: &String| v.parse().ok())
                .unwrap_or(d)
        };
        let data_dir = values
            .get("dataDir")
            .cloned()
            .ok_or_else(|| ConfigError("dataDir is required".into()))?;
        let config = ZooConfig {
            tick_time_ms: int("tickTime", 2000),
            init_limit: int("initLimit", 10),
            sync_limit: int("syncLimit", 5),
            data_dir,
            client_port: int("clientPort", 2181) as u16,
            servers,
            secret_file: values.get("cluster.secret.file").cloned(),
        };
        Ok((config, warnings))
    }
}

fn parse_server(key: &str, value: &str) -> Result<(String, u16, u16), ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{key}={value:?}: expected host:peerPort:electionPort"
        ))
    };
    let mut parts = value.split(':');
    let host = parts
        .next()
        .filter(|h| !h.is_empty())
        .ok_or_else(bad)?
        .to_string();
    let peer = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let election = parts
        .next()
        .and_then(|p| p.split(';').next()?.parse().ok())
        .ok_or_else(bad)?;
    Ok((host, peer, election))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties_rules() {
        let text = "# comment\n! also\nbroker.id = 0\nlisteners:PLAINTEXT://:9092\nlog.dirs /tmp/a,\\\n   /tmp/b\nkey\\=x=1\nuni=\\u0041\n";
        let p = parse_properties(text);
        let get = |k: &str| {
            p.iter()
                .find(|(_, key, _)| key == k)
                .map(|(_, _, v)| v.clone())
        };
        assert_eq!(get("broker.id").as_deref(), Some("0"));
        assert_eq!(get("listeners").as_deref(), Some("PLAINTEXT://:9092"));
        assert_eq!(get("log.dirs").as_deref(), Some("/tmp/a,/tmp/b"));
        assert_eq!(get("key=x").as_deref(), Some("1"));
        assert_eq!(get("uni").as_deref(), Some("A"));
    }

    #[test]
    fn the_seeds_misspelt_keys_each_get_one_clear_warning() {
        let text = "broker.id=1\nreplica.lag.max.messages =4000\neplica.lag.time.max.ms =10000\n";
        let p = Properties::parse(text, SERVER_KEYS).unwrap();
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(
            p.warnings[0].contains("replica.lag.max.messages") && p.warnings[0].contains("removed")
        );
        assert_eq!(
            p.warnings[1],
            "line 3: unknown key eplica.lag.time.max.ms; did you mean replica.lag.time.max.ms?"
        );
    }

    #[test]
    fn bad_values_name_key_value_and_range() {
        let err = Properties::parse("num.partitions=0", SERVER_KEYS).unwrap_err();
        assert_eq!(err.0, "num.partitions=0: must be between 1 and 10000");
        let err = Properties::parse("unclean.leader.election.enable=yes", SERVER_KEYS).unwrap_err();
        assert_eq!(
            err.0,
            "unclean.leader.election.enable=\"yes\": must be true or false"
        );
        let err = Properties::parse("log.segment.bytes=big", SERVER_KEYS).unwrap_err();
        assert!(err
            .0
            .starts_with("log.segment.bytes=\"big\": must be an integer"));
    }

    #[test]
    fn the_seeds_zoo_cfg_parses() {
        let text = "tickTime=2000  #heartbeat\ninitLimit=10\nsyncLimit=5\ndataDir=/tmp/zookeeper/data1\ndataLogDir=/tmp/zookeeper/log1\nclientPort=2181\nserver.1=127.0.0.1:2287:3387\nserver.2=127.0.0.1:2288:3388\nserver.3=127.0.0.1:2289:3389\n";
        let (z, warnings) = ZooConfig::parse(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(z.tick_time_ms, 2000);
        assert_eq!(z.client_port, 2181);
        assert_eq!(z.servers[&3], ("127.0.0.1".to_string(), 2289, 3389));
        assert!(ZooConfig::parse("server.1=nohost").is_err());
    }
}
