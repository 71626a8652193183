//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2x2 tile of output
//! pixels comes from its 4x4 input window in 16 multiply-adds per input and output channel
//! instead of the direct convolution's 36.
//!
//! At load, the 3x3 kernel `g` of every (input, output) channel pair becomes `U = G g Gᵀ`
//! (16 values), packed as 16 `[cin, cout]` GEMM weights. A pass, one row of tiles per task:
//! each tile's window `d` becomes `V = Bᵀ d B` (16 `[tiles, cin]` matrices), each `V` is
//! multiplied by its `U` on the GEMM micro-kernels (16 `[tiles, cout]` products `M`), and
//! `Y = Aᵀ M A` gives the tile's 2x2 outputs, to which the bias (and a residual) is added and
//! the ReLU applied as they are stored. The transforms only add and subtract (and halve, for
//! `G`), so the results stay within a few roundings of the direct convolution's.

use std::cell::RefCell;
use std::ops::Range;

use multiversion::multiversion;
use rayon::prelude::*;

use super::aligned::AlignedVec;
use super::gemm::{self, Finish, Isa, LeftRows, PackedWeights};
use super::ops::ConvGeometry;
use super::{prefetch, relu};
use crate::tensor::Shape;

/// Values in a tile's input window (and transformed matrices per tile).
const WINDOW: usize = 16;

/// Values in a 64-byte cache line.
const LINE: usize = 16;

/// Values of a task's transformed inputs and products together (512 KiB), so that both stay
/// in L2 while the weights stream past: this bounds the tiles a task takes at once.
const SCRATCH_VALUES: usize = 128 * 1024;

thread_local! {
    /// Each thread's rows of `Bᵀ d`, transformed inputs `V` and products `M`, reused across
    /// tasks and calls.
    static SCRATCH: RefCell<[AlignedVec; 3]> =
        const { RefCell::new([AlignedVec::new(), AlignedVec::new(), AlignedVec::new()]) };
}

/// Whether a convolution runs on this module's kernels: 3x3, stride 1.
pub fn applies(kernel: usize, stride: usize) -> bool {
    kernel == 3 && stride == 1
}

/// A 3x3 convolution's weights transformed for F(2x2, 3x3): 16 GEMM weights `[cin, cout]`
/// and the bias, which is added after the output transform.
#[derive(Debug, Clone)]
pub struct WinogradWeights {
    transformed: Vec<PackedWeights>,
    bias: Vec<f32>,
    cin: usize,
    cout: usize,
}

impl WinogradWeights {
    /// Transforms a `[3, 3, cin, cout]` kernel (row-major, as a GEMM's `[9 * cin, cout]`) and
    /// packs it for `isa`'s kernels, which this CPU must run.
    pub fn new(isa: Isa, kernel: &[f32], bias: &[f32], cin: usize, cout: usize) -> Self {
        assert_eq!(kernel.len(), 9 * cin * cout, "3x3 kernel");
        assert_eq!(bias.len(), cout, "bias");
        let mut u = vec![vec![0.0f32; cin * cout]; WINDOW];
        for ci in 0..cin {
            for co in 0..cout {
                let g: [[f64; 3]; 3] = std::array::from_fn(|ky| {
                    std::array::from_fn(|kx| kernel[((ky * 3 + kx) * cin + ci) * cout + co] as f64)
                });
                // G g (G down each column), then (G g) Gᵀ (G along each row of that).
                let mut gg = [[0.0f64; 3]; 4];
                for kx in 0..3 {
                    let column = transform_kernel([g[0][kx], g[1][kx], g[2][kx]]);
                    for (i, value) in column.into_iter().enumerate() {
                        gg[i][kx] = value;
                    }
                }
                for (i, row) in gg.iter().enumerate() {
                    for (j, value) in transform_kernel(*row).into_iter().enumerate() {
                        u[i * 4 + j][ci * cout + co] = value as f32;
                    }
                }
            }
        }
        let zeros = vec![0.0; cout];
        Self {
            transformed: u
                .iter()
                .map(|u| PackedWeights::new(isa, u, &zeros, cin, cout))
                .collect(),
            bias: bias.to_vec(),
            cin,
            cout,
        }
    }

