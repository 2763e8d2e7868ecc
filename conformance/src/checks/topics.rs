//! Checks of the Topics rules.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, Durability, FetchLimits, LeaseGroupConfig, LeaseToken, OffsetCommit, Record,
    StoreError, TopicConfig,
};

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// **topic_names_are_validated**
pub async fn topic_names_are_validated(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "topic_names_are_validated").await?;
    let long_bad = "x".repeat(250);
    for bad in [
        "",
        ".",
        "..",
        "a b",
        "a/b",
        "é",
        "tab\t",
        "a*",
        long_bad.as_str(),
    ] {
        ensure_err!(
            s.store.create_topic(bad, TopicConfig::default()).await,
            StoreError::InvalidArgument(_),
            "create_topic({bad:?})"
        );
    }
    let long_good = "y".repeat(249);
    let good = ["a", "a.b_c-D9", "...", "_-", long_good.as_str()];
    for name in good {
        topic(&s.store, name, 1).await?;
    }
    let listed: Vec<String> = s
        .store
        .list_topics()
        .await
        .ctx("list_topics")?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut want: Vec<String> = good.iter().map(|n| n.to_string()).collect();
    want.sort();
    ensure_eq!(listed, want, "topics after creating only valid names");
    s.finish().await.ctx("close")
}

/// **create_topic_requires_partitions**
pub async fn create_topic_requires_partitions(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "create_topic_requires_partitions").await?;
    ensure_err!(
        s.store
            .create_topic("zero", TopicConfig::with_partitions(0))
            .await,
        StoreError::InvalidArgument(_),
        "create_topic with 0 partitions"
    );
    ensure_err!(
        s.store.describe_topic("zero").await,
        StoreError::UnknownTopic(_),
        "describe a topic whose creation failed"
    );
    let info = s
        .store
        .create_topic("three", TopicConfig::with_partitions(3))
        .await
        .ctx("create_topic with 3 partitions")?;
    ensure_eq!(info.config.partitions, 3, "partitions of the created topic");
    for p in 0..3 {
        let r = append_values(&s.store, "three", p, &["x"]).await?;
        ensure_eq!(r.base_offset, 0, "first offset of partition {p}");
    }
    s.finish().await.ctx("close")
}

/// **duplicate_topic_is_rejected**
pub async fn duplicate_topic_is_rejected(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "duplicate_topic_is_rejected").await?;
    topic(&s.store, "dup", 1).await?;
    append_values(&s.store, "dup", 0, &["kept"]).await?;
    ensure_err!(
        s.store
            .create_topic("dup", TopicConfig::with_partitions(4))
            .await,
        StoreError::TopicExists(_),
        "creating an existing topic"
    );
    let info = s.store.describe_topic("dup").await.ctx("describe")?;
    ensure_eq!(
        info.config,
        TopicConfig::with_partitions(1),
        "config after the refused duplicate"
    );
    let recs = fetch_all(&s.store, "dup", 0, 0).await?;
    ensure_eq!(
        values(&recs),
        vec!["kept"],
        "records after the refused duplicate"
    );
    s.finish().await.ctx("close")
}

fn rich_config(partitions: u32, tag: &str) -> TopicConfig {
    let mut c = TopicConfig::with_partitions(partitions);
    c.max_record_bytes = 4096;
    c.retention_ms = Some(86_400_000);
    c.retention_bytes = Some(1 << 30);
    c.durability = Durability::Always;
    c.segment_bytes = Some(1 << 20);
    c.segment_ms = Some(3_600_000);
    c.attributes.insert("tag".into(), tag.into());
    c.attributes.insert("VisibilityTimeout".into(), "30".into());
    c
}

