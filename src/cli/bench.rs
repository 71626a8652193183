//! `bench`: cold start and warm latency tables, and per-step profiles (GPU launches, CPU kernels).

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use xception_wgpu::bench::{BenchCase, BenchResult};
use xception_wgpu::profile::OpKind;
use xception_wgpu::{BackendKind, Error, Size};

use crate::{parse_size, weights_path, Backend, ComputeArgs, Sizing};

/// Options of `xception bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Input size: 150, 299 or WxH; repeat for several cases.
    #[arg(long = "size", default_values = ["150", "299"])]
    sizes: Vec<String>,
    /// Images per forward pass; a comma-separated list (e.g. `1,8,32,128`) times each.
    #[arg(long, value_delimiter = ',', default_values_t = [1])]
    batch: Vec<usize>,
    /// Warm runs per case.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where the network runs; `auto` (as on every command) uses a hardware GPU, else the fast
    /// CPU backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Weights file [default: the bundled kitchenware model].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Print one JSON object per case and line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compute: ComputeArgs,
    /// Time every step (GPU kernel launches with timestamp queries, CPU kernels by wall
    /// time) and print per-layer and per-op-kind tables instead.
    #[arg(long)]
    profile: bool,
}

/// Runs `xception bench`.
pub fn run(args: &BenchArgs) -> Result<(), Error> {
    let weights = weights_path(args.weights.as_deref());
    let cases = bench_cases(&args.sizes, &args.batch, args.runs)?;
    if args.profile {
        print_profiles(&weights, args.backend.kind(), args.compute, &cases)
    } else {
        bench(
            &cases,
            args.backend.kind(),
            args.compute,
            &weights,
            args.json,
        )
    }
}

