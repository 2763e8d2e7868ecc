//! How `broker admin`'s Kafka requests reach a broker: over TCP to `--bootstrap`, or, for the
//! web console inside the broker, straight into its own request handler. Both take the same
//! encoded requests and decode the same responses, so the CLI and the console share every
//! admin function and its checks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::kafka::client::{decode_response, encode_request, RawClient};
use crate::kafka::KafkaServer;

/// Client id the console's in-process requests carry.
pub const CONSOLE_CLIENT_ID: &str = "broker-console";

/// Where requests go.
pub enum Transport {
    /// A TCP connection to a broker.
    Tcp(RawClient),
    /// This process's own broker: each request is handed to its frame handler.
    Local {
        server: Arc<KafkaServer>,
        next_correlation: i32,
    },
}

impl Transport {
    /// Connects to `addr` within `timeout`, with TLS and SASL as `security` says; the error
    /// names the address and why.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        security: &super::secure::ClientSecurity,
    ) -> anyhow::Result<Transport> {
        match tokio::time::timeout(timeout, security.connect(addr)).await {
            Ok(Ok(c)) => Ok(Transport::Tcp(c)),
            Ok(Err(e)) => bail!("cannot connect to the broker at {addr}: {e:#}"),
            Err(_) => bail!(
                "cannot connect to the broker at {addr}: no answer within {} s",
                timeout.as_secs()
            ),
        }
    }

    /// Requests to `server` in this process.
    pub fn local(server: Arc<KafkaServer>) -> Transport {
        Transport::Local {
            server,
            next_correlation: 1,
        }
    }

    /// Sends one request and decodes its response. An in-process request that gets no
    /// response (which only acks=0 produce does) is an error.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        match self {
            Transport::Tcp(c) => c.call(api, version, req).await,
            Transport::Local {
                server,
                next_correlation,
            } => {
                let cid = *next_correlation;
                *next_correlation = next_correlation.wrapping_add(1);
                let frame = encode_request(api, version, cid, CONSOLE_CLIENT_ID, req)?;
                let resp = server
                    .handle_frame(frame.freeze(), None)
                    .await
                    .with_context(|| format!("{api:?} request"))?
                    .with_context(|| format!("{api:?} request got no response"))?;
                // The handler's frame starts with its 4-byte size.
                let resp: Bytes = resp.to_bytes();
                if resp.len() < 4 {
                    bail!("{api:?} response of {} bytes has no size", resp.len());
                }
                decode_response(api, version, cid, resp.slice(4..))
            }
        }
    }
}
