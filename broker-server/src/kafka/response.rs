//! Response frames as chunks: the protocol fields are encoded into a small buffer, and the
//! record sets of a fetch (the store's bytes: slices of a segment's memory mapping, or a
//! database row) are put in as they are, without copying them into the frame.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Record sets smaller than this are copied into the frame (a chunk of their own would cost
/// more than the copy).
const SPLICE_MIN: usize = 4096;

/// One response frame (size prefix included), in order, in one or more chunks.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    pub chunks: Vec<Bytes>,
}

impl ResponseFrame {
    /// A frame in one buffer.
    pub fn whole(b: BytesMut) -> ResponseFrame {
        ResponseFrame {
            chunks: vec![b.freeze()],
        }
    }

    /// Bytes of the frame.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// True for a frame without bytes (never produced by the encoder).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame in one buffer (a copy when it has several chunks).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [one] => one.clone(),
            many => many.concat().into(),
        }
    }
}

/// A [`ByteBufMut`] that keeps the bytes written into it in a buffer, except a slice of one of
/// `shared` (by address), which it keeps as a chunk of its own.
struct ChunkedBuf {
    cur: BytesMut,
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    done: usize,
    shared: Vec<Bytes>,
}

impl ChunkedBuf {
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.done += self.cur.len();
            self.chunks.push(self.cur.split().freeze());
        }
    }

    /// The shared buffer `src` lies in, as a slice of it.
    fn shared_slice(&self, src: &[u8]) -> Option<Bytes> {
        let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
        self.shared.iter().find_map(|b| {
            let (bs, be) = (b.as_ptr() as usize, b.as_ptr() as usize + b.len());
            (start >= bs && end <= be).then(|| b.slice(start - bs..end - bs))
        })
    }
}

// SAFETY: every method forwards to the inner `BytesMut`, whose contract it keeps.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is `cur`'s.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SPLICE_MIN {
            if let Some(b) = self.shared_slice(src) {
                self.flush();
                self.done += b.len();
                self.chunks.push(b);
                return;
            }
        }
        self.cur.extend_from_slice(src);
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.done + self.cur.len()
    }

    fn seek(&mut self, offset: usize) {
        // Only within the current buffer (the message encoders never seek; this keeps the
        // trait's contract for what they could do).
        let at = offset.saturating_sub(self.done);
        if at > self.cur.len() {
            self.cur.resize(at, 0);
        } else {
            self.cur.truncate(at);
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let (s, e) = (
            r.start.saturating_sub(self.done),
            r.end.saturating_sub(self.done),
        );
        &mut self.cur[s..e]
    }
}

/// Encodes a response frame (size prefix, header, body) whose large `shared` byte strings
/// (record sets) stay chunks of their own.
pub fn encode_chunked<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
    shared: Vec<Bytes>,
) -> anyhow::Result<ResponseFrame> {
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let small = size - shared.iter().map(Bytes::len).sum::<usize>().min(size);
    let mut buf = ChunkedBuf {
        cur: BytesMut::with_capacity(4 + small + 64),
        chunks: Vec::new(),
        done: 0,
        shared,
    };
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    buf.flush();
    anyhow::ensure!(
        buf.done == 4 + size,
        "encoded {} bytes for a frame of {}",
        buf.done,
        4 + size
    );
    Ok(ResponseFrame { chunks: buf.chunks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;

    #[test]
    fn record_sets_stay_shared_and_the_frame_is_the_plain_encoding() {
        let big = Bytes::from(vec![7u8; 100_000]);
        let small = Bytes::from(vec![9u8; 100]);
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_partitions(vec![
                PartitionData::default().with_records(Some(big.slice(10..90_000))),
                PartitionData::default().with_records(Some(small.clone())),
            ])]);
        for version in [4, 11, 12, 16] {
            let frame = encode_chunked(
                ApiKey::Fetch,
                version,
                7,
                &resp,
                vec![big.clone(), small.clone()],
            )
            .unwrap();
            let plain =
                super::super::frame::encode_response(ApiKey::Fetch, version, 7, &resp).unwrap();
            assert_eq!(frame.to_bytes(), plain.freeze(), "v{version}");
            // The large record set is the store's buffer itself, not a copy.
            assert!(frame
                .chunks
                .iter()
                .any(|c| c.len() == 89_990 && c.as_ptr() == big[10..].as_ptr()));
        }
    }
}