/// **topics_are_listed_and_described**
pub async fn topics_are_listed_and_described(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "topics_are_listed_and_described").await?;
    let configs = [
        ("beta", rich_config(2, "b")),
        ("alpha", TopicConfig::default()),
        ("gamma", {
            let mut c = rich_config(1, "g");
            c.durability = Durability::Never;
            c.retention_ms = None;
            c
        }),
    ];
    for (name, config) in &configs {
        let info = s
            .store
            .create_topic(name, config.clone())
            .await
            .ctx(&format!("create_topic({name})"))?;
        ensure_eq!(info.name, *name, "name returned by create_topic");
        ensure_eq!(
            info.config,
            *config,
            "config returned by create_topic({name})"
        );
    }
    let listed = s.store.list_topics().await.ctx("list_topics")?;
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    ensure_eq!(names, vec!["alpha", "beta", "gamma"], "list_topics order");
    for (name, config) in &configs {
        let listed_cfg = &listed.iter().find(|t| t.name == *name).unwrap().config;
        ensure_eq!(listed_cfg, config, "listed config of {name}");
        let info = s.store.describe_topic(name).await.ctx("describe_topic")?;
        ensure_eq!(info.config, *config, "described config of {name}");
    }
    let mut updated = rich_config(2, "b2");
    updated.durability = Durability::Interval { ms: 7 };
    updated.retention_ms = Some(1_000);
    let info = s
        .store
        .update_topic_config("beta", updated.clone())
        .await
        .ctx("update_topic_config(beta)")?;
    ensure_eq!(
        info.config,
        updated,
        "config returned by update_topic_config"
    );
    let info = s.store.describe_topic("beta").await.ctx("describe_topic")?;
    ensure_eq!(info.config, updated, "described config after update");
    ensure_err!(
        s.store
            .update_topic_config("beta", rich_config(1, "b1"))
            .await,
        StoreError::InvalidArgument(_),
        "update_topic_config shrinking partitions from 2 to 1"
    );
    let info = s.store.describe_topic("beta").await.ctx("describe_topic")?;
    ensure_eq!(
        info.config,
        updated,
        "config after a refused partition change"
    );
    s.finish().await.ctx("close")
}

/// **unknown_topic_is_reported**
pub async fn unknown_topic_is_reported(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "unknown_topic_is_reported").await?;
    let st = &s.store;
    topic(st, "known", 2).await?;
    append_values(st, "known", 0, &["a"]).await?;
    let mut wrong = Vec::new();
    macro_rules! expect_unknown {
        ($what:expr, $call:expr) => {
            match $call {
                Err(StoreError::UnknownTopic(_)) => {}
                other => wrong.push(format!("{}: expected UnknownTopic, got {:?}", $what, other)),
            }
        };
    }
    let ms = Duration::from_millis(10);
    let rec = || AppendBatch::new(vec![Record::from_value("x")]);
    for (t, p) in [("missing", 0), ("known", 2), ("known", -1)] {
        let at = format!("{t}/{p}");
        let token = LeaseToken {
            partition: p,
            offset: 0,
            nonce: 1,
        };
        expect_unknown!(format!("append {at}"), st.append(t, p, rec()).await);
        expect_unknown!(
            format!("fetch {at}"),
            st.fetch(t, p, 0, FetchLimits::default()).await
        );
        expect_unknown!(format!("wait_for {at}"), st.wait_for(t, p, 5, ms).await);
        expect_unknown!(
            format!("partition_offsets {at}"),
            st.partition_offsets(t, p).await
        );
        expect_unknown!(
            format!("offset_for_timestamp {at}"),
            st.offset_for_timestamp(t, p, 0).await
        );
        expect_unknown!(
            format!("max_timestamp_offset {at}"),
            st.max_timestamp_offset(t, p).await
        );
        let commit = OffsetCommit {
            topic: t.into(),
            partition: p,
            offset: 1,
            leader_epoch: None,
            metadata: String::new(),
        };
        expect_unknown!(
            format!("commit_offsets {at}"),
            st.commit_offsets("g", &[commit]).await
        );
        expect_unknown!(
            format!("committed_offset {at}"),
            st.committed_offset("g", t, p).await
        );
        expect_unknown!(format!("lease {at}"), st.lease(t, p, "g", 1, ms).await);
        match st.ack(t, "g", &[token]).await {
            Err(StoreError::UnknownTopic(_)) => {}
            Ok(v) if matches!(v.as_slice(), [Err(StoreError::UnknownTopic(_))]) => {}
            other => wrong.push(format!("ack {at}: expected UnknownTopic, got {other:?}")),
        }
        expect_unknown!(format!("release {at}"), st.release(t, "g", token, ms).await);
        expect_unknown!(format!("extend {at}"), st.extend(t, "g", token, ms).await);
        expect_unknown!(
            format!("lease_counts {at}"),
            st.lease_counts(t, p, "g").await
        );
        expect_unknown!(
            format!("delete_records {at}"),
            st.delete_records(t, p, 0).await
        );
    }
    expect_unknown!("describe_topic missing", st.describe_topic("missing").await);
    expect_unknown!("delete_topic missing", st.delete_topic("missing").await);
    expect_unknown!(
        "update_topic_config missing",
        st.update_topic_config("missing", TopicConfig::default())
            .await
    );
    expect_unknown!(
        "set_lease_group on a missing topic",
        st.set_lease_group("missing", "g", LeaseGroupConfig::default())
            .await
    );
    let to_missing_dlq = LeaseGroupConfig {
        read_uncommitted: false,
        max_deliveries: Some(3),
        dead_letter_topic: Some("missing".into()),
        ordered_by_key: false,
    };
    expect_unknown!(
        "set_lease_group with a missing dead-letter topic",
        st.set_lease_group("known", "g", to_missing_dlq).await
    );
    expect_unknown!("lease_groups missing", st.lease_groups("missing").await);
    expect_unknown!(
        "enforce_retention missing",
        st.enforce_retention("missing").await
    );
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    // Nothing of the refused calls may have changed the known topic.
    let offsets = st.partition_offsets("known", 0).await.ctx("offsets")?;
    ensure_eq!(offsets.high_watermark, 1, "high watermark of known/0");
    s.finish().await.ctx("close")
}

