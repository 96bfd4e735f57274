//! The layout of the coordinator's records in `__consumer_offsets`, made
//! for log compaction as Kafka's is: one key per committed partition
//! (group, topic, partition: Kafka's OffsetCommitKey) and one per group
//! (its metadata, the generation: Kafka's GroupMetadataKey), a null value
//! deleting its key. Replaying a log leaves each key as its latest record
//! says, so the compacted log (the cleaner keeps each key's latest record,
//! and a tombstone until `delete.retention.ms` has passed) rebuilds the
//! same groups as the whole log, and the topic stays as large as the live
//! offsets, not as the history.
//!
//! Checked in this module's tests by proptest: random coordinator
//! histories, compacted by the model's rule ([`crate::compaction`]) at
//! random times, replay to the same offsets and generations as the
//! uncompacted log and as the records themselves; the seeded bug
//! [`LayoutBugs::delete_group_by_metadata_only`] (the layout before this
//! one: a deletion relied on clearing what came before it, which
//! compaction does not keep in order) is caught.
//!
//! The bytes (Kafka's key versions 1 and 2) are the node's to encode.

use super::{CommittedOffset, Group, GroupRecord, GENERATION_MAX, OFFSET_METADATA_MAX_BYTES_LIMIT};

/// The key of a record in the offsets topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OffsetsKey {
    /// A group's committed offset of one partition.
    Offset {
        group: String,
        topic: String,
        partition: u32,
    },
    /// A group's metadata (its generation); its tombstone deletes the group.
    Metadata { group: String },
}

impl OffsetsKey {
    pub fn group(&self) -> &str {
        match self {
            OffsetsKey::Offset { group, .. } | OffsetsKey::Metadata { group } => group,
        }
    }
}

/// The value of a record in the offsets topic (none: a tombstone).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OffsetsValue {
    Offset {
        offset: CommittedOffset,
        /// The coordinator's clock at the commit (offsets retention).
        commit_timestamp_ms: u64,
    },
    Metadata {
        generation: i32,
    },
}

/// One record: a key and its value, `None` deleting the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetsEntry {
    pub key: OffsetsKey,
    pub value: Option<OffsetsValue>,
}

/// Seeded mistakes, each caught by a property test. All off in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayoutBugs {
    /// DeleteGroups writes only the group's metadata tombstone and leaves
    /// its offsets' keys alone: the whole log replays right (the tombstone
    /// clears what came before it), but once compaction removes the
    /// tombstone the offsets come back.
    pub delete_group_by_metadata_only: bool,
}

/// The records one coordinator record is written as, in order: all of
/// them go in one batch, so they commit together.
pub fn entries(group: &str, record: &GroupRecord) -> Vec<OffsetsEntry> {
    entries_with(group, record, LayoutBugs::default())
}

pub fn entries_with(group: &str, record: &GroupRecord, bugs: LayoutBugs) -> Vec<OffsetsEntry> {
    let offset_key = |(topic, partition): &(String, u32)| OffsetsKey::Offset {
        group: group.to_string(),
        topic: topic.clone(),
        partition: *partition,
    };
    let metadata_key = || OffsetsKey::Metadata {
        group: group.to_string(),
    };
    let set = |key, value| OffsetsEntry {
        key,
        value: Some(value),
    };
    let delete = |key| OffsetsEntry { key, value: None };
    match record {
        GroupRecord::Offsets {
            offsets,
            commit_timestamp_ms,
            ..
        } => offsets
            .iter()
            .map(|(tp, o)| {
                let value = OffsetsValue::Offset {
                    offset: o.clone(),
                    commit_timestamp_ms: *commit_timestamp_ms,
                };
                set(offset_key(tp), value)
            })
            .collect(),
        GroupRecord::OffsetsWithoutMetadata {
            offsets,
            commit_timestamp_ms,
            ..
        } => offsets
            .iter()
            .map(|(tp, o)| {
                let value = OffsetsValue::Offset {
                    offset: CommittedOffset::bare(*o),
                    commit_timestamp_ms: *commit_timestamp_ms,
                };
                set(offset_key(tp), value)
            })
            .collect(),
        GroupRecord::Generation { generation } => vec![set(
            metadata_key(),
            OffsetsValue::Metadata {
                generation: *generation,
            },
        )],
        GroupRecord::OffsetsDeleted { partitions } => {
            partitions.iter().map(|tp| delete(offset_key(tp))).collect()
        }
        GroupRecord::GroupDeleted { partitions } => {
            let mut out: Vec<OffsetsEntry> = match bugs.delete_group_by_metadata_only {
                true => Vec::new(),
                false => partitions.iter().map(|tp| delete(offset_key(tp))).collect(),
            };
            out.push(delete(metadata_key()));
            out
        }
        GroupRecord::Deleted => vec![delete(metadata_key())],
    }
}

