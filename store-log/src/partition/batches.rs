//! Whole stored batches for a Kafka fetch: byte ranges of the segments' memory mappings,
//! handed out without decoding or copying a record.

use broker_api::{BatchLimits, FetchedBatches, StoreError, StoreResult};
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{corrupt, io_err, Found, Partition, ACTIVE_MAP_BYTES};
use crate::batch::{BatchHeader, HEADER_LEN};
use crate::damage::Damage;
use crate::segment::{read_at, Segment};

/// Bytes of batches served between two releases of the mapped pages (see `read_batches`).
const RELEASE_AFTER_BYTES: u64 = 32 << 20;

/// Why the walk over one segment stopped.
enum Stop {
    /// The segment's end: go on with the next one.
    End,
    /// The limits or the high watermark: the fetch is complete.
    Done,
    /// A damaged batch.
    Damage(Found),
}

/// Reads `len` bytes at `pos` from the mapping when it covers them, else from the file.
fn bytes_at(seg: &Segment, view: &Option<Bytes>, pos: u64, len: usize) -> StoreResult<Bytes> {
    match view {
        Some(v) if pos as usize + len <= v.len() => Ok(v.slice(pos as usize..pos as usize + len)),
        _ => read_at(&seg.log, pos, len).map_err(|e| io_err("reading the log", e)),
    }
}

impl Partition {
    /// Whole batches from the one holding `offset`; see rule **batch_fetch_respects_limits**.
    /// `verify`: check each returned batch's CRC. With `read_committed` the batches stop at
    /// the last stable offset and the aborted transactions they meet are listed (rule
    /// **read_committed_fetch_stops_at_last_stable**): the walk simply ends there, at a batch
    /// boundary, so the chunks stay ranges of the mapped files.
    ///
    /// Damage is handled as in [`Partition::read`]: a damaged batch ends the fetch, the
    /// batches before it are returned, and only a fetch that starts at it fails with
    /// `Corrupt` naming the file and position.
    pub fn read_batches(
        &self,
        offset: i64,
        limits: BatchLimits,
        verify: bool,
    ) -> StoreResult<FetchedBatches> {
        let ((segs, hw, log_start), view) = self.read_plan_stable(offset)?;
        let lso = view.last_stable;
        let end = if limits.read_committed { lso } else { hw };
        let mut chunks = Vec::new();
        let mut total = 0usize;
        let mut next = offset;
        let mut damage = None;
        let mut read_from = Vec::new();
        for (seg, size) in segs {
            if next >= end {
                break;
            }
            let view = seg.view(ACTIVE_MAP_BYTES);
            read_from.push(seg.clone());
            let mut range: Option<(u64, u64)> = None;
            let stop = self.walk_batches(
                &seg, &view, size, end, limits, verify, &mut next, &mut total, &mut range,
            )?;
            if let Some((start, end)) = range {
                chunks.push(bytes_at(&seg, &view, start, (end - start) as usize)?);
            }
            match stop {
                Stop::End => {}
                Stop::Done => break,
                Stop::Damage(found) => {
                    damage = Some(found);
                    break;
                }
            }
        }
        if let Some(found) = damage {
            self.report_damage(&found);
            if chunks.is_empty() {
                return Err(self.damage_error(found));
            }
        }
        // A consumer catching up maps in the segment as fast as it reads: let go of the pages
        // every RELEASE_AFTER_BYTES served, so that resident memory does not grow with the
        // backlog between the flusher's releases (pages still being sent fault back in from
        // the page cache).
        let served = self.served.fetch_add(total as u64, Ordering::Relaxed) + total as u64;
        if served >= RELEASE_AFTER_BYTES {
            self.served.store(0, Ordering::Relaxed);
            for seg in read_from {
                seg.release_mapped_pages();
            }
        }
        let aborted = if limits.read_committed && view.any_aborted && next > offset {
            self.aborted_between(offset, next - 1)
        } else {
            Vec::new()
        };
        Ok(FetchedBatches {
            chunks,
            high_watermark: hw,
            log_start_offset: log_start,
            last_stable_offset: lso,
            aborted,
        })
    }

