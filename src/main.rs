//! `xception`: classify images or extract embeddings with Xception on the GPU (or the CPU).

/// `println!` through [`cli::stdout::Stdout`]: printing stops quietly once the reader of
/// standard output has gone.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($crate::cli::stdout::Stdout, $($arg)*);
    }};
}

/// `print!` through [`cli::stdout::Stdout`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!($crate::cli::stdout::Stdout, $($arg)*);
    }};
}

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use xception_wgpu::gpu::tune::TuneEvent;
use xception_wgpu::gpu::{default_cache_dir, KernelCache};
use xception_wgpu::{
    BackendKind, Error, Fallback, KernelChoice, Precision, Size, Weights, Xception, XceptionBuilder,
};

/// Weights used when `--weights` is not given: the kitchenware model in the repository.
const DEFAULT_WEIGHTS: &str = "weights/xception_kitchenware.safetensors";

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
    /// Images are files, folders (searched recursively for .png/.jpg/.jpeg) or `-` for a list
    /// of paths on standard input.
    ///
    /// Example: xception classify --top 3 samples/cup.jpg samples/fork.jpg
    Classify {
        #[command(flatten)]
        common: Common,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Images per forward pass (at a fixed size; native sizes run one at a time).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        batch: u16,
    },
    /// Print the 2048-d global-average-pooled embedding of each image.
    ///
    /// Images are files, folders (searched recursively for .png/.jpg/.jpeg) or `-` for a list
    /// of paths on standard input.
    ///
    /// Example: xception embed --output embeddings.npy photos/
    Embed {
        #[command(flatten)]
        common: Common,
        /// Also write the embeddings of the images that succeeded, in input order, to FILE:
        /// `.npy` (a float32 [N, 2048] array) or `.safetensors` (tensor `embeddings`, with the
        /// image paths in the metadata).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Images per forward pass (at a fixed size; native sizes run one at a time).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        batch: u16,
    },
    /// Show where the network found its evidence: a Grad-CAM heatmap per image over the
    /// photo.
    ///
    /// Writes `DIR/<name>.gradcam.png` per image (the photo with the heatmap of the last
    /// convolutional feature map blended over it) and prints the class explained; `--json`
    /// prints the raw heatmap at the feature map's resolution.
    ///
    /// Example: xception explain --class fork --output heatmaps samples/fork.jpg
    Explain {
        #[command(flatten)]
        common: Common,
        /// The class to explain, by label or index [default: each image's most probable].
        #[arg(long, value_name = "LABEL|INDEX")]
        class: Option<String>,
        /// Folder the overlays are written to (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        output: PathBuf,
    },
    /// Teach the model your own classes: fit a new head on a folder of labelled photos.
    ///
    /// DIR holds one subfolder per class, named by its label, with the images directly
    /// inside. Every image is embedded once; the head (softmax regression, or with --hidden
    /// 100 the bundled model's Dense-ReLU-Dense) is fitted with L2 regularisation; training
    /// and validation accuracy and a confusion matrix are printed, and the head alone is
    /// written (use it with `classify --head`).
    ///
    /// Example: xception fit photos/ --output head.safetensors
    Fit(cli::fit::FitArgs),
    /// Measure a model on a folder of labelled photos (laid out as for `fit`): accuracy,
    /// per-class precision and recall, and the confusion matrix.
    ///
    /// Example: xception evaluate photos/ --head head.safetensors
    Evaluate(cli::fit::EvaluateArgs),
    /// Time cold start and warm forward passes on a synthetic input and print a table.
    ///
    /// Example: xception bench --size 150 --size 299 --runs 10
    Bench(cli::bench::BenchArgs),
    /// Test every GPU kernel variant of this adapter, float32 and float16, against the
    /// reference on random cases, then the whole network on the bundled photos; exit 1 on any
    /// mismatch.
    ///
    /// `--json` prints one report (adapter, driver, features, limits, results and timings) to
    /// attach to a bug report.
    ///
    /// Example: xception check --json > check.json
    Check(cli::check::CheckArgs),
    /// Show the GPU adapters found, the one chosen, its features and limits, and the weights'
    /// metadata.
    ///
    /// Example: xception info --weights weights/xception_kitchenware.safetensors
    Info {
        /// Weights file [default: the bundled kitchenware model].
        #[arg(long)]
        weights: Option<PathBuf>,
        #[command(flatten)]
        compute: ComputeArgs,
    },
    /// Print the layer table (name, op, output shape, parameters, multiply-adds) with totals.
    ///
    /// Example: xception summary --size 299x299
    Summary {
        /// Input size WxH [default: the model's].
        #[arg(long)]
        size: Option<String>,
        /// Weights file [default: the bundled kitchenware model].
        #[arg(long)]
        weights: Option<PathBuf>,
    },
}

