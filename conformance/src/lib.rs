//! The shared conformance suite: one check per rule of [`broker_api::Store`], model-based
//! property tests, concurrency checks, and [`MemoryStore`], the reference implementation.

mod harness;

pub use harness::{Backend, Subject};
