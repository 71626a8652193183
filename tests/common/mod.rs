//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xception_wgpu::gpu::{ConvGeometry, GpuContext};
use xception_wgpu::graph::{Padding, BN_EPSILON};
use xception_wgpu::weights::BatchNorm;
use xception_wgpu::{Shape, Tensor};

/// The GPU device for tests. Never skips: without an adapter the test fails, naming the fix.
pub fn gpu() -> GpuContext {
    static CONTEXT: OnceLock<GpuContext> = OnceLock::new();
    CONTEXT
        .get_or_init(|| {
            GpuContext::new().unwrap_or_else(|e| {
                panic!(
                    "GPU tests need a wgpu adapter and none was found ({e}). On Linux without a GPU, \
                     install Mesa's software Vulkan driver: apt-get install mesa-vulkan-drivers"
                )
            })
        })
        .clone()
}

/// A random generator whose seed is printed, and can be replayed with `XCEPTION_TEST_SEED`.
pub fn rng() -> StdRng {
    let seed = std::env::var("XCEPTION_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("random seed: {seed} (replay with XCEPTION_TEST_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

/// `len` values uniform in `[-scale, scale]`.
pub fn uniform(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// A random tensor with values in `[-1, 1]`.
pub fn random_tensor(rng: &mut StdRng, shape: Shape) -> Tensor {
    Tensor::new(shape, uniform(rng, shape.len(), 1.0)).unwrap()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts `|got - want| <= tol * (1 + |want|)` element by element, naming the worst element.
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0.0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() / (1.0 + w.abs());
        if excess.is_nan() || excess > worst.1 {
            worst = (i, excess);
        }
    }
    let (i, excess) = worst;
    assert!(
        excess <= tol,
        "{what}: element {i} is {} but the reference is {} (scaled error {excess:e} > {tol:e})",
        got[i],
        want[i]
    );
}

/// One convolution case of the parity tests: input shape, window, output channels, ReLU,
/// residual add.
pub struct ConvCase {
    pub shape: Shape,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    pub out_channels: usize,
    pub relu: bool,
    pub residual: bool,
}

impl ConvCase {
    /// The window as the GPU kernels take it.
    pub fn geometry(&self) -> ConvGeometry {
        ConvGeometry {
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        }
    }
}

fn case(
    shape: Shape,
    kernel: usize,
    stride: usize,
    padding: Padding,
    out_channels: usize,
    relu: bool,
    residual: bool,
) -> ConvCase {
    ConvCase {
        shape,
        kernel,
        stride,
        padding,
        out_channels,
        relu,
        residual,
    }
}

/// Xception's convolutions and their awkward relatives: the 3-channel stem (stride 2, 'valid',
/// odd sizes), the second stem convolution on a map large enough to be split over threads, 3x3 'same' at stride 1 and 2 (taps in the padding), the 1x1/2 shortcuts on
/// even and odd maps, pointwise layers of 728, 1024 -> 1536 and 1536 -> 2048 channels, channel
/// counts that are not multiples of 4 or 8, 1x1 maps, and batches.
pub fn conv_cases() -> Vec<ConvCase> {
    use Padding::{Same, Valid};
    let s = Shape::new;
    vec![
        case(s(1, 7, 9, 3), 3, 2, Valid, 32, true, false),
        case(s(2, 11, 10, 3), 3, 2, Valid, 5, true, false),
        case(s(1, 3, 3, 5), 3, 1, Valid, 7, false, false),
        case(s(1, 12, 13, 32), 3, 1, Valid, 64, true, false),
        case(s(1, 40, 41, 32), 3, 1, Valid, 64, true, false),
        case(s(2, 7, 9, 8), 3, 1, Same, 12, false, false),
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

/// Owned random batchnorm parameters with a positive variance.
pub struct RandomBn {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
    pub epsilon: f32,
}

impl RandomBn {
    pub fn new(rng: &mut StdRng, channels: usize) -> Self {
        Self {
            gamma: uniform(rng, channels, 2.0),
            beta: uniform(rng, channels, 1.0),
            mean: uniform(rng, channels, 0.5),
            variance: (0..channels).map(|_| rng.random_range(0.0..2.0)).collect(),
            // Keras' 1e-3 or PyTorch's 1e-5, so the kernels honour the value they are given.
            epsilon: if rng.random() { BN_EPSILON } else { 1e-5 },
        }
    }

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
