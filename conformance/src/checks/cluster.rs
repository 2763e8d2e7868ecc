//! Checks of the [`broker_api::Cluster`] rules, for stores several brokers can share. Two
//! stores opened on one slot are two brokers; the manual clock makes registrations lapse.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    BrokerEndpoint, BrokerRegistration, Clock, Cluster, CoordinatorClaim, CoordinatorFence,
    Membership, OffsetCommit, Store, StoreError, FIRST_ALLOCATED_NODE_ID,
};
use bytes::Bytes;

use super::util::*;
use super::CheckResult;
use crate::harness::{Backend, Subject};

const LAPSE: Duration = Duration::from_secs(5);

fn reg(node_id: Option<i32>, host: &str) -> BrokerRegistration {
    BrokerRegistration {
        node_id,
        endpoints: vec![
            BrokerEndpoint {
                listener: "PLAINTEXT".into(),
                host: host.into(),
                port: 9092,
            },
            BrokerEndpoint {
                listener: "SASL_SSL".into(),
                host: host.into(),
                port: 9093,
            },
        ],
        http_addr: format!("{host}:9324"),
        rack: Some(format!("rack-{host}")),
        lapse: LAPSE,
    }
}

fn cluster(store: &Arc<dyn Store>) -> Result<&dyn Cluster, String> {
    store
        .cluster()
        .ok_or_else(|| format!("the {} store offers no cluster", store.kind()))
}

/// A fresh slot and a second store (broker) on it.
async fn two(backend: Arc<dyn Backend>, name: &str) -> Result<(Subject, Arc<dyn Store>), String> {
    let s = fresh(backend, name).await?;
    let peer = s.peer().await.ctx("opening a second store on the slot")?;
    Ok((s, peer))
}

async fn grant(c: &dyn Cluster, me: Membership, group: &str) -> Result<CoordinatorFence, String> {
    match c.claim_coordinator(me, group).await.ctx("claim")? {
        CoordinatorClaim::Granted { fence, .. } => Ok(fence),
        other => Err(format!(
            "claim of {group} by {}: expected Granted, got {other:?}",
            me.node_id
        )),
    }
}

fn commit(topic: &str, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: topic.into(),
        partition: 0,
        offset,
        leader_epoch: Some(1),
        metadata: "m".into(),
    }
}

/// **given_node_id_is_exclusive**
pub async fn given_node_id_is_exclusive(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "given_node_id_is_exclusive").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let first = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    ensure_eq!(first.node_id, 1, "node id given");
    ensure_err!(
        b.register_broker(reg(Some(1), "b")).await,
        StoreError::NodeIdInUse(1),
        "second live registration of node 1"
    );
    ensure_err!(
        b.register_broker(reg(Some(-3), "b")).await,
        StoreError::InvalidArgument(_),
        "negative node id"
    );
    s.clock.advance(LAPSE.as_millis() as i64 + 1);
    let second = b
        .register_broker(reg(Some(1), "b"))
        .await
        .ctx("register after the first lapsed")?;
    ensure_eq!(second.node_id, 1, "node id taken over");
    ensure!(
        second.incarnation != first.incarnation,
        "the takeover got the old incarnation {}",
        first.incarnation
    );
    b.deregister(second).await.ctx("deregister")?;
    let third = a
        .register_broker(reg(Some(1), "a"))
        .await
        .ctx("register after deregister")?;
    ensure_eq!(third.node_id, 1, "node id after deregister");
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **node_ids_are_allocated**
pub async fn node_ids_are_allocated(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "node_ids_are_allocated").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let x = a.register_broker(reg(None, "a")).await.ctx("register")?;
    let y = b.register_broker(reg(None, "b")).await.ctx("register")?;
    let given = b.register_broker(reg(Some(5), "c")).await.ctx("register")?;
    ensure_eq!(
        (x.node_id, y.node_id, given.node_id),
        (FIRST_ALLOCATED_NODE_ID, FIRST_ALLOCATED_NODE_ID + 1, 5),
        "allocated ids"
    );
    a.deregister(x).await.ctx("deregister")?;
    let z = b.register_broker(reg(None, "d")).await.ctx("register")?;
    ensure_eq!(z.node_id, FIRST_ALLOCATED_NODE_ID, "the freed id is reused");
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **incarnations_are_unique**
pub async fn incarnations_are_unique(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "incarnations_are_unique").await?;
    let mut seen = Vec::new();
    for round in 0..3 {
        let c = cluster(&s.store)?;
        for n in [1, 2] {
            let m = c.register_broker(reg(Some(n), "h")).await.ctx("register")?;
            ensure!(
                !seen.contains(&m.incarnation),
                "incarnation {} given twice (round {round})",
                m.incarnation
            );
            seen.push(m.incarnation);
            c.deregister(m).await.ctx("deregister")?;
        }
        s.reopen().await.ctx("reopen")?;
    }
    s.finish().await.ctx("close")
}

