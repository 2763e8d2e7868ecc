//! The on-disk batch format of `.log` files (see docs/log-format.md).

use broker_api::{Header, ProducerBatch, Record, StoredRecord};
use bytes::Bytes;

/// Bytes of a batch header.
pub const HEADER_LEN: usize = 52;
/// Bytes of the fixed part of a record (length prefix included).
pub const RECORD_FIXED: usize = 37;
/// Format version written in every batch.
pub const MAGIC: u8 = 1;

pub const FLAG_PRODUCER: u8 = 1;
pub const FLAG_NOT_BEFORE: u8 = 2;

const REC_KEY: u8 = 1;
const REC_VALUE: u8 = 2;
const REC_NOT_BEFORE: u8 = 4;

/// The fixed header of one batch, as read from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field: the whole batch is `12 + length` bytes.
    pub length: u32,
    pub crc: u32,
    pub magic: u8,
    pub flags: u8,
    pub record_count: u32,
    pub max_timestamp: i64,
    pub append_time: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
}

impl BatchHeader {
    /// Total bytes of the batch on disk.
    pub fn total_len(&self) -> usize {
        12 + self.length as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.record_count as i64 - 1
    }

    /// The producer identity, if the batch was idempotent.
    pub fn producer(&self) -> Option<ProducerBatch> {
        (self.flags & FLAG_PRODUCER != 0).then_some(ProducerBatch {
            producer_id: self.producer_id,
            epoch: self.producer_epoch,
            first_sequence: self.first_sequence,
        })
    }

    /// Parses and sanity-checks a header; `None` when the bytes cannot be one.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        let h = BatchHeader {
            base_offset: i64::from_le_bytes(b[0..8].try_into().ok()?),
            length: u32::from_le_bytes(b[8..12].try_into().ok()?),
            crc: u32::from_le_bytes(b[12..16].try_into().ok()?),
            magic: b[16],
            flags: b[17],
            record_count: u32::from_le_bytes(b[18..22].try_into().ok()?),
            max_timestamp: i64::from_le_bytes(b[22..30].try_into().ok()?),
            append_time: i64::from_le_bytes(b[30..38].try_into().ok()?),
            producer_id: i64::from_le_bytes(b[38..46].try_into().ok()?),
            producer_epoch: i16::from_le_bytes(b[46..48].try_into().ok()?),
            first_sequence: i32::from_le_bytes(b[48..52].try_into().ok()?),
        };
        let min_len = (HEADER_LEN - 12) as u64 + h.record_count as u64 * RECORD_FIXED as u64;
        if h.magic != MAGIC
            || h.record_count == 0
            || h.base_offset < 0
            || (h.length as u64) < min_len
            || h.flags & !(FLAG_PRODUCER | FLAG_NOT_BEFORE) != 0
        {
            return None;
        }
        Some(h)
    }
}

