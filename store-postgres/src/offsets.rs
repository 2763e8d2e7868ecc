//! Consumer-group committed offsets.

use std::collections::{BTreeMap, HashMap};

use broker_api::{validate_group_name, CommittedOffset, OffsetCommit, StoreError, StoreResult};

use crate::error::{db_err, is_fk_violation};

/// Commit metadata as stored (the string's UTF-8 bytes, in a bytea column) back to a string.
fn metadata(bytes: Vec<u8>) -> StoreResult<String> {
    String::from_utf8(bytes)
        .map_err(|e| StoreError::Corrupt(format!("commit metadata is not UTF-8: {e}")))
}
use crate::group_commit::{Outcome, StatementJob};
use crate::PgStore;

/// Upserts a group's commits; one row back per commit stored.
const COMMIT_OFFSETS: &str = r#"INSERT INTO consumer_offsets
        (grp, topic_id, partition, "offset", leader_epoch, metadata)
    SELECT $1, t.id, u.p, u.o, u.e, u.m
    FROM unnest($2::text[], $3::int[], $4::bigint[], $5::int[], $6::bytea[])
        AS u(n, p, o, e, m)
    JOIN topics t ON t.name = u.n
    ON CONFLICT (grp, topic_id, partition)
    DO UPDATE SET "offset" = excluded."offset",
        leader_epoch = excluded.leader_epoch, metadata = excluded.metadata
    RETURNING 1"#;

/// A group's commits checked against the topics (last commit per partition wins, as if
/// applied one by one), as the parameters of [`COMMIT_OFFSETS`].
pub(crate) struct CommitRows {
    topics: Vec<String>,
    parts: Vec<i32>,
    offs: Vec<i64>,
    epochs: Vec<Option<i32>>,
    metas: Vec<Vec<u8>>,
}

impl CommitRows {
    /// Checks every commit's topic and partition; `UnknownTopic` names the first missing one.
    pub(crate) async fn new(
        db: &tokio_postgres::Client,
        commits: &[OffsetCommit],
    ) -> StoreResult<CommitRows> {
        let names: Vec<&str> = commits.iter().map(|c| c.topic.as_str()).collect();
        let rows = db
            .query(
                "SELECT name, partitions FROM topics WHERE name = ANY($1)",
                &[&names],
            )
            .await
            .map_err(db_err)?;
        let partitions: HashMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
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
        Ok(CommitRows {
            topics: latest.keys().map(|k| k.0.to_string()).collect(),
            parts: latest.keys().map(|k| k.1).collect(),
            offs: latest.values().map(|c| c.offset).collect(),
            epochs: latest.values().map(|c| c.leader_epoch).collect(),
            metas: latest
                .values()
                .map(|c| c.metadata.as_bytes().to_vec())
                .collect(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Runs [`COMMIT_OFFSETS`] for `group` on `db` (inside the caller's transaction).
    pub(crate) async fn store(&self, db: &tokio_postgres::Client, group: &str) -> StoreResult<()> {
        let r = db
            .execute(
                COMMIT_OFFSETS,
                &[
                    &group,
                    &self.topics,
                    &self.parts,
                    &self.offs,
                    &self.epochs,
                    &self.metas,
                ],
            )
            .await;
        self.check_stored(r)
    }

    /// Every commit must have found its topic: a topic deleted meanwhile is `UnknownTopic`.
    fn check_stored(&self, r: Result<u64, tokio_postgres::Error>) -> StoreResult<()> {
        match r {
            Ok(n) if n as usize == self.topics.len() => Ok(()),
            Ok(_) => Err(StoreError::UnknownTopic(
                "a topic was deleted during the commit".into(),
            )),
            Err(e) if is_fk_violation(&e) => Err(StoreError::UnknownTopic(
                "a topic was deleted during the commit".into(),
            )),
            Err(e) => Err(db_err(e)),
        }
    }
}

impl PgStore {
    pub(crate) async fn do_commit_offsets(
        &self,
        group: &str,
        commits: &[OffsetCommit],
    ) -> StoreResult<()> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let rows = CommitRows::new(&client, commits).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let CommitRows {
            topics,
            parts,
            offs,
            epochs,
            metas,
        } = &rows;
        let params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = vec![
            Box::new(group.to_string()),
            Box::new(topics.clone()),
            Box::new(parts.clone()),
            Box::new(offs.clone()),
            Box::new(epochs.clone()),
            Box::new(metas.clone()),
        ];
        // In a commit group with other commits, appends and acks (one WAL flush for all);
        // alone when the group says so (a topic deleted meanwhile fails the group).
        let job = vec![StatementJob {
            sql: COMMIT_OFFSETS,
            params,
        }];
        drop(client);
        let r = match self.group.query(&self.group_ctx, job).await {
            Outcome::Done(rows) => Ok(rows?.into_iter().next().map_or(0, |r| r.len() as u64)),
            Outcome::Alone(()) => {
                let client = self.conn().await?;
                return rows.store(&client, group).await;
            }
        };
        rows.check_stored(r)
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
                r#"SELECT "offset", leader_epoch, metadata FROM consumer_offsets
                   WHERE grp = $1 AND topic_id = $2 AND partition = $3"#,
                &[&group, &t.id, &partition],
            )
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(CommittedOffset {
                offset: r.get(0),
                leader_epoch: r.get(1),
                metadata: metadata(r.get(2))?,
            })
        })
        .transpose()
    }

    pub(crate) async fn do_list_committed(&self, group: &str) -> StoreResult<Vec<OffsetCommit>> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let rows = client
            .query(
                r#"SELECT t.name, c.partition, c."offset", c.leader_epoch, c.metadata
                   FROM consumer_offsets c JOIN topics t ON t.id = c.topic_id WHERE c.grp = $1"#,
                &[&group],
            )
            .await
            .map_err(db_err)?;
        let mut out: Vec<OffsetCommit> = rows
            .into_iter()
            .map(|r| {
                Ok(OffsetCommit {
                    topic: r.get(0),
                    partition: r.get(1),
                    offset: r.get(2),
                    leader_epoch: r.get(3),
                    metadata: metadata(r.get(4))?,
                })
            })
            .collect::<StoreResult<_>>()?;
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Deletes the group's commits of `partitions` (all when `None`) in one statement;
    /// returns how many rows went.
    pub(crate) async fn do_delete_committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> StoreResult<u64> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let n = match partitions {
            None => client
                .execute("DELETE FROM consumer_offsets WHERE grp = $1", &[&group])
                .await
                .map_err(db_err)?,
            Some(list) => {
                let topics: Vec<&str> = list.iter().map(|(t, _)| t.as_str()).collect();
                let parts: Vec<i32> = list.iter().map(|(_, p)| *p).collect();
                client
                    .execute(
                        "DELETE FROM consumer_offsets c USING topics t
                         WHERE c.grp = $1 AND t.id = c.topic_id
                           AND (t.name, c.partition) IN (
                               SELECT * FROM unnest($2::text[], $3::int[]))",
                        &[&group, &topics, &parts],
                    )
                    .await
                    .map_err(db_err)?
            }
        };
        Ok(n)
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
