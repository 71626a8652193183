//! Op-level launches built on the kernel registry, and [`GpuOps`] to run any single op on
//! CPU tensors (what the parity tests and curious embedders use).

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::kernels::*;
use crate::error::{Error, Result};
use crate::graph::Padding;
use crate::tensor::{Shape, Tensor};
use crate::weights::BatchNorm;

/// Pixels (GEMM rows) one invocation of `pointwise_conv.wgsl` computes.
const PIXELS_PER_INVOCATION: usize = 8;

/// Pixels and output channels one workgroup of `conv_gemm_subgroup.wgsl` computes.
const SUBGROUP_TILE: (usize, usize) = (32, 64);

/// Kernel rows one invocation of `batchnorm_fold.wgsl` folds (its `BAND`).
const FOLD_BAND: usize = 64;

/// GEMM weight rows are padded to this many output channels, so that every row of the
/// buffer they are folded into is a multiple of 256 bytes (wgpu's buffer-to-texture copy
/// alignment), in float16 too.
const POINTWISE_CHANNEL_ALIGN: usize = 128;

/// Output channels rounded up to the 8-channel tiles of the convolution kernels.
pub fn padded_channels(channels: usize) -> usize {
    channels.div_ceil(8) * 8
}

/// How the pointwise weights are stored on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32 everywhere (the default).
    #[default]
    F32,
    /// Pointwise weights stored as float16; activations and accumulation in float32.
    F16,
}

/// A regular convolution's batchnorm-folded weights on the GPU.
#[derive(Debug)]
pub struct FoldedConv {
    /// `[rows][padded]` float32 scaled kernel, zero in the padding columns, where `padded` is
    /// [`padded_channels`] of `out_channels` unless the fold asked for more.
    pub weights: wgpu::Buffer,
    /// `[padded]` bias.
    pub bias: wgpu::Buffer,
    /// Kernel rows (`kh * kw * in_channels`).
    pub rows: usize,
    /// Real output channels.
    pub out_channels: usize,
}

impl FoldedConv {
    fn out_vec4s(&self) -> u32 {
        (padded_channels(self.out_channels) / 4) as u32
    }
}

