//! The GPU backend: WGSL kernels on wgpu, the device context, single-op launches and the
//! network dispatcher.

mod context;
mod kernels;
mod network;
mod ops;
mod pipeline_cache;

pub use context::GpuContext;
pub use kernels::{Dispatch, Kernel, Kernels};
pub use network::{GpuModel, LaunchTiming, OpKind};
pub use ops::{
    padded_channels, storage, upload, FoldedConv, GemmWeights, GpuOps, Precision, WeightPrep,
};
pub use pipeline_cache::PipelineCacheFile;
