//! Log compaction's rule (Kafka's `cleanup.policy=compact`): which records
//! a cleaning pass keeps. A pure function of the records, the range that may
//! be cleaned and the clock, so that every replica's cleaner, the tests and
//! the reference agree; the node's cleaner (reading and rewriting segments)
//! is the caller.
//!
//! Kafka's guarantees, checked as properties against a reference (the
//! latest value per key of the uncompacted log) in this module's tests:
//! - offsets and order never change: a pass only removes records;
//! - the latest value of every key survives, and a deleted key never comes
//!   back (a tombstone goes only with every older record of its key);
//! - a consumer that keeps up sees every record: nothing at or past the
//!   cleanable end is touched ([`cleanable_end`]: the active segment, the
//!   high watermark and `min.compaction.lag.ms` bound it);
//! - a tombstone survives `delete.retention.ms` after the pass that first
//!   saw it (KIP-534's delete horizon, recorded with the record), then goes.

use crate::core::Offset;
use std::collections::BTreeMap;

/// One record as the cleaner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<K> {
    pub offset: Offset,
    /// Kafka refuses keyless records on compacted topics; one that is in a
    /// log all the same is kept (nothing is lost silently).
    pub key: Option<K>,
    /// A null value: the key is deleted.
    pub tombstone: bool,
    pub timestamp_ms: i64,
    /// When the tombstone may go (KIP-534): set by the first pass that
    /// keeps it as its key's latest, to that pass's time plus
    /// `delete.retention.ms`.
    pub delete_horizon_ms: Option<i64>,
}

/// Kafka's topic keys for compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanPolicy {
    /// `delete.retention.ms` (Kafka's default: a day).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms` (Kafka's default: 0).
    pub min_compaction_lag_ms: i64,
    pub bugs: CompactionBugs,
}

impl Default for CleanPolicy {
    fn default() -> Self {
        Self {
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            bugs: CompactionBugs::default(),
        }
    }
}

/// Seeded mistakes, each caught by a property test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionBugs {
    /// Keeps each key's first record instead of its last (drops the latest value).
    pub keep_first_value: bool,
    /// Removes a tombstone as soon as it is its key's latest, before
    /// `delete.retention.ms`.
    pub drop_tombstones_at_once: bool,
    /// Cleans records younger than `min.compaction.lag.ms`.
    pub ignore_compaction_lag: bool,
}

/// What a pass does with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Keep, recording this delete horizon with the tombstone.
    KeepUntil(i64),
    Remove,
}

/// The first offset a pass may not clean: the start of the active
/// segment, the high watermark (uncommitted records may still be cut), and
/// the first record younger than `min.compaction.lag.ms` (Kafka takes
/// segments' largest timestamps; records in offset order are close enough
/// for a bound that only ever keeps more).
pub fn cleanable_end<K>(
    entries: &[Entry<K>],
    active_segment_base: Offset,
    high_watermark: Offset,
    now_ms: i64,
    policy: &CleanPolicy,
) -> Offset {
    let mut end = active_segment_base.min(high_watermark);
    if policy.bugs.ignore_compaction_lag {
        return end;
    }
    let too_young = now_ms.saturating_sub(policy.min_compaction_lag_ms);
    if let Some(young) = entries
        .iter()
        .take_while(|e| e.offset < end)
        .find(|e| e.timestamp_ms > too_young)
    {
        end = young.offset;
    }
    end
}