/// A convolution's batchnorm-folded weights as the B matrix of its GEMM, in a texture (whose
/// fetches are cheaper than storage-buffer loads on CPU drivers, and cached on GPUs): what
/// the pointwise kernels and the subgroup GEMM kernel read.
#[derive(Debug)]
pub struct GemmWeights {
    /// `[kh * kw * in_channels]` rows (HWI order) of texels holding 4 output channels each,
    /// zero past `out_channels`: `Rgba32Float`, or `Rgba16Float` for [`Precision::F16`].
    pub texture: wgpu::Texture,
    view: wgpu::TextureView,
    /// Output channels' bias, zero-padded like the texture rows.
    pub bias: wgpu::Buffer,
    /// Texture rows: `kh * kw * in_channels`.
    pub rows: usize,
    /// Real output channels.
    pub out_channels: usize,
    /// How the texture stores the weights.
    pub precision: Precision,
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
    /// Adds a launch.
    pub fn push(&mut self, dispatch: Dispatch) {
        self.dispatches.push(dispatch);
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

fn u(v: usize) -> u32 {
    v as u32
}

impl Kernels {
    /// Uploads a bias-free kernel (output channels innermost) with its batchnorm; returns the
    /// folded weights and the launch that fills them.
    pub fn fold_batchnorm(
        &self,
        device: &wgpu::Device,
        kernel: &[f32],
        out_channels: usize,
        bn: &BatchNorm<'_>,
    ) -> (FoldedConv, Dispatch) {
        self.fold_padded(
            device,
            kernel,
            out_channels,
            padded_channels(out_channels),
            bn,
        )
    }

    /// [`fold_batchnorm`](Self::fold_batchnorm) with rows padded to `padded` channels.
    fn fold_padded(
        &self,
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
        let dispatch = self.dispatch(
            device,
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
            [
                (padded / 4).div_ceil(64) as u32,
                rows.div_ceil(FOLD_BAND) as u32,
                1,
            ],
        );
        (folded, dispatch)
    }

    /// Folds batchnorm into a convolution kernel (HWIO, output channels innermost; a pointwise
    /// kernel is `[in_channels][out_channels]`) and stores it as a GEMM weight texture at
    /// `precision`; returns the weights and the steps that fill them.
    ///
    /// Fails when the device cannot pack float16 (for [`Precision::F16`]) or the texture
    /// would exceed the device's largest 2-D texture.
    pub fn fold_gemm(
        &self,
        device: &wgpu::Device,
        kernel: &[f32],
        out_channels: usize,
        bn: &BatchNorm<'_>,
        precision: Precision,
    ) -> Result<(GemmWeights, WeightPrep)> {
        let rows = kernel.len() / out_channels;
        let padded = out_channels.div_ceil(POINTWISE_CHANNEL_ALIGN) * POINTWISE_CHANNEL_ALIGN;
        let largest = device.limits().max_texture_dimension_2d as usize;
        if rows > largest || padded / 4 > largest {
            return Err(Error::Gpu(format!(
                "a {rows}x{out_channels} convolution kernel needs a texture larger than \
                 this device's {largest}x{largest}"
            )));
        }
        if precision == Precision::F16 && !self.supports(Kernel::PackF16) {
            return Err(Error::Gpu(format!(
                "{} cannot pack float16 in shaders (SHADER_F16_IN_F32); use precision f32",
                device.adapter_info().name
            )));
        }
        let (folded, fold) = self.fold_padded(device, kernel, out_channels, padded, bn);
        let mut prep = WeightPrep::default();
        prep.push(fold);
        let (source, format, bytes_per_row) = match precision {
            Precision::F32 => (folded.weights, wgpu::TextureFormat::Rgba32Float, padded * 4),
            Precision::F16 => {
                let pairs = rows * padded / 2;
                let packed = storage(device, "packed kernel", pairs);
                let params = ElementwiseParams {
                    len: u(pairs),
                    _pad: [0; 3],
                };
                prep.push(self.dispatch(
                    device,
                    Kernel::PackF16,
                    &params,
                    &[&folded.weights, &packed],
                    linear_grid(pairs),
                ));
                (packed, wgpu::TextureFormat::Rgba16Float, padded * 2)
            }
        };
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("pointwise weights"),
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
            precision,
        };
        Ok((weights, prep))
    }

    /// Regular convolution with folded batchnorm; returns the launch and the output shape.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &self,
        device: &wgpu::Device,
        input: &wgpu::Buffer,
        shape: Shape,
        weights: &FoldedConv,
        kernel: usize,
        stride: usize,
        padding: Padding,
        relu: bool,
        output: &wgpu::Buffer,
    ) -> (Dispatch, Shape) {
        let (out_h, pad_top) = padding.resolve(shape.height, kernel, stride);
        let (out_w, pad_left) = padding.resolve(shape.width, kernel, stride);
        let out = Shape::new(shape.batch, out_h, out_w, weights.out_channels);
        let params = Conv2dParams {
            batch: u(shape.batch),
            in_height: u(shape.height),
            in_width: u(shape.width),
            in_channels: u(shape.channels),
            out_height: u(out_h),
            out_width: u(out_w),
            out_channels: u(weights.out_channels),
            out_vec4s: weights.out_vec4s(),
            kernel: u(kernel),
            stride: u(stride),
            pad_top: u(pad_top),
            pad_left: u(pad_left),
            relu: relu.into(),
            _pad: [0; 3],
        };
        let strips = out.batch * out.height * out.width.div_ceil(4);
        let grid = tiled_grid(
            weights.out_channels.div_ceil(8).div_ceil(8),
            strips.div_ceil(8),
        );
        let dispatch = self.dispatch(
            device,
            Kernel::Conv2d,
            &params,
            &[input, &weights.weights, &weights.bias, output],
            grid,
        );
        (dispatch, out)
    }

    /// Depthwise 3x3 'same' convolution (kernel `[3][3][C]`), optionally rectifying its input;
    /// 4 channels per invocation when `C` is a multiple of 4.
    pub fn depthwise_conv(
        &self,
        device: &wgpu::Device,
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
        self.dispatch(
            device,
            kernel_kind,
            &params,
            &[input, kernel, output],
            [
                lanes.div_ceil(64) as u32,
                shape.width.div_ceil(4) as u32,
                (shape.batch * shape.height) as u32,
            ],
        )
    }

