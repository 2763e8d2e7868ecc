//! Compaction of one partition (rules under "Compaction" of the storage contract): the
//! cleanable end, the key map of the dirty range, the cleaning of the closed segments below
//! the end, and the crash-safe swap of each cleaned segment.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use broker_api::{CleanupPolicy, CompactionStats, StoreError, StoreResult};
use kafka_batch::{CleanContext, Cleaned, OffsetMap};

use super::{write_producer_snapshot, Partition};
use crate::batch::BatchHeader;
use crate::cleaner::{self, BatchReader, Checkpoint, CleanedFiles, CleanedWriter, CleanerMetrics};
use crate::error::LogError;
use crate::io::{sync_dir, CleanerStop};
use crate::segment::{stem, Segment};

/// What one compaction call needs besides the partition.
#[derive(Debug)]
pub struct CompactParams<'a> {
    pub policy: CleanupPolicy,
    /// The store's clock, in ms.
    pub now: i64,
    /// Memory for the key map.
    pub memory: usize,
    /// Skip the partition while its dirty share is below this.
    pub min_dirty_ratio: Option<f64>,
    /// Log bytes between two index entries.
    pub index_interval: u64,
    pub metrics: &'a CleanerMetrics,
}

/// The closed segments a compaction may clean, and where it stops.
struct Plan {
    /// Closed segments wholly below `end` and not wholly below the log start.
    segments: Vec<Arc<Segment>>,
    /// The cleanable end: a segment base offset.
    end: i64,
    log_start: i64,
}

fn corrupt_in(seg: &Segment, e: kafka_batch::BatchError) -> StoreError {
    StoreError::Corrupt(format!("{e} (in {})", seg.log_path.display()))
}

impl Partition {
    /// The offset below which the partition was last cleaned (the log start when never).
    pub fn cleaned_to(&self) -> i64 {
        let (log_start, _) = self.offsets();
        self.checkpoint.lock().cleaned_to.max(log_start)
    }

    /// Bytes of the partition's segments at or after the cleaner checkpoint (the active
    /// segment included): what the next compaction has not seen.
    pub fn dirty_bytes(&self) -> u64 {
        let from = self.cleaned_to();
        let st = self.state.lock();
        st.segments
            .iter()
            .filter(|s| s.next_offset.load(Ordering::Acquire) > from)
            .map(|s| s.size())
            .sum()
    }

    /// The cleanable end and the segments below it: at most the active segment's base, the
    /// last stable offset, the first record younger than the compaction lag and the first
    /// damaged segment, aligned down to a segment base.
    fn clean_plan(&self, policy: &CleanupPolicy, now: i64) -> Plan {
        let st = self.state.lock();
        let hw = self.visible();
        let lso = st.producers.txns.last_stable(st.log_start, hw);
        let log_start = st.log_start;
        let (active, sealed) = st.segments.split_last().expect("a partition has a segment");
        let mut limit = active.base.min(lso);
        let young = now.saturating_sub(policy.min_compaction_lag_ms);
        if let Some(s) = sealed
            .iter()
            .find(|s| s.damaged || s.max_ts.load(Ordering::Acquire) > young)
        {
            limit = limit.min(s.base);
        }
        let k = sealed
            .iter()
            .position(|s| s.next_offset.load(Ordering::Acquire) > limit)
            .unwrap_or(sealed.len());
        let end = sealed.get(k).map_or(active.base, |s| s.base);
        let segments = sealed[..k]
            .iter()
            .filter(|s| s.next_offset.load(Ordering::Acquire) > log_start)
            .cloned()
            .collect();
        Plan {
            segments,
            end,
            log_start,
        }
    }

