//! GetQueueAttributes and SetQueueAttributes.

use serde_json::{json, Map, Value};

use super::error::{SqsError, SqsResult};
use super::manage::group_config;
use super::params::*;
use super::queue;
use super::{Sqs, LEASE_GROUP};

impl Sqs {
    pub(super) async fn get_queue_attributes(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
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
                return Err(SqsError::unknown_attribute(n));
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
            out.insert("QueueArn".into(), json!(q.id.arn()));
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
                let c = self.store.lease_counts(&q.topic, p, LEASE_GROUP).await?;
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

    pub(super) async fn set_queue_attributes(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let requested = str_map(input, "Attributes")?;
        let attrs = queue::validate_attributes(&requested, q.fifo, false)?;
        self.check_redrive(&attrs, q.fifo, &q.id.region).await?;
        let now_s = (self.now_ms() / 1000).to_string();
        let updated = self
            .update_queue(&q.topic, |current, config| {
                let mut with_time = attrs.clone();
                with_time.insert("LastModifiedTimestamp".into(), now_s.clone());
                if !current.has_sqs_attributes() {
                    with_time.insert("CreatedTimestamp".into(), now_s.clone());
                }
                queue::apply_attributes(config, &with_time);
                Ok(())
            })
            .await?;
        self.store
            .set_lease_group(&q.topic, LEASE_GROUP, group_config(&updated))
            .await?;
        Ok(json!({}))
    }
}