fn bench_cases(sizes: &[String], batches: &[usize], runs: usize) -> Result<Vec<BenchCase>, Error> {
    if let Some(0) = batches.iter().min() {
        return Err(Error::Argument("--batch takes sizes of at least 1".into()));
    }
    let sizes = sizes
        .iter()
        .map(|text| match parse_size(text)? {
            Sizing::Fixed(size) => Ok(size),
            Sizing::Native => Err(Error::Argument("bench needs a fixed --size".into())),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(sizes
        .iter()
        .flat_map(|&size| {
            batches
                .iter()
                .map(move |&batch| BenchCase { size, batch, runs })
        })
        .collect())
}

fn bench(
    cases: &[BenchCase],
    backend: BackendKind,
    compute: ComputeArgs,
    weights: &Path,
    json: bool,
) -> Result<(), Error> {
    // Tuned kernels are measured at the first case's size and batch.
    let builder = compute
        .builder(backend)
        .tune_for(cases[0].size, cases[0].batch);
    let results = xception_wgpu::bench::run(weights, builder, cases)?;
    let precision = compute.precision;
    // The first two columns are as wide as their widest entry.
    let width = |header: &str, column: fn(&BenchResult) -> &str| {
        results
            .iter()
            .map(|r| column(r).len())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let backend_width = width("backend", |r| &r.backend);
    let kernels_width = width("conv kernels", |r| &r.conv_kernels);
    if !json {
        outln!(
            "{:<bw$} {:<kw$} {:>9} {:>5} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "backend",
            "conv kernels",
            "size",
            "batch",
            "load ms",
            "setup ms",
            "first ms",
            "min ms",
            "median ms",
            "max ms",
            "submit ms",
            "img/s",
            "GFLOP/s",
            bw = backend_width,
            kw = kernels_width,
        );
    }
    for r in &results {
        let Size {
            width: w,
            height: h,
        } = r.case.size;
        if json {
            let line = json!({
                "adapter": r.backend, "backend": format!("{backend:?}").to_lowercase(),
                "conv_kernels": r.conv_kernels,
                "kernels": r.assignments.iter().map(|a| json!({
                    "layer": a.layer, "kernel": a.kernel.name(),
                    "depthwise": a.depthwise.map(|d| d.name()), "reason": a.reason.name(),
                })).collect::<Vec<_>>(),
                "precision": format!("{precision:?}").to_lowercase(),
                "size": [w, h], "batch": r.case.batch,
                "cold_start_ms": {"load": r.load_ms, "setup": r.setup_ms, "first_inference": r.first_ms, "total": r.cold_start_ms()},
                "latency_ms": {"min": r.min_ms(), "median": r.median_ms(), "max": r.max_ms()},
                "submit_ms": r.submit_ms,
                "images_per_s": r.images_per_s(), "gflops": r.gflops(),
            });
            outln!("{line}");
        } else {
            outln!(
                "{:<bw$} {:<kw$} {:>9} {:>5} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>8.2} {:>8.2}",
                r.backend, if r.conv_kernels.is_empty() { "-" } else { &r.conv_kernels }, format!("{w}x{h}"), r.case.batch, r.load_ms, r.setup_ms, r.first_ms,
                r.min_ms(), r.median_ms(), r.max_ms(),
                r.submit_ms.map_or("-".to_string(), |ms| format!("{ms:.3}")),
                r.images_per_s(), r.gflops(),
                bw = backend_width, kw = kernels_width,
            );
        }
    }
    if let (false, Some(first)) = (json, results.first()) {
        if !first.assignments.is_empty() {
            outln!("convolution kernels, and why:");
            crate::cli::info::print_assignments(&first.assignments);
        }
    }
    Ok(())
}

fn print_profiles(
    weights: &Path,
    backend: BackendKind,
    compute: ComputeArgs,
    cases: &[BenchCase],
) -> Result<(), Error> {
    for &case in cases {
        let profile = xception_wgpu::bench::profile(
            weights,
            compute.builder(backend).tune_for(case.size, case.batch),
            case,
        )?;
        let launches = &profile.launches;
        let total: f64 = launches.iter().map(|l| l.ms).sum();
        let Size {
            width: w,
            height: h,
        } = case.size;
        outln!(
            "{}, {w}x{h}, batch {}: {total:.1} ms in {} steps (median of {} runs)",
            profile.backend,
            case.batch,
            launches.len(),
            case.runs
        );
        // The share of the measured peak, for steps that multiply, where there is a peak
        // (the CPU backend).
        let of_peak = |gflops: f64| match profile.peak_gflops {
            Some(peak) if gflops > 0.0 => format!("{:>6.1}%", 100.0 * gflops / peak),
            _ => String::new(),
        };
        if let Some(peak) = profile.peak_gflops {
            outln!("measured fused multiply-add peak of its threads: {peak:.1} GFLOP/s");
        }
        let peak_header = match profile.peak_gflops {
            Some(_) => format!(" {:>7}", "% peak"),
            None => String::new(),
        };
        outln!(
            "{:<22} {:<16} {:>9} {:>7} {:>9} {:>8}{peak_header}",
            "layer",
            "op",
            "ms",
            "share",
            "GFLOP/s",
            "GB/s"
        );
        for l in launches {
            let gflops = 2.0 * l.macs as f64 / l.ms / 1e6;
            outln!(
                "{:<22} {:<16} {:>9.3} {:>6.1}% {:>9.2} {:>8.2} {}",
                l.layer,
                l.kind.name(),
                l.ms,
                100.0 * l.ms / total,
                gflops,
                l.bytes as f64 / l.ms / 1e6,
                of_peak(gflops)
            );
        }
        outln!(
            "\n{:<22} {:>9} {:>7} {:>9} {:>8} {:>9}{peak_header}",
            "op kind",
            "ms",
            "share",
            "GFLOP/s",
            "GB/s",
            "steps"
        );
        let mut kinds: Vec<OpKind> = Vec::new();
        for l in launches {
            if !kinds.contains(&l.kind) {
                kinds.push(l.kind);
            }
        }
        for kind in kinds {
            let of_kind: Vec<_> = launches.iter().filter(|l| l.kind == kind).collect();
            let ms: f64 = of_kind.iter().map(|l| l.ms).sum();
            let macs: u64 = of_kind.iter().map(|l| l.macs).sum();
            let bytes: u64 = of_kind.iter().map(|l| l.bytes).sum();
            let gflops = 2.0 * macs as f64 / ms / 1e6;
            outln!(
                "{:<22} {:>9.3} {:>6.1}% {:>9.2} {:>8.2} {:>9} {}",
                kind.name(),
                ms,
                100.0 * ms / total,
                gflops,
                bytes as f64 / ms / 1e6,
                of_kind.len(),
                of_peak(gflops)
            );
        }
        let gflops = 2.0 * launches.iter().map(|l| l.macs).sum::<u64>() as f64 / total / 1e6;
        outln!(
            "{:<22} {:>9.3} {:>6.1}% {:>9.2} {:>8} {:>9} {}\n",
            "total",
            total,
            100.0,
            gflops,
            "",
            launches.len(),
            of_peak(gflops)
        );
    }
    Ok(())
}
