//! Checks of the Leases rules.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{dead_letter_headers as dlh, Header, LeaseGroupConfig, Record, StoreError};
use bytes::Bytes;

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

const MIN: u64 = 60_000;

/// **lease_returns_oldest_available**
pub async fn lease_returns_oldest_available(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "lease_returns_oldest_available").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    append_values(st, "t", 0, &["r0", "r1", "r2"]).await?;
    append_values(st, "t", 0, &["r3", "r4", "r5"]).await?;
    let all = fetch_all(st, "t", 0, 0).await?;
    let t0 = clock_now(&s);
    let first = lease(st, "t", 0, "g", 2, 30_000).await?;
    ensure_eq!(leased_offsets(&first), vec![0, 1], "first lease of 2");
    for l in &first {
        ensure_eq!(l.record, all[l.record.offset as usize], "leased record");
        ensure_eq!(l.delivery_count, 1, "delivery count of a first lease");
        ensure_eq!(l.expires_at_ms, t0 + 30_000, "expiry of a 30 s lease");
        ensure_eq!(
            l.first_leased_at_ms,
            t0,
            "first_leased_at_ms of a first lease"
        );
        ensure_eq!(
            (l.token.partition, l.token.offset),
            (0, l.record.offset),
            "token partition and offset"
        );
    }
    ensure!(first[0].token != first[1].token, "two leases share a token");
    let rest = lease(st, "t", 0, "g", 10, 30_000).await?;
    ensure_eq!(
        leased_offsets(&rest),
        vec![2, 3, 4, 5],
        "lease of up to 10 after 2 taken"
    );
    let none = lease(st, "t", 0, "g", 10, 30_000).await?;
    ensure_eq!(
        leased_offsets(&none),
        Vec::<i64>::new(),
        "lease while everything is leased"
    );
    s.clock.advance(1_000);
    st.release("t", "g", first[1].token, Duration::ZERO)
        .await
        .ctx("release offset 1")?;
    st.release("t", "g", rest[1].token, Duration::ZERO)
        .await
        .ctx("release offset 3")?;
    let again = lease(st, "t", 0, "g", 10, 5_000).await?;
    ensure_eq!(
        leased_offsets(&again),
        vec![1, 3],
        "released records leased again, oldest first"
    );
    ensure_eq!(
        deliveries(&again),
        vec![2, 2],
        "delivery counts of second leases"
    );
    ensure_eq!(
        again[0].first_leased_at_ms,
        t0,
        "first_leased_at_ms keeps the first lease time"
    );
    ensure_eq!(
        again[0].expires_at_ms,
        t0 + 1_000 + 5_000,
        "expiry of the second lease"
    );
    ensure!(
        again[0].token != first[1].token,
        "a new lease of the same record reused its token"
    );
    s.finish().await.ctx("close")
}

/// **leases_are_exclusive**
pub async fn leases_are_exclusive(backend: Arc<dyn Backend>) -> CheckResult {
    const RECORDS: usize = 200;
    const TASKS: usize = 8;
    let s = fresh(backend, "leases_are_exclusive").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    for chunk in 0..(RECORDS / 20) {
        let vals: Vec<String> = (0..20).map(|k| format!("m{}", chunk * 20 + k)).collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        append_values(st, "t", 0, &refs).await?;
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let st = st.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = st
                    .lease("t", 0, "g", 1 + task % 3, Duration::from_secs(3600))
                    .await?;
                if batch.is_empty() {
                    return Ok::<_, StoreError>(got);
                }
                got.extend(batch);
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut leases = Vec::new();
    for t in tasks {
        leases.extend(
            t.await
                .map_err(|e| format!("lease task failed: {e}"))?
                .ctx("concurrent lease")?,
        );
    }
    let mut seen = HashSet::new();
    for l in &leases {
        ensure!(
            seen.insert(l.record.offset),
            "offset {} was leased to two holders at once",
            l.record.offset
        );
        ensure_eq!(
            l.delivery_count,
            1,
            "delivery count of offset {}",
            l.record.offset
        );
    }
    ensure_eq!(
        seen.len(),
        RECORDS,
        "distinct records leased by all tasks together"
    );
    // Acks from many tasks at once: every one succeeds exactly once.
    let mut acks = Vec::new();
    for chunk in leases.chunks(25) {
        let st = st.clone();
        let tokens: Vec<_> = chunk.iter().map(|l| l.token).collect();
        acks.push(tokio::spawn(async move { st.ack("t", "g", &tokens).await }));
    }
    for a in acks {
        let res = a
            .await
            .map_err(|e| format!("ack task failed: {e}"))?
            .ctx("concurrent ack")?;
        ensure!(
            res.iter().all(|r| r.is_ok()),
            "a concurrent ack failed: {res:?}"
        );
    }
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (0, 0, 0, RECORDS as u64, 0),
        "counts after acking everything"
    );
    s.finish().await.ctx("close")
}

/// **expired_lease_is_redelivered**
pub async fn expired_lease_is_redelivered(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "expired_lease_is_redelivered").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    append_values(st, "t", 0, &["a", "b"]).await?;
    let t0 = clock_now(&s);
    let first = lease(st, "t", 0, "g", 1, 5_000).await?;
    ensure_eq!(leased_offsets(&first), vec![0], "first lease");
    s.clock.advance(4_999);
    let before = lease(st, "t", 0, "g", 1, 5_000).await?;
    ensure_eq!(
        leased_offsets(&before),
        vec![1],
        "lease 1 ms before expiry gets the next record"
    );
    let after_b = lease(st, "t", 0, "g", 1, 5_000).await?;
    ensure_eq!(
        leased_offsets(&after_b),
        Vec::<i64>::new(),
        "lease while both are in flight"
    );
    s.clock.advance(1);
    let again = lease(st, "t", 0, "g", 5, 5_000).await?;
    ensure_eq!(
        leased_offsets(&again),
        vec![0],
        "lease at exactly expires_at_ms (the lease has lapsed)"
    );
    ensure_eq!(
        deliveries(&again),
        vec![2],
        "delivery count of the redelivery"
    );
    ensure_eq!(
        again[0].first_leased_at_ms,
        t0,
        "first_leased_at_ms of the redelivery"
    );
    let old = first[0].token;
    let res = st.ack("t", "g", &[old]).await.ctx("ack old token")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "ack with the superseded token: expected [Err(LeaseExpired)], got {res:?}"
    );
    ensure_err!(
        st.release("t", "g", old, Duration::ZERO).await,
        StoreError::LeaseExpired,
        "release with the superseded token"
    );
    ensure_err!(
        st.extend("t", "g", old, Duration::from_secs(60)).await,
        StoreError::LeaseExpired,
        "extend with the superseded token"
    );
    // A lapsed lease nobody has taken again is leasable (rule lapsed_lease_can_be_acked
    // covers what its token may still do).
    s.clock.advance(4_999);
    let b_token = before[0].token;
    let b_again = lease(st, "t", 0, "g", 5, 5_000).await?;
    ensure_eq!(
        leased_offsets(&b_again),
        vec![1],
        "the lapsed record is leased again"
    );
    ensure_eq!(deliveries(&b_again), vec![2], "its delivery count");
    let res = st
        .ack("t", "g", &[b_token])
        .await
        .ctx("ack superseded token")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "ack with a lapsed token after the record was leased again: expected [Err(LeaseExpired)], got {res:?}"
    );
    ack_ok(st, "t", "g", again[0].token).await?;
    s.finish().await.ctx("close")
}

