//! Float buffers that start on a cache line: the micro-kernels' 64-byte loads of packed
//! weights then never straddle two lines, nor do their stores of output rows a multiple of
//! 16 values wide (a plain `Vec<f32>` need not start on a line: glibc's allocator starts
//! large ones 16 bytes past one).

use std::ops::{Deref, DerefMut};

/// One 64-byte cache line of values.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

/// Values in a cache line.
const LINE: usize = 16;

/// A growable run of `f32` starting on a 64-byte boundary; it derefs to its values.
#[derive(Debug, Clone, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// An empty buffer (no allocation).
    pub const fn new() -> Self {
        Self {
            lines: Vec::new(),
            len: 0,
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

    /// Sets the length to `len`; values past the old length are zeros.
    pub fn resize(&mut self, len: usize) {
        self.lines.resize(len.div_ceil(LINE), Line::default());
        if len > self.len {
            let old = self.len;
            self.len = len;
            self[old..].fill(0.0);
        }
        self.len = len;
    }

    /// Values it holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.lines.capacity() * LINE
    }
}

impl Deref for AlignedVec {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` over 16 `f32` with no padding, so the lines are
        // `16 * lines.len() >= len` initialised values in one allocation.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
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
        assert!(values.capacity() >= 48);
        assert_eq!(AlignedVec::zeros(1000).as_ptr() as usize % 64, 0);
    }
}
