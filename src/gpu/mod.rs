//! The GPU backend: WGSL kernels on wgpu, the device context, the choice of kernels, op
//! launches, the single-op harness, the parity checks and the network dispatcher.

#[cfg(not(target_arch = "wasm32"))]
pub mod check;
mod context;
#[cfg(not(target_arch = "wasm32"))]
mod harness;
mod kernels;
mod limits;
mod network;
mod ops;
pub(crate) mod options;
#[cfg(not(target_arch = "wasm32"))]
mod pipeline_cache;
mod select;
pub mod tune;

#[cfg(not(target_arch = "wasm32"))]
pub use context::quiet_device_select_layer;
pub use context::GpuContext;
#[cfg(not(target_arch = "wasm32"))]
pub use harness::{DepthwiseSpec, GpuOps};
pub use kernels::{Dispatch, Element, Kernel, Kernels};
pub use limits::largest_batch;
pub use network::{GpuModel, GpuOptions};
pub use ops::{
    activation_buffer, activation_bytes, read_activations, storage, upload, upload_activations,
    Conv, ConvGeometry, ConvWeights, DepthwiseKernel, FoldedConv, GemmWeights, WeightPrep,
};
pub use options::{activation_element, KernelChoice, Precision};
#[cfg(not(target_arch = "wasm32"))]
pub use pipeline_cache::{default_cache_dir, KernelCache, PipelineCacheFile};
pub use select::{ConvAssignment, ConvKernel, ConvShape, KernelReason};
