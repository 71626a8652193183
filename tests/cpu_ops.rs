//! Per-op parity: each kernel of the fast CPU backend against the reference on fresh random
//! inputs over the shapes the GPU kernels are tested on (tests/common), each run on thread
//! pools of 1, 2 and 3 threads, so that every way of splitting the work over threads is
//! covered, and the GEMMs with every micro-kernel family this CPU runs (the portable one
//! always).
//!
//! Tolerance: `|fast - reference| <= 1e-4 * (1 + |reference|)` per element, as on the GPU:
//! only the summation order (and fused multiply-adds) differ.

mod common;

use common::{
    assert_close, conv_cases, depthwise_cases, depthwise_shapes, max_pool_shapes, random_tensor,
    rng, uniform, ConvCase, RandomBn,
};
use xception_wgpu::cpu::gemm::{Finish, Isa, PackedWeights};
use xception_wgpu::cpu::ops::{self as fast, ConvGeometry, Depthwise, Lhs};
use xception_wgpu::cpu::winograd::{self, WinogradWeights};
use xception_wgpu::graph::{DepthwiseGeometry, Padding};
use xception_wgpu::reference::ops;
use xception_wgpu::{Shape, Tensor};

const TOL: f32 = 1e-4;

/// Runs `f` on thread pools of 1, 2 and 3 threads.
fn on_each_pool(mut f: impl FnMut(usize) + Send) {
    for threads in 1..=3 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| f(threads));
    }
}

/// The micro-kernel families this CPU runs; the portable one is always among them.
fn kernel_families() -> Vec<Isa> {
    let families: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.available()).collect();
    assert!(families.contains(&Isa::Portable));
    families
}

/// The reference convolution: conv, batchnorm, residual add, ReLU, each on its own.
fn reference_conv(
    case: &ConvCase,
    x: &Tensor,
    kernel: &[f32],
    bn: &RandomBn,
    residual: &Tensor,
) -> Tensor {
    let mut y = ops::conv(
        x,
        kernel,
        case.geometry.kernel,
        case.geometry.stride,
        case.geometry.padding,
        case.out_channels,
    );
    ops::batch_norm(&mut y, &bn.view());
    if case.residual {
        y = ops::add(&y, residual);
    }
    if case.relu {
        y = ops::relu(&y);
    }
    y
}

/// Every convolution case as an implicit GEMM over gathered patches, the 1x1 stride-1 ones
/// also as a plain GEMM over the activations (how the pointwise convolutions run) and the
/// 3x3 stride-1 ones also by Winograd's F(2x2, 3x3) (how the stem's second one runs).
#[test]
fn convolutions_match_the_reference() {
    let mut rng = rng();
    let (mut pointwise, mut winograd_cases) = (0, 0);
    for case in conv_cases() {
        let (cin, cout, k) = (case.shape.channels, case.out_channels, case.geometry.kernel);
        let x = random_tensor(&mut rng, case.shape);
        let kernel = uniform(
            &mut rng,
            k * k * cin * cout,
            1.0 / ((k * k * cin) as f32).sqrt(),
        );
        let bn = RandomBn::new(&mut rng, cout);
        let geometry = ConvGeometry {
            input: case.shape,
            kernel: k,
            stride: case.geometry.stride,
            padding: case.geometry.padding,
        };
        let out = geometry.output(cout);
        let residual = random_tensor(&mut rng, out);
        let want = reference_conv(&case, &x, &kernel, &bn, &residual);
        assert_eq!(want.shape, out);
        let (folded, bias) = bn.view().fold(&kernel, cout);
        let finish = Finish {
            residual: case.residual.then_some(&residual.data[..]),
            relu: case.relu,
        };
        let mut lhs = vec![Lhs::Patches(&x.data, geometry)];
        if k == 1 && case.geometry.stride == 1 {
            lhs.push(Lhs::Matrix(&x.data));
            pointwise += 1;
        }
        for isa in kernel_families() {
            let weights = PackedWeights::new(isa, &folded, &bias, k * k * cin, cout);
            for &lhs in &lhs {
                on_each_pool(|threads| {
                    let mut got = vec![f32::NAN; out.len()];
                    fast::matmul(lhs, out.pixels(), &weights, finish, &mut got);
                    let what =
                        format!(
                        "{}x{}/{} {:?} {} -> {cout} relu={} residual={} {lhs_kind}, {} kernels \
                         on {threads} threads",
                        k, k, case.geometry.stride, case.geometry.padding, case.shape, case.relu,
                        case.residual, isa.name(),
                        lhs_kind = match lhs {
                            Lhs::Matrix(_) => "matrix",
                            Lhs::Patches(..) => "patches",
                            Lhs::Depthwise(..) => "depthwise",
                        },
                    );
                    assert_close(&got, &want.data, TOL, &what);
                });
            }
            if winograd::applies(k, case.geometry.stride) {
                let weights = WinogradWeights::new(isa, &folded, &bias, cin, cout);
                on_each_pool(|threads| {
                    let mut got = vec![f32::NAN; out.len()];
                    winograd::conv(&x.data, geometry, &weights, finish, &mut got);
                    let what = format!(
                        "3x3/1 {:?} {} -> {cout} relu={} residual={} by Winograd, {} kernels \
                         on {threads} threads",
                        case.geometry.padding,
                        case.shape,
                        case.relu,
                        case.residual,
                        isa.name(),
                    );
                    assert_close(&got, &want.data, TOL, &what);
                });
            }
        }
        winograd_cases += usize::from(winograd::applies(k, case.geometry.stride));
    }
    assert!(pointwise >= 5, "pointwise cases ran: {pointwise}");
    assert!(winograd_cases >= 6, "Winograd cases ran: {winograd_cases}");
}

