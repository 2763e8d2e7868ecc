//! Several brokers over one shared store: membership, group-coordinator leases and fencing.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{OffsetCommit, StoreResult};

/// Node ids a store allocates start here (Kafka's `reserved.broker.max.id` + 1), so they
/// never meet the small ids operators give with `--node-id`.
pub const FIRST_ALLOCATED_NODE_ID: i32 = 1000;

/// One Kafka listener of a broker, as clients are told to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// The listener's name (`PLAINTEXT`, `SASL_SSL`, ...).
    pub listener: String,
    pub host: String,
    pub port: i32,
}

/// What a broker tells the cluster about itself when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// The wanted node id, or `None` for one allocated by the store.
    pub node_id: Option<i32>,
    /// Its Kafka listeners, in the broker's order.
    pub endpoints: Vec<BrokerEndpoint>,
    /// Its HTTP (SQS, metrics, console) address as clients reach it.
    pub http_addr: String,
    /// Its rack (`broker.rack`), if any.
    pub rack: Option<String>,
    /// How long after its last heartbeat (or registration) it counts as live.
    pub lapse: Duration,
}

/// A broker's registration as the store granted it: the token of its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Membership {
    pub node_id: i32,
    /// Unique per registration, also across node ids; a broker that registers again (after
    /// it lapsed, or a restart) gets a new one.
    pub incarnation: i64,
}

/// A live broker as [`Cluster::live_brokers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub membership: Membership,
    pub endpoints: Vec<BrokerEndpoint>,
    pub http_addr: String,
    pub rack: Option<String>,
    /// Store clock time of its registration.
    pub registered_at_ms: i64,
    /// Store clock time of its last heartbeat (its registration before the first one).
    pub heartbeat_at_ms: i64,
}

/// Proof of coordinatorship of one group: every write a coordinator makes for its group
/// carries it, and the store refuses it once another broker claimed the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorFence {
    pub group: String,
    pub holder: Membership,
    /// Grows by at least one each time the group changes hands.
    pub epoch: i64,
}

/// The answer to [`Cluster::claim_coordinator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorClaim {
    /// The caller coordinates the group; `state` is what the last coordinator saved.
    Granted {
        fence: CoordinatorFence,
        state: Option<Bytes>,
    },
    /// Another live broker coordinates it.
    HeldBy(i32),
}

/// Membership and coordination of several brokers over one store ([`crate::Store::cluster`]).
/// Times are the store clock's; brokers sharing a store must keep their clocks in step
/// (NTP), as they already must for lease expiry.
///
/// # Membership
/// - **given_node_id_is_exclusive**: `register_broker` with `node_id: Some(n)` must fail
///   with `NodeIdInUse` while another registration of `n` is live, and must succeed (a new
///   incarnation) once that one lapsed or deregistered.
/// - **node_ids_are_allocated**: with `node_id: None` the store must give the smallest id
///   at or above [`FIRST_ALLOCATED_NODE_ID`] that no live broker holds.
/// - **incarnations_are_unique**: every successful registration gets an incarnation no
///   earlier registration of the store had, also across reopen.
/// - **live_brokers_are_listed**: `live_brokers` must list exactly the registrations that
///   are live (heartbeat or registration within their `lapse`, not deregistered), sorted by
///   node id, with endpoints, HTTP address and rack as registered.
/// - **heartbeat_keeps_a_broker_live**: a heartbeat within the lapse must keep the broker
///   listed for another `lapse` from the heartbeat.
/// - **lapsed_broker_is_fenced**: once a registration lapsed (or another registration took
///   its node id, or it deregistered) its heartbeat must fail with `Fenced` and change
///   nothing; the broker must register again.
/// - **deregistered_broker_leaves_at_once**: after `deregister` the broker is not listed.
///
/// # Group coordinators
/// - **coordinator_claim_is_exclusive**: `claim_coordinator` must grant a group to the
///   caller when no live broker holds it and answer `HeldBy(holder)` while another live
///   broker does; a holder claiming again gets the same epoch. A caller that is not live
///   itself gets `Fenced`.
/// - **coordinator_moves_when_holder_lapses**: once the holder lapsed or deregistered, a
///   claim by another broker must be granted with a larger epoch.
/// - **coordinator_of_names_the_live_holder**: `coordinator_of` is the holder's node id
///   while it is live and holds the group, `None` otherwise.
/// - **stale_coordinator_is_fenced**: `commit_offsets_fenced`, `save_group_state` and
///   `resign_coordinator` with a fence that is not the group's current one (another broker
///   claimed the group since), or whose holder is no longer live, must fail with `Fenced`
///   and write nothing.
/// - **fenced_commits_are_commits**: offsets committed with a current fence must read back
///   through `committed_offset` and `list_committed` like `commit_offsets`.
/// - **group_state_follows_the_coordinator**: the bytes of the last `save_group_state` must
///   come back with the next grant of the group, to any broker, also after reopen.
/// - **resigned_group_is_free**: after `resign_coordinator` another broker's claim must be
///   granted at once.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Registers a broker; see **given_node_id_is_exclusive**, **node_ids_are_allocated**.
    async fn register_broker(&self, registration: BrokerRegistration) -> StoreResult<Membership>;
    /// Keeps a registration live; `Fenced` when it is not any more.
    async fn heartbeat(&self, me: Membership) -> StoreResult<()>;
    /// Leaves the cluster at once (clean shutdown); its groups are free to be claimed.
    async fn deregister(&self, me: Membership) -> StoreResult<()>;
    /// The live brokers, sorted by node id.
    async fn live_brokers(&self) -> StoreResult<Vec<LiveBroker>>;
    /// Claims the coordinatorship of `group` for `me`.
    async fn claim_coordinator(&self, me: Membership, group: &str)
        -> StoreResult<CoordinatorClaim>;
    /// The node id of the live broker coordinating `group`, if any.
    async fn coordinator_of(&self, group: &str) -> StoreResult<Option<i32>>;
    /// Commits offsets for the fence's group, only while the fence is current.
    async fn commit_offsets_fenced(
        &self,
        fence: &CoordinatorFence,
        commits: &[OffsetCommit],
    ) -> StoreResult<()>;
    /// Saves the coordinator's state of the group (opaque bytes) for the next coordinator.
    async fn save_group_state(&self, fence: &CoordinatorFence, state: Bytes) -> StoreResult<()>;
    /// Gives the group up, so the next claim by anyone is granted at once.
    async fn resign_coordinator(&self, fence: &CoordinatorFence) -> StoreResult<()>;
}

/// Whether a registration with these times is live at `now_ms`.
pub fn is_live(heartbeat_at_ms: i64, lapse: Duration, now_ms: i64) -> bool {
    now_ms < heartbeat_at_ms.saturating_add(lapse.as_millis().min(i64::MAX as u128) as i64)
}
