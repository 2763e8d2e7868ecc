//! The run's outputs: a printed table, `results.json`, `results.md`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::model::{Layer, Measurement, Metric, Status};
use crate::targets::Target;
use crate::{BenchError, BenchResult};

/// Where and how the run was made.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub command: String,
    pub started_unix_s: u64,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub postgres: Option<String>,
    pub duration_s: f64,
    pub quick: bool,
    pub data_dir: String,
}

impl RunInfo {
    /// Facts about this machine, from /proc.
    pub fn gather(command: String, duration_s: f64, quick: bool, data_dir: String) -> RunInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        RunInfo {
            command,
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            postgres: None,
            duration_s,
            quick,
            data_dir,
        }
    }
}

/// A number in a short human form: 1.23M, 456k, 7.8, 0.012.
pub fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn figure(m: &Measurement) -> String {
    match &m.status {
        Status::NotAvailable(_) => "not available".into(),
        Status::Failed(_) => "FAILED".into(),
        Status::Ok => match m.metric {
            Metric::P99Us => m.latency.map_or("-".into(), |l| {
                format!(
                    "p50 {} / p99 {} / p99.9 {} us",
                    human(l.p50_us),
                    human(l.p99_us),
                    human(l.p999_us)
                )
            }),
            _ => m
                .value()
                .map_or("-".into(), |v| format!("{} {}", human(v), m.metric.unit())),
        },
    }
}

fn mb(m: &Measurement) -> String {
    match (&m.status, m.metric, m.mb_per_s) {
        (Status::Ok, Metric::RecordsPerS | Metric::MbPerS, Some(v)) => human(v),
        _ => String::new(),
    }
}

fn ratio(m: &Measurement) -> String {
    match (m.ratio, &m.baseline) {
        (Some(r), Some(_)) => format!("{}x", human(r)),
        (None, Some(_)) if m.status == Status::Ok => "no baseline".into(),
        _ => String::new(),
    }
}

const HEAD: [&str; 7] = [
    "subject", "workload", "case", "figure", "MB/s", "ratio", "baseline",
];

