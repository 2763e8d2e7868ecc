//! Share-group calls of the PostgreSQL store beyond the conformance checks: several brokers
//! (stores on one schema) leasing, acking, resetting and deleting one group at once, and
//! group configs holding any string.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{AppendBatch, Record, Store, StoreError, TopicConfig};
use store_postgres::SCHEMA_VERSION;
use support::{database_url, fresh_store, open_store};

const LONG: Duration = Duration::from_secs(3600);

async fn sql(query: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client.query(query, &[]).await.expect(query)
}

async fn fill(store: &dyn Store, topic: &str, batches: usize, per_batch: usize) {
    for b in 0..batches {
        let records = (0..per_batch)
            .map(|i| Record::from_value(format!("{b}-{i}")))
            .collect();
        store
            .append(topic, 0, AppendBatch::new(records))
            .await
            .unwrap();
    }
}

/// Two brokers leasing and acking one partition for one group: a lease call that waited for
/// the cursor another broker's call held must not move the floor over that call's records
/// in flight (its snapshot of `lease_state` predates them), or they would count as done
/// and never come back if their consumer died. Each worker checks that the floor stays at
/// or below the records it holds until it acks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_of_two_brokers_keep_records_in_flight() {
    let (a, clock) = fresh_store("pgt_share_two").await;
    let b = open_store("pgt_share_two", Arc::new(clock)).await;
    a.create_topic("q", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    fill(&a, "q", 12, 50).await;
    let stores: [Arc<dyn Store>; 2] = [Arc::new(a), Arc::new(b)];
    let tasks = (0..8).map(|w| {
        let store = stores[w % 2].clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut passed = 0;
            loop {
                let l = store.lease("q", 0, "g", 3, LONG).await.unwrap();
                let Some(first) = l.first().map(|l| l.record.offset) else {
                    return (mine, passed);
                };
                if store.lease_floor("q", 0, "g").await.unwrap() > first {
                    passed += 1;
                }
                let tokens: Vec<_> = l.iter().map(|l| l.token).collect();
                for r in store.ack("q", "g", &tokens).await.unwrap() {
                    r.unwrap();
                }
                mine.extend(l.iter().map(|l| (l.record.offset, l.delivery_count)));
            }
        })
    });
    let mut seen = BTreeMap::new();
    let mut passed = 0;
    for t in futures::future::join_all(tasks).await {
        let (mine, p) = t.unwrap();
        passed += p;
        for (offset, deliveries) in mine {
            assert_eq!(
                deliveries, 1,
                "offset {offset} leased again while in flight"
            );
            *seen.entry(offset).or_insert(0) += 1;
        }
    }
    assert_eq!(
        passed, 0,
        "lease calls whose records the floor passed while in flight"
    );
    assert_eq!(seen.len(), 600, "every record leased");
    assert!(seen.values().all(|&n| n == 1), "a record was leased twice");
    let c = stores[0].lease_counts("q", 0, "g").await.unwrap();
    assert_eq!((c.available, c.leased, c.done), (0, 0, 600));
}

