//! The HTTP listener over TLS (`--http-tls`): handshakes run in their own tasks (a slow client
//! holds up no one) and finished connections are handed to axum.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::tls::{ClientAuth, TlsState};
use crate::metrics::{ConnectionGuard, Metrics, Protocol};

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP stream that counts its bytes as HTTP traffic and its life as an open connection.
pub struct Counted {
    inner: TcpStream,
    metrics: Arc<Metrics>,
    _guard: ConnectionGuard,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.metrics.bytes_in(Protocol::Http, n as u64);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.metrics.bytes_out(Protocol::Http, *n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, completes their TLS handshakes, and yields the finished ones.
pub struct TlsHttpListener {
    rx: mpsc::Receiver<(TlsStream<Counted>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsHttpListener {
    /// Starts accepting on `listener` until `stop` turns true.
    pub fn new(
        listener: TcpListener,
        tls: Arc<TlsState>,
        metrics: Arc<Metrics>,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<TlsHttpListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = crate::kafka::stopped(&mut stop) => return,
                    _ = tx.closed() => return,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            debug!("http accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let acceptor = tls.acceptor(ClientAuth::None);
                let counted = Counted {
                    inner: stream,
                    _guard: metrics.connection_opened(Protocol::Http),
                    metrics: metrics.clone(),
                };
                let tx = tx.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(counted)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, "https handshake failed: {e}");
                            metrics.security.tls_failed();
                        }
                        Err(_) => {
                            debug!(%peer, "https handshake timed out");
                            metrics.security.tls_failed();
                        }
                    }
                });
            }
        });
        Ok(TlsHttpListener { rx, local })
    }
}

impl axum::serve::Listener for TlsHttpListener {
    type Io = TlsStream<Counted>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop stopped (shutdown): axum's graceful shutdown ends the serve.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
