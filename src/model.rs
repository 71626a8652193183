//! The public entry point: [`Xception`] over a CPU or GPU backend, and its [`Outputs`].

#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cpu::CpuModel;
use crate::error::{Error, Result};
use crate::explain::{self, Heatmap};
use image::DynamicImage;

use crate::gpu::tune::{TuneEvent, TuneInput};
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::KernelCache;
use crate::gpu::{ConvAssignment, GpuContext, GpuModel, GpuOptions, KernelChoice, Precision};
use crate::outputs::Outputs;
use crate::preprocess;
#[cfg(not(target_arch = "wasm32"))]
use crate::profile::LaunchTiming;
use crate::reference::ReferenceModel;
use crate::tensor::{Size, Tensor};
use crate::weights::{ModelInfo, Weights};

/// Which implementation runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// WGSL compute shaders through wgpu, on any adapter (software ones included).
    Gpu,
    /// The fast CPU backend: folded weights, GEMMs and threads.
    Cpu,
    /// The plain Rust reference implementation, the oracle of the tests.
    Reference,
    /// A hardware GPU where one is usable, else the fast CPU backend, which beats software
    /// adapters such as llvmpipe/lavapipe or SwiftShader ([`Xception::fallback`] says why).
    /// On a device the host hands in, that device, whatever its kind. Either way, inputs too
    /// large for the GPU's buffers run on the CPU backend ([`Xception::fallback_for`]).
    Auto,
}

impl BackendKind {
    /// The names the command line's `--backend` and the page's `backend` option give them.
    pub const NAMES: [(&'static str, BackendKind); 4] = [
        ("auto", BackendKind::Auto),
        ("gpu", BackendKind::Gpu),
        ("cpu", BackendKind::Cpu),
        ("reference", BackendKind::Reference),
    ];

    /// Its name in [`BackendKind::NAMES`].
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, kind)| *kind == self)
            .map(|(name, _)| *name)
            .expect("every kind is named")
    }
}

impl std::str::FromStr for BackendKind {
    type Err = Error;

    /// Parses a name of [`BackendKind::NAMES`].
    fn from_str(name: &str) -> Result<Self> {
        crate::gpu::options::from_name("backend", &Self::NAMES, name)
    }
}

/// Why a model asked for with [`BackendKind::Auto`] runs on the fast CPU backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// No GPU adapter could be opened; what wgpu said.
    NoAdapter(String),
    /// The adapter is a software rasteriser running on the CPU (llvmpipe/lavapipe,
    /// SwiftShader), slower than the CPU backend; its description.
    SoftwareAdapter(String),
    /// Only for one input size, on a model that runs on a GPU: an image of that size does not
    /// fit the GPU's buffers (what was too large, and the limit), so it runs on the CPU.
    InputTooLarge(String),
}

impl Fallback {
    /// Why [`BackendKind::Auto`] would not run on this device's adapter (the only rule:
    /// software adapters lose to the CPU backend), or `None` where it takes the GPU.
    pub fn for_adapter(context: &GpuContext) -> Option<Fallback> {
        (context.adapter.device_type == wgpu::DeviceType::Cpu)
            .then(|| Fallback::SoftwareAdapter(context.description()))
    }
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::NoAdapter(why) => write!(f, "no usable GPU adapter ({why})"),
            Fallback::SoftwareAdapter(adapter) => write!(
                f,
                "the GPU adapter, {adapter}, is a software one, slower than the CPU backend \
                 (ask for the gpu backend to use it anyway)"
            ),
            Fallback::InputTooLarge(why) => write!(f, "{why}"),
        }
    }
}

