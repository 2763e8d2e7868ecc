//! The server workloads against N `broker` processes sharing one PostgreSQL schema (a
//! cluster), clients spread over the brokers; each figure is divided by the 1-broker figure of
//! the same run, and the CPU that PostgreSQL, the brokers and the clients spent during it is
//! recorded beside it (from /proc), to show which of them bounds the cluster.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::kafka_client::{encode_batch, KafkaConn, KafkaTarget};
use crate::model::{CpuUse, Layer, Measurement, Metric, PgUse};
use crate::runner::{append_case, RunOptions};
use crate::server::{join, within, Broker};
use crate::sqs_client::SqsClient;
use crate::{BenchError, BenchResult};

/// Partitions of the topics the cluster cases create (`--default-partitions`).
pub const PARTITIONS: usize = 16;
/// Produce cases: (record size, batch, connections).
pub const PRODUCE: &[(usize, usize, usize)] = &[(100, 1000, 16), (100, 1, 16)];
/// Fetch clients, each reading its own partition of 1 KiB records.
pub const FETCHERS: usize = 4;
/// SQS senders (SendMessageBatch of 10).
pub const SENDERS: usize = 16;
/// SQS receivers (ReceiveMessage of 10 + DeleteMessageBatch).
pub const RECEIVERS: usize = 8;

/// The subject of the Kafka (`kafka`) or SQS (`sqs`) figures of `n` brokers.
pub fn subject(api: &str, n: usize) -> String {
    format!("{api}@postgres-x{n}")
}

/// Broker count of a cluster subject (`kafka@postgres-x3` -> 3).
pub fn brokers_of(subject: &str) -> Option<usize> {
    subject.rsplit_once("@postgres-x")?.1.parse().ok()
}

fn fetch_case() -> String {
    format!("1024B c{FETCHERS}")
}

fn receive_case() -> String {
    format!("b10 c{RECEIVERS}")
}

/// The measurements of `n` brokers, each against the same case of 1 broker.
fn planned(n: usize) -> Vec<Measurement> {
    let k = subject("kafka", n);
    let s = subject("sqs", n);
    let base = |api: &str, wl: &str, case: &str| format!("{}/{wl}/{case}", subject(api, 1));
    let mut v = Vec::new();
    for &(size, batch, conns) in PRODUCE {
        let case = append_case(size, batch, conns);
        v.push(Measurement::new(
            Layer::Server,
            &k,
            "produce",
            &case,
            Metric::RecordsPerS,
        ));
    }
    v.push(Measurement::new(
        Layer::Server,
        &k,
        "fetch",
        &fetch_case(),
        Metric::MbPerS,
    ));
    v.push(Measurement::new(
        Layer::Server,
        &s,
        "send",
        &append_case(100, 10, SENDERS),
        Metric::RecordsPerS,
    ));
    v.push(Measurement::new(
        Layer::Server,
        &s,
        "receive+delete",
        &receive_case(),
        Metric::RecordsPerS,
    ));
    let note = format!(
        "{n} broker(s) on one PostgreSQL schema, client connection i on broker i mod {n}; \
         ratio to 1 broker"
    );
    v.into_iter()
        .map(|m| {
            let api = if m.subject.starts_with("sqs") {
                "sqs"
            } else {
                "kafka"
            };
            let b = base(api, &m.workload, &m.case);
            let m = m.noted(note.clone());
            if n == 1 {
                m
            } else {
                m.against(b)
            }
        })
        .collect()
}

// ---------------------------------------------------------------- CPU from /proc

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Fields after the command name of /proc/PID/stat (the name may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    // state is not a number: keep it as 0 so field numbers stay stat(5)'s minus 3
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of `pid` (and, with `children`, of its waited-for children), in seconds.
fn cpu_of(pid: u32, children: bool) -> f64 {
    // stat(5): utime 14, stime 15, cutime 16, cstime 17; here index = field - 3
    stat_fields(pid).map_or(0.0, |f| {
        let mut t = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        if children {
            t += f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0);
        }
        t as f64 / USER_HZ
    })
}

fn ppid_of(pid: u32) -> Option<u32> {
    stat_fields(pid).and_then(|f| f.get(1).map(|p| *p as u32))
}

/// The PostgreSQL server on this machine that `url` reaches: its postmaster's pid (the
/// parent of the backend serving a connection). `None` when it is not a local process.
pub async fn postmaster(url: &str) -> Option<u32> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    let task = tokio::spawn(conn);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()?
        .get(0);
    drop(client);
    let _ = task.await;
    let pm = ppid_of(pid as u32)?;
    let comm = std::fs::read_to_string(format!("/proc/{pm}/comm")).ok()?;
    comm.trim().starts_with("postgres").then_some(pm)
}