/// Decides every record of `entries` (in offset order) for a pass at
/// `now_ms` cleaning below `end`: a record at or past `end` is kept; below
/// it, a record whose key has a later record below `end` goes; a key's
/// latest record stays, unless it is a tombstone whose delete horizon has
/// passed.
pub fn clean<K: Ord + Clone>(
    entries: &[Entry<K>],
    end: Offset,
    now_ms: i64,
    policy: &CleanPolicy,
) -> Vec<Verdict> {
    debug_assert!(entries.windows(2).all(|w| w[0].offset < w[1].offset));
    // Kafka's offset map: each key's last offset in the cleanable range.
    let mut last: BTreeMap<&K, Offset> = BTreeMap::new();
    for e in entries.iter().take_while(|e| e.offset < end) {
        if let Some(k) = &e.key {
            if policy.bugs.keep_first_value {
                last.entry(k).or_insert(e.offset);
            } else {
                last.insert(k, e.offset);
            }
        }
    }
    entries
        .iter()
        .map(|e| {
            let Some(k) = &e.key else {
                return Verdict::Keep;
            };
            if e.offset >= end {
                return Verdict::Keep;
            }
            if last.get(k) != Some(&e.offset) {
                return Verdict::Remove;
            }
            if !e.tombstone {
                return Verdict::Keep;
            }
            if policy.bugs.drop_tombstones_at_once {
                return Verdict::Remove;
            }
            match e.delete_horizon_ms {
                None => Verdict::KeepUntil(now_ms.saturating_add(policy.delete_retention_ms)),
                Some(h) if now_ms >= h => Verdict::Remove,
                Some(_) => Verdict::Keep,
            }
        })
        .collect()
}

