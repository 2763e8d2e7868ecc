//! The background work of message move tasks. Each running task has one mover that leases a
//! few messages of the source queue, appends them to their destination queue and only then
//! acks them, so a crash at any point loses nothing (a message appended but not yet acked is
//! moved again: at-least-once). Progress is persisted with the task; at start-up every task
//! still RUNNING is resumed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{dead_letter_headers, AppendBatch, Lease, LeaseToken, Record, StoreError};

use super::error::{SqsError, SqsResult};
use super::message::{self as msg, GROUP_HEADER};
use super::move_task::{self, MoveTask, Status};
use super::queue::{Queue, QueueRef};
use super::send::stable_hash;
use super::{Sqs, LEASE_GROUP};

/// How long the mover holds the messages it is moving; after a crash they come back this
/// much later.
const MOVE_VISIBILITY: Duration = Duration::from_secs(10);
/// Messages moved per step.
const BATCH: u64 = 10;
/// Progress is written to the store at most this often while a task runs.
const PERSIST_EVERY: Duration = Duration::from_millis(500);
/// Pause after an error the store may recover from.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The FailureReason of a task whose destination (or a message's source) queue is gone.
const NO_QUEUE: &str = "AWS.SimpleQueueService.NonExistentQueue";

/// What the API shares with a running mover.
#[derive(Debug, Default)]
pub struct MoveControl {
    /// Set by CancelMessageMoveTask; the mover stops before its next step.
    pub cancelled: AtomicBool,
    /// Messages moved so far (also those not yet persisted).
    pub moved: AtomicU64,
}

