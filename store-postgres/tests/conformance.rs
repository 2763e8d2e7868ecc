//! The shared conformance suite against a real PostgreSQL server (DATABASE_URL).

mod support;

use std::sync::Arc;

use support::PgBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite() {
    conformance::assert_all(Arc::new(PgBackend::new("conf"))).await;
}

/// Model-based property tests (a modest number of cases keeps the suite fast).
#[test]
fn conformance_properties() {
    conformance::check_properties(Arc::new(PgBackend::new("prop")), 24);
}

/// Interleaved transactional and plain producers against the transaction model.
#[test]
fn transaction_properties() {
    conformance::check_txn_properties(Arc::new(PgBackend::new("txnprop")), 12);
}

/// The cluster rules: two stores opened on one schema are two brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_conformance_suite() {
    conformance::assert_cluster(Arc::new(PgBackend::new("clu"))).await;
}
