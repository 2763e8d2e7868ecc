//! The broker's settings: command-line flags, `BROKER_*` environment variables and an optional
//! TOML file, in that order of precedence, over built-in defaults.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use broker_api::Durability;
use clap::Parser;
use serde::Deserialize;

use crate::security::{SecurityArgs, SecurityConfig};
use crate::ServerError;

/// Which storage engine holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Segment files in `--data-dir`.
    Log,
    /// Tables in PostgreSQL (`--database-url`).
    Postgres,
    /// In memory; everything is lost at exit.
    Memory,
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "log" => Ok(StoreKind::Log),
            "postgres" => Ok(StoreKind::Postgres),
            "memory" => Ok(StoreKind::Memory),
            other => Err(format!(
                "unknown store {other:?}: use log, postgres or memory"
            )),
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Log => "log",
            StoreKind::Postgres => "postgres",
            StoreKind::Memory => "memory",
        })
    }
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    Durability::from_str(s)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// Command-line flags; each can also come from `BROKER_<NAME>` or the `--config` file.
#[derive(Debug, Default, Parser)]
#[command(
    name = "broker",
    version,
    about = "A message broker speaking the Kafka wire protocol and an SQS-compatible HTTP API over one storage engine.",
    long_about = "A message broker speaking the Kafka wire protocol and an SQS-compatible HTTP API over one \
storage engine.\n\nEvery flag can also be set with an environment variable BROKER_<FLAG> (for example \
BROKER_KAFKA_ADDR) or in the TOML file given with --config (keys as the flag names with '_' for '-', \
for example kafka_addr = \"0.0.0.0:9092\"). Flags beat environment variables, which beat the file, which \
beats the defaults. Logging is controlled with RUST_LOG (default: info)."
)]
pub struct Cli {
    /// TOML file with settings (keys are the flag names with '_' instead of '-'; see
    /// broker.example.toml) [default: none].
    #[arg(long, env = "BROKER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Storage engine: log (segment files), postgres or memory [default: log, or postgres
    /// when --database-url is given].
    #[arg(long, env = "BROKER_STORE", value_name = "KIND")]
    pub store: Option<StoreKind>,
    /// Directory of the log store's files [default: ./data].
    #[arg(long, env = "BROKER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL for the postgres store, e.g. postgres://broker:secret@db:5432/app; giving
    /// it selects --store postgres [default: none; DATABASE_URL is read when --store postgres
    /// has no URL].
    #[arg(long, env = "BROKER_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// PostgreSQL schema holding the postgres store's tables [default: broker].
    #[arg(long, env = "BROKER_PG_SCHEMA", value_name = "NAME")]
    pub pg_schema: Option<String>,
    /// How long start-up waits for PostgreSQL to accept connections, retrying with backoff,
    /// before giving up; 0 tries once [default: 60].
    #[arg(long, env = "BROKER_PG_CONNECT_TIMEOUT_SECS", value_name = "SECS")]
    pub pg_connect_timeout_secs: Option<u64>,
    /// Address the Kafka listener binds: an IP or a host name (resolved at start) and a port
    /// [default: 127.0.0.1:9092].
    #[arg(long, env = "BROKER_KAFKA_ADDR", value_name = "HOST:PORT")]
    pub kafka_addr: Option<String>,
    /// Address clients are told to connect to in Metadata [default: the bound Kafka address].
    #[arg(long, env = "BROKER_ADVERTISED_ADDR", value_name = "HOST:PORT")]
    pub advertised_addr: Option<String>,
    /// Address of the HTTP listener (SQS-compatible API, /metrics, /healthz): an IP or a host
    /// name (resolved at start) and a port [default: 127.0.0.1:9324].
    #[arg(long, env = "BROKER_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Partitions of topics created on first use or without a count [default: 1].
    #[arg(long, env = "BROKER_DEFAULT_PARTITIONS", value_name = "N")]
    pub default_partitions: Option<u32>,
    /// Create a topic when a client first asks for it in Metadata [default: true].
    #[arg(long, env = "BROKER_AUTO_CREATE_TOPICS", value_name = "BOOL", value_parser = parse_bool)]
    pub auto_create_topics: Option<bool>,
    /// Fsync policy of new topics: always, interval, interval:MS or never [default: interval:100].
    #[arg(long, env = "BROKER_DEFAULT_DURABILITY", value_name = "POLICY", value_parser = parse_durability)]
    pub default_durability: Option<Durability>,
    /// Largest Kafka request frame accepted, in bytes; bigger frames close the connection
    /// before they are read [default: 104857600].
    #[arg(long, env = "BROKER_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Largest replication factor CreateTopics accepts. The factor is kept as a topic
    /// setting; the store keeps the data safe, so one copy serves every factor [default: 3].
    #[arg(long, env = "BROKER_MAX_REPLICATION_FACTOR", value_name = "N")]
    pub max_replication_factor: Option<u32>,
    /// File of SQS SigV4 keys (`ACCESS_KEY_ID SECRET` per line); with it, unsigned or badly
    /// signed SQS requests are refused. Without it, BROKER_SQS_ACCESS_KEY_ID and
    /// BROKER_SQS_SECRET_ACCESS_KEY give one key; with neither, requests are accepted
    /// [default: none].
    #[arg(long, env = "BROKER_SQS_CREDENTIALS_FILE", value_name = "FILE")]
    pub sqs_credentials_file: Option<PathBuf>,
    /// How often time and size retention is applied to every topic, in ms [default: 60000].
    #[arg(long, env = "BROKER_RETENTION_CHECK_MS", value_name = "MS")]
    pub retention_check_ms: Option<u64>,
    /// How often partitions of compacted topics (`cleanup.policy=compact`) are checked and
    /// compacted when dirty enough, in ms (Kafka's log.cleaner.backoff.ms) [default: 15000].
    #[arg(long, env = "BROKER_CLEANER_CHECK_MS", value_name = "MS")]
    pub cleaner_check_ms: Option<u64>,
    /// This broker's node id. With the postgres store, brokers on one schema form a cluster
    /// and no two live brokers may share an id; without it the store allocates one from
    /// 1000 up [default: 0 on the log and memory stores, allocated on postgres].
    #[arg(long, env = "BROKER_NODE_ID", value_name = "N")]
    pub node_id: Option<i32>,
    /// This broker's rack (`broker.rack`), reported in Metadata [default: none].
    #[arg(long, env = "BROKER_RACK", value_name = "RACK")]
    pub rack: Option<String>,
    /// How often a clustered broker renews its registration, in ms [default: 1000].
    #[arg(long, env = "BROKER_CLUSTER_HEARTBEAT_MS", value_name = "MS")]
    pub cluster_heartbeat_ms: Option<u64>,
    /// How long after its last heartbeat a clustered broker counts as dead: its partitions
    /// and groups move to the live brokers, in ms [default: 6000].
    #[arg(long, env = "BROKER_CLUSTER_LAPSE_MS", value_name = "MS")]
    pub cluster_lapse_ms: Option<u64>,
    /// Serve the web console at /ui (and its JSON API at /api/v1) on the HTTP listener
    /// [default: true].
    #[arg(long, env = "BROKER_UI", value_name = "BOOL", value_parser = parse_bool)]
    pub ui: Option<bool>,

