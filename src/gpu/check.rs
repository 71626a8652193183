//! Parity of every kernel variant on one device against the reference ops: the random cases
//! the tests run and the bounds they hold the kernels to, in one place. `xception check`
//! prints a report of it, tuning runs it before timing a variant, and the parity tests assert
//! on it.
//!
//! Bound per element: `|gpu - reference| <= TOLERANCE * (1 + |reference|)`, plus where
//! float16 is involved `2^-10 |reference|` for a float16 output (twice its rounding) and
//! `2^-10` of the sum of `|input| * |weight|` over the window for kernels that multiply in
//! float16 (twice the rounding of each product). Weights are scaled by `1/sqrt(fan_in)` as in
//! a trained network, so outputs are O(1) and float32 rounding stays near 1e-6.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::harness::{DepthwiseSpec, GpuOps};
use super::kernels::Element;
use super::ops::{ConvGeometry, DepthwiseKernel};
use super::options::Precision;
use super::select::ConvKernel;
use crate::error::Result;
use crate::graph::{DepthwiseGeometry, Padding, BN_EPSILON};
use crate::reference::ops;
use crate::tensor::{Shape, Tensor};
use crate::weights::BatchNorm;

/// The float32 part of every bound (see the module docs).
pub const TOLERANCE: f32 = 1e-4;

/// `len` values uniform in `[-scale, scale]`.
pub fn uniform(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// A random tensor with values in `[-1, 1]`.
pub fn random_tensor(rng: &mut StdRng, shape: Shape) -> Tensor {
    Tensor {
        shape,
        data: uniform(rng, shape.len(), 1.0),
    }
}

/// `value` rounded to float16 and back.
pub fn to_f16(value: f32) -> f32 {
    half::f16::from_f32(value).to_f32()
}

/// `tensor` as a device stores it in activations of `element`.
pub fn stored(tensor: &Tensor, element: Element) -> Tensor {
    match element {
        Element::F32 => tensor.clone(),
        Element::F16 => Tensor {
            shape: tensor.shape,
            data: tensor.data.iter().map(|&v| to_f16(v)).collect(),
        },
    }
}

/// Owned random batchnorm parameters with a positive variance.
#[derive(Debug, Clone)]
pub struct RandomBn {
    /// Scale.
    pub gamma: Vec<f32>,
    /// Shift.
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub variance: Vec<f32>,
    /// Keras' 1e-3 or PyTorch's 1e-5, so the kernels honour the value they are given.
    pub epsilon: f32,
}

impl RandomBn {
    /// Parameters for `channels` channels.
    pub fn new(rng: &mut StdRng, channels: usize) -> Self {
        Self {
            gamma: uniform(rng, channels, 2.0),
            beta: uniform(rng, channels, 1.0),
            mean: uniform(rng, channels, 0.5),
            variance: (0..channels).map(|_| rng.random_range(0.0..2.0)).collect(),
            epsilon: if rng.random() { BN_EPSILON } else { 1e-5 },
        }
    }

    /// The borrowed view the ops take.
    pub fn view(&self) -> BatchNorm<'_> {
        BatchNorm {
            gamma: &self.gamma,
            beta: &self.beta,
            mean: &self.mean,
            variance: &self.variance,
            epsilon: self.epsilon,
        }
    }
}

/// One convolution case: input shape, window, output channels, ReLU, residual add.
#[derive(Debug, Clone, Copy)]
pub struct ConvCase {
    /// Input shape, batch included.
    pub shape: Shape,
    /// The window.
    pub geometry: ConvGeometry,
    /// Output channels.
    pub out_channels: usize,
    /// Whether the output is rectified.
    pub relu: bool,
    /// Whether a residual is added before the ReLU.
    pub residual: bool,
}

impl ConvCase {
    /// Whether `variant` runs this case (the direct kernel adds no residual).
    pub fn runs_on(&self, variant: ConvKernel) -> bool {
        variant.runs(self.geometry, self.shape.channels, self.out_channels)
            && !(self.residual && variant == ConvKernel::Direct)
    }
}

