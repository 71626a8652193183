//! The classification head after the global average pool: dense layers (ReLU between them
//! where the weights say so) and a softmax. The fast CPU backend, `fit` and `explain` run it
//! from here; the reference backend keeps its own unfused copy as the oracle.

use crate::weights::{Activation, Weights};

/// Dense layer: `x [rows, inputs] * kernel [inputs, units] + bias`.
pub fn dense(x: &[f32], kernel: &[f32], bias: &[f32], units: usize) -> Vec<f32> {
    let inputs = kernel.len() / units;
    let mut out = Vec::with_capacity(x.len() / inputs * units);
    for row in x.chunks_exact(inputs) {
        let mut acc = bias.to_vec();
        for (&v, weights) in row.iter().zip(kernel.chunks_exact(units)) {
            for (a, &w) in acc.iter_mut().zip(weights) {
                *a += v * w;
            }
        }
        out.extend(acc);
    }
    out
}

/// Softmax over each row of `cols` values.
pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let start = out.len();
        out.extend(row.iter().map(|&v| (v - max).exp()));
        let sum: f32 = out[start..].iter().sum();
        out[start..].iter_mut().for_each(|e| *e /= sum);
    }
    out
}

/// Runs the weights' head on `[N, 2048]` embeddings: logits and softmax probabilities (both
/// empty for a backbone without head).
pub fn forward(weights: &Weights, embeddings: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let head = &weights.info.head;
    let Some(last) = head.last() else {
        return (Vec::new(), Vec::new());
    };
    let mut x = embeddings.to_vec();
    for layer in head {
        let kernel = weights.tensor(&format!("{}.kernel", layer.name));
        let bias = weights.tensor(&format!("{}.bias", layer.name));
        x = dense(&x, kernel, bias, layer.units);
        if layer.activation == Activation::Relu {
            x.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
    let probabilities = softmax(&x, last.units);
    (x, probabilities)
}
