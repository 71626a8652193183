//! The public entry point: [`Xception`] over a CPU or GPU backend, and its [`Outputs`].

use std::path::Path;
use std::sync::Arc;

use crate::cpu::CpuModel;
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuModel, LaunchTiming};
use crate::tensor::Tensor;
use crate::weights::{ModelInfo, Weights};

/// Which implementation runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// WGSL compute shaders through wgpu.
    Gpu,
    /// The plain Rust reference implementation.
    Cpu,
}

/// Results of a forward pass over a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// Images in the batch.
    pub batch: usize,
    /// Width of each embedding (2048).
    pub embedding_dim: usize,
    /// Classes of the head (0 for a backbone without head).
    pub num_classes: usize,
    /// Global-average-pooled features, `[batch, embedding_dim]`.
    pub embeddings: Vec<f32>,
    /// Head outputs before softmax, `[batch, num_classes]`.
    pub logits: Vec<f32>,
    /// Softmax of the logits, `[batch, num_classes]`.
    pub probabilities: Vec<f32>,
}

impl Outputs {
    /// Embedding of image `i`.
    pub fn embedding(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.embedding_dim..(i + 1) * self.embedding_dim]
    }

    /// Logits of image `i` (empty without head).
    pub fn logits(&self, i: usize) -> &[f32] {
        &self.logits[i * self.num_classes..(i + 1) * self.num_classes]
    }

    /// Class probabilities of image `i` (empty without head).
    pub fn probabilities(&self, i: usize) -> &[f32] {
        &self.probabilities[i * self.num_classes..(i + 1) * self.num_classes]
    }
}

/// One ranked class.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Class index.
    pub index: usize,
    /// Class label from the weights' metadata.
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// Xception with pretrained weights, ready to run on one backend.
///
/// ```no_run
/// use xception_wgpu::{preprocess, BackendKind, Xception};
///
/// let model = Xception::load("weights/xception_kitchenware.safetensors", BackendKind::Gpu)?;
/// let (h, w) = model.info().input_size;
/// let input = preprocess::load_image("samples/cup.jpg", Some((w, h)))?;
/// let outputs = model.forward(&input)?;
/// let best = &model.top_k(&outputs, 0, 1)?[0];
/// println!("{} ({:.1}%)", best.label, best.probability * 100.0);
/// # Ok::<(), xception_wgpu::Error>(())
/// ```
#[derive(Debug)]
pub struct Xception {
    weights: Arc<Weights>,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Cpu(CpuModel),
    Gpu(Box<GpuModel>),
}

impl Xception {
    /// Loads weights from a safetensors file and prepares `backend` (creating a GPU device if needed).
    pub fn load(path: impl AsRef<Path>, backend: BackendKind) -> Result<Self> {
        Self::new(Weights::load(path)?, backend)
    }

    /// Prepares `backend` over already loaded weights.
    pub fn new(weights: Weights, backend: BackendKind) -> Result<Self> {
        let weights = Arc::new(weights);
        let backend = match backend {
            BackendKind::Cpu => Backend::Cpu(CpuModel::new(weights.clone())),
            BackendKind::Gpu => Backend::Gpu(Box::new(GpuModel::new(
                GpuContext::new()?,
                weights.clone(),
            )?)),
        };
        Ok(Self { weights, backend })
    }

    /// Runs on a device and queue owned by the host application (no second device is created).
    pub fn with_device(weights: Weights, device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        let weights = Arc::new(weights);
        let context = GpuContext::from_device(device, queue);
        let backend = Backend::Gpu(Box::new(GpuModel::new(context, weights.clone())?));
        Ok(Self { weights, backend })
    }

    /// What the weights file says about the model (input size, labels, head).
    pub fn info(&self) -> &ModelInfo {
        &self.weights.info
    }

    /// A one-line description of the backend, e.g. `gpu (llvmpipe, Vulkan)`.
    pub fn backend_description(&self) -> String {
        match &self.backend {
            Backend::Cpu(_) => "cpu (reference)".to_string(),
            Backend::Gpu(gpu) => format!("gpu ({})", gpu.context().description()),
        }
    }

    /// Runs the network on an NHWC batch of preprocessed images (`x / 127.5 - 1`, RGB).
    pub fn forward(&self, input: &Tensor) -> Result<Outputs> {
        if input.shape.channels != crate::graph::INPUT_CHANNELS {
            return Err(Error::Input(format!(
                "input has {} channels; Xception takes RGB (3)",
                input.shape.channels
            )));
        }
        match &self.backend {
            Backend::Cpu(cpu) => cpu.forward(input),
            Backend::Gpu(gpu) => gpu.forward(input),
        }
    }

    /// Device time of every kernel launch of one forward pass (GPU backend with timestamp
    /// queries only).
    pub fn profile(&self, input: &Tensor) -> Result<Vec<LaunchTiming>> {
        match &self.backend {
            Backend::Cpu(_) => Err(Error::Input(
                "profiles time GPU kernels; use the gpu backend".into(),
            )),
            Backend::Gpu(gpu) => gpu.profile(input),
        }
    }

    /// The `k` most probable classes of image `i` of `outputs`, best first.
    pub fn top_k(&self, outputs: &Outputs, i: usize, k: usize) -> Result<Vec<Prediction>> {
        if outputs.num_classes == 0 {
            return Err(Error::NoHead);
        }
        let probs = outputs.probabilities(i);
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        Ok(order
            .into_iter()
            .take(k)
            .map(|index| Prediction {
                index,
                label: self.weights.info.labels[index].clone(),
                probability: probs[index],
            })
            .collect())
    }
}
