//! Stored batches back to records (the record-level API over batches), decompressing
//! compressed ones.

use broker_api::{Header, StoredRecord};
use bytes::Bytes;

use crate::compression::decompress;
use crate::encode::{NOT_BEFORE_HEADER, RECORD_NOT_BEFORE};
use crate::error::{corrupt, BatchError};
use crate::layout::*;
use crate::record;
use crate::varint::Reader;

fn malformed(h: &BatchHeader, i: i32) -> BatchError {
    corrupt(format!(
        "record {i} of the batch at offset {} is truncated or malformed",
        h.base_offset
    ))
}

/// The records section of a whole batch, decompressed.
fn body(batch: &Bytes, h: &BatchHeader) -> Result<Bytes, BatchError> {
    if batch.len() != h.total_len() || batch.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "batch of {} bytes declares {}",
            batch.len(),
            h.total_len()
        )));
    }
    decompress(&batch.slice(HEADER_LEN..), h.compression())
}

/// Calls `f` with each record of one whole batch at or after offset `from`, in order, until
/// it returns false. Keys, values and header values are slices of `batch` (or of its
/// decompressed records), never copies. A LogAppendTime batch gives every record its max
/// timestamp; a record's not-before header ([`NOT_BEFORE_HEADER`]) becomes its
/// `not_before_ms`. Header keys that are not UTF-8 are converted lossily. The CRC is not
/// checked here. Fails when the batch is malformed (nothing is promised about the records
/// `f` saw before that).
pub fn decode_records(
    batch: &Bytes,
    from: i64,
    mut f: impl FnMut(StoredRecord) -> bool,
) -> Result<(), BatchError> {
    let h = BatchHeader::read(batch).ok_or_else(|| corrupt("batch shorter than its header"))?;
    h.check()?;
    if h.last_offset() < from {
        return Ok(());
    }
    let body = body(batch, &h)?;
    let mut r = Reader { b: &body, at: 0 };
    let mut spans = Vec::new();
    let mut prev = -1;
    for i in 0..h.record_count {
        if h.is_dense() && h.base_offset + (i as i64) < from {
            record::skip(&mut r).ok_or_else(|| malformed(&h, i))?;
            continue;
        }
        let rec = record::parse(&mut r, &mut spans).ok_or_else(|| malformed(&h, i))?;
        // Offset deltas grow; a compacted batch may skip some.
        if rec.offset_delta <= prev || rec.offset_delta > h.last_offset_delta {
            return Err(malformed(&h, i));
        }
        prev = rec.offset_delta;
        let offset = h.base_offset + rec.offset_delta as i64;
        if offset < from {
            continue;
        }
        let timestamp_ms = if h.log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(rec.timestamp_delta)
        };
        let mut not_before_ms = None;
        let mut n = rec.header_count;
        if h.has_not_before() && rec.attributes & RECORD_NOT_BEFORE != 0 {
            let &((ks, ke), v) = spans.last().ok_or_else(|| malformed(&h, i))?;
            match v {
                Some((vs, ve)) if ve - vs == 8 && &body[ks..ke] == NOT_BEFORE_HEADER.as_bytes() => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&body[vs..ve]);
                    not_before_ms = Some(i64::from_be_bytes(a));
                    n -= 1;
                }
                _ => return Err(malformed(&h, i)),
            }
        }
        let headers = spans[..n]
            .iter()
            .map(|&((ks, ke), v)| Header {
                key: String::from_utf8_lossy(&body[ks..ke]).into_owned(),
                value: v.map(|(s, e)| body.slice(s..e)),
            })
            .collect();
        let rec = StoredRecord {
            offset,
            timestamp_ms,
            key: rec.key.map(|(s, e)| body.slice(s..e)),
            value: rec.value.map(|(s, e)| body.slice(s..e)),
            headers,
            not_before_ms,
        };
        if !f(rec) {
            return Ok(());
        }
    }
    if r.at != body.len() {
        return Err(corrupt(format!(
            "{} bytes follow the {} records of the batch at offset {}",
            body.len() - r.at,
            h.record_count,
            h.base_offset
        )));
    }
    Ok(())
}

/// Calls `f(offset, timestamp)` for each record of one whole batch at or after `from`, until
/// it returns false; like [`decode_records`] without building records.
pub fn record_timestamps(
    batch: &Bytes,
    from: i64,
    mut f: impl FnMut(i64, i64) -> bool,
) -> Result<(), BatchError> {
    let h = BatchHeader::read(batch).ok_or_else(|| corrupt("batch shorter than its header"))?;
    h.check()?;
    if h.last_offset() < from {
        return Ok(());
    }
    if h.log_append_time() && h.is_dense() {
        // Every record has the max timestamp.
        for o in from.max(h.base_offset)..=h.last_offset() {
            if !f(o, h.max_timestamp) {
                break;
            }
        }
        return Ok(());
    }
    let body = body(batch, &h)?;
    let mut r = Reader { b: &body, at: 0 };
    let mut spans = Vec::new();
    for i in 0..h.record_count {
        let rec = record::parse(&mut r, &mut spans).ok_or_else(|| malformed(&h, i))?;
        let offset = h.base_offset + rec.offset_delta as i64;
        if offset < from {
            continue;
        }
        let ts = if h.log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(rec.timestamp_delta)
        };
        if !f(offset, ts) {
            return Ok(());
        }
    }
    Ok(())
}
