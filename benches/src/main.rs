//! `broker-bench`: runs the workloads against the selected stores and baselines, prints a
//! table and writes results.json, results.md, throughput.svg and latency.svg.

use std::path::PathBuf;
use std::time::Duration;

use benches::model::Status;
use benches::runner::{RunOptions, WORKLOADS};
use benches::stores::{StoreEnv, StoreSpec};
use benches::workloads::Sizing;
use benches::{chart, report, runner, server, targets};
use clap::Parser;

/// Compares the storage engines on throughput and latency, with the disk's and Postgres's
/// limits measured beside them in the same run.
#[derive(Debug, Parser)]
#[command(name = "broker-bench", version)]
struct Cli {
    /// Run every case for about a quarter of a second with small sizes (keeps the harness working in CI).
    #[arg(long)]
    quick: bool,
    /// Stores to run (repeat or comma-separate): memory, log (every policy), log-always,
    /// log-interval, log-never, postgres [default: all].
    #[arg(long, value_delimiter = ',')]
    store: Vec<String>,
    /// Workloads to run (repeat or comma-separate): append, fetch, tail, lease, ts-lookup,
    /// kafka, sqs, share, txn, compact, cluster [default: all but cluster]. `share`:
    /// share-group consume (KIP-932) through the server, 3 members over 3 partitions,
    /// compared with the contract's lease + ack with 8 consumers (add `lease` for that
    /// ratio). `txn`: transactional produce (KIP-98) through the server, transactions of 100
    /// and 1000 records, compared with idempotent produce on the same broker. `compact`:
    /// `Store::compact` of a compacted topic, MB/s of stored bytes read, compared with the
    /// disk's page-cache read (PostgreSQL: a chunked read of batch-sized rows).
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Seconds per case [default: 2, or 0.25 with --quick].
    #[arg(long)]
    duration: Option<f64>,
    /// Directory for results.json, results.md and the charts.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Directory for log stores and baseline files (must be on the disk under test)
    /// [default: a fresh directory under the system temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL for the postgres store and the Postgres baselines.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The `broker` binary for the server workloads [default: $BROKER_BIN, else beside this binary].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// An earlier `broker` binary: its server figures are measured in the same run (subjects
    /// `kafka-before@STORE`, `sqs-before@STORE`), for before/after ratios.
    #[arg(long)]
    before_broker_bin: Option<PathBuf>,
    /// Records per second of the tailing latency case [default: 1000, or 500 with --quick].
    #[arg(long)]
    tail_rate: Option<u32>,
    /// Broker counts of the `cluster` workload: produce, fetch, SQS send and receive+delete
    /// against N brokers on one PostgreSQL schema, each divided by the 1-broker figure, with
    /// the CPU of PostgreSQL, the brokers and the clients beside it (implies
    /// `--workload cluster` when --workload is not given) [default: 1,2,3].
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<usize>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("broker-bench: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> std::process::ExitCode {
    let quick = cli.quick;
    let duration = cli.duration.unwrap_or(if quick { 0.25 } else { 2.0 });
    if !(duration > 0.0 && duration < 3600.0) {
        eprintln!("broker-bench: --duration must be between 0 and 3600 seconds");
        return std::process::ExitCode::from(2);
    }
    let sizing = if quick {
        Sizing {
            duration: Duration::from_secs_f64(duration),
            max_bytes: 16 << 20,
            fetch_bytes: 4 << 20,
            lease_records: 3_000,
            ts_records: 5_000,
            tail_rate: cli.tail_rate.unwrap_or(500),
            bulk_bytes: 32 << 20,
        }
    } else {
        Sizing {
            duration: Duration::from_secs_f64(duration),
            max_bytes: 256 << 20,
            fetch_bytes: 32 << 20,
            lease_records: 100_000,
            ts_records: 100_000,
            tail_rate: cli.tail_rate.unwrap_or(1000),
            bulk_bytes: 1536 << 20,
        }
    };
    for w in &cli.workload {
        if !WORKLOADS.contains(&w.as_str()) {
            eprintln!(
                "broker-bench: unknown workload {w:?}; use one of {}",
                WORKLOADS.join(", ")
            );
            return std::process::ExitCode::from(2);
        }
    }
    let stores: Vec<StoreSpec> = StoreSpec::all()
        .into_iter()
        .filter(|s| cli.store.is_empty() || cli.store.iter().any(|f| s.matches(f)))
        .collect();
    if stores.is_empty() {
        eprintln!("broker-bench: --store matches nothing; use memory, log, log-always, log-interval, log-never or postgres");
        return std::process::ExitCode::from(2);
    }
    if cli.cluster.iter().any(|n| *n == 0 || *n > 16) {
        eprintln!("broker-bench: --cluster takes broker counts from 1 to 16");
        return std::process::ExitCode::from(2);
    }
    let workloads: Vec<String> = if !cli.workload.is_empty() {
        cli.workload.clone()
    } else if !cli.cluster.is_empty() {
        vec!["cluster".to_string()]
    } else {
        runner::default_workloads()
    };
    let cluster = if cli.cluster.is_empty() {
        vec![1, 2, 3]
    } else {
        cli.cluster.clone()
    };
    let server_stores: Vec<String> = ["memory", "log", "postgres"]
        .iter()
        .filter(|k| stores.iter().any(|s| s.name().starts_with(*k)))
        .map(|s| s.to_string())
        .collect();
    let pid = std::process::id();
    let (data_dir, _owned) = match &cli.data_dir {
        Some(d) => (d.clone(), None),
        None => match tempfile::Builder::new().prefix("broker-bench-").tempdir() {
            Ok(t) => (t.path().to_path_buf(), Some(t)),
            Err(e) => {
                eprintln!("broker-bench: cannot create a data directory: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!("broker-bench: cannot create {}: {e}", data_dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let database_url = cli.database_url.clone().filter(|s| !s.is_empty());
    let opts = RunOptions {
        sizing,
        stores,
        workloads,
        env: StoreEnv {
            data_dir: data_dir.clone(),
            database_url: database_url.clone(),
            pg_schema_prefix: format!("bench_{pid}"),
        },
        broker_bin: cli.broker_bin.clone().or_else(server::find_broker),
        before_broker_bin: cli.before_broker_bin.clone(),
        server_stores,
        cluster,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut info =
        report::RunInfo::gather(command, duration, quick, data_dir.display().to_string());
    if let Some(url) = &database_url {
        info.postgres = benches::baseline_pg::version(url).await.ok();
    }
    eprintln!(
        "broker-bench: {} stores, workloads {}, {duration} s per case; data in {}",
        opts.stores.len(),
        opts.workloads.join(","),
        data_dir.display()
    );
    let ms = runner::run(&opts).await;
    // The store issues' targets judge the store and server workloads, not the cluster's.
    let ts = if opts.workloads.iter().all(|w| w == "cluster") {
        Vec::new()
    } else {
        targets::evaluate(&ms)
    };
    println!("{}", report::text_table(&ms));
    if let Some(t) = report::cluster_table(&ms) {
        println!("{t}");
    }
    for t in &ts {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not available",
        };
        println!(
            "target [{}] {}: {verdict} ({})",
            t.store, t.requirement, t.measured
        );
    }
    let mut code = std::process::ExitCode::SUCCESS;
    if let Err(e) = report::write_files(&cli.out, &info, &ms, &ts)
        .and_then(|_| chart::write_charts(&cli.out, &ms))
    {
        eprintln!("broker-bench: {e}");
        code = std::process::ExitCode::FAILURE;
    }
    let failed: Vec<_> = ms
        .iter()
        .filter(|m| matches!(m.status, Status::Failed(_)))
        .collect();
    if !failed.is_empty() {
        eprintln!("broker-bench: {} case(s) FAILED:", failed.len());
        for m in failed {
            if let Status::Failed(e) = &m.status {
                eprintln!("  {}: {e}", m.id);
            }
        }
        code = std::process::ExitCode::FAILURE;
    }
    println!("results in {}", cli.out.display());
    code
}
