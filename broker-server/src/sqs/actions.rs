//! The SQS actions over the store. Each takes the request in the JSON shape of the API and
//! returns the reply in that shape.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{AppendBatch, Lease, LeaseGroupConfig, Record, StoreError, TopicConfig};
use bytes::Bytes;
use futures::future::select_all;
use serde_json::{json, Map, Value};

use super::dedup::{DedupIndex, Original};
use super::error::{SqsError, SqsResult};
use super::message::{self as msg, AttrValue};
use super::queue::{self, Queue};
use super::{receipt, Sqs, LEASE_GROUP};

/// Per-request facts the actions need.
pub struct Ctx {
    /// Prefix of the queue URLs in replies.
    pub base_url: String,
}

// ---- parameters ----

fn opt_str<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input.get(name).and_then(Value::as_str)
}

fn req_str<'a>(input: &'a Value, name: &str) -> SqsResult<&'a str> {
    match input.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(SqsError::MissingParameter(name.into())),
        Some(_) => Err(SqsError::invalid(name, "must be a string")),
    }
}

fn opt_int(input: &Value, name: &str) -> SqsResult<Option<i64>> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| SqsError::invalid(name, "must be an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| SqsError::invalid(name, "must be an integer")),
        Some(_) => Err(SqsError::invalid(name, "must be an integer")),
    }
}

fn int_in(input: &Value, name: &str, lo: i64, hi: i64) -> SqsResult<Option<i64>> {
    match opt_int(input, name)? {
        Some(v) if !(lo..=hi).contains(&v) => Err(SqsError::InvalidParameterValue(format!(
            "Value {v} for parameter {name} is invalid. Reason: Must be between {lo} and {hi}, if provided."
        ))),
        other => Ok(other),
    }
}

fn str_list(input: &Value, name: &str) -> Vec<String> {
    input
        .get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn str_map(input: &Value, name: &str) -> SqsResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match input.get(name) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(SqsError::invalid(name, format!("{k} must be a string"))),
                };
                out.insert(k.clone(), v);
            }
        }
        Some(_) => return Err(SqsError::invalid(name, "must be a map")),
    }
    Ok(out)
}

fn batch_entries<'a>(input: &'a Value, entry_name: &str) -> SqsResult<&'a Vec<Value>> {
    let entries = match input.get("Entries") {
        None | Some(Value::Null) => return Err(SqsError::EmptyBatchRequest(entry_name.into())),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(SqsError::invalid("Entries", "must be a list")),
    };
    if entries.is_empty() {
        return Err(SqsError::EmptyBatchRequest(entry_name.into()));
    }
    if entries.len() > 10 {
        return Err(SqsError::TooManyEntriesInBatchRequest(entries.len()));
    }
    let mut seen = HashSet::new();
    for e in entries {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(SqsError::InvalidBatchEntryId);
        }
        if !seen.insert(id) {
            return Err(SqsError::BatchEntryIdsNotDistinct(id.into()));
        }
    }
    Ok(entries)
}

fn failed_entry(id: &str, e: &SqsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": e.fault() == "Sender",
        "Code": e.query_code(),
        "Message": e.to_string(),
    })
}

fn valid_fifo_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())
}

fn stable_hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A send entry checked and turned into a record.
struct Prepared {
    record: Record,
    sums: Checksums,
    dedup_id: Option<String>,
    group: Option<String>,
    bytes: u64,
}

/// The checksums a send reports.
#[derive(Debug, Clone, Default)]
struct Checksums {
    body: String,
    attrs: Option<String>,
    system: Option<String>,
}

/// What a successful send reports.
struct Sent {
    message_id: String,
    sums: Checksums,
    sequence: Option<String>,
}

impl Sent {
    fn to_json(&self, id: Option<&str>) -> Value {
        let mut m = Map::new();
        if let Some(id) = id {
            m.insert("Id".into(), json!(id));
        }
        m.insert("MessageId".into(), json!(self.message_id));
        m.insert("MD5OfMessageBody".into(), json!(self.sums.body));
        if let Some(a) = &self.sums.attrs {
            m.insert("MD5OfMessageAttributes".into(), json!(a));
        }
        if let Some(a) = &self.sums.system {
            m.insert("MD5OfMessageSystemAttributes".into(), json!(a));
        }
        if let Some(s) = &self.sequence {
            m.insert("SequenceNumber".into(), json!(s));
        }
        Value::Object(m)
    }
}

