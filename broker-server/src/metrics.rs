//! Request and storage metrics, rendered in the Prometheus text format on `GET /metrics`.

use std::time::Duration;

/// Counters and histograms shared by the Kafka listener and the HTTP API.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// Records one Kafka request of API `api` (e.g. "Produce") that took `elapsed`.
    pub fn kafka_request(&self, _api: &'static str, _elapsed: Duration) {}
    /// Records one SQS action (e.g. "SendMessage") that took `elapsed`.
    pub fn sqs_request(&self, _action: &str, _elapsed: Duration) {}
    /// Records records and bytes appended to `topic`.
    pub fn appended(&self, _topic: &str, _records: u64, _bytes: u64) {}
}