/// Options shared by `classify`, `embed` and `explain`.
#[derive(Args)]
pub struct Common {
    /// Image files (PNG or JPEG, any colour type), folders, or `-` for paths on standard input.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Print one JSON object per image and line (the same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// How results are printed: `text`, `json` (one object per image and line) or `csv` (a
    /// header, then rows, quoted where needed) [default: text].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Input size: WxH, or `native` to run each image at its own size [default: the model's].
    #[arg(long)]
    size: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
}

impl Common {
    /// The output format: `--json` or `--format`.
    fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format.unwrap_or(Format::Text)
        }
    }
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per image (the default).
    Text,
    /// One JSON object per image and line.
    Json,
    /// A header, then rows, quoted where needed.
    Csv,
}

/// The model a command runs: weights, head, backend and GPU settings.
#[derive(Args)]
pub struct ModelArgs {
    /// Weights file (safetensors, float16 or float32) [default: the bundled kitchenware model].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// A head file written by `fit`, used instead of the weights' own head.
    #[arg(long, value_name = "FILE")]
    head: Option<PathBuf>,
    /// Where the network runs; `auto` uses a hardware GPU, else the fast CPU backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    #[command(flatten)]
    compute: ComputeArgs,
}

impl ModelArgs {
    /// Loads the model; `auto` falls back to the CPU when no GPU adapter is usable.
    fn load(&self) -> Result<Xception, Error> {
        let weights = weights_path(self.weights.as_deref());
        load_model(&weights, self.head.as_deref(), self.backend, self.compute)
    }
}

/// How the backend computes: the GPU's precision and convolution kernels, the CPU's threads.
#[derive(Args, Clone, Copy)]
pub struct ComputeArgs {
    /// Precision of the GPU's convolution weights; f16 halves their memory and loads, and the
    /// tiled and cooperative-matrix kernels then multiply in float16 too.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// The GPU's convolution kernels: `auto` picks by a rule for this kind of adapter, `tuned`
    /// by measuring each convolution on it (once, then kept in the cache); the others fail
    /// where the adapter cannot run them.
    #[arg(long, value_enum, default_value_t = KernelArg::Auto)]
    kernel: KernelArg,
    /// Threads of the CPU backend [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

impl ComputeArgs {
    /// A model builder on `backend` with these settings and the CLI's pipeline cache.
    fn builder(self, backend: BackendKind) -> XceptionBuilder {
        let mut builder = Xception::builder()
            .backend(backend)
            .precision(self.precision.precision())
            .conv_kernel(self.kernel.choice());
        if let Some(threads) = self.threads {
            builder = builder.cpu_threads(threads.into());
        }
        if let Some(dir) = default_cache_dir() {
            builder = builder.pipeline_cache(dir);
        }
        let tuned = matches!(self.kernel, KernelArg::Tuned);
        builder
            .on_compile(move |cache| match (cache, tuned) {
                (KernelCache::Cold, true) => eprintln!("compiling GPU kernels (first run only)…"),
                (KernelCache::Cold, false) => eprintln!(
                    "compiling GPU kernels (first run only; chosen by rule for this adapter, \
                     --kernel tuned measures them)…"
                ),
                _ => {}
            })
            .on_tune(|event| report_tuning(&event, false))
    }
}

/// Tells the user what tuning does on standard error: that it is timing (on a first run), each
/// measurement where `measurements`, and every warning.
pub fn report_tuning(event: &TuneEvent, measurements: bool) {
    match event {
        TuneEvent::Timing { shapes } => eprintln!(
            "tuning GPU kernels: timing every kernel on {shapes} convolution shapes (first run \
             only)…"
        ),
        TuneEvent::Measured(timing) if measurements => {
            let times: Vec<String> = timing
                .times
                .iter()
                .map(|(kernel, ms)| format!("{kernel} {ms:.3}"))
                .collect();
            eprintln!("  {}: {} ms", timing.shape, times.join(", "));
        }
        TuneEvent::Measured(_) | TuneEvent::Stored { .. } => {}
        TuneEvent::Warning(why) => eprintln!("warning: {why}"),
    }
}

/// Precision of the GPU's convolution weights.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PrecisionArg {
    /// float32 (the default).
    F32,
    /// float16 weights; float16 products in the kernels that have them; float32 sums.
    F16,
}

/// The GPU's convolution kernels.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KernelArg {
    /// The best the adapter offers.
    Auto,
    /// Register-tiled pointwise kernel and direct convolution (any adapter).
    Portable,
    /// Subgroup-broadcast implicit GEMM (CPU drivers with subgroups of 8 or more).
    Subgroup,
    /// Workgroup-tiled implicit GEMM (GPUs).
    Tiled,
    /// Cooperative-matrix (tensor-core) implicit GEMM, float16 only.
    Coopmat,
    /// Per convolution shape, the variant measured fastest on this adapter (timed on the first
    /// run, then read from the cache).
    Tuned,
}