impl std::fmt::Display for ConvCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ConvGeometry {
            kernel,
            stride,
            padding,
        } = self.geometry;
        write!(
            f,
            "{} {kernel}x{kernel}/{stride} {padding:?} -> {}{}{}",
            self.shape,
            self.out_channels,
            if self.relu { " relu" } else { "" },
            if self.residual { " +residual" } else { "" },
        )
    }
}

/// Xception's convolutions and their awkward relatives: the 3-channel stem (stride 2, 'valid',
/// odd sizes), the second stem convolution on a map large enough to be split over threads, 3x3
/// 'same' at stride 1 and 2 (taps in the padding), a 'valid' 3x3 whose kernel rows are longer
/// than the CPU GEMM's slice of the inner dimension, the 1x1/2 shortcuts on even and odd maps,
/// pointwise layers of 728, 1024 -> 1536 and 1536 -> 2048 channels, channel counts that are not
/// multiples of 4 or 8, 1x1 maps, and batches.
pub fn conv_cases() -> Vec<ConvCase> {
    use Padding::{Same, Valid};
    let case = |shape: Shape, kernel, stride, padding, out_channels, relu, residual| ConvCase {
        shape,
        geometry: ConvGeometry {
            kernel,
            stride,
            padding,
        },
        out_channels,
        relu,
        residual,
    };
    let s = Shape::new;
    vec![
        case(s(1, 7, 9, 3), 3, 2, Valid, 32, true, false),
        case(s(2, 11, 10, 3), 3, 2, Valid, 5, true, false),
        case(s(1, 3, 3, 5), 3, 1, Valid, 7, false, false),
        case(s(1, 12, 13, 32), 3, 1, Valid, 64, true, false),
        case(s(1, 40, 41, 32), 3, 1, Valid, 64, true, false),
        case(s(1, 6, 9, 100), 3, 1, Valid, 40, true, false),
        case(s(2, 7, 9, 8), 3, 1, Same, 12, false, false),
        case(s(2, 9, 6, 20), 3, 1, Same, 24, true, true),
        case(s(1, 8, 11, 4), 3, 2, Same, 8, true, false),
        case(s(1, 6, 7, 3), 3, 2, Same, 9, true, false),
        case(s(1, 8, 9, 64), 1, 2, Same, 128, false, false),
        case(s(2, 9, 9, 728), 1, 2, Same, 12, false, false),
        case(s(1, 1, 1, 4), 1, 2, Same, 3, false, false),
        case(s(1, 37, 37, 128), 1, 2, Same, 256, false, false),
        case(s(3, 5, 6, 32), 1, 2, Same, 64, true, false),
        case(s(1, 1, 1, 3), 1, 1, Same, 5, true, true),
        case(s(1, 7, 5, 3), 1, 1, Same, 8, false, true),
        case(s(1, 3, 5, 64), 1, 1, Same, 130, true, false),
        case(s(3, 7, 7, 32), 1, 1, Same, 64, false, true),
        case(s(1, 37, 19, 128), 1, 1, Same, 256, true, true),
        case(s(2, 9, 9, 728), 1, 1, Same, 728, false, true),
        case(s(1, 5, 5, 1024), 1, 1, Same, 1536, true, false),
        case(s(1, 3, 3, 1536), 1, 1, Same, 2048, false, true),
        case(s(1, 1, 7, 13), 1, 1, Same, 11, true, true),
    ]
}

/// Depthwise parity shapes: single pixels, odd sizes, sizes that are not multiples of the GPU's
/// 8x8 tile, 3 and 13 channels, 728 channels (not a multiple of the tiled kernel's 8 quads),
/// rows split over threads, batches.
pub fn depthwise_shapes() -> Vec<Shape> {
    let s = Shape::new;
    vec![
        s(1, 1, 1, 3),
        s(2, 5, 7, 3),
        s(1, 2, 3, 13),
        s(1, 9, 9, 728),
        s(1, 16, 15, 64),
        s(3, 5, 5, 1024),
        s(2, 19, 17, 12),
        s(1, 1, 9, 4),
        s(1, 37, 37, 128),
    ]
}

