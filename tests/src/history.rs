//! A Jepsen-style history of client operations against a Kafka-compatible
//! cluster, and the checker that judges it (after Jepsen's Kafka workload):
//!
//! - **lost-write**: a send acknowledged at (partition, offset) whose value
//!   no reader ever saw although some reader read that partition beyond
//!   that offset;
//! - **unseen**: acknowledged sends never read at all (must drain to zero
//!   once the cluster healed and a final read reached the end);
//! - **duplicate**: one value read at two offsets (with idempotence, never);
//! - **inconsistent-offsets**: one offset read with two different values;
//! - **nonmonotonic-poll**: within one consumer session a partition's
//!   offsets did not strictly increase;
//! - **committed-offset-regression**: a group's committed offset (as
//!   committed or as read back) went backwards;
//! - **acked-offset-mismatch**: a value acknowledged at one offset and read
//!   at another;
//! - **election safety** (Raft's, KRaft's): at most one leader per quorum
//!   epoch. An observer polls every coordinator's status; a *term of office*
//!   is a node seen leading an epoch, uninterrupted by any other answer from
//!   that node. Two terms in one epoch — two nodes, or one node that stopped
//!   leading (say, restarted) and leads the same epoch again — mean some
//!   voter voted twice in that epoch.
//!
//! A checker that cannot fail proves nothing: the unit tests below feed it
//! one hand-made bad history per anomaly and require it to be reported.

use std::collections::{BTreeMap, BTreeSet};

pub type Partition = u32;
pub type Offset = u64;

/// How a send ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged (acks=all) at this position.
    Ok {
        partition: Partition,
        offset: Offset,
    },
    /// Definitely refused (nothing was written).
    Failed,
    /// Timed out or the connection broke: it may or may not be in the log.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Send {
        value: String,
        outcome: SendOutcome,
    },
    /// Records one poll returned, in order; `session` identifies a consumer
    /// session (a new one after a restart, a reassignment or a seek).
    Poll {
        session: u64,
        records: Vec<(Partition, Offset, String)>,
    },
    /// A successful offset commit (the next offset to read).
    Commit {
        group: String,
        partition: Partition,
        offset: Offset,
    },
    /// A committed offset read back (OffsetFetch).
    CommittedRead {
        group: String,
        partition: Partition,
        offset: Offset,
    },
    /// A coordinator's answer to a status poll: its quorum epoch and whether
    /// it leads it. Observers record only changes, per node, in the order
    /// the answers came.
    Quorum {
        node: u32,
        epoch: u32,
        leader: bool,
    },
}

/// Operations in the order they completed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub ops: Vec<Op>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Anomaly {
    LostWrite {
        value: String,
        partition: Partition,
        offset: Offset,
    },
    Unseen {
        count: usize,
        example: String,
    },
    Duplicate {
        value: String,
        at: Vec<(Partition, Offset)>,
    },
    InconsistentOffset {
        partition: Partition,
        offset: Offset,
        values: Vec<String>,
    },
    NonMonotonicPoll {
        session: u64,
        partition: Partition,
        previous: Offset,
        next: Offset,
    },
    CommittedOffsetRegression {
        group: String,
        partition: Partition,
        previous: Offset,
        next: Offset,
    },
    AckedOffsetMismatch {
        value: String,
        acked: (Partition, Offset),
        read: (Partition, Offset),
    },
    /// Two terms of office in one quorum epoch: the nodes that held them,
    /// in the order they were seen (one node twice if it led the epoch,
    /// stopped, and led it again).
    TwoLeadersInOneEpoch {
        epoch: u32,
        leaders: Vec<u32>,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// Idempotent producers: a value at two offsets is an anomaly.
    pub idempotent: bool,
    /// The history ends with a complete read after healing: every
    /// acknowledged write must have been seen.
    pub drained: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
    pub sends: usize,
    pub acked: usize,
    pub records_read: usize,
    pub commits: usize,
    /// Quorum status changes observed (see [`Op::Quorum`]).
    pub quorum_observations: usize,
    /// Terms of office seen (node, epoch): one per leader elected.
    pub leader_terms: usize,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// A one-line summary: counts and the first few anomalies.
    pub fn summary(&self) -> String {
        let shown: Vec<String> = self
            .anomalies
            .iter()
            .take(3)
            .map(|a| format!("{a:?}"))
            .collect();
        format!(
            "{} sends ({} acknowledged), {} records read, {} commits, {} leaders seen, {} anomalies{}{}",
            self.sends,
            self.acked,
            self.records_read,
            self.commits,
            self.leader_terms,
            self.anomalies.len(),
            if shown.is_empty() { "" } else { ": " },
            shown.join(", ")
        )
    }
}

