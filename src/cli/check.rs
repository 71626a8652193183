//! `check`: every kernel variant of one adapter against the reference ops on the random parity
//! cases of the tests, then the whole network on the bundled photos against the reference
//! backend; a table and a verdict, or a JSON report to attach to a bug report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};
use xception_wgpu::gpu::check::{self, Comparison, Fault, VariantReport, TOLERANCE};
use xception_wgpu::gpu::{activation_element, default_cache_dir, GpuContext, GpuOps};
use xception_wgpu::{preprocess, BackendKind, Error, Precision, Size, Tensor, Weights, Xception};

use crate::cli::info::features_used;
use crate::{parse_size, weights_path, ComputeArgs, KernelArg, PrecisionArg, Sizing};

/// How far float16 may move the whole network's logits and embeddings from the float32
/// reference (the tests' documented gate; it measures about 1e-2), with the top class kept.
const NETWORK_F16_BOUND: f32 = 5e-2;

/// Options of `xception check`.
#[derive(Args)]
pub struct CheckArgs {
    /// What is checked: the GPU's kernels and network, or the fast CPU backend's network.
    #[arg(long, value_enum, default_value_t = CheckBackend::Gpu)]
    backend: CheckBackend,
    /// The GPU adapter, by part of its name (see `xception info`) [default: the one `auto`
    /// would open].
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
    /// Input size of the whole-network check: N or WxH [default: the model's].
    #[arg(long)]
    size: Option<String>,
    /// The GPU's convolution kernels for the whole-network check (every variant the adapter
    /// offers is checked on its own regardless).
    #[arg(long, value_enum, default_value_t = KernelArg::Auto)]
    kernel: KernelArg,
    /// Check one precision only [default: f32, then f16].
    #[arg(long, value_enum)]
    precision: Option<PrecisionArg>,
    /// Seed of the random cases; a failure replays with the seed the report gives.
    #[arg(long, default_value_t = 2017)]
    seed: u64,
    /// Weights file of the whole-network check [default: the bundled kitchenware model].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Print the report as one JSON object (adapter, driver, features, limits, results).
    #[arg(long)]
    json: bool,
    /// Shift one kernel's weights (by name, e.g. `conv_tiled`) to see the check fail:
    /// a test of `check` itself.
    #[arg(long, value_name = "KERNEL", hide = true)]
    plant_fault: Option<String>,
}

/// What `check` tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckBackend {
    /// Every GPU kernel variant, then the whole network on the GPU.
    Gpu,
    /// The whole network on the fast CPU backend.
    Cpu,
}

/// One line of the report: an op's kernel variant, or the whole network.
struct Row {
    op: String,
    kernel: String,
    precision: Precision,
    activations: String,
    cases: usize,
    worst: Comparison,
    worst_case: String,
    passed: bool,
    ms: f64,
}

impl Row {
    fn of(report: VariantReport, precision: Precision) -> Self {
        Row {
            passed: report.passed(),
            op: report.op.to_string(),
            kernel: report.kernel,
            precision,
            activations: format!("{:?}", report.element).to_lowercase(),
            cases: report.cases,
            worst: report.worst,
            worst_case: report.worst_case,
            ms: report.ms_per_launch,
        }
    }

    fn json(&self) -> Value {
        json!({
            "op": self.op,
            "kernel": self.kernel,
            "precision": format!("{:?}", self.precision).to_lowercase(),
            "activations": self.activations,
            "cases": self.cases,
            "worst_error": self.worst.error,
            "bound": self.worst.bound,
            "worst_case": self.worst_case,
            "got": self.worst.got,
            "want": self.worst.want,
            "passed": self.passed,
            "ms_per_launch": self.ms,
        })
    }
}