    // ---- security (see docs/security.md) ----
    /// A Kafka listener NAME=PROTOCOL://HOST:PORT, PROTOCOL one of PLAINTEXT, SSL,
    /// SASL_PLAINTEXT, SASL_SSL; repeatable (or comma-separated). Without an explicit
    /// --kafka-addr they replace the default PLAINTEXT listener [default: none].
    #[arg(
        long,
        env = "BROKER_LISTENER",
        value_name = "NAME=PROTOCOL://HOST:PORT",
        value_delimiter = ','
    )]
    pub listener: Vec<String>,
    /// Address clients of listener NAME are told in Metadata, NAME=HOST:PORT; repeatable
    /// [default: the listener's bound address].
    #[arg(
        long,
        env = "BROKER_ADVERTISED_LISTENER",
        value_name = "NAME=HOST:PORT",
        value_delimiter = ','
    )]
    pub advertised_listener: Vec<String>,
    /// PEM certificate chain (leaf first) of SSL/SASL_SSL listeners and --http-tls; reloaded
    /// on SIGHUP [default: none].
    #[arg(long, env = "BROKER_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or EC) [default: none].
    #[arg(long, env = "BROKER_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates of client certificates: SSL listeners then require a client
    /// certificate whose subject is the principal (User:CN=...) [default: none].
    #[arg(long, env = "BROKER_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve the HTTP listener (SQS API, /metrics) over TLS with --tls-cert [default: false].
    #[arg(long, env = "BROKER_HTTP_TLS", value_name = "BOOL", value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    pub http_tls: Option<bool>,
    /// SASL mechanisms offered on SASL listeners, comma-separated, of PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512; PLAIN is checked against the SCRAM credentials [default: all three].
    #[arg(long, env = "BROKER_SASL_MECHANISMS", value_name = "LIST")]
    pub sasl_mechanisms: Option<String>,
    /// Lifetime of a SASL session in ms (Kafka's connections.max.reauth.ms, KIP-368): clients
    /// re-authenticate before it ends, connections that do not are closed; 0 never expires
    /// [default: 0].
    #[arg(long, env = "BROKER_CONNECTIONS_MAX_REAUTH_MS", value_name = "MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// Principals allowed everything whatever the ACLs say, User:NAME[,User:NAME...]
    /// [default: none].
    #[arg(long, env = "BROKER_SUPER_USERS", value_name = "PRINCIPALS")]
    pub super_users: Option<String>,
    /// Allow a request on a resource that no ACL names (Kafka's
    /// allow.everyone.if.no.acl.found) [default: false when a SASL or mTLS listener exists,
    /// else true].
    #[arg(long, env = "BROKER_ALLOW_EVERYONE_IF_NO_ACL", value_name = "BOOL", value_parser = parse_bool, num_args = 0..=1, default_missing_value = "true")]
    pub allow_everyone_if_no_acl: Option<bool>,
    /// Most Kafka connections open at once from one client IP address, over all listeners
    /// (Kafka's max.connections.per.ip); more are closed at once; 0 is unlimited
    /// [default: 0].
    #[arg(long, env = "BROKER_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<u32>,
    /// Most Kafka connections one authenticated principal (SASL user or client
    /// certificate) has open at once; a connection over the limit is closed after it
    /// authenticates; 0 is unlimited [default: 0].
    #[arg(long, env = "BROKER_MAX_CONNECTIONS_PER_PRINCIPAL", value_name = "N")]
    pub max_connections_per_principal: Option<u32>,
    /// Produce quota of every client entity in bytes per second (Kafka's default
    /// producer_byte_rate); the entity is the principal, or the client id of
    /// unauthenticated clients; 0 is unlimited [default: 0].
    #[arg(long, env = "BROKER_PRODUCER_BYTE_RATE", value_name = "BYTES")]
    pub producer_byte_rate: Option<u64>,
    /// Fetch quota of every client entity in bytes per second (Kafka's default
    /// consumer_byte_rate); 0 is unlimited [default: 0].
    #[arg(long, env = "BROKER_CONSUMER_BYTE_RATE", value_name = "BYTES")]
    pub consumer_byte_rate: Option<u64>,
    /// The quota of one entity, ENTITY=KEY=RATE with ENTITY User:NAME or client-id:ID and
    /// KEY producer_byte_rate or consumer_byte_rate (0: unlimited); repeatable
    /// [default: none].
    #[arg(long, env = "BROKER_CLIENT_QUOTA", value_name = "ENTITY=KEY=RATE")]
    pub client_quota: Vec<String>,
    /// JWKS file (JSON Web Key Set) of the public keys OAUTHBEARER tokens must be signed
    /// with; read again when it changes. Turns SASL/OAUTHBEARER on; the principal is
    /// User:<sub> [default: none].
    #[arg(long, env = "BROKER_SASL_OAUTHBEARER_JWKS", value_name = "FILE")]
    pub sasl_oauthbearer_jwks: Option<PathBuf>,
    /// The `iss` OAUTHBEARER tokens must carry [default: any].
    #[arg(long, env = "BROKER_SASL_OAUTHBEARER_ISSUER", value_name = "ISSUER")]
    pub sasl_oauthbearer_issuer: Option<String>,
    /// An `aud` OAUTHBEARER tokens must carry [default: any].
    #[arg(
        long,
        env = "BROKER_SASL_OAUTHBEARER_AUDIENCE",
        value_name = "AUDIENCE"
    )]
    pub sasl_oauthbearer_audience: Option<String>,
}

