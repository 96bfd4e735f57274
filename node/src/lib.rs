//! The Runnel node: the runtime that drives `runnel-model`'s state machines
//! over real sockets, disks and clocks.

pub mod config;
pub mod partition_runner;
pub mod storage;
pub mod wire;
