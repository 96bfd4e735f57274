//! The command-line tools, mirroring Kafka's and ZooKeeper's scripts and
//! their options: topics, configs, ACLs, console producer and consumer,
//! delete-records, quorum status, and
//! `dev` (a local three-node cluster in one command).

pub mod acls;
pub mod configs;
pub mod console;
pub mod consumer_groups;
pub mod delete_records;
pub mod dev;
pub mod group_member;
pub mod quorum;
pub mod topics;

/// Parses `k=v` options (`--property`, `--config`, `--producer-property`).
pub fn key_values(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("{p:?}: expected key=value"))
        })
        .collect()
}
