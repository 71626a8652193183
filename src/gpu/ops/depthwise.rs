//! The depthwise half of a separable convolution, and the pre-activation (batchnorm + ReLU)
//! some blocks open with.

use super::u;
use crate::gpu::kernels::{linear_grid, Dispatch, Kernel, KernelParams, Kernels};
use crate::graph::DepthwiseGeometry;
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
    /// `depthwise_conv_general.wgsl`: one output value per invocation, any stride, dilation
    /// and padding.
    General,
    /// `depthwise_conv_general_pack4.wgsl`: the same over 4 channels per invocation through
    /// vec4 loads.
    GeneralPack4,
}

/// What one depthwise launch computes: its window, and the bias (a folded batchnorm) and ReLU
/// on its output that the aligned layout puts between the two halves of a separable
/// convolution (every variant applies them).
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseWork<'a> {
    /// Stride, dilation, padding.
    pub geometry: DepthwiseGeometry,
    /// ReLU on the input as it is read.
    pub relu_input: bool,
    /// `[channels]`, added to the output.
    pub bias: Option<&'a wgpu::Buffer>,
    /// ReLU on the output (after the bias).
    pub relu_output: bool,
}

impl DepthwiseKernel {
    /// Every variant.
    pub const ALL: [DepthwiseKernel; 5] = [
        DepthwiseKernel::Scalar,
        DepthwiseKernel::Pack4,
        DepthwiseKernel::Tiled,
        DepthwiseKernel::General,
        DepthwiseKernel::GeneralPack4,
    ];

    /// The kernel it launches.
    pub const fn kernel(self) -> Kernel {
        match self {
            DepthwiseKernel::Scalar => Kernel::DepthwiseConvScalar,
            DepthwiseKernel::Pack4 => Kernel::DepthwiseConvPack4,
            DepthwiseKernel::Tiled => Kernel::DepthwiseConvTiled,
            DepthwiseKernel::General => Kernel::DepthwiseConvGeneral,
            DepthwiseKernel::GeneralPack4 => Kernel::DepthwiseConvGeneralPack4,
        }
    }

    /// Its shader's name.
    pub const fn name(self) -> &'static str {
        self.kernel().name()
    }

    /// Whether it can run `channels` channels with this window: the general variants run
    /// every window, the others a plain one (stride 1, 'same'); the vec4 ones need multiples
    /// of 4 channels. Every variant adds a bias and rectifies its output where asked.
    pub fn runs(self, channels: usize, geometry: DepthwiseGeometry) -> bool {
        let vec4 = channels.is_multiple_of(4);
        match self {
            DepthwiseKernel::General => true,
            DepthwiseKernel::GeneralPack4 => vec4,
            _ if !geometry.is_plain() => false,
            DepthwiseKernel::Scalar => true,
            DepthwiseKernel::Pack4 | DepthwiseKernel::Tiled => vec4,
        }
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
    relu_output: u32,
    has_bias: u32,
    _pad: u32,
}
impl KernelParams for DepthwiseParams {}

/// Uniform parameters of `depthwise_conv_general.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GeneralParams {
    batch: u32,
    in_height: u32,
    in_width: u32,
    channels: u32,
    out_height: u32,
    out_width: u32,
    stride: u32,
    dilation: u32,
    pad_top: u32,
    pad_left: u32,
    relu_input: u32,
    relu_output: u32,
    has_bias: u32,
    _pad: [u32; 3],
}
impl KernelParams for GeneralParams {}

impl Kernels {
    /// Depthwise 3x3 convolution (kernel `[3][3][C]`) of `work` over an input of `shape` on
    /// `variant`; the output has `work.geometry`'s shape.
    ///
    /// # Panics
    /// Where `variant` cannot run it (see [`DepthwiseKernel::runs`]).
    pub(crate) fn depthwise_conv(
        &self,
        variant: DepthwiseKernel,
        input: &wgpu::Buffer,
        shape: Shape,
        kernel: &wgpu::Buffer,
        work: DepthwiseWork<'_>,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        assert!(
            variant.runs(shape.channels, work.geometry),
            "{} cannot run {} channels with {:?}",
            variant.name(),
            shape.channels,
            work.geometry,
        );
        if let DepthwiseKernel::General | DepthwiseKernel::GeneralPack4 = variant {
            let lanes = if variant == DepthwiseKernel::GeneralPack4 {
                4
            } else {
                1
            };
            let out = work.geometry.output_shape(shape);
            let (_, pad_top) = work.geometry.resolve(shape.height);
            let (_, pad_left) = work.geometry.resolve(shape.width);
            let params = GeneralParams {
                batch: u(shape.batch),
                in_height: u(shape.height),
                in_width: u(shape.width),
                channels: u(shape.channels),
                out_height: u(out.height),
                out_width: u(out.width),
                stride: u(work.geometry.stride),
                dilation: u(work.geometry.dilation),
                pad_top: u(pad_top),
                pad_left: u(pad_left),
                relu_input: work.relu_input.into(),
                relu_output: work.relu_output.into(),
                has_bias: work.bias.is_some().into(),
                _pad: [0; 3],
            };
            let bias = work.bias.unwrap_or(&self.placeholder);
            // x: 64 channels (or quads) per workgroup; y: output columns; z: batch * output rows.
            let grid = [
                u((shape.channels / lanes).div_ceil(64)),
                u(out.width),
                u(out.batch * out.height),
            ];
            return self.dispatch(
                variant.kernel(),
                &params,
                &[input, kernel, bias, output],
                grid,
            );
        }
        let params = DepthwiseParams {
            batch: u(shape.batch),
            height: u(shape.height),
            width: u(shape.width),
            channels: u(shape.channels),
            relu_input: work.relu_input.into(),
            relu_output: work.relu_output.into(),
            has_bias: work.bias.is_some().into(),
            _pad: 0,
        };
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
            DepthwiseKernel::General | DepthwiseKernel::GeneralPack4 => {
                unreachable!("launched above")
            }
        };
        let bias = work.bias.unwrap_or(&self.placeholder);
        self.dispatch(
            variant.kernel(),
            &params,
            &[input, kernel, output, bias],
            grid,
        )
    }

    /// `max(x * scale[c] + shift[c], 0)` over an NHWC input of `shape` (`affine` `None`: a
    /// bare ReLU): a pre-activation block's batchnorm + ReLU.
    pub(crate) fn scale_shift_relu(
        &self,
        input: &wgpu::Buffer,
        shape: Shape,
        affine: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = ScaleShiftParams {
            len: u(shape.len()),
            channels: u(shape.channels),
            has_affine: affine.is_some().into(),
            _pad: 0,
        };
        let (scale, shift) = affine.unwrap_or((&self.placeholder, &self.placeholder));
        self.dispatch(
            Kernel::ScaleShiftRelu,
            &params,
            &[input, scale, shift, output],
            linear_grid(shape.len()),
        )
    }
}

/// Uniform parameters of `scale_shift_relu.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ScaleShiftParams {
    len: u32,
    channels: u32,
    has_affine: u32,
    _pad: u32,
}
impl KernelParams for ScaleShiftParams {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConvScalar);
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConvPack4);
        assert_params_match::<DepthwiseParams>(Kernel::DepthwiseConvTiled);
        assert_params_match::<GeneralParams>(Kernel::DepthwiseConvGeneral);
        assert_params_match::<GeneralParams>(Kernel::DepthwiseConvGeneralPack4);
        assert_params_match::<ScaleShiftParams>(Kernel::ScaleShiftRelu);
    }
}
