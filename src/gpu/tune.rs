//! Tuned kernels ([`KernelChoice::Tuned`](super::KernelChoice::Tuned)): for each distinct
//! convolution shape of the graph at one input size, every candidate variant that passes its
//! parity check ([`super::check`]) is timed on this adapter, and the fastest is kept, in the
//! cache directory beside the pipeline cache, keyed by adapter, crate version, precision and
//! shape. Later loads read the choice and time nothing.

use std::collections::HashMap;

use super::ops::DepthwiseKernel;
use super::select::{ConvKernel, ConvShape};
use crate::tensor::Size;

/// The input tuning measures the convolutions at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TuneInput {
    /// Width and height of the images.
    pub size: Size,
    /// Images per pass.
    pub batch: usize,
}

impl TuneInput {
    /// `batch` images of `size`.
    pub const fn of(size: Size, batch: usize) -> Self {
        Self { size, batch }
    }
}

/// The kernel measured fastest for one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunedChoice {
    /// For a convolution, or the pointwise half of a separable one.
    Conv(ConvKernel),
    /// For the depthwise half of a separable convolution.
    Depthwise(DepthwiseKernel),
}

impl TunedChoice {
    /// The convolution kernel, if this is one.
    pub fn conv(self) -> Option<ConvKernel> {
        match self {
            TunedChoice::Conv(kernel) => Some(kernel),
            TunedChoice::Depthwise(_) => None,
        }
    }

    /// The depthwise kernel, if this is one.
    pub fn depthwise(self) -> Option<DepthwiseKernel> {
        match self {
            TunedChoice::Depthwise(kernel) => Some(kernel),
            TunedChoice::Conv(_) => None,
        }
    }

    /// The kernel's name.
    pub fn name(self) -> &'static str {
        match self {
            TunedChoice::Conv(kernel) => kernel.name(),
            TunedChoice::Depthwise(kernel) => kernel.name(),
        }
    }
}

/// The tuned choice of every convolution shape measured.
#[derive(Debug, Clone, Default)]
pub struct TunedKernels {
    choices: HashMap<ConvShape, TunedChoice>,
}

impl TunedKernels {
    /// The choice for `shape`, if it was measured.
    pub fn get(&self, shape: &ConvShape) -> Option<TunedChoice> {
        self.choices.get(shape).copied()
    }
}

