//! Queue tags: TagQueue, UntagQueue, ListQueueTags, and the tags of CreateQueue. Kept in the
//! topic config as `sqs-tag.<key>`.

use std::collections::BTreeMap;

use broker_api::TopicConfig;
use serde_json::{json, Map, Value};

use super::error::{SqsError, SqsResult};
use super::params::*;
use super::queue::TAG_PREFIX;
use super::Sqs;

/// Most tags a queue has.
pub const MAX_TAGS: usize = 50;
const MAX_KEY_LEN: usize = 128;
const MAX_VALUE_LEN: usize = 256;

/// Ok when every key is 1-128 characters, does not start with the reserved `aws:`, and every
/// value is at most 256 characters; else `InvalidParameterValue` naming the key or value.
pub fn check_tags(tags: &BTreeMap<String, String>) -> SqsResult<()> {
    for (k, v) in tags {
        let key_len = k.chars().count();
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(SqsError::invalid_value(
                "TagKey",
                k,
                format!("Tag keys must be between 1 and {MAX_KEY_LEN} characters in length."),
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(SqsError::invalid_value(
                "TagKey",
                k,
                "Tag keys must not start with the reserved prefix aws:.",
            ));
        }
        if v.chars().count() > MAX_VALUE_LEN {
            return Err(SqsError::invalid_value(
                "TagValue",
                v,
                format!("Tag values must be at most {MAX_VALUE_LEN} characters in length."),
            ));
        }
    }
    Ok(())
}

/// Removes the tags `remove` from `config`, then adds `set`; `InvalidParameterValue` (and
/// `config` must then be dropped) when the queue would have more than [`MAX_TAGS`].
pub fn apply_tags(
    config: &mut TopicConfig,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> SqsResult<()> {
    for k in remove {
        config.attributes.remove(&format!("{TAG_PREFIX}{k}"));
    }
    for (k, v) in set {
        config
            .attributes
            .insert(format!("{TAG_PREFIX}{k}"), v.clone());
    }
    let count = config
        .attributes
        .keys()
        .filter(|k| k.starts_with(TAG_PREFIX))
        .count();
    if count > MAX_TAGS {
        return Err(SqsError::InvalidParameterValue(format!(
            "Too many tags added for queue: it would have {count}, at most {MAX_TAGS} are allowed."
        )));
    }
    Ok(())
}

impl Sqs {
    pub(super) async fn tag_queue(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let tags = str_map(input, "Tags")?;
        if tags.is_empty() {
            return Err(SqsError::MissingParameter("Tags".into()));
        }
        check_tags(&tags)?;
        self.update_queue(&q.topic, |_, config| apply_tags(config, &tags, &[]))
            .await?;
        Ok(json!({}))
    }

    pub(super) async fn untag_queue(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let keys = str_list(input, "TagKeys");
        if keys.is_empty() {
            return Err(SqsError::MissingParameter("TagKeys".into()));
        }
        self.update_queue(&q.topic, |_, config| {
            apply_tags(config, &BTreeMap::new(), &keys)
        })
        .await?;
        Ok(json!({}))
    }

    pub(super) async fn list_queue_tags(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue(ctx, input).await?;
        let tags: Map<String, Value> = q
            .info
            .config
            .attributes
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(TAG_PREFIX)
                    .map(|k| (k.to_string(), json!(v)))
            })
            .collect();
        if tags.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({ "Tags": tags }))
    }
}
