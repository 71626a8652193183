//! The fast CPU backend's kernels, on NHWC float32 slices with batchnorm already folded into
//! the weights and a bias.
//!
//! - Convolutions are GEMMs on the micro-kernels of [`super::gemm`], the weights packed at
//!   load: a separable convolution computes its depthwise half one block of pixels at a time
//!   and the GEMM reads that block (`[pixels, cin]`) as its left-hand side; the stem and
//!   shortcut convolutions, whose windows never leave the input, are read where they lie (a
//!   patch row is `kernel` runs of neighbouring pixels), others gather their patches block by
//!   block (an implicit GEMM, no full im2col). Bias, ReLU and the residual add are applied to
//!   the accumulators before they are stored.
//! - The depthwise 3x3, the max-pool (with its residual add) and the global average pool are
//!   direct loops over channels, which the compiler vectorises; [`multiversion`](mod@multiversion)
//!   builds them for AVX2 and AVX-512 too and picks the widest the CPU has at run time.
//!
//! Everything splits its output across rayon's threads. Each kernel's reference is its
//! unfused counterpart in [`crate::reference::ops`].

use std::cell::RefCell;

use multiversion::multiversion;
use rayon::prelude::*;

use super::aligned::AlignedVec;
use super::gemm::{self, Finish, LeftRows, PackedWeights};
use super::{prefetch, relu};
use crate::graph::{DepthwiseGeometry, Padding};
use crate::tensor::Shape;

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
    pub(crate) fn resolve(&self) -> (usize, usize, usize, usize) {
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

    /// Whether every window lies inside the input with no padding before it ('valid'
    /// convolutions, 1x1 strided ones): then a patch row is `kernel` runs of `kernel`
    /// neighbouring pixels, which the GEMM reads where they lie, and nothing is gathered.
    fn reads_in_place(&self) -> bool {
        let (out_h, out_w, pad_top, pad_left) = self.resolve();
        let inside = |out: usize, size: usize| (out - 1) * self.stride + self.kernel <= size;
        pad_top == 0
            && pad_left == 0
            && inside(out_h, self.input.height)
            && inside(out_w, self.input.width)
    }

    /// Calls `multiply` for each stretch of output pixels `rows` that lies in one output row,
    /// with the stretch and where its patches lie in `x` (see [`Self::reads_in_place`]).
    fn for_each_row_in_place(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        mut multiply: impl FnMut(std::ops::Range<usize>, LeftRows),
    ) {
        let (out_h, out_w, _, _) = self.resolve();
        let s = self.input;
        let c = s.channels;
        let mut start = rows.start;
        while start < rows.end {
            let end = rows.end.min((start / out_w + 1) * out_w);
            let (n, oy, ox) = (
                start / (out_h * out_w),
                start / out_w % out_h,
                start % out_w,
            );
            let first = ((n * s.height + oy * self.stride) * s.width + ox * self.stride) * c;
            let lhs = LeftRows {
                start: x[first..].as_ptr(),
                stride: self.stride * c,
                run: self.kernel * c,
                run_stride: s.width * c,
            };
            multiply(start..end, lhs);
            start = end;
        }
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
    static BLOCK: RefCell<AlignedVec> = const { RefCell::new(AlignedVec::new()) };
}

/// The output pointer shared by the tasks of one GEMM (each writes its own rectangle).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the tasks of one `matmul` write disjoint rectangles of the output, and the slice
// outlives the parallel loop that uses the pointer.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Rows of a task: its block of the left-hand side (`ROWS_PER_TASK x k`, gathered or computed
/// for patches and depthwise) stays in L2 while the weights' panels stream past it.
const ROWS_PER_TASK: usize = 128;

/// Products smaller than this many multiply-adds run as one task.
const MIN_TASK_MACS: usize = 1 << 20;

/// Fewest rows worth a task of their own: two AVX-512 tiles.
const MIN_ROWS_PER_TASK: usize = 24;

/// How [`matmul`] splits an `m`-row product with `panels` column panels over `threads`:
/// row blocks (a multiple of the thread count where there are enough); where there are fewer
/// blocks than threads (the middle and exit flows at batch 1), one block per thread while each
/// keeps [`MIN_ROWS_PER_TASK`] rows, since a task computes the depthwise half of its own rows
/// only; below that (the 5x5 maps), groups of panels, every task over all rows.
fn tasks(m: usize, k: usize, n: usize, panels: usize, threads: usize) -> (usize, usize) {
    if m * n * k < MIN_TASK_MACS {
        return (1, 1);
    }
    let row_blocks = m.div_ceil(ROWS_PER_TASK);
    if row_blocks >= threads {
        (row_blocks.next_multiple_of(threads).min(m), 1)
    } else if m / threads >= MIN_ROWS_PER_TASK {
        (threads, 1)
    } else {
        (row_blocks, threads.div_ceil(row_blocks).min(panels))
    }
}

/// `out[m, n] = finish(lhs[m, k] * weights)`, row-major, split over rayon's threads.
pub fn matmul(
    lhs: Lhs<'_>,
    m: usize,
    weights: &PackedWeights,
    finish: Finish<'_>,
    out: &mut [f32],
) {
    let (k, n) = (weights.k(), weights.n());
    assert_eq!(out.len(), m * n, "matmul output");
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
            assert_eq!(depthwise.output().pixels(), m, "depthwise pixels");
            if let Some(bias) = depthwise.bias {
                assert_eq!(bias.len(), k, "depthwise bias");
            }
        }
    }
    if let Some(residual) = finish.residual {
        assert_eq!(residual.len(), m * n, "residual");
    }
    let panels = weights.panel_count();
    let (row_blocks, panel_groups) = tasks(m, k, n, panels, rayon::current_num_threads());
    let (rows, group) = (m.div_ceil(row_blocks), panels.div_ceil(panel_groups));
    let out = OutPtr(out.as_mut_ptr());
    (0..row_blocks * panel_groups)
        .into_par_iter()
        .for_each(|task| {
            let r0 = task / panel_groups * rows;
            let rows = r0..(r0 + rows).min(m);
            let p0 = task % panel_groups * group;
            let panels = p0..(p0 + group).min(panels);
            if rows.is_empty() || panels.is_empty() {
                return;
            }
            // SAFETY: `lhs` describes `rows` rows of `k` values inside the left-hand side's
            // slice (a block of it, the gathered or computed block, or the input of a
            // convolution whose windows lie inside it); `out` is `m x n` (checked above) and no
            // other task writes these rows' columns in `panels`.
            let multiply = |rows: std::ops::Range<usize>, lhs: LeftRows| unsafe {
                gemm::gemm_block(weights, lhs, rows, panels.clone(), finish, out.get(), false)
            };
            match lhs {
                Lhs::Matrix(a) => multiply(
                    rows.clone(),
                    LeftRows::matrix(&a[rows.start * k..rows.end * k], k),
                ),
                Lhs::Patches(x, geometry) if geometry.reads_in_place() => {
                    geometry.for_each_row_in_place(x, rows, multiply)
                }
                Lhs::Patches(x, geometry) => BLOCK.with_borrow_mut(|block| {
                    block.resize(rows.len() * k);
                    geometry.gather(x, rows.clone(), block);
                    multiply(rows, LeftRows::matrix(block, k));
                }),
                Lhs::Depthwise(x, depthwise) => BLOCK.with_borrow_mut(|block| {
                    block.resize(rows.len() * k);
                    depthwise.compute(x, rows.clone(), block);
                    multiply(rows, LeftRows::matrix(block, k));
                }),
            }
        });
}

