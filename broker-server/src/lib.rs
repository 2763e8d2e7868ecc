//! The broker: the Kafka wire protocol and an SQS-compatible HTTP API over one
//! `Arc<dyn Store>` chosen at start-up.

pub mod http;
pub mod metrics;
