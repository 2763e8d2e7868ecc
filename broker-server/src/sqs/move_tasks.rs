//! StartMessageMoveTask, ListMessageMoveTasks and CancelMessageMoveTask: dead-letter queue
//! redrive. The tasks are persisted with their source queue ([`super::move_task`]) and run
//! by [`super::mover`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use super::error::{SqsError, SqsResult};
use super::move_task::{self, MoveTask, Status};
use super::params::*;
use super::queue::{Queue, QueueRef};
use super::{Sqs, LEASE_GROUP};

/// Highest MaxNumberOfMessagesPerSecond AWS accepts.
const MAX_RATE: i64 = 500;
/// Most results one ListMessageMoveTasks returns.
const MAX_RESULTS: i64 = 10;

/// AWS's error for an ARN parameter that is not an SQS queue ARN.
fn bad_arn(param: &str) -> SqsError {
    SqsError::InvalidParameterValue(format!(
        "You must use this format to specify the {param}: arn:<partition>:<service>:<region>:<account-id>:<resource-id>"
    ))
}

/// AWS's error for an ARN parameter naming a queue that does not exist.
fn no_such_queue(param: &str) -> SqsError {
    SqsError::ResourceNotFound(format!(
        "The resource that you specified for the {param} parameter doesn't exist."
    ))
}

impl Sqs {
    /// The queue the ARN parameter `param` names: `InvalidParameterValue` when it is no queue
    /// ARN, `ResourceNotFoundException` when the queue does not exist.
    async fn queue_by_arn(&self, param: &str, arn: &str) -> SqsResult<Queue> {
        let id = QueueRef::from_arn(arn).ok_or_else(|| bad_arn(param))?;
        match self.queue_by_id(&id).await {
            Err(SqsError::QueueDoesNotExist) => Err(no_such_queue(param)),
            other => other,
        }
    }

    /// The messages of `q` that can be received now, summed over its partitions.
    pub(super) async fn visible_messages(&self, q: &Queue) -> SqsResult<u64> {
        let mut n = 0;
        for p in 0..q.partitions() as i32 {
            n += self
                .store
                .lease_counts(&q.topic, p, LEASE_GROUP)
                .await?
                .available;
        }
        Ok(n)
    }

    pub(super) async fn start_message_move_task(
        self: &Arc<Self>,
        _ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Value> {
        let source_arn = req_str(input, "SourceArn")?;
        let source = self.queue_by_arn("SourceArn", source_arn).await?;
        let destination_arn = opt_str(input, "DestinationArn").filter(|d| !d.is_empty());
        if let Some(d) = destination_arn {
            self.queue_by_arn("DestinationArn", d).await?;
        }
        let rate = int_in(input, "MaxNumberOfMessagesPerSecond", 1, MAX_RATE)?;
        if self.dead_letter_sources(&source).await?.is_empty() {
            return Err(SqsError::InvalidParameterValue(
                "Source queue must be configured as a Dead Letter Queue.".into(),
            ));
        }
        let task = MoveTask {
            id: uuid::Uuid::new_v4().to_string(),
            source_arn: source.id.arn(),
            destination_arn: destination_arn.map(str::to_string),
            rate: rate.map(|r| r as u32),
            status: Status::Running,
            started_ms: self.now_ms(),
            to_move: self.visible_messages(&source).await?,
            moved: 0,
            failure: None,
        };
        self.update_queue(&source.topic, |_, config| {
            if move_task::tasks_of(&config.attributes)
                .iter()
                .any(|t| t.status == Status::Running)
            {
                return Err(SqsError::InvalidParameterValue(
                    "There is already a task running. Only one active task is allowed for a source queue arn at a given time.".into(),
                ));
            }
            move_task::store_task(&mut config.attributes, &task);
            Ok(())
        })
        .await?;
        self.spawn_mover(source.topic.clone(), task.clone());
        Ok(json!({ "TaskHandle": task.handle() }))
    }

    pub(super) async fn list_message_move_tasks(
        &self,
        _ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Value> {
        let source_arn = req_str(input, "SourceArn")?;
        let max = int_in(input, "MaxResults", 1, MAX_RESULTS)?.unwrap_or(1) as usize;
        let source = self.queue_by_arn("SourceArn", source_arn).await?;
        let results: Vec<Value> = move_task::tasks_of(&source.info.config.attributes)
            .iter()
            .take(max)
            .map(MoveTask::to_entry)
            .collect();
        Ok(json!({ "Results": results }))
    }

    pub(super) async fn cancel_message_move_task(
        &self,
        _ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Value> {
        let handle = req_str(input, "TaskHandle")?;
        let (id, source_arn) = move_task::parse_handle(handle)?;
        let source = match self.queue_by_arn("SourceArn", &source_arn).await {
            Err(SqsError::InvalidParameterValue(_)) => Err(no_such_queue("SourceArn")),
            other => other,
        }?;
        let local = self.movers.lock().get(&id).cloned();
        if let Some(control) = &local {
            control.cancelled.store(true, Ordering::SeqCst);
        }
        let mut moved = 0;
        self.update_queue(&source.topic, |_, config| {
            let mut task = move_task::tasks_of(&config.attributes)
                .into_iter()
                .find(|t| t.id == id)
                .ok_or_else(|| SqsError::ResourceNotFound("Task does not exist.".into()))?;
            if task.status != Status::Running {
                return Err(SqsError::invalid_value(
                    "TaskHandle",
                    handle,
                    format!(
                        "Only a RUNNING task can be cancelled; this one is {}.",
                        task.status.as_str()
                    ),
                ));
            }
            if let Some(control) = &local {
                task.moved = task.moved.max(control.moved.load(Ordering::SeqCst));
            }
            task.status = Status::Cancelled;
            moved = task.moved;
            move_task::store_task(&mut config.attributes, &task);
            Ok(())
        })
        .await?;
        Ok(json!({ "ApproximateNumberOfMessagesMoved": moved }))
    }
}
