//! Log compaction of stored batches, shared by every store: the key -> newest offset map
//! built from the dirty range, and the rewrite of one batch keeping only the records that
//! compaction must keep (rules under "Compaction" of the storage contract).
//!
//! A rewritten batch keeps its base offset, last offset delta, producer id, epoch, base
//! sequence, timestamp type and codec, so offsets never change and producer state stays;
//! its records keep their offset deltas (gaps mark the removed ones).

use std::collections::HashMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::compression::{compress, decompress};
use crate::error::{corrupt, BatchError};
use crate::layout::*;
use crate::record;
use crate::varint::{self, Reader};

/// Bytes one [`OffsetMap`] entry takes, for sizing a map by memory.
pub const OFFSET_MAP_ENTRY_BYTES: usize = 48;

/// Keys (as 16-byte digests, like Kafka's cleaner) -> offset of their newest record, with
/// a fixed capacity so a cleaner's memory is bounded.
#[derive(Debug)]
pub struct OffsetMap {
    map: HashMap<[u8; 16], i64>,
    capacity: usize,
}

fn digest(key: &[u8]) -> [u8; 16] {
    let d = Sha256::digest(key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl OffsetMap {
    /// A map that holds at most `memory / OFFSET_MAP_ENTRY_BYTES` keys (at least one).
    pub fn with_memory(memory: usize) -> OffsetMap {
        let capacity = (memory / OFFSET_MAP_ENTRY_BYTES).max(1);
        OffsetMap {
            map: HashMap::new(),
            capacity,
        }
    }

    /// Keys it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys it holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when it holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Offset of the newest record of `key` seen.
    pub fn newest(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&digest(key)).copied()
    }

    /// Adds the keys of one stored batch (records at or after `from`); refuses the whole
    /// batch (changing nothing, returning false) when its new keys would not fit. Control
    /// batches add nothing; records without a key are ignored.
    pub fn add_batch(&mut self, batch: &Bytes, from: i64) -> Result<bool, BatchError> {
        let h = BatchHeader::read(batch).ok_or_else(|| corrupt("batch shorter than its header"))?;
        if h.is_control() {
            return Ok(true);
        }
        let mut keys = Vec::new();
        for_each_record(batch, &h, |r, body| {
            if r.offset >= from {
                if let Some((s, e)) = r.key {
                    keys.push((digest(&body[s..e]), r.offset));
                }
            }
        })?;
        let new = keys
            .iter()
            .filter(|(k, _)| !self.map.contains_key(k))
            .count();
        if self.map.len() + new > self.capacity {
            return Ok(false);
        }
        for (k, o) in keys {
            self.map.insert(k, o);
        }
        Ok(true)
    }
}

/// One record of a batch as compaction sees it.
struct Seen {
    offset: i64,
    key: Option<(usize, usize)>,
    tombstone: bool,
    /// Where the record's bytes start and end in the records section (length prefix on).
    span: (usize, usize),
    timestamp: i64,
}

/// Calls `f` with every record of a whole batch and the (decompressed) records section.
fn for_each_record(
    batch: &Bytes,
    h: &BatchHeader,
    mut f: impl FnMut(&Seen, &Bytes),
) -> Result<(), BatchError> {
    h.check()?;
    if batch.len() != h.total_len() {
        return Err(corrupt(format!(
            "batch of {} bytes declares {}",
            batch.len(),
            h.total_len()
        )));
    }
    let body = decompress(&batch.slice(HEADER_LEN..), h.compression())?;
    let mut r = Reader { b: &body, at: 0 };
    let mut headers = Vec::new();
    let mut prev = -1;
    for i in 0..h.record_count {
        let start = r.at;
        let rec = record::parse(&mut r, &mut headers).ok_or_else(|| {
            corrupt(format!(
                "record {i} of the batch at offset {} is truncated or malformed",
                h.base_offset
            ))
        })?;
        if rec.offset_delta <= prev || rec.offset_delta > h.last_offset_delta {
            return Err(corrupt(format!(
                "record {i} of the batch at offset {} has offset delta {}",
                h.base_offset, rec.offset_delta
            )));
        }
        prev = rec.offset_delta;
        let timestamp = if h.log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(rec.timestamp_delta)
        };
        let seen = Seen {
            offset: h.base_offset + rec.offset_delta as i64,
            key: rec.key,
            tombstone: rec.key.is_some() && rec.value.is_none(),
            span: (start, r.at),
            timestamp,
        };
        f(&seen, &body);
    }
    if r.at != body.len() {
        return Err(corrupt(format!(
            "{} bytes follow the records of the batch at offset {}",
            body.len() - r.at,
            h.base_offset
        )));
    }
    Ok(())
}

/// What compaction does with one stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// Leave it as it is.
    Keep,
    /// Remove the whole batch (no record of it survives).
    Remove,
    /// Replace it with these bytes (same base offset and last offset delta).
    Rewrite(Bytes),
}

/// The outcome of [`clean_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanOutcome {
    pub action: Cleaned,
    pub records_removed: u64,
}

/// What [`clean_batch`] needs to know besides the batch.
#[derive(Debug)]
pub struct CleanContext<'a> {
    /// Newest offsets of the keys below the cleanable end.
    pub map: &'a OffsetMap,
    /// The store's clock, in ms.
    pub now_ms: i64,
    /// The topic's `delete_retention_ms`.
    pub delete_retention_ms: i64,
}

