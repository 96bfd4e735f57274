//! A partition's registration in the cluster metadata and the controller's
//! rules for changing it: leader election, fencing, ISR changes.
//!
//! These are pure functions over [`PartitionRegistration`]; the controller
//! state machine applies them to committed metadata, and the replication
//! checker's controller actor calls the very same functions, so a rule exists
//! exactly once.

use crate::core::{LeaderEpoch, NodeId, PartitionEpoch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What the controller knows of one partition: Kafka's `PartitionRecord`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// Replica assignment, in preference order (the first is the preferred leader).
    pub replicas: Vec<NodeId>,
    /// In-sync replicas. Always non-empty: the last member is kept even when
    /// fenced, so that only it (or an unclean election) can lead again.
    pub isr: BTreeSet<NodeId>,
    /// `None` while no eligible replica is available.
    pub leader: Option<NodeId>,
    /// Bumped on every leader change.
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change to this registration.
    pub partition_epoch: PartitionEpoch,
}

/// The controller's election settings, plus seeded bugs for the checker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ElectionPolicy {
    /// Kafka's `unclean.leader.election.enable`: with no eligible ISR member,
    /// elect any live replica (and reset the ISR to it), accepting data loss.
    pub unclean_leader_election_enable: bool,
    pub bugs: ControllerBugs,
}

/// Known mistakes the checker must catch. All off in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ControllerBugs {
    /// Elect the first live replica in assignment order, ignoring the ISR,
    /// and leave the ISR as it was.
    pub elect_outside_isr: bool,
    /// Change the leader without bumping the leader epoch.
    pub reuse_leader_epoch: bool,
    /// Accept an ISR change carrying a stale partition epoch.
    pub accept_stale_partition_epoch: bool,
    /// Leave a fenced broker as leader.
    pub fence_keeps_leadership: bool,
}

/// A partition leader's request to change the ISR: Kafka's `AlterPartition`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub new_isr: BTreeSet<NodeId>,
}

/// Why the controller refused an ISR change (Kafka's error names).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlterPartitionError {
    /// The sender is not the leader, or not in the current leader epoch.
    FencedLeaderEpoch,
    /// The request was built from an older partition epoch.
    InvalidUpdateVersion,
    /// The new ISR names a replica that is not assigned, or is fenced, or
    /// leaves out the leader.
    IneligibleReplica,
    /// The request came from an earlier incarnation of the leader's broker.
    StaleBrokerEpoch,
}

