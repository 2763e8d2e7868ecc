//! A long-polling Fetch answers early when the client sends another request on the same
//! connection.
//!
//! Responses leave a connection in request order, so a request queued behind a Fetch that
//! waits for data (up to `fetch.wait.max.ms`) would wait as long. librdkafka sends ListOffsets,
//! Metadata and its final PushTelemetry on the connection it fetches on, and waits for the
//! last one when it closes. Answering the Fetch with what is there now is allowed (the wait is
//! a maximum) and lets the queued request through at once.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

tokio::task_local! {
    static NEXT_REQUEST: Arc<Notify>;
}

/// A signal the connection raises when the client's next request starts to arrive.
#[derive(Clone, Default)]
pub(super) struct NextRequest(Arc<Notify>);

impl NextRequest {
    /// Raises the signal; a wait that starts later still sees it.
    pub(super) fn arrived(&self) {
        self.0.notify_one();
    }

    /// Runs `fut` (the answer to one request) so that [`arrival`] inside it sees this signal.
    pub(super) fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        NEXT_REQUEST.scope(self.0.clone(), fut)
    }
}

/// Completes when the client's next request has started to arrive on this connection; never
/// completes outside a connection's scope (in-process calls, tests).
pub(super) async fn arrival() {
    match NEXT_REQUEST.try_with(Arc::clone) {
        Ok(notify) => notify.notified().await,
        Err(_) => std::future::pending().await,
    }
}
