//! Receiving (with long polls), deleting, and changing visibility.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{Lease, Store, StoreError};
use futures::future::select_all;
use serde_json::{json, Map, Value};

use super::combine::Run;
use super::error::{SqsError, SqsResult};
use super::message::{self as msg, AttrValue};
use super::params::*;
use super::queue::{self, Queue};
use super::{receipt, Sqs, LEASE_GROUP};

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

/// Records one shared lease takes at most (10 receives of 10).
pub(crate) const SHARED_LEASE_RECORDS: usize = 100;
/// Leases up to `max` records of `topic` (`n` partitions), trying the partitions from the
/// next one in turn.
async fn lease_across(
    store: &dyn Store,
    rr: &AtomicUsize,
    topic: &str,
    n: u32,
    max: usize,
    visibility: Duration,
) -> SqsResult<Vec<Lease>> {
    let n = n as usize;
    let start = rr.fetch_add(1, Ordering::Relaxed) % n;
    let mut out = Vec::new();
    for i in 0..n {
        if out.len() >= max {
            break;
        }
        let p = ((start + i) % n) as i32;
        let got = store
            .lease(topic, p, LEASE_GROUP, max - out.len(), visibility)
            .await?;
        out.extend(got);
    }
    Ok(out)
}

impl Sqs {
    /// Leases up to `max` records across the queue's partitions, starting at a rotating one.
    /// On a standard queue the lease is shared with the receives that wait meanwhile (see
    /// [`super::combine`]); a FIFO queue leases alone, so a message group's records never
    /// go to two receivers in one call.
    async fn lease_any(
        &self,
        q: &Queue,
        max: usize,
        visibility: Duration,
    ) -> SqsResult<Vec<Lease>> {
        if q.fifo {
            let (store, rr) = (self.store.as_ref(), self.round_robin.as_ref());
            return lease_across(store, rr, &q.topic, q.partitions(), max, visibility).await;
        }
        let key = (q.topic.clone(), visibility.as_millis() as u64);
        let run = self.shared_lease(q, visibility);
        self.lease_calls.call(key, max, max, run).await?
    }