/// One ranked class.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Class index.
    pub index: usize,
    /// Class label from the weights' metadata.
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// Xception with pretrained weights, ready to run on one backend.
///
/// One model can be shared by several threads (`&Xception` is `Send + Sync`); GPU passes are
/// serialised on the device.
///
/// ```
/// use xception_wgpu::{BackendKind, Xception};
///
/// let model = Xception::builder()
///     .backend(BackendKind::Cpu) // or Gpu, the default
///     .load("weights/xception_kitchenware.safetensors")?;
/// let best = &model.classify_file("samples/cup.jpg", 1)?[0];
/// assert_eq!(best.label, "cup");
/// # Ok::<(), xception_wgpu::Error>(())
/// ```
#[derive(Debug)]
pub struct Xception {
    weights: Arc<Weights>,
    backend: Backend,
    /// Why [`BackendKind::Auto`] runs on the CPU, if it does.
    fallback: Option<Fallback>,
    /// For [`BackendKind::Auto`] on a GPU: the CPU backend for inputs too large for the GPU.
    spare_cpu: Option<SpareCpu>,
}

/// A CPU backend made on first need, for inputs the GPU of an [`BackendKind::Auto`] model
/// cannot hold.
#[derive(Debug)]
struct SpareCpu {
    threads: Option<usize>,
    model: std::sync::OnceLock<CpuModel>,
}

impl SpareCpu {
    fn get(&self, weights: &Arc<Weights>) -> Result<&CpuModel> {
        if let Some(model) = self.model.get() {
            return Ok(model);
        }
        let model = cpu_model(weights, self.threads)?;
        Ok(self.model.get_or_init(|| model))
    }
}

/// The fast CPU backend over `weights`, on a thread pool of its own if `threads` says so.
fn cpu_model(weights: &Arc<Weights>, threads: Option<usize>) -> Result<CpuModel> {
    let cpu = CpuModel::new(weights.clone());
    match threads {
        Some(threads) => cpu.with_threads(threads),
        None => Ok(cpu),
    }
}

#[derive(Debug)]
enum Backend {
    Reference(ReferenceModel),
    Cpu(CpuModel),
    Gpu(Box<GpuModel>),
}

/// Configures how an [`Xception`] is created: backend, host device, batch limit.
///
/// ```no_run
/// # fn host_device() -> (wgpu::Device, wgpu::Queue) { unimplemented!() }
/// use xception_wgpu::Xception;
///
/// // In an application that already owns a wgpu device (egui, winit, Bevy, ...):
/// let (device, queue) = host_device();
/// let model = Xception::builder()
///     .device(device, queue)
///     .max_batch(8)
///     .load("weights/xception_kitchenware.safetensors")?;
/// # Ok::<(), xception_wgpu::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct XceptionBuilder {
    backend: Option<BackendKind>,
    device: Option<(wgpu::Device, wgpu::Queue)>,
    max_batch: Option<usize>,
    cpu_threads: Option<usize>,
    precision: Precision,
    conv_kernel: KernelChoice,
    tune_input: Option<TuneInput>,
    on_tune: Option<TuneObserver>,
    #[cfg(not(target_arch = "wasm32"))]
    pipeline_cache: Option<PathBuf>,
    #[cfg(not(target_arch = "wasm32"))]
    head: Option<PathBuf>,
    #[cfg(not(target_arch = "wasm32"))]
    on_compile: Option<CompileObserver>,
}

/// What [`XceptionBuilder::on_tune`] was given.
struct TuneObserver(Box<dyn FnMut(TuneEvent) + Send>);

impl std::fmt::Debug for TuneObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TuneObserver")
    }
}

/// What [`XceptionBuilder::on_compile`] was given.
#[cfg(not(target_arch = "wasm32"))]
struct CompileObserver(Box<dyn FnOnce(KernelCache) + Send>);

#[cfg(not(target_arch = "wasm32"))]
impl std::fmt::Debug for CompileObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompileObserver")
    }
}

