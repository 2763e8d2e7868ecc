//! Plans a run (the cases the selection asks for, plus the baselines they are compared with)
//! and runs it case by case.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::baseline_disk::{self, SyncPattern};
use crate::baseline_pg::PgBaseline;
use crate::model::{Layer, Measurement, Metric};
use crate::stores::{self, StoreEnv, StoreSpec};
use crate::workloads::{self, Sizing};
use crate::{baseline_mem, server, BenchError, BenchResult};
use broker_api::Durability;

/// Every workload name `--workload` accepts.
pub const WORKLOADS: &[&str] = &[
    "append",
    "fetch",
    "tail",
    "lease",
    "ts-lookup",
    "kafka",
    "sqs",
    "share",
    "txn",
    "compact",
    "cluster",
];

/// Workloads run when `--workload` is not given (`cluster` starts several brokers: only on
/// request).
pub fn default_workloads() -> Vec<String> {
    WORKLOADS
        .iter()
        .filter(|w| **w != "cluster")
        .map(|w| w.to_string())
        .collect()
}

/// Record sizes of the append and fetch cases.
pub const SIZES: &[usize] = &[100, 1024];
/// Batch sizes of the append cases.
pub const BATCHES: &[usize] = &[1, 100, 1000];
/// Concurrent appenders; 64 is run for single 100-byte records only (group commit).
pub const APPENDERS: &[usize] = &[1, 16];
/// Concurrent consumers of the lease + ack cases.
pub const CONSUMERS: &[usize] = &[1, 8, 64];
/// Records per lease call.
pub const LEASE_BATCH: usize = 100;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub sizing: Sizing,
    pub stores: Vec<StoreSpec>,
    pub workloads: Vec<String>,
    pub env: StoreEnv,
    /// The `broker` binary for the server workloads, if found.
    pub broker_bin: Option<PathBuf>,
    /// An earlier `broker` binary whose server figures are measured in the same run, for
    /// before/after comparisons (subjects `kafka-before@store`, `sqs-before@store`).
    pub before_broker_bin: Option<PathBuf>,
    /// Stores the server is run with.
    pub server_stores: Vec<String>,
    /// Broker counts of the `cluster` workload (brokers on one PostgreSQL schema).
    pub cluster: Vec<usize>,
}

/// One step of a run.
#[derive(Debug, Clone)]
enum Job {
    DiskWrite {
        bytes: usize,
        batch: usize,
        sync: SyncPattern,
    },
    /// `sz.bulk_bytes` written with one fdatasync at the end: dd-like, the log store
    /// (`never`) with 100 B and 1 KiB records, dd-like again.
    Bulk,
    DiskRead,
    DiskRandomRead,
    DiskFsyncLatency,
    ChannelLatency,
    PgCopy {
        size: usize,
        batch: usize,
        clients: usize,
    },
    PgNaiveInsert {
        clients: usize,
    },
    PgNaiveQueue {
        consumers: usize,
    },
    PgInsertLatency,
    Append {
        spec: StoreSpec,
        size: usize,
        batch: usize,
        appenders: usize,
    },
    Fetch {
        spec: StoreSpec,
        size: usize,
    },
    Tail {
        spec: StoreSpec,
    },
    Lease {
        spec: StoreSpec,
        consumers: usize,
    },
    TsLookup {
        spec: StoreSpec,
    },
    /// Reading a table of batch-sized rows in the cleaner's chunks: PostgreSQL's limit for
    /// the postgres store's compaction.
    PgScan,
    Compact {
        spec: StoreSpec,
    },
    Server {
        store: String,
        /// Run the earlier broker of `--before-broker-bin`.
        before: bool,
    },
    /// The server cases against `n` brokers on one PostgreSQL schema.
    Cluster {
        n: usize,
    },
}

fn append_cases() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for &size in SIZES {
        for &batch in BATCHES {
            for &a in APPENDERS {
                v.push((size, batch, a));
            }
        }
    }
    v.push((100, 1, 64));
    v
}