/// Winograd's F(2x2, 3x3) where a row of tiles is more than one task's scratch holds (many
/// channels, a wide image), so each row runs in several pieces.
#[test]
fn winograd_splits_rows_of_many_tiles() {
    let mut rng = rng();
    let (shape, cout) = (Shape::new(1, 5, 41, 512), 256);
    let x = random_tensor(&mut rng, shape);
    let kernel = uniform(&mut rng, 9 * 512 * cout, 1.0 / (9.0 * 512.0f32).sqrt());
    let bn = RandomBn::new(&mut rng, cout);
    let geometry = ConvGeometry {
        input: shape,
        kernel: 3,
        stride: 1,
        padding: Padding::Same,
    };
    let out = geometry.output(cout);
    let mut want = ops::conv(&x, &kernel, 3, 1, Padding::Same, cout);
    ops::batch_norm(&mut want, &bn.view());
    let want = ops::relu(&want);
    let (folded, bias) = bn.view().fold(&kernel, cout);
    let finish = Finish {
        residual: None,
        relu: true,
    };
    for isa in kernel_families() {
        let weights = WinogradWeights::new(isa, &folded, &bias, 512, cout);
        on_each_pool(|threads| {
            let mut got = vec![f32::NAN; out.len()];
            winograd::conv(&x.data, geometry, &weights, finish, &mut got);
            let what = format!(
                "Winograd {shape} -> {cout}, {} on {threads} threads",
                isa.name()
            );
            assert_close(&got, &want.data, TOL, &what);
        });
    }
}