/// One broker leases and acks while another resets the group's start back and forth and
/// deletes the group: every call succeeds (acks may find their lease gone), nothing is left
/// behind for a deleted group, and a final reset to the log start makes every record
/// leasable exactly once with delivery count 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resets_and_deletes_race_leases_and_acks_of_another_broker() {
    let (a, clock) = fresh_store("pgt_share_race").await;
    let b = open_store("pgt_share_race", Arc::new(clock)).await;
    a.create_topic("q", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    fill(&a, "q", 10, 40).await;
    let a: Arc<dyn Store> = Arc::new(a);
    let b: Arc<dyn Store> = Arc::new(b);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (store, stop) = (a.clone(), stop.clone());
            tokio::spawn(async move {
                let mut leased = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let l = store
                        .lease("q", 0, "g", 7, Duration::from_millis(1))
                        .await
                        .unwrap_or_else(|e| panic!("lease of worker {w}: {e}"));
                    leased += l.len();
                    let tokens: Vec<_> = l.iter().map(|l| l.token).rev().collect();
                    for r in store.ack("q", "g", &tokens).await.unwrap() {
                        match r {
                            Ok(()) | Err(StoreError::LeaseExpired) => {}
                            Err(e) => panic!("ack of worker {w}: {e}"),
                        }
                    }
                }
                leased
            })
        })
        .collect();
    for round in 0..30i64 {
        match round % 3 {
            0 => {
                b.delete_lease_group("q", "g").await.unwrap();
            }
            1 => {
                let got = b.reset_lease_start("q", 0, "g", round * 13).await.unwrap();
                assert_eq!(got, (round * 13).min(400));
            }
            _ => {
                assert_eq!(b.reset_lease_start("q", 0, "g", 0).await.unwrap(), 0);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert!(total > 0, "the workers leased nothing");
    let orphans = sql("SELECT count(*) FROM pgt_share_race.lease_state s
         WHERE NOT EXISTS (SELECT 1 FROM pgt_share_race.lease_groups g WHERE g.id = s.group_id)")
    .await;
    assert_eq!(
        orphans[0].get::<_, i64>(0),
        0,
        "lease state of deleted groups"
    );
    assert_eq!(b.reset_lease_start("q", 0, "g", -1).await.unwrap(), 0);
    let c = a.lease_counts("q", 0, "g").await.unwrap();
    assert_eq!(
        (c.available, c.leased, c.delayed, c.done, c.dead_lettered),
        (400, 0, 0, 0, 0)
    );
    let l = a.lease("q", 0, "g", 1000, LONG).await.unwrap();
    let offsets: Vec<i64> = l.iter().map(|l| l.record.offset).collect();
    assert_eq!(offsets, (0..400).collect::<Vec<_>>());
    assert!(l.iter().all(|l| l.delivery_count == 1));
}

/// Deleting a group while another broker holds its cursor in a lease call waits for that
/// call and then removes its rows too; the group's name starts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_of_two_brokers_at_once_report_one_group() {
    let (a, clock) = fresh_store("pgt_share_delete").await;
    let b = open_store("pgt_share_delete", Arc::new(clock)).await;
    a.create_topic("q", TopicConfig::with_partitions(3))
        .await
        .unwrap();
    for round in 0..10 {
        for p in 0..3 {
            a.reset_lease_start("q", p, "g", 0).await.unwrap();
        }
        let (x, y) = tokio::join!(
            a.delete_lease_group("q", "g"),
            b.delete_lease_group("q", "g")
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            x ^ y,
            "round {round}: exactly one delete finds the group ({x}, {y})"
        );
        assert!(!a.lease_groups("q").await.unwrap().contains_key("g"));
    }
    let rows = sql("SELECT count(*) FROM pgt_share_delete.lease_cursors").await;
    assert_eq!(rows[0].get::<_, i64>(0), 0, "cursors of deleted groups");
}

/// Keys and values with U+0000 and other characters text columns cannot hold or might
/// change; the table comes with schema version 6.
#[tokio::test]
async fn group_configs_keep_any_string() {
    let (store, clock) = fresh_store("pgt_share_configs").await;
    const { assert!(SCHEMA_VERSION >= 6) };
    let versions: BTreeSet<i32> = sql("SELECT version FROM pgt_share_configs.schema_migrations")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(versions.contains(&6), "migration 6 applied: {versions:?}");
    let map: BTreeMap<String, String> = [
        ("nul\0key", "value\0with\0nuls"),
        ("\0", ""),
        ("é\u{1f980}", "\u{7f}\u{1}"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    store.set_group_config("g", map.clone()).await.unwrap();
    assert_eq!(store.group_config("g").await.unwrap(), map);
    store.close().await.unwrap();
    let again = open_store("pgt_share_configs", Arc::new(clock)).await;
    assert_eq!(again.group_config("g").await.unwrap(), map);
    assert_eq!(
        again.list_group_configs().await.unwrap(),
        vec![("g".to_string(), map)]
    );
    assert!(matches!(
        again.set_group_config("", BTreeMap::new()).await,
        Err(StoreError::InvalidArgument(_))
    ));
}

/// A reset meeting a transaction that holds `lease_state` rows the way a commit group of
/// acks does, and then wants a row the reset locked (a deadlock): the reset gives way, so
/// the other transaction is not aborted, and succeeds on a later attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_gives_way_to_acks_holding_rows() {
    let (store, _clock) = fresh_store("pgt_share_giveway").await;
    store
        .create_topic("q", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    fill(&store, "q", 1, 10).await;
    assert_eq!(store.lease("q", 0, "g", 10, LONG).await.unwrap().len(), 10);
    let (mut client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let touch =
        r#"UPDATE pgt_share_giveway.lease_state SET visible_at = visible_at WHERE "offset" = $1"#;
    let tx = client.transaction().await.unwrap();
    assert_eq!(tx.execute(touch, &[&5i64]).await.unwrap(), 1);
    let store = Arc::new(store);
    let reset = tokio::spawn({
        let store = store.clone();
        async move { store.reset_lease_start("q", 0, "g", 0).await }
    });
    // The reset locks rows 0-4 and waits for row 5; this then waits for row 0.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.execute(touch, &[&0i64])
        .await
        .expect("the other transaction must not be the deadlock victim");
    tx.commit().await.unwrap();
    assert_eq!(reset.await.unwrap().unwrap(), 0);
    let c = store.lease_counts("q", 0, "g").await.unwrap();
    assert_eq!((c.available, c.leased), (10, 0));
}