fn sync_for(spec: StoreSpec) -> SyncPattern {
    match spec.durability() {
        _ if !matches!(spec, StoreSpec::Log(_)) => SyncPattern::End,
        Durability::Always => SyncPattern::EachWrite,
        Durability::Interval { .. } => SyncPattern::Every100Ms,
        Durability::Never => SyncPattern::End,
    }
}

fn disk_write_case(size: usize, batch: usize, sync: SyncPattern) -> String {
    format!("{size}B b{batch} {}", sync.name())
}

/// Case names, shared by the planner and the ratio lookups.
pub fn append_case(size: usize, batch: usize, appenders: usize) -> String {
    format!("{size}B b{batch} c{appenders}")
}

fn tail_case(rate: u32) -> String {
    format!("100B @{rate}/s")
}

pub fn lease_case(consumers: usize) -> String {
    format!("b{LEASE_BATCH} c{consumers}")
}

fn plan(opts: &RunOptions) -> Vec<Job> {
    let want = |w: &str| opts.workloads.iter().any(|x| x == w);
    let has_pg = opts.stores.contains(&StoreSpec::Postgres);
    let non_pg: Vec<StoreSpec> = opts
        .stores
        .iter()
        .copied()
        .filter(|s| *s != StoreSpec::Postgres)
        .collect();
    let mut jobs = Vec::new();
    // Baselines first, so that every later case has its reference.
    if want("append") && !non_pg.is_empty() {
        let patterns: BTreeSet<&str> = non_pg.iter().map(|s| sync_for(*s).name()).collect();
        for sync in [
            SyncPattern::EachWrite,
            SyncPattern::Every100Ms,
            SyncPattern::End,
        ] {
            if !patterns.contains(sync.name()) {
                continue;
            }
            for &size in SIZES {
                for &batch in BATCHES {
                    jobs.push(Job::DiskWrite {
                        bytes: size,
                        batch,
                        sync,
                    });
                }
            }
        }
        jobs.push(Job::DiskWrite {
            bytes: 1 << 20,
            batch: 1,
            sync: SyncPattern::End,
        });
    }
    if want("append") && opts.stores.contains(&StoreSpec::Log(Durability::Never)) {
        jobs.push(Job::Bulk);
    }
    if want("fetch") || (want("compact") && !non_pg.is_empty()) {
        jobs.push(Job::DiskRead);
    }
    if want("compact") && has_pg {
        jobs.push(Job::PgScan);
    }
    if want("ts-lookup") {
        jobs.push(Job::DiskRandomRead);
    }
    if want("tail") {
        jobs.push(Job::ChannelLatency);
        if opts.stores.contains(&StoreSpec::Log(Durability::Always)) {
            jobs.push(Job::DiskFsyncLatency);
        }
        if has_pg {
            jobs.push(Job::PgInsertLatency);
        }
    }
    if want("append") && has_pg {
        let mut seen = BTreeSet::new();
        for (size, batch, clients) in append_cases() {
            if seen.insert((size, batch, clients)) {
                jobs.push(Job::PgCopy {
                    size,
                    batch,
                    clients,
                });
            }
        }
        jobs.push(Job::PgNaiveInsert { clients: 1 });
        jobs.push(Job::PgNaiveInsert { clients: 16 });
    }
    if want("lease") {
        for &c in CONSUMERS {
            jobs.push(Job::PgNaiveQueue { consumers: c });
        }
    }
    for &spec in &opts.stores {
        if want("append") {
            for (size, batch, appenders) in append_cases() {
                jobs.push(Job::Append {
                    spec,
                    size,
                    batch,
                    appenders,
                });
            }
        }
        if want("fetch") {
            for &size in SIZES {
                jobs.push(Job::Fetch { spec, size });
            }
        }
        if want("tail") {
            jobs.push(Job::Tail { spec });
        }
        if want("lease") {
            for &c in CONSUMERS {
                jobs.push(Job::Lease { spec, consumers: c });
            }
        }
        if want("ts-lookup") {
            jobs.push(Job::TsLookup { spec });
        }
        if want("compact") {
            jobs.push(Job::Compact { spec });
        }
    }
    if want("kafka") || want("sqs") || want("share") || want("txn") {
        for s in &opts.server_stores {
            if opts.before_broker_bin.is_some() {
                jobs.push(Job::Server {
                    store: s.clone(),
                    before: true,
                });
            }
            jobs.push(Job::Server {
                store: s.clone(),
                before: false,
            });
        }
    }
    if want("cluster") {
        // 1 broker first: the others are divided by it.
        let mut ns = opts.cluster.clone();
        ns.sort_unstable();
        ns.dedup();
        if ns.first() != Some(&1) {
            ns.insert(0, 1);
        }
        for n in ns {
            jobs.push(Job::Cluster { n });
        }
    }
    jobs
}

