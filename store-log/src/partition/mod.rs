//! One partition's log: a list of segments, appends, reads, lookups and retention.

mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use broker_api::{
    AppendResult, FetchLimits, FetchResult, OffsetAndTimestamp, ProducerBatch, Record, StoreError,
    StoreResult, StoredRecord,
};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

mod batches;
mod compaction;
mod txn;

pub use compaction::CompactParams;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::damage::PartLabel;
use crate::error::{LogError, LogResult};
use crate::io::{sync_dir, Io, SyncFailure};
use crate::producer::{Check, Producers};
use crate::segment::{read_at, Segment};

/// Segment and index settings of one append, from the topic config and store options.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval: u64,
    pub index_bytes: usize,
    /// Start writing back (without waiting) every this many appended bytes, so that the next
    /// fsync finds little left to do; `None`: leave it to the fsync.
    pub writeback_bytes: Option<u64>,
}

/// Length of the mapping made for reading a segment (bytes past it are read with `pread`).
const ACTIVE_MAP_BYTES: u64 = 1 << 30;

/// A damaged batch a read met: segment, byte position, the batch's first offset, its last
/// offset (when its header could be read) and what is wrong.
type Found = (Arc<Segment>, u64, i64, Option<i64>, String);

/// Segments (with their sizes) a read needs, the high watermark and the log start.
type ReadPlan = (Vec<(Arc<Segment>, u64)>, i64, i64);

/// The transactions as a read planned them.
#[derive(Debug, Clone, Copy)]
struct TxnView {
    /// The last stable offset (at most the plan's high watermark).
    last_stable: i64,
    /// Some aborted transaction is kept: batches may need a lookup.
    any_aborted: bool,
}

struct State {
    segments: Vec<Arc<Segment>>,
    hw: i64,
    log_start: i64,
    producers: Producers,
    /// Offset -> not-before of every record that has one (the lease side table).
    not_before: BTreeMap<i64, i64>,
    /// Position in the active segment up to which writeback was started.
    written_back: u64,
}

/// A partition of a topic.
pub struct Partition {
    dir: PathBuf,
    io: Io,
    state: Mutex<State>,
    /// The visible high watermark: what readers may see. It trails `State::hw` (the end of
    /// the written log) for appends made with `publish == false` until they are synced.
    hw_tx: watch::Sender<i64>,
    sync_lock: tokio::sync::Mutex<()>,
    synced: AtomicI64,
    /// Bytes were appended since the last fsync.
    dirty: AtomicBool,
    /// Set when an fsync failed: after that the kernel may have dropped the unsynced pages
    /// while reporting later fsyncs as good, so the partition takes no more writes (and
    /// publishes nothing more) until the store is reopened and recovers it.
    failed: SyncFailure,
    /// Topic and partition for damage reports, and the store's damage counter.
    label: PartLabel,
    /// Bytes of batches served since the mapped pages were last let go of.
    served: std::sync::atomic::AtomicU64,
    /// Held by a compaction (one at a time per partition) and by `close`.
    cleaner: Mutex<()>,
    /// The cleaner checkpoint (`cleaner.checkpoint`).
    checkpoint: Mutex<crate::cleaner::Checkpoint>,
}

fn corrupt(seg: &Segment, pos: u64, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{} at byte {pos} of {}",
        what,
        seg.log_path.display()
    ))
}

fn io_err(ctx: &str, e: std::io::Error) -> StoreError {
    LogError::io(ctx, e).into()
}

fn collect_not_before(body: &Bytes, h: &BatchHeader, out: &mut BTreeMap<i64, i64>) {
    let _ = batch::decode_records(body, h, 0, |r| {
        if let Some(nb) = r.not_before_ms {
            out.insert(r.offset, nb);
        }
        true
    });
}

