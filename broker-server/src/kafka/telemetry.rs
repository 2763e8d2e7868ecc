//! Client telemetry (KIP-714): GetTelemetrySubscriptions hands every client a subscription
//! to all its metrics, PushTelemetry takes the OTLP metrics it sends, and `/metrics` shows
//! the latest value of each, per client instance.
//!
//! Only what is needed of OTLP's protobuf is read here (metric names and number data
//! points); a push that does not parse is counted and answered INVALID_RECORD.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_batch::Compression;
use kafka_protocol::messages::{
    GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse, PushTelemetryRequest,
    PushTelemetryResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use uuid::Uuid;

use super::KafkaServer;

/// How often clients push.
pub const PUSH_INTERVAL_MS: i32 = 30_000;
/// Largest push accepted, compressed or not.
const MAX_PUSH_BYTES: i32 = 1 << 20;
/// Most client instances and metrics per client kept (bounds what a client can make us hold).
const MAX_CLIENTS: usize = 256;
const MAX_METRICS_PER_CLIENT: usize = 512;
/// A client that has not pushed for this long is dropped from `/metrics`.
const CLIENT_TTL: Duration = Duration::from_secs(3 * PUSH_INTERVAL_MS as u64 / 1000);
/// The one subscription every client gets: all metrics.
const SUBSCRIPTION_ID: i32 = 1;

#[derive(Debug, Default)]
struct ClientMetrics {
    metrics: BTreeMap<String, f64>,
    seen: Option<Instant>,
}

/// Metrics pushed by clients, latest value per (client instance, metric).
#[derive(Debug, Default)]
pub struct Telemetry {
    clients: Mutex<BTreeMap<Uuid, ClientMetrics>>,
    pushes: Mutex<(u64, u64)>,
}

impl Telemetry {
    /// Stores one decoded push; `terminating` drops the client.
    fn store(&self, client: Uuid, metrics: Vec<(String, f64)>, terminating: bool) {
        let mut clients = self.clients.lock();
        let now = Instant::now();
        clients.retain(|_, c| c.seen.is_some_and(|t| now.duration_since(t) < CLIENT_TTL));
        if terminating {
            clients.remove(&client);
            return;
        }
        if !clients.contains_key(&client) && clients.len() >= MAX_CLIENTS {
            return;
        }
        let entry = clients.entry(client).or_default();
        entry.seen = Some(now);
        for (name, value) in metrics {
            if entry.metrics.len() < MAX_METRICS_PER_CLIENT || entry.metrics.contains_key(&name) {
                entry.metrics.insert(name, value);
            }
        }
    }

    /// The pushed metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let (ok, bad) = *self.pushes.lock();
        let mut out = String::new();
        out.push_str("# HELP broker_client_telemetry_pushes_total Client telemetry pushes (KIP-714), by outcome.\n");
        out.push_str("# TYPE broker_client_telemetry_pushes_total counter\n");
        let _ = writeln!(
            out,
            "broker_client_telemetry_pushes_total{{outcome=\"ok\"}} {ok}"
        );
        let _ = writeln!(
            out,
            "broker_client_telemetry_pushes_total{{outcome=\"invalid\"}} {bad}"
        );
        out.push_str("# HELP broker_client_metric Latest value of each metric a client pushed (summed over its data points).\n");
        out.push_str("# TYPE broker_client_metric gauge\n");
        for (id, c) in self.clients.lock().iter() {
            for (name, v) in &c.metrics {
                let name = name.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out,
                    "broker_client_metric{{client_instance_id=\"{id}\",name=\"{name}\"}} {v}"
                );
            }
        }
        out
    }
}

impl KafkaServer {
    pub(super) fn get_telemetry_subscriptions(
        &self,
        req: GetTelemetrySubscriptionsRequest,
    ) -> GetTelemetrySubscriptionsResponse {
        let id = if req.client_instance_id.is_nil() {
            Uuid::new_v4()
        } else {
            req.client_instance_id
        };
        GetTelemetrySubscriptionsResponse::default()
            .with_client_instance_id(id)
            .with_subscription_id(SUBSCRIPTION_ID)
            .with_accepted_compression_types(vec![0, 1, 2, 3, 4])
            .with_push_interval_ms(PUSH_INTERVAL_MS)
            .with_telemetry_max_bytes(MAX_PUSH_BYTES)
            .with_delta_temporality(false)
            // One empty prefix: every metric.
            .with_requested_metrics(vec![StrBytes::from_static_str("")])
    }

