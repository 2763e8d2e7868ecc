//! Queue management actions: create, find, list, delete, purge, attributes, tags.

use std::collections::BTreeMap;

use broker_api::{LeaseGroupConfig, StoreError, TopicConfig};
use serde_json::{json, Map, Value};

use super::error::{SqsError, SqsResult};
use super::params::*;
use super::queue::{self, Queue};
use super::{Sqs, LEASE_GROUP};

/// The lease group config a queue's attributes call for.
fn group_config(q: &Queue) -> LeaseGroupConfig {
    let redrive = q.redrive();
    LeaseGroupConfig {
        max_deliveries: redrive.as_ref().map(|r| r.max_receive_count),
        dead_letter_topic: redrive.map(|r| r.dead_letter_queue),
        ordered_by_key: q.fifo,
    }
}

impl Sqs {
    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(super) async fn queue_by_name(&self, name: &str) -> SqsResult<Queue> {
        broker_api::validate_topic_name(name).map_err(|_| SqsError::QueueDoesNotExist)?;
        Ok(Queue::from_topic(self.store.describe_topic(name).await?))
    }

    pub(super) async fn queue(&self, input: &Value) -> SqsResult<Queue> {
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
                        // The name already says whether the queue is FIFO.
                        if k == "FifoQueue" {
                            continue;
                        }
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
        if tags.is_empty() {
            return Err(SqsError::MissingParameter("Tags".into()));
        }
        self.write_tags(&q, &tags, &[]).await?;
        Ok(json!({}))
    }

    pub(super) async fn untag_queue(&self, input: &Value) -> SqsResult<Value> {
        let q = self.queue(input).await?;
        let keys = str_list(input, "TagKeys");
        if keys.is_empty() {
            return Err(SqsError::MissingParameter("TagKeys".into()));
        }
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
        if out.is_empty() {
            // AWS leaves the member out when no attribute was asked for or none applies.
            return Ok(json!({}));
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
}