    /// Walks the batches of one segment from the index entry for `*next`, extending `range`
    /// over the batches to return (moving `*next` and `*total`); none at or past `end`.
    #[allow(clippy::too_many_arguments)]
    fn walk_batches(
        &self,
        seg: &std::sync::Arc<Segment>,
        view: &Option<Bytes>,
        size: u64,
        end: i64,
        limits: BatchLimits,
        verify: bool,
        next: &mut i64,
        total: &mut usize,
        range: &mut Option<(u64, u64)>,
    ) -> StoreResult<Stop> {
        let (mut pos, mut expect) = seg.entry_for(*next);
        let damage = |pos: u64, expect: i64, last: Option<i64>, what: String| {
            Ok(Stop::Damage((seg.clone(), pos, expect, last, what)))
        };
        while pos < size {
            if pos + HEADER_LEN as u64 > size {
                return damage(pos, expect, None, "truncated batch".into());
            }
            let header = match view {
                Some(v) if (pos as usize + HEADER_LEN) <= v.len() => {
                    BatchHeader::parse(&v[pos as usize..pos as usize + HEADER_LEN])
                }
                _ => BatchHeader::parse(&bytes_at(seg, view, pos, HEADER_LEN)?),
            };
            let Some(h) = header else {
                return damage(pos, expect, None, "bad batch header".into());
            };
            if !seg.in_sequence(h.base_offset, expect) {
                let what = format!(
                    "batch out of sequence: base offset {}, expected {expect}",
                    h.base_offset
                );
                return damage(pos, expect, None, what);
            }
            let len = h.total_len();
            if pos + len as u64 > size {
                let what = "batch runs past the segment end".to_string();
                return damage(pos, expect, Some(h.last_offset()), what);
            }
            if h.base_offset >= end {
                return Ok(Stop::Done);
            }
            if h.last_offset() >= *next {
                if *total + len > limits.max_bytes && !(*total == 0 && limits.min_one) {
                    return Ok(Stop::Done);
                }
                if verify {
                    let ok = match view {
                        Some(v) if pos as usize + len <= v.len() => {
                            crate::batch::crc_ok(&v[pos as usize..pos as usize + len], &h)
                        }
                        _ => crate::batch::crc_ok(&bytes_at(seg, view, pos, len)?, &h),
                    };
                    if !ok {
                        let what = "batch CRC mismatch".to_string();
                        return damage(pos, expect, Some(h.last_offset()), what);
                    }
                }
                let start = range.map_or(pos, |(s, _)| s);
                *range = Some((start, pos + len as u64));
                *total += len;
                *next = h.last_offset() + 1;
                if *next >= end {
                    return Ok(Stop::Done);
                }
            }
            expect = h.last_offset() + 1;
            pos += len as u64;
        }
        Ok(Stop::End)
    }

    /// Logs and counts a damaged batch (once per process and batch).
    pub(super) fn report_damage(&self, found: &Found) {
        let (seg, pos, first, last, what) = found;
        self.label.damage.report(&Damage {
            topic: &self.label.topic,
            partition: self.label.partition,
            file: &seg.log_path,
            pos: *pos,
            first_offset: *first,
            last_offset: *last,
            what,
        });
    }

    /// The error of a read that starts at a damaged batch.
    pub(super) fn damage_error(&self, found: Found) -> StoreError {
        let (seg, pos, first, last, what) = found;
        let offsets = match last {
            Some(l) => format!("offsets {first}..={l}"),
            None => format!("offsets from {first}"),
        };
        corrupt(
            &seg,
            pos,
            &format!(
                "{}/{}: {what} ({offsets})",
                self.label.topic, self.label.partition
            ),
        )
    }
}
