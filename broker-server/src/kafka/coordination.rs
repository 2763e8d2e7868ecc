//! Group coordination among brokers sharing a store: a broker acts as a group's coordinator
//! only while it holds the group's claim in the store, and every write it makes for the group
//! (offset commits, the state a completed rebalance leaves) carries the claim's fence, which
//! the store refuses once another broker took the group over.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use broker_api::{CoordinatorClaim, CoordinatorFence, OffsetCommit, StoreError, StoreResult};
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::consumer_group::is_consumer_group_state;
use super::group_state::GroupSnapshot;
use super::share::is_share_group_state;
use super::KafkaServer;

/// What was last saved of each group of one kind (consumer or share groups), so a heartbeat
/// that changed nothing writes nothing.
#[derive(Default)]
pub(super) struct SavedStates {
    last: parking_lot::Mutex<HashMap<String, Bytes>>,
    /// Held from taking a group's state to saving it, so the last write is the newest state.
    order: tokio::sync::Mutex<()>,
}

impl SavedStates {
    pub fn remember(&self, group: &str, data: Bytes) {
        self.last.lock().insert(group.to_string(), data);
    }

    pub fn forget(&self, group: &str) {
        self.last.lock().remove(group);
    }
}

/// The fences of the groups this broker coordinates, with the node epoch they were won in.
#[derive(Default)]
pub(super) struct Fences {
    map: parking_lot::Mutex<HashMap<String, (u64, CoordinatorFence)>>,
}

impl KafkaServer {
    /// Whether this broker coordinates `group`: `Ok(None)` on a single broker, `Ok(Some)`
    /// with the fence of its claim in a cluster (claimed now if the group is free), else the
    /// error code to answer (NOT_COORDINATOR: the client finds the coordinator again).
    pub(super) async fn coordinate(&self, group: &str) -> Result<Option<CoordinatorFence>, i16> {
        let Some(cluster) = self.store.cluster() else {
            return Ok(None);
        };
        if !self.node.is_valid() {
            // Paused or cut off past the lapse: another broker may own the group by now.
            self.group_lost(group, "this broker's registration may have lapsed");
            return Err(ResponseError::NotCoordinator.code());
        }
        let epoch = self.node.epoch();
        let me = self.node.membership();
        if let Some((e, f)) = self.fences.map.lock().get(group) {
            if *e == epoch && f.holder == me {
                return Ok(Some(f.clone()));
            }
        }
        match cluster.claim_coordinator(me, group).await {
            Ok(CoordinatorClaim::Granted { fence, state }) => {
                let mut map = self.fences.map.lock();
                let known = map
                    .get(group)
                    .is_some_and(|(e, f)| *e == epoch && *f == fence);
                if !known {
                    self.consumer_groups.evict(group);
                    self.shares.evict(group);
                    match state {
                        Some(data) if is_share_group_state(&data) => {
                            if !self.shares.adopt(group, data, Instant::now()) {
                                warn!(
                                    group,
                                    "cannot read the share group's saved state; its members rejoin"
                                );
                            }
                            info!(group, epoch = fence.epoch, "coordinating the share group");
                        }
                        Some(data) if is_consumer_group_state(&data) => {
                            if !self.consumer_groups.adopt(group, data, Instant::now()) {
                                warn!(group, "cannot read the consumer group's saved state; its members rejoin");
                            }
                            info!(
                                group,
                                epoch = fence.epoch,
                                "coordinating the consumer group"
                            );
                        }
                        state => {
                            let saved = state
                                .as_deref()
                                .and_then(GroupSnapshot::decode)
                                .unwrap_or_default();
                            let (generation, members) = (saved.generation, saved.members.len());
                            self.coordinator.adopt(group, saved);
                            info!(
                                group,
                                epoch = fence.epoch,
                                generation,
                                members,
                                "coordinating the group"
                            );
                        }
                    }
                    map.insert(group.to_string(), (epoch, fence.clone()));
                }
                Ok(Some(fence))
            }
            Ok(CoordinatorClaim::HeldBy(node)) => {
                self.group_lost(group, &format!("broker {node} coordinates it"));
                Err(ResponseError::NotCoordinator.code())
            }
            Err(StoreError::Fenced(why)) => {
                self.group_lost(group, &why);
                Err(ResponseError::NotCoordinator.code())
            }
            Err(e) => {
                warn!(group, "cannot claim the group's coordinator: {e}");
                Err(ResponseError::CoordinatorNotAvailable.code())
            }
        }
    }

