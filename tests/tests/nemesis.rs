//! Real processes, real faults, judged by the history checker
//! (`runnel_tests::history`): 3 coordinators and 3 brokers from seed-style
//! files, a producer (acks=all, one record per request, each value sent
//! once) and a group consumer (commits every second, reads its committed
//! offsets back) record every operation while a nemesis `kill -9`s and
//! restarts brokers and coordinators and pauses brokers with SIGSTOP/SIGCONT
//! (longer than the session timeout). proptest picks the schedule; after the
//! schedule everything is healed, a final read drains every partition, and
//! the history must show no lost write, duplicate, inconsistent offset,
//! non-monotonic poll, committed-offset regression or unseen write.
//!
//! The seeded node bugs (`RUNNEL_TEST_BUGS`, see `TestBugs` in the node)
//! are each caught by the same checker in a targeted schedule: the leader's
//! followers are paused, the leader is killed, the followers resume.
//!
//! `RUNNEL_NEMESIS_CASES=N` runs N random schedules (CI runs 1); each case
//! prints its schedule and a summary.

use proptest::prelude::*;
use runnel_tests::history::{check, Anomaly, CheckOptions, Report, Totals};
use runnel_tests::workload::*;
use runnel_tests::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One cluster at a time: the cases time their faults, and two clusters on
/// two cores would starve each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
/// What runs against the cluster.
#[derive(Clone, Copy)]
struct Workload {
    partitions: u32,
    /// A group member (commits) rather than a plain reader.
    group_reader: bool,
    /// Pause between sends, so that a reader keeps up with the log end.
    send_pause_ms: u64,
    /// -1 (all) or 1 (acknowledged by the leader alone: promises nothing).
    acks: i16,
}

/// The seed's topology (3 coordinators + 3 brokers) or three combined
/// nodes behind proxies (network faults).
#[derive(Clone, Copy, Debug)]
enum Topology {
    Seed,
    CombinedProxied,
}

fn start_cluster(bugs: &str, overrides: &[&str], w: Workload, t: Topology) -> SeedCluster {
    let mut c = match t {
        Topology::Seed => SeedCluster::new(overrides),
        Topology::CombinedProxied => SeedCluster::combined_proxied(overrides),
    };
    for b in &mut c.brokers {
        b.env.push(("RUNNEL_TEST_BUGS".into(), bugs.into()));
    }
    c.start_all();
    wait_for("a coordinator leader", Duration::from_secs(30), || {
        c.coordinator_leader()
    });
    c.create_topic(TOPIC, w.partitions, 3);
    c
}

/// Runs the workload around `faults` (a closure driving the nemesis), heals,
/// drains and checks.
fn run_workload(c: &mut SeedCluster, w: Workload, faults: impl FnOnce(&mut SeedCluster)) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bootstrap = c.bootstrap(&[0, 1, 2]);
    let rec = Recorder::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicU64::new(1));
    let p = rt.spawn(producer(
        bootstrap.clone(),
        w.partitions,
        w.acks,
        w.send_pause_ms,
        rec.clone(),
        stop.clone(),
    ));
    let r = match w.group_reader {
        true => rt.spawn(reader(
            bootstrap.clone(),
            rec.clone(),
            stop.clone(),
            sessions.clone(),
        )),
        false => {
            let session = sessions.fetch_add(1, Ordering::Relaxed);
            rt.spawn(plain_reader(
                bootstrap.clone(),
                w.partitions,
                rec.clone(),
                stop.clone(),
                session,
            ))
        }
    };
    // Every coordinator's quorum state, for the election-safety check.
    let o = rt.spawn(quorum_observer(
        c.coordinator_list().split(',').map(String::from).collect(),
        "runnel".into(),
        Duration::from_millis(100),
        rec.clone(),
        QuorumView::default(),
        stop.clone(),
    ));
    std::thread::sleep(Duration::from_secs(3));
    faults(c);
    heal(c);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(30), p).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), o).await;
    });
    let session = sessions.fetch_add(1, Ordering::Relaxed);
    rt.block_on(drain(&bootstrap, w.partitions, &rec, session));
    check(
        &rec.history(),
        CheckOptions {
            idempotent: true,
            drained: true,
        },
    )
}

/// Every link healed, every process running and resumed, every ISR full again.
fn heal(c: &mut SeedCluster) {
    if let Some(net) = &c.net {
        net.heal();
    }
    for i in 0..c.brokers.len() {
        c.brokers[i].resume();
        if !c.brokers[i].is_running() {
            c.start_broker(i);
        }
    }
    for i in 0..c.coordinators.len() {
        c.coordinators[i].resume();
        if !c.coordinators[i].is_running() {
            c.start_coordinator(i);
        }
    }
    wait_for(
        "every ISR full after healing",
        Duration::from_secs(90),
        || {
            (0..3)
                .find_map(|b| c.describe(b, TOPIC))
                .filter(|d| d.values().all(|p| p.isr.len() == 3))
        },
    );
}

fn summary(what: &str, r: &Report) {
    eprintln!("[nemesis] {what}: {}", r.summary());
}

