//! The typed kernel registry: one WGSL file per kernel, its pipeline created the first time the
//! kernel is asked for and kept (a model asks for every kernel it launches while it loads), so
//! variants a device never runs cost nothing.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytemuck::Pod;

/// Shader fragments that kernels take in with a line `#include "<name>"`, by name (files in
/// `shaders/fragments/`): WGSL has no includes, and these declarations are shared.
const FRAGMENTS: [(&str, &str); 5] = [
    (
        "conv_gemm_interface.wgsl",
        include_str!("../../shaders/fragments/conv_gemm_interface.wgsl"),
    ),
    (
        "conv_gemm_store.wgsl",
        include_str!("../../shaders/fragments/conv_gemm_store.wgsl"),
    ),
    (
        "conv_gemm_window.wgsl",
        include_str!("../../shaders/fragments/conv_gemm_window.wgsl"),
    ),
    (
        "depthwise_interface.wgsl",
        include_str!("../../shaders/fragments/depthwise_interface.wgsl"),
    ),
    (
        "depthwise_general.wgsl",
        include_str!("../../shaders/fragments/depthwise_general.wgsl"),
    ),
];

/// `source` with each `#include "<name>"` line replaced by that fragment.
///
/// # Panics
/// On an include of an unknown fragment (a bug in a shader file; `tests/shaders.rs` catches it).
fn expand_includes(source: &'static str) -> Cow<'static, str> {
    if !source.contains("#include \"") {
        return Cow::Borrowed(source);
    }
    let lines: Vec<&str> = source
        .lines()
        .map(|line| {
            let Some(name) = line
                .strip_prefix("#include \"")
                .and_then(|rest| rest.strip_suffix('"'))
            else {
                return line;
            };
            FRAGMENTS
                .iter()
                .find(|(fragment, _)| *fragment == name)
                .unwrap_or_else(|| panic!("no shader fragment {name}"))
                .1
        })
        .collect();
    Cow::Owned(lines.join("\n"))
}

/// The element type of the activation buffers the kernels read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Element {
    /// float32 (the default).
    #[default]
    F32,
    /// float16, half the memory and traffic; kernels compute in float32 or float16 inside and
    /// round on store. Needs the device's `SHADER_F16`.
    F16,
}

impl Element {
    /// Both element types.
    pub const ALL: [Element; 2] = [Element::F32, Element::F16];

    /// Bytes per value.
    pub const fn bytes(self) -> usize {
        match self {
            Element::F32 => 4,
            Element::F16 => 2,
        }
    }
}

