//! The crate's error type and its mapping onto the contract's [`StoreError`].

use std::io;
use std::path::PathBuf;

use broker_api::StoreError;
use thiserror::Error;

/// Everything that can go wrong inside the log store.
#[derive(Debug, Error)]
pub enum LogError {
    /// The disk (or its quota) is full; nothing of the failed call was acknowledged.
    #[error("{context}: disk full: {source}")]
    Full {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Any other I/O failure.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Stored bytes failed a check.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Another process (or another open store in this one) holds the directory's lock: an
    /// open store, or `verify`.
    #[error(
        "data directory {} is in use by another broker process ({}, lock file {}); the log \
         store is single-node: run one broker per data directory, or use --store postgres to \
         run several brokers over one database",
        .dir.display(),
        holder(.pid),
        .lock_file.display()
    )]
    DataDirLocked {
        /// The store directory.
        dir: PathBuf,
        /// The lock file in it.
        lock_file: PathBuf,
        /// The holder's pid, as it wrote it into the lock file (unknown when it has not yet).
        pid: Option<u32>,
    },
    /// The metadata journal or snapshot could not be decoded.
    #[error("bad metadata: {0}")]
    Metadata(String),
    /// The directory was written by a newer binary, in a format this one cannot read.
    #[error(
        "{dir} holds a log store in format version {found}, newer than the {supported} this \
         binary reads; run the newer broker (or restore a backup taken before the upgrade)"
    )]
    FormatTooNew {
        dir: String,
        found: u32,
        supported: u32,
    },
    /// The directory holds batches in an older framing than this binary reads.
    #[error(
        "{file} says format version {found}: this binary reads format {supported} only (Kafka \
         record batches on disk) and does not read the store's own batch framing of versions \
         1-2; nothing was changed. Keep running the previous broker release on this \
         directory, or start this one on a new directory"
    )]
    FormatTooOld {
        file: String,
        found: u32,
        supported: u32,
    },
}

impl LogError {
    /// Wraps an I/O error, classifying "no space" and "quota exceeded" as [`LogError::Full`].
    pub fn io(context: impl Into<String>, source: io::Error) -> LogError {
        let context = context.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => {
                LogError::Full { context, source }
            }
            _ => LogError::Io { context, source },
        }
    }
}

impl From<LogError> for StoreError {
    fn from(e: LogError) -> StoreError {
        match e {
            LogError::Full { .. } => StoreError::StorageFull(e.to_string()),
            LogError::Io { .. } => StoreError::Internal(e.to_string()),
            LogError::Corrupt(m) => StoreError::Corrupt(m),
            LogError::Metadata(m) => StoreError::Corrupt(m),
            LogError::DataDirLocked { .. } => StoreError::Unavailable(e.to_string()),
            LogError::FormatTooNew { .. } | LogError::FormatTooOld { .. } => {
                StoreError::InvalidArgument(e.to_string())
            }
        }
    }
}

/// The holder named in [`LogError::DataDirLocked`].
fn holder(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}

/// The crate's result type.
pub type LogResult<T> = Result<T, LogError>;
