//! Cache hints: start loading a line before the code that needs it gets there. Hints only:
//! they never fault and change no result, and do nothing on targets without them.

/// Starts loading the cache line holding `value`, to be read soon.
#[inline(always)]
pub(crate) fn read(value: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(value.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Starts loading the cache line holding `value` for writing, so a store that fills it need
/// not wait for memory.
#[inline(always)]
pub(crate) fn write(value: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `read`.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        _mm_prefetch::<_MM_HINT_ET0>(value.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
