//! `runnel acls`: Kafka's `kafka-acls.sh` (`--add`, `--remove`, `--list`)
//! over CreateAcls, DeleteAcls and DescribeAcls, with its options and its
//! output layout. One binding per resource × principal × host × operation,
//! as Kafka's tool expands them.

use crate::client::Client;
use anyhow::{bail, Result};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use runnel_model::acl::{Operation, CLUSTER_RESOURCE_NAME};

/// The versions sent (v1 carries the pattern type, KIP-290).
const VERSION: i16 = 1;

pub struct AclsArgs {
    pub bootstrap: String,
    pub add: bool,
    pub remove: bool,
    pub list: bool,
    pub allow_principals: Vec<String>,
    pub deny_principals: Vec<String>,
    pub allow_hosts: Vec<String>,
    pub deny_hosts: Vec<String>,
    pub operations: Vec<String>,
    pub topics: Vec<String>,
    pub groups: Vec<String>,
    pub cluster: bool,
    pub transactional_ids: Vec<String>,
    /// literal (default), prefixed; for --list and --remove also any, match.
    pub pattern_type: String,
    /// --list: only this principal's ACLs.
    pub principal: Option<String>,
}

/// (resource type code, name) of every resource named on the command line.
fn resources(a: &AclsArgs) -> Vec<(i8, String)> {
    let mut out: Vec<(i8, String)> = Vec::new();
    out.extend(a.topics.iter().map(|t| (2, t.clone())));
    out.extend(a.groups.iter().map(|g| (3, g.clone())));
    if a.cluster {
        out.push((4, CLUSTER_RESOURCE_NAME.to_string()));
    }
    out.extend(a.transactional_ids.iter().map(|t| (5, t.clone())));
    out
}

fn pattern_code(name: &str) -> Result<i8> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "any" => 1,
        "match" => 2,
        "literal" => 3,
        "prefixed" => 4,
        other => bail!("unknown --resource-pattern-type {other:?}"),
    })
}

/// Kafka's operation names (`--operation Read`, `DescribeConfigs`, ...).
fn operation_code(name: &str) -> Result<i8> {
    let wanted = name.replace(['-', '_'], "").to_ascii_lowercase();
    (2..=14)
        .filter_map(Operation::from_code)
        .find(|op| format!("{op:?}").to_ascii_lowercase() == wanted)
        .map(Operation::code)
        .ok_or_else(|| anyhow::anyhow!("unknown --operation {name:?}"))
}

/// Kafka's upper-case names, as its tool prints them.
fn operation_name(code: i8) -> String {
    Operation::from_code(code)
        .map_or_else(|| code.to_string(), |op| upper_snake(&format!("{op:?}")))
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn resource_type_name(code: i8) -> &'static str {
    match code {
        2 => "TOPIC",
        3 => "GROUP",
        4 => "CLUSTER",
        5 => "TRANSACTIONAL_ID",
        6 => "DELEGATION_TOKEN",
        7 => "USER",
        _ => "UNKNOWN",
    }
}

fn pattern_name(code: i8) -> &'static str {
    match code {
        3 => "LITERAL",
        4 => "PREFIXED",
        _ => "UNKNOWN",
    }
}

/// (principal, host, permission code) of every entry the options name.
fn entries(a: &AclsArgs) -> Vec<(String, String, i8)> {
    let hosts = |given: &[String]| -> Vec<String> {
        if given.is_empty() {
            vec!["*".to_string()]
        } else {
            given.to_vec()
        }
    };
    let mut out = Vec::new();
    for p in &a.allow_principals {
        for h in hosts(&a.allow_hosts) {
            out.push((p.clone(), h, 3));
        }
    }
    for p in &a.deny_principals {
        for h in hosts(&a.deny_hosts) {
            out.push((p.clone(), h, 2));
        }
    }
    out
}

