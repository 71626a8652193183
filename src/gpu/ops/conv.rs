//! Convolutions: batchnorm folded into the weights at load, the kernel variant chosen once per
//! convolution, and its launch.
//!
//! Every convolution of the network (the 3x3 stem, the 1x1/2 shortcuts and the pointwise half
//! of each separable convolution) is a [`Conv`]: its [`ConvKernel`], picked by
//! [`ConvSupport::kernel_for`] from what the adapter offers and the convolution's shape, and
//! weights stored the way that kernel reads them.

use super::{storage, u, upload, DepthwiseKernel};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{
    linear_grid, tiled_grid, Dispatch, Element, Kernel, KernelParams, Kernels,
};
use crate::graph::Padding;
use crate::tensor::Shape;
use crate::weights::BatchNorm;

/// Kernel rows one invocation of `batchnorm_fold.wgsl` folds (its `BAND`).
const FOLD_BAND: usize = 64;

/// GEMM weight rows are padded to this many output channels, so that every row of the
/// buffer they are folded into is a multiple of 256 bytes (wgpu's buffer-to-texture copy
/// alignment), in float16 too; every GEMM kernel's channel tile divides it.
const GEMM_CHANNEL_ALIGN: usize = 128;

/// How convolution weights are stored, and computed where a kernel has a float16 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32 everywhere (the default).
    #[default]
    F32,
    /// GEMM weights stored as float16, and activations too where the device has
    /// `SHADER_F16` (see [`activation_element`]). The tiled and cooperative-matrix kernels
    /// also multiply in float16; every kernel sums in float32.
    F16,
}

impl Precision {
    /// Every precision by the name the command line and the bindings give it.
    pub const NAMES: [(&'static str, Precision); 2] =
        [("f32", Precision::F32), ("f16", Precision::F16)];
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// Parses a name of [`Precision::NAMES`].
    fn from_str(name: &str) -> Result<Self> {
        from_name("precision", &Self::NAMES, name)
    }
}

/// The value named `name` in `names`, or an error listing the names of `what`.
fn from_name<T: Copy>(what: &str, names: &[(&str, T)], name: &str) -> Result<T> {
    names
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, value)| value)
        .ok_or_else(|| {
            let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            Error::Argument(format!(
                "unknown {what} {name:?}; one of: {}",
                known.join(", ")
            ))
        })
}

/// The element type of the activations at `precision` on `device`: float16 at
/// [`Precision::F16`] where the device has `SHADER_F16`, float32 otherwise.
pub fn activation_element(precision: Precision, device: &wgpu::Device) -> Element {
    if precision == Precision::F16 && device.features().contains(wgpu::Features::SHADER_F16) {
        Element::F16
    } else {
        Element::F32
    }
}

/// A convolution kernel variant. `ConvSupport::kernel_for` picks one per convolution at
/// load; the plan launches what was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// `conv2d.wgsl`: a direct convolution for the shapes the GEMMs chosen do not take.
    Direct,
    /// `pointwise_conv.wgsl`: a register-tiled 1x1 GEMM with no workgroup memory or
    /// subgroups, for any adapter.
    Portable,
    /// `conv_gemm_subgroup.wgsl`: an implicit GEMM sharing loads through subgroup broadcasts,
    /// for CPU drivers (subgroups of 8 or more; channel counts in 4s).
    Subgroup,
    /// `conv_gemm_tiled.wgsl`: an implicit GEMM over 64x64 output tiles whose operands are
    /// staged in workgroup memory, for GPUs.
    Tiled,
    /// `conv_gemm_tiled_f16.wgsl`: [`ConvKernel::Tiled`] with float16 operands and products.
    TiledF16,
    /// `conv_gemm_coopmat.wgsl`: an implicit GEMM on 16x16 float16 cooperative matrices
    /// (tensor cores).
    CoopMatrix,
}