/// Max-pool parity shapes: 1x1 and 2x2 maps, odd and even sizes (where Keras' 'same' and
/// timm's symmetric padding differ), the stem's 147x147, 728 channels, a batch.
pub fn max_pool_shapes() -> Vec<Shape> {
    let s = Shape::new;
    vec![
        s(1, 1, 1, 3),
        s(1, 2, 2, 3),
        s(2, 9, 9, 5),
        s(1, 8, 10, 7),
        s(1, 72, 72, 4),
        s(1, 147, 147, 2),
        s(1, 37, 19, 728),
    ]
}

/// How far one output is from its reference, measured against its bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// The element whose error is the largest share of its bound.
    pub element: usize,
    /// Its value.
    pub got: f32,
    /// The reference's value.
    pub want: f32,
    /// `|got - want|` there.
    pub error: f32,
    /// Its bound.
    pub bound: f32,
}

impl Comparison {
    /// No difference at all (what an empty output compares as).
    const EXACT: Comparison = Comparison {
        element: 0,
        got: 0.0,
        want: 0.0,
        error: 0.0,
        bound: TOLERANCE,
    };

    /// Whether the error is within its bound (a NaN never is).
    pub fn passed(&self) -> bool {
        self.error <= self.bound
    }

    /// The error as a share of the bound: above 1 fails.
    pub fn ratio(&self) -> f32 {
        if self.error.is_nan() {
            f32::INFINITY
        } else {
            self.error / self.bound
        }
    }

    /// The worse of two comparisons.
    pub fn worse(self, other: Comparison) -> Comparison {
        if other.ratio() > self.ratio() {
            other
        } else {
            self
        }
    }
}

/// Compares `got` with `want` element by element against the module's bound: `magnitudes`
/// (per element, the sum of `|input| * |weight|`) where the kernel multiplies in float16, and
/// `element` the activations the output is stored in. Lengths that differ compare as a NaN.
pub fn compare(
    got: &[f32],
    want: &[f32],
    magnitudes: Option<&[f32]>,
    element: Element,
) -> Comparison {
    if got.len() != want.len() {
        return Comparison {
            error: f32::NAN,
            ..Comparison::EXACT
        };
    }
    let mut worst = Comparison::EXACT;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let products = magnitudes.map_or(0.0, |m| m[i] / 1024.0);
        let rounding = match element {
            Element::F32 => 0.0,
            Element::F16 => w.abs() / 1024.0,
        };
        let here = Comparison {
            element: i,
            got: g,
            want: w,
            error: (g - w).abs(),
            bound: products + rounding + TOLERANCE * (1.0 + w.abs()),
        };
        worst = if i == 0 { here } else { worst.worse(here) };
    }
    worst
}

/// The parity of one kernel variant over its cases.
#[derive(Debug, Clone)]
pub struct VariantReport {
    /// The kernel's name (its shader's, e.g. `conv_tiled_f16`).
    pub kernel: String,
    /// The op family: `conv`, `depthwise`, `max_pool`, `global_avg_pool`, `dense`, `softmax`.
    pub op: &'static str,
    /// The activations' element type.
    pub element: Element,
    /// Cases run.
    pub cases: usize,
    /// The worst comparison over all cases.
    pub worst: Comparison,
    /// The case of the worst comparison.
    pub worst_case: String,
    /// Median milliseconds of one launch, from submit to completion (wall time).
    pub ms_per_launch: f64,
}

impl VariantReport {
    /// Whether every case was within its bound.
    pub fn passed(&self) -> bool {
        self.worst.passed()
    }
}

/// Collects the cases of one variant into its report.
struct Collector {
    report: VariantReport,
    launch_ms: Vec<f64>,
}

