//! The store issues' targets, judged from one run's measurements.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::Measurement;

/// One target and what the run says about it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub store: String,
    pub requirement: String,
    /// The figures the verdict rests on, in words.
    pub measured: String,
    /// The measured ratio compared with `threshold`.
    pub ratio: Option<f64>,
    pub threshold: f64,
    /// `None`: a figure it needs was not measured.
    pub met: Option<bool>,
}

struct Lookup<'a>(HashMap<&'a str, &'a Measurement>);

impl<'a> Lookup<'a> {
    fn rate(&self, id: &str) -> Option<f64> {
        self.0
            .get(id)
            .and_then(|m| m.records_per_s.filter(|_| m.value().is_some()))
    }
    fn p99(&self, id: &str) -> Option<f64> {
        self.0
            .get(id)
            .and_then(|m| m.latency.filter(|_| m.value().is_some()))
            .map(|l| l.p99_us)
    }
    fn mb(&self, id: &str) -> Option<f64> {
        self.0
            .get(id)
            .and_then(|m| m.mb_per_s.filter(|_| m.value().is_some()))
    }
}

fn target(store: &str, req: &str, threshold: f64, ratio: Option<f64>, measured: String) -> Target {
    Target {
        store: store.into(),
        requirement: req.into(),
        measured,
        ratio,
        threshold,
        met: ratio.map(|r| r >= threshold),
    }
}

fn f(v: Option<f64>) -> String {
    v.map_or("not measured".into(), crate::report::human)
}

