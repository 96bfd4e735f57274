//! Producer ids are unique cluster-wide, by construction: random histories
//! of brokers asking for blocks, handing out ids, restarting (new broker
//! epochs), and controllers failing over (uncommitted decisions lost, the
//! next controller deciding from the committed metadata) never give one id
//! to two producers. The seeded bug (broker-local allocation, the earlier
//! scheme) must be caught.

use proptest::prelude::*;
use runnel_model::controller::{Controller, ControllerRequest, MetadataImage, MetadataRecord};
use runnel_model::producer_ids::{BrokerProducerIds, ProducerIdBugs};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    /// Broker b (re)starts and registers: a new incarnation.
    Restart(u32),
    /// A producer asks broker b for an id (and b asks for a block if it wants one).
    InitProducerId(u32),
    /// The controller's pending decisions commit; their answers arrive.
    Commit,
    /// The active controller fails over: uncommitted decisions are lost.
    Failover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..3u32).prop_map(Op::Restart),
        12 => (0..3u32).prop_map(Op::InitProducerId),
        4 => Just(Op::Commit),
        1 => Just(Op::Failover),
    ]
}

struct Cluster {
    controller: Controller,
    /// Committed metadata.
    image: MetadataImage,
    /// The active controller's view: committed plus its pending decisions.
    leader_image: MetadataImage,
    pending: Vec<(u32, Vec<MetadataRecord>)>,
    brokers: BTreeMap<u32, BrokerProducerIds>,
    /// Every id handed out, and to whom (broker, broker epoch).
    handed_out: BTreeMap<u64, (u32, u64)>,
}

impl Cluster {
    fn new(bugs: ProducerIdBugs) -> Cluster {
        let mut c = Cluster {
            controller: Controller::default(),
            image: MetadataImage::default(),
            leader_image: MetadataImage::default(),
            pending: Vec::new(),
            brokers: (0..3).map(|b| (b, BrokerProducerIds::new(bugs))).collect(),
            handed_out: BTreeMap::new(),
        };
        for b in 0..3 {
            c.register(b);
        }
        c
    }

    /// Decides, proposes and commits at once (registration is not the
    /// subject here).
    fn register(&mut self, b: u32) {
        let request = ControllerRequest::RegisterBroker {
            broker: b,
            endpoint: String::new(),
            internal_endpoint: String::new(),
        };
        self.commit();
        let records = self.controller.decide(&self.image, &request).unwrap();
        for r in &records {
            self.image.apply(r);
        }
        self.leader_image = self.image.clone();
        let epoch = self.image.brokers[&b].epoch;
        self.brokers.get_mut(&b).unwrap().on_registered(epoch);
    }

    fn commit(&mut self) {
        for (b, records) in std::mem::take(&mut self.pending) {
            for r in &records {
                self.image.apply(r);
            }
            let block = records
                .iter()
                .find_map(Controller::producer_id_block)
                .filter(|(broker, _)| *broker == b)
                .map(|(_, block)| block);
            // The answer reaches the broker's current incarnation only if
            // it asked: a restarted broker asked nothing yet.
            let broker = self.brokers.get_mut(&b).unwrap();
            if let Some(MetadataRecord::ProducerIds { broker_epoch, .. }) = records.first() {
                if *broker_epoch == self.image.brokers[&b].epoch {
                    broker.on_block(block);
                }
            }
        }
        self.leader_image = self.image.clone();
    }

    fn init_producer_id(&mut self, b: u32) -> Result<(), String> {
        let epoch = self.image.brokers[&b].epoch;
        let broker = self.brokers.get_mut(&b).unwrap();
        if let Some(id) = broker.next_id() {
            if let Some(earlier) = self.handed_out.insert(id, (b, epoch)) {
                return Err(format!(
                    "producer id {id} given by broker {b} (epoch {epoch}) and before by {earlier:?}"
                ));
            }
        }
        if broker.wants_block() {
            let request = ControllerRequest::AllocateProducerIds {
                broker: b,
                broker_epoch: epoch,
            };
            let decided = self.controller.decide(&self.leader_image, &request);
            broker.on_request(decided.is_ok());
            if let Ok(records) = decided {
                for r in &records {
                    self.leader_image.apply(r);
                }
                self.pending.push((b, records));
            }
        }
        Ok(())
    }

    fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for op in ops {
            match op {
                Op::Restart(b) => self.register(*b),
                Op::InitProducerId(b) => self.init_producer_id(*b)?,
                Op::Commit => self.commit(),
                Op::Failover => {
                    // Lost decisions: their brokers ask again.
                    for (b, _) in std::mem::take(&mut self.pending) {
                        self.brokers.get_mut(&b).unwrap().on_block(None);
                    }
                    self.leader_image = self.image.clone();
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn producer_ids_are_unique_cluster_wide(ops in prop::collection::vec(op(), 1..400)) {
        let mut c = Cluster::new(ProducerIdBugs::default());
        prop_assert_eq!(c.run(&ops), Ok(()));
    }
}

/// The earlier broker-local scheme (`epoch << bits | counter`, here with a
/// 3-bit counter so the wrap-around comes within a few calls) is caught.
#[test]
fn seeded_broker_local_allocation_is_caught() {
    let bugs = ProducerIdBugs {
        broker_local: Some(3),
    };
    let found = proptest::test_runner::TestRunner::default().run(
        &prop::collection::vec(op(), 1..400),
        |ops| {
            let mut c = Cluster::new(bugs);
            prop_assert_eq!(c.run(&ops), Ok(()));
            Ok(())
        },
    );
    assert!(found.is_err(), "duplicate producer ids were not found");
}

/// A thousand blocks later the ids are still unique and dense: each block
/// starts where the last ended, across failovers.
#[test]
fn blocks_continue_across_failovers() {
    let mut c = Cluster::new(ProducerIdBugs::default());
    let mut ops = Vec::new();
    for i in 0..3_000 {
        ops.push(Op::InitProducerId(i % 3));
        if i % 7 == 0 {
            ops.push(Op::Commit);
        }
        if i % 500 == 0 {
            ops.push(Op::Failover);
        }
    }
    c.run(&ops).unwrap();
    assert!(c.handed_out.len() > 2_500, "{}", c.handed_out.len());
}