fn job_label(job: &Job) -> String {
    match job {
        Job::DiskWrite { bytes, batch, sync } => {
            format!("disk write {}", disk_write_case(*bytes, *batch, *sync))
        }
        Job::Bulk => "bulk write (dd-like and log-never)".into(),
        Job::DiskRead => "disk page-cache read".into(),
        Job::DiskRandomRead => "disk random 4 KiB read".into(),
        Job::DiskFsyncLatency => "disk write+fdatasync latency".into(),
        Job::ChannelLatency => "channel latency".into(),
        Job::PgCopy {
            size,
            batch,
            clients,
        } => format!("pg COPY {}", append_case(*size, *batch, *clients)),
        Job::PgNaiveInsert { clients } => format!("pg naive INSERT c{clients}"),
        Job::PgNaiveQueue { consumers } => format!("pg naive queue c{consumers}"),
        Job::PgInsertLatency => "pg INSERT latency".into(),
        Job::Append {
            spec,
            size,
            batch,
            appenders,
        } => {
            format!(
                "{} append {}",
                spec.name(),
                append_case(*size, *batch, *appenders)
            )
        }
        Job::Fetch { spec, size } => format!("{} fetch {size}B", spec.name()),
        Job::Tail { spec } => format!("{} tail", spec.name()),
        Job::Lease { spec, consumers } => format!("{} lease c{consumers}", spec.name()),
        Job::TsLookup { spec } => format!("{} ts-lookup", spec.name()),
        Job::PgScan => "pg chunked read of batch rows".into(),
        Job::Compact { spec } => format!("{} compact", spec.name()),
        Job::Server { store, before } => {
            format!(
                "{} on {store}",
                if *before { "earlier server" } else { "server" }
            )
        }
        Job::Cluster { n } => format!("cluster of {n} broker(s) on postgres"),
    }
}

/// Runs everything `opts` selects; failures and unavailable parts are recorded, never fatal.
pub async fn run(opts: &RunOptions) -> Vec<Measurement> {
    let jobs = plan(opts);
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:32}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let pg = match &opts.env.database_url {
        Some(url) => PgBaseline::create(url, &format!("{}_base", opts.env.pg_schema_prefix))
            .await
            .map_err(|e| e.to_string()),
        None => Err("DATABASE_URL is not set".to_string()),
    };
    let mut out = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        bar.set_message(job_label(job));
        let ms = run_job(job, i, opts, pg.as_ref()).await;
        for m in &ms {
            if let crate::model::Status::Failed(e) = &m.status {
                bar.println(format!("FAILED {}: {e}", m.id));
            }
        }
        out.extend(ms);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Ok(pg) = pg {
        if let Err(e) = pg.drop().await {
            eprintln!("warning: could not drop the baseline schema: {e}");
        }
    }
    crate::model::resolve_ratios(&mut out);
    out
}

fn fill(m: Measurement, r: BenchResult<Measurement>) -> Measurement {
    match r {
        Ok(m) => m,
        Err(e) => m.unavailable(&e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> BenchResult<T> + Send + 'static,
) -> BenchResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BenchError::Wrong(format!("blocking task panicked: {e}")))?
}

