//! Helpers shared by the integration tests; the random parity cases, their generators and
//! bounds are the library's own (`xception_wgpu::gpu::check`), which `xception check` runs.
#![allow(dead_code)]

pub mod process;

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[allow(unused_imports)]
pub use xception_wgpu::gpu::check::{
    conv_cases, depthwise_cases, depthwise_shapes, max_pool_shapes, random_tensor, uniform,
    ConvCase, RandomBn,
};
use xception_wgpu::gpu::GpuContext;

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
