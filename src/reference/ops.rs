//! Plain reference implementations of every op, NHWC, written for clarity.
//!
//! These are the oracle the GPU kernels are tested against. The heavy loops split their
//! output rows across the available cores, and nothing else is clever about them.

use crate::graph::{DepthwiseGeometry, Padding};
use crate::tensor::{Shape, Tensor};
use crate::weights::BatchNorm;

/// Runs `f(row_index, row)` over the `row_len`-sized rows of `out`, spread over the CPU cores
/// (on the calling thread alone where there is one core, or no threads, as in WebAssembly).
fn for_each_row(out: &mut [f32], row_len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / row_len.max(1);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.max(1));
    if threads == 1 {
        for (i, row) in out.chunks_mut(row_len.max(1)).enumerate() {
            f(i, row);
        }
        return;
    }
    let rows_per_thread = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(rows_per_thread * row_len).enumerate() {
            let f = &f;
            scope.spawn(move || {
                for (i, row) in chunk.chunks_mut(row_len).enumerate() {
                    f(t * rows_per_thread + i, row);
                }
            });
        }
    });
}

/// Regular convolution, kernel `HWIO` of shape `[k, k, cin, cout]`, no bias.
pub fn conv(
    x: &Tensor,
    kernel: &[f32],
    k: usize,
    stride: usize,
    padding: Padding,
    cout: usize,
) -> Tensor {
    let s = x.shape;
    let (oh, pad_top) = padding.resolve(s.height, k, stride);
    let (ow, pad_left) = padding.resolve(s.width, k, stride);
    let cin = s.channels;
    assert_eq!(kernel.len(), k * k * cin * cout, "conv kernel size");
    let mut out = Tensor::zeros(Shape::new(s.batch, oh, ow, cout));
    // One output row (n, oy) of ow * cout values at a time.
    for_each_row(&mut out.data, ow * cout, |row, dst| {
        let (n, oy) = (row / oh, row % oh);
        for ox in 0..ow {
            let acc = &mut dst[ox * cout..(ox + 1) * cout];
            for ky in 0..k {
                let iy = (oy * stride + ky) as isize - pad_top as isize;
                if iy < 0 || iy >= s.height as isize {
                    continue;
                }
                for kx in 0..k {
                    let ix = (ox * stride + kx) as isize - pad_left as isize;
                    if ix < 0 || ix >= s.width as isize {
                        continue;
                    }
                    let src = x.index(n, iy as usize, ix as usize, 0);
                    for ci in 0..cin {
                        let v = x.data[src + ci];
                        let w = &kernel[((ky * k + kx) * cin + ci) * cout..][..cout];
                        for (a, &wv) in acc.iter_mut().zip(w) {
                            *a += v * wv;
                        }
                    }
                }
            }
        }
    });
    out
}

/// Depthwise 3x3 convolution over `geometry`'s window (stride, dilation, padding); kernel
/// `[3, 3, C, 1]`, no bias.
pub fn depthwise_conv(x: &Tensor, kernel: &[f32], geometry: DepthwiseGeometry) -> Tensor {
    let s = x.shape;
    let c = s.channels;
    assert_eq!(kernel.len(), 9 * c, "depthwise kernel size");
    let out_shape = geometry.output_shape(s);
    let (oh, pad_top) = geometry.resolve(s.height);
    let (ow, pad_left) = geometry.resolve(s.width);
    let (stride, dilation) = (geometry.stride, geometry.dilation);
    let mut out = Tensor::zeros(out_shape);
    for_each_row(&mut out.data, ow * c, |row, dst| {
        let (n, y) = (row / oh, row % oh);
        for xo in 0..ow {
            let acc = &mut dst[xo * c..(xo + 1) * c];
            for ky in 0..3 {
                let iy = (y * stride + ky * dilation) as isize - pad_top as isize;
                if iy < 0 || iy >= s.height as isize {
                    continue;
                }
                for kx in 0..3 {
                    let ix = (xo * stride + kx * dilation) as isize - pad_left as isize;
                    if ix < 0 || ix >= s.width as isize {
                        continue;
                    }
                    let src = &x.data[x.index(n, iy as usize, ix as usize, 0)..][..c];
                    let w = &kernel[(ky * 3 + kx) * c..][..c];
                    for ((a, &v), &wv) in acc.iter_mut().zip(src).zip(w) {
                        *a += v * wv;
                    }
                }
            }
        }
    });
    out
}