/// Why a step failed.
enum StepError {
    /// The task cannot go on; the code becomes its FailureReason.
    Fatal(&'static str),
    /// Worth retrying (store unavailable and the like).
    Transient(SqsError),
}

impl From<SqsError> for StepError {
    fn from(e: SqsError) -> Self {
        StepError::Transient(e)
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Transient(e.into())
    }
}

impl Sqs {
    /// Starts a mover for every task persisted as RUNNING (called once at start-up; tasks that
    /// already have a mover in this process are skipped).
    pub(super) async fn resume_move_tasks(self: Arc<Self>) {
        let topics = match self.store.list_topics().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "sqs: message move tasks not resumed: listing queues failed");
                return;
            }
        };
        for t in topics {
            for task in move_task::tasks_of(&t.config.attributes) {
                if task.status == Status::Running {
                    tracing::info!(task = %task.id, source = %task.source_arn, moved = task.moved, "sqs: resuming message move task");
                    self.spawn_mover(t.name.clone(), task);
                }
            }
        }
    }

    /// Runs `task` (stored with the queue of topic `source`) in the background until it is
    /// done, failed, cancelled, or the server shuts down.
    pub(super) fn spawn_mover(self: &Arc<Self>, source: String, task: MoveTask) {
        let control = Arc::new(MoveControl::default());
        control.moved.store(task.moved, Ordering::SeqCst);
        {
            let mut movers = self.movers.lock();
            if movers.contains_key(&task.id) {
                return;
            }
            movers.insert(task.id.clone(), control.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let id = task.id.clone();
            me.run_mover(&source, task, &control).await;
            me.movers.lock().remove(&id);
        });
    }

    fn stopping(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Sleeps `d`, or less when the server shuts down.
    async fn pause(&self, d: Duration) {
        let mut stop = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = async {
                match stop.as_mut() {
                    Some(rx) => { let _ = rx.wait_for(|v| *v).await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }

    async fn run_mover(&self, source: &str, mut task: MoveTask, control: &MoveControl) {
        let mut persisted_at = Instant::now();
        let mut empty_since: Option<Instant> = None;
        loop {
            if self.stopping() || control.cancelled.load(Ordering::SeqCst) {
                return;
            }
            let remaining = task.to_move.saturating_sub(task.moved);
            if remaining == 0 {
                self.finish_task(source, &mut task, Status::Completed, None)
                    .await;
                return;
            }
            let want = remaining.min(BATCH).min(task.rate.map_or(BATCH, u64::from));
            let began = Instant::now();
            match self.move_step(source, &task, want as usize).await {
                Ok(0) => {
                    // Nothing is visible. Messages this task leased before a crash come back
                    // within MOVE_VISIBILITY: while some are in flight, wait that long before
                    // calling the task done (what stays in flight longer was received by
                    // someone else, and is not moved).
                    let since = *empty_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < MOVE_VISIBILITY + RETRY_PAUSE
                        && self.in_flight(source).await.unwrap_or(0) > 0
                    {
                        self.pause(RETRY_PAUSE).await;
                        continue;
                    }
                    self.finish_task(source, &mut task, Status::Completed, None)
                        .await;
                    return;
                }
                Ok(n) => {
                    empty_since = None;
                    task.moved += n as u64;
                    control.moved.store(task.moved, Ordering::SeqCst);
                    if persisted_at.elapsed() >= PERSIST_EVERY {
                        persisted_at = Instant::now();
                        if !self.persist_progress(source, &task).await {
                            return;
                        }
                    }
                    if let Some(rate) = task.rate {
                        let budget = Duration::from_secs_f64(n as f64 / f64::from(rate.max(1)));
                        if let Some(rest) = budget.checked_sub(began.elapsed()) {
                            self.pause(rest).await;
                        }
                    }
                }
                Err(StepError::Fatal(code)) => {
                    self.finish_task(source, &mut task, Status::Failed, Some(code))
                        .await;
                    return;
                }
                Err(StepError::Transient(SqsError::QueueDoesNotExist)) => {
                    // The source queue is gone, and the task with it.
                    return;
                }
                Err(StepError::Transient(e)) => {
                    let v = crate::LOG_LIMIT.check(&format!("sqs:move:{source}"));
                    if v != broker_api::log_limit::Verdict::Suppress {
                        tracing::warn!(task = %task.id, error = %e, "sqs: message move task step failed; retrying{}", v.suffix());
                    }
                    self.pause(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Writes the task's progress if it is still RUNNING in the store; false when it is not
    /// (cancelled, or its queue deleted) and the mover must stop.
    async fn persist_progress(&self, source: &str, task: &MoveTask) -> bool {
        let mut running = false;
        let r = self
            .update_queue(source, |_, config| {
                let current = move_task::tasks_of(&config.attributes)
                    .into_iter()
                    .find(|t| t.id == task.id);
                if let Some(mut t) = current.filter(|t| t.status == Status::Running) {
                    running = true;
                    t.moved = task.moved;
                    move_task::store_task(&mut config.attributes, &t);
                }
                Ok(())
            })
            .await;
        match r {
            Ok(_) => running,
            // Progress is approximate: a failed write is retried with the next step.
            Err(SqsError::QueueDoesNotExist) => false,
            Err(_) => true,
        }
    }

    /// Marks the task `status` (with `failure`) if it is still RUNNING in the store.
    async fn finish_task(
        &self,
        source: &str,
        task: &mut MoveTask,
        status: Status,
        failure: Option<&str>,
    ) {
        task.status = status;
        task.failure = failure.map(str::to_string);
        loop {
            let r = self
                .update_queue(source, |_, config| {
                    let current = move_task::tasks_of(&config.attributes)
                        .into_iter()
                        .find(|t| t.id == task.id);
                    if current.is_some_and(|t| t.status == Status::Running) {
                        move_task::store_task(&mut config.attributes, task);
                    }
                    Ok(())
                })
                .await;
            match r {
                Ok(_) | Err(SqsError::QueueDoesNotExist) => return,
                Err(e) => {
                    tracing::warn!(task = %task.id, error = %e, "sqs: recording the end of a message move task failed; retrying");
                    if self.stopping() {
                        return;
                    }
                    self.pause(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// The source queue's messages in flight, summed over its partitions.
    async fn in_flight(&self, source: &str) -> SqsResult<u64> {
        let q = self.queue_by_topic(source).await?;
        let mut n = 0;
        for p in 0..q.partitions() as i32 {
            n += self
                .store
                .lease_counts(source, p, LEASE_GROUP)
                .await?
                .leased;
        }
        Ok(n)
    }

    /// Leases up to `want` messages of the source queue, across its partitions.
    async fn lease_for_move(&self, source: &Queue, want: usize) -> SqsResult<Vec<Lease>> {
        let mut out = Vec::new();
        for p in 0..source.partitions() as i32 {
            if out.len() >= want {
                break;
            }
            out.extend(
                self.store
                    .lease(
                        &source.topic,
                        p,
                        LEASE_GROUP,
                        want - out.len(),
                        MOVE_VISIBILITY,
                    )
                    .await?,
            );
        }
        Ok(out)
    }

    /// The queue a leased message goes to: the task's destination, or else the queue it was
    /// dead-lettered from. `None` when that queue does not exist (or is not recorded).
    async fn destination_of(
        &self,
        task: &MoveTask,
        lease: &Lease,
        cache: &mut HashMap<String, Option<Queue>>,
    ) -> SqsResult<Option<Queue>> {
        let topic = match &task.destination_arn {
            Some(arn) => QueueRef::from_arn(arn).map(|id| id.topic()),
            None => msg::header_str(&lease.record, dead_letter_headers::SOURCE_TOPIC),
        };
        let Some(topic) = topic else { return Ok(None) };
        if let Some(q) = cache.get(&topic) {
            return Ok(q.clone());
        }
        let q = match self.queue_by_topic(&topic).await {
            Ok(q) => Some(q),
            Err(SqsError::QueueDoesNotExist) => None,
            Err(e) => return Err(e),
        };
        cache.insert(topic, q.clone());
        Ok(q)
    }

    /// Moves up to `want` visible messages of the task's source queue; returns how many
    /// were moved (0: none was visible).
    async fn move_step(
        &self,
        source: &str,
        task: &MoveTask,
        want: usize,
    ) -> Result<usize, StepError> {
        let source_q = self.queue_by_topic(source).await?;
        let leases = self.lease_for_move(&source_q, want).await?;
        if leases.is_empty() {
            return Ok(0);
        }
        // Destination topic and partition -> (records, tokens).
        let mut groups: BTreeMap<(String, i32), (Vec<Record>, Vec<LeaseToken>)> = BTreeMap::new();
        let mut cache = HashMap::new();
        let mut missing = false;
        for l in &leases {
            let dest = match self.destination_of(task, l, &mut cache).await {
                Ok(d) => d,
                Err(e) => {
                    self.release_all(source, leases.iter().map(|l| l.token))
                        .await;
                    return Err(e.into());
                }
            };
            let Some(dest) = dest else {
                missing = true;
                break;
            };
            let partition = self.partition_for(&dest, l);
            let entry = groups.entry((dest.topic.clone(), partition)).or_default();
            entry.0.push(moved_record(l));
            entry.1.push(l.token);
        }
        if missing {
            self.release_all(source, leases.iter().map(|l| l.token))
                .await;
            return Err(StepError::Fatal(NO_QUEUE));
        }
        let mut moved = 0;
        let mut failure: Option<StepError> = None;
        for ((topic, partition), (records, tokens)) in groups {
            if failure.is_some() {
                self.release_all(source, tokens.into_iter()).await;
                continue;
            }
            let count = records.len() as u64;
            let bytes: u64 = records.iter().map(|r| r.size() as u64).sum();
            match self
                .store
                .append(&topic, partition, AppendBatch::new(records))
                .await
            {
                Ok(_) => {
                    self.metrics.appended(&topic, count, bytes);
                    let acked = self.store.ack(source, LEASE_GROUP, &tokens).await?;
                    moved += acked.iter().filter(|r| r.is_ok()).count();
                }
                Err(StoreError::UnknownTopic(_)) => {
                    self.release_all(source, tokens.into_iter()).await;
                    failure = Some(StepError::Fatal(NO_QUEUE));
                }
                Err(e) => {
                    self.release_all(source, tokens.into_iter()).await;
                    failure = Some(StepError::Transient(e.into()));
                }
            }
        }
        match failure {
            Some(f) if moved == 0 => Err(f),
            // What was moved counts; the failure shows again on the next step.
            _ => Ok(moved),
        }
    }

    /// The partition of `dest` a moved message goes to: its group's on a FIFO queue (as a
    /// send would choose), else a rotating one.
    fn partition_for(&self, dest: &Queue, l: &Lease) -> i32 {
        let n = dest.partitions() as u64;
        if dest.fifo {
            let group = msg::header_str(&l.record, GROUP_HEADER).or_else(|| {
                l.record
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            });
            if let Some(g) = group {
                return (stable_hash(&g) % n) as i32;
            }
        }
        (self.round_robin.fetch_add(1, Ordering::Relaxed) as u64 % n) as i32
    }

    /// Gives leased messages back at once (best effort: a failed release lapses anyway).
    async fn release_all(&self, source: &str, tokens: impl Iterator<Item = LeaseToken>) {
        for t in tokens {
            let _ = self
                .store
                .release(source, LEASE_GROUP, t, Duration::ZERO)
                .await;
        }
    }
}

/// The record a moved message becomes: key, value and headers kept (so MessageId, group and
/// attributes stay), without the dead-letter headers of its earlier trip, stamped with the
/// time of the move.
fn moved_record(l: &Lease) -> Record {
    let r = &l.record;
    Record {
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .filter(|h| !h.key.starts_with("x-dead-letter-"))
            .cloned()
            .collect(),
        timestamp_ms: None,
        not_before_ms: None,
    }
}
