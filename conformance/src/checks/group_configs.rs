//! Checks of the group-config rule (settings kept per group name, Kafka's GROUP config
//! resource; listed with the Leases rules of the contract).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// A map of settings from pairs.
fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// **group_configs_round_trip**
pub async fn group_configs_round_trip(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "group_configs_round_trip").await?;
    let st = s.store.clone();
    ensure_eq!(
        st.group_config("never").await.ctx("group_config")?,
        BTreeMap::new(),
        "group_config of a group never set"
    );
    ensure_eq!(
        st.list_group_configs().await.ctx("list_group_configs")?,
        Vec::new(),
        "list_group_configs of a new store"
    );
    let long = "v".repeat(4096);
    let zeta = settings(&[("share.auto.offset.reset", "earliest")]);
    // Keys and values a store might trim, fold, escape or cut.
    let alpha = settings(&[
        ("share.record.lock.duration.ms", "30000"),
        (" spaced key ", "  leading and trailing  "),
        ("Key", "upper"),
        ("key", "lower"),
        ("empty", ""),
        ("quotes", "\"q\" 'x' \\ \\\\ {}[]=,;:%_*"),
        ("lines", "one\ntwo\r\n\tthree"),
        ("unicode é", "\u{e7}\u{e0} \u{65e5}\u{672c} \u{1f980}"),
        ("long", &long),
    ]);
    let mid = settings(&[("a", "1"), ("b", "2")]);
    for (g, c) in [("zeta", &zeta), ("alpha", &alpha), ("mid", &mid)] {
        st.set_group_config(g, c.clone())
            .await
            .ctx(&format!("set_group_config({g})"))?;
    }
    for (g, c) in [("zeta", &zeta), ("alpha", &alpha), ("mid", &mid)] {
        ensure_eq!(
            st.group_config(g).await.ctx("group_config")?,
            c.clone(),
            "group_config({g})"
        );
    }
    ensure_eq!(
        st.list_group_configs().await.ctx("list_group_configs")?,
        vec![
            ("alpha".to_string(), alpha.clone()),
            ("mid".to_string(), mid.clone()),
            ("zeta".to_string(), zeta.clone()),
        ],
        "list_group_configs (every group with settings, sorted by name)"
    );
    // A set replaces the whole map: keys not given are gone.
    let mid2 = settings(&[("b", "3"), ("c", "")]);
    st.set_group_config("mid", mid2.clone())
        .await
        .ctx("set_group_config(mid) again")?;
    ensure_eq!(
        st.group_config("mid").await.ctx("group_config")?,
        mid2.clone(),
        "group_config(mid) after replacing its map (a must be gone)"
    );
    // An empty map removes the group.
    st.set_group_config("zeta", BTreeMap::new())
        .await
        .ctx("set_group_config(zeta, empty)")?;
    st.set_group_config("never-set", BTreeMap::new())
        .await
        .ctx("set_group_config(never-set, empty)")?;
    ensure_eq!(
        st.group_config("zeta").await.ctx("group_config")?,
        BTreeMap::new(),
        "group_config(zeta) after setting an empty map"
    );
    ensure_eq!(
        st.group_config("never-set").await.ctx("group_config")?,
        BTreeMap::new(),
        "group_config of a group only ever set empty"
    );
    let want = vec![
        ("alpha".to_string(), alpha.clone()),
        ("mid".to_string(), mid2.clone()),
    ];
    ensure_eq!(
        st.list_group_configs().await.ctx("list_group_configs")?,
        want,
        "list_group_configs after removing zeta (groups with an empty map are not listed)"
    );
    s.reopen().await.ctx("reopen")?;
    let st = s.store.clone();
    ensure_eq!(
        st.list_group_configs()
            .await
            .ctx("list_group_configs after reopen")?,
        want,
        "list_group_configs after reopen"
    );
    for (g, c) in [
        ("alpha", &alpha),
        ("mid", &mid2),
        ("zeta", &BTreeMap::new()),
    ] {
        ensure_eq!(
            st.group_config(g).await.ctx("group_config after reopen")?,
            c.clone(),
            "group_config({g}) after reopen"
        );
    }
    // Changes after a reopen survive the next one.
    st.set_group_config("alpha", BTreeMap::new())
        .await
        .ctx("set_group_config(alpha, empty)")?;
    st.set_group_config("beta", zeta.clone())
        .await
        .ctx("set_group_config(beta)")?;
    s.reopen().await.ctx("second reopen")?;
    ensure_eq!(
        s.store
            .list_group_configs()
            .await
            .ctx("list_group_configs after the second reopen")?,
        vec![
            ("beta".to_string(), zeta.clone()),
            ("mid".to_string(), mid2.clone()),
        ],
        "list_group_configs after removing alpha, adding beta and reopening"
    );
    s.finish().await.ctx("close")
}
