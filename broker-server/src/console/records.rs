//! The message browser: `GET /api/v1/topics/{topic}/partitions/{partition}/records` reads
//! records from an offset or a timestamp (optionally only those with a given key), and
//! `POST /api/v1/topics/{topic}/records` produces a test record through the Kafka handler.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use broker_api::{FetchLimits, Header, Record, StoredRecord};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{json_body, parse_partition, query_param, ApiError, ApiResult, Console};

/// Most records one browse returns.
pub const MAX_LIMIT: usize = 500;
/// Records returned when no `limit` is given.
const DEFAULT_LIMIT: usize = 50;
/// Most records a key search reads before it answers (the answer says where to go on).
pub const SEARCH_SCAN: i64 = 10_000;
/// Bytes of a key, value or header value shown; longer ones are cut and marked.
pub const MAX_SHOWN_BYTES: usize = 64 * 1024;
/// Bytes read per store fetch.
const FETCH_BYTES: usize = 4 << 20;

/// Bytes as the browser shows them: the text when they are UTF-8, always base64.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Shown {
    /// The bytes as text, `None` when they are not UTF-8.
    pub text: Option<String>,
    pub base64: String,
    /// The full length; more than shown when `truncated`.
    pub size: usize,
    pub truncated: bool,
}

impl Shown {
    /// The first [`MAX_SHOWN_BYTES`] of `b`.
    pub fn of(b: &Bytes) -> Shown {
        let cut = &b[..b.len().min(MAX_SHOWN_BYTES)];
        // A cut inside a UTF-8 sequence still shows the whole characters before it.
        let text = match std::str::from_utf8(cut) {
            Ok(t) => Some(t.to_string()),
            Err(e) if cut.len() < b.len() && e.error_len().is_none() => {
                Some(String::from_utf8_lossy(&cut[..e.valid_up_to()]).into_owned())
            }
            Err(_) => None,
        };
        Shown {
            text,
            base64: base64::engine::general_purpose::STANDARD.encode(cut),
            size: b.len(),
            truncated: cut.len() < b.len(),
        }
    }
}

/// A header of a shown record.
#[derive(Debug, Serialize)]
pub struct ShownHeader {
    pub key: String,
    pub value: Option<Shown>,
}

/// A record as the browser shows it.
#[derive(Debug, Serialize)]
pub struct ShownRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Shown>,
    pub value: Option<Shown>,
    pub headers: Vec<ShownHeader>,
    /// Key, value and headers in bytes ([`StoredRecord::size`]).
    pub size: usize,
}

impl From<&StoredRecord> for ShownRecord {
    fn from(r: &StoredRecord) -> Self {
        ShownRecord {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_ref().map(Shown::of),
            value: r.value.as_ref().map(Shown::of),
            headers: r
                .headers
                .iter()
                .map(|h| ShownHeader {
                    key: h.key.clone(),
                    value: h.value.as_ref().map(Shown::of),
                })
                .collect(),
            size: r.size(),
        }
    }
}

/// The answer of a browse.
#[derive(Debug, Serialize)]
pub struct Page {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub end: i64,
    /// Where reading started.
    pub from: i64,
    /// The offset after the last record read (where a next page starts).
    pub next: i64,
    pub records: Vec<ShownRecord>,
}

