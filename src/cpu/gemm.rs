//! The CPU backend's GEMM micro-kernels: `C = epilogue(A * B)` for every convolution, with `B`
//! (a convolution's folded weights) packed once at load and `A` (activations, gathered
//! patches or a depthwise result) read where it lies.
//!
//! `B` is packed into column panels as wide as the micro-kernel's tile (`NR` columns, zeros
//! past the last column), each panel `k` rows of `NR` contiguous values, so the kernel reads
//! it front to back. A micro-kernel keeps an `MR x NR` tile of `C` in vector registers over a
//! slice of the inner dimension: per step it loads one panel row, broadcasts one value of each
//! of its `MR` rows of `A` and issues `MR * NR / lanes` fused multiply-adds. On the last slice
//! it adds the bias (and a residual) and applies the ReLU to the registers before storing.
//!
//! The kernels: AVX-512 (12 x 32), AVX2+FMA (6 x 16), NEON (6 x 16), WebAssembly SIMD128
//! (4 x 8) and a portable one (4 x 16) that the compiler vectorises for whatever the target
//! has. [`Isa::detect`] picks the widest the CPU runs, once per model; tests force each.

use super::aligned::AlignedVec;
use super::prefetch;

/// A GEMM micro-kernel family: its instruction set and tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 12 rows x 32 columns in 24 AVX-512 registers.
    Avx512,
    /// 6 rows x 16 columns in 12 AVX2 registers, with FMA.
    Avx2Fma,
    /// 6 rows x 16 columns in 24 NEON registers (aarch64).
    Neon,
    /// 4 rows x 8 columns in 8 SIMD128 vectors (wasm32 built with `+simd128`): few enough
    /// for a browser's compiler to keep in the 16 vector registers of an x86 machine.
    Simd128,
    /// 4 rows x 16 columns in plain Rust that the compiler vectorises.
    Portable,
}

impl Isa {
    /// Every kernel family, widest first.
    pub const ALL: [Isa; 5] = [
        Isa::Avx512,
        Isa::Avx2Fma,
        Isa::Neon,
        Isa::Simd128,
        Isa::Portable,
    ];

    /// The widest family this CPU runs.
    pub fn detect() -> Self {
        Self::ALL
            .into_iter()
            .find(|isa| isa.available())
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU runs the family.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            // WebAssembly has no run-time detection: the build either has SIMD128 or not.
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            Isa::Portable => true,
            // The families of other architectures.
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// How `info` and `bench` name it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2Fma => "AVX2+FMA",
            Isa::Neon => "NEON",
            Isa::Simd128 => "SIMD128",
            Isa::Portable => "portable",
        }
    }

    /// The family's tile: 12 x 32 for AVX-512 measured faster than 8 x 48 on every Xception
    /// shape but the widest (BENCHMARKS.md).
    fn tile(self) -> Tile {
        match self {
            Isa::Avx512 => Tile { mr: 12, nr: 32 },
            Isa::Avx2Fma | Isa::Neon => Tile { mr: 6, nr: 16 },
            Isa::Simd128 => Tile { mr: 4, nr: 8 },
            Isa::Portable => Tile { mr: 4, nr: 16 },
        }
    }

    /// The micro-kernel for `rows` (1 to the tile's `mr`) rows.
    fn kernel(self, rows: usize) -> Kernel {
        debug_assert!((1..=self.tile().mr).contains(&rows));
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::AVX512[rows - 1],
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => x86::AVX2[rows - 1],
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => arm::NEON[rows - 1],
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => wasm::SIMD128[rows - 1],
            Isa::Portable => portable::KERNELS[rows - 1],
            #[allow(unreachable_patterns)]
            other => unreachable!("{other:?} is never available here"),
        }
    }
}

/// A micro-kernel's tile of the output: `mr` rows by `nr` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tile {
    mr: usize,
    nr: usize,
}

/// The largest tile of any kernel, in values.
const MAX_TILE: usize = 12 * 32;

/// A convolution's weights as the micro-kernels read them: the `[k, n]` kernel in panels as
/// wide as its tile's columns and the bias, both zero-padded to whole panels.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    isa: Isa,
    k: usize,
    n: usize,
    panels: AlignedVec,
    bias: AlignedVec,
}