impl XceptionBuilder {
    /// Chooses the backend (GPU by default).
    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Runs on a device and queue the host application owns; implies the GPU backend (call
    /// [`XceptionBuilder::backend`] with [`BackendKind::Auto`] after this to run inputs too
    /// large for the device on the CPU instead).
    pub fn device(mut self, device: wgpu::Device, queue: wgpu::Queue) -> Self {
        self.device = Some((device, queue));
        self.backend = Some(BackendKind::Gpu);
        self
    }

    /// Stores the GPU's convolution weights at `precision` (float32 by default; float16 halves
    /// their memory and loads, and the GPU kernels that can also multiply in float16, at a
    /// measured cost in accuracy: see `docs/cli.md`).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Chooses the GPU's convolution kernels ([`KernelChoice::Auto`] by default: the best this
    /// adapter offers). Loading fails, naming the adapter, where it cannot run the one asked
    /// for.
    pub fn conv_kernel(mut self, choice: KernelChoice) -> Self {
        self.conv_kernel = choice;
        self
    }

    /// The input [`KernelChoice::Tuned`] measures each convolution at: `batch` images of
    /// `size` [default: the weights' input size, one image]. Other sizes run on the same
    /// choices.
    pub fn tune_for(mut self, size: Size, batch: usize) -> Self {
        self.tune_input = Some(TuneInput::of(size, batch.max(1)));
        self
    }

    /// Calls `observer` with what [`KernelChoice::Tuned`] does while the model loads: the
    /// shapes it is about to time (seconds, on a first run), each measurement, choices read
    /// from the kernel cache, and warnings (a corrupt or stale cache, a variant failing its
    /// parity check), which never stop the load.
    pub fn on_tune(mut self, observer: impl FnMut(TuneEvent) + Send + 'static) -> Self {
        self.on_tune = Some(TuneObserver(Box::new(observer)));
        self
    }

    /// Runs at most `images` images per GPU pass, splitting larger batches (bounds memory).
    pub fn max_batch(mut self, images: usize) -> Self {
        self.max_batch = Some(images);
        self
    }

    /// Runs the CPU backend on a thread pool of its own with `threads` threads (by default it
    /// shares rayon's global pool, one thread per core).
    pub fn cpu_threads(mut self, threads: usize) -> Self {
        self.cpu_threads = Some(threads);
        self
    }

    /// Parses safetensors weights held in memory and creates the model without blocking
    /// (what a browser calls; natively [`XceptionBuilder::load_bytes`] does the same).
    pub async fn load_bytes_async(self, bytes: &[u8]) -> Result<Xception> {
        let weights = Weights::from_bytes(bytes, "weights in memory")?;
        self.build_async(weights).await
    }

    /// Creates the model over already loaded weights (shared with the caller when given as an
    /// `Arc`) without blocking.
    pub async fn build_async(mut self, weights: impl Into<Arc<Weights>>) -> Result<Xception> {
        let weights = weights.into();
        let host_device = self.device.is_some();
        let (backend, fallback) = match self.backend.unwrap_or(BackendKind::Gpu) {
            BackendKind::Reference => (
                Backend::Reference(ReferenceModel::new(weights.clone())),
                None,
            ),
            BackendKind::Cpu => (self.cpu_backend(&weights)?, None),
            BackendKind::Gpu => {
                let context = self.gpu_context().await?;
                (self.gpu_backend(context, &weights).await?, None)
            }
            BackendKind::Auto => match self.gpu_context().await {
                Ok(context) => match Fallback::for_adapter(&context).filter(|_| !host_device) {
                    Some(why) => (self.cpu_backend(&weights)?, Some(why)),
                    None => (self.gpu_backend(context, &weights).await?, None),
                },
                Err(Error::NoAdapter(why)) => {
                    (self.cpu_backend(&weights)?, Some(Fallback::NoAdapter(why)))
                }
                Err(other) => return Err(other),
            },
        };
        let spare_cpu = (self.backend == Some(BackendKind::Auto)
            && matches!(backend, Backend::Gpu(_)))
        .then(|| SpareCpu {
            threads: self.cpu_threads,
            model: std::sync::OnceLock::new(),
        });
        Ok(Xception {
            weights,
            backend,
            fallback,
            spare_cpu,
        })
    }

    /// The fast CPU backend, on its own thread pool if one was asked for.
    fn cpu_backend(&self, weights: &Arc<Weights>) -> Result<Backend> {
        cpu_model(weights, self.cpu_threads).map(Backend::Cpu)
    }

    /// The GPU device: the host's if one was given, else one opened here.
    async fn gpu_context(&mut self) -> Result<GpuContext> {
        match self.device.take() {
            Some((device, queue)) => Ok(GpuContext::from_device(device, queue)),
            None => GpuContext::new_async().await,
        }
    }

    /// The GPU backend on `context`.
    async fn gpu_backend(
        &mut self,
        context: GpuContext,
        weights: &Arc<Weights>,
    ) -> Result<Backend> {
        #[allow(unused_mut)]
        let mut context = context;
        #[cfg(not(target_arch = "wasm32"))]
        {
            if let Some(dir) = &self.pipeline_cache {
                context = context.with_pipeline_cache(dir);
            }
            if let Some(CompileObserver(observer)) = self.on_compile.take() {
                observer(context.kernel_cache());
            }
        }
        let options = GpuOptions {
            precision: self.precision,
            kernel: self.conv_kernel,
            tune_input: self.tune_input,
        };
        let mut observer = self.on_tune.take();
        let mut tell = |event| {
            if let Some(TuneObserver(observer)) = observer.as_mut() {
                observer(event);
            }
        };
        let mut gpu = GpuModel::load_async(context, weights.clone(), options, &mut tell).await?;
        if let Some(limit) = self.max_batch {
            gpu = gpu.with_batch_limit(limit);
        }
        Ok(Backend::Gpu(Box::new(gpu)))
    }
}

/// The blocking API of native targets: thin wrappers over the async core.
#[cfg(not(target_arch = "wasm32"))]
impl XceptionBuilder {
    /// Keeps the GPU's compiled pipelines in a file in `dir` between runs, where the driver and
    /// wgpu support it (Vulkan), so a second start compiles less. Off by default.
    pub fn pipeline_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pipeline_cache = Some(dir.into());
        self
    }

