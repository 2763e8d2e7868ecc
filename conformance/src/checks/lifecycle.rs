//! Checks of the Time and lifecycle rules.

use std::sync::Arc;

use broker_api::{
    AppendBatch, FetchLimits, OffsetCommit, ProducerBatch, Record, StoreError, TopicConfig,
};

use super::append::odd_records;
use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// **data_survives_reopen**
pub async fn data_survives_reopen(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "data_survives_reopen").await?;
    let mut config = TopicConfig::with_partitions(2);
    config.attributes.insert("k".into(), "v".into());
    config.retention_ms = Some(3_600_000);
    s.store
        .create_topic("t", config)
        .await
        .ctx("create_topic")?;
    topic(&s.store, "u", 1).await?;
    let now = clock_now(&s);
    append(&s.store, "t", 0, odd_records(now)).await?;
    append_n(&s.store, "t", 1, 3).await?;
    append_n(&s.store, "u", 0, 4).await?;
    s.store
        .delete_records("u", 0, 2)
        .await
        .ctx("delete_records")?;
    let pid = s.store.init_producer_id().await.ctx("init_producer_id")?;
    let idem = |seq: i32, v: &str| AppendBatch {
        records: vec![Record::from_value(v.to_string())],
        producer: Some(ProducerBatch {
            producer_id: pid.producer_id,
            epoch: 0,
            first_sequence: seq,
        }),
    };
    s.store
        .append("t", 1, idem(0, "i0"))
        .await
        .ctx("idempotent append")?;
    let commit = OffsetCommit {
        topic: "t".into(),
        partition: 1,
        offset: 2,
        leader_epoch: Some(9),
        metadata: "md".into(),
    };
    s.store
        .commit_offsets("cg", std::slice::from_ref(&commit))
        .await
        .ctx("commit")?;

    let topics = s.store.list_topics().await.ctx("list_topics")?;
    let mut data = Vec::new();
    for (t, p) in [("t", 0), ("t", 1), ("u", 0)] {
        let from = if t == "u" { 2 } else { 0 };
        data.push(fetch_all(&s.store, t, p, from).await?);
    }
    for round in 1..=2 {
        s.reopen().await.ctx("reopen")?;
        let st = &s.store;
        ensure_eq!(
            st.list_topics().await.ctx("list_topics")?,
            topics,
            "topics after reopen {round}"
        );
        for (i, (t, p)) in [("t", 0), ("t", 1), ("u", 0)].into_iter().enumerate() {
            let from = if t == "u" { 2 } else { 0 };
            let got = fetch_all(st, t, p, from).await?;
            ensure_eq!(got, data[i], "records of {t}/{p} after reopen {round}");
        }
        let off = st.partition_offsets("u", 0).await.ctx("offsets")?;
        ensure_eq!(
            (off.log_start_offset, off.high_watermark),
            (2, 4),
            "offsets of u/0 after reopen {round}"
        );
        ensure_err!(
            st.fetch("u", 0, 1, FetchLimits::default()).await,
            StoreError::OffsetOutOfRange { .. },
            "fetch below the log start after reopen {round}"
        );
        ensure_eq!(
            st.list_committed("cg").await.ctx("list_committed")?,
            vec![commit.clone()],
            "commits after reopen {round}"
        );
        let fresh_id = st.init_producer_id().await.ctx("init_producer_id")?;
        ensure!(
            fresh_id.producer_id != pid.producer_id,
            "producer id {} handed out again after reopen",
            pid.producer_id
        );
    }
    let st = &s.store;
    let r = st
        .append("t", 1, idem(0, "i0"))
        .await
        .ctx("retry after reopen")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (3, true),
        "retry of an idempotent batch after reopen"
    );
    let r = st
        .append("t", 1, idem(1, "i1"))
        .await
        .ctx("next batch after reopen")?;
    ensure_eq!(
        (r.base_offset, r.duplicate),
        (4, false),
        "next idempotent batch after reopen"
    );
    s.finish().await.ctx("close")
}

/// Calls after `close` fail with `Closed` (stated by [`broker_api::Store::close`]).
pub async fn calls_after_close_fail(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "calls_after_close_fail").await?;
    topic(&s.store, "t", 1).await?;
    append_values(&s.store, "t", 0, &["a"]).await?;
    let st = s.store.clone();
    st.close().await.ctx("close")?;
    ensure_err!(st.health().await, StoreError::Closed, "health after close");
    ensure_err!(
        st.list_topics().await,
        StoreError::Closed,
        "list_topics after close"
    );
    ensure_err!(
        st.append("t", 0, AppendBatch::new(vec![Record::from_value("b")]))
            .await,
        StoreError::Closed,
        "append after close"
    );
    ensure_err!(
        st.fetch("t", 0, 0, FetchLimits::default()).await,
        StoreError::Closed,
        "fetch after close"
    );
    ensure_err!(
        st.lease("t", 0, "g", 1, std::time::Duration::from_secs(1))
            .await,
        StoreError::Closed,
        "lease after close"
    );
    ensure_err!(
        st.list_acls().await,
        StoreError::Closed,
        "list_acls after close"
    );
    ensure_err!(
        st.get_credential("u", broker_api::ScramMechanism::Sha256)
            .await,
        StoreError::Closed,
        "get_credential after close"
    );
    Ok(())
}
