//! Share groups (KIP-932): Kafka's queues, served from the store's lease groups. A share
//! group named `g` leases a topic's records under the lease group `g`, so its acquisition
//! locks, delivery counts and acknowledgements are the store's leases, delivery counts and
//! acks, kept by every store and shared by every broker of a cluster. (SQS queues lease
//! under the lease group `sqs`: a share group named `sqs` is the same consumers' view of a
//! topic as its SQS queue; any other name reads independently.)
//!
//! Membership (ShareGroupHeartbeat) lives in the memory of the group's coordinator and, where
//! the store coordinates groups (PostgreSQL), is saved through it (`group_state.rs`) so the
//! next coordinator carries on; on the log store members rejoin after a restart. Share sessions (which partitions a member fetches, and the lease
//! tokens of the records it acquired) live in the memory of the broker serving the fetches;
//! records acquired through a lost session come back when their lock expires.

mod admin;
mod assign;
pub mod config;
mod fetch;
mod group_state;
mod membership;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use broker_api::{LeaseGroupConfig, StoreResult};

pub use self::group_state::is_share_group_state;

use bytes::Bytes;

use self::config::ShareSettings;
use self::membership::Group;
use self::session::Session;
use super::coordination::SavedStates;
use super::KafkaServer;

/// How long a group's settings are used before they are read from the store again (changes
/// made through this broker apply at once).
const SETTINGS_TTL: Duration = Duration::from_secs(1);

/// (topic, group, topic id) of a lease group set up for a share group.
type ReadyKey = (String, String, Option<uuid::Uuid>);

/// Share-group state of this broker.
#[derive(Default)]
pub(super) struct ShareGroups {
    /// Groups this broker coordinates, by name.
    groups: parking_lot::Mutex<HashMap<String, Group>>,
    /// Share sessions on this broker, by (group, member id).
    sessions: parking_lot::Mutex<HashMap<(String, String), Session>>,
    /// Lease groups this broker has set up, with their config.
    ready: parking_lot::Mutex<HashMap<ReadyKey, LeaseGroupConfig>>,
    /// Settings per group, with when they were read.
    settings: parking_lot::Mutex<HashMap<String, (Instant, ShareSettings)>>,
    /// What was last saved of each group's membership.
    saved: SavedStates,
}

impl ShareGroups {
    /// Whether `group` is a share group with members here (classic joins are refused).
    pub(super) fn has_members(&self, group: &str) -> bool {
        self.groups
            .lock()
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// The group's membership to save; `None` for no such group.
    pub(super) fn snapshot(&self, group: &str) -> Option<Bytes> {
        self.groups.lock().get(group).map(group_state::encode)
    }

    /// Takes over a group saved by an earlier coordinator; false, with nothing changed, for
    /// bytes this build cannot read.
    pub(super) fn adopt(&self, group: &str, data: Bytes, now: Instant) -> bool {
        let Some(g) = group_state::decode(&data, now) else {
            return false;
        };
        tracing::info!(
            group,
            epoch = g.epoch,
            members = g.members.len(),
            "share group taken over from its saved state"
        );
        self.groups.lock().insert(group.to_string(), g);
        self.saved.remember(group, data);
        true
    }

    /// Forgets that the group's lease group on `topic` is set up (any incarnation of the
    /// topic), so the next use sets it up again.
    pub(super) fn forget_ready(&self, topic: &str, group: &str) {
        self.ready
            .lock()
            .retain(|(t, g, _), _| !(t == topic && g == group));
    }

    /// Forgets a group this broker no longer coordinates.
    pub(super) fn evict(&self, group: &str) {
        self.groups.lock().remove(group);
        self.saved.forget(group);
    }

    /// The share groups this broker coordinates, with whether they have members.
    pub(super) fn list(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = self
            .groups
            .lock()
            .iter()
            .map(|(name, g)| (name.clone(), !g.members.is_empty()))
            .collect();
        out.sort();
        out
    }
}

impl KafkaServer {
    /// A share group's settings (cached for [`SETTINGS_TTL`]).
    pub(super) async fn share_settings(&self, group: &str) -> StoreResult<ShareSettings> {
        if let Some((at, s)) = self.shares.settings.lock().get(group) {
            if at.elapsed() < SETTINGS_TTL {
                return Ok(s.clone());
            }
        }
        let map = self.store.group_config(group).await?;
        let s = ShareSettings::from_map(&map);
        self.shares
            .settings
            .lock()
            .insert(group.to_string(), (Instant::now(), s.clone()));
        Ok(s)
    }

    /// Forgets cached settings of `group` (they were just changed).
    pub(super) fn forget_share_settings(&self, group: &str) {
        self.shares.settings.lock().remove(group);
    }

    /// The stored settings of a group as a map (for DescribeConfigs and changes).
    pub(super) async fn group_config_map(
        &self,
        group: &str,
    ) -> StoreResult<BTreeMap<String, String>> {
        self.store.group_config(group).await
    }
}
