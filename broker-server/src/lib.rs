//! The broker: the Kafka wire protocol and an SQS-compatible HTTP API over one
//! `Arc<dyn Store>` chosen at start-up.

pub mod admin;
pub mod backlog;
pub mod cluster;
pub mod config;
pub mod console;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod retention;
pub mod security;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{SharedClock, Store, StoreError, SystemClock};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::config::{Config, StoreKind};

/// Large reservations (as the Kafka decoders make from untrusted counts) take no memory
/// until used; see [`kafka::alloc`].
#[cfg(unix)]
#[global_allocator]
static GLOBAL: kafka::alloc::LargeLazyAlloc = kafka::alloc::LargeLazyAlloc;
use crate::kafka::KafkaConfig;
use crate::metrics::Metrics;

/// Rate limiting of the warnings logged for failing requests: a client retrying a failing
/// produce every 100 ms logs one line, then one line with a count every 10 s.
pub(crate) static LOG_LIMIT: std::sync::LazyLock<broker_api::LogLimiter> =
    std::sync::LazyLock::new(broker_api::LogLimiter::default);

/// The variant name of a store error, for grouping repeated failures.
pub(crate) fn error_kind(e: &StoreError) -> String {
    let text = format!("{e:?}");
    text.split(['(', ' ', '{']).next().unwrap_or("").to_string()
}

/// Everything that can stop the broker from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is missing or malformed.
    #[error("configuration error: {0}")]
    Config(String),
    /// The store's data directory or database is unusable.
    #[error("{0}")]
    Open(String),
    /// The chosen store could not be opened.
    #[error("cannot open the {kind} store: {source}")]
    Store {
        kind: StoreKind,
        #[source]
        source: StoreError,
    },
    /// A listener could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Serving failed after start-up.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store the config names; fails with a clear error when it is unusable.
pub async fn open_store(
    config: &Config,
    clock: SharedClock,
) -> Result<Arc<dyn Store>, ServerError> {
    let kind = config.store;
    let wrap = |source| ServerError::Store { kind, source };
    match kind {
        StoreKind::Memory => Ok(Arc::new(store_memory::MemoryStore::new(clock))),
        StoreKind::Log => {
            let dir = config.data_dir.clone();
            let opened = tokio::task::spawn_blocking(move || {
                store_log::LogStore::open(&dir, store_log::LogOptions::default(), clock)
            })
            .await
            .map_err(|e| wrap(StoreError::Internal(format!("opening the log store: {e}"))))?;
            match opened {
                Ok(store) => Ok(Arc::new(store)),
                // Names the directory, the lock file and the holder's pid itself; as it is.
                Err(e @ store_log::LogError::DataDirLocked { .. }) => {
                    Err(ServerError::Open(e.to_string()))
                }
                Err(e) => Err(ServerError::Open(format!(
                    "cannot open the log store in {}: {e}",
                    config.data_dir.display()
                ))),
            }
        }
        StoreKind::Postgres => {
            let url = config.database_url.as_deref().ok_or_else(|| {
                ServerError::Config(
                    "--store postgres needs --database-url (or DATABASE_URL)".into(),
                )
            })?;
            let options = store_postgres::PgOptions {
                schema: config.pg_schema.clone(),
                startup_wait: Duration::from_secs(config.pg_connect_timeout_secs),
                // Half the registration lapse: a paused broker's transactions end (and its
                // row locks go) before the others treat it as dead and take over its groups.
                idle_in_transaction_timeout: Some(
                    Duration::from_millis(config.cluster_lapse_ms / 2)
                        .max(Duration::from_millis(500)),
                ),
                ..store_postgres::PgOptions::default()
            };
            match store_postgres::PgStore::connect(url, options, clock).await {
                Ok(store) => Ok(Arc::new(store)),
                Err(e) => Err(ServerError::Open(format!(
                    "cannot open the postgres store (schema {}): {e}",
                    config.pg_schema
                ))),
            }
        }
    }
}

/// Addresses a running server bound.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub kafka: SocketAddr,
    pub http: SocketAddr,
}

/// A server whose listeners are bound; [`Server::serve`] runs it until shutdown.
pub struct Server {
    store: Arc<dyn Store>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    kafka_listeners: Vec<(TcpListener, Arc<kafka::conn::ListenerInfo>)>,
    listener_addrs: Vec<(String, SocketAddr)>,
    http_listener: TcpListener,
    kafka_config: KafkaConfig,
    addrs: BoundAddrs,
    tls: Option<Arc<security::tls::TlsState>>,
    http_tls: bool,
    authz: Arc<security::acl::Authorizer>,
    sqs_credentials: Option<http::SigV4Credentials>,
    retention_check_ms: u64,
    cleaner_check_ms: u64,
    /// Serve the web console; the Kafka address clients are told, for its overview.
    ui: bool,
    advertised: String,
    /// This broker in its cluster (alone over the log and memory stores).
    node: Arc<cluster::Node>,
}

