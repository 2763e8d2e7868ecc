//! Moving and forgetting a lease group's state: `reset_lease_start` (rule
//! **lease_start_can_be_reset**) and `delete_lease_group` (rule
//! **lease_groups_can_be_deleted**), each in one transaction.
//!
//! Both lock rows in the order of the lease path: cursor rows first (in partition order),
//! then `lease_state` rows in offset order. Lease, release and extend calls of any broker
//! take the cursor lock before any `lease_state` row, so they simply wait (a waiting lease
//! call sees the new cursor and falls back to its general path, see `LEASE_FAST`). Acks lock
//! only `lease_state` rows, in offset order within one statement; but a commit group may hold
//! rows of several acks, so the `lease_state` rows are locked with a short `lock_timeout`
//! ([`ROW_LOCK_TIMEOUT`], below PostgreSQL's default `deadlock_timeout` of 1 s): in a
//! deadlock with acks, the reset or delete gives up first and retries from the start,
//! instead of PostgreSQL aborting the acks.
//!
//! Neither call needs to hunt for old tokens: a token acks, releases or extends only a
//! `lease_state` row with its nonce in state 1, and both calls delete those rows (a deleted
//! group's name gets a new group id, whose rows are all new).

use broker_api::{validate_group_name, StoreError, StoreResult};

use crate::error::{db_err, is_fk_violation, is_lock_conflict};
use crate::PgStore;

/// Attempts of a call that lost to a concurrent change (a lock it waited too long for, its
/// group or topic deleted meanwhile) before it gives up with `Unavailable`.
const ATTEMPTS: u32 = 5;

/// How long a reset or delete waits for a `lease_state` row lock held by acks (see the
/// module doc); they hold them for one commit group.
const ROW_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '200ms'";

/// A short pause before attempt `n` (from 1), so a retry does not meet the same acks.
async fn backoff(n: u32) {
    if n > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10 << n.min(5))).await;
    }
}

/// Locks the cursor of topic id $1, partition $2, group name $3; returns the group id.
const LOCK_CURSOR: &str = "SELECT c.group_id FROM lease_cursors c
    JOIN lease_groups g ON g.id = c.group_id
    WHERE c.topic_id = $1 AND c.partition = $2 AND g.topic_id = $1 AND g.name = $3
    FOR UPDATE OF c";

/// Starts the locked cursor ($1 topic id, $2 partition, $3 group id) at $4 clamped into
/// `[log_start, high watermark]` as committed now: floor and next offset at the start, and
/// no pending row left (`check_at` never); returns the clamped start.
const RESET_CURSOR: &str = "UPDATE lease_cursors c
    SET floor = s.start, next_offset = s.start, check_at = $5
    FROM (SELECT least(greatest($4::bigint, p.log_start), p.next_offset) AS start
          FROM partitions p WHERE p.topic_id = $1 AND p.partition = $2) s
    WHERE c.topic_id = $1 AND c.partition = $2 AND c.group_id = $3
    RETURNING s.start";

/// Locks, in offset order, the rows a reset removes ($4 the start): everything from the
/// start on, and below it everything but dead letters (those records stay done and counted
/// dead-lettered; a row in flight below the floor would still let its token ack).
const LOCK_RESET_ROWS: &str = r#"SELECT count(*) FROM (
        SELECT 1 FROM lease_state
        WHERE topic_id = $1 AND partition = $2 AND group_id = $3
          AND ("offset" >= $4 OR state <> 4)
        ORDER BY "offset" FOR UPDATE) locked"#;

/// Deletes the rows [`LOCK_RESET_ROWS`] locked.
const DELETE_RESET_ROWS: &str = r#"DELETE FROM lease_state
    WHERE topic_id = $1 AND partition = $2 AND group_id = $3
      AND ("offset" >= $4 OR state <> 4)"#;