impl KernelArg {
    fn choice(self) -> KernelChoice {
        match self {
            KernelArg::Auto => KernelChoice::Auto,
            KernelArg::Portable => KernelChoice::Portable,
            KernelArg::Subgroup => KernelChoice::Subgroup,
            KernelArg::Tiled => KernelChoice::Tiled,
            KernelArg::Coopmat => KernelChoice::Coopmat,
            KernelArg::Tuned => KernelChoice::Tuned,
        }
    }
}

impl PrecisionArg {
    /// The library's precision.
    pub fn precision(self) -> Precision {
        match self {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
        }
    }
}

/// Where the network runs.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// A hardware GPU if there is one, else the fast CPU backend (which beats software GPU
    /// adapters; with a warning when there is no adapter at all).
    Auto,
    /// WGSL compute shaders through wgpu, on any adapter (software ones included).
    Gpu,
    /// The fast CPU backend: GEMMs and threads.
    Cpu,
    /// The plain Rust reference implementation, the oracle of the tests.
    Reference,
}

impl Backend {
    fn kind(self) -> BackendKind {
        match self {
            Backend::Auto => BackendKind::Auto,
            Backend::Gpu => BackendKind::Gpu,
            Backend::Cpu => BackendKind::Cpu,
            Backend::Reference => BackendKind::Reference,
        }
    }
}

/// Loads the model (with the head in `head`, if given) on `backend`; `auto` falls back to the
/// CPU when no GPU adapter is usable.
fn load_model(
    weights: &Path,
    head: Option<&Path>,
    backend: Backend,
    compute: ComputeArgs,
) -> Result<Xception, Error> {
    let mut weights = Weights::load(weights)?;
    if let Some(head) = head {
        weights = weights.with_head(head)?;
    }
    let model = compute.builder(backend.kind()).build(weights)?;
    if let Some(why @ Fallback::NoAdapter(_)) = model.fallback() {
        eprintln!("warning: {why}; running on the CPU");
    }
    let on_cpu = matches!(backend.kind(), BackendKind::Cpu | BackendKind::Reference)
        || model.fallback().is_some();
    if on_cpu && matches!(compute.precision, PrecisionArg::F16) {
        eprintln!("warning: --precision f16 applies to the GPU; the CPU computes in float32");
    }
    Ok(model)
}

/// How images are sized before they enter the network.
#[derive(Clone, Copy)]
pub enum Sizing {
    /// Resized to `width` x `height`.
    Fixed(Size),
    /// Each image at its own size.
    Native,
}

/// `--size`, the same on every command: `native`, or a size as [`Size`] parses it (`N` or
/// `WxH`, at least 71x71, within the activation limit).
fn parse_size(text: &str) -> Result<Sizing, Error> {
    if text == "native" {
        return Ok(Sizing::Native);
    }
    text.parse().map(Sizing::Fixed).map_err(|e| match e {
        Error::Argument(problem) => Error::Argument(format!("--{problem}")),
        other => other,
    })
}

fn weights_path(given: Option<&Path>) -> PathBuf {
    if let Some(path) = given {
        return path.to_path_buf();
    }
    let local = PathBuf::from(DEFAULT_WEIGHTS);
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_WEIGHTS)
    }
}

fn main() -> ExitCode {
    xception_wgpu::gpu::quiet_device_select_layer();
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Classify { common, top, batch } => {
            cli::run::images(common, cli::run::Task::Classify(*top), (*batch).into())
        }
        Command::Embed {
            common,
            output,
            batch,
        } => cli::run::images(
            common,
            cli::run::Task::Embed(output.as_deref()),
            (*batch).into(),
        ),
        Command::Explain {
            common,
            class,
            output,
        } => cli::explain::images(common, class.as_deref(), output),
        Command::Fit(args) => cli::fit::fit(args),
        Command::Evaluate(args) => cli::fit::evaluate(args),
        Command::Bench(args) => cli::bench::run(args).map(|_| true),
        Command::Check(args) => cli::check::run(args),
        Command::Info { weights, compute } => {
            cli::info::info(&weights_path(weights.as_deref()), *compute).map(|_| true)
        }
        Command::Summary { size, weights } => {
            cli::info::summary(&weights_path(weights.as_deref()), size.as_deref()).map(|_| true)
        }
    };
    match outcome {
        Ok(_) if cli::stdout::failed() => ExitCode::FAILURE,
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                // Usage errors exit 2, as clap's own do.
                Error::Argument(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line spells kernels and precisions as the library's names do.
    #[test]
    fn option_values_are_the_library_names() {
        for arg in KernelArg::value_variants() {
            let name = arg.to_possible_value().unwrap();
            assert_eq!(
                name.get_name().parse::<KernelChoice>().unwrap(),
                arg.choice()
            );
        }
        for arg in PrecisionArg::value_variants() {
            let name = arg.to_possible_value().unwrap();
            assert_eq!(
                name.get_name().parse::<Precision>().unwrap(),
                arg.precision()
            );
        }
    }
}