    /// Pointwise (1x1) convolution with folded batchnorm at `stride` (1, or 2 for the
    /// shortcuts; no padding), then residual add and ReLU if asked; returns the launch and the
    /// output shape.
    ///
    /// Runs on the subgroup GEMM kernel where [`Kernels::runs_gemm`] says so, on the portable
    /// pointwise kernel otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn pointwise_conv(
        &self,
        device: &wgpu::Device,
        input: &wgpu::Buffer,
        shape: Shape,
        weights: &GemmWeights,
        stride: usize,
        relu: bool,
        residual: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) -> (Dispatch, Shape) {
        let out = Shape::new(
            shape.batch,
            shape.height.div_ceil(stride),
            shape.width.div_ceil(stride),
            weights.out_channels,
        );
        let rows = out.pixels();
        let params = PointwiseParams {
            rows: u(rows),
            in_channels: u(shape.channels),
            out_channels: u(weights.out_channels),
            relu: relu.into(),
            has_residual: residual.is_some().into(),
            stride: u(stride),
            in_height: u(shape.height),
            in_width: u(shape.width),
            out_height: u(out.height),
            out_width: u(out.width),
            _pad: [0; 2],
        };
        if self.runs_gemm(shape.channels, weights.out_channels) {
            return self.gemm_conv(
                device,
                input,
                shape,
                weights,
                1,
                stride,
                Padding::Valid,
                relu,
                residual,
                output,
            );
        }
        let grid = tiled_grid(
            weights.out_channels.div_ceil(8).div_ceil(8),
            rows.div_ceil(PIXELS_PER_INVOCATION).div_ceil(8),
        );
        let bindings = self.gemm_bindings(input, weights, residual, output);
        let dispatch = self.dispatch_with(device, Kernel::PointwiseConv, &params, &bindings, grid);
        (dispatch, out)
    }

    /// The bindings the GEMM kernels share: input, weight texture, bias, residual, output.
    fn gemm_bindings<'a>(
        &'a self,
        input: &'a wgpu::Buffer,
        weights: &'a GemmWeights,
        residual: Option<&'a wgpu::Buffer>,
        output: &'a wgpu::Buffer,
    ) -> [wgpu::BindingResource<'a>; 5] {
        [
            input.as_entire_binding(),
            wgpu::BindingResource::TextureView(&weights.view),
            weights.bias.as_entire_binding(),
            residual.unwrap_or(&self.placeholder).as_entire_binding(),
            output.as_entire_binding(),
        ]
    }

    /// Convolution with folded batchnorm as an implicit GEMM on the subgroup kernel, then
    /// residual add and ReLU if asked; returns the launch and the output shape.
    ///
    /// # Panics
    /// Unless [`Kernels::runs_gemm`] holds for the channel counts.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_conv(
        &self,
        device: &wgpu::Device,
        input: &wgpu::Buffer,
        shape: Shape,
        weights: &GemmWeights,
        kernel: usize,
        stride: usize,
        padding: Padding,
        relu: bool,
        residual: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) -> (Dispatch, Shape) {
        assert!(
            self.runs_gemm(shape.channels, weights.out_channels),
            "the subgroup GEMM kernel cannot run {shape} -> {} channels here",
            weights.out_channels
        );
        let (out_h, pad_top) = padding.resolve(shape.height, kernel, stride);
        let (out_w, pad_left) = padding.resolve(shape.width, kernel, stride);
        let out = Shape::new(shape.batch, out_h, out_w, weights.out_channels);
        let params = GemmParams {
            rows: u(out.pixels()),
            in_channels: u(shape.channels),
            out_channels: u(weights.out_channels),
            relu: relu.into(),
            has_residual: residual.is_some().into(),
            kernel: u(kernel),
            stride: u(stride),
            pad_top: u(pad_top),
            pad_left: u(pad_left),
            in_height: u(shape.height),
            in_width: u(shape.width),
            out_height: u(out_h),
            out_width: u(out_w),
            _pad: [0; 3],
        };
        let (pixels, channels) = SUBGROUP_TILE;
        let grid = tiled_grid(
            weights.out_channels.div_ceil(channels),
            out.pixels().div_ceil(pixels),
        );
        let bindings = self.gemm_bindings(input, weights, residual, output);
        let dispatch =
            self.dispatch_with(device, Kernel::ConvGemmSubgroup, &params, &bindings, grid);
        (dispatch, out)
    }

    /// Max-pool 3x3/2 'same', plus `residual` if given; returns the launch and output shape.
    pub fn max_pool(
        &self,
        device: &wgpu::Device,
        input: &wgpu::Buffer,
        shape: Shape,
        residual: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) -> (Dispatch, Shape) {
        let (out_h, pad_top) = Padding::Same.resolve(shape.height, 3, 2);
        let (out_w, pad_left) = Padding::Same.resolve(shape.width, 3, 2);
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
            device,
            Kernel::MaxPool,
            &params,
            &[input, residual.unwrap_or(&self.placeholder), output],
            linear_grid(out.len()),
        );
        (dispatch, out)
    }

    /// Elementwise ReLU over `len` values.
    pub fn relu(
        &self,
        device: &wgpu::Device,
        input: &wgpu::Buffer,
        len: usize,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = ElementwiseParams {
            len: u(len),
            _pad: [0; 3],
        };
        self.dispatch(
            device,
            Kernel::Relu,
            &params,
            &[input, output],
            linear_grid(len),
        )
    }

    /// Elementwise `a + b` over `len` values.
    pub fn residual_add(
        &self,
        device: &wgpu::Device,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        len: usize,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = ElementwiseParams {
            len: u(len),
            _pad: [0; 3],
        };
        self.dispatch(
            device,
            Kernel::ResidualAdd,
            &params,
            &[a, b, output],
            linear_grid(len),
        )
    }

    /// Global average pool of an NHWC tensor into `[batch][channels]`.
    pub fn global_avg_pool(
        &self,
        device: &wgpu::Device,
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
            device,
            Kernel::GlobalAvgPool,
            &params,
            &[input, output],
            [len.div_ceil(64) as u32, 1, 1],
        )
    }

    /// Dense layer over `batch` rows: kernel `[inputs][units]`, bias `[units]`.
    #[allow(clippy::too_many_arguments)]
    pub fn dense(
        &self,
        device: &wgpu::Device,
        input: &wgpu::Buffer,
        batch: usize,
        kernel: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        inputs: usize,
        units: usize,
        relu: bool,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = DenseParams {
            batch: u(batch),
            inputs: u(inputs),
            units: u(units),
            relu: relu.into(),
        };
        let len = batch * units;
        self.dispatch(
            device,
            Kernel::Dense,
            &params,
            &[input, kernel, bias, output],
            [len.div_ceil(64) as u32, 1, 1],
        )
    }

    /// Row-wise softmax of a `[rows][cols]` matrix.
    pub fn softmax(
        &self,
        device: &wgpu::Device,
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
            device,
            Kernel::Softmax,
            &params,
            &[input, output],
            [rows.div_ceil(64) as u32, 1, 1],
        )
    }
}

