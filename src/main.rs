//! `xception`: classify images or extract embeddings with Xception on the GPU (or the CPU).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use xception_wgpu::bench::BenchCase;
use xception_wgpu::gpu::OpKind;
use xception_wgpu::{preprocess, BackendKind, Error, Outputs, Tensor, Weights, Xception};

/// Weights used when `--weights` is not given: the kitchenware model in the repository.
const DEFAULT_WEIGHTS: &str = "weights/xception_kitchenware.safetensors";
/// Images run together in one forward pass.
const BATCH: usize = 8;

#[derive(Parser)]
#[command(
    name = "xception",
    version,
    about = "Xception image classification and embeddings on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the most probable classes of each image.
    ///
    /// Example: xception classify --top 3 samples/cup.jpg samples/fork.jpg
    Classify {
        #[command(flatten)]
        common: Common,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
    /// Print the 2048-d global-average-pooled embedding of each image.
    ///
    /// Example: xception embed --json samples/*.jpg > embeddings.jsonl
    Embed {
        #[command(flatten)]
        common: Common,
    },
    /// Time cold start and warm forward passes on a synthetic input and print a table.
    ///
    /// Example: xception bench --size 150 --size 299 --runs 10
    Bench {
        /// Input size: 150, 299 or WxH; repeat for several cases.
        #[arg(long = "size", default_values = ["150", "299"])]
        sizes: Vec<String>,
        /// Images per forward pass.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Warm runs per case.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where the network runs.
        #[arg(long, value_enum, default_value_t = Backend::Gpu)]
        backend: Backend,
        /// Weights file [default: the bundled kitchenware model].
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print one JSON object per case and line.
        #[arg(long)]
        json: bool,
        /// Time every kernel launch with GPU timestamp queries and print per-layer and
        /// per-op-kind tables instead.
        #[arg(long)]
        profile: bool,
    },
}

#[derive(Args)]
struct Common {
    /// Image files (PNG or JPEG, any colour type).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Print one JSON object per image and line.
    #[arg(long)]
    json: bool,
    /// Weights file (safetensors, float16 or float32) [default: the bundled kitchenware model].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Where the network runs; `auto` uses the GPU and falls back to the CPU when there is none.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Input size: WxH, or `native` to run each image at its own size [default: the model's].
    #[arg(long)]
    size: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    /// The GPU if an adapter is found, else the CPU (with a warning).
    Auto,
    /// WGSL compute shaders through wgpu.
    Gpu,
    /// The plain Rust reference implementation.
    Cpu,
}

impl Backend {
    fn kind(self) -> BackendKind {
        match self {
            Backend::Auto | Backend::Gpu => BackendKind::Gpu,
            Backend::Cpu => BackendKind::Cpu,
        }
    }
}

/// Loads the model on `backend`; `auto` falls back to the CPU when no GPU adapter is usable.
fn load_model(weights: &Path, backend: Backend) -> Result<Xception, Error> {
    let weights = Weights::load(weights)?;
    match backend {
        Backend::Auto => match Xception::new(weights.clone(), BackendKind::Gpu) {
            Err(Error::NoAdapter(why)) => {
                eprintln!("warning: no usable GPU adapter ({why}); running on the CPU");
                Xception::new(weights, BackendKind::Cpu)
            }
            other => other,
        },
        other => Xception::new(weights, other.kind()),
    }
}

/// How images are sized before they enter the network.
#[derive(Clone, Copy)]
enum Sizing {
    Fixed { width: usize, height: usize },
    Native,
}

fn parse_size(text: &str) -> Result<Sizing, String> {
    if text == "native" {
        return Ok(Sizing::Native);
    }
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    match parsed {
        Some((width, height)) => Ok(Sizing::Fixed { width, height }),
        None => Err(format!(
            "--size `{text}` is neither WxH (e.g. 299x299) nor `native`"
        )),
    }
}

