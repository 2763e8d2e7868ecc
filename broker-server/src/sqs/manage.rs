//! Queue management actions: create, find, list, delete, purge, dead-letter sources; and the
//! one way queue settings are rewritten ([`Sqs::update_queue`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{LeaseGroupConfig, StoreError, TopicConfig};
use serde_json::{json, Map, Value};

use super::error::{SqsError, SqsResult};
use super::params::*;
use super::queue::{self, Queue, QueueRef};
use super::{Sqs, LEASE_GROUP};

/// How long a message action may use a queue's description read earlier (see
/// [`Sqs::queue_for_messages`]).
pub(crate) const QUEUE_CACHE_TTL: Duration = Duration::from_secs(1);
/// Queue descriptions cached at most.
const QUEUE_CACHE_MAX: usize = 4096;

/// The lease group config a queue's attributes call for.
pub(super) fn group_config(q: &Queue) -> LeaseGroupConfig {
    let redrive = q.redrive();
    LeaseGroupConfig {
        max_deliveries: redrive.as_ref().map(|r| r.max_receive_count),
        dead_letter_topic: redrive.map(|r| r.dead_letter.topic()),
        ordered_by_key: q.fifo,
        read_uncommitted: false,
    }
}

impl Sqs {
    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The queue stored as `topic`; `QueueDoesNotExist` when there is none.
    pub(super) async fn queue_by_topic(&self, topic: &str) -> SqsResult<Queue> {
        broker_api::validate_topic_name(topic).map_err(|_| SqsError::QueueDoesNotExist)?;
        Ok(Queue::from_topic(self.store.describe_topic(topic).await?))
    }

    /// The queue `id` names; `QueueDoesNotExist` when there is none.
    pub(super) async fn queue_by_id(&self, id: &QueueRef) -> SqsResult<Queue> {
        self.queue_by_topic(&id.topic()).await
    }

    /// The queue the request's `QueueUrl` names, in the URL's region or else the request's.
    pub(super) async fn queue(&self, ctx: &Ctx, input: &Value) -> SqsResult<Queue> {
        let url = req_str(input, "QueueUrl")?;
        self.queue_by_id(&QueueRef::from_url(url, &ctx.region)?)
            .await
    }

    /// The queue the request's `QueueUrl` names, for a message action (send, receive,
    /// delete, change visibility): as described at most [`QUEUE_CACHE_TTL`] ago, so these
    /// actions do not read the queue's settings from the store on every request. AWS
    /// documents that attribute changes take up to 60 seconds to reach every part of SQS;
    /// here a change made through this broker is seen at once (it drops the entry), one made
    /// through another broker or the Kafka API within [`QUEUE_CACHE_TTL`]. Management actions
    /// read the store every time.
    pub(super) async fn queue_for_messages(
        &self,
        ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Arc<Queue>> {
        let url = req_str(input, "QueueUrl")?;
        let topic = QueueRef::from_url(url, &ctx.region)?.topic();
        if let Some((at, q)) = self.queue_cache.lock().get(&topic) {
            if at.elapsed() < QUEUE_CACHE_TTL {
                return Ok(q.clone());
            }
        }
        let q = Arc::new(self.queue_by_topic(&topic).await?);
        let mut cache = self.queue_cache.lock();
        if cache.len() >= QUEUE_CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < QUEUE_CACHE_TTL);
            if cache.len() >= QUEUE_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(topic, (Instant::now(), q.clone()));
        Ok(q)
    }

    /// Drops the cached description of the queue stored as `topic` (after a change to it).
    pub(super) fn forget_queue(&self, topic: &str) {
        self.queue_cache.lock().remove(topic);
    }

    /// Rewrites the config of the queue stored as `topic`: `change` gets the current queue
    /// and a copy of its config to edit; the store is written only when the copy differs.
    /// Rewrites through this function never lose each other's changes (they are serialised
    /// and each reads the config afresh). Returns the queue as it is afterwards.
    pub(super) async fn update_queue(
        &self,
        topic: &str,
        change: impl FnOnce(&Queue, &mut TopicConfig) -> SqsResult<()>,
    ) -> SqsResult<Queue> {
        let _guard = self.config_lock.lock().await;
        let q = self.queue_by_topic(topic).await?;
        let mut config = q.info.config.clone();
        change(&q, &mut config)?;
        if config == q.info.config {
            return Ok(q);
        }
        let updated = self.store.update_topic_config(topic, config).await;
        self.forget_queue(topic);
        Ok(Queue::from_topic(updated?))
    }