    /// Drops every coordinated group when the node registers again (it lapsed: its claims
    /// may have moved), until the server stops.
    pub(super) async fn drop_groups_on_reregistration(self: std::sync::Arc<Self>) {
        let mut epochs = self.node.subscribe();
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                changed = epochs.changed() => if changed.is_err() { break },
                _ = super::stopped(&mut stop) => break,
            }
            let epoch = *epochs.borrow_and_update();
            let stale: Vec<String> = self
                .fences
                .map
                .lock()
                .iter()
                .filter(|(_, (e, _))| *e != epoch)
                .map(|(g, _)| g.clone())
                .collect();
            for group in stale {
                self.group_lost(&group, "this broker registered again after a lapse");
            }
        }
    }

    /// Forgets a group this broker no longer coordinates (its members are told
    /// NOT_COORDINATOR and find the new coordinator).
    pub(super) fn group_lost(&self, group: &str, why: &str) {
        if self.fences.map.lock().remove(group).is_some() {
            self.metrics.coordinator_lost();
            info!(group, "no longer coordinating the group: {why}");
        }
        self.coordinator.evict(group);
        self.consumer_groups.evict(group);
        self.shares.evict(group);
    }

    /// Commits offsets for `group`: fenced in a cluster, so a broker that lost the group
    /// cannot write after its successor.
    pub(super) async fn commit_group_offsets(
        &self,
        fence: Option<&CoordinatorFence>,
        group: &str,
        commits: &[OffsetCommit],
    ) -> StoreResult<()> {
        let r = match (fence, self.store.cluster()) {
            (Some(f), Some(c)) => c.commit_offsets_fenced(f, commits).await,
            _ => self.store.commit_offsets(group, commits).await,
        };
        if let Err(StoreError::Fenced(why)) = &r {
            self.metrics.fenced_write();
            self.group_lost(group, why);
        }
        r
    }

    /// Records the group's state as a rebalance completes (before its assignment is handed
    /// out: a coordinator that lost the group is refused here and hands out nothing), so the
    /// next coordinator continues from it.
    pub(super) async fn save_group(
        &self,
        fence: Option<&CoordinatorFence>,
        group: &str,
        state: GroupSnapshot,
    ) -> Result<(), i16> {
        self.write_group_state(fence, group, state.encode()).await
    }

    /// Saves a group's state (`current`: a KIP-848 or share group's, as its module encodes
    /// it) when it differs from what was last saved, before the heartbeat that changed it is
    /// answered; nothing on a store that does not coordinate groups.
    pub(super) async fn save_if_changed(
        &self,
        saved: &SavedStates,
        fence: Option<&CoordinatorFence>,
        group: &str,
        current: impl FnOnce() -> Option<Bytes>,
    ) -> Result<(), i16> {
        if fence.is_none() {
            return Ok(());
        }
        let _order = saved.order.lock().await;
        let Some(data) = current() else {
            return Ok(());
        };
        if saved.last.lock().get(group) == Some(&data) {
            return Ok(());
        }
        self.write_group_state(fence, group, data.clone()).await?;
        saved.remember(group, data);
        Ok(())
    }

    /// Writes a group's saved state with the coordinator's fence; the error code to answer
    /// when the write is refused (NOT_COORDINATOR once another broker took the group over).
    async fn write_group_state(
        &self,
        fence: Option<&CoordinatorFence>,
        group: &str,
        state: Bytes,
    ) -> Result<(), i16> {
        let (Some(f), Some(c)) = (fence, self.store.cluster()) else {
            return Ok(());
        };
        match c.save_group_state(f, state).await {
            Ok(()) => Ok(()),
            Err(StoreError::Fenced(why)) => {
                self.metrics.fenced_write();
                self.group_lost(group, &why);
                Err(ResponseError::NotCoordinator.code())
            }
            Err(e) => {
                warn!(group, "cannot save the group's state: {e}");
                Err(ResponseError::CoordinatorNotAvailable.code())
            }
        }
    }
}
