//! Checks of the Consumer-group offsets rules.

use std::sync::Arc;

use broker_api::{CommittedOffset, OffsetCommit, StoreError};

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

fn commit(topic: &str, partition: i32, offset: i64, metadata: &str) -> OffsetCommit {
    OffsetCommit {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: None,
        metadata: metadata.into(),
    }
}

/// A commit carrying a leader epoch.
fn commit_e(
    topic: &str,
    partition: i32,
    offset: i64,
    epoch: Option<i32>,
    metadata: &str,
) -> OffsetCommit {
    OffsetCommit {
        leader_epoch: epoch,
        ..commit(topic, partition, offset, metadata)
    }
}

/// What `committed_offset` must return for a commit.
fn committed(c: &OffsetCommit) -> Option<CommittedOffset> {
    Some(CommittedOffset {
        offset: c.offset,
        leader_epoch: c.leader_epoch,
        metadata: c.metadata.clone(),
    })
}

/// **committed_offsets_round_trip**
pub async fn committed_offsets_round_trip(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "committed_offsets_round_trip").await?;
    topic(&s.store, "a", 2).await?;
    topic(&s.store, "b", 1).await?;
    let st = s.store.clone();
    ensure_eq!(
        st.committed_offset("g1", "a", 0)
            .await
            .ctx("committed_offset")?,
        None,
        "committed offset before any commit"
    );
    ensure_eq!(
        st.list_consumer_groups()
            .await
            .ctx("list_consumer_groups")?,
        Vec::<String>::new(),
        "groups before any commit"
    );
    st.commit_offsets(
        "g1",
        &[
            commit("b", 0, 3, "meta"),
            commit("a", 1, 7, ""),
            commit("a", 0, 5, "m1"),
        ],
    )
    .await
    .ctx("commit g1")?;
    st.commit_offsets("g1", &[commit_e("a", 0, 4, Some(12), "m2 \u{e9}")])
        .await
        .ctx("second commit g1")?;
    st.commit_offsets("g2", &[commit("a", 0, 1, "other group")])
        .await
        .ctx("commit g2")?;
    ensure_err!(
        st.commit_offsets("g2", &[commit("b", 0, 9, "x"), commit("nope", 0, 1, "")])
            .await,
        StoreError::UnknownTopic(_),
        "commit naming a missing topic"
    );
    let expect_g1 = vec![
        commit_e("a", 0, 4, Some(12), "m2 \u{e9}"),
        commit("a", 1, 7, ""),
        commit("b", 0, 3, "meta"),
    ];
    for round in ["before reopen", "after reopen"] {
        let st = s.store.clone();
        let got = st
            .committed_offset("g1", "a", 0)
            .await
            .ctx("committed_offset")?;
        ensure_eq!(
            got,
            Some(CommittedOffset {
                offset: 4,
                leader_epoch: Some(12),
                metadata: "m2 \u{e9}".into()
            }),
            "g1 a/0 {round} (the last commit wins, even when lower)"
        );
        ensure_eq!(
            st.list_committed("g1").await.ctx("list_committed")?,
            expect_g1,
            "list_committed(g1) {round}"
        );
        ensure_eq!(
            st.list_committed("g2").await.ctx("list_committed")?,
            vec![commit("a", 0, 1, "other group")],
            "list_committed(g2) {round} (the refused commit must change nothing)"
        );
        ensure_eq!(
            st.list_consumer_groups()
                .await
                .ctx("list_consumer_groups")?,
            vec!["g1".to_string(), "g2".to_string()],
            "groups {round}"
        );
        ensure_eq!(
            st.committed_offset("g3", "a", 1)
                .await
                .ctx("committed_offset")?,
            None,
            "unknown group {round}"
        );
        if round == "before reopen" {
            s.reopen().await.ctx("reopen")?;
        }
    }
    let st = s.store.clone();
    st.commit_offsets("g3", &[commit("b", 0, 2, "")])
        .await
        .ctx("commit g3")?;
    st.delete_topic("b").await.ctx("delete_topic b")?;
    ensure_eq!(
        st.list_committed("g1").await.ctx("list_committed")?,
        expect_g1[..2].to_vec(),
        "list_committed(g1) after deleting topic b"
    );
    ensure_eq!(
        st.list_consumer_groups()
            .await
            .ctx("list_consumer_groups")?,
        vec!["g1".to_string(), "g2".to_string()],
        "groups after deleting the only topic g3 committed to"
    );
    topic(&st, "b", 1).await?;
    ensure_eq!(
        st.committed_offset("g1", "b", 0)
            .await
            .ctx("committed_offset")?,
        None,
        "commit of g1 on a recreated topic"
    );
    s.finish().await.ctx("close")
}