/// **live_brokers_are_listed**
pub async fn live_brokers_are_listed(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "live_brokers_are_listed").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    ensure_eq!(a.live_brokers().await.ctx("list")?, vec![], "before any");
    let start = s.clock.now_ms();
    let mb = b.register_broker(reg(Some(7), "b")).await.ctx("register")?;
    let ma = a.register_broker(reg(Some(3), "a")).await.ctx("register")?;
    let listed = b.live_brokers().await.ctx("list")?;
    let ids: Vec<Membership> = listed.iter().map(|l| l.membership).collect();
    ensure_eq!(ids, vec![ma, mb], "live brokers, by node id");
    let want = reg(Some(3), "a");
    let first = &listed[0];
    ensure_eq!(
        (
            &first.endpoints,
            &first.http_addr,
            &first.rack,
            first.registered_at_ms,
            first.heartbeat_at_ms
        ),
        (&want.endpoints, &want.http_addr, &want.rack, start, start),
        "broker 3 as registered"
    );
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **heartbeat_keeps_a_broker_live**
pub async fn heartbeat_keeps_a_broker_live(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "heartbeat_keeps_a_broker_live").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let mb = b.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    let step = LAPSE.as_millis() as i64 - 1000;
    for _ in 0..4 {
        s.clock.advance(step);
        a.heartbeat(ma).await.ctx("heartbeat")?;
    }
    let now = s.clock.now_ms();
    let listed = b.live_brokers().await.ctx("list")?;
    ensure_eq!(
        listed
            .iter()
            .map(|l| (l.membership, l.heartbeat_at_ms))
            .collect::<Vec<_>>(),
        vec![(ma, now)],
        "only the broker that kept heartbeating"
    );
    ensure_err!(
        b.heartbeat(mb).await,
        StoreError::Fenced(_),
        "heartbeat of the lapsed broker"
    );
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **lapsed_broker_is_fenced**
pub async fn lapsed_broker_is_fenced(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "lapsed_broker_is_fenced").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let old = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    s.clock.advance(LAPSE.as_millis() as i64);
    ensure_err!(
        a.heartbeat(old).await,
        StoreError::Fenced(_),
        "heartbeat at exactly the lapse"
    );
    ensure_eq!(
        b.live_brokers().await.ctx("list")?,
        vec![],
        "after the lapse"
    );
    let new = b.register_broker(reg(Some(1), "b")).await.ctx("register")?;
    ensure_err!(
        a.heartbeat(old).await,
        StoreError::Fenced(_),
        "heartbeat of the superseded incarnation"
    );
    ensure_eq!(
        a.live_brokers()
            .await
            .ctx("list")?
            .iter()
            .map(|l| l.membership)
            .collect::<Vec<_>>(),
        vec![new],
        "the old incarnation's heartbeat changed nothing"
    );
    b.heartbeat(new).await.ctx("heartbeat of the new one")?;
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **deregistered_broker_leaves_at_once**
pub async fn deregistered_broker_leaves_at_once(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "deregistered_broker_leaves_at_once").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let mb = b.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    a.deregister(ma).await.ctx("deregister")?;
    ensure_eq!(
        b.live_brokers()
            .await
            .ctx("list")?
            .iter()
            .map(|l| l.membership)
            .collect::<Vec<_>>(),
        vec![mb],
        "after broker 1 left"
    );
    ensure_err!(
        a.heartbeat(ma).await,
        StoreError::Fenced(_),
        "heartbeat after deregister"
    );
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **coordinator_claim_is_exclusive**
pub async fn coordinator_claim_is_exclusive(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "coordinator_claim_is_exclusive").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let mb = b.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    let fence = grant(a, ma, "g").await?;
    ensure_eq!(
        b.claim_coordinator(mb, "g").await.ctx("claim")?,
        CoordinatorClaim::HeldBy(1),
        "claim of a held group"
    );
    let again = grant(a, ma, "g").await?;
    ensure_eq!(again.epoch, fence.epoch, "the holder claiming again");
    let other = grant(b, mb, "other").await?;
    ensure_eq!(other.group, "other", "an unrelated group");
    // Two claims at once: exactly one is granted.
    let (x, y) = tokio::join!(
        a.claim_coordinator(ma, "race"),
        b.claim_coordinator(mb, "race")
    );
    let granted = [x.ctx("claim")?, y.ctx("claim")?]
        .iter()
        .filter(|c| matches!(c, CoordinatorClaim::Granted { .. }))
        .count();
    ensure_eq!(granted, 1, "grants among two concurrent claims");
    s.clock.advance(LAPSE.as_millis() as i64);
    ensure_err!(
        a.claim_coordinator(ma, "new").await,
        StoreError::Fenced(_),
        "claim by a lapsed broker"
    );
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **coordinator_moves_when_holder_lapses**
pub async fn coordinator_moves_when_holder_lapses(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "coordinator_moves_when_holder_lapses").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let mb = b.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    let first = grant(a, ma, "g").await?;
    s.clock.advance(LAPSE.as_millis() as i64 - 1);
    b.heartbeat(mb).await.ctx("heartbeat")?;
    ensure_eq!(
        b.claim_coordinator(mb, "g").await.ctx("claim")?,
        CoordinatorClaim::HeldBy(1),
        "claim just before the holder lapses"
    );
    s.clock.advance(1);
    let second = grant(b, mb, "g").await?;
    ensure!(
        second.epoch > first.epoch,
        "epoch after the move {} is not above {}",
        second.epoch,
        first.epoch
    );
    // And on a clean leave.
    let ma2 = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let fence = grant(a, ma2, "h").await?;
    a.deregister(ma2).await.ctx("deregister")?;
    let moved = grant(b, mb, "h").await?;
    ensure!(moved.epoch > fence.epoch, "epoch after a deregister");
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **coordinator_of_names_the_live_holder**
pub async fn coordinator_of_names_the_live_holder(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "coordinator_of_names_the_live_holder").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    ensure_eq!(b.coordinator_of("g").await.ctx("of")?, None, "unclaimed");
    let ma = a.register_broker(reg(Some(4), "a")).await.ctx("register")?;
    grant(a, ma, "g").await?;
    ensure_eq!(b.coordinator_of("g").await.ctx("of")?, Some(4), "held");
    s.clock.advance(LAPSE.as_millis() as i64);
    ensure_eq!(
        b.coordinator_of("g").await.ctx("of")?,
        None,
        "holder lapsed"
    );
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **stale_coordinator_is_fenced**
pub async fn stale_coordinator_is_fenced(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "stale_coordinator_is_fenced").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    topic(&s.store, "t", 1).await?;
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let mb = b.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    let old = grant(a, ma, "g").await?;
    a.commit_offsets_fenced(&old, &[commit("t", 5)])
        .await
        .ctx("commit with the current fence")?;
    // The holder pauses past its lapse: its writes are refused even before anyone moves.
    s.clock.advance(LAPSE.as_millis() as i64);
    b.heartbeat(mb)
        .await
        .err()
        .ok_or("broker 2 should have lapsed too")?;
    let mb = b.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    ensure_err!(
        a.commit_offsets_fenced(&old, &[commit("t", 9)]).await,
        StoreError::Fenced(_),
        "commit by a lapsed holder"
    );
    let new = grant(b, mb, "g").await?;
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let stale_fence = CoordinatorFence {
        holder: ma,
        ..old.clone()
    };
    for fence in [&old, &stale_fence] {
        ensure_err!(
            a.commit_offsets_fenced(fence, &[commit("t", 9)]).await,
            StoreError::Fenced(_),
            "commit with a superseded fence"
        );
        ensure_err!(
            a.save_group_state(fence, Bytes::from_static(b"late")).await,
            StoreError::Fenced(_),
            "state save with a superseded fence"
        );
        ensure_err!(
            a.resign_coordinator(fence).await,
            StoreError::Fenced(_),
            "resign with a superseded fence"
        );
    }
    ensure_eq!(
        s.store
            .committed_offset("g", "t", 0)
            .await
            .ctx("committed")?
            .map(|c| c.offset),
        Some(5),
        "the refused commits wrote nothing"
    );
    match a.claim_coordinator(ma, "g").await.ctx("claim")? {
        CoordinatorClaim::HeldBy(2) => {}
        other => return Err(format!("claim after the move: {other:?}")),
    }
    b.commit_offsets_fenced(&new, &[commit("t", 7)])
        .await
        .ctx("commit by the new holder")?;
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}

