//! Settings kept per group name (Kafka's GROUP config resource) in the `group_configs` table:
//! one row per group with a non-empty map, keys and values as UTF-8 bytes (so every Rust
//! `String` round-trips, U+0000 included). Rule **group_configs_round_trip**.

use std::collections::BTreeMap;

use broker_api::{validate_group_name, StoreError, StoreResult};
use bytes::Bytes;

use crate::error::db_err;
use crate::PgStore;

/// The map of one row's `keys` and `vals` columns.
fn settings(row: &tokio_postgres::Row, at: usize) -> StoreResult<BTreeMap<String, String>> {
    let keys: Vec<Vec<u8>> = row.get(at);
    let vals: Vec<Vec<u8>> = row.get(at + 1);
    if keys.len() != vals.len() {
        return Err(StoreError::Corrupt(format!(
            "group_configs row with {} keys and {} values",
            keys.len(),
            vals.len()
        )));
    }
    let text = |b: Vec<u8>| {
        String::from_utf8(b)
            .map_err(|e| StoreError::Corrupt(format!("group config is not UTF-8: {e}")))
    };
    keys.into_iter()
        .zip(vals)
        .map(|(k, v)| Ok((text(k)?, text(v)?)))
        .collect()
}

impl PgStore {
    /// Replaces the group's map in one statement (an upsert, or a delete for an empty map), so
    /// concurrent replacements by several brokers leave exactly one of the maps.
    pub(crate) async fn do_set_group_config(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> StoreResult<()> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        if configs.is_empty() {
            client
                .execute("DELETE FROM group_configs WHERE grp = $1", &[&group])
                .await
                .map_err(db_err)?;
            return Ok(());
        }
        let keys: Vec<&[u8]> = configs.keys().map(|k| k.as_bytes()).collect();
        let vals: Vec<&[u8]> = configs.values().map(|v| v.as_bytes()).collect();
        client
            .execute(
                "INSERT INTO group_configs (grp, keys, vals) VALUES ($1, $2, $3)
                 ON CONFLICT (grp) DO UPDATE SET keys = excluded.keys, vals = excluded.vals",
                &[&group, &keys, &vals],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn do_group_config(
        &self,
        group: &str,
    ) -> StoreResult<BTreeMap<String, String>> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        match client
            .query_opt(
                "SELECT keys, vals FROM group_configs WHERE grp = $1",
                &[&group],
            )
            .await
            .map_err(db_err)?
        {
            Some(row) => settings(&row, 0),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Every group with settings, sorted by name (in Rust: the database's collation may order
    /// text differently).
    pub(crate) async fn do_list_group_configs(
        &self,
    ) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        let client = self.conn().await?;
        let rows = client
            .query("SELECT grp, keys, vals FROM group_configs", &[])
            .await
            .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.get::<_, String>(0), settings(r, 1)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Saves a group's snapshot in its coordinator row (the slot the fenced
    /// `save_group_state` writes), creating an unheld row (node -1, epoch 0) for a group never
    /// claimed; empty bytes clear it. Rule **group_snapshots_round_trip**.
    pub(crate) async fn do_save_group_snapshot(
        &self,
        group: &str,
        state: Bytes,
    ) -> StoreResult<()> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        if state.is_empty() {
            client
                .execute(
                    "UPDATE group_coordinators SET state = NULL WHERE grp = $1",
                    &[&group],
                )
                .await
                .map_err(db_err)?;
            return Ok(());
        }
        client
            .execute(
                "INSERT INTO group_coordinators (grp, epoch, node_id, incarnation, state)
                 VALUES ($1, 0, -1, -1, $2)
                 ON CONFLICT (grp) DO UPDATE SET state = excluded.state",
                &[&group, &state.as_ref()],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn do_group_snapshot(&self, group: &str) -> StoreResult<Option<Bytes>> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let row = client
            .query_opt(
                "SELECT state FROM group_coordinators WHERE grp = $1",
                &[&group],
            )
            .await
            .map_err(db_err)?;
        Ok(row
            .and_then(|r| r.get::<_, Option<Vec<u8>>>(0))
            .map(Bytes::from))
    }

    /// Every saved snapshot (by either save) whose group name starts with `prefix`, compared
    /// literally (`starts_with`, not a LIKE pattern), sorted by name (in Rust, as the
    /// database's collation may order text differently); cleared ones are left out. Rule
    /// **group_snapshots_are_listed**.
    pub(crate) async fn do_list_group_snapshots(
        &self,
        prefix: &str,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        let client = self.conn().await?;
        let rows = client
            .query(
                "SELECT grp, state FROM group_coordinators
                 WHERE starts_with(grp, $1) AND octet_length(state) > 0",
                &[&prefix],
            )
            .await
            .map_err(db_err)?;
        let mut out: Vec<(String, Bytes)> = rows
            .iter()
            .map(|r| (r.get(0), Bytes::from(r.get::<_, Vec<u8>>(1))))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
