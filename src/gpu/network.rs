//! The GPU dispatcher: Xception's weights folded on the device once, and per input shape a
//! plan of buffers and launches that records a whole forward pass into one command encoder.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::lock::Mutex;

use super::context::GpuContext;
use super::kernels::{Dispatch, Element, Kernels};
use super::ops::{
    activation_buffer, activation_bytes, activation_element, read_activations, storage, upload,
    Conv, ConvGeometry, ConvKernel, ConvSupport, DenseShape, DepthwiseKernel, KernelChoice,
    Precision, WeightPrep,
};
use crate::error::{Error, Result};
use crate::graph::{Graph, Op, Padding, ValueId, EMBEDDING_DIM, MIN_INPUT_SIZE};
use crate::outputs::Outputs;
use crate::profile::{LaunchTiming, OpKind};
use crate::tensor::{Shape, Tensor};
use crate::weights::{expected_tensors, Activation, Weights};

/// Input shapes whose plans are kept; running more distinct shapes rebuilds them.
const MAX_CACHED_PLANS: usize = 4;

/// Device-resident weights of one graph node.
#[derive(Debug)]
enum NodeWeights {
    /// A stem or shortcut convolution.
    Conv(Conv),
    /// A separable convolution: depthwise kernel and its variant, and the pointwise half as
    /// a convolution.
    Separable {
        depthwise: wgpu::Buffer,
        depthwise_kernel: DepthwiseKernel,
        pointwise: Conv,
    },
    None,
}

#[derive(Debug)]
struct HeadLayer {
    name: String,
    kernel: wgpu::Buffer,
    bias: wgpu::Buffer,
    shape: DenseShape,
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
}

impl ConvAssignment {
    /// The kernels' names, e.g. `depthwise_conv_tiled + conv_gemm_tiled`.
    pub fn kernels(&self) -> String {
        match self.depthwise {
            Some(depthwise) => format!("{} + {}", depthwise.name(), self.kernel.name()),
            None => self.kernel.name().to_string(),
        }
    }
}

/// The kernel of every convolution of `graph` (by node; `None` for nodes without one) on
/// `context`'s adapter for `choice` at `precision`: decided here, once, at load.
fn assign_kernels(
    graph: &Graph,
    context: &GpuContext,
    kernels: &Kernels,
    choice: KernelChoice,
    precision: Precision,
) -> Result<Vec<Option<ConvAssignment>>> {
    let support = ConvSupport::new(context, kernels, choice, precision)?;
    Ok(graph
        .nodes
        .iter()
        .map(|node| match &node.op {
            Op::Conv(c) => Some(ConvAssignment {
                layer: c.conv.clone(),
                kernel: support.kernel_for(conv_geometry(c), c.in_channels, c.out_channels),
                depthwise: None,
            }),
            Op::Separable(s) => Some(ConvAssignment {
                layer: s.conv.clone(),
                kernel: support.kernel_for(
                    ConvGeometry::pointwise(1),
                    s.in_channels,
                    s.out_channels,
                ),
                depthwise: Some(support.depthwise_for(s.in_channels)),
            }),
            Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => None,
        })
        .collect())
}

fn conv_geometry(c: &crate::graph::ConvNode) -> ConvGeometry {
    ConvGeometry {
        kernel: c.kernel,
        stride: c.stride,
        padding: c.padding,
    }
}

/// Largest batch one pass can run at `height` x `width` on `context`'s device with activations
/// of `element`: bounded by its storage-buffer limits (every activation is one binding) and by
/// the depthwise grid, which puts `batch * height` in one dimension.
pub fn largest_batch(
    context: &GpuContext,
    element: Element,
    height: usize,
    width: usize,
) -> Result<usize> {
    let shapes = Graph::xception().infer_shapes(1, height, width)?;
    largest_batch_of(context, element, &shapes, height, width)
}

fn largest_batch_of(
    context: &GpuContext,
    element: Element,
    shapes_of_one: &[Shape],
    height: usize,
    width: usize,
) -> Result<usize> {
    batch_capacity(context, element, shapes_of_one, height, width).map_err(Error::Input)
}

