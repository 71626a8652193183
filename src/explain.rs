//! Grad-CAM (Selvaraju et al. 2017): where in the image the network found its evidence for a
//! class, computed as the keras.io recipe "Grad-CAM class activation visualization" does on
//! Xception.
//!
//! The last feature map `A` (`block14_sepconv2_act`, `h x w x 2048`) reaches the logits only
//! through the global average pool and the dense head, so the gradient of a class's logit
//! with respect to it is exact and cheap on the CPU, and the same at every position:
//! `d logit / d A[y, x, k] = g[k] / (h w)`, where `g` is the head's gradient at the embedding.
//! The heatmap is `ReLU(sum_k A[y, x, k] g[k] / (h w))` divided by its maximum.

use image::{imageops, ImageBuffer, Luma, RgbImage};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::{Activation, Weights};

/// How strongly [`Heatmap::overlay`] colours the photo (0: not at all, 1: only the heatmap).
pub const OVERLAY_OPACITY: f32 = 0.45;

/// A normalised Grad-CAM heatmap at the feature map's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// The class explained.
    pub class: usize,
    /// Its label.
    pub label: String,
    /// Rows of the feature map.
    pub height: usize,
    /// Columns of the feature map.
    pub width: usize,
    /// `height * width` values in `[0, 1]`, row by row: the evidence for the class at each
    /// position, divided by the largest (all zero where no position speaks for the class).
    pub values: Vec<f32>,
}

impl Heatmap {
    /// The values, one `Vec` per row.
    pub fn rows(&self) -> Vec<Vec<f32>> {
        self.values
            .chunks(self.width)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// `image` with the heatmap upsampled (bilinear) to its size, coloured with the
    /// perceptually uniform "inferno" colour map and blended over it.
    pub fn overlay(&self, image: &RgbImage) -> RgbImage {
        let grid: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(self.width as u32, self.height as u32, self.values.clone())
                .expect("a heatmap has height * width values");
        let heat = imageops::resize(
            &grid,
            image.width(),
            image.height(),
            imageops::FilterType::Triangle,
        );
        let mut blended = image.clone();
        for (pixel, heat) in blended.pixels_mut().zip(heat.pixels()) {
            let colour = colorous::INFERNO.eval_continuous(f64::from(heat.0[0].clamp(0.0, 1.0)));
            for (channel, tint) in pixel.0.iter_mut().zip([colour.r, colour.g, colour.b]) {
                let mixed = (1.0 - OVERLAY_OPACITY) * f32::from(*channel)
                    + OVERLAY_OPACITY * f32::from(tint);
                *channel = mixed.round() as u8;
            }
        }
        blended
    }
}

/// The Grad-CAM heatmap of `classes[i]` for each image `i` of `features` (`[N, h, w, C]`, the
/// map the global average pool read), given the `[N, C]` embeddings the pool produced.
pub fn grad_cam(
    weights: &Weights,
    features: &Tensor,
    embeddings: &[f32],
    classes: &[usize],
) -> Result<Vec<Heatmap>> {
    let s = features.shape;
    let positions = s.height * s.width;
    let labels = &weights.info.labels;
    classes
        .iter()
        .enumerate()
        .map(|(i, &class)| {
            let label = labels.get(class).ok_or_else(|| {
                Error::Input(format!(
                    "class {class} is out of range: the head has {} classes",
                    labels.len()
                ))
            })?;
            let embedding = &embeddings[i * s.channels..(i + 1) * s.channels];
            let gradient = head_gradient(weights, embedding, class);
            let map = &features.data[i * positions * s.channels..(i + 1) * positions * s.channels];
            let evidence: Vec<f32> = map
                .chunks(s.channels)
                .map(|a| {
                    let dot: f64 = a
                        .iter()
                        .zip(&gradient)
                        .map(|(&a, &g)| f64::from(a * g))
                        .sum();
                    (dot / positions as f64) as f32
                })
                .collect();
            let largest = evidence.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let values = evidence
                .iter()
                .map(|&v| {
                    if largest > 0.0 {
                        v.max(0.0) / largest
                    } else {
                        0.0
                    }
                })
                .collect();
            Ok(Heatmap {
                class,
                label: label.clone(),
                height: s.height,
                width: s.width,
                values,
            })
        })
        .collect()
}

/// The gradient of logit `class` (the last dense layer's output before its activation) with
/// respect to the head's input, `embedding`.
fn head_gradient(weights: &Weights, embedding: &[f32], class: usize) -> Vec<f32> {
    let head = &weights.info.head;
    let kernel = |name: &str| weights.tensor(&format!("{name}.kernel"));
    // Forward, keeping each layer's output before its activation.
    let mut x = embedding.to_vec();
    let mut before_activation = Vec::with_capacity(head.len());
    for layer in head {
        let bias = weights.tensor(&format!("{}.bias", layer.name));
        let z = crate::head::dense(&x, kernel(&layer.name), bias, layer.units);
        x = match layer.activation {
            Activation::Relu => z.iter().map(|&v| v.max(0.0)).collect(),
            Activation::Linear | Activation::Softmax => z.clone(),
        };
        before_activation.push(z);
    }
    // Backward from the logit.
    let last = head.len() - 1;
    let mut gradient = vec![0.0f32; head[last].units];
    gradient[class] = 1.0;
    for (l, layer) in head.iter().enumerate().rev() {
        if l != last && layer.activation == Activation::Relu {
            for (g, &z) in gradient.iter_mut().zip(&before_activation[l]) {
                if z <= 0.0 {
                    *g = 0.0;
                }
            }
        }
        let kernel = kernel(&layer.name);
        gradient = kernel
            .chunks(layer.units)
            .map(|row| row.iter().zip(&gradient).map(|(w, g)| w * g).sum())
            .collect();
    }
    gradient
}
