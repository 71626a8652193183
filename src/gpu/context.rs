//! The wgpu device the runtime works on: created here, or handed in by a host application.

#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[cfg(not(target_arch = "wasm32"))]
use super::{KernelCache, PipelineCacheFile};
use crate::error::{Error, Result};

/// A wgpu device and queue, with what is known about the adapter behind them.
#[derive(Debug, Clone)]
pub struct GpuContext {
    /// The device all buffers and pipelines live on.
    pub device: wgpu::Device,
    /// The queue forward passes are submitted to.
    pub queue: wgpu::Queue,
    /// The adapter's name, backend and type.
    pub adapter: wgpu::AdapterInfo,
    /// Set when a device created here is lost (a host's device keeps its own callback).
    lost: Arc<Mutex<Option<String>>>,
    /// Where pipelines are cached between runs, if anywhere.
    #[cfg(not(target_arch = "wasm32"))]
    pipeline_cache: Option<Arc<PipelineCacheFile>>,
    /// The directory of the pipeline cache, where tuned kernel choices are kept too.
    #[cfg(not(target_arch = "wasm32"))]
    cache_dir: Option<PathBuf>,
    /// Whether the adapter multiplies 16x16x16 float16 cooperative matrices into float32 with
    /// subgroups of exactly 32 invocations (what `conv_coopmat.wgsl` is written for).
    cooperative_matrix: bool,
}

/// Features used where the adapter has them: timestamps for `bench --profile`, subgroups for
/// the GEMM kernels, float16 arithmetic, a pipeline cache for faster second starts.
const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::PIPELINE_CACHE);

/// What to say when no adapter is found.
#[cfg(not(target_arch = "wasm32"))]
const NO_ADAPTER_HINT: &str = "install a Vulkan, Metal or DX12 driver; on Linux without a GPU, \
    Mesa's software driver: `apt-get install mesa-vulkan-drivers`";
#[cfg(target_arch = "wasm32")]
const NO_ADAPTER_HINT: &str = "this browser offers no WebGPU adapter; enable WebGPU \
    (Chrome and Edge: chrome://flags/#enable-unsafe-webgpu; Firefox: dom.webgpu.enabled)";

/// The instance descriptor: natively the backends `WGPU_BACKEND` names (all by default); in a
/// browser, its WebGPU.
fn instance_descriptor() -> wgpu::InstanceDescriptor {
    #[cfg(not(target_arch = "wasm32"))]
    let descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    #[cfg(target_arch = "wasm32")]
    let descriptor = wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    };
    descriptor
}

/// Turns off Mesa's device-selection Vulkan layer (`NODEVICE_SELECT=1`) when there is no
/// desktop session for it to look at: that layer asks Wayland which GPU drives the display,
/// and without an `XDG_RUNTIME_DIR` libwayland prints "XDG_RUNTIME_DIR is invalid or not set"
/// once per adapter enumeration. wgpu picks its adapter itself, so nothing else changes. A
/// `NODEVICE_SELECT` the user set is kept.
///
/// It sets an environment variable, so call it where nothing else can be reading the
/// environment: at the start of `main`, or while initialising an extension module.
#[cfg(not(target_arch = "wasm32"))]
pub fn quiet_device_select_layer() {
    let session = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| Path::new(&dir).is_dir());
    if !session && std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// Whether `adapter` offers what the cooperative-matrix GEMM needs: a 16x16x16 float16 x