    /// Multiply-adds the products execute for an output of `out` (whose channels are
    /// `cout`): 16 per input and output channel per tile.
    pub fn macs(&self, out: Shape) -> u64 {
        let tiles = out.batch * out.height.div_ceil(2) * out.width.div_ceil(2);
        (WINDOW * tiles * self.cin * self.cout) as u64
    }
}

/// `G x` for three kernel values down a column (or along a row): `(x0, (x0 + x1 + x2) / 2,
/// (x0 - x1 + x2) / 2, x2)`.
fn transform_kernel(x: [f64; 3]) -> [f64; 4] {
    [
        x[0],
        (x[0] + x[1] + x[2]) / 2.0,
        (x[0] - x[1] + x[2]) / 2.0,
        x[2],
    ]
}

/// `out = finish(conv3x3(x))` over an NHWC input with stride 1 and `geometry`'s padding,
/// split over rayon's threads by rows of tiles.
pub fn conv(
    x: &[f32],
    geometry: ConvGeometry,
    weights: &WinogradWeights,
    finish: Finish<'_>,
    out: &mut [f32],
) {
    assert!(
        applies(geometry.kernel, geometry.stride),
        "Winograd F(2x2, 3x3) takes 3x3 stride-1 convolutions"
    );
    let s = geometry.input;
    assert_eq!(x.len(), s.len(), "convolution input");
    assert_eq!(s.channels, weights.cin, "convolution input channels");
    let out_shape = geometry.output(weights.cout);
    assert_eq!(out.len(), out_shape.len(), "convolution output");
    if let Some(residual) = finish.residual {
        assert_eq!(residual.len(), out.len(), "residual");
    }
    let (out_h, out_w, pad_top, pad_left) = geometry.resolve();
    if out.is_empty() {
        return;
    }
    let row_len = out_w * weights.cout;
    let tiles_x = out_w.div_ceil(2);
    let most = (SCRATCH_VALUES / (WINDOW * (weights.cin + weights.cout))).max(1);
    let per_task = tiles_x.div_ceil(tiles_x.div_ceil(most));
    out.par_chunks_mut(out_h * row_len)
        .enumerate()
        .for_each(|(n, image)| {
            let input =
                &x[n * s.height * s.width * s.channels..][..s.height * s.width * s.channels];
            image
                .par_chunks_mut(2 * row_len)
                .enumerate()
                .for_each(|(ty, rows)| {
                    let store = Store {
                        bias: &weights.bias,
                        residual: finish
                            .residual
                            .map(|r| &r[(n * out_h + 2 * ty) * row_len..][..rows.len()]),
                        relu: finish.relu,
                        width: out_w,
                    };
                    let origin = (2 * ty, pad_top, pad_left);
                    SCRATCH.with_borrow_mut(|scratch| {
                        for t0 in (0..tiles_x).step_by(per_task) {
                            let tiles = t0..(t0 + per_task).min(tiles_x);
                            let window = (input, s, origin);
                            convolve_tiles(window, tiles, weights, store, rows, scratch);
                        }
                    })
                });
        });
}

