//! Checks of the Transactions rules: transactional batches, markers, the last stable offset,
//! read-committed fetches, control records on the record paths, and their durability.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AbortedTxn, BatchLimits, FetchLimits, LeaseGroupConfig, ProducerBatch, Record, Store,
    StoreError, StoreResult, TimestampType, TxnMarker,
};
use bytes::Bytes;
use kafka_batch::BatchHeader;

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// A transactional batch of `n` records as a producer sends it.
fn txn_batch(producer_id: i64, epoch: i16, first_sequence: i32, n: usize, tag: &str) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record::from_value(format!("{tag}-{i}")))
        .collect();
    let producer = ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
    };
    transactional_batch(producer, &records)
}

async fn send_txn(
    st: &Arc<dyn Store>,
    partition: i32,
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    n: usize,
) -> StoreResult<i64> {
    let tag = format!("p{producer_id}e{epoch}s{first_sequence}");
    st.append_batch(
        "t",
        partition,
        txn_batch(producer_id, epoch, first_sequence, n, &tag),
        TimestampType::CreateTime,
    )
    .await
    .map(|r| r.base_offset)
}

fn marker(producer_id: i64, epoch: i16, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch: epoch,
        commit,
        coordinator_epoch: 5,
    }
}

async fn lso(st: &Arc<dyn Store>, partition: i32) -> Result<i64, String> {
    Ok(st
        .partition_offsets("t", partition)
        .await
        .ctx("partition_offsets")?
        .last_stable_offset)
}

const ALL: BatchLimits = BatchLimits {
    max_bytes: 1 << 20,
    min_one: true,
    read_committed: false,
};
const COMMITTED: BatchLimits = BatchLimits {
    max_bytes: 1 << 20,
    min_one: true,
    read_committed: true,
};

/// Base offsets of the batches of a fetch.
fn bases(chunks: &[Bytes]) -> Vec<i64> {
    let mut out = Vec::new();
    for c in chunks {
        let mut at = 0;
        while let Some(h) = BatchHeader::read(&c[at..]) {
            out.push(h.base_offset);
            at += h.total_len();
            if at >= c.len() {
                break;
            }
        }
    }
    out
}

/// **transactional_batches_open_transactions**
pub async fn transactional_batches_open_transactions(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "transactional_batches_open_transactions").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let p = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    append_values(st, "t", 0, &["plain"]).await?;
    let b = send_txn(st, 0, p, 0, 0, 2)
        .await
        .ctx("first transactional batch")?;
    ensure_eq!(b, 1, "offset of the first transactional batch");
    ensure_eq!(
        lso(st, 0).await?,
        1,
        "last stable offset with the transaction open"
    );
    // A second batch of the same transaction does not move its start; a retry is a retry.
    let b2 = send_txn(st, 0, p, 0, 2, 1).await.ctx("second batch")?;
    ensure_eq!(b2, 3, "offset of the second batch");
    let again = st
        .append_batch(
            "t",
            0,
            txn_batch(p, 0, 2, 1, &format!("p{p}e0s2")),
            TimestampType::CreateTime,
        )
        .await
        .ctx("retry of the second batch")?;
    ensure!(
        again.duplicate && again.base_offset == 3,
        "a retry must be a duplicate at 3: {again:?}"
    );
    ensure_eq!(
        lso(st, 0).await?,
        1,
        "last stable offset after more batches"
    );
    // The idempotent rules hold for transactional batches.
    ensure_err!(
        send_txn(st, 0, p, 0, 9, 1).await,
        StoreError::OutOfOrderSequence { .. },
        "a transactional batch out of sequence"
    );
    // A transactional batch without a producer id, and a control batch, are refused.
    let mut no_pid = Vec::new();
    kafka_batch::encode_records(&mut no_pid, &[Record::from_value("x")], 1_000, None)
        .map_err(|e| e.to_string())?;
    kafka_batch::set_transactional(&mut no_pid);
    ensure_err!(
        st.append_batch("t", 0, Bytes::from(no_pid), TimestampType::CreateTime)
            .await,
        StoreError::InvalidBatch(_),
        "a transactional batch without a producer id"
    );
    let control = kafka_batch::marker_batch(&marker(p, 0, true), 1_000);
    ensure_err!(
        st.append_batch("t", 0, Bytes::from(control), TimestampType::CreateTime)
            .await,
        StoreError::InvalidBatch(_),
        "a control batch from a producer"
    );
    ensure_eq!(
        st.partition_offsets("t", 0)
            .await
            .ctx("offsets")?
            .high_watermark,
        4,
        "high watermark after the refusals"
    );
    s.finish().await.ctx("close")
}

