//! The one error type of the benchmark harness.

use thiserror::Error;

/// What can stop a benchmark case or the whole run.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The store, baseline or server cannot be measured here (not built, not configured).
    #[error("not available: {0}")]
    NotAvailable(String),
    /// A store call failed.
    #[error("store error: {0}")]
    Store(#[from] broker_api::StoreError),
    /// A PostgreSQL baseline failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A file could not be read or written.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server under test answered something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A store gave a wrong answer while being measured.
    #[error("wrong result: {0}")]
    Wrong(String),
    /// The output files could not be written.
    #[error("output: {0}")]
    Output(String),
}

/// Result of harness code.
pub type BenchResult<T> = Result<T, BenchError>;
