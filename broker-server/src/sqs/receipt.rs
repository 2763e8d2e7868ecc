//! Receipt handles: an opaque encoding of the lease token of one receive.

use base64::Engine;
use broker_api::LeaseToken;

use super::error::{SqsError, SqsResult};

const VERSION: u8 = 1;
const LEN: usize = 1 + 4 + 4 + 8 + 8;

fn topic_tag(topic: &str) -> [u8; 4] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(topic.as_bytes());
    [d[0], d[1], d[2], d[3]]
}

/// The receipt handle of `token` on queue `topic`.
pub fn encode(topic: &str, token: &LeaseToken) -> String {
    let mut b = Vec::with_capacity(LEN);
    b.push(VERSION);
    b.extend_from_slice(&topic_tag(topic));
    b.extend_from_slice(&token.partition.to_be_bytes());
    b.extend_from_slice(&token.offset.to_be_bytes());
    b.extend_from_slice(&token.nonce.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The lease token a receipt handle of queue `topic` carries; `ReceiptHandleIsInvalid` when
/// the handle is malformed or belongs to another queue.
pub fn decode(topic: &str, handle: &str) -> SqsResult<LeaseToken> {
    let invalid = || SqsError::ReceiptHandleIsInvalid(truncate(handle));
    if handle.len() > 64 {
        return Err(invalid());
    }
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle)
        .map_err(|_| invalid())?;
    if b.len() != LEN || b[0] != VERSION || b[1..5] != topic_tag(topic) {
        return Err(invalid());
    }
    let partition = i32::from_be_bytes(b[5..9].try_into().map_err(|_| invalid())?);
    let offset = i64::from_be_bytes(b[9..17].try_into().map_err(|_| invalid())?);
    let nonce = u64::from_be_bytes(b[17..25].try_into().map_err(|_| invalid())?);
    if partition < 0 || offset < 0 {
        return Err(invalid());
    }
    Ok(LeaseToken {
        partition,
        offset,
        nonce,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = LeaseToken {
            partition: 3,
            offset: 42,
            nonce: 7,
        };
        let h = encode("q", &t);
        assert_eq!(decode("q", &h).unwrap(), t);
        assert!(decode("other", &h).is_err());
        assert!(decode("q", "garbage!").is_err());
        assert!(decode("q", "").is_err());
        assert!(decode("q", &h[..h.len() - 2]).is_err());
    }
}