/// **delete_topic_removes_everything**
pub async fn delete_topic_removes_everything(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "delete_topic_removes_everything").await?;
    let st = &s.store;
    topic(st, "gone", 2).await?;
    topic(st, "other", 1).await?;
    append_values(st, "gone", 0, &["a", "b", "c"]).await?;
    append_values(st, "gone", 1, &["d", "e"]).await?;
    let commit = |t: &str, o: i64| OffsetCommit {
        topic: t.into(),
        partition: 0,
        offset: o,
        leader_epoch: Some(3),
        metadata: "m".into(),
    };
    st.commit_offsets("both", &[commit("gone", 2), commit("other", 0)])
        .await
        .ctx("commit_offsets both")?;
    st.commit_offsets("only-gone", &[commit("gone", 1)])
        .await
        .ctx("commit_offsets only-gone")?;
    let ordered = LeaseGroupConfig {
        read_uncommitted: false,
        ordered_by_key: true,
        ..LeaseGroupConfig::default()
    };
    st.set_lease_group("gone", "lg", ordered)
        .await
        .ctx("set_lease_group")?;
    let l = lease(st, "gone", 0, "lg", 2, 60_000).await?;
    ack_ok(st, "gone", "lg", l[0].token).await?;

    st.delete_topic("gone").await.ctx("delete_topic")?;
    ensure_err!(
        st.describe_topic("gone").await,
        StoreError::UnknownTopic(_),
        "describe after delete"
    );
    ensure_err!(
        st.fetch("gone", 0, 0, FetchLimits::default()).await,
        StoreError::UnknownTopic(_),
        "fetch after delete"
    );
    let names: Vec<String> = st
        .list_topics()
        .await
        .ctx("list_topics")?
        .into_iter()
        .map(|t| t.name)
        .collect();
    ensure_eq!(names, vec!["other".to_string()], "topics after delete");
    let both = st.list_committed("both").await.ctx("list_committed")?;
    ensure_eq!(
        both,
        vec![commit("other", 0)],
        "commits of group 'both' after delete"
    );
    let groups = st
        .list_consumer_groups()
        .await
        .ctx("list_consumer_groups")?;
    ensure_eq!(
        groups,
        vec!["both".to_string()],
        "consumer groups after delete (only-gone had commits only on the deleted topic)"
    );

    st.create_topic("gone", TopicConfig::with_partitions(1))
        .await
        .ctx("recreate")?;
    let info = st.describe_topic("gone").await.ctx("describe")?;
    ensure_eq!(
        info.config,
        TopicConfig::with_partitions(1),
        "config of the new topic"
    );
    let off = st.partition_offsets("gone", 0).await.ctx("offsets")?;
    ensure_eq!(
        (off.log_start_offset, off.high_watermark),
        (0, 0),
        "offsets of the new topic"
    );
    ensure_eq!(
        st.committed_offset("both", "gone", 0)
            .await
            .ctx("committed")?,
        None,
        "committed offset on the new topic"
    );
    let groups = st.lease_groups("gone").await.ctx("lease_groups")?;
    ensure!(
        groups.is_empty(),
        "lease groups of the new topic: expected none, got {groups:?}"
    );
    ensure_eq!(
        tuple(counts(st, "gone", 0, "lg").await?),
        (0, 0, 0, 0, 0),
        "lease counts of the new empty topic"
    );
    let r = append_values(st, "gone", 0, &["new"]).await?;
    ensure_eq!(r.base_offset, 0, "first offset of the new topic");
    let l = lease(st, "gone", 0, "lg", 5, 60_000).await?;
    ensure_eq!(
        leased_offsets(&l),
        vec![0],
        "leased offsets on the new topic"
    );
    ensure_eq!(deliveries(&l), vec![1], "delivery count on the new topic");
    ensure_eq!(values(&[l[0].record.clone()]), vec!["new"], "leased value");
    s.finish().await.ctx("close")
}

