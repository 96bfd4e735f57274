//! `runnel consumer-groups` (kafka-consumer-groups.sh): list groups, describe
//! a group's offsets and lag in Kafka's column layout, reset offsets of an
//! inactive group, delete groups.

use super::group_member::{
    coordinator_moved, decode_assignment, find_coordinator, offset_commit_request,
    COORDINATOR_ATTEMPTS_MAX, COORDINATOR_LOAD_IN_PROGRESS, RETRY_BACKOFF_MS,
};
use crate::client::Client;
use anyhow::{bail, Result};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Every group of the cluster: ListGroups goes to each broker (each lists
/// the groups it coordinates). Returns (group, state).
pub async fn all_groups(client: &mut Client) -> Result<BTreeMap<String, String>> {
    let brokers: Vec<String> = client
        .metadata
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host, b.port))
        .collect();
    let mut groups = BTreeMap::new();
    for address in brokers {
        // A broker still loading an offsets partition lists only part of
        // its groups: ask again, as Kafka's admin client does.
        let mut answer = None;
        for _ in 0..COORDINATOR_ATTEMPTS_MAX {
            let Ok(r) = client
                .call_at(&address, &ListGroupsRequest::default(), 4)
                .await
            else {
                break; // a broker that is down coordinates nothing now
            };
            let loading = r.error_code == COORDINATOR_LOAD_IN_PROGRESS;
            answer = Some(r);
            if !loading {
                break;
            }
            tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
        }
        let Some(r) = answer else { continue };
        for g in r.groups {
            groups.insert(g.group_id.0.to_string(), g.group_state.to_string());
        }
    }
    Ok(groups)
}

pub async fn list(bootstrap: &str, with_state: bool) -> Result<()> {
    let mut client = Client::connect(bootstrap).await?;
    let groups = all_groups(&mut client).await?;
    if !with_state {
        for g in groups.keys() {
            println!("{g}");
        }
        return Ok(());
    }
    let width = groups.keys().map(|g| g.len()).max().unwrap_or(0).max(15);
    println!("{:width$} STATE", "GROUP");
    for (g, state) in groups {
        println!("{g:width$} {state}");
    }
    Ok(())
}

/// One row of `--describe`.
struct Row {
    topic: String,
    partition: i32,
    current: Option<i64>,
    log_end: Option<i64>,
    consumer_id: String,
    host: String,
    client_id: String,
}

struct GroupInfo {
    state: String,
    /// (topic, partition) → (member id, host, client id)
    owners: BTreeMap<(String, i32), (String, String, String)>,
    committed: BTreeMap<(String, i32), i64>,
}

/// A group's state, members and offsets from its coordinator, looked for
/// again while it moves or loads.
async fn group_info(client: &mut Client, group: &str) -> Result<GroupInfo> {
    let mut last = 0;
    for _ in 0..COORDINATOR_ATTEMPTS_MAX {
        match group_info_once(client, group).await? {
            Ok(info) => return Ok(info),
            Err(code) if coordinator_moved(code) => last = code,
            Err(code) => bail!("{group}: error {code}"),
        }
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
    }
    bail!("{group}: error {last} from every coordinator tried")
}

/// One try of [`group_info`]; the inner error is a group-level error code.
async fn group_info_once(
    client: &mut Client,
    group: &str,
) -> Result<std::result::Result<GroupInfo, i16>> {
    let coordinator = find_coordinator(client, group).await?;
    let d = client
        .call_at(
            &coordinator,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
            5,
        )
        .await?;
    let Some(g) = d.groups.into_iter().next() else {
        bail!("DescribeGroups: no answer for {group}");
    };
    if g.error_code != 0 {
        return Ok(Err(g.error_code));
    }
    let mut owners = BTreeMap::new();
    for m in &g.members {
        for (t, ps) in decode_assignment(&m.member_assignment).unwrap_or_default() {
            for p in ps {
                owners.insert(
                    (t.clone(), p),
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }
    let f = client
        .call_at(
            &coordinator,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None),
            7,
        )
        .await?;
    if f.error_code != 0 {
        return Ok(Err(f.error_code));
    }
    let committed = f
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.committed_offset >= 0)
                .map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    )
                })
        })
        .collect();
    Ok(Ok(GroupInfo {
        state: g.group_state.to_string(),
        owners,
        committed,
    }))
}

