//! Kafka record batches (format v2, "magic 2") as the unit of storage.
//!
//! A Kafka producer's batch is validated once ([`validate`]), stored as it came (a store
//! rewrites only the base offset and the partition leader epoch, which the CRC does not
//! cover), and sent to consumers as stored. The record-level API of the storage contract
//! reads and writes the same batches: [`encode_records`] frames records as a batch,
//! [`decode_records`] turns a stored batch back into records (decompressing a compressed
//! one).
//!
//! Nothing here panics or allocates without bound on any input: every length is checked
//! against the bytes present, and decompression stops at [`MAX_DECOMPRESSED`].

mod compaction;
mod compression;
mod control;
mod decode;
mod encode;
mod error;
mod layout;
mod record;
mod validate;
mod varint;

pub use compaction::{
    all_records_keyed, clean_batch, missing_key, require_keys, CleanContext, CleanOutcome, Cleaned,
    OffsetMap, OFFSET_MAP_ENTRY_BYTES,
};
pub use compression::{compress, decompress, MAX_DECOMPRESSED};
pub use control::{marker_batch, marker_commits};
pub use decode::{decode_records, record_timestamps};
pub use encode::{encode_records, Encoded, NOT_BEFORE_HEADER};
pub use error::BatchError;
pub use layout::{
    compress_batch, crc_ok, set_base_offset, set_transactional, split_batches, stored_prefix,
    BatchHeader, Compression, COMPRESSION_MASK, CONTROL_BIT, CRC_FROM, DELETE_HORIZON_BIT,
    HEADER_LEN, LENGTH_END, LOG_APPEND_TIME_BIT, MAGIC, MAX_RECORDS, MIN_RECORD_LEN,
    NOT_BEFORE_BIT, PREFIX_LEN, TRANSACTIONAL_BIT,
};
pub use validate::{validate, Timestamps, ValidBatch};

#[cfg(test)]
mod tests;
