//! The fixed header of a v2 record batch: where each field sits, reading it, and the few
//! fields a broker rewrites (base offset, partition leader epoch, max timestamp, CRC).
//!
//! ```text
//!  0 base offset i64      8 batch length i32     12 partition leader epoch i32
//! 16 magic i8            17 CRC-32C u32 (of bytes 21..end)
//! 21 attributes i16      23 last offset delta i32
//! 27 base timestamp i64  35 max timestamp i64
//! 43 producer id i64     51 producer epoch i16  53 base sequence i32
//! 57 record count i32    61 records
//! ```
//! All integers are big-endian.

use broker_api::ProducerBatch;

use crate::error::{corrupt, invalid, BatchError};

/// Bytes of the fixed header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length's end: a batch is `LENGTH_END + batch length` bytes.
pub const LENGTH_END: usize = 12;
/// Bytes 0..PREFIX_LEN (base offset, length, leader epoch, magic) are not covered by the CRC.
pub const PREFIX_LEN: usize = 17;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes on.
pub const CRC_FROM: usize = 21;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;

/// The record format this crate reads and writes.
pub const MAGIC: i8 = 2;

/// Attribute bits.
pub const COMPRESSION_MASK: i16 = 0x07;
pub const LOG_APPEND_TIME_BIT: i16 = 0x08;
pub const TRANSACTIONAL_BIT: i16 = 0x10;
pub const CONTROL_BIT: i16 = 0x20;
pub const DELETE_HORIZON_BIT: i16 = 0x40;
/// Set only by this crate's encoder: some record of the batch carries a not-before time (see
/// [`crate::NOT_BEFORE_HEADER`]). Kafka leaves bits 7-15 unused; produced batches that set
/// any of them are refused, so the bit is never ambiguous.
pub const NOT_BEFORE_BIT: i16 = 0x80;
/// Bits Kafka does not define (bit 7 included: clients must not set it).
pub(crate) const UNDEFINED_BITS: i16 = !0x7f;

/// Most records one batch may declare.
pub const MAX_RECORDS: i32 = 1_000_000;
/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length, header count, one byte each.
pub const MIN_RECORD_LEN: usize = 7;

/// The compression codec of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// The fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field: the batch is `12 + length` bytes.
    pub length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

pub(crate) fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Reads the header fields; `None` when fewer than [`HEADER_LEN`] bytes are given. Checks
    /// nothing: see [`BatchHeader::check`] and [`BatchHeader::parse_stored`].
    pub fn read(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(b, 0),
            length: be_i32(b, 8),
            leader_epoch: be_i32(b, LEADER_EPOCH_AT),
            magic: b[MAGIC_AT] as i8,
            crc: u32::from_be_bytes([b[17], b[18], b[19], b[20]]),
            attributes: be_i16(b, ATTRIBUTES_AT),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, MAX_TIMESTAMP_AT),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        })
    }

    /// The header of a batch a store wrote: a header that passes [`BatchHeader::check`], with
    /// a non-negative base offset and leader epoch 0 (stores write 0). `None` otherwise: the
    /// bytes are damaged or are not the start of a batch.
    pub fn parse_stored(b: &[u8]) -> Option<BatchHeader> {
        let h = BatchHeader::read(b)?;
        let control_ok = !h.is_control() || (h.is_transactional() && h.producer_id >= 0);
        let txn_ok = !h.is_transactional() || h.producer_id >= 0;
        (h.check().is_ok() && h.base_offset >= 0 && h.leader_epoch == 0 && control_ok && txn_ok)
            .then_some(h)
    }

    /// Checks what the header alone can tell: magic 2, a known codec, no undefined attribute
    /// bits except [`NOT_BEFORE_BIT`], a record count between 1 and [`MAX_RECORDS`] that the
    /// length can hold, and a last offset delta of at least count - 1 (more only in a
    /// compacted batch; [`crate::validate`] requires exactly count - 1).
    pub fn check(&self) -> Result<(), BatchError> {
        if self.magic != MAGIC {
            return Err(BatchError::UnsupportedMagic(self.magic));
        }
        if (self.length as i64) < (HEADER_LEN - LENGTH_END) as i64 {
            return Err(corrupt(format!(
                "batch length {} is shorter than a batch header",
                self.length
            )));
        }
        if self.compression_code() > 4 {
            return Err(corrupt(format!(
                "unknown compression codec {}",
                self.compression_code()
            )));
        }
        if self.attributes & UNDEFINED_BITS & !NOT_BEFORE_BIT != 0 {
            return Err(invalid(format!(
                "attributes {:#06x} set bits Kafka does not define",
                self.attributes
            )));
        }
        let body = self.total_len() - HEADER_LEN;
        let fits = if self.compression() == Compression::None {
            (body / MIN_RECORD_LEN) as i64
        } else {
            MAX_RECORDS as i64
        };
        let count = self.record_count as i64;
        if count <= 0 || count > fits.min(MAX_RECORDS as i64) {
            return Err(invalid(format!(
                "batch declares {count} records, which its size cannot hold"
            )));
        }
        if (self.last_offset_delta as i64) < count - 1 {
            return Err(invalid(format!(
                "batch of {count} records has last offset delta {}",
                self.last_offset_delta
            )));
        }
        Ok(())
    }

    /// True when the batch holds a record for every offset from its base to its last offset
    /// (every produced batch; a compacted one may have gaps).
    pub fn is_dense(&self) -> bool {
        self.last_offset_delta as i64 == self.record_count as i64 - 1
    }

    /// The delete horizon compaction set on a batch that keeps tombstones (Kafka's KIP-534:
    /// the base timestamp holds it while [`DELETE_HORIZON_BIT`] is set).
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }

    /// Total bytes of the batch (`12 + length`; 12 for a negative length).
    pub fn total_len(&self) -> usize {
        LENGTH_END + self.length.max(0) as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta.max(0) as i64)
    }

    fn compression_code(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    /// The batch's codec (`None` also for an unknown code, which [`BatchHeader::check`]
    /// refuses).
    pub fn compression(&self) -> Compression {
        match self.compression_code() {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// The timestamp type is LogAppendTime: every record's timestamp is the max timestamp.
    pub fn log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_BIT != 0
    }

    /// Some record carries a not-before time (only batches this crate encoded).
    pub fn has_not_before(&self) -> bool {
        self.attributes & NOT_BEFORE_BIT != 0
    }

    /// A transactional or control batch.
    pub fn is_transactional_or_control(&self) -> bool {
        self.attributes & (TRANSACTIONAL_BIT | CONTROL_BIT) != 0
    }

    /// A batch of a transaction (data or marker).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A control batch (a transaction marker): not records of the record-level API.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The idempotent producer's identity of the batch (producer id >= 0), if any.
    pub fn producer(&self) -> Option<ProducerBatch> {
        (self.producer_id >= 0).then_some(ProducerBatch {
            producer_id: self.producer_id,
            epoch: self.producer_epoch,
            first_sequence: self.base_sequence,
        })
    }
}

/// True when `batch` (one whole batch) matches its CRC-32C.
pub fn crc_ok(batch: &[u8]) -> bool {
    batch.len() >= HEADER_LEN
        && u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]])
            == crc32c::crc32c(&batch[CRC_FROM..])
}

