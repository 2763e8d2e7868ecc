//! Request and storage metrics, rendered in the Prometheus text format on `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker_api::Store;
use parking_lot::Mutex;

use crate::backlog;

mod totals;
pub use totals::Totals;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0,
];
/// Most distinct SQS action labels kept (actions are a fixed set; this bounds bad input).
const MAX_ACTIONS: usize = 64;
/// Most topics and groups inspected per scrape.
const MAX_SCRAPE_ITEMS: usize = 10_000;

#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS.len()],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, label: &str, value: &str) {
        let value = escape(value);
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{label}=\"{value}\",le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    kafka: BTreeMap<&'static str, Histogram>,
    /// Non-zero error codes in Kafka responses, per (API, code).
    kafka_errors: BTreeMap<(&'static str, i16), u64>,
    sqs: BTreeMap<String, Histogram>,
    appended: BTreeMap<String, (u64, u64)>,
}

/// Most per-partition disk usage series (log store); the total is always exported.
pub const MAX_DISK_SERIES: usize = 1000;

/// A listener protocol, for per-protocol connection and byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Kafka wire protocol listener.
    Kafka,
    /// The HTTP listener (SQS API, metrics, health).
    Http,
}

impl Protocol {
    const ALL: [Protocol; 2] = [Protocol::Kafka, Protocol::Http];

    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Protocol::Kafka => "kafka",
            Protocol::Http => "http",
        }
    }
}