/// **lapsed_lease_can_be_acked**
pub async fn lapsed_lease_can_be_acked(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "lapsed_lease_can_be_acked").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    append_values(st, "t", 0, &["a", "b", "c"]).await?;
    let l = lease(st, "t", 0, "g", 3, 1_000).await?;
    ensure_eq!(leased_offsets(&l), vec![0, 1, 2], "first lease");
    s.clock.advance(1_000);
    // Release and extend refuse a lapsed token and change nothing.
    ensure_err!(
        st.release("t", "g", l[0].token, Duration::from_secs(60))
            .await,
        StoreError::LeaseLapsed,
        "release with a lapsed token"
    );
    ensure_err!(
        st.extend("t", "g", l[0].token, Duration::from_secs(60))
            .await,
        StoreError::LeaseLapsed,
        "extend with a lapsed token"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (3, 0, 0, 0, 0),
        "counts after the leases lapsed (release and extend changed nothing)"
    );
    // Ack with the lapsed token of the most recent lease succeeds and is final.
    let res = st
        .ack("t", "g", &[l[0].token, l[1].token])
        .await
        .ctx("ack lapsed tokens")?;
    ensure!(
        matches!(res.as_slice(), [Ok(()), Ok(())]),
        "ack with lapsed tokens not leased again: expected [Ok, Ok], got {res:?}"
    );
    let res = st
        .ack("t", "g", &[l[0].token])
        .await
        .ctx("second ack of the same token")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "second ack of a lapsed token: expected [Err(LeaseExpired)], got {res:?}"
    );
    ensure_err!(
        st.extend("t", "g", l[0].token, Duration::from_secs(60))
            .await,
        StoreError::LeaseExpired,
        "extend after the lapsed token was acked"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (1, 0, 0, 2, 0),
        "counts after acking two lapsed leases"
    );
    let again = lease(st, "t", 0, "g", 5, 1_000).await?;
    ensure_eq!(
        leased_offsets(&again),
        vec![2],
        "only the record not acked is leased again"
    );
    ensure_eq!(deliveries(&again), vec![2], "its delivery count");
    // Once leased again, the lapsed token of the earlier lease is superseded.
    let res = st
        .ack("t", "g", &[l[2].token])
        .await
        .ctx("ack superseded")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "ack with a token superseded by a newer lease: expected [Err(LeaseExpired)], got {res:?}"
    );
    ensure_err!(
        st.extend("t", "g", l[2].token, Duration::from_secs(60))
            .await,
        StoreError::LeaseExpired,
        "extend with a superseded token"
    );
    ack_ok(st, "t", "g", again[0].token).await?;
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 5, 1_000).await?),
        Vec::<i64>::new(),
        "nothing left to lease"
    );
    s.finish().await.ctx("close")
}

/// **ack_is_final**
pub async fn ack_is_final(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "ack_is_final").await?;
    topic(&s.store, "t", 1).await?;
    let st = s.store.clone();
    append_values(&st, "t", 0, &["a", "b", "c", "d"]).await?;
    let l = lease(&st, "t", 0, "g", 3, 1_000).await?;
    ensure_eq!(leased_offsets(&l), vec![0, 1, 2], "lease of 3");
    let res = st
        .ack("t", "g", &[l[0].token, l[2].token])
        .await
        .ctx("ack")?;
    ensure!(
        matches!(res.as_slice(), [Ok(()), Ok(())]),
        "ack of two live leases: expected [Ok, Ok], got {res:?}"
    );
    let res = st
        .ack("t", "g", &[l[0].token, l[1].token])
        .await
        .ctx("ack")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired), Ok(())]),
        "ack of an acked token then a live one: expected [Err(LeaseExpired), Ok], got {res:?}"
    );
    ensure_err!(
        st.release("t", "g", l[2].token, Duration::ZERO).await,
        StoreError::LeaseExpired,
        "release of an acked record"
    );
    ensure_err!(
        st.extend("t", "g", l[2].token, Duration::from_secs(10))
            .await,
        StoreError::LeaseExpired,
        "extend of an acked record"
    );
    // Offset 3 lapses and is leased again; the first token must not ack it.
    let d1 = lease(&st, "t", 0, "g", 1, 1_000).await?;
    ensure_eq!(leased_offsets(&d1), vec![3], "lease of the last record");
    s.clock.advance(1_000);
    let d2 = lease(&st, "t", 0, "g", 5, 1_000).await?;
    ensure_eq!(
        leased_offsets(&d2),
        vec![3],
        "redelivery of the last record"
    );
    let res = st.ack("t", "g", &[d1[0].token]).await.ctx("ack")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "ack with a superseded token: expected [Err(LeaseExpired)], got {res:?}"
    );
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (0, 1, 0, 3, 0),
        "counts after a stale ack (it must change nothing)"
    );
    ack_ok(&st, "t", "g", d2[0].token).await?;
    s.clock.advance(3_600_000);
    let none = lease(&st, "t", 0, "g", 10, 1_000).await?;
    ensure_eq!(
        leased_offsets(&none),
        Vec::<i64>::new(),
        "lease after everything was acked"
    );
    s.reopen().await.ctx("reopen")?;
    let none = lease(&s.store, "t", 0, "g", 10, 1_000).await?;
    ensure_eq!(
        leased_offsets(&none),
        Vec::<i64>::new(),
        "lease after acking and reopening"
    );
    s.finish().await.ctx("close")
}

/// **release_with_delay**
pub async fn release_with_delay(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "release_with_delay").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    append_values(st, "t", 0, &["a", "b"]).await?;
    let l = lease(st, "t", 0, "g", 2, MIN).await?;
    st.release("t", "g", l[0].token, Duration::from_millis(5_000))
        .await
        .ctx("release with delay")?;
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (0, 1, 1, 0, 0),
        "counts after a delayed release (available, leased, delayed, done, dead)"
    );
    ensure_err!(
        st.release("t", "g", l[0].token, Duration::ZERO).await,
        StoreError::LeaseExpired,
        "second release with the same token"
    );
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 5, MIN).await?),
        Vec::<i64>::new(),
        "lease right after the release"
    );
    s.clock.advance(4_999);
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 5, MIN).await?),
        Vec::<i64>::new(),
        "lease 1 ms before the delay ends"
    );
    s.clock.advance(1);
    let again = lease(st, "t", 0, "g", 5, MIN).await?;
    ensure_eq!(leased_offsets(&again), vec![0], "lease when the delay ends");
    ensure_eq!(deliveries(&again), vec![2], "delivery count after release");
    st.release("t", "g", l[1].token, Duration::ZERO)
        .await
        .ctx("release without delay")?;
    let b = lease(st, "t", 0, "g", 5, MIN).await?;
    ensure_eq!(
        leased_offsets(&b),
        vec![1],
        "lease right after a release without delay"
    );
    ensure_eq!(
        deliveries(&b),
        vec![2],
        "delivery count after release without delay"
    );
    s.finish().await.ctx("close")
}