/// Applies [`clean`]'s verdicts: the records kept, horizons recorded.
pub fn apply<K: Clone>(entries: &[Entry<K>], verdicts: &[Verdict]) -> Vec<Entry<K>> {
    assert_eq!(entries.len(), verdicts.len());
    entries
        .iter()
        .zip(verdicts)
        .filter_map(|(e, v)| match v {
            Verdict::Keep => Some(e.clone()),
            Verdict::KeepUntil(h) => Some(Entry {
                delete_horizon_ms: Some(*h),
                ..e.clone()
            }),
            Verdict::Remove => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    /// A record appended: (key, tombstone, ms after the previous one).
    type Op = (Option<u8>, bool, i64);
    /// A cleaning pass: (ms after the previous event, how much of the log
    /// is in the active segment, as a fraction in 0..=4 quarters).
    type Pass = (i64, u8);

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            (
                prop::option::weighted(0.95, 0u8..4),
                prop::bool::weighted(0.25),
                0i64..50,
            ),
            0..40,
        )
    }

    fn passes() -> impl Strategy<Value = Vec<Pass>> {
        prop::collection::vec((0i64..400, 0u8..=4), 1..6)
    }

    /// The reference: each key's latest state in the uncompacted log
    /// (`Some(offset)` of its latest value, `None` once deleted).
    fn latest_values(entries: &[Entry<u8>]) -> BTreeMap<u8, Option<Offset>> {
        let mut m = BTreeMap::new();
        for e in entries {
            if let Some(k) = e.key {
                m.insert(k, (!e.tombstone).then_some(e.offset));
            }
        }
        m
    }

    /// Appends the log, runs the passes, checks every guarantee after each.
    fn check(ops: &[Op], passes: &[Pass], policy: &CleanPolicy) -> Result<(), TestCaseError> {
        let mut now = 0i64;
        let original: Vec<Entry<u8>> = ops
            .iter()
            .enumerate()
            .map(|(i, &(key, tombstone, dt))| {
                now += dt;
                Entry {
                    offset: i as Offset,
                    key,
                    tombstone,
                    timestamp_ms: now,
                    delete_horizon_ms: None,
                }
            })
            .collect();
        let reference = latest_values(&original);
        let len = original.len() as Offset;
        let mut log = original.clone();
        // When each tombstone first got its horizon (pass time).
        let mut first_kept: BTreeMap<Offset, i64> = BTreeMap::new();
        for &(dt, quarters) in passes {
            now += dt;
            let active_base = len * Offset::from(quarters) / 4;
            let end = cleanable_end(&log, active_base, len, now, policy);
            let verdicts = clean(&log, end, now, policy);
            let next = apply(&log, &verdicts);
            // Offsets and order: a subsequence; nothing at or past `end` touched.
            prop_assert!(next.windows(2).all(|w| w[0].offset < w[1].offset));
            prop_assert!(next
                .iter()
                .all(|e| original.iter().any(|o| o.offset == e.offset)));
            let untouched: Vec<_> = log.iter().filter(|e| e.offset >= end).collect();
            prop_assert!(untouched
                .iter()
                .all(|u| next.iter().any(|e| e.offset == u.offset)));
            // min.compaction.lag.ms: nothing younger than the lag goes.
            for e in &log {
                if e.timestamp_ms > now - policy.min_compaction_lag_ms {
                    prop_assert!(
                        next.iter().any(|n| n.offset == e.offset),
                        "young {e:?} removed"
                    );
                }
            }
            // Tombstones live delete.retention.ms past the pass that first kept them.
            for (e, v) in log.iter().zip(&verdicts) {
                if let Verdict::KeepUntil(_) = v {
                    first_kept.entry(e.offset).or_insert(now);
                }
                if e.tombstone
                    && *v == Verdict::Remove
                    && reference.get(&e.key.unwrap()) == Some(&None)
                {
                    let latest = original
                        .iter()
                        .rev()
                        .find(|o| o.key == e.key)
                        .map(|o| o.offset);
                    if latest == Some(e.offset) {
                        let since = first_kept.get(&e.offset).copied();
                        prop_assert!(
                            since.is_some_and(|t| now >= t + policy.delete_retention_ms),
                            "tombstone at {} removed at {now}, first kept at {since:?}",
                            e.offset
                        );
                    }
                }
            }
            // The latest value of every key survives, and deleted keys stay deleted.
            let compacted = latest_values(&next);
            for (k, want) in &reference {
                let got = compacted.get(k).copied().flatten();
                prop_assert_eq!(got, *want, "key {} after the pass at {}", k, now);
            }
            log = next;
        }
        Ok(())
    }

    fn policy(bugs: CompactionBugs) -> CleanPolicy {
        CleanPolicy {
            delete_retention_ms: 300,
            min_compaction_lag_ms: 100,
            bugs,
        }
    }

    proptest! {
        #![proptest_config(Config::with_cases(10_000))]
        #[test]
        fn compaction_keeps_kafkas_guarantees(ops in ops(), passes in passes()) {
            check(&ops, &passes, &policy(CompactionBugs::default()))?;
        }
    }

    /// A seeded bug must make the property fail on some generated log.
    fn caught(bugs: CompactionBugs) -> bool {
        let mut runner = TestRunner::new(Config::with_cases(2_000));
        runner
            .run(&(ops(), passes()), |(ops, passes)| {
                check(&ops, &passes, &policy(bugs))
            })
            .is_err()
    }

    #[test]
    fn seeded_keep_first_value_is_caught() {
        assert!(caught(CompactionBugs {
            keep_first_value: true,
            ..Default::default()
        }));
    }

    #[test]
    fn seeded_drop_tombstones_at_once_is_caught() {
        assert!(caught(CompactionBugs {
            drop_tombstones_at_once: true,
            ..Default::default()
        }));
    }

    #[test]
    fn seeded_ignore_compaction_lag_is_caught() {
        assert!(caught(CompactionBugs {
            ignore_compaction_lag: true,
            ..Default::default()
        }));
    }

    #[test]
    fn a_tombstone_goes_after_its_horizon_with_every_older_value() {
        let p = CleanPolicy::default();
        let e = |offset, key, tombstone| Entry {
            offset,
            key: Some(key),
            tombstone,
            timestamp_ms: 0,
            delete_horizon_ms: None,
        };
        let log = vec![
            e(0, 1u8, false),
            e(1, 2, false),
            e(2, 1, true),
            e(3, 2, false),
        ];
        let v = clean(&log, 4, 1_000, &p);
        assert_eq!(
            v,
            vec![
                Verdict::Remove,
                Verdict::Remove,
                Verdict::KeepUntil(1_000 + p.delete_retention_ms),
                Verdict::Keep
            ]
        );
        let log = apply(&log, &v);
        assert_eq!(
            clean(&log, 4, 1_000 + p.delete_retention_ms - 1, &p)[0],
            Verdict::Keep
        );
        assert_eq!(
            clean(&log, 4, 1_000 + p.delete_retention_ms, &p)[0],
            Verdict::Remove
        );
    }
}