impl PackedWeights {
    /// Packs a row-major `[k, n]` kernel and its `n` biases for `isa`'s kernels, which this
    /// CPU must run.
    pub fn new(isa: Isa, kernel: &[f32], bias: &[f32], k: usize, n: usize) -> Self {
        assert!(
            isa.available(),
            "this CPU cannot run the {} kernels",
            isa.name()
        );
        assert!(k > 0 && n > 0, "an empty product");
        assert_eq!(kernel.len(), k * n, "packed kernel");
        assert_eq!(bias.len(), n, "packed bias");
        let nr = isa.tile().nr;
        let panel_count = n.div_ceil(nr);
        let mut panels = AlignedVec::zeros(panel_count * k * nr);
        for (p, panel) in panels.chunks_exact_mut(k * nr).enumerate() {
            let (c0, c1) = (p * nr, ((p + 1) * nr).min(n));
            for (row, dst) in panel.chunks_exact_mut(nr).enumerate() {
                dst[..c1 - c0].copy_from_slice(&kernel[row * n + c0..row * n + c1]);
            }
        }
        let mut padded_bias = AlignedVec::zeros(panel_count * nr);
        padded_bias[..n].copy_from_slice(bias);
        Self {
            isa,
            k,
            n,
            panels,
            bias: padded_bias,
        }
    }

    /// The kernel family the weights are packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of column panels.
    pub(crate) fn panel_count(&self) -> usize {
        self.bias.len() / self.isa.tile().nr
    }
}

/// What the last slice of the inner dimension adds before storing: the bias, a residual of
/// the output's shape, then the ReLU.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// Rows of a row-major tensor of the output's shape, added after the bias.
    pub residual: Option<&'a [f32]>,
    /// Whether a ReLU follows.
    pub relu: bool,
}

/// Inner-dimension values per slice: one panel's slice (`KC x NR`) stays in L1 while every
/// tile of a block of rows streams past it.
const KC: usize = 256;

/// Values in a 64-byte cache line.
const LINE: usize = 16;

/// One micro-kernel call: `rows` (the kernel's own) rows of `A` from `a` (`lda` apart), each
/// `runs` runs of `kc` values `run_stride` apart, times a panel slice from `b` (`runs * kc`
/// rows of `NR`), into the `NR`-column tile at `c` (`ldc` apart). When `accumulate`, the
/// tile is added to; else overwritten. `bias` (NR values) and `residual` (rows `ldc` apart)
/// are added, and the ReLU applied, when `finish` is set.
#[derive(Clone, Copy)]
struct Call {
    a: *const f32,
    lda: usize,
    b: *const f32,
    kc: usize,
    runs: usize,
    run_stride: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    finish: Option<TileFinish>,
    /// Cache lines of the weights the next panel slice reads, which the x86 kernels fetch
    /// into L2 one per step of the inner loop while this tile computes (`prefetch..
    /// prefetch_end`, 16 values a line), so that slice no longer waits on memory when its
    /// first tile starts. The NEON, SIMD128 and portable kernels ignore them.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    prefetch: *const f32,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    prefetch_end: *const f32,
}

/// [`Finish`] for one tile: where its `NR` biases and its residual rows (null for none) are.
#[derive(Clone, Copy)]
struct TileFinish {
    bias: *const f32,
    residual: *const f32,
    relu: bool,
}

/// A micro-kernel for a tile of a fixed number of rows.
///
/// # Safety
/// Every pointer in the tile must be valid for what the tile reads and writes: `a` for its
/// rows x `kc` values, `b` for `kc * NR`, `c` (and `residual`) for its rows x `NR`, `bias`
/// for `NR`; and the CPU must have the kernel's instruction set.
type Kernel = unsafe fn(&Call);

/// Where the rows of a GEMM's left-hand side lie: the block's row `i` starts at
/// `start + i * stride`, and its `k` values are runs of `run` values, `run_stride` apart
/// (one run for a matrix; one per kernel row for a convolution read where it lies, whose
/// patch rows are runs of neighbouring input pixels).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeftRows {
    pub start: *const f32,
    pub stride: usize,
    pub run: usize,
    pub run_stride: usize,
}

