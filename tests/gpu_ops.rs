//! Per-op parity: each GPU kernel against the CPU reference on fresh random inputs over many
//! shapes (1x1 maps, odd sizes, stride 2, borders, channel counts that are not a multiple of
//! 4 or 8, and Xception's own 728/1024/1536/2048).
//!
//! Tolerance: `|gpu - cpu| <= 1e-4 * (1 + |cpu|)` per element. Only the summation order differs
//! between the two, and weights are scaled by `1/sqrt(fan_in)` as in a trained network, so
//! outputs are O(1) and float32 rounding stays near 1e-6.

mod common;

use common::{
    assert_close, conv_cases, depthwise_shapes, gpu, max_pool_shapes, random_tensor, rng, uniform,
    ConvCase, RandomBn,
};
use xception_wgpu::gpu::{
    activation_element, ConvGeometry, ConvKernel, DepthwiseKernel, Element, GpuOps, Kernel,
    Kernels, PipelineCacheFile, Precision,
};
use xception_wgpu::graph::Padding;
use xception_wgpu::reference::ops;
use xception_wgpu::{Shape, Tensor};

const TOL: f32 = 1e-4;

fn ops_on_gpu() -> GpuOps {
    GpuOps::new(gpu())
}

/// The single-op harness for each activation element type the device stores: float32, and
/// float16 where it has `SHADER_F16` (lavapipe does).
fn ops_per_element() -> Vec<GpuOps> {
    let context = gpu();
    let mut ops = vec![GpuOps::new(context.clone())];
    if context
        .device
        .features()
        .contains(wgpu::Features::SHADER_F16)
    {
        ops.push(GpuOps::with_element(context, Element::F16).unwrap());
    }
    ops
}

/// `tensor` as the device stores it in `element`.
fn stored(tensor: &Tensor, element: Element) -> Tensor {
    match element {
        Element::F32 => tensor.clone(),
        Element::F16 => Tensor::new(
            tensor.shape,
            tensor.data.iter().map(|&v| to_f16(v)).collect(),
        )
        .unwrap(),
    }
}

