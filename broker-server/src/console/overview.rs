//! `GET /api/v1/overview`: version, store health, uptime, the broker, totals and the
//! counters the page draws rates from.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::{ApiError, ApiResult, Console, MAX_ITEMS};
use crate::backlog;
use crate::metrics::Totals;

/// The answer of `GET /api/v1/overview`.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub version: &'static str,
    pub store: StoreHealth,
    pub now_ms: i64,
    pub uptime_ms: u64,
    pub brokers: Vec<Broker>,
    pub totals: Counts,
    pub counters: Counters,
}

/// The store's kind and whether it answers.
#[derive(Debug, Serialize)]
pub struct StoreHealth {
    pub kind: &'static str,
    pub healthy: bool,
    /// Why it is unhealthy.
    pub error: Option<String>,
}

/// One broker of the cluster (this build runs one).
#[derive(Debug, Serialize)]
pub struct Broker {
    pub node_id: i32,
    pub state: &'static str,
    pub kafka_addr: String,
    pub advertised_addr: String,
    pub http_addr: String,
}

/// How much there is.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub topics: usize,
    pub queues: usize,
    pub partitions: u64,
    /// Records between log start and end, over every partition counted.
    pub records: u64,
    /// Groups with committed offsets or live members.
    pub groups: usize,
    /// Groups with members now.
    pub live_groups: usize,
    /// True when there were more than [`MAX_ITEMS`] partitions or groups and the counts
    /// stop there.
    pub partial: bool,
}

/// Counters since start; the page draws rates from their differences between polls.
#[derive(Debug, Serialize)]
pub struct Counters {
    #[serde(flatten)]
    pub totals: Totals,
    /// Sum of every committed offset of every group: it grows by one per record a group
    /// consumes and commits.
    pub committed_offsets: i64,
}

/// Reads everything the overview shows; store failures show as an unhealthy store (and
/// zero totals), not as a failed request.
pub async fn overview(State(c): State<Arc<Console>>) -> ApiResult<Json<Overview>> {
    let health = c.store.health().await;
    let (totals, committed_offsets) = match counts(&c).await {
        Ok(v) => v,
        Err(e) if health.is_ok() => return Err(e),
        Err(_) => (Counts::default(), 0),
    };
    Ok(Json(Overview {
        version: env!("CARGO_PKG_VERSION"),
        store: StoreHealth {
            kind: c.store.kind(),
            healthy: health.is_ok(),
            error: health.err().map(|e| e.to_string()),
        },
        now_ms: c.now_ms(),
        uptime_ms: c.started.elapsed().as_millis() as u64,
        brokers: brokers(&c),
        totals,
        counters: Counters {
            totals: c.metrics.totals(),
            committed_offsets,
        },
    }))
}

/// The live brokers: this one with its bound addresses, the others as registered.
fn brokers(c: &Console) -> Vec<Broker> {
    let l = &c.listeners;
    let node = c.kafka.node();
    let me = node.node_id();
    node.brokers()
        .iter()
        .map(|b| {
            let first = b
                .endpoints
                .first()
                .map(|e| format!("{}:{}", e.host, e.port))
                .unwrap_or_default();
            if b.membership.node_id == me {
                Broker {
                    node_id: me,
                    state: "running",
                    kafka_addr: l.kafka.to_string(),
                    advertised_addr: l.advertised.clone(),
                    http_addr: l.http.to_string(),
                }
            } else {
                Broker {
                    node_id: b.membership.node_id,
                    state: "running",
                    kafka_addr: first.clone(),
                    advertised_addr: first,
                    http_addr: b.http_addr.clone(),
                }
            }
        })
        .collect()
}

/// Topics, queues, partitions, records and groups, and the sum of committed offsets.
async fn counts(c: &Console) -> ApiResult<(Counts, i64)> {
    let store = c.store.as_ref();
    let fail = |what: &'static str| move |e| ApiError::store(what, e);
    let topics = store.list_topics().await.map_err(fail("listing topics"))?;
    let mut n = Counts {
        topics: topics.len(),
        ..Counts::default()
    };
    let mut walked = 0usize;
    for t in &topics {
        n.partitions += t.config.partitions as u64;
        if let Ok(groups) = store.lease_groups(&t.name).await {
            if backlog::is_queue(t, &groups) {
                n.queues += 1;
            }
        }
        for p in 0..t.config.partitions as i32 {
            if walked >= MAX_ITEMS {
                n.partial = true;
                break;
            }
            walked += 1;
            // A topic deleted meanwhile just stops counting.
            if let Ok(o) = store.partition_offsets(&t.name, p).await {
                n.records += (o.high_watermark - o.log_start_offset).max(0) as u64;
            }
        }
    }
    let stored = store
        .list_consumer_groups()
        .await
        .map_err(fail("listing consumer groups"))?;
    let live = c.kafka.live_groups();
    n.live_groups = live.len();
    let all: BTreeSet<&str> = stored
        .iter()
        .map(String::as_str)
        .chain(live.iter().map(|g| g.group.as_str()))
        .collect();
    n.groups = all.len();
    let mut committed = 0i64;
    for g in stored.iter().take(MAX_ITEMS) {
        let commits = store
            .list_committed(g)
            .await
            .map_err(fail("reading committed offsets"))?;
        committed += commits.iter().map(|o| o.offset.max(0)).sum::<i64>();
    }
    n.partial |= stored.len() > MAX_ITEMS;
    Ok((n, committed))
}