/// **extend_moves_expiry**
pub async fn extend_moves_expiry(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "extend_moves_expiry").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    append_values(st, "t", 0, &["a"]).await?;
    let t0 = clock_now(&s);
    let l = lease(st, "t", 0, "g", 1, 5_000).await?;
    s.clock.advance(3_000);
    let exp = st
        .extend("t", "g", l[0].token, Duration::from_millis(10_000))
        .await
        .ctx("extend")?;
    ensure_eq!(
        exp,
        t0 + 13_000,
        "expiry returned by extend (now + visibility)"
    );
    s.clock.advance(9_999);
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 5, 5_000).await?),
        Vec::<i64>::new(),
        "lease before the extended expiry"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (0, 1, 0, 0, 0),
        "counts before the extended expiry"
    );
    let exp = st
        .extend("t", "g", l[0].token, Duration::from_millis(1_000))
        .await
        .ctx("second extend (shorter)")?;
    ensure_eq!(exp, t0 + 13_999, "expiry after a shorter extend");
    s.clock.advance(1_000);
    ensure_err!(
        st.extend("t", "g", l[0].token, Duration::from_millis(1_000))
            .await,
        StoreError::LeaseLapsed,
        "extend after the lease lapsed"
    );
    let again = lease(st, "t", 0, "g", 5, 5_000).await?;
    ensure_eq!(
        leased_offsets(&again),
        vec![0],
        "lease after the extended expiry"
    );
    ensure_eq!(
        deliveries(&again),
        vec![2],
        "delivery count after the extended expiry"
    );
    s.finish().await.ctx("close")
}

/// **groups_are_independent**
pub async fn groups_are_independent(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "groups_are_independent").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    append_values(st, "t", 0, &["a", "b", "c"]).await?;
    let g1 = lease(st, "t", 0, "g1", 10, MIN).await?;
    ensure_eq!(leased_offsets(&g1), vec![0, 1, 2], "g1 leases all");
    let tokens: Vec<_> = g1.iter().map(|l| l.token).collect();
    let res = st.ack("t", "g1", &tokens).await.ctx("ack g1")?;
    ensure!(res.iter().all(|r| r.is_ok()), "acks of g1: {res:?}");
    let g2 = lease(st, "t", 0, "g2", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&g2),
        vec![0, 1, 2],
        "g2 leases all after g1 acked"
    );
    ensure_eq!(deliveries(&g2), vec![1, 1, 1], "g2 delivery counts");
    let res = st
        .ack("t", "g2", &[g1[0].token])
        .await
        .ctx("ack g1 token as g2")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "g2 acking with g1's token: expected [Err(LeaseExpired)], got {res:?}"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g1").await?),
        (0, 0, 0, 3, 0),
        "g1 counts"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g2").await?),
        (0, 3, 0, 0, 0),
        "g2 counts"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g3").await?),
        (3, 0, 0, 0, 0),
        "counts of an unused group"
    );
    let groups = st.lease_groups("t").await.ctx("lease_groups")?;
    for g in ["g1", "g2"] {
        ensure_eq!(
            groups.get(g),
            Some(&LeaseGroupConfig::default()),
            "lease_groups entry of {g} (used without a config)"
        );
    }
    s.finish().await.ctx("close")
}

fn header(headers: &[Header], key: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.as_ref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// **max_deliveries_dead_letters**
pub async fn max_deliveries_dead_letters(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "max_deliveries_dead_letters").await?;
    let st = &s.store;
    topic(st, "work", 2).await?;
    topic(st, "dlq", 1).await?;
    let config = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(2),
        dead_letter_topic: Some("dlq".into()),
        ordered_by_key: false,
    };
    st.set_lease_group("work", "g", config.clone())
        .await
        .ctx("set_lease_group")?;
    let groups = st.lease_groups("work").await.ctx("lease_groups")?;
    ensure_eq!(groups.get("g"), Some(&config), "lease_groups entry of g");
    let ts = clock_now(&s) - 77_000;
    let orig_headers = vec![
        Header {
            key: "h1".into(),
            value: Some(Bytes::from_static(b"one")),
        },
        Header {
            key: "h0".into(),
            value: None,
        },
    ];
    append(
        st,
        "work",
        1,
        vec![
            Record::from_value("first"),
            Record {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"poison")),
                headers: orig_headers.clone(),
                timestamp_ms: Some(ts),
                not_before_ms: None,
            },
            Record::from_value("fine"),
        ],
    )
    .await?;
    let l = lease(st, "work", 1, "g", 1, 1_000).await?;
    ensure_eq!(leased_offsets(&l), vec![0], "lease of the first record");
    ack_ok(st, "work", "g", l[0].token).await?;
    for d in 1..=2 {
        let l = lease(st, "work", 1, "g", 1, 1_000).await?;
        ensure_eq!(
            leased_offsets(&l),
            vec![1],
            "delivery {d} of the poison record"
        );
        ensure_eq!(deliveries(&l), vec![d], "delivery count {d}");
        if d == 1 {
            s.clock.advance(1_000);
        } else {
            st.release("work", "g", l[0].token, Duration::ZERO)
                .await
                .ctx("release")?;
        }
    }
    let dl_before = st.partition_offsets("dlq", 0).await.ctx("dlq offsets")?;
    ensure_eq!(
        dl_before.high_watermark,
        0,
        "dead-letter topic before the third lease"
    );
    let l = lease(st, "work", 1, "g", 1, 1_000).await?;
    ensure_eq!(
        leased_offsets(&l),
        vec![2],
        "the lease call that dead-letters offset 1 returns the next record"
    );
    let dead = fetch_all(st, "dlq", 0, 0).await?;
    ensure_eq!(dead.len(), 1, "records in the dead-letter topic");
    let d = &dead[0];
    ensure_eq!(d.key, Some(Bytes::from_static(b"k")), "dead-lettered key");
    ensure_eq!(
        d.value,
        Some(Bytes::from_static(b"poison")),
        "dead-lettered value"
    );
    ensure_eq!(d.timestamp_ms, ts, "dead-lettered timestamp");
    ensure_eq!(
        d.headers[..2].to_vec(),
        orig_headers,
        "original headers first, in order"
    );
    let want = [
        (dlh::SOURCE_TOPIC, "work"),
        (dlh::SOURCE_PARTITION, "1"),
        (dlh::SOURCE_OFFSET, "1"),
        (dlh::GROUP, "g"),
        (dlh::DELIVERY_COUNT, "2"),
    ];
    for (k, v) in want {
        ensure_eq!(
            header(&d.headers, k),
            Some(v.to_string()),
            "dead-letter header {k}"
        );
    }
    ensure_eq!(
        d.headers.len(),
        7,
        "header count of the dead-lettered record"
    );
    ensure_eq!(
        tuple(counts(st, "work", 1, "g").await?),
        (0, 1, 0, 2, 1),
        "counts after dead-lettering (available, leased, delayed, done, dead)"
    );
    s.clock.advance(3_600_000);
    let l = lease(st, "work", 1, "g", 5, 1_000).await?;
    ensure_eq!(
        leased_offsets(&l),
        vec![2],
        "a dead-lettered record is never leased again"
    );
    let other = lease(st, "work", 1, "other", 5, 1_000).await?;
    ensure_eq!(
        leased_offsets(&other),
        vec![0, 1, 2],
        "another group still sees the record"
    );
    s.finish().await.ctx("close")
}