/// **last_stable_offset_is_first_open**
pub async fn last_stable_offset_is_first_open(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "last_stable_offset_is_first_open").await?;
    let st = &s.store;
    topic(st, "t", 2).await?;
    ensure_eq!(
        lso(st, 0).await?,
        0,
        "last stable offset of an empty partition"
    );
    append_values(st, "t", 0, &["a", "b"]).await?;
    ensure_eq!(lso(st, 0).await?, 2, "no transaction: the high watermark");
    let p1 = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    let p2 = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    send_txn(st, 0, p1, 0, 0, 2).await.ctx("p1 at 2")?;
    send_txn(st, 0, p2, 0, 0, 2).await.ctx("p2 at 4")?;
    append_values(st, "t", 0, &["plain"]).await?;
    ensure_eq!(lso(st, 0).await?, 2, "two open: the first one's start");
    st.write_txn_marker("t", 0, marker(p1, 0, true))
        .await
        .ctx("commit p1")?;
    ensure_eq!(lso(st, 0).await?, 4, "p1 committed: p2's start");
    let f = st
        .fetch_batches("t", 0, 0, ALL)
        .await
        .ctx("fetch_batches")?;
    ensure_eq!(f.last_stable_offset, 4, "the fetch's last stable offset");
    st.write_txn_marker("t", 0, marker(p2, 0, false))
        .await
        .ctx("abort p2")?;
    ensure_eq!(lso(st, 0).await?, 9, "none open: the high watermark");
    ensure_eq!(lso(st, 1).await?, 0, "the other partition");
    // The log start bounds it from below.
    send_txn(st, 0, p1, 0, 2, 1).await.ctx("p1 again at 9")?;
    append_values(st, "t", 0, &["x", "y"]).await?;
    st.delete_records("t", 0, 11).await.ctx("delete_records")?;
    ensure_eq!(
        lso(st, 0).await?,
        11,
        "an open transaction below the log start"
    );
    s.finish().await.ctx("close")
}

/// **markers_end_transactions**
pub async fn markers_end_transactions(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "markers_end_transactions").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let p = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    send_txn(st, 0, p, 0, 0, 3).await.ctx("batch")?;
    let at = st
        .write_txn_marker("t", 0, marker(p, 0, false))
        .await
        .ctx("abort")?;
    ensure_eq!(at, 3, "the marker's offset");
    let f = st
        .fetch_batches("t", 0, 3, ALL)
        .await
        .ctx("fetch the marker")?;
    let m = f.concat();
    let h = BatchHeader::read(&m).ok_or("no marker batch came back")?;
    ensure!(kafka_batch::crc_ok(&m), "the marker's CRC does not match");
    ensure!(
        h.is_control() && h.is_transactional(),
        "marker attributes {:#x}",
        h.attributes
    );
    ensure_eq!(
        (
            h.base_offset,
            h.record_count,
            h.producer_id,
            h.producer_epoch,
            h.base_sequence
        ),
        (3, 1, p, 0, -1),
        "marker header"
    );
    ensure_eq!(
        kafka_batch::marker_commits(&m),
        Some(false),
        "the marker's type"
    );
    ensure_eq!(h.total_len(), m.len(), "one batch");
    // A marker with nothing open is written and aborts nothing.
    let at = st
        .write_txn_marker("t", 0, marker(p, 0, true))
        .await
        .ctx("commit, nothing open")?;
    ensure_eq!(at, 4, "the second marker's offset");
    let f = st.fetch_batches("t", 0, 0, COMMITTED).await.ctx("fetch")?;
    ensure_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: p,
            first_offset: 0
        }],
        "aborted transactions"
    );
    ensure_eq!(
        kafka_batch::marker_commits(
            &st.fetch_batches("t", 0, 4, ALL)
                .await
                .ctx("fetch")?
                .concat()
        ),
        Some(true),
        "the second marker's type"
    );
    // A newer epoch becomes the producer's: sequences start over, the old epoch is fenced.
    st.write_txn_marker("t", 0, marker(p, 1, false))
        .await
        .ctx("abort at epoch 1")?;
    ensure_err!(
        send_txn(st, 0, p, 0, 3, 1).await,
        StoreError::ProducerFenced { .. },
        "a batch of the old epoch after a newer marker"
    );
    ensure_err!(
        st.write_txn_marker("t", 0, marker(p, 0, true)).await,
        StoreError::ProducerFenced { .. },
        "a marker of an older epoch"
    );
    ensure_eq!(
        send_txn(st, 0, p, 1, 0, 1)
            .await
            .ctx("epoch 1 from sequence 0")?,
        6,
        "offset"
    );
    ensure_eq!(
        st.partition_offsets("t", 0)
            .await
            .ctx("offsets")?
            .high_watermark,
        7,
        "fenced markers write nothing"
    );
    ensure_err!(
        st.write_txn_marker("nope", 0, marker(p, 1, true)).await,
        StoreError::UnknownTopic(_),
        "a marker to an unknown topic"
    );
    s.finish().await.ctx("close")
}

