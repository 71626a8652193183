//! The fast CPU backend's kernels, on NHWC float32 slices with batchnorm already folded into
//! the weights and a bias.
//!
//! - Convolutions are GEMMs on the `gemm` crate (`matrixmultiply` for blocks of few rows): a
//!   separable convolution computes its depthwise half one block of pixels at a time and
//!   multiplies it (`[pixels, cin]`) by the pointwise kernel (`[cin, cout]`) at once; the stem
//!   and shortcut convolutions gather their patches block by block (an implicit GEMM, no full
//!   im2col). Bias, ReLU and the residual add run on each output block while it is still in
//!   cache.
//! - The depthwise 3x3, the max-pool (with its residual add) and the global average pool are
//!   direct loops over channels, which the compiler vectorises; [`multiversion`](mod@multiversion) builds them
//!   for AVX2 and AVX-512 too and picks the widest the CPU has at run time.
//!
//! Everything splits its output across rayon's threads. Each kernel's reference is its
//! unfused counterpart in [`crate::reference::ops`].

use std::cell::RefCell;

use multiversion::multiversion;
use rayon::prelude::*;

use crate::graph::Padding;
use crate::tensor::Shape;

/// The widest vector extension the direct kernels below run with on this CPU (their
/// `multiversion` targets): `AVX-512`, `AVX2+FMA` or `baseline`.
pub fn vector_extension() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "AVX2+FMA";
        }
    }
    "baseline"
}

/// What runs on a GEMM's output after the multiplication: `relu(acc + bias + residual)`.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// One value per output channel (the folded batchnorm's shift).
    pub bias: &'a [f32],
    /// A tensor of the output's shape added after the bias (an identity shortcut).
    pub residual: Option<&'a [f32]>,
    /// Whether a ReLU follows.
    pub relu: bool,
}

/// A regular convolution's geometry over an NHWC input: the patches its GEMM multiplies.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeometry {
    /// Input shape.
    pub input: Shape,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Padding rule (zeros outside the input).
    pub padding: Padding,
}

impl ConvGeometry {
    /// Output height and width, and the leading (top, left) pads.
    fn resolve(&self) -> (usize, usize, usize, usize) {
        let (out_h, pad_top) = self
            .padding
            .resolve(self.input.height, self.kernel, self.stride);
        let (out_w, pad_left) = self
            .padding
            .resolve(self.input.width, self.kernel, self.stride);
        (out_h, out_w, pad_top, pad_left)
    }

    /// The output shape for `cout` channels.
    pub fn output(&self, cout: usize) -> Shape {
        let (out_h, out_w, _, _) = self.resolve();
        Shape::new(self.input.batch, out_h, out_w, cout)
    }

    /// Length of one patch: the GEMM's inner dimension.
    fn patch_len(&self) -> usize {
        self.kernel * self.kernel * self.input.channels
    }

    /// Writes the patches of output pixels `rows` (in `(ky, kx, ci)` order, zeros where the
    /// window leaves the input) to `dst`, one patch per row.
    fn gather(&self, x: &[f32], rows: std::ops::Range<usize>, dst: &mut [f32]) {
        let (out_h, out_w, pad_top, pad_left) = self.resolve();
        let s = self.input;
        let (k, c) = (self.kernel, s.channels);
        for (row, patch) in rows.zip(dst.chunks_exact_mut(self.patch_len())) {
            let (n, oy, ox) = (row / (out_h * out_w), row / out_w % out_h, row % out_w);
            for ky in 0..k {
                let iy = (oy * self.stride + ky).checked_sub(pad_top);
                for kx in 0..k {
                    let ix = (ox * self.stride + kx).checked_sub(pad_left);
                    let tap = &mut patch[(ky * k + kx) * c..][..c];
                    match (iy, ix) {
                        (Some(iy), Some(ix)) if iy < s.height && ix < s.width => {
                            tap.copy_from_slice(&x[((n * s.height + iy) * s.width + ix) * c..][..c])
                        }
                        _ => tap.fill(0.0),
                    }
                }
            }
        }
    }
}

