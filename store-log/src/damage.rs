//! Reporting damaged batches (one WARN per batch per process, and a counter) and keeping cut
//! bytes in quarantine files instead of deleting them.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::error::{LogError, LogResult};
use crate::io::{sync_dir, Io};

/// Damaged batches found by this store since it was opened.
#[derive(Debug, Default)]
pub struct DamageLog {
    count: AtomicU64,
    /// (file, byte position) of every damaged batch already reported.
    seen: Mutex<HashSet<(PathBuf, u64)>>,
}

/// Names a partition in damage reports, with the store's [`DamageLog`].
#[derive(Debug, Clone)]
pub struct PartLabel {
    pub topic: String,
    pub partition: i32,
    pub damage: std::sync::Arc<DamageLog>,
}

/// Where a damaged batch is and what is wrong with it.
pub struct Damage<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub file: &'a Path,
    pub pos: u64,
    /// The first offset the batch holds (or should hold).
    pub first_offset: i64,
    /// Its last offset, when the header could be read.
    pub last_offset: Option<i64>,
    pub what: &'a str,
}

impl DamageLog {
    /// Logs one WARN naming the damage and counts it, once per (file, position) per process.
    pub fn report(&self, d: &Damage<'_>) {
        if !self.seen.lock().insert((d.file.to_path_buf(), d.pos)) {
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let last = d
            .last_offset
            .map_or_else(|| "unknown".to_string(), |l| l.to_string());
        tracing::warn!(
            topic = d.topic,
            partition = d.partition,
            file = %d.file.display(),
            byte = d.pos,
            first_offset = d.first_offset,
            last_offset = %last,
            "damaged batch: {}; records from offset {} are not served",
            d.what,
            d.first_offset
        );
    }

    /// Damaged batches reported so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Name of the quarantine file for bytes cut from `path` at `unix_secs`:
/// `<file name>.quarantine-<unix seconds>` beside it (a suffix `-1`, `-2`... when taken).
pub fn quarantine_path(path: &Path, unix_secs: u64) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut p = path.with_file_name(format!("{name}.quarantine-{unix_secs}"));
    let mut n = 1;
    while p.exists() {
        p = path.with_file_name(format!("{name}.quarantine-{unix_secs}-{n}"));
        n += 1;
    }
    p
}

/// Copies the bytes of `file` (at `path`) from `from` to its end into a quarantine file
/// beside it (fsynced, directory fsynced), then cuts `file` back to `from` and fsyncs it.
/// Returns the quarantine file's path (`None` when there was nothing to cut).
pub fn cut_to_quarantine(
    file: &File,
    path: &Path,
    from: u64,
    io: &Io,
) -> LogResult<Option<PathBuf>> {
    let len = file
        .metadata()
        .map_err(|e| LogError::io(format!("reading the size of {}", path.display()), e))?
        .len();
    if len <= from {
        return Ok(None);
    }
    let bytes = crate::segment::read_at(file, from, (len - from) as usize)
        .map_err(|e| LogError::io(format!("reading the damaged tail of {}", path.display()), e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let q = quarantine_path(path, now);
    let ctx = |e| LogError::io(format!("writing quarantine file {}", q.display()), e);
    let qf = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&q)
        .map_err(ctx)?;
    io.write_at(&qf, &bytes, 0).map_err(ctx)?;
    io.sync_all(&qf).map_err(ctx)?;
    if let Some(dir) = path.parent() {
        sync_dir(io, dir).map_err(ctx)?;
    }
    file.set_len(from)
        .map_err(|e| LogError::io(format!("truncating {}", path.display()), e))?;
    io.sync_data(file)
        .map_err(|e| LogError::io(format!("syncing {}", path.display()), e))?;
    Ok(Some(q))
}
