//! What one run measured: every figure, its baseline and the ratio between them.

use serde::Serialize;

/// The figure a measurement is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Records (or rows, or messages) per second.
    RecordsPerS,
    /// Payload megabytes (10^6 bytes) per second.
    MbPerS,
    /// Operations per second.
    OpsPerS,
    /// 99th percentile latency in microseconds (lower is better).
    P99Us,
}

impl Metric {
    /// Unit as printed in tables.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::RecordsPerS => "rec/s",
            Metric::MbPerS => "MB/s",
            Metric::OpsPerS => "ops/s",
            Metric::P99Us => "us p99",
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub samples: u64,
}

impl Latency {
    /// Percentiles of an HDR histogram recorded in nanoseconds.
    pub fn from_histogram(h: &hdrhistogram::Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            samples: h.len(),
        }
    }
}

/// CPU time spent during a case's timed part, in seconds, by who spent it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct CpuUse {
    /// Every process of the PostgreSQL server (postmaster, backends, background workers).
    pub postgres_s: f64,
    /// Every `broker` process under test.
    pub brokers_s: f64,
    /// This bench process (the load clients).
    pub client_s: f64,
    /// Every process on the machine (busy time of all cores, from /proc/stat): what is left
    /// after the three above was spent by others.
    pub machine_s: f64,
    /// Wall time of the timed part.
    pub wall_s: f64,
}

impl CpuUse {
    /// Cores kept busy on average: CPU seconds / wall seconds.
    pub fn cores(cpu_s: f64, wall_s: f64) -> f64 {
        if wall_s > 0.0 {
            cpu_s / wall_s
        } else {
            0.0
        }
    }
}

/// What PostgreSQL wrote during a case's timed part (from its transaction ids and WAL
/// position).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct PgUse {
    /// Transactions that wrote (each was assigned a transaction id).
    pub write_xacts: u64,
    /// WAL bytes written.
    pub wal_bytes: u64,
}

/// Whether a figure was measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Status {
    Ok,
    NotAvailable(String),
    Failed(String),
}

/// What kind of thing was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// A store called through the `Store` trait in-process.
    Contract,
    /// A store behind the `broker` server, driven by a network client.
    Server,
    /// A limit of the machine or of Postgres, measured without any store.
    Baseline,
}

/// One figure of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `subject/workload/case`, unique in a run.
    pub id: String,
    pub layer: Layer,
    /// Store (`memory`, `log-always`, ...), server (`kafka@log`) or baseline (`disk`, `pg-copy`).
    pub subject: String,
    pub workload: String,
    pub case: String,
    pub status: Status,
    pub metric: Metric,
    pub records_per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
    pub ops_per_s: Option<f64>,
    pub latency: Option<Latency>,
    /// Records, bytes or operations counted, whichever the metric is about.
    pub count: u64,
    pub elapsed_s: f64,
    /// Id of the measurement this one is divided by.
    pub baseline: Option<String>,
    /// `value / baseline value` for throughput; `p99 / baseline p99` for latency.
    pub ratio: Option<f64>,
    pub note: Option<String>,
    /// CPU spent by PostgreSQL, the brokers and the clients during the case (cluster cases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
    /// What PostgreSQL wrote during the case (cluster cases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg: Option<PgUse>,
}

impl Measurement {
    /// An empty measurement of `subject/workload/case`, judged by `metric`.
    pub fn new(layer: Layer, subject: &str, workload: &str, case: &str, metric: Metric) -> Self {
        Measurement {
            id: format!("{subject}/{workload}/{case}"),
            layer,
            subject: subject.to_string(),
            workload: workload.to_string(),
            case: case.to_string(),
            status: Status::Ok,
            metric,
            records_per_s: None,
            mb_per_s: None,
            ops_per_s: None,
            latency: None,
            count: 0,
            elapsed_s: 0.0,
            baseline: None,
            ratio: None,
            note: None,
            cpu: None,
            pg: None,
        }
    }

    /// Sets the baseline id.
    pub fn against(mut self, baseline: impl Into<String>) -> Self {
        self.baseline = Some(baseline.into());
        self
    }

    /// Fills throughput figures from a count of records of `record_bytes` each.
    pub fn with_records(mut self, records: u64, record_bytes: usize, elapsed_s: f64) -> Self {
        let e = elapsed_s.max(1e-9);
        self.count = records;
        self.elapsed_s = elapsed_s;
        self.records_per_s = Some(records as f64 / e);
        self.mb_per_s = Some(records as f64 * record_bytes as f64 / e / 1e6);
        self
    }

    /// Fills an operation rate.
    pub fn with_ops(mut self, ops: u64, elapsed_s: f64) -> Self {
        self.count = ops;
        self.elapsed_s = elapsed_s;
        self.ops_per_s = Some(ops as f64 / elapsed_s.max(1e-9));
        self
    }

    /// Fills latency percentiles.
    pub fn with_latency(mut self, h: &hdrhistogram::Histogram<u64>, elapsed_s: f64) -> Self {
        self.count = h.len();
        self.elapsed_s = elapsed_s;
        self.latency = Some(Latency::from_histogram(h));
        self
    }

    /// Adds a note.
    pub fn noted(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Marks the measurement as not measured, keeping its identity and baseline.
    pub fn unavailable(mut self, err: &crate::BenchError) -> Self {
        self.status = match err {
            crate::BenchError::NotAvailable(r) => Status::NotAvailable(r.clone()),
            other => Status::Failed(other.to_string()),
        };
        self
    }

    /// The figure named by `metric`, if measured.
    pub fn value(&self) -> Option<f64> {
        if self.status != Status::Ok {
            return None;
        }
        match self.metric {
            Metric::RecordsPerS => self.records_per_s,
            Metric::MbPerS => self.mb_per_s,
            Metric::OpsPerS => self.ops_per_s,
            Metric::P99Us => self.latency.map(|l| l.p99_us),
        }
    }
}

/// Fills every `ratio` from the baseline measured in the same run.
pub fn resolve_ratios(ms: &mut [Measurement]) {
    let values: std::collections::HashMap<String, (Metric, Option<f64>, Option<f64>)> = ms
        .iter()
        .map(|m| (m.id.clone(), (m.metric, m.value(), m.mb_per_s)))
        .collect();
    for m in ms.iter_mut() {
        let Some(base) = m.baseline.as_ref().and_then(|b| values.get(b)) else {
            continue;
        };
        let (bmetric, bvalue, bmb) = *base;
        // Compare like with like: bytes when the units differ.
        let (mine, theirs) = if bmetric == m.metric {
            (m.value(), bvalue)
        } else {
            (m.mb_per_s, bmb)
        };
        if let (Some(a), Some(b)) = (mine, theirs) {
            if b > 0.0 {
                m.ratio = Some(a / b);
            }
        }
    }
}
