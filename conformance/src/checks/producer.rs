//! Checks of the Idempotent producers rules.

use std::collections::HashSet;
use std::sync::Arc;

use broker_api::{
    AppendBatch, AppendResult, ProducerBatch, Record, Store, StoreError, StoreResult,
};

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// Appends `n` records as an idempotent batch.
pub(crate) async fn send(
    store: &Arc<dyn Store>,
    partition: i32,
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    n: usize,
) -> StoreResult<AppendResult> {
    let records = (0..n)
        .map(|k| Record::from_value(format!("{producer_id}/{epoch}/{first_sequence}/{k}")))
        .collect();
    store
        .append(
            "t",
            partition,
            AppendBatch {
                records,
                producer: Some(ProducerBatch {
                    producer_id,
                    epoch,
                    first_sequence,
                }),
            },
        )
        .await
}

async fn hwm(store: &Arc<dyn Store>, partition: i32) -> Result<i64, String> {
    Ok(store
        .partition_offsets("t", partition)
        .await
        .ctx("partition_offsets")?
        .high_watermark)
}

/// **producer_ids_are_unique**
pub async fn producer_ids_are_unique(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "producer_ids_are_unique").await?;
    let mut seen = HashSet::new();
    for round in 0..3 {
        for _ in 0..20 {
            let p = s.store.init_producer_id().await.ctx("init_producer_id")?;
            ensure_eq!(p.epoch, 0, "epoch of a fresh producer id");
            ensure!(
                seen.insert(p.producer_id),
                "producer id {} handed out twice (round {round}, after {} reopens)",
                p.producer_id,
                round
            );
        }
        s.reopen().await.ctx("reopen")?;
    }
    s.finish().await.ctx("close")
}

/// **idempotent_retry_is_not_duplicated**
pub async fn idempotent_retry_is_not_duplicated(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "idempotent_retry_is_not_duplicated").await?;
    let st = &s.store;
    topic(st, "t", 2).await?;
    let p = st.init_producer_id().await.ctx("init_producer_id")?;
    let id = p.producer_id;
    let r = send(st, 0, id, 0, 0, 2).await.ctx("batch seq 0")?;
    ensure_eq!(
        (r.base_offset, r.last_offset, r.duplicate),
        (0, 1, false),
        "batch seq 0..2"
    );
    let r = send(st, 0, id, 0, 2, 3).await.ctx("batch seq 2")?;
    ensure_eq!(
        (r.base_offset, r.last_offset, r.duplicate),
        (2, 4, false),
        "batch seq 2..5"
    );
    let r = send(st, 0, id, 0, 0, 2).await.ctx("retry of seq 0")?;
    ensure_eq!(
        (r.base_offset, r.last_offset, r.duplicate),
        (0, 1, true),
        "retry of batch seq 0"
    );
    let r = send(st, 0, id, 0, 2, 3).await.ctx("retry of seq 2")?;
    ensure_eq!(
        (r.base_offset, r.last_offset, r.duplicate),
        (2, 4, true),
        "retry of batch seq 2"
    );
    ensure_eq!(hwm(st, 0).await?, 5, "high watermark after retries");
    // Another producer and another partition have their own sequences.
    let q = st.init_producer_id().await.ctx("init_producer_id")?;
    let r = send(st, 0, q.producer_id, 0, 0, 2)
        .await
        .ctx("other producer seq 0")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (5, false),
        "other producer's first batch"
    );
    let r = send(st, 1, id, 0, 0, 2)
        .await
        .ctx("same producer on partition 1")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (0, false),
        "first batch on partition 1"
    );
    // Six more batches: the batch at seq 0 is no longer among the last five.
    for (i, seq) in (5..11).enumerate() {
        let r = send(st, 0, id, 0, seq, 1).await.ctx("batch")?;
        ensure_eq!(r.base_offset, 7 + i as i64, "offset of batch seq {seq}");
    }
    let r = send(st, 0, id, 0, 10, 1)
        .await
        .ctx("retry of the newest batch")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (12, true),
        "retry of the newest batch"
    );
    let r = send(st, 0, id, 0, 6, 1)
        .await
        .ctx("retry of the fifth newest batch")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (8, true),
        "retry of the fifth newest batch"
    );
    ensure_err!(
        send(st, 0, id, 0, 0, 2).await,
        StoreError::OutOfOrderSequence {
            expected: 11,
            got: 0
        },
        "retry of a batch older than the last five"
    );
    ensure_err!(
        send(st, 0, id, 0, 10, 2).await,
        StoreError::OutOfOrderSequence {
            expected: 11,
            got: 10
        },
        "same first sequence as a remembered batch but a different length"
    );
    ensure_eq!(hwm(st, 0).await?, 13, "high watermark at the end");
    let recs = fetch_all(st, "t", 0, 0).await?;
    let unique: HashSet<String> = values(&recs).into_iter().collect();
    ensure_eq!(
        unique.len(),
        recs.len(),
        "distinct records stored (no duplicates)"
    );
    s.finish().await.ctx("close")
}