/// Decides what compaction does with one stored batch that lies wholly below the cleanable
/// end: a record goes when the map holds a newer offset of its key, or when it is a
/// tombstone of a batch whose delete horizon has passed; a batch of an aborted transaction
/// (`aborted`) goes whole; a control batch (a marker) stays. A batch that keeps a tombstone
/// and has no delete horizon gets one (`now + delete_retention_ms`). Records without a key
/// stay. A removed batch or a rewrite never changes a surviving record's offset.
pub fn clean_batch(
    batch: &Bytes,
    cx: &CleanContext<'_>,
    aborted: bool,
) -> Result<CleanOutcome, BatchError> {
    let h = BatchHeader::read(batch).ok_or_else(|| corrupt("batch shorter than its header"))?;
    if h.is_control() {
        return Ok(CleanOutcome {
            action: Cleaned::Keep,
            records_removed: 0,
        });
    }
    if aborted {
        return Ok(CleanOutcome {
            action: Cleaned::Remove,
            records_removed: h.record_count.max(0) as u64,
        });
    }
    let expired = h.delete_horizon().is_some_and(|t| t <= cx.now_ms);
    let mut kept: Vec<((usize, usize), i64)> = Vec::new();
    let mut keeps_tombstone = false;
    let mut body_of = Bytes::new();
    for_each_record(batch, &h, |r, body| {
        body_of = body.clone();
        let superseded = r
            .key
            .and_then(|(s, e)| cx.map.newest(&body[s..e]))
            .is_some_and(|newest| newest > r.offset);
        let gone = superseded || (r.tombstone && expired);
        if !gone {
            keeps_tombstone |= r.tombstone;
            kept.push((r.span, r.timestamp));
        }
    })?;
    let removed = h.record_count as u64 - kept.len() as u64;
    if kept.is_empty() {
        return Ok(CleanOutcome {
            action: Cleaned::Remove,
            records_removed: removed,
        });
    }
    let horizon = (keeps_tombstone && h.delete_horizon().is_none())
        .then(|| cx.now_ms.saturating_add(cx.delete_retention_ms));
    if removed == 0 && horizon.is_none() {
        return Ok(CleanOutcome {
            action: Cleaned::Keep,
            records_removed: 0,
        });
    }
    let bytes = rewrite(batch, &h, &body_of, &kept, horizon)?;
    Ok(CleanOutcome {
        action: Cleaned::Rewrite(bytes),
        records_removed: removed,
    })
}

/// The batch with only the `kept` records (spans of `body`, with their timestamps), the
/// delete horizon set when given.
fn rewrite(
    batch: &Bytes,
    h: &BatchHeader,
    body: &Bytes,
    kept: &[((usize, usize), i64)],
    horizon: Option<i64>,
) -> Result<Bytes, BatchError> {
    let base_ts = horizon.unwrap_or(h.base_timestamp);
    let mut section = Vec::with_capacity(kept.iter().map(|((s, e), _)| e - s + 4).sum());
    for &((s, e), ts) in kept {
        if horizon.is_none() {
            section.extend_from_slice(&body[s..e]);
            continue;
        }
        // New timestamp delta: length, attributes, delta, then the rest unchanged.
        let mut r = Reader {
            b: &body[..e],
            at: s,
        };
        r.varint().ok_or_else(|| corrupt("record length"))?;
        let attrs = r.u8().ok_or_else(|| corrupt("record attributes"))?;
        r.varlong().ok_or_else(|| corrupt("record timestamp"))?;
        let rest = &body[r.at..e];
        let delta = if h.log_append_time() {
            0
        } else {
            ts.wrapping_sub(base_ts)
        };
        let len = 1 + varint::len(delta) + rest.len();
        varint::put(&mut section, len as i64);
        section.push(attrs);
        varint::put(&mut section, delta);
        section.extend_from_slice(rest);
    }
    let section = if h.compression() == Compression::None {
        section
    } else {
        compress(&section, h.compression())?
    };
    let mut out = Vec::with_capacity(HEADER_LEN + section.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&section);
    let len = i32::try_from(out.len() - LENGTH_END)
        .map_err(|_| corrupt("a compacted batch over 2 GiB"))?;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    let mut attrs = h.attributes;
    if horizon.is_some() {
        attrs |= DELETE_HORIZON_BIT;
    }
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    out[27..35].copy_from_slice(&base_ts.to_be_bytes());
    if !h.log_append_time() {
        let max = kept
            .iter()
            .map(|&(_, ts)| ts)
            .max()
            .unwrap_or(h.max_timestamp);
        out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
    }
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    write_crc(&mut out);
    Ok(Bytes::from(out))
}

/// True when every record of a whole batch has a key (what a compacted topic requires);
/// control batches count as keyed.
pub fn all_records_keyed(batch: &Bytes) -> Result<bool, BatchError> {
    let h = BatchHeader::read(batch).ok_or_else(|| corrupt("batch shorter than its header"))?;
    if h.is_control() {
        return Ok(true);
    }
    let mut all = true;
    for_each_record(batch, &h, |r, _| all &= r.key.is_some())?;
    Ok(all)
}

/// Refuses a batch with a record without a key on a compacted topic with [`missing_key`].
pub fn require_keys(batch: &Bytes, topic: &str, partition: i32) -> Result<(), BatchError> {
    if all_records_keyed(batch)? {
        return Ok(());
    }
    Err(missing_key(topic, partition))
}

/// The refusal of a record without a key on a compacted topic: `Invalid`, naming the topic
/// and partition (Kafka: "Compacted topic cannot accept message without key").
pub fn missing_key(topic: &str, partition: i32) -> BatchError {
    crate::error::invalid(format!(
        "compacted topic {topic} (partition {partition}) cannot accept a record without a key"
    ))
}
