//! A message move task (StartMessageMoveTask) as it is persisted: one JSON value per task in
//! the topic config of its source queue (the dead-letter queue), under `sqs-move.<task id>`,
//! so every store keeps it across restarts and it vanishes with the queue.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{SqsError, SqsResult};

/// Prefix of the task entries inside `TopicConfig::attributes`.
pub const TASK_PREFIX: &str = "sqs-move.";
/// Tasks kept per source queue (the most recent; ListMessageMoveTasks shows at most 10).
pub const KEPT_TASKS: usize = 10;

/// Where a task is, in AWS's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Running,
    Completed,
    Cancelled,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Completed => "COMPLETED",
            Status::Cancelled => "CANCELLED",
            Status::Failed => "FAILED",
        }
    }
}

/// One message move task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveTask {
    /// A random UUID, unique among all tasks.
    pub id: String,
    /// The queue messages are moved from (a dead-letter queue).
    pub source_arn: String,
    /// Where they go; `None`: each back to the queue it was dead-lettered from.
    pub destination_arn: Option<String>,
    /// Most messages moved per second; `None`: as fast as the store allows.
    pub rate: Option<u32>,
    pub status: Status,
    /// When the task started (ms since the epoch).
    pub started_ms: i64,
    /// The source queue's visible messages when the task started; it moves at most these.
    pub to_move: u64,
    /// Messages moved so far (persisted at least every few hundred milliseconds while
    /// running, so after a crash it may lag the truth).
    pub moved: u64,
    /// The error code that ended a FAILED task.
    pub failure: Option<String>,
}

impl MoveTask {
    /// The config key the task is stored under.
    pub fn key(&self) -> String {
        format!("{TASK_PREFIX}{}", self.id)
    }

    /// The TaskHandle clients use: base64 of `{"taskId": ..., "sourceArn": ...}`, as AWS's.
    pub fn handle(&self) -> String {
        let v = json!({ "taskId": self.id, "sourceArn": self.source_arn });
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }

    /// The entry of ListMessageMoveTasks: TaskHandle only while running, DestinationArn,
    /// MaxNumberOfMessagesPerSecond and FailureReason only when they exist.
    pub fn to_entry(&self) -> Value {
        let mut m = Map::new();
        if self.status == Status::Running {
            m.insert("TaskHandle".into(), json!(self.handle()));
        }
        m.insert("Status".into(), json!(self.status.as_str()));
        m.insert("SourceArn".into(), json!(self.source_arn));
        if let Some(d) = &self.destination_arn {
            m.insert("DestinationArn".into(), json!(d));
        }
        if let Some(r) = self.rate {
            m.insert("MaxNumberOfMessagesPerSecond".into(), json!(r));
        }
        m.insert("ApproximateNumberOfMessagesMoved".into(), json!(self.moved));
        m.insert(
            "ApproximateNumberOfMessagesToMove".into(),
            json!(self.to_move),
        );
        if let Some(f) = &self.failure {
            m.insert("FailureReason".into(), json!(f));
        }
        m.insert("StartedTimestamp".into(), json!(self.started_ms));
        Value::Object(m)
    }
}

/// The (task id, source ARN) a TaskHandle carries; AWS's `InvalidParameterValue` when it is
/// not one this API made.
pub fn parse_handle(handle: &str) -> SqsResult<(String, String)> {
    let invalid =
        || SqsError::InvalidParameterValue("Value for parameter TaskHandle is invalid.".into());
    if handle.len() > 4096 {
        return Err(invalid());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(handle.trim())
        .map_err(|_| invalid())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match (
        v.get("taskId").and_then(Value::as_str),
        v.get("sourceArn").and_then(Value::as_str),
    ) {
        (Some(id), Some(arn)) if uuid::Uuid::parse_str(id).is_ok() => {
            Ok((id.to_string(), arn.to_string()))
        }
        _ => Err(invalid()),
    }
}

/// The tasks stored in a topic config's attributes, most recently started first (entries
/// that do not parse are skipped).
pub fn tasks_of(attributes: &BTreeMap<String, String>) -> Vec<MoveTask> {
    let mut out: Vec<MoveTask> = attributes
        .iter()
        .filter(|(k, _)| k.starts_with(TASK_PREFIX))
        .filter_map(|(_, v)| serde_json::from_str(v).ok())
        .collect();
    out.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.id.cmp(&a.id)));
    out
}

/// Writes `task` into `attributes`, and drops the oldest finished tasks beyond
/// [`KEPT_TASKS`].
pub fn store_task(attributes: &mut BTreeMap<String, String>, task: &MoveTask) {
    attributes.insert(
        task.key(),
        serde_json::to_string(task).expect("a task serialises"),
    );
    let tasks = tasks_of(attributes);
    for old in tasks
        .iter()
        .skip(KEPT_TASKS)
        .filter(|t| t.status != Status::Running)
    {
        attributes.remove(&old.key());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u128, started_ms: i64, status: Status) -> MoveTask {
        MoveTask {
            id: uuid::Uuid::from_u128(id).to_string(),
            source_arn: "arn:aws:sqs:us-east-1:000000000000:dlq".into(),
            destination_arn: None,
            rate: Some(5),
            status,
            started_ms,
            to_move: 3,
            moved: 1,
            failure: None,
        }
    }

    #[test]
    fn handles_round_trip() {
        let t = task(1, 10, Status::Running);
        assert_eq!(
            parse_handle(&t.handle()).unwrap(),
            (t.id.clone(), t.source_arn.clone())
        );
        assert!(parse_handle("nonsense").is_err());
        assert!(parse_handle(&base64::engine::general_purpose::STANDARD.encode("{}")).is_err());
        let e = t.to_entry();
        assert_eq!(e["Status"], "RUNNING");
        assert!(e.get("TaskHandle").is_some());
        assert!(task(1, 10, Status::Completed)
            .to_entry()
            .get("TaskHandle")
            .is_none());
    }

    #[test]
    fn the_most_recent_tasks_are_kept() {
        let mut attrs = BTreeMap::new();
        store_task(&mut attrs, &task(100, 0, Status::Running));
        for i in 1..=12 {
            store_task(&mut attrs, &task(i, i as i64, Status::Completed));
        }
        let kept = tasks_of(&attrs);
        // The running task stays although it is the oldest.
        assert_eq!(kept.len(), KEPT_TASKS + 1);
        assert_eq!(kept[0].started_ms, 12);
        assert!(kept.iter().any(|t| t.status == Status::Running));
    }
}
