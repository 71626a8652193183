//! The plan stage: for one input shape, every activation buffer allocated once (reused as the
//! graph's liveness allows) and every launch recorded once, from the graph's shapes.

use super::load::{HeadLayer, PreparedOp};
use crate::error::Result;
use crate::gpu::kernels::{Dispatch, Kernels};
use crate::gpu::ops::{activation_buffer, storage, DenseShape, DepthwiseWork};
use crate::graph::{Graph, Op, ValueId};
use crate::profile::{LaunchTiming, OpKind};
use crate::tensor::Shape;

/// Everything needed to run one input shape: buffers allocated once, launches recorded once.
#[derive(Debug)]
pub(super) struct Plan {
    pub batch: usize,
    pub input: wgpu::Buffer,
    pub dispatches: Vec<Dispatch>,
    /// What each dispatch computes; `ms` is filled in by a profile.
    pub launches: Vec<LaunchTiming>,
    /// Bytes of the activation buffers (input and outputs excluded).
    pub activation_bytes: u64,
    /// `(buffer, floats)` copied back after each run: embeddings, then logits and probabilities.
    pub outputs: Vec<(wgpu::Buffer, usize)>,
    pub readback: wgpu::Buffer,
    /// The last feature map (what the global average pool reads), still intact after a run
    /// since nothing later reuses its buffer.
    pub features: (wgpu::Buffer, Shape),
}

/// What a plan is built from: the graph, its prepared ops and head, and the kernels.
pub(super) struct Network<'a> {
    pub graph: &'a Graph,
    pub ops: &'a [PreparedOp],
    pub head: &'a [HeadLayer],
    pub kernels: &'a Kernels,
    pub num_classes: usize,
}

/// Activation buffers, all the size of the largest activation, reused once the value they
/// hold is dead. (Best-fit buffers of each value's own size fragment and took more memory in
/// total: 10.79 vs 10.12 MiB at 150x150; see BENCHMARKS.md.)
struct Activations<'a> {
    device: &'a wgpu::Device,
    kernels: &'a Kernels,
    input: wgpu::Buffer,
    largest: usize,
    pool: Vec<wgpu::Buffer>,
    free: Vec<usize>,
    slot_of: Vec<Option<usize>>,
}

impl Activations<'_> {
    /// A free buffer's slot, allocating one where none is free.
    fn take(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            let element = self.kernels.element();
            let buffer = activation_buffer(self.device, "activation", self.largest, element);
            self.pool.push(buffer);
            self.pool.len() - 1
        })
    }

    /// The buffer holding `value` (the network's input is value 0).
    fn of(&self, value: ValueId) -> wgpu::Buffer {
        match self.slot_of[value.0] {
            Some(slot) => self.pool[slot].clone(),
            None => self.input.clone(),
        }
    }
}

