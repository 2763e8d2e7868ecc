//! How records map onto rows of the `records` table.

use broker_api::{Header, StoredRecord};
use bytes::Bytes;
use tokio_postgres::Row;

/// Columns selected by every record query, in this order, starting at some index.
pub(crate) const RECORD_COLUMNS: &str =
    r#""offset", timestamp_ms, not_before_ms, key, value, header_keys, header_values"#;

/// Builds a stored record from `RECORD_COLUMNS` starting at column `at`.
pub(crate) fn from_row(row: &Row, at: usize) -> StoredRecord {
    let keys: Option<Vec<String>> = row.get(at + 5);
    let values: Option<Vec<Option<Vec<u8>>>> = row.get(at + 6);
    let headers = keys
        .unwrap_or_default()
        .into_iter()
        .zip(values.unwrap_or_default())
        .map(|(key, value)| Header {
            key,
            value: value.map(Bytes::from),
        })
        .collect();
    StoredRecord {
        offset: row.get(at),
        timestamp_ms: row.get(at + 1),
        not_before_ms: row.get(at + 2),
        key: row.get::<_, Option<Vec<u8>>>(at + 3).map(Bytes::from),
        value: row.get::<_, Option<Vec<u8>>>(at + 4).map(Bytes::from),
        headers,
    }
}

/// Header keys and values as the two array columns (NULL when there are no headers).
#[allow(clippy::type_complexity)]
pub(crate) fn header_arrays(headers: &[Header]) -> (Option<Vec<&str>>, Option<Vec<Option<&[u8]>>>) {
    if headers.is_empty() {
        return (None, None);
    }
    (
        Some(headers.iter().map(|h| h.key.as_str()).collect()),
        Some(headers.iter().map(|h| h.value.as_deref()).collect()),
    )
}
