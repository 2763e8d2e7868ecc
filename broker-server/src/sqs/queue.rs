//! Queues: names, URLs, and the queue attributes kept in the topic's config.

use std::collections::BTreeMap;

use broker_api::{TopicConfig, TopicInfo};

use super::error::{SqsError, SqsResult};
use super::region;

/// The account id every queue URL and ARN carries.
pub const ACCOUNT_ID: &str = "000000000000";
/// Prefix of the queue attributes inside `TopicConfig::attributes`.
pub const ATTR_PREFIX: &str = "sqs.";
/// Prefix of the queue tags inside `TopicConfig::attributes`.
pub const TAG_PREFIX: &str = "sqs-tag.";
/// Room left in `max_record_bytes` above `MaximumMessageSize` for the headers the API adds.
pub const HEADER_ALLOWANCE: usize = 64 * 1024;
/// How long FIFO deduplication ids are remembered.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

pub const DEFAULT_VISIBILITY: u32 = 30;
pub const DEFAULT_RETENTION_S: u32 = 345_600;
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 1_048_576;
pub const MAX_VISIBILITY: i64 = 43_200;
pub const MAX_WAIT: i64 = 20;
pub const MAX_DELAY: i64 = 900;

/// Attributes a caller may set (FifoQueue only at creation).
const SETTABLE: &[&str] = &[
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Attributes only GetQueueAttributes reports.
pub const READ_ONLY: &[&str] = &[
    "QueueArn",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
];

/// Ok when `name` is a name CreateQueue accepts: 1-80 characters of `[A-Za-z0-9_-]`, with a
/// `.fifo` suffix (counted in the 80) for FIFO queues.
pub fn validate_queue_name(name: &str, fifo: bool) -> SqsResult<()> {
    let base = if fifo {
        name.strip_suffix(".fifo").ok_or_else(|| {
            SqsError::InvalidParameterValue(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.".into(),
            )
        })?
    } else {
        name
    };
    if name.len() > 80
        || base.is_empty()
        || !base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(SqsError::InvalidParameterValue(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
                .into(),
        ));
    }
    Ok(())
}

/// A queue as clients name it: a region and a queue name. Queues of the default region are
/// stored as the topic of their name; queues of another region as `<region>.<name>` (queue
/// names hold no dots but the `.fifo` suffix, so the two never collide).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueRef {
    pub region: String,
    pub name: String,
}

impl QueueRef {
    /// Queue `name` of `region`.
    pub fn new(region: &str, name: &str) -> Self {
        QueueRef {
            region: region.to_string(),
            name: name.to_string(),
        }
    }

    /// The topic that stores the queue.
    pub fn topic(&self) -> String {
        if self.region == region::DEFAULT_REGION {
            self.name.clone()
        } else {
            format!("{}.{}", self.region, self.name)
        }
    }

    /// The queue a topic stores: `<region>.<queue name>` for a region other than the
    /// default, else the whole topic name in the default region. `topic()` of the result is
    /// `topic` again.
    pub fn from_topic(topic: &str) -> Self {
        if let Some((r, name)) = topic.split_once('.') {
            if r != region::DEFAULT_REGION
                && region::is_region(r)
                && validate_queue_name(name, name.ends_with(".fifo")).is_ok()
            {
                return QueueRef::new(r, name);
            }
        }
        QueueRef::new(region::DEFAULT_REGION, topic)
    }

    /// The queue's ARN, `arn:aws:sqs:<region>:<account>:<name>`.
    pub fn arn(&self) -> String {
        format!("arn:aws:sqs:{}:{ACCOUNT_ID}:{}", self.region, self.name)
    }

    /// The queue's URL under `base_url`: `{base}/{account}/{name}` in the default region,
    /// `{base}/queue/{region}/{account}/{name}` in any other.
    pub fn url(&self, base_url: &str) -> String {
        let base = base_url.trim_end_matches('/');
        if self.region == region::DEFAULT_REGION {
            format!("{base}/{ACCOUNT_ID}/{}", self.name)
        } else {
            format!("{base}/queue/{}/{ACCOUNT_ID}/{}", self.region, self.name)
        }
    }

    /// The queue a queue URL (or a bare name) names: its last path segment, in the region
    /// the URL names (see [`region::of_url`]) or else `request_region`.
    /// `QueueDoesNotExist` when the name cannot be a queue's.
    pub fn from_url(url: &str, request_region: &str) -> SqsResult<Self> {
        let path = url.split(['?', '#']).next().unwrap_or("");
        let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let region = region::of_url(url).unwrap_or_else(|| request_region.to_string());
        let q = QueueRef::new(&region, name);
        if broker_api::validate_topic_name(name).is_err()
            || broker_api::validate_topic_name(&q.topic()).is_err()
            || QueueRef::from_topic(&q.topic()) != q
        {
            return Err(SqsError::QueueDoesNotExist);
        }
        Ok(q)
    }

