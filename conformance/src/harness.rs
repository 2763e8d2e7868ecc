//! How the suite gets at a store: a [`Backend`] opens the data of a named slot.

use std::sync::Arc;

use async_trait::async_trait;
use broker_api::{ManualClock, SharedClock, Store, StoreResult};

/// A store implementation under test. Each check uses its own slot, so checks never see each
/// other's data; reopening a slot must show the data a closed store left there.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the store whose data lives in `slot`, creating it empty when new, with `clock`.
    async fn open(&self, slot: &str, clock: SharedClock) -> StoreResult<Arc<dyn Store>>;
    /// Removes everything stored in `slot`, so the next `open` starts empty.
    async fn wipe(&self, slot: &str) -> StoreResult<()>;
}

/// One store opened on one slot, with its manual clock and a way to reopen it.
pub struct Subject {
    backend: Arc<dyn Backend>,
    slot: String,
    /// The store's clock; advance it instead of sleeping.
    pub clock: ManualClock,
    /// The open store.
    pub store: Arc<dyn Store>,
}

impl Subject {
    /// Wipes `slot` and opens an empty store on it.
    pub async fn fresh(backend: Arc<dyn Backend>, slot: &str) -> StoreResult<Subject> {
        backend.wipe(slot).await?;
        let clock = ManualClock::default();
        let store = backend.open(slot, Arc::new(clock.clone())).await?;
        Ok(Subject {
            backend,
            slot: slot.to_string(),
            clock,
            store,
        })
    }

    /// Closes the store and opens the same slot again with the same clock.
    pub async fn reopen(&mut self) -> StoreResult<()> {
        self.store.close().await?;
        self.store = self
            .backend
            .open(&self.slot, Arc::new(self.clock.clone()))
            .await?;
        Ok(())
    }

    /// Another store opened on the same slot while this one stays open: a second broker
    /// over the same data (cluster checks).
    pub async fn peer(&self) -> StoreResult<Arc<dyn Store>> {
        self.backend
            .open(&self.slot, Arc::new(self.clock.clone()))
            .await
    }

    /// Closes the store (end of a check).
    pub async fn finish(self) -> StoreResult<()> {
        self.store.close().await
    }
}