fn default_weights() -> PathBuf {
    let local = PathBuf::from(DEFAULT_WEIGHTS);
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_WEIGHTS)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Classify { common, top } => run(common, Some(*top)),
        Command::Embed { common } => run(common, None),
        Command::Bench {
            sizes,
            batch,
            runs,
            backend,
            weights,
            json,
            profile,
        } => {
            let weights = weights.clone().unwrap_or_else(default_weights);
            bench_cases(sizes, *batch, *runs).and_then(|cases| {
                if *profile {
                    print_profiles(&weights, &cases)
                } else {
                    bench(&cases, backend.kind(), &weights, *json)
                }
            })
        }
        .map(|_| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every image; returns whether all of them succeeded.
fn run(common: &Common, top: Option<usize>) -> Result<bool, Error> {
    let requested = common
        .size
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(Error::Input)?;
    let weights = common.weights.clone().unwrap_or_else(default_weights);
    let model = load_model(&weights, common.backend)?;
    if top.is_some() && model.info().num_classes() == 0 {
        return Err(Error::NoHead);
    }
    let (height, width) = model.info().input_size;
    let sizing = requested.unwrap_or(Sizing::Fixed { width, height });
    let target = match sizing {
        Sizing::Fixed { width, height } => Some((width, height)),
        Sizing::Native => None,
    };

    let mut all_ok = true;
    let mut pending: Vec<(&Path, Tensor)> = Vec::new();
    for (i, path) in common.images.iter().enumerate() {
        match preprocess::load_image(path, target) {
            Ok(tensor) => pending.push((path, tensor)),
            Err(e) => {
                eprintln!("error: {e}");
                all_ok = false;
            }
        }
        // Native sizes differ from image to image, so those run one at a time.
        let full = pending.len() == BATCH || matches!(sizing, Sizing::Native);
        let last = i + 1 == common.images.len();
        if !pending.is_empty() && (full || last) {
            all_ok &= run_batch(&model, &pending, common.json, top);
            pending.clear();
        }
    }
    Ok(all_ok)
}

/// Runs images of one shape together and prints their results; returns whether it succeeded.
fn run_batch(model: &Xception, images: &[(&Path, Tensor)], json: bool, top: Option<usize>) -> bool {
    let tensors: Vec<Tensor> = images.iter().map(|(_, t)| t.clone()).collect();
    let outputs = Tensor::stack(&tensors).and_then(|batch| model.forward(&batch));
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(e) => {
            for (path, _) in images {
                eprintln!("error: {}: {e}", path.display());
            }
            return false;
        }
    };
    for (i, (path, _)) in images.iter().enumerate() {
        match top {
            Some(k) => print_classes(model, &outputs, i, path, k, json),
            None => print_embedding(&outputs, i, path, json),
        }
    }
    true
}

fn print_classes(model: &Xception, outputs: &Outputs, i: usize, path: &Path, k: usize, json: bool) {
    let predictions = match model.top_k(outputs, i, k) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return;
        }
    };
    if json {
        let top: Vec<_> = predictions
            .iter()
            .map(|p| json!({"index": p.index, "label": p.label, "probability": p.probability}))
            .collect();
        let line =
            json!({"image": path.display().to_string(), "top": top, "logits": outputs.logits(i)});
        println!("{line}");
    } else {
        let ranked: Vec<String> = predictions
            .iter()
            .map(|p| format!("{} ({:.2}%)", p.label, p.probability * 100.0))
            .collect();
        println!("{}: {}", path.display(), ranked.join(", "));
    }
}

fn print_embedding(outputs: &Outputs, i: usize, path: &Path, json: bool) {
    let embedding = outputs.embedding(i);
    if json {
        println!(
            "{}",
            json!({"image": path.display().to_string(), "embedding": embedding})
        );
    } else {
        let values: Vec<String> = embedding.iter().map(|v| format!("{v:.6}")).collect();
        println!("{}: {}", path.display(), values.join(" "));
    }
}

