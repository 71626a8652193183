//! Per-op parity: each GPU kernel against the CPU reference on fresh random inputs over many
//! shapes (1x1 maps, odd sizes, stride 2, borders, channel counts that are not a multiple of
//! 4 or 8, and Xception's own 728/1024/1536/2048).
//!
//! Tolerance: `|gpu - cpu| <= 1e-4 * (1 + |cpu|)` per element. Only the summation order differs
//! between the two, and weights are scaled by `1/sqrt(fan_in)` as in a trained network, so
//! outputs are O(1) and float32 rounding stays near 1e-6.

mod common;

use common::{assert_close, gpu, random_tensor, rng, uniform};
use rand::rngs::StdRng;
use rand::Rng;
use xception_wgpu::cpu::ops;
use xception_wgpu::gpu::{GpuOps, Kernel, Kernels, PipelineCacheFile, Precision};
use xception_wgpu::graph::{Padding, BN_EPSILON};
use xception_wgpu::weights::BatchNorm;
use xception_wgpu::{Shape, Tensor};

const TOL: f32 = 1e-4;

fn ops_on_gpu() -> GpuOps {
    GpuOps::new(gpu())
}

/// Owned random batchnorm parameters with a positive variance.
struct RandomBn {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    variance: Vec<f32>,
    epsilon: f32,
}

impl RandomBn {
    fn new(rng: &mut StdRng, channels: usize) -> Self {
        Self {
            gamma: uniform(rng, channels, 2.0),
            beta: uniform(rng, channels, 1.0),
            mean: uniform(rng, channels, 0.5),
            variance: (0..channels).map(|_| rng.random_range(0.0..2.0)).collect(),
            // Keras' 1e-3 or PyTorch's 1e-5, so the kernels honour the value they are given.
            epsilon: if rng.random() { BN_EPSILON } else { 1e-5 },
        }
    }

    fn view(&self) -> BatchNorm<'_> {
        BatchNorm {
            gamma: &self.gamma,
            beta: &self.beta,
            mean: &self.mean,
            variance: &self.variance,
            epsilon: self.epsilon,
        }
    }
}

#[test]
fn batchnorm_fold_matches_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    for (rows, cout) in [(1, 1), (27, 32), (3, 5), (64, 128), (728, 728), (9, 13)] {
        let kernel = uniform(&mut rng, rows * cout, 1.0);
        let bn = RandomBn::new(&mut rng, cout);
        let (want_k, want_b) = ops::fold_batchnorm(&kernel, cout, &bn.view());
        let (got_k, got_b) = gpu.fold_batchnorm(&kernel, cout, &bn.view()).unwrap();
        assert_close(
            &got_k,
            &want_k,
            TOL,
            &format!("folded kernel {rows}x{cout}"),
        );
        assert_close(&got_b, &want_b, TOL, &format!("folded bias {cout}"));
    }
}

/// One convolution case: (input shape, kernel size, stride, padding, out channels, relu).
type ConvCase = (Shape, usize, usize, Padding, usize, bool);

