//! The workloads, run against any store through the `Store` trait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{AppendBatch, CleanupPolicy, Durability, FetchLimits, Record, Store, TopicConfig};
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};

use crate::{BenchError, BenchResult};

/// How long and how big each case is.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Wall time of one case (prefills not counted).
    pub duration: Duration,
    /// An append case stops after this many payload bytes even if time is left.
    pub max_bytes: u64,
    /// Payload bytes prefilled for a catch-up fetch case.
    pub fetch_bytes: u64,
    /// Records prefilled for a lease case.
    pub lease_records: usize,
    /// Records prefilled for a timestamp lookup case.
    pub ts_records: usize,
    /// Records per second of the tailing latency case.
    pub tail_rate: u32,
    /// Bytes of the bulk-write cases (more than the host's write cache absorbs, so that
    /// they measure the disk).
    pub bulk_bytes: u64,
}

/// The topic every case writes to.
pub const TOPIC: &str = "bench";

/// A payload of `size` bytes.
pub fn payload(size: usize) -> Bytes {
    Bytes::from(vec![0x5a_u8; size])
}

fn config(durability: Durability) -> TopicConfig {
    TopicConfig {
        durability,
        ..TopicConfig::with_partitions(1)
    }
}

/// Appends `total` records of `size` bytes in batches of 1000, untimed.
pub async fn prefill(
    store: &Arc<dyn Store>,
    topic: &str,
    size: usize,
    total: usize,
    ts_base: Option<i64>,
) -> BenchResult<()> {
    let value = payload(size);
    let mut done = 0usize;
    while done < total {
        let n = (total - done).min(1000);
        let records = (0..n)
            .map(|i| Record {
                value: Some(value.clone()),
                timestamp_ms: ts_base.map(|t| t + (done + i) as i64),
                ..Record::default()
            })
            .collect();
        store.append(topic, 0, AppendBatch::new(records)).await?;
        done += n;
    }
    Ok(())
}

/// Result of a throughput case: records counted and seconds taken.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub records: u64,
    pub elapsed_s: f64,
}

/// `appenders` tasks append batches of `batch` records of `size` bytes to one partition until
/// the time or byte budget is spent; then the store is closed (flushing it). The time includes
/// the close, so a final fsync counts.
pub async fn append(
    store: Arc<dyn Store>,
    durability: Durability,
    size: usize,
    batch: usize,
    appenders: usize,
    sizing: &Sizing,
) -> BenchResult<Throughput> {
    store.create_topic(TOPIC, config(durability)).await?;
    let value = payload(size);
    let records: Vec<Record> = (0..batch)
        .map(|_| Record::from_value(value.clone()))
        .collect();
    let budget_records = (sizing.max_bytes / size as u64).max(batch as u64);
    let per_task = budget_records.div_ceil(appenders as u64);
    let start = Instant::now();
    let deadline = start + sizing.duration;
    let mut tasks = Vec::with_capacity(appenders);
    for _ in 0..appenders {
        let store = store.clone();
        let records = records.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while n < per_task && Instant::now() < deadline {
                store
                    .append(TOPIC, 0, AppendBatch::new(records.clone()))
                    .await?;
                n += records.len() as u64;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| BenchError::Wrong(format!("appender panicked: {e}")))??;
    }
    store.close().await?;
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(Throughput {
        records: total,
        elapsed_s,
    })
}