impl PartitionRegistration {
    /// A new partition: every replica in sync, led by the first live one.
    pub fn new(replicas: Vec<NodeId>, is_live: impl Fn(NodeId) -> bool) -> Self {
        assert!(!replicas.is_empty(), "a partition has at least one replica");
        let isr: BTreeSet<NodeId> = replicas.iter().copied().collect();
        assert_eq!(isr.len(), replicas.len(), "replicas are distinct");
        let leader = replicas.iter().copied().find(|&r| is_live(r));
        Self {
            replicas,
            isr,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// The replica that should lead: the first in assignment order that is
    /// in the ISR and live. With none, an unclean election (if enabled)
    /// takes the first live replica. Returns the leader and whether the
    /// election was unclean.
    pub fn choose_leader(
        &self,
        is_live: impl Fn(NodeId) -> bool,
        policy: &ElectionPolicy,
    ) -> Option<(NodeId, bool)> {
        let first_live = || self.replicas.iter().copied().find(|&r| is_live(r));
        if policy.bugs.elect_outside_isr {
            return first_live().map(|r| (r, false));
        }
        let clean = self
            .replicas
            .iter()
            .copied()
            .find(|&r| self.isr.contains(&r) && is_live(r));
        match clean {
            Some(r) => Some((r, false)),
            None if policy.unclean_leader_election_enable => first_live().map(|r| (r, true)),
            None => None,
        }
    }

    /// Installs a new leader (or none), bumping the epochs.
    fn set_leader(&mut self, leader: Option<NodeId>, unclean: bool, policy: &ElectionPolicy) {
        if let Some(l) = leader {
            assert!(
                self.replicas.contains(&l),
                "leader must be an assigned replica"
            );
        }
        if leader != self.leader && !policy.bugs.reuse_leader_epoch {
            self.leader_epoch += 1;
        }
        if unclean {
            // An unclean leader is the only replica known to hold its log.
            self.isr = leader.into_iter().collect();
        }
        self.leader = leader;
        self.partition_epoch += 1;
    }

    /// Re-runs the election after `is_live` changed. Returns true if the
    /// registration changed. A live leader that is still eligible keeps leading.
    pub fn elect(&mut self, is_live: impl Fn(NodeId) -> bool, policy: &ElectionPolicy) -> bool {
        let current_ok = self
            .leader
            .is_some_and(|l| is_live(l) && self.isr.contains(&l));
        if current_ok {
            return false;
        }
        match self.choose_leader(&is_live, policy) {
            Some((l, unclean)) => {
                if Some(l) == self.leader {
                    return false;
                }
                self.set_leader(Some(l), unclean, policy);
                true
            }
            None if self.leader.is_some() => {
                self.set_leader(None, false, policy);
                true
            }
            None => false,
        }
    }

    /// The broker stopped (session expired, shut down, or restarted as a new
    /// incarnation): drop it from the ISR unless it is the last member, and
    /// move leadership away from it. Returns true if anything changed.
    pub fn fence_broker(
        &mut self,
        broker: NodeId,
        is_live: impl Fn(NodeId) -> bool,
        policy: &ElectionPolicy,
    ) -> bool {
        let live = |r: NodeId| r != broker && is_live(r);
        let mut changed = false;
        if self.isr.len() > 1 && self.isr.contains(&broker) {
            self.isr.remove(&broker);
            changed = true;
        }
        if self.leader == Some(broker) && !policy.bugs.fence_keeps_leadership {
            // Leaving the leader in place would let it serve while fenced.
            let next = self.choose_leader(live, policy);
            let (leader, unclean) = next.map_or((None, false), |(l, u)| (Some(l), u));
            self.set_leader(leader, unclean, policy);
            return true;
        }
        if changed {
            self.partition_epoch += 1;
        }
        changed
    }

    /// Validates and applies a leader's ISR change. On success the partition
    /// epoch is bumped and the caller answers with the new registration.
    pub fn alter_partition(
        &mut self,
        request: &AlterPartitionRequest,
        is_live: impl Fn(NodeId) -> bool,
        policy: &ElectionPolicy,
    ) -> Result<(), AlterPartitionError> {
        if self.leader != Some(request.leader) || self.leader_epoch != request.leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        let stale = request.partition_epoch != self.partition_epoch;
        if stale && !policy.bugs.accept_stale_partition_epoch {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        let assigned = request.new_isr.iter().all(|r| self.replicas.contains(r));
        let additions_live = request
            .new_isr
            .iter()
            .all(|&r| self.isr.contains(&r) || is_live(r));
        if !assigned || !additions_live || !request.new_isr.contains(&request.leader) {
            return Err(AlterPartitionError::IneligibleReplica);
        }
        self.isr = request.new_isr.clone();
        self.partition_epoch += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> PartitionRegistration {
        PartitionRegistration::new(vec![2, 0, 1], |_| true)
    }

    #[test]
    fn fencing_the_leader_elects_next_in_isr_and_bumps_epochs() {
        let mut p = reg();
        assert_eq!(p.leader, Some(2));
        assert!(p.fence_broker(2, |b| b != 2, &ElectionPolicy::default()));
        assert_eq!(p.leader, Some(0));
        assert_eq!(p.isr, BTreeSet::from([0, 1]));
        assert_eq!((p.leader_epoch, p.partition_epoch), (1, 1));
    }

    #[test]
    fn last_isr_member_is_kept_and_partition_goes_leaderless() {
        let mut p = PartitionRegistration::new(vec![0], |_| true);
        assert!(p.fence_broker(0, |_| false, &ElectionPolicy::default()));
        assert_eq!(p.leader, None);
        assert_eq!(p.isr, BTreeSet::from([0]));
        assert!(p.elect(|_| true, &ElectionPolicy::default()));
        assert_eq!(p.leader, Some(0));
    }

    #[test]
    fn unclean_election_only_when_enabled() {
        let mut p = reg();
        p.isr = BTreeSet::from([2]);
        let clean = ElectionPolicy::default();
        assert!(p.fence_broker(2, |b| b != 2, &clean));
        assert_eq!(p.leader, None);
        let unclean = ElectionPolicy {
            unclean_leader_election_enable: true,
            ..clean
        };
        assert!(p.elect(|b| b != 2, &unclean));
        assert_eq!(p.leader, Some(0));
        assert_eq!(p.isr, BTreeSet::from([0]));
    }

    #[test]
    fn stale_isr_change_is_rejected() {
        let mut p = reg();
        let req = AlterPartitionRequest {
            leader: 2,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: BTreeSet::from([2, 0]),
        };
        let policy = ElectionPolicy::default();
        assert_eq!(p.alter_partition(&req, |_| true, &policy), Ok(()));
        assert_eq!(
            p.alter_partition(&req, |_| true, &policy),
            Err(AlterPartitionError::InvalidUpdateVersion)
        );
        let not_leader = AlterPartitionRequest { leader: 0, ..req };
        assert_eq!(
            p.alter_partition(&not_leader, |_| true, &policy),
            Err(AlterPartitionError::FencedLeaderEpoch)
        );
    }
}
