//! Group coordination among brokers sharing a store: a broker acts as a group's coordinator
//! only while it holds the group's claim in the store, and every write it makes for the group
//! (offset commits, the state a completed rebalance leaves) carries the claim's fence, which
//! the store refuses once another broker took the group over. A single broker saves the same
//! state without a fence (the store's group snapshot) and takes it over when it restarts.

use std::collections::{HashMap, HashSet};
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

/// The fences of the groups this broker coordinates, with the node epoch they were won in;
/// on a single broker, the groups whose saved state this process has taken over.
#[derive(Default)]
pub(super) struct Fences {
    map: parking_lot::Mutex<HashMap<String, (u64, CoordinatorFence)>>,
    loaded: parking_lot::Mutex<HashSet<String>>,
    /// Held while a single broker loads a group's saved state, so it is adopted once.
    load_order: tokio::sync::Mutex<()>,
}

impl KafkaServer {
    /// Whether this broker coordinates `group`: `Ok(None)` on a single broker, `Ok(Some)`
    /// with the fence of its claim in a cluster (claimed now if the group is free), else the
    /// error code to answer (NOT_COORDINATOR: the client finds the coordinator again).
    pub(super) async fn coordinate(&self, group: &str) -> Result<Option<CoordinatorFence>, i16> {
        let Some(cluster) = self.store.cluster() else {
            self.load_saved_state(group).await?;
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
                    self.adopt_saved_state(group, state, fence.epoch);
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

    /// On a single broker, takes the group's saved state over the first time this process
    /// acts for the group (after a restart its members carry on); COORDINATOR_NOT_AVAILABLE
    /// while the store cannot be read (the client retries).
    async fn load_saved_state(&self, group: &str) -> Result<(), i16> {
        if self.fences.loaded.lock().contains(group) {
            return Ok(());
        }
        let _order = self.fences.load_order.lock().await;
        if self.fences.loaded.lock().contains(group) {
            return Ok(());
        }
        match self.store.group_snapshot(group).await {
            Ok(state) => {
                if state.is_some() {
                    self.adopt_saved_state(group, state, 0);
                }
                self.fences.loaded.lock().insert(group.to_string());
                Ok(())
            }
            Err(e) => {
                warn!(group, "cannot read the group's saved state: {e}");
                Err(ResponseError::CoordinatorNotAvailable.code())
            }
        }
    }

    /// Replaces what this broker knows of `group` with its saved state (a share group's, a
    /// KIP-848 consumer group's or a classic group's, told apart by their formats).
    fn adopt_saved_state(&self, group: &str, state: Option<Bytes>, epoch: i64) {
        if let Some(id) = group.strip_prefix(super::txn::SLOT_PREFIX) {
            self.txns.adopt(id, state);
            info!(
                transactional_id = id,
                epoch, "coordinating the transactional id"
            );
            return;
        }
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
                info!(group, epoch, "coordinating the share group");
            }
            Some(data) if is_consumer_group_state(&data) => {
                if !self.consumer_groups.adopt(group, data, Instant::now()) {
                    warn!(
                        group,
                        "cannot read the consumer group's saved state; its members rejoin"
                    );
                }
                info!(group, epoch, "coordinating the consumer group");
            }
            state => {
                let saved = state
                    .as_deref()
                    .and_then(GroupSnapshot::decode)
                    .unwrap_or_default();
                let (generation, members) = (saved.generation, saved.members.len());
                self.coordinator.adopt(group, saved);
                info!(group, epoch, generation, members, "coordinating the group");
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
        if let Some(id) = group.strip_prefix(super::txn::SLOT_PREFIX) {
            self.txns.evict(id);
            return;
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
    /// answered.
    pub(super) async fn save_if_changed(
        &self,
        saved: &SavedStates,
        fence: Option<&CoordinatorFence>,
        group: &str,
        current: impl FnOnce() -> Option<Bytes>,
    ) -> Result<(), i16> {
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

    /// Writes a group's saved state, with the coordinator's fence in a cluster; the error
    /// code to answer when the write is refused (NOT_COORDINATOR once another broker took the
    /// group over).
    pub(super) async fn write_group_state(
        &self,
        fence: Option<&CoordinatorFence>,
        group: &str,
        state: Bytes,
    ) -> Result<(), i16> {
        let saved = match (fence, self.store.cluster()) {
            (Some(f), Some(c)) => c.save_group_state(f, state).await,
            (None, None) => self.store.save_group_snapshot(group, state).await,
            // A cluster store acting without a claim: nothing to save.
            _ => return Ok(()),
        };
        match saved {
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