impl Network<'_> {
    /// The plan for `batch` images of `height` x `width`.
    pub fn plan(&self, batch: usize, height: usize, width: usize) -> Result<Plan> {
        let device = self.kernels.device();
        let k = self.kernels;
        let element = k.element();
        let shapes = self.graph.infer_shapes(batch, height, width)?;
        let last_use = self.graph.last_uses();
        let mut buffers = Activations {
            device,
            kernels: k,
            input: activation_buffer(device, "input", shapes[0].len(), element),
            largest: Graph::largest_activation(&shapes),
            pool: Vec::new(),
            free: Vec::new(),
            slot_of: vec![None; shapes.len()],
        };
        let embedding_dim = self.graph.embedding_dim();
        let embedding = storage(device, "embedding", batch * embedding_dim);
        let mut features = None;
        let mut dispatches = Vec::new();
        let mut launches = Vec::new();
        let mut launch = |layer: &str, kind, macs: u64, floats: usize| {
            launches.push(LaunchTiming {
                layer: layer.to_string(),
                kind,
                macs,
                bytes: (floats * element.bytes()) as u64,
                ms: 0.0,
            })
        };
        for (i, (node, op)) in self.graph.nodes.iter().zip(self.ops).enumerate() {
            let in_shape = shapes[node.input.0];
            let out_shape = shapes[node.output.0];
            let macs = node.macs(&shapes);
            let name = &self.graph.value_names[node.output.0];
            let x = buffers.of(node.input);
            match (&node.op, op) {
                (Op::Conv(c), PreparedOp::Conv(conv)) => {
                    let out = buffers.take();
                    let output = &buffers.pool[out];
                    dispatches.push(conv.launch(k, &x, in_shape, out_shape, c.relu, None, output));
                    let kind = if c.kernel == 1 {
                        OpKind::ShortcutConv
                    } else {
                        OpKind::StemConv
                    };
                    let kernel_len = c.kernel * c.kernel * c.in_channels * c.out_channels;
                    let floats = in_shape.len() + out_shape.len() + kernel_len;
                    launch(&c.conv, kind, macs.dense, floats);
                    buffers.slot_of[node.output.0] = Some(out);
                }
                (
                    Op::Separable(s),
                    PreparedOp::Separable {
                        depthwise,
                        depthwise_bias,
                        depthwise_kernel,
                        pointwise,
                    },
                ) => {
                    let tmp = buffers.take();
                    let work = DepthwiseWork {
                        geometry: s.depthwise,
                        relu_input: s.relu_in,
                        bias: depthwise_bias.as_ref(),
                        relu_output: s.relu_mid,
                    };
                    dispatches.push(k.depthwise_conv(
                        *depthwise_kernel,
                        &x,
                        in_shape,
                        depthwise,
                        work,
                        &buffers.pool[tmp],
                    ));
                    let depthwise_shape = s.depthwise.output_shape(in_shape);
                    let out = buffers.take();
                    let residual = s.residual.map(|r| buffers.of(r));
                    dispatches.push(pointwise.launch(
                        k,
                        &buffers.pool[tmp],
                        depthwise_shape,
                        out_shape,
                        s.relu_out,
                        residual.as_ref(),
                        &buffers.pool[out],
                    ));
                    buffers.free.push(tmp);
                    let dw_floats = in_shape.len() + depthwise_shape.len() + 9 * s.in_channels;
                    launch(&s.conv, OpKind::Depthwise, macs.depthwise, dw_floats);
                    let residual_len = residual.map_or(0, |_| out_shape.len());
                    let pw_floats = depthwise_shape.len()
                        + out_shape.len()
                        + residual_len
                        + s.in_channels * s.out_channels;
                    launch(&s.conv, OpKind::Pointwise, macs.dense, pw_floats);
                    buffers.slot_of[node.output.0] = Some(out);
                }
                (Op::PreActivation { .. }, PreparedOp::PreActivation(affine)) => {
                    let out = buffers.take();
                    let affine = affine.as_ref().map(|(a, b)| (a, b));
                    dispatches.push(k.scale_shift_relu(&x, in_shape, affine, &buffers.pool[out]));
                    launch(name, OpKind::PreActivation, 0, 2 * in_shape.len());
                    buffers.slot_of[node.output.0] = Some(out);
                }
                (Op::MaxPoolAdd { residual, padding }, PreparedOp::Pool) => {
                    let out = buffers.take();
                    let r = buffers.of(*residual);
                    let output = &buffers.pool[out];
                    let (d, _) = k.max_pool(&x, in_shape, *padding, Some(&r), output);
                    dispatches.push(d);
                    let floats = in_shape.len() + 2 * out_shape.len();
                    launch(name, OpKind::MaxPoolAdd, 0, floats);
                    buffers.slot_of[node.output.0] = Some(out);
                }
                (Op::GlobalAvgPool, PreparedOp::Pool) => {
                    dispatches.push(k.global_avg_pool(&x, in_shape, &embedding));
                    features = Some((x.clone(), in_shape));
                    let floats = in_shape.len() + out_shape.len();
                    launch(name, OpKind::GlobalAvgPool, 0, floats);
                }
                (op, prepared) => unreachable!("{op:?} was prepared as {prepared:?}"),
            }
            for v in node.inputs() {
                if last_use[v.0] == i {
                    if let Some(slot) = buffers.slot_of[v.0] {
                        buffers.free.push(slot);
                    }
                }
            }
        }

        let mut outputs = vec![(embedding.clone(), batch * embedding_dim)];
        if !self.head.is_empty() {
            let mut x = embedding;
            for layer in self.head {
                let DenseShape { inputs, units, .. } = layer.shape;
                let out = storage(device, "dense", batch * units);
                dispatches.push(k.dense(&x, batch, &layer.kernel, &layer.bias, layer.shape, &out));
                let weights = inputs * units;
                let floats = batch * (inputs + units) + weights;
                launch(&layer.name, OpKind::Dense, (batch * weights) as u64, floats);
                x = out;
            }
            let probabilities = storage(device, "probabilities", batch * self.num_classes);
            dispatches.push(k.softmax(&x, batch, self.num_classes, &probabilities));
            launch("softmax", OpKind::Softmax, 0, 2 * batch * self.num_classes);
            outputs.push((x, batch * self.num_classes));
            outputs.push((probabilities, batch * self.num_classes));
        }
        let total: usize = outputs.iter().map(|(_, n)| n).sum();
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (total * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Plan {
            activation_bytes: buffers.pool.iter().map(wgpu::Buffer::size).sum(),
            batch,
            input: buffers.input,
            dispatches,
            launches,
            outputs,
            readback,
            features: features.expect("the graph ends in a global average pool"),
        })
    }
}
