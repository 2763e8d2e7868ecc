//! CreateAcls, DescribeAcls and DeleteAcls as Apache Kafka answers them when no authorizer
//! is configured: SECURITY_DISABLED. The broker has no authentication yet, so there is no
//! principal an ACL could name; clients get Kafka's own error instead of UNSUPPORTED_VERSION.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// Kafka's message for the ACL APIs without an authorizer.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn disabled() -> (i16, Option<StrBytes>) {
    (
        ResponseError::SecurityDisabled.code(),
        Some(StrBytes::from_static_str(NO_AUTHORIZER)),
    )
}

pub fn create_acls(req: CreateAclsRequest) -> CreateAclsResponse {
    let (code, msg) = disabled();
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
}

pub fn describe_acls(_req: DescribeAclsRequest) -> DescribeAclsResponse {
    let (code, msg) = disabled();
    DescribeAclsResponse::default()
        .with_error_code(code)
        .with_error_message(msg)
}

pub fn delete_acls(req: DeleteAclsRequest) -> DeleteAclsResponse {
    let (code, msg) = disabled();
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
}
