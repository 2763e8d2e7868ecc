//! Restarting PostgreSQL (`-m immediate`, a crash as clients see it) while appends, leases and
//! acks run: calls fail only with retriable errors, the same store recovers by itself, and
//! everything that was acknowledged is still there. The test restarts a cluster of its own
//! (made with `scripts/pg` in a temp dir on a free port), never the one of DATABASE_URL.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{AppendBatch, FetchLimits, Record, Store, StoreError, TopicConfig};
use parking_lot::Mutex;

use support::cluster::Cluster;

async fn restart_postgres(cluster: &Arc<Cluster>) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart())
        .await
        .expect("restart task");
}

fn check_retriable(what: &str, e: &StoreError, errors: &Mutex<Vec<String>>) {
    assert!(
        e.is_retriable(),
        "{what} failed with a non-retriable error during the restart: {e:?}"
    );
    errors.lock().push(format!("{what}: {e}"));
}

#[derive(Default)]
struct Seen {
    /// (base offset, values) of every append that returned Ok.
    appended: Vec<(i64, Vec<String>)>,
    /// Offsets whose ack returned Ok.
    acked: BTreeSet<i64>,
    /// Offsets whose ack call failed: the ack may or may not have committed.
    uncertain: BTreeSet<i64>,
    appends_after_restart: usize,
    acks_after_restart: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_survives_a_postgres_restart() {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::start).await.unwrap());
    let url = cluster.url();
    let (store, clock) = support::fresh_store_at(&url, "restart_test").await;
    let store: Arc<dyn Store> = Arc::new(store);
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .expect("create topic");
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let errors = Arc::new(Mutex::new(Vec::new()));

    let appender = {
        let (store, stop, restarted, seen, errors) = (
            store.clone(),
            stop.clone(),
            restarted.clone(),
            seen.clone(),
            errors.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let values: Vec<String> = (0..10).map(|j| format!("v{i}-{j}")).collect();
                let batch = AppendBatch::new(
                    values
                        .iter()
                        .map(|v| Record::from_value(v.clone()))
                        .collect(),
                );
                let after = restarted.load(Ordering::SeqCst);
                match store.append("t", 0, batch).await {
                    Ok(r) => {
                        let mut s = seen.lock();
                        s.appended.push((r.base_offset, values));
                        if after {
                            s.appends_after_restart += 1;
                        }
                    }
                    Err(e) => {
                        check_retriable("append", &e, &errors);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let leaser = {
        let (store, stop, restarted, seen, errors) = (
            store.clone(),
            stop.clone(),
            restarted.clone(),
            seen.clone(),
            errors.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let after = restarted.load(Ordering::SeqCst);
                let leases = match store.lease("t", 0, "g", 10, Duration::from_secs(60)).await {
                    Ok(l) => l,
                    Err(e) => {
                        check_retriable("lease", &e, &errors);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if leases.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let tokens: Vec<_> = leases.iter().map(|l| l.token).collect();
                match store.ack("t", "g", &tokens).await {
                    Ok(results) => {
                        let mut s = seen.lock();
                        for (t, r) in tokens.iter().zip(results) {
                            match r {
                                Ok(()) => {
                                    s.acked.insert(t.offset);
                                    if after {
                                        s.acks_after_restart += 1;
                                    }
                                }
                                Err(e) => panic!("ack of a fresh lease failed: {e:?}"),
                            }
                        }
                    }
                    Err(e) => {
                        check_retriable("ack", &e, &errors);
                        seen.lock()
                            .uncertain
                            .extend(tokens.iter().map(|t| t.offset));
                    }
                }
            }
        })
    };

    // A fetch waiting across the restart is woken by an append made after it.
    store
        .create_topic("w", TopicConfig::with_partitions(1))
        .await
        .expect("create topic w");
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for("w", 0, 0, Duration::from_secs(120)).await })
    };

    tokio::time::sleep(Duration::from_millis(800)).await;
    restart_postgres(&cluster).await;
    restarted.store(true, Ordering::SeqCst);

    // The same store must serve again without being recreated.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (a, k) = {
            let s = seen.lock();
            (s.appends_after_restart, s.acks_after_restart)
        };
        if a >= 20 && k >= 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store did not recover within 60 s of the restart ({a} appends, {k} acks since); errors: {:?}",
            errors.lock()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another store (another broker) appends; the waiting store hears of it.
    let other = support::open_store_at(&url, "restart_test", Arc::new(clock.clone())).await;
    other
        .append("w", 0, AppendBatch::new(vec![Record::from_value("wake")]))
        .await
        .expect("append after the restart");
    let woke = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("a fetch waiting across the restart was not woken")
        .expect("waiter task");
    assert_eq!(woke, Ok(true), "wait_for across the restart");
    stop.store(true, Ordering::SeqCst);
    appender.await.expect("appender task");
    leaser.await.expect("leaser task");
    store.health().await.expect("health after the restart");

    // Everything that returned Ok is there, at the offsets it was given.
    let hw = store
        .partition_offsets("t", 0)
        .await
        .unwrap()
        .high_watermark;
    let mut stored = Vec::new();
    let mut offset = 0;
    while offset < hw {
        let f = store
            .fetch("t", 0, offset, FetchLimits::default())
            .await
            .expect("fetch after the restart");
        for r in &f.records {
            assert_eq!(r.offset, stored.len() as i64, "dense offsets");
            stored.push(String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap());
        }
        offset += f.records.len() as i64;
    }
    let s = std::mem::take(&mut *seen.lock());
    for (base, values) in &s.appended {
        for (i, v) in values.iter().enumerate() {
            let at = (*base as usize) + i;
            assert_eq!(
                stored.get(at),
                Some(v),
                "acknowledged record at offset {at} is missing or wrong"
            );
        }
    }

    // Acked records are never leased again, even after every lease has lapsed.
    clock.advance(120_000);
    let mut again = BTreeSet::new();
    loop {
        let l = store
            .lease("t", 0, "g", 1_000, Duration::from_secs(60))
            .await
            .expect("lease after the restart");
        if l.is_empty() {
            break;
        }
        again.extend(l.iter().map(|l| l.token.offset));
    }
    let redelivered: Vec<_> = again.intersection(&s.acked).collect();
    assert!(
        redelivered.is_empty(),
        "acked records leased again: {redelivered:?}"
    );
    let lost: Vec<i64> = (0..hw)
        .filter(|o| !again.contains(o) && !s.acked.contains(o) && !s.uncertain.contains(o))
        .collect();
    assert!(
        lost.is_empty(),
        "records neither acked nor leasable again: {lost:?}"
    );
    let errors = errors.lock();
    eprintln!(
        "restart test: {} appends, {} acks, {} retriable errors, first: {:?}",
        s.appended.len(),
        s.acked.len(),
        errors.len(),
        errors.iter().take(5).collect::<Vec<_>>()
    );
}
