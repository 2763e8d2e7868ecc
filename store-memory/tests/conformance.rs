//! The shared conformance suite run against the in-memory store (`conformance::MemoryBackend`
//! keeps each slot's data across close and reopen).

use std::sync::Arc;

use conformance::{assert_all, check_properties, MemoryBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_every_check() {
    assert_all(Arc::new(MemoryBackend::new())).await;
}

#[test]
fn memory_store_agrees_with_the_model() {
    check_properties(Arc::new(MemoryBackend::new()), 512);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_every_cluster_check() {
    conformance::assert_cluster(Arc::new(MemoryBackend::new())).await;
}

#[test]
fn memory_store_agrees_with_the_transaction_model() {
    conformance::check_txn_properties(Arc::new(MemoryBackend::new()), 256);
}