/// A GPU convolution under test: input, HWIO kernel, batchnorm and the case's settings.
type RunConv<'a> =
    dyn Fn(&Tensor, &[f32], &BatchNorm<'_>, usize, usize, Padding, bool) -> Tensor + 'a;

/// Runs each case on random inputs through `run` and compares it with the CPU's convolution,
/// batchnorm and ReLU.
fn conv_cases_match_cpu(what: &str, cases: &[ConvCase], run: &RunConv<'_>) {
    let mut rng = rng();
    for &(shape, k, stride, padding, cout, relu) in cases {
        let x = random_tensor(&mut rng, shape);
        let fan_in = (k * k * shape.channels) as f32;
        let kernel = uniform(&mut rng, k * k * shape.channels * cout, 1.0 / fan_in.sqrt());
        let bn = RandomBn::new(&mut rng, cout);
        let mut want = ops::conv2d(&x, &kernel, k, stride, padding, cout);
        ops::batch_norm(&mut want, &bn.view());
        if relu {
            want = ops::relu(&want);
        }
        let got = run(&x, &kernel, &bn.view(), k, stride, padding, relu);
        assert_eq!(got.shape, want.shape);
        let case = format!("{what} {shape} k{k} s{stride} {padding:?} -> {cout} relu={relu}");
        assert_close(&got.data, &want.data, TOL, &case);
    }
}

#[test]
fn conv2d_with_batchnorm_and_relu_matches_cpu() {
    let gpu = ops_on_gpu();
    let cases = [
        (Shape::new(1, 7, 9, 3), 3, 2, Padding::Valid, 32, true),
        (Shape::new(2, 11, 10, 3), 3, 2, Padding::Valid, 5, true),
        (Shape::new(1, 3, 3, 5), 3, 1, Padding::Valid, 7, false),
        (Shape::new(1, 12, 13, 32), 3, 1, Padding::Valid, 64, true),
        (Shape::new(1, 8, 9, 64), 1, 2, Padding::Same, 128, false),
        (Shape::new(2, 9, 9, 728), 1, 2, Padding::Same, 12, false),
        (Shape::new(1, 1, 1, 4), 1, 2, Padding::Same, 3, false),
        (Shape::new(1, 6, 7, 3), 3, 2, Padding::Same, 9, true),
    ];
    conv_cases_match_cpu(
        "conv2d",
        &cases,
        &|x, kernel, bn, k, stride, padding, relu| {
            gpu.conv2d(x, kernel, bn, k, stride, padding, relu).unwrap()
        },
    );
}

/// The 1x1 stride-2 shortcut convolutions run on the pointwise kernels: both of them against
/// the CPU's convolution with TF 'same' padding, on even and odd maps.
#[test]
fn strided_pointwise_conv_matches_cpu_shortcut_conv() {
    let cases = [
        (Shape::new(1, 8, 9, 64), 1, 2, Padding::Same, 128, false),
        (Shape::new(2, 9, 9, 728), 1, 2, Padding::Same, 12, false),
        (Shape::new(1, 1, 1, 4), 1, 2, Padding::Same, 3, false),
        (Shape::new(1, 37, 37, 128), 1, 2, Padding::Same, 256, false),
        (Shape::new(3, 5, 6, 32), 1, 2, Padding::Same, 64, true),
    ];
    for subgroup in [true, false] {
        let gpu = ops_on_gpu().with_subgroup_gemm(subgroup);
        let what = format!("strided pointwise (subgroup={})", gpu.subgroup_gemm());
        conv_cases_match_cpu(&what, &cases, &|x, kernel, bn, _, stride, _, relu| {
            gpu.pointwise_conv(x, kernel, bn, stride, relu, None, Precision::F32)
                .unwrap()
        });
    }
}

/// The subgroup GEMM kernel on regular convolutions: 3x3 'valid' (the second stem conv),
/// 3x3 'same' with stride 1 and 2 (taps in the padding), 1x1, odd sizes and batches.
#[test]
fn gemm_conv_matches_cpu() {
    let gpu = ops_on_gpu().with_subgroup_gemm(true);
    if !gpu.subgroup_gemm() {
        let context = gpu.context();
        assert!(
            !context.device.features().contains(wgpu::Features::SUBGROUP)
                || context.adapter.subgroup_min_size < 8,
            "the subgroup GEMM kernel should run on {:?}",
            context.adapter
        );
        eprintln!("no subgroups of 8 on this adapter: nothing runs the subgroup GEMM kernel");
        return;
    }
    let cases = [
        (Shape::new(1, 12, 13, 32), 3, 1, Padding::Valid, 64, true),
        (Shape::new(2, 7, 9, 8), 3, 1, Padding::Same, 12, false),
        (Shape::new(1, 8, 11, 4), 3, 2, Padding::Same, 8, true),
        (Shape::new(1, 5, 5, 16), 3, 2, Padding::Valid, 4, false),
        (Shape::new(1, 9, 9, 64), 1, 1, Padding::Valid, 128, true),
        (Shape::new(1, 3, 3, 4), 3, 1, Padding::Same, 4, true),
    ];
    conv_cases_match_cpu(
        "gemm conv",
        &cases,
        &|x, kernel, bn, k, stride, padding, relu| {
            gpu.gemm_conv(x, kernel, bn, k, stride, padding, relu, Precision::F32)
                .unwrap()
        },
    );
}

#[test]
fn depthwise_conv_matches_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    for shape in [
        Shape::new(1, 1, 1, 3),
        Shape::new(2, 5, 7, 3),
        Shape::new(1, 2, 3, 13),
        Shape::new(1, 9, 9, 728),
        Shape::new(1, 16, 15, 64),
        Shape::new(3, 5, 5, 1024),
    ] {
        for relu_input in [false, true] {
            let x = random_tensor(&mut rng, shape);
            let kernel = uniform(&mut rng, 9 * shape.channels, 1.0 / 3.0);
            let input = if relu_input { ops::relu(&x) } else { x.clone() };
            let want = ops::depthwise_conv3x3(&input, &kernel);
            let got = gpu.depthwise_conv(&x, &kernel, relu_input).unwrap();
            assert_close(
                &got.data,
                &want.data,
                TOL,
                &format!("depthwise {shape} relu_input={relu_input}"),
            );
        }
    }
}

