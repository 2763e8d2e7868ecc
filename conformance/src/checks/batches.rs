//! Checks of the Batches rules: Kafka v2 record batches appended and fetched as bytes.

use std::sync::Arc;

use broker_api::{
    AppendBatch, BatchLimits, Header, ProducerBatch, Record, Store, StoreError, StoredRecord,
    TimestampType, TopicConfig,
};
use bytes::Bytes;
use kafka_batch::{BatchHeader, Compression};

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// Records with keys, headers (a repeated name, a null value) and producer timestamps.
fn sample(tag: &str, n: usize, ts: i64) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: (i % 2 == 0).then(|| Bytes::from(format!("{tag}-k{i}"))),
            value: Some(Bytes::from(format!("{tag}-v{i}-{}", "x".repeat(i * 7)))),
            headers: vec![
                Header {
                    key: "h".into(),
                    value: Some(Bytes::from(format!("{i}"))),
                },
                Header {
                    key: "n".into(),
                    value: None,
                },
                Header {
                    key: "h".into(),
                    value: Some(Bytes::from_static(b"again")),
                },
            ],
            timestamp_ms: Some(ts + i as i64 * 3),
            not_before_ms: None,
        })
        .collect()
}

/// A batch as a producer sends it: base offset 0, leader epoch -1, CreateTime.
fn produced(records: &[Record], producer: Option<ProducerBatch>) -> Result<Bytes, String> {
    let mut buf = Vec::new();
    kafka_batch::encode_records(&mut buf, records, 0, producer)
        .map_err(|e| format!("encoding a test batch: {e}"))?;
    buf[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    Ok(Bytes::from(buf))
}

fn gzipped(batch: &Bytes) -> Result<Bytes, String> {
    kafka_batch::compress_batch(batch, Compression::Gzip)
        .map(Bytes::from)
        .map_err(|e| format!("compressing a test batch: {e}"))
}

/// Sets bytes and recomputes the CRC (an intact batch that breaks a rule).
fn resigned(batch: &Bytes, at: usize, bytes: &[u8]) -> Bytes {
    let mut b = batch.to_vec();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = kafka_crc(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// CRC-32C (Castagnoli), bit by bit: the checks do not trust the store's codec for it.
fn kafka_crc(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every batch of a fetch, split at the batch boundaries, with a check that each is whole.
fn split(chunks: &[Bytes]) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    for c in chunks {
        if c.is_empty() {
            continue;
        }
        out.extend(kafka_batch::split_batches(c).map_err(|e| format!("a fetched chunk: {e}"))?);
    }
    Ok(out)
}

fn header(b: &Bytes) -> Result<BatchHeader, String> {
    BatchHeader::read(b).ok_or_else(|| format!("a fetched batch of {} bytes", b.len()))
}

async fn batches_at(
    store: &Arc<dyn Store>,
    topic: &str,
    offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> Result<Vec<Bytes>, String> {
    let f = store
        .fetch_batches(
            topic,
            0,
            offset,
            BatchLimits {
                max_bytes,
                min_one,
                read_committed: false,
            },
        )
        .await
        .ctx(&format!("fetch_batches at {offset} (max {max_bytes})"))?;
    split(&f.chunks)
}

fn decode(batch: &Bytes) -> Result<Vec<StoredRecord>, String> {
    let mut out = Vec::new();
    kafka_batch::decode_records(batch, 0, |r| {
        out.push(r);
        true
    })
    .map_err(|e| format!("decoding a fetched batch: {e}"))?;
    Ok(out)
}

/// Same key, value, headers and timestamp.
fn same(got: &StoredRecord, want: &Record, ts: i64) -> bool {
    got.key == want.key
        && got.value == want.value
        && got.headers == want.headers
        && got.timestamp_ms == want.timestamp_ms.unwrap_or(ts)
}

/// **batch_append_assigns_offsets**
pub async fn batch_append_assigns_offsets(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "batch_append_assigns_offsets").await?;
    topic(&s.store, "t", 1).await?;
    append_values(&s.store, "t", 0, &["a", "b"]).await?;
    let mut sent = produced(&sample("p", 3, 1_000), None)?.to_vec();
    sent[0..8].copy_from_slice(&777i64.to_be_bytes()); // a producer's base offset is ignored
    let sent = Bytes::from(sent);
    let r = s
        .store
        .append_batch("t", 0, sent.clone(), TimestampType::CreateTime)
        .await
        .ctx("append_batch")?;
    ensure_eq!(
        (r.base_offset, r.last_offset),
        (2, 4),
        "offsets of the batch"
    );
    ensure!(!r.duplicate, "a new batch reported duplicate = true");
    let r = append_values(&s.store, "t", 0, &["z"]).await?;
    ensure_eq!(r.base_offset, 5, "record append after the batch");
    let got = batches_at(&s.store, "t", 2, 1 << 20, true).await?;
    let first = got.first().ok_or("fetch_batches at 2 returned nothing")?;
    let h = header(first)?;
    ensure_eq!(
        (h.base_offset, h.leader_epoch, h.record_count),
        (2, 0, 3),
        "stored base offset, leader epoch and record count"
    );
    ensure_eq!(first.len(), sent.len(), "stored batch length");
    ensure!(
        first[17..] == sent[17..],
        "the stored batch differs from the sent one after the leader epoch"
    );
    ensure_eq!(
        kafka_crc(&first[21..]),
        h.crc,
        "the producer's CRC is still valid"
    );
    let recs = fetch_all(&s.store, "t", 0, 0).await?;
    ensure_eq!(
        values(&recs),
        vec![
            "a",
            "b",
            "p-v0-",
            "p-v1-xxxxxxx",
            "p-v2-xxxxxxxxxxxxxx",
            "z"
        ],
        "values through the record path"
    );
    s.finish().await.ctx("close")
}

/// **invalid_batch_is_rejected**
pub async fn invalid_batch_is_rejected(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "invalid_batch_is_rejected").await?;
    let config = TopicConfig {
        max_record_bytes: 64,
        ..TopicConfig::with_partitions(1)
    };
    s.store
        .create_topic("t", config)
        .await
        .ctx("create_topic")?;
    append_values(&s.store, "t", 0, &["first"]).await?;
    let good = produced(&sample("g", 3, 1_000), None)?;
    let n = good.len();
    let mut flipped = good.to_vec();
    flipped[n - 2] ^= 0x10;
    let mut trailing = good.to_vec();
    trailing.push(0);
    let mut magic1 = good.to_vec();
    magic1[16] = 1;
    let corrupt: Vec<(&str, Bytes)> = vec![
        ("a flipped bit", Bytes::from(flipped)),
        ("a truncated batch", good.slice(..n - 1)),
        ("a trailing byte", Bytes::from(trailing)),
        ("a header alone", good.slice(..61)),
        ("nothing", Bytes::new()),
    ];
    for (what, b) in corrupt {
        ensure_err!(
            s.store
                .append_batch("t", 0, b, TimestampType::CreateTime)
                .await,
            StoreError::CorruptBatch(_),
            "{what}"
        );
    }
    let invalid: Vec<(&str, Bytes)> = vec![
        ("magic 1", Bytes::from(magic1)),
        ("count 2 of 3", resigned(&good, 57, &2i32.to_be_bytes())),
        ("count 0", resigned(&good, 57, &0i32.to_be_bytes())),
        (
            "last offset delta 5",
            resigned(&good, 23, &5i32.to_be_bytes()),
        ),
        (
            "a transactional batch",
            resigned(&good, 21, &0x10i16.to_be_bytes()),
        ),
        (
            "a control batch",
            resigned(&good, 21, &0x20i16.to_be_bytes()),
        ),
        (
            "attribute bit 7",
            resigned(&good, 21, &0x80i16.to_be_bytes()),
        ),
    ];
    for (what, b) in invalid {
        ensure_err!(
            s.store
                .append_batch("t", 0, b, TimestampType::CreateTime)
                .await,
            StoreError::InvalidBatch(_),
            "{what}"
        );
    }
    let mut big = sample("big", 2, 1_000);
    big[1].value = Some(Bytes::from(vec![7u8; 65]));
    ensure_err!(
        s.store
            .append_batch("t", 0, produced(&big, None)?, TimestampType::CreateTime)
            .await,
        StoreError::RecordTooLarge { .. },
        "a record over max_record_bytes"
    );
    ensure_err!(
        s.store
            .append_batch(
                "t",
                0,
                gzipped(&produced(&big, None)?)?,
                TimestampType::CreateTime
            )
            .await,
        StoreError::RecordTooLarge { .. },
        "a compressed record over max_record_bytes"
    );
    let off = s.store.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        off.high_watermark,
        1,
        "high watermark after refused batches"
    );
    let r = s
        .store
        .append_batch("t", 0, good, TimestampType::CreateTime)
        .await
        .ctx("append_batch of the good batch")?;
    ensure_eq!(
        r.base_offset,
        1,
        "offset of a good batch after refused ones"
    );
    ensure_eq!(
        values(&fetch_all(&s.store, "t", 0, 0).await?),
        vec!["first", "g-v0-", "g-v1-xxxxxxx", "g-v2-xxxxxxxxxxxxxx"],
        "nothing of a refused batch is stored"
    );
    s.finish().await.ctx("close")
}

/// **batches_come_back_as_stored**
pub async fn batches_come_back_as_stored(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "batches_come_back_as_stored").await?;
    topic(&s.store, "t", 1).await?;
    let plain = produced(&sample("a", 4, 5_000), None)?;
    let packed = gzipped(&produced(&sample("b", 50, 6_000), None)?)?;
    let mut sent = Vec::new();
    for b in [&plain, &packed, &plain] {
        let r = s
            .store
            .append_batch("t", 0, b.clone(), TimestampType::CreateTime)
            .await
            .ctx("append_batch")?;
        sent.push((r.base_offset, b.clone()));
    }
    for round in ["before reopen", "after reopen"] {
        let got = batches_at(&s.store, "t", 0, 1 << 20, true).await?;
        ensure_eq!(got.len(), 3, "batches fetched {round}");
        for (g, (base, want)) in got.iter().zip(&sent) {
            let h = header(g)?;
            ensure_eq!(h.base_offset, *base, "base offset {round}");
            ensure_eq!(g.len(), want.len(), "length of the batch at {base} {round}");
            ensure!(
                g[17..] == want[17..],
                "the batch at {base} came back changed {round}"
            );
            ensure_eq!(kafka_crc(&g[21..]), h.crc, "CRC of the batch at {base}");
        }
        ensure_eq!(
            header(&got[1])?.compression(),
            Compression::Gzip,
            "the compressed batch stays compressed {round}"
        );
        s.reopen().await.ctx("reopen")?;
    }
    s.finish().await.ctx("close")
}

