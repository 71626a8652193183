//! Convolution weights as their kernels read them: batchnorm folded in on the device at load,
//! into storage buffers (the direct kernel) or a GEMM weight texture, float32 or float16.

use super::{storage, u, upload};
use crate::error::{Error, Result};
use crate::gpu::kernels::{linear_grid, Dispatch, Kernel, KernelParams, Kernels};
use crate::gpu::options::Precision;
use crate::weights::BatchNorm;

/// Kernel rows one invocation of `batchnorm_fold.wgsl` folds (its `BAND`).
const FOLD_BAND: usize = 64;

/// GEMM weight rows are padded to this many output channels, so that every row of the
/// buffer they are folded into is a multiple of 256 bytes (wgpu's buffer-to-texture copy
/// alignment), in float16 too; every GEMM kernel's channel tile divides it.
const GEMM_CHANNEL_ALIGN: usize = 128;

/// A regular convolution's batchnorm-folded weights in storage buffers, for the direct kernel.
#[derive(Debug)]
pub struct FoldedConv {
    /// `[rows][padded]` float32 scaled kernel, zero in the padding columns.
    pub weights: wgpu::Buffer,
    /// `[padded]` bias.
    pub bias: wgpu::Buffer,
    /// Kernel rows (`kh * kw * in_channels`).
    pub rows: usize,
    /// Real output channels.
    pub out_channels: usize,
    /// Channels each row is padded to.
    pub padded: usize,
}

/// A convolution's batchnorm-folded weights as the B matrix of its GEMM, in a texture (whose
/// fetches are cheaper than storage-buffer loads on CPU drivers, and cached on GPUs): what
/// every GEMM kernel reads.
#[derive(Debug)]
pub struct GemmWeights {
    /// `[kh * kw * in_channels]` rows (HWI order) of texels holding 4 output channels each,
    /// zero past `out_channels`: `Rgba32Float`, or `Rgba16Float` for [`Precision::F16`].
    pub texture: wgpu::Texture,
    pub(crate) view: wgpu::TextureView,
    /// Output channels' bias, zero-padded like the texture rows.
    pub bias: wgpu::Buffer,
    /// Texture rows: `kh * kw * in_channels`.
    pub rows: usize,
    /// Real output channels.
    pub out_channels: usize,
}

/// A convolution's weights, stored as its kernel reads them.
#[derive(Debug)]
pub enum ConvWeights {
    /// Storage buffers, for [`ConvKernel::Direct`](crate::gpu::ConvKernel::Direct).
    Direct(FoldedConv),
    /// A texture, for the GEMM kernels.
    Gemm(GemmWeights),
}

/// The launches and buffer-to-texture copies that fill folded weights, once at load.
#[derive(Debug, Default)]
pub struct WeightPrep {
    dispatches: Vec<Dispatch>,
    copies: Vec<TextureFill>,
}

/// A copy of a folded weight buffer into its texture.
#[derive(Debug)]
struct TextureFill {
    source: wgpu::Buffer,
    texture: wgpu::Texture,
    bytes_per_row: u32,
}

impl WeightPrep {
    /// The one launch `fold`.
    pub(crate) fn of(fold: Dispatch) -> Self {
        Self {
            dispatches: vec![fold],
            copies: Vec::new(),
        }
    }

    /// Adds all of `other`'s steps after these.
    pub fn append(&mut self, other: WeightPrep) {
        self.dispatches.extend(other.dispatches);
        self.copies.extend(other.copies);
    }

    /// Records the launches in one compute pass, then the copies.
    pub fn record(&self, kernels: &Kernels, encoder: &mut wgpu::CommandEncoder) {
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            kernels.record(&mut pass, &self.dispatches);
        }
        for fill in &self.copies {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &fill.source,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(fill.bytes_per_row),
                        rows_per_image: None,
                    },
                },
                fill.texture.as_image_copy(),
                fill.texture.size(),
            );
        }
    }
}

/// Uniform parameters of `batchnorm_fold.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FoldParams {
    rows: u32,
    channels: u32,
    padded_channels: u32,
    epsilon: f32,
}
impl KernelParams for FoldParams {}

/// Uniform parameters of `pack_f16.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PackParams {
    len: u32,
    _pad: [u32; 3],
}
impl KernelParams for PackParams {}