impl Partition {
    /// Opens (or creates) the partition in `dir`. `recover`: the last shutdown was not clean,
    /// so the last segment is verified batch by batch and its torn or corrupt tail cut off.
    pub fn open(
        dir: &Path,
        recover: bool,
        log_start: i64,
        layout: Layout,
        io: &Io,
        now: i64,
        label: PartLabel,
    ) -> LogResult<Partition> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        crate::cleaner::recover_swaps(dir, io)?;
        let checkpoint = crate::cleaner::read_checkpoint(dir).unwrap_or_default();
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".log")?;
                (stem.len() == 20)
                    .then(|| stem.parse::<i64>().ok())
                    .flatten()
            })
            .collect();
        bases.sort_unstable();
        let snap = load_producer_snapshot(dir);
        let snap_next = snap.as_ref().map_or(i64::MIN, |(n, _)| *n);
        let mut producers = snap.map(|(_, p)| p).unwrap_or_default();
        let mut not_before = BTreeMap::new();
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        let n = bases.len();
        for (i, &base) in bases.iter().enumerate() {
            if let Some(prev) = segments.last() {
                if (prev.damaged || prev.gaps) && prev.next_offset.load(Ordering::Acquire) <= base {
                    // Its successor defines where it ends: the cleaner may have removed its
                    // last batches, and a damaged one could not be read to its end.
                    prev.next_offset.store(base, Ordering::Release);
                }
                if prev.next_offset.load(Ordering::Acquire) != base {
                    tracing::warn!(dir = %dir.display(), base, "dropping segments after a gap");
                    for &b in &bases[i..] {
                        for ext in ["log", "index", "timeindex"] {
                            let _ = std::fs::remove_file(
                                dir.join(format!("{}.{ext}", crate::segment::stem(b))),
                            );
                        }
                    }
                    break;
                }
            }
            let last = i + 1 == n;
            let seg = Segment::open(
                dir,
                base,
                recover && last,
                last,
                !last && base < checkpoint.gaps_below,
                layout.index_interval,
                layout.index_bytes,
                io,
                now,
                &label,
                |b| {
                    if b.header.base_offset >= snap_next {
                        producers.replay(b.header, b.body);
                    }
                    if let Some(body) = b.body {
                        if b.header.has_not_before {
                            collect_not_before(body, b.header, &mut not_before);
                        }
                    }
                },
            )?;
            segments.push(Arc::new(seg));
        }
        if segments.is_empty() {
            let seg = Segment::create(dir, log_start.max(0), layout.index_bytes, io, now)?;
            sync_dir(io, dir).map_err(|e| LogError::io("syncing partition directory", e))?;
            segments.push(Arc::new(seg));
        }
        let hw = segments.last().unwrap().next_offset.load(Ordering::Acquire);
        if snap_next > hw {
            tracing::warn!(dir = %dir.display(), "producer snapshot is ahead of the log; ignoring it");
            producers = Producers::default();
            for s in &segments {
                crate::segment::scan(&s.log, s.base, None, layout.index_interval, true, |b| {
                    producers.replay(b.header, b.body);
                })
                .ok();
            }
        }
        let first = segments[0].base;
        let log_start = log_start.max(first).min(hw);
        not_before.retain(|&o, _| o >= log_start);
        producers.txns.forget_before(log_start);
        let (hw_tx, _) = watch::channel(hw);
        Ok(Partition {
            dir: dir.to_path_buf(),
            io: io.clone(),
            state: Mutex::new(State {
                segments,
                hw,
                log_start,
                producers,
                not_before,
                written_back: 0,
            }),
            hw_tx,
            sync_lock: tokio::sync::Mutex::new(()),
            synced: AtomicI64::new(hw),
            dirty: AtomicBool::new(false),
            failed: SyncFailure::default(),
            label,
            served: Default::default(),
            cleaner: Mutex::new(()),
            checkpoint: Mutex::new(checkpoint),
        })
    }

    /// Bytes the partition's files take on disk (allocated blocks, so preallocated indexes
    /// count in full); files that vanish while being measured are skipped.
    pub fn disk_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    /// Log start offset and the visible high watermark.
    pub fn offsets(&self) -> (i64, i64) {
        let st = self.state.lock();
        (st.log_start, self.visible())
    }

    /// The high watermark readers see.
    fn visible(&self) -> i64 {
        *self.hw_tx.borrow()
    }

    /// Raises the visible high watermark to `hw` (never lowers it).
    fn publish(&self, hw: i64) {
        self.hw_tx.send_if_modified(|v| {
            let raise = hw > *v;
            if raise {
                *v = hw;
            }
            raise
        });
    }

    /// Lets go of the pages reads have touched through segment mappings (see
    /// [`Segment::release_mapped_pages`]).
    pub fn release_mapped_pages(&self) {
        let segs: Vec<Arc<Segment>> = self.state.lock().segments.clone();
        for s in segs {
            s.release_mapped_pages();
        }
    }

    /// Whether records were written that readers cannot see yet and a sync would publish
    /// (false once an fsync failed: nothing is published after that).
    pub fn has_unpublished(&self) -> bool {
        !self.failed.is_set() && self.state.lock().hw > self.visible()
    }

    /// A receiver of the visible high watermark, for waiting on new records.
    pub fn watch_hw(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// Appends records as one batch; see the Append rules of the contract. The bytes are
    /// written but not necessarily synced: call [`Partition::sync_to`] for that. `publish`:
    /// readers may see the records at once; otherwise only once a sync covers them.
    pub fn append(
        &self,
        records: &[Record],
        producer: Option<ProducerBatch>,
        now: i64,
        layout: Layout,
        publish: bool,
    ) -> StoreResult<AppendResult> {
        self.failed.check()?;
        let n = records.len() as u32;
        // Framed (and its CRC computed) before the lock: the base offset, set under it, is
        // not covered by the CRC.
        let mut buf = take_encode_buffer();
        let enc = match batch::encode(&mut buf, records, now, producer) {
            Ok(e) => e,
            Err(e) => {
                give_encode_buffer(buf);
                return Err(e);
            }
        };
        let result = self.append_with(n, producer, false, now, publish, |this, st, base| {
            batch::set_base_offset(&mut buf, base);
            this.write_batch(st, &[&buf], base, n, enc.max_timestamp, now, layout)?;
            if enc.has_not_before {
                for (i, r) in records.iter().enumerate() {
                    if let Some(nb) = r.not_before_ms {
                        st.not_before.insert(base + i as i64, nb);
                    }
                }
            }
            Ok(())
        });
        give_encode_buffer(buf);
        result
    }

    /// Appends a producer's Kafka batch as it is (the bytes are written from the caller's
    /// buffer with the stored base offset and leader epoch in front: no copy); see
    /// [`Partition::append`].
    pub fn append_batch(
        &self,
        valid: &kafka_batch::ValidBatch,
        now: i64,
        layout: Layout,
        publish: bool,
    ) -> StoreResult<AppendResult> {
        self.failed.check()?;
        let n = valid.record_count() as u32;
        let tail = valid.tail();
        let max_ts = valid.header.max_timestamp;
        self.append_with(
            n,
            valid.header.producer(),
            valid.header.is_transactional(),
            now,
            publish,
            |this, st, base| {
                let prefix = valid.prefix(base);
                this.write_batch(st, &[&prefix, &tail], base, n, max_ts, now, layout)
            },
        )
    }

    /// The shared part of an append of `n` records: the producer checks, then `write` (with
    /// the state locked and the base offset), then the new end, the producer state (a
    /// `transactional` batch opens its producer's transaction), and publishing.
    #[allow(clippy::too_many_arguments)]
    fn append_with(
        &self,
        n: u32,
        producer: Option<ProducerBatch>,
        transactional: bool,
        now: i64,
        publish: bool,
        write: impl FnOnce(&Self, &mut State, i64) -> StoreResult<()>,
    ) -> StoreResult<AppendResult> {
        let mut st = self.state.lock();
        if let Some(p) = &producer {
            if let Check::Duplicate(r) = st.producers.check(p, n)? {
                return Ok(AppendResult {
                    base_offset: r.base_offset,
                    last_offset: r.base_offset + r.count as i64 - 1,
                    append_time_ms: r.append_time,
                    log_start_offset: st.log_start,
                    duplicate: true,
                });
            }
        }
        let base = st.hw;
        write(self, &mut st, base)?;
        st.hw = base + n as i64;
        if let Some(p) = &producer {
            st.producers.record(p, n, base, now, transactional);
        }
        let log_start = st.log_start;
        self.written(st, publish);
        Ok(AppendResult {
            base_offset: base,
            last_offset: base + n as i64 - 1,
            append_time_ms: now,
            log_start_offset: log_start,
            duplicate: false,
        })
    }

    /// After a write: marks the partition dirty and, with `publish`, lets readers see the
    /// new end at once (waking waiters). Releases the state lock first.
    fn written(&self, st: parking_lot::MutexGuard<'_, State>, publish: bool) {
        let hw = st.hw;
        drop(st);
        self.dirty.store(true, Ordering::Release);
        if publish {
            self.publish(hw);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_batch(
        &self,
        st: &mut State,
        parts: &[&[u8]],
        base: i64,
        n: u32,
        max_ts: i64,
        now: i64,
        layout: Layout,
    ) -> StoreResult<()> {
        let len = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let mut active = st.segments.last().unwrap().clone();
        let rel_end = base - active.base + n as i64;
        let must_roll = !active.is_empty()
            && (active.size() + len > layout.segment_bytes
                || now.saturating_sub(active.created_ms.load(Ordering::Acquire))
                    >= layout.segment_ms
                || active.index_full(layout.index_interval)
                || rel_end >= u32::MAX as i64
                || active.size() + len >= u32::MAX as u64);
        if must_roll {
            active = self.roll(st, now, layout)?;
        }
        let pos = active.size();
        if let Err(e) = self.io.write_parts_at(&active.log, parts, pos) {
            // Cut off whatever part of the batch reached the file; it was never acknowledged.
            let _ = active.log.set_len(pos);
            return Err(io_err(
                &format!("appending to {}", active.log_path.display()),
                e,
            ));
        }
        active.index_batch(pos, base, len, layout.index_interval);
        if pos == 0 {
            active.created_ms.store(now, Ordering::Release);
        }
        active.max_ts.fetch_max(max_ts, Ordering::AcqRel);
        active.next_offset.store(base + n as i64, Ordering::Release);
        active.size.store(pos + len, Ordering::Release);
        if let Some(every) = layout.writeback_bytes {
            let end = pos + len;
            if end >= st.written_back + every {
                self.io
                    .start_writeback(&active.log, st.written_back, end - st.written_back);
                st.written_back = end;
            }
        }
        Ok(())
    }

    /// Seals the active segment (synced, indexes trimmed) and starts a new one at the high
    /// watermark.
    fn roll(&self, st: &mut State, now: i64, layout: Layout) -> StoreResult<Arc<Segment>> {
        let old = st.segments.last().unwrap().clone();
        if let Err(e) = self.io.sync_data(&old.log) {
            return Err(self.fail_sync("syncing a sealed segment", e));
        }
        old.trim_indexes()?;
        let seg = Segment::create(&self.dir, st.hw, layout.index_bytes, &self.io, now)?;
        sync_dir(&self.io, &self.dir).map_err(|e| io_err("syncing partition directory", e))?;
        let seg = Arc::new(seg);
        st.segments.push(seg.clone());
        st.written_back = 0;
        tracing::debug!(dir = %self.dir.display(), base = st.hw, "rolled segment");
        Ok(seg)
    }

    /// Returns once every record below `target` is on stable storage. Callers that arrive
    /// while a sync runs share the next one (group commit).
    pub async fn sync_to(&self, target: i64) -> StoreResult<()> {
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _g = self.sync_lock.lock().await;
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        self.failed.check()?;
        let (hw, seg) = self.begin_sync();
        let io = self.io.clone();
        let r = tokio::task::spawn_blocking(move || io.sync_data(&seg.log))
            .await
            .map_err(|e| StoreError::Internal(format!("sync task failed: {e}")))?;
        self.end_sync(hw, r)
    }

    /// Syncs the active segment now if anything was appended since the last sync (blocking).
    pub fn sync_if_dirty(&self) -> StoreResult<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.sync_now()
    }

    /// Syncs the active segment now and publishes what it covers (blocking).
    pub fn sync_now(&self) -> StoreResult<()> {
        self.failed.check()?;
        let (hw, seg) = self.begin_sync();
        let r = self.io.sync_data(&seg.log);
        self.end_sync(hw, r)
    }

    /// What a sync starting now covers: the written end and the active segment.
    fn begin_sync(&self) -> (i64, Arc<Segment>) {
        // Cleared before the end is read: later appends set it again.
        self.dirty.store(false, Ordering::Release);
        let st = self.state.lock();
        (st.hw, st.segments.last().unwrap().clone())
    }

    /// Records the outcome of a sync that covered everything below `hw`.
    fn end_sync(&self, hw: i64, r: std::io::Result<()>) -> StoreResult<()> {
        if let Err(e) = r {
            return Err(self.fail_sync("syncing the log", e));
        }
        self.synced.fetch_max(hw, Ordering::AcqRel);
        self.publish(hw);
        Ok(())
    }

    /// Marks the partition failed after the fsync error `e` (see `failed`); returns the error.
    fn fail_sync(&self, ctx: &str, e: std::io::Error) -> StoreError {
        let err = io_err(ctx, e);
        self.failed.record(
            &err,
            format!(
                "{} takes no more writes until the store is reopened",
                self.dir.display()
            ),
        );
        err
    }

    /// Syncs everything and trims the active indexes (before a clean shutdown). Fails for a
    /// partition whose fsync failed, so that the next open recovers it.
    pub fn close(&self) -> StoreResult<()> {
        // A compaction running now finishes its swap first.
        let _cleaner = self.cleaner.lock();
        self.failed.check()?;
        let st = self.state.lock();
        let seg = st.segments.last().unwrap().clone();
        self.io
            .sync_data(&seg.log)
            .map_err(|e| io_err("syncing the log", e))?;
        seg.trim_indexes()?;
        write_producer_snapshot(&self.dir, &self.io, st.hw, &st.producers)?;
        Ok(())
    }

    /// Snapshot of the segments a read starting at `offset` needs, with their sizes.
    fn read_plan(&self, offset: i64) -> StoreResult<ReadPlan> {
        self.read_plan_stable(offset).map(|(plan, _)| plan)
    }

    /// [`Partition::read_plan`] and what the transactions say at the same moment: the last
    /// stable offset and whether any aborted transaction is kept.
    fn read_plan_stable(&self, offset: i64) -> StoreResult<(ReadPlan, TxnView)> {
        let st = self.state.lock();
        let hw = self.visible();
        let txns = &st.producers.txns;
        let view = TxnView {
            last_stable: txns.last_stable(st.log_start, hw),
            any_aborted: !txns.none_aborted(),
        };
        if offset < st.log_start || offset > hw {
            return Err(StoreError::OffsetOutOfRange {
                offset,
                log_start: st.log_start,
                high_watermark: hw,
            });
        }
        let i = st
            .segments
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1);
        let segs = st.segments[i..]
            .iter()
            .map(|s| (s.clone(), s.size()))
            .collect();
        Ok(((segs, hw, st.log_start), view))
    }

    /// Reads records from `offset`; see the Fetch rules. `verify`: check batch CRCs.
    ///
    /// A damaged batch ends the read: the records before it are returned, and only a read
    /// that starts at the damaged batch fails, with `Corrupt` naming the file and position.
    /// Every damaged batch is reported once (a WARN and the store's damage counter).
    /// Control batches (transaction markers) hold no records: they are stepped over.
    pub fn read(&self, offset: i64, limits: FetchLimits, verify: bool) -> StoreResult<FetchResult> {
        self.read_records(offset, limits, verify, false)
            .map(|(r, _)| r)
    }

    /// [`Partition::read`], and with `committed` (the lease scan) only below the last stable
    /// offset and without the records of aborted transactions. Also returns the offset the
    /// read got to: offsets skipped between the returned records and up to it are control
    /// records, (with `committed`) aborted ones, or offsets compaction removed.
    fn read_records(
        &self,
        offset: i64,
        limits: FetchLimits,
        verify: bool,
        committed: bool,
    ) -> StoreResult<(FetchResult, i64)> {
        let ((segs, hw, log_start), view) = self.read_plan_stable(offset)?;
        // Where the read must stop, and whether batches need an aborted-transaction lookup.
        let (end, lookup) = if committed {
            (view.last_stable, view.any_aborted)
        } else {
            (hw, false)
        };
        let skip = |h: &BatchHeader| {
            h.is_control
                || (lookup
                    && h.is_transactional
                    && h.producer().is_some_and(|p| {
                        let st = self.state.lock();
                        st.producers.txns.is_aborted(p.producer_id, h.base_offset)
                    }))
        };
        let mut records =
            Vec::with_capacity(limits.max_records.min((hw - offset) as usize).min(4096));
        let mut damage: Option<Found> = None;
        let mut next = offset;
        if offset < end && limits.max_records > 0 {
            let chunk = (limits.max_bytes.saturating_add(limits.max_bytes / 4) + 4096)
                .clamp(64 << 10, 16 << 20);
            let mut bytes = 0usize;
            let mut full = false;
            'segs: for (seg, size) in segs {
                // Read through a memory mapping (no copy); the active segment's mapping
                // reaches past its end so that it serves later appends too.
                let view = seg.view(ACTIVE_MAP_BYTES);
                let read = |pos: u64, len: usize| -> StoreResult<Bytes> {
                    match &view {
                        Some(v) if pos as usize + len <= v.len() => {
                            Ok(v.slice(pos as usize..pos as usize + len))
                        }
                        _ => read_at(&seg.log, pos, len).map_err(|e| io_err("reading the log", e)),
                    }
                };
                let (mut pos, mut expect) = seg.entry_for(next);
                while pos < size {
                    let want = chunk.min((size - pos) as usize);
                    let mut buf = read(pos, want)?;
                    let mut cpos = 0usize;
                    while cpos + HEADER_LEN <= buf.len() {
                        let at = pos + cpos as u64;
                        let Some(h) = BatchHeader::parse(&buf[cpos..]) else {
                            damage =
                                Some((seg.clone(), at, expect, None, "bad batch header".into()));
                            break 'segs;
                        };
                        if !seg.in_sequence(h.base_offset, expect) {
                            let what = format!(
                                "batch out of sequence: base offset {}, expected {expect}",
                                h.base_offset
                            );
                            damage = Some((seg.clone(), at, expect, None, what));
                            break 'segs;
                        }
                        let total = h.total_len();
                        if cpos + total > buf.len() {
                            if cpos > 0 {
                                break;
                            }
                            if pos + total as u64 > size {
                                let what = "batch runs past the segment end".to_string();
                                damage =
                                    Some((seg.clone(), at, expect, Some(h.last_offset()), what));
                                break 'segs;
                            }
                            buf = read(pos, total)?;
                        }
                        if h.base_offset >= end {
                            break 'segs;
                        }
                        if h.last_offset() >= next {
                            let body = buf.slice(cpos..cpos + total);
                            if verify && !batch::crc_ok(&body, &h) {
                                let what = "batch CRC mismatch".to_string();
                                damage =
                                    Some((seg.clone(), at, expect, Some(h.last_offset()), what));
                                break 'segs;
                            }
                            if skip(&h) {
                                next = h.last_offset() + 1;
                                if next >= end {
                                    break 'segs;
                                }
                                expect = next;
                                cpos += total;
                                continue;
                            }
                            let before = records.len();
                            let ok = batch::decode_records(&body, &h, next, |r| {
                                if r.offset >= end || records.len() >= limits.max_records {
                                    full = true;
                                    return false;
                                }
                                let sz = r.size();
                                if !records.is_empty() && bytes + sz > limits.max_bytes {
                                    full = true;
                                    return false;
                                }
                                bytes += sz;
                                next = r.offset + 1;
                                records.push(r);
                                true
                            });
                            if ok.is_none() {
                                // Nothing of a malformed batch is served.
                                records.truncate(before);
                                let what = "malformed record".to_string();
                                damage =
                                    Some((seg.clone(), at, expect, Some(h.last_offset()), what));
                                break 'segs;
                            }
                            if !full {
                                // Offsets of the batch after its last record were removed by
                                // compaction: the read got past them too.
                                next = next.max((h.last_offset() + 1).min(end));
                            }
                            if full || records.len() >= limits.max_records || next >= end {
                                break 'segs;
                            }
                        }
                        expect = h.last_offset() + 1;
                        cpos += total;
                    }
                    if cpos == 0 {
                        let at = pos;
                        let what = "truncated batch".to_string();
                        damage = Some((seg.clone(), at, expect, None, what));
                        break 'segs;
                    }
                    pos += cpos as u64;
                }
            }
        }
        if let Some(found) = damage {
            self.report_damage(&found);
            if records.is_empty() {
                return Err(self.damage_error(found));
            }
        }
        let result = FetchResult {
            records,
            high_watermark: hw,
            log_start_offset: log_start,
        };
        Ok((result, next))
    }

    /// Calls `f` with each batch header of `seg` from `pos` to `size`, until it returns false.
    fn walk_headers(
        seg: &Segment,
        mut pos: u64,
        size: u64,
        mut f: impl FnMut(&BatchHeader, u64) -> bool,
    ) -> StoreResult<()> {
        while pos + HEADER_LEN as u64 <= size {
            let hb =
                read_at(&seg.log, pos, HEADER_LEN).map_err(|e| io_err("reading the log", e))?;
            let h = BatchHeader::parse(&hb).ok_or_else(|| corrupt(seg, pos, "bad batch header"))?;
            if !f(&h, pos) {
                return Ok(());
            }
            pos += h.total_len() as u64;
        }
        Ok(())
    }

    /// The first offset at or after the log start whose timestamp is `>= ts` (control
    /// records do not count).
    pub fn offset_for_timestamp(&self, ts: i64) -> StoreResult<Option<OffsetAndTimestamp>> {
        let (log_start, _) = self.offsets();
        let (segs, hw, _) = self.read_plan(log_start)?;
        for (seg, size) in segs {
            if seg.max_ts.load(Ordering::Acquire) < ts {
                continue;
            }
            let start = seg.position_for_timestamp(ts);
            let mut found: Option<(i64, u64)> = None;
            Self::walk_headers(&seg, start, size, |h, pos| {
                if h.max_timestamp >= ts && h.last_offset() >= log_start {
                    found = Some((h.base_offset, pos));
                    false
                } else {
                    true
                }
            })?;
            let Some((_, pos)) = found else { continue };
            // Scan records from that batch on (later batches of this segment too).
            let mut next = log_start.max(seg.base);
            let mut p = pos;
            while p < size {
                let hb =
                    read_at(&seg.log, p, HEADER_LEN).map_err(|e| io_err("reading the log", e))?;
                let h =
                    BatchHeader::parse(&hb).ok_or_else(|| corrupt(&seg, p, "bad batch header"))?;
                if h.max_timestamp >= ts && h.last_offset() >= next && !h.is_control {
                    let body = read_at(&seg.log, p, h.total_len())
                        .map_err(|e| io_err("reading the log", e))?;
                    let mut hit = None;
                    batch::record_timestamps(&body, next, |offset, t| {
                        if t >= ts && offset < hw {
                            hit = Some(OffsetAndTimestamp {
                                offset,
                                timestamp_ms: t,
                            });
                            return false;
                        }
                        true
                    })
                    .ok_or_else(|| corrupt(&seg, p, "malformed record"))?;
                    if hit.is_some() {
                        return Ok(hit);
                    }
                }
                next = next.max(h.last_offset() + 1);
                p += h.total_len() as u64;
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp in `[log_start, hw)`, the earliest among ties
    /// (control records do not count).
    ///
    /// Each segment's max timestamp is an upper bound for its records: segments are visited
    /// largest bound first and one that cannot beat the best record found so far is skipped,
    /// so usually only the segment holding the maximum is read. Within it, the time index
    /// skips every batch before the first one whose max-timestamp-so-far reaches the bound;
    /// only when the bound lies outside `[log_start, hw)` (the first or the active segment)
    /// is the rest of that segment read as well.
    pub fn max_timestamp_offset(&self) -> StoreResult<Option<OffsetAndTimestamp>> {
        let (log_start, _) = self.offsets();
        let (segs, hw, log_start) = self.read_plan(log_start)?;
        if log_start >= hw {
            return Ok(None);
        }
        let mut order: Vec<(i64, usize)> = segs
            .iter()
            .enumerate()
            .map(|(i, (seg, _))| (seg.max_ts.load(Ordering::Acquire), i))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut best: Option<OffsetAndTimestamp> = None;
        for (bound, i) in order {
            let (seg, size) = &segs[i];
            if let Some(b) = best {
                if bound < b.timestamp_ms {
                    break;
                }
                if bound == b.timestamp_ms && seg.base > b.offset {
                    continue;
                }
            }
            // Every record before `from` has a timestamp below `bound`.
            let from = seg.position_for_timestamp(bound);
            Self::scan_max(seg, from, *size, log_start, hw, &mut best)?;
            if from > 0 && best.is_none_or(|b| b.timestamp_ms < bound) {
                let start = seg.position_for(log_start).min(from);
                Self::scan_max(seg, start, from, log_start, hw, &mut best)?;
            }
        }
        Ok(best)
    }

    /// Reads the batches of `seg` between file positions `from` and `to` and keeps in `best`
    /// the record of `[log_start, hw)` with the largest timestamp (earliest among ties),
    /// decoding only batches whose max timestamp can beat `best`.
    fn scan_max(
        seg: &Segment,
        from: u64,
        to: u64,
        log_start: i64,
        hw: i64,
        best: &mut Option<OffsetAndTimestamp>,
    ) -> StoreResult<()> {
        let beats = |best: &Option<OffsetAndTimestamp>, ts: i64, offset: i64| {
            best.is_none_or(|b| ts > b.timestamp_ms || (ts == b.timestamp_ms && offset < b.offset))
        };
        let mut p = from;
        while p + HEADER_LEN as u64 <= to {
            let hb = read_at(&seg.log, p, HEADER_LEN).map_err(|e| io_err("reading the log", e))?;
            let h = BatchHeader::parse(&hb).ok_or_else(|| corrupt(seg, p, "bad batch header"))?;
            if h.base_offset >= hw {
                break;
            }
            let counts = h.last_offset() >= log_start && !h.is_control;
            if counts && beats(best, h.max_timestamp, h.base_offset) {
                let body = read_at(&seg.log, p, h.total_len())
                    .map_err(|e| io_err("reading the log", e))?;
                batch::record_timestamps(&body, log_start, |offset, ts| {
                    if offset >= hw {
                        return false;
                    }
                    if beats(best, ts, offset) {
                        *best = Some(OffsetAndTimestamp {
                            offset,
                            timestamp_ms: ts,
                        });
                    }
                    true
                })
                .ok_or_else(|| corrupt(seg, p, "malformed record"))?;
            }
            p += h.total_len() as u64;
        }
        Ok(())
    }

    /// Sets the log start to `before` in memory (no-op when already past it); returns the
    /// new log start. Call [`Partition::drop_segments`] once the new start is persisted.
    pub fn set_log_start(&self, before: i64) -> StoreResult<i64> {
        let mut st = self.state.lock();
        let hw = self.visible();
        if before > hw {
            return Err(StoreError::OffsetOutOfRange {
                offset: before,
                log_start: st.log_start,
                high_watermark: hw,
            });
        }
        if before > st.log_start {
            st.log_start = before;
            let ls = st.log_start;
            st.not_before = st.not_before.split_off(&ls);
            st.producers.txns.forget_before(ls);
        }
        Ok(st.log_start)
    }

    /// Deletes the files of segments wholly below the log start (never the active one).
    pub fn drop_segments(&self) {
        let dropped: Vec<Arc<Segment>> = {
            let mut st = self.state.lock();
            if let Err(e) = write_producer_snapshot(&self.dir, &self.io, st.hw, &st.producers) {
                tracing::warn!(error = %e, "cannot save producer state; keeping old segments");
                return;
            }
            let keep_from = st
                .segments
                .iter()
                .position(|s| s.next_offset.load(Ordering::Acquire) > st.log_start)
                .unwrap_or(st.segments.len() - 1)
                .min(st.segments.len() - 1);
            st.segments.drain(..keep_from).collect()
        };
        for s in dropped {
            s.delete_files();
        }
    }

    /// The log start that time and size retention allow: whole batches whose newest
    /// timestamp is older than `cutoff`, then the oldest batches while the partition is over
    /// `max_bytes`; never the newest batch.
    pub fn retention_target(
        &self,
        cutoff: Option<i64>,
        max_bytes: Option<u64>,
    ) -> StoreResult<i64> {
        let (segs, hw, log_start) = {
            let st = self.state.lock();
            let segs: Vec<(Arc<Segment>, u64)> =
                st.segments.iter().map(|s| (s.clone(), s.size())).collect();
            (segs, self.visible(), st.log_start)
        };
        let mut start = log_start;
        if let Some(cutoff) = cutoff {
            let mut stop = false;
            for (seg, size) in &segs {
                if stop {
                    break;
                }
                let seg_end = seg.next_offset.load(Ordering::Acquire);
                if seg_end <= start {
                    continue;
                }
                if seg_end < hw && seg.max_ts.load(Ordering::Acquire) < cutoff {
                    // Every batch of the segment is too old, and none is the newest.
                    start = seg_end;
                    continue;
                }
                let from = seg.position_for(start);
                Self::walk_headers(seg, from, *size, |h, _| {
                    if h.last_offset() < start {
                        return true;
                    }
                    if h.last_offset() + 1 >= hw || h.max_timestamp >= cutoff {
                        stop = true;
                        return false;
                    }
                    start = h.last_offset() + 1;
                    true
                })?;
            }
        }
        if let Some(limit) = max_bytes {
            let Some(first) = segs
                .iter()
                .position(|(s, _)| s.next_offset.load(Ordering::Acquire) > start)
            else {
                return Ok(start);
            };
            // Position of the batch holding `start` in its segment.
            let (seg0, size0) = &segs[first];
            let mut pos0 = *size0;
            Self::walk_headers(seg0, seg0.position_for(start), *size0, |h, pos| {
                if h.last_offset() >= start {
                    pos0 = pos;
                    return false;
                }
                true
            })?;
            // Bytes from the batch holding `start` to the end.
            let mut total: u64 =
                (size0 - pos0) + segs[first + 1..].iter().map(|(_, z)| *z).sum::<u64>();
            let mut stop = false;
            for (k, (seg, size)) in segs[first..].iter().enumerate() {
                if stop || total <= limit {
                    break;
                }
                let from = if k == 0 { pos0 } else { 0 };
                let remaining = size - from;
                let seg_end = seg.next_offset.load(Ordering::Acquire);
                if seg_end < hw && total - remaining >= limit {
                    // Removing batch after batch would remove the whole segment.
                    total -= remaining;
                    start = seg_end;
                    continue;
                }
                Self::walk_headers(seg, from, *size, |h, _| {
                    if total <= limit || h.last_offset() + 1 >= hw {
                        stop = true;
                        return false;
                    }
                    total -= h.total_len() as u64;
                    start = h.last_offset() + 1;
                    true
                })?;
            }
        }
        Ok(start)
    }

    /// Number of records at offsets in `[from, to)` that carry a not-before in the future.
    pub fn not_before_after(&self, from: i64, now: i64) -> Vec<(i64, i64)> {
        let st = self.state.lock();
        st.not_before
            .range(from..)
            .filter(|(_, &nb)| nb > now)
            .map(|(&o, &nb)| (o, nb))
            .collect()
    }

    /// Reads up to `max` records from `from` for the lease scan. With `committed` (a
    /// read-committed group) only records below the last stable offset and not of aborted
    /// transactions; otherwise every data record below the high watermark. Also returns the
    /// offset the read got to: every offset skipped below it is a control record or (with
    /// `committed`) of an aborted transaction, done for the group.
    pub fn read_for_lease(
        &self,
        from: i64,
        max: usize,
        verify: bool,
        committed: bool,
    ) -> StoreResult<(Vec<StoredRecord>, i64)> {
        let limits = FetchLimits {
            max_records: max,
            max_bytes: 4 << 20,
        };
        let (r, next) = self.read_records(from, limits, verify, committed)?;
        Ok((r.records, next))
    }
}

const PRODUCERS: &str = "producers.snapshot";

/// Saves the producer state as of `next_offset` (CRC-framed JSON, atomic rename).
fn write_producer_snapshot(dir: &Path, io: &Io, next_offset: i64, p: &Producers) -> LogResult<()> {
    let payload = serde_json::to_vec(&(next_offset, p))
        .map_err(|e| LogError::Metadata(format!("encoding producer state: {e}")))?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    let tmp = dir.join(format!("{PRODUCERS}.tmp"));
    let f =
        std::fs::File::create(&tmp).map_err(|e| LogError::io("creating producer snapshot", e))?;
    io.write_at(&f, &out, 0)
        .map_err(|e| LogError::io("writing producer snapshot", e))?;
    io.sync_data(&f)
        .map_err(|e| LogError::io("syncing producer snapshot", e))?;
    std::fs::rename(&tmp, dir.join(PRODUCERS))
        .map_err(|e| LogError::io("renaming producer snapshot", e))?;
    sync_dir(io, dir).map_err(|e| LogError::io("syncing partition directory", e))
}

/// The saved producer state and the offset it is valid up to, if a good snapshot exists.
fn load_producer_snapshot(dir: &Path) -> Option<(i64, Producers)> {
    let data = std::fs::read(dir.join(PRODUCERS)).ok()?;
    if data.len() < 8 {
        return None;
    }
    let len = u32::from_le_bytes(data[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().ok()?);
    let payload = data.get(8..8 + len)?;
    if crc32fast::hash(payload) != crc {
        tracing::warn!(dir = %dir.display(), "producer snapshot fails its CRC; ignoring it");
        return None;
    }
    let (next, mut p): (i64, Producers) = serde_json::from_slice(payload).ok()?;
    p.txns.reindex();
    Some((next, p))
}

/// Encoding buffers shared by every partition's appends: a few, whatever the number of
/// partitions (a buffer per partition held each partition's largest batch for good, so the
/// broker's memory grew with partitions times batch size).
static ENCODE_BUFFERS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());
/// Buffers kept for reuse, and the largest one kept.
const ENCODE_BUFFERS_MAX: usize = 4;
const ENCODE_BUFFER_MAX_BYTES: usize = 16 << 20;

fn take_encode_buffer() -> Vec<u8> {
    let mut b = ENCODE_BUFFERS.lock().pop().unwrap_or_default();
    b.clear();
    b
}

fn give_encode_buffer(buf: Vec<u8>) {
    if buf.capacity() <= ENCODE_BUFFER_MAX_BYTES {
        let mut pool = ENCODE_BUFFERS.lock();
        if pool.len() < ENCODE_BUFFERS_MAX {
            pool.push(buf);
        }
    }
}