/// **batch_fetch_respects_limits**
pub async fn batch_fetch_respects_limits(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "batch_fetch_respects_limits").await?;
    topic(&s.store, "t", 1).await?;
    // Five batches of 1, 3, 2, 4 and 1 records: offsets 0, 1-3, 4-5, 6-9, 10.
    for (i, n) in [1usize, 3, 2, 4, 1].into_iter().enumerate() {
        if i % 2 == 0 {
            append(&s.store, "t", 0, sample(&format!("r{i}"), n, 100)).await?;
        } else {
            s.store
                .append_batch(
                    "t",
                    0,
                    produced(&sample(&format!("b{i}"), n, 100), None)?,
                    TimestampType::CreateTime,
                )
                .await
                .ctx("append_batch")?;
        }
    }
    let all = batches_at(&s.store, "t", 0, 1 << 20, true).await?;
    let bases: Vec<i64> = all
        .iter()
        .map(|b| header(b).map(|h| h.base_offset))
        .collect::<Result<_, _>>()?;
    ensure_eq!(bases, vec![0, 1, 4, 6, 10], "base offsets of all batches");
    let len = |i: usize| all[i].len();
    let from5 = batches_at(&s.store, "t", 5, 1 << 20, true).await?;
    ensure_eq!(
        from5
            .first()
            .map(|b| header(b).map(|h| h.base_offset))
            .transpose()?,
        Some(4),
        "the first batch of a fetch at 5 is the one holding 5"
    );
    ensure_eq!(from5.len(), 3, "batches from offset 5");
    let two = batches_at(&s.store, "t", 1, len(1) + len(2), false).await?;
    ensure_eq!(two.len(), 2, "batches within exactly two batches' bytes");
    let one = batches_at(&s.store, "t", 1, len(1) + len(2) - 1, false).await?;
    ensure_eq!(one.len(), 1, "batches within one byte less");
    let alone = batches_at(&s.store, "t", 1, 1, true).await?;
    ensure_eq!(alone.len(), 1, "a first batch over max_bytes with min_one");
    ensure_eq!(alone[0], all[1], "that batch");
    let none = batches_at(&s.store, "t", 1, 1, false).await?;
    ensure!(
        none.is_empty(),
        "a first batch over max_bytes without min_one came back"
    );
    let at_hw = batches_at(&s.store, "t", 11, 1 << 20, true).await?;
    ensure!(
        at_hw.is_empty(),
        "fetch_batches at the high watermark returned batches"
    );
    let limits = BatchLimits {
        max_bytes: 1 << 20,
        min_one: true,
        read_committed: false,
    };
    ensure_err!(
        s.store.fetch_batches("t", 0, 12, limits).await,
        StoreError::OffsetOutOfRange { .. },
        "fetch_batches above the high watermark"
    );
    s.store
        .delete_records("t", 0, 5)
        .await
        .ctx("delete_records")?;
    ensure_err!(
        s.store.fetch_batches("t", 0, 4, limits).await,
        StoreError::OffsetOutOfRange { .. },
        "fetch_batches below the log start"
    );
    let f = s
        .store
        .fetch_batches("t", 0, 5, limits)
        .await
        .ctx("fetch_batches at the log start")?;
    ensure_eq!(f.log_start_offset, 5, "log start reported");
    ensure_eq!(f.high_watermark, 11, "high watermark reported");
    let got = split(&f.chunks)?;
    ensure_eq!(
        got.first()
            .map(|b| header(b).map(|h| h.base_offset))
            .transpose()?,
        Some(4),
        "a fetch at the log start inside a batch starts with that batch"
    );
    ensure_err!(
        s.store.fetch_batches("t", 1, 0, limits).await,
        StoreError::UnknownTopic(_),
        "fetch_batches of a missing partition"
    );
    s.finish().await.ctx("close")
}