    /// Calls `observer` once, just before a GPU model compiles its kernels (while it loads),
    /// with whether they come out of the pipeline cache: where they do not, loading takes
    /// seconds, which a command-line tool may want to explain. Not called on the CPU backends.
    pub fn on_compile(mut self, observer: impl FnOnce(KernelCache) + Send + 'static) -> Self {
        self.on_compile = Some(CompileObserver(Box::new(observer)));
        self
    }

    /// Uses the head in a head-only file written by `xception fit` (see
    /// [`Weights::with_head`]) instead of the weights' own head.
    pub fn head(mut self, path: impl Into<PathBuf>) -> Self {
        self.head = Some(path.into());
        self
    }

    /// Loads a safetensors weights file and creates the model.
    pub fn load(self, path: impl AsRef<Path>) -> Result<Xception> {
        self.build(Weights::load(path)?)
    }

    /// Parses safetensors weights held in memory and creates the model.
    pub fn load_bytes(self, bytes: &[u8]) -> Result<Xception> {
        self.build(Weights::from_bytes(bytes, "weights in memory")?)
    }

    /// Creates the model over already loaded weights (shared with the caller when given as an
    /// `Arc`).
    pub fn build(mut self, weights: impl Into<Arc<Weights>>) -> Result<Xception> {
        let weights = match self.head.take() {
            Some(head) => Arc::new(Arc::unwrap_or_clone(weights.into()).with_head(head)?),
            None => weights.into(),
        };
        pollster::block_on(self.build_async(weights))
    }
}

impl Xception {
    /// Starts configuring a model; see [`XceptionBuilder`].
    pub fn builder() -> XceptionBuilder {
        XceptionBuilder::default()
    }

    /// Preprocesses a decoded image for this model: RGB, resized to the model's input size,
    /// `x / 127.5 - 1`.
    pub fn prepare(&self, image: &DynamicImage) -> Result<Tensor> {
        let info = &self.weights.info;
        preprocess::from_image(image, Some(info.input_size), info.resize)
    }

    /// The `k` most probable classes of each image, best first, without blocking.
    pub async fn classify_async(
        &self,
        images: &[DynamicImage],
        k: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        if self.weights.info.num_classes() == 0 {
            return Err(Error::NoHead);
        }
        let outputs = self.forward_images(images).await?;
        (0..images.len())
            .map(|i| self.top_k(&outputs, i, k))
            .collect()
    }

    /// The 2048-d global-average-pooled embedding of each image, without blocking.
    pub async fn embed_async(&self, images: &[DynamicImage]) -> Result<Vec<Vec<f32>>> {
        let outputs = self.forward_images(images).await?;
        Ok((0..images.len())
            .map(|i| outputs.embedding(i).to_vec())
            .collect())
    }