/// Encoded size of one record.
pub fn record_len(r: &Record) -> usize {
    RECORD_FIXED
        + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.as_ref().map_or(0, |v| v.len())
        + r.headers
            .iter()
            .map(|h| 8 + h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
}

/// What an encoded batch says about itself.
pub struct Encoded {
    pub max_timestamp: i64,
    pub has_not_before: bool,
}

/// Encodes `records` as one batch at `base_offset` into `buf` (cleared first).
pub fn encode(
    buf: &mut Vec<u8>,
    base_offset: i64,
    records: &[Record],
    append_time: i64,
    producer: Option<ProducerBatch>,
) -> Encoded {
    buf.clear();
    let total = HEADER_LEN + records.iter().map(record_len).sum::<usize>();
    buf.reserve(total);
    buf.resize(HEADER_LEN, 0);
    let mut max_ts = i64::MIN;
    let mut flags = 0u8;
    for (i, r) in records.iter().enumerate() {
        let ts = r.timestamp_ms.unwrap_or(append_time);
        max_ts = max_ts.max(ts);
        let len = record_len(r) - 4;
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        buf.extend_from_slice(&(i as u32).to_le_bytes());
        buf.extend_from_slice(&ts.to_le_bytes());
        let mut rf = 0u8;
        if r.key.is_some() {
            rf |= REC_KEY;
        }
        if r.value.is_some() {
            rf |= REC_VALUE;
        }
        if r.not_before_ms.is_some() {
            rf |= REC_NOT_BEFORE;
            flags |= FLAG_NOT_BEFORE;
        }
        buf.push(rf);
        buf.extend_from_slice(&r.not_before_ms.unwrap_or(0).to_le_bytes());
        let key = r.key.as_deref().unwrap_or(&[]);
        buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        buf.extend_from_slice(key);
        let value = r.value.as_deref().unwrap_or(&[]);
        buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        buf.extend_from_slice(value);
        buf.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
        for h in &r.headers {
            buf.extend_from_slice(&(h.key.len() as u32).to_le_bytes());
            buf.extend_from_slice(h.key.as_bytes());
            match &h.value {
                Some(v) => {
                    buf.extend_from_slice(&(v.len() as i32).to_le_bytes());
                    buf.extend_from_slice(v);
                }
                None => buf.extend_from_slice(&(-1i32).to_le_bytes()),
            }
        }
    }
    let p = producer.unwrap_or(ProducerBatch {
        producer_id: -1,
        epoch: -1,
        first_sequence: -1,
    });
    if producer.is_some() {
        flags |= FLAG_PRODUCER;
    }
    let length = (buf.len() - 12) as u32;
    buf[0..8].copy_from_slice(&base_offset.to_le_bytes());
    buf[8..12].copy_from_slice(&length.to_le_bytes());
    buf[16] = MAGIC;
    buf[17] = flags;
    buf[18..22].copy_from_slice(&(records.len() as u32).to_le_bytes());
    buf[22..30].copy_from_slice(&max_ts.to_le_bytes());
    buf[30..38].copy_from_slice(&append_time.to_le_bytes());
    buf[38..46].copy_from_slice(&p.producer_id.to_le_bytes());
    buf[46..48].copy_from_slice(&p.epoch.to_le_bytes());
    buf[48..52].copy_from_slice(&p.first_sequence.to_le_bytes());
    let crc = crc32fast::hash(&buf[16..]);
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
    Encoded {
        max_timestamp: max_ts,
        has_not_before: flags & FLAG_NOT_BEFORE != 0,
    }
}

/// True when the batch bytes (whole batch, header included) match their CRC.
pub fn crc_ok(batch: &[u8], header: &BatchHeader) -> bool {
    batch.len() == header.total_len() && crc32fast::hash(&batch[16..]) == header.crc
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<(usize, usize)> {
        let start = self.pos;
        let end = start.checked_add(n)?;
        if end > self.b.len() {
            return None;
        }
        self.pos = end;
        Some((start, end))
    }
    fn u32(&mut self) -> Option<u32> {
        let (s, e) = self.take(4)?;
        Some(u32::from_le_bytes(self.b[s..e].try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        let (s, e) = self.take(4)?;
        Some(i32::from_le_bytes(self.b[s..e].try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        let (s, e) = self.take(8)?;
        Some(i64::from_le_bytes(self.b[s..e].try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        let (s, _) = self.take(1)?;
        Some(self.b[s])
    }
}

/// Decodes the records of one whole batch held in `batch` (a slice of a larger buffer, shared
/// without copying), calling `f` for each record at or after `from`. `f` returns false to
/// stop. Returns `None` when the bytes are malformed.
pub fn decode_records(
    batch: &Bytes,
    header: &BatchHeader,
    from: i64,
    mut f: impl FnMut(StoredRecord) -> bool,
) -> Option<()> {
    let b: &[u8] = batch;
    let mut c = Cursor { b, pos: HEADER_LEN };
    for i in 0..header.record_count {
        let len = c.u32()? as usize;
        let start = c.pos;
        let end = start.checked_add(len)?;
        if end > b.len() {
            return None;
        }
        let offset = header.base_offset + i as i64;
        if offset < from {
            c.pos = end;
            continue;
        }
        let delta = c.u32()?;
        if delta != i {
            return None;
        }
        let timestamp_ms = c.i64()?;
        let rf = c.u8()?;
        let nb = c.i64()?;
        let klen = c.u32()? as usize;
        let (ks, ke) = c.take(klen)?;
        let vlen = c.u32()? as usize;
        let (vs, ve) = c.take(vlen)?;
        let hcount = c.u32()? as usize;
        if hcount > len {
            return None;
        }
        let mut headers = Vec::with_capacity(hcount);
        for _ in 0..hcount {
            let hk = c.u32()? as usize;
            let (hs, he) = c.take(hk)?;
            let key = std::str::from_utf8(&b[hs..he]).ok()?.to_string();
            let hv = c.i32()?;
            let value = if hv < 0 {
                None
            } else {
                let (s, e) = c.take(hv as usize)?;
                Some(batch.slice(s..e))
            };
            headers.push(Header { key, value });
        }
        if c.pos != end {
            return None;
        }
        let rec = StoredRecord {
            offset,
            timestamp_ms,
            key: (rf & REC_KEY != 0).then(|| batch.slice(ks..ke)),
            value: (rf & REC_VALUE != 0).then(|| batch.slice(vs..ve)),
            headers,
            not_before_ms: (rf & REC_NOT_BEFORE != 0).then_some(nb),
        };
        if !f(rec) {
            return Some(());
        }
    }
    if c.pos != b.len() {
        return None;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let recs = vec![
            Record {
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: vec![
                    Header {
                        key: "h".into(),
                        value: None,
                    },
                    Header {
                        key: "i".into(),
                        value: Some(Bytes::from_static(b"v")),
                    },
                ],
                timestamp_ms: Some(5),
                not_before_ms: Some(9),
            },
            Record::from_value(&b"hello"[..]),
        ];
        let mut buf = Vec::new();
        let e = encode(&mut buf, 10, &recs, 77, None);
        assert_eq!(e.max_timestamp, 77);
        assert!(e.has_not_before);
        let h = BatchHeader::parse(&buf).unwrap();
        assert_eq!(h.total_len(), buf.len());
        assert!(crc_ok(&buf, &h));
        let bytes = Bytes::from(buf.clone());
        let mut out = Vec::new();
        decode_records(&bytes, &h, 0, |r| {
            out.push(r);
            true
        })
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].offset, 10);
        assert_eq!(out[0].key, recs[0].key);
        assert_eq!(out[0].value, None);
        assert_eq!(out[0].headers, recs[0].headers);
        assert_eq!(out[0].not_before_ms, Some(9));
        assert_eq!(out[1].timestamp_ms, 77);
        assert_eq!(out[1].value, recs[1].value);
        buf[HEADER_LEN + 3] ^= 1;
        assert!(!crc_ok(&buf, &h));
    }
}