/// The most bytes one storage buffer can hold and be bound on `context`'s device.
fn buffer_limit(context: &GpuContext) -> u64 {
    let limits = context.device.limits();
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// [`largest_batch`] for the shapes of one image, or why not even one image fits.
fn batch_capacity(
    context: &GpuContext,
    element: Element,
    shapes_of_one: &[Shape],
    height: usize,
    width: usize,
) -> std::result::Result<usize, String> {
    let per_image = (Graph::largest_activation(shapes_of_one) * element.bytes()) as u64;
    let limit = buffer_limit(context);
    let grid = context.device.limits().max_compute_workgroups_per_dimension as usize;
    if per_image > limit {
        return Err(format!(
            "a {width}x{height} image needs {per_image} bytes for one activation, more than \
             {}'s storage buffer limit of {limit} bytes (max_storage_buffer_binding_size)",
            context.description()
        ));
    }
    if height > grid {
        return Err(format!(
            "a {width}x{height} image is taller than {}'s dispatch limit of {grid} rows \
             (max_compute_workgroups_per_dimension)",
            context.description()
        ));
    }
    Ok(((limit / per_image) as usize).min(grid / height))
}

/// Fails, naming the tensor and the limit, where the device's buffers cannot hold the largest
/// weight tensor (in float32, as it is uploaded) - a host's device created with small limits.
fn check_weights_fit(context: &GpuContext, graph: &Graph, weights: &Weights) -> Result<()> {
    let limit = buffer_limit(context);
    let largest = expected_tensors(graph, &weights.info)
        .into_iter()
        .map(|(name, shape)| (shape.iter().product::<usize>() as u64 * 4, name))
        .max();
    match largest {
        Some((bytes, name)) if bytes > limit => Err(Error::Gpu(format!(
            "{}'s storage buffers hold at most {limit} bytes; the weight tensor {name} needs \
             {bytes} (max_storage_buffer_binding_size)",
            context.description()
        ))),
        _ => Ok(()),
    }
}

/// Everything needed to run one input shape: buffers allocated once, launches recorded once.
#[derive(Debug)]
struct Plan {
    batch: usize,
    input: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
    /// What each dispatch computes; `ms` is filled in by a profile.
    launches: Vec<LaunchTiming>,
    /// Bytes of the activation buffers (input and outputs excluded).
    activation_bytes: u64,
    /// `(buffer, floats)` copied back after each run: embeddings, then logits and probabilities.
    outputs: Vec<(wgpu::Buffer, usize)>,
    readback: wgpu::Buffer,
    /// The last feature map (what the global average pool reads), still intact after a run
    /// since nothing later reuses its buffer.
    features: (wgpu::Buffer, Shape),
}

/// Xception on a wgpu device.
#[derive(Debug)]
pub struct GpuModel {
    context: GpuContext,
    /// How the max-pools pad (from the weights: 'same' for Keras, symmetric for timm).
    pool_padding: Padding,
    kernels: Kernels,
    graph: Graph,
    num_classes: usize,
    nodes: Vec<NodeWeights>,
    /// The kernels of every convolution, in graph order.
    assignments: Vec<ConvAssignment>,
    head: Vec<HeadLayer>,
    batch_limit: Option<usize>,
    plans: Mutex<HashMap<(usize, usize, usize), Arc<Plan>>>,
}

impl GpuModel {
    /// Uploads the weights and folds batchnorm into them on the device, for the convolution
    /// kernels `choice` resolves to on this adapter (see [`KernelChoice`]); the GEMM weights
    /// go into textures at `precision`.
    ///
    /// Fails where the adapter cannot run the kernel asked for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(
        context: GpuContext,
        weights: Arc<Weights>,
        precision: Precision,
        choice: KernelChoice,
    ) -> Result<Self> {
        pollster::block_on(Self::new_async(context, weights, precision, choice))
    }

    /// [`GpuModel::new`] without blocking: what a browser, which cannot block, calls.
    pub async fn new_async(
        context: GpuContext,
        weights: Arc<Weights>,
        precision: Precision,
        choice: KernelChoice,
    ) -> Result<Self> {
        let graph = Graph::xception();
        check_weights_fit(&context, &graph, &weights)?;
        let device = &context.device;
        let cache = context.wgpu_pipeline_cache();
        let element = activation_element(precision, device);
        let kernels = Kernels::with_cache(device, element, cache);
        let assigned = context
            .checked("choosing the convolution kernels", || {
                assign_kernels(&graph, &context, &kernels, choice, precision)
            })
            .await??;
        let (nodes, head, prep) = context
            .checked("loading the model onto the GPU", || {
                let mut prep = WeightPrep::default();
                let mut nodes = Vec::new();
                for (node, assigned) in graph.nodes.iter().zip(&assigned) {
                    let mut conv = |variant, geometry, kernel: &[f32], out_channels, bn: &str| {
                        let bn = weights.batchnorm(bn);
                        let (conv, steps) = Conv::prepare(
                            &kernels,
                            variant,
                            geometry,
                            kernel,
                            out_channels,
                            &bn,
                            precision,
                        )?;
                        prep.append(steps);
                        Ok::<_, Error>(conv)
                    };
                    nodes.push(match (&node.op, assigned) {
                        (Op::Conv(c), Some(assigned)) => NodeWeights::Conv(conv(
                            assigned.kernel,
                            conv_geometry(c),
                            weights.tensor(&format!("{}.kernel", c.conv)),
                            c.out_channels,
                            &c.bn,
                        )?),
                        (Op::Separable(s), Some(assigned)) => NodeWeights::Separable {
                            pointwise: conv(
                                assigned.kernel,
                                ConvGeometry::pointwise(1),
                                weights.tensor(&format!("{}.pointwise_kernel", s.conv)),
                                s.out_channels,
                                &s.bn,
                            )?,
                            depthwise: upload(
                                device,
                                &s.conv,
                                weights.tensor(&format!("{}.depthwise_kernel", s.conv)),
                            ),
                            depthwise_kernel: assigned
                                .depthwise
                                .expect("a separable convolution has a depthwise kernel"),
                        },
                        _ => NodeWeights::None,
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
                    .collect::<Vec<_>>();
                Ok::<_, Error>((nodes, head, prep))
            })
            .await??;
        context
            .checked("folding batchnorm", || {
                let mut encoder = device.create_command_encoder(&Default::default());
                prep.record(&kernels, &mut encoder);
                context.queue.submit([encoder.finish()]);
            })
            .await?;
        context.wait()?;
        let model = Self {
            pool_padding: weights.info.pool_padding,
            num_classes: weights.info.num_classes(),
            context,
            kernels,
            graph,
            nodes,
            assignments: assigned.into_iter().flatten().collect(),
            head,
            batch_limit: None,
            plans: Mutex::new(HashMap::new()),
        };
        model.compile_kernels().await?;
        Ok(model)
    }

    /// Creates every pipeline the network launches now, rather than in the first forward pass,
    /// by building (and dropping) a plan for one image of the smallest size; the pipeline
    /// cache, if one is kept, then holds them all.
    async fn compile_kernels(&self) -> Result<()> {
        self.context
            .checked("compiling the GPU kernels", || {
                self.build_plan(1, MIN_INPUT_SIZE, MIN_INPUT_SIZE)
            })
            .await??;
        self.context.save_pipeline_cache();
        Ok(())
    }

    /// The kernel variant each convolution of the network would get on `context`'s adapter for
    /// `choice` at `precision`, without loading any weights (what `info` prints); fails where
    /// the adapter cannot run the kernel asked for.
    pub fn conv_kernels(
        context: &GpuContext,
        choice: KernelChoice,
        precision: Precision,
    ) -> Result<Vec<ConvAssignment>> {
        let graph = Graph::xception();
        let kernels = Kernels::new(
            &context.device,
            activation_element(precision, &context.device),
        );
        let assigned = assign_kernels(&graph, context, &kernels, choice, precision)?;
        Ok(assigned.into_iter().flatten().collect())
    }

    /// The kernel variant each convolution of this model runs on.
    pub fn assignments(&self) -> Vec<ConvAssignment> {
        self.assignments.clone()
    }

    /// The device in use.
    pub fn context(&self) -> &GpuContext {
        &self.context
    }

    /// Runs at most `images` images per forward pass, splitting larger batches (to bound memory).
    pub fn with_batch_limit(mut self, images: usize) -> Self {
        self.batch_limit = Some(images.max(1));
        self
    }

    /// Largest batch one pass runs at `height` x `width`: [`largest_batch`] on this device,
    /// or the [`with_batch_limit`](Self::with_batch_limit) if lower.
    pub fn max_batch(&self, height: usize, width: usize) -> Result<usize> {
        let shapes = self.graph.infer_shapes(1, height, width)?;
        self.max_batch_of(&shapes, height, width)
    }

    fn max_batch_of(&self, shapes_of_one: &[Shape], height: usize, width: usize) -> Result<usize> {
        let element = self.kernels.element();
        let batch = largest_batch_of(&self.context, element, shapes_of_one, height, width)?;
        Ok(self.batch_limit.map_or(batch, |limit| batch.min(limit)))
    }

    /// Why this device cannot run even one image of `height` x `width` (an activation passes
    /// its buffer limits, or the image its dispatch grid), or `None` where it can; sizes the
    /// network itself refuses are `None` too, and fail when run.
    pub fn too_large(&self, height: usize, width: usize) -> Option<String> {
        let shapes = self.graph.infer_shapes(1, height, width).ok()?;
        batch_capacity(
            &self.context,
            self.kernels.element(),
            &shapes,
            height,
            width,
        )
        .err()
    }

    /// Runs the network on an NHWC batch, splitting it into batches the device can hold.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, input: &Tensor) -> Result<Outputs> {
        pollster::block_on(self.forward_async(input))
    }

    /// [`GpuModel::forward`] without blocking.
    pub async fn forward_async(&self, input: &Tensor) -> Result<Outputs> {
        Ok(self.forward_batches(input, false).await?.0)
    }

    /// [`GpuModel::forward_async`], also returning the last feature map
    /// (`block14_sepconv2_act`, what the global average pool reads), NHWC.
    pub async fn forward_features_async(&self, input: &Tensor) -> Result<(Outputs, Tensor)> {
        let (outputs, features) = self.forward_batches(input, true).await?;
        Ok((outputs, features.expect("features were asked for")))
    }

    async fn forward_batches(
        &self,
        input: &Tensor,
        keep_features: bool,
    ) -> Result<(Outputs, Option<Tensor>)> {
        self.context.check_lost()?;
        let s = input.shape;
        // The shapes of one image check the input size and bound the batch per pass.
        let shapes_of_one = self.graph.infer_shapes(1, s.height, s.width)?;
        let chunk = self.max_batch_of(&shapes_of_one, s.height, s.width)?;
        let image_len = s.height * s.width * s.channels;
        let mut outputs = Outputs {
            batch: s.batch,
            embedding_dim: EMBEDDING_DIM,
            num_classes: self.num_classes,
            embeddings: Vec::with_capacity(s.batch * EMBEDDING_DIM),
            logits: Vec::with_capacity(s.batch * self.num_classes),
            probabilities: Vec::with_capacity(s.batch * self.num_classes),
        };
        let mut features = Vec::new();
        let mut feature_shape = None;
        for images in input.data.chunks(chunk * image_len) {
            let batch = images.len() / image_len;
            let plan = self.plan(batch, s.height, s.width).await?;
            let (values, chunk_features) = self.run(&plan, images, keep_features).await?;
            let mut values = values.into_iter();
            let mut take = |n: usize| values.by_ref().take(n).collect::<Vec<_>>();
            outputs.embeddings.extend(take(batch * EMBEDDING_DIM));
            outputs.logits.extend(take(batch * self.num_classes));
            outputs.probabilities.extend(take(batch * self.num_classes));
            features.extend(chunk_features.unwrap_or_default());
            feature_shape = Some(Shape {
                batch: s.batch,
                ..plan.features.1
            });
        }
        let features = match (keep_features, feature_shape) {
            (true, Some(shape)) => Some(Tensor::new(shape, features)?),
            _ => None,
        };
        Ok((outputs, features))
    }

    async fn plan(&self, batch: usize, height: usize, width: usize) -> Result<Arc<Plan>> {
        let mut plans = self.plans.lock().await;
        if let Some(plan) = plans.get(&(batch, height, width)) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(
            self.context
                .checked("allocating activation buffers", || {
                    self.build_plan(batch, height, width)
                })
                .await??,
        );
        // The plan created the pipelines it launches.
        self.context.save_pipeline_cache();
        if plans.len() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.insert((batch, height, width), plan.clone());
        Ok(plan)
    }

    fn build_plan(&self, batch: usize, height: usize, width: usize) -> Result<Plan> {
        let device = &self.context.device;
        let k = &self.kernels;
        let shapes = self.graph.infer_shapes(batch, height, width)?;
        let element = k.element();
        let input = activation_buffer(device, "input", shapes[0].len(), element);

        // Activation buffers, all the size of the largest activation, reused once the value
        // they hold is dead. (Best-fit buffers of each value's own size fragment and took more
        // memory in total: 10.79 vs 10.12 MiB at 150x150; see BENCHMARKS.md.)
        let largest = Graph::largest_activation(&shapes);
        let mut last_use = vec![0; shapes.len()];
        for (i, node) in self.graph.nodes.iter().enumerate() {
            for v in node.inputs() {
                last_use[v.0] = i;
            }
        }
        let mut pool: Vec<wgpu::Buffer> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut slot_of: Vec<Option<usize>> = vec![None; shapes.len()];
        let alloc = |pool: &mut Vec<wgpu::Buffer>, free: &mut Vec<usize>| {
            free.pop().unwrap_or_else(|| {
                pool.push(activation_buffer(device, "activation", largest, element));
                pool.len() - 1
            })
        };

        let embedding = storage(device, "embedding", batch * EMBEDDING_DIM);
        let mut features = None;
        let mut dispatches = Vec::new();
        let mut launches = Vec::new();
        let mut launch = |layer: &str, kind, macs: usize, floats: usize| {
            launches.push(LaunchTiming {
                layer: layer.to_string(),
                kind,
                macs: macs as u64,
                bytes: (floats * element.bytes()) as u64,
                ms: 0.0,
            })
        };
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let in_shape = shapes[node.input.0];
            let out_shape = shapes[node.output.0];
            let buffer_of = |pool: &Vec<wgpu::Buffer>, v: ValueId| -> wgpu::Buffer {
                match slot_of[v.0] {
                    Some(slot) => pool[slot].clone(),
                    None => input.clone(),
                }
            };
            let x = buffer_of(&pool, node.input);
            match (&node.op, &self.nodes[i]) {
                (Op::Conv(c), NodeWeights::Conv(conv)) => {
                    let out = alloc(&mut pool, &mut free);
                    let (d, _) = conv.launch(k, &x, in_shape, c.relu, None, &pool[out]);
                    dispatches.push(d);
                    let kind = if c.kernel == 1 {
                        OpKind::ShortcutConv
                    } else {
                        OpKind::StemConv
                    };
                    let kernel_len = c.kernel * c.kernel * c.in_channels * c.out_channels;
                    let macs = out_shape.pixels() * kernel_len;
                    launch(
                        &c.conv,
                        kind,
                        macs,
                        in_shape.len() + out_shape.len() + kernel_len,
                    );
                    slot_of[node.output.0] = Some(out);
                }
                (
                    Op::Separable(s),
                    NodeWeights::Separable {
                        depthwise,
                        depthwise_kernel,
                        pointwise,
                    },
                ) => {
                    let tmp = alloc(&mut pool, &mut free);
                    dispatches.push(k.depthwise_conv(
                        *depthwise_kernel,
                        &x,
                        in_shape,
                        depthwise,
                        s.relu_in,
                        &pool[tmp],
                    ));
                    let out = alloc(&mut pool, &mut free);
                    let residual = s.residual.map(|r| buffer_of(&pool, r));
                    let (d, _) = pointwise.launch(
                        k,
                        &pool[tmp],
                        in_shape,
                        s.relu_out,
                        residual.as_ref(),
                        &pool[out],
                    );
                    dispatches.push(d);
                    free.push(tmp);
                    let dw_floats = 2 * in_shape.len() + 9 * s.in_channels;
                    launch(&s.conv, OpKind::Depthwise, 9 * in_shape.len(), dw_floats);
                    let pw_len = s.in_channels * s.out_channels;
                    let residual_len = if s.residual.is_some() {
                        out_shape.len()
                    } else {
                        0
                    };
                    let pw_floats = in_shape.len() + out_shape.len() + residual_len + pw_len;
                    launch(
                        &s.conv,
                        OpKind::Pointwise,
                        in_shape.pixels() * pw_len,
                        pw_floats,
                    );
                    slot_of[node.output.0] = Some(out);
                }
                (Op::MaxPoolAdd { residual }, _) => {
                    let out = alloc(&mut pool, &mut free);
                    let r = buffer_of(&pool, *residual);
                    let (d, _) = k.max_pool(&x, in_shape, self.pool_padding, Some(&r), &pool[out]);
                    dispatches.push(d);
                    let name = &self.graph.value_names[node.output.0];
                    launch(
                        name,
                        OpKind::MaxPoolAdd,
                        0,
                        in_shape.len() + 2 * out_shape.len(),
                    );
                    slot_of[node.output.0] = Some(out);
                }
                (Op::GlobalAvgPool, _) => {
                    dispatches.push(k.global_avg_pool(&x, in_shape, &embedding));
                    features = Some((x.clone(), in_shape));
                    let name = &self.graph.value_names[node.output.0];
                    launch(
                        name,
                        OpKind::GlobalAvgPool,
                        0,
                        in_shape.len() + out_shape.len(),
                    );
                }
                (op, _) => unreachable!("weights prepared for every node, not for {op:?}"),
            }
            for v in node.inputs() {
                if last_use[v.0] == i {
                    if let Some(slot) = slot_of[v.0] {
                        free.push(slot);
                    }
                }
            }
        }

        let mut outputs = vec![(embedding.clone(), batch * EMBEDDING_DIM)];
        if !self.head.is_empty() {
            let mut x = embedding;
            for layer in &self.head {
                let DenseShape { inputs, units, .. } = layer.shape;
                let out = storage(device, "dense", batch * units);
                dispatches.push(k.dense(&x, batch, &layer.kernel, &layer.bias, layer.shape, &out));
                let weights = inputs * units;
                let floats = batch * (inputs + units) + weights;
                launch(&layer.name, OpKind::Dense, batch * weights, floats);
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
            activation_bytes: pool.iter().map(wgpu::Buffer::size).sum(),
            batch,
            input,
            dispatches,
            launches,
            outputs,
            readback,
            features: features.expect("the graph ends in a global average pool"),
        })
    }

    /// Bytes of device memory the activation buffers of one pass take at this input shape
    /// (weights, input and outputs excluded).
    pub async fn activation_bytes(&self, batch: usize, height: usize, width: usize) -> Result<u64> {
        Ok(self.plan(batch, height, width).await?.activation_bytes)
    }

    /// Runs one forward pass with a timestamp around every launch and returns the device time
    /// of each, in execution order. Needs the `TIMESTAMP_QUERY` feature, and a batch that
    /// fits one pass.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self, input: &Tensor) -> Result<Vec<LaunchTiming>> {
        pollster::block_on(self.profile_async(input))
    }

    /// [`GpuModel::profile`] without blocking.
    pub async fn profile_async(&self, input: &Tensor) -> Result<Vec<LaunchTiming>> {
        let device = &self.context.device;
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Gpu(format!(
                "{} has no timestamp queries; profiling needs them",
                self.context.description()
            )));
        }
        let s = input.shape;
        if s.batch > self.max_batch(s.height, s.width)? {
            return Err(Error::Input(format!(
                "a profile runs one pass; batch {} is larger than one pass holds",
                s.batch
            )));
        }
        let plan = self.plan(s.batch, s.height, s.width).await?;
        let _guard = self.plans.lock().await;
        let count = plan.dispatches.len() as u32 * 2;
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.context
            .checked("profiling the network", || {
                let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("launch timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let queue = &self.context.queue;
                let element = self.kernels.element();
                queue.write_buffer(&plan.input, 0, &activation_bytes(&input.data, element));
                let mut encoder = device.create_command_encoder(&Default::default());
                for (i, dispatch) in plan.dispatches.iter().enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &queries,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    self.kernels
                        .record(&mut pass, std::slice::from_ref(dispatch));
                }
                encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
                encoder.copy_buffer_to_buffer(&resolved, 0, &readback, 0, count as u64 * 8);
                queue.submit([encoder.finish()]);
            })
            .await?;
        let ticks: Vec<u64> =
            bytemuck::cast_slice(&self.context.map_bytes(&readback).await?).to_vec();
        let period_ns = self.context.queue.get_timestamp_period() as f64;
        Ok(plan
            .launches
            .iter()
            .zip(ticks.chunks_exact(2))
            .map(|(launch, t)| LaunchTiming {
                ms: t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6,
                ..launch.clone()
            })
            .collect())
    }

    /// Runs `plan` on `images`: the outputs in `plan.outputs`' order, and the feature map
    /// too where `keep_features`.
    async fn run(
        &self,
        plan: &Plan,
        images: &[f32],
        keep_features: bool,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        debug_assert_eq!(images.len() % plan.batch, 0);
        // One run at a time per plan: the plan's buffers are shared state.
        let _guard = self.plans.lock().await;
        self.submit(plan, images).await?;
        let values = self.context.map_f32(&plan.readback).await?;
        let features = if keep_features {
            let (buffer, shape) = &plan.features;
            let element = self.kernels.element();
            Some(read_activations(&self.context, buffer, shape.len(), element).await?)
        } else {
            None
        };
        Ok((values, features))
    }

    /// The CPU side of a forward pass: writes the input, records the plan's launches into one
    /// compute pass and the output copies after it, and submits them.
    async fn submit(&self, plan: &Plan, images: &[f32]) -> Result<()> {
        let element = self.kernels.element();
        self.context
            .checked("running the network", || {
                let queue = &self.context.queue;
                queue.write_buffer(&plan.input, 0, &activation_bytes(images, element));
                let mut encoder = self
                    .context
                    .device
                    .create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("xception forward"),
                        timestamp_writes: None,
                    });
                    self.kernels.record(&mut pass, &plan.dispatches);
                }
                let mut offset = 0;
                for (buffer, len) in &plan.outputs {
                    encoder.copy_buffer_to_buffer(
                        buffer,
                        0,
                        &plan.readback,
                        offset,
                        (*len * 4) as u64,
                    );
                    offset += (*len * 4) as u64;
                }
                queue.submit([encoder.finish()]);
            })
            .await
    }

    /// CPU milliseconds that writing `input`, recording its launches and submitting them take
    /// in a warm forward pass (what bounds latency on a fast GPU); waits for the pass before
    /// returning. `None` when the batch needs more than one pass.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn submit_ms(&self, input: &Tensor) -> Result<Option<f64>> {
        let s = input.shape;
        if s.batch > self.max_batch(s.height, s.width)? {
            return Ok(None);
        }
        let plan = pollster::block_on(self.plan(s.batch, s.height, s.width))?;
        let _guard = pollster::block_on(self.plans.lock());
        let start = std::time::Instant::now();
        pollster::block_on(self.submit(&plan, &input.data))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.context.wait()?;
        Ok(Some(ms))
    }
}