/// **read_committed_fetch_stops_at_last_stable**
pub async fn read_committed_fetch_stops_at_last_stable(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "read_committed_fetch_stops_at_last_stable").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let a = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    let b = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    append_values(st, "t", 0, &["p0"]).await?; // 0
    send_txn(st, 0, a, 0, 0, 2).await.ctx("a")?; // 1-2
    send_txn(st, 0, b, 0, 0, 1).await.ctx("b")?; // 3
    st.write_txn_marker("t", 0, marker(a, 0, false))
        .await
        .ctx("abort a")?; // 4
    append_values(st, "t", 0, &["p5"]).await?; // 5
    send_txn(st, 0, a, 0, 2, 1).await.ctx("a again")?; // 6
                                                       // b open since 3: read committed stops there.
    let f = st
        .fetch_batches("t", 0, 0, COMMITTED)
        .await
        .ctx("fetch at 0")?;
    ensure_eq!(
        bases(&f.chunks),
        vec![0, 1],
        "batches below the last stable offset"
    );
    ensure_eq!(f.last_stable_offset, 3, "last stable offset");
    ensure_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: a,
            first_offset: 1
        }],
        "a's aborted transaction meets the batches"
    );
    let f = st
        .fetch_batches("t", 0, 3, COMMITTED)
        .await
        .ctx("fetch at 3")?;
    ensure!(
        f.chunks.is_empty() || f.is_empty(),
        "nothing at the last stable offset: {:?}",
        bases(&f.chunks)
    );
    ensure!(
        f.aborted.is_empty(),
        "no batches, no aborted list: {:?}",
        f.aborted
    );
    let f = st
        .fetch_batches("t", 0, 7, COMMITTED)
        .await
        .ctx("fetch at the high watermark")?;
    ensure!(f.is_empty(), "nothing at the high watermark");
    let u = st
        .fetch_batches("t", 0, 0, ALL)
        .await
        .ctx("read uncommitted")?;
    ensure_eq!(
        bases(&u.chunks),
        vec![0, 1, 3, 4, 5, 6],
        "read uncommitted sees all"
    );
    ensure!(
        u.aborted.is_empty(),
        "read uncommitted lists no aborted: {:?}",
        u.aborted
    );
    st.write_txn_marker("t", 0, marker(b, 0, false))
        .await
        .ctx("abort b")?; // 7
    st.write_txn_marker("t", 0, marker(a, 0, true))
        .await
        .ctx("commit a")?; // 8
    let f = st
        .fetch_batches("t", 0, 0, COMMITTED)
        .await
        .ctx("fetch all")?;
    ensure_eq!(
        bases(&f.chunks),
        vec![0, 1, 3, 4, 5, 6, 7, 8],
        "everything once none is open"
    );
    ensure_eq!(
        f.aborted,
        vec![
            AbortedTxn {
                producer_id: a,
                first_offset: 1
            },
            AbortedTxn {
                producer_id: b,
                first_offset: 3
            }
        ],
        "both aborted transactions, by first offset"
    );
    // From 5 on, a's aborted range (1..4) ends before the fetch; b's (3..7) meets it.
    let f = st
        .fetch_batches("t", 0, 5, COMMITTED)
        .await
        .ctx("fetch from 5")?;
    ensure_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: b,
            first_offset: 3
        }],
        "aborted transactions meeting [5, 8]"
    );
    // A small fetch of batch 0 alone meets neither.
    let one = BatchLimits {
        max_bytes: 1,
        min_one: true,
        read_committed: true,
    };
    let f = st
        .fetch_batches("t", 0, 0, one)
        .await
        .ctx("fetch one batch")?;
    ensure_eq!(bases(&f.chunks), vec![0], "one batch");
    ensure!(
        f.aborted.is_empty(),
        "batch 0 meets no aborted transaction: {:?}",
        f.aborted
    );
    s.finish().await.ctx("close")
}