// ----- random schedules ----------------------------------------------------------

#[derive(Clone, Debug)]
enum Fault {
    /// kill -9 a broker, restart it after the duration.
    KillBroker(usize),
    /// SIGSTOP a broker for the duration (longer than its session timeout when > 3 s).
    PauseBroker(usize),
    /// kill -9 the leading coordinator.
    KillCoordinatorLeader,
    /// Cut a node off from the others (both directions).
    Isolate(usize),
    /// Cut the active controller off from the others.
    IsolateControllerLeader,
    /// Hold the bytes from one node to another (the reverse direction flows).
    OneWay(usize, usize),
}

#[derive(Clone, Debug)]
struct Step {
    fault: Fault,
    duration_ms: u64,
    gap_ms: u64,
}

fn step(t: Topology) -> impl Strategy<Value = Step> {
    let fault = match t {
        Topology::Seed => prop_oneof![
            (0..3usize).prop_map(Fault::KillBroker),
            (0..3usize).prop_map(Fault::PauseBroker),
            Just(Fault::KillCoordinatorLeader),
        ]
        .boxed(),
        Topology::CombinedProxied => prop_oneof![
            (0..3usize).prop_map(Fault::KillBroker),
            (0..3usize).prop_map(Fault::PauseBroker),
            (0..3usize).prop_map(Fault::Isolate),
            Just(Fault::IsolateControllerLeader),
            (0..3usize, 1..3usize).prop_map(|(a, d)| Fault::OneWay(a, (a + d) % 3)),
        ]
        .boxed(),
    };
    (fault, 1_000..6_000u64, 500..3_000u64).prop_map(|(fault, duration_ms, gap_ms)| Step {
        fault,
        duration_ms,
        gap_ms,
    })
}

fn apply(c: &mut SeedCluster, schedule: &[Step]) {
    for s in schedule {
        eprintln!("[nemesis] {s:?}");
        match s.fault {
            Fault::KillBroker(b) => {
                c.brokers[b].kill9();
                std::thread::sleep(Duration::from_millis(s.duration_ms));
                c.start_broker(b);
            }
            Fault::PauseBroker(b) => {
                c.brokers[b].pause();
                std::thread::sleep(Duration::from_millis(s.duration_ms));
                c.brokers[b].resume();
            }
            Fault::KillCoordinatorLeader => {
                if let Some(l) = c.coordinator_leader() {
                    c.coordinators[l].kill9();
                    std::thread::sleep(Duration::from_millis(s.duration_ms));
                    c.start_coordinator(l);
                }
            }
            Fault::Isolate(n) => isolate(c, n, s.duration_ms),
            Fault::IsolateControllerLeader => {
                if let Some(l) = c.coordinator_leader() {
                    isolate(c, l, s.duration_ms);
                }
            }
            Fault::OneWay(a, b) => {
                let net = c.net.as_ref().expect("a proxied cluster");
                net.stall(a as u32, b as u32);
                std::thread::sleep(Duration::from_millis(s.duration_ms));
                net.heal();
            }
        }
        std::thread::sleep(Duration::from_millis(s.gap_ms));
    }
}

fn isolate(c: &SeedCluster, n: usize, duration_ms: u64) {
    let net = c.net.as_ref().expect("a proxied cluster");
    net.isolate(n as u32, &[0, 1, 2]);
    std::thread::sleep(Duration::from_millis(duration_ms));
    net.heal();
}

