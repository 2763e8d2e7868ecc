//! The SQS API under the same ACLs as Kafka: a queue is the topic of its name, the
//! principal is `User:<SigV4 access key id>` (verified signatures only; unsigned requests
//! are `User:ANONYMOUS`), and each action needs the Kafka operation a Kafka client doing the
//! same would need. Refusals are SQS's AccessDenied (403).

use serde_json::Value;

use super::acl::{resource, Authorizer, Op, CLUSTER_NAME};
use crate::http::sqs::error::SqsError;

/// The operation an action needs on its queue's topic (`None`: ListQueues, filtered after).
pub fn action_op(action: &str) -> Option<Op> {
    Some(match action {
        "SendMessage" | "SendMessageBatch" => Op::Write,
        "ReceiveMessage"
        | "DeleteMessage"
        | "DeleteMessageBatch"
        | "ChangeMessageVisibility"
        | "ChangeMessageVisibilityBatch" => Op::Read,
        "CreateQueue" => Op::Create,
        "DeleteQueue" | "PurgeQueue" => Op::Delete,
        "SetQueueAttributes" | "TagQueue" | "UntagQueue" => Op::AlterConfigs,
        "GetQueueAttributes" | "ListQueueTags" => Op::DescribeConfigs,
        "GetQueueUrl" | "ListDeadLetterSourceQueues" => Op::Describe,
        _ => return None,
    })
}

/// The request's principal: the access key of a verified SigV4 signature.
pub fn principal(headers: &http::HeaderMap, verified: bool) -> String {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .filter(|k| !k.is_empty() && verified);
    match key {
        Some(k) => format!("User:{k}"),
        None => crate::kafka::conn::ANONYMOUS.to_string(),
    }
}

fn queue_of(input: &Value) -> Option<String> {
    if let Some(url) = input.get("QueueUrl").and_then(Value::as_str) {
        return crate::http::sqs::queue::name_from_url(url).ok();
    }
    input
        .get("QueueName")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Ok when `principal` may perform `action` on the queue the input names.
pub fn check(
    authz: &Authorizer,
    principal: &str,
    action: &str,
    input: &Value,
) -> Result<(), SqsError> {
    if !authz.enabled() {
        return Ok(());
    }
    let Some(op) = action_op(action) else {
        return Ok(());
    };
    let Some(queue) = queue_of(input) else {
        // A malformed request fails in the handler with its own error.
        return Ok(());
    };
    let ok = authz.allowed(principal, "*", op, resource::TOPIC, &queue)
        || (op == Op::Create
            && authz.allowed(principal, "*", Op::Create, resource::CLUSTER, CLUSTER_NAME));
    if ok {
        Ok(())
    } else {
        Err(SqsError::AccessDenied(format!(
            "User: {principal} is not authorized to perform: sqs:{action} on resource: {queue}"
        )))
    }
}

/// Leaves out of a ListQueues result the queues the principal may not describe.
pub fn filter_list(authz: &Authorizer, principal: &str, result: &mut Value) {
    if !authz.enabled() {
        return;
    }
    if let Some(urls) = result.get_mut("QueueUrls").and_then(Value::as_array_mut) {
        urls.retain(|u| {
            u.as_str()
                .and_then(|u| crate::http::sqs::queue::name_from_url(u).ok())
                .is_some_and(|q| authz.allowed(principal, "*", Op::Describe, resource::TOPIC, &q))
        });
    }
}
