//! Topics: `GET /api/v1/topics` (every topic with sizes), `GET /api/v1/topics/{topic}`
//! (partitions with offsets and sizes), `GET|POST /api/v1/topics/{topic}/configs`, and
//! `POST /api/v1/topics`, `DELETE /api/v1/topics/{topic}`. Changes run through
//! [`crate::admin::kafka::KafkaAdmin`], as `broker admin topics ...` does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use broker_api::{validate_topic_name, TopicConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{json_body, valid_name, ApiError, ApiResult, Console, MAX_ITEMS};
use crate::backlog;

/// A topic in the list.
#[derive(Debug, Serialize)]
pub struct TopicSummary {
    pub topic: String,
    pub partitions: u32,
    /// Records between log start and end, over all partitions.
    pub records: u64,
    /// Bytes on disk (log store) or of records in tables (PostgreSQL); `None` when the store
    /// does not say.
    pub bytes: Option<u64>,
    /// True for SQS queues.
    pub queue: bool,
    /// Records and bytes appended since the broker started.
    pub appended_records: u64,
    pub appended_bytes: u64,
}

/// One partition of a topic.
#[derive(Debug, Serialize)]
pub struct PartitionSummary {
    pub partition: i32,
    pub log_start: i64,
    pub end: i64,
    pub records: i64,
    pub bytes: Option<u64>,
}

/// `GET /api/v1/topics/{topic}`.
#[derive(Debug, Serialize)]
pub struct TopicDetail {
    pub topic: String,
    pub queue: bool,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionSummary>,
    pub appended_records: u64,
    pub appended_bytes: u64,
}

/// Bytes per (topic, partition) as the store reports them; empty when it cannot.
async fn sizes(c: &Console, topic: Option<&str>) -> HashMap<(String, i32), u64> {
    match c.store.report(topic).await {
        Ok(r) => r
            .partitions
            .into_iter()
            .map(|p| ((p.topic, p.partition), p.bytes))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// Every topic, sorted by name, with its records and size.
pub async fn list(State(c): State<Arc<Console>>) -> ApiResult<Json<Vec<TopicSummary>>> {
    let topics = c
        .store
        .list_topics()
        .await
        .map_err(|e| ApiError::store("listing topics", e))?;
    let sizes = sizes(&c, None).await;
    let appended = c.metrics.appended_by_topic();
    let mut out = Vec::with_capacity(topics.len());
    let mut walked = 0usize;
    for t in topics.into_iter().take(MAX_ITEMS) {
        let queue = match c.store.lease_groups(&t.name).await {
            Ok(g) => backlog::is_queue(&t, &g),
            Err(_) => continue, // deleted meanwhile
        };
        let (mut records, mut bytes) = (0u64, None::<u64>);
        for p in 0..t.config.partitions as i32 {
            walked += 1;
            if walked > MAX_ITEMS {
                break;
            }
            if let Ok(o) = c.store.partition_offsets(&t.name, p).await {
                records += (o.high_watermark - o.log_start_offset).max(0) as u64;
            }
            if let Some(b) = sizes.get(&(t.name.clone(), p)) {
                *bytes.get_or_insert(0) += b;
            }
        }
        let (ar, ab) = appended.get(&t.name).copied().unwrap_or_default();
        out.push(TopicSummary {
            partitions: t.config.partitions,
            topic: t.name,
            records,
            bytes,
            queue,
            appended_records: ar,
            appended_bytes: ab,
        });
    }
    Ok(Json(out))
}

/// One topic: its stored settings and every partition's offsets and size.
pub async fn describe(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
) -> ApiResult<Json<TopicDetail>> {
    let what = format!("topic {topic:?}");
    let info = c.topic(&topic).await?;
    let groups = c
        .store
        .lease_groups(&topic)
        .await
        .map_err(|e| ApiError::store(&what, e))?;
    let sizes = sizes(&c, Some(&topic)).await;
    let mut partitions = Vec::new();
    for p in 0..(info.config.partitions as i32).min(MAX_ITEMS as i32) {
        let o = c
            .store
            .partition_offsets(&topic, p)
            .await
            .map_err(|e| ApiError::store(&what, e))?;
        partitions.push(PartitionSummary {
            partition: p,
            log_start: o.log_start_offset,
            end: o.high_watermark,
            records: (o.high_watermark - o.log_start_offset).max(0),
            bytes: sizes.get(&(topic.clone(), p)).copied(),
        });
    }
    let (ar, ab) = c
        .metrics
        .appended_by_topic()
        .get(&topic)
        .copied()
        .unwrap_or_default();
    Ok(Json(TopicDetail {
        queue: backlog::is_queue(&info, &groups),
        topic,
        config: info.config,
        partitions,
        appended_records: ar,
        appended_bytes: ab,
    }))
}

/// A topic setting as Kafka's DescribeConfigs reports it.
#[derive(Debug, Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// `topic` when set on the topic, `default` otherwise.
    pub source: &'static str,
}

/// The topic's Kafka settings (retention.ms, cleanup.policy, ...), as `broker admin topics
/// describe` shows them.
pub async fn configs(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Vec<ConfigEntry>>> {
    check_name(&topic)?;
    let entries = c
        .admin()
        .topic_configs(&topic)
        .await
        .map_err(ApiError::admin)?;
    Ok(Json(
        entries
            .into_iter()
            .map(|(name, value, source)| ConfigEntry {
                name,
                value,
                source,
            })
            .collect(),
    ))
}

/// The body of `POST /api/v1/topics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    pub name: String,
    #[serde(default = "one")]
    pub partitions: i32,
    /// Kafka topic settings, e.g. `{"retention.ms": "86400000"}`.
    #[serde(default)]
    pub configs: BTreeMap<String, Value>,
}

fn one() -> i32 {
    1
}

/// A 400 naming the topic when it is not a valid name.
fn check_name(topic: &str) -> ApiResult<()> {
    valid_name("topic", topic, validate_topic_name)
}

/// Settings as Kafka strings: numbers and booleans are written as text; a setting whose
/// value is not a string, number or boolean is a 400 naming it.
fn settings(map: BTreeMap<String, Value>) -> ApiResult<Vec<(String, String)>> {
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(ApiError::bad_request(format!(
                "setting {k:?} has value {other}, which is not a string or a number"
            ))),
        })
        .collect()
}