/// Every compute kernel of the runtime; each is `shaders/<file>.wgsl` with entry point `main`
/// (see [`Kernel::file`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Direct convolution of any size and stride, with bias and optional ReLU.
    ConvDirect,
    /// Depthwise 3x3 'same' convolution with optional ReLU on read.
    DepthwiseConvScalar,
    /// The same over 4 channels per invocation, for channel counts that are multiples of 4.
    DepthwiseConvPack4,
    /// The same with an 8x8-pixel, 32-channel tile's input staged in workgroup memory, for
    /// GPUs.
    DepthwiseConvTiled,
    /// Depthwise 3x3 of any stride, dilation and padding, one output value per invocation.
    DepthwiseConvGeneral,
    /// The same over 4 channels per invocation, for channel counts that are multiples of 4.
    DepthwiseConvGeneralPack4,
    /// Pointwise 1x1 convolution (GEMM) with a register tile and no workgroup memory.
    ConvPortable,
    /// Convolution as an implicit GEMM for CPU drivers, sharing loads through subgroup
    /// broadcasts.
    ConvSubgroup,
    /// Convolution as an implicit GEMM with operand tiles staged in workgroup memory, for GPUs.
    ConvTiled,
    /// [`Kernel::ConvTiled`] with float16 operand tiles and products, float32 sums.
    ConvTiledF16,
    /// [`Kernel::ConvTiled`] over 32-pixel tiles.
    ConvTiled32,
    /// [`Kernel::ConvTiledF16`] over 32-pixel tiles.
    ConvTiled32F16,
    /// Convolution as an implicit GEMM on cooperative matrices (tensor cores), float16
    /// operands and float32 sums.
    ConvCoopmat,
    /// Packs float32 values into float16 pairs.
    PackF16,
    /// Folds batchnorm into a convolution's kernel and bias.
    BatchnormFold,
    /// Elementwise ReLU.
    Relu,
    /// Per-channel scale and shift (a folded batchnorm), then ReLU.
    ScaleShiftRelu,
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
    pub const ALL: [Kernel; 22] = [
        Kernel::ConvDirect,
        Kernel::DepthwiseConvScalar,
        Kernel::DepthwiseConvPack4,
        Kernel::DepthwiseConvTiled,
        Kernel::DepthwiseConvGeneral,
        Kernel::DepthwiseConvGeneralPack4,
        Kernel::ConvPortable,
        Kernel::ConvSubgroup,
        Kernel::ConvTiled,
        Kernel::ConvTiledF16,
        Kernel::ConvTiled32,
        Kernel::ConvTiled32F16,
        Kernel::ConvCoopmat,
        Kernel::PackF16,
        Kernel::BatchnormFold,
        Kernel::Relu,
        Kernel::ScaleShiftRelu,
        Kernel::ResidualAdd,
        Kernel::MaxPool,
        Kernel::GlobalAvgPool,
        Kernel::Dense,
        Kernel::Softmax,
    ];

    /// The kernel's name: its shader file's stem, but for derived variants.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::ConvDirect => "conv_direct",
            Kernel::DepthwiseConvScalar => "depthwise_conv_scalar",
            Kernel::DepthwiseConvPack4 => "depthwise_conv_pack4",
            Kernel::DepthwiseConvTiled => "depthwise_conv_tiled",
            Kernel::DepthwiseConvGeneral => "depthwise_conv_general",
            Kernel::DepthwiseConvGeneralPack4 => "depthwise_conv_general_pack4",
            Kernel::ConvPortable => "conv_portable",
            Kernel::ConvSubgroup => "conv_subgroup",
            Kernel::ConvTiled => "conv_tiled",
            Kernel::ConvTiledF16 => "conv_tiled_f16",
            Kernel::ConvTiled32 => "conv_tiled_32",
            Kernel::ConvTiled32F16 => "conv_tiled_32_f16",
            Kernel::ConvCoopmat => "conv_coopmat",
            Kernel::PackF16 => "pack_f16",
            Kernel::BatchnormFold => "batchnorm_fold",
            Kernel::Relu => "relu",
            Kernel::ScaleShiftRelu => "scale_shift_relu",
            Kernel::ResidualAdd => "residual_add",
            Kernel::MaxPool => "max_pool",
            Kernel::GlobalAvgPool => "global_avg_pool",
            Kernel::Dense => "dense",
            Kernel::Softmax => "softmax",
        }
    }

    /// The stem of the shader file the kernel is built from: its name, except for the
    /// variants of `conv_tiled` (float16 operands, 32-pixel tiles).
    pub const fn file(self) -> &'static str {
        match self {
            Kernel::ConvTiledF16 | Kernel::ConvTiled32 | Kernel::ConvTiled32F16 => {
                Kernel::ConvTiled.name()
            }
            _ => self.name(),
        }
    }

    /// Whether the kernel multiplies float16 operands.
    const fn f16_operands(self) -> bool {
        matches!(self, Kernel::ConvTiledF16 | Kernel::ConvTiled32F16)
    }

    /// Pixel rows per invocation of a `conv_tiled` variant other than its file's (whose
    /// tile is 64 pixels).
    const fn tile_rows(self) -> Option<u32> {
        match self {
            Kernel::ConvTiled32 | Kernel::ConvTiled32F16 => Some(2),
            _ => None,
        }
    }

    /// Whether the kernel reads or writes activations, and so has a variant for each
    /// [`Element`]; the others exist for [`Element::F32`] only.
    pub const fn stores_activations(self) -> bool {
        matches!(
            self,
            Kernel::ConvDirect
                | Kernel::DepthwiseConvScalar
                | Kernel::DepthwiseConvPack4
                | Kernel::DepthwiseConvTiled
                | Kernel::DepthwiseConvGeneral
                | Kernel::DepthwiseConvGeneralPack4
                | Kernel::ScaleShiftRelu
                | Kernel::ConvPortable
                | Kernel::ConvSubgroup
                | Kernel::ConvTiled
                | Kernel::ConvTiledF16
                | Kernel::ConvTiled32
                | Kernel::ConvTiled32F16
                | Kernel::ConvCoopmat
                | Kernel::MaxPool
                | Kernel::GlobalAvgPool
        )
    }

    /// Whether the kernel exists for activations of `element`.
    pub const fn has_variant(self, element: Element) -> bool {
        matches!(element, Element::F32) || self.stores_activations()
    }

    /// The WGSL source for activations of `element` (files compiled into the crate, fragments
    /// included). A float16 variant is the file with `enable f16;` and one alias changed:
    /// `Operand` (the tiled GEMM's arithmetic) or `Stored` (the activations' element); a tile
    /// variant has its `ROWS` constant changed.
    ///
    /// # Panics
    /// Where the kernel has no `element` variant (see [`Kernel::has_variant`]).
    pub fn source(self, element: Element) -> Cow<'static, str> {
        assert!(
            self.has_variant(element),
            "{} has no {element:?} variant",
            self.name()
        );
        let mut source = expand_includes(self.file_source());
        let mut float16 = false;
        let mut to_f16 = |source: &mut Cow<'static, str>, alias: &str| {
            let declared = format!("alias {alias} = f32;");
            assert!(
                source.contains(&declared),
                "{} declares {alias}",
                self.file()
            );
            *source = Cow::Owned(source.replace(&declared, &format!("alias {alias} = f16;")));
            float16 = true;
        };
        if self.f16_operands() {
            to_f16(&mut source, "Operand");
        }
        if let Some(rows) = self.tile_rows() {
            let declared = "const ROWS: u32 = 4u;";
            assert!(source.contains(declared), "{} declares ROWS", self.file());
            let changed = format!("const ROWS: u32 = {rows}u;");
            source = Cow::Owned(source.replace(declared, &changed));
        }
        if element == Element::F16 {
            to_f16(&mut source, "Stored");
        }
        if float16 && !source.lines().any(|line| line.trim() == "enable f16;") {
            source = Cow::Owned(format!("enable f16;\n{source}"));
        }
        source
    }

    /// The text of [`Kernel::file`].
    const fn file_source(self) -> &'static str {
        match self {
            Kernel::ConvDirect => include_str!("../../shaders/conv_direct.wgsl"),
            Kernel::DepthwiseConvScalar => include_str!("../../shaders/depthwise_conv_scalar.wgsl"),
            Kernel::DepthwiseConvPack4 => include_str!("../../shaders/depthwise_conv_pack4.wgsl"),
            Kernel::DepthwiseConvTiled => include_str!("../../shaders/depthwise_conv_tiled.wgsl"),
            Kernel::DepthwiseConvGeneral => {
                include_str!("../../shaders/depthwise_conv_general.wgsl")
            }
            Kernel::DepthwiseConvGeneralPack4 => {
                include_str!("../../shaders/depthwise_conv_general_pack4.wgsl")
            }
            Kernel::ConvPortable => include_str!("../../shaders/conv_portable.wgsl"),
            Kernel::ConvSubgroup => include_str!("../../shaders/conv_subgroup.wgsl"),
            Kernel::ConvTiled
            | Kernel::ConvTiledF16
            | Kernel::ConvTiled32
            | Kernel::ConvTiled32F16 => include_str!("../../shaders/conv_tiled.wgsl"),
            Kernel::ConvCoopmat => include_str!("../../shaders/conv_coopmat.wgsl"),
            Kernel::PackF16 => include_str!("../../shaders/pack_f16.wgsl"),
            Kernel::BatchnormFold => include_str!("../../shaders/batchnorm_fold.wgsl"),
            Kernel::Relu => include_str!("../../shaders/relu.wgsl"),
            Kernel::ScaleShiftRelu => include_str!("../../shaders/scale_shift_relu.wgsl"),
            Kernel::ResidualAdd => include_str!("../../shaders/residual_add.wgsl"),
            Kernel::MaxPool => include_str!("../../shaders/max_pool.wgsl"),
            Kernel::GlobalAvgPool => include_str!("../../shaders/global_avg_pool.wgsl"),
            Kernel::Dense => include_str!("../../shaders/dense.wgsl"),
            Kernel::Softmax => include_str!("../../shaders/softmax.wgsl"),
        }
    }

    /// Shader capabilities beyond core WGSL the kernel needs: `pack_f16` uses `pack2x16float`
    /// (wgpu's `DownlevelFlags::SHADER_F16_IN_F32`, missing on a few drivers), the subgroup
    /// GEMM subgroup operations, the float16 GEMMs float16 arithmetic, and the
    /// cooperative-matrix GEMM cooperative matrices. Where the device lacks one, the kernel is
    /// simply not available.
    pub fn capabilities(self, element: Element) -> naga::valid::Capabilities {
        use naga::valid::Capabilities as C;
        let own = match self {
            Kernel::PackF16 => C::SHADER_FLOAT16_IN_FLOAT32,
            Kernel::ConvSubgroup => C::SUBGROUP,
            Kernel::ConvTiledF16 | Kernel::ConvTiled32F16 => C::SHADER_FLOAT16,
            Kernel::ConvCoopmat => C::SHADER_FLOAT16 | C::COOPERATIVE_MATRIX | C::SUBGROUP,
            _ => C::empty(),
        };
        match element {
            Element::F32 => own,
            Element::F16 => own | C::SHADER_FLOAT16,
        }
    }

    /// Device features the kernel needs for activations of `element` (see
    /// [`Kernel::capabilities`]).
    pub fn features(self, element: Element) -> wgpu::Features {
        use wgpu::Features as F;
        let own = match self {
            Kernel::ConvSubgroup => F::SUBGROUP,
            Kernel::ConvTiledF16 | Kernel::ConvTiled32F16 => F::SHADER_F16,
            Kernel::ConvCoopmat => F::SHADER_F16 | F::SUBGROUP | F::EXPERIMENTAL_COOPERATIVE_MATRIX,
            _ => F::empty(),
        };
        match element {
            Element::F32 => own,
            Element::F16 => own | F::SHADER_F16,
        }
    }

    /// Parses the kernel's WGSL with naga, without a GPU; returns naga's diagnostics, with
    /// file and line (of the source with its fragments included), on failure.
    pub fn parse(self, element: Element) -> Result<naga::Module, String> {
        let source = self.source(element);
        naga::front::wgsl::parse_str(&source)
            .map_err(|e| e.emit_to_string_with_path(&source, &self.path()))
    }

    /// Parses and validates the kernel's WGSL with naga, without a GPU; returns naga's
    /// diagnostics, with file and line (of the source with its fragments included), on failure.
    pub fn validate(self, element: Element) -> Result<naga::valid::ModuleInfo, String> {
        let module = self.parse(element)?;
        let capabilities = self.capabilities(element);
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .map_err(|e| e.emit_to_string_with_path(&self.source(element), &self.path()))
    }

    fn path(self) -> String {
        format!("shaders/{}.wgsl", self.file())
    }

    fn index(self) -> usize {
        Kernel::ALL
            .iter()
            .position(|&k| k == self)
            .expect("kernel is registered")
    }
}