/// A depthwise 3x3 convolution over an NHWC input, with an optional bias (a folded batchnorm)
/// and ReLU on its output: what a separable convolution's pointwise GEMM multiplies, computed
/// one block of output pixels at a time.
#[derive(Debug, Clone, Copy)]
pub struct Depthwise<'a> {
    /// Input shape.
    pub input: Shape,
    /// The window: stride, dilation, padding.
    pub geometry: DepthwiseGeometry,
    /// Kernel `[3, 3, C]`.
    pub kernel: &'a [f32],
    /// Whether a ReLU is applied to the input as it is read (the input itself stays
    /// un-rectified, for the shortcut that reads it).
    pub relu_in: bool,
    /// Added to every output pixel's channels.
    pub bias: Option<&'a [f32]>,
    /// Whether a ReLU follows (after the bias).
    pub relu_out: bool,
}

impl Depthwise<'_> {
    /// The output shape.
    pub fn output(&self) -> Shape {
        self.geometry.output_shape(self.input)
    }

    /// Writes output pixels `pixels` (indices over the whole batch) to `dst`.
    fn compute(&self, x: &[f32], pixels: std::ops::Range<usize>, dst: &mut [f32]) {
        let c = self.input.channels;
        let block = &mut dst[..pixels.len() * c];
        if self.geometry.is_plain() {
            self.compute_plain(x, pixels, block);
        } else {
            self.compute_strided(x, pixels, block);
        }
        if self.bias.is_some() || self.relu_out {
            finish_depthwise(block, self.bias, self.relu_out, c);
        }
    }

    /// [`Depthwise::compute`] for stride 1, no dilation and one pixel of padding: a row at a
    /// time in registers (see [`depthwise_row`]).
    fn compute_plain(&self, x: &[f32], pixels: std::ops::Range<usize>, dst: &mut [f32]) {
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
            let ahead = (y + 2 < s.height).then(|| input_row(y + 2));
            let (out, rest) = dst.split_at_mut((x1 - x0) * c);
            if self.relu_in {
                depthwise_row::<true>(rows, ahead, self.kernel, c, x0, out);
            } else {
                depthwise_row::<false>(rows, ahead, self.kernel, c, x0, out);
            }
            dst = rest;
            pixel += x1 - x0;
        }
    }

    /// [`Depthwise::compute`] for any stride, dilation and padding: per output pixel, its
    /// taps inside the input in the reference's order, each a loop over the channels.
    fn compute_strided(&self, x: &[f32], pixels: std::ops::Range<usize>, dst: &mut [f32]) {
        let s = self.input;
        let c = s.channels;
        let g = self.geometry;
        let (out_h, pad_top) = g.resolve(s.height);
        let (out_w, pad_left) = g.resolve(s.width);
        for (pixel, out) in pixels.zip(dst.chunks_exact_mut(c)) {
            let (n, oy, ox) = (
                pixel / (out_h * out_w),
                pixel / out_w % out_h,
                pixel % out_w,
            );
            out.fill(0.0);
            for ky in 0..3 {
                let Some(iy) = (oy * g.stride + ky * g.dilation)
                    .checked_sub(pad_top)
                    .filter(|&iy| iy < s.height)
                else {
                    continue;
                };
                for kx in 0..3 {
                    let Some(ix) = (ox * g.stride + kx * g.dilation)
                        .checked_sub(pad_left)
                        .filter(|&ix| ix < s.width)
                    else {
                        continue;
                    };
                    let src = &x[((n * s.height + iy) * s.width + ix) * c..][..c];
                    let w = &self.kernel[(ky * 3 + kx) * c..][..c];
                    if self.relu_in {
                        depthwise_tap::<true>(src, w, out);
                    } else {
                        depthwise_tap::<false>(src, w, out);
                    }
                }
            }
        }
    }
}

