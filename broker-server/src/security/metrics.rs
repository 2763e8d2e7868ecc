//! Security counters for `/metrics`: failed TLS handshakes, SASL logins by mechanism and
//! outcome, and authorisation refusals by operation. No label carries a user name, a
//! password or anything else a client chose, so label sets stay bounded and secret-free.

use std::sync::atomic::{AtomicU64, Ordering};

/// SASL mechanisms counted (index into the counters).
pub const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// The security counters.
#[derive(Debug, Default)]
pub struct SecurityMetrics {
    tls_failed: AtomicU64,
    sasl_ok: [AtomicU64; 4],
    sasl_failed: [AtomicU64; 4],
    denied_kafka: AtomicU64,
    denied_sqs: AtomicU64,
    connections_refused: AtomicU64,
    throttled_produce: AtomicU64,
    throttled_fetch: AtomicU64,
}

impl SecurityMetrics {
    /// A TLS handshake failed or timed out.
    pub fn tls_failed(&self) {
        self.tls_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A SASL login with `mechanism` (one of [`MECHANISMS`]) ended.
    pub fn sasl(&self, mechanism: &str, ok: bool) {
        if let Some(i) = MECHANISMS.iter().position(|m| *m == mechanism) {
            let c = if ok {
                &self.sasl_ok[i]
            } else {
                &self.sasl_failed[i]
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request (or part of one) was refused by the ACLs.
    pub fn denied(&self, sqs: bool) {
        let c = if sqs {
            &self.denied_sqs
        } else {
            &self.denied_kafka
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was refused by a connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A response carried a quota throttle time.
    pub fn throttled(&self, kind: super::quota::QuotaKind) {
        let c = match kind {
            super::quota::QuotaKind::Produce => &self.throttled_produce,
            super::quota::QuotaKind::Fetch => &self.throttled_fetch,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed SASL logins so far, all mechanisms.
    pub fn sasl_failures(&self) -> u64 {
        self.sasl_failed
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The counters in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP broker_tls_handshake_failures_total TLS handshakes that failed or timed out (Kafka and HTTP listeners).\n# TYPE broker_tls_handshake_failures_total counter\nbroker_tls_handshake_failures_total {}", self.tls_failed.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP broker_sasl_authentications_total SASL authentications on Kafka listeners, per mechanism and result (failed: wrong password, unknown user or malformed exchange).\n# TYPE broker_sasl_authentications_total counter");
        for (i, m) in MECHANISMS.iter().enumerate() {
            let _ = writeln!(
                out,
                "broker_sasl_authentications_total{{mechanism=\"{m}\",result=\"ok\"}} {}\nbroker_sasl_authentications_total{{mechanism=\"{m}\",result=\"failed\"}} {}",
                self.sasl_ok[i].load(Ordering::Relaxed),
                self.sasl_failed[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP broker_authorization_denied_total Requests or parts of requests refused by the ACLs, per protocol.\n# TYPE broker_authorization_denied_total counter\nbroker_authorization_denied_total{{protocol=\"kafka\"}} {}\nbroker_authorization_denied_total{{protocol=\"sqs\"}} {}", self.denied_kafka.load(Ordering::Relaxed), self.denied_sqs.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP broker_quota_throttled_total Kafka responses that carried a quota throttle time, per quota.\n# TYPE broker_quota_throttled_total counter\nbroker_quota_throttled_total{{quota=\"producer_byte_rate\"}} {}\nbroker_quota_throttled_total{{quota=\"consumer_byte_rate\"}} {}",
            self.throttled_produce.load(Ordering::Relaxed),
            self.throttled_fetch.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP broker_connections_refused_total Kafka connections closed at once by a per-IP or per-principal connection limit.\n# TYPE broker_connections_refused_total counter\nbroker_connections_refused_total {}", self.connections_refused.load(Ordering::Relaxed));
    }
}
