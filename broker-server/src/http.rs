//! The HTTP listener: the SQS-compatible API on `POST /`, `GET /metrics` and `GET /healthz`.

#[path = "sqs/mod.rs"]
pub mod sqs;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use broker_api::{SharedClock, Store, SystemClock};

use crate::metrics::{ConnectionGuard, Metrics, Protocol};
pub use sqs::SigV4Credentials;

/// The HTTP listener with per-connection accounting: open connections and the bytes read and
/// written on each socket count towards the `http` protocol metrics.
pub struct CountingListener {
    inner: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
}

impl CountingListener {
    /// Wraps a bound listener.
    pub fn new(inner: tokio::net::TcpListener, metrics: Arc<Metrics>) -> Self {
        CountingListener { inner, metrics }
    }
}

impl axum::serve::Listener for CountingListener {
    type Io = CountingStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let guard = self.metrics.connection_opened(Protocol::Http);
        (
            CountingStream {
                inner: stream,
                metrics: self.metrics.clone(),
                _guard: guard,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream counting the bytes through it; the connection counts as open until dropped.
pub struct CountingStream {
    inner: tokio::net::TcpStream,
    metrics: Arc<Metrics>,
    _guard: ConnectionGuard,
}

impl tokio::io::AsyncRead for CountingStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.metrics.bytes_in(Protocol::Http, n as u64);
        }
        r
    }
}

impl tokio::io::AsyncWrite for CountingStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.metrics.bytes_out(Protocol::Http, *n as u64);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.metrics.bytes_out(Protocol::Http, *n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Settings of the HTTP API.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// The URL prefix queue URLs are built from, e.g. `http://127.0.0.1:9324`. Empty: taken
    /// from each request's `Host` header.
    pub base_url: String,
    /// With keys, SQS requests must be SigV4-signed by one of them. `None`: the key in
    /// `BROKER_SQS_ACCESS_KEY_ID` / `BROKER_SQS_SECRET_ACCESS_KEY` when both are set, else
    /// every request is accepted.
    pub credentials: Option<SigV4Credentials>,
    /// The clock per-message delays and signature dates are measured with; it must be the
    /// store's clock. `None`: the system clock.
    pub clock: Option<SharedClock>,
    /// When this turns `true`, pending long polls return at once (empty), so a graceful
    /// shutdown does not wait for them. `None`: long polls run their full wait.
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// ACLs the SQS actions are checked against; `None`: every action is allowed.
    pub authorizer: Option<Arc<crate::security::acl::Authorizer>>,
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

/// The axum router serving the SQS API, `/metrics` and `/healthz` over `store`.
pub fn router(store: Arc<dyn Store>, metrics: Arc<Metrics>, config: HttpConfig) -> axum::Router {
    let clock: SharedClock = config.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let sqs = Arc::new(
        sqs::Sqs::new(
            store.clone(),
            metrics.clone(),
            clock,
            config
                .credentials
                .or_else(SigV4Credentials::from_env)
                .filter(|c| !c.is_empty()),
            config.base_url,
            config.shutdown,
        )
        .with_authorizer(config.authorizer),
    );
    sqs.start_background();
    let ops = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .with_state(AppState { store, metrics });
    let api = axum::Router::new()
        .route("/", post(sqs::handle).get(sqs::handle))
        .fallback(sqs::handle)
        .with_state(sqs);
    ops.merge(api)
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    let text = s.metrics.render(s.store.as_ref()).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn health_handler(State(s): State<AppState>) -> Response {
    match s.store.health().await {
        Ok(()) => (
            StatusCode::OK,
            format!("ok: {} store reachable\n", s.store.kind()),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {} store: {e}\n", s.store.kind()),
        )
            .into_response(),
    }
}
