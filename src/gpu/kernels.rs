//! The typed kernel registry: one WGSL file per op, one compute pipeline each, created up front.

use bytemuck::{Pod, Zeroable};

/// Every compute kernel of the runtime; each is `shaders/<name>.wgsl` with entry point `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Regular convolution (stem 3x3 and shortcut 1x1/2) with bias and optional ReLU.
    Conv2d,
    /// Depthwise 3x3 'same' convolution with optional ReLU on read.
    DepthwiseConv,
    /// The same over 4 channels per invocation, for channel counts that are multiples of 4.
    DepthwiseConvPack4,
    /// Pointwise 1x1 convolution (GEMM) with bias, optional residual add and ReLU.
    PointwiseConv,
    /// Convolution as an implicit GEMM for CPU drivers, sharing loads through subgroup
    /// broadcasts: the pointwise, shortcut and 32-channel stem convolutions there.
    ConvGemmSubgroup,
    /// Packs float32 values into float16 pairs.
    PackF16,
    /// Folds batchnorm into a convolution's kernel and bias.
    BatchnormFold,
    /// Elementwise ReLU.
    Relu,
    /// Elementwise residual add.
    ResidualAdd,
    /// Max-pool 3x3/2 'same' with optional residual add.
    MaxPool,
    /// Global average pool.
    GlobalAvgPool,
    /// Dense layer with optional ReLU.
    Dense,
    /// Row-wise softmax.
    Softmax,
}

impl Kernel {
    /// All kernels, in registry order.
    pub const ALL: [Kernel; 13] = [
        Kernel::Conv2d,
        Kernel::DepthwiseConv,
        Kernel::DepthwiseConvPack4,
        Kernel::PointwiseConv,
        Kernel::ConvGemmSubgroup,
        Kernel::PackF16,
        Kernel::BatchnormFold,
        Kernel::Relu,
        Kernel::ResidualAdd,
        Kernel::MaxPool,
        Kernel::GlobalAvgPool,
        Kernel::Dense,
        Kernel::Softmax,
    ];

    /// The shader file's stem.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Conv2d => "conv2d",
            Kernel::DepthwiseConv => "depthwise_conv",
            Kernel::DepthwiseConvPack4 => "depthwise_conv_pack4",
            Kernel::PointwiseConv => "pointwise_conv",
            Kernel::ConvGemmSubgroup => "conv_gemm_subgroup",
            Kernel::PackF16 => "pack_f16",
            Kernel::BatchnormFold => "batchnorm_fold",
            Kernel::Relu => "relu",
            Kernel::ResidualAdd => "residual_add",
            Kernel::MaxPool => "max_pool",
            Kernel::GlobalAvgPool => "global_avg_pool",
            Kernel::Dense => "dense",
            Kernel::Softmax => "softmax",
        }
    }

    /// The WGSL source, compiled into the crate.
    pub const fn source(self) -> &'static str {
        match self {
            Kernel::Conv2d => include_str!("../../shaders/conv2d.wgsl"),
            Kernel::DepthwiseConv => include_str!("../../shaders/depthwise_conv.wgsl"),
            Kernel::DepthwiseConvPack4 => include_str!("../../shaders/depthwise_conv_pack4.wgsl"),
            Kernel::PointwiseConv => include_str!("../../shaders/pointwise_conv.wgsl"),
            Kernel::ConvGemmSubgroup => {
                include_str!("../../shaders/conv_gemm_subgroup.wgsl")
            }
            Kernel::PackF16 => include_str!("../../shaders/pack_f16.wgsl"),
            Kernel::BatchnormFold => include_str!("../../shaders/batchnorm_fold.wgsl"),
            Kernel::Relu => include_str!("../../shaders/relu.wgsl"),
            Kernel::ResidualAdd => include_str!("../../shaders/residual_add.wgsl"),
            Kernel::MaxPool => include_str!("../../shaders/max_pool.wgsl"),
            Kernel::GlobalAvgPool => include_str!("../../shaders/global_avg_pool.wgsl"),
            Kernel::Dense => include_str!("../../shaders/dense.wgsl"),
            Kernel::Softmax => include_str!("../../shaders/softmax.wgsl"),
        }
    }

    /// Shader capabilities beyond core WGSL the kernel needs: `pack_f16` uses `pack2x16float`
    /// (wgpu's `DownlevelFlags::SHADER_F16_IN_F32`, missing on a few drivers) and the subgroup
    /// GEMM kernel subgroup operations (the `SUBGROUP` feature). Where the device lacks one,
    /// the kernel is simply not available.
    pub fn capabilities(self) -> naga::valid::Capabilities {
        match self {
            Kernel::PackF16 => naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
            Kernel::ConvGemmSubgroup => naga::valid::Capabilities::SUBGROUP,
            _ => naga::valid::Capabilities::empty(),
        }
    }

    /// Device features the kernel needs (see [`Kernel::capabilities`]).
    fn features(self) -> wgpu::Features {
        match self {
            Kernel::ConvGemmSubgroup => wgpu::Features::SUBGROUP,
            _ => wgpu::Features::empty(),
        }
    }

    /// Parses and validates the kernel's WGSL with naga, without a GPU; returns naga's
    /// diagnostics, with file and line, on failure.
    pub fn validate(self) -> Result<naga::valid::ModuleInfo, String> {
        let path = format!("shaders/{}.wgsl", self.name());
        let source = self.source();
        let module = naga::front::wgsl::parse_str(source)
            .map_err(|e| e.emit_to_string_with_path(source, &path))?;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), self.capabilities())
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .map_err(|e| e.emit_to_string_with_path(source, &path))
    }

    fn index(self) -> usize {
        Kernel::ALL
            .iter()
            .position(|&k| k == self)
            .expect("kernel is registered")
    }
}