/// **control_records_are_not_records**
pub async fn control_records_are_not_records(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "control_records_are_not_records").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let p = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    send_txn(st, 0, p, 0, 0, 2).await.ctx("batch")?; // 0-1
    st.write_txn_marker("t", 0, marker(p, 0, true))
        .await
        .ctx("commit")?; // 2
    append_values(st, "t", 0, &["after"]).await?; // 3
    let f = st
        .fetch("t", 0, 0, FetchLimits::default())
        .await
        .ctx("fetch")?;
    let offsets: Vec<i64> = f.records.iter().map(|r| r.offset).collect();
    ensure_eq!(offsets, vec![0, 1, 3], "record fetch skips the marker");
    let f = st
        .fetch("t", 0, 2, FetchLimits::default())
        .await
        .ctx("fetch at the marker")?;
    ensure_eq!(
        f.records.first().map(|r| (r.offset, r.value.clone())),
        Some((3, Some(Bytes::from_static(b"after")))),
        "a fetch from the marker starts at the next record"
    );
    let m = st
        .max_timestamp_offset("t", 0)
        .await
        .ctx("max_timestamp_offset")?
        .map(|o| o.offset);
    ensure!(m != Some(2), "max_timestamp_offset names the marker");
    let leases = st
        .lease("t", 0, "g", 10, Duration::from_secs(30))
        .await
        .ctx("lease")?;
    let leased: Vec<i64> = leases.iter().map(|l| l.record.offset).collect();
    ensure_eq!(leased, vec![0, 1, 3], "leases skip the marker");
    let c = st.lease_counts("t", 0, "g").await.ctx("lease_counts")?;
    ensure_eq!(
        (c.leased, c.done, c.available, c.delayed),
        (3, 1, 0, 0),
        "counts (marker done)"
    );
    s.finish().await.ctx("close")
}

/// **leases_read_committed**
pub async fn leases_read_committed(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "leases_read_committed").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let a = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    let b = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    append_values(st, "t", 0, &["p0"]).await?; // 0
    send_txn(st, 0, a, 0, 0, 2).await.ctx("a")?; // 1-2 (will abort)
    send_txn(st, 0, b, 0, 0, 1).await.ctx("b")?; // 3 (will commit)
    append_values(st, "t", 0, &["p4"]).await?; // 4
    let vis = Duration::from_secs(30);
    let l = st
        .lease("t", 0, "g", 10, vis)
        .await
        .ctx("lease with a open")?;
    let got: Vec<i64> = l.iter().map(|l| l.record.offset).collect();
    ensure_eq!(
        got,
        vec![0],
        "nothing at or past the last stable offset (1)"
    );
    let c = st.lease_counts("t", 0, "g").await.ctx("lease_counts")?;
    ensure_eq!(
        (c.leased, c.delayed),
        (1, 4),
        "records past the last stable offset are delayed"
    );
    st.write_txn_marker("t", 0, marker(a, 0, false))
        .await
        .ctx("abort a")?; // 5
    st.write_txn_marker("t", 0, marker(b, 0, true))
        .await
        .ctx("commit b")?; // 6
    let l = st
        .lease("t", 0, "g", 10, vis)
        .await
        .ctx("lease after both ended")?;
    let got: Vec<i64> = l.iter().map(|l| l.record.offset).collect();
    ensure_eq!(
        got,
        vec![3, 4],
        "aborted records and markers are never leased"
    );
    let c = st.lease_counts("t", 0, "g").await.ctx("lease_counts")?;
    ensure_eq!(
        (c.leased, c.done, c.available, c.delayed),
        (3, 4, 0, 0),
        "aborted and control records are done"
    );
    // A read-uncommitted group leases aborted and open transactions' records too.
    let c = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    send_txn(st, 0, c, 0, 0, 1).await.ctx("c, left open")?; // 7
    let uncommitted = LeaseGroupConfig {
        read_uncommitted: true,
        ..LeaseGroupConfig::default()
    };
    st.set_lease_group("t", "u", uncommitted.clone())
        .await
        .ctx("set_lease_group(u)")?;
    let l = st
        .lease("t", 0, "u", 10, vis)
        .await
        .ctx("lease, read uncommitted")?;
    let got: Vec<i64> = l.iter().map(|l| l.record.offset).collect();
    ensure_eq!(
        got,
        vec![0, 1, 2, 3, 4, 7],
        "read uncommitted skips only the markers"
    );
    let c = st.lease_counts("t", 0, "u").await.ctx("lease_counts(u)")?;
    ensure_eq!(
        (c.leased, c.done, c.delayed),
        (6, 2, 0),
        "read-uncommitted counts"
    );
    let l = st
        .lease("t", 0, "g", 10, vis)
        .await
        .ctx("lease g with c open")?;
    ensure!(
        l.is_empty(),
        "the read-committed group still stops at c: {l:?}"
    );
    let mut s = s;
    s.reopen().await.ctx("reopen")?;
    let groups = s.store.lease_groups("t").await.ctx("lease_groups")?;
    ensure_eq!(
        groups.get("u"),
        Some(&uncommitted),
        "the read-uncommitted config after reopen"
    );
    s.finish().await.ctx("close")
}