/// Writes the base offset of a batch (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// The first [`PREFIX_LEN`] bytes of a stored batch of `total_len` bytes: base offset,
/// length, leader epoch 0, magic. The rest (CRC on) is the producer's.
pub fn stored_prefix(base_offset: i64, total_len: usize) -> [u8; PREFIX_LEN] {
    let mut p = [0u8; PREFIX_LEN];
    p[0..8].copy_from_slice(&base_offset.to_be_bytes());
    p[8..12].copy_from_slice(&((total_len - LENGTH_END) as i32).to_be_bytes());
    p[MAGIC_AT] = MAGIC as u8;
    p
}

/// Marks a whole batch as part of a transaction (its producer's) and rewrites its CRC: what
/// a transactional producer sends. For tests, benchmarks and tools.
pub fn set_transactional(batch: &mut [u8]) {
    let attrs = be_i16(batch, ATTRIBUTES_AT) | TRANSACTIONAL_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    write_crc(batch);
}

/// Recomputes and writes the CRC of a whole batch.
pub(crate) fn write_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Splits a produced record set into its batches (by their length fields). Refuses an empty
/// set, a trailing part too short for a header, and a length that runs past the end; the
/// batches themselves are not checked.
pub fn split_batches(set: &bytes::Bytes) -> Result<Vec<bytes::Bytes>, BatchError> {
    if set.is_empty() {
        return Err(invalid("empty record set"));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < set.len() {
        let rest = &set[at..];
        if rest.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "record set ends with {} bytes, too few for a batch header",
                rest.len()
            )));
        }
        let magic = rest[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let len = be_i32(rest, 8);
        let total = LENGTH_END as i64 + len as i64;
        if (len as i64) < (HEADER_LEN - LENGTH_END) as i64 || total > rest.len() as i64 {
            return Err(corrupt(format!(
                "batch length {len} does not fit the {} bytes sent",
                rest.len()
            )));
        }
        out.push(set.slice(at..at + total as usize));
        at += total as usize;
    }
    Ok(out)
}

/// The same batch with its records section compressed with `compression` (attributes and
/// CRC updated). For tests, benchmarks and tools.
pub fn compress_batch(batch: &[u8], compression: Compression) -> Result<Vec<u8>, BatchError> {
    let h = BatchHeader::read(batch).ok_or_else(|| corrupt("batch shorter than its header"))?;
    if h.compression() != Compression::None {
        return Err(invalid("the batch is compressed already"));
    }
    let code: i16 = match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let section = crate::compression::compress(&batch[HEADER_LEN..], compression)?;
    let mut out = Vec::with_capacity(HEADER_LEN + section.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&section);
    let len = (out.len() - LENGTH_END) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    let attrs = (h.attributes & !COMPRESSION_MASK) | code;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    write_crc(&mut out);
    Ok(out)
}
