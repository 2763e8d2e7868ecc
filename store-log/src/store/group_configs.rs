//! Settings kept per group name (Kafka's GROUP config resource), in the metadata state and
//! changed through `GroupConfig` journal entries, so they survive reopen and crash recovery
//! like lease-group configs. Rule **group_configs_round_trip**. A group's saved coordinator
//! state is kept the same way (`GroupSnapshot` entries). Rules **group_snapshots_round_trip**
//! and **group_snapshots_are_listed**.

use super::*;

impl Inner {
    /// [`Store::set_group_config`] on the log store: journals the new map (an empty one
    /// removes the group's) and returns once the entry is fsynced, whatever the topics'
    /// durability policies (a group's settings belong to no topic).
    pub(super) async fn set_group_config(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> StoreResult<()> {
        self.check_open()?;
        validate_group_name(group)?;
        let seq = {
            let mut meta = self.meta.lock();
            self.record(
                &mut meta,
                Op::GroupConfig {
                    group: group.to_string(),
                    configs,
                },
            )?
        };
        self.sync_meta(seq).await
    }

    /// [`Store::group_config`] on the log store.
    pub(super) fn group_config(&self, group: &str) -> StoreResult<BTreeMap<String, String>> {
        self.check_open()?;
        validate_group_name(group)?;
        let meta = self.meta.lock();
        Ok(meta
            .state
            .group_configs
            .get(group)
            .cloned()
            .unwrap_or_default())
    }

    /// [`Store::list_group_configs`] on the log store.
    pub(super) fn list_group_configs(
        &self,
    ) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        self.check_open()?;
        let meta = self.meta.lock();
        Ok(meta
            .state
            .group_configs
            .iter()
            .map(|(g, c)| (g.clone(), c.clone()))
            .collect())
    }

    /// [`Store::save_group_snapshot`] on the log store: journals the bytes (empty removes the
    /// group's) and returns once the entry is fsynced.
    pub(super) async fn save_group_snapshot(&self, group: &str, state: Bytes) -> StoreResult<()> {
        self.check_open()?;
        validate_group_name(group)?;
        let seq = {
            let mut meta = self.meta.lock();
            self.record(
                &mut meta,
                Op::GroupSnapshot {
                    group: group.to_string(),
                    state: Opaque(state),
                },
            )?
        };
        self.sync_meta(seq).await
    }

    /// [`Store::group_snapshot`] on the log store.
    pub(super) fn group_snapshot(&self, group: &str) -> StoreResult<Option<Bytes>> {
        self.check_open()?;
        validate_group_name(group)?;
        let meta = self.meta.lock();
        Ok(meta.state.group_snapshots.get(group).map(|o| o.0.clone()))
    }

    /// [`Store::list_group_snapshots`] on the log store: the saved snapshots whose name
    /// starts with `prefix` (compared literally), sorted by name.
    pub(super) fn list_group_snapshots(&self, prefix: &str) -> StoreResult<Vec<(String, Bytes)>> {
        self.check_open()?;
        let meta = self.meta.lock();
        Ok(meta
            .state
            .group_snapshots
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(g, _)| g.starts_with(prefix))
            .map(|(g, o)| (g.clone(), o.0.clone()))
            .collect())
    }
}