/// The tiles `tiles` of one tile row: the input transform, the 16 products, the output
/// transform into `rows` (the tile row's output rows), in `scratch` (the rows of `Bᵀ d`,
/// `V` and `M`). `window` is one image, its shape, and the tile row's first output row with
/// the leading pads.
fn convolve_tiles(
    window: (&[f32], Shape, (usize, usize, usize)),
    tiles: Range<usize>,
    weights: &WinogradWeights,
    store: Store,
    rows: &mut [f32],
    scratch: &mut [AlignedVec; 3],
) {
    let (image, s, origin) = window;
    let [input_rows, v, m] = scratch;
    let (count, cin, cout) = (tiles.len(), weights.cin, weights.cout);
    v.resize(WINDOW * count * cin);
    m.resize(WINDOW * count * cout);
    transform_inputs(image, s, origin, tiles.clone(), input_rows, v);
    let no_finish = Finish {
        residual: None,
        relu: false,
    };
    for (xi, u) in weights.transformed.iter().enumerate() {
        let v = &v[xi * count * cin..][..count * cin];
        let m = m[xi * count * cout..][..count * cout].as_mut_ptr();
        // SAFETY: `v` holds `count` rows of `cin` values and `m` `count` rows of `cout`,
        // which only this call writes.
        unsafe {
            let lhs = LeftRows::matrix(v, cin);
            gemm::gemm_block(u, lhs, 0..count, 0..u.panel_count(), no_finish, m, true)
        };
    }
    transform_outputs(m, cout, tiles, store, rows);
}

/// Where a tile row's outputs go, and what is added to them on the way.
#[derive(Clone, Copy)]
struct Store<'a> {
    bias: &'a [f32],
    /// The residual's values for the same (one or two) output rows.
    residual: Option<&'a [f32]>,
    relu: bool,
    /// Output pixels per row.
    width: usize,
}

/// `Bᵀ x` for four values down a column (or along a row) of a window, each value `len`
/// channels (or pixels' channels): `(x0 - x2, x1 + x2, x2 - x1, x1 - x3)`.
#[inline(always)]
fn transform_input(x: [&[f32]; 4], out: [&mut [f32]; 4]) {
    let [o0, o1, o2, o3] = out;
    let x = x.map(|x| &x[..o0.len()]);
    let values = o0.iter_mut().zip(o1).zip(o2).zip(o3);
    for (i, (((o0, o1), o2), o3)) in values.enumerate() {
        let (x0, x1, x2, x3) = (x[0][i], x[1][i], x[2][i], x[3][i]);
        (*o0, *o1, *o2, *o3) = (x0 - x2, x1 + x2, x2 - x1, x1 - x3);
    }
}

/// Writes `V = Bᵀ d B` of the tiles `tiles` of the tile row whose first output row is
/// `origin.0` (with the input's leading pads `origin.1`, `origin.2`) to `v`, laid out as 16
/// matrices `[tiles, cin]`; window pixels outside the input are zeros. `Bᵀ d` is computed
/// for the four input rows at once (`rows`: four rows of the tiles' span of pixels), then
/// `B` along them per tile.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn transform_inputs(
    image: &[f32],
    s: Shape,
    origin: (usize, usize, usize),
    tiles: Range<usize>,
    rows: &mut AlignedVec,
    v: &mut [f32],
) {
    let (oy, pad_top, pad_left) = origin;
    let c = s.channels;
    let count = tiles.len();
    // The span's pixels: input columns `2 * tiles.start - pad_left ..`, those inside it from
    // `inside.start`.
    let span = 2 * count + 2;
    let first = (2 * tiles.start) as isize - pad_left as isize;
    let inside = (-first).clamp(0, span as isize) as usize
        ..(s.width as isize - first).clamp(0, span as isize) as usize;
    let len = inside.len() * c;
    rows.resize(4 * span * c);
    // Pixels outside the input are zeros.
    for row in rows.chunks_exact_mut(span * c) {
        row[..inside.start * c].fill(0.0);
        row[inside.end * c..].fill(0.0);
    }
    // The input row of window row `r`, if it lies in the input.
    let source = |r: usize| {
        (oy + r)
            .checked_sub(pad_top)
            .filter(|&iy| iy < s.height && !inside.is_empty())
    };
    // Zeros for the window rows outside the input: in an image's first and last tile rows.
    let zeros = if (0..4).all(|r| source(r).is_some()) {
        Vec::new()
    } else {
        vec![0.0; len]
    };
    let input_row = |r: usize| match source(r) {
        Some(iy) => {
            let x0 = (first + inside.start as isize) as usize;
            &image[(iy * s.width + x0) * c..][..len]
        }
        None => &zeros[..],
    };
    let [r0, r1, r2, r3] = four(rows, |i| i * span * c + inside.start * c, len);
    transform_input(
        [input_row(0), input_row(1), input_row(2), input_row(3)],
        [r0, r1, r2, r3],
    );
    for (t, _) in tiles.enumerate() {
        for (i, row) in rows.chunks_exact(span * c).enumerate() {
            let pixel = |j: usize| &row[(2 * t + j) * c..][..c];
            let out = four(v, |j| ((i * 4 + j) * count + t) * c, c);
            transform_input([pixel(0), pixel(1), pixel(2), pixel(3)], out);
        }
    }
}