impl PgStore {
    /// Resets where the group's lease state of one partition starts (forward or back); see
    /// **lease_start_can_be_reset**. Creates the group (default config) and its cursor when
    /// missing, so it is listed afterwards.
    pub(crate) async fn do_reset_lease_start(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        start: i64,
    ) -> StoreResult<i64> {
        validate_group_name(group)?;
        self.check_open()?;
        // Local lease calls of the partition wait here without holding a connection.
        let lock = self.lease_lock(topic, partition, group);
        let _serial = lock.lock().await;
        let mut client = self.conn().await?;
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let t = self.topic_row(&**client, topic).await?;
            if partition < 0 || partition >= t.partitions {
                return Err(StoreError::InvalidArgument(format!(
                    "topic {topic} has no partition {partition} (it has {})",
                    t.partitions
                )));
            }
            match reset_in_tx(&mut client, t.id, partition, group, start).await {
                Ok(Some(start)) => return Ok(start),
                // The group or the topic vanished meanwhile: look again.
                Ok(None) => continue,
                Err(e) if is_lock_conflict(&e) || is_fk_violation(&e) => continue,
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "reset_lease_start of {topic}/{partition} for {group}: lost to concurrent changes \
             {ATTEMPTS} times"
        )))
    }

    /// Deletes the group's config, cursors and lease state on every partition of the topic;
    /// returns whether the group existed (with a config, state, or both). See
    /// **lease_groups_can_be_deleted**.
    pub(crate) async fn do_delete_lease_group(
        &self,
        topic: &str,
        group: &str,
    ) -> StoreResult<bool> {
        validate_group_name(group)?;
        let mut client = self.conn().await?;
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let t = self.topic_row(&**client, topic).await?;
            match delete_in_tx(&mut client, t.id, group).await {
                Ok(existed) => return Ok(existed),
                Err(e) if is_lock_conflict(&e) => continue,
                Err(e) => return Err(db_err(e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "delete_lease_group of {group} on {topic}: lost to concurrent changes {ATTEMPTS} times"
        )))
    }
}

/// One attempt of a reset; `None` when the group or topic vanished before its cursor was
/// locked (nothing changed).
async fn reset_in_tx(
    client: &mut deadpool_postgres::Object,
    tid: i64,
    partition: i32,
    group: &str,
    start: i64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO lease_groups (topic_id, name) VALUES ($1, $2)
         ON CONFLICT (topic_id, name) DO NOTHING",
        &[&tid, &group],
    )
    .await?;
    tx.execute(
        "INSERT INTO lease_cursors (topic_id, partition, group_id)
         SELECT $1, $2, id FROM lease_groups WHERE topic_id = $1 AND name = $3
         ON CONFLICT DO NOTHING",
        &[&tid, &partition, &group],
    )
    .await?;
    let Some(row) = tx
        .query_opt(LOCK_CURSOR, &[&tid, &partition, &group])
        .await?
    else {
        return Ok(None);
    };
    let gid: i64 = row.get(0);
    // Statements after the lock see every change committed before it (READ COMMITTED takes a
    // snapshot per statement): the high watermark and the rows of lease calls that held it.
    let Some(row) = tx
        .query_opt(RESET_CURSOR, &[&tid, &partition, &gid, &start, &i64::MAX])
        .await?
    else {
        return Ok(None);
    };
    let start: i64 = row.get(0);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&tid, &partition, &gid, &start];
    tx.batch_execute(ROW_LOCK_TIMEOUT).await?;
    tx.query_one(LOCK_RESET_ROWS, &params).await?;
    tx.execute(DELETE_RESET_ROWS, &params).await?;
    tx.commit().await?;
    Ok(Some(start))
}

/// One attempt of a delete; whether the group existed.
async fn delete_in_tx(
    client: &mut deadpool_postgres::Object,
    tid: i64,
    group: &str,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // The group row first: no cursor can be added for it meanwhile (inserting one takes a
    // key-share lock on it). Lease calls never lock it, so this does not invert their order.
    let Some(row) = tx
        .query_opt(
            "SELECT id FROM lease_groups WHERE topic_id = $1 AND name = $2 FOR UPDATE",
            &[&tid, &group],
        )
        .await?
    else {
        tx.commit().await?;
        return Ok(false);
    };
    let gid: i64 = row.get(0);
    let partitions: Vec<i32> = tx
        .query_one(
            "SELECT coalesce(array_agg(partition), '{}') FROM (
                 SELECT partition FROM lease_cursors WHERE topic_id = $1 AND group_id = $2
                 ORDER BY partition FOR UPDATE) locked",
            &[&tid, &gid],
        )
        .await?
        .get(0);
    tx.batch_execute(ROW_LOCK_TIMEOUT).await?;
    tx.query_one(
        r#"SELECT count(*) FROM (
               SELECT 1 FROM lease_state
               WHERE topic_id = $1 AND partition = ANY($3) AND group_id = $2
               ORDER BY partition, "offset" FOR UPDATE) locked"#,
        &[&tid, &gid, &partitions],
    )
    .await?;
    tx.execute(
        "DELETE FROM lease_state WHERE topic_id = $1 AND partition = ANY($3) AND group_id = $2",
        &[&tid, &gid, &partitions],
    )
    .await?;
    // Its cursors go with it (ON DELETE CASCADE).
    let n = tx
        .execute("DELETE FROM lease_groups WHERE id = $1", &[&gid])
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}
