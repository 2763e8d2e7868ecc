//! The Kafka wire protocol listener over `Arc<dyn Store>`.
//!
//! One task per connection reads a frame, answers it, and only then reads the next, so
//! responses leave in request order (as Apache Kafka does); a Fetch waiting for data answers
//! early when the next request arrives (`next_request`). A frame over the size limit is
//! refused from its size prefix alone; a frame that does not decode closes the connection.

mod acls;
mod admin;
#[cfg(unix)]
pub mod alloc;
mod assignor;
mod authz;
pub mod client;
mod cluster;
mod configs;
pub mod conn;
mod consumer_group;
mod consumer_group_api;
mod coordination;
pub mod errors;
mod fetch;
mod fetch_session;
pub mod frame;
mod group;
mod group_api;
mod group_state;
pub mod groups_view;
mod metadata;
mod next_request;
mod offsets;
pub mod produce;
pub mod records;
pub mod response;
mod response_errors;
mod sasl;
mod share;
pub mod telemetry;
mod topics;
mod txn;
mod unsupported;
pub mod versions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{Durability, Store, StoreError, StoreResult, TopicConfig, TopicInfo};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::metrics::{Metrics, Protocol};
use crate::security::quota::QuotaKind;
use crate::ServerError;
use frame::{decode_frame, encode_response, Frame, KafkaRequest};
use response::ResponseFrame;

pub use group::Coordinator;
pub use sasl::MECHANISMS as SASL_MECHANISMS;

/// Settings of the Kafka listener.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// Partitions of auto-created topics and of CreateTopics without a count.
    pub default_partitions: u32,
    /// Whether Metadata creates the topics it names.
    pub auto_create_topics: bool,
    /// Fsync policy of topics created through Kafka.
    pub default_durability: Durability,
    /// Largest request frame read.
    pub max_frame_bytes: usize,
    /// Largest replication factor CreateTopics accepts (kept as a setting; the store keeps
    /// the data safe).
    pub max_replication_factor: u32,
    /// SASL mechanisms offered on SASL listeners.
    pub sasl_mechanisms: Vec<String>,
    /// KIP-368 `connections.max.reauth.ms`: SASL sessions last this long (0: forever).
    pub reauth_ms: u64,
    /// Kafka's `max.connections.per.ip` over all listeners (0: unlimited).
    pub max_connections_per_ip: u32,
    /// Open connections one authenticated principal may have (0: unlimited).
    pub max_connections_per_principal: u32,
    /// Produce and fetch byte-rate quotas.
    pub quotas: crate::security::quota::QuotaSettings,
    /// Token checks of SASL/OAUTHBEARER, when configured.
    pub oauth: Option<Arc<crate::security::oauth::OAuthValidator>>,
}

impl KafkaConfig {
    /// Derives the listener settings from the broker config and the advertised `host:port`.
    pub fn new(config: &Config, advertised: &str) -> Result<KafkaConfig, ServerError> {
        let (host, port) = advertised.rsplit_once(':').ok_or_else(|| {
            ServerError::Config(format!(
                "--advertised-addr must be HOST:PORT, got {advertised:?}"
            ))
        })?;
        let port: u16 = port.parse().map_err(|_| {
            ServerError::Config(format!("--advertised-addr has a bad port: {advertised:?}"))
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(ServerError::Config(format!(
                "--advertised-addr has no host: {advertised:?}"
            )));
        }
        Ok(KafkaConfig {
            advertised_host: host.to_string(),
            advertised_port: port as i32,
            default_partitions: config.default_partitions,
            auto_create_topics: config.auto_create_topics,
            default_durability: config.default_durability,
            max_frame_bytes: config.max_frame_bytes,
            max_replication_factor: config.max_replication_factor,
            sasl_mechanisms: config.security.sasl_mechanisms(),
            reauth_ms: config.security.connections_max_reauth_ms,
            max_connections_per_ip: config.security.max_connections_per_ip,
            max_connections_per_principal: config.security.max_connections_per_principal,
            quotas: config.security.quotas.clone(),
            oauth: match &config.security.oauthbearer {
                Some(s) => Some(
                    crate::security::oauth::OAuthValidator::load(s.clone())
                        .map_err(ServerError::Config)?,
                ),
                None => None,
            },
        })
    }
}

/// A connection that sends nothing (or stalls inside a frame) this long is closed, like
/// Kafka's `connections.max.idle.ms`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The leader epoch of every partition: every live broker serves every partition from the
/// one copy in the store, so a change of leader loses nothing a client must fence.
pub const LEADER_EPOCH: i32 = 0;
/// The cluster id reported in Metadata.
pub const CLUSTER_ID: &str = "broker-single-node";

/// The Kafka protocol server.
pub struct KafkaServer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    config: KafkaConfig,
    coordinator: Arc<Coordinator>,
    stop: watch::Receiver<bool>,
    /// Topics as last read from the store, with when; served by Metadata while the store is
    /// unavailable.
    known_topics: parking_lot::Mutex<std::collections::BTreeMap<String, topics::Known>>,
    /// Incremental fetch sessions (KIP-227).
    fetch_sessions: fetch_session::FetchSessions,
    /// Serialises the assignment of topic ids to topics that have none yet.
    topic_id_lock: tokio::sync::Mutex<()>,
    /// The ACLs (off without security settings).
    authz: Arc<crate::security::acl::Authorizer>,
    /// Open connections per client IP (for `max_connections_per_ip`).
    per_ip: Arc<conn::PerIp>,
    /// Open connections per authenticated principal.
    per_principal: Arc<conn::PerPrincipal>,
    /// Byte-rate quota accounting.
    quotas: crate::security::quota::Quotas,
    /// This broker among the live brokers: node ids, leaders, coordinators.
    node: Arc<crate::cluster::Node>,
    /// Fences of the groups this broker coordinates in a cluster.
    fences: coordination::Fences,
    /// Share groups and share sessions (KIP-932).
    shares: share::ShareGroups,
    /// Transactional ids this broker coordinates (KIP-98).
    txns: txn::Transactions,
    /// KIP-848 consumer groups.
    consumer_groups: Arc<consumer_group::ConsumerGroups>,
}

