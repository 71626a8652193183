//! The fast CPU backend as the page runs it, compiled to WebAssembly: its SIMD128 and
//! portable GEMM kernels, the depthwise half fused into them, the standalone depthwise and
//! the Winograd 3x3 convolution, against the reference backend's unfused ops on random inputs of many shapes (odd sizes,
//! row and column tails of every tile, slices of the inner dimension, a ReLU on the input, a
//! residual and a ReLU after). `scripts/test-wasm.sh` runs it in Node with SIMD128 on.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::wasm_bindgen_test;
use xception_wgpu::cpu::gemm::{Finish, Isa, PackedWeights};
use xception_wgpu::cpu::ops::{self as fast, ConvGeometry, Depthwise, Lhs};
use xception_wgpu::cpu::winograd::{self, WinogradWeights};
use xception_wgpu::graph::{DepthwiseGeometry, Padding};
use xception_wgpu::reference::ops;
use xception_wgpu::{Shape, Tensor};

/// Deterministic values in `[-scale, scale)` (a 64-bit linear congruential generator).
struct Values(u64);

impl Values {
    fn take(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// The kernel families this build runs: SIMD128 (in a `+simd128` build) and portable.
fn families() -> Vec<Isa> {
    let families: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.available()).collect();
    assert!(families.contains(&Isa::Portable));
    families
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}: element {i} is {g} but the reference is {w}"
        );
    }
}

/// `finish(x * kernel + bias)` by the reference's unfused ops.
fn reference(
    x: &Tensor,
    kernel: &[f32],
    bias: &[f32],
    residual: Option<&Tensor>,
    relu: bool,
) -> Vec<f32> {
    finish_reference(
        ops::pointwise_conv(x, kernel, bias.len()),
        bias,
        residual,
        relu,
    )
}

/// `finish(y + bias)` by the reference's unfused ops.
fn finish_reference(
    mut y: Tensor,
    bias: &[f32],
    residual: Option<&Tensor>,
    relu: bool,
) -> Vec<f32> {
    let n = bias.len();
    for row in y.data.chunks_exact_mut(n) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
    if let Some(residual) = residual {
        y = ops::add(&y, residual);
    }
    if relu {
        y = ops::relu(&y);
    }
    y.data
}

/// `finish(lhs * kernel + bias)` on `m` rows, with the weights (`[k, n]` kernel, `n` biases)
/// packed for each kernel family of [`families`], matches `want`.
fn every_family_matches(
    lhs: Lhs<'_>,
    m: usize,
    (kernel, bias): (&[f32], &[f32]),
    finish: Finish<'_>,
    want: &[f32],
    what: &str,
) {
    let n = bias.len();
    for isa in families() {
        let weights = PackedWeights::new(isa, kernel, bias, kernel.len() / n, n);
        let mut got = vec![f32::NAN; m * n];
        fast::matmul(lhs, m, &weights, finish, &mut got);
        assert_close(&got, want, &format!("{what}, {}", isa.name()));
    }
}

#[wasm_bindgen_test]
fn gemms_match_the_reference() {
    let mut values = Values(1);
    // (rows, inner, columns): single rows and columns, every row tail of a 4-row tile, column
    // tails of an 8-column panel, inner dimensions past one 256-deep slice.
    for (m, k, n) in [
        (1, 1, 1),
        (3, 7, 5),
        (4, 8, 8),
        (5, 13, 9),
        (6, 64, 16),
        (7, 300, 13),
        (9, 520, 40),
        (33, 96, 24),
        (130, 40, 130),
    ] {
        let x = Tensor::new(Shape::new(1, 1, m, k), values.take(m * k, 1.0)).unwrap();
        let kernel = values.take(k * n, 1.0 / (k as f32).sqrt());
        let bias = values.take(n, 0.5);
        let residual = Tensor::new(Shape::new(1, 1, m, n), values.take(m * n, 1.0)).unwrap();
        for (with_residual, relu) in [(false, false), (true, true)] {
            let residual = with_residual.then_some(&residual);
            let want = reference(&x, &kernel, &bias, residual, relu);
            let finish = Finish {
                residual: residual.map(|r| &r.data[..]),
                relu,
            };
            let what = format!("{m}x{k}x{n} residual={with_residual} relu={relu}");
            every_family_matches(
                Lhs::Matrix(&x.data),
                m,
                (&kernel, &bias),
                finish,
                &want,
                &what,
            );
        }
    }
}