/// **committed_leader_epoch_round_trips**
pub async fn committed_leader_epoch_round_trips(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "committed_leader_epoch_round_trips").await?;
    topic(&s.store, "t", 4).await?;
    let first = vec![
        commit_e("t", 0, 10, None, "none"),
        commit_e("t", 1, 11, Some(0), "zero"),
        commit_e("t", 2, 12, Some(i32::MAX), "max"),
        commit_e("t", 3, 13, Some(-7), "negative"),
    ];
    s.store
        .commit_offsets("g", &first)
        .await
        .ctx("commit with epochs")?;
    // A later commit replaces the epoch, also with None; an earlier None gains one.
    let second = vec![
        commit_e("t", 0, 20, Some(5), "none -> 5"),
        commit_e("t", 2, 22, None, "max -> none"),
    ];
    s.store
        .commit_offsets("g", &second)
        .await
        .ctx("second commit")?;
    let want = vec![
        second[0].clone(),
        first[1].clone(),
        second[1].clone(),
        first[3].clone(),
    ];
    for round in ["before reopen", "after reopen"] {
        let st = s.store.clone();
        ensure_eq!(
            st.list_committed("g").await.ctx("list_committed")?,
            want,
            "list_committed {round}"
        );
        for c in &want {
            ensure_eq!(
                st.committed_offset("g", "t", c.partition)
                    .await
                    .ctx("committed_offset")?,
                committed(c),
                "committed_offset(t/{}) {round}",
                c.partition
            );
        }
        if round == "before reopen" {
            s.reopen().await.ctx("reopen")?;
        }
    }
    s.finish().await.ctx("close")
}

/// **commit_metadata_is_kept_verbatim**
pub async fn commit_metadata_is_kept_verbatim(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "commit_metadata_is_kept_verbatim").await?;
    topic(&s.store, "t", 6).await?;
    let big: String = (0..4096u32)
        .map(|i| char::from_u32(0x20 + i % 0x5f).unwrap())
        .collect();
    let texts = [
        "nul \0 inside".to_string(),
        "\0".to_string(),
        "\0\0trailing\0".to_string(),
        "non-ASCII: \u{e9}\u{4e2d}\u{1f600} \u{feff}\u{7f}\u{1}\\'\"".to_string(),
        format!("{big}\0{big}"),
        String::new(),
    ];
    let commits: Vec<OffsetCommit> = texts
        .iter()
        .enumerate()
        .map(|(p, m)| commit_e("t", p as i32, p as i64, Some(p as i32), m))
        .collect();
    for c in &commits {
        s.store
            .commit_offsets("g", std::slice::from_ref(c))
            .await
            .ctx(&format!("commit of metadata {}", shorten(&c.metadata)))?;
    }
    for round in ["before reopen", "after reopen"] {
        let st = s.store.clone();
        for c in &commits {
            let got = st
                .committed_offset("g", "t", c.partition)
                .await
                .ctx("committed_offset")?;
            ensure!(
                got == committed(c),
                "committed_offset(t/{}) of metadata {} {round}: got {:?}",
                c.partition,
                shorten(&c.metadata),
                got.map(|g| (g.offset, g.leader_epoch, shorten(&g.metadata)))
            );
        }
        let listed = st.list_committed("g").await.ctx("list_committed")?;
        ensure!(
            listed == commits,
            "list_committed {round} differs from what was committed"
        );
        if round == "before reopen" {
            s.reopen().await.ctx("reopen")?;
        }
    }
    s.finish().await.ctx("close")
}

/// The start and length of a long text, for messages.
fn shorten(text: &str) -> String {
    let head: String = text.chars().take(24).collect();
    format!("{head:?}... ({} bytes)", text.len())
}