fn operations(a: &AclsArgs) -> Result<Vec<i8>> {
    if a.operations.is_empty() {
        return Ok(vec![Operation::All.code()]);
    }
    a.operations.iter().map(|o| operation_code(o)).collect()
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub async fn run(a: AclsArgs) -> Result<()> {
    let actions = [a.add, a.remove, a.list].iter().filter(|x| **x).count();
    if actions != 1 {
        bail!("exactly one of --add, --remove, --list is required");
    }
    let mut client = Client::connect(&a.bootstrap).await?;
    if a.list {
        return list(&mut client, &a).await;
    }
    let resources = resources(&a);
    if resources.is_empty() {
        bail!("one of --topic, --group, --cluster, --transactional-id is required");
    }
    let pattern = pattern_code(&a.pattern_type)?;
    let entries = entries(&a);
    if entries.is_empty() && a.add {
        bail!("--allow-principal or --deny-principal is required");
    }
    if entries.is_empty() {
        // Kafka's tool: --remove naming no principal removes every ACL of
        // the resources.
        return remove(&mut client, &resources, &[], &[], pattern).await;
    }
    let operations = operations(&a)?;
    if a.add {
        add(&mut client, &resources, &entries, &operations, pattern).await
    } else {
        remove(&mut client, &resources, &entries, &operations, pattern).await
    }
}

async fn add(
    client: &mut Client,
    resources: &[(i8, String)],
    entries: &[(String, String, i8)],
    operations: &[i8],
    pattern: i8,
) -> Result<()> {
    let mut creations = Vec::new();
    for (resource_type, name) in resources {
        println!(
            "Adding ACLs for resource `ResourcePattern(resourceType={}, name={name}, patternType={})`: ",
            resource_type_name(*resource_type),
            pattern_name(pattern)
        );
        for (principal, host, permission) in entries {
            for op in operations {
                println!("{}", entry_line(principal, host, *op, *permission));
                creations.push(
                    AclCreation::default()
                        .with_resource_type(*resource_type)
                        .with_resource_name(text(name))
                        .with_resource_pattern_type(pattern)
                        .with_principal(text(principal))
                        .with_host(text(host))
                        .with_operation(*op)
                        .with_permission_type(*permission),
                );
            }
        }
        println!();
    }
    let request = CreateAclsRequest::default().with_creations(creations);
    let response = client.call_any(&request, VERSION).await?;
    for r in &response.results {
        if r.error_code != 0 {
            bail!(
                "Error while adding ACLs: error {}: {}",
                r.error_code,
                r.error_message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn remove(
    client: &mut Client,
    resources: &[(i8, String)],
    entries: &[(String, String, i8)],
    operations: &[i8],
    pattern: i8,
) -> Result<()> {
    let mut filters = Vec::new();
    for (resource_type, name) in resources {
        if entries.is_empty() {
            filters.push(
                DeleteAclsFilter::default()
                    .with_resource_type_filter(*resource_type)
                    .with_resource_name_filter(Some(text(name)))
                    .with_pattern_type_filter(pattern)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
            );
        }
        for (principal, host, permission) in entries {
            for op in operations {
                filters.push(
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(*resource_type)
                        .with_resource_name_filter(Some(text(name)))
                        .with_pattern_type_filter(pattern)
                        .with_principal_filter(Some(text(principal)))
                        .with_host_filter(Some(text(host)))
                        .with_operation(*op)
                        .with_permission_type(*permission),
                );
            }
        }
    }
    let request = DeleteAclsRequest::default().with_filters(filters);
    let response = client.call_any(&request, VERSION).await?;
    for r in &response.filter_results {
        if r.error_code != 0 {
            bail!(
                "Error while removing ACLs: error {}: {}",
                r.error_code,
                r.error_message.as_deref().unwrap_or("")
            );
        }
        for m in &r.matching_acls {
            println!(
                "Removed ACL for resource `ResourcePattern(resourceType={}, name={}, patternType={})`: {}",
                resource_type_name(m.resource_type),
                m.resource_name.as_str(),
                pattern_name(m.pattern_type),
                entry_line(&m.principal, &m.host, m.operation, m.permission_type).trim()
            );
        }
    }
    Ok(())
}

async fn list(client: &mut Client, a: &AclsArgs) -> Result<()> {
    let pattern = if a.pattern_type.eq_ignore_ascii_case("literal") && resources(a).is_empty() {
        1
    } else {
        pattern_code(&a.pattern_type)?
    };
    let mut filters: Vec<(i8, Option<String>)> = resources(a)
        .into_iter()
        .map(|(t, n)| (t, Some(n)))
        .collect();
    if filters.is_empty() {
        filters.push((1, None));
    }
    for (resource_type, name) in filters {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(resource_type)
            .with_resource_name_filter(name.as_deref().map(text))
            .with_pattern_type_filter(pattern)
            .with_principal_filter(a.principal.as_deref().map(text))
            .with_host_filter(None)
            .with_operation(1)
            .with_permission_type(1);
        let response = client.call_any(&request, VERSION).await?;
        if response.error_code != 0 {
            bail!(
                "Error while listing ACLs: error {}: {}",
                response.error_code,
                response.error_message.as_deref().unwrap_or("")
            );
        }
        for r in &response.resources {
            println!(
                "Current ACLs for resource `ResourcePattern(resourceType={}, name={}, patternType={})`: ",
                resource_type_name(r.resource_type),
                r.resource_name.as_str(),
                pattern_name(r.pattern_type)
            );
            for acl in &r.acls {
                println!(
                    "{}",
                    entry_line(
                        &acl.principal,
                        &acl.host,
                        acl.operation,
                        acl.permission_type
                    )
                );
            }
            println!();
        }
    }
    Ok(())
}

/// Kafka's `AccessControlEntry` line.
fn entry_line(principal: &str, host: &str, operation: i8, permission: i8) -> String {
    let permission = match permission {
        2 => "DENY",
        3 => "ALLOW",
        _ => "UNKNOWN",
    };
    format!(
        " \t(principal={principal}, host={host}, operation={}, permissionType={permission}) ",
        operation_name(operation)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_kafkas() {
        assert_eq!(operation_code("All").unwrap(), 2);
        assert_eq!(operation_code("Read").unwrap(), 3);
        assert_eq!(operation_code("DescribeConfigs").unwrap(), 10);
        assert_eq!(operation_code("IDEMPOTENT_WRITE").unwrap(), 12);
        assert!(operation_code("Fly").is_err());
        assert_eq!(operation_name(10), "DESCRIBE_CONFIGS");
        assert_eq!(operation_name(9), "CLUSTER_ACTION");
    }
}
