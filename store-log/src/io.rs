//! Every write and fsync of the store goes through [`Io`], so tests can inject faults.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use broker_api::{StoreError, StoreResult};

/// Produces disk failures on purpose: a full disk, or a write that stores only a prefix.
#[derive(Debug)]
pub struct FaultInjector {
    full: AtomicBool,
    /// Writes left before the planned failure; negative: none planned.
    fail_in: AtomicI64,
    /// Bytes the failing write stores before it fails.
    torn_prefix: AtomicUsize,
    /// Data syncs (fdatasync) done so far.
    data_syncs: AtomicU64,
    /// Extra time every data sync takes, in ms (a slow disk).
    sync_delay_ms: AtomicU64,
    /// Data syncs left to fail with `EIO`.
    failing_syncs: AtomicU64,
    /// Early writebacks started so far.
    writebacks: AtomicU64,
    /// The cleaner step after which the next segment swap stops, as if the process died
    /// there (0: none; see [`CleanerStop`]).
    cleaner_stop: AtomicU64,
}

/// A point of the cleaner's segment swap at which [`FaultInjector::stop_cleaner_after`]
/// stops it, leaving the files as a crash there would.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanerStop {
    /// `<base>.log.cleaned` (and its indexes) written and synced.
    CleanedWritten = 1,
    /// Renamed to `<base>.log.swap`.
    SwapRenamed = 2,
    /// The old `<base>.log` renamed to `<base>.log.deleted`.
    OldDeleted = 3,
}

impl Default for FaultInjector {
    fn default() -> Self {
        FaultInjector {
            full: AtomicBool::new(false),
            fail_in: AtomicI64::new(-1),
            torn_prefix: AtomicUsize::new(0),
            data_syncs: AtomicU64::new(0),
            sync_delay_ms: AtomicU64::new(0),
            failing_syncs: AtomicU64::new(0),
            writebacks: AtomicU64::new(0),
            cleaner_stop: AtomicU64::new(0),
        }
    }
}

impl FaultInjector {
    /// An injector that injects nothing until told to.
    pub fn new() -> Arc<FaultInjector> {
        Arc::new(FaultInjector::default())
    }

    /// While `full`, every write and preallocation fails with `ENOSPC` and stores nothing.
    pub fn set_disk_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// The write after the next `n` writes stores its first `prefix` bytes, then fails with
    /// `ENOSPC` (a torn write on a filling disk). Later writes succeed again.
    pub fn fail_write_after(&self, n: u64, prefix: usize) {
        self.torn_prefix.store(prefix, Ordering::SeqCst);
        self.fail_in.store(n as i64, Ordering::SeqCst);
    }