/// The lease group config a queue's attributes call for.
fn group_config(q: &Queue) -> LeaseGroupConfig {
    let redrive = q.redrive();
    LeaseGroupConfig {
        max_deliveries: redrive.as_ref().map(|r| r.max_receive_count),
        dead_letter_topic: redrive.map(|r| r.dead_letter_queue),
        ordered_by_key: q.fifo,
    }
}

/// Names of the system attributes ReceiveMessage can return.
const SYSTEM_ATTRIBUTES: &[&str] = &[
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SequenceNumber",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
];

impl Sqs {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn queue_by_name(&self, name: &str) -> SqsResult<Queue> {
        broker_api::validate_topic_name(name).map_err(|_| SqsError::QueueDoesNotExist)?;
        Ok(Queue::from_topic(self.store.describe_topic(name).await?))
    }

    async fn queue(&self, input: &Value) -> SqsResult<Queue> {
        let url = req_str(input, "QueueUrl")?;
        self.queue_by_name(&queue::name_from_url(url)?).await
    }

    /// Checks that a redrive policy's dead-letter queue exists and is of the queue's kind.
    async fn check_redrive(&self, attrs: &BTreeMap<String, String>, fifo: bool) -> SqsResult<()> {
        let Some(value) = attrs.get("RedrivePolicy") else {
            return Ok(());
        };
        let Some(r) = queue::parse_redrive(value)? else {
            return Ok(());
        };
        let dlq = match self.queue_by_name(&r.dead_letter_queue).await {
            Ok(q) => q,
            Err(SqsError::QueueDoesNotExist) => {
                return Err(SqsError::InvalidParameterValue(format!(
                    "Value {value} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist."
                )))
            }
            Err(e) => return Err(e),
        };
        if dlq.fifo != fifo {
            return Err(SqsError::InvalidParameterValue(format!(
                "Value {value} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be the same type of queue as the source."
            )));
        }
        Ok(())
    }

    pub(super) async fn create_queue(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let name = req_str(input, "QueueName")?;
        let requested = str_map(input, "Attributes")?;
        let fifo = name.ends_with(".fifo")
            || requested.get("FifoQueue").map(String::as_str) == Some("true");
        queue::validate_queue_name(name, fifo)?;
        let mut attrs = queue::validate_attributes(&requested, fifo, true)?;
        self.check_redrive(&attrs, fifo).await?;
        if fifo {
            attrs.insert("FifoQueue".into(), "true".into());
        }
        let now_s = (self.now_ms() / 1000).to_string();
        let mut with_times = attrs.clone();
        with_times.insert("CreatedTimestamp".into(), now_s.clone());
        with_times.insert("LastModifiedTimestamp".into(), now_s);

        let mut config = TopicConfig::with_partitions(1);
        config.retention_ms = Some(queue::DEFAULT_RETENTION_S as i64 * 1000);
        config.max_record_bytes =
            queue::DEFAULT_MAX_MESSAGE_SIZE as usize + queue::HEADER_ALLOWANCE;
        queue::apply_attributes(&mut config, &with_times);
        let q = match self.store.create_topic(name, config).await {
            Ok(info) => Queue::from_topic(info),
            Err(StoreError::TopicExists(_)) => {
                let existing = self.queue_by_name(name).await?;
                if existing.has_sqs_attributes() {
                    let current = existing.settable_values();
                    for (k, v) in &attrs {
                        if current.get(k) != Some(v) {
                            return Err(SqsError::QueueNameExists(format!(
                                "A queue already exists with the same name and a different value for attribute {k}"
                            )));
                        }
                    }
                    return Ok(json!({"QueueUrl": queue::queue_url(&ctx.base_url, name)}));
                }
                // A topic made by Kafka becomes a configured queue.
                let mut config = existing.info.config.clone();
                queue::apply_attributes(&mut config, &with_times);
                Queue::from_topic(self.store.update_topic_config(name, config).await?)
            }
            Err(e) => return Err(e.into()),
        };
        self.store
            .set_lease_group(name, LEASE_GROUP, group_config(&q))
            .await?;
        let tags = str_map(input, "tags")?;
        if !tags.is_empty() {
            self.write_tags(&q, &tags, &[]).await?;
        }
        Ok(json!({"QueueUrl": queue::queue_url(&ctx.base_url, name)}))
    }

    pub(super) async fn get_queue_url(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let name = req_str(input, "QueueName")?;
        let q = self.queue_by_name(name).await?;
        Ok(json!({"QueueUrl": queue::queue_url(&ctx.base_url, &q.name)}))
    }

