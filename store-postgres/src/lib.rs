//! The PostgreSQL storage engine: the whole [`broker_api::Store`] contract on plain tables in one
//! schema, so users can query, back up and join their messages. See `docs/postgres-schema.md`.

mod append;
#[macro_use]
mod batches;
mod cluster;
mod compaction;
mod error;
mod fetch;
mod group_commit;
mod group_configs;
mod lease;
mod lease_admin;
mod legacy;
mod notify;
mod offsets;
mod report;
mod retention;
mod schema;
mod security;
mod store;
mod topics;
mod transactions;
mod tx;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{SharedClock, StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use compaction::DEFAULT_MAP_BYTES;
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
    /// How long [`PgStore::connect`] keeps retrying, with backoff, while PostgreSQL is not
    /// reachable (each retry logged at WARN with its reason); zero tries once. Errors that
    /// waiting cannot fix (no such database or role, a wrong password) fail at once.
    pub startup_wait: Duration,
    /// PostgreSQL's `idle_in_transaction_session_timeout` for every connection: the server
    /// ends a session that sits inside a transaction this long without a statement. A broker
    /// paused (SIGSTOP, a VM freeze) mid-transaction would otherwise hold its row locks, and
    /// every other broker's appends and coordinator claims on those rows, until it wakes.
    /// Keep it below the cluster's registration lapse. `None` leaves the server's setting.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Memory for the key map of one compaction (about 48 bytes a key). A partition whose
    /// dirty range has more keys is cleaned a prefix per call.
    pub compaction_map_bytes: usize,
}

impl PgOptions {
    /// The `options` startup parameter the store gives every connection: the schema as
    /// search path and the idle-in-transaction timeout (whole milliseconds, at least 1).
    pub fn session_options(&self) -> String {
        let mut out = format!("-c search_path={}", self.schema);
        if let Some(t) = self.idle_in_transaction_timeout {
            let ms = t.as_millis().clamp(1, i32::MAX as u128);
            out.push_str(&format!(" -c idle_in_transaction_session_timeout={ms}"));
        }
        out
    }
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "broker".to_string(),
            pool_size: 16,
            safety_check_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            startup_wait: Duration::ZERO,
            idle_in_transaction_timeout: Some(Duration::from_secs(3)),
            compaction_map_bytes: compaction::DEFAULT_MAP_BYTES,
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
    /// Connections for cluster membership only (registration, heartbeats, the live list),
    /// so a broker busy with data never lets its registration lapse waiting for one.
    cluster_pool: Pool,
    schema: String,
    channel: String,
    clock: SharedClock,
    closed: AtomicBool,
    closed_tx: tokio::sync::watch::Sender<bool>,
    waiters: Arc<Waiters>,
    listener: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    lease_locks: parking_lot::Mutex<HashMap<LeaseKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Pool waits and query latency, for `/metrics`.
    stats: PgStats,
    /// Appends, acks and commits sharing transactions (see [`group_commit`]).
    group: group_commit::GroupCommit,
    group_ctx: group_commit::Ctx,
    /// Memory of one compaction's key map.
    compaction_map_bytes: usize,
    /// Compaction figures, for `/metrics`.
    compaction: compaction::CompactionCounters,
}

