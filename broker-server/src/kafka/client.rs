//! A minimal Kafka protocol client on the `kafka-protocol` codecs, for tests and tools:
//! one connection, requests encoded with their header, responses read in order.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Any byte stream a client can talk over (plain TCP, TLS).
pub trait ClientStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientStream for T {}

/// A raw connection to a Kafka broker.
pub struct RawClient {
    stream: Box<dyn ClientStream>,
    next_correlation: i32,
}

impl RawClient {
    /// Connects to `addr`.
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<RawClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient::over(stream))
    }

    /// A client over an established stream (a TLS session, say).
    pub fn over(stream: impl ClientStream + 'static) -> RawClient {
        RawClient {
            stream: Box::new(stream),
            next_correlation: 1,
        }
    }

    /// Encodes a request frame (size prefix, header, body); returns it and its correlation id.
    pub fn frame<T: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &T,
    ) -> anyhow::Result<(BytesMut, i32)> {
        let cid = self.next_correlation;
        self.next_correlation += 1;
        let body_buf = encode_request(api, version, cid, "raw-client", body)?;
        let mut out = BytesMut::with_capacity(4 + body_buf.len());
        out.extend_from_slice(&(body_buf.len() as i32).to_be_bytes());
        out.extend_from_slice(&body_buf);
        Ok((out, cid))
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one response frame (without its size prefix); `None` when the broker closed the
    /// connection.
    pub async fn read_frame(&mut self) -> std::io::Result<Option<Bytes>> {
        let len = match self.stream.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        };
        if !(0..=256 << 20).contains(&len) {
            return Err(std::io::Error::other(format!("bad response size {len}")));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await?;
        Ok(Some(Bytes::from(buf)))
    }

    /// Sends one request and decodes its response; fails on a closed connection, a wrong
    /// correlation id or bytes left over.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let (frame, cid) = self.frame(api, version, req)?;
        self.send_raw(&frame).await?;
        let resp = tokio::time::timeout(Duration::from_secs(60), self.read_frame())
            .await
            .map_err(|_| anyhow::anyhow!("no response to {api:?} within 60 s"))??
            .ok_or_else(|| anyhow::anyhow!("connection closed instead of a {api:?} response"))?;
        decode_response(api, version, cid, resp)
    }
}

/// Encodes a request (header and body, without the size prefix) as the broker's
/// `handle_frame` takes it.
pub fn encode_request<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
    body: &T,
) -> anyhow::Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut out = BytesMut::new();
    header.encode(&mut out, api.request_header_version(version))?;
    body.encode(&mut out, version)?;
    Ok(out)
}

/// Decodes a response frame of `api` v`version`, checking the correlation id and that every
/// byte was used.
pub fn decode_response<Resp: Decodable>(
    api: ApiKey,
    version: i16,
    cid: i32,
    mut frame: Bytes,
) -> anyhow::Result<Resp> {
    let hv = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let header = ResponseHeader::decode(&mut frame, hv)?;
    anyhow::ensure!(
        header.correlation_id == cid,
        "correlation id {} instead of {cid}",
        header.correlation_id
    );
    let resp = Resp::decode(&mut frame, version)?;
    anyhow::ensure!(
        frame.is_empty(),
        "{} bytes left after the {api:?} response",
        frame.len()
    );
    Ok(resp)
}