/// **records_and_batches_agree**
pub async fn records_and_batches_agree(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "records_and_batches_agree").await?;
    topic(&s.store, "t", 1).await?;
    s.clock.set(5_000);
    // Record path in, batch path out.
    let mut by_record = sample("r", 5, 10_000);
    by_record[3].timestamp_ms = None;
    by_record[4].key = Some(Bytes::new());
    append(&s.store, "t", 0, by_record.clone()).await?;
    let got = batches_at(&s.store, "t", 0, 1 << 20, true).await?;
    ensure_eq!(got.len(), 1, "batches of one record append");
    let h = header(&got[0])?;
    ensure_eq!(
        kafka_crc(&got[0][21..]),
        h.crc,
        "CRC of a record append's batch"
    );
    ensure_eq!(h.magic, 2, "magic of a record append's batch");
    let decoded = decode(&got[0])?;
    ensure_eq!(decoded.len(), 5, "records in that batch");
    for (i, (g, w)) in decoded.iter().zip(&by_record).enumerate() {
        ensure_eq!(g.offset, i as i64, "offset of record {i} in the batch");
        ensure!(
            same(g, w, 5_000),
            "record {i} through the batch path: {g:?} vs {w:?}"
        );
    }
    // Batch path in (plain and compressed), record path out.
    let plain = sample("p", 3, 20_000);
    let packed = sample("z", 40, 30_000);
    s.store
        .append_batch("t", 0, produced(&plain, None)?, TimestampType::CreateTime)
        .await
        .ctx("append_batch plain")?;
    s.store
        .append_batch(
            "t",
            0,
            gzipped(&produced(&packed, None)?)?,
            TimestampType::CreateTime,
        )
        .await
        .ctx("append_batch gzip")?;
    let recs = fetch_all(&s.store, "t", 0, 0).await?;
    ensure_eq!(recs.len(), 48, "records through the record path");
    let want: Vec<&Record> = by_record.iter().chain(&plain).chain(&packed).collect();
    for (i, (g, w)) in recs.iter().zip(&want).enumerate() {
        ensure!(
            same(g, w, 5_000),
            "record {i} through the record path: {g:?} vs {w:?}"
        );
    }
    // From the middle of the compressed batch.
    let mid = s
        .store
        .fetch(
            "t",
            0,
            20,
            broker_api::FetchLimits {
                max_records: 2,
                max_bytes: 1 << 20,
            },
        )
        .await
        .ctx("fetch in the middle of a compressed batch")?;
    ensure_eq!(
        mid.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![20, 21],
        "offsets fetched from the middle of a compressed batch"
    );
    // Timestamp lookups see the batch path's records.
    let hit = s
        .store
        .offset_for_timestamp("t", 0, 30_000 + 10 * 3)
        .await
        .ctx("offset_for_timestamp")?;
    ensure_eq!(
        hit.map(|h| (h.offset, h.timestamp_ms)),
        Some((18, 30_030)),
        "offset_for_timestamp inside the compressed batch"
    );
    let max = s
        .store
        .max_timestamp_offset("t", 0)
        .await
        .ctx("max_timestamp_offset")?;
    ensure_eq!(
        max.map(|h| (h.offset, h.timestamp_ms)),
        Some((47, 30_000 + 39 * 3)),
        "max_timestamp_offset in the compressed batch"
    );
    // Leases see them.
    let leases = lease(&s.store, "t", 0, "g", 100, 10_000).await?;
    ensure_eq!(leases.len(), 48, "records leased");
    ensure!(
        same(&leases[30].record, want[30], 5_000),
        "leased record 30: {:?}",
        leases[30].record
    );
    // Delete-records and retention count them like records.
    s.store
        .delete_records("t", 0, 20)
        .await
        .ctx("delete_records")?;
    let after = fetch_all(&s.store, "t", 0, 20).await?;
    ensure_eq!(after.len(), 28, "records from the new log start");
    s.finish().await.ctx("close")
}