/// The reference depthwise half: the window, the bias (a folded batchnorm) and ReLU after it.
fn reference_depthwise(
    input: &Tensor,
    kernel: &[f32],
    geometry: DepthwiseGeometry,
    bias: Option<&[f32]>,
) -> Tensor {
    let mut y = ops::depthwise_conv(input, kernel, geometry);
    if let Some(bias) = bias {
        for pixel in y.data.chunks_exact_mut(input.shape.channels) {
            pixel.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
        y = ops::relu(&y);
    }
    y
}

/// Separable convolutions in one pass (the depthwise half computed block by block as the
/// GEMM's left operand): Xception's channel counts, odd sizes (where the threads' blocks of
/// pixels start inside an image row), single pixels, single rows, batches, a ReLU on the
/// input, the identity shortcut and a ReLU after; the aligned layout's stride-2 and dilated
/// depthwise halves with their bias and ReLU.
#[test]
fn separable_convolutions_match_the_reference() {
    let mut rng = rng();
    let s = Shape::new;
    let plain = DepthwiseGeometry::PLAIN;
    let strided = |stride, dilation| DepthwiseGeometry {
        stride,
        dilation,
        padding: Padding::timm(3, stride, dilation),
    };
    for (shape, cout, relu_in, residual, relu_out, geometry, biased) in [
        (s(1, 1, 1, 3), 5, true, false, false, plain, false),
        (s(2, 5, 7, 13), 11, false, true, true, plain, false),
        (s(1, 36, 36, 128), 256, true, false, false, plain, false),
        (s(1, 37, 37, 128), 256, true, false, true, plain, false),
        (s(1, 9, 9, 728), 728, true, true, false, plain, false),
        (s(2, 10, 10, 728), 728, true, true, false, plain, false),
        (s(1, 5, 5, 1024), 1536, false, false, true, plain, true),
        (s(1, 3, 3, 1536), 2048, true, false, true, plain, false),
        (s(1, 1, 9, 64), 32, true, true, true, plain, false),
        (
            s(1, 38, 38, 256),
            256,
            true,
            true,
            false,
            strided(2, 1),
            true,
        ),
        (
            s(2, 19, 17, 728),
            728,
            true,
            false,
            false,
            strided(2, 1),
            true,
        ),
        (s(1, 1, 1, 8), 4, false, false, true, strided(2, 1), true),
        (
            s(1, 19, 19, 728),
            728,
            true,
            true,
            false,
            strided(1, 2),
            true,
        ),
        (
            s(2, 9, 11, 12),
            20,
            false,
            false,
            true,
            strided(1, 4),
            false,
        ),
    ] {
        let cin = shape.channels;
        let x = random_tensor(&mut rng, shape);
        let depthwise = uniform(&mut rng, 9 * cin, 1.0 / 3.0);
        let bias = biased.then(|| uniform(&mut rng, cin, 0.5));
        let pointwise = uniform(&mut rng, cin * cout, 1.0 / (cin as f32).sqrt());
        let bn = RandomBn::new(&mut rng, cout);
        let out = geometry.output_shape(shape).with_channels(cout);
        let shortcut = random_tensor(&mut rng, out);

        let input = if relu_in { ops::relu(&x) } else { x.clone() };
        let mid = reference_depthwise(&input, &depthwise, geometry, bias.as_deref());
        let mut want = ops::pointwise_conv(&mid, &pointwise, cout);
        ops::batch_norm(&mut want, &bn.view());
        if residual {
            want = ops::add(&want, &shortcut);
        }
        if relu_out {
            want = ops::relu(&want);
        }

        let (folded, pointwise_bias) = bn.view().fold(&pointwise, cout);
        let lhs = Lhs::Depthwise(
            &x.data,
            Depthwise {
                input: shape,
                geometry,
                kernel: &depthwise,
                relu_in,
                bias: bias.as_deref(),
                relu_out: biased,
            },
        );
        let finish = Finish {
            residual: residual.then_some(&shortcut.data[..]),
            relu: relu_out,
        };
        for isa in kernel_families() {
            let weights = PackedWeights::new(isa, &folded, &pointwise_bias, cin, cout);
            on_each_pool(|threads| {
                let mut got = vec![f32::NAN; out.len()];
                fast::matmul(lhs, out.pixels(), &weights, finish, &mut got);
                let what = format!(
                    "separable {shape} -> {cout} {geometry:?} bias={biased} relu_in={relu_in} \
                     residual={residual} relu_out={relu_out}, {} kernels on {threads} threads",
                    isa.name()
                );
                assert_close(&got, &want.data, TOL, &what);
            });
        }
    }
}

/// The depthwise convolution alone, on every window and epilogue the GPU's are checked on.
#[test]
fn depthwise_conv_matches_the_reference() {
    let mut rng = rng();
    for shape in depthwise_shapes() {
        for (geometry, biased) in depthwise_cases() {
            for relu_in in [false, true] {
                let x = random_tensor(&mut rng, shape);
                let kernel = uniform(&mut rng, 9 * shape.channels, 1.0 / 3.0);
                let bias = biased.then(|| uniform(&mut rng, shape.channels, 0.5));
                let input = if relu_in { ops::relu(&x) } else { x.clone() };
                let want = reference_depthwise(&input, &kernel, geometry, bias.as_deref());
                let depthwise = Depthwise {
                    input: shape,
                    geometry,
                    kernel: &kernel,
                    relu_in,
                    bias: bias.as_deref(),
                    relu_out: biased,
                };
                on_each_pool(|threads| {
                    let mut got = vec![f32::NAN; want.shape.len()];
                    fast::depthwise_conv(&x.data, depthwise, &mut got);
                    let what = format!(
                        "depthwise {shape} {geometry:?} bias={biased} relu_in={relu_in} on \
                         {threads} threads"
                    );
                    assert_close(&got, &want.data, TOL, &what);
                });
            }
        }
    }
}

/// Batchnorm + ReLU (and a bare ReLU), the pre-activation blocks' opening.
#[test]
fn pre_activation_matches_the_reference() {
    let mut rng = rng();
    for shape in max_pool_shapes() {
        let x = random_tensor(&mut rng, shape);
        let bn = RandomBn::new(&mut rng, shape.channels);
        let mut want = x.clone();
        ops::batch_norm(&mut want, &bn.view());
        let want = ops::relu(&want);
        let (scale, shift) = bn.view().fold(&vec![1.0; shape.channels], shape.channels);
        on_each_pool(|threads| {
            let mut got = vec![f32::NAN; shape.len()];
            let affine = Some((scale.as_slice(), shift.as_slice()));
            fast::scale_shift_relu(&x.data, affine, shape.channels, &mut got);
            assert_close(
                &got,
                &want.data,
                TOL,
                &format!("BN + ReLU {shape} on {threads} threads"),
            );
            fast::scale_shift_relu(&x.data, None, shape.channels, &mut got);
            assert_close(
                &got,
                &ops::relu(&x).data,
                0.0,
                &format!("ReLU {shape} on {threads} threads"),
            );
        });
    }
}

/// Both paddings (Keras' 'same', timm's symmetric 1) on odd and even sizes, with the residual.
#[test]
fn max_pool_matches_the_reference() {
    let mut rng = rng();
    for shape in max_pool_shapes() {
        // Shift everything negative so a zero-padded pool would give a wrong (zero) maximum.
        let mut x = random_tensor(&mut rng, shape);
        x.data.iter_mut().for_each(|v| *v -= 2.0);
        for padding in [Padding::Same, Padding::Symmetric(1)] {
            let pooled = ops::max_pool(&x, padding);
            let residual = random_tensor(&mut rng, pooled.shape);
            let want = ops::add(&pooled, &residual);
            on_each_pool(|threads| {
                let mut got = vec![f32::NAN; want.shape.len()];
                fast::max_pool(&x.data, shape, padding, &residual.data, &mut got);
                // A maximum is exact and the add is one rounding, as in the reference.
                let what = format!("max pool {padding:?} + residual {shape} on {threads} threads");
                assert_close(&got, &want.data, 0.0, &what);
            });
        }
    }
}

#[test]
fn global_avg_pool_matches_the_reference() {
    let mut rng = rng();
    for shape in [
        Shape::new(1, 1, 1, 2048),
        Shape::new(2, 5, 7, 13),
        Shape::new(3, 10, 10, 2048),
    ] {
        let x = random_tensor(&mut rng, shape);
        let want = ops::global_avg_pool(&x);
        on_each_pool(|threads| {
            let mut got = vec![f32::NAN; shape.batch * shape.channels];
            fast::global_avg_pool(&x.data, shape, &mut got);
            assert_close(
                &got,
                &want,
                TOL,
                &format!("global average pool {shape} on {threads} threads"),
            );
        });
    }
}
