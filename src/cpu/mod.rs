//! The fast CPU backend: the graph on the kernels in [`ops`], for machines without a usable
//! GPU.
//!
//! At load every batchnorm is folded into its convolution's weights and a bias (as on the
//! GPU); a forward pass then runs one GEMM per convolution (a separable one computes its
//! depthwise half block by block as the GEMM's left operand; the 3x3 stride-1 one runs as
//! sixteen small ones, by Winograd's F(2x2, 3x3) in [`winograd`]) with its bias, ReLU and
//! residual fused, and activations live in buffers reused from pass to pass. The reference backend
//! ([`crate::reference`]) stays the oracle this one is tested against.

pub mod aligned;
pub mod gemm;
pub mod ops;
pub mod peak;
mod prefetch;
pub mod winograd;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::outputs::Outputs;
use crate::profile::{LaunchTiming, OpKind};
use crate::tensor::{Shape, Tensor};
use crate::weights::Weights;
use aligned::AlignedVec;
use gemm::{Finish, Isa, PackedWeights};
use ops::{ConvGeometry, Depthwise, Lhs};
use winograd::WinogradWeights;

/// `x.max(0.0)` (zero for NaN too) as a comparison, which compiles to one instruction on
/// every target: `f32::max` is a call to `fmaxf` in WebAssembly (whose `f32.max` propagates
/// NaN) and three instructions on x86.
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

/// A node's weights, prepared for the kernels.
#[derive(Debug)]
enum Layer {
    /// A convolution as a GEMM: kernel `[k * k * cin, cout]` with its batchnorm folded in.
    Conv(PackedWeights),
    /// A 3x3 stride-1 convolution by Winograd's F(2x2, 3x3), its batchnorm folded in.
    Winograd(WinogradWeights),
    /// Depthwise kernel `[9, cin]` with its batchnorm (if any) folded in as a bias, then the
    /// pointwise `[cin, cout]` with its batchnorm folded in.
    Separable {
        depthwise: Vec<f32>,
        depthwise_bias: Option<Vec<f32>>,
        pointwise: PackedWeights,
    },
    /// A batchnorm (if any) as a per-channel scale and shift, before a ReLU.
    PreActivation(Option<(Vec<f32>, Vec<f32>)>),
    /// Pooling needs no weights.
    Pool,
}

/// Runs Xception on the CPU with folded weights, GEMMs and fused epilogues.
#[derive(Debug)]
pub struct CpuModel {
    graph: Graph,
    weights: Arc<Weights>,
    layers: Vec<Layer>,
    /// The GEMM kernels the weights are packed for.
    isa: Isa,
    threads: Option<rayon::ThreadPool>,
    /// Activation buffers of earlier passes, taken by the next one.
    spare: Mutex<Vec<AlignedVec>>,
}

impl CpuModel {
    /// Prepares the model over validated weights, on rayon's global thread pool, with the
    /// widest GEMM kernels this CPU runs.
    pub fn new(weights: Arc<Weights>) -> Self {
        Self::with_kernels(weights, Isa::detect()).expect("the detected kernels run on this CPU")
    }

    /// [`CpuModel::new`] with the GEMM kernels of `isa` (which the CPU must run).
    pub fn with_kernels(weights: Arc<Weights>, isa: Isa) -> Result<Self> {
        if !isa.available() {
            return Err(Error::Argument(format!(
                "this CPU cannot run the {} GEMM kernels",
                isa.name()
            )));
        }
        let graph = weights.graph().clone();
        let layers = graph
            .nodes
            .iter()
            .map(|node| match &node.op {
                Op::Conv(c) => {
                    let kernel = weights.tensor(&format!("{}.kernel", c.conv));
                    let bn = weights.batchnorm_or_identity(c.bn.as_deref(), c.out_channels);
                    let (kernel, bias) = bn.fold(kernel, c.out_channels);
                    let (cin, cout) = (c.in_channels, c.out_channels);
                    if winograd::applies(c.kernel, c.stride) {
                        Layer::Winograd(WinogradWeights::new(isa, &kernel, &bias, cin, cout))
                    } else {
                        let k = c.kernel * c.kernel * cin;
                        Layer::Conv(PackedWeights::new(isa, &kernel, &bias, k, cout))
                    }
                }
                Op::Separable(s) => {
                    let (depthwise, depthwise_bias) = weights.folded_depthwise(s);
                    let pointwise = weights.tensor(&format!("{}.pointwise_kernel", s.conv));
                    let bn = weights.batchnorm_or_identity(s.bn.as_deref(), s.out_channels);
                    let (pointwise, bias) = bn.fold(pointwise, s.out_channels);
                    Layer::Separable {
                        depthwise,
                        depthwise_bias,
                        pointwise: PackedWeights::new(
                            isa,
                            &pointwise,
                            &bias,
                            s.in_channels,
                            s.out_channels,
                        ),
                    }
                }
                Op::PreActivation { bn, channels } => {
                    Layer::PreActivation(weights.scale_shift(bn.as_deref(), *channels))
                }
                Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => Layer::Pool,
            })
            .collect();
        Ok(Self {
            graph,
            weights,
            layers,
            isa,
            threads: None,
            spare: Mutex::new(Vec::new()),
        })
    }

