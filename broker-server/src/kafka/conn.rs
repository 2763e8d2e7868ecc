//! What a connection knows about itself: the listener it came in on (its security protocol
//! and advertised address) and the principal of its client. Handlers read it through a
//! task-local ([`current`]), so that request handlers need no extra parameters.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Quota throttle time (ms) the connection must stay muted for after the current
    /// response (shared by the clones of one connection's view).
    pub throttle: Arc<AtomicU32>,
}

impl ConnView {
    /// A connection's view before authentication.
    pub fn new(listener: Arc<ListenerInfo>, peer: Option<SocketAddr>) -> ConnView {
        ConnView {
            principal: ANONYMOUS.into(),
            host: host_of(peer),
            listener,
            throttle: Arc::default(),
        }
    }

    /// Asks for the connection to be muted for `ms` after the current response (the
    /// longest of several asks wins).
    pub fn throttle_after_response(&self, ms: u32) {
        self.throttle.fetch_max(ms, Ordering::Relaxed);
    }

    /// Takes the mute time asked for by the last response.
    pub fn take_throttle(&self) -> u32 {
        self.throttle.swap(0, Ordering::Relaxed)
    }
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

/// Open connections per key (client address, or principal).
#[derive(Debug)]
pub struct ConnCount<K: std::hash::Hash + Eq + Clone>(parking_lot::Mutex<HashMap<K, u32>>);

impl<K: std::hash::Hash + Eq + Clone> Default for ConnCount<K> {
    fn default() -> Self {
        ConnCount(parking_lot::Mutex::new(HashMap::new()))
    }
}

/// Open connections per client address.
pub type PerIp = ConnCount<std::net::IpAddr>;
/// Open connections per authenticated principal.
pub type PerPrincipal = ConnCount<Arc<str>>;

/// One counted connection; uncounted when dropped.
pub struct ConnSlot<K: std::hash::Hash + Eq + Clone> {
    map: Option<Arc<ConnCount<K>>>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> ConnCount<K> {
    /// Counts a connection of `key`; `None` when `limit` (0: none) is reached.
    pub fn enter(self: &Arc<Self>, key: K, limit: u32) -> Option<ConnSlot<K>> {
        if limit == 0 {
            return Some(ConnSlot { map: None, key });
        }
        let mut m = self.0.lock();
        let n = m.entry(key.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            map: Some(self.clone()),
            key,
        })
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for ConnSlot<K> {
    fn drop(&mut self) {
        if let Some(map) = &self.map {
            let mut m = map.0.lock();
            if let Some(n) = m.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        }
    }
}
