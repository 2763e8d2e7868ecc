//! The conformance suite run against the in-memory reference store.

use std::sync::Arc;

use conformance::{assert_all, MemoryBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_every_check() {
    assert_all(Arc::new(MemoryBackend::new())).await;
}
