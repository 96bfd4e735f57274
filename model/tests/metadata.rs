//! Model checks of controller decisions through the metadata quorum: a
//! decision commits whole or not at all across leader changes and crashes,
//! a re-sent request is carried out once, and its every answer is the first
//! decision's. Each property's seeded bug is caught.

#[path = "support/metadata_model.rs"]
mod metadata_model;
mod support;

use metadata_model::{MetadataBugs, MetadataModel, ALWAYS, SOMETIMES};
use stateright::HasDiscoveries;
use support::{check, set};

fn depth_from_env(default: usize) -> usize {
    std::env::var("RUNNEL_CHECK_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(default)
}

#[test]
fn decisions_are_atomic_and_decided_once() {
    let run = check(
        "metadata/create-topic",
        MetadataModel::create_topic(),
        depth_from_env(20),
        HasDiscoveries::AnyFailures,
    );
    run.assert_holds(ALWAYS);
}

#[test]
fn producer_id_blocks_are_decided_once() {
    let run = check(
        "metadata/producer-ids",
        MetadataModel::allocate_producer_ids(),
        depth_from_env(16),
        HasDiscoveries::AnyFailures,
    );
    run.assert_holds(ALWAYS);
}

#[test]
fn metadata_examples_are_reached() {
    let run = check(
        "metadata/examples",
        MetadataModel::create_topic(),
        20,
        HasDiscoveries::AllOf(set(SOMETIMES)),
    );
    run.assert_holds(ALWAYS);
    run.assert_reached(SOMETIMES);
}

// ----- seeded bugs: each must be caught -------------------------------------

fn caught(name: &str, model: MetadataModel, property: &'static str) {
    let run = check(name, model, 30, HasDiscoveries::AnyOf(set(&[property])));
    run.assert_caught(property);
}

#[test]
fn seeded_per_record_entries_are_caught() {
    let model = MetadataModel {
        bugs: MetadataBugs {
            per_record_entries: true,
            ..Default::default()
        },
        ..MetadataModel::create_topic()
    };
    caught("bug/per-record-entries", model, "DecisionAtomicity");
}

#[test]
fn seeded_decide_resent_requests_is_caught() {
    let model = MetadataModel {
        bugs: MetadataBugs {
            decide_resent_requests: true,
            ..Default::default()
        },
        ..MetadataModel::create_topic()
    };
    caught(
        "bug/decide-resent-requests",
        model,
        "AnswerIsTheFirstDecision",
    );
}

#[test]
fn seeded_decide_resent_producer_ids_is_caught() {
    let model = MetadataModel {
        bugs: MetadataBugs {
            decide_resent_requests: true,
            ..Default::default()
        },
        ..MetadataModel::allocate_producer_ids()
    };
    caught(
        "bug/decide-resent-producer-ids",
        model,
        "RequestAppliedOnce",
    );
}