/// Creates a topic (CreateTopics); 201 with the new topic, 409 when it exists, 400 for a bad
/// name, partition count or setting.
pub async fn create(
    State(c): State<Arc<Console>>,
    body: Result<Json<CreateTopic>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = json_body(body)?;
    check_name(&req.name)?;
    if req.partitions < 1 {
        return Err(ApiError::bad_request(format!(
            "partitions must be at least 1, got {}",
            req.partitions
        )));
    }
    let configs = settings(req.configs)?;
    let out = c
        .admin()
        .topics_create(&req.name, req.partitions, 1, &configs)
        .await
        .map_err(ApiError::admin)?;
    Ok((StatusCode::CREATED, Json(out.json)))
}

/// Deletes a topic and its data (DeleteTopics); 404 when it does not exist.
pub async fn delete(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    check_name(&topic)?;
    let out = c
        .admin()
        .topics_delete(&topic)
        .await
        .map_err(ApiError::admin)?;
    Ok(Json(out.json))
}

/// The body of `POST /api/v1/topics/{topic}/configs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterConfigs {
    /// Settings to set.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// Settings to reset to their defaults.
    #[serde(default)]
    pub delete: Vec<String>,
}

/// Sets and resets topic settings (IncrementalAlterConfigs).
pub async fn alter_configs(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
    body: Result<Json<AlterConfigs>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    check_name(&topic)?;
    let req = json_body(body)?;
    let set = settings(req.set)?;
    if set.is_empty() && req.delete.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to change: give \"set\": {NAME: VALUE} and/or \"delete\": [NAME]",
        ));
    }
    let out = c
        .admin()
        .topics_alter_config(&topic, &set, &req.delete)
        .await
        .map_err(ApiError::admin)?;
    Ok(Json(out.json))
}