async fn run_job(
    job: &Job,
    no: usize,
    opts: &RunOptions,
    pg: Result<&PgBaseline, &String>,
) -> Vec<Measurement> {
    let sz = opts.sizing;
    let dir = opts.env.data_dir.clone();
    let pg = pg.map_err(|e| BenchError::NotAvailable(e.clone()));
    let rate = sz.tail_rate;
    match job.clone() {
        Job::DiskWrite { bytes, batch, sync } => {
            let m = Measurement::new(
                Layer::Baseline,
                "disk",
                "write",
                &if bytes == 1 << 20 {
                    format!("1MiB {}", sync.name())
                } else {
                    disk_write_case(bytes, batch, sync)
                },
                Metric::RecordsPerS,
            );
            let r = blocking(move || {
                baseline_disk::sequential_write(
                    &dir,
                    bytes * batch,
                    sync,
                    sz.duration,
                    sz.max_bytes,
                )
            })
            .await
            .map(|t| {
                m.clone()
                    .with_records(t.records * batch as u64, bytes, t.elapsed_s)
            });
            vec![fill(m, r)]
        }
        Job::Bulk => bulk(no, opts).await,
        Job::DiskRead => {
            let m = Measurement::new(
                Layer::Baseline,
                "disk",
                "read",
                "page-cache 1MiB blocks",
                Metric::MbPerS,
            );
            let bytes = sz.fetch_bytes;
            let r = blocking(move || baseline_disk::page_cache_read(&dir, bytes, sz.duration))
                .await
                .map(|t| m.clone().with_records(t.records, 1, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::DiskRandomRead => {
            let m = Measurement::new(
                Layer::Baseline,
                "disk",
                "random-read",
                "4KiB page-cache",
                Metric::OpsPerS,
            );
            let r = blocking(move || baseline_disk::random_read(&dir, sz.duration))
                .await
                .map(|t| m.clone().with_ops(t.records, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::DiskFsyncLatency => {
            let m = Measurement::new(
                Layer::Baseline,
                "disk",
                "write+fdatasync",
                &tail_case(rate),
                Metric::P99Us,
            );
            let r = blocking(move || baseline_disk::fsync_latency(&dir, 100, rate, sz.duration))
                .await
                .map(|(h, e)| m.clone().with_latency(&h, e));
            vec![fill(m, r)]
        }
        Job::ChannelLatency => {
            let m = Measurement::new(
                Layer::Baseline,
                "channel",
                "latency",
                &format!("@{rate}/s"),
                Metric::P99Us,
            );
            let r = baseline_mem::channel_latency(rate, sz.duration)
                .await
                .map(|(h, e)| m.clone().with_latency(&h, e));
            vec![fill(m, r)]
        }
        Job::PgCopy {
            size,
            batch,
            clients,
        } => {
            let m = Measurement::new(
                Layer::Baseline,
                "pg-copy",
                "append",
                &append_case(size, batch, clients),
                Metric::RecordsPerS,
            );
            let r = match pg {
                Ok(pg) => {
                    pg.copy(size, batch, clients, sz.duration, sz.max_bytes)
                        .await
                }
                Err(e) => Err(e),
            }
            .map(|t| m.clone().with_records(t.records, size, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::PgNaiveInsert { clients } => {
            let m = Measurement::new(
                Layer::Baseline,
                "pg-naive",
                "insert",
                &append_case(100, 1, clients),
                Metric::RecordsPerS,
            );
            let r = match pg {
                Ok(pg) => pg.naive_insert(clients, sz.duration).await,
                Err(e) => Err(e),
            }
            .map(|t| m.clone().with_records(t.records, 100, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::PgNaiveQueue { consumers } => {
            let m = Measurement::new(
                Layer::Baseline,
                "pg-naive",
                "queue",
                &format!("b1 c{consumers}"),
                Metric::RecordsPerS,
            );
            let r = match pg {
                Ok(pg) => {
                    pg.naive_queue(consumers, sz.lease_records, sz.duration)
                        .await
                }
                Err(e) => Err(e),
            }
            .map(|t| m.clone().with_records(t.records, 100, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::PgInsertLatency => {
            let m = Measurement::new(
                Layer::Baseline,
                "pg-naive",
                "insert-latency",
                &tail_case(rate),
                Metric::P99Us,
            );
            let r = match pg {
                Ok(pg) => pg.insert_latency(rate, sz.duration).await,
                Err(e) => Err(e),
            }
            .map(|(h, e)| m.clone().with_latency(&h, e));
            vec![fill(m, r)]
        }
        Job::Append {
            spec,
            size,
            batch,
            appenders,
        } => {
            let base = match spec {
                StoreSpec::Postgres => {
                    format!("pg-copy/append/{}", append_case(size, batch, appenders))
                }
                _ => format!(
                    "disk/write/{}",
                    disk_write_case(size, batch, sync_for(spec))
                ),
            };
            let m = Measurement::new(
                Layer::Contract,
                &spec.name(),
                "append",
                &append_case(size, batch, appenders),
                Metric::RecordsPerS,
            )
            .against(base);
            let r = with_store(spec, &opts.env, no, |s| {
                workloads::append(s, spec.durability(), size, batch, appenders, &sz)
            })
            .await
            .map(|t| m.clone().with_records(t.records, size, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::Fetch { spec, size } => {
            let m = Measurement::new(
                Layer::Contract,
                &spec.name(),
                "fetch",
                &format!("{size}B"),
                Metric::MbPerS,
            )
            .against("disk/read/page-cache 1MiB blocks");
            let r = with_store(spec, &opts.env, no, |s| workloads::catch_up(s, size, &sz))
                .await
                .map(|t| m.clone().with_records(t.records, size, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::Tail { spec } => {
            let base = match spec {
                StoreSpec::Postgres => format!("pg-naive/insert-latency/{}", tail_case(rate)),
                StoreSpec::Log(Durability::Always) => {
                    format!("disk/write+fdatasync/{}", tail_case(rate))
                }
                _ => format!("channel/latency/@{rate}/s"),
            };
            let m = Measurement::new(
                Layer::Contract,
                &spec.name(),
                "tail",
                &tail_case(rate),
                Metric::P99Us,
            )
            .against(base);
            let r = with_store(spec, &opts.env, no, |s| {
                workloads::tail_latency(s, spec.durability(), 100, &sz)
            })
            .await
            .map(|(h, e)| m.clone().with_latency(&h, e));
            vec![fill(m, r)]
        }
        Job::Lease { spec, consumers } => {
            let m = Measurement::new(
                Layer::Contract,
                &spec.name(),
                "lease",
                &lease_case(consumers),
                Metric::RecordsPerS,
            )
            .against(format!("pg-naive/queue/b1 c{consumers}"));
            let r = with_store(spec, &opts.env, no, |s| {
                workloads::lease_ack(s, spec.durability(), consumers, LEASE_BATCH, &sz)
            })
            .await
            .map(|t| m.clone().with_records(t.records, 100, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::TsLookup { spec } => {
            let m = Measurement::new(
                Layer::Contract,
                &spec.name(),
                "ts-lookup",
                "random",
                Metric::OpsPerS,
            )
            .against("disk/random-read/4KiB page-cache");
            let r = with_store(spec, &opts.env, no, |s| workloads::timestamp_lookup(s, &sz))
                .await
                .map(|t| m.clone().with_ops(t.records, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::PgScan => {
            let m = Measurement::new(
                Layer::Baseline,
                "pg-read",
                "scan",
                &compact_case(&sz),
                Metric::MbPerS,
            );
            let shape = workloads::CompactShape::of(&sz);
            let r = match pg {
                Ok(pg) => {
                    pg.chunked_read(
                        shape.stored_bytes(),
                        shape.batch_bytes(),
                        workloads::COMPACT_CHUNK_ROWS,
                        sz.duration,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
            .map(|t| m.clone().with_records(t.records, 1, t.elapsed_s));
            vec![fill(m, r)]
        }
        Job::Compact { spec } => {
            let base = match spec {
                StoreSpec::Postgres => format!("pg-read/scan/{}", compact_case(&sz)),
                _ => "disk/read/page-cache 1MiB blocks".to_string(),
            };
            let m = Measurement::new(
                Layer::Contract,
                &spec.name(),
                "compact",
                &compact_case(&sz),
                Metric::MbPerS,
            )
            .against(base);
            let r = with_store(spec, &opts.env, no, |s| {
                workloads::compact(s, spec.durability(), &sz)
            })
            .await
            .map(|c| {
                m.clone()
                    .with_records(c.bytes_read, 1, c.elapsed_s)
                    .noted(c.describe())
            });
            vec![fill(m, r)]
        }
        Job::Server { store, before } => server::run_suite(&store, opts, no, before).await,
        Job::Cluster { n } => crate::cluster::run_suite(n, opts, no).await,
    }
}

async fn with_store<T, F, Fut>(spec: StoreSpec, env: &StoreEnv, no: usize, f: F) -> BenchResult<T>
where
    F: FnOnce(std::sync::Arc<dyn broker_api::Store>) -> Fut,
    Fut: std::future::Future<Output = BenchResult<T>>,
{
    let opened = stores::open(spec, env, no).await?;
    let r = f(opened.store.clone()).await;
    opened.dispose(env).await;
    r
}

/// Case name of the compaction case: records, keys, record size, segment size.
pub fn compact_case(sz: &Sizing) -> String {
    let shape = workloads::CompactShape::of(sz);
    format!(
        "{}k rec {}k keys 100B seg{}KiB",
        shape.records / 1000,
        shape.keys as f64 / 1000.0,
        shape.segment_bytes >> 10
    )
}

/// The case names the server suite compares with.
pub fn contract_names() -> (String, String) {
    (append_case(100, 1000, 1), lease_case(8))
}

/// Rounds of the bulk-write comparison.
pub const BULK_ROUNDS: usize = 3;

/// Case name of the bulk write of `size`-byte records in `round` (1-based).
pub fn bulk_case(size: usize, round: usize) -> String {
    format!("{size}B b1000 bulk r{round}")
}

/// Case name of the dd-like bulk write `k` (0 before the first round, k after round k).
pub fn bulk_dd_case(k: usize) -> String {
    format!("1MiB bulk sync-end d{k}")
}

/// The bulk-write comparison: rounds of (log store with 100 B records, with 1 KiB records),
/// each between two dd-like writes of the same byte count, so that every round has a
/// baseline on either side (this disk's speed drifts by 5x from minute to minute).
async fn bulk(no: usize, opts: &RunOptions) -> Vec<Measurement> {
    let sz = opts.sizing;
    let bytes = sz.bulk_bytes;
    let rounds = if sz.bulk_bytes < (256 << 20) {
        1
    } else {
        BULK_ROUNDS
    };
    // Time is not the limit here: the byte count is.
    let long = Duration::from_secs(600);
    let mut out = Vec::new();
    let spec = StoreSpec::Log(Durability::Never);
    for k in 0..=rounds {
        if k > 0 {
            for size in [100, 1024] {
                settle().await;
                let m = Measurement::new(
                    Layer::Contract,
                    &spec.name(),
                    "append",
                    &bulk_case(size, k),
                    Metric::MbPerS,
                )
                .against(format!("disk/write/{}", bulk_dd_case(k)));
                let bulk_sz = Sizing {
                    duration: long,
                    max_bytes: bytes,
                    ..sz
                };
                let r = with_store(spec, &opts.env, no, |s| {
                    workloads::append(s, Durability::Never, size, 1000, 1, &bulk_sz)
                })
                .await
                .map(|t| m.clone().with_records(t.records, size, t.elapsed_s));
                out.push(fill(m, r));
            }
        }
        settle().await;
        let dir = opts.env.data_dir.clone();
        let m = Measurement::new(
            Layer::Baseline,
            "disk",
            "write",
            &bulk_dd_case(k),
            Metric::MbPerS,
        );
        let r = blocking(move || {
            baseline_disk::sequential_write(&dir, 1 << 20, SyncPattern::End, long, bytes)
        })
        .await
        .map(|t| m.clone().with_records(t.records, 1 << 20, t.elapsed_s));
        out.push(fill(m, r));
    }
    out
}

/// Short pause between heavy cases so one case's writeback does not bleed into the next.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}