/// **committed_offsets_can_be_deleted**
pub async fn committed_offsets_can_be_deleted(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "committed_offsets_can_be_deleted").await?;
    topic(&s.store, "a", 3).await?;
    topic(&s.store, "b", 1).await?;
    let st = s.store.clone();
    let g1 = vec![
        commit_e("a", 0, 1, Some(1), "a0"),
        commit("a", 1, 2, "a1"),
        commit("a", 2, 3, "a2"),
        commit("b", 0, 4, "b0"),
    ];
    st.commit_offsets("g1", &g1).await.ctx("commit g1")?;
    st.commit_offsets("g2", &[commit("a", 0, 9, "g2")])
        .await
        .ctx("commit g2")?;
    st.commit_offsets("g3", &[commit("b", 0, 5, "g3")])
        .await
        .ctx("commit g3")?;
    let key = |t: &str, p: i32| (t.to_string(), p);
    // Some partitions: a/1 and b/0 exist; a/2 of g1 stays; a/0 twice counts once; a missing
    // topic and a commit-less partition count 0.
    let n = st
        .delete_committed(
            "g1",
            Some(&[
                key("a", 1),
                key("b", 0),
                key("a", 1),
                key("missing", 0),
                key("a", 7),
            ]),
        )
        .await
        .ctx("delete_committed(g1, some)")?;
    ensure_eq!(
        n,
        2,
        "commits removed by delete_committed(g1, [a/1, b/0, ...])"
    );
    let n = st
        .delete_committed("nobody", None)
        .await
        .ctx("delete_committed(nobody)")?;
    ensure_eq!(n, 0, "commits removed for a group without commits");
    let n = st
        .delete_committed("g3", Some(&[key("b", 0)]))
        .await
        .ctx("delete_committed(g3, [b/0])")?;
    ensure_eq!(n, 1, "commits removed by delete_committed(g3, [b/0])");
    for round in ["before reopen", "after reopen"] {
        let st = s.store.clone();
        ensure_eq!(
            st.list_committed("g1").await.ctx("list_committed")?,
            vec![g1[0].clone(), g1[2].clone()],
            "list_committed(g1) {round}"
        );
        for (t, p) in [("a", 1), ("b", 0)] {
            ensure_eq!(
                st.committed_offset("g1", t, p)
                    .await
                    .ctx("committed_offset")?,
                None,
                "committed_offset(g1, {t}/{p}) after its deletion, {round}"
            );
        }
        ensure_eq!(
            st.committed_offset("g1", "a", 2)
                .await
                .ctx("committed_offset")?,
            committed(&g1[2]),
            "committed_offset(g1, a/2), not deleted, {round}"
        );
        ensure_eq!(
            st.list_consumer_groups()
                .await
                .ctx("list_consumer_groups")?,
            vec!["g1".to_string(), "g2".to_string()],
            "groups {round} (g3 has no commit left)"
        );
        if round == "before reopen" {
            s.reopen().await.ctx("reopen")?;
        }
    }
    let st = s.store.clone();
    let n = st
        .delete_committed("g1", None)
        .await
        .ctx("delete_committed(g1, all)")?;
    ensure_eq!(n, 2, "commits removed by delete_committed(g1, None)");
    ensure_eq!(
        st.list_committed("g1").await.ctx("list_committed")?,
        Vec::<OffsetCommit>::new(),
        "list_committed(g1) after deleting all"
    );
    ensure_eq!(
        st.committed_offset("g2", "a", 0)
            .await
            .ctx("committed_offset")?,
        Some(CommittedOffset {
            offset: 9,
            leader_epoch: None,
            metadata: "g2".into()
        }),
        "another group's commit of the same partition"
    );
    s.reopen().await.ctx("second reopen")?;
    let st = s.store.clone();
    ensure_eq!(
        st.list_consumer_groups()
            .await
            .ctx("list_consumer_groups")?,
        vec!["g2".to_string()],
        "groups after deleting every commit of g1 and reopening"
    );
    ensure_eq!(
        st.committed_offset("g1", "a", 0)
            .await
            .ctx("committed_offset")?,
        None,
        "committed_offset(g1, a/0) after deleting all and reopening"
    );
    // A group can commit again after its deletion.
    st.commit_offsets("g1", &[commit("a", 0, 42, "again")])
        .await
        .ctx("commit after deletion")?;
    ensure_eq!(
        st.list_consumer_groups()
            .await
            .ctx("list_consumer_groups")?,
        vec!["g1".to_string(), "g2".to_string()],
        "groups after g1 committed again"
    );
    s.finish().await.ctx("close")
}
