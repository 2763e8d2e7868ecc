//! [`broker_api::Store::report`] and [`broker_api::Store::lease_floor`] of the PostgreSQL
//! store: record bytes per partition, the size of every table of the schema, the pools, and
//! how many store calls were slow.

use std::sync::atomic::Ordering;

use broker_api::{
    validate_group_name, PartitionSize, ReportCell, ReportTable, StoreReport, StoreResult,
};

use crate::error::db_err;
use crate::PgStore;

/// A store call slower than this counts as slow in the report (a bound of
/// [`broker_api::metrics::LATENCY_BUCKETS`], so the count is exact).
pub const SLOW_CALL_SECS: f64 = 0.1;

/// Rows of done lease states read per query while walking up from the cursor's floor.
const FLOOR_PAGE: i64 = 1000;

impl PgStore {
    /// The report: partition sizes from the `partitions` rows, table sizes from the
    /// catalogue, pool state and slow-call counts from memory.
    pub(crate) async fn do_report(&self, topic: Option<&str>) -> StoreResult<StoreReport> {
        let client = self.conn().await?;
        if let Some(t) = topic {
            self.topic_partition(&**client, t, 0).await?;
        }
        let rows = client
            .query(
                "SELECT t.name, p.partition, p.bytes FROM partitions p
                 JOIN topics t ON t.id = p.topic_id
                 WHERE $1::text IS NULL OR t.name = $1
                 ORDER BY t.name, p.partition",
                &[&topic],
            )
            .await
            .map_err(db_err)?;
        let mut report = StoreReport::default();
        for r in rows {
            report.partitions.push(PartitionSize {
                topic: r.get(0),
                partition: r.get(1),
                bytes: r.get::<_, i64>(2).max(0) as u64,
            });
        }
        let mut tables = ReportTable::new(
            "tables",
            &format!(
                "Tables of schema {}: bytes on disk with indexes and TOAST, of which indexes, \
                 and the planner's row estimate (-1: never analysed).",
                self.schema
            ),
            &[
                "table",
                "total_bytes",
                "table_bytes",
                "index_bytes",
                "rows_estimate",
            ],
        );
        let rows = client
            .query(
                "SELECT c.relname::text, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
                        pg_indexes_size(c.oid), c.reltuples::bigint
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
                 ORDER BY pg_total_relation_size(c.oid) DESC, c.relname",
                &[&self.schema],
            )
            .await
            .map_err(db_err)?;
        for r in rows {
            tables.push(vec![
                ReportCell::from(r.get::<_, String>(0)),
                r.get::<_, i64>(1).into(),
                r.get::<_, i64>(2).into(),
                r.get::<_, i64>(3).into(),
                r.get::<_, i64>(4).into(),
            ]);
        }
        drop(client);
        report.tables.push(tables);
        report.tables.push(self.pool_table());
        report.tables.push(self.calls_table());
        Ok(report)
    }

    /// The two connection pools now.
    fn pool_table(&self) -> ReportTable {
        let mut t = ReportTable::new(
            "pools",
            "Connection pools: connections held, idle, the most allowed, calls waiting now, and \
             checkouts since start that found every connection of a full pool in use.",
            &[
                "pool",
                "connections",
                "idle",
                "max",
                "waiting",
                "waits_total",
            ],
        );
        for (i, (name, pool)) in [("main", &self.pool), ("lease", &self.lease_pool)]
            .into_iter()
            .enumerate()
        {
            let st = pool.status();
            t.push(vec![
                name.into(),
                (st.size as u64).into(),
                (st.available as u64).into(),
                (st.max_size as u64).into(),
                (st.waiting as u64).into(),
                self.stats.pool_waits[i].load(Ordering::Relaxed).into(),
            ]);
        }
        t
    }

    /// Store calls per kind since start: how many, how many were slow, the mean time.
    fn calls_table(&self) -> ReportTable {
        let mut t = ReportTable::new(
            "calls",
            &format!(
                "Store calls since start per kind (checkout and queries): how many, how many \
                 took longer than {} ms (slow), and the mean.",
                SLOW_CALL_SECS * 1000.0
            ),
            &["kind", "calls", "slow", "mean_ms"],
        );
        for (i, op) in crate::store::QUERY_OPS.iter().enumerate() {
            let h = self.stats.query[i].snapshot();
            let fast = h
                .bounds
                .iter()
                .position(|b| *b >= SLOW_CALL_SECS)
                .map_or(h.count, |i| h.cumulative[i]);
            let mean = (h.count > 0).then(|| h.sum_secs * 1000.0 / h.count as f64);
            t.push(vec![
                (*op).into(),
                h.count.into(),
                (h.count - fast).into(),
                mean.map(|m| (m * 100.0).round() / 100.0).into(),
            ]);
        }
        t
    }

    /// The lease cursor's floor moved over the run of done records right above it, within
    /// `[log_start, high watermark]`.
    pub(crate) async fn do_lease_floor(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<i64> {
        validate_group_name(group)?;
        let client = self.conn().await?;
        let (tid, log_start, hw) = self.offsets_of(&client, topic, partition).await?;
        let cursor = client
            .query_opt(
                "SELECT c.floor, g.id FROM lease_groups g
                 JOIN lease_cursors c ON c.group_id = g.id AND c.partition = $2
                 WHERE g.topic_id = $1 AND g.name = $3",
                &[&tid, &partition, &group],
            )
            .await
            .map_err(db_err)?;
        let Some(cursor) = cursor else {
            return Ok(log_start);
        };
        let gid: i64 = cursor.get(1);
        let mut floor = cursor.get::<_, i64>(0).max(log_start).min(hw);
        loop {
            let done = client
                .query(
                    r#"SELECT "offset" FROM lease_state
                       WHERE topic_id = $1 AND partition = $2 AND group_id = $3
                         AND "offset" >= $4 AND "offset" < $5 AND state IN (3, 4)
                       ORDER BY "offset" LIMIT $6"#,
                    &[&tid, &partition, &gid, &floor, &hw, &FLOOR_PAGE],
                )
                .await
                .map_err(db_err)?;
            let page = done.len() as i64;
            for r in done {
                if r.get::<_, i64>(0) != floor {
                    return Ok(floor);
                }
                floor += 1;
            }
            if page < FLOOR_PAGE {
                return Ok(floor);
            }
        }
    }
}
