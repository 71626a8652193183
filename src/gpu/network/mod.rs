//! The GPU dispatcher: Xception's weights folded on the device once ([`load`]), and per input
//! shape a plan of buffers and launches ([`plan`]) that records a whole forward pass into one
//! command encoder.

mod load;
mod plan;
mod profile;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::lock::Mutex;

use self::load::{HeadLayer, PreparedOp};
use self::plan::{Network, Plan};
use super::context::GpuContext;
use super::kernels::Kernels;
use super::limits::{batch_capacity, check_weights_fit};
use super::ops::{activation_bytes, read_activations};
use super::options::{activation_element, KernelChoice, Precision};
use super::select::{assign_kernels, ConvAssignment};
use super::tune::{self, TuneEvent, TuneInput};
use crate::error::{Error, Result};
use crate::graph::{Graph, MIN_INPUT_SIZE};
use crate::outputs::Outputs;
use crate::tensor::{Shape, Tensor};
use crate::weights::Weights;

/// Input shapes whose plans are kept; running more distinct shapes rebuilds them.
const MAX_CACHED_PLANS: usize = 4;

/// How a GPU model computes: precision, convolution kernels, and the input tuning measures.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// Precision of the weights (and activations, where the device has float16).
    pub precision: Precision,
    /// How each convolution's kernel is chosen.
    pub kernel: KernelChoice,
    /// The input [`KernelChoice::Tuned`] measures the convolutions at [default: the weights'
    /// input size, one image].
    pub tune_input: Option<TuneInput>,
}

