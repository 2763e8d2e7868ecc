//! Security settings and their building blocks: listeners with their security protocols,
//! TLS, (later steps) SASL credentials and ACLs.

pub mod acl;
pub mod http_tls;
pub mod listener;
pub mod metrics;
pub mod oauth;
pub mod quota;
pub mod scram;
pub mod sqs_authz;
pub mod tls;
pub mod users_cli;

use std::path::PathBuf;

use crate::config::resolve_addr;
use crate::ServerError;
use listener::{parse_advertised, parse_listener, ListenerSpec, SecurityProtocol};
use tls::TlsFiles;

/// The resolved security settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Listeners of `--listener`, in the order given.
    pub listeners: Vec<ListenerSpec>,
    /// True when `--listener` was given without `--kafka-addr`: the listeners replace the
    /// default PLAINTEXT listener of `kafka_addr`.
    pub listeners_replace_kafka_addr: bool,
    /// TLS files, needed by SSL and SASL_SSL listeners and `--http-tls`.
    pub tls: Option<TlsFiles>,
    /// Serve the HTTP listener over TLS.
    pub http_tls: bool,
    /// `--sasl-mechanisms`; `None`: all of PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
    pub sasl_mechanisms_given: Option<Vec<String>>,
    /// KIP-368 `connections.max.reauth.ms` (0: sessions never expire).
    pub connections_max_reauth_ms: u64,
    /// `--super-users`: principals the ACLs do not restrict.
    pub super_users: Vec<String>,
    /// `--allow-everyone-if-no-acl` as given.
    pub allow_everyone_if_no_acl_given: Option<bool>,
    /// `--max-connections-per-ip` (0: unlimited).
    pub max_connections_per_ip: u32,
    /// `--max-connections-per-principal` (0: unlimited).
    pub max_connections_per_principal: u32,
    /// Produce and fetch byte-rate quotas.
    pub quotas: quota::QuotaSettings,
    /// SASL/OAUTHBEARER token checks (`--sasl-oauthbearer-jwks`).
    pub oauthbearer: Option<oauth::OAuthSettings>,
}

/// The raw security settings of the flags and the file (flags already preferred).
#[derive(Debug, Default)]
pub struct SecurityArgs {
    pub listener: Vec<String>,
    pub advertised_listener: Vec<String>,
    pub kafka_addr_given: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub http_tls: Option<bool>,
    pub sasl_mechanisms: Option<String>,
    pub connections_max_reauth_ms: Option<u64>,
    pub super_users: Option<String>,
    pub allow_everyone_if_no_acl: Option<bool>,
    pub max_connections_per_ip: Option<u32>,
    pub max_connections_per_principal: Option<u32>,
    pub producer_byte_rate: Option<u64>,
    pub consumer_byte_rate: Option<u64>,
    pub client_quota: Vec<String>,
    pub sasl_oauthbearer_jwks: Option<PathBuf>,
    pub sasl_oauthbearer_issuer: Option<String>,
    pub sasl_oauthbearer_audience: Option<String>,
}