impl ConvKernel {
    /// Every variant.
    pub const ALL: [ConvKernel; 6] = [
        ConvKernel::Direct,
        ConvKernel::Portable,
        ConvKernel::Subgroup,
        ConvKernel::Tiled,
        ConvKernel::TiledF16,
        ConvKernel::CoopMatrix,
    ];

    /// The kernel it launches.
    pub const fn kernel(self) -> Kernel {
        match self {
            ConvKernel::Direct => Kernel::Conv2d,
            ConvKernel::Portable => Kernel::PointwiseConv,
            ConvKernel::Subgroup => Kernel::ConvGemmSubgroup,
            ConvKernel::Tiled => Kernel::ConvGemmTiled,
            ConvKernel::TiledF16 => Kernel::ConvGemmTiledF16,
            ConvKernel::CoopMatrix => Kernel::ConvGemmCoopMatrix,
        }
    }

    /// Its shader's name.
    pub const fn name(self) -> &'static str {
        self.kernel().name()
    }

    /// Whether it computes in float16 (and so needs [`Precision::F16`]).
    pub const fn computes_f16(self) -> bool {
        matches!(self, ConvKernel::TiledF16 | ConvKernel::CoopMatrix)
    }

    /// Whether `context`'s adapter can run this variant at `precision` (the float16 ones only at
    /// [`Precision::F16`]).
    pub fn available(self, context: &GpuContext, kernels: &Kernels, precision: Precision) -> bool {
        let f16 = precision == Precision::F16;
        match self {
            ConvKernel::Direct | ConvKernel::Portable | ConvKernel::Tiled => true,
            ConvKernel::Subgroup => {
                context.adapter.subgroup_min_size >= 8 && kernels.supports(self.kernel())
            }
            ConvKernel::TiledF16 => f16 && kernels.supports(self.kernel()),
            ConvKernel::CoopMatrix => {
                f16 && context.cooperative_matrix() && kernels.supports(self.kernel())
            }
        }
    }

    /// Whether it can run a convolution of this geometry and these channel counts.
    pub fn runs(self, geometry: ConvGeometry, in_channels: usize, out_channels: usize) -> bool {
        match self {
            ConvKernel::Portable => geometry.kernel == 1,
            ConvKernel::Subgroup => in_channels.is_multiple_of(4) && out_channels.is_multiple_of(4),
            ConvKernel::Direct
            | ConvKernel::Tiled
            | ConvKernel::TiledF16
            | ConvKernel::CoopMatrix => true,
        }
    }

    /// Output pixels and channels one workgroup of a GEMM variant computes.
    fn tile(self) -> (usize, usize) {
        match self {
            ConvKernel::Subgroup => (32, 64),
            ConvKernel::Tiled | ConvKernel::TiledF16 | ConvKernel::CoopMatrix => (64, 64),
            ConvKernel::Direct | ConvKernel::Portable => unreachable!("not a tiled GEMM"),
        }
    }
}

/// Which convolution kernels to use: [`KernelChoice::Auto`] picks per adapter; the others ask
/// for one variant, which runs every convolution it can (the rest fall back to the portable
/// kernels), and fail at load where the adapter cannot run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// The subgroup GEMM on CPU drivers that have subgroups of 8 or more; on GPUs the
    /// cooperative-matrix GEMM (float16, where offered), else the tiled GEMM (its float16
    /// variant at [`Precision::F16`] where the device has float16 arithmetic); otherwise the
    /// portable kernels.
    #[default]
    Auto,
    /// The portable pointwise kernel and the direct convolution.
    Portable,
    /// The subgroup GEMM.
    Subgroup,
    /// The tiled GEMM (float16 at [`Precision::F16`] where the device can).
    Tiled,
    /// The cooperative-matrix GEMM (needs [`Precision::F16`]).
    CoopMatrix,
}

impl KernelChoice {
    /// Every choice by the name the command line and the bindings give it.
    pub const NAMES: [(&'static str, KernelChoice); 5] = [
        ("auto", KernelChoice::Auto),
        ("portable", KernelChoice::Portable),
        ("subgroup", KernelChoice::Subgroup),
        ("tiled", KernelChoice::Tiled),
        ("coopmat", KernelChoice::CoopMatrix),
    ];
}

impl std::str::FromStr for KernelChoice {
    type Err = Error;

