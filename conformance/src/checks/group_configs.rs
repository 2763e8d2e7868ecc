//! Checks of the group-config rule (settings kept per group name, Kafka's GROUP config
//! resource; listed with the Leases rules of the contract) and of the group-snapshot rule
//! (a coordinator's saved state of its group).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

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

/// **group_snapshots_round_trip**
pub async fn group_snapshots_round_trip(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "group_snapshots_round_trip").await?;
    let st = s.store.clone();
    ensure_eq!(
        st.group_snapshot("never").await.ctx("group_snapshot")?,
        None,
        "group_snapshot of a group never saved"
    );
    // Bytes a store might trim, stop at, or re-encode: zeros, 0xff, invalid UTF-8, 64 KiB.
    let big: Vec<u8> = (0..65_536u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let odd = Bytes::from_static(b"\0\xff\xfe{\"json\":1}\0\n\r\\");
    for (g, b) in [("a", Bytes::from(big.clone())), ("b", odd.clone())] {
        st.save_group_snapshot(g, b)
            .await
            .ctx(&format!("save_group_snapshot({g})"))?;
    }
    ensure_eq!(
        st.group_snapshot("a").await.ctx("group_snapshot(a)")?,
        Some(Bytes::from(big.clone())),
        "group_snapshot(a): 64 KiB verbatim"
    );
    ensure_eq!(
        st.group_snapshot("b").await.ctx("group_snapshot(b)")?,
        Some(odd.clone()),
        "group_snapshot(b): odd bytes verbatim"
    );
    // A save replaces; empty bytes remove; groups are independent.
    let newer = Bytes::from_static(b"generation 2");
    st.save_group_snapshot("b", newer.clone())
        .await
        .ctx("save_group_snapshot(b) again")?;
    st.save_group_snapshot("a", Bytes::new())
        .await
        .ctx("save_group_snapshot(a, empty)")?;
    st.save_group_snapshot("never-saved", Bytes::new())
        .await
        .ctx("save_group_snapshot(never-saved, empty)")?;
    let want = [
        ("a", None),
        ("b", Some(newer.clone())),
        ("never-saved", None),
    ];
    for (g, w) in &want {
        ensure_eq!(
            st.group_snapshot(g).await.ctx("group_snapshot")?,
            w.clone(),
            "group_snapshot({g}) after replacing b and removing a"
        );
    }
    s.reopen().await.ctx("reopen")?;
    for (g, w) in &want {
        ensure_eq!(
            s.store
                .group_snapshot(g)
                .await
                .ctx("group_snapshot after reopen")?,
            w.clone(),
            "group_snapshot({g}) after reopen"
        );
    }
    // Where brokers share the store, the fenced save and this one are the same slot.
    if let Some(c) = s.store.cluster() {
        let me = c
            .register_broker(broker_api::BrokerRegistration {
                node_id: Some(1),
                endpoints: Vec::new(),
                http_addr: "a:9324".into(),
                rack: None,
                lapse: std::time::Duration::from_secs(60),
            })
            .await
            .ctx("register_broker")?;
        match c
            .claim_coordinator(me, "b")
            .await
            .ctx("claim_coordinator(b)")?
        {
            broker_api::CoordinatorClaim::Granted { fence, state } => {
                ensure_eq!(state, Some(newer.clone()), "claim of b: the saved snapshot");
                let fenced = Bytes::from_static(b"saved with a fence");
                c.save_group_state(&fence, fenced.clone())
                    .await
                    .ctx("save_group_state(b)")?;
                ensure_eq!(
                    s.store.group_snapshot("b").await.ctx("group_snapshot(b)")?,
                    Some(fenced),
                    "group_snapshot(b) after a fenced save"
                );
            }
            other => return Err(format!("claim of b: expected Granted, got {other:?}")),
        }
    }
    s.finish().await.ctx("close")
}

/// **group_snapshots_are_listed**
pub async fn group_snapshots_are_listed(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "group_snapshots_are_listed").await?;
    let st = s.store.clone();
    ensure!(
        st.list_group_snapshots("")
            .await
            .ctx("list_group_snapshots")?
            .is_empty(),
        "a fresh store lists no snapshot"
    );
    // Names with the characters a LIKE pattern or a range scan could get wrong.
    let names = [
        "tx/a", "tx/b%", "tx/b_c", "tx0", "txa", "tx/", "other", "tx\\/z",
    ];
    for (i, n) in names.iter().enumerate() {
        st.save_group_snapshot(n, Bytes::from(format!("state {i}")))
            .await
            .ctx(&format!("save_group_snapshot({n})"))?;
    }
    st.save_group_snapshot("tx/a", Bytes::new())
        .await
        .ctx("remove tx/a")?;
    let want = |names: &[&str]| -> Vec<(String, Bytes)> {
        let mut v: Vec<(String, Bytes)> = names
            .iter()
            .map(|n| {
                let i = [
                    "tx/a", "tx/b%", "tx/b_c", "tx0", "txa", "tx/", "other", "tx\\/z",
                ]
                .iter()
                .position(|m| m == n)
                .unwrap();
                (n.to_string(), Bytes::from(format!("state {i}")))
            })
            .collect();
        v.sort();
        v
    };
    ensure_eq!(
        st.list_group_snapshots("tx/").await.ctx("list tx/")?,
        want(&["tx/", "tx/b%", "tx/b_c"]),
        "snapshots under tx/"
    );
    ensure_eq!(
        st.list_group_snapshots("tx/b%").await.ctx("list tx/b%")?,
        want(&["tx/b%"]),
        "a prefix with % is literal"
    );
    ensure_eq!(
        st.list_group_snapshots("tx/b_").await.ctx("list tx/b_")?,
        want(&["tx/b_c"]),
        "a prefix with _ is literal"
    );
    s.reopen().await.ctx("reopen")?;
    ensure_eq!(
        s.store
            .list_group_snapshots("")
            .await
            .ctx("list all after reopen")?,
        want(&["other", "tx/", "tx/b%", "tx/b_c", "tx0", "tx\\/z", "txa"]),
        "every snapshot after reopen"
    );
    s.finish().await.ctx("close")
}