/// **ordered_by_key_blocks_later_records**
pub async fn ordered_by_key_blocks_later_records(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "ordered_by_key_blocks_later_records").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let ordered = LeaseGroupConfig {
        read_uncommitted: false,
        ordered_by_key: true,
        ..LeaseGroupConfig::default()
    };
    st.set_lease_group("t", "g", ordered.clone())
        .await
        .ctx("set_lease_group")?;
    let rec = |k: Option<&'static str>, v: &str| Record {
        key: k.map(|k| Bytes::from_static(k.as_bytes())),
        ..Record::from_value(v.to_string())
    };
    append(
        st,
        "t",
        0,
        vec![
            rec(Some("a"), "0"),
            rec(Some("b"), "1"),
            rec(Some("a"), "2"),
            rec(None, "3"),
            rec(Some("b"), "4"),
            rec(None, "5"),
            rec(Some("c"), "6"),
        ],
    )
    .await?;
    let first = lease(st, "t", 0, "g", 2, MIN).await?;
    ensure_eq!(leased_offsets(&first), vec![0, 1], "first lease, max 2");
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 10, MIN).await?),
        vec![3, 5, 6],
        "second lease (a and b are locked by 0 and 1 in flight; keyless records are not ordered)"
    );
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 10, MIN).await?),
        Vec::<i64>::new(),
        "lease while the heads are in flight"
    );
    let by = |o: i64| first.iter().find(|l| l.record.offset == o).unwrap().token;
    ack_ok(st, "t", "g", by(0)).await?;
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 10, MIN).await?),
        vec![2],
        "after acking 0"
    );
    st.release("t", "g", by(1), Duration::from_millis(5_000))
        .await
        .ctx("release 1 with delay")?;
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 10, MIN).await?),
        Vec::<i64>::new(),
        "while 1 is delayed (4 stays blocked)"
    );
    s.clock.advance(5_000);
    let both = lease(st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&both),
        vec![1, 4],
        "after the delay of 1: both records of b in one call, in order"
    );
    st.release("t", "g", both[0].token, Duration::ZERO)
        .await
        .ctx("release 1 while 4 is in flight")?;
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 10, MIN).await?),
        Vec::<i64>::new(),
        "1 is visible again but 4 of its key is in flight: b stays locked"
    );
    ack_ok(st, "t", "g", both[1].token).await?;
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 10, MIN).await?),
        vec![1],
        "after acking 4"
    );
    // Several records of one key, with another key between them.
    topic(st, "v", 1).await?;
    st.set_lease_group("v", "g", ordered.clone())
        .await
        .ctx("set_lease_group(v)")?;
    append(
        st,
        "v",
        0,
        vec![
            rec(Some("x"), "0"),
            rec(Some("y"), "1"),
            rec(Some("x"), "2"),
            rec(Some("x"), "3"),
        ],
    )
    .await?;
    ensure_eq!(
        leased_offsets(&lease(st, "v", 0, "g", 3, MIN).await?),
        vec![0, 1, 2],
        "one call leases x's records in order, up to max"
    );
    ensure_eq!(
        leased_offsets(&lease(st, "v", 0, "g", 10, MIN).await?),
        Vec::<i64>::new(),
        "3 waits while x has records in flight"
    );
    let plain = lease(st, "t", 0, "plain", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&plain),
        vec![0, 1, 2, 3, 4, 5, 6],
        "a group without ordered_by_key"
    );
    // A record dead-lettered by a lease call is done, so the same call leases the next
    // record with its key.
    topic(st, "dlq", 1).await?;
    topic(st, "u", 1).await?;
    let dead_lettering = LeaseGroupConfig {
        read_uncommitted: false,
        ordered_by_key: true,
        max_deliveries: Some(1),
        dead_letter_topic: Some("dlq".into()),
    };
    st.set_lease_group("u", "g", dead_lettering)
        .await
        .ctx("set_lease_group(u)")?;
    append(st, "u", 0, vec![rec(Some("k"), "0"), rec(Some("k"), "1")]).await?;
    ensure_eq!(
        leased_offsets(&lease(st, "u", 0, "g", 1, 0).await?),
        vec![0],
        "first lease of u (visibility 0: it lapses at once)"
    );
    ensure_eq!(
        leased_offsets(&lease(st, "u", 0, "g", 1, 0).await?),
        vec![1],
        "lease of u that dead-letters 0 (its key no longer blocks 1)"
    );
    s.finish().await.ctx("close")
}

/// **not_before_delays_leasing**
pub async fn not_before_delays_leasing(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "not_before_delays_leasing").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    let now = clock_now(&s);
    let nb = |v: &str, at: Option<i64>| Record {
        not_before_ms: at,
        ..Record::from_value(v.to_string())
    };
    append(
        st,
        "t",
        0,
        vec![
            nb("later", Some(now + 5_000)),
            nb("plain", None),
            nb("now", Some(now)),
            nb("past", Some(now - 1)),
        ],
    )
    .await?;
    let l = lease(st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&l),
        vec![1, 2, 3],
        "lease before the not-before of offset 0"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (0, 3, 1, 0, 0),
        "counts (available, leased, delayed, done, dead)"
    );
    let all = fetch_all(st, "t", 0, 0).await?;
    ensure_eq!(all.len(), 4, "fetch ignores not-before");
    s.clock.advance(4_999);
    ensure_eq!(
        leased_offsets(&lease(st, "t", 0, "g", 10, MIN).await?),
        Vec::<i64>::new(),
        "1 ms before not-before"
    );
    s.clock.advance(1);
    let l = lease(st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(leased_offsets(&l), vec![0], "at not-before");
    ensure_eq!(
        deliveries(&l),
        vec![1],
        "delivery count of the delayed record"
    );
    ensure_eq!(
        l[0].first_leased_at_ms,
        now + 5_000,
        "first_leased_at_ms of the delayed record"
    );
    s.finish().await.ctx("close")
}

/// **lease_counts_add_up**
pub async fn lease_counts_add_up(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "lease_counts_add_up").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    topic(st, "dlq", 1).await?;
    let config = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(1),
        dead_letter_topic: Some("dlq".into()),
        ordered_by_key: false,
    };
    st.set_lease_group("t", "g", config)
        .await
        .ctx("set_lease_group")?;
    let now = clock_now(&s);
    let mut records: Vec<Record> = (0..8)
        .map(|i| Record::from_value(format!("r{i}")))
        .collect();
    for i in 8..10 {
        records.push(Record {
            not_before_ms: Some(now + MIN as i64),
            ..Record::from_value(format!("r{i}"))
        });
    }
    append(st, "t", 0, records).await?;
    let c = |s: &str| format!("counts {s} (available, leased, delayed, done, dead)");
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (8, 0, 2, 0, 0),
        "{}",
        c("at start")
    );
    let l = lease(st, "t", 0, "g", 4, 10_000).await?;
    ensure_eq!(leased_offsets(&l), vec![0, 1, 2, 3], "lease of 4");
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (4, 4, 2, 0, 0),
        "{}",
        c("after leasing 4")
    );
    ack_ok(st, "t", "g", l[0].token).await?;
    st.release("t", "g", l[1].token, Duration::from_millis(5_000))
        .await
        .ctx("release")?;
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (4, 2, 3, 1, 0),
        "{}",
        c("after ack and release")
    );
    s.clock.advance(10_000);
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (7, 0, 2, 1, 0),
        "{}",
        c("after leases lapsed")
    );
    let l = lease(st, "t", 0, "g", 1, 10_000).await?;
    ensure_eq!(
        leased_offsets(&l),
        vec![4],
        "lease that dead-letters 1, 2 and 3"
    );
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (3, 1, 2, 4, 3),
        "{}",
        c("after dead-lettering")
    );
    st.delete_records("t", 0, 3).await.ctx("delete_records")?;
    ensure_eq!(
        tuple(counts(st, "t", 0, "g").await?),
        (3, 1, 2, 1, 1),
        "{}",
        c("after delete_records(3)")
    );
    ensure_eq!(
        fetch_all(st, "dlq", 0, 0).await?.len(),
        3,
        "dead-lettered records"
    );
    s.finish().await.ctx("close")
}