/// Xception on a wgpu device.
#[derive(Debug)]
pub struct GpuModel {
    context: GpuContext,
    kernels: Kernels,
    graph: Graph,
    num_classes: usize,
    /// Every node's weights and kernels, in graph order.
    ops: Vec<PreparedOp>,
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
        let options = GpuOptions {
            precision,
            kernel: choice,
            tune_input: None,
        };
        Self::load_async(context, weights, options, &mut |_| {}).await
    }

    /// Loads the model with `options`, telling `observer` what tuning does (where
    /// [`KernelChoice::Tuned`] is asked for): the kernels are chosen, the weights uploaded and
    /// folded, and every kernel the network launches compiled.
    pub async fn load_async(
        context: GpuContext,
        weights: Arc<Weights>,
        options: GpuOptions,
        observer: &mut dyn FnMut(TuneEvent),
    ) -> Result<Self> {
        let graph = weights.graph().clone();
        check_weights_fit(&context, &graph, &weights)?;
        let precision = options.precision;
        let device = &context.device;
        let element = activation_element(precision, device);
        let kernels = Kernels::with_cache(device, element, context.wgpu_pipeline_cache());
        let input = options
            .tune_input
            .unwrap_or(TuneInput::of(weights.info.input_size, 1));
        let shapes = graph.infer_shapes(input.batch, input.size.height, input.size.width)?;
        let tuned = match options.kernel {
            KernelChoice::Tuned => Some(
                tune::tuned_kernels(&context, &kernels, &graph, &shapes, precision, observer)
                    .await?,
            ),
            _ => None,
        };
        let assigned = context
            .checked("choosing the convolution kernels", || {
                assign_kernels(
                    &graph,
                    &shapes,
                    &context,
                    &kernels,
                    options.kernel,
                    precision,
                    tuned.as_ref(),
                )
            })
            .await??;
        let loaded = context
            .checked("loading the model onto the GPU", || {
                load::load(&graph, &assigned, &weights, &kernels, precision)
            })
            .await??;
        context
            .checked("folding batchnorm", || {
                let mut encoder = device.create_command_encoder(&Default::default());
                loaded.prep.record(&kernels, &mut encoder);
                context.queue.submit([encoder.finish()]);
            })
            .await?;
        context.wait()?;
        let model = Self {
            num_classes: weights.info.num_classes(),
            context,
            kernels,
            graph,
            ops: loaded.ops,
            assignments: assigned.into_iter().flatten().collect(),
            head: loaded.head,
            batch_limit: None,
            plans: Mutex::new(HashMap::new()),
        };
        model.compile_kernels().await?;
        Ok(model)
    }

    /// What plans are built from.
    fn network(&self) -> Network<'_> {
        Network {
            graph: &self.graph,
            ops: &self.ops,
            head: &self.head,
            kernels: &self.kernels,
            num_classes: self.num_classes,
        }
    }

    /// Creates every pipeline the network launches now, rather than in the first forward pass,
    /// by building (and dropping) a plan for one image of the smallest size; the pipeline
    /// cache, if one is kept, then holds them all.
    async fn compile_kernels(&self) -> Result<()> {
        self.context
            .checked("compiling the GPU kernels", || {
                self.network().plan(1, MIN_INPUT_SIZE, MIN_INPUT_SIZE)
            })
            .await??;
        self.context.save_pipeline_cache();
        Ok(())
    }

    /// The kernel variant each convolution of `graph` would get on `context`'s adapter for
    /// `choice` at `precision`, without loading any weights (what `info` prints); with
    /// [`KernelChoice::Tuned`], the choices stored for `input` (timing those not yet stored).
    /// Fails where the adapter cannot run the kernel asked for.
    pub async fn conv_kernels(
        context: &GpuContext,
        graph: &Graph,
        choice: KernelChoice,
        precision: Precision,
        input: TuneInput,
        observer: &mut dyn FnMut(TuneEvent),
    ) -> Result<Vec<ConvAssignment>> {
        let graph = graph.clone();
        let element = activation_element(precision, &context.device);
        let kernels = Kernels::with_cache(&context.device, element, context.wgpu_pipeline_cache());
        let shapes = graph.infer_shapes(input.batch, input.size.height, input.size.width)?;
        let tuned = match choice {
            KernelChoice::Tuned => Some(
                tune::tuned_kernels(context, &kernels, &graph, &shapes, precision, observer)
                    .await?,
            ),
            _ => None,
        };
        let assigned = assign_kernels(
            &graph,
            &shapes,
            context,
            &kernels,
            choice,
            precision,
            tuned.as_ref(),
        )?;
        Ok(assigned.into_iter().flatten().collect())
    }

    /// The kernel variant each convolution of this model runs on, and why.
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

    /// Largest batch one pass runs at `height` x `width`: [`largest_batch`](super::largest_batch)
    /// on this device, or the [`with_batch_limit`](Self::with_batch_limit) if lower.
    pub fn max_batch(&self, height: usize, width: usize) -> Result<usize> {
        let shapes = self.graph.infer_shapes(1, height, width)?;
        self.max_batch_of(&shapes)
    }

    fn max_batch_of(&self, shapes_of_one: &[Shape]) -> Result<usize> {
        let batch = batch_capacity(&self.context, self.kernels.element(), shapes_of_one)
            .map_err(Error::Input)?;
        Ok(self.batch_limit.map_or(batch, |limit| batch.min(limit)))
    }

    /// Why this device cannot run even one image of `height` x `width` (an activation passes
    /// its buffer limits, or the image its dispatch grid), or `None` where it can; sizes the
    /// network itself refuses are `None` too, and fail when run.
    pub fn too_large(&self, height: usize, width: usize) -> Option<String> {
        let shapes = self.graph.infer_shapes(1, height, width).ok()?;
        batch_capacity(&self.context, self.kernels.element(), &shapes).err()
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
        let chunk = self.max_batch_of(&shapes_of_one)?;
        let image_len = s.height * s.width * s.channels;
        let mut outputs = Outputs {
            batch: s.batch,
            embedding_dim: self.graph.embedding_dim(),
            num_classes: self.num_classes,
            embeddings: Vec::with_capacity(s.batch * self.graph.embedding_dim()),
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
            outputs
                .embeddings
                .extend(take(batch * self.graph.embedding_dim()));
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
                    self.network().plan(batch, height, width)
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

    /// Bytes of device memory the activation buffers of one pass take at this input shape
    /// (weights, input and outputs excluded).
    pub async fn activation_bytes(&self, batch: usize, height: usize, width: usize) -> Result<u64> {
        Ok(self.plan(batch, height, width).await?.activation_bytes)
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
