//! Float buffers that start on a cache line: the micro-kernels' 64-byte loads of packed
//! weights then never straddle two lines, nor do their stores of output rows a multiple of
//! 16 values wide (a plain `Vec<f32>` need not start on a line: glibc's allocator starts
//! large ones 16 bytes past one). On Linux large ones start on a 2 MiB page and ask for huge
//! pages.

use std::alloc::Layout;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Bytes in a cache line: every buffer starts on one.
const CACHE_LINE: usize = 64;

/// Bytes in a huge page: buffers at least this large start on one.
const HUGE_PAGE: usize = 2 << 20;

/// A growable run of `f32` starting on a 64-byte boundary (on Linux, a 2 MiB one when it is
/// at least that large, so that its whole 2 MiB pages can be huge pages); it derefs to its
/// values.
pub struct AlignedVec {
    values: NonNull<f32>,
    len: usize,
    capacity: usize,
}

// SAFETY: an `AlignedVec` owns its values, as a `Vec<f32>` does.
unsafe impl Send for AlignedVec {}
unsafe impl Sync for AlignedVec {}

impl AlignedVec {
    /// An empty buffer (no allocation).
    pub const fn new() -> Self {
        Self {
            values: NonNull::dangling(),
            len: 0,
            capacity: 0,
        }
    }

    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        let mut values = Self::new();
        values.resize(len);
        values
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[f32]) -> Self {
        let mut copy = Self::zeros(values.len());
        copy.copy_from_slice(values);
        copy
    }

    /// Sets the length to `len`; values past the old length are zeros. Growing past the
    /// capacity moves the values to a new allocation of exactly `len`.
    pub fn resize(&mut self, len: usize) {
        if len > self.capacity {
            let layout = Self::layout(len);
            // SAFETY: `layout` has a non-zero size (`len > capacity >= 0`).
            let grown = unsafe { std::alloc::alloc(layout) }.cast::<f32>();
            let Some(grown) = NonNull::new(grown) else {
                std::alloc::handle_alloc_error(layout)
            };
            advise_huge_pages(grown, len);
            // SAFETY: both allocations hold at least `self.len` values and do not overlap;
            // the old one, if any, was allocated with the layout of its capacity.
            unsafe {
                std::ptr::copy_nonoverlapping(self.values.as_ptr(), grown.as_ptr(), self.len);
                if self.capacity > 0 {
                    std::alloc::dealloc(self.values.as_ptr().cast(), Self::layout(self.capacity));
                }
            }
            self.values = grown;
            self.capacity = len;
        }
        if len > self.len {
            // SAFETY: values `self.len..len` lie inside the allocation (`len <= capacity`).
            unsafe { std::ptr::write_bytes(self.values.as_ptr().add(self.len), 0, len - self.len) };
        }
        self.len = len;
    }

    /// Values it holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The allocation of `capacity` values.
    fn layout(capacity: usize) -> Layout {
        let bytes = capacity
            .checked_mul(std::mem::size_of::<f32>())
            .expect("buffer size");
        // Only where huge pages are asked for: elsewhere (WebAssembly above all) the
        // alignment would only waste memory.
        let align = if cfg!(target_os = "linux") && bytes >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            CACHE_LINE
        };
        Layout::from_size_align(bytes, align).expect("buffer size")
    }
}

/// Asks Linux to back `len` values at `values` with 2 MiB pages (transparent huge pages set
/// to `madvise`, as distributions ship them), before anything touches them: one TLB entry
/// then maps what 512 did, for the kernels streaming through weights and activations. A
/// partial 2 MiB page at the end stays in ordinary pages, so nothing past the values is made
/// resident.
fn advise_huge_pages(values: NonNull<f32>, len: usize) {
    let bytes = len * std::mem::size_of::<f32>();
    #[cfg(target_os = "linux")]
    if bytes >= HUGE_PAGE {
        // SAFETY: advice only, over whole pages inside memory this buffer owns (it starts on
        // a huge page); it changes no contents, and a refusal leaves ordinary pages.
        unsafe {
            let length = bytes / 4096 * 4096;
            libc::madvise(values.as_ptr().cast(), length, libc::MADV_HUGEPAGE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (values, bytes);
}

impl Drop for AlignedVec {
    fn drop(&mut self) {
        if self.capacity > 0 {
            // SAFETY: allocated in `resize` with the layout of this capacity.
            unsafe {
                std::alloc::dealloc(self.values.as_ptr().cast(), Self::layout(self.capacity))
            };
        }
    }
}

impl Clone for AlignedVec {
    fn clone(&self) -> Self {
        Self::from_slice(self)
    }
}

impl Default for AlignedVec {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedVec")
            .field("len", &self.len)
            .finish()
    }
}

impl Deref for AlignedVec {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // SAFETY: the first `len` values are initialised (zeros or written since), and a
        // dangling pointer is well aligned for an empty slice.
        unsafe { std::slice::from_raw_parts(self.values.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.values.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_and_grows_with_zeros() {
        let mut values = AlignedVec::from_slice(&[1.0, 2.0, 3.0]);
        assert_eq!(values.as_ptr() as usize % 64, 0);
        assert_eq!(&values[..], &[1.0, 2.0, 3.0]);
        values.resize(1);
        values.resize(40);
        assert_eq!(values.len(), 40);
        assert_eq!(values[0], 1.0);
        assert!(
            values[1..].iter().all(|&v| v == 0.0),
            "grown values are zeros"
        );
        assert!(values.capacity() >= 40);
        assert_eq!(AlignedVec::zeros(1000).as_ptr() as usize % 64, 0);
        let large = AlignedVec::zeros(3 << 20);
        assert_eq!(
            large.as_ptr() as usize % (2 << 20),
            0,
            "a large one on a huge page"
        );
        assert!(large.iter().all(|&v| v == 0.0));
        assert_eq!(large.clone()[..], large[..]);
    }
}