    /// Parses a name of [`KernelChoice::NAMES`].
    fn from_str(name: &str) -> Result<Self> {
        from_name("convolution kernel", &Self::NAMES, name)
    }
}

/// What the adapter offers the convolution kernels, and the user's choice: the one place that
/// decides which kernel runs each convolution, the depthwise ones included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSupport {
    /// The GEMM variant convolutions run on where their shape allows.
    gemm: ConvKernel,
    /// Whether depthwise convolutions stage their input in workgroup memory (GPUs) where
    /// their channels come in 4s.
    depthwise_tiled: bool,
}

impl ConvSupport {
    /// Resolves `choice` on `context`'s adapter at `precision`; fails, naming the adapter,
    /// where the adapter cannot run the variant asked for.
    pub(crate) fn new(
        context: &GpuContext,
        kernels: &Kernels,
        choice: KernelChoice,
        precision: Precision,
    ) -> Result<Self> {
        let available = |variant| ConvKernel::available(variant, context, kernels, precision);
        let first_available = |variants: &[ConvKernel]| {
            variants
                .iter()
                .copied()
                .find(|&v| available(v))
                .unwrap_or(ConvKernel::Tiled)
        };
        let refuse = |why: &str| {
            Err(Error::Gpu(format!(
                "{} cannot run the {choice:?} convolution kernel: {why}",
                context.description()
            )))
        };
        let gemm = match choice {
            KernelChoice::Auto if context.adapter.device_type == wgpu::DeviceType::Cpu => {
                if available(ConvKernel::Subgroup) {
                    ConvKernel::Subgroup
                } else {
                    ConvKernel::Portable
                }
            }
            KernelChoice::Auto => first_available(&[
                ConvKernel::CoopMatrix,
                ConvKernel::TiledF16,
                ConvKernel::Tiled,
            ]),
            KernelChoice::Portable => ConvKernel::Portable,
            KernelChoice::Subgroup if available(ConvKernel::Subgroup) => ConvKernel::Subgroup,
            KernelChoice::Subgroup => {
                return refuse("it needs the SUBGROUP feature with subgroups of at least 8")
            }
            KernelChoice::Tiled => first_available(&[ConvKernel::TiledF16, ConvKernel::Tiled]),
            KernelChoice::CoopMatrix if precision == Precision::F32 => {
                return refuse("it computes in float16; ask for precision f16")
            }
            KernelChoice::CoopMatrix if available(ConvKernel::CoopMatrix) => ConvKernel::CoopMatrix,
            KernelChoice::CoopMatrix => {
                return refuse(
                    "it needs cooperative matrices of 16x16x16 float16 -> float32 and subgroups \
                     of exactly 32 invocations",
                )
            }
        };
        // The workgroup-memory kernels go together: GPUs get both, CPU drivers (where
        // barriers are expensive) and the portable and subgroup choices neither.
        let depthwise_tiled = matches!(
            gemm,
            ConvKernel::Tiled | ConvKernel::TiledF16 | ConvKernel::CoopMatrix
        );
        Ok(Self {
            gemm,
            depthwise_tiled,
        })
    }

    /// The kernel that runs a depthwise convolution over `channels` channels.
    pub(crate) fn depthwise_for(&self, channels: usize) -> DepthwiseKernel {
        if self.depthwise_tiled && DepthwiseKernel::Tiled.runs(channels) {
            DepthwiseKernel::Tiled
        } else if DepthwiseKernel::Pack4.runs(channels) {
            DepthwiseKernel::Pack4
        } else {
            DepthwiseKernel::Plain
        }
    }

    /// The kernel that runs a convolution of this geometry and these channel counts.
    pub(crate) fn kernel_for(
        &self,
        geometry: ConvGeometry,
        in_channels: usize,
        out_channels: usize,
    ) -> ConvKernel {
        if self.gemm.runs(geometry, in_channels, out_channels) {
            self.gemm
        } else if ConvKernel::Portable.runs(geometry, in_channels, out_channels) {
            ConvKernel::Portable
        } else {
            ConvKernel::Direct
        }
    }
}

