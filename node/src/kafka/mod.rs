//! The Kafka wire protocol front end (decoding and encoding by the
//! `kafka-protocol` crate): connections, the version table, and handlers.

pub mod access;
pub mod acls;
pub mod batch_check;
pub mod code;
pub mod configs;
pub mod delete_records;
pub mod fetch_encode;
pub mod groups;
pub mod handlers;
pub mod server;
pub mod unsupported;
pub mod versions;
