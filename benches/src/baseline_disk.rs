//! The disk's limits, measured with plain files: sequential writes with each fsync pattern,
//! page-cache reads, random reads, and the latency of one small write + fdatasync.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};

use crate::workloads::Throughput;
use crate::{BenchError, BenchResult};

/// When the sequential-write baseline calls fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPattern {
    /// After every write (the `always` policy).
    EachWrite,
    /// At most every 100 ms, and at the end (the default `interval` policy).
    Every100Ms,
    /// Once, at the end (like `dd conv=fdatasync`).
    End,
}

impl SyncPattern {
    /// Short name used in case names.
    pub fn name(self) -> &'static str {
        match self {
            SyncPattern::EachWrite => "sync-each",
            SyncPattern::Every100Ms => "sync-100ms",
            SyncPattern::End => "sync-end",
        }
    }
}

fn scratch(dir: &Path, name: &str) -> BenchResult<(tempfile::TempDir, std::path::PathBuf)> {
    let d = tempfile::Builder::new()
        .prefix("bench-disk-")
        .tempdir_in(dir)?;
    let p = d.path().join(name);
    Ok((d, p))
}

/// Writes `write_bytes`-byte blocks to a new file until `duration` or `max_bytes` is reached,
/// calling fdatasync as `sync` says, and always once at the end. Time includes the last sync.
/// Counts blocks.
pub fn sequential_write(
    dir: &Path,
    write_bytes: usize,
    sync: SyncPattern,
    duration: Duration,
    max_bytes: u64,
) -> BenchResult<Throughput> {
    let (_d, path) = scratch(dir, "seq")?;
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5a_u8; write_bytes];
    let max_writes = (max_bytes / write_bytes as u64).max(1);
    let start = Instant::now();
    let mut last_sync = start;
    let mut writes = 0u64;
    while writes < max_writes && start.elapsed() < duration {
        f.write_all(&buf)?;
        writes += 1;
        match sync {
            SyncPattern::EachWrite => f.sync_data()?,
            SyncPattern::Every100Ms if last_sync.elapsed() >= Duration::from_millis(100) => {
                f.sync_data()?;
                last_sync = Instant::now();
            }
            _ => {}
        }
    }
    f.sync_data()?;
    Ok(Throughput {
        records: writes,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Writes a `bytes`-byte file, then reads it sequentially in 1 MiB blocks, pass after pass,
/// until `duration` is spent (from the page cache after the first write). Counts bytes.
pub fn page_cache_read(dir: &Path, bytes: u64, duration: Duration) -> BenchResult<Throughput> {
    let (_d, path) = scratch(dir, "read")?;
    let block = vec![0x5a_u8; 1 << 20];
    {
        let mut f = File::create(&path)?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
    }
    let mut f = File::open(&path)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        f.seek(SeekFrom::Start(0))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        if start.elapsed() >= duration {
            break;
        }
    }
    Ok(Throughput {
        records: total,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Reads random 4 KiB blocks of a 64 MiB page-cached file until `duration` is spent. Counts
/// reads: the cost of one random page read, the floor of an index lookup.
pub fn random_read(dir: &Path, duration: Duration) -> BenchResult<Throughput> {
    let (_d, path) = scratch(dir, "random")?;
    const SIZE: u64 = 64 << 20;
    {
        let mut f = File::create(&path)?;
        let block = vec![0x5a_u8; 1 << 20];
        for _ in 0..(SIZE >> 20) {
            f.write_all(&block)?;
        }
    }
    let f = File::open(&path)?;
    let mut buf = vec![0u8; 4096];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < duration {
        for _ in 0..256 {
            let block = rng.gen_range(0..SIZE / 4096);
            f.read_exact_at(&mut buf, block * 4096)?;
            ops += 1;
        }
    }
    Ok(Throughput {
        records: ops,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// The latency of appending `size` bytes to a file and calling fdatasync, at most `rate` times
/// a second for `duration`: the floor of a durable single-record append. Nanoseconds.
pub fn fsync_latency(
    dir: &Path,
    size: usize,
    rate: u32,
    duration: Duration,
) -> BenchResult<(Histogram<u64>, f64)> {
    let (_d, path) = scratch(dir, "fsync")?;
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    let buf = vec![0x5a_u8; size];
    let mut h = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)
        .map_err(|e| BenchError::Wrong(e.to_string()))?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now();
    let mut i = 0u32;
    while start.elapsed() < duration || h.len() < 50 {
        let due = start + interval * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        h.saturating_record((t.elapsed().as_nanos() as u64).max(1_000));
        i += 1;
    }
    Ok((h, start.elapsed().as_secs_f64()))
}