/// Counters and histograms of the pools and of the database work per store call.
#[derive(Debug, Default)]
pub(crate) struct PgStats {
    /// Checkouts per pool (main, lease) that found every connection in use at a full pool.
    pub(crate) pool_waits: [std::sync::atomic::AtomicU64; 2],
    /// Time to get a connection, per pool.
    pub(crate) pool_wait: [broker_api::LatencyHistogram; 2],
    /// Database time of store calls, per kind of call (see [`store::QUERY_OPS`]).
    pub(crate) query: [broker_api::LatencyHistogram; store::QUERY_OPS.len()],
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
            .options(options.session_options());
        let target = describe_target(&config);
        let mut client = connect_with_retry(&config, &target, &options).await?;
        let migrated = schema::migrate(&mut client, &options.schema).await;
        migrated?;
        let converted = legacy::convert_records(&mut client).await?;
        if converted > 0 {
            tracing::info!(
                schema = %options.schema,
                batches = converted,
                "converted record rows of an older schema into record batches"
            );
        }
        drop(client);

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
        let cluster_pool = build(2)?;
        let channel = format!("{}_append", options.schema);
        let waiters = Arc::new(Waiters::default());
        let listener = tokio::spawn(notify::listen(
            config,
            channel.clone(),
            pool.clone(),
            waiters.clone(),
            options.safety_check_interval,
        ));
        let group_ctx = group_commit::Ctx {
            pool: pool.clone(),
            channel: channel.clone(),
            waiters: waiters.clone(),
        };
        Ok(PgStore {
            group: group_commit::GroupCommit::default(),
            group_ctx,
            pool,
            lease_pool,
            cluster_pool,
            schema: options.schema,
            channel,
            clock,
            closed: AtomicBool::new(false),
            closed_tx: tokio::sync::watch::Sender::new(false),
            waiters,
            listener: parking_lot::Mutex::new(Some(listener)),
            lease_locks: parking_lot::Mutex::new(HashMap::new()),
            stats: PgStats::default(),
            compaction_map_bytes: options.compaction_map_bytes,
            compaction: compaction::CompactionCounters::default(),
        })
    }

    /// Drops `schema` and everything in it (no-op when missing). The name is validated and
    /// quoted, as it cannot be a bind parameter.
    pub async fn drop_schema(database_url: &str, schema: &str) -> Result<(), PgError> {
        schema::validate_schema_name(schema)?;
        let config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| PgError::Config(format!("bad database URL: {e}")))?;
        let (client, conn) = config.connect(NoTls).await.map_err(|e| PgError::Connect {
            target: describe_target(&config),
            reason: error::connect_reason(&e),
        })?;
        let task = tokio::spawn(drive(conn));
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
        self.checkout(0).await
    }

    /// A connection of the cluster-membership pool (lazily opened: stores that never join a
    /// cluster open none).
    async fn cluster_conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.check_open()?;
        self.cluster_pool.get().await.map_err(pool_err)
    }

    /// A connection of pool 0 (main) or 1 (lease), counting waits and their duration.
    async fn checkout(&self, which: usize) -> StoreResult<deadpool_postgres::Object> {
        let pool = if which == 0 {
            &self.pool
        } else {
            &self.lease_pool
        };
        let status = pool.status();
        if status.available == 0 && status.size >= status.max_size {
            self.stats.pool_waits[which].fetch_add(1, Ordering::Relaxed);
        }
        let started = std::time::Instant::now();
        let r = pool.get().await.map_err(pool_err);
        self.stats.pool_wait[which].observe(started.elapsed());
        r
    }

    /// The pools' and calls' metrics (see `Store::store_metrics`).
    fn metrics(&self) -> Vec<broker_api::StoreMetric> {
        use broker_api::{MetricValue, StoreMetric};
        let mut out = vec![
            StoreMetric {
                name: "broker_pg_group_commits_total",
                help: "Transactions that committed a group of appends, acks and offset commits.",
                labels: Vec::new(),
                value: MetricValue::Counter(self.group.groups.load(Ordering::Relaxed)),
            },
            StoreMetric {
                name: "broker_pg_group_commit_jobs_total",
                help: "Appends, acks and offset commits committed in groups (divided by the groups: the average group size).",
                labels: Vec::new(),
                value: MetricValue::Counter(self.group.jobs.load(Ordering::Relaxed)),
            },
        ];
        for (i, (name, pool)) in [("main", &self.pool), ("lease", &self.lease_pool)]
            .into_iter()
            .enumerate()
        {
            let st = pool.status();
            let labels = || vec![("pool", name.to_string())];
            out.push(StoreMetric {
                name: "broker_pg_pool_connections",
                help: "Connections a PostgreSQL pool holds now (open, idle or in use).",
                labels: labels(),
                value: MetricValue::Gauge(st.size as f64),
            });
            out.push(StoreMetric {
                name: "broker_pg_pool_idle_connections",
                help: "Idle connections of a PostgreSQL pool.",
                labels: labels(),
                value: MetricValue::Gauge(st.available as f64),
            });
            out.push(StoreMetric {
                name: "broker_pg_pool_max_connections",
                help: "Largest size of a PostgreSQL pool.",
                labels: labels(),
                value: MetricValue::Gauge(st.max_size as f64),
            });
            out.push(StoreMetric {
                name: "broker_pg_pool_waiting",
                help: "Calls waiting for a connection of a PostgreSQL pool now.",
                labels: labels(),
                value: MetricValue::Gauge(st.waiting as f64),
            });
            out.push(StoreMetric {
                name: "broker_pg_pool_waits_total",
                help: "Connection checkouts that found every connection of a full pool in use.",
                labels: labels(),
                value: MetricValue::Counter(self.stats.pool_waits[i].load(Ordering::Relaxed)),
            });
            out.push(StoreMetric {
                name: "broker_pg_pool_wait_duration_seconds",
                help: "Time to get a connection from a PostgreSQL pool.",
                labels: labels(),
                value: MetricValue::Histogram(self.stats.pool_wait[i].snapshot()),
            });
        }
        for (name, help, value) in self.compaction.figures() {
            out.push(StoreMetric {
                name,
                help,
                labels: Vec::new(),
                value: MetricValue::Counter(value),
            });
        }
        for (i, op) in store::QUERY_OPS.iter().enumerate() {
            out.push(StoreMetric {
                name: "broker_pg_query_duration_seconds",
                help: "Time store calls spend on PostgreSQL (checkout and queries), per kind of call.",
                labels: vec![("op", op.to_string())],
                value: MetricValue::Histogram(self.stats.query[i].snapshot()),
            });
        }
        out
    }

    /// A connection of the lease pool.
    async fn lease_conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.check_open()?;
        self.checkout(1).await
    }

    fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_tx.send_replace(true);
        if let Some(h) = self.listener.lock().take() {
            h.abort();
        }
        self.pool.close();
        self.lease_pool.close();
        self.cluster_pool.close();
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// "host H port P, database D, role R" of a connection config; never the password.
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let user = config.get_user().unwrap_or("(none)");
    format!(
        "host {} port {}, database {}, role {}",
        if hosts.is_empty() {
            "localhost".to_string()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or(user),
        user
    )
}

