//! The counters as numbers, for the web console: it polls them and draws rates from the
//! differences, so nothing is computed or kept for it between its requests.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Metrics, Protocol};

/// Every counter since start, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Records and bytes appended (Kafka produce and SQS sends), over all topics still there.
    pub appended_records: u64,
    pub appended_bytes: u64,
    /// Kafka requests served, per API.
    pub kafka_requests: BTreeMap<String, u64>,
    /// SQS requests served, per action.
    pub sqs_requests: BTreeMap<String, u64>,
    /// Connections open now, and bytes received and sent, per protocol (`kafka`, `http`).
    pub connections_open: BTreeMap<&'static str, i64>,
    pub bytes_received: BTreeMap<&'static str, u64>,
    pub bytes_sent: BTreeMap<&'static str, u64>,
}

impl Metrics {
    /// The counters now; takes the metrics lock once, briefly.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        {
            let inner = self.inner.lock();
            for (records, bytes) in inner.appended.values() {
                t.appended_records += records;
                t.appended_bytes += bytes;
            }
            t.kafka_requests = inner
                .kafka
                .iter()
                .map(|(api, h)| (api.to_string(), h.count))
                .collect();
            t.sqs_requests = inner
                .sqs
                .iter()
                .map(|(action, h)| (action.clone(), h.count))
                .collect();
        }
        for p in Protocol::ALL {
            let i = p.index();
            t.connections_open
                .insert(p.label(), self.wire.open[i].load(Ordering::Relaxed).max(0));
            t.bytes_received
                .insert(p.label(), self.wire.received[i].load(Ordering::Relaxed));
            t.bytes_sent
                .insert(p.label(), self.wire.sent[i].load(Ordering::Relaxed));
        }
        t
    }

    /// Records and bytes appended per topic since start (topics deleted since are dropped at
    /// the next `/metrics` scrape).
    pub fn appended_by_topic(&self) -> BTreeMap<String, (u64, u64)> {
        self.inner.lock().appended.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_topics_and_count_requests() {
        let m = Metrics::new();
        m.appended("a", 2, 20);
        m.appended("b", 3, 30);
        m.kafka_request("Produce", std::time::Duration::from_millis(1));
        m.sqs_request("SendMessage", std::time::Duration::from_millis(1));
        m.sqs_request("SendMessage", std::time::Duration::from_millis(1));
        m.bytes_in(Protocol::Kafka, 7);
        let t = m.totals();
        assert_eq!((t.appended_records, t.appended_bytes), (5, 50));
        assert_eq!(t.kafka_requests["Produce"], 1);
        assert_eq!(t.sqs_requests["SendMessage"], 2);
        assert_eq!(t.bytes_received["kafka"], 7);
        assert_eq!(m.appended_by_topic()["b"], (3, 30));
    }
}