/// Reads records of one partition. Query: `offset` (first offset; default: the newest
/// `limit` records), or `timestamp` (ms: from the first record at or after it), `limit`
/// (1-500, default 50), `key` (only records with this key, as text; reads at most 10,000
/// records per call). An offset outside `[log_start, end]` is a 400 naming both.
pub async fn browse(
    State(c): State<Arc<Console>>,
    Path((topic, partition)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page>> {
    let partition = parse_partition(&partition)?;
    let what = format!("topic {topic:?} partition {partition}");
    let offsets = c
        .store
        .partition_offsets(&topic, partition)
        .await
        .map_err(|e| ApiError::store(&what, e))?;
    let (log_start, end) = (offsets.log_start_offset, offsets.high_watermark);
    let limit = query_param::<usize>(&q, "limit")?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: give 1 to {MAX_LIMIT}"
        )));
    }
    let key = q.get("key").filter(|k| !k.is_empty()).cloned();
    let from = match (
        query_param::<i64>(&q, "offset")?,
        query_param::<i64>(&q, "timestamp")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give offset or timestamp, not both"))
        }
        (Some(o), None) if o < log_start || o > end => {
            return Err(ApiError::bad_request(format!(
                "offset {o} is out of range: {what} starts at offset {log_start} and ends \
                 at {end} (give {log_start} to {end})"
            )))
        }
        (Some(o), None) => o,
        (None, Some(ts)) => c
            .store
            .offset_for_timestamp(&topic, partition, ts)
            .await
            .map_err(|e| ApiError::store(&what, e))?
            .map_or(end, |o| o.offset),
        (None, None) if key.is_some() => log_start,
        (None, None) => (end - limit as i64).max(log_start),
    };
    let mut records = Vec::new();
    let mut next = from;
    let scan_end = match key {
        Some(_) => (from + SEARCH_SCAN).min(end),
        None => end,
    };
    while next < scan_end && records.len() < limit {
        let want = match key {
            Some(_) => (scan_end - next).min(1000) as usize,
            None => limit - records.len(),
        };
        let got = c
            .store
            .fetch(
                &topic,
                partition,
                next,
                FetchLimits {
                    max_records: want,
                    max_bytes: FETCH_BYTES,
                },
            )
            .await
            .map_err(|e| ApiError::store(&what, e))?;
        let Some(last) = got.records.last() else {
            break;
        };
        next = last.offset + 1;
        for r in &got.records {
            let wanted = match &key {
                Some(k) => r.key.as_deref() == Some(k.as_bytes()),
                None => true,
            };
            if wanted && records.len() < limit {
                records.push(ShownRecord::from(r));
                // With a key, a full page ends right after its last match.
                if key.is_some() && records.len() == limit {
                    next = r.offset + 1;
                }
            }
        }
    }
    Ok(Json(Page {
        topic,
        partition,
        log_start,
        end,
        from,
        next,
        records,
    }))
}

/// The body of `POST /api/v1/topics/{topic}/records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Produce {
    #[serde(default)]
    pub partition: i32,
    pub key: Option<String>,
    pub value: Option<String>,
    #[serde(default)]
    pub headers: Vec<ProduceHeader>,
}

/// A header of a produced record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceHeader {
    pub key: String,
    pub value: Option<String>,
}

/// Produces one record (text key, value and headers) through the broker's Kafka produce
/// handler, as a client would; 201 with its offset.
pub async fn produce(
    State(c): State<Arc<Console>>,
    Path(topic): Path<String>,
    body: Result<Json<Produce>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let req = json_body(body)?;
    let info = c.topic(&topic).await?;
    if req.partition < 0 || req.partition >= info.config.partitions as i32 {
        return Err(ApiError::bad_request(format!(
            "partition {} does not exist: topic {topic:?} has partitions 0 to {}",
            req.partition,
            info.config.partitions - 1
        )));
    }
    let record = Record {
        key: req.key.map(Bytes::from),
        value: req.value.map(Bytes::from),
        headers: req
            .headers
            .into_iter()
            .map(|h| Header {
                key: h.key,
                value: h.value.map(Bytes::from),
            })
            .collect(),
        timestamp_ms: Some(c.now_ms()),
        not_before_ms: None,
    };
    let offset = c
        .admin()
        .produce(&topic, req.partition, record)
        .await
        .map_err(ApiError::admin)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"topic": topic, "partition": req.partition, "offset": offset})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_bytes_keep_text_and_cut_long_values() {
        let s = Shown::of(&Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(s.text.as_deref(), Some("{\"a\":1}"));
        assert!(!s.truncated);
        let bin = Shown::of(&Bytes::from_static(&[0xff, 0x00]));
        assert_eq!((bin.text, bin.base64.as_str()), (None, "/wA="));
        let mut long = "é".repeat(MAX_SHOWN_BYTES); // 2 bytes each: the cut splits one
        long.push('x');
        let s = Shown::of(&Bytes::from(long));
        assert!(s.truncated);
        assert_eq!(s.size, MAX_SHOWN_BYTES * 2 + 1);
        assert_eq!(s.text.unwrap().chars().count(), MAX_SHOWN_BYTES / 2);
    }
}
