//! The data directory's lock: an exclusive advisory lock (`flock` on Linux, through
//! [`File::try_lock`]) on `<dir>/lock`, held by an open store for its lifetime and by
//! `verify` while it runs. The kernel drops the lock when its holder exits however it exits
//! (`kill -9` included), so a lock is never stale and there is nothing to clean up. The file
//! holds the holder's pid, for the message the next opener gets; only the lock counts.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::error::{LogError, LogResult};

/// Name of the lock file in the store directory. The name the store has always used: a
/// binary of an earlier release locks the same file the same way, so the two exclude each
/// other too.
pub const LOCK_FILE: &str = "lock";

/// Locks `dir` for an open store, creating the lock file when there is none.
pub(crate) fn lock(dir: &Path) -> LogResult<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
    take(dir, f)
}

/// Locks `dir` for `verify` when it has a lock file (a directory no store has opened has
/// none, and a read-only check creates nothing). Opened for reading when it cannot be opened
/// for writing (a read-only mount): the lock works the same, only the pid is not written.
pub(crate) fn lock_if_present(dir: &Path) -> LogResult<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Err(e),
            _ => File::open(&path),
        });
    match opened {
        Ok(f) => take(dir, f).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io(format!("opening {}", path.display()), e)),
    }
}

/// Takes the lock on the opened lock file without waiting; writes this process's pid.
fn take(dir: &Path, mut f: File) -> LogResult<File> {
    let path = dir.join(LOCK_FILE);
    match f.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            // The holder writes its pid right after locking: a holder that has only just
            // locked (or a binary of an earlier release, which wrote none) leaves it unknown.
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            return Err(LogError::DataDirLocked {
                dir: dir.to_path_buf(),
                lock_file: path,
                pid,
            });
        }
        Err(TryLockError::Error(e)) => {
            return Err(LogError::io(format!("locking {}", path.display()), e))
        }
    }
    // Informational only, so a failure (a full disk, a read-only mount) costs nothing but
    // the pid in the next opener's message.
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.write_all(format!("{}\n", std::process::id()).as_bytes())
    };
    if let Err(e) = write(&mut f) {
        tracing::debug!(file = %path.display(), error = %e, "could not write the pid into the lock file");
    }
    Ok(f)
}
