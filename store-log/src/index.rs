//! Preallocated, memory-mapped sparse indexes: `.index` (offset -> file position) and
//! `.timeindex` (max timestamp so far -> offset).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{LogError, LogResult};
use crate::io::Io;

/// Bytes of one `.index` entry: relative offset u32 + file position u32.
pub const OFFSET_ENTRY: usize = 8;
/// Bytes of one `.timeindex` entry: timestamp i64 + relative offset u32.
pub const TIME_ENTRY: usize = 12;

/// Entries an index file starts with; it doubles as it fills, up to its maximum.
const INITIAL_ENTRIES: usize = 8192;

/// One index file: fixed-size entries, appended in increasing order.
#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    io: Io,
    entry: usize,
    entries: usize,
    /// Entries the file has room for now.
    capacity: usize,
    /// Entries it may grow to.
    max: usize,
}

impl IndexFile {
    /// Creates (or replaces) an index file with `initial` entries already in it and room
    /// for up to `max_bytes` in all. Space is reserved (not sparse) as the file grows, so a
    /// write through the mapping cannot meet a full disk.
    pub fn create(
        path: &Path,
        entry: usize,
        max_bytes: usize,
        io: &Io,
        initial: &[u8],
    ) -> LogResult<IndexFile> {
        let ctx = || format!("creating index {}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| LogError::io(ctx(), e))?;
        let have = initial.len() / entry;
        let max = (max_bytes / entry).max(have + 1);
        let mut ix = IndexFile {
            path: path.to_path_buf(),
            file,
            map: None,
            io: io.clone(),
            entry,
            entries: have,
            capacity: 0,
            max,
        };
        ix.resize((have + 1).max(INITIAL_ENTRIES).min(max))?;
        if let Some(map) = ix.map.as_mut() {
            map[..initial.len()].copy_from_slice(initial);
        }
        Ok(ix)
    }

    /// Gives the file room for `capacity` entries (reserved on disk) and maps it.
    fn resize(&mut self, capacity: usize) -> LogResult<()> {
        let ctx = || format!("growing index {}", self.path.display());
        let len = (capacity * self.entry) as u64;
        self.io
            .allocate(&self.file, len)
            .map_err(|e| LogError::io(ctx(), e))?;
        self.file.set_len(len).map_err(|e| LogError::io(ctx(), e))?;
        self.map = None;
        // SAFETY: the file is ours, sized above, and only this struct writes it.
        let map = unsafe { MmapMut::map_mut(&self.file) }.map_err(|e| LogError::io(ctx(), e))?;
        self.map = Some(map);
        self.capacity = capacity;
        Ok(())
    }

    /// Reads a trimmed index file (as left by a clean roll or shutdown); `None` when it is
    /// missing or its length is not a whole number of entries.
    pub fn read_trimmed(path: &Path, entry: usize) -> Option<Vec<u8>> {
        let data = std::fs::read(path).ok()?;
        (data.len() % entry == 0).then_some(data)
    }

    /// Records that the file was renamed to `path` (its mapping and handle stay valid).
    pub fn renamed(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }

    /// True when another entry does not fit, even after growing.
    pub fn is_full(&self) -> bool {
        self.entries >= self.max
    }

    /// The raw bytes of entry `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        let map = self.map.as_ref().expect("index entry of an empty index");
        &map[i * self.entry..(i + 1) * self.entry]
    }