/// float16 -> float32 configuration and subgroups of exactly 32 invocations.
fn has_cooperative_matrix(adapter: &wgpu::Adapter) -> bool {
    let info = adapter.get_info();
    let sizes_fit = info.subgroup_min_size == 32 && info.subgroup_max_size == 32;
    let f16_f32 = adapter.cooperative_matrix_properties().iter().any(|p| {
        (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    let features = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SUBGROUP
        | wgpu::Features::SHADER_F16;
    sizes_fit && f16_f32 && adapter.features().contains(features)
}

impl GpuContext {
    /// Opens the high-performance adapter with the limits it supports; blocks until it is
    /// ready (native targets; see [`GpuContext::new_async`]).
    ///
    /// Fails with [`Error::NoAdapter`] when no adapter is present (no GPU and no software
    /// driver such as Mesa's lavapipe installed).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Opens the high-performance adapter with the limits it supports (in a browser: the
    /// page's WebGPU adapter).
    pub async fn new_async() -> Result<Self> {
        let instance = wgpu::Instance::new(instance_descriptor());
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        };
        let adapter = instance
            .request_adapter(&options)
            .await
            .map_err(|e| Error::NoAdapter(format!("{e} ({NO_ADAPTER_HINT})")))?;
        Self::open(adapter).await
    }

    /// Opens the first adapter, on any backend, whose name contains `name` (ignoring case);
    /// fails, listing the adapters there are, where none does.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_adapter_named(name: &str) -> Result<Self> {
        let instance = wgpu::Instance::new(instance_descriptor());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let wanted = name.to_lowercase();
        let found = adapters
            .iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted));
        match found {
            Some(adapter) => pollster::block_on(Self::open(adapter.clone())),
            None => {
                let names: Vec<String> = adapters
                    .iter()
                    .map(|a| {
                        let info = a.get_info();
                        format!("{} ({:?})", info.name, info.backend)
                    })
                    .collect();
                Err(Error::NoAdapter(format!(
                    "no adapter's name contains {name:?}; there are: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )))
            }
        }
    }

    /// Creates the device of `adapter` with the optional features it has and its limits.
    async fn open(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let cooperative_matrix = has_cooperative_matrix(&adapter);
        let mut features = adapter.features() & OPTIONAL_FEATURES;
        if cooperative_matrix {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("xception"),
            required_features: features,
            required_limits: adapter.limits(),
            // SAFETY: the only experimental feature requested is cooperative matrices, used
            // by `conv_coopmat.wgsl` alone, in configurations the adapter reports.
            experimental_features: if cooperative_matrix {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) = adapter
            .request_device(&descriptor)
            .await
            .map_err(|e| Error::NoAdapter(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut lost) = flag.lock() {
                *lost = Some(format!("{reason:?}: {message}"));
            }
        });
        Ok(Self {
            device,
            queue,
            adapter: info,
            lost,
            #[cfg(not(target_arch = "wasm32"))]
            pipeline_cache: None,
            #[cfg(not(target_arch = "wasm32"))]
            cache_dir: None,
            cooperative_matrix,
        })
    }

    /// Every adapter wgpu can see on this machine, on any backend.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn adapters() -> Vec<wgpu::AdapterInfo> {
        let instance = wgpu::Instance::new(instance_descriptor());
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .iter()
            .map(|a| a.get_info())
            .collect()
    }

    /// Wraps a device and queue owned by the host application. The cooperative-matrix GEMM
    /// is not used on such a device (its adapter cannot be asked which configurations it has).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let adapter = device.adapter_info();
        Self {
            device,
            queue,
            adapter,
            lost: Arc::new(Mutex::new(None)),
            #[cfg(not(target_arch = "wasm32"))]
            pipeline_cache: None,
            #[cfg(not(target_arch = "wasm32"))]
            cache_dir: None,
            cooperative_matrix: false,
        }
    }

    /// Whether the cooperative-matrix GEMM can run here: the adapter reports a 16x16x16
    /// float16 -> float32 configuration, subgroups of exactly 32 invocations, and the device
    /// was created with cooperative matrices enabled.
    pub fn cooperative_matrix(&self) -> bool {
        self.cooperative_matrix
    }

    /// Keeps the compiled pipelines in a file in `dir` between runs where the driver and wgpu
    /// support it (Vulkan), and tuned kernel choices on every backend.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_pipeline_cache(mut self, dir: &Path) -> Self {
        self.pipeline_cache = PipelineCacheFile::open(&self.device, dir).map(Arc::new);
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// The directory given to [`GpuContext::with_pipeline_cache`], if any.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// Whether the kernels will come out of a cache an earlier run kept.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn kernel_cache(&self) -> KernelCache {
        self.pipeline_cache
            .as_deref()
            .map_or(KernelCache::Off, PipelineCacheFile::state)
    }

    /// The wgpu pipeline cache to create pipelines through, if one is kept.
    pub(crate) fn wgpu_pipeline_cache(&self) -> Option<&wgpu::PipelineCache> {
        #[cfg(not(target_arch = "wasm32"))]
        return self.pipeline_cache.as_deref().map(PipelineCacheFile::cache);
        #[cfg(target_arch = "wasm32")]
        None
    }

    /// Writes the pipeline cache back to its file, if one is kept. A cache that cannot be
    /// written only costs the next start its compile time, so failures are ignored.
    pub(crate) fn save_pipeline_cache(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(cache) = &self.pipeline_cache {
            let _ = cache.save();
        }
    }

    /// `name, backend` of the adapter, e.g. `llvmpipe (LLVM 15.0.6, 256 bits), Vulkan`
    /// (browsers may keep the name to themselves: `unnamed Cpu adapter, BrowserWebGpu`).
    pub fn description(&self) -> String {
        let adapter = &self.adapter;
        match adapter.name.as_str() {
            "" => format!(
                "unnamed {:?} adapter, {:?}",
                adapter.device_type, adapter.backend
            ),
            name => format!("{name}, {:?}", adapter.backend),
        }
    }

    /// Fails with [`Error::Gpu`] if the device has been lost (driver reset, GPU removed).
    pub fn check_lost(&self) -> Result<()> {
        match self.lost.lock().map(|l| l.clone()) {
            Ok(Some(why)) => Err(Error::Gpu(format!("the device was lost ({why})"))),
            _ => Ok(()),
        }
    }

    /// Runs `f`, turning validation and out-of-memory errors it raises into [`Error::Gpu`].
    pub async fn checked<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let errors = [validation.pop().await, oom.pop().await];
        match errors.into_iter().flatten().next() {
            Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
            None => Ok(value),
        }
    }

    /// Waits until all submitted work is done (in a browser, where the page's event loop
    /// drives the device, this returns at once).
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
    }

    /// Copies `size` bytes of `buffer` back to the CPU as `f32`s.
    pub async fn read_f32(&self, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(
            &self.read_bytes(buffer, size).await?,
        ))
    }

    /// Copies `size` bytes of `buffer` back to the CPU.
    pub async fn read_bytes(&self, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        self.map_bytes(&staging).await
    }

    /// Maps a `MAP_READ` buffer whose copy has been submitted and returns its contents.
    pub async fn map_f32(&self, staging: &wgpu::Buffer) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(
            &self.map_bytes(staging).await?,
        ))
    }

    /// Maps a `MAP_READ` buffer whose copy has been submitted and returns its bytes.
    pub async fn map_bytes(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = sender.send(r);
        });
        // Natively the mapping completes while the device is polled; in a browser, when the
        // page's event loop runs, which awaiting the receiver lets it do.
        self.wait()?;
        receiver
            .await
            .map_err(|_| Error::Gpu("buffer mapping was abandoned".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the output buffer: {e}")))?;
        let values = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("reading the output buffer: {e}")))?;
            view.to_vec()
        };
        staging.unmap();
        Ok(values)
    }
}
