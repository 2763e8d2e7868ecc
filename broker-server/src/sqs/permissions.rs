//! AddPermission and RemovePermission: statements of the queue's `Policy` attribute, built as
//! AWS builds them. Every caller acts as the one account, so the policy grants nothing that
//! is not already allowed; it is kept for clients that read it back.

use serde_json::{json, Value};

use super::error::{SqsError, SqsResult};
use super::params::*;
use super::queue::{self, ATTR_PREFIX};
use super::{Sqs, ACTIONS};

/// The actions AddPermission may grant (the batch actions come with their single forms).
const GRANTABLE: &[&str] = &[
    "*",
    "ChangeMessageVisibility",
    "DeleteMessage",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "SendMessage",
];
/// Most actions one AddPermission may name (AWS's actions per statement).
const MAX_ACTIONS: usize = 7;
/// Most statements of a queue policy (AWS's quota).
const MAX_STATEMENTS: usize = 20;
/// Most principals of a queue policy (AWS's quota).
const MAX_PRINCIPALS: usize = 50;
/// Longest permission label.
const MAX_LABEL_LEN: usize = 80;

/// Ok when `label` is 1-80 characters of `[A-Za-z0-9_-]`.
fn check_label(label: &str) -> SqsResult<()> {
    if !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Ok(());
    }
    Err(SqsError::invalid_value(
        "Label",
        label,
        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
    ))
}

/// Ok when every account id is 12 digits (AWS cannot verify any other principal).
fn check_accounts(accounts: &[String]) -> SqsResult<()> {
    if accounts.is_empty() {
        return Err(SqsError::invalid_value(
            "PrincipalId",
            "[]",
            "Unable to verify.",
        ));
    }
    if accounts.len() > MAX_PRINCIPALS {
        return Err(SqsError::OverLimit(format!(
            "{} principals were found, maximum allowed is {MAX_PRINCIPALS}.",
            accounts.len()
        )));
    }
    for a in accounts {
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SqsError::invalid_value(
                "PrincipalId",
                a,
                "Unable to verify.",
            ));
        }
    }
    Ok(())
}

/// Ok when there are 1-7 actions, each one AddPermission may grant.
fn check_actions(actions: &[String]) -> SqsResult<()> {
    if actions.is_empty() {
        return Err(SqsError::MissingParameter("Actions".into()));
    }
    if actions.len() > MAX_ACTIONS {
        return Err(SqsError::OverLimit(format!(
            "{} Actions were found, maximum allowed is {MAX_ACTIONS}.",
            actions.len()
        )));
    }
    for a in actions {
        if GRANTABLE.contains(&a.as_str()) {
            continue;
        }
        let reason = if ACTIONS.contains(&a.as_str()) || a == "ListQueues" {
            "Only the queue owner is allowed to invoke this action."
        } else {
            "Please refer to the appropriate WSDL for a list of valid actions. "
        };
        return Err(SqsError::invalid_value(
            "ActionName",
            &format!("SQS:{a}"),
            reason,
        ));
    }
    Ok(())
}

/// One value, or a list of several, as AWS writes principals and actions.
fn one_or_list(mut items: Vec<String>) -> Value {
    if items.len() == 1 {
        json!(items.remove(0))
    } else {
        json!(items)
    }
}

/// The statements of a stored policy (none when there is no policy; a single statement
/// object counts as a list of one).
fn statements(policy: &Value) -> Vec<Value> {
    match policy.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The policy with statement `label` added, granting `actions` to `accounts` on the queue
/// `arn`: a new policy (`Version` 2008-10-17, `Id` `<arn>/SQSDefaultPolicy`) when there was
/// none. `InvalidParameterValue` when a statement with that `Sid` exists.
pub fn add_statement(
    current: Option<&str>,
    arn: &str,
    label: &str,
    accounts: &[String],
    actions: &[String],
) -> SqsResult<String> {
    let mut policy = current
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| {
            json!({
                "Version": "2008-10-17",
                "Id": format!("{arn}/SQSDefaultPolicy"),
            })
        });
    let mut list = statements(&policy);
    if list
        .iter()
        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(label))
    {
        return Err(SqsError::invalid_value("Label", label, "Already exists."));
    }
    list.push(json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": {
            "AWS": one_or_list(accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect()),
        },
        "Action": one_or_list(actions.iter().map(|a| format!("SQS:{a}")).collect()),
        "Resource": arn,
    }));
    if list.len() > MAX_STATEMENTS {
        return Err(SqsError::OverLimit(format!(
            "The queue policy would have {} statements, maximum allowed is {MAX_STATEMENTS}.",
            list.len()
        )));
    }
    policy["Statement"] = Value::Array(list);
    let text = policy.to_string();
    if text.len() > queue::MAX_POLICY_BYTES {
        return Err(SqsError::OverLimit(format!(
            "The queue policy would be {} bytes long, maximum allowed is {}.",
            text.len(),
            queue::MAX_POLICY_BYTES
        )));
    }
    Ok(text)
}