    /// Appends one entry; false when the index is full.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        debug_assert_eq!(bytes.len(), self.entry);
        if self.is_full() {
            return false;
        }
        if self.entries >= self.capacity {
            let grown = (self.capacity * 2).clamp(self.entries + 1, self.max);
            if let Err(e) = self.resize(grown) {
                // The entry is left out: lookups scan a little further from the one before.
                tracing::warn!(error = %e, "cannot grow an index");
                return false;
            }
        }
        let start = self.entries * self.entry;
        if let Some(map) = self.map.as_mut() {
            map[start..start + self.entry].copy_from_slice(bytes);
            self.entries += 1;
            true
        } else {
            false
        }
    }

    /// Shrinks the file to its entries (when the segment is sealed or the store closes).
    pub fn trim(&mut self) -> LogResult<()> {
        let ctx = || format!("trimming index {}", self.path.display());
        let used = self.entries * self.entry;
        let keep: Vec<u8> = match &self.map {
            Some(m) => m[..used].to_vec(),
            None => Vec::new(),
        };
        self.map = None;
        self.file
            .set_len(used as u64)
            .map_err(|e| LogError::io(ctx(), e))?;
        self.capacity = self.entries;
        self.max = self.entries;
        if used > 0 {
            // SAFETY: as in `create`.
            let map =
                unsafe { MmapMut::map_mut(&self.file) }.map_err(|e| LogError::io(ctx(), e))?;
            debug_assert_eq!(&map[..], &keep[..]);
            self.map = Some(map);
        }
        Ok(())
    }

    /// Binary search: the last entry `i` for which `before(entry_i)` is true, given that the
    /// predicate is true for a prefix of the entries.
    pub fn last_where(&self, before: impl Fn(&[u8]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if before(self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

/// Encodes an offset-index entry.
pub fn offset_entry(rel: u32, pos: u32) -> [u8; OFFSET_ENTRY] {
    let mut b = [0u8; OFFSET_ENTRY];
    b[..4].copy_from_slice(&rel.to_le_bytes());
    b[4..].copy_from_slice(&pos.to_le_bytes());
    b
}

/// Decodes an offset-index entry into (relative offset, position).
pub fn read_offset_entry(b: &[u8]) -> (u32, u32) {
    (
        u32::from_le_bytes(b[..4].try_into().unwrap()),
        u32::from_le_bytes(b[4..8].try_into().unwrap()),
    )
}

/// Encodes a time-index entry.
pub fn time_entry(ts: i64, rel: u32) -> [u8; TIME_ENTRY] {
    let mut b = [0u8; TIME_ENTRY];
    b[..8].copy_from_slice(&ts.to_le_bytes());
    b[8..].copy_from_slice(&rel.to_le_bytes());
    b
}

/// Decodes a time-index entry into (max timestamp before the batch, relative offset).
pub fn read_time_entry(b: &[u8]) -> (i64, u32) {
    (
        i64::from_le_bytes(b[..8].try_into().unwrap()),
        u32::from_le_bytes(b[8..12].try_into().unwrap()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_as_it_fills_and_keeps_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let io = Io::default();
        let n = INITIAL_ENTRIES * 3 + 5;
        let mut ix = IndexFile::create(&path, OFFSET_ENTRY, n * OFFSET_ENTRY, &io, &[]).unwrap();
        let len = || std::fs::metadata(&path).unwrap().len() as usize;
        assert_eq!(len(), INITIAL_ENTRIES * OFFSET_ENTRY, "starts small");
        for i in 0..n {
            assert!(!ix.is_full(), "full after {i} of {n}");
            assert!(ix.push(&offset_entry(i as u32, i as u32 * 10)), "push {i}");
        }
        assert!(ix.is_full());
        assert!(
            !ix.push(&offset_entry(n as u32, 0)),
            "pushed past the maximum"
        );
        assert_eq!(len(), n * OFFSET_ENTRY, "grew to exactly the maximum");
        for i in 0..n {
            assert_eq!(read_offset_entry(ix.get(i)), (i as u32, i as u32 * 10));
        }
        let found = ix.last_where(|e| read_offset_entry(e).0 <= 20_000);
        assert_eq!(found, Some(20_000));
        ix.trim().unwrap();
        assert_eq!(
            IndexFile::read_trimmed(&path, OFFSET_ENTRY).unwrap().len(),
            n * 8
        );
    }
}