/// Running totals over many checked cases: what a soak prints after each
/// case, so its last line sums the whole run.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub cases: usize,
    /// Faults by kind (the schedule's names).
    pub faults: BTreeMap<String, usize>,
    pub sends: usize,
    pub acked: usize,
    pub records_read: usize,
    pub commits: usize,
    pub leader_terms: usize,
    pub anomalies: usize,
}

impl Totals {
    pub const fn new() -> Totals {
        Totals {
            cases: 0,
            faults: BTreeMap::new(),
            sends: 0,
            acked: 0,
            records_read: 0,
            commits: 0,
            leader_terms: 0,
            anomalies: 0,
        }
    }

    /// Adds one case: its report and its faults, counted by kind (the
    /// variant's name, arguments dropped).
    pub fn add<F: std::fmt::Debug>(
        &mut self,
        report: &Report,
        faults: impl IntoIterator<Item = F>,
    ) {
        self.cases += 1;
        for f in faults {
            let debug = format!("{f:?}");
            let kind = debug.split(['(', ' ']).next().unwrap_or(&debug).to_string();
            *self.faults.entry(kind).or_default() += 1;
        }
        self.sends += report.sends;
        self.acked += report.acked;
        self.records_read += report.records_read;
        self.commits += report.commits;
        self.leader_terms += report.leader_terms;
        self.anomalies += report.anomalies.len();
    }

    pub fn line(&self) -> String {
        let kinds: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        format!(
            "{} cases, {} faults ({}), {} sends ({} acknowledged), {} records read, {} commits, {} leader terms, {} anomalies",
            self.cases,
            self.faults.values().sum::<usize>(),
            kinds.join(", "),
            self.sends,
            self.acked,
            self.records_read,
            self.commits,
            self.leader_terms,
            self.anomalies
        )
    }
}

pub fn check(history: &History, options: CheckOptions) -> Report {
    let mut report = Report::default();
    // What was read where.
    let mut at: BTreeMap<(Partition, Offset), BTreeSet<String>> = BTreeMap::new();
    let mut where_read: BTreeMap<String, BTreeSet<(Partition, Offset)>> = BTreeMap::new();
    let mut highest_read: BTreeMap<Partition, Offset> = BTreeMap::new();
    let mut session_last: BTreeMap<(u64, Partition), Offset> = BTreeMap::new();
    let mut committed: BTreeMap<(String, Partition), Offset> = BTreeMap::new();
    let mut acked: Vec<(String, Partition, Offset)> = Vec::new();
    for op in &history.ops {
        match op {
            Op::Send { value, outcome } => {
                report.sends += 1;
                if let SendOutcome::Ok { partition, offset } = outcome {
                    acked.push((value.clone(), *partition, *offset));
                }
            }
            Op::Poll { session, records } => {
                for (p, o, v) in records {
                    report.records_read += 1;
                    at.entry((*p, *o)).or_default().insert(v.clone());
                    where_read.entry(v.clone()).or_default().insert((*p, *o));
                    let h = highest_read.entry(*p).or_insert(*o);
                    *h = (*h).max(*o);
                    if let Some(prev) = session_last.insert((*session, *p), *o) {
                        if *o <= prev {
                            report.anomalies.push(Anomaly::NonMonotonicPoll {
                                session: *session,
                                partition: *p,
                                previous: prev,
                                next: *o,
                            });
                        }
                    }
                }
            }
            Op::Commit {
                group,
                partition,
                offset,
            }
            | Op::CommittedRead {
                group,
                partition,
                offset,
            } => {
                if matches!(op, Op::Commit { .. }) {
                    report.commits += 1;
                }
                let key = (group.clone(), *partition);
                if let Some(prev) = committed.get(&key).copied() {
                    if *offset < prev {
                        report.anomalies.push(Anomaly::CommittedOffsetRegression {
                            group: group.clone(),
                            partition: *partition,
                            previous: prev,
                            next: *offset,
                        });
                    }
                }
                let c = committed.entry(key).or_insert(*offset);
                *c = (*c).max(*offset);
            }
            Op::Quorum { .. } => {}
        }
    }
    report.acked = acked.len();
    check_election_safety(history, &mut report);
    for ((p, o), values) in &at {
        if values.len() > 1 {
            report.anomalies.push(Anomaly::InconsistentOffset {
                partition: *p,
                offset: *o,
                values: values.iter().cloned().collect(),
            });
        }
    }
    if options.idempotent {
        for (value, positions) in &where_read {
            if positions.len() > 1 {
                report.anomalies.push(Anomaly::Duplicate {
                    value: value.clone(),
                    at: positions.iter().copied().collect(),
                });
            }
        }
    }
    let mut unseen = Vec::new();
    for (value, p, o) in &acked {
        match where_read.get(value) {
            Some(positions) => {
                if !positions.contains(&(*p, *o)) {
                    let read = *positions.iter().next().expect("non-empty");
                    report.anomalies.push(Anomaly::AckedOffsetMismatch {
                        value: value.clone(),
                        acked: (*p, *o),
                        read,
                    });
                }
            }
            None if highest_read.get(p).is_some_and(|h| h > o) => {
                report.anomalies.push(Anomaly::LostWrite {
                    value: value.clone(),
                    partition: *p,
                    offset: *o,
                })
            }
            None => unseen.push(value.clone()),
        }
    }
    if options.drained && !unseen.is_empty() {
        report.anomalies.push(Anomaly::Unseen {
            count: unseen.len(),
            example: unseen[0].clone(),
        });
    }
    report.anomalies.sort();
    report
}

