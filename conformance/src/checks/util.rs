//! Small helpers shared by the checks.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, AppendResult, FetchLimits, Lease, LeaseCounts, LeaseToken, ProducerBatch, Record,
    Store, StoreResult, StoredRecord, TopicConfig,
};
use bytes::Bytes;

use crate::harness::{Backend, Subject};

/// Turns a store error into a check failure naming the step.
pub(crate) trait Ctx<T> {
    fn ctx(self, step: &str) -> Result<T, String>;
}

impl<T> Ctx<T> for StoreResult<T> {
    fn ctx(self, step: &str) -> Result<T, String> {
        self.map_err(|e| format!("{step}: unexpected error {e:?}"))
    }
}

/// Fails the check with a message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}
pub(crate) use ensure;

/// Fails the check unless `got == want`, printing both.
macro_rules! ensure_eq {
    ($got:expr, $want:expr, $($arg:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            return Err(format!("{}: expected {:?}, got {:?}", format!($($arg)+), want, got));
        }
    }};
}
pub(crate) use ensure_eq;

/// Fails the check unless the result is an error matching the pattern.
macro_rules! ensure_err {
    ($res:expr, $pat:pat, $($arg:tt)+) => {{
        match $res {
            Err($pat) => {}
            other => {
                return Err(format!(
                    "{}: expected Err({}), got {:?}",
                    format!($($arg)+),
                    stringify!($pat),
                    other
                ))
            }
        }
    }};
}
pub(crate) use ensure_err;

/// Wipes the slot named after the check and opens a fresh store on it.
pub(crate) async fn fresh(backend: Arc<dyn Backend>, name: &str) -> Result<Subject, String> {
    Subject::fresh(backend, name)
        .await
        .ctx("opening a fresh store")
}

/// Creates a topic with `partitions` partitions and default settings.
pub(crate) async fn topic(store: &Arc<dyn Store>, name: &str, partitions: u32) -> CheckStep {
    store
        .create_topic(name, TopicConfig::with_partitions(partitions))
        .await
        .ctx(&format!("create_topic({name})"))
        .map(|_| ())
}

/// The result of a check's step.
pub(crate) type CheckStep = Result<(), String>;

/// Appends records with the given values as one batch.
pub(crate) async fn append_values(
    store: &Arc<dyn Store>,
    topic: &str,
    partition: i32,
    values: &[&str],
) -> Result<AppendResult, String> {
    let records = values
        .iter()
        .map(|v| Record::from_value(v.to_string()))
        .collect();
    append(store, topic, partition, records).await
}

/// Appends records as one batch.
pub(crate) async fn append(
    store: &Arc<dyn Store>,
    topic: &str,
    partition: i32,
    records: Vec<Record>,
) -> Result<AppendResult, String> {
    store
        .append(topic, partition, AppendBatch::new(records))
        .await
        .ctx(&format!("append to {topic}/{partition}"))
}

/// Appends `n` single-record batches with values `v0, v1, ...`.
pub(crate) async fn append_n(
    store: &Arc<dyn Store>,
    topic: &str,
    partition: i32,
    n: usize,
) -> CheckStep {
    for i in 0..n {
        append_values(store, topic, partition, &[&format!("v{i}")]).await?;
    }
    Ok(())
}

/// Every record from `from` to the high watermark, fetching as often as needed.
pub(crate) async fn fetch_all(
    store: &Arc<dyn Store>,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<Vec<StoredRecord>, String> {
    let mut out: Vec<StoredRecord> = Vec::new();
    let mut next = from;
    loop {
        let res = store
            .fetch(topic, partition, next, FetchLimits::default())
            .await
            .ctx(&format!("fetch {topic}/{partition} at {next}"))?;
        if next >= res.high_watermark {
            return Ok(out);
        }
        ensure!(
            !res.records.is_empty(),
            "fetch {topic}/{partition} at {next} below the high watermark {} returned no records",
            res.high_watermark
        );
        for r in res.records {
            ensure_eq!(
                r.offset,
                next,
                "fetch {topic}/{partition}: offset of the next record"
            );
            next += 1;
            out.push(r);
        }
    }
}

/// The values of records as strings.
pub(crate) fn values(records: &[StoredRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r.value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Leases up to `max` records for `visibility_ms`.
pub(crate) async fn lease(
    store: &Arc<dyn Store>,
    topic: &str,
    partition: i32,
    group: &str,
    max: usize,
    visibility_ms: u64,
) -> Result<Vec<Lease>, String> {
    store
        .lease(
            topic,
            partition,
            group,
            max,
            Duration::from_millis(visibility_ms),
        )
        .await
        .ctx(&format!("lease {topic}/{partition} by {group}"))
}

/// The offsets of leased records.
pub(crate) fn leased_offsets(leases: &[Lease]) -> Vec<i64> {
    leases.iter().map(|l| l.record.offset).collect()
}

/// The delivery counts of leased records.
pub(crate) fn deliveries(leases: &[Lease]) -> Vec<u32> {
    leases.iter().map(|l| l.delivery_count).collect()
}

/// Acks one token, failing the check unless the ack succeeds.
pub(crate) async fn ack_ok(
    store: &Arc<dyn Store>,
    topic: &str,
    group: &str,
    token: LeaseToken,
) -> CheckStep {
    let res = store.ack(topic, group, &[token]).await.ctx("ack")?;
    ensure!(
        matches!(res.as_slice(), [Ok(())]),
        "ack of a live lease of offset {}: expected [Ok(())], got {res:?}",
        token.offset
    );
    Ok(())
}

/// The group's lease counts.
pub(crate) async fn counts(
    store: &Arc<dyn Store>,
    topic: &str,
    partition: i32,
    group: &str,
) -> Result<LeaseCounts, String> {
    store
        .lease_counts(topic, partition, group)
        .await
        .ctx(&format!("lease_counts {topic}/{partition} {group}"))
}

/// Lease counts as (available, leased, delayed, done, dead_lettered).
pub(crate) fn tuple(c: LeaseCounts) -> (u64, u64, u64, u64, u64) {
    (c.available, c.leased, c.delayed, c.done, c.dead_lettered)
}

/// The subject's clock reading.
pub(crate) fn clock_now(s: &Subject) -> i64 {
    use broker_api::Clock;
    s.clock.now_ms()
}

/// A transactional batch of `records` as a producer with `producer` sends it (CreateTime,
/// base offset 0).
pub(crate) fn transactional_batch(producer: ProducerBatch, records: &[Record]) -> Bytes {
    let mut buf = Vec::new();
    kafka_batch::encode_records(&mut buf, records, 1_000, Some(producer))
        .expect("encoding a test batch");
    kafka_batch::set_transactional(&mut buf);
    Bytes::from(buf)
}