    pub(super) fn push_telemetry(&self, req: PushTelemetryRequest) -> PushTelemetryResponse {
        let resp = PushTelemetryResponse::default();
        if req.client_instance_id.is_nil() {
            return resp.with_error_code(ResponseError::InvalidRequest.code());
        }
        if req.subscription_id != SUBSCRIPTION_ID {
            return resp.with_error_code(ResponseError::UnknownSubscriptionId.code());
        }
        if req.metrics.len() > MAX_PUSH_BYTES as usize {
            return resp.with_error_code(ResponseError::TelemetryTooLarge.code());
        }
        let decoded = decompress(req.compression_type, req.metrics).and_then(|b| parse_metrics(&b));
        match decoded {
            Some(metrics) => {
                self.metrics.telemetry.pushes.lock().0 += 1;
                self.metrics
                    .telemetry
                    .store(req.client_instance_id, metrics, req.terminating);
                resp
            }
            None => {
                self.metrics.telemetry.pushes.lock().1 += 1;
                resp.with_error_code(ResponseError::InvalidRecord.code())
            }
        }
    }
}

fn decompress(kind: i8, data: Bytes) -> Option<Bytes> {
    let compression = match kind {
        0 => return Some(data),
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => return None,
    };
    kafka_batch::decompress(&data, compression).ok()
}

/// Protobuf fields of one message: (field number, wire value).
enum Field<'a> {
    Varint,
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

fn fields(mut b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let field = match key & 7 {
            0 => {
                varint(&mut b)?;
                Field::Varint
            }
            1 => {
                let (v, rest) = b.split_at_checked(8)?;
                b = rest;
                Field::Fixed64(u64::from_le_bytes(v.try_into().ok()?))
            }
            2 => {
                let len = usize::try_from(varint(&mut b)?).ok()?;
                let (v, rest) = b.split_at_checked(len)?;
                b = rest;
                Field::Bytes(v)
            }
            5 => {
                let (_, rest) = b.split_at_checked(4)?;
                b = rest;
                Field::Fixed32
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    Some(out)
}

fn sub<'a>(fields: &'a [(u64, Field<'a>)], n: u64) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields.iter().filter_map(move |(k, f)| match f {
        Field::Bytes(b) if *k == n => Some(*b),
        _ => None,
    })
}

/// (metric name, sum of its number data points) of an OTLP `MetricsData` message.
fn parse_metrics(b: &[u8]) -> Option<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for resource in sub(&fields(b)?, 1) {
        for scope in sub(&fields(resource)?, 2) {
            for metric in sub(&fields(scope)?, 2) {
                let m = fields(metric)?;
                let name = sub(&m, 1)
                    .next()
                    .map(|n| String::from_utf8_lossy(n).into_owned());
                let Some(name) = name else { continue };
                // gauge = 5, sum = 7: both hold NumberDataPoints in field 1.
                let mut value = None;
                for data in sub(&m, 5).chain(sub(&m, 7)) {
                    for point in sub(&fields(data)?, 1) {
                        for (k, f) in fields(point)? {
                            let v = match (k, f) {
                                (4, Field::Fixed64(bits)) => f64::from_bits(bits),
                                (6, Field::Fixed64(bits)) => bits as i64 as f64,
                                _ => continue,
                            };
                            *value.get_or_insert(0.0) += v;
                        }
                    }
                }
                if let Some(v) = value {
                    out.push((name, v));
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(field: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3 | 2) as u8];
        out.push(body.len() as u8);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn gauges_and_sums_are_read() {
        let mut point_d = vec![4 << 3 | 1];
        point_d.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
        let mut point_i = vec![6 << 3 | 1];
        point_i.extend_from_slice(&7i64.to_le_bytes());
        let gauge = msg(5, &msg(1, &point_d));
        let sum = msg(7, &[msg(1, &point_i), msg(1, &point_i)].concat());
        let m1 = [msg(1, b"a.gauge"), gauge].concat();
        let m2 = [msg(1, b"b.sum"), sum].concat();
        let scope = [msg(2, &m1), msg(2, &m2)].concat();
        let data = msg(1, &msg(2, &scope));
        let parsed = parse_metrics(&data).unwrap();
        assert_eq!(
            parsed,
            vec![("a.gauge".into(), 2.5), ("b.sum".into(), 14.0)]
        );
        assert!(parse_metrics(&data[..data.len() - 1]).is_none());
    }

    #[test]
    fn terminating_clients_are_dropped() {
        let t = Telemetry::default();
        let id = Uuid::new_v4();
        t.store(id, vec![("x".into(), 1.0)], false);
        assert!(t
            .render()
            .contains(&format!("client_instance_id=\"{id}\",name=\"x\"}} 1")));
        t.store(id, vec![], true);
        assert!(!t.render().contains(&id.to_string()));
    }
}