impl KafkaServer {
    /// A server over `store`; `stop` turning true ends it.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        config: KafkaConfig,
        stop: watch::Receiver<bool>,
    ) -> Arc<KafkaServer> {
        let authz = crate::security::acl::Authorizer::disabled(store.clone());
        let node = crate::cluster::Node::single(
            0,
            vec![broker_api::BrokerEndpoint {
                listener: "PLAINTEXT".into(),
                host: config.advertised_host.clone(),
                port: config.advertised_port,
            }],
            String::new(),
            None,
        );
        Self::with_authorizer(store, metrics, config, stop, authz, node)
    }

    /// This broker in its cluster.
    pub fn node(&self) -> Arc<crate::cluster::Node> {
        self.node.clone()
    }

    /// A server over `store` whose requests are checked by `authz`.
    pub fn with_authorizer(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        config: KafkaConfig,
        stop: watch::Receiver<bool>,
        authz: Arc<crate::security::acl::Authorizer>,
        node: Arc<crate::cluster::Node>,
    ) -> Arc<KafkaServer> {
        Arc::new(KafkaServer {
            node,
            fences: Default::default(),
            shares: Default::default(),
            txns: Default::default(),
            authz,
            per_ip: Default::default(),
            per_principal: Default::default(),
            quotas: crate::security::quota::Quotas::new(config.quotas.clone()),
            store,
            metrics,
            config,
            coordinator: Coordinator::start(stop.clone()),
            consumer_groups: consumer_group::ConsumerGroups::start(
                consumer_group::Timing::from_env(),
                stop.clone(),
            ),
            stop,
            known_topics: Default::default(),
            topic_id_lock: Default::default(),
            fetch_sessions: Default::default(),
        })
    }

    /// Accepts connections on every listener until stop; then waits for every connection to
    /// finish the request it is serving.
    pub async fn serve(self: Arc<Self>, listeners: Vec<(TcpListener, Arc<conn::ListenerInfo>)>) {
        let mut tasks = JoinSet::new();
        for (listener, info) in listeners {
            tasks.spawn(self.clone().serve_listener(listener, info));
        }
        tasks.spawn(self.clone().drop_groups_on_reregistration());
        tasks.spawn(self.clone().expire_transactions());
        while tasks.join_next().await.is_some() {}
        info!("kafka listeners stopped");
    }

    async fn serve_listener(self: Arc<Self>, listener: TcpListener, info: Arc<conn::ListenerInfo>) {
        let mut stop = self.stop.clone();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Some(slot) = self.per_ip.enter(peer.ip(), self.config.max_connections_per_ip) else {
                            self.metrics.security.connection_refused();
                            let v = crate::LOG_LIMIT.check(&format!("per-ip:{}", peer.ip()));
                            if v != broker_api::log_limit::Verdict::Suppress {
                                warn!(client = %peer.ip(), limit = self.config.max_connections_per_ip, "refusing a connection: too many from this address (--max-connections-per-ip){}", v.suffix());
                            }
                            drop(stream);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        debug!(%peer, listener = %info.name, "kafka connection");
                        let server = self.clone();
                        let info = info.clone();
                        conns.spawn(async move {
                            let _slot = slot;
                            server.connection(stream, info).await
                        });
                    }
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
    }

    /// Serves one accepted connection: the TLS handshake on SSL listeners, then requests.
    async fn connection(self: Arc<Self>, stream: TcpStream, listener: Arc<conn::ListenerInfo>) {
        let _open = self.metrics.connection_opened(Protocol::Kafka);
        let peer = stream.peer_addr().ok();
        let mut view = conn::ConnView::new(listener.clone(), peer);
        match &listener.tls {
            None => self.serve_stream(stream, peer, view).await,
            Some((tls, auth)) => {
                let acceptor = tls.acceptor(*auth);
                let mut stop = self.stop.clone();
                let handshake = tokio::select! {
                    _ = stopped(&mut stop) => return,
                    r = tokio::time::timeout(crate::security::http_tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
                };
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(?peer, listener = %listener.name, "TLS handshake failed: {e}");
                        self.metrics.security.tls_failed();
                        return;
                    }
                    Err(_) => {
                        debug!(?peer, listener = %listener.name, "TLS handshake timed out");
                        self.metrics.security.tls_failed();
                        return;
                    }
                };
                if !listener.protocol.is_sasl() {
                    if let Some(p) = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| crate::security::tls::certificate_principal(c))
                    {
                        view.principal = p.into();
                    }
                }
                self.serve_stream(stream, peer, view).await
            }
        }
    }

    async fn serve_stream<S: conn::SplitStream>(
        self: Arc<Self>,
        stream: S,
        peer: Option<std::net::SocketAddr>,
        mut view: conn::ConnView,
    ) {
        let (rd, wr) = stream.split_stream();
        let mut sasl = sasl::SaslConn::new(&view);
        // Held while an authenticated principal is counted (--max-connections-per-principal).
        let mut principal_slot = None;
        let mut rd = BufReader::with_capacity(16 * 1024, rd);
        let mut wr = BufWriter::with_capacity(16 * 1024, wr);
        let mut stop = self.stop.clone();
        loop {
            let len = tokio::select! {
                _ = stopped(&mut stop) => break,
                r = tokio::time::timeout(IDLE_TIMEOUT, rd.read_i32()) => match r {
                    Ok(Ok(n)) => n,
                    Ok(Err(_)) => break,
                    Err(_) => {
                        debug!(?peer, "closing an idle connection");
                        break;
                    }
                },
            };
            if principal_slot.is_none() && &*view.principal != conn::ANONYMOUS {
                match self.per_principal.enter(
                    view.principal.clone(),
                    self.config.max_connections_per_principal,
                ) {
                    Some(slot) => principal_slot = Some(slot),
                    None => {
                        self.metrics.security.connection_refused();
                        let v =
                            crate::LOG_LIMIT.check(&format!("per-principal:{}", view.principal));
                        if v != broker_api::log_limit::Verdict::Suppress {
                            warn!(client = %view.host, principal = %view.principal, limit = self.config.max_connections_per_principal, "closing a connection: its principal has too many open (--max-connections-per-principal){}", v.suffix());
                        }
                        break;
                    }
                }
            }
            let limit = sasl.frame_limit(self.config.max_frame_bytes);
            if len < 0 || len as usize > limit {
                warn!(
                    ?peer,
                    len, limit, "refusing an oversized frame; closing the connection"
                );
                break;
            }
            // Memory grows with the bytes that actually arrive, not with the declared size.
            let mut buf = Vec::with_capacity((len as usize).min(64 * 1024));
            let mut body = (&mut rd).take(len as u64);
            let read = tokio::select! {
                _ = stopped(&mut stop) => break,
                r = tokio::time::timeout(IDLE_TIMEOUT, body.read_to_end(&mut buf)) => {
                    r.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                }
            };
            if read.is_err() || buf.len() != len as usize {
                break;
            }
            self.metrics.bytes_in(Protocol::Kafka, 4 + len as u64);
            let frame = Bytes::from(buf);
            match self.sasl_gate(&frame, &mut sasl, &mut view).await {
                sasl::Gate::Serve => {}
                sasl::Gate::Reply(resp, close) => {
                    self.metrics.bytes_out(Protocol::Kafka, resp.len() as u64);
                    if wr.write_all(&resp).await.is_err() || wr.flush().await.is_err() || close {
                        break;
                    }
                    continue;
                }
                sasl::Gate::Close(why) => {
                    debug!(?peer, listener = %view.listener.name, "closing the connection: {why}");
                    break;
                }
            }
            let answer = if frame.get(..2) == Some(&FETCH_KEY[..]) {
                // A long poll ends early once the next request starts to arrive.
                let next = next_request::NextRequest::default();
                let mut answer = std::pin::pin!(
                    next.scope(conn::scope(view.clone(), self.handle_frame(frame, peer)))
                );
                tokio::select! {
                    biased;
                    r = &mut answer => r,
                    _ = rd.fill_buf() => {
                        next.arrived();
                        answer.await
                    }
                }
            } else {
                conn::scope(view.clone(), self.handle_frame(frame, peer)).await
            };
            match answer {
                Ok(Some(resp)) => {
                    self.metrics.bytes_out(Protocol::Kafka, resp.len() as u64);
                    // Large chunks (record sets) go past the buffer straight to the socket.
                    let mut failed = false;
                    for chunk in &resp.chunks {
                        if wr.write_all(chunk).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break;
                    }
                    // Flush unless more requests are already buffered (pipelining).
                    if rd.buffer().is_empty() && wr.flush().await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(?peer, "closing the connection: {e}");
                    break;
                }
            }
            // A quota was exceeded: the response says how long; read nothing more until
            // then (KIP-219's muted channel).
            let mute = view.take_throttle();
            if mute > 0 {
                if wr.flush().await.is_err() {
                    break;
                }
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = tokio::time::sleep(Duration::from_millis(u64::from(mute))) => {}
                }
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    }

    /// Counts `bytes` against the quota of the current connection's entity; the throttle
    /// time the response must carry (the connection is muted for as long after it).
    fn quota(
        &self,
        kind: QuotaKind,
        header: &kafka_protocol::messages::RequestHeader,
        bytes: usize,
    ) -> i32 {
        if !self.quotas.enabled() || bytes == 0 {
            return 0;
        }
        // In-process calls (the console) have no connection and no quota.
        let Some(view) = conn::current() else {
            return 0;
        };
        let entity = crate::security::quota::entity(
            &view.principal,
            header.client_id.as_ref().map(|c| c.as_str()),
        );
        let ms = self.quotas.record(
            &entity,
            kind,
            bytes as u64,
            crate::security::quota::now_ms(),
        );
        if ms > 0 {
            self.metrics.security.throttled(kind);
            view.throttle_after_response(ms);
        }
        ms as i32
    }

    /// Answers one frame from the client at `peer`; `None` when no response is due (acks=0
    /// produce).
    pub async fn handle_frame(
        &self,
        frame: Bytes,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Option<ResponseFrame>, ServerError> {
        use kafka_protocol::messages::*;
        let started = Instant::now();
        let decoded = decode_frame(frame).map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
        let (header, request) = match decoded {
            Frame::Request { header, request } => (header, request),
            Frame::Unsupported {
                api_key,
                api_version,
                correlation_id,
            } => {
                debug!(api_key, api_version, "unsupported API or version");
                return unsupported::unsupported_response(api_key, api_version, correlation_id)
                    .map(|b| Some(ResponseFrame::whole(b)));
            }
        };
        let v = header.request_api_version;
        let cid = header.correlation_id;
        macro_rules! reply {
            ($api:expr, $name:literal, $resp:expr) => {{
                let resp = $resp;
                let out = ResponseFrame::whole(encode(($api), v, cid, &resp)?);
                self.metrics.kafka_request($name, started.elapsed());
                self.count_errors($name, &resp);
                Ok(Some(out))
            }};
        }
        match *request {
            KafkaRequest::ApiVersions(_) => reply!(
                ApiKey::ApiVersions,
                "ApiVersions",
                versions::api_versions_response(None)
            ),
            KafkaRequest::Produce(mut req) => {
                let acks = req.acks;
                let bytes: usize = req
                    .topic_data
                    .iter()
                    .flat_map(|t| t.partition_data.iter())
                    .filter_map(|p| p.records.as_ref().map(|r| r.len()))
                    .sum();
                let denied = self.authz_produce(&mut req);
                let mut resp = authz::produce_denied(self.produce(req, v).await, denied);
                let throttle = self.quota(QuotaKind::Produce, &header, bytes);
                resp.throttle_time_ms = resp.throttle_time_ms.max(throttle);
                self.metrics.kafka_request("Produce", started.elapsed());
                self.count_errors("Produce", &resp);
                if acks == 0 {
                    return Ok(None);
                }
                Ok(Some(ResponseFrame::whole(encode(
                    ApiKey::Produce,
                    v,
                    cid,
                    &resp,
                )?)))
            }
            KafkaRequest::Fetch(mut req) => {
                let denied = self.authz_fetch(&mut req).await;
                let mut resp = authz::fetch_denied(self.fetch(req, v).await, denied);
                let bytes: usize = resp
                    .responses
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .filter_map(|p| p.records.as_ref().map(|r| r.len()))
                    .sum();
                let throttle = self.quota(QuotaKind::Fetch, &header, bytes);
                resp.throttle_time_ms = resp.throttle_time_ms.max(throttle);
                // The record sets go out as the store's bytes, not copied into the frame.
                let shared: Vec<Bytes> = resp
                    .responses
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .filter_map(|p| p.records.clone())
                    .collect();
                let out = response::encode_chunked(ApiKey::Fetch, v, cid, &resp, shared).map_err(
                    |e| ServerError::Io(std::io::Error::other(format!("encoding Fetch v{v}: {e}"))),
                )?;
                self.metrics.kafka_request("Fetch", started.elapsed());
                self.count_errors("Fetch", &resp);
                Ok(Some(out))
            }
            KafkaRequest::ListOffsets(mut req) => {
                let denied = self.authz_list_offsets(&mut req);
                reply!(
                    ApiKey::ListOffsets,
                    "ListOffsets",
                    authz::list_offsets_denied(self.list_offsets(req, v).await, denied)
                )
            }
            KafkaRequest::Metadata(mut req) => {
                let post = self.authz_metadata(&mut req, v).await;
                let resp = self.metadata(req, v).await;
                reply!(ApiKey::Metadata, "Metadata", self.metadata_post(resp, post))
            }
            KafkaRequest::OffsetCommit(mut req) => {
                let denied = self.authz_offset_commit(&mut req);
                let resp = self.offset_commit(req, v).await;
                reply!(
                    ApiKey::OffsetCommit,
                    "OffsetCommit",
                    authz::offset_commit_denied(resp, denied)
                )
            }
            KafkaRequest::OffsetFetch(req) => {
                let groups: Vec<String> = if v < 8 {
                    vec![req.group_id.0.to_string()]
                } else {
                    req.groups
                        .iter()
                        .map(|g| g.group_id.0.to_string())
                        .collect()
                };
                let resp = self.offset_fetch(req, v).await;
                reply!(
                    ApiKey::OffsetFetch,
                    "OffsetFetch",
                    self.offset_fetch_post(resp, &groups, v)
                )
            }
            KafkaRequest::FindCoordinator(req) => {
                let keys = req.clone();
                let resp = self.find_coordinator(req, v).await;
                reply!(
                    ApiKey::FindCoordinator,
                    "FindCoordinator",
                    self.find_coordinator_post(resp, &keys, v)
                )
            }
            KafkaRequest::JoinGroup(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::JoinGroup,
                    "JoinGroup",
                    JoinGroupResponse::default()
                        .with_error_code(authz::GROUP_DENIED)
                        .with_generation_id(-1)
                )
            }
            KafkaRequest::JoinGroup(req) => reply!(
                ApiKey::JoinGroup,
                "JoinGroup",
                self.join_group(
                    req,
                    v,
                    header.client_id.as_ref().map(|s| s.to_string()),
                    peer
                )
                .await
            ),
            KafkaRequest::Heartbeat(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::Heartbeat,
                    "Heartbeat",
                    HeartbeatResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::LeaveGroup(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::LeaveGroup,
                    "LeaveGroup",
                    LeaveGroupResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::SyncGroup(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::SyncGroup,
                    "SyncGroup",
                    SyncGroupResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::Heartbeat(req) => {
                reply!(ApiKey::Heartbeat, "Heartbeat", self.heartbeat(req).await)
            }
            KafkaRequest::LeaveGroup(req) => {
                reply!(
                    ApiKey::LeaveGroup,
                    "LeaveGroup",
                    self.leave_group(req, v).await
                )
            }
            KafkaRequest::SyncGroup(req) => {
                reply!(ApiKey::SyncGroup, "SyncGroup", self.sync_group(req).await)
            }
            KafkaRequest::ConsumerGroupHeartbeat(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::ConsumerGroupHeartbeat,
                    "ConsumerGroupHeartbeat",
                    ConsumerGroupHeartbeatResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::ConsumerGroupHeartbeat(req) => reply!(
                ApiKey::ConsumerGroupHeartbeat,
                "ConsumerGroupHeartbeat",
                self.consumer_group_heartbeat(
                    req,
                    header.client_id.as_ref().map(|s| s.to_string()),
                    peer
                )
                .await
            ),
            KafkaRequest::ConsumerGroupDescribe(mut req) => {
                let denied = self.authz_groups(&mut req.group_ids, authz::Op::Describe);
                let mut resp = self.consumer_group_describe(req).await;
                resp.groups.extend(denied.into_iter().map(|g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(authz::GROUP_DENIED)
                }));
                reply!(ApiKey::ConsumerGroupDescribe, "ConsumerGroupDescribe", resp)
            }
            KafkaRequest::DescribeGroups(mut req) => {
                let denied = self.authz_groups(&mut req.groups, authz::Op::Describe);
                let resp = self.describe_groups(req).await;
                reply!(
                    ApiKey::DescribeGroups,
                    "DescribeGroups",
                    authz::describe_groups_denied(resp, denied)
                )
            }
            KafkaRequest::ListGroups(req) => {
                let resp = self.list_groups(req).await;
                reply!(
                    ApiKey::ListGroups,
                    "ListGroups",
                    self.list_groups_post(resp)
                )
            }
            KafkaRequest::CreateTopics(mut req) => {
                let denied = self.authz_create_topics(&mut req);
                let resp = self.create_topics(req, v).await;
                reply!(
                    ApiKey::CreateTopics,
                    "CreateTopics",
                    authz::create_topics_denied(resp, denied)
                )
            }
            KafkaRequest::DeleteTopics(mut req) => {
                let denied = self.authz_delete_topics(&mut req);
                let resp = self.delete_topics(req, v).await;
                reply!(
                    ApiKey::DeleteTopics,
                    "DeleteTopics",
                    authz::delete_topics_denied(resp, denied)
                )
            }
            KafkaRequest::DeleteRecords(mut req) => {
                let denied = self.authz_delete_records(&mut req);
                let resp = self.delete_records(req).await;
                reply!(
                    ApiKey::DeleteRecords,
                    "DeleteRecords",
                    authz::delete_records_denied(resp, denied)
                )
            }
            KafkaRequest::InitProducerId(req) if self.init_producer_id_denied(&req).is_some() => {
                reply!(
                    ApiKey::InitProducerId,
                    "InitProducerId",
                    InitProducerIdResponse::default()
                        .with_error_code(self.init_producer_id_denied(&req).unwrap_or_default())
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                )
            }
            KafkaRequest::InitProducerId(req) => reply!(
                ApiKey::InitProducerId,
                "InitProducerId",
                self.init_producer_id(req).await
            ),
            KafkaRequest::DescribeConfigs(mut req) if self.authz.enabled() => {
                let mut denied = Vec::new();
                req.resources.retain(|r| {
                    match self.config_resource_denied(
                        r.resource_type,
                        r.resource_name.as_str(),
                        authz::Op::DescribeConfigs,
                    ) {
                        Some(code) => {
                            denied.push(
                                describe_configs_response::DescribeConfigsResult::default()
                                    .with_error_code(code)
                                    .with_resource_type(r.resource_type)
                                    .with_resource_name(r.resource_name.clone()),
                            );
                            false
                        }
                        None => true,
                    }
                });
                let mut resp = self.describe_configs(req).await;
                resp.results.extend(denied);
                reply!(ApiKey::DescribeConfigs, "DescribeConfigs", resp)
            }
            KafkaRequest::DescribeConfigs(req) => reply!(
                ApiKey::DescribeConfigs,
                "DescribeConfigs",
                self.describe_configs(req).await
            ),
            KafkaRequest::CreateAcls(req) => {
                reply!(
                    ApiKey::CreateAcls,
                    "CreateAcls",
                    self.create_acls(req).await
                )
            }
            KafkaRequest::DescribeAcls(req) => {
                reply!(
                    ApiKey::DescribeAcls,
                    "DescribeAcls",
                    self.describe_acls(req).await
                )
            }
            KafkaRequest::DeleteAcls(req) => {
                reply!(
                    ApiKey::DeleteAcls,
                    "DeleteAcls",
                    self.delete_acls(req).await
                )
            }
            KafkaRequest::CreatePartitions(mut req) => {
                let denied = self.authz_create_partitions(&mut req);
                let resp = self.create_partitions(req).await;
                reply!(
                    ApiKey::CreatePartitions,
                    "CreatePartitions",
                    authz::create_partitions_denied(resp, denied)
                )
            }
            KafkaRequest::DeleteGroups(mut req) => {
                let denied = self.authz_groups(&mut req.groups_names, authz::Op::Delete);
                let resp = self.delete_groups(req).await;
                reply!(
                    ApiKey::DeleteGroups,
                    "DeleteGroups",
                    authz::delete_groups_denied(resp, denied)
                )
            }
            KafkaRequest::OffsetDelete(req)
                if !self.may_group(authz::Op::Delete, req.group_id.0.as_str()) =>
            {
                reply!(
                    ApiKey::OffsetDelete,
                    "OffsetDelete",
                    OffsetDeleteResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::OffsetDelete(req) => reply!(
                ApiKey::OffsetDelete,
                "OffsetDelete",
                self.offset_delete(req).await
            ),
            KafkaRequest::AlterConfigs(mut req) if self.authz.enabled() => {
                let mut denied = Vec::new();
                req.resources.retain(|r| {
                    match self.config_resource_denied(
                        r.resource_type,
                        r.resource_name.as_str(),
                        authz::Op::AlterConfigs,
                    ) {
                        Some(code) => {
                            denied.push(
                                alter_configs_response::AlterConfigsResourceResponse::default()
                                    .with_error_code(code)
                                    .with_resource_type(r.resource_type)
                                    .with_resource_name(r.resource_name.clone()),
                            );
                            false
                        }
                        None => true,
                    }
                });
                let mut resp = self.alter_configs(req).await;
                resp.responses.extend(denied);
                reply!(ApiKey::AlterConfigs, "AlterConfigs", resp)
            }
            KafkaRequest::IncrementalAlterConfigs(mut req) if self.authz.enabled() => {
                let mut denied = Vec::new();
                req.resources.retain(|r| match self.config_resource_denied(r.resource_type, r.resource_name.as_str(), authz::Op::AlterConfigs) {
                    Some(code) => {
                        denied.push(incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_error_code(code)
                            .with_resource_type(r.resource_type)
                            .with_resource_name(r.resource_name.clone()));
                        false
                    }
                    None => true,
                });
                let mut resp = self.incremental_alter_configs(req).await;
                resp.responses.extend(denied);
                reply!(
                    ApiKey::IncrementalAlterConfigs,
                    "IncrementalAlterConfigs",
                    resp
                )
            }
            KafkaRequest::DescribeCluster(_) if !self.may_cluster(authz::Op::Describe) => reply!(
                ApiKey::DescribeCluster,
                "DescribeCluster",
                DescribeClusterResponse::default().with_error_code(authz::CLUSTER_DENIED)
            ),
            KafkaRequest::DescribeLogDirs(_) if !self.may_cluster(authz::Op::Describe) => reply!(
                ApiKey::DescribeLogDirs,
                "DescribeLogDirs",
                DescribeLogDirsResponse::default().with_error_code(authz::CLUSTER_DENIED)
            ),
            KafkaRequest::ElectLeaders(_) if !self.may_cluster(authz::Op::Alter) => reply!(
                ApiKey::ElectLeaders,
                "ElectLeaders",
                ElectLeadersResponse::default().with_error_code(authz::CLUSTER_DENIED)
            ),
            KafkaRequest::DescribeTopicPartitions(mut req) if self.authz.enabled() => {
                self.authz_retain_topics(&mut req.topics, authz::Op::Describe, |t| {
                    t.name.0.as_str()
                });
                reply!(
                    ApiKey::DescribeTopicPartitions,
                    "DescribeTopicPartitions",
                    self.describe_topic_partitions(req).await
                )
            }
            KafkaRequest::DescribeProducers(mut req) if self.authz.enabled() => {
                self.authz_retain_topics(&mut req.topics, authz::Op::Read, |t| t.name.0.as_str());
                reply!(
                    ApiKey::DescribeProducers,
                    "DescribeProducers",
                    self.describe_producers(req).await
                )
            }
            KafkaRequest::OffsetForLeaderEpoch(mut req) if self.authz.enabled() => {
                self.authz_retain_topics(&mut req.topics, authz::Op::Describe, |t| {
                    t.topic.0.as_str()
                });
                reply!(
                    ApiKey::OffsetForLeaderEpoch,
                    "OffsetForLeaderEpoch",
                    self.offset_for_leader_epoch(req).await
                )
            }
            KafkaRequest::AlterConfigs(req) => reply!(
                ApiKey::AlterConfigs,
                "AlterConfigs",
                self.alter_configs(req).await
            ),
            KafkaRequest::IncrementalAlterConfigs(req) => reply!(
                ApiKey::IncrementalAlterConfigs,
                "IncrementalAlterConfigs",
                self.incremental_alter_configs(req).await
            ),
            KafkaRequest::DescribeCluster(req) => reply!(
                ApiKey::DescribeCluster,
                "DescribeCluster",
                self.describe_cluster(req)
            ),
            KafkaRequest::DescribeTopicPartitions(req) => reply!(
                ApiKey::DescribeTopicPartitions,
                "DescribeTopicPartitions",
                self.describe_topic_partitions(req).await
            ),
            KafkaRequest::DescribeLogDirs(req) => reply!(
                ApiKey::DescribeLogDirs,
                "DescribeLogDirs",
                self.describe_log_dirs(req).await
            ),
            KafkaRequest::ElectLeaders(req) => reply!(
                ApiKey::ElectLeaders,
                "ElectLeaders",
                self.elect_leaders(req).await
            ),
            KafkaRequest::AddPartitionsToTxn(req)
                if self.txn_write_denied(req.v3_and_below_transactional_id.0.as_str()) =>
            {
                let resp = self.add_partitions_to_txn(req).await;
                reply!(
                    ApiKey::AddPartitionsToTxn,
                    "AddPartitionsToTxn",
                    authz::add_partitions_denied(resp)
                )
            }
            KafkaRequest::AddPartitionsToTxn(req) => reply!(
                ApiKey::AddPartitionsToTxn,
                "AddPartitionsToTxn",
                self.add_partitions_to_txn(req).await
            ),
            KafkaRequest::AddOffsetsToTxn(req) => {
                let resp = if self.txn_write_denied(req.transactional_id.0.as_str()) {
                    AddOffsetsToTxnResponse::default().with_error_code(authz::TXN_DENIED)
                } else if self.group_read_denied(req.group_id.0.as_str()).is_some() {
                    AddOffsetsToTxnResponse::default().with_error_code(authz::GROUP_DENIED)
                } else {
                    self.add_offsets_to_txn(req).await
                };
                reply!(ApiKey::AddOffsetsToTxn, "AddOffsetsToTxn", resp)
            }
            KafkaRequest::TxnOffsetCommit(req) => {
                let denied = if self.txn_write_denied(req.transactional_id.0.as_str()) {
                    Some(authz::TXN_DENIED)
                } else {
                    self.group_read_denied(req.group_id.0.as_str())
                };
                let resp = match denied {
                    Some(c) => authz::txn_offset_commit_denied(&req, c),
                    None => self.txn_offset_commit(req).await,
                };
                reply!(ApiKey::TxnOffsetCommit, "TxnOffsetCommit", resp)
            }
            KafkaRequest::EndTxn(req) => {
                let resp = if self.txn_write_denied(req.transactional_id.0.as_str()) {
                    EndTxnResponse::default().with_error_code(authz::TXN_DENIED)
                } else {
                    self.end_txn(req).await
                };
                reply!(ApiKey::EndTxn, "EndTxn", resp)
            }
            KafkaRequest::DescribeTransactions(req) => reply!(
                ApiKey::DescribeTransactions,
                "DescribeTransactions",
                self.describe_transactions(req).await
            ),
            KafkaRequest::ListTransactions(req) => reply!(
                ApiKey::ListTransactions,
                "ListTransactions",
                self.list_transactions(req).await
            ),
            KafkaRequest::DescribeProducers(req) => reply!(
                ApiKey::DescribeProducers,
                "DescribeProducers",
                self.describe_producers(req).await
            ),
            KafkaRequest::OffsetForLeaderEpoch(req) => reply!(
                ApiKey::OffsetForLeaderEpoch,
                "OffsetForLeaderEpoch",
                self.offset_for_leader_epoch(req).await
            ),
            KafkaRequest::GetTelemetrySubscriptions(req) => reply!(
                ApiKey::GetTelemetrySubscriptions,
                "GetTelemetrySubscriptions",
                self.get_telemetry_subscriptions(req)
            ),
            KafkaRequest::PushTelemetry(req) => reply!(
                ApiKey::PushTelemetry,
                "PushTelemetry",
                self.push_telemetry(req)
            ),
            KafkaRequest::DescribeUserScramCredentials(req) => reply!(
                ApiKey::DescribeUserScramCredentials,
                "DescribeUserScramCredentials",
                self.describe_user_scram_credentials(req).await
            ),
            KafkaRequest::AlterUserScramCredentials(req) => reply!(
                ApiKey::AlterUserScramCredentials,
                "AlterUserScramCredentials",
                self.alter_user_scram_credentials(req).await
            ),
            KafkaRequest::ShareGroupHeartbeat(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::ShareGroupHeartbeat,
                    "ShareGroupHeartbeat",
                    ShareGroupHeartbeatResponse::default()
                        .with_error_code(authz::GROUP_DENIED)
                        .with_member_epoch(-1)
                )
            }
            KafkaRequest::ShareGroupHeartbeat(req) => reply!(
                ApiKey::ShareGroupHeartbeat,
                "ShareGroupHeartbeat",
                self.share_group_heartbeat(
                    req,
                    header.client_id.as_ref().map(|s| s.to_string()),
                    peer
                )
                .await
            ),
            KafkaRequest::ShareGroupDescribe(mut req) => {
                let denied = self.authz_groups(&mut req.group_ids, authz::Op::Describe);
                let mut resp = self.share_group_describe(req).await;
                for g in denied {
                    resp.groups.push(
                        share_group_describe_response::DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(authz::GROUP_DENIED),
                    );
                }
                reply!(ApiKey::ShareGroupDescribe, "ShareGroupDescribe", resp)
            }
            KafkaRequest::ShareFetch(req)
                if req
                    .group_id
                    .as_ref()
                    .is_some_and(|g| self.group_read_denied(g.0.as_str()).is_some()) =>
            {
                reply!(
                    ApiKey::ShareFetch,
                    "ShareFetch",
                    ShareFetchResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::ShareFetch(req) => reply!(
                ApiKey::ShareFetch,
                "ShareFetch",
                self.share_fetch(req).await
            ),
            KafkaRequest::ShareAcknowledge(req)
                if req
                    .group_id
                    .as_ref()
                    .is_some_and(|g| self.group_read_denied(g.0.as_str()).is_some()) =>
            {
                reply!(
                    ApiKey::ShareAcknowledge,
                    "ShareAcknowledge",
                    ShareAcknowledgeResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::ShareAcknowledge(req) => reply!(
                ApiKey::ShareAcknowledge,
                "ShareAcknowledge",
                self.share_acknowledge(req).await
            ),
            KafkaRequest::DescribeShareGroupOffsets(req) => reply!(
                ApiKey::DescribeShareGroupOffsets,
                "DescribeShareGroupOffsets",
                self.describe_share_group_offsets(req).await
            ),
            KafkaRequest::AlterShareGroupOffsets(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::AlterShareGroupOffsets,
                    "AlterShareGroupOffsets",
                    AlterShareGroupOffsetsResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::AlterShareGroupOffsets(req) => reply!(
                ApiKey::AlterShareGroupOffsets,
                "AlterShareGroupOffsets",
                self.alter_share_group_offsets(req).await
            ),
            KafkaRequest::DeleteShareGroupOffsets(req)
                if self.group_read_denied(req.group_id.0.as_str()).is_some() =>
            {
                reply!(
                    ApiKey::DeleteShareGroupOffsets,
                    "DeleteShareGroupOffsets",
                    DeleteShareGroupOffsetsResponse::default().with_error_code(authz::GROUP_DENIED)
                )
            }
            KafkaRequest::DeleteShareGroupOffsets(req) => reply!(
                ApiKey::DeleteShareGroupOffsets,
                "DeleteShareGroupOffsets",
                self.delete_share_group_offsets(req).await
            ),
        }
    }

    /// Counts the non-zero error codes of a response under `api`.
    fn count_errors<R: response_errors::ResponseErrors>(&self, api: &'static str, resp: &R) {
        resp.error_codes(&mut |code| {
            if code != 0 {
                self.metrics.kafka_error(api, code);
            }
        });
    }

    /// The topic, created with the default settings when it is missing and `create` holds.
    async fn topic_or_create(&self, name: &str, create: bool) -> StoreResult<TopicInfo> {
        match self.store.describe_topic(name).await {
            Err(StoreError::UnknownTopic(_)) if create => {
                let config = self.new_topic_config(self.config.default_partitions);
                match self.store.create_topic(name, config).await {
                    Ok(info) => {
                        info!(topic = name, "auto-created topic");
                        Ok(info)
                    }
                    Err(StoreError::TopicExists(_)) => self.store.describe_topic(name).await,
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    fn new_topic_config(&self, partitions: u32) -> TopicConfig {
        let mut config = TopicConfig {
            partitions,
            durability: self.config.default_durability,
            ..TopicConfig::default()
        };
        topics::assign_topic_id(&mut config);
        config
    }

    /// Resolves when the server is stopping.
    async fn stopping(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// The first two bytes of a Fetch request frame (its API key).
const FETCH_KEY: [u8; 2] = (ApiKey::Fetch as i16).to_be_bytes();

fn encode<T: Encodable>(
    api: ApiKey,
    version: i16,
    cid: i32,
    body: &T,
) -> Result<BytesMut, ServerError> {
    encode_response(api, version, cid, body).map_err(|e| {
        ServerError::Io(std::io::Error::other(format!(
            "encoding {api:?} v{version}: {e}"
        )))
    })
}

/// Resolves once `stop` is true.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
