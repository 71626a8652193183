//! wgpu's pipeline cache kept in a file, so that a second start can skip the driver's shader
//! compilation where the driver supports it (Vulkan's `VkPipelineCache`).

use std::path::{Path, PathBuf};

use crate::files::write_atomically;

/// Where the command line and the Python package keep compiled GPU pipelines and tuned kernel
/// choices: `$XDG_CACHE_HOME/xception-wgpu`, else `$HOME/.cache/xception-wgpu`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("xception-wgpu"))
}

/// A pipeline cache for one adapter and driver, read from and written back to a file in a
/// directory (the file is named by [`wgpu::util::pipeline_cache_key`]).
#[derive(Debug)]
pub struct PipelineCacheFile {
    cache: wgpu::PipelineCache,
    path: PathBuf,
    state: KernelCache,
}

/// Whether a GPU model's kernels come out of a pipeline cache an earlier run kept, which
/// decides whether loading compiles them (seconds on a first run) or mostly not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelCache {
    /// An earlier run's cache was found.
    Warm,
    /// A cache is kept but holds nothing yet: the kernels compile now and are kept for the
    /// next run (a first run).
    Cold,
    /// No cache is kept (none was asked for, or wgpu has none for this backend): the kernels
    /// compile at every start, unless the driver keeps its own cache.
    Off,
}

impl PipelineCacheFile {
    /// Opens the cache of `device`'s adapter in `dir`, starting empty when there is no file
    /// yet or its data belongs to another driver; `None` where the device lacks the
    /// `PIPELINE_CACHE` feature or wgpu has no cache for its backend.
    pub fn open(device: &wgpu::Device, dir: &Path) -> Option<Self> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let key = wgpu::util::pipeline_cache_key(&device.adapter_info())?;
        let path = dir.join(key);
        let data = std::fs::read(&path).ok().filter(|data| !data.is_empty());
        let state = if data.is_some() {
            KernelCache::Warm
        } else {
            KernelCache::Cold
        };
        // SAFETY: the file is only ever written by `save` from `PipelineCache::get_data` for an
        // adapter with the same cache key, and `fallback` makes wgpu discard data that fails
        // its header check (another wgpu version, driver or device) instead of using it.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("xception pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(Self { cache, path, state })
    }

    /// Whether an earlier run's data was found when the cache was opened.
    pub fn state(&self) -> KernelCache {
        self.state
    }

    /// The cache to create pipelines with.
    pub fn cache(&self) -> &wgpu::PipelineCache {
        &self.cache
    }

    /// Writes the cache's current data to its file (through a temporary file and a rename,
    /// so a concurrent reader never sees half a file).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(data) = self.cache.get_data() else {
            return Ok(());
        };
        write_atomically(&self.path, &data)
    }

    /// The file the cache is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
