//! Records of the record-level API framed as one uncompressed v2 batch.

use broker_api::{ProducerBatch, Record};

use crate::error::{invalid, BatchError};
use crate::layout::*;
use crate::varint;

/// Key of the header that carries a record's not-before time (8 bytes, big-endian ms). It is
/// the record's last header, marked by bit 0 of the record's attributes, in a batch with
/// [`NOT_BEFORE_BIT`]; [`crate::decode_records`] takes it off again. Kafka consumers see it
/// as an ordinary header.
pub const NOT_BEFORE_HEADER: &str = "broker-not-before";
/// Record attribute bit: the record's last header is its not-before time.
pub(crate) const RECORD_NOT_BEFORE: u8 = 0x01;

/// What an encoded batch says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    pub max_timestamp: i64,
    pub record_count: i32,
    pub has_not_before: bool,
}

fn opt_len(b: Option<usize>) -> i64 {
    b.map_or(-1, |n| n as i64)
}

/// Bytes of one record after its length prefix.
fn body_len(r: &Record, i: usize, ts_delta: i64) -> usize {
    let field = |n: Option<usize>| varint::len(opt_len(n)) + n.unwrap_or(0);
    let mut n = 1
        + varint::len(ts_delta)
        + varint::len(i as i64)
        + field(r.key.as_ref().map(|k| k.len()))
        + field(r.value.as_ref().map(|v| v.len()));
    let extra = r.not_before_ms.is_some() as usize;
    n += varint::len((r.headers.len() + extra) as i64);
    for h in &r.headers {
        n += field(Some(h.key.len())) + field(h.value.as_ref().map(|v| v.len()));
    }
    if r.not_before_ms.is_some() {
        n += field(Some(NOT_BEFORE_HEADER.len())) + field(Some(8));
    }
    n
}

/// Encodes `records` as one uncompressed batch into `buf` (cleared first), with base offset
/// 0 (see [`crate::set_base_offset`]), leader epoch 0 and CreateTime. A record without a
/// timestamp gets `append_time`. Refuses an empty slice and a batch over 2 GiB.
pub fn encode_records(
    buf: &mut Vec<u8>,
    records: &[Record],
    append_time: i64,
    producer: Option<ProducerBatch>,
) -> Result<Encoded, BatchError> {
    buf.clear();
    let Some(first) = records.first() else {
        return Err(invalid("a batch needs at least one record"));
    };
    if records.len() > i32::MAX as usize {
        return Err(invalid("too many records for one batch"));
    }
    let base_ts = first.timestamp_ms.unwrap_or(append_time);
    let bound = HEADER_LEN
        + records
            .iter()
            .map(|r| r.size() + 32 + r.headers.len() * 10)
            .sum::<usize>();
    buf.reserve(bound);
    buf.resize(HEADER_LEN, 0);
    let mut max_ts = i64::MIN;
    let mut has_not_before = false;
    for (i, r) in records.iter().enumerate() {
        let ts = r.timestamp_ms.unwrap_or(append_time);
        max_ts = max_ts.max(ts);
        let delta = ts.wrapping_sub(base_ts);
        let len = body_len(r, i, delta);
        if len > i32::MAX as usize {
            return Err(invalid(format!("record {i} is too large for a batch")));
        }
        varint::put(buf, len as i64);
        let mut attrs = 0u8;
        if r.not_before_ms.is_some() {
            attrs |= RECORD_NOT_BEFORE;
            has_not_before = true;
        }
        buf.push(attrs);
        varint::put(buf, delta);
        varint::put(buf, i as i64);
        for b in [&r.key, &r.value] {
            varint::put(buf, opt_len(b.as_ref().map(|b| b.len())));
            if let Some(b) = b {
                buf.extend_from_slice(b);
            }
        }
        let extra = r.not_before_ms.is_some() as usize;
        varint::put(buf, (r.headers.len() + extra) as i64);
        for h in &r.headers {
            varint::put(buf, h.key.len() as i64);
            buf.extend_from_slice(h.key.as_bytes());
            varint::put(buf, opt_len(h.value.as_ref().map(|v| v.len())));
            if let Some(v) = &h.value {
                buf.extend_from_slice(v);
            }
        }
        if let Some(nb) = r.not_before_ms {
            varint::put(buf, NOT_BEFORE_HEADER.len() as i64);
            buf.extend_from_slice(NOT_BEFORE_HEADER.as_bytes());
            varint::put(buf, 8);
            buf.extend_from_slice(&nb.to_be_bytes());
        }
    }
    if buf.len() - LENGTH_END > i32::MAX as usize {
        buf.clear();
        return Err(invalid("the records take more than 2 GiB as one batch"));
    }
    let p = producer.unwrap_or(ProducerBatch {
        producer_id: -1,
        epoch: -1,
        first_sequence: -1,
    });
    let count = records.len() as i32;
    let attributes: i16 = if has_not_before { NOT_BEFORE_BIT } else { 0 };
    let length = (buf.len() - LENGTH_END) as i32;
    let b = &mut buf[..HEADER_LEN];
    b[0..8].copy_from_slice(&0i64.to_be_bytes());
    b[8..12].copy_from_slice(&length.to_be_bytes());
    b[12..16].copy_from_slice(&0i32.to_be_bytes());
    b[MAGIC_AT] = MAGIC as u8;
    b[ATTRIBUTES_AT..23].copy_from_slice(&attributes.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[27..35].copy_from_slice(&base_ts.to_be_bytes());
    b[35..43].copy_from_slice(&max_ts.to_be_bytes());
    b[43..51].copy_from_slice(&p.producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&p.epoch.to_be_bytes());
    b[53..57].copy_from_slice(&p.first_sequence.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    write_crc(buf);
    Ok(Encoded {
        max_timestamp: max_ts,
        record_count: count,
        has_not_before,
    })
}