/// The policy without statement `label`, or `None` when no statement is left.
/// `InvalidParameterValue` when there is no statement with that `Sid`.
pub fn remove_statement(current: Option<&str>, label: &str) -> SqsResult<Option<String>> {
    let not_found = || SqsError::invalid_value("Label", label, "can't find label.");
    let mut policy = current
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .filter(Value::is_object)
        .ok_or_else(not_found)?;
    let list = statements(&policy);
    let kept: Vec<Value> = list
        .iter()
        .filter(|s| s.get("Sid").and_then(Value::as_str) != Some(label))
        .cloned()
        .collect();
    if kept.len() == list.len() {
        return Err(not_found());
    }
    if kept.is_empty() {
        return Ok(None);
    }
    policy["Statement"] = Value::Array(kept);
    Ok(Some(policy.to_string()))
}

impl Sqs {
    pub(super) async fn add_permission(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let label = req_str(input, "Label")?;
        check_label(label)?;
        let accounts = str_list(input, "AWSAccountIds");
        let actions = str_list(input, "Actions");
        check_accounts(&accounts)?;
        check_actions(&actions)?;
        let arn = q.id.arn();
        self.update_queue(&q.topic, |current, config| {
            let policy = add_statement(
                current.attrs.get("Policy").map(String::as_str),
                &arn,
                label,
                &accounts,
                &actions,
            )?;
            config
                .attributes
                .insert(format!("{ATTR_PREFIX}Policy"), policy);
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    pub(super) async fn remove_permission(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let label = req_str(input, "Label")?;
        self.update_queue(&q.topic, |current, config| {
            let key = format!("{ATTR_PREFIX}Policy");
            match remove_statement(current.attrs.get("Policy").map(String::as_str), label)? {
                Some(p) => config.attributes.insert(key, p),
                None => config.attributes.remove(&key),
            };
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_added_and_removed_as_aws_does() {
        let arn = "arn:aws:sqs:us-east-1:000000000000:q";
        let one = add_statement(
            None,
            arn,
            "a",
            &["111111111111".into()],
            &["SendMessage".into()],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["Version"], "2008-10-17");
        assert_eq!(v["Id"], format!("{arn}/SQSDefaultPolicy"));
        assert_eq!(
            v["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::111111111111:root"
        );
        assert_eq!(v["Statement"][0]["Action"], "SQS:SendMessage");
        assert_eq!(v["Statement"][0]["Resource"], arn);
        let two = add_statement(
            Some(&one),
            arn,
            "b",
            &["111111111111".into(), "222222222222".into()],
            &["ReceiveMessage".into(), "DeleteMessage".into()],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&two).unwrap();
        assert_eq!(
            v["Statement"][1]["Action"],
            json!(["SQS:ReceiveMessage", "SQS:DeleteMessage"])
        );
        assert!(add_statement(
            Some(&two),
            arn,
            "a",
            &["111111111111".into()],
            &["*".into()]
        )
        .is_err());
        let back = remove_statement(Some(&two), "b").unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&back).unwrap(),
            serde_json::from_str::<Value>(&one).unwrap()
        );
        assert_eq!(remove_statement(Some(&one), "a").unwrap(), None);
        assert!(remove_statement(Some(&one), "zz").is_err());
        assert!(remove_statement(None, "a").is_err());
        assert!(check_actions(&["CreateQueue".into()]).is_err());
        assert!(check_actions(&vec!["SendMessage".to_string(); 8]).is_err());
        assert!(check_accounts(&["12".into()]).is_err());
        assert!(check_accounts(&vec!["111111111111".to_string(); 51]).is_err());
        let mut p: Option<String> = None;
        for i in 0..20 {
            p = Some(
                add_statement(
                    p.as_deref(),
                    arn,
                    &format!("s{i}"),
                    &["111111111111".into()],
                    &["*".into()],
                )
                .unwrap(),
            );
        }
        assert!(matches!(
            add_statement(
                p.as_deref(),
                arn,
                "s20",
                &["111111111111".into()],
                &["*".into()]
            ),
            Err(SqsError::OverLimit(_))
        ));
        assert!(check_label("bad label").is_err());
    }
}