/// **log_append_time_is_stamped**
pub async fn log_append_time_is_stamped(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "log_append_time_is_stamped").await?;
    topic(&s.store, "t", 1).await?;
    s.clock.set(777_000);
    let recs = sample("l", 4, 1_000);
    let r = s
        .store
        .append_batch("t", 0, produced(&recs, None)?, TimestampType::LogAppendTime)
        .await
        .ctx("append_batch LogAppendTime")?;
    ensure_eq!(r.append_time_ms, 777_000, "append time reported");
    let packed = gzipped(&produced(&recs, None)?)?;
    s.clock.set(778_000);
    s.store
        .append_batch("t", 0, packed, TimestampType::LogAppendTime)
        .await
        .ctx("append_batch LogAppendTime gzip")?;
    // A producer's max timestamp that is wrong, on a CreateTime append.
    let lying = resigned(&produced(&recs, None)?, 35, &5i64.to_be_bytes());
    s.store
        .append_batch("t", 0, lying, TimestampType::CreateTime)
        .await
        .ctx("append_batch with a wrong max timestamp")?;
    let got = batches_at(&s.store, "t", 0, 1 << 20, true).await?;
    ensure_eq!(got.len(), 3, "stored batches");
    for (i, want) in [(0usize, 777_000i64), (1, 778_000)] {
        let h = header(&got[i])?;
        ensure!(h.log_append_time(), "batch {i} is not LogAppendTime");
        ensure_eq!(h.max_timestamp, want, "max timestamp of batch {i}");
        ensure_eq!(
            kafka_crc(&got[i][21..]),
            h.crc,
            "recomputed CRC of batch {i}"
        );
    }
    let h = header(&got[2])?;
    ensure!(
        !h.log_append_time(),
        "a CreateTime append became LogAppendTime"
    );
    ensure_eq!(h.max_timestamp, 1_009, "corrected max timestamp");
    ensure_eq!(kafka_crc(&got[2][21..]), h.crc, "CRC after the correction");
    let all = fetch_all(&s.store, "t", 0, 0).await?;
    let ts: Vec<i64> = all.iter().map(|r| r.timestamp_ms).collect();
    ensure_eq!(
        ts,
        vec![
            777_000, 777_000, 777_000, 777_000, 778_000, 778_000, 778_000, 778_000, 1_000, 1_003,
            1_006, 1_009
        ],
        "record timestamps"
    );
    s.finish().await.ctx("close")
}

