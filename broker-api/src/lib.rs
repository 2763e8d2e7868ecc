//! The storage contract of the broker.
//!
//! [`Store`] is the one trait every storage engine implements; its doc comment is the
//! specification, and the `conformance` crate checks every rule it states.

mod clock;
mod cluster;
mod error;
pub mod log_limit;
pub mod metrics;
mod names;
mod report;
mod security;
mod store;
mod types;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use cluster::{
    is_live, BrokerEndpoint, BrokerRegistration, Cluster, CoordinatorClaim, CoordinatorFence,
    LiveBroker, Membership, FIRST_ALLOCATED_NODE_ID,
};
pub use error::{StoreError, StoreResult};
pub use log_limit::LogLimiter;
pub use metrics::{HistogramSnapshot, LatencyHistogram, MetricValue, StoreMetric};
pub use names::{validate_group_name, validate_topic_name, MAX_TOPIC_NAME_LEN};
pub use report::{PartitionSize, ReportCell, ReportTable, StoreReport};
pub use security::{
    validate_user_name, AclBinding, ScramCredential, ScramMechanism, MAX_USER_NAME_BYTES,
};
pub use store::Store;
pub use types::*;
