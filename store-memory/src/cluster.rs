//! [`broker_api::Cluster`] in memory: several [`crate::MemoryStore`]s opened on one
//! [`crate::MemoryData`] are several brokers over one store.

use std::collections::BTreeMap;

use async_trait::async_trait;
use broker_api::{
    is_live, validate_group_name, BrokerRegistration, Cluster, CoordinatorClaim, CoordinatorFence,
    LiveBroker, Membership, OffsetCommit, StoreError, StoreResult, FIRST_ALLOCATED_NODE_ID,
};
use bytes::Bytes;

use crate::MemoryStore;

/// The brokers and coordinators of a slot.
#[derive(Default)]
pub(crate) struct ClusterState {
    /// node id -> its latest registration.
    brokers: BTreeMap<i32, Registered>,
    next_incarnation: i64,
    /// group -> its coordinator.
    coordinators: BTreeMap<String, Coordinated>,
}

struct Registered {
    incarnation: i64,
    registration: BrokerRegistration,
    registered_at_ms: i64,
    heartbeat_at_ms: i64,
    left: bool,
}

struct Coordinated {
    holder: Membership,
    epoch: i64,
    state: Option<Bytes>,
}

impl Registered {
    fn live(&self, now: i64) -> bool {
        !self.left && is_live(self.heartbeat_at_ms, self.registration.lapse, now)
    }
}

impl ClusterState {
    /// Rule **group_snapshots_round_trip**: the unfenced save into the group's coordinator
    /// record (an unheld one, epoch 0, for a group never claimed); empty bytes clear it.
    pub(crate) fn save_snapshot(&mut self, group: &str, state: Bytes) {
        if state.is_empty() {
            if let Some(c) = self.coordinators.get_mut(group) {
                c.state = None;
            }
            return;
        }
        self.coordinators
            .entry(group.to_string())
            .or_insert(Coordinated {
                holder: Membership {
                    node_id: -1,
                    incarnation: -1,
                },
                epoch: 0,
                state: None,
            })
            .state = Some(state);
    }

    /// Rule **group_snapshots_are_listed**.
    pub(crate) fn snapshots(&self, prefix: &str) -> Vec<(String, Bytes)> {
        self.coordinators
            .range(prefix.to_string()..)
            .take_while(|(g, _)| g.starts_with(prefix))
            .filter_map(|(g, c)| Some((g.clone(), c.state.clone()?)))
            .collect()
    }

    pub(crate) fn snapshot(&self, group: &str) -> Option<Bytes> {
        self.coordinators.get(group).and_then(|c| c.state.clone())
    }

    fn is_live(&self, m: Membership, now: i64) -> bool {
        self.brokers
            .get(&m.node_id)
            .is_some_and(|b| b.incarnation == m.incarnation && b.live(now))
    }

    /// The fence's group record when the fence is current and its holder live.
    fn current(&mut self, fence: &CoordinatorFence, now: i64) -> StoreResult<&mut Coordinated> {
        let live = self.is_live(fence.holder, now);
        match self.coordinators.get_mut(&fence.group) {
            Some(c) if live && c.holder == fence.holder && c.epoch == fence.epoch => Ok(c),
            _ => Err(stale(fence)),
        }
    }
}

fn stale(fence: &CoordinatorFence) -> StoreError {
    StoreError::Fenced(format!(
        "broker {} no longer coordinates group {} (epoch {})",
        fence.holder.node_id, fence.group, fence.epoch
    ))
}

fn not_live(m: Membership) -> StoreError {
    StoreError::Fenced(format!(
        "broker {} (incarnation {}) is not a live member of the cluster",
        m.node_id, m.incarnation
    ))
}

#[async_trait]
impl Cluster for MemoryStore {
    async fn register_broker(&self, registration: BrokerRegistration) -> StoreResult<Membership> {
        let now = self.now();
        self.with(|s| {
            let c = &mut s.cluster;
            let node_id = match registration.node_id {
                Some(n) if n < 0 => {
                    return Err(StoreError::InvalidArgument(format!(
                        "node id must be 0 or more, got {n}"
                    )))
                }
                Some(n) => {
                    if c.brokers.get(&n).is_some_and(|b| b.live(now)) {
                        return Err(StoreError::NodeIdInUse(n));
                    }
                    n
                }
                None => (FIRST_ALLOCATED_NODE_ID..)
                    .find(|n| !c.brokers.get(n).is_some_and(|b| b.live(now)))
                    .expect("a free node id"),
            };
            c.next_incarnation += 1;
            let incarnation = c.next_incarnation;
            c.brokers.insert(
                node_id,
                Registered {
                    incarnation,
                    registration: BrokerRegistration {
                        node_id: Some(node_id),
                        ..registration
                    },
                    registered_at_ms: now,
                    heartbeat_at_ms: now,
                    left: false,
                },
            );
            Ok(Membership {
                node_id,
                incarnation,
            })
        })
    }