/// **sequence_gap_is_rejected**
pub async fn sequence_gap_is_rejected(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "sequence_gap_is_rejected").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let id = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    ensure_err!(
        send(st, 0, id, 0, 1, 1).await,
        StoreError::OutOfOrderSequence {
            expected: 0,
            got: 1
        },
        "first batch starting at sequence 1"
    );
    ensure_eq!(
        hwm(st, 0).await?,
        0,
        "high watermark after the refused first batch"
    );
    send(st, 0, id, 0, 0, 3).await.ctx("batch seq 0..3")?;
    ensure_err!(
        send(st, 0, id, 0, 4, 1).await,
        StoreError::OutOfOrderSequence {
            expected: 3,
            got: 4
        },
        "batch skipping sequence 3"
    );
    ensure_err!(
        send(st, 0, id, 0, 1, 1).await,
        StoreError::OutOfOrderSequence {
            expected: 3,
            got: 1
        },
        "batch going back into the previous batch"
    );
    let r = send(st, 0, id, 0, 3, 2).await.ctx("batch seq 3..5")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (3, false),
        "the in-sequence batch"
    );
    ensure_err!(
        send(st, 0, id, 1, 5, 1).await,
        StoreError::OutOfOrderSequence {
            expected: 0,
            got: 5
        },
        "first batch of a newer epoch not starting at 0"
    );
    let r = send(st, 0, id, 1, 0, 1).await.ctx("epoch 1 seq 0")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (5, false),
        "first batch of epoch 1"
    );
    let r = send(st, 0, id, 1, 1, 1).await.ctx("epoch 1 seq 1")?;
    ensure_eq!(r.base_offset, 6, "second batch of epoch 1");
    ensure_eq!(hwm(st, 0).await?, 7, "high watermark at the end");
    s.finish().await.ctx("close")
}

/// **fenced_epoch_is_rejected**
pub async fn fenced_epoch_is_rejected(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "fenced_epoch_is_rejected").await?;
    let st = &s.store;
    topic(st, "t", 2).await?;
    let id = st
        .init_producer_id()
        .await
        .ctx("init_producer_id")?
        .producer_id;
    send(st, 0, id, 0, 0, 1).await.ctx("epoch 0 seq 0")?;
    send(st, 0, id, 2, 0, 1).await.ctx("epoch 2 seq 0")?;
    for (epoch, seq) in [(1, 1), (0, 1), (1, 0), (0, 0)] {
        match send(st, 0, id, epoch, seq, 1).await {
            Err(StoreError::ProducerFenced {
                producer_id,
                epoch: e,
                current,
            }) => ensure_eq!(
                (producer_id, e, current),
                (id, epoch, 2),
                "ProducerFenced fields for epoch {epoch}"
            ),
            other => {
                return Err(format!(
                    "epoch {epoch} seq {seq} after epoch 2: expected ProducerFenced, got {other:?}"
                ))
            }
        }
    }
    ensure_eq!(hwm(st, 0).await?, 2, "high watermark after fenced batches");
    let r = send(st, 0, id, 2, 1, 1).await.ctx("epoch 2 seq 1")?;
    ensure_eq!(r.base_offset, 2, "the current epoch continues");
    let r = send(st, 1, id, 0, 0, 1)
        .await
        .ctx("epoch 0 on partition 1")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (0, false),
        "epoch 0 on a partition where the producer has no newer epoch"
    );
    s.finish().await.ctx("close")
}