/// **lease_state_survives_reopen**
pub async fn lease_state_survives_reopen(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "lease_state_survives_reopen").await?;
    topic(&s.store, "t", 1).await?;
    topic(&s.store, "dlq", 1).await?;
    let config = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(3),
        dead_letter_topic: Some("dlq".into()),
        ordered_by_key: true,
    };
    s.store
        .set_lease_group("t", "g", config.clone())
        .await
        .ctx("set_lease_group")?;
    let rec = |k: &str| Record::keyed(k.to_string(), format!("v-{k}"));
    append(
        &s.store,
        "t",
        0,
        vec![rec("a"), rec("b"), rec("c"), rec("d"), rec("a")],
    )
    .await?;
    let t0 = clock_now(&s);
    let l = lease(&s.store, "t", 0, "g", 3, 10_000).await?;
    ensure_eq!(leased_offsets(&l), vec![0, 1, 2], "lease of 3");
    ack_ok(&s.store, "t", "g", l[0].token).await?;
    s.store
        .release("t", "g", l[1].token, Duration::from_millis(5_000))
        .await
        .ctx("release")?;
    s.clock.advance(1);
    s.reopen().await.ctx("reopen")?;
    let st = s.store.clone();
    let mut want = BTreeMap::new();
    want.insert("g".to_string(), config);
    ensure_eq!(
        st.lease_groups("t").await.ctx("lease_groups")?,
        want,
        "lease groups after reopen"
    );
    let c = counts(&st, "t", 0, "g").await?;
    ensure!(
        tuple(c) == (2, 1, 1, 1, 0) || tuple(c) == (3, 0, 1, 1, 0),
        "counts after reopen: expected (2, 1, 1, 1, 0) or, if the in-flight lease came back, (3, 0, 1, 1, 0); got {:?}",
        tuple(c)
    );
    let res = st.ack("t", "g", &[l[0].token]).await.ctx("ack")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "ack of a record acked before reopen: expected [Err(LeaseExpired)], got {res:?}"
    );
    s.clock.advance(10_000);
    let again = lease(&st, "t", 0, "g", 10, 10_000).await?;
    ensure_eq!(
        leased_offsets(&again),
        vec![1, 2, 3, 4],
        "lease after reopen (0 acked; 4 unblocked because 0 is done)"
    );
    ensure_eq!(
        deliveries(&again),
        vec![2, 2, 1, 1],
        "delivery counts after reopen"
    );
    ensure_eq!(
        again[0].first_leased_at_ms,
        t0,
        "first_leased_at_ms kept over reopen"
    );
    s.finish().await.ctx("close")
}

/// **lease_floor_is_first_unfinished**
pub async fn lease_floor_is_first_unfinished(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "lease_floor_is_first_unfinished").await?;
    let st = &s.store;
    topic(st, "t", 1).await?;
    append_values(st, "t", 0, &["r0", "r1", "r2", "r3", "r4"]).await?;
    let floor = |g: &'static str| async move {
        st.lease_floor("t", 0, g)
            .await
            .ctx(&format!("lease_floor t/0 {g}"))
    };
    ensure_eq!(floor("g").await?, 0, "floor before any lease");
    let l = lease(st, "t", 0, "g", 3, MIN).await?;
    ensure_eq!(floor("g").await?, 0, "floor with 0..3 leased, none acked");
    ack_ok(st, "t", "g", l[0].token).await?;
    ack_ok(st, "t", "g", l[2].token).await?;
    ensure_eq!(floor("g").await?, 1, "floor after acking 0 and 2");
    ack_ok(st, "t", "g", l[1].token).await?;
    ensure_eq!(floor("g").await?, 3, "floor after acking 0, 1 and 2");
    ensure_eq!(
        floor("other").await?,
        0,
        "floor of a group that never leased"
    );
    st.delete_records("t", 0, 4).await.ctx("delete_records")?;
    ensure_eq!(
        floor("other").await?,
        4,
        "floor of an idle group after delete_records(4)"
    );
    let l = lease(st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(leased_offsets(&l), vec![4], "lease after delete_records(4)");
    ack_ok(st, "t", "g", l[0].token).await?;
    ensure_eq!(
        floor("g").await?,
        5,
        "floor with everything acked (the high watermark)"
    );
    ensure_err!(
        st.lease_floor("missing", 0, "g").await,
        StoreError::UnknownTopic(_),
        "lease_floor of a missing topic"
    );
    ensure_err!(
        st.lease_floor("t", 1, "g").await,
        StoreError::UnknownTopic(_),
        "lease_floor of a missing partition"
    );
    s.finish().await.ctx("close")
}

/// **max_deliveries_without_dead_letter_topic_archives**
pub async fn max_deliveries_without_dead_letter_topic_archives(
    backend: Arc<dyn Backend>,
) -> CheckResult {
    let mut s = fresh(backend, "max_deliveries_without_dead_letter_topic_archives").await?;
    topic(&s.store, "work", 2).await?;
    topic(&s.store, "other", 1).await?;
    let st = s.store.clone();
    let config = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(2),
        dead_letter_topic: None,
        ordered_by_key: false,
    };
    st.set_lease_group("work", "g", config.clone())
        .await
        .ctx("set_lease_group with max_deliveries and no dead-letter topic")?;
    ensure_eq!(
        st.lease_groups("work")
            .await
            .ctx("lease_groups")?
            .get("g")
            .cloned(),
        Some(config.clone()),
        "lease_groups entry of g"
    );
    append_values(&st, "work", 1, &["first", "poison", "fine"]).await?;
    append_values(&st, "work", 0, &["p0"]).await?;
    append_values(&st, "other", 0, &["o0"]).await?;
    let topics_before = st.list_topics().await.ctx("list_topics")?;
    let l = lease(&st, "work", 1, "g", 1, 1_000).await?;
    ensure_eq!(leased_offsets(&l), vec![0], "lease of the first record");
    ack_ok(&st, "work", "g", l[0].token).await?;
    let mut last = None;
    for d in 1..=2 {
        let l = lease(&st, "work", 1, "g", 1, 1_000).await?;
        ensure_eq!(
            leased_offsets(&l),
            vec![1],
            "delivery {d} of the poison record"
        );
        ensure_eq!(deliveries(&l), vec![d], "delivery count {d}");
        last = Some(l[0].token);
        s.clock.advance(1_000);
    }
    let last = last.expect("two deliveries");
    ensure_eq!(
        tuple(counts(&st, "work", 1, "g").await?),
        (2, 0, 0, 1, 0),
        "counts after two lapsed deliveries (available, leased, delayed, done, dead)"
    );
    let l = lease(&st, "work", 1, "g", 1, 1_000).await?;
    ensure_eq!(
        leased_offsets(&l),
        vec![2],
        "the lease call that archives offset 1 returns the next record"
    );
    ensure_eq!(deliveries(&l), vec![1], "delivery count of the next record");
    ensure_eq!(
        tuple(counts(&st, "work", 1, "g").await?),
        (0, 1, 0, 2, 1),
        "counts after archiving (available, leased, delayed, done, dead)"
    );
    ensure_eq!(
        st.lease_floor("work", 1, "g").await.ctx("lease_floor")?,
        2,
        "lease floor after archiving offset 1 (0 acked)"
    );
    // Copied nowhere: no topic appeared and no partition grew.
    ensure_eq!(
        st.list_topics().await.ctx("list_topics")?,
        topics_before,
        "topics after archiving (nothing may be created for the archived record)"
    );
    for (t, p, hw) in [("work", 0, 1), ("work", 1, 3), ("other", 0, 1)] {
        ensure_eq!(
            st.partition_offsets(t, p)
                .await
                .ctx("partition_offsets")?
                .high_watermark,
            hw,
            "high watermark of {t}/{p} after archiving (the record is copied nowhere)"
        );
    }
    let res = st
        .ack("work", "g", &[last])
        .await
        .ctx("ack of the archived record's last token")?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "ack with the lapsed token of an archived record: expected [Err(LeaseExpired)], got {res:?}"
    );
    ack_ok(&st, "work", "g", l[0].token).await?;
    s.clock.advance(3_600_000);
    ensure_eq!(
        leased_offsets(&lease(&st, "work", 1, "g", 5, 1_000).await?),
        Vec::<i64>::new(),
        "an archived record is never leased again"
    );
    ensure_eq!(
        tuple(counts(&st, "work", 1, "g").await?),
        (0, 0, 0, 3, 1),
        "counts with everything done (available, leased, delayed, done, dead)"
    );
    let other = lease(&st, "work", 1, "other", 5, MIN).await?;
    ensure_eq!(
        leased_offsets(&other),
        vec![0, 1, 2],
        "another group still sees the archived record"
    );
    ensure_eq!(
        deliveries(&other),
        vec![1, 1, 1],
        "delivery counts of the other group"
    );
    ensure_eq!(
        leased_offsets(&lease(&st, "work", 0, "g", 5, MIN).await?),
        vec![0],
        "the group's other partition is untouched"
    );
    s.reopen().await.ctx("reopen")?;
    let st = s.store.clone();
    ensure_eq!(
        st.lease_groups("work")
            .await
            .ctx("lease_groups after reopen")?
            .get("g")
            .cloned(),
        Some(config.clone()),
        "lease_groups entry of g after reopen"
    );
    ensure_eq!(
        tuple(counts(&st, "work", 1, "g").await?),
        (0, 0, 0, 3, 1),
        "counts after reopen (available, leased, delayed, done, dead)"
    );
    ensure_eq!(
        leased_offsets(&lease(&st, "work", 1, "g", 5, 1_000).await?),
        Vec::<i64>::new(),
        "an archived record is not leased after reopen"
    );
    // The limit holds after reopen too: a record delivered twice is archived, not leased.
    append_values(&st, "work", 1, &["again"]).await?;
    for d in 1..=2 {
        let l = lease(&st, "work", 1, "g", 1, 1_000).await?;
        ensure_eq!(leased_offsets(&l), vec![3], "delivery {d} of offset 3");
        s.clock.advance(1_000);
    }
    ensure_eq!(
        leased_offsets(&lease(&st, "work", 1, "g", 1, 1_000).await?),
        Vec::<i64>::new(),
        "the lease call that archives offset 3 (nothing else to lease)"
    );
    ensure_eq!(
        tuple(counts(&st, "work", 1, "g").await?),
        (0, 0, 0, 4, 2),
        "counts after archiving offset 3 (available, leased, delayed, done, dead)"
    );
    ensure_eq!(
        st.list_topics().await.ctx("list_topics")?,
        topics_before,
        "topics after archiving again"
    );
    s.finish().await.ctx("close")
}