    /// The queue an ARN `arn:<partition>:sqs:<region>:<account>:<name>` names; `None` when
    /// `arn` is not such an ARN.
    pub fn from_arn(arn: &str) -> Option<Self> {
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() != 6
            || parts[0] != "arn"
            || parts[1].is_empty()
            || parts[2] != "sqs"
            || !region::is_region(parts[3])
            || parts[4].is_empty()
            || broker_api::validate_topic_name(parts[5]).is_err()
        {
            return None;
        }
        let q = QueueRef::new(parts[3], parts[5]);
        (broker_api::validate_topic_name(&q.topic()).is_ok()
            && QueueRef::from_topic(&q.topic()) == q)
            .then_some(q)
    }
}

/// The redrive policy of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub dead_letter_arn: String,
    /// The dead-letter queue the ARN names.
    pub dead_letter: QueueRef,
    pub max_receive_count: u32,
}

/// Parses a RedrivePolicy value (`{"deadLetterTargetArn":..., "maxReceiveCount":...}`).
pub fn parse_redrive(value: &str) -> SqsResult<Option<Redrive>> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        SqsError::InvalidAttributeValue(format!(
            "Value {} for parameter RedrivePolicy is invalid. Reason: {why}",
            super::error::shorten(value)
        ))
    };
    let v: serde_json::Value =
        serde_json::from_str(value).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let map = v
        .as_object()
        .ok_or_else(|| bad("Redrive policy is not a valid JSON map."))?;
    if let Some(k) = map
        .keys()
        .find(|k| *k != "deadLetterTargetArn" && *k != "maxReceiveCount")
    {
        return Err(bad(&format!(
            "Redrive policy contains an unknown attribute: {k}."
        )));
    }
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .ok_or_else(|| {
            bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?;
    let count = match v.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: maxReceiveCount."))?;
    if !(1..=1000).contains(&count) {
        return Err(bad("Value for maxReceiveCount must be between 1 and 1000."));
    }
    let dead_letter = QueueRef::from_arn(arn).ok_or_else(|| {
        bad(&format!(
            "Dead-letter target {arn} is not a valid queue ARN."
        ))
    })?;
    Ok(Some(Redrive {
        dead_letter_arn: arn.to_string(),
        dead_letter,
        max_receive_count: count as u32,
    }))
}

impl Redrive {
    /// The policy as AWS returns it: `maxReceiveCount` a JSON number.
    pub fn normalised(&self) -> String {
        serde_json::json!({
            "deadLetterTargetArn": self.dead_letter_arn,
            "maxReceiveCount": self.max_receive_count,
        })
        .to_string()
    }
}

/// Checks a RedriveAllowPolicy (`{"redrivePermission": "allowAll" | "denyAll" | "byQueue",
/// "sourceQueueArns": [...]}`, the ARNs required with, and only with, `byQueue`, at most 10);
/// returns it normalised (an empty value clears it).
pub fn normalise_redrive_allow(value: &str) -> SqsResult<String> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    let bad = |why: &str| {
        SqsError::InvalidAttributeValue(format!(
            "Value {} for parameter RedriveAllowPolicy is invalid. Reason: {why}",
            super::error::shorten(value)
        ))
    };
    let v: serde_json::Value = serde_json::from_str(value)
        .map_err(|_| bad("Redrive allow policy is not a valid JSON map."))?;
    let map = v
        .as_object()
        .ok_or_else(|| bad("Redrive allow policy is not a valid JSON map."))?;
    if let Some(k) = map
        .keys()
        .find(|k| *k != "redrivePermission" && *k != "sourceQueueArns")
    {
        return Err(bad(&format!(
            "Redrive allow policy contains an unknown attribute: {k}."
        )));
    }
    let permission = map
        .get("redrivePermission")
        .and_then(|p| p.as_str())
        .ok_or_else(|| {
            bad("Redrive allow policy does not contain mandatory attribute: redrivePermission.")
        })?;
    if !matches!(permission, "allowAll" | "denyAll" | "byQueue") {
        return Err(bad(&format!(
            "Value {permission} for redrivePermission must be one of allowAll, denyAll, byQueue."
        )));
    }
    let arns = match map.get("sourceQueueArns") {
        None => None,
        Some(serde_json::Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for x in a {
                match x.as_str() {
                    Some(s) if QueueRef::from_arn(s).is_some() => out.push(s.to_string()),
                    _ => {
                        return Err(bad(&format!(
                            "Source queue ARN {x} is not a valid queue ARN."
                        )))
                    }
                }
            }
            Some(out)
        }
        Some(_) => return Err(bad("sourceQueueArns must be a list of queue ARNs.")),
    };
    match (permission, arns) {
        ("byQueue", Some(a)) if (1..=10).contains(&a.len()) => Ok(serde_json::json!({
            "redrivePermission": permission,
            "sourceQueueArns": a,
        })
        .to_string()),
        ("byQueue", _) => Err(bad(
            "sourceQueueArns must list 1 to 10 queue ARNs when redrivePermission is byQueue.",
        )),
        (_, Some(_)) => Err(bad(&format!(
            "sourceQueueArns is only allowed when redrivePermission is byQueue, not {permission}."
        ))),
        (_, None) => Ok(serde_json::json!({ "redrivePermission": permission }).to_string()),
    }
}