/// Offsets of the given partitions at `timestamp` (-1: log end = high
/// watermark, -2: log start); partitions without an answer are left out.
async fn offsets_at(
    client: &mut Client,
    partitions: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> BTreeMap<(String, i32), i64> {
    let topics: Vec<String> = partitions
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let _ = client.refresh(Some(&topics)).await;
    let mut out = BTreeMap::new();
    for (t, p) in partitions {
        if let Ok(o) = client.list_offset(t, *p, timestamp).await {
            out.insert((t.clone(), *p), o);
        }
    }
    out
}

fn dash(v: Option<i64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub async fn describe(bootstrap: &str, group: &str) -> Result<()> {
    let mut client = Client::connect(bootstrap).await?;
    let info = group_info(&mut client, group).await?;
    if info.state == "Dead" && info.committed.is_empty() {
        bail!("Consumer group '{group}' does not exist.");
    }
    let mut keys: BTreeSet<(String, i32)> = info.committed.keys().cloned().collect();
    keys.extend(info.owners.keys().cloned());
    let ends = offsets_at(&mut client, &keys, -1).await;
    let rows: Vec<Row> = keys
        .iter()
        .map(|k| {
            let (consumer_id, host, client_id) =
                info.owners
                    .get(k)
                    .cloned()
                    .unwrap_or(("-".into(), "-".into(), "-".into()));
            Row {
                topic: k.0.clone(),
                partition: k.1,
                current: info.committed.get(k).copied(),
                log_end: ends.get(k).copied(),
                consumer_id,
                host,
                client_id,
            }
        })
        .collect();
    println!();
    if info.owners.is_empty() {
        println!("Consumer group '{group}' has no active members.");
        println!();
    }
    let w = |f: &dyn Fn(&Row) -> usize, title: &str| {
        rows.iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .max(title.len())
            .max(15)
    };
    let gw = group.len().max(15);
    let tw = w(&|r| r.topic.len(), "TOPIC");
    let cw = w(&|r| r.consumer_id.len(), "CONSUMER-ID");
    let hw = w(&|r| r.host.len(), "HOST");
    println!(
        "{:gw$} {:tw$} {:<10} {:15} {:15} {:15} {:cw$} {:hw$} CLIENT-ID",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
    );
    for r in &rows {
        let lag = match (r.current, r.log_end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        println!(
            "{:gw$} {:tw$} {:<10} {:15} {:15} {:15} {:cw$} {:hw$} {}",
            group,
            r.topic,
            r.partition,
            dash(r.current),
            dash(r.log_end),
            dash(lag),
            r.consumer_id,
            r.host,
            r.client_id
        );
    }
    Ok(())
}

pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
}

pub async fn reset_offsets(
    bootstrap: &str,
    group: &str,
    topic: Option<&str>,
    to: ResetTo,
    execute: bool,
) -> Result<()> {
    let mut client = Client::connect(bootstrap).await?;
    let info = group_info(&mut client, group).await?;
    if !matches!(info.state.as_str(), "Empty" | "Dead") {
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
            info.state
        );
    }
    let topics: Vec<String> = match topic {
        Some(t) => vec![t.to_string()],
        None => info
            .committed
            .keys()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    if topics.is_empty() {
        bail!("one of --topic or --all-topics is needed (the group has no offsets)");
    }
    client.refresh(Some(&topics)).await?;
    let mut keys = BTreeSet::new();
    for t in &topics {
        let Some(ps) = client.partitions(t) else {
            bail!("topic {t} does not exist");
        };
        keys.extend(ps.into_iter().map(|p| (t.clone(), p)));
    }
    let ends = offsets_at(&mut client, &keys, -1).await;
    let starts = offsets_at(&mut client, &keys, -2).await;
    let mut plan = BTreeMap::new();
    for k in &keys {
        let (lo, hi) = (
            starts.get(k).copied().unwrap_or(0),
            ends.get(k).copied().unwrap_or(0),
        );
        let target = match to {
            ResetTo::Earliest => lo,
            ResetTo::Latest => hi,
            ResetTo::Offset(o) => o,
            ResetTo::ShiftBy(d) => info.committed.get(k).copied().unwrap_or(hi) + d,
        };
        // Kafka clamps to the log's range.
        plan.insert(k.clone(), target.clamp(lo, hi.max(lo)));
    }
    let gw = group.len().max(15);
    let tw = keys.iter().map(|(t, _)| t.len()).max().unwrap_or(0).max(15);
    println!();
    println!(
        "{:gw$} {:tw$} {:<10} NEW-OFFSET",
        "GROUP", "TOPIC", "PARTITION"
    );
    for ((t, p), o) in &plan {
        println!("{group:gw$} {t:tw$} {p:<10} {o}");
    }
    if !execute {
        return Ok(());
    }
    let request = offset_commit_request(group, -1, "", &plan);
    let coordinator = find_coordinator(&mut client, group).await?;
    let r = client.call_at(&coordinator, &request, 7).await?;
    let failed: Vec<i16> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .filter(|c| *c != 0)
        .collect();
    if let Some(c) = failed.first() {
        bail!("resetting the offsets of {group} failed: error {c}");
    }
    Ok(())
}

pub async fn delete(bootstrap: &str, groups: &[String]) -> Result<()> {
    let mut client = Client::connect(bootstrap).await?;
    let mut failures = Vec::new();
    for g in groups {
        let coordinator = find_coordinator(&mut client, g).await?;
        let r = client
            .call_at(
                &coordinator,
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(g))]),
                2,
            )
            .await?;
        let code = r.results.first().map_or(-1, |x| x.error_code);
        match code {
            0 => {}
            68 => failures.push(format!(
                "* Group '{g}' could not be deleted due to: The group is not empty."
            )),
            69 => failures.push(format!(
                "* Group '{g}' could not be deleted due to: The group id does not exist."
            )),
            c => failures.push(format!(
                "* Group '{g}' could not be deleted due to: error {c}"
            )),
        }
    }
    if failures.is_empty() {
        let names: Vec<String> = groups.iter().map(|g| format!("'{g}'")).collect();
        println!(
            "Deletion of requested consumer groups ({}) was successful.",
            names.join(", ")
        );
        return Ok(());
    }
    bail!(
        "Deletion of some consumer groups failed:\n{}",
        failures.join("\n")
    )
}
