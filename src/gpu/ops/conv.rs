//! A convolution ready to launch: its window, the kernel variant chosen for it (see
//! [`crate::gpu::select`]), its folded weights (see [`super::fold`]), and its launch.
//!
//! Every convolution of the network (the 3x3 stem, the 1x1/2 shortcuts and the pointwise half
//! of each separable convolution) is a [`Conv`].

use super::fold::{direct_padded_channels, fold_batchnorm, fold_gemm, ConvWeights, WeightPrep};
use super::u;
use crate::error::Result;
use crate::gpu::kernels::{tiled_grid, Dispatch, Kernel, KernelParams, Kernels};
use crate::gpu::options::Precision;
use crate::gpu::select::ConvKernel;
use crate::graph::{ConvNode, Padding};
use crate::tensor::Shape;
use crate::weights::BatchNorm;

/// A convolution's window: square `kernel`, `stride` and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// 'valid' or TF 'same' padding.
    pub padding: Padding,
}

impl ConvGeometry {
    /// A 1x1 convolution at `stride` (the pointwise convolutions, and the 1x1/2 shortcuts).
    pub const fn pointwise(stride: usize) -> Self {
        Self {
            kernel: 1,
            stride,
            padding: Padding::Same,
        }
    }

    /// The window of a stem or shortcut convolution of the graph.
    pub const fn of(conv: &ConvNode) -> Self {
        Self {
            kernel: conv.kernel,
            stride: conv.stride,
            padding: conv.padding,
        }
    }

    /// The output shape for an input of `shape` and `out_channels` output channels.
    pub fn output_shape(self, shape: Shape, out_channels: usize) -> Shape {
        let (out_h, _) = self.padding.resolve(shape.height, self.kernel, self.stride);
        let (out_w, _) = self.padding.resolve(shape.width, self.kernel, self.stride);
        Shape::new(shape.batch, out_h, out_w, out_channels)
    }

    /// The top and left padding for an input of `shape`.
    fn padding_before(self, shape: Shape) -> (usize, usize) {
        let (_, top) = self.padding.resolve(shape.height, self.kernel, self.stride);
        let (_, left) = self.padding.resolve(shape.width, self.kernel, self.stride);
        (top, left)
    }
}

/// One convolution ready to launch: window, kernel variant and folded weights.
#[derive(Debug)]
pub struct Conv {
    /// The window.
    pub geometry: ConvGeometry,
    /// The kernel variant that runs it.
    pub kernel: ConvKernel,
    /// Its batchnorm-folded weights.
    pub weights: ConvWeights,
}

/// Uniform parameters of `conv_direct.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DirectParams {
    batch: u32,
    in_height: u32,
    in_width: u32,
    in_channels: u32,
    out_height: u32,
    out_width: u32,
    out_channels: u32,
    out_vec4s: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    relu: u32,
    _pad: [u32; 3],
}
impl KernelParams for DirectParams {}

/// Uniform parameters of every GEMM kernel (`conv_portable.wgsl`, `conv_gemm_*.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    rows: u32,
    in_channels: u32,
    out_channels: u32,
    relu: u32,
    has_residual: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    _pad: [u32; 3],
}
impl KernelParams for GemmParams {}

impl Conv {
    /// Folds batchnorm into `kernel` (HWIO) and stores it for the variant `kernel_variant`;
    /// returns the convolution and the steps that fill its weights (to record once, before
    /// the first launch).
    ///
    /// Fails where the weights do not fit the device (see [`Precision`] for float16).
    pub fn prepare(
        kernels: &Kernels,
        kernel_variant: ConvKernel,
        geometry: ConvGeometry,
        kernel: &[f32],
        out_channels: usize,
        bn: &BatchNorm<'_>,
        precision: Precision,
    ) -> Result<(Conv, WeightPrep)> {
        let device = kernels.device();
        let (weights, prep) = match kernel_variant {
            ConvKernel::Direct => {
                let padded = direct_padded_channels(out_channels);
                let (folded, fold) =
                    fold_batchnorm(kernels, device, kernel, out_channels, padded, bn);
                let prep = WeightPrep::of(fold);
                (ConvWeights::Direct(folded), prep)
            }
            // Every GEMM variant reads the same weight texture.
            _ => {
                let (gemm, prep) = fold_gemm(kernels, device, kernel, out_channels, bn, precision)?;
                (ConvWeights::Gemm(gemm), prep)
            }
        };
        let conv = Conv {
            geometry,
            kernel: kernel_variant,
            weights,
        };
        Ok((conv, prep))
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        match &self.weights {
            ConvWeights::Direct(w) => w.out_channels,
            ConvWeights::Gemm(w) => w.out_channels,
        }
    }

