//! SQS queues: `GET /api/v1/queues` (message counts by state, oldest message age, dead-letter
//! links) and `POST /api/v1/queues/{queue}/redrive`, which moves the messages of a
//! dead-letter queue back to the queues they came from.
//!
//! The redrive works through the store contract: it leases messages of the dead-letter queue
//! (lease group [`LEASE_GROUP`]), appends each to its source queue (named by the
//! `x-dead-letter-source-topic` header the store added when it dead-lettered the message, or
//! the `destination` given) and acks it. A crash between the append and the ack leaves the
//! message in both queues (at-least-once), never in neither.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use broker_api::{
    dead_letter_headers as dlh, AppendBatch, FetchLimits, Lease, Record, Store, StoreError,
};
use serde::{Deserialize, Serialize};

use super::{json_body, ApiError, ApiResult, Console, MAX_ITEMS};
use crate::backlog;
use crate::http::sqs::queue::Queue;
use crate::http::sqs::LEASE_GROUP;

/// A queue in the list.
#[derive(Debug, Serialize)]
pub struct QueueSummary {
    pub queue: String,
    pub fifo: bool,
    pub partitions: u32,
    /// Receivable now.
    pub available: u64,
    /// Received and not yet deleted, within their visibility timeout.
    pub in_flight: u64,
    /// Waiting out a delay.
    pub delayed: u64,
    /// Moved to the dead-letter queue after too many receives.
    pub dead_lettered: u64,
    /// Age of the oldest message not yet deleted, by its send time; `None` when there is none.
    pub oldest_age_ms: Option<i64>,
    /// The queue its messages go to after `max_receive_count` receives (RedrivePolicy).
    pub dead_letter_queue: Option<String>,
    pub max_receive_count: Option<u32>,
    /// Queues whose dead-letter queue this one is.
    pub sources: Vec<String>,
}

/// Every queue, sorted by name.
pub async fn list(State(c): State<Arc<Console>>) -> ApiResult<Json<Vec<QueueSummary>>> {
    let store = c.store.as_ref();
    let topics = store
        .list_topics()
        .await
        .map_err(|e| ApiError::store("listing topics", e))?;
    let mut queues = Vec::new();
    for t in topics.into_iter().take(MAX_ITEMS) {
        match store.lease_groups(&t.name).await {
            Ok(groups) if backlog::is_queue(&t, &groups) => queues.push(Queue::from_topic(t)),
            _ => {}
        }
    }
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for q in &queues {
        if let Some(r) = q.redrive() {
            sources
                .entry(r.dead_letter.topic())
                .or_default()
                .push(q.topic.clone());
        }
    }
    let now = c.now_ms();
    let mut out = Vec::with_capacity(queues.len());
    for q in queues {
        let counts = match backlog::queue_counts(store, &q.topic, q.partitions()).await {
            Ok(counts) => counts,
            Err(StoreError::UnknownTopic(_)) => continue, // deleted meanwhile
            Err(e) => return Err(ApiError::store(&format!("queue {:?}", q.topic), e)),
        };
        let pending = counts.available + counts.leased + counts.delayed;
        let oldest = if pending > 0 {
            oldest_timestamp(store, &q.topic, q.partitions()).await
        } else {
            None
        };
        let redrive = q.redrive();
        out.push(QueueSummary {
            fifo: q.fifo,
            partitions: q.partitions(),
            available: counts.available,
            in_flight: counts.leased,
            delayed: counts.delayed,
            dead_lettered: counts.dead_lettered,
            oldest_age_ms: oldest.map(|ts| (now - ts).max(0)),
            max_receive_count: redrive.as_ref().map(|r| r.max_receive_count),
            dead_letter_queue: redrive.map(|r| r.dead_letter.topic()),
            sources: sources.remove(&q.topic).unwrap_or_default(),
            queue: q.topic,
        });
    }
    Ok(Json(out))
}

/// The send time of the oldest message not yet finished: per partition, the record at the
/// queue group's lease floor. `None` when none can be read.
async fn oldest_timestamp(store: &dyn Store, queue: &str, partitions: u32) -> Option<i64> {
    let mut oldest: Option<i64> = None;
    for p in 0..partitions as i32 {
        let Ok(floor) = store.lease_floor(queue, p, LEASE_GROUP).await else {
            continue;
        };
        let limits = FetchLimits {
            max_records: 1,
            max_bytes: 1,
        };
        if let Ok(f) = store.fetch(queue, p, floor, limits).await {
            if let Some(r) = f.records.first() {
                oldest = Some(oldest.map_or(r.timestamp_ms, |o| o.min(r.timestamp_ms)));
            }
        }
    }
    oldest
}

/// Most messages one redrive call moves.
pub const MAX_REDRIVE: u64 = 100_000;
/// Messages leased per round.
const REDRIVE_BATCH: usize = 100;
/// How long a message being moved stays invisible to receivers of the dead-letter queue.
const REDRIVE_VISIBILITY: Duration = Duration::from_secs(60);

/// The body of `POST /api/v1/queues/{queue}/redrive`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redrive {
    /// Send every message here instead of to the queue it came from.
    pub destination: Option<String>,
    /// Move at most this many (default and maximum: [`MAX_REDRIVE`]).
    pub max_messages: Option<u64>,
}