/// Every target of the log and Postgres store issues.
pub fn evaluate(ms: &[Measurement]) -> Vec<Target> {
    let l = Lookup(ms.iter().map(|m| (m.id.as_str(), m)).collect());
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let mut t = Vec::new();

    let v = l.rate("log-interval/append/100B b1000 c1");
    t.push(target(
        "log",
        "append 100 B records, batches of 1000, `interval`, one appender: >= 2M records/s",
        1.0,
        v.map(|v| v / 2e6),
        format!("{} rec/s (ratio to 2M)", f(v)),
    ));

    // Judged on bulk writes beyond the host's write cache, each round against the faster of
    // the dd-like writes just before and just after it; the 256 MiB figures show the store
    // where the host absorbs writes at memory speed.
    let mut rounds = Vec::new();
    for k in 1..=crate::runner::BULK_ROUNDS {
        let dd = |k: usize| l.mb(&format!("disk/write/{}", crate::runner::bulk_dd_case(k)));
        let base = match (dd(k - 1), dd(k)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        let store = |size| {
            l.mb(&format!(
                "log-never/append/{}",
                crate::runner::bulk_case(size, k)
            ))
        };
        if let (Some(b), Some(v100), Some(v1k)) = (base, store(100), store(1024)) {
            rounds.push((b, v100, v1k));
        }
    }
    let mut r100: Vec<f64> = rounds.iter().map(|(b, v, _)| v / b).collect();
    r100.sort_by(f64::total_cmp);
    let median = (!r100.is_empty()).then(|| r100[r100.len() / 2]);
    let log_mb = l.mb("log-never/append/100B b1000 c1");
    let dd = l.mb("disk/write/1MiB sync-end");
    let per_round: Vec<String> = rounds
        .iter()
        .enumerate()
        .map(|(i, (b, v100, v1k))| {
            format!(
                "round {}: dd-like {} MB/s, log 100 B {} MB/s ({}x), 1 KiB {} MB/s ({}x)",
                i + 1,
                f(Some(*b)),
                f(Some(*v100)),
                f(Some(v100 / b)),
                f(Some(*v1k)),
                f(Some(v1k / b))
            )
        })
        .collect();
    t.push(target(
        "log",
        "bytes appended with one fdatasync at the end >= 80% of dd's sequential write rate with fdatasync (1 MiB blocks; 100 B records in batches of 1000, `never`; median of interleaved bulk rounds)",
        0.8,
        median,
        format!(
            "{}; {} MB per write. At 256 MiB, which the host absorbs at memory speed: log 100 B {} MB/s, dd-like {} MB/s ({}x)",
            per_round.join("; "),
            f(Some(sizing_bulk_mb(ms))),
            f(log_mb),
            f(dd),
            f(div(log_mb, dd))
        ),
    ));

    let one = l.rate("log-always/append/100B b1 c1");
    let many = l.rate("log-always/append/100B b1 c64");
    t.push(target(
        "log",
        "`always`, 64 concurrent appenders of single records >= 20x one such appender (group commit)",
        20.0,
        div(many, one),
        format!("c64: {} rec/s; c1: {} rec/s", f(many), f(one)),
    ));

    // The three log entries run the same fetch workload (a `never` topic): take the median.
    let mut samples: Vec<f64> = ["log-interval", "log-never", "log-always"]
        .iter()
        .filter_map(|s| l.mb(&format!("{s}/fetch/1024B")))
        .collect();
    samples.sort_by(f64::total_cmp);
    let fetch = samples.get(samples.len() / 2).copied();
    let pc = l.mb("disk/read/page-cache 1MiB blocks");
    t.push(target(
        "log",
        "catch-up fetch from the page cache >= 3 GB/s (1 KiB records; median of the three log runs)",
        1.0,
        fetch.map(|v| v / 3000.0),
        format!(
            "{} MB/s (ratio to 3 GB/s); page-cache read of a file: {} MB/s (ratio {})",
            f(fetch),
            f(pc),
            f(div(fetch, pc))
        ),
    ));

    let pg = l.rate("postgres/append/100B b1000 c1");
    t.push(target(
        "postgres",
        "append 100 B in batches of 1000 >= 150k records/s",
        1.0,
        pg.map(|v| v / 150e3),
        format!("{} rec/s (ratio to 150k)", f(pg)),
    ));
    let copy = l.rate("pg-copy/append/100B b1000 c1");
    t.push(target(
        "postgres",
        "append 100 B in batches of 1000 >= 40% of binary COPY of the same rows into a bare table",
        0.4,
        div(pg, copy),
        format!("store: {} rec/s; COPY: {} rec/s", f(pg), f(copy)),
    ));

    let best = |prefix: &str| {
        [1, 8, 64]
            .iter()
            .filter_map(|c| l.rate(&format!("{prefix}{c}")).map(|v| (v, *c)))
            .fold(None, |a: Option<(f64, i32)>, x| match a {
                Some(a) if a.0 >= x.0 => Some(a),
                _ => Some(x),
            })
    };
    let lease = best("postgres/lease/b100 c");
    let naive = best("pg-naive/queue/b1 c");
    t.push(target(
        "postgres",
        "lease + ack with batches of 100 >= 60k records/s",
        1.0,
        lease.map(|(v, _)| v / 60e3),
        format!(
            "best: {} rec/s with {} consumers (ratio to 60k)",
            f(lease.map(|x| x.0)),
            lease.map_or("?".into(), |x| x.1.to_string())
        ),
    ));
    t.push(target(
        "postgres",
        "lease + ack >= 10x the naive queue (best of 1/8/64 consumers each)",
        10.0,
        div(lease.map(|x| x.0), naive.map(|x| x.0)),
        format!(
            "store: {} rec/s; naive queue: {} rec/s with {} consumers",
            f(lease.map(|x| x.0)),
            f(naive.map(|x| x.0)),
            naive.map_or("?".into(), |x| x.1.to_string())
        ),
    ));
    speed_targets(&l, &mut t);
    tls_targets(&l, &mut t);
    txn_targets(&l, &mut t);
    let c8 = l.rate("postgres/lease/b100 c8");
    let c64 = l.rate("postgres/lease/b100 c64");
    t.push(target(
        "postgres",
        "no anti-scaling from 8 to 64 concurrent leasers (c64 >= 90% of c8)",
        0.9,
        div(c64, c8),
        format!("c64: {} rec/s; c8: {} rec/s", f(c64), f(c8)),
    ));
    t
}

/// Issue 20's target: Kafka over TLS >= 70% of plaintext for 1 KiB records, produce and
/// fetch, on one broker in this run.
fn tls_targets(l: &Lookup<'_>, t: &mut Vec<Target>) {
    let pairs = [
        ("produce", "1024B b100 c16", false),
        ("fetch", "1024B", true),
    ];
    for (workload, case, mb) in pairs {
        let get = |id: String| if mb { l.mb(&id) } else { l.rate(&id) };
        let tls = get(format!("kafka-tls@log/{workload}/{case}"));
        let plain = get(format!("kafka@log/{workload}/{case}"));
        let unit = if mb { "MB/s" } else { "rec/s" };
        t.push(target(
            "log",
            &format!("Kafka {workload} over TLS >= 0.7x of plaintext (1 KiB records, {case})"),
            0.7,
            match (tls, plain) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
            format!("TLS: {} {unit}; plaintext: {} {unit}", f(tls), f(plain)),
        ));
    }
}

/// Issue 19's target: transactional produce through the server >= 70% of idempotent produce
/// (same batches of 100, one connection, same broker), for transactions of 100 and of 1000
/// records.
fn txn_targets(l: &Lookup<'_>, t: &mut Vec<Target>) {
    for store in ["log", "postgres"] {
        let idem = l.rate(&format!("kafka@{store}/idempotent-produce/100B b100 c1"));
        for records in [100, 1000] {
            let txn = l.rate(&format!(
                "kafka@{store}/txn-produce/100B b100 t{records} c1"
            ));
            t.push(target(
                store,
                &format!(
                    "transactional produce, transactions of {records} records, >= 0.7x of \
                     idempotent produce (batches of 100, one connection)"
                ),
                0.7,
                match (txn, idem) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                },
                format!(
                    "transactional: {} rec/s; idempotent: {} rec/s",
                    f(txn),
                    f(idem)
                ),
            ));
        }
    }
}