/// Compiled pipelines for every [`Kernel`].
#[derive(Debug)]
pub struct Kernels {
    /// `None` for a kernel the device cannot run (see [`Kernel::capabilities`]).
    pipelines: Vec<Option<wgpu::ComputePipeline>>,
    /// Whether convolutions use [`Kernel::ConvGemmSubgroup`] where they can.
    subgroup_gemm: bool,
    /// Bound in place of an absent optional input (such as a residual).
    pub(crate) placeholder: wgpu::Buffer,
}

/// A recorded kernel launch: pipeline, bindings and grid, ready to replay in a compute pass.
#[derive(Debug)]
pub struct Dispatch {
    kernel: Kernel,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

/// Largest workgroup count per grid dimension that every adapter supports.
const MAX_GROUPS: u32 = 65535;

/// Grid for a 64-wide 1-D kernel over `len` elements, folded into y when it is long.
/// Kernels recover the index as `gid.x + gid.y * num_workgroups.x * 64`.
pub(crate) fn linear_grid(len: usize) -> [u32; 3] {
    let groups = len.div_ceil(64).max(1) as u32;
    let x = groups.min(MAX_GROUPS);
    [x, groups.div_ceil(x), 1]
}

/// Grid of `x` by `y` workgroups for a tiled kernel, folding y into z when it is long.
/// Kernels recover the workgroup row as `workgroup_id.y + workgroup_id.z * num_workgroups.y`.
pub(crate) fn tiled_grid(x: usize, y: usize) -> [u32; 3] {
    let (x, y) = (x.max(1) as u32, y.max(1) as u32);
    let rows = y.min(MAX_GROUPS);
    [x, rows, y.div_ceil(rows)]
}

impl Kernels {
    /// Compiles every kernel on `device`; kernels needing a capability the device lacks are
    /// left out (see [`Kernels::supports`]). Convolutions use the subgroup GEMM kernel on CPU
    /// adapters whose subgroups hold at least 8 invocations (see
    /// [`with_subgroup_gemm`](Self::with_subgroup_gemm)).
    pub fn new(device: &wgpu::Device) -> Self {
        Self::with_cache(device, None)
    }

    /// [`Kernels::new`], creating the pipelines through `cache` (see
    /// [`PipelineCacheFile`](super::PipelineCacheFile)).
    pub fn with_cache(device: &wgpu::Device, cache: Option<&wgpu::PipelineCache>) -> Self {
        let pipelines: Vec<_> = Kernel::ALL
            .iter()
            .map(|kernel| {
                if !device.features().contains(kernel.features()) {
                    return None;
                }
                let optional = !kernel.capabilities().is_empty();
                let scope =
                    optional.then(|| device.push_error_scope(wgpu::ErrorFilter::Validation));
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name()),
                    source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                });
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.name()),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache,
                });
                match scope.map(|scope| pollster::block_on(scope.pop())) {
                    Some(Some(_unsupported)) => None,
                    _ => Some(pipeline),
                }
            })
            .collect();
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let adapter = device.adapter_info();
        let mut kernels = Self {
            pipelines,
            subgroup_gemm: false,
            placeholder,
        };
        kernels.subgroup_gemm = kernels.supports(Kernel::ConvGemmSubgroup)
            && adapter.device_type == wgpu::DeviceType::Cpu
            && adapter.subgroup_min_size >= 8;
        kernels
    }

    /// Chooses whether convolutions use the subgroup GEMM kernel (where the channel counts
    /// allow it) or the portable ones; `enabled` is ignored where the device cannot run the
    /// subgroup kernel or its subgroups hold fewer than 8 invocations.
    pub fn with_subgroup_gemm(mut self, device: &wgpu::Device, enabled: bool) -> Self {
        self.subgroup_gemm = enabled
            && self.supports(Kernel::ConvGemmSubgroup)
            && device.adapter_info().subgroup_min_size >= 8;
        self
    }

    /// Whether convolutions use the subgroup GEMM kernel where the channel counts allow.
    pub fn subgroup_gemm(&self) -> bool {
        self.subgroup_gemm
    }

    /// Whether a convolution from `in_channels` to `out_channels` runs on the subgroup GEMM
    /// kernel (see [`Kernels::gemm_conv`]).
    pub fn runs_gemm(&self, in_channels: usize, out_channels: usize) -> bool {
        self.subgroup_gemm && in_channels % 4 == 0 && out_channels % 4 == 0
    }

    /// Whether the device can run `kernel`.
    pub fn supports(&self, kernel: Kernel) -> bool {
        self.pipelines[kernel.index()].is_some()
    }

    /// The pipeline of `kernel`.
    ///
    /// # Panics
    /// If the device cannot run `kernel`: check [`Kernels::supports`] first.
    pub fn pipeline(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        self.pipelines[kernel.index()]
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not supported on this device", kernel.name()))
    }

    /// Prepares a launch of `kernel`: binding 0 is a uniform holding `params`, bindings
    /// 1.. are `buffers` in order.
    pub fn dispatch<P: Pod>(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let resources: Vec<_> = buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.dispatch_with(device, kernel, params, &resources, workgroups)
    }

    /// [`dispatch`](Self::dispatch) with any binding resources (textures too) at 1...
    pub fn dispatch_with<P: Pod>(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        params: &P,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Dispatch {
        use wgpu::util::DeviceExt;
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(kernel.name()),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(
            resources
                .iter()
                .enumerate()
                .map(|(i, resource)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: resource.clone(),
                }),
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name()),
            layout: &self.pipeline(kernel).get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            kernel,
            bind_group,
            workgroups,
        }
    }

    /// Replays `dispatches` in order inside one compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, dispatches: &[Dispatch]) {
        for d in dispatches {
            pass.set_pipeline(self.pipeline(d.kernel));
            pass.set_bind_group(0, &d.bind_group, &[]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }
}