    /// The launch of this convolution on `input` of `shape` into `output` of `out` (the
    /// plan's shapes), adding `residual` (of the output's shape) and rectifying if asked.
    ///
    /// # Panics
    /// If a residual is given to [`ConvKernel::Direct`], which has none.
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        kernels: &Kernels,
        input: &wgpu::Buffer,
        shape: Shape,
        out: Shape,
        relu: bool,
        residual: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let g = self.geometry;
        let (pad_top, pad_left) = g.padding_before(shape);
        match &self.weights {
            ConvWeights::Direct(w) => {
                assert!(
                    residual.is_none(),
                    "the direct convolution adds no residual"
                );
                let params = DirectParams {
                    batch: u(shape.batch),
                    in_height: u(shape.height),
                    in_width: u(shape.width),
                    in_channels: u(shape.channels),
                    out_height: u(out.height),
                    out_width: u(out.width),
                    out_channels: u(w.out_channels),
                    out_vec4s: u(w.padded / 4),
                    kernel: u(g.kernel),
                    stride: u(g.stride),
                    pad_top: u(pad_top),
                    pad_left: u(pad_left),
                    relu: relu.into(),
                    _pad: [0; 3],
                };
                // 8 channels by a strip of 4 pixels per invocation, 8x8 invocations.
                let strips = out.batch * out.height * out.width.div_ceil(4);
                let grid = tiled_grid(w.out_channels.div_ceil(8).div_ceil(8), strips.div_ceil(8));
                kernels.dispatch(
                    Kernel::ConvDirect,
                    &params,
                    &[input, &w.weights, &w.bias, output],
                    grid,
                )
            }
            ConvWeights::Gemm(w) => {
                let params = GemmParams {
                    rows: u(out.pixels()),
                    in_channels: u(shape.channels),
                    out_channels: u(w.out_channels),
                    relu: relu.into(),
                    has_residual: residual.is_some().into(),
                    kernel: u(g.kernel),
                    stride: u(g.stride),
                    pad_top: u(pad_top),
                    pad_left: u(pad_left),
                    in_height: u(shape.height),
                    in_width: u(shape.width),
                    out_height: u(out.height),
                    out_width: u(out.width),
                    _pad: [0; 3],
                };
                let grid = match self.kernel {
                    // 8 pixels by 8 channels per invocation, 8x8 invocations.
                    ConvKernel::Portable => {
                        tiled_grid(w.out_channels.div_ceil(64), out.pixels().div_ceil(64))
                    }
                    gemm => {
                        let (pixels, channels) = gemm.tile();
                        tiled_grid(
                            w.out_channels.div_ceil(channels),
                            out.pixels().div_ceil(pixels),
                        )
                    }
                };
                let bindings = [
                    input.as_entire_binding(),
                    wgpu::BindingResource::TextureView(&w.view),
                    w.bias.as_entire_binding(),
                    residual.unwrap_or(&kernels.placeholder).as_entire_binding(),
                    output.as_entire_binding(),
                ];
                kernels.dispatch_with(self.kernel.kernel(), &params, &bindings, grid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<DirectParams>(Kernel::ConvDirect);
        for variant in ConvKernel::ALL {
            if variant != ConvKernel::Direct {
                assert_params_match::<GemmParams>(variant.kernel());
            }
        }
    }
}
