//! Leases (queue semantics) per lease group.
//!
//! Per (topic, partition, group) a cursor row holds the done floor (everything below is acked
//! or dead-lettered), the next never-leased offset, and `check_at`, a lower bound of when any
//! pending lease row can become visible. `lease_state` has rows only for records in between
//! that have state (leased, released or delayed, acked above the floor) and for dead letters.
//! Leasing one partition for one group is serialised by the cursor row lock (and an
//! in-process mutex, so waiting leasers hold no connection); acks, extends and releases touch
//! only their own rows, and those updates change no indexed column (HOT updates).
//!
//! Leases read committed by default: fresh records are taken only below the last stable
//! offset, and the offsets leases skip (transaction markers, records of aborted transactions)
//! get a done row as the cursor passes them, so they count as done like acked records. A
//! group with `lease_groups.read_uncommitted` takes fresh records up to the high watermark
//! and skips only the markers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    validate_group_name, Lease, LeaseCounts, LeaseGroupConfig, LeaseToken, StoreError, StoreResult,
    StoredRecord,
};
use tokio_postgres::types::ToSql;

use crate::append::{lock_partition, write_batch, BatchRow};
use crate::batches::{decode_rows, fresh_from, fresh_items, records_at, Fresh};
use crate::error::db_err;
use crate::group_commit::{Outcome, StatementJob};
use crate::tx::Tx;
use crate::{millis, PgStore};

const LEASED: i16 = 1;
const RELEASED: i16 = 2;
const DONE: i16 = 3;
const DEAD: i16 = 4;

/// Most fresh records one lease call looks at beyond what it returns (delayed ones).
const SCAN_SLACK: usize = 1_000;
/// Most offsets one later page of fresh records spans.
const MAX_WINDOW: usize = 1 << 16;
/// Most skipped offsets (transaction markers, aborted records) one lease call marks done.
const MAX_SKIPPED: usize = 20_000;

const LOCK_CURSOR: &str = "SELECT c.floor, c.next_offset, c.check_at, p.log_start, p.next_offset,
        g.id, g.max_deliveries, g.dead_letter_topic, g.ordered_by_key, g.read_uncommitted, t.id
    FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    JOIN lease_groups g ON g.topic_id = t.id AND g.name = $3
    JOIN lease_cursors c ON c.topic_id = t.id AND c.partition = $2 AND c.group_id = g.id
    WHERE t.name = $1
    FOR UPDATE OF c";

/// Moves the done floor to the first pending row (or the cursor) and deletes the acked rows
/// it passes; returns the new floor. Named like [`LOCK_CURSOR`] so it can be pipelined.
const ADVANCE_FLOOR: &str = r#"WITH c AS (
        SELECT c.topic_id, c.group_id, greatest(c.floor, p.log_start) AS fl,
               greatest(c.next_offset, c.floor, p.log_start) AS nx
        FROM topics t
        JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
        JOIN lease_groups g ON g.topic_id = t.id AND g.name = $3
        JOIN lease_cursors c ON c.topic_id = t.id AND c.partition = $2 AND c.group_id = g.id
        WHERE t.name = $1),
    f AS (
        SELECT c.*, coalesce((SELECT s."offset" FROM lease_state s
            WHERE s.topic_id = c.topic_id AND s.partition = $2 AND s.group_id = c.group_id
              AND s."offset" >= c.fl AND s.state IN (1, 2)
            ORDER BY s."offset" LIMIT 1), c.nx) AS nf
        FROM c),
    d AS (
        DELETE FROM lease_state s USING f
        WHERE s.topic_id = f.topic_id AND s.partition = $2 AND s.group_id = f.group_id
          AND s."offset" >= f.fl AND s."offset" < f.nf AND s.state = 3)
    SELECT nf FROM f"#;

