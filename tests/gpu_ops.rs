//! Per-op parity: each GPU kernel against the CPU reference on fresh random inputs over many
//! shapes (1x1 maps, odd sizes, stride 2, borders, channel counts that are not a multiple of
//! 4 or 8, and Xception's own 728/1024/1536/2048).
//!
//! The cases, and the bound each output is held to, are the library's
//! (`xception_wgpu::gpu::check`, what `xception check` runs on a user's device): only the
//! summation order differs from the reference in float32, so `1e-4 * (1 + |reference|)`;
//! float16 adds its rounding.

mod common;

use common::{assert_close, gpu, max_pool_shapes, random_tensor, rng, uniform, RandomBn};
use xception_wgpu::gpu::check::{self, VariantReport};
use xception_wgpu::gpu::{
    activation_element, ConvKernel, DepthwiseKernel, Element, GpuOps, Kernel, Kernels,
    PipelineCacheFile, Precision,
};
use xception_wgpu::graph::Padding;
use xception_wgpu::reference::ops;
use xception_wgpu::Shape;

const TOL: f32 = check::TOLERANCE;

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

/// Fails with the worst case of `report` where it is past its bound; returns its cases.
fn assert_passed(report: &VariantReport) -> usize {
    let worst = &report.worst;
    assert!(
        report.passed(),
        "{} ({:?}): {}: element {} is {} but the reference is {} (error {:e} > bound {:e})",
        report.kernel,
        report.element,
        report.worst_case,
        worst.element,
        worst.got,
        worst.want,
        worst.error,
        worst.bound
    );
    report.cases
}

#[test]
fn batchnorm_fold_matches_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    for (rows, cout) in [(1, 1), (27, 32), (3, 5), (64, 128), (728, 728), (9, 13)] {
        let kernel = uniform(&mut rng, rows * cout, 1.0);
        let bn = RandomBn::new(&mut rng, cout);
        let (want_k, want_b) = bn.view().fold(&kernel, cout);
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

/// Runs every case on every convolution kernel variant the adapter has at `precision` (each
/// variant on the cases it takes), on fresh random inputs, against the reference. At float16
/// the reference uses the same float16-rounded weights, and the activations are stored as
/// float16 where the device can; the bound allows for the rounded output and, in the kernels
/// that multiply in float16, for the size of their products.
fn conv_kernels_match_cpu(precision: Precision) {
    let context = gpu();
    let element = activation_element(precision, &context.device);
    let gpu = GpuOps::with_element(context, element).unwrap();
    let variants = gpu.conv_kernels(precision);
    eprintln!("{precision:?} variants on this adapter ({element:?} activations): {variants:?}");
    let mut rng = rng();
    let mut runs = 0;
    for variant in variants {
        let report = check::conv_variant(&gpu, variant, precision, &mut rng, None).unwrap();
        runs += assert_passed(&report);
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
/// fewer of them: the portable ones and both tiles of the tiled GEMM everywhere, the subgroup
/// GEMM on CPU adapters with subgroups of 8 or more (lavapipe in CI), the float16 tiled GEMMs
/// where the device has float16 arithmetic.
#[test]
fn the_adapter_offers_the_expected_conv_kernels() {
    let gpu = ops_on_gpu();
    let context = gpu.context();
    let features = context.device.features();
    let f32_variants = gpu.conv_kernels(Precision::F32);
    for always in [
        ConvKernel::Direct,
        ConvKernel::Portable,
        ConvKernel::Tiled,
        ConvKernel::Tiled32,
    ] {
        assert!(f32_variants.contains(&always), "{always:?}");
    }
    let subgroups =
        features.contains(wgpu::Features::SUBGROUP) && context.adapter.subgroup_min_size >= 8;
    assert_eq!(f32_variants.contains(&ConvKernel::Subgroup), subgroups);
    assert!(!f32_variants.iter().any(|v| v.computes_f16()));
    let f16_variants = gpu.conv_kernels(Precision::F16);
    for f16 in [ConvKernel::TiledF16, ConvKernel::Tiled32F16] {
        assert_eq!(
            f16_variants.contains(&f16),
            features.contains(wgpu::Features::SHADER_F16),
            "{f16:?}"
        );
    }
    assert_eq!(
        f16_variants.contains(&ConvKernel::Coopmat),
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
    let mut rng = rng();
    for variant in DepthwiseKernel::ALL {
        let report = check::depthwise_variant(gpu, variant, &mut rng, None).unwrap();
        assert!(assert_passed(&report) > 0, "{variant:?} ran");
    }
}

/// Both paddings (Keras' 'same', timm's symmetric 1) on odd and even sizes.
#[test]
fn max_pool_matches_cpu() {
    for gpu in ops_per_element() {
        max_pool_cases_match_cpu(&gpu);
    }
}

fn max_pool_cases_match_cpu(gpu: &GpuOps) {
    let report = check::max_pool(gpu, &mut rng()).unwrap();
    assert_eq!(assert_passed(&report), 4 * max_pool_shapes().len());
}

/// The two paddings agree on odd sizes and differ on even ones (where 'same' puts its one pad
/// at the bottom/right), so the cases above tell them apart.
#[test]
fn the_pool_paddings_differ_on_even_sizes() {
    let mut rng = rng();
    for shape in max_pool_shapes() {
        let x = random_tensor(&mut rng, shape);
        let same = ops::max_pool(&x, Padding::Same);
        let symmetric = ops::max_pool(&x, Padding::Symmetric(1));
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
        assert_passed(&check::global_avg_pool(&gpu, &mut rng).unwrap());
    }
}

#[test]
fn dense_and_softmax_match_cpu() {
    let gpu = ops_on_gpu();
    let mut rng = rng();
    assert_passed(&check::dense(&gpu, &mut rng).unwrap());
    assert_passed(&check::softmax(&gpu, &mut rng).unwrap());
    for (rows, cols, scale) in [(3, 6, 5.0), (2, 1000, 30.0)] {
        let x = uniform(&mut rng, rows * cols, scale);
        for row in gpu.softmax(&x, cols).unwrap().chunks(cols) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}

/// A kernel whose weights are moved fails its check, naming the worst case: the check can
/// tell right from wrong.
#[test]
fn a_planted_fault_fails_its_check() {
    let gpu = ops_on_gpu();
    let fault = check::Fault {
        kernel: ConvKernel::Tiled.name().to_string(),
    };
    let report = check::conv_variant(
        &gpu,
        ConvKernel::Tiled,
        Precision::F32,
        &mut rng(),
        Some(&fault),
    )
    .unwrap();
    assert!(!report.passed(), "{report:?}");
    let fault = check::Fault {
        kernel: DepthwiseKernel::Pack4.name().to_string(),
    };
    let report =
        check::depthwise_variant(&gpu, DepthwiseKernel::Pack4, &mut rng(), Some(&fault)).unwrap();
    assert!(!report.passed(), "{report:?}");
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
