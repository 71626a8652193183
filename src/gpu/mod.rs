//! The GPU backend: WGSL kernels on wgpu, the device context, op launches, the single-op
//! harness and the network dispatcher.

mod context;
#[cfg(not(target_arch = "wasm32"))]
mod harness;
mod kernels;
mod network;
mod ops;
#[cfg(not(target_arch = "wasm32"))]
mod pipeline_cache;

pub use context::GpuContext;
#[cfg(not(target_arch = "wasm32"))]
pub use harness::GpuOps;
pub use kernels::{Dispatch, Element, Kernel, Kernels};
pub use network::{largest_batch, ConvAssignment, GpuModel};
pub use ops::{
    activation_buffer, activation_bytes, activation_element, read_activations, storage, upload,
    upload_activations, Conv, ConvGeometry, ConvKernel, ConvWeights, DepthwiseKernel, FoldedConv,
    GemmWeights, KernelChoice, Precision, WeightPrep,
};
#[cfg(not(target_arch = "wasm32"))]
pub use pipeline_cache::{KernelCache, PipelineCacheFile};
