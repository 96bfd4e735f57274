//! The tools never hang on a server that takes the connection but never
//! answers (a paused process, SIGSTOP: the kernel still accepts): each
//! request has a bound (`client::REQUEST_TIMEOUT`, 5 s for Metadata), past
//! which the tool drops the connection and asks the next server. Before, a
//! paused first bootstrap server hung `runnel topics` for good.

use runnel_tests::*;
use std::time::{Duration, Instant};

#[test]
fn tools_go_past_a_paused_bootstrap_server() {
    let mut c = SeedCluster::combined(&[]);
    c.start_all();
    c.create_topic("paused", 1, 3);
    c.brokers[0].pause();
    let started = Instant::now();
    let out = tool(
        &[
            "topics",
            "--bootstrap-server",
            &c.bootstrap(&[0, 1, 2]),
            "--list",
        ],
        None,
        Duration::from_secs(40),
    );
    let took = started.elapsed();
    c.brokers[0].resume();
    assert!(
        out.status.success() && stdout(&out).lines().any(|l| l.trim() == "paused"),
        "{} {}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}
