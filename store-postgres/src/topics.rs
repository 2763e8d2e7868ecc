//! Topics: create, delete, list, describe, update.

use broker_api::{validate_topic_name, StoreError, StoreResult, TopicConfig, TopicInfo};
use tokio_postgres::Row;

use crate::error::{db_err, internal, is_unique_violation};
use crate::PgStore;

/// Most partitions a topic may have (bounds what one call may allocate).
pub const MAX_PARTITIONS: u32 = 100_000;

/// A topic row as most calls need it.
#[derive(Debug, Clone)]
pub(crate) struct TopicRow {
    pub id: i64,
    pub partitions: i32,
    pub config: TopicConfig,
}

fn parse_config(name: &str, text: &str) -> StoreResult<TopicConfig> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("config of topic {name:?}: {e}")))
}

fn info(name: &str, row: &Row) -> StoreResult<TopicInfo> {
    Ok(TopicInfo {
        name: name.to_string(),
        config: parse_config(name, row.get("config"))?,
    })
}

fn check_config(config: &TopicConfig) -> StoreResult<()> {
    if config.partitions == 0 {
        return Err(StoreError::InvalidArgument(
            "a topic needs at least 1 partition".into(),
        ));
    }
    if config.partitions > MAX_PARTITIONS {
        return Err(StoreError::InvalidArgument(format!(
            "a topic may have at most {MAX_PARTITIONS} partitions"
        )));
    }
    Ok(())
}

fn config_json(config: &TopicConfig) -> StoreResult<String> {
    serde_json::to_string(config).map_err(|e| internal(format!("encoding a topic config: {e}")))
}

fn max_record_bytes(config: &TopicConfig) -> i64 {
    i64::try_from(config.max_record_bytes).unwrap_or(i64::MAX)
}

impl PgStore {
    /// The topic named `name`, or `UnknownTopic`.
    pub(crate) async fn topic_row(
        &self,
        client: &impl tokio_postgres::GenericClient,
        name: &str,
    ) -> StoreResult<TopicRow> {
        let row = client
            .query_opt(
                "SELECT id, partitions, config::text AS config FROM topics WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?;
        Ok(TopicRow {
            id: row.get(0),
            partitions: row.get(1),
            config: parse_config(name, row.get(2))?,
        })
    }

    /// Like [`Self::topic_row`], and `UnknownTopic` when `partition` is out of range.
    pub(crate) async fn topic_partition(
        &self,
        client: &impl tokio_postgres::GenericClient,
        name: &str,
        partition: i32,
    ) -> StoreResult<TopicRow> {
        let t = self.topic_row(client, name).await?;
        if partition < 0 || partition >= t.partitions {
            return Err(crate::unknown_partition(name, partition));
        }
        Ok(t)
    }

    pub(crate) async fn do_create_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> StoreResult<TopicInfo> {
        validate_topic_name(name)?;
        check_config(&config)?;
        let json = config_json(&config)?;
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let inserted = tx
            .query_one(
                "INSERT INTO topics (name, partitions, max_record_bytes, config)
                 VALUES ($1, $2, $3, $4::text::jsonb) RETURNING id",
                &[
                    &name,
                    &(config.partitions as i32),
                    &max_record_bytes(&config),
                    &json,
                ],
            )
            .await;
        let id: i64 = match inserted {
            Ok(row) => row.get(0),
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::TopicExists(name.to_string()))
            }
            Err(e) => return Err(db_err(e)),
        };
        tx.execute(
            "INSERT INTO partitions (topic_id, partition)
             SELECT $1, g FROM generate_series(0, $2 - 1) AS g",
            &[&id, &(config.partitions as i32)],
        )
        .await
        .map_err(db_err)?;
        match tx.commit().await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::TopicExists(name.to_string()))
            }
            Err(e) => return Err(db_err(e)),
        }
        Ok(TopicInfo {
            name: name.to_string(),
            config,
        })
    }

    pub(crate) async fn do_delete_topic(&self, name: &str) -> StoreResult<()> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let id: i64 = tx
            .query_opt("DELETE FROM topics WHERE name = $1 RETURNING id", &[&name])
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?
            .get(0);
        for table in [
            "records",
            "batches",
            "delays",
            "producer_state",
            "open_txns",
            "aborted_txns",
            "lease_state",
            "lease_cursors",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE topic_id = $1"), &[&id])
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn do_list_topics(&self) -> StoreResult<Vec<TopicInfo>> {
        let client = self.conn().await?;
        let rows = client
            .query("SELECT name, config::text AS config FROM topics", &[])
            .await
            .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(|r| info(r.get("name"), r))
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) async fn do_describe_topic(&self, name: &str) -> StoreResult<TopicInfo> {
        let client = self.conn().await?;
        let t = self.topic_row(&**client, name).await?;
        Ok(TopicInfo {
            name: name.to_string(),
            config: t.config,
        })
    }

    pub(crate) async fn do_update_topic_config(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> StoreResult<TopicInfo> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let current: i32 = tx
            .query_opt(
                "SELECT partitions FROM topics WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?
            .get(0);
        check_config(&config)?;
        let new = config.partitions as i32;
        if new < current {
            return Err(StoreError::InvalidArgument(format!(
                "partitions cannot shrink from {current} to {new}"
            )));
        }
        // The new count and the new partitions rows commit together, in one statement.
        tx.execute(
            "WITH t AS (
                 UPDATE topics SET config = $2::text::jsonb, max_record_bytes = $3,
                     partitions = $4
                 WHERE name = $1 RETURNING id)
             INSERT INTO partitions (topic_id, partition)
             SELECT t.id, g FROM t, generate_series($5::int, $4 - 1) AS g",
            &[
                &name,
                &config_json(&config)?,
                &max_record_bytes(&config),
                &new,
                &current,
            ],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(TopicInfo {
            name: name.to_string(),
            config,
        })
    }
}