/// Acks `token` and fails unless the ack answers `LeaseExpired`.
async fn ack_expired(
    store: &Arc<dyn broker_api::Store>,
    topic: &str,
    group: &str,
    token: broker_api::LeaseToken,
    what: &str,
) -> CheckStep {
    let res = store
        .ack(topic, group, &[token])
        .await
        .ctx(&format!("ack {what}"))?;
    ensure!(
        matches!(res.as_slice(), [Err(StoreError::LeaseExpired)]),
        "ack {what} (offset {} of partition {}): expected [Err(LeaseExpired)], got {res:?}",
        token.offset,
        token.partition
    );
    Ok(())
}

/// Fails unless release and extend with `token` both answer `LeaseExpired`.
async fn release_extend_expired(
    store: &Arc<dyn broker_api::Store>,
    topic: &str,
    group: &str,
    token: broker_api::LeaseToken,
    what: &str,
) -> CheckStep {
    ensure_err!(
        store.release(topic, group, token, Duration::ZERO).await,
        StoreError::LeaseExpired,
        "release {what} (offset {})",
        token.offset
    );
    ensure_err!(
        store
            .extend(topic, group, token, Duration::from_secs(60))
            .await,
        StoreError::LeaseExpired,
        "extend {what} (offset {})",
        token.offset
    );
    Ok(())
}