/// The targets of issue 16 (speed through the protocols), each a ratio in this run.
fn speed_targets(l: &Lookup<'_>, t: &mut Vec<Target>) {
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    for size in ["100B", "1024B"] {
        let server = l.mb(&format!("kafka@log/fetch/{size}"));
        let contract = l.mb(&format!("log-interval/fetch/{size}"));
        t.push(target(
            "log",
            &format!("Kafka fetch via server >= 0.6x of the contract's catch-up fetch ({size})"),
            0.6,
            div(server, contract),
            format!("server: {} MB/s; contract: {} MB/s", f(server), f(contract)),
        ));
    }
    let pg_fetch = l.mb("kafka@postgres/fetch/1024B");
    t.push(target(
        "postgres",
        "Kafka fetch via server of 1 KiB records >= 1 GB/s",
        1.0,
        pg_fetch.map(|v| v / 1000.0),
        format!("{} MB/s (ratio to 1 GB/s)", f(pg_fetch)),
    ));
    let server = l.rate("kafka@log/produce/100B b1000 c16");
    let contract = l.rate("log-interval/append/100B b1000 c16");
    t.push(target(
        "log",
        "Kafka produce via server (1000 x 100 B, 16 connections) >= 0.8x of the contract append",
        0.8,
        div(server, contract),
        format!(
            "server: {} rec/s; contract: {} rec/s",
            f(server),
            f(contract)
        ),
    ));
    let single = l.rate("kafka@log/produce/100B b1 c16");
    t.push(target(
        "log",
        "single-record produce via server, 16 connections >= 200k records/s",
        1.0,
        single.map(|v| v / 200e3),
        format!("{} rec/s (ratio to 200k)", f(single)),
    ));
    // "Today" is the earlier broker when this run measured one (--before-broker-bin), else
    // the 1.3k rec/s of the issue.
    let single = l.rate("kafka@postgres/produce/100B b1 c16");
    let before = l.rate("kafka-before@postgres/produce/100B b1 c16");
    let today = before.unwrap_or(1.3e3);
    t.push(target(
        "postgres",
        "single-record produce via server, 16 connections >= 20x today",
        20.0,
        div(single, Some(today)),
        format!(
            "{} rec/s; today: {} rec/s ({})",
            f(single),
            f(Some(today)),
            if before.is_some() {
                "the earlier broker in this run"
            } else {
                "the issue's figure"
            }
        ),
    ));
    let pg = l.rate("postgres/append/100B b1000 c1");
    let copy = l.rate("pg-copy/append/100B b1000 c1");
    t.push(target(
        "postgres",
        "append 100 B in batches of 1000 >= 1.5x binary COPY of one row per record",
        1.5,
        div(pg, copy),
        format!("store: {} rec/s; COPY: {} rec/s", f(pg), f(copy)),
    ));
    let best = |prefix: &str| {
        [1, 8, 64]
            .iter()
            .filter_map(|c| l.rate(&format!("{prefix}{c}")))
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
    };
    let lease = best("postgres/lease/b100 c");
    let naive = best("pg-naive/queue/b1 c");
    t.push(target(
        "postgres",
        "lease + ack (batches of 100) >= 100k records/s",
        1.0,
        lease.map(|v| v / 100e3),
        format!("best: {} rec/s (ratio to 100k)", f(lease)),
    ));
    t.push(target(
        "postgres",
        "lease + ack (batches of 100) >= 20x the naive queue",
        20.0,
        div(lease, naive),
        format!("store: {} rec/s; naive queue: {} rec/s", f(lease), f(naive)),
    ));
    for (store, contract) in [("log", "log-interval"), ("postgres", "postgres")] {
        for conns in [1, 16] {
            let send = l.rate(&format!("sqs@{store}/send/100B b10 c{conns}"));
            let base = l.rate(&format!("{contract}/append/100B b100 c{conns}"));
            t.push(target(
                store,
                &format!("SQS send (10 x 100 B, {conns} clients) >= 0.3x of the contract append"),
                0.3,
                div(send, base),
                format!("SQS: {} rec/s; contract: {} rec/s", f(send), f(base)),
            ));
        }
        for conns in [1, 8] {
            let recv = l.rate(&format!("sqs@{store}/receive+delete/b10 c{conns}"));
            let base = l.rate(&format!("{contract}/lease/b100 c{conns}"));
            t.push(target(
                store,
                &format!(
                    "SQS receive+delete ({conns} clients) >= 0.3x of the contract lease + ack"
                ),
                0.3,
                div(recv, base),
                format!("SQS: {} rec/s; contract: {} rec/s", f(recv), f(base)),
            ));
        }
    }
    // Tail latency at the run's tail rate (10k/s for the figure: --tail-rate 10000).
    for (store, subject, limit_ms) in [("log", "log-interval", 3.0), ("postgres", "postgres", 15.0)]
    {
        let p99 =
            l.0.keys()
                .find(|id| id.starts_with(&format!("{subject}/tail/")))
                .and_then(|id| l.p99(id));
        t.push(target(
            store,
            &format!("tail latency p99 (append to a waiting fetch) <= {limit_ms} ms"),
            1.0,
            p99.map(|us| limit_ms * 1000.0 / us.max(1.0)),
            format!("p99 {} us (ratio: limit / p99)", f(p99)),
        ));
    }
}

/// Megabytes written by the bulk dd-like case (its count of 1 MiB blocks).
fn sizing_bulk_mb(ms: &[Measurement]) -> f64 {
    ms.iter()
        .find(|m| m.id == format!("disk/write/{}", crate::runner::bulk_dd_case(0)))
        .map_or(0.0, |m| m.count as f64 * (1u64 << 20) as f64 / 1e6)
}