/// The uniform parameters of a kernel: a `#[repr(C)]` struct of 4-byte fields laid out as the
/// kernel's WGSL `Params` struct (each op module checks this against naga's layout).
pub(crate) trait KernelParams: Pod {}

/// The kernels' pipelines on one device for activations of one [`Element`], each created the
/// first time it is asked for; clones share them.
#[derive(Debug, Clone)]
pub struct Kernels {
    device: wgpu::Device,
    element: Element,
    cache: Option<wgpu::PipelineCache>,
    /// Per kernel, once created: `None` where the device cannot run it.
    pipelines: Arc<[OnceLock<Option<wgpu::ComputePipeline>>; Kernel::ALL.len()]>,
    /// Bound in place of an absent optional input (such as a residual).
    pub(crate) placeholder: wgpu::Buffer,
}

/// A recorded kernel launch: pipeline, bindings and grid, ready to replay in a compute pass.
#[derive(Debug)]
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
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
    /// The registry for `device` and activations of `element`; no pipeline is created yet.
    pub fn new(device: &wgpu::Device, element: Element) -> Self {
        Self::with_cache(device, element, None)
    }

    /// [`Kernels::new`], creating the pipelines through `cache` (natively kept in a file
    /// between runs: `PipelineCacheFile`).
    pub fn with_cache(
        device: &wgpu::Device,
        element: Element,
        cache: Option<&wgpu::PipelineCache>,
    ) -> Self {
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Self {
            device: device.clone(),
            element,
            cache: cache.cloned(),
            pipelines: Arc::new(std::array::from_fn(|_| OnceLock::new())),
            placeholder,
        }
    }

    /// The device the pipelines are created on.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The element type of the activations these kernels read and write.
    pub fn element(&self) -> Element {
        self.element
    }

    /// The variant of `kernel` these kernels run: activations of [`Kernels::element`] where it
    /// touches activations, float32 otherwise.
    fn variant(&self, kernel: Kernel) -> Element {
        if kernel.stores_activations() {
            self.element
        } else {
            Element::F32
        }
    }

    /// Whether the device can run `kernel` (creating its pipeline to find out).
    pub fn supports(&self, kernel: Kernel) -> bool {
        self.try_pipeline(kernel).is_some()
    }

    /// The pipeline of `kernel`, created now if it was not yet; `None` where the device lacks
    /// a feature the kernel needs or refuses its shader.
    pub fn try_pipeline(&self, kernel: Kernel) -> Option<&wgpu::ComputePipeline> {
        self.pipelines[kernel.index()]
            .get_or_init(|| self.create(kernel))
            .as_ref()
    }

    fn create(&self, kernel: Kernel) -> Option<wgpu::ComputePipeline> {
        let device = &self.device;
        let element = self.variant(kernel);
        if !device.features().contains(kernel.features(element)) {
            return None;
        }
        // Kernels with optional capabilities may still be refused by the device's compiler.
        // A browser gives its verdict only asynchronously: there a refusal surfaces as an
        // error of the enclosing `GpuContext::checked` instead.
        #[cfg(not(target_arch = "wasm32"))]
        let scope = (!kernel.capabilities(element).is_empty())
            .then(|| device.push_error_scope(wgpu::ErrorFilter::Validation));
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name()),
            source: wgpu::ShaderSource::Wgsl(kernel.source(element)),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name()),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: self.cache.as_ref(),
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(scope) = scope {
            if pollster::block_on(scope.pop()).is_some() {
                return None;
            }
        }
        Some(pipeline)
    }

    /// The pipeline of `kernel`.
    ///
    /// # Panics
    /// If the device cannot run `kernel`: check [`Kernels::supports`] first.
    pub fn pipeline(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        self.try_pipeline(kernel)
            .unwrap_or_else(|| panic!("{} is not supported on this device", kernel.name()))
    }

    /// Prepares a launch of `kernel`: binding 0 is a uniform holding `params`, bindings
    /// 1.. are `buffers` in order.
    pub(crate) fn dispatch<P: KernelParams>(
        &self,
        kernel: Kernel,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let resources: Vec<_> = buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.dispatch_with(kernel, params, &resources, workgroups)
    }

    /// [`dispatch`](Self::dispatch) with any binding resources (textures too) at 1...
    pub(crate) fn dispatch_with<P: KernelParams>(
        &self,
        kernel: Kernel,
        params: &P,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Dispatch {
        use wgpu::util::DeviceExt;
        let device = &self.device;
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
        let pipeline = self.pipeline(kernel);
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            pipeline: pipeline.clone(),
            bind_group,
            workgroups,
        }
    }

    /// Replays `dispatches` in order inside one compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, dispatches: &[Dispatch]) {
        for d in dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }
}

/// Checks that `P` matches the WGSL uniform `params` of `kernel`: the same size, and 4-byte
/// members at consecutive offsets (every field of every params struct is a `u32` or `f32`).
#[cfg(test)]
pub(crate) fn assert_params_match<P: KernelParams>(kernel: Kernel) {
    let module = kernel.parse(Element::F32).unwrap();
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let (_, params) = module
        .global_variables
        .iter()
        .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
        .unwrap_or_else(|| panic!("{} has no uniform", kernel.name()));
    let naga::TypeInner::Struct { members, span } = &module.types[params.ty].inner else {
        panic!("{}'s uniform is not a struct", kernel.name());
    };
    assert_eq!(
        *span as usize,
        std::mem::size_of::<P>(),
        "{}: WGSL Params size vs Rust",
        kernel.name()
    );
    for (i, member) in members.iter().enumerate() {
        assert_eq!(
            member.offset as usize,
            4 * i,
            "{}: {:?}",
            kernel.name(),
            member.name
        );
        assert_eq!(
            layouter[member.ty].size,
            4,
            "{}: {:?}",
            kernel.name(),
            member.name
        );
    }
    assert_eq!(
        members.len() * 4,
        std::mem::size_of::<P>(),
        "{}",
        kernel.name()
    );
}
