//! The stores under test and how to open a fresh, empty one for a case.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker_api::{Durability, SharedClock, Store, SystemClock};

use crate::{BenchError, BenchResult};

/// A store as the harness names it: one entry per store and durability policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreSpec {
    Memory,
    Log(Durability),
    Postgres,
}

impl StoreSpec {
    /// Every store the harness knows, in table order.
    pub fn all() -> Vec<StoreSpec> {
        vec![
            StoreSpec::Memory,
            StoreSpec::Log(Durability::Always),
            StoreSpec::Log(Durability::default()),
            StoreSpec::Log(Durability::Never),
            StoreSpec::Postgres,
        ]
    }

    /// `memory`, `log-always`, `log-interval`, `log-never`, `postgres`.
    pub fn name(&self) -> String {
        match self {
            StoreSpec::Memory => "memory".into(),
            StoreSpec::Log(Durability::Always) => "log-always".into(),
            StoreSpec::Log(Durability::Interval { .. }) => "log-interval".into(),
            StoreSpec::Log(Durability::Never) => "log-never".into(),
            StoreSpec::Postgres => "postgres".into(),
        }
    }

    /// True when `filter` (a `--store` value) selects this store: an exact name or a prefix
    /// up to `-` (`log` selects every log policy).
    pub fn matches(&self, filter: &str) -> bool {
        let name = self.name();
        name == filter || name.starts_with(&format!("{filter}-"))
    }

    /// The durability topics of this store are created with.
    pub fn durability(&self) -> Durability {
        match self {
            StoreSpec::Log(d) => *d,
            _ => Durability::default(),
        }
    }
}

/// Where fresh stores are created.
#[derive(Debug, Clone)]
pub struct StoreEnv {
    /// Parent directory of log stores' directories (and of the disk baseline's files).
    pub data_dir: PathBuf,
    /// PostgreSQL URL, when one is configured.
    pub database_url: Option<String>,
    /// Schema prefix owned by this run; dropped at the end.
    pub pg_schema_prefix: String,
}

/// An open store plus whatever must be removed after the case.
pub struct Opened {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<String>,
}

impl Opened {
    /// Closes the store (ignoring a close error, which the case already reported) and removes
    /// its data.
    pub async fn dispose(self, env: &StoreEnv) {
        let _ = self.store.close().await;
        if let Some(schema) = &self.pg_schema {
            if let Some(url) = &env.database_url {
                let _ = crate::baseline_pg::drop_schema(url, schema).await;
            }
        }
    }
}

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// Opens a fresh, empty store; `NotAvailable` when this build or machine cannot run it.
pub async fn open(spec: StoreSpec, env: &StoreEnv, case_no: usize) -> BenchResult<Opened> {
    match spec {
        StoreSpec::Memory => Ok(Opened {
            store: Arc::new(store_memory::MemoryStore::new(clock())),
            _dir: None,
            pg_schema: None,
        }),
        StoreSpec::Log(_) => {
            let dir = tempfile::Builder::new()
                .prefix("bench-log-")
                .tempdir_in(&env.data_dir)?;
            let store = open_log(dir.path()).await?;
            Ok(Opened {
                store,
                _dir: Some(dir),
                pg_schema: None,
            })
        }
        StoreSpec::Postgres => {
            let url = env
                .database_url
                .as_deref()
                .ok_or_else(|| BenchError::NotAvailable("DATABASE_URL is not set".to_string()))?;
            let schema = format!("{}_s{case_no}", env.pg_schema_prefix);
            let store = open_postgres(url, &schema).await?;
            Ok(Opened {
                store,
                _dir: None,
                pg_schema: Some(schema),
            })
        }
    }
}

async fn open_log(dir: &Path) -> BenchResult<Arc<dyn Store>> {
    let dir = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || {
        store_log::LogStore::open(&dir, store_log::LogOptions::default(), clock())
    })
    .await
    .map_err(|e| BenchError::Wrong(format!("opening the log store panicked: {e}")))?
    .map_err(broker_api::StoreError::from)?;
    Ok(Arc::new(store))
}

async fn open_postgres(url: &str, schema: &str) -> BenchResult<Arc<dyn Store>> {
    let options = store_postgres::PgOptions {
        schema: schema.to_string(),
        ..store_postgres::PgOptions::default()
    };
    let store = store_postgres::PgStore::connect(url, options, clock())
        .await
        .map_err(|e| BenchError::NotAvailable(format!("cannot open the postgres store: {e}")))?;
    Ok(Arc::new(store))
}
