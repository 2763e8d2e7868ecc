//! The same workloads through the `broker` server: a Kafka load client and an SQS load client
//! against a `broker` process started for each store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::kafka_client::{
    encode_batch, encode_producer_batch, KafkaConn, KafkaTarget, Producer, Ranges, ShareMember,
};
use crate::model::{Layer, Measurement, Metric};
use crate::runner::{append_case, lease_case, RunOptions};
use crate::sqs_client::SqsClient;
use crate::{BenchError, BenchResult};

/// Finds the `broker` binary: `BROKER_BIN`, else beside this executable.
pub fn find_broker() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BROKER_BIN").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("broker");
    p.is_file().then_some(p)
}

fn free_port() -> BenchResult<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// A running `broker` process, killed on drop.
pub(crate) struct Broker {
    child: Child,
    pub(crate) kafka: SocketAddr,
    pub(crate) http: SocketAddr,
    /// The SSL listener and its client settings, when started with TLS.
    ssl: Option<KafkaTarget>,
    _dir: tempfile::TempDir,
}

/// A CA and a server certificate for localhost/127.0.0.1 in `dir` (PEM files); the client
/// settings that trust the CA.
fn make_tls(
    dir: &std::path::Path,
) -> BenchResult<(PathBuf, PathBuf, std::sync::Arc<rustls::ClientConfig>)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let e = |e: rcgen::Error| BenchError::Wrong(format!("making the TLS certificates: {e}"));
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "broker-bench CA");
    let ca = p.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(e)?;
    let cert = p.signed_by(&key, &ca, &ca_key).map_err(e)?;
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|e| BenchError::Wrong(format!("trusting the bench CA: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BenchError::Wrong(format!("TLS client settings: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok((cert_path, key_path, std::sync::Arc::new(config)))
}

impl Broker {
    async fn start(
        store: &str,
        opts: &RunOptions,
        no: usize,
        bin: Option<&PathBuf>,
        tls: bool,
    ) -> BenchResult<Broker> {
        let schema = format!("{}_srv{no}", opts.env.pg_schema_prefix);
        Broker::spawn(store, opts, &schema, bin, tls, &[]).await
    }

    /// Starts a broker on `store` (PostgreSQL schema `schema`) with `extra` arguments and
    /// waits until its listeners accept connections.
    pub(crate) async fn spawn(
        store: &str,
        opts: &RunOptions,
        schema: &str,
        bin: Option<&PathBuf>,
        tls: bool,
        extra: &[String],
    ) -> BenchResult<Broker> {
        let bin = bin.cloned().ok_or_else(|| {
            BenchError::NotAvailable(
                "broker binary not found (build it: cargo build -p broker-server; or set BROKER_BIN)"
                    .into(),
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("bench-server-")
            .tempdir_in(&opts.env.data_dir)?;
        let (kafka, http) = (free_port()?, free_port()?);
        let mut cmd = Command::new(bin);
        cmd.arg("--store")
            .arg(store)
            .arg("--kafka-addr")
            .arg(kafka.to_string())
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--default-durability")
            .arg("interval:100")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let ssl = if tls {
            let (cert, key, client) = make_tls(dir.path())?;
            let addr = free_port()?;
            cmd.arg("--listener")
                .arg(format!("SSL=SSL://{addr}"))
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
            Some(KafkaTarget {
                addr,
                tls: Some(client),
            })
        } else {
            None
        };
        if store == "postgres" {
            let url = opts
                .env
                .database_url
                .clone()
                .ok_or_else(|| BenchError::NotAvailable("DATABASE_URL is not set".into()))?;
            cmd.arg("--database-url")
                .arg(url)
                .arg("--pg-schema")
                .arg(schema);
        }
        cmd.args(extra);
        let mut child = cmd.spawn()?;
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                let tail: String = err.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(BenchError::NotAvailable(format!(
                    "broker --store {store} exited at start ({status}): {tail}"
                )));
            }
            let k = tokio::net::TcpStream::connect(kafka).await.is_ok();
            let h = tokio::net::TcpStream::connect(http).await.is_ok();
            let s = match &ssl {
                Some(t) => tokio::net::TcpStream::connect(t.addr).await.is_ok(),
                None => true,
            };
            if k && h && s {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::NotAvailable(format!(
                    "broker --store {store} did not listen on {kafka} and {http} within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Keep draining stderr so the process never blocks on a full pipe; with
        // BENCH_BROKER_LOG set, pass it on.
        if let Some(mut e) = child.stderr.take() {
            let show = std::env::var_os("BENCH_BROKER_LOG").is_some();
            tokio::spawn(async move {
                if show {
                    let _ = tokio::io::copy(&mut e, &mut tokio::io::stderr()).await;
                } else {
                    let _ = tokio::io::copy(&mut e, &mut tokio::io::sink()).await;
                }
            });
        }
        Ok(Broker {
            child,
            kafka,
            http,
            ssl,
            _dir: dir,
        })
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM for a clean shutdown, then kill if it lingers.
            let _ = Command::new("kill").arg(pid.to_string()).status().await;
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// The contract measurement a server figure is divided by.
fn contract_subject(store: &str) -> &'static str {
    match store {
        "memory" => "memory",
        "log" => "log-interval",
        _ => "postgres",
    }
}

/// The store whose broker also serves an SSL listener, for TLS against plaintext.
const TLS_STORE: &str = "log";
/// The TLS comparison's produce case: 1 KiB records, batches of 100, 16 connections.
const TLS_PRODUCE: (usize, usize, usize) = (1024, 100, 16);

/// The share-consume case: share consumers (one connection and member each), partitions of
/// the topic they share, and records acquired per ShareFetch at most.
const SHARE_CONSUMERS: usize = 3;
const SHARE_PARTITIONS: i32 = 3;
const SHARE_MAX_RECORDS: i32 = 500;
/// The share group and topic of the share-consume case.
const SHARE_GROUP: &str = "bench-share";
const SHARE_TOPIC: &str = "bench-share";
/// The contract's lease + ack case the share-consume case is compared with.
const SHARE_AGAINST_CONSUMERS: usize = 8;

/// The transactional-produce cases: records per Produce request (one batch), records per
/// transaction, and connections (one producer, and transactional id, each).
const TXN_BATCH: usize = 100;
const TXN_RECORDS: &[usize] = &[100, 1000];
const TXN_CONNS: &[usize] = &[1, 4];
/// `transaction.timeout.ms` of the transactional producers.
const TXN_TIMEOUT_MS: i32 = 60_000;

/// Case name of idempotent produce of 100 B records in batches of [`TXN_BATCH`].
fn idempotent_case(conns: usize) -> String {
    append_case(100, TXN_BATCH, conns)
}

/// Case name of transactions of `records` 100 B records in batches of [`TXN_BATCH`].
fn txn_case(records: usize, conns: usize) -> String {
    format!("100B b{TXN_BATCH} t{records} c{conns}")
}

/// The `t` (records per transaction) and `c` (connections) of a [`txn_case`] or
/// [`idempotent_case`] name; `t` is `None` for the idempotent one.
fn parse_txn_case(case: &str) -> (Option<usize>, usize) {
    let mut per_txn = None;
    let mut conns = 1;
    for part in case.split(' ') {
        if let Some(t) = part.strip_prefix('t') {
            per_txn = t.parse().ok();
        }
        if let Some(c) = part.strip_prefix('c') {
            conns = c.parse().unwrap_or(1);
        }
    }
    (per_txn, conns)
}

fn share_case() -> String {
    format!("100B p{SHARE_PARTITIONS} m{SHARE_MAX_RECORDS} c{SHARE_CONSUMERS}")
}

/// Which server workloads a suite runs.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    kafka: bool,
    sqs: bool,
    share: bool,
    txn: bool,
}

fn planned(store: &str, want: Wanted, before: bool) -> Vec<Measurement> {
    let Wanted {
        kafka: want_kafka,
        sqs: want_sqs,
        share: want_share,
        txn: want_txn,
    } = want;
    let c = contract_subject(store);
    let tag = if before { "-before" } else { "" };
    let k = format!("kafka{tag}@{store}");
    let s = format!("sqs{tag}@{store}");
    let mut v = Vec::new();
    if want_kafka {
        for (batch, conns) in [(1000, 1), (1000, 16), (1, 16)] {
            let case = append_case(100, batch, conns);
            v.push(
                Measurement::new(Layer::Server, &k, "produce", &case, Metric::RecordsPerS)
                    .against(format!("{c}/append/{case}")),
            );
        }
        for size in ["100B", "1024B"] {
            v.push(
                Measurement::new(Layer::Server, &k, "fetch", size, Metric::MbPerS)
                    .against(format!("{c}/fetch/{size}")),
            );
        }
        if store == TLS_STORE && !before {
            // The same broker over its SSL listener, against its PLAINTEXT listener.
            let (size, batch, conns) = TLS_PRODUCE;
            let case = append_case(size, batch, conns);
            let t = format!("kafka-tls@{store}");
            v.push(
                Measurement::new(Layer::Server, &k, "produce", &case, Metric::RecordsPerS)
                    .against(format!("{c}/append/{case}")),
            );
            v.push(
                Measurement::new(Layer::Server, &t, "produce", &case, Metric::RecordsPerS)
                    .against(format!("{k}/produce/{case}"))
                    .noted(
                        "over TLS (rustls, TLS 1.3); compared with PLAINTEXT on the same broker",
                    ),
            );
            v.push(
                Measurement::new(Layer::Server, &t, "fetch", "1024B", Metric::MbPerS)
                    .against(format!("{k}/fetch/1024B"))
                    .noted(
                        "over TLS (rustls, TLS 1.3); compared with PLAINTEXT on the same broker",
                    ),
            );
        }
    }
    if want_sqs {
        for conns in [1, 16] {
            v.push(
                Measurement::new(
                    Layer::Server,
                    &s,
                    "send",
                    &append_case(100, 10, conns),
                    Metric::RecordsPerS,
                )
                .against(format!("{c}/append/{}", append_case(100, 100, conns)))
                .noted("SendMessageBatch of 10; compared with contract appends of 100"),
            );
        }
        for conns in [1, 8] {
            v.push(
                Measurement::new(Layer::Server, &s, "receive+delete", &format!("b10 c{conns}"), Metric::RecordsPerS)
                    .against(format!("{c}/lease/b100 c{conns}"))
                    .noted("ReceiveMessage(10) + DeleteMessageBatch; compared with contract lease(100) + ack"),
            );
        }
    }
    if want_share {
        v.push(
            Measurement::new(
                Layer::Server,
                &k,
                "share-consume",
                &share_case(),
                Metric::RecordsPerS,
            )
            .against(format!("{c}/lease/{}", lease_case(SHARE_AGAINST_CONSUMERS)))
            .noted(format!(
                "share group (KIP-932): {SHARE_CONSUMERS} members, each its own connection, \
                 loop ShareFetch(max {SHARE_MAX_RECORDS}) accepting the previous fetch's \
                 records, over {SHARE_PARTITIONS} partitions; compared with contract lease(100) \
                 + ack with {SHARE_AGAINST_CONSUMERS} consumers on one partition"
            )),
        );
    }
    if want_txn {
        for &conns in TXN_CONNS {
            let base = idempotent_case(conns);
            let idem = Measurement::new(
                Layer::Server,
                &k,
                "idempotent-produce",
                &base,
                Metric::RecordsPerS,
            )
            .noted(format!(
                "InitProducerId per connection, then Produce v7 of {TXN_BATCH} records per \
                 request with producer id, epoch and sequence (acks=-1), not transactional"
            ));
            // The contract's append of the same batches, where the append workload has the
            // same number of appenders.
            v.push(if crate::runner::APPENDERS.contains(&conns) {
                idem.against(format!("{c}/append/{}", append_case(100, TXN_BATCH, conns)))
            } else {
                idem
            });
            for &records in TXN_RECORDS {
                v.push(
                    Measurement::new(
                        Layer::Server,
                        &k,
                        "txn-produce",
                        &txn_case(records, conns),
                        Metric::RecordsPerS,
                    )
                    .against(format!("{k}/idempotent-produce/{base}"))
                    .noted(format!(
                        "transactions (KIP-98) of {records} records: AddPartitionsToTxn v3, {} \
                         transactional Produce of {TXN_BATCH}, EndTxn(commit); committed \
                         records/s, compared with idempotent produce on the same broker",
                        records / TXN_BATCH
                    )),
                );
            }
        }
    }
    v
}

/// Starts a broker on `store`, runs the Kafka, SQS and share-group cases the options select,
/// stops it.
/// `before`: the earlier broker of `--before-broker-bin` (its figures are named
/// `kafka-before@store`, `sqs-before@store`).
pub async fn run_suite(
    store: &str,
    opts: &RunOptions,
    no: usize,
    before: bool,
) -> Vec<Measurement> {
    let want = |w: &str| opts.workloads.iter().any(|x| x == w);
    let wanted = Wanted {
        kafka: want("kafka"),
        sqs: want("sqs"),
        share: want("share"),
        txn: want("txn"),
    };
    let mut ms = planned(store, wanted, before);
    let bin = if before {
        opts.before_broker_bin.as_ref()
    } else {
        opts.broker_bin.as_ref()
    };
    let tls = want("kafka") && store == TLS_STORE && !before;
    let broker = match Broker::start(store, opts, no, bin, tls).await {
        Ok(b) => b,
        Err(e) => return ms.into_iter().map(|m| m.unavailable(&e)).collect(),
    };
    let d = opts.sizing.duration;
    let budget = opts.sizing.max_bytes / 100;
    let plain = KafkaTarget::plain(broker.kafka);
    for m in ms.iter_mut() {
        let over_tls = m.subject.starts_with("kafka-tls@");
        let target = match (&broker.ssl, over_tls) {
            (Some(t), true) => t.clone(),
            _ => plain.clone(),
        };
        // Where the time of a produce unit went, for the note.
        let mut timing: Option<String> = None;
        let r = match (m.workload.as_str(), m.case.as_str()) {
            ("produce", case) => {
                let (size, batch, conns) = parse_case(case);
                let tag = if over_tls { "tls-" } else { "" };
                let topic = format!("bench-{tag}{}", case.replace(' ', "-"));
                kafka_produce(&target, &topic, size, batch, conns, d, budget).await
            }
            ("fetch", "100B") => kafka_fetch(&target, "bench-100B-b1000-c1", 100, d).await,
            // Over TLS: the topic the PLAINTEXT case filled just before.
            ("fetch", _) if over_tls => kafka_fetch(&target, "bench-fetch-1KiB", 1024, d).await,
            ("fetch", _) => {
                match kafka_prefill(&target, "bench-fetch-1KiB", 1024, opts.sizing.fetch_bytes)
                    .await
                {
                    Ok(()) => kafka_fetch(&target, "bench-fetch-1KiB", 1024, d).await,
                    Err(e) => Err(e),
                }
            }
            ("send", case) => {
                let (_, _, conns) = parse_case(case);
                sqs_send(broker.http, conns, d, budget).await
            }
            ("receive+delete", case) => {
                let conns = case
                    .rsplit('c')
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                sqs_receive(
                    broker.http,
                    conns,
                    d,
                    opts.sizing.lease_records.min(20_000) as u64,
                )
                .await
            }
            ("share-consume", _) => {
                let r = share_consume(&target, d, opts.sizing.lease_records as u64).await;
                match r {
                    // An earlier broker may not serve share groups at all.
                    Err(e) if before => Err(BenchError::NotAvailable(format!(
                        "the earlier broker's share groups: {e}"
                    ))),
                    r => r,
                }
            }
            ("idempotent-produce" | "txn-produce", case) => {
                let (per_txn, conns) = parse_txn_case(case);
                let tag = if before { "before-" } else { "" };
                let topic = format!("bench-{tag}{}-{}", m.workload, case.replace(' ', "-"));
                let r = kafka_producers(&target, &topic, conns, per_txn, d, budget)
                    .await
                    .map(|(counted, phases)| {
                        timing = phases.describe();
                        counted
                    });
                match r {
                    // An earlier broker may not serve transactions.
                    Err(e) if before => Err(BenchError::NotAvailable(format!(
                        "the earlier broker's transactions: {e}"
                    ))),
                    r => r,
                }
            }
            _ => Err(BenchError::Wrong(format!("unknown server case {}", m.id))),
        };
        let taken = std::mem::replace(
            m,
            Measurement::new(Layer::Server, "", "", "", Metric::OpsPerS),
        );
        let taken = match (timing, taken.note.clone()) {
            (Some(t), Some(n)) => taken.noted(format!("{n}; {t}")),
            (Some(t), None) => taken.noted(t),
            (None, _) => taken,
        };
        *m = match r {
            Ok((records, bytes_each, secs)) => taken.with_records(records, bytes_each, secs),
            Err(e) => taken.unavailable(&e),
        };
    }
    broker.stop().await;
    if store == "postgres" {
        if let Some(url) = &opts.env.database_url {
            let _ = crate::baseline_pg::drop_schema(
                url,
                &format!("{}_srv{no}", opts.env.pg_schema_prefix),
            )
            .await;
        }
    }
    ms
}

/// (record size, batch, connections) of a case written by `append_case`.
fn parse_case(case: &str) -> (usize, usize, usize) {
    let mut size = 100;
    let mut batch = 1;
    let mut conns = 1;
    for part in case.split(' ') {
        if let Some(b) = part.strip_suffix('B') {
            size = b.parse().unwrap_or(100);
        }
        if let Some(b) = part.strip_prefix('b') {
            batch = b.parse().unwrap_or(1);
        }
        if let Some(c) = part.strip_prefix('c') {
            conns = c.parse().unwrap_or(1);
        }
    }
    (size, batch, conns)
}

type Counted = BenchResult<(u64, usize, f64)>;

async fn kafka_produce(
    target: &KafkaTarget,
    topic: &str,
    size: usize,
    batch: usize,
    conns: usize,
    d: Duration,
    budget: u64,
) -> Counted {
    let data = encode_batch(batch, size)?;
    // Metadata creates the topic, as real clients do; keep it out of the timing.
    let mut first = KafkaConn::open(target).await?;
    first.metadata(topic).await?;
    first.produce(topic, &data).await?;
    // The budget is in 100-byte records: larger records get proportionally fewer.
    let per_conn = (budget * 100 / size as u64).div_ceil(conns as u64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let data = data.clone();
        let topic = topic.to_string();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = KafkaConn::open(&target).await?;
            let mut n = 0u64;
            while n < per_conn && start.elapsed() < d {
                match within(start, d, c.produce(&topic, &data)).await {
                    Some(r) => r?,
                    None => break,
                };
                n += batch as u64;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let total = join(tasks).await?;
    Ok((total, size, start.elapsed().as_secs_f64()))
}

/// The idempotent and transactional produce cases: `conns` connections, each its own
/// producer (InitProducerId; with `per_txn`, of its own transactional id, whose coordinator
/// is looked up first), produce 100-byte records in batches of [`TXN_BATCH`] to partition 0
/// of `topic` with acks=-1, the batch's sequence advancing by its record count. With
/// `per_txn`, each transaction is AddPartitionsToTxn, `per_txn / TXN_BATCH` transactional
/// Produce requests and EndTxn(commit), and only committed transactions count. Set-up
/// (topic, coordinator, producer ids) is untimed. Also returns the time spent waiting on
/// each kind of request.
async fn kafka_producers(
    target: &KafkaTarget,
    topic: &str,
    conns: usize,
    per_txn: Option<usize>,
    d: Duration,
    budget: u64,
) -> BenchResult<((u64, usize, f64), PhaseTimes)> {
    let mut first = KafkaConn::open(target).await?;
    first.metadata(topic).await?;
    let mut producers = Vec::with_capacity(conns);
    for i in 0..conns {
        let id = per_txn.map(|_| format!("{topic}-{i}"));
        if let Some(id) = &id {
            // One broker coordinates every id; a client asks all the same.
            first.txn_coordinator(id).await?;
        }
        let mut c = KafkaConn::open(target).await?;
        let p = c.init_producer_id(id.as_deref(), TXN_TIMEOUT_MS).await?;
        producers.push((c, id, p));
    }
    let requests = per_txn.map_or(1, |t| (t / TXN_BATCH).max(1));
    let per_conn = budget.div_ceil(conns as u64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut c, id, p) in producers {
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            let mut seq = 0i32;
            let mut n = 0u64;
            let mut phases = PhaseTimes::default();
            while n < per_conn && start.elapsed() < d {
                let mut spent = PhaseTimes::default();
                let unit = async {
                    if let Some(id) = &id {
                        let t = Instant::now();
                        c.add_partitions_to_txn(id, p, &topic, &[0]).await?;
                        spent.add_partitions += t.elapsed();
                    }
                    for _ in 0..requests {
                        let batch = producer_batch(p, seq, id.is_some())?;
                        let t = Instant::now();
                        c.produce_as(&topic, 0, &batch, id.as_deref()).await?;
                        spent.produce += t.elapsed();
                        seq = seq.wrapping_add(TXN_BATCH as i32);
                    }
                    if let Some(id) = &id {
                        let t = Instant::now();
                        c.end_txn(id, p, true).await?;
                        spent.end_txn += t.elapsed();
                    }
                    Ok::<(), BenchError>(())
                };
                match within(start, d, unit).await {
                    Some(r) => r?,
                    None => break,
                }
                spent.units = 1;
                spent.transactional = id.is_some();
                phases.merge(&spent);
                n += (requests * TXN_BATCH) as u64;
            }
            Ok::<(u64, PhaseTimes), BenchError>((n, phases))
        }));
    }
    let mut total = 0;
    let mut phases = PhaseTimes::default();
    for t in tasks {
        let (n, ph) = t
            .await
            .map_err(|e| BenchError::Wrong(format!("producer task panicked: {e}")))??;
        total += n;
        phases.merge(&ph);
    }
    Ok(((total, 100, start.elapsed().as_secs_f64()), phases))
}

/// Time the producers of a case waited on each kind of request, summed over connections.
#[derive(Debug, Clone, Copy, Default)]
struct PhaseTimes {
    add_partitions: Duration,
    produce: Duration,
    end_txn: Duration,
    /// Transactions (or, idempotent, Produce requests) completed.
    units: u64,
    transactional: bool,
}

impl PhaseTimes {
    fn merge(&mut self, o: &PhaseTimes) {
        self.add_partitions += o.add_partitions;
        self.produce += o.produce;
        self.end_txn += o.end_txn;
        self.units += o.units;
        self.transactional |= o.transactional;
    }

    /// Mean milliseconds per transaction (or per Produce) of each request kind; `None`
    /// before any completed.
    fn describe(&self) -> Option<String> {
        if self.units == 0 {
            return None;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / self.units as f64;
        Some(if self.transactional {
            format!(
                "mean per transaction: AddPartitionsToTxn {:.3} ms, Produce {:.3} ms, EndTxn \
                 {:.3} ms",
                ms(self.add_partitions),
                ms(self.produce),
                ms(self.end_txn)
            )
        } else {
            format!("mean per Produce: {:.3} ms", ms(self.produce))
        })
    }
}

/// One batch of [`TXN_BATCH`] 100-byte records of producer `p` from sequence `seq`.
fn producer_batch(p: Producer, seq: i32, transactional: bool) -> BenchResult<bytes::Bytes> {
    let producer = broker_api::ProducerBatch {
        producer_id: p.id,
        epoch: p.epoch,
        first_sequence: seq,
    };
    encode_producer_batch(TXN_BATCH, 100, producer, transactional)
}

/// Produces about `bytes` of `size`-byte records (batches of 100) to `topic`, untimed.
async fn kafka_prefill(
    target: &KafkaTarget,
    topic: &str,
    size: usize,
    bytes: u64,
) -> BenchResult<()> {
    let data = encode_batch(100, size)?;
    let mut c = KafkaConn::open(target).await?;
    c.metadata(topic).await?;
    let batches = (bytes / (100 * size as u64)).max(10);
    for _ in 0..batches {
        c.produce(topic, &data).await?;
    }
    Ok(())
}

async fn kafka_fetch(target: &KafkaTarget, topic: &str, size: usize, d: Duration) -> Counted {
    let mut c = KafkaConn::open(target).await?;
    let start = Instant::now();
    let mut records = 0u64;
    loop {
        let mut offset = 0i64;
        loop {
            let got = c.fetch(topic, offset).await?;
            if got.records == 0 {
                if offset < got.high_watermark {
                    return Err(BenchError::Wrong(format!(
                        "fetch at {offset} below the high watermark {} returned nothing",
                        got.high_watermark
                    )));
                }
                break;
            }
            records += got.records;
            offset = got.next_offset;
            if start.elapsed() >= d {
                break;
            }
        }
        if start.elapsed() >= d {
            break;
        }
    }
    Ok((records, size, start.elapsed().as_secs_f64()))
}

async fn sqs_send(addr: SocketAddr, conns: usize, d: Duration, budget: u64) -> Counted {
    let client = SqsClient::new(addr)?;
    let url = client.create_queue("bench").await?;
    let per_conn = budget.div_ceil(conns as u64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while n < per_conn && start.elapsed() < d {
                match within(start, d, client.send_batch(&url, 10, 100)).await {
                    Some(r) => n += r?,
                    None => break,
                }
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let total = join(tasks).await?;
    Ok((total, 100, start.elapsed().as_secs_f64()))
}

async fn sqs_receive(addr: SocketAddr, conns: usize, d: Duration, backlog: u64) -> Counted {
    let client = SqsClient::new(addr)?;
    let url = client.create_queue("bench").await?;
    // Untimed: make sure there is a backlog to drain.
    let mut fill = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        let each = backlog.div_ceil(8);
        fill.push(tokio::spawn(async move {
            let mut n = 0u64;
            while n < each {
                n += client.send_batch(&url, 10, 100).await?;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    join(fill).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < d {
                let got = match within(start, d, client.receive_delete(&url)).await {
                    Some(r) => r?,
                    None => break,
                };
                if got == 0 {
                    break;
                }
                n += got;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let total = join(tasks).await?;
    Ok((total, 100, start.elapsed().as_secs_f64()))
}

/// Joins `SHARE_CONSUMERS` members to the share group (ShareGroupHeartbeat), each on its own
/// connection, and heartbeats until each knows the assignment made with all of them; returns
/// the connections, members, member epochs and assigned partitions.
async fn share_join(
    target: &KafkaTarget,
    topic_id: uuid::Uuid,
) -> BenchResult<Vec<(KafkaConn, ShareMember, i32, Vec<i32>)>> {
    let mut out = Vec::new();
    for _ in 0..SHARE_CONSUMERS {
        let mut c = KafkaConn::open(target).await?;
        let who = ShareMember {
            group: SHARE_GROUP.to_string(),
            member: uuid::Uuid::new_v4().to_string(),
            topic_id,
        };
        let hb = c
            .share_heartbeat(&who.group, &who.member, 0, Some(&[SHARE_TOPIC]))
            .await?;
        out.push((c, who, hb.member_epoch, assigned(&hb.assignment, topic_id)));
    }
    // Members that joined before the last one learn the final assignment now.
    for (c, who, epoch, parts) in out.iter_mut() {
        let hb = c
            .share_heartbeat(&who.group, &who.member, *epoch, None)
            .await?;
        *epoch = hb.member_epoch;
        if hb.assignment.is_some() {
            *parts = assigned(&hb.assignment, topic_id);
        }
    }
    for p in 0..SHARE_PARTITIONS {
        if !out.iter().any(|(.., parts)| parts.contains(&p)) {
            return Err(BenchError::Wrong(format!(
                "partition {p} of {SHARE_TOPIC} was assigned to no share-group member"
            )));
        }
    }
    Ok(out)
}

/// The partitions of `topic_id` in a heartbeat's assignment.
fn assigned(a: &Option<Vec<(uuid::Uuid, Vec<i32>)>>, topic_id: uuid::Uuid) -> Vec<i32> {
    a.iter()
        .flatten()
        .filter(|(id, _)| *id == topic_id)
        .flat_map(|(_, ps)| ps.iter().copied())
        .collect()
}

/// The share-consume case: a topic of `SHARE_PARTITIONS` partitions is filled with `backlog`
/// 100-byte records (batches of 1000, as the contract's lease case fills its partition) and
/// the share group is set to start at the earliest offset, untimed; then `SHARE_CONSUMERS`
/// members each loop ShareFetch (no wait, up to `SHARE_MAX_RECORDS`) with the previous
/// response's acquired records accepted in the same request, until the duration is spent or
/// their partitions are drained; what is left acquired at the end is accepted with a closing
/// ShareAcknowledge. Counts acknowledged records.
async fn share_consume(target: &KafkaTarget, d: Duration, backlog: u64) -> Counted {
    let mut admin = KafkaConn::open(target).await?;
    admin.create_topic(SHARE_TOPIC, SHARE_PARTITIONS).await?;
    let data = encode_batch(1000, 100)?;
    let batches = backlog.div_ceil(1000).max(SHARE_PARTITIONS as u64);
    for i in 0..batches {
        admin
            .produce_to(SHARE_TOPIC, (i % SHARE_PARTITIONS as u64) as i32, &data)
            .await?;
    }
    let filled = batches * 1000;
    admin
        .set_group_config(SHARE_GROUP, "share.auto.offset.reset", "earliest")
        .await?;
    let topic_id = admin.topic_id(SHARE_TOPIC).await?;
    let members = share_join(target, topic_id).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut c, who, mut member_epoch, mut parts) in members {
        tasks.push(tokio::spawn(async move {
            let mut acked = 0u64;
            let mut session_epoch = 0i32;
            let mut pending: Vec<(i32, Ranges)> = Vec::new();
            let mut drained = false;
            let mut beat = Instant::now();
            let mut in_flight = false;
            while start.elapsed() < d {
                // Stay in the group as a client does (the default interval is 5 s).
                if beat.elapsed() >= Duration::from_secs(5) {
                    let hb = match within(
                        start,
                        d,
                        c.share_heartbeat(&who.group, &who.member, member_epoch, None),
                    )
                    .await
                    {
                        Some(r) => r?,
                        None => {
                            in_flight = true;
                            break;
                        }
                    };
                    member_epoch = hb.member_epoch;
                    if hb.assignment.is_some() {
                        parts = assigned(&hb.assignment, who.topic_id);
                    }
                    beat = Instant::now();
                }
                let got = match within(
                    start,
                    d,
                    c.share_fetch(&who, session_epoch, &parts, &pending, SHARE_MAX_RECORDS),
                )
                .await
                {
                    Some(r) => r?,
                    None => {
                        in_flight = true;
                        break;
                    }
                };
                session_epoch = session_epoch.checked_add(1).unwrap_or(1);
                if got.records != got.acquired_count {
                    return Err(BenchError::Wrong(format!(
                        "ShareFetch acquired {} records but its batches hold {} of them",
                        got.acquired_count, got.records
                    )));
                }
                acked += got.acked;
                pending = got.acquired;
                if pending.is_empty() {
                    drained = true;
                    break;
                }
            }
            if !in_flight && session_epoch > 0 {
                // Accept what the last fetch acquired and close the session.
                match within(start, d, c.share_acknowledge(&who, -1, &pending)).await {
                    Some(r) => acked += r?,
                    None => drained = false,
                }
            }
            Ok::<(u64, bool, KafkaConn, ShareMember), BenchError>((acked, drained, c, who))
        }));
    }
    let mut total = 0u64;
    let mut all_drained = true;
    let mut conns = Vec::new();
    for t in tasks {
        let (n, drained, c, who) = t
            .await
            .map_err(|e| BenchError::Wrong(format!("share consumer panicked: {e}")))??;
        total += n;
        all_drained &= drained;
        conns.push((c, who));
    }
    let secs = start.elapsed().as_secs_f64();
    if all_drained && total != filled {
        return Err(BenchError::Wrong(format!(
            "the share consumers drained {SHARE_TOPIC} but acknowledged {total} of {filled} records"
        )));
    }
    // Untimed: leave the group.
    for (mut c, who) in conns {
        let _ = c.share_heartbeat(&who.group, &who.member, -1, None).await;
    }
    Ok((total, 100, secs))
}

/// Runs one request, giving up on it (`None`) once the case is `max(2 d, 5 s)` past its
/// start: a request that slow is left out of the count rather than stalling the run.
pub(crate) async fn within<T>(
    start: Instant,
    d: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    let limit = tokio::time::Instant::from_std(start + (d * 2).max(Duration::from_secs(5)));
    tokio::time::timeout_at(limit, fut).await.ok()
}

pub(crate) async fn join(
    tasks: Vec<tokio::task::JoinHandle<BenchResult<u64>>>,
) -> BenchResult<u64> {
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| BenchError::Wrong(format!("client task panicked: {e}")))??;
    }
    Ok(total)
}