/// Where the rows of a GEMM's left-hand matrix come from.
#[derive(Debug, Clone, Copy)]
pub enum Lhs<'a> {
    /// A row-major `[rows, k]` matrix: the activations of a pointwise convolution.
    Matrix(&'a [f32]),
    /// The patches of a convolution over this input, gathered one block at a time.
    Patches(&'a [f32], ConvGeometry),
    /// The depthwise convolution of this input, computed one block at a time (a separable
    /// convolution in one pass).
    Depthwise(&'a [f32], Depthwise<'a>),
}

thread_local! {
    /// Each thread's block of gathered patches or depthwise output, reused across blocks and
    /// calls.
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The output pointer shared by the blocks of one GEMM (each writes its own rectangle).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the blocks of one `matmul` write disjoint rectangles of the output, and the slice
// outlives the parallel loop that uses the pointer.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The value at `offset` (a method, so closures capture the whole `Sync` wrapper).
    ///
    /// # Safety
    /// `offset` must lie inside the output slice.
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// How [`matmul`] splits an `m x n` output over the threads: rows and columns per block.
///
/// Each block packs the part of each matrix it reads, so one block per thread, cut across
/// the longer side: splitting the rows makes every thread pack all of the weights
/// (`k x n`), splitting the columns makes every thread pack all of the activations
/// (`m x k`) and gather or compute it (the patches; the depthwise half, 9 multiply-adds per
/// value against the block's one per output column). Small products stay whole.
fn block_shape(m: usize, n: usize, k: usize) -> (usize, usize) {
    const MIN_BLOCK_MACS: usize = 1 << 20;
    let blocks = (m * n * k / MIN_BLOCK_MACS).clamp(1, rayon::current_num_threads());
    if m >= n {
        (m.div_ceil(blocks), n)
    } else {
        (m, n.div_ceil(blocks).next_multiple_of(16).min(n))
    }
}

/// `out[m, n] = epilogue(lhs[m, k] * rhs[k, n])`, all row-major, split over rayon's threads.
pub fn matmul(
    lhs: Lhs<'_>,
    m: usize,
    k: usize,
    rhs: &[f32],
    n: usize,
    epilogue: Epilogue<'_>,
    out: &mut [f32],
) {
    assert_eq!(rhs.len(), k * n, "matmul right-hand side");
    assert_eq!(out.len(), m * n, "matmul output");
    assert_eq!(epilogue.bias.len(), n, "matmul bias");
    match lhs {
        Lhs::Matrix(a) => assert_eq!(a.len(), m * k, "matmul left-hand side"),
        Lhs::Patches(x, geometry) => {
            assert_eq!(x.len(), geometry.input.len(), "convolution input");
            assert_eq!(geometry.patch_len(), k, "convolution kernel");
            assert_eq!(geometry.output(n).len(), m * n, "convolution output");
        }
        Lhs::Depthwise(x, depthwise) => {
            assert_eq!(x.len(), depthwise.input.len(), "depthwise input");
            assert_eq!(depthwise.input.channels, k, "depthwise channels");
            assert_eq!(depthwise.kernel.len(), 9 * k, "depthwise kernel");
            assert_eq!(depthwise.input.pixels(), m, "depthwise pixels");
        }
    }
    if let Some(residual) = epilogue.residual {
        assert_eq!(residual.len(), m * n, "residual");
    }
    let (rows, cols) = block_shape(m, n, k);
    let col_blocks = n.div_ceil(cols);
    let blocks = m.div_ceil(rows) * col_blocks;
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..blocks).into_par_iter().for_each(|block| {
        let (r0, c0) = (block / col_blocks * rows, block % col_blocks * cols);
        let (r1, c1) = ((r0 + rows).min(m), (c0 + cols).min(n));
        let multiply = |a: &[f32]| {
            // SAFETY: `a` holds rows r0..r1 of the left-hand side (k values each), `rhs` is
            // k x n, and the destination rectangle lies inside `out` (checked above); no other
            // block writes it.
            unsafe {
                multiply_block(
                    r1 - r0,
                    k,
                    c1 - c0,
                    a,
                    rhs.as_ptr().add(c0),
                    n,
                    out_ptr.at(r0 * n + c0),
                )
            }
        };
        match lhs {
            Lhs::Matrix(a) => multiply(&a[r0 * k..r1 * k]),
            Lhs::Patches(x, geometry) => BLOCK.with_borrow_mut(|block| {
                block.resize((r1 - r0) * k, 0.0);
                geometry.gather(x, r0..r1, block);
                multiply(block);
            }),
            Lhs::Depthwise(x, depthwise) => BLOCK.with_borrow_mut(|block| {
                block.resize((r1 - r0) * k, 0.0);
                depthwise.compute(x, r0..r1, block);
                multiply(block);
            }),
        }
        for row in r0..r1 {
            // SAFETY: as above, this block alone touches columns c0..c1 of these rows.
            let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(row * n + c0), c1 - c0) };
            let residual = epilogue.residual.map(|r| &r[row * n + c0..row * n + c1]);
            finish_row(dst, &epilogue.bias[c0..c1], residual, epilogue.relu);
        }
    });
}

/// Blocks with fewer rows than this run on `matrixmultiply`, the others on `gemm`: at 25 rows
/// (the exit flow at 150x150) `matrixmultiply` is about twice as fast, at 81 and more `gemm`
/// is faster (BENCHMARKS.md).
const FEW_ROWS: usize = 64;

