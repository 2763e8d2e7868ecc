//! The HTTP listener: the SQS-compatible API on `POST /`, `GET /metrics` and `GET /healthz`.

use std::sync::Arc;

use broker_api::Store;

use crate::metrics::Metrics;

/// Settings of the HTTP API.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// The URL prefix queue URLs are built from, e.g. `http://127.0.0.1:9324`.
    pub base_url: String,
}

/// The axum router serving the SQS API, `/metrics` and `/healthz` over `store`.
pub fn router(_store: Arc<dyn Store>, _metrics: Arc<Metrics>, _config: HttpConfig) -> axum::Router {
    axum::Router::new()
}
