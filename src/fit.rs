//! Fitting a new classification head on embeddings (`xception fit`): softmax regression, or
//! the bundled model's shape (a hidden ReLU layer, then the class layer), minimising the mean
//! cross-entropy plus an L2 penalty on the kernels by full-batch L-BFGS (argmin).
//! Deterministic: the same data, options and seed give the same head.

use std::collections::HashMap;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::tensor::TensorView;
use serde_json::json;

use crate::error::{Error, Result};
use crate::weights::{Activation, HEAD_FORMAT};

/// How to fit a head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Units of the hidden ReLU layer; 0 fits softmax regression (one dense layer).
    pub hidden: usize,
    /// L2 penalty on the kernels: `l2 / 2 * sum(w^2)` is added to the mean cross-entropy.
    pub l2: f64,
    /// Most L-BFGS iterations (each one or more full passes over the data).
    pub iterations: u64,
    /// Seed of the hidden layer's initial weights.
    pub seed: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            hidden: 0,
            l2: 1e-3,
            iterations: 300,
            seed: 0,
        }
    }
}

/// One dense layer of a fitted head, in Keras layout (`kernel` is `[inputs, units]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FittedLayer {
    /// Layer name: `dense`, then `dense_1`, as in the bundled head.
    pub name: String,
    /// ReLU on the hidden layer, none on the class layer (its outputs are the logits).
    pub activation: Activation,
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub units: usize,
    /// `inputs * units` weights, row by row.
    pub kernel: Vec<f32>,
    /// `units` biases.
    pub bias: Vec<f32>,
}

/// A fitted head: its layers and class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedHead {
    /// Class labels, by index.
    pub labels: Vec<String>,
    /// Dense layers, in order.
    pub layers: Vec<FittedLayer>,
    /// The training loss reached (mean cross-entropy plus the L2 penalty).
    pub loss: f64,
}

impl FittedHead {
    /// The logits of one embedding.
    pub fn logits(&self, embedding: &[f32]) -> Vec<f32> {
        let mut x = embedding.to_vec();
        for layer in &self.layers {
            x = crate::head::dense(&x, &layer.kernel, &layer.bias, layer.units);
            if layer.activation == Activation::Relu {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        x
    }

    /// The most probable class of one embedding.
    pub fn predict(&self, embedding: &[f32]) -> usize {
        let logits = self.logits(embedding);
        (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .expect("a head has classes")
    }

    /// The head as a head-only safetensors file ([`HEAD_FORMAT`]) for the backbone with
    /// `fingerprint` ([`crate::Weights::backbone_fingerprint`]).
    pub fn to_safetensors(&self, fingerprint: &str) -> Result<Vec<u8>> {
        let bytes =
            |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let mut data = Vec::new();
        for layer in &self.layers {
            data.push((
                format!("{}.kernel", layer.name),
                vec![layer.inputs, layer.units],
                bytes(&layer.kernel),
            ));
            data.push((
                format!("{}.bias", layer.name),
                vec![layer.units],
                bytes(&layer.bias),
            ));
        }
        let views = data
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|view| (name.clone(), view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Input(format!("cannot lay out the head: {e}")))?;
        let head: Vec<_> = self
            .layers
            .iter()
            .map(|l| {
                let activation = match l.activation {
                    Activation::Relu => "relu",
                    Activation::Linear | Activation::Softmax => "linear",
                };
                json!({"name": l.name, "units": l.units, "activation": activation})
            })
            .collect();
        let metadata = HashMap::from([
            ("format".to_string(), HEAD_FORMAT.to_string()),
            ("labels".to_string(), json!(self.labels).to_string()),
            ("head".to_string(), json!(head).to_string()),
            ("backbone".to_string(), fingerprint.to_string()),
        ]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::Input(format!("cannot write the head: {e}")))
    }
}

/// Fits a head mapping `embeddings` (`[N, dim]`, row by row) to `targets` (indices into
/// `labels`).
pub fn fit_head(
    embeddings: &[f32],
    dim: usize,
    targets: &[usize],
    labels: Vec<String>,
    options: FitOptions,
) -> Result<FittedHead> {
    let classes = labels.len();
    if classes < 2 {
        return Err(Error::Input(format!(
            "a head needs at least two classes, not {classes}"
        )));
    }
    if embeddings.len() != targets.len() * dim || targets.iter().any(|&t| t >= classes) {
        return Err(Error::Input(
            "every embedding needs one target class among the labels".into(),
        ));
    }
    let problem = Problem {
        x: embeddings,
        y: targets,
        dim,
        hidden: options.hidden,
        classes,
        l2: options.l2,
    };
    let initial = problem.initial(options.seed);
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-8)
        .and_then(|s| s.with_tolerance_cost(1e-12))
        .map_err(|e| Error::Input(format!("optimiser settings: {e}")))?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(initial).max_iters(options.iterations))
        .run()
        .map_err(|e| Error::Input(format!("fitting the head failed: {e}")))?;
    let state = result.state();
    let params = state
        .get_best_param()
        .ok_or_else(|| Error::Input("fitting the head produced no parameters".into()))?;
    let loss = state.get_best_cost();
    let problem = &result
        .problem
        .problem
        .as_ref()
        .expect("the problem is returned");
    Ok(FittedHead {
        labels,
        layers: problem.layers(params),
        loss,
    })
}

/// Mean cross-entropy plus L2 penalty of a head on fixed embeddings, over a flat parameter
/// vector: `[kernel, bias]` per layer, in order.
struct Problem<'a> {
    x: &'a [f32],
    y: &'a [usize],
    dim: usize,
    hidden: usize,
    classes: usize,
    l2: f64,
}