/// CPU seconds of the postmaster and every process it started (alive, plus those it reaped).
fn postgres_cpu(pm: u32) -> f64 {
    let mut total = cpu_of(pm, true);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid != pm && ppid_of(pid) == Some(pm) {
                total += cpu_of(pid, false);
            }
        }
    }
    total
}

/// What to sample: the PostgreSQL server and the brokers.
#[derive(Clone)]
struct Sampler {
    postmaster: Option<u32>,
    brokers: Vec<u32>,
    /// A connection for PostgreSQL's counters (transaction ids and WAL position).
    pg: Option<std::sync::Arc<tokio_postgres::Client>>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    postgres: f64,
    brokers: f64,
    client: f64,
    machine: f64,
    /// (next transaction id, WAL position in bytes).
    pg: Option<(i64, i64)>,
}

/// The next transaction id to be assigned (without assigning one) and the WAL insert
/// position: their differences count write transactions and WAL bytes.
const PG_POINT: &str = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, \
                        (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";

async fn pg_point(client: Option<&tokio_postgres::Client>) -> Option<(i64, i64)> {
    let row = client?.query_one(PG_POINT, &[]).await.ok()?;
    Some((row.get(0), row.get(1)))
}

/// Connects for [`PG_POINT`]; `None` if that fails (the figures are then left out).
async fn pg_counters(url: &str) -> Option<std::sync::Arc<tokio_postgres::Client>> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    pg_point(Some(&client)).await?;
    Some(std::sync::Arc::new(client))
}

/// Busy CPU seconds of all cores since boot (/proc/stat: everything but idle and iowait).
fn machine_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| *x)
        .sum();
    busy as f64 / USER_HZ
}

impl Sampler {
    /// Sampled right before a timed part starts.
    async fn take(&self) -> Sample {
        let pg = pg_point(self.pg.as_deref()).await;
        Sample {
            at: Instant::now(),
            postgres: self.postmaster.map_or(0.0, postgres_cpu),
            brokers: self.brokers.iter().map(|p| cpu_of(*p, false)).sum(),
            client: cpu_of(std::process::id(), false),
            machine: machine_cpu(),
            pg,
        }
    }

    /// What was spent since `s0`, sampled right after the timed part.
    async fn since(&self, s0: Sample) -> (CpuUse, Option<PgUse>) {
        let mut s1 = Sample {
            at: Instant::now(),
            postgres: self.postmaster.map_or(0.0, postgres_cpu),
            brokers: self.brokers.iter().map(|p| cpu_of(*p, false)).sum(),
            client: cpu_of(std::process::id(), false),
            machine: machine_cpu(),
            pg: None,
        };
        s1.pg = pg_point(self.pg.as_deref()).await;
        let pg = match (s0.pg, s1.pg) {
            (Some((x0, w0)), Some((x1, w1))) => Some(PgUse {
                // the first sample's own query assigned no id; the second's neither
                write_xacts: (x1 - x0).max(0) as u64,
                wal_bytes: (w1 - w0).max(0) as u64,
            }),
            _ => None,
        };
        (self.cpu(s0, s1), pg)
    }

    fn cpu(&self, s0: Sample, s1: Sample) -> CpuUse {
        CpuUse {
            postgres_s: if self.postmaster.is_some() {
                s1.postgres - s0.postgres
            } else {
                f64::NAN
            },
            brokers_s: s1.brokers - s0.brokers,
            client_s: s1.client - s0.client,
            machine_s: s1.machine - s0.machine,
            wall_s: (s1.at - s0.at).as_secs_f64(),
        }
    }
}

// ---------------------------------------------------------------- the suite