/// Uniform parameters of `conv2d.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct Conv2dParams {
    pub(crate) batch: u32,
    pub(crate) in_height: u32,
    pub(crate) in_width: u32,
    pub(crate) in_channels: u32,
    pub(crate) out_height: u32,
    pub(crate) out_width: u32,
    pub(crate) out_channels: u32,
    pub(crate) out_vec4s: u32,
    pub(crate) kernel: u32,
    pub(crate) stride: u32,
    pub(crate) pad_top: u32,
    pub(crate) pad_left: u32,
    pub(crate) relu: u32,
    pub(crate) _pad: [u32; 3],
}

/// Uniform parameters of `pointwise_conv.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct PointwiseParams {
    pub(crate) rows: u32,
    pub(crate) in_channels: u32,
    pub(crate) out_channels: u32,
    pub(crate) relu: u32,
    pub(crate) has_residual: u32,
    pub(crate) stride: u32,
    pub(crate) in_height: u32,
    pub(crate) in_width: u32,
    pub(crate) out_height: u32,
    pub(crate) out_width: u32,
    pub(crate) _pad: [u32; 2],
}

/// Uniform parameters of `conv_gemm_subgroup.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct GemmParams {
    pub(crate) rows: u32,
    pub(crate) in_channels: u32,
    pub(crate) out_channels: u32,
    pub(crate) relu: u32,
    pub(crate) has_residual: u32,
    pub(crate) kernel: u32,
    pub(crate) stride: u32,
    pub(crate) pad_top: u32,
    pub(crate) pad_left: u32,
    pub(crate) in_height: u32,
    pub(crate) in_width: u32,
    pub(crate) out_height: u32,
    pub(crate) out_width: u32,
    pub(crate) _pad: [u32; 3],
}

/// Uniform parameters of `depthwise_conv.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct DepthwiseParams {
    pub(crate) batch: u32,
    pub(crate) height: u32,
    pub(crate) width: u32,
    pub(crate) channels: u32,
    pub(crate) relu_input: u32,
    pub(crate) _pad: [u32; 3],
}

/// Uniform parameters of `batchnorm_fold.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct FoldParams {
    pub(crate) rows: u32,
    pub(crate) channels: u32,
    pub(crate) padded_channels: u32,
    pub(crate) epsilon: f32,
}

/// Uniform parameters of `max_pool.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct MaxPoolParams {
    pub(crate) batch: u32,
    pub(crate) in_height: u32,
    pub(crate) in_width: u32,
    pub(crate) channels: u32,
    pub(crate) out_height: u32,
    pub(crate) out_width: u32,
    pub(crate) pad_top: u32,
    pub(crate) pad_left: u32,
    pub(crate) has_residual: u32,
    pub(crate) _pad: [u32; 3],
}

/// Uniform parameters of the elementwise kernels (`relu.wgsl`, `residual_add.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct ElementwiseParams {
    pub(crate) len: u32,
    pub(crate) _pad: [u32; 3],
}

/// Uniform parameters of `global_avg_pool.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct GlobalAvgPoolParams {
    pub(crate) batch: u32,
    pub(crate) pixels: u32,
    pub(crate) channels: u32,
    pub(crate) _pad: u32,
}

/// Uniform parameters of `dense.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct DenseParams {
    pub(crate) batch: u32,
    pub(crate) inputs: u32,
    pub(crate) units: u32,
    pub(crate) relu: u32,
}

/// Uniform parameters of `softmax.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct SoftmaxParams {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) _pad: [u32; 2],
}
