//! [`LogStore`]: the `broker_api::Store` over partitions of segment files and the metadata
//! journal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use broker_api::{
    validate_group_name, validate_topic_name, AppendBatch, AppendResult, BatchLimits,
    CommittedOffset, CompactionStats, Durability, FetchLimits, FetchResult, FetchedBatches, Lease,
    LeaseCounts, LeaseGroupConfig, LeaseToken, MetricValue, OffsetAndTimestamp, OffsetCommit,
    PartitionOffsets, ProducerIdentity, SharedClock, Store, StoreError, StoreMetric, StoreResult,
    TimestampType, TopicConfig, TopicInfo,
};
use broker_api::{AclBinding, ScramCredential, ScramMechanism};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::damage::{DamageLog, PartLabel};
use crate::error::{LogError, LogResult};
use crate::io::{sync_dir, FaultInjector, Io, SyncFailure};
use crate::lease::{PartLeases, Phase, RecState};
use crate::meta::{Meta, Op, Opaque};
use crate::partition::{CompactParams, Layout, Partition};

mod cleaner_metrics;
mod group_configs;
mod leasing;
mod report;
mod transactions;

/// Name of the clean-shutdown marker file in the store directory.
pub const CLEAN_SHUTDOWN: &str = "clean-shutdown";
/// Name of the file holding the store's format version (a decimal number and a newline).
pub const FORMAT_VERSION_FILE: &str = "format-version";
/// The store format this binary writes and the only one it reads. Bumped whenever a change
/// of the files would be misread by another binary, which then refuses the directory (see
/// docs/operations.md, "Upgrades"). 3: `.log` files hold Kafka record batches (format v2);
/// 1 and 2 held the store's own batch framing.
pub const FORMAT_VERSION: u32 = 3;