    /// Makes every data sync take `ms` longer, like a slow disk.
    pub fn set_sync_delay_ms(&self, ms: u64) {
        self.sync_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The next `n` data syncs fail with `EIO` (a disk that loses writes).
    pub fn fail_next_syncs(&self, n: u64) {
        self.failing_syncs.store(n, Ordering::SeqCst);
    }

    /// How many early writebacks (`sync_file_range`) were started so far.
    pub fn writebacks(&self) -> u64 {
        self.writebacks.load(Ordering::SeqCst)
    }

    /// How many data syncs (fdatasync) went through so far.
    pub fn data_syncs(&self) -> u64 {
        self.data_syncs.load(Ordering::SeqCst)
    }

    /// The next segment swap of the cleaner stops after `step`, leaving its files as a crash
    /// there would (the call fails); later swaps run normally. For crash tests.
    #[doc(hidden)]
    pub fn stop_cleaner_after(&self, step: CleanerStop) {
        self.cleaner_stop.store(step as u64, Ordering::SeqCst);
    }

    /// Decides the fate of one write of `len` bytes: `None` to let it through, or the number
    /// of bytes to store before failing.
    fn on_write(&self, len: usize) -> Option<usize> {
        if self.full.load(Ordering::SeqCst) {
            return Some(0);
        }
        let left = self.fail_in.load(Ordering::SeqCst);
        if left < 0 {
            return None;
        }
        if left == 0 {
            self.fail_in.store(-1, Ordering::SeqCst);
            return Some(self.torn_prefix.load(Ordering::SeqCst).min(len));
        }
        self.fail_in.store(left - 1, Ordering::SeqCst);
        None
    }

    fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// The storage layer: positioned writes, fsyncs and preallocation, with optional faults.
#[derive(Debug, Clone, Default)]
pub struct Io {
    faults: Option<Arc<FaultInjector>>,
    /// Durations of data syncs (fdatasync), shared by every clone.
    fsync: Arc<broker_api::LatencyHistogram>,
}

impl Io {
    /// Plain I/O, or I/O through `faults`.
    pub fn new(faults: Option<Arc<FaultInjector>>) -> Io {
        Io {
            faults,
            fsync: Default::default(),
        }
    }

    /// The durations of the data syncs done through this `Io` (and its clones) so far.
    pub fn fsync_latency(&self) -> broker_api::HistogramSnapshot {
        self.fsync.snapshot()
    }

    /// Writes all of `buf` at `pos`, or fails (possibly after storing a prefix).
    pub fn write_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        if let Some(f) = &self.faults {
            if let Some(prefix) = f.on_write(buf.len()) {
                if prefix > 0 {
                    file.write_all_at(&buf[..prefix], pos)?;
                }
                return Err(enospc());
            }
        }
        file.write_all_at(buf, pos)
    }

    /// Writes `parts` back to back at `pos` with one `pwritev` (at most 4 parts), or fails
    /// (possibly after storing a prefix). A short write is finished part by part.
    pub fn write_parts_at(&self, file: &File, parts: &[&[u8]], pos: u64) -> io::Result<()> {
        assert!(parts.len() <= 4, "at most 4 parts");
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if let Some(f) = &self.faults {
            if let Some(prefix) = f.on_write(total) {
                let (mut left, mut at) = (prefix, pos);
                for p in parts {
                    let n = left.min(p.len());
                    if n == 0 {
                        break;
                    }
                    file.write_all_at(&p[..n], at)?;
                    at += n as u64;
                    left -= n;
                }
                return Err(enospc());
            }
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 4];
        for (v, p) in iov.iter_mut().zip(parts) {
            v.iov_base = p.as_ptr() as *mut libc::c_void;
            v.iov_len = p.len();
        }
        let written = loop {
            // SAFETY: the iovecs point at live slices for the duration of the call.
            let n = unsafe {
                libc::pwritev(
                    file.as_raw_fd(),
                    iov.as_ptr(),
                    parts.len() as libc::c_int,
                    pos as libc::off_t,
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let (mut skip, mut at) = (written, pos + written as u64);
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            file.write_all_at(&p[skip..], at)?;
            at += (p.len() - skip) as u64;
            skip = 0;
        }
        Ok(())
    }

    /// Fails (once) when a crash test asked the cleaner to stop after `step`.
    pub fn cleaner_step(&self, step: CleanerStop) -> io::Result<()> {
        let Some(f) = &self.faults else {
            return Ok(());
        };
        let hit = f
            .cleaner_stop
            .compare_exchange(step as u64, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if hit {
            return Err(io::Error::other(format!(
                "injected stop of the cleaner after {step:?}"
            )));
        }
        Ok(())
    }

    /// Makes the file's data durable (fdatasync).
    pub fn sync_data(&self, file: &File) -> io::Result<()> {
        let started = std::time::Instant::now();
        let r = self.sync_data_inner(file);
        self.fsync.observe(started.elapsed());
        r
    }

    fn sync_data_inner(&self, file: &File) -> io::Result<()> {
        if let Some(f) = &self.faults {
            f.data_syncs.fetch_add(1, Ordering::SeqCst);
            let ms = f.sync_delay_ms.load(Ordering::SeqCst);
            if ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            let failing = f
                .failing_syncs
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if failing.is_ok() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        file.sync_data()
    }

    /// Starts writing back `len` bytes at `pos` without waiting (`sync_file_range`), so that
    /// a later fsync has less to do. Advisory: errors are left to that fsync to report.
    pub fn start_writeback(&self, file: &File, pos: u64, len: u64) {
        if let Some(f) = &self.faults {
            f.writebacks.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: plain syscall on a valid descriptor.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                pos as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }

    /// Makes the file's data and metadata durable (fsync); used for directories and renames.
    pub fn sync_all(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    /// Reserves `len` bytes of real disk space for `file` (so writes through a mapping
    /// cannot hit a full disk later).
    pub fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        if let Some(f) = &self.faults {
            if f.is_full() {
                return Err(enospc());
            }
        }
        if len == 0 {
            return Ok(());
        }
        // SAFETY: plain syscall on a valid descriptor.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        match rc {
            0 => Ok(()),
            libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Fsyncs a directory so that file creations, renames and removals in it are durable.
pub fn sync_dir(io: &Io, dir: &std::path::Path) -> io::Result<()> {
    let f = File::open(dir)?;
    io.sync_all(&f)
}

/// Set once an fsync failed. After that the kernel may have dropped the unsynced pages while
/// reporting later fsyncs as good, so what it guards takes no more writes until the store is
/// reopened and recovers.
#[derive(Debug, Default)]
pub struct SyncFailure(OnceLock<String>);

impl SyncFailure {
    /// Records the first failure: the fsync error `err` and what is refused from now on.
    pub fn record(&self, err: &StoreError, refused: String) {
        tracing::error!(error = %err, "fsync failed; {refused}");
        let _ = self.0.set(format!("{err}; {refused}"));
    }

    /// True once a failure was recorded.
    pub fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// Fails with the recorded failure, if any.
    pub fn check(&self) -> StoreResult<()> {
        match self.0.get() {
            Some(m) => Err(StoreError::Internal(m.clone())),
            None => Ok(()),
        }
    }
}
