//! The reference backend: the whole forward pass built from the plain ops in [`ops`].
//!
//! Every node of the graph is expanded back into its Keras ops (convolution, batchnorm,
//! ReLU, add, ...) without folding or fusion, which makes this the oracle for the GPU and the
//! fast CPU backends ([`crate::cpu`]).

pub mod ops;

use std::sync::Arc;

use crate::error::Result;
use crate::graph::{Graph, Op, ValueId};
use crate::outputs::Outputs;
use crate::tensor::Tensor;
use crate::weights::{Activation, Weights};

/// Runs an Xception on the CPU with the reference ops.
#[derive(Debug, Clone)]
pub struct ReferenceModel {
    graph: Graph,
    weights: Arc<Weights>,
}

impl ReferenceModel {
    /// Creates the model over validated weights.
    pub fn new(weights: Arc<Weights>) -> Self {
        Self {
            graph: weights.graph().clone(),
            weights,
        }
    }

    /// Runs the backbone and head on an NHWC batch of preprocessed images.
    pub fn forward(&self, input: &Tensor) -> Result<Outputs> {
        Ok(self.run(input, false)?.0)
    }

    /// [`ReferenceModel::forward`], also returning the last feature map (`block14_sepconv2_act`,
    /// what the global average pool reads).
    pub fn forward_features(&self, input: &Tensor) -> Result<(Outputs, Tensor)> {
        let (outputs, features) = self.run(input, true)?;
        Ok((
            outputs,
            features.expect("the graph ends in a global average pool"),
        ))
    }

    fn run(&self, input: &Tensor, keep_features: bool) -> Result<(Outputs, Option<Tensor>)> {
        let s = input.shape;
        self.graph.infer_shapes(s.batch, s.height, s.width)?;
        let w = &self.weights;
        let last_use = self.graph.last_uses();
        let mut values: Vec<Option<Tensor>> = vec![None; self.graph.value_names.len()];
        values[0] = Some(input.clone());
        let mut embedding = Vec::new();
        let mut features = None;
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let x = values[node.input.0].as_ref().expect("input computed");
            let value = |v: ValueId| values[v.0].as_ref().expect("value computed");
            let y = match &node.op {
                Op::Conv(c) => {
                    let kernel = w.tensor(&format!("{}.kernel", c.conv));
                    let mut y = ops::conv(x, kernel, c.kernel, c.stride, c.padding, c.out_channels);
                    if let Some(bn) = &c.bn {
                        ops::batch_norm(&mut y, &w.batchnorm(bn));
                    }
                    if c.relu {
                        y = ops::relu(&y);
                    }
                    y
                }
                Op::Separable(s) => {
                    let rectified;
                    let x = if s.relu_in {
                        rectified = ops::relu(x);
                        &rectified
                    } else {
                        x
                    };
                    let depthwise = w.tensor(&format!("{}.depthwise_kernel", s.conv));
                    let pointwise = w.tensor(&format!("{}.pointwise_kernel", s.conv));
                    let mut y = ops::depthwise_conv(x, depthwise, s.depthwise);
                    if let Some(bn) = &s.depthwise_bn {
                        ops::batch_norm(&mut y, &w.batchnorm(bn));
                    }
                    if s.relu_mid {
                        y = ops::relu(&y);
                    }
                    let mut y = ops::pointwise_conv(&y, pointwise, s.out_channels);
                    if let Some(bn) = &s.bn {
                        ops::batch_norm(&mut y, &w.batchnorm(bn));
                    }
                    if let Some(r) = s.residual {
                        y = ops::add(&y, value(r));
                    }
                    if s.relu_out {
                        y = ops::relu(&y);
                    }
                    y
                }
                Op::PreActivation { bn, .. } => {
                    let mut y = x.clone();
                    if let Some(bn) = bn {
                        ops::batch_norm(&mut y, &w.batchnorm(bn));
                    }
                    ops::relu(&y)
                }
                Op::MaxPoolAdd { residual, padding } => {
                    ops::add(&ops::max_pool(x, *padding), value(*residual))
                }
                Op::GlobalAvgPool => {
                    embedding = ops::global_avg_pool(x);
                    if keep_features {
                        features = Some(x.clone());
                    }
                    continue;
                }
            };
            values[node.output.0] = Some(y);
            for v in node.inputs() {
                if last_use[v.0] == i {
                    values[v.0] = None;
                }
            }
        }
        let (logits, probabilities) = head(w, &embedding);
        let outputs = Outputs {
            batch: s.batch,
            embedding_dim: self.graph.embedding_dim(),
            num_classes: w.info.num_classes(),
            embeddings: embedding,
            logits,
            probabilities,
        };
        Ok((outputs, features))
    }
}

/// Runs the dense head on `[N, 2048]` embeddings: returns logits and softmax probabilities
/// (both empty for a backbone without head).
pub fn head(weights: &Weights, embeddings: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let head = &weights.info.head;
    let Some(last) = head.last() else {
        return (Vec::new(), Vec::new());
    };
    let mut x = embeddings.to_vec();
    for layer in head {
        let kernel = weights.tensor(&format!("{}.kernel", layer.name));
        let bias = weights.tensor(&format!("{}.bias", layer.name));
        x = ops::dense(&x, kernel, bias, layer.units);
        if layer.activation == Activation::Relu {
            x = ops::relu(&Tensor {
                shape: crate::tensor::Shape::new(1, 1, x.len(), 1),
                data: x,
            })
            .data;
        }
    }
    let probabilities = ops::softmax(&x, last.units);
    (x, probabilities)
}
