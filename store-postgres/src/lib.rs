//! The PostgreSQL storage engine: the whole [`broker_api::Store`] contract on plain tables in one
//! schema, so users can query, back up and join their messages. See `docs/postgres-schema.md`.

mod append;
mod error;
mod fetch;
mod lease;
mod notify;
mod offsets;
mod records;
mod retention;
mod schema;
mod store;
mod topics;
mod tx;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{SharedClock, StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use error::PgError;
pub use schema::SCHEMA_VERSION;

use error::pool_err;
use notify::Waiters;

/// (topic, partition, group) of a lease cursor.
type LeaseKey = (String, i32, String);

/// Settings of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The schema holding every table (1-48 characters of `[a-z0-9_]`).
    pub schema: String,
    /// Most pooled connections for most calls; lease calls have their own pool of half this
    /// size (at least 2), and the LISTEN connection is extra.
    pub pool_size: usize,
    /// How often waiting fetches re-check the high watermark in case a notification was lost.
    pub safety_check_interval: Duration,
    /// Longest wait for a new connection or a free pooled one.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "broker".to_string(),
            pool_size: 16,
            safety_check_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`broker_api::Store`] on PostgreSQL. Survives database restarts: calls in flight fail
/// with a retriable error and later calls use fresh connections.
pub struct PgStore {
    pool: Pool,
    /// Connections for lease calls only, so a lease (serialised per partition and group)
    /// never queues behind acks and appends for a connection.
    lease_pool: Pool,
    schema: String,
    channel: String,
    clock: SharedClock,
    closed: AtomicBool,
    closed_tx: tokio::sync::watch::Sender<bool>,
    waiters: Arc<Waiters>,
    listener: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    lease_locks: parking_lot::Mutex<HashMap<LeaseKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish()
    }
}

impl PgStore {
    /// Connects, applies missing migrations (safe when several brokers start together) and
    /// starts the LISTEN connection. Fails with `SchemaTooNew` when the schema was written by a
    /// newer binary.
    pub async fn connect(
        database_url: &str,
        options: PgOptions,
        clock: SharedClock,
    ) -> Result<PgStore, PgError> {
        schema::validate_schema_name(&options.schema)?;
        let mut config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| PgError::Config(format!("bad database URL: {e}")))?;
        config
            .application_name("broker-store-postgres")
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .options(format!("-c search_path={}", options.schema));
        let (mut client, connection) =
            tokio::time::timeout(options.connect_timeout, config.connect(NoTls))
                .await
                .map_err(|_| {
                    PgError::Database(StoreError::Unavailable(
                        "timed out connecting to PostgreSQL".into(),
                    ))
                })?
                .map_err(|e| PgError::Database(error::db_err(e)))?;
        let conn_task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let migrated = schema::migrate(&mut client, &options.schema).await;
        drop(client);
        conn_task.abort();
        migrated?;

        let build = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(options.connect_timeout * 2))
                .create_timeout(Some(options.connect_timeout))
                .recycle_timeout(Some(options.connect_timeout))
                .build()
                .map_err(|e| PgError::Config(e.to_string()))
        };
        let pool = build(options.pool_size.max(1))?;
        let lease_pool = build((options.pool_size / 2).max(2))?;
        let channel = format!("{}_append", options.schema);
        let waiters = Arc::new(Waiters::default());
        let listener = tokio::spawn(notify::listen(
            config,
            channel.clone(),
            pool.clone(),
            waiters.clone(),
            options.safety_check_interval,
        ));
        Ok(PgStore {
            pool,
            lease_pool,
            schema: options.schema,
            channel,
            clock,
            closed: AtomicBool::new(false),
            closed_tx: tokio::sync::watch::Sender::new(false),
            waiters,
            listener: parking_lot::Mutex::new(Some(listener)),
            lease_locks: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Drops `schema` and everything in it (no-op when missing). The name is validated and
    /// quoted, as it cannot be a bind parameter.
    pub async fn drop_schema(database_url: &str, schema: &str) -> Result<(), PgError> {
        schema::validate_schema_name(schema)?;
        let (client, conn) = tokio_postgres::connect(database_url, NoTls)
            .await
            .map_err(|e| PgError::Database(error::db_err(e)))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let r = client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                schema::quoted(schema)
            ))
            .await
            .map_err(|e| PgError::Database(error::db_err(e)));
        drop(client);
        let _ = task.await;
        r
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// A pooled connection, or `Closed` / a retriable error.
    async fn conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.check_open()?;
        self.pool.get().await.map_err(pool_err)
    }

    /// A connection of the lease pool.
    async fn lease_conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.check_open()?;
        self.lease_pool.get().await.map_err(pool_err)
    }

    fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_tx.send_replace(true);
        if let Some(h) = self.listener.lock().take() {
            h.abort();
        }
        self.pool.close();
        self.lease_pool.close();
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The partition count as the contract's `UnknownTopic` check sees it.
pub(crate) fn unknown_partition(topic: &str, partition: i32) -> StoreError {
    StoreError::UnknownTopic(format!("{topic}/{partition}"))
}