#[wasm_bindgen_test]
fn separable_convolutions_and_the_depthwise_match_the_reference() {
    let mut values = Values(2);
    let s = Shape::new;
    let plain = DepthwiseGeometry::PLAIN;
    // timm's aligned layout: a stride-2 depthwise half, a dilated one, each with the folded
    // batchnorm's bias and a ReLU after it.
    let strided = |stride, dilation| DepthwiseGeometry {
        stride,
        dilation,
        padding: Padding::timm(3, stride, dilation),
    };
    for (shape, cout, relu_in, geometry, biased) in [
        (s(1, 1, 1, 3), 5, true, plain, false),
        (s(2, 5, 7, 13), 11, false, plain, false),
        (s(1, 9, 9, 24), 40, true, plain, false),
        (s(1, 12, 11, 37), 8, true, plain, true),
        (s(1, 3, 3, 64), 64, false, plain, false),
        (s(1, 10, 9, 24), 16, true, strided(2, 1), true),
        (s(2, 7, 7, 12), 20, false, strided(1, 2), true),
    ] {
        let cin = shape.channels;
        let x = Tensor::new(shape, values.take(shape.len(), 1.0)).unwrap();
        let depthwise = values.take(9 * cin, 1.0 / 3.0);
        let depthwise_bias = biased.then(|| values.take(cin, 0.5));
        let pointwise = values.take(cin * cout, 1.0 / (cin as f32).sqrt());
        let bias = values.take(cout, 0.5);
        let input = if relu_in { ops::relu(&x) } else { x.clone() };
        let mut dw = ops::depthwise_conv(&input, &depthwise, geometry);
        if let Some(b) = &depthwise_bias {
            for pixel in dw.data.chunks_exact_mut(cin) {
                pixel.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
            dw = ops::relu(&dw);
        }
        let fused = Depthwise {
            input: shape,
            geometry,
            kernel: &depthwise,
            relu_in,
            bias: depthwise_bias.as_deref(),
            relu_out: biased,
        };

        let mut got = vec![f32::NAN; dw.shape.len()];
        fast::depthwise_conv(&x.data, fused, &mut got);
        let what = format!("{shape} {geometry:?} bias={biased} relu_in={relu_in}");
        assert_close(&got, &dw.data, &format!("depthwise {what}"));

        let want = reference(&dw, &pointwise, &bias, None, true);
        let lhs = Lhs::Depthwise(&x.data, fused);
        let finish = Finish {
            residual: None,
            relu: true,
        };
        let what = format!("separable {what} -> {cout}");
        every_family_matches(
            lhs,
            dw.shape.pixels(),
            (&pointwise, &bias),
            finish,
            &want,
            &what,
        );
    }
}

#[wasm_bindgen_test]
fn winograd_convolutions_match_the_reference() {
    let mut values = Values(3);
    let s = Shape::new;
    // Odd output sizes (tiles past the edge), 'same' padding, a batch, channel tails.
    for (shape, padding, cout) in [
        (s(1, 3, 3, 5), Padding::Valid, 7),
        (s(1, 12, 13, 32), Padding::Valid, 64),
        (s(2, 7, 9, 6), Padding::Same, 12),
    ] {
        let cin = shape.channels;
        let x = Tensor::new(shape, values.take(shape.len(), 1.0)).unwrap();
        let kernel = values.take(9 * cin * cout, 1.0 / (9.0 * cin as f32).sqrt());
        let bias = values.take(cout, 0.5);
        let y = ops::conv(&x, &kernel, 3, 1, padding, cout);
        let out = y.shape;
        let residual = Tensor::new(out, values.take(out.len(), 1.0)).unwrap();
        let want = finish_reference(y, &bias, Some(&residual), true);
        let geometry = ConvGeometry {
            input: shape,
            kernel: 3,
            stride: 1,
            padding,
        };
        let finish = Finish {
            residual: Some(&residual.data),
            relu: true,
        };
        for isa in families() {
            let weights = WinogradWeights::new(isa, &kernel, &bias, cin, cout);
            let mut got = vec![f32::NAN; out.len()];
            winograd::conv(&x.data, geometry, &weights, finish, &mut got);
            let what = format!("Winograd {shape} {padding:?} -> {cout}, {}", isa.name());
            assert_close(&got, &want, &what);
        }
    }
}

/// The build under test has the SIMD128 kernels: a test of the portable ones alone would
/// pass while the page's own kernels went untested.
#[wasm_bindgen_test]
fn the_simd128_kernels_are_built_in() {
    assert!(
        Isa::Simd128.available(),
        "build with RUSTFLAGS='-C target-feature=+simd128'"
    );
    assert_eq!(Isa::detect(), Isa::Simd128);
}