/// Runs single ops on CPU tensors: upload, one launch (or two with a batchnorm fold), read back.
#[derive(Debug)]
pub struct GpuOps {
    context: GpuContext,
    kernels: Kernels,
}

impl GpuOps {
    /// Compiles the kernels on `context`'s device.
    pub fn new(context: GpuContext) -> Self {
        let kernels = Kernels::new(&context.device);
        Self { context, kernels }
    }

    /// Chooses the convolution kernels as [`Kernels::with_subgroup_gemm`] does.
    pub fn with_subgroup_gemm(mut self, enabled: bool) -> Self {
        self.kernels = self
            .kernels
            .with_subgroup_gemm(&self.context.device, enabled);
        self
    }

    /// Whether convolutions use the subgroup GEMM kernel where the channel counts allow.
    pub fn subgroup_gemm(&self) -> bool {
        self.kernels.subgroup_gemm()
    }

    /// The device in use.
    pub fn context(&self) -> &GpuContext {
        &self.context
    }

    fn device(&self) -> &wgpu::Device {
        &self.context.device
    }

    fn run(&self, dispatches: &[Dispatch], output: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        self.context.checked("running a kernel", || {
            let mut encoder = self.device().create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.kernels.record(&mut pass, dispatches);
            }
            self.context.queue.submit([encoder.finish()]);
        })?;
        let mut values = self.context.read_f32(output, (len.max(1) * 4) as u64)?;
        values.truncate(len);
        Ok(values)
    }

    fn tensor(
        &self,
        shape: Shape,
        dispatches: &[Dispatch],
        output: &wgpu::Buffer,
    ) -> Result<Tensor> {
        Tensor::new(shape, self.run(dispatches, output, shape.len())?)
    }

    /// Folds batchnorm into `kernel` (output channels innermost): `(kernel, bias)` without padding.
    pub fn fold_batchnorm(
        &self,
        kernel: &[f32],
        out_channels: usize,
        bn: &BatchNorm<'_>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (folded, dispatch) =
            self.kernels
                .fold_batchnorm(self.device(), kernel, out_channels, bn);
        let padded = padded_channels(out_channels);
        let weights = self.run(&[dispatch], &folded.weights, folded.rows * padded)?;
        let bias = self.context.read_f32(&folded.bias, (padded * 4) as u64)?;
        let unpad = |v: &[f32]| -> Vec<f32> {
            v.chunks(padded)
                .flat_map(|r| r[..out_channels].to_vec())
                .collect()
        };
        Ok((unpad(&weights), unpad(&bias)))
    }

    /// Convolution (HWIO kernel) + batchnorm (+ ReLU), folded on the GPU.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &self,
        x: &Tensor,
        kernel: &[f32],
        bn: &BatchNorm<'_>,
        size: usize,
        stride: usize,
        padding: Padding,
        relu: bool,
    ) -> Result<Tensor> {
        let out_channels = kernel.len() / (size * size * x.shape.channels);
        let (folded, fold) = self
            .kernels
            .fold_batchnorm(self.device(), kernel, out_channels, bn);
        let input = upload(self.device(), "input", &x.data);
        let (oh, _) = padding.resolve(x.shape.height, size, stride);
        let (ow, _) = padding.resolve(x.shape.width, size, stride);
        let output = storage(
            self.device(),
            "output",
            x.shape.batch * oh * ow * out_channels,
        );
        let (conv, shape) = self.kernels.conv2d(
            self.device(),
            &input,
            x.shape,
            &folded,
            size,
            stride,
            padding,
            relu,
            &output,
        );
        self.tensor(shape, &[fold, conv], &output)
    }

    /// Convolution (HWIO kernel) + batchnorm (+ ReLU) on the subgroup GEMM kernel, with the
    /// folded weights stored at `precision`.
    ///
    /// Fails where [`Kernels::runs_gemm`] does not hold for the channel counts.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_conv(
        &self,
        x: &Tensor,
        kernel: &[f32],
        bn: &BatchNorm<'_>,
        size: usize,
        stride: usize,
        padding: Padding,
        relu: bool,
        precision: Precision,
    ) -> Result<Tensor> {
        let out_channels = kernel.len() / (size * size * x.shape.channels);
        if !self.kernels.runs_gemm(x.shape.channels, out_channels) {
            return Err(Error::Gpu(format!(
                "{} does not run the subgroup GEMM kernel for {} -> {out_channels} channels",
                self.context.description(),
                x.shape.channels
            )));
        }
        let (weights, prep) =
            self.kernels
                .fold_gemm(self.device(), kernel, out_channels, bn, precision)?;
        self.prepare(&prep)?;
        let input = upload(self.device(), "input", &x.data);
        let (oh, _) = padding.resolve(x.shape.height, size, stride);
        let (ow, _) = padding.resolve(x.shape.width, size, stride);
        let output = storage(
            self.device(),
            "output",
            x.shape.batch * oh * ow * out_channels,
        );
        let (conv, shape) = self.kernels.gemm_conv(
            self.device(),
            &input,
            x.shape,
            &weights,
            size,
            stride,
            padding,
            relu,
            None,
            &output,
        );
        self.tensor(shape, &[conv], &output)
    }

    /// Runs weight-preparation steps and waits for them.
    fn prepare(&self, prep: &WeightPrep) -> Result<()> {
        self.context.checked("folding batchnorm", || {
            let mut encoder = self.device().create_command_encoder(&Default::default());
            prep.record(&self.kernels, &mut encoder);
            self.context.queue.submit([encoder.finish()]);
        })
    }

    /// Depthwise 3x3 'same' convolution, optionally rectifying the input as it is read.
    pub fn depthwise_conv(&self, x: &Tensor, kernel: &[f32], relu_input: bool) -> Result<Tensor> {
        let input = upload(self.device(), "input", &x.data);
        let kernel = upload(self.device(), "kernel", kernel);
        let output = storage(self.device(), "output", x.shape.len());
        let d = self.kernels.depthwise_conv(
            self.device(),
            &input,
            x.shape,
            &kernel,
            relu_input,
            &output,
        );
        self.tensor(x.shape, &[d], &output)
    }

    /// Pointwise (1x1) convolution (`[cin][cout]` kernel) at `stride` + batchnorm, then
    /// `+ residual` (of the output's shape) and ReLU if asked, with the folded weights stored
    /// at `precision`.
    #[allow(clippy::too_many_arguments)]
    pub fn pointwise_conv(
        &self,
        x: &Tensor,
        kernel: &[f32],
        bn: &BatchNorm<'_>,
        stride: usize,
        relu: bool,
        residual: Option<&Tensor>,
        precision: Precision,
    ) -> Result<Tensor> {
        let out_channels = kernel.len() / x.shape.channels;
        let (weights, prep) =
            self.kernels
                .fold_gemm(self.device(), kernel, out_channels, bn, precision)?;
        self.prepare(&prep)?;
        let input = upload(self.device(), "input", &x.data);
        let residual = residual.map(|r| upload(self.device(), "residual", &r.data));
        let out_len = x.shape.batch
            * x.shape.height.div_ceil(stride)
            * x.shape.width.div_ceil(stride)
            * out_channels;
        let output = storage(self.device(), "output", out_len);
        let (d, shape) = self.kernels.pointwise_conv(
            self.device(),
            &input,
            x.shape,
            &weights,
            stride,
            relu,
            residual.as_ref(),
            &output,
        );
        self.tensor(shape, &[d], &output)
    }

    /// Max-pool 3x3/2 'same', plus `residual` (of the pooled shape) if given.
    pub fn max_pool(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let input = upload(self.device(), "input", &x.data);
        let residual = residual.map(|r| upload(self.device(), "residual", &r.data));
        let (oh, _) = Padding::Same.resolve(x.shape.height, 3, 2);
        let (ow, _) = Padding::Same.resolve(x.shape.width, 3, 2);
        let output = storage(
            self.device(),
            "output",
            x.shape.batch * oh * ow * x.shape.channels,
        );
        let (d, shape) =
            self.kernels
                .max_pool(self.device(), &input, x.shape, residual.as_ref(), &output);
        self.tensor(shape, &[d], &output)
    }

    /// Elementwise ReLU.
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        let input = upload(self.device(), "input", &x.data);
        let output = storage(self.device(), "output", x.shape.len());
        let d = self
            .kernels
            .relu(self.device(), &input, x.shape.len(), &output);
        self.tensor(x.shape, &[d], &output)
    }

    /// Elementwise sum of two tensors of the same shape.
    pub fn residual_add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.shape != b.shape {
            return Err(crate::Error::Input(format!(
                "cannot add tensors of shapes {} and {}",
                a.shape, b.shape
            )));
        }
        let (ga, gb) = (
            upload(self.device(), "a", &a.data),
            upload(self.device(), "b", &b.data),
        );
        let output = storage(self.device(), "output", a.shape.len());
        let d = self
            .kernels
            .residual_add(self.device(), &ga, &gb, a.shape.len(), &output);
        self.tensor(a.shape, &[d], &output)
    }

    /// Global average pool into `[batch][channels]`.
    pub fn global_avg_pool(&self, x: &Tensor) -> Result<Vec<f32>> {
        let input = upload(self.device(), "input", &x.data);
        let len = x.shape.batch * x.shape.channels;
        let output = storage(self.device(), "output", len);
        let d = self
            .kernels
            .global_avg_pool(self.device(), &input, x.shape, &output);
        self.run(&[d], &output, len)
    }

    /// Dense layer over the rows of `x`: kernel `[inputs][units]`, bias `[units]`.
    pub fn dense(&self, x: &[f32], kernel: &[f32], bias: &[f32], relu: bool) -> Result<Vec<f32>> {
        let units = bias.len();
        let inputs = kernel.len() / units;
        let batch = x.len() / inputs;
        let input = upload(self.device(), "input", x);
        let (k, b) = (
            upload(self.device(), "kernel", kernel),
            upload(self.device(), "bias", bias),
        );
        let output = storage(self.device(), "output", batch * units);
        let d = self.kernels.dense(
            self.device(),
            &input,
            batch,
            &k,
            &b,
            inputs,
            units,
            relu,
            &output,
        );
        self.run(&[d], &output, batch * units)
    }

    /// Softmax over each row of `cols` values.
    pub fn softmax(&self, x: &[f32], cols: usize) -> Result<Vec<f32>> {
        let input = upload(self.device(), "input", x);
        let output = storage(self.device(), "output", x.len());
        let d = self
            .kernels
            .softmax(self.device(), &input, x.len() / cols, cols, &output);
        self.run(&[d], &output, x.len())
    }
}