/// Both pointwise kernels: the subgroup one (where the adapter runs it; channel counts that are
/// not multiples of 4 fall back to the portable one) and the portable one everywhere.
#[test]
fn pointwise_conv_with_residual_and_relu_matches_cpu() {
    for subgroup in [true, false] {
        let gpu = ops_on_gpu().with_subgroup_gemm(subgroup);
        eprintln!("subgroup kernel: {}", gpu.subgroup_gemm());
        pointwise_cases_match_cpu(&gpu);
    }
}

/// On a CPU adapter with subgroups of 8 or more (lavapipe in CI), the subgroup kernel is the
/// default, so the whole-network tests run it.
#[test]
fn cpu_adapters_with_subgroups_get_the_subgroup_gemm_kernel() {
    let context = gpu();
    let adapter = &context.adapter;
    let expected = adapter.device_type == wgpu::DeviceType::Cpu
        && context.device.features().contains(wgpu::Features::SUBGROUP)
        && adapter.subgroup_min_size >= 8;
    assert_eq!(ops_on_gpu().subgroup_gemm(), expected, "{adapter:?}");
}

fn pointwise_cases_match_cpu(gpu: &GpuOps) {
    let mut rng = rng();
    let cases = [
        (Shape::new(1, 1, 1, 3), 5),
        (Shape::new(1, 1, 1, 4), 4),
        (Shape::new(1, 7, 5, 3), 8),
        (Shape::new(1, 3, 5, 64), 130),
        (Shape::new(3, 7, 7, 32), 64),
        (Shape::new(1, 37, 19, 128), 256),
        (Shape::new(2, 9, 9, 728), 728),
        (Shape::new(1, 5, 5, 1024), 1536),
        (Shape::new(1, 3, 3, 1536), 2048),
        (Shape::new(1, 1, 7, 13), 11),
    ];
    for (i, (shape, cout)) in cases.into_iter().enumerate() {
        let relu = i % 2 == 0;
        let with_residual = i % 3 != 1;
        let x = random_tensor(&mut rng, shape);
        let kernel = uniform(
            &mut rng,
            shape.channels * cout,
            1.0 / (shape.channels as f32).sqrt(),
        );
        let bn = RandomBn::new(&mut rng, cout);
        let residual = random_tensor(&mut rng, shape.with_channels(cout));
        let mut want = ops::pointwise_conv(&x, &kernel, cout);
        ops::batch_norm(&mut want, &bn.view());
        if with_residual {
            want = ops::add(&want, &residual);
        }
        if relu {
            want = ops::relu(&want);
        }
        let got = gpu
            .pointwise_conv(
                &x,
                &kernel,
                &bn.view(),
                1,
                relu,
                with_residual.then_some(&residual),
                Precision::F32,
            )
            .unwrap();
        let what = format!(
            "pointwise {shape} -> {cout} relu={relu} residual={with_residual} subgroup={}",
            gpu.subgroup_gemm()
        );
        assert_close(&got.data, &want.data, TOL, &what);
    }
}

#[test]
fn max_pool_same_padding_matches_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    for shape in [
        Shape::new(1, 1, 1, 3),
        Shape::new(1, 2, 2, 3),
        Shape::new(2, 9, 9, 5),
        Shape::new(1, 8, 10, 7),
        Shape::new(1, 72, 72, 4),
        Shape::new(1, 147, 147, 2),
        Shape::new(1, 37, 19, 728),
    ] {
        // Shift everything negative so a zero-padded pool would give a wrong (zero) maximum.
        let mut x = random_tensor(&mut rng, shape);
        x.data.iter_mut().for_each(|v| *v -= 2.0);
        let want = ops::max_pool_3x3_s2_same(&x);
        let got = gpu.max_pool(&x, None).unwrap();
        assert_eq!(got.shape, want.shape);
        assert_close(&got.data, &want.data, 0.0, &format!("max pool {shape}"));

        let residual = random_tensor(&mut rng, want.shape);
        let want = ops::add(&want, &residual);
        let got = gpu.max_pool(&x, Some(&residual)).unwrap();
        assert_close(
            &got.data,
            &want.data,
            TOL,
            &format!("max pool + residual {shape}"),
        );
    }
}

#[test]
fn relu_and_residual_add_match_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    for shape in [
        Shape::new(1, 1, 1, 1),
        Shape::new(1, 3, 5, 7),
        Shape::new(2, 19, 19, 728),
    ] {
        let a = random_tensor(&mut rng, shape);
        let b = random_tensor(&mut rng, shape);
        assert_close(
            &gpu.relu(&a).unwrap().data,
            &ops::relu(&a).data,
            0.0,
            &format!("relu {shape}"),
        );
        let sum = gpu.residual_add(&a, &b).unwrap();
        assert_close(
            &sum.data,
            &ops::add(&a, &b).data,
            0.0,
            &format!("add {shape}"),
        );
    }
}

