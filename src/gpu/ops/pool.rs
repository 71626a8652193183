//! Pools: the max-pool 3x3/2 'same' with its residual add, and the global average pool.

use super::u;
use crate::gpu::kernels::{linear_grid, Dispatch, Kernel, KernelParams, Kernels};
use crate::graph::Padding;
use crate::tensor::Shape;

/// Uniform parameters of `max_pool.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MaxPoolParams {
    batch: u32,
    in_height: u32,
    in_width: u32,
    channels: u32,
    out_height: u32,
    out_width: u32,
    pad_top: u32,
    pad_left: u32,
    has_residual: u32,
    _pad: [u32; 3],
}
impl KernelParams for MaxPoolParams {}

/// Uniform parameters of `global_avg_pool.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GlobalAvgPoolParams {
    batch: u32,
    pixels: u32,
    channels: u32,
    _pad: u32,
}
impl KernelParams for GlobalAvgPoolParams {}

impl Kernels {
    /// Max-pool 3x3/2 with `padding` ('same', or symmetric 1), plus `residual` if given;
    /// returns the launch and output shape.
    pub(crate) fn max_pool(
        &self,
        input: &wgpu::Buffer,
        shape: Shape,
        padding: Padding,
        residual: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) -> (Dispatch, Shape) {
        let (out_h, pad_top) = padding.resolve(shape.height, 3, 2);
        let (out_w, pad_left) = padding.resolve(shape.width, 3, 2);
        let out = Shape::new(shape.batch, out_h, out_w, shape.channels);
        let params = MaxPoolParams {
            batch: u(shape.batch),
            in_height: u(shape.height),
            in_width: u(shape.width),
            channels: u(shape.channels),
            out_height: u(out_h),
            out_width: u(out_w),
            pad_top: u(pad_top),
            pad_left: u(pad_left),
            has_residual: residual.is_some().into(),
            _pad: [0; 3],
        };
        let dispatch = self.dispatch(
            Kernel::MaxPool,
            &params,
            &[input, residual.unwrap_or(&self.placeholder), output],
            linear_grid(out.len()),
        );
        (dispatch, out)
    }

    /// Global average pool of an NHWC tensor into `[batch][channels]`.
    pub(crate) fn global_avg_pool(
        &self,
        input: &wgpu::Buffer,
        shape: Shape,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = GlobalAvgPoolParams {
            batch: u(shape.batch),
            pixels: u(shape.height * shape.width),
            channels: u(shape.channels),
            _pad: 0,
        };
        let len = shape.batch * shape.channels;
        self.dispatch(
            Kernel::GlobalAvgPool,
            &params,
            &[input, output],
            [u(len.div_ceil(64)), 1, 1],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<MaxPoolParams>(Kernel::MaxPool);
        assert_params_match::<GlobalAvgPoolParams>(Kernel::GlobalAvgPool);
    }
}