/// Runs `xception check`; `Ok(false)` when anything failed.
pub fn run(args: &CheckArgs) -> Result<bool, Error> {
    let weights_file = weights_path(args.weights.as_deref());
    let weights = std::sync::Arc::new(Weights::load(&weights_file)?);
    let size = match args.size.as_deref().map(parse_size).transpose()? {
        Some(Sizing::Fixed(size)) => size,
        Some(Sizing::Native) => return Err(Error::Argument("check needs a fixed --size".into())),
        None => weights.info.input_size,
    };
    let photos = bundled_photos()?;
    let precisions = match args.precision {
        Some(p) => vec![p.precision()],
        None => vec![Precision::F32, Precision::F16],
    };
    let fault = args.plant_fault.clone().map(|kernel| Fault { kernel });
    let context = match (&args.backend, &args.adapter) {
        (CheckBackend::Cpu, _) => None,
        (CheckBackend::Gpu, Some(name)) => Some(GpuContext::with_adapter_named(name)?),
        (CheckBackend::Gpu, None) => Some(GpuContext::new()?),
    };
    let context = context.map(|c| match default_cache_dir() {
        Some(dir) => c.with_pipeline_cache(&dir),
        None => c,
    });
    let title = match &context {
        Some(c) => format!(
            "{} (driver: {} {})",
            c.description(),
            c.adapter.driver,
            c.adapter.driver_info
        ),
        None => format!(
            "the fast CPU backend ({} kernels)",
            xception_wgpu::cpu::gemm::Isa::detect().name()
        ),
    };
    if !args.json {
        outln!(
            "checking {title} against the reference (seed {})",
            args.seed
        );
        outln!(
            "{:<5} {:<9} {:<16} {:<44} {:>5} {:>11} {:>11} {:<4} {:>10}",
            "prec",
            "act/size",
            "op",
            "kernel",
            "cases",
            "worst error",
            "bound",
            "",
            "ms/launch"
        );
    }

    let mut rows = Vec::new();
    if let Some(context) = &context {
        for &precision in &precisions {
            let element = activation_element(precision, &context.device);
            let ops = GpuOps::with_element(context.clone(), element)?;
            check::every_variant(&ops, precision, args.seed, fault.as_ref(), &mut |report| {
                let row = Row::of(report, precision);
                if !args.json {
                    print_row(&row);
                }
                rows.push(row);
            })?;
        }
    }

    let inputs = photos
        .iter()
        .map(|path| preprocess::load_image(path, Some(size), preprocess::Resize::Stretch))
        .collect::<Result<Vec<Tensor>, Error>>()?;
    let reference = Xception::builder()
        .backend(BackendKind::Reference)
        .build(weights.clone())?;
    let want: Vec<_> = inputs
        .iter()
        .map(|input| reference.forward(input))
        .collect::<Result<_, _>>()?;
    let compute = ComputeArgs {
        precision: PrecisionArg::F32,
        kernel: args.kernel,
        threads: None,
    };
    let network_precisions = match context {
        Some(_) => precisions.clone(),
        None => vec![Precision::F32],
    };
    for precision in network_precisions {
        let mut builder = compute
            .builder(match &context {
                Some(_) => BackendKind::Gpu,
                None => BackendKind::Cpu,
            })
            .precision(precision)
            .tune_for(size, 1);
        if let Some(context) = &context {
            builder = builder.device(context.device.clone(), context.queue.clone());
        }
        let model = builder.build(weights.clone())?;
        let row = network_row(&model, precision, &inputs, &want, &photos, size)?;
        if !args.json {
            print_row(&row);
        }
        rows.push(row);
    }

    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed).collect();
    if args.json {
        let report = json!({
            "crate": {"name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION")},
            "checked": title,
            "adapter": context.as_ref().map(adapter_json),
            "seed": args.seed,
            "size": [size.width, size.height],
            "results": rows.iter().map(Row::json).collect::<Vec<_>>(),
            "passed": failed.is_empty(),
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("JSON values serialise")
        );
    } else if failed.is_empty() {
        outln!("verdict: all {} checks passed", rows.len());
    } else {
        let names: Vec<String> = failed
            .iter()
            .map(|r| {
                format!(
                    "{} at {:?} ({}: error {:e} > bound {:e}; replay with --seed {})",
                    r.kernel, r.precision, r.worst_case, r.worst.error, r.worst.bound, args.seed
                )
            })
            .collect();
        outln!(
            "verdict: {} of {} checks FAILED: {}",
            failed.len(),
            rows.len(),
            names.join("; ")
        );
    }
    Ok(failed.is_empty())
}