impl Group {
    /// Rebuilds the durable part of a group from its records in the
    /// offsets topic's layout, in log order: each key takes its record's
    /// value. A group's metadata tombstone also clears every offset (its
    /// deletion wrote each offset's tombstone before it, so this only
    /// repeats them, and replays the records before this layout right). A
    /// record no coordinator could have written is refused, not applied.
    pub fn replay_entry(&mut self, entry: &OffsetsEntry) -> Result<(), String> {
        debug_assert!(self.members.is_empty(), "replay happens before serving");
        match (&entry.key, &entry.value) {
            (
                OffsetsKey::Offset {
                    topic, partition, ..
                },
                Some(OffsetsValue::Offset {
                    offset,
                    commit_timestamp_ms,
                }),
            ) => {
                crate::controller::validate_topic_name(topic).map_err(|e| format!("{e:?}"))?;
                if offset.metadata.len() > OFFSET_METADATA_MAX_BYTES_LIMIT {
                    return Err(format!(
                        "{} bytes of offset metadata",
                        offset.metadata.len()
                    ));
                }
                let tp = (topic.clone(), *partition);
                self.set_offset(&tp, offset.clone(), *commit_timestamp_ms);
            }
            (
                OffsetsKey::Offset {
                    topic, partition, ..
                },
                None,
            ) => {
                self.remove_offset(&(topic.clone(), *partition));
            }
            (OffsetsKey::Metadata { .. }, Some(OffsetsValue::Metadata { generation })) => {
                if !(0..=GENERATION_MAX).contains(generation) {
                    return Err(format!("generation {generation} is out of range"));
                }
                self.generation = *generation;
            }
            (OffsetsKey::Metadata { .. }, None) => {
                self.take_offsets();
                self.generation = 0;
            }
            (key, Some(value)) => return Err(format!("a {value:?} under the key {key:?}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction::{self, CleanPolicy, Entry};
    use crate::core::Offset;
    use crate::group::{GroupBugs, GroupConfig, GroupLimits};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::collections::BTreeMap;

    fn fresh() -> Group {
        Group::new(GroupConfig {
            initial_rebalance_delay_ms: 0,
            incarnation: 0,
            limits: GroupLimits::default(),
            bugs: GroupBugs::default(),
        })
    }

    /// What a coordinator does next to one of three groups.
    #[derive(Clone, Debug)]
    enum Step {
        /// Commits these (topic, partition, offset).
        Commit(Vec<(u8, u8, i64)>),
        Rebalance,
        /// OffsetDelete of these (topic, partition).
        DeleteOffsets(Vec<(u8, u8)>),
        /// offsets.retention.minutes: every offset goes.
        Expire,
        DeleteGroup,
    }

    fn steps() -> impl Strategy<Value = Vec<(u8, Step, i64)>> {
        let tp = (0u8..2, 0u8..3);
        let step = prop_oneof![
            4 => prop::collection::vec((0u8..2, 0u8..3, 0i64..1000), 1..4).prop_map(Step::Commit),
            2 => Just(Step::Rebalance),
            1 => prop::collection::vec(tp, 1..3).prop_map(Step::DeleteOffsets),
            1 => Just(Step::Expire),
            1 => Just(Step::DeleteGroup),
        ];
        prop::collection::vec((0u8..3, step, 0i64..50), 0..40)
    }

    /// The coordinator record a step writes, given the group's state.
    fn record(g: &Group, step: &Step, now_ms: i64) -> Option<GroupRecord> {
        let tp = |t: u8, p: u8| (format!("t{t}"), u32::from(p));
        let all: Vec<(String, u32)> = g.offsets().keys().cloned().collect();
        Some(match step {
            Step::Commit(offsets) => GroupRecord::Offsets {
                generation: g.generation(),
                offsets: offsets
                    .iter()
                    .map(|&(t, p, o)| (tp(t, p), CommittedOffset::bare(o)))
                    .collect(),
                commit_timestamp_ms: now_ms as u64,
            },
            Step::Rebalance => GroupRecord::Generation {
                generation: g.generation() + 1,
            },
            Step::DeleteOffsets(tps) => GroupRecord::OffsetsDeleted {
                partitions: tps
                    .iter()
                    .map(|&(t, p)| tp(t, p))
                    .filter(|tp| g.offsets().contains_key(tp))
                    .collect(),
            },
            Step::Expire if all.is_empty() => return None,
            Step::Expire => GroupRecord::OffsetsDeleted { partitions: all },
            Step::DeleteGroup => GroupRecord::GroupDeleted { partitions: all },
        })
    }

    type Groups = BTreeMap<String, (BTreeMap<(String, u32), CommittedOffset>, i32, u64)>;

    /// The durable state of each group that has any: offsets, generation,
    /// last commit (offsets retention).
    fn durable(groups: &BTreeMap<String, Group>) -> Groups {
        groups
            .iter()
            .map(|(id, g)| {
                let state = (g.offsets().clone(), g.generation(), g.last_commit_ms());
                (id.clone(), state)
            })
            .filter(|(_, (offsets, generation, _))| !offsets.is_empty() || *generation != 0)
            .collect()
    }

    fn replay(log: &[(OffsetsEntry, i64)]) -> Result<Groups, TestCaseError> {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for (e, _) in log {
            let g = groups
                .entry(e.key.group().to_string())
                .or_insert_with(fresh);
            g.replay_entry(e).map_err(TestCaseError::fail)?;
        }
        Ok(durable(&groups))
    }

    /// Writes the history, compacts it by `passes` (ms after the previous
    /// pass, the quarters of the log in the active segment), and checks
    /// that every version of the log replays to the same groups.
    fn check(
        steps: &[(u8, Step, i64)],
        passes: &[(i64, u8)],
        bugs: LayoutBugs,
    ) -> Result<(), TestCaseError> {
        let mut now = 0i64;
        let mut coordinator: BTreeMap<String, Group> = BTreeMap::new();
        let mut log: Vec<(OffsetsEntry, i64)> = Vec::new();
        for (group, step, dt) in steps {
            now += dt;
            let id = format!("g{group}");
            let g = coordinator.entry(id.clone()).or_insert_with(fresh);
            let Some(r) = record(g, step, now) else {
                continue;
            };
            g.replay(&r).map_err(TestCaseError::fail)?;
            log.extend(entries_with(&id, &r, bugs).into_iter().map(|e| (e, now)));
        }
        let want = durable(&coordinator);
        prop_assert_eq!(&replay(&log)?, &want, "the whole log");
        let policy = CleanPolicy {
            delete_retention_ms: 100,
            min_compaction_lag_ms: 0,
            bugs: Default::default(),
        };
        let mut kept: Vec<Entry<OffsetsKey>> = log
            .iter()
            .enumerate()
            .map(|(i, (e, ts))| Entry {
                offset: i as Offset,
                key: Some(e.key.clone()),
                tombstone: e.value.is_none(),
                timestamp_ms: *ts,
                delete_horizon_ms: None,
            })
            .collect();
        let len = log.len() as Offset;
        for &(dt, quarters) in passes {
            now += dt;
            let active = len * Offset::from(quarters) / 4;
            let end = compaction::cleanable_end(&kept, active, len, now, &policy);
            let verdicts = compaction::clean(&kept, end, now, &policy);
            kept = compaction::apply(&kept, &verdicts);
            let compacted: Vec<_> = kept
                .iter()
                .map(|e| log[e.offset as usize].clone())
                .collect();
            prop_assert_eq!(&replay(&compacted)?, &want, "compacted at {}", now);
        }
        Ok(())
    }

    fn passes() -> impl Strategy<Value = Vec<(i64, u8)>> {
        prop::collection::vec((0i64..300, 0u8..=4), 1..5)
    }

    proptest! {
        #![proptest_config(Config::with_cases(5_000))]
        #[test]
        fn a_compacted_offsets_topic_replays_to_the_same_groups(
            steps in steps(),
            passes in passes(),
        ) {
            check(&steps, &passes, LayoutBugs::default())?;
        }
    }

    #[test]
    fn seeded_delete_group_by_metadata_only_is_caught() {
        let bugs = LayoutBugs {
            delete_group_by_metadata_only: true,
        };
        let mut runner = TestRunner::new(Config::with_cases(2_000));
        let result = runner.run(&(steps(), passes()), |(steps, passes)| {
            check(&steps, &passes, bugs)
        });
        assert!(result.is_err(), "the seeded bug went unnoticed");
    }

    #[test]
    fn records_no_coordinator_writes_are_refused() {
        let mut g = fresh();
        let group = "g".to_string();
        let mismatched = OffsetsEntry {
            key: OffsetsKey::Metadata {
                group: group.clone(),
            },
            value: Some(OffsetsValue::Offset {
                offset: CommittedOffset::bare(1),
                commit_timestamp_ms: 0,
            }),
        };
        assert!(g.replay_entry(&mismatched).is_err());
        let bad_topic = OffsetsEntry {
            key: OffsetsKey::Offset {
                group: group.clone(),
                topic: "a/b".into(),
                partition: 0,
            },
            value: Some(OffsetsValue::Offset {
                offset: CommittedOffset::bare(1),
                commit_timestamp_ms: 0,
            }),
        };
        assert!(g.replay_entry(&bad_topic).is_err());
        let huge = OffsetsEntry {
            key: OffsetsKey::Metadata { group },
            value: Some(OffsetsValue::Metadata {
                generation: i32::MAX,
            }),
        };
        assert!(g.replay_entry(&huge).is_err());
        assert!(g.offsets().is_empty() && g.generation() == 0);
    }
}
