//! `runnel quorum status`: each coordinator's mode, epoch, commit offset and
//! lag, like `zkServer.sh status` and `kafka-metadata-quorum.sh describe --status`.

use crate::runtime::messages::{PeerMessage, QuorumStatus};
use crate::runtime::transport;
use crate::wire::{LinkIdentity, LinkRole};
use anyhow::Result;
use std::time::Duration;

/// How a tool introduces itself on an internal listener: as a tool, which
/// proves no secret and may only ask for status (tool ids start at
/// 2,000,000,000 so logs tell them from nodes).
pub fn tool_handshake(cluster_id: &str) -> LinkIdentity {
    LinkIdentity {
        cluster_id: cluster_id.to_string(),
        node_id: 2_000_000_000 + std::process::id() % 100_000_000,
        role: LinkRole::Tool,
        secret: Default::default(),
    }
}

/// Asks one coordinator's status on `link`.
pub async fn ask_status_on(link: &mut transport::ToolLink) -> Result<QuorumStatus, String> {
    match link.ask(&PeerMessage::StatusRequest).await? {
        PeerMessage::StatusResponse(s) => Ok(s),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// One coordinator's status, on a fresh connection.
pub async fn ask_status(
    address: &str,
    cluster_id: &str,
    timeout: Duration,
) -> Result<QuorumStatus, String> {
    let work = async {
        let mut link = transport::ToolLink::connect(address, tool_handshake(cluster_id)).await?;
        ask_status_on(&mut link).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "timed out".to_string())?
}

pub async fn status(servers: &str, cluster_id: &str) -> Result<bool> {
    let mut statuses: Vec<QuorumStatus> = Vec::new();
    for address in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match ask_status(address, cluster_id, Duration::from_secs(3)).await {
            Ok(s) => {
                println!(
                    "{address}\tnode {}\tMode: {}\tepoch: {}\tcommit offset: {}\tlog end offset: {}\tmetadata log fsyncs: {}\tfsyncs: {}",
                    display_id(s.node_id), s.mode, s.epoch, s.commit_offset, s.log_end_offset,
                    s.metadata_log_fsyncs, s.fsyncs
                );
                statuses.push(s);
            }
            Err(e) if e.starts_with("unexpected answer") => println!("{address}\t{e}"),
            Err(_) => println!("{address}\tError contacting service. It is probably not running."),
        }
    }
    let Some(leader) = statuses.iter().find(|s| s.mode == "leader") else {
        println!("No leader among the coordinators reached.");
        return Ok(false);
    };
    println!("LeaderId:\t{}", display_id(leader.node_id));
    println!("LeaderEpoch:\t{}", leader.epoch);
    println!("HighWatermark:\t{}", leader.commit_offset);
    let lags: Vec<String> = leader
        .followers
        .iter()
        .map(|(id, end)| {
            format!(
                "{}: lag {}",
                display_id(*id),
                leader.log_end_offset.saturating_sub(*end)
            )
        })
        .collect();
    println!("FollowerLag:\t[{}]", lags.join(", "));
    Ok(true)
}

/// ZooKeeper-style coordinators show their `myid`.
fn display_id(id: u32) -> String {
    use crate::runtime::settings::ZOO_ID_BASE;
    if id > ZOO_ID_BASE && id < ZOO_ID_BASE + 1000 {
        format!("{} (myid {})", id, id - ZOO_ID_BASE)
    } else {
        id.to_string()
    }
}
