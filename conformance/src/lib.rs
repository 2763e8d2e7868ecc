//! The shared conformance suite: one check per rule of [`broker_api::Store`], model-based
//! property tests, concurrency checks, and [`MemoryBackend`], which runs the suite on
//! `store_memory::MemoryStore`, the reference implementation.
//!
//! A store crate implements [`Backend`] and runs, from a thin `tests/conformance.rs`:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn passes_every_check() {
//!     conformance::assert_all(Arc::new(MyBackend::new())).await;
//! }
//!
//! #[test] // a plain test: it builds its own runtime
//! fn agrees_with_the_model() {
//!     conformance::check_properties(Arc::new(MyBackend::new()), 64);
//! }
//! ```
//!
//! `docs/storage-contract.md` lists the rules and the readings the checks enforce where the
//! contract's text leaves a choice.

pub mod checks;
mod harness;
mod memory_backend;
pub mod model;
mod properties;
mod txn_properties;

pub use checks::{
    assert_all, assert_cluster, run_all, run_check, run_list, Check, CheckResult, Report, CHECKS,
    CLUSTER_CHECKS,
};
pub use harness::{Backend, Subject};
pub use memory_backend::MemoryBackend;
pub use properties::{check_properties, check_properties_seeded, Op};
/// Re-exported for compatibility; the store lives in the `store-memory` crate.
pub use store_memory::MemoryStore;
pub use txn_properties::{check_txn_properties, check_txn_properties_seeded, TxnOp};
