//! The Runnel node: the runtime that drives `runnel-model`'s state machines
//! over real sockets, disks and clocks, the Kafka front end, and the
//! command-line tools' client.

pub mod cli;
pub mod client;
pub mod config;
pub mod io;
pub mod kafka;
pub mod limits;
pub mod partition_runner;
pub mod runtime;
pub mod storage;
pub mod wire;