/// `dst[rows, cols] = a[rows, k] * b[k, cols]`, where `b` and `dst` are windows of row-major
/// matrices `ld` values wide.
///
/// # Safety
/// `b` must point to `k` rows of `ld` values (the last `cols` of them at least), and `dst` to
/// `rows` such rows that no one else reads or writes during the call.
unsafe fn multiply_block(
    rows: usize,
    k: usize,
    cols: usize,
    a: &[f32],
    b: *const f32,
    ld: usize,
    dst: *mut f32,
) {
    debug_assert_eq!(a.len(), rows * k);
    if rows < FEW_ROWS {
        matrixmultiply::sgemm(
            rows,
            k,
            cols,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b,
            ld as isize,
            1,
            0.0,
            dst,
            ld as isize,
            1,
        );
    } else {
        gemm::gemm(
            rows,
            cols,
            k,
            dst,
            1,
            ld as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b,
            1,
            ld as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The epilogue on one output row: `relu(dst + bias + residual)`.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn finish_row(dst: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu: bool) {
    let floor = if relu { 0.0 } else { f32::NEG_INFINITY };
    match residual {
        Some(residual) => {
            for ((v, &b), &r) in dst.iter_mut().zip(bias).zip(residual) {
                *v = (*v + b + r).max(floor);
            }
        }
        None => {
            for (v, &b) in dst.iter_mut().zip(bias) {
                *v = (*v + b).max(floor);
            }
        }
    }
}

/// A depthwise 3x3 convolution, stride 1, 'same' padding, over an NHWC input: what a
/// separable convolution's pointwise GEMM multiplies, computed one block of pixels at a time.
#[derive(Debug, Clone, Copy)]
pub struct Depthwise<'a> {
    /// Input shape (the output's too).
    pub input: Shape,
    /// Kernel `[3, 3, C]`.
    pub kernel: &'a [f32],
    /// Whether a ReLU is applied to the input as it is read (the input itself stays
    /// un-rectified, for the shortcut that reads it).
    pub relu_in: bool,
}

impl Depthwise<'_> {
    /// Writes output pixels `pixels` (indices over the whole batch) to `dst`.
    fn compute(&self, x: &[f32], pixels: std::ops::Range<usize>, dst: &mut [f32]) {
        let s = self.input;
        let c = s.channels;
        let mut pixel = pixels.start;
        let mut dst = dst;
        while pixel < pixels.end {
            // The part of one image row that lies in the range.
            let (row, x0) = (pixel / s.width, pixel % s.width);
            let x1 = s.width.min(x0 + pixels.end - pixel);
            let (n, y) = (row / s.height, row % s.height);
            let input_row = |r: usize| &x[(n * s.height + r) * s.width * c..][..s.width * c];
            let rows = [
                y.checked_sub(1).map(input_row),
                Some(input_row(y)),
                (y + 1 < s.height).then(|| input_row(y + 1)),
            ];
            let (out, rest) = dst.split_at_mut((x1 - x0) * c);
            if self.relu_in {
                depthwise_row::<true>(rows, self.kernel, c, x0, out);
            } else {
                depthwise_row::<false>(rows, self.kernel, c, x0, out);
            }
            dst = rest;
            pixel += x1 - x0;
        }
    }
}

/// Depthwise 3x3 convolution, stride 1, 'same' padding, kernel `[3, 3, C]`, with an optional
/// ReLU applied to the input as it is read. (The network fuses it into the pointwise GEMM
/// instead: [`Lhs::Depthwise`].)
pub fn depthwise_conv3x3(x: &[f32], shape: Shape, kernel: &[f32], relu_in: bool, out: &mut [f32]) {
    let c = shape.channels;
    assert_eq!(x.len(), shape.len(), "depthwise input");
    assert_eq!(out.len(), shape.len(), "depthwise output");
    assert_eq!(kernel.len(), 9 * c, "depthwise kernel");
    let depthwise = Depthwise {
        input: shape,
        kernel,
        relu_in,
    };
    out.par_chunks_mut(shape.width * c)
        .enumerate()
        .for_each(|(row, dst)| {
            depthwise.compute(x, row * shape.width..(row + 1) * shape.width, dst)
        });
}

/// Output pixels `x0..` of one row of the depthwise convolution (as many as `dst` holds) from
/// its three input rows (`None` above the top or below the bottom).
///
/// Each pixel's (up to) nine taps are summed in registers, [`LANES`] channels at a time, and
/// stored once; per channel the taps are added in the reference's order.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn depthwise_row<const RELU_IN: bool>(
    rows: [Option<&[f32]>; 3],
    kernel: &[f32],
    c: usize,
    x0: usize,
    dst: &mut [f32],
) {
    let width = rows[1].map_or(0, |row| row.len() / c);
    let read = |v: f32| if RELU_IN { v.max(0.0) } else { v };
    for (ox, out) in (x0..).zip(dst.chunks_exact_mut(c)) {
        // The valid taps: (input pixel, its weights).
        let mut taps: [(&[f32], &[f32]); 9] = [(&[], &[]); 9];
        let mut count = 0;
        for (ky, row) in rows.iter().enumerate() {
            let Some(row) = row else { continue };
            for kx in 0..3 {
                if let Some(ix) = (ox + kx).checked_sub(1).filter(|&ix| ix < width) {
                    taps[count] = (&row[ix * c..][..c], &kernel[(ky * 3 + kx) * c..][..c]);
                    count += 1;
                }
            }
        }
        let taps = &taps[..count];
        let full = c - c % LANES;
        for (ch, out) in (0..full).step_by(LANES).zip(out.chunks_exact_mut(LANES)) {
            let mut acc = [0.0f32; LANES];
            for (src, w) in taps {
                let (src, w) = (&src[ch..ch + LANES], &w[ch..ch + LANES]);
                for lane in 0..LANES {
                    acc[lane] += read(src[lane]) * w[lane];
                }
            }
            out.copy_from_slice(&acc);
        }
        for ch in full..c {
            out[ch] = taps
                .iter()
                .fold(0.0, |acc, (src, w)| acc + read(src[ch]) * w[ch]);
        }
    }
}