impl LeftRows {
    /// Rows of a row-major matrix `k` values wide.
    pub fn matrix(a: &[f32], k: usize) -> Self {
        Self {
            start: a.as_ptr(),
            stride: k,
            run: k,
            run_stride: 0,
        }
    }
}

/// `out[rows, n] = finish(lhs[rows, k] * weights)` for the output rows `rows`, whose
/// left-hand rows `lhs` describes (its first row is `rows.start`'s), over the weights'
/// panels `panels`; `out` and the residual are row-major `[_, n]` indexed by `rows`.
/// `out_in_cache` says the output is a small scratch buffer the caches already hold, whose
/// lines are then not fetched ahead of the stores.
///
/// # Safety
/// `lhs` must describe readable memory for `rows.len()` rows of `k` values; `out` must point
/// to a row-major `[_, n]` matrix covering `rows` that nothing else touches in these columns
/// during the call, and the residual cover the same rows.
pub(crate) unsafe fn gemm_block(
    weights: &PackedWeights,
    lhs: LeftRows,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    finish: Finish<'_>,
    out: *mut f32,
    out_in_cache: bool,
) {
    let (isa, k, n) = (weights.isa, weights.k, weights.n);
    let Tile { mr, nr } = isa.tile();
    debug_assert_eq!(k % lhs.run, 0, "runs tile the inner dimension");
    let lda = lhs.stride;
    // Edge tiles (columns past `n`) are computed in here and copied out.
    let mut edge = [0.0f32; MAX_TILE];
    let mut edge_residual = [0.0f32; MAX_TILE];
    // Slices of the inner dimension: (where the slice starts in `k`, where in a row of `A`,
    // values per run, runs). A slice holds as many whole runs as fit in `KC`, or a piece of
    // a run longer than that.
    let runs = k / lhs.run;
    let runs_per_slice = (KC / lhs.run).max(1);
    let mut slices = (0..runs)
        .step_by(runs_per_slice)
        .flat_map(|r| {
            (0..lhs.run).step_by(KC).map(move |j| {
                let kc = KC.min(lhs.run - j);
                let runs = runs_per_slice.min(runs - r);
                (r * lhs.run + j, r * lhs.run_stride + j, kc, runs)
            })
        })
        .peekable();
    let slice_of = |p: usize, k0: usize| weights.panels.as_ptr().add(p * k * nr + k0 * nr);
    let tiles = rows.len().div_ceil(mr);
    while let Some((k0, a_offset, kc, runs)) = slices.next() {
        let last = k0 + kc * runs == k;
        let next_slice = slices.peek().map(|&(k0, _, kc, runs)| (k0, kc * runs));
        for p in panels.clone() {
            let b = slice_of(p, k0);
            // The slice after this one: the next panel's, else the next slice's first panel.
            let (next, next_len) = match (p + 1 < panels.end, next_slice) {
                (true, _) => (slice_of(p + 1, k0), kc * runs * nr),
                (false, Some((k1, kc1))) => (slice_of(panels.start, k1), kc1 * nr),
                (false, None) => (b, 0),
            };
            let lines_per_tile = (next_len / LINE).div_ceil(tiles) * LINE;
            let c0 = p * nr;
            let cols = nr.min(n - c0);
            for tile in 0..tiles {
                // The rows split evenly over the tiles, so no tile is left a row or two.
                let r0 = rows.start + tile * rows.len() / tiles;
                let height = rows.start + (tile + 1) * rows.len() / tiles - r0;
                let next_from = (tile * lines_per_tile).min(next_len);
                let next_lines =
                    next.add(next_from)..next.add((next_from + lines_per_tile).min(next_len));
                let a_tile = lhs.start.add((r0 - rows.start) * lda + a_offset);
                let residual = finish.residual.map(|r| r.as_ptr().add(r0 * n + c0));
                let kernel = isa.kernel(height);
                let dst = out.add(r0 * n + c0);
                // The lines of the tile's output (which nothing has read yet) and of its
                // residual come into the cache while it computes, rather than when its
                // results are stored.
                let tile_lines = |at: *const f32, hint: fn(*const f32)| {
                    for row in 0..height {
                        for col in (0..cols).step_by(LINE).chain([cols - 1]) {
                            hint(at.add(row * n + col));
                        }
                    }
                };
                if k0 == 0 && !out_in_cache {
                    tile_lines(dst, prefetch::write);
                }
                if let (true, Some(residual)) = (last, residual) {
                    tile_lines(residual, prefetch::read);
                }
                if cols == nr {
                    kernel(&Call {
                        a: a_tile,
                        lda,
                        b,
                        kc,
                        runs,
                        run_stride: lhs.run_stride,
                        c: dst,
                        ldc: n,
                        accumulate: k0 > 0,
                        finish: last.then(|| TileFinish {
                            bias: weights.bias.as_ptr().add(c0),
                            residual: residual.unwrap_or(std::ptr::null()),
                            relu: finish.relu,
                        }),
                        prefetch: next_lines.start,
                        prefetch_end: next_lines.end,
                    });
                    continue;
                }
                for row in 0..height {
                    let tile_row = &mut edge[row * nr..][..cols];
                    if k0 > 0 {
                        tile_row
                            .copy_from_slice(std::slice::from_raw_parts(dst.add(row * n), cols));
                    }
                    if let Some(residual) = residual {
                        edge_residual[row * nr..][..cols].copy_from_slice(
                            std::slice::from_raw_parts(residual.add(row * n), cols),
                        );
                    }
                }
                kernel(&Call {
                    a: a_tile,
                    lda,
                    b,
                    kc,
                    runs,
                    run_stride: lhs.run_stride,
                    c: edge.as_mut_ptr(),
                    ldc: nr,
                    accumulate: k0 > 0,
                    finish: last.then(|| TileFinish {
                        bias: weights.bias.as_ptr().add(c0),
                        residual: match residual {
                            Some(_) => edge_residual.as_ptr(),
                            None => std::ptr::null(),
                        },
                        relu: finish.relu,
                    }),
                    prefetch: next_lines.start,
                    prefetch_end: next_lines.end,
                });
                for row in 0..height {
                    std::slice::from_raw_parts_mut(dst.add(row * n), cols)
                        .copy_from_slice(&edge[row * nr..][..cols]);
                }
            }
        }
    }
}

