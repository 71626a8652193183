//! The machine's own yardstick: how many float32 multiply-adds one core issues per second
//! with a kernel family's instructions, so that a profile can say how close each layer comes.

use std::time::Instant;

use super::gemm::Isa;

/// Multiply-adds per timed round: about a millisecond, long enough for the vector units to
/// reach their full clock (a first microsecond-long round reads low), short enough to take
/// the best of a dozen rounds in about 15 ms.
const ROUND: usize = 1 << 26;

/// One core's peak in GFLOP/s (two per multiply-add) with `isa`'s widest fused multiply-add,
/// the best of several rounds of independent multiply-adds in registers (no memory traffic).
pub fn fma_peak_gflops(isa: Isa) -> f64 {
    assert!(isa.available(), "{} does not run on this CPU", isa.name());
    let mut sink = 0.0;
    let best = (0..12)
        .map(|_| {
            let started = Instant::now();
            let (flops, value) = round(isa);
            sink += value;
            flops as f64 / started.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max);
    std::hint::black_box(sink);
    best
}

/// One round on `isa`: the floating-point operations done and a value that depends on all of
/// them.
fn round(isa: Isa) -> (usize, f32) {
    match isa {
        // SAFETY: `fma_peak_gflops` checked that the CPU runs the family.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::avx512() },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { x86::avx2() },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { arm::neon() },
        // The portable loop compiles to SIMD128's multiplies and adds in a `+simd128` build.
        Isa::Simd128 | Isa::Portable => portable(),
        #[allow(unreachable_patterns)]
        other => unreachable!("{other:?} is never available here"),
    }
}

/// Sixteen chains of 16-lane multiply-adds in plain Rust, as the portable kernel is written.
fn portable() -> (usize, f32) {
    const LANES: usize = 16;
    const CHAINS: usize = 16;
    let mut acc = [[0.0f32; LANES]; CHAINS];
    let (x, y) = std::hint::black_box((0.999_f32, 1e-7_f32));
    let steps = ROUND / (LANES * CHAINS);
    for _ in 0..steps {
        for chain in acc.iter_mut() {
            for v in chain.iter_mut() {
                *v = *v * x + y;
            }
        }
    }
    (2 * steps * LANES * CHAINS, acc.iter().flatten().sum())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::ROUND;

    /// `acc[i] = acc[i] * x + y` for each named accumulator, written out so that every one
    /// stays in its register (a loop over an array of them is spilled).
    macro_rules! chains {
        ($fma:ident, $x:ident, $y:ident; $($acc:ident)*) => {
            $( $acc = $fma($acc, $x, $y); )*
        };
    }

    /// 16 chains of 16-lane fused multiply-adds: two FMA units of four cycles' latency need 8.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512() -> (usize, f32) {
        let (x, y) = std::hint::black_box((0.999_f32, 1e-7_f32));
        let (x, y) = (_mm512_set1_ps(x), _mm512_set1_ps(y));
        let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7] =
            [_mm512_setzero_ps(); 8];
        let [mut a8, mut a9, mut a10, mut a11, mut a12, mut a13, mut a14, mut a15] =
            [_mm512_setzero_ps(); 8];
        let steps = ROUND / (16 * 16);
        for _ in 0..steps {
            chains!(_mm512_fmadd_ps, x, y; a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15);
        }
        let all = [
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
        ];
        let sum = all.iter().map(|&a| _mm512_reduce_add_ps(a)).sum();
        (2 * steps * 16 * 16, sum)
    }

    /// 12 chains of 8-lane fused multiply-adds.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2() -> (usize, f32) {
        let (x, y) = std::hint::black_box((0.999_f32, 1e-7_f32));
        let (x, y) = (_mm256_set1_ps(x), _mm256_set1_ps(y));
        let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5] = [_mm256_setzero_ps(); 6];
        let [mut a6, mut a7, mut a8, mut a9, mut a10, mut a11] = [_mm256_setzero_ps(); 6];
        let steps = ROUND / (8 * 12);
        for _ in 0..steps {
            chains!(_mm256_fmadd_ps, x, y; a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11);
        }
        let mut lanes = [0.0f32; 8];
        let mut sum = 0.0;
        for a in [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] {
            _mm256_storeu_ps(lanes.as_mut_ptr(), a);
            sum += lanes.iter().sum::<f32>();
        }
        (2 * steps * 8 * 12, sum)
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::ROUND;

    /// `acc[i] = acc[i] + x * y` for each named accumulator, each kept in its register.
    macro_rules! chains {
        ($x:ident, $y:ident; $($acc:ident)*) => {
            $( $acc = vfmaq_f32($acc, $x, $y); )*
        };
    }

    /// 16 chains of 4-lane fused multiply-adds: four FMA units of four cycles' latency need 16.
    ///
    /// # Safety
    /// The CPU must have NEON.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn neon() -> (usize, f32) {
        let (x, y) = std::hint::black_box((0.999_f32, 1e-7_f32));
        let (x, y) = (vdupq_n_f32(x), vdupq_n_f32(y));
        let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7] =
            [vdupq_n_f32(0.0); 8];
        let [mut a8, mut a9, mut a10, mut a11, mut a12, mut a13, mut a14, mut a15] =
            [vdupq_n_f32(0.0); 8];
        let steps = ROUND / (4 * 16);
        for _ in 0..steps {
            chains!(x, y; a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15);
        }
        let all = [
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
        ];
        let sum = all.iter().map(|&a| vaddvq_f32(a)).sum();
        (2 * steps * 4 * 16, sum)
    }
}