    async fn forward_images(&self, images: &[DynamicImage]) -> Result<Outputs> {
        let tensors = images
            .iter()
            .map(|image| self.prepare(image))
            .collect::<Result<Vec<_>>>()?;
        self.forward_async(&Tensor::stack(&tensors)?).await
    }

    /// Why a model asked for with [`BackendKind::Auto`] runs on the CPU (no GPU adapter and
    /// what wgpu said, or only a software one); `None` when it runs where it was asked to.
    pub fn fallback(&self) -> Option<&Fallback> {
        self.fallback.as_ref()
    }

    /// Why images of `size` run on the CPU rather than where the model was asked to run:
    /// [`Xception::fallback`], or, on a [`BackendKind::Auto`] model running on a GPU,
    /// [`Fallback::InputTooLarge`] where one image of that size does not fit the GPU's
    /// buffers; `None` when they run on the model's backend (or fail there).
    pub fn fallback_for(&self, size: Size) -> Option<Fallback> {
        if let Some(fallback) = &self.fallback {
            return Some(fallback.clone());
        }
        match (&self.backend, &self.spare_cpu) {
            (Backend::Gpu(gpu), Some(_)) => gpu
                .too_large(size.height, size.width)
                .map(Fallback::InputTooLarge),
            _ => None,
        }
    }

    /// What the weights file says about the model (input size, labels, head).
    pub fn info(&self) -> &ModelInfo {
        &self.weights.info
    }

    /// The weights the model runs.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Values of one image's embedding: 2048 for every named member of the family.
    pub fn embedding_dim(&self) -> usize {
        self.weights.graph().embedding_dim()
    }

    /// The backend the model runs on: never [`BackendKind::Auto`], which resolves to one of
    /// the others at load.
    pub fn backend_kind(&self) -> BackendKind {
        match &self.backend {
            Backend::Reference(_) => BackendKind::Reference,
            Backend::Cpu(_) => BackendKind::Cpu,
            Backend::Gpu(_) => BackendKind::Gpu,
        }
    }

    /// The threads of the fast CPU backend (`None` on the others).
    pub fn cpu_threads(&self) -> Option<usize> {
        match &self.backend {
            Backend::Cpu(cpu) => Some(cpu.threads()),
            _ => None,
        }
    }

    /// A one-line description of the backend, e.g. `gpu (llvmpipe, Vulkan)` or
    /// `cpu (2 threads, AVX-512)`.
    pub fn backend_description(&self) -> String {
        match &self.backend {
            Backend::Reference(_) => "reference (cpu)".to_string(),
            Backend::Cpu(cpu) => {
                format!("cpu ({} threads, {})", cpu.threads(), cpu.isa().name())
            }
            Backend::Gpu(gpu) => format!("gpu ({})", gpu.context().description()),
        }
    }

    /// On the fast CPU backend, the most its threads can do in GFLOP/s: one core's measured
    /// fused multiply-add peak with its GEMM kernels' instructions, times its threads (about
    /// 15 ms to measure). `None` on the other backends.
    pub fn cpu_fma_peak_gflops(&self) -> Option<f64> {
        match &self.backend {
            Backend::Cpu(cpu) => {
                Some(crate::cpu::peak::fma_peak_gflops(cpu.isa()) * cpu.threads() as f64)
            }
            Backend::Reference(_) | Backend::Gpu(_) => None,
        }
    }

    /// The kernel variant each convolution runs on (empty on the CPU backends).
    pub fn conv_kernels(&self) -> Vec<ConvAssignment> {
        match &self.backend {
            Backend::Reference(_) | Backend::Cpu(_) => Vec::new(),
            Backend::Gpu(gpu) => gpu.assignments(),
        }
    }