fn cases() -> u32 {
    std::env::var("RUNNEL_NEMESIS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 4, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))), ..ProptestConfig::default() })]

    #[test]
    fn random_fault_schedules_keep_every_promise(schedule in proptest::collection::vec(step(Topology::Seed), 2..=4)) {
        random_case(Topology::Seed, &schedule)?;
    }

    #[test]
    fn random_network_fault_schedules_keep_every_promise(schedule in proptest::collection::vec(step(Topology::CombinedProxied), 2..=4)) {
        random_case(Topology::CombinedProxied, &schedule)?;
    }
}

fn random_case(t: Topology, schedule: &[Step]) -> Result<(), TestCaseError> {
    let _serial = serial();
    let w = Workload {
        partitions: 3,
        group_reader: true,
        send_pause_ms: 0,
        acks: -1,
    };
    let mut c = start_cluster("", &["replica.lag.time.max.ms=3000"], w, t);
    let report = run_workload(&mut c, w, |c| apply(c, schedule));
    summary(&format!("random schedule on {t:?}"), &report);
    static TOTALS: Mutex<Totals> = Mutex::new(Totals::new());
    let mut totals = TOTALS.lock().unwrap_or_else(|p| p.into_inner());
    totals.add(&report, schedule.iter().map(|s| &s.fault));
    eprintln!("[nemesis] so far (all topologies): {}", totals.line());
    drop(totals);
    prop_assert!(report.acked > 0, "the workload made progress");
    prop_assert!(report.is_valid(), "anomalies: {:?}", report.anomalies);
    Ok(())
}

// ----- seeded node bugs --------------------------------------------------------------

/// Pauses the followers of partition 0's leader, lets the producer and the
/// reader run against the isolated leader, kills it, resumes the followers.
fn isolate_and_kill_the_leader(c: &mut SeedCluster) {
    let d = c.describe(0, TOPIC).expect("describe");
    let leader = d[&0].leader.expect("a leader") as usize;
    let followers: Vec<usize> = (0..3).filter(|b| *b != leader).collect();
    // Cut the leader off from the other nodes (clients still reach it). A
    // cut drops what is in flight: a follower's fetch parked at the leader
    // cannot carry the leader's new records over (a SIGSTOPped follower's
    // socket would still receive them).
    let net = c.net.as_ref().expect("a proxied cluster");
    net.isolate(leader as u32, &[0, 1, 2]);
    std::thread::sleep(Duration::from_millis(1_500));
    c.brokers[leader].kill9();
    c.net.as_ref().expect("proxied").heal();
    wait_for(
        "a new leader for partition 0",
        Duration::from_secs(40),
        || {
            c.describe(followers[0], TOPIC)
                .filter(|d| d[&0].leader.is_some_and(|l| l as usize != leader))
        },
    );
    // Traffic goes on at the new leader, over the offsets the old one used.
    std::thread::sleep(Duration::from_secs(3));
}

fn isolated_leader_run(bugs: &str) -> Report {
    isolated_leader_run_with(bugs, -1)
}

/// `acks` 1 lets the isolated leader take many records only it has (each
/// acks=all send would wait for followers that cannot fetch).
fn isolated_leader_run_with(bugs: &str, acks: i16) -> Report {
    let _serial = serial();
    // One partition and a plain reader: every send and every fetch goes to
    // the isolated leader while its followers are paused. The producer is
    // throttled so that the reader is at the log end when the pause starts
    // (on a loaded machine an unthrottled producer outruns it, and the
    // reader never sees what only the isolated leader had).
    let w = Workload {
        partitions: 1,
        group_reader: false,
        send_pause_ms: 5,
        acks,
    };
    let mut c = start_cluster(
        bugs,
        &["replica.lag.time.max.ms=10000"],
        w,
        Topology::CombinedProxied,
    );
    let report = run_workload(&mut c, w, isolate_and_kill_the_leader);
    summary(&format!("isolated leader, bugs [{bugs}]"), &report);
    report
}

#[test]
fn an_isolated_leader_killed_loses_nothing_acknowledged() {
    let report = isolated_leader_run("");
    assert!(report.acked > 0);
    assert!(report.is_valid(), "anomalies: {:?}", report.anomalies);
}

#[test]
fn seeded_ack_before_replication_is_caught() {
    let report = isolated_leader_run("ack-before-replication");
    assert!(
        report
            .anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::LostWrite { .. })),
        "the checker must report lost writes: {:?}",
        report.anomalies
    );
}

#[test]
fn seeded_fetch_above_high_watermark_is_caught() {
    // acks=1: the isolated leader appends records no follower will have
    // (with acks=all the one record in flight may already be on the
    // followers, and then the new leader agrees with what was read).
    let report = isolated_leader_run_with("fetch-above-high-watermark", 1);
    assert!(
        report
            .anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::InconsistentOffset { .. })),
        "the checker must report an offset read with two values: {:?}",
        report.anomalies
    );
}

// ----- the network nemesis itself -----------------------------------------------------

/// Indexes of the coordinators that say they lead.
fn leaders(c: &SeedCluster) -> Vec<usize> {
    let out = tool(
        &[
            "quorum",
            "status",
            "--bootstrap-server",
            &c.coordinator_list(),
        ],
        None,
        Duration::from_secs(20),
    );
    stdout(&out)
        .lines()
        .filter(|l| l.contains("Mode: leader"))
        .filter_map(|l| {
            let port: u16 = l.split('\t').next()?.rsplit(':').next()?.parse().ok()?;
            c.client_ports.iter().position(|p| *p == port)
        })
        .collect()
}

/// The proxies really cut: an isolated active controller loses its
/// leadership to the majority side, which elects another and keeps serving.
#[test]
fn isolating_the_active_controller_moves_leadership() {
    let _serial = serial();
    let w = Workload {
        partitions: 3,
        group_reader: false,
        send_pause_ms: 0,
        acks: -1,
    };
    let c = start_cluster(
        "",
        &["replica.lag.time.max.ms=3000"],
        w,
        Topology::CombinedProxied,
    );
    let old = c.coordinator_leader().expect("a leader");
    let net = c.net.as_ref().expect("proxied");
    net.isolate(old as u32, &[0, 1, 2]);
    let new = wait_for(
        "a leader on the majority side",
        Duration::from_secs(30),
        || leaders(&c).into_iter().find(|l| *l != old),
    );
    assert_ne!(new, old);
    wait_for(
        "the isolated node steps down",
        Duration::from_secs(30),
        || (!leaders(&c).contains(&old)).then_some(()),
    );
    net.heal();
    wait_for("one leader after healing", Duration::from_secs(30), || {
        (leaders(&c).len() == 1).then_some(())
    });
}