impl Server {
    /// Binds both listeners over an already opened store (port 0 picks a free port).
    pub async fn bind(
        config: &Config,
        store: Arc<dyn Store>,
        clock: SharedClock,
    ) -> Result<Server, ServerError> {
        let tls = match &config.security.tls {
            Some(files) => {
                Some(security::tls::TlsState::load(files.clone()).map_err(ServerError::Config)?)
            }
            None => None,
        };
        let specs = config
            .security
            .kafka_listeners(config.kafka_addr, config.advertised_addr.as_deref());
        let mut kafka_listeners = Vec::new();
        let mut listener_addrs = Vec::new();
        for spec in &specs {
            let bound = TcpListener::bind(spec.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: spec.addr,
                    source,
                })?;
            let local = bound.local_addr()?;
            let advertised = match &spec.advertised {
                Some(a) => a.clone(),
                None if local.ip().is_unspecified() => {
                    let a = format!("127.0.0.1:{}", local.port());
                    warn!(
                        listener = %spec.name,
                        "Kafka listener bound to {local} without an advertised address: \
                         advertising {a}, which only local clients can reach"
                    );
                    a
                }
                None => local.to_string(),
            };
            let (host, port) = security::listener::split_host_port(&advertised).map_err(|e| {
                ServerError::Config(format!("advertised address of listener {}: {e}", spec.name))
            })?;
            let tls_auth = if spec.protocol.is_tls() {
                let tls = tls.clone().ok_or_else(|| {
                    ServerError::Config(format!(
                        "listener {} is {}: it needs --tls-cert and --tls-key",
                        spec.name, spec.protocol
                    ))
                })?;
                let auth = match (tls.has_client_ca(), spec.protocol.is_sasl()) {
                    (false, _) => security::tls::ClientAuth::None,
                    (true, false) => security::tls::ClientAuth::Required,
                    (true, true) => security::tls::ClientAuth::Optional,
                };
                Some((tls, auth))
            } else {
                None
            };
            listener_addrs.push((spec.name.clone(), local));
            kafka_listeners.push((
                bound,
                Arc::new(kafka::conn::ListenerInfo {
                    name: spec.name.clone(),
                    protocol: spec.protocol,
                    advertised_host: host,
                    advertised_port: port as i32,
                    tls: tls_auth,
                }),
            ));
        }
        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let addrs = BoundAddrs {
            kafka: listener_addrs
                .first()
                .map(|(_, a)| *a)
                .ok_or_else(|| ServerError::Config("no Kafka listener".into()))?,
            http: http_listener.local_addr()?,
        };
        let has_client_ca = tls.as_ref().is_some_and(|t| t.has_client_ca());
        let authz = security::acl::Authorizer::new(
            config.security.authz_settings(has_client_ca),
            store.clone(),
        );
        authz
            .refresh()
            .await
            .map_err(|e| ServerError::Open(format!("cannot read the ACLs from the store: {e}")))?;
        if authz.enabled() {
            info!(
                super_users = config.security.super_users.len(),
                allow_everyone_if_no_acl = config
                    .security
                    .authz_settings(has_client_ca)
                    .allow_if_no_acl,
                "ACL authorisation on"
            );
        }
        let first = &kafka_listeners[0].1;
        let advertised = format!("{}:{}", first.advertised_host, first.advertised_port);
        let registration = broker_api::BrokerRegistration {
            node_id: config.node_id,
            endpoints: kafka_listeners
                .iter()
                .map(|(_, l)| broker_api::BrokerEndpoint {
                    listener: l.name.clone(),
                    host: l.advertised_host.clone(),
                    port: l.advertised_port,
                })
                .collect(),
            http_addr: addrs.http.to_string(),
            rack: config.rack.clone(),
            lapse: Duration::from_millis(config.cluster_lapse_ms),
        };
        let node = cluster::Node::join(
            store.clone(),
            registration,
            Duration::from_millis(config.cluster_heartbeat_ms),
        )
        .await?;
        let kafka_config = KafkaConfig::new(config, &advertised)?;
        let ui = config.ui;
        let sqs_credentials = match &config.sqs_credentials_file {
            Some(path) => Some(http::SigV4Credentials::from_file(path).map_err(|e| {
                ServerError::Config(format!(
                    "bad --sqs-credentials-file {}: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Ok(Server {
            store,
            clock,
            metrics: Arc::new(Metrics::default()),
            kafka_listeners,
            listener_addrs,
            http_listener,
            kafka_config,
            addrs,
            http_tls: config.security.http_tls,
            tls,
            authz,
            sqs_credentials,
            retention_check_ms: config.retention_check_ms,
            cleaner_check_ms: config.cleaner_check_ms,
            ui,
            advertised,
            node,
        })
    }

    /// The addresses the listeners are bound to.
    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// Every Kafka listener's name and bound address, in the order of the settings.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listener_addrs.clone()
    }

    /// The store the server serves.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes in-flight requests
    /// and closes the store.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let kafka = kafka::KafkaServer::with_authorizer(
            self.store.clone(),
            self.metrics.clone(),
            self.kafka_config.clone(),
            stop_rx.clone(),
            self.authz.clone(),
            self.node.clone(),
        );
        let node_task = tokio::spawn(self.node.clone().run(stop_rx.clone()));
        // The console only holds handles; it starts nothing (see console/mod.rs).
        let console = self.ui.then(|| {
            Arc::new(
                console::Console::new(
                    self.store.clone(),
                    self.metrics.clone(),
                    kafka.clone(),
                    self.clock.clone(),
                    console::Listeners {
                        kafka: self.addrs.kafka,
                        advertised: self.advertised.clone(),
                        http: self.addrs.http,
                    },
                )
                .with_authorizer(self.authz.clone()),
            )
        });
        let acl_refresh = tokio::spawn(
            self.authz
                .clone()
                .refresh_loop(Duration::from_secs(10), stop_rx.clone()),
        );
        let kafka_task = tokio::spawn(kafka.serve(self.kafka_listeners));
        let tls_reload = self
            .tls
            .clone()
            .map(|tls| tokio::spawn(security::tls::reload_on_sighup(tls, stop_rx.clone())));
        let scheme = if self.http_tls { "https" } else { "http" };
        let base_url = format!("{scheme}://{}", self.addrs.http);
        let router = http::router(
            self.store.clone(),
            self.metrics.clone(),
            http::HttpConfig {
                base_url,
                clock: Some(self.clock.clone()),
                credentials: self.sqs_credentials.clone(),
                shutdown: Some(stop_rx.clone()),
                authorizer: Some(self.authz.clone()),
            },
        );
        let router = router.merge(console::router(console));
        let retention_task = tokio::spawn(retention::run(
            self.store.clone(),
            Duration::from_millis(self.retention_check_ms),
            stop_rx.clone(),
        ));
        let cleaner_task = tokio::spawn(retention::run_cleaner(
            self.store.clone(),
            Duration::from_millis(self.cleaner_check_ms),
            stop_rx.clone(),
        ));
        let mut http_stop = stop_rx.clone();
        let http_task = match (&self.tls, self.http_tls) {
            (Some(tls), true) => {
                let listener = security::http_tls::TlsHttpListener::new(
                    self.http_listener,
                    tls.clone(),
                    self.metrics.clone(),
                    stop_rx.clone(),
                )?;
                tokio::spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            kafka::stopped(&mut http_stop).await;
                        })
                        .await
                })
            }
            _ => {
                let http_listener =
                    http::CountingListener::new(self.http_listener, self.metrics.clone());
                tokio::spawn(async move {
                    axum::serve(http_listener, router)
                        .with_graceful_shutdown(async move {
                            kafka::stopped(&mut http_stop).await;
                        })
                        .await
                })
            }
        };
        for (name, addr) in &self.listener_addrs {
            info!(listener = %name, %addr, "kafka listener");
        }
        info!(kafka = %self.addrs.kafka, http = %self.addrs.http, store = self.store.kind(), "broker listening");
        shutdown.await;
        info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(true);
        match kafka_task.await {
            Ok(()) => {}
            Err(e) => error!("kafka listener task failed: {e}"),
        }
        match http_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("http listener stopped with an error: {e}"),
            Err(e) => error!("http listener task failed: {e}"),
        }
        let _ = acl_refresh.await;
        let _ = node_task.await;
        if let Some(t) = tls_reload {
            let _ = t.await;
        }
        if let Err(e) = retention_task.await {
            error!("retention task failed: {e}");
        }
        if let Err(e) = cleaner_task.await {
            error!("cleaner task failed: {e}");
        }
        if let Err(e) = self.store.close().await {
            error!("closing the store failed: {e}");
            return Err(ServerError::Store {
                kind: match self.store.kind() {
                    "log" => StoreKind::Log,
                    "postgres" => StoreKind::Postgres,
                    _ => StoreKind::Memory,
                },
                source: e,
            });
        }
        info!("store closed; bye");
        Ok(())
    }
}

/// Opens the store, binds the listeners and serves until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    use futures::FutureExt;
    let clock: SharedClock = Arc::new(SystemClock);
    // A signal while the store opens (say, while waiting for PostgreSQL) stops at once.
    let shutdown = shutdown.boxed().shared();
    let store = tokio::select! {
        store = open_store(&config, clock.clone()) => store?,
        _ = shutdown.clone() => {
            info!("stopped during start-up, before the store was open");
            return Ok(());
        }
    };
    let server = match Server::bind(&config, store.clone(), clock).await {
        Ok(s) => s,
        Err(e) => {
            let _ = store.close().await;
            return Err(e);
        }
    };
    server.serve(shutdown).await
}
