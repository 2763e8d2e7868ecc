//! Consumer-group committed offsets.

use std::collections::{BTreeMap, HashMap};

use broker_api::{validate_group_name, CommittedOffset, OffsetCommit, StoreError, StoreResult};

use crate::error::{db_err, is_fk_violation};
use crate::PgStore;

impl PgStore {
    pub(crate) async fn do_commit_offsets(
        &self,
        group: &str,
        commits: &[OffsetCommit],
    ) -> StoreResult<()> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let names: Vec<&str> = commits.iter().map(|c| c.topic.as_str()).collect();
        let rows = client
            .query(
                "SELECT name, partitions FROM topics WHERE name = ANY($1)",
                &[&names],
            )
            .await
            .map_err(db_err)?;
        let partitions: HashMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        // Last commit per partition wins, as if applied one by one.
        let mut latest: BTreeMap<(&str, i32), &OffsetCommit> = BTreeMap::new();
        for c in commits {
            match partitions.get(&c.topic) {
                None => return Err(StoreError::UnknownTopic(c.topic.clone())),
                Some(&n) if c.partition < 0 || c.partition >= n => {
                    return Err(crate::unknown_partition(&c.topic, c.partition))
                }
                Some(_) => {}
            }
            latest.insert((c.topic.as_str(), c.partition), c);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let topics: Vec<&str> = latest.keys().map(|k| k.0).collect();
        let parts: Vec<i32> = latest.keys().map(|k| k.1).collect();
        let offs: Vec<i64> = latest.values().map(|c| c.offset).collect();
        let metas: Vec<&str> = latest.values().map(|c| c.metadata.as_str()).collect();
        let r = client
            .execute(
                r#"INSERT INTO consumer_offsets (grp, topic_id, partition, "offset", metadata)
                   SELECT $1, t.id, u.p, u.o, u.m
                   FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS u(n, p, o, m)
                   JOIN topics t ON t.name = u.n
                   ON CONFLICT (grp, topic_id, partition)
                   DO UPDATE SET "offset" = excluded."offset", metadata = excluded.metadata"#,
                &[&group, &topics, &parts, &offs, &metas],
            )
            .await;
        match r {
            Ok(n) if n as usize == latest.len() => Ok(()),
            Ok(_) => Err(StoreError::UnknownTopic(
                "a topic was deleted during the commit".into(),
            )),
            Err(e) if is_fk_violation(&e) => Err(StoreError::UnknownTopic(
                "a topic was deleted during the commit".into(),
            )),
            Err(e) => Err(db_err(e)),
        }
    }

    pub(crate) async fn do_committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<CommittedOffset>> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let t = self.topic_partition(&**client, topic, partition).await?;
        let row = client
            .query_opt(
                r#"SELECT "offset", metadata FROM consumer_offsets
                   WHERE grp = $1 AND topic_id = $2 AND partition = $3"#,
                &[&group, &t.id, &partition],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| CommittedOffset {
            offset: r.get(0),
            metadata: r.get(1),
        }))
    }

    pub(crate) async fn do_list_committed(&self, group: &str) -> StoreResult<Vec<OffsetCommit>> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let rows = client
            .query(
                r#"SELECT t.name, c.partition, c."offset", c.metadata
                   FROM consumer_offsets c JOIN topics t ON t.id = c.topic_id WHERE c.grp = $1"#,
                &[&group],
            )
            .await
            .map_err(db_err)?;
        let mut out: Vec<OffsetCommit> = rows
            .iter()
            .map(|r| OffsetCommit {
                topic: r.get(0),
                partition: r.get(1),
                offset: r.get(2),
                metadata: r.get(3),
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    pub(crate) async fn do_list_consumer_groups(&self) -> StoreResult<Vec<String>> {
        let client = self.conn().await?;
        let rows = client
            .query("SELECT DISTINCT grp FROM consumer_offsets", &[])
            .await
            .map_err(db_err)?;
        let mut out: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        out.sort();
        Ok(out)
    }
}