impl SecurityConfig {
    /// Checks and resolves the raw settings; errors name the flag.
    pub fn resolve(args: SecurityArgs) -> Result<SecurityConfig, ServerError> {
        let cfg = |e: String| ServerError::Config(e);
        let mut listeners: Vec<ListenerSpec> = Vec::new();
        for value in &args.listener {
            let (name, protocol, hostport) = parse_listener(value).map_err(cfg)?;
            if listeners.iter().any(|l| l.name == name) {
                return Err(cfg(format!(
                    "--listener: the name {name} is used twice; give each listener its own NAME="
                )));
            }
            let addr = resolve_addr("--listener", &hostport)?;
            listeners.push(ListenerSpec {
                name,
                protocol,
                addr,
                advertised: None,
            });
        }
        if args.kafka_addr_given && listeners.iter().any(|l| l.name == "PLAINTEXT") {
            return Err(cfg(
                "--kafka-addr is the listener named PLAINTEXT; a --listener of that name conflicts with it (rename one)".into(),
            ));
        }
        for value in &args.advertised_listener {
            let (name, hostport) = parse_advertised(value).map_err(cfg)?;
            let Some(l) = listeners.iter_mut().find(|l| l.name == name) else {
                return Err(cfg(format!(
                    "--advertised-listener {value:?}: no --listener is named {name}"
                )));
            };
            l.advertised = Some(hostport);
        }
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: args.tls_client_ca,
            }),
            (None, None) => {
                if args.tls_client_ca.is_some() {
                    return Err(cfg(
                        "--tls-client-ca needs --tls-cert and --tls-key (the server's own certificate)".into(),
                    ));
                }
                None
            }
            (Some(_), None) => return Err(cfg("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(cfg("--tls-key needs --tls-cert".into())),
        };
        let http_tls = args.http_tls.unwrap_or(false);
        if tls.is_none() {
            if let Some(l) = listeners.iter().find(|l| l.protocol.is_tls()) {
                return Err(cfg(format!(
                    "--listener {} is {}: it needs --tls-cert and --tls-key",
                    l.name, l.protocol
                )));
            }
            if http_tls {
                return Err(cfg("--http-tls needs --tls-cert and --tls-key".into()));
            }
        }
        let sasl_mechanisms_given = match args.sasl_mechanisms {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    let m = m.to_ascii_uppercase();
                    if !crate::kafka::SASL_MECHANISMS.contains(&m.as_str()) {
                        return Err(cfg(format!(
                            "--sasl-mechanisms: unknown mechanism {m:?} (use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
                        )));
                    }
                    out.push(m);
                }
                if out.is_empty() {
                    return Err(cfg("--sasl-mechanisms names no mechanism".into()));
                }
                Some(out)
            }
        };
        let oauthbearer = match args.sasl_oauthbearer_jwks {
            Some(jwks) => Some(oauth::OAuthSettings {
                jwks,
                issuer: args.sasl_oauthbearer_issuer.filter(|s| !s.is_empty()),
                audience: args.sasl_oauthbearer_audience.filter(|s| !s.is_empty()),
            }),
            None => {
                if args.sasl_oauthbearer_issuer.is_some()
                    || args.sasl_oauthbearer_audience.is_some()
                {
                    return Err(cfg(
                        "--sasl-oauthbearer-issuer and --sasl-oauthbearer-audience need --sasl-oauthbearer-jwks".into(),
                    ));
                }
                None
            }
        };
        if oauthbearer.is_none()
            && sasl_mechanisms_given
                .as_ref()
                .is_some_and(|m| m.iter().any(|m| m == "OAUTHBEARER"))
        {
            return Err(cfg(
                "--sasl-mechanisms OAUTHBEARER needs --sasl-oauthbearer-jwks (the issuer's public keys)".into(),
            ));
        }
        let mut super_users = Vec::new();
        for p in args
            .super_users
            .as_deref()
            .unwrap_or("")
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if !p.starts_with("User:") || p.len() == 5 {
                return Err(cfg(format!(
                    "--super-users: {p:?} is not a principal (write User:NAME)"
                )));
            }
            super_users.push(p.to_string());
        }
        let mut quotas = quota::QuotaSettings {
            producer_default: args.producer_byte_rate.unwrap_or(0),
            consumer_default: args.consumer_byte_rate.unwrap_or(0),
            ..Default::default()
        };
        for value in &args.client_quota {
            quotas.add_override(value).map_err(cfg)?;
        }
        Ok(SecurityConfig {
            oauthbearer,
            max_connections_per_ip: args.max_connections_per_ip.unwrap_or(0),
            max_connections_per_principal: args.max_connections_per_principal.unwrap_or(0),
            quotas,
            super_users,
            allow_everyone_if_no_acl_given: args.allow_everyone_if_no_acl,
            sasl_mechanisms_given,
            connections_max_reauth_ms: args.connections_max_reauth_ms.unwrap_or(0),
            listeners_replace_kafka_addr: !listeners.is_empty() && !args.kafka_addr_given,
            listeners,
            tls,
            http_tls,
        })
    }

    /// The SASL mechanisms offered: those given, else PLAIN and both SCRAMs, and
    /// OAUTHBEARER when a JWKS file is set.
    pub fn sasl_mechanisms(&self) -> Vec<String> {
        self.sasl_mechanisms_given.clone().unwrap_or_else(|| {
            crate::kafka::SASL_MECHANISMS
                .iter()
                .filter(|m| **m != "OAUTHBEARER" || self.oauthbearer.is_some())
                .map(|m| m.to_string())
                .collect()
        })
    }

    /// The authoriser's settings: on once a listener authenticates clients (SASL, or SSL
    /// with a client CA) or `--super-users` / `--allow-everyone-if-no-acl` is given.
    pub fn authz_settings(&self, tls_client_ca: bool) -> acl::AuthzSettings {
        let authenticated = self.listeners.iter().any(|l| {
            l.protocol.is_sasl() || (l.protocol == SecurityProtocol::Ssl && tls_client_ca)
        });
        acl::AuthzSettings {
            enabled: authenticated
                || !self.super_users.is_empty()
                || self.allow_everyone_if_no_acl_given.is_some(),
            super_users: self.super_users.clone(),
            allow_if_no_acl: self
                .allow_everyone_if_no_acl_given
                .unwrap_or(!authenticated),
        }
    }

    /// Every Kafka listener: the PLAINTEXT listener of `kafka_addr` (unless `--listener`
    /// replaces it) and then those of `--listener`.
    pub fn kafka_listeners(
        &self,
        kafka_addr: std::net::SocketAddr,
        advertised_addr: Option<&str>,
    ) -> Vec<ListenerSpec> {
        let mut all = Vec::new();
        if !self.listeners_replace_kafka_addr {
            all.push(ListenerSpec {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                addr: kafka_addr,
                advertised: advertised_addr.map(str::to_string),
            });
        }
        all.extend(self.listeners.iter().cloned());
        all
    }
}
