//! Model checks of the coordinator quorum: election safety and log
//! agreement under crashes, message loss and reordering; every `Sometimes`
//! example reached; every seeded bug caught.

#[path = "support/quorum_model.rs"]
mod quorum_model;
mod support;

use quorum_model::{QuorumModel, ALWAYS, SOMETIMES, SOMETIMES_SNAPSHOT};
use runnel_model::quorum::{Entry, Payload, QuorumBugs, QuorumDurable};
use stateright::HasDiscoveries;
use support::{check, set};

fn depth_from_env(default: usize) -> usize {
    std::env::var("RUNNEL_CHECK_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(default)
}

#[test]
fn quorum_examples_are_reached() {
    let run = check(
        "quorum/examples",
        QuorumModel::default(),
        20,
        HasDiscoveries::AllOf(set(SOMETIMES)),
    );
    run.assert_holds(ALWAYS);
    run.assert_reached(SOMETIMES);
}

#[test]
fn quorum_safety_holds() {
    let run = check(
        "quorum/safety",
        QuorumModel::default(),
        depth_from_env(14),
        HasDiscoveries::AnyFailures,
    );
    run.assert_holds(ALWAYS);
}

// ----- seeded bugs: each must be caught -------------------------------------

fn caught(name: &str, model: QuorumModel, depth: usize, property: &'static str) {
    let run = check(name, model, depth, HasDiscoveries::AnyOf(set(&[property])));
    run.assert_caught(property);
}

/// Elections alone (no proposals, no message loss): enough for the bugs
/// that break durable election state.
fn elections_only(bugs: QuorumBugs) -> QuorumModel {
    QuorumModel {
        bugs,
        values_max: 0,
        drops_max: 0,
        ..QuorumModel::default()
    }
}

#[test]
fn seeded_vote_not_persisted_is_caught() {
    let bugs = QuorumBugs {
        vote_not_persisted: true,
        ..Default::default()
    };
    caught(
        "bug/vote-not-persisted",
        elections_only(bugs),
        20,
        "DurableVote",
    );
}

fn entry(epoch: u32, payload: Payload<u8>) -> Entry<u8> {
    Entry { epoch, payload }
}

fn durable(epoch: u32, voted_for: Option<u32>, log: Vec<Entry<u8>>) -> QuorumDurable<u8> {
    QuorumDurable {
        epoch,
        voted_for,
        snapshot: None,
        log,
    }
}

#[test]
fn seeded_epoch_not_persisted_is_caught() {
    let bugs = QuorumBugs {
        epoch_not_persisted: true,
        ..Default::default()
    };
    caught(
        "bug/epoch-not-persisted",
        elections_only(bugs),
        20,
        "MonotonicEpoch",
    );
}

#[test]
fn seeded_vote_for_shorter_log_is_caught() {
    let model = shorter_log_start();
    caught(
        "bug/vote-for-shorter-log",
        model.clone(),
        20,
        "LeaderCompleteness",
    );
    // Followers of the wrong leader then cut committed entries.
    caught(
        "bug/vote-for-shorter-log",
        model,
        20,
        "CommittedPrefixAgreement",
    );
}

/// Starts where 3 led epoch 1 and committed a record on {1, 3} before
/// crashing (reachable: 3 wins epoch 1 with 1's vote; its fetches reach 1
/// only; a majority holds the record, which is of 3's epoch, so 3 commits
/// it). With the bug, 2 — whose log is empty — wins epoch 2.
fn shorter_log_start() -> QuorumModel {
    let bugs = QuorumBugs {
        vote_for_shorter_log: true,
        ..Default::default()
    };
    let log = vec![
        entry(1, Payload::LeaderChange { leader: 3 }),
        entry(1, Payload::Record(1)),
    ];
    let initial = vec![
        durable(1, Some(3), log.clone()),
        durable(1, Some(3), Vec::new()),
        durable(1, Some(3), log.clone()),
    ];
    let committed = log.iter().map(|e| (e.clone(), 1)).collect();
    QuorumModel {
        bugs,
        values_max: 0,
        drops_max: 0,
        initial: Some(initial),
        initial_committed: committed,
        ..QuorumModel::default()
    }
}

/// Raft's Figure 8 on three voters. Start: 3 led epoch 2 and 2 led epoch 3,
/// each writing only its own marker (reachable: 3 wins epoch 2 with 2's
/// vote and crashes; 2 wins epoch 3 with 1's vote and crashes; 3 restarts
/// and learns epoch 3 from a refused vote request). The prefix then runs
/// the real state machines: 3 wins epoch 4 with 1's vote and copies its
/// epoch-2 entry to 1. From there the checker finds the rest: with the bug,
/// 3 commits that entry by counting copies, crashes, and 2 wins epoch 5
/// (its last epoch 3 beats 1's 2) and overwrites it.
fn figure8(bugs: QuorumBugs) -> QuorumModel {
    use quorum_model::Action::{Deliver, Timer};
    let initial = vec![
        durable(3, Some(2), Vec::new()),
        durable(
            3,
            Some(2),
            vec![entry(3, Payload::LeaderChange { leader: 2 })],
        ),
        durable(3, None, vec![entry(2, Payload::LeaderChange { leader: 3 })]),
    ];
    let prefix = vec![
        Timer {
            node: 3,
            timer: runnel_model::quorum::QuorumTimer::Election,
        },
        Deliver { from: 3, to: 1 }, // pre-vote
        Deliver { from: 1, to: 3 }, // granted: 3 is a candidate in epoch 4
        Deliver { from: 3, to: 1 }, // vote
        Deliver { from: 1, to: 3 }, // granted: 3 leads epoch 4
        Deliver { from: 3, to: 1 }, // begin epoch: 1 fetches at 0
        Deliver { from: 1, to: 3 },
        Deliver { from: 3, to: 1 }, // 1 holds the epoch-2 entry, fetches at 1
    ];
    QuorumModel {
        bugs,
        values_max: 0,
        drops_max: 0,
        epoch_max: 5,
        initial: Some(initial),
        prefix,
        ..QuorumModel::default()
    }
}

#[test]
fn seeded_commit_earlier_epoch_by_count_is_caught() {
    let bugs = QuorumBugs {
        commit_earlier_epoch_by_count: true,
        ..Default::default()
    };
    caught(
        "bug/commit-earlier-epoch",
        figure8(bugs),
        16,
        "LeaderCompleteness",
    );
}

/// The same start without the bug: nothing is lost.
#[test]
fn figure8_start_is_safe_without_the_bug() {
    let run = check(
        "quorum/figure8 start",
        figure8(QuorumBugs::default()),
        16,
        HasDiscoveries::AnyFailures,
    );
    run.assert_holds(ALWAYS);
}

// ----- snapshots (KIP-630) ---------------------------------------------------

/// Starts where 3 led epoch 1 and committed a record on {1, 3}; 2 holds
/// nothing (it was away). The prefix elects 3 for epoch 2; exploration
/// then commits its marker, may take a snapshot, and must bring 2 up to
/// date, from the snapshot when 2's fetch lies below it, through crashes
/// and further elections.
fn snapshot_start(bugs: QuorumBugs, values_max: u8) -> QuorumModel {
    let log = vec![
        entry(1, Payload::LeaderChange { leader: 3 }),
        entry(1, Payload::Record(1)),
    ];
    let initial = vec![
        durable(1, Some(3), log.clone()),
        durable(1, Some(3), Vec::new()),
        durable(1, Some(3), log.clone()),
    ];
    use quorum_model::Action::{Deliver, Timer};
    // 3 wins epoch 2 with 1's vote and appends its marker.
    let prefix = vec![
        Timer {
            node: 3,
            timer: runnel_model::quorum::QuorumTimer::Election,
        },
        Deliver { from: 3, to: 1 }, // pre-vote
        Deliver { from: 1, to: 3 }, // granted
        Deliver { from: 3, to: 1 }, // vote
        Deliver { from: 1, to: 3 }, // granted: 3 leads epoch 2
    ];
    QuorumModel {
        bugs,
        values_max,
        drops_max: 0,
        snapshots_max: 1,
        initial: Some(initial),
        initial_committed: log.iter().map(|e| (e.clone(), 1)).collect(),
        prefix,
        ..QuorumModel::default()
    }
}

#[test]
fn snapshots_are_installed_and_keep_the_committed_prefix() {
    let run = check(
        "quorum/snapshots",
        snapshot_start(QuorumBugs::default(), 0),
        depth_from_env(16),
        HasDiscoveries::AllOf(set(SOMETIMES_SNAPSHOT)),
    );
    run.assert_holds(ALWAYS);
    run.assert_reached(SOMETIMES_SNAPSHOT);
}

#[test]
fn seeded_snapshot_above_commit_is_caught() {
    let bugs = QuorumBugs {
        snapshot_above_commit: true,
        ..Default::default()
    };
    caught(
        "bug/snapshot-above-commit",
        snapshot_start(bugs, 1),
        12,
        "CommittedPrefixAgreement",
    );
}

#[test]
fn snapshot_safety_holds() {
    let run = check(
        "quorum/snapshot safety",
        snapshot_start(QuorumBugs::default(), 1),
        depth_from_env(14),
        HasDiscoveries::AnyFailures,
    );
    run.assert_holds(ALWAYS);
}