    /// The distinct convolution kernels this model runs (depthwise included), joined with
    /// `+`, most used first, e.g. `conv_tiled+depthwise_conv_tiled` (empty on the CPU).
    pub fn conv_kernel_summary(&self) -> String {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for assignment in self.conv_kernels() {
            let depthwise = assignment.depthwise.map(|d| d.name());
            for name in std::iter::once(assignment.kernel.name()).chain(depthwise) {
                match counts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => *count += 1,
                    None => counts.push((name, 1)),
                }
            }
        }
        counts.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        let names: Vec<&str> = counts.into_iter().map(|(name, _)| name).collect();
        names.join("+")
    }

    /// Runs the network on an NHWC batch of preprocessed images (`x / 127.5 - 1`, RGB)
    /// without blocking.
    pub async fn forward_async(&self, input: &Tensor) -> Result<Outputs> {
        self.check_input(input)?;
        match &self.backend {
            Backend::Reference(reference) => reference.forward(input),
            Backend::Cpu(cpu) => cpu.forward(input),
            Backend::Gpu(gpu) => match gpu.forward_async(input).await {
                Err(error) => self.cpu_instead(gpu, input, error)?.forward(input),
                done => done,
            },
        }
    }

    /// Runs the network like [`Xception::forward_async`] and also returns the last feature
    /// map (`block14_sepconv2_act`, NHWC: what the global average pool reads).
    pub async fn forward_features_async(&self, input: &Tensor) -> Result<(Outputs, Tensor)> {
        self.check_input(input)?;
        match &self.backend {
            Backend::Reference(reference) => reference.forward_features(input),
            Backend::Cpu(cpu) => cpu.forward_features(input),
            Backend::Gpu(gpu) => match gpu.forward_features_async(input).await {
                Err(error) => self.cpu_instead(gpu, input, error)?.forward_features(input),
                done => done,
            },
        }
    }

    /// After `gpu` failed on `input` with `error`: the CPU backend to run it instead, on a
    /// [`BackendKind::Auto`] model whose GPU cannot hold one image of its size (the GPU
    /// refuses such an input before any work); else `error`. Inputs that fit cost nothing
    /// here.
    fn cpu_instead(&self, gpu: &GpuModel, input: &Tensor, error: Error) -> Result<&CpuModel> {
        match &self.spare_cpu {
            Some(spare)
                if gpu
                    .too_large(input.shape.height, input.shape.width)
                    .is_some() =>
            {
                spare.get(&self.weights)
            }
            _ => Err(error),
        }
    }

    /// Grad-CAM heatmaps (see [`explain`]) of an NHWC batch of preprocessed images for
    /// `class`, or each image's most probable class where `None`, without blocking.
    pub async fn grad_cam_async(
        &self,
        input: &Tensor,
        class: Option<usize>,
    ) -> Result<Vec<Heatmap>> {
        if self.weights.info.num_classes() == 0 {
            return Err(Error::NoHead);
        }
        let (outputs, features) = self.forward_features_async(input).await?;
        let classes = (0..outputs.batch)
            .map(|i| match class {
                Some(class) => Ok(class),
                None => Ok(self.top_k(&outputs, i, 1)?[0].index),
            })
            .collect::<Result<Vec<_>>>()?;
        explain::grad_cam(&self.weights, &features, &outputs.embeddings, &classes)
    }

    /// The Grad-CAM heatmap of a decoded image for `class` (its most probable class where
    /// `None`), without blocking; [`Heatmap::overlay`] draws it over the photo.
    pub async fn explain_async(
        &self,
        image: &DynamicImage,
        class: Option<usize>,
    ) -> Result<Heatmap> {
        let input = self.prepare(image)?;
        Ok(self.grad_cam_async(&input, class).await?.remove(0))
    }

    fn check_input(&self, input: &Tensor) -> Result<()> {
        if input.shape.channels != crate::graph::INPUT_CHANNELS {
            return Err(Error::Input(format!(
                "input has {} channels; Xception takes RGB (3)",
                input.shape.channels
            )));
        }
        Ok(())
    }

    /// The `k` most probable classes of image `i` of `outputs`, best first.
    pub fn top_k(&self, outputs: &Outputs, i: usize, k: usize) -> Result<Vec<Prediction>> {
        if outputs.num_classes == 0 {
            return Err(Error::NoHead);
        }
        let probs = outputs.probabilities(i);
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        Ok(order
            .into_iter()
            .take(k)
            .map(|index| Prediction {
                index,
                label: self.weights.info.labels[index].clone(),
                probability: probs[index],
            })
            .collect())
    }
}