/// One shape's measurement: the median milliseconds per launch of every candidate, fastest
/// first.
#[derive(Debug, Clone)]
pub struct ShapeTiming {
    /// The shape measured.
    pub shape: ConvShape,
    /// `(kernel, ms)` for every candidate that was timed, fastest first.
    pub times: Vec<(&'static str, f64)>,
}

/// What tuning tells its observer.
#[derive(Debug, Clone)]
pub enum TuneEvent {
    /// `shapes` shapes have no stored choice and are about to be measured (seconds).
    Timing {
        /// Shapes to measure.
        shapes: usize,
    },
    /// One shape was measured.
    Measured(ShapeTiming),
    /// Every shape's choice came from the store; nothing was timed.
    Stored {
        /// Shapes read.
        shapes: usize,
    },
    /// Something was ignored (a corrupt or stale store, a variant failing its parity check) or
    /// could not be written; tuning goes on without it.
    Warning(String),
}

impl std::fmt::Display for ConvShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ConvShape::Conv {
                geometry,
                input,
                out_channels,
                residual,
            } => {
                let k = geometry.kernel;
                write!(
                    f,
                    "conv {k}x{k}/{} {:?} {input} -> {out_channels}{}",
                    geometry.stride,
                    geometry.padding,
                    if residual { " +residual" } else { "" }
                )
            }
            ConvShape::Depthwise {
                input,
                geometry,
                epilogue,
            } => {
                write!(f, "depthwise 3x3 {input}")?;
                if !geometry.is_plain() {
                    let (stride, dilation) = (geometry.stride, geometry.dilation);
                    write!(f, " /{stride} dilation {dilation} {:?}", geometry.padding)?;
                }
                if epilogue {
                    write!(f, " +bias")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::tuned_kernels;

/// Tuning needs the parity checks and blocking waits of native targets.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn tuned_kernels(
    _: &super::GpuContext,
    _: &super::Kernels,
    _: &crate::graph::Graph,
    _: &[crate::tensor::Shape],
    _: super::Precision,
    _: &mut dyn FnMut(TuneEvent),
) -> crate::error::Result<TunedKernels> {
    Err(crate::error::Error::Argument(
        "tuned kernels are not available in the browser; use auto".into(),
    ))
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::{HashMap, HashSet};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::{json, Value};

    use super::{ShapeTiming, TuneEvent, TunedChoice, TunedKernels};
    use crate::bench::ms_since;
    use crate::error::Result;
    use crate::files::write_atomically;
    use crate::gpu::check::{self, RandomBn};
    use crate::gpu::context::GpuContext;
    use crate::gpu::harness::GpuOps;
    use crate::gpu::kernels::{Dispatch, Kernels};
    use crate::gpu::ops::{
        activation_buffer, upload, upload_activations, Conv, DepthwiseKernel, DepthwiseWork,
    };
    use crate::gpu::options::Precision;
    use crate::gpu::select::{conv_shapes, ConvKernel, ConvShape};
    use crate::graph::Graph;
    use crate::tensor::Shape;

    /// The file tuned choices are kept in, in the cache directory.
    const STORE_FILE: &str = "tuned-kernels.json";

    /// Timed launches per candidate at most (after one warm-up launch).
    const RUNS: usize = 5;

    /// Time one shape's candidates may take together; a slow candidate gets fewer launches
    /// (at least one).
    const SHAPE_BUDGET: Duration = Duration::from_secs(2);

    /// The seed of the random inputs and weights tuning times and checks with.
    const SEED: u64 = 0x5eed;

    /// The measured choices for the convolutions of `graph` at `shapes` (from
    /// [`Graph::infer_shapes`]): read from the store in `context`'s cache directory where it
    /// has them, measured (and stored) where not.
    pub(crate) async fn tuned_kernels(
        context: &GpuContext,
        kernels: &Kernels,
        graph: &Graph,
        shapes: &[Shape],
        precision: Precision,
        observer: &mut dyn FnMut(TuneEvent),
    ) -> Result<TunedKernels> {
        let mut store = Store::open(context, precision, observer);
        let mut distinct = Vec::new();
        let mut seen = HashSet::new();
        for shape in conv_shapes(graph, shapes).into_iter().flatten() {
            if seen.insert(shape) {
                distinct.push(shape);
            }
        }
        let mut tuned = TunedKernels::default();
        let mut missing = Vec::new();
        for shape in distinct {
            match store
                .get(&shape)
                .filter(|&c| candidate(context, kernels, precision, &shape, c))
            {
                Some(choice) => {
                    tuned.choices.insert(shape, choice);
                }
                None => missing.push(shape),
            }
        }
        if missing.is_empty() {
            observer(TuneEvent::Stored {
                shapes: tuned.choices.len(),
            });
            return Ok(tuned);
        }
        observer(TuneEvent::Timing {
            shapes: missing.len(),
        });
        let ops = GpuOps::with_kernels(context.clone(), kernels.clone());
        let mut parity = Parity::default();
        for shape in missing {
            let candidates: Vec<TunedChoice> = candidates(context, kernels, precision, &shape)
                .into_iter()
                .filter(|&c| parity.passes(&ops, precision, c, observer))
                .collect();
            let timing = time_shape(context, kernels, precision, &shape, &candidates)?;
            if let Some(&(fastest, ms)) = timing.times.first() {
                let choice = candidates
                    .iter()
                    .copied()
                    .find(|c| c.name() == fastest)
                    .expect("a timed candidate");
                tuned.choices.insert(shape, choice);
                store.insert(&shape, choice, ms);
            }
            observer(TuneEvent::Measured(timing));
        }
        if let Err(why) = store.save() {
            observer(TuneEvent::Warning(why));
        }
        Ok(tuned)
    }

    /// Every kernel that can run `shape` on this adapter at `precision`.
    fn candidates(
        context: &GpuContext,
        kernels: &Kernels,
        precision: Precision,
        shape: &ConvShape,
    ) -> Vec<TunedChoice> {
        let conv = ConvKernel::ALL.into_iter().map(TunedChoice::Conv);
        let depthwise = DepthwiseKernel::ALL.into_iter().map(TunedChoice::Depthwise);
        conv.chain(depthwise)
            .filter(|&c| candidate(context, kernels, precision, shape, c))
            .collect()
    }

    /// Whether `choice` can run `shape` on this adapter at `precision`.
    fn candidate(
        context: &GpuContext,
        kernels: &Kernels,
        precision: Precision,
        shape: &ConvShape,
        choice: TunedChoice,
    ) -> bool {
        match (*shape, choice) {
            (
                ConvShape::Conv {
                    geometry,
                    input,
                    out_channels,
                    residual,
                },
                TunedChoice::Conv(kernel),
            ) => {
                kernel.available(context, kernels, precision)
                    && kernel.runs(geometry, input.channels, out_channels)
                    && !(residual && kernel == ConvKernel::Direct)
            }
            (
                ConvShape::Depthwise {
                    input, geometry, ..
                },
                TunedChoice::Depthwise(kernel),
            ) => kernel.runs(input.channels, geometry),
            _ => false,
        }
    }

    /// Each variant's parity check, run once per tuning.
    #[derive(Default)]
    struct Parity {
        verdicts: HashMap<&'static str, bool>,
    }

    impl Parity {
        /// Whether `choice` passes its parity check on this device; a failure (or a variant
        /// that cannot run its cases) is reported once and rules it out.
        fn passes(
            &mut self,
            ops: &GpuOps,
            precision: Precision,
            choice: TunedChoice,
            observer: &mut dyn FnMut(TuneEvent),
        ) -> bool {
            *self.verdicts.entry(choice.name()).or_insert_with(|| {
                let mut rng = StdRng::seed_from_u64(SEED);
                let report = match choice {
                    TunedChoice::Conv(kernel) => {
                        check::conv_variant(ops, kernel, precision, &mut rng, None)
                    }
                    TunedChoice::Depthwise(kernel) => {
                        check::depthwise_variant(ops, kernel, &mut rng, None)
                    }
                };
                let why = match report {
                    Ok(report) if report.passed() => return true,
                    Ok(report) => format!(
                        "error {:e} > bound {:e} on {}",
                        report.worst.error, report.worst.bound, report.worst_case
                    ),
                    Err(e) => e.to_string(),
                };
                observer(TuneEvent::Warning(format!(
                    "{} failed its parity check and is not tuned for ({why})",
                    choice.name()
                )));
                false
            })
        }
    }

    /// Times every candidate on `shape` with random inputs and weights: one warm-up launch,
    /// then up to [`RUNS`] within the shape's budget; fastest median first.
    fn time_shape(
        context: &GpuContext,
        kernels: &Kernels,
        precision: Precision,
        shape: &ConvShape,
        candidates: &[TunedChoice],
    ) -> Result<ShapeTiming> {
        let mut rng = StdRng::seed_from_u64(SEED);
        let device = &context.device;
        let element = kernels.element();
        let per_candidate = SHAPE_BUDGET / candidates.len().max(1) as u32;
        let mut times = Vec::new();
        for &choice in candidates {
            let dispatch = match (*shape, choice) {
                (
                    ConvShape::Conv {
                        geometry,
                        input,
                        out_channels,
                        residual,
                    },
                    TunedChoice::Conv(kernel),
                ) => {
                    let rows = geometry.kernel * geometry.kernel * input.channels;
                    let weights = check::uniform(&mut rng, rows * out_channels, 0.1);
                    let bn = RandomBn::new(&mut rng, out_channels);
                    let (conv, prep) = Conv::prepare(
                        kernels,
                        kernel,
                        geometry,
                        &weights,
                        out_channels,
                        &bn.view(),
                        precision,
                    )?;
                    let mut encoder = device.create_command_encoder(&Default::default());
                    prep.record(kernels, &mut encoder);
                    context.queue.submit([encoder.finish()]);
                    let out = geometry.output_shape(input, out_channels);
                    let x = check::uniform(&mut rng, input.len(), 1.0);
                    let x = upload_activations(device, "tuning input", &x, element);
                    let y = activation_buffer(device, "tuning output", out.len(), element);
                    let r = residual
                        .then(|| activation_buffer(device, "tuning residual", out.len(), element));
                    conv.launch(kernels, &x, input, out, true, r.as_ref(), &y)
                }
                (
                    ConvShape::Depthwise {
                        input,
                        geometry,
                        epilogue,
                    },
                    TunedChoice::Depthwise(kernel),
                ) => {
                    let weights = upload(
                        device,
                        "tuning kernel",
                        &check::uniform(&mut rng, 9 * input.channels, 0.3),
                    );
                    let bias = epilogue.then(|| {
                        let values = check::uniform(&mut rng, input.channels, 0.3);
                        upload(device, "tuning bias", &values)
                    });
                    let x = check::uniform(&mut rng, input.len(), 1.0);
                    let x = upload_activations(device, "tuning input", &x, element);
                    let out = geometry.output_shape(input);
                    let y = activation_buffer(device, "tuning output", out.len(), element);
                    let work = DepthwiseWork {
                        geometry,
                        relu_input: true,
                        bias: bias.as_ref(),
                        relu_output: epilogue,
                    };
                    kernels.depthwise_conv(kernel, &x, input, &weights, work, &y)
                }
                _ => unreachable!("{choice:?} is not a candidate for {shape}"),
            };
            let warm = launch_ms(context, kernels, &dispatch)?;
            let runs = (per_candidate.as_secs_f64() * 1e3 / warm.max(1e-3)) as usize;
            let mut ms: Vec<f64> = (0..runs.clamp(1, RUNS))
                .map(|_| launch_ms(context, kernels, &dispatch))
                .collect::<Result<_>>()?;
            ms.sort_by(f64::total_cmp);
            times.push((choice.name(), ms[ms.len() / 2]));
        }
        times.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(ShapeTiming {
            shape: *shape,
            times,
        })
    }

    /// Milliseconds one launch of `dispatch` takes: device time from timestamp queries where
    /// the adapter has them, else wall time from submit to completion.
    fn launch_ms(context: &GpuContext, kernels: &Kernels, dispatch: &Dispatch) -> Result<f64> {
        let device = &context.device;
        let timestamps = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let queries = timestamps.then(|| {
            device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("tuning timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        });
        let resolved = timestamps.then(|| {
            let buffer = |label, usage| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: 16,
                    usage,
                    mapped_at_creation: false,
                })
            };
            (
                buffer(
                    "tuning timestamps",
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                buffer(
                    "tuning timestamps readback",
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
            )
        });
        let start = Instant::now();
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("tuning"),
                timestamp_writes: queries.as_ref().map(|query_set| {
                    wgpu::ComputePassTimestampWrites {
                        query_set,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }
                }),
            });
            kernels.record(&mut pass, std::slice::from_ref(dispatch));
        }
        if let (Some(queries), Some((resolve, readback))) = (&queries, &resolved) {
            encoder.resolve_query_set(queries, 0..2, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, readback, 0, 16);
        }
        context.queue.submit([encoder.finish()]);
        context.wait()?;
        let wall = ms_since(start);
        match resolved {
            Some((_, readback)) => {
                let bytes = pollster::block_on(context.map_bytes(&readback))?;
                let ticks: &[u64] = bytemuck::cast_slice(&bytes);
                let period_ns = context.queue.get_timestamp_period() as f64;
                let device_ms = ticks[1].saturating_sub(ticks[0]) as f64 * period_ns / 1e6;
                // A driver whose timestamps say nothing (all zero) is timed by the wall.
                Ok(if device_ms > 0.0 { device_ms } else { wall })
            }
            None => Ok(wall),
        }
    }

    /// The stored choices of this adapter, crate version and precision, and every other entry
    /// of the file (other adapters'), which are written back untouched.
    struct Store {
        path: Option<PathBuf>,
        adapter: String,
        precision: String,
        /// Entries of other adapters and precisions, kept as they are.
        others: Vec<Value>,
        /// This adapter's and precision's choices by shape.
        ours: HashMap<String, (String, f64)>,
    }

    impl Store {
        /// Reads the store of `context`'s cache directory (none: an empty store that is not
        /// written); a corrupt file or stale entries are ignored with one warning each.
        fn open(
            context: &GpuContext,
            precision: Precision,
            observer: &mut dyn FnMut(TuneEvent),
        ) -> Self {
            let info = &context.adapter;
            let mut store = Store {
                path: context.cache_dir().map(|dir| dir.join(STORE_FILE)),
                adapter: format!(
                    "{:04x}:{:04x} {} {} {:?}",
                    info.vendor, info.device, info.driver, info.driver_info, info.backend
                ),
                precision: format!("{precision:?}"),
                others: Vec::new(),
                ours: HashMap::new(),
            };
            let Some(path) = store.path.clone() else {
                return store;
            };
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return store,
                Err(e) => {
                    observer(warning(&path, &format!("cannot be read ({e})")));
                    return store;
                }
            };
            let entries = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(mut file)) => match file.remove("entries") {
                    Some(Value::Array(entries)) => entries,
                    _ => {
                        observer(warning(&path, "has no list of entries"));
                        return store;
                    }
                },
                Ok(_) => {
                    observer(warning(&path, "is not a JSON object"));
                    return store;
                }
                Err(e) => {
                    observer(warning(&path, &format!("is not valid JSON ({e})")));
                    return store;
                }
            };
            let (mut stale, mut corrupt) = (0, 0);
            for entry in entries {
                let field = |name| entry.get(name).and_then(Value::as_str);
                let ms = entry.get("ms").and_then(Value::as_f64);
                match (field("adapter"), field("version"), field("precision")) {
                    (Some(adapter), Some(version), Some(precision))
                        if adapter == store.adapter && precision == store.precision =>
                    {
                        match (field("shape"), field("kernel"), ms) {
                            _ if version != env!("CARGO_PKG_VERSION") => stale += 1,
                            (Some(shape), Some(kernel), Some(ms))
                                if choice_named(kernel).is_some() =>
                            {
                                store
                                    .ours
                                    .insert(shape.to_string(), (kernel.to_string(), ms));
                            }
                            _ => corrupt += 1,
                        }
                    }
                    (Some(_), Some(_), Some(_)) => store.others.push(entry),
                    _ => corrupt += 1,
                }
            }
            if stale > 0 {
                observer(warning(
                    &path,
                    &format!(
                        "holds {stale} choices of another xception-wgpu version for this \
                         adapter"
                    ),
                ));
            }
            if corrupt > 0 {
                observer(warning(
                    &path,
                    &format!("holds {corrupt} malformed entries"),
                ));
            }
            store
        }

        /// The stored choice for `shape`.
        fn get(&self, shape: &ConvShape) -> Option<TunedChoice> {
            let (name, _) = self.ours.get(&shape.to_string())?;
            choice_named(name)
        }

        fn insert(&mut self, shape: &ConvShape, choice: TunedChoice, ms: f64) {
            self.ours
                .insert(shape.to_string(), (choice.name().to_string(), ms));
        }

        /// Writes the store back (through a temporary file and a rename), where it has a
        /// directory; returns why not where that fails.
        fn save(&self) -> std::result::Result<(), String> {
            let Some(path) = &self.path else {
                return Ok(());
            };
            let mut entries = self.others.clone();
            let mut ours: Vec<_> = self.ours.iter().collect();
            ours.sort_by(|a, b| a.0.cmp(b.0));
            entries.extend(ours.into_iter().map(|(shape, (kernel, ms))| {
                json!({
                    "adapter": self.adapter,
                    "version": env!("CARGO_PKG_VERSION"),
                    "precision": self.precision,
                    "shape": shape,
                    "kernel": kernel,
                    "ms": ms,
                })
            }));
            let text = serde_json::to_string_pretty(&json!({ "entries": entries }))
                .expect("JSON values serialise");
            write_atomically(path, text.as_bytes())
                .map_err(|e| format!("tuned kernels not kept: {}: {e}", path.display()))
        }
    }

    /// The convolution or depthwise kernel named `name`, if this crate has one.
    fn choice_named(name: &str) -> Option<TunedChoice> {
        let conv = ConvKernel::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .map(TunedChoice::Conv);
        let depthwise = DepthwiseKernel::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .map(TunedChoice::Depthwise);
        conv.or(depthwise)
    }

    /// The warning for a store, or entries of it, that are ignored.
    fn warning(path: &Path, problem: &str) -> TuneEvent {
        TuneEvent::Warning(format!(
            "tuned kernels: {} {problem}; ignored, and measured again",
            path.display()
        ))
    }
}
