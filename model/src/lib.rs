//! Runnel's protocols as deterministic, sans-IO state machines.
//!
//! This crate is the single source of truth for every protocol rule: who may
//! lead, when the high watermark may move, when a replica may join the ISR.
//! The node (`runnel`) drives these state machines over real sockets, disks and
//! clocks; the model checker (stateright, test-only) drives the very same code
//! over a simulated network.
//!
//! The contract every protocol follows lives in [`core`]: inputs are a message
//! from a peer, a timer firing, a client request or a persistence completion;
//! outputs are [`core::Effect`]s. Nothing in this crate reads a clock, draws a
//! random number, spawns a task or touches a file or socket.

pub mod acl;
pub mod compaction;
pub mod controller;
pub mod core;
pub mod group;
pub mod idempotence;
pub mod log;
pub mod partition;
pub mod producer_ids;
pub mod quorum;
pub mod replication;