/// Starts `n` brokers on one fresh schema, runs the cluster cases, stops them.
pub async fn run_suite(n: usize, opts: &RunOptions, no: usize) -> Vec<Measurement> {
    let ms = planned(n);
    let unavailable = |ms: Vec<Measurement>, e: &BenchError| -> Vec<Measurement> {
        ms.into_iter().map(|m| m.unavailable(e)).collect()
    };
    let Some(url) = opts.env.database_url.clone() else {
        return unavailable(
            ms,
            &BenchError::NotAvailable("DATABASE_URL is not set".into()),
        );
    };
    let schema = format!("{}_cl{n}_{no}", opts.env.pg_schema_prefix);
    let mut brokers = Vec::new();
    for id in 1..=n {
        let extra = [
            "--node-id".to_string(),
            id.to_string(),
            "--default-partitions".to_string(),
            PARTITIONS.to_string(),
        ];
        match Broker::spawn(
            "postgres",
            opts,
            &schema,
            opts.broker_bin.as_ref(),
            false,
            &extra,
        )
        .await
        {
            Ok(b) => brokers.push(b),
            Err(e) => {
                for b in brokers {
                    b.stop().await;
                }
                return unavailable(ms, &e);
            }
        }
    }
    let sampler = Sampler {
        postmaster: postmaster(&url).await,
        brokers: brokers.iter().filter_map(Broker::pid).collect(),
        pg: pg_counters(&url).await,
    };
    let kafka: Vec<KafkaTarget> = brokers
        .iter()
        .map(|b| KafkaTarget::plain(b.kafka))
        .collect();
    let http: Vec<SocketAddr> = brokers.iter().map(|b| b.http).collect();
    let d = opts.sizing.duration;
    let budget = opts.sizing.max_bytes / 100;
    let mut out = Vec::new();
    for m in ms {
        crate::runner::settle().await;
        let r = match (m.workload.as_str(), m.case.as_str()) {
            ("produce", case) => {
                let (size, batch, conns) = parse(case);
                let topic = format!("cl-{}", case.replace(' ', "-"));
                produce(&kafka, &topic, size, batch, conns, d, budget, &sampler).await
            }
            ("fetch", _) => fetch(&kafka, opts.sizing.fetch_bytes, d, &sampler).await,
            ("send", _) => send(&http, d, budget, &sampler).await,
            ("receive+delete", _) => {
                let backlog = opts.sizing.lease_records.min(20_000) as u64;
                receive(&http, d, backlog, &sampler).await
            }
            _ => Err(BenchError::Wrong(format!("unknown cluster case {}", m.id))),
        };
        out.push(match r {
            Ok((records, size, secs, (cpu, pg))) => {
                let mut m = m.with_records(records, size, secs);
                m.cpu = Some(cpu);
                m.pg = pg;
                m
            }
            Err(e) => m.unavailable(&e),
        });
    }
    for b in brokers {
        b.stop().await;
    }
    let _ = crate::baseline_pg::drop_schema(&url, &schema).await;
    out
}

/// (record size, batch, connections) of an `append_case` name.
fn parse(case: &str) -> (usize, usize, usize) {
    let (mut size, mut batch, mut conns) = (100, 1, 1);
    for part in case.split(' ') {
        if let Some(v) = part.strip_suffix('B') {
            size = v.parse().unwrap_or(size);
        } else if let Some(v) = part.strip_prefix('b') {
            batch = v.parse().unwrap_or(batch);
        } else if let Some(v) = part.strip_prefix('c') {
            conns = v.parse().unwrap_or(conns);
        }
    }
    (size, batch, conns)
}

type Counted = BenchResult<(u64, usize, f64, (CpuUse, Option<PgUse>))>;