/// Connects, retrying transient failures with backoff until `options.startup_wait` has
/// passed; logs each retry at WARN with its reason.
async fn connect_with_retry(
    config: &tokio_postgres::Config,
    target: &str,
    options: &PgOptions,
) -> Result<tokio_postgres::Client, PgError> {
    let started = tokio::time::Instant::now();
    let deadline = started + options.startup_wait;
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        let (reason, transient) =
            match tokio::time::timeout(options.connect_timeout, config.connect(NoTls)).await {
                Ok(Ok((client, connection))) => {
                    tokio::spawn(drive(connection));
                    if attempt > 1 {
                        tracing::info!(
                            target = %target,
                            attempts = attempt,
                            waited_ms = started.elapsed().as_millis() as u64,
                            "connected to PostgreSQL"
                        );
                    }
                    return Ok(client);
                }
                Ok(Err(e)) => (error::connect_reason(&e), error::connect_is_transient(&e)),
                Err(_) => (
                    format!("no answer within {:?}", options.connect_timeout),
                    true,
                ),
            };
        let now = tokio::time::Instant::now();
        if !transient || now >= deadline {
            let reason = if transient && attempt > 1 {
                format!(
                    "{reason} (gave up after {attempt} attempts in {:.1} s; raise --pg-connect-timeout-secs to wait longer)",
                    started.elapsed().as_secs_f64()
                )
            } else {
                reason
            };
            return Err(PgError::Connect {
                target: target.to_string(),
                reason,
            });
        }
        tracing::warn!(
            target = %target,
            attempt,
            retry_in_ms = backoff.min(deadline - now).as_millis() as u64,
            "PostgreSQL is not reachable yet: {reason}; retrying"
        );
        // The last wait ends at the deadline, so the whole configured time is used.
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

/// Drives a connection of our own, logging the server's NOTICEs (such as "schema already
/// exists, skipping") at DEBUG instead of the driver's INFO.
pub(crate) async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::StreamExt;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(msg) = messages.next().await {
        match msg {
            Ok(tokio_postgres::AsyncMessage::Notice(n)) => {
                tracing::debug!(
                    severity = n.severity(),
                    "PostgreSQL notice: {}",
                    n.message()
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
                break;
            }
        }
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
