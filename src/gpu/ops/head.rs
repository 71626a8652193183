//! The classifier head: dense layers and the softmax.

use super::u;
use crate::gpu::kernels::{Dispatch, Kernel, KernelParams, Kernels};

/// Uniform parameters of `dense.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DenseParams {
    batch: u32,
    inputs: u32,
    units: u32,
    relu: u32,
}
impl KernelParams for DenseParams {}

/// Uniform parameters of `softmax.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    rows: u32,
    cols: u32,
    _pad: [u32; 2],
}
impl KernelParams for SoftmaxParams {}

/// A dense layer's shape: `inputs` to `units`, then ReLU if asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DenseShape {
    pub(crate) inputs: usize,
    pub(crate) units: usize,
    pub(crate) relu: bool,
}

impl Kernels {
    /// Dense layer over `batch` rows: kernel `[inputs][units]`, bias `[units]`.
    pub(crate) fn dense(
        &self,
        input: &wgpu::Buffer,
        batch: usize,
        kernel: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        shape: DenseShape,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = DenseParams {
            batch: u(batch),
            inputs: u(shape.inputs),
            units: u(shape.units),
            relu: shape.relu.into(),
        };
        let len = batch * shape.units;
        self.dispatch(
            Kernel::Dense,
            &params,
            &[input, kernel, bias, output],
            [u(len.div_ceil(64)), 1, 1],
        )
    }

    /// Row-wise softmax of a `[rows][cols]` matrix.
    pub(crate) fn softmax(
        &self,
        input: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = SoftmaxParams {
            rows: u(rows),
            cols: u(cols),
            _pad: [0; 2],
        };
        self.dispatch(
            Kernel::Softmax,
            &params,
            &[input, output],
            [u(rows.div_ceil(64)), 1, 1],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<DenseParams>(Kernel::Dense);
        assert_params_match::<SoftmaxParams>(Kernel::Softmax);
    }
}