impl Collector {
    fn new(op: &'static str, kernel: &str, element: Element) -> Self {
        Self {
            report: VariantReport {
                kernel: kernel.to_string(),
                op,
                element,
                cases: 0,
                worst: Comparison::EXACT,
                worst_case: String::new(),
                ms_per_launch: 0.0,
            },
            launch_ms: Vec::new(),
        }
    }

    fn add(&mut self, comparison: Comparison, case: impl FnOnce() -> String, ms: f64) {
        let report = &mut self.report;
        report.cases += 1;
        if report.cases == 1 || comparison.ratio() > report.worst.ratio() {
            report.worst = comparison;
            report.worst_case = case();
        }
        self.launch_ms.push(ms);
    }

    fn finish(mut self) -> VariantReport {
        self.launch_ms.sort_by(f64::total_cmp);
        self.report.ms_per_launch = self
            .launch_ms
            .get(self.launch_ms.len() / 2)
            .copied()
            .unwrap_or(0.0);
        self.report
    }
}

/// A deliberate fault, to show that a check can fail: the named kernel gets a shifted
/// batchnorm shift (convolutions) or kernel tap (depthwise) that the reference does not.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// The kernel's name.
    pub kernel: String,
}

impl Fault {
    /// How far the planted value is moved: far past every bound.
    const SHIFT: f32 = 0.05;

    fn applies(fault: Option<&Fault>, kernel: &str) -> bool {
        fault.is_some_and(|f| f.kernel == kernel)
    }
}