/// What a redrive did.
#[derive(Debug, Default, Serialize)]
pub struct RedriveOutcome {
    pub queue: String,
    pub moved: u64,
    /// Messages left in the dead-letter queue because their source is unknown or gone.
    pub skipped: u64,
    /// Messages moved per destination queue.
    pub destinations: BTreeMap<String, u64>,
}

/// Moves the available messages of dead-letter queue `queue` back to their source queues
/// (or to `destination`). Messages received from the dead-letter queue by someone else right
/// now are not moved. 404 for an unknown queue or destination.
pub async fn redrive(
    State(c): State<Arc<Console>>,
    Path(queue): Path<String>,
    body: Result<Json<Redrive>, JsonRejection>,
) -> ApiResult<Json<RedriveOutcome>> {
    let req = json_body(body)?;
    let info = c.topic(&queue).await?;
    if let Some(d) = &req.destination {
        c.topic(d).await?;
        if *d == queue {
            return Err(ApiError::bad_request(format!(
                "destination {d:?} is the dead-letter queue itself"
            )));
        }
    }
    let max = match req.max_messages {
        Some(0) => return Err(ApiError::bad_request("max_messages must be at least 1")),
        Some(n) => n.min(MAX_REDRIVE),
        None => MAX_REDRIVE,
    };
    let mut out = RedriveOutcome {
        queue: queue.clone(),
        ..RedriveOutcome::default()
    };
    let mut held: Vec<Lease> = Vec::new();
    let moved = move_all(
        &c,
        &queue,
        info.config.partitions,
        &req,
        max,
        &mut out,
        &mut held,
    )
    .await;
    // Skipped messages were held so the loop moved past them; they are receivable again now
    // (also when the redrive stopped on an error).
    for l in held {
        let _ = c
            .store
            .release(&queue, LEASE_GROUP, l.token, Duration::ZERO)
            .await;
    }
    moved.map(|()| Json(out))
}

/// The redrive loop: per partition, leases batches and moves each message, until `max` moved
/// or nothing is left; skipped messages go to `held`, still leased.
async fn move_all(
    c: &Console,
    queue: &str,
    partitions: u32,
    req: &Redrive,
    max: u64,
    out: &mut RedriveOutcome,
    held: &mut Vec<Lease>,
) -> ApiResult<()> {
    let store = c.store.as_ref();
    for p in 0..partitions as i32 {
        let mut seen: HashSet<i64> = HashSet::new();
        'partition: while out.moved < max {
            let want = REDRIVE_BATCH.min((max - out.moved) as usize);
            let leases = store
                .lease(queue, p, LEASE_GROUP, want, REDRIVE_VISIBILITY)
                .await
                .map_err(|e| ApiError::store(&format!("leasing from queue {queue:?}"), e))?;
            if leases.is_empty() {
                break;
            }
            for l in leases {
                if !seen.insert(l.record.offset) {
                    // A skipped message came back (its lease lapsed): everything left is one.
                    held.push(l);
                    break 'partition;
                }
                match move_one(c, queue, &l, req.destination.as_deref()).await? {
                    Some(dest) => {
                        out.moved += 1;
                        *out.destinations.entry(dest).or_default() += 1;
                    }
                    None => {
                        out.skipped += 1;
                        held.push(l);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Appends the leased message to its destination and acks it in the dead-letter queue;
/// the destination's name, or `None` (nothing done) when it has none or it no longer exists.
async fn move_one(
    c: &Console,
    queue: &str,
    lease: &Lease,
    destination: Option<&str>,
) -> ApiResult<Option<String>> {
    let header = |name: &str| {
        lease
            .record
            .headers
            .iter()
            .rev()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_ref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string)
    };
    let Some(dest) = destination
        .map(str::to_string)
        .or_else(|| header(dlh::SOURCE_TOPIC))
    else {
        return Ok(None);
    };
    let info = match c.store.describe_topic(&dest).await {
        Ok(i) => i,
        Err(StoreError::UnknownTopic(_)) => return Ok(None),
        Err(e) => return Err(ApiError::store(&format!("queue {dest:?}"), e)),
    };
    let partition = header(dlh::SOURCE_PARTITION)
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|p| (0..info.config.partitions as i32).contains(p))
        .unwrap_or(0);
    let dead_letter = [
        dlh::SOURCE_TOPIC,
        dlh::SOURCE_PARTITION,
        dlh::SOURCE_OFFSET,
        dlh::GROUP,
        dlh::DELIVERY_COUNT,
    ];
    let r = &lease.record;
    let record = Record {
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .filter(|h| !dead_letter.contains(&h.key.as_str()))
            .cloned()
            .collect(),
        // Sent anew: its age and retention start again, as a new message's would.
        timestamp_ms: None,
        not_before_ms: None,
    };
    let size = record.size() as u64;
    c.store
        .append(&dest, partition, AppendBatch::new(vec![record]))
        .await
        .map_err(|e| ApiError::store(&format!("appending to queue {dest:?}"), e))?;
    c.metrics.appended(&dest, 1, size);
    let acked = c
        .store
        .ack(queue, LEASE_GROUP, &[lease.token])
        .await
        .map_err(|e| ApiError::store(&format!("acking in queue {queue:?}"), e))?;
    if let Some(Err(e)) = acked.into_iter().next() {
        // The message is in the destination now; it stays in the dead-letter queue too.
        tracing::warn!(
            queue,
            offset = lease.record.offset,
            "redrive could not ack: {e}"
        );
    }
    Ok(Some(dest))
}
