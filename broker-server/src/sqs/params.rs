//! Reading request parameters in the JSON shape of the API, and batch replies.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::error::{SqsError, SqsResult};

/// Per-request facts the actions need.
pub struct Ctx {
    /// Prefix of the queue URLs in replies.
    pub base_url: String,
    /// The region the request addresses (see [`super::region::of_request`]); queue URLs
    /// that name no region of their own are in it.
    pub region: String,
}

pub(super) fn opt_str<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input.get(name).and_then(Value::as_str)
}

pub(super) fn req_str<'a>(input: &'a Value, name: &str) -> SqsResult<&'a str> {
    match input.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(SqsError::MissingParameter(name.into())),
        Some(v) => Err(SqsError::invalid_value(
            name,
            &v.to_string(),
            "Must be a string.",
        )),
    }
}

pub(super) fn opt_int(input: &Value, name: &str) -> SqsResult<Option<i64>> {
    let not_int = |v: &Value| {
        let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        SqsError::invalid_value(name, &shown, "Must be an integer.")
    };
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| not_int(v)),
        Some(v @ Value::String(s)) => s.trim().parse().map(Some).map_err(|_| not_int(v)),
        Some(v) => Err(not_int(v)),
    }
}

/// The rule AWS states when integer parameter `name` is outside `lo..=hi`.
fn range_rule(name: &str, lo: i64, hi: i64) -> String {
    match name {
        "MaxNumberOfMessages" | "MaxResults" => {
            format!("Must be between {lo} and {hi}, if provided.")
        }
        "WaitTimeSeconds" => format!("Must be >= {lo} and <= {hi}, if provided."),
        _ => format!("Must be >= {lo} and <= {hi}."),
    }
}

/// Integer parameter `name` if given; `InvalidParameterValue` naming the value and the range
/// in AWS's words when it is outside `lo..=hi`.
pub(super) fn int_in(input: &Value, name: &str, lo: i64, hi: i64) -> SqsResult<Option<i64>> {
    match opt_int(input, name)? {
        Some(v) if !(lo..=hi).contains(&v) => Err(SqsError::invalid_value(
            name,
            &v.to_string(),
            range_rule(name, lo, hi),
        )),
        other => Ok(other),
    }
}

pub(super) fn str_list(input: &Value, name: &str) -> Vec<String> {
    input
        .get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn str_map(input: &Value, name: &str) -> SqsResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match input.get(name) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(SqsError::invalid_value(
                            &format!("{name}.{k}"),
                            &other.to_string(),
                            "Must be a string.",
                        ))
                    }
                };
                out.insert(k.clone(), v);
            }
        }
        Some(v) => {
            return Err(SqsError::invalid_value(
                name,
                &v.to_string(),
                "Must be a map.",
            ))
        }
    }
    Ok(out)
}

pub(super) fn batch_entries<'a>(input: &'a Value, entry_name: &str) -> SqsResult<&'a Vec<Value>> {
    let entries = match input.get("Entries") {
        None | Some(Value::Null) => return Err(SqsError::EmptyBatchRequest(entry_name.into())),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(SqsError::invalid_value(
                "Entries",
                &v.to_string(),
                "Must be a list.",
            ))
        }
    };
    if entries.is_empty() {
        return Err(SqsError::EmptyBatchRequest(entry_name.into()));
    }
    if entries.len() > 10 {
        return Err(SqsError::TooManyEntriesInBatchRequest(entries.len()));
    }
    let mut seen = HashSet::new();
    for e in entries {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(SqsError::InvalidBatchEntryId);
        }
        if !seen.insert(id) {
            return Err(SqsError::BatchEntryIdsNotDistinct(id.into()));
        }
    }
    Ok(entries)
}

pub(super) fn failed_entry(id: &str, e: &SqsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": e.fault() == "Sender",
        "Code": e.query_code(),
        "Message": e.to_string(),
    })
}

pub(super) fn batch_reply(entries: &[Value], results: Vec<Option<SqsResult<()>>>) -> Value {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (e, r) in entries.iter().zip(results) {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
        match r {
            Some(Ok(())) => ok.push(json!({ "Id": id })),
            Some(Err(err)) => failed.push(failed_entry(id, &err)),
            None => failed.push(failed_entry(
                id,
                &SqsError::Internal("not processed".into()),
            )),
        }
    }
    json!({"Successful": ok, "Failed": failed})
}
