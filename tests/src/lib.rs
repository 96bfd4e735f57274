//! Harness for cluster tests against real `runnel` processes: free ports,
//! seed-style configuration files, processes that are killed (`kill -9`)
//! and restarted, the CLI tools, and polling with deadlines. Every process
//! is killed when the harness is dropped, so a failing test leaves nothing
//! running.

pub mod history;
pub mod netproxy;
pub mod workload;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `runnel` binary: `RUNNEL_BIN`, else the workspace's debug build
/// (`scripts/test-all.sh` builds it first).
pub fn runnel_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RUNNEL_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("runnel");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p runnel` first (scripts/test-all.sh does)",
        bin.display()
    );
    bin
}

/// `n` ports free on 127.0.0.1 (and ::1) right now, chosen below the
/// kernel's ephemeral range: a port the OS handed out as "free" is also one
/// it may hand to the next outgoing connection as its source port before
/// the node binds it (that happened: `Address already in use`).
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(FIRST).max(1_000);
    // Test binaries run one after another; a pid-based start keeps one
    // binary away from the ports the previous one's processes may still hold.
    let start = std::process::id() * 7_919 % span;
    // Successive candidates lie STRIDE apart, so blocks callers build on a
    // port (`DevCluster`: p..p+2 and p+100..p+102) from parallel tests do
    // not overlap.
    const STRIDE: u32 = 211;
    let mut ports = Vec::new();
    for _ in 0..span {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + k * STRIDE) % span) as u16;
        let v4 = TcpListener::bind(("127.0.0.1", port)).is_ok();
        let v6 = TcpListener::bind(("::1", port)).is_ok() || TcpListener::bind("[::1]:0").is_err();
        if v4 && v6 {
            ports.push(port);
            if ports.len() == n {
                return ports;
            }
        }
    }
    panic!("no {n} free ports below {ephemeral_low}");
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a `runnel` tool to completion (bounded by `timeout`).
pub fn tool(args: &[&str], stdin: Option<&str>, timeout: Duration) -> Output {
    let mut cmd = Command::new(runnel_bin());
    cmd.args(args).env("RUST_LOG", "warn");
    run(&mut cmd, stdin.map(str::as_bytes), timeout)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process of the cluster under test, restartable with the same arguments.
pub struct Proc {
    pub name: String,
    args: Vec<String>,
    /// Extra environment (e.g. RUNNEL_TEST_BUGS for seeded node bugs).
    pub env: Vec<(String, String)>,
    /// A command the node runs under (its program and arguments come
    /// after these), e.g. `unshare -m` to give it a filesystem of its own.
    pub wrapper: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = match self.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(runnel_bin());
                c
            }
            None => Command::new(runnel_bin()),
        };
        let child = command
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .spawn()
            .expect("spawn runnel");
        self.child = Some(child);
    }

    /// SIGKILL, as `kill -9` in the seed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process freezes (a long GC pause, a stalled VM).
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status();
        }
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Adds `--override key=value` to the node's arguments (next start).
    pub fn add_override(&mut self, key_value: &str) {
        self.args.push("--override".into());
        self.args.push(key_value.into());
    }

    /// Has the process ended by itself (crashed or exited)?
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// The seed's topology: three ZooKeeper-style coordinators and three brokers.
pub struct SeedCluster {
    pub dir: tempfile::TempDir,
    pub coordinators: Vec<Proc>,
    pub brokers: Vec<Proc>,
    pub client_ports: Vec<u16>,
    pub kafka_ports: Vec<u16>,
    /// The proxies between nodes (`combined_proxied` only).
    pub net: Option<netproxy::Net>,
}

impl SeedCluster {
    /// Writes the seed's configuration files (with its typos) on free ports.
    pub fn new(broker_overrides: &[&str]) -> SeedCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(12);
        let client_ports = ports[0..3].to_vec();
        let peer_ports = &ports[3..6];
        let election_ports = &ports[6..9];
        let kafka_ports = ports[9..12].to_vec();
        let mut coordinators = Vec::new();
        for i in 1..=3usize {
            let data = dir.path().join(format!("zookeeper/data{i}"));
            std::fs::create_dir_all(&data).expect("data dir");
            std::fs::write(data.join("myid"), format!("{i}\n")).expect("myid");
            let servers: String = (1..=3usize)
                .map(|j| {
                    format!(
                        "server.{j}=127.0.0.1:{}:{}\n",
                        peer_ports[j - 1],
                        election_ports[j - 1]
                    )
                })
                .collect();
            let cfg = format!(
                "tickTime=1000  #base time unit\ninitLimit=10\nsyncLimit=5\ndataDir={}\ndataLogDir={}\nclientPort={}\n{servers}",
                data.display(),
                dir.path().join(format!("zookeeper/log{i}")).display(),
                client_ports[i - 1]
            );
            let path = dir.path().join(format!("zoo{i}.cfg"));
            std::fs::write(&path, cfg).expect("zoo.cfg");
            coordinators.push(Proc {
                name: format!("coordinator {i}"),
                args: vec!["coordinator".into(), path.display().to_string()],
                log: dir.path().join(format!("coordinator{i}.log")),
                child: None,
                env: Vec::new(),
                wrapper: Vec::new(),
            });
        }
        let zk: Vec<String> = client_ports
            .iter()
            .map(|p| format!("localhost:{p}"))
            .collect();
        let mut brokers = Vec::new();
        for (b, kafka_port) in kafka_ports.iter().enumerate().take(3) {
            let cfg = format!(
                "broker.id={b} #unique id\nlisteners=PLAINTEXT://:{}  #kafka监听端口\nnum.network.threads=3\nlog.dirs={}\n\
                 num.partitions=1\neplica.lag.time.max.ms=10000\nreplica.lag.max.messages =4000\n\
                 zookeeper.connect={}\nzookeeper.connection.timeout.ms=6000\ngroup.initial.rebalance.delay.ms=0\n",
                kafka_port,
                dir.path().join(format!("kafka{}", b + 1)).display(),
                zk.join(",")
            );
            let path = dir.path().join(format!("server{b}.properties"));
            std::fs::write(&path, cfg).expect("server.properties");
            let mut args = vec!["server".to_string(), path.display().to_string()];
            for o in broker_overrides {
                args.push("--override".into());
                args.push(o.to_string());
            }
            brokers.push(Proc {
                name: format!("broker {b}"),
                args,
                log: dir.path().join(format!("broker{b}.log")),
                child: None,
                env: Vec::new(),
                wrapper: Vec::new(),
            });
        }
        SeedCluster {
            dir,
            coordinators,
            brokers,
            client_ports,
            kafka_ports,
            net: None,
        }
    }

    /// Three combined nodes (`process.roles=broker,controller`, KRaft-style
    /// `controller.quorum.voters`), each its own process. The coordinator
    /// fields refer to the same processes as the brokers.
    pub fn combined(overrides: &[&str]) -> SeedCluster {
        SeedCluster::combined_with(overrides, false)
    }

    /// Three combined nodes whose node-to-node connections all pass
    /// through test-owned proxies (`net`), so the nemesis can cut and stall
    /// links. Each node reaches the others' Kafka and controller listeners
    /// through a proxy (its own voter entry is its real listener).
    pub fn combined_proxied(overrides: &[&str]) -> SeedCluster {
        SeedCluster::combined_with(overrides, true)
    }

    fn combined_with(overrides: &[&str], proxied: bool) -> SeedCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(6);
        let kafka_ports = ports[0..3].to_vec();
        let controller_ports = ports[3..6].to_vec();
        let mut net = proxied.then(netproxy::Net::default);
        let (kafka_via, controller_via): (Vec<u16>, Vec<u16>) = match net.as_mut() {
            Some(n) => (0..3)
                .map(|i| {
                    (
                        n.proxy(i as u32, kafka_ports[i]),
                        n.proxy(i as u32, controller_ports[i]),
                    )
                })
                .unzip(),
            None => (kafka_ports.clone(), controller_ports.clone()),
        };
        let mut brokers = Vec::new();
        for b in 0..3usize {
            let voters: Vec<String> = (0..3)
                .map(|i| {
                    let port = if i == b {
                        controller_ports[i]
                    } else {
                        controller_via[i]
                    };
                    format!("{i}@127.0.0.1:{port}")
                })
                .collect();
            let advertised = match proxied {
                true => format!(
                    "advertised.listeners=PLAINTEXT://127.0.0.1:{}\n",
                    kafka_via[b]
                ),
                false => String::new(),
            };
            let cfg = format!(
                "process.roles=broker,controller\nnode.id={b}\n\
                 listeners=PLAINTEXT://localhost:{},CONTROLLER://127.0.0.1:{}\n{advertised}\
                 controller.quorum.voters={}\nlog.dirs={}\nbroker.session.timeout.ms=3000\n\
                 broker.heartbeat.interval.ms=300\n",
                kafka_ports[b],
                controller_ports[b],
                voters.join(","),
                dir.path().join(format!("node{b}")).display(),
            );
            let path = dir.path().join(format!("server{b}.properties"));
            std::fs::write(&path, cfg).expect("server.properties");
            let mut args = vec!["server".to_string(), path.display().to_string()];
            for o in overrides {
                args.push("--override".into());
                args.push(o.to_string());
            }
            brokers.push(Proc {
                name: format!("node {b}"),
                args,
                log: dir.path().join(format!("node{b}.log")),
                child: None,
                env: Vec::new(),
                wrapper: Vec::new(),
            });
        }
        SeedCluster {
            dir,
            coordinators: Vec::new(),
            brokers,
            client_ports: controller_ports,
            kafka_ports,
            net,
        }
    }

    pub fn start_all(&mut self) {
        for c in &mut self.coordinators {
            c.start();
        }
        for b in &mut self.brokers {
            b.start();
        }
    }

    pub fn start_broker(&mut self, b: usize) {
        self.brokers[b].start();
    }

    pub fn start_coordinator(&mut self, i: usize) {
        self.coordinators[i].start();
    }

    pub fn bootstrap(&self, brokers: &[usize]) -> String {
        brokers
            .iter()
            .map(|b| format!("localhost:{}", self.kafka_ports[*b]))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn coordinator_list(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("localhost:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `topics --create` (retried until every broker registered), then
    /// waits until every partition has a full ISR.
    pub fn create_topic(&self, topic: &str, partitions: u32, replication_factor: u32) {
        let (p, rf) = (partitions.to_string(), replication_factor.to_string());
        let all: Vec<usize> = (0..self.brokers.len()).collect();
        wait_for("topic creation", Duration::from_secs(30), || {
            let out = tool(
                &[
                    "topics",
                    "--bootstrap-server",
                    &self.bootstrap(&all),
                    "--create",
                    "--replication-factor",
                    &rf,
                    "--partitions",
                    &p,
                    "--topic",
                    topic,
                ],
                None,
                Duration::from_secs(30),
            );
            stdout(&out).contains("Created topic").then_some(())
        });
        wait_for("full ISRs", Duration::from_secs(30), || {
            self.describe(0, topic).filter(|d| {
                d.len() == partitions as usize
                    && d.values()
                        .all(|p| p.isr.len() == replication_factor as usize)
            })
        });
    }

    /// `runnel topics --describe`, parsed: partition → (leader, replicas, isr).
    pub fn describe(&self, via: usize, topic: &str) -> Option<BTreeMap<u32, Partition>> {
        let out = tool(
            &[
                "topics",
                "--bootstrap-server",
                &self.bootstrap(&[via]),
                "--describe",
                "--topic",
                topic,
            ],
            None,
            Duration::from_secs(20),
        );
        if !out.status.success() {
            return None;
        }
        Some(parse_describe(&stdout(&out)))
    }

    /// The coordinator currently leading (index 0..3), from `quorum status`.
    pub fn coordinator_leader(&self) -> Option<usize> {
        let out = tool(
            &[
                "quorum",
                "status",
                "--bootstrap-server",
                &self.coordinator_list(),
            ],
            None,
            Duration::from_secs(20),
        );
        let text = stdout(&out);
        text.lines()
            .find(|l| l.contains("Mode: leader"))
            .and_then(|l| {
                let port: u16 = l.split('\t').next()?.rsplit(':').next()?.parse().ok()?;
                self.client_ports.iter().position(|p| *p == port)
            })
    }

    pub fn log_of(&self, p: &Proc) -> String {
        std::fs::read_to_string(&p.log).unwrap_or_default()
    }
}

impl Drop for SeedCluster {
    fn drop(&mut self) {
        for p in self.brokers.iter_mut().chain(self.coordinators.iter_mut()) {
            p.kill9();
        }
        if std::thread::panicking() {
            for p in self.brokers.iter().chain(self.coordinators.iter()) {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                // Per-partition "opened log" lines would hide everything else.
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .filter(|l| !l.contains(": opened log "))
                    .take(40)
                    .collect();
                eprintln!("---- last lines of {} ----", p.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub leader: Option<u32>,
    pub replicas: Vec<u32>,
    pub isr: Vec<u32>,
}

fn ids(s: &str) -> Vec<u32> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// Parses Kafka's describe layout (`\tTopic: t\tPartition: 0\tLeader: 2\tReplicas: 2,0,1\tIsr: 2,0,1`).
pub fn parse_describe(text: &str) -> BTreeMap<u32, Partition> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('\t')) {
        let fields: BTreeMap<&str, &str> = line
            .split('\t')
            .filter_map(|f| f.split_once(": "))
            .collect();
        let (Some(p), Some(l), Some(r), Some(i)) = (
            fields.get("Partition"),
            fields.get("Leader"),
            fields.get("Replicas"),
            fields.get("Isr"),
        ) else {
            continue;
        };
        out.insert(
            p.parse().expect("partition number"),
            Partition {
                leader: l.parse().ok(),
                replicas: ids(r),
                isr: ids(i),
            },
        );
    }
    out
}

/// Lines `key\tvalue` from a console consumer run with print.key and print.partition.
pub fn parse_consumed(text: &str) -> Vec<(u32, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let p = f.next()?.strip_prefix("Partition:")?.parse().ok()?;
            Some((p, f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// `runnel dev` (three combined nodes in one process) on free ports.
pub struct DevCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl DevCluster {
    pub fn start() -> DevCluster {
        DevCluster::start_with(&[])
    }

    /// `runnel dev` with `--override key=value` for each of `overrides`.
    pub fn start_with(overrides: &[&str]) -> DevCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        // Three Kafka ports and, 100 above, three controller ports.
        let port = loop {
            let p = free_ports(1)[0];
            if p < 60_000
                && (0..3).all(|i| {
                    TcpListener::bind(("127.0.0.1", p + i)).is_ok()
                        && TcpListener::bind(("127.0.0.1", p + 100 + i)).is_ok()
                })
            {
                break p;
            }
        };
        let log = std::fs::File::create(dir.path().join("dev.log")).expect("log");
        let child = Command::new(runnel_bin())
            .args([
                "dev",
                "--dir",
                &dir.path().join("data").display().to_string(),
                "--port",
                &port.to_string(),
            ])
            .args(overrides.iter().flat_map(|o| ["--override", o]))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn runnel dev");
        let c = DevCluster { dir, port, child };
        let bootstrap = c.bootstrap();
        wait_for(
            "the dev cluster's 3 brokers",
            Duration::from_secs(30),
            || {
                let out = tool(
                    &["broker-api-versions", "--bootstrap-server", &bootstrap],
                    None,
                    Duration::from_secs(10),
                );
                (stdout(&out).matches("(id: ").count() == 3).then_some(())
            },
        );
        c
    }

    pub fn bootstrap(&self) -> String {
        (0..3)
            .map(|i| format!("localhost:{}", self.port + i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let p = partitions.to_string();
        wait_for("topic creation", Duration::from_secs(30), || {
            let out = tool(
                &[
                    "topics",
                    "--bootstrap-server",
                    &self.bootstrap(),
                    "--create",
                    "--topic",
                    topic,
                    "--partitions",
                    &p,
                    "--replication-factor",
                    "3",
                ],
                None,
                Duration::from_secs(30),
            );
            stdout(&out).contains("Created topic").then_some(())
        });
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("dev.log")).unwrap_or_default();
            eprintln!("---- runnel dev log (last 40 lines) ----");
            for l in log.lines().rev().take(40).collect::<Vec<_>>().iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The Python with Kafka clients that `scripts/test-all.sh` installs.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("RUNNEL_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root")
        .to_path_buf();
    let p = root.join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: scripts/test-all.sh creates it with the Kafka clients",
        p.display()
    );
    p
}

/// Runs a command to completion with a deadline; stdin optional.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(bytes) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(bytes)
            .expect("write stdin");
    }
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} did not finish in {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tool running in the background (a console consumer, a client script)
/// with its stdout in a file; killed when dropped.
pub struct Background {
    pub name: String,
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Background {
    pub fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Background {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Background {
            name: name.to_string(),
            child: Some(child),
            out,
            err,
        }
    }

    /// A `runnel` tool in the background.
    pub fn runnel(dir: &Path, name: &str, args: &[&str]) -> Background {
        let mut cmd = Command::new(runnel_bin());
        cmd.args(args).env("RUST_LOG", "warn");
        Background::spawn(dir, name, &mut cmd)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout().lines().map(str::to_string).collect()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM (a consumer commits and leaves its group), then waits up to
    /// `timeout`; SIGKILL if it has not exited by then. Returns whether it
    /// exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if c.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Waits (bounded) for the process to exit by itself; true if it did.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: the process dies without committing or leaving.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- {} stderr (last 20 lines) ----", self.name);
            let err = self.stderr();
            for l in err.lines().rev().take(20).collect::<Vec<_>>().iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// One row of `consumer-groups --describe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub topic: String,
    pub partition: u32,
    pub current: Option<i64>,
    pub log_end: Option<i64>,
    pub lag: Option<i64>,
    pub consumer_id: String,
}

/// Parses `consumer-groups --describe` output (Kafka's layout).
pub fn parse_group_describe(text: &str) -> Vec<GroupRow> {
    let num = |s: &str| s.parse::<i64>().ok();
    text.lines()
        .skip_while(|l| !l.starts_with("GROUP "))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 9).then(|| GroupRow {
                topic: f[1].to_string(),
                partition: f[2].parse().unwrap_or(u32::MAX),
                current: num(f[3]),
                log_end: num(f[4]),
                lag: num(f[5]),
                consumer_id: f[6].to_string(),
            })
        })
        .collect()
}

/// Bytes of the `.log` files of partition `topic-p` in one node's data dir.
pub fn partition_log_bytes(node_dir: &Path, topic: &str, p: u32) -> u64 {
    std::fs::read_dir(node_dir.join(format!("{topic}-{p}")))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