fn bench_cases(sizes: &[String], batch: usize, runs: usize) -> Result<Vec<BenchCase>, Error> {
    sizes
        .iter()
        .map(|text| {
            let size = match text.parse::<usize>() {
                Ok(side) => (side, side),
                Err(_) => match parse_size(text).map_err(Error::Input)? {
                    Sizing::Fixed { width, height } => (width, height),
                    Sizing::Native => {
                        return Err(Error::Input("bench needs a fixed --size".into()))
                    }
                },
            };
            Ok(BenchCase { size, batch, runs })
        })
        .collect()
}

fn bench(
    cases: &[BenchCase],
    backend: BackendKind,
    weights: &Path,
    json: bool,
) -> Result<(), Error> {
    let results = xception_wgpu::bench::run(weights, backend, cases)?;
    if !json {
        println!(
            "{:<44} {:>9} {:>5} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "backend",
            "size",
            "batch",
            "load ms",
            "setup ms",
            "first ms",
            "min ms",
            "median ms",
            "max ms",
            "img/s",
            "GFLOP/s"
        );
    }
    for r in &results {
        let (w, h) = r.case.size;
        if json {
            let line = json!({
                "adapter": r.backend, "backend": format!("{backend:?}").to_lowercase(),
                "size": [w, h], "batch": r.case.batch,
                "cold_start_ms": {"load": r.load_ms, "setup": r.setup_ms, "first_inference": r.first_ms, "total": r.cold_start_ms()},
                "latency_ms": {"min": r.min_ms(), "median": r.median_ms(), "max": r.max_ms()},
                "images_per_s": r.images_per_s(), "gflops": r.gflops(),
            });
            println!("{line}");
        } else {
            println!(
                "{:<44} {:>9} {:>5} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>8.2}",
                r.backend, format!("{w}x{h}"), r.case.batch, r.load_ms, r.setup_ms, r.first_ms,
                r.min_ms(), r.median_ms(), r.max_ms(), r.images_per_s(), r.gflops()
            );
        }
    }
    Ok(())
}

fn print_profiles(weights: &Path, cases: &[BenchCase]) -> Result<(), Error> {
    for &case in cases {
        let (backend, launches) = xception_wgpu::bench::profile(weights, case)?;
        let total: f64 = launches.iter().map(|l| l.ms).sum();
        let (w, h) = case.size;
        println!("{backend}, {w}x{h}, batch {}: {total:.1} ms of device time in {} launches (median of {} runs)", case.batch, launches.len(), case.runs);
        println!(
            "{:<22} {:<16} {:>9} {:>7} {:>9} {:>8}",
            "layer", "op", "ms", "share", "GFLOP/s", "GB/s"
        );
        for l in &launches {
            println!(
                "{:<22} {:<16} {:>9.3} {:>6.1}% {:>9.2} {:>8.2}",
                l.layer,
                l.kind.name(),
                l.ms,
                100.0 * l.ms / total,
                2.0 * l.macs as f64 / l.ms / 1e6,
                l.bytes as f64 / l.ms / 1e6
            );
        }
        println!(
            "\n{:<22} {:>9} {:>7} {:>9} {:>8} {:>9}",
            "op kind", "ms", "share", "GFLOP/s", "GB/s", "launches"
        );
        let mut kinds: Vec<OpKind> = Vec::new();
        for l in &launches {
            if !kinds.contains(&l.kind) {
                kinds.push(l.kind);
            }
        }
        for kind in kinds {
            let of_kind: Vec<_> = launches.iter().filter(|l| l.kind == kind).collect();
            let ms: f64 = of_kind.iter().map(|l| l.ms).sum();
            let macs: u64 = of_kind.iter().map(|l| l.macs).sum();
            let bytes: u64 = of_kind.iter().map(|l| l.bytes).sum();
            println!(
                "{:<22} {:>9.3} {:>6.1}% {:>9.2} {:>8.2} {:>9}",
                kind.name(),
                ms,
                100.0 * ms / total,
                2.0 * macs as f64 / ms / 1e6,
                bytes as f64 / ms / 1e6,
                of_kind.len()
            );
        }
        println!();
    }
    Ok(())
}