    /// Checks that a redrive policy's dead-letter queue exists in `region` (the source
    /// queue's: SQS is regional, so a dead-letter queue of another region does not exist for
    /// it) and is of the queue's kind.
    pub(super) async fn check_redrive(
        &self,
        attrs: &BTreeMap<String, String>,
        fifo: bool,
        region: &str,
    ) -> SqsResult<()> {
        let Some(value) = attrs.get("RedrivePolicy") else {
            return Ok(());
        };
        let Some(r) = queue::parse_redrive(value)? else {
            return Ok(());
        };
        let value = super::error::shorten(value);
        let found = if r.dead_letter.region == region {
            self.queue_by_id(&r.dead_letter).await
        } else {
            Err(SqsError::QueueDoesNotExist)
        };
        let dlq = match found {
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
        let id = QueueRef::new(&ctx.region, name);
        let topic = id.topic();
        let url = id.url(&ctx.base_url);
        let mut attrs = queue::validate_attributes(&requested, fifo, true)?;
        self.check_redrive(&attrs, fifo, &ctx.region).await?;
        if fifo {
            attrs.insert("FifoQueue".into(), "true".into());
        }
        let tags = str_map(input, "tags")?;
        super::tags::check_tags(&tags)?;
        let now_s = (self.now_ms() / 1000).to_string();
        let mut with_times = attrs.clone();
        with_times.insert("CreatedTimestamp".into(), now_s.clone());
        with_times.insert("LastModifiedTimestamp".into(), now_s);

        let mut config = TopicConfig::with_partitions(1);
        config.retention_ms = Some(queue::DEFAULT_RETENTION_S as i64 * 1000);
        config.max_record_bytes =
            queue::DEFAULT_MAX_MESSAGE_SIZE as usize + queue::HEADER_ALLOWANCE;
        queue::apply_attributes(&mut config, &with_times);
        super::tags::apply_tags(&mut config, &tags, &[])?;
        self.forget_queue(&topic);
        let q = match self.store.create_topic(&topic, config).await {
            Ok(info) => Queue::from_topic(info),
            Err(StoreError::TopicExists(_)) => {
                let existing = self.queue_by_topic(&topic).await?;
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
                    return Ok(json!({ "QueueUrl": url }));
                }
                // A topic made by Kafka becomes a configured queue.
                self.update_queue(&topic, |_, config| {
                    queue::apply_attributes(config, &with_times);
                    super::tags::apply_tags(config, &tags, &[])
                })
                .await?
            }
            Err(e) => return Err(e.into()),
        };
        self.store
            .set_lease_group(&topic, LEASE_GROUP, group_config(&q))
            .await?;
        Ok(json!({ "QueueUrl": url }))
    }

    pub(super) async fn get_queue_url(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let name = req_str(input, "QueueName")?;
        let q = self.queue_by_id(&QueueRef::new(&ctx.region, name)).await?;
        Ok(json!({ "QueueUrl": q.id.url(&ctx.base_url) }))
    }

    /// The queues of `region`, sorted by name.
    pub(super) async fn queues_of_region(&self, region: &str) -> SqsResult<Vec<QueueRef>> {
        let mut ids: Vec<QueueRef> = self
            .store
            .list_topics()
            .await?
            .into_iter()
            .map(|t| QueueRef::from_topic(&t.name))
            .filter(|id| id.region == region)
            .collect();
        ids.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ids)
    }

    pub(super) async fn list_queues(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let prefix = opt_str(input, "QueueNamePrefix").unwrap_or("");
        let max = int_in(input, "MaxResults", 1, 1000)?;
        let after = opt_str(input, "NextToken").unwrap_or("");
        let ids: Vec<QueueRef> = self
            .queues_of_region(&ctx.region)
            .await?
            .into_iter()
            .filter(|id| id.name.starts_with(prefix) && id.name.as_str() > after)
            .collect();
        let limit = max.unwrap_or(1000) as usize;
        let more = max.is_some() && ids.len() > limit;
        let page = &ids[..ids.len().min(limit)];
        let mut out = Map::new();
        // As AWS: no QueueUrls member at all when no queue matches.
        if !page.is_empty() {
            out.insert(
                "QueueUrls".into(),
                json!(page
                    .iter()
                    .map(|id| id.url(&ctx.base_url))
                    .collect::<Vec<_>>()),
            );
        }
        if more {
            if let Some(last) = page.last() {
                out.insert("NextToken".into(), json!(last.name));
            }
        }
        Ok(Value::Object(out))
    }

    /// The queues whose RedrivePolicy names `dlq` as their dead-letter queue.
    pub(super) async fn dead_letter_sources(&self, dlq: &Queue) -> SqsResult<Vec<Queue>> {
        let mut out = Vec::new();
        for t in self.store.list_topics().await? {
            let source = Queue::from_topic(t);
            if source
                .redrive()
                .is_some_and(|r| r.dead_letter.topic() == dlq.topic)
            {
                out.push(source);
            }
        }
        Ok(out)
    }

    pub(super) async fn list_dead_letter_source_queues(
        &self,
        ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let max = int_in(input, "MaxResults", 1, 1000)?;
        let after = opt_str(input, "NextToken").unwrap_or("");
        let mut ids: Vec<QueueRef> = self
            .dead_letter_sources(&q)
            .await?
            .into_iter()
            .map(|s| s.id)
            .filter(|id| id.name.as_str() > after)
            .collect();
        ids.sort_by(|a, b| a.name.cmp(&b.name));
        let limit = max.unwrap_or(1000) as usize;
        let more = max.is_some() && ids.len() > limit;
        let page = &ids[..ids.len().min(limit)];
        let mut out = Map::new();
        out.insert(
            "queueUrls".into(),
            json!(page
                .iter()
                .map(|id| id.url(&ctx.base_url))
                .collect::<Vec<_>>()),
        );
        if more {
            if let Some(last) = page.last() {
                out.insert("NextToken".into(), json!(last.name));
            }
        }
        Ok(Value::Object(out))
    }

    pub(super) async fn delete_queue(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let deleted = self.store.delete_topic(&q.topic).await;
        self.forget_queue(&q.topic);
        deleted?;
        self.dedup.lock().remove(&q.topic);
        Ok(json!({}))
    }

    pub(super) async fn purge_queue(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        for p in 0..q.partitions() as i32 {
            let o = self.store.partition_offsets(&q.topic, p).await?;
            self.store
                .delete_records(&q.topic, p, o.high_watermark)
                .await?;
        }
        Ok(json!({}))
    }
}