/// **transaction_state_survives_reopen**
pub async fn transaction_state_survives_reopen(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "transaction_state_survives_reopen").await?;
    topic(&s.store, "t", 1).await?;
    let a = s
        .store
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    let b = s
        .store
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    send_txn(&s.store, 0, a, 0, 0, 2).await.ctx("a")?; // 0-1
    send_txn(&s.store, 0, b, 0, 0, 1).await.ctx("b")?; // 2
    s.store
        .write_txn_marker("t", 0, marker(a, 2, false))
        .await
        .ctx("abort a at epoch 2")?; // 3
    s.reopen().await.ctx("reopen")?;
    let st = s.store.clone();
    ensure_eq!(lso(&st, 0).await?, 2, "b is still open after reopen");
    ensure_err!(
        send_txn(&st, 0, a, 0, 2, 1).await,
        StoreError::ProducerFenced { .. },
        "a's epoch 0 fenced after reopen"
    );
    st.write_txn_marker("t", 0, marker(b, 0, true))
        .await
        .ctx("commit b")?; // 4
    let f = st.fetch_batches("t", 0, 0, COMMITTED).await.ctx("fetch")?;
    ensure_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: a,
            first_offset: 0
        }],
        "the aborted list after reopen"
    );
    ensure_eq!(
        send_txn(&st, 0, a, 2, 0, 1).await.ctx("a at epoch 2")?,
        5,
        "offset"
    );
    s.reopen().await.ctx("second reopen")?;
    ensure_eq!(
        lso(&s.store, 0).await?,
        5,
        "a's new transaction is open after reopen"
    );
    let f = s
        .store
        .fetch_batches("t", 0, 0, COMMITTED)
        .await
        .ctx("fetch")?;
    ensure_eq!(
        bases(&f.chunks),
        vec![0, 2, 3, 4],
        "read committed after the second reopen"
    );
    ensure_eq!(f.aborted.len(), 1, "aborted list after the second reopen");
    s.finish().await.ctx("close")
}

/// **producer_states_are_described**
pub async fn producer_states_are_described(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "producer_states_are_described").await?;
    let st = &s.store;
    topic(st, "t", 2).await?;
    ensure!(
        st.producer_states("t", 0)
            .await
            .ctx("producer_states")?
            .is_empty(),
        "a fresh partition has no producers"
    );
    let a = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    let b = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    s.clock.set(10_000);
    send_txn(st, 0, a, 0, 0, 3).await.ctx("a")?; // 0-2
    s.clock.set(20_000);
    super::producer::send(st, 0, b, 0, 0, 2)
        .await
        .ctx("b idempotent")?; // 3-4
    let got = st.producer_states("t", 0).await.ctx("producer_states")?;
    let got: Vec<_> = got
        .iter()
        .map(|p| {
            (
                p.producer_id,
                p.epoch,
                p.last_sequence,
                p.last_timestamp_ms,
                p.txn_start_offset,
            )
        })
        .collect();
    ensure_eq!(
        got,
        vec![(a, 0, 2, 10_000, Some(0)), (b, 0, 1, 20_000, None)],
        "producers of partition 0"
    );
    s.clock.set(30_000);
    st.write_txn_marker("t", 0, marker(a, 1, true))
        .await
        .ctx("commit at epoch 1")?;
    let got = st.producer_states("t", 0).await.ctx("producer_states")?;
    let pa = got
        .iter()
        .find(|p| p.producer_id == a)
        .ok_or("a is not listed")?;
    ensure_eq!(
        (
            pa.epoch,
            pa.last_sequence,
            pa.last_timestamp_ms,
            pa.txn_start_offset
        ),
        (1, -1, 30_000, None),
        "a after a marker of a newer epoch"
    );
    ensure!(
        st.producer_states("t", 1)
            .await
            .ctx("producer_states p1")?
            .is_empty(),
        "partition 1 has no producers"
    );
    ensure_err!(
        st.producer_states("nope", 0).await,
        StoreError::UnknownTopic(_),
        "an unknown topic"
    );
    s.finish().await.ctx("close")
}
