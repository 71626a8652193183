//! The load stage: every node of the graph gets its weights onto the device, batchnorm folded
//! in and stored as the kernels assigned to it read them, in one prepared op per node.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::kernels::Kernels;
use crate::gpu::ops::{upload, Conv, ConvGeometry, DenseShape, DepthwiseKernel, WeightPrep};
use crate::gpu::options::Precision;
use crate::gpu::select::ConvAssignment;
use crate::graph::{Graph, Op};
use crate::weights::{Activation, Weights};

/// One node ready to launch: its device-resident weights and the kernels that read them.
#[derive(Debug)]
pub(super) enum PreparedOp {
    /// A stem or shortcut convolution.
    Conv(Conv),
    /// A separable convolution: the depthwise kernel (its batchnorm, if any, folded in as
    /// the bias) and its variant, and the pointwise half as a convolution.
    Separable {
        depthwise: wgpu::Buffer,
        depthwise_bias: Option<wgpu::Buffer>,
        depthwise_kernel: DepthwiseKernel,
        pointwise: Conv,
    },
    /// A pre-activation: its batchnorm (if any) as a per-channel scale and shift.
    PreActivation(Option<(wgpu::Buffer, wgpu::Buffer)>),
    /// A pool, which has no weights.
    Pool,
}

/// One dense layer of the head on the device.
#[derive(Debug)]
pub(super) struct HeadLayer {
    pub name: String,
    pub kernel: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    pub shape: DenseShape,
}

/// The model's weights on the device, and the launches and copies that still have to fold
/// them (recorded once, before the first pass).
#[derive(Debug)]
pub(super) struct Loaded {
    pub ops: Vec<PreparedOp>,
    pub head: Vec<HeadLayer>,
    pub prep: WeightPrep,
}

/// Uploads every node's weights for the kernels in `assigned` (by node, as
/// [`crate::gpu::select::assign_kernels`] gives them) and the head's.
pub(super) fn load(
    graph: &Graph,
    assigned: &[Option<ConvAssignment>],
    weights: &Arc<Weights>,
    kernels: &Kernels,
    precision: Precision,
) -> Result<Loaded> {
    let device = kernels.device();
    let mut prep = WeightPrep::default();
    let mut conv = |assigned: &ConvAssignment, geometry, kernel: &str, out_channels, bn| {
        let (conv, steps) = Conv::prepare(
            kernels,
            assigned.kernel,
            geometry,
            weights.tensor(kernel),
            out_channels,
            &weights.batchnorm_or_identity(bn, out_channels),
            precision,
        )?;
        prep.append(steps);
        Ok::<_, Error>(conv)
    };
    let mut ops = Vec::with_capacity(graph.nodes.len());
    for (node, assigned) in graph.nodes.iter().zip(assigned) {
        ops.push(match (&node.op, assigned) {
            (Op::Conv(c), Some(a)) => PreparedOp::Conv(conv(
                a,
                ConvGeometry::of(c),
                &format!("{}.kernel", c.conv),
                c.out_channels,
                c.bn.as_deref(),
            )?),
            (Op::Separable(s), Some(a)) => {
                let (kernel, bias) = weights.folded_depthwise(s);
                let depthwise = upload(device, &s.conv, &kernel);
                let bias = bias.map(|bias| upload(device, &s.conv, &bias));
                PreparedOp::Separable {
                    pointwise: conv(
                        a,
                        ConvGeometry::pointwise(1),
                        &format!("{}.pointwise_kernel", s.conv),
                        s.out_channels,
                        s.bn.as_deref(),
                    )?,
                    depthwise,
                    depthwise_bias: bias,
                    depthwise_kernel: a
                        .depthwise
                        .expect("a separable convolution has a depthwise kernel"),
                }
            }
            (Op::PreActivation { bn, channels }, None) => {
                PreparedOp::PreActivation(weights.scale_shift(bn.as_deref(), *channels).map(
                    |(scale, shift)| {
                        (
                            upload(device, "scale", &scale),
                            upload(device, "shift", &shift),
                        )
                    },
                ))
            }
            (Op::MaxPoolAdd { .. } | Op::GlobalAvgPool, None) => PreparedOp::Pool,
            (op, assigned) => unreachable!("{op:?} was assigned {assigned:?}"),
        });
    }
    let head = weights
        .info
        .head
        .iter()
        .map(|layer| HeadLayer {
            name: layer.name.clone(),
            kernel: upload(
                device,
                &layer.name,
                weights.tensor(&format!("{}.kernel", layer.name)),
            ),
            bias: upload(
                device,
                &layer.name,
                weights.tensor(&format!("{}.bias", layer.name)),
            ),
            shape: DenseShape {
                inputs: layer.inputs,
                units: layer.units,
                relu: layer.activation == Activation::Relu,
            },
        })
        .collect();
    Ok(Loaded { ops, head, prep })
}