    async fn heartbeat(&self, me: Membership) -> StoreResult<()> {
        let now = self.now();
        self.with(|s| match s.cluster.brokers.get_mut(&me.node_id) {
            Some(b) if b.incarnation == me.incarnation && b.live(now) => {
                b.heartbeat_at_ms = now;
                Ok(())
            }
            _ => Err(not_live(me)),
        })
    }

    async fn deregister(&self, me: Membership) -> StoreResult<()> {
        self.with(|s| {
            if let Some(b) = s.cluster.brokers.get_mut(&me.node_id) {
                if b.incarnation == me.incarnation {
                    b.left = true;
                }
            }
            Ok(())
        })
    }

    async fn live_brokers(&self) -> StoreResult<Vec<LiveBroker>> {
        let now = self.now();
        self.with(|s| {
            Ok(s.cluster
                .brokers
                .iter()
                .filter(|(_, b)| b.live(now))
                .map(|(&node_id, b)| LiveBroker {
                    membership: Membership {
                        node_id,
                        incarnation: b.incarnation,
                    },
                    endpoints: b.registration.endpoints.clone(),
                    http_addr: b.registration.http_addr.clone(),
                    rack: b.registration.rack.clone(),
                    registered_at_ms: b.registered_at_ms,
                    heartbeat_at_ms: b.heartbeat_at_ms,
                })
                .collect())
        })
    }

    async fn claim_coordinator(
        &self,
        me: Membership,
        group: &str,
    ) -> StoreResult<CoordinatorClaim> {
        validate_group_name(group)?;
        let now = self.now();
        self.with(|s| {
            let c = &mut s.cluster;
            if !c.is_live(me, now) {
                return Err(not_live(me));
            }
            let holder_live = c
                .coordinators
                .get(group)
                .map(|g| (g.holder, c.is_live(g.holder, now)));
            let entry = c
                .coordinators
                .entry(group.to_string())
                .or_insert(Coordinated {
                    holder: me,
                    epoch: 0,
                    state: None,
                });
            match holder_live {
                Some((holder, _)) if holder == me => {}
                Some((holder, true)) => return Ok(CoordinatorClaim::HeldBy(holder.node_id)),
                _ => {
                    entry.holder = me;
                    entry.epoch += 1;
                }
            }
            Ok(CoordinatorClaim::Granted {
                fence: CoordinatorFence {
                    group: group.to_string(),
                    holder: me,
                    epoch: entry.epoch,
                },
                state: entry.state.clone(),
            })
        })
    }

    async fn coordinator_of(&self, group: &str) -> StoreResult<Option<i32>> {
        let now = self.now();
        self.with(|s| {
            let c = &s.cluster;
            Ok(c.coordinators
                .get(group)
                .filter(|g| c.is_live(g.holder, now))
                .map(|g| g.holder.node_id))
        })
    }

    async fn commit_offsets_fenced(
        &self,
        fence: &CoordinatorFence,
        commits: &[OffsetCommit],
    ) -> StoreResult<()> {
        let now = self.now();
        self.with(|s| {
            s.cluster.current(fence, now)?;
            s.commit(&fence.group, commits)
        })
    }

    async fn save_group_state(&self, fence: &CoordinatorFence, state: Bytes) -> StoreResult<()> {
        let now = self.now();
        self.with(|s| {
            s.cluster.current(fence, now)?.state = Some(state);
            Ok(())
        })
    }

    async fn resign_coordinator(&self, fence: &CoordinatorFence) -> StoreResult<()> {
        let now = self.now();
        self.with(|s| {
            s.cluster.current(fence, now)?;
            // The record stays (its epoch and state); a holder that is not live frees it.
            if let Some(c) = s.cluster.coordinators.get_mut(&fence.group) {
                c.holder = Membership {
                    node_id: -1,
                    incarnation: -1,
                };
            }
            Ok(())
        })
    }
}
