//! The shared conformance suite: one check per rule of [`broker_api::Store`], model-based
//! property tests, concurrency checks, and [`MemoryStore`], the reference implementation.

pub mod checks;
mod harness;
mod memory;
pub mod model;
mod properties;

pub use checks::{assert_all, run_all, run_check, Check, CheckResult, Report, CHECKS};
pub use harness::{Backend, Subject};
pub use memory::{MemoryBackend, MemoryStore};
pub use properties::{check_properties, Op};
