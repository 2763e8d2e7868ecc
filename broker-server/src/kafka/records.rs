//! Kafka record batches (format v2, "magic 2"): decoding produced batches into records and
//! encoding stored records into one batch for a fetch.
//!
//! Written here rather than taken from the codec crate because Kafka keeps every record
//! header, duplicates included and in order, and the crate's record type keeps headers in a
//! map. Decoding never panics and never allocates more than the bytes it was given allow.

use broker_api::{Header, ProducerBatch, Record, StoredRecord};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

/// Bytes of a v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the CRC within the batch; the CRC covers everything after it.
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
/// Attribute bits.
const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
/// Most records one batch may declare.
const MAX_RECORDS_PER_BATCH: i64 = 1_000_000;
/// The smallest encoded record (length, attributes, timestamp delta, offset delta, key length,
/// value length, header count: one byte each).
const MIN_RECORD_BYTES: i64 = 7;

/// A Kafka error code with a message naming what was wrong.
pub type BatchError = (i16, String);

/// One produced record batch, decoded.
#[derive(Debug)]
pub struct DecodedBatch {
    pub records: Vec<Record>,
    pub producer: Option<ProducerBatch>,
    pub transactional: bool,
    pub control: bool,
}

fn corrupt(msg: String) -> BatchError {
    (ResponseError::CorruptMessage.code(), msg)
}

fn invalid(msg: String) -> BatchError {
    (ResponseError::InvalidRecord.code(), msg)
}

/// Decodes every batch of one partition's produced record set. Refuses, with the Kafka error
/// a client expects, anything that is not a whole, intact v2 batch: a bad CRC or truncated
/// bytes are CORRUPT_MESSAGE, inconsistent counts or offsets INVALID_RECORD, older formats
/// UNSUPPORTED_FOR_MESSAGE_FORMAT.
pub fn decode_batches(bytes: &Bytes) -> Result<Vec<DecodedBatch>, BatchError> {
    if bytes.is_empty() {
        return Err(invalid("empty record set".into()));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < BATCH_HEADER_LEN {
            return Err(corrupt(format!(
                "record set ends with {} bytes, too few for a batch header",
                rest.len()
            )));
        }
        let batch_len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err((
                ResponseError::UnsupportedForMessageFormat.code(),
                format!("record batch magic {magic}: only format v2 (magic 2) is accepted"),
            ));
        }
        let total = 12usize.saturating_add(batch_len.max(0) as usize);
        if batch_len < (BATCH_HEADER_LEN - 12) as i32 || total > rest.len() {
            return Err(corrupt(format!(
                "record batch length {batch_len} does not fit the {} bytes sent",
                rest.len()
            )));
        }
        let batch = bytes.slice(at..at + total);
        out.push(decode_batch(&batch)?);
        at += total;
    }
    Ok(out)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes one whole batch (its length already checked).