/// Pointwise (1x1) convolution; kernel `[cin, cout]` (Keras `[1, 1, cin, cout]`), no bias.
pub fn pointwise_conv(x: &Tensor, kernel: &[f32], cout: usize) -> Tensor {
    let cin = x.shape.channels;
    assert_eq!(kernel.len(), cin * cout, "pointwise kernel size");
    let mut out = Tensor::zeros(x.shape.with_channels(cout));
    for_each_row(&mut out.data, cout, |pixel, acc| {
        let src = &x.data[pixel * cin..(pixel + 1) * cin];
        for (ci, &v) in src.iter().enumerate() {
            let w = &kernel[ci * cout..(ci + 1) * cout];
            for (a, &wv) in acc.iter_mut().zip(w) {
                *a += v * wv;
            }
        }
    });
    out
}

/// Inference batchnorm over the channel axis: `gamma * (x - mean) / sqrt(var + eps) + beta`.
pub fn batch_norm(x: &mut Tensor, bn: &BatchNorm<'_>) {
    let eps = bn.epsilon;
    let c = x.shape.channels;
    for pixel in x.data.chunks_mut(c) {
        for (i, v) in pixel.iter_mut().enumerate() {
            *v = bn.gamma[i] * (*v - bn.mean[i]) / (bn.variance[i] + eps).sqrt() + bn.beta[i];
        }
    }
}

/// `max(x, 0)` elementwise.
pub fn relu(x: &Tensor) -> Tensor {
    Tensor {
        shape: x.shape,
        data: x.data.iter().map(|&v| v.max(0.0)).collect(),
    }
}

/// Elementwise sum of two tensors of the same shape (the residual add).
pub fn add(a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(a.shape, b.shape, "add of different shapes");
    Tensor {
        shape: a.shape,
        data: a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect(),
    }
}

/// Max-pool 3x3, stride 2, with `padding`: TensorFlow's 'same' (Keras) or symmetric 1 (timm);
/// padded cells never win.
pub fn max_pool(x: &Tensor, padding: Padding) -> Tensor {
    let s = x.shape;
    let (oh, pad_top) = padding.resolve(s.height, 3, 2);
    let (ow, pad_left) = padding.resolve(s.width, 3, 2);
    let mut out = Tensor::zeros(Shape::new(s.batch, oh, ow, s.channels));
    let c = s.channels;
    for n in 0..s.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut best = f32::NEG_INFINITY;
                    for ky in 0..3 {
                        let iy = (oy * 2 + ky) as isize - pad_top as isize;
                        for kx in 0..3 {
                            let ix = (ox * 2 + kx) as isize - pad_left as isize;
                            if iy >= 0
                                && ix >= 0
                                && (iy as usize) < s.height
                                && (ix as usize) < s.width
                            {
                                best = best.max(x.data[x.index(n, iy as usize, ix as usize, ch)]);
                            }
                        }
                    }
                    let o = out.index(n, oy, ox, ch);
                    out.data[o] = best;
                }
            }
        }
    }
    out
}

/// Mean over height and width: `[N, C]` row-major.
pub fn global_avg_pool(x: &Tensor) -> Vec<f32> {
    let s = x.shape;
    let hw = s.height * s.width;
    let mut out = vec![0.0f32; s.batch * s.channels];
    for n in 0..s.batch {
        let sums = &mut out[n * s.channels..(n + 1) * s.channels];
        for p in 0..hw {
            let px = &x.data[(n * hw + p) * s.channels..][..s.channels];
            for (acc, &v) in sums.iter_mut().zip(px) {
                *acc += v;
            }
        }
        for v in sums.iter_mut() {
            *v /= hw as f32;
        }
    }
    out
}

/// Dense layer: `x [rows, inputs] * kernel [inputs, units] + bias`.
pub fn dense(x: &[f32], kernel: &[f32], bias: &[f32], units: usize) -> Vec<f32> {
    let inputs = kernel.len() / units;
    x.chunks(inputs)
        .flat_map(|row| {
            let mut acc = bias.to_vec();
            for (i, &v) in row.iter().enumerate() {
                for (a, &w) in acc.iter_mut().zip(&kernel[i * units..(i + 1) * units]) {
                    *a += v * w;
                }
            }
            acc
        })
        .collect()
}

/// Softmax over each row of `cols` values.
pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.into_iter().map(move |e| e / sum)
        })
        .collect()
}
