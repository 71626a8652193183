//! Op launches built on the kernel registry, one module per op family, each kernel's
//! parameter struct beside its launch.

mod conv;
mod depthwise;
mod elementwise;
mod head;
mod pool;

pub(crate) use conv::fold_batchnorm;
pub(crate) use conv::ConvSupport;
pub use conv::{
    Conv, ConvGeometry, ConvKernel, ConvWeights, FoldedConv, GemmWeights, KernelChoice, Precision,
    WeightPrep,
};
pub(crate) use head::DenseShape;

use wgpu::util::DeviceExt;

/// Creates a storage buffer holding `data`.
pub fn upload(device: &wgpu::Device, label: &str, data: &[f32]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::cast_slice(data),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
    })
}

/// Creates an uninitialised storage buffer for `len` floats.
pub fn storage(device: &wgpu::Device, label: &str, len: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (len.max(4) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A size or count as the `u32` the kernels' parameters hold.
fn u(v: usize) -> u32 {
    v as u32
}