/// The settings file: the same keys as the flags, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    store: Option<StoreKind>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    pg_schema: Option<String>,
    pg_connect_timeout_secs: Option<u64>,
    kafka_addr: Option<String>,
    advertised_addr: Option<String>,
    http_addr: Option<String>,
    default_partitions: Option<u32>,
    auto_create_topics: Option<bool>,
    default_durability: Option<String>,
    max_frame_bytes: Option<usize>,
    max_replication_factor: Option<u32>,
    sqs_credentials_file: Option<PathBuf>,
    retention_check_ms: Option<u64>,
    cleaner_check_ms: Option<u64>,
    node_id: Option<i32>,
    rack: Option<String>,
    cluster_heartbeat_ms: Option<u64>,
    cluster_lapse_ms: Option<u64>,
    ui: Option<bool>,
    listener: Option<Vec<String>>,
    advertised_listener: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    http_tls: Option<bool>,
    sasl_mechanisms: Option<String>,
    connections_max_reauth_ms: Option<u64>,
    super_users: Option<String>,
    allow_everyone_if_no_acl: Option<bool>,
    max_connections_per_ip: Option<u32>,
    max_connections_per_principal: Option<u32>,
    producer_byte_rate: Option<u64>,
    consumer_byte_rate: Option<u64>,
    client_quota: Option<Vec<String>>,
    sasl_oauthbearer_jwks: Option<PathBuf>,
    sasl_oauthbearer_issuer: Option<String>,
    sasl_oauthbearer_audience: Option<String>,
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreKind,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub pg_schema: String,
    /// How long start-up waits for PostgreSQL, in seconds (0: one attempt).
    pub pg_connect_timeout_secs: u64,
    pub kafka_addr: SocketAddr,
    pub advertised_addr: Option<String>,
    pub http_addr: SocketAddr,
    pub default_partitions: u32,
    pub auto_create_topics: bool,
    pub default_durability: Durability,
    pub max_frame_bytes: usize,
    pub max_replication_factor: u32,
    pub sqs_credentials_file: Option<PathBuf>,
    pub retention_check_ms: u64,
    /// How often compacted topics are cleaned.
    pub cleaner_check_ms: u64,
    /// The node id asked for (`None`: 0, or allocated by a shared store).
    pub node_id: Option<i32>,
    pub rack: Option<String>,
    /// Registration heartbeat interval and lapse of a clustered broker, in ms.
    pub cluster_heartbeat_ms: u64,
    pub cluster_lapse_ms: u64,
    /// Serve the web console (`/ui`, `/api/v1`).
    pub ui: bool,
    /// Listeners, TLS, SASL and ACL settings.
    pub security: SecurityConfig,
}