/// The float32 reference for a convolution case: convolution, batchnorm (folded, with the
/// folded kernel rounded to float16 if `round_weights`), residual add and ReLU.
fn conv_reference(
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
    } = case.geometry;
    let cout = case.out_channels;
    let mut want = if round_weights {
        let (folded, bias) = bn.view().fold(kernel, cout);
        let rounded: Vec<f32> = folded.iter().map(|&w| to_f16(w)).collect();
        let mut y = ops::conv(x, &rounded, k, stride, padding, cout);
        for px in y.data.chunks_mut(cout) {
            px.iter_mut().zip(&bias).for_each(|(v, b)| *v += b);
        }
        y
    } else {
        let mut y = ops::conv(x, kernel, k, stride, padding, cout);
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

/// Per output element, the sum of `|input| * |folded float16 weight|` over its window: what
/// bounds the error of float16 products.
fn product_magnitudes(case: &ConvCase, x: &Tensor, kernel: &[f32], bn: &RandomBn) -> Vec<f32> {
    let ConvGeometry {
        kernel: k,
        stride,
        padding,
    } = case.geometry;
    let (folded, _) = bn.view().fold(kernel, case.out_channels);
    let abs_weights: Vec<f32> = folded.iter().map(|&w| to_f16(w).abs()).collect();
    let abs_x = Tensor {
        shape: x.shape,
        data: x.data.iter().map(|v| v.abs()).collect(),
    };
    ops::conv(&abs_x, &abs_weights, k, stride, padding, case.out_channels).data
}

/// Runs `variant` at `precision` on every case of [`conv_cases`] it takes, on fresh random
/// inputs from `rng`, against the reference. At float16 the reference uses the same
/// float16-rounded weights and gets the inputs and residuals as the device stores them.
///
/// Fails where `ops` cannot run `variant` at `precision`.
pub fn conv_variant(
    ops_on_device: &GpuOps,
    variant: ConvKernel,
    precision: Precision,
    rng: &mut StdRng,
    fault: Option<&Fault>,
) -> Result<VariantReport> {
    let element = ops_on_device.element();
    let mut collector = Collector::new("conv", variant.name(), element);
    for case in conv_cases().into_iter().filter(|c| c.runs_on(variant)) {
        let k = case.geometry.kernel;
        let (cin, cout) = (case.shape.channels, case.out_channels);
        let mut x = stored(&random_tensor(rng, case.shape), element);
        if variant.computes_f16() {
            x = stored(&x, Element::F16);
        }
        let fan_in = (k * k * cin) as f32;
        let kernel = uniform(rng, k * k * cin * cout, 1.0 / fan_in.sqrt());
        let bn = RandomBn::new(rng, cout);
        let out = case.geometry.output_shape(case.shape, cout);
        let residual = stored(&random_tensor(rng, out), element);
        // The direct kernel reads float32 storage buffers whatever the precision.
        let rounded = precision == Precision::F16 && variant != ConvKernel::Direct;
        let want = conv_reference(&case, &x, &kernel, &bn, &residual, rounded);
        let mut planted = bn.clone();
        if Fault::applies(fault, variant.name()) {
            planted.beta[0] += Fault::SHIFT;
        }
        let got = ops_on_device.conv(
            variant,
            &x,
            &kernel,
            &planted.view(),
            case.geometry,
            case.relu,
            case.residual.then_some(&residual),
            precision,
        )?;
        let magnitudes = variant
            .computes_f16()
            .then(|| product_magnitudes(&case, &x, &kernel, &bn));
        let comparison = compare(&got.data, &want.data, magnitudes.as_deref(), element);
        collector.add(
            comparison,
            || case.to_string(),
            ops_on_device.last_launch_ms(),
        );
    }
    Ok(collector.finish())
}

/// Depthwise windows and epilogues: Keras' plain one; timm's stride 2 (symmetric, and
/// TensorFlow's 'same' with its extra pixel bottom/right), dilations 2 and 4 (output strides 16
/// and 8), each with the folded batchnorm's bias and the ReLU after it.
pub fn depthwise_cases() -> Vec<(DepthwiseGeometry, bool)> {
    let g = |stride, dilation, padding| DepthwiseGeometry {
        stride,
        dilation,
        padding,
    };
    vec![
        (DepthwiseGeometry::PLAIN, false),
        (DepthwiseGeometry::PLAIN, true),
        (g(2, 1, Padding::Symmetric(1)), true),
        (g(2, 1, Padding::Same), false),
        (g(1, 2, Padding::Symmetric(2)), true),
        (g(1, 4, Padding::Symmetric(4)), false),
    ]
}

/// Runs the depthwise `variant` on every shape of [`depthwise_shapes`] and case of
/// [`depthwise_cases`] it takes, with and without the ReLU on read, against the reference.
pub fn depthwise_variant(
    ops_on_device: &GpuOps,
    variant: DepthwiseKernel,
    rng: &mut StdRng,
    fault: Option<&Fault>,
) -> Result<VariantReport> {
    let element = ops_on_device.element();
    let mut collector = Collector::new("depthwise", variant.name(), element);
    for shape in depthwise_shapes() {
        for (geometry, epilogue) in depthwise_cases() {
            if !variant.runs(shape.channels, geometry) {
                continue;
            }
            for relu_input in [false, true] {
                let x = stored(&random_tensor(rng, shape), element);
                let kernel = uniform(rng, 9 * shape.channels, 1.0 / 3.0);
                let bias = epilogue.then(|| uniform(rng, shape.channels, 0.5));
                let input = if relu_input { ops::relu(&x) } else { x.clone() };
                let mut want = ops::depthwise_conv(&input, &kernel, geometry);
                if let Some(bias) = &bias {
                    for pixel in want.data.chunks_exact_mut(shape.channels) {
                        pixel.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                    }
                    want = ops::relu(&want);
                }
                let mut planted = kernel.clone();
                if Fault::applies(fault, variant.name()) {
                    planted[4] += Fault::SHIFT;
                }
                let spec = DepthwiseSpec {
                    geometry,
                    relu_input,
                    bias: bias.as_deref(),
                    relu_output: epilogue,
                };
                let got = ops_on_device.depthwise_conv(variant, &x, &planted, spec)?;
                let comparison = compare(&got.data, &want.data, None, element);
                let case = || {
                    let mut case = format!("{shape}");
                    if !geometry.is_plain() {
                        let (s, d) = (geometry.stride, geometry.dilation);
                        case.push_str(&format!(" /{s} dilation {d} {:?}", geometry.padding));
                    }
                    if epilogue {
                        case.push_str(" +bias relu-out");
                    }
                    if relu_input {
                        case.push_str(" relu-in");
                    }
                    case
                };
                collector.add(comparison, case, ops_on_device.last_launch_ms());
            }
        }
    }
    Ok(collector.finish())
}

/// The pre-activation kernel (a folded batchnorm then ReLU, or a bare ReLU) on
/// [`max_pool_shapes`].
pub fn pre_activation(ops_on_device: &GpuOps, rng: &mut StdRng) -> Result<VariantReport> {
    let element = ops_on_device.element();
    let mut collector = Collector::new("pre-activation", "scale_shift_relu", element);
    for shape in max_pool_shapes() {
        let x = stored(&random_tensor(rng, shape), element);
        let scale = uniform(rng, shape.channels, 2.0);
        let shift = uniform(rng, shape.channels, 1.0);
        for affine in [true, false] {
            let mut want = x.clone();
            if affine {
                for pixel in want.data.chunks_exact_mut(shape.channels) {
                    for ((v, a), b) in pixel.iter_mut().zip(&scale).zip(&shift) {
                        *v = *v * a + b;
                    }
                }
            }
            let want = ops::relu(&want);
            let pair = affine.then_some((scale.as_slice(), shift.as_slice()));
            let got = ops_on_device.scale_shift_relu(&x, pair)?;
            let comparison = compare(&got.data, &want.data, None, element);
            let case = || format!("{shape}{}", if affine { " scale+shift" } else { "" });
            collector.add(comparison, case, ops_on_device.last_launch_ms());
        }
    }
    Ok(collector.finish())
}

/// The max-pool (both paddings, with and without the residual add) on [`max_pool_shapes`].
pub fn max_pool(ops_on_device: &GpuOps, rng: &mut StdRng) -> Result<VariantReport> {
    let element = ops_on_device.element();
    let mut collector = Collector::new("max_pool", "max_pool", element);
    for shape in max_pool_shapes() {
        // Everything negative, so a zero-padded pool would give a wrong (zero) maximum.
        let mut x = random_tensor(rng, shape);
        x.data.iter_mut().for_each(|v| *v -= 2.0);
        let x = stored(&x, element);
        for padding in [Padding::Same, Padding::Symmetric(1)] {
            let pooled = ops::max_pool(&x, padding);
            let residual = stored(&random_tensor(rng, pooled.shape), element);
            for with_residual in [false, true] {
                let (want, residual) = if with_residual {
                    (ops::add(&pooled, &residual), Some(&residual))
                } else {
                    (pooled.clone(), None)
                };
                let got = ops_on_device.max_pool(&x, padding, residual)?;
                let comparison = compare(&got.data, &want.data, None, element);
                let case = || {
                    let plus = if with_residual { " +residual" } else { "" };
                    format!("{shape} {padding:?}{plus}")
                };
                collector.add(comparison, case, ops_on_device.last_launch_ms());
            }
        }
    }
    Ok(collector.finish())
}

/// The global average pool, float32 out whatever the element type.
pub fn global_avg_pool(ops_on_device: &GpuOps, rng: &mut StdRng) -> Result<VariantReport> {
    let element = ops_on_device.element();
    let mut collector = Collector::new("global_avg_pool", "global_avg_pool", element);
    for shape in [
        Shape::new(1, 1, 1, 2048),
        Shape::new(2, 5, 7, 13),
        Shape::new(3, 10, 10, 2048),
    ] {
        let x = stored(&random_tensor(rng, shape), element);
        let got = ops_on_device.global_avg_pool(&x)?;
        let comparison = compare(&got, &ops::global_avg_pool(&x), None, Element::F32);
        collector.add(
            comparison,
            || shape.to_string(),
            ops_on_device.last_launch_ms(),
        );
    }
    Ok(collector.finish())
}

/// The dense layer (with and without ReLU), in float32.
pub fn dense(ops_on_device: &GpuOps, rng: &mut StdRng) -> Result<VariantReport> {
    let mut collector = Collector::new("dense", "dense", Element::F32);
    for (rows, inputs, units, relu) in [
        (1, 2048, 100, true),
        (3, 100, 6, false),
        (2, 2048, 1000, false),
        (1, 1, 1, true),
    ] {
        let x = uniform(rng, rows * inputs, 1.0);
        let kernel = uniform(rng, inputs * units, 1.0 / (inputs as f32).sqrt());
        let bias = uniform(rng, units, 0.5);
        let mut want = ops::dense(&x, &kernel, &bias, units);
        if relu {
            want.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let got = ops_on_device.dense(&x, &kernel, &bias, relu)?;
        let case = || {
            format!(
                "{rows}x{inputs} -> {units}{}",
                if relu { " relu" } else { "" }
            )
        };
        let comparison = compare(&got, &want, None, Element::F32);
        collector.add(comparison, case, ops_on_device.last_launch_ms());
    }
    Ok(collector.finish())
}

/// The row-wise softmax, in float32.
pub fn softmax(ops_on_device: &GpuOps, rng: &mut StdRng) -> Result<VariantReport> {
    let mut collector = Collector::new("softmax", "softmax", Element::F32);
    for (rows, cols, scale) in [(1, 1, 1.0), (3, 6, 5.0), (2, 1000, 30.0)] {
        let x = uniform(rng, rows * cols, scale);
        let got = ops_on_device.softmax(&x, cols)?;
        let comparison = compare(&got, &ops::softmax(&x, cols), None, Element::F32);
        collector.add(
            comparison,
            || format!("{rows}x{cols}"),
            ops_on_device.last_launch_ms(),
        );
    }
    Ok(collector.finish())
}

/// Every kernel variant `ops_on_device` offers at `precision` (its convolution variants, every
/// depthwise variant, the pools; at float32 also the dense layer and softmax, which have no
/// float16 variant), each on fresh random inputs from a generator seeded with `seed`; each
/// report goes to `on_report` as soon as it is done.
pub fn every_variant(
    ops_on_device: &GpuOps,
    precision: Precision,
    seed: u64,
    fault: Option<&Fault>,
    on_report: &mut dyn FnMut(VariantReport),
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for variant in ops_on_device.conv_kernels(precision) {
        on_report(conv_variant(
            ops_on_device,
            variant,
            precision,
            &mut rng,
            fault,
        )?);
    }
    for variant in DepthwiseKernel::ALL {
        on_report(depthwise_variant(ops_on_device, variant, &mut rng, fault)?);
    }
    on_report(max_pool(ops_on_device, &mut rng)?);
    on_report(pre_activation(ops_on_device, &mut rng)?);
    on_report(global_avg_pool(ops_on_device, &mut rng)?);
    if precision == Precision::F32 {
        on_report(dense(ops_on_device, &mut rng)?);
        on_report(softmax(ops_on_device, &mut rng)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comparison_fails_past_its_bound_and_on_nan() {
        let within = compare(&[1.0, 2.0], &[1.0, 2.0001], None, Element::F32);
        assert!(within.passed(), "{within:?}");
        let past = compare(&[1.0, 2.01], &[1.0, 2.0], None, Element::F32);
        assert!(!past.passed());
        assert_eq!(past.element, 1);
        let nan = compare(&[f32::NAN], &[1.0], None, Element::F32);
        assert!(!nan.passed());
        assert!(!compare(&[1.0], &[1.0, 2.0], None, Element::F32).passed());
    }

    #[test]
    fn float16_widens_the_bound_by_the_output_rounding_and_the_products() {
        let f32_bound = compare(&[100.0], &[100.0], None, Element::F32).bound;
        let f16_bound = compare(&[100.0], &[100.0], None, Element::F16).bound;
        assert!((f16_bound - f32_bound - 100.0 / 1024.0).abs() < 1e-6);
        let products = compare(&[100.0], &[100.0], Some(&[2048.0]), Element::F32).bound;
        assert!((products - f32_bound - 2.0).abs() < 1e-5);
    }
}
