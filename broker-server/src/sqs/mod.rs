//! The SQS-compatible API: AWS JSON 1.0 and the older query protocol on `POST /`, over the
//! leases of any store. A queue is a topic plus the lease group [`LEASE_GROUP`].

mod attributes;
mod combine;
pub mod dedup;
pub mod error;
mod manage;
pub mod message;
pub(crate) mod move_task;
mod move_tasks;
mod mover;
mod params;
mod permissions;
pub mod query;
pub mod queue;
pub mod receipt;
mod receive;
pub mod region;
mod send;
pub mod sigv4;
mod tags;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_api::{SharedClock, Store};
use serde_json::{json, Value};

use crate::metrics::Metrics;
use dedup::DedupIndex;
use error::{SqsError, SqsResult};
use params::Ctx;
pub use sigv4::SigV4Credentials;

/// The lease group every queue reads through.
pub const LEASE_GROUP: &str = "sqs";
/// Largest request body read; larger ones are refused before being buffered whole.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Every action the API serves.
pub const ACTIONS: &[&str] = &[
    "CreateQueue",
    "GetQueueUrl",
    "ListQueues",
    "DeleteQueue",
    "PurgeQueue",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "ListDeadLetterSourceQueues",
    "AddPermission",
    "RemovePermission",
    "StartMessageMoveTask",
    "ListMessageMoveTasks",
    "CancelMessageMoveTask",
];

/// The SQS service state shared by all requests.
pub struct Sqs {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
    pub(crate) credentials: Option<SigV4Credentials>,
    pub(crate) base_url: String,
    pub(crate) round_robin: Arc<AtomicUsize>,
    /// Queue descriptions for message actions, by topic (see [`Sqs::queue_for_messages`]).
    pub(crate) queue_cache: parking_lot::Mutex<HashMap<String, (Instant, Arc<queue::Queue>)>>,
    /// Concurrent sends to a standard queue sharing appends (see [`combine`]).
    pub(crate) send_calls: combine::Combiner<String, send::Records, SqsResult<send::Placed>>,
    /// Concurrent receives of a standard queue with one visibility timeout sharing leases.
    pub(crate) lease_calls:
        combine::Combiner<(String, u64), usize, SqsResult<Vec<broker_api::Lease>>>,
    pub(crate) shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    pub(crate) dedup:
        parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<DedupIndex>>>>>,
    /// Serialises rewrites of queue configs ([`Sqs::update_queue`]).
    pub(crate) config_lock: tokio::sync::Mutex<()>,
    /// The message move tasks running in this process, by task id.
    pub(crate) movers: parking_lot::Mutex<HashMap<String, Arc<mover::MoveControl>>>,
    /// The ACLs (see `security::sqs_authz`); `None`: every action is allowed.
    pub(crate) authz: Option<Arc<crate::security::acl::Authorizer>>,
}

/// Which wire protocol a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Json,
    Query,
}

impl Sqs {
    /// A service over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        credentials: Option<SigV4Credentials>,
        base_url: String,
        shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Self {
        Sqs {
            store,
            metrics,
            clock,
            credentials,
            base_url,
            round_robin: Arc::new(AtomicUsize::new(0)),
            queue_cache: parking_lot::Mutex::new(HashMap::new()),
            send_calls: combine::Combiner::new(send::SHARED_APPEND_BYTES),
            lease_calls: combine::Combiner::new(receive::SHARED_LEASE_RECORDS),
            shutdown,
            dedup: parking_lot::Mutex::new(HashMap::new()),
            config_lock: tokio::sync::Mutex::new(()),
            movers: parking_lot::Mutex::new(HashMap::new()),
            authz: None,
        }
    }

    /// The same service with its actions checked against `authz`.
    pub fn with_authorizer(mut self, authz: Option<Arc<crate::security::acl::Authorizer>>) -> Self {
        self.authz = authz;
        self
    }