/// The portable kernels: plain loops over fixed-size arrays that the compiler unrolls and
/// vectorises.
mod portable {
    use super::{Call, Kernel};

    const NR: usize = 16;

    pub(super) const KERNELS: [Kernel; 4] = [tile::<1>, tile::<2>, tile::<3>, tile::<4>];

    /// # Safety
    /// As [`Kernel`].
    unsafe fn tile<const R: usize>(t: &Call) {
        let mut acc = [[0.0f32; NR]; R];
        if t.accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                row.copy_from_slice(std::slice::from_raw_parts(t.c.add(r * t.ldc), NR));
            }
        }
        let mut b = t.b;
        for run in 0..t.runs {
            let a = t.a.add(run * t.run_stride);
            for step in 0..t.kc {
                let w: &[f32; NR] = &*(b as *const [f32; NR]);
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = *a.add(r * t.lda + step);
                    for (v, &w) in row.iter_mut().zip(w) {
                        *v += x * w;
                    }
                }
                b = b.add(NR);
            }
        }
        if let Some(f) = t.finish {
            let bias = std::slice::from_raw_parts(f.bias, NR);
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
                if !f.residual.is_null() {
                    let residual = std::slice::from_raw_parts(f.residual.add(r * t.ldc), NR);
                    for (v, &x) in row.iter_mut().zip(residual) {
                        *v += x;
                    }
                }
                if f.relu {
                    for v in row.iter_mut() {
                        *v = crate::cpu::relu(*v);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), NR).copy_from_slice(row);
        }
    }
}