    /// Compacts the closed segments below the cleanable end (see `clean_plan`): the keys of
    /// the batches from the cleaner checkpoint on go into a map of bounded memory; when it
    /// fills, cleaning stops at the first batch that did not fit (`cleaned_to`) and the next
    /// call goes on from there. Each changed segment is written anew and swapped in crash-
    /// safely (see [`Partition::swap_segment`]); the checkpoint is saved afterwards. With
    /// `min_dirty_ratio`, nothing is done while the bytes after the checkpoint are below that
    /// share of the cleanable bytes. Never touches the active segment, never moves the log
    /// start or the high watermark, never changes a surviving record or its offset.
    pub fn compact(&self, p: &CompactParams<'_>) -> StoreResult<CompactionStats> {
        let _one_at_a_time = self.cleaner.lock();
        self.failed.check()?;
        let plan = self.clean_plan(&p.policy, p.now);
        let saved = *self.checkpoint.lock();
        let checkpoint = saved.cleaned_to.max(plan.log_start).min(plan.end);
        let mut stats = CompactionStats {
            cleaned_to: plan.end,
            ..CompactionStats::default()
        };
        if plan.segments.is_empty() {
            return Ok(stats);
        }
        if let Some(ratio) = p.min_dirty_ratio {
            let total: u64 = plan.segments.iter().map(|s| s.size()).sum();
            let dirty: u64 = plan
                .segments
                .iter()
                .filter(|s| s.next_offset.load(Ordering::Acquire) > checkpoint)
                .map(|s| s.size())
                .sum();
            if total == 0 || (dirty as f64) < ratio * total as f64 {
                stats.cleaned_to = checkpoint;
                return Ok(stats);
            }
        }
        let (map, cut) = self.build_map(&plan, checkpoint, p.memory, &mut stats)?;
        stats.cleaned_to = cut;
        // Producer state as of now: a replay after a crash starts past every cleaned batch,
        // so a producer whose batches compaction removes keeps its sequence.
        {
            let st = self.state.lock();
            write_producer_snapshot(&self.dir, &self.io, st.hw, &st.producers)?;
        }
        // Before any swap: the segments below `cut` may get gaps (opening checks the others).
        if cut > saved.gaps_below {
            self.save_checkpoint(Checkpoint {
                gaps_below: cut,
                ..saved
            })?;
        }
        let cx = CleanContext {
            map: &map,
            now_ms: p.now,
            delete_retention_ms: p.policy.delete_retention_ms,
        };
        for seg in plan.segments.iter().filter(|s| s.base < cut) {
            self.clean_segment(seg, &cx, cut, plan.log_start, p.index_interval, &mut stats)?;
        }
        sync_dir(&self.io, &self.dir).map_err(|e| LogError::io("syncing the partition", e))?;
        let saved = *self.checkpoint.lock();
        if cut > saved.cleaned_to {
            self.save_checkpoint(Checkpoint {
                cleaned_to: cut,
                ..saved
            })?;
        }
        p.metrics.add(&stats);
        tracing::debug!(
            dir = %self.dir.display(),
            cleaned_to = cut,
            removed = stats.records_removed,
            read = stats.bytes_read,
            written = stats.bytes_written,
            "compacted"
        );
        Ok(stats)
    }

    /// The newest offset of every key of the batches from `checkpoint` to the plan's end
    /// (aborted ones left out), and where the map stopped: the plan's end, or the first batch
    /// whose keys did not fit.
    fn build_map(
        &self,
        plan: &Plan,
        checkpoint: i64,
        memory: usize,
        stats: &mut CompactionStats,
    ) -> StoreResult<(OffsetMap, i64)> {
        let mut map = OffsetMap::with_memory(memory);
        let dirty = plan
            .segments
            .iter()
            .filter(|s| s.next_offset.load(Ordering::Acquire) > checkpoint);
        for seg in dirty {
            let mut r = BatchReader::new(&seg.log, &seg.log_path, seg.size());
            while let Some(b) = r.next_batch()? {
                let h = &b.header;
                if h.last_offset() < checkpoint || self.is_aborted(h) {
                    continue;
                }
                if !map
                    .add_batch(&b.bytes, checkpoint)
                    .map_err(|e| corrupt_in(seg, e))?
                {
                    if map.is_empty() {
                        return Err(StoreError::Internal(format!(
                            "the cleaner's key map ({memory} bytes, {} keys) cannot hold the \
                             keys of the batch at offset {} of {}; raise cleaner_memory_bytes",
                            map.capacity(),
                            h.base_offset,
                            seg.log_path.display()
                        )));
                    }
                    stats.bytes_read += r.bytes_read;
                    return Ok((map, h.base_offset));
                }
            }
            stats.bytes_read += r.bytes_read;
        }
        Ok((map, plan.end))
    }

    /// Saves the cleaner checkpoint (synced) and keeps it.
    fn save_checkpoint(&self, c: Checkpoint) -> StoreResult<()> {
        cleaner::write_checkpoint(&self.dir, &self.io, c)?;
        *self.checkpoint.lock() = c;
        Ok(())
    }

    /// True for a data batch of an aborted transaction.
    fn is_aborted(&self, h: &BatchHeader) -> bool {
        if !h.is_transactional || h.is_control {
            return false;
        }
        let Some(p) = h.producer() else { return false };
        let st = self.state.lock();
        st.producers.txns.is_aborted(p.producer_id, h.base_offset)
    }

