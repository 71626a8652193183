//! The GPU backend: WGSL kernels on wgpu, the device context, op launches, the single-op
//! harness and the network dispatcher.

mod context;
mod harness;
mod kernels;
mod network;
mod ops;
mod pipeline_cache;

pub use context::GpuContext;
pub use harness::GpuOps;
pub use kernels::{Dispatch, Element, Kernel, Kernels};
pub use network::{largest_batch, ConvAssignment, GpuModel, LaunchTiming, OpKind};
pub use ops::{
    activation_buffer, activation_bytes, activation_element, read_activations, storage, upload,
    upload_activations, Conv, ConvGeometry, ConvKernel, ConvWeights, DepthwiseKernel, FoldedConv,
    GemmWeights, KernelChoice, Precision, WeightPrep,
};
pub use pipeline_cache::PipelineCacheFile;