    /// Starts the service's background work: message move tasks left RUNNING by an earlier
    /// process are resumed. Needs a Tokio runtime; without one it does nothing.
    pub fn start_background(self: &Arc<Self>) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(self.clone().resume_move_tasks());
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        action: &str,
        ctx: &Ctx,
        input: &Value,
    ) -> Result<Value, SqsError> {
        match action {
            "CreateQueue" => self.create_queue(ctx, input).await,
            "GetQueueUrl" => self.get_queue_url(ctx, input).await,
            "ListQueues" => self.list_queues(ctx, input).await,
            "DeleteQueue" => self.delete_queue(ctx, input).await,
            "PurgeQueue" => self.purge_queue(ctx, input).await,
            "GetQueueAttributes" => self.get_queue_attributes(ctx, input).await,
            "SetQueueAttributes" => self.set_queue_attributes(ctx, input).await,
            "SendMessage" => self.send_message(ctx, input).await,
            "SendMessageBatch" => self.send_message_batch(ctx, input).await,
            "ReceiveMessage" => self.receive_message(ctx, input).await,
            "DeleteMessage" => self.delete_message(ctx, input).await,
            "DeleteMessageBatch" => self.delete_message_batch(ctx, input).await,
            "ChangeMessageVisibility" => self.change_message_visibility(ctx, input).await,
            "ChangeMessageVisibilityBatch" => {
                self.change_message_visibility_batch(ctx, input).await
            }
            "TagQueue" => self.tag_queue(ctx, input).await,
            "UntagQueue" => self.untag_queue(ctx, input).await,
            "ListQueueTags" => self.list_queue_tags(ctx, input).await,
            "ListDeadLetterSourceQueues" => self.list_dead_letter_source_queues(ctx, input).await,
            "AddPermission" => self.add_permission(ctx, input).await,
            "RemovePermission" => self.remove_permission(ctx, input).await,
            "StartMessageMoveTask" => self.start_message_move_task(ctx, input).await,
            "ListMessageMoveTasks" => self.list_message_move_tasks(ctx, input).await,
            "CancelMessageMoveTask" => self.cancel_message_move_task(ctx, input).await,
            other => Err(SqsError::InvalidAction(other.chars().take(64).collect())),
        }
    }

    fn base_url(&self, headers: &HeaderMap) -> String {
        if !self.base_url.is_empty() {
            return self.base_url.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// Serves one SQS request of either protocol.
pub async fn handle(State(sqs): State<Arc<Sqs>>, req: Request) -> Response {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let protocol = if target.is_some() {
        Protocol::Json
    } else {
        Protocol::Query
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let e = SqsError::RequestTooLarge(format!(
                "The request body could not be read or is larger than {MAX_BODY_BYTES} bytes."
            ));
            return render_error(protocol, &e, &request_id);
        }
    };
    let parsed = match protocol {
        Protocol::Json => parse_json(target.as_deref().unwrap_or(""), &body),
        Protocol::Query => query::parse(parts.uri.path(), parts.uri.query(), &body),
    };
    let (action, input) = match parsed {
        Ok(p) => p,
        Err(e) => {
            sqs.metrics.sqs_request("Unknown", start.elapsed());
            return render_error(protocol, &e, &request_id);
        }
    };
    if let Some(creds) = &sqs.credentials {
        if let Err(e) = creds.verify(
            parts.method.as_str(),
            &parts.uri,
            &parts.headers,
            &body,
            sqs.clock.now_ms(),
        ) {
            sqs.metrics.sqs_request("Unauthorized", start.elapsed());
            return render_error(protocol, &e, &request_id);
        }
    }
    // Authorisation (security::sqs_authz): the same ACLs as the Kafka listeners.
    let principal =
        crate::security::sqs_authz::principal(&parts.headers, sqs.credentials.is_some());
    let region = region::of_request(&parts.headers, &parts.uri);
    if let Some(authz) = &sqs.authz {
        if let Err(e) =
            crate::security::sqs_authz::check(authz, &principal, &action, &input, &region)
        {
            sqs.metrics.security.denied(true);
            sqs.metrics.sqs_request("Unauthorized", start.elapsed());
            return render_error(protocol, &e, &request_id);
        }
    }
    let ctx = Ctx {
        base_url: sqs.base_url(&parts.headers),
        region: region.clone(),
    };
    let mut result = sqs.dispatch(&action, &ctx, &input).await;
    if let (Some(authz), Ok(v)) = (&sqs.authz, &mut result) {
        if matches!(action.as_str(), "ListQueues" | "ListDeadLetterSourceQueues") {
            crate::security::sqs_authz::filter_list(authz, &principal, &region, v);
        }
    }
    let metric_name = ACTIONS
        .iter()
        .find(|a| **a == action)
        .copied()
        .unwrap_or("Unknown");
    sqs.metrics.sqs_request(metric_name, start.elapsed());
    match result {
        Ok(v) => match protocol {
            Protocol::Json => json_response(StatusCode::OK, &v, &request_id),
            Protocol::Query => xml_response(
                StatusCode::OK,
                query::render_result(&action, &v, &request_id),
                &request_id,
            ),
        },
        Err(e) => {
            if matches!(e, SqsError::Internal(_) | SqsError::ServiceUnavailable(_)) {
                let kind = format!("{e:?}");
                let kind = kind.split(['(', ' ', '{']).next().unwrap_or("");
                let v = crate::LOG_LIMIT.check(&format!("sqs:{action}:{kind}"));
                if v != broker_api::log_limit::Verdict::Suppress {
                    tracing::warn!(action = %action, error = %e, "sqs request failed{}", v.suffix());
                }
            }
            render_error(protocol, &e, &request_id)
        }
    }
}

fn parse_json(target: &str, body: &[u8]) -> Result<(String, Value), SqsError> {
    let action = target
        .strip_prefix("AmazonSQS.")
        .ok_or_else(|| SqsError::InvalidAction(target.chars().take(64).collect()))?;
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            SqsError::Serialization(format!("The request body is not valid JSON: {e}"))
        })?
    };
    if !input.is_object() {
        return Err(SqsError::Serialization(
            "The request body must be a JSON object.".into(),
        ));
    }
    Ok((action.to_string(), input))
}

fn json_response(status: StatusCode, v: &Value, request_id: &str) -> Response {
    let mut r = (status, v.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

fn xml_response(status: StatusCode, xml: String, request_id: &str) -> Response {
    let mut r = (status, xml).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

fn render_error(protocol: Protocol, e: &SqsError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = match protocol {
        Protocol::Json => json_response(
            status,
            &json!({
                "__type": format!("com.amazonaws.sqs#{}", e.shape()),
                "message": e.to_string(),
            }),
            request_id,
        ),
        Protocol::Query => xml_response(status, query::render_error(e, request_id), request_id),
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{};{}", e.query_code(), e.fault())) {
        r.headers_mut().insert("x-amzn-query-error", v);
    }
    r
}