/// Default largest request frame: 100 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreKind::Log,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            pg_schema: "broker".to_string(),
            pg_connect_timeout_secs: 60,
            kafka_addr: "127.0.0.1:9092".parse().expect("valid address"),
            advertised_addr: None,
            http_addr: "127.0.0.1:9324".parse().expect("valid address"),
            default_partitions: 1,
            auto_create_topics: true,
            default_durability: Durability::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_replication_factor: 3,
            sqs_credentials_file: None,
            retention_check_ms: 60_000,
            cleaner_check_ms: 15_000,
            node_id: None,
            rack: None,
            cluster_heartbeat_ms: 1000,
            cluster_lapse_ms: 6000,
            ui: true,
            security: SecurityConfig::default(),
        }
    }
}

/// Parses the settings file; an error names the file, the line and the key.
fn parse_file(name: &str, text: &str) -> Result<FileConfig, ServerError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let mut at = String::new();
        if let Some(span) = e.span() {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            at.push_str(&format!(" line {line_no}"));
            let line = text.lines().nth(line_no - 1).unwrap_or("");
            if let Some((key, _)) = line.split_once('=') {
                let key = key.trim().trim_matches('"');
                if !key.is_empty() && !key.starts_with('[') {
                    at.push_str(&format!(", key {key}"));
                }
            }
        }
        let message = e.message().trim().replace('\n', " ");
        ServerError::Config(format!("bad settings file {name}{at}: {message}"))
    })
}