/// The AVX-512 and AVX2+FMA kernels.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Call, Kernel};

    pub(super) const AVX512: [Kernel; 12] = [
        avx512::<1>,
        avx512::<2>,
        avx512::<3>,
        avx512::<4>,
        avx512::<5>,
        avx512::<6>,
        avx512::<7>,
        avx512::<8>,
        avx512::<9>,
        avx512::<10>,
        avx512::<11>,
        avx512::<12>,
    ];

    pub(super) const AVX2: [Kernel; 6] = [
        avx2::<1>, avx2::<2>, avx2::<3>, avx2::<4>, avx2::<5>, avx2::<6>,
    ];

    /// `R` rows x 32 columns: two 16-lane registers per row.
    ///
    /// # Safety
    /// As [`Kernel`]; the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const R: usize>(t: &Call) {
        const V: usize = 2;
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if t.accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(t.c.add(r * t.ldc + 16 * v));
                }
            }
        }
        let (mut b, mut prefetch) = (t.b, t.prefetch);
        for run in 0..t.runs {
            let mut a = t.a.add(run * t.run_stride);
            for _ in 0..t.kc {
                if prefetch < t.prefetch_end {
                    _mm_prefetch::<_MM_HINT_T1>(prefetch as *const i8);
                    prefetch = prefetch.wrapping_add(super::LINE);
                }
                let mut w = [_mm512_setzero_ps(); V];
                for (v, w) in w.iter_mut().enumerate() {
                    *w = _mm512_loadu_ps(b.add(16 * v));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(r * t.lda));
                    for (v, y) in row.iter_mut().enumerate() {
                        *y = _mm512_fmadd_ps(x, w[v], *y);
                    }
                }
                a = a.add(1);
                b = b.add(16 * V);
            }
        }
        if let Some(f) = t.finish {
            let mut bias = [_mm512_setzero_ps(); V];
            for (v, bias) in bias.iter_mut().enumerate() {
                *bias = _mm512_loadu_ps(f.bias.add(16 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, y) in row.iter_mut().enumerate() {
                    *y = _mm512_add_ps(*y, bias[v]);
                    if !f.residual.is_null() {
                        let x = _mm512_loadu_ps(f.residual.add(r * t.ldc + 16 * v));
                        *y = _mm512_add_ps(*y, x);
                    }
                    if f.relu {
                        *y = _mm512_max_ps(*y, _mm512_setzero_ps());
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, y) in row.iter().enumerate() {
                _mm512_storeu_ps(t.c.add(r * t.ldc + 16 * v), *y);
            }
        }
    }

    /// `R` rows x 16 columns: two 8-lane registers per row.
    ///
    /// # Safety
    /// As [`Kernel`]; the CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const R: usize>(t: &Call) {
        const V: usize = 2;
        const NR: usize = 8 * V;
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        if t.accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(t.c.add(r * t.ldc + 8 * v));
                }
            }
        }
        let (mut b, mut prefetch) = (t.b, t.prefetch);
        for run in 0..t.runs {
            let mut a = t.a.add(run * t.run_stride);
            for _ in 0..t.kc {
                if prefetch < t.prefetch_end {
                    _mm_prefetch::<_MM_HINT_T1>(prefetch as *const i8);
                    prefetch = prefetch.wrapping_add(super::LINE);
                }
                let w = [_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))];
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*a.add(r * t.lda));
                    for (v, y) in row.iter_mut().enumerate() {
                        *y = _mm256_fmadd_ps(x, w[v], *y);
                    }
                }
                a = a.add(1);
                b = b.add(NR);
            }
        }
        if let Some(f) = t.finish {
            let bias = [_mm256_loadu_ps(f.bias), _mm256_loadu_ps(f.bias.add(8))];
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, y) in row.iter_mut().enumerate() {
                    *y = _mm256_add_ps(*y, bias[v]);
                    if !f.residual.is_null() {
                        let x = _mm256_loadu_ps(f.residual.add(r * t.ldc + 8 * v));
                        *y = _mm256_add_ps(*y, x);
                    }
                    if f.relu {
                        *y = _mm256_max_ps(*y, _mm256_setzero_ps());
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, y) in row.iter().enumerate() {
                _mm256_storeu_ps(t.c.add(r * t.ldc + 8 * v), *y);
            }
        }
    }
}

