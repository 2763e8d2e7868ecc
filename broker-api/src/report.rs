//! What a store can tell an operator about where its data lives (see
//! [`crate::Store::report`]): bytes per partition, and titled tables of store-specific
//! figures (segments of the log store, table sizes of the PostgreSQL store).

use serde::Serialize;

/// A store's account of its data, read on demand (it may do I/O; it is not for every
/// metrics scrape).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreReport {
    /// Bytes each partition takes: on disk (log store) or in the records table (PostgreSQL
    /// store). Partitions the store cannot measure are left out.
    pub partitions: Vec<PartitionSize>,
    /// Store-specific tables, in the order the store wants them shown.
    pub tables: Vec<ReportTable>,
}

/// The size of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSize {
    pub topic: String,
    pub partition: i32,
    pub bytes: u64,
}

/// A titled table: one header per column, rows of exactly as many cells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportTable {
    /// A short title, e.g. `segments`.
    pub title: String,
    /// One sentence saying what the rows are and how the figures are measured.
    pub note: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<ReportCell>>,
}

impl ReportTable {
    /// An empty table with these columns.
    pub fn new(title: &str, note: &str, columns: &[&str]) -> ReportTable {
        ReportTable {
            title: title.to_string(),
            note: note.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; `debug_assert`s that it has one cell per column.
    pub fn push(&mut self, row: Vec<ReportCell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row of {}", self.title);
        self.rows.push(row);
    }
}

/// One cell of a [`ReportTable`]; serialises as a bare JSON value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReportCell {
    Text(String),
    Int(i64),
    Float(f64),
    /// Unknown or not applicable (`null`).
    Empty,
}

impl From<&str> for ReportCell {
    fn from(v: &str) -> Self {
        ReportCell::Text(v.to_string())
    }
}

impl From<String> for ReportCell {
    fn from(v: String) -> Self {
        ReportCell::Text(v)
    }
}

impl From<i64> for ReportCell {
    fn from(v: i64) -> Self {
        ReportCell::Int(v)
    }
}

impl From<u64> for ReportCell {
    fn from(v: u64) -> Self {
        ReportCell::Int(v.min(i64::MAX as u64) as i64)
    }
}

impl From<i32> for ReportCell {
    fn from(v: i32) -> Self {
        ReportCell::Int(v as i64)
    }
}

impl From<f64> for ReportCell {
    fn from(v: f64) -> Self {
        ReportCell::Float(v)
    }
}

impl<T: Into<ReportCell>> From<Option<T>> for ReportCell {
    fn from(v: Option<T>) -> Self {
        v.map_or(ReportCell::Empty, Into::into)
    }
}