fn decode_batch(batch: &Bytes) -> Result<DecodedBatch, BatchError> {
    let b = &batch[..];
    let crc = u32::from_be_bytes(b[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
    let actual = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    if crc != actual {
        return Err(corrupt(format!(
            "record batch CRC {crc:#010x} does not match its contents ({actual:#010x})"
        )));
    }
    let attributes = be_i16(b, 21);
    let last_offset_delta = be_i32(b, 23);
    let base_timestamp = be_i64(b, 27);
    let producer_id = be_i64(b, 43);
    let producer_epoch = be_i16(b, 51);
    let base_sequence = be_i32(b, 53);
    let count = be_i32(b, 57) as i64;
    let compression = match attributes & COMPRESSION_MASK {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        c => return Err(corrupt(format!("unknown compression codec {c}"))),
    };
    let limit = if compression == Compression::None {
        (b.len() - BATCH_HEADER_LEN) as i64 / MIN_RECORD_BYTES
    } else {
        MAX_RECORDS_PER_BATCH
    };
    if count <= 0 || count > limit.min(MAX_RECORDS_PER_BATCH) {
        return Err(invalid(format!(
            "record batch declares {count} records, which its size cannot hold"
        )));
    }
    if last_offset_delta as i64 != count - 1 {
        return Err(invalid(format!(
            "record batch of {count} records has last offset delta {last_offset_delta}"
        )));
    }
    let body = batch.slice(BATCH_HEADER_LEN..);
    let body = if compression == Compression::None {
        body
    } else {
        let mut compressed = body;
        super::decompress::decompress(&mut compressed, compression)
            .map_err(|e| corrupt(format!("{e:#}")))?
    };
    let mut r = Reader { b: &body, at: 0 };
    let mut records = Vec::with_capacity(count as usize);
    for i in 0..count {
        let rec = r
            .record(&body, base_timestamp)
            .ok_or_else(|| corrupt(format!("record {i} of the batch is truncated or malformed")))?;
        if rec.0 != i {
            return Err(invalid(format!(
                "record {i} of the batch has offset delta {}",
                rec.0
            )));
        }
        records.push(rec.1);
    }
    if r.at != body.len() {
        return Err(corrupt(format!(
            "{} bytes follow the batch's {count} records",
            body.len() - r.at
        )));
    }
    Ok(DecodedBatch {
        records,
        producer: (producer_id >= 0).then_some(ProducerBatch {
            producer_id,
            epoch: producer_epoch,
            first_sequence: base_sequence,
        }),
        transactional: attributes & TRANSACTIONAL_BIT != 0,
        control: attributes & CONTROL_BIT != 0,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// A zigzag varint of up to 64 bits.
    fn varlong(&mut self) -> Option<i64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            if shift == 63 && byte > 1 {
                return None;
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        i32::try_from(self.varlong()?).ok()
    }

    /// `len` bytes as a slice of `owner`, or none for a length of -1.
    fn bytes(&mut self, owner: &Bytes, len: i32) -> Option<Option<Bytes>> {
        if len == -1 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        let end = self.at.checked_add(len)?;
        if end > self.b.len() {
            return None;
        }
        let out = owner.slice(self.at..end);
        self.at = end;
        Some(Some(out))
    }

    /// One record: (offset delta, record).
    fn record(&mut self, owner: &Bytes, base_timestamp: i64) -> Option<(i64, Record)> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.at.checked_add(len)?;
        if end > self.b.len() {
            return None;
        }
        self.at += 1; // attributes: unused in v2
        let ts_delta = self.varlong()?;
        let offset_delta = self.varint()? as i64;
        let klen = self.varint()?;
        let key = self.bytes(owner, klen)?;
        let vlen = self.varint()?;
        let value = self.bytes(owner, vlen)?;
        let nheaders = self.varint()?;
        if nheaders < 0 || nheaders as usize > end.saturating_sub(self.at) {
            return None;
        }
        let mut headers = Vec::with_capacity(nheaders as usize);
        for _ in 0..nheaders {
            let klen = self.varint()?;
            if klen < 0 {
                return None;
            }
            let k = self.bytes(owner, klen)??;
            let vlen = self.varint()?;
            let value = self.bytes(owner, vlen)?;
            headers.push(Header {
                key: String::from_utf8_lossy(&k).into_owned(),
                value,
            });
        }
        if self.at != end {
            return None;
        }
        let ts = base_timestamp.checked_add(ts_delta)?;
        Some((
            offset_delta,
            Record {
                key,
                value,
                headers,
                timestamp_ms: (ts >= 0).then_some(ts),
                not_before_ms: None,
            },
        ))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_len(v: i64) -> usize {
    let z = zigzag(v);
    ((64 - z.leading_zeros() as usize).max(1)).div_ceil(7)
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn opt_len(b: &Option<Bytes>) -> i64 {
    b.as_ref().map_or(-1, |b| b.len() as i64)
}

/// The body of one record, without its length prefix.
fn record_body_len(r: &StoredRecord, base_offset: i64, base_ts: i64) -> usize {
    let mut n =
        1 + varint_len(r.timestamp_ms.wrapping_sub(base_ts)) + varint_len(r.offset - base_offset);
    for b in [&r.key, &r.value] {
        n += varint_len(opt_len(b)) + b.as_ref().map_or(0, |b| b.len());
    }
    n += varint_len(r.headers.len() as i64);
    for h in &r.headers {
        n += varint_len(h.key.len() as i64) + h.key.len();
        n += varint_len(opt_len(&h.value)) + h.value.as_ref().map_or(0, |v| v.len());
    }
    n
}

/// Encoded size of `r` within a batch starting at `base_offset` / `base_ts`.
pub fn encoded_len(r: &StoredRecord, base_offset: i64, base_ts: i64) -> usize {
    let body = record_body_len(r, base_offset, base_ts);
    varint_len(body as i64) + body
}

/// Encodes stored records (ascending offsets) as one uncompressed v2 batch whose base offset
/// is the first record's. `log_append_time` sets the batch's timestamp type to
/// LogAppendTime (the stored timestamps are append times then).
pub fn encode_batch(records: &[StoredRecord], log_append_time: bool) -> Bytes {
    let Some(first) = records.first() else {
        return Bytes::new();
    };
    let base_offset = first.offset;
    let base_ts = first.timestamp_ms;
    let max_ts = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(base_ts);
    let last = records.last().expect("not empty");
    let size: usize = BATCH_HEADER_LEN
        + records
            .iter()
            .map(|r| encoded_len(r, base_offset, base_ts))
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(size);
    buf.put_i64(base_offset);
    buf.put_i32((size - 12) as i32);
    buf.put_i32(0); // partition leader epoch
    buf.put_i8(2);
    buf.put_u32(0); // CRC, filled below
    buf.put_i16(if log_append_time {
        TIMESTAMP_TYPE_BIT
    } else {
        0
    });
    buf.put_i32((last.offset - base_offset) as i32);
    buf.put_i64(base_ts);
    buf.put_i64(max_ts);
    buf.put_i64(-1); // producer id
    buf.put_i16(-1); // producer epoch
    buf.put_i32(-1); // base sequence
    buf.put_i32(records.len() as i32);
    for r in records {
        put_varint(&mut buf, record_body_len(r, base_offset, base_ts) as i64);
        buf.put_u8(0);
        put_varint(&mut buf, r.timestamp_ms.wrapping_sub(base_ts));
        put_varint(&mut buf, r.offset - base_offset);
        for b in [&r.key, &r.value] {
            put_varint(&mut buf, opt_len(b));
            if let Some(b) = b {
                buf.put_slice(b);
            }
        }
        put_varint(&mut buf, r.headers.len() as i64);
        for h in &r.headers {
            put_varint(&mut buf, h.key.len() as i64);
            buf.put_slice(h.key.as_bytes());
            put_varint(&mut buf, opt_len(&h.value));
            if let Some(v) = &h.value {
                buf.put_slice(v);
            }
        }
    }
    debug_assert_eq!(buf.len(), size);
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(offset: i64, headers: Vec<(&str, Option<&str>)>) -> StoredRecord {
        StoredRecord {
            offset,
            timestamp_ms: 1_700_000_000_000 + offset * 7 - 20,
            key: (offset % 2 == 0).then(|| Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(vec![b'v'; offset as usize * 3])),
            headers: headers
                .into_iter()
                .map(|(k, v)| Header {
                    key: k.into(),
                    value: v.map(|v| Bytes::from(v.to_string())),
                })
                .collect(),
            not_before_ms: None,
        }
    }

    #[test]
    fn batches_round_trip_with_duplicate_headers_in_order() {
        let records: Vec<StoredRecord> = (5..40)
            .map(|o| stored(o, vec![("h", Some("1")), ("x", None), ("h", Some("2"))]))
            .collect();
        let bytes = encode_batch(&records, false);
        let decoded = decode_batches(&bytes).unwrap();
        assert_eq!(decoded.len(), 1);
        let got = &decoded[0].records;
        assert_eq!(got.len(), records.len());
        for (g, want) in got.iter().zip(&records) {
            assert_eq!(g.key, want.key);
            assert_eq!(g.value, want.value);
            assert_eq!(g.headers, want.headers);
            assert_eq!(g.timestamp_ms, Some(want.timestamp_ms));
        }
        // The codec crate agrees on the framing and the CRC.
        let mut b = bytes.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b).unwrap();
        let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (5..40).collect::<Vec<_>>());
    }

    #[test]
    fn damaged_batches_are_refused_with_kafka_errors() {
        let bytes = encode_batch(&[stored(0, vec![]), stored(1, vec![])], false);
        let mut flipped = bytes.to_vec();
        let n = flipped.len();
        flipped[n - 3] ^= 0x40;
        let err = decode_batches(&Bytes::from(flipped)).unwrap_err();
        assert_eq!(err.0, ResponseError::CorruptMessage.code(), "{}", err.1);
        assert!(err.1.contains("CRC"), "{}", err.1);
        let truncated = bytes.slice(..bytes.len() - 1);
        assert_eq!(
            decode_batches(&truncated).unwrap_err().0,
            ResponseError::CorruptMessage.code()
        );
        let mut magic1 = bytes.to_vec();
        magic1[16] = 1;
        assert_eq!(
            decode_batches(&Bytes::from(magic1)).unwrap_err().0,
            ResponseError::UnsupportedForMessageFormat.code()
        );
        assert!(decode_batches(&Bytes::new()).is_err());
    }

    #[test]
    fn every_truncation_and_byte_flip_is_refused_without_panicking() {
        let bytes = encode_batch(
            &(0..4)
                .map(|o| stored(o, vec![("a", Some("b"))]))
                .collect::<Vec<_>>(),
            false,
        );
        for cut in 0..bytes.len() {
            assert!(decode_batches(&bytes.slice(..cut)).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0xff;
            // Anything may be refused; nothing may panic. Flips outside the CRC's reach
            // (base offset, length, epoch) may still decode.
            let _ = decode_batches(&Bytes::from(b));
        }
    }

    #[test]
    fn encoded_sizes_are_exact() {
        let records: Vec<StoredRecord> = (100..130)
            .map(|o| stored(o, vec![("k", Some("v"))]))
            .collect();
        let bytes = encode_batch(&records, true);
        let want: usize = BATCH_HEADER_LEN
            + records
                .iter()
                .map(|r| encoded_len(r, 100, records[0].timestamp_ms))
                .sum::<usize>();
        assert_eq!(bytes.len(), want);
        assert_eq!(be_i16(&bytes, 21) & TIMESTAMP_TYPE_BIT, TIMESTAMP_TYPE_BIT);
    }
}