/// `out += relu?(src) * w`, channel by channel: one tap of [`Depthwise::compute_strided`].
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn depthwise_tap<const RELU_IN: bool>(src: &[f32], w: &[f32], out: &mut [f32]) {
    for ((o, &v), &w) in out.iter_mut().zip(src).zip(w) {
        let v = if RELU_IN { relu(v) } else { v };
        *o += v * w;
    }
}

/// Adds `bias` to each pixel's `c` channels of `block`, then rectifies if `relu`.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn finish_depthwise(block: &mut [f32], bias: Option<&[f32]>, relu_out: bool, c: usize) {
    for pixel in block.chunks_exact_mut(c) {
        if let Some(bias) = bias {
            pixel.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
        }
        if relu_out {
            pixel.iter_mut().for_each(|v| *v = relu(*v));
        }
    }
}

/// A depthwise 3x3 convolution on its own (the network fuses it into the pointwise GEMM
/// instead: [`Lhs::Depthwise`]); `out` has [`Depthwise::output`]'s shape.
pub fn depthwise_conv(x: &[f32], depthwise: Depthwise<'_>, out: &mut [f32]) {
    let shape = depthwise.output();
    let c = shape.channels;
    assert_eq!(x.len(), depthwise.input.len(), "depthwise input");
    assert_eq!(out.len(), shape.len(), "depthwise output");
    assert_eq!(depthwise.kernel.len(), 9 * c, "depthwise kernel");
    out.par_chunks_mut(shape.width * c)
        .enumerate()
        .for_each(|(row, dst)| {
            depthwise.compute(x, row * shape.width..(row + 1) * shape.width, dst)
        });
}