    /// The GEMM kernels the model runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs on a thread pool of its own with `threads` threads instead of rayon's global one.
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("xception-cpu-{i}"))
            .build()
            .map_err(|e| Error::Input(format!("cannot start {threads} CPU threads: {e}")))?;
        self.threads = Some(pool);
        Ok(self)
    }

    /// Threads a forward pass runs on.
    pub fn threads(&self) -> usize {
        self.threads
            .as_ref()
            .map_or_else(rayon::current_num_threads, |pool| {
                pool.current_num_threads()
            })
    }

    /// Runs the backbone and head on an NHWC batch of preprocessed images.
    pub fn forward(&self, input: &Tensor) -> Result<Outputs> {
        Ok(self.run(input, false, None)?.0)
    }

    /// [`CpuModel::forward`], also returning the last feature map (`block14_sepconv2_act`,
    /// what the global average pool reads).
    pub fn forward_features(&self, input: &Tensor) -> Result<(Outputs, Tensor)> {
        let (outputs, features) = self.run(input, true, None)?;
        Ok((
            outputs,
            features.expect("the graph ends in a global average pool"),
        ))
    }

    /// The wall time of every step of one forward pass, named as the GPU's launches are.
    pub fn profile(&self, input: &Tensor) -> Result<Vec<LaunchTiming>> {
        let mut timings = Vec::new();
        self.run(input, false, Some(&mut timings))?;
        Ok(timings)
    }

    fn run(
        &self,
        input: &Tensor,
        keep_features: bool,
        timings: Option<&mut Vec<LaunchTiming>>,
    ) -> Result<(Outputs, Option<Tensor>)> {
        let s = input.shape;
        let shapes = self.graph.infer_shapes(s.batch, s.height, s.width)?;
        let pass = || self.run_on_threads(input, &shapes, keep_features, timings);
        let (embedding, features) = match &self.threads {
            Some(pool) => pool.install(pass),
            None => pass(),
        };
        let (logits, probabilities) = crate::head::forward(&self.weights, &embedding);
        let outputs = Outputs {
            batch: s.batch,
            embedding_dim: self.graph.embedding_dim(),
            num_classes: self.weights.info.num_classes(),
            embeddings: embedding,
            logits,
            probabilities,
        };
        Ok((outputs, features))
    }

    /// The backbone: returns the embeddings and, if asked, the last feature map.
    fn run_on_threads(
        &self,
        input: &Tensor,
        shapes: &[Shape],
        keep_features: bool,
        mut timings: Option<&mut Vec<LaunchTiming>>,
    ) -> (Vec<f32>, Option<Tensor>) {
        let mut buffers = Buffers {
            earlier: std::mem::take(&mut *self.lock_spare()),
            spare: Vec::new(),
        };
        let last_use = self.graph.last_uses();
        let mut values: Vec<Option<AlignedVec>> = vec![None; shapes.len()];
        let mut embedding = vec![0.0; input.shape.batch * self.graph.embedding_dim()];
        let mut features = None;
        for (i, (node, layer)) in self.graph.nodes.iter().zip(&self.layers).enumerate() {
            let (in_shape, out_shape) = (shapes[node.input.0], shapes[node.output.0]);
            // A value's buffer may be longer than the value (see `Buffers::take`).
            let value =
                |v: usize| &values[v].as_deref().expect("value computed")[..shapes[v].len()];
            let x: &[f32] = match node.input.0 {
                0 => &input.data,
                v => value(v),
            };
            // Only a profile reads the clock (which `wasm32-unknown-unknown` lacks).
            let started = timings.is_some().then(Instant::now);
            // Records the node's step, which ends now, with the multiply-adds it executes.
            let macs = match layer {
                Layer::Winograd(weights) => weights.macs(out_shape),
                _ => node.macs(shapes).total(),
            };
            let mut step = |kind: OpKind, floats: usize| {
                if let (Some(timings), Some(started)) = (timings.as_deref_mut(), started) {
                    timings.push(LaunchTiming {
                        layer: self.graph.value_names[node.output.0].clone(),
                        kind,
                        macs,
                        bytes: 4 * floats as u64,
                        ms: started.elapsed().as_secs_f64() * 1e3,
                    });
                }
            };
            let y = match (&node.op, layer) {
                (Op::Conv(c), Layer::Conv(_) | Layer::Winograd(_)) => {
                    let mut y = buffers.take(out_shape.len());
                    let geometry = ConvGeometry {
                        input: in_shape,
                        kernel: c.kernel,
                        stride: c.stride,
                        padding: c.padding,
                    };
                    let finish = Finish {
                        residual: None,
                        relu: c.relu,
                    };
                    let out = &mut y[..out_shape.len()];
                    let rows = out_shape.pixels();
                    match layer {
                        Layer::Winograd(weights) => {
                            winograd::conv(x, geometry, weights, finish, out)
                        }
                        Layer::Conv(weights) => {
                            ops::matmul(Lhs::Patches(x, geometry), rows, weights, finish, out)
                        }
                        _ => unreachable!("a convolution was prepared as {layer:?}"),
                    }
                    let kind = if c.kernel == 1 {
                        OpKind::ShortcutConv
                    } else {
                        OpKind::StemConv
                    };
                    let kernel_len = c.kernel * c.kernel * c.in_channels * c.out_channels;
                    step(kind, x.len() + out_shape.len() + kernel_len);
                    y
                }
                (
                    Op::Separable(sep),
                    Layer::Separable {
                        depthwise,
                        depthwise_bias,
                        pointwise,
                    },
                ) => {
                    let mut y = buffers.take(out_shape.len());
                    let residual = sep.residual.map(|r| value(r.0));
                    let finish = Finish {
                        residual,
                        relu: sep.relu_out,
                    };
                    let rows = out_shape.pixels();
                    let depthwise = Depthwise {
                        input: in_shape,
                        geometry: sep.depthwise,
                        kernel: depthwise,
                        relu_in: sep.relu_in,
                        bias: depthwise_bias.as_deref(),
                        relu_out: sep.relu_mid,
                    };
                    ops::matmul(
                        Lhs::Depthwise(x, depthwise),
                        rows,
                        pointwise,
                        finish,
                        &mut y[..out_shape.len()],
                    );
                    step(
                        OpKind::Separable,
                        x.len() + out_shape.len() + pointwise.k() * pointwise.n(),
                    );
                    y
                }
                (Op::PreActivation { channels, .. }, Layer::PreActivation(affine)) => {
                    let mut y = buffers.take(out_shape.len());
                    let affine = affine.as_ref().map(|(a, b)| (a.as_slice(), b.as_slice()));
                    ops::scale_shift_relu(x, affine, *channels, &mut y[..out_shape.len()]);
                    step(OpKind::PreActivation, x.len() + out_shape.len());
                    y
                }
                (Op::MaxPoolAdd { residual, padding }, Layer::Pool) => {
                    let mut y = buffers.take(out_shape.len());
                    ops::max_pool(
                        x,
                        in_shape,
                        *padding,
                        value(residual.0),
                        &mut y[..out_shape.len()],
                    );
                    step(OpKind::MaxPoolAdd, x.len() + 2 * out_shape.len());
                    y
                }
                (Op::GlobalAvgPool, Layer::Pool) => {
                    ops::global_avg_pool(x, in_shape, &mut embedding);
                    if keep_features {
                        features = Some(Tensor {
                            shape: in_shape,
                            data: x.to_vec(),
                        });
                    }
                    step(OpKind::GlobalAvgPool, x.len());
                    break;
                }
                (op, layer) => unreachable!("{op:?} was prepared as {layer:?}"),
            };
            values[node.output.0] = Some(y);
            for v in node.inputs() {
                if last_use[v.0] == i {
                    if let Some(dead) = values[v.0].take() {
                        buffers.give_back(dead);
                    }
                }
            }
        }
        buffers.spare.extend(values.into_iter().flatten());
        self.lock_spare().extend(buffers.spare);
        (embedding, features)
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Vec<AlignedVec>> {
        // A pass that panicked leaves only spare buffers behind, which are still good.
        self.spare
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The activation buffers of one pass: the smallest free one that fits, from this pass or an
/// earlier one, else a new one. Only buffers this pass used are kept for the next, so a run
/// of large inputs does not keep its memory through a run of small ones.
struct Buffers {
    /// Buffers of earlier passes that this one has not taken.
    earlier: Vec<AlignedVec>,
    /// Buffers this pass has given back.
    spare: Vec<AlignedVec>,
}

impl Buffers {
    /// A buffer of at least `len` values, whose first `len` the kernel that takes it
    /// overwrites. A buffer keeps the length it once had, so that zeroing a new one's values
    /// (memory traffic as large as the kernel's own output) happens once, not every pass.
    fn take(&mut self, len: usize) -> AlignedVec {
        let smallest_fitting = |buffers: &Vec<AlignedVec>| {
            buffers
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, b)| (i, b.capacity()))
        };
        let mut buffer = match (
            smallest_fitting(&self.spare),
            smallest_fitting(&self.earlier),
        ) {
            (Some((i, mine)), Some((_, theirs))) if mine <= theirs => self.spare.swap_remove(i),
            (_, Some((i, _))) => self.earlier.swap_remove(i),
            (Some((i, _)), None) => self.spare.swap_remove(i),
            (None, None) => AlignedVec::new(),
        };
        if buffer.len() < len {
            buffer.resize(len);
        }
        buffer
    }

    fn give_back(&mut self, buffer: AlignedVec) {
        self.spare.push(buffer);
    }
}