/// A convolution's window: square `kernel`, `stride` and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// The output shape for an input of `shape` and `out_channels` output channels.
    pub fn output_shape(self, shape: Shape, out_channels: usize) -> Shape {
        self.resolve(shape, out_channels).0
    }

    /// The output shape for an input of `shape` and `out_channels` channels, with the top and
    /// left padding.
    fn resolve(self, shape: Shape, out_channels: usize) -> (Shape, usize, usize) {
        let (out_h, pad_top) = self.padding.resolve(shape.height, self.kernel, self.stride);
        let (out_w, pad_left) = self.padding.resolve(shape.width, self.kernel, self.stride);
        let out = Shape::new(shape.batch, out_h, out_w, out_channels);
        (out, pad_top, pad_left)
    }
}

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
    view: wgpu::TextureView,
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
    /// Storage buffers, for [`ConvKernel::Direct`].
    Direct(FoldedConv),
    /// A texture, for the GEMM kernels.
    Gemm(GemmWeights),
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
fn direct_padded_channels(channels: usize) -> usize {
    channels.div_ceil(8) * 8
}

/// Folds batchnorm into a convolution kernel (HWIO, output channels innermost; a pointwise
/// kernel is `[in_channels][out_channels]`) and stores it as a GEMM weight texture at
/// `precision`; returns the weights and the steps that fill them.
///
/// Fails when the device cannot pack float16 (for [`Precision::F16`]) or the texture would
/// exceed the device's largest 2-D texture.
fn fold_gemm(
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

/// Uniform parameters of `conv2d.wgsl`.
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

/// Uniform parameters of every GEMM kernel (`pointwise_conv.wgsl`, `conv_gemm_*.wgsl`).
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
                let prep = WeightPrep {
                    dispatches: vec![fold],
                    copies: Vec::new(),
                };
                (ConvWeights::Direct(folded), prep)
            }
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

    /// The launch of this convolution on `input` of `shape` into `output`, adding `residual`
    /// (of the output's shape) and rectifying if asked; returns it with the output shape.
    ///
    /// # Panics
    /// If a residual is given to [`ConvKernel::Direct`], which has none.
    pub fn launch(
        &self,
        kernels: &Kernels,
        input: &wgpu::Buffer,
        shape: Shape,
        relu: bool,
        residual: Option<&wgpu::Buffer>,
        output: &wgpu::Buffer,
    ) -> (Dispatch, Shape) {
        let g = self.geometry;
        let (out, pad_top, pad_left) = g.resolve(shape, self.out_channels());
        let dispatch = match &self.weights {
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
                    Kernel::Conv2d,
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
        };
        (dispatch, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<FoldParams>(Kernel::BatchnormFold);
        assert_params_match::<PackParams>(Kernel::PackF16);
        assert_params_match::<DirectParams>(Kernel::Conv2d);
        for variant in ConvKernel::ALL {
            if variant != ConvKernel::Direct {
                assert_params_match::<GemmParams>(variant.kernel());
            }
        }
    }

    #[test]
    fn names_parse_to_their_values_and_unknown_names_list_the_known_ones() {
        for (name, choice) in KernelChoice::NAMES {
            assert_eq!(name.parse::<KernelChoice>().unwrap(), choice);
        }
        for (name, precision) in Precision::NAMES {
            assert_eq!(name.parse::<Precision>().unwrap(), precision);
        }
        let error = "fast".parse::<KernelChoice>().unwrap_err().to_string();
        assert!(
            error.contains("\"fast\"")
                && error.contains("auto, portable, subgroup, tiled, coopmat"),
            "{error}"
        );
        let error = "f64".parse::<Precision>().unwrap_err().to_string();
        assert!(error.contains("one of: f32, f16"), "{error}");
    }
}