    pub(super) async fn list_queues(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let prefix = opt_str(input, "QueueNamePrefix").unwrap_or("");
        let max = int_in(input, "MaxResults", 1, 1000)?;
        let after = opt_str(input, "NextToken").unwrap_or("");
        let names: Vec<String> = self
            .store
            .list_topics()
            .await?
            .into_iter()
            .map(|t| t.name)
            .filter(|n| n.starts_with(prefix) && n.as_str() > after)
            .collect();
        let limit = max.unwrap_or(1000) as usize;
        let more = max.is_some() && names.len() > limit;
        let page: Vec<&String> = names.iter().take(limit).collect();
        let mut out = Map::new();
        out.insert(
            "QueueUrls".into(),
            json!(page
                .iter()
                .map(|n| queue::queue_url(&ctx.base_url, n))
                .collect::<Vec<_>>()),
        );
        if more {
            if let Some(last) = page.last() {
                out.insert("NextToken".into(), json!(last));
            }
        }
        Ok(Value::Object(out))
    }

    pub(super) async fn tag_queue(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let tags = str_map(input, "Tags")?;
        self.write_tags(&q, &tags, &[]).await?;
        Ok(json!({}))
    }

    pub(super) async fn untag_queue(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let keys = str_list(input, "TagKeys");
        self.write_tags(&q, &BTreeMap::new(), &keys).await?;
        Ok(json!({}))
    }