/// Prefills about `sizing.fetch_bytes` of `size`-byte records, then reads the partition from
/// offset 0 to the end with default fetch limits, pass after pass until the time is spent.
/// Every record is checked to be the next offset.
pub async fn catch_up(
    store: Arc<dyn Store>,
    size: usize,
    sizing: &Sizing,
) -> BenchResult<Throughput> {
    store.create_topic(TOPIC, config(Durability::Never)).await?;
    let total = (sizing.fetch_bytes / size as u64).max(1000) as usize;
    prefill(&store, TOPIC, size, total, None).await?;
    let hw = store.partition_offsets(TOPIC, 0).await?.high_watermark;
    let limits = FetchLimits::default();
    let start = Instant::now();
    let mut records = 0u64;
    loop {
        let mut offset = 0i64;
        while offset < hw {
            let got = store.fetch(TOPIC, 0, offset, limits).await?;
            let Some(last) = got.records.last() else {
                return Err(BenchError::Wrong(format!(
                    "fetch at {offset} below the high watermark {hw} returned nothing"
                )));
            };
            if got.records[0].offset != offset {
                return Err(BenchError::Wrong(format!(
                    "fetch at {offset} started at {}",
                    got.records[0].offset
                )));
            }
            offset = last.offset + 1;
            records += got.records.len() as u64;
            if start.elapsed() >= sizing.duration {
                break;
            }
        }
        if start.elapsed() >= sizing.duration {
            break;
        }
    }
    Ok(Throughput {
        records,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// One appender sends single `size`-byte records at `sizing.tail_rate` per second, each
/// carrying the instant it was handed to `append`; one tailing reader (`wait_for` + `fetch`)
/// records the time from that instant to delivery, in nanoseconds.
pub async fn tail_latency(
    store: Arc<dyn Store>,
    durability: Durability,
    size: usize,
    sizing: &Sizing,
) -> BenchResult<(Histogram<u64>, f64)> {
    store.create_topic(TOPIC, config(durability)).await?;
    let size = size.max(8);
    let count = ((sizing.tail_rate as f64 * sizing.duration.as_secs_f64()) as u64).max(50);
    let t0 = Instant::now();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)
                .map_err(|e| BenchError::Wrong(e.to_string()))?;
            let mut offset = 0i64;
            while (offset as u64) < count {
                if !store
                    .wait_for(TOPIC, 0, offset, Duration::from_secs(10))
                    .await?
                {
                    return Err(BenchError::Wrong(format!(
                        "no record at {offset} within 10 s"
                    )));
                }
                let got = store
                    .fetch(TOPIC, 0, offset, FetchLimits::default())
                    .await?;
                let now = t0.elapsed().as_nanos() as u64;
                for r in &got.records {
                    let v = r.value.as_ref().ok_or_else(|| {
                        BenchError::Wrong(format!("record {} lost its value", r.offset))
                    })?;
                    let sent = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
                    h.saturating_record(now.saturating_sub(sent).max(1_000));
                    offset = r.offset + 1;
                }
            }
            Ok::<_, BenchError>(h)
        })
    };
    let interval = Duration::from_secs_f64(1.0 / sizing.tail_rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    for i in 0..count {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let mut v = vec![0x5a_u8; size];
        v[..8].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_le_bytes());
        store
            .append(TOPIC, 0, AppendBatch::new(vec![Record::from_value(v)]))
            .await?;
    }
    let h = reader
        .await
        .map_err(|e| BenchError::Wrong(format!("reader panicked: {e}")))??;
    Ok((h, t0.elapsed().as_secs_f64()))
}

