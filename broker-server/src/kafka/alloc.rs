//! The process allocator: the system allocator, except that very large requests get lazily
//! committed, unreserved pages.
//!
//! The `kafka-protocol` decoders reserve an array's declared element count before reading
//! the elements, so a small frame claiming two billion elements asks for hundreds of GiB
//! at once. The system allocator refuses that and the process aborts. Served from a
//! `MAP_NORESERVE` mapping, the request succeeds without using memory: only the pages the
//! decoder touches (a few elements, before the frame runs out of bytes) become resident,
//! and the mapping is released with the vector.

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests at least this large are served from `MAP_NORESERVE` mappings.
const LARGE: usize = 256 << 20;
const PAGE: usize = 4096;

/// See the module documentation.
pub struct LargeLazyAlloc;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

// SAFETY: every block is either the system allocator's (small or over-aligned requests) or
// a private anonymous mapping of exactly `layout.size()` bytes (large requests); `is_large`
// on the same layout picks the same side on allocation and deallocation.
unsafe impl GlobalAlloc for LargeLazyAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // Fresh anonymous pages are zero.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            unsafe {
                libc::munmap(ptr as *mut libc::c_void, layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_large(&layout) && !is_large(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_reservation_costs_nothing_until_touched() {
        // 64 GiB: more than this machine class has; refused by the system allocator.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.push(1);
        v.push(2);
        assert_eq!(v.iter().sum::<u64>(), 3);
        let mut small: Vec<u8> = Vec::with_capacity(10);
        small.extend_from_slice(b"abc");
        small.reserve(LARGE_TEST);
        assert_eq!(&small[..3], b"abc");
    }

    const LARGE_TEST: usize = 300 << 20;
}
