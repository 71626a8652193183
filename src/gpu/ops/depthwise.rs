//! The depthwise half of a separable convolution.

use super::u;
use crate::gpu::kernels::{Dispatch, Kernel, KernelParams, Kernels};
use crate::tensor::Shape;

/// A depthwise kernel variant; one is picked per separable convolution at load, with its
/// pointwise half's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepthwiseKernel {
    /// `depthwise_conv_scalar.wgsl`: one channel per invocation, any channel count.
    Scalar,
    /// `depthwise_conv_pack4.wgsl`: 4 channels per invocation through vec4 loads.
    Pack4,
    /// `depthwise_conv_tiled.wgsl`: a tile's input staged in workgroup memory, for GPUs.
    Tiled,
}

impl DepthwiseKernel {
    /// Every variant.
    pub const ALL: [DepthwiseKernel; 3] = [
        DepthwiseKernel::Scalar,
        DepthwiseKernel::Pack4,
        DepthwiseKernel::Tiled,
    ];

    /// The kernel it launches.
    pub const fn kernel(self) -> Kernel {
        match self {
            DepthwiseKernel::Scalar => Kernel::DepthwiseConvScalar,
            DepthwiseKernel::Pack4 => Kernel::DepthwiseConvPack4,
            DepthwiseKernel::Tiled => Kernel::DepthwiseConvTiled,
        }
    }

    /// Its shader's name.
    pub const fn name(self) -> &'static str {
        self.kernel().name()
    }

    /// Whether it can run `channels` channels (the vec4 variants need multiples of 4).
    pub const fn runs(self, channels: usize) -> bool {
        matches!(self, DepthwiseKernel::Scalar) || channels.is_multiple_of(4)
    }
}

/// Uniform parameters of every depthwise kernel.
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
    /// Depthwise 3x3 'same' convolution (kernel `[3][3][C]`) on `variant`, optionally
    /// rectifying its input.
    ///
    /// # Panics
    /// Where `variant` cannot run `C` channels (see [`DepthwiseKernel::runs`]).
    pub(crate) fn depthwise_conv(
        &self,
        variant: DepthwiseKernel,
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
        assert!(
            variant.runs(shape.channels),
            "{} cannot run {} channels",
            variant.name(),
            shape.channels
        );
        let grid = match variant {
            // x: 64 channels per workgroup; y: strips of 4 columns; z: batch * rows.
            DepthwiseKernel::Scalar => [
                u(shape.channels.div_ceil(64)),
                u(shape.width.div_ceil(4)),
                u(shape.batch * shape.height),
            ],
            // The same over 64 channel quads.
            DepthwiseKernel::Pack4 => [
                u((shape.channels / 4).div_ceil(64)),
                u(shape.width.div_ceil(4)),
                u(shape.batch * shape.height),
            ],
            // x: 8 channel quads; y: 8-column tiles; z: batch * 8-row tiles.
            DepthwiseKernel::Tiled => [
                u((shape.channels / 4).div_ceil(8)),
                u(shape.width.div_ceil(8)),
                u(shape.batch * shape.height.div_ceil(8)),
            ],
        };
        self.dispatch(variant.kernel(), &params, &[input, kernel, output], grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConvScalar);
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConvPack4);
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConvTiled);
    }
}