/// Batchnorm folded into a per-channel `scale` and `shift` (or none: a bare ReLU), then ReLU,
/// elementwise: a pre-activation block's opening.
pub fn scale_shift_relu(x: &[f32], affine: Option<(&[f32], &[f32])>, c: usize, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "pre-activation output");
    out.par_chunks_mut(64 * c)
        .zip(x.par_chunks(64 * c))
        .for_each(|(out, x)| scale_shift_relu_rows(x, affine, c, out));
}

#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn scale_shift_relu_rows(x: &[f32], affine: Option<(&[f32], &[f32])>, c: usize, out: &mut [f32]) {
    for (out, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        match affine {
            Some((scale, shift)) => {
                for (((o, &v), &a), &b) in out.iter_mut().zip(x).zip(scale).zip(shift) {
                    *o = relu(v * a + b);
                }
            }
            None => out.iter_mut().zip(x).for_each(|(o, &v)| *o = relu(v)),
        }
    }
}

/// Output pixels `x0..` of one row of the depthwise convolution (as many as `dst` holds) from
/// its three input rows (`None` above the top or below the bottom), fetching the same pixels
/// of the row below them, `ahead` (which the next output row reads), into the cache meanwhile.
///
/// The channels go in strips of 16, then 8 (in WebAssembly: SIMD128 strips of 4), then one at
/// a time; each strip walks along the row with its nine weights and a 3x3 window of inputs in
/// registers, loading one new input column per output pixel (rectified as it is loaded when
/// `RELU_IN`). Per channel the taps are added in the reference's order; taps outside the input
/// add zero products, which leave the sums bit for bit as the reference's.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn depthwise_row<const RELU_IN: bool>(
    rows: [Option<&[f32]>; 3],
    ahead: Option<&[f32]>,
    kernel: &[f32],
    c: usize,
    x0: usize,
    dst: &mut [f32],
) {
    let mut ch = 0;
    #[cfg(not(target_arch = "wasm32"))]
    {
        while ch + 16 <= c {
            depthwise_strip::<RELU_IN, 16>(rows, ahead, kernel, c, ch, x0, dst);
            ch += 16;
        }
        if ch + 8 <= c {
            depthwise_strip::<RELU_IN, 8>(rows, ahead, kernel, c, ch, x0, dst);
            ch += 8;
        }
    }
    // SIMD128's (in V8 on x86) 16 vector registers hold one 4-lane 3x3 window, not more.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    while ch + 4 <= c {
        simd128::depthwise_strip::<RELU_IN>(rows, kernel, c, ch, x0, dst);
        ch += 4;
    }
    for ch in ch..c {
        depthwise_strip::<RELU_IN, 1>(rows, ahead, kernel, c, ch, x0, dst);
    }
}

/// Channels `ch..ch + N` of [`depthwise_row`]'s output pixels.
#[inline(always)]
fn depthwise_strip<const RELU_IN: bool, const N: usize>(
    rows: [Option<&[f32]>; 3],
    ahead: Option<&[f32]>,
    kernel: &[f32],
    c: usize,
    ch: usize,
    x0: usize,
    dst: &mut [f32],
) {
    let width = rows[1].map_or(0, |row| row.len() / c);
    let mut w = [[0.0f32; N]; 9];
    for (tap, w) in w.iter_mut().enumerate() {
        w.copy_from_slice(&kernel[tap * c + ch..][..N]);
    }
    let mut left = window_column::<RELU_IN, N>(rows, c, ch, x0.checked_sub(1), width);
    let mut mid = window_column::<RELU_IN, N>(rows, c, ch, Some(x0), width);
    for (ox, out) in (x0..).zip(dst.chunks_exact_mut(c)) {
        if let Some(ahead) = ahead.filter(|_| ox + 1 < width) {
            prefetch::read(&ahead[(ox + 1) * c + ch]);
        }
        let right = window_column::<RELU_IN, N>(rows, c, ch, Some(ox + 1), width);
        let mut acc = [0.0f32; N];
        for ky in 0..3 {
            for (kx, column) in [&left, &mid, &right].into_iter().enumerate() {
                let w = &w[ky * 3 + kx];
                for lane in 0..N {
                    acc[lane] += column[ky][lane] * w[lane];
                }
            }
        }
        out[ch..ch + N].copy_from_slice(&acc);
        left = mid;
        mid = right;
    }
}