/// Checks the directory's format version before anything is read or repaired: a newer one is
/// refused (an older binary would take the new batches for a torn tail and cut them off), an
/// older one too (its batches are in a framing this binary does not read; a directory with
/// metadata but no version file is one of those, version 1). A new directory gets the file.
fn check_format_version(dir: &Path, io: &Io, fresh: bool) -> LogResult<()> {
    let path = dir.join(FORMAT_VERSION_FILE);
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u32>().map_err(|_| {
            LogError::Metadata(format!(
                "{} holds {:?}, not a format version",
                path.display(),
                text.trim()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && fresh => {
            return write_format_version(dir, io)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
        Err(e) => return Err(LogError::io(format!("reading {}", path.display()), e)),
    };
    if found > FORMAT_VERSION {
        return Err(LogError::FormatTooNew {
            dir: dir.display().to_string(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    if found < FORMAT_VERSION && fresh {
        // No metadata: no data either.
        return write_format_version(dir, io);
    }
    if found < FORMAT_VERSION {
        return Err(LogError::FormatTooOld {
            file: path.display().to_string(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn write_format_version(dir: &Path, io: &Io) -> LogResult<()> {
    let tmp = dir.join(format!("{FORMAT_VERSION_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{FORMAT_VERSION}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(FORMAT_VERSION_FILE))?;
        sync_dir(io, dir)
    };
    write().map_err(|e| LogError::io("writing the format version", e))
}

/// Store-wide settings.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Log bytes between two index entries (Kafka's `index.interval.bytes`).
    pub index_interval_bytes: u64,
    /// Segment size when the topic does not set one.
    pub segment_bytes: u64,
    /// Segment age when the topic does not set one.
    pub segment_ms: i64,
    /// Largest size of a `.index` (the `.timeindex` gets room for as many entries); the
    /// files start small and grow, and a segment rolls when its index is full (Kafka's
    /// `segment.index.bytes`).
    pub index_bytes: usize,
    /// Check every batch's CRC when reading it.
    pub verify_reads: bool,
    /// The metadata journal is compacted into a snapshot past this size.
    pub snapshot_bytes: u64,
    /// Memory for the cleaner's key map (Kafka's `log.cleaner.dedupe.buffer.size`): one
    /// compaction call takes the keys of as many batches as fit and cleans up to there.
    pub cleaner_memory_bytes: usize,
    /// Injected disk faults, for tests.
    pub faults: Option<Arc<FaultInjector>>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            index_interval_bytes: 4096,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_bytes: 10 << 20,
            verify_reads: true,
            snapshot_bytes: 8 << 20,
            cleaner_memory_bytes: 32 << 20,
            faults: None,
        }
    }
}

struct TopicHandle {
    id: u64,
    config: RwLock<TopicConfig>,
    partitions: Vec<Arc<Partition>>,
    dir: PathBuf,
}

impl TopicHandle {
    fn partition(&self, name: &str, p: i32) -> StoreResult<&Arc<Partition>> {
        if p < 0 {
            return Err(StoreError::UnknownTopic(format!("{name}/{p}")));
        }
        self.partitions
            .get(p as usize)
            .ok_or_else(|| StoreError::UnknownTopic(format!("{name}/{p}")))
    }
}

struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Inner {
    dir: PathBuf,
    opts: LogOptions,
    io: Io,
    clock: SharedClock,
    closed: AtomicBool,
    topics: RwLock<BTreeMap<String, Arc<TopicHandle>>>,
    meta: Mutex<Meta>,
    meta_sync: tokio::sync::Mutex<()>,
    meta_synced: AtomicU64,
    meta_dirty: AtomicBool,
    /// Set when a journal fsync failed: no more journal entries until the store is reopened
    /// (a later fsync could report good while the failed pages are gone).
    meta_failed: SyncFailure,
    flusher: Mutex<Option<Flusher>>,
    /// The directory lock (see `dir_lock`), released on close (or when the store is
    /// dropped, or the process ends).
    dir_lock: Mutex<Option<std::fs::File>>,
    /// Damaged batches found since open.
    damage: Arc<DamageLog>,
    /// SCRAM credentials and ACLs (`security.json`).
    security: crate::security::SecurityFile,
    /// What the cleaner did since open.
    cleaner: crate::cleaner::CleanerMetrics,
}

/// The log store. Cheap to share through `Arc<dyn Store>`.
pub struct LogStore {
    inner: Arc<Inner>,
}

fn topic_dir(root: &Path, name: &str, id: u64) -> PathBuf {
    root.join("topics").join(format!("{name}~{id}"))
}

/// Appended bytes between two early writebacks of a partition (RocksDB's `bytes_per_sync`).
const WRITEBACK_BYTES: u64 = 1 << 20;

fn layout(opts: &LogOptions, cfg: &TopicConfig) -> Layout {
    Layout {
        segment_bytes: cfg.segment_bytes.unwrap_or(opts.segment_bytes).max(1),
        segment_ms: cfg.segment_ms.unwrap_or(opts.segment_ms).max(1),
        index_interval: opts.index_interval_bytes.max(1),
        index_bytes: opts.index_bytes.max(64),
        // `always` syncs every append anyway.
        writeback_bytes: (cfg.durability != Durability::Always).then_some(WRITEBACK_BYTES),
    }
}

fn validate_config(cfg: &TopicConfig) -> StoreResult<()> {
    if cfg.partitions == 0 {
        return Err(StoreError::InvalidArgument(
            "a topic needs at least one partition".into(),
        ));
    }
    if cfg.partitions > 100_000 {
        return Err(StoreError::InvalidArgument(format!(
            "{} partitions is more than the 100000 allowed",
            cfg.partitions
        )));
    }
    if cfg.segment_bytes == Some(0) {
        return Err(StoreError::InvalidArgument(
            "segment_bytes must be positive".into(),
        ));
    }
    if cfg.segment_ms.is_some_and(|ms| ms <= 0) {
        return Err(StoreError::InvalidArgument(
            "segment_ms must be positive".into(),
        ));
    }
    if let Durability::Interval { ms: 0 } = cfg.durability {
        return Err(StoreError::InvalidArgument(
            "fsync interval must be positive".into(),
        ));
    }
    Ok(())
}

impl LogStore {
    /// Opens the store in `dir` (creating it empty). After an unclean shutdown every
    /// partition's last segment is verified and cut back to its last good batch; a clean
    /// shutdown skips that.
    pub fn open(dir: &Path, opts: LogOptions, clock: SharedClock) -> LogResult<LogStore> {
        let io = Io::new(opts.faults.clone());
        std::fs::create_dir_all(dir.join("topics"))
            .map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        // Before anything is read or written: a second process on the directory is refused.
        let dir_lock = crate::dir_lock::lock(dir)?;
        // A directory without metadata has never held a store: nothing to recover.
        let fresh = !dir.join("meta").exists();
        check_format_version(dir, &io, fresh)?;
        let marker = dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let mut meta = Meta::load(&dir.join("meta"), &io, opts.snapshot_bytes)?;
        let damage = Arc::new(DamageLog::default());
        let now = clock.now_ms();
        let mut topics = BTreeMap::new();
        let mut known = HashSet::new();
        for (name, t) in &meta.state.topics {
            let tdir = topic_dir(dir, name, t.id);
            known.insert(tdir.clone());
            let lay = layout(&opts, &t.config);
            let mut parts = Vec::with_capacity(t.config.partitions as usize);
            for p in 0..t.config.partitions {
                let ls = t.log_start.get(p as usize).copied().unwrap_or(0);
                let label = PartLabel {
                    topic: name.clone(),
                    partition: p as i32,
                    damage: damage.clone(),
                };
                let part =
                    Partition::open(&tdir.join(p.to_string()), !clean, ls, lay, &io, now, label)?;
                parts.push(Arc::new(part));
            }
            topics.insert(
                name.clone(),
                Arc::new(TopicHandle {
                    id: t.id,
                    config: RwLock::new(t.config.clone()),
                    partitions: parts,
                    dir: tdir,
                }),
            );
        }
        // Lease state past a partition's end (the log lost a tail the journal kept, possible
        // after a machine crash under `interval` or `never`) must not mark new records done.
        let mut cut = false;
        for (name, groups) in meta.state.leases.iter_mut() {
            let Some(t) = topics.get(name) else { continue };
            for parts in groups.values_mut() {
                for (p, st) in parts.iter_mut() {
                    if let Some(part) = t.partitions.get(*p as usize) {
                        let (_, hw) = part.offsets();
                        cut |= st.truncate(hw);
                    }
                }
            }
        }
        if cut {
            // Persist the cut state, so a journal replay cannot bring the old state back.
            tracing::warn!("lease state ran past the end of a partition's log; cut back");
            meta.compact()?;
        }
        // Directories of topics deleted before a crash.
        if let Ok(rd) = std::fs::read_dir(dir.join("topics")) {
            for e in rd.flatten() {
                if !known.contains(&e.path()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        if clean {
            std::fs::remove_file(&marker)
                .map_err(|e| LogError::io("removing the clean-shutdown marker", e))?;
            sync_dir(&io, dir).map_err(|e| LogError::io("syncing the store directory", e))?;
        }
        let last_shutdown = if fresh {
            "none (new store)"
        } else if clean {
            "clean"
        } else {
            "unclean (recovered)"
        };
        tracing::info!(dir = %dir.display(), last_shutdown, topics = topics.len(), format_version = FORMAT_VERSION, "opened log store");
        let security = crate::security::SecurityFile::load(dir)?;
        let inner = Arc::new(Inner {
            security,
            dir: dir.to_path_buf(),
            opts,
            io,
            clock,
            closed: AtomicBool::new(false),
            topics: RwLock::new(topics),
            meta: Mutex::new(meta),
            meta_sync: tokio::sync::Mutex::new(()),
            meta_synced: AtomicU64::new(0),
            meta_failed: SyncFailure::default(),
            meta_dirty: AtomicBool::new(false),
            flusher: Mutex::new(None),
            dir_lock: Mutex::new(Some(dir_lock)),
            damage,
            cleaner: Default::default(),
        });
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(&inner);
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || flusher_loop(weak, stop2))
            .map_err(|e| LogError::io("starting the flusher", e))?;
        *inner.flusher.lock() = Some(Flusher {
            stop,
            thread: Some(thread),
        });
        Ok(LogStore { inner })
    }

    /// Fsyncs every partition with unsynced appends and the metadata journal, whatever the
    /// topics' durability policies; returns once all of it is on stable storage.
    pub fn sync_all(&self) -> StoreResult<()> {
        self.inner.check_open()?;
        let topics: Vec<Arc<TopicHandle>> = self.inner.topics.read().values().cloned().collect();
        for t in topics {
            for p in &t.partitions {
                p.sync_if_dirty()?;
            }
        }
        self.inner.sync_meta_blocking()
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Damaged batches found since the store was opened (each counted once): tails cut
    /// off at open, damaged sealed segments, and batches reads refused.
    pub fn corrupt_batches_total(&self) -> u64 {
        self.inner.damage.count()
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.inner.stop_flusher();
    }
}

/// Removes the directories of partitions `range` of a topic (a growth that failed).
fn remove_partition_dirs(topic_dir: &Path, range: std::ops::Range<usize>) {
    for p in range {
        let _ = std::fs::remove_dir_all(topic_dir.join(p.to_string()));
    }
}

/// Fsyncs, every interval, the partitions of `interval` topics and the metadata journal.
/// How often pages read through segment mappings are let go of.
const RELEASE_MAPPED_EVERY: Duration = Duration::from_secs(1);

fn flusher_loop(inner: Weak<Inner>, stop: Arc<(Mutex<bool>, Condvar)>) {
    let mut last: HashMap<u64, Instant> = HashMap::new();
    let mut last_meta = Instant::now();
    let backstop = Duration::from_millis(broker_api::DEFAULT_FSYNC_INTERVAL_MS);
    let mut last_backstop = Instant::now();
    let mut last_release = Instant::now();
    loop {
        {
            let mut stopped = stop.0.lock();
            if *stopped {
                return;
            }
            stop.1.wait_for(&mut stopped, Duration::from_millis(10));
            if *stopped {
                return;
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let topics: Vec<Arc<TopicHandle>> = inner.topics.read().values().cloned().collect();
        let mut min_ms = u64::MAX;
        let backstop_due = last_backstop.elapsed() >= backstop;
        if backstop_due {
            last_backstop = Instant::now();
        }
        // Pages read through segment mappings would otherwise pile up in the resident set.
        if last_release.elapsed() >= RELEASE_MAPPED_EVERY {
            last_release = Instant::now();
            for t in &topics {
                for p in &t.partitions {
                    p.release_mapped_pages();
                }
            }
        }
        for t in topics {
            let d = t.config.read().durability;
            if d == Durability::Always && backstop_due {
                // Records whose appender went away before its sync (a cancelled call) would
                // otherwise stay invisible until the next append.
                for p in &t.partitions {
                    if p.has_unpublished() {
                        if let Err(e) = p.sync_now() {
                            tracing::warn!(error = %e, "background fsync failed");
                        }
                    }
                }
            }
            if let Durability::Interval { ms } = d {
                min_ms = min_ms.min(ms);
                let due = last
                    .get(&t.id)
                    .is_none_or(|at| at.elapsed() >= Duration::from_millis(ms));
                if due {
                    last.insert(t.id, Instant::now());
                    for p in &t.partitions {
                        if let Err(e) = p.sync_if_dirty() {
                            tracing::warn!(error = %e, "background fsync failed");
                        }
                    }
                }
            }
        }
        let meta_ms = if min_ms == u64::MAX {
            broker_api::DEFAULT_FSYNC_INTERVAL_MS
        } else {
            min_ms
        };
        if last_meta.elapsed() >= Duration::from_millis(meta_ms)
            && inner.meta_dirty.load(Ordering::Acquire)
        {
            last_meta = Instant::now();
            if let Err(e) = inner.sync_meta_blocking() {
                tracing::warn!(error = %e, "background journal fsync failed");
            }
        }
    }
}

impl Inner {
    fn stop_flusher(&self) {
        let f = self.flusher.lock().take();
        if let Some(mut f) = f {
            *f.stop.0.lock() = true;
            f.stop.1.notify_all();
            if let Some(t) = f.thread.take() {
                if t.thread().id() != std::thread::current().id() {
                    let _ = t.join();
                }
            }
        }
    }

    /// Names partition `p` of `topic` in damage reports.
    fn label(&self, topic: &str, p: i32) -> PartLabel {
        PartLabel {
            topic: topic.to_string(),
            partition: p,
            damage: self.damage.clone(),
        }
    }

    fn check_open(&self) -> StoreResult<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn topic(&self, name: &str) -> StoreResult<Arc<TopicHandle>> {
        self.check_open()?;
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))
    }

    /// Journals `op`; returns its sequence number.
    fn record(&self, meta: &mut Meta, op: Op) -> StoreResult<u64> {
        self.meta_failed.check()?;
        let seq = meta.record(op)?;
        self.meta_dirty.store(true, Ordering::Release);
        Ok(seq)
    }

    fn sync_meta_blocking(&self) -> StoreResult<()> {
        self.meta_failed.check()?;
        self.meta_dirty.store(false, Ordering::Release);
        let (seq, file) = self.meta.lock().sync_target();
        let r = self.io.sync_data(&file);
        self.end_meta_sync(seq, r)
    }

    /// Records the outcome of a journal fsync that covered entries up to `seq`.
    fn end_meta_sync(&self, seq: u64, r: std::io::Result<()>) -> StoreResult<()> {
        if let Err(e) = r {
            let err = StoreError::from(LogError::io("syncing the journal", e));
            self.meta_failed.record(
                &err,
                "the store takes no more offset commits, acks or topic changes until it is reopened"
                    .into(),
            );
            return Err(err);
        }
        self.meta_synced.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    /// Returns once journal entry `seq` is durable; concurrent callers share one fsync.
    async fn sync_meta(&self, seq: u64) -> StoreResult<()> {
        if self.meta_synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _g = self.meta_sync.lock().await;
        if self.meta_synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        self.meta_failed.check()?;
        let (target, file) = self.meta.lock().sync_target();
        let io = self.io.clone();
        let r = tokio::task::spawn_blocking(move || io.sync_data(&file))
            .await
            .map_err(|e| StoreError::Internal(format!("sync task failed: {e}")))?;
        self.end_meta_sync(target, r)
    }

    /// Makes journal entry `seq` durable now when `d` asks for it.
    async fn meta_durable(&self, seq: u64, d: Durability) -> StoreResult<()> {
        if d == Durability::Always {
            self.sync_meta(seq).await
        } else {
            Ok(())
        }
    }

    fn info(name: &str, t: &TopicHandle) -> TopicInfo {
        TopicInfo {
            name: name.to_string(),
            config: t.config.read().clone(),
        }
    }

    fn append_sync(
        &self,
        t: &TopicHandle,
        name: &str,
        partition: i32,
        batch: &AppendBatch,
    ) -> StoreResult<(AppendResult, Arc<Partition>, Durability)> {
        let p = t.partition(name, partition)?.clone();
        if batch.records.is_empty() {
            return Err(StoreError::InvalidArgument("empty batch".into()));
        }
        let (max_record_bytes, durability, lay, compacted) = {
            let cfg = t.config.read();
            (
                cfg.max_record_bytes,
                cfg.durability,
                layout(&self.opts, &cfg),
                cfg.cleanup.compact,
            )
        };
        if compacted && batch.records.iter().any(|r| r.key.is_none()) {
            return Err(kafka_batch::missing_key(name, partition).into());
        }
        for r in &batch.records {
            let size = r.size();
            if size > max_record_bytes {
                return Err(StoreError::RecordTooLarge {
                    size,
                    limit: max_record_bytes,
                });
            }
            for h in &r.headers {
                if h.key.len() > u32::MAX as usize / 2 {
                    return Err(StoreError::InvalidArgument("header key too long".into()));
                }
            }
        }
        if batch.records.len() > u32::MAX as usize / 2 {
            return Err(StoreError::InvalidArgument(
                "batch has too many records".into(),
            ));
        }
        if let Some(pb) = &batch.producer {
            if pb.first_sequence < 0 || pb.producer_id < 0 || pb.epoch < 0 {
                return Err(StoreError::InvalidArgument(
                    "producer id, epoch and sequence must not be negative".into(),
                ));
            }
        }
        let now = self.clock.now_ms();
        // Under `always`, readers see the records only once they are synced.
        let publish = durability != Durability::Always;
        let res = p.append(&batch.records, batch.producer, now, lay, publish)?;
        Ok((res, p, durability))
    }

    /// Moves a partition's log start and persists it.
    async fn move_log_start(
        &self,
        name: &str,
        t: &TopicHandle,
        partition: i32,
        before: i64,
    ) -> StoreResult<i64> {
        let p = t.partition(name, partition)?;
        let (old, _) = p.offsets();
        let new = p.set_log_start(before)?;
        if new > old {
            let seq = {
                let mut meta = self.meta.lock();
                self.record(
                    &mut meta,
                    Op::LogStart {
                        topic: name.to_string(),
                        partition,
                        offset: new,
                    },
                )?
            };
            self.sync_meta(seq).await?;
            p.drop_segments();
        }
        Ok(new)
    }
}

#[async_trait]
impl Store for LogStore {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn create_topic(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo> {
        let inner = &self.inner;
        inner.check_open()?;
        validate_topic_name(name)?;
        validate_config(&config)?;
        let seq = {
            let mut meta = inner.meta.lock();
            if meta.state.topics.contains_key(name) {
                return Err(StoreError::TopicExists(name.to_string()));
            }
            let id = meta.state.next_topic_id;
            let tdir = topic_dir(&inner.dir, name, id);
            let lay = layout(&inner.opts, &config);
            let now = inner.clock.now_ms();
            let mut parts = Vec::new();
            for p in 0..config.partitions {
                let label = inner.label(name, p as i32);
                match Partition::open(
                    &tdir.join(p.to_string()),
                    false,
                    0,
                    lay,
                    &inner.io,
                    now,
                    label,
                ) {
                    Ok(part) => parts.push(Arc::new(part)),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&tdir);
                        return Err(e.into());
                    }
                }
            }
            let _ = sync_dir(&inner.io, &inner.dir.join("topics"));
            let seq = match inner.record(
                &mut meta,
                Op::CreateTopic {
                    name: name.to_string(),
                    id,
                    config: config.clone(),
                },
            ) {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tdir);
                    return Err(e);
                }
            };
            inner.topics.write().insert(
                name.to_string(),
                Arc::new(TopicHandle {
                    id,
                    config: RwLock::new(config.clone()),
                    partitions: parts,
                    dir: tdir,
                }),
            );
            seq
        };
        inner.sync_meta(seq).await?;
        Ok(TopicInfo {
            name: name.to_string(),
            config,
        })
    }

    async fn delete_topic(&self, name: &str) -> StoreResult<()> {
        let inner = &self.inner;
        let t = inner.topic(name)?;
        let seq = {
            let mut meta = inner.meta.lock();
            if meta.state.topics.get(name).is_none_or(|m| m.id != t.id) {
                return Err(StoreError::UnknownTopic(name.to_string()));
            }
            let seq = inner.record(
                &mut meta,
                Op::DeleteTopic {
                    name: name.to_string(),
                    id: t.id,
                },
            )?;
            inner.topics.write().remove(name);
            seq
        };
        inner.sync_meta(seq).await?;
        let _ = std::fs::remove_dir_all(&t.dir);
        Ok(())
    }

    async fn list_topics(&self) -> StoreResult<Vec<TopicInfo>> {
        self.inner.check_open()?;
        Ok(self
            .inner
            .topics
            .read()
            .iter()
            .map(|(n, t)| Inner::info(n, t))
            .collect())
    }

    async fn describe_topic(&self, name: &str) -> StoreResult<TopicInfo> {
        let t = self.inner.topic(name)?;
        Ok(Inner::info(name, &t))
    }

    async fn update_topic_config(&self, name: &str, config: TopicConfig) -> StoreResult<TopicInfo> {
        let inner = &self.inner;
        inner.topic(name)?;
        validate_config(&config)?;
        let seq = {
            let mut meta = inner.meta.lock();
            // Under the metadata lock no other update can swap the handle meanwhile.
            let t = inner.topic(name)?;
            let old = t.partitions.len();
            let new = config.partitions as usize;
            if new < old {
                return Err(StoreError::InvalidArgument(format!(
                    "the partition count of {name} cannot shrink from {old} to {new}"
                )));
            }
            let mut added = Vec::with_capacity(new - old);
            if new > old {
                let lay = layout(&inner.opts, &config);
                let now = inner.clock.now_ms();
                for p in old..new {
                    let pdir = t.dir.join(p.to_string());
                    // A directory left by a growth that failed before its journal entry.
                    let _ = std::fs::remove_dir_all(&pdir);
                    let label = inner.label(name, p as i32);
                    match Partition::open(&pdir, false, 0, lay, &inner.io, now, label) {
                        Ok(part) => added.push(Arc::new(part)),
                        Err(e) => {
                            remove_partition_dirs(&t.dir, old..p + 1);
                            return Err(e.into());
                        }
                    }
                }
                let _ = sync_dir(&inner.io, &t.dir);
            }
            let seq = match inner.record(
                &mut meta,
                Op::UpdateTopic {
                    name: name.to_string(),
                    config: config.clone(),
                },
            ) {
                Ok(seq) => seq,
                Err(e) => {
                    remove_partition_dirs(&t.dir, old..new);
                    return Err(e);
                }
            };
            if added.is_empty() {
                *t.config.write() = config.clone();
            } else {
                // A new handle with the new config and every partition: no call sees the new
                // count without the new partitions. Calls holding the old handle keep using
                // the old partitions, which are shared.
                let mut partitions = t.partitions.clone();
                partitions.extend(added);
                inner.topics.write().insert(
                    name.to_string(),
                    Arc::new(TopicHandle {
                        id: t.id,
                        config: RwLock::new(config.clone()),
                        partitions,
                        dir: t.dir.clone(),
                    }),
                );
            }
            seq
        };
        inner.sync_meta(seq).await?;
        Ok(TopicInfo {
            name: name.to_string(),
            config,
        })
    }

    async fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: AppendBatch,
    ) -> StoreResult<AppendResult> {
        let t = self.inner.topic(topic)?;
        let (res, p, durability) = self.inner.append_sync(&t, topic, partition, &batch)?;
        if durability == Durability::Always {
            p.sync_to(res.last_offset + 1).await?;
        }
        Ok(res)
    }

    async fn append_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        timestamps: TimestampType,
    ) -> StoreResult<AppendResult> {
        let inner = &self.inner;
        let t = inner.topic(topic)?;
        let p = t.partition(topic, partition)?.clone();
        let (max_record_bytes, durability, lay, compacted) = {
            let cfg = t.config.read();
            (
                cfg.max_record_bytes,
                cfg.durability,
                layout(&inner.opts, &cfg),
                cfg.cleanup.compact,
            )
        };
        let now = inner.clock.now_ms();
        let stamp = match timestamps {
            TimestampType::CreateTime => kafka_batch::Timestamps::Create,
            TimestampType::LogAppendTime => kafka_batch::Timestamps::LogAppend(now),
        };
        let valid = kafka_batch::validate(batch, stamp, max_record_bytes)?;
        if compacted && !valid.all_keyed {
            return Err(kafka_batch::missing_key(topic, partition).into());
        }
        if let Some(pb) = valid.header.producer() {
            if pb.first_sequence < 0 || pb.epoch < 0 {
                return Err(StoreError::InvalidBatch(
                    "an idempotent batch needs a non-negative epoch and base sequence".into(),
                ));
            }
        }
        // Under `always`, readers see the records only once they are synced.
        let res = p.append_batch(&valid, now, lay, durability != Durability::Always)?;
        if durability == Durability::Always {
            p.sync_to(res.last_offset + 1).await?;
        }
        Ok(res)
    }

    async fn init_producer_id(&self) -> StoreResult<ProducerIdentity> {
        let inner = &self.inner;
        inner.check_open()?;
        let (id, seq) = {
            let mut meta = inner.meta.lock();
            let id = meta.state.next_producer_id.max(1);
            let seq = inner.record(&mut meta, Op::NextProducerId(id + 1))?;
            (id, seq)
        };
        inner.sync_meta(seq).await?;
        Ok(ProducerIdentity {
            producer_id: id,
            epoch: 0,
        })
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: FetchLimits,
    ) -> StoreResult<FetchResult> {
        let t = self.inner.topic(topic)?;
        let p = t.partition(topic, partition)?;
        p.read(offset, limits, self.inner.opts.verify_reads)
    }

    async fn fetch_batches(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limits: BatchLimits,
    ) -> StoreResult<FetchedBatches> {
        let t = self.inner.topic(topic)?;
        let p = t.partition(topic, partition)?;
        p.read_batches(offset, limits, self.inner.opts.verify_reads)
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> StoreResult<bool> {
        let t = self.inner.topic(topic)?;
        let p = t.partition(topic, partition)?;
        let mut rx = p.watch_hw();
        let r = tokio::time::timeout(timeout, rx.wait_for(|hw| *hw > offset)).await;
        Ok(matches!(r, Ok(Ok(_))))
    }

    async fn partition_offsets(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<PartitionOffsets> {
        let t = self.inner.topic(topic)?;
        let (log_start_offset, high_watermark, last_stable_offset) =
            t.partition(topic, partition)?.stable_offsets();
        Ok(PartitionOffsets {
            log_start_offset,
            high_watermark,
            last_stable_offset,
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        let t = self.inner.topic(topic)?;
        t.partition(topic, partition)?
            .offset_for_timestamp(timestamp_ms)
    }

    async fn max_timestamp_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<OffsetAndTimestamp>> {
        let t = self.inner.topic(topic)?;
        t.partition(topic, partition)?.max_timestamp_offset()
    }

    async fn commit_offsets(&self, group: &str, commits: &[OffsetCommit]) -> StoreResult<()> {
        let inner = &self.inner;
        inner.check_open()?;
        validate_group_name(group)?;
        let mut durability = Durability::Never;
        for c in commits {
            let t = inner.topic(&c.topic)?;
            t.partition(&c.topic, c.partition)?;
            if t.config.read().durability == Durability::Always {
                durability = Durability::Always;
            }
        }
        if commits.is_empty() {
            return Ok(());
        }
        let seq = {
            let mut meta = inner.meta.lock();
            for c in commits {
                if !meta.state.topics.contains_key(&c.topic) {
                    return Err(StoreError::UnknownTopic(c.topic.clone()));
                }
            }
            inner.record(
                &mut meta,
                Op::Commit {
                    group: group.to_string(),
                    commits: commits.to_vec(),
                },
            )?
        };
        inner.meta_durable(seq, durability).await
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Option<CommittedOffset>> {
        let t = self.inner.topic(topic)?;
        t.partition(topic, partition)?;
        let meta = self.inner.meta.lock();
        Ok(meta
            .state
            .commits
            .get(group)
            .and_then(|g| g.get(topic))
            .and_then(|p| p.get(&partition))
            .cloned())
    }

    async fn list_committed(&self, group: &str) -> StoreResult<Vec<OffsetCommit>> {
        self.inner.check_open()?;
        let meta = self.inner.meta.lock();
        let mut out = Vec::new();
        if let Some(g) = meta.state.commits.get(group) {
            for (topic, parts) in g {
                for (p, c) in parts {
                    out.push(OffsetCommit {
                        topic: topic.clone(),
                        partition: *p,
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn list_consumer_groups(&self) -> StoreResult<Vec<String>> {
        self.inner.check_open()?;
        let meta = self.inner.meta.lock();
        Ok(meta
            .state
            .commits
            .iter()
            .filter(|(_, g)| g.values().any(|p| !p.is_empty()))
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn delete_committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> StoreResult<u64> {
        let inner = &self.inner;
        inner.check_open()?;
        validate_group_name(group)?;
        let (removed, seq, durability) = {
            let mut meta = inner.meta.lock();
            // Counted first, so nothing is journaled when nothing would change.
            let removed = match (meta.state.commits.get(group), partitions) {
                (None, _) => 0,
                (Some(g), None) => g.values().map(|p| p.len() as u64).sum(),
                (Some(g), Some(list)) => list
                    .iter()
                    .map(|(t, p)| (t.as_str(), *p))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter(|(t, p)| g.get(*t).is_some_and(|parts| parts.contains_key(p)))
                    .count() as u64,
            };
            if removed == 0 {
                return Ok(0);
            }
            // Durable now when any affected topic asks for it.
            let always = |topic: &str| {
                meta.state
                    .topics
                    .get(topic)
                    .is_some_and(|t| t.config.durability == Durability::Always)
            };
            let durability = if meta
                .state
                .commits
                .get(group)
                .is_some_and(|g| g.keys().any(|t| always(t)))
            {
                Durability::Always
            } else {
                Durability::Never
            };
            let seq = inner.record(
                &mut meta,
                Op::DeleteCommits {
                    group: group.to_string(),
                    partitions: partitions.map(<[_]>::to_vec),
                },
            )?;
            (removed, seq, durability)
        };
        inner.meta_durable(seq, durability).await?;
        Ok(removed)
    }

    async fn set_lease_group(
        &self,
        topic: &str,
        group: &str,
        config: LeaseGroupConfig,
    ) -> StoreResult<()> {
        self.inner.set_lease_group(topic, group, config).await
    }

    async fn lease_groups(&self, topic: &str) -> StoreResult<BTreeMap<String, LeaseGroupConfig>> {
        self.inner.lease_groups(topic).await
    }

    async fn lease(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Lease>> {
        self.inner
            .lease(topic, partition, group, max, visibility)
            .await
    }

    async fn ack(
        &self,
        topic: &str,
        group: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        self.inner.ack(topic, group, tokens).await
    }

    async fn release(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        delay: Duration,
    ) -> StoreResult<()> {
        self.inner.release(topic, group, token, delay).await
    }

    async fn extend(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        visibility: Duration,
    ) -> StoreResult<i64> {
        self.inner.extend(topic, group, token, visibility).await
    }

    async fn lease_counts(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<LeaseCounts> {
        self.inner.lease_counts(topic, partition, group).await
    }

    async fn reset_lease_start(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        start: i64,
    ) -> StoreResult<i64> {
        self.inner
            .reset_lease_start(topic, partition, group, start)
            .await
    }

    async fn delete_lease_group(&self, topic: &str, group: &str) -> StoreResult<bool> {
        self.inner.delete_lease_group(topic, group).await
    }

    async fn set_group_config(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> StoreResult<()> {
        self.inner.set_group_config(group, configs).await
    }

    async fn group_config(&self, group: &str) -> StoreResult<BTreeMap<String, String>> {
        self.inner.group_config(group)
    }

    async fn list_group_configs(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        self.inner.list_group_configs()
    }

    async fn save_group_snapshot(&self, group: &str, state: Bytes) -> StoreResult<()> {
        self.inner.save_group_snapshot(group, state).await
    }

    async fn group_snapshot(&self, group: &str) -> StoreResult<Option<Bytes>> {
        self.inner.group_snapshot(group)
    }

    async fn list_group_snapshots(&self, prefix: &str) -> StoreResult<Vec<(String, Bytes)>> {
        self.inner.list_group_snapshots(prefix)
    }

    async fn write_txn_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: broker_api::TxnMarker,
    ) -> StoreResult<i64> {
        self.inner.write_txn_marker(topic, partition, marker).await
    }

    async fn producer_states(
        &self,
        topic: &str,
        partition: i32,
    ) -> StoreResult<Vec<broker_api::ProducerInfo>> {
        self.inner.producer_states(topic, partition)
    }

    async fn delete_records(&self, topic: &str, partition: i32, before: i64) -> StoreResult<i64> {
        let t = self.inner.topic(topic)?;
        self.inner
            .move_log_start(topic, &t, partition, before)
            .await
    }

    async fn enforce_retention(&self, topic: &str) -> StoreResult<u64> {
        let inner = &self.inner;
        let t = inner.topic(topic)?;
        let cfg = t.config.read().clone();
        // Rule **retention_needs_delete_policy**.
        if !cfg.cleanup.delete || (cfg.retention_ms.is_none() && cfg.retention_bytes.is_none()) {
            return Ok(0);
        }
        let now = inner.clock.now_ms();
        let cutoff = cfg.retention_ms.map(|ms| now.saturating_sub(ms));
        let mut removed = 0u64;
        for (i, p) in t.partitions.iter().enumerate() {
            let (old, _) = p.offsets();
            let target = p.retention_target(cutoff, cfg.retention_bytes)?;
            if target > old {
                let new = inner.move_log_start(topic, &t, i as i32, target).await?;
                removed += (new - old) as u64;
            }
        }
        Ok(removed)
    }

    async fn compact(
        &self,
        topic: &str,
        partition: i32,
        min_dirty_ratio: Option<f64>,
    ) -> StoreResult<CompactionStats> {
        let t = self.inner.topic(topic)?;
        let p = t.partition(topic, partition)?.clone();
        let cfg = t.config.read().clone();
        if !cfg.cleanup.compact {
            // Rule **compaction_needs_the_policy**.
            let (log_start, _) = p.offsets();
            return Ok(CompactionStats {
                cleaned_to: log_start,
                ..CompactionStats::default()
            });
        }
        let inner = self.inner.clone();
        let now = inner.clock.now_ms();
        tokio::task::spawn_blocking(move || {
            let params = CompactParams {
                policy: cfg.cleanup,
                now,
                memory: inner.opts.cleaner_memory_bytes,
                min_dirty_ratio,
                index_interval: layout(&inner.opts, &cfg).index_interval,
                metrics: &inner.cleaner,
            };
            p.compact(&params)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("compaction task failed: {e}")))?
    }

    async fn put_credential(&self, credential: ScramCredential) -> StoreResult<()> {
        self.inner.check_open()?;
        self.inner.security.put_credential(credential)
    }

    async fn get_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> StoreResult<Option<ScramCredential>> {
        self.inner.check_open()?;
        Ok(self.inner.security.get_credential(user, mechanism))
    }

    async fn list_credentials(&self) -> StoreResult<Vec<ScramCredential>> {
        self.inner.check_open()?;
        Ok(self.inner.security.list_credentials())
    }

    async fn delete_credential(&self, user: &str, mechanism: ScramMechanism) -> StoreResult<bool> {
        self.inner.check_open()?;
        self.inner.security.delete_credential(user, mechanism)
    }

    async fn create_acls(&self, acls: &[AclBinding]) -> StoreResult<()> {
        self.inner.check_open()?;
        self.inner.security.create_acls(acls)
    }

    async fn list_acls(&self) -> StoreResult<Vec<AclBinding>> {
        self.inner.check_open()?;
        Ok(self.inner.security.list_acls())
    }

    async fn delete_acls(&self, acls: &[AclBinding]) -> StoreResult<u64> {
        self.inner.check_open()?;
        self.inner.security.delete_acls(acls)
    }

    async fn health(&self) -> StoreResult<()> {
        self.inner.check_open()
    }

    fn corrupt_batches(&self) -> u64 {
        self.corrupt_batches_total()
    }

    async fn lease_floor(&self, topic: &str, partition: i32, group: &str) -> StoreResult<i64> {
        self.inner.lease_floor(topic, partition, group).await
    }

    async fn report(&self, topic: Option<&str>) -> StoreResult<broker_api::StoreReport> {
        self.report_off_thread(topic).await
    }

    fn partition_disk_bytes(&self) -> Vec<(String, i32, u64)> {
        let topics: Vec<(String, Arc<TopicHandle>)> = self
            .inner
            .topics
            .read()
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let mut out = Vec::new();
        for (name, t) in topics {
            for (i, p) in t.partitions.iter().enumerate() {
                out.push((name.clone(), i as i32, p.disk_bytes()));
            }
        }
        out
    }

    fn store_metrics(&self) -> Vec<StoreMetric> {
        let mut out = vec![StoreMetric {
            name: "broker_log_fsync_duration_seconds",
            help: "Duration of the log store's data syncs (fdatasync) of segment files.",
            labels: Vec::new(),
            value: MetricValue::Histogram(self.inner.io.fsync_latency()),
        }];
        out.extend(self.inner.cleaner_metrics());
        out
    }

    async fn close(&self) -> StoreResult<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let closed = inner.close_files();
        // Failed or not, the store is done with the directory: the next open may have it (a
        // failed close left no clean-shutdown marker, so that open recovers).
        inner.dir_lock.lock().take();
        if closed.is_ok() {
            tracing::info!(dir = %inner.dir.display(), "closed log store");
        }
        closed
    }
}

impl Inner {
    /// The work of `close`: stops the flusher, closes every partition, syncs the journal and
    /// writes the clean-shutdown marker.
    fn close_files(&self) -> StoreResult<()> {
        self.stop_flusher();
        let topics: Vec<Arc<TopicHandle>> = self.topics.read().values().cloned().collect();
        // Every partition is closed even if one fails; a failure leaves no clean-shutdown
        // marker, so the next open recovers.
        let mut failed = None;
        for t in topics {
            for p in &t.partitions {
                if let Err(e) = p.close() {
                    failed.get_or_insert(e);
                }
            }
        }
        let meta = self.sync_meta_blocking();
        if let Some(e) = failed {
            return Err(e);
        }
        meta?;
        let marker = self.dir.join(CLEAN_SHUTDOWN);
        let f = std::fs::File::create(&marker)
            .map_err(|e| StoreError::from(LogError::io("writing the clean-shutdown marker", e)))?;
        self.io
            .sync_all(&f)
            .map_err(|e| StoreError::from(LogError::io("syncing the clean-shutdown marker", e)))?;
        sync_dir(&self.io, &self.dir)
            .map_err(|e| StoreError::from(LogError::io("syncing the store directory", e)))?;
        Ok(())
    }
}
