//! CreateAcls, DescribeAcls and DeleteAcls over the store's bindings. Without an authoriser
//! (no security settings) they answer SECURITY_DISABLED, as Kafka does without one.

use broker_api::AclBinding;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::{Op, CLUSTER_DENIED};
use super::KafkaServer;
use crate::security::acl::{validate_binding, AclFilter};

/// Kafka's message for the ACL APIs without an authorizer.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn disabled() -> (i16, Option<StrBytes>) {
    (
        ResponseError::SecurityDisabled.code(),
        Some(StrBytes::from_static_str(NO_AUTHORIZER)),
    )
}

fn s(v: String) -> StrBytes {
    StrBytes::from_string(v)
}

impl KafkaServer {
    pub(super) async fn create_acls(&self, req: CreateAclsRequest) -> CreateAclsResponse {
        let fail_all = |code: i16, msg: Option<StrBytes>| {
            CreateAclsResponse::default().with_results(
                req.creations
                    .iter()
                    .map(|_| {
                        AclCreationResult::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect(),
            )
        };
        if !self.authz.enabled() {
            let (code, msg) = disabled();
            return fail_all(code, msg);
        }
        if !self.may_cluster(Op::Alter) {
            return fail_all(CLUSTER_DENIED, None);
        }
        let bindings: Vec<Result<AclBinding, String>> = req
            .creations
            .iter()
            .map(|c| {
                let b = AclBinding {
                    resource_type: c.resource_type,
                    resource_name: c.resource_name.to_string(),
                    pattern_type: c.resource_pattern_type,
                    principal: c.principal.to_string(),
                    host: c.host.to_string(),
                    operation: c.operation,
                    permission_type: c.permission_type,
                };
                validate_binding(&b).map(|()| b)
            })
            .collect();
        let valid: Vec<AclBinding> = bindings
            .iter()
            .filter_map(|b| b.as_ref().ok().cloned())
            .collect();
        let stored = if valid.is_empty() {
            Ok(())
        } else {
            self.authz.create(&valid).await
        };
        CreateAclsResponse::default().with_results(
            bindings
                .into_iter()
                .map(|b| match (b, &stored) {
                    (Err(why), _) => AclCreationResult::default()
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(s(why))),
                    (Ok(_), Err(e)) => AclCreationResult::default()
                        .with_error_code(ResponseError::UnknownServerError.code())
                        .with_error_message(Some(s(e.to_string()))),
                    (Ok(_), Ok(())) => AclCreationResult::default(),
                })
                .collect(),
        )
    }

    pub(super) async fn describe_acls(&self, req: DescribeAclsRequest) -> DescribeAclsResponse {
        if !self.authz.enabled() {
            let (code, msg) = disabled();
            return DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(msg);
        }
        if !self.may_cluster(Op::Describe) {
            return DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED);
        }
        let filter = AclFilter {
            resource_type: req.resource_type_filter,
            resource_name: req.resource_name_filter.map(|n| n.to_string()),
            pattern_type: req.pattern_type_filter,
            principal: req.principal_filter.map(|n| n.to_string()),
            host: req.host_filter.map(|n| n.to_string()),
            operation: req.operation,
            permission_type: req.permission_type,
        };
        if let Err(why) = filter.validate() {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(s(why)));
        }
        if let Err(e) = self.authz.refresh().await {
            tracing::debug!("DescribeAcls serves cached ACLs: {e}");
        }
        let mut resources: Vec<DescribeAclsResource> = Vec::new();
        for b in self.authz.bindings().iter().filter(|b| filter.matches(b)) {
            let acl = AclDescription::default()
                .with_principal(s(b.principal.clone()))
                .with_host(s(b.host.clone()))
                .with_operation(b.operation)
                .with_permission_type(b.permission_type);
            match resources.iter_mut().find(|r| {
                r.resource_type == b.resource_type
                    && r.resource_name.as_str() == b.resource_name
                    && r.pattern_type == b.pattern_type
            }) {
                Some(r) => r.acls.push(acl),
                None => resources.push(
                    DescribeAclsResource::default()
                        .with_resource_type(b.resource_type)
                        .with_resource_name(s(b.resource_name.clone()))
                        .with_pattern_type(b.pattern_type)
                        .with_acls(vec![acl]),
                ),
            }
        }
        DescribeAclsResponse::default().with_resources(resources)
    }

    pub(super) async fn delete_acls(&self, req: DeleteAclsRequest) -> DeleteAclsResponse {
        let fail_all = |code: i16, msg: Option<StrBytes>| {
            DeleteAclsResponse::default().with_filter_results(
                req.filters
                    .iter()
                    .map(|_| {
                        DeleteAclsFilterResult::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect(),
            )
        };
        if !self.authz.enabled() {
            let (code, msg) = disabled();
            return fail_all(code, msg);
        }
        if !self.may_cluster(Op::Alter) {
            return fail_all(CLUSTER_DENIED, None);
        }
        let _ = self.authz.refresh().await;
        let all = self.authz.bindings();
        let mut results = Vec::new();
        let mut doomed: Vec<AclBinding> = Vec::new();
        for f in &req.filters {
            let filter = AclFilter {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_ref().map(|n| n.to_string()),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_ref().map(|n| n.to_string()),
                host: f.host_filter.as_ref().map(|n| n.to_string()),
                operation: f.operation,
                permission_type: f.permission_type,
            };
            if let Err(why) = filter.validate() {
                results.push(
                    DeleteAclsFilterResult::default()
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(s(why))),
                );
                continue;
            }
            let matched: Vec<&AclBinding> = all.iter().filter(|b| filter.matches(b)).collect();
            doomed.extend(matched.iter().map(|b| (*b).clone()));
            results.push(
                DeleteAclsFilterResult::default().with_matching_acls(
                    matched
                        .into_iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type)
                                .with_resource_name(s(b.resource_name.clone()))
                                .with_pattern_type(b.pattern_type)
                                .with_principal(s(b.principal.clone()))
                                .with_host(s(b.host.clone()))
                                .with_operation(b.operation)
                                .with_permission_type(b.permission_type)
                        })
                        .collect(),
                ),
            );
        }
        doomed.sort();
        doomed.dedup();
        if !doomed.is_empty() {
            if let Err(e) = self.authz.delete(&doomed).await {
                return fail_all(
                    ResponseError::UnknownServerError.code(),
                    Some(s(e.to_string())),
                );
            }
        }
        DeleteAclsResponse::default().with_filter_results(results)
    }
}