/// The depthwise strip in WebAssembly SIMD128 vectors.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use std::arch::wasm32::*;

    /// Channels `ch..ch + 4` of [`super::depthwise_row`]'s output pixels, as
    /// [`super::depthwise_strip`] computes them (the same products, added in the same order).
    pub(super) fn depthwise_strip<const RELU_IN: bool>(
        rows: [Option<&[f32]>; 3],
        kernel: &[f32],
        c: usize,
        ch: usize,
        x0: usize,
        dst: &mut [f32],
    ) {
        let width = rows[1].map_or(0, |row| row.len() / c);
        // SAFETY: every load and store is of 4 values inside a checked slice.
        let load = |values: &[f32]| unsafe { v128_load(values[..4].as_ptr().cast()) };
        let column = |ix: Option<usize>| -> [v128; 3] {
            let ix = ix.filter(|&ix| ix < width);
            rows.map(|row| match (row, ix) {
                (Some(row), Some(ix)) if RELU_IN => {
                    f32x4_pmax(f32x4_splat(0.0), load(&row[ix * c + ch..]))
                }
                (Some(row), Some(ix)) => load(&row[ix * c + ch..]),
                _ => f32x4_splat(0.0),
            })
        };
        let w: [v128; 9] = std::array::from_fn(|tap| load(&kernel[tap * c + ch..]));
        let mut left = column(x0.checked_sub(1));
        let mut mid = column(Some(x0));
        for (ox, out) in (x0..).zip(dst.chunks_exact_mut(c)) {
            let right = column(Some(ox + 1));
            let mut acc = f32x4_splat(0.0);
            for ky in 0..3 {
                for (kx, column) in [&left, &mid, &right].into_iter().enumerate() {
                    acc = f32x4_add(acc, f32x4_mul(column[ky], w[ky * 3 + kx]));
                }
            }
            // SAFETY: as the loads.
            unsafe { v128_store(out[ch..ch + 4].as_mut_ptr().cast(), acc) };
            left = mid;
            mid = right;
        }
    }
}

/// One column of [`depthwise_strip`]'s window: channels `ch..ch + N` of input pixel `ix` in
/// each of the three rows, zeros outside the input.
#[inline(always)]
fn window_column<const RELU_IN: bool, const N: usize>(
    rows: [Option<&[f32]>; 3],
    c: usize,
    ch: usize,
    ix: Option<usize>,
    width: usize,
) -> [[f32; N]; 3] {
    let mut column = [[0.0f32; N]; 3];
    let Some(ix) = ix.filter(|&ix| ix < width) else {
        return column;
    };
    for (values, row) in column.iter_mut().zip(rows) {
        if let Some(row) = row {
            let src = &row[ix * c + ch..][..N];
            for lane in 0..N {
                values[lane] = if RELU_IN { relu(src[lane]) } else { src[lane] };
            }
        }
    }
    column
}

/// Max-pool 3x3, stride 2, with `padding` (padded cells never win), plus `residual` (of the
/// output's shape).
pub fn max_pool(x: &[f32], shape: Shape, padding: Padding, residual: &[f32], out: &mut [f32]) {
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
                // A comparison rather than `f32::max` (see [`relu`]); `best` is never NaN,
                // so as with `max` a NaN input never wins.
                for (b, &v) in best.iter_mut().zip(&row[ix * c..][..c]) {
                    *b = if v > *b { v } else { *b };
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
