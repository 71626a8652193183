//! The depthwise half of a separable convolution.

use super::u;
use crate::gpu::kernels::{Dispatch, Kernel, KernelParams, Kernels};
use crate::tensor::Shape;

/// Uniform parameters of `depthwise_conv.wgsl` and `depthwise_conv_pack4.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DepthwiseParams {
    batch: u32,
    height: u32,
    width: u32,
    channels: u32,
    relu_input: u32,
    _pad: [u32; 3],
}
impl KernelParams for DepthwiseParams {}

impl Kernels {
    /// Depthwise 3x3 'same' convolution (kernel `[3][3][C]`), optionally rectifying its input;
    /// 4 channels per invocation when `C` is a multiple of 4.
    pub(crate) fn depthwise_conv(
        &self,
        input: &wgpu::Buffer,
        shape: Shape,
        kernel: &wgpu::Buffer,
        relu_input: bool,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = DepthwiseParams {
            batch: u(shape.batch),
            height: u(shape.height),
            width: u(shape.width),
            channels: u(shape.channels),
            relu_input: relu_input.into(),
            _pad: [0; 3],
        };
        let (kernel_kind, lanes) = if shape.channels % 4 == 0 {
            (Kernel::DepthwiseConvPack4, shape.channels / 4)
        } else {
            (Kernel::DepthwiseConv, shape.channels)
        };
        // x: 64 channel lanes per workgroup; y: strips of 4 columns; z: batch * rows.
        self.dispatch(
            kernel_kind,
            &params,
            &[input, kernel, output],
            [
                u(lanes.div_ceil(64)),
                u(shape.width.div_ceil(4)),
                u(shape.batch * shape.height),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConv);
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConvPack4);
    }
}
