//! The one place that decides which kernel runs each convolution: the variants, what the
//! adapter offers, the rule, and the assignment of every node of the graph at load (by the
//! rule, by measurement, or as the user forced it).

use super::context::GpuContext;
use super::kernels::{Kernel, Kernels};
use super::ops::{ConvGeometry, DepthwiseKernel};
use super::options::{KernelChoice, Precision};
use super::tune::TunedKernels;
use crate::error::{Error, Result};
use crate::graph::{DepthwiseGeometry, Graph, Op};
use crate::tensor::Shape;

/// A convolution kernel variant: one is picked per convolution at load (by the rule, by
/// measurement, or as forced; see [`KernelChoice`]); the plan launches what was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// `conv_direct.wgsl`: a direct convolution for the shapes the GEMMs chosen do not take.
    Direct,
    /// `conv_portable.wgsl`: a register-tiled 1x1 GEMM with no workgroup memory or
    /// subgroups, for any adapter.
    Portable,
    /// `conv_subgroup.wgsl`: an implicit GEMM sharing loads through subgroup broadcasts,
    /// for CPU drivers (subgroups of 8 or more; channel counts in 4s).
    Subgroup,
    /// `conv_tiled.wgsl`: an implicit GEMM over 64x64 output tiles whose operands are
    /// staged in workgroup memory, for GPUs.
    Tiled,
    /// `conv_tiled_f16`: `conv_tiled.wgsl` with float16 operands and products.
    TiledF16,
    /// `conv_tiled_32`: [`ConvKernel::Tiled`] over 32-pixel tiles, for small maps.
    Tiled32,
    /// `conv_tiled_32_f16`: [`ConvKernel::TiledF16`] over 32-pixel tiles.
    Tiled32F16,
    /// `conv_coopmat.wgsl`: an implicit GEMM on 16x16 float16 cooperative matrices
    /// (tensor cores).
    Coopmat,
}

impl ConvKernel {
    /// Every variant.
    pub const ALL: [ConvKernel; 8] = [
        ConvKernel::Direct,
        ConvKernel::Portable,
        ConvKernel::Subgroup,
        ConvKernel::Tiled,
        ConvKernel::TiledF16,
        ConvKernel::Tiled32,
        ConvKernel::Tiled32F16,
        ConvKernel::Coopmat,
    ];

    /// The kernel it launches.
    pub const fn kernel(self) -> Kernel {
        match self {
            ConvKernel::Direct => Kernel::ConvDirect,
            ConvKernel::Portable => Kernel::ConvPortable,
            ConvKernel::Subgroup => Kernel::ConvSubgroup,
            ConvKernel::Tiled => Kernel::ConvTiled,
            ConvKernel::TiledF16 => Kernel::ConvTiledF16,
            ConvKernel::Tiled32 => Kernel::ConvTiled32,
            ConvKernel::Tiled32F16 => Kernel::ConvTiled32F16,
            ConvKernel::Coopmat => Kernel::ConvCoopmat,
        }
    }