    /// The shared lease of a standard queue: the sum of the requests' maxima leased in one
    /// go, handed out in arrival order (each request up to its own maximum).
    fn shared_lease(&self, q: &Queue, visibility: Duration) -> Run<usize, SqsResult<Vec<Lease>>> {
        let store = self.store.clone();
        let rr = self.round_robin.clone();
        let topic = q.topic.clone();
        let n = q.partitions();
        Arc::new(move |maxima: Vec<usize>| {
            let (store, rr, topic) = (store.clone(), rr.clone(), topic.clone());
            Box::pin(async move {
                let total: usize = maxima.iter().sum();
                let last = maxima.last().copied().unwrap_or(0);
                let mut leases = Vec::new();
                // A store may answer a large lease in part; lease again while the last
                // request would get nothing, so no request comes back empty while the queue
                // still has messages to give.
                let leased = loop {
                    let want = total - leases.len();
                    match lease_across(store.as_ref(), &rr, &topic, n, want, visibility).await {
                        Ok(got) => {
                            let more = !got.is_empty();
                            leases.extend(got);
                            if !more || leases.len() + last > total {
                                break Ok(leases);
                            }
                        }
                        // What was leased stays leased: hand it out (it comes back after
                        // its visibility timeout if nobody deletes it).
                        Err(_) if !leases.is_empty() => break Ok(leases),
                        Err(e) => break Err(e),
                    }
                };
                match leased {
                    Ok(leases) => {
                        let mut rest = leases.into_iter();
                        maxima
                            .iter()
                            .map(|m| Ok(rest.by_ref().take(*m).collect()))
                            .collect()
                    }
                    Err(e) => maxima.iter().map(|_| Err(e.clone())).collect(),
                }
            })
        })
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
                            .partition_offsets(&q.topic, p)
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
                let name = q.topic.clone();
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
        let groups = self.store.lease_groups(&q.topic).await?;
        let mut config = groups.get(LEASE_GROUP).cloned().unwrap_or_default();
        if !config.ordered_by_key {
            config.ordered_by_key = true;
            self.store
                .set_lease_group(&q.topic, LEASE_GROUP, config)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn receive_message(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue_for_messages(ctx, input).await?;
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
            json!(msg::message_id_of(&q.topic, l.token.partition, r)
                .hyphenated()
                .to_string()),
        );
        m.insert(
            "ReceiptHandle".into(),
            json!(receipt::encode(&q.topic, &l.token)),
        );
        m.insert("MD5OfBody".into(), json!(msg::md5_hex(body.as_bytes())));
        m.insert("Body".into(), json!(body));
        let want = |n: &str| msg::name_selected(n, system);
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
                        .map(|t| queue::QueueRef::from_topic(&t).arn())
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
        let t = receipt::decode(&q.topic, handle)?;
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

    /// On a FIFO queue a handle whose visibility timeout passed is expired (AWS refuses to
    /// delete with it), although the store would still ack it: a short extend first tells a
    /// live lease from a lapsed one. Ok(false) when the handle is expired.
    async fn fifo_handle_live(&self, q: &Queue, token: broker_api::LeaseToken) -> SqsResult<bool> {
        match self
            .store
            .extend(&q.topic, LEASE_GROUP, token, Duration::from_secs(1))
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::LeaseExpired | StoreError::LeaseLapsed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn delete_message(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue_for_messages(ctx, input).await?;
        let handle = req_str(input, "ReceiptHandle")?;
        let token = self.token(&q, handle)?;
        if q.fifo && !self.fifo_handle_live(&q, token).await? {
            Self::stale_delete(&q, handle)?;
        }
        // A handle of the most recent receive deletes the message also after its visibility
        // timeout passed (the store acks a lapsed lease); an older one is LeaseExpired.
        let mut r = self.store.ack(&q.topic, LEASE_GROUP, &[token]).await?;
        match r.pop() {
            Some(Ok(())) => {}
            Some(Err(StoreError::LeaseExpired)) => Self::stale_delete(&q, handle)?,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(SqsError::Internal("ack returned no result".into())),
        }
        Ok(json!({}))
    }

    pub(super) async fn delete_message_batch(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue_for_messages(ctx, input).await?;
        let entries = batch_entries(input, "DeleteMessageBatchRequestEntry")?;
        let mut results: Vec<Option<SqsResult<()>>> = vec![None; entries.len()];
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let parsed = req_str(e, "ReceiptHandle").and_then(|h| Ok((h, self.token(&q, h)?)));
            let parsed = match parsed {
                Ok((h, t)) if q.fifo && !self.fifo_handle_live(&q, t).await? => {
                    results[i] = Some(Self::stale_delete(&q, h));
                    continue;
                }
                other => other.map(|(_, t)| t),
            };
            match parsed {
                Ok(t) => {
                    tokens.push(t);
                    positions.push(i);
                }
                Err(err) => results[i] = Some(Err(err)),
            }
        }
        if !tokens.is_empty() {
            let acked = self.store.ack(&q.topic, LEASE_GROUP, &tokens).await?;
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
                .release(&q.topic, LEASE_GROUP, token, Duration::ZERO)
                .await
        } else {
            self.store
                .extend(
                    &q.topic,
                    LEASE_GROUP,
                    token,
                    Duration::from_secs(visibility as u64),
                )
                .await
                .map(|_| ())
        };
        match r {
            Ok(()) => Ok(()),
            // The handle is the most recent receive's, but its visibility timeout passed.
            Err(StoreError::LeaseLapsed) => Err(SqsError::MessageNotInflight(format!(
                "Value {handle} for parameter ReceiptHandle is invalid. Reason: The message referred to isn't in flight."
            ))),
            Err(StoreError::LeaseExpired) => Err(SqsError::InvalidParameterValue(format!(
                "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn change_message_visibility(
        &self,
        ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Value> {
        let q = self.queue_for_messages(ctx, input).await?;
        self.change_visibility(&q, input).await?;
        Ok(json!({}))
    }

    pub(super) async fn change_message_visibility_batch(
        &self,
        ctx: &Ctx,
        input: &Value,
    ) -> SqsResult<Value> {
        let q = self.queue_for_messages(ctx, input).await?;
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