/// **fenced_commits_are_commits**
pub async fn fenced_commits_are_commits(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "fenced_commits_are_commits").await?;
    topic(&s.store, "t", 1).await?;
    let c = cluster(&s.store)?;
    let me = c.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let fence = grant(c, me, "g").await?;
    let commits = vec![commit("t", 42)];
    c.commit_offsets_fenced(&fence, &commits)
        .await
        .ctx("commit")?;
    ensure_err!(
        c.commit_offsets_fenced(&fence, &[commit("missing", 1)])
            .await,
        StoreError::UnknownTopic(_),
        "fenced commit to a missing topic"
    );
    s.reopen().await.ctx("reopen")?;
    ensure_eq!(
        s.store.list_committed("g").await.ctx("list")?,
        commits,
        "fenced commits after reopen"
    );
    s.finish().await.ctx("close")
}

/// **group_state_follows_the_coordinator**
pub async fn group_state_follows_the_coordinator(backend: Arc<dyn Backend>) -> CheckResult {
    let (mut s, peer) = two(backend, "group_state_follows_the_coordinator").await?;
    let a = cluster(&peer)?;
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let fence = match a.claim_coordinator(ma, "g").await.ctx("claim")? {
        CoordinatorClaim::Granted { fence, state } => {
            ensure_eq!(state, None, "state of a new group");
            fence
        }
        other => return Err(format!("first claim: {other:?}")),
    };
    a.save_group_state(&fence, Bytes::from_static(b"gen 1"))
        .await
        .ctx("save")?;
    a.save_group_state(&fence, Bytes::from_static(b"gen 2"))
        .await
        .ctx("save")?;
    a.deregister(ma).await.ctx("deregister")?;
    peer.close().await.ctx("close peer")?;
    s.reopen().await.ctx("reopen")?;
    let c = cluster(&s.store)?;
    let mb = c.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    match c.claim_coordinator(mb, "g").await.ctx("claim")? {
        CoordinatorClaim::Granted { state, .. } => {
            ensure_eq!(
                state,
                Some(Bytes::from_static(b"gen 2")),
                "state handed over"
            )
        }
        other => return Err(format!("claim after reopen: {other:?}")),
    }
    s.finish().await.ctx("close")
}

/// **resigned_group_is_free**
pub async fn resigned_group_is_free(backend: Arc<dyn Backend>) -> CheckResult {
    let (s, peer) = two(backend, "resigned_group_is_free").await?;
    let (a, b) = (cluster(&s.store)?, cluster(&peer)?);
    let ma = a.register_broker(reg(Some(1), "a")).await.ctx("register")?;
    let mb = b.register_broker(reg(Some(2), "b")).await.ctx("register")?;
    let fence = grant(a, ma, "g").await?;
    a.resign_coordinator(&fence).await.ctx("resign")?;
    ensure_eq!(b.coordinator_of("g").await.ctx("of")?, None, "after resign");
    let moved = grant(b, mb, "g").await?;
    ensure!(moved.epoch > fence.epoch, "epoch after resign");
    ensure_err!(
        a.commit_offsets_fenced(&fence, &[]).await,
        StoreError::Fenced(_),
        "commit with the resigned fence"
    );
    peer.close().await.ctx("close peer")?;
    s.finish().await.ctx("close")
}
