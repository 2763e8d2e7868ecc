//! Kafka listeners as Kafka names them: `NAME=PROTOCOL://HOST:PORT` with an optional
//! advertised `NAME=HOST:PORT` each (`listeners` / `advertised.listeners`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No encryption, no authentication: every client is `User:ANONYMOUS`.
    Plaintext,
    /// TLS; the principal is the client certificate's subject when one is required.
    Ssl,
    /// SASL authentication without encryption.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections start with a TLS handshake.
    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before any other request.
    pub fn is_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Kafka's name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!(
                "unknown security protocol {s:?}: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )),
        }
    }
}

/// One Kafka listener of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The listener's name (`[A-Za-z0-9_-]`, unique).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where it binds.
    pub addr: SocketAddr,
    /// `HOST:PORT` clients connected to it are told in Metadata; `None`: the bound address.
    pub advertised: Option<String>,
}

/// A `--listener` value split into its name, protocol and `HOST:PORT` (not yet resolved).
/// The name may be left out (`SASL_SSL://0.0.0.0:9093`): it is then the protocol's name.
pub fn parse_listener(value: &str) -> Result<(String, SecurityProtocol, String), String> {
    let bad = |why: &str| {
        format!("--listener {value:?}: {why} (expected NAME=PROTOCOL://HOST:PORT, e.g. EXTERNAL=SASL_SSL://0.0.0.0:9093)")
    };
    let (name, rest) = match value.split_once('=') {
        Some((n, r)) if !n.contains("://") => (Some(n.trim()), r.trim()),
        _ => (None, value.trim()),
    };
    let (proto, hostport) = rest
        .split_once("://")
        .ok_or_else(|| bad("the PROTOCOL:// part is missing"))?;
    let protocol: SecurityProtocol = proto.parse().map_err(|e: String| bad(&e))?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| protocol.to_string());
    validate_name(&name).map_err(|e| bad(&e))?;
    if hostport.is_empty() {
        return Err(bad("HOST:PORT is missing"));
    }
    Ok((name, protocol, hostport.to_string()))
}

/// A `--advertised-listener NAME=HOST:PORT` value.
pub fn parse_advertised(value: &str) -> Result<(String, String), String> {
    let bad = |why: &str| {
        format!("--advertised-listener {value:?}: {why} (expected NAME=HOST:PORT, e.g. EXTERNAL=broker.example.com:9093)")
    };
    let (name, hostport) = value
        .split_once('=')
        .ok_or_else(|| bad("the NAME= part is missing"))?;
    let name = name.trim();
    validate_name(name).map_err(|e| bad(&e))?;
    let hostport = hostport.trim();
    let hostport = hostport
        .split_once("://")
        .map(|(_, hp)| hp)
        .unwrap_or(hostport);
    split_host_port(hostport).map_err(|e| bad(&e))?;
    Ok((name.to_string(), hostport.to_string()))
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "listener name {name:?} must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"
        ));
    }
    Ok(())
}

/// Splits `HOST:PORT` (`[v6]:PORT` too) into a non-empty host and a port.
pub fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("{hostport:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{hostport:?} has no host"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_with_and_without_names() {
        let (n, p, a) = parse_listener("EXTERNAL=SASL_SSL://0.0.0.0:9093").unwrap();
        assert_eq!(
            (n.as_str(), p, a.as_str()),
            ("EXTERNAL", SecurityProtocol::SaslSsl, "0.0.0.0:9093")
        );
        let (n, p, _) = parse_listener("ssl://localhost:9094").unwrap();
        assert_eq!((n.as_str(), p), ("SSL", SecurityProtocol::Ssl));
        for bad in [
            "X=TLS://h:1",
            "X=h:1",
            "X=SSL://",
            "bad name=SSL://h:1",
            "=SSL://h:1",
        ] {
            let e = parse_listener(bad).unwrap_err();
            assert!(e.contains("--listener"), "{e}");
        }
    }

    #[test]
    fn advertised_listeners_parse() {
        assert_eq!(
            parse_advertised("EXTERNAL=broker.example.com:9093").unwrap(),
            ("EXTERNAL".into(), "broker.example.com:9093".into())
        );
        assert!(parse_advertised("EXTERNAL=broker").is_err());
        assert!(parse_advertised("broker:9093").is_err());
    }
}