/// **lease_start_can_be_reset**
pub async fn lease_start_can_be_reset(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "lease_start_can_be_reset").await?;
    topic(&s.store, "t", 2).await?;
    topic(&s.store, "dlq", 1).await?;
    let st = s.store.clone();
    let config = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(1),
        dead_letter_topic: Some("dlq".into()),
        ordered_by_key: false,
    };
    st.set_lease_group("t", "g", config.clone())
        .await
        .ctx("set_lease_group")?;
    append_values(&st, "t", 0, &["r0", "r1", "r2", "r3"]).await?;
    append_values(&st, "t", 0, &["r4", "r5", "r6", "r7"]).await?;
    append_values(&st, "t", 1, &["s0", "s1", "s2"]).await?;
    let reset = |p: i32, g: &'static str, start: i64| {
        let st = st.clone();
        async move {
            st.reset_lease_start("t", p, g, start)
                .await
                .ctx(&format!("reset_lease_start(t/{p}, {g}, {start})"))
        }
    };
    ensure_err!(
        st.reset_lease_start("missing", 0, "g", 0).await,
        StoreError::UnknownTopic(_),
        "reset_lease_start on a missing topic"
    );
    for p in [2, -1] {
        ensure_err!(
            st.reset_lease_start("t", p, "g", 0).await,
            StoreError::InvalidArgument(_),
            "reset_lease_start on partition {p} of a topic of 2 partitions"
        );
    }
    // Every kind of state on t/0: acked (0, 2), dead-lettered (1), released with a delay
    // (3), in flight (4), never leased (5, 6, 7).
    let a = lease(&st, "t", 0, "g", 4, 1_000).await?;
    ensure_eq!(leased_offsets(&a), vec![0, 1, 2, 3], "first lease of t/0");
    let res = st
        .ack("t", "g", &[a[0].token, a[2].token])
        .await
        .ctx("ack 0 and 2")?;
    ensure!(
        matches!(res.as_slice(), [Ok(()), Ok(())]),
        "ack of 0 and 2: expected [Ok, Ok], got {res:?}"
    );
    st.release("t", "g", a[3].token, Duration::from_millis(MIN))
        .await
        .ctx("release 3 with a delay")?;
    s.clock.advance(1_000);
    let b = lease(&st, "t", 0, "g", 1, MIN).await?;
    ensure_eq!(
        leased_offsets(&b),
        vec![4],
        "the lease that dead-letters 1 (max_deliveries 1) and leases 4"
    );
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (3, 1, 1, 3, 1),
        "counts of t/0 before any reset (available, leased, delayed, done, dead)"
    );
    let p1 = lease(&st, "t", 1, "g", 2, MIN).await?;
    ensure_eq!(leased_offsets(&p1), vec![0, 1], "lease of t/1");
    let h = lease(&st, "t", 0, "h", 2, MIN).await?;
    ensure_eq!(leased_offsets(&h), vec![0, 1], "lease of t/0 by group h");

    // Backward: everything from 1 on is as if never leased.
    ensure_eq!(reset(0, "g", 1).await?, 1, "reset to 1 returns 1");
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (7, 0, 0, 1, 0),
        "counts after resetting back to 1 (available, leased, delayed, done, dead): acked, \
         dead-lettered, delayed and in-flight records from 1 on are leasable"
    );
    ensure_eq!(
        st.lease_floor("t", 0, "g").await.ctx("lease_floor")?,
        1,
        "lease floor after resetting back to 1"
    );
    ack_expired(
        &st,
        "t",
        "g",
        b[0].token,
        "of a lease taken before the reset",
    )
    .await?;
    release_extend_expired(
        &st,
        "t",
        "g",
        b[0].token,
        "of a lease taken before the reset",
    )
    .await?;
    // The partition's other records, the other partition and the other group: untouched.
    st.extend("t", "g", p1[0].token, Duration::from_millis(MIN))
        .await
        .ctx("extend of a lease of t/1 (another partition) after the reset of t/0")?;
    ensure_eq!(
        tuple(counts(&st, "t", 1, "g").await?),
        (1, 2, 0, 0, 0),
        "counts of t/1 after the reset of t/0"
    );
    st.extend("t", "h", h[0].token, Duration::from_millis(MIN))
        .await
        .ctx("extend of a lease of group h after the reset of g")?;
    ensure_eq!(
        tuple(counts(&st, "t", 0, "h").await?),
        (6, 2, 0, 0, 0),
        "counts of group h after the reset of g"
    );
    let now = clock_now(&s);
    let c = lease(&st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&c),
        vec![1, 2, 3, 4, 5, 6, 7],
        "lease after resetting back to 1"
    );
    ensure_eq!(
        deliveries(&c),
        vec![1; 7],
        "delivery counts after the reset (as if never leased; max_deliveries 1 dead-letters none)"
    );
    for l in &c {
        ensure_eq!(
            l.first_leased_at_ms,
            now,
            "first_leased_at_ms of offset {} after the reset",
            l.record.offset
        );
    }
    ensure_eq!(
        st.partition_offsets("dlq", 0)
            .await
            .ctx("dlq offsets")?
            .high_watermark,
        1,
        "dead-lettered records (only the one before the reset)"
    );

    // Forward: records below 5 are done, records from 5 on leasable as if never leased.
    ensure_eq!(reset(0, "g", 5).await?, 5, "reset to 5 returns 5");
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (3, 0, 0, 5, 0),
        "counts after resetting forward to 5 (available, leased, delayed, done, dead)"
    );
    ensure_eq!(
        st.lease_floor("t", 0, "g").await.ctx("lease_floor")?,
        5,
        "lease floor after resetting forward to 5"
    );
    ack_expired(&st, "t", "g", c[0].token, "of a lease below the new start").await?;
    ack_expired(&st, "t", "g", c[4].token, "of a lease at the new start").await?;
    release_extend_expired(&st, "t", "g", c[5].token, "of a lease above the new start").await?;
    let d = lease(&st, "t", 0, "g", 10, 1_000).await?;
    ensure_eq!(
        leased_offsets(&d),
        vec![5, 6, 7],
        "lease after resetting forward to 5"
    );
    ensure_eq!(deliveries(&d), vec![1, 1, 1], "delivery counts after it");

    // Clamped to the log start from below.
    st.delete_records("t", 0, 2).await.ctx("delete_records")?;
    ensure_eq!(
        reset(0, "g", 0).await?,
        2,
        "reset to 0 with the log start at 2 returns the log start"
    );
    ensure_eq!(
        reset(0, "g", -5).await?,
        2,
        "reset to -5 returns the log start"
    );
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (6, 0, 0, 0, 0),
        "counts after resetting to the log start (available, leased, delayed, done, dead)"
    );
    ensure_eq!(
        st.lease_floor("t", 0, "g").await.ctx("lease_floor")?,
        2,
        "lease floor after resetting to the log start"
    );
    ack_expired(
        &st,
        "t",
        "g",
        d[0].token,
        "of a lease taken before the reset",
    )
    .await?;
    let e = lease(&st, "t", 0, "g", 1, MIN).await?;
    ensure_eq!(
        leased_offsets(&e),
        vec![2],
        "lease after resetting to the log start"
    );
    ensure_eq!(deliveries(&e), vec![1], "its delivery count");

    // Clamped to the high watermark from above.
    ensure_eq!(
        reset(0, "g", 100).await?,
        8,
        "reset to 100 with the high watermark at 8 returns the high watermark"
    );
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (0, 0, 0, 6, 0),
        "counts after resetting to the high watermark"
    );
    ensure_eq!(
        st.lease_floor("t", 0, "g").await.ctx("lease_floor")?,
        8,
        "lease floor after resetting to the high watermark"
    );
    ack_expired(
        &st,
        "t",
        "g",
        e[0].token,
        "of a lease below the high watermark",
    )
    .await?;
    ensure_eq!(
        leased_offsets(&lease(&st, "t", 0, "g", 10, MIN).await?),
        Vec::<i64>::new(),
        "lease after resetting to the high watermark"
    );
    append_values(&st, "t", 0, &["r8", "r9"]).await?;
    let f = lease(&st, "t", 0, "g", 10, 1_000).await?;
    ensure_eq!(
        leased_offsets(&f),
        vec![8, 9],
        "records appended after resetting to the high watermark"
    );
    ensure_eq!(deliveries(&f), vec![1, 1], "their delivery counts");

    // A group that never leased: it gets state and is listed with the default config.
    ensure_eq!(reset(1, "fresh", 1).await?, 1, "reset of a new group");
    let groups = st.lease_groups("t").await.ctx("lease_groups")?;
    ensure_eq!(
        groups.get("fresh"),
        Some(&LeaseGroupConfig::default()),
        "lease_groups entry of a group that was only reset"
    );
    ensure_eq!(
        groups.get("g"),
        Some(&config),
        "lease_groups entry of g (its config kept by resets)"
    );
    ensure_eq!(
        tuple(counts(&st, "t", 1, "fresh").await?),
        (2, 0, 0, 1, 0),
        "counts of the new group after its reset"
    );

    // Back again over records leased and lapsed: their tokens must not ack (nor say
    // LeaseLapsed) after the reset, also after reopen.
    s.clock.advance(1_000);
    ensure_eq!(reset(0, "g", 3).await?, 3, "reset back to 3");
    s.reopen().await.ctx("reopen")?;
    let st = s.store.clone();
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (7, 0, 0, 1, 0),
        "counts after resetting back to 3 and reopening (available, leased, delayed, done, dead)"
    );
    ensure_eq!(
        st.lease_floor("t", 0, "g").await.ctx("lease_floor")?,
        3,
        "lease floor after reopen"
    );
    let groups = st.lease_groups("t").await.ctx("lease_groups")?;
    for (name, want) in [
        ("g", &config),
        ("fresh", &LeaseGroupConfig::default()),
        ("h", &LeaseGroupConfig::default()),
    ] {
        ensure_eq!(
            groups.get(name),
            Some(want),
            "lease_groups entry of {name} after reopen"
        );
    }
    release_extend_expired(
        &st,
        "t",
        "g",
        f[0].token,
        "of a lapsed lease before the reset",
    )
    .await?;
    ack_expired(
        &st,
        "t",
        "g",
        f[1].token,
        "of a lapsed lease before the reset",
    )
    .await?;
    ensure_eq!(
        tuple(counts(&st, "t", 1, "fresh").await?),
        (2, 0, 0, 1, 0),
        "counts of the new group after reopen"
    );
    let g = lease(&st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&g),
        vec![3, 4, 5, 6, 7, 8, 9],
        "lease after the reset and reopen"
    );
    ensure_eq!(
        deliveries(&g),
        vec![1; 7],
        "delivery counts after the reset and reopen"
    );
    s.finish().await.ctx("close")
}