/// **idempotent_batches_are_checked**
pub async fn idempotent_batches_are_checked(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "idempotent_batches_are_checked").await?;
    topic(&s.store, "t", 1).await?;
    let pid = s.store.init_producer_id().await.ctx("init_producer_id")?;
    let p = |epoch: i16, seq: i32| ProducerBatch {
        producer_id: pid.producer_id,
        epoch,
        first_sequence: seq,
    };
    let send = |b: Bytes| s.store.append_batch("t", 0, b, TimestampType::CreateTime);
    ensure_err!(
        send(produced(&sample("a", 2, 1), Some(p(0, 3)))?).await,
        StoreError::OutOfOrderSequence { .. },
        "a first batch not at sequence 0"
    );
    let first = send(produced(&sample("a", 3, 1), Some(p(0, 0)))?)
        .await
        .ctx("first idempotent batch")?;
    ensure_eq!(
        (first.base_offset, first.last_offset),
        (0, 2),
        "first batch offsets"
    );
    let again = send(produced(&sample("a", 3, 1), Some(p(0, 0)))?)
        .await
        .ctx("retry of the first batch")?;
    ensure!(again.duplicate, "a retry was not reported as duplicate");
    ensure_eq!(
        (again.base_offset, again.last_offset),
        (0, 2),
        "a retry's offsets"
    );
    ensure_err!(
        send(produced(&sample("b", 1, 1), Some(p(0, 4)))?).await,
        StoreError::OutOfOrderSequence { .. },
        "a sequence gap"
    );
    // The record path shares the producer state.
    let r = s
        .store
        .append(
            "t",
            0,
            AppendBatch {
                records: sample("c", 2, 1),
                producer: Some(p(0, 3)),
            },
        )
        .await
        .ctx("record append continuing the sequence")?;
    ensure_eq!(r.base_offset, 3, "record append offsets");
    let b = send(produced(&sample("d", 1, 1), Some(p(0, 5)))?)
        .await
        .ctx("batch continuing after the record append")?;
    ensure_eq!(b.base_offset, 5, "offset of the next batch");
    send(produced(&sample("e", 1, 1), Some(p(1, 0)))?)
        .await
        .ctx("a newer epoch from sequence 0")?;
    ensure_err!(
        send(produced(&sample("f", 1, 1), Some(p(0, 6)))?).await,
        StoreError::ProducerFenced { .. },
        "an older epoch"
    );
    let off = s.store.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(off.high_watermark, 7, "records stored");
    s.finish().await.ctx("close")
}
