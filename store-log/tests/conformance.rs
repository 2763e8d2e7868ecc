//! The shared conformance suite run against the log store (slot = subdirectory of a tempdir).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use broker_api::{SharedClock, Store, StoreError, StoreResult};
use conformance::Backend;
use store_log::{LogOptions, LogStore};

/// Opens log stores in subdirectories of one temporary directory.
struct LogBackend {
    root: tempfile::TempDir,
}

impl LogBackend {
    fn new() -> Arc<LogBackend> {
        Arc::new(LogBackend {
            root: tempfile::tempdir().expect("tempdir"),
        })
    }

    fn slot(&self, slot: &str) -> PathBuf {
        self.root.path().join(slot)
    }
}

fn options() -> LogOptions {
    // Small segments and indexes so that rolls, index lookups and segment deletion happen.
    LogOptions {
        segment_bytes: 16 << 10,
        index_interval_bytes: 512,
        index_bytes: 8 << 10,
        ..LogOptions::default()
    }
}

#[async_trait]
impl Backend for LogBackend {
    async fn open(&self, slot: &str, clock: SharedClock) -> StoreResult<Arc<dyn Store>> {
        let store = LogStore::open(&self.slot(slot), options(), clock)?;
        Ok(Arc::new(store))
    }

    async fn wipe(&self, slot: &str) -> StoreResult<()> {
        match std::fs::remove_dir_all(self.slot(slot)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Internal(format!("wiping {slot}: {e}"))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    conformance::assert_all(LogBackend::new()).await;
}

#[test]
fn model_based_properties() {
    conformance::check_properties(LogBackend::new(), 64);
}

#[test]
fn transaction_model_properties() {
    conformance::check_txn_properties(LogBackend::new(), 32);
}
