//! [`Outputs`]: what a forward pass over a batch returns, on every backend.

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
