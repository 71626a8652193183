//! Timing a forward pass: cold start (weights, pipelines, first inference) and warm latency.

use std::path::Path;
use std::time::Instant;

use crate::error::Result;
use crate::gpu::ConvAssignment;
use crate::graph::Graph;
use crate::model::XceptionBuilder;
use crate::profile::LaunchTiming;
use crate::tensor::{Shape, Size, Tensor};
use crate::weights::Weights;

/// What to time.
#[derive(Debug, Clone, Copy)]
pub struct BenchCase {
    /// Input size.
    pub size: Size,
    /// Images per forward pass.
    pub batch: usize,
    /// Warm runs to time after the first.
    pub runs: usize,
}

/// Timings of one case, in milliseconds.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Adapter and backend (`gpu (llvmpipe ..., Vulkan)` or `cpu (reference)`).
    pub backend: String,
    /// The convolution kernels that ran, e.g. `conv_tiled+depthwise_conv_tiled` (empty on
    /// the CPU).
    pub conv_kernels: String,
    /// The kernels of every convolution and why it got them (empty on the CPU).
    pub assignments: Vec<ConvAssignment>,
    /// The case timed.
    pub case: BenchCase,
    /// Reading and validating the weights file.
    pub load_ms: f64,
    /// Creating the backend: device, pipelines, weight upload and batchnorm folding.
    pub setup_ms: f64,
    /// The first forward pass (buffer allocation and shader compilation included).
    pub first_ms: f64,
    /// Warm forward passes, sorted.
    pub warm_ms: Vec<f64>,
    /// Fastest CPU time to write the input, record and submit one warm pass on the GPU (not
    /// waiting for it); `None` on the CPU or when the batch takes several passes.
    pub submit_ms: Option<f64>,
    /// Multiply-accumulates of one image through the backbone and head.
    pub macs_per_image: u64,
}

impl BenchResult {
    /// Fastest warm run.
    pub fn min_ms(&self) -> f64 {
        self.warm_ms[0]
    }
    /// Median warm run.
    pub fn median_ms(&self) -> f64 {
        self.warm_ms[self.warm_ms.len() / 2]
    }
    /// Slowest warm run.
    pub fn max_ms(&self) -> f64 {
        self.warm_ms[self.warm_ms.len() - 1]
    }
    /// Cold start to the first result: load + setup + first forward.
    pub fn cold_start_ms(&self) -> f64 {
        self.load_ms + self.setup_ms + self.first_ms
    }
    /// Images per second at the median latency.
    pub fn images_per_s(&self) -> f64 {
        self.case.batch as f64 / (self.median_ms() / 1e3)
    }
    /// Achieved GFLOP/s (2 FLOPs per multiply-accumulate) at the median latency.
    pub fn gflops(&self) -> f64 {
        2.0 * (self.macs_per_image * self.case.batch as u64) as f64 / (self.median_ms() / 1e3) / 1e9
    }
}

/// Milliseconds since `t`.
pub(crate) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn synthetic_input(case: BenchCase) -> Result<Tensor> {
    let Size { width, height } = case.size;
    let shape = Shape::new(case.batch, height, width, 3);
    let data = (0..shape.len())
        .map(|j| ((j % 255) as f32) / 127.5 - 1.0)
        .collect();
    Tensor::new(shape, data)
}

/// Profiles `case` on the model `builder` configures (GPU or fast CPU): one warm-up pass, then
/// `case.runs` timed passes; returns the backend description and each step with its median
/// time.
pub fn profile(weights: &Path, builder: XceptionBuilder, case: BenchCase) -> Result<Profile> {
    let model = builder.load(weights)?;
    let input = synthetic_input(case)?;
    model.forward(&input)?;
    // The peak is measured beside every run and the best kept, so that a run on a busy
    // machine is not compared with a peak measured while it was idle, or the other way round.
    let mut peak_gflops: Option<f64> = None;
    let runs = (0..case.runs.max(1))
        .map(|_| {
            if let Some(peak) = model.cpu_fma_peak_gflops() {
                peak_gflops = Some(peak_gflops.map_or(peak, |best| best.max(peak)));
            }
            model.profile(&input)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut launches = runs[0].clone();
    for (i, launch) in launches.iter_mut().enumerate() {
        let mut times: Vec<f64> = runs.iter().map(|r| r[i].ms).collect();
        times.sort_by(f64::total_cmp);
        launch.ms = times[times.len() / 2];
    }
    Ok(Profile {
        backend: model.backend_description(),
        launches,
        peak_gflops,
    })
}

/// One case's profile: every step's median time.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The backend and adapter, as `info` names them.
    pub backend: String,
    /// Each step of a forward pass, with its median time.
    pub launches: Vec<LaunchTiming>,
    /// On the CPU backend, what its threads can do together at most: one core's measured
    /// fused multiply-add peak with the backend's instructions, times the threads.
    pub peak_gflops: Option<f64>,
}

/// Loads `weights` into the model `builder` configures and times each case on a fixed
/// synthetic input.
pub fn run(
    weights: &Path,
    builder: XceptionBuilder,
    cases: &[BenchCase],
) -> Result<Vec<BenchResult>> {
    let t = Instant::now();
    let loaded = Weights::load(weights)?;
    let load_ms = ms_since(t);
    let head_macs: u64 = loaded
        .info
        .head
        .iter()
        .map(|l| (l.inputs * l.units) as u64)
        .sum();
    let t = Instant::now();
    let model = builder.build(loaded)?;
    let setup_ms = ms_since(t);
    let conv_kernels = model.conv_kernel_summary();
    let graph = Graph::xception();
    let mut results = Vec::new();
    for (i, &case) in cases.iter().enumerate() {
        let Size { width, height } = case.size;
        let input = synthetic_input(case)?;
        let t = Instant::now();
        model.forward(&input)?;
        let first_ms = ms_since(t);
        let mut warm_ms = (0..case.runs.max(1))
            .map(|_| {
                let t = Instant::now();
                model.forward(&input).map(|_| ms_since(t))
            })
            .collect::<Result<Vec<_>>>()?;
        warm_ms.sort_by(f64::total_cmp);
        let mut submit_ms: Option<f64> = None;
        for _ in 0..case.runs.max(1) {
            if let Some(ms) = model.submit_ms(&input)? {
                submit_ms = Some(submit_ms.map_or(ms, |best| best.min(ms)));
            }
        }
        results.push(BenchResult {
            backend: model.backend_description(),
            conv_kernels: conv_kernels.clone(),
            assignments: model.conv_kernels(),
            case,
            // Loading and setup happen once; they belong to the first case's cold start.
            load_ms: if i == 0 { load_ms } else { 0.0 },
            setup_ms: if i == 0 { setup_ms } else { 0.0 },
            first_ms,
            warm_ms,
            submit_ms,
            macs_per_image: graph.macs(height, width)? + head_macs,
        });
    }
    Ok(results)
}