/// Uploads a bias-free kernel (output channels innermost) with its batchnorm; returns the
/// folded weights, rows padded to `padded` channels, and the launch that fills them.
pub(crate) fn fold_batchnorm(
    kernels: &Kernels,
    device: &wgpu::Device,
    kernel: &[f32],
    out_channels: usize,
    padded: usize,
    bn: &BatchNorm<'_>,
) -> (FoldedConv, Dispatch) {
    let rows = kernel.len() / out_channels;
    let folded = FoldedConv {
        weights: storage(device, "folded kernel", rows * padded),
        bias: storage(device, "folded bias", padded),
        rows,
        out_channels,
        padded,
    };
    let inputs = [
        upload(device, "kernel", kernel),
        upload(device, "gamma", bn.gamma),
        upload(device, "beta", bn.beta),
        upload(device, "mean", bn.mean),
        upload(device, "variance", bn.variance),
    ];
    let params = FoldParams {
        rows: u(rows),
        channels: u(out_channels),
        padded_channels: u(padded),
        epsilon: bn.epsilon,
    };
    let dispatch = kernels.dispatch(
        Kernel::BatchnormFold,
        &params,
        &[
            &inputs[0],
            &inputs[1],
            &inputs[2],
            &inputs[3],
            &inputs[4],
            &folded.weights,
            &folded.bias,
        ],
        [u((padded / 4).div_ceil(64)), u(rows.div_ceil(FOLD_BAND)), 1],
    );
    (folded, dispatch)
}

/// Output channels rounded up to the 8-channel tiles of the direct convolution kernel.
pub(crate) fn direct_padded_channels(channels: usize) -> usize {
    channels.div_ceil(8) * 8
}

/// Folds batchnorm into a convolution kernel (HWIO, output channels innermost; a pointwise
/// kernel is `[in_channels][out_channels]`) and stores it as a GEMM weight texture at
/// `precision`; returns the weights and the steps that fill them.
///
/// Fails when the device cannot pack float16 (for [`Precision::F16`]) or the texture would
/// exceed the device's largest 2-D texture.
pub(crate) fn fold_gemm(
    kernels: &Kernels,
    device: &wgpu::Device,
    kernel: &[f32],
    out_channels: usize,
    bn: &BatchNorm<'_>,
    precision: Precision,
) -> Result<(GemmWeights, WeightPrep)> {
    let rows = kernel.len() / out_channels;
    let padded = out_channels.div_ceil(GEMM_CHANNEL_ALIGN) * GEMM_CHANNEL_ALIGN;
    let largest = device.limits().max_texture_dimension_2d as usize;
    if rows > largest || padded / 4 > largest {
        return Err(Error::Gpu(format!(
            "a {rows}x{out_channels} convolution kernel needs a texture larger than this \
             device's {largest}x{largest}"
        )));
    }
    if precision == Precision::F16 && !kernels.supports(Kernel::PackF16) {
        return Err(Error::Gpu(format!(
            "{} cannot pack float16 in shaders (SHADER_F16_IN_F32); use precision f32",
            device.adapter_info().name
        )));
    }
    let (folded, fold) = fold_batchnorm(kernels, device, kernel, out_channels, padded, bn);
    let mut prep = WeightPrep::default();
    prep.dispatches.push(fold);
    let (source, format, bytes_per_row) = match precision {
        Precision::F32 => (folded.weights, wgpu::TextureFormat::Rgba32Float, padded * 4),
        Precision::F16 => {
            let pairs = rows * padded / 2;
            let packed = storage(device, "packed kernel", pairs);
            let params = PackParams {
                len: u(pairs),
                _pad: [0; 3],
            };
            prep.dispatches.push(kernels.dispatch(
                Kernel::PackF16,
                &params,
                &[&folded.weights, &packed],
                linear_grid(pairs),
            ));
            (packed, wgpu::TextureFormat::Rgba16Float, padded * 2)
        }
    };
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("GEMM weights"),
        size: wgpu::Extent3d {
            width: u(padded / 4),
            height: u(rows),
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    prep.copies.push(TextureFill {
        source,
        texture: texture.clone(),
        bytes_per_row: u(bytes_per_row),
    });
    let weights = GemmWeights {
        view: texture.create_view(&Default::default()),
        texture,
        bias: folded.bias,
        rows,
        out_channels,
    };
    Ok((weights, prep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<FoldParams>(Kernel::BatchnormFold);
        assert_params_match::<PackParams>(Kernel::PackF16);
    }
}
