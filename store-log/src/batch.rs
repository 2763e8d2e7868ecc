//! The on-disk batch format of `.log` files (see docs/log-format.md).

use broker_api::{Header, ProducerBatch, Record, StoredRecord};
use bytes::Bytes;

/// Bytes of a batch header.
pub const HEADER_LEN: usize = 52;
/// Format version written in every batch: 2, records framed with varints. Batches of
/// version 1 (fixed-width record fields) are still read.
pub const MAGIC: u8 = 2;
/// The first format version: fixed-width record fields.
const MAGIC_V1: u8 = 1;
/// Bytes of the fixed part of a version 1 record (length prefix included).
const RECORD_FIXED_V1: usize = 37;
/// Fewest bytes of a version 2 record: length, offset delta, timestamp delta, flags and
/// header count, one byte each.
const RECORD_MIN: usize = 5;

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
        let per_record = match h.magic {
            MAGIC => RECORD_MIN,
            MAGIC_V1 => RECORD_FIXED_V1,
            _ => return None,
        };
        let min_len = (HEADER_LEN - 12) as u64 + h.record_count as u64 * per_record as u64;
        if h.record_count == 0
            || h.base_offset < 0
            || (h.length as u64) < min_len
            || h.flags & !(FLAG_PRODUCER | FLAG_NOT_BEFORE) != 0
        {
            return None;
        }
        Some(h)
    }
}