/// Prefills `sizing.lease_records` records, then `consumers` tasks each lease up to `batch`
/// records and ack them all, until nothing is left to lease or the time is spent. Counts
/// acked records; a failed ack is an error.
pub async fn lease_ack(
    store: Arc<dyn Store>,
    durability: Durability,
    consumers: usize,
    batch: usize,
    sizing: &Sizing,
) -> BenchResult<Throughput> {
    store.create_topic(TOPIC, config(durability)).await?;
    prefill(&store, TOPIC, 100, sizing.lease_records, None).await?;
    let start = Instant::now();
    let deadline = start + sizing.duration;
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let leases = store
                    .lease(TOPIC, 0, "bench", batch, Duration::from_secs(60))
                    .await?;
                if leases.is_empty() {
                    break;
                }
                let tokens: Vec<_> = leases.iter().map(|l| l.token).collect();
                for r in store.ack(TOPIC, "bench", &tokens).await? {
                    r?;
                }
                n += tokens.len() as u64;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| BenchError::Wrong(format!("consumer panicked: {e}")))??;
    }
    Ok(Throughput {
        records: total,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Prefills `sizing.ts_records` records with timestamps 1 ms apart, then looks up random
/// timestamps; every answer is checked against the expected offset.
pub async fn timestamp_lookup(store: Arc<dyn Store>, sizing: &Sizing) -> BenchResult<Throughput> {
    store.create_topic(TOPIC, config(Durability::Never)).await?;
    let base = 1_767_225_600_000i64;
    let n = sizing.ts_records.max(1);
    prefill(&store, TOPIC, 100, n, Some(base)).await?;
    let start = Instant::now();
    let mut ops = 0u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    while start.elapsed() < sizing.duration || ops == 0 {
        for _ in 0..64 {
            let i = rng.gen_range(0..n as i64);
            let got = store.offset_for_timestamp(TOPIC, 0, base + i).await?;
            match got {
                Some(o) if o.offset == i && o.timestamp_ms == base + i => {}
                other => {
                    return Err(BenchError::Wrong(format!(
                        "timestamp {} gave {other:?}, expected offset {i}",
                        base + i
                    )))
                }
            }
            ops += 1;
        }
    }
    Ok(Throughput {
        records: ops,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Batch rows the PostgreSQL store's cleaner reads per chunk (and its baseline reads per query).
pub const COMPACT_CHUNK_ROWS: usize = 500;
/// Records per append of the compaction case's fill (one stored batch each).
const COMPACT_BATCH: usize = 1000;
/// Compaction calls after which the case gives up on reaching a call that removes nothing.
const COMPACT_MAX_CALLS: u32 = 1000;

/// The compaction case's data: `records` 100-byte records over `keys` keys, on a topic
/// rolling segments past `segment_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct CompactShape {
    pub records: usize,
    pub keys: usize,
    pub segment_bytes: u64,
}

impl CompactShape {
    /// Sized from the lease case's record count: 200 000 records over 10 000 keys in 1 MiB
    /// segments for a full run (100 000 lease records); 6 000 over 300 in 64 KiB segments
    /// with `--quick`.
    pub fn of(sizing: &Sizing) -> CompactShape {
        let records = (sizing.lease_records * 2).max(2 * COMPACT_BATCH);
        let keys = (records / 20).max(1);
        let segment_bytes = ((records as u64 * 100) / 16).clamp(64 << 10, 1 << 20);
        CompactShape {
            records,
            keys,
            segment_bytes,
        }
    }

    /// Bytes of one stored batch of the fill (1000 keyed records).
    pub fn batch_bytes(&self) -> usize {
        let values = random_values();
        let records = compact_records(self, 0, COMPACT_BATCH, &values);
        let mut buf = Vec::new();
        match kafka_batch::encode_records(&mut buf, &records, 0, None) {
            Ok(_) => buf.len(),
            // Not reached for these records; an estimate keeps the baseline's size close.
            Err(_) => COMPACT_BATCH * 116 + kafka_batch::HEADER_LEN,
        }
    }

    /// Bytes of the fill as stored batches.
    pub fn stored_bytes(&self) -> u64 {
        (self.records.div_ceil(COMPACT_BATCH) * self.batch_bytes()) as u64
    }

    /// Unique-key records appended after the fill: more than a segment's worth, so that the
    /// fill lies below the active segment (the log store never cleans that one).
    fn tail_records(&self) -> usize {
        (self.segment_bytes as usize / 100 + COMPACT_BATCH).div_ceil(COMPACT_BATCH) * COMPACT_BATCH
    }
}

/// 1 MiB of seeded random bytes, which record values are cut from (incompressible, so no
/// store or TOAST gets a free ride).
fn random_values() -> Bytes {
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let mut v = vec![0u8; 1 << 20];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

/// Records `from .. from + n` of the fill: record `i` has key `k{i % keys}` and a 100-byte
/// value cut from `values`.
fn compact_records(shape: &CompactShape, from: usize, n: usize, values: &Bytes) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            let at = (i * 97) % (values.len() - 100);
            Record {
                key: Some(Bytes::from(format!("k{:06}", i % shape.keys))),
                value: Some(values.slice(at..at + 100)),
                ..Record::default()
            }
        })
        .collect()
}

/// What the compaction case did.
#[derive(Debug, Clone, Copy)]
pub struct Compacted {
    /// Bytes of stored batches read, summed over the calls.
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    /// Records superseded in the fill (records - keys): what a full cleaning removes.
    pub superseded: u64,
    /// Compaction calls, the last of which removed nothing.
    pub calls: u32,
    pub elapsed_s: f64,
}

impl Compacted {
    /// One line for the report's note.
    pub fn describe(&self) -> String {
        let secs = self.elapsed_s.max(1e-9);
        format!(
            "{} compact calls in {:.3} s: removed {} of {} superseded records, read {:.1} MB, \
             wrote {:.1} MB ({:.0} MB/s written)",
            self.calls,
            self.elapsed_s,
            self.records_removed,
            self.superseded,
            self.bytes_read as f64 / 1e6,
            self.bytes_written as f64 / 1e6,
            self.bytes_written as f64 / 1e6 / secs
        )
    }
}

/// Fills a compacted topic (`cleanup.policy=compact`, no lag, small segments) with the
/// [`CompactShape`]'s records over its keys in batches of 1000, then more than a segment of
/// unique-key records, untimed; then calls `compact` until a call removes nothing, timed.
/// Fails if more records were removed than the fill superseded (a compaction never removes
/// the newest record of a key), or if compaction never settles.
pub async fn compact(
    store: Arc<dyn Store>,
    durability: Durability,
    sizing: &Sizing,
) -> BenchResult<Compacted> {
    let shape = CompactShape::of(sizing);
    let config = TopicConfig {
        durability,
        segment_bytes: Some(shape.segment_bytes),
        cleanup: CleanupPolicy {
            compact: true,
            delete: false,
            min_compaction_lag_ms: 0,
            ..CleanupPolicy::default()
        },
        ..TopicConfig::with_partitions(1)
    };
    store.create_topic(TOPIC, config).await?;
    let values = random_values();
    let mut done = 0;
    while done < shape.records {
        let n = (shape.records - done).min(COMPACT_BATCH);
        let records = compact_records(&shape, done, n, &values);
        store.append(TOPIC, 0, AppendBatch::new(records)).await?;
        done += n;
    }
    let tail = shape.tail_records();
    let mut done = 0;
    while done < tail {
        let records = (done..done + COMPACT_BATCH)
            .map(|i| Record {
                key: Some(Bytes::from(format!("u{i:08}"))),
                value: Some(values.slice(i % 1000..i % 1000 + 100)),
                ..Record::default()
            })
            .collect();
        store.append(TOPIC, 0, AppendBatch::new(records)).await?;
        done += COMPACT_BATCH;
    }
    let superseded = (shape.records - shape.keys) as u64;
    let mut out = Compacted {
        bytes_read: 0,
        bytes_written: 0,
        records_removed: 0,
        superseded,
        calls: 0,
        elapsed_s: 0.0,
    };
    let start = Instant::now();
    loop {
        if out.calls >= COMPACT_MAX_CALLS {
            return Err(BenchError::Wrong(format!(
                "compaction still removed records after {COMPACT_MAX_CALLS} calls"
            )));
        }
        let st = store.compact(TOPIC, 0, None).await?;
        out.calls += 1;
        out.bytes_read += st.bytes_read;
        out.bytes_written += st.bytes_written;
        out.records_removed += st.records_removed;
        if st.records_removed == 0 {
            break;
        }
    }
    out.elapsed_s = start.elapsed().as_secs_f64();
    if out.records_removed > superseded {
        return Err(BenchError::Wrong(format!(
            "compaction removed {} records; only {superseded} were superseded",
            out.records_removed
        )));
    }
    Ok(out)
}
