//! Postgres's limits, measured without any store: binary COPY of the same rows into a bare
//! table, and the naive queue of the seeds (single-row INSERT; SELECT ... FOR UPDATE SKIP
//! LOCKED LIMIT 1 + DELETE); and a chunked read of batch-sized rows (what a cleaner reads).
//! Everything lives in a throwaway schema dropped afterwards.

use std::time::{Duration, Instant};

use futures::pin_mut;
use hdrhistogram::Histogram;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::workloads::{payload, Throughput};
use crate::{BenchError, BenchResult};

/// A connection whose driver runs on its own task.
pub async fn connect(url: &str) -> BenchResult<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("postgres connection ended: {e}");
        }
    });
    Ok(client)
}

/// Quotes an identifier made by the harness (letters, digits, `_` only).
fn ident(name: &str) -> BenchResult<String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(BenchError::Wrong(format!("bad schema name {name:?}")));
    }
    Ok(format!("\"{name}\""))
}

/// Drops a schema the run created, with everything in it.
pub async fn drop_schema(url: &str, schema: &str) -> BenchResult<()> {
    let c = connect(url).await?;
    c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(schema)?))
        .await?;
    Ok(())
}

/// The Postgres server's version string.
pub async fn version(url: &str) -> BenchResult<String> {
    let c = connect(url).await?;
    let row = c.query_one("SELECT version()", &[]).await?;
    Ok(row.get(0))
}

/// The baseline tables of one run.
pub struct PgBaseline {
    url: String,
    schema: String,
}

