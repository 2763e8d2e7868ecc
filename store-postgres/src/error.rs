//! The crate's error type and how PostgreSQL errors map onto the storage contract's errors.

use std::error::Error as _;

use broker_api::StoreError;
use thiserror::Error;
use tokio_postgres::error::SqlState;

/// What can go wrong while opening a [`crate::PgStore`].
#[derive(Debug, Error)]
pub enum PgError {
    /// The database URL or an option is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The schema was written by a newer version of this store.
    #[error("schema {schema:?} is at version {found}, newer than this binary's {supported}; upgrade the broker")]
    SchemaTooNew {
        schema: String,
        found: i32,
        supported: i32,
    },
    /// PostgreSQL could not be reached, or refused the connection (no such database or role,
    /// wrong password, ...). `target` names host, port, database and role, never a password.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The role lacks a right the store needs; the message says which GRANT gives it.
    #[error("{0}")]
    Privileges(String),
    /// PostgreSQL could not be reached or failed a start-up statement.
    #[error("database error: {0}")]
    Database(StoreError),
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Database(e) => e,
            PgError::Connect { .. } => StoreError::Unavailable(e.to_string()),
            other => StoreError::InvalidArgument(other.to_string()),
        }
    }
}

/// The one way this crate makes a [`StoreError::Internal`]: the caller only sees "internal
/// error" (Kafka clients show "Unknown broker error"), so the cause is logged here, every
/// time, with the message it carries.
pub(crate) fn internal(cause: impl std::fmt::Display) -> StoreError {
    static LIMIT: std::sync::LazyLock<broker_api::LogLimiter> =
        std::sync::LazyLock::new(broker_api::LogLimiter::default);
    let text = cause.to_string();
    // Repeats of the same cause (a client retrying every 100 ms) are counted, not each logged.
    let v = LIMIT.check(&text);
    if v != broker_api::log_limit::Verdict::Suppress {
        tracing::error!(cause = %text, "store-postgres: internal error{}", v.suffix());
    }
    StoreError::Internal(text)
}

/// Maps a driver error onto the contract: lost connections and shutdowns are retriable
/// `Unavailable`, a full disk is `StorageFull`, the rest is `Internal` (logged with its cause
/// by [`internal`]).
pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
    match classify(e) {
        StoreError::Internal(text) => internal(text),
        other => other,
    }
}

/// [`db_err`] without logging: callers that turn `Internal` into something else use it.
fn classify(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let mut text = format!("{} ({})", db.message(), code.code());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if *code == SqlState::DISK_FULL {
            return StoreError::StorageFull(text);
        }
        let retriable = code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::OUT_OF_MEMORY,
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(code);
        return if retriable {
            StoreError::Unavailable(text)
        } else {
            StoreError::Internal(text)
        };
    }
    let io = e
        .source()
        .is_some_and(|s| s.is::<std::io::Error>() || s.to_string().contains("timed out"));
    if e.is_closed() || io || e.to_string().contains("timeout") {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

/// True when `e` is a unique-key violation.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// True when `e` is a foreign-key violation (a parent row vanished concurrently).
pub(crate) fn is_fk_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

/// True when `e` aborted the transaction over a lock: deadlock detection, or the
/// transaction's `lock_timeout` passed. Either can be retried from the start.
pub(crate) fn is_lock_conflict(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
        || e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// Maps a pool error: timeouts and failed connects are retriable, a closed pool is `Closed`.
pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => match classify(e) {
            StoreError::Internal(m) => StoreError::Unavailable(m),
            other => other,
        },
        PoolError::Closed => StoreError::Closed,
        PoolError::Timeout(t) => StoreError::Unavailable(format!("connection pool timeout: {t:?}")),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// The text of a connection error: the server's message and SQLSTATE when the server answered,
/// else the driver's (with its cause, e.g. "Connection refused").
pub(crate) fn connect_reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = s.source();
    }
    text
}

/// True when a failed connect may succeed later without anyone changing anything: the server
/// is not up yet, is starting or shutting down, or is out of connections.
pub(crate) fn connect_is_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code();
            code.code().starts_with("08")
                || [
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                ]
                .contains(code)
        }
        // Refused, reset, unreachable, timed out: an I/O error. Not a missing password or
        // an authentication method the driver does not support.
        None => {
            let io = e
                .source()
                .is_some_and(|s| s.is::<std::io::Error>() || s.to_string().contains("timed out"));
            io || e.is_closed() || e.to_string().contains("timed out")
        }
    }
}