/// Resolves a listener address: `IP:PORT` as is, `HOST:PORT` through the system resolver
/// (an IPv4 address is preferred when the name has both).
pub fn resolve_addr(flag: &str, value: &str) -> Result<SocketAddr, ServerError> {
    if let Ok(a) = value.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = |why: String| ServerError::Config(format!("{flag} {value:?}: {why}"));
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(bad(
            "expected HOST:PORT, e.g. localhost:9092 or 0.0.0.0:9092".into(),
        ));
    };
    if host.is_empty() {
        return Err(bad(
            "the host is missing (use 0.0.0.0:PORT for every interface)".into(),
        ));
    }
    if port.parse::<u16>().is_err() {
        return Err(bad(format!("{port:?} is not a port number (0-65535)")));
    }
    let addrs: Vec<SocketAddr> = value
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve host {host:?}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| bad(format!("host {host:?} has no addresses")))
}

impl Config {
    /// Resolves flags (already merged with the environment by clap), the optional file, the
    /// `DATABASE_URL` fallback and the defaults; fails with one clear message.
    pub fn resolve(cli: Cli) -> Result<Config, ServerError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ServerError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                parse_file(&path.display().to_string(), &text)?
            }
            None => FileConfig::default(),
        };
        let file_name = cli
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let d = Config::default();
        let file_durability = match file.default_durability {
            Some(s) => Some(Durability::from_str(&s).map_err(|e| {
                ServerError::Config(format!("{file_name}: key default_durability: {e}"))
            })?),
            None => None,
        };
        // An explicit database URL (flag, BROKER_DATABASE_URL or the file) selects the postgres
        // store; the generic DATABASE_URL only fills in the URL of `--store postgres`.
        let explicit_url = cli.database_url.or(file.database_url);
        let store = match (cli.store.or(file.store), &explicit_url) {
            (Some(StoreKind::Postgres), _) | (None, Some(_)) => StoreKind::Postgres,
            (Some(other), Some(_)) => {
                return Err(ServerError::Config(format!(
                    "--store {other} conflicts with --database-url: a database URL is only \
                     used by --store postgres; drop one of them (each may come from a flag, \
                     BROKER_STORE / BROKER_DATABASE_URL or the settings file)"
                )))
            }
            (Some(kind), None) => kind,
            (None, None) => d.store,
        };
        let database_url = explicit_url.or_else(|| {
            (store == StoreKind::Postgres)
                .then(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
                .flatten()
        });
        let kafka_addr_given = cli.kafka_addr.is_some() || file.kafka_addr.is_some();
        let nonempty = |v: Vec<String>| (!v.is_empty()).then_some(v);
        let security = SecurityConfig::resolve(SecurityArgs {
            listener: nonempty(cli.listener).or(file.listener).unwrap_or_default(),
            advertised_listener: nonempty(cli.advertised_listener)
                .or(file.advertised_listener)
                .unwrap_or_default(),
            kafka_addr_given,
            tls_cert: cli.tls_cert.or(file.tls_cert),
            tls_key: cli.tls_key.or(file.tls_key),
            tls_client_ca: cli.tls_client_ca.or(file.tls_client_ca),
            http_tls: cli.http_tls.or(file.http_tls),
            sasl_mechanisms: cli.sasl_mechanisms.or(file.sasl_mechanisms),
            connections_max_reauth_ms: cli
                .connections_max_reauth_ms
                .or(file.connections_max_reauth_ms),
            super_users: cli.super_users.or(file.super_users),
            allow_everyone_if_no_acl: cli
                .allow_everyone_if_no_acl
                .or(file.allow_everyone_if_no_acl),
            max_connections_per_ip: cli.max_connections_per_ip.or(file.max_connections_per_ip),
            max_connections_per_principal: cli
                .max_connections_per_principal
                .or(file.max_connections_per_principal),
            producer_byte_rate: cli.producer_byte_rate.or(file.producer_byte_rate),
            consumer_byte_rate: cli.consumer_byte_rate.or(file.consumer_byte_rate),
            client_quota: nonempty(cli.client_quota)
                .or(file.client_quota)
                .unwrap_or_default(),
            sasl_oauthbearer_jwks: cli.sasl_oauthbearer_jwks.or(file.sasl_oauthbearer_jwks),
            sasl_oauthbearer_issuer: cli.sasl_oauthbearer_issuer.or(file.sasl_oauthbearer_issuer),
            sasl_oauthbearer_audience: cli
                .sasl_oauthbearer_audience
                .or(file.sasl_oauthbearer_audience),
        })?;
        let kafka_addr = match cli.kafka_addr.or(file.kafka_addr) {
            Some(a) => resolve_addr("--kafka-addr", &a)?,
            None => d.kafka_addr,
        };
        let http_addr = match cli.http_addr.or(file.http_addr) {
            Some(a) => resolve_addr("--http-addr", &a)?,
            None => d.http_addr,
        };
        let config = Config {
            store,
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            database_url,
            pg_schema: cli.pg_schema.or(file.pg_schema).unwrap_or(d.pg_schema),
            pg_connect_timeout_secs: cli
                .pg_connect_timeout_secs
                .or(file.pg_connect_timeout_secs)
                .unwrap_or(d.pg_connect_timeout_secs),
            kafka_addr,
            advertised_addr: cli.advertised_addr.or(file.advertised_addr),
            http_addr,
            default_partitions: cli
                .default_partitions
                .or(file.default_partitions)
                .unwrap_or(d.default_partitions),
            auto_create_topics: cli
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(d.auto_create_topics),
            default_durability: cli
                .default_durability
                .or(file_durability)
                .unwrap_or(d.default_durability),
            max_frame_bytes: cli
                .max_frame_bytes
                .or(file.max_frame_bytes)
                .unwrap_or(d.max_frame_bytes),
            max_replication_factor: cli
                .max_replication_factor
                .or(file.max_replication_factor)
                .unwrap_or(d.max_replication_factor),
            sqs_credentials_file: cli.sqs_credentials_file.or(file.sqs_credentials_file),
            retention_check_ms: cli
                .retention_check_ms
                .or(file.retention_check_ms)
                .unwrap_or(d.retention_check_ms),
            cleaner_check_ms: cli
                .cleaner_check_ms
                .or(file.cleaner_check_ms)
                .unwrap_or(d.cleaner_check_ms),
            node_id: cli.node_id.or(file.node_id),
            rack: cli.rack.or(file.rack),
            cluster_heartbeat_ms: cli
                .cluster_heartbeat_ms
                .or(file.cluster_heartbeat_ms)
                .unwrap_or(d.cluster_heartbeat_ms),
            cluster_lapse_ms: cli
                .cluster_lapse_ms
                .or(file.cluster_lapse_ms)
                .unwrap_or(d.cluster_lapse_ms),
            ui: cli.ui.or(file.ui).unwrap_or(d.ui),
            security,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings that no parser checks.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.default_partitions == 0 {
            return Err(ServerError::Config(
                "--default-partitions must be at least 1".into(),
            ));
        }
        if self.cleaner_check_ms == 0 {
            return Err(ServerError::Config(
                "--cleaner-check-ms must be at least 1".into(),
            ));
        }
        if self.retention_check_ms == 0 {
            return Err(ServerError::Config(
                "--retention-check-ms must be at least 1".into(),
            ));
        }
        if self.max_replication_factor == 0 {
            return Err(ServerError::Config(
                "--max-replication-factor must be at least 1".into(),
            ));
        }
        if let Some(n) = self.node_id.filter(|n| *n < 0) {
            return Err(ServerError::Config(format!(
                "--node-id must be 0 or more, got {n}"
            )));
        }
        if self.cluster_heartbeat_ms == 0 || self.cluster_lapse_ms < 2 * self.cluster_heartbeat_ms {
            return Err(ServerError::Config(format!(
                "--cluster-lapse-ms ({}) must be at least twice --cluster-heartbeat-ms ({}), \
                 which must be at least 1",
                self.cluster_lapse_ms, self.cluster_heartbeat_ms
            )));
        }
        if self.max_frame_bytes < 1024 {
            return Err(ServerError::Config(
                "--max-frame-bytes must be at least 1024".into(),
            ));
        }
        if self.store == StoreKind::Postgres && self.database_url.is_none() {
            return Err(ServerError::Config(
                "--store postgres needs --database-url (or BROKER_DATABASE_URL / DATABASE_URL)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(
            &path,
            "store = \"memory\"\ndefault_partitions = 3\nkafka_addr = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "broker",
            "--config",
            path.to_str().unwrap(),
            "--kafka-addr",
            "127.0.0.1:2",
            "--default-durability",
            "interval:5",
        ])
        .unwrap();
        let c = Config::resolve(cli).unwrap();
        assert_eq!(c.store, StoreKind::Memory);
        assert_eq!(c.default_partitions, 3);
        assert_eq!(c.kafka_addr.port(), 2);
        assert_eq!(c.default_durability, Durability::Interval { ms: 5 });
        assert_eq!(c.http_addr.port(), 9324);
        assert!(c.auto_create_topics);
    }

    fn resolve(args: &[&str]) -> Result<Config, ServerError> {
        let mut all = vec!["broker"];
        all.extend_from_slice(args);
        Config::resolve(Cli::try_parse_from(all).unwrap())
    }

    #[test]
    fn a_database_url_selects_postgres_and_a_conflicting_store_is_refused() {
        let c = resolve(&["--database-url", "postgres://u@h/db"]).unwrap();
        assert_eq!(c.store, StoreKind::Postgres);
        let e = resolve(&["--store", "log", "--database-url", "postgres://u@h/db"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--store log") && e.contains("--database-url"),
            "{e}"
        );
    }

    #[test]
    fn listeners_take_host_names() {
        let c = resolve(&[
            "--kafka-addr",
            "localhost:9999",
            "--http-addr",
            "localhost:0",
        ])
        .unwrap();
        assert!(c.kafka_addr.ip().is_loopback(), "{}", c.kafka_addr);
        assert_eq!(c.kafka_addr.port(), 9999);
        for bad in [
            "localhost",
            "localhost:99999",
            ":9092",
            "no-such-host.invalid:9092",
        ] {
            let e = resolve(&["--kafka-addr", bad]).unwrap_err().to_string();
            assert!(e.contains("--kafka-addr") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn file_errors_name_the_file_line_and_key() {
        let e = parse_file("b.toml", "store = \"log\"\n\nkafka_adr = \"x:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.toml line 3, key kafka_adr") && e.contains("unknown field"),
            "{e}"
        );
        let e = parse_file("b.toml", "default_partitions = \"two\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.toml line 1, key default_partitions"), "{e}");
    }

    /// Every key `FileConfig` accepts, read from serde's own list in an unknown-key error.
    fn file_keys() -> Vec<String> {
        let e = toml::from_str::<FileConfig>("zz_not_a_key = 1\n").unwrap_err();
        let msg = e.message().to_string();
        let list = msg.split("expected one of").nth(1).expect(&msg);
        list.split(',')
            .map(|k| k.trim().trim_matches('`').to_string())
            .filter(|k| !k.is_empty())
            .collect()
    }

    const EXAMPLE: &str = include_str!("../../broker.example.toml");

    #[test]
    fn the_example_file_parses_to_the_defaults_and_covers_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let c = resolve(&["--config", path.to_str().unwrap()]).unwrap();
        let d = Config::default();
        assert_eq!(
            format!("{c:?}"),
            format!("{d:?}"),
            "the example shows the defaults"
        );

        // With the commented-out keys enabled, every key of the file is present and parses.
        let enabled: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.contains(' ') || is_key_line(rest) => {
                    rest.to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        parse_file("example", &enabled).unwrap();
        let table: toml::Table = enabled.parse().unwrap();
        let mut present: Vec<String> = table.keys().cloned().collect();
        let mut wanted = file_keys();
        present.sort();
        wanted.sort();
        assert_eq!(present, wanted, "broker.example.toml must show every key");
        // And every flag but --config is a key of the file.
        let flags: Vec<String> = <Cli as clap::CommandFactory>::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| l.replace('-', "_")))
            .filter(|l| l != "config" && l != "help" && l != "version")
            .collect();
        for f in flags {
            assert!(wanted.contains(&f), "--{f} is not a settings-file key");
        }
    }

    fn is_key_line(s: &str) -> bool {
        s.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }

    #[test]
    fn help_gives_every_option_a_default() {
        let cmd = <Cli as clap::CommandFactory>::command();
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                help.contains("[default:"),
                "--{long} has no default in its help: {help}"
            );
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["broker", "--store", "disk"]).is_err());
        assert!(Cli::try_parse_from(["broker", "--auto-create-topics", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["broker", "--default-durability", "sometimes"]).is_err());
        let cli = Cli::try_parse_from(["broker", "--default-partitions", "0"]).unwrap();
        assert!(Config::resolve(cli).is_err());
    }
}