    /// Its shader's name.
    pub const fn name(self) -> &'static str {
        self.kernel().name()
    }

    /// Whether it computes in float16 (and so needs [`Precision::F16`]).
    pub const fn computes_f16(self) -> bool {
        matches!(
            self,
            ConvKernel::TiledF16 | ConvKernel::Tiled32F16 | ConvKernel::Coopmat
        )
    }

    /// Whether `context`'s adapter can run this variant at `precision` (the float16 ones only at
    /// [`Precision::F16`]).
    pub fn available(self, context: &GpuContext, kernels: &Kernels, precision: Precision) -> bool {
        let f16 = precision == Precision::F16;
        match self {
            ConvKernel::Direct | ConvKernel::Portable | ConvKernel::Tiled | ConvKernel::Tiled32 => {
                true
            }
            ConvKernel::Subgroup => {
                context.adapter.subgroup_min_size >= 8 && kernels.supports(self.kernel())
            }
            ConvKernel::TiledF16 | ConvKernel::Tiled32F16 => f16 && kernels.supports(self.kernel()),
            ConvKernel::Coopmat => {
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
            | ConvKernel::Tiled32
            | ConvKernel::Tiled32F16
            | ConvKernel::Coopmat => true,
        }
    }

    /// Output pixels and channels one workgroup of a GEMM variant computes.
    pub(crate) fn tile(self) -> (usize, usize) {
        match self {
            ConvKernel::Subgroup | ConvKernel::Tiled32 | ConvKernel::Tiled32F16 => (32, 64),
            ConvKernel::Tiled | ConvKernel::TiledF16 | ConvKernel::Coopmat => (64, 64),
            ConvKernel::Direct | ConvKernel::Portable => unreachable!("not a tiled GEMM"),
        }
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
        let gemm =
            match choice {
                // Tuning falls back on the rule for shapes it has no measurement of.
                KernelChoice::Auto | KernelChoice::Tuned
                    if context.adapter.device_type == wgpu::DeviceType::Cpu =>
                {
                    if available(ConvKernel::Subgroup) {
                        ConvKernel::Subgroup
                    } else {
                        ConvKernel::Portable
                    }
                }
                KernelChoice::Auto | KernelChoice::Tuned => {
                    first_available(&[ConvKernel::Coopmat, ConvKernel::TiledF16, ConvKernel::Tiled])
                }
                KernelChoice::Portable => ConvKernel::Portable,
                KernelChoice::Subgroup if available(ConvKernel::Subgroup) => ConvKernel::Subgroup,
                KernelChoice::Subgroup => {
                    return refuse("it needs the SUBGROUP feature with subgroups of at least 8")
                }
                KernelChoice::Tiled => first_available(&[ConvKernel::TiledF16, ConvKernel::Tiled]),
                KernelChoice::Coopmat if precision == Precision::F32 => {
                    return refuse("it computes in float16; ask for precision f16")
                }
                KernelChoice::Coopmat if available(ConvKernel::Coopmat) => ConvKernel::Coopmat,
                KernelChoice::Coopmat => return refuse(
                    "it needs cooperative matrices of 16x16x16 float16 -> float32 and subgroups \
                     of exactly 32 invocations",
                ),
            };
        // The workgroup-memory kernels go together: GPUs get both, CPU drivers (where
        // barriers are expensive) and the portable and subgroup choices neither.
        let depthwise_tiled = matches!(
            gemm,
            ConvKernel::Tiled | ConvKernel::TiledF16 | ConvKernel::Coopmat
        );
        Ok(Self {
            gemm,
            depthwise_tiled,
        })
    }

    /// The kernel that runs a depthwise convolution over `channels` channels with this window.
    pub(crate) fn depthwise_for(
        &self,
        channels: usize,
        geometry: DepthwiseGeometry,
    ) -> DepthwiseKernel {
        let runs = |variant: DepthwiseKernel| variant.runs(channels, geometry);
        if self.depthwise_tiled && runs(DepthwiseKernel::Tiled) {
            DepthwiseKernel::Tiled
        } else if runs(DepthwiseKernel::Pack4) {
            DepthwiseKernel::Pack4
        } else if runs(DepthwiseKernel::Scalar) {
            DepthwiseKernel::Scalar
        } else if runs(DepthwiseKernel::GeneralPack4) {
            DepthwiseKernel::GeneralPack4
        } else {
            DepthwiseKernel::General
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

/// Why a convolution runs on the kernel it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelReason {
    /// The rule of [`KernelChoice::Auto`] for this adapter.
    Rule,
    /// Measured fastest on this adapter ([`KernelChoice::Tuned`]).
    Tuned,
    /// Asked for by name (`--kernel portable|subgroup|tiled|coopmat`).
    Forced,
}

impl KernelReason {
    /// How `info` and `bench` say it.
    pub const fn name(self) -> &'static str {
        match self {
            KernelReason::Rule => "rule",
            KernelReason::Tuned => "tuned",
            KernelReason::Forced => "forced",
        }
    }
}

/// The kernel variant one convolution of the network runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvAssignment {
    /// Keras layer name of the convolution.
    pub layer: String,
    /// The variant chosen for it (for a separable convolution, its pointwise half).
    pub kernel: ConvKernel,
    /// The depthwise variant of a separable convolution.
    pub depthwise: Option<DepthwiseKernel>,
    /// Why it got them.
    pub reason: KernelReason,
}

impl ConvAssignment {
    /// The kernels' names, e.g. `depthwise_conv_tiled + conv_tiled`.
    pub fn kernels(&self) -> String {
        match self.depthwise {
            Some(depthwise) => format!("{} + {}", depthwise.name(), self.kernel.name()),
            None => self.kernel.name().to_string(),
        }
    }
}

