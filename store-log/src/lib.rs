//! The default store: topics of partitions kept as segmented, CRC-checked log files on the
//! local disk, with crash-safe metadata. See docs/log-format.md for every byte on disk.

mod batch;
mod cleaner;
mod damage;
mod dir_lock;
mod error;
mod index;
mod io;
mod lease;
mod meta;
mod partition;
mod producer;
mod security;
mod segment;
mod store;
mod txn;
pub mod verify;

pub use dir_lock::LOCK_FILE;
pub use error::{LogError, LogResult};
#[doc(hidden)]
pub use io::CleanerStop;
pub use io::FaultInjector;
pub use store::{LogOptions, LogStore, CLEAN_SHUTDOWN, FORMAT_VERSION, FORMAT_VERSION_FILE};
pub use verify::{verify, Problem, VerifyReport};
