//! The web console: pages at `/ui` (HTML, CSS and JavaScript embedded in the binary) and the
//! JSON API behind them at `/api/v1` (documented in docs/console.md), both on the HTTP
//! listener.
//!
//! The console keeps no state and runs nothing of its own: every figure is read from the
//! store, the group coordinator or the existing counters when a request asks for it, and
//! rates and histories are drawn by the page from what it polls. With no page open, it costs
//! nothing. Write actions (create, delete and configure topics, reset offsets, produce) go
//! through the broker's own Kafka request handlers in process, by the same functions as
//! `broker admin`; the dead-letter redrive goes through the store contract.

mod access;
mod assets;
mod error;
mod groups;
mod overview;
mod queues;
mod records;
mod store;
mod topics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::Request;
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use broker_api::{SharedClock, Store};

use crate::admin::kafka::KafkaAdmin;
use crate::kafka::KafkaServer;
use crate::metrics::Metrics;
pub use error::{ApiError, ApiResult};

/// How long one in-process admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Most topics, groups or partitions one API answer walks (bounds the work of a request).
pub const MAX_ITEMS: usize = 10_000;

/// Where the broker listens, as the overview shows it.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub kafka: SocketAddr,
    /// The Kafka address clients are told to use.
    pub advertised: String,
    pub http: SocketAddr,
}

/// What the console reads from: shared handles of the running broker, nothing of its own.
pub struct Console {
    /// Set while ACLs are on: only super users may use the console.
    access: Option<Arc<access::Access>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    kafka: Arc<KafkaServer>,
    clock: SharedClock,
    started: Instant,
    listeners: Listeners,
}

impl Console {
    /// A console over the running broker's parts; `clock` must be the store's.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        kafka: Arc<KafkaServer>,
        clock: SharedClock,
        listeners: Listeners,
    ) -> Console {
        Console {
            access: None,
            store,
            metrics,
            kafka,
            clock,
            started: Instant::now(),
            listeners,
        }
    }

    /// The same console, admitting only super users when `authz` has ACLs on.
    pub fn with_authorizer(mut self, authz: Arc<crate::security::acl::Authorizer>) -> Console {
        self.access = authz
            .enabled()
            .then(|| access::Access::new(authz, self.store.clone()));
        self
    }

    /// An admin client of this broker (see [`KafkaAdmin::local`]).
    fn admin(&self) -> KafkaAdmin {
        KafkaAdmin::local(self.kafka.clone(), ADMIN_TIMEOUT)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The topic `name` as the store describes it; 404 naming it when it does not exist.
    async fn topic(&self, name: &str) -> ApiResult<broker_api::TopicInfo> {
        self.store
            .describe_topic(name)
            .await
            .map_err(|e| ApiError::store(&format!("topic {name:?}"), e))
    }
}

/// A 400 naming the `kind` of name and the name when `validate` refuses it.
fn valid_name<E: std::fmt::Display>(
    kind: &str,
    name: &str,
    validate: impl Fn(&str) -> Result<(), E>,
) -> ApiResult<()> {
    validate(name)
        .map_err(|e| ApiError::bad_request(format!("{kind} name {name:?} is not valid: {e}")))
}

/// The console's routes: the pages and the API when `console` is given; without it (`--ui
/// false`), `/ui` and `/api/v1/...` answer 404 saying the console is off.
pub fn router(console: Option<Arc<Console>>) -> Router {
    let Some(console) = console else {
        let off = || async {
            ApiError::not_found("the web console is off (the broker runs with --ui false)")
        };
        return Router::new()
            .route("/ui", get(off))
            .route("/ui/{*rest}", get(off))
            .route("/api/v1/{*rest}", get(off).post(off).delete(off));
    };
    let gate = console.access.clone();
    let api = Router::new()
        .route("/overview", get(overview::overview))
        .route("/topics", get(topics::list).post(topics::create))
        .route(
            "/topics/{topic}",
            get(topics::describe).delete(topics::delete),
        )
        .route(
            "/topics/{topic}/configs",
            get(topics::configs).post(topics::alter_configs),
        )
        .route(
            "/topics/{topic}/partitions/{partition}/records",
            get(records::browse),
        )
        .route("/topics/{topic}/records", post(records::produce))
        .route("/groups", get(groups::list))
        .route("/groups/{group}", get(groups::describe))
        .route("/groups/{group}/reset-offsets", post(groups::reset_offsets))
        .route("/queues", get(queues::list))
        .route("/queues/{queue}/redrive", post(queues::redrive))
        .route("/store", get(store::report))
        .fallback(|req: Request| async move {
            ApiError::not_found(format!(
                "no console API {} {} (see docs/console.md)",
                req.method(),
                req.uri().path()
            ))
        })
        .with_state(console)
        .layer(middleware::from_fn(same_origin_writes));
    let router = Router::new()
        .route("/ui", get(assets::index))
        .route("/ui/", get(assets::index))
        .route("/ui/{file}", get(assets::file))
        .nest("/api/v1", api);
    match gate {
        Some(access) => router.layer(middleware::from_fn_with_state(
            access,
            access::require_super_user,
        )),
        None => router,
    }
}

/// Refuses a write (any method but GET and HEAD) whose `Origin` header names another host
/// than the request's `Host`: a page of another site cannot make a browser change the broker.
/// (JSON bodies also need a CORS preflight, which the console never grants.)
async fn same_origin_writes(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return ApiError {
                status: axum::http::StatusCode::FORBIDDEN,
                message: format!(
                    "a write from origin {origin:?} to host {host:?} is refused: the console \
                     only accepts changes from its own pages"
                ),
            }
            .into_response();
        }
    }
    next.run(req).await
}

/// The body of a JSON request, or a 400 naming what is wrong with it.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(format!("bad request body: {}", e.body_text())))
}

/// A query parameter parsed as `T`; `None` when absent or empty, a 400 naming the
/// parameter and the value when it does not parse.
fn query_param<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> ApiResult<Option<T>> {
    match query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<T>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("query parameter {name}={v:?} is not a valid value"))
        }),
    }
}

/// A partition number from a path, or a 400 naming it.
fn parse_partition(text: &str) -> ApiResult<i32> {
    text.parse::<i32>().ok().filter(|p| *p >= 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "partition {text:?} is not a partition number (0 or more)"
        ))
    })
}