/// Channels the depthwise kernel sums at once: two AVX2 registers, one AVX-512 register.
const LANES: usize = 16;

/// Max-pool 3x3, stride 2, with `padding` (padded cells never win), plus `residual` (of the
/// output's shape).
pub fn max_pool_add(x: &[f32], shape: Shape, padding: Padding, residual: &[f32], out: &mut [f32]) {
    let (out_h, pad_top) = padding.resolve(shape.height, 3, 2);
    let (out_w, pad_left) = padding.resolve(shape.width, 3, 2);
    let c = shape.channels;
    assert_eq!(x.len(), shape.len(), "max-pool input");
    assert_eq!(
        out.len(),
        shape.batch * out_h * out_w * c,
        "max-pool output"
    );
    assert_eq!(residual.len(), out.len(), "max-pool residual");
    out.par_chunks_mut(out_w * c)
        .zip(residual.par_chunks(out_w * c))
        .enumerate()
        .for_each(|(row, (dst, residual))| {
            let (n, oy) = (row / out_h, row % out_h);
            // The window's one to three input rows (padded rows never win).
            let mut rows: [&[f32]; 3] = [&[]; 3];
            let mut count = 0;
            for iy in (0..3).filter_map(|ky| (oy * 2 + ky).checked_sub(pad_top)) {
                if iy < shape.height {
                    rows[count] =
                        &x[(n * shape.height + iy) * shape.width * c..][..shape.width * c];
                    count += 1;
                }
            }
            max_pool_row(&rows[..count], pad_left, c, residual, dst);
        });
}

/// One output row of the max-pool from its (one to three) input rows.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn max_pool_row(rows: &[&[f32]], pad_left: usize, c: usize, residual: &[f32], dst: &mut [f32]) {
    let width = rows[0].len() / c;
    for (ox, (best, residual)) in dst
        .chunks_exact_mut(c)
        .zip(residual.chunks_exact(c))
        .enumerate()
    {
        best.fill(f32::NEG_INFINITY);
        for row in rows {
            for kx in 0..3 {
                let Some(ix) = (ox * 2 + kx).checked_sub(pad_left).filter(|&ix| ix < width) else {
                    continue;
                };
                for (b, &v) in best.iter_mut().zip(&row[ix * c..][..c]) {
                    *b = b.max(v);
                }
            }
        }
        for (b, &r) in best.iter_mut().zip(residual) {
            *b += r;
        }
    }
}

/// Mean over height and width of each image: `[N, C]` row-major.
pub fn global_avg_pool(x: &[f32], shape: Shape, out: &mut [f32]) {
    let (hw, c) = (shape.height * shape.width, shape.channels);
    assert_eq!(x.len(), shape.len(), "pool input");
    assert_eq!(out.len(), shape.batch * c, "pool output");
    out.par_chunks_mut(c)
        .zip(x.par_chunks(hw * c))
        .for_each(|(sums, image)| {
            sums.fill(0.0);
            for pixel in image.chunks_exact(c) {
                for (s, &v) in sums.iter_mut().zip(pixel) {
                    *s += v;
                }
            }
            for s in sums.iter_mut() {
                *s /= hw as f32;
            }
        });
}