/// `conns` connections, connection i on broker i mod N producing to partition i mod
/// [`PARTITIONS`] (every broker accepts every partition; the store orders the appends).
#[allow(clippy::too_many_arguments)]
async fn produce(
    kafka: &[KafkaTarget],
    topic: &str,
    size: usize,
    batch: usize,
    conns: usize,
    d: Duration,
    budget: u64,
    sampler: &Sampler,
) -> Counted {
    let data = encode_batch(batch, size)?;
    // Metadata creates the topic; then every connection is opened and has written once, so
    // the timed part has no set-up in it.
    let mut first = KafkaConn::open(&kafka[0]).await?;
    first.metadata(topic).await?;
    let mut cs = Vec::new();
    for i in 0..conns {
        let mut c = KafkaConn::open(&kafka[i % kafka.len()]).await?;
        c.produce_to(topic, (i % PARTITIONS) as i32, &data).await?;
        cs.push(c);
    }
    let per_conn = (budget * 100 / size as u64).div_ceil(conns as u64);
    let s0 = sampler.take().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in cs.into_iter().enumerate() {
        let data = data.clone();
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            let p = (i % PARTITIONS) as i32;
            let mut n = 0u64;
            while n < per_conn && start.elapsed() < d {
                match within(start, d, c.produce_to(&topic, p, &data)).await {
                    Some(r) => r?,
                    None => break,
                };
                n += batch as u64;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let total = join(tasks).await?;
    let secs = start.elapsed().as_secs_f64();
    Ok((total, size, secs, sampler.since(s0).await))
}

/// [`FETCHERS`] clients, client i reading partition i (about `bytes` / FETCHERS of 1 KiB
/// records, written beforehand) through broker i mod N, from the start again at the end.
async fn fetch(kafka: &[KafkaTarget], bytes: u64, d: Duration, sampler: &Sampler) -> Counted {
    let topic = "cl-fetch-1KiB";
    let data = encode_batch(100, 1024)?;
    let mut first = KafkaConn::open(&kafka[0]).await?;
    first.metadata(topic).await?;
    let per_part = (bytes / FETCHERS as u64 / (100 * 1024)).max(10);
    let mut fill = Vec::new();
    for i in 0..FETCHERS {
        let (target, data) = (kafka[i % kafka.len()].clone(), data.clone());
        fill.push(tokio::spawn(async move {
            let mut c = KafkaConn::open(&target).await?;
            for _ in 0..per_part {
                c.produce_to(topic, i as i32, &data).await?;
            }
            Ok::<u64, BenchError>(per_part)
        }));
    }
    join(fill).await?;
    let mut cs = Vec::new();
    for i in 0..FETCHERS {
        cs.push(KafkaConn::open(&kafka[i % kafka.len()]).await?);
    }
    let s0 = sampler.take().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in cs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let p = i as i32;
            let mut records = 0u64;
            let mut offset = 0i64;
            while start.elapsed() < d {
                let got = match within(start, d, c.fetch_from(topic, p, offset)).await {
                    Some(r) => r?,
                    None => break,
                };
                if got.records == 0 {
                    if offset < got.high_watermark {
                        return Err(BenchError::Wrong(format!(
                            "fetch of partition {p} at {offset} below the high watermark {} \
                             returned nothing",
                            got.high_watermark
                        )));
                    }
                    offset = 0;
                    continue;
                }
                records += got.records;
                offset = got.next_offset;
            }
            Ok::<u64, BenchError>(records)
        }));
    }
    let total = join(tasks).await?;
    let secs = start.elapsed().as_secs_f64();
    Ok((total, 1024, secs, sampler.since(s0).await))
}

/// [`SENDERS`] clients sending batches of 10 x 100 B, client i through broker i mod N.
async fn send(http: &[SocketAddr], d: Duration, budget: u64, sampler: &Sampler) -> Counted {
    let clients = http
        .iter()
        .map(|a| SqsClient::new(*a))
        .collect::<BenchResult<Vec<_>>>()?;
    let url = clients[0].create_queue("cl-send").await?;
    // every broker knows the queue before the timing starts
    for c in &clients {
        c.send_batch(&url, 10, 100).await?;
    }
    let per_conn = budget.div_ceil(SENDERS as u64);
    let s0 = sampler.take().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..SENDERS {
        let (client, url) = (clients[i % clients.len()].clone(), url.clone());
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
    let secs = start.elapsed().as_secs_f64();
    Ok((total, 100, secs, sampler.since(s0).await))
}

/// A backlog of `backlog` messages (sent through every broker), then [`RECEIVERS`] clients
/// receiving 10 and deleting them in one batch, client i through broker i mod N.
async fn receive(http: &[SocketAddr], d: Duration, backlog: u64, sampler: &Sampler) -> Counted {
    let clients = http
        .iter()
        .map(|a| SqsClient::new(*a))
        .collect::<BenchResult<Vec<_>>>()?;
    let url = clients[0].create_queue("cl-receive").await?;
    let mut fill = Vec::new();
    for i in 0..8 {
        let (client, url) = (clients[i % clients.len()].clone(), url.clone());
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
    let s0 = sampler.take().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..RECEIVERS {
        let (client, url) = (clients[i % clients.len()].clone(), url.clone());
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
    let secs = start.elapsed().as_secs_f64();
    Ok((total, 100, secs, sampler.since(s0).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_broker_count() {
        assert_eq!(brokers_of(&subject("kafka", 3)), Some(3));
        assert_eq!(brokers_of("kafka@postgres"), None);
    }

    #[test]
    fn every_case_of_more_brokers_is_divided_by_one_broker() {
        let one = planned(1);
        let three = planned(3);
        assert!(one.iter().all(|m| m.baseline.is_none()));
        for m in &three {
            let b = m.baseline.as_deref().expect("baseline");
            assert!(one.iter().any(|o| o.id == b), "{b} is not a 1-broker case");
        }
    }

    #[test]
    fn this_process_has_cpu_time() {
        let _ = (0..200_000u64).fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b));
        assert!(cpu_of(std::process::id(), false) >= 0.0);
        assert!(ppid_of(std::process::id()).is_some());
        assert!(machine_cpu() > 0.0);
    }
}