/// The batches holding the next `$4` never-leased offsets from the cursor on, below the last
/// stable offset (the high watermark for a group reading uncommitted) (columns: base offset,
/// data or NULL when skipped, the first such offset, that stable offset, last offset,
/// skipped: see `batches::fresh_items`, and the group's `read_uncommitted`), pipelined with
/// [`LOCK_CURSOR`]. One row with NULL batch columns when no batch is there (compaction may
/// have removed every batch of those offsets).
const FRESH_FIRST: &str = concat!(
    r#"SELECT b.base_offset, b.data, x.nx, x.lso, b.last_offset, b.skip, g.read_uncommitted
    FROM topics t
    JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
    JOIN lease_groups g ON g.topic_id = t.id AND g.name = $3
    JOIN lease_cursors c ON c.topic_id = t.id AND c.partition = $2 AND c.group_id = g.id
    CROSS JOIN LATERAL (SELECT greatest(c.next_offset, c.floor, p.log_start) AS nx,
        CASE WHEN g.read_uncommitted THEN p.next_offset
        ELSE greatest(p.log_start, coalesce((SELECT min(o.first_offset) FROM open_txns o
            WHERE o.topic_id = t.id AND o.partition = $2), p.next_offset)) END AS lso) x
    LEFT JOIN LATERAL (
        SELECT y.base_offset, CASE WHEN s.skip THEN NULL ELSE y.data END AS data,
            y.last_offset, s.skip
        FROM batches y
        CROSS JOIN LATERAL (SELECT "#,
    lease_skips!("g.read_uncommitted"),
    r#" AS skip) s
        WHERE y.topic_id = t.id AND y.partition = $2
          AND y.base_offset >= coalesce((SELECT max(z.base_offset) FROM batches z
                WHERE z.topic_id = t.id AND z.partition = $2 AND z.base_offset <= x.nx), 0)
          AND y.base_offset < least(x.lso, x.nx + $4)
        ORDER BY y.base_offset) b ON true
    WHERE t.name = $1
    ORDER BY b.base_offset"#
);

/// The fast lease path as one statement (see `lease_fast`): $1 topic, $2 partition, $3 group,
/// $4 max, $5 now, $6 expiry, $7 nonce base (a record's nonce is base + offset). Leases the
/// offsets `[first, upto)`, below the last stable offset (the high watermark for a group
/// reading uncommitted; offsets are dense there, as it applies only from the partition's
/// `sparse_to` on (past every batch compaction changed), so no record row is read); columns: whether it
/// applied, `first`, `upto`, then the base offset and data of each batch holding them. It
/// does not apply when a batch there is one leases skip (a transaction marker, or aborted
/// records when reading committed, found through the partial index `batches_txn`).
///
/// It applies only when the locked cursor is the version the statement's snapshot sees
/// (same `xmin`). A statement that waited for the cursor lock gets the newest cursor but
/// still reads `lease_state` as of its start: after another broker's lease call it would
/// miss that call's in-flight rows and move the floor over them, and after a reset it
/// would see rows the reset removed. It then falls back to the general path, whose
/// statements after the lock see everything committed before it.
const LEASE_FAST: &str = concat!(
    r#"WITH c AS (
        SELECT c.topic_id, c.group_id, c.check_at, greatest(c.floor, p.log_start) AS fl,
               greatest(c.next_offset, c.floor, p.log_start) AS nx,
               CASE WHEN g.read_uncommitted THEN p.next_offset
               ELSE greatest(p.log_start, coalesce((SELECT min(o.first_offset) FROM open_txns o
                   WHERE o.topic_id = t.id AND o.partition = $2), p.next_offset)) END AS lso,
               g.ordered_by_key, g.dead_letter_topic, g.read_uncommitted, c.xmin AS version,
               p.sparse_to
        FROM topics t
        JOIN partitions p ON p.topic_id = t.id AND p.partition = $2
        JOIN lease_groups g ON g.topic_id = t.id AND g.name = $3
        JOIN lease_cursors c ON c.topic_id = t.id AND c.partition = $2 AND c.group_id = g.id
        WHERE t.name = $1
        FOR UPDATE OF c),
    ok AS (
        SELECT * FROM c
        WHERE NOT c.ordered_by_key AND c.check_at > $5 AND c.nx >= c.sparse_to
          AND c.version = (SELECT v.xmin FROM lease_cursors v
              WHERE v.topic_id = c.topic_id AND v.partition = $2 AND v.group_id = c.group_id)
          AND (c.dead_letter_topic IS NULL
               OR EXISTS (SELECT 1 FROM topics d WHERE d.name = c.dead_letter_topic))),
    r AS (
        SELECT ok.nx AS first, least(ok.lso, ok.nx + $4) AS upto,
            coalesce((SELECT max(z.base_offset) FROM batches z
                WHERE z.topic_id = ok.topic_id AND z.partition = $2
                  AND z.base_offset <= ok.nx), 0) AS hb
        FROM ok WHERE ok.nx < ok.lso),
    go AS (
        SELECT ok.* FROM ok WHERE NOT EXISTS (
            SELECT 1 FROM delays d, r
            WHERE d.topic_id = ok.topic_id AND d.partition = $2
              AND d."offset" >= r.first AND d."offset" < r.upto AND d.not_before_ms > $5)
          AND NOT EXISTS (
            SELECT 1 FROM r, batches y
            WHERE y.topic_id = ok.topic_id AND y.partition = $2 AND y.txn
              AND y.base_offset >= r.hb AND y.base_offset < r.upto AND "#,
    lease_skips!("ok.read_uncommitted"),
    r#")),
    f AS (
        SELECT go.*, coalesce((SELECT s."offset" FROM lease_state s
            WHERE s.topic_id = go.topic_id AND s.partition = $2 AND s.group_id = go.group_id
              AND s."offset" >= go.fl AND s.state IN (1, 2)
            ORDER BY s."offset" LIMIT 1), go.nx) AS nf,
            (SELECT upto FROM r) AS new_next
        FROM go),
    d AS (
        DELETE FROM lease_state s USING f
        WHERE s.topic_id = f.topic_id AND s.partition = $2 AND s.group_id = f.group_id
          AND s."offset" >= f.fl AND s."offset" < f.nf AND s.state = 3),
    i AS (
        INSERT INTO lease_state (topic_id, partition, group_id, "offset", state, nonce,
            delivery_count, visible_at, first_leased_at)
        SELECT f.topic_id, $2, f.group_id, o, 1, $7 + o, 1, $6, $5
        FROM f, r, generate_series(r.first, r.upto - 1) AS o),
    u AS (
        UPDATE lease_cursors lc SET floor = f.nf,
            next_offset = coalesce(f.new_next, f.nx),
            check_at = CASE WHEN f.new_next IS NULL THEN lc.check_at
                            ELSE least(lc.check_at, $6) END
        FROM f
        WHERE lc.topic_id = f.topic_id AND lc.partition = $2 AND lc.group_id = f.group_id),
    b AS (
        SELECT y.base_offset, y.data FROM go, r, batches y
        WHERE y.topic_id = go.topic_id AND y.partition = $2
          AND y.base_offset >= r.hb AND y.base_offset < r.upto)
    SELECT EXISTS (SELECT 1 FROM go) AS went, (SELECT first FROM r), (SELECT upto FROM r),
           b.base_offset, b.data
    FROM (SELECT 1) one LEFT JOIN b ON EXISTS (SELECT 1 FROM go)
    ORDER BY b.base_offset"#
);

/// Counts of the never-leased offsets `[$3, $4)` ($4 at most the last stable offset, or the
/// high watermark when `$6`, the group reads uncommitted): those delayed (not-before after
/// `$5`), those leases skip ([`lease_skips`]), and those without a record (removed by
/// compaction: only below the partition's `sparse_to`, where the batches' `records` say how
/// many each holds; a batch straddling `$3` counts at most its records).
const FRESH_COUNTS: &str = concat!(
    r#"SELECT
        (SELECT count(*) FROM delays
         WHERE topic_id = $1 AND partition = $2 AND "offset" >= $3 AND "offset" < $4
           AND not_before_ms > $5),
        (SELECT coalesce(sum(least(y.last_offset, $4 - 1) - greatest(y.base_offset, $3) + 1), 0)
            ::bigint
         FROM batches y
         WHERE y.topic_id = $1 AND y.partition = $2 AND y.txn
           AND y.base_offset >= coalesce((SELECT max(z.base_offset) FROM batches z
                 WHERE z.topic_id = $1 AND z.partition = $2 AND z.base_offset <= $3), 0)
           AND y.base_offset < $4 AND y.last_offset >= $3 AND "#,
    lease_skips!("$6::boolean"),
    r#"),
        (SELECT greatest(0, sp.e - $3) - coalesce((
            SELECT sum(least(coalesce(y.records, y.last_offset - y.base_offset + 1),
                             least(y.last_offset, sp.e - 1) - greatest(y.base_offset, $3) + 1))
            FROM batches y
            WHERE y.topic_id = $1 AND y.partition = $2
              AND y.base_offset >= coalesce((SELECT max(z.base_offset) FROM batches z
                    WHERE z.topic_id = $1 AND z.partition = $2 AND z.base_offset <= $3), 0)
              AND y.base_offset < sp.e AND y.last_offset >= $3), 0)::bigint
         FROM (SELECT least($4, p.sparse_to) AS e FROM partitions p
               WHERE p.topic_id = $1 AND p.partition = $2) sp)"#
);

/// Never-leased offsets, whether the query may have had more, the last stable offset it
/// saw (the high watermark when reading uncommitted; later pages stop there: it only grows)
/// and whether it read uncommitted (later pages read the same way, even if the group's
/// config changed meanwhile).
struct Page {
    rows: Vec<Fresh>,
    /// The offsets `[.., upto)` are all in `rows` (offsets compaction removed have no item).
    upto: i64,
    full: bool,
    stable: i64,
    read_uncommitted: bool,
}

const WRITE_STATE: &str = r#"WITH s AS (
        INSERT INTO lease_state (topic_id, partition, group_id, "offset", state, nonce,
            delivery_count, visible_at, first_leased_at)
        SELECT $1, $2, $3, u.o, u.s, u.n, u.d, u.v, u.f
        FROM unnest($4::bigint[], $5::smallint[], $6::bigint[], $7::int[], $8::bigint[],
                    $9::bigint[]) AS u(o, s, n, d, v, f)
        ON CONFLICT (topic_id, partition, group_id, "offset") DO UPDATE SET
            state = excluded.state, nonce = excluded.nonce,
            delivery_count = excluded.delivery_count, visible_at = excluded.visible_at,
            first_leased_at = excluded.first_leased_at)
    UPDATE lease_cursors SET floor = $10, next_offset = $11, check_at = $12
    WHERE topic_id = $1 AND partition = $2 AND group_id = $3"#;

/// Acks a slice of tokens in one statement; one row with the topic's partition count, plus
/// one per acked token. No row at all: the topic does not exist. A lapsed lease (expiry
/// passed, not leased again: same nonce, still state 1) is acked too (rule
/// **lapsed_lease_can_be_acked**); a lease call that takes such a row locks it first and
/// re-checks it, so the two never both win.
pub(crate) const ACK: &str = r#"WITH t AS (SELECT id, partitions FROM topics WHERE name = $1),
    g AS (SELECT g.id FROM lease_groups g JOIN t ON g.topic_id = t.id WHERE g.name = $2),
    a AS (
        UPDATE lease_state s SET state = 3
        FROM unnest($4::bigint[], $5::bigint[]) AS u(o, n)
        WHERE s.topic_id = (SELECT id FROM t) AND s.partition = $3
          AND s.group_id = (SELECT id FROM g) AND s."offset" BETWEEN $6 AND $7
          AND s."offset" = u.o AND s.nonce = u.n AND s.state = 1
        RETURNING s."offset", s.nonce)
    SELECT t.partitions, a."offset", a.nonce FROM t LEFT JOIN a ON true"#;

/// One row when the token names its record's most recent lease and that lease lapsed
/// ($1 topic id, $2 partition, $3 group id, $4 offset, $5 nonce, $6 now).
const LAPSED: &str = r#"SELECT 1 FROM lease_state
    WHERE topic_id = $1 AND partition = $2 AND group_id = $3 AND "offset" = $4
      AND nonce = $5 AND state = 1 AND visible_at <= $6"#;

/// The locked cursor and what the lease call needs around it.
struct Cursor {
    floor: i64,
    next: i64,
    check_at: i64,
    log_start: i64,
    group_id: i64,
    config: LeaseGroupConfig,
    topic_id: i64,
}

/// A pending (leased or released) row.
struct Pending {
    offset: i64,
    state: i16,
    deliveries: i32,
    visible_at: i64,
    first_leased_at: Option<i64>,
    key: Option<Vec<u8>>,
}

/// One row to write to `lease_state`.
struct StateWrite {
    offset: i64,
    state: i16,
    nonce: i64,
    deliveries: i32,
    visible_at: i64,
    first_leased_at: Option<i64>,
}

/// The config in columns `at..at + 4` of `row`: max_deliveries, dead_letter_topic,
/// ordered_by_key, read_uncommitted (the order of `lease_groups`).
fn group_config(row: &tokio_postgres::Row, at: usize) -> LeaseGroupConfig {
    LeaseGroupConfig {
        max_deliveries: row.get::<_, Option<i32>>(at).map(|n| n.max(0) as u32),
        dead_letter_topic: row.get(at + 1),
        ordered_by_key: row.get(at + 2),
        read_uncommitted: row.get(at + 3),
    }
}

fn token_nonce(token: &LeaseToken) -> i64 {
    token.nonce as i64
}

impl PgStore {
    /// The in-process lock serialising lease calls of one (topic, partition, group).
    pub(crate) fn lease_lock(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.lease_locks.lock();
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks
            .entry((topic.to_string(), partition, group.to_string()))
            .or_default()
            .clone()
    }

    /// Creates the group (default config) and its cursor for the partition when missing.
    async fn ensure_cursor(
        &self,
        client: &deadpool_postgres::Object,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<()> {
        let t = self.topic_partition(&***client, topic, partition).await?;
        client
            .execute(
                "INSERT INTO lease_groups (topic_id, name) VALUES ($1, $2)
                 ON CONFLICT (topic_id, name) DO NOTHING",
                &[&t.id, &group],
            )
            .await
            .map_err(db_err)?;
        client
            .execute(
                "INSERT INTO lease_cursors (topic_id, partition, group_id)
                 SELECT $1, $2, id FROM lease_groups WHERE topic_id = $1 AND name = $3
                 ON CONFLICT DO NOTHING",
                &[&t.id, &partition, &group],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn do_set_lease_group(
        &self,
        topic: &str,
        group: &str,
        config: LeaseGroupConfig,
    ) -> StoreResult<()> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let t = self.topic_row(&**client, topic).await?;
        if config.max_deliveries == Some(0) {
            return Err(StoreError::InvalidArgument(
                "max_deliveries must be at least 1".into(),
            ));
        }
        // Without a dead-letter topic, records past max_deliveries are archived: done and
        // counted dead-lettered, copied nowhere (rule
        // **max_deliveries_without_dead_letter_topic_archives**).
        if let Some(dlq) = &config.dead_letter_topic {
            self.topic_row(&**client, dlq).await?;
        }
        let max = config
            .max_deliveries
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        client
            .execute(
                "INSERT INTO lease_groups (topic_id, name, max_deliveries, dead_letter_topic,
                     ordered_by_key, read_uncommitted)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (topic_id, name) DO UPDATE SET max_deliveries = excluded.max_deliveries,
                     dead_letter_topic = excluded.dead_letter_topic,
                     ordered_by_key = excluded.ordered_by_key,
                     read_uncommitted = excluded.read_uncommitted",
                &[
                    &t.id,
                    &group,
                    &max,
                    &config.dead_letter_topic,
                    &config.ordered_by_key,
                    &config.read_uncommitted,
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn do_lease_groups(
        &self,
        topic: &str,
    ) -> StoreResult<BTreeMap<String, LeaseGroupConfig>> {
        let client = self.conn().await?;
        let t = self.topic_row(&**client, topic).await?;
        let rows = client
            .query(
                "SELECT name, max_deliveries, dead_letter_topic, ordered_by_key, read_uncommitted
                 FROM lease_groups WHERE topic_id = $1",
                &[&t.id],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), group_config(r, 1)))
            .collect())
    }

    pub(crate) async fn do_lease(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Lease>> {
        validate_group_name(group)?;
        self.check_open()?;
        let lock = self.lease_lock(topic, partition, group);
        let _serial = lock.lock().await;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        if max > 0 {
            if let Some(leases) = self
                .lease_fast(topic, partition, group, limit, visibility)
                .await?
            {
                return Ok(leases);
            }
        }
        for attempt in 0..2 {
            let obj = self.lease_conn().await?;
            let lock_stmt = obj.prepare_cached(LOCK_CURSOR).await.map_err(db_err)?;
            let floor_stmt = obj.prepare_cached(ADVANCE_FLOOR).await.map_err(db_err)?;
            let fresh_stmt = obj.prepare_cached(FRESH_FIRST).await.map_err(db_err)?;
            let tx = Tx::new(obj);
            let c = tx.client();
            let p3: [&(dyn ToSql + Sync); 3] = [&topic, &partition, &group];
            let p4: [&(dyn ToSql + Sync); 4] = [&topic, &partition, &group, &limit];
            // One round trip: begin, lock the cursor, move the floor, read the first fresh
            // records. A lease lost in a crash only means redelivery, so its commit does not
            // wait for the WAL flush (the next durable commit, e.g. an ack, flushes it).
            let (_, row, floor, fresh) = tokio::try_join!(
                c.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
                c.query_opt(&lock_stmt, &p3),
                c.query_opt(&floor_stmt, &p3),
                c.query(&fresh_stmt, &p4),
            )
            .map_err(db_err)?;
            if let (Some(row), Some(floor)) = (row, floor) {
                let mut items = Vec::new();
                let mut stable = i64::MIN;
                let mut upto = i64::MIN;
                // Without fresh rows there is no later page: the mode does not matter.
                let mut read_uncommitted = false;
                let head = fresh.first().map(|r0| {
                    (
                        r0.get::<_, i64>(2),
                        r0.get::<_, i64>(3),
                        r0.get::<_, bool>(6),
                    )
                });
                if let Some((nx, lso, ru)) = head {
                    upto = lso.min(nx.saturating_add(limit));
                    let batches: Vec<tokio_postgres::Row> = fresh
                        .into_iter()
                        .filter(|r| r.get::<_, Option<i64>>(0).is_some())
                        .collect();
                    items = fresh_items(&batches, [0, 1, 4, 5], nx, upto)?;
                    stable = lso;
                    read_uncommitted = ru;
                }
                let first = Page {
                    full: upto < stable,
                    rows: items,
                    upto,
                    stable,
                    read_uncommitted,
                };
                return self
                    .lease_in_tx(
                        tx,
                        row,
                        floor.get(0),
                        first,
                        topic,
                        partition,
                        group,
                        max,
                        visibility,
                    )
                    .await;
            }
            tx.rollback().await;
            if attempt == 0 {
                let client = self.conn().await?;
                self.ensure_cursor(&client, topic, partition, group).await?;
            }
        }
        Err(StoreError::Unavailable(
            "lease group vanished while leasing".into(),
        ))
    }

    /// The common case in one round trip and one statement: no pending row can be visible yet
    /// (`check_at`), the group is not ordered by key, and none of the next records is
    /// delayed. `None` when the call needs the general path (nothing was changed then).
    async fn lease_fast(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        limit: i64,
        visibility: Duration,
    ) -> StoreResult<Option<Vec<Lease>>> {
        let now = self.now();
        let expires = now.saturating_add(millis(visibility));
        let nonce_base = (rand::random::<u64>() >> 2) as i64;
        let obj = self.lease_conn().await?;
        let stmt = obj.prepare_cached(LEASE_FAST).await.map_err(db_err)?;
        let mut tx = Tx::new(obj);
        let c = tx.client();
        let params: [&(dyn ToSql + Sync); 7] = [
            &topic,
            &partition,
            &group,
            &limit,
            &now,
            &expires,
            &nonce_base,
        ];
        let (_, rows, _) = tokio::try_join!(
            c.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
            c.query(&stmt, &params),
            c.batch_execute("COMMIT"),
        )
        .map_err(db_err)?;
        tx.finished();
        let went = rows.first().is_some_and(|r| r.get::<_, bool>(0));
        if !went {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(rows.len());
        let range = rows
            .first()
            .and_then(|r| Some((r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?)));
        if let Some((first, upto)) = range {
            decode_rows(&rows, 4, first, |record| {
                if record.offset >= upto {
                    return false;
                }
                let offset = record.offset;
                out.push(Lease {
                    record,
                    token: LeaseToken {
                        partition,
                        offset,
                        nonce: nonce_base.wrapping_add(offset) as u64,
                    },
                    delivery_count: 1,
                    expires_at_ms: expires,
                    first_leased_at_ms: now,
                });
                true
            })?;
            if out.len() as i64 != upto - first {
                return Err(StoreError::Corrupt(format!(
                    "{topic}/{partition}: batches hold {} of the records {first}..{upto}",
                    out.len()
                )));
            }
        }
        Ok(Some(out))
    }

    /// The body of a lease call, with the cursor row locked by `tx` and the floor advanced.
    #[allow(clippy::too_many_arguments)]
    async fn lease_in_tx(
        &self,
        mut tx: Tx,
        row: tokio_postgres::Row,
        floor: i64,
        first_page: Page,
        topic: &str,
        partition: i32,
        group: &str,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Lease>> {
        let c = Cursor {
            floor: row.get(0),
            next: row.get(1),
            check_at: row.get(2),
            log_start: row.get(3),
            group_id: row.get(5),
            config: group_config(&row, 6),
            topic_id: row.get(10),
        };
        if let Some(dlq) = &c.config.dead_letter_topic {
            if let Err(e) = self.topic_partition(&**tx.client(), dlq, 0).await {
                tx.rollback().await;
                return Err(e);
            }
        }
        if max == 0 {
            tx.rollback().await;
            return Ok(Vec::new());
        }
        let now = self.now();
        let vis = millis(visibility);
        let expires = now.saturating_add(vis);
        let nonce_base = (rand::random::<u64>() >> 2) as i64;
        let mut nonce_seq = 0i64;
        let mut next_nonce = || {
            nonce_seq += 1;
            (nonce_base.wrapping_add(nonce_seq)) & i64::MAX
        };
        let (tid, gid) = (c.topic_id, c.group_id);
        let next = c.next.max(c.floor).max(c.log_start);
        let db = tx.client();

        let ordered = c.config.ordered_by_key;
        let max_deliveries = c.config.max_deliveries.map(|n| n as i64);
        let mut writes: Vec<StateWrite> = Vec::new();
        let mut leases: Vec<(i64, i32, i64, i64)> = Vec::new(); // offset, deliveries, first, nonce
        let mut dead: Vec<(i64, i32)> = Vec::new(); // offset, deliveries
        let mut fresh_records: BTreeMap<i64, StoredRecord> = BTreeMap::new();
        let mut blocked: HashSet<Vec<u8>> = HashSet::new();
        let mut check_at = c.check_at;

        // 1. Pending rows (expired, released, delayed, blocked), oldest first.
        if floor < next && (ordered || now >= c.check_at) {
            let sql = r#"SELECT s."offset", s.state, s.delivery_count, s.visible_at, s.first_leased_at
                   FROM lease_state s
                   WHERE s.topic_id = $1 AND s.partition = $2 AND s.group_id = $3
                     AND s."offset" >= $4 AND s.state IN (1, 2)
                   ORDER BY s."offset""#;
            let stmt = db.prepare_cached(sql).await.map_err(db_err)?;
            let rows = db
                .query(&stmt, &[&tid, &partition, &gid, &floor])
                .await
                .map_err(db_err)?;
            // Keys only matter for ordering by key: read from the batches holding them.
            let keys = if ordered {
                let offs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                records_at(db, tid, partition, &offs).await?
            } else {
                BTreeMap::new()
            };
            let pending: Vec<Pending> = rows
                .iter()
                .map(|r| {
                    let offset: i64 = r.get(0);
                    Pending {
                        offset,
                        state: r.get(1),
                        deliveries: r.get(2),
                        visible_at: r.get(3),
                        first_leased_at: r.get(4),
                        key: keys
                            .get(&offset)
                            .and_then(|rec| rec.key.as_ref().map(|k| k.to_vec())),
                    }
                })
                .collect();
            // A key with a record in flight is locked: none of its records is leased.
            if ordered {
                for p in &pending {
                    if let (LEASED, true, Some(k)) = (p.state, p.visible_at > now, &p.key) {
                        blocked.insert(k.clone());
                    }
                }
            }
            let mut candidates = Vec::new();
            let mut to_lease = 0usize;
            let mut new_check = i64::MAX;
            for p in &pending {
                let key = if ordered { p.key.clone() } else { None };
                let is_blocked = key.as_ref().is_some_and(|k| blocked.contains(k));
                let eligible = p.visible_at <= now && !is_blocked;
                let dies = max_deliveries.is_some_and(|n| i64::from(p.deliveries) >= n);
                let taken = eligible && (dies || to_lease < max);
                if taken {
                    // Dead letters do not count towards `max`.
                    if !dies {
                        to_lease += 1;
                    }
                    candidates.push(p);
                } else if p.visible_at <= now && !is_blocked {
                    new_check = new_check.min(now); // left for the next call
                } else {
                    new_check = new_check.min(if is_blocked { now } else { p.visible_at });
                }
                // A record this call leases or dead-letters blocks nothing after it (one call
                // leases a key's records in order); one it leaves makes its key wait.
                if let Some(k) = key.filter(|_| !taken) {
                    blocked.insert(k);
                }
            }
            check_at = new_check;
            if !candidates.is_empty() {
                // Lock them; an ack that committed meanwhile drops its row from the set.
                let offs: Vec<i64> = candidates.iter().map(|p| p.offset).collect();
                let locked: HashSet<i64> = db
                    .query(
                        r#"SELECT "offset" FROM lease_state
                           WHERE topic_id = $1 AND partition = $2 AND group_id = $3
                             AND "offset" = ANY($4) AND state IN (1, 2) AND visible_at <= $5
                           FOR UPDATE"#,
                        &[&tid, &partition, &gid, &offs, &now],
                    )
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                // Their bodies: a record compaction removed is never delivered again.
                let offs: Vec<i64> = candidates
                    .iter()
                    .map(|p| p.offset)
                    .filter(|o| locked.contains(o))
                    .collect();
                fresh_records.extend(records_at(db, tid, partition, &offs).await?);
                for p in candidates {
                    if !locked.contains(&p.offset) {
                        continue;
                    }
                    if !fresh_records.contains_key(&p.offset) {
                        writes.push(StateWrite {
                            offset: p.offset,
                            state: DONE,
                            nonce: 0,
                            deliveries: p.deliveries,
                            visible_at: now,
                            first_leased_at: p.first_leased_at,
                        });
                        continue;
                    }
                    let first = p.first_leased_at.unwrap_or(now);
                    if max_deliveries.is_some_and(|n| i64::from(p.deliveries) >= n) {
                        dead.push((p.offset, p.deliveries));
                        writes.push(StateWrite {
                            offset: p.offset,
                            state: DEAD,
                            nonce: 0,
                            deliveries: p.deliveries,
                            visible_at: now,
                            first_leased_at: Some(first),
                        });
                        continue;
                    }
                    let nonce = next_nonce();
                    leases.push((p.offset, p.deliveries + 1, first, nonce));
                    writes.push(StateWrite {
                        offset: p.offset,
                        state: LEASED,
                        nonce,
                        deliveries: p.deliveries + 1,
                        visible_at: expires,
                        first_leased_at: Some(first),
                    });
                }
            }
        }

        // 2. Fresh records from the cursor on: the first page came with the lock.
        let mut new_next = next;
        let mut scanned = 0usize;
        let mut skipped = 0usize;
        let mut page = first_page;
        let mut window = 0usize;
        'pages: loop {
            let full = page.full;
            for item in std::mem::take(&mut page.rows) {
                if leases.len() >= max {
                    break 'pages;
                }
                let rec = match item {
                    Fresh::Record(rec) => rec,
                    Fresh::Skip(offset) => {
                        // Done for the group at once: never leased, counted done.
                        skipped += 1;
                        new_next = offset + 1;
                        writes.push(StateWrite {
                            offset,
                            state: DONE,
                            nonce: 0,
                            deliveries: 0,
                            visible_at: now,
                            first_leased_at: None,
                        });
                        continue;
                    }
                };
                scanned += 1;
                new_next = rec.offset + 1;
                let key = if ordered { rec.key.clone() } else { None };
                let is_blocked = key.as_ref().is_some_and(|k| blocked.contains(k.as_ref()));
                if let Some(nb) = rec.not_before_ms.filter(|&nb| nb > now) {
                    writes.push(StateWrite {
                        offset: rec.offset,
                        state: RELEASED,
                        nonce: 0,
                        deliveries: 0,
                        visible_at: nb,
                        first_leased_at: None,
                    });
                    check_at = check_at.min(nb);
                } else if is_blocked {
                    writes.push(StateWrite {
                        offset: rec.offset,
                        state: RELEASED,
                        nonce: 0,
                        deliveries: 0,
                        visible_at: now,
                        first_leased_at: None,
                    });
                    check_at = check_at.min(now);
                } else if max_deliveries == Some(0) {
                    dead.push((rec.offset, 0));
                    writes.push(StateWrite {
                        offset: rec.offset,
                        state: DEAD,
                        nonce: 0,
                        deliveries: 0,
                        visible_at: now,
                        first_leased_at: Some(now),
                    });
                } else {
                    let nonce = next_nonce();
                    leases.push((rec.offset, 1, now, nonce));
                    writes.push(StateWrite {
                        offset: rec.offset,
                        state: LEASED,
                        nonce,
                        deliveries: 1,
                        visible_at: expires,
                        first_leased_at: Some(now),
                    });
                }
                // Only a record left for later (delayed or blocked) makes its key wait;
                // one leased or dead-lettered by this call does not.
                let left = is_blocked || rec.not_before_ms.is_some_and(|nb| nb > now);
                if let Some(k) = key.filter(|_| left) {
                    blocked.insert(k.to_vec());
                }
                fresh_records.insert(rec.offset, rec);
            }
            // Every offset of the page is passed (those compaction removed have no item).
            new_next = new_next.max(page.upto);
            if !full || leases.len() >= max || scanned >= max + SCAN_SLACK || skipped >= MAX_SKIPPED
            {
                break;
            }
            // Windows grow, so a compacted (sparse) range takes few pages.
            window = window
                .saturating_mul(2)
                .max(max - leases.len())
                .min(MAX_WINDOW);
            let (rows, upto) = fresh_from(
                db,
                tid,
                partition,
                new_next,
                window,
                page.stable,
                page.read_uncommitted,
            )
            .await?;
            page = Page {
                full: upto < page.stable,
                rows,
                upto,
                stable: page.stable,
                read_uncommitted: page.read_uncommitted,
            };
        }
        if !leases.is_empty() {
            check_at = check_at.min(expires);
        }

        // 3. Bodies of re-leased and dead-lettered records not read above, the state rows
        // and the cursor, dead letters, commit. Records past max_deliveries go to the
        // dead-letter topic, or are only marked (archived) when the group has none.
        let dlq = c
            .config
            .dead_letter_topic
            .clone()
            .filter(|_| !dead.is_empty());
        let missing: Vec<i64> = leases
            .iter()
            .map(|l| l.0)
            .chain(dead.iter().filter(|_| dlq.is_some()).map(|d| d.0))
            .filter(|o| !fresh_records.contains_key(o))
            .collect();
        let write_stmt = db.prepare_cached(WRITE_STATE).await.map_err(db_err)?;
        let offs: Vec<i64> = writes.iter().map(|w| w.offset).collect();
        let states: Vec<i16> = writes.iter().map(|w| w.state).collect();
        let nonces: Vec<i64> = writes.iter().map(|w| w.nonce).collect();
        let dcs: Vec<i32> = writes.iter().map(|w| w.deliveries).collect();
        let vis_at: Vec<i64> = writes.iter().map(|w| w.visible_at).collect();
        let firsts: Vec<Option<i64>> = writes.iter().map(|w| w.first_leased_at).collect();
        let write_params: [&(dyn ToSql + Sync); 12] = [
            &tid, &partition, &gid, &offs, &states, &nonces, &dcs, &vis_at, &firsts, &floor,
            &new_next, &check_at,
        ];
        let must_write =
            !writes.is_empty() || floor != c.floor || new_next != c.next || check_at != c.check_at;
        let write = async {
            if must_write {
                db.execute(&write_stmt, &write_params).await.map(|_| ())
            } else {
                Ok(())
            }
        };
        let read = records_at(db, tid, partition, &missing);
        let mut dlq_bump = None;
        if let Some(dlq) = dlq {
            let (_, bodies) = tokio::try_join!(async { write.await.map_err(db_err) }, read)?;
            fresh_records.extend(bodies);
            // Dead letters, in the same transaction.
            dead.sort_unstable();
            let mut locked = lock_partition(db, &dlq, 0).await?;
            let count = dead.len();
            for (i, (offset, n)) in dead.iter().enumerate() {
                let Some(rec) = fresh_records.get(offset) else {
                    continue;
                };
                let dl = rec.to_dead_letter(topic, partition, group, *n as u32);
                // One batch per dead letter; one NOTIFY for the whole transaction.
                let last = i + 1 == count;
                let mut row = BatchRow::from_records(&[dl], now, None)?;
                let hw =
                    write_batch(db, &self.channel, &locked, 0, &mut row, now, last, false).await?;
                locked.next_offset = hw;
                locked.max_ts = Some(
                    locked
                        .max_ts
                        .map_or(rec.timestamp_ms, |m| m.max(rec.timestamp_ms)),
                );
                dlq_bump = Some((locked.topic_id, hw));
            }
            tx.commit().await?;
        } else {
            // Everything in one round trip (archived records are only marked dead-lettered).
            let (_, bodies, _) =
                tokio::try_join!(async { write.await.map_err(db_err) }, read, async {
                    db.batch_execute("COMMIT").await.map_err(db_err)
                })?;
            fresh_records.extend(bodies);
            tx.finished();
        }
        if let Some((t, hw)) = dlq_bump {
            self.waiters.bump(t, 0, hw);
        }
        let mut out = Vec::with_capacity(leases.len());
        leases.sort_unstable_by_key(|l| l.0);
        for (offset, deliveries, first, nonce) in leases {
            let record = fresh_records.remove(&offset).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "leased record {topic}/{partition}@{offset} is missing"
                ))
            })?;
            out.push(Lease {
                record,
                token: LeaseToken {
                    partition,
                    offset,
                    nonce: nonce as u64,
                },
                delivery_count: deliveries as u32,
                expires_at_ms: expires,
                first_leased_at_ms: first,
            });
        }
        Ok(out)
    }

    pub(crate) async fn do_ack(
        &self,
        topic: &str,
        group: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        validate_group_name(group)?;
        self.check_open()?;
        // One statement per partition, each scanning only its offset range of the primary
        // key (not every row of the group), all sent in one round trip.
        let mut by_partition: BTreeMap<i32, Vec<&LeaseToken>> = BTreeMap::new();
        for t in tokens {
            by_partition.entry(t.partition).or_default().push(t);
        }
        if by_partition.is_empty() {
            by_partition.insert(0, Vec::new());
        }
        // Tokens in offset order, the order in which `reset_lease_start` and
        // `delete_lease_group` lock a partition's rows (see `lease_admin` for acks of
        // several calls in one commit group).
        for ts in by_partition.values_mut() {
            ts.sort_by_key(|t| t.offset);
        }
        struct Args {
            p: i32,
            offs: Vec<i64>,
            nonces: Vec<i64>,
            lo: i64,
            hi: i64,
        }
        let args: Vec<Args> = by_partition
            .iter()
            .map(|(p, ts)| Args {
                p: *p,
                offs: ts.iter().map(|t| t.offset).collect(),
                nonces: ts.iter().map(|t| token_nonce(t)).collect(),
                lo: ts.iter().map(|t| t.offset).min().unwrap_or(0),
                hi: ts.iter().map(|t| t.offset).max().unwrap_or(-1),
            })
            .collect();
        // In a commit group with other acks, appends and commits (one WAL flush for all);
        // alone when the group says so.
        let statements = args
            .iter()
            .map(|a| StatementJob {
                sql: ACK,
                params: vec![
                    Box::new(topic.to_string()),
                    Box::new(group.to_string()),
                    Box::new(a.p),
                    Box::new(a.offs.clone()),
                    Box::new(a.nonces.clone()),
                    Box::new(a.lo),
                    Box::new(a.hi),
                ],
            })
            .collect();
        let results = match self.group.query(&self.group_ctx, statements).await {
            Outcome::Done(r) => r?,
            Outcome::Alone(()) => {
                let client = self.conn().await?;
                let stmt = client.prepare_cached(ACK).await.map_err(db_err)?;
                let (client, stmt) = (&client, &stmt);
                futures::future::try_join_all(args.iter().map(|a| async move {
                    client
                        .query(
                            stmt,
                            &[&topic, &group, &a.p, &a.offs, &a.nonces, &a.lo, &a.hi],
                        )
                        .await
                }))
                .await
                .map_err(db_err)?
            }
        };
        let mut partitions = None;
        let mut done: HashSet<(i32, i64, i64)> = HashSet::new();
        for (a, rows) in args.iter().zip(&results) {
            for r in rows {
                partitions = Some(r.get::<_, i32>(0));
                if let Some(o) = r.get::<_, Option<i64>>(1) {
                    done.insert((a.p, o, r.get(2)));
                }
            }
        }
        let Some(partitions) = partitions else {
            return Err(StoreError::UnknownTopic(topic.to_string()));
        };
        Ok(tokens
            .iter()
            .map(|t| {
                if t.partition < 0 || t.partition >= partitions {
                    Err(crate::unknown_partition(topic, t.partition))
                } else if done.remove(&(t.partition, t.offset, token_nonce(t))) {
                    Ok(())
                } else {
                    Err(StoreError::LeaseExpired)
                }
            })
            .collect())
    }

    /// Topic id and group id for a token call; `LeaseExpired` when the group does not exist.
    async fn token_target(
        &self,
        client: &deadpool_postgres::Object,
        topic: &str,
        group: &str,
        token: &LeaseToken,
    ) -> StoreResult<(i64, i64)> {
        validate_group_name(group)?;
        let t = self
            .topic_partition(&***client, topic, token.partition)
            .await?;
        let gid: i64 = client
            .query_opt(
                "SELECT id FROM lease_groups WHERE topic_id = $1 AND name = $2",
                &[&t.id, &group],
            )
            .await
            .map_err(db_err)?
            .ok_or(StoreError::LeaseExpired)?
            .get(0);
        Ok((t.id, gid))
    }

    pub(crate) async fn do_release(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        delay: Duration,
    ) -> StoreResult<()> {
        let mut client = self.conn().await?;
        let (tid, gid) = self.token_target(&client, topic, group, &token).await?;
        let now = self.now();
        let visible = now.saturating_add(millis(delay));
        let tx = client.transaction().await.map_err(db_err)?;
        // The cursor first: the same lock order as leasing.
        tx.execute(
            "UPDATE lease_cursors SET check_at = least(check_at, $4)
             WHERE topic_id = $1 AND partition = $2 AND group_id = $3",
            &[&tid, &token.partition, &gid, &visible],
        )
        .await
        .map_err(db_err)?;
        let n = tx
            .execute(
                r#"UPDATE lease_state SET state = 2, visible_at = $6
                   WHERE topic_id = $1 AND partition = $2 AND group_id = $3 AND "offset" = $4
                     AND nonce = $5 AND state = 1 AND visible_at > $7"#,
                &[
                    &tid,
                    &token.partition,
                    &gid,
                    &token.offset,
                    &token_nonce(&token),
                    &visible,
                    &now,
                ],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            let lapsed = tx
                .query_opt(
                    LAPSED,
                    &[
                        &tid,
                        &token.partition,
                        &gid,
                        &token.offset,
                        &token_nonce(&token),
                        &now,
                    ],
                )
                .await
                .map_err(db_err)?;
            return Err(if lapsed.is_some() {
                StoreError::LeaseLapsed
            } else {
                StoreError::LeaseExpired
            });
        }
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn do_extend(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        visibility: Duration,
    ) -> StoreResult<i64> {
        let client = self.conn().await?;
        let (tid, gid) = self.token_target(&client, topic, group, &token).await?;
        let now = self.now();
        let expires = now.saturating_add(millis(visibility));
        let nonce = token_nonce(&token);
        let tx = Tx::new(client);
        let c = tx.client();
        let cursor_params: [&(dyn ToSql + Sync); 4] = [&tid, &token.partition, &gid, &expires];
        let state_params: [&(dyn ToSql + Sync); 7] = [
            &tid,
            &token.partition,
            &gid,
            &token.offset,
            &nonce,
            &expires,
            &now,
        ];
        // A shorter expiry must lower the cursor's check_at (cursor first: the lock order of
        // leasing); all in one round trip.
        let (_, _, n) = tokio::try_join!(
            c.batch_execute("BEGIN"),
            c.execute(
                "UPDATE lease_cursors SET check_at = $4
                 WHERE topic_id = $1 AND partition = $2 AND group_id = $3 AND check_at > $4",
                &cursor_params,
            ),
            c.execute(
                r#"UPDATE lease_state SET visible_at = $6
                   WHERE topic_id = $1 AND partition = $2 AND group_id = $3 AND "offset" = $4
                     AND nonce = $5 AND state = 1 AND visible_at > $7"#,
                &state_params,
            ),
        )
        .map_err(db_err)?;
        if n == 0 {
            let lapsed = c
                .query_opt(
                    LAPSED,
                    &[&tid, &token.partition, &gid, &token.offset, &nonce, &now],
                )
                .await
                .map_err(db_err)?;
            tx.rollback().await;
            return Err(if lapsed.is_some() {
                StoreError::LeaseLapsed
            } else {
                StoreError::LeaseExpired
            });
        }
        tx.commit().await?;
        Ok(expires)
    }

    pub(crate) async fn do_lease_counts(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<LeaseCounts> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let (tid, log_start, hw, lso) = self.offsets_with_lso(&client, topic, partition).await?;
        let now = self.now();
        // The group's mode even before it has a cursor on the partition.
        let cursor = client
            .query_opt(
                "SELECT c.floor, c.next_offset, c.group_id, g.read_uncommitted
                 FROM lease_groups g
                 LEFT JOIN lease_cursors c ON c.group_id = g.id AND c.partition = $2
                 WHERE g.topic_id = $1 AND g.name = $3",
                &[&tid, &partition, &group],
            )
            .await
            .map_err(db_err)?;
        let (floor, next, gid, read_uncommitted) = match cursor {
            Some(r) => (
                r.get::<_, Option<i64>>(0).unwrap_or(0),
                r.get::<_, Option<i64>>(1).unwrap_or(0),
                r.get::<_, Option<i64>>(2),
                r.get::<_, bool>(3),
            ),
            None => (0, 0, None, false),
        };
        let floor = floor.max(log_start).min(hw);
        let next = next.max(floor).min(hw);
        let mut c = LeaseCounts {
            done: (floor - log_start) as u64,
            ..LeaseCounts::default()
        };
        if let Some(gid) = gid {
            let r = client
                .query_one(
                    r#"SELECT
                         count(*) FILTER (WHERE state IN (3, 4) AND "offset" >= $4),
                         count(*) FILTER (WHERE state = 4),
                         count(*) FILTER (WHERE state = 1 AND visible_at > $6 AND "offset" >= $4),
                         count(*) FILTER (WHERE state = 2 AND visible_at > $6 AND "offset" >= $4),
                         count(*) FILTER (WHERE state IN (1, 2) AND visible_at <= $6 AND "offset" >= $4)
                       FROM lease_state
                       WHERE topic_id = $1 AND partition = $2 AND group_id = $3
                         AND "offset" >= $5 AND "offset" < $7"#,
                    &[&tid, &partition, &gid, &floor, &log_start, &now, &next],
                )
                .await
                .map_err(db_err)?;
            c.done += r.get::<_, i64>(0) as u64;
            c.dead_lettered = r.get::<_, i64>(1) as u64;
            c.leased = r.get::<_, i64>(2) as u64;
            c.delayed = r.get::<_, i64>(3) as u64;
            c.available = r.get::<_, i64>(4) as u64;
        }
        // Never-leased records: delayed at or past the last stable offset (none when reading
        // uncommitted), and before it while their not-before is in the future; done when
        // leases skip them.
        let stable = if read_uncommitted {
            hw
        } else {
            lso.clamp(next, hw)
        };
        let stmt = client.prepare_cached(FRESH_COUNTS).await.map_err(db_err)?;
        let r = client
            .query_one(
                &stmt,
                &[&tid, &partition, &next, &stable, &now, &read_uncommitted],
            )
            .await
            .map_err(db_err)?;
        let (delayed, skipped): (i64, i64) = (r.get(0), r.get(1));
        let removed = r.get::<_, Option<i64>>(2).unwrap_or(0).max(0);
        c.delayed += (hw - stable + delayed) as u64;
        c.done += skipped as u64;
        c.available += (stable - next - delayed - skipped - removed).max(0) as u64;
        Ok(c)
    }
}
