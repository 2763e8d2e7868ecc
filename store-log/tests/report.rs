//! `Store::report` of the log store: bytes on disk per partition and one row per segment
//! with its size and index coverage.

use std::sync::Arc;

use broker_api::{AppendBatch, ManualClock, Record, ReportCell, Store, StoreError, TopicConfig};
use store_log::{LogOptions, LogStore};

#[tokio::test]
async fn report_lists_every_segment_with_sizes_and_index_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        index_interval_bytes: 256,
        segment_bytes: 4096,
        index_bytes: 4096,
        ..LogOptions::default()
    };
    let store = LogStore::open(dir.path(), opts, Arc::new(ManualClock::new(1_000))).unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    store
        .create_topic("other", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    for i in 0..200 {
        let r = Record::from_value(format!("value-{i}-{}", "x".repeat(40)));
        store
            .append("t", 0, AppendBatch::new(vec![r]))
            .await
            .unwrap();
    }
    let report = store.report(Some("t")).await.unwrap();
    assert_eq!(
        report
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect::<Vec<_>>(),
        vec![("t", 0), ("t", 1)],
        "only the asked topic"
    );
    assert!(report.partitions[0].bytes > report.partitions[1].bytes);
    let segs = &report.tables[0];
    assert_eq!(segs.title, "segments");
    let col = |name: &str| segs.columns.iter().position(|c| c == name).unwrap();
    let rows: Vec<_> = segs
        .rows
        .iter()
        .filter(|r| r[col("partition")] == ReportCell::Int(0))
        .collect();
    assert!(
        rows.len() > 2,
        "200 records of ~100 bytes roll 4 KiB segments: {rows:?}"
    );
    // Segments chain: each starts where the previous ended, the last is active.
    for w in rows.windows(2) {
        assert_eq!(w[0][col("next_offset")], w[1][col("base_offset")]);
        assert_eq!(w[0][col("state")], ReportCell::from("sealed"));
    }
    assert_eq!(
        rows.last().unwrap()[col("state")],
        ReportCell::from("active")
    );
    assert_eq!(
        rows.last().unwrap()[col("next_offset")],
        ReportCell::Int(200)
    );
    for r in &rows {
        let ReportCell::Int(bytes) = r[col("log_bytes")] else {
            panic!("{r:?}")
        };
        let ReportCell::Int(entries) = r[col("index_entries")] else {
            panic!("{r:?}")
        };
        assert!(bytes > 0 && bytes <= 4096 + 200, "{r:?}");
        // An entry at the first batch past each 256 bytes (batches here are ~110 bytes).
        if bytes > 1024 {
            assert!(entries >= bytes / 400, "sparse index too sparse: {r:?}");
        }
        // Entries fall at the first batch boundary past each interval, so at most one interval
        // plus one batch (~110 bytes here) lies past the last entry.
        let ReportCell::Float(cov) = r[col("index_coverage_pct")] else {
            panic!("{r:?}")
        };
        assert!(cov >= 100.0 * (1.0 - 120.0 / bytes as f64) - 0.1, "{r:?}");
    }
    let all = store.report(None).await.unwrap();
    assert_eq!(all.partitions.len(), 3);
    assert!(matches!(
        store.report(Some("missing")).await,
        Err(StoreError::UnknownTopic(_))
    ));
    store.close().await.unwrap();
}
