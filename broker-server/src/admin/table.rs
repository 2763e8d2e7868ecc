//! Output of the admin commands: a plain aligned table for people, JSON for scripts.

use serde_json::{Map, Value};

/// Rows under named columns. The column names are the JSON keys (lower case, `_`), and the
/// table headers (upper case).
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<&'static str>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: &[&'static str]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one value per column.
    pub fn row(&mut self, values: Vec<Value>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as JSON objects keyed by column.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    let mut m = Map::new();
                    for (c, v) in self.columns.iter().zip(r) {
                        m.insert((*c).to_string(), v.clone());
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    /// The table as aligned text: an upper-case header line, then one line per row; columns
    /// are separated by two spaces, numbers are right-aligned, the last column is not padded.
    pub fn render(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let headers: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for r in &cells {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| !self.rows.is_empty() && self.rows.iter().all(|r| r[i].is_number()))
            .collect();
        let mut out = String::new();
        let mut line = |values: &[String], header: bool| {
            let last = values.len().saturating_sub(1);
            let mut text = String::new();
            for (i, v) in values.iter().enumerate() {
                let pad = widths[i].saturating_sub(v.chars().count());
                if i > 0 {
                    text.push_str("  ");
                }
                if numeric[i] && !header {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(v);
                } else {
                    text.push_str(v);
                    if i != last {
                        text.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&headers, true);
        for r in &cells {
            line(r, false);
        }
        out
    }
}

/// A value as a table cell: strings bare, null as `-`, the rest as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// What a command prints: titled tables and lines of text, or one JSON document.
#[derive(Debug, Default)]
pub struct Output {
    /// The text form.
    pub text: String,
    /// The JSON form.
    pub json: Value,
}

impl Output {
    /// One table: the table as text, its rows as a JSON array.
    pub fn table(t: &Table) -> Output {
        Output {
            text: t.render(),
            json: t.to_json(),
        }
    }

    /// A one-line message and a JSON object.
    pub fn message(text: impl Into<String>, json: Value) -> Output {
        let mut text = text.into();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Output { text, json }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let mut t = Table::new(&["topic", "partitions", "note"]);
        t.row(vec![json!("orders"), json!(12), json!("x")]);
        t.row(vec![json!("a"), json!(3), Value::Null]);
        assert_eq!(
            t.render(),
            "TOPIC   PARTITIONS  NOTE\norders          12  x\na                3  -\n"
        );
        assert_eq!(
            t.to_json(),
            json!([{"topic":"orders","partitions":12,"note":"x"},{"topic":"a","partitions":3,"note":null}])
        );
    }
}
