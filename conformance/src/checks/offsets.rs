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
        metadata: metadata.into(),
    }
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
    st.commit_offsets("g1", &[commit("a", 0, 4, "m2 \u{e9}")])
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
        commit("a", 0, 4, "m2 \u{e9}"),
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
