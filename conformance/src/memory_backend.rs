//! [`MemoryBackend`]: slots of [`MemoryStore`] data kept in memory across close and reopen.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use broker_api::{SharedClock, Store, StoreResult};
use parking_lot::Mutex;

use crate::harness::Backend;
use store_memory::{MemoryData, MemoryStore};

/// A [`Backend`] of [`MemoryStore`]s: each slot's data lives in this value, so a store opened
/// after another closed sees its data (in-flight leases included).
#[derive(Default)]
pub struct MemoryBackend {
    slots: Mutex<HashMap<String, Arc<MemoryData>>>,
}

impl MemoryBackend {
    /// A backend with no slots.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn open(&self, slot: &str, clock: SharedClock) -> StoreResult<Arc<dyn Store>> {
        let shared = self
            .slots
            .lock()
            .entry(slot.to_string())
            .or_default()
            .clone();
        Ok(Arc::new(MemoryStore::on(shared, clock).clustered()))
    }

    async fn wipe(&self, slot: &str) -> StoreResult<()> {
        self.slots.lock().remove(slot);
        Ok(())
    }
}