/// Per-protocol connection and byte counters.
#[derive(Debug, Default)]
struct Wire {
    open: [AtomicI64; 2],
    accepted: [AtomicU64; 2],
    received: [AtomicU64; 2],
    sent: [AtomicU64; 2],
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    protocol: Protocol,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.wire.open[self.protocol.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters and histograms shared by the Kafka listener and the HTTP API.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    wire: Wire,
    /// Metrics Kafka clients push (KIP-714).
    pub telemetry: crate::kafka::telemetry::Telemetry,
    /// TLS, SASL and ACL counters.
    pub security: crate::security::metrics::SecurityMetrics,
    /// Group coordinators given up, and writes the store refused as fenced.
    coordinator_lost: AtomicU64,
    fenced_writes: AtomicU64,
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one Kafka request of API `api` (e.g. "Produce") that took `elapsed`.
    pub fn kafka_request(&self, api: &'static str, elapsed: Duration) {
        self.inner
            .lock()
            .kafka
            .entry(api)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one non-zero error code found in a response of Kafka API `api`.
    pub fn kafka_error(&self, api: &'static str, code: i16) {
        *self
            .inner
            .lock()
            .kafka_errors
            .entry((api, code))
            .or_default() += 1;
    }

    /// Counts a connection accepted on `protocol`; it counts as open until the guard drops.
    pub fn connection_opened(self: &Arc<Self>, protocol: Protocol) -> ConnectionGuard {
        self.wire.open[protocol.index()].fetch_add(1, Ordering::Relaxed);
        self.wire.accepted[protocol.index()].fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            metrics: self.clone(),
            protocol,
        }
    }

    /// Counts a group this broker stopped coordinating.
    pub fn coordinator_lost(&self) {
        self.coordinator_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a write the store refused with a stale coordinator fence.
    pub fn fenced_write(&self) {
        self.fenced_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes received on `protocol`.
    pub fn bytes_in(&self, protocol: Protocol, n: u64) {
        self.wire.received[protocol.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes sent on `protocol`.
    pub fn bytes_out(&self, protocol: Protocol, n: u64) {
        self.wire.sent[protocol.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Records one SQS action (e.g. "SendMessage") that took `elapsed`.
    pub fn sqs_request(&self, action: &str, elapsed: Duration) {
        let mut inner = self.inner.lock();
        if !inner.sqs.contains_key(action) && inner.sqs.len() >= MAX_ACTIONS {
            return;
        }
        inner
            .sqs
            .entry(action.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Records records and bytes appended to `topic`.
    pub fn appended(&self, topic: &str, records: u64, bytes: u64) {
        let mut inner = self.inner.lock();
        let e = inner.appended.entry(topic.to_string()).or_default();
        e.0 += records;
        e.1 += bytes;
    }

    /// The request counters and histograms in the Prometheus text format.
    pub fn render_requests(&self) -> String {
        let inner = self.inner.lock();
        let mut out = self.telemetry.render();
        self.security.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP broker_coordinator_lost_total Groups this broker stopped coordinating because another broker holds them or its own registration lapsed.\n# TYPE broker_coordinator_lost_total counter\nbroker_coordinator_lost_total {}\n# HELP broker_fenced_writes_total Offset commits and group-state writes the store refused because this broker's claim on the group was superseded.\n# TYPE broker_fenced_writes_total counter\nbroker_fenced_writes_total {}",
            self.coordinator_lost.load(Ordering::Relaxed),
            self.fenced_writes.load(Ordering::Relaxed)
        );
        out.push_str("# HELP broker_kafka_requests_total Kafka requests served, per API.\n");
        out.push_str("# TYPE broker_kafka_requests_total counter\n");
        for (api, h) in &inner.kafka {
            let _ = writeln!(
                out,
                "broker_kafka_requests_total{{api=\"{}\"}} {}",
                escape(api),
                h.count
            );
        }
        out.push_str(
            "# HELP broker_kafka_request_duration_seconds Kafka request latency, per API.\n",
        );
        out.push_str("# TYPE broker_kafka_request_duration_seconds histogram\n");
        for (api, h) in &inner.kafka {
            h.render(
                &mut out,
                "broker_kafka_request_duration_seconds",
                "api",
                api,
            );
        }
        out.push_str("# HELP broker_kafka_errors_total Non-zero error codes in Kafka responses, per API and Kafka error name (top-level codes, and per partition for Produce and Fetch).\n");
        out.push_str("# TYPE broker_kafka_errors_total counter\n");
        for ((api, code), n) in &inner.kafka_errors {
            let _ = writeln!(
                out,
                "broker_kafka_errors_total{{api=\"{}\",error=\"{}\",code=\"{code}\"}} {n}",
                escape(api),
                crate::kafka::errors::error_name(*code)
            );
        }
        let wire = [
            ("broker_connections_open", "gauge", "Connections open now, per protocol.", &self.wire.open.each()),
            ("broker_connections_accepted_total", "counter", "Connections accepted, per protocol.", &self.wire.accepted.each()),
            ("broker_received_bytes_total", "counter", "Bytes received from clients, per protocol (Kafka: request frames; HTTP: everything read from the socket).", &self.wire.received.each()),
            ("broker_sent_bytes_total", "counter", "Bytes sent to clients, per protocol (Kafka: response frames; HTTP: everything written to the socket).", &self.wire.sent.each()),
        ];
        for (name, kind, help, values) in wire {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for p in Protocol::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{}\"}} {}",
                    p.label(),
                    values[p.index()]
                );
            }
        }
        out.push_str("# HELP broker_sqs_requests_total SQS requests served, per action.\n");
        out.push_str("# TYPE broker_sqs_requests_total counter\n");
        for (action, h) in &inner.sqs {
            let _ = writeln!(
                out,
                "broker_sqs_requests_total{{action=\"{}\"}} {}",
                escape(action),
                h.count
            );
        }
        out.push_str(
            "# HELP broker_sqs_request_duration_seconds SQS request latency, per action.\n",
        );
        out.push_str("# TYPE broker_sqs_request_duration_seconds histogram\n");
        for (action, h) in &inner.sqs {
            h.render(
                &mut out,
                "broker_sqs_request_duration_seconds",
                "action",
                action,
            );
        }
        out.push_str("# HELP broker_topic_appended_records_total Records appended, per topic.\n");
        out.push_str("# TYPE broker_topic_appended_records_total counter\n");
        for (topic, (records, _)) in &inner.appended {
            let _ = writeln!(
                out,
                "broker_topic_appended_records_total{{topic=\"{}\"}} {records}",
                escape(topic)
            );
        }
        out.push_str("# HELP broker_topic_appended_bytes_total Bytes appended, per topic.\n");
        out.push_str("# TYPE broker_topic_appended_bytes_total counter\n");
        for (topic, (_, bytes)) in &inner.appended {
            let _ = writeln!(
                out,
                "broker_topic_appended_bytes_total{{topic=\"{}\"}} {bytes}",
                escape(topic)
            );
        }
        out
    }

    /// Everything: the request metrics, plus queue depths and consumer-group lag read from
    /// `store` now. Store errors are reported as `broker_store_up 0`, never as a failure.
    pub async fn render(&self, store: &dyn Store) -> String {
        // Counters of deleted topics go away with them.
        if let Ok(topics) = store.list_topics().await {
            let names: std::collections::HashSet<&str> =
                topics.iter().map(|t| t.name.as_str()).collect();
            self.inner
                .lock()
                .appended
                .retain(|t, _| names.contains(t.as_str()));
        }
        let mut out = self.render_requests();
        out.push_str("# HELP broker_log_corrupt_batches_total Damaged stored batches found since start, each counted once.\n");
        out.push_str("# TYPE broker_log_corrupt_batches_total counter\n");
        let _ = writeln!(
            out,
            "broker_log_corrupt_batches_total {}",
            store.corrupt_batches()
        );
        render_disk(&mut out, store.partition_disk_bytes());
        render_store_metrics(&mut out, store.store_metrics());
        let store_metrics = store_gauges(store).await;
        out.push_str("# HELP broker_store_up Whether the store answered the last scrape.\n");
        out.push_str("# TYPE broker_store_up gauge\n");
        match store_metrics {
            Ok(text) => {
                out.push_str("broker_store_up 1\n");
                out.push_str(&text);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics scrape could not read the store");
                out.push_str("broker_store_up 0\n");
            }
        }
        out
    }
}

/// Values of a per-protocol counter array, as i64.
trait Each {
    fn each(&self) -> [i64; 2];
}

impl Each for [AtomicU64; 2] {
    fn each(&self) -> [i64; 2] {
        [0, 1].map(|i| self[i].load(Ordering::Relaxed) as i64)
    }
}

impl Each for [AtomicI64; 2] {
    fn each(&self) -> [i64; 2] {
        [0, 1].map(|i| self[i].load(Ordering::Relaxed).max(0))
    }
}

/// The log store's disk usage: the total, and per partition for the first
/// [`MAX_DISK_SERIES`] partitions (by topic and partition).
fn render_disk(out: &mut String, mut parts: Vec<(String, i32, u64)>) {
    if parts.is_empty() {
        return;
    }
    parts.sort();
    let total: u64 = parts.iter().map(|p| p.2).sum();
    out.push_str(
        "# HELP broker_log_disk_bytes Bytes the log store's partitions take on disk, in all.\n",
    );
    out.push_str("# TYPE broker_log_disk_bytes gauge\n");
    let _ = writeln!(out, "broker_log_disk_bytes {total}");
    out.push_str("# HELP broker_log_partitions Partitions of the log store (the per-partition disk series stop at 1000).\n");
    out.push_str("# TYPE broker_log_partitions gauge\n");
    let _ = writeln!(out, "broker_log_partitions {}", parts.len());
    out.push_str("# HELP broker_log_partition_disk_bytes Bytes a partition's files take on disk (segments and indexes), for the first 1000 partitions by name.\n");
    out.push_str("# TYPE broker_log_partition_disk_bytes gauge\n");
    for (topic, p, bytes) in parts.iter().take(MAX_DISK_SERIES) {
        let _ = writeln!(
            out,
            "broker_log_partition_disk_bytes{{topic=\"{}\",partition=\"{p}\"}} {bytes}",
            escape(topic)
        );
    }
}

/// The store's own metrics, grouped by name (one HELP and TYPE each).
fn render_store_metrics(out: &mut String, metrics: Vec<broker_api::StoreMetric>) {
    use broker_api::MetricValue;
    let mut names: Vec<&'static str> = Vec::new();
    for m in &metrics {
        if !names.contains(&m.name) {
            names.push(m.name);
        }
    }
    for name in names {
        let mut first = true;
        for m in metrics.iter().filter(|m| m.name == name) {
            if first {
                let kind = match m.value {
                    MetricValue::Counter(_) => "counter",
                    MetricValue::Gauge(_) => "gauge",
                    MetricValue::Histogram(_) => "histogram",
                };
                let _ = writeln!(out, "# HELP {name} {}", m.help);
                let _ = writeln!(out, "# TYPE {name} {kind}");
                first = false;
            }
            let labels: Vec<String> = m
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let plain = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            match &m.value {
                MetricValue::Counter(v) => {
                    let _ = writeln!(out, "{name}{plain} {v}");
                }
                MetricValue::Gauge(v) => {
                    let _ = writeln!(out, "{name}{plain} {v}");
                }
                MetricValue::Histogram(h) => {
                    let with = |le: String| {
                        let mut l = labels.clone();
                        l.push(format!("le=\"{le}\""));
                        l.join(",")
                    };
                    for (b, c) in h.bounds.iter().zip(&h.cumulative) {
                        let _ = writeln!(out, "{name}_bucket{{{}}} {c}", with(b.to_string()));
                    }
                    let _ = writeln!(out, "{name}_bucket{{{}}} {}", with("+Inf".into()), h.count);
                    let _ = writeln!(out, "{name}_sum{plain} {}", h.sum_secs);
                    let _ = writeln!(out, "{name}_count{plain} {}", h.count);
                }
            }
        }
    }
}

async fn store_gauges(store: &dyn Store) -> broker_api::StoreResult<String> {
    let mut out = String::new();
    let topics = store.list_topics().await?;
    out.push_str("# HELP broker_queue_messages SQS queue messages by state (visible, in_flight, delayed, dead_lettered).\n");
    out.push_str("# TYPE broker_queue_messages gauge\n");
    for t in topics.iter().take(MAX_SCRAPE_ITEMS) {
        let groups = match store.lease_groups(&t.name).await {
            Ok(g) => g,
            Err(broker_api::StoreError::UnknownTopic(_)) => continue,
            Err(e) => return Err(e),
        };
        if !backlog::is_queue(t, &groups) {
            continue;
        }
        let sums = match backlog::queue_counts(store, &t.name, t.config.partitions).await {
            Ok(c) => [c.available, c.leased, c.delayed, c.dead_lettered],
            Err(broker_api::StoreError::UnknownTopic(_)) => continue,
            Err(e) => return Err(e),
        };
        let q = escape(&t.name);
        for (state, v) in ["visible", "in_flight", "delayed", "dead_lettered"]
            .iter()
            .zip(sums)
        {
            let _ = writeln!(
                out,
                "broker_queue_messages{{queue=\"{q}\",state=\"{state}\"}} {v}"
            );
        }
    }
    out.push_str("# HELP broker_consumer_group_lag Records between a group's committed offsets and the high watermarks, per topic.\n");
    out.push_str("# TYPE broker_consumer_group_lag gauge\n");
    for group in store
        .list_consumer_groups()
        .await?
        .iter()
        .take(MAX_SCRAPE_ITEMS)
    {
        let mut lag: BTreeMap<String, i64> = BTreeMap::new();
        for c in backlog::group_lag(store, group).await? {
            if let Some(l) = c.lag {
                *lag.entry(c.topic).or_default() += l;
            }
        }
        for (topic, v) in lag {
            let _ = writeln!(
                out,
                "broker_consumer_group_lag{{group=\"{}\",topic=\"{}\"}} {v}",
                escape(group),
                escape(&topic)
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_counters_render() {
        let m = Metrics::new();
        m.kafka_request("Produce", Duration::from_millis(3));
        m.kafka_request("Produce", Duration::from_secs(30));
        m.sqs_request("SendMessage", Duration::from_micros(100));
        m.appended("orders", 2, 10);
        m.appended("orders", 1, 5);
        let text = m.render_requests();
        assert!(
            text.contains("broker_kafka_requests_total{api=\"Produce\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "broker_kafka_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "broker_kafka_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains(
            "broker_sqs_request_duration_seconds_bucket{action=\"SendMessage\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains("broker_topic_appended_records_total{topic=\"orders\"} 3"));
        assert!(text.contains("broker_topic_appended_bytes_total{topic=\"orders\"} 15"));
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
