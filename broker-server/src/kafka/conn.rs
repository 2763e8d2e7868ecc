//! What a connection knows about itself: the listener it came in on (its security protocol
//! and advertised address) and the principal of its client. Handlers read it through a
//! task-local ([`current`]), so that request handlers need no extra parameters.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::KafkaConfig;
use crate::security::listener::SecurityProtocol;
use crate::security::tls::{ClientAuth, TlsState};

/// The principal of clients that did not authenticate (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// One bound Kafka listener as its connections see it.
#[derive(Debug)]
pub struct ListenerInfo {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub advertised_host: String,
    pub advertised_port: i32,
    /// TLS settings and whether client certificates are asked for (SSL and SASL_SSL).
    pub tls: Option<(Arc<TlsState>, ClientAuth)>,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct ConnView {
    pub listener: Arc<ListenerInfo>,
    /// `User:NAME`; [`ANONYMOUS`] until (or without) authentication.
    pub principal: Arc<str>,
    /// The client's IP address as text (ACLs' host).
    pub host: Arc<str>,
}

tokio::task_local! {
    static CONN: ConnView;
}

/// Runs `fut` (the answer to one request) with `view` visible to [`current`].
pub fn scope<F: Future>(view: ConnView, fut: F) -> impl Future<Output = F::Output> {
    CONN.scope(view, fut)
}

/// The connection the current request came on; `None` for in-process calls (the console,
/// trusted: see console/access.rs) and tests.
pub fn current() -> Option<ConnView> {
    CONN.try_with(Clone::clone).ok()
}

/// The host and port clients of the current connection's listener are told.
pub fn advertised(config: &KafkaConfig) -> (String, i32) {
    CONN.try_with(|c| {
        (
            c.listener.advertised_host.clone(),
            c.listener.advertised_port,
        )
    })
    .unwrap_or_else(|_| (config.advertised_host.clone(), config.advertised_port))
}

/// Peer address as ACL host text.
pub fn host_of(peer: Option<SocketAddr>) -> Arc<str> {
    peer.map(|p| p.ip().to_string())
        .unwrap_or_else(|| "*".to_string())
        .into()
}

/// A stream split into halves the connection loop reads and writes independently; plain TCP
/// keeps its lock-free owned halves.
pub trait SplitStream {
    type R: AsyncRead + Unpin + Send + 'static;
    type W: AsyncWrite + Unpin + Send + 'static;
    fn split_stream(self) -> (Self::R, Self::W);
}

impl SplitStream for TcpStream {
    type R = tokio::net::tcp::OwnedReadHalf;
    type W = tokio::net::tcp::OwnedWriteHalf;
    fn split_stream(self) -> (Self::R, Self::W) {
        self.into_split()
    }
}

impl SplitStream for tokio_rustls::server::TlsStream<TcpStream> {
    type R = tokio::io::ReadHalf<Self>;
    type W = tokio::io::WriteHalf<Self>;
    fn split_stream(self) -> (Self::R, Self::W) {
        tokio::io::split(self)
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
pub struct PerIp(parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>);

/// One counted connection; uncounted when dropped.
pub struct IpSlot {
    map: Option<Arc<PerIp>>,
    ip: std::net::IpAddr,
}

impl PerIp {
    /// Counts a connection from `ip`; `None` when `limit` (0: none) is reached.
    pub fn enter(self: &Arc<Self>, ip: std::net::IpAddr, limit: u32) -> Option<IpSlot> {
        if limit == 0 {
            return Some(IpSlot { map: None, ip });
        }
        let mut m = self.0.lock();
        let n = m.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            map: Some(self.clone()),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(map) = &self.map {
            let mut m = map.0.lock();
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}
