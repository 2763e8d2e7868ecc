//! Shared by the PostgreSQL test binaries: the database URL, fresh stores, and [`PgBackend`].
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use broker_api::{ManualClock, SharedClock, Store, StoreResult};
use store_postgres::{PgOptions, PgStore};

pub mod cluster;

/// DATABASE_URL, or (when it is unset) the URL of a throwaway cluster this test process starts
/// with `scripts/pg` and stops at exit.
pub fn database_url() -> String {
    cluster::shared_url()
}

/// A store on an emptied `schema`, with a manual clock; panics if PostgreSQL is unreachable.
pub async fn fresh_store(schema: &str) -> (PgStore, ManualClock) {
    fresh_store_at(&database_url(), schema).await
}

/// [`fresh_store`] on the server at `url`.
pub async fn fresh_store_at(url: &str, schema: &str) -> (PgStore, ManualClock) {
    let url = url.to_string();
    PgStore::drop_schema(&url, schema)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is unreachable: {e}"));
    let clock = ManualClock::default();
    let store = open_store_at(&url, schema, Arc::new(clock.clone())).await;
    (store, clock)
}

/// A store on `schema` as it is.
pub async fn open_store(schema: &str, clock: SharedClock) -> PgStore {
    open_store_at(&database_url(), schema, clock).await
}

/// [`open_store`] on the server at `url`.
pub async fn open_store_at(url: &str, schema: &str, clock: SharedClock) -> PgStore {
    let url = url.to_string();
    let options = PgOptions {
        schema: schema.to_string(),
        pool_size: 8,
        ..PgOptions::default()
    };
    PgStore::connect(&url, options, clock)
        .await
        .unwrap_or_else(|e| panic!("cannot open a PgStore at {url}: {e}"))
}

/// The conformance suite's backend: a slot is a schema `<prefix>_<slot>_<hash>`.
pub struct PgBackend {
    url: String,
    prefix: String,
}

impl PgBackend {
    /// A backend whose schemas start with `prefix` (a few characters of `[a-z_]`).
    pub fn new(prefix: &str) -> PgBackend {
        PgBackend {
            url: database_url(),
            prefix: prefix.to_string(),
        }
    }

    /// The schema that holds `slot`.
    pub fn schema_for(&self, slot: &str) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in slot.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let clean: String = slot
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        format!("{}_{}_{:08x}", self.prefix, clean, h as u32)
    }
}

#[async_trait]
impl conformance::Backend for PgBackend {
    async fn open(&self, slot: &str, clock: SharedClock) -> StoreResult<Arc<dyn Store>> {
        let options = PgOptions {
            schema: self.schema_for(slot),
            pool_size: 4,
            ..PgOptions::default()
        };
        let store = PgStore::connect(&self.url, options, clock).await?;
        Ok(Arc::new(store))
    }

    async fn wipe(&self, slot: &str) -> StoreResult<()> {
        PgStore::drop_schema(&self.url, &self.schema_for(slot))
            .await
            .map_err(Into::into)
    }
}