/// A convolution as the kernels see it, at one input shape: what a tuned choice is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvShape {
    /// A convolution (or the pointwise half of a separable one) on `input`.
    Conv {
        /// The window.
        geometry: ConvGeometry,
        /// The input's shape, batch included.
        input: Shape,
        /// Output channels.
        out_channels: usize,
        /// Whether a residual is added to the output.
        residual: bool,
    },
    /// The depthwise half of a separable convolution on `input`.
    Depthwise {
        /// The input's shape, batch included.
        input: Shape,
        /// Stride, dilation, padding.
        geometry: DepthwiseGeometry,
        /// Whether a bias or ReLU follows it (the aligned layout's depthwise batchnorm).
        epilogue: bool,
    },
}

/// The convolutions of `graph` for an input of `shapes` (from [`Graph::infer_shapes`]), by
/// node: a stem or shortcut convolution gives one, a separable convolution its depthwise and
/// pointwise halves, pools none.
pub(crate) fn conv_shapes(graph: &Graph, shapes: &[Shape]) -> Vec<Vec<ConvShape>> {
    graph
        .nodes
        .iter()
        .map(|node| {
            let input = shapes[node.input.0];
            match &node.op {
                Op::Conv(c) => vec![ConvShape::Conv {
                    geometry: ConvGeometry::of(c),
                    input,
                    out_channels: c.out_channels,
                    residual: false,
                }],
                Op::Separable(s) => vec![
                    ConvShape::Depthwise {
                        input,
                        geometry: s.depthwise,
                        epilogue: s.depthwise_bn.is_some() || s.relu_mid,
                    },
                    ConvShape::Conv {
                        geometry: ConvGeometry::pointwise(1),
                        input: s.depthwise.output_shape(input),
                        out_channels: s.out_channels,
                        residual: s.residual.is_some(),
                    },
                ],
                Op::PreActivation { .. } | Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => Vec::new(),
            }
        })
        .collect()
}

/// The kernels of every convolution of `graph` (by node; `None` for nodes without one) on
/// `context`'s adapter for `choice` at `precision`: decided here, once, at load. With
/// [`KernelChoice::Tuned`], `tuned` holds the measured choices for the convolutions of
/// `shapes`; a shape it lacks gets the rule's.
pub(crate) fn assign_kernels(
    graph: &Graph,
    shapes: &[Shape],
    context: &GpuContext,
    kernels: &Kernels,
    choice: KernelChoice,
    precision: Precision,
    tuned: Option<&TunedKernels>,
) -> Result<Vec<Option<ConvAssignment>>> {
    let support = ConvSupport::new(context, kernels, choice, precision)?;
    let forced = !matches!(choice, KernelChoice::Auto | KernelChoice::Tuned);
    let by_rule = if forced {
        KernelReason::Forced
    } else {
        KernelReason::Rule
    };
    let pick = |shape: &ConvShape| -> (Option<DepthwiseKernel>, Option<ConvKernel>, KernelReason) {
        if let Some(tuned) = tuned.and_then(|t| t.get(shape)) {
            return (tuned.depthwise(), tuned.conv(), KernelReason::Tuned);
        }
        match *shape {
            ConvShape::Depthwise {
                input, geometry, ..
            } => (
                Some(support.depthwise_for(input.channels, geometry)),
                None,
                by_rule,
            ),
            ConvShape::Conv {
                geometry,
                input,
                out_channels,
                ..
            } => (
                None,
                Some(support.kernel_for(geometry, input.channels, out_channels)),
                by_rule,
            ),
        }
    };
    Ok(graph
        .nodes
        .iter()
        .zip(conv_shapes(graph, shapes))
        .map(|(node, convs)| {
            let layer = match &node.op {
                Op::Conv(c) => c.conv.clone(),
                Op::Separable(s) => s.conv.clone(),
                Op::PreActivation { .. } | Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => {
                    return None
                }
            };
            let mut assignment = ConvAssignment {
                layer,
                kernel: ConvKernel::Direct,
                depthwise: None,
                reason: by_rule,
            };
            for shape in &convs {
                let (depthwise, conv, reason) = pick(shape);
                if reason == KernelReason::Tuned {
                    assignment.reason = reason;
                }
                assignment.depthwise = assignment.depthwise.or(depthwise);
                if let Some(conv) = conv {
                    assignment.kernel = conv;
                }
            }
            Some(assignment)
        })
        .collect())
}