impl PgBaseline {
    /// Creates the schema and its bare tables.
    pub async fn create(url: &str, schema: &str) -> BenchResult<PgBaseline> {
        let s = ident(schema)?;
        let c = connect(url).await?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s};
             CREATE TABLE {s}.copy_rows (part int NOT NULL, off bigint NOT NULL, ts bigint NOT NULL, key bytea, value bytea);
             CREATE TABLE {s}.naive_q (id bigserial PRIMARY KEY, payload bytea NOT NULL);
             CREATE TABLE {s}.batch_rows (id bigint PRIMARY KEY, data bytea NOT NULL);"
        ))
        .await?;
        Ok(PgBaseline {
            url: url.to_string(),
            schema: schema.to_string(),
        })
    }

    /// Drops the schema.
    pub async fn drop(self) -> BenchResult<()> {
        drop_schema(&self.url, &self.schema).await
    }

    fn table(&self, t: &str) -> String {
        format!("\"{}\".{t}", self.schema)
    }

    /// `clients` connections each COPY (binary) `batch` rows of a `size`-byte value per
    /// statement into a bare table, until the time or `max_bytes` is spent. Counts rows.
    pub async fn copy(
        &self,
        size: usize,
        batch: usize,
        clients: usize,
        duration: Duration,
        max_bytes: u64,
    ) -> BenchResult<Throughput> {
        self.truncate("copy_rows").await?;
        let budget = (max_bytes / size as u64)
            .max(batch as u64)
            .div_ceil(clients as u64);
        let sql = format!(
            "COPY {} (part, off, ts, key, value) FROM STDIN BINARY",
            self.table("copy_rows")
        );
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let c = connect(&self.url).await?;
            let sql = sql.clone();
            let value = payload(size).to_vec();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let types = [Type::INT4, Type::INT8, Type::INT8, Type::BYTEA, Type::BYTEA];
                let key: Option<Vec<u8>> = None;
                while n < budget && Instant::now() < deadline {
                    let sink = c.copy_in(&sql).await?;
                    let writer = BinaryCopyInWriter::new(sink, &types);
                    pin_mut!(writer);
                    for i in 0..batch {
                        let off = (n + i as u64) as i64;
                        writer
                            .as_mut()
                            .write(&[&0i32, &off, &1_767_225_600_000i64, &key, &value])
                            .await?;
                    }
                    writer.finish().await?;
                    n += batch as u64;
                }
                Ok::<u64, BenchError>(n)
            }));
        }
        let total = join_counts(tasks).await?;
        Ok(Throughput {
            records: total,
            elapsed_s: start.elapsed().as_secs_f64(),
        })
    }

    /// `clients` connections each INSERT one 100-byte row per statement into the naive queue.
    pub async fn naive_insert(
        &self,
        clients: usize,
        duration: Duration,
    ) -> BenchResult<Throughput> {
        self.truncate("naive_q").await?;
        let sql = format!(
            "INSERT INTO {} (payload) VALUES ($1)",
            self.table("naive_q")
        );
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let c = connect(&self.url).await?;
            let sql = sql.clone();
            tasks.push(tokio::spawn(async move {
                let stmt = c.prepare(&sql).await?;
                let value = payload(100).to_vec();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    c.execute(&stmt, &[&value]).await?;
                    n += 1;
                }
                Ok::<u64, BenchError>(n)
            }));
        }
        let total = join_counts(tasks).await?;
        Ok(Throughput {
            records: total,
            elapsed_s: start.elapsed().as_secs_f64(),
        })
    }

    /// Fills the naive queue with `rows` rows (untimed), vacuums it, then `consumers`
    /// connections each claim one row with `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1` and
    /// DELETE it in one transaction, until the queue is empty or the time is spent.
    pub async fn naive_queue(
        &self,
        consumers: usize,
        rows: usize,
        duration: Duration,
    ) -> BenchResult<Throughput> {
        self.truncate("naive_q").await?;
        {
            let c = connect(&self.url).await?;
            c.execute(
                &format!(
                    "INSERT INTO {} (payload) SELECT $1 FROM generate_series(1, $2::int)",
                    self.table("naive_q")
                ),
                &[&payload(100).to_vec(), &(rows as i32)],
            )
            .await?;
            c.batch_execute(&format!("VACUUM ANALYZE {}", self.table("naive_q")))
                .await?;
        }
        let claim = format!(
            "SELECT id, payload FROM {} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            self.table("naive_q")
        );
        let delete = format!("DELETE FROM {} WHERE id = $1", self.table("naive_q"));
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for _ in 0..consumers {
            let mut c = connect(&self.url).await?;
            let (claim, delete) = (claim.clone(), delete.clone());
            tasks.push(tokio::spawn(async move {
                let claim = c.prepare(&claim).await?;
                let delete = c.prepare(&delete).await?;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let tx = c.transaction().await?;
                    let Some(row) = tx.query_opt(&claim, &[]).await? else {
                        tx.commit().await?;
                        break;
                    };
                    let id: i64 = row.get(0);
                    let _payload: Vec<u8> = row.get(1);
                    tx.execute(&delete, &[&id]).await?;
                    tx.commit().await?;
                    n += 1;
                }
                Ok::<u64, BenchError>(n)
            }));
        }
        let total = join_counts(tasks).await?;
        Ok(Throughput {
            records: total,
            elapsed_s: start.elapsed().as_secs_f64(),
        })
    }

    /// Latency of one single-row INSERT (a commit, so one WAL flush) at `rate` per second.
    pub async fn insert_latency(
        &self,
        rate: u32,
        duration: Duration,
    ) -> BenchResult<(Histogram<u64>, f64)> {
        self.truncate("naive_q").await?;
        let c = connect(&self.url).await?;
        let stmt = c
            .prepare(&format!(
                "INSERT INTO {} (payload) VALUES ($1)",
                self.table("naive_q")
            ))
            .await?;
        let value = payload(100).to_vec();
        let mut h = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)
            .map_err(|e| BenchError::Wrong(e.to_string()))?;
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let start = tokio::time::Instant::now();
        let mut i = 0u32;
        while start.elapsed() < duration || h.len() < 50 {
            tokio::time::sleep_until(start + interval * i).await;
            let t = Instant::now();
            c.execute(&stmt, &[&value]).await?;
            h.saturating_record((t.elapsed().as_nanos() as u64).max(1_000));
            i += 1;
        }
        Ok((h, start.elapsed().as_secs_f64()))
    }

    /// Fills a bare table with about `bytes` of random `row_bytes`-byte bytea rows (the
    /// size of a stored batch; random, so TOAST cannot compress them), untimed; then reads
    /// it in id order, `chunk_rows` rows per query (keyset on the id), pass after pass until
    /// `duration` is spent. Counts bytes of row data read.
    pub async fn chunked_read(
        &self,
        bytes: u64,
        row_bytes: usize,
        chunk_rows: usize,
        duration: Duration,
    ) -> BenchResult<Throughput> {
        use rand::{Rng, SeedableRng};
        self.truncate("batch_rows").await?;
        let c = connect(&self.url).await?;
        let rows = bytes.div_ceil(row_bytes.max(1) as u64).max(1) as i64;
        let insert = c
            .prepare(&format!(
                "INSERT INTO {} (id, data) VALUES ($1, $2)",
                self.table("batch_rows")
            ))
            .await?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let mut data = vec![0u8; row_bytes];
        for id in 0..rows {
            rng.fill(&mut data[..]);
            c.execute(&insert, &[&id, &data]).await?;
        }
        c.batch_execute(&format!("VACUUM ANALYZE {}", self.table("batch_rows")))
            .await?;
        let chunk = c
            .prepare(&format!(
                "SELECT id, data FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
                self.table("batch_rows")
            ))
            .await?;
        let limit = chunk_rows as i64;
        let start = Instant::now();
        let mut total = 0u64;
        loop {
            let mut after = -1i64;
            loop {
                let got = c.query(&chunk, &[&after, &limit]).await?;
                let Some(last) = got.last() else { break };
                after = last.get(0);
                for r in &got {
                    total += r.get::<_, &[u8]>(1).len() as u64;
                }
            }
            if start.elapsed() >= duration {
                break;
            }
        }
        Ok(Throughput {
            records: total,
            elapsed_s: start.elapsed().as_secs_f64(),
        })
    }

    async fn truncate(&self, t: &str) -> BenchResult<()> {
        let c = connect(&self.url).await?;
        c.batch_execute(&format!("TRUNCATE {}", self.table(t)))
            .await?;
        Ok(())
    }
}

async fn join_counts(tasks: Vec<tokio::task::JoinHandle<BenchResult<u64>>>) -> BenchResult<u64> {
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| BenchError::Wrong(format!("client task panicked: {e}")))??;
    }
    Ok(total)
}