/// Four disjoint `len`-value pieces of `values`, the `j`th at offset `at(j)` (increasing).
fn four(values: &mut [f32], at: impl Fn(usize) -> usize, len: usize) -> [&mut [f32]; 4] {
    debug_assert!((1..4).all(|j| at(j) >= at(j - 1) + len));
    let (first, rest) = values[at(0)..].split_at_mut(at(1) - at(0));
    let (second, rest) = rest.split_at_mut(at(2) - at(1));
    let (third, fourth) = rest.split_at_mut(at(3) - at(2));
    [
        &mut first[..len],
        &mut second[..len],
        &mut third[..len],
        &mut fourth[..len],
    ]
}

/// Writes the outputs of the tiles `tiles` from their products `m` (16 matrices `[tiles,
/// cout]`) to `rows` (the tile row's one or two output rows): `Y = Aᵀ M A`, plus the bias and
/// the residual, then the ReLU; tile pixels past the output's edge are dropped. `Aᵀ M` is
/// computed for all the tiles at once, in place of `M`'s first two rows, then `A` along
/// them per tile.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn transform_outputs(
    m: &mut [f32],
    cout: usize,
    tiles: Range<usize>,
    store: Store,
    rows: &mut [f32],
) {
    let count = tiles.len();
    let len = count * cout;
    for j in 0..4 {
        let [m0, m1, m2, m3] = four(m, |i| (i * 4 + j) * len, len);
        for (((m0, m1), &m2), &m3) in m0.iter_mut().zip(m1).zip(&*m2).zip(&*m3) {
            (*m0, *m1) = (*m0 + *m1 + m2, *m1 - m2 - m3);
        }
    }
    let row_len = store.width * cout;
    let last_tile = tiles.end - 1;
    for (t, tx) in tiles.enumerate() {
        // The next tile's output lines come into the cache while this one is computed.
        if tx < last_tile {
            let next = &rows[2 * (tx + 1) * cout..];
            for i in 0..rows.len().div_ceil(row_len).min(2) {
                let pixels = (store.width - 2 * (tx + 1)).min(2);
                for at in (0..pixels * cout).step_by(LINE) {
                    prefetch::write(&next[i * row_len + at]);
                }
            }
        }
        for i in 0..rows.len().div_ceil(row_len).min(2) {
            let u = |j: usize| &m[(i * 4 + j) * len + t * cout..][..cout];
            for (j, x) in [[0, 1, 2], [1, 2, 3]].into_iter().enumerate() {
                let ox = 2 * tx + j;
                if ox >= store.width {
                    break;
                }
                let at = i * row_len + ox * cout;
                let out = &mut rows[at..][..cout];
                let (a, b, c) = (u(x[0]), u(x[1]), u(x[2]));
                // Row 0 of A adds all three; row 1 subtracts the last two.
                let sign = if j == 0 { 1.0 } else { -1.0 };
                for ((((out, &a), &b), &c), &bias) in
                    out.iter_mut().zip(a).zip(b).zip(c).zip(store.bias)
                {
                    *out = a + sign * b + sign * c + bias;
                }
                if let Some(residual) = store.residual {
                    for (out, &r) in out.iter_mut().zip(&residual[at..][..cout]) {
                        *out += r;
                    }
                }
                if store.relu {
                    for out in out.iter_mut() {
                        *out = relu(*out);
                    }
                }
            }
        }
    }
}
