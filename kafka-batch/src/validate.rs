//! Validation of a produced batch before a store appends it, and the few rewrites a broker
//! makes (LogAppendTime, a wrong max timestamp).

use bytes::Bytes;

use crate::compression::decompress;
use crate::error::{corrupt, invalid, BatchError};
use crate::layout::*;
use crate::record;
use crate::varint::Reader;

/// Which timestamps the topic keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// The producer's (CreateTime).
    Create,
    /// The broker's append time, given here (LogAppendTime).
    LogAppend(i64),
}

/// A batch that passed [`validate`]: what the store needs to append it.
#[derive(Debug, Clone)]
pub struct ValidBatch {
    /// The whole batch: the producer's bytes, or a corrected copy (see [`validate`]). Its
    /// base offset and leader epoch are still the producer's; see [`ValidBatch::prefix`].
    bytes: Bytes,
    /// The header as it will be stored (apart from base offset and leader epoch).
    pub header: BatchHeader,
    /// Sum of the records' sizes (key + value + header keys and values).
    pub record_bytes: u64,
    /// Every record has a key (what a compacted topic requires).
    pub all_keyed: bool,
}

impl ValidBatch {
    /// Bytes of the batch.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a valid batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Records in the batch.
    pub fn record_count(&self) -> i32 {
        self.header.record_count
    }

    /// The first [`PREFIX_LEN`] bytes of the stored batch at `base_offset` (base offset,
    /// length, leader epoch 0, magic); [`ValidBatch::tail`] is the rest.
    pub fn prefix(&self, base_offset: i64) -> [u8; PREFIX_LEN] {
        stored_prefix(base_offset, self.bytes.len())
    }

    /// The batch from the CRC on (what the CRC covers, and the CRC itself).
    pub fn tail(&self) -> Bytes {
        self.bytes.slice(PREFIX_LEN..)
    }

    /// The whole stored batch at `base_offset`, as one buffer (a copy).
    pub fn stored(&self, base_offset: i64) -> Bytes {
        let mut v = Vec::with_capacity(self.bytes.len());
        v.extend_from_slice(&self.prefix(base_offset));
        v.extend_from_slice(&self.bytes[PREFIX_LEN..]);
        Bytes::from(v)
    }
}

/// Checks one produced batch (exactly one: `batch.len()` must be its length) the way a Kafka
/// broker does before appending it, walking every record without copying it:
///
/// - magic 2 ([`BatchError::UnsupportedMagic`]), a CRC-32C that matches, a known codec and a
///   records section that decompresses within [`crate::MAX_DECOMPRESSED`], records that
///   parse and end exactly where the batch ends ([`BatchError::Corrupt`]);
/// - a record count from 1 to [`MAX_RECORDS`], last offset delta = count - 1, offset delta
///   `i` for the `i`-th record, no transactional or control batch, no attribute bit a
///   producer may not set (the delete horizon, bits 7-15) ([`BatchError::Invalid`]);
/// - every record at most `max_record_bytes` ([`BatchError::RecordTooLarge`]).
///
/// The stored batch must say which timestamps it holds: under `LogAppend(now)` its
/// timestamp type becomes LogAppendTime with max timestamp `now`; under `Create` it is
/// CreateTime with the largest record timestamp as max timestamp. When the producer's header
/// says otherwise, those fields are rewritten in a copy and the CRC recomputed (as Kafka
/// does); otherwise the producer's bytes are kept as they are.
pub fn validate(
    batch: Bytes,
    timestamps: Timestamps,
    max_record_bytes: usize,
) -> Result<ValidBatch, BatchError> {
    let h = BatchHeader::read(&batch).ok_or_else(|| {
        corrupt(format!(
            "{} bytes are too few for a batch header",
            batch.len()
        ))
    })?;
    if h.magic != MAGIC {
        return Err(BatchError::UnsupportedMagic(h.magic));
    }
    if h.length < 0 || h.total_len() != batch.len() {
        return Err(corrupt(format!(
            "batch length {} does not match the {} bytes given",
            h.length,
            batch.len()
        )));
    }
    h.check()?;
    if !h.is_dense() {
        return Err(invalid(format!(
            "batch of {} records has last offset delta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    if h.attributes & (UNDEFINED_BITS | DELETE_HORIZON_BIT) != 0 {
        return Err(invalid(format!(
            "attributes {:#06x} set bits a producer may not set",
            h.attributes
        )));
    }
    if h.is_control() {
        return Err(invalid(
            "a producer may not send control batches (transaction markers)",
        ));
    }
    if h.is_transactional() && h.producer_id < 0 {
        return Err(invalid(format!(
            "a transactional batch needs a producer id (got {})",
            h.producer_id
        )));
    }
    if !crc_ok(&batch) {
        return Err(corrupt(format!(
            "CRC {:#010x} does not match the batch's contents ({:#010x})",
            h.crc,
            crc32c::crc32c(&batch[CRC_FROM..])
        )));
    }
    let body = batch.slice(HEADER_LEN..);
    let body = decompress(&body, h.compression())?;
    let mut r = Reader { b: &body, at: 0 };
    let mut headers = Vec::new();
    let mut max_ts = i64::MIN;
    let mut total: u64 = 0;
    let mut all_keyed = true;
    for i in 0..h.record_count {
        let rec = record::parse(&mut r, &mut headers)
            .ok_or_else(|| corrupt(format!("record {i} of the batch is truncated or malformed")))?;
        if rec.offset_delta != i {
            return Err(invalid(format!(
                "record {i} of the batch has offset delta {}",
                rec.offset_delta
            )));
        }
        let ts = h
            .base_timestamp
            .checked_add(rec.timestamp_delta)
            .ok_or_else(|| {
                corrupt(format!(
                    "record {i} of the batch has an impossible timestamp"
                ))
            })?;
        max_ts = max_ts.max(ts);
        let size = rec.size(&headers);
        if size > max_record_bytes {
            return Err(BatchError::RecordTooLarge {
                size,
                limit: max_record_bytes,
            });
        }
        total += size as u64;
        all_keyed &= rec.key.is_some();
    }
    if r.at != body.len() {
        return Err(corrupt(format!(
            "{} bytes follow the batch's {} records",
            body.len() - r.at,
            h.record_count
        )));
    }
    let (want_attrs, want_max) = match timestamps {
        Timestamps::Create => (h.attributes & !LOG_APPEND_TIME_BIT, max_ts),
        Timestamps::LogAppend(now) => (h.attributes | LOG_APPEND_TIME_BIT, now),
    };
    if want_attrs == h.attributes && want_max == h.max_timestamp {
        return Ok(ValidBatch {
            bytes: batch,
            header: h,
            record_bytes: total,
            all_keyed,
        });
    }
    let mut copy = batch.to_vec();
    copy[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&want_attrs.to_be_bytes());
    copy[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&want_max.to_be_bytes());
    write_crc(&mut copy);
    let header = BatchHeader::read(&copy).expect("a whole header");
    Ok(ValidBatch {
        bytes: Bytes::from(copy),
        header,
        record_bytes: total,
        all_keyed,
    })
}