/// At most one term of office per quorum epoch (see the module comment).
fn check_election_safety(history: &History, report: &mut Report) {
    // The (epoch, leading) each node was last seen in.
    let mut last: BTreeMap<u32, (u32, bool)> = BTreeMap::new();
    let mut terms: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for op in &history.ops {
        let Op::Quorum {
            node,
            epoch,
            leader,
        } = op
        else {
            continue;
        };
        report.quorum_observations += 1;
        let previous = last.insert(*node, (*epoch, *leader));
        if *leader && previous != Some((*epoch, true)) {
            report.leader_terms += 1;
            terms.entry(*epoch).or_default().push(*node);
        }
    }
    for (epoch, leaders) in terms {
        if leaders.len() > 1 {
            report
                .anomalies
                .push(Anomaly::TwoLeadersInOneEpoch { epoch, leaders });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: CheckOptions = CheckOptions {
        idempotent: true,
        drained: true,
    };

    fn send(v: &str, p: Partition, o: Offset) -> Op {
        Op::Send {
            value: v.into(),
            outcome: SendOutcome::Ok {
                partition: p,
                offset: o,
            },
        }
    }

    fn poll(session: u64, records: &[(Partition, Offset, &str)]) -> Op {
        Op::Poll {
            session,
            records: records
                .iter()
                .map(|(p, o, v)| (*p, *o, v.to_string()))
                .collect(),
        }
    }

    fn commit(p: Partition, o: Offset) -> Op {
        Op::Commit {
            group: "g".into(),
            partition: p,
            offset: o,
        }
    }

    fn anomalies(ops: Vec<Op>, options: CheckOptions) -> Vec<Anomaly> {
        check(&History { ops }, options).anomalies
    }

    #[test]
    fn a_good_history_passes() {
        let ops = vec![
            send("a", 0, 0),
            send("b", 0, 1),
            Op::Send {
                value: "c".into(),
                outcome: SendOutcome::Unknown,
            },
            poll(1, &[(0, 0, "a"), (0, 1, "b")]),
            commit(0, 2),
            poll(2, &[(0, 1, "b"), (0, 2, "c")]),
            Op::CommittedRead {
                group: "g".into(),
                partition: 0,
                offset: 2,
            },
        ];
        assert_eq!(anomalies(ops, STRICT), vec![]);
    }

    #[test]
    fn a_lost_write_is_reported() {
        let ops = vec![send("a", 0, 0), send("b", 0, 1), poll(1, &[(0, 1, "b")])];
        assert_eq!(
            anomalies(ops, STRICT),
            vec![Anomaly::LostWrite {
                value: "a".into(),
                partition: 0,
                offset: 0
            }]
        );
    }

    #[test]
    fn unseen_writes_are_reported_only_for_drained_histories() {
        let ops = vec![send("a", 0, 0), send("b", 1, 0), poll(1, &[(0, 0, "a")])];
        assert_eq!(
            anomalies(ops.clone(), STRICT),
            vec![Anomaly::Unseen {
                count: 1,
                example: "b".into()
            }]
        );
        let open = CheckOptions {
            drained: false,
            ..STRICT
        };
        assert_eq!(anomalies(ops, open), vec![]);
    }

    #[test]
    fn a_duplicate_is_reported_with_idempotence() {
        let ops = vec![send("a", 0, 0), poll(1, &[(0, 0, "a"), (0, 1, "a")])];
        assert_eq!(
            anomalies(ops.clone(), STRICT),
            vec![Anomaly::Duplicate {
                value: "a".into(),
                at: vec![(0, 0), (0, 1)]
            }]
        );
        let plain = CheckOptions {
            idempotent: false,
            ..STRICT
        };
        assert_eq!(anomalies(ops, plain), vec![], "retries may duplicate");
    }

    #[test]
    fn inconsistent_offsets_are_reported() {
        let ops = vec![poll(1, &[(0, 0, "a")]), poll(2, &[(0, 0, "b")])];
        assert_eq!(
            anomalies(ops, STRICT),
            vec![Anomaly::InconsistentOffset {
                partition: 0,
                offset: 0,
                values: vec!["a".into(), "b".into()]
            }]
        );
    }

    #[test]
    fn a_nonmonotonic_poll_is_reported() {
        let ops = vec![
            poll(1, &[(0, 0, "a"), (0, 1, "b")]),
            poll(1, &[(0, 1, "b")]),
        ];
        assert_eq!(
            anomalies(ops, STRICT),
            vec![Anomaly::NonMonotonicPoll {
                session: 1,
                partition: 0,
                previous: 1,
                next: 1
            }]
        );
    }

    #[test]
    fn a_committed_offset_regression_is_reported() {
        let ops = vec![
            commit(0, 5),
            Op::CommittedRead {
                group: "g".into(),
                partition: 0,
                offset: 3,
            },
        ];
        assert_eq!(
            anomalies(ops, STRICT),
            vec![Anomaly::CommittedOffsetRegression {
                group: "g".into(),
                partition: 0,
                previous: 5,
                next: 3
            }]
        );
    }

    fn quorum(node: u32, epoch: u32, leader: bool) -> Op {
        Op::Quorum {
            node,
            epoch,
            leader,
        }
    }

    #[test]
    fn successive_leaders_in_successive_epochs_pass() {
        let ops = vec![
            quorum(1, 1, true),
            quorum(1, 1, true),
            quorum(2, 1, false),
            quorum(1, 1, false),
            quorum(2, 2, true),
            quorum(1, 2, false),
        ];
        let report = check(&History { ops }, STRICT);
        assert_eq!(report.anomalies, vec![]);
        assert_eq!(report.leader_terms, 2);
    }

    #[test]
    fn two_leaders_in_one_epoch_are_reported() {
        let ops = vec![quorum(1, 3, true), quorum(2, 3, true)];
        assert_eq!(
            anomalies(ops, STRICT),
            vec![Anomaly::TwoLeadersInOneEpoch {
                epoch: 3,
                leaders: vec![1, 2]
            }]
        );
    }

    #[test]
    fn one_node_leading_an_epoch_twice_is_reported() {
        // Led epoch 1, restarted having forgotten it, led epoch 1 again.
        let ops = vec![quorum(1, 1, true), quorum(1, 0, false), quorum(1, 1, true)];
        assert_eq!(
            anomalies(ops, STRICT),
            vec![Anomaly::TwoLeadersInOneEpoch {
                epoch: 1,
                leaders: vec![1, 1]
            }]
        );
    }

    #[test]
    fn totals_sum_cases_and_count_faults_by_kind() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum F {
            Kill(u32),
            Pause { node: u32 },
            Heal,
        }
        let bad = check(
            &History {
                ops: vec![send("a", 0, 0), send("b", 0, 1), poll(1, &[(0, 1, "b")])],
            },
            STRICT,
        );
        let good = check(
            &History {
                ops: vec![send("c", 1, 0), poll(1, &[(1, 0, "c")])],
            },
            STRICT,
        );
        let mut t = Totals::new();
        t.add(&bad, [F::Kill(1), F::Kill(2), F::Heal]);
        t.add(&good, [F::Pause { node: 0 }]);
        assert_eq!(
            (t.cases, t.sends, t.acked, t.records_read, t.anomalies),
            (2, 3, 3, 2, 1)
        );
        assert_eq!(
            t.line(),
            "2 cases, 4 faults (1 Heal, 2 Kill, 1 Pause), 3 sends (3 acknowledged), \
             2 records read, 0 commits, 0 leader terms, 1 anomalies"
        );
    }

    #[test]
    fn a_value_read_elsewhere_than_acknowledged_is_reported() {
        let ops = vec![send("a", 0, 0), poll(1, &[(0, 3, "a")])];
        assert_eq!(
            anomalies(ops, STRICT),
            vec![Anomaly::AckedOffsetMismatch {
                value: "a".into(),
                acked: (0, 0),
                read: (0, 3)
            }]
        );
    }
}