/// **lease_groups_can_be_deleted**
pub async fn lease_groups_can_be_deleted(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "lease_groups_can_be_deleted").await?;
    topic(&s.store, "t", 2).await?;
    topic(&s.store, "u", 1).await?;
    topic(&s.store, "dlq", 1).await?;
    let st = s.store.clone();
    let doomed = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(3),
        dead_letter_topic: Some("dlq".into()),
        ordered_by_key: true,
    };
    let kept = LeaseGroupConfig {
        read_uncommitted: false,
        ordered_by_key: true,
        ..LeaseGroupConfig::default()
    };
    let same_name = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(5),
        dead_letter_topic: Some("dlq".into()),
        ordered_by_key: false,
    };
    for (t, g, c) in [
        ("t", "g", &doomed),
        ("t", "keep", &kept),
        ("u", "g", &same_name),
    ] {
        st.set_lease_group(t, g, c.clone())
            .await
            .ctx(&format!("set_lease_group({t}, {g})"))?;
    }
    append_values(&st, "t", 0, &["a", "b", "c"]).await?;
    append_values(&st, "t", 1, &["d", "e"]).await?;
    append_values(&st, "u", 0, &["f"]).await?;
    let g0 = lease(&st, "t", 0, "g", 2, MIN).await?;
    ensure_eq!(leased_offsets(&g0), vec![0, 1], "lease of t/0 by g");
    ack_ok(&st, "t", "g", g0[0].token).await?;
    let g1 = lease(&st, "t", 1, "g", 1, MIN).await?;
    ensure_eq!(leased_offsets(&g1), vec![0], "lease of t/1 by g");
    let k = lease(&st, "t", 0, "keep", 1, MIN).await?;
    ensure_eq!(leased_offsets(&k), vec![0], "lease of t/0 by keep");
    let u = lease(&st, "u", 0, "g", 1, MIN).await?;
    ensure_eq!(leased_offsets(&u), vec![0], "lease of u/0 by g");

    ensure_err!(
        st.delete_lease_group("missing", "g").await,
        StoreError::UnknownTopic(_),
        "delete_lease_group on a missing topic"
    );
    ensure_eq!(
        st.delete_lease_group("t", "never").await.ctx("delete")?,
        false,
        "delete_lease_group of a group that has neither config nor state"
    );
    ensure_eq!(
        st.delete_lease_group("t", "g").await.ctx("delete")?,
        true,
        "delete_lease_group of a group with config and state"
    );
    let mut want = BTreeMap::new();
    want.insert("keep".to_string(), kept.clone());
    ensure_eq!(
        st.lease_groups("t").await.ctx("lease_groups")?,
        want,
        "lease groups of t after deleting g"
    );
    let mut want_u = BTreeMap::new();
    want_u.insert("g".to_string(), same_name.clone());
    ensure_eq!(
        st.lease_groups("u").await.ctx("lease_groups")?,
        want_u,
        "lease groups of u (a group of the same name on another topic is untouched)"
    );
    ack_expired(&st, "t", "g", g0[1].token, "of t/0 by the deleted group").await?;
    ack_expired(&st, "t", "g", g1[0].token, "of t/1 by the deleted group").await?;
    release_extend_expired(&st, "t", "g", g1[0].token, "of t/1 by the deleted group").await?;
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (3, 0, 0, 0, 0),
        "counts of t/0 for the deleted group (available, leased, delayed, done, dead)"
    );
    ensure_eq!(
        tuple(counts(&st, "t", 1, "g").await?),
        (2, 0, 0, 0, 0),
        "counts of t/1 for the deleted group"
    );
    ensure_eq!(
        st.lease_floor("t", 0, "g").await.ctx("lease_floor")?,
        0,
        "lease floor of the deleted group"
    );
    st.extend("t", "keep", k[0].token, Duration::from_millis(MIN))
        .await
        .ctx("extend of another group's lease after the delete")?;
    ensure_eq!(
        tuple(counts(&st, "t", 0, "keep").await?),
        (2, 1, 0, 0, 0),
        "counts of another group after the delete"
    );
    st.extend("u", "g", u[0].token, Duration::from_millis(MIN))
        .await
        .ctx("extend of the same group name's lease on another topic after the delete")?;
    ensure_eq!(
        tuple(counts(&st, "u", 0, "g").await?),
        (0, 1, 0, 0, 0),
        "counts of the same group name on another topic"
    );
    let now = clock_now(&s);
    let again = lease(&st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&again),
        vec![0, 1, 2],
        "lease of t/0 by the deleted group: from the log start, like a new group"
    );
    ensure_eq!(
        deliveries(&again),
        vec![1, 1, 1],
        "delivery counts like a new group"
    );
    ensure_eq!(
        again[1].first_leased_at_ms,
        now,
        "first_leased_at_ms like a new group"
    );
    ensure_eq!(
        st.lease_groups("t")
            .await
            .ctx("lease_groups")?
            .get("g")
            .cloned(),
        Some(LeaseGroupConfig::default()),
        "the group leasing again is listed with the default config, not its deleted one"
    );
    let tokens: Vec<_> = again.iter().map(|l| l.token).collect();
    let res = st.ack("t", "g", &tokens).await.ctx("ack all")?;
    ensure!(
        res.iter().all(|r| r.is_ok()),
        "acks of the new leases: {res:?}"
    );
    // A group with a config only.
    st.set_lease_group("t", "config-only", kept.clone())
        .await
        .ctx("set_lease_group(config-only)")?;
    ensure_eq!(
        st.delete_lease_group("t", "config-only")
            .await
            .ctx("delete")?,
        true,
        "delete_lease_group of a group with a config and no state"
    );
    ensure_eq!(
        st.lease_groups("t")
            .await
            .ctx("lease_groups")?
            .contains_key("config-only"),
        false,
        "whether the deleted config-only group is listed"
    );
    // The delete survives reopen, and the group starts over from the log start.
    st.delete_records("t", 0, 1).await.ctx("delete_records")?;
    ensure_eq!(
        st.delete_lease_group("t", "g").await.ctx("delete")?,
        true,
        "second delete_lease_group of g (it holds state again)"
    );
    ensure_eq!(
        st.delete_lease_group("t", "g").await.ctx("delete")?,
        false,
        "delete_lease_group of g right after deleting it"
    );
    s.reopen().await.ctx("reopen")?;
    let st = s.store.clone();
    ensure_eq!(
        st.lease_groups("t")
            .await
            .ctx("lease_groups after reopen")?,
        want,
        "lease groups of t after the delete and reopen"
    );
    ensure_eq!(
        st.lease_groups("u")
            .await
            .ctx("lease_groups after reopen")?,
        want_u,
        "lease groups of u after reopen"
    );
    ensure_eq!(
        st.lease_floor("t", 0, "g").await.ctx("lease_floor")?,
        1,
        "lease floor of the deleted group after reopen (the log start)"
    );
    ensure_eq!(
        tuple(counts(&st, "t", 0, "g").await?),
        (2, 0, 0, 0, 0),
        "counts of t/0 for the deleted group after reopen"
    );
    ack_expired(&st, "t", "g", again[2].token, "acked before the delete").await?;
    let last = lease(&st, "t", 0, "g", 10, MIN).await?;
    ensure_eq!(
        leased_offsets(&last),
        vec![1, 2],
        "lease by the deleted group after reopen (from the log start)"
    );
    ensure_eq!(deliveries(&last), vec![1, 1], "its delivery counts");
    s.finish().await.ctx("close")
}
