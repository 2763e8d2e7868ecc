//! `GET /api/v1/store`: the store's kind and health, and its report (bytes per partition and
//! its own tables: log segments with index coverage, or PostgreSQL table sizes, pools and
//! slow calls). `?topic=NAME` limits the per-partition figures to one topic.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use broker_api::StoreReport;
use serde::Serialize;

use super::{ApiError, ApiResult, Console};

/// The answer of `GET /api/v1/store`.
#[derive(Debug, Serialize)]
pub struct StorePage {
    pub kind: &'static str,
    pub healthy: bool,
    pub error: Option<String>,
    /// Damaged stored batches found since start (log store).
    pub corrupt_batches: u64,
    pub report: StoreReport,
}

/// The store report; 404 when `topic` names no topic.
pub async fn report(
    State(c): State<Arc<Console>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<StorePage>> {
    let topic = q.get("topic").map(String::as_str).filter(|t| !t.is_empty());
    let health = c.store.health().await;
    let report = match c.store.report(topic).await {
        Ok(r) => r,
        Err(e) if health.is_ok() || topic.is_some() => {
            return Err(ApiError::store("reading the store report", e))
        }
        Err(_) => StoreReport::default(),
    };
    Ok(Json(StorePage {
        kind: c.store.kind(),
        healthy: health.is_ok(),
        error: health.err().map(|e| e.to_string()),
        corrupt_batches: c.store.corrupt_batches(),
        report,
    }))
}