#[test]
fn global_avg_pool_matches_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    for shape in [
        Shape::new(1, 1, 1, 2048),
        Shape::new(2, 5, 7, 13),
        Shape::new(3, 10, 10, 2048),
    ] {
        let x = random_tensor(&mut rng, shape);
        let got = gpu.global_avg_pool(&x).unwrap();
        assert_close(
            &got,
            &ops::global_avg_pool(&x),
            TOL,
            &format!("global average pool {shape}"),
        );
    }
}

#[test]
fn dense_and_softmax_match_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    for (rows, inputs, units, relu) in [
        (1, 2048, 100, true),
        (3, 100, 6, false),
        (2, 2048, 1000, false),
        (1, 1, 1, true),
    ] {
        let x = uniform(&mut rng, rows * inputs, 1.0);
        let kernel = uniform(&mut rng, inputs * units, 1.0 / (inputs as f32).sqrt());
        let bias = uniform(&mut rng, units, 0.5);
        let mut want = ops::dense(&x, &kernel, &bias, units);
        if relu {
            want.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let got = gpu.dense(&x, &kernel, &bias, relu).unwrap();
        assert_close(
            &got,
            &want,
            TOL,
            &format!("dense {rows}x{inputs} -> {units}"),
        );
    }
    for (rows, cols, scale) in [(1, 1, 1.0), (3, 6, 5.0), (2, 1000, 30.0)] {
        let x = uniform(&mut rng, rows * cols, scale);
        let got = gpu.softmax(&x, cols).unwrap();
        let want = ops::softmax(&x, cols);
        assert_close(&got, &want, 1e-6, &format!("softmax {rows}x{cols}"));
        for row in got.chunks(cols) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn float16_pointwise_matches_cpu_with_the_same_rounded_weights() {
    for subgroup in [true, false] {
        float16_cases_match_cpu(&ops_on_gpu().with_subgroup_gemm(subgroup));
    }
}

fn float16_cases_match_cpu(gpu: &GpuOps) {
    let mut rng = rng();
    for (shape, cout, relu) in [
        (Shape::new(1, 7, 5, 3), 8, true),
        (Shape::new(1, 37, 19, 128), 256, true),
        (Shape::new(2, 9, 9, 728), 728, false),
        (Shape::new(1, 3, 3, 13), 11, true),
    ] {
        let x = random_tensor(&mut rng, shape);
        let kernel = uniform(
            &mut rng,
            shape.channels * cout,
            1.0 / (shape.channels as f32).sqrt(),
        );
        let bn = RandomBn::new(&mut rng, cout);
        let residual = random_tensor(&mut rng, shape.with_channels(cout));
        // The reference: fold in float32, round the folded kernel to float16, then float32 math.
        let (folded, bias) = ops::fold_batchnorm(&kernel, cout, &bn.view());
        let rounded: Vec<f32> = folded
            .iter()
            .map(|&w| half::f16::from_f32(w).to_f32())
            .collect();
        let mut want = ops::pointwise_conv(&x, &rounded, cout);
        for px in want.data.chunks_mut(cout) {
            px.iter_mut().zip(&bias).for_each(|(v, b)| *v += b);
        }
        want = ops::add(&want, &residual);
        if relu {
            want = ops::relu(&want);
        }
        let got = gpu
            .pointwise_conv(
                &x,
                &kernel,
                &bn.view(),
                1,
                relu,
                Some(&residual),
                Precision::F16,
            )
            .unwrap();
        assert_close(
            &got.data,
            &want.data,
            TOL,
            &format!(
                "f16 pointwise {shape} -> {cout} subgroup={}",
                gpu.subgroup_gemm()
            ),
        );
    }
}

/// The pipeline cache file is written after the kernels are created, and a second start reads
/// it back and still creates every kernel the device supports.
#[test]
fn pipeline_cache_file_round_trips() {
    let context = gpu();
    let device = &context.device;
    let dir = std::env::temp_dir().join(format!("xception-pipeline-cache-{}", std::process::id()));
    let Some(first) = PipelineCacheFile::open(device, &dir) else {
        let has_cache = device.features().contains(wgpu::Features::PIPELINE_CACHE)
            && wgpu::util::pipeline_cache_key(&context.adapter).is_some();
        assert!(
            !has_cache,
            "a pipeline cache should open on {:?}",
            context.adapter
        );
        eprintln!("no pipeline cache on this adapter");
        return;
    };
    let uncached = Kernels::new(device);
    Kernels::with_cache(device, Some(first.cache()));
    first.save().unwrap();
    let written = std::fs::read(first.path()).unwrap();
    assert!(!written.is_empty(), "{}", first.path().display());
    let second = PipelineCacheFile::open(device, &dir).unwrap();
    let cached = Kernels::with_cache(device, Some(second.cache()));
    for kernel in Kernel::ALL {
        assert_eq!(
            cached.supports(kernel),
            uncached.supports(kernel),
            "{kernel:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
