//! Transaction markers: the control batches a transaction coordinator writes (KIP-98).
//!
//! A marker is a batch with the transactional and control bits, the producer's id and
//! epoch, base sequence -1, and one record: key = version 0 (i16) and type (i16: 0 abort,
//! 1 commit); value = version 0 (i16) and the coordinator epoch (i32).

use broker_api::TxnMarker;

use crate::layout::*;
use crate::varint;

/// The marker batch of `marker` with base offset 0 and `timestamp` as its only timestamp.
pub fn marker_batch(marker: &TxnMarker, timestamp: i64) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN];
    let mut rec = Vec::with_capacity(16);
    rec.push(0u8); // record attributes
    varint::put(&mut rec, 0); // timestamp delta
    varint::put(&mut rec, 0); // offset delta
    varint::put(&mut rec, 4);
    rec.extend_from_slice(&0i16.to_be_bytes());
    rec.extend_from_slice(&(marker.commit as i16).to_be_bytes());
    varint::put(&mut rec, 6);
    rec.extend_from_slice(&0i16.to_be_bytes());
    rec.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    varint::put(&mut rec, 0); // headers
    varint::put(&mut buf, rec.len() as i64);
    buf.extend_from_slice(&rec);
    let length = (buf.len() - LENGTH_END) as i32;
    let attributes = TRANSACTIONAL_BIT | CONTROL_BIT;
    let b = &mut buf[..HEADER_LEN];
    b[8..12].copy_from_slice(&length.to_be_bytes());
    b[MAGIC_AT] = MAGIC as u8;
    b[ATTRIBUTES_AT..23].copy_from_slice(&attributes.to_be_bytes());
    b[23..27].copy_from_slice(&0i32.to_be_bytes());
    b[27..35].copy_from_slice(&timestamp.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp.to_be_bytes());
    b[43..51].copy_from_slice(&marker.producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&marker.producer_epoch.to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    write_crc(&mut buf);
    buf
}

/// For a control batch (whole, uncompressed), whether its marker commits (`Some(true)`) or
/// aborts (`Some(false)`); `None` for any other batch or an unreadable marker.
pub fn marker_commits(batch: &[u8]) -> Option<bool> {
    let h = BatchHeader::read(batch)?;
    if h.attributes & CONTROL_BIT == 0 || h.compression() != Compression::None {
        return None;
    }
    let mut r = varint::Reader {
        b: batch.get(HEADER_LEN..)?,
        at: 0,
    };
    r.varint()?; // record length
    r.u8()?; // attributes
    r.varlong()?; // timestamp delta
    r.varint()?; // offset delta
    let key_len = r.varint()?;
    let (from, to) = r.field(key_len)??;
    let key = r.b.get(from..to)?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}
