//! Sending: SendMessage and SendMessageBatch, with FIFO deduplication.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use broker_api::{AppendBatch, Record};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::combine::Run;
use super::dedup::{DedupIndex, Original};
use super::error::{SqsError, SqsResult};
use super::message as msg;
use super::params::*;
use super::queue::{self, Queue};
use super::Sqs;

/// AWS's reason when a parameter does not apply to the queue's type (sic).
const NOT_FOR_THIS_QUEUE_TYPE: &str =
    "The request include parameter that is not valid for this queue type.";

/// Ok when `value` of MessageGroupId / MessageDeduplicationId (`param`) is 1-128 characters
/// of alphanumerics and punctuation; else AWS's `InvalidParameterValue`.
fn check_fifo_id(param: &str, value: &str) -> SqsResult<()> {
    if !value.is_empty() && value.len() <= 128 && value.chars().all(|c| c.is_ascii_graphic()) {
        return Ok(());
    }
    Err(SqsError::invalid_value(
        param,
        value,
        format!(
            "{param} can only include alphanumeric and punctuation characters. 1 to 128 in length."
        ),
    ))
}

/// A hash of `s` that is the same across runs and builds (FNV-1a); FIFO sends pick the
/// partition of a message group with it.
pub(super) fn stable_hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Bytes of messages one shared append takes at most (see [`super::combine`]).
pub(crate) const SHARED_APPEND_BYTES: usize = 1 << 20;

/// One send request's records, for a shared append.
pub(crate) struct Records {
    records: Vec<Record>,
    bytes: u64,
}

/// Where a request's records went: partition, offset of the first, append time.
pub(crate) type Placed = (i32, i64, i64);

/// A send entry checked and turned into a record.
struct Prepared {
    message_id: uuid::Uuid,
    record: Record,
    sums: Checksums,
    dedup_id: Option<String>,
    group: Option<String>,
    bytes: u64,
}

/// The checksums a send reports.
#[derive(Debug, Clone, Default)]
struct Checksums {
    body: String,
    attrs: Option<String>,
    system: Option<String>,
}

/// What a successful send reports.
struct Sent {
    message_id: String,
    sums: Checksums,
    sequence: Option<String>,
}

impl Sent {
    fn to_json(&self, id: Option<&str>) -> Value {
        let mut m = Map::new();
        if let Some(id) = id {
            m.insert("Id".into(), json!(id));
        }
        m.insert("MessageId".into(), json!(self.message_id));
        m.insert("MD5OfMessageBody".into(), json!(self.sums.body));
        if let Some(a) = &self.sums.attrs {
            m.insert("MD5OfMessageAttributes".into(), json!(a));
        }
        if let Some(a) = &self.sums.system {
            m.insert("MD5OfMessageSystemAttributes".into(), json!(a));
        }
        if let Some(s) = &self.sequence {
            m.insert("SequenceNumber".into(), json!(s));
        }
        Value::Object(m)
    }
}

