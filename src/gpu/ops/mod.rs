//! Op launches built on the kernel registry, one module per op family, each kernel's
//! parameter struct beside its launch.

mod conv;
mod depthwise;
mod fold;
// Separate ReLU and residual-add launches serve the native single-op harness alone.
#[cfg(not(target_arch = "wasm32"))]
mod elementwise;
mod head;
mod pool;

pub use conv::{Conv, ConvGeometry};
pub use depthwise::{DepthwiseKernel, DepthwiseWork};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use fold::fold_batchnorm;
pub use fold::{ConvWeights, FoldedConv, GemmWeights, WeightPrep};
pub(crate) use head::DenseShape;

use std::borrow::Cow;

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::kernels::Element;
use crate::error::Result;

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

/// Creates an uninitialised storage buffer for `len` activations of `element`.
pub fn activation_buffer(
    device: &wgpu::Device,
    label: &str,
    len: usize,
    element: Element,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        // Copies and bindings work in multiples of 4 bytes.
        size: ((len.max(4) * element.bytes()).next_multiple_of(4)) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// `values` as the bytes of activations of `element` (float16 rounds to nearest), padded to a
/// multiple of 4 bytes, for [`wgpu::Queue::write_buffer`]; float32 values are borrowed as
/// they are.
pub fn activation_bytes(values: &[f32], element: Element) -> Cow<'_, [u8]> {
    match element {
        Element::F32 => Cow::Borrowed(bytemuck::cast_slice(values)),
        Element::F16 => {
            let mut bytes: Vec<u8> = values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect();
            bytes.resize(bytes.len().next_multiple_of(4), 0);
            Cow::Owned(bytes)
        }
    }
}

/// Creates a storage buffer holding `values` as activations of `element`.
pub fn upload_activations(
    device: &wgpu::Device,
    label: &str,
    values: &[f32],
    element: Element,
) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &activation_bytes(values, element),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
    })
}

/// Reads `len` activations of `element` back from `buffer` as float32.
pub async fn read_activations(
    context: &GpuContext,
    buffer: &wgpu::Buffer,
    len: usize,
    element: Element,
) -> Result<Vec<f32>> {
    let size = (len.max(1) * element.bytes()).next_multiple_of(4) as u64;
    let bytes = context.read_bytes(buffer, size).await?;
    let mut values: Vec<f32> = match element {
        Element::F32 => bytemuck::pod_collect_to_vec(&bytes),
        Element::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    };
    values.truncate(len);
    Ok(values)
}

/// A size or count as the `u32` the kernels' parameters hold.
fn u(v: usize) -> u32 {
    v as u32
}
