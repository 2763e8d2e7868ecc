//! Kafka's zigzag varints: reading them without running past the bytes, writing them.

/// A cursor over bytes; every read checks the bounds and returns `None` past them.
pub(crate) struct Reader<'a> {
    pub b: &'a [u8],
    pub at: usize,
}

impl Reader<'_> {
    /// A zigzag varint of up to 64 bits (at most 10 bytes).
    pub fn varlong(&mut self) -> Option<i64> {
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

    /// A zigzag varint that fits an i32.
    pub fn varint(&mut self) -> Option<i32> {
        i32::try_from(self.varlong()?).ok()
    }

    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    /// `len` bytes as a range of the buffer; -1 is `Some(None)` (a null field).
    pub fn field(&mut self, len: i32) -> Option<Option<(usize, usize)>> {
        if len == -1 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        let end = self.at.checked_add(len)?;
        if end > self.b.len() {
            return None;
        }
        let start = self.at;
        self.at = end;
        Some(Some((start, end)))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes of `v` as a zigzag varint.
pub(crate) fn len(v: i64) -> usize {
    let z = zigzag(v);
    ((64 - z.leading_zeros() as usize).max(1)).div_ceil(7)
}

pub(crate) fn put(buf: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            8191,
            -8192,
            i32::MAX as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(b.len(), len(v), "{v}");
            let mut r = Reader { b: &b, at: 0 };
            assert_eq!(r.varlong(), Some(v));
            assert_eq!(r.at, b.len());
        }
        // Eleven continuation bytes are refused, not read past.
        let long = [0xffu8; 11];
        assert_eq!(Reader { b: &long, at: 0 }.varlong(), None);
        assert_eq!(Reader { b: &[0x80], at: 0 }.varlong(), None);
    }
}
