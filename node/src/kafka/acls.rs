//! The ACL admin APIs (KIP-140): DescribeAcls (29), CreateAcls (30) and
//! DeleteAcls (31), v0–3. Validation and matching are the model's
//! (`runnel_model::acl`); changes are controller decisions
//! (`ControllerRequest::CreateAcls` / `DeleteAcls`), one per request, so a
//! request's ACLs commit together or not at all.

use super::access::{Access, CLUSTER_AUTHORIZATION_FAILED};
use super::handlers::{await_metadata, call_controller, code, controller_error, str_bytes};
use crate::runtime::node::{NodeHandle, CONTROLLER_INTERNAL_TIMEOUT_MS};
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use runnel_model::acl::{AclBinding, AclFilter, Operation};
use runnel_model::controller::{ControllerRequest, MetadataRecord};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

const DENIED: &str = "Cluster authorization failed.";

/// How long an ACL change may take (the APIs carry no timeout).
fn deadline() -> Instant {
    Instant::now() + Duration::from_millis(CONTROLLER_INTERNAL_TIMEOUT_MS)
}

fn message(text: &str) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(str_bytes(text))
}

pub async fn create_acls(
    r: CreateAclsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> CreateAclsResponse {
    let allowed = {
        let view = node.view.borrow().clone();
        Access::new(&node.settings, &view, client_host).cluster(Operation::Alter)
    };
    let parsed: Vec<Result<AclBinding, String>> = r
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_wire(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let failed = |code: i16, text: &str| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message(text))
    };
    if !allowed {
        let results = parsed
            .iter()
            .map(|_| failed(CLUSTER_AUTHORIZATION_FAILED, DENIED))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let acls: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let outcome = if acls.is_empty() {
        Ok(())
    } else {
        let deadline = deadline();
        let request = ControllerRequest::CreateAcls { acls };
        match call_controller(node, request, CONTROLLER_INTERNAL_TIMEOUT_MS as i32).await {
            Ok(ack) => {
                await_metadata(node, ack.end_offset, deadline).await;
                Ok(())
            }
            Err(e) => Err(controller_error(&e)),
        }
    };
    let results = parsed
        .iter()
        .map(|p| match (p, &outcome) {
            (Err(text), _) => failed(code::INVALID_REQUEST, text),
            (Ok(_), Err((c, text))) => failed(*c, text),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe_acls(
    r: DescribeAclsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> DescribeAclsResponse {
    let view = node.view.borrow().clone();
    if !Access::new(&node.settings, &view, client_host).cluster(Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(message(DENIED));
    }
    let filter = AclFilter::from_wire(
        r.resource_type_filter,
        r.resource_name_filter.as_deref(),
        r.pattern_type_filter,
        r.principal_filter.as_deref(),
        r.host_filter.as_deref(),
        r.operation,
        r.permission_type,
    );
    let filter = match filter {
        Ok(f) => f,
        Err(text) => {
            return DescribeAclsResponse::default()
                .with_error_code(code::INVALID_REQUEST)
                .with_error_message(message(&text))
        }
    };
    // Grouped by resource pattern, as Kafka answers.
    let mut by_pattern: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for acl in view.image.acls.matching(&filter) {
        let e = &acl.entry;
        by_pattern.entry(acl.pattern.clone()).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(&e.principal))
                .with_host(str_bytes(&e.host))
                .with_operation(e.operation.code())
                .with_permission_type(e.permission.code()),
        );
    }
    let resources = by_pattern
        .into_iter()
        .map(|(p, acls)| {
            DescribeAclsResource::default()
                .with_resource_type(p.resource_type.code())
                .with_resource_name(str_bytes(&p.name))
                .with_pattern_type(p.pattern_type.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete_acls(
    r: DeleteAclsRequest,
    client_host: &str,
    node: &NodeHandle,
) -> DeleteAclsResponse {
    let allowed = {
        let view = node.view.borrow().clone();
        Access::new(&node.settings, &view, client_host).cluster(Operation::Alter)
    };
    let parsed: Vec<Result<AclFilter, String>> = r
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let failed = |code: i16, text: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message(text))
    };
    if !allowed {
        let results = parsed
            .iter()
            .map(|_| failed(CLUSTER_AUTHORIZATION_FAILED, DENIED))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let outcome = if filters.is_empty() {
        Ok(Vec::new())
    } else {
        let deadline = deadline();
        let request = ControllerRequest::DeleteAcls { filters };
        match call_controller(node, request, CONTROLLER_INTERNAL_TIMEOUT_MS as i32).await {
            Ok(ack) => {
                await_metadata(node, ack.end_offset, deadline).await;
                Ok(deleted(&ack.records))
            }
            Err(e) => Err(controller_error(&e)),
        }
    };
    let results = parsed
        .iter()
        .map(|p| match (p, &outcome) {
            (Err(text), _) => failed(code::INVALID_REQUEST, text),
            (Ok(_), Err((c, text))) => failed(*c, text),
            (Ok(filter), Ok(gone)) => DeleteAclsFilterResult::default().with_matching_acls(
                gone.iter()
                    .filter(|a| filter.matches(a))
                    .map(matching_acl)
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// The ACLs a committed decision removed.
fn deleted(records: &[MetadataRecord]) -> Vec<AclBinding> {
    records
        .iter()
        .flat_map(|r| match r {
            MetadataRecord::AclsDeleted { acls } => acls.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn matching_acl(a: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(a.pattern.resource_type.code())
        .with_resource_name(str_bytes(&a.pattern.name))
        .with_pattern_type(a.pattern.pattern_type.code())
        .with_principal(str_bytes(&a.entry.principal))
        .with_host(str_bytes(&a.entry.host))
        .with_operation(a.entry.operation.code())
        .with_permission_type(a.entry.permission.code())
}