/// One layer's place in the parameter vector.
struct Slot {
    inputs: usize,
    units: usize,
    kernel: usize,
    bias: usize,
}

impl Problem<'_> {
    fn slots(&self) -> Vec<Slot> {
        let sizes = match self.hidden {
            0 => vec![(self.dim, self.classes)],
            h => vec![(self.dim, h), (h, self.classes)],
        };
        let mut at = 0;
        sizes
            .into_iter()
            .map(|(inputs, units)| {
                let slot = Slot {
                    inputs,
                    units,
                    kernel: at,
                    bias: at + inputs * units,
                };
                at += inputs * units + units;
                slot
            })
            .collect()
    }

    /// Zeros for softmax regression; for the hidden layer, He-uniform kernels from `seed`
    /// (zeros would leave every hidden unit the same).
    fn initial(&self, seed: u64) -> Vec<f64> {
        let slots = self.slots();
        let last = slots.last().expect("a head has layers");
        let mut params = vec![0.0; last.bias + last.units];
        let mut rng = StdRng::seed_from_u64(seed);
        if slots.len() > 1 {
            for slot in &slots {
                let bound = (6.0 / slot.inputs as f64).sqrt();
                for w in &mut params[slot.kernel..slot.bias] {
                    *w = rng.random_range(-bound..bound);
                }
            }
        }
        params
    }

    fn layers(&self, params: &[f64]) -> Vec<FittedLayer> {
        let slots = self.slots();
        let last = slots.len() - 1;
        slots
            .iter()
            .enumerate()
            .map(|(i, s)| FittedLayer {
                name: if i == 0 {
                    "dense".into()
                } else {
                    format!("dense_{i}")
                },
                activation: if i == last {
                    Activation::Linear
                } else {
                    Activation::Relu
                },
                inputs: s.inputs,
                units: s.units,
                kernel: params[s.kernel..s.bias].iter().map(|&v| v as f32).collect(),
                bias: params[s.bias..s.bias + s.units]
                    .iter()
                    .map(|&v| v as f32)
                    .collect(),
            })
            .collect()
    }

    /// The loss at `params` and its gradient.
    fn evaluate(&self, params: &[f64]) -> (f64, Vec<f64>) {
        let slots = self.slots();
        let last = slots.len() - 1;
        let n = self.y.len() as f64;
        let mut loss = 0.0;
        let mut gradient = vec![0.0; params.len()];
        for (row, &target) in self.x.chunks(self.dim).zip(self.y) {
            // Forward, keeping each layer's input.
            let mut inputs: Vec<Vec<f64>> = vec![row.iter().map(|&v| f64::from(v)).collect()];
            for (i, s) in slots.iter().enumerate() {
                let x = &inputs[i];
                let mut z = params[s.bias..s.bias + s.units].to_vec();
                for (k, &xk) in x.iter().enumerate() {
                    if xk != 0.0 {
                        let w = &params[s.kernel + k * s.units..s.kernel + (k + 1) * s.units];
                        z.iter_mut().zip(w).for_each(|(z, w)| *z += xk * w);
                    }
                }
                if i != last {
                    z.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                inputs.push(z);
            }
            // Softmax cross-entropy; its gradient with respect to the logits.
            let logits = &inputs[slots.len()];
            let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = logits.iter().map(|z| (z - top).exp()).sum();
            loss += sum.ln() + top - logits[target];
            let mut delta: Vec<f64> = logits.iter().map(|z| (z - top).exp() / sum).collect();
            delta[target] -= 1.0;
            // Backward.
            for (i, s) in slots.iter().enumerate().rev() {
                let x = &inputs[i];
                for (k, &xk) in x.iter().enumerate() {
                    if xk != 0.0 {
                        let g = &mut gradient[s.kernel + k * s.units..s.kernel + (k + 1) * s.units];
                        g.iter_mut().zip(&delta).for_each(|(g, d)| *g += xk * d);
                    }
                }
                gradient[s.bias..s.bias + s.units]
                    .iter_mut()
                    .zip(&delta)
                    .for_each(|(g, d)| *g += d);
                if i > 0 {
                    // Through the kernel, then the ReLU of the layer below (zero inputs were
                    // clamped there).
                    delta = (0..s.inputs)
                        .map(|k| {
                            if x[k] > 0.0 {
                                let w =
                                    &params[s.kernel + k * s.units..s.kernel + (k + 1) * s.units];
                                w.iter().zip(&delta).map(|(w, d)| w * d).sum()
                            } else {
                                0.0
                            }
                        })
                        .collect();
                }
            }
        }
        loss /= n;
        gradient.iter_mut().for_each(|g| *g /= n);
        for s in &slots {
            for (g, &w) in gradient[s.kernel..s.bias]
                .iter_mut()
                .zip(&params[s.kernel..s.bias])
            {
                *g += self.l2 * w;
                loss += 0.5 * self.l2 * w * w;
            }
        }
        (loss, gradient)
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, params: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.evaluate(params).0)
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, params: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(params).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic gradient against central differences, for both head shapes.
    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(7);
        let (dim, n) = (5, 9);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
        for hidden in [0, 4] {
            let problem = Problem {
                x: &x,
                y: &y,
                dim,
                hidden,
                classes: 3,
                l2: 0.1,
            };
            let mut params = problem.initial(3);
            params
                .iter_mut()
                .for_each(|p| *p += rng.random_range(-0.3..0.3));
            let (_, gradient) = problem.evaluate(&params);
            for i in 0..params.len() {
                let step = 1e-6;
                let mut up = params.clone();
                up[i] += step;
                let mut down = params.clone();
                down[i] -= step;
                let numeric = (problem.evaluate(&up).0 - problem.evaluate(&down).0) / (2.0 * step);
                assert!(
                    (numeric - gradient[i]).abs() < 1e-6,
                    "hidden {hidden}, parameter {i}: analytic {} numeric {numeric}",
                    gradient[i]
                );
            }
        }
    }
}