/// Bytes of `v` as an unsigned LEB128 varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Bytes of a byte string with its varint length.
fn field_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Encoded size of one record after its length field, for a batch appended at `append_time`.
fn record_body_len(r: &Record, i: usize, append_time: i64) -> usize {
    let ts = r.timestamp_ms.unwrap_or(append_time);
    varint_len(i as u64)
        + varint_len(zigzag(ts.wrapping_sub(append_time)))
        + 1
        + r.not_before_ms
            .map_or(0, |nb| varint_len(zigzag(nb.wrapping_sub(append_time))))
        + r.key.as_ref().map_or(0, |k| field_len(k.len()))
        + r.value.as_ref().map_or(0, |v| field_len(v.len()))
        + varint_len(r.headers.len() as u64)
        + r.headers
            .iter()
            .map(|h| {
                field_len(h.key.len())
                    + h.value
                        .as_ref()
                        .map_or(1, |v| varint_len(v.len() as u64 + 1) + v.len())
            })
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
    // A generous bound: each record's framing is at most its body length plus 10 bytes.
    let bound = HEADER_LEN
        + records
            .iter()
            .map(|r| r.size() + 40 + r.headers.len() * 20)
            .sum::<usize>();
    buf.reserve(bound);
    buf.resize(HEADER_LEN, 0);
    let mut max_ts = i64::MIN;
    let mut flags = 0u8;
    for (i, r) in records.iter().enumerate() {
        let ts = r.timestamp_ms.unwrap_or(append_time);
        max_ts = max_ts.max(ts);
        put_varint(buf, record_body_len(r, i, append_time) as u64);
        put_varint(buf, i as u64);
        put_varint(buf, zigzag(ts.wrapping_sub(append_time)));
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
        if let Some(nb) = r.not_before_ms {
            put_varint(buf, zigzag(nb.wrapping_sub(append_time)));
        }
        if let Some(k) = &r.key {
            put_varint(buf, k.len() as u64);
            buf.extend_from_slice(k);
        }
        if let Some(v) = &r.value {
            put_varint(buf, v.len() as u64);
            buf.extend_from_slice(v);
        }
        put_varint(buf, r.headers.len() as u64);
        for h in &r.headers {
            put_varint(buf, h.key.len() as u64);
            buf.extend_from_slice(h.key.as_bytes());
            match &h.value {
                Some(v) => {
                    put_varint(buf, v.len() as u64 + 1);
                    buf.extend_from_slice(v);
                }
                None => buf.push(0),
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
    /// An unsigned LEB128 varint of at most 10 bytes that fits in a u64.
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = (byte & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A varint length that fits in the rest of the batch.
    fn len(&mut self) -> Option<usize> {
        let n = self.varint()?;
        (n <= (self.b.len() - self.pos) as u64).then_some(n as usize)
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
    if header.magic == MAGIC_V1 {
        return decode_v1(batch, header, from, &mut f);
    }
    let b: &[u8] = batch;
    let mut c = Cursor { b, pos: HEADER_LEN };
    let base_time = header.append_time;
    for i in 0..header.record_count {
        let len = c.len()?;
        let end = c.pos + len;
        let offset = header.base_offset + i as i64;
        if offset < from {
            c.pos = end;
            continue;
        }
        // The record's fields must not run past its own end.
        let mut r = Cursor {
            b: &b[..end],
            pos: c.pos,
        };
        if r.varint()? != i as u64 {
            return None;
        }
        let timestamp_ms = base_time.wrapping_add(unzigzag(r.varint()?));
        let rf = r.u8()?;
        if rf & !(REC_KEY | REC_VALUE | REC_NOT_BEFORE) != 0 {
            return None;
        }
        let not_before_ms = if rf & REC_NOT_BEFORE != 0 {
            Some(base_time.wrapping_add(unzigzag(r.varint()?)))
        } else {
            None
        };
        let key = if rf & REC_KEY != 0 {
            let n = r.len()?;
            let (s, e) = r.take(n)?;
            Some(batch.slice(s..e))
        } else {
            None
        };
        let value = if rf & REC_VALUE != 0 {
            let n = r.len()?;
            let (s, e) = r.take(n)?;
            Some(batch.slice(s..e))
        } else {
            None
        };
        let hcount = r.len()?;
        let mut headers = Vec::with_capacity(hcount);
        for _ in 0..hcount {
            let n = r.len()?;
            let (hs, he) = r.take(n)?;
            let key = std::str::from_utf8(&b[hs..he]).ok()?.to_string();
            let value = match r.varint()? {
                0 => None,
                n => {
                    let n = usize::try_from(n - 1).ok()?;
                    let (s, e) = r.take(n)?;
                    Some(batch.slice(s..e))
                }
            };
            headers.push(Header { key, value });
        }
        if r.pos != end {
            return None;
        }
        c.pos = end;
        let rec = StoredRecord {
            offset,
            timestamp_ms,
            key,
            value,
            headers,
            not_before_ms,
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

/// [`decode_records`] for a version 1 batch.
fn decode_v1(
    batch: &Bytes,
    header: &BatchHeader,
    from: i64,
    f: &mut impl FnMut(StoredRecord) -> bool,
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

    fn decode_all(buf: &[u8]) -> Option<Vec<StoredRecord>> {
        let h = BatchHeader::parse(buf)?;
        let bytes = Bytes::copy_from_slice(buf);
        let mut out = Vec::new();
        decode_records(&bytes, &h, 0, |r| {
            out.push(r);
            true
        })?;
        Some(out)
    }

    #[test]
    fn varints_and_extreme_values_round_trip() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut c = Cursor { b: &b, pos: 0 };
            assert_eq!(c.varint(), Some(v));
        }
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        let big = Bytes::from(vec![3u8; 70_000]);
        let recs = vec![
            Record {
                key: Some(Bytes::new()),
                value: Some(big.clone()),
                headers: vec![Header {
                    key: "é".repeat(200),
                    value: Some(Bytes::new()),
                }],
                timestamp_ms: Some(i64::MIN),
                not_before_ms: Some(i64::MAX),
            },
            Record {
                timestamp_ms: Some(i64::MAX),
                not_before_ms: Some(-5),
                ..Record::default()
            },
        ];
        for append_time in [0, -1, i64::MAX, i64::MIN, 1_700_000_000_000] {
            let mut buf = Vec::new();
            encode(&mut buf, 7, &recs, append_time, None);
            let h = BatchHeader::parse(&buf).unwrap();
            assert_eq!(h.magic, MAGIC);
            assert!(crc_ok(&buf, &h));
            let out = decode_all(&buf).expect("decodes");
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].key.as_deref(), Some(&b""[..]));
            assert_eq!(out[0].value, Some(big.clone()));
            assert_eq!(out[0].headers, recs[0].headers);
            assert_eq!(out[0].timestamp_ms, i64::MIN);
            assert_eq!(out[0].not_before_ms, Some(i64::MAX));
            assert_eq!((out[1].key.clone(), out[1].value.clone()), (None, None));
            assert_eq!(out[1].timestamp_ms, i64::MAX);
            assert_eq!(out[1].not_before_ms, Some(-5));
            assert_eq!(out[1].offset, 8);
        }
    }

    #[test]
    fn small_records_take_few_framing_bytes() {
        let recs: Vec<Record> = (0..100)
            .map(|_| Record::from_value(vec![1u8; 100]))
            .collect();
        let mut buf = Vec::new();
        encode(&mut buf, 0, &recs, 1000, None);
        // Length, delta, timestamp delta, flags, value length, header count: 1 byte each
        // (the offset delta takes 1 byte below 128).
        assert_eq!(buf.len(), HEADER_LEN + 100 * (100 + 6));
    }

    /// A version 1 batch, laid out by hand from docs/log-format.md.
    fn v1_batch(base: i64, values: &[&[u8]], ts: i64) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        for (i, v) in values.iter().enumerate() {
            let len = RECORD_FIXED_V1 - 4 + v.len();
            b.extend_from_slice(&(len as u32).to_le_bytes());
            b.extend_from_slice(&(i as u32).to_le_bytes());
            b.extend_from_slice(&ts.to_le_bytes());
            b.push(REC_VALUE);
            b.extend_from_slice(&0i64.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(v);
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        let length = (b.len() - 12) as u32;
        b[0..8].copy_from_slice(&base.to_le_bytes());
        b[8..12].copy_from_slice(&length.to_le_bytes());
        b[16] = MAGIC_V1;
        b[18..22].copy_from_slice(&(values.len() as u32).to_le_bytes());
        b[22..30].copy_from_slice(&ts.to_le_bytes());
        b[30..38].copy_from_slice(&ts.to_le_bytes());
        b[38..46].copy_from_slice(&(-1i64).to_le_bytes());
        b[46..48].copy_from_slice(&(-1i16).to_le_bytes());
        b[48..52].copy_from_slice(&(-1i32).to_le_bytes());
        let crc = crc32fast::hash(&b[16..]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn version_1_batches_are_still_read() {
        let buf = v1_batch(40, &[b"old", b"format"], 99);
        let h = BatchHeader::parse(&buf).unwrap();
        assert!(crc_ok(&buf, &h));
        let out = decode_all(&buf).expect("a v1 batch decodes");
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].offset, out[1].offset), (40, 41));
        assert_eq!(out[1].value.as_deref(), Some(&b"format"[..]));
        assert_eq!(out[0].timestamp_ms, 99);
    }

    #[test]
    fn malformed_batches_are_refused_without_panicking() {
        let recs = vec![
            Record {
                key: Some(Bytes::from_static(b"key")),
                value: Some(Bytes::from_static(b"value")),
                headers: vec![Header {
                    key: "h".into(),
                    value: Some(Bytes::from_static(b"x")),
                }],
                timestamp_ms: Some(5),
                not_before_ms: Some(6),
            };
            3
        ];
        let mut good = Vec::new();
        encode(&mut good, 0, &recs, 1, None);
        let v1 = v1_batch(0, &[b"a", b"bc"], 1);
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for base in [&good, &v1] {
            for _ in 0..20_000 {
                let mut b = base.clone();
                match next() % 3 {
                    0 => {
                        let i = HEADER_LEN + (next() as usize % (b.len() - HEADER_LEN));
                        b[i] = next() as u8;
                    }
                    1 => {
                        let i = HEADER_LEN + (next() as usize % (b.len() - HEADER_LEN));
                        b[i] ^= 0x80;
                    }
                    _ => b.truncate(HEADER_LEN + next() as usize % (b.len() - HEADER_LEN)),
                }
                // Keep the header consistent with the (possibly shorter) bytes.
                let length = (b.len() - 12) as u32;
                b[8..12].copy_from_slice(&length.to_le_bytes());
                if let Some(out) = decode_all(&b) {
                    assert!(out.len() <= 3);
                }
            }
        }
    }
}
