//! One record of a batch's records section, parsed into field positions without copying.

use crate::varint::Reader;

/// A byte range of the records section.
pub(crate) type Span = (usize, usize);

/// The fields of one record, as positions in the records section.
pub(crate) struct RawRecord {
    pub attributes: u8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Span>,
    pub value: Option<Span>,
    /// Key and value of each header, in order (filled into a buffer the caller reuses).
    pub header_count: usize,
}

impl RawRecord {
    /// Key + value + every header key and value: the contract's record size.
    pub fn size(&self, headers: &[(Span, Option<Span>)]) -> usize {
        let span = |s: &Option<Span>| s.map_or(0, |(a, b)| b - a);
        span(&self.key)
            + span(&self.value)
            + headers
                .iter()
                .map(|(k, v)| k.1 - k.0 + span(v))
                .sum::<usize>()
    }
}

/// Skips one record (its length prefix and body); `None` when it runs past the end.
pub(crate) fn skip(r: &mut Reader<'_>) -> Option<()> {
    let len = usize::try_from(r.varint()?).ok()?;
    let end = r.at.checked_add(len)?;
    if end > r.b.len() {
        return None;
    }
    r.at = end;
    Some(())
}

/// Parses one record at the reader's position, its headers into `headers` (cleared first).
/// `None` when the record is truncated or malformed: a field running past the record's
/// length, a negative length other than -1 for a key or value, a null header key, or
/// bytes left over after the headers.
pub(crate) fn parse(
    r: &mut Reader<'_>,
    headers: &mut Vec<(Span, Option<Span>)>,
) -> Option<RawRecord> {
    headers.clear();
    let len = usize::try_from(r.varint()?).ok()?;
    let end = r.at.checked_add(len)?;
    if end > r.b.len() {
        return None;
    }
    // Every field must end within the record.
    let mut inner = Reader {
        b: &r.b[..end],
        at: r.at,
    };
    let attributes = inner.u8()?;
    let timestamp_delta = inner.varlong()?;
    let offset_delta = inner.varint()?;
    let klen = inner.varint()?;
    let key = inner.field(klen)?;
    let vlen = inner.varint()?;
    let value = inner.field(vlen)?;
    let count = inner.varint()?;
    // Each header takes at least two bytes: a bound that keeps the buffer small.
    if count < 0 || count as usize > (end - inner.at) / 2 {
        return None;
    }
    for _ in 0..count {
        let klen = inner.varint()?;
        let k = inner.field(klen)??;
        let vlen = inner.varint()?;
        let v = inner.field(vlen)?;
        headers.push((k, v));
    }
    if inner.at != end {
        return None;
    }
    r.at = end;
    Some(RawRecord {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count: count as usize,
    })
}
