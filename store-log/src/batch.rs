//! The batches of `.log` files: Kafka record batches (format v2), as a producer sent them or
//! as the record-level API framed them (see docs/log-format.md). The codec is the
//! `kafka_batch` crate's; this module is what the log store reads from a batch header.

use broker_api::{ProducerBatch, Record, StoreError, StoreResult, StoredRecord};
use bytes::Bytes;

/// Bytes of a batch header.
pub const HEADER_LEN: usize = kafka_batch::HEADER_LEN;

/// What the store reads from the header of a stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Records the batch holds (fewer than its offsets span once compaction removed some).
    pub record_count: u32,
    /// Offset of its last record minus its base offset: a compacted batch keeps the original
    /// one, so the batch still spans the offsets it was appended with.
    pub last_offset_delta: u32,
    /// Largest record timestamp (the append time of a LogAppendTime batch).
    pub max_timestamp: i64,
    /// What the batch says about when it was appended: its max timestamp. Exact for batches
    /// stamped with LogAppendTime and for records appended without a timestamp.
    pub append_time: i64,
    /// Some record carries a not-before time.
    pub has_not_before: bool,
    /// A transaction's batch (data or marker).
    pub is_transactional: bool,
    /// A control batch (a transaction marker): no records of the record-level API.
    pub is_control: bool,
    pub crc: u32,
    producer: Option<ProducerBatch>,
    total: usize,
}

impl BatchHeader {
    /// Parses and sanity-checks the header of a stored batch (magic 2, leader epoch 0, a
    /// record count the length can hold, ...); `None` when the bytes cannot be one.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        let h = kafka_batch::BatchHeader::parse_stored(b)?;
        Some(BatchHeader {
            base_offset: h.base_offset,
            record_count: h.record_count as u32,
            last_offset_delta: h.last_offset_delta.max(0) as u32,
            max_timestamp: h.max_timestamp,
            append_time: h.max_timestamp,
            has_not_before: h.has_not_before(),
            is_transactional: h.is_transactional(),
            is_control: h.is_control(),
            crc: h.crc,
            producer: h.producer(),
            total: h.total_len(),
        })
    }

    /// Total bytes of the batch on disk.
    pub fn total_len(&self) -> usize {
        self.total
    }

    /// Offset of the batch's last record (from the last offset delta, so right for a
    /// compacted batch with gaps too).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offsets the batch spans (its record count unless compaction removed records).
    pub fn offset_span(&self) -> u32 {
        self.last_offset_delta + 1
    }

    /// The producer identity, if the batch was idempotent.
    pub fn producer(&self) -> Option<ProducerBatch> {
        self.producer
    }
}

/// What an encoded batch says about itself.
pub struct Encoded {
    pub max_timestamp: i64,
    pub has_not_before: bool,
}

/// Encodes `records` as one batch into `buf` (cleared first), base offset 0: set it with
/// [`set_base_offset`] once it is known (the CRC does not cover it).
pub fn encode(
    buf: &mut Vec<u8>,
    records: &[Record],
    append_time: i64,
    producer: Option<ProducerBatch>,
) -> StoreResult<Encoded> {
    let e = kafka_batch::encode_records(buf, records, append_time, producer)
        .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
    Ok(Encoded {
        max_timestamp: e.max_timestamp,
        has_not_before: e.has_not_before,
    })
}

pub use kafka_batch::set_base_offset;

/// True when the batch bytes (whole batch, header included) match their CRC.
pub fn crc_ok(batch: &[u8], header: &BatchHeader) -> bool {
    batch.len() == header.total_len() && kafka_batch::crc_ok(batch)
}

/// Decodes the records of one whole batch held in `batch` (a slice of a larger buffer,
/// shared without copying; a compressed batch is decompressed), calling `f` for each record
/// at or after `from`. `f` returns false to stop. Returns `None` when the bytes are
/// malformed.
pub fn decode_records(
    batch: &Bytes,
    _header: &BatchHeader,
    from: i64,
    f: impl FnMut(StoredRecord) -> bool,
) -> Option<()> {
    kafka_batch::decode_records(batch, from, f).ok()
}

/// Calls `f(offset, timestamp)` for each record of one whole batch at or after `from`;
/// `None` when the bytes are malformed.
pub fn record_timestamps(batch: &Bytes, from: i64, f: impl FnMut(i64, i64) -> bool) -> Option<()> {
    kafka_batch::record_timestamps(batch, from, f).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_api::Header;

    #[test]
    fn a_stored_batch_parses_and_decodes() {
        let recs = vec![
            Record {
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: vec![Header {
                    key: "h".into(),
                    value: None,
                }],
                timestamp_ms: Some(5),
                not_before_ms: Some(9),
            },
            Record::from_value(&b"hello"[..]),
        ];
        let mut buf = Vec::new();
        let e = encode(&mut buf, &recs, 77, None).unwrap();
        set_base_offset(&mut buf, 10);
        assert_eq!(e.max_timestamp, 77);
        assert!(e.has_not_before);
        let h = BatchHeader::parse(&buf).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.total_len()),
            (10, 11, buf.len())
        );
        assert!(h.has_not_before);
        assert!(crc_ok(&buf, &h));
        let bytes = Bytes::from(buf.clone());
        let mut out = Vec::new();
        decode_records(&bytes, &h, 0, |r| {
            out.push(r);
            true
        })
        .unwrap();
        assert_eq!(out[0].offset, 10);
        assert_eq!(out[0].headers, recs[0].headers);
        assert_eq!(out[0].not_before_ms, Some(9));
        assert_eq!(out[1].timestamp_ms, 77);
        buf[HEADER_LEN + 3] ^= 1;
        assert!(!crc_ok(&buf, &h));
        // A leader epoch other than 0 is not something the store wrote.
        let mut other = bytes.to_vec();
        other[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(BatchHeader::parse(&other).is_none());
    }

    #[test]
    fn small_records_take_few_framing_bytes() {
        let recs: Vec<Record> = (0..100)
            .map(|_| Record::from_value(vec![1u8; 100]))
            .collect();
        let mut buf = Vec::new();
        encode(&mut buf, &recs, 1000, None).unwrap();
        // Kafka's zigzag varints: record length 2 bytes, attributes, timestamp delta and
        // offset delta 1 (2 from delta 64 on), null key 1, value length 2, header count 1.
        assert_eq!(buf.len(), HEADER_LEN + 64 * 109 + 36 * 110);
    }
}