fn rows(ms: &[Measurement]) -> Vec<[String; 7]> {
    let mut order: Vec<&Measurement> = ms.iter().collect();
    let layer_rank = |l: Layer| match l {
        Layer::Baseline => 0,
        Layer::Contract => 1,
        Layer::Server => 2,
    };
    let wl_rank = |w: &str| {
        [
            "append",
            "write",
            "insert",
            "produce",
            "idempotent-produce",
            "txn-produce",
            "send",
            "fetch",
            "read",
            "tail",
            "latency",
            "write+fdatasync",
            "insert-latency",
            "lease",
            "queue",
            "receive+delete",
            "share-consume",
            "ts-lookup",
            "random-read",
            "compact",
            "scan",
        ]
        .iter()
        .position(|x| *x == w)
        .unwrap_or(99)
    };
    order.sort_by_key(|m| (layer_rank(m.layer), wl_rank(&m.workload)));
    order
        .into_iter()
        .map(|m| {
            [
                m.subject.clone(),
                m.workload.clone(),
                m.case.clone(),
                figure(m),
                mb(m),
                ratio(m),
                m.baseline.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

/// The table as aligned text, for the terminal.
pub fn text_table(ms: &[Measurement]) -> String {
    let rows = rows(ms);
    let mut w = HEAD.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(out, "{}", line(&HEAD.map(String::from)));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    out
}

/// The table in Markdown.
pub fn markdown_table(ms: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", HEAD.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEAD.len()));
    for r in rows(ms) {
        let _ = writeln!(
            out,
            "| {} |",
            r.map(|c| if c.is_empty() {
                " ".into()
            } else {
                c.replace('|', "\\|")
            })
            .join(" | ")
        );
    }
    out
}

/// The cluster cases (`--workload cluster`) in Markdown: each figure with its ratio to the
/// 1-broker figure and the cores PostgreSQL, the brokers and the clients kept busy meanwhile;
/// `None` when the run has none.
pub fn cluster_table(ms: &[Measurement]) -> Option<String> {
    let mut rows: Vec<(&Measurement, usize)> = ms
        .iter()
        .filter_map(|m| crate::cluster::brokers_of(&m.subject).map(|n| (m, n)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let wl_rank = |w: &str| {
        ["produce", "fetch", "send", "receive+delete"]
            .iter()
            .position(|x| *x == w)
            .unwrap_or(9)
    };
    rows.sort_by(|(a, na), (b, nb)| {
        (wl_rank(&a.workload), &a.case, na).cmp(&(wl_rank(&b.workload), &b.case, nb))
    });
    let mut out = String::from(
        "| workload | case | brokers | figure | ratio to 1 broker | PostgreSQL cores | broker cores | client cores | machine cores busy | PostgreSQL write transactions/s | records per transaction | WAL bytes per record |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (m, n) in rows {
        let cores = |f: fn(&crate::model::CpuUse) -> f64| {
            m.cpu
                .filter(|_| m.status == Status::Ok)
                .map(|c| f(&c) / c.wall_s.max(1e-9))
                .filter(|v| v.is_finite())
                .map_or("-".into(), |v| format!("{v:.2}"))
        };
        let pg = m.pg.filter(|_| m.status == Status::Ok && m.elapsed_s > 0.0);
        let xacts = pg.map_or("-".into(), |p| human(p.write_xacts as f64 / m.elapsed_s));
        let per_xact = pg.filter(|p| p.write_xacts > 0).map_or("-".into(), |p| {
            format!("{:.1}", m.count as f64 / p.write_xacts as f64)
        });
        let wal = pg.filter(|_| m.count > 0).map_or("-".into(), |p| {
            format!("{:.0}", p.wal_bytes as f64 / m.count as f64)
        });
        let r = match (n, m.ratio) {
            (1, _) if m.status == Status::Ok => "1".to_string(),
            (_, Some(r)) => format!("{r:.2}"),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {n} | {} | {r} | {} | {} | {} | {} | {} | {} | {} |",
            m.workload,
            m.case,
            figure(m),
            cores(|c| c.postgres_s),
            cores(|c| c.brokers_s),
            cores(|c| c.client_s),
            cores(|c| c.machine_s),
            xacts,
            per_xact,
            wal,
        );
    }
    Some(out)
}

/// The targets in Markdown.
pub fn markdown_targets(ts: &[Target]) -> String {
    let mut out = String::from(
        "| store | target | verdict | measured ratio | figures |\n|---|---|---|---|---|\n",
    );
    for t in ts {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not available",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} (needs >= {}) | {} |",
            t.store,
            t.requirement,
            verdict,
            t.ratio.map_or("-".into(), |r| format!("{r:.2}")),
            t.threshold,
            t.measured
        );
    }
    out
}

fn problems(ms: &[Measurement]) -> String {
    let mut out = String::new();
    for m in ms {
        match &m.status {
            Status::NotAvailable(r) => {
                let _ = writeln!(out, "- `{}`: not available: {r}", m.id);
            }
            Status::Failed(e) => {
                let _ = writeln!(out, "- `{}`: FAILED: {e}", m.id);
            }
            Status::Ok => {}
        }
    }
    out
}

/// Everything the run wrote, as JSON.
#[derive(Serialize)]
struct Results<'a> {
    run: &'a RunInfo,
    measurements: &'a [Measurement],
    targets: &'a [Target],
}

/// Writes `results.json` and `results.md` into `out`.
pub fn write_files(
    out: &Path,
    info: &RunInfo,
    ms: &[Measurement],
    ts: &[Target],
) -> BenchResult<()> {
    let err = |e: std::io::Error| BenchError::Output(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(err)?;
    let json = serde_json::to_string_pretty(&Results {
        run: info,
        measurements: ms,
        targets: ts,
    })
    .map_err(|e| BenchError::Output(e.to_string()))?;
    std::fs::write(out.join("results.json"), json).map_err(err)?;
    let mut md = String::new();
    let _ = writeln!(md, "# broker-bench results\n");
    let _ = writeln!(md, "- command: `{}`", info.command);
    let _ = writeln!(
        md,
        "- machine: {} x {} ({}), {:.1} GiB RAM, Linux {}",
        info.cores,
        info.cpu,
        if info.cores == 2 { "2 cores" } else { "cores" },
        info.memory_gib,
        info.kernel
    );
    if let Some(pg) = &info.postgres {
        let _ = writeln!(md, "- postgres: {pg}");
    }
    let _ = writeln!(
        md,
        "- per-case duration: {} s{}; data dir: {}",
        info.duration_s,
        if info.quick { " (--quick)" } else { "" },
        info.data_dir
    );
    let _ = writeln!(md, "- ratio: figure / baseline figure measured in the same run (for latency: p99 / baseline p99)\n");
    let _ = writeln!(md, "## Targets\n\n{}", markdown_targets(ts));
    if let Some(t) = cluster_table(ms) {
        let _ = writeln!(
            md,
            "## Cluster: 1 vs N brokers on one PostgreSQL\n\nCores: CPU seconds spent during the timed part / its wall seconds (PostgreSQL: the postmaster and every process it started; brokers: every `broker` process; clients: this bench; machine: all cores' busy time from /proc/stat, so what it has above the other three was spent by other processes).\n\n{t}"
        );
    }
    let _ = writeln!(md, "## All figures\n\n{}", markdown_table(ms));
    let p = problems(ms);
    if !p.is_empty() {
        let _ = writeln!(md, "## Not measured\n\n{p}");
    }
    let _ = writeln!(
        md,
        "![throughput](throughput.svg)\n\n![latency](latency.svg)"
    );
    std::fs::write(out.join("results.md"), md).map_err(err)?;
    Ok(())
}