    pub(super) async fn list_queue_tags(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let tags: Map<String, Value> = q
            .info
            .config
            .attributes
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(queue::TAG_PREFIX)
                    .map(|k| (k.to_string(), json!(v)))
            })
            .collect();
        if tags.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({ "Tags": tags }))
    }

    /// Adds `set` and removes `remove` from the queue's tags (at most 50 in all).
    async fn write_tags(
        &self,
        q: &Queue,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> SqsResult<()> {
        for (k, v) in set {
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                return Err(SqsError::InvalidParameterValue(format!(
                    "Tag {k:?}: keys must be 1-128 characters and values at most 256."
                )));
            }
        }
        let mut config = q.info.config.clone();
        for k in remove {
            config
                .attributes
                .remove(&format!("{}{k}", queue::TAG_PREFIX));
        }
        for (k, v) in set {
            config
                .attributes
                .insert(format!("{}{k}", queue::TAG_PREFIX), v.clone());
        }
        let count = config
            .attributes
            .keys()
            .filter(|k| k.starts_with(queue::TAG_PREFIX))
            .count();
        if count > 50 {
            return Err(SqsError::InvalidParameterValue(
                "Too many tags: a queue has at most 50.".into(),
            ));
        }
        if config != q.info.config {
            self.store.update_topic_config(&q.name, config).await?;
        }
        Ok(())
    }

    pub(super) async fn list_dead_letter_source_queues(
        &self,
        ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let mut urls = Vec::new();
        for t in self.store.list_topics().await? {
            let source = Queue::from_topic(t);
            if source
                .redrive()
                .is_some_and(|r| r.dead_letter_queue == q.name)
            {
                urls.push(queue::queue_url(&ctx.base_url, &source.name));
            }
        }
        Ok(json!({ "queueUrls": urls }))
    }

    pub(super) async fn delete_queue(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        self.store.delete_topic(&q.name).await?;
        self.dedup.lock().remove(&q.name);
        Ok(json!({}))
    }

    pub(super) async fn purge_queue(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        for p in 0..q.partitions() as i32 {
            let o = self.store.partition_offsets(&q.name, p).await?;
            self.store
                .delete_records(&q.name, p, o.high_watermark)
                .await?;
        }
        Ok(json!({}))
    }

    pub(super) async fn get_queue_attributes(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let names = str_list(input, "AttributeNames");
        let all = names.iter().any(|n| n == "All");
        let settable = q.settable_values();
        let mut wanted: Vec<String> = Vec::new();
        for n in &names {
            if n == "All" {
                continue;
            }
            if !settable.contains_key(n)
                && !queue::READ_ONLY.contains(&n.as_str())
                && !matches!(
                    n.as_str(),
                    "Policy"
                        | "RedrivePolicy"
                        | "RedriveAllowPolicy"
                        | "KmsMasterKeyId"
                        | "KmsDataKeyReusePeriodSeconds"
                        | "FifoQueue"
                        | "ContentBasedDeduplication"
                        | "DeduplicationScope"
                        | "FifoThroughputLimit"
                )
            {
                return Err(SqsError::InvalidAttributeName(n.clone()));
            }
            wanted.push(n.clone());
        }
        let want = |n: &str| all || wanted.iter().any(|w| w == n);
        let mut out = Map::new();
        for (k, v) in &settable {
            if want(k) {
                out.insert(k.clone(), json!(v));
            }
        }
        if want("QueueArn") {
            out.insert("QueueArn".into(), json!(queue::queue_arn(&q.name)));
        }
        for ts in ["CreatedTimestamp", "LastModifiedTimestamp"] {
            if want(ts) {
                let v = q.attrs.get(ts).cloned().unwrap_or_else(|| "0".into());
                out.insert(ts.into(), json!(v));
            }
        }
        let counts = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ];
        if counts.iter().any(|c| want(c)) {
            let (mut visible, mut inflight, mut delayed) = (0u64, 0u64, 0u64);
            for p in 0..q.partitions() as i32 {
                let c = self.store.lease_counts(&q.name, p, LEASE_GROUP).await?;
                visible += c.available;
                inflight += c.leased;
                delayed += c.delayed;
            }
            for (name, v) in counts.iter().zip([visible, inflight, delayed]) {
                if want(name) {
                    out.insert((*name).into(), json!(v.to_string()));
                }
            }
        }
        Ok(json!({ "Attributes": out }))
    }

    pub(super) async fn set_queue_attributes(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let requested = str_map(input, "Attributes")?;
        let attrs = queue::validate_attributes(&requested, q.fifo, false)?;
        self.check_redrive(&attrs, q.fifo).await?;
        let mut with_time = attrs.clone();
        with_time.insert(
            "LastModifiedTimestamp".into(),
            (self.now_ms() / 1000).to_string(),
        );
        if !q.has_sqs_attributes() {
            with_time.insert(
                "CreatedTimestamp".into(),
                (self.now_ms() / 1000).to_string(),
            );
        }
        let mut config = q.info.config.clone();
        queue::apply_attributes(&mut config, &with_time);
        let updated = Queue::from_topic(self.store.update_topic_config(&q.name, config).await?);
        self.store
            .set_lease_group(&q.name, LEASE_GROUP, group_config(&updated))
            .await?;
        Ok(json!({}))
    }

    // ---- send ----

    fn prepare(&self, q: &Queue, entry: &Value, now_ms: i64) -> SqsResult<Prepared> {
        let body = match entry.get("MessageBody") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(SqsError::MissingParameter("MessageBody".into()))
            }
            Some(_) => return Err(SqsError::invalid("MessageBody", "must be a string")),
        };
        if !msg::valid_body_chars(body) {
            return Err(SqsError::InvalidMessageContents(
                "Invalid binary character in the message body.".into(),
            ));
        }
        let delay = int_in(entry, "DelaySeconds", 0, queue::MAX_DELAY)?;
        if q.fifo && delay.is_some_and(|d| d > 0) {
            return Err(SqsError::InvalidParameterValue(
                "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.".into(),
            ));
        }
        let attrs = msg::parse_attributes(entry.get("MessageAttributes"))?;
        let size = body.len() + attrs.iter().map(|(k, a)| a.size(k)).sum::<usize>();
        let limit = q.max_message_size() as usize;
        if size > limit {
            return Err(SqsError::InvalidParameterValue(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )));
        }
        let group = opt_str(entry, "MessageGroupId").map(str::to_string);
        let mut dedup = opt_str(entry, "MessageDeduplicationId").map(str::to_string);
        if let Some(g) = &group {
            if !valid_fifo_id(g) {
                return Err(SqsError::invalid(
                    "MessageGroupId",
                    "must be 1-128 printable ASCII characters",
                ));
            }
        }
        if let Some(d) = &dedup {
            if !q.fifo {
                return Err(SqsError::InvalidParameterValue(
                    "Value for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.".into(),
                ));
            }
            if !valid_fifo_id(d) {
                return Err(SqsError::invalid(
                    "MessageDeduplicationId",
                    "must be 1-128 printable ASCII characters",
                ));
            }
        }
        if q.fifo {
            if group.is_none() {
                return Err(SqsError::MissingParameter("MessageGroupId".into()));
            }
            if dedup.is_none() {
                if !q.content_based_dedup() {
                    return Err(SqsError::InvalidParameterValue(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
                    ));
                }
                dedup = Some(msg::content_dedup_id(body.as_bytes()));
            }
        }
        let mut headers = msg::attribute_headers(&attrs);
        if let Some(g) = &group {
            headers.push(broker_api::Header {
                key: msg::GROUP_HEADER.into(),
                value: Some(Bytes::copy_from_slice(g.as_bytes())),
            });
        }
        if let Some(d) = &dedup {
            headers.push(broker_api::Header {
                key: msg::DEDUP_HEADER.into(),
                value: Some(Bytes::copy_from_slice(d.as_bytes())),
            });
        }
        let system = msg::parse_attributes(entry.get("MessageSystemAttributes"))?;
        for (name, a) in &system {
            if name != "AWSTraceHeader" || a.data_type != "String" {
                return Err(SqsError::InvalidParameterValue(format!(
                    "Message system attribute {name} is not supported; only AWSTraceHeader (String) is."
                )));
            }
            headers.push(broker_api::Header {
                key: msg::TRACE_HEADER.into(),
                value: Some(a.value.clone()),
            });
        }
        let delay = delay.unwrap_or(q.delay_seconds() as i64);
        let record = Record {
            key: if q.fifo {
                group.as_ref().map(|g| Bytes::copy_from_slice(g.as_bytes()))
            } else {
                None
            },
            value: Some(Bytes::copy_from_slice(body.as_bytes())),
            headers,
            timestamp_ms: None,
            not_before_ms: (delay > 0).then(|| now_ms + delay * 1000),
        };
        let bytes = record.size() as u64;
        Ok(Prepared {
            record,
            sums: Checksums {
                body: msg::md5_hex(body.as_bytes()),
                attrs: msg::md5_of_attributes(&attrs),
                system: msg::md5_of_attributes(&system),
            },
            dedup_id: dedup,
            group,
            bytes,
        })
    }

    fn dedup_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<Option<DedupIndex>>> {
        self.dedup
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Appends the prepared entries; one result per entry, in order.
    async fn send_entries(
        &self,
        q: &Queue,
        prepared: Vec<SqsResult<Prepared>>,
    ) -> SqsResult<Vec<SqsResult<Sent>>> {
        let n = q.partitions();
        let now = self.now_ms();
        let lock = if q.fifo {
            Some(self.dedup_lock(&q.name))
        } else {
            None
        };
        let mut guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        if let Some(g) = guard.as_mut() {
            if g.is_none() {
                **g = Some(DedupIndex::load(self.store.as_ref(), &q.name, n, now).await?);
            }
        }
        let rr = self.round_robin.fetch_add(1, Ordering::Relaxed) as u32 % n;

        enum Slot {
            Done(SqsResult<Sent>),
            Dup(Original),
            SameAs(usize),
            Pending(i32, usize),
        }
        let mut slots = Vec::with_capacity(prepared.len());
        let mut md5s = Vec::with_capacity(prepared.len());
        let mut by_partition: BTreeMap<i32, Vec<Prepared>> = BTreeMap::new();
        let mut in_batch: HashMap<String, usize> = HashMap::new();
        for (i, p) in prepared.into_iter().enumerate() {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    slots.push(Slot::Done(Err(e)));
                    md5s.push(Checksums::default());
                    continue;
                }
            };
            md5s.push(p.sums.clone());
            if let (Some(id), Some(g)) = (&p.dedup_id, guard.as_mut()) {
                let index = g.as_mut().expect("index loaded");
                if let Some(orig) = index.get(id, now) {
                    slots.push(Slot::Dup(orig));
                    continue;
                }
                if let Some(&first) = in_batch.get(id) {
                    slots.push(Slot::SameAs(first));
                    continue;
                }
                in_batch.insert(id.clone(), i);
            }
            let partition = match &p.group {
                Some(g) if q.fifo => (stable_hash(g) % n as u64) as i32,
                _ => rr as i32,
            };
            let list = by_partition.entry(partition).or_default();
            slots.push(Slot::Pending(partition, list.len()));
            list.push(p);
        }

        let mut appended: HashMap<i32, SqsResult<(i64, i64)>> = HashMap::new();
        let mut dedup_ids: HashMap<i32, Vec<Option<String>>> = HashMap::new();
        for (partition, list) in by_partition {
            let bytes: u64 = list.iter().map(|p| p.bytes).sum();
            let count = list.len() as u64;
            dedup_ids.insert(partition, list.iter().map(|p| p.dedup_id.clone()).collect());
            let records = list.into_iter().map(|p| p.record).collect();
            let r = self
                .store
                .append(&q.name, partition, AppendBatch::new(records))
                .await;
            match r {
                Ok(res) => {
                    self.metrics.appended(&q.name, count, bytes);
                    appended.insert(partition, Ok((res.base_offset, res.append_time_ms)));
                }
                Err(e) => {
                    appended.insert(partition, Err(e.into()));
                }
            }
        }
        if let Some(g) = guard.as_mut() {
            let index = g.as_mut().expect("index loaded");
            for (partition, ids) in &dedup_ids {
                if let Some(Ok((base, ts))) = appended.get(partition) {
                    for (i, id) in ids.iter().enumerate() {
                        if let Some(id) = id {
                            let o = Original {
                                partition: *partition,
                                offset: base + i as i64,
                                sent_ms: *ts,
                            };
                            index.insert(id.clone(), o, now);
                        }
                    }
                }
            }
        }
        drop(guard);

        let sent = |partition: i32, offset: i64, sums: &Checksums| Sent {
            message_id: msg::message_id(&q.name, partition, offset),
            sums: sums.clone(),
            sequence: q.fifo.then(|| msg::sequence_number(partition, offset)),
        };
        let mut out: Vec<SqsResult<Sent>> = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            let r = match slot {
                Slot::Done(Err(e)) => Err(e.clone()),
                Slot::Done(Ok(_)) => unreachable!("no slot is created done and successful"),
                Slot::Dup(o) => Ok(sent(o.partition, o.offset, &md5s[i])),
                Slot::SameAs(first) => match &out[*first] {
                    Ok(s) => Ok(Sent {
                        message_id: s.message_id.clone(),
                        sums: md5s[i].clone(),
                        sequence: s.sequence.clone(),
                    }),
                    Err(e) => Err(e.clone()),
                },
                Slot::Pending(partition, pos) => match &appended[partition] {
                    Ok((base, _)) => Ok(sent(*partition, base + *pos as i64, &md5s[i])),
                    Err(e) => Err(e.clone()),
                },
            };
            out.push(r);
        }
        Ok(out)
    }

    pub(super) async fn send_message(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let p = self.prepare(&q, input, self.now_ms())?;
        let mut r = self.send_entries(&q, vec![Ok(p)]).await?;
        Ok(r.remove(0)?.to_json(None))
    }

    pub(super) async fn send_message_batch(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let entries = batch_entries(input, "SendMessageBatchRequestEntry")?;
        let total: usize = entries
            .iter()
            .map(|e| {
                e.get("MessageBody")
                    .and_then(Value::as_str)
                    .map_or(0, str::len)
                    + msg::parse_attributes(e.get("MessageAttributes"))
                        .map(|a| a.iter().map(|(k, v)| v.size(k)).sum::<usize>())
                        .unwrap_or(0)
            })
            .sum();
        let limit = q.max_message_size() as usize;
        if total > limit {
            return Err(SqsError::BatchRequestTooLong(format!(
                "Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."
            )));
        }
        let now = self.now_ms();
        let prepared = entries.iter().map(|e| self.prepare(&q, e, now)).collect();
        let results = self.send_entries(&q, prepared).await?;
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for (e, r) in entries.iter().zip(results) {
            let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
            match r {
                Ok(s) => ok.push(s.to_json(Some(id))),
                Err(err) => failed.push(failed_entry(id, &err)),
            }
        }
        Ok(json!({"Successful": ok, "Failed": failed}))
    }

    // ---- receive ----

    /// Leases up to `max` records across the queue's partitions, starting at a rotating one.
    async fn lease_any(
        &self,
        q: &Queue,
        max: usize,
        visibility: Duration,
    ) -> SqsResult<Vec<Lease>> {
        let n = q.partitions() as usize;
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % n;
        let mut out = Vec::new();
        for i in 0..n {
            if out.len() >= max {
                break;
            }
            let p = ((start + i) % n) as i32;
            let got = self
                .store
                .lease(&q.name, p, LEASE_GROUP, max - out.len(), visibility)
                .await?;
            out.extend(got);
        }
        Ok(out)
    }

    /// Leases up to `max` records, waiting up to `wait` for one to arrive.
    async fn lease_wait(
        &self,
        q: &Queue,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> SqsResult<Vec<Lease>> {
        let deadline = Instant::now() + wait;
        loop {
            let mut marks = Vec::new();
            if !wait.is_zero() {
                for p in 0..q.partitions() as i32 {
                    marks.push(
                        self.store
                            .partition_offsets(&q.name, p)
                            .await?
                            .high_watermark,
                    );
                }
            }
            let leases = self.lease_any(q, max, visibility).await?;
            let now = Instant::now();
            if !leases.is_empty() || now >= deadline {
                return Ok(leases);
            }
            // Woken by an append; the cap covers expiring leases and delays.
            let step = (deadline - now).min(Duration::from_secs(1));
            let waits = marks.iter().enumerate().map(|(p, &hw)| {
                let store = self.store.clone();
                let name = q.name.clone();
                Box::pin(async move { store.wait_for(&name, p as i32, hw, step).await })
            });
            let mut stop = self.shutdown.clone();
            let stopping = async {
                match stop.as_mut() {
                    Some(rx) => {
                        let _ = rx.wait_for(|v| *v).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                (r, _, _) = select_all(waits) => { r?; }
                _ = stopping => return Ok(Vec::new()),
            }
        }
    }

    /// A `.fifo` topic made outside the API gets the key-ordered lease group FIFO needs.
    async fn ensure_fifo_group(&self, q: &Queue) -> SqsResult<()> {
        let groups = self.store.lease_groups(&q.name).await?;
        let mut config = groups.get(LEASE_GROUP).cloned().unwrap_or_default();
        if !config.ordered_by_key {
            config.ordered_by_key = true;
            self.store
                .set_lease_group(&q.name, LEASE_GROUP, config)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn receive_message(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        if q.fifo && !q.has_sqs_attributes() {
            self.ensure_fifo_group(&q).await?;
        }
        let max = int_in(input, "MaxNumberOfMessages", 1, 10)?.unwrap_or(1) as usize;
        let visibility = int_in(input, "VisibilityTimeout", 0, queue::MAX_VISIBILITY)?
            .unwrap_or(q.visibility_timeout() as i64);
        let wait = int_in(input, "WaitTimeSeconds", 0, queue::MAX_WAIT)?
            .unwrap_or(q.wait_seconds() as i64);
        let mut system = str_list(input, "AttributeNames");
        system.extend(str_list(input, "MessageSystemAttributeNames"));
        let user = str_list(input, "MessageAttributeNames");
        let leases = self
            .lease_wait(
                &q,
                max,
                Duration::from_secs(visibility as u64),
                Duration::from_secs(wait as u64),
            )
            .await?;
        let messages: Vec<Value> = leases
            .iter()
            .map(|l| self.message_json(&q, l, &system, &user))
            .collect();
        Ok(json!({ "Messages": messages }))
    }

    fn message_json(&self, q: &Queue, l: &Lease, system: &[String], user: &[String]) -> Value {
        let r = &l.record;
        let body = r
            .value
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let mut m = Map::new();
        m.insert(
            "MessageId".into(),
            json!(msg::message_id(&q.name, l.token.partition, r.offset)),
        );
        m.insert(
            "ReceiptHandle".into(),
            json!(receipt::encode(&q.name, &l.token)),
        );
        m.insert("MD5OfBody".into(), json!(msg::md5_hex(body.as_bytes())));
        m.insert("Body".into(), json!(body));
        let all = system.iter().any(|s| s == "All");
        let want = |n: &str| all || system.iter().any(|s| s == n);
        let mut attrs = Map::new();
        for name in SYSTEM_ATTRIBUTES {
            if !want(name) {
                continue;
            }
            let v = match *name {
                "SenderId" => Some(queue::ACCOUNT_ID.to_string()),
                "SentTimestamp" => Some(r.timestamp_ms.to_string()),
                "ApproximateReceiveCount" => Some(l.delivery_count.to_string()),
                "ApproximateFirstReceiveTimestamp" => Some(l.first_leased_at_ms.to_string()),
                "MessageGroupId" => msg::header_str(r, msg::GROUP_HEADER).or_else(|| {
                    q.fifo
                        .then(|| {
                            r.key
                                .as_ref()
                                .map(|k| String::from_utf8_lossy(k).into_owned())
                        })
                        .flatten()
                }),
                "MessageDeduplicationId" => msg::header_str(r, msg::DEDUP_HEADER),
                "SequenceNumber" => q
                    .fifo
                    .then(|| msg::sequence_number(l.token.partition, r.offset)),
                "AWSTraceHeader" => msg::header_str(r, msg::TRACE_HEADER),
                "DeadLetterQueueSourceArn" => {
                    msg::header_str(r, broker_api::dead_letter_headers::SOURCE_TOPIC)
                        .map(|t| queue::queue_arn(&t))
                }
                _ => None,
            };
            if let Some(v) = v {
                attrs.insert((*name).into(), json!(v));
            }
        }
        if !attrs.is_empty() {
            m.insert("Attributes".into(), Value::Object(attrs));
        }
        let selected: BTreeMap<String, AttrValue> =
            msg::select_attributes(&msg::attributes_of(r), user);
        if let Some(md5) = msg::md5_of_attributes(&selected) {
            m.insert("MD5OfMessageAttributes".into(), json!(md5));
            m.insert("MessageAttributes".into(), msg::attributes_json(&selected));
        }
        Value::Object(m)
    }

    // ---- delete and visibility ----

    fn token(&self, q: &Queue, handle: &str) -> SqsResult<broker_api::LeaseToken> {
        let t = receipt::decode(&q.name, handle)?;
        if t.partition as u32 >= q.partitions() {
            return Err(SqsError::ReceiptHandleIsInvalid(
                handle.chars().take(100).collect(),
            ));
        }
        Ok(t)
    }

    fn stale_delete(q: &Queue, handle: &str) -> SqsResult<()> {
        if q.fifo {
            Err(SqsError::InvalidParameterValue(format!(
                "Value {handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."
            )))
        } else {
            // Standard queues accept a stale handle and keep the message.
            Ok(())
        }
    }

    pub(super) async fn delete_message(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let handle = req_str(input, "ReceiptHandle")?;
        let token = self.token(&q, handle)?;
        let mut r = self.store.ack(&q.name, LEASE_GROUP, &[token]).await?;
        match r.pop() {
            Some(Ok(())) => {}
            Some(Err(StoreError::LeaseExpired)) => Self::stale_delete(&q, handle)?,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(SqsError::Internal("ack returned no result".into())),
        }
        Ok(json!({}))
    }

    pub(super) async fn delete_message_batch(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let entries = batch_entries(input, "DeleteMessageBatchRequestEntry")?;
        let mut results: Vec<Option<SqsResult<()>>> = vec![None; entries.len()];
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match req_str(e, "ReceiptHandle").and_then(|h| self.token(&q, h)) {
                Ok(t) => {
                    tokens.push(t);
                    positions.push(i);
                }
                Err(err) => results[i] = Some(Err(err)),
            }
        }
        if !tokens.is_empty() {
            let acked = self.store.ack(&q.name, LEASE_GROUP, &tokens).await?;
            for (pos, r) in positions.into_iter().zip(acked) {
                let handle = entries[pos]
                    .get("ReceiptHandle")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                results[pos] = Some(match r {
                    Ok(()) => Ok(()),
                    Err(StoreError::LeaseExpired) => Self::stale_delete(&q, handle),
                    Err(e) => Err(e.into()),
                });
            }
        }
        Ok(batch_reply(entries, results))
    }

    async fn change_visibility(&self, q: &Queue, entry: &Value) -> SqsResult<()> {
        let handle = req_str(entry, "ReceiptHandle")?;
        let visibility = int_in(entry, "VisibilityTimeout", 0, queue::MAX_VISIBILITY)?
            .ok_or_else(|| SqsError::MissingParameter("VisibilityTimeout".into()))?;
        let token = self.token(q, handle)?;
        let r = if visibility == 0 {
            self.store
                .release(&q.name, LEASE_GROUP, token, Duration::ZERO)
                .await
        } else {
            self.store
                .extend(
                    &q.name,
                    LEASE_GROUP,
                    token,
                    Duration::from_secs(visibility as u64),
                )
                .await
                .map(|_| ())
        };
        match r {
            Ok(()) => Ok(()),
            Err(StoreError::LeaseExpired) => Err(SqsError::InvalidParameterValue(format!(
                "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn change_message_visibility(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        self.change_visibility(&q, input).await?;
        Ok(json!({}))
    }

    pub(super) async fn change_message_visibility_batch(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let entries = batch_entries(input, "ChangeMessageVisibilityBatchRequestEntry")?;
        let mut results = Vec::with_capacity(entries.len());
        for e in entries {
            let r = self.change_visibility(&q, e).await;
            if let Err(err) = &r {
                if matches!(err, SqsError::ServiceUnavailable(_) | SqsError::Internal(_)) {
                    return Err(err.clone());
                }
            }
            results.push(Some(r));
        }
        Ok(batch_reply(entries, results))
    }
}

fn batch_reply(entries: &[Value], results: Vec<Option<SqsResult<()>>>) -> Value {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (e, r) in entries.iter().zip(results) {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
        match r {
            Some(Ok(())) => ok.push(json!({ "Id": id })),
            Some(Err(err)) => failed.push(failed_entry(id, &err)),
            None => failed.push(failed_entry(
                id,
                &SqsError::Internal("not processed".into()),
            )),
        }
    }
    json!({"Successful": ok, "Failed": failed})
}