fn int_in(name: &str, value: &str, lo: i64, hi: i64) -> SqsResult<()> {
    match value.trim().parse::<i64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(()),
        _ => Err(SqsError::InvalidAttributeValue(format!(
            "Value {} for parameter {name} is invalid. Reason: Must be >= {lo} and <= {hi}.",
            super::error::shorten(value)
        ))),
    }
}

fn one_of(name: &str, value: &str, allowed: &[&str]) -> SqsResult<()> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(SqsError::InvalidAttributeValue(format!(
        "Value {} for parameter {name} is invalid. Reason: Must be one of {}.",
        super::error::shorten(value),
        allowed.join(", ")
    )))
}

/// Largest queue policy (AWS's quota).
pub const MAX_POLICY_BYTES: usize = 8192;

/// Checks a Policy value: empty (which clears it) or a JSON object of at most
/// [`MAX_POLICY_BYTES`]. Returned unchanged.
pub fn normalise_policy(value: &str) -> SqsResult<String> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    if value.len() > MAX_POLICY_BYTES {
        return Err(SqsError::InvalidAttributeValue(format!(
            "Value {} for parameter Policy is invalid. Reason: The policy is {} bytes long, at most {MAX_POLICY_BYTES} are allowed.",
            super::error::shorten(value),
            value.len()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(value.to_string()),
        _ => Err(SqsError::InvalidAttributeValue(format!(
            "Value {} for parameter Policy is invalid. Reason: The policy is not a JSON object.",
            super::error::shorten(value)
        ))),
    }
}

fn boolean(name: &str, value: &str) -> SqsResult<()> {
    match value {
        "true" | "false" => Ok(()),
        _ => Err(SqsError::InvalidAttributeValue(format!(
            "Value {} for parameter {name} is invalid. Reason: Must be true or false.",
            super::error::shorten(value)
        ))),
    }
}

/// Checks the attributes of a CreateQueue (`creating`) or SetQueueAttributes call on a queue
/// that is (or will be) FIFO when `fifo`. Returns them with normalised values.
pub fn validate_attributes(
    attrs: &BTreeMap<String, String>,
    fifo: bool,
    creating: bool,
) -> SqsResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, value) in attrs {
        if !SETTABLE.contains(&name.as_str()) {
            return Err(SqsError::unknown_attribute(name));
        }
        let mut value = value.trim().to_string();
        match name.as_str() {
            "DelaySeconds" => int_in(name, &value, 0, MAX_DELAY)?,
            "MaximumMessageSize" => int_in(name, &value, 1024, DEFAULT_MAX_MESSAGE_SIZE as i64)?,
            "MessageRetentionPeriod" => int_in(name, &value, 60, 1_209_600)?,
            "ReceiveMessageWaitTimeSeconds" => int_in(name, &value, 0, MAX_WAIT)?,
            "VisibilityTimeout" => int_in(name, &value, 0, MAX_VISIBILITY)?,
            "KmsDataKeyReusePeriodSeconds" => int_in(name, &value, 60, 86_400)?,
            "RedrivePolicy" => {
                value = parse_redrive(&value)?
                    .map(|r| r.normalised())
                    .unwrap_or_default();
            }
            "RedriveAllowPolicy" => value = normalise_redrive_allow(&value)?,
            "SqsManagedSseEnabled" => boolean(name, &value)?,
            "FifoQueue" if !creating && fifo => {
                return Err(SqsError::InvalidAttributeValue(
                    "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.".into(),
                ));
            }
            "FifoQueue" if !creating => return Err(SqsError::unknown_attribute(name)),
            "FifoQueue" => {
                boolean(name, &value)?;
                if (value == "true") != fifo {
                    return Err(SqsError::InvalidParameterValue(
                        "The name of a FIFO queue must end with the .fifo suffix, and only FIFO queues may have it.".into(),
                    ));
                }
            }
            "ContentBasedDeduplication" if !fifo => return Err(SqsError::unknown_attribute(name)),
            "DeduplicationScope" | "FifoThroughputLimit" if !fifo => {
                return Err(SqsError::InvalidAttributeName(format!(
                    "You can specify the {name} only when FifoQueue is set to true."
                )));
            }
            "ContentBasedDeduplication" => boolean(name, &value)?,
            "DeduplicationScope" => one_of(name, &value, &["messageGroup", "queue"])?,
            "FifoThroughputLimit" => one_of(name, &value, &["perQueue", "perMessageGroupId"])?,
            "Policy" => value = normalise_policy(&value)?,
            _ => value = value.to_string(),
        }
        if let Ok(n) = value.parse::<i64>() {
            value = n.to_string();
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// A topic seen as a queue.
#[derive(Debug, Clone)]
pub struct Queue {
    /// The topic that stores the queue.
    pub topic: String,
    /// The region and queue name clients use.
    pub id: QueueRef,
    pub info: TopicInfo,
    /// The stored SQS attributes (without the prefix).
    pub attrs: BTreeMap<String, String>,
    pub fifo: bool,
}

impl Queue {
    /// The queue view of a topic; a topic without SQS attributes gets the defaults.
    pub fn from_topic(info: TopicInfo) -> Queue {
        let attrs: BTreeMap<String, String> = info
            .config
            .attributes
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(ATTR_PREFIX)
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        let fifo = info.name.ends_with(".fifo")
            || attrs.get("FifoQueue").map(String::as_str) == Some("true");
        Queue {
            topic: info.name.clone(),
            id: QueueRef::from_topic(&info.name),
            info,
            attrs,
            fifo,
        }
    }

    /// True when the topic carries SQS attributes (it was created or configured as a queue).
    pub fn has_sqs_attributes(&self) -> bool {
        !self.attrs.is_empty()
    }

    fn int_attr(&self, name: &str, default: u32) -> u32 {
        self.attrs
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub fn visibility_timeout(&self) -> u32 {
        self.int_attr("VisibilityTimeout", DEFAULT_VISIBILITY)
    }

    pub fn delay_seconds(&self) -> u32 {
        self.int_attr("DelaySeconds", 0)
    }

    pub fn wait_seconds(&self) -> u32 {
        self.int_attr("ReceiveMessageWaitTimeSeconds", 0)
    }

    pub fn max_message_size(&self) -> u32 {
        self.int_attr("MaximumMessageSize", DEFAULT_MAX_MESSAGE_SIZE)
    }

    pub fn retention_seconds(&self) -> u32 {
        match self.info.config.retention_ms {
            Some(ms) => (ms / 1000).clamp(0, u32::MAX as i64) as u32,
            None => self.int_attr("MessageRetentionPeriod", DEFAULT_RETENTION_S),
        }
    }

    pub fn content_based_dedup(&self) -> bool {
        self.attrs
            .get("ContentBasedDeduplication")
            .map(String::as_str)
            == Some("true")
    }

    pub fn redrive(&self) -> Option<Redrive> {
        self.attrs
            .get("RedrivePolicy")
            .and_then(|v| parse_redrive(v).ok().flatten())
    }

    pub fn partitions(&self) -> u32 {
        self.info.config.partitions.max(1)
    }

    /// The settable attributes with their current values (defaults filled in).
    pub fn settable_values(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert(
            "VisibilityTimeout".into(),
            self.visibility_timeout().to_string(),
        );
        out.insert("DelaySeconds".into(), self.delay_seconds().to_string());
        out.insert(
            "ReceiveMessageWaitTimeSeconds".into(),
            self.wait_seconds().to_string(),
        );
        out.insert(
            "MessageRetentionPeriod".into(),
            self.retention_seconds().to_string(),
        );
        out.insert(
            "MaximumMessageSize".into(),
            self.max_message_size().to_string(),
        );
        out.insert("SqsManagedSseEnabled".into(), "false".into());
        if self.fifo {
            out.insert("FifoQueue".into(), "true".into());
            out.insert(
                "ContentBasedDeduplication".into(),
                self.content_based_dedup().to_string(),
            );
            out.insert("DeduplicationScope".into(), "queue".into());
            out.insert("FifoThroughputLimit".into(), "perQueue".into());
        }
        for (k, v) in &self.attrs {
            if SETTABLE.contains(&k.as_str()) && !v.is_empty() {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }
}

/// Writes SQS attributes into a topic config: the attribute map, and the retention and record
/// size limits they imply.
pub fn apply_attributes(config: &mut TopicConfig, attrs: &BTreeMap<String, String>) {
    for (k, v) in attrs {
        if matches!(
            k.as_str(),
            "RedrivePolicy" | "RedriveAllowPolicy" | "Policy"
        ) && v.is_empty()
        {
            config.attributes.remove(&format!("{ATTR_PREFIX}{k}"));
            continue;
        }
        config
            .attributes
            .insert(format!("{ATTR_PREFIX}{k}"), v.clone());
        match k.as_str() {
            "MessageRetentionPeriod" => {
                config.retention_ms = v.parse::<i64>().ok().map(|s| s * 1000);
            }
            "MaximumMessageSize" => {
                if let Ok(n) = v.parse::<usize>() {
                    config.max_record_bytes = n + HEADER_ALLOWANCE;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(validate_queue_name("orders", false).is_ok());
        assert!(validate_queue_name("orders.fifo", true).is_ok());
        assert!(validate_queue_name("orders.fifo", false).is_err());
        assert!(validate_queue_name("orders", true).is_err());
        assert!(validate_queue_name(&"a".repeat(81), false).is_err());
        assert!(validate_queue_name("", false).is_err());
        let def = |n: &str| QueueRef::new(region::DEFAULT_REGION, n);
        assert_eq!(
            QueueRef::from_url("http://h:1/000000000000/orders", "us-east-1").unwrap(),
            def("orders")
        );
        assert_eq!(
            QueueRef::from_url("orders.fifo", "us-east-1").unwrap(),
            def("orders.fifo")
        );
        assert!(QueueRef::from_url("http://h/a/b c", "us-east-1").is_err());
        assert_eq!(
            QueueRef::from_arn("arn:aws:sqs:us-east-1:000000000000:dlq"),
            Some(def("dlq"))
        );
        assert_eq!(QueueRef::from_arn("dlq"), None);
    }

    #[test]
    fn regions_name_their_own_topics() {
        let eu = QueueRef::from_url("http://h:1/000000000000/orders", "eu-west-1").unwrap();
        assert_eq!(eu, QueueRef::new("eu-west-1", "orders"));
        assert_eq!(eu.topic(), "eu-west-1.orders");
        assert_eq!(QueueRef::from_topic("eu-west-1.orders"), eu);
        assert_eq!(eu.arn(), "arn:aws:sqs:eu-west-1:000000000000:orders");
        assert_eq!(
            eu.url("http://h:1"),
            "http://h:1/queue/eu-west-1/000000000000/orders"
        );
        // The URL's region wins over the request's.
        assert_eq!(
            QueueRef::from_url(&eu.url("http://h:1"), "us-east-1").unwrap(),
            eu
        );
        let us = QueueRef::from_topic("orders");
        assert_eq!(us.region, "us-east-1");
        assert_eq!(us.url("http://h:1/"), "http://h:1/000000000000/orders");
        // Topics that only look regional stay default-region topics.
        assert_eq!(
            QueueRef::from_topic("us-east-1.orders").name,
            "us-east-1.orders"
        );
        assert_eq!(QueueRef::from_topic("eu-west-1.a.b").name, "eu-west-1.a.b");
        assert_eq!(
            QueueRef::from_arn("arn:aws:sqs:eu-west-1:1:q.fifo")
                .unwrap()
                .topic(),
            "eu-west-1.q.fifo"
        );
    }

    #[test]
    fn redrive_policy() {
        let r = parse_redrive(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.dead_letter, QueueRef::new("us-east-1", "dlq"));
        assert_eq!(r.max_receive_count, 3);
        assert!(parse_redrive(r#"{"deadLetterTargetArn":"x","maxReceiveCount":0}"#).is_err());
        assert!(parse_redrive("").unwrap().is_none());
        assert_eq!(
            r.normalised(),
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":3}"#
        );
        assert!(parse_redrive(r#"{"deadLetterTargetArn":"dlq","maxReceiveCount":3}"#).is_err());
        assert!(normalise_redrive_allow(r#"{"redrivePermission":"byQueue"}"#).is_err());
        assert!(normalise_redrive_allow(r#"{"redrivePermission":"nope"}"#).is_err());
        assert_eq!(
            normalise_redrive_allow(r#"{"redrivePermission":"allowAll"}"#).unwrap(),
            r#"{"redrivePermission":"allowAll"}"#
        );
    }
}