/// Asserts `|got - want| <= 2^-10 * magnitude + rounding + TOL * (1 + |want|)` element by
/// element: `magnitudes` bound float16 products (each rounded by at most 2^-11 of itself),
/// and `rounding` is `2^-10 |want|` where the output is stored as float16 (a rounding of at
/// most 2^-11 of it); both twice the worst case.
fn assert_within_f16(
    got: &[f32],
    want: &[f32],
    magnitudes: Option<&[f32]>,
    element: Element,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let products = magnitudes.map_or(0.0, |m| m[i] / 1024.0);
        let rounding = match element {
            Element::F32 => 0.0,
            Element::F16 => w.abs() / 1024.0,
        };
        let bound = products + rounding + TOL * (1.0 + w.abs());
        assert!(
            (g - w).abs() <= bound,
            "{what}: element {i} is {g} but the reference is {w} (bound {bound:e})"
        );
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

/// The float32 reference for `case`: convolution, batchnorm (folded, with the folded kernel
/// rounded to float16 if `round_weights`), residual add and ReLU.
fn reference(
    case: &ConvCase,
    x: &Tensor,
    kernel: &[f32],
    bn: &RandomBn,
    residual: &Tensor,
    round_weights: bool,
) -> Tensor {
    let ConvGeometry {
        kernel: k,
        stride,
        padding,
    } = case.geometry();
    let cout = case.out_channels;
    let mut want = if round_weights {
        let (folded, bias) = ops::fold_batchnorm(kernel, cout, &bn.view());
        let rounded: Vec<f32> = folded.iter().map(|&w| to_f16(w)).collect();
        let mut y = ops::conv2d(x, &rounded, k, stride, padding, cout);
        for px in y.data.chunks_mut(cout) {
            px.iter_mut().zip(&bias).for_each(|(v, b)| *v += b);
        }
        y
    } else {
        let mut y = ops::conv2d(x, kernel, k, stride, padding, cout);
        ops::batch_norm(&mut y, &bn.view());
        y
    };
    if case.residual {
        want = ops::add(&want, residual);
    }
    if case.relu {
        want = ops::relu(&want);
    }
    want
}

fn to_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Per output element, the sum of `|input| * |folded float16 weight|` over its window: what
/// bounds the error of float16 products, each rounded by at most 2^-11 of itself.
fn product_magnitudes(case: &ConvCase, x: &Tensor, kernel: &[f32], bn: &RandomBn) -> Tensor {
    let ConvGeometry {
        kernel: k,
        stride,
        padding,
    } = case.geometry();
    let (folded, _) = ops::fold_batchnorm(kernel, case.out_channels, &bn.view());
    let abs_weights: Vec<f32> = folded.iter().map(|&w| to_f16(w).abs()).collect();
    let abs_x = Tensor::new(x.shape, x.data.iter().map(|v| v.abs()).collect()).unwrap();
    ops::conv2d(&abs_x, &abs_weights, k, stride, padding, case.out_channels)
}

/// Runs every case on every convolution kernel variant the adapter has at `precision` (each
/// variant on the cases it takes), on fresh random inputs, against the reference. At float16
/// the reference uses the same float16-rounded weights, and the activations are stored as
/// float16 where the device can: the reference then gets the inputs and residuals as stored,
/// and the bound allows for the rounded output and, in the kernels that multiply in float16,
/// for the size of their products.
fn conv_kernels_match_cpu(precision: Precision) {
    let context = gpu();
    let element = activation_element(precision, &context.device);
    let gpu = GpuOps::with_element(context, element).unwrap();
    let variants = gpu.conv_kernels(precision);
    eprintln!("{precision:?} variants on this adapter ({element:?} activations): {variants:?}");
    let mut rng = rng();
    let mut runs = 0;
    for variant in variants {
        for case in conv_cases() {
            let ConvGeometry { kernel: k, .. } = case.geometry();
            let cin = case.shape.channels;
            let cout = case.out_channels;
            let takes_residual = variant != ConvKernel::Direct;
            if !variant.runs(case.geometry(), cin, cout) || (case.residual && !takes_residual) {
                continue;
            }
            let mut x = stored(&random_tensor(&mut rng, case.shape), element);
            if variant.computes_f16() {
                x = stored(&x, Element::F16);
            }
            let fan_in = (k * k * cin) as f32;
            let kernel = uniform(&mut rng, k * k * cin * cout, 1.0 / fan_in.sqrt());
            let bn = RandomBn::new(&mut rng, cout);
            let out = case.geometry().output_shape(case.shape, cout);
            let residual = stored(&random_tensor(&mut rng, out), element);
            // The direct kernel reads float32 storage buffers whatever the precision.
            let rounded = precision == Precision::F16 && variant != ConvKernel::Direct;
            let want = reference(&case, &x, &kernel, &bn, &residual, rounded);
            let got = gpu
                .conv(
                    variant,
                    &x,
                    &kernel,
                    &bn.view(),
                    case.geometry(),
                    case.relu,
                    case.residual.then_some(&residual),
                    precision,
                )
                .unwrap();
            assert_eq!(got.shape, want.shape);
            let what = format!(
                "{} at {precision:?}: {} {:?} -> {cout} relu={} residual={}",
                variant.name(),
                case.shape,
                case.geometry(),
                case.relu,
                case.residual
            );
            let magnitudes = variant
                .computes_f16()
                .then(|| product_magnitudes(&case, &x, &kernel, &bn));
            let magnitudes = magnitudes.as_ref().map(|m| m.data.as_slice());
            assert_within_f16(&got.data, &want.data, magnitudes, element, &what);
            runs += 1;
        }
    }
    assert!(runs > 0, "no convolution kernel ran");
}

#[test]
fn every_float32_conv_kernel_matches_cpu() {
    conv_kernels_match_cpu(Precision::F32);
}

/// Float16 weights (every GEMM variant reads them from an `Rgba16Float` texture) against the
/// same rounded weights in float32; the kernels that also multiply in float16 round each
/// product by at most 2^-11 of itself.
#[test]
fn every_float16_conv_kernel_matches_cpu_with_the_same_rounded_weights() {
    conv_kernels_match_cpu(Precision::F16);
}

/// The variants each adapter kind must offer, so that the tests above cannot pass by running
/// fewer of them: the portable ones and the tiled GEMM everywhere, the subgroup GEMM on CPU
/// adapters with subgroups of 8 or more (lavapipe in CI), the float16 tiled GEMM where the
/// device has float16 arithmetic.
#[test]
fn the_adapter_offers_the_expected_conv_kernels() {
    let gpu = ops_on_gpu();
    let context = gpu.context();
    let features = context.device.features();
    let f32_variants = gpu.conv_kernels(Precision::F32);
    for always in [ConvKernel::Direct, ConvKernel::Portable, ConvKernel::Tiled] {
        assert!(f32_variants.contains(&always), "{always:?}");
    }
    let subgroups =
        features.contains(wgpu::Features::SUBGROUP) && context.adapter.subgroup_min_size >= 8;
    assert_eq!(f32_variants.contains(&ConvKernel::Subgroup), subgroups);
    assert!(!f32_variants.iter().any(|v| v.computes_f16()));
    let f16_variants = gpu.conv_kernels(Precision::F16);
    assert_eq!(
        f16_variants.contains(&ConvKernel::TiledF16),
        features.contains(wgpu::Features::SHADER_F16)
    );
    assert_eq!(
        f16_variants.contains(&ConvKernel::CoopMatrix),
        context.cooperative_matrix()
    );
}

#[test]
fn depthwise_conv_matches_cpu() {
    for gpu in ops_per_element() {
        depthwise_cases_match_cpu(&gpu);
    }
}

/// Every depthwise variant on the shapes it takes: single pixels, odd sizes, sizes that are
/// not multiples of the tiled kernel's 8x8 tile, 3 and 13 channels (the plain kernel), 728
/// channels (182 quads, not a multiple of the tiled kernel's 8), batches.
fn depthwise_cases_match_cpu(gpu: &GpuOps) {
    let element = gpu.element();
    let mut rng = rng();
    let mut runs = [0; DepthwiseKernel::ALL.len()];
    for shape in depthwise_shapes() {
        for (variant, relu_input) in DepthwiseKernel::ALL
            .into_iter()
            .flat_map(|v| [(v, false), (v, true)])
        {
            if !variant.runs(shape.channels) {
                continue;
            }
            runs[variant as usize] += 1;
            let x = stored(&random_tensor(&mut rng, shape), element);
            let kernel = uniform(&mut rng, 9 * shape.channels, 1.0 / 3.0);
            let input = if relu_input { ops::relu(&x) } else { x.clone() };
            let want = ops::depthwise_conv3x3(&input, &kernel);
            let got = gpu
                .depthwise_conv(variant, &x, &kernel, relu_input)
                .unwrap();
            let what = format!(
                "{element:?} {} {shape} relu_input={relu_input}",
                variant.name()
            );
            assert_within_f16(&got.data, &want.data, None, element, &what);
        }
    }
    assert!(runs.iter().all(|&n| n > 0), "every variant ran: {runs:?}");
}

/// Both paddings (Keras' 'same', timm's symmetric 1) on odd and even sizes.
#[test]
fn max_pool_matches_cpu() {
    for gpu in ops_per_element() {
        max_pool_cases_match_cpu(&gpu);
    }
}

fn max_pool_cases_match_cpu(gpu: &GpuOps) {
    let element = gpu.element();
    let mut rng = rng();
    for shape in max_pool_shapes() {
        // Shift everything negative so a zero-padded pool would give a wrong (zero) maximum.
        let mut x = random_tensor(&mut rng, shape);
        x.data.iter_mut().for_each(|v| *v -= 2.0);
        let x = stored(&x, element);
        for padding in [Padding::Same, Padding::Symmetric(1)] {
            let want = ops::max_pool_3x3_s2(&x, padding);
            let got = gpu.max_pool(&x, padding, None).unwrap();
            assert_eq!(got.shape, want.shape);
            // A maximum of stored values is exact in either element type.
            assert_close(
                &got.data,
                &want.data,
                0.0,
                &format!("{element:?} max pool {padding:?} {shape}"),
            );

            let residual = stored(&random_tensor(&mut rng, want.shape), element);
            let want = ops::add(&want, &residual);
            let got = gpu.max_pool(&x, padding, Some(&residual)).unwrap();
            let what = format!("{element:?} max pool {padding:?} + residual {shape}");
            assert_within_f16(&got.data, &want.data, None, element, &what);
        }
        // The two paddings agree on odd sizes and differ on even ones (where 'same' puts
        // its one pad at the bottom/right).
        let same = ops::max_pool_3x3_s2(&x, Padding::Same);
        let symmetric = ops::max_pool_3x3_s2(&x, Padding::Symmetric(1));
        assert_eq!(same.shape, symmetric.shape);
        if shape.height % 2 == 1 && shape.width % 2 == 1 {
            assert_eq!(same.data, symmetric.data, "{shape}");
        } else if shape.height >= 4 && shape.width >= 4 {
            assert_ne!(same.data, symmetric.data, "{shape}");
        }
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
    let mut rng = rng();
    for gpu in ops_per_element() {
        let element = gpu.element();
        for shape in [
            Shape::new(1, 1, 1, 2048),
            Shape::new(2, 5, 7, 13),
            Shape::new(3, 10, 10, 2048),
        ] {
            // The pool sums stored values in float32 and writes float32.
            let x = stored(&random_tensor(&mut rng, shape), element);
            let got = gpu.global_avg_pool(&x).unwrap();
            assert_close(
                &got,
                &ops::global_avg_pool(&x),
                TOL,
                &format!("{element:?} global average pool {shape}"),
            );
        }
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
    let uncached = Kernels::new(device, Element::F32);
    Kernels::with_cache(device, Element::F32, Some(first.cache()));
    first.save().unwrap();
    let written = std::fs::read(first.path()).unwrap();
    assert!(!written.is_empty(), "{}", first.path().display());
    let second = PipelineCacheFile::open(device, &dir).unwrap();
    let cached = Kernels::with_cache(device, Element::F32, Some(second.cache()));
    for kernel in Kernel::ALL {
        assert_eq!(
            cached.supports(kernel),
            uncached.supports(kernel),
            "{kernel:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