/// The NEON kernels.
#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::{Call, Kernel};

    pub(super) const NEON: [Kernel; 6] = [
        neon::<1>, neon::<2>, neon::<3>, neon::<4>, neon::<5>, neon::<6>,
    ];

    /// `R` rows x 16 columns: four 4-lane registers per row.
    ///
    /// # Safety
    /// As [`Kernel`]; the CPU must have NEON.
    #[target_feature(enable = "neon")]
    unsafe fn neon<const R: usize>(t: &Call) {
        const V: usize = 4;
        let mut acc = [[vdupq_n_f32(0.0); V]; R];
        if t.accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = vld1q_f32(t.c.add(r * t.ldc + 4 * v));
                }
            }
        }
        let mut b = t.b;
        for run in 0..t.runs {
            let mut a = t.a.add(run * t.run_stride);
            for _ in 0..t.kc {
                let mut w = [vdupq_n_f32(0.0); V];
                for (v, w) in w.iter_mut().enumerate() {
                    *w = vld1q_f32(b.add(4 * v));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = vld1q_dup_f32(a.add(r * t.lda));
                    for (v, y) in row.iter_mut().enumerate() {
                        *y = vfmaq_f32(*y, x, w[v]);
                    }
                }
                a = a.add(1);
                b = b.add(4 * V);
            }
        }
        if let Some(f) = t.finish {
            let mut bias = [vdupq_n_f32(0.0); V];
            for (v, bias) in bias.iter_mut().enumerate() {
                *bias = vld1q_f32(f.bias.add(4 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, y) in row.iter_mut().enumerate() {
                    *y = vaddq_f32(*y, bias[v]);
                    if !f.residual.is_null() {
                        *y = vaddq_f32(*y, vld1q_f32(f.residual.add(r * t.ldc + 4 * v)));
                    }
                    if f.relu {
                        *y = vmaxq_f32(*y, vdupq_n_f32(0.0));
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, y) in row.iter().enumerate() {
                vst1q_f32(t.c.add(r * t.ldc + 4 * v), *y);
            }
        }
    }
}

/// The WebAssembly SIMD128 kernels.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use std::arch::wasm32::*;

    use super::{Call, Kernel};

    pub(super) const SIMD128: [Kernel; 4] =
        [simd128::<1>, simd128::<2>, simd128::<3>, simd128::<4>];

    /// `R` rows x 8 columns: two 4-lane vectors per row. SIMD128 has no fused multiply-add
    /// (only relaxed SIMD's, whose rounding varies by engine): a multiply, then an add.
    ///
    /// # Safety
    /// As [`Kernel`].
    unsafe fn simd128<const R: usize>(t: &Call) {
        const V: usize = 2;
        let load = |p: *const f32| v128_load(p.cast());
        let mut acc = [[f32x4_splat(0.0); V]; R];
        if t.accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = load(t.c.add(r * t.ldc + 4 * v));
                }
            }
        }
        let mut b = t.b;
        for run in 0..t.runs {
            let mut a = t.a.add(run * t.run_stride);
            for _ in 0..t.kc {
                let w = [load(b), load(b.add(4))];
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = f32x4_splat(*a.add(r * t.lda));
                    for (v, y) in row.iter_mut().enumerate() {
                        *y = f32x4_add(*y, f32x4_mul(x, w[v]));
                    }
                }
                a = a.add(1);
                b = b.add(4 * V);
            }
        }
        if let Some(f) = t.finish {
            let bias = [load(f.bias), load(f.bias.add(4))];
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, y) in row.iter_mut().enumerate() {
                    *y = f32x4_add(*y, bias[v]);
                    if !f.residual.is_null() {
                        *y = f32x4_add(*y, load(f.residual.add(r * t.ldc + 4 * v)));
                    }
                    if f.relu {
                        // `y` where it is above zero, else zero (NaN too, as `f32::max`).
                        *y = f32x4_pmax(f32x4_splat(0.0), *y);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, y) in row.iter().enumerate() {
                v128_store(t.c.add(r * t.ldc + 4 * v).cast(), *y);
            }
        }
    }
}