/// The whole network of `model` on `inputs` against the reference's outputs `want`: logits
/// and embeddings within 1e-4 at float32 (the tests' bound), within [`NETWORK_F16_BOUND`] with
/// the same top class at float16.
fn network_row(
    model: &Xception,
    precision: Precision,
    inputs: &[Tensor],
    want: &[xception_wgpu::Outputs],
    photos: &[PathBuf],
    size: Size,
) -> Result<Row, Error> {
    let bound = match precision {
        Precision::F32 => TOLERANCE,
        Precision::F16 => NETWORK_F16_BOUND,
    };
    let mut worst = Comparison {
        element: 0,
        got: 0.0,
        want: 0.0,
        error: 0.0,
        bound,
    };
    let mut worst_case = String::new();
    let mut passed = true;
    let mut ms = Vec::new();
    for ((input, want), photo) in inputs.iter().zip(want).zip(photos) {
        let start = Instant::now();
        let got = model.forward(input)?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        let name = photo.file_name().unwrap_or_default().to_string_lossy();
        for (what, got, want) in [
            ("logits", &got.logits, &want.logits),
            ("embedding", &got.embeddings, &want.embeddings),
        ] {
            for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
                let error = (g - w).abs();
                if error > worst.error || error.is_nan() {
                    worst = Comparison {
                        element: i,
                        got: g,
                        want: w,
                        error,
                        bound,
                    };
                    worst_case = format!("{name} {what}[{i}]");
                }
            }
            passed &= got.len() == want.len();
        }
        if top(&got.logits) != top(&want.logits) {
            passed = false;
            worst_case = format!("{name}: top class changed");
        }
    }
    ms.sort_by(f64::total_cmp);
    let kernels = model.conv_kernel_summary();
    Ok(Row {
        op: "network".into(),
        kernel: if kernels.is_empty() {
            "cpu".into()
        } else {
            kernels
        },
        precision,
        activations: format!("{}x{}", size.width, size.height),
        cases: inputs.len(),
        passed: passed && worst.passed(),
        worst,
        worst_case,
        ms: ms.get(ms.len() / 2).copied().unwrap_or(0.0),
    })
}

/// The index of the largest value.
fn top(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

fn print_row(row: &Row) {
    outln!(
        "{:<5} {:<9} {:<16} {:<44} {:>5} {:>11.3e} {:>11.3e} {:<4} {:>10.3}",
        format!("{:?}", row.precision).to_lowercase(),
        row.activations,
        row.op,
        row.kernel,
        row.cases,
        row.worst.error,
        row.worst.bound,
        if row.passed { "ok" } else { "FAIL" },
        row.ms
    );
}

/// What a bug report needs to know about the adapter.
fn adapter_json(context: &GpuContext) -> Value {
    let info = &context.adapter;
    let limits = context.device.limits();
    json!({
        "name": info.name,
        "vendor": format!("{:#06x}", info.vendor),
        "device": format!("{:#06x}", info.device),
        "device_type": format!("{:?}", info.device_type),
        "driver": info.driver,
        "driver_info": info.driver_info,
        "backend": format!("{:?}", info.backend),
        "subgroup_sizes": [info.subgroup_min_size, info.subgroup_max_size],
        "cooperative_matrix": context.cooperative_matrix(),
        "features": features_used(context),
        "limits": {
            "max_storage_buffer_binding_size": limits.max_storage_buffer_binding_size,
            "max_buffer_size": limits.max_buffer_size,
            "max_compute_workgroups_per_dimension": limits.max_compute_workgroups_per_dimension,
            "max_texture_dimension_2d": limits.max_texture_dimension_2d,
            "max_compute_workgroup_storage_size": limits.max_compute_workgroup_storage_size,
            "max_compute_invocations_per_workgroup": limits.max_compute_invocations_per_workgroup,
        },
    })
}

/// The photos in the repository's `samples/` folder (beside the bundled weights).
fn bundled_photos() -> Result<Vec<PathBuf>, Error> {
    let dir = ["samples", concat!(env!("CARGO_MANIFEST_DIR"), "/samples")]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.join("cup.jpg").is_file())
        .ok_or_else(|| Error::Argument("the bundled photos (samples/*.jpg) are missing".into()))?;
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Argument(format!("{}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    Ok(photos)
}
