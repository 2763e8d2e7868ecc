//! The SQS API under the same ACLs as Kafka: a queue is the topic that stores it (its name,
//! or `<region>.<name>` outside the default region), the principal is
//! `User:<SigV4 access key id>` (verified signatures only; unsigned requests are
//! `User:ANONYMOUS`), and each action needs the Kafka operation a Kafka client doing the
//! same would need. Refusals are SQS's AccessDenied (403).

use serde_json::Value;

use super::acl::{resource, Authorizer, Op, CLUSTER_NAME};
use crate::http::sqs::error::SqsError;
use crate::http::sqs::queue::QueueRef;

/// The operation an action needs on its queue's topic. `None`: ListQueues (filtered after),
/// the message move task actions (checked on their ARNs, see [`required`]) and actions the
/// API does not serve (they fail in the handler).
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
        "SetQueueAttributes" | "TagQueue" | "UntagQueue" | "AddPermission" | "RemovePermission" => {
            Op::AlterConfigs
        }
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

/// The topic of the queue the input names (QueueUrl, else QueueName) in `region`.
fn queue_topic(input: &Value, region: &str) -> Option<String> {
    if let Some(url) = input.get("QueueUrl").and_then(Value::as_str) {
        return QueueRef::from_url(url, region).ok().map(|q| q.topic());
    }
    input
        .get("QueueName")
        .and_then(Value::as_str)
        .map(|n| QueueRef::new(region, n).topic())
}

fn arn_topic(input: &Value, key: &str) -> Option<String> {
    input
        .get(key)
        .and_then(Value::as_str)
        .and_then(QueueRef::from_arn)
        .map(|q| q.topic())
}

/// The (operation, topic) pairs `action` needs; empty when nothing is checked before the
/// handler (a malformed request fails there with its own error).
/// - StartMessageMoveTask: Read on the source (dead-letter) queue, Write on DestinationArn
///   when given (without it, messages return to the queues they came from).
/// - CancelMessageMoveTask: Read on the source queue its TaskHandle names.
/// - ListMessageMoveTasks: Describe on the source queue.
pub fn required(action: &str, input: &Value, region: &str) -> Vec<(Op, String)> {
    let mut need = Vec::new();
    match action {
        "StartMessageMoveTask" => {
            need.extend(arn_topic(input, "SourceArn").map(|t| (Op::Read, t)));
            need.extend(arn_topic(input, "DestinationArn").map(|t| (Op::Write, t)));
        }
        "CancelMessageMoveTask" => {
            let source = input
                .get("TaskHandle")
                .and_then(Value::as_str)
                .and_then(|h| crate::http::sqs::move_task::parse_handle(h).ok())
                .and_then(|(_, arn)| QueueRef::from_arn(&arn));
            need.extend(source.map(|q| (Op::Read, q.topic())));
        }
        "ListMessageMoveTasks" => {
            need.extend(arn_topic(input, "SourceArn").map(|t| (Op::Describe, t)));
        }
        _ => {
            if let (Some(op), Some(topic)) = (action_op(action), queue_topic(input, region)) {
                need.push((op, topic));
            }
        }
    }
    need
}

/// Ok when `principal` may perform `action` on the queues the input names in `region`.
pub fn check(
    authz: &Authorizer,
    principal: &str,
    action: &str,
    input: &Value,
    region: &str,
) -> Result<(), SqsError> {
    if !authz.enabled() {
        return Ok(());
    }
    for (op, topic) in required(action, input, region) {
        let ok = authz.allowed(principal, "*", op, resource::TOPIC, &topic)
            || (op == Op::Create
                && authz.allowed(principal, "*", Op::Create, resource::CLUSTER, CLUSTER_NAME));
        if !ok {
            return Err(SqsError::AccessDenied(format!(
                "User: {principal} is not authorized to perform: sqs:{action} on resource: {topic}"
            )));
        }
    }
    Ok(())
}

/// Leaves out of a ListQueues or ListDeadLetterSourceQueues result (`queueUrls`) the queues
/// the principal may not describe.
pub fn filter_list(authz: &Authorizer, principal: &str, region: &str, result: &mut Value) {
    if !authz.enabled() {
        return;
    }
    for key in ["QueueUrls", "queueUrls"] {
        let Some(urls) = result.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        urls.retain(|u| {
            u.as_str()
                .and_then(|u| QueueRef::from_url(u, region).ok())
                .is_some_and(|q| {
                    authz.allowed(principal, "*", Op::Describe, resource::TOPIC, &q.topic())
                })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queue_actions_name_the_topic_of_their_region() {
        let url = "http://h/queue/eu-west-1/000000000000/jobs";
        assert_eq!(
            required("SendMessage", &json!({"QueueUrl": url}), "us-east-1"),
            vec![(Op::Write, "eu-west-1.jobs".to_string())]
        );
        assert_eq!(
            required("CreateQueue", &json!({"QueueName": "jobs"}), "us-east-1"),
            vec![(Op::Create, "jobs".to_string())]
        );
        assert_eq!(
            required(
                "AddPermission",
                &json!({"QueueUrl": "http://h/000000000000/q"}),
                "us-east-1"
            ),
            vec![(Op::AlterConfigs, "q".to_string())]
        );
        assert!(required("ListQueues", &json!({}), "us-east-1").is_empty());
    }

    #[test]
    fn move_tasks_need_read_on_the_source_and_write_on_the_destination() {
        let input = json!({
            "SourceArn": "arn:aws:sqs:us-east-1:000000000000:dlq",
            "DestinationArn": "arn:aws:sqs:us-east-1:000000000000:main",
        });
        assert_eq!(
            required("StartMessageMoveTask", &input, "us-east-1"),
            vec![
                (Op::Read, "dlq".to_string()),
                (Op::Write, "main".to_string())
            ]
        );
        assert_eq!(
            required("ListMessageMoveTasks", &input, "us-east-1"),
            vec![(Op::Describe, "dlq".to_string())]
        );
    }
}