impl Sqs {
    fn prepare(&self, q: &Queue, entry: &Value, now_ms: i64) -> SqsResult<Prepared> {
        let body = match entry.get("MessageBody") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(SqsError::MissingParameter("MessageBody".into()))
            }
            Some(v) => {
                return Err(SqsError::invalid_value(
                    "MessageBody",
                    &v.to_string(),
                    "Must be a string.",
                ))
            }
        };
        if let Some(c) = msg::invalid_char(body) {
            return Err(SqsError::InvalidMessageContents(format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is {}",
                c as u32,
                msg::ALLOWED_CHARACTERS
            )));
        }
        let delay = int_in(entry, "DelaySeconds", 0, queue::MAX_DELAY)?;
        if let Some(d) = delay.filter(|d| q.fifo && *d > 0) {
            return Err(SqsError::invalid_value(
                "DelaySeconds",
                &d.to_string(),
                NOT_FOR_THIS_QUEUE_TYPE,
            ));
        }
        let attrs = msg::parse_attributes(entry.get("MessageAttributes"))?;
        let size = body.len() + attrs.iter().map(|(k, a)| a.size(k)).sum::<usize>();
        let limit = q.max_message_size() as usize;
        if size > limit {
            return Err(SqsError::InvalidParameterValue(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )));
        }
        let group = opt_str(entry, "MessageGroupId").map(str::to_string);
        let mut dedup = opt_str(entry, "MessageDeduplicationId").map(str::to_string);
        if let Some(g) = &group {
            check_fifo_id("MessageGroupId", g)?;
        }
        if let Some(d) = &dedup {
            if !q.fifo {
                return Err(SqsError::invalid_value(
                    "MessageDeduplicationId",
                    d,
                    NOT_FOR_THIS_QUEUE_TYPE,
                ));
            }
            check_fifo_id("MessageDeduplicationId", d)?;
        }
        if q.fifo {
            if group.is_none() {
                return Err(SqsError::MissingParameter("MessageGroupId".into()));
            }
            if dedup.is_none() {
                if !q.content_based_dedup() {
                    return Err(SqsError::InvalidParameterValue(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
                    ));
                }
                dedup = Some(msg::content_dedup_id(body.as_bytes()));
            }
        }
        let message_id = msg::new_message_id();
        let mut headers = vec![msg::message_id_header(message_id)];
        headers.extend(msg::attribute_headers(&attrs));
        if let Some(g) = &group {
            headers.push(broker_api::Header {
                key: msg::GROUP_HEADER.into(),
                value: Some(Bytes::copy_from_slice(g.as_bytes())),
            });
        }
        if let Some(d) = &dedup {
            headers.push(broker_api::Header {
                key: msg::DEDUP_HEADER.into(),
                value: Some(Bytes::copy_from_slice(d.as_bytes())),
            });
        }
        let system = msg::parse_attributes(entry.get("MessageSystemAttributes"))?;
        for (name, a) in &system {
            if name != "AWSTraceHeader" || a.data_type != "String" {
                return Err(SqsError::InvalidParameterValue(format!(
                    "Message system attribute {name} is not supported; only AWSTraceHeader (String) is."
                )));
            }
            headers.push(broker_api::Header {
                key: msg::TRACE_HEADER.into(),
                value: Some(a.value.clone()),
            });
        }
        let delay = delay.unwrap_or(q.delay_seconds() as i64);
        let record = Record {
            key: if q.fifo {
                group.as_ref().map(|g| Bytes::copy_from_slice(g.as_bytes()))
            } else {
                None
            },
            value: Some(Bytes::copy_from_slice(body.as_bytes())),
            headers,
            timestamp_ms: None,
            not_before_ms: (delay > 0).then(|| now_ms + delay * 1000),
        };
        let bytes = record.size() as u64;
        Ok(Prepared {
            message_id,
            record,
            sums: Checksums {
                body: msg::md5_hex(body.as_bytes()),
                attrs: msg::md5_of_attributes(&attrs),
                system: msg::md5_of_attributes(&system),
            },
            dedup_id: dedup,
            group,
            bytes,
        })
    }

    /// The shared append of a standard queue: the requests' records in one store append to
    /// the next partition in turn, each request told where its records went. A failed append
    /// fails every request in it (their records were checked before, so the cause is the
    /// store's, not a request's).
    fn shared_append(&self, q: &Queue) -> Run<Records, SqsResult<Placed>> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let rr = self.round_robin.clone();
        let topic = q.topic.clone();
        let n = q.partitions();
        Arc::new(move |reqs: Vec<Records>| {
            let (store, metrics, rr, topic) =
                (store.clone(), metrics.clone(), rr.clone(), topic.clone());
            Box::pin(async move {
                let partition = (rr.fetch_add(1, Ordering::Relaxed) as u32 % n) as i32;
                let counts: Vec<usize> = reqs.iter().map(|r| r.records.len()).collect();
                let bytes: u64 = reqs.iter().map(|r| r.bytes).sum();
                let records: Vec<Record> = reqs.into_iter().flat_map(|r| r.records).collect();
                let count = records.len() as u64;
                match store
                    .append(&topic, partition, AppendBatch::new(records))
                    .await
                {
                    Ok(res) => {
                        metrics.appended(&topic, count, bytes);
                        let mut base = res.base_offset;
                        counts
                            .iter()
                            .map(|c| {
                                let placed = (partition, base, res.append_time_ms);
                                base += *c as i64;
                                Ok(placed)
                            })
                            .collect()
                    }
                    Err(e) => {
                        let e = SqsError::from(e);
                        counts.iter().map(|_| Err(e.clone())).collect()
                    }
                }
            })
        })
    }

    fn dedup_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<Option<DedupIndex>>> {
        self.dedup
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Appends the prepared entries; one result per entry, in order.
    async fn send_entries(
        &self,
        q: &Queue,
        prepared: Vec<SqsResult<Prepared>>,
    ) -> SqsResult<Vec<SqsResult<Sent>>> {
        let n = q.partitions();
        let now = self.now_ms();
        let lock = if q.fifo {
            Some(self.dedup_lock(&q.topic))
        } else {
            None
        };
        let mut guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        if let Some(g) = guard.as_mut() {
            match g.as_mut() {
                None => **g = Some(DedupIndex::load(self.store.as_ref(), &q.topic, n, now).await?),
                // Other brokers append to a shared store: read what they sent since.
                Some(index) if self.store.cluster().is_some() => {
                    index
                        .catch_up(self.store.as_ref(), &q.topic, n, now)
                        .await?
                }
                Some(_) => {}
            }
        }

        enum Slot {
            Done(SqsResult<Sent>),
            Dup(Original),
            SameAs(usize),
            Pending(i32, usize),
        }
        let mut slots = Vec::with_capacity(prepared.len());
        let mut md5s = Vec::with_capacity(prepared.len());
        let mut ids = Vec::with_capacity(prepared.len());
        let mut by_partition: BTreeMap<i32, Vec<Prepared>> = BTreeMap::new();
        let mut in_batch: HashMap<String, usize> = HashMap::new();
        for (i, p) in prepared.into_iter().enumerate() {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    slots.push(Slot::Done(Err(e)));
                    md5s.push(Checksums::default());
                    ids.push(uuid::Uuid::nil());
                    continue;
                }
            };
            md5s.push(p.sums.clone());
            ids.push(p.message_id);
            if let (Some(id), Some(g)) = (&p.dedup_id, guard.as_mut()) {
                let index = g.as_mut().expect("index loaded");
                if let Some(orig) = index.get(id, now) {
                    slots.push(Slot::Dup(orig));
                    continue;
                }
                if let Some(&first) = in_batch.get(id) {
                    slots.push(Slot::SameAs(first));
                    continue;
                }
                in_batch.insert(id.clone(), i);
            }
            let lane = match &p.group {
                Some(g) if q.fifo => (stable_hash(g) % n as u64) as i32,
                _ => 0,
            };
            let list = by_partition.entry(lane).or_default();
            slots.push(Slot::Pending(lane, list.len()));
            list.push(p);
        }

        // Appended lanes: a FIFO queue's lane is its partition; a standard queue's one lane
        // goes to a partition chosen by the shared append it joins.
        let mut appended: HashMap<i32, SqsResult<Placed>> = HashMap::new();
        let mut dedup_ids: HashMap<i32, Vec<(Option<String>, uuid::Uuid)>> = HashMap::new();
        for (lane, list) in by_partition {
            let bytes: u64 = list.iter().map(|p| p.bytes).sum();
            let count = list.len() as u64;
            if q.fifo {
                dedup_ids.insert(
                    lane,
                    list.iter()
                        .map(|p| (p.dedup_id.clone(), p.message_id))
                        .collect(),
                );
            }
            let records: Vec<Record> = list.into_iter().map(|p| p.record).collect();
            let placed = if q.fifo {
                match self
                    .store
                    .append(&q.topic, lane, AppendBatch::new(records))
                    .await
                {
                    Ok(res) => {
                        self.metrics.appended(&q.topic, count, bytes);
                        Ok((lane, res.base_offset, res.append_time_ms))
                    }
                    Err(e) => Err(e.into()),
                }
            } else {
                let req = Records { records, bytes };
                let key = q.topic.clone();
                let run = self.shared_append(q);
                self.send_calls
                    .call(key, req, bytes as usize, run)
                    .await
                    .and_then(|r| r)
            };
            appended.insert(lane, placed);
        }
        if let Some(g) = guard.as_mut() {
            let index = g.as_mut().expect("index loaded");
            for (lane, ids) in &dedup_ids {
                if let Some(Ok((partition, base, ts))) = appended.get(lane) {
                    for (i, (id, message_id)) in ids.iter().enumerate() {
                        if let Some(id) = id {
                            let o = Original {
                                message_id: *message_id,
                                partition: *partition,
                                offset: base + i as i64,
                                sent_ms: *ts,
                            };
                            index.insert(id.clone(), o, now);
                        }
                    }
                }
            }
        }
        drop(guard);

        let sent = |id: uuid::Uuid, partition: i32, offset: i64, sums: &Checksums| Sent {
            message_id: id.hyphenated().to_string(),
            sums: sums.clone(),
            sequence: q.fifo.then(|| msg::sequence_number(partition, offset)),
        };
        let mut out: Vec<SqsResult<Sent>> = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            let r = match slot {
                Slot::Done(Err(e)) => Err(e.clone()),
                Slot::Done(Ok(_)) => unreachable!("no slot is created done and successful"),
                Slot::Dup(o) => Ok(sent(o.message_id, o.partition, o.offset, &md5s[i])),
                Slot::SameAs(first) => match &out[*first] {
                    Ok(s) => Ok(Sent {
                        message_id: s.message_id.clone(),
                        sums: md5s[i].clone(),
                        sequence: s.sequence.clone(),
                    }),
                    Err(e) => Err(e.clone()),
                },
                Slot::Pending(lane, pos) => match &appended[lane] {
                    Ok((partition, base, _)) => {
                        Ok(sent(ids[i], *partition, base + *pos as i64, &md5s[i]))
                    }
                    Err(e) => Err(e.clone()),
                },
            };
            out.push(r);
        }
        Ok(out)
    }

    pub(super) async fn send_message(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue_for_messages(ctx, input).await?;
        let p = self.prepare(&q, input, self.now_ms())?;
        let mut r = self.send_entries(&q, vec![Ok(p)]).await?;
        Ok(r.remove(0)?.to_json(None))
    }

    pub(super) async fn send_message_batch(&self, ctx: &Ctx, input: &Value) -> SqsResult<Value> {
        let q = self.queue_for_messages(ctx, input).await?;
        let entries = batch_entries(input, "SendMessageBatchRequestEntry")?;
        let total: usize = entries
            .iter()
            .map(|e| {
                e.get("MessageBody")
                    .and_then(Value::as_str)
                    .map_or(0, str::len)
                    + msg::parse_attributes(e.get("MessageAttributes"))
                        .map(|a| a.iter().map(|(k, v)| v.size(k)).sum::<usize>())
                        .unwrap_or(0)
            })
            .sum();
        let limit = q.max_message_size() as usize;
        if total > limit {
            return Err(SqsError::BatchRequestTooLong(format!(
                "Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."
            )));
        }
        if q.fifo {
            // AWS refuses the whole batch (nothing is sent) when an entry lacks what every
            // FIFO message needs.
            for e in entries {
                if opt_str(e, "MessageGroupId").is_none() {
                    // In a batch AWS reports the missing group id as InvalidParameterValue.
                    return Err(SqsError::InvalidParameterValue(
                        SqsError::MissingParameter("MessageGroupId".into()).to_string(),
                    ));
                }
                if opt_str(e, "MessageDeduplicationId").is_none() && !q.content_based_dedup() {
                    return Err(SqsError::InvalidParameterValue(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
                    ));
                }
            }
        }
        let now = self.now_ms();
        let prepared = entries.iter().map(|e| self.prepare(&q, e, now)).collect();
        let results = self.send_entries(&q, prepared).await?;
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for (e, r) in entries.iter().zip(results) {
            let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
            match r {
                Ok(s) => ok.push(s.to_json(Some(id))),
                Err(err) => failed.push(failed_entry(id, &err)),
            }
        }
        Ok(json!({"Successful": ok, "Failed": failed}))
    }
}