/// The blocking API of native targets: thin wrappers over the async core.
#[cfg(not(target_arch = "wasm32"))]
impl Xception {
    /// Loads weights from a safetensors file and prepares `backend` (creating a GPU device if needed).
    pub fn load(path: impl AsRef<Path>, backend: BackendKind) -> Result<Self> {
        Self::new(Weights::load(path)?, backend)
    }

    /// Prepares `backend` over already loaded weights.
    pub fn new(weights: Weights, backend: BackendKind) -> Result<Self> {
        Self::builder().backend(backend).build(weights)
    }

    /// Runs on a device and queue owned by the host application (no second device is created).
    pub fn with_device(weights: Weights, device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        Self::builder().device(device, queue).build(weights)
    }

    /// Decodes an image file (PNG or JPEG) and returns its `k` most probable classes.
    pub fn classify_file(&self, path: impl AsRef<Path>, k: usize) -> Result<Vec<Prediction>> {
        let image = DynamicImage::ImageRgb8(preprocess::decode(path)?);
        Ok(self.classify(std::slice::from_ref(&image), k)?.remove(0))
    }

    /// Decodes an image file (PNG or JPEG) and returns its embedding.
    pub fn embed_file(&self, path: impl AsRef<Path>) -> Result<Vec<f32>> {
        let image = DynamicImage::ImageRgb8(preprocess::decode(path)?);
        Ok(self.embed(std::slice::from_ref(&image))?.remove(0))
    }

    /// CPU milliseconds to record and submit one warm forward pass of `input` on the GPU
    /// (`None` on the CPU backends, or when the batch needs more than one pass).
    pub(crate) fn submit_ms(&self, input: &Tensor) -> Result<Option<f64>> {
        match &self.backend {
            Backend::Reference(_) | Backend::Cpu(_) => Ok(None),
            Backend::Gpu(gpu) => gpu.submit_ms(input),
        }
    }

    /// The time of every step of one forward pass: device time of each kernel launch on the
    /// GPU (with timestamp queries), wall time of each kernel on the fast CPU backend.
    pub fn profile(&self, input: &Tensor) -> Result<Vec<LaunchTiming>> {
        self.check_input(input)?;
        match &self.backend {
            Backend::Reference(_) => Err(Error::Input(
                "the reference backend is not profiled; use the cpu or gpu backend".into(),
            )),
            Backend::Cpu(cpu) => cpu.profile(input),
            Backend::Gpu(gpu) => gpu.profile(input),
        }
    }

    /// The `k` most probable classes of each image, best first.
    pub fn classify(&self, images: &[DynamicImage], k: usize) -> Result<Vec<Vec<Prediction>>> {
        pollster::block_on(self.classify_async(images, k))
    }

    /// The 2048-d global-average-pooled embedding of each image.
    pub fn embed(&self, images: &[DynamicImage]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.embed_async(images))
    }

    /// Runs the network on an NHWC batch of preprocessed images (`x / 127.5 - 1`, RGB).
    pub fn forward(&self, input: &Tensor) -> Result<Outputs> {
        pollster::block_on(self.forward_async(input))
    }

    /// Runs the network and also returns the last feature map; see
    /// [`Xception::forward_features_async`].
    pub fn forward_features(&self, input: &Tensor) -> Result<(Outputs, Tensor)> {
        pollster::block_on(self.forward_features_async(input))
    }

    /// Grad-CAM heatmaps of an NHWC batch; see [`Xception::grad_cam_async`].
    pub fn grad_cam(&self, input: &Tensor, class: Option<usize>) -> Result<Vec<Heatmap>> {
        pollster::block_on(self.grad_cam_async(input, class))
    }

    /// The Grad-CAM heatmap of a decoded image for `class` (its most probable class where
    /// `None`); [`Heatmap::overlay`] draws it over the photo.
    pub fn explain(&self, image: &DynamicImage, class: Option<usize>) -> Result<Heatmap> {
        pollster::block_on(self.explain_async(image, class))
    }
}
