//! `Store::report` of the PostgreSQL store: record bytes per partition, table sizes, pools
//! and slow-call counts.

mod support;

use broker_api::{AppendBatch, Record, ReportCell, Store, StoreError, TopicConfig};
use support::fresh_store;

#[tokio::test]
async fn report_shows_partition_bytes_tables_pools_and_calls() {
    let (store, _clock) = fresh_store("report_t").await;
    store
        .create_topic("t", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    let records: Vec<Record> = (0..10)
        .map(|i| Record::from_value(format!("v{i:04}")))
        .collect();
    store
        .append("t", 1, AppendBatch::new(records))
        .await
        .unwrap();
    let r = store.report(Some("t")).await.unwrap();
    let bytes: Vec<(i32, u64)> = r
        .partitions
        .iter()
        .map(|p| (p.partition, p.bytes))
        .collect();
    // Stored bytes: one Kafka record batch holding the 50 value bytes, its 61-byte header and
    // each record's framing (a few bytes each).
    assert_eq!(bytes.len(), 2, "{bytes:?}");
    assert_eq!(bytes[0], (0, 0), "nothing stored in partition 0");
    assert_eq!(bytes[1].0, 1);
    assert!(
        (50 + 61..=50 + 61 + 10 * 16).contains(&bytes[1].1),
        "stored bytes of partition 1: {bytes:?}"
    );
    let titles: Vec<&str> = r.tables.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, vec!["tables", "pools", "calls"]);
    let tables = &r.tables[0];
    let names: Vec<&ReportCell> = tables.rows.iter().map(|row| &row[0]).collect();
    for t in ["records", "topics", "partitions", "lease_state"] {
        assert!(
            names.contains(&&ReportCell::from(t)),
            "{t} missing from {names:?}"
        );
    }
    for row in &tables.rows {
        assert!(matches!(row[1], ReportCell::Int(n) if n > 0), "{row:?}");
    }
    let pools = &r.tables[1];
    assert_eq!(pools.rows.len(), 2);
    assert_eq!(pools.rows[0][0], ReportCell::from("main"));
    let calls = &r.tables[2];
    let append = calls
        .rows
        .iter()
        .find(|row| row[0] == ReportCell::from("append"))
        .expect("append calls");
    assert_eq!(append[1], ReportCell::Int(1), "one append call: {append:?}");
    assert!(matches!(append[2], ReportCell::Int(0 | 1)), "{append:?}");
    assert!(matches!(
        store.report(Some("missing")).await,
        Err(StoreError::UnknownTopic(_))
    ));
    store.close().await.unwrap();
}