/// **partitions_can_grow**
pub async fn partitions_can_grow(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "partitions_can_grow").await?;
    let mut config = TopicConfig {
        retention_ms: Some(86_400_000),
        ..TopicConfig::with_partitions(2)
    };
    config.attributes.insert("k".into(), "v".into());
    s.store
        .create_topic("t", config.clone())
        .await
        .ctx("create_topic(t)")?;
    let st = s.store.clone();
    append_values(&st, "t", 0, &["a", "b"]).await?;
    append_values(&st, "t", 1, &["c"]).await?;
    let commit = |p: i32, o: i64| OffsetCommit {
        topic: "t".into(),
        partition: p,
        offset: o,
        leader_epoch: None,
        metadata: format!("p{p}"),
    };
    st.commit_offsets("g", &[commit(0, 1)])
        .await
        .ctx("commit t/0")?;
    let l = lease(&st, "t", 0, "lg", 1, 60_000).await?;
    ack_ok(&st, "t", "lg", l[0].token).await?;

    let grown = TopicConfig {
        partitions: 5,
        ..config.clone()
    };
    let info = st
        .update_topic_config("t", grown.clone())
        .await
        .ctx("update_topic_config 2 -> 5 partitions")?;
    ensure_eq!(info.config, grown, "config returned by the growing update");
    let shrunk = TopicConfig {
        partitions: 3,
        ..grown.clone()
    };
    match st.update_topic_config("t", shrunk).await {
        Err(StoreError::InvalidArgument(m)) if m.contains('5') && m.contains('3') => {}
        other => {
            return Err(format!(
                "update_topic_config 5 -> 3 partitions: expected InvalidArgument naming 5 and 3, \
                 got {other:?}"
            ))
        }
    }
    let mut regrown = grown.clone();
    for round in ["before reopen", "after reopen"] {
        let st = s.store.clone();
        ensure_eq!(
            st.describe_topic("t").await.ctx("describe_topic")?.config,
            regrown,
            "described config {round}"
        );
        // The old partitions are untouched.
        ensure_eq!(
            values(&fetch_all(&st, "t", 0, 0).await?),
            vec!["a", "b"],
            "records of t/0 {round}"
        );
        ensure_eq!(
            values(&fetch_all(&st, "t", 1, 0).await?),
            vec!["c"],
            "records of t/1 {round}"
        );
        ensure_eq!(
            st.committed_offset("g", "t", 0)
                .await
                .ctx("committed_offset")?
                .map(|c| c.offset),
            Some(1),
            "commit of t/0 {round}"
        );
        ensure_eq!(
            leased_offsets(&lease(&st, "t", 0, "lg", 5, 1).await?),
            vec![1],
            "lease of t/0 {round} (offset 0 was acked)"
        );
        let rounds = if round == "before reopen" { 0 } else { 1 };
        for p in 2..regrown.partitions as i32 {
            let (fresh_p, prior) = if p >= 5 || rounds == 0 {
                (true, 0)
            } else {
                (false, 1)
            };
            let offsets = st
                .partition_offsets("t", p)
                .await
                .ctx("partition_offsets")?;
            ensure_eq!(
                (offsets.log_start_offset, offsets.high_watermark),
                (0, prior),
                "offsets of the new partition t/{p} {round}"
            );
            let res = append_values(&st, "t", p, &[&format!("new{p}")]).await?;
            ensure_eq!(
                res.base_offset,
                prior,
                "offset of the first record appended to the new partition t/{p} {round}"
            );
            let got = values(&fetch_all(&st, "t", p, 0).await?);
            let mut want: Vec<String> = Vec::new();
            if !fresh_p {
                want.push(format!("new{p}"));
            }
            want.push(format!("new{p}"));
            ensure_eq!(got, want, "records of t/{p} {round}");
            ensure_eq!(
                leased_offsets(&lease(&st, "t", p, "lg", 5, 1).await?),
                (0..=prior).collect::<Vec<i64>>(),
                "lease of the new partition t/{p} {round}"
            );
            if fresh_p {
                st.commit_offsets("g", &[commit(p, 1)])
                    .await
                    .ctx("commit to a new partition")?;
            }
            ensure_eq!(
                st.committed_offset("g", "t", p)
                    .await
                    .ctx("committed_offset")?
                    .map(|c| c.metadata),
                Some(format!("p{p}")),
                "commit of the new partition t/{p} {round}"
            );
        }
        ensure_err!(
            st.append(
                "t",
                regrown.partitions as i32,
                AppendBatch::new(vec![Record::from_value("x")])
            )
            .await,
            StoreError::UnknownTopic(_),
            "append past the grown partition count {round}"
        );
        if round == "before reopen" {
            s.reopen().await.ctx("reopen")?;
            // Every lease above had a 1 ms visibility: let them lapse.
            s.clock.advance(10);
            // Grow once more after reopen: 5 -> 6.
            regrown.partitions = 6;
            s.store
                .update_topic_config("t", regrown.clone())
                .await
                .ctx("update_topic_config 5 -> 6 after reopen")?;
        }
    }
    s.finish().await.ctx("close")
}
