//! Per-step timings of a forward pass, as `bench --profile` prints them for every backend.

/// What a step (a GPU kernel launch, a CPU kernel call) of the forward pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// The two 3x3 stem convolutions.
    StemConv,
    /// The 1x1 shortcut convolutions.
    ShortcutConv,
    /// A pre-activation block's batchnorm + ReLU.
    PreActivation,
    /// Depthwise half of a separable convolution.
    Depthwise,
    /// Pointwise half of a separable convolution.
    Pointwise,
    /// A whole separable convolution in one kernel (the CPU backend's).
    Separable,
    /// Max-pool with the residual add.
    MaxPoolAdd,
    /// Global average pool.
    GlobalAvgPool,
    /// Dense head layer.
    Dense,
    /// Softmax over the logits.
    Softmax,
}

impl OpKind {
    /// A short human-readable name.
    pub const fn name(self) -> &'static str {
        match self {
            OpKind::StemConv => "stem conv",
            OpKind::ShortcutConv => "shortcut conv",
            OpKind::PreActivation => "BN + ReLU",
            OpKind::Depthwise => "depthwise",
            OpKind::Pointwise => "pointwise",
            OpKind::Separable => "separable",
            OpKind::MaxPoolAdd => "max pool + add",
            OpKind::GlobalAvgPool => "global avg pool",
            OpKind::Dense => "dense",
            OpKind::Softmax => "softmax",
        }
    }
}

/// One step of a forward pass and the time it took.
#[derive(Debug, Clone)]
pub struct LaunchTiming {
    /// Keras layer the step belongs to.
    pub layer: String,
    /// What it computes.
    pub kind: OpKind,
    /// Multiply-accumulates (0 for data movement).
    pub macs: u64,
    /// Bytes of activations and weights it reads and writes (at least).
    pub bytes: u64,
    /// Milliseconds: device time from timestamp queries on the GPU, wall time on the CPU.
    pub ms: f64,
}