    /// Cleans one closed segment: batches below `cut` (and not wholly below the log start)
    /// go through `clean_batch`, the others stay as they are. Swaps the cleaned copy in when
    /// anything changed.
    fn clean_segment(
        &self,
        seg: &Arc<Segment>,
        cx: &CleanContext<'_>,
        cut: i64,
        log_start: i64,
        interval: u64,
        stats: &mut CompactionStats,
    ) -> StoreResult<()> {
        let mut r = BatchReader::new(&seg.log, &seg.log_path, seg.size());
        let mut w = CleanedWriter::new(
            &self.dir,
            seg.base,
            &self.io,
            interval,
            &seg.log,
            &seg.log_path,
        );
        let result = (|| -> StoreResult<Option<CleanedFiles>> {
            while let Some(b) = r.next_batch()? {
                let h = &b.header;
                if h.base_offset >= cut || h.last_offset() < log_start {
                    w.keep(&b)?;
                    continue;
                }
                let aborted = self.is_aborted(h);
                let out = kafka_batch::clean_batch(&b.bytes, cx, aborted)
                    .map_err(|e| corrupt_in(seg, e))?;
                stats.records_removed += out.records_removed;
                match out.action {
                    Cleaned::Keep => w.keep(&b)?,
                    Cleaned::Remove => w.remove()?,
                    Cleaned::Rewrite(bytes) => {
                        let nh = BatchHeader::parse(&bytes).ok_or_else(|| {
                            StoreError::Internal(format!(
                                "the cleaner's copy of the batch at offset {} of {} does not \
                                 parse",
                                h.base_offset,
                                seg.log_path.display()
                            ))
                        })?;
                        w.replace(&nh, &bytes)?;
                    }
                }
            }
            stats.bytes_read += r.bytes_read;
            stats.bytes_written += w.bytes_written;
            Ok(w.finish()?)
        })();
        match result {
            Ok(Some(files)) => self.swap_segment(seg, files),
            Ok(None) => Ok(()),
            Err(e) => {
                for ext in ["log", "index", "timeindex"] {
                    let _ = std::fs::remove_file(cleaner::cleaned_path(&self.dir, seg.base, ext));
                }
                Err(e)
            }
        }
    }

    /// Replaces `old` by its cleaned copy, Kafka style: `<base>.log.cleaned` (synced) is
    /// renamed to `<base>.log.swap`, the old `<base>.log` to `<base>.log.deleted`, the swap
    /// file to `<base>.log` (and the indexes to their names), then the directory is synced and
    /// the old file removed. A crash at any point leaves files that
    /// [`cleaner::recover_swaps`] turns into the old segment or the new one. The renames are
    /// made under the partition lock, so a segment retention removed meanwhile is not
    /// brought back. Readers holding the old segment keep reading its (unlinked) file; new
    /// reads get the new one.
    fn swap_segment(&self, old: &Arc<Segment>, files: CleanedFiles) -> StoreResult<()> {
        let io = &self.io;
        let s = stem(old.base);
        let path = |ext: &str| self.dir.join(format!("{s}.{ext}"));
        let injected = |e: std::io::Error| StoreError::Internal(e.to_string());
        io.cleaner_step(CleanerStop::CleanedWritten)
            .map_err(injected)?;
        let rename = |from: &str, to: &str| {
            std::fs::rename(path(from), path(to)).map_err(|e| {
                StoreError::from(LogError::io(
                    format!(
                        "renaming {} to {}",
                        path(from).display(),
                        path(to).display()
                    ),
                    e,
                ))
            })
        };
        let mut st = self.state.lock();
        let Some(i) = st.segments.iter().position(|x| Arc::ptr_eq(x, old)) else {
            // Retention removed it meanwhile.
            drop(st);
            files.discard(&self.dir);
            return Ok(());
        };
        rename("log.cleaned", "log.swap")?;
        io.cleaner_step(CleanerStop::SwapRenamed)
            .map_err(injected)?;
        if let Err(e) = rename("log", "log.deleted") {
            let _ = std::fs::remove_file(path("log.swap"));
            return Err(e);
        }
        io.cleaner_step(CleanerStop::OldDeleted).map_err(injected)?;
        if let Err(e) = rename("log.swap", "log") {
            let _ = rename("log.deleted", "log");
            let _ = std::fs::remove_file(path("log.swap"));
            return Err(e);
        }
        let mut files = files;
        for (ext, ix) in [
            ("index", &mut files.offset_index),
            ("timeindex", &mut files.time_index),
        ] {
            // A failure costs nothing: indexes are checked and rebuilt on open.
            match rename(&format!("{ext}.cleaned"), ext) {
                Ok(()) => ix.renamed(&path(ext)),
                Err(e) => tracing::warn!(error = %e, "cannot rename a cleaned index"),
            }
        }
        let new = Arc::new(Segment::cleaned(old, files, path("log")));
        st.segments[i] = new;
        drop(st);
        sync_dir(io, &self.dir).map_err(|e| LogError::io("syncing the partition", e))?;
        let _ = std::fs::remove_file(path("log.deleted"));
        Ok(())
    }
}
