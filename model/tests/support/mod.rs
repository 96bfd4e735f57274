//! Shared helpers for the stateright checks: run a model, print its figures,
//! and assert what must (and must not) be discovered.

use stateright::{Checker, HasDiscoveries, Model};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Figures of one checker run, printed for the spec's table.
pub struct Run<M: Model> {
    pub name: String,
    pub unique_states: usize,
    pub total_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    pub discoveries: BTreeSet<&'static str>,
    pub traces: Vec<(&'static str, String)>,
    _model: std::marker::PhantomData<M>,
}

/// Breadth-first check on 2 threads, stopping early once `stop_when` holds.
pub fn check<M>(name: &str, model: M, max_depth: usize, stop_when: HasDiscoveries) -> Run<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq + Send + Sync + 'static,
{
    // One checker at a time: each uses both cores and GBs of memory, and the
    // test harness would otherwise run them side by side.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let start = Instant::now();
    let mut builder = model.checker().threads(2).finish_when(stop_when);
    if max_depth > 0 {
        builder = builder.target_max_depth(max_depth);
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = start.elapsed();
    let discoveries = checker.discoveries();
    let mut traces = Vec::new();
    for (prop, path) in &discoveries {
        let actions: Vec<String> = path
            .clone()
            .into_actions()
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        traces.push((*prop, actions.join("\n    ")));
    }
    let run = Run {
        name: name.to_string(),
        unique_states: checker.unique_state_count(),
        total_states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        discoveries: discoveries.keys().copied().collect(),
        traces,
        _model: std::marker::PhantomData,
    };
    println!(
        "[check] {}: {} unique states ({} total), depth {}, {:.1?}; discoveries: {:?}",
        run.name, run.unique_states, run.total_states, run.max_depth, run.elapsed, run.discoveries
    );
    run
}

impl<M: Model> Run<M> {
    pub fn trace(&self, prop: &str) -> Option<&str> {
        self.traces
            .iter()
            .find(|(p, _)| *p == prop)
            .map(|(_, t)| t.as_str())
    }

    /// Fails if any of `always` was violated; prints the counterexample.
    pub fn assert_holds(&self, always: &[&str]) {
        for prop in always {
            if let Some(trace) = self.trace(prop) {
                panic!("{}: property {prop} violated:\n    {trace}", self.name);
            }
        }
    }

    /// Fails unless every `sometimes` example was found (no vacuous pass).
    pub fn assert_reached(&self, sometimes: &[&str]) {
        for prop in sometimes {
            assert!(
                self.discoveries.contains(prop),
                "{}: {prop} never reached",
                self.name
            );
        }
    }

    /// Fails unless the checker caught `prop`; prints the counterexample.
    pub fn assert_caught(&self, prop: &str) {
        let trace = self.trace(prop).unwrap_or_else(|| {
            panic!(
                "{}: seeded bug NOT caught by {prop} ({} states)",
                self.name, self.unique_states
            )
        });
        println!("[caught] {} by {prop}:\n    {trace}", self.name);
    }
}

pub fn set(props: &[&'static str]) -> BTreeSet<&'static str> {
    props.iter().copied().collect()
}
