//! `broker-bench`: the same workloads against every store, through the storage contract and
//! through the server, each figure beside the limit it should be judged against (the disk's,
//! Postgres's, the naive Postgres queue's), measured in the same run.

pub mod baseline_disk;
pub mod baseline_mem;
pub mod baseline_pg;
pub mod chart;
pub mod cluster;
mod error;
pub mod kafka_client;
pub mod model;
pub mod report;
pub mod runner;
pub mod server;
pub mod sqs_client;
pub mod stores;
pub mod targets;
pub mod workloads;

pub use error::{BenchError, BenchResult};
